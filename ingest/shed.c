#include "shed.h"

#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "replwait.h"

#define SHED_QUERY_MS 1000

/* The query's own state, so that an answer arriving after shed_destroy finds s NULL. */
struct shed_token {
    shed_t *s;
};

struct shed {
    pgpool_t *pg;
    char *group, *topic;
    int64_t max_lag;
    struct event *tick;
    struct shed_token *inflight;
    int64_t *applied; /* by partition: the group's next offset, -1 without a row */
    size_t napplied;
    int64_t *acked; /* by partition: the highest acknowledged offset plus one */
    size_t nacked;
    int64_t read_at; /* when the positions were last read (replwait_now_ms), 0 never */
    bool stale_logged;
    uint64_t refused;
};

static void positions_read(PGresult *res, const char *err, void *arg)
{
    struct shed_token *t = arg;
    shed_t *s = t->s;

    free(t);
    if (!s)
        return;
    s->inflight = NULL;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (!s->stale_logged)
            log_warn(NULL, "load shedding: cannot read the apply positions: %s",
                     err   ? err
                     : res ? PQresultErrorMessage(res)
                           : "unknown error");
        s->stale_logged = true;
        return;
    }
    replwait_read_offsets(res, &s->applied, &s->napplied);
    s->read_at = replwait_now_ms();
    if (s->stale_logged)
        log_info(NULL, "load shedding: the apply positions are readable again");
    s->stale_logged = false;
}

static void positions_tick(evutil_socket_t fd, short what, void *arg)
{
    shed_t *s = arg;
    const char *params[2] = {s->group, s->topic};
    struct shed_token *t;

    if (s->inflight)
        return;
    t = calloc(1, sizeof(*t));
    if (!t)
        return;
    t->s = s;
    if (pgpool_query_timeout(s->pg, replwait_offsets_sql, 2, params, SHED_QUERY_MS, positions_read,
                             t) != 0) {
        free(t); /* the pool is busy: the next tick tries again */
        return;
    }
    s->inflight = t;
}

shed_t *shed_new(struct event_base *base, pgpool_t *pg, const char *group, const char *topic,
                 int64_t max_lag, int interval_ms)
{
    shed_t *s = calloc(1, sizeof(*s));
    struct timeval tv = {interval_ms / 1000, (interval_ms % 1000) * 1000};

    if (!s)
        return NULL;
    s->pg = pg;
    s->max_lag = max_lag;
    s->group = strdup(group);
    s->topic = strdup(topic);
    s->tick = event_new(base, -1, EV_PERSIST, positions_tick, s);
    if (!s->group || !s->topic || !s->tick || event_add(s->tick, &tv) != 0) {
        shed_destroy(s);
        return NULL;
    }
    return s;
}

void shed_acked(shed_t *s, int32_t partition, int64_t offset)
{
    int64_t *acked = s ? replwait_slot(&s->acked, &s->nacked, partition, 0) : NULL;

    if (acked && offset + 1 > *acked)
        *acked = offset + 1;
}

int32_t shed_partition_of(const char *key, int32_t partitions)
{
    /* librdkafka's own: the default partitioner (consistent_random) is this one for a key
     * that is not empty, and it uses none of the other arguments. */
    return rd_kafka_msg_partitioner_consistent(NULL, key, strlen(key), partitions, NULL, NULL);
}

/* A partition the group has no row for has applied nothing: its log starts at 0. */
static int64_t lag_of(const shed_t *s, size_t p)
{
    int64_t applied = p < s->napplied && s->applied[p] > 0 ? s->applied[p] : 0;
    int64_t acked = p < s->nacked ? s->acked[p] : 0;

    return acked > applied ? acked - applied : 0;
}

bool shed_fresh(const shed_t *s)
{
    return s->read_at > 0 && replwait_now_ms() - s->read_at <= SHED_STALE_MS;
}

bool shed_refuse(shed_t *s, const char *key, int32_t partitions, int32_t *partition, int64_t *lag)
{
    int32_t p;
    int64_t l;

    if (!s || partitions <= 0 || !key || !*key || !shed_fresh(s))
        return false;
    p = shed_partition_of(key, partitions);
    if (p < 0 || (l = lag_of(s, (size_t)p)) <= s->max_lag)
        return false;
    *partition = p;
    *lag = l;
    s->refused++;
    return true;
}

uint64_t shed_refused(const shed_t *s)
{
    return s ? s->refused : 0;
}

int64_t shed_max_lag(const shed_t *s)
{
    int64_t max = 0;

    for (size_t p = 0; s && p < s->nacked; p++) {
        int64_t l = lag_of(s, p);

        if (l > max)
            max = l;
    }
    return max;
}

void shed_destroy(shed_t *s)
{
    if (!s)
        return;
    if (s->inflight)
        s->inflight->s = NULL;
    if (s->tick)
        event_free(s->tick);
    free(s->applied);
    free(s->acked);
    free(s->group);
    free(s->topic);
    free(s);
}
