#include "dbsnapshot.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dbstore.h"
#include "log.h"

#define SAVE_DEADLINE_MS    120000
#define RESTORE_DEADLINE_MS 300000
#define CLIENT_TIMEOUT_MS   10000

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Scan. */

void dbsnapshot_saved_free(struct dbsnapshot_saved *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->count; i++) {
        free(s->topics[i].name);
        free(s->topics[i].path);
    }
    free(s->topics);
    free(s);
}

const struct dbsnapshot_topic *dbsnapshot_saved_find(const struct dbsnapshot_saved *s,
                                                     const char *name)
{
    for (size_t i = 0; s && i < s->count; i++)
        if (strcmp(s->topics[i].name, name) == 0)
            return &s->topics[i];
    return NULL;
}

/* 1 if path's file name is exactly <topic>.state. */
static int file_matches_topic(const char *path, const char *topic)
{
    const char *base = strrchr(path, '/');
    size_t n = strlen(topic);

    base = base ? base + 1 : path;
    return strncmp(base, topic, n) == 0 && strcmp(base + n, ".state") == 0;
}

int dbsnapshot_scan(const char *state_dir, struct dbsnapshot_saved **out, char *err, size_t errlen)
{
    struct dbsnapshot_saved *s = NULL;
    dbstore_reader_t *r = NULL;
    char **paths = NULL;
    size_t count = 0;

    *out = NULL;
    if (dbstore_list(state_dir, &paths, &count, err, errlen) != 0)
        return -1;
    s = calloc(1, sizeof(*s));
    if (!s || (count && !(s->topics = calloc(count, sizeof(*s->topics)))))
        goto oom;
    for (size_t i = 0; i < count; i++) {
        struct dbsnapshot_topic *t = &s->topics[s->count];
        if (dbstore_reader_open(paths[i], &r, err, errlen) != 0)
            goto fail;
        if (dbstore_reader_verify(r, &t->messages) != 0) {
            snprintf(err, errlen,
                     "%s (the saved state is unusable: move the file away to start that topic "
                     "empty)",
                     dbstore_reader_error(r));
            goto fail;
        }
        if (!file_matches_topic(paths[i], dbstore_reader_topic(r))) {
            snprintf(err, errlen, "%s holds topic %s: the file name must be %s.state", paths[i],
                     dbstore_reader_topic(r), dbstore_reader_topic(r));
            goto fail;
        }
        t->name = strdup(dbstore_reader_topic(r));
        t->path = strdup(paths[i]);
        t->partitions = dbstore_reader_partition_count(r);
        t->replication_factor = dbstore_reader_replication_factor(r);
        s->count++;
        dbstore_reader_close(r);
        r = NULL;
        if (!t->name || !t->path)
            goto oom;
    }
    dbstore_paths_free(paths, count);
    *out = s;
    return 0;

oom:
    snprintf(err, errlen, "out of memory");
fail:
    dbstore_reader_close(r);
    dbstore_paths_free(paths, count);
    dbsnapshot_saved_free(s);
    return -1;
}

/* Restore. */

struct restore {
    rd_kafka_t *rk;
    uint64_t produced;
    uint64_t delivered;
    uint64_t failed;
    uint64_t fillers;
    char first_error[512];
};

/* Each message's opaque is the offset it must land on; the report checks it. */
static void restore_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct restore *st = opaque;
    int64_t expected = (int64_t)(intptr_t)m->_private;

    st->delivered++;
    if (m->err) {
        if (st->failed++ == 0)
            snprintf(st->first_error, sizeof(st->first_error),
                     "%s [%" PRId32 "] offset %" PRId64 ": delivery failed: %s",
                     rd_kafka_topic_name(m->rkt), m->partition, expected, rd_kafka_err2str(m->err));
    } else if (m->offset != expected) {
        if (st->failed++ == 0)
            snprintf(st->first_error, sizeof(st->first_error),
                     "%s [%" PRId32 "]: message saved at offset %" PRId64
                     " was restored at offset %" PRId64,
                     rd_kafka_topic_name(m->rkt), m->partition, expected, m->offset);
    }
}

/* Produces one message, waiting while the local queue is full. hdrs (may be NULL) is taken
 * over on success and destroyed on failure. */
static int restore_produce(struct restore *st, const char *topic, int32_t partition, int64_t offset,
                           const struct dbstore_msg *m, rd_kafka_headers_t *hdrs, char *err,
                           size_t errlen)
{
    rd_kafka_resp_err_t kerr;

    for (;;) {
        kerr = rd_kafka_producev(
            st->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(m ? (void *)m->key : NULL, m ? m->key_len : 0),
            RD_KAFKA_V_VALUE(m ? (void *)m->value : NULL, m ? m->value_len : 0),
            RD_KAFKA_V_TIMESTAMP(m && m->timestamp > 0 ? m->timestamp : 0),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE((void *)(intptr_t)offset), RD_KAFKA_V_END);
        if (kerr != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(st->rk, 50);
    }
    if (kerr) {
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        snprintf(err, errlen, "%s [%d] offset %" PRId64 ": produce: %s", topic, (int)partition,
                 offset, rd_kafka_err2str(kerr));
        return -1;
    }
    st->produced++;
    /* Serve delivery reports as they come so their memory does not pile up. */
    if ((st->produced & 0x3ff) == 0)
        rd_kafka_poll(st->rk, 0);
    return 0;
}

/* Fills offsets [*next, until) with filler messages. */
static int restore_fill(struct restore *st, const char *topic, int32_t partition, int64_t *next,
                        int64_t until, char *err, size_t errlen)
{
    for (; *next < until; (*next)++) {
        rd_kafka_headers_t *hdrs = rd_kafka_headers_new(1);
        rd_kafka_header_add(hdrs, DBSNAPSHOT_FILLER_HEADER, -1, "1", 1);
        if (restore_produce(st, topic, partition, *next, NULL, hdrs, err, errlen) != 0)
            return -1;
        st->fillers++;
    }
    return 0;
}

static rd_kafka_headers_t *headers_from_saved(const struct dbstore_msg *m)
{
    rd_kafka_headers_t *hdrs;

    if (m->header_count == 0)
        return NULL;
    hdrs = rd_kafka_headers_new(m->header_count);
    for (size_t i = 0; i < m->header_count; i++)
        rd_kafka_header_add(hdrs, m->headers[i].name, (ssize_t)m->headers[i].name_len,
                            m->headers[i].value, (ssize_t)m->headers[i].value_len);
    return hdrs;
}

struct watermark {
    const char *topic;
    int32_t partition;
    int64_t low, high;
};

static int restore_topic(struct restore *st, const struct dbsnapshot_topic *t,
                         struct watermark **marks, size_t *mark_count, char *err, size_t errlen)
{
    dbstore_reader_t *r = NULL;
    struct dbstore_msg m;
    int32_t p;
    int64_t lo, hi, next;
    int rc;

    if (dbstore_reader_open(t->path, &r, err, errlen) != 0)
        return -1;
    while ((rc = dbstore_reader_next_partition(r, &p, &lo, &hi)) == 1) {
        struct watermark *grown = realloc(*marks, (*mark_count + 1) * sizeof(*grown));
        uint64_t fillers_before = st->fillers;
        if (!grown) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        *marks = grown;
        grown[*mark_count] = (struct watermark){t->name, p, lo, hi};
        (*mark_count)++;

        next = 0;
        while ((rc = dbstore_reader_next_message(r, &m)) == 1) {
            if (restore_fill(st, t->name, p, &next, m.offset, err, errlen) != 0 ||
                restore_produce(st, t->name, p, m.offset, &m, headers_from_saved(&m), err,
                                errlen) != 0)
                goto fail;
            next = m.offset + 1;
        }
        if (rc < 0)
            break;
        if (restore_fill(st, t->name, p, &next, hi, err, errlen) != 0)
            goto fail;
        if (st->fillers > fillers_before) {
            char part[16], low[24], count[24];
            const char *kv[] = {"topic", t->name,   "partition", part, "low_watermark",
                                low,     "fillers", count,       NULL};
            snprintf(part, sizeof(part), "%d", (int)p);
            snprintf(low, sizeof(low), "%" PRId64, lo);
            snprintf(count, sizeof(count), "%" PRIu64, st->fillers - fillers_before);
            log_fields(LOG_WARN, NULL,
                       "restoring offsets that hold no message (dropped by the mock's "
                       "5 MiB / 100000 message set limit, or transaction markers) as empty "
                       "filler messages with header devbroker-filler: 1",
                       kv);
        }
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s", dbstore_reader_error(r));
        goto fail;
    }
    dbstore_reader_close(r);
    return 0;

fail:
    dbstore_reader_close(r);
    return -1;
}

static int restore_verify(struct restore *st, const struct watermark *marks, size_t count,
                          char *err, size_t errlen)
{
    for (size_t i = 0; i < count; i++) {
        const struct watermark *w = &marks[i];
        int64_t lo = -1, hi = -1;
        rd_kafka_resp_err_t kerr = rd_kafka_query_watermark_offsets(st->rk, w->topic, w->partition,
                                                                    &lo, &hi, CLIENT_TIMEOUT_MS);
        if (kerr) {
            snprintf(err, errlen, "%s [%d]: watermarks: %s", w->topic, (int)w->partition,
                     rd_kafka_err2str(kerr));
            return -1;
        }
        if (hi != w->high) {
            snprintf(err, errlen,
                     "%s [%d]: high watermark is %" PRId64 " after the restore, %" PRId64
                     " when saved",
                     w->topic, (int)w->partition, hi, w->high);
            return -1;
        }
        /* Fillers below the saved low watermark may be dropped again; saved messages not. */
        if (lo > w->low) {
            snprintf(err, errlen,
                     "%s [%d]: low watermark is %" PRId64 " after the restore, %" PRId64
                     " when saved: the mock dropped restored messages",
                     w->topic, (int)w->partition, lo, w->low);
            return -1;
        }
    }
    return 0;
}

int dbsnapshot_restore(dbcluster_t *c, const struct dbsnapshot_saved *s, char *err, size_t errlen)
{
    /* Idempotence with one request in flight: a retry cannot reorder a partition. The
     * delivery report checks each message's offset, so a duplicate or a gap fails the
     * restore instead of shifting the log. */
    static const struct dbcluster_setting producer_settings[] = {
        {"enable.idempotence", "true"},
        {"max.in.flight.requests.per.connection", "1"},
        {"acks", "all"},
        {"linger.ms", "5"},
        {"batch.num.messages", "10000"},
        {"message.max.bytes", "16000000"},
        {"queue.buffering.max.messages", "1000000"},
        {"queue.buffering.max.kbytes", "1048576"},
        {"message.timeout.ms", "120000"},
        {"compression.codec", "none"},
    };
    struct restore st = {0};
    struct watermark *marks = NULL;
    size_t mark_count = 0;
    rd_kafka_conf_t *conf = NULL;
    char fatal[256];
    int64_t deadline, started = now_ms();
    uint64_t messages = 0;
    int rc = -1;

    if (!s || s->count == 0)
        return 0;
    conf = dbcluster_client_conf(c, "devbroker-restore", err, errlen);
    if (!conf || dbcluster_conf_set_all(conf, producer_settings,
                                        sizeof(producer_settings) / sizeof(producer_settings[0]),
                                        err, errlen) != 0)
        goto done;
    rd_kafka_conf_set_dr_msg_cb(conf, restore_dr_cb);
    rd_kafka_conf_set_opaque(conf, &st);
    st.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!st.rk)
        goto done;
    conf = NULL; /* rd_kafka_new() took it */

    for (size_t i = 0; i < s->count; i++) {
        if (restore_topic(&st, &s->topics[i], &marks, &mark_count, err, errlen) != 0)
            goto done;
        messages += s->topics[i].messages;
    }
    deadline = now_ms() + RESTORE_DEADLINE_MS;
    while (rd_kafka_outq_len(st.rk) > 0 && now_ms() < deadline)
        rd_kafka_flush(st.rk, 1000);
    if (rd_kafka_fatal_error(st.rk, fatal, sizeof(fatal))) {
        snprintf(err, errlen, "restore producer failed: %s", fatal);
        goto done;
    }
    if (rd_kafka_outq_len(st.rk) > 0) {
        snprintf(err, errlen, "restore timed out: %d messages not delivered",
                 rd_kafka_outq_len(st.rk));
        goto done;
    }
    if (st.failed > 0) {
        snprintf(err, errlen, "%" PRIu64 " restored messages failed; first: %s", st.failed,
                 st.first_error);
        goto done;
    }
    if (restore_verify(&st, marks, mark_count, err, errlen) != 0)
        goto done;
    {
        char n[24], f[24], ms[24], tc[24];
        const char *kv[] = {"topics", tc, "messages", n, "fillers", f, "ms", ms, NULL};
        snprintf(tc, sizeof(tc), "%zu", s->count);
        snprintf(n, sizeof(n), "%" PRIu64, messages);
        snprintf(f, sizeof(f), "%" PRIu64, st.fillers);
        snprintf(ms, sizeof(ms), "%" PRId64, now_ms() - started);
        log_fields(LOG_INFO, NULL, "state restored", kv);
    }
    rc = 0;

done:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (st.rk)
        rd_kafka_destroy(st.rk);
    free(marks);
    return rc;
}

/* Save. */

struct saved_partition {
    int64_t low, high;
    rd_kafka_message_t **msgs;
    size_t count, cap;
    bool assigned, done;
};

static void free_partitions(struct saved_partition *parts, int count)
{
    for (int p = 0; parts && p < count; p++) {
        for (size_t i = 0; i < parts[p].count; i++)
            rd_kafka_message_destroy(parts[p].msgs[i]);
        free(parts[p].msgs);
    }
    free(parts);
}

/* Keeps m (taking it over) in its partition's list; drops a repeat of an offset. */
static int keep_message(struct saved_partition *part, rd_kafka_message_t *m)
{
    if ((part->count > 0 && m->offset <= part->msgs[part->count - 1]->offset) ||
        m->offset < part->low) {
        rd_kafka_message_destroy(m);
        return 0;
    }
    if (part->count == part->cap) {
        size_t ncap = part->cap ? part->cap * 2 : 256;
        rd_kafka_message_t **grown = realloc(part->msgs, ncap * sizeof(*grown));
        if (!grown) {
            rd_kafka_message_destroy(m);
            return -1;
        }
        part->msgs = grown;
        part->cap = ncap;
    }
    part->msgs[part->count++] = m;
    return 0;
}

/* Reads every partition of topic into parts, from the low watermark to the end. */
static int read_topic(rd_kafka_t *rk, const char *topic, struct saved_partition *parts,
                      int partitions, int64_t deadline, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
    rd_kafka_resp_err_t kerr;
    int remaining = 0, rc = -1;

    for (int p = 0; p < partitions; p++) {
        kerr = rd_kafka_query_watermark_offsets(rk, topic, p, &parts[p].low, &parts[p].high,
                                                CLIENT_TIMEOUT_MS);
        if (kerr) {
            snprintf(err, errlen, "%s [%d]: watermarks: %s", topic, p, rd_kafka_err2str(kerr));
            goto done;
        }
        if (parts[p].high > parts[p].low) {
            rd_kafka_topic_partition_list_add(list, topic, p)->offset = parts[p].low;
            parts[p].assigned = true;
            remaining++;
        }
    }
    if (remaining == 0) {
        rc = 0;
        goto done;
    }
    kerr = rd_kafka_assign(rk, list);
    if (kerr) {
        snprintf(err, errlen, "%s: assign: %s", topic, rd_kafka_err2str(kerr));
        goto done;
    }
    while (remaining > 0 && now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        struct saved_partition *part;

        if (!m)
            continue;
        if (!m->rkt || strcmp(rd_kafka_topic_name(m->rkt), topic) != 0 || m->partition < 0 ||
            m->partition >= partitions) {
            rd_kafka_message_destroy(m);
            continue;
        }
        part = &parts[m->partition];
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (!part->done) {
                part->done = true;
                if (m->offset > part->high)
                    part->high = m->offset;
                remaining--;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            /* Consumer errors are generally informational: the client recovers by itself. */
            const char *kv[] = {"topic", topic, "error", rd_kafka_err2name(m->err), NULL};
            log_fields(LOG_WARN, NULL, rd_kafka_message_errstr(m), kv);
            rd_kafka_message_destroy(m);
            continue;
        }
        /* Records produced while the save runs are kept too; high follows them. */
        if (m->offset + 1 > part->high)
            part->high = m->offset + 1;
        if (keep_message(part, m) != 0) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
    }
    if (remaining > 0) {
        snprintf(err, errlen, "%s: save timed out with %d partitions not read to the end", topic,
                 remaining);
        goto done;
    }
    rc = 0;

done:
    rd_kafka_assign(rk, NULL);
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

static int write_topic(const char *state_dir, const char *topic, struct saved_partition *parts,
                       int partitions, int replication_factor, uint64_t *messages, char *err,
                       size_t errlen)
{
    dbstore_writer_t *w = NULL;
    struct dbstore_header *hdrs = NULL;
    size_t hdr_cap = 0;

    if (dbstore_writer_open(state_dir, topic, partitions, replication_factor, &w, err, errlen) != 0)
        return -1;
    for (int p = 0; p < partitions; p++) {
        if (dbstore_writer_partition(w, p, parts[p].low, parts[p].high) != 0)
            goto fail;
        for (size_t i = 0; i < parts[p].count; i++) {
            const rd_kafka_message_t *km = parts[p].msgs[i];
            rd_kafka_headers_t *kh = NULL;
            rd_kafka_timestamp_type_t tstype;
            struct dbstore_msg m = {
                .offset = km->offset,
                .key = km->key,
                .key_len = km->key_len,
                .value = km->payload,
                .value_len = km->len,
            };
            m.timestamp = rd_kafka_message_timestamp(km, &tstype);
            m.timestamp_type = (int32_t)tstype;
            if (rd_kafka_message_headers(km, &kh) == 0 && kh) {
                size_t n = rd_kafka_header_cnt(kh);
                if (n > hdr_cap) {
                    struct dbstore_header *grown = realloc(hdrs, n * sizeof(*grown));
                    if (!grown) {
                        snprintf(err, errlen, "out of memory");
                        goto fail;
                    }
                    hdrs = grown;
                    hdr_cap = n;
                }
                for (size_t h = 0; h < n; h++) {
                    const char *name;
                    const void *value;
                    size_t size;
                    if (rd_kafka_header_get_all(kh, h, &name, &value, &size))
                        break;
                    hdrs[h] = (struct dbstore_header){name, strlen(name), value, size};
                    m.header_count = h + 1;
                }
                m.headers = hdrs;
            }
            if (dbstore_writer_message(w, &m) != 0)
                goto fail;
            (*messages)++;
        }
    }
    free(hdrs);
    return dbstore_writer_commit(w, err, errlen);

fail:
    if (!err[0])
        snprintf(err, errlen, "%s: could not write the state file", topic);
    free(hdrs);
    dbstore_writer_abort(w);
    return -1;
}

static int save_topic(rd_kafka_t *rk, const char *state_dir, const char *topic, int partitions,
                      int replication_factor, int64_t deadline, uint64_t *messages, char *err,
                      size_t errlen)
{
    struct saved_partition *parts = calloc((size_t)partitions, sizeof(*parts));
    int rc = -1;

    if (!parts) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    err[0] = '\0';
    if (read_topic(rk, topic, parts, partitions, deadline, err, errlen) == 0 &&
        write_topic(state_dir, topic, parts, partitions, replication_factor, messages, err,
                    errlen) == 0)
        rc = 0;
    free_partitions(parts, partitions);
    return rc;
}

int dbsnapshot_save(dbcluster_t *c, const char *state_dir, char *err, size_t errlen)
{
    /* Low fetch wait so an empty fetch at the end of a partition returns at once; large
     * fetches so a full partition comes in a few round trips. Read committed: aborted
     * records are not saved, their offsets are restored as fillers. */
    static const struct dbcluster_setting consumer_settings[] = {
        {"group.id", "devbroker-save"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"enable.partition.eof", "true"},
        {"auto.offset.reset", "earliest"},
        {"isolation.level", "read_committed"},
        {"fetch.wait.max.ms", "10"},
        {"fetch.error.backoff.ms", "50"},
        {"fetch.min.bytes", "1"},
        {"fetch.max.bytes", "104857600"},
        {"max.partition.fetch.bytes", "16777216"},
        {"receive.message.max.bytes", "110000000"},
        {"queued.min.messages", "1000000"},
        {"queued.max.messages.kbytes", "1048576"},
        {"check.crcs", "false"},
        {"topic.metadata.refresh.interval.ms", "-1"},
    };
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t kerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    int64_t started = now_ms(), deadline = started + SAVE_DEADLINE_MS;
    uint64_t messages = 0;
    int saved = 0, rc = -1;

    conf = dbcluster_client_conf(c, "devbroker-save", err, errlen);
    if (!conf || dbcluster_conf_set_all(conf, consumer_settings,
                                        sizeof(consumer_settings) / sizeof(consumer_settings[0]),
                                        err, errlen) != 0)
        goto done;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (!rk)
        goto done;
    conf = NULL; /* rd_kafka_new() took it */
    rd_kafka_poll_set_consumer(rk);

    for (int attempt = 0; attempt < 5; attempt++) {
        kerr = rd_kafka_metadata(rk, 1, NULL, &md, CLIENT_TIMEOUT_MS);
        if (!kerr)
            break;
    }
    if (kerr) {
        snprintf(err, errlen, "cluster metadata: %s", rd_kafka_err2str(kerr));
        goto done;
    }
    /* Every topic the devbroker created, whatever the metadata says about it, then the
     * topics clients had the mock create on the fly. */
    for (size_t i = 0; i < dbcluster_topic_count(c); i++) {
        const struct dbcluster_topic *t = dbcluster_topic_at(c, i);
        if (save_topic(rk, state_dir, t->name, t->partitions, t->replication_factor, deadline,
                       &messages, err, errlen) != 0)
            goto done;
        saved++;
    }
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *t = &md->topics[i];
        const char *kv[] = {"topic", t->topic, NULL};

        if (dbcluster_topic_find(c, t->topic) || t->err || t->partition_cnt < 1 ||
            strncmp(t->topic, "__", 2) == 0)
            continue;
        log_fields(LOG_WARN, NULL, "saving a topic a client created (auto-creation)", kv);
        if (save_topic(rk, state_dir, t->topic, t->partition_cnt, t->partitions[0].replica_cnt,
                       deadline, &messages, err, errlen) != 0)
            goto done;
        saved++;
    }
    {
        char tc[24], n[24], ms[24];
        const char *kv[] = {"topics", tc, "messages", n, "ms", ms, "dir", state_dir, NULL};
        snprintf(tc, sizeof(tc), "%d", saved);
        snprintf(n, sizeof(n), "%" PRIu64, messages);
        snprintf(ms, sizeof(ms), "%" PRId64, now_ms() - started);
        log_fields(LOG_INFO, NULL, "state saved", kv);
    }
    rc = 0;

done:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    return rc;
}
