/* The read routes, all answered from the read replica through the async pool (or from the
 * primary, when a Diary-Min-Position wait fell back to it: server.c), and log-in (which reads
 * the user from the replica and verifies the password on the hash threads). Every read is
 * filtered by the token's user: another user's ids answer 404, exactly like ids that do not
 * exist. */
#include "ingest.h"

#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "diaryday.h"
#include "log.h"
#include "validate.h"

#define FOODS_DEFAULT_LIMIT 20
#define CURSOR_MAX          1024

/* Timestamps as the API shows them. */
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static const char user_by_email_sql[] =
    "SELECT id, password_hash, (extract(epoch FROM tokens_valid_after) * 1000000)::bigint "
    "FROM users WHERE lower(email) = lower($1)";

static const char me_sql[] = "SELECT id, email, name, version, " TS("created_at") ", " TS(
    "updated_at") " FROM users WHERE id = $1::uuid";

static const char settings_sql[] =
    "SELECT unit_system, daily_calorie_goal, protein_percentage, fat_percentage, version, " TS(
        "created_at") ", " TS("updated_at") " FROM user_settings WHERE user_id = $1::uuid";

#define FOOD_COLS                                                                                  \
    "id, name, calories_per_100g, protein_per_100g, carbs_per_100g, fat_per_100g, version, " TS(   \
        "created_at") ", " TS("updated_at")

static const char food_sql[] =
    "SELECT " FOOD_COLS " FROM foods WHERE id = $1::uuid AND user_id = $2::uuid";

/* A page of the user's foods by lower-cased name, then id: keyset pagination that the index
 * (user_id, lower(name) text_pattern_ops, id) serves in order (hence the pattern operators).
 * $2 is the escaped prefix; $3, $4 the last name and id of the previous page, or NULL. */
static const char foods_sql[] =
    "SELECT " FOOD_COLS ", lower(name) FROM foods "
    "WHERE user_id = $1::uuid AND lower(name) LIKE (lower($2) || '%') ESCAPE '\\' "
    "AND ($3::text IS NULL OR lower(name) ~>~ $3 OR (lower(name) = $3 AND id > $4::uuid)) "
    "ORDER BY lower(name) USING ~<~, id LIMIT $5::int";

/* One query for the whole page: the settings (NULL columns when the user has none) beside
 * each entry of the day with its food (NULL entry columns when the day is empty). */
static const char day_sql[] =
    "SELECT s.daily_calorie_goal, s.protein_percentage, s.fat_percentage, "
    "d.meal_type, d.food_id, f.name, d.amount, f.calories_per_100g, f.protein_per_100g, "
    "f.carbs_per_100g, f.fat_per_100g, d.version, d.id "
    "FROM (SELECT $1::uuid AS user_id) me "
    "LEFT JOIN user_settings s ON s.user_id = me.user_id "
    "LEFT JOIN daily_meals d ON d.user_id = me.user_id AND d.date = $2::date "
    "LEFT JOIN foods f ON f.id = d.food_id "
    "ORDER BY d.created_at, d.id";

/* The same for a range of days, summed per day in diaryday.c. */
static const char days_sql[] =
    "SELECT s.daily_calorie_goal, s.protein_percentage, s.fat_percentage, d.date::text, "
    "d.amount, f.calories_per_100g, f.protein_per_100g, f.carbs_per_100g, f.fat_per_100g "
    "FROM (SELECT $1::uuid AS user_id) me "
    "LEFT JOIN user_settings s ON s.user_id = me.user_id "
    "LEFT JOIN (daily_meals d JOIN foods f ON f.id = d.food_id) "
    "ON d.user_id = me.user_id AND d.date BETWEEN $2::date AND $3::date";

static const char weights_sql[] = "SELECT id, date::text, weight, version, " TS(
    "created_at") ", " TS("updated_at") " FROM weight_entries WHERE user_id = $1::uuid "
                                        "AND date BETWEEN $2::date AND $3::date ORDER BY date";

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

static void run(struct req *r, const char *sql, int n, const char *const *params, req_query_cb cb)
{
    if (req_query(r, sql, n, params, cb) != 0)
        req_unavailable(r, "the read replica is unavailable or busy");
}

static void etag(struct req *r, const char *version)
{
    char tag[32];

    snprintf(tag, sizeof(tag), "\"%s\"", version);
    req_add_header(r, "ETag", tag);
}

static double num(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0.0 : strtod(PQgetvalue(res, row, col), NULL);
}

/* ---- POST /v1/sessions ----------------------------------------------------------------- */

/* The token: issued no earlier than the user's token cut-off rounded up to the second, so
 * that revoke_check (which compares whole seconds) never refuses a token issued after a
 * password change. */
static void issue_token(struct req *r)
{
    struct token_claims c;
    char token[TOKEN_MAXLEN], expires[32];
    struct timeval tv;
    int64_t cutoff = r->valid_after_us / 1000000 + (r->valid_after_us % 1000000 != 0);

    if (uuid_parse(r->scratch, &c.user_id) != 0) {
        req_problem(r, 500, "internal", "cannot issue a token", NULL);
        return;
    }
    gettimeofday(&tv, NULL);
    uuid_v7(&c.session_id, (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000);
    c.issued_at = tv.tv_sec > cutoff ? tv.tv_sec : cutoff;
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

static void rehashed(struct req *r, enum hashpool_status st, const char *hash)
{
    if (st != HASHPOOL_OK) {
        issue_token(r); /* the old hash stays until the next log-in */
        return;
    }
    writes_rehash(r, hash, issue_token);
}

static void session_verified(struct req *r, enum hashpool_status st, const char *unused)
{
    if (st == HASHPOOL_FAILED || st == HASHPOOL_SHUTDOWN) {
        req_unavailable(r, "the password could not be checked");
        return;
    }
    /* Unknown email and wrong password get the same answer, after the same work. */
    if (st != HASHPOOL_OK || !r->scratch[0]) {
        req_add_header(r, "WWW-Authenticate", "Bearer realm=\"diary\"");
        req_problem(r, 401, "unauthorized", "the email or the password is wrong", NULL);
        return;
    }
    /* A legacy (bcrypt) hash is replaced by argon2id now that the password is known. */
    if (r->legacy_hash &&
        req_hash(r, json_string_value(json_object_get(r->body, "password")), rehashed) == 0)
        return;
    issue_token(r);
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
        r->legacy_hash = password_needs_rehash(hash);
        if (!PQgetisnull(res, 0, 2))
            r->valid_after_us = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    }
    if (req_verify(r, hash, pw, session_verified) != 0)
        req_unavailable(r, "too many log-ins are being checked; retry shortly");
}

void reads_session_create(struct req *r)
{
    const char *params[1] = {json_string_value(json_object_get(r->body, "email"))};

    run(r, user_by_email_sql, 1, params, session_user_read);
}

/* ---- GET /v1/me, GET /v1/me/settings ---------------------------------------------------- */

static void me_read(struct req *r, PGresult *res, const char *err)
{
    if (!result_ok(r, res, err))
        return;
    if (PQntuples(res) != 1) {
        req_not_found(r);
        return;
    }
    etag(r, PQgetvalue(res, 0, 3));
    req_reply(r, 200,
              json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "id", pgval_string(res, 0, 0), "email",
                        pgval_string(res, 0, 1), "name", pgval_string(res, 0, 2), "version",
                        pgval_integer(res, 0, 3), "created_at", pgval_string(res, 0, 4),
                        "updated_at", pgval_string(res, 0, 5)));
}

void reads_me_get(struct req *r)
{
    const char *params[1] = {r->user};

    run(r, me_sql, 1, params, me_read);
}

/* Without a row the defaults of the schema apply, at version 0 (and without an ETag: there
 * is nothing to match yet). */
static void settings_read(struct req *r, PGresult *res, const char *err)
{
    if (!result_ok(r, res, err))
        return;
    if (PQntuples(res) != 1) {
        req_reply(r, 200,
                  json_pack("{s:s, s:i, s:f, s:f, s:i, s:n, s:n}", "unit_system", "metric",
                            "daily_calorie_goal", (int)DIARYDAY_DEFAULT_KCAL, "protein_percentage",
                            DIARYDAY_DEFAULT_PROTEIN_PCT, "fat_percentage",
                            DIARYDAY_DEFAULT_FAT_PCT, "version", 0, "created_at", "updated_at"));
        return;
    }
    etag(r, PQgetvalue(res, 0, 4));
    req_reply(r, 200,
              json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "unit_system",
                        pgval_string(res, 0, 0), "daily_calorie_goal", pgval_integer(res, 0, 1),
                        "protein_percentage", pgval_number(res, 0, 2), "fat_percentage",
                        pgval_number(res, 0, 3), "version", pgval_integer(res, 0, 4), "created_at",
                        pgval_string(res, 0, 5), "updated_at", pgval_string(res, 0, 6)));
}

void reads_settings_get(struct req *r)
{
    const char *params[1] = {r->user};

    run(r, settings_sql, 1, params, settings_read);
}

/* ---- foods ------------------------------------------------------------------------------ */

static json_t *food_json(const PGresult *res, int row)
{
    return json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", pgval_string(res, row, 0), "name",
        pgval_string(res, row, 1), "calories_per_100g", pgval_number(res, row, 2),
        "protein_per_100g", pgval_number(res, row, 3), "carbs_per_100g", pgval_number(res, row, 4),
        "fat_per_100g", pgval_number(res, row, 5), "version", pgval_integer(res, row, 6),
        "created_at", pgval_string(res, row, 7), "updated_at", pgval_string(res, row, 8));
}

static void food_read(struct req *r, PGresult *res, const char *err)
{
    if (!result_ok(r, res, err))
        return;
    if (PQntuples(res) != 1) {
        req_not_found(r);
        return;
    }
    etag(r, PQgetvalue(res, 0, 6));
    req_reply(r, 200, food_json(res, 0));
}

void reads_food_get(struct req *r)
{
    const char *params[2] = {route_param(&r->params, "id"), r->user};

    run(r, food_sql, 2, params, food_read);
}

/* The cursor is opaque to clients: base64url of the JSON array [lower-cased name, id] of
 * the last food of the page. */
static char *cursor_encode(const char *name, const char *id)
{
    json_t *a = json_pack("[s, s]", name, id);
    char *text = json_dumps(a, JSON_COMPACT), *out = NULL;

    json_decref(a);
    if (text) {
        size_t n =
            sodium_base64_ENCODED_LEN(strlen(text), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        out = malloc(n);
        if (out)
            sodium_bin2base64(out, n, (const unsigned char *)text, strlen(text),
                              sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        free(text);
    }
    return out;
}

/* Fills name (of namelen bytes) and id from a cursor; false when it is not one of ours. */
static bool cursor_decode(const char *cursor, char *name, size_t namelen, char id[UUID_STRLEN])
{
    unsigned char raw[CURSOR_MAX];
    size_t len;
    json_t *a;
    bool ok;

    if (sodium_base642bin(raw, sizeof(raw) - 1, cursor, strlen(cursor), NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return false;
    a = json_loadb((const char *)raw, len, 0, NULL);
    ok = json_is_array(a) && json_array_size(a) == 2 && json_is_string(json_array_get(a, 0)) &&
         uuid_valid(json_string_value(json_array_get(a, 1))) &&
         json_string_length(json_array_get(a, 0)) < namelen;
    if (ok) {
        snprintf(name, namelen, "%s", json_string_value(json_array_get(a, 0)));
        snprintf(id, UUID_STRLEN, "%s", json_string_value(json_array_get(a, 1)));
    }
    json_decref(a);
    return ok;
}

static long foods_limit(const struct req *r)
{
    json_t *l = json_object_get(r->query, "limit");
    return l ? (long)json_integer_value(l) : FOODS_DEFAULT_LIMIT;
}

static void foods_read(struct req *r, PGresult *res, const char *err)
{
    long limit = foods_limit(r);
    int rows;
    json_t *items;
    char *next = NULL;

    if (!result_ok(r, res, err))
        return;
    rows = PQntuples(res);
    items = json_array();
    for (int i = 0; i < rows && i < limit; i++)
        json_array_append_new(items, food_json(res, i));
    if (rows > limit)
        next =
            cursor_encode(PQgetvalue(res, (int)limit - 1, 9), PQgetvalue(res, (int)limit - 1, 0));
    req_reply(r, 200,
              json_pack("{s:o, s:o}", "items", items, "next_cursor",
                        next ? json_string(next) : json_null()));
    free(next);
}

void reads_foods_list(struct req *r)
{
    const char *q = json_string_value(json_object_get(r->query, "q"));
    const char *cursor = json_string_value(json_object_get(r->query, "cursor"));
    char pattern[2 * 255 + 1], name[CURSOR_MAX], id[UUID_STRLEN], limit[24];
    const char *params[5] = {r->user, pattern, NULL, NULL, limit};
    size_t n = 0;

    /* The prefix, with LIKE's own characters escaped. */
    for (const char *p = q ? q : ""; *p && n < sizeof(pattern) - 2; p++) {
        if (*p == '%' || *p == '_' || *p == '\\')
            pattern[n++] = '\\';
        pattern[n++] = *p;
    }
    pattern[n] = '\0';
    if (cursor) {
        if (!cursor_decode(cursor, name, sizeof(name), id)) {
            req_invalid(r, "cursor", "is not a cursor this API gave out");
            return;
        }
        params[2] = name;
        params[3] = id;
    }
    /* One more than the page tells whether there is a next page. */
    snprintf(limit, sizeof(limit), "%ld", foods_limit(r) + 1);
    run(r, foods_sql, 5, params, foods_read);
}

/* ---- GET /v1/diary/{date}, GET /v1/diary?from=&to= -------------------------------------- */

/* The settings columns 0-2 of the first row. */
static void settings_of(const PGresult *res, struct diaryday_settings *s)
{
    memset(s, 0, sizeof(*s));
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
        s->present = true;
        s->daily_kcal = num(res, 0, 0);
        s->protein_pct = num(res, 0, 1);
        s->fat_pct = num(res, 0, 2);
    }
}

static void day_read(struct req *r, PGresult *res, const char *err)
{
    struct diaryday_settings s;
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
    settings_of(res, &s);
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
        items[n].id = PQgetvalue(res, i, 12);
        n++;
    }
    req_reply(r, 200, diaryday_build(route_param(&r->params, "date"), items, n, &s));
    free(items);
}

void reads_day_get(struct req *r)
{
    const char *params[2] = {r->user, route_param(&r->params, "date")};

    run(r, day_sql, 2, params, day_read);
}

static void days_read(struct req *r, PGresult *res, const char *err)
{
    struct diaryday_settings s;
    struct diaryday_row *rows;
    long from = 0, to = 0;
    int nrows;
    size_t n = 0;
    json_t *page;

    if (!result_ok(r, res, err))
        return;
    nrows = PQntuples(res);
    rows = calloc(nrows > 0 ? (size_t)nrows : 1, sizeof(*rows));
    if (!rows) {
        req_unavailable(r, "out of memory");
        return;
    }
    settings_of(res, &s);
    for (int i = 0; i < nrows; i++) {
        if (PQgetisnull(res, i, 3) || !validate_date_days(PQgetvalue(res, i, 3), &rows[n].day))
            continue;
        rows[n].amount = num(res, i, 4);
        rows[n].kcal_100g = num(res, i, 5);
        rows[n].protein_100g = num(res, i, 6);
        rows[n].carbs_100g = num(res, i, 7);
        rows[n].fat_100g = num(res, i, 8);
        n++;
    }
    /* server.c checked the range (schema/api.yaml, date.range). */
    (void)validate_date_days(json_string_value(json_object_get(r->query, "from")), &from);
    (void)validate_date_days(json_string_value(json_object_get(r->query, "to")), &to);
    page = diaryday_summaries(from, to, rows, n, &s);
    free(rows);
    if (!page) {
        req_unavailable(r, "out of memory");
        return;
    }
    req_reply(r, 200, page);
}

static void range_params(const struct req *r, const char **params)
{
    params[0] = r->user;
    params[1] = json_string_value(json_object_get(r->query, "from"));
    params[2] = json_string_value(json_object_get(r->query, "to"));
}

void reads_days_list(struct req *r)
{
    const char *params[3];

    range_params(r, params);
    run(r, days_sql, 3, params, days_read);
}

/* ---- GET /v1/weights?from=&to= ---------------------------------------------------------- */

static void weights_read(struct req *r, PGresult *res, const char *err)
{
    json_t *items;

    if (!result_ok(r, res, err))
        return;
    items = json_array();
    for (int i = 0; i < PQntuples(res); i++)
        json_array_append_new(
            items, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o}", "id", pgval_string(res, i, 0),
                             "date", pgval_string(res, i, 1), "weight", pgval_number(res, i, 2),
                             "version", pgval_integer(res, i, 3), "created_at",
                             pgval_string(res, i, 4), "updated_at", pgval_string(res, i, 5)));
    req_reply(r, 200,
              json_pack("{s:O, s:O, s:o}", "from", json_object_get(r->query, "from"), "to",
                        json_object_get(r->query, "to"), "items", items));
}

void reads_weights_list(struct req *r)
{
    const char *params[3];

    range_params(r, params);
    run(r, weights_sql, 3, params, weights_read);
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
        req_not_found(r);
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

    run(r, event_sql, 1, params, event_read);
}
