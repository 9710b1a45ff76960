#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <string.h>

#include "token.h"

static uint8_t key[TOKEN_KEYBYTES];

static struct token_claims claims(int64_t iat, int64_t exp)
{
    struct token_claims c;
    memset(&c, 0, sizeof(c));
    for (int i = 0; i < 16; i++)
        c.user_id.b[i] = (uint8_t)i, c.session_id.b[i] = (uint8_t)(100 + i);
    c.issued_at = iat;
    c.expires_at = exp;
    return c;
}

static void issue_then_verify_gives_claims_back(void **state)
{
    struct token_claims c = claims(1000, 2000), out;
    char tok[TOKEN_MAXLEN];

    assert_int_equal(token_issue(key, &c, tok, sizeof(tok)), 0);
    assert_int_equal(token_verify(key, tok, 1500, &out), TOKEN_OK);
    assert_memory_equal(out.user_id.b, c.user_id.b, 16);
    assert_memory_equal(out.session_id.b, c.session_id.b, 16);
    assert_int_equal(out.issued_at, 1000);
    assert_int_equal(out.expires_at, 2000);
}

static void expired_token_is_refused(void **state)
{
    struct token_claims c = claims(1000, 2000), out;
    char tok[TOKEN_MAXLEN];

    assert_int_equal(token_issue(key, &c, tok, sizeof(tok)), 0);
    assert_int_equal(token_verify(key, tok, 2000, &out), TOKEN_EXPIRED);
}

static void any_flipped_character_is_detected(void **state)
{
    struct token_claims c = claims(1000, 2000), out;
    char tok[TOKEN_MAXLEN];

    assert_int_equal(token_issue(key, &c, tok, sizeof(tok)), 0);
    for (size_t i = 0; i < strlen(tok); i++) {
        char t[TOKEN_MAXLEN];
        strcpy(t, tok);
        if (t[i] == '.')
            continue;
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_int_not_equal(token_verify(key, t, 1500, &out), TOKEN_OK);
    }
}

static void other_key_is_a_bad_signature(void **state)
{
    struct token_claims c = claims(1000, 2000), out;
    uint8_t other[TOKEN_KEYBYTES];
    char tok[TOKEN_MAXLEN];

    memcpy(other, key, sizeof(other));
    other[0] ^= 1;
    assert_int_equal(token_issue(other, &c, tok, sizeof(tok)), 0);
    assert_int_equal(token_verify(key, tok, 1500, &out), TOKEN_BAD_SIGNATURE);
}

static void garbage_is_malformed(void **state)
{
    struct token_claims out;
    const char *bad[] = {"", "abc", ".", "a.b", "!!!.???", NULL};

    for (int i = 0; bad[i]; i++)
        assert_int_equal(token_verify(key, bad[i], 1500, &out), TOKEN_MALFORMED);
    assert_int_equal(token_verify(key, NULL, 1500, &out), TOKEN_MALFORMED);
}

static void key_parse_wants_64_hex(void **state)
{
    uint8_t k[TOKEN_KEYBYTES];
    assert_int_equal(
        token_key_parse("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", k), 0);
    assert_int_equal(k[1], 0x11);
    assert_int_equal(token_key_parse("0011", k), -1);
    assert_int_equal(
        token_key_parse("zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", k), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(issue_then_verify_gives_claims_back),
        cmocka_unit_test(expired_token_is_refused),
        cmocka_unit_test(any_flipped_character_is_detected),
        cmocka_unit_test(other_key_is_a_bad_signature),
        cmocka_unit_test(garbage_is_malformed),
        cmocka_unit_test(key_parse_wants_64_hex),
    };
    if (sodium_init() < 0)
        return 1;
    randombytes_buf(key, sizeof(key));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
