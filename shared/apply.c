#include "apply.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply_event.h"
#include "envelope.h"
#include "jsonw.h"
#include "log.h"

/* A statement that has not answered for this long is taken for a dead connection. */
#define DB_IO_TIMEOUT_MS 60000

/* The SQLSTATE diary_offsets_advance raises when the partition's position moved. */
#define SQLSTATE_STALE "DY001"

/* How a message of the batch is sent. A message goes down this list when it fails alone. */
enum plan {
    PLAN_SQL,         /* its type's diary_apply_* function */
    PLAN_RECORD_DEAD, /* diary_event_dead (rejected under its id), then the dead letters */
    PLAN_DEAD         /* no usable id: only the dead letters */
};

/* Per message state of the current call. The binds point into the item itself, so the items
 * array is only grown between calls. */
struct item {
    const struct apply_msg *msg;
    struct evt evt; /* parsed envelope; evt.data owned, dropped at the end of the call */
    bool parsed;
    const struct apply_event_type *type;
    struct apply_bind bind;
    enum plan plan;
    char id[UUID_STRLEN], subject[UUID_STRLEN], evtype[APPLY_TYPELEN];
    char hash[APPLY_HASH_HEXLEN];
    char partition[16], offset[24];
    const char *dead_values[8];
    char error[256];  /* why it is dead-lettered */
    char reason[256]; /* the rejection's reason, from the database */
    int attempts;
    enum apply_outcome outcome; /* tentative until the transaction commits */
    unsigned round;             /* set-based path: its round, 0 when it sends nothing */
};

/* One statement of a transaction's pipeline, to know what its result belongs to. */
enum cmd_kind {
    CMD_BEGIN,
    CMD_CAS,
    CMD_ITEM,    /* a per-event statement of items[item] */
    CMD_REDRIVE, /* diary_event_redrive for items[item] */
    CMD_SET,     /* a set-based statement: one result row per event, by index */
    CMD_DIRECT,  /* a direct set-based statement (0009): those rows, then the changes it wrote */
    CMD_FLUSH,   /* diary_apply_flush */
    CMD_UNSTAGE, /* diary_stage_clear, in place of the flush when the changes are discarded */
    CMD_STAGE,   /* diary.stage = on: per-event calls stage their changes (set-based path) */
    CMD_END      /* COMMIT or ROLLBACK */
};

struct cmd {
    enum cmd_kind kind;
    size_t item;
};

/* Outbox rows a statement returned: the rows of res whose column col is not null, columns
 * col to col + 4 being seq, user_id, event, type and request_id (col 0: the flush's rows;
 * col 4: a direct function's, after its outcomes). res NULL: none. */
struct written {
    PGresult *res;
    int col;
};

struct apply_ctx {
    PGconn *conn;     /* borrowed */
    int prepared_pid; /* backend the statements were prepared on; 0: none */
    char *group, *topic, *worker, *source;
    apply_dead_letter_fn dead_letter_cb;
    void *cb_opaque;
    enum apply_mode mode;
    bool discard_changes;
    struct item *items;
    enum apply_outcome *outcomes;
    size_t cap;
    /* Scratch of the set-based path, sized with the items: the keys of each item, where
     * each item's keys start (cap + 1), its round, and the pipeline's commands. */
    struct apply_key *keys;
    size_t *key_first;
    unsigned *rounds;
    struct cmd *cmds;
    size_t cmd_cap;
    PGresult *outbox_res; /* backs outbox_rows */
    /* The segments of the current call; pending[k]: the change events segment k of the
     * transaction being run wrote (what diary_apply_flush or a direct function returned);
     * once it committed they move to flushed: per partition whose batch of the last
     * apply_batch(es) went through the set-based path in one transaction, all that batch put
     * in the outbox (until a fetch). All have seg_cap slots. */
    struct seg *segs;
    struct written *pending;
    struct flushed {
        int32_t partition;
        struct written w;
    } * flushed;
    size_t nflushed, seg_cap;
    struct apply_outbox_row *outbox_rows;
    size_t outbox_cap;
    char error[256]; /* why run_txn failed */
};

/* One partition's share of a transaction: items[lo, hi), applied from offset `from`, the
 * outcome reported in *out; base is the index of the first item of the partition's batch
 * (lo, or less when the batch goes one event per transaction). */
struct seg {
    int32_t partition;
    int64_t from;
    size_t lo, hi, base;
    struct apply_result *out;
};

static const struct {
    const char *name;
    const char *sql;
} statements[] = {
    {"apply_cas", "SELECT diary_offsets_advance($1::text, $2::text, $3::integer, $4::bigint, "
                  "$5::bigint)"},
    {"apply_dead", "SELECT diary_event_dead($1::uuid, $2::uuid, $3::text, $4::integer, "
                   "$5::bigint, $6::bytea, $7::text, $8::text)"},
    {"apply_offsets_load",
     "WITH ins AS (INSERT INTO consumer_offsets (group_id, topic, \"partition\", next_offset) "
     "SELECT $1::text, $2::text, $3::integer, $4::bigint WHERE $4::bigint >= 0 "
     "ON CONFLICT DO NOTHING RETURNING next_offset) "
     "SELECT next_offset FROM ins UNION ALL SELECT next_offset FROM consumer_offsets "
     "WHERE group_id = $1::text AND topic = $2::text AND \"partition\" = $3::integer"},
    /* The outbox through functions (0010): a plan cached at the top level while the outbox
     * was nearly empty scanned it whole as it bloated. */
    {"apply_outbox_fetch", "SELECT seq, user_id, event, type, request_id "
                           "FROM diary_outbox_fetch($1::integer, $2::bigint)"},
    /* seq is the primary key; the partition (when >= 0) is a guard. */
    {"apply_outbox_delete", "SELECT diary_outbox_delete($1::integer, $2::bigint[])"},
    {"apply_flush", "SELECT seq, user_id, event, type, request_id "
                    "FROM diary_apply_flush($1::integer, $2::text, $3::text)"},
    {"apply_unstage", "SELECT diary_stage_clear()"},
    {"apply_redrive", "SELECT diary_event_redrive($1::uuid)"},
    /* For the transaction: diary_change_emit stages the changes of per-event calls made by
     * the set-based path, so diary_apply_flush puts them in log order with the others. */
    {"apply_stage", "SELECT set_config('diary.stage', 'on', true)"},
};

enum txn_status { TXN_OK, TXN_STALE, TXN_RETRY, TXN_FATAL, TXN_ITEM_FAILED };

bool apply_transient(const char *sqlstate, bool connection_bad)
{
    static const char *const codes[] = {"40001", "40P01", "57P01", "57P02",
                                        "57P03", "57014", "55P03", NULL};

    if (connection_bad)
        return true;
    if (!sqlstate)
        return false;
    /* Class 08: connection exception; class 53: insufficient resources. */
    if (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "53", 2) == 0)
        return true;
    for (const char *const *c = codes; *c; c++)
        if (strcmp(*c, sqlstate) == 0)
            return true;
    return false;
}

static char *dup_or(const char *s, const char *def)
{
    return strdup(s ? s : def);
}

apply_ctx_t *apply_new(PGconn *conn, const struct apply_opts *opts)
{
    apply_ctx_t *ctx = calloc(1, sizeof(*ctx));
    char source[300];

    if (!ctx)
        return NULL;
    ctx->conn = conn;
    ctx->group = dup_or(opts->group, "diary-apply");
    ctx->topic = dup_or(opts->topic, "diary.events");
    ctx->worker = dup_or(opts->worker, "diary-worker");
    snprintf(source, sizeof(source), "diary-worker/%s", ctx->group ? ctx->group : "");
    ctx->source = strdup(source);
    ctx->dead_letter_cb = opts->dead_letter_cb;
    ctx->cb_opaque = opts->cb_opaque;
    ctx->mode = opts->mode;
    ctx->discard_changes = opts->discard_changes;
    if (!ctx->group || !ctx->topic || !ctx->worker || !ctx->source) {
        apply_destroy(ctx);
        return NULL;
    }
    return ctx;
}

/* Forgets the change events of the last call (and any a failed transaction left pending). */
static void flushed_clear(apply_ctx_t *ctx)
{
    for (size_t k = 0; k < ctx->nflushed; k++)
        PQclear(ctx->flushed[k].w.res);
    ctx->nflushed = 0;
    for (size_t k = 0; k < ctx->seg_cap; k++) {
        PQclear(ctx->pending[k].res);
        ctx->pending[k].res = NULL;
    }
}

void apply_destroy(apply_ctx_t *ctx)
{
    if (!ctx)
        return;
    PQclear(ctx->outbox_res);
    flushed_clear(ctx);
    free(ctx->segs);
    free(ctx->pending);
    free(ctx->flushed);
    free(ctx->outbox_rows);
    free(ctx->items);
    free(ctx->outcomes);
    free(ctx->keys);
    free(ctx->key_first);
    free(ctx->rounds);
    free(ctx->cmds);
    free(ctx->group);
    free(ctx->topic);
    free(ctx->worker);
    free(ctx->source);
    free(ctx);
}

void apply_set_conn(apply_ctx_t *ctx, PGconn *conn)
{
    ctx->conn = conn;
    ctx->prepared_pid = 0;
}

static const char *sqlstate_of(const PGresult *res)
{
    return res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
}

/* The server's primary message (else the first line of libpq's), for a one-line log. */
static void error_text(const PGresult *res, PGconn *conn, char *out, size_t outlen)
{
    const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    size_t n;

    if (!m || !*m)
        m = res ? PQresultErrorMessage(res) : NULL;
    if (!m || !*m)
        m = PQerrorMessage(conn);
    if (!m || !*m)
        m = "connection lost";
    n = strcspn(m, "\n");
    snprintf(out, outlen, "%.*s", (int)n, m);
}

/* Prepares one statement. 42P05 (already prepared on this backend: apply_set_conn on a used
 * connection) is fine. */
static int prepare_one(apply_ctx_t *ctx, const char *name, const char *sql, char *err,
                       size_t errlen)
{
    PGresult *res = PQprepare(ctx->conn, name, sql, 0, NULL);
    int rc = APPLY_OK;

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *state = sqlstate_of(res);

        if (!state || strcmp(state, "42P05") != 0) {
            char msg[200];
            error_text(res, ctx->conn, msg, sizeof(msg));
            rc = apply_transient(state, PQstatus(ctx->conn) != CONNECTION_OK) ? APPLY_RETRY
                                                                              : APPLY_FATAL;
            snprintf(err, errlen, "postgres: preparing %s: %s%s", name, msg,
                     rc == APPLY_FATAL ? " (are the migrations in schema/ applied?)" : "");
        }
    }
    PQclear(res);
    return rc;
}

/* The members every set-based function reads after the item's index, in their order. */
static const struct {
    const char *key;
    int value; /* index into bind.values, or -1 for the hash */
} set_common[] = {
    {"event_id", 0}, {"user_id", 1}, {"type", 2},       {"offset", 4},        {"hash", -1},
    {"time", 6},     {"ifmatch", 7}, {"request_id", 8}, {"request_hash", 11},
};
#define SET_NCOMMON     (sizeof(set_common) / sizeof(set_common[0]))
#define SET_COLUMNS_MAX (1 + SET_NCOMMON + APPLY_BIND_MAX - APPLY_COMMON_PARAMS)

/* The columns of type t's set-based batch: the index, the common members, its fields. */
static size_t set_ncols(const struct apply_event_type *t)
{
    return 1 + SET_NCOMMON + (size_t)(t->nparams - APPLY_COMMON_PARAMS);
}

/* The statement of a set-based function: ($1::integer, $2::json), or with set_columns a
 * text[] per column; of its direct function (direct set): ($1::integer, $2::text, $3::text,
 * then the columns). */
static void set_sql(const struct apply_event_type *t, bool direct, char *sql, size_t size)
{
    size_t n =
        (size_t)snprintf(sql, size, "SELECT idx, status, reason, resource%s FROM %s(%s",
                         direct ? ", ch_seq, ch_user_id, ch_event, ch_type, ch_request_id" : "",
                         direct ? t->direct_function : t->set_function,
                         direct ? "$1::integer, $2::text, $3::text" : "$1::integer");
    size_t ncols = t->set_columns ? set_ncols(t) : 0, first = direct ? 4 : 2;

    if (!t->set_columns)
        n += (size_t)snprintf(sql + n, size - n, ", $2::json");
    for (size_t c = 0; c < ncols && n < size; c++)
        n += (size_t)snprintf(sql + n, size - n, ", $%zu::text[]", c + first);
    if (n < size)
        snprintf(sql + n, size - n, ")");
}

/* Prepares the statements and opens the session's staging table once per backend: a new or
 * reset connection has neither. */
static int ensure_prepared(apply_ctx_t *ctx, char *err, size_t errlen)
{
    int pid = PQbackendPID(ctx->conn);
    size_t ntypes;
    const struct apply_event_type *types = apply_event_types(&ntypes);
    PGresult *res;
    int rc;

    if (PQstatus(ctx->conn) != CONNECTION_OK) {
        snprintf(err, errlen, "postgres: not connected");
        return APPLY_RETRY;
    }
    if (pid != 0 && pid == ctx->prepared_pid)
        return APPLY_OK;
    for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++) {
        rc = prepare_one(ctx, statements[i].name, statements[i].sql, err, errlen);
        if (rc != APPLY_OK)
            return rc;
    }
    for (size_t i = 0; i < ntypes; i++) {
        char sql[512];

        if (apply_event_sql(&types[i], sql, sizeof(sql)) != 0) {
            snprintf(err, errlen, "%s: statement too long", types[i].function);
            return APPLY_FATAL;
        }
        rc = prepare_one(ctx, types[i].function, sql, err, errlen);
        if (rc != APPLY_OK)
            return rc;
        if (!types[i].set_function)
            continue;
        set_sql(&types[i], false, sql, sizeof(sql));
        rc = prepare_one(ctx, types[i].set_function, sql, err, errlen);
        if (rc != APPLY_OK)
            return rc;
        if (!types[i].direct_function)
            continue;
        set_sql(&types[i], true, sql, sizeof(sql));
        rc = prepare_one(ctx, types[i].direct_function, sql, err, errlen);
        if (rc != APPLY_OK)
            return rc;
    }
    /* A session that discards its changes tells the set-based functions not to build them
     * (diary.changes, 0008). */
    res = PQexec(ctx->conn,
                 ctx->discard_changes
                     ? "SELECT diary_stage_open(), set_config('diary.changes', 'off', false)"
                     : "SELECT diary_stage_open()");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[200];
        error_text(res, ctx->conn, msg, sizeof(msg));
        rc = apply_transient(sqlstate_of(res), PQstatus(ctx->conn) != CONNECTION_OK) ? APPLY_RETRY
                                                                                     : APPLY_FATAL;
        snprintf(err, errlen, "postgres: diary_stage_open: %s", msg);
        PQclear(res);
        return rc;
    }
    PQclear(res);
    ctx->prepared_pid = pid;
    return APPLY_OK;
}

/* Waits until libpq can hand out the next result without blocking, flushing what is queued
 * and reading what arrives at the same time: a large pipeline cannot deadlock on full socket
 * buffers. False when the connection failed or stayed silent too long. */
static bool pipe_wait(apply_ctx_t *ctx)
{
    for (;;) {
        int f = PQflush(ctx->conn);
        struct pollfd p;
        int r;

        if (f < 0)
            return false;
        if (!PQisBusy(ctx->conn))
            return true;
        p.fd = PQsocket(ctx->conn);
        p.events = (short)(POLLIN | (f ? POLLOUT : 0));
        p.revents = 0;
        r = poll(&p, 1, DB_IO_TIMEOUT_MS);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || !PQconsumeInput(ctx->conn))
            return false;
    }
}

/* The next command's result in the pipeline (the NULL that ends each command is skipped);
 * NULL when the connection failed. The caller PQclear()s it. */
static PGresult *pipe_next(apply_ctx_t *ctx)
{
    /* Exactly one NULL separates two commands; more mean nothing is outstanding, which
     * would be a bug here: give up rather than spin. */
    for (int nulls = 0; nulls < 4; nulls++) {
        PGresult *res;

        if (!pipe_wait(ctx))
            return NULL;
        res = PQgetResult(ctx->conn);
        if (res)
            return res;
    }
    return NULL;
}

static bool send_sql(apply_ctx_t *ctx, const char *sql)
{
    return PQsendQueryParams(ctx->conn, sql, 0, NULL, NULL, NULL, NULL, 0) == 1;
}

/* Grows the per-segment arrays to nsegs. */
static int grow_segs(apply_ctx_t *ctx, size_t nsegs)
{
    void *p;

    if (nsegs <= ctx->seg_cap)
        return 0;
    if (!(p = realloc(ctx->pending, nsegs * sizeof(*ctx->pending))))
        return -1;
    ctx->pending = p;
    for (size_t k = ctx->seg_cap; k < nsegs; k++)
        ctx->pending[k].res = NULL;
    if (!(p = realloc(ctx->flushed, nsegs * sizeof(*ctx->flushed))))
        return -1;
    ctx->flushed = p;
    if (!(p = realloc(ctx->segs, nsegs * sizeof(*ctx->segs))))
        return -1;
    ctx->segs = p;
    ctx->seg_cap = nsegs;
    return 0;
}

/* Grows the per-message arrays to n messages in nsegs segments. Only between calls: binds
 * point into the items. */
static int grow(apply_ctx_t *ctx, size_t n, size_t nsegs)
{
    size_t ntypes, ncmd;
    void *p;

    (void)apply_event_types(&ntypes);
    if (grow_segs(ctx, nsegs) != 0)
        return -1;
    /* BEGIN and COMMIT; per segment CAS, STAGE and FLUSH; a redrive and a statement per event
     * at most (a round holds one event of each statement at least). */
    ncmd = 2 + 4 * nsegs + n * (ntypes + 1);
    if (ncmd > ctx->cmd_cap) {
        if (!(p = realloc(ctx->cmds, ncmd * sizeof(*ctx->cmds))))
            return -1;
        ctx->cmds = p;
        ctx->cmd_cap = ncmd;
    }
    if (n <= ctx->cap)
        return 0;
    if (!(p = realloc(ctx->items, n * sizeof(*ctx->items))))
        return -1;
    ctx->items = p;
    if (!(p = realloc(ctx->outcomes, n * sizeof(*ctx->outcomes))))
        return -1;
    ctx->outcomes = p;
    if (!(p = realloc(ctx->keys, n * APPLY_KEYS_MAX * sizeof(*ctx->keys))))
        return -1;
    ctx->keys = p;
    if (!(p = realloc(ctx->key_first, (n + 1) * sizeof(*ctx->key_first))))
        return -1;
    ctx->key_first = p;
    if (!(p = realloc(ctx->rounds, n * sizeof(*ctx->rounds))))
        return -1;
    ctx->rounds = p;
    ctx->cap = n;
    return 0;
}

static const char *item_rid(const struct item *it)
{
    if (it->msg->request_id && *it->msg->request_id)
        return it->msg->request_id;
    return it->evt.requestid[0] ? it->evt.requestid : NULL;
}

/* Sets it up to be dead-lettered with err: recorded under its id when it has one. */
static void plan_dead(struct item *it, const char *err)
{
    snprintf(it->error, sizeof(it->error), "%s", err);
    it->plan = it->id[0] && it->plan == PLAN_SQL ? PLAN_RECORD_DEAD : PLAN_DEAD;
    it->dead_values[0] = it->id;
    it->dead_values[1] = it->subject[0] ? it->subject : NULL;
    it->dead_values[2] = it->evtype[0] ? it->evtype : "unknown";
    it->dead_values[3] = it->partition;
    it->dead_values[4] = it->offset;
    it->dead_values[5] = it->hash;
    it->dead_values[6] = it->error;
    it->dead_values[7] = it->parsed && it->evt.requesthash[0] ? it->evt.requesthash : NULL;
}

/* Parses and binds one message, or plans its dead letter. */
static void item_prepare(apply_ctx_t *ctx, struct item *it, const struct apply_msg *msg,
                         int32_t partition)
{
    char err[256];
    struct apply_meta meta;

    memset(it, 0, sizeof(*it));
    it->msg = msg;
    it->plan = PLAN_SQL;
    snprintf(it->partition, sizeof(it->partition), "%" PRId32, partition);
    snprintf(it->offset, sizeof(it->offset), "%" PRId64, msg->offset);
    apply_payload_hash(msg->value ? msg->value : "", msg->value ? msg->len : 0, it->hash);
    if (!msg->value || msg->len == 0) {
        it->attempts = 1;
        plan_dead(it, "envelope: empty message");
        return;
    }
    if (evt_parse(msg->value, msg->len, &it->evt, err, sizeof(err)) != 0) {
        if (msg->len <= EVT_MAX_SIZE)
            apply_event_salvage(msg->value, msg->len, it->id, it->subject, it->evtype);
        it->attempts = 1;
        plan_dead(it, err);
        return;
    }
    it->parsed = true;
    memcpy(it->id, it->evt.id, sizeof(it->id));
    memcpy(it->subject, it->evt.subject, sizeof(it->subject));
    snprintf(it->evtype, sizeof(it->evtype), "%s", it->evt.type);
    meta.topic = ctx->topic;
    meta.partition = partition;
    meta.offset = msg->offset;
    meta.source = ctx->source;
    meta.request_id = msg->request_id;
    meta.hash_hex = it->hash;
    it->type = apply_event_bind(&it->evt, &meta, &it->bind, err, sizeof(err));
    if (!it->type) {
        it->attempts = 1;
        plan_dead(it, err);
    }
}

/* Reads row `row` of a per-event or set-based result into it. */
static void item_read(struct item *it, const PGresult *res, int row, int first_col)
{
    const char *status;

    if (it->plan == PLAN_RECORD_DEAD) {
        const char *v = PQntuples(res) > row ? PQgetvalue(res, row, 0) : "f";
        /* false: the id was already recorded, so this copy is a duplicate. */
        it->outcome = v[0] == 't' ? APPLY_DEAD_LETTER : APPLY_DUPLICATE;
        return;
    }
    if (PQntuples(res) <= row)
        return; /* stays APPLY_PENDING: the caller treats it as a failure */
    status = PQgetvalue(res, row, first_col);
    snprintf(it->reason, sizeof(it->reason), "%s", PQgetvalue(res, row, first_col + 1));
    if (strcmp(status, "applied") == 0)
        it->outcome = APPLY_APPLIED;
    else if (strcmp(status, "rejected") == 0)
        it->outcome = APPLY_REJECTED;
    else if (strcmp(status, "duplicate") == 0)
        it->outcome = APPLY_DUPLICATE;
}

/* Records the committed outcomes of items[lo, hi) of segment s in its result and logs them. */
static void finalize(apply_ctx_t *ctx, const struct seg *s, size_t lo, size_t hi)
{
    struct apply_result *out = s->out;

    for (size_t i = lo; i < hi; i++) {
        struct item *it = &ctx->items[i];
        const char *rid = item_rid(it);

        ctx->outcomes[i] = it->outcome;
        switch (it->outcome) {
        case APPLY_APPLIED:
            out->applied++;
            log_debug(rid, "applied %s %s at offset %" PRId64, it->evtype, it->id, it->msg->offset);
            break;
        case APPLY_REJECTED:
            out->rejected++;
            log_info(rid, "rejected %s %s at offset %" PRId64 ": %s", it->evtype, it->id,
                     it->msg->offset, it->reason);
            break;
        case APPLY_DUPLICATE:
            out->duplicates++;
            log_info(rid, "skipped duplicate %s %s at offset %" PRId64, it->evtype, it->id,
                     it->msg->offset);
            break;
        case APPLY_DEAD_LETTER:
            out->dead_letters++;
            log_warn(rid, "dead-lettered offset %" PRId64 " (event %s) after %d attempt(s): %s",
                     it->msg->offset, it->id[0] ? it->id : "without usable id", it->attempts,
                     it->error);
            break;
        case APPLY_PENDING:
            break;
        }
    }
    out->done = hi - s->base;
    out->next_offset = ctx->items[hi - 1].msg->offset + 1;
}

/* Sends ROLLBACK in the pipeline and reads its answer. False when the connection failed. */
static bool pipe_rollback(apply_ctx_t *ctx)
{
    PGresult *res;
    bool ok;

    if (!send_sql(ctx, "ROLLBACK") || PQpipelineSync(ctx->conn) != 1)
        return false;
    res = pipe_next(ctx);
    ok = res != NULL;
    PQclear(res);
    res = ok ? pipe_next(ctx) : NULL;
    ok = res && PQresultStatus(res) == PGRES_PIPELINE_SYNC;
    PQclear(res);
    return ok;
}

/* Leaves pipeline mode when the connection is idle; a broken one is left for the caller to
 * replace. */
static void pipe_leave(apply_ctx_t *ctx)
{
    if (PQpipelineStatus(ctx->conn) != PQ_PIPELINE_OFF)
        (void)PQexitPipelineMode(ctx->conn);
    (void)PQsetnonblocking(ctx->conn, 0);
}

/* Hands the dead letters of items[lo, hi) to the callback, in offset order. False when one
 * was not delivered. */
static bool send_dead_letters(apply_ctx_t *ctx, int32_t partition, size_t lo, size_t hi)
{
    for (size_t i = lo; i < hi; i++) {
        struct item *it = &ctx->items[i];
        struct apply_dead_letter dl = {partition, it->msg, it->error, it->attempts};

        if (it->outcome != APPLY_DEAD_LETTER || !ctx->dead_letter_cb)
            continue;
        if (ctx->dead_letter_cb(ctx->cb_opaque, &dl) != 0)
            return false;
    }
    return true;
}

/* ,"key":"value", or ,"key":null for NULL; false when the value is not valid UTF-8. */
static bool set_member(struct jsonw *b, const char *key, const char *value)
{
    JSONW_LIT(b, ",\"");
    jsonw_add(b, key, strlen(key));
    JSONW_LIT(b, "\":");
    if (!value) {
        JSONW_LIT(b, "null");
        return true;
    }
    if (!jsonw_utf8_ok(value))
        return false;
    jsonw_string(b, value);
    return true;
}

/* Whether item i goes into the set-based statement of round r and type t. */
static bool in_set(const apply_ctx_t *ctx, size_t i, unsigned r, const struct apply_event_type *t)
{
    const struct item *it = &ctx->items[i];

    return it->round == r && it->plan == PLAN_SQL && it->type == t;
}

/* The JSON array a set-based statement takes: the items of [lo, hi) in round r of type t,
 * each {"i":index,"event_id":...,<the type's fields>} with every value a string or null
 * (the function's recordset types them). Written straight into one buffer: with jansson
 * this was a quarter of the worker's CPU. NULL on allocation failure or a string that is not
 * UTF-8 (evt_parse lets none through). */
static char *set_json(apply_ctx_t *ctx, size_t lo, size_t hi, unsigned r,
                      const struct apply_event_type *t)
{
    struct jsonw b = {0};
    int nfields = t->nparams - APPLY_COMMON_PARAMS;
    bool first = true;
    char num[32];

    jsonw_reserve(&b, (hi - lo) * 400);
    JSONW_LIT(&b, "[");
    for (size_t i = lo; i < hi; i++) {
        struct item *it = &ctx->items[i];
        const char *const *v = it->bind.values;
        bool ok = true;
        int n;

        if (!in_set(ctx, i, r, t))
            continue;
        n = snprintf(num, sizeof(num), "%s{\"i\":%zu", first ? "" : ",", i);
        jsonw_add(&b, num, (size_t)n);
        first = false;
        for (size_t k = 0; k < SET_NCOMMON; k++)
            ok = ok && set_member(&b, set_common[k].key,
                                  set_common[k].value < 0 ? it->hash + 2 : v[set_common[k].value]);
        for (int k = 0; k < nfields; k++)
            ok = ok && set_member(&b, t->fields[k], v[APPLY_COMMON_PARAMS + k]);
        JSONW_LIT(&b, "}");
        if (!ok) {
            free(jsonw_finish(&b, NULL));
            return NULL;
        }
    }
    JSONW_LIT(&b, "]");
    return jsonw_finish(&b, NULL);
}

/* Column c of item it for set_columns (c >= 1; column 0, the index, is written apart). */
static const char *set_cell(const struct item *it, size_t c)
{
    if (c <= SET_NCOMMON)
        return set_common[c - 1].value < 0 ? it->hash + 2
                                           : it->bind.values[set_common[c - 1].value];
    return it->bind.values[APPLY_COMMON_PARAMS + (c - 1 - SET_NCOMMON)];
}

static unsigned char *put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return p + 4;
}

/* The batch of a set-based statement (as set_json) as one text[] per column in the binary
 * format array_recv reads: ndim 1, a has-nulls flag, the element type (text, oid 25), the
 * length and lower bound 1, then per element its length (-1: NULL) and bytes. No JSON for
 * the database to lex, no field names to look up per row. All columns go in one allocation,
 * returned for the caller to free; values/lengths/formats[0 .. *ncols) describe them. NULL
 * on allocation failure. */
static char *set_columns(apply_ctx_t *ctx, size_t lo, size_t hi, unsigned r,
                         const struct apply_event_type *t, const char **values, int *lengths,
                         int *formats, size_t *ncols)
{
    size_t nc = set_ncols(t);
    size_t size[SET_COLUMNS_MAX], total = 0, rows = 0;
    unsigned char *buf, *p;

    for (size_t c = 0; c < nc; c++)
        size[c] = 20;
    for (size_t i = lo; i < hi; i++) {
        if (!in_set(ctx, i, r, t))
            continue;
        rows++;
        size[0] += 4 + 20; /* an index has at most 20 digits */
        for (size_t c = 1; c < nc; c++) {
            const char *v = set_cell(&ctx->items[i], c);
            size[c] += 4 + (v ? strlen(v) : 0);
        }
    }
    for (size_t c = 0; c < nc; c++)
        total += size[c];
    if (!(buf = malloc(total)))
        return NULL;
    p = buf;
    for (size_t c = 0; c < nc; c++) {
        unsigned char *start = p;
        bool nulls = false;

        p = put32(put32(put32(put32(put32(p, 1), 0), 25), (uint32_t)rows), 1);
        for (size_t i = lo; i < hi; i++) {
            const char *v;
            size_t n;
            char num[24];

            if (!in_set(ctx, i, r, t))
                continue;
            if (c == 0) {
                n = (size_t)snprintf(num, sizeof(num), "%zu", i);
                v = num;
            } else if (!(v = set_cell(&ctx->items[i], c))) {
                p = put32(p, UINT32_MAX); /* -1 */
                nulls = true;
                continue;
            } else {
                n = strlen(v);
            }
            p = put32(p, (uint32_t)n);
            memcpy(p, v, n);
            p += n;
        }
        if (nulls)
            put32(start + 4, 1);
        values[c] = (const char *)start;
        lengths[c] = (int)(p - start);
        formats[c] = 1;
    }
    *ncols = nc;
    return (char *)buf;
}

/* Plans the rounds of items[lo, hi) for the set-based path. -1 on allocation failure. */
static int schedule(apply_ctx_t *ctx, size_t lo, size_t hi, unsigned *nrounds)
{
    size_t nk = 0, n = hi - lo;
    int r;

    for (size_t i = lo; i < hi; i++) {
        struct item *it = &ctx->items[i];

        ctx->key_first[i - lo] = nk;
        if (it->plan == PLAN_SQL)
            nk += it->type->keys(&it->bind, &ctx->keys[nk]);
        else if (it->plan == PLAN_RECORD_DEAD)
            ctx->keys[nk++] = apply_event_id_key(it->id);
    }
    ctx->key_first[n] = nk;
    r = apply_schedule(n, ctx->keys, ctx->key_first, ctx->rounds);
    if (r < 0)
        return -1;
    for (size_t i = lo; i < hi; i++)
        ctx->items[i].round = ctx->items[i].plan == PLAN_DEAD ? 0 : ctx->rounds[i - lo];
    *nrounds = (unsigned)r;
    return 0;
}

/* A redriven event with an id first forgets its dead-letter record. */
static int send_redrive(apply_ctx_t *ctx, size_t i, struct cmd *cmds, size_t *nc)
{
    struct item *it = &ctx->items[i];
    const char *values[1] = {it->id};

    if (!it->msg->redrive || !it->id[0] || it->plan == PLAN_DEAD)
        return 0;
    if (PQsendQueryPrepared(ctx->conn, "apply_redrive", 1, values, NULL, NULL, 0) != 1)
        return -1;
    cmds[*nc].kind = CMD_REDRIVE;
    cmds[(*nc)++].item = i;
    return 0;
}

/* The type whose direct function can take items[lo, hi) in one call (0009): every event
 * that reaches the database is of that one type, none is redriven, and (the caller checks)
 * they fit in one round. NULL otherwise: the batch stages its changes. */
static const struct apply_event_type *direct_type(const apply_ctx_t *ctx, size_t lo, size_t hi)
{
    const struct apply_event_type *t = NULL;

    for (size_t i = lo; i < hi; i++) {
        const struct item *it = &ctx->items[i];

        if (it->plan == PLAN_DEAD)
            continue;
        if (it->plan != PLAN_SQL || !it->type->direct_function || (t && it->type != t) ||
            it->msg->redrive)
            return NULL;
        t = it->type;
    }
    return t;
}

/* Queues the statements of items[lo, hi): per event (single) or set-based, in rounds.
 * Returns the number of commands queued after BEGIN and CAS, or -1 when sending failed
 * (the connection) and -2 on allocation failure. */
static long send_items(apply_ctx_t *ctx, int32_t partition, size_t lo, size_t hi, bool sets,
                       size_t seg, struct cmd *cmds)
{
    char s_part[16];
    size_t ntypes, nc = 0;
    const struct apply_event_type *types = apply_event_types(&ntypes), *direct = NULL;
    unsigned nrounds = 0;

    snprintf(s_part, sizeof(s_part), "%" PRId32, partition);
    if (sets) {
        if (schedule(ctx, lo, hi, &nrounds) != 0)
            return -2;
        /* One call then holds the batch's change events in log order: it writes them to the
         * outbox itself, and nothing is staged or flushed. */
        if (!ctx->discard_changes && nrounds == 1)
            direct = direct_type(ctx, lo, hi);
        log_debug(NULL, "set-based batch of %zu events in %u rounds%s", hi - lo, nrounds,
                  direct ? ", its changes straight to the outbox" : "");
    }
    if (!sets) {
        for (size_t i = lo; i < hi; i++) {
            struct item *it = &ctx->items[i];
            int ok = 1;

            if (send_redrive(ctx, i, cmds, &nc) != 0)
                return -1;
            if (it->plan == PLAN_SQL)
                ok = PQsendQueryPrepared(ctx->conn, it->type->function, it->bind.count,
                                         it->bind.values, NULL, NULL, 0);
            else if (it->plan == PLAN_RECORD_DEAD)
                ok =
                    PQsendQueryPrepared(ctx->conn, "apply_dead", 8, it->dead_values, NULL, NULL, 0);
            else
                continue;
            if (ok != 1)
                return -1;
            cmds[nc].kind = CMD_ITEM;
            cmds[nc++].item = i;
        }
        return (long)nc;
    }
    /* A type without a set-based function goes to its per-event function in its round; its
     * change events must then be staged too. */
    for (size_t i = lo; i < hi; i++) {
        if (ctx->items[i].plan == PLAN_SQL && !ctx->items[i].type->set_function) {
            if (PQsendQueryPrepared(ctx->conn, "apply_stage", 0, NULL, NULL, NULL, 0) != 1)
                return -1;
            cmds[nc++].kind = CMD_STAGE;
            break;
        }
    }
    for (unsigned r = 1; r <= nrounds; r++) {
        for (size_t i = lo; i < hi; i++)
            if (ctx->items[i].round == r && send_redrive(ctx, i, cmds, &nc) != 0)
                return -1;
        for (size_t i = lo; i < hi; i++) {
            struct item *it = &ctx->items[i];
            int ok;

            if (it->round != r)
                continue;
            if (it->plan == PLAN_RECORD_DEAD)
                ok =
                    PQsendQueryPrepared(ctx->conn, "apply_dead", 8, it->dead_values, NULL, NULL, 0);
            else if (it->plan == PLAN_SQL && !it->type->set_function)
                ok = PQsendQueryPrepared(ctx->conn, it->type->function, it->bind.count,
                                         it->bind.values, NULL, NULL, 0);
            else
                continue;
            if (ok != 1)
                return -1;
            cmds[nc].kind = CMD_ITEM;
            cmds[nc++].item = i;
        }
        for (size_t t = 0; t < ntypes; t++) {
            bool any = false;
            const char *values[3 + SET_COLUMNS_MAX];
            const char *fn = direct == &types[t] ? types[t].direct_function : types[t].set_function;
            int lengths[3 + SET_COLUMNS_MAX] = {0}, formats[3 + SET_COLUMNS_MAX] = {0}, ok;
            size_t ncols;
            char *buf;

            if (!types[t].set_function)
                continue;
            for (size_t i = lo; i < hi && !any; i++)
                any = in_set(ctx, i, r, &types[t]);
            if (!any)
                continue;
            values[0] = s_part;
            ncols = 1;
            if (direct == &types[t]) {
                values[1] = ctx->topic;
                values[2] = ctx->source;
                ncols = 3;
            }
            if (types[t].set_columns) {
                size_t n;
                buf = set_columns(ctx, lo, hi, r, &types[t], values + ncols, lengths + ncols,
                                  formats + ncols, &n);
                ncols += n;
            } else {
                buf = set_json(ctx, lo, hi, r, &types[t]);
                values[1] = buf;
                lengths[1] = formats[1] = 0;
                ncols = 2;
            }
            if (!buf)
                return -2;
            /* libpq copies the parameters into its buffer: buf may go at once. */
            ok = PQsendQueryPrepared(ctx->conn, fn, (int)ncols, values, lengths, formats, 0);
            free(buf);
            if (ok != 1)
                return -1;
            cmds[nc].kind = direct == &types[t] ? CMD_DIRECT : CMD_SET;
            cmds[nc++].item = seg;
        }
    }
    /* A direct call returned the change events it wrote, as the flush returns them. */
    if (!ctx->discard_changes && !direct) {
        const char *values[3] = {s_part, ctx->topic, ctx->source};
        if (PQsendQueryPrepared(ctx->conn, "apply_flush", 3, values, NULL, NULL, 0) != 1)
            return -1;
        cmds[nc].kind = CMD_FLUSH;
        cmds[nc++].item = seg;
    } else if (ctx->discard_changes && sets) {
        /* The staging table keeps its rows past COMMIT (0008): drop what the sets staged. */
        if (PQsendQueryPrepared(ctx->conn, "apply_unstage", 0, NULL, NULL, NULL, 0) != 1)
            return -1;
        cmds[nc++].kind = CMD_UNSTAGE;
    }
    return (long)nc;
}

/* Runs segs[0, nsegs) in one transaction: per segment, the compare-and-set that moves its
 * partition from `from` to past its last item, then its items, per event or set-based. On
 * TXN_ITEM_FAILED *failed is the index of the message whose statement failed, or SIZE_MAX
 * when it cannot be told (a set-based statement, the COMMIT). Why it failed is in
 * ctx->error. */
static enum txn_status run_txn(apply_ctx_t *ctx, const struct seg *segs, size_t nsegs, bool sets,
                               size_t *failed)
{
    struct cmd *cmds = ctx->cmds;
    long nc = 1, err_at = -1; /* the command that failed first */
    char sqlstate[6] = "";
    char msg[200] = "";
    enum txn_status st = TXN_OK;
    size_t lo = segs[0].lo, hi = segs[nsegs - 1].hi;
    PGresult *res;

    *failed = SIZE_MAX;
    ctx->error[0] = '\0';
    for (size_t i = lo; i < hi; i++)
        ctx->items[i].outcome = ctx->items[i].plan == PLAN_DEAD ? APPLY_DEAD_LETTER : APPLY_PENDING;

    if (PQenterPipelineMode(ctx->conn) != 1 || PQsetnonblocking(ctx->conn, 1) != 0 ||
        !send_sql(ctx, "BEGIN"))
        goto broken;
    cmds[0].kind = CMD_BEGIN;
    for (size_t k = 0; k < nsegs && st == TXN_OK; k++) {
        const struct seg *g = &segs[k];
        char s_part[16], s_from[24], s_to[24];
        const char *cas[5] = {ctx->group, ctx->topic, s_part, s_from, s_to};
        long n;

        snprintf(s_part, sizeof(s_part), "%" PRId32, g->partition);
        snprintf(s_from, sizeof(s_from), "%" PRId64, g->from);
        snprintf(s_to, sizeof(s_to), "%" PRId64, ctx->items[g->hi - 1].msg->offset + 1);
        if (PQsendQueryPrepared(ctx->conn, "apply_cas", 5, cas, NULL, NULL, 0) != 1)
            goto broken;
        cmds[nc].kind = CMD_CAS;
        cmds[nc++].item = k;
        n = send_items(ctx, g->partition, g->lo, g->hi, sets, k, cmds + nc);
        if (n == -2) {
            /* What is queued still needs a clean end. */
            snprintf(ctx->error, sizeof(ctx->error), "out of memory");
            st = TXN_FATAL;
        } else if (n < 0) {
            goto broken;
        } else {
            nc += n;
        }
    }
    if (PQpipelineSync(ctx->conn) != 1)
        goto broken;

    /* One result per command, then the sync. After the first error the server skips the
     * rest (PGRES_PIPELINE_ABORTED) and the transaction is aborted. */
    for (long k = 0; k < nc; k++) {
        ExecStatusType rs;

        res = pipe_next(ctx);
        if (!res)
            goto broken;
        rs = PQresultStatus(res);
        if (rs == PGRES_FATAL_ERROR && err_at < 0) {
            const char *state = sqlstate_of(res);
            err_at = k;
            snprintf(sqlstate, sizeof(sqlstate), "%s", state ? state : "");
            error_text(res, ctx->conn, msg, sizeof(msg));
        } else if (rs == PGRES_TUPLES_OK && cmds[k].kind == CMD_ITEM) {
            item_read(&ctx->items[cmds[k].item], res, 0, 0);
        } else if (rs == PGRES_TUPLES_OK &&
                   (cmds[k].kind == CMD_SET || cmds[k].kind == CMD_DIRECT)) {
            for (int row = 0; row < PQntuples(res); row++) {
                long i;

                if (PQgetisnull(res, row, 0))
                    continue; /* a change event a direct function wrote */
                i = strtol(PQgetvalue(res, row, 0), NULL, 10);
                if (i >= (long)lo && i < (long)hi)
                    item_read(&ctx->items[i], res, row, 1);
            }
            if (cmds[k].kind == CMD_DIRECT) {
                PQclear(ctx->pending[cmds[k].item].res);
                ctx->pending[cmds[k].item] = (struct written){res, 4};
                continue;
            }
        } else if (rs == PGRES_TUPLES_OK && cmds[k].kind == CMD_FLUSH) {
            PQclear(ctx->pending[cmds[k].item].res);
            ctx->pending[cmds[k].item] = (struct written){res, 0}; /* kept until the COMMIT */
            continue;
        }
        PQclear(res);
    }
    res = pipe_next(ctx);
    if (!res || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
        PQclear(res);
        goto broken;
    }
    PQclear(res);
    if (st == TXN_FATAL) {
        (void)pipe_rollback(ctx);
        goto done;
    }
    if (err_at < 0) {
        /* Every statement answered: every event must have its outcome. */
        for (size_t i = lo; i < hi && err_at < 0; i++) {
            if (ctx->items[i].outcome == APPLY_PENDING) {
                err_at = nc; /* no command to blame: a bug, handled as a failed batch */
                snprintf(msg, sizeof(msg), "no outcome for the event at offset %" PRId64,
                         ctx->items[i].msg->offset);
            }
        }
    }

    if (err_at >= 0) {
        if (!pipe_rollback(ctx))
            goto broken;
        snprintf(ctx->error, sizeof(ctx->error), "postgres: %s (SQLSTATE %s)", msg,
                 sqlstate[0] ? sqlstate : "none");
        if (apply_transient(sqlstate, PQstatus(ctx->conn) != CONNECTION_OK))
            st = TXN_RETRY;
        else if (err_at < nc && cmds[err_at].kind == CMD_CAS &&
                 strcmp(sqlstate, SQLSTATE_STALE) == 0)
            st = TXN_STALE;
        else if (err_at < nc && (cmds[err_at].kind == CMD_BEGIN || cmds[err_at].kind == CMD_CAS))
            st = TXN_FATAL;
        else {
            if (err_at < nc && cmds[err_at].kind == CMD_ITEM)
                *failed = cmds[err_at].item;
            st = TXN_ITEM_FAILED;
        }
        goto done;
    }

    for (size_t k = 0; k < nsegs; k++) {
        if (!send_dead_letters(ctx, segs[k].partition, segs[k].lo, segs[k].hi)) {
            snprintf(ctx->error, sizeof(ctx->error), "dead letter not delivered");
            (void)pipe_rollback(ctx);
            st = TXN_RETRY;
            goto done;
        }
    }

    if (!send_sql(ctx, "COMMIT") || PQpipelineSync(ctx->conn) != 1)
        goto broken;
    res = pipe_next(ctx);
    if (!res)
        goto broken;
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *state = sqlstate_of(res);
        snprintf(sqlstate, sizeof(sqlstate), "%s", state ? state : "");
        error_text(res, ctx->conn, msg, sizeof(msg));
        snprintf(ctx->error, sizeof(ctx->error), "postgres: COMMIT: %s", msg);
        st = apply_transient(sqlstate, PQstatus(ctx->conn) != CONNECTION_OK) ? TXN_RETRY
                                                                             : TXN_ITEM_FAILED;
    }
    PQclear(res);
    res = pipe_next(ctx);
    if (!res || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
        PQclear(res);
        /* The COMMIT's fate is unknown: the retry finds out through the compare-and-set. */
        goto broken;
    }
    PQclear(res);
    if (st == TXN_OK) {
        for (size_t k = 0; k < nsegs; k++) {
            finalize(ctx, &segs[k], segs[k].lo, segs[k].hi);
            if (ctx->pending[k].res) {
                ctx->flushed[ctx->nflushed].partition = segs[k].partition;
                ctx->flushed[ctx->nflushed++].w = ctx->pending[k];
                ctx->pending[k].res = NULL;
            }
        }
    }
done:
    for (size_t k = 0; k < nsegs; k++) {
        PQclear(ctx->pending[k].res);
        ctx->pending[k].res = NULL;
    }
    pipe_leave(ctx);
    return st;
broken:
    error_text(NULL, ctx->conn, msg, sizeof(msg));
    snprintf(ctx->error, sizeof(ctx->error), "postgres: %s", msg);
    st = TXN_RETRY;
    goto done;
}

/* Reads the stored offset after a lost compare-and-set into out: APPLY_STALE with the
 * offset (-1 when the row is gone), or APPLY_RETRY when it could not be read (the caller
 * retries, and the compare-and-set fails again until it can). */
static enum apply_status read_stored(apply_ctx_t *ctx, int32_t partition, struct apply_result *out)
{
    char err[200];
    int64_t next = -1;
    int rc = apply_offsets_load(ctx, partition, -1, &next, err, sizeof(err));

    if (rc == APPLY_OK || rc == APPLY_STALE) {
        out->next_offset = rc == APPLY_OK ? next : -1;
        return APPLY_STALE;
    }
    snprintf(out->error, sizeof(out->error), "%s", err);
    return APPLY_RETRY;
}

/* Applies segment g on its own: one transaction, or, when it fails on an event, one
 * transaction per event, the one that still fails alone going down its plan. Fills g->out. */
static void run_seg(apply_ctx_t *ctx, const struct seg *g)
{
    struct apply_result *out = g->out;
    size_t failed = 0, lo = g->lo, hi = g->hi, n = hi - lo;
    const struct apply_msg *msgs = ctx->items[lo].msg;
    enum txn_status st;

    st = run_txn(ctx, g, 1, ctx->mode == APPLY_MODE_SET, &failed);
    if (st == TXN_ITEM_FAILED) {
        out->failed_batches = 1;
        if (failed >= lo && failed < hi)
            log_warn(item_rid(&ctx->items[failed]),
                     "batch of %zu at offset %" PRId64 " failed at offset %" PRId64
                     ": %s; retrying one event per transaction",
                     n, msgs->offset, ctx->items[failed].msg->offset, ctx->error);
        else
            log_warn(NULL,
                     "batch of %zu at offset %" PRId64
                     " failed: %s; retrying one event per transaction",
                     n, msgs->offset, ctx->error);
        for (size_t i = lo; i < hi; i++)
            ctx->items[i].attempts = ctx->items[i].attempts ? ctx->items[i].attempts : 1;
        for (size_t i = lo; i < hi && (st == TXN_ITEM_FAILED || st == TXN_OK); i++) {
            for (;;) {
                struct seg one = {g->partition, out->next_offset, i, i + 1, g->base, out};

                st = run_txn(ctx, &one, 1, false, &failed);
                if (st != TXN_ITEM_FAILED)
                    break;
                if (ctx->items[i].plan == PLAN_DEAD) {
                    st = TXN_FATAL;
                    break;
                }
                ctx->items[i].attempts++;
                plan_dead(&ctx->items[i], ctx->error);
            }
        }
    }
    snprintf(out->error, sizeof(out->error), "%s", st == TXN_OK ? "" : ctx->error);
    switch (st) {
    case TXN_OK:
        out->status = APPLY_OK;
        break;
    case TXN_STALE:
        out->status = read_stored(ctx, g->partition, out);
        break;
    case TXN_RETRY:
        out->status = APPLY_RETRY;
        break;
    case TXN_FATAL:
    case TXN_ITEM_FAILED:
        out->status = APPLY_FATAL;
        break;
    }
}

/* Sets up the items of batches[0, nb) for one call: ctx->segs[0, *nsegs), the non-empty ones,
 * the items parsed and bound, the statements prepared, the last call's change events
 * forgotten. Returns APPLY_OK, or the status every batch's result then carries. */
static int begin_call(apply_ctx_t *ctx, struct apply_part *batches, size_t nb, size_t *nsegs)
{
    size_t total = 0, k = 0;
    char err[256] = "";
    int rc = APPLY_OK;

    for (size_t b = 0; b < nb; b++) {
        struct apply_result *out = &batches[b].result;

        memset(out, 0, sizeof(*out));
        out->status = APPLY_OK;
        out->next_offset = batches[b].from_offset;
        total += batches[b].n;
    }
    flushed_clear(ctx);
    if (grow(ctx, total, nb) != 0) {
        snprintf(err, sizeof(err), "out of memory for %zu messages", total);
        rc = APPLY_FATAL;
    }
    total = 0;
    for (size_t b = 0; b < nb && rc == APPLY_OK; b++) {
        struct apply_part *bp = &batches[b];

        bp->result.outcomes = ctx->outcomes + total;
        if (bp->n == 0)
            continue;
        ctx->segs[k] =
            (struct seg){bp->partition, bp->from_offset, total, total + bp->n, total, &bp->result};
        for (size_t i = 0; i < bp->n; i++) {
            ctx->outcomes[total + i] = APPLY_PENDING;
            item_prepare(ctx, &ctx->items[total + i], &bp->msgs[i], bp->partition);
        }
        total += bp->n;
        k++;
    }
    *nsegs = k;
    if (rc == APPLY_OK && k > 0)
        rc = ensure_prepared(ctx, err, sizeof(err));
    for (size_t b = 0; b < nb && rc != APPLY_OK; b++) {
        batches[b].result.status = (enum apply_status)rc;
        snprintf(batches[b].result.error, sizeof(batches[b].result.error), "%s", err);
    }
    return rc;
}

/* The end of a call: the parsed events' data goes. */
static void end_call(apply_ctx_t *ctx, size_t nsegs)
{
    for (size_t i = 0; nsegs > 0 && i < ctx->segs[nsegs - 1].hi; i++)
        evt_clear(&ctx->items[i].evt);
}

int apply_batches(apply_ctx_t *ctx, struct apply_part *batches, size_t nb)
{
    size_t nsegs = 0, failed;
    struct seg *segs;
    int rc = APPLY_OK;

    if (begin_call(ctx, batches, nb, &nsegs) != APPLY_OK)
        goto done;
    segs = ctx->segs;
    if (nsegs > 1 && ctx->mode == APPLY_MODE_SET) {
        enum txn_status st = run_txn(ctx, segs, nsegs, true, &failed);

        if (st == TXN_OK)
            goto done; /* every result says APPLY_OK since begin_call */
        if (st == TXN_RETRY) {
            for (size_t k = 0; k < nsegs; k++) {
                segs[k].out->status = APPLY_RETRY;
                snprintf(segs[k].out->error, sizeof(segs[k].out->error), "%s", ctx->error);
            }
            goto done;
        }
        /* A stale position, a failed event, a bug: each partition on its own, where the
         * cause shows and is dealt with as for a single batch. */
        log_info(NULL,
                 "transaction of %zu partitions' batches failed: %s; applying them one "
                 "partition at a time",
                 nsegs, ctx->error);
    }
    for (size_t k = 0; k < nsegs; k++)
        run_seg(ctx, &segs[k]);
done:
    end_call(ctx, nsegs);
    for (size_t b = 0; b < nb && rc == APPLY_OK; b++)
        rc = batches[b].result.status;
    return rc;
}

int apply_batch(apply_ctx_t *ctx, int32_t partition, int64_t from_offset,
                const struct apply_msg *msgs, size_t n, struct apply_result *out)
{
    struct apply_part b = {partition, from_offset, msgs, n, {0}};
    int rc = apply_batches(ctx, &b, 1);

    *out = b.result;
    return rc;
}

/* Runs a prepared statement outside a pipeline. Returns the result (the caller clears it)
 * and sets *rc; on failure the result is NULL and err says why. */
static PGresult *exec_prepared(apply_ctx_t *ctx, const char *name, int nparams,
                               const char *const *values, ExecStatusType want, int *rc, char *err,
                               size_t errlen)
{
    PGresult *res;

    *rc = ensure_prepared(ctx, err, errlen);
    if (*rc != APPLY_OK)
        return NULL;
    res = PQexecPrepared(ctx->conn, name, nparams, values, NULL, NULL, 0);
    if (PQresultStatus(res) != want) {
        char msg[200];
        const char *state = sqlstate_of(res);

        error_text(res, ctx->conn, msg, sizeof(msg));
        snprintf(err, errlen, "postgres: %s: %s", name, msg);
        *rc = apply_transient(state, PQstatus(ctx->conn) != CONNECTION_OK) ? APPLY_RETRY
                                                                           : APPLY_FATAL;
        PQclear(res);
        return NULL;
    }
    return res;
}

int apply_offsets_load(apply_ctx_t *ctx, int32_t partition, int64_t create_at, int64_t *next,
                       char *err, size_t errlen)
{
    char s_part[16], s_at[24];
    const char *values[4] = {ctx->group, ctx->topic, s_part, s_at};
    PGresult *res;
    int rc;

    snprintf(s_part, sizeof(s_part), "%" PRId32, partition);
    snprintf(s_at, sizeof(s_at), "%" PRId64, create_at < 0 ? (int64_t)-1 : create_at);
    res = exec_prepared(ctx, "apply_offsets_load", 4, values, PGRES_TUPLES_OK, &rc, err, errlen);
    if (!res)
        return rc;
    if (PQntuples(res) < 1) {
        snprintf(err, errlen, "consumer_offsets has no row for (%s, %s, %" PRId32 ")", ctx->group,
                 ctx->topic, partition);
        rc = APPLY_STALE;
    } else {
        *next = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        rc = APPLY_OK;
    }
    PQclear(res);
    return rc;
}

static int seq_cmp(const void *a, const void *b)
{
    int64_t x = ((const struct apply_outbox_row *)a)->seq,
            y = ((const struct apply_outbox_row *)b)->seq;

    return (x > y) - (x < y);
}

/* Points ctx->outbox_rows at the outbox rows of w, in seq order, their count in *n. -1 on
 * allocation failure. */
static int rows_of(apply_ctx_t *ctx, struct written w, size_t *n)
{
    size_t count = (size_t)PQntuples(w.res), used = 0;
    bool sorted = true;

    if (count > ctx->outbox_cap) {
        struct apply_outbox_row *r = realloc(ctx->outbox_rows, count * sizeof(*r));
        if (!r)
            return -1;
        ctx->outbox_rows = r;
        ctx->outbox_cap = count;
    }
    for (int i = 0; i < (int)count; i++) {
        struct apply_outbox_row *r = &ctx->outbox_rows[used];

        if (PQgetisnull(w.res, i, w.col))
            continue; /* an outcome row of a direct function */
        r->seq = strtoll(PQgetvalue(w.res, i, w.col), NULL, 10);
        r->user_id = PQgetvalue(w.res, i, w.col + 1);
        r->event = PQgetvalue(w.res, i, w.col + 2);
        r->event_len = (size_t)PQgetlength(w.res, i, w.col + 2);
        r->type = PQgetvalue(w.res, i, w.col + 3);
        r->request_id = PQgetvalue(w.res, i, w.col + 4);
        sorted = sorted && (used == 0 || r[-1].seq < r->seq);
        used++;
    }
    /* A direct function returns its rows in the order it inserted them, which is seq order;
     * SQL does not promise it, so it is checked. */
    if (!sorted)
        qsort(ctx->outbox_rows, used, sizeof(*ctx->outbox_rows), seq_cmp);
    *n = used;
    return 0;
}

int apply_outbox_fetch(apply_ctx_t *ctx, int32_t partition, size_t limit,
                       const struct apply_outbox_row **rows, size_t *n, char *err, size_t errlen)
{
    char s_part[16], s_limit[24];
    const char *values[2] = {s_part, s_limit};
    PGresult *res;
    int rc;

    *rows = NULL;
    *n = 0;
    PQclear(ctx->outbox_res);
    ctx->outbox_res = NULL;
    flushed_clear(ctx); /* outbox_rows now backs these rows */
    snprintf(s_part, sizeof(s_part), "%" PRId32, partition);
    snprintf(s_limit, sizeof(s_limit), "%zu", limit);
    res = exec_prepared(ctx, "apply_outbox_fetch", 2, values, PGRES_TUPLES_OK, &rc, err, errlen);
    if (!res)
        return rc;
    if (rows_of(ctx, (struct written){res, 0}, n) != 0) {
        PQclear(res);
        snprintf(err, errlen, "out of memory");
        return APPLY_FATAL;
    }
    ctx->outbox_res = res;
    *rows = ctx->outbox_rows;
    return APPLY_OK;
}

bool apply_outbox_flushed(apply_ctx_t *ctx, int32_t partition, const struct apply_outbox_row **rows,
                          size_t *n)
{
    *rows = NULL;
    *n = 0;
    for (size_t k = 0; k < ctx->nflushed; k++) {
        if (ctx->flushed[k].partition != partition)
            continue;
        if (rows_of(ctx, ctx->flushed[k].w, n) != 0)
            return false;
        *rows = ctx->outbox_rows;
        return true;
    }
    return false;
}

int apply_outbox_delete(apply_ctx_t *ctx, int32_t partition, const int64_t *seqs, size_t n,
                        char *err, size_t errlen)
{
    char *list, s_part[16];
    const char *values[2];
    size_t used = 0, size = n * 21 + 3;
    PGresult *res;
    int rc;

    if (n == 0)
        return APPLY_OK;
    list = malloc(size);
    if (!list) {
        snprintf(err, errlen, "out of memory");
        return APPLY_FATAL;
    }
    list[used++] = '{';
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(list + used, size - used, "%s%" PRId64, i ? "," : "", seqs[i]);
    snprintf(list + used, size - used, "}");
    snprintf(s_part, sizeof(s_part), "%" PRId32, partition);
    values[0] = s_part;
    values[1] = list;
    res = exec_prepared(ctx, "apply_outbox_delete", 2, values, PGRES_TUPLES_OK, &rc, err, errlen);
    free(list);
    PQclear(res);
    return rc;
}
