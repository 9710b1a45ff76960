#include "textw.h"

#include <string.h>

void textw_init(struct textw *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = false;
}

void textw_mem(struct textw *w, const char *s, size_t n)
{
    /* One byte stays free for the NUL textw_done writes. What does not fit is cut, as
     * snprintf cuts. */
    size_t room = w->cap > w->len ? w->cap - w->len - 1 : 0;

    if (n > room) {
        n = room;
        w->overflow = true;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

void textw_str(struct textw *w, const char *s)
{
    textw_mem(w, s, strlen(s));
}

void textw_char(struct textw *w, char c)
{
    textw_mem(w, &c, 1);
}

void textw_u64(struct textw *w, uint64_t v)
{
    char digits[20], *p = digits + sizeof(digits);

    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    textw_mem(w, p, (size_t)(digits + sizeof(digits) - p));
}

void textw_i64(struct textw *w, int64_t v)
{
    if (v < 0) {
        textw_char(w, '-');
        /* -(v + 1) + 1 stays in range for INT64_MIN. */
        textw_u64(w, (uint64_t)(-(v + 1)) + 1);
        return;
    }
    textw_u64(w, (uint64_t)v);
}

void textw_hex(struct textw *w, const uint8_t *bytes, size_t n)
{
    static const char hexdigits[] = "0123456789abcdef";
    size_t room = w->cap > w->len ? w->cap - w->len - 1 : 0, i;
    char *o = w->buf + w->len;

    for (i = 0; i < n && room >= 2; i++, room -= 2) {
        *o++ = hexdigits[bytes[i] >> 4];
        *o++ = hexdigits[bytes[i] & 0x0f];
    }
    if (i < n) {
        if (room == 1)
            *o++ = hexdigits[bytes[i] >> 4];
        w->overflow = true;
    }
    w->len = (size_t)(o - w->buf);
}

long textw_done(struct textw *w)
{
    w->buf[w->len] = '\0';
    return w->overflow ? -1 : (long)w->len;
}

void textw_position(const struct position *p, char out[POSITION_STRLEN])
{
    struct textw w;

    textw_init(&w, out, POSITION_STRLEN);
    textw_i64(&w, p->partition);
    textw_char(&w, ':');
    textw_i64(&w, p->offset);
    /* Positions are far shorter than POSITION_STRLEN; one that were not would be cut where
     * snprintf cuts it. */
    textw_done(&w);
}
