/* The access log line written without jansson (ingest/alog.c) against the line shared/log.c
 * writes through jansson: the same bytes, or a refusal when a value needs an escape. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include "../../ingest/alog.c"

/* log.c's emit, minus the clock and the output: the object it builds, dumped as it dumps it. */
static char *reference(const char *ts, const char *rid, const char *const *kv)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level", "info", "svc", "diary-ingest",
                          "msg", "request");
    char *line;

    if (rid && *rid)
        json_object_set_new(o, "request_id", json_string(rid));
    for (; kv && kv[0] && kv[1]; kv += 2)
        json_object_set_new(o, kv[0], json_string(kv[1]));
    line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return line;
}

static void line_matches_log_fields(void **state)
{
    const char *kv[] = {
        "method", "PUT",       "path",        "/v1/diary/2026-11-24/lunch/x",
        "status", "202",       "duration_ms", "1.234",
        "peer",   "127.0.0.1", "user_id",     "7a1c0000-0000-4000-8000-000000000001",
        NULL};
    const char *rids[] = {"0123456789abcdef0123456789abcdef", "", NULL};
    char out[1024];

    for (size_t i = 0; i < sizeof(rids) / sizeof(rids[0]); i++) {
        char *want = reference("2026-11-24T16:00:00.123Z", rids[i], kv);
        size_t n = alog_format(out, sizeof(out), "2026-11-24T16:00:00.123Z", "info", "diary-ingest",
                               "request", rids[i], kv);

        assert_int_equal(n, strlen(want) + 1);
        assert_memory_equal(out, want, n - 1);
        assert_int_equal(out[n - 1], '\n');
        free(want);
    }
}

/* Anything jansson would escape (or refuse) makes alog_format decline. */
static void values_that_need_escapes_are_declined(void **state)
{
    static const char *const values[] = {"a\"b",      "a\\b",        "tab\there",
                                         "new\nline", "caf\xc3\xa9", "\x7f"};
    char out[1024];

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        const char *kv[] = {"path", values[i], NULL};
        assert_int_equal(alog_format(out, sizeof(out), "t", "info", "s", "m", "r", kv), 0);
    }
}

static void a_line_that_does_not_fit_is_declined(void **state)
{
    const char *kv[] = {"path", "/v1/me", NULL};
    char *want = reference("t", "r", kv), out[256];
    size_t need = strlen(want) + 1;

    free(want);
    assert_int_equal(alog_format(out, need - 1, "t", "info", "diary-ingest", "request", "r", kv),
                     0);
    assert_int_equal(alog_format(out, need, "t", "info", "diary-ingest", "request", "r", kv), need);
}

/* The table of bytes that need no JSON escape against the rule it encodes, for every byte:
 * printable ASCII other than quote and backslash is written as it is, anything else makes
 * alog_format decline (and the caller log through jansson). */
static void every_byte(void **state)
{
    char value[4] = {'a', 0, 'b', 0}, out[256];

    for (int c = 1; c < 256; c++) {
        const char *kv[] = {"path", value, NULL};
        bool want = c >= 0x20 && c <= 0x7e && c != '"' && c != '\\';
        size_t n;

        value[1] = (char)c;
        assert_int_equal(plain[c], want);
        assert_int_equal(plain_len(value), want ? 3 : 1);
        n = alog_format(out, sizeof(out), "t", "info", "s", "m", "r", kv);
        if (!want) {
            assert_int_equal(n, 0);
            continue;
        }
        assert_true(n > 0);
        assert_non_null(memmem(out, n, value, 3));
    }
    assert_false(plain[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(line_matches_log_fields),
        cmocka_unit_test(values_that_need_escapes_are_declined),
        cmocka_unit_test(a_line_that_does_not_fit_is_declined),
        cmocka_unit_test(every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
