#include "tokcache.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    size_t len; /* 0: empty */
    struct token_claims claims;
    char token[TOKEN_MAXLEN];
};

struct tokcache {
    uint8_t key[TOKEN_KEYBYTES];
    uint8_t hkey[crypto_shorthash_KEYBYTES]; /* random: which slot a token takes is unguessable */
    size_t mask;
    struct slot *slots;
};

tokcache_t *tokcache_new(const uint8_t key[TOKEN_KEYBYTES], size_t slots)
{
    tokcache_t *c = calloc(1, sizeof(*c));
    size_t n = 2;

    if (!c)
        return NULL;
    while (n < slots)
        n *= 2;
    c->slots = calloc(n, sizeof(*c->slots));
    if (!c->slots) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    memcpy(c->key, key, TOKEN_KEYBYTES);
    randombytes_buf(c->hkey, sizeof(c->hkey));
    return c;
}

static bool holds(const struct slot *s, const char *token, size_t len)
{
    return s->len == len && memcmp(s->token, token, len) == 0;
}

enum token_status tokcache_verify(tokcache_t *c, const char *token, int64_t now,
                                  struct token_claims *out)
{
    size_t len = token ? strnlen(token, TOKEN_MAXLEN) : TOKEN_MAXLEN;
    uint8_t h[crypto_shorthash_BYTES];
    struct slot *set;
    uint64_t v;
    enum token_status st;

    if (len == 0 || len >= TOKEN_MAXLEN)
        return token_verify(c->key, token, now, out);
    crypto_shorthash(h, (const unsigned char *)token, len, c->hkey);
    memcpy(&v, h, sizeof(v));
    set = &c->slots[v & c->mask & ~(size_t)1];
    for (int i = 0; i < 2; i++) {
        if (holds(&set[i], token, len)) {
            *out = set[i].claims;
            return now >= out->expires_at ? TOKEN_EXPIRED : TOKEN_OK;
        }
    }
    st = token_verify(c->key, token, now, out);
    if (st == TOKEN_OK) {
        /* The newest token takes the first slot of its pair, the one there moves to the
         * second, and the one in the second (the older) is dropped. */
        set[1] = set[0];
        memcpy(set[0].token, token, len);
        set[0].len = len;
        set[0].claims = *out;
    }
    return st;
}

void tokcache_destroy(tokcache_t *c)
{
    if (!c)
        return;
    sodium_memzero(c->key, sizeof(c->key));
    free(c->slots);
    free(c);
}
