#include "revoke.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "revset.h"

#define QUERY_TIMEOUT_MS 5000
#define OVERLAP_SECS     "10"  /* re-read of the delta window: longer than a worker transaction */
#define STALE_MS         10000 /* no successful refresh for this long: not ready */
#define PRUNE_EVERY_S    60
#define DELETED          INT64_MAX /* the value of a deleted user: every token is refused */

/* Rows of both queries: kind ('s' session, 'p' password, 'd' deleted, 'h' high-water mark),
 * id, value (session expiry in unix seconds, or tokens_valid_after in unix microseconds),
 * and when the replica applied it (unix microseconds). */
static const char load_sql[] =
    "SELECT 's', session_id::text, extract(epoch FROM expires_at)::bigint, NULL::bigint "
    "FROM revoked_sessions WHERE expires_at > now() "
    "UNION ALL "
    "SELECT 'p', id::text, (extract(epoch FROM tokens_valid_after) * 1000000)::bigint, NULL "
    "FROM users WHERE tokens_valid_after > now() - make_interval(secs => $1::float8) "
    "UNION ALL "
    "SELECT 'd', user_id::text, NULL, (extract(epoch FROM applied_at) * 1000000)::bigint "
    "FROM processed_events WHERE type = 'diary.user.deleted.v1' AND status = 'applied' "
    "AND applied_at > now() - make_interval(secs => $1::float8) "
    "UNION ALL "
    "SELECT 'h', NULL, NULL, (extract(epoch FROM now()) * 1000000)::bigint";

static const char delta_sql[] =
    "WITH ev AS (SELECT type, user_id, applied_at FROM processed_events "
    "WHERE type IN ('diary.session.revoked.v1', 'diary.user.password_changed.v1', "
    "'diary.user.deleted.v1') AND status = 'applied' "
    "AND applied_at > to_timestamp($1::float8 / 1000000) - interval '" OVERLAP_SECS " seconds') "
    "SELECT 's', rs.session_id::text, extract(epoch FROM rs.expires_at)::bigint, "
    "(extract(epoch FROM ev.applied_at) * 1000000)::bigint "
    "FROM ev JOIN revoked_sessions rs ON rs.user_id = ev.user_id AND rs.expires_at > now() "
    "WHERE ev.type = 'diary.session.revoked.v1' "
    "UNION ALL "
    "SELECT 'p', u.id::text, (extract(epoch FROM u.tokens_valid_after) * 1000000)::bigint, "
    "(extract(epoch FROM ev.applied_at) * 1000000)::bigint "
    "FROM ev JOIN users u ON u.id = ev.user_id AND u.tokens_valid_after IS NOT NULL "
    "WHERE ev.type = 'diary.user.password_changed.v1' "
    "UNION ALL "
    "SELECT 'd', ev.user_id::text, NULL, (extract(epoch FROM ev.applied_at) * 1000000)::bigint "
    "FROM ev WHERE ev.type = 'diary.user.deleted.v1'";

/* The query's own state, so that an answer arriving after revoke_destroy finds rv NULL. */
struct rv_token {
    revoke_t *rv;
};

struct revoke {
    pgpool_t *pg;
    struct event *tick;
    revset_t *sessions; /* session id -> 0, expiring with the token */
    revset_t *users;    /* user id -> tokens_valid_after (us) or DELETED */
    long ttl;
    bool loaded;
    int64_t hwm_us;     /* the latest applied_at seen (unix us) */
    int64_t last_ok_ms; /* monotonic */
    int64_t last_prune; /* unix seconds */
    struct rv_token *inflight;
    char detail[200], logged[200];
};

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put_session(revoke_t *rv, const diary_uuid_t *id, int64_t expires_at)
{
    if (revset_put(rv->sessions, id, 0, expires_at) != 0)
        log_error(NULL, "revocations: out of memory noting a session");
}

static void put_user(revoke_t *rv, const diary_uuid_t *id, int64_t valid_after_us)
{
    /* Once every token issued before the cut-off has expired, the entry is moot. */
    int64_t now = (int64_t)time(NULL), until = valid_after_us == DELETED
                                                   ? now + rv->ttl + 60
                                                   : valid_after_us / 1000000 + rv->ttl + 1;

    if (revset_put(rv->users, id, valid_after_us, until) != 0)
        log_error(NULL, "revocations: out of memory noting a user");
}

/* Applies the rows of either query; false when one is malformed. */
static bool apply_rows(revoke_t *rv, PGresult *res)
{
    for (int i = 0; i < PQntuples(res); i++) {
        const char *kind = PQgetvalue(res, i, 0);
        diary_uuid_t id;
        int64_t value = PQgetisnull(res, i, 2) ? 0 : strtoll(PQgetvalue(res, i, 2), NULL, 10);
        int64_t at = PQgetisnull(res, i, 3) ? 0 : strtoll(PQgetvalue(res, i, 3), NULL, 10);

        if (at > rv->hwm_us)
            rv->hwm_us = at;
        if (kind[0] == 'h')
            continue;
        if (uuid_parse(PQgetvalue(res, i, 1), &id) != 0)
            return false;
        switch (kind[0]) {
        case 's':
            put_session(rv, &id, value);
            break;
        case 'p':
            put_user(rv, &id, value);
            break;
        case 'd':
            put_user(rv, &id, DELETED);
            break;
        default:
            return false;
        }
    }
    return true;
}

static void query_cb(PGresult *res, const char *err, void *arg)
{
    struct rv_token *t = arg;
    revoke_t *rv = t->rv;
    bool first;

    free(t);
    if (!rv)
        return;
    rv->inflight = NULL;
    first = !rv->loaded;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || !apply_rows(rv, res)) {
        snprintf(rv->detail, sizeof(rv->detail), "%s failed: %s", first ? "load" : "refresh",
                 err   ? err
                 : res ? PQresultErrorMessage(res)
                       : "malformed row");
        rv->detail[strcspn(rv->detail, "\n")] = '\0';
        /* Logged when it changes, not at every tick of a long outage. */
        if (strcmp(rv->detail, rv->logged) != 0)
            log_warn(NULL, "revocations: %s", rv->detail);
        snprintf(rv->logged, sizeof(rv->logged), "%s", rv->detail);
        return;
    }
    rv->loaded = true;
    rv->last_ok_ms = mono_ms();
    rv->logged[0] = '\0';
    snprintf(rv->detail, sizeof(rv->detail), "%zu revoked sessions, %zu users with a cut-off",
             revset_count(rv->sessions), revset_count(rv->users));
    if (first)
        log_info(NULL, "revocations loaded: %s", rv->detail);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    revoke_t *rv = arg;
    char p1[32];
    const char *params[1] = {p1};
    struct rv_token *t;
    int64_t now = (int64_t)time(NULL);

    if (now - rv->last_prune >= PRUNE_EVERY_S) {
        revset_prune(rv->sessions, now);
        revset_prune(rv->users, now);
        rv->last_prune = now;
    }
    if (rv->inflight)
        return;
    t = calloc(1, sizeof(*t));
    if (!t)
        return;
    t->rv = rv;
    if (rv->loaded)
        snprintf(p1, sizeof(p1), "%lld", (long long)rv->hwm_us);
    else
        snprintf(p1, sizeof(p1), "%ld", rv->ttl);
    if (pgpool_query_timeout(rv->pg, rv->loaded ? delta_sql : load_sql, 1, params, QUERY_TIMEOUT_MS,
                             query_cb, t) != 0) {
        free(t); /* the pool is busy or away: the next tick tries again */
        return;
    }
    rv->inflight = t;
}

revoke_t *revoke_new(struct event_base *base, pgpool_t *pg, long token_ttl, int interval_ms)
{
    revoke_t *rv = calloc(1, sizeof(*rv));
    struct timeval tv = {interval_ms / 1000, (interval_ms % 1000) * 1000};

    if (!rv)
        return NULL;
    rv->pg = pg;
    rv->ttl = token_ttl;
    rv->last_prune = (int64_t)time(NULL);
    snprintf(rv->detail, sizeof(rv->detail), "not loaded yet");
    rv->sessions = revset_new();
    rv->users = revset_new();
    rv->tick = event_new(base, -1, EV_PERSIST, tick_cb, rv);
    if (!rv->sessions || !rv->users || !rv->tick || event_add(rv->tick, &tv) != 0) {
        revoke_destroy(rv);
        return NULL;
    }
    tick_cb(-1, 0, rv);
    return rv;
}

enum revoke_verdict revoke_check(const revoke_t *rv, const struct token_claims *c)
{
    int64_t v;

    if (revset_get(rv->sessions, &c->session_id, &v))
        return REVOKE_SESSION;
    if (revset_get(rv->users, &c->user_id, &v)) {
        if (v == DELETED)
            return REVOKE_USER;
        /* issued_at has whole seconds; log-in issues tokens no earlier than the cut-off
         * rounded up (reads.c), so a token from before the cut-off compares lower. */
        if (c->issued_at < v / 1000000 + (v % 1000000 != 0))
            return REVOKE_PASSWORD;
    }
    return REVOKE_OK;
}

void revoke_note_session(revoke_t *rv, const diary_uuid_t *session, int64_t expires_at)
{
    put_session(rv, session, expires_at);
}

void revoke_note_password(revoke_t *rv, const diary_uuid_t *user, int64_t valid_after_us)
{
    put_user(rv, user, valid_after_us);
}

void revoke_note_deleted(revoke_t *rv, const diary_uuid_t *user)
{
    put_user(rv, user, DELETED);
}

bool revoke_ready(const revoke_t *rv, char *detail, size_t detaillen)
{
    bool fresh = rv->loaded && mono_ms() - rv->last_ok_ms < STALE_MS;

    snprintf(detail, detaillen, "%s%s", rv->detail,
             rv->loaded && !fresh ? " (stale: no refresh in the last 10 s)" : "");
    return fresh;
}

void revoke_counts(const revoke_t *rv, size_t *sessions, size_t *users)
{
    *sessions = revset_count(rv->sessions);
    *users = revset_count(rv->users);
}

void revoke_destroy(revoke_t *rv)
{
    if (!rv)
        return;
    if (rv->inflight)
        rv->inflight->rv = NULL;
    if (rv->tick)
        event_free(rv->tick);
    revset_destroy(rv->sessions);
    revset_destroy(rv->users);
    free(rv);
}
