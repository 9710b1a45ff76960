#include "password.h"

#include <crypt.h>
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

int password_policy_check(const char *pw, char *err, size_t errlen)
{
    bool upper = false, lower = false, digit = false, special = false;
    size_t n = pw ? strlen(pw) : 0;

    if (n < PASSWORD_MIN_LEN) {
        snprintf(err, errlen, "must be at least %d characters", PASSWORD_MIN_LEN);
        return -1;
    }
    if (n > PASSWORD_MAX_LEN) {
        snprintf(err, errlen, "must be at most %d characters", PASSWORD_MAX_LEN);
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *)pw; *p; p++) {
        if (isupper(*p))
            upper = true;
        else if (islower(*p))
            lower = true;
        else if (isdigit(*p))
            digit = true;
        else if (*p >= 0x20 && *p != 0x7f)
            special = true;
    }
    if (!upper)
        snprintf(err, errlen, "must contain an upper-case letter");
    else if (!lower)
        snprintf(err, errlen, "must contain a lower-case letter");
    else if (!digit)
        snprintf(err, errlen, "must contain a digit");
    else if (!special)
        snprintf(err, errlen, "must contain a special character");
    else
        return 0;
    return -1;
}

int password_hash(const char *pw, unsigned long long opslimit, size_t memlimit,
                  char out[PASSWORD_HASH_MAX])
{
    char buf[crypto_pwhash_STRBYTES];

    if (!opslimit)
        opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    if (!memlimit)
        memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    if (crypto_pwhash_str_alg(buf, pw, strlen(pw), opslimit, memlimit,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return -1;
    snprintf(out, PASSWORD_HASH_MAX, "%s", buf);
    return 0;
}

static bool is_bcrypt(const char *hash)
{
    return strncmp(hash, "$2a$", 4) == 0 || strncmp(hash, "$2b$", 4) == 0 ||
           strncmp(hash, "$2y$", 4) == 0;
}

bool password_verify(const char *hash, const char *pw)
{
    if (!hash || !pw)
        return false;
    if (strncmp(hash, "$argon2id$", 10) == 0)
        return crypto_pwhash_str_verify(hash, pw, strlen(pw)) == 0;
    if (is_bcrypt(hash)) {
        struct crypt_data cd;
        const char *r;

        memset(&cd, 0, sizeof(cd));
        r = crypt_r(pw, hash, &cd);
        return r && r[0] != '*' && strlen(r) == strlen(hash) &&
               sodium_memcmp(r, hash, strlen(hash)) == 0;
    }
    return false;
}

bool password_needs_rehash(const char *hash)
{
    return !hash || strncmp(hash, "$argon2id$", 10) != 0;
}
