#include "token.h"

#include <sodium.h>
#include <string.h>

#define TOKEN_VERSION 1
#define CLAIMS_LEN    (1 + 16 + 16 + 8 + 8)

static void put64(uint8_t *p, int64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
}

static int64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}

int token_issue(const uint8_t key[TOKEN_KEYBYTES], const struct token_claims *c, char *out,
                size_t outlen)
{
    uint8_t claims[CLAIMS_LEN], mac[crypto_auth_BYTES];
    size_t n;

    claims[0] = TOKEN_VERSION;
    memcpy(claims + 1, c->user_id.b, 16);
    memcpy(claims + 17, c->session_id.b, 16);
    put64(claims + 33, c->issued_at);
    put64(claims + 41, c->expires_at);
    crypto_auth(mac, claims, sizeof(claims), key);

    if (outlen < TOKEN_MAXLEN)
        return -1;
    sodium_bin2base64(out, outlen, claims, sizeof(claims),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    n = strlen(out);
    out[n++] = '.';
    sodium_bin2base64(out + n, outlen - n, mac, sizeof(mac),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

enum token_status token_verify(const uint8_t key[TOKEN_KEYBYTES], const char *token, int64_t now,
                               struct token_claims *out)
{
    uint8_t claims[CLAIMS_LEN], mac[crypto_auth_BYTES];
    size_t claims_len, mac_len;
    const char *dot, *end;

    if (!token || strlen(token) >= TOKEN_MAXLEN || !(dot = strchr(token, '.')))
        return TOKEN_MALFORMED;
    if (sodium_base642bin(claims, sizeof(claims), token, (size_t)(dot - token), NULL, &claims_len,
                          &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != dot || claims_len != sizeof(claims) || claims[0] != TOKEN_VERSION)
        return TOKEN_MALFORMED;
    if (sodium_base642bin(mac, sizeof(mac), dot + 1, strlen(dot + 1), NULL, &mac_len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        *end != '\0' || mac_len != sizeof(mac))
        return TOKEN_MALFORMED;
    if (crypto_auth_verify(mac, claims, sizeof(claims), key) != 0)
        return TOKEN_BAD_SIGNATURE;

    memcpy(out->user_id.b, claims + 1, 16);
    memcpy(out->session_id.b, claims + 17, 16);
    out->issued_at = get64(claims + 33);
    out->expires_at = get64(claims + 41);
    if (now >= out->expires_at)
        return TOKEN_EXPIRED;
    return TOKEN_OK;
}

int token_key_parse(const char *hex, uint8_t key[TOKEN_KEYBYTES])
{
    size_t n;
    const char *end;

    if (!hex || strlen(hex) != 2 * TOKEN_KEYBYTES)
        return -1;
    if (sodium_hex2bin(key, TOKEN_KEYBYTES, hex, strlen(hex), NULL, &n, &end) != 0 ||
        n != TOKEN_KEYBYTES || *end != '\0')
        return -1;
    return 0;
}
