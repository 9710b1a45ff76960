#include "apply_event.h"

#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

/* numeric(p, 2) holds values that round (half away from zero) below 10^(p-2); a value that
 * rounds to it overflows. The percentages also have CHECK (... BETWEEN 0 AND 100). */
#define NUMERIC_8_2_LIMIT 999999.995
#define NUMERIC_5_2_LIMIT 999.995
#define PERCENT_LIMIT     100.005
#define VARCHAR_LIMIT     255
#define INTEGER_MAX       2147483647

#define COMMON_PARAMS APPLY_COMMON_PARAMS

/* The index in apply_bind.values of the type's own parameter k, and of the subject. */
#define P(k)        (COMMON_PARAMS + (k))
#define SUBJECT_IDX 1

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

/* An optional member: absent, it binds SQL NULL ("keep the stored value"); present, it must
 * be what the required form accepts (null is ill-typed too). */
static int bind_opt_string(const struct evt *e, const char *key, struct apply_bind *b, char *err,
                           size_t errlen)
{
    if (!json_object_get(e->data, key))
        return add(b, NULL);
    return bind_string(e, key, b, err, errlen);
}

/* An email address (also a string of at most VARCHAR_LIMIT characters). */
static int bind_email(const struct evt *e, const char *key, struct apply_bind *b, char *err,
                      size_t errlen)
{
    const char *s = json_string_value(json_object_get(e->data, key));

    if (!s || !validate_email(s)) {
        snprintf(err, errlen, "data.%s must be an email address", key);
        return -1;
    }
    return bind_string(e, key, b, err, errlen);
}

static int bind_opt_email(const struct evt *e, const char *key, struct apply_bind *b, char *err,
                          size_t errlen)
{
    if (!json_object_get(e->data, key))
        return add(b, NULL);
    return bind_email(e, key, b, err, errlen);
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

static int bind_date(const struct evt *e, const char *key, struct apply_bind *b, char *err,
                     size_t errlen)
{
    const char *s = json_string_value(json_object_get(e->data, key));

    if (!s || !validate_date(s)) {
        snprintf(err, errlen, "data.%s must be a date (YYYY-MM-DD)", key);
        return -1;
    }
    return add(b, s);
}

static int bind_meal(const struct evt *e, const char *key, struct apply_bind *b, char *err,
                     size_t errlen)
{
    const char *s = json_string_value(json_object_get(e->data, key));

    if (!s || !validate_meal_type(s)) {
        snprintf(err, errlen, "data.%s must be breakfast, lunch, dinner or snack", key);
        return -1;
    }
    return add(b, s);
}

static int bind_time(const struct evt *e, const char *key, struct apply_bind *b, char *err,
                     size_t errlen)
{
    const char *s = json_string_value(json_object_get(e->data, key));

    if (!s || !time_valid(s)) {
        snprintf(err, errlen, "data.%s must be an RFC 3339 timestamp", key);
        return -1;
    }
    return add(b, s);
}

static int bind_bool(const struct evt *e, const char *key, struct apply_bind *b, char *err,
                     size_t errlen)
{
    json_t *v = json_object_get(e->data, key);

    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "data.%s must be true or false", key);
        return -1;
    }
    return add(b, json_is_true(v) ? "true" : "false");
}

/* The text of a number of data into the bind's own buffer (an integer as such, a real with
 * enough digits to read back the same double). */
static int add_number(json_t *v, struct apply_bind *b)
{
    char *out;

    if (b->nnumbers >= (int)(sizeof(b->numbers) / sizeof(b->numbers[0])))
        return -1;
    out = b->numbers[b->nnumbers++];
    if (json_is_integer(v))
        snprintf(out, sizeof(b->numbers[0]), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(out, sizeof(b->numbers[0]), "%.15g", json_number_value(v));
    return add(b, out);
}

/* A number of data that fits its column: at least min (above it when exclusive) and below
 * limit, the first value the column cannot hold; shown is how the message names the top. */
static int bind_number(const struct evt *e, const char *key, double min, int exclusive,
                       double limit, const char *shown, struct apply_bind *b, char *err,
                       size_t errlen)
{
    json_t *v = json_object_get(e->data, key);
    double d = json_number_value(v);

    if (!json_is_number(v) || d < min || (exclusive && d <= min) || d >= limit) {
        snprintf(err, errlen, "data.%s must be a number %s %g and at most %s", key,
                 exclusive ? "above" : "of at least", min, shown);
        return -1;
    }
    return add_number(v, b);
}

/* The four numbers of a food, numeric(8, 2) each. */
static int bind_food_numbers(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    static const char *const keys[] = {"calories_per_100g", "protein_per_100g", "carbs_per_100g",
                                       "fat_per_100g"};

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (bind_number(e, keys[i], 0, 0, NUMERIC_8_2_LIMIT, "999999.99", b, err, errlen))
            return -1;
    return 0;
}

static int bind_user_registered(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    const char *uid = json_string_value(json_object_get(e->data, "user_id"));
    diary_uuid_t a, s;

    /* The new user's id is the subject; data repeats it and the two must agree. */
    if (!uid || uuid_parse(uid, &a) != 0 || uuid_parse(e->subject, &s) != 0 ||
        memcmp(a.b, s.b, sizeof(a.b)) != 0) {
        snprintf(err, errlen, "data.user_id must be the subject's UUID");
        return -1;
    }
    return bind_email(e, "email", b, err, errlen) || bind_string(e, "name", b, err, errlen) ||
                   bind_string(e, "password_hash", b, err, errlen)
               ? -1
               : 0;
}

/* Name and email, each optional. */
static int bind_user_updated(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    return bind_opt_string(e, "name", b, err, errlen) || bind_opt_email(e, "email", b, err, errlen)
               ? -1
               : 0;
}

static int bind_user_password_changed(const struct evt *e, struct apply_bind *b, char *err,
                                      size_t errlen)
{
    return bind_string(e, "password_hash", b, err, errlen) || bind_bool(e, "revoke", b, err, errlen)
               ? -1
               : 0;
}

/* No data: the subject is the user. */
static int bind_nothing(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    return 0;
}

static int bind_session_revoked(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    return bind_uuid(e, "session_id", b, err, errlen) || bind_time(e, "expires_at", b, err, errlen)
               ? -1
               : 0;
}

/* food.created and food.updated carry the same fields. */
static int bind_food(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    return bind_uuid(e, "food_id", b, err, errlen) || bind_string(e, "name", b, err, errlen) ||
                   bind_food_numbers(e, b, err, errlen)
               ? -1
               : 0;
}

static int bind_food_deleted(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    return bind_uuid(e, "food_id", b, err, errlen);
}

static int bind_entry_set(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    return bind_uuid(e, "entry_id", b, err, errlen) || bind_date(e, "date", b, err, errlen) ||
                   bind_meal(e, "meal_type", b, err, errlen) ||
                   bind_uuid(e, "food_id", b, err, errlen) ||
                   bind_number(e, "amount", 0, 1, NUMERIC_8_2_LIMIT, "999999.99", b, err, errlen)
               ? -1
               : 0;
}

static int bind_entry_removed(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    return bind_date(e, "date", b, err, errlen) || bind_meal(e, "meal_type", b, err, errlen) ||
                   bind_uuid(e, "food_id", b, err, errlen)
               ? -1
               : 0;
}

/* weight_entries.weight is numeric(5, 2) and positive. */
static int bind_weight_set(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    return bind_uuid(e, "weight_id", b, err, errlen) || bind_date(e, "date", b, err, errlen) ||
                   bind_number(e, "weight", 0, 1, NUMERIC_5_2_LIMIT, "999.99", b, err, errlen)
               ? -1
               : 0;
}

static int bind_weight_removed(const struct evt *e, struct apply_bind *b, char *err, size_t errlen)
{
    return bind_date(e, "date", b, err, errlen);
}

/* Every field optional (absent: keep the stored value), each checked against its column:
 * unit_system metric or imperial, daily_calorie_goal a positive integer, the percentages
 * numeric(5, 2) between 0 and 100. Whether protein and fat together exceed 100 depends on
 * the stored values: the database decides that (invalid_settings). */
static int bind_settings_updated(const struct evt *e, struct apply_bind *b, char *err,
                                 size_t errlen)
{
    static const char *const percents[] = {"protein_percentage", "fat_percentage"};
    json_t *v;
    const char *s;

    if (!json_object_get(e->data, "unit_system")) {
        if (add(b, NULL))
            return -1;
    } else {
        s = json_string_value(json_object_get(e->data, "unit_system"));
        if (!s || (strcmp(s, "metric") != 0 && strcmp(s, "imperial") != 0)) {
            snprintf(err, errlen, "data.unit_system must be metric or imperial");
            return -1;
        }
        if (add(b, s))
            return -1;
    }
    v = json_object_get(e->data, "daily_calorie_goal");
    if (!v) {
        if (add(b, NULL))
            return -1;
    } else {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > INTEGER_MAX) {
            snprintf(err, errlen, "data.daily_calorie_goal must be an integer from 1 to %d",
                     INTEGER_MAX);
            return -1;
        }
        if (add_number(v, b))
            return -1;
    }
    for (size_t i = 0; i < sizeof(percents) / sizeof(percents[0]); i++) {
        if (!json_object_get(e->data, percents[i])) {
            if (add(b, NULL))
                return -1;
        } else if (bind_number(e, percents[i], 0, 0, PERCENT_LIMIT, "100", b, err, errlen)) {
            return -1;
        }
    }
    return 0;
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

/* The keys every type uses. The user key stands for the users row and, through the
 * cascade of a user's deletion, for every row of that user: each event of a user reads it
 * (so it orders after a deletion or registration), the types that change the users row
 * write it. "emails" stands for the set of all emails: a change or deletion that may free
 * one writes it, each registration reads it, so a registration never shares a round with
 * the change that freed (or took) its email. */
static struct apply_key user_key(const struct apply_bind *b, int write)
{
    return key(key_hash("user", b->values[SUBJECT_IDX], NULL, NULL, NULL, 1), write);
}

static struct apply_key emails_key(int write)
{
    return key(key_hash("emails", NULL, NULL, NULL, NULL, 1), write);
}

static struct apply_key email_key(const char *email)
{
    return key(key_hash("email", email, NULL, NULL, NULL, 1), 1);
}

static struct apply_key food_key(const char *food_id, int write)
{
    return key(key_hash("food", food_id, NULL, NULL, NULL, 1), write);
}

/* The (user, date, meal, food) row of daily_meals. */
static struct apply_key meal_key(const struct apply_bind *b, const char *date, const char *meal,
                                 const char *food)
{
    return key(key_hash("meal", b->values[SUBJECT_IDX], date, meal, food, 1), 1);
}

/* A registration claims the user id and the email (case-folded as lower(email) is; a
 * non-ASCII case difference is not folded, and then the unique index stops the round and
 * the batch falls back to one event per transaction). */
static size_t keys_user_registered(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = user_key(b, 1);
    k[2] = email_key(b->values[P(0)]);
    k[3] = emails_key(0);
    return 4;
}

/* A change of email claims the new one and may free the old one. */
static size_t keys_user_updated(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = user_key(b, 1);
    if (!b->values[P(1)])
        return 2;
    k[2] = email_key(b->values[P(1)]);
    k[3] = emails_key(1);
    return 4;
}

static size_t keys_user_password_changed(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = user_key(b, 1);
    return 2;
}

/* A deletion removes every row of the user and frees the email. */
static size_t keys_user_deleted(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = user_key(b, 1);
    k[2] = emails_key(1);
    return 3;
}

static size_t keys_session_revoked(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = user_key(b, 0);
    k[2] = key(key_hash("session", b->values[P(0)], NULL, NULL, NULL, 1), 1);
    return 3;
}

/* A food's creation, change or deletion writes the food (a deletion also its entries, which
 * every entry event reads the food for). */
static size_t keys_food(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = user_key(b, 0);
    k[2] = food_key(b->values[P(0)], 1);
    return 3;
}

/* An entry reads its user and food and writes the (user, date, meal, food) row. */
static size_t keys_entry_set(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = user_key(b, 0);
    k[2] = food_key(b->values[P(3)], 0);
    k[3] = meal_key(b, b->values[P(1)], b->values[P(2)], b->values[P(3)]);
    return 4;
}

static size_t keys_entry_removed(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = user_key(b, 0);
    k[2] = food_key(b->values[P(2)], 0);
    k[3] = meal_key(b, b->values[P(0)], b->values[P(1)], b->values[P(2)]);
    return 4;
}

/* weight.set (date is its second parameter) and weight.removed (its first) write the
 * (user, date) row. */
static size_t keys_weight(const struct apply_bind *b, const char *date, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = user_key(b, 0);
    k[2] = key(key_hash("weight", b->values[SUBJECT_IDX], date, NULL, NULL, 1), 1);
    return 3;
}

static size_t keys_weight_set(const struct apply_bind *b, struct apply_key k[])
{
    return keys_weight(b, b->values[P(1)], k);
}

static size_t keys_weight_removed(const struct apply_bind *b, struct apply_key k[])
{
    return keys_weight(b, b->values[P(0)], k);
}

static size_t keys_settings_updated(const struct apply_bind *b, struct apply_key k[])
{
    k[0] = apply_event_id_key(b->values[0]);
    k[1] = user_key(b, 0);
    k[2] = key(key_hash("settings", b->values[SUBJECT_IDX], NULL, NULL, NULL, 1), 1);
    return 3;
}

static const char *const fields_user_registered[] = {"email", "name", "password_hash"};
static const char *const fields_user_updated[] = {"name", "email"};
static const char *const fields_user_password_changed[] = {"password_hash", "revoke"};
static const char *const fields_session_revoked[] = {"session_id", "expires_at"};
static const char *const fields_food[] = {"food_id",          "name",           "calories_per_100g",
                                          "protein_per_100g", "carbs_per_100g", "fat_per_100g"};
static const char *const fields_food_deleted[] = {"food_id"};
static const char *const fields_entry_set[] = {"entry_id", "date", "meal_type", "food_id",
                                               "amount"};
static const char *const fields_entry_removed[] = {"date", "meal_type", "food_id"};
static const char *const fields_weight_set[] = {"weight_id", "date", "weight"};
static const char *const fields_weight_removed[] = {"date"};
static const char *const fields_settings_updated[] = {"unit_system", "daily_calorie_goal",
                                                      "protein_percentage", "fat_percentage"};

#define NFIELDS(f) (COMMON_PARAMS + (int)(sizeof(f) / sizeof((f)[0])))

/* The event types the worker applies (docs/events.md, "Event types"): type, per-event
 * function, its parameter count, data check, set-based function (NULL: the rare user types,
 * which the set-based path sends to the per-event function in their round), fields, keys,
 * columns or JSON, and the set-based function that writes the outbox itself (or NULL). */
static const struct apply_event_type event_types[] = {
    {"diary.user.registered.v1", "diary_apply_user_registered", NFIELDS(fields_user_registered),
     bind_user_registered, "diary_apply_users", fields_user_registered, keys_user_registered, false,
     NULL},
    {"diary.user.updated.v1", "diary_apply_user_updated", NFIELDS(fields_user_updated),
     bind_user_updated, NULL, fields_user_updated, keys_user_updated, false, NULL},
    {"diary.user.password_changed.v1", "diary_apply_user_password_changed",
     NFIELDS(fields_user_password_changed), bind_user_password_changed, NULL,
     fields_user_password_changed, keys_user_password_changed, false, NULL},
    {"diary.user.deleted.v1", "diary_apply_user_deleted", COMMON_PARAMS, bind_nothing, NULL, NULL,
     keys_user_deleted, false, NULL},
    {"diary.session.revoked.v1", "diary_apply_session_revoked", NFIELDS(fields_session_revoked),
     bind_session_revoked, "diary_apply_sessions", fields_session_revoked, keys_session_revoked,
     false, NULL},
    {"diary.food.created.v1", "diary_apply_food_created", NFIELDS(fields_food), bind_food,
     "diary_apply_foods", fields_food, keys_food, false, NULL},
    {"diary.food.updated.v1", "diary_apply_food_updated", NFIELDS(fields_food), bind_food,
     "diary_apply_food_updates", fields_food, keys_food, false, NULL},
    {"diary.food.deleted.v1", "diary_apply_food_deleted", NFIELDS(fields_food_deleted),
     bind_food_deleted, "diary_apply_food_deletes", fields_food_deleted, keys_food, false, NULL},
    {"diary.entry.set.v1", "diary_apply_entry_set", NFIELDS(fields_entry_set), bind_entry_set,
     "diary_apply_entries", fields_entry_set, keys_entry_set, true, "diary_apply_entries_direct"},
    {"diary.entry.removed.v1", "diary_apply_entry_removed", NFIELDS(fields_entry_removed),
     bind_entry_removed, "diary_apply_entry_removals", fields_entry_removed, keys_entry_removed,
     false, NULL},
    {"diary.weight.set.v1", "diary_apply_weight_set", NFIELDS(fields_weight_set), bind_weight_set,
     "diary_apply_weights", fields_weight_set, keys_weight_set, false, NULL},
    {"diary.weight.removed.v1", "diary_apply_weight_removed", NFIELDS(fields_weight_removed),
     bind_weight_removed, "diary_apply_weight_removals", fields_weight_removed, keys_weight_removed,
     false, NULL},
    {"diary.settings.updated.v1", "diary_apply_settings_updated", NFIELDS(fields_settings_updated),
     bind_settings_updated, "diary_apply_settings", fields_settings_updated, keys_settings_updated,
     false, NULL},
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
    /* The order is the functions' leading parameters (0002_apply.sql, 0003_api.sql). */
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
    add(b, e->requesthash[0] ? e->requesthash : NULL);
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
