#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *log_service = "diary";
static enum log_level log_min = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *service, enum log_level min_level)
{
    log_service = service;
    log_min = min_level;
}

enum log_level log_level_parse(const char *s)
{
    for (size_t i = 0; s && i < sizeof(level_names) / sizeof(level_names[0]); i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return (enum log_level)i;
    return LOG_INFO;
}

void log_clock(char out[LOG_TIMELEN])
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[24];
    static _Thread_local size_t cached_len;
    struct timespec ts;
    int ms;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;

        gmtime_r(&ts.tv_sec, &tm);
        cached_len = strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = ts.tv_sec;
    }
    ms = (int)(ts.tv_nsec / 1000000);
    memcpy(out, cached, cached_len);
    out[cached_len] = '.';
    out[cached_len + 1] = (char)('0' + ms / 100);
    out[cached_len + 2] = (char)('0' + ms / 10 % 10);
    out[cached_len + 3] = (char)('0' + ms % 10);
    out[cached_len + 4] = 'Z';
    out[cached_len + 5] = '\0';
}

static void emit(enum log_level lvl, const char *request_id, const char *msg, const char *const *kv)
{
    char when[LOG_TIMELEN];
    json_t *o;
    char *line;

    log_clock(when);
    o = json_pack("{s:s, s:s, s:s, s:s}", "ts", when, "level", level_names[lvl], "svc", log_service,
                  "msg", msg);
    if (!o)
        return;
    if (request_id && *request_id)
        json_object_set_new(o, "request_id", json_string(request_id));
    for (; kv && kv[0] && kv[1]; kv += 2)
        json_object_set_new(o, kv[0], json_string(kv[1]));
    line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!line)
        return;
    /* One fputs per line: stdio's lock keeps lines whole across threads. */
    flockfile(stderr);
    fputs(line, stderr);
    fputc('\n', stderr);
    funlockfile(stderr);
    free(line);
}

void log_write(enum log_level lvl, const char *request_id, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    if (lvl < log_min)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(lvl, request_id, msg, NULL);
}

void log_fields(enum log_level lvl, const char *request_id, const char *msg, const char *const *kv)
{
    if (lvl < log_min)
        return;
    emit(lvl, request_id, msg, kv);
}
