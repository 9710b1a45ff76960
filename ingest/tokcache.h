/* A cache of verified bearer tokens, so that a client's token is MAC-checked once rather than
 * on every request: a token whose exact bytes verified before gives its claims from the
 * cache. Expiry is checked on every use, and revocation is not this cache's business (the
 * caller checks it every time, as before). A table of slot pairs, the pair chosen by a keyed
 * SipHash of the token; a pair holds the last two tokens verified there, so that two clients
 * whose tokens share a pair do not push each other out on every request. Pure: libsodium
 * only. Not thread-safe: the event loop's. */
#ifndef INGEST_TOKCACHE_H
#define INGEST_TOKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "token.h"

typedef struct tokcache tokcache_t;

/* A cache of slots entries (rounded up to a power of two, at least one pair) for tokens signed
 * with key. NULL on ENOMEM. */
tokcache_t *tokcache_new(const uint8_t key[TOKEN_KEYBYTES], size_t slots);

/* token_verify(key, token, now, out) with the cache in front. */
enum token_status tokcache_verify(tokcache_t *c, const char *token, int64_t now,
                                  struct token_claims *out);

/* NULL is a no-op. */
void tokcache_destroy(tokcache_t *c);

#endif
