#include "alog.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The bytes that need no JSON escape: printable ASCII other than quote and backslash. */
static const bool plain[256] = {
    [0x20 ... 0x21] = true, /* ' ' '!' */
    [0x23 ... 0x5b] = true, /* '#' .. '[' */
    [0x5d ... 0x7e] = true, /* ']' .. '~' */
};

/* The length of s when no byte of it needs a JSON escape, else of its plain start: s[n] is
 * then not the NUL. */
static size_t plain_len(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = 0;

    while (plain[u[n]])
        n++;
    return n;
}

/* Appends "s" when it needs no JSON escape. */
static bool put_plain(char **p, const char *end, const char *s)
{
    size_t n = plain_len(s);

    if (s[n] != '\0' || (size_t)(end - *p) < n + 2)
        return false;
    *(*p)++ = '"';
    memcpy(*p, s, n);
    *p += n;
    *(*p)++ = '"';
    return true;
}

/* Appends ,"key": (or {"key": for the first member). */
static bool put_key(char **p, const char *end, const char *key, bool first)
{
    size_t n = strlen(key);

    if ((size_t)(end - *p) < n + 4)
        return false;
    *(*p)++ = first ? '{' : ',';
    *(*p)++ = '"';
    memcpy(*p, key, n);
    *p += n;
    *(*p)++ = '"';
    *(*p)++ = ':';
    return true;
}

size_t alog_format(char *out, size_t outlen, const char *ts, const char *level, const char *svc,
                   const char *msg, const char *rid, const char *const *kv)
{
    const char *end = out + outlen - 1; /* room for the newline */
    char *p = out;

    if (outlen < 2)
        return 0;
    if (!put_key(&p, end, "ts", true) || !put_plain(&p, end, ts) ||
        !put_key(&p, end, "level", false) || !put_plain(&p, end, level) ||
        !put_key(&p, end, "svc", false) || !put_plain(&p, end, svc) ||
        !put_key(&p, end, "msg", false) || !put_plain(&p, end, msg))
        return 0;
    if (rid && *rid && (!put_key(&p, end, "request_id", false) || !put_plain(&p, end, rid)))
        return 0;
    for (; kv && kv[0] && kv[1]; kv += 2)
        if (!put_key(&p, end, kv[0], false) || !put_plain(&p, end, kv[1]))
            return 0;
    if (p >= end)
        return 0;
    *p++ = '}';
    *p++ = '\n';
    return (size_t)(p - out);
}
