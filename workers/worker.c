#include "worker.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apply.h"
#include "apply_event.h"
#include "kafka.h"
#include "log.h"
#include "relay.h"

#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define POLL_IDLE_MS       100
#define WATERMARK_TIMEOUT  5000
#define REQUEST_ID_LEN     64
#define KAFKA_CHECK_PERIOD 2000
#define DB_CHECK_PERIOD    5000
#define COMMIT_PERIOD      1000
/* Most partitions in one apply transaction of a lane's pass. */
#define GROUP_MAX 64
/* A dead letter must stay below what a broker takes (message.max.bytes, 1,000,000 bytes by
 * default): the original travels as a JSON string, and escaping can make it up to six times
 * longer. Past DEAD_LETTER_MAX the dead letter keeps only the first DEAD_LETTER_KEEP bytes. */
#define DEAD_LETTER_MAX  (900 * 1024)
#define DEAD_LETTER_KEEP (128 * 1024)

/* One assigned partition. Allocated once per partition id and kept until the worker is
 * destroyed (revocation only clears it), so a pointer held across a consumer poll (which may
 * run the rebalance callback) stays valid. */
struct part {
    int32_t id;
    bool active;
    int64_t db_next; /* the next offset to apply, as the database holds it */
    /* Messages fetched and not yet applied, q[head, head + len), in offset order. Owned:
     * each is destroyed once applied or dropped. */
    rd_kafka_message_t **q;
    size_t head, len, cap;
    int64_t gap_checked; /* db_next for which a gap before the first message was verified */
    bool outbox_dirty;   /* the outbox may hold rows of this partition */
    bool commit_dirty;   /* db_next not yet committed to Kafka */
    int64_t relay_retry_at;
    int relay_backoff;
};

/* An apply lane: a thread with its own PostgreSQL connection, apply context and producer,
 * that applies and relays the partitions p with p % nlanes == its index. The lanes work in
 * passes: the consumer thread polls Kafka (queueing messages, running the rebalance
 * callback) while every lane is idle, then starts a pass and waits until every lane has
 * finished it. So a partition's queue is only ever touched by one thread at a time, and
 * only the consumer thread calls the consumer's poll. With one lane the consumer thread runs
 * the pass itself. */
struct lane {
    struct worker *w;
    int idx;
    pthread_t th;
    bool started;
    PGconn *pg;
    apply_ctx_t *apply;
    relay_t *relay;
    struct apply_msg *amsgs; /* batch_max entries: a pass's transaction's messages */
    char (*rids)[REQUEST_ID_LEN];
    struct apply_part aparts[GROUP_MAX]; /* its partitions' batches */
    bool ever_connected;
    bool broken;        /* the connection must be made again before any work */
    int db_backoff;     /* the last wait after a database failure, 0 after a success */
    int64_t retry_at;   /* no database work before this (monotonic ms) */
    int64_t checked_at; /* last time the connection was known good */
    size_t rr;          /* round-robin start among its partitions */
    uint64_t pass_seen;
};

struct worker {
    struct worker_config cfg;
    struct worker_metrics *m; /* borrowed */
    const atomic_bool *stop;  /* borrowed */
    rd_kafka_t *rk;
    struct part **parts; /* indexed by partition id; NULL where never assigned */
    size_t nparts;
    struct lane *lanes;
    int nlanes;
    /* The pass handshake between the consumer thread and the lane threads. */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    bool sync_ready;
    uint64_t pass;
    int busy;  /* lanes still in the current pass */
    bool quit; /* the lane threads end */
    atomic_bool fatal;
    bool in_rebalance; /* no consumer poll from inside the rebalance callback */
    bool paused;       /* consumption paused while a lane's connection is down */
    int64_t kafka_checked_at;
    int64_t committed_at; /* last offset commit to Kafka */
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool stopping(const struct worker *w)
{
    return atomic_load(w->stop) || atomic_load(&w->fatal);
}

static void fatal(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A condition the worker must not work around (it would skip or invent writes): logs it
 * and makes worker_run return 1 after a clean shutdown. */
static void fatal(struct worker *w, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_error(NULL, "stopping: %s", msg);
    atomic_store(&w->fatal, true);
}

static int next_backoff(int cur)
{
    return cur <= 0 ? BACKOFF_MIN_MS : cur * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : cur * 2;
}

/* ---- the partitions' message queues ---- */

static rd_kafka_message_t *q_at(struct part *p, size_t i)
{
    return p->q[p->head + i];
}

static int q_push(struct part *p, rd_kafka_message_t *m)
{
    if (p->head + p->len == p->cap) {
        if (p->head > 0) {
            memmove(p->q, p->q + p->head, p->len * sizeof(*p->q));
            p->head = 0;
        } else {
            size_t cap = p->cap ? p->cap * 2 : 256;
            rd_kafka_message_t **q = realloc(p->q, cap * sizeof(*q));
            if (!q)
                return -1;
            p->q = q;
            p->cap = cap;
        }
    }
    p->q[p->head + p->len++] = m;
    return 0;
}

/* Destroys the messages below offset (already applied). */
static void q_drop_below(struct part *p, int64_t offset)
{
    while (p->len > 0 && q_at(p, 0)->offset < offset) {
        rd_kafka_message_destroy(q_at(p, 0));
        p->head++;
        p->len--;
    }
    if (p->len == 0)
        p->head = 0;
}

/* Destroys the messages at or above offset (fetched again after a seek). */
static void q_drop_from(struct part *p, int64_t offset)
{
    while (p->len > 0 && q_at(p, p->len - 1)->offset >= offset)
        rd_kafka_message_destroy(q_at(p, --p->len));
    if (p->len == 0)
        p->head = 0;
}

static void q_clear(struct part *p)
{
    q_drop_from(p, INT64_MIN);
}

static struct part *part_get(struct worker *w, int32_t id, bool create)
{
    if (id < 0)
        return NULL;
    if ((size_t)id >= w->nparts) {
        struct part **parts;
        size_t n = (size_t)id + 1;

        if (!create)
            return NULL;
        parts = realloc(w->parts, n * sizeof(*parts));
        if (!parts)
            return NULL;
        memset(parts + w->nparts, 0, (n - w->nparts) * sizeof(*parts));
        w->parts = parts;
        w->nparts = n;
    }
    if (!w->parts[id] && create) {
        w->parts[id] = calloc(1, sizeof(struct part));
        if (w->parts[id])
            w->parts[id]->id = id;
    }
    return w->parts[id];
}

/* ---- PostgreSQL ---- */

static PGconn *db_connect(const struct worker *w)
{
    /* Keywords before dbname are defaults: the URL's own settings win. */
    const char *keys[] = {"application_name", "connect_timeout", "dbname", NULL};
    const char *values[] = {w->cfg.worker_id, "5", w->cfg.pg_url, NULL};

    return PQconnectdbParams(keys, values, 1);
}

static void take_message(struct worker *w, rd_kafka_message_t *m);

/* Sleeps ms while keeping the group membership: the consumer is polled (messages of active
 * partitions are queued), except inside the rebalance callback where it must not be.
 * Consumer thread only. */
static void sleep_polling(struct worker *w, int ms)
{
    int64_t until = now_ms() + ms;

    while (!stopping(w)) {
        int64_t left = until - now_ms();
        if (left <= 0)
            return;
        if (left > POLL_IDLE_MS)
            left = POLL_IDLE_MS;
        if (w->in_rebalance) {
            usleep((useconds_t)left * 1000);
        } else {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, (int)left);
            if (m)
                take_message(w, m);
        }
    }
}

static bool lane_usable(const struct lane *l)
{
    return !l->broken && l->pg && PQstatus(l->pg) == CONNECTION_OK;
}

/* One attempt to (re)connect the lane. On failure the lane waits (backoff) before the next. */
static bool lane_connect(struct lane *l)
{
    struct worker *w = l->w;

    if (lane_usable(l))
        return true;
    PQfinish(l->pg);
    l->pg = db_connect(w);
    apply_set_conn(l->apply, l->pg);
    if (PQstatus(l->pg) == CONNECTION_OK) {
        if (l->ever_connected) {
            atomic_fetch_add(&w->m->db_reconnects, 1);
            log_info(NULL, "postgres: connected again");
        }
        l->ever_connected = true;
        l->broken = false;
        l->checked_at = now_ms();
        atomic_store(&w->m->pg_ok, true);
        return true;
    }
    l->db_backoff = next_backoff(l->db_backoff);
    l->retry_at = now_ms() + l->db_backoff;
    {
        const char *e = l->pg ? PQerrorMessage(l->pg) : "out of memory";
        log_warn(NULL, "postgres: cannot connect: %.*s; retrying in %d ms", (int)strcspn(e, "\n"),
                 e, l->db_backoff);
    }
    atomic_store(&w->m->pg_ok, false);
    return false;
}

/* Connects the lane (again), waiting out the backoff with the consumer polled, until
 * connected or stopping. Consumer thread only (start-up, the rebalance callback). */
static bool db_ensure(struct worker *w, struct lane *l)
{
    while (!stopping(w)) {
        int64_t wait = l->retry_at - now_ms();

        if (wait > 0)
            sleep_polling(w, (int)wait);
        if (stopping(w))
            break;
        if (lane_connect(l))
            return true;
    }
    return false;
}

/* After a transient failure: the lane waits (backoff) before its next database work, and
 * when its connection is unusable it drops it and reconnects then; meanwhile the consumer
 * thread pauses consumption (lanes_settle). The caller retries what failed. Any thread. */
static void lane_trouble(struct lane *l, const char *why)
{
    struct worker *w = l->w;
    bool broken = !l->pg || PQstatus(l->pg) != CONNECTION_OK ||
                  PQtransactionStatus(l->pg) != PQTRANS_IDLE ||
                  PQpipelineStatus(l->pg) != PQ_PIPELINE_OFF;

    l->db_backoff = next_backoff(l->db_backoff);
    l->retry_at = now_ms() + l->db_backoff;
    atomic_fetch_add(&w->m->apply_errors, 1);
    log_warn(NULL, "%s; retrying in %d ms%s", why, l->db_backoff,
             broken ? ", consumption paused until it is back" : "");
    if (!broken)
        return;
    atomic_store(&w->m->pg_ok, false);
    PQfinish(l->pg);
    l->pg = NULL;
    apply_set_conn(l->apply, NULL);
    l->broken = true;
}

static void pause_all(struct worker *w, bool pause)
{
    rd_kafka_topic_partition_list_t *a = NULL;

    if (rd_kafka_assignment(w->rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a)
        return;
    if (a->cnt > 0) {
        if (pause)
            rd_kafka_pause_partitions(w->rk, a);
        else
            rd_kafka_resume_partitions(w->rk, a);
    }
    rd_kafka_topic_partition_list_destroy(a);
}

/* Between passes: consumption is paused while a lane has no connection (its partitions'
 * queues would only grow), and resumed once every lane has one again. */
static void lanes_settle(struct worker *w)
{
    bool broken = false;

    for (int i = 0; i < w->nlanes; i++)
        broken = broken || w->lanes[i].broken;
    /* Paused again on every pass while broken: a partition assigned meanwhile joins. */
    if (broken || w->paused)
        pause_all(w, broken);
    w->paused = broken;
}

/* ---- Kafka: positions and the rebalance callback ---- */

/* The offset partition p starts at: its consumer_offsets row (inserted at the log start when
 * missing), checked against the log's watermarks. False when the worker must stop. */
static bool position_partition(struct worker *w, int32_t p, int64_t *next)
{
    int64_t low = -1, high = -1;
    int backoff = BACKOFF_MIN_MS;
    struct lane *l = &w->lanes[p % w->nlanes];
    char err[256];

    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(w->rk, w->cfg.events_topic, p,
                                                                 &low, &high, WATERMARK_TIMEOUT);
        if (!e)
            break;
        log_warn(NULL, "kafka: watermarks of %s [%" PRId32 "]: %s; retrying in %d ms",
                 w->cfg.events_topic, p, rd_kafka_err2str(e), backoff);
        sleep_polling(w, backoff);
        backoff = next_backoff(backoff);
        if (stopping(w))
            return false;
    }
    for (;;) {
        int rc;

        if (!db_ensure(w, l))
            return false;
        rc = apply_offsets_load(l->apply, p, low, next, err, sizeof(err));
        if (rc == APPLY_OK)
            break;
        if (rc != APPLY_RETRY) {
            fatal(w, "partition %" PRId32 ": %s", p, err);
            return false;
        }
        lane_trouble(l, err);
        if (stopping(w))
            return false;
    }
    if (*next > high) {
        fatal(w,
              "%s [%" PRId32 "]: the database has applied up to offset %" PRId64
              " but the log ends at %" PRId64
              ": the log is behind the database (a new or restored Kafka cluster?). "
              "Refusing to skip writes; see docs/worker.md",
              w->cfg.events_topic, p, *next, high);
        return false;
    }
    if (*next < low) {
        fatal(w,
              "%s [%" PRId32 "]: the next offset to apply is %" PRId64
              " but the log starts at %" PRId64
              ": the log lost events this database never applied. Refusing to skip them; "
              "see docs/worker.md",
              w->cfg.events_topic, p, *next, low);
        return false;
    }
    log_info(NULL,
             "%s [%" PRId32 "]: assigned, starting at offset %" PRId64 " (log %" PRId64 "..%" PRId64
             ")",
             w->cfg.events_topic, p, *next, low, high);
    return true;
}

static void assign_parts(struct worker *w, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_error_t *error;

    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        struct part *p;
        int64_t next;

        if (!position_partition(w, tp->partition, &next))
            return; /* stopping: the partitions stay unassigned */
        p = part_get(w, tp->partition, true);
        if (!p) {
            fatal(w, "out of memory");
            return;
        }
        q_clear(p);
        p->active = true;
        p->db_next = next;
        p->gap_checked = -1;
        p->outbox_dirty = true; /* drain what a previous owner left before applying */
        p->relay_retry_at = 0;
        p->relay_backoff = 0;
        tp->offset = next;
        metrics_lag(w->m, p->id, 0);
    }
    error = rd_kafka_incremental_assign(w->rk, parts);
    if (error) {
        log_error(NULL, "kafka: incremental assign: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    atomic_fetch_add(&w->m->assigned_partitions, parts->cnt);
}

static void revoke_parts(struct worker *w, rd_kafka_topic_partition_list_t *parts, bool lost)
{
    rd_kafka_error_t *error;

    for (int i = 0; i < parts->cnt; i++) {
        struct part *p = part_get(w, parts->elems[i].partition, false);

        if (!p || !p->active)
            continue;
        log_info(NULL, "%s [%" PRId32 "]: %s at offset %" PRId64, w->cfg.events_topic, p->id,
                 lost ? "lost" : "revoked", p->db_next);
        q_clear(p);
        p->active = false;
        metrics_lag(w->m, p->id, -1);
        atomic_fetch_sub(&w->m->assigned_partitions, 1);
    }
    error = rd_kafka_incremental_unassign(w->rk, parts);
    if (error) {
        log_warn(NULL, "kafka: incremental unassign: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct worker *w = opaque;

    w->in_rebalance = true;
    switch (err) {
    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        atomic_store(&w->m->kafka_joined, true);
        atomic_store(&w->m->kafka_down, false);
        if (!stopping(w))
            assign_parts(w, parts);
        break;
    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        revoke_parts(w, parts, rd_kafka_assignment_lost(rk));
        break;
    default:
        log_error(NULL, "kafka: rebalance failed: %s", rd_kafka_err2str(err));
        revoke_parts(w, parts, true);
        break;
    }
    w->in_rebalance = false;
}

/* Consumer errors are generally informational: librdkafka recovers by itself. "All brokers
 * down" feeds /readyz until the brokers answer again. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct worker *w = opaque;

    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        atomic_store(&w->m->kafka_down, true);
    log_write(err == RD_KAFKA_RESP_ERR__FATAL ? LOG_ERROR : LOG_WARN, NULL, "kafka %s: %s: %s",
              rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void seek_part(struct worker *w, struct part *p, int64_t offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_error_t *error;

    rd_kafka_topic_partition_list_add(l, w->cfg.events_topic, p->id)->offset = offset;
    error = rd_kafka_seek_partitions(w->rk, l, 0);
    if (error) {
        log_warn(NULL, "kafka: seek %s [%" PRId32 "] to %" PRId64 ": %s", w->cfg.events_topic,
                 p->id, offset, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* The database is the truth; the group's committed offsets are only for tools (lag, kcat),
 * so they are committed asynchronously, at most once a second, and failures (refused during
 * a rebalance, say) are ignored. */
static void commit_kafka(struct worker *w, bool now)
{
    rd_kafka_topic_partition_list_t *l;

    if (!now && now_ms() - w->committed_at < COMMIT_PERIOD)
        return;
    w->committed_at = now_ms();
    l = rd_kafka_topic_partition_list_new(4);
    for (size_t i = 0; i < w->nparts; i++) {
        struct part *p = w->parts[i];

        if (p && p->active && p->commit_dirty) {
            rd_kafka_topic_partition_list_add(l, w->cfg.events_topic, p->id)->offset = p->db_next;
            p->commit_dirty = false;
        }
    }
    if (l->cnt > 0)
        (void)rd_kafka_commit(w->rk, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
}

static void update_lag(struct worker *w, struct part *p)
{
    int64_t low, high;

    if (rd_kafka_get_watermark_offsets(w->rk, w->cfg.events_topic, p->id, &low, &high) == 0 &&
        high >= 0)
        metrics_lag(w->m, p->id, high > p->db_next ? high - p->db_next : 0);
}

static void take_message(struct worker *w, rd_kafka_message_t *m)
{
    struct part *p;

    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
            m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE)
            fatal(w,
                  "%s [%" PRId32 "]: %s: the log no longer holds the next events to apply "
                  "(lost events). Refusing to skip them; see docs/worker.md",
                  w->cfg.events_topic, m->partition, rd_kafka_message_errstr(m));
        else
            log_warn(NULL, "kafka: %s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return;
    }
    atomic_store(&w->m->kafka_down, false);
    p = part_get(w, m->partition, false);
    if (!p || !p->active || m->offset < p->db_next) {
        rd_kafka_message_destroy(m);
        return;
    }
    if (p->len > 0 && m->offset <= q_at(p, p->len - 1)->offset)
        q_drop_from(p, m->offset);
    if (q_push(p, m) != 0) {
        rd_kafka_message_destroy(m);
        fatal(w, "out of memory");
    }
}

/* Polls once with timeout, then drains what is already fetched while the queues are short:
 * each pass applies at least a batch of every partition with messages, so the queues stay
 * bounded (about two batches per assigned partition) even when the database is slower than
 * the log. The poll itself always happens, to keep the group membership. */
static void poll_messages(struct worker *w, int timeout)
{
    size_t queued = 0, active = 0, limit;
    rd_kafka_message_t *m;

    for (size_t i = 0; i < w->nparts; i++) {
        if (w->parts[i] && w->parts[i]->active) {
            queued += w->parts[i]->len;
            active++;
        }
    }
    limit = (size_t)w->cfg.batch_max * 2 * (active + 1);
    m = rd_kafka_consumer_poll(w->rk, queued >= limit ? 0 : timeout);
    while (m) {
        take_message(w, m);
        if (++queued >= limit || stopping(w))
            break;
        m = rd_kafka_consumer_poll(w->rk, 0);
    }
}

/* ---- applying ---- */

static int dead_letter_cb(void *opaque, const struct apply_dead_letter *dl)
{
    struct lane *l = opaque;
    struct worker *w = l->w;
    const rd_kafka_message_t *m = dl->msg->opaque;
    struct apply_dead_letter_info info = {dl->msg->value,   dl->msg->len,    dl->error,
                                          w->cfg.worker_id, dl->attempts,    w->cfg.events_topic,
                                          dl->partition,    dl->msg->offset, NULL};
    rd_kafka_headers_t *src = NULL, *hdrs = NULL;
    char err[256], why[512];
    size_t len;
    char *json = apply_dead_letter_json(&info, &len);
    int rc;

    if (json && len > DEAD_LETTER_MAX) {
        /* Whole, it would never be delivered, and the partition would wait for it forever.
         * The cut falls on a UTF-8 character boundary, so a text stays text; the whole
         * original stays in the log at the topic, partition and offset the letter names. */
        size_t keep = dl->msg->len < DEAD_LETTER_KEEP ? dl->msg->len : DEAD_LETTER_KEEP;
        const unsigned char *v = dl->msg->value;

        while (keep > 0 && keep < dl->msg->len && (v[keep] & 0xc0) == 0x80)
            keep--;
        snprintf(why, sizeof(why), "%s (the event is cut to its first %zu of %zu bytes)",
                 dl->error ? dl->error : "", keep, dl->msg->len);
        info.len = keep;
        info.error = why;
        free(json);
        json = apply_dead_letter_json(&info, &len);
    }
    if (!json)
        return -1;
    if (m && rd_kafka_message_headers(m, &src) == RD_KAFKA_RESP_ERR_NO_ERROR && src)
        hdrs = rd_kafka_headers_copy(src);
    /* hdrs is taken by relay_dead_letter whatever happens. */
    rc = relay_dead_letter(l->relay, dl->msg->key, dl->msg->key_len, hdrs, json, len, err,
                           sizeof(err));
    if (rc != 0)
        log_warn(dl->msg->request_id, "dead letter of offset %" PRId64 " not delivered: %s",
                 dl->msg->offset, err);
    free(json);
    return rc;
}

/* Publishes the partition's outbox (reading it) and waits for the acknowledgements. True
 * when it is empty (the partition may apply). */
static bool relay_part(struct lane *l, struct part *p)
{
    struct worker *w = l->w;
    uint64_t published = 0;
    char err[256];
    enum relay_status rs;
    uint64_t t0;

    if (now_ms() < p->relay_retry_at)
        return false;
    t0 = now_us();
    rs = relay_drain(l->relay, l->apply, p->id, &published, err, sizeof(err));
    atomic_fetch_add(&w->m->outbox_us_sum, now_us() - t0);
    atomic_fetch_add(&w->m->outbox_published, published);
    switch (rs) {
    case RELAY_OK:
        p->outbox_dirty = false;
        p->relay_backoff = 0;
        return true;
    case RELAY_DB_RETRY:
        lane_trouble(l, err);
        return false;
    case RELAY_BROKER_RETRY:
        atomic_fetch_add(&w->m->outbox_errors, 1);
        p->relay_backoff = next_backoff(p->relay_backoff);
        p->relay_retry_at = now_ms() + p->relay_backoff;
        log_warn(NULL,
                 "outbox of partition %" PRId32 ": %s; retrying in %d ms, the partition "
                 "waits",
                 p->id, err, p->relay_backoff);
        return false;
    case RELAY_FATAL:
        fatal(w, "outbox of partition %" PRId32 ": %s", p->id, err);
        return false;
    }
    return false;
}

/* After a committed batch: its change events, as the flush returned them, are produced now
 * and settled at the end of the pass (lane_settle), so that a lane waits once per pass for
 * the broker's acknowledgements instead of once per partition. Without them (a batch that
 * went one event per transaction, the per-event mode) the outbox is drained now. */
static void relay_batch(struct lane *l, struct part *p)
{
    const struct apply_outbox_row *rows;
    size_t n;
    uint64_t t0 = now_us();

    if (!apply_outbox_flushed(l->apply, p->id, &rows, &n)) {
        (void)relay_part(l, p);
        return;
    }
    if (n == 0)
        p->outbox_dirty = false; /* the batch changed nothing: its outbox is as empty as before */
    else if (relay_send(l->relay, p->id, rows, n) != 0)
        (void)relay_part(l, p);
    atomic_fetch_add(&l->w->m->outbox_us_sum, now_us() - t0);
}

/* relay_settle's verdict on one partition's rows. */
static void settled(void *opaque, int32_t partition, const char *why)
{
    struct lane *l = opaque;
    struct part *p = part_get(l->w, partition, false);

    if (!p)
        return;
    if (!why) {
        p->outbox_dirty = false;
        p->relay_backoff = 0;
        return;
    }
    atomic_fetch_add(&l->w->m->outbox_errors, 1);
    p->relay_backoff = next_backoff(p->relay_backoff);
    p->relay_retry_at = now_ms() + p->relay_backoff;
    log_warn(NULL, "outbox of partition %" PRId32 ": %s; retrying in %d ms, the partition waits",
             partition, why, p->relay_backoff);
}

/* The end of a lane's pass: the acknowledgements of what relay_batch sent. */
static void lane_settle(struct lane *l)
{
    struct worker *w = l->w;
    uint64_t published = 0, t0 = now_us();
    char err[256];
    enum relay_status rs = relay_settle(l->relay, lane_usable(l) ? l->apply : NULL, settled, l,
                                        &published, err, sizeof(err));

    atomic_fetch_add(&w->m->outbox_us_sum, now_us() - t0);
    atomic_fetch_add(&w->m->outbox_published, published);
    if (rs == RELAY_DB_RETRY)
        lane_trouble(l, err);
    else if (rs == RELAY_FATAL)
        fatal(w, "outbox: %s", err);
}

static void account(struct worker *w, const struct apply_result *res)
{
    atomic_fetch_add(&w->m->applied, res->applied);
    atomic_fetch_add(&w->m->rejected, res->rejected);
    atomic_fetch_add(&w->m->duplicates, res->duplicates);
    atomic_fetch_add(&w->m->dead_letters, res->dead_letters);
    atomic_fetch_add(&w->m->failed_batches, res->failed_batches);
}

/* How many of p's queued messages its next batch takes. */
static size_t part_take(const struct worker *w, const struct part *p)
{
    return p->len < (size_t)w->cfg.batch_max ? p->len : (size_t)w->cfg.batch_max;
}

/* Whether partition p can apply now, and how many of its queued messages: its outbox is
 * published first, a gap before its first message is checked. 0: nothing to apply now. */
static size_t part_ready(struct lane *l, struct part *p)
{
    struct worker *w = l->w;

    if (p->outbox_dirty && !relay_part(l, p))
        return 0;
    if (!p->active || p->len == 0 || stopping(w))
        return 0;
    /* The log normally has no holes: a first message past the stored offset means fetching
     * resumed somewhere unexpected. Seek back once to be sure nothing is skipped; if the log
     * really has a gap there, the same message comes again and is applied. */
    if (q_at(p, 0)->offset > p->db_next && p->gap_checked != p->db_next) {
        log_info(NULL,
                 "%s [%" PRId32 "]: next message at offset %" PRId64
                 " but the database is at %" PRId64 "; seeking back to check",
                 w->cfg.events_topic, p->id, q_at(p, 0)->offset, p->db_next);
        p->gap_checked = p->db_next;
        q_clear(p);
        seek_part(w, p, p->db_next);
        return 0;
    }
    return part_take(w, p);
}

/* Points amsgs[0, n) at the first n queued messages of p. */
static void part_msgs(struct part *p, struct apply_msg *amsgs, char (*rids)[REQUEST_ID_LEN],
                      size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = q_at(p, i);
        struct apply_msg *a = &amsgs[i];
        char redrive[32];

        a->value = m->payload;
        a->len = m->len;
        a->key = m->key;
        a->key_len = m->key_len;
        a->offset = m->offset;
        a->request_id =
            kafka_header_get(m, "request-id", rids[i], REQUEST_ID_LEN) >= 0 ? rids[i] : NULL;
        a->redrive = kafka_header_get(m, "diary-redrive", redrive, sizeof(redrive)) >= 0;
        a->opaque = m;
    }
}

/* What follows partition p's batch: its position and queue, its change events, or the
 * trouble. *troubled: the lane already backed off for a transient failure of this call. */
static void part_done(struct lane *l, struct part *p, const struct apply_result *res,
                      bool *troubled)
{
    struct worker *w = l->w;

    account(w, res);
    if (res->applied > 0)
        p->outbox_dirty = true;
    switch (res->status) {
    case APPLY_OK:
        atomic_store(&w->m->pg_ok, true);
        l->db_backoff = 0;
        l->checked_at = now_ms();
        p->db_next = res->next_offset;
        q_drop_below(p, p->db_next);
        p->commit_dirty = true;
        update_lag(w, p);
        if (p->outbox_dirty)
            relay_batch(l, p);
        break;
    case APPLY_STALE:
        atomic_fetch_add(&w->m->stale_batches, 1);
        q_clear(p);
        if (res->next_offset < 0) {
            fatal(w, "partition %" PRId32 ": %s, and its consumer_offsets row is gone", p->id,
                  res->error);
            break;
        }
        log_warn(NULL,
                 "%s [%" PRId32 "]: %s: another worker moved it to %" PRId64
                 "; continuing from there",
                 w->cfg.events_topic, p->id, res->error, res->next_offset);
        p->db_next = res->next_offset;
        /* The offsets may have moved through this worker's own batch, committed while its
         * answer was lost (the connection broke after the COMMIT): that batch's change events
         * are in the outbox and no later commit may come to publish them. Publishing what a
         * new owner publishes too is harmless (at least once, each copy in order). */
        p->outbox_dirty = true;
        seek_part(w, p, p->db_next);
        break;
    case APPLY_RETRY:
        p->db_next = res->next_offset;
        q_drop_below(p, p->db_next);
        if (!*troubled)
            lane_trouble(l, res->error);
        *troubled = true;
        break;
    default:
        fatal(w, "partition %" PRId32 ": %s", p->id, res->error);
        break;
    }
}

/* Applies the batches of group[0, ng) (partitions of this lane, ready, at most batch_max
 * messages in all) in one call, in increasing partition order. */
static void apply_group(struct lane *l, struct part **group, size_t ng)
{
    struct worker *w = l->w;
    struct apply_part *b = l->aparts;
    size_t used = 0, committed = 0;
    bool troubled = false;
    uint64_t t0;

    for (size_t i = 1; i < ng; i++) {
        for (size_t k = i; k > 0 && group[k - 1]->id > group[k]->id; k--) {
            struct part *tp = group[k];

            group[k] = group[k - 1];
            group[k - 1] = tp;
        }
    }
    for (size_t i = 0; i < ng; i++) {
        size_t n = part_take(w, group[i]);

        part_msgs(group[i], l->amsgs + used, l->rids + used, n);
        b[i] = (struct apply_part){group[i]->id, group[i]->db_next, l->amsgs + used, n, {0}};
        used += n;
    }
    t0 = now_us();
    apply_batches(l->apply, b, ng);
    for (size_t i = 0; i < ng; i++)
        if (b[i].result.status == APPLY_OK)
            committed += b[i].n;
    if (committed > 0)
        metrics_batch(w->m, committed, now_us() - t0);
    for (size_t i = 0; i < ng; i++)
        part_done(l, group[i], &b[i].result, &troubled);
}

/* How long the next poll may wait: not at all when a partition has work it can do now. */
static int poll_timeout(struct worker *w)
{
    int64_t now = now_ms();
    int timeout = POLL_IDLE_MS;

    for (size_t i = 0; i < w->nparts; i++) {
        struct part *p = w->parts[i];
        int64_t at;

        if (!p || !p->active || (!p->outbox_dirty && p->len == 0))
            continue;
        at = w->lanes[p->id % w->nlanes].retry_at;
        if (p->outbox_dirty && p->relay_retry_at > at)
            at = p->relay_retry_at;
        if (at <= now)
            return 0;
        if (at - now < timeout)
            timeout = (int)(at - now);
    }
    for (int i = 0; i < w->nlanes; i++) {
        const struct lane *l = &w->lanes[i];
        if (l->broken && l->retry_at - now < timeout)
            timeout = l->retry_at <= now ? 0 : (int)(l->retry_at - now);
    }
    return timeout;
}

/* One lane's share of a pass: a batch (and the relay) of each of its partitions with work,
 * unless its database is in a backoff. The batches go to the database together, in one
 * transaction of at most batch_max messages (and GROUP_MAX partitions): a partition with a
 * backlog fills a transaction alone, the small batches of a steady load share one. */
static void lane_pass(struct lane *l)
{
    struct worker *w = l->w;
    struct part *group[GROUP_MAX];
    size_t ng = 0, total = 0;

    if (now_ms() < l->retry_at || stopping(w))
        return;
    if (!lane_usable(l) && !lane_connect(l))
        return;
    for (size_t k = 0; k < w->nparts && !stopping(w) && now_ms() >= l->retry_at; k++) {
        struct part *p = w->parts[(l->rr + k) % w->nparts];
        size_t n;

        if (!p || !p->active || p->id % w->nlanes != l->idx || !(n = part_ready(l, p)))
            continue;
        if (ng == GROUP_MAX || (ng > 0 && total + n > (size_t)w->cfg.batch_max)) {
            apply_group(l, group, ng);
            ng = total = 0;
            if (stopping(w) || now_ms() < l->retry_at) {
                /* p stays queued for the next pass. */
                break;
            }
        }
        group[ng++] = p;
        total += n;
    }
    if (ng > 0 && !stopping(w) && now_ms() >= l->retry_at)
        apply_group(l, group, ng);
    lane_settle(l);
    l->rr++;
}

static void *lane_main(void *arg)
{
    struct lane *l = arg;
    struct worker *w = l->w;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->quit && w->pass == l->pass_seen)
            pthread_cond_wait(&w->go, &w->mu);
        if (w->quit)
            break;
        l->pass_seen = w->pass;
        pthread_mutex_unlock(&w->mu);
        lane_pass(l);
        pthread_mutex_lock(&w->mu);
        if (--w->busy == 0)
            pthread_cond_signal(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Runs one pass on every lane and waits for all of them. */
static void run_pass(struct worker *w)
{
    if (w->nlanes == 1) {
        lane_pass(&w->lanes[0]);
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->pass++;
    w->busy = w->nlanes;
    pthread_cond_broadcast(&w->go);
    while (w->busy > 0)
        pthread_cond_wait(&w->done, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

/* While librdkafka says all brokers are down, ask for metadata now and then to notice when
 * they are back (for /readyz) even if no message flows. */
static void check_kafka(struct worker *w)
{
    const struct rd_kafka_metadata *md;
    int64_t now = now_ms();

    if (!atomic_load(&w->m->kafka_down) || now - w->kafka_checked_at < KAFKA_CHECK_PERIOD)
        return;
    w->kafka_checked_at = now;
    if (rd_kafka_metadata(w->rk, 0, NULL, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        atomic_store(&w->m->kafka_down, false);
    }
}

/* An idle worker would only notice a lost database with the next event: ask now and then,
 * so that /readyz tells the truth and the reconnect starts early. A lane without a
 * connection tries again once its backoff is over. Between passes only. */
static void check_db(struct worker *w)
{
    int64_t now = now_ms();

    for (int i = 0; i < w->nlanes && !stopping(w); i++) {
        struct lane *l = &w->lanes[i];
        PGresult *res;

        if (!lane_usable(l)) {
            if (now >= l->retry_at)
                (void)lane_connect(l);
            continue;
        }
        if (now - l->checked_at < DB_CHECK_PERIOD)
            continue;
        l->checked_at = now;
        res = PQexec(l->pg, "SELECT 1");
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            const char *e = PQerrorMessage(l->pg);
            char why[256];

            snprintf(why, sizeof(why), "postgres: %.*s", (int)strcspn(e, "\n"), e);
            PQclear(res);
            lane_trouble(l, why);
            continue;
        }
        PQclear(res);
        atomic_store(&w->m->pg_ok, true);
    }
}

/* The lane's own context and producer (its thread starts in worker_run). */
static int lane_init(struct worker *w, struct lane *l, int idx, char *err, size_t errlen)
{
    const struct worker_config *cfg = &w->cfg;
    struct apply_opts ao;

    l->w = w;
    l->idx = idx;
    l->broken = true; /* not connected yet */
    l->amsgs = calloc((size_t)cfg->batch_max, sizeof(*l->amsgs));
    l->rids = calloc((size_t)cfg->batch_max, sizeof(*l->rids));
    if (!l->amsgs || !l->rids) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    l->relay =
        relay_new(cfg->bootstrap, cfg->worker_id, cfg->changes_topic, cfg->dlq_topic, err, errlen);
    if (!l->relay)
        return -1;
    memset(&ao, 0, sizeof(ao));
    ao.group = cfg->group;
    ao.topic = cfg->events_topic;
    ao.worker = cfg->worker_id;
    ao.dead_letter_cb = dead_letter_cb;
    ao.cb_opaque = l;
    ao.mode = cfg->per_event ? APPLY_MODE_EVENT : APPLY_MODE_SET;
    l->apply = apply_new(NULL, &ao);
    if (!l->apply) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

worker_t *worker_new(const struct worker_config *cfg, struct worker_metrics *m,
                     const atomic_bool *stop, char *err, size_t errlen)
{
    struct worker *w = calloc(1, sizeof(*w));
    char session[24];
    rd_kafka_conf_t *conf;

    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->cfg = *cfg;
    w->m = m;
    w->stop = stop;
    atomic_init(&w->fatal, false);
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        free(w);
        snprintf(err, errlen, "cannot create a mutex");
        return NULL;
    }
    if (pthread_cond_init(&w->go, NULL) != 0 || pthread_cond_init(&w->done, NULL) != 0) {
        snprintf(err, errlen, "cannot create a condition variable");
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    w->sync_ready = true;
    w->nlanes = cfg->lanes > 0 ? (int)cfg->lanes : 1;
    w->lanes = calloc((size_t)w->nlanes, sizeof(*w->lanes));
    if (!w->lanes) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(session, sizeof(session), "%ld", cfg->session_timeout_ms);
    {
        /* clang-format off */
        const char *kv[] = {
            "group.id", cfg->group,
            "partition.assignment.strategy", "cooperative-sticky",
            "enable.auto.commit", "false",
            "enable.auto.offset.store", "false",
            /* An offset out of range is lost events: say so, never jump. */
            "auto.offset.reset", "error",
            "fetch.wait.max.ms", "10",
            "session.timeout.ms", session,
            "enable.partition.eof", "false",
            NULL};
        /* clang-format on */
        conf = kafka_conf_new(cfg->bootstrap, cfg->worker_id, kv, err, errlen);
    }
    if (!conf)
        goto fail;
    rd_kafka_conf_set_opaque(conf, w);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (!w->rk) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_poll_set_consumer(w->rk);
    for (int i = 0; i < w->nlanes; i++)
        if (lane_init(w, &w->lanes[i], i, err, errlen) != 0)
            goto fail;
    return w;
fail:
    worker_destroy(w);
    return NULL;
}

/* Starts the lane threads (none with one lane). False when one could not start. */
static bool lanes_start(struct worker *w)
{
    if (w->nlanes == 1)
        return true;
    for (int i = 0; i < w->nlanes; i++) {
        if (pthread_create(&w->lanes[i].th, NULL, lane_main, &w->lanes[i]) != 0) {
            log_error(NULL, "cannot start apply lane %d", i);
            return false;
        }
        w->lanes[i].started = true;
    }
    return true;
}

static void lanes_stop(struct worker *w)
{
    if (!w->sync_ready)
        return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_broadcast(&w->go);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nlanes; i++) {
        if (w->lanes && w->lanes[i].started) {
            pthread_join(w->lanes[i].th, NULL);
            w->lanes[i].started = false;
        }
    }
}

int worker_run(worker_t *w)
{
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_resp_err_t e;

    rd_kafka_topic_partition_list_add(topics, w->cfg.events_topic, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(w->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e) {
        log_error(NULL, "kafka: subscribe to %s: %s", w->cfg.events_topic, rd_kafka_err2str(e));
        return 1;
    }
    log_info(NULL,
             "worker %s: group %s, applying %s, changes to %s, dead letters to %s, %d apply "
             "lane(s)",
             w->cfg.worker_id, w->cfg.group, w->cfg.events_topic, w->cfg.changes_topic,
             w->cfg.dlq_topic, w->nlanes);
    if (!lanes_start(w))
        atomic_store(&w->fatal, true);
    if (!stopping(w) && db_ensure(w, &w->lanes[0])) {
        while (!stopping(w)) {
            poll_messages(w, poll_timeout(w));
            run_pass(w);
            lanes_settle(w);
            commit_kafka(w, false);
            check_kafka(w);
            if (!stopping(w))
                check_db(w);
        }
    }
    /* Nothing is half-applied here: each batch committed or rolled back inside apply_batch. */
    lanes_stop(w);
    log_info(NULL, "leaving the group%s", atomic_load(&w->fatal) ? " after a fatal error" : "");
    commit_kafka(w, true);
    for (size_t i = 0; i < w->nparts; i++)
        if (w->parts[i])
            q_clear(w->parts[i]);
    w->in_rebalance = false;
    e = rd_kafka_consumer_close(w->rk);
    if (e)
        log_warn(NULL, "kafka: consumer close: %s", rd_kafka_err2str(e));
    return atomic_load(&w->fatal) ? 1 : 0;
}

void worker_destroy(worker_t *w)
{
    if (!w)
        return;
    lanes_stop(w);
    for (size_t i = 0; i < w->nparts; i++) {
        if (w->parts[i]) {
            q_clear(w->parts[i]);
            free(w->parts[i]->q);
            free(w->parts[i]);
        }
    }
    free(w->parts);
    /* Messages hold references into the consumer: all are destroyed above, before it. */
    if (w->rk)
        rd_kafka_destroy(w->rk);
    for (int i = 0; w->lanes && i < w->nlanes; i++) {
        struct lane *l = &w->lanes[i];
        relay_destroy(l->relay);
        apply_destroy(l->apply);
        PQfinish(l->pg);
        free(l->amsgs);
        free(l->rids);
    }
    free(w->lanes);
    if (w->sync_ready) {
        pthread_cond_destroy(&w->go);
        pthread_cond_destroy(&w->done);
        pthread_mutex_destroy(&w->mu);
    }
    free(w);
}
