/* Integration tests for ingest/pgpool against a real PostgreSQL. Unit tests link only
 * libdiary.a, so the module's source is included here directly.
 *
 * PGPOOL_TEST_URL (a libpq URL) names the server; tests that need it skip without it.
 * PGPOOL_TEST_RESTART, when set, is a shell command that restarts that server (waiting until
 * it is up again); the restart test skips without it. PGPOOL_BENCH=1 adds a timing of
 * prepared against unnamed statements. tests/e2e/test_pgpool.sh sets all of this up. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../ingest/pgpool.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>

/* Set while a test is inside pgpool_query: a callback seeing it set breaks the contract. */
static bool in_query_call;
static bool called_inside_query;

struct fixture {
    struct event_base *base;
    struct event *tick; /* keeps EVLOOP_ONCE from blocking longer than a tick */
    pgpool_t *pool;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Drives the loop until cond holds or secs have passed. */
#define RUN_UNTIL(f, cond, secs)                                                                   \
    do {                                                                                           \
        double until_ = now_s() + (secs);                                                          \
        while (!(cond) && now_s() < until_)                                                        \
            event_base_loop((f)->base, EVLOOP_ONCE);                                               \
    } while (0)

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
}

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct timeval tv = {0, 20000};

    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->tick = event_new(f->base, -1, EV_PERSIST, tick_cb, NULL);
    assert_non_null(f->tick);
    event_add(f->tick, &tv);
    in_query_call = false;
    called_inside_query = false;
    *state = f;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;

    pgpool_destroy(f->pool);
    event_free(f->tick);
    event_base_free(f->base);
    free(f);
    return 0;
}

static const char *test_url(void)
{
    const char *u = getenv("PGPOOL_TEST_URL");

    if (!u || !*u)
        skip();
    return u;
}

/* Starts a pool and waits until all its connections are up. */
static void start_pool(struct fixture *f, const char *url, int size)
{
    char err[256] = "";

    f->pool = pgpool_new(f->base, url, size, err, sizeof(err));
    if (!f->pool)
        fail_msg("pgpool_new: %s", err);
    RUN_UNTIL(f, f->pool->up == size, 10);
    assert_int_equal(f->pool->up, size);
    assert_true(pgpool_ready(f->pool));
}

static int query(pgpool_t *p, const char *sql, int n, const char *const *params, long ms,
                 pgpool_cb cb, void *arg)
{
    int rc;

    in_query_call = true;
    rc = pgpool_query_timeout(p, sql, n, params, ms, cb, arg);
    in_query_call = false;
    return rc;
}

/* A blocking side connection for test set-up (terminating backends, DDL). */
static void side_exec(const char *url, const char *sql, int n, const char *const *params)
{
    PGconn *pg = PQconnectdb(url);
    PGresult *res;

    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    res = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
    if (!result_ok(res))
        fail_msg("side query failed: %s", PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(pg);
}

static void terminate_pool_backends(struct fixture *f, const char *url, int *pids)
{
    char arr[256] = "{";
    const char *params[1] = {arr};

    for (int i = 0; i < f->pool->size; i++) {
        assert_non_null(f->pool->conns[i].pg);
        pids[i] = PQbackendPID(f->pool->conns[i].pg);
        snprintf(arr + strlen(arr), sizeof(arr) - strlen(arr), "%s%d", i ? "," : "", pids[i]);
    }
    strcat(arr, "}");
    side_exec(url, "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", 1, params);
}

/* One answer, kept for inspection after the loop ran. */
struct answer {
    bool done;
    bool ok;
    bool isnull;
    char err[512];
    char *value; /* first column of the first row, malloc'd */
    int ntuples;
    double at;
};

static void answer_cb(PGresult *res, const char *err, void *arg)
{
    struct answer *a = arg;

    if (in_query_call)
        called_inside_query = true;
    a->done = true;
    a->at = now_s();
    a->ok = res != NULL;
    if (err)
        snprintf(a->err, sizeof(a->err), "%s", err);
    if (res) {
        a->ntuples = PQntuples(res);
        if (a->ntuples > 0 && PQnfields(res) > 0) {
            a->isnull = PQgetisnull(res, 0, 0);
            a->value = strdup(PQgetvalue(res, 0, 0));
        }
    }
}

static void answer_reset(struct answer *a)
{
    free(a->value);
    memset(a, 0, sizeof(*a));
}

static void assert_answer(const struct answer *a, const char *value)
{
    assert_true(a->done);
    if (!a->ok)
        fail_msg("query failed: %s", a->err);
    assert_non_null(a->value);
    assert_string_equal(a->value, value);
}

static void assert_failed_with(const struct answer *a, const char *text)
{
    assert_true(a->done);
    assert_false(a->ok);
    if (!strstr(a->err, text))
        fail_msg("error \"%s\" does not contain \"%s\"", a->err, text);
}

/* ---- many concurrent queries ------------------------------------------------------------ */

struct many {
    int done, ok, bad;
};

struct many_item {
    struct many *m;
    int i;
};

static void many_cb(PGresult *res, const char *err, void *arg)
{
    struct many_item *it = arg;
    char want[32];

    if (in_query_call)
        called_inside_query = true;
    it->m->done++;
    snprintf(want, sizeof(want), "n%d!", it->i);
    if (res && PQntuples(res) == 1 && atoi(PQgetvalue(res, 0, 0)) == it->i * 2 &&
        strcmp(PQgetvalue(res, 0, 1), want) == 0)
        it->m->ok++;
    else
        it->m->bad++;
}

static void run_many(struct fixture *f, int n, double *secs)
{
    struct many m = {0};
    struct many_item *items = calloc((size_t)n, sizeof(*items));
    double t0 = now_s();

    assert_non_null(items);
    for (int i = 0; i < n; i++) {
        char a[16], b[16];
        const char *params[2] = {a, b};

        snprintf(a, sizeof(a), "%d", i);
        snprintf(b, sizeof(b), "n%d", i);
        items[i].m = &m;
        items[i].i = i;
        /* The pool copies params: a and b go out of scope right away. */
        assert_int_equal(
            query(f->pool, "SELECT $1::int * 2, $2::text || '!'", 2, params, 0, many_cb, &items[i]),
            0);
    }
    assert_int_equal(m.done, 0);
    RUN_UNTIL(f, m.done == n, 60);
    *secs = now_s() - t0;
    free(items);
    assert_int_equal(m.done, n);
    assert_int_equal(m.ok, n);
    assert_int_equal(m.bad, 0);
}

static void test_many_concurrent_queries(void **state)
{
    struct fixture *f = *state;
    struct pgpool_stats st;
    double secs;

    start_pool(f, test_url(), 4);
    run_many(f, 2000, &secs);
    print_message("2000 queries on 4 connections in %.3f s\n", secs);
    assert_false(called_inside_query);
    pgpool_stats(f->pool, &st);
    assert_int_equal(st.size, 4);
    assert_int_equal(st.up, 4);
    assert_int_equal(st.busy, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.queries, 2000);
    assert_int_equal(st.errors, 0);
}

/* ---- parameters with odd bytes ---------------------------------------------------------- */

static void test_odd_parameters(void **state)
{
    struct fixture *f = *state;
    static const char *const odd[] = {
        "it's", "\"double\" quotes", "back\\slash \\x00",  "semi; DROP TABLE x; --", "$1 $2 %s %n",
        "",     "tab\tnew\nline",    "ünïcödé ✓ 🍎 食べ物", "E'\\'' ; '' \"",
    };
    struct answer a = {0};
    size_t bign = 2 * 1024 * 1024;
    char *big;

    start_pool(f, test_url(), 2);
    big = malloc(bign + 1);
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        const char *params[1] = {odd[i]};

        answer_reset(&a);
        assert_int_equal(query(f->pool, "SELECT $1::text", 1, params, 0, answer_cb, &a), 0);
        RUN_UNTIL(f, a.done, 10);
        assert_answer(&a, odd[i]);
    }

    /* SQL NULL. */
    {
        const char *params[1] = {NULL};

        answer_reset(&a);
        assert_int_equal(query(f->pool, "SELECT $1::text", 1, params, 0, answer_cb, &a), 0);
        RUN_UNTIL(f, a.done, 10);
        assert_true(a.ok);
        assert_true(a.isnull);
    }

    /* Megabytes through small socket buffers: the send goes through PQflush returning 1 and
     * EV_WRITE, and the answer through many reads. */
    assert_non_null(big);
    for (size_t i = 0; i < bign; i++)
        big[i] = (char)('a' + i % 26);
    big[bign] = '\0';
    for (int i = 0; i < f->pool->size; i++) {
        int small = 4096;

        assert_int_equal(setsockopt(PQsocket(f->pool->conns[i].pg), SOL_SOCKET, SO_SNDBUF, &small,
                                    sizeof(small)),
                         0);
    }
    {
        const char *params[1] = {big};
        bool saw_flushing = false;
        double until = now_s() + 20;

        answer_reset(&a);
        assert_int_equal(query(f->pool, "SELECT $1::text", 1, params, 0, answer_cb, &a), 0);
        while (!a.done && now_s() < until) {
            event_base_loop(f->base, EVLOOP_ONCE);
            for (int i = 0; i < f->pool->size; i++)
                saw_flushing = saw_flushing || f->pool->conns[i].flushing;
        }
        assert_answer(&a, big);
        assert_true(saw_flushing);
    }
    free(big);

    /* Bytes that are not UTF-8 are refused by the server, and only that query fails. */
    {
        const char *params[1] = {"bad \xff\xfe bytes"};

        answer_reset(&a);
        assert_int_equal(query(f->pool, "SELECT $1::text", 1, params, 0, answer_cb, &a), 0);
        RUN_UNTIL(f, a.done, 10);
        assert_failed_with(&a, "22021");
    }
    {
        const char *params[1] = {"still fine"};

        answer_reset(&a);
        assert_int_equal(query(f->pool, "SELECT $1::text", 1, params, 0, answer_cb, &a), 0);
        RUN_UNTIL(f, a.done, 10);
        assert_answer(&a, "still fine");
    }
    answer_reset(&a);
    assert_false(called_inside_query);
}

/* ---- query errors ----------------------------------------------------------------------- */

static void query_error(struct fixture *f, const char *sql, const char *param, const char *text)
{
    struct answer a = {0};
    const char *params[1] = {param};

    assert_int_equal(query(f->pool, sql, param ? 1 : 0, params, 0, answer_cb, &a), 0);
    RUN_UNTIL(f, a.done, 10);
    assert_failed_with(&a, text);
    answer_reset(&a);
}

static void query_value(struct fixture *f, const char *sql, const char *param, const char *value)
{
    struct answer a = {0};
    const char *params[1] = {param};

    assert_int_equal(query(f->pool, sql, param ? 1 : 0, params, 0, answer_cb, &a), 0);
    RUN_UNTIL(f, a.done, 10);
    assert_answer(&a, value);
    answer_reset(&a);
}

static void test_query_errors(void **state)
{
    struct fixture *f = *state;
    struct pgpool_stats st;

    /* One connection, so every query below runs on the connection the errors hit. */
    start_pool(f, test_url(), 1);
    query_error(f, "SELEKT 1", NULL, "ERROR 42601: syntax error");
    query_error(f, "SELEKT 1", NULL, "42601"); /* a failed prepare is not cached */
    query_error(f, "SELECT * FROM no_such_table_pgpool", NULL, "42P01");
    query_error(f, "SELECT $1::int", "abc", "22P02");
    query_error(f, "SELECT 10 / $1::int", "0", "22012");
    /* The statement prepared for the failed execute is reused and works. */
    query_value(f, "SELECT 10 / $1::int", "5", "2");
    query_value(f, "SELECT 7", NULL, "7");
    pgpool_stats(f->pool, &st);
    assert_int_equal(st.errors, 5);
    assert_int_equal(st.up, 1);
    assert_int_equal(st.reconnects, 0);
}

/* A prepared statement whose result type changed under it (0A000) is prepared again. */
static void test_stale_prepared_statement_is_prepared_again(void **state)
{
    struct fixture *f = *state;
    const char *url = test_url();
    char create[128], alter[128], drop[128], select[128];
    struct answer a = {0};

    snprintf(create, sizeof(create), "CREATE TABLE pgpool_stale_%d (a int)", (int)getpid());
    snprintf(alter, sizeof(alter), "ALTER TABLE pgpool_stale_%d ADD COLUMN b int", (int)getpid());
    snprintf(drop, sizeof(drop), "DROP TABLE pgpool_stale_%d", (int)getpid());
    side_exec(url, create, 0, NULL);
    start_pool(f, url, 1);
    snprintf(select, sizeof(select), "SELECT * FROM pgpool_stale_%d", (int)getpid());
    assert_int_equal(query(f->pool, select, 0, NULL, 0, answer_cb, &a), 0);
    RUN_UNTIL(f, a.done, 10);
    assert_true(a.ok);
    answer_reset(&a);
    side_exec(url, alter, 0, NULL);
    assert_int_equal(query(f->pool, select, 0, NULL, 0, answer_cb, &a), 0);
    RUN_UNTIL(f, a.done, 10);
    assert_failed_with(&a, "0A000");
    answer_reset(&a);
    assert_int_equal(query(f->pool, select, 0, NULL, 0, answer_cb, &a), 0);
    RUN_UNTIL(f, a.done, 10);
    assert_true(a.ok);
    answer_reset(&a);
    side_exec(url, drop, 0, NULL);
}

/* ---- lost connections ------------------------------------------------------------------- */

static void test_terminated_backends_fail_only_their_queries(void **state)
{
    struct fixture *f = *state;
    const char *url = test_url();
    struct answer sleeps[4] = {{0}}, quick[4] = {{0}};
    int old[4], now[4];
    struct pgpool_stats st;
    double secs;

    start_pool(f, url, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(query(f->pool, "SELECT pg_sleep(30)", 0, NULL, 0, answer_cb, &sleeps[i]),
                         0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(query(f->pool, "SELECT 42", 0, NULL, 0, answer_cb, &quick[i]), 0);
    RUN_UNTIL(f,
              f->pool->conns[0].state == CONN_RUNNING && f->pool->conns[1].state == CONN_RUNNING &&
                  f->pool->conns[2].state == CONN_RUNNING &&
                  f->pool->conns[3].state == CONN_RUNNING,
              10);
    pgpool_stats(f->pool, &st);
    assert_int_equal(st.busy, 4);
    assert_int_equal(st.queued, 4);

    terminate_pool_backends(f, url, old);
    RUN_UNTIL(f,
              sleeps[0].done && sleeps[1].done && sleeps[2].done && sleeps[3].done &&
                  quick[0].done && quick[1].done && quick[2].done && quick[3].done,
              15);
    for (int i = 0; i < 4; i++) {
        /* Either the server's FATAL reached us or only the EOF did. */
        assert_true(sleeps[i].done);
        assert_false(sleeps[i].ok);
        if (!strstr(sleeps[i].err, "57P01") && !strstr(sleeps[i].err, "connection lost"))
            fail_msg("unexpected error: %s", sleeps[i].err);
        assert_answer(&quick[i], "42");
        answer_reset(&sleeps[i]);
        answer_reset(&quick[i]);
    }
    RUN_UNTIL(f, f->pool->up == 4, 10);
    pgpool_stats(f->pool, &st);
    assert_int_equal(st.up, 4);
    assert_true(st.reconnects >= 4);
    for (int i = 0; i < 4; i++) {
        now[i] = PQbackendPID(f->pool->conns[i].pg);
        for (int j = 0; j < 4; j++)
            assert_int_not_equal(now[i], old[j]);
    }
    run_many(f, 100, &secs);

    /* Idle connections terminated: the pool notices on its own and reconnects. */
    terminate_pool_backends(f, url, old);
    RUN_UNTIL(f, f->pool->reconnects >= st.reconnects + 4 && f->pool->up == 4, 10);
    assert_int_equal(f->pool->up, 4);
    assert_true(f->pool->reconnects >= st.reconnects + 4);
    run_many(f, 100, &secs);
    assert_false(called_inside_query);
}

static void test_server_restart(void **state)
{
    struct fixture *f = *state;
    const char *url = test_url();
    const char *restart = getenv("PGPOOL_TEST_RESTART");
    struct answer sleeps[2] = {{0}};
    double secs;

    if (!restart || !*restart)
        skip();
    start_pool(f, url, 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(query(f->pool, "SELECT pg_sleep(30)", 0, NULL, 0, answer_cb, &sleeps[i]),
                         0);
    RUN_UNTIL(f, f->pool->conns[0].state == CONN_RUNNING && f->pool->conns[1].state == CONN_RUNNING,
              10);
    /* Blocks the loop while the server restarts: the pool finds out afterwards. */
    assert_int_equal(system(restart), 0);
    RUN_UNTIL(f, sleeps[0].done && sleeps[1].done, 15);
    for (int i = 0; i < 2; i++) {
        assert_true(sleeps[i].done);
        assert_false(sleeps[i].ok);
        answer_reset(&sleeps[i]);
    }
    RUN_UNTIL(f, f->pool->up == 2, 15);
    assert_true(pgpool_ready(f->pool));
    run_many(f, 200, &secs);
}

/* ---- deadlines -------------------------------------------------------------------------- */

static void test_timeout_cancels_and_connection_is_reused(void **state)
{
    struct fixture *f = *state;
    struct answer slow = {0}, next = {0};
    struct pgpool_stats st;
    double t0;

    start_pool(f, test_url(), 1);
    t0 = now_s();
    assert_int_equal(query(f->pool, "SELECT pg_sleep(2)", 0, NULL, 100, answer_cb, &slow), 0);
    RUN_UNTIL(f, slow.done, 5);
    assert_failed_with(&slow, "timeout");
    assert_true(slow.at - t0 < 0.6);
    /* Only one connection: the next query runs on the cancelled one, well before the 2 s
     * pg_sleep would have ended had the cancel not worked. */
    assert_int_equal(query(f->pool, "SELECT 'after'", 0, NULL, 0, answer_cb, &next), 0);
    RUN_UNTIL(f, next.done, 5);
    assert_answer(&next, "after");
    assert_true(next.at - t0 < 1.5);
    pgpool_stats(f->pool, &st);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.up, 1);
    assert_int_equal(st.reconnects, 0);
    answer_reset(&slow);
    answer_reset(&next);
}

static void test_timeout_while_queued(void **state)
{
    struct fixture *f = *state;
    struct answer busy = {0}, queued = {0}, in_time = {0};
    double t0;

    start_pool(f, test_url(), 1);
    t0 = now_s();
    assert_int_equal(
        query(f->pool, "SELECT pg_sleep(0.5)::text || 'slept'", 0, NULL, 0, answer_cb, &busy), 0);
    assert_int_equal(query(f->pool, "SELECT 2", 0, NULL, 100, answer_cb, &queued), 0);
    assert_int_equal(query(f->pool, "SELECT 3", 0, NULL, 5000, answer_cb, &in_time), 0);
    RUN_UNTIL(f, queued.done, 5);
    assert_failed_with(&queued, "timeout");
    assert_false(busy.done);
    assert_true(queued.at - t0 < 0.45);
    RUN_UNTIL(f, busy.done && in_time.done, 5);
    assert_answer(&busy, "slept");
    assert_answer(&in_time, "3");
    answer_reset(&busy);
    answer_reset(&queued);
    answer_reset(&in_time);
}

/* ---- shutdown --------------------------------------------------------------------------- */

struct shutdown_count {
    int ok, shutdown, other;
    pgpool_t *destroy_me; /* destroyed by the first successful callback */
};

static void shutdown_cb(PGresult *res, const char *err, void *arg)
{
    struct shutdown_count *s = arg;

    if (in_query_call)
        called_inside_query = true;
    if (res)
        s->ok++;
    else if (strcmp(err, "shutdown") == 0)
        s->shutdown++;
    else
        s->other++;
    if (res && s->destroy_me) {
        pgpool_t *p = s->destroy_me;

        s->destroy_me = NULL;
        /* Refused while shutting down, and never called back. */
        pgpool_destroy(p);
        assert_int_equal(pgpool_query(p, "SELECT 1", 0, NULL, shutdown_cb, s), -1);
    }
}

static void test_destroy_with_queued_queries(void **state)
{
    struct fixture *f = *state;
    struct shutdown_count s = {0};

    start_pool(f, test_url(), 2);
    for (int i = 0; i < 50; i++)
        assert_int_equal(
            query(f->pool, "SELECT pg_sleep(0.5)", 0, NULL, i % 2 ? 10000 : 0, shutdown_cb, &s), 0);
    RUN_UNTIL(f, f->pool->conns[0].state == CONN_RUNNING && f->pool->conns[1].state == CONN_RUNNING,
              10);
    assert_int_equal(s.shutdown + s.ok + s.other, 0);
    pgpool_destroy(f->pool);
    f->pool = NULL;
    assert_int_equal(s.shutdown, 50);
    assert_int_equal(s.ok + s.other, 0);
    /* Nothing of the pool is left on the loop. */
    RUN_UNTIL(f, false, 0.2);
    assert_int_equal(s.shutdown, 50);
}

static void test_destroy_inside_callback(void **state)
{
    struct fixture *f = *state;
    struct shutdown_count s = {0};

    start_pool(f, test_url(), 1);
    s.destroy_me = f->pool;
    for (int i = 0; i < 11; i++)
        assert_int_equal(query(f->pool, "SELECT 1", 0, NULL, 5000, shutdown_cb, &s), 0);
    f->pool = NULL;
    RUN_UNTIL(f, s.ok + s.shutdown == 11, 10);
    assert_int_equal(s.ok, 1);
    assert_int_equal(s.shutdown, 10);
    assert_int_equal(s.other, 0);
    RUN_UNTIL(f, false, 0.2);
    assert_int_equal(s.ok + s.shutdown + s.other, 11);
}

/* ---- without a server ------------------------------------------------------------------- */

static void test_queue_bound_and_unreachable_server(void **state)
{
    struct fixture *f = *state;
    struct shutdown_count s = {0};
    struct pgpool_stats st;
    char err[256];

    /* Nothing listens on port 1: every attempt is refused and retried with backoff. */
    f->pool = pgpool_new(f->base, "postgresql://127.0.0.1:1/none", 2, err, sizeof(err));
    assert_non_null(f->pool);
    RUN_UNTIL(f, false, 0.3);
    assert_false(pgpool_ready(f->pool));
    assert_true(f->pool->conns[0].backoff_ms > BACKOFF_MIN_MS);
    for (int i = 0; i < PGPOOL_QUEUE_MAX; i++)
        assert_int_equal(query(f->pool, "SELECT 1", 0, NULL, 0, shutdown_cb, &s), 0);
    assert_int_equal(query(f->pool, "SELECT 1", 0, NULL, 0, shutdown_cb, &s), -1);
    assert_int_equal(query(f->pool, NULL, 0, NULL, 0, shutdown_cb, &s), -1);
    assert_int_equal(query(f->pool, "SELECT $1", 1, NULL, 0, shutdown_cb, &s), -1);
    assert_int_equal(query(f->pool, "SELECT 1", -1, NULL, 0, shutdown_cb, &s), -1);
    RUN_UNTIL(f, false, 0.2);
    pgpool_stats(f->pool, &st);
    assert_int_equal(st.up, 0);
    assert_int_equal(st.queued, PGPOOL_QUEUE_MAX);
    assert_int_equal(st.queries, PGPOOL_QUEUE_MAX);
    assert_int_equal(s.ok + s.shutdown + s.other, 0);
    pgpool_destroy(f->pool);
    f->pool = NULL;
    assert_int_equal(s.shutdown, PGPOOL_QUEUE_MAX);
    assert_false(called_inside_query);
}

/* With no connection up, a queued query still fails by its deadline. */
static void test_deadline_while_server_is_down(void **state)
{
    struct fixture *f = *state;
    struct answer a = {0};
    char err[256];
    double t0 = now_s();

    f->pool = pgpool_new(f->base, "postgresql://127.0.0.1:1/none", 1, err, sizeof(err));
    assert_non_null(f->pool);
    assert_int_equal(query(f->pool, "SELECT 1", 0, NULL, 150, answer_cb, &a), 0);
    RUN_UNTIL(f, a.done, 5);
    assert_failed_with(&a, "timeout");
    assert_true(a.at - t0 >= 0.14 && a.at - t0 < 1.0);
    assert_int_equal(f->pool->queued, 0);
    answer_reset(&a);
}

/* A server that accepts the TCP connection but never answers: the attempt is abandoned after
 * the conninfo's connect_timeout (libpq itself ignores it in non-blocking mode). */
static void test_connect_timeout_against_silent_server(void **state)
{
    struct fixture *f = *state;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char url[128], err[256];
    double t0;

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 8), 0); /* the kernel completes handshakes; nobody reads */
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
    snprintf(url, sizeof(url), "postgresql://127.0.0.1:%d/x?connect_timeout=1", ntohs(sa.sin_port));
    t0 = now_s();
    f->pool = pgpool_new(f->base, url, 1, err, sizeof(err));
    assert_non_null(f->pool);
    assert_int_equal(f->pool->connect_timeout_ms, 1000);
    RUN_UNTIL(f, f->pool->conns[0].state == CONN_CONNECTING, 1);
    assert_int_equal(f->pool->conns[0].state, CONN_CONNECTING);
    RUN_UNTIL(f, f->pool->conns[0].fails > 0, 3);
    assert_int_equal(f->pool->conns[0].fails, 1);
    assert_true(now_s() - t0 >= 0.95);
    assert_false(pgpool_ready(f->pool));
    pgpool_destroy(f->pool);
    f->pool = NULL;
    close(fd);
}

/* A callback may queue the next query: a chain of 200 runs one after the other. */
struct chain {
    pgpool_t *pool;
    int left, ok;
};

static void chain_cb(PGresult *res, const char *err, void *arg)
{
    struct chain *ch = arg;
    char n[16];
    const char *params[1] = {n};

    if (res && atoi(PQgetvalue(res, 0, 0)) == ch->left)
        ch->ok++;
    if (--ch->left > 0) {
        snprintf(n, sizeof(n), "%d", ch->left);
        assert_int_equal(pgpool_query(ch->pool, "SELECT $1::int", 1, params, chain_cb, ch), 0);
    }
}

static void test_callback_queues_next_query(void **state)
{
    struct fixture *f = *state;
    struct chain ch = {.left = 200};
    const char *params[1] = {"200"};

    start_pool(f, test_url(), 2);
    ch.pool = f->pool;
    assert_int_equal(pgpool_query(f->pool, "SELECT $1::int", 1, params, chain_cb, &ch), 0);
    RUN_UNTIL(f, ch.left == 0, 20);
    assert_int_equal(ch.left, 0);
    assert_int_equal(ch.ok, 200);
}

static void test_new_rejects_bad_arguments(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";

    assert_null(pgpool_new(f->base, "host=127.0.0.1 no_such_option=1", 2, err, sizeof(err)));
    assert_non_null(strstr(err, "bad conninfo"));
    assert_null(pgpool_new(f->base, "postgresql://127.0.0.1:1/x", 0, err, sizeof(err)));
    assert_null(pgpool_new(NULL, "postgresql://127.0.0.1:1/x", 1, err, sizeof(err)));
    pgpool_destroy(NULL);
    assert_false(pgpool_ready(NULL));
}

/* ---- measurement ------------------------------------------------------------------------ */

static void test_bench_prepared_against_unnamed(void **state)
{
    struct fixture *f = *state;
    double secs[2];

    if (!getenv("PGPOOL_BENCH"))
        skip();
    start_pool(f, test_url(), 4);
    for (int round = 0; round < 2; round++) {
        f->pool->use_prepared = round == 0;
        double part;

        run_many(f, 1000, &part); /* warm up */
        secs[round] = 0;
        for (int i = 0; i < 4; i++) { /* 5000 at a time: the queue holds 10000 */
            run_many(f, 5000, &part);
            secs[round] += part;
        }
    }
    print_message("20000 queries, 4 connections: prepared %.0f/s, unnamed %.0f/s\n",
                  20000 / secs[0], 20000 / secs[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_rejects_bad_arguments, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_queue_bound_and_unreachable_server, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_deadline_while_server_is_down, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout_against_silent_server, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_many_concurrent_queries, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_callback_queues_next_query, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_odd_parameters, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_query_errors, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stale_prepared_statement_is_prepared_again,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_terminated_backends_fail_only_their_queries,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_cancels_and_connection_is_reused,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_while_queued, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_queued_queries, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_destroy_inside_callback, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_server_restart, fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_bench_prepared_against_unnamed, fixture_setup,
                                        fixture_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
