/* A set of UUIDs, each with a value and the time after which it no longer matters: the
 * revoked sessions and the per-user token cut-offs that ingest checks on every authenticated
 * request without asking the database. Open addressing with linear probing and
 * backward-shift deletion, so lookups never walk tombstones. Pure: no I/O, not thread-safe
 * (the event loop thread owns it). */
#ifndef INGEST_REVSET_H
#define INGEST_REVSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uuid.h"

typedef struct revset revset_t;

/* NULL on ENOMEM. */
revset_t *revset_new(void);

/* Adds key, or updates it keeping the larger value and the later expiry. 0, or -1 on
 * ENOMEM (the set is unchanged). */
int revset_put(revset_t *s, const diary_uuid_t *key, int64_t value, int64_t expires)
    __attribute__((warn_unused_result));

/* True with *value set when key is in the set. */
bool revset_get(const revset_t *s, const diary_uuid_t *key, int64_t *value);

/* Removes every entry whose expiry is at or before now; returns how many. */
size_t revset_prune(revset_t *s, int64_t now);

size_t revset_count(const revset_t *s);

/* NULL is a no-op. */
void revset_destroy(revset_t *s);

#endif
