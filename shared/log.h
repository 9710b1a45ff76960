/* JSON-lines logging to stderr: one object per line with ts, level, svc, msg and, when
 * known, the request id that travels with a write from ingest to the worker. */
#ifndef DIARY_LOG_H
#define DIARY_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* The current UTC time with milliseconds, "YYYY-MM-DDTHH:MM:SS.mmmZ" and its NUL: the
 * time of every log line and of every envelope (evt_time_now). The date and time part is
 * formatted only when the second changes (the cache is per thread). */
#define LOG_TIMELEN 40
void log_clock(char out[LOG_TIMELEN]);

/* service names the process in every line; the string must outlive the process. */
void log_init(const char *service, enum log_level min_level);

/* Parses "debug", "info", "warn" or "error"; anything else gives LOG_INFO. */
enum log_level log_level_parse(const char *s);

/* request_id may be NULL. fmt is a printf format for the msg field. */
void log_write(enum log_level lvl, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Like log_write with extra fields: kv is a NULL-terminated list of key, value strings. */
void log_fields(enum log_level lvl, const char *request_id, const char *msg, const char *const *kv);

#define log_debug(rid, ...) log_write(LOG_DEBUG, rid, __VA_ARGS__)
#define log_info(rid, ...)  log_write(LOG_INFO, rid, __VA_ARGS__)
#define log_warn(rid, ...)  log_write(LOG_WARN, rid, __VA_ARGS__)
#define log_error(rid, ...) log_write(LOG_ERROR, rid, __VA_ARGS__)

#endif
