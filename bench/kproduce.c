/* Producers of `make bench`, with the producer settings every writer of the project uses
 * (shared/kafka.c: idempotent, acks=all, linger 1 ms, no compression).
 *
 *   kproduce ceiling BOOTSTRAP TOPIC COUNT SIZE
 *       The librdkafka ceiling: COUNT messages of SIZE bytes keyed by 200 user ids, as fast
 *       as the client takes them; prints one JSON object (messages/s from the first produce
 *       to the last delivery report).
 *   kproduce backlog BOOTSTRAP TOPIC USERS ENTRIES_PER_USER
 *       The apply backlog: per user a registration, a food and ENTRIES_PER_USER entry sets
 *       (one in ten sets an entry of the same user again, so it updates), valid envelopes
 *       as ingest writes them (shared/envelope.c), each user's events in order on the
 *       user's partition. Afterwards checks every partition's low watermark (0: the mock
 *       dropped nothing) and prints one JSON object with the counts and bytes per
 *       partition.
 *
 * Exit status 0, or 1 on a failed delivery or a dropped message. */
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "kafka.h"
#include "log.h"
#include "uuid.h"

#define NKEYS     200
#define MAX_PARTS 256

struct stats {
    int64_t delivered;
    int64_t failed;
    int64_t count[MAX_PARTS];
    int64_t bytes[MAX_PARTS]; /* key + value + headers: what the partition stores, roughly */
    char first_error[256];
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct stats *s = opaque;

    if (m->err) {
        if (!s->failed++)
            snprintf(s->first_error, sizeof(s->first_error), "%s", rd_kafka_err2str(m->err));
        return;
    }
    s->delivered++;
    if (m->partition >= 0 && m->partition < MAX_PARTS) {
        s->count[m->partition]++;
        /* A record's own framing (varints, attributes, header lengths) is about 20 bytes. */
        s->bytes[m->partition] += (int64_t)(m->len + m->key_len + 20 + 96);
    }
}

static rd_kafka_t *producer_new(const char *bootstrap, struct stats *s)
{
    char err[512];
    rd_kafka_conf_t *conf =
        kafka_conf_new(bootstrap, "bench-kproduce", kafka_producer_settings, err, sizeof(err));
    rd_kafka_t *rk;

    if (!conf) {
        fprintf(stderr, "kproduce: %s\n", err);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, delivery_cb);
    rd_kafka_conf_set_opaque(conf, s);
    if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)))) {
        fprintf(stderr, "kproduce: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return rk;
}

/* Produces one copy of value; on a full queue serves delivery reports and tries again. */
static int produce(rd_kafka_t *rk, const char *topic, const char *key, const char *value,
                   size_t len, const char *type)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)value, len),
            RD_KAFKA_V_HEADER("request-id", "bench-0123456789abcdef", -1),
            RD_KAFKA_V_HEADER("ce_type", type, -1),
            RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json", -1), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_poll(rk, 0);
            return 0;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "kproduce: produce: %s\n", rd_kafka_err2str(e));
            return -1;
        }
        rd_kafka_poll(rk, 10);
    }
}

static int finish(rd_kafka_t *rk, struct stats *s)
{
    if (rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "kproduce: %d messages not delivered in 60 s\n", rd_kafka_outq_len(rk));
        return -1;
    }
    if (s->failed) {
        fprintf(stderr, "kproduce: %" PRId64 " deliveries failed: %s\n", s->failed, s->first_error);
        return -1;
    }
    return 0;
}

static void key_of(int i, char out[UUID_STRLEN])
{
    char n[16];
    const char *parts[1] = {n};
    diary_uuid_t u;

    snprintf(n, sizeof(n), "%d", i);
    uuid_derive(&u, "bench-user", parts, 1);
    uuid_format(&u, out);
}

static int cmd_ceiling(const char *bootstrap, const char *topic, long count, long size)
{
    struct stats s = {0};
    char keys[NKEYS][UUID_STRLEN];
    char *value = malloc((size_t)size);
    rd_kafka_t *rk = NULL;
    double t0, t1;
    int rc = 1;

    if (!value || !(rk = producer_new(bootstrap, &s)))
        goto out;
    memset(value, 'x', (size_t)size);
    for (int i = 0; i < NKEYS; i++)
        key_of(i, keys[i]);
    /* Metadata and connections first, so the timing starts with a warm client. */
    if (produce(rk, topic, keys[0], value, (size_t)size, "bench") || finish(rk, &s))
        goto out;
    s.delivered = 0;
    t0 = now_s();
    for (long i = 0; i < count; i++)
        if (produce(rk, topic, keys[i % NKEYS], value, (size_t)size, "bench"))
            goto out;
    if (finish(rk, &s))
        goto out;
    t1 = now_s();
    printf("{\"messages\":%" PRId64 ",\"size\":%ld,\"seconds\":%.3f,\"per_s\":%.0f,"
           "\"mib_per_s\":%.1f}\n",
           s.delivered, size, t1 - t0, (double)s.delivered / (t1 - t0),
           (double)s.delivered * (double)size / (t1 - t0) / 1048576.0);
    rc = 0;
out:
    if (rk)
        rd_kafka_destroy(rk);
    free(value);
    return rc;
}

/* One envelope as ingest writes it: request id, client address and request hash included,
 * so that the backlog's messages have the size of real ones. The caller frees the result. */
static char *envelope(const char *type, const char *user, json_t *data, size_t *len)
{
    struct evt e;
    diary_uuid_t id;
    unsigned char rnd[32];
    char *out;

    memset(&e, 0, sizeof(e));
    uuid_v7(&id, (uint64_t)time(NULL) * 1000);
    uuid_format(&id, e.id);
    snprintf(e.type, sizeof(e.type), "%s", type);
    snprintf(e.subject, sizeof(e.subject), "%s", user);
    snprintf(e.source, sizeof(e.source), "ingest/127.0.0.1:8080");
    evt_time_now(e.time);
    randombytes_buf(rnd, 16);
    sodium_bin2hex(e.requestid, sizeof(e.requestid), rnd, 16);
    snprintf(e.clientaddr, sizeof(e.clientaddr), "127.0.0.1");
    randombytes_buf(rnd, 32);
    sodium_bin2hex(e.requesthash, sizeof(e.requesthash), rnd, 32);
    e.data = data;
    out = evt_serialize(&e, len);
    json_decref(data);
    return out;
}

static int emit(rd_kafka_t *rk, const char *topic, const char *type, const char *user, json_t *data,
                int64_t *bytes)
{
    size_t len;
    char *v = envelope(type, user, data, &len);
    int rc;

    if (!v)
        return -1;
    *bytes += (int64_t)len;
    rc = produce(rk, topic, user, v, len, type);
    free(v);
    return rc;
}

static void child_id(const char *label, char out[UUID_STRLEN])
{
    diary_uuid_t ev, row;

    uuid_v7(&ev, (uint64_t)time(NULL) * 1000);
    uuid_child(&row, &ev, label);
    uuid_format(&row, out);
}

static int cmd_backlog(const char *bootstrap, const char *topic, int users, int per_user)
{
    struct stats s = {0};
    rd_kafka_t *rk = NULL;
    char(*ukey)[UUID_STRLEN] = calloc((size_t)users, UUID_STRLEN);
    char(*food)[UUID_STRLEN] = calloc((size_t)users, UUID_STRLEN);
    static const char *const meals[4] = {"breakfast", "lunch", "dinner", "snack"};
    int64_t value_bytes = 0, produced = 0, updates = 0, max_bytes = 0, max_count = 0;
    int nparts = 0, dropped = 0;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = NULL;
    double t0;
    int rc = 1;

    if (!ukey || !food || !(rk = producer_new(bootstrap, &s)))
        goto out;
    t0 = now_s();
    for (int u = 0; u < users; u++) {
        char email[64];
        key_of(u, ukey[u]);
        child_id("food", food[u]);
        snprintf(email, sizeof(email), "bench-%d@example.org", u);
        if (emit(rk, topic, "diary.user.registered.v1", ukey[u],
                 json_pack("{s:s, s:s, s:s, s:s}", "user_id", ukey[u], "email", email, "name",
                           "Bench User", "password_hash",
                           "$argon2id$v=19$m=8,t=1,p=1$YmVuY2hzYWx0MTIzNDU2$"
                           "n3Wc1dZ9Vq1c9m0y3Xq8yqkqv8b4m1dY2uVwQk0m3sU"),
                 &value_bytes))
            goto out;
        produced++;
    }
    for (int u = 0; u < users; u++) {
        if (emit(rk, topic, "diary.food.created.v1", ukey[u],
                 json_pack("{s:s, s:s, s:f, s:f, s:f, s:f}", "food_id", food[u], "name",
                           "Rolled oats", "calories_per_100g", 379.0, "protein_per_100g", 13.2,
                           "carbs_per_100g", 67.7, "fat_per_100g", 6.5),
                 &value_bytes))
            goto out;
        produced++;
    }
    /* Entries round-robin over the users, so that every partition fills alike. Entry k of a
     * user is day k / 4, meal k % 4; every tenth repeats entry k - 37 of the same user. */
    for (int k = 0; k < per_user; k++) {
        for (int u = 0; u < users; u++) {
            int slot = (k % 10 == 9 && k >= 37) ? k - 37 : k;
            char entry[UUID_STRLEN], date[16];
            struct tm tm = {.tm_year = 120, .tm_mon = 0, .tm_mday = 1 + slot / 4, .tm_hour = 12};
            time_t day = timegm(&tm);

            strftime(date, sizeof(date), "%Y-%m-%d", gmtime_r(&day, &tm));
            child_id("entry", entry);
            updates += slot != k;
            if (emit(rk, topic, "diary.entry.set.v1", ukey[u],
                     json_pack("{s:s, s:s, s:s, s:s, s:f}", "entry_id", entry, "date", date,
                               "meal_type", meals[slot % 4], "food_id", food[u], "amount",
                               50.0 + (double)((k * 7 + u) % 400) + 0.5),
                     &value_bytes))
                goto out;
            produced++;
        }
    }
    if (finish(rk, &s))
        goto out;
    if (!(rkt = rd_kafka_topic_new(rk, topic, NULL)) || rd_kafka_metadata(rk, 0, rkt, &md, 10000) ||
        md->topic_cnt != 1) {
        fprintf(stderr, "kproduce: no metadata for %s\n", topic);
        goto out;
    }
    nparts = md->topics[0].partition_cnt;
    printf("{\"events\":%" PRId64 ",\"users\":%d,\"entries_per_user\":%d,\"entry_updates\":%" PRId64
           ",\"seconds\":%.2f,\"value_bytes\":%" PRId64 ",\"avg_value_bytes\":%.0f,"
           "\"partitions\":[",
           produced, users, per_user, updates, now_s() - t0, value_bytes,
           (double)value_bytes / (double)produced);
    for (int p = 0; p < nparts && p < MAX_PARTS; p++) {
        int64_t low = -1, high = -1;
        rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high, 10000);
        dropped |= low != 0;
        if (s.bytes[p] > max_bytes)
            max_bytes = s.bytes[p];
        if (s.count[p] > max_count)
            max_count = s.count[p];
        printf("%s{\"partition\":%d,\"events\":%" PRId64 ",\"bytes\":%" PRId64 ",\"low\":%" PRId64
               ",\"high\":%" PRId64 "}",
               p ? "," : "", p, s.count[p], s.bytes[p], low, high);
    }
    printf("],\"max_partition_events\":%" PRId64 ",\"max_partition_bytes\":%" PRId64
           ",\"nothing_dropped\":%s}\n",
           max_count, max_bytes, dropped ? "false" : "true");
    if (dropped)
        fprintf(stderr, "kproduce: a partition's low watermark is above 0: the broker dropped "
                        "messages; produce fewer\n");
    rc = dropped;
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (rk)
        rd_kafka_destroy(rk);
    free(ukey);
    free(food);
    return rc;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    log_init("bench", LOG_WARN);
    if (argc == 6 && !strcmp(argv[1], "ceiling"))
        return cmd_ceiling(argv[2], argv[3], atol(argv[4]), atol(argv[5]));
    if (argc == 6 && !strcmp(argv[1], "backlog"))
        return cmd_backlog(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
    fprintf(stderr, "usage: kproduce ceiling BOOTSTRAP TOPIC COUNT SIZE\n"
                    "       kproduce backlog BOOTSTRAP TOPIC USERS ENTRIES_PER_USER\n");
    return 2;
}
