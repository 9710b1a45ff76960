/* The worker's producer side: publishes a partition's outbox to the change stream and sends
 * dead letters, both through one idempotent producer (kafka_producer_settings), waiting for
 * the broker's acknowledgement before a row leaves the outbox or a dead letter is counted
 * as delivered. */
#ifndef DIARY_WORKER_RELAY_H
#define DIARY_WORKER_RELAY_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "apply.h"

typedef struct relay relay_t;

enum relay_status {
    RELAY_OK = 0,
    RELAY_DB_RETRY,     /* PostgreSQL failed transiently: reconnect, then drain again */
    RELAY_BROKER_RETRY, /* the broker did not acknowledge: back off, then drain again */
    RELAY_FATAL         /* the producer is unusable (fatal idempotence error) or a bug */
};

/* A producer on bootstrap named client_id. The topic names are copied. NULL with err. */
relay_t *relay_new(const char *bootstrap, const char *client_id, const char *changes_topic,
                   const char *dlq_topic, char *err, size_t errlen);

/* Flushes what is in flight (up to 10 s) and frees. NULL is a no-op. */
void relay_destroy(relay_t *r);

/* Publishes the outbox rows of partition in seq order (key user id, headers ce_type and
 * request-id), waits for every delivery report, and deletes the rows the broker
 * acknowledged, up to the first that it did not (so the stream keeps the outbox's order:
 * what follows a failure is sent again, at least once). Repeats until the outbox of the
 * partition is empty. *published counts the rows deleted. */
enum relay_status relay_drain(relay_t *r, apply_ctx_t *apply, int32_t partition,
                              uint64_t *published, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Asynchronous publishing, for the apply lanes: relay_send produces a partition's rows at
 * once (in order) and returns; relay_settle, once per pass, waits for the reports of all the
 * rows sent since the last settle, deletes every acknowledged prefix with one statement, and
 * calls settled(opaque, partition, NULL) for each partition whose rows all went out, or
 * settled(opaque, partition, why) for one whose rows did not (the rest of them stay in the
 * outbox, to be drained before the partition applies again). One wait for the acknowledgements
 * of a pass instead of one per partition and batch. relay_send returns -1 when out of memory
 * (nothing was sent). relay_settle returns RELAY_OK, RELAY_DB_RETRY when the DELETE failed
 * transiently (the rows go out again: at least once; no callback), or RELAY_FATAL. With apply
 * NULL (the lane lost its connection) it only waits: no DELETE, no callback. */
typedef void (*relay_settled_fn)(void *opaque, int32_t partition, const char *why);
int relay_send(relay_t *r, int32_t partition, const struct apply_outbox_row *rows, size_t n)
    __attribute__((warn_unused_result));
enum relay_status relay_settle(relay_t *r, apply_ctx_t *apply, relay_settled_fn settled,
                               void *opaque, uint64_t *published, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Sends one dead letter (value json, the original key and headers; hdrs is taken, NULL for
 * none) and waits for its delivery report. 0, or -1 with err when it was not delivered. */
int relay_dead_letter(relay_t *r, const void *key, size_t key_len, rd_kafka_headers_t *hdrs,
                      const char *json, size_t len, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
