/* A strict JSON scanner over one buffer, for a reader that wants a few members of an object
 * without building a tree: it walks an object's members, decodes strings into the caller's
 * fixed buffers, and checks and steps over any other value (nested arrays and objects too).
 * It allocates nothing and keeps no state outside struct jscan, which lives on the caller's
 * stack (so its fields are public).
 *
 * It accepts what jansson's json_loadb accepts (RFC 8259: whitespace, every string escape,
 * \uXXXX surrogate pairs, strict UTF-8, numbers, true/false/null), refuses what it refuses
 * under default flags (\u0000 in any string, integers outside int64_t, reals that overflow a
 * double, nesting deeper than JSON_PARSER_MAX_DEPTH), with two differences the caller must
 * know: it does not look for duplicate keys inside a value it steps over (jscan_value reports
 * where some could hide), and it refuses a NUL byte straight after a number or literal, which
 * jansson 2.14 skips by accident. Pure: no library headers. */
#ifndef DIARY_JSCAN_H
#define DIARY_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* jansson's JSON_PARSER_MAX_DEPTH: a value nested deeper is refused. The whole document is at
 * depth 1, its members' values at 2, and so on, scalars included. */
#define JSCAN_MAX_DEPTH 2048

struct jscan {
    const char *buf; /* the document, for error offsets */
    const char *p;   /* the next byte to read */
    const char *end;
    const char *err; /* the first error, a static phrase; NULL while there is none */
    size_t erroff;   /* where it was found, in bytes from buf */
};

enum jscan_type {
    JSCAN_OBJECT,
    JSCAN_ARRAY,
    JSCAN_STRING,
    JSCAN_INTEGER,
    JSCAN_REAL,
    JSCAN_TRUE,
    JSCAN_FALSE,
    JSCAN_NULL,
};

/* One value jscan_value stepped over: its bytes point into the scanned buffer. */
struct jscan_value {
    enum jscan_type type;
    const char *start;
    size_t len;
    int64_t integer; /* its value when type is JSCAN_INTEGER */
    /* The value is or holds an object of two or more members: the scanner did not compare
     * their keys, so a caller that must refuse duplicate keys has to check this value with a
     * parser that does (json_loadb with JSON_REJECT_DUPLICATES on start, len). */
    bool multikey;
};

void jscan_init(struct jscan *s, const char *buf, size_t len);

/* Skips whitespace and returns the next byte (0 to 255), or -1 at the end of the buffer. */
int jscan_peek(struct jscan *s);

/* Steps to the next member of an object: with first set, over the object's '{', otherwise
 * over the ',' after the previous member's value. Decodes the member's key into key (at most
 * cap - 1 bytes and a NUL; *keylen gets the whole decoded length, so *keylen >= cap means it
 * was cut) and steps over the ':' after it. Returns 1 with the scanner at the member's value,
 * 0 when the object ended (its '}' read), -1 on an error (in s->err). */
int jscan_member(struct jscan *s, bool first, char *key, size_t cap, size_t *keylen)
    __attribute__((warn_unused_result));

/* Reads the string value at the scanner and decodes it into dst like a key above (dst may be
 * NULL when cap is 0: the string is only checked). false on an error, also when the next
 * value is not a string. */
bool jscan_string(struct jscan *s, char *dst, size_t cap, size_t *len)
    __attribute__((warn_unused_result));

/* Checks and steps over the value at the scanner, whatever its type; depth is the value's
 * depth as JSCAN_MAX_DEPTH counts it. false on an error. */
bool jscan_value(struct jscan *s, unsigned depth, struct jscan_value *v)
    __attribute__((warn_unused_result));

/* true when nothing but whitespace is left; otherwise false with an error. */
bool jscan_end(struct jscan *s) __attribute__((warn_unused_result));

#endif
