#include "kafka.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

const char *const kafka_producer_settings[] = {"enable.idempotence",
                                               "true",
                                               "acks",
                                               "all",
                                               "linger.ms",
                                               "1",
                                               "compression.type",
                                               "none",
                                               "message.timeout.ms",
                                               "30000",
                                               "queue.buffering.max.messages",
                                               "1000000",
                                               NULL};

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    enum log_level lvl = level <= 3 ? LOG_ERROR : level <= 5 ? LOG_WARN : LOG_DEBUG;
    log_write(lvl, NULL, "kafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

/* Client errors are generally informational: librdkafka recovers by itself. Only a fatal
 * error (for example the idempotent producer's state lost) is logged as such; the owner
 * checks rd_kafka_fatal_error() where it matters. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    log_write(err == RD_KAFKA_RESP_ERR__FATAL ? LOG_ERROR : LOG_WARN, NULL, "kafka %s: %s: %s",
              rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

rd_kafka_conf_t *kafka_conf_new(const char *bootstrap, const char *client_id, const char *const *kv,
                                char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, errlen) ||
        rd_kafka_conf_set(conf, "client.id", client_id, err, errlen))
        goto fail;
    for (; kv && kv[0] && kv[1]; kv += 2)
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, errlen))
            goto fail;
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int kafka_header_get(const rd_kafka_message_t *msg, const char *name, char *out, size_t outlen)
{
    rd_kafka_headers_t *hdrs;
    const void *val;
    size_t size;

    if (rd_kafka_message_headers(msg, &hdrs) || rd_kafka_header_get_last(hdrs, name, &val, &size) ||
        !val)
        return -1;
    if (size >= outlen)
        size = outlen - 1;
    memcpy(out, val, size);
    out[size] = '\0';
    return (int)size;
}
