#include "http.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

const char *http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

static void send_body(struct evhttp_request *req, int status, const char *ctype, json_t *body)
{
    struct evbuffer *buf = evbuffer_new();
    char *s = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))
                   : NULL;

    if (s) {
        evbuffer_add(buf, s, strlen(s));
        evbuffer_add(buf, "\n", 1);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    }
    evhttp_send_reply(req, status, http_reason(status), buf);
    evbuffer_free(buf);
    free(s);
    json_decref(body);
}

void http_reply_json(struct evhttp_request *req, int status, json_t *body)
{
    send_body(req, status, "application/json", body);
}

void http_reply_problem(struct evhttp_request *req, int status, const char *slug, const char *title,
                        const char *detail, json_t *errors)
{
    char type[160];
    json_t *p;

    snprintf(type, sizeof(type), "%s%s", PROBLEM_BASE, slug);
    p = json_pack("{s:s, s:s, s:i}", "type", type, "title", title, "status", status);
    if (detail)
        json_object_set_new(p, "detail", json_string(detail));
    if (errors)
        json_object_set_new(p, "errors", errors);
    send_body(req, status, "application/problem+json", p);
}
