#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <string.h>

#include "position.h"
#include "uuid.h"

static void format_parse_roundtrip(void **state)
{
    diary_uuid_t u, v;
    char s[UUID_STRLEN];

    uuid_v7(&u, 1700000000000ULL);
    uuid_format(&u, s);
    assert_int_equal(strlen(s), 36);
    assert_int_equal(s[14], '7');
    assert_int_equal(uuid_parse(s, &v), 0);
    assert_memory_equal(u.b, v.b, 16);
}

static void v7_is_time_ordered(void **state)
{
    diary_uuid_t a, b;
    uuid_v7(&a, 1700000000000ULL);
    uuid_v7(&b, 1700000000001ULL);
    assert_true(memcmp(a.b, b.b, 16) < 0);
}

static void derive_is_deterministic_and_label_separated(void **state)
{
    diary_uuid_t a, b, c;
    const char *p1[] = {"user-1", "key-1"}, *p2[] = {"user-1key-1", ""};
    char s[UUID_STRLEN];

    uuid_derive(&a, "event", p1, 2);
    uuid_derive(&b, "event", p1, 2);
    assert_memory_equal(a.b, b.b, 16);
    uuid_derive(&c, "other", p1, 2);
    assert_memory_not_equal(a.b, c.b, 16);
    /* Parts are NUL-separated, so shifting bytes between parts changes the id. */
    uuid_derive(&c, "event", p2, 2);
    assert_memory_not_equal(a.b, c.b, 16);
    uuid_format(&a, s);
    assert_int_equal(s[14], '8');

    uuid_child(&b, &a, "food");
    uuid_child(&c, &a, "food");
    assert_memory_equal(b.b, c.b, 16);
}

static void parse_rejects_bad_forms(void **state)
{
    diary_uuid_t u;
    const char *bad[] = {"",
                         "not-a-uuid",
                         "0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8",
                         "0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8fa",
                         "0192f0a4x6b1e-7c3a-9a4e-3b2f1c0d9e8f",
                         "0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8g",
                         NULL};
    for (int i = 0; bad[i]; i++)
        assert_int_equal(uuid_parse(bad[i], &u), -1);
    assert_int_equal(uuid_parse(NULL, &u), -1);
    assert_int_equal(uuid_parse("0192F0A4-6B1E-7C3A-9A4E-3B2F1C0D9E8F", &u), 0);
}

static void position_roundtrip_and_rejects(void **state)
{
    struct position p = {3, 1042}, q;
    char s[POSITION_STRLEN];

    position_format(&p, s);
    assert_string_equal(s, "3:1042");
    assert_int_equal(position_parse(s, &q), 0);
    assert_int_equal(q.partition, 3);
    assert_int_equal(q.offset, 1042);
    const char *bad[] = {"", ":", "3:", ":4", "a:1", "3:-1", "3:1x", "-1:2", "3:1:2", NULL};
    for (int i = 0; bad[i]; i++)
        assert_int_equal(position_parse(bad[i], &q), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(format_parse_roundtrip),
        cmocka_unit_test(v7_is_time_ordered),
        cmocka_unit_test(derive_is_deterministic_and_label_separated),
        cmocka_unit_test(parse_rejects_bad_forms),
        cmocka_unit_test(position_roundtrip_and_rejects),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
