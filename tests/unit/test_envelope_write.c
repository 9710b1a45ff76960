/* evt_write (the envelope written straight into one buffer) against the envelope as jansson
 * builds and dumps it, which is what evt_serialize wrote before evt_write existed: the bytes
 * must be the same, escapes, member order and left-out members included. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

/* The reference: the jansson tree of the envelope, dumped compact in insertion order. */
static char *reference(const struct evt *e)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "specversion", "1.0", "id", e->id,
                  "source", e->source, "type", e->type, "subject", e->subject, "time", e->time,
                  "datacontenttype", "application/json", "requestid", e->requestid);
    char *s;

    if (!o)
        return NULL;
    if (e->traceparent[0])
        json_object_set_new(o, "traceparent", json_string(e->traceparent));
    if (e->occurredat[0])
        json_object_set_new(o, "occurredat", json_string(e->occurredat));
    if (e->clientaddr[0])
        json_object_set_new(o, "clientaddr", json_string(e->clientaddr));
    if (e->ifmatch > 0)
        json_object_set_new(o, "ifmatch", json_integer(e->ifmatch));
    if (e->requesthash[0])
        json_object_set_new(o, "requesthash", json_string(e->requesthash));
    json_object_set_new(o, "data", e->data ? json_incref(e->data) : json_object());
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

static void fill(struct evt *e)
{
    memset(e, 0, sizeof(*e));
    strcpy(e->id, "0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f");
    strcpy(e->type, "diary.entry.set.v1");
    strcpy(e->subject, "7a1c0000-0000-4000-8000-000000000001");
    strcpy(e->source, "ingest/127.0.0.1:8080");
    strcpy(e->time, "2026-11-24T16:00:00.123Z");
    strcpy(e->requestid, "0123456789abcdef0123456789abcdef");
    e->data = json_pack("{s:s, s:s, s:s, s:s, s:f}", "entry_id",
                        "6e2f8b31-4c5d-8e6f-a071-0000000000e1", "date", "2026-11-24", "meal_type",
                        "lunch", "food_id", "0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f", "amount", 55.5);
}

static void same_bytes(const struct evt *e)
{
    char *want = reference(e), *got;
    size_t len = 0;

    got = evt_serialize(e, &len);
    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_int_equal(len, strlen(want));
    assert_string_equal(got, want);
    free(got);
    free(want);
}

static void plain_envelope_matches_jansson(void **state)
{
    struct evt e;

    fill(&e);
    same_bytes(&e);
    strcpy(e.clientaddr, "127.0.0.1");
    strcpy(e.requesthash, "ab01");
    e.ifmatch = 9007199254740993LL;
    same_bytes(&e);
    strcpy(e.traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    strcpy(e.occurredat, "2026-11-24T15:59:59+01:00");
    same_bytes(&e);
    json_decref(e.data);
    e.data = NULL; /* no data: an empty object */
    same_bytes(&e);
    e.requestid[0] = '\0'; /* requestid is written even when empty */
    same_bytes(&e);
}

static void escapes_match_jansson(void **state)
{
    static const char *const sources[] = {
        "quote \" backslash \\ slash /",
        "controls \b\f\n\r\t \x01\x1f\x7f",
        "utf-8 \xc3\xa9\xe2\x82\xac\xf0\x9f\x8d\x8e",
        "\xe2\x80\xa8 line separator",
        "", /* empty */
    };
    struct evt e;

    fill(&e);
    for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
        snprintf(e.source, sizeof(e.source), "%s", sources[i]);
        snprintf(e.clientaddr, sizeof(e.clientaddr), "%s", sources[i]);
        same_bytes(&e);
    }
    json_decref(e.data);
}

/* Not UTF-8: jansson refuses a required member (no envelope) and leaves an optional one out. */
static void invalid_utf8_is_treated_as_jansson_does(void **state)
{
    static const char *const bad[] = {"\xc3", "\xc0\xaf",   "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                      "\xff", "ok \xe2\x82"};
    struct evt e;
    size_t len;

    fill(&e);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct evt c = e;

        snprintf(c.clientaddr, sizeof(c.clientaddr), "%s", bad[i]);
        snprintf(c.requesthash, sizeof(c.requesthash), "%s", bad[i]);
        same_bytes(&c);
        c.clientaddr[0] = c.requesthash[0] = '\0';
        snprintf(c.source, sizeof(c.source), "%s", bad[i]);
        assert_null(reference(&c));
        assert_null(evt_serialize(&c, &len));
    }
    json_decref(e.data);
}

/* evt_write takes the data as text and writes it as it is. */
static void write_takes_data_text(void **state)
{
    static const char data[] = "{\"date\":\"2026-11-24\",\"amount\":150}";
    struct evt_view v = {
        .id = "0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f",
        .type = "diary.weight.set.v1",
        .subject = "7a1c0000-0000-4000-8000-000000000001",
        .source = "s",
        .time = "t",
        .data = data,
        .datalen = sizeof(data) - 1,
    };
    struct evt back;
    char err[200];
    size_t len;
    char *s = evt_write(&v, &len);

    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    assert_non_null(strstr(s, ",\"requestid\":\"\",\"data\":{\"date\":\"2026-11-24\""));
    assert_int_equal(evt_parse(s, len, &back, err, sizeof(err)), 0);
    assert_int_equal(json_integer_value(json_object_get(back.data, "amount")), 150);
    evt_clear(&back);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_envelope_matches_jansson),
        cmocka_unit_test(escapes_match_jansson),
        cmocka_unit_test(invalid_utf8_is_treated_as_jansson_does),
        cmocka_unit_test(write_takes_data_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
