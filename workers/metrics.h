/* What the worker's consumer thread counts and its HTTP thread reports (/metrics, /readyz).
 * Every field is a C11 atomic: one thread writes it, the other reads it, without locks. */
#ifndef DIARY_WORKER_METRICS_H
#define DIARY_WORKER_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Partitions whose lag is reported; higher ones are applied but not reported. */
#define METRICS_MAX_PARTITIONS 256
#define METRICS_BATCH_BUCKETS  8

/* Upper bounds of the batch size histogram's buckets (the last one is +Inf). */
static const unsigned metrics_batch_bounds[METRICS_BATCH_BUCKETS] = {1,   5,   10,  50,
                                                                     100, 250, 500, 1000};

struct worker_metrics {
    atomic_uint_fast64_t applied, rejected, duplicates, dead_letters;
    atomic_uint_fast64_t batches, failed_batches, stale_batches, apply_errors;
    atomic_uint_fast64_t batch_size_bucket[METRICS_BATCH_BUCKETS]; /* not cumulative */
    atomic_uint_fast64_t batch_size_sum, batch_size_inf;
    atomic_uint_fast64_t batch_us_sum, last_batch_us;
    atomic_uint_fast64_t outbox_published, outbox_errors, outbox_us_sum;
    atomic_uint_fast64_t db_reconnects;
    atomic_int assigned_partitions;
    atomic_bool kafka_joined; /* the group gave this member an assignment (maybe empty) */
    atomic_bool kafka_down;   /* all brokers down, reported by librdkafka */
    atomic_bool pg_ok;
    /* lag[p]: high watermark minus the next offset to apply; -1 when p is not assigned. */
    atomic_int_fast64_t lag[METRICS_MAX_PARTITIONS];
};

static inline void metrics_init(struct worker_metrics *m)
{
    for (int i = 0; i < METRICS_MAX_PARTITIONS; i++)
        atomic_init(&m->lag[i], -1);
}

static inline void metrics_batch(struct worker_metrics *m, size_t n, uint64_t us)
{
    int b = 0;

    while (b < METRICS_BATCH_BUCKETS && n > metrics_batch_bounds[b])
        b++;
    if (b < METRICS_BATCH_BUCKETS)
        atomic_fetch_add(&m->batch_size_bucket[b], 1);
    else
        atomic_fetch_add(&m->batch_size_inf, 1);
    atomic_fetch_add(&m->batches, 1);
    atomic_fetch_add(&m->batch_size_sum, n);
    atomic_fetch_add(&m->batch_us_sum, us);
    atomic_store(&m->last_batch_us, us);
}

static inline void metrics_lag(struct worker_metrics *m, int32_t partition, int64_t lag)
{
    if (partition >= 0 && partition < METRICS_MAX_PARTITIONS)
        atomic_store(&m->lag[partition], lag);
}

#endif
