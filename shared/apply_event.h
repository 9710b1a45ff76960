/* The pure half of the apply path (shared/apply.c holds the libpq half): the table of event
 * types the worker applies, each with the SQL functions of schema/migrations (0002_apply.sql,
 * 0003_api.sql) that decide and apply it and the handler that checks its data and binds the
 * function's parameters; the payload hash; what can be salvaged from an event that does not parse;
 * and the dead letter's JSON. Jansson and libsodium only, no I/O. */
#ifndef DIARY_APPLY_EVENT_H
#define DIARY_APPLY_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "uuid.h"

#define APPLY_BIND_MAX    20
#define APPLY_HASH_HEXLEN 67 /* "\x", 64 hex digits (BLAKE2b-256), NUL: a bytea literal */
#define APPLY_TYPELEN     64

/* Where an event came from and what the change events it causes are signed with: the part
 * of every diary_apply_* function's parameters that is not in the envelope. The strings are
 * borrowed and must outlive the bind that points to them. */
struct apply_meta {
    const char *topic;      /* the source topic, e.g. diary.events */
    int32_t partition;      /* its partition (also the outbox partition) */
    int64_t offset;         /* the event's offset */
    const char *source;     /* the change events' CloudEvents source */
    const char *request_id; /* used when the envelope carries none; may be NULL */
    const char *hash_hex;   /* apply_payload_hash of the raw message */
};

/* The text parameters of one SQL call: values[i] is $i+1, NULL for SQL NULL. values point
 * into the evt, the meta and the bind's own buffers, so the bind must not outlive them. */
struct apply_bind {
    const char *values[APPLY_BIND_MAX];
    int count;
    char partition[16], offset[24], ifmatch[24];
    char numbers[6][32];
    int nnumbers;
};

/* The leading parameters every diary_apply_* function takes: event id, subject, type,
 * partition, offset, payload hash, time, ifmatch, request id, topic, source, request hash. */
#define APPLY_COMMON_PARAMS 12
#define APPLY_KEYS_MAX      4

/* A row (or other thing) an event reads or writes, for the set-based scheduler: a 64-bit
 * hash of a name like "food|<id>". Two different names may collide; that only puts two
 * events in different rounds that could have shared one. */
struct apply_key {
    uint64_t hash;
    int write; /* 1: written (created, changed, or claimed like an email); 0: only read */
};

struct apply_event_type {
    const char *type;     /* the envelope type, e.g. diary.entry.set.v1 */
    const char *function; /* the per-event SQL function, also its prepared statement's name */
    int nparams;          /* all of the function's IN parameters, the common ones included */
    /* Checks e->data for what the database would refuse (a missing field, a bad UUID, date
     * or number, a string too long) and appends the type's own parameters to b. 0, or -1
     * with the reason in err: the event is malformed and goes to the dead letters. */
    int (*bind)(const struct evt *e, struct apply_bind *b, char *err, size_t errlen);
    /* The set-based SQL function (fast path), or NULL for a rare type that the set-based path
     * sends to `function` in the event's round instead; and the names of the type's own
     * parameters, in bind order, as the JSON fields the set-based function reads
     * (nparams - APPLY_COMMON_PARAMS of them; NULL when there are none). */
    const char *set_function;
    const char *const *fields;
    /* What a bound event reads and writes (keys[0] is always the event id, written). */
    size_t (*keys)(const struct apply_bind *b, struct apply_key keys[APPLY_KEYS_MAX]);
    /* How the set-based function takes its batch: false, one JSON array of objects (json,
     * read by json_to_recordset); true, one text[] per column in binary format, $2 the items'
     * indexes, then the common members, then the fields (no JSON for the database to parse:
     * the frequent types). */
    bool set_columns;
    /* The set_columns function that writes its change events straight into the outbox, in
     * log order, instead of staging them (0009): for a partition's batch made only of this
     * type, in one round, whose one call then holds every change event of the batch. It takes
     * the partition, the topic and the source (diary_apply_flush's parameters), then the
     * columns. NULL when the type has none. */
    const char *direct_function;
};

/* The table, for the prepare step and the docs. */
const struct apply_event_type *apply_event_types(size_t *count);

/* The entry for type, or NULL when the worker does not know it. */
const struct apply_event_type *apply_event_type_find(const char *type);

/* Fills b with every parameter of the type's function for e (the common ones from e and m,
 * then the type's own). Returns the type, or NULL with the reason in err when the type is
 * unknown or the event is malformed. */
const struct apply_event_type *apply_event_bind(const struct evt *e, const struct apply_meta *m,
                                                struct apply_bind *b, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* "SELECT out_status, out_reason, out_resource FROM fn($1, ..., $n)" for t. 0, or -1 when
 * outlen is too small. */
int apply_event_sql(const struct apply_event_type *t, char *out, size_t outlen)
    __attribute__((warn_unused_result));

/* The key that stands for an event id (what a dead-lettered event with a usable id writes). */
struct apply_key apply_event_id_key(const char *event_id);

/* Splits a batch into rounds for the set-based path: rounds[i] (1-based) for event i, given
 * its keys keys[first[i], first[i + 1]) (first has n + 1 entries). An event's round is after
 * the rounds of every earlier event that wrote one of its keys, and, for the keys it writes,
 * after every earlier event that read them; events that only read the same key may share a
 * round. Running the rounds in order, each as one statement per type, then gives what
 * running the events one by one in log order gives. Returns the number of rounds, or -1 on
 * allocation failure. */
int apply_schedule(size_t n, const struct apply_key *keys, const size_t *first, unsigned *rounds)
    __attribute__((warn_unused_result));

/* BLAKE2b-256 of the raw message as a bytea literal ("\x..."), for processed_events. */
void apply_payload_hash(const void *buf, size_t len, char out[APPLY_HASH_HEXLEN]);

/* For an event evt_parse refused: copies the id, subject and type out of buf when buf is a
 * JSON object carrying them (id and subject only when they are UUIDs); each is "" when not
 * found. An id found here is "usable": the event is recorded as rejected under it. */
void apply_event_salvage(const void *buf, size_t len, char id[UUID_STRLEN],
                         char subject[UUID_STRLEN], char type[APPLY_TYPELEN]);

/* A dead letter, as docs/events.md ("diary.events.dlq") describes its value. */
struct apply_dead_letter_info {
    const void *value; /* the original message value */
    size_t len;
    const char *error;
    const char *worker;
    int attempts;
    const char *topic;
    int32_t partition;
    int64_t offset;
    const char *time; /* RFC 3339; NULL: now */
};

/* The dead letter's JSON value. "event" is the original value as a string; a value that is
 * not valid UTF-8 cannot be a JSON string, so it is then null and "event_base64" carries
 * the bytes. The caller frees the result with free(); NULL on allocation failure. */
char *apply_dead_letter_json(const struct apply_dead_letter_info *dl, size_t *len);

#endif
