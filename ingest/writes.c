/* The write routes: each validates (server.c did the body), derives the event id and the id
 * of the row it creates, builds the event's data, and produces the envelope to diary.events
 * keyed by the user id. The answer waits for the broker's acknowledgement: 202 with the event
 * id and its position, or with Prefer: wait=N, once the replica has applied that position,
 * the resource (201) or the worker's rejection (its recorded problem). The event types and
 * their data are docs/events.md's. */
#include "ingest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "envelope.h"
#include "http.h"
#include "log.h"

#define SEND_ATTEMPTS 5  /* produce tries while librdkafka's queue is full */
#define SEND_RETRY_MS 10 /* between them */

/* One kind of write: its event type, the label of the row id it derives, and how to read
 * its outcome and resource back from the replica (columns 0-2: status, problem, reason;
 * from column 3 on: the resource, NULL when the event created nothing). */
struct write_kind {
    const char *type;
    const char *label;
    const char *outcome_sql;
    int (*outcome_params)(const struct req *r, const char **params);
    json_t *(*resource)(const PGresult *res);
};

static int user_params(const struct req *r, const char **p)
{
    p[0] = r->w.event_id;
    p[1] = r->w.resource_id;
    return 2;
}

static json_t *user_resource(const PGresult *res)
{
    return json_pack("{s:o, s:o, s:o, s:o}", "id", pgval_string(res, 0, 3), "email",
                     pgval_string(res, 0, 4), "name", pgval_string(res, 0, 5), "version",
                     pgval_integer(res, 0, 6));
}

static int food_params(const struct req *r, const char **p)
{
    p[0] = r->w.event_id;
    p[1] = r->w.resource_id;
    p[2] = r->w.subject;
    return 3;
}

static json_t *food_resource(const PGresult *res)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", pgval_string(res, 0, 3), "name",
                     pgval_string(res, 0, 4), "calories_per_100g", pgval_number(res, 0, 5),
                     "protein_per_100g", pgval_number(res, 0, 6), "carbs_per_100g",
                     pgval_number(res, 0, 7), "fat_per_100g", pgval_number(res, 0, 8), "version",
                     pgval_integer(res, 0, 9));
}

static int entry_params(const struct req *r, const char **p)
{
    p[0] = r->w.event_id;
    p[1] = r->w.subject;
    p[2] = r->w.date;
    p[3] = r->w.meal;
    p[4] = r->w.food_id;
    return 5;
}

static json_t *entry_resource(const PGresult *res)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "id", pgval_string(res, 0, 3), "date",
                     pgval_string(res, 0, 4), "meal_type", pgval_string(res, 0, 5), "food_id",
                     pgval_string(res, 0, 6), "amount", pgval_number(res, 0, 7), "version",
                     pgval_integer(res, 0, 8));
}

static const struct write_kind kind_user = {
    "diary.user.registered.v1", "user",
    "SELECT pe.status, pe.problem::text, pe.reason, u.id, u.email, u.name, u.version "
    "FROM processed_events pe LEFT JOIN users u ON u.id = $2::uuid "
    "WHERE pe.event_id = $1::uuid",
    user_params, user_resource};

static const struct write_kind kind_food = {
    "diary.food.created.v1", "food",
    "SELECT pe.status, pe.problem::text, pe.reason, f.id, f.name, f.calories_per_100g, "
    "f.protein_per_100g, f.carbs_per_100g, f.fat_per_100g, f.version "
    "FROM processed_events pe LEFT JOIN foods f ON f.id = $2::uuid AND f.user_id = $3::uuid "
    "WHERE pe.event_id = $1::uuid",
    food_params, food_resource};

static const struct write_kind kind_entry = {
    "diary.entry.set.v1", "entry",
    "SELECT pe.status, pe.problem::text, pe.reason, d.id, d.date::text, d.meal_type, d.food_id, "
    "d.amount, d.version "
    "FROM processed_events pe LEFT JOIN daily_meals d ON d.user_id = $2::uuid "
    "AND d.date = $3::date AND d.meal_type = $4 AND d.food_id = $5::uuid "
    "WHERE pe.event_id = $1::uuid",
    entry_params, entry_resource};

/* ---- answers --------------------------------------------------------------------------- */

static void add_write_headers(struct req *r)
{
    char pos[POSITION_STRLEN], loc[64], pref[32];

    position_format(&r->w.pos, pos);
    snprintf(loc, sizeof(loc), "/v1/events/%s", r->w.event_id);
    req_add_header(r, "Location", loc);
    req_add_header(r, "Diary-Position", pos);
    if (r->w.wait_secs > 0) {
        snprintf(pref, sizeof(pref), "wait=%ld", r->w.wait_secs);
        req_add_header(r, "Preference-Applied", pref);
    }
}

/* 202: the broker has the write; the worker will apply it. */
static void answer_accepted(struct req *r)
{
    char pos[POSITION_STRLEN];
    json_t *body;

    position_format(&r->w.pos, pos);
    body = json_pack("{s:s, s:s, s:s}", "event_id", r->w.event_id, "position", pos, "status",
                     "pending");
    if (r->w.resource_id[0])
        json_object_set_new(body, "id", json_string(r->w.resource_id));
    add_write_headers(r);
    req_reply(r, 202, body);
}

/* The slug of a recorded problem's type: the part after PROBLEM_BASE, or after the last '/'. */
static const char *problem_slug(const char *type)
{
    const char *slash;

    if (!type || !*type)
        return "rejected";
    if (strncmp(type, PROBLEM_BASE, strlen(PROBLEM_BASE)) == 0)
        return type + strlen(PROBLEM_BASE);
    slash = strrchr(type, '/');
    return slash && slash[1] ? slash + 1 : type;
}

/* The worker's rejection, as it recorded it in processed_events.problem. */
static void answer_rejected(struct req *r, const char *problem_text, const char *reason)
{
    json_t *p = problem_text ? json_loads(problem_text, 0, NULL) : NULL;
    json_int_t status = json_integer_value(json_object_get(p, "status"));
    const char *detail = json_string_value(json_object_get(p, "detail"));

    if (status < 400 || status > 599)
        status = 422;
    add_write_headers(r);
    req_problem_titled(r, (int)status, problem_slug(json_string_value(json_object_get(p, "type"))),
                       json_string_value(json_object_get(p, "title")),
                       detail   ? detail
                       : reason ? reason
                                : "the write was rejected");
    json_decref(p);
}

static void outcome_read(struct req *r, PGresult *res, const char *err)
{
    const char *status;
    char pos[POSITION_STRLEN];
    json_t *body;

    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        /* The replica said the position is applied but cannot show the outcome (a failed
         * query, or an event the worker skipped): the write stays accepted. */
        if (err || (res && PQresultStatus(res) != PGRES_TUPLES_OK))
            log_warn(r->rid, "outcome query failed: %s", err ? err : PQresultErrorMessage(res));
        answer_accepted(r);
        return;
    }
    status = PQgetvalue(res, 0, 0);
    if (strcmp(status, "rejected") == 0) {
        answer_rejected(r, PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1),
                        PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2));
        return;
    }
    if (PQgetisnull(res, 0, 3)) {
        answer_accepted(r); /* applied, but the row is gone already (deleted since) */
        return;
    }
    body = r->w.kind->resource(res);
    position_format(&r->w.pos, pos);
    json_object_set_new(body, "event_id", json_string(r->w.event_id));
    json_object_set_new(body, "position", json_string(pos));
    add_write_headers(r);
    req_reply(r, 201, body);
}

static void waited(struct req *r, enum replwait_status st)
{
    const char *params[8];
    int n;

    if (st != REPLWAIT_REACHED) {
        answer_accepted(r);
        return;
    }
    n = r->w.kind->outcome_params(r, params);
    if (req_query(r, r->w.kind->outcome_sql, n, params, outcome_read) != 0)
        answer_accepted(r);
}

void writes_delivered(void *opaque, rd_kafka_resp_err_t err, int32_t partition, int64_t offset)
{
    struct req *r = opaque;

    counters_produce(r->app->stats, (double)(ingest_now_us() - r->w.produced_us) / 1e6, !err);
    if (req_live(r)) {
        if (err) {
            log_warn(r->rid, "event %s not acknowledged: %s", r->w.event_id, rd_kafka_err2str(err));
            req_unavailable(r, "the event log did not acknowledge the write; retry it with the "
                               "same Idempotency-Key");
        } else {
            r->w.pos.partition = partition;
            r->w.pos.offset = offset;
            if (r->w.wait_secs > 0) {
                int64_t until = replwait_now_ms() + r->w.wait_secs * 1000;
                if (until > r->deadline_ms - 100)
                    until = r->deadline_ms - 100;
                req_wait(r, &r->w.pos, until, waited);
            } else {
                answer_accepted(r);
            }
        }
    }
    req_release(r); /* the reference kprod_send's message held */
}

/* ---- producing ------------------------------------------------------------------------- */

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
    const char *headers[] = {"request-id",
                             r->rid,
                             "ce_type",
                             r->w.kind->type,
                             "content-type",
                             "application/cloudevents+json",
                             NULL};
    rd_kafka_resp_err_t err;
    struct timeval tv = {0, SEND_RETRY_MS * 1000};

    req_hold(r); /* the delivery report's; dropped here if there will be none */
    r->w.produced_us = ingest_now_us();
    err =
        kprod_send(r->app->prod, r->app->cfg.topic, r->w.subject, r->w.value, r->w.len, headers, r);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        r->w.value = NULL; /* librdkafka frees it */
        return;
    }
    req_release(r);
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && ++r->w.attempts < SEND_ATTEMPTS) {
        kprod_poll(r->app->prod);
        if (!r->retry_ev)
            r->retry_ev = evtimer_new(r->app->base, retry_cb, r);
        if (r->retry_ev && evtimer_add(r->retry_ev, &tv) == 0)
            return;
    }
    log_warn(r->rid, "cannot produce event %s: %s", r->w.event_id, rd_kafka_err2str(err));
    req_unavailable(r, "the event log is not accepting writes right now");
}

/* Builds the envelope around r->w.data and produces it. */
static void produce(struct req *r)
{
    struct evt e;
    const char *tp = req_header(r, "traceparent"), *at = req_header(r, "Diary-Occurred-At");

    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "%s", r->w.event_id);
    snprintf(e.type, sizeof(e.type), "%s", r->w.kind->type);
    snprintf(e.subject, sizeof(e.subject), "%s", r->w.subject);
    snprintf(e.source, sizeof(e.source), "%s", r->app->cfg.source);
    evt_time_now(e.time);
    snprintf(e.requestid, sizeof(e.requestid), "%s", r->rid);
    if (hdr_traceparent_ok(tp) && strlen(tp) < sizeof(e.traceparent))
        snprintf(e.traceparent, sizeof(e.traceparent), "%s", tp);
    if (hdr_rfc3339_ok(at))
        snprintf(e.occurredat, sizeof(e.occurredat), "%s", at);
    snprintf(e.clientaddr, sizeof(e.clientaddr), "%s", r->peer);
    e.ifmatch = r->w.ifmatch;
    e.data = r->w.data;
    r->w.value = evt_serialize(&e, &r->w.len);
    json_decref(r->w.data); /* the envelope is all that goes on */
    r->w.data = NULL;
    if (!r->w.value) {
        req_unavailable(r, "out of memory");
        return;
    }
    try_send(r);
}

/* ---- common preparation ---------------------------------------------------------------- */

/* Reads Prefer and Idempotency-Key. False when it answered (a bad header). */
static bool prepare(struct req *r, const struct write_kind *kind, const char **idem_key)
{
    long secs;
    const char *key = req_header(r, "Idempotency-Key");

    r->w.kind = kind;
    if (hdr_prefer_wait(req_header(r, "Prefer"), &secs) && secs > 0 && r->app->cfg.max_wait > 0)
        r->w.wait_secs = secs < r->app->cfg.max_wait ? secs : r->app->cfg.max_wait;
    if (key && !hdr_idempotency_key_ok(key)) {
        req_invalid(r, "Idempotency-Key", "must be 1 to 255 visible ASCII characters");
        return false;
    }
    *idem_key = key;
    return true;
}

/* The event id (derived from parts when the client gave an Idempotency-Key, else a fresh
 * UUIDv7) and the id of the row it creates. */
static void make_ids(struct req *r, const char *const *parts, int nparts, bool derived)
{
    diary_uuid_t ev, child;
    struct timeval tv;

    if (derived) {
        uuid_derive(&ev, "event", parts, nparts);
    } else {
        gettimeofday(&tv, NULL);
        uuid_v7(&ev, (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000);
    }
    uuid_format(&ev, r->w.event_id);
    uuid_child(&child, &ev, r->w.kind->label);
    uuid_format(&child, r->w.resource_id);
}

static json_t *body_get(const struct req *r, const char *key)
{
    return json_incref(json_object_get(r->body, key));
}

/* ---- POST /v1/users -------------------------------------------------------------------- */

static void user_hashed(struct req *r, enum hashpool_status st, const char *hash)
{
    if (st != HASHPOOL_OK) {
        req_unavailable(r, "the password could not be hashed");
        return;
    }
    r->w.data = json_pack("{s:s, s:o, s:o, s:s}", "user_id", r->w.resource_id, "email",
                          body_get(r, "email"), "name", body_get(r, "name"), "password_hash", hash);
    produce(r);
}

void writes_user_create(struct req *r)
{
    const char *key, *email = json_string_value(json_object_get(r->body, "email"));
    char lower[256];
    size_t i;

    if (!prepare(r, &kind_user, &key))
        return;
    for (i = 0; email[i] && i < sizeof(lower) - 1; i++)
        lower[i] = (char)tolower((unsigned char)email[i]);
    lower[i] = '\0';
    {
        const char *parts[] = {"register", key ? key : "", lower};
        make_ids(r, parts, 3, key != NULL);
    }
    /* A new user's events are about the user: subject and key are the new id. */
    snprintf(r->w.subject, sizeof(r->w.subject), "%s", r->w.resource_id);
    if (req_hash(r, json_string_value(json_object_get(r->body, "password")), user_hashed) != 0)
        req_unavailable(r, "too many passwords are being hashed; retry shortly");
}

/* ---- POST /v1/foods -------------------------------------------------------------------- */

void writes_food_create(struct req *r)
{
    const char *key;

    if (!prepare(r, &kind_food, &key))
        return;
    {
        const char *parts[] = {r->user, key ? key : ""};
        make_ids(r, parts, 2, key != NULL);
    }
    snprintf(r->w.subject, sizeof(r->w.subject), "%s", r->user);
    r->w.data =
        json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "food_id", r->w.resource_id, "name",
                  body_get(r, "name"), "calories_per_100g", body_get(r, "calories_per_100g"),
                  "protein_per_100g", body_get(r, "protein_per_100g"), "carbs_per_100g",
                  body_get(r, "carbs_per_100g"), "fat_per_100g", body_get(r, "fat_per_100g"));
    produce(r);
}

/* ---- PUT /v1/diary/{date}/{meal}/{food_id} --------------------------------------------- */

void writes_entry_set(struct req *r)
{
    const char *key, *im = req_header(r, "If-Match");

    if (!prepare(r, &kind_entry, &key))
        return;
    if (im && hdr_if_match(im, &r->w.ifmatch) != 0) {
        req_invalid(r, "If-Match", "must be one version tag, \"N\" or W/\"N\"");
        return;
    }
    snprintf(r->w.date, sizeof(r->w.date), "%s", route_param(&r->params, "date"));
    snprintf(r->w.meal, sizeof(r->w.meal), "%s", route_param(&r->params, "meal"));
    /* Lower-case, so that the natural key matches what the database stores. */
    snprintf(r->w.food_id, sizeof(r->w.food_id), "%s", route_param(&r->params, "food_id"));
    for (char *p = r->w.food_id; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    {
        const char *parts[] = {r->user, key ? key : ""};
        make_ids(r, parts, 2, key != NULL);
    }
    snprintf(r->w.subject, sizeof(r->w.subject), "%s", r->user);
    r->w.data =
        json_pack("{s:s, s:s, s:s, s:s, s:o}", "entry_id", r->w.resource_id, "date", r->w.date,
                  "meal_type", r->w.meal, "food_id", r->w.food_id, "amount", body_get(r, "amount"));
    produce(r);
}
