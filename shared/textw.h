/* A bounded text writer for the request path: strings and decimal numbers appended to a
 * caller's buffer, for the small texts every request builds (answer bodies, header values,
 * the event's data) without snprintf's format parsing. Numbers print as printf's "%d"-style
 * conversions do. Pure: no libevent, jansson or libsodium.
 *
 * A writer that runs out of room cuts the text where snprintf would and remembers it:
 * textw_done() then says so, so a caller checks once at the end rather than after every
 * append. */
#ifndef DIARY_TEXTW_H
#define DIARY_TEXTW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "position.h"

struct textw {
    char *buf;
    size_t cap; /* bytes in buf, the NUL included */
    size_t len;
    bool overflow;
};

/* Starts writing at buf[0]; cap must be at least 1 (room for the NUL). */
void textw_init(struct textw *w, char *buf, size_t cap);

void textw_mem(struct textw *w, const char *s, size_t n);
void textw_str(struct textw *w, const char *s);
void textw_char(struct textw *w, char c);
/* v in decimal, as "%llu" and "%lld" print it. */
void textw_u64(struct textw *w, uint64_t v);
void textw_i64(struct textw *w, int64_t v);
/* The bytes in lower-case hex, two digits each (sodium_bin2hex's text). */
void textw_hex(struct textw *w, const uint8_t *bytes, size_t n);

/* NUL-terminates and returns the length, or -1 when something did not fit (buf then holds
 * what did, terminated, as snprintf leaves it). */
long textw_done(struct textw *w);

/* position_format's text ("P:O", as "%d:%lld") written straight, without snprintf. */
void textw_position(const struct position *p, char out[POSITION_STRLEN]);

#endif
