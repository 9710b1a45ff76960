#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <string.h>

#include "password.h"

static void policy_accepts_a_strong_password(void **state)
{
    char err[128];
    assert_int_equal(password_policy_check("Str0ng!pass", err, sizeof(err)), 0);
}

static void policy_names_the_missing_rule(void **state)
{
    static const struct {
        const char *pw, *want;
    } cases[] = {
        {"Sh0rt!", "at least 8"},        {"nouppercase1!", "upper-case"},
        {"NOLOWERCASE1!", "lower-case"}, {"NoDigitsHere!", "digit"},
        {"NoSpecial123", "special"},     {"", "at least 8"},
    };
    char err[128];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(password_policy_check(cases[i].pw, err, sizeof(err)), -1);
        assert_non_null(strstr(err, cases[i].want));
    }
    char longpw[PASSWORD_MAX_LEN + 2];
    memset(longpw, 'a', sizeof(longpw) - 1);
    longpw[sizeof(longpw) - 1] = '\0';
    assert_int_equal(password_policy_check(longpw, err, sizeof(err)), -1);
}

static void argon2id_hash_verifies_and_rejects(void **state)
{
    char hash[PASSWORD_HASH_MAX];

    /* Minimal costs keep the test fast; the algorithm is the same. */
    assert_int_equal(
        password_hash("Str0ng!pass", crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN, hash),
        0);
    assert_true(strncmp(hash, "$argon2id$", 10) == 0);
    assert_true(password_verify(hash, "Str0ng!pass"));
    assert_false(password_verify(hash, "Str0ng!pasS"));
    assert_false(password_needs_rehash(hash));
}

static void legacy_bcrypt_hash_verifies(void **state)
{
    /* bcrypt of "Legacy#Pass1" with cost 4 (a $2b$ hash as the old application stored). */
    const char *h = "$2b$04$abcdefghijklmnopqrstuuz43Io3RCgzsp7lkRBnVRuKHPxEINWji";
    assert_true(password_verify(h, "Legacy#Pass1"));
    assert_true(password_needs_rehash(h));
    assert_false(password_verify(h, "wrong password"));
    assert_false(password_verify("$unknown$x", "Legacy#Pass1"));
    assert_false(password_verify(NULL, "x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(policy_accepts_a_strong_password),
        cmocka_unit_test(policy_names_the_missing_rule),
        cmocka_unit_test(argon2id_hash_verifies_and_rejects),
        cmocka_unit_test(legacy_bcrypt_hash_verifies),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
