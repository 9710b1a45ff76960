/* Ingest's one idempotent producer, driven by the event loop: librdkafka's main queue wakes
 * the loop through a pipe (rd_kafka_queue_io_event_enable) and the loop serves it with
 * rd_kafka_poll(rk, 0), so delivery reports run on the loop thread. Broker health for
 * /readyz comes from the statistics librdkafka emits on the same queue. */
#ifndef INGEST_KPROD_H
#define INGEST_KPROD_H

#include <event2/event.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kprod kprod_t;

/* The delivery report of one message, on the loop thread: err is RD_KAFKA_RESP_ERR_NO_ERROR
 * when the broker acknowledged it at partition/offset. opaque is kprod_send's. */
typedef void (*kprod_dr_cb)(void *opaque, rd_kafka_resp_err_t err, int32_t partition,
                            int64_t offset);

/* NULL with err on a bad setting or when librdkafka refuses to start. settings: "key",
 * "value" pairs (NULL-terminated, may be NULL) applied over kafka_producer_settings: ingest's
 * own overrides (its linger). */
kprod_t *kprod_new(struct event_base *base, const char *bootstrap, const char *client_id,
                   const char *const *settings, kprod_dr_cb dr, char *err, size_t errlen);

/* Produces value (len bytes) with key to topic and the NULL-terminated name, value header
 * pairs. On RD_KAFKA_RESP_ERR_NO_ERROR librdkafka owns value (it frees it with free()) and the
 * delivery report will come; on any error the caller still owns value and no report comes.
 * RD_KAFKA_RESP_ERR__QUEUE_FULL: serve the queue and try again a little later. */
rd_kafka_resp_err_t kprod_send(kprod_t *p, const char *topic, const char *key, char *value,
                               size_t len, const char *const *headers, void *opaque)
    __attribute__((warn_unused_result));

/* Serves delivery reports and statistics now. */
void kprod_poll(kprod_t *p);

/* True when the last statistics (at most a few seconds old) show a broker up and no fatal
 * error was raised; detail says why in either case. */
bool kprod_ready(const kprod_t *p, char *detail, size_t detaillen);

/* Makes the statistics count topic's partitions (librdkafka lists a topic once it produced
 * to it); kprod_partitions returns the last count, 0 before the first. -1 on ENOMEM. */
int kprod_count_partitions(kprod_t *p, const char *topic) __attribute__((warn_unused_result));
int32_t kprod_partitions(const kprod_t *p);

/* Messages not yet acknowledged. */
int kprod_outq_len(const kprod_t *p);

/* For shutdown: waits up to timeout_ms for every message's report (serving them), then
 * purges what is left so that its reports (with a purge error) still come. Returns the number
 * of messages that were left. */
int kprod_drain(kprod_t *p, int timeout_ms);

/* Destroys the producer. Call kprod_drain first: reports that come after this are lost.
 * NULL is a no-op. */
void kprod_destroy(kprod_t *p);

#endif
