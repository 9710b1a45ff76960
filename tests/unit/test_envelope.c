#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "test_input.h"

/* The jansson-tree parser evt_parse replaced, and ref_compare(). */
#include "../fuzz/evt_parse_ref.h"

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

#define UUID_A "0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f"
#define UUID_B "7a1c0000-0000-4000-8000-000000000001"
/* A valid envelope up to (not including) data and the closing brace. */
#define HEAD                                                                                       \
    "{\"specversion\":\"1.0\",\"id\":\"" UUID_A "\",\"source\":\"ingest/t\","                      \
    "\"type\":\"diary.entry.set.v1\",\"subject\":\"" UUID_B "\","                                  \
    "\"time\":\"2026-11-24T16:00:00.123Z\""
#define DATA ",\"data\":{\"date\":\"2026-11-24\",\"amount\":150.5}"

/* evt_parse and the jansson reference agree on buf. */
static void expect_same_len(const char *buf, size_t len)
{
    char why[1200], *copy = buf ? test_exact(buf, len) : NULL;
    bool same = ref_compare(copy, len, why, sizeof(why));

    if (!same) {
        test_print_input(buf, len);
        free(copy);
        fail_msg("%s", why);
    }
    free(copy);
}

static void expect_same(const char *json)
{
    expect_same_len(json, strlen(json));
}

/* evt_parse refuses json with a message that holds why, and the reference agrees. */
static void expect_refused(const char *json, const char *why)
{
    char err[512];
    struct evt e;

    expect_same(json);
    if (evt_parse(json, strlen(json), &e, err, sizeof(err)) == 0) {
        evt_clear(&e);
        fail_msg("accepted: %s", json);
    }
    if (!strstr(err, why))
        fail_msg("\"%s\" lacks \"%s\" for %s", err, why, json);
    assert_null(e.data);
}

static void expect_accepted(const char *json)
{
    char err[512];
    struct evt e;

    expect_same(json);
    if (evt_parse(json, strlen(json), &e, err, sizeof(err)) != 0)
        fail_msg("refused (%s): %s", err, json);
    evt_clear(&e);
}

/* Valid and invalid envelopes of every kind the scanner meets: the same verdict, message,
 * fields and data as the jansson reference. */
static void matches_the_jansson_reference(void **state)
{
    static const char *const accepted[] = {
        HEAD DATA "}",
        HEAD ",\"datacontenttype\":\"application/json\",\"requestid\":\"r\",\"traceparent\":"
             "\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\",\"occurredat\":"
             "\"2026-11-24T15:59:58.000Z\",\"clientaddr\":\"::1\",\"ifmatch\":7,"
             "\"requesthash\":\"abCD09\"" DATA "}",
        "{\"data\":{},\"time\":\"t\",\"subject\":\"" UUID_B
        "\",\"type\":\"diary.x\",\"id\":\"" UUID_A "\",\"source\":\"s\",\"specversion\":\"1.0\"}",
        HEAD ",\"x\":[1,-2,3.5,-4e10,5E-3,0,-0,0.0,1e308,-1.7976931348623157e308,1e-400]" DATA "}",
        HEAD ",\"x\":{\"a\":{\"b\":[[],{},[{}],\"s\",true,false,null]}}" DATA "}",
        HEAD ",\"x\":9223372036854775807,\"y\":-9223372036854775808" DATA "}",
        HEAD ",\"ifmatch\":9223372036854775807" DATA "}",
        HEAD ",\"x\":[{\"a\":1},{\"a\":1}]" DATA "}",
        HEAD ",\"\":\"empty key\"" DATA "}",
        HEAD ",\"x\":\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\\"\\\\\"" DATA "}",
        HEAD ",\"source2\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f\"" DATA "}",
        HEAD ",\"data\":{\"a\":{\"b\":{\"c\":[1,2,{\"d\":\"\\u00e9\"}]}},\"e\":null}}",
        HEAD ",\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,"
             "\"k10\":10" DATA "}",
        HEAD ",\"a-key-that-is-longer-than-thirty-two-bytes\":1,"
             "\"a-key-that-is-longer-than-thirty-two-bytes!\":2" DATA "}",
        HEAD ",\"requesthash\":\"\"" DATA "}",
    };
    static const struct {
        const char *json, *why;
    } refused[] = {
        {"", "not JSON"},
        {"   ", "not JSON"},
        {"\"string\"", "not JSON"},
        {"42", "not JSON"},
        {"null", "not JSON"},
        {"[]", "not a JSON object"},
        {"[{\"a\":1,\"a\":2}]", "not JSON"},
        {"[1,]", "not JSON"},
        {"[] x", "not JSON"},
        {"[1]]", "not JSON"},
        {"{", "not JSON"},
        {"{}", "missing specversion"},
        {"{} {}", "not JSON"},
        {HEAD DATA "}x", "not JSON"},
        {HEAD DATA "},", "not JSON"},
        {HEAD DATA "}}", "not JSON"},
        {HEAD DATA ",}", "not JSON"},
        {HEAD DATA ",,\"a\":1}", "not JSON"},
        {HEAD DATA " \"a\":1}", "not JSON"},
        {HEAD ",\"a\" 1" DATA "}", "not JSON"},
        {HEAD ",a:1" DATA "}", "not JSON"},
        {HEAD ",'a':1" DATA "}", "not JSON"},
        {HEAD ",\"x\":01" DATA "}", "not JSON"},
        {HEAD ",\"x\":-" DATA "}", "not JSON"},
        {HEAD ",\"x\":+1" DATA "}", "not JSON"},
        {HEAD ",\"x\":1." DATA "}", "not JSON"},
        {HEAD ",\"x\":.5" DATA "}", "not JSON"},
        {HEAD ",\"x\":1e" DATA "}", "not JSON"},
        {HEAD ",\"x\":1e+" DATA "}", "not JSON"},
        {HEAD ",\"x\":0x10" DATA "}", "not JSON"},
        {HEAD ",\"x\":NaN" DATA "}", "not JSON"},
        {HEAD ",\"x\":Infinity" DATA "}", "not JSON"},
        {HEAD ",\"x\":1e400" DATA "}", "not JSON"},
        {HEAD ",\"x\":-1e309" DATA "}", "not JSON"},
        {HEAD ",\"x\":9223372036854775808" DATA "}", "not JSON"},
        {HEAD ",\"x\":-9223372036854775809" DATA "}", "not JSON"},
        {HEAD ",\"x\":tru" DATA "}", "not JSON"},
        {HEAD ",\"x\":truex" DATA "}", "not JSON"},
        {HEAD ",\"x\":nul" DATA "}", "not JSON"},
        {HEAD ",\"x\":True" DATA "}", "not JSON"},
        {HEAD ",\"x\":[1,2" DATA "}", "not JSON"},
        {HEAD ",\"x\":[1,2}" DATA "}", "not JSON"},
        {HEAD ",\"x\":{\"a\"}" DATA "}", "not JSON"},
        {HEAD ",\"x\":{\"a\":1,}" DATA "}", "not JSON"},
        {HEAD ",\"x\":{1:1}" DATA "}", "not JSON"},
        {HEAD ",\"x\":{\"a\":1,\"a\":2}" DATA "}", "not JSON"},
        {HEAD ",\"x\":[{\"a\":1,\"b\":{\"c\":1,\"c\":1}}]" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\\x\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\\u12\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\\u12G4\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\\ud800\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\\udc00\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\\ud800\\u0041\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\\ud800\\ud800\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\\ude00\\ud83d\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\\u0000\"" DATA "}", "not JSON"},
        {HEAD ",\"\\u0000\":1" DATA "}", "not JSON"},
        {HEAD ",\"data\":{\"a\":\"\\u0000\"}}", "not JSON"},
        {HEAD ",\"requestid\":\"a\\u0000b\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"tab\there\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"new\nline\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\x80\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\xc0\xaf\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\xed\xa0\x80\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\xf4\x90\x80\x80\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":\"\xe2\x82\"" DATA "}", "not JSON"},
        {HEAD ",\"\xff\":1" DATA "}", "not JSON"},
        {HEAD ",\"source\":\"\xc3\"" DATA "}", "not JSON"},
        {HEAD ",\"data\":{\"a\":\"\xc3\"}}", "not JSON"},
        {HEAD ",\"x\":1" DATA "}\xc3\xa9", "not JSON"},
        {HEAD DATA ",\"data\":{}}", "not JSON"},
        {HEAD ",\"id\":\"" UUID_A "\"" DATA "}", "not JSON"},
        {HEAD ",\"i\\u0064\":\"" UUID_A "\"" DATA "}", "not JSON"},
        {HEAD ",\"datacontenttype\":\"a\",\"datacontenttype\":\"a\"" DATA "}", "not JSON"},
        {HEAD ",\"x\":1,\"\\u0078\":1" DATA "}", "not JSON"},
        {HEAD ",\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,"
              "\"k1\":10" DATA "}",
         "not JSON"},
        {HEAD ",\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,"
              "\"k9\":10" DATA "}",
         "not JSON"},
        {HEAD ",\"a-key-that-is-longer-than-thirty-two-bytes\":1,"
              "\"a-key-that-is-longer-than-thirty-two-bytes\":2" DATA "}",
         "not JSON"},
        {HEAD ",\"data\":{\"a\":1,\"a\":2}}", "not JSON"},
        {HEAD ",\"data\":{\"a\":{\"b\":1,\"b\":1}}}", "not JSON"},
        {HEAD ",\"data\":[{\"a\":1,\"a\":2}]}", "not JSON"},
        {HEAD ",\"data\":{\"a\":1,}}", "not JSON"},
        {HEAD ",\"data\":{\"a\":01}}", "not JSON"},
        {HEAD ",\"data\":{\"a\":1e999}}", "not JSON"},
        {HEAD ",\"data\":{\"a\":1}", "not JSON"},
        {HEAD ",\"data\":[]}", "data must be a JSON object"},
        {HEAD ",\"data\":\"{}\"}", "data must be a JSON object"},
        {HEAD ",\"data\":null}", "data must be a JSON object"},
        {HEAD ",\"data\":1}", "data must be a JSON object"},
        {HEAD ",\"data\":[{\"a\":1}]}", "data must be a JSON object"},
        {HEAD "}", "data must be a JSON object"},
        {HEAD ",\"ifmatch\":0" DATA "}", "ifmatch must be a positive integer"},
        {HEAD ",\"ifmatch\":-3" DATA "}", "ifmatch must be a positive integer"},
        {HEAD ",\"ifmatch\":3.0" DATA "}", "ifmatch must be a positive integer"},
        {HEAD ",\"ifmatch\":3e0" DATA "}", "ifmatch must be a positive integer"},
        {HEAD ",\"ifmatch\":\"3\"" DATA "}", "ifmatch must be a positive integer"},
        {HEAD ",\"ifmatch\":true" DATA "}", "ifmatch must be a positive integer"},
        {HEAD ",\"ifmatch\":null" DATA "}", "ifmatch must be a positive integer"},
        {HEAD ",\"ifmatch\":[3]" DATA "}", "ifmatch must be a positive integer"},
        {HEAD ",\"ifmatch\":-9223372036854775808" DATA "}", "ifmatch must be a positive integer"},
        {HEAD ",\"ifmatch\":9223372036854775808" DATA "}", "not JSON"},
        {HEAD ",\"ifmatch\":1e999" DATA "}", "not JSON"},
        {HEAD ",\"ifmatch\":3,\"ifmatch\":3" DATA "}", "not JSON"},
        {HEAD ",\"source\":7" DATA "}", "not JSON"}, /* a duplicate before its type */
        {"{\"specversion\":1.0}", "specversion must be a string of at most 7 bytes"},
        {"{\"specversion\":\"1.0.0.0.0\"}", "specversion must be a string of at most 7 bytes"},
        {"{\"specversion\":\"1.0\",\"id\":\"" UUID_A "\"}", "missing type"},
        {"{\"specversion\":\"1.0\",\"id\":[],\"type\":\"diary.x\"}",
         "id must be a string of at most 36 bytes"},
        {"{\"specversion\":\"1.0\",\"id\":\"" UUID_A "\",\"type\":{\"a\":1},\"subject\":\"" UUID_B
         "\"}",
         "type must be a string of at most 63 bytes"},
        {HEAD ",\"requestid\":null" DATA "}", "requestid must be a string of at most 63 bytes"},
        {HEAD ",\"traceparent\":false" DATA "}",
         "traceparent must be a string of at most 63 bytes"},
        {HEAD ",\"occurredat\":1" DATA "}", "occurredat must be a string of at most 39 bytes"},
        {HEAD ",\"clientaddr\":{}" DATA "}", "clientaddr must be a string of at most 63 bytes"},
        {HEAD ",\"requesthash\":\"g\"" DATA "}", "requesthash must be hexadecimal digits"},
        {HEAD ",\"requesthash\":\"\\u0061\\u0030x\"" DATA "}",
         "requesthash must be hexadecimal digits"},
        {HEAD ",\"specversion\":\"1.0\"" DATA "}", "not JSON"},
        {"{\"specversion\":\"1.1\",\"id\":\"" UUID_A "\",\"source\":\"s\",\"type\":\"diary.x\","
         "\"subject\":\"" UUID_B "\",\"time\":\"t\",\"data\":{}}",
         "specversion must be \"1.0\""},
        {"{\"specversion\":\"1.0\",\"id\":\"" UUID_A "x\",\"source\":\"s\",\"type\":\"diary.x\","
         "\"subject\":\"" UUID_B "\",\"time\":\"t\",\"data\":{}}",
         "must be a string of at most 36 bytes"},
        {"{\"specversion\":\"1.0\",\"id\":\"" UUID_A "\",\"source\":\"s\",\"type\":\"diar.x\","
         "\"subject\":\"" UUID_B "\",\"time\":\"t\",\"data\":{}}",
         "is not a diary event type"},
        {"{\"specversion\":\"1.0\",\"id\":\"" UUID_A "\",\"source\":\"s\",\"type\":\"diary.x\","
         "\"subject\":\"not-a-uuid\",\"time\":\"t\",\"data\":{}}",
         "id and subject must be UUIDs"},
        {"{\"specversion\":\"1.0\",\"id\":\"" UUID_A "\",\"source\":\"s\",\"type\":\"diary.x\","
         "\"subject\":\"" UUID_B "\",\"data\":{}}",
         "missing time"},
    };

    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++)
        expect_accepted(accepted[i]);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        expect_refused(refused[i].json, refused[i].why);
    /* NULL with no bytes, as replay may hand a message with no payload. */
    expect_same_len(NULL, 0);
}

/* A full envelope as ingest writes it, and with whitespace everywhere JSON allows it. */
static char *full_envelope(size_t *len, bool spaced)
{
    struct evt e;
    char *s;

    fill(&e);
    strcpy(e.source, "ingest/127.0.0.1:8080 \"quoted\" \\ \xc3\xa9\xf0\x9f\x98\x80");
    strcpy(e.traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    strcpy(e.occurredat, "2026-11-24T15:59:58.000Z");
    strcpy(e.clientaddr, "127.0.0.1");
    strcpy(e.requesthash, "0123456789abcdef");
    json_object_set_new(e.data, "nested", json_pack("{s:[i,f,b,n,s]}", "list", -7, 1e-3, 1, "\t"));
    if (spaced) {
        /* Whitespace of all four kinds around every comma, colon and bracket. */
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:O}",
                              "specversion", "1.0", "id", e.id, "source", e.source, "type", e.type,
                              "subject", e.subject, "time", e.time, "requestid", e.requestid,
                              "traceparent", e.traceparent, "occurredat", e.occurredat,
                              "requesthash", e.requesthash, "ifmatch", 3, "data", e.data);
        char *compact = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        size_t n = strlen(compact), k = 0;
        bool in_string = false;

        s = malloc(n * 9 + 10);
        assert_non_null(s);
        memcpy(s + k, " \t\r\n", 4);
        k += 4;
        for (size_t i = 0; i < n; i++) {
            char c = compact[i];

            if (in_string) {
                s[k++] = c;
                if (c == '\\')
                    s[k++] = compact[++i];
                else if (c == '"')
                    in_string = false;
                continue;
            }
            if (c == '"') {
                in_string = true;
                s[k++] = c;
                continue;
            }
            if (c && strchr("{}[],:", c)) {
                memcpy(s + k, " \t\r\n", 4);
                k += 4;
                s[k++] = c;
                memcpy(s + k, "\n\r\t ", 4);
                k += 4;
            } else {
                s[k++] = c;
            }
        }
        *len = k;
        free(compact);
        json_decref(o);
    } else {
        s = evt_serialize(&e, len);
    }
    evt_clear(&e);
    assert_non_null(s);
    return s;
}

static void whitespace_everywhere_is_accepted(void **state)
{
    size_t len;
    char *s = full_envelope(&len, true), err[256];
    struct evt e;

    expect_same_len(s, len);
    if (evt_parse(s, len, &e, err, sizeof(err)) != 0) {
        test_print_input(s, len);
        fail_msg("%s", err);
    }
    assert_string_equal(e.source, "ingest/127.0.0.1:8080 \"quoted\" \\ \xc3\xa9\xf0\x9f\x98\x80");
    assert_int_equal(e.ifmatch, 3);
    assert_non_null(json_object_get(e.data, "nested"));
    evt_clear(&e);
    free(s);
}

/* Cut anywhere before its closing brace, a valid envelope is refused (and nothing reads past
 * the cut); the whitespace after it may go. */
static void every_truncation_is_refused(void **state)
{
    for (int spaced = 0; spaced < 2; spaced++) {
        size_t len, closed;
        char *s = full_envelope(&len, spaced), err[256];

        for (closed = len; s[closed - 1] != '}'; closed--)
            ;
        for (size_t cut = 0; cut <= len; cut++) {
            char *copy = test_exact(s, cut);
            struct evt e;
            int rc = evt_parse(copy, cut, &e, err, sizeof(err));

            if ((rc == 0) != (cut >= closed))
                fail_msg("%s the first %zu of %zu bytes (%s)", rc ? "refused" : "accepted", cut,
                         len, rc ? err : "");
            evt_clear(&e);
            free(copy);
            expect_same_len(s, cut);
        }
        free(s);
    }
}

/* Every byte of a valid envelope deleted, or replaced by a byte that matters to JSON: the
 * same outcome as the reference. */
static void single_byte_changes_match_the_reference(void **state)
{
    static const unsigned char bytes[] = {'"',  '\\', '{',  '}',  '[',  ']',  ',',  ':', ' ',  '\n',
                                          '0',  '9',  '-',  '.',  'e',  'a',  'u',  't', 0x00, 0x01,
                                          0x1f, 0x7f, 0x80, 0xbf, 0xc3, 0xed, 0xf4, 0xff};
    size_t len;
    char *s = full_envelope(&len, false);
    char *m = malloc(len + 1);

    assert_non_null(m);
    for (size_t i = 0; i < len; i++) {
        memcpy(m, s, i);
        memcpy(m + i, s + i + 1, len - i - 1);
        expect_same_len(m, len - 1);
        memcpy(m, s, len);
        for (size_t b = 0; b < sizeof(bytes); b++) {
            m[i] = (char)bytes[b];
            expect_same_len(m, len);
        }
        /* And one byte inserted before it. */
        memcpy(m, s, i);
        memcpy(m + i + 1, s + i, len - i);
        m[i] = '"';
        expect_same_len(m, len + 1);
        m[i] = ',';
        expect_same_len(m, len + 1);
    }
    free(m);
    free(s);
}

/* String members decode every escape, and their limits count decoded bytes. */
static void string_members_decode_escapes_within_their_limits(void **state)
{
    char json[1024], err[256], big[300];
    struct evt e;

    snprintf(json, sizeof(json),
             HEAD ",\"requestid\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20AC\\ud83d\\ude00"
                  "\"" DATA "}");
    expect_same(json);
    assert_int_equal(evt_parse(json, strlen(json), &e, err, sizeof(err)), 0);
    assert_string_equal(e.requestid, "\"\\/\b\f\n\r\tA\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    evt_clear(&e);

    /* source has room for 127 bytes. */
    memset(big, 'a', 127);
    big[127] = '\0';
    snprintf(json, sizeof(json), HEAD ",\"clientaddr\":\"c\",\"source2\":\"%s\"" DATA "}", big);
    expect_accepted(json);
    for (int over = 0; over < 2; over++) {
        const char *tail = over ? "\\u00e9" : "\\u0041"; /* 126 + 2 bytes, or 126 + 1 */

        snprintf(json, sizeof(json),
                 "{\"specversion\":\"1.0\",\"id\":\"" UUID_A "\",\"source\":\"%.126s%s\","
                 "\"type\":\"diary.x\",\"subject\":\"" UUID_B "\",\"time\":\"t\","
                 "\"requestid\":\"r\",\"data\":{}}",
                 big, tail);
        expect_same(json);
        if (over) {
            expect_refused(json, "source must be a string of at most 127 bytes");
        } else {
            assert_int_equal(evt_parse(json, strlen(json), &e, err, sizeof(err)), 0);
            assert_int_equal(strlen(e.source), 127);
            evt_clear(&e);
        }
    }
    /* 128 plain bytes. */
    snprintf(json, sizeof(json),
             "{\"specversion\":\"1.0\",\"id\":\"" UUID_A "\",\"source\":\"%sa\","
             "\"type\":\"diary.x\",\"subject\":\"" UUID_B "\",\"time\":\"t\",\"data\":{}}",
             big);
    expect_refused(json, "source must be a string of at most 127 bytes");
    /* 36 bytes fill id; the same written with escapes too. */
    expect_accepted(
        "{\"specversion\":\"1.0\",\"id\":\"\\u0030192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8\\u0066\","
        "\"source\":\"s\",\"type\":\"diary.x\",\"subject\":\"" UUID_B "\",\"time\":\"t\","
        "\"data\":{}}");
}

/* Nesting as deep as jansson allows (2048 levels, the envelope being the first) and no
 * deeper, in a member evt_parse skips and in data. */
static void nesting_is_limited_like_jansson(void **state)
{
    for (int in_data = 0; in_data < 2; in_data++)
        for (int depth = 2040; depth <= 2050; depth++) {
            size_t n = strlen(HEAD) + 2 * (size_t)depth + 100, k;
            char *s = malloc(n);

            assert_non_null(s);
            k = (size_t)sprintf(s, "%s", HEAD);
            k += (size_t)sprintf(s + k, in_data ? ",\"data\":{\"a\":" : ",\"x\":");
            for (int i = 0; i < depth; i++)
                s[k++] = '[';
            for (int i = 0; i < depth; i++)
                s[k++] = ']';
            k += (size_t)sprintf(s + k, in_data ? "}}" : ",\"data\":{}}");
            expect_same_len(s, k);
            free(s);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(serialize_then_parse_is_identity),
        cmocka_unit_test(parse_refuses_what_is_not_an_envelope),
        cmocka_unit_test(requesthash_round_trips_and_is_checked),
        cmocka_unit_test(oversized_event_is_refused_unread),
        cmocka_unit_test(clock_has_the_envelope_form),
        cmocka_unit_test(matches_the_jansson_reference),
        cmocka_unit_test(whitespace_everywhere_is_accepted),
        cmocka_unit_test(every_truncation_is_refused),
        cmocka_unit_test(single_byte_changes_match_the_reference),
        cmocka_unit_test(string_members_decode_escapes_within_their_limits),
        cmocka_unit_test(nesting_is_limited_like_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
