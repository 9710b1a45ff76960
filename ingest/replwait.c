#include "replwait.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define MAX_PARTITIONS   65536
#define QUERY_TIMEOUT_MS 1000

const char replwait_offsets_sql[] = "SELECT \"partition\", next_offset FROM consumer_offsets "
                                    "WHERE group_id = $1 AND topic = $2";

/* The replica query's own state, so that a reply arriving after replwait_destroy finds
 * w == NULL instead of freed memory. Freed by the query's callback. */
struct poll_token {
    replwait_t *w;
};

struct replwait {
    struct event_base *base;
    pgpool_t *pg;
    char *group, *topic;
    struct event *tick;
    struct timeval interval;
    bool tick_on, shutting;
    struct replwait_node *head, *tail;
    size_t count;
    struct poll_token *inflight;
    int64_t *next_offset; /* by partition; -1 when the replica has no row yet */
    size_t npart;
};

int64_t replwait_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void unlink_node(replwait_t *w, struct replwait_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        w->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        w->tail = n->prev;
    n->prev = n->next = NULL;
    n->linked = false;
    w->count--;
}

static bool reached(const replwait_t *w, const struct replwait_node *n)
{
    return n->partition >= 0 && (size_t)n->partition < w->npart &&
           w->next_offset[n->partition] > n->offset;
}

static void poll_cb(PGresult *res, const char *err, void *arg);

static void start_poll(replwait_t *w)
{
    const char *params[2] = {w->group, w->topic};
    struct poll_token *t;

    if (w->inflight || w->shutting || !w->head)
        return;
    t = calloc(1, sizeof(*t));
    if (!t)
        return;
    t->w = w;
    if (pgpool_query_timeout(w->pg, replwait_offsets_sql, 2, params, QUERY_TIMEOUT_MS, poll_cb,
                             t) != 0) {
        free(t); /* the pool is busy: the next tick tries again */
        return;
    }
    w->inflight = t;
}

/* Completes every waiter that is done, then calls their callbacks. Callbacks run after the
 * list is updated, so that one may add or remove waiters freely. */
static void sweep(replwait_t *w)
{
    struct replwait_node *n, *next, *done = NULL, **tail = &done;
    enum replwait_status st;
    int64_t now = replwait_now_ms();

    for (n = w->head; n; n = next) {
        next = n->next;
        if (w->shutting)
            st = REPLWAIT_SHUTDOWN;
        else if (reached(w, n))
            st = REPLWAIT_REACHED;
        else if (now >= n->deadline_ms)
            st = REPLWAIT_TIMEOUT;
        else
            continue;
        unlink_node(w, n);
        /* The done chain reuses next. */
        n->result = st;
        *tail = n;
        tail = &n->next;
    }
    if (!w->head && w->tick_on) {
        event_del(w->tick);
        w->tick_on = false;
    }
    for (n = done; n; n = next) {
        next = n->next;
        n->next = NULL;
        n->cb(n, n->result);
    }
}

int64_t *replwait_slot(int64_t **by_partition, size_t *n, long partition, int64_t fill)
{
    if (partition < 0 || partition >= MAX_PARTITIONS)
        return NULL;
    if ((size_t)partition >= *n) {
        size_t want = (size_t)partition + 1;
        int64_t *grown = realloc(*by_partition, want * sizeof(*grown));

        if (!grown)
            return NULL;
        for (size_t k = *n; k < want; k++)
            grown[k] = fill;
        *by_partition = grown;
        *n = want;
    }
    return &(*by_partition)[partition];
}

void replwait_read_offsets(const PGresult *res, int64_t **next_offset, size_t *npart)
{
    for (int i = 0; i < PQntuples(res); i++) {
        int64_t *slot =
            replwait_slot(next_offset, npart, strtol(PQgetvalue(res, i, 0), NULL, 10), -1);

        if (slot)
            *slot = strtoll(PQgetvalue(res, i, 1), NULL, 10);
    }
}

static void poll_cb(PGresult *res, const char *err, void *arg)
{
    struct poll_token *t = arg;
    replwait_t *w = t->w;

    free(t);
    if (!w)
        return;
    w->inflight = NULL;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_warn(NULL, "replica offsets query failed: %s",
                 err   ? err
                 : res ? PQresultErrorMessage(res)
                       : "unknown error");
        return;
    }
    replwait_read_offsets(res, &w->next_offset, &w->npart);
    sweep(w);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    replwait_t *w = arg;

    sweep(w);
    start_poll(w);
}

replwait_t *replwait_new(struct event_base *base, pgpool_t *pg, const char *group,
                         const char *topic, int interval_ms)
{
    replwait_t *w = calloc(1, sizeof(*w));

    if (!w)
        return NULL;
    w->base = base;
    w->pg = pg;
    w->interval.tv_sec = interval_ms / 1000;
    w->interval.tv_usec = (interval_ms % 1000) * 1000;
    w->group = strdup(group);
    w->topic = strdup(topic);
    w->tick = event_new(base, -1, EV_PERSIST, tick_cb, w);
    if (!w->group || !w->topic || !w->tick) {
        replwait_destroy(w);
        return NULL;
    }
    return w;
}

void replwait_add(replwait_t *w, struct replwait_node *n)
{
    n->next = NULL;
    n->prev = w->tail;
    if (w->tail)
        w->tail->next = n;
    else
        w->head = n;
    w->tail = n;
    n->linked = true;
    w->count++;
    if (!w->tick_on) {
        event_add(w->tick, &w->interval);
        w->tick_on = true;
    }
}

bool replwait_remove(replwait_t *w, struct replwait_node *n)
{
    if (!n->linked)
        return false;
    unlink_node(w, n);
    if (!w->head && w->tick_on) {
        event_del(w->tick);
        w->tick_on = false;
    }
    return true;
}

void replwait_shutdown(replwait_t *w)
{
    w->shutting = true;
    if (w->head && !w->tick_on) {
        event_add(w->tick, &w->interval);
        w->tick_on = true;
    }
}

size_t replwait_count(const replwait_t *w)
{
    return w->count;
}

void replwait_destroy(replwait_t *w)
{
    if (!w)
        return;
    if (w->inflight)
        w->inflight->w = NULL;
    if (w->tick)
        event_free(w->tick);
    free(w->next_offset);
    free(w->group);
    free(w->topic);
    free(w);
}
