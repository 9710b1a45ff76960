/* Unit tests for the pure half of the apply path (shared/apply_event.c): the event type
 * table (every type of docs/events.md), the data checks and parameter binding, the SQL text,
 * the payload hash, salvaging an id from a broken envelope, the dead letter's JSON, the
 * scheduler's keys; and apply_transient's classification. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply.h"
#include "apply_event.h"
#include "envelope.h"

#define USER  "0b6f3c9e-1d2a-7c4e-8a10-000000000001"
#define FOOD  "5d1e7a20-3b4c-8d5e-9f60-0000000000f1"
#define ENTRY "6e2f8b31-4c5d-8e6f-a071-0000000000e1"
#define EVID  "c0ffee00-0000-7000-8000-000000000001"
#define SESS  "9a8b7c6d-0000-4000-8000-00000000005e"
#define WGHT  "77777777-0000-8000-8000-000000000001"

/* The index of the type's own parameter k in apply_bind.values. */
#define P(k) (APPLY_COMMON_PARAMS + (k))

static const char *const hash = "\\x00";

static struct apply_meta meta(void)
{
    struct apply_meta m = {"diary.events", 3, 1042, "diary-worker/diary-apply", "hdr-rid", hash};
    return m;
}

/* An envelope of type with data given as JSON text. */
static void make_evt(struct evt *e, const char *type, const char *data)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", EVID);
    snprintf(e->type, sizeof(e->type), "%s", type);
    snprintf(e->subject, sizeof(e->subject), "%s", USER);
    snprintf(e->source, sizeof(e->source), "test");
    snprintf(e->time, sizeof(e->time), "2026-11-24T16:00:00.123Z");
    e->data = json_loads(data, JSON_ALLOW_NUL, NULL);
    assert_non_null(e->data);
}

static const struct apply_event_type *bind(struct evt *e, struct apply_bind *b, char *err)
{
    struct apply_meta m = meta();
    return apply_event_bind(e, &m, b, err, 256);
}

static void test_table(void **state)
{
    size_t n;
    const struct apply_event_type *t = apply_event_types(&n);

    /* docs/events.md, "Event types": all thirteen. */
    static const char *const documented[] = {
        "diary.user.registered.v1", "diary.user.updated.v1",    "diary.user.password_changed.v1",
        "diary.user.deleted.v1",    "diary.session.revoked.v1", "diary.food.created.v1",
        "diary.food.updated.v1",    "diary.food.deleted.v1",    "diary.entry.set.v1",
        "diary.entry.removed.v1",   "diary.weight.set.v1",      "diary.weight.removed.v1",
        "diary.settings.updated.v1"};

    assert_int_equal(n, sizeof(documented) / sizeof(documented[0]));
    for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++)
        if (!apply_event_type_find(documented[i]))
            fail_msg("%s has no entry", documented[i]);
    for (size_t i = 0; i < n; i++) {
        assert_ptr_equal(apply_event_type_find(t[i].type), &t[i]);
        assert_true(t[i].nparams <= APPLY_BIND_MAX);
        assert_true(t[i].nparams >= APPLY_COMMON_PARAMS);
        assert_non_null(t[i].bind);
        assert_non_null(t[i].keys);
        assert_true(t[i].nparams == APPLY_COMMON_PARAMS || t[i].fields != NULL);
        /* Only the rare user types go without a set-based function. */
        if (!t[i].set_function && strncmp(t[i].type, "diary.user.", 11) != 0)
            fail_msg("%s has no set-based function", t[i].type);
        /* A direct function takes the columns of a set-based one (0009). */
        if (t[i].direct_function)
            assert_true(t[i].set_function && t[i].set_columns);
        /* The function names are also prepared statement names: unique. */
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(t[i].function, t[j].function);
            if (t[i].set_function && t[j].set_function)
                assert_string_not_equal(t[i].set_function, t[j].set_function);
            if (t[i].direct_function && t[j].direct_function)
                assert_string_not_equal(t[i].direct_function, t[j].direct_function);
        }
    }
    assert_string_equal(apply_event_type_find("diary.entry.set.v1")->direct_function,
                        "diary_apply_entries_direct");
    assert_null(apply_event_type_find("diary.user.exploded.v1"));
    assert_null(apply_event_type_find(NULL));
}

static void test_bind_entry(void **state)
{
    struct evt e;
    struct apply_bind b;
    char err[256] = "";
    const struct apply_event_type *t;

    make_evt(&e, "diary.entry.set.v1",
             "{\"entry_id\":\"" ENTRY "\",\"date\":\"2026-11-24\",\"meal_type\":\"lunch\","
             "\"food_id\":\"" FOOD "\",\"amount\":150}");
    t = bind(&e, &b, err);
    assert_non_null(t);
    assert_string_equal(t->function, "diary_apply_entry_set");
    assert_int_equal(b.count, t->nparams);
    assert_string_equal(b.values[0], EVID);
    assert_string_equal(b.values[1], USER);
    assert_string_equal(b.values[2], "diary.entry.set.v1");
    assert_string_equal(b.values[3], "3");
    assert_string_equal(b.values[4], "1042");
    assert_string_equal(b.values[5], hash);
    assert_string_equal(b.values[6], "2026-11-24T16:00:00.123Z");
    assert_null(b.values[7]); /* no ifmatch: SQL NULL */
    assert_string_equal(b.values[8], "hdr-rid");
    assert_string_equal(b.values[9], "diary.events");
    assert_string_equal(b.values[10], "diary-worker/diary-apply");
    assert_null(b.values[11]); /* no requesthash: SQL NULL */
    assert_string_equal(b.values[P(0)], ENTRY);
    assert_string_equal(b.values[P(1)], "2026-11-24");
    assert_string_equal(b.values[P(2)], "lunch");
    assert_string_equal(b.values[P(3)], FOOD);
    assert_string_equal(b.values[P(4)], "150");

    /* The envelope's own request id wins over the header's; ifmatch and requesthash are
     * passed on. */
    snprintf(e.requestid, sizeof(e.requestid), "env-rid");
    snprintf(e.requesthash, sizeof(e.requesthash), "00ff");
    e.ifmatch = 3;
    json_object_set_new(e.data, "amount", json_real(12.5));
    t = bind(&e, &b, err);
    assert_non_null(t);
    assert_string_equal(b.values[7], "3");
    assert_string_equal(b.values[8], "env-rid");
    assert_string_equal(b.values[11], "00ff");
    assert_string_equal(b.values[P(4)], "12.5");
    evt_clear(&e);
}

static void test_bind_user_and_food(void **state)
{
    struct evt e;
    struct apply_bind b;
    char err[256] = "";
    const struct apply_event_type *t;

    make_evt(&e, "diary.user.registered.v1",
             "{\"user_id\":\"" USER "\",\"email\":\"ann@example.org\",\"name\":\"Ann\","
             "\"password_hash\":\"$argon2id$v=19$x\"}");
    t = bind(&e, &b, err);
    assert_non_null(t);
    assert_int_equal(b.count, t->nparams);
    assert_string_equal(b.values[P(0)], "ann@example.org");
    assert_string_equal(b.values[P(1)], "Ann");
    assert_string_equal(b.values[P(2)], "$argon2id$v=19$x");
    evt_clear(&e);

    make_evt(&e, "diary.food.created.v1",
             "{\"food_id\":\"" FOOD "\",\"name\":\"Apple\",\"calories_per_100g\":52,"
             "\"protein_per_100g\":0.3,\"carbs_per_100g\":14,\"fat_per_100g\":0}");
    t = bind(&e, &b, err);
    assert_non_null(t);
    assert_int_equal(b.count, t->nparams);
    assert_string_equal(b.values[P(1)], "Apple");
    assert_string_equal(b.values[P(2)], "52");
    assert_string_equal(b.values[P(3)], "0.3");
    assert_string_equal(b.values[P(5)], "0");
    evt_clear(&e);
}

/* Binds type with data and checks the type's own parameters against want (NULL: SQL NULL). */
static void expect_bind(const char *type, const char *data, const char *fn, int nown,
                        const char *const *want)
{
    struct evt e;
    struct apply_bind b;
    char err[256] = "";
    const struct apply_event_type *t;

    make_evt(&e, type, data);
    t = bind(&e, &b, err);
    if (!t)
        fail_msg("%s %s refused: %s", type, data, err);
    assert_string_equal(t->function, fn);
    assert_int_equal(t->nparams, APPLY_COMMON_PARAMS + nown);
    assert_int_equal(b.count, t->nparams);
    for (int k = 0; k < nown; k++) {
        if (!want[k] && b.values[P(k)])
            fail_msg("%s: parameter %d is \"%s\", want NULL", type, k, b.values[P(k)]);
        if (want[k] && (!b.values[P(k)] || strcmp(want[k], b.values[P(k)]) != 0))
            fail_msg("%s: parameter %d is \"%s\", want \"%s\"", type, k,
                     b.values[P(k)] ? b.values[P(k)] : "NULL", want[k]);
    }
    evt_clear(&e);
}

static void test_bind_new_types(void **state)
{
    expect_bind("diary.user.updated.v1", "{\"name\":\"Bea\"}", "diary_apply_user_updated", 2,
                (const char *[]){"Bea", NULL});
    expect_bind("diary.user.updated.v1", "{\"email\":\"bea@example.org\"}",
                "diary_apply_user_updated", 2, (const char *[]){NULL, "bea@example.org"});
    expect_bind("diary.user.updated.v1", "{}", "diary_apply_user_updated", 2,
                (const char *[]){NULL, NULL});
    expect_bind("diary.user.password_changed.v1",
                "{\"password_hash\":\"$argon2id$y\",\"revoke\":true}",
                "diary_apply_user_password_changed", 2, (const char *[]){"$argon2id$y", "true"});
    expect_bind("diary.user.password_changed.v1",
                "{\"password_hash\":\"$2b$10$x\",\"revoke\":false}",
                "diary_apply_user_password_changed", 2, (const char *[]){"$2b$10$x", "false"});
    expect_bind("diary.user.deleted.v1", "{}", "diary_apply_user_deleted", 0, NULL);
    expect_bind("diary.session.revoked.v1",
                "{\"session_id\":\"" SESS "\",\"expires_at\":\"2026-11-25T16:00:00Z\"}",
                "diary_apply_session_revoked", 2, (const char *[]){SESS, "2026-11-25T16:00:00Z"});
    expect_bind("diary.food.updated.v1",
                "{\"food_id\":\"" FOOD "\",\"name\":\"Pear\",\"calories_per_100g\":57,"
                "\"protein_per_100g\":0.4,\"carbs_per_100g\":15,\"fat_per_100g\":0.1}",
                "diary_apply_food_updated", 6,
                (const char *[]){FOOD, "Pear", "57", "0.4", "15", "0.1"});
    expect_bind("diary.food.deleted.v1", "{\"food_id\":\"" FOOD "\"}", "diary_apply_food_deleted",
                1, (const char *[]){FOOD});
    expect_bind("diary.entry.removed.v1",
                "{\"date\":\"2026-11-24\",\"meal_type\":\"snack\",\"food_id\":\"" FOOD "\"}",
                "diary_apply_entry_removed", 3, (const char *[]){"2026-11-24", "snack", FOOD});
    expect_bind("diary.weight.set.v1",
                "{\"weight_id\":\"" WGHT "\",\"date\":\"2026-11-24\",\"weight\":72.35}",
                "diary_apply_weight_set", 3, (const char *[]){WGHT, "2026-11-24", "72.35"});
    expect_bind("diary.weight.set.v1",
                "{\"weight_id\":\"" WGHT "\",\"date\":\"2026-11-24\",\"weight\":999.99}",
                "diary_apply_weight_set", 3, (const char *[]){WGHT, "2026-11-24", "999.99"});
    expect_bind("diary.weight.removed.v1", "{\"date\":\"2026-11-24\"}",
                "diary_apply_weight_removed", 1, (const char *[]){"2026-11-24"});
    expect_bind("diary.settings.updated.v1",
                "{\"unit_system\":\"imperial\",\"daily_calorie_goal\":2500,"
                "\"protein_percentage\":30,\"fat_percentage\":20.5}",
                "diary_apply_settings_updated", 4,
                (const char *[]){"imperial", "2500", "30", "20.5"});
    /* Absent fields keep their value: SQL NULL. The merged check is the database's. */
    expect_bind("diary.settings.updated.v1", "{\"fat_percentage\":100}",
                "diary_apply_settings_updated", 4, (const char *[]){NULL, NULL, NULL, "100"});
    expect_bind("diary.settings.updated.v1", "{}", "diary_apply_settings_updated", 4,
                (const char *[]){NULL, NULL, NULL, NULL});
}

/* Each case: type, data, and a word the error must contain. */
static void test_bind_refuses(void **state)
{
    static const struct {
        const char *type, *data, *want;
    } cases[] = {
        {"diary.entry.set.v1",
         "{\"entry_id\":\"" ENTRY "\",\"date\":\"2026-11-24\",\"meal_type\":\"lunch\","
         "\"food_id\":\"" FOOD "\"}",
         "amount"},
        {"diary.entry.set.v1",
         "{\"entry_id\":\"" ENTRY "\",\"date\":\"2026-11-24\",\"meal_type\":\"lunch\","
         "\"food_id\":\"" FOOD "\",\"amount\":0}",
         "amount"},
        {"diary.entry.set.v1",
         "{\"entry_id\":\"" ENTRY "\",\"date\":\"2026-11-24\",\"meal_type\":\"lunch\","
         "\"food_id\":\"" FOOD "\",\"amount\":999999.999}",
         "amount"},
        {"diary.entry.set.v1",
         "{\"entry_id\":\"" ENTRY "\",\"date\":\"2026-02-30\",\"meal_type\":\"lunch\","
         "\"food_id\":\"" FOOD "\",\"amount\":1}",
         "date"},
        {"diary.entry.set.v1",
         "{\"entry_id\":\"" ENTRY "\",\"date\":\"2026-11-24\",\"meal_type\":\"brunch\","
         "\"food_id\":\"" FOOD "\",\"amount\":1}",
         "meal_type"},
        {"diary.entry.set.v1",
         "{\"entry_id\":\"nope\",\"date\":\"2026-11-24\",\"meal_type\":\"lunch\","
         "\"food_id\":\"" FOOD "\",\"amount\":1}",
         "entry_id"},
        {"diary.user.registered.v1",
         "{\"user_id\":\"" FOOD "\",\"email\":\"a@b.org\",\"name\":\"A\",\"password_hash\":\"h\"}",
         "subject"},
        {"diary.user.registered.v1",
         "{\"user_id\":\"" USER "\",\"email\":\"not-an-email\",\"name\":\"A\","
         "\"password_hash\":\"h\"}",
         "email"},
        {"diary.user.registered.v1",
         "{\"user_id\":\"" USER "\",\"email\":\"a@b.org\",\"name\":\"A\\u0000B\","
         "\"password_hash\":\"h\"}",
         "name"},
        {"diary.user.registered.v1",
         "{\"user_id\":\"" USER "\",\"email\":\"a@b.org\",\"name\":\"\",\"password_hash\":\"h\"}",
         "name"},
        {"diary.food.created.v1",
         "{\"food_id\":\"" FOOD "\",\"name\":\"Apple\",\"calories_per_100g\":-1,"
         "\"protein_per_100g\":0,\"carbs_per_100g\":0,\"fat_per_100g\":0}",
         "calories"},
        {"diary.food.created.v1",
         "{\"food_id\":\"" FOOD "\",\"name\":\"Apple\",\"calories_per_100g\":\"52\","
         "\"protein_per_100g\":0,\"carbs_per_100g\":0,\"fat_per_100g\":0}",
         "calories"},
        {"diary.user.exploded.v1", "{}", "unknown event type"},
        /* The types of 0003_api.sql. */
        {"diary.user.updated.v1", "{\"name\":\"\"}", "name"},
        {"diary.user.updated.v1", "{\"name\":null}", "name"},
        {"diary.user.updated.v1", "{\"email\":\"nope\"}", "email"},
        {"diary.user.updated.v1", "{\"email\":7}", "email"},
        {"diary.user.password_changed.v1", "{\"password_hash\":\"h\"}", "revoke"},
        {"diary.user.password_changed.v1", "{\"password_hash\":\"h\",\"revoke\":\"yes\"}",
         "revoke"},
        {"diary.user.password_changed.v1", "{\"revoke\":true}", "password_hash"},
        {"diary.session.revoked.v1", "{\"expires_at\":\"2026-11-25T16:00:00Z\"}", "session_id"},
        {"diary.session.revoked.v1", "{\"session_id\":\"" SESS "\",\"expires_at\":\"tomorrow\"}",
         "expires_at"},
        {"diary.session.revoked.v1", "{\"session_id\":\"" SESS "\",\"expires_at\":1764000000}",
         "expires_at"},
        {"diary.food.updated.v1",
         "{\"food_id\":\"" FOOD "\",\"name\":\"Pear\",\"calories_per_100g\":57,"
         "\"protein_per_100g\":0.4,\"carbs_per_100g\":15}",
         "fat_per_100g"},
        {"diary.food.updated.v1",
         "{\"food_id\":\"x\",\"name\":\"Pear\",\"calories_per_100g\":57,"
         "\"protein_per_100g\":0.4,\"carbs_per_100g\":15,\"fat_per_100g\":0}",
         "food_id"},
        {"diary.food.deleted.v1", "{}", "food_id"},
        {"diary.entry.removed.v1",
         "{\"date\":\"2026-11-24\",\"meal_type\":\"tea\",\"food_id\":\"" FOOD "\"}", "meal_type"},
        {"diary.entry.removed.v1",
         "{\"date\":\"24.11.2026\",\"meal_type\":\"lunch\",\"food_id\":\"" FOOD "\"}", "date"},
        {"diary.entry.removed.v1", "{\"date\":\"2026-11-24\",\"meal_type\":\"lunch\"}", "food_id"},
        {"diary.weight.set.v1", "{}", "weight_id"},
        {"diary.weight.set.v1", "{\"weight_id\":\"" WGHT "\",\"date\":\"2026-11-24\",\"weight\":0}",
         "weight"},
        {"diary.weight.set.v1",
         "{\"weight_id\":\"" WGHT "\",\"date\":\"2026-11-24\",\"weight\":999.995}", "weight"},
        {"diary.weight.set.v1",
         "{\"weight_id\":\"" WGHT "\",\"date\":\"2026-11-24\",\"weight\":\"70\"}", "weight"},
        {"diary.weight.set.v1", "{\"weight_id\":\"" WGHT "\",\"weight\":70}", "date"},
        {"diary.weight.removed.v1", "{}", "date"},
        {"diary.settings.updated.v1", "{\"unit_system\":\"furlongs\"}", "unit_system"},
        {"diary.settings.updated.v1", "{\"unit_system\":null}", "unit_system"},
        {"diary.settings.updated.v1", "{\"daily_calorie_goal\":0}", "daily_calorie_goal"},
        {"diary.settings.updated.v1", "{\"daily_calorie_goal\":2000.5}", "daily_calorie_goal"},
        {"diary.settings.updated.v1", "{\"daily_calorie_goal\":2147483648}", "daily_calorie_goal"},
        {"diary.settings.updated.v1", "{\"protein_percentage\":-1}", "protein_percentage"},
        {"diary.settings.updated.v1", "{\"fat_percentage\":100.01}", "fat_percentage"},
        {"diary.settings.updated.v1", "{\"fat_percentage\":\"30\"}", "fat_percentage"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct evt e;
        struct apply_bind b;
        char err[256] = "";

        make_evt(&e, cases[i].type, cases[i].data);
        if (bind(&e, &b, err) != NULL)
            fail_msg("case %zu (%s) was accepted", i, cases[i].want);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: error \"%s\" does not name %s", i, err, cases[i].want);
        evt_clear(&e);
    }
}

static void test_name_length_in_characters(void **state)
{
    struct evt e;
    struct apply_bind b;
    char err[256];
    char name[255 * 2 + 1];
    json_t *o;

    /* 255 two-byte characters fit varchar(255); 256 do not. */
    for (int i = 0; i < 255; i++)
        memcpy(name + 2 * i, "\xc3\xa9", 2);
    name[510] = '\0';
    make_evt(&e, "diary.food.created.v1",
             "{\"food_id\":\"" FOOD "\",\"calories_per_100g\":1,\"protein_per_100g\":0,"
             "\"carbs_per_100g\":0,\"fat_per_100g\":0}");
    o = e.data;
    json_object_set_new(o, "name", json_string(name));
    assert_non_null(bind(&e, &b, err));
    json_object_set_new(o, "name", json_pack("s+", name, "e"));
    assert_null(bind(&e, &b, err));
    evt_clear(&e);
}

static void test_time_checked(void **state)
{
    static const char *const good[] = {"2026-11-24T16:00:00Z", "2026-11-24T16:00:00.5Z",
                                       "2026-11-24T16:00:00.123+01:00"};
    static const char *const bad[] = {"2026-11-24 16:00:00Z",  "2026-11-24T16:00:00",
                                      "2026-13-24T16:00:00Z",  "2026-11-24T25:00:00Z",
                                      "2026-11-24T16:00:00.Z", "yesterday"};
    struct evt e;
    struct apply_bind b;
    char err[256];

    make_evt(&e, "diary.user.registered.v1",
             "{\"user_id\":\"" USER "\",\"email\":\"a@b.org\",\"name\":\"A\","
             "\"password_hash\":\"h\"}");
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(e.time, sizeof(e.time), "%s", good[i]);
        if (!bind(&e, &b, err))
            fail_msg("%s refused: %s", good[i], err);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(e.time, sizeof(e.time), "%s", bad[i]);
        if (bind(&e, &b, err))
            fail_msg("%s accepted", bad[i]);
    }
    evt_clear(&e);
}

static void test_sql(void **state)
{
    const struct apply_event_type *t = apply_event_type_find("diary.user.registered.v1");
    char sql[512], small[40];

    assert_int_equal(apply_event_sql(t, sql, sizeof(sql)), 0);
    assert_string_equal(sql, "SELECT out_status, out_reason, out_resource FROM "
                             "diary_apply_user_registered($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                             "$10, $11, $12, $13, $14, $15)");
    assert_int_equal(apply_event_sql(t, small, sizeof(small)), -1);
}

static void test_payload_hash(void **state)
{
    char a[APPLY_HASH_HEXLEN], b[APPLY_HASH_HEXLEN], c[APPLY_HASH_HEXLEN];

    apply_payload_hash("abc", 3, a);
    apply_payload_hash("abc", 3, b);
    apply_payload_hash("abd", 3, c);
    assert_int_equal(strlen(a), 66);
    assert_memory_equal(a, "\\x", 2);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    apply_payload_hash("", 0, c);
    assert_int_equal(strlen(c), 66);
}

static void test_salvage(void **state)
{
    char id[UUID_STRLEN], subject[UUID_STRLEN], type[APPLY_TYPELEN];
    const char *env = "{\"specversion\":\"0.3\",\"id\":\"" EVID "\",\"subject\":\"" USER
                      "\",\"type\":\"diary.x.v1\"}";

    apply_event_salvage(env, strlen(env), id, subject, type);
    assert_string_equal(id, EVID);
    assert_string_equal(subject, USER);
    assert_string_equal(type, "diary.x.v1");

    apply_event_salvage("{\"id\":\"42\",\"subject\":7}", 24, id, subject, type);
    assert_string_equal(id, "");
    assert_string_equal(subject, "");
    assert_string_equal(type, "");

    apply_event_salvage("not json", 8, id, subject, type);
    assert_string_equal(id, "");
    apply_event_salvage("[1]", 3, id, subject, type);
    assert_string_equal(id, "");
}

static void test_dead_letter_json(void **state)
{
    struct apply_dead_letter_info dl = {
        "{\"a\": not json",        14, "envelope: not JSON", "w1", 2, "diary.events", 3, 1042,
        "2026-11-24T16:00:00.000Z"};
    size_t len = 0;
    char *s = apply_dead_letter_json(&dl, &len);
    json_t *o;

    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    o = json_loads(s, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "event")), "{\"a\": not json");
    assert_string_equal(json_string_value(json_object_get(o, "error")), "envelope: not JSON");
    assert_string_equal(json_string_value(json_object_get(o, "worker")), "w1");
    assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 2);
    assert_string_equal(json_string_value(json_object_get(o, "topic")), "diary.events");
    assert_int_equal(json_integer_value(json_object_get(o, "partition")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "offset")), 1042);
    assert_string_equal(json_string_value(json_object_get(o, "time")), "2026-11-24T16:00:00.000Z");
    assert_null(json_object_get(o, "event_base64"));
    json_decref(o);
    free(s);

    /* Not UTF-8: the bytes travel in base64. */
    dl.value = "\xff\xfe";
    dl.len = 2;
    dl.time = NULL;
    s = apply_dead_letter_json(&dl, NULL);
    assert_non_null(s);
    o = json_loads(s, 0, NULL);
    assert_true(json_is_null(json_object_get(o, "event")));
    assert_string_equal(json_string_value(json_object_get(o, "event_base64")), "//4=");
    assert_int_equal(strlen(json_string_value(json_object_get(o, "time"))), 24);
    json_decref(o);
    free(s);
}

static struct apply_key k(uint64_t h, int write)
{
    struct apply_key key = {h, write};
    return key;
}

static void test_schedule_rules(void **state)
{
    /* Events 0..5: 0 writes A; 1 writes B (independent); 2 reads A; 3 reads A (shares 2's
     * round); 4 writes A (after the readers); 5 writes A and B. */
    struct apply_key keys[] = {k(1, 1), k(2, 1), k(1, 0), k(1, 0), k(1, 1), k(1, 1), k(2, 1)};
    size_t first[] = {0, 1, 2, 3, 4, 5, 7};
    unsigned rounds[6];

    assert_int_equal(apply_schedule(6, keys, first, rounds), 4);
    assert_int_equal(rounds[0], 1);
    assert_int_equal(rounds[1], 1);
    assert_int_equal(rounds[2], 2);
    assert_int_equal(rounds[3], 2);
    assert_int_equal(rounds[4], 3);
    assert_int_equal(rounds[5], 4);

    /* No keys at all (dead letters without id): round 1, nothing to order. */
    assert_int_equal(apply_schedule(2, keys, (size_t[]){0, 0, 0}, rounds), 1);
    assert_int_equal(apply_schedule(0, keys, (size_t[]){0}, rounds), 0);
}

/* The keys the types give, on real events: an entry before its food, the food, an entry
 * after it, the same entry again, a second registration with the same email in other case. */
static void test_schedule_events(void **state)
{
    static const char *const docs[][2] = {
        {"diary.entry.set.v1", "{\"entry_id\":\"" ENTRY "\",\"date\":\"2026-11-24\","
                               "\"meal_type\":\"lunch\",\"food_id\":\"" FOOD "\",\"amount\":1}"},
        {"diary.food.created.v1",
         "{\"food_id\":\"" FOOD "\",\"name\":\"Apple\",\"calories_per_100g\":52,"
         "\"protein_per_100g\":0.3,\"carbs_per_100g\":14,\"fat_per_100g\":0}"},
        {"diary.entry.set.v1", "{\"entry_id\":\"" ENTRY "\",\"date\":\"2026-11-24\","
                               "\"meal_type\":\"lunch\",\"food_id\":\"" FOOD "\",\"amount\":2}"},
        {"diary.entry.set.v1", "{\"entry_id\":\"" ENTRY "\",\"date\":\"2026-11-25\","
                               "\"meal_type\":\"lunch\",\"food_id\":\"" FOOD "\",\"amount\":3}"},
        {"diary.user.registered.v1", "{\"user_id\":\"" USER "\",\"email\":\"Ann@B.org\","
                                     "\"name\":\"A\",\"password_hash\":\"h\"}"},
        {"diary.user.registered.v1", "{\"user_id\":\"" USER "\",\"email\":\"ann@b.org\","
                                     "\"name\":\"A\",\"password_hash\":\"h\"}"},
    };
    enum { N = sizeof(docs) / sizeof(docs[0]) };
    struct apply_key keys[N * APPLY_KEYS_MAX];
    size_t first[N + 1], nk = 0;
    unsigned rounds[N];

    for (size_t i = 0; i < N; i++) {
        struct evt e;
        struct apply_bind b;
        char err[256];
        const struct apply_event_type *t;

        make_evt(&e, docs[i][0], docs[i][1]);
        snprintf(e.id, sizeof(e.id), "c0ffee00-0000-7000-8000-00000000000%zu", i);
        t = bind(&e, &b, err);
        assert_non_null(t);
        first[i] = nk;
        nk += t->keys(&b, &keys[nk]);
        assert_true(keys[first[i]].hash == apply_event_id_key(e.id).hash);
        evt_clear(&e);
    }
    first[N] = nk;
    assert_int_equal(apply_schedule(N, keys, first, rounds), 5);
    assert_int_equal(rounds[0], 1); /* reads the food before it exists */
    assert_int_equal(rounds[1], 2); /* creates it after that read (and reads the user) */
    assert_int_equal(rounds[2], 3); /* reads it after it was created */
    assert_int_equal(rounds[3], 3); /* another row: shares the round */
    assert_int_equal(rounds[4], 4); /* creates the user the entries read: after them */
    assert_int_equal(rounds[5], 5); /* the same user and email (folded) again */
}

/* The rounds of a list of (type, data, subject) events. */
static int schedule_docs(size_t n, const char *const (*docs)[3], unsigned *rounds)
{
    struct apply_key keys[32 * APPLY_KEYS_MAX];
    size_t first[33], nk = 0;

    assert_true(n <= 32);
    for (size_t i = 0; i < n; i++) {
        struct evt e;
        struct apply_bind b;
        char err[256];
        const struct apply_event_type *t;

        make_evt(&e, docs[i][0], docs[i][1]);
        snprintf(e.id, sizeof(e.id), "c0ffee00-0000-7000-8000-%012zu", i + 100);
        snprintf(e.subject, sizeof(e.subject), "%s", docs[i][2]);
        t = bind(&e, &b, err);
        if (!t)
            fail_msg("event %zu refused: %s", i, err);
        first[i] = nk;
        nk += t->keys(&b, &keys[nk]);
        assert_true(nk - first[i] <= APPLY_KEYS_MAX);
        evt_clear(&e);
    }
    first[n] = nk;
    return apply_schedule(n, keys, first, rounds);
}

#define USER2 "0b6f3c9e-1d2a-7c4e-8a10-000000000002"

/* A user's deletion orders against every event of that user (their rows go with it) and,
 * through the emails, against registrations of anyone; settings, weights and sessions of one
 * user go one after the other per row. */
static void test_schedule_new_types(void **state)
{
    static const char *const docs[][3] = {
        /* 0 */ {"diary.weight.set.v1",
                 "{\"weight_id\":\"" WGHT "\",\"date\":\"2026-11-24\",\"weight\":70}", USER},
        /* 1 */ {"diary.settings.updated.v1", "{\"fat_percentage\":20}", USER},
        /* 2 */ {"diary.weight.removed.v1", "{\"date\":\"2026-11-24\"}", USER},
        /* 3 */
        {"diary.weight.set.v1",
         "{\"weight_id\":\"" WGHT "\",\"date\":\"2026-11-25\",\"weight\":71}", USER},
        /* 4 */ {"diary.user.deleted.v1", "{}", USER},
        /* 5 */ {"diary.settings.updated.v1", "{\"fat_percentage\":25}", USER},
        /* 6 */
        {"diary.user.registered.v1",
         "{\"user_id\":\"" USER2 "\",\"email\":\"x@b.org\",\"name\":\"X\","
         "\"password_hash\":\"h\"}",
         USER2},
        /* 7 */
        {"diary.session.revoked.v1",
         "{\"session_id\":\"" SESS "\",\"expires_at\":\"2026-11-25T16:00:00Z\"}", USER2},
        /* 8 */
        {"diary.session.revoked.v1",
         "{\"session_id\":\"" SESS "\",\"expires_at\":\"2026-11-25T16:00:00Z\"}", USER2},
        /* 9 */ {"diary.user.updated.v1", "{\"name\":\"Y\"}", USER2},
        /* 10 */ {"diary.user.updated.v1", "{\"email\":\"z@b.org\"}", USER2},
        /* 11 */
        {"diary.user.registered.v1",
         "{\"user_id\":\"" USER "\",\"email\":\"X@b.org\",\"name\":\"X\","
         "\"password_hash\":\"h\"}",
         USER},
        /* 12 */
        {"diary.entry.removed.v1",
         "{\"date\":\"2026-11-24\",\"meal_type\":\"lunch\",\"food_id\":\"" FOOD "\"}", USER},
        /* 13 */ {"diary.food.deleted.v1", "{\"food_id\":\"" FOOD "\"}", USER},
    };
    enum { N = sizeof(docs) / sizeof(docs[0]) };
    unsigned r[N];

    assert_true(schedule_docs(N, docs, r) > 0);
    assert_int_equal(r[0], 1);
    assert_int_equal(r[1], 1);  /* settings: another row */
    assert_int_equal(r[2], 2);  /* the same weight row */
    assert_int_equal(r[3], 1);  /* another date */
    assert_int_equal(r[4], 3);  /* after every earlier event of the user */
    assert_int_equal(r[5], 4);  /* after the deletion */
    assert_int_equal(r[6], 4);  /* reads the emails the deletion may have freed */
    assert_int_equal(r[7], 5);  /* after its user's registration */
    assert_int_equal(r[8], 6);  /* the same session */
    assert_int_equal(r[9], 7);  /* writes the user the sessions read: after them */
    assert_int_equal(r[10], 8); /* the same user again */
    assert_true(r[11] > r[10]); /* X@b.org freed by 10 (and the user id deleted by 4) */
    assert_true(r[12] > r[11]); /* the user key, after the re-registration */
    assert_true(r[13] > r[12]); /* the food after the entry that read it */
}

static void test_transient(void **state)
{
    assert_true(apply_transient("40001", false));
    assert_true(apply_transient("40P01", false));
    assert_true(apply_transient("57P01", false));
    assert_true(apply_transient("08006", false));
    assert_true(apply_transient("53300", false));
    assert_true(apply_transient(NULL, true));
    assert_false(apply_transient("23505", false));
    assert_false(apply_transient("22P02", false));
    assert_false(apply_transient("DY001", false));
    assert_false(apply_transient(NULL, false));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_bind_entry),
        cmocka_unit_test(test_bind_user_and_food),
        cmocka_unit_test(test_bind_new_types),
        cmocka_unit_test(test_bind_refuses),
        cmocka_unit_test(test_name_length_in_characters),
        cmocka_unit_test(test_time_checked),
        cmocka_unit_test(test_sql),
        cmocka_unit_test(test_payload_hash),
        cmocka_unit_test(test_salvage),
        cmocka_unit_test(test_dead_letter_json),
        cmocka_unit_test(test_schedule_rules),
        cmocka_unit_test(test_schedule_events),
        cmocka_unit_test(test_schedule_new_types),
        cmocka_unit_test(test_transient),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
