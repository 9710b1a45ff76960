/* The event envelope on diary.events: CloudEvents 1.0 structured mode (JSON) with the
 * extensions requestid, traceparent, occurredat, clientaddr, ifmatch and requesthash. Pure:
 * jansson only. The event types and their data are listed in docs/events.md. */
#ifndef DIARY_ENVELOPE_H
#define DIARY_ENVELOPE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "uuid.h"

#define EVT_TIMELEN  40  /* LOG_TIMELEN: evt_time_now is log_clock */
#define EVT_HASHLEN  130 /* requesthash: at most 129 hex digits (BLAKE2b-512 has 128), NUL */
#define EVT_MAX_SIZE (256 * 1024) /* larger events are dead-lettered unread */

struct evt {
    char id[UUID_STRLEN];      /* the event id */
    char type[64];             /* e.g. diary.entry.set.v1 */
    char subject[UUID_STRLEN]; /* the user id, also the Kafka key */
    char source[128];          /* the ingest node */
    char time[EVT_TIMELEN];    /* when ingest accepted it, RFC 3339 UTC */
    char requestid[64];
    char traceparent[64];
    char occurredat[EVT_TIMELEN]; /* client time, may be empty */
    char clientaddr[64];
    int64_t ifmatch; /* expected resource version, 0 when none */
    /* Hex digest of the request's method, path and body that ingest computes, so that it can
     * tell a retry of an Idempotency-Key from a reuse of the key with another body; "" when
     * none. */
    char requesthash[EVT_HASHLEN];
    json_t *data; /* owned reference, a JSON object */
};

/* Serialises e; the caller frees the result with free(). NULL on allocation failure. */
char *evt_serialize(const struct evt *e, size_t *len);

/* The members of an envelope as borrowed strings, for a writer that has them at hand and
 * should not copy them into a struct evt first. NULL or "" leaves an optional member
 * (traceparent, occurredat, clientaddr, requesthash) out; requestid is always written ("" for
 * NULL); ifmatch 0 leaves it out. data is the event's data already serialised as compact JSON
 * (datalen bytes, an object), written as it is. */
struct evt_view {
    const char *id, *type, *subject, *source, *time, *requestid;
    const char *traceparent, *occurredat, *clientaddr, *requesthash;
    int64_t ifmatch;
    const char *data;
    size_t datalen;
};

/* Writes the envelope of v straight into one buffer, byte for byte what evt_serialize writes
 * for the same members (its member order, jansson's compact form and string escapes), without
 * building a JSON tree. The caller frees the result with free(). NULL on allocation failure
 * or when a required member is not valid UTF-8 (an optional one that is not is left out, as
 * jansson would). */
char *evt_write(const struct evt_view *v, size_t *len);

/* Parses and checks buf: specversion "1.0", id and subject UUIDs, a known-shaped type,
 * data an object, requesthash (when present) hex digits only. On success out->data holds a
 * reference the caller drops with evt_clear(). Returns 0, or -1 with the reason in err. */
int evt_parse(const char *buf, size_t len, struct evt *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

void evt_clear(struct evt *e);

/* Current UTC time as RFC 3339 with milliseconds. */
void evt_time_now(char out[EVT_TIMELEN]);

#endif
