/* diaryctl replay: applies a range of diary.events into a target database through the very
 * apply code the workers run (shared/apply.c), under a consumer group of its own whose
 * offsets live in the target database (consumer_offsets), so that
 *   - a replay killed at any moment resumes where the database says it stopped;
 *   - replaying the whole log into an empty database gives the live database's rows, ids
 *     included (then `diaryctl verify` says equal);
 *   - --follow keeps applying new writes: a second database fed from the same log.
 * The change events the apply code puts in the target's outbox are discarded: the change
 * stream already carried them when the live workers applied the same events. */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apply.h"
#include "config.h"
#include "ctlkafka.h"
#include "diaryctl.h"
#include "envelope.h"
#include "kafka.h"

#define REPLAY_BATCH_MAX 5000

struct rpart {
    int32_t partition;
    int64_t next; /* where the target database stands */
    int64_t end;  /* the high watermark seen at start (INT64_MAX with --follow) */
    rd_kafka_message_t **held;
    struct apply_msg *msgs;
    size_t n;
};

struct replay {
    const char *url, *group, *topic;
    int dry_run, follow, json, progress, batch;
    PGconn *pg;
    apply_ctx_t *ctx;
    struct rpart *parts;
    int nparts;
    int64_t total, done, applied, rejected, duplicates, dead;
    struct timespec started, last_report;
    volatile sig_atomic_t *stop;
};

static double since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void report(struct replay *r, int final)
{
    double secs = since(&r->started);
    double rate = secs > 0 ? (double)r->done / secs : 0;
    double eta = rate > 0 && r->total > r->done ? (double)(r->total - r->done) / rate : 0;

    if (!final && since(&r->last_report) < 1.0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &r->last_report);
    if (r->progress && !final) {
        fprintf(stderr, "\rreplay: %" PRId64 "/%" PRId64 " events (%.1f%%) %.0f ev/s ETA %.0fs   ",
                r->done, r->total, r->total ? 100.0 * (double)r->done / (double)r->total : 100.0,
                rate, eta);
        return;
    }
    if (r->progress)
        fprintf(stderr, "\n");
    printf("{\"level\":\"%s\",\"group\":\"%s\",\"done\":%" PRId64 ",\"total\":%" PRId64
           ",\"applied\":%" PRId64 ",\"rejected\":%" PRId64 ",\"duplicates\":%" PRId64
           ",\"dead_letters\":%" PRId64
           ",\"seconds\":%.2f,\"events_per_s\":%.0f,\"eta_s\":%.0f%s}\n",
           final ? "summary" : "progress", r->group, r->done, r->total, r->applied, r->rejected,
           r->duplicates, r->dead, secs, rate, eta, r->dry_run ? ",\"dry_run\":true" : "");
    fflush(stdout);
}

static int reconnect(struct replay *r)
{
    for (int wait_ms = 100; !(r->stop && *r->stop); wait_ms = wait_ms < 5000 ? wait_ms * 2 : 5000) {
        PQreset(r->pg);
        if (PQstatus(r->pg) == CONNECTION_OK) {
            apply_set_conn(r->ctx, r->pg);
            return 0;
        }
        fprintf(stderr, "replay: database unreachable, retrying in %d ms\n", wait_ms);
        usleep((useconds_t)wait_ms * 1000);
    }
    return -1;
}

/* Applies the partition's held messages; returns 0, or -1 when the replay must stop. */
static int flush_part(struct replay *r, struct rpart *p)
{
    struct apply_result res;
    size_t from = 0;
    int rc = 0;

    while (from < p->n) {
        int st = apply_batch(r->ctx, p->partition, p->next, p->msgs + from, p->n - from, &res);
        r->done += (int64_t)res.done;
        r->applied += (int64_t)res.applied;
        r->rejected += (int64_t)res.rejected;
        r->duplicates += (int64_t)res.duplicates;
        r->dead += (int64_t)res.dead_letters;
        from += res.done;
        if (res.done)
            p->next = res.next_offset;
        if (st == APPLY_OK)
            break;
        if (st == APPLY_RETRY) {
            fprintf(stderr, "replay: partition %d: %s; retrying\n", p->partition, res.error);
            if (reconnect(r) != 0) {
                rc = -1;
                break;
            }
            continue;
        }
        fprintf(stderr, "replay: partition %d: %s%s\n", p->partition, res.error,
                st == APPLY_STALE ? " (is another replay of this group running against this "
                                    "database?)"
                                  : "");
        rc = -1;
        break;
    }
    for (size_t i = 0; i < p->n; i++)
        rd_kafka_message_destroy(p->held[i]);
    p->n = 0;
    if (rc == 0) {
        /* The change stream already carried these changes: drop the target's copies. */
        char part[16];
        const char *params[1] = {part};
        snprintf(part, sizeof(part), "%d", p->partition);
        PQclear(PQexecParams(r->pg, "DELETE FROM outbox WHERE \"partition\" = $1", 1, NULL, params,
                             NULL, NULL, 0));
    }
    return rc;
}

/* Dry run: counts the held messages by whether the target already has their event id. */
static int count_part(struct replay *r, struct rpart *p)
{
    for (size_t i = 0; i < p->n; i++) {
        struct evt e;
        char err[256];
        const rd_kafka_message_t *m = p->held[i];

        if (evt_parse(m->payload, m->len, &e, err, sizeof(err)) != 0) {
            r->dead++;
        } else {
            const char *params[1] = {e.id};
            PGresult *res =
                PQexecParams(r->pg, "SELECT 1 FROM processed_events WHERE event_id = $1", 1, NULL,
                             params, NULL, NULL, 0);
            if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
                r->duplicates++;
            else
                r->applied++;
            PQclear(res);
        }
        evt_clear(&e);
        r->done++;
        p->next = m->offset + 1;
        rd_kafka_message_destroy(p->held[i]);
    }
    p->n = 0;
    return 0;
}

static int flush(struct replay *r, struct rpart *p)
{
    return r->dry_run ? count_part(r, p) : flush_part(r, p);
}

static int all_done(const struct replay *r)
{
    for (int i = 0; i < r->nparts; i++)
        if (r->parts[i].next < r->parts[i].end || r->parts[i].n)
            return 0;
    return 1;
}

/* Where each partition starts: the target's stored offset for the group when it has one (a
 * resumed replay), else --from-*. */
static int plan(struct replay *r, rd_kafka_t *rk, int64_t from_offset, int64_t from_ms,
                rd_kafka_topic_partition_list_t *tp)
{
    char err[512];

    for (int i = 0; i < r->nparts; i++) {
        struct rpart *p = &r->parts[i];
        int64_t lo, hi, start, stored;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, r->topic, i, &lo, &hi, 10000);

        if (e) {
            fprintf(stderr, "replay: watermarks of %s [%d]: %s\n", r->topic, i,
                    rd_kafka_err2str(e));
            return -1;
        }
        p->partition = i;
        p->end = r->follow ? INT64_MAX : hi;
        start = from_offset > lo ? from_offset : lo;
        if (from_ms > 0) {
            rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_new(1);
            rd_kafka_topic_partition_list_add(q, r->topic, i)->offset = from_ms;
            if (rd_kafka_offsets_for_times(rk, q, 10000) == 0)
                start = q->elems[0].offset >= 0 ? q->elems[0].offset : hi;
            rd_kafka_topic_partition_list_destroy(q);
        }
        if (r->dry_run) {
            /* A dry run writes nothing, not even the offsets row. */
            char part[16];
            const char *params[3] = {r->group, r->topic, part};
            snprintf(part, sizeof(part), "%d", i);
            PGresult *res =
                PQexecParams(r->pg,
                             "SELECT next_offset FROM consumer_offsets WHERE group_id = $1 "
                             "AND topic = $2 AND \"partition\" = $3",
                             3, NULL, params, NULL, NULL, 0);
            stored = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                         ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                         : start;
            PQclear(res);
        } else if (apply_offsets_load(r->ctx, i, start, &stored, err, sizeof(err)) != APPLY_OK) {
            fprintf(stderr, "replay: offsets of partition %d: %s\n", i, err);
            return -1;
        }
        if (stored > hi) {
            fprintf(stderr,
                    "replay: the database has applied partition %d up to offset %" PRId64
                    " but the log ends at %" PRId64 ": this is not the log it was built from\n",
                    i, stored, hi);
            return -1;
        }
        if (stored < lo) {
            fprintf(stderr,
                    "replay: partition %d must resume at offset %" PRId64
                    " but the log starts at %" PRId64
                    " (events were dropped): cannot replay without a gap\n",
                    i, stored, lo);
            return -1;
        }
        p->next = stored;
        if (!r->follow)
            r->total += hi - stored;
        rd_kafka_topic_partition_list_add(tp, r->topic, i)->offset = stored;
    }
    return 0;
}

int ctl_replay(int argc, char **argv)
{
    static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
                                         {"group", required_argument, NULL, 'g'},
                                         {"topic", required_argument, NULL, 't'},
                                         {"bootstrap", required_argument, NULL, 'b'},
                                         {"from-beginning", no_argument, NULL, 'B'},
                                         {"from-offset", required_argument, NULL, 'o'},
                                         {"from-time", required_argument, NULL, 'T'},
                                         {"follow", no_argument, NULL, 'f'},
                                         {"batch", required_argument, NULL, 'n'},
                                         {"dry-run", no_argument, NULL, 'N'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"force", no_argument, NULL, 'F'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct replay r;
    const char *bflag = NULL, *bootstrap;
    int64_t from_offset = 0, from_ms = 0;
    int c, rc = CTL_FAIL, force = 0;
    static volatile sig_atomic_t stop;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *tp = NULL;
    char err[512];

    memset(&r, 0, sizeof(r));
    r.group = "replay";
    r.topic = config_str("DIARY_EVENTS_TOPIC");
    r.batch = 500;
    optind = 1;
    while ((c = getopt_long(argc, argv, "u:g:t:b:Bo:T:fn:NjFh", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            r.url = optarg;
            break;
        case 'g':
            r.group = optarg;
            break;
        case 't':
            r.topic = optarg;
            break;
        case 'b':
            bflag = optarg;
            break;
        case 'B':
            from_offset = 0;
            break;
        case 'o': {
            long v;
            if (config_parse_long(optarg, 0, LONG_MAX, &v) != 0) {
                fprintf(stderr, "replay: --from-offset wants an offset >= 0\n");
                return CTL_USAGE;
            }
            from_offset = v;
            break;
        }
        case 'T':
            if (ctl_parse_time(optarg, &from_ms) != 0) {
                fprintf(stderr, "replay: --from-time wants a date or RFC 3339 UTC time\n");
                return CTL_USAGE;
            }
            break;
        case 'f':
            r.follow = 1;
            break;
        case 'n': {
            long v;
            if (config_parse_long(optarg, 1, REPLAY_BATCH_MAX, &v) != 0) {
                fprintf(stderr, "replay: --batch wants 1..%d\n", REPLAY_BATCH_MAX);
                return CTL_USAGE;
            }
            r.batch = (int)v;
            break;
        }
        case 'N':
            r.dry_run = 1;
            break;
        case 'j':
            r.json = 1;
            break;
        case 'F':
            force = 1;
            break;
        case 'h':
            printf("usage: diaryctl replay --url TARGET_DB [--group G] [--from-beginning | "
                   "--from-offset N | --from-time T] [--follow] [--batch N] [--dry-run] "
                   "[--json] [--force]\n"
                   "Applies diary.events up to its end as seen at the start (or for ever with "
                   "--follow) into TARGET_DB; resumes where TARGET_DB stopped.\n");
            return CTL_OK;
        default:
            return CTL_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "replay: unexpected argument \"%s\"\n", argv[optind]);
        return CTL_USAGE;
    }
    if (!r.url) {
        fprintf(stderr, "replay: --url TARGET_DB is required (the database to apply into)\n");
        return CTL_USAGE;
    }
    if (!strcmp(r.group, config_str("DIARY_GROUP")) && !force) {
        fprintf(stderr,
                "replay: group %s is the live workers' group; choose another with --group "
                "(or --force)\n",
                r.group);
        return CTL_USAGE;
    }
    if (!(bootstrap = ctl_bootstrap(bflag)))
        return CTL_USAGE;
    r.stop = &stop;
    ctl_on_interrupt(&stop);
    r.progress = !r.json && isatty(STDERR_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &r.started);
    r.last_report = r.started;

    r.pg = PQconnectdb(r.url);
    if (PQstatus(r.pg) != CONNECTION_OK) {
        fprintf(stderr, "replay: cannot connect to the target: %s", PQerrorMessage(r.pg));
        goto out;
    }
    if (!force) {
        /* The outbox of a database that live workers also feed must not be touched. */
        const char *params[1] = {r.group};
        PGresult *res = PQexecParams(r.pg,
                                     "SELECT DISTINCT group_id FROM consumer_offsets "
                                     "WHERE group_id <> $1",
                                     1, NULL, params, NULL, NULL, 0);
        int others = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : -1;
        if (others != 0) {
            fprintf(stderr, "replay: %s\n",
                    others < 0
                        ? PQerrorMessage(r.pg)
                        : "the target database is fed by another group too (its consumer_offsets "
                          "has other groups): replay into a database of its own, or pass --force");
            PQclear(res);
            goto out;
        }
        PQclear(res);
    }
    struct apply_opts ao = {
        .group = r.group, .topic = r.topic, .worker = "diaryctl-replay", .mode = APPLY_MODE_SET};
    if (!(r.ctx = apply_new(r.pg, &ao)))
        goto out;
    if (!(rk = ctl_reader_new(bootstrap, err, sizeof(err))) ||
        (r.nparts = ctl_partition_count(rk, r.topic, err, sizeof(err))) < 0) {
        fprintf(stderr, "replay: %s\n", err);
        goto out;
    }
    r.parts = calloc((size_t)r.nparts, sizeof(*r.parts));
    for (int i = 0; i < r.nparts; i++) {
        r.parts[i].held = calloc((size_t)r.batch, sizeof(*r.parts[i].held));
        r.parts[i].msgs = calloc((size_t)r.batch, sizeof(*r.parts[i].msgs));
    }
    tp = rd_kafka_topic_partition_list_new(r.nparts);
    if (plan(&r, rk, from_offset, from_ms, tp) != 0)
        goto out;
    if (rd_kafka_assign(rk, tp)) {
        fprintf(stderr, "replay: cannot assign %s\n", r.topic);
        goto out;
    }
    while (!stop && (r.follow || !all_done(&r))) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) {
            /* Idle: apply what is held rather than wait for full batches. */
            for (int i = 0; i < r.nparts; i++)
                if (r.parts[i].n && flush(&r, &r.parts[i]) != 0)
                    goto out;
            report(&r, 0);
            continue;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "replay: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        struct rpart *p = &r.parts[m->partition];
        if (m->offset >= p->end || m->offset < p->next + (int64_t)p->n) {
            rd_kafka_message_destroy(m); /* past the end seen at start, or already held */
            continue;
        }
        struct apply_msg *am = &p->msgs[p->n];
        char rid[64];
        memset(am, 0, sizeof(*am));
        am->value = m->payload;
        am->len = m->len;
        am->key = m->key;
        am->key_len = m->key_len;
        am->offset = m->offset;
        am->redrive = kafka_header_get(m, "diary-redrive", rid, sizeof(rid)) >= 0;
        p->held[p->n++] = m;
        if ((int)p->n == r.batch || m->offset + 1 >= p->end)
            if (flush(&r, p) != 0)
                goto out;
        report(&r, 0);
    }
    for (int i = 0; i < r.nparts; i++)
        if (r.parts[i].n && flush(&r, &r.parts[i]) != 0)
            goto out;
    report(&r, 1);
    rc = stop ? CTL_FAIL : CTL_OK;
    if (stop)
        fprintf(stderr, "replay: interrupted; run it again to resume\n");
out:
    if (rk) {
        rd_kafka_assign(rk, NULL);
        for (int i = 0; r.parts && i < r.nparts; i++)
            for (size_t k = 0; k < r.parts[i].n; k++)
                rd_kafka_message_destroy(r.parts[i].held[k]);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    for (int i = 0; r.parts && i < r.nparts; i++) {
        free(r.parts[i].held);
        free(r.parts[i].msgs);
    }
    free(r.parts);
    if (tp)
        rd_kafka_topic_partition_list_destroy(tp);
    apply_destroy(r.ctx);
    PQfinish(r.pg);
    return rc;
}
