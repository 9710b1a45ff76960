/* diary-ingest's process state and its request context, shared by the server (server.c: the
 * HTTP side, request lifetime, dispatch) and the route handlers (writes.c, reads.c, ops.c).
 *
 * Request lifetime. A struct req lives from the request's arrival until it is answered AND
 * no asynchronous operation that will call back into it is outstanding. Each such operation
 * (a replica query, a hash job, a Kafka message, a replica wait) takes a reference with
 * req_hold() before it starts and drops it with req_release() when its completion has run.
 * Once answered (or abandoned because the client went away) a request is no longer live:
 * completions then only drop their reference. The last release puts the request on a
 * graveyard that a zero-timeout event empties after the current loop pass, so that nothing is
 * freed inside a callback that still uses it. The req_query/req_hash/req_verify/req_wait
 * helpers do the holding and releasing and call the handler's continuation only while the
 * request is live. */
#ifndef INGEST_INGEST_H
#define INGEST_INGEST_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "counters.h"
#include "envelope.h"
#include "hashpool.h"
#include "hdr.h"
#include "kprod.h"
#include "password.h"
#include "pgpool.h"
#include "position.h"
#include "replwait.h"
#include "revoke.h"
#include "shed.h"
#include "route.h"
#include "token.h"
#include "tokcache.h"
#include "uuid.h"
#include "validate.h"

struct ingest_config {
    char addr[64];
    int port;
    const char *bootstrap;
    const char *replica_url;
    const char *primary_url; /* NULL: reads never fall back to the primary */
    uint8_t token_key[TOKEN_KEYBYTES];
    long token_ttl;
    unsigned long long pw_ops;
    size_t pw_mem;
    long hash_threads, read_pool, max_body, max_conns, req_timeout_ms, max_wait, linger_ms;
    long max_lag; /* DIARY_INGEST_MAX_LAG: 0 = no load shedding */
    char source[128];
    const char *group, *topic;
    const char *port_file; /* may be NULL */
};

struct req;

struct ingest {
    struct ingest_config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    int port; /* the bound port */
    kprod_t *prod;
    pgpool_t *pg;
    hashpool_t *hash;
    replwait_t *wait;
    pgpool_t *primary;        /* NULL without PG_PRIMARY_URL */
    replwait_t *primary_wait; /* waits on the primary's consumer_offsets; NULL likewise */
    revoke_t *revoke;
    shed_t *shed;            /* NULL without DIARY_INGEST_MAX_LAG */
    tokcache_t *tokens;      /* bearer tokens verified before (server.c) */
    uint8_t reqhash_key[32]; /* keys the requesthash (derived from the token key) */
    uint64_t primary_reads;  /* reads answered from the primary, for /metrics */
    uint64_t numbers_fast;   /* bodies validate_numbers read without a tree, for /metrics */
    counters_t *stats;
    char dummy_hash[PASSWORD_HASH_MAX]; /* verified against when an email is unknown */

    /* Connections that sent a request, by evhttp_connection (a tsearch tree). */
    void *conns;
    long nconns;

    /* Requests: live ones (not yet answered) in a list, for shutdown; all allocated ones
     * counted, to prove at exit that none leaked. */
    struct req *live;
    long nlive, nreqs;
    struct req *graveyard;
    struct event *reaper;
    bool draining;
    /* Freed requests kept for the next ones (a request is ~2 KiB: reusing it spares malloc
     * the work); at most SPARE_REQS (server.c), freed at teardown. */
    struct req *spare;
    long nspare;
    int log_min; /* enum log_level: the access log is written at LOG_INFO and above */
    /* The first firing of every request's timer (server.c), as a libevent common timeout:
     * the same duration for all, so adding and removing it costs no heap work. */
    const struct timeval *first_tv;

    /* Readiness (ops.c). */
    struct event *probe_ev;
    bool probe_inflight, replica_ok;
    int64_t replica_ok_at;
    char replica_detail[160];
};

#define REQHASH_HEXLEN 65 /* BLAKE2b-256 in hex and the NUL */

/* The opaque of one produced message: the request, and which of its writes (batch.c). */
struct wmsg {
    struct req *r;
    int item; /* -1: the request's own write (r->w); else the index of a batch item */
    int64_t produced_us;
};

/* The state of a write between validation and the answer (writes.c). */
struct write_kind;
struct req_write {
    const struct write_kind *kind;
    struct wmsg msg;
    char key[HDR_IDEM_KEY_MAX + 1]; /* the Idempotency-Key, "" when none */
    char event_id[UUID_STRLEN];
    char resource_id[UUID_STRLEN]; /* the row the event creates or changes, "" when none */
    char subject[UUID_STRLEN];     /* the user the event is about, also the Kafka key */
    char requesthash[REQHASH_HEXLEN];
    char time[EVT_TIMELEN]; /* the envelope's time */
    json_t *data;           /* the event's data until serialised... */
    char data_text[320];    /* ...or, when data_len > 0, the data already as compact JSON */
    size_t data_len;
    char *value; /* the serialised envelope until librdkafka owns it */
    size_t len;
    int64_t ifmatch;
    int attempts;
    long wait_secs; /* Prefer: wait=N as applied; 0 = no wait */
    struct position pos;
    char date[16], meal[16], food_id[UUID_STRLEN]; /* natural keys of entries and weights */
    /* What to do once the broker answered instead of the usual answer (log-in's re-hash);
     * NULL for ordinary writes. */
    void (*then)(struct req *r);
};

struct batch;

typedef void (*req_query_cb)(struct req *r, PGresult *res, const char *err);
typedef void (*req_hash_cb)(struct req *r, enum hashpool_status st, const char *hash);
typedef void (*req_wait_cb)(struct req *r, enum replwait_status st);

struct conn;

/* The request headers ingest reads, by their index in server.c's table of names. */
enum req_hdr {
    REQ_HDR_PREFER,
    REQ_HDR_IF_MATCH,
    REQ_HDR_TRACEPARENT,
    REQ_HDR_CONTENT_TYPE,
    REQ_HDR_REQUEST_ID,
    REQ_HDR_AUTHORIZATION,
    REQ_HDR_CONTENT_LENGTH,
    REQ_HDR_IDEMPOTENCY_KEY,
    REQ_HDR_OCCURRED_AT,
    REQ_HDR_MIN_POSITION,
    REQ_KNOWN_HEADERS
};

struct req {
    struct ingest *app;
    struct evhttp_request *ev; /* NULL once answered */
    bool ev_detached;          /* evhttp detached ev from its gone connection: ours to free */
    struct conn *conn;         /* NULL once answered or the connection is gone */
    const struct route *route;
    size_t route_idx;
    struct route_params params;
    char method[8];
    char path[512];
    char rid[HDR_REQUEST_ID_MAX];
    char peer[64];
    /* The request headers ingest reads, found in one pass over them on the first look-up
     * (req_header); they point into evhttp's request and are read only while r->ev is set. */
    const char *hdrv[REQ_KNOWN_HEADERS];
    bool hdr_scanned;
    int64_t start_us;
    int64_t deadline_ms; /* on replwait_now_ms()'s clock */

    int refs;
    bool answered, cancelled, buried;
    int status;
    /* The deadline timer; its first firing, EOF_GRACE_MS after arrival, only starts the EOF
     * watch (see watch_eof in server.c). Both are set while has_deadline / has_eof. */
    struct event deadline_ev, eof_ev;
    bool has_deadline, has_eof, grace_over;
    struct event *retry_ev;

    /* Authentication (ROUTE_AUTH routes). */
    struct token_claims claims;
    char user[UUID_STRLEN];

    /* The parsed JSON body (ROUTE_BODY routes). NULL on a ROUTE_NUMBERS route whose body
     * validate_numbers read: nums[0, nnums) hold it, and writes.c builds the tree from them
     * only when a path needs it. */
    json_t *body;
    struct vnumber nums[VALIDATE_NUMBERS_MAX];
    size_t nnums;

    /* Continuations of the async helpers: one operation of each kind at a time. */
    req_query_cb query_cb;
    req_hash_cb hash_cb;
    req_wait_cb wait_cb;
    struct replwait_node wnode;
    replwait_t *waiting_on; /* the waiter wnode is linked to, if any */
    bool from_primary;      /* reads go to the primary (Diary-Min-Position fallback) */

    json_t *query; /* the parsed query string (routes with a query schema) */

    struct req_write w;
    struct batch *batch; /* POST /v1/diary/batch */

    /* Log-in (reads.c): the user found, the stored hash's kind and the token cut-off. */
    char scratch[UUID_STRLEN];
    bool legacy_hash;
    int64_t valid_after_us;

    struct req *prev, *next; /* app->live */
    struct req *grave_next;
};

/* server.c: the HTTP server. */
int server_setup(struct ingest *app, char *err, size_t errlen) __attribute__((warn_unused_result));
void server_stop_accepting(struct ingest *app);
void server_abandon_all(struct ingest *app, const char *why);
void server_reap(struct ingest *app);
void server_teardown(struct ingest *app);
/* Prints the route table, one route a line: METHOD, path, "auth" or "-", the body schema and
 * the query schema ("-" for none), tab-separated. Needs no set-up. */
void server_list_routes(FILE *out);
/* 0 when every schema the route table names is loaded, else -1 with err. */
int server_check_schemas(char *err, size_t errlen) __attribute__((warn_unused_result));

/* Request helpers (server.c). */
bool req_live(const struct req *r);
void req_hold(struct req *r);
void req_release(struct req *r);
/* The first value of the header, as evhttp_find_header would find it; NULL when the request
 * has none or is answered. */
const char *req_header(const struct req *r, enum req_hdr which);
void req_add_header(struct req *r, const char *name, const char *value);
/* Answers with body (stolen; NULL: empty) as application/json. */
void req_reply(struct req *r, int status, json_t *body);
/* Answers with body (borrowed) and content type. */
void req_reply_text(struct req *r, int status, const char *ctype, const char *body, size_t len);
/* Answers application/problem+json with the slug's fixed title; errors stolen, may be NULL. */
void req_problem(struct req *r, int status, const char *slug, const char *detail, json_t *errors);
/* The same with a title of the caller's (a problem the worker recorded). */
void req_problem_titled(struct req *r, int status, const char *slug, const char *title,
                        const char *detail);
/* 422 validation naming one field. */
void req_invalid(struct req *r, const char *field, const char *message);
/* 503 unavailable: the replica, the broker or the hash pool is busy or away. */
void req_unavailable(struct req *r, const char *detail);
/* 404 not-found. */
void req_not_found(struct req *r);
/* The problem type URI's slug: PROBLEM_BASE + slug, or the recorded type as it is. */
const char *req_problem_slug(const char *type);

/* Runs sql on the replica (on the primary when r->from_primary) with the remaining time of
 * the request as timeout; cb runs while the request is live. -1 when no connection is up or
 * the pool's queue is full (cb will not run; answer 503). */
int req_query(struct req *r, const char *sql, int nparams, const char *const *params,
              req_query_cb cb) __attribute__((warn_unused_result));
int req_hash(struct req *r, const char *pw, req_hash_cb cb) __attribute__((warn_unused_result));
int req_verify(struct req *r, const char *hash, const char *pw, req_hash_cb cb)
    __attribute__((warn_unused_result));
/* Waits until the replica applied pos or deadline_ms passes; cb runs while the request is
 * live. */
void req_wait(struct req *r, const struct position *pos, int64_t deadline_ms, req_wait_cb cb);

/* Monotonic microseconds. */
int64_t ingest_now_us(void);

/* Numbers from a replica row: JSON null for SQL NULL. */
json_t *pgval_number(const PGresult *res, int row, int col);
json_t *pgval_integer(const PGresult *res, int row, int col);
json_t *pgval_string(const PGresult *res, int row, int col);

/* writes.c: the single-write routes. */
void writes_user_create(struct req *r);
void writes_me_update(struct req *r);
void writes_me_delete(struct req *r);
void writes_session_revoke(struct req *r);
void writes_settings_update(struct req *r);
void writes_food_create(struct req *r);
void writes_food_update(struct req *r);
void writes_food_delete(struct req *r);
void writes_entry_set(struct req *r);
void writes_entry_remove(struct req *r);
void writes_weight_set(struct req *r);
void writes_weight_remove(struct req *r);
/* Log-in with a legacy hash: produces diary.user.password_changed.v1 (revoke false) with
 * hash for the user r->scratch, then calls then(r) whether or not the broker took it. */
void writes_rehash(struct req *r, const char *hash, void (*then)(struct req *r));
/* The delivery report of every produced message (kprod_dr_cb); opaque is a struct wmsg. */
void writes_delivered(void *opaque, rd_kafka_resp_err_t err, int32_t partition, int64_t offset);

/* writes.c: what batch.c shares. */
/* The requesthash extension: keyed BLAKE2b-256 (hex) of method, path (lower-cased) and the
 * body in canonical form (sorted keys, compact; "" for none). A write without a body passes
 * its event's data as the body. */
void writes_request_hash(const struct ingest *app, const char *method, const char *path,
                         json_t *body, char out[REQHASH_HEXLEN]);
/* The event id: derived from user and key when key is non-empty, else a fresh UUIDv7. */
void writes_event_id(const char *user, const char *key, char out[UUID_STRLEN]);
/* Builds the envelope of an event about r->user (data stolen) and produces it with m as the
 * message opaque, serving the producer's queue and retrying a few times when it is full.
 * On success the delivery report will come (holding a reference on r). */
rd_kafka_resp_err_t writes_send(struct req *r, struct wmsg *m, const char *type,
                                const char *event_id, json_t *data, const char *requesthash)
    __attribute__((warn_unused_result));
/* Load shedding (shed.h): when the apply is too far behind on key's partition, answers
 * 503 apply-behind with Retry-After and returns true. */
bool writes_shed(struct req *r, const char *key);
/* The recorded problem of a rejected event as an object (status 400..599, else 422). */
json_t *writes_problem_object(const char *problem_text, const char *reason);

/* batch.c: POST /v1/diary/batch. */
void batch_post(struct req *r);
void batch_delivered(struct req *r, int item, rd_kafka_resp_err_t err, int32_t partition,
                     int64_t offset);
void batch_free(struct batch *b);

/* reads.c */
void reads_session_create(struct req *r);
void reads_me_get(struct req *r);
void reads_settings_get(struct req *r);
void reads_foods_list(struct req *r);
void reads_food_get(struct req *r);
void reads_day_get(struct req *r);
void reads_days_list(struct req *r);
void reads_weights_list(struct req *r);
void reads_event_get(struct req *r);

/* ops.c */
void ops_healthz(struct req *r);
void ops_readyz(struct req *r);
void ops_metrics(struct req *r);
int ops_setup(struct ingest *app) __attribute__((warn_unused_result));
void ops_teardown(struct ingest *app);

#endif
