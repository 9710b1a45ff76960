#include "hdr.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

bool hdr_request_id_ok(const char *s)
{
    size_t n = 0;

    if (!s)
        return false;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= HDR_REQUEST_ID_MAX - 1 ||
            !(isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return n > 0;
}

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

bool hdr_prefer_wait(const char *prefer, long *secs)
{
    const char *p = prefer;

    while (p && *p) {
        const char *end = strchr(p, ','), *q;
        size_t len;

        p = skip_ws(p);
        len = end ? (size_t)(end - p) : strlen(p);
        /* A preference is token [= value] [; params]: only the token and value matter. */
        if (len > 4 && strncasecmp(p, "wait", 4) == 0) {
            q = skip_ws(p + 4);
            if (*q == '=') {
                long v = 0;
                bool digits = false;

                q = skip_ws(q + 1);
                if (*q == '"')
                    q++;
                for (; *q >= '0' && *q <= '9'; q++) {
                    digits = true;
                    if (v < 86400)
                        v = v * 10 + (*q - '0');
                }
                if (*q == '"')
                    q++;
                q = skip_ws(q);
                if (digits && (q == p + len || *q == ';' || *q == ',' || *q == '\0')) {
                    *secs = v > 86400 ? 86400 : v;
                    return true;
                }
            }
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}

int hdr_if_match(const char *s, int64_t *version)
{
    const char *p;
    int64_t v = 0;

    if (!s)
        return -1;
    p = skip_ws(s);
    if (p[0] == 'W' && p[1] == '/')
        p += 2;
    if (*p++ != '"' || *p < '1' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (*p++ != '"')
        return -1;
    if (*skip_ws(p) != '\0')
        return -1;
    *version = v;
    return 0;
}

/* n lower-case hex digits, not all zero when nonzero is set. */
static bool hex_field(const char *s, size_t n, bool nonzero)
{
    bool any = false;

    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        any |= s[i] != '0';
    }
    return any || !nonzero;
}

bool hdr_traceparent_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-')
        return false;
    if (!hex_field(s, 2, false) || strncmp(s, "ff", 2) == 0 || !hex_field(s + 3, 32, true) ||
        !hex_field(s + 36, 16, true) || !hex_field(s + 53, 2, false))
        return false;
    /* Version 00 has exactly these fields; later versions may append "-..." fields. */
    if (strncmp(s, "00", 2) == 0)
        return n == 55;
    return n == 55 || s[55] == '-';
}

/* Reads exactly n digits into *out. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

bool hdr_rfc3339_ok(const char *s)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, oh, om;
    const char *p = s;

    if (!s || strlen(s) >= 40)
        return false;
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d))
        return false;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return false;
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
        !digits(&p, 2, &sec))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return false;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'Z' || *p == 'z')
        return p[1] == '\0';
    if (*p != '+' && *p != '-')
        return false;
    p++;
    if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59)
        return false;
    return *p == '\0';
}

bool hdr_json_content_type(const char *ct)
{
    const char *p, *slash, *end;
    size_t sublen;

    if (!ct)
        return false;
    p = skip_ws(ct);
    if (strncasecmp(p, "application/", 12) != 0)
        return false;
    slash = p + 11;
    end = slash + 1;
    while (*end && *end != ';' && *end != ' ' && *end != '\t')
        end++;
    if (*skip_ws(end) != '\0' && *skip_ws(end) != ';')
        return false;
    sublen = (size_t)(end - (slash + 1));
    if (sublen == 4 && strncasecmp(slash + 1, "json", 4) == 0)
        return true;
    return sublen > 5 && strncasecmp(end - 5, "+json", 5) == 0;
}

const char *hdr_bearer(const char *authz)
{
    const char *p;

    if (!authz)
        return NULL;
    p = skip_ws(authz);
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return NULL;
    p = skip_ws(p + 6);
    return *p ? p : NULL;
}

bool hdr_idempotency_key_ok(const char *s)
{
    size_t n = 0;

    if (!s)
        return false;
    for (; s[n]; n++)
        if (n >= HDR_IDEM_KEY_MAX || (unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
            return false;
    return n > 0;
}

void hdr_rfc3339_utc(int64_t unix_secs, char *out, size_t outlen)
{
    time_t t = (time_t)unix_secs;
    struct tm tm;

    gmtime_r(&t, &tm);
    if (strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0 && outlen)
        out[0] = '\0';
}
