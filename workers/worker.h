/* The worker's consumer thread: a member of the consumer group on the events topic that
 * positions its partitions at the offsets stored in PostgreSQL, applies them in batches
 * (shared/apply.h), relays each partition's outbox to the change stream (relay.h), sends
 * dead letters, and rides out PostgreSQL and broker outages without skipping anything.
 * docs/worker.md describes the whole. */
#ifndef DIARY_WORKER_WORKER_H
#define DIARY_WORKER_WORKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"

struct worker_config {
    /* Borrowed: the strings must outlive the worker (config_str's do). */
    const char *bootstrap;
    const char *pg_url;
    const char *group;
    const char *events_topic;
    const char *changes_topic;
    const char *dlq_topic;
    const char *worker_id;
    long batch_max;          /* events per transaction at most */
    long session_timeout_ms; /* the consumer group's session timeout */
    bool per_event;          /* one SQL call per event instead of the set-based path */
    long lanes;              /* apply threads, each with its own connection (>= 1) */
};

typedef struct worker worker_t;

/* Creates the consumer and the producer (nothing connects yet). m and stop are borrowed;
 * stop is set (by a signal handler) to ask for a clean shutdown. NULL with err. */
worker_t *worker_new(const struct worker_config *cfg, struct worker_metrics *m,
                     const atomic_bool *stop, char *err, size_t errlen);

/* Runs until *stop or a fatal error, then leaves the group and flushes the producer.
 * Returns 0 after a requested stop, 1 after a fatal error (logged: the log is behind the
 * database or lost events, the schema is missing, the producer failed fatally). */
int worker_run(worker_t *w) __attribute__((warn_unused_result));

/* Frees everything, closing the PostgreSQL connection. NULL is a no-op. */
void worker_destroy(worker_t *w);

#endif
