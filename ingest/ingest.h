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
#include <event2/http.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "counters.h"
#include "hashpool.h"
#include "hdr.h"
#include "kprod.h"
#include "password.h"
#include "pgpool.h"
#include "position.h"
#include "replwait.h"
#include "route.h"
#include "token.h"
#include "uuid.h"

struct ingest_config {
    char addr[64];
    int port;
    const char *bootstrap;
    const char *replica_url;
    uint8_t token_key[TOKEN_KEYBYTES];
    long token_ttl;
    unsigned long long pw_ops;
    size_t pw_mem;
    long hash_threads, read_pool, max_body, max_conns, req_timeout_ms, max_wait;
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

    /* Readiness (ops.c). */
    struct event *probe_ev;
    bool probe_inflight, replica_ok;
    int64_t replica_ok_at;
    char replica_detail[160];
};

/* The state of a write between validation and the answer (writes.c). */
struct write_kind;
struct req_write {
    const struct write_kind *kind;
    char event_id[UUID_STRLEN];
    char resource_id[UUID_STRLEN]; /* the row the event creates or sets */
    char subject[UUID_STRLEN];     /* the user the event is about, also the Kafka key */
    json_t *data;                  /* the event's data until serialised */
    char *value;                   /* the serialised envelope until librdkafka owns it */
    size_t len;
    int64_t ifmatch;
    int attempts;
    long wait_secs; /* Prefer: wait=N as applied; 0 = no wait */
    struct position pos;
    int64_t produced_us;
    char date[16], meal[16], food_id[UUID_STRLEN]; /* diary entry natural key */
};

typedef void (*req_query_cb)(struct req *r, PGresult *res, const char *err);
typedef void (*req_hash_cb)(struct req *r, enum hashpool_status st, const char *hash);
typedef void (*req_wait_cb)(struct req *r, enum replwait_status st);

struct conn;

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
    int64_t start_us;
    int64_t deadline_ms; /* on replwait_now_ms()'s clock */

    int refs;
    bool answered, cancelled, buried;
    int status;
    struct event *deadline_ev, *eof_ev, *retry_ev;

    /* Authentication (ROUTE_AUTH routes). */
    struct token_claims claims;
    char user[UUID_STRLEN];

    json_t *body; /* the parsed JSON body (ROUTE_BODY routes) */

    /* Continuations of the async helpers: one operation of each kind at a time. */
    req_query_cb query_cb;
    req_hash_cb hash_cb;
    req_wait_cb wait_cb;
    struct replwait_node wnode;

    struct req_write w;
    char scratch[UUID_STRLEN]; /* a handler's own use (the user id of a log-in) */

    struct req *prev, *next; /* app->live */
    struct req *grave_next;
};

/* server.c: the HTTP server. */
int server_setup(struct ingest *app, char *err, size_t errlen) __attribute__((warn_unused_result));
void server_stop_accepting(struct ingest *app);
void server_abandon_all(struct ingest *app, const char *why);
void server_reap(struct ingest *app);
void server_teardown(struct ingest *app);

/* Request helpers (server.c). */
bool req_live(const struct req *r);
void req_hold(struct req *r);
void req_release(struct req *r);
const char *req_header(const struct req *r, const char *name);
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

/* Runs sql on the replica with the remaining time of the request as timeout; cb runs while
 * the request is live. -1 when no replica connection is up or the pool's queue is full (cb
 * will not run; answer 503). */
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

/* writes.c */
void writes_user_create(struct req *r);
void writes_food_create(struct req *r);
void writes_entry_set(struct req *r);
/* The delivery report of a write (kprod_dr_cb). */
void writes_delivered(void *opaque, rd_kafka_resp_err_t err, int32_t partition, int64_t offset);

/* reads.c */
void reads_session_create(struct req *r);
void reads_food_get(struct req *r);
void reads_day_get(struct req *r);
void reads_event_get(struct req *r);

/* ops.c */
void ops_healthz(struct req *r);
void ops_readyz(struct req *r);
void ops_metrics(struct req *r);
int ops_setup(struct ingest *app) __attribute__((warn_unused_result));
void ops_teardown(struct ingest *app);

#endif
