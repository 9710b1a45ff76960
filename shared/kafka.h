/* librdkafka set-up shared by every process: a configuration with the bootstrap servers,
 * JSON-line logging of client logs and errors, and the common settings. */
#ifndef DIARY_KAFKA_H
#define DIARY_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* A new configuration with bootstrap.servers and client.id set, the log and error callbacks
 * installed, and each "key", "value" pair of the NULL-terminated kv applied. NULL with err
 * on a bad setting. The caller owns it until rd_kafka_new() succeeds with it. */
rd_kafka_conf_t *kafka_conf_new(const char *bootstrap, const char *client_id, const char *const *kv,
                                char *err, size_t errlen);

/* The settings of the idempotent producer every writer uses (acks=all, idempotence, low
 * linger), to pass as kv. */
extern const char *const kafka_producer_settings[];

/* Finds the value of header name in msg; returns its length or -1 when absent. */
int kafka_header_get(const rd_kafka_message_t *msg, const char *name, char *out, size_t outlen);

#endif
