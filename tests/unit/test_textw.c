/* The bounded text writer (shared/textw.c) against what it replaces: snprintf's "%llu",
 * "%lld" and "%s", position_format, sodium_bin2hex, and snprintf's cut when the text does not
 * fit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include "textw.h"

static const int64_t samples[] = {0,
                                  1,
                                  9,
                                  10,
                                  99,
                                  100,
                                  12345,
                                  -1,
                                  -9,
                                  -10,
                                  2147483647,
                                  -2147483648LL,
                                  INT64_MAX,
                                  INT64_MIN,
                                  INT64_MIN + 1,
                                  1000000000000LL,
                                  -999999999999LL};

static void numbers_print_as_printf_prints_them(void **state)
{
    char got[64], want[64];
    struct textw w;

    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        textw_init(&w, got, sizeof(got));
        textw_i64(&w, samples[i]);
        assert_int_equal(textw_done(&w), snprintf(want, sizeof(want), "%" PRId64, samples[i]));
        assert_string_equal(got, want);

        textw_init(&w, got, sizeof(got));
        textw_u64(&w, (uint64_t)samples[i]);
        assert_int_equal(textw_done(&w),
                         snprintf(want, sizeof(want), "%" PRIu64, (uint64_t)samples[i]));
        assert_string_equal(got, want);
    }
    for (uint64_t v = 1; v < UINT64_MAX / 7; v = v * 7 + 3) {
        textw_init(&w, got, sizeof(got));
        textw_u64(&w, v);
        assert_int_equal(textw_done(&w), snprintf(want, sizeof(want), "%" PRIu64, v));
        assert_string_equal(got, want);
    }
}

static void positions_match_position_format(void **state)
{
    static const int32_t parts[] = {0, 1, 11, 4095, INT32_MAX, -1, INT32_MIN};
    char got[POSITION_STRLEN], want[POSITION_STRLEN];

    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        for (size_t j = 0; j < sizeof(samples) / sizeof(samples[0]); j++) {
            struct position p = {parts[i], samples[j]};

            memset(got, 'x', sizeof(got));
            memset(want, 'y', sizeof(want));
            textw_position(&p, got);
            position_format(&p, want);
            /* Even the longest, cut short, is cut where snprintf cuts it. */
            assert_string_equal(got, want);
        }
}

static void hex_matches_sodium_bin2hex(void **state)
{
    uint8_t bytes[48];
    char got[2 * sizeof(bytes) + 1], want[2 * sizeof(bytes) + 1];
    struct textw w;

    for (size_t n = 0; n <= sizeof(bytes); n++) {
        randombytes_buf(bytes, sizeof(bytes));
        textw_init(&w, got, sizeof(got));
        textw_hex(&w, bytes, n);
        assert_int_equal(textw_done(&w), (long)(2 * n));
        sodium_bin2hex(want, sizeof(want), bytes, n);
        assert_string_equal(got, want);
    }
}

static void text_that_does_not_fit_is_cut_as_snprintf_cuts(void **state)
{
    char got[8];
    struct textw w;

    textw_init(&w, got, sizeof(got));
    textw_str(&w, "event/");
    textw_i64(&w, -123456);
    textw_char(&w, '!');
    assert_int_equal(textw_done(&w), -1);
    assert_string_equal(got, "event/-"); /* snprintf(got, 8, "event/%d!", -123456) */

    /* After a cut nothing more is written, even what would fit. */
    textw_init(&w, got, 4);
    textw_str(&w, "abcd");
    textw_char(&w, 'e');
    assert_int_equal(textw_done(&w), -1);
    assert_string_equal(got, "abc");

    /* Exactly full (the NUL in the last byte) is not a cut. */
    textw_init(&w, got, 4);
    textw_mem(&w, "abcdef", 3);
    assert_int_equal(textw_done(&w), 3);
    assert_string_equal(got, "abc");

    /* Hex digits are cut one by one. */
    for (size_t cap = 1; cap <= 6; cap++) {
        static const uint8_t bytes[] = {0xab, 0xcd};

        textw_init(&w, got, cap);
        textw_hex(&w, bytes, sizeof(bytes));
        assert_int_equal(textw_done(&w), cap > 4 ? 4 : -1);
        assert_memory_equal(got, "abcd", strlen(got));
        assert_int_equal(strlen(got), cap > 4 ? 4 : cap - 1);
    }

    /* A one-byte buffer holds the empty text. */
    textw_init(&w, got, 1);
    textw_str(&w, "");
    assert_int_equal(textw_done(&w), 0);
    textw_char(&w, 'a');
    assert_int_equal(textw_done(&w), -1);
    assert_string_equal(got, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(numbers_print_as_printf_prints_them),
        cmocka_unit_test(positions_match_position_format),
        cmocka_unit_test(hex_matches_sodium_bin2hex),
        cmocka_unit_test(text_that_does_not_fit_is_cut_as_snprintf_cuts),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
