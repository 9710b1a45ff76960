/* jscan, the allocation-free JSON scanner under evt_parse, against jansson: what it accepts
 * and refuses, how it decodes strings, and what it reports about values it steps over. Every
 * input is copied into an allocation of exactly its length, so that ASan sees any read past
 * the end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "test_input.h"

/* The whole of buf is one JSON value, to the scanner. */
static bool scan_valid(const char *buf, size_t len, struct jscan_value *out)
{
    char *copy = test_exact(buf, len);
    struct jscan s;
    struct jscan_value v;
    bool ok;

    jscan_init(&s, copy, len);
    ok = jscan_value(&s, 1, &v) && jscan_end(&s);
    if (ok && out) {
        *out = v;
        out->start = buf + (v.start - copy);
    }
    if (!ok)
        assert_non_null(s.err);
    free(copy);
    return ok;
}

/* The same to jansson, which unlike the scanner looks for duplicate keys everywhere: the
 * inputs here have none, but where the scanner says multikey. */
static bool jansson_valid(const char *buf, size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(buf, len, JSON_DECODE_ANY, &e);

    json_decref(j);
    return j != NULL;
}

static void agree_len(const char *buf, size_t len)
{
    bool mine = scan_valid(buf, len, NULL), theirs = jansson_valid(buf, len);

    if (mine != theirs) {
        test_print_input(buf, len);
        fail_msg("jscan %s, jansson %s", mine ? "accepts" : "refuses",
                 theirs ? "accepts" : "refuses");
    }
}

static void agree(const char *json)
{
    agree_len(json, strlen(json));
}

/* Decodes the string value json with the scanner into a buffer of cap bytes. */
static bool decode(const char *json, char *dst, size_t cap, size_t *len)
{
    size_t n = strlen(json);
    char *copy = test_exact(json, n);
    struct jscan s;
    bool ok;

    jscan_init(&s, copy, n);
    ok = jscan_string(&s, dst, cap, len) && jscan_end(&s);
    free(copy);
    return ok;
}

static void every_escape_is_decoded(void **state)
{
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"\"\\\"\"", "\""},
        {"\"\\\\\"", "\\"},
        {"\"\\/\"", "/"},
        {"\"\\b\"", "\b"},
        {"\"\\f\"", "\f"},
        {"\"\\n\"", "\n"},
        {"\"\\r\"", "\r"},
        {"\"\\t\"", "\t"},
        {"\"\\u0041\"", "A"},
        {"\"\\u007f\"", "\x7f"},
        {"\"\\u0080\"", "\xc2\x80"},
        {"\"\\u00e9\\u00E9\"", "\xc3\xa9\xc3\xa9"},
        {"\"\\u07ff\"", "\xdf\xbf"},
        {"\"\\u0800\"", "\xe0\xa0\x80"},
        {"\"\\u20ac\"", "\xe2\x82\xac"},
        {"\"\\ud7ff\"", "\xed\x9f\xbf"},
        {"\"\\ue000\"", "\xee\x80\x80"},
        {"\"\\uffff\"", "\xef\xbf\xbf"},
        {"\"\\ud800\\udc00\"", "\xf0\x90\x80\x80"},
        {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80"},
        {"\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf"},
        {"\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\\u00e9j\"", "a\"b\\c/d\be\ff\ng\rh\ti\xc3\xa9j"},
        {"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f plain\"",
         "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f plain"},
        {"\"\"", ""},
    };
    char out[64];
    size_t len;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_error_t e;
        json_t *j = json_loadb(cases[i].json, strlen(cases[i].json), JSON_DECODE_ANY, &e);

        if (!decode(cases[i].json, out, sizeof(out), &len))
            fail_msg("case %zu refused", i);
        assert_int_equal(len, strlen(cases[i].want));
        assert_string_equal(out, cases[i].want);
        /* And jansson decodes it alike. */
        assert_non_null(j);
        assert_string_equal(json_string_value(j), cases[i].want);
        json_decref(j);
    }
}

static void bad_strings_are_refused(void **state)
{
    static const char *const cases[] = {
        "\"\\ud800\"",        /* lone high surrogate */
        "\"\\udbff\"",        /* lone high surrogate */
        "\"\\udc00\"",        /* lone low surrogate */
        "\"\\udfff\\ud800\"", /* a pair the wrong way round */
        "\"\\ud800\\u0041\"", /* high then not low */
        "\"\\ud800\\ud800\"", /* high then high */
        "\"\\ud800x\"",       /* high then a plain byte */
        "\"\\ud800\\n\"",     /* high then another escape */
        "\"\\ud800\\u12\"",   /* high then a short escape */
        "\"\\ud800\\",        /* high then the end */
        "\"\\u0000\"",        /* NUL (jansson needs JSON_ALLOW_NUL) */
        "\"a\\u0000b\"",      /* NUL inside */
        "\"\\x41\"",          /* unknown escape */
        "\"\\U0041\"",        /* escapes are case-sensitive */
        "\"\\u004\"",         /* short */
        "\"\\u00G1\"",        /* not hexadecimal */
        "\"\\u\"",            /* nothing after */
        "\"\\",               /* the end after a backslash */
        "\"abc",              /* no closing quote */
        "\"",                 /* only the opening one */
        "\"a\tb\"",           /* raw control characters */
        "\"a\nb\"",
        "\"\x01\"",
        "\"\x1f\"",
        "'single'",
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[16];
        size_t len;

        if (decode(cases[i], out, sizeof(out), &len))
            fail_msg("case %zu (%s) accepted", i, cases[i]);
        agree(cases[i]);
    }
    /* A raw NUL byte in a string, and \u0000 in a key. */
    agree_len("\"a\0b\"", 5);
    assert_false(scan_valid("\"a\0b\"", 5, NULL));
    agree("{\"\\u0000\":1}");
    assert_false(scan_valid("{\"\\u0000\":1}", 12, NULL));
}

/* Every one- and two-byte sequence, and three- and four-byte ones over the boundary values of
 * their continuation bytes, inside a string: the same verdict as jansson's UTF-8 check. */
static void utf8_is_checked_like_jansson(void **state)
{
    static const unsigned char edges[] = {0x00, 0x20, 0x7f, 0x80, 0x8f, 0x90,
                                          0x9f, 0xa0, 0xbf, 0xc0, 0xf5, 0xff};
    char buf[8];

    buf[0] = '"';
    for (unsigned a = 0; a < 256; a++) {
        buf[1] = (char)a;
        buf[2] = '"';
        agree_len(buf, 3);
        agree_len(buf, 2);
        for (unsigned b = 0; b < 256; b++) {
            buf[2] = (char)b;
            buf[3] = '"';
            agree_len(buf, 4);
        }
    }
    for (unsigned a = 0xe0; a <= 0xff; a++)
        for (size_t i = 0; i < sizeof(edges); i++)
            for (size_t j = 0; j < sizeof(edges); j++)
                for (size_t k = 0; k < sizeof(edges); k++) {
                    buf[1] = (char)a;
                    buf[2] = (char)edges[i];
                    buf[3] = (char)edges[j];
                    buf[4] = '"';
                    agree_len(buf, 5);
                    buf[4] = (char)edges[k];
                    buf[5] = '"';
                    agree_len(buf, 6);
                    agree_len(buf, 5); /* cut short */
                }
}

/* Specials at every offset of strings of every length around the eight-byte steps: the
 * scanner's decoding is jansson's. */
static void decoding_matches_jansson_at_every_offset(void **state)
{
    static const char *const specials[] = {"\\\"",
                                           "\\\\",
                                           "\\n",
                                           "\\u00e9",
                                           "\\ud83d\\ude00",
                                           "\xc3\xa9",
                                           "\xe2\x82\xac",
                                           "\xf0\x9f\x98\x80",
                                           "\x7f",
                                           "\x01",
                                           "\xc3",
                                           "\\u0000",
                                           "\\q"};
    char json[128], out[128], small[8];

    for (size_t n = 0; n < 40; n++)
        for (size_t at = 0; at <= n; at++)
            for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
                json_error_t e;
                json_t *j;
                size_t len = 0, slen = 0, m = 0;
                bool ok;

                json[m++] = '"';
                for (size_t i = 0; i < n; i++) {
                    if (i == at) {
                        memcpy(json + m, specials[k], strlen(specials[k]));
                        m += strlen(specials[k]);
                    }
                    json[m++] = (char)('a' + i % 26);
                }
                json[m++] = '"';
                json[m] = '\0';
                j = json_loadb(json, m, JSON_DECODE_ANY, &e);
                ok = decode(json, out, sizeof(out), &len);
                if (ok != (j != NULL)) {
                    test_print_input(json, m);
                    fail_msg("jscan %s, jansson %s", ok ? "accepts" : "refuses",
                             j ? "accepts" : "refuses");
                }
                if (j) {
                    assert_int_equal(len, json_string_length(j));
                    assert_memory_equal(out, json_string_value(j), len + 1);
                    /* Into a buffer too small: cut, NUL-terminated, the whole length told. */
                    assert_true(decode(json, small, sizeof(small), &slen));
                    assert_int_equal(slen, len);
                    assert_int_equal(strlen(small), len < 7 ? len : 7);
                    assert_memory_equal(small, out, strlen(small));
                }
                json_decref(j);
            }
}

/* 2^1024 - 2^970: the least integer strtod rounds to infinity. */
#define LIMIT                                                                                      \
    "17976931348623158079372897140530341507993413271003782693617377898044496829276475"             \
    "09466490179775872070963302864166928879109465555478519404026306574886715058206819"             \
    "08902000708383676273854845817711531764475730270069855571366959622842914819860834"             \
    "936475292719074168444365510704342711559699508093042880177904174497792"

static void numbers_are_read_like_jansson(void **state)
{
    static const struct {
        const char *json;
        enum jscan_type type;
        int64_t integer;
    } good[] = {
        {"0", JSCAN_INTEGER, 0},
        {"-0", JSCAN_INTEGER, 0},
        {"7", JSCAN_INTEGER, 7},
        {"-12", JSCAN_INTEGER, -12},
        {"9223372036854775807", JSCAN_INTEGER, INT64_MAX},
        {"-9223372036854775808", JSCAN_INTEGER, INT64_MIN},
        {"1000000000000000000", JSCAN_INTEGER, 1000000000000000000},
        {"1.5", JSCAN_REAL, 0},
        {"-0.0", JSCAN_REAL, 0},
        {"1e5", JSCAN_REAL, 0},
        {"1E+5", JSCAN_REAL, 0},
        {"1e-5", JSCAN_REAL, 0},
        {"3.0", JSCAN_REAL, 0},
        {"9223372036854775808.0", JSCAN_REAL, 0},
        {"1e-400", JSCAN_REAL, 0},
        {"1e308", JSCAN_REAL, 0},
        {"0e99999999999999999999", JSCAN_REAL, 0},
        {"0.000000000000000000000001e331", JSCAN_REAL, 0},
        {"1.7976931348623157e308", JSCAN_REAL, 0},
        {"-1.7976931348623158e308", JSCAN_REAL, 0},
        {"17976931348623158079372897140530341507993413271003782693617377898044496829276475"
         "09466490179775872070963302864166928879109465555478519404026306574886715058206819"
         "08902000708383676273854845817711531764475730270069855571366959622842914819860834"
         "936475292719074168444365510704342711559699508093042880177904174497791.999",
         JSCAN_REAL, 0},
    };
    static const char *const bad[] = {
        "01",
        "-01",
        "00",
        "-",
        "+1",
        ".5",
        "1.",
        "1.e5",
        "1e",
        "1e+",
        "1e-",
        "0x10",
        "1f",
        "--1",
        "NaN",
        "Infinity",
        "-Infinity",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "123456789012345678901234567890",
        "1e309",
        "-1e309",
        "1e99999999999999999999",
        "1.7976931348623159e308",
        "0.00000000000000000000018e333",
        LIMIT,
        LIMIT ".0",
        LIMIT "0e-1",
        "0." LIMIT "e309",
        "-" LIMIT,
        LIMIT "1e-1",
    };
    struct jscan_value v;
    char json[700];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!scan_valid(good[i].json, strlen(good[i].json), &v))
            fail_msg("%s refused", good[i].json);
        assert_int_equal(v.type, good[i].type);
        if (v.type == JSCAN_INTEGER)
            assert_true(v.integer == good[i].integer);
        assert_int_equal(v.len, strlen(good[i].json));
        agree(good[i].json);
        snprintf(json, sizeof(json), "[%s]", good[i].json);
        agree(json);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (scan_valid(bad[i], strlen(bad[i]), NULL))
            fail_msg("%s accepted", bad[i]);
        agree(bad[i]);
        snprintf(json, sizeof(json), "{\"n\":%s}", bad[i]);
        agree(json);
    }
    /* Around the overflow boundary, digit by digit: the same verdicts as strtod in jansson. */
    for (int exp = 306; exp <= 310; exp++)
        for (int d = 0; d < 100; d++) {
            snprintf(json, sizeof(json), "[1.79769313486231%02d%s, -0.%d1797693134862315%02de%d]",
                     d, d % 2 ? "0793" : "", d % 3, d, exp + d % 3 - 1 + (d % 3 == 0));
            agree(json);
            snprintf(json, sizeof(json), "[1.79769313486231%02de%d]", d, exp - 2 + d % 5);
            agree(json);
        }
}

static void literals_and_whitespace(void **state)
{
    static const char *const good[] = {
        "true",
        "false",
        "null",
        " \t\r\n[ \t\r\n1 \t\r\n, \t\r\ntrue\n]\r\n",
        "{ \"a\" : [ 1 , { } , [ ] ] , \"b\" : null }",
    };
    static const char *const bad[] = {
        "tru",          "truex", "True", "nul",  "nulll",      "f",
        "[true false]", "\f[]",  "[]\v", "\xa0", "[1 2]",      "{\"a\" 1}",
        "{\"a\":}",     "[,1]",  "{,}",  "[1,]", "{\"a\":1,}", "[\"a\":1]",
        "{\"a\",1}",    "{1:2}", "[}",   "{]",   "",           " ",
    };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_true(scan_valid(good[i], strlen(good[i]), NULL));
        agree(good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (scan_valid(bad[i], strlen(bad[i]), NULL))
            fail_msg("%s accepted", bad[i]);
        agree(bad[i]);
    }
}

/* jscan_value reports the type, the span and whether an object of two or more members is
 * inside (where duplicate keys may hide). */
static void values_report_type_span_and_multikey(void **state)
{
    static const struct {
        const char *json;
        enum jscan_type type;
        bool multikey;
    } cases[] = {
        {"{}", JSCAN_OBJECT, false},
        {"{\"a\":1}", JSCAN_OBJECT, false},
        {"{\"a\":1,\"b\":2}", JSCAN_OBJECT, true},
        {"{\"a\":{\"b\":{\"c\":1}}}", JSCAN_OBJECT, false},
        {"[]", JSCAN_ARRAY, false},
        {"[{\"a\":1},{\"a\":1}]", JSCAN_ARRAY, false},
        {"[[{\"a\":1,\"b\":[]}]]", JSCAN_ARRAY, true},
        {"[1,2,3]", JSCAN_ARRAY, false},
        {"\"s\"", JSCAN_STRING, false},
        {"true", JSCAN_TRUE, false},
        {"false", JSCAN_FALSE, false},
        {"null", JSCAN_NULL, false},
        {"[true]", JSCAN_ARRAY, false},
    };
    struct jscan_value v;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_true(scan_valid(cases[i].json, strlen(cases[i].json), &v));
        assert_int_equal(v.type, cases[i].type);
        assert_int_equal(v.multikey, cases[i].multikey);
        assert_ptr_equal(v.start, cases[i].json);
        assert_int_equal(v.len, strlen(cases[i].json));
    }
}

/* jscan_member walks an object's members, decoding keys, with whitespace anywhere. */
static void members_are_walked(void **state)
{
    const char *json = " { \"a\" : 1 , \"b\\u00e9\" :\t[ {\"x\":1,\"y\":2} ] ,\"c\":\"v\" }\n";
    size_t n = strlen(json), klen, vlen;
    char *copy = test_exact(json, n), key[8], val[8];
    struct jscan s;
    struct jscan_value v;

    jscan_init(&s, copy, n);
    assert_int_equal(jscan_member(&s, true, key, sizeof(key), &klen), 1);
    assert_string_equal(key, "a");
    assert_true(jscan_value(&s, 2, &v));
    assert_int_equal(v.type, JSCAN_INTEGER);
    assert_int_equal(v.integer, 1);
    assert_int_equal(jscan_member(&s, false, key, sizeof(key), &klen), 1);
    assert_string_equal(key, "b\xc3\xa9");
    assert_int_equal(klen, 3);
    assert_true(jscan_value(&s, 2, &v));
    assert_int_equal(v.type, JSCAN_ARRAY);
    assert_true(v.multikey);
    assert_int_equal(jscan_member(&s, false, key, sizeof(key), &klen), 1);
    assert_int_equal(jscan_peek(&s), '"');
    assert_true(jscan_string(&s, val, sizeof(val), &vlen));
    assert_string_equal(val, "v");
    assert_int_equal(jscan_member(&s, false, key, sizeof(key), &klen), 0);
    assert_true(jscan_end(&s));
    free(copy);

    /* A key longer than the buffer: cut, the whole length told. */
    json = "{\"0123456789\":0}";
    n = strlen(json);
    copy = test_exact(json, n);
    jscan_init(&s, copy, n);
    assert_int_equal(jscan_member(&s, true, key, sizeof(key), &klen), 1);
    assert_int_equal(klen, 10);
    assert_string_equal(key, "0123456");
    free(copy);

    /* The empty object, and faults between members. */
    static const struct {
        const char *json;
        int first, second;
    } shapes[] = {
        {"{}", 0, 0},
        {" { } ", 0, 0},
        {"{,}", -1, 0},
        {"{\"a\":1,}", 1, -1},
        {"{\"a\":1 \"b\":2}", 1, -1},
        {"{\"a\" 1}", -1, 0},
        {"{1:1}", -1, 0},
        {"[1]", -1, 0},
        {"{\"a\":1", 1, -1},
        {"{", -1, 0},
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        int r;

        n = strlen(shapes[i].json);
        copy = test_exact(shapes[i].json, n);
        jscan_init(&s, copy, n);
        r = jscan_member(&s, true, key, sizeof(key), &klen);
        if (r != shapes[i].first)
            fail_msg("%s: first member %d", shapes[i].json, r);
        if (r == 1) {
            assert_true(jscan_value(&s, 2, &v));
            r = jscan_member(&s, false, key, sizeof(key), &klen);
            if (r != shapes[i].second)
                fail_msg("%s: second member %d", shapes[i].json, r);
        }
        if (r < 0)
            assert_non_null(s.err);
        free(copy);
    }
    /* Not at a string. */
    copy = test_exact("1", 1);
    jscan_init(&s, copy, 1);
    assert_false(jscan_string(&s, val, sizeof(val), &vlen));
    free(copy);
}

/* 2048 levels, scalars counting as one, as jansson's JSON_PARSER_MAX_DEPTH. */
static void depth_is_limited_like_jansson(void **state)
{
    for (int depth = 2040; depth <= 2052; depth++)
        for (int kind = 0; kind < 3; kind++) {
            /* [[...]], [[...1...]] and {"a":{"a":...{}...}} */
            char *s = malloc(6 * (size_t)depth + 16);
            size_t k = 0;

            assert_non_null(s);
            for (int i = 1; i < depth; i++) {
                memcpy(s + k, kind == 2 ? "{\"a\":" : "[", kind == 2 ? 5 : 1);
                k += kind == 2 ? 5 : 1;
            }
            memcpy(s + k, kind == 0 ? "[]" : kind == 1 ? "[1]" : "{}", 2 + (kind == 1));
            k += 2 + (kind == 1);
            for (int i = 1; i < depth; i++)
                s[k++] = kind == 2 ? '}' : ']';
            agree_len(s, k);
            assert_int_equal(scan_valid(s, k, NULL), depth + (kind == 1) <= JSCAN_MAX_DEPTH);
            free(s);
        }
}

/* Every prefix of a document with every feature: refused by both, and read no further. */
static void every_truncation_is_refused(void **state)
{
    const char *json =
        " {\"s\":\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\xc3\xa9\xe2\x82\xac"
        "\xf0\x9f\x98\x80 0123456789abcdef\",\"n\":[0,-1,2.5e-3,1E+2,-0.0,9223372036854775807],"
        "\"l\":[true,false,null],\"o\":{\"x\":{},\"y\":[[]]}} ";
    size_t n = strlen(json);

    assert_true(scan_valid(json, n, NULL));
    for (size_t cut = 0; cut < n - 1; cut++) {
        if (scan_valid(json, cut, NULL))
            fail_msg("accepted the first %zu bytes", cut);
        agree_len(json, cut);
    }
}

/* Seeded random edits of valid documents: the same verdict as jansson, thousands of times. */
static void random_edits_agree_with_jansson(void **state)
{
    static const char *const seeds[] = {
        "{\"a\":[1,2.5,-3e2,{\"b\":\"c\\u00e9\\ud83d\\ude00\"}],\"d\":{\"e\":null,\"f\":true}}",
        "[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",false,0,-0.5,\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]",
        "{\"specversion\":\"1.0\",\"id\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"ifmatch\":3,"
        "\"data\":{\"amount\":150.5,\"date\":\"2026-11-24\"}}",
    };
    static const char alphabet[] = "\"\\{}[],: \t\n0123456789-+.eEtrufalsn\x01\x1f\x7f\x80\xbf"
                                   "\xc2\xc3\xe0\xed\xf0\xf4\xf5\xff/bu";
    uint64_t x = 0x9e3779b97f4a7c15u;
    char buf[256];

    for (int round = 0; round < 30000; round++) {
        const char *seed = seeds[round % 3];
        size_t n = strlen(seed);
        int edits = 1 + round % 3;

        memcpy(buf, seed, n);
        for (int e = 0; e < edits; e++) {
            size_t at;
            char c;

            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            at = (size_t)(x % (n + 1));
            c = alphabet[(x >> 20) % (sizeof(alphabet) - 1)];
            switch ((x >> 40) % 3) {
            case 0: /* replace */
                if (at < n)
                    buf[at] = c;
                break;
            case 1: /* insert */
                if (n < sizeof(buf) - 1) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = c;
                    n++;
                }
                break;
            default: /* delete */
                if (at < n) {
                    memmove(buf + at, buf + at + 1, n - at - 1);
                    n--;
                }
            }
        }
        agree_len(buf, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_escape_is_decoded),
        cmocka_unit_test(bad_strings_are_refused),
        cmocka_unit_test(utf8_is_checked_like_jansson),
        cmocka_unit_test(decoding_matches_jansson_at_every_offset),
        cmocka_unit_test(numbers_are_read_like_jansson),
        cmocka_unit_test(literals_and_whitespace),
        cmocka_unit_test(values_report_type_span_and_multikey),
        cmocka_unit_test(members_are_walked),
        cmocka_unit_test(depth_is_limited_like_jansson),
        cmocka_unit_test(every_truncation_is_refused),
        cmocka_unit_test(random_edits_agree_with_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
