#include "jsonw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool jsonw_reserve(struct jsonw *b, size_t more)
{
    char *np;
    size_t cap;

    if (b->failed)
        return false;
    if (b->len + more < b->cap)
        return true;
    cap = b->cap ? b->cap : 256;
    while (cap <= b->len + more)
        cap *= 2;
    np = realloc(b->p, cap);
    if (!np) {
        free(b->p);
        b->p = NULL;
        b->failed = true;
        return false;
    }
    b->p = np;
    b->cap = cap;
    return true;
}

void jsonw_add(struct jsonw *b, const char *s, size_t n)
{
    if (!jsonw_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* The length of the valid UTF-8 sequence at s (1..4), 0 when it is not one (jansson's
 * utf8_check). */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0], cp;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

bool jsonw_utf8_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_seq(p);
        if (!n)
            return false;
        p += n;
    }
    return true;
}

void jsonw_string(struct jsonw *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *run = s;

    jsonw_add(b, "\"", 1);
    for (const char *p = s;; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[6];
        size_t n = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        jsonw_add(b, run, (size_t)(p - run));
        if (c == '\0')
            break;
        esc[0] = '\\';
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
            break;
        }
        jsonw_add(b, esc, n);
        run = p + 1;
    }
    jsonw_add(b, "\"", 1);
}

char *jsonw_finish(struct jsonw *b, size_t *len)
{
    jsonw_add(b, "", 1);
    if (b->failed)
        return NULL;
    b->len--;
    if (len)
        *len = b->len;
    return b->p;
}

/* jansson 2.14's jsonp_dtostr at its default precision (17), in the "C" locale the
 * processes run in. */
size_t jsonw_real_text(double d, char *out, size_t cap)
{
    int ret;
    size_t len;
    char *e, *from, *to;

    if (!isfinite(d) || cap == 0)
        return 0;
    ret = snprintf(out, cap, "%.17g", d);
    if (ret < 0 || (size_t)ret >= cap)
        return 0;
    len = (size_t)ret;
    if (!strchr(out, '.') && !strchr(out, 'e')) {
        if (len + 3 >= cap)
            return 0;
        memcpy(out + len, ".0", 3);
        len += 2;
    }
    e = strchr(out, 'e');
    if (e) {
        /* "1e+25" -> "1e25", "1e-07" -> "1e-7": from the sign (kept when '-') to the first
         * digit that is not a leading zero. */
        to = e + 1;
        if (*to == '-')
            to++;
        from = e + 2;
        while (*from == '0')
            from++;
        if (from != to) {
            memmove(to, from, len - (size_t)(from - out) + 1);
            len -= (size_t)(from - to);
        }
    }
    return len;
}
