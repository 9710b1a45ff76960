#include "uuid.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

void uuid_v7(diary_uuid_t *out, uint64_t unix_ms)
{
    randombytes_buf(out->b, sizeof(out->b));
    for (int i = 0; i < 6; i++)
        out->b[i] = (uint8_t)(unix_ms >> (40 - 8 * i));
    out->b[6] = (uint8_t)(0x70 | (out->b[6] & 0x0f));
    out->b[8] = (uint8_t)(0x80 | (out->b[8] & 0x3f));
}

void uuid_derive(diary_uuid_t *out, const char *label, const char *const *parts, int nparts)
{
    crypto_generichash_state st;
    uint8_t h[16];

    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const unsigned char *)label, strlen(label) + 1);
    for (int i = 0; i < nparts; i++)
        crypto_generichash_update(&st, (const unsigned char *)parts[i], strlen(parts[i]) + 1);
    crypto_generichash_final(&st, h, sizeof(h));
    memcpy(out->b, h, sizeof(h));
    out->b[6] = (uint8_t)(0x80 | (out->b[6] & 0x0f));
    out->b[8] = (uint8_t)(0x80 | (out->b[8] & 0x3f));
}

void uuid_child(diary_uuid_t *out, const diary_uuid_t *event_id, const char *label)
{
    char s[UUID_STRLEN];
    const char *parts[1] = {s};

    uuid_format(event_id, s);
    uuid_derive(out, label, parts, 1);
}

void uuid_format(const diary_uuid_t *u, char out[UUID_STRLEN])
{
    static const char hex[] = "0123456789abcdef";
    int j = 0;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[j++] = '-';
        out[j++] = hex[u->b[i] >> 4];
        out[j++] = hex[u->b[i] & 15];
    }
    out[j] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int uuid_parse(const char *s, diary_uuid_t *out)
{
    int j = 0;

    if (!s || strlen(s) != 36)
        return -1;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return -1;
            continue;
        }
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out->b[j++] = (uint8_t)(hi << 4 | lo);
        i++;
    }
    return 0;
}

bool uuid_valid(const char *s)
{
    diary_uuid_t u;
    return uuid_parse(s, &u) == 0;
}
