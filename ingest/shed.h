/* Load shedding: a write is refused (503 apply-behind, Retry-After) while the apply group is
 * more than DIARY_INGEST_MAX_LAG events behind on the partition the write would go to.
 *
 * A log that keeps every event (diary.events on Kafka is kept forever) needs none of this:
 * the backlog waits, however long. A log that drops its oldest events past a size (the
 * devbroker keeps 5 MiB a partition) would drop acknowledged writes the apply has not read
 * yet; bounding the lag keeps them. Off (0) by default; scripts/stack.sh and make bench set
 * it on the devbroker. docs/api.md, "Load shedding".
 *
 * The lag of a partition is what this process has seen acknowledged on it (the highest
 * offset of its delivery reports, plus one) less the group's next offset there (the
 * consumer_offsets row, read every interval). The partition of a key is the producer's own
 * (librdkafka's default partitioner, CRC32 of the key) over the topic's partition count.
 * When the positions could not be read for SHED_STALE_MS the guard lets every write through
 * (it cannot tell) and says so in the log and in /metrics. */
#ifndef INGEST_SHED_H
#define INGEST_SHED_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgpool.h"

#define SHED_STALE_MS 5000

typedef struct shed shed_t;

/* Reads group's positions on topic from pg every interval_ms. The strings are copied. NULL
 * on ENOMEM. */
shed_t *shed_new(struct event_base *base, pgpool_t *pg, const char *group, const char *topic,
                 int64_t max_lag, int interval_ms);

/* A delivery report: offset was acknowledged on partition. s NULL is a no-op. */
void shed_acked(shed_t *s, int32_t partition, int64_t offset);

/* The partition key goes to among partitions (> 0); the producer's partitioner. */
int32_t shed_partition_of(const char *key, int32_t partitions);

/* True when a write with key must be refused now; then *partition and *lag say why.
 * partitions: the topic's partition count (0 when not known yet: never refuses). s NULL:
 * never refuses. */
bool shed_refuse(shed_t *s, const char *key, int32_t partitions, int32_t *partition, int64_t *lag);

/* For /metrics: writes refused, the largest lag known, whether the positions are fresh. */
uint64_t shed_refused(const shed_t *s);
int64_t shed_max_lag(const shed_t *s);
bool shed_fresh(const shed_t *s);

/* Frees s. A query in flight is detached and frees its own state. NULL is a no-op. */
void shed_destroy(shed_t *s);

#endif
