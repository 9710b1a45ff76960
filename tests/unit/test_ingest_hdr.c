/* Unit tests for ingest/hdr.c: the request header rules (request ids, Prefer: wait, If-Match,
 * traceparent, client timestamps, content types, bearer credentials, idempotency keys). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../ingest/hdr.c"

static void request_ids(void **state)
{
    char longid[80];

    (void)state;
    assert_true(hdr_request_id_ok("slice-request-0001"));
    assert_true(hdr_request_id_ok("a"));
    assert_true(hdr_request_id_ok("4f3c2b1a.x_y:z"));
    assert_false(hdr_request_id_ok(NULL));
    assert_false(hdr_request_id_ok(""));
    assert_false(hdr_request_id_ok("bad id with spaces"));
    assert_false(hdr_request_id_ok("quote\"d"));
    assert_false(hdr_request_id_ok("new\nline"));
    memset(longid, 'a', 63);
    longid[63] = '\0';
    assert_true(hdr_request_id_ok(longid));
    longid[63] = 'a';
    longid[64] = '\0';
    assert_false(hdr_request_id_ok(longid));
}

static void prefer_wait(void **state)
{
    long s = -1;

    (void)state;
    assert_true(hdr_prefer_wait("wait=5", &s));
    assert_int_equal(s, 5);
    assert_true(hdr_prefer_wait("respond-async, wait=15", &s));
    assert_int_equal(s, 15);
    assert_true(hdr_prefer_wait("Wait = 3 ; foo=bar", &s));
    assert_int_equal(s, 3);
    assert_true(hdr_prefer_wait("wait=\"7\"", &s));
    assert_int_equal(s, 7);
    assert_true(hdr_prefer_wait("wait=0", &s));
    assert_int_equal(s, 0);
    assert_true(hdr_prefer_wait("wait=99999999999999999999", &s));
    assert_int_equal(s, 86400);
    assert_false(hdr_prefer_wait(NULL, &s));
    assert_false(hdr_prefer_wait("", &s));
    assert_false(hdr_prefer_wait("respond-async", &s));
    assert_false(hdr_prefer_wait("wait=", &s));
    assert_false(hdr_prefer_wait("wait=abc", &s));
    assert_false(hdr_prefer_wait("wait=5x", &s));
    assert_false(hdr_prefer_wait("waiting=5", &s));
    assert_false(hdr_prefer_wait("wait=-1", &s));
}

static void if_match(void **state)
{
    int64_t v = 0;

    (void)state;
    assert_int_equal(hdr_if_match("\"3\"", &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(hdr_if_match("W/\"12\"", &v), 0);
    assert_int_equal(v, 12);
    assert_int_equal(hdr_if_match(" \"1\" ", &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(hdr_if_match("*", &v), -1);
    assert_int_equal(hdr_if_match("3", &v), -1);
    assert_int_equal(hdr_if_match("\"0\"", &v), -1);
    assert_int_equal(hdr_if_match("\"01\"", &v), -1);
    assert_int_equal(hdr_if_match("\"abc\"", &v), -1);
    assert_int_equal(hdr_if_match("\"1\", \"2\"", &v), -1);
    assert_int_equal(hdr_if_match("\"99999999999999999999\"", &v), -1);
    assert_int_equal(hdr_if_match(NULL, &v), -1);
}

static void traceparent(void **state)
{
    (void)state;
    assert_true(hdr_traceparent_ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_false(hdr_traceparent_ok("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"));
    assert_true(hdr_traceparent_ok("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"));
    assert_false(hdr_traceparent_ok("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_false(hdr_traceparent_ok("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    assert_false(hdr_traceparent_ok("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
    assert_false(hdr_traceparent_ok("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
    assert_false(hdr_traceparent_ok("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"));
    assert_false(hdr_traceparent_ok(""));
    assert_false(hdr_traceparent_ok(NULL));
}

static void rfc3339(void **state)
{
    (void)state;
    assert_true(hdr_rfc3339_ok("2026-11-24T16:00:00Z"));
    assert_true(hdr_rfc3339_ok("2026-11-24T16:00:00.123Z"));
    assert_true(hdr_rfc3339_ok("2026-11-24t16:00:00+01:00"));
    assert_true(hdr_rfc3339_ok("2026-11-24 16:00:00-05:30"));
    assert_true(hdr_rfc3339_ok("2024-02-29T23:59:60Z"));
    assert_false(hdr_rfc3339_ok("2026-11-24"));
    assert_false(hdr_rfc3339_ok("2026-11-24T16:00:00"));
    assert_false(hdr_rfc3339_ok("2026-13-24T16:00:00Z"));
    assert_false(hdr_rfc3339_ok("2026-11-31T16:00:00Z"));
    assert_false(hdr_rfc3339_ok("2026-11-24T24:00:00Z"));
    assert_false(hdr_rfc3339_ok("2026-11-24T16:00:00.Z"));
    assert_false(hdr_rfc3339_ok("2026-11-24T16:00:00+0100"));
    assert_false(hdr_rfc3339_ok("2026-11-24T16:00:00Zjunk"));
    assert_false(hdr_rfc3339_ok("Tue, 24 Nov 2026 16:00:00 GMT"));
    assert_false(hdr_rfc3339_ok(NULL));
}

static void json_content_types(void **state)
{
    (void)state;
    assert_true(hdr_json_content_type("application/json"));
    assert_true(hdr_json_content_type("Application/JSON; charset=utf-8"));
    assert_true(hdr_json_content_type("application/merge-patch+json"));
    assert_true(hdr_json_content_type("application/json ;charset=utf-8"));
    assert_false(hdr_json_content_type("text/plain"));
    assert_false(hdr_json_content_type("application/jsonx"));
    assert_false(hdr_json_content_type("application/+json"));
    assert_false(hdr_json_content_type("application/x-www-form-urlencoded"));
    assert_false(hdr_json_content_type("application/json garbage"));
    assert_false(hdr_json_content_type(""));
    assert_false(hdr_json_content_type(NULL));
}

static void bearer(void **state)
{
    (void)state;
    assert_string_equal(hdr_bearer("Bearer abc.def"), "abc.def");
    assert_string_equal(hdr_bearer("bearer   abc"), "abc");
    assert_null(hdr_bearer("Basic abc"));
    assert_null(hdr_bearer("Bearer"));
    assert_null(hdr_bearer("Bearer   "));
    assert_null(hdr_bearer("Bearerabc"));
    assert_null(hdr_bearer(NULL));
}

static void idempotency_keys(void **state)
{
    char k[300];

    (void)state;
    assert_true(hdr_idempotency_key_ok("k-123"));
    assert_false(hdr_idempotency_key_ok(""));
    assert_false(hdr_idempotency_key_ok("a b"));
    assert_false(hdr_idempotency_key_ok("caf\xc3\xa9"));
    assert_false(hdr_idempotency_key_ok(NULL));
    memset(k, 'k', 255);
    k[255] = '\0';
    assert_true(hdr_idempotency_key_ok(k));
    k[255] = 'k';
    k[256] = '\0';
    assert_false(hdr_idempotency_key_ok(k));
}

static void rfc3339_format(void **state)
{
    char out[32];

    (void)state;
    hdr_rfc3339_utc(0, out, sizeof(out));
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    hdr_rfc3339_utc(1795536000, out, sizeof(out));
    assert_string_equal(out, "2026-11-24T16:00:00Z");
    assert_true(hdr_rfc3339_ok(out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_ids),    cmocka_unit_test(prefer_wait),
        cmocka_unit_test(if_match),       cmocka_unit_test(traceparent),
        cmocka_unit_test(rfc3339),        cmocka_unit_test(json_content_types),
        cmocka_unit_test(bearer),         cmocka_unit_test(idempotency_keys),
        cmocka_unit_test(rfc3339_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
