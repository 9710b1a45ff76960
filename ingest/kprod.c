#include "kprod.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kafka.h"
#include "log.h"

#define STATS_INTERVAL_MS "1000"
#define STATS_STALE_SECS  5 /* statistics older than this say nothing about now */

struct kprod {
    rd_kafka_t *rk;
    rd_kafka_queue_t *mainq;
    struct event *wake_ev; /* the pipe librdkafka writes to when the main queue fills */
    struct event *tick_ev; /* a slow safety poll, in case a wake-up is ever missed */
    int wakefd[2];
    kprod_dr_cb dr;
    /* From the last statistics. */
    time_t stats_at;
    int brokers_up, brokers_known;
    char *count_topic; /* the topic whose partitions the statistics count; NULL: none */
    int32_t partitions;
};

static time_t mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kprod_t *p = opaque;

    p->dr(m->_private, m->err, m->partition, m->offset);
}

/* Counts the brokers librdkafka holds a connection to. The bootstrap entries (nodeid -1)
 * count too: before the first metadata answer they are the only sign of life. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    kprod_t *p = opaque;
    json_t *root = json_loadb(json, len, 0, NULL), *brokers, *b;
    const char *name;
    int up = 0, known = 0;

    brokers = json_object_get(root, "brokers");
    json_object_foreach(brokers, name, b)
    {
        const char *state = json_string_value(json_object_get(b, "state"));
        known++;
        if (state && strcmp(state, "UP") == 0)
            up++;
    }
    if (p->count_topic) {
        json_t *parts = json_object_get(
            json_object_get(json_object_get(root, "topics"), p->count_topic), "partitions");
        int32_t n = 0;

        /* "-1" is librdkafka's own queue of messages not yet given a partition. */
        json_object_foreach(parts, name, b)
        {
            if (strcmp(name, "-1") != 0)
                n++;
        }
        if (n > 0)
            p->partitions = n;
    }
    json_decref(root);
    p->brokers_up = up;
    p->brokers_known = known;
    p->stats_at = mono_now();
    return 0; /* librdkafka frees json */
}

void kprod_poll(kprod_t *p)
{
    /* rd_kafka_poll serves what is queued; loop in case reports arrived meanwhile, bounded
     * so that a flood of reports cannot starve the HTTP side of the loop. */
    for (int i = 0; i < 64 && rd_kafka_poll(p->rk, 0) > 0; i++)
        ;
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    char buf[64];

    /* librdkafka writes one byte when the queue stops being empty: one read empties the pipe
     * (a full buffer means there may be more). A byte written after the read wakes the loop
     * again: the pipe is watched level-triggered. */
    while (read(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf))
        ;
    kprod_poll(arg);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    kprod_poll(arg);
}

kprod_t *kprod_new(struct event_base *base, const char *bootstrap, const char *client_id,
                   const char *const *settings, kprod_dr_cb dr, char *err, size_t errlen)
{
    static const char *const extra[] = {"statistics.interval.ms", STATS_INTERVAL_MS, NULL};
    kprod_t *p = calloc(1, sizeof(*p));
    rd_kafka_conf_t *conf = NULL;
    struct timeval tick = {0, 100 * 1000};

    if (!p) {
        snprintf(err, errlen, "kafka: out of memory");
        return NULL;
    }
    p->wakefd[0] = p->wakefd[1] = -1;
    p->dr = dr;
    conf = kafka_conf_new(bootstrap, client_id, kafka_producer_settings, err, errlen);
    if (!conf)
        goto fail;
    for (const char *const *kv = extra; kv[0]; kv += 2)
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, errlen) != RD_KAFKA_CONF_OK)
            goto fail;
    for (const char *const *kv = settings; kv && kv[0] && kv[1]; kv += 2)
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, errlen) != RD_KAFKA_CONF_OK)
            goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!p->rk)
        goto fail;
    conf = NULL; /* rd_kafka_new owns it now */

    if (pipe2(p->wakefd, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "kafka: pipe: %s", strerror(errno));
        goto fail;
    }
    p->mainq = rd_kafka_queue_get_main(p->rk);
    rd_kafka_queue_io_event_enable(p->mainq, p->wakefd[1], "1", 1);
    p->wake_ev = event_new(base, p->wakefd[0], EV_READ | EV_PERSIST, wake_cb, p);
    p->tick_ev = event_new(base, -1, EV_PERSIST, tick_cb, p);
    if (!p->wake_ev || !p->tick_ev || event_add(p->wake_ev, NULL) != 0 ||
        event_add(p->tick_ev, &tick) != 0) {
        snprintf(err, errlen, "kafka: cannot watch the queue");
        goto fail;
    }
    return p;
fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    kprod_destroy(p);
    return NULL;
}

rd_kafka_resp_err_t kprod_send(kprod_t *p, const char *topic, const char *key, char *value,
                               size_t len, const char *const *headers, void *opaque)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
    rd_kafka_resp_err_t err;

    for (; headers && headers[0] && headers[1]; headers += 2)
        rd_kafka_header_add(hdrs, headers[0], -1, headers[1], -1);
    /* RD_KAFKA_V_HEADERS hands hdrs over only on success. */
    err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                            RD_KAFKA_V_VALUE(value, len), RD_KAFKA_V_HEADERS(hdrs),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_OPAQUE(opaque),
                            RD_KAFKA_V_END);
    if (err)
        rd_kafka_headers_destroy(hdrs);
    return err;
}

bool kprod_ready(const kprod_t *p, char *detail, size_t detaillen)
{
    char fatal[256];

    if (rd_kafka_fatal_error(p->rk, fatal, sizeof(fatal))) {
        snprintf(detail, detaillen, "fatal producer error: %s", fatal);
        return false;
    }
    if (!p->stats_at || mono_now() - p->stats_at > STATS_STALE_SECS) {
        snprintf(detail, detaillen, "no broker state yet");
        return false;
    }
    snprintf(detail, detaillen, "%d of %d brokers connected", p->brokers_up, p->brokers_known);
    return p->brokers_up > 0;
}

int kprod_count_partitions(kprod_t *p, const char *topic)
{
    free(p->count_topic);
    p->count_topic = strdup(topic);
    return p->count_topic ? 0 : -1;
}

int32_t kprod_partitions(const kprod_t *p)
{
    return p->partitions;
}

int kprod_outq_len(const kprod_t *p)
{
    return rd_kafka_outq_len(p->rk);
}

int kprod_drain(kprod_t *p, int timeout_ms)
{
    int left;

    if (rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    left = rd_kafka_outq_len(p->rk);
    log_warn(NULL, "kafka: %d messages not acknowledged at shutdown; purging them", left);
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    /* The purged messages' reports come through the queue like any other. */
    rd_kafka_flush(p->rk, 1000);
    return left;
}

void kprod_destroy(kprod_t *p)
{
    if (!p)
        return;
    if (p->wake_ev)
        event_free(p->wake_ev);
    if (p->tick_ev)
        event_free(p->tick_ev);
    if (p->mainq) {
        rd_kafka_queue_io_event_enable(p->mainq, -1, NULL, 0);
        rd_kafka_queue_destroy(p->mainq);
    }
    if (p->rk)
        rd_kafka_destroy(p->rk);
    if (p->wakefd[0] >= 0)
        close(p->wakefd[0]);
    if (p->wakefd[1] >= 0)
        close(p->wakefd[1]);
    free(p->count_topic);
    free(p);
}
