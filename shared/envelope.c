#include "envelope.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Copies the string member key of o into dst; fails if required and missing, or too long. */
static int copy_str(json_t *o, const char *key, char *dst, size_t dstlen, int required, char *err,
                    size_t errlen)
{
    json_t *v = json_object_get(o, key);

    dst[0] = '\0';
    if (!v) {
        if (required)
            snprintf(err, errlen, "envelope: missing %s", key);
        return required ? -1 : 0;
    }
    if (!json_is_string(v) || json_string_length(v) >= dstlen) {
        snprintf(err, errlen, "envelope: %s must be a string of at most %zu bytes", key,
                 dstlen - 1);
        return -1;
    }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

int evt_parse(const char *buf, size_t len, struct evt *out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *o, *v;
    char spec[8];

    memset(out, 0, sizeof(*out));
    if (len > EVT_MAX_SIZE) {
        snprintf(err, errlen, "envelope: %zu bytes is over the %d byte limit", len, EVT_MAX_SIZE);
        return -1;
    }
    o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) {
        snprintf(err, errlen, "envelope: not JSON: %s", jerr.text);
        return -1;
    }
    if (!json_is_object(o)) {
        snprintf(err, errlen, "envelope: not a JSON object");
        goto fail;
    }
    if (copy_str(o, "specversion", spec, sizeof(spec), 1, err, errlen) ||
        copy_str(o, "id", out->id, sizeof(out->id), 1, err, errlen) ||
        copy_str(o, "type", out->type, sizeof(out->type), 1, err, errlen) ||
        copy_str(o, "subject", out->subject, sizeof(out->subject), 1, err, errlen) ||
        copy_str(o, "source", out->source, sizeof(out->source), 1, err, errlen) ||
        copy_str(o, "time", out->time, sizeof(out->time), 1, err, errlen) ||
        copy_str(o, "requestid", out->requestid, sizeof(out->requestid), 0, err, errlen) ||
        copy_str(o, "traceparent", out->traceparent, sizeof(out->traceparent), 0, err, errlen) ||
        copy_str(o, "occurredat", out->occurredat, sizeof(out->occurredat), 0, err, errlen) ||
        copy_str(o, "clientaddr", out->clientaddr, sizeof(out->clientaddr), 0, err, errlen) ||
        copy_str(o, "requesthash", out->requesthash, sizeof(out->requesthash), 0, err, errlen))
        goto fail;
    if (out->requesthash[strspn(out->requesthash, "0123456789abcdefABCDEF")] != '\0') {
        snprintf(err, errlen, "envelope: requesthash must be hexadecimal digits");
        goto fail;
    }
    if (strcmp(spec, "1.0") != 0) {
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
    v = json_object_get(o, "ifmatch");
    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            snprintf(err, errlen, "envelope: ifmatch must be a positive integer");
            goto fail;
        }
        out->ifmatch = json_integer_value(v);
    }
    v = json_object_get(o, "data");
    if (!json_is_object(v)) {
        snprintf(err, errlen, "envelope: data must be a JSON object");
        goto fail;
    }
    out->data = json_incref(v);
    json_decref(o);
    return 0;
fail:
    json_decref(o);
    return -1;
}

void evt_clear(struct evt *e)
{
    if (!e)
        return;
    json_decref(e->data);
    e->data = NULL;
}
