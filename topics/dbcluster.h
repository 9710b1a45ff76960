/* The devbroker's Kafka: a librdkafka mock cluster (real Kafka protocol on loopback ports),
 * the topics created on it, and the fault-injection state the control endpoint changes.
 *
 * The mock is hosted by an rd_kafka_t that never connects to it: a connected client would
 * consume errors injected for the clients under test. The rd_kafka_mock_* calls post
 * operations to the mock's own thread, so every function here may be called from the main
 * thread while clients are connected. */
#ifndef DIARY_DBCLUSTER_H
#define DIARY_DBCLUSTER_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DBCLUSTER_MAX_BROKERS 32

typedef struct dbcluster dbcluster_t;

struct dbcluster_topic {
    char *name;
    int partitions;
    int replication_factor;
};

/* Starts a mock cluster of brokers (1..DBCLUSTER_MAX_BROKERS) with ids 1..brokers. debug is
 * a librdkafka debug context list for the host handle ("mock" shows the mock's own log), or
 * NULL. On success *out is the caller's to destroy. */
int dbcluster_new(int brokers, const char *debug, dbcluster_t **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Destroys the mock cluster (closing every client connection) and its host. NULL is a
 * no-op. */
void dbcluster_destroy(dbcluster_t *c);

/* The bootstrap.servers list of the cluster; lives as long as c. */
const char *dbcluster_bootstraps(const dbcluster_t *c);
int dbcluster_broker_count(const dbcluster_t *c);

/* Creates a topic; replication_factor above the broker count is capped (the mock would too).
 * Fails on a name created before. */
int dbcluster_topic_create(dbcluster_t *c, const char *name, int partitions, int replication_factor,
                           char *err, size_t errlen) __attribute__((warn_unused_result));
size_t dbcluster_topic_count(const dbcluster_t *c);
const struct dbcluster_topic *dbcluster_topic_at(const dbcluster_t *c, size_t i);
const struct dbcluster_topic *dbcluster_topic_find(const dbcluster_t *c, const char *name);

/* Fault injection. broker is an id 1..count. Each returns 0, or -1 with err. */
int dbcluster_broker_set_down(dbcluster_t *c, int32_t broker, bool down, char *err, size_t errlen)
    __attribute__((warn_unused_result));
int dbcluster_broker_set_rtt(dbcluster_t *c, int32_t broker, int rtt_ms, char *err, size_t errlen)
    __attribute__((warn_unused_result));
bool dbcluster_broker_is_down(const dbcluster_t *c, int32_t broker);
int dbcluster_broker_rtt(const dbcluster_t *c, int32_t broker);

/* The next count requests of api_key anywhere in the cluster fail with code. */
int dbcluster_push_errors(dbcluster_t *c, int16_t api_key, rd_kafka_resp_err_t code, size_t count,
                          char *err, size_t errlen) __attribute__((warn_unused_result));

/* The next count requests of api_key to broker fail with code (0: succeed) after rtt_ms.
 * librdkafka 2.0.2 cannot clear these: they last until requests use them up. */
int dbcluster_broker_push_errors(dbcluster_t *c, int32_t broker, int16_t api_key,
                                 rd_kafka_resp_err_t code, size_t count, int rtt_ms, char *err,
                                 size_t errlen) __attribute__((warn_unused_result));

/* Errors still waiting in broker's own stacks, all request types together. */
size_t dbcluster_broker_pending_errors(dbcluster_t *c, int32_t broker);

/* Moves a partition's leadership to broker, or to nobody with -1. */
int dbcluster_partition_set_leader(dbcluster_t *c, const char *topic, int32_t partition,
                                   int32_t broker, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Undoes what can be undone: cluster-wide request errors cleared, every broker up with no
 * delay, leader-less partitions given a leader again. */
void dbcluster_clear_faults(dbcluster_t *c);

/* A client configuration for this cluster with bootstrap.servers, client.id and the
 * JSON-line log and error callbacks set, or NULL with err. The caller owns it until
 * rd_kafka_new() succeeds with it. */
rd_kafka_conf_t *dbcluster_client_conf(const dbcluster_t *c, const char *client_id, char *err,
                                       size_t errlen);

struct dbcluster_setting {
    const char *name;
    const char *value;
};

/* Sets count settings on conf: 0, or -1 with err. */
int dbcluster_conf_set_all(rd_kafka_conf_t *conf, const struct dbcluster_setting *settings,
                           size_t count, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
