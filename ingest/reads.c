/* The read routes, all answered from the read replica through the async pool, and log-in
 * (which reads the user from the replica and verifies the password on the hash threads).
 * Every read is filtered by the token's user: another user's ids answer 404, exactly like
 * ids that do not exist. */
#include "ingest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "diaryday.h"
#include "log.h"

static const char user_by_email_sql[] =
    "SELECT id, password_hash FROM users WHERE lower(email) = lower($1)";

static const char food_sql[] =
    "SELECT id, name, calories_per_100g, protein_per_100g, carbs_per_100g, fat_per_100g, "
    "version, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') "
    "FROM foods WHERE id = $1::uuid AND user_id = $2::uuid";

/* One query for the whole page: the settings (NULL columns when the user has none) beside
 * each entry of the day with its food (NULL entry columns when the day is empty). */
static const char day_sql[] =
    "SELECT s.daily_calorie_goal, s.protein_percentage, s.fat_percentage, "
    "d.meal_type, d.food_id, f.name, d.amount, f.calories_per_100g, f.protein_per_100g, "
    "f.carbs_per_100g, f.fat_per_100g, d.version "
    "FROM (SELECT $1::uuid AS user_id) me "
    "LEFT JOIN user_settings s ON s.user_id = me.user_id "
    "LEFT JOIN daily_meals d ON d.user_id = me.user_id AND d.date = $2::date "
    "LEFT JOIN foods f ON f.id = d.food_id "
    "ORDER BY d.created_at, d.id";

static const char event_sql[] =
    "SELECT user_id, status, reason, problem::text, resource_id, \"partition\", \"offset\" "
    "FROM processed_events WHERE event_id = $1::uuid";

static bool result_ok(struct req *r, PGresult *res, const char *err)
{
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
        return true;
    log_warn(r->rid, "replica query failed: %s",
             err   ? err
             : res ? PQresultErrorMessage(res)
                   : "unknown error");
    req_unavailable(r, "the read replica is unavailable");
    return false;
}

static void not_found(struct req *r)
{
    req_problem(r, 404, "not-found", "no such resource", NULL);
}

/* ---- POST /v1/sessions ----------------------------------------------------------------- */

static void session_verified(struct req *r, enum hashpool_status st, const char *unused)
{
    struct token_claims c;
    char token[TOKEN_MAXLEN], expires[32];
    struct timeval tv;

    if (st == HASHPOOL_FAILED || st == HASHPOOL_SHUTDOWN) {
        req_unavailable(r, "the password could not be checked");
        return;
    }
    /* Unknown email and wrong password get the same answer, after the same work. */
    if (st != HASHPOOL_OK || !r->scratch[0] || uuid_parse(r->scratch, &c.user_id) != 0) {
        req_add_header(r, "WWW-Authenticate", "Bearer realm=\"diary\"");
        req_problem(r, 401, "unauthorized", "the email or the password is wrong", NULL);
        return;
    }
    gettimeofday(&tv, NULL);
    uuid_v7(&c.session_id, (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000);
    c.issued_at = tv.tv_sec;
    c.expires_at = tv.tv_sec + r->app->cfg.token_ttl;
    if (token_issue(r->app->cfg.token_key, &c, token, sizeof(token)) != 0) {
        req_problem(r, 500, "internal", "cannot issue a token", NULL);
        return;
    }
    hdr_rfc3339_utc(c.expires_at, expires, sizeof(expires));
    uuid_format(&c.user_id, r->user);
    req_add_header(r, "Cache-Control", "no-store");
    req_reply(
        r, 201,
        json_pack("{s:s, s:s, s:s}", "token", token, "expires_at", expires, "user_id", r->user));
}

static void session_user_read(struct req *r, PGresult *res, const char *err)
{
    const char *hash = r->app->dummy_hash;
    const char *pw = json_string_value(json_object_get(r->body, "password"));

    if (!result_ok(r, res, err))
        return;
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 1)) {
        snprintf(r->scratch, sizeof(r->scratch), "%s", PQgetvalue(res, 0, 0));
        hash = PQgetvalue(res, 0, 1);
    }
    if (req_verify(r, hash, pw, session_verified) != 0)
        req_unavailable(r, "too many log-ins are being checked; retry shortly");
}

void reads_session_create(struct req *r)
{
    const char *params[1] = {json_string_value(json_object_get(r->body, "email"))};

    if (req_query(r, user_by_email_sql, 1, params, session_user_read) != 0)
        req_unavailable(r, "the read replica is unavailable or busy");
}

/* ---- GET /v1/foods/{id} ---------------------------------------------------------------- */

static void food_read(struct req *r, PGresult *res, const char *err)
{
    char etag[32];

    if (!result_ok(r, res, err))
        return;
    if (PQntuples(res) != 1) {
        not_found(r);
        return;
    }
    snprintf(etag, sizeof(etag), "\"%s\"", PQgetvalue(res, 0, 6));
    req_add_header(r, "ETag", etag);
    req_reply(r, 200,
              json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id",
                        pgval_string(res, 0, 0), "name", pgval_string(res, 0, 1),
                        "calories_per_100g", pgval_number(res, 0, 2), "protein_per_100g",
                        pgval_number(res, 0, 3), "carbs_per_100g", pgval_number(res, 0, 4),
                        "fat_per_100g", pgval_number(res, 0, 5), "version",
                        pgval_integer(res, 0, 6), "created_at", pgval_string(res, 0, 7),
                        "updated_at", pgval_string(res, 0, 8)));
}

void reads_food_get(struct req *r)
{
    const char *params[2] = {route_param(&r->params, "id"), r->user};

    if (req_query(r, food_sql, 2, params, food_read) != 0)
        req_unavailable(r, "the read replica is unavailable or busy");
}

/* ---- GET /v1/diary/{date} -------------------------------------------------------------- */

static double num(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0.0 : strtod(PQgetvalue(res, row, col), NULL);
}

static void day_read(struct req *r, PGresult *res, const char *err)
{
    struct diaryday_settings s = {0};
    struct diaryday_item *items;
    int rows;
    size_t n = 0;

    if (!result_ok(r, res, err))
        return;
    rows = PQntuples(res);
    items = calloc(rows > 0 ? (size_t)rows : 1, sizeof(*items));
    if (!items) {
        req_unavailable(r, "out of memory");
        return;
    }
    if (rows > 0 && !PQgetisnull(res, 0, 0)) {
        s.present = true;
        s.daily_kcal = num(res, 0, 0);
        s.protein_pct = num(res, 0, 1);
        s.fat_pct = num(res, 0, 2);
    }
    for (int i = 0; i < rows; i++) {
        if (PQgetisnull(res, i, 3))
            continue;
        items[n].meal_type = PQgetvalue(res, i, 3);
        items[n].food_id = PQgetvalue(res, i, 4);
        items[n].name = PQgetvalue(res, i, 5);
        items[n].amount = num(res, i, 6);
        items[n].kcal_100g = num(res, i, 7);
        items[n].protein_100g = num(res, i, 8);
        items[n].carbs_100g = num(res, i, 9);
        items[n].fat_100g = num(res, i, 10);
        items[n].version = strtoll(PQgetvalue(res, i, 11), NULL, 10);
        n++;
    }
    req_reply(r, 200, diaryday_build(route_param(&r->params, "date"), items, n, &s));
    free(items);
}

void reads_day_get(struct req *r)
{
    const char *params[2] = {r->user, route_param(&r->params, "date")};

    if (req_query(r, day_sql, 2, params, day_read) != 0)
        req_unavailable(r, "the read replica is unavailable or busy");
}

/* ---- GET /v1/events/{id} --------------------------------------------------------------- */

static void event_read(struct req *r, PGresult *res, const char *err)
{
    char id[UUID_STRLEN], pos[POSITION_STRLEN];
    struct position p;
    json_t *body, *problem = NULL;

    if (!result_ok(r, res, err))
        return;
    snprintf(id, sizeof(id), "%s", route_param(&r->params, "id"));
    for (char *c = id; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    if (PQntuples(res) == 0) {
        /* Not recorded yet. Ingest cannot tell an event still on its way from one that never
         * was; a well-formed id answers pending (documented in docs/api.md). */
        req_reply(r, 200, json_pack("{s:s, s:s}", "event_id", id, "status", "pending"));
        return;
    }
    if (PQgetisnull(res, 0, 0) || strcmp(PQgetvalue(res, 0, 0), r->user) != 0) {
        not_found(r);
        return;
    }
    p.partition = (int32_t)strtol(PQgetvalue(res, 0, 5), NULL, 10);
    p.offset = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
    position_format(&p, pos);
    if (!PQgetisnull(res, 0, 3))
        problem = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
    body = json_pack("{s:s, s:o, s:o, s:o, s:o, s:s}", "event_id", id, "status",
                     pgval_string(res, 0, 1), "reason", pgval_string(res, 0, 2), "problem",
                     problem ? problem : json_null(), "resource_id", pgval_string(res, 0, 4),
                     "position", pos);
    req_reply(r, 200, body);
}

void reads_event_get(struct req *r)
{
    const char *params[1] = {route_param(&r->params, "id")};

    if (req_query(r, event_sql, 1, params, event_read) != 0)
        req_unavailable(r, "the read replica is unavailable or busy");
}
