/* A small pool of threads that hash and verify passwords (argon2id is meant to be slow and
 * memory-hungry), so that the event loop never runs one. Jobs go in from the loop thread;
 * results come back to the loop thread through a pipe watched by the loop. */
#ifndef INGEST_HASHPOOL_H
#define INGEST_HASHPOOL_H

#include <event2/event.h>
#include <stddef.h>

#include "password.h"

typedef struct hashpool hashpool_t;

enum hashpool_status {
    HASHPOOL_OK,       /* hashed, or the password matched */
    HASHPOOL_MISMATCH, /* verify: the password did not match */
    HASHPOOL_FAILED,   /* hashing failed (out of memory) */
    HASHPOOL_SHUTDOWN, /* the pool was destroyed before the job ran */
};

/* Runs on the loop thread, once per accepted job, never from inside hashpool_hash/verify.
 * hash is the new hash for a hash job with HASHPOOL_OK, else NULL; it lives until the
 * callback returns. */
typedef void (*hashpool_cb)(void *arg, enum hashpool_status status, const char *hash);

/* threads workers; ops and mem are the argon2id limits for hashing (0: libsodium's
 * interactive ones); at most max_queue jobs wait. NULL with err on failure. */
hashpool_t *hashpool_new(struct event_base *base, int threads, unsigned long long ops, size_t mem,
                         size_t max_queue, char *err, size_t errlen);

/* Queues a job; the pool copies pw and hash (and wipes its copy of pw after use).
 * 0, or -1 when the queue is full or memory ran out (cb not called). */
int hashpool_hash(hashpool_t *p, const char *pw, hashpool_cb cb, void *arg)
    __attribute__((warn_unused_result));
int hashpool_verify(hashpool_t *p, const char *hash, const char *pw, hashpool_cb cb, void *arg)
    __attribute__((warn_unused_result));

/* Jobs waiting and jobs running, for /metrics. */
void hashpool_stats(hashpool_t *p, size_t *queued, size_t *running);

/* Stops the threads after their current job, then calls the callback of every job that did
 * not run with HASHPOOL_SHUTDOWN and of every finished one with its result. NULL is a no-op. */
void hashpool_destroy(hashpool_t *p);

#endif
