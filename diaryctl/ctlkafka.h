/* Kafka handles for diaryctl's one-shot commands: a consumer that is assigned partitions
 * explicitly (no group, no commits) and a metadata helper. */
#ifndef DIARYCTL_KAFKA_H
#define DIARYCTL_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* A consumer for reading partitions by explicit assignment. NULL with err. The caller
 * closes and destroys it. */
rd_kafka_t *ctl_reader_new(const char *bootstrap, char *err, size_t errlen);

/* The partition count of topic, or -1 with err. */
int ctl_partition_count(rd_kafka_t *rk, const char *topic, char *err, size_t errlen);

/* The bootstrap servers: --bootstrap when given, else $KAFKA_BOOTSTRAP; NULL and a message
 * on stderr when neither. */
const char *ctl_bootstrap(const char *flag);

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

struct ctl_scan {
    const char *topic;
    int64_t start;               /* RD_KAFKA_OFFSET_BEGINNING, RD_KAFKA_OFFSET_END or an offset */
    int64_t start_time_ms;       /* when > 0: start at the first message at or after this time */
    int32_t partition;           /* -1: every partition */
    bool to_end;                 /* stop at the high watermarks seen at the start */
    volatile sig_atomic_t *stop; /* set by a signal handler to stop early; may be NULL */
};

/* Called for each message in partition order; a non-zero return stops the scan. */
typedef int (*ctl_msg_cb)(const rd_kafka_message_t *m, void *arg);

/* Reads the topic as s says and calls cb for every message. Returns 0, or -1 with err. */
int ctl_scan_topic(rd_kafka_t *rk, const struct ctl_scan *s, ctl_msg_cb cb, void *arg, char *err,
                   size_t errlen) __attribute__((warn_unused_result));

/* Installs SIGINT/SIGTERM handlers that set *flag. */
void ctl_on_interrupt(volatile sig_atomic_t *flag);

/* Parses an RFC 3339 UTC time ("2026-11-24T16:00:00Z", fractional seconds allowed) or a
 * date ("2026-11-24") into unix milliseconds. Returns 0 or -1. */
int ctl_parse_time(const char *s, int64_t *ms) __attribute__((warn_unused_result));

#endif
