/* Token revocation without a database round trip per request. Tokens are verified by their
 * MAC (shared/token.c); what revokes one lives in the database, and this module keeps it in
 * memory:
 *   - revoked sessions (log-out, diary.session.revoked.v1: revoked_sessions rows not yet
 *     expired), by session id;
 *   - per user, the time before which tokens no longer count (password change,
 *     diary.user.password_changed.v1 with revoke: users.tokens_valid_after), and users that
 *     were deleted (diary.user.deleted.v1), whose tokens all stop.
 * At start one query loads what is still relevant (entries older than the token lifetime
 * cannot matter: every token issued before them has expired). Then, every interval, a delta
 * query reads the events of those three types that the replica applied since the last
 * high-water mark (processed_events.applied_at, re-reading an overlap so that a transaction
 * that committed late is not missed) and the rows they changed. A revocation therefore takes
 * effect on a node about one interval after the replica applied it; the node that produced
 * it notes it at once (revoke_note_*). Until the first load succeeded revoke_ready is false
 * and /readyz says so. */
#ifndef INGEST_REVOKE_H
#define INGEST_REVOKE_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgpool.h"
#include "token.h"

typedef struct revoke revoke_t;

enum revoke_verdict {
    REVOKE_OK,
    REVOKE_SESSION,  /* the session was logged out */
    REVOKE_PASSWORD, /* the password changed after the token was issued */
    REVOKE_USER,     /* the account was deleted */
};

/* token_ttl is the tokens' lifetime in seconds; interval_ms the delta period. NULL on
 * ENOMEM. The first load starts at once. */
revoke_t *revoke_new(struct event_base *base, pgpool_t *pg, long token_ttl, int interval_ms);

/* What revokes the token with these claims, if anything. */
enum revoke_verdict revoke_check(const revoke_t *rv, const struct token_claims *c);

/* Notes a revocation this node produced, before the replica has it. valid_after_us is unix
 * microseconds; expires_at unix seconds. */
void revoke_note_session(revoke_t *rv, const diary_uuid_t *session, int64_t expires_at);
void revoke_note_password(revoke_t *rv, const diary_uuid_t *user, int64_t valid_after_us);
void revoke_note_deleted(revoke_t *rv, const diary_uuid_t *user);

/* True once the first load succeeded; detail says what the last attempt did. */
bool revoke_ready(const revoke_t *rv, char *detail, size_t detaillen);

/* Entries held, for /metrics. */
void revoke_counts(const revoke_t *rv, size_t *sessions, size_t *users);

/* Frees rv; a query still in flight is detached. NULL is a no-op. */
void revoke_destroy(revoke_t *rv);

#endif
