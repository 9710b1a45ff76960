/* POST /v1/diary/batch: up to 500 diary writes of the caller (set or remove one food in one
 * meal of one day), for a client coming back online. Each item is validated on its own
 * (schema/api.yaml "diary.batch.item") and every valid one becomes its own event, of the
 * types the single routes produce, with the same ids and requesthash as the equivalent single
 * request, so that an item's idempotency_key and the Idempotency-Key of the single route name
 * the same write. An invalid item never holds back a valid one. The answer is 200 with one
 * result per item, in item order:
 *   {index, status: 202, event_id, position}          accepted
 *   {index, status: 422, errors: [{field, message}]}  invalid (or its key reused)
 *   {index, status: 201|204, event_id, position}      applied (with Prefer: wait, or a replay)
 *   {index, status: 4xx, event_id, position, problem} rejected by the worker
 *   {index, status: 503, problem}                     the broker did not take it
 * With Prefer: wait=N the node waits (up to N seconds) until the replica has applied the last
 * accepted item and reports each item's final outcome; items not applied by then stay 202. */
#include "ingest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"
#include "validate.h"

/* Outcomes by event id: the look-up before producing and the read after the wait. */
static const char outcomes_sql[] =
    "SELECT event_id::text, status, problem::text, reason, request_hash, \"partition\", "
    "\"offset\" FROM processed_events WHERE event_id = ANY($1::uuid[])";

struct batch_item {
    struct wmsg msg;
    int status;   /* 0 while undecided */
    bool produce; /* valid and not a replay: to be produced */
    bool keyed;
    bool set; /* set, else remove */
    char event_id[UUID_STRLEN];
    char requesthash[REQHASH_HEXLEN];
    struct position pos;
    bool has_pos;
    json_t *data;   /* the event's data until produced */
    json_t *errors; /* 422 */
    json_t *problem;
};

struct batch {
    size_t n;
    size_t pending; /* produced, not yet acknowledged */
    bool producing; /* the produce loop runs: acknowledgements do not finish the batch */
    long wait_secs;
    struct batch_item items[];
};

void batch_free(struct batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        json_decref(b->items[i].data);
        json_decref(b->items[i].errors);
        json_decref(b->items[i].problem);
    }
    free(b);
}

/* ---- the answer ------------------------------------------------------------------------- */

static void answer(struct req *r)
{
    struct batch *b = r->batch;
    json_t *results = json_array();
    struct position last = {-1, -1};
    char pos[POSITION_STRLEN], pref[32];

    for (size_t i = 0; i < b->n; i++) {
        struct batch_item *it = &b->items[i];
        json_t *o = json_pack("{s:I, s:i}", "index", (json_int_t)i, "status", it->status);

        if (it->event_id[0] && !it->errors)
            json_object_set_new(o, "event_id", json_string(it->event_id));
        if (it->has_pos) {
            position_format(&it->pos, pos);
            json_object_set_new(o, "position", json_string(pos));
            if (it->pos.offset > last.offset)
                last = it->pos;
        }
        if (it->errors)
            json_object_set(o, "errors", it->errors);
        if (it->problem)
            json_object_set(o, "problem", it->problem);
        json_array_append_new(results, o);
    }
    if (last.partition >= 0) {
        position_format(&last, pos);
        req_add_header(r, "Diary-Position", pos);
    }
    if (b->wait_secs > 0) {
        snprintf(pref, sizeof(pref), "wait=%ld", b->wait_secs);
        req_add_header(r, "Preference-Applied", pref);
    }
    req_reply(r, 200, json_pack("{s:o}", "results", results));
}

/* ---- outcomes --------------------------------------------------------------------------- */

/* Sets item it from a processed_events row (outcomes_sql): applied 201/204, or the problem. */
static void take_outcome(struct batch_item *it, const PGresult *res, int row)
{
    const char *problem = PQgetisnull(res, row, 2) ? NULL : PQgetvalue(res, row, 2);
    const char *reason = PQgetisnull(res, row, 3) ? NULL : PQgetvalue(res, row, 3);

    it->pos.partition = (int32_t)strtol(PQgetvalue(res, row, 5), NULL, 10);
    it->pos.offset = strtoll(PQgetvalue(res, row, 6), NULL, 10);
    it->has_pos = true;
    if (strcmp(PQgetvalue(res, row, 1), "applied") == 0) {
        it->status = it->set ? 201 : 204;
        return;
    }
    json_decref(it->problem);
    it->problem = writes_problem_object(problem, reason);
    it->status = (int)json_integer_value(json_object_get(it->problem, "status"));
}

/* "{id,id,...}" of the items select() picks, or NULL when none (or ENOMEM). */
static char *id_array(const struct batch *b, bool (*select)(const struct batch_item *it))
{
    char *out = malloc(b->n * UUID_STRLEN + 3), *p = out;

    if (!out)
        return NULL;
    *p++ = '{';
    for (size_t i = 0; i < b->n; i++) {
        if (!select(&b->items[i]))
            continue;
        if (p[-1] != '{')
            *p++ = ',';
        memcpy(p, b->items[i].event_id, UUID_STRLEN - 1);
        p += UUID_STRLEN - 1;
    }
    if (p[-1] == '{') {
        free(out);
        return NULL;
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

static bool is_keyed(const struct batch_item *it)
{
    return it->produce && it->keyed;
}

static bool is_accepted(const struct batch_item *it)
{
    return it->status == 202;
}

static void final_read(struct req *r, PGresult *res, const char *err)
{
    struct batch *b = r->batch;

    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_warn(r->rid, "batch outcome query failed: %s", err ? err : PQresultErrorMessage(res));
    } else {
        for (int row = 0; row < PQntuples(res); row++)
            for (size_t i = 0; i < b->n; i++)
                if (is_accepted(&b->items[i]) &&
                    strcmp(b->items[i].event_id, PQgetvalue(res, row, 0)) == 0)
                    take_outcome(&b->items[i], res, row);
    }
    answer(r);
}

static void waited(struct req *r, enum replwait_status st)
{
    char *ids = st == REPLWAIT_REACHED ? id_array(r->batch, is_accepted) : NULL;
    const char *params[1] = {ids};

    if (!ids || req_query(r, outcomes_sql, 1, params, final_read) != 0)
        answer(r);
    free(ids);
}

/* Every produced item has its acknowledgement: answer, or first wait for the replica. */
static void all_acked(struct req *r)
{
    struct batch *b = r->batch;
    struct position last = {-1, -1};
    int64_t until;

    for (size_t i = 0; i < b->n; i++)
        if (is_accepted(&b->items[i]) && b->items[i].pos.offset > last.offset)
            last = b->items[i].pos;
    if (b->wait_secs <= 0 || last.partition < 0) {
        answer(r);
        return;
    }
    /* One user's events share a partition (key = user id), so the last one applied means
     * every one is. */
    until = replwait_now_ms() + b->wait_secs * 1000;
    if (until > r->deadline_ms - 100)
        until = r->deadline_ms - 100;
    req_wait(r, &last, until, waited);
}

void batch_delivered(struct req *r, int item, rd_kafka_resp_err_t err, int32_t partition,
                     int64_t offset)
{
    struct batch *b = r->batch;
    struct batch_item *it = &b->items[item];

    b->pending--;
    if (err) {
        log_warn(r->rid, "batch item %d (event %s) not acknowledged: %s", item, it->event_id,
                 rd_kafka_err2str(err));
        it->status = 503;
        it->problem = json_pack("{s:s, s:s, s:i, s:s}", "type", PROBLEM_BASE "unavailable", "title",
                                "The service is unavailable; try again later.", "status", 503,
                                "detail", "the event log did not acknowledge this item; retry it");
    } else {
        it->status = 202;
        it->pos.partition = partition;
        it->pos.offset = offset;
        it->has_pos = true;
    }
    if (b->pending == 0 && !b->producing)
        all_acked(r);
}

/* ---- producing -------------------------------------------------------------------------- */

static void produce_all(struct req *r)
{
    struct batch *b = r->batch;
    static const char *const types[] = {"diary.entry.removed.v1", "diary.entry.set.v1"};

    b->producing = true;
    for (size_t i = 0; i < b->n; i++) {
        struct batch_item *it = &b->items[i];
        rd_kafka_resp_err_t err;

        if (!it->produce)
            continue;
        err = writes_send(r, &it->msg, types[it->set], it->event_id, it->data, it->requesthash);
        it->data = NULL;
        if (err) {
            it->status = 503;
            it->problem = json_pack("{s:s, s:s, s:i, s:s}", "type", PROBLEM_BASE "unavailable",
                                    "title", "The service is unavailable; try again later.",
                                    "status", 503, "detail", rd_kafka_err2str(err));
        } else {
            b->pending++;
        }
    }
    b->producing = false;
    if (b->pending == 0)
        all_acked(r);
}

/* The look-up of the keyed items: replays answer their recorded outcome, a key reused with
 * another item is refused, the rest is produced. */
static void lookup_read(struct req *r, PGresult *res, const char *err)
{
    struct batch *b = r->batch;

    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_warn(r->rid, "batch idempotency look-up failed: %s",
                 err ? err : PQresultErrorMessage(res));
        produce_all(r);
        return;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        const char *id = PQgetvalue(res, row, 0);
        const char *hash = PQgetisnull(res, row, 4) ? NULL : PQgetvalue(res, row, 4);

        for (size_t i = 0; i < b->n; i++) {
            struct batch_item *it = &b->items[i];

            if (!is_keyed(it) || strcmp(it->event_id, id) != 0)
                continue;
            it->produce = false;
            json_decref(it->data);
            it->data = NULL;
            if (hash && strcmp(hash, it->requesthash) != 0) {
                it->status = 422;
                it->errors = json_array();
                validate_add_error(it->errors, "idempotency_key",
                                   "was used before with another item");
            } else {
                take_outcome(it, res, row);
            }
        }
    }
    produce_all(r);
}

/* ---- preparing the items ---------------------------------------------------------------- */

/* Checks item i and, when valid, builds its event. */
static void prepare_item(struct req *r, size_t i, json_t *item)
{
    struct batch_item *it = &r->batch->items[i];
    const char *date, *meal, *key;
    char food[UUID_STRLEN], path[128];
    json_t *amount, *errs;

    it->msg.r = r;
    it->msg.item = (int)i;
    errs = validate_body(validate_schema("diary.batch.item"), item);
    if (errs) {
        it->status = 422;
        it->errors = errs;
        return;
    }
    date = json_string_value(json_object_get(item, "date"));
    meal = json_string_value(json_object_get(item, "meal_type"));
    key = json_string_value(json_object_get(item, "idempotency_key"));
    amount = json_object_get(item, "amount");
    snprintf(food, sizeof(food), "%s", json_string_value(json_object_get(item, "food_id")));
    for (char *p = food; *p; p++)
        *p = (char)tolower((unsigned char)*p);

    it->set = strcmp(json_string_value(json_object_get(item, "op")), "set") == 0;
    it->keyed = key != NULL;
    it->produce = true;
    writes_event_id(r->user, key, it->event_id);
    snprintf(path, sizeof(path), "/v1/diary/%s/%s/%s", date, meal, food);
    if (it->set) {
        json_t *body = json_pack("{s:O}", "amount", amount);
        diary_uuid_t ev, entry;
        char entry_id[UUID_STRLEN] = "";

        if (uuid_parse(it->event_id, &ev) == 0) {
            uuid_child(&entry, &ev, "entry");
            uuid_format(&entry, entry_id);
        }
        writes_request_hash(r->app, "PUT", path, body, it->requesthash);
        json_decref(body);
        it->data = json_pack("{s:s, s:s, s:s, s:s, s:O}", "entry_id", entry_id, "date", date,
                             "meal_type", meal, "food_id", food, "amount", amount);
    } else {
        it->data = json_pack("{s:s, s:s, s:s}", "date", date, "meal_type", meal, "food_id", food);
        writes_request_hash(r->app, "DELETE", path, it->data, it->requesthash);
    }
}

/* Two items of one batch with the same key are one write: the later one must say the same. */
static void check_repeated_keys(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        struct batch_item *it = &b->items[i];

        for (size_t j = 0; it->keyed && it->produce && j < i; j++) {
            const struct batch_item *earlier = &b->items[j];

            if (!earlier->keyed || strcmp(earlier->event_id, it->event_id) != 0 ||
                strcmp(earlier->requesthash, it->requesthash) == 0)
                continue;
            it->produce = false;
            it->status = 422;
            it->errors = json_array();
            validate_add_error(it->errors, "idempotency_key",
                               "is used by an earlier item of this batch with another content");
            json_decref(it->data);
            it->data = NULL;
            break;
        }
    }
}

void batch_post(struct req *r)
{
    json_t *items = json_object_get(r->body, "items");
    size_t n = json_array_size(items);
    struct batch *b = calloc(1, sizeof(*b) + n * sizeof(b->items[0]));
    char *ids;
    long secs;

    if (req_header(r, REQ_HDR_IDEMPOTENCY_KEY)) {
        free(b);
        req_invalid(r, "Idempotency-Key", "give each item its own idempotency_key instead");
        return;
    }
    if (!b) {
        req_unavailable(r, "out of memory");
        return;
    }
    if (writes_shed(r, r->user)) {
        free(b);
        return;
    }
    b->n = n;
    r->batch = b;
    if (hdr_prefer_wait(req_header(r, REQ_HDR_PREFER), &secs) && secs > 0 &&
        r->app->cfg.max_wait > 0)
        b->wait_secs = secs < r->app->cfg.max_wait ? secs : r->app->cfg.max_wait;
    for (size_t i = 0; i < n; i++)
        prepare_item(r, i, json_array_get(items, i));
    check_repeated_keys(b);

    ids = id_array(b, is_keyed);
    if (ids) {
        const char *params[1] = {ids};
        int rc = req_query(r, outcomes_sql, 1, params, lookup_read);

        free(ids);
        if (rc == 0)
            return;
    }
    produce_all(r);
}
