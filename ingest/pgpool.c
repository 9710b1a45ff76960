/* Asynchronous PostgreSQL connection pool: see pgpool.h for the model and the ownership rules.
 *
 * Inside: an array of connection slots, each a small state machine driven by one socket event
 * (io) and one timer (backoff before a reconnect, or the deadline of a connection attempt);
 * a FIFO queue of requests; a "kick" event that dispatches queued requests on the next loop
 * pass, so that pgpool_query never calls back into the caller.
 *
 * Re-entrancy: callbacks may call pgpool_query or pgpool_destroy. Every event handler counts
 * itself in pool->depth; pgpool_destroy inside a handler only marks the pool dead and fails
 * the pending callbacks, and the handler frees the pool when it unwinds. Code that calls a
 * callback therefore re-checks pool->dead afterwards and stops touching the pool.
 */
#include "pgpool.h"

#include "config.h"
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event_struct.h>

#define BACKOFF_MIN_MS     50
#define BACKOFF_MAX_MS     2000
#define CONNECT_TIMEOUT_MS 5000 /* unless the conninfo sets connect_timeout */
#define STMT_CACHE_MAX     64
#define POOL_SIZE_MAX      1024

enum conn_state {
    CONN_DOWN,        /* no PGconn; timer armed for the next attempt */
    CONN_CONNECTING,  /* PQconnectPoll in progress; timer is the attempt's deadline */
    CONN_IDLE,        /* up, no query */
    CONN_PREPARING,   /* PQsendPrepare for req in flight; the execute follows */
    CONN_RUNNING,     /* req's query in flight */
    CONN_DRAINING,    /* req timed out: results still arrive and are dropped */
    CONN_CANCEL_WAIT, /* drained, but the cancel request has not been delivered yet */
};

/* A queued or running query. One allocation: the struct, the params array, then the copied
 * strings. Owned by the queue while queued, by its connection while running; freed after its
 * callback returns. */
struct req {
    TAILQ_ENTRY(req) link;
    struct pgpool *pool;
    struct conn *conn; /* the connection running it, NULL while queued */
    pgpool_cb cb;
    void *arg;
    struct event deadline; /* one-shot timer, assigned only when has_deadline */
    bool has_deadline;
    uint64_t hash; /* of sql, for the statement cache */
    const char *sql;
    int nparams;
    const char **params;
};

TAILQ_HEAD(req_queue, req);

/* A prepared statement on one connection: sql (owned, malloc) prepared as name. */
struct stmt {
    uint64_t hash;
    int nparams;
    char *sql;
    char name[24];
};

struct conn {
    struct pgpool *pool;
    int id;
    enum conn_state state;
    PGconn *pg;
    struct event io; /* on PQsocket; reassigned whenever the socket or interest changes */
    struct event timer;
    bool flushing;    /* PQflush left data unsent: also watching EV_WRITE */
    bool ever_up;     /* for the reconnects counter */
    int backoff_ms;   /* delay before the next attempt after a failure */
    unsigned fails;   /* attempts failed in a row, to log a dead server once, not forever */
    struct req *req;  /* the running query (PREPARING, RUNNING), else NULL */
    PGresult *result; /* the result kept for req until PQgetResult says it is complete */
    char pending[24]; /* statement name being prepared */
    struct stmt stmts[STMT_CACHE_MAX];
    int nstmts;
    unsigned stmt_seq; /* statement names are never reused on one connection */
    size_t errmark;    /* see conn_error */
    int cancel_fd;     /* our end of the socketpair the cancel thread reports on, or -1 */
    struct event cancel_ev;
};

struct pgpool {
    struct event_base *base;
    char *conninfo;
    bool use_prepared;
    int connect_timeout_ms;
    int size;
    struct conn *conns;
    int rr; /* where the next search for an idle connection starts */
    struct req_queue queue;
    size_t queued;
    struct event kick;
    bool kicked;
    int up;
    int depth; /* event handlers of this pool on the stack */
    bool dead; /* pgpool_destroy was called */
    uint64_t queries, errors, timeouts, reconnects;
};

static void conn_connect(struct conn *c);
static void conn_down(struct conn *c, const char *why);
static void conn_send(struct conn *c, struct req *r);
static void dispatch(struct pgpool *p);

/* ---- helpers ---------------------------------------------------------------------------- */

static uint64_t sql_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* libpq messages end in a newline and may span lines; a log field wants one line. */
static void one_line(char *dst, size_t len, const char *src)
{
    size_t n = 0;

    for (; src && *src && n + 1 < len; src++) {
        bool space = *src == '\n' || *src == '\r' || *src == '\t' || *src == ' ';

        if (space && (n == 0 || dst[n - 1] == ' '))
            continue;
        dst[n++] = space ? ' ' : *src;
    }
    while (n > 0 && dst[n - 1] == ' ')
        n--;
    dst[n] = '\0';
}

static void conn_log(enum log_level lvl, const struct conn *c, const char *msg, const char *why)
{
    char id[16], host[128] = "", port[16] = "";
    const char *kv[9];
    int k = 0;

    snprintf(id, sizeof(id), "%d", c->id);
    if (c->pg) {
        snprintf(host, sizeof(host), "%s", PQhost(c->pg) ? PQhost(c->pg) : "");
        snprintf(port, sizeof(port), "%s", PQport(c->pg) ? PQport(c->pg) : "");
    }
    kv[k++] = "conn";
    kv[k++] = id;
    if (*host) {
        kv[k++] = "host";
        kv[k++] = host;
        kv[k++] = "port";
        kv[k++] = port;
    }
    if (why) {
        kv[k++] = "error";
        kv[k++] = why;
    }
    kv[k] = NULL;
    log_fields(lvl, NULL, msg, kv);
}

/* Server notices would otherwise go to stderr as plain text. Their text can quote values,
 * so only the severity and SQLSTATE are logged. */
static void notice_cb(void *arg, const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    const char *kv[] = {"severity", sev ? sev : "", "sqlstate", state ? state : "", NULL};

    log_fields(LOG_DEBUG, NULL, "postgres notice", kv);
}

static void format_result_error(char *buf, size_t len, const PGresult *res)
{
    const char *sev, *state, *msg;

    if (!res) {
        snprintf(buf, len, "query returned no result");
        return;
    }
    sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (state && msg)
        snprintf(buf, len, "%s %s: %s", sev ? sev : "ERROR", state, msg);
    else if (*PQresultErrorMessage(res))
        one_line(buf, len, PQresultErrorMessage(res));
    else
        snprintf(buf, len, "unexpected result status %s", PQresStatus(PQresultStatus(res)));
}

static bool result_ok(const PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    return st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
}

static void pool_enter(struct pgpool *p)
{
    p->depth++;
}

static void pool_free(struct pgpool *p);

/* Every event handler ends here; the pool may be freed, so the caller must not touch it. */
static void pool_leave(struct pgpool *p)
{
    if (--p->depth == 0 && p->dead)
        pool_free(p);
}

/* Calls r's callback and frees r. res (may be NULL) is cleared afterwards. The caller must
 * already have unlinked r from the queue or its connection, and must check pool->dead after
 * this returns. Freeing r inside its own deadline callback is safe: the timer is one-shot and
 * libevent does not touch a one-shot event after calling it. */
static void req_finish(struct pgpool *p, struct req *r, PGresult *res, const char *err)
{
    if (r->has_deadline)
        event_del(&r->deadline);
    if (!res)
        p->errors++;
    r->cb(res, err, r->arg);
    PQclear(res);
    free(r);
}

static bool conn_is_up(const struct conn *c)
{
    return c->state >= CONN_IDLE;
}

/* libpq accumulates error text until the next query starts, so after a failed query
 * PQerrorMessage still quotes the server's error, which may quote a parameter. Connection
 * errors are reported from errmark on: only what was added after the last query finished. */
static const char *conn_error(const struct conn *c)
{
    const char *m = PQerrorMessage(c->pg);
    size_t len = strlen(m);

    return m + (c->errmark <= len ? c->errmark : len);
}

/* ---- statement cache -------------------------------------------------------------------- */

static struct stmt *stmt_find(struct conn *c, const struct req *r)
{
    for (int i = 0; i < c->nstmts; i++) {
        struct stmt *s = &c->stmts[i];

        if (s->hash == r->hash && s->nparams == r->nparams && strcmp(s->sql, r->sql) == 0)
            return s;
    }
    return NULL;
}

static void stmt_add(struct conn *c, const struct req *r, const char *name)
{
    struct stmt *s;
    char *sql;

    if (c->nstmts >= STMT_CACHE_MAX || (sql = strdup(r->sql)) == NULL)
        return;
    s = &c->stmts[c->nstmts++];
    s->hash = r->hash;
    s->nparams = r->nparams;
    s->sql = sql;
    snprintf(s->name, sizeof(s->name), "%s", name);
}

/* After a schema change the server refuses a stale plan (0A000 "cached plan must not change
 * result type"), and a statement can vanish (26000) behind a pooler: forget the statement so
 * the next use prepares it again under a new name. */
static void stmt_forget(struct conn *c, const struct req *r)
{
    struct stmt *s = stmt_find(c, r);

    if (!s)
        return;
    free(s->sql);
    *s = c->stmts[--c->nstmts];
}

static void stmt_clear(struct conn *c)
{
    for (int i = 0; i < c->nstmts; i++)
        free(c->stmts[i].sql);
    c->nstmts = 0;
}

/* ---- cancel ----------------------------------------------------------------------------- */

/* PQcancel opens a new connection and waits for the server, so it runs on a short-lived
 * detached thread. The thread owns the job (and its PGcancel, which is independent of the
 * PGconn) and reports on its end of a socketpair; if the pool forgot the cancel meanwhile,
 * the report fails quietly (MSG_NOSIGNAL) and nothing else is shared. */
struct cancel_job {
    PGcancel *cancel;
    int fd;
};

static void *cancel_thread(void *arg)
{
    struct cancel_job *job = arg;
    char errbuf[256];

    (void)PQcancel(job->cancel, errbuf, sizeof(errbuf));
    PQfreeCancel(job->cancel);
    (void)send(job->fd, "c", 1, MSG_NOSIGNAL);
    close(job->fd);
    free(job);
    return NULL;
}

static void cancel_forget(struct conn *c)
{
    if (c->cancel_fd < 0)
        return;
    event_del(&c->cancel_ev);
    close(c->cancel_fd);
    c->cancel_fd = -1;
}

static void cancel_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct pgpool *p = c->pool;

    pool_enter(p);
    cancel_forget(c);
    if (c->state == CONN_CANCEL_WAIT) {
        c->state = CONN_IDLE;
        dispatch(p);
    }
    pool_leave(p);
}

/* Returns false when no cancel could be started; the query then simply runs to its end. */
static bool cancel_start(struct conn *c)
{
    struct cancel_job *job = NULL;
    pthread_attr_t attr;
    pthread_t tid;
    int sv[2] = {-1, -1};
    bool attr_ok = false;

    job = calloc(1, sizeof(*job));
    if (!job)
        goto fail;
    job->cancel = PQgetCancel(c->pg);
    if (!job->cancel)
        goto fail;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        goto fail;
    job->fd = sv[1];
    if (pthread_attr_init(&attr) != 0)
        goto fail;
    attr_ok = true;
    if (pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0)
        goto fail;
    if (pthread_create(&tid, &attr, cancel_thread, job) != 0)
        goto fail;
    pthread_attr_destroy(&attr);
    /* The thread owns job and sv[1] now. */
    c->cancel_fd = sv[0];
    event_assign(&c->cancel_ev, c->pool->base, sv[0], EV_READ, cancel_done_cb, c);
    event_add(&c->cancel_ev, NULL);
    return true;
fail:
    if (attr_ok)
        pthread_attr_destroy(&attr);
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (job)
        PQfreeCancel(job->cancel);
    free(job);
    return false;
}

/* ---- connection life -------------------------------------------------------------------- */

static void conn_io_cb(evutil_socket_t fd, short what, void *arg);

static void conn_set_io(struct conn *c, short what)
{
    event_del(&c->io);
    event_assign(&c->io, c->pool->base, PQsocket(c->pg), what, conn_io_cb, c);
    event_add(&c->io, NULL);
}

static void conn_arm_timer(struct conn *c, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(&c->timer, &tv);
}

/* Closes the connection (if any) and schedules the next attempt. A running query fails with
 * "connection lost: why"; a draining one is simply dropped. Must be the last thing a handler
 * does with c before checking pool->dead. */
static void conn_down(struct conn *c, const char *why)
{
    struct pgpool *p = c->pool;
    struct req *r = c->req;
    bool was_up = conn_is_up(c);
    char msg[512], err[600];

    one_line(msg, sizeof(msg), why && *why ? why : "unknown error");
    if (was_up) {
        p->up--;
        c->fails = 0;
        conn_log(LOG_WARN, c, "postgres connection down", msg);
    } else {
        /* A server that stays down would log every 2 s per connection: say it once. */
        conn_log(c->fails == 0 ? LOG_WARN : LOG_DEBUG, c, "postgres connection attempt failed",
                 msg);
        c->fails++;
    }
    c->req = NULL;
    PQclear(c->result);
    c->result = NULL;
    event_del(&c->io);
    event_del(&c->timer);
    cancel_forget(c);
    stmt_clear(c);
    PQfinish(c->pg);
    c->pg = NULL;
    c->flushing = false;
    c->state = CONN_DOWN;
    conn_arm_timer(c, c->backoff_ms);
    c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
    if (r) {
        r->conn = NULL;
        snprintf(err, sizeof(err), "connection lost: %s", msg);
        req_finish(p, r, NULL, err);
    }
}

static void conn_up(struct conn *c)
{
    struct pgpool *p = c->pool;

    if (PQsetnonblocking(c->pg, 1) != 0) {
        conn_down(c, conn_error(c));
        return;
    }
    event_del(&c->timer);
    c->state = CONN_IDLE;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->fails = 0;
    c->flushing = false;
    if (c->ever_up)
        p->reconnects++;
    c->ever_up = true;
    p->up++;
    conn_set_io(c, EV_READ | EV_PERSIST);
    conn_log(LOG_INFO, c, "postgres connection up", NULL);
    dispatch(p);
}

/* One step of the connection handshake. The socket can change between steps (another host
 * or address of the conninfo), so the one-shot io event is assigned afresh every time. */
static void conn_poll_connect(struct conn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        conn_set_io(c, EV_READ);
        break;
    case PGRES_POLLING_WRITING:
        conn_set_io(c, EV_WRITE);
        break;
    case PGRES_POLLING_OK:
        conn_up(c);
        break;
    default:
        conn_down(c, conn_error(c));
        break;
    }
}

static void conn_connect(struct conn *c)
{
    static const char *const keys[] = {"dbname", "fallback_application_name", NULL};
    const char *vals[] = {c->pool->conninfo, "diary-pgpool", NULL};

    /* expand_dbname = 1: the dbname value is the whole conninfo string or URL. */
    c->pg = PQconnectStartParams(keys, vals, 1);
    c->errmark = 0;
    if (!c->pg) {
        conn_down(c, "out of memory");
        return;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD || PQsocket(c->pg) < 0) {
        conn_down(c, conn_error(c));
        return;
    }
    PQsetNoticeReceiver(c->pg, notice_cb, NULL);
    c->state = CONN_CONNECTING;
    /* PQconnectPoll ignores connect_timeout, so the attempt gets its own deadline. */
    conn_arm_timer(c, c->pool->connect_timeout_ms);
    /* Before the first PQconnectPoll, libpq wants us to wait for writability. */
    conn_set_io(c, EV_WRITE);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct pgpool *p = c->pool;

    pool_enter(p);
    if (c->state == CONN_DOWN)
        conn_connect(c);
    else if (c->state == CONN_CONNECTING)
        conn_down(c, "connection attempt timed out");
    pool_leave(p);
}

/* ---- queries ---------------------------------------------------------------------------- */

/* Sends what libpq buffered; watches EV_WRITE while something is left. Returns false when
 * the connection went down (c then holds no request). */
static bool conn_flush(struct conn *c)
{
    int rc = PQflush(c->pg);

    if (rc < 0) {
        conn_down(c, conn_error(c));
        return false;
    }
    if ((rc == 1) != c->flushing) {
        c->flushing = rc == 1;
        conn_set_io(c, EV_READ | EV_PERSIST | (c->flushing ? EV_WRITE : 0));
    }
    return true;
}

/* A send call failed: a dead connection fails the request through conn_down; anything else
 * (for example too many parameters) is the request's own fault and fails only it. */
static void conn_send_failed(struct conn *c)
{
    struct pgpool *p = c->pool;
    struct req *r = c->req;
    char err[512];

    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_down(c, conn_error(c));
        return;
    }
    one_line(err, sizeof(err), PQerrorMessage(c->pg));
    c->req = NULL;
    r->conn = NULL;
    c->state = CONN_IDLE;
    req_finish(p, r, NULL, err);
}

static void conn_send(struct conn *c, struct req *r)
{
    const char *const *params = r->params;
    struct stmt *s = NULL;
    int ok;

    c->req = r;
    r->conn = c;
    c->state = CONN_RUNNING;
    c->errmark = 0; /* libpq clears its error text when a query starts */
    if (c->pool->use_prepared)
        s = stmt_find(c, r);
    if (s) {
        ok = PQsendQueryPrepared(c->pg, s->name, r->nparams, params, NULL, NULL, 0);
    } else if (c->pool->use_prepared && c->nstmts < STMT_CACHE_MAX) {
        snprintf(c->pending, sizeof(c->pending), "pgpool_%u", ++c->stmt_seq);
        ok = PQsendPrepare(c->pg, c->pending, r->sql, r->nparams, NULL);
        c->state = CONN_PREPARING;
    } else {
        ok = PQsendQueryParams(c->pg, r->sql, r->nparams, NULL, params, NULL, NULL, 0);
    }
    if (!ok) {
        conn_send_failed(c);
        return;
    }
    (void)conn_flush(c);
}

/* A FATAL or PANIC error ends the server session. The EOF that follows may be read only on
 * a later pass, and a query sent in between would be lost as well, so the connection is
 * closed at once. */
static bool result_ends_session(const PGresult *res)
{
    const char *sev = res ? PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED) : NULL;

    return sev && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0);
}

/* PQgetResult said the command is complete. Decides what the request gets, frees the
 * connection for the next one and calls back last. */
static void conn_complete(struct conn *c)
{
    struct pgpool *p = c->pool;
    struct req *r = c->req;
    PGresult *res = c->result;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    bool gone = PQstatus(c->pg) == CONNECTION_BAD || result_ends_session(res);
    char err[1024], why[80];

    c->result = NULL;
    c->errmark = strlen(PQerrorMessage(c->pg));
    /* The server's own text is not logged (it may quote a parameter), only its SQLSTATE. */
    snprintf(why, sizeof(why), "server ended the session (SQLSTATE %s)", state ? state : "unknown");
    if (c->state == CONN_DRAINING) {
        PQclear(res);
        c->state = c->cancel_fd >= 0 ? CONN_CANCEL_WAIT : CONN_IDLE;
        if (gone)
            conn_down(c, why);
        return;
    }
    if (c->state == CONN_PREPARING && result_ok(res)) {
        PQclear(res);
        if (gone) {
            conn_down(c, why); /* fails r with "connection lost" */
            return;
        }
        stmt_add(c, r, c->pending);
        c->state = CONN_RUNNING;
        c->errmark = 0;
        if (!PQsendQueryPrepared(c->pg, c->pending, r->nparams, r->params, NULL, NULL, 0)) {
            conn_send_failed(c);
            return;
        }
        (void)conn_flush(c);
        return;
    }
    c->req = NULL;
    r->conn = NULL;
    c->state = CONN_IDLE;
    if (!result_ok(res)) {
        format_result_error(err, sizeof(err), res);
        if (state && (strcmp(state, "0A000") == 0 || strcmp(state, "26000") == 0))
            stmt_forget(c, r);
        PQclear(res);
        res = NULL;
    }
    if (gone)
        conn_down(c, why);
    req_finish(p, r, res, res ? NULL : err);
}

static bool conn_has_command(const struct conn *c)
{
    return c->state == CONN_PREPARING || c->state == CONN_RUNNING || c->state == CONN_DRAINING;
}

/* Collects whatever results are complete. The first result is kept, unless a later one is an
 * error (a query sends one result in the extended protocol; this is belt and braces). */
static void conn_collect(struct conn *c)
{
    while (conn_has_command(c) && !PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);

        if (!res) {
            conn_complete(c);
            return;
        }
        if (!c->result || (result_ok(c->result) && !result_ok(res))) {
            PQclear(c->result);
            c->result = res;
        } else {
            PQclear(res);
        }
    }
    /* A terminated idle connection shows up here: the server's FATAL notice, then EOF. */
    if (c->pg && conn_is_up(c) && PQstatus(c->pg) == CONNECTION_BAD)
        conn_down(c, conn_error(c));
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct pgpool *p = c->pool;

    pool_enter(p);
    if (c->state == CONN_CONNECTING) {
        conn_poll_connect(c);
        goto out;
    }
    if (!conn_is_up(c))
        goto out;
    if ((what & EV_WRITE) && c->flushing && !conn_flush(c))
        goto out;
    if (what & EV_READ) {
        if (!PQconsumeInput(c->pg)) {
            conn_down(c, conn_error(c));
            goto out;
        }
        /* libpq: after reading, try to send again; the server may have been waiting for us
         * to read before it would accept more. */
        if (c->flushing && !conn_flush(c))
            goto out;
        conn_collect(c);
    }
    if (!p->dead)
        dispatch(p);
out:
    pool_leave(p);
}

/* Starts queued requests on idle connections, oldest first. */
static void dispatch(struct pgpool *p)
{
    while (!p->dead && !TAILQ_EMPTY(&p->queue)) {
        struct conn *c = NULL;
        struct req *r;

        for (int i = 0; i < p->size; i++) {
            struct conn *cand = &p->conns[(p->rr + i) % p->size];

            if (cand->state == CONN_IDLE) {
                c = cand;
                p->rr = (p->rr + i + 1) % p->size;
                break;
            }
        }
        if (!c)
            return;
        r = TAILQ_FIRST(&p->queue);
        TAILQ_REMOVE(&p->queue, r, link);
        p->queued--;
        conn_send(c, r);
    }
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct pgpool *p = arg;

    pool_enter(p);
    p->kicked = false;
    dispatch(p);
    pool_leave(p);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct req *r = arg;
    struct pgpool *p = r->pool;
    struct conn *c = r->conn;

    pool_enter(p);
    if (!c) {
        TAILQ_REMOVE(&p->queue, r, link);
        p->queued--;
    } else {
        /* The connection stays out of use until the abandoned query's results are drained
         * and the cancel has been delivered; its result, if any, is dropped. */
        c->req = NULL;
        r->conn = NULL;
        c->state = CONN_DRAINING;
        (void)cancel_start(c);
    }
    p->timeouts++;
    req_finish(p, r, NULL, "timeout");
    pool_leave(p);
}

/* ---- public ----------------------------------------------------------------------------- */

pgpool_t *pgpool_new(struct event_base *base, const char *conninfo, int size, char *err,
                     size_t errlen)
{
    struct pgpool *p = NULL;
    PQconninfoOption *opts;
    char *perr = NULL;
    const char *prep;
    bool use_prepared = true;
    int connect_timeout_ms = CONNECT_TIMEOUT_MS;

    if (!base || !conninfo || size < 1 || size > POOL_SIZE_MAX) {
        snprintf(err, errlen, "pgpool: need an event base, a conninfo and 1..%d connections",
                 POOL_SIZE_MAX);
        return NULL;
    }
    /* Parse now so that a typo stops the start-up instead of failing every reconnect. */
    opts = PQconninfoParse(conninfo, &perr);
    if (!opts) {
        char msg[256];

        one_line(msg, sizeof(msg), perr ? perr : "out of memory");
        snprintf(err, errlen, "pgpool: bad conninfo: %s", msg);
        PQfreemem(perr);
        return NULL;
    }
    /* PQconnectPoll ignores connect_timeout; the pool enforces it (in seconds, as libpq). */
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        long secs;

        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val && *o->val &&
            config_parse_long(o->val, 1, 3600, &secs) == 0)
            connect_timeout_ms = (int)secs * 1000;
    }
    PQconninfoFree(opts);
    prep = config_str("DIARY_READ_PREPARED");
    if (prep && *prep && config_parse_bool(prep, &use_prepared) != 0) {
        snprintf(err, errlen, "pgpool: DIARY_READ_PREPARED must be true or false");
        return NULL;
    }

    p = calloc(1, sizeof(*p));
    if (!p)
        goto fail;
    p->base = base;
    p->size = size;
    p->use_prepared = use_prepared;
    p->connect_timeout_ms = connect_timeout_ms;
    TAILQ_INIT(&p->queue);
    p->conninfo = strdup(conninfo);
    p->conns = calloc((size_t)size, sizeof(*p->conns));
    if (!p->conninfo || !p->conns)
        goto fail;
    event_assign(&p->kick, base, -1, 0, kick_cb, p);
    for (int i = 0; i < size; i++) {
        struct conn *c = &p->conns[i];

        c->pool = p;
        c->id = i;
        c->cancel_fd = -1;
        c->backoff_ms = BACKOFF_MIN_MS;
        c->state = CONN_DOWN;
        event_assign(&c->io, base, -1, 0, conn_io_cb, c);
        evtimer_assign(&c->timer, base, conn_timer_cb, c);
    }
    for (int i = 0; i < size; i++)
        conn_connect(&p->conns[i]);
    return p;
fail:
    snprintf(err, errlen, "pgpool: out of memory");
    if (p) {
        free(p->conns);
        free(p->conninfo);
    }
    free(p);
    return NULL;
}

/* One allocation holds the request, its params array and copies of sql and every param. */
static struct req *req_new(struct pgpool *p, const char *sql, int nparams,
                           const char *const *params)
{
    size_t sqllen = strlen(sql) + 1, size = sizeof(struct req) + sizeof(char *) * (size_t)nparams;
    struct req *r;
    char *s;

    for (int i = 0; i < nparams; i++)
        if (params[i])
            size += strlen(params[i]) + 1;
    size += sqllen;
    r = calloc(1, size);
    if (!r)
        return NULL;
    r->pool = p;
    r->nparams = nparams;
    r->params = (const char **)(r + 1);
    s = (char *)(r->params + nparams);
    for (int i = 0; i < nparams; i++) {
        if (!params[i])
            continue;
        size_t n = strlen(params[i]) + 1;

        memcpy(s, params[i], n);
        r->params[i] = s;
        s += n;
    }
    memcpy(s, sql, sqllen);
    r->sql = s;
    r->hash = sql_hash(sql);
    return r;
}

int pgpool_query_timeout(pgpool_t *p, const char *sql, int nparams, const char *const *params,
                         long timeout_ms, pgpool_cb cb, void *arg)
{
    struct req *r;

    if (!p || p->dead || !sql || !cb || nparams < 0 || nparams > 65535 ||
        (nparams > 0 && !params) || p->queued >= PGPOOL_QUEUE_MAX)
        return -1;
    r = req_new(p, sql, nparams, params);
    if (!r)
        return -1;
    r->cb = cb;
    r->arg = arg;
    if (timeout_ms > 0) {
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

        evtimer_assign(&r->deadline, p->base, deadline_cb, r);
        evtimer_add(&r->deadline, &tv);
        r->has_deadline = true;
    }
    TAILQ_INSERT_TAIL(&p->queue, r, link);
    p->queued++;
    p->queries++;
    /* Dispatch on the next loop pass, so that no callback can run inside this call. */
    if (!p->kicked) {
        p->kicked = true;
        event_active(&p->kick, EV_TIMEOUT, 1);
    }
    return 0;
}

int pgpool_query(pgpool_t *p, const char *sql, int nparams, const char *const *params, pgpool_cb cb,
                 void *arg)
{
    return pgpool_query_timeout(p, sql, nparams, params, 0, cb, arg);
}

bool pgpool_ready(const pgpool_t *p)
{
    return p && !p->dead && p->up > 0;
}

void pgpool_stats(const pgpool_t *p, struct pgpool_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!p)
        return;
    out->size = p->size;
    out->up = p->up;
    for (int i = 0; i < p->size; i++)
        if (p->conns[i].state > CONN_IDLE)
            out->busy++;
    out->queued = p->queued;
    out->queries = p->queries;
    out->errors = p->errors;
    out->timeouts = p->timeouts;
    out->reconnects = p->reconnects;
}

static void pool_free(struct pgpool *p)
{
    for (int i = 0; i < p->size; i++) {
        struct conn *c = &p->conns[i];

        event_del(&c->io);
        event_del(&c->timer);
        cancel_forget(c);
        stmt_clear(c);
        PQclear(c->result);
        PQfinish(c->pg);
    }
    event_del(&p->kick);
    free(p->conns);
    free(p->conninfo);
    free(p);
}

void pgpool_destroy(pgpool_t *p)
{
    struct req *r;

    if (!p || p->dead)
        return;
    pool_enter(p);
    p->dead = true;
    /* Callbacks may call pgpool_query (refused now) or pgpool_destroy (a no-op now). */
    for (int i = 0; i < p->size; i++) {
        struct conn *c = &p->conns[i];

        if ((r = c->req) != NULL) {
            c->req = NULL;
            r->conn = NULL;
            req_finish(p, r, NULL, "shutdown");
        }
    }
    while ((r = TAILQ_FIRST(&p->queue)) != NULL) {
        TAILQ_REMOVE(&p->queue, r, link);
        p->queued--;
        req_finish(p, r, NULL, "shutdown");
    }
    for (int i = 0; i < p->size; i++)
        if (p->conns[i].state >= CONN_IDLE)
            conn_log(LOG_INFO, &p->conns[i], "postgres connection closed", NULL);
    pool_leave(p);
}
