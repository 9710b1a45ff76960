/* shared/jsonw.c: strings and reals written the way jansson dumps them, jansson's idea of
 * valid UTF-8, and the buffer's hand-over. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"

static const char *const samples[] = {
    "",
    "plain",
    "quote \" and backslash \\ and slash /",
    "\b\f\n\r\t and \x01\x1f controls",
    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8d\x8e",
    "2026-11-24T16:00:00.000Z",
};

static void strings_match_jansson(void **state)
{
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        struct jsonw b = {0};
        json_t *s = json_string(samples[i]);
        char *want = json_dumps(s, JSON_ENCODE_ANY | JSON_COMPACT), *got;
        size_t len;

        assert_true(jsonw_utf8_ok(samples[i]));
        jsonw_string(&b, samples[i]);
        got = jsonw_finish(&b, &len);
        assert_non_null(got);
        assert_string_equal(got, want);
        assert_int_equal(len, strlen(want));
        free(got);
        free(want);
        json_decref(s);
    }
}

static void utf8_like_jansson(void **state)
{
    static const char *const bad[] = {
        "\xc0\xaf",         /* overlong */
        "\xed\xa0\x80",     /* a surrogate */
        "\xf4\x90\x80\x80", /* above U+10FFFF */
        "\xe2\x82",         /* cut short */
        "\xff",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *s = json_string(bad[i]);
        assert_null(s); /* jansson refuses them too */
        assert_false(jsonw_utf8_ok(bad[i]));
    }
}

static void literals_and_growth(void **state)
{
    struct jsonw b = {0};
    char *got;
    size_t len;

    JSONW_LIT(&b, "[");
    for (int i = 0; i < 1000; i++) {
        jsonw_add(&b, i ? "," : "", i ? 1 : 0);
        jsonw_string(&b, "x");
    }
    JSONW_LIT(&b, "]");
    got = jsonw_finish(&b, &len);
    assert_non_null(got);
    assert_int_equal(len, 2 + 1000 * 3 + 999);
    assert_int_equal(got[len], '\0');
    free(got);
}

static void failed_buffer_gives_null(void **state)
{
    struct jsonw b = {0};

    b.failed = true;
    jsonw_string(&b, "x");
    assert_null(jsonw_finish(&b, NULL));
}

/* One real: jsonw_real_text against json_dumpb of json_real. */
static void real_matches(double d)
{
    char want[64], got[JSONW_REAL_MAX];
    json_t *r = json_real(d);
    size_t wn = r ? json_dumpb(r, want, sizeof(want), JSON_ENCODE_ANY | JSON_COMPACT) : 0;
    size_t gn = jsonw_real_text(d, got, sizeof(got));

    json_decref(r);
    if (wn != gn || memcmp(want, got, wn) != 0) {
        print_error("%.17g: jansson \"%.*s\" (%zu), jsonw \"%s\" (%zu)\n", d, (int)wn, want, wn,
                    gn ? got : "", gn);
        fail();
    }
}

static void reals_match_jansson(void **state)
{
    static const double fixed[] = {0.0,
                                   -0.0,
                                   1.0,
                                   150.5,
                                   0.1,
                                   100000.0,
                                   1e2,
                                   1e-3,
                                   1e-5,
                                   1e16,
                                   1e17,
                                   1e21,
                                   1e25,
                                   1e-7,
                                   123456789.125,
                                   4.9e-324,
                                   1.2345678901234567e-300,
                                   -1.2345678901234567e-308,
                                   1e308,
                                   -1e-100,
                                   99999.99,
                                   0.30000000000000004,
                                   2.5e-5};
    uint64_t x = 0x9e3779b97f4a7c15u;

    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        real_matches(fixed[i]);
    /* Every exponent and sign, random mantissas (xorshift over the bits of a double), and
     * the amounts a client sends (two decimals). */
    for (int i = 0; i < 200000; i++) {
        double d;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(&d, &x, sizeof(d));
        if (isfinite(d))
            real_matches(d);
        real_matches((double)(x % 10000001u) / 100.0);
    }
    assert_int_equal(jsonw_real_text(INFINITY, (char[JSONW_REAL_MAX]){0}, JSONW_REAL_MAX), 0);
    assert_int_equal(jsonw_real_text(NAN, (char[JSONW_REAL_MAX]){0}, JSONW_REAL_MAX), 0);
    assert_int_equal(jsonw_real_text(0.1, (char[8]){0}, 8), 0); /* does not fit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strings_match_jansson),    cmocka_unit_test(reals_match_jansson),
        cmocka_unit_test(utf8_like_jansson),        cmocka_unit_test(literals_and_growth),
        cmocka_unit_test(failed_buffer_gives_null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
