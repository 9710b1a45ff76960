/* The verified-token cache (ingest/tokcache.c): the same answers as token_verify, a cached
 * token still expires, and a token that differs by one byte is verified, not looked up. */
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

static void cached_answers_are_token_verify_answers(void **state)
{
    tokcache_t *c = tokcache_new(key, 4);
    char tok[TOKEN_MAXLEN], other[TOKEN_MAXLEN];
    struct token_claims a, b;

    assert_non_null(c);
    issue(tok, 5000);
    for (int i = 0; i < 3; i++) { /* the first verifies, the others hit the cache */
        assert_int_equal(tokcache_verify(c, tok, 2000, &a), TOKEN_OK);
        assert_int_equal(token_verify(key, tok, 2000, &b), TOKEN_OK);
        assert_memory_equal(&a, &b, sizeof(a));
    }
    /* Still cached, but expired by now. */
    assert_int_equal(tokcache_verify(c, tok, 5000, &a), TOKEN_EXPIRED);
    /* One byte changed in the MAC: verified, and refused. */
    strcpy(other, tok);
    other[strlen(other) - 2] = other[strlen(other) - 2] == 'A' ? 'B' : 'A';
    assert_int_equal(tokcache_verify(c, other, 2000, &a), TOKEN_BAD_SIGNATURE);
    assert_int_equal(tokcache_verify(c, "not a token", 2000, &a), TOKEN_MALFORMED);
    assert_int_equal(tokcache_verify(c, "", 2000, &a), TOKEN_MALFORMED);
    assert_int_equal(tokcache_verify(c, NULL, 2000, &a), TOKEN_MALFORMED);
    /* And the good one still answers from the cache. */
    assert_int_equal(tokcache_verify(c, tok, 2000, &a), TOKEN_OK);
    tokcache_destroy(c);
}

/* More tokens than slots: each still gets its own claims. */
static void colliding_tokens_keep_their_own_claims(void **state)
{
    tokcache_t *c = tokcache_new(key, 2);
    char toks[16][TOKEN_MAXLEN];
    struct token_claims a, b;

    assert_non_null(c);
    for (int i = 0; i < 16; i++)
        issue(toks[i], 5000 + i);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 16; i++) {
            assert_int_equal(tokcache_verify(c, toks[i], 2000, &a), TOKEN_OK);
            assert_int_equal(token_verify(key, toks[i], 2000, &b), TOKEN_OK);
            assert_memory_equal(&a, &b, sizeof(a));
        }
    tokcache_destroy(c);
    tokcache_destroy(NULL);
}

/* A slot pair keeps its last two tokens: two tokens that share a pair both answer from
 * the cache, and a third pushes out the older. The cache is observed by changing its key
 * after the tokens were verified: an answer from the cache is still TOKEN_OK, a token
 * verified again fails the MAC check. */
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
        cmocka_unit_test(cached_answers_are_token_verify_answers),
        cmocka_unit_test(colliding_tokens_keep_their_own_claims),
        cmocka_unit_test(a_pair_keeps_the_last_two),
    };
    if (sodium_init() < 0)
        return 1;
    randombytes_buf(key, sizeof(key));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
