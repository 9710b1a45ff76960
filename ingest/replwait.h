/* Waiting for the read replica to apply a position (partition:offset of diary.events): for
 * Prefer: wait on writes and Diary-Min-Position on reads. One shared timer serves every
 * waiting request: each tick (a few milliseconds) it asks the replica, with one query, how
 * far the apply group has come on every partition (consumer_offsets), and completes each
 * waiter whose partition's next_offset has passed its offset. No timer per request. */
#ifndef INGEST_REPLWAIT_H
#define INGEST_REPLWAIT_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgpool.h"

typedef struct replwait replwait_t;

enum replwait_status {
    REPLWAIT_REACHED,  /* the replica has applied the position */
    REPLWAIT_TIMEOUT,  /* the deadline passed first */
    REPLWAIT_SHUTDOWN, /* the process is stopping */
};

/* A waiter, embedded in its owner (who recovers itself with container_of-style arithmetic).
 * The owner fills partition, offset, deadline_ms and cb; the rest is replwait's. */
struct replwait_node {
    int32_t partition;
    int64_t offset;
    int64_t deadline_ms; /* on replwait_now_ms()'s clock */
    void (*cb)(struct replwait_node *n, enum replwait_status status);
    /* Private. */
    struct replwait_node *prev, *next;
    enum replwait_status result;
    bool linked;
};

/* group and topic name the consumer_offsets rows to read; interval_ms is the tick. The
 * strings are copied. NULL on ENOMEM. */
replwait_t *replwait_new(struct event_base *base, pgpool_t *pg, const char *group,
                         const char *topic, int interval_ms);

/* Starts waiting; n->cb runs once, on a later tick, never from inside this call. */
void replwait_add(replwait_t *w, struct replwait_node *n);

/* Stops waiting without a callback. True when n was waiting (its callback will not run);
 * false when it was not (its callback already ran or is about to run in this tick). */
bool replwait_remove(replwait_t *w, struct replwait_node *n);

/* Completes every waiter with REPLWAIT_SHUTDOWN at the next tick, and any added later too. */
void replwait_shutdown(replwait_t *w);

/* Requests waiting, for /metrics. */
size_t replwait_count(const replwait_t *w);

/* The query of every partition's next offset ($1 group, $2 topic), and the reading of its
 * rows into *next_offset (by partition, grown as needed, -1 where no row was seen yet); shed.c
 * reads them too. */
extern const char replwait_offsets_sql[];
void replwait_read_offsets(const PGresult *res, int64_t **next_offset, size_t *npart);

/* The element of partition in an array by partition of *n elements, grown to hold it (new
 * elements set to fill). NULL for a partition out of range or on ENOMEM. */
int64_t *replwait_slot(int64_t **by_partition, size_t *n, long partition, int64_t fill);

/* Monotonic milliseconds. */
int64_t replwait_now_ms(void);

/* Frees w. Waiters still linked are dropped without a callback (their owners must be gone:
 * call replwait_shutdown and let the loop run first). A replica query still in flight is
 * detached and frees its own state when the pool calls back. NULL is a no-op. */
void replwait_destroy(replwait_t *w);

#endif
