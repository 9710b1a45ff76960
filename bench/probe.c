/* Observers of the end-to-end run of `make bench`: they write what they see, with
 * CLOCK_REALTIME microsecond times comparable with bench/loadgen's, and the analysis
 * (bench/report.py) joins the files.
 *
 *   probe offsets OUT INTERVAL_MS GROUP TOPIC PRIMARY_URL REPLICA_URL
 *       Every INTERVAL_MS reads consumer_offsets of GROUP/TOPIC on the primary and on the
 *       replica and writes "t_us p|r partition next_offset" whenever a value moved; every
 *       250 ms also "t_us L replay_lag_us lag_bytes" from pg_stat_replication. An event at
 *       offset O of partition P is visible on a side from the first sample with
 *       next_offset > O: the resolution is the interval plus one query.
 *   probe changes OUT BOOTSTRAP TOPIC
 *       Reads TOPIC (diary.changes) from its end as of the start and writes "t_us change_id"
 *       for every change event received.
 *
 * Both run until SIGTERM or SIGINT, then flush OUT and exit 0. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_PARTS 256

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    stop = sig;
}

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* One side's last values, so that only moves are written. */
struct side {
    PGconn *conn;
    char tag;
    int64_t last[MAX_PARTS];
};

static int side_open(struct side *s, const char *url, char tag)
{
    s->tag = tag;
    for (int i = 0; i < MAX_PARTS; i++)
        s->last[i] = -1;
    s->conn = PQconnectdb(url);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        fprintf(stderr, "probe: %s", PQerrorMessage(s->conn));
        return -1;
    }
    return 0;
}

static void side_sample(struct side *s, FILE *out, const char *const params[2])
{
    PGresult *res = PQexecParams(s->conn,
                                 "SELECT \"partition\", next_offset FROM consumer_offsets "
                                 "WHERE group_id = $1 AND topic = $2",
                                 2, NULL, params, NULL, NULL, 0);
    int64_t t = now_us();

    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        for (int i = 0; i < PQntuples(res); i++) {
            int p = atoi(PQgetvalue(res, i, 0));
            int64_t next = strtoll(PQgetvalue(res, i, 1), NULL, 10);
            if (p >= 0 && p < MAX_PARTS && next != s->last[p]) {
                s->last[p] = next;
                fprintf(out, "%" PRId64 " %c %d %" PRId64 "\n", t, s->tag, p, next);
            }
        }
    } else if (PQstatus(s->conn) != CONNECTION_OK) {
        PQreset(s->conn);
    }
    PQclear(res);
}

static void lag_sample(PGconn *primary, FILE *out)
{
    PGresult *res =
        PQexec(primary, "SELECT coalesce(extract(epoch FROM replay_lag) * 1e6, 0)::bigint, "
                        "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
                        "FROM pg_stat_replication LIMIT 1");

    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
        fprintf(out, "%" PRId64 " L %s %s\n", now_us(), PQgetvalue(res, 0, 0),
                PQgetvalue(res, 0, 1));
    PQclear(res);
}

static int cmd_offsets(FILE *out, int interval_ms, const char *group, const char *topic,
                       const char *primary_url, const char *replica_url)
{
    struct side p = {0}, r = {0};
    const char *params[2] = {group, topic};
    int64_t next_lag = 0;
    int rc = 1;

    if (side_open(&p, primary_url, 'p') || side_open(&r, replica_url, 'r'))
        goto out;
    while (!stop) {
        int64_t t0 = now_us(), spent;
        side_sample(&r, out, params);
        side_sample(&p, out, params);
        if (t0 >= next_lag) {
            lag_sample(p.conn, out);
            next_lag = t0 + 250000;
        }
        /* The script follows the file while the run goes on. */
        fflush(out);
        spent = now_us() - t0;
        if (spent < interval_ms * 1000)
            usleep((useconds_t)(interval_ms * 1000 - spent));
    }
    rc = 0;
out:
    PQfinish(p.conn);
    PQfinish(r.conn);
    return rc;
}

/* The change id is the value of an "id" member that has a dot ("<event id>.<n>"); the row
 * ids inside data have none. The worker writes jsonb's text form, with a space after the
 * colon, so blanks around it are skipped. */
static int change_id(const char *v, size_t len, char *out, size_t outlen)
{
    const char *end = v + len, *p = v;

    while ((p = memmem(p, (size_t)(end - p), "\"id\"", 4))) {
        const char *s = p + 4, *q;
        while (s < end && (*s == ' ' || *s == ':'))
            s++;
        if (s >= end || *s != '"') {
            p = s;
            continue;
        }
        s++;
        if (!(q = memchr(s, '"', (size_t)(end - s))))
            return -1;
        if (memchr(s, '.', (size_t)(q - s)) && (size_t)(q - s) < outlen) {
            memcpy(out, s, (size_t)(q - s));
            out[q - s] = '\0';
            return 0;
        }
        p = q;
    }
    return -1;
}

static int cmd_changes(FILE *out, const char *bootstrap, const char *topic)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *tp = NULL;
    int rc = 1;

    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "group.id", "bench-probe", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "fetch.wait.max.ms", "5", err, sizeof(err)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err))) {
        fprintf(stderr, "probe: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)))) {
        fprintf(stderr, "probe: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    if (!(rkt = rd_kafka_topic_new(rk, topic, NULL)) || rd_kafka_metadata(rk, 0, rkt, &md, 10000) ||
        md->topic_cnt != 1 || md->topics[0].partition_cnt < 1) {
        fprintf(stderr, "probe: no metadata for %s\n", topic);
        goto out;
    }
    tp = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(tp, topic, i)->offset = RD_KAFKA_OFFSET_END;
    if (rd_kafka_assign(rk, tp)) {
        fprintf(stderr, "probe: cannot assign %s\n", topic);
        goto out;
    }
    /* Say when the assignment is in place, so the load starts after it. */
    fprintf(stderr, "probe: reading %s\n", topic);
    while (!stop) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        char id[128];
        if (!m)
            continue;
        if (!m->err && m->payload && change_id(m->payload, m->len, id, sizeof(id)) == 0)
            fprintf(out, "%" PRId64 " %s\n", now_us(), id);
        rd_kafka_message_destroy(m);
    }
    rc = 0;
out:
    if (tp)
        rd_kafka_topic_partition_list_destroy(tp);
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

int main(int argc, char **argv)
{
    FILE *out;
    int rc;

    if (argc < 3 || !(out = fopen(argv[2], "w"))) {
        fprintf(stderr, "usage: probe offsets OUT INTERVAL_MS GROUP TOPIC PRIMARY_URL "
                        "REPLICA_URL\n       probe changes OUT BOOTSTRAP TOPIC\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (argc == 8 && !strcmp(argv[1], "offsets"))
        rc = cmd_offsets(out, atoi(argv[3]), argv[4], argv[5], argv[6], argv[7]);
    else if (argc == 5 && !strcmp(argv[1], "changes"))
        rc = cmd_changes(out, argv[3], argv[4]);
    else
        rc = 2;
    fclose(out);
    return rc;
}
