/* Password policy (the seed's: at least 8 characters with upper, lower, digit and special),
 * argon2id hashing with libsodium, and verification of argon2id or legacy bcrypt hashes. */
#ifndef DIARY_PASSWORD_H
#define DIARY_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWORD_HASH_MAX 128
#define PASSWORD_MIN_LEN  8
#define PASSWORD_MAX_LEN  128

/* Pure. Returns 0 when pw meets the policy, else -1 with the first unmet rule in err. */
int password_policy_check(const char *pw, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* argon2id (crypto_pwhash_str). CPU- and memory-heavy: call off the event loop.
 * opslimit/memlimit 0 pick libsodium's interactive limits. Returns 0 or -1. */
int password_hash(const char *pw, unsigned long long opslimit, size_t memlimit,
                  char out[PASSWORD_HASH_MAX]) __attribute__((warn_unused_result));

/* True when pw matches hash, an argon2id string or a legacy bcrypt ($2a$/$2b$/$2y$) one,
 * checked with the system's crypt(3). Also heavy: off the event loop. */
bool password_verify(const char *hash, const char *pw);

/* True when hash is a legacy (non-argon2id) hash that should be replaced after a login. */
bool password_needs_rehash(const char *hash);

#endif
