#include "apply_event.h"

#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

/* numeric(8, 2) holds up to 999999.99; a value that rounds to a million overflows it. */
#define NUMERIC_8_2_LIMIT 999999.995
#define VARCHAR_LIMIT     255

#define COMMON_PARAMS APPLY_COMMON_PARAMS

/* Characters, not bytes: varchar(n) counts characters, and the strings are UTF-8 (jansson
 * only hands out valid UTF-8). */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static int add(struct apply_bind *b, const char *v)
{
    if (b->count >= APPLY_BIND_MAX)
        return -1;
    b->values[b->count++] = v;
    return 0;
}

/* A string member of data with 1..VARCHAR_LIMIT characters and no NUL (text cannot hold
 * one). */
static int bind_string(const struct evt *e, const char *key, struct apply_bind *b, char *err,
                       size_t errlen)
{
    json_t *v = json_object_get(e->data, key);
    const char *s = json_string_value(v);

    if (!s || strlen(s) != json_string_length(v) || !*s || utf8_chars(s) > VARCHAR_LIMIT) {
        snprintf(err, errlen, "data.%s must be a string of 1 to %d characters", key, VARCHAR_LIMIT);
        return -1;
    }
    return add(b, s);
}

static int bind_uuid(const struct evt *e, const char *key, struct apply_bind *b, char *err,
                     size_t errlen)
{
    const char *s = json_string_value(json_object_get(e->data, key));

    if (!s || !uuid_valid(s)) {
        snprintf(err, errlen, "data.%s must be a UUID", key);
        return -1;
    }
    return add(b, s);
}

/* A number of data that fits numeric(8, 2): above min (or at it when !exclusive). */
static int bind_number(const struct evt *e, const char *key, double min, int exclusive,
                       struct apply_bind *b, char *err, size_t errlen)
{
    json_t *v = json_object_get(e->data, key);
    double d = json_number_value(v);
    char *out;

    if (!json_is_number(v) || d < min || (exclusive && d <= min) || d >= NUMERIC_8_2_LIMIT) {
        snprintf(err, errlen, "data.%s must be a number %s %g and below 1000000", key,
                 exclusive ? "above" : "of at least", min);
        return -1;
    }
    if (b->nnumbers >= (int)(sizeof(b->numbers) / sizeof(b->numbers[0])))
        return -1;
    out = b->numbers[b->nnumbers++];
    if (json_is_integer(v))
        snprintf(out, sizeof(b->numbers[0]), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(out, sizeof(b->numbers[0]), "%.15g", d);
    return add(b, out);
}

static int bind_user_registered(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    const char *uid = json_string_value(json_object_get(e->data, "user_id"));
    const char *email = json_string_value(json_object_get(e->data, "email"));
    diary_uuid_t a, s;

    /* The new user's id is the subject; data repeats it and the two must agree. */
    if (!uid || uuid_parse(uid, &a) != 0 || uuid_parse(e->subject, &s) != 0 ||
        memcmp(a.b, s.b, sizeof(a.b)) != 0) {
        snprintf(err, errlen, "data.user_id must be the subject's UUID");
        return -1;
    }
    if (!email || !validate_email(email)) {
        snprintf(err, errlen, "data.email must be an email address");
        return -1;
    }
    return bind_string(e, "email", b, err, errlen) || bind_string(e, "name", b, err, errlen) ||
                   bind_string(e, "password_hash", b, err, errlen)
               ? -1
               : 0;
}

static int bind_food_created(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    return bind_uuid(e, "food_id", b, err, errlen) || bind_string(e, "name", b, err, errlen) ||
                   bind_number(e, "calories_per_100g", 0, 0, b, err, errlen) ||
                   bind_number(e, "protein_per_100g", 0, 0, b, err, errlen) ||
                   bind_number(e, "carbs_per_100g", 0, 0, b, err, errlen) ||
                   bind_number(e, "fat_per_100g", 0, 0, b, err, errlen)
               ? -1
               : 0;
}

static int bind_entry_set(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    const char *date = json_string_value(json_object_get(e->data, "date"));
    const char *meal = json_string_value(json_object_get(e->data, "meal_type"));

    if (bind_uuid(e, "entry_id", b, err, errlen))
        return -1;
    if (!date || !validate_date(date)) {
        snprintf(err, errlen, "data.date must be a date (YYYY-MM-DD)");
        return -1;
    }
    if (!meal || !validate_meal_type(meal)) {
        snprintf(err, errlen, "data.meal_type must be breakfast, lunch, dinner or snack");
        return -1;
    }
    if (add(b, date) || add(b, meal))
        return -1;
    return bind_uuid(e, "food_id", b, err, errlen) || bind_number(e, "amount", 0, 1, b, err, errlen)
               ? -1
               : 0;
}

/* FNV-1a over a label and the parts, each followed by a NUL so that ("ab", "c") and
 * ("a", "bc") differ. ASCII letters are folded to lower case when fold is set (emails). */
static uint64_t key_hash(const char *label, const char *a, const char *b, const char *c,
                         const char *d, int fold)
{
    const char *parts[5] = {label, a, b, c, d};
    uint64_t h = 1469598103934665603ull;

    for (int i = 0; i < 5 && parts[i]; i++) {
        for (const unsigned char *p = (const unsigned char *)parts[i]; *p; p++) {
            unsigned char ch = fold && *p >= 'A' && *p <= 'Z' ? (unsigned char)(*p + 32) : *p;
            h = (h ^ ch) * 1099511628211ull;
        }
        h = (h ^ 0) * 1099511628211ull;
    }
    return h;
}

static struct apply_key key(uint64_t hash, int write)
{
    struct apply_key k = {hash, write};
    return k;
}

struct apply_key apply_event_id_key(const char *event_id)
{
    return key(key_hash("event", event_id, NULL, NULL, NULL, 1), 1);
}

/* A registration claims the user id and the email (case-folded as lower(email) is; a
 * non-ASCII case difference is not folded, and then the unique index stops the round and
 * the batch falls back to one event per transaction). */
static size_t keys_user_registered(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = key(key_hash("user", b->values[1], NULL, NULL, NULL, 1), 1);
    k[2] = key(key_hash("email", b->values[11], NULL, NULL, NULL, 1), 1);
    return 3;
}

/* A food reads its user and creates the food. */
static size_t keys_food_created(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = key(key_hash("user", b->values[1], NULL, NULL, NULL, 1), 0);
    k[2] = key(key_hash("food", b->values[11], NULL, NULL, NULL, 1), 1);
    return 3;
}

/* An entry reads its food and writes the (user, date, meal, food) row. */
static size_t keys_entry_set(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = key(key_hash("food", b->values[14], NULL, NULL, NULL, 1), 0);
    k[2] = key(key_hash("meal", b->values[1], b->values[12], b->values[13], b->values[14], 1), 1);
    return 3;
}

static const char *const fields_user_registered[] = {"email", "name", "password_hash"};
static const char *const fields_food_created[] = {
    "food_id", "name", "calories_per_100g", "protein_per_100g", "carbs_per_100g", "fat_per_100g"};
static const char *const fields_entry_set[] = {"entry_id", "date", "meal_type", "food_id",
                                               "amount"};

/* The event types the worker applies (docs/events.md, "Event types"). */
static const struct apply_event_type event_types[] = {
    {"diary.user.registered.v1", "diary_apply_user_registered", COMMON_PARAMS + 3,
     bind_user_registered, "diary_apply_users", fields_user_registered, keys_user_registered},
    {"diary.food.created.v1", "diary_apply_food_created", COMMON_PARAMS + 6, bind_food_created,
     "diary_apply_foods", fields_food_created, keys_food_created},
    {"diary.entry.set.v1", "diary_apply_entry_set", COMMON_PARAMS + 5, bind_entry_set,
     "diary_apply_entries", fields_entry_set, keys_entry_set},
};

const struct apply_event_type *apply_event_types(size_t *count)
{
    *count = sizeof(event_types) / sizeof(event_types[0]);
    return event_types;
}

const struct apply_event_type *apply_event_type_find(const char *type)
{
    for (size_t i = 0; type && i < sizeof(event_types) / sizeof(event_types[0]); i++)
        if (strcmp(event_types[i].type, type) == 0)
            return &event_types[i];
    return NULL;
}

/* An RFC 3339 timestamp as ingest writes it: a calendar date, 'T', hh:mm:ss, an optional
 * fraction, and Z or an offset. PostgreSQL parses it; this only keeps what it would refuse
 * (or read differently) out of the batch. */
static int time_valid(const char *s)
{
    char date[11];
    int h, mi, sec, n = 0;
    const char *p;

    if (strlen(s) < 20 || s[10] != 'T')
        return 0;
    memcpy(date, s, 10);
    date[10] = '\0';
    if (!validate_date(date) || sscanf(s + 11, "%2d:%2d:%2d%n", &h, &mi, &sec, &n) != 3 || n != 8 ||
        h > 23 || mi > 59 || sec > 60 || h < 0 || mi < 0 || sec < 0)
        return 0;
    p = s + 19;
    if (*p == '.') {
        if (p[1] < '0' || p[1] > '9')
            return 0;
        for (p++; *p >= '0' && *p <= '9'; p++)
            ;
    }
    if (strcmp(p, "Z") == 0)
        return 1;
    return (p[0] == '+' || p[0] == '-') && strlen(p) == 6 && p[3] == ':' && p[1] >= '0' &&
           p[1] <= '9' && p[2] >= '0' && p[2] <= '9' && p[4] >= '0' && p[4] <= '5' && p[5] >= '0' &&
           p[5] <= '9';
}

const struct apply_event_type *apply_event_bind(const struct evt *e, const struct apply_meta *m,
                                                struct apply_bind *b, char *err, size_t errlen)
{
    const struct apply_event_type *t = apply_event_type_find(e->type);
    const char *rid = e->requestid[0] ? e->requestid : m->request_id;

    memset(b, 0, sizeof(*b));
    if (!t) {
        snprintf(err, errlen, "unknown event type \"%s\"", e->type);
        return NULL;
    }
    if (!time_valid(e->time)) {
        snprintf(err, errlen, "envelope: time \"%s\" is not an RFC 3339 timestamp", e->time);
        return NULL;
    }
    snprintf(b->partition, sizeof(b->partition), "%" PRId32, m->partition);
    snprintf(b->offset, sizeof(b->offset), "%" PRId64, m->offset);
    if (e->ifmatch > 0)
        snprintf(b->ifmatch, sizeof(b->ifmatch), "%" PRId64, e->ifmatch);
    /* The order is the functions' leading parameters (0002_apply.sql). */
    add(b, e->id);
    add(b, e->subject);
    add(b, e->type);
    add(b, b->partition);
    add(b, b->offset);
    add(b, m->hash_hex);
    add(b, e->time);
    add(b, e->ifmatch > 0 ? b->ifmatch : NULL);
    add(b, rid && *rid ? rid : NULL);
    add(b, m->topic);
    add(b, m->source);
    if (t->bind(e, b, err, errlen) != 0)
        return NULL;
    if (b->count != t->nparams) {
        snprintf(err, errlen, "%s: bound %d parameters, the function takes %d", t->type, b->count,
                 t->nparams);
        return NULL;
    }
    return t;
}

int apply_event_sql(const struct apply_event_type *t, char *out, size_t outlen)
{
    size_t used;
    int n =
        snprintf(out, outlen, "SELECT out_status, out_reason, out_resource FROM %s(", t->function);

    if (n < 0 || (size_t)n >= outlen)
        return -1;
    used = (size_t)n;
    for (int i = 1; i <= t->nparams; i++) {
        n = snprintf(out + used, outlen - used, "%s$%d", i > 1 ? ", " : "", i);
        if (n < 0 || (size_t)n >= outlen - used)
            return -1;
        used += (size_t)n;
    }
    if (used + 2 > outlen)
        return -1;
    memcpy(out + used, ")", 2);
    return 0;
}

/* The last rounds that wrote and read a key. */
struct slot {
    uint64_t hash;
    unsigned written, read; /* 0: never */
    int used;
};

int apply_schedule(size_t n, const struct apply_key *keys, const size_t *first, unsigned *rounds)
{
    size_t cap = 16, nkeys = first[n];
    struct slot *t;
    int max = 0;

    while (cap < nkeys * 2)
        cap *= 2;
    t = calloc(cap, sizeof(*t));
    if (!t)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned r = 1;
        struct slot *s[APPLY_KEYS_MAX * 4];
        size_t ns = 0;

        for (size_t k = first[i]; k < first[i + 1] && ns < sizeof(s) / sizeof(s[0]); k++) {
            size_t j = (size_t)keys[k].hash & (cap - 1);

            while (t[j].used && t[j].hash != keys[k].hash)
                j = (j + 1) & (cap - 1);
            t[j].used = 1;
            t[j].hash = keys[k].hash;
            s[ns++] = &t[j];
            if (t[j].written + 1 > r)
                r = t[j].written + 1;
            if (keys[k].write && t[j].read + 1 > r)
                r = t[j].read + 1;
        }
        for (size_t k = 0; k < ns; k++) {
            if (keys[first[i] + k].write)
                s[k]->written = r;
            else if (s[k]->read < r)
                s[k]->read = r;
        }
        rounds[i] = r;
        if ((int)r > max)
            max = (int)r;
    }
    free(t);
    return max;
}

void apply_payload_hash(const void *buf, size_t len, char out[APPLY_HASH_HEXLEN])
{
    unsigned char h[32];

    crypto_generichash(h, sizeof(h), buf, len, NULL, 0);
    out[0] = '\\';
    out[1] = 'x';
    sodium_bin2hex(out + 2, APPLY_HASH_HEXLEN - 2, h, sizeof(h));
}

static void salvage_str(json_t *o, const char *key, char *dst, size_t dstlen, int need_uuid)
{
    json_t *v = json_object_get(o, key);
    const char *s = json_string_value(v);

    dst[0] = '\0';
    if (!s || json_string_length(v) >= dstlen || strlen(s) != json_string_length(v))
        return;
    if (need_uuid && !uuid_valid(s))
        return;
    memcpy(dst, s, strlen(s) + 1);
}

void apply_event_salvage(const void *buf, size_t len, char id[UUID_STRLEN],
                         char subject[UUID_STRLEN], char type[APPLY_TYPELEN])
{
    json_t *o = NULL;

    id[0] = subject[0] = type[0] = '\0';
    if (len <= EVT_MAX_SIZE)
        o = json_loadb(buf, len, 0, NULL);
    if (json_is_object(o)) {
        salvage_str(o, "id", id, UUID_STRLEN, 1);
        salvage_str(o, "subject", subject, UUID_STRLEN, 1);
        salvage_str(o, "type", type, APPLY_TYPELEN, 0);
    }
    json_decref(o);
}

char *apply_dead_letter_json(const struct apply_dead_letter_info *dl, size_t *len)
{
    char now[EVT_TIMELEN];
    json_t *o, *ev;
    char *s = NULL;

    if (!dl->time)
        evt_time_now(now);
    ev = json_stringn(dl->value ? dl->value : "", dl->value ? dl->len : 0);
    o = json_pack("{s:o?, s:s, s:s, s:i, s:s, s:i, s:I, s:s}", "event", ev, "error",
                  dl->error ? dl->error : "", "worker", dl->worker ? dl->worker : "", "attempts",
                  dl->attempts, "topic", dl->topic ? dl->topic : "", "partition",
                  (int)dl->partition, "offset", (json_int_t)dl->offset, "time",
                  dl->time ? dl->time : now);
    if (!o)
        return NULL;
    if (!ev) {
        /* Not UTF-8: "event" stays null and the bytes travel in base64. */
        size_t blen = sodium_base64_encoded_len(dl->len, sodium_base64_VARIANT_ORIGINAL);
        char *b64 = malloc(blen);

        if (!b64)
            goto done;
        sodium_bin2base64(b64, blen, dl->value, dl->len, sodium_base64_VARIANT_ORIGINAL);
        json_object_set_new(o, "event", json_null());
        json_object_set_new(o, "event_base64", json_string(b64));
        free(b64);
    }
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s && len)
        *len = strlen(s);
done:
    json_decref(o);
    return s;
}
