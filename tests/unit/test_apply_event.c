/* Unit tests for the pure half of the apply path (shared/apply_event.c): the event type
 * table, the data checks and parameter binding, the SQL text, the payload hash, salvaging an
 * id from a broken envelope, the dead letter's JSON; and apply_transient's classification. */
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

    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_ptr_equal(apply_event_type_find(t[i].type), &t[i]);
        assert_true(t[i].nparams <= APPLY_BIND_MAX);
        assert_non_null(t[i].bind);
    }
    assert_null(apply_event_type_find("diary.user.deleted.v1"));
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
    assert_string_equal(b.values[11], ENTRY);
    assert_string_equal(b.values[12], "2026-11-24");
    assert_string_equal(b.values[13], "lunch");
    assert_string_equal(b.values[14], FOOD);
    assert_string_equal(b.values[15], "150");

    /* The envelope's own request id wins over the header's; ifmatch is passed on. */
    snprintf(e.requestid, sizeof(e.requestid), "env-rid");
    e.ifmatch = 3;
    json_object_set_new(e.data, "amount", json_real(12.5));
    t = bind(&e, &b, err);
    assert_non_null(t);
    assert_string_equal(b.values[7], "3");
    assert_string_equal(b.values[8], "env-rid");
    assert_string_equal(b.values[15], "12.5");
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
    assert_string_equal(b.values[11], "ann@example.org");
    assert_string_equal(b.values[12], "Ann");
    assert_string_equal(b.values[13], "$argon2id$v=19$x");
    evt_clear(&e);

    make_evt(&e, "diary.food.created.v1",
             "{\"food_id\":\"" FOOD "\",\"name\":\"Apple\",\"calories_per_100g\":52,"
             "\"protein_per_100g\":0.3,\"carbs_per_100g\":14,\"fat_per_100g\":0}");
    t = bind(&e, &b, err);
    assert_non_null(t);
    assert_int_equal(b.count, t->nparams);
    assert_string_equal(b.values[12], "Apple");
    assert_string_equal(b.values[13], "52");
    assert_string_equal(b.values[14], "0.3");
    assert_string_equal(b.values[16], "0");
    evt_clear(&e);
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
        {"diary.weight.set.v1", "{}", "unknown event type"},
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
                             "$10, $11, $12, $13, $14)");
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
    assert_int_equal(apply_schedule(N, keys, first, rounds), 4);
    assert_int_equal(rounds[0], 1); /* reads the food before it exists */
    assert_int_equal(rounds[1], 2); /* creates it after that read (and reads the user) */
    assert_int_equal(rounds[2], 3); /* reads it after it was created */
    assert_int_equal(rounds[3], 3); /* another row: shares the round */
    assert_int_equal(rounds[4], 3); /* creates the user the food looked for: after that */
    assert_int_equal(rounds[5], 4); /* the same user and email (folded) again */
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
        cmocka_unit_test(test_bind_refuses),
        cmocka_unit_test(test_name_length_in_characters),
        cmocka_unit_test(test_time_checked),
        cmocka_unit_test(test_sql),
        cmocka_unit_test(test_payload_hash),
        cmocka_unit_test(test_salvage),
        cmocka_unit_test(test_dead_letter_json),
        cmocka_unit_test(test_schedule_rules),
        cmocka_unit_test(test_schedule_events),
        cmocka_unit_test(test_transient),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
