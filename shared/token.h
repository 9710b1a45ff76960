/* Bearer tokens that ingest verifies without a database round trip: the claims in clear,
 * then a keyed MAC (HMAC-SHA-512-256, libsodium crypto_auth) over them, both base64url.
 * Tamper-evident and expiring; revocation is by session id and generation (see docs/auth.md). */
#ifndef DIARY_TOKEN_H
#define DIARY_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "uuid.h"

#define TOKEN_KEYBYTES 32
#define TOKEN_MAXLEN   160

struct token_claims {
    diary_uuid_t user_id;
    diary_uuid_t session_id;
    int64_t issued_at;  /* unix seconds */
    int64_t expires_at; /* unix seconds */
};

enum token_status { TOKEN_OK = 0, TOKEN_MALFORMED, TOKEN_BAD_SIGNATURE, TOKEN_EXPIRED };

/* Writes a NUL-terminated token into out (at least TOKEN_MAXLEN bytes). Returns 0 or -1. */
int token_issue(const uint8_t key[TOKEN_KEYBYTES], const struct token_claims *c, char *out,
                size_t outlen) __attribute__((warn_unused_result));

/* Checks form, MAC (in constant time) and expiry against now; fills out on TOKEN_OK. */
enum token_status token_verify(const uint8_t key[TOKEN_KEYBYTES], const char *token, int64_t now,
                               struct token_claims *out);

/* Parses a key given as 64 hex characters. Returns 0 or -1. */
int token_key_parse(const char *hex, uint8_t key[TOKEN_KEYBYTES])
    __attribute__((warn_unused_result));

#endif
