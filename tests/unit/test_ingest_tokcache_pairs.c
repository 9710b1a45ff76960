/* The verified-token cache keeps the last two tokens of a slot pair (ingest/tokcache.c): two
 * tokens that share a pair both answer from the cache, and a third pushes out the older. The
 * cache is observed by changing its key after the tokens were verified: an answer from the
 * cache is still TOKEN_OK, a token verified again fails the MAC check. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <string.h>
#include "../../ingest/tokcache.c"

static uint8_t key[TOKEN_KEYBYTES];

static void issue(char *out, int64_t expires_at)
{
    struct token_claims c;

    randombytes_buf(c.user_id.b, sizeof(c.user_id.b));
    randombytes_buf(c.session_id.b, sizeof(c.session_id.b));
    c.issued_at = 1000;
    c.expires_at = expires_at;
    assert_int_equal(token_issue(key, &c, out, TOKEN_MAXLEN), 0);
}

static void with_key(tokcache_t *c, uint8_t fill)
{
    if (fill)
        memset(c->key, fill, sizeof(c->key));
    else
        memcpy(c->key, key, sizeof(c->key));
}

static void a_pair_keeps_the_last_two(void **state)
{
    tokcache_t *c = tokcache_new(key, 1); /* one pair: every token shares it */
    char a[TOKEN_MAXLEN], b[TOKEN_MAXLEN], d[TOKEN_MAXLEN];
    struct token_claims cl, want;

    assert_non_null(c);
    assert_int_equal(c->mask, 1);
    issue(a, 5000);
    issue(b, 6000);
    issue(d, 7000);
    assert_int_equal(tokcache_verify(c, a, 2000, &cl), TOKEN_OK);
    assert_int_equal(tokcache_verify(c, b, 2000, &cl), TOKEN_OK);

    with_key(c, 0x5a); /* from here on a verification fails */
    assert_int_equal(tokcache_verify(c, a, 2000, &cl), TOKEN_OK);
    assert_int_equal(token_verify(key, a, 2000, &want), TOKEN_OK);
    assert_memory_equal(&cl, &want, sizeof(cl));
    assert_int_equal(tokcache_verify(c, b, 2000, &cl), TOKEN_OK);
    assert_int_equal(token_verify(key, b, 2000, &want), TOKEN_OK);
    assert_memory_equal(&cl, &want, sizeof(cl));
    assert_int_equal(tokcache_verify(c, b, 6000, &cl), TOKEN_EXPIRED);
    assert_int_equal(tokcache_verify(c, d, 2000, &cl), TOKEN_BAD_SIGNATURE);

    with_key(c, 0);
    assert_int_equal(tokcache_verify(c, d, 2000, &cl), TOKEN_OK); /* d in, a (the older) out */
    with_key(c, 0x5a);
    assert_int_equal(tokcache_verify(c, d, 2000, &cl), TOKEN_OK);
    assert_int_equal(tokcache_verify(c, b, 2000, &cl), TOKEN_OK);
    assert_int_equal(tokcache_verify(c, a, 2000, &cl), TOKEN_BAD_SIGNATURE);
    tokcache_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_pair_keeps_the_last_two),
    };
    if (sodium_init() < 0)
        return 1;
    randombytes_buf(key, sizeof(key));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
