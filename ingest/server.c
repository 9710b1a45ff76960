/* The HTTP side of diary-ingest: evhttp set-up and limits, the route table, connection
 * accounting, the request context's lifetime (see ingest.h), authentication, body parsing
 * and validation, and the answers (JSON, problem+json, the access log line, the metrics).
 *
 * libevent 2.1 facts this file is built around:
 * - While a request is with the application, evhttp stops reading its connection, so it
 *   notices a client that went away only when the answer is written. To stop work for a
 *   client that left, a request that goes asynchronous also watches its socket for EOF with
 *   an event of its own (a peek, never a read), and abandons itself when it sees one.
 * - The connection close callback fires when evhttp frees a connection; it releases the
 *   connection's accounting and cancels a request still on it.
 * - evhttp answers a body over its own limit with an HTML 413 before the application sees
 *   it; its limit is therefore set above DIARY_MAX_BODY, and this file answers
 *   problem+json for bodies between the two.
 * - 2.1 has no per-connection callback at accept time, so connections are counted from
 *   their first request; one beyond DIARY_MAX_CONNECTIONS is answered 503 and closed.
 *
 * Per request, the hot path avoids what costs most: the EOF watch (an epoll change to start
 * it and one to stop it) starts only for a request still unanswered EOF_GRACE_MS after its
 * arrival, by the first firing of its deadline timer; the access log line is formatted
 * straight into stderr's buffer (alog.c), which main.c writes out once per loop pass; request
 * structures are reused. */
#include "ingest.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <search.h>
#include <sys/queue.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "alog.h"
#include "http.h"
#include "log.h"
#include "textw.h"
#include "validate.h"

#define MAX_HEADERS_SIZE   16384
#define MIN_POS_WAIT_MS    2000 /* Diary-Min-Position: longest wait for the replica... */
#define REPLICA_WAIT_MS    1000 /* ...or this long, when the primary can answer instead */
#define STATUS_CLIENT_GONE 499  /* logged for requests whose client left (nginx's convention) */
#define EOF_GRACE_MS       50   /* a request unanswered after this long watches for EOF */
#define TOKEN_CACHE_SLOTS  4096 /* verified bearer tokens remembered (~0.9 MiB) */
/* Freed requests kept for reuse. None under AddressSanitizer, so that it still sees every
 * use of a request after its end. */
#if defined(__SANITIZE_ADDRESS__)
#define SPARE_REQS 0
#else
#define SPARE_REQS 1024
#endif

static const struct route routes[] = {
    {ROUTE_POST, "/v1/users", writes_user_create, ROUTE_BODY, "user.register", NULL},
    {ROUTE_POST, "/v1/sessions", reads_session_create, ROUTE_BODY | ROUTE_READ, "session.create",
     NULL},
    {ROUTE_DELETE, "/v1/sessions/current", writes_session_revoke, ROUTE_AUTH, NULL, NULL},
    {ROUTE_GET, "/v1/me", reads_me_get, ROUTE_AUTH | ROUTE_READ, NULL, NULL},
    {ROUTE_PATCH, "/v1/me", writes_me_update, ROUTE_AUTH | ROUTE_BODY, "user.update", NULL},
    {ROUTE_DELETE, "/v1/me", writes_me_delete, ROUTE_AUTH, NULL, NULL},
    {ROUTE_GET, "/v1/me/settings", reads_settings_get, ROUTE_AUTH | ROUTE_READ, NULL, NULL},
    {ROUTE_PUT, "/v1/me/settings", writes_settings_update, ROUTE_AUTH | ROUTE_BODY,
     "settings.update", NULL},
    {ROUTE_GET, "/v1/foods", reads_foods_list, ROUTE_AUTH | ROUTE_READ, NULL, "foods.query"},
    {ROUTE_POST, "/v1/foods", writes_food_create, ROUTE_AUTH | ROUTE_BODY, "food.create", NULL},
    {ROUTE_GET, "/v1/foods/{id}", reads_food_get, ROUTE_AUTH | ROUTE_READ, NULL, NULL},
    {ROUTE_PUT, "/v1/foods/{id}", writes_food_update, ROUTE_AUTH | ROUTE_BODY, "food.create", NULL},
    {ROUTE_DELETE, "/v1/foods/{id}", writes_food_delete, ROUTE_AUTH, NULL, NULL},
    {ROUTE_GET, "/v1/diary", reads_days_list, ROUTE_AUTH | ROUTE_READ, NULL, "date.range"},
    {ROUTE_POST, "/v1/diary/batch", batch_post, ROUTE_AUTH | ROUTE_BODY, "diary.batch", NULL},
    {ROUTE_GET, "/v1/diary/{date}", reads_day_get, ROUTE_AUTH | ROUTE_READ, NULL, NULL},
    {ROUTE_PUT, "/v1/diary/{date}/{meal}/{food_id}", writes_entry_set,
     ROUTE_AUTH | ROUTE_BODY | ROUTE_NUMBERS, "diary.entry.set", NULL},
    {ROUTE_DELETE, "/v1/diary/{date}/{meal}/{food_id}", writes_entry_remove, ROUTE_AUTH, NULL,
     NULL},
    {ROUTE_GET, "/v1/weights", reads_weights_list, ROUTE_AUTH | ROUTE_READ, NULL, "date.range"},
    {ROUTE_PUT, "/v1/weights/{date}", writes_weight_set, ROUTE_AUTH | ROUTE_BODY | ROUTE_NUMBERS,
     "weight.set", NULL},
    {ROUTE_DELETE, "/v1/weights/{date}", writes_weight_remove, ROUTE_AUTH, NULL, NULL},
    {ROUTE_GET, "/v1/events/{id}", reads_event_get, ROUTE_AUTH | ROUTE_READ, NULL, NULL},
    {ROUTE_GET, "/healthz", ops_healthz, 0, NULL, NULL},
    {ROUTE_GET, "/readyz", ops_readyz, 0, NULL, NULL},
    {ROUTE_GET, "/metrics", ops_metrics, 0, NULL, NULL},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* The schemas the table names, resolved once at start (server_check_schemas); path
 * parameters are checked by name with the rules of the schema "path". */
static const struct vschema *body_schemas[NROUTES], *query_schemas[NROUTES], *path_schema;

/* Fixed titles per problem type (RFC 9457: the title does not change between occurrences). */
static const struct {
    const char *slug;
    const char *title;
} problem_titles[] = {
    {"validation", "Your request is not valid."},
    {"malformed-json", "The request body is not valid JSON."},
    {"unauthorized", "Authentication is required."},
    {"not-found", "The resource was not found."},
    {"method-not-allowed", "The method is not allowed on this resource."},
    {"payload-too-large", "The request body is too large."},
    {"unsupported-media-type", "The request body must be application/json."},
    {"conflict", "The request conflicts with the current state."},
    {"version-mismatch", "The resource has changed since it was read."},
    {"unavailable", "The service is unavailable; try again later."},
    {"timeout", "The request did not complete in time."},
    {"replica-behind", "The read replica has not caught up with your write yet."},
    {"apply-behind", "The apply is too far behind; try again later."},
    {"idempotency-key-reused", "The Idempotency-Key was used before with another request."},
    {"rejected", "The write was rejected."},
    {"internal", "Internal error."},
};

static char route_label_buf[NROUTES][96];
static const char *route_labels[NROUTES];

struct conn {
    struct evhttp_connection *evcon;
    struct ingest *app;
    struct req *current; /* the request being served on it, if any */
};

static void finish(struct req *r, int status);

/* Copies src into dst (size bytes), cut short if need be: snprintf's "%s" without its cost. */
static void copy_text(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;

    if (n)
        memmove(dst, src, n);
    dst[n] = '\0';
}

/* The decimal digits of v >= 0 at the end of buf[BUFLEN]; returns where they start. */
static char *digits_of(uint64_t v, char *end)
{
    *--end = '\0';
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

int64_t ingest_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- request lifetime ------------------------------------------------------------------ */

bool req_live(const struct req *r)
{
    return !r->answered;
}

void req_hold(struct req *r)
{
    r->refs++;
}

/* Puts a finished request on the graveyard; the reaper frees it after this loop pass. */
static void maybe_bury(struct req *r)
{
    struct ingest *app = r->app;

    if (!r->answered || r->refs > 0 || r->buried)
        return;
    r->buried = true;
    r->grave_next = app->graveyard;
    app->graveyard = r;
    event_active(app->reaper, EV_TIMEOUT, 0);
}

void req_release(struct req *r)
{
    if (r->refs <= 0) {
        log_error(r->rid, "request reference count underflow");
        fflush(stderr); /* the log is buffered: see main.c */
        abort();
    }
    r->refs--;
    maybe_bury(r);
}

/* A zeroed request, reused from the spares when there is one; NULL on ENOMEM. */
static struct req *req_alloc(struct ingest *app)
{
    struct req *r = app->spare;

    if (!r)
        return calloc(1, sizeof(*r));
    app->spare = r->grave_next;
    app->nspare--;
    memset(r, 0, sizeof(*r));
    return r;
}

/* Frees what the request owns, then keeps it as a spare or frees it. */
static void req_free(struct req *r)
{
    struct ingest *app = r->app;

    if (r->has_deadline)
        event_del(&r->deadline_ev);
    if (r->has_eof)
        event_del(&r->eof_ev);
    if (r->retry_ev)
        event_free(r->retry_ev);
    /* A request evhttp detached from a dead connection is ours; freeing it is all that is
     * left to do with it. */
    if (r->ev && r->ev_detached)
        evhttp_request_free(r->ev);
    json_decref(r->body);
    json_decref(r->query);
    batch_free(r->batch);
    json_decref(r->w.data);
    free(r->w.value);
    app->nreqs--;
    if (app->nspare < SPARE_REQS) {
        r->grave_next = app->spare;
        app->spare = r;
        app->nspare++;
        return;
    }
    free(r);
}

void server_reap(struct ingest *app)
{
    struct req *r;

    while ((r = app->graveyard) != NULL) {
        app->graveyard = r->grave_next;
        req_free(r);
    }
}

static void reaper_cb(evutil_socket_t fd, short what, void *arg)
{
    server_reap(arg);
}

/* Stops everything the request owns that could still call back into it. */
static void disarm(struct req *r)
{
    if (r->has_deadline)
        event_del(&r->deadline_ev);
    if (r->has_eof)
        event_del(&r->eof_ev);
    if (r->retry_ev)
        event_del(r->retry_ev);
    if (r->waiting_on && replwait_remove(r->waiting_on, &r->wnode)) {
        /* Its callback will not run: drop the reference it held (the caller buries). */
        r->wait_cb = NULL;
        r->waiting_on = NULL;
        r->refs--;
    }
}

static void unlink_live(struct req *r)
{
    struct ingest *app = r->app;

    if (r->prev)
        r->prev->next = r->next;
    else
        app->live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    app->nlive--;
}

/* Writes the access log line: formatted straight into stderr's buffer when no value needs
 * a JSON escape (the usual case), else through log_fields. */
static void access_log(struct req *r, const char *const *kv)
{
    char ts[LOG_TIMELEN], line[2048];
    size_t n;

    if (r->app->log_min > LOG_INFO)
        return;
    log_clock(ts);
    n = alog_format(line, sizeof(line), ts, "info", "diary-ingest", "request", r->rid, kv);
    if (n)
        fwrite(line, 1, n, stderr);
    else
        log_fields(LOG_INFO, r->rid, "request", kv);
}

/* The decimal form of a non-negative count of microseconds in milliseconds with three
 * decimals, as printf's "%.3f" of us / 1000.0 prints it. */
static void format_ms(int64_t us, char *out, size_t outlen)
{
    char buf[32], *p;
    int frac;

    if (us < 0)
        us = 0;
    frac = (int)(us % 1000);
    p = digits_of((uint64_t)us / 1000, buf + sizeof(buf) - 4);
    buf[sizeof(buf) - 5] = '.';
    buf[sizeof(buf) - 4] = (char)('0' + frac / 100);
    buf[sizeof(buf) - 3] = (char)('0' + frac / 10 % 10);
    buf[sizeof(buf) - 2] = (char)('0' + frac % 10);
    buf[sizeof(buf) - 1] = '\0';
    copy_text(out, outlen, p);
}

/* The request is answered (or given up): log it, count it, and let it go once no operation
 * refers to it any more. */
static void finish(struct req *r, int status)
{
    char st[8], dur[32];
    const char *kv[13];
    int i = 0;

    r->answered = true;
    r->status = status;
    r->ev = r->ev_detached ? r->ev : NULL;
    disarm(r);
    if (r->conn) {
        r->conn->current = NULL;
        r->conn = NULL;
    }
    unlink_live(r);
    copy_text(st, sizeof(st), digits_of((uint64_t)(status > 0 ? status : 0), st + sizeof(st)));
    format_ms(ingest_now_us() - r->start_us, dur, sizeof(dur));
    kv[i++] = "method", kv[i++] = r->method;
    kv[i++] = "path", kv[i++] = r->path;
    kv[i++] = "status", kv[i++] = st;
    kv[i++] = "duration_ms", kv[i++] = dur;
    kv[i++] = "peer", kv[i++] = r->peer;
    if (r->user[0])
        kv[i++] = "user_id", kv[i++] = r->user;
    kv[i] = NULL;
    access_log(r, kv);
    counters_request(r->app->stats, r->route ? r->route_idx : NROUTES, status);
    maybe_bury(r);
}

/* The client went away or its connection is being freed: answer nobody, free what waits. */
static void abandon(struct req *r, const char *why)
{
    if (r->answered)
        return;
    r->cancelled = true;
    log_info(r->rid, "request abandoned: %s", why);
    if (r->ev && !r->ev_detached) {
        /* Still on its connection: hand it back to evhttp with an answer nobody reads, and
         * have the connection closed after it. */
        evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Connection", "close");
        evhttp_send_reply(r->ev, STATUS_CLIENT_GONE, "Client Closed Request", NULL);
        r->ev = NULL;
    }
    finish(r, STATUS_CLIENT_GONE);
}

/* ---- connections ----------------------------------------------------------------------- */

static int conn_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct conn *)a)->evcon,
              y = (uintptr_t)((const struct conn *)b)->evcon;
    return x < y ? -1 : x > y;
}

static void conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
    struct conn *c = arg;
    struct ingest *app = c->app;
    struct req *r = c->current;

    evhttp_connection_set_closecb(evcon, NULL, NULL);
    tdelete(c, &app->conns, conn_cmp);
    app->nconns--;
    if (r) {
        c->current = NULL;
        r->conn = NULL;
        if (r->ev) {
            /* evhttp frees a request still queued on the connection right after this
             * callback; one it already detached (its client failed) is left to us. */
            if (evhttp_request_get_connection(r->ev) == NULL)
                r->ev_detached = true;
            else
                r->ev = NULL;
        }
        abandon(r, "the connection closed");
    }
    free(c);
}

/* The connection's record, made on its first request; *fresh tells. NULL on ENOMEM. */
static struct conn *conn_get(struct ingest *app, struct evhttp_connection *evcon, bool *fresh)
{
    struct conn key = {.evcon = evcon}, *c, **found;

    *fresh = false;
    found = tfind(&key, &app->conns, conn_cmp);
    if (found)
        return *found;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->evcon = evcon;
    c->app = app;
    if (!tsearch(c, &app->conns, conn_cmp)) {
        free(c);
        return NULL;
    }
    app->nconns++;
    *fresh = true;
    evhttp_connection_set_closecb(evcon, conn_close_cb, c);
    return c;
}

/* ---- answers --------------------------------------------------------------------------- */

/* The headers ingest reads, in the order of enum req_hdr, spelt as evhttp_find_header would
 * be asked for them; and their lengths (server_setup), so that a header of the request is
 * compared only with the names of its own length. */
static const char *const known_headers[REQ_KNOWN_HEADERS] = {
    [REQ_HDR_PREFER] = "Prefer",
    [REQ_HDR_IF_MATCH] = "If-Match",
    [REQ_HDR_TRACEPARENT] = "traceparent",
    [REQ_HDR_CONTENT_TYPE] = "Content-Type",
    [REQ_HDR_REQUEST_ID] = "X-Request-Id",
    [REQ_HDR_AUTHORIZATION] = "Authorization",
    [REQ_HDR_CONTENT_LENGTH] = "Content-Length",
    [REQ_HDR_IDEMPOTENCY_KEY] = "Idempotency-Key",
    [REQ_HDR_OCCURRED_AT] = "Diary-Occurred-At",
    [REQ_HDR_MIN_POSITION] = "Diary-Min-Position",
};
static size_t known_header_lens[REQ_KNOWN_HEADERS];

/* evutil_ascii_strcasecmp's equality for n bytes: ASCII letters compared without case. */
static bool ascii_case_equal(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + ('a' - 'A'));
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + ('a' - 'A'));
        if (x != y)
            return false;
    }
    return true;
}

/* One pass over the request's headers: the first value of each known one, as
 * evhttp_find_header would find it. */
static void scan_headers(struct req *r)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(r->ev);
    struct evkeyval *h;
    int found = 0;

    r->hdr_scanned = true;
    TAILQ_FOREACH(h, in, next)
    {
        size_t n = strlen(h->key);

        for (int i = 0; i < REQ_KNOWN_HEADERS; i++) {
            if (known_header_lens[i] != n || r->hdrv[i] ||
                !ascii_case_equal(known_headers[i], h->key, n))
                continue;
            r->hdrv[i] = h->value;
            found++;
            break;
        }
        if (found == REQ_KNOWN_HEADERS)
            break;
    }
}

const char *req_header(const struct req *r, enum req_hdr which)
{
    struct req *m = (struct req *)r; /* the scan is a cache: the request does not change */

    if (!r->ev || (unsigned)which >= REQ_KNOWN_HEADERS)
        return NULL;
    if (!r->hdr_scanned)
        scan_headers(m);
    return r->hdrv[which];
}

void req_add_header(struct req *r, const char *name, const char *value)
{
    if (r->ev && !r->answered)
        evhttp_add_header(evhttp_request_get_output_headers(r->ev), name, value);
}

static bool reply_begin(struct req *r)
{
    struct evkeyvalq *out;

    if (r->answered || !r->ev)
        return false;
    out = evhttp_request_get_output_headers(r->ev);
    evhttp_add_header(out, "X-Request-Id", r->rid);
    if (r->app->draining)
        evhttp_add_header(out, "Connection", "close");
    return true;
}

/* The Date header's text for now, made once a second with libevent's own formatter. */
static const char *http_date(void)
{
    static time_t made_at = -1;
    static char text[64];
    time_t now = time(NULL);

    if (now != made_at) {
        struct tm tm;

        gmtime_r(&now, &tm);
        evutil_date_rfc1123(text, sizeof(text), &tm);
        made_at = now;
    }
    return text;
}

/* libevent ends the headers of an HTTP/1.1 answer that has a body with Date and then
 * Content-Length, each unless the answer has it already, formatting both for every answer
 * (gmtime and snprintf). They are added here, last, with the same text and in the same order,
 * so the bytes on the wire are the same and libevent finds them there. The rules of
 * evhttp_make_header_response are kept: other answers (HTTP/1.0, HEAD, 1xx, 204, 304) are left
 * to libevent. Reading the version needs http_struct.h: 2.1 has no getter for it. */
static void add_framing_headers(struct req *r, int status)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->ev);
    char len[24];
    struct textw w;

    if (r->ev->major != 1 || r->ev->minor < 1 ||
        evhttp_request_get_command(r->ev) == EVHTTP_REQ_HEAD || status == 204 || status == 304 ||
        (status >= 100 && status < 200))
        return;
    evhttp_add_header(out, "Date", http_date());
    textw_init(&w, len, sizeof(len));
    textw_u64(&w, evbuffer_get_length(evhttp_request_get_output_buffer(r->ev)));
    if (textw_done(&w) > 0)
        evhttp_add_header(out, "Content-Length", len);
}

void req_reply_text(struct req *r, int status, const char *ctype, const char *body, size_t len)
{
    if (!reply_begin(r))
        return;
    if (body)
        evbuffer_add(evhttp_request_get_output_buffer(r->ev), body, len);
    if (ctype)
        evhttp_add_header(evhttp_request_get_output_headers(r->ev), "Content-Type", ctype);
    add_framing_headers(r, status);
    evhttp_send_reply(r->ev, status, http_reason(status), NULL);
    finish(r, status);
}

/* Like shared/http.c's http_reply_json, but numbers print with 15 significant digits so
 * that 25.4 reads "25.4" rather than "25.399999999999999". */
void req_reply(struct req *r, int status, json_t *body)
{
    char *s = body && !r->answered
                  ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))
                  : NULL;

    json_decref(body);
    if (s) {
        size_t n = strlen(s);
        s[n] = '\n'; /* json_dumps leaves room: the NUL becomes the final newline */
        req_reply_text(r, status, "application/json", s, n + 1);
    } else {
        req_reply_text(r, status, NULL, NULL, 0);
    }
    free(s);
}

static const char *title_for(const char *slug)
{
    for (size_t i = 0; i < sizeof(problem_titles) / sizeof(problem_titles[0]); i++)
        if (strcmp(problem_titles[i].slug, slug) == 0)
            return problem_titles[i].title;
    return http_reason(500);
}

void req_problem_titled(struct req *r, int status, const char *slug, const char *title,
                        const char *detail)
{
    if (!reply_begin(r))
        return;
    http_reply_problem(r->ev, status, slug, title ? title : title_for(slug), detail, NULL);
    finish(r, status);
}

void req_problem(struct req *r, int status, const char *slug, const char *detail, json_t *errors)
{
    if (!reply_begin(r)) {
        json_decref(errors);
        return;
    }
    http_reply_problem(r->ev, status, slug, title_for(slug), detail, errors);
    finish(r, status);
}

void req_invalid(struct req *r, const char *field, const char *message)
{
    json_t *errors = json_array();

    validate_add_error(errors, field, message);
    req_problem(r, 422, "validation", "a field is not valid", errors);
}

void req_unavailable(struct req *r, const char *detail)
{
    req_add_header(r, "Retry-After", "1");
    req_problem(r, 503, "unavailable", detail, NULL);
}

void req_not_found(struct req *r)
{
    req_problem(r, 404, "not-found", "no such resource", NULL);
}

const char *req_problem_slug(const char *type)
{
    if (!type || !*type)
        return "rejected";
    if (strncmp(type, PROBLEM_BASE, strlen(PROBLEM_BASE)) == 0)
        return type + strlen(PROBLEM_BASE);
    return type;
}

/* ---- async helpers --------------------------------------------------------------------- */

static void query_done(PGresult *res, const char *err, void *arg)
{
    struct req *r = arg;
    req_query_cb cb = r->query_cb;

    r->query_cb = NULL;
    if (req_live(r))
        cb(r, res, err);
    req_release(r);
}

int req_query(struct req *r, const char *sql, int nparams, const char *const *params,
              req_query_cb cb)
{
    /* The query's own deadline comes a little before the request's, so that a slow replica
     * answers 503 from the handler rather than 504 from the request timer. A pool with no
     * connection up refuses at once: readiness says the same. */
    int64_t left = r->deadline_ms - replwait_now_ms() - 50;

    if (!pgpool_ready(r->app->pg))
        return -1;
    if (left < 50)
        left = 50;
    r->query_cb = cb;
    req_hold(r);
    if (pgpool_query_timeout(r->from_primary ? r->app->primary : r->app->pg, sql, nparams, params,
                             (int)left, query_done, r) != 0) {
        r->query_cb = NULL;
        req_release(r);
        return -1;
    }
    return 0;
}

static void hash_done(void *arg, enum hashpool_status st, const char *hash)
{
    struct req *r = arg;
    req_hash_cb cb = r->hash_cb;

    r->hash_cb = NULL;
    if (req_live(r))
        cb(r, st, hash);
    req_release(r);
}

int req_hash(struct req *r, const char *pw, req_hash_cb cb)
{
    r->hash_cb = cb;
    req_hold(r);
    if (hashpool_hash(r->app->hash, pw, hash_done, r) != 0) {
        r->hash_cb = NULL;
        req_release(r);
        return -1;
    }
    return 0;
}

int req_verify(struct req *r, const char *hash, const char *pw, req_hash_cb cb)
{
    r->hash_cb = cb;
    req_hold(r);
    if (hashpool_verify(r->app->hash, hash, pw, hash_done, r) != 0) {
        r->hash_cb = NULL;
        req_release(r);
        return -1;
    }
    return 0;
}

static void wait_done(struct replwait_node *n, enum replwait_status st)
{
    struct req *r = (struct req *)(void *)((char *)n - offsetof(struct req, wnode));
    req_wait_cb cb = r->wait_cb;

    r->wait_cb = NULL;
    r->waiting_on = NULL;
    if (req_live(r))
        cb(r, st);
    req_release(r);
}

static void wait_on(struct req *r, replwait_t *w, const struct position *pos, int64_t deadline_ms,
                    req_wait_cb cb)
{
    r->wnode.partition = pos->partition;
    r->wnode.offset = pos->offset;
    r->wnode.deadline_ms = deadline_ms;
    r->wnode.cb = wait_done;
    r->wait_cb = cb;
    r->waiting_on = w;
    req_hold(r);
    replwait_add(w, &r->wnode);
}

void req_wait(struct req *r, const struct position *pos, int64_t deadline_ms, req_wait_cb cb)
{
    wait_on(r, r->app->wait, pos, deadline_ms, cb);
}

json_t *pgval_number(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return json_null();
    return json_real(strtod(PQgetvalue(res, row, col), NULL));
}

json_t *pgval_integer(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return json_null();
    return json_integer(strtoll(PQgetvalue(res, row, col), NULL, 10));
}

json_t *pgval_string(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return json_null();
    return json_string(PQgetvalue(res, row, col));
}

/* ---- dispatch -------------------------------------------------------------------------- */

static void watch_eof(struct req *r);

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct req *r = arg;
    int64_t left = r->deadline_ms - replwait_now_ms();
    char detail[96];

    if (!r->grace_over) {
        /* The first firing: the request is slow enough to be worth watching for EOF. */
        r->grace_over = true;
        watch_eof(r);
        if (left > 0) {
            struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
            if (evtimer_add(&r->deadline_ev, &tv) == 0)
                return;
        }
    }

    snprintf(detail, sizeof(detail), "no answer within %ld ms; a write may still be applied",
             r->app->cfg.req_timeout_ms);
    log_warn(r->rid, "request deadline passed");
    req_problem(r, 504, "timeout", detail, NULL);
}

/* Peeks at the socket of a request that waits: EOF or an error means the client left. Bytes
 * (a pipelined request) mean it is still there, and end the watch. */
static void eof_cb(evutil_socket_t fd, short what, void *arg)
{
    struct req *r = arg;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

    if (n > 0)
        return;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(&r->eof_ev, NULL);
        return;
    }
    abandon(r, n == 0 ? "the client closed the connection" : strerror(errno));
}

static void watch_eof(struct req *r)
{
    struct evhttp_connection *evcon = r->ev ? evhttp_request_get_connection(r->ev) : NULL;
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;

    if (fd < 0 || r->has_eof)
        return;
    if (event_assign(&r->eof_ev, r->app->base, fd, EV_READ, eof_cb, r) != 0)
        return;
    r->has_eof = true;
    event_add(&r->eof_ev, NULL);
}

static bool authenticate(struct req *r)
{
    const char *tok = hdr_bearer(req_header(r, REQ_HDR_AUTHORIZATION));
    const char *detail = "an Authorization: Bearer token is required";

    if (tok) {
        switch (tokcache_verify(r->app->tokens, tok, (int64_t)time(NULL), &r->claims)) {
        case TOKEN_OK:
            switch (revoke_check(r->app->revoke, &r->claims)) {
            case REVOKE_OK:
                uuid_format(&r->claims.user_id, r->user);
                return true;
            case REVOKE_SESSION:
                detail = "the token was revoked: its session logged out";
                break;
            case REVOKE_PASSWORD:
                detail = "the token was revoked: the password changed since; log in again";
                break;
            case REVOKE_USER:
                detail = "the account no longer exists";
                break;
            }
            break;
        case TOKEN_EXPIRED:
            detail = "the token has expired";
            break;
        default:
            detail = "the token is not valid";
            break;
        }
    }
    req_add_header(r, "WWW-Authenticate",
                   tok ? "Bearer realm=\"diary\", error=\"invalid_token\""
                       : "Bearer realm=\"diary\"");
    req_problem(r, 401, "unauthorized", detail, NULL);
    return false;
}

static void primary_reached(struct req *r, enum replwait_status st)
{
    if (st == REPLWAIT_REACHED) {
        r->from_primary = true;
        r->app->primary_reads++;
        r->route->handler(r);
        return;
    }
    req_add_header(r, "Retry-After", "1");
    req_problem(r, 503, "replica-behind",
                "the database has not applied Diary-Min-Position yet; retry shortly", NULL);
}

/* The replica has the position, or did not get it in time: then the primary answers, once it
 * has applied the position itself (the worker may be behind too), within what is left of the
 * wait. Without a primary, 503. */
static void min_position_reached(struct req *r, enum replwait_status st)
{
    int64_t until = r->wnode.deadline_ms - REPLICA_WAIT_MS + MIN_POS_WAIT_MS;
    struct position pos = {r->wnode.partition, r->wnode.offset};

    if (st == REPLWAIT_REACHED) {
        r->route->handler(r);
        return;
    }
    if (st == REPLWAIT_TIMEOUT && r->app->primary_wait) {
        if (until > r->deadline_ms - 100)
            until = r->deadline_ms - 100;
        wait_on(r, r->app->primary_wait, &pos, until, primary_reached);
        return;
    }
    req_add_header(r, "Retry-After", "1");
    req_problem(r, 503, "replica-behind",
                "the read replica has not applied Diary-Min-Position yet; retry shortly", NULL);
}

/* True when the body is within DIARY_MAX_BODY, by its Content-Length and by what arrived. */
static bool body_size_ok(struct req *r)
{
    const char *cl = req_header(r, REQ_HDR_CONTENT_LENGTH);
    size_t have = evbuffer_get_length(evhttp_request_get_input_buffer(r->ev));

    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (*end == '\0' && n > (unsigned long long)r->app->cfg.max_body)
            return false;
    }
    return have <= (size_t)r->app->cfg.max_body;
}

/* Appends the errors of more (stolen, may be NULL) to *errors, made on first need. */
static void add_errors(json_t **errors, json_t *more)
{
    if (!more)
        return;
    if (!*errors)
        *errors = json_array();
    json_array_extend(*errors, more);
    json_decref(more);
}

/* True when the path parameter passes its rule for certain without building the JSON that
 * validate_body checks: a UUID, a date or a choice whose value is one. Anything else (another
 * kind, a value that fails) goes through validate_body, which words the error. */
static bool path_param_ok(const char *name, const char *value)
{
    const struct vrule *rule = validate_rule(path_schema, name);

    if (!rule)
        return false;
    switch (rule->kind) {
    case V_UUID:
        return uuid_valid(value);
    case V_DATE:
        return validate_date(value);
    case V_ENUM:
        for (size_t i = 0; i < rule->choice_count; i++)
            if (strcmp(rule->choices[i], value) == 0)
                return true;
        return false;
    default:
        return false;
    }
}

/* The name of path parameter i, NUL-terminated in name (cut short if need be). */
static void param_name(const struct req *r, int i, char name[32])
{
    size_t n = r->params.namelens[i] < 31 ? r->params.namelens[i] : 31;

    memcpy(name, r->params.names[i], n);
    name[n] = '\0';
}

/* The path parameters' errors (a new array), NULL when they are valid. */
static json_t *path_errors(const struct req *r)
{
    json_t *params, *errs;
    bool all_ok = true;
    char name[32];

    for (int i = 0; i < r->params.count && all_ok; i++) {
        param_name(r, i, name);
        all_ok = path_param_ok(name, r->params.values[i]);
    }
    if (all_ok)
        return NULL;
    params = json_object();
    for (int i = 0; i < r->params.count; i++) {
        param_name(r, i, name);
        json_object_set_new(params, name, json_string(r->params.values[i]));
    }
    errs = validate_body(path_schema, params);
    json_decref(params);
    return errs;
}

static void dispatch(struct req *r)
{
    const struct route *rt = r->route;
    json_t *errors = NULL;

    if ((rt->flags & ROUTE_BODY) && !body_size_ok(r)) {
        char detail[96];
        snprintf(detail, sizeof(detail), "the body may be at most %ld bytes", r->app->cfg.max_body);
        req_problem(r, 413, "payload-too-large", detail, NULL);
        return;
    }
    if ((rt->flags & ROUTE_AUTH) && !authenticate(r))
        return;

    if (r->params.count > 0)
        add_errors(&errors, path_errors(r));
    {
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r->ev);
        const char *q = uri ? evhttp_uri_get_query(uri) : NULL;

        if (query_schemas[r->route_idx]) {
            add_errors(&errors, validate_query(query_schemas[r->route_idx], q, &r->query));
        } else if (q && *q) {
            json_t *qerrs = json_array();
            validate_add_error(qerrs, "query", "this resource takes no query parameters");
            add_errors(&errors, qerrs);
        }
    }

    if (rt->flags & ROUTE_BODY) {
        struct evbuffer *in = evhttp_request_get_input_buffer(r->ev);
        size_t len = evbuffer_get_length(in);
        const char *data = len ? (const char *)evbuffer_pullup(in, -1) : "";
        json_error_t jerr;
        json_t *verrs;

        if (!hdr_json_content_type(req_header(r, REQ_HDR_CONTENT_TYPE))) {
            json_decref(errors);
            req_problem(r, 415, "unsupported-media-type", "send the body as application/json",
                        NULL);
            return;
        }
        /* The usual body of a numbers-only route, valid, is read without a tree; anything
         * else (also when other parts already failed) takes the general path, which accepts
         * or explains. */
        if ((rt->flags & ROUTE_NUMBERS) && json_array_size(errors) == 0 &&
            validate_numbers(body_schemas[r->route_idx], data, len, r->nums, &r->nnums)) {
            r->app->numbers_fast++;
            goto validated;
        }
        r->body = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!r->body) {
            char detail[256];
            snprintf(detail, sizeof(detail), "line %d, column %d: %s", jerr.line, jerr.column,
                     jerr.text);
            json_decref(errors);
            req_problem(r, 400, "malformed-json", detail, NULL);
            return;
        }
        verrs = validate_body(body_schemas[r->route_idx], r->body);
        add_errors(&errors, verrs);
    }
validated:
    if (json_array_size(errors) > 0) {
        req_problem(r, 422, "validation", "one or more fields are not valid", errors);
        return;
    }
    json_decref(errors);

    if (rt->flags & ROUTE_READ) {
        const char *mp = req_header(r, REQ_HDR_MIN_POSITION);
        struct position pos;

        if (mp) {
            int64_t until =
                replwait_now_ms() + (r->app->primary_wait ? REPLICA_WAIT_MS : MIN_POS_WAIT_MS);

            if (position_parse(mp, &pos) != 0) {
                req_invalid(r, "Diary-Min-Position", "must be a position PARTITION:OFFSET");
                return;
            }
            if (until > r->deadline_ms - 100)
                until = r->deadline_ms - 100;
            req_wait(r, &pos, until, min_position_reached);
            return;
        }
    }
    rt->handler(r);
}

static unsigned method_bit(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return ROUTE_GET;
    case EVHTTP_REQ_POST:
        return ROUTE_POST;
    case EVHTTP_REQ_PUT:
        return ROUTE_PUT;
    case EVHTTP_REQ_PATCH:
        return ROUTE_PATCH;
    case EVHTTP_REQ_DELETE:
        return ROUTE_DELETE;
    default:
        return 0;
    }
}

static const char *method_text(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    default:
        return route_method_name(method_bit(cmd));
    }
}

static void request_id(struct req *r)
{
    const char *given = req_header(r, REQ_HDR_REQUEST_ID);
    uint8_t raw[16];
    struct textw w;

    if (hdr_request_id_ok(given)) {
        copy_text(r->rid, sizeof(r->rid), given);
        return;
    }
    /* 32 hex digits fit r->rid (HDR_REQUEST_ID_MAX). */
    randombytes_buf(raw, sizeof(raw));
    textw_init(&w, r->rid, sizeof(r->rid));
    textw_hex(&w, raw, sizeof(raw));
    textw_done(&w);
}

static void request_cb(struct evhttp_request *ev, void *arg)
{
    struct ingest *app = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    struct req *r = req_alloc(app);
    unsigned allow = 0;
    bool fresh;
    char *peer = NULL;
    ev_uint16_t port = 0;

    if (!r) {
        evhttp_send_error(ev, 503, NULL);
        return;
    }
    r->app = app;
    r->ev = ev;
    r->start_us = ingest_now_us();
    r->deadline_ms = replwait_now_ms() + app->cfg.req_timeout_ms;
    app->nreqs++;
    app->nlive++;
    r->next = app->live;
    if (app->live)
        app->live->prev = r;
    app->live = r;
    req_hold(r); /* dispatch's own reference, released at the end of this function */

    request_id(r);
    copy_text(r->method, sizeof(r->method), method_text(evhttp_request_get_command(ev)));
    copy_text(r->path, sizeof(r->path), path ? path : "");
    if (evcon) {
        evhttp_connection_get_peer(evcon, &peer, &port);
        copy_text(r->peer, sizeof(r->peer), peer ? peer : "");
    }

    r->conn = evcon ? conn_get(app, evcon, &fresh) : NULL;
    if (!r->conn) {
        req_unavailable(r, "out of memory");
        goto out;
    }
    r->conn->current = r;
    if (fresh && app->nconns > app->cfg.max_conns) {
        counters_refused(app->stats);
        req_add_header(r, "Connection", "close");
        req_unavailable(r, "too many connections");
        goto out;
    }
    if (app->draining) {
        req_unavailable(r, "the server is shutting down");
        goto out;
    }
    if (!path || strlen(path) >= sizeof(r->path)) {
        req_problem(r, 404, "not-found", "no such resource", NULL);
        goto out;
    }

    switch (route_find(routes, NROUTES, method_bit(evhttp_request_get_command(ev)), path, &r->route,
                       &r->params, &allow)) {
    case ROUTE_NO_PATH:
        req_problem(r, 404, "not-found", "no such resource", NULL);
        goto out;
    case ROUTE_NO_METHOD: {
        char allowed[64], detail[128];
        route_allow_header(allow, allowed, sizeof(allowed));
        snprintf(detail, sizeof(detail), "%s is not allowed here; allowed: %s", r->method, allowed);
        req_add_header(r, "Allow", allowed);
        req_problem(r, 405, "method-not-allowed", detail, NULL);
        goto out;
    }
    case ROUTE_FOUND:
        break;
    }
    r->route_idx = (size_t)(r->route - routes);

    /* The timer fires first when the EOF grace is over, then at the deadline. */
    if (evtimer_assign(&r->deadline_ev, app->base, deadline_cb, r) != 0 ||
        evtimer_add(&r->deadline_ev, app->first_tv) != 0) {
        req_unavailable(r, "out of memory");
        goto out;
    }
    r->has_deadline = true;
    dispatch(r);
out:
    req_release(r);
}

/* ---- set-up and shutdown --------------------------------------------------------------- */

int server_check_schemas(char *err, size_t errlen)
{
    path_schema = validate_schema("path");
    if (!path_schema) {
        snprintf(err, errlen, "the API rules have no schema \"path\"");
        return -1;
    }
    for (size_t i = 0; i < NROUTES; i++) {
        body_schemas[i] = routes[i].schema ? validate_schema(routes[i].schema) : NULL;
        query_schemas[i] = routes[i].query ? validate_schema(routes[i].query) : NULL;
        if ((routes[i].schema && !body_schemas[i]) || (routes[i].query && !query_schemas[i])) {
            snprintf(err, errlen, "route %s %s names schema %s, which the API rules lack",
                     route_method_name(routes[i].method), routes[i].pattern,
                     routes[i].schema && !body_schemas[i] ? routes[i].schema : routes[i].query);
            return -1;
        }
    }
    return 0;
}

void server_list_routes(FILE *out)
{
    for (size_t i = 0; i < NROUTES; i++)
        fprintf(out, "%s\t%s\t%s\t%s\t%s\n", route_method_name(routes[i].method), routes[i].pattern,
                routes[i].flags & ROUTE_AUTH ? "auth" : "-",
                routes[i].schema ? routes[i].schema : "-", routes[i].query ? routes[i].query : "-");
}

int server_setup(struct ingest *app, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    long hard_body = app->cfg.max_body * 4;

    if (server_check_schemas(err, errlen) != 0)
        return -1;
    for (int i = 0; i < REQ_KNOWN_HEADERS; i++)
        known_header_lens[i] = strlen(known_headers[i]);
    for (size_t i = 0; i < NROUTES; i++) {
        snprintf(route_label_buf[i], sizeof(route_label_buf[i]), "%s %s",
                 route_method_name(routes[i].method), routes[i].pattern);
        route_labels[i] = route_label_buf[i];
    }
    app->stats = counters_new(route_labels, NROUTES);
    app->reaper = event_new(app->base, -1, 0, reaper_cb, app);
    app->http = evhttp_new(app->base);
    app->tokens = tokcache_new(app->cfg.token_key, TOKEN_CACHE_SLOTS);
    if (!app->stats || !app->reaper || !app->http || !app->tokens) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    {
        long first_ms =
            app->cfg.req_timeout_ms < EOF_GRACE_MS ? app->cfg.req_timeout_ms : EOF_GRACE_MS;
        struct timeval tv = {first_ms / 1000, (first_ms % 1000) * 1000};

        app->first_tv = event_base_init_common_timeout(app->base, &tv);
        if (!app->first_tv) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    /* evhttp's own limit is a backstop above ours: see the comment at the top. */
    if (hard_body < app->cfg.max_body + 65536)
        hard_body = app->cfg.max_body + 65536;
    evhttp_set_max_body_size(app->http, hard_body);
    evhttp_set_max_headers_size(app->http, MAX_HEADERS_SIZE);
    evhttp_set_timeout(app->http, (int)(app->cfg.req_timeout_ms + 999) / 1000);
    evhttp_set_allowed_methods(app->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_HEAD | EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(app->http, request_cb, app);
    app->bound =
        evhttp_bind_socket_with_handle(app->http, app->cfg.addr, (ev_uint16_t)app->cfg.port);
    if (!app->bound) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", app->cfg.addr, app->cfg.port,
                 strerror(errno));
        return -1;
    }
    if (getsockname(evhttp_bound_socket_get_fd(app->bound), (struct sockaddr *)&ss, &sl) != 0) {
        snprintf(err, errlen, "getsockname: %s", strerror(errno));
        return -1;
    }
    app->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

void server_stop_accepting(struct ingest *app)
{
    app->draining = true;
    if (app->bound) {
        evhttp_del_accept_socket(app->http, app->bound);
        app->bound = NULL;
    }
}

void server_abandon_all(struct ingest *app, const char *why)
{
    while (app->live)
        req_unavailable(app->live, why);
}

static void free_conn(void *p)
{
    free(p);
}

void server_teardown(struct ingest *app)
{
    server_reap(app);
    if (app->http)
        evhttp_free(app->http); /* frees the connections: their close callbacks run */
    app->http = NULL;
    if (app->conns) {
        tdestroy(app->conns, free_conn);
        app->conns = NULL;
    }
    if (app->reaper)
        event_free(app->reaper);
    app->reaper = NULL;
    while (app->spare) {
        struct req *r = app->spare;
        app->spare = r->grave_next;
        free(r);
    }
    app->nspare = 0;
    counters_destroy(app->stats);
    app->stats = NULL;
    tokcache_destroy(app->tokens);
    app->tokens = NULL;
}
