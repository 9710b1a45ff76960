#include "envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void evt_time_now(char out[EVT_TIMELEN])
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    {
        size_t n = strftime(out, EVT_TIMELEN, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out + n, EVT_TIMELEN - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
    }
}

char *evt_serialize(const struct evt *e, size_t *len)
{
    json_t *o;
    char *s;

    o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "specversion", "1.0", "id", e->id,
                  "source", e->source, "type", e->type, "subject", e->subject, "time", e->time,
                  "datacontenttype", "application/json", "requestid", e->requestid);
    if (!o)
        return NULL;
    if (e->traceparent[0])
        json_object_set_new(o, "traceparent", json_string(e->traceparent));
    if (e->occurredat[0])
        json_object_set_new(o, "occurredat", json_string(e->occurredat));
    if (e->clientaddr[0])
        json_object_set_new(o, "clientaddr", json_string(e->clientaddr));
    if (e->ifmatch > 0)
        json_object_set_new(o, "ifmatch", json_integer(e->ifmatch));
    if (e->requesthash[0])
        json_object_set_new(o, "requesthash", json_string(e->requesthash));
    json_object_set(o, "data", e->data ? e->data : json_object());
    if (!e->data)
        json_decref(json_object_get(o, "data"));
    s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (s && len)
        *len = strlen(s);
    return s;
}

/* Copies the string member key of o into dst; fails if required and missing, or too long. */
static int copy_str(json_t *o, const char *key, char *dst, size_t dstlen, int required,
                    char *err, size_t errlen)
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
