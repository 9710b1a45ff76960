/* Unit tests for ingest/shed.c, load shedding: the lag of a partition from the acknowledged
 * offsets and the apply's positions, the partition of a key (CRC32, as librdkafka's default
 * partitioner), the bound (refused above it, not at it), the guard letting writes through
 * while it knows no positions or only stale ones, the counters, and a query answered after
 * shed_destroy. The connection pool is the boundary: pgpool_query_timeout is replaced here by
 * one that keeps the callback, and the tests answer it with results built by libpq
 * (tests/e2e/test_shed.sh runs the module against a real stack). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../ingest/replwait.c"
#include "../../ingest/shed.c"

/* The pool's one pending query. */
static struct {
    int calls;
    pgpool_cb cb;
    void *arg;
    char group[64], topic[64];
} q;

int pgpool_query_timeout(pgpool_t *p, const char *sql, int nparams, const char *const *params,
                         long timeout_ms, pgpool_cb cb, void *arg)
{
    (void)p;
    (void)timeout_ms;
    assert_string_equal(sql, replwait_offsets_sql);
    assert_int_equal(nparams, 2);
    snprintf(q.group, sizeof(q.group), "%s", params[0]);
    snprintf(q.topic, sizeof(q.topic), "%s", params[1]);
    q.calls++;
    q.cb = cb;
    q.arg = arg;
    return 0;
}

/* A consumer_offsets answer: n rows of (partition, next_offset). */
static PGresult *offsets(int n, const int *part, const long long *next)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc cols[2] = {{.name = (char *)"partition", .format = 0, .typid = 23, .typlen = 4},
                            {.name = (char *)"next_offset", .format = 0, .typid = 20, .typlen = 8}};
    char buf[32];

    assert_non_null(res);
    assert_int_equal(PQsetResultAttrs(res, 2, cols), 1);
    for (int i = 0; i < n; i++) {
        snprintf(buf, sizeof(buf), "%d", part[i]);
        assert_int_equal(PQsetvalue(res, i, 0, buf, (int)strlen(buf)), 1);
        snprintf(buf, sizeof(buf), "%lld", next[i]);
        assert_int_equal(PQsetvalue(res, i, 1, buf, (int)strlen(buf)), 1);
    }
    return res;
}

/* Runs one tick and answers its query with res (NULL: a failed query). */
static void poll_with(shed_t *s, PGresult *res)
{
    int before = q.calls;

    positions_tick(-1, 0, s);
    assert_int_equal(q.calls, before + 1);
    q.cb(res, res ? NULL : "connection lost", q.arg);
    if (res)
        PQclear(res);
}

/* Every test but the first: an event base and a shed with the bound 5 whose tick never fires
 * by itself (the tests call positions_tick). */
struct fixture {
    struct event_base *base;
    shed_t *s;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f || !(f->base = event_base_new()))
        return -1;
    f->s = shed_new(f->base, NULL, "diary-apply", "diary.events", 5, 3600 * 1000);
    *state = f;
    return f->s ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    shed_destroy(f->s);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* A key that goes to partition p of 12 (found with the function under test, whose value is
 * pinned to CRC32 separately). */
static const char *key_on(int32_t p)
{
    static char k[32];

    for (int i = 0;; i++) {
        snprintf(k, sizeof(k), "user-%d", i);
        if (shed_partition_of(k, 12) == p)
            return k;
    }
}

static void partition_is_crc32_of_the_key(void **state)
{
    (void)state;
    /* zlib.crc32(key) % 12, computed outside librdkafka. */
    assert_int_equal(shed_partition_of("ada", 12), 2372962152u % 12);
    assert_int_equal(shed_partition_of("0b6f2c1e-1111-4222-8333-444455556666", 12),
                     3417634532u % 12);
    assert_int_equal(shed_partition_of("user-7", 12), 2537939745u % 12);
    assert_int_equal(shed_partition_of("user-7", 1), 0);
}

static void refuses_above_the_bound_on_that_partition_only(void **state)
{
    shed_t *s = ((struct fixture *)*state)->s;
    int32_t part = -1;
    int64_t lag = -1;

    /* Partition 3: offsets 0..99 acknowledged, the group at 94: lag 6. Partition 4: offsets
     * up to 9 acknowledged, no row for the group (it applied nothing): lag 10. Partition 7:
     * lag exactly the bound. */
    shed_acked(s, 3, 99);
    shed_acked(s, 3, 50); /* an earlier report does not lower it */
    shed_acked(s, 4, 9);
    shed_acked(s, 7, 24);
    /* No positions read yet: cannot tell, lets it through. */
    assert_false(shed_refuse(s, key_on(3), 12, &part, &lag));
    assert_false(shed_fresh(s));

    poll_with(s, offsets(3, (int[]){3, 7, 9}, (long long[]){94, 20, 0}));
    assert_string_equal(q.group, "diary-apply");
    assert_string_equal(q.topic, "diary.events");
    assert_true(shed_fresh(s));

    assert_true(shed_refuse(s, key_on(3), 12, &part, &lag));
    assert_int_equal(part, 3);
    assert_int_equal(lag, 6);
    assert_true(shed_refuse(s, key_on(4), 12, &part, &lag));
    assert_int_equal(part, 4);
    assert_int_equal(lag, 10);
    assert_false(shed_refuse(s, key_on(7), 12, &part, &lag)); /* 5: at the bound */
    assert_false(shed_refuse(s, key_on(9), 12, &part, &lag)); /* nothing acknowledged */
    assert_false(shed_refuse(s, key_on(3), 0, &part, &lag));  /* partition count unknown */
    assert_false(shed_refuse(s, "", 12, &part, &lag));
    assert_int_equal(shed_refused(s), 2);
    assert_int_equal(shed_max_lag(s), 10);

    /* The apply moves on: partition 3 at 95 is at the bound again. */
    poll_with(s, offsets(1, (int[]){3}, (long long[]){95}));
    assert_false(shed_refuse(s, key_on(3), 12, &part, &lag));
    assert_int_equal(shed_max_lag(s), 10);
}

static void stale_positions_let_writes_through(void **state)
{
    shed_t *s = ((struct fixture *)*state)->s;
    int32_t part;
    int64_t lag;

    shed_acked(s, 3, 99);
    poll_with(s, offsets(1, (int[]){3}, (long long[]){0}));
    assert_true(shed_refuse(s, key_on(3), 12, &part, &lag));
    /* A failed query keeps the last positions, still fresh. */
    poll_with(s, NULL);
    assert_true(shed_refuse(s, key_on(3), 12, &part, &lag));
    /* Read longer ago than SHED_STALE_MS: the guard cannot tell. */
    s->read_at = replwait_now_ms() - SHED_STALE_MS - 1;
    assert_false(shed_fresh(s));
    assert_false(shed_refuse(s, key_on(3), 12, &part, &lag));
    /* Read again: refuses again. */
    poll_with(s, offsets(1, (int[]){3}, (long long[]){0}));
    assert_true(shed_refuse(s, key_on(3), 12, &part, &lag));
    assert_int_equal(shed_refused(s), 3);
}

static void one_query_at_a_time_and_an_answer_after_destroy(void **state)
{
    struct fixture *f = *state;
    PGresult *res = offsets(1, (int[]){0}, (long long[]){1});
    int before = q.calls;

    positions_tick(-1, 0, f->s);
    positions_tick(-1, 0, f->s); /* the first is still in flight: no second query */
    assert_int_equal(q.calls, before + 1);
    shed_destroy(f->s);
    f->s = NULL;
    q.cb(res, NULL, q.arg); /* finds the token detached and frees it (ASan checks) */
    PQclear(res);
    /* NULL is a no-op everywhere a caller may hold NULL. */
    shed_acked(NULL, 0, 1);
    assert_int_equal(shed_refused(NULL), 0);
    assert_int_equal(shed_max_lag(NULL), 0);
    shed_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(partition_is_crc32_of_the_key),
        cmocka_unit_test_setup_teardown(refuses_above_the_bound_on_that_partition_only, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(stale_positions_let_writes_through, setup, teardown),
        cmocka_unit_test_setup_teardown(one_query_at_a_time_and_an_answer_after_destroy, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
