/* Writing JSON text straight into one growing buffer, without building a tree: for the hot
 * paths (the envelope ingest produces, the worker's set-based batches) where jansson's
 * object building and dumping cost more than the work around it. Strings are escaped the
 * way jansson dumps them without flags (quote, backslash and control characters; UTF-8 as
 * it is), so the output is byte for byte what json_dumps(..., JSON_COMPACT) gives. */
#ifndef DIARY_JSONW_H
#define DIARY_JSONW_H

#include <stdbool.h>
#include <stddef.h>

/* Zero-initialise. On allocation failure it frees what it had and stays failed: later
 * calls do nothing and jsonw_finish returns NULL. */
struct jsonw {
    char *p;
    size_t len, cap;
    bool failed;
};

/* Room for more bytes. False once failed. */
bool jsonw_reserve(struct jsonw *b, size_t more);

void jsonw_add(struct jsonw *b, const char *s, size_t n);

/* A string literal, without its NUL. */
#define JSONW_LIT(b, lit) jsonw_add((b), (lit), sizeof(lit) - 1)

/* s as a JSON string, quotes included. s must be valid UTF-8 (jsonw_utf8_ok). */
void jsonw_string(struct jsonw *b, const char *s);

/* True when s is valid UTF-8 as jansson understands it (no overlong forms, no surrogates,
 * nothing above U+10FFFF). */
bool jsonw_utf8_ok(const char *s);

/* d as jansson dumps a real (json_dumpb of json_real(d)): "%.17g", with ".0" added when that
 * has neither a dot nor an exponent, and the exponent without '+' or leading zeros. Writes
 * at most cap - 1 bytes and a NUL (JSONW_REAL_MAX always fits); returns the length, or 0
 * when it does not fit or d is not finite (jansson makes no real of those). */
#define JSONW_REAL_MAX 32
size_t jsonw_real_text(double d, char *out, size_t cap);

/* The text, NUL-terminated, for the caller to free; its length in *len when len is not
 * NULL. NULL when the buffer failed. The buffer is handed over either way. */
char *jsonw_finish(struct jsonw *b, size_t *len);

#endif
