/* The write routes. Each validates (server.c did the body, the query and the path), derives
 * the event id and the id of the row it creates, builds the event's data, and produces the
 * envelope to diary.events keyed by the user id. docs/events.md has the types and their data.
 *
 * Write semantics, the same on every route:
 * - Idempotency-Key: the event id is derived from the user and the key. Before producing,
 *   the id is looked up in processed_events on the replica: recorded with the same
 *   requesthash, the write is answered with its recorded outcome and not produced again;
 *   recorded with another requesthash, 422 idempotency-key-reused; not recorded (new, or
 *   still on its way), it is produced (the worker applies an id once, however many copies).
 * - If-Match: "N" travels as the envelope's ifmatch; the worker refuses a stale write.
 * - Prefer: wait=N: once the replica has applied the write's position the answer is the
 *   resource (201/200, or 204 for a deletion) or the worker's rejection as problem+json;
 *   when N seconds pass first, the usual 202. */
#include "ingest.h"

#include <ctype.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "alog.h"
#include "http.h"
#include "log.h"
#include "textw.h"
#include "validate.h"

#define SEND_ATTEMPTS 5  /* produce tries while librdkafka's queue is full */
#define SEND_RETRY_MS 10 /* between them, for a single write */

/* Timestamps as the API shows them. */
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The columns every outcome query starts with; the resource (if any) follows from RES. */
#define OUTCOME_COLS                                                                               \
    "SELECT pe.status, pe.problem::text, pe.reason, pe.request_hash, pe.\"partition\", "           \
    "pe.\"offset\""
#define RES 6

/* One kind of write: its event type, the label of the row id it derives, the status of an
 * applied write, whether If-Match applies, and how to read its outcome and resource back
 * (outcome_sql: $1 is the event id, then outcome_params; resource reads from column RES, and
 * is NULL for a deletion, answered 204). acked, when set, runs once the broker has the
 * event: the node notes its own revocations at once. */
struct write_kind {
    const char *type;
    const char *label;
    int applied_status;
    bool ifmatch;
    const char *outcome_sql;
    int (*outcome_params)(const struct req *r, const char **params);
    json_t *(*resource)(const PGresult *res);
    void (*acked)(struct req *r);
};

/* ---- outcome queries and resources ----------------------------------------------------- */

static int no_params(const struct req *r, const char **p)
{
    return 0;
}

static int subject_params(const struct req *r, const char **p)
{
    p[0] = r->w.subject;
    return 1;
}

static int id_params(const struct req *r, const char **p)
{
    p[0] = r->w.resource_id;
    return 1;
}

static int resource_params(const struct req *r, const char **p)
{
    p[0] = r->w.resource_id;
    p[1] = r->w.subject;
    return 2;
}

static int entry_params(const struct req *r, const char **p)
{
    p[0] = r->w.subject;
    p[1] = r->w.date;
    p[2] = r->w.meal;
    p[3] = r->w.food_id;
    return 4;
}

static int day_params(const struct req *r, const char **p)
{
    p[0] = r->w.subject;
    p[1] = r->w.date;
    return 2;
}

static json_t *user_resource(const PGresult *res)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o}", "id", pgval_string(res, 0, RES), "email",
                     pgval_string(res, 0, RES + 1), "name", pgval_string(res, 0, RES + 2),
                     "version", pgval_integer(res, 0, RES + 3), "created_at",
                     pgval_string(res, 0, RES + 4));
}

static json_t *food_resource(const PGresult *res)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", pgval_string(res, 0, RES), "name",
                     pgval_string(res, 0, RES + 1), "calories_per_100g",
                     pgval_number(res, 0, RES + 2), "protein_per_100g",
                     pgval_number(res, 0, RES + 3), "carbs_per_100g", pgval_number(res, 0, RES + 4),
                     "fat_per_100g", pgval_number(res, 0, RES + 5), "version",
                     pgval_integer(res, 0, RES + 6));
}

static json_t *entry_resource(const PGresult *res)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "id", pgval_string(res, 0, RES), "date",
                     pgval_string(res, 0, RES + 1), "meal_type", pgval_string(res, 0, RES + 2),
                     "food_id", pgval_string(res, 0, RES + 3), "amount",
                     pgval_number(res, 0, RES + 4), "version", pgval_integer(res, 0, RES + 5));
}

static json_t *weight_resource(const PGresult *res)
{
    return json_pack("{s:o, s:o, s:o, s:o}", "id", pgval_string(res, 0, RES), "date",
                     pgval_string(res, 0, RES + 1), "weight", pgval_number(res, 0, RES + 2),
                     "version", pgval_integer(res, 0, RES + 3));
}

static json_t *settings_resource(const PGresult *res)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o}", "unit_system", pgval_string(res, 0, RES),
                     "daily_calorie_goal", pgval_integer(res, 0, RES + 1), "protein_percentage",
                     pgval_number(res, 0, RES + 2), "fat_percentage", pgval_number(res, 0, RES + 3),
                     "version", pgval_integer(res, 0, RES + 4));
}

static const char bare_sql[] =
    OUTCOME_COLS " FROM processed_events pe WHERE pe.event_id = $1::uuid";

static const char user_sql[] = OUTCOME_COLS ", u.id, u.email, u.name, u.version, " TS(
    "u.created_at") " FROM processed_events pe LEFT JOIN users u ON u.id = $2::uuid"
                    " WHERE pe.event_id = $1::uuid";

static const char food_sql[] =
    OUTCOME_COLS ", f.id, f.name, f.calories_per_100g, f.protein_per_100g, f.carbs_per_100g, "
                 "f.fat_per_100g, f.version FROM processed_events pe LEFT JOIN foods f "
                 "ON f.id = $2::uuid AND f.user_id = $3::uuid WHERE pe.event_id = $1::uuid";

static const char entry_sql[] =
    OUTCOME_COLS ", d.id, d.date::text, d.meal_type, d.food_id, d.amount, d.version "
                 "FROM processed_events pe LEFT JOIN daily_meals d ON d.user_id = $2::uuid "
                 "AND d.date = $3::date AND d.meal_type = $4 AND d.food_id = $5::uuid "
                 "WHERE pe.event_id = $1::uuid";

static const char weight_sql[] =
    OUTCOME_COLS ", w.id, w.date::text, w.weight, w.version FROM processed_events pe "
                 "LEFT JOIN weight_entries w ON w.user_id = $2::uuid AND w.date = $3::date "
                 "WHERE pe.event_id = $1::uuid";

static const char settings_sql[] =
    OUTCOME_COLS ", s.unit_system, s.daily_calorie_goal, s.protein_percentage, "
                 "s.fat_percentage, s.version FROM processed_events pe "
                 "LEFT JOIN user_settings s ON s.user_id = $2::uuid WHERE pe.event_id = $1::uuid";

/* ---- what the node notes itself once the broker has a revocation ----------------------- */

/* Unix microseconds of an envelope time ("2026-11-24T16:00:00.123Z"), 0 when malformed. */
static int64_t envelope_time_us(const char *t)
{
    char date[11];
    long days;
    int h, m, sec, ms, n = 0;

    if (strlen(t) < 24)
        return 0;
    memcpy(date, t, 10);
    date[10] = '\0';
    if (!validate_date_days(date, &days) ||
        sscanf(t + 10, "T%2d:%2d:%2d.%3dZ%n", &h, &m, &sec, &ms, &n) != 4 || n != 14)
        return 0;
    return (((int64_t)days * 86400 + h * 3600 + m * 60 + sec) * 1000 + ms) * 1000;
}

static void acked_password(struct req *r)
{
    revoke_note_password(r->app->revoke, &r->claims.user_id, envelope_time_us(r->w.time));
}

static void acked_deleted(struct req *r)
{
    revoke_note_deleted(r->app->revoke, &r->claims.user_id);
}

static void acked_logout(struct req *r)
{
    revoke_note_session(r->app->revoke, &r->claims.session_id, r->claims.expires_at);
}

/* ---- the kinds -------------------------------------------------------------------------- */

enum {
    K_USER_REGISTER,
    K_USER_UPDATE,
    K_PASSWORD,
    K_REHASH,
    K_USER_DELETE,
    K_LOGOUT,
    K_SETTINGS,
    K_FOOD_CREATE,
    K_FOOD_UPDATE,
    K_FOOD_DELETE,
    K_ENTRY_SET,
    K_ENTRY_REMOVE,
    K_WEIGHT_SET,
    K_WEIGHT_REMOVE,
};

/* Event type, label of the created row's id, status when applied, If-Match honoured, outcome
 * query and its parameters, resource, what the node notes once the broker has it. */
static const struct write_kind kinds[] = {
    [K_USER_REGISTER] = {"diary.user.registered.v1", "user", 201, false, user_sql, id_params,
                         user_resource, NULL},
    [K_USER_UPDATE] = {"diary.user.updated.v1", NULL, 200, true, user_sql, id_params, user_resource,
                       NULL},
    [K_PASSWORD] = {"diary.user.password_changed.v1", NULL, 200, true, user_sql, id_params,
                    user_resource, acked_password},
    [K_REHASH] = {"diary.user.password_changed.v1", NULL, 200, false, bare_sql, no_params, NULL,
                  NULL},
    [K_USER_DELETE] = {"diary.user.deleted.v1", NULL, 204, true, bare_sql, no_params, NULL,
                       acked_deleted},
    [K_LOGOUT] = {"diary.session.revoked.v1", NULL, 204, false, bare_sql, no_params, NULL,
                  acked_logout},
    [K_SETTINGS] = {"diary.settings.updated.v1", NULL, 200, true, settings_sql, subject_params,
                    settings_resource, NULL},
    [K_FOOD_CREATE] = {"diary.food.created.v1", "food", 201, false, food_sql, resource_params,
                       food_resource, NULL},
    [K_FOOD_UPDATE] = {"diary.food.updated.v1", NULL, 200, true, food_sql, resource_params,
                       food_resource, NULL},
    [K_FOOD_DELETE] = {"diary.food.deleted.v1", NULL, 204, true, bare_sql, no_params, NULL, NULL},
    [K_ENTRY_SET] = {"diary.entry.set.v1", "entry", 201, true, entry_sql, entry_params,
                     entry_resource, NULL},
    [K_ENTRY_REMOVE] = {"diary.entry.removed.v1", NULL, 204, true, bare_sql, no_params, NULL, NULL},
    [K_WEIGHT_SET] = {"diary.weight.set.v1", "weight", 201, true, weight_sql, day_params,
                      weight_resource, NULL},
    [K_WEIGHT_REMOVE] = {"diary.weight.removed.v1", NULL, 204, true, bare_sql, no_params, NULL,
                         NULL},
};

/* ---- answers ---------------------------------------------------------------------------- */

/* Copies src into dst (size bytes), cut short if need be: snprintf's "%s" without its cost. */
static void copy_text(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;

    if (n)
        memmove(dst, src, n);
    dst[n] = '\0';
}

/* Location, Diary-Position (pos: the write's position as text) and Preference-Applied. */
static void add_write_headers(struct req *r, const char *pos)
{
    char loc[64], pref[32];
    struct textw w;

    textw_init(&w, loc, sizeof(loc));
    textw_str(&w, "/v1/events/");
    textw_str(&w, r->w.event_id);
    textw_done(&w); /* an event id always fits */
    req_add_header(r, "Location", loc);
    req_add_header(r, "Diary-Position", pos);
    if (r->w.wait_secs > 0) {
        textw_init(&w, pref, sizeof(pref));
        textw_str(&w, "wait=");
        textw_i64(&w, r->w.wait_secs);
        textw_done(&w);
        req_add_header(r, "Preference-Applied", pref);
    }
}

/* 202: the broker has the write; the worker will apply it. The body is written as text: its
 * members are a UUID, a position and a constant, none of which needs a JSON escape. */
static void answer_accepted(struct req *r)
{
    char pos[POSITION_STRLEN], body[256];
    struct textw w;
    long n;

    textw_position(&r->w.pos, pos);
    textw_init(&w, body, sizeof(body));
    textw_str(&w, "{\"event_id\":\"");
    textw_str(&w, r->w.event_id);
    textw_str(&w, "\",\"position\":\"");
    textw_str(&w, pos);
    textw_str(&w, "\",\"status\":\"pending\"");
    if (r->w.resource_id[0]) {
        textw_str(&w, ",\"id\":\"");
        textw_str(&w, r->w.resource_id);
        textw_char(&w, '"');
    }
    textw_str(&w, "}\n");
    n = textw_done(&w); /* ids and a position always fit */
    add_write_headers(r, pos);
    req_reply_text(r, 202, "application/json", body, n > 0 ? (size_t)n : 0);
}

json_t *writes_problem_object(const char *problem_text, const char *reason)
{
    json_t *p = problem_text ? json_loads(problem_text, 0, NULL) : NULL, *out;
    json_int_t status = json_integer_value(json_object_get(p, "status"));
    const char *detail = json_string_value(json_object_get(p, "detail"));
    const char *title = json_string_value(json_object_get(p, "title"));
    char type[160];

    if (status < 400 || status > 599)
        status = 422;
    snprintf(type, sizeof(type), "%s%s", PROBLEM_BASE,
             req_problem_slug(json_string_value(json_object_get(p, "type"))));
    out = json_pack("{s:s, s:s, s:I, s:s}", "type", type, "title",
                    title ? title : "The write was rejected.", "status", status, "detail",
                    detail   ? detail
                    : reason ? reason
                             : "the write was rejected");
    json_decref(p);
    return out;
}

/* The worker's rejection, as it recorded it in processed_events.problem. */
static void answer_rejected(struct req *r, const char *problem_text, const char *reason)
{
    json_t *p = writes_problem_object(problem_text, reason);
    char pos[POSITION_STRLEN];

    textw_position(&r->w.pos, pos);
    add_write_headers(r, pos);
    req_problem_titled(r, (int)json_integer_value(json_object_get(p, "status")),
                       req_problem_slug(json_string_value(json_object_get(p, "type"))),
                       json_string_value(json_object_get(p, "title")),
                       json_string_value(json_object_get(p, "detail")));
    json_decref(p);
}

static const char *col(const PGresult *res, int c)
{
    return PQgetisnull(res, 0, c) ? NULL : PQgetvalue(res, 0, c);
}

/* Answers with the outcome the worker recorded: the row of kind->outcome_sql. */
static void answer_outcome(struct req *r, const PGresult *res)
{
    char pos[POSITION_STRLEN];
    json_t *body;

    if (strcmp(PQgetvalue(res, 0, 0), "rejected") == 0) {
        answer_rejected(r, col(res, 1), col(res, 2));
        return;
    }
    textw_position(&r->w.pos, pos);
    if (!r->w.kind->resource) {
        add_write_headers(r, pos);
        req_reply(r, 204, NULL);
        return;
    }
    if (PQgetisnull(res, 0, RES)) {
        answer_accepted(r); /* applied, but the row is gone already (changed or deleted since) */
        return;
    }
    body = r->w.kind->resource(res);
    json_object_set_new(body, "event_id", json_string(r->w.event_id));
    json_object_set_new(body, "position", json_string(pos));
    add_write_headers(r, pos);
    req_reply(r, r->w.kind->applied_status, body);
}

static int outcome_query(struct req *r, req_query_cb cb)
{
    const char *params[8] = {r->w.event_id};
    int n = 1 + r->w.kind->outcome_params(r, params + 1);

    return req_query(r, r->w.kind->outcome_sql, n, params, cb);
}

static void outcome_read(struct req *r, PGresult *res, const char *err)
{
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        /* The replica said the position is applied but cannot show the outcome (a failed
         * query, or an event the worker skipped): the write stays accepted. */
        if (err || (res && PQresultStatus(res) != PGRES_TUPLES_OK))
            log_warn(r->rid, "outcome query failed: %s", err ? err : PQresultErrorMessage(res));
        answer_accepted(r);
        return;
    }
    answer_outcome(r, res);
}

static void waited(struct req *r, enum replwait_status st)
{
    if (st != REPLWAIT_REACHED || outcome_query(r, outcome_read) != 0)
        answer_accepted(r);
}

static void single_delivered(struct req *r, rd_kafka_resp_err_t err, int32_t partition,
                             int64_t offset)
{
    if (err) {
        log_warn(r->rid, "event %s not acknowledged: %s", r->w.event_id, rd_kafka_err2str(err));
        if (r->w.then)
            r->w.then(r);
        else
            req_unavailable(r, "the event log did not acknowledge the write; retry it with the "
                               "same Idempotency-Key");
        return;
    }
    r->w.pos.partition = partition;
    r->w.pos.offset = offset;
    if (r->w.kind->acked)
        r->w.kind->acked(r);
    if (r->w.then) {
        r->w.then(r);
    } else if (r->w.wait_secs > 0) {
        int64_t until = replwait_now_ms() + r->w.wait_secs * 1000;
        if (until > r->deadline_ms - 100)
            until = r->deadline_ms - 100;
        req_wait(r, &r->w.pos, until, waited);
    } else {
        answer_accepted(r);
    }
}

void writes_delivered(void *opaque, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct wmsg *m = opaque;
    struct req *r = m->r;

    counters_produce(r->app->stats, (double)(ingest_now_us() - m->produced_us) / 1e6, !err);
    if (!err)
        shed_acked(r->app->shed, partition, offset);
    if (req_live(r)) {
        if (m->item >= 0)
            batch_delivered(r, m->item, err, partition, offset);
        else
            single_delivered(r, err, partition, offset);
    }
    req_release(r); /* the reference the message held */
}

/* ---- producing -------------------------------------------------------------------------- */

/* The envelope of an event about subject; data is stolen. Written straight into the one
 * buffer librdkafka will own (evt_write), the data dumped into a stack buffer on the way. The
 * caller frees the result; NULL on ENOMEM. */
static char *envelope(struct req *r, const char *type, const char *event_id, const char *subject,
                      json_t *data, int64_t ifmatch, const char *requesthash, char *time_out,
                      size_t *len, const char *data_text, size_t data_len)
{
    const char *tp = req_header(r, REQ_HDR_TRACEPARENT), *at = req_header(r, REQ_HDR_OCCURRED_AT);
    char time[EVT_TIMELEN], stack[1024], *heap = NULL, *value = NULL;
    struct evt_view v = {
        .id = event_id,
        .type = type,
        .subject = subject,
        .source = r->app->cfg.source,
        .time = time,
        .requestid = r->rid,
        /* The limits of struct evt's fields, which evt_parse keeps to. */
        .traceparent = hdr_traceparent_ok(tp) && strlen(tp) < 64 ? tp : NULL,
        .occurredat = hdr_rfc3339_ok(at) ? at : NULL,
        .clientaddr = r->peer,
        .requesthash = requesthash,
        .ifmatch = ifmatch,
    };
    size_t n = 0;

    evt_time_now(time);
    if (data_len > 0) {
        v.data = data_text;
        v.datalen = data_len;
    } else if (data) {
        const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
        n = json_dumpb(data, stack, sizeof(stack), flags);
        if (n > sizeof(stack)) {
            heap = json_dumps(data, flags);
            n = heap ? strlen(heap) : 0;
        }
        if (n == 0)
            goto out;
        v.data = heap ? heap : stack;
        v.datalen = n;
    }
    value = evt_write(&v, len);
    if (time_out)
        memcpy(time_out, time, EVT_TIMELEN);
out:
    free(heap);
    json_decref(data);
    return value;
}

static rd_kafka_resp_err_t send_value(struct req *r, struct wmsg *m, const char *type,
                                      const char *subject, char *value, size_t len)
{
    const char *headers[] = {"request-id", r->rid,         "ce_type",
                             type,         "content-type", "application/cloudevents+json",
                             NULL};
    rd_kafka_resp_err_t err;

    req_hold(r); /* the delivery report's; dropped here if there will be none */
    m->produced_us = ingest_now_us();
    err = kprod_send(r->app->prod, r->app->cfg.topic, subject, value, len, headers, m);
    if (err)
        req_release(r);
    return err;
}

rd_kafka_resp_err_t writes_send(struct req *r, struct wmsg *m, const char *type,
                                const char *event_id, json_t *data, const char *requesthash)
{
    size_t len = 0;
    char *value = envelope(r, type, event_id, r->user, data, 0, requesthash, NULL, &len, NULL, 0);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__FAIL;

    for (int i = 0; value && i < SEND_ATTEMPTS; i++) {
        err = send_value(r, m, type, r->user, value, len);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        kprod_poll(r->app->prod);
    }
    if (err)
        free(value);
    return err;
}

static void try_send(struct req *r);

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct req *r = arg;

    req_hold(r);
    try_send(r);
    req_release(r);
}

static void try_send(struct req *r)
{
    struct timeval tv = {0, SEND_RETRY_MS * 1000};
    rd_kafka_resp_err_t err =
        send_value(r, &r->w.msg, r->w.kind->type, r->w.subject, r->w.value, r->w.len);

    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        r->w.value = NULL; /* librdkafka frees it */
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && ++r->w.attempts < SEND_ATTEMPTS) {
        kprod_poll(r->app->prod);
        if (!r->retry_ev)
            r->retry_ev = evtimer_new(r->app->base, retry_cb, r);
        if (r->retry_ev && evtimer_add(r->retry_ev, &tv) == 0)
            return;
    }
    log_warn(r->rid, "cannot produce event %s: %s", r->w.event_id, rd_kafka_err2str(err));
    if (r->w.then)
        r->w.then(r);
    else
        req_unavailable(r, "the event log is not accepting writes right now");
}

bool writes_shed(struct req *r, const char *key)
{
    int32_t partition;
    int64_t lag;
    char detail[192];

    if (!shed_refuse(r->app->shed, key, kprod_partitions(r->app->prod), &partition, &lag))
        return false;
    snprintf(detail, sizeof(detail),
             "the apply is %" PRId64 " events behind on partition %" PRId32
             " (at most %ld are let wait); retry after Retry-After",
             lag, partition, r->app->cfg.max_lag);
    req_add_header(r, "Retry-After", "1");
    req_problem(r, 503, "apply-behind", detail, NULL);
    return true;
}

/* Builds the envelope around r->w.data and produces it. A log-in's rehash (then) is best
 * effort and never shed: it is one event, and the log-in must not fail for it. */
static void produce(struct req *r)
{
    if (!r->w.then && writes_shed(r, r->w.subject))
        return;
    r->w.value = envelope(r, r->w.kind->type, r->w.event_id, r->w.subject, r->w.data, r->w.ifmatch,
                          r->w.requesthash, r->w.time, &r->w.len, r->w.data_text, r->w.data_len);
    r->w.data = NULL; /* the envelope is all that goes on */
    if (!r->w.value) {
        req_unavailable(r, "out of memory");
        return;
    }
    try_send(r);
}

/* ---- ids and hashes --------------------------------------------------------------------- */

/* writes_event_id's id, not yet formatted. */
static void event_uuid(const char *user, const char *key, diary_uuid_t *ev)
{
    struct timeval tv;

    if (key && *key) {
        const char *parts[] = {user, key};
        uuid_derive(ev, "event", parts, 2);
    } else {
        gettimeofday(&tv, NULL);
        uuid_v7(ev, (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000);
    }
}

void writes_event_id(const char *user, const char *key, char out[UUID_STRLEN])
{
    diary_uuid_t ev;

    event_uuid(user, key, &ev);
    uuid_format(&ev, out);
}

/* The id of the row an event creates: uuid_child(event id, label). */
static void child_id(const char *event_id, const char *label, char out[UUID_STRLEN])
{
    diary_uuid_t ev, child;

    if (uuid_parse(event_id, &ev) != 0) {
        out[0] = '\0';
        return;
    }
    uuid_child(&child, &ev, label);
    uuid_format(&child, out);
}

/* writes_request_hash over a body already in canonical form (canon, clen; NULL: none). */
static void request_hash_text(const struct ingest *app, const char *method, const char *path,
                              const char *canon, size_t clen, char out[REQHASH_HEXLEN])
{
    crypto_generichash_state st;
    uint8_t h[32];
    char lower[512];
    size_t i;
    struct textw w;

    for (i = 0; path[i] && i < sizeof(lower) - 1; i++)
        lower[i] = (char)tolower((unsigned char)path[i]);
    crypto_generichash_init(&st, app->reqhash_key, sizeof(app->reqhash_key), sizeof(h));
    crypto_generichash_update(&st, (const uint8_t *)method, strlen(method));
    crypto_generichash_update(&st, (const uint8_t *)"\n", 1);
    crypto_generichash_update(&st, (const uint8_t *)lower, i);
    crypto_generichash_update(&st, (const uint8_t *)"\n", 1);
    if (canon)
        crypto_generichash_update(&st, (const uint8_t *)canon, clen);
    crypto_generichash_final(&st, h, sizeof(h));
    textw_init(&w, out, REQHASH_HEXLEN);
    textw_hex(&w, h, sizeof(h));
    textw_done(&w); /* 64 digits fit REQHASH_HEXLEN */
}

void writes_request_hash(const struct ingest *app, const char *method, const char *path,
                         json_t *body, char out[REQHASH_HEXLEN])
{
    const size_t flags = JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY;
    char stack[1024], *heap = NULL;
    const char *canon = NULL;
    size_t clen = 0;

    /* The canonical body in a stack buffer when it fits, else on the heap. */
    if (body) {
        clen = json_dumpb(body, stack, sizeof(stack), flags);
        if (clen > sizeof(stack)) {
            heap = json_dumps(body, flags);
            clen = heap ? strlen(heap) : 0;
        }
        canon = heap ? heap : stack;
    }
    request_hash_text(app, method, path, canon, clen, out);
    free(heap);
}

/* ---- the common path of a write --------------------------------------------------------- */

/* Reads Prefer, Idempotency-Key and If-Match, and sets the subject (the caller). False when
 * it answered (a bad header). */
static bool begin(struct req *r, const struct write_kind *kind)
{
    long secs;
    const char *key = req_header(r, REQ_HDR_IDEMPOTENCY_KEY), *im = req_header(r, REQ_HDR_IF_MATCH);

    r->w.kind = kind;
    r->w.msg.r = r;
    r->w.msg.item = -1;
    copy_text(r->w.subject, sizeof(r->w.subject), r->user);
    if (hdr_prefer_wait(req_header(r, REQ_HDR_PREFER), &secs) && secs > 0 &&
        r->app->cfg.max_wait > 0)
        r->w.wait_secs = secs < r->app->cfg.max_wait ? secs : r->app->cfg.max_wait;
    if (key && !hdr_idempotency_key_ok(key)) {
        req_invalid(r, "Idempotency-Key", "must be 1 to 255 visible ASCII characters");
        return false;
    }
    copy_text(r->w.key, sizeof(r->w.key), key ? key : "");
    if (kind->ifmatch && im && hdr_if_match(im, &r->w.ifmatch) != 0) {
        req_invalid(r, "If-Match", "must be one version tag, \"N\" or W/\"N\"");
        return false;
    }
    return true;
}

/* The event id from the user and the key, and the created row's id when the kind has one. */
static void ids(struct req *r)
{
    diary_uuid_t ev, child;

    event_uuid(r->user, r->w.key, &ev);
    uuid_format(&ev, r->w.event_id);
    if (r->w.kind->label) {
        uuid_child(&child, &ev, r->w.kind->label);
        uuid_format(&child, r->w.resource_id);
    }
}

static void proceed(struct req *r);

static void lookup_read(struct req *r, PGresult *res, const char *err)
{
    const char *hash;

    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        /* Without the record the write goes ahead: a repeat is harmless (the worker applies
         * an id once), only a key reused with another body goes unnoticed. */
        log_warn(r->rid, "idempotency look-up failed: %s", err ? err : PQresultErrorMessage(res));
        proceed(r);
        return;
    }
    if (PQntuples(res) != 1) {
        proceed(r);
        return;
    }
    hash = col(res, 3);
    if (hash && strcmp(hash, r->w.requesthash) != 0) {
        req_problem(r, 422, "idempotency-key-reused",
                    "this Idempotency-Key was used before with another method, path or body", NULL);
        return;
    }
    r->w.pos.partition = (int32_t)strtol(PQgetvalue(res, 0, 4), NULL, 10);
    r->w.pos.offset = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
    req_add_header(r, "Idempotent-Replayed", "true");
    answer_outcome(r, res);
}

/* Hashes the request and, for a keyed write, checks what became of the key before. A write
 * without a body hashes its event's data instead, which adds what the path does not say:
 * the session a log-out ends, so that one key used by two sessions is not one log-out. */
static void submit_hashed(struct req *r)
{
    if (r->w.key[0] && outcome_query(r, lookup_read) == 0)
        return;
    proceed(r);
}

static json_t *body_tree(struct req *r);

static void submit(struct req *r)
{
    json_t *body = body_tree(r);

    writes_request_hash(r->app, r->method, r->path, body ? body : r->w.data, r->w.requesthash);
    submit_hashed(r);
}

/* ---- passwords -------------------------------------------------------------------------- */

static void password_hashed(struct req *r, enum hashpool_status st, const char *hash)
{
    if (st != HASHPOOL_OK) {
        req_unavailable(r, "the password could not be hashed");
        return;
    }
    json_object_set_new(r->w.data, "password_hash", json_string(hash));
    produce(r);
}

static void hash_then_produce(struct req *r)
{
    if (req_hash(r, json_string_value(json_object_get(r->body, "password")), password_hashed) != 0)
        req_unavailable(r, "too many passwords are being hashed; retry shortly");
}

/* What runs once the idempotency check let the write through: produce, or first hash the
 * password of a registration or a password change (their data carries an empty
 * password_hash until then). */
static void proceed(struct req *r)
{
    if (json_object_get(r->w.data, "password_hash"))
        hash_then_produce(r);
    else
        produce(r);
}

/* ---- the routes ------------------------------------------------------------------------- */

/* The body as a tree: the one dispatch parsed, or, for a body validate_numbers read, one
 * built from its numbers (the values and types json_loadb would give), kept in r->body. NULL
 * for a route without a body, or when memory ran out. */
static json_t *body_tree(struct req *r)
{
    if (!r->body && r->nnums > 0) {
        json_t *o = json_object();

        for (size_t i = 0; o && i < r->nnums; i++) {
            const struct vnumber *n = &r->nums[i];

            if (json_object_set_new(o, n->rule->name,
                                    n->integer ? json_integer(n->ivalue) : json_real(n->value)) !=
                0) {
                json_decref(o);
                o = NULL;
            }
        }
        r->body = o;
    }
    return r->body;
}

static json_t *body_get(struct req *r, const char *key)
{
    return json_incref(json_object_get(body_tree(r), key));
}

/* Copies the body's members named in keys (those present and not null) into a new object. */
static json_t *body_pick(const struct req *r, const char *const *keys)
{
    json_t *o = json_object();

    for (; *keys; keys++) {
        json_t *v = json_object_get(r->body, *keys);
        if (v && !json_is_null(v))
            json_object_set(o, *keys, v);
    }
    return o;
}

static const char *const food_fields[] = {"name",           "calories_per_100g", "protein_per_100g",
                                          "carbs_per_100g", "fat_per_100g",      NULL};

/* POST /v1/users: the event id comes from the key and the lower-cased email (there is no
 * user yet), and the new user is the subject. The password_hash member is a placeholder
 * until the hash threads filled it. */
void writes_user_create(struct req *r)
{
    const char *email = json_string_value(json_object_get(r->body, "email"));
    char lower[256];
    size_t i;
    diary_uuid_t ev;

    if (!begin(r, &kinds[K_USER_REGISTER]))
        return;
    for (i = 0; email[i] && i < sizeof(lower) - 1; i++)
        lower[i] = (char)tolower((unsigned char)email[i]);
    lower[i] = '\0';
    if (r->w.key[0]) {
        const char *parts[] = {"register", r->w.key, lower};
        uuid_derive(&ev, "event", parts, 3);
        uuid_format(&ev, r->w.event_id);
    } else {
        writes_event_id("", "", r->w.event_id);
    }
    child_id(r->w.event_id, "user", r->w.resource_id);
    copy_text(r->w.subject, sizeof(r->w.subject), r->w.resource_id);
    r->w.data = json_pack("{s:s, s:o, s:o, s:s}", "user_id", r->w.resource_id, "email",
                          body_get(r, "email"), "name", body_get(r, "name"), "password_hash", "");
    submit(r);
}

/* PATCH /v1/me: name and email in diary.user.updated.v1, or a password (alone, see
 * schema/api.yaml) in diary.user.password_changed.v1, which ends every session. */
void writes_me_update(struct req *r)
{
    static const char *const fields[] = {"name", "email", NULL};
    bool password = json_object_get(r->body, "password") != NULL &&
                    !json_is_null(json_object_get(r->body, "password"));

    if (!begin(r, password ? &kinds[K_PASSWORD] : &kinds[K_USER_UPDATE]))
        return;
    ids(r);
    copy_text(r->w.resource_id, sizeof(r->w.resource_id), r->user);
    r->w.data =
        password ? json_pack("{s:s, s:b}", "password_hash", "", "revoke", 1) : body_pick(r, fields);
    submit(r);
}

void writes_me_delete(struct req *r)
{
    if (!begin(r, &kinds[K_USER_DELETE]))
        return;
    ids(r);
    r->w.data = json_object();
    submit(r);
}

/* DELETE /v1/sessions/current: the session and expiry come from the caller's token. */
void writes_session_revoke(struct req *r)
{
    char sid[UUID_STRLEN], expires[32];

    if (!begin(r, &kinds[K_LOGOUT]))
        return;
    ids(r);
    uuid_format(&r->claims.session_id, sid);
    hdr_rfc3339_utc(r->claims.expires_at, expires, sizeof(expires));
    r->w.data = json_pack("{s:s, s:s}", "session_id", sid, "expires_at", expires);
    submit(r);
}

void writes_settings_update(struct req *r)
{
    static const char *const fields[] = {"unit_system", "daily_calorie_goal", "protein_percentage",
                                         "fat_percentage", NULL};

    if (!begin(r, &kinds[K_SETTINGS]))
        return;
    ids(r);
    r->w.data = body_pick(r, fields);
    submit(r);
}

void writes_food_create(struct req *r)
{
    if (!begin(r, &kinds[K_FOOD_CREATE]))
        return;
    ids(r);
    r->w.data = body_pick(r, food_fields);
    json_object_set_new(r->w.data, "food_id", json_string(r->w.resource_id));
    submit(r);
}

/* The {id} or {food_id} path parameter, lower-cased as the database prints UUIDs. */
static void path_uuid(const struct req *r, const char *name, char out[UUID_STRLEN])
{
    copy_text(out, UUID_STRLEN, route_param(&r->params, name));
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

/* PUT /v1/foods/{id}: every field replaced, validated as at creation. */
void writes_food_update(struct req *r)
{
    if (!begin(r, &kinds[K_FOOD_UPDATE]))
        return;
    ids(r);
    path_uuid(r, "id", r->w.resource_id);
    r->w.data = body_pick(r, food_fields);
    json_object_set_new(r->w.data, "food_id", json_string(r->w.resource_id));
    submit(r);
}

void writes_food_delete(struct req *r)
{
    if (!begin(r, &kinds[K_FOOD_DELETE]))
        return;
    ids(r);
    path_uuid(r, "id", r->w.resource_id);
    r->w.data = json_pack("{s:s}", "food_id", r->w.resource_id);
    submit(r);
}

/* The natural key of an entry: {date}/{meal}/{food_id}. */
static void entry_key(struct req *r)
{
    copy_text(r->w.date, sizeof(r->w.date), route_param(&r->params, "date"));
    copy_text(r->w.meal, sizeof(r->w.meal), route_param(&r->params, "meal"));
    path_uuid(r, "food_id", r->w.food_id);
}

/* The data of diary.entry.set.v1 written as text, byte for byte what jansson dumps for the
 * object json_pack would build (the ids, the date and the meal were validated and need no
 * escape; amount is the amount as jansson dumps it). False when it does not fit: build the
 * object. */
static bool entry_set_text(struct req *r, const char *amount, size_t an)
{
    struct req_write *w = &r->w;
    struct textw t;
    long n;

    textw_init(&t, w->data_text, sizeof(w->data_text));
    textw_str(&t, "{\"entry_id\":\"");
    textw_str(&t, w->resource_id);
    textw_str(&t, "\",\"date\":\"");
    textw_str(&t, w->date);
    textw_str(&t, "\",\"meal_type\":\"");
    textw_str(&t, w->meal);
    textw_str(&t, "\",\"food_id\":\"");
    textw_str(&t, w->food_id);
    textw_str(&t, "\",\"amount\":");
    textw_mem(&t, amount, an);
    textw_char(&t, '}');
    n = textw_done(&t);
    if (n <= 0)
        return false;
    w->data_len = (size_t)n;
    return true;
}

/* The requesthash of a body whose only member is the amount: its canonical form is
 * {"amount":...} with the amount as jansson dumps it, so the one dump serves the event's data
 * and the hash. False when the body has other members (validation refuses them) or the text
 * does not fit: hash the body the usual way. */
static bool entry_set_hash(struct req *r, const char *amount, size_t an)
{
    char canon[96];
    struct textw t;
    long n;

    if (r->body ? json_object_size(r->body) != 1 : r->nnums != 1)
        return false;
    textw_init(&t, canon, sizeof(canon));
    textw_str(&t, "{\"amount\":");
    textw_mem(&t, amount, an);
    textw_char(&t, '}');
    n = textw_done(&t);
    if (n <= 0)
        return false;
    request_hash_text(r->app, r->method, r->path, canon, (size_t)n, r->w.requesthash);
    return true;
}

void writes_entry_set(struct req *r)
{
    char amount[64];
    size_t an;

    if (!begin(r, &kinds[K_ENTRY_SET]))
        return;
    ids(r);
    entry_key(r);
    if (!r->body && r->nnums == 1) {
        /* Read by validate_numbers, which wrote it as json_dumpb would. */
        an = r->nums[0].len;
        memcpy(amount, r->nums[0].text, an + 1);
    } else {
        an = json_dumpb(json_object_get(r->body, "amount"), amount, sizeof(amount),
                        JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    }
    if (an == 0 || an >= sizeof(amount) || !entry_set_text(r, amount, an)) {
        r->w.data = json_pack("{s:s, s:s, s:s, s:s, s:o}", "entry_id", r->w.resource_id, "date",
                              r->w.date, "meal_type", r->w.meal, "food_id", r->w.food_id, "amount",
                              body_get(r, "amount"));
        submit(r);
        return;
    }
    if (entry_set_hash(r, amount, an))
        submit_hashed(r);
    else
        submit(r);
}

void writes_entry_remove(struct req *r)
{
    if (!begin(r, &kinds[K_ENTRY_REMOVE]))
        return;
    ids(r);
    entry_key(r);
    r->w.data = json_pack("{s:s, s:s, s:s}", "date", r->w.date, "meal_type", r->w.meal, "food_id",
                          r->w.food_id);
    submit(r);
}

void writes_weight_set(struct req *r)
{
    if (!begin(r, &kinds[K_WEIGHT_SET]))
        return;
    ids(r);
    copy_text(r->w.date, sizeof(r->w.date), route_param(&r->params, "date"));
    r->w.data = json_pack("{s:s, s:s, s:o}", "weight_id", r->w.resource_id, "date", r->w.date,
                          "weight", body_get(r, "weight"));
    submit(r);
}

void writes_weight_remove(struct req *r)
{
    if (!begin(r, &kinds[K_WEIGHT_REMOVE]))
        return;
    ids(r);
    copy_text(r->w.date, sizeof(r->w.date), route_param(&r->params, "date"));
    r->w.data = json_pack("{s:s}", "date", r->w.date);
    submit(r);
}

/* Log-in with a legacy (bcrypt) hash: the new argon2id hash replaces it, without ending any
 * session. Best effort: then(r) answers the log-in whatever the broker says. */
void writes_rehash(struct req *r, const char *hash, void (*then)(struct req *r))
{
    r->w.kind = &kinds[K_REHASH];
    r->w.msg.r = r;
    r->w.msg.item = -1;
    r->w.then = then;
    copy_text(r->w.subject, sizeof(r->w.subject), r->scratch);
    writes_event_id("", "", r->w.event_id);
    r->w.data = json_pack("{s:s, s:b}", "password_hash", hash, "revoke", 0);
    produce(r);
}
