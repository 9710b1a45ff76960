/* diaryctl import-legacy DIR: brings the old Node.js application's JSON files into the log
 * as ordinary events, which the workers then apply like any other write.
 *
 * Every event id is derived from the legacy ids (uuid_derive("legacy", kind, ids...)), and
 * every row id from its event id exactly as ingest derives them, so a second run produces
 * the same events: the workers skip them, and this tool does not even send the ones the
 * database already recorded. Each record is checked with the same rules as the HTTP API
 * (shared/validate.c); a bad record is reported (file, record, reason) and the rest goes on.
 * Legacy bcrypt hashes are carried as they are: ingest verifies them at log-in with crypt(3)
 * and replaces them with argon2id. Layout of DIR: docs/operations.md. */
#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "ctlkafka.h"
#include "diaryctl.h"
#include "envelope.h"
#include "kafka.h"
#include "uuid.h"
#include "validate.h"

enum { K_USER, K_FOOD, K_SETTINGS, K_WEIGHT, K_ENTRY, K_KINDS };
static const char *const kind_names[K_KINDS] = {"users", "foods", "settings", "weights",
                                                "meal entries"};

struct legacy_user {
    char *legacy_id;
    char id[UUID_STRLEN];
    char email[256];
};

struct legacy_food {
    char *legacy_id;
    char id[UUID_STRLEN];
    const struct legacy_user *owner;
};

struct import {
    const char *dir;
    int dry_run, json, progress;
    rd_kafka_t *producer;
    PGconn *pg;
    const char *topic;
    char source[64];
    struct legacy_user *users;
    size_t nusers;
    struct legacy_food *foods;
    size_t nfoods;
    long imported[K_KINDS], skipped[K_KINDS], rejected[K_KINDS];
    long produced, delivered, failed;
    time_t last_progress;
};

static void reject(struct import *im, int kind, const char *file, const char *record,
                   const char *reason)
{
    im->rejected[kind]++;
    if (im->json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "level", "rejected", "file", file, "record",
                              record, "reason", reason);
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        fprintf(stderr, "%s\n", s);
        free(s);
        json_decref(o);
    } else {
        fprintf(stderr, "rejected: %s: %s: %s\n", file, record, reason);
    }
}

/* The first error of a validate_body result as "field: message". Frees errors. */
static void first_error(json_t *errors, char *out, size_t outlen)
{
    json_t *e = json_array_get(errors, 0);
    snprintf(out, outlen, "%s: %s", json_string_value(json_object_get(e, "field")),
             json_string_value(json_object_get(e, "message")));
    json_decref(errors);
}

static const struct legacy_user *find_user(const struct import *im, const char *legacy_id)
{
    for (size_t i = 0; legacy_id && i < im->nusers; i++)
        if (strcmp(im->users[i].legacy_id, legacy_id) == 0)
            return &im->users[i];
    return NULL;
}

static const struct legacy_food *find_food(const struct import *im, const char *legacy_id)
{
    for (size_t i = 0; legacy_id && i < im->nfoods; i++)
        if (strcmp(im->foods[i].legacy_id, legacy_id) == 0)
            return &im->foods[i];
    return NULL;
}

/* A legacy id may be a JSON string or number; returns it as text in buf, or NULL. */
static const char *legacy_id(json_t *v, char *buf, size_t len)
{
    if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < len)
        return snprintf(buf, len, "%s", json_string_value(v)), buf;
    if (json_is_integer(v))
        return snprintf(buf, len, "%lld", (long long)json_integer_value(v)), buf;
    return NULL;
}

static void show_progress(struct import *im, int force)
{
    time_t now = time(NULL);
    long done = 0, bad = 0;

    if (!im->progress || (!force && now == im->last_progress))
        return;
    im->last_progress = now;
    for (int k = 0; k < K_KINDS; k++)
        done += im->imported[k] + im->skipped[k], bad += im->rejected[k];
    fprintf(stderr, "\rimport-legacy: %ld records, %ld rejected, %ld sent, %ld acknowledged%s",
            done, bad, im->produced, im->delivered, force ? "\n" : "");
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct import *im = opaque;
    if (m->err) {
        im->failed++;
        fprintf(stderr, "import-legacy: delivery failed: %s\n", rd_kafka_err2str(m->err));
    } else {
        im->delivered++;
    }
}

/* True when the database already recorded event_id (imported by an earlier run). */
static int already_applied(struct import *im, const char *event_id)
{
    const char *params[1] = {event_id};
    PGresult *r;
    int found;

    if (!im->pg)
        return 0;
    r = PQexecParams(im->pg, "SELECT 1 FROM processed_events WHERE event_id = $1", 1, NULL, params,
                     NULL, NULL, 0);
    found = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
    PQclear(r);
    return found;
}

/* Produces one event (data is stolen). Returns 0, or -1 when the producer refused it. */
static int emit(struct import *im, int kind, const char *type, const char *user_id,
                const diary_uuid_t *event_id, const char *occurred, json_t *data)
{
    struct evt e;
    size_t len;
    char *value;
    rd_kafka_resp_err_t err;

    memset(&e, 0, sizeof(e));
    uuid_format(event_id, e.id);
    if (already_applied(im, e.id)) {
        im->skipped[kind]++;
        json_decref(data);
        return 0;
    }
    im->imported[kind]++;
    if (im->dry_run) {
        json_decref(data);
        return 0;
    }
    snprintf(e.type, sizeof(e.type), "%s", type);
    snprintf(e.subject, sizeof(e.subject), "%s", user_id);
    snprintf(e.source, sizeof(e.source), "%s", im->source);
    evt_time_now(e.time);
    snprintf(e.requestid, sizeof(e.requestid), "import-legacy-%s", e.id);
    if (occurred)
        snprintf(e.occurredat, sizeof(e.occurredat), "%s", occurred);
    e.data = data;
    value = evt_serialize(&e, &len);
    evt_clear(&e);
    if (!value)
        return -1;
    for (int tries = 0;; tries++) {
        err = rd_kafka_producev(
            im->producer, RD_KAFKA_V_TOPIC(im->topic), RD_KAFKA_V_KEY(user_id, strlen(user_id)),
            RD_KAFKA_V_VALUE(value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_HEADER("request-id", e.requestid, -1),
            RD_KAFKA_V_HEADER("ce_type", type, -1),
            RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json", -1), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries > 100)
            break;
        rd_kafka_poll(im->producer, 100);
    }
    if (err) {
        free(value);
        fprintf(stderr, "import-legacy: produce: %s\n", rd_kafka_err2str(err));
        return -1;
    }
    im->produced++;
    rd_kafka_poll(im->producer, 0);
    show_progress(im, 0);
    return 0;
}

static json_t *load_json(const char *dir, const char *name, int required, char *why, size_t len)
{
    char path[4096];
    json_error_t jerr;
    json_t *j;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (access(path, R_OK) != 0) {
        if (required)
            snprintf(why, len, "%.200s: cannot read it", name);
        else
            why[0] = '\0';
        return NULL;
    }
    j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        snprintf(why, len, "%.200s: line %d: %.200s", name, jerr.line, jerr.text);
    return j;
}

/* The event id of a legacy record: BLAKE2b of "legacy", the record's kind and its legacy ids. */
#define derive(out, ...)                                                                           \
    do {                                                                                           \
        const char *const parts_[] = {__VA_ARGS__};                                                \
        uuid_derive((out), "legacy", parts_, (int)(sizeof(parts_) / sizeof(parts_[0])));           \
    } while (0)

static int import_users(struct import *im, json_t *arr)
{
    size_t i;
    json_t *u;
    char rec[160], why[200], lid[128];

    if (!json_is_array(arr)) {
        reject(im, K_USER, "users.json", "(file)", "must be a JSON array");
        return 0;
    }
    im->users = calloc(json_array_size(arr) + 1, sizeof(*im->users));
    json_array_foreach(arr, i, u)
    {
        const char *id = legacy_id(json_object_get(u, "id"), lid, sizeof(lid));
        const char *hash = json_string_value(json_object_get(u, "passwordHash"));
        const char *email = json_string_value(json_object_get(u, "email"));
        const char *created = json_string_value(json_object_get(u, "createdAt"));
        json_t *body, *errors;
        diary_uuid_t ev, uid;

        snprintf(rec, sizeof(rec), "record %zu (id %s)", i, id ? id : "?");
        if (!id) {
            reject(im, K_USER, "users.json", rec, "id: missing");
            continue;
        }
        if (find_user(im, id)) {
            reject(im, K_USER, "users.json", rec, "id: a second user with this id");
            continue;
        }
        if (!hash ||
            !(strncmp(hash, "$2a$", 4) == 0 || strncmp(hash, "$2b$", 4) == 0 ||
              strncmp(hash, "$2y$", 4) == 0) ||
            strlen(hash) != 60) {
            reject(im, K_USER, "users.json", rec, "passwordHash: not a bcrypt hash ($2a$/$2b$)");
            continue;
        }
        /* The API's rules for email and name; the password rule does not apply (only a hash). */
        body = json_pack("{s:O?, s:O?, s:s}", "email", json_object_get(u, "email"), "name",
                         json_object_get(u, "name"), "password", "Legacy-Pa55!");
        errors = validate_body(validate_schema("user.register"), body);
        json_decref(body);
        if (errors) {
            first_error(errors, why, sizeof(why));
            reject(im, K_USER, "users.json", rec, why);
            continue;
        }
        for (size_t k = 0; k < im->nusers; k++)
            if (strcasecmp(im->users[k].email, email) == 0) {
                snprintf(why, sizeof(why), "email: %s is already used by user %s", email,
                         im->users[k].legacy_id);
                email = NULL;
                break;
            }
        if (!email) {
            reject(im, K_USER, "users.json", rec, why);
            continue;
        }
        derive(&ev, "user", id);
        uuid_child(&uid, &ev, "user");
        struct legacy_user *lu = &im->users[im->nusers++];
        lu->legacy_id = strdup(id);
        uuid_format(&uid, lu->id);
        snprintf(lu->email, sizeof(lu->email), "%s", email);
        if (emit(im, K_USER, "diary.user.registered.v1", lu->id, &ev, created,
                 json_pack("{s:s, s:s, s:O, s:s}", "user_id", lu->id, "email", email, "name",
                           json_object_get(u, "name"), "password_hash", hash)) != 0)
            return -1;
    }
    return 0;
}

static int import_foods(struct import *im, json_t *arr)
{
    size_t i;
    json_t *f;
    char rec[160], why[200], lid[128], uidbuf[128];

    if (!json_is_array(arr)) {
        reject(im, K_FOOD, "foods.json", "(file)", "must be a JSON array");
        return 0;
    }
    im->foods = calloc(json_array_size(arr) + 1, sizeof(*im->foods));
    json_array_foreach(arr, i, f)
    {
        const char *id = legacy_id(json_object_get(f, "id"), lid, sizeof(lid));
        const struct legacy_user *owner =
            find_user(im, legacy_id(json_object_get(f, "userId"), uidbuf, sizeof(uidbuf)));
        json_t *body, *errors;
        diary_uuid_t ev, fid;

        snprintf(rec, sizeof(rec), "record %zu (id %s)", i, id ? id : "?");
        if (!id) {
            reject(im, K_FOOD, "foods.json", rec, "id: missing");
            continue;
        }
        if (find_food(im, id)) {
            reject(im, K_FOOD, "foods.json", rec, "id: a second food with this id");
            continue;
        }
        if (!owner) {
            reject(im, K_FOOD, "foods.json", rec, "userId: no such (imported) user");
            continue;
        }
        body = json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?}", "name", json_object_get(f, "name"),
                         "calories_per_100g", json_object_get(f, "caloriesPer100g"),
                         "protein_per_100g", json_object_get(f, "proteinPer100g"), "carbs_per_100g",
                         json_object_get(f, "carbsPer100g"), "fat_per_100g",
                         json_object_get(f, "fatPer100g"));
        errors = validate_body(validate_schema("food.create"), body);
        if (errors) {
            first_error(errors, why, sizeof(why));
            reject(im, K_FOOD, "foods.json", rec, why);
            json_decref(body);
            continue;
        }
        derive(&ev, "food", id);
        uuid_child(&fid, &ev, "food");
        struct legacy_food *lf = &im->foods[im->nfoods++];
        lf->legacy_id = strdup(id);
        lf->owner = owner;
        uuid_format(&fid, lf->id);
        json_object_set_new(body, "food_id", json_string(lf->id));
        if (emit(im, K_FOOD, "diary.food.created.v1", owner->id, &ev, NULL, body) != 0)
            return -1;
    }
    return 0;
}

static int import_settings(struct import *im, json_t *obj)
{
    const char *lid;
    json_t *s;
    char rec[160], why[200];

    if (!json_is_object(obj)) {
        reject(im, K_SETTINGS, "settings.json", "(file)", "must be a JSON object");
        return 0;
    }
    json_object_foreach(obj, lid, s)
    {
        const struct legacy_user *owner = find_user(im, lid);
        json_t *body, *errors;
        diary_uuid_t ev;

        snprintf(rec, sizeof(rec), "user %s", lid);
        if (!owner) {
            reject(im, K_SETTINGS, "settings.json", rec, "no such (imported) user");
            continue;
        }
        body =
            json_pack("{s:O?, s:O?, s:O?, s:O?}", "unit_system", json_object_get(s, "unitSystem"),
                      "daily_calorie_goal", json_object_get(s, "dailyCalorieGoal"),
                      "protein_percentage", json_object_get(s, "proteinPercentage"),
                      "fat_percentage", json_object_get(s, "fatPercentage"));
        /* Absent legacy fields keep the defaults: drop the nulls. */
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(body, tmp, k, v)
        {
            if (json_is_null(v))
                json_object_del(body, k);
        }
        errors = validate_body(validate_schema("settings.update"), body);
        if (errors) {
            first_error(errors, why, sizeof(why));
            reject(im, K_SETTINGS, "settings.json", rec, why);
            json_decref(body);
            continue;
        }
        derive(&ev, "settings", lid);
        if (emit(im, K_SETTINGS, "diary.settings.updated.v1", owner->id, &ev, NULL, body) != 0)
            return -1;
    }
    return 0;
}

static int import_weights(struct import *im, json_t *obj)
{
    const char *lid;
    json_t *list;
    char rec[160], why[200];

    if (!json_is_object(obj)) {
        reject(im, K_WEIGHT, "weights.json", "(file)", "must be a JSON object");
        return 0;
    }
    json_object_foreach(obj, lid, list)
    {
        const struct legacy_user *owner = find_user(im, lid);
        size_t i;
        json_t *w;

        if (!owner || !json_is_array(list)) {
            snprintf(rec, sizeof(rec), "user %s", lid);
            reject(im, K_WEIGHT, "weights.json", rec,
                   owner ? "must be a list of {date, weight}" : "no such (imported) user");
            continue;
        }
        json_array_foreach(list, i, w)
        {
            const char *date = json_string_value(json_object_get(w, "date"));
            json_t *body, *errors;
            diary_uuid_t ev, wid;

            snprintf(rec, sizeof(rec), "user %s record %zu (date %s)", lid, i, date ? date : "?");
            if (!date || !validate_date(date)) {
                reject(im, K_WEIGHT, "weights.json", rec, "date: must be a date YYYY-MM-DD");
                continue;
            }
            body = json_pack("{s:O?}", "weight", json_object_get(w, "weight"));
            errors = validate_body(validate_schema("weight.set"), body);
            if (errors) {
                first_error(errors, why, sizeof(why));
                reject(im, K_WEIGHT, "weights.json", rec, why);
                json_decref(body);
                continue;
            }
            derive(&ev, "weight", lid, date);
            uuid_child(&wid, &ev, "weight");
            char widtxt[UUID_STRLEN];
            uuid_format(&wid, widtxt);
            json_object_set_new(body, "weight_id", json_string(widtxt));
            json_object_set_new(body, "date", json_string(date));
            if (emit(im, K_WEIGHT, "diary.weight.set.v1", owner->id, &ev, NULL, body) != 0)
                return -1;
        }
    }
    return 0;
}

static int import_day(struct import *im, const struct legacy_user *owner, const char *lid,
                      const char *file, const char *date, json_t *day)
{
    static const char *const meals[] = {"breakfast", "lunch", "dinner", "snack"};
    const char *meal;
    json_t *items;
    char rec[200], why[200], fidbuf[128];

    json_object_foreach(day, meal, items)
    {
        size_t i;
        json_t *it;
        int known = 0;

        for (size_t m = 0; m < 4; m++)
            known |= strcmp(meal, meals[m]) == 0;
        if (!known || !json_is_array(items)) {
            snprintf(rec, sizeof(rec), "meal %s", meal);
            reject(im, K_ENTRY, file, rec,
                   known ? "must be a list of {foodId, amount}"
                         : "not a meal type (breakfast, lunch, dinner, snack)");
            continue;
        }
        json_array_foreach(items, i, it)
        {
            const char *fid = legacy_id(json_object_get(it, "foodId"), fidbuf, sizeof(fidbuf));
            const struct legacy_food *food = find_food(im, fid);
            json_t *body, *errors;
            diary_uuid_t ev, eid;
            char eidtxt[UUID_STRLEN];

            snprintf(rec, sizeof(rec), "%s record %zu (food %s)", meal, i, fid ? fid : "?");
            if (!food || food->owner != owner) {
                reject(im, K_ENTRY, file, rec, "foodId: no such (imported) food of this user");
                continue;
            }
            body = json_pack("{s:O?}", "amount", json_object_get(it, "amount"));
            errors = validate_body(validate_schema("diary.entry.set"), body);
            if (errors) {
                first_error(errors, why, sizeof(why));
                reject(im, K_ENTRY, file, rec, why);
                json_decref(body);
                continue;
            }
            /* The record's place is part of its id: a food listed twice in one meal gives
             * two events for the same entry, applied in file order, so the later amount
             * wins as it did in the old application, and a second run repeats it exactly. */
            char idx[24];
            snprintf(idx, sizeof(idx), "%zu", i);
            derive(&ev, "entry", lid, date, meal, fid, idx);
            uuid_child(&eid, &ev, "entry");
            uuid_format(&eid, eidtxt);
            json_object_set_new(body, "entry_id", json_string(eidtxt));
            json_object_set_new(body, "date", json_string(date));
            json_object_set_new(body, "meal_type", json_string(meal));
            json_object_set_new(body, "food_id", json_string(food->id));
            if (emit(im, K_ENTRY, "diary.entry.set.v1", owner->id, &ev, NULL, body) != 0)
                return -1;
        }
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* meals/<userId>/<date>.json, users and days in sorted order so runs are reproducible. */
static int import_meals(struct import *im)
{
    char base[4096], file[4400], why[512];
    DIR *d;
    struct dirent *de;

    snprintf(base, sizeof(base), "%s/meals", im->dir);
    if (!(d = opendir(base)))
        return 0;
    for (size_t u = 0; u < im->nusers; u++) {
        char udir[4400];
        DIR *ud;
        char **names = NULL;
        size_t n = 0;

        snprintf(udir, sizeof(udir), "%s/%s", base, im->users[u].legacy_id);
        if (!(ud = opendir(udir)))
            continue;
        while ((de = readdir(ud))) {
            if (de->d_name[0] == '.')
                continue;
            char **grown = realloc(names, (n + 1) * sizeof(*names));
            if (!grown)
                break;
            names = grown;
            names[n++] = strdup(de->d_name);
        }
        closedir(ud);
        if (n)
            qsort(names, n, sizeof(*names), name_cmp);
        for (size_t i = 0; i < n; i++) {
            char date[16] = "";
            size_t len = strlen(names[i]);
            json_t *day;
            int rc = 0;

            snprintf(file, sizeof(file), "meals/%s/%s", im->users[u].legacy_id, names[i]);
            if (len == 15 && strcmp(names[i] + 10, ".json") == 0)
                memcpy(date, names[i], 10);
            if (!validate_date(date)) {
                reject(im, K_ENTRY, file, "(file)", "name must be YYYY-MM-DD.json");
            } else if (!(day = load_json(im->dir, file, 1, why, sizeof(why))) ||
                       !json_is_object(day)) {
                reject(im, K_ENTRY, file, "(file)", day ? "must be a JSON object" : why);
                json_decref(day);
            } else {
                rc = import_day(im, &im->users[u], im->users[u].legacy_id, file, date, day);
                json_decref(day);
            }
            free(names[i]);
            if (rc) {
                for (size_t k = i + 1; k < n; k++)
                    free(names[k]);
                free(names);
                closedir(d);
                return -1;
            }
        }
        free(names);
    }
    /* Folders of users that are not (or not validly) in users.json. */
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && !find_user(im, de->d_name)) {
            snprintf(file, sizeof(file), "meals/%s", de->d_name);
            reject(im, K_ENTRY, file, "(folder)", "no such (imported) user");
        }
    closedir(d);
    return 0;
}

static void import_free(struct import *im)
{
    for (size_t i = 0; i < im->nusers; i++)
        free(im->users[i].legacy_id);
    for (size_t i = 0; i < im->nfoods; i++)
        free(im->foods[i].legacy_id);
    free(im->users);
    free(im->foods);
    if (im->producer)
        rd_kafka_destroy(im->producer);
    PQfinish(im->pg);
}

static void summary(const struct import *im)
{
    long bad = 0;

    for (int k = 0; k < K_KINDS; k++)
        bad += im->rejected[k];
    if (im->json) {
        json_t *o = json_pack("{s:s, s:b, s:I, s:I, s:I}", "level", "summary", "dry_run",
                              im->dry_run, "sent", (json_int_t)im->produced, "acknowledged",
                              (json_int_t)im->delivered, "failed", (json_int_t)im->failed);
        for (int k = 0; k < K_KINDS; k++)
            json_object_set_new(
                o, kind_names[k],
                json_pack("{s:I, s:I, s:I}", "imported", (json_int_t)im->imported[k], "skipped",
                          (json_int_t)im->skipped[k], "rejected", (json_int_t)im->rejected[k]));
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
        free(s);
        json_decref(o);
        return;
    }
    printf("%-14s %9s %9s %9s\n", "", im->dry_run ? "to import" : "imported", "skipped",
           "rejected");
    for (int k = 0; k < K_KINDS; k++)
        printf("%-14s %9ld %9ld %9ld\n", kind_names[k], im->imported[k], im->skipped[k],
               im->rejected[k]);
    printf("%s%ld events sent, %ld acknowledged by the broker; %ld rejected records "
           "(listed above); skipped = already in the database\n",
           im->dry_run ? "dry run: nothing sent. " : "", im->produced, im->delivered, bad);
}

int ctl_import_legacy(int argc, char **argv)
{
    static const struct option opts[] = {{"dry-run", no_argument, NULL, 'n'},
                                         {"url", required_argument, NULL, 'u'},
                                         {"bootstrap", required_argument, NULL, 'b'},
                                         {"topic", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct import im;
    const char *url = config_str("PG_PRIMARY_URL"), *bflag = NULL, *bootstrap;
    json_t *users = NULL, *foods = NULL, *settings = NULL, *weights = NULL;
    char err[512];
    int c, rc = CTL_FAIL;

    memset(&im, 0, sizeof(im));
    im.topic = config_str("DIARY_EVENTS_TOPIC");
    snprintf(im.source, sizeof(im.source), "diaryctl/import-legacy");
    optind = 1;
    while ((c = getopt_long(argc, argv, "nu:b:t:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            im.dry_run = 1;
            break;
        case 'u':
            url = optarg;
            break;
        case 'b':
            bflag = optarg;
            break;
        case 't':
            im.topic = optarg;
            break;
        case 'j':
            im.json = 1;
            break;
        case 'h':
            printf("usage: diaryctl import-legacy [--dry-run] [--json] [--url DB] "
                   "[--bootstrap B] DIR\n"
                   "Produces the old application's users, foods, settings, weights and meals "
                   "as events.\n");
            return CTL_OK;
        default:
            return CTL_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "diaryctl import-legacy: want one folder (the legacy data)\n");
        return CTL_USAGE;
    }
    im.dir = argv[optind];
    im.progress = !im.json && isatty(STDERR_FILENO);
    if (!(users = load_json(im.dir, "users.json", 1, err, sizeof(err)))) {
        fprintf(stderr, "diaryctl import-legacy: %s\n", err);
        return CTL_USAGE;
    }
    foods = load_json(im.dir, "foods.json", 0, err, sizeof(err));
    if (!foods && err[0]) {
        fprintf(stderr, "diaryctl import-legacy: %s\n", err);
        goto out;
    }
    settings = load_json(im.dir, "settings.json", 0, err, sizeof(err));
    if (!settings && err[0]) {
        fprintf(stderr, "diaryctl import-legacy: %s\n", err);
        goto out;
    }
    weights = load_json(im.dir, "weights.json", 0, err, sizeof(err));
    if (!weights && err[0]) {
        fprintf(stderr, "diaryctl import-legacy: %s\n", err);
        goto out;
    }
    /* The database tells which events an earlier run already brought in; without one,
     * everything is sent and the workers skip what they already applied. */
    if (url) {
        im.pg = PQconnectdb(url);
        if (PQstatus(im.pg) != CONNECTION_OK) {
            fprintf(stderr, "diaryctl import-legacy: cannot connect to %s: %s", url,
                    PQerrorMessage(im.pg));
            goto out;
        }
    }
    if (!im.dry_run) {
        rd_kafka_conf_t *conf;

        if (!(bootstrap = ctl_bootstrap(bflag)))
            goto out;
        if (!(conf = kafka_conf_new(bootstrap, "diaryctl-import", kafka_producer_settings, err,
                                    sizeof(err)))) {
            fprintf(stderr, "diaryctl import-legacy: %s\n", err);
            goto out;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_conf_set_opaque(conf, &im);
        if (!(im.producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)))) {
            rd_kafka_conf_destroy(conf);
            fprintf(stderr, "diaryctl import-legacy: %s\n", err);
            goto out;
        }
    }
    if (import_users(&im, users) || (foods && import_foods(&im, foods)) ||
        (settings && import_settings(&im, settings)) || (weights && import_weights(&im, weights)) ||
        import_meals(&im))
        goto out;
    if (im.producer) {
        while (rd_kafka_outq_len(im.producer) > 0) {
            rd_kafka_poll(im.producer, 100);
            show_progress(&im, 0);
        }
    }
    show_progress(&im, 1);
    summary(&im);
    rc = im.failed ? CTL_FAIL : CTL_OK;
out:
    json_decref(users);
    json_decref(foods);
    json_decref(settings);
    json_decref(weights);
    import_free(&im);
    return rc;
}
