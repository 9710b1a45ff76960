#include "envelope.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "jsonw.h"
#include "log.h"

void evt_time_now(char out[EVT_TIMELEN])
{
    log_clock(out);
}

/* ,"key":"value" (the key is one of ours: plain ASCII). */
static void wb_member(struct jsonw *b, const char *key, const char *value)
{
    JSONW_LIT(b, ",\"");
    jsonw_add(b, key, strlen(key));
    JSONW_LIT(b, "\":");
    jsonw_string(b, value);
}

char *evt_write(const struct evt_view *v, size_t *len)
{
    const char *required[] = {v->id,      v->source, v->type,
                              v->subject, v->time,   v->requestid ? v->requestid : ""};
    const struct {
        const char *key, *value;
    } optional[] = {
        {"traceparent", v->traceparent},
        {"occurredat", v->occurredat},
        {"clientaddr", v->clientaddr},
    };
    struct jsonw b = {0};
    char num[48];

    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!required[i] || !jsonw_utf8_ok(required[i]))
            return NULL;
    if (!jsonw_reserve(&b, 400 + v->datalen))
        return NULL;
    JSONW_LIT(&b, "{\"specversion\":\"1.0\"");
    wb_member(&b, "id", v->id);
    wb_member(&b, "source", v->source);
    wb_member(&b, "type", v->type);
    wb_member(&b, "subject", v->subject);
    wb_member(&b, "time", v->time);
    JSONW_LIT(&b, ",\"datacontenttype\":\"application/json\"");
    wb_member(&b, "requestid", required[5]);
    for (size_t i = 0; i < sizeof(optional) / sizeof(optional[0]); i++)
        if (optional[i].value && optional[i].value[0] && jsonw_utf8_ok(optional[i].value))
            wb_member(&b, optional[i].key, optional[i].value);
    if (v->ifmatch > 0) {
        int n = snprintf(num, sizeof(num), ",\"ifmatch\":%lld", (long long)v->ifmatch);
        jsonw_add(&b, num, (size_t)n);
    }
    if (v->requesthash && v->requesthash[0] && jsonw_utf8_ok(v->requesthash))
        wb_member(&b, "requesthash", v->requesthash);
    JSONW_LIT(&b, ",\"data\":");
    if (v->data && v->datalen)
        jsonw_add(&b, v->data, v->datalen);
    else
        JSONW_LIT(&b, "{}");
    JSONW_LIT(&b, "}");
    return jsonw_finish(&b, len);
}

char *evt_serialize(const struct evt *e, size_t *len)
{
    struct evt_view v = {
        .id = e->id,
        .type = e->type,
        .subject = e->subject,
        .source = e->source,
        .time = e->time,
        .requestid = e->requestid,
        .traceparent = e->traceparent,
        .occurredat = e->occurredat,
        .clientaddr = e->clientaddr,
        .requesthash = e->requesthash,
        .ifmatch = e->ifmatch,
    };
    char *data = NULL, *s;

    if (e->data) {
        data = json_dumps(e->data, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!data)
            return NULL;
        v.data = data;
        v.datalen = strlen(data);
    }
    s = evt_write(&v, len);
    free(data);
    return s;
}

/* The members evt_parse reads, in the order its checks look at them: the order of the
 * jansson-tree parser it replaced, so that an envelope with several faults still gets the
 * same first complaint. The string members come first. */
enum member {
    M_SPECVERSION,
    M_ID,
    M_TYPE,
    M_SUBJECT,
    M_SOURCE,
    M_TIME,
    M_REQUESTID,
    M_TRACEPARENT,
    M_OCCURREDAT,
    M_CLIENTADDR,
    M_REQUESTHASH,
    M_IFMATCH, /* the first that is not a string */
    M_DATA,
    M_COUNT
};

#define SPECVERSION_SIZE 8 /* "1.0" is all there is; longer is refused as too long */

/* The fields of a string member kept in struct evt under its own name. */
#define EVT_ROOM(m)           sizeof(((struct evt *)0)->m)
#define STRING_MEMBER(m, req) #m, sizeof(#m) - 1, offsetof(struct evt, m), EVT_ROOM(m), req

static const struct member_def {
    const char *key;
    size_t keylen;
    size_t off, size; /* a string's place in struct evt and its room, NUL included */
    bool required;
} members[M_COUNT] = {
    /* specversion is checked, not kept: it goes to struct scan's spec. */
    [M_SPECVERSION] = {"specversion", 11, 0, SPECVERSION_SIZE, true},
    [M_ID] = {STRING_MEMBER(id, true)},
    [M_TYPE] = {STRING_MEMBER(type, true)},
    [M_SUBJECT] = {STRING_MEMBER(subject, true)},
    [M_SOURCE] = {STRING_MEMBER(source, true)},
    [M_TIME] = {STRING_MEMBER(time, true)},
    [M_REQUESTID] = {STRING_MEMBER(requestid, false)},
    [M_TRACEPARENT] = {STRING_MEMBER(traceparent, false)},
    [M_OCCURREDAT] = {STRING_MEMBER(occurredat, false)},
    [M_CLIENTADDR] = {STRING_MEMBER(clientaddr, false)},
    [M_REQUESTHASH] = {STRING_MEMBER(requesthash, false)},
    [M_IFMATCH] = {"ifmatch", 7, 0, 0, false},
    [M_DATA] = {"data", 4, 0, 0, true},
};

enum { ABSENT, FOUND, WRONG }; /* WRONG: a string member that is not a string or too long */

/* Members the envelope does not know (datacontenttype, extensions) are remembered by key, to
 * refuse a second one of the same name as jansson did; keys past these limits are left to
 * jansson (see struct scan's confirm). */
#define UNKNOWN_MAX    8
#define UNKNOWN_KEYLEN 32

/* What the scan of one envelope found, for the checks after it. */
struct scan {
    char spec[SPECVERSION_SIZE];
    unsigned char state[M_COUNT]; /* ABSENT, FOUND or WRONG */
    struct jscan_value ifmatch, data;
    char unknown[UNKNOWN_MAX][UNKNOWN_KEYLEN];
    size_t unknown_len[UNKNOWN_MAX], nunknown;
    /* The scanner could not tell whether two unknown members have the same key (more of them
     * than it keeps, or a long key): jansson reads the whole envelope to find out. */
    bool confirm;
};

static int member_index(const char *key, size_t len)
{
    for (int i = 0; i < M_COUNT; i++)
        if (members[i].keylen == len && memcmp(members[i].key, key, len) == 0)
            return i;
    return -1;
}

/* Remembers an unknown member's key; false when an earlier member had it. */
static bool unknown_is_new(struct scan *sc, const char *key, size_t len)
{
    if (len >= UNKNOWN_KEYLEN || sc->nunknown == UNKNOWN_MAX) {
        sc->confirm = true;
        return true;
    }
    for (size_t i = 0; i < sc->nunknown; i++)
        if (sc->unknown_len[i] == len && memcmp(sc->unknown[i], key, len) == 0)
            return false;
    memcpy(sc->unknown[sc->nunknown], key, len);
    sc->unknown_len[sc->nunknown++] = len;
    return true;
}

/* Lets jansson read the n bytes of JSON at p with JSON_REJECT_DUPLICATES, for the duplicate
 * keys the scanner does not look for (in objects nested in members evt_parse does not keep,
 * and see struct scan's confirm). It never holds a real envelope's members, so the tree it
 * builds is rare and dropped at once. 0, or -1 with the reason in err. */
static int confirm_json(const char *p, size_t n, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *j = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);

    if (!j) {
        snprintf(err, errlen, "envelope: not JSON: %s", jerr.text);
        return -1;
    }
    json_decref(j);
    return 0;
}

/* Reads the JSON of an envelope with the scanner, with no tree: the string members are decoded
 * straight into out (specversion into sc->spec), ifmatch and data are noted in sc, anything
 * else is checked and stepped over. It refuses what json_loadb refused with
 * JSON_REJECT_DUPLICATES, but for duplicate keys inside data, which jansson finds when it
 * parses data. 0, or -1 with the reason in err. */
static int scan_envelope(const char *buf, size_t len, struct evt *out, struct scan *sc, char *err,
                         size_t errlen)
{
    struct jscan s;
    struct jscan_value v;
    char key[UNKNOWN_KEYLEN];
    size_t keylen, n;
    unsigned seen = 0;
    int r, c;

    jscan_init(&s, buf, len);
    c = jscan_peek(&s);
    if (c == '[') {
        if (!jscan_value(&s, 1, &v) || !jscan_end(&s))
            goto bad_json;
        if (v.multikey && confirm_json(v.start, v.len, err, errlen))
            return -1;
        snprintf(err, errlen, "envelope: not a JSON object");
        return -1;
    }
    if (c != '{') {
        snprintf(err, errlen, "envelope: not JSON: '[' or '{' expected");
        return -1;
    }
    for (r = jscan_member(&s, true, key, sizeof(key), &keylen); r > 0;
         r = jscan_member(&s, false, key, sizeof(key), &keylen)) {
        int i = member_index(key, keylen);

        if (i >= 0 ? (seen & 1u << i) != 0 : !unknown_is_new(sc, key, keylen)) {
            snprintf(err, errlen, "envelope: not JSON: duplicate object key before byte %zu",
                     (size_t)(s.p - buf));
            return -1;
        }
        if (i >= 0)
            seen |= 1u << i;
        if (i >= 0 && i < M_IFMATCH && jscan_peek(&s) == '"') {
            char *dst = i == M_SPECVERSION ? sc->spec : (char *)out + members[i].off;

            if (!jscan_string(&s, dst, members[i].size, &n))
                goto bad_json;
            sc->state[i] = n < members[i].size ? FOUND : WRONG;
            continue;
        }
        if (!jscan_value(&s, 2, &v))
            goto bad_json;
        if (i >= 0)
            sc->state[i] = i < M_IFMATCH ? WRONG : FOUND;
        if (i == M_IFMATCH)
            sc->ifmatch = v;
        else if (i == M_DATA)
            sc->data = v;
        /* data, when an object, is parsed by jansson anyway, which finds its duplicates. */
        if (v.multikey && !(i == M_DATA && v.type == JSCAN_OBJECT) &&
            confirm_json(v.start, v.len, err, errlen))
            return -1;
    }
    if (r < 0 || !jscan_end(&s))
        goto bad_json;
    if (sc->confirm && confirm_json(buf, len, err, errlen))
        return -1;
    return 0;
bad_json:
    snprintf(err, errlen, "envelope: not JSON: %s at byte %zu", s.err, s.erroff);
    return -1;
}

/* The envelope is read by a scanner that builds nothing (jscan.c) and only data, the one
 * member callers need as a tree, by jansson: building the whole envelope's tree (a hashtable,
 * a malloc per key and string) was nearly half of the worker's CPU. The errors and their
 * order are those of the jansson-tree parser before it: JSON faults first (data's included),
 * then the members in the order of members[]. */
int evt_parse(const char *buf, size_t len, struct evt *out, char *err, size_t errlen)
{
    struct scan sc = {.nunknown = 0};
    json_error_t jerr;

    memset(out, 0, sizeof(*out));
    if (len > EVT_MAX_SIZE) {
        snprintf(err, errlen, "envelope: %zu bytes is over the %d byte limit", len, EVT_MAX_SIZE);
        return -1;
    }
    if (!buf) {
        snprintf(err, errlen, "envelope: not JSON: no buffer");
        return -1;
    }
    if (scan_envelope(buf, len, out, &sc, err, errlen) != 0) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    if (sc.state[M_DATA] && sc.data.type == JSCAN_OBJECT) {
        out->data = json_loadb(sc.data.start, sc.data.len, JSON_REJECT_DUPLICATES, &jerr);
        if (!out->data) {
            snprintf(err, errlen, "envelope: not JSON: %s", jerr.text);
            memset(out, 0, sizeof(*out));
            return -1;
        }
    }
    for (int i = 0; i < M_IFMATCH; i++) {
        if (sc.state[i] == FOUND || (sc.state[i] == ABSENT && !members[i].required))
            continue;
        if (sc.state[i] == ABSENT)
            snprintf(err, errlen, "envelope: missing %s", members[i].key);
        else
            snprintf(err, errlen, "envelope: %s must be a string of at most %zu bytes",
                     members[i].key, members[i].size - 1);
        /* As before: the members checked up to the faulty one are kept, the rest are empty. */
        for (; i < M_IFMATCH; i++)
            if (i != M_SPECVERSION)
                memset((char *)out + members[i].off, 0, members[i].size);
        goto fail;
    }
    if (out->requesthash[strspn(out->requesthash, "0123456789abcdefABCDEF")] != '\0') {
        snprintf(err, errlen, "envelope: requesthash must be hexadecimal digits");
        goto fail;
    }
    if (strcmp(sc.spec, "1.0") != 0) {
        snprintf(err, errlen, "envelope: specversion must be \"1.0\"");
        goto fail;
    }
    if (!uuid_valid(out->id) || !uuid_valid(out->subject)) {
        snprintf(err, errlen, "envelope: id and subject must be UUIDs");
        goto fail;
    }
    if (strncmp(out->type, "diary.", 6) != 0) {
        snprintf(err, errlen, "envelope: type \"%s\" is not a diary event type", out->type);
        goto fail;
    }
    if (sc.state[M_IFMATCH]) {
        if (sc.ifmatch.type != JSCAN_INTEGER || sc.ifmatch.integer < 1) {
            snprintf(err, errlen, "envelope: ifmatch must be a positive integer");
            goto fail;
        }
        out->ifmatch = sc.ifmatch.integer;
    }
    if (!out->data) {
        snprintf(err, errlen, "envelope: data must be a JSON object");
        goto fail;
    }
    return 0;
fail:
    json_decref(out->data);
    out->data = NULL;
    return -1;
}

void evt_clear(struct evt *e)
{
    if (!e)
        return;
    json_decref(e->data);
    e->data = NULL;
}
