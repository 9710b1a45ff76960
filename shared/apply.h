/* The apply path: turns a batch of diary.events messages of one partition into one
 * PostgreSQL transaction (docs/worker.md). diary-worker and `diaryctl replay` link the same
 * code; the Kafka side (consumer, dead-letter producer, outbox relay) belongs to the caller.
 *
 * One batch is one transaction (apply_batches puts several partitions' batches in one),
 * sent as one libpq pipeline (one round trip, plus one for the COMMIT):
 *
 *   BEGIN
 *   diary_offsets_advance(group, topic, partition, from_offset, last offset + 1)
 *   APPLY_MODE_SET (default): the batch split into rounds of events that touch different
 *     rows (apply_schedule); per round, one set-based diary_apply_{users,foods,entries,...}
 *     (events) per type present, the per-event function of each event of a type that has no
 *     set-based one (the rare user types; their change events are staged too, through
 *     diary.stage = on for the transaction) and diary_event_dead(...) per dead letter with an
 *     id; then diary_apply_flush() moves the change events to the outbox in log order. A
 *     batch of one type with a direct function (entry sets), in one round, is instead one
 *     call of it, which writes the outbox itself and returns the rows (0009)
 *   APPLY_MODE_EVENT: per message, in offset order, diary_apply_<type>(...) or
 *     diary_event_dead(...)
 *   -- results read; dead letters handed to the caller's callback
 *   COMMIT
 *
 * The compare-and-set on consumer_offsets comes first so that its row lock serialises two
 * workers that both believe they own the partition: the second one's compare-and-set fails
 * (APPLY_STALE) and nothing of its batch is committed. An event id already in
 * processed_events is skipped (APPLY_DUPLICATE). A message that cannot be parsed or bound is
 * dead-lettered without touching the tables except processed_events (when its id is usable)
 * and consumer_offsets. A batch that fails for another reason (a constraint, a bad value) is
 * rolled back and retried one message per transaction; the message that still fails alone is
 * dead-lettered and the others apply. A transient failure (connection lost, serialization
 * failure, deadlock, shutdown) rolls back and returns APPLY_RETRY: nothing is skipped, the
 * caller reconnects and calls again with the messages not yet committed.
 *
 * The functions block on the connection (nonblocking I/O inside, with a poll() loop, so a
 * long pipeline cannot deadlock); call them from a thread that may block. Not thread-safe:
 * one context per thread and connection. */
#ifndef DIARY_APPLY_H
#define DIARY_APPLY_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct apply_ctx apply_ctx_t;

/* One message of the source topic, as the caller got it from Kafka. Borrowed for the call. */
struct apply_msg {
    const void *value; /* the raw value, NULL for an empty one */
    size_t len;
    const void *key; /* the key (the user id), may be NULL */
    size_t key_len;
    int64_t offset;
    const char *request_id; /* the request-id header, for logs; may be NULL */
    bool redrive;           /* sent back from the dead letters (header diary-redrive): a
                               dead-letter record of its id is forgotten and it applies */
    void *opaque;           /* the caller's, handed back to the dead-letter callback */
};

/* What became of one message. */
enum apply_outcome {
    APPLY_PENDING = 0, /* not committed (the call stopped before it) */
    APPLY_APPLIED,
    APPLY_REJECTED,  /* a business rejection, recorded in processed_events */
    APPLY_DUPLICATE, /* its event id was already in processed_events: skipped */
    APPLY_DEAD_LETTER
};

/* Return values of apply_batch and of the helpers below. */
enum apply_status {
    APPLY_OK = 0,
    APPLY_STALE = 1, /* consumer_offsets is not where the caller thought: another worker owns
                        the partition; nothing further committed */
    APPLY_RETRY = 2, /* transient: rolled back; reconnect or wait, then call again */
    APPLY_FATAL = -1 /* cannot go on (the schema is missing, a bug): stop and say why */
};

/* A dead letter to hand to the dead-letter topic. The callback runs before the COMMIT of the
 * transaction that records it, so a dead letter is never lost: a crash between the two sends
 * it again (at least once). It returns 0 once the dead letter is durably delivered; anything
 * else rolls the transaction back and makes apply_batch return APPLY_RETRY. */
struct apply_dead_letter {
    int32_t partition;
    const struct apply_msg *msg;
    const char *error; /* why it can never apply */
    int attempts;      /* transactions tried: 1, or 2 when the batch failed and then it alone */
};
typedef int (*apply_dead_letter_fn)(void *opaque, const struct apply_dead_letter *dl);

/* How a batch is sent. Both give the same outcome; the set-based path is several times
 * cheaper for the database, and falls back to one event per transaction on any failure. */
enum apply_mode {
    APPLY_MODE_SET = 0, /* rounds of set-based statements, one per event type (default) */
    APPLY_MODE_EVENT    /* one diary_apply_<type> call per event */
};

struct apply_opts {
    const char *group;  /* the key of consumer_offsets (the consumer group), e.g. diary-apply */
    const char *topic;  /* the source topic, e.g. diary.events */
    const char *worker; /* this process's name, in logs */
    /* Called for every dead letter; NULL: dead letters are only logged (and recorded). */
    apply_dead_letter_fn dead_letter_cb;
    void *cb_opaque;
    enum apply_mode mode;
    /* The change events are not wanted (diaryctl replay: the stream already carried them):
     * the set-based path clears them from the session's staging table (diary_stage_clear)
     * instead of writing them to the outbox. What the per-event path writes to the outbox
     * the caller deletes. */
    bool discard_changes;
};

struct apply_result {
    enum apply_status status;
    /* The partition's next offset as the database holds it after the call: the offset after
     * the last committed message, from_offset when nothing was committed, or on APPLY_STALE
     * the stored offset (-1 when the row is gone; when it cannot be read the call returns
     * APPLY_RETRY instead). */
    int64_t next_offset;
    size_t done; /* msgs[0, done) are committed; their outcomes are final */
    size_t applied, rejected, duplicates, dead_letters;
    size_t failed_batches; /* 1 when the batch failed and was retried one message at a time */
    /* n outcomes, owned by the context, valid until its next call. */
    const enum apply_outcome *outcomes;
    char error[256]; /* on APPLY_RETRY, APPLY_STALE and APPLY_FATAL: why */
};

/* A context on conn (borrowed: the caller owns and closes it). The strings of opts are
 * copied. NULL on allocation failure. Free with apply_destroy(). */
apply_ctx_t *apply_new(PGconn *conn, const struct apply_opts *opts);

/* NULL is a no-op. Does not close the connection. */
void apply_destroy(apply_ctx_t *ctx);

/* Switches to a new connection after a reconnect (the old one may already be freed). The
 * statements are prepared again on first use; a PQreset() of the same connection is noticed
 * without this call. */
void apply_set_conn(apply_ctx_t *ctx, PGconn *conn);

/* The partition's next offset from consumer_offsets (group, topic, partition). When there is
 * no row and create_at >= 0, a row at create_at is inserted and create_at returned; when
 * create_at < 0 a missing row gives APPLY_STALE. Returns APPLY_OK, APPLY_STALE, APPLY_RETRY or
 * APPLY_FATAL, with the reason in err. */
int apply_offsets_load(apply_ctx_t *ctx, int32_t partition, int64_t create_at, int64_t *next,
                       char *err, size_t errlen) __attribute__((warn_unused_result));

/* Applies msgs[0, n) of partition (in strictly increasing offset order, each >= from_offset,
 * from_offset being the partition's next offset as the caller last learnt it from the
 * database). Fills out and returns out->status. Logs each rejection and dead letter with the
 * message's request id. n == 0 is a no-op returning APPLY_OK. */
int apply_batch(apply_ctx_t *ctx, int32_t partition, int64_t from_offset,
                const struct apply_msg *msgs, size_t n, struct apply_result *out)
    __attribute__((warn_unused_result));

/* One partition's batch for apply_batches: msgs[0, n) from from_offset, as for apply_batch;
 * result is filled as apply_batch fills it. */
struct apply_part {
    int32_t partition;
    int64_t from_offset;
    const struct apply_msg *msgs;
    size_t n;
    struct apply_result result;
};

/* The batches of several partitions (each partition at most once; in increasing partition
 * order, so that two workers that both believe they own some of them lock their positions
 * in the same order) in one transaction: per batch its compare-and-set, its set-based
 * statements and its flush, then one COMMIT. One transaction instead of nb divides the
 * per-transaction costs (the round trips, the COMMIT's WAL flush, the replica's replay of
 * each commit) by nb when the batches are small (docs/worker.md, "One transaction a pass").
 * When that transaction fails on anything but a transient failure (a stale position, an event
 * that fails, APPLY_MODE_EVENT, a single batch), every batch goes through apply_batch's path
 * on its own, so a partition's trouble never holds back another's. On a transient failure
 * every batch's result is APPLY_RETRY with nothing committed. Each batch's result.outcomes
 * points into the context (valid until its next call). Returns APPLY_OK when every result is
 * APPLY_OK, else the first other status. */
int apply_batches(apply_ctx_t *ctx, struct apply_part *batches, size_t nb);

/* One outbox row: a change event to publish. The strings live in the context until its next
 * apply_outbox_fetch, apply_outbox_flushed, apply_batch or apply_destroy. */
struct apply_outbox_row {
    int64_t seq;
    const char *user_id; /* the key */
    const char *event;   /* the change event, JSON */
    size_t event_len;
    const char *type;       /* its CloudEvents type, for the ce_type header */
    const char *request_id; /* "" when unknown */
};

/* The partition's oldest outbox rows, at most limit, in seq order. Always reads what is
 * there (never "after the last seq published"), so a row committed late is not skipped.
 * *rows (owned by the context) and *n are set on APPLY_OK; otherwise APPLY_RETRY or
 * APPLY_FATAL with err. */
int apply_outbox_fetch(apply_ctx_t *ctx, int32_t partition, size_t limit,
                       const struct apply_outbox_row **rows, size_t *n, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The change events the last apply_batch or apply_batches put in partition's outbox, as the
 * set-based path's diary_apply_flush or direct function returned them (in seq order), without
 * reading the outbox again. True only when they are all it put there: the partition's batch
 * committed in one set-based transaction. False otherwise (APPLY_MODE_EVENT, a batch that went one
 * event per transaction, a failed batch, a fetch since): then apply_outbox_fetch reads them. The
 * rows live in the context until its next apply_batch(es), apply_outbox_fetch,
 * apply_outbox_flushed or apply_destroy. */
bool apply_outbox_flushed(apply_ctx_t *ctx, int32_t partition, const struct apply_outbox_row **rows,
                          size_t *n);

/* Deletes the outbox rows seqs[0, n) of partition (of any partition when partition < 0) once
 * the broker acknowledged them: one statement. */
int apply_outbox_delete(apply_ctx_t *ctx, int32_t partition, const int64_t *seqs, size_t n,
                        char *err, size_t errlen) __attribute__((warn_unused_result));

/* True when a libpq failure on conn with this SQLSTATE (may be NULL) is worth retrying after a
 * wait or a reconnect: connection loss, serialization failure, deadlock, admin shutdown,
 * cannot connect now, insufficient resources, statement timeout. Pure. */
bool apply_transient(const char *sqlstate, bool connection_bad);

#endif
