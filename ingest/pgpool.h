/* Asynchronous PostgreSQL connection pool on a libevent loop. diary-ingest serves every read
 * (GET) through it, against the read replica (PG_REPLICA_URL, DIARY_READ_POOL connections).
 *
 * Model: a fixed number of libpq connections, each driven entirely by events on its socket
 * (PQconnectStart/PQconnectPoll, PQsendQueryParams or a per-connection prepared statement,
 * PQflush, PQconsumeInput/PQisBusy/PQgetResult), so the loop never blocks on the database.
 * Queries wait in one FIFO queue while every connection is busy; the queue is bounded by
 * PGPOOL_QUEUE_MAX so an overloaded or unreachable database turns into a quick refusal
 * instead of unbounded memory.
 *
 * Each SQL text is prepared once per connection (PQsendPrepare, then PQsendQueryPrepared on
 * every later use) because ingest runs a few fixed queries at a high rate; set
 * DIARY_READ_PREPARED=false to send every query unnamed (PQsendQueryParams), e.g. behind a
 * transaction-mode pooler that cannot keep named statements.
 *
 * Failures: a lost connection fails only the query running on it; the connection then
 * reconnects in the background with capped exponential backoff (50 ms doubling to 2 s) while
 * queued queries go to the other connections or wait. A query given a deadline is answered
 * "timeout" when it passes, whether still queued or running; a running one is cancelled
 * (PQcancel on a short-lived helper thread, because PQcancel blocks) and its connection is
 * reused only after the cancelled query has drained, so a late cancel can never hit a
 * later query.
 *
 * Threading: everything runs on the thread that runs the event_base given to pgpool_new;
 * no function here may be called from another thread. Callbacks run on that thread too.
 *
 * Ownership: the pool copies sql and params, so the caller's strings need not outlive the
 * call. The PGresult given to a callback belongs to the pool and is cleared when the
 * callback returns; copy what you need. err strings are valid only during the callback.
 * Error texts come from the server and may quote parameter values: the pool never logs
 * them or parameters, and callers should not either.
 */
#ifndef DIARY_PGPOOL_H
#define DIARY_PGPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <libpq-fe.h>

/* Queries that may wait for a connection; pgpool_query refuses more. */
#define PGPOOL_QUEUE_MAX 10000

typedef struct pgpool pgpool_t;

/* Called exactly once per accepted query. On success res holds the result (text format)
 * and err is NULL. On failure res is NULL and err says why: "timeout", "shutdown",
 * "connection lost: ..." or the server's error as "SEVERITY SQLSTATE: message" (for example
 * "ERROR 42601: syntax error at or near ..."). The pool clears res after cb returns. */
typedef void (*pgpool_cb)(PGresult *res, const char *err, void *arg);

struct pgpool_stats {
    int size;            /* connections configured */
    int up;              /* connections established */
    int busy;            /* connections running (or draining a cancelled) query */
    size_t queued;       /* queries waiting for a connection */
    uint64_t queries;    /* queries accepted since pgpool_new */
    uint64_t errors;     /* callbacks called with res NULL, timeouts and shutdown included */
    uint64_t timeouts;   /* of which deadlines passed */
    uint64_t reconnects; /* connections established after the first one of each slot */
};

/* Starts size connections (1..1024) to conninfo (a libpq key=value string or URL) in the
 * background and returns at once; use pgpool_ready to learn when one is up. Returns NULL
 * with err filled when conninfo does not parse or memory runs out. The caller keeps base,
 * which must outlive the pool; free the pool with pgpool_destroy. */
pgpool_t *pgpool_new(struct event_base *base, const char *conninfo, int size, char *err,
                     size_t errlen) __attribute__((warn_unused_result));

/* Queues a parameterised query (text parameters, NULL for SQL NULL; text results) and calls
 * cb exactly once, later from the event loop, never from inside this call. Returns 0, or -1
 * when the queue holds PGPOOL_QUEUE_MAX queries, the pool is shutting down or the arguments
 * are invalid (nparams outside 0..65535, sql or cb NULL); then cb is never called. */
int pgpool_query(pgpool_t *p, const char *sql, int nparams, const char *const *params, pgpool_cb cb,
                 void *arg) __attribute__((warn_unused_result));

/* Like pgpool_query with a deadline: when no answer arrived within timeout_ms (waiting in the
 * queue included), cb gets res NULL and err "timeout", and a running query is cancelled.
 * timeout_ms <= 0 means no deadline. */
int pgpool_query_timeout(pgpool_t *p, const char *sql, int nparams, const char *const *params,
                         long timeout_ms, pgpool_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* True when at least one connection is up. */
bool pgpool_ready(const pgpool_t *p);

void pgpool_stats(const pgpool_t *p, struct pgpool_stats *out);

/* Calls every pending callback (queued and running queries) with err "shutdown", closes the
 * connections and frees the pool. NULL is a no-op. May be called from inside a pgpool
 * callback; the memory is then released when the pool's current event handler returns. */
void pgpool_destroy(pgpool_t *p);

#endif
