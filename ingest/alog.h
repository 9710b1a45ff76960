/* The access log line of every request, written without building a JSON tree: the same line
 * shared/log.c's log_fields writes ({"ts", "level", "svc", "msg", "request_id", then the
 * fields}, jansson's compact form), for values that need no JSON escape. A value that does
 * (a quote, a backslash, a control or non-ASCII byte) makes alog_format decline, and the
 * caller logs through log_fields, which escapes. Pure; ts comes from log_clock. */
#ifndef INGEST_ALOG_H
#define INGEST_ALOG_H

#include <stddef.h>

/* Formats one log line and its newline into out: ts, level, svc, msg, request_id (left out
 * when rid is NULL or ""), then the NULL-terminated key, value pairs of kv in order. Returns
 * its length, or 0 when a value needs an escape or the line does not fit in outlen. Keys are
 * the caller's own and are written as they are. */
size_t alog_format(char *out, size_t outlen, const char *ts, const char *level, const char *svc,
                   const char *msg, const char *rid, const char *const *kv);

#endif
