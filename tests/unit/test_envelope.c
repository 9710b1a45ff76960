#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

static void fill(struct evt *e)
{
    memset(e, 0, sizeof(*e));
    strcpy(e->id, "0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f");
    strcpy(e->type, "diary.entry.set.v1");
    strcpy(e->subject, "7a1c0000-0000-4000-8000-000000000001");
    strcpy(e->source, "ingest/test");
    evt_time_now(e->time);
    strcpy(e->requestid, "req-1");
    e->ifmatch = 3;
    e->data = json_pack("{s:s, s:f}", "meal_type", "lunch", "amount", 150.0);
}

static void serialize_then_parse_is_identity(void **state)
{
    struct evt e, back;
    char err[200];
    size_t len;
    char *s;

    fill(&e);
    s = evt_serialize(&e, &len);
    assert_non_null(s);
    assert_int_equal(evt_parse(s, len, &back, err, sizeof(err)), 0);
    assert_string_equal(back.id, e.id);
    assert_string_equal(back.type, e.type);
    assert_string_equal(back.subject, e.subject);
    assert_string_equal(back.time, e.time);
    assert_string_equal(back.requestid, "req-1");
    assert_int_equal(back.ifmatch, 3);
    assert_true(json_equal(back.data, e.data));
    assert_non_null(strstr(s, "\"specversion\":\"1.0\""));
    free(s);
    evt_clear(&e);
    evt_clear(&back);
}

static void parse_refuses_what_is_not_an_envelope(void **state)
{
    static const struct {
        const char *json, *why;
    } cases[] = {
        {"not json", "not JSON"},
        {"[1,2]", "not a JSON object"},
        {"{}", "missing specversion"},
        {"{\"specversion\":\"0.3\",\"id\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"type\":"
         "\"diary.x\","
         "\"subject\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"source\":\"s\",\"time\":\"t\","
         "\"data\":{}}",
         "specversion"},
        {"{\"specversion\":\"1.0\",\"id\":\"nope\",\"type\":\"diary.x\","
         "\"subject\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"source\":\"s\",\"time\":\"t\","
         "\"data\":{}}",
         "UUIDs"},
        {"{\"specversion\":\"1.0\",\"id\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"type\":"
         "\"other\","
         "\"subject\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"source\":\"s\",\"time\":\"t\","
         "\"data\":{}}",
         "not a diary event type"},
        {"{\"specversion\":\"1.0\",\"id\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"type\":"
         "\"diary.x\","
         "\"subject\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"source\":\"s\",\"time\":\"t\","
         "\"data\":[]}",
         "data must be"},
        {"{\"specversion\":\"1.0\",\"id\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"type\":"
         "\"diary.x\","
         "\"subject\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"source\":\"s\",\"time\":\"t\","
         "\"ifmatch\":0,\"data\":{}}",
         "ifmatch"},
        {"{\"specversion\":\"1.0\",\"specversion\":\"1.0\"}", "not JSON"},
    };
    char err[200];
    struct evt e;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(evt_parse(cases[i].json, strlen(cases[i].json), &e, err, sizeof(err)), -1);
        if (!strstr(err, cases[i].why))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].why);
        assert_null(e.data);
    }
}

/* requesthash: carried through serialise and parse, "" when absent, and refused when it is
 * not a string of hexadecimal digits that fits the field (BLAKE2b-512 needs 128). */
static void requesthash_round_trips_and_is_checked(void **state)
{
#define ENV_HEAD                                                                                   \
    "{\"specversion\":\"1.0\",\"id\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\","                    \
    "\"type\":\"diary.x\",\"subject\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\","                   \
    "\"source\":\"s\",\"time\":\"t\",\"data\":{}"
    static const char *const bad[] = {
        ENV_HEAD ",\"requesthash\":\"xyz\"}",
        ENV_HEAD ",\"requesthash\":42}",
        ENV_HEAD ",\"requesthash\":\"0a-1b\"}",
    };
    char err[200], hex[EVT_HASHLEN + 1], *s, *big;
    struct evt e, back;
    size_t len;

    fill(&e);
    memset(hex, 'a', 128);
    hex[128] = '\0';
    memcpy(hex, "0123456789ABCDEF", 16);
    memcpy(e.requesthash, hex, 129);
    s = evt_serialize(&e, &len);
    assert_non_null(s);
    assert_non_null(strstr(s, "\"requesthash\":\"0123456789ABCDEF"));
    assert_int_equal(evt_parse(s, len, &back, err, sizeof(err)), 0);
    assert_string_equal(back.requesthash, hex);
    free(s);
    evt_clear(&back);

    /* Absent: "" on parse, and not written. */
    e.requesthash[0] = '\0';
    s = evt_serialize(&e, &len);
    assert_null(strstr(s, "requesthash"));
    assert_int_equal(evt_parse(s, len, &back, err, sizeof(err)), 0);
    assert_string_equal(back.requesthash, "");
    free(s);
    evt_clear(&back);
    evt_clear(&e);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(evt_parse(bad[i], strlen(bad[i]), &back, err, sizeof(err)), -1);
        if (!strstr(err, "requesthash"))
            fail_msg("case %zu: \"%s\" does not name requesthash", i, err);
    }
    /* 130 digits do not fit (BLAKE2b-512 has 128). */
    big = malloc(strlen(ENV_HEAD) + 200);
    assert_non_null(big);
    memset(hex, 'f', 130);
    hex[130] = '\0';
    len = (size_t)sprintf(big, ENV_HEAD ",\"requesthash\":\"%s\"}", hex);
    assert_int_equal(evt_parse(big, len, &back, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "requesthash"));
    free(big);
#undef ENV_HEAD
}

static void oversized_event_is_refused_unread(void **state)
{
    char err[200];
    struct evt e;
    size_t n = EVT_MAX_SIZE + 1;
    char *big = malloc(n);

    memset(big, ' ', n);
    assert_int_equal(evt_parse(big, n, &e, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "limit"));
    free(big);
}

/* The envelope's time: YYYY-MM-DDTHH:MM:SS.mmmZ (log_clock, cached per second). */
static void clock_has_the_envelope_form(void **state)
{
    char ts[EVT_TIMELEN];

    evt_time_now(ts);
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[4], '-');
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], '.');
    assert_int_equal(ts[23], 'Z');
    for (int i = 20; i < 23; i++)
        assert_true(ts[i] >= '0' && ts[i] <= '9');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(serialize_then_parse_is_identity),
        cmocka_unit_test(parse_refuses_what_is_not_an_envelope),
        cmocka_unit_test(requesthash_round_trips_and_is_checked),
        cmocka_unit_test(oversized_event_is_refused_unread),
        cmocka_unit_test(clock_has_the_envelope_form),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
