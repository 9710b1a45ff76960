/* Small helpers for libevent's evhttp shared by ingest, the worker's health port and the
 * devbroker's control port: JSON answers and RFC 9457 problem details. */
#ifndef DIARY_HTTP_H
#define DIARY_HTTP_H

#include <event2/http.h>
#include <jansson.h>

#define PROBLEM_BASE "https://diary.example/problems/"

/* Sends body (stolen; may be NULL for an empty body) as application/json. */
void http_reply_json(struct evhttp_request *req, int status, json_t *body);

/* Sends application/problem+json: type is PROBLEM_BASE + slug, title a fixed sentence for
 * the slug, detail this occurrence; errors (stolen, may be NULL) is the field list. */
void http_reply_problem(struct evhttp_request *req, int status, const char *slug, const char *title,
                        const char *detail, json_t *errors);

/* The reason phrase for status. */
const char *http_reason(int status);

#endif
