/* Unit tests for ingest/revset.c: the in-memory set of revoked sessions and per-user token
 * cut-offs (insert, larger value wins, growth, pruning by expiry with backward-shift deletion
 * keeping every other key reachable). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../ingest/revset.c"

static diary_uuid_t key(uint32_t n)
{
    diary_uuid_t k;
    const char *parts[1];
    char buf[16];

    snprintf(buf, sizeof(buf), "%u", n);
    parts[0] = buf;
    uuid_derive(&k, "revset-test", parts, 1);
    return k;
}

static void put_get_and_larger_value_wins(void **state)
{
    revset_t *s = revset_new();
    diary_uuid_t a = key(1), b = key(2);
    int64_t v = 0;

    (void)state;
    assert_non_null(s);
    assert_false(revset_get(s, &a, &v));
    assert_int_equal(revset_put(s, &a, 100, 1000), 0);
    assert_true(revset_get(s, &a, &v));
    assert_int_equal(v, 100);
    assert_false(revset_get(s, &b, &v));
    /* A smaller cut-off (an older event read again) does not lower it. */
    assert_int_equal(revset_put(s, &a, 50, 2000), 0);
    assert_true(revset_get(s, &a, &v));
    assert_int_equal(v, 100);
    assert_int_equal(revset_put(s, &a, INT64_MAX, 500), 0);
    assert_true(revset_get(s, &a, &v));
    assert_int_equal(v, INT64_MAX);
    assert_int_equal(revset_count(s), 1);
    /* The later expiry (2000) was kept: pruning at 1999 keeps the key. */
    assert_int_equal(revset_prune(s, 1999), 0);
    assert_int_equal(revset_prune(s, 2000), 1);
    assert_false(revset_get(s, &a, &v));
    revset_destroy(s);
    revset_destroy(NULL);
}

/* Many keys, half expiring: after growth and pruning every survivor is still found and no
 * pruned key is. */
static void grows_and_prunes_without_losing_keys(void **state)
{
    revset_t *s = revset_new();
    int64_t v;
    const uint32_t n = 20000;

    (void)state;
    for (uint32_t i = 0; i < n; i++) {
        diary_uuid_t k = key(i);
        assert_int_equal(revset_put(s, &k, i, i % 2 ? 10 : 20), 0);
    }
    assert_int_equal(revset_count(s), n);
    for (uint32_t i = 0; i < n; i++) {
        diary_uuid_t k = key(i);
        assert_true(revset_get(s, &k, &v));
        assert_int_equal(v, i);
    }
    assert_int_equal(revset_prune(s, 10), n / 2);
    assert_int_equal(revset_count(s), n / 2);
    for (uint32_t i = 0; i < n; i++) {
        diary_uuid_t k = key(i);
        assert_int_equal(revset_get(s, &k, &v), i % 2 == 0);
    }
    assert_int_equal(revset_prune(s, 20), n / 2);
    assert_int_equal(revset_count(s), 0);
    revset_destroy(s);
}

/* Keys whose probe runs wrap around the end of the table survive the removal of their
 * neighbours (the backward shift across the wrap). */
static void prune_across_the_wrap(void **state)
{
    int64_t v;

    (void)state;
    for (uint32_t round = 0; round < 50; round++) {
        revset_t *s = revset_new();
        diary_uuid_t ks[40];

        for (uint32_t i = 0; i < 40; i++) {
            ks[i] = key(round * 1000 + i);
            assert_int_equal(revset_put(s, &ks[i], 1, i % 3 == 0 ? 5 : 50), 0);
        }
        revset_prune(s, 5);
        for (uint32_t i = 0; i < 40; i++)
            assert_int_equal(revset_get(s, &ks[i], &v), i % 3 != 0);
        revset_destroy(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_get_and_larger_value_wins),
        cmocka_unit_test(grows_and_prunes_without_losing_keys),
        cmocka_unit_test(prune_across_the_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
