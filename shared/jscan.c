#include "jscan.h"

#include <string.h>

/* Bytes that stand for themselves inside a string: printable ASCII but the quote and the
 * backslash. The scanner copies runs of them at once; anything else takes the slow path. */
/* clang-format off */
#define ROW0 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
#define ROW1 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
static const unsigned char plain[256] = {
    ROW0, ROW0,                                     /* 0x00-0x1f: control characters */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20-0x2f: the quote */
    ROW1, ROW1,                                     /* 0x30-0x4f */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50-0x5f: the backslash */
    ROW1, ROW1,                                     /* 0x60-0x7f */
    ROW0, ROW0, ROW0, ROW0, ROW0, ROW0, ROW0, ROW0, /* 0x80-0xff: UTF-8, checked apart */
};
#undef ROW0
#undef ROW1
/* clang-format on */

/* The least decimal significand that a double cannot hold: 2^1024 - 2^970, half an ulp above
 * DBL_MAX, which strtod (and so jansson) rounds up to infinity and refuses as an overflow. A
 * real whose decimal exponent is 308 overflows when its digits are at least these. */
static const char overflow_digits[] =
    "17976931348623158079372897140530341507993413271003782693617377898044496829276475"
    "09466490179775872070963302864166928879109465555478519404026306574886715058206819"
    "08902000708383676273854845817711531764475730270069855571366959622842914819860834"
    "936475292719074168444365510704342711559699508093042880177904174497792";

/* Exponents are counted up to this and no further: far past any double, and far short of
 * overflowing the sums below. */
#define EXP_CAP 100000000000000000LL

static bool fail(struct jscan *s, const void *at, const char *why)
{
    if (!s->err) {
        s->err = why;
        s->erroff = (size_t)((const char *)at - s->buf);
    }
    return false;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

void jscan_init(struct jscan *s, const char *buf, size_t len)
{
    s->buf = buf;
    s->p = buf;
    s->end = buf + len;
    s->err = NULL;
    s->erroff = 0;
}

/* jscan_peek, inlined where the scanner itself looks: compact JSON has no whitespace. */
static inline int peek(struct jscan *s)
{
    const char *p = s->p;

    if (p < s->end && (unsigned char)*p > ' ')
        return (unsigned char)*p;
    while (p < s->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    s->p = p;
    return p < s->end ? (unsigned char)*p : -1;
}

int jscan_peek(struct jscan *s)
{
    return peek(s);
}

/* Four hexadecimal digits at p (the caller made sure there are four bytes), or -1. */
static int32_t hex4(const unsigned char *p)
{
    int32_t v = 0;

    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], lower = c | 0x20;

        if (c - '0' < 10u)
            v = v << 4 | (int32_t)(c - '0');
        else if (lower - 'a' < 6u)
            v = v << 4 | (int32_t)(lower - 'a' + 10);
        else
            return -1;
    }
    return v;
}

static bool is_cont(unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

/* The length of the well-formed UTF-8 sequence at p (whose first byte is 0x80 or more), or 0:
 * like jansson, no overlong forms, no surrogates, nothing past U+10FFFF. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t n = (size_t)(end - p);
    unsigned char c = p[0];

    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && is_cont(p[1]) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || !is_cont(p[1]) || !is_cont(p[2]))
            return 0;
        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || !is_cont(p[1]) || !is_cont(p[2]) || !is_cont(p[3]))
            return 0;
        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

static size_t utf8_encode(uint32_t cp, unsigned char out[4])
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SCAN_WORDS 1
/* Eight bytes of a string at once (w, loaded little-endian): the top bit of each byte that
 * is not plain (a quote, a backslash, below 0x20, 0x80 or above) is set, and possibly of bytes
 * after such a one (borrows run upwards), never of one before: the lowest set bit marks the
 * first byte that is not plain. */
static uint64_t not_plain8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');

    return (((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) |
            ((backslash - ones) & ~backslash) | w) &
           highs;
}
#else
#define SCAN_WORDS 0
#endif

/* Appends k decoded bytes at *n, keeping what does not fit in room out of dst but counting
 * it, so that the caller learns the whole length. */
static void put(char *dst, size_t room, size_t *n, const void *src, size_t k)
{
    if (*n < room)
        memcpy(dst + *n, src, k < room - *n ? k : room - *n);
    *n += k;
}

/* The string at s->p (its opening quote), decoded into dst when cap > 0. */
static bool scan_string(struct jscan *s, char *dst, size_t cap, size_t *lenp)
{
    const unsigned char *p = (const unsigned char *)s->p + 1;
    const unsigned char *end = (const unsigned char *)s->end;
    size_t room = cap ? cap - 1 : 0, n = 0;

    for (;;) {
        const unsigned char *run = p;
        unsigned char tmp[4];
        size_t k;
        int32_t cp, lo;

#if SCAN_WORDS
        /* Plain runs (nearly every byte of an envelope) go eight bytes a step, copied with
         * one unaligned store while all eight fit in dst's room (bytes past the run are
         * overwritten later or lie past the NUL). */
        while (end - p >= 8) {
            uint64_t w, bits;

            memcpy(&w, p, 8);
            bits = not_plain8(w);
            k = bits ? (size_t)__builtin_ctzll(bits) / 8 : 8;
            if (n + 8 <= room) {
                memcpy(dst + n, &w, 8);
                n += k;
            } else {
                put(dst, room, &n, p, k);
            }
            p += k;
            if (k < 8)
                break;
        }
        run = p;
#endif
        while (p < end && plain[*p])
            p++;
        put(dst, room, &n, run, (size_t)(p - run));
        if (p == end)
            return fail(s, p, "premature end of input");
        if (*p == '"')
            break;
        if (*p < 0x20)
            return fail(s, p, "control character in a string");
        if (*p >= 0x80) {
            k = utf8_len(p, end);
            if (!k)
                return fail(s, p, "invalid UTF-8");
            put(dst, room, &n, p, k);
            p += k;
            continue;
        }
        /* A backslash. */
        if (end - p < 2)
            return fail(s, p, "premature end of input");
        k = 1;
        switch (p[1]) {
        case '"':
        case '\\':
        case '/':
            tmp[0] = p[1];
            break;
        case 'b':
            tmp[0] = '\b';
            break;
        case 'f':
            tmp[0] = '\f';
            break;
        case 'n':
            tmp[0] = '\n';
            break;
        case 'r':
            tmp[0] = '\r';
            break;
        case 't':
            tmp[0] = '\t';
            break;
        case 'u':
            cp = end - p >= 6 ? hex4(p + 2) : -1;
            if (cp < 0)
                return fail(s, p, "invalid \\u escape");
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return fail(s, p, "invalid Unicode: a lone low surrogate");
            if (cp >= 0xd800 && cp <= 0xdbff) {
                /* UTF-16: only a low surrogate may follow, and together they are one code
                 * point past U+FFFF. */
                lo = end - p >= 12 && p[6] == '\\' && p[7] == 'u' ? hex4(p + 8) : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    return fail(s, p, "invalid Unicode: a lone high surrogate");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            /* jansson refuses NUL in keys and in values (without JSON_ALLOW_NUL). */
            if (cp == 0)
                return fail(s, p, "\\u0000 is not allowed");
            k = utf8_encode((uint32_t)cp, tmp);
            p += 4;
            break;
        default:
            return fail(s, p, "invalid escape");
        }
        p += 2;
        put(dst, room, &n, tmp, k);
    }
    s->p = (const char *)p + 1;
    if (cap)
        dst[n < room ? n : room] = '\0';
    *lenp = n;
    return true;
}

/* Whether the real with integer digits [ip, ie), fraction digits [fp, fe) and exponent exp
 * overflows a double. Underflow is no error (strtod's ERANGE on underflow jansson ignores). */
static bool real_overflows(const unsigned char *ip, const unsigned char *ie,
                           const unsigned char *fp, const unsigned char *fe, int64_t exp)
{
    const size_t nlimit = sizeof(overflow_digits) - 1;
    const unsigned char *a, *a_end;
    bool in_fraction;
    int64_t x; /* the decimal exponent of the first significant digit */

    while (ip < ie && *ip == '0')
        ip++;
    if (ip < ie) {
        x = (int64_t)(ie - ip) - 1;
        a = ip;
        a_end = ie;
        in_fraction = false;
    } else {
        for (a = fp; a < fe && *a == '0'; a++)
            ;
        if (a == fe)
            return false; /* zero */
        x = -(int64_t)(a - fp) - 1;
        a_end = fe;
        in_fraction = true;
    }
    x += exp;
    if (x != 308)
        return x > 308;
    for (size_t i = 0;; i++) {
        int d, l;

        if (a == a_end && !in_fraction) {
            a = fp;
            a_end = fe;
            in_fraction = true;
        }
        if (a == a_end && i >= nlimit)
            return true; /* exactly the limit: ties round to even, which is infinity */
        d = a < a_end ? *a++ : '0';
        l = i < nlimit ? overflow_digits[i] : '0';
        if (d != l)
            return d > l;
    }
}

/* The number at s->p; its type and integer value go into v when v is not NULL. jansson reads
 * an integer (no fraction, no exponent) into a json_int_t, int64_t here, and refuses one that
 * does not fit; any other number into a double, refusing one that overflows. */
static bool scan_number(struct jscan *s, struct jscan_value *v)
{
    const unsigned char *p = (const unsigned char *)s->p;
    const unsigned char *end = (const unsigned char *)s->end;
    const unsigned char *digits, *int_end, *frac, *frac_end;
    bool negative = false, real = false;
    int64_t exp = 0;

    if (*p == '-') {
        negative = true;
        p++;
    }
    digits = p;
    if (p == end || !is_digit(*p))
        return fail(s, p, "invalid number");
    if (*p == '0')
        p++;
    else
        while (p < end && is_digit(*p))
            p++;
    int_end = p;
    if (p < end && is_digit(*p))
        return fail(s, p, "invalid number: a leading zero");
    frac = frac_end = p;
    if (p < end && *p == '.') {
        frac = ++p;
        while (p < end && is_digit(*p))
            p++;
        if (p == frac)
            return fail(s, p, "invalid number");
        frac_end = p;
        real = true;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const unsigned char *e;
        bool minus = false;

        p++;
        if (p < end && (*p == '+' || *p == '-'))
            minus = *p++ == '-';
        for (e = p; p < end && is_digit(*p); p++)
            if (exp < EXP_CAP)
                exp = exp * 10 + (*p - '0');
        if (p == e)
            return fail(s, p, "invalid number");
        if (minus)
            exp = -exp;
        real = true;
    }
    if (real) {
        if (real_overflows(digits, int_end, frac, frac_end, exp))
            return fail(s, digits, "real number overflow");
        if (v)
            v->type = JSCAN_REAL;
    } else {
        /* No leading zeros: more than 19 digits is past INT64_MAX, and 19 fit a uint64_t. */
        uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, u = 0;

        if (int_end - digits > 19)
            return fail(s, digits, "too big integer");
        for (const unsigned char *d = digits; d < int_end; d++)
            u = u * 10 + (uint64_t)(*d - '0');
        if (u > limit)
            return fail(s, digits, "too big integer");
        if (v) {
            v->type = JSCAN_INTEGER;
            if (!negative)
                v->integer = (int64_t)u;
            else
                v->integer = u == limit ? INT64_MIN : -(int64_t)u;
        }
    }
    s->p = (const char *)p;
    return true;
}

static bool scan_literal(struct jscan *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, s->p, "invalid token");
    s->p += n;
    return true;
}

/* A key inside an object jscan_value steps over, and the ':' after it. */
static bool scan_key(struct jscan *s)
{
    size_t n;

    if (peek(s) != '"')
        return fail(s, s->p, "string or '}' expected");
    if (!scan_string(s, NULL, 0, &n))
        return false;
    if (peek(s) != ':')
        return fail(s, s->p, "':' expected");
    s->p++;
    return true;
}

/* The ',' or '}' after a member (or, first, the '{' and maybe the '}'): 1 when a member
 * follows, 0 when the object ended, -1 on an error. */
static int member_separator(struct jscan *s, bool first)
{
    int c = peek(s);

    if (first) {
        if (c != '{') {
            fail(s, s->p, "'{' expected");
            return -1;
        }
        s->p++;
        if (peek(s) != '}')
            return 1;
    } else if (c == ',') {
        s->p++;
        return 1;
    } else if (c != '}') {
        fail(s, s->p, c < 0 ? "premature end of input" : "',' or '}' expected");
        return -1;
    }
    s->p++;
    return 0;
}

int jscan_member(struct jscan *s, bool first, char *key, size_t cap, size_t *keylen)
{
    int r = member_separator(s, first);

    if (r <= 0)
        return r;
    if (peek(s) != '"') {
        fail(s, s->p, "string or '}' expected");
        return -1;
    }
    if (!scan_string(s, key, cap, keylen))
        return -1;
    if (peek(s) != ':') {
        fail(s, s->p, "':' expected");
        return -1;
    }
    s->p++;
    return 1;
}

bool jscan_string(struct jscan *s, char *dst, size_t cap, size_t *len)
{
    if (peek(s) != '"')
        return fail(s, s->p, "string expected");
    return scan_string(s, dst, cap, len);
}

/* Iterative, not recursive, so that deep nesting costs no stack: one bit per open container
 * says whether it is an object, and the depth limit bounds the bits. */
bool jscan_value(struct jscan *s, unsigned depth, struct jscan_value *v)
{
    unsigned char objects[JSCAN_MAX_DEPTH / 8];
    size_t top = 0, n; /* top: the containers open inside the value */

    memset(v, 0, sizeof(*v));
    peek(s);
    v->start = s->p;
    for (;;) {
        int c = peek(s);

        /* A value at depth + top. */
        if (depth + top > JSCAN_MAX_DEPTH)
            return fail(s, s->p, "maximum parsing depth reached");
        switch (c) {
        case '{':
        case '[':
            if (top == 0)
                v->type = c == '{' ? JSCAN_OBJECT : JSCAN_ARRAY;
            /* Each byte is cleared when its first bit is pushed, so no bit is read unset. */
            if (top % 8 == 0)
                objects[top / 8] = 0;
            if (c == '{')
                objects[top / 8] |= (unsigned char)(1u << top % 8);
            else
                objects[top / 8] &= (unsigned char)~(1u << top % 8);
            top++;
            s->p++;
            if (peek(s) == (c == '{' ? '}' : ']')) {
                s->p++;
                top--;
                break;
            }
            if (c == '{' && !scan_key(s))
                return false;
            continue;
        case '"':
            if (top == 0)
                v->type = JSCAN_STRING;
            if (!scan_string(s, NULL, 0, &n))
                return false;
            break;
        case '-':
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7':
        case '8':
        case '9':
            if (!scan_number(s, top == 0 ? v : NULL))
                return false;
            break;
        case 't':
            if (top == 0)
                v->type = JSCAN_TRUE;
            if (!scan_literal(s, "true", 4))
                return false;
            break;
        case 'f':
            if (top == 0)
                v->type = JSCAN_FALSE;
            if (!scan_literal(s, "false", 5))
                return false;
            break;
        case 'n':
            if (top == 0)
                v->type = JSCAN_NULL;
            if (!scan_literal(s, "null", 4))
                return false;
            break;
        case -1:
            return fail(s, s->p, "premature end of input");
        default:
            return fail(s, s->p, "invalid token");
        }
        /* A value ended; so may the containers around it. */
        for (;;) {
            bool object;

            if (top == 0) {
                v->len = (size_t)(s->p - v->start);
                return true;
            }
            object = objects[(top - 1) / 8] >> (top - 1) % 8 & 1;
            c = peek(s);
            if (c == ',') {
                s->p++;
                if (object) {
                    v->multikey = true;
                    if (!scan_key(s))
                        return false;
                }
                break;
            }
            if (c != (object ? '}' : ']'))
                return fail(s, s->p,
                            c < 0    ? "premature end of input"
                            : object ? "',' or '}' expected"
                                     : "',' or ']' expected");
            s->p++;
            top--;
        }
    }
}

bool jscan_end(struct jscan *s)
{
    if (peek(s) != -1)
        return fail(s, s->p, "end of file expected");
    return true;
}
