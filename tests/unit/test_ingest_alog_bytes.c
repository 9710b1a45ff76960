/* The access log's table of bytes that need no JSON escape (ingest/alog.c) against the rule
 * it encodes, for every byte: printable ASCII other than quote and backslash is written as it
 * is, anything else makes alog_format decline (and the caller log through jansson). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include "../../ingest/alog.c"

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
        cmocka_unit_test(every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
