/* diaryctl replay: applies a range of diary.events into a target database through the very
 * apply code the workers run (shared/apply.c), under a consumer group of its own whose
 * offsets live in the target database (consumer_offsets), so that
 *   - a replay killed at any moment resumes where the database says it stopped;
 *   - replaying the whole log into an empty database gives the live database's rows, ids
 *     included (then `diaryctl verify` says equal);
 *   - --follow keeps applying new writes: a second database fed from the same log.
 * The change events the apply code puts in the target's outbox are discarded: the change
 * stream already carried them when the live workers applied the same events.
 *
 * The partitions are applied in parallel by --jobs threads. Job j owns the partitions p with
 * p % jobs == j and has everything of its own: a consumer assigned to exactly those
 * partitions, a connection to the target and an apply context on it (a context is not
 * thread-safe). So each partition is applied in log order by one thread, as a live worker
 * does, and its offsets advance in the same transaction as its effects: resuming needs
 * nothing but the target's consumer_offsets, wherever each job was when it was killed. The
 * main thread plans, then only supervises: it turns an interrupt into a stop for every job,
 * sums the jobs' counters for the progress lines and the summary, and joins the jobs. */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
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

/* Messages of one partition per transaction. The set-based statements have a fixed cost of
 * several milliseconds each, so 2000 took 20-30% less PostgreSQL CPU per event than 500 on
 * the bench's backlog; 5000 saved nothing more and holds more in memory (docs/operations.md,
 * "replay"). */
#define REPLAY_BATCH_DEFAULT 2000
#define REPLAY_BATCH_MAX     5000
#define REPLAY_JOBS_MAX      64

struct rpart {
    int32_t partition;
    int64_t next; /* where the target database stands */
    int64_t end;  /* the high watermark seen at start (INT64_MAX with --follow) */
    rd_kafka_message_t **held;
    struct apply_msg *msgs;
    size_t n;
};

/* What a job did. Its thread adds, the main thread reads for the progress lines: atomics. */
struct rcounts {
    _Atomic int64_t done, applied, rejected, duplicates, dead;
};

/* The same, summed over the jobs at one moment. */
struct rtotals {
    int64_t done, applied, rejected, duplicates, dead;
};

struct replay;

/* One job: a thread with its own consumer, connection and apply context, owning the
 * partitions p with p % njobs == index. While the thread runs, only it touches rk, pg, ctx and
 * its partitions in replay.parts. */
struct rjob {
    struct replay *r;
    int index;
    PGconn *pg;
    apply_ctx_t *ctx;
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *tp; /* its partitions and where each starts */
    pthread_t thread;
    bool started;
    int rc; /* 0, or -1 when it stopped on an error; read after the join */
    struct rcounts c;
};

struct replay {
    const char *url, *group, *topic, *bootstrap;
    int dry_run, follow, json, progress, batch;
    struct rjob *jobs; /* njobs_alloc of them, the first njobs used */
    int njobs, njobs_alloc;
    struct rpart *parts;
    int nparts;
    int64_t total; /* set by the plan, before the jobs start */
    struct timespec started, last_report;
    /* Set by the main thread on an interrupt and by a job that failed: every job stops. */
    atomic_bool quit;
    /* The jobs still running, under lock; the last one out wakes the main thread. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int running;
};

static double since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void count(_Atomic int64_t *c, int64_t n)
{
    if (n)
        atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static int64_t load(_Atomic int64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static struct rtotals totals(struct replay *r)
{
    struct rtotals t = {0, 0, 0, 0, 0};
    for (int i = 0; i < r->njobs; i++) {
        struct rcounts *c = &r->jobs[i].c;
        t.done += load(&c->done);
        t.applied += load(&c->applied);
        t.rejected += load(&c->rejected);
        t.duplicates += load(&c->duplicates);
        t.dead += load(&c->dead);
    }
    return t;
}

/* The progress line (on a tty) or a JSON progress line, at most once a second, or the summary
 * (final), of the jobs' counters summed. The main thread's alone. */
static void report(struct replay *r, int final)
{
    struct rtotals t = totals(r);
    double secs = since(&r->started);
    double rate = secs > 0 ? (double)t.done / secs : 0;
    double eta = rate > 0 && r->total > t.done ? (double)(r->total - t.done) / rate : 0;

    if (!final && since(&r->last_report) < 1.0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &r->last_report);
    if (r->progress && !final) {
        fprintf(stderr, "\rreplay: %" PRId64 "/%" PRId64 " events (%.1f%%) %.0f ev/s ETA %.0fs   ",
                t.done, r->total, r->total ? 100.0 * (double)t.done / (double)r->total : 100.0,
                rate, eta);
        return;
    }
    if (r->progress)
        fprintf(stderr, "\n");
    printf("{\"level\":\"%s\",\"group\":\"%s\",\"done\":%" PRId64 ",\"total\":%" PRId64
           ",\"applied\":%" PRId64 ",\"rejected\":%" PRId64 ",\"duplicates\":%" PRId64
           ",\"dead_letters\":%" PRId64
           ",\"seconds\":%.2f,\"events_per_s\":%.0f,\"eta_s\":%.0f,\"jobs\":%d%s}\n",
           final ? "summary" : "progress", r->group, t.done, r->total, t.applied, t.rejected,
           t.duplicates, t.dead, secs, rate, eta, r->njobs, r->dry_run ? ",\"dry_run\":true" : "");
    fflush(stdout);
}

static bool quitting(struct replay *r)
{
    return atomic_load(&r->quit);
}

static int reconnect(struct rjob *j)
{
    for (int wait_ms = 100; !quitting(j->r); wait_ms = wait_ms < 5000 ? wait_ms * 2 : 5000) {
        PQreset(j->pg);
        if (PQstatus(j->pg) == CONNECTION_OK) {
            apply_set_conn(j->ctx, j->pg);
            return 0;
        }
        fprintf(stderr, "replay: job %d: database unreachable, retrying in %d ms\n", j->index,
                wait_ms);
        usleep((useconds_t)wait_ms * 1000);
    }
    return -1;
}

/* Applies the partition's held messages; returns 0, or -1 when the replay must stop. */
static int flush_part(struct rjob *j, struct rpart *p)
{
    struct apply_result res;
    size_t from = 0;
    int rc = 0;

    while (from < p->n) {
        int st = apply_batch(j->ctx, p->partition, p->next, p->msgs + from, p->n - from, &res);
        count(&j->c.done, (int64_t)res.done);
        count(&j->c.applied, (int64_t)res.applied);
        count(&j->c.rejected, (int64_t)res.rejected);
        count(&j->c.duplicates, (int64_t)res.duplicates);
        count(&j->c.dead, (int64_t)res.dead_letters);
        from += res.done;
        if (res.done)
            p->next = res.next_offset;
        if (st == APPLY_OK)
            break;
        if (st == APPLY_RETRY) {
            fprintf(stderr, "replay: partition %d: %s; retrying\n", p->partition, res.error);
            if (reconnect(j) != 0) {
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
        PQclear(PQexecParams(j->pg, "DELETE FROM outbox WHERE \"partition\" = $1", 1, NULL, params,
                             NULL, NULL, 0));
    }
    return rc;
}

/* Dry run: counts the held messages by whether the target already has their event id. */
static int count_part(struct rjob *j, struct rpart *p)
{
    for (size_t i = 0; i < p->n; i++) {
        struct evt e;
        char err[256];
        const rd_kafka_message_t *m = p->held[i];

        if (evt_parse(m->payload, m->len, &e, err, sizeof(err)) != 0) {
            count(&j->c.dead, 1);
        } else {
            const char *params[1] = {e.id};
            PGresult *res =
                PQexecParams(j->pg, "SELECT 1 FROM processed_events WHERE event_id = $1", 1, NULL,
                             params, NULL, NULL, 0);
            if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
                count(&j->c.duplicates, 1);
            else
                count(&j->c.applied, 1);
            PQclear(res);
        }
        evt_clear(&e);
        count(&j->c.done, 1);
        p->next = m->offset + 1;
        rd_kafka_message_destroy(p->held[i]);
    }
    p->n = 0;
    return 0;
}

static int flush(struct rjob *j, struct rpart *p)
{
    return j->r->dry_run ? count_part(j, p) : flush_part(j, p);
}

/* Applies whatever the job's partitions hold. */
static int flush_held(struct rjob *j)
{
    struct replay *r = j->r;
    for (int i = j->index; i < r->nparts; i += r->njobs)
        if (r->parts[i].n && flush(j, &r->parts[i]) != 0)
            return -1;
    return 0;
}

static bool job_holds(const struct rjob *j)
{
    const struct replay *r = j->r;
    for (int i = j->index; i < r->nparts; i += r->njobs)
        if (r->parts[i].n)
            return true;
    return false;
}

static bool job_done(const struct rjob *j)
{
    const struct replay *r = j->r;
    for (int i = j->index; i < r->nparts; i += r->njobs)
        if (r->parts[i].next < r->parts[i].end || r->parts[i].n)
            return false;
    return true;
}

/* A job's loop: consumes its partitions and applies them in batches of up to --batch messages
 * a partition, until each reached the end seen at the start (for ever with --follow) or the
 * replay stops. Returns 0, or -1 on an error (already printed).
 *
 * A partition's batch is applied when full, at the partition's end, or as soon as no further
 * message comes within 20 ms: catching up, the consumer has prefetched far ahead and the
 * batches come out full; following the log, a write waits for one apply, not for a batch to
 * fill. (Waiting for 100 ms without any message, as replay once did, let a steady trickle of
 * writes hold every batch back until it filled.) */
static int job_run(struct rjob *j)
{
    struct replay *r = j->r;

    while (!quitting(r) && (r->follow || !job_done(j))) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(j->rk, job_holds(j) ? 20 : 100);
        if (!m) {
            if (flush_held(j) != 0)
                return -1;
            continue;
        }
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "replay: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->partition < 0 || m->partition >= r->nparts || m->partition % r->njobs != j->index) {
            rd_kafka_message_destroy(m); /* not assigned to this job: cannot happen */
            continue;
        }
        struct rpart *p = &r->parts[m->partition];
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
        if ((int)p->n == r->batch || m->offset + 1 >= p->end)
            if (flush(j, p) != 0)
                return -1;
    }
    /* Done or stopped: what is held still applies (a reconnect gives up at once when
     * stopping). */
    return flush_held(j);
}

static void *job_main(void *arg)
{
    struct rjob *j = arg;
    struct replay *r = j->r;

    j->rc = job_run(j);
    if (j->rc != 0)
        atomic_store(&r->quit, true); /* the replay fails: the other jobs stop too */
    pthread_mutex_lock(&r->lock);
    r->running--;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* Opens job index's connection, apply context and consumer. Returns 0, or -1 with a message
 * on stderr; what was opened stays in j for the caller to close either way. */
static int job_open(struct replay *r, int index)
{
    struct rjob *j = &r->jobs[index];
    /* The change stream already carried the changes: the set-based path leaves them out of
     * the outbox, and flush_part deletes what the one-event-per-transaction fallback wrote. */
    struct apply_opts ao = {.group = r->group,
                            .topic = r->topic,
                            .worker = "diaryctl-replay",
                            .mode = APPLY_MODE_SET,
                            .discard_changes = true};
    char err[512];

    j->r = r;
    j->index = index;
    j->pg = PQconnectdb(r->url);
    if (PQstatus(j->pg) != CONNECTION_OK) {
        fprintf(stderr, "replay: cannot connect to the target: %s", PQerrorMessage(j->pg));
        return -1;
    }
    if (!(j->ctx = apply_new(j->pg, &ao)) ||
        !(j->tp = rd_kafka_topic_partition_list_new(r->nparts > 0 ? r->nparts : 1))) {
        fprintf(stderr, "replay: out of memory\n");
        return -1;
    }
    if (!(j->rk = ctl_reader_new(r->bootstrap, err, sizeof(err)))) {
        fprintf(stderr, "replay: %s\n", err);
        return -1;
    }
    return 0;
}

/* Closes what job_open opened; destroys the messages its partitions still hold first, since
 * they belong to its consumer. */
static void job_close(struct replay *r, struct rjob *j)
{
    if (j->rk) {
        rd_kafka_assign(j->rk, NULL);
        for (int i = j->index; r->parts && i < r->nparts; i += r->njobs) {
            for (size_t k = 0; k < r->parts[i].n; k++)
                rd_kafka_message_destroy(r->parts[i].held[k]);
            r->parts[i].n = 0;
        }
        rd_kafka_consumer_close(j->rk);
        rd_kafka_destroy(j->rk);
    }
    if (j->tp)
        rd_kafka_topic_partition_list_destroy(j->tp);
    apply_destroy(j->ctx);
    PQfinish(j->pg);
}

/* Where each partition starts: the target's stored offset for the group when it has one (a
 * resumed replay), else --from-*. Adds each partition to its job's list. */
static int plan(struct replay *r, int64_t from_offset, int64_t from_ms)
{
    rd_kafka_t *rk = r->jobs[0].rk;
    char err[512];

    for (int i = 0; i < r->nparts; i++) {
        struct rpart *p = &r->parts[i];
        struct rjob *j = &r->jobs[i % r->njobs];
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
        /* A partition shorter than --from-offset starts at its end: nothing of it to apply
         * (and no offsets row past the end, which every later run would refuse). */
        if (start > hi)
            start = hi;
        if (r->dry_run) {
            /* A dry run writes nothing, not even the offsets row. */
            char part[16];
            const char *params[3] = {r->group, r->topic, part};
            snprintf(part, sizeof(part), "%d", i);
            PGresult *res =
                PQexecParams(j->pg,
                             "SELECT next_offset FROM consumer_offsets WHERE group_id = $1 "
                             "AND topic = $2 AND \"partition\" = $3",
                             3, NULL, params, NULL, NULL, 0);
            stored = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                         ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                         : start;
            PQclear(res);
        } else if (apply_offsets_load(j->ctx, i, start, &stored, err, sizeof(err)) != APPLY_OK) {
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
        rd_kafka_topic_partition_list_add(j->tp, r->topic, i)->offset = stored;
    }
    return 0;
}

/* Starts the jobs with SIGINT and SIGTERM blocked, so that only the main thread takes them
 * (librdkafka blocks them in its own threads). Returns 0, or -1 when a thread could not be
 * started; the ones started run on, and the caller stops and joins them. */
static int start_jobs(struct replay *r)
{
    sigset_t block, old;
    int rc = 0;

    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 0; i < r->njobs && rc == 0; i++) {
        struct rjob *j = &r->jobs[i];
        pthread_mutex_lock(&r->lock);
        r->running++;
        pthread_mutex_unlock(&r->lock);
        if (pthread_create(&j->thread, NULL, job_main, j) != 0) {
            fprintf(stderr, "replay: cannot start job %d\n", i);
            pthread_mutex_lock(&r->lock);
            r->running--;
            pthread_mutex_unlock(&r->lock);
            rc = -1;
        } else {
            j->started = true;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* The main thread while the jobs run: reports progress, turns an interrupt into a stop of
 * every job, and returns once every job has ended. */
static void supervise(struct replay *r, volatile sig_atomic_t *stop)
{
    pthread_mutex_lock(&r->lock);
    while (r->running > 0) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += 200 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cond, &r->lock, &until);
        if (*stop)
            atomic_store(&r->quit, true);
        if (r->running > 0) {
            pthread_mutex_unlock(&r->lock);
            report(r, 0);
            pthread_mutex_lock(&r->lock);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

/* The live-group guard: true when consumer_offsets of the target names no group but ours
 * (the outbox of a database that live workers also feed must not be touched). */
static bool target_is_ours(struct replay *r, PGconn *pg)
{
    const char *params[1] = {r->group};
    PGresult *res = PQexecParams(pg,
                                 "SELECT DISTINCT group_id FROM consumer_offsets "
                                 "WHERE group_id <> $1",
                                 1, NULL, params, NULL, NULL, 0);
    int others = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : -1;

    if (others != 0)
        fprintf(stderr, "replay: %s\n",
                others < 0 ? PQerrorMessage(pg)
                           : "the target database is fed by another group too (its "
                             "consumer_offsets has other groups): replay into a database of its "
                             "own, or pass --force");
    PQclear(res);
    return others == 0;
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
                                         {"jobs", required_argument, NULL, 'J'},
                                         {"dry-run", no_argument, NULL, 'N'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"force", no_argument, NULL, 'F'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct replay r;
    const char *bflag = NULL;
    int64_t from_offset = 0, from_ms = 0;
    int c, rc = CTL_FAIL, force = 0, jobs = 2, failed = 0;
    bool sync_made = false;
    static volatile sig_atomic_t stop;
    pthread_condattr_t ca;
    char err[512];

    memset(&r, 0, sizeof(r));
    r.group = "replay";
    r.topic = config_str("DIARY_EVENTS_TOPIC");
    r.batch = REPLAY_BATCH_DEFAULT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "u:g:t:b:Bo:T:fn:J:NjFh", opts, NULL)) != -1) {
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
        case 'J': {
            long v;
            if (config_parse_long(optarg, 1, REPLAY_JOBS_MAX, &v) != 0) {
                fprintf(stderr, "replay: --jobs wants 1..%d\n", REPLAY_JOBS_MAX);
                return CTL_USAGE;
            }
            jobs = (int)v;
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
                   "--from-offset N | --from-time T] [--follow] [--batch N] [--jobs N] "
                   "[--dry-run] [--json] [--force]\n"
                   "Applies diary.events up to its end as seen at the start (or for ever with "
                   "--follow) into TARGET_DB; resumes where TARGET_DB stopped. --jobs N (default "
                   "2, at most the partition count) applies the partitions on N connections at "
                   "once; --batch N (default %d) messages of a partition per transaction.\n",
                   REPLAY_BATCH_DEFAULT);
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
    if (!(r.bootstrap = ctl_bootstrap(bflag)))
        return CTL_USAGE;
    ctl_on_interrupt(&stop);
    r.progress = !r.json && isatty(STDERR_FILENO);
    clock_gettime(CLOCK_MONOTONIC, &r.started);
    r.last_report = r.started;
    atomic_init(&r.quit, false);
    if (pthread_condattr_init(&ca) != 0)
        return CTL_FAIL;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_mutex_init(&r.lock, NULL) == 0) {
        if (pthread_cond_init(&r.cond, &ca) == 0)
            sync_made = true;
        else
            pthread_mutex_destroy(&r.lock);
    }
    pthread_condattr_destroy(&ca);
    if (!sync_made)
        return CTL_FAIL;

    /* Job 0 first: its connection checks the target and its consumer learns the partition
     * count, which caps the number of jobs. */
    if (!(r.jobs = calloc((size_t)jobs, sizeof(*r.jobs))))
        goto out;
    r.njobs_alloc = jobs;
    r.njobs = 1;
    if (job_open(&r, 0) != 0)
        goto out;
    if (!force && !target_is_ours(&r, r.jobs[0].pg))
        goto out;
    if ((r.nparts = ctl_partition_count(r.jobs[0].rk, r.topic, err, sizeof(err))) < 0) {
        fprintf(stderr, "replay: %s\n", err);
        goto out;
    }
    r.njobs = jobs < r.nparts ? jobs : r.nparts > 0 ? r.nparts : 1;
    for (int i = 1; i < r.njobs; i++)
        if (job_open(&r, i) != 0)
            goto out;
    if (!(r.parts = calloc((size_t)r.nparts + 1, sizeof(*r.parts))))
        goto out;
    for (int i = 0; i < r.nparts; i++) {
        r.parts[i].held = calloc((size_t)r.batch, sizeof(*r.parts[i].held));
        r.parts[i].msgs = calloc((size_t)r.batch, sizeof(*r.parts[i].msgs));
        if (!r.parts[i].held || !r.parts[i].msgs) {
            fprintf(stderr, "replay: out of memory\n");
            goto out;
        }
    }
    if (plan(&r, from_offset, from_ms) != 0)
        goto out;
    for (int i = 0; i < r.njobs; i++)
        if (rd_kafka_assign(r.jobs[i].rk, r.jobs[i].tp)) {
            fprintf(stderr, "replay: cannot assign %s\n", r.topic);
            goto out;
        }

    if (start_jobs(&r) != 0) {
        atomic_store(&r.quit, true);
        failed = 1;
    }
    supervise(&r, &stop);
    for (int i = 0; i < r.njobs; i++)
        if (r.jobs[i].started) {
            pthread_join(r.jobs[i].thread, NULL);
            r.jobs[i].started = false;
            failed |= r.jobs[i].rc != 0;
        }
    if (failed)
        goto out;
    report(&r, 1);
    rc = stop ? CTL_FAIL : CTL_OK;
    if (stop)
        fprintf(stderr, "replay: interrupted; run it again to resume\n");
out:
    /* Every job thread has been joined here: the paths that start them join before leaving. */
    for (int i = 0; r.jobs && i < r.njobs_alloc; i++)
        job_close(&r, &r.jobs[i]);
    for (int i = 0; r.parts && i < r.nparts; i++) {
        free(r.parts[i].held);
        free(r.parts[i].msgs);
    }
    free(r.parts);
    free(r.jobs);
    pthread_cond_destroy(&r.cond);
    pthread_mutex_destroy(&r.lock);
    return rc;
}
