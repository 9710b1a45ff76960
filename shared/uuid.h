/* UUIDs: time-ordered v7 for new events, and deterministic v8 ids derived by BLAKE2b from
 * other values, so the same input always names the same event or row. */
#ifndef DIARY_UUID_H
#define DIARY_UUID_H

#include <stdbool.h>
#include <stdint.h>

#define UUID_STRLEN 37 /* 36 characters and the terminating NUL */

typedef struct diary_uuid {
    uint8_t b[16];
} diary_uuid_t;

/* A UUIDv7 for unix_ms with random bits from libsodium (sodium_init() must have run). */
void uuid_v7(diary_uuid_t *out, uint64_t unix_ms);

/* A v8 UUID: BLAKE2b over the label and each NUL-terminated part in turn. The label keeps
 * derivations for different purposes apart ("event", "food", ...). */
void uuid_derive(diary_uuid_t *out, const char *label, const char *const *parts, int nparts);

/* The id of a row created by event_id: uuid_derive(label, event_id). */
void uuid_child(diary_uuid_t *out, const diary_uuid_t *event_id, const char *label);

void uuid_format(const diary_uuid_t *u, char out[UUID_STRLEN]);

/* Accepts the canonical 8-4-4-4-12 form, either case. Returns 0 or -1. */
int uuid_parse(const char *s, diary_uuid_t *out) __attribute__((warn_unused_result));

bool uuid_valid(const char *s);

#endif
