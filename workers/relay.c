#include "relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"
#include "log.h"

/* Outbox rows published per round: one SELECT, one wait for acknowledgements, one DELETE. */
#define RELAY_ROUND 1000

/* One relay_send: a partition's rows in flight until relay_settle. Heap-allocated whole, so
 * the delivery records stay where the callbacks write them. */
struct sent {
    struct sent *next;
    int32_t partition;
    size_t n;                      /* rows queued to the producer */
    size_t remaining;              /* of them, reports still to come */
    rd_kafka_resp_err_t queue_err; /* a row that could not be queued (the rest were not) */
    int64_t *seqs;
    struct delivery *d;
};

struct relay {
    rd_kafka_t *rk;
    char *changes_topic, *dlq_topic;
    struct sent *sent, **sent_tail;
};

/* The opaque of one produced message. Lives on the producing function's stack or heap until
 * every report of the round arrived; the delivery callback only fills it in. */
struct delivery {
    rd_kafka_resp_err_t err;
    int done;
    size_t *remaining;
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct delivery *d = m->_private;

    if (!d)
        return;
    d->err = m->err;
    d->done = 1;
    (*d->remaining)--;
}

relay_t *relay_new(const char *bootstrap, const char *client_id, const char *changes_topic,
                   const char *dlq_topic, char *err, size_t errlen)
{
    struct relay *r = calloc(1, sizeof(*r));
    rd_kafka_conf_t *conf;

    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->sent_tail = &r->sent;
    r->changes_topic = strdup(changes_topic);
    r->dlq_topic = strdup(dlq_topic);
    if (!r->changes_topic || !r->dlq_topic) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    conf = kafka_conf_new(bootstrap, client_id, kafka_producer_settings, err, errlen);
    if (!conf)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    r->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!r->rk) {
        /* rd_kafka_new frees the configuration only on success. */
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    return r;
fail:
    relay_destroy(r);
    return NULL;
}

static void sent_free(struct sent *b)
{
    if (!b)
        return;
    free(b->seqs);
    free(b->d);
    free(b);
}

void relay_destroy(relay_t *r)
{
    if (!r)
        return;
    if (r->rk) {
        rd_kafka_flush(r->rk, 10000);
        if (rd_kafka_outq_len(r->rk) > 0)
            log_warn(NULL, "producer: %d message(s) still in flight at shutdown",
                     rd_kafka_outq_len(r->rk));
        /* Reports that never came are purged with the handle: none may reach a freed
         * record, so the records go after it. */
        rd_kafka_destroy(r->rk);
    }
    while (r->sent) {
        struct sent *b = r->sent;
        r->sent = b->next;
        sent_free(b);
    }
    free(r->changes_topic);
    free(r->dlq_topic);
    free(r);
}

/* Produces one message; hdrs is taken on success. Retries while the local queue is full. */
static rd_kafka_resp_err_t produce(struct relay *r, const char *topic, const void *key,
                                   size_t key_len, const void *value, size_t len,
                                   rd_kafka_headers_t *hdrs, struct delivery *d)
{
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            r->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return e;
        rd_kafka_poll(r->rk, 10);
    }
}

/* Serves delivery reports until none of this round is outstanding. Every produced message
 * gets a report within message.timeout.ms, so this ends. */
static void wait_reports(struct relay *r, const size_t *remaining)
{
    while (*remaining > 0)
        rd_kafka_poll(r->rk, 50);
}

/* Produces rows[0, n) of partition in order, keyed by user id with the ce_type and request-id
 * headers, into a new record of what is in flight (not yet listed). Stops at the first row
 * that cannot be queued, to keep the order. NULL when out of memory (nothing was sent). */
static struct sent *send_rows(struct relay *r, int32_t partition,
                              const struct apply_outbox_row *rows, size_t n)
{
    struct sent *b = calloc(1, sizeof(*b));

    if (!b || !(b->seqs = calloc(n, sizeof(*b->seqs))) || !(b->d = calloc(n, sizeof(*b->d)))) {
        sent_free(b);
        return NULL;
    }
    b->partition = partition;
    for (; b->n < n; b->n++) {
        const struct apply_outbox_row *row = &rows[b->n];
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        rd_kafka_resp_err_t e;

        rd_kafka_header_add(h, "ce_type", -1, row->type, -1);
        if (row->request_id[0])
            rd_kafka_header_add(h, "request-id", -1, row->request_id, -1);
        b->seqs[b->n] = row->seq;
        b->d[b->n].remaining = &b->remaining;
        b->remaining++;
        e = produce(r, r->changes_topic, row->user_id, strlen(row->user_id), row->event,
                    row->event_len, h, &b->d[b->n]);
        if (e) {
            /* Not queued: no report will come. */
            b->remaining--;
            rd_kafka_headers_destroy(h);
            b->queue_err = e;
            break;
        }
    }
    return b;
}

/* Once every report of b came: how many of its rows the broker acknowledged before the first
 * it did not (whose error goes to b->queue_err). Those, and only those, may leave the
 * outbox: what follows a failure is sent again, so the stream keeps the outbox's order. */
static size_t sent_acked(struct sent *b)
{
    size_t acked = 0;

    while (acked < b->n && b->d[acked].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        acked++;
    if (acked < b->n && !b->queue_err)
        b->queue_err = b->d[acked].err;
    return acked;
}

/* What a row the broker did not take means: RELAY_FATAL when the producer failed for good
 * (idempotence lost), else RELAY_BROKER_RETRY; err says why. */
static enum relay_status broker_error(struct relay *r, rd_kafka_resp_err_t e, char *err,
                                      size_t errlen)
{
    char reason[512];
    rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(r->rk, reason, sizeof(reason));

    if (fatal) {
        snprintf(err, errlen, "producer: fatal error %s: %s", rd_kafka_err2name(fatal), reason);
        return RELAY_FATAL;
    }
    snprintf(err, errlen, "%s: %s", r->changes_topic, rd_kafka_err2str(e));
    return RELAY_BROKER_RETRY;
}

/* Publishes rows[0, n) of partition, waits for their reports, and deletes the acknowledged
 * prefix from the outbox. RELAY_OK when every row was acknowledged and deleted. */
static enum relay_status publish_rows(struct relay *r, apply_ctx_t *apply, int32_t partition,
                                      const struct apply_outbox_row *rows, size_t n,
                                      uint64_t *published, char *err, size_t errlen)
{
    struct sent *b;
    enum relay_status st = RELAY_OK;
    size_t acked;
    int rc;

    if (n == 0)
        return RELAY_OK;
    if (!(b = send_rows(r, partition, rows, n))) {
        snprintf(err, errlen, "out of memory");
        return RELAY_FATAL;
    }
    wait_reports(r, &b->remaining);
    acked = sent_acked(b);
    rc = apply_outbox_delete(apply, partition, b->seqs, acked, err, errlen);
    if (rc != APPLY_OK)
        /* Published but still in the outbox: they go out again (at least once). */
        st = rc == APPLY_RETRY ? RELAY_DB_RETRY : RELAY_FATAL;
    else if ((*published += acked, b->queue_err))
        st = broker_error(r, b->queue_err, err, errlen);
    sent_free(b);
    return st;
}

enum relay_status relay_drain(relay_t *r, apply_ctx_t *apply, int32_t partition,
                              uint64_t *published, char *err, size_t errlen)
{
    for (;;) {
        const struct apply_outbox_row *rows;
        size_t n;
        enum relay_status st;
        int rc = apply_outbox_fetch(apply, partition, RELAY_ROUND, &rows, &n, err, errlen);

        if (rc != APPLY_OK)
            return rc == APPLY_RETRY ? RELAY_DB_RETRY : RELAY_FATAL;
        st = publish_rows(r, apply, partition, rows, n, published, err, errlen);
        if (st != RELAY_OK || n < RELAY_ROUND)
            return st;
    }
}

int relay_send(relay_t *r, int32_t partition, const struct apply_outbox_row *rows, size_t n)
{
    struct sent *b;

    if (n == 0)
        return 0;
    if (!(b = send_rows(r, partition, rows, n)))
        return -1;
    *r->sent_tail = b;
    r->sent_tail = &b->next;
    return 0;
}

enum relay_status relay_settle(relay_t *r, apply_ctx_t *apply, relay_settled_fn settled,
                               void *opaque, uint64_t *published, char *err, size_t errlen)
{
    struct sent *b;
    int64_t *seqs = NULL;
    size_t total = 0, nseqs = 0;
    enum relay_status st = RELAY_OK;
    int rc;

    if (!r->sent)
        return RELAY_OK;
    for (b = r->sent; b; b = b->next) {
        wait_reports(r, &b->remaining);
        total += b->n;
    }
    if (!apply)
        goto done; /* no database: everything stays in the outbox, to go out again */
    seqs = malloc(total * sizeof(*seqs));
    if (!seqs) {
        snprintf(err, errlen, "out of memory");
        st = RELAY_FATAL;
        goto done;
    }
    for (b = r->sent; b; b = b->next) {
        size_t acked = sent_acked(b);

        memcpy(seqs + nseqs, b->seqs, acked * sizeof(*seqs));
        nseqs += acked;
    }
    rc = apply_outbox_delete(apply, -1, seqs, nseqs, err, errlen);
    if (rc != APPLY_OK) {
        /* Published but still in the outbox: they go out again (at least once). */
        st = rc == APPLY_RETRY ? RELAY_DB_RETRY : RELAY_FATAL;
        goto done;
    }
    *published += nseqs;
    for (b = r->sent; b; b = b->next) {
        char why[256] = "";

        if (b->queue_err && broker_error(r, b->queue_err, why, sizeof(why)) == RELAY_FATAL) {
            snprintf(err, errlen, "%s", why);
            st = RELAY_FATAL;
        }
        settled(opaque, b->partition, b->queue_err ? why : NULL);
    }
done:
    free(seqs);
    while (r->sent) {
        b = r->sent;
        r->sent = b->next;
        sent_free(b);
    }
    r->sent_tail = &r->sent;
    return st;
}

int relay_dead_letter(relay_t *r, const void *key, size_t key_len, rd_kafka_headers_t *hdrs,
                      const char *json, size_t len, char *err, size_t errlen)
{
    size_t remaining = 1;
    struct delivery d = {RD_KAFKA_RESP_ERR_NO_ERROR, 0, &remaining};
    rd_kafka_resp_err_t e = produce(r, r->dlq_topic, key, key_len, json, len, hdrs, &d);

    if (e) {
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        snprintf(err, errlen, "%s: %s", r->dlq_topic, rd_kafka_err2str(e));
        return -1;
    }
    wait_reports(r, &remaining);
    if (d.err) {
        snprintf(err, errlen, "%s: %s", r->dlq_topic, rd_kafka_err2str(d.err));
        return -1;
    }
    return 0;
}
