#include "ctlkafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "kafka.h"

rd_kafka_t *ctl_reader_new(const char *bootstrap, char *err, size_t errlen)
{
    static const char *const settings[] = {"group.id",
                                           "diaryctl-reader",
                                           "enable.auto.commit",
                                           "false",
                                           "enable.partition.eof",
                                           "true",
                                           "fetch.wait.max.ms",
                                           "10",
                                           "auto.offset.reset",
                                           "earliest",
                                           "log_level",
                                           "3",
                                           NULL};
    char id[64];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;

    snprintf(id, sizeof(id), "diaryctl-%d", (int)getpid());
    if (!(conf = kafka_conf_new(bootstrap, id, settings, err, errlen)))
        return NULL;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

int ctl_partition_count(rd_kafka_t *rk, const char *topic, char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    int n = -1;

    if (e) {
        snprintf(err, errlen, "metadata for %s: %s", topic, rd_kafka_err2str(e));
    } else if (md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(err, errlen, "topic %s: %s", topic,
                 md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not found");
    } else {
        n = md->topics[0].partition_cnt;
    }
    if (!e)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return n;
}

const char *ctl_bootstrap(const char *flag)
{
    const char *b = flag ? flag : config_str("KAFKA_BOOTSTRAP");
    if (!b)
        fprintf(stderr, "diaryctl: no Kafka: set KAFKA_BOOTSTRAP or pass --bootstrap\n");
    return b;
}

static volatile sig_atomic_t *interrupt_flag;

static void on_signal(int sig)
{
    if (interrupt_flag)
        *interrupt_flag = 1;
}

void ctl_on_interrupt(volatile sig_atomic_t *flag)
{
    struct sigaction sa;

    interrupt_flag = flag;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int ctl_parse_time(const char *s, int64_t *ms)
{
    struct tm tm;
    const char *rest;
    int64_t frac = 0;

    memset(&tm, 0, sizeof(tm));
    if (!s)
        return -1;
    rest = strptime(s, "%Y-%m-%d", &tm);
    if (!rest)
        return -1;
    if (*rest == 'T' || *rest == ' ') {
        rest = strptime(rest + 1, "%H:%M:%S", &tm);
        if (!rest)
            return -1;
        if (*rest == '.') {
            int digits = 0;
            for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
                if (digits < 3)
                    frac = frac * 10 + (*rest - '0');
            for (; digits < 3; digits++)
                frac *= 10;
        }
        if (*rest == 'Z')
            rest++;
    }
    if (*rest)
        return -1;
    *ms = (int64_t)timegm(&tm) * 1000 + frac;
    return 0;
}

int ctl_scan_topic(rd_kafka_t *rk, const struct ctl_scan *s, ctl_msg_cb cb, void *arg, char *err,
                   size_t errlen)
{
    int parts = ctl_partition_count(rk, s->topic, err, errlen);
    rd_kafka_topic_partition_list_t *tp = NULL;
    int64_t *end = NULL;
    int remaining = 0, rc = -1;

    if (parts < 0)
        return -1;
    tp = rd_kafka_topic_partition_list_new(parts);
    end = calloc((size_t)parts, sizeof(*end));
    for (int p = 0; p < parts; p++) {
        int64_t lo, hi;
        rd_kafka_resp_err_t e;

        if (s->partition >= 0 && p != s->partition) {
            end[p] = -1;
            continue;
        }
        e = rd_kafka_query_watermark_offsets(rk, s->topic, p, &lo, &hi, 10000);
        if (e) {
            snprintf(err, errlen, "watermarks of %s [%d]: %s", s->topic, p, rd_kafka_err2str(e));
            goto out;
        }
        end[p] = hi;
        int64_t from = s->start == RD_KAFKA_OFFSET_BEGINNING ? lo
                       : s->start == RD_KAFKA_OFFSET_END     ? hi
                       : s->start < lo                       ? lo
                                                             : s->start;
        rd_kafka_topic_partition_t *el = rd_kafka_topic_partition_list_add(tp, s->topic, p);
        el->offset = s->start_time_ms > 0 ? s->start_time_ms : from;
        if (!s->to_end || hi > from)
            remaining++;
        else
            end[p] = -1;
    }
    if (s->start_time_ms > 0) {
        rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk, tp, 10000);
        if (e) {
            snprintf(err, errlen, "offsets for time: %s", rd_kafka_err2str(e));
            goto out;
        }
        for (int i = 0; i < tp->cnt; i++)
            if (tp->elems[i].offset < 0 && s->to_end && end[tp->elems[i].partition] >= 0) {
                end[tp->elems[i].partition] = -1; /* nothing that late */
                remaining--;
            }
    }
    if (rd_kafka_assign(rk, tp)) {
        snprintf(err, errlen, "cannot assign %s", s->topic);
        goto out;
    }
    while ((!s->to_end || remaining > 0) && !(s->stop && *s->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "diaryctl: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        int32_t p = m->partition;
        int stop = cb(m, arg);
        if (s->to_end && end[p] >= 0 && m->offset + 1 >= end[p]) {
            end[p] = -1;
            remaining--;
        }
        rd_kafka_message_destroy(m);
        if (stop)
            break;
    }
    rc = 0;
out:
    rd_kafka_assign(rk, NULL);
    rd_kafka_topic_partition_list_destroy(tp);
    free(end);
    return rc;
}
