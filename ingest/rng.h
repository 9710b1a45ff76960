/* libsodium's random generator with a small buffer per thread in front of it. Every request
 * takes a few random bytes (its request id, its event's UUIDv7); libsodium's own generator
 * runs ChaCha20 and a getpid() system call (its fork check) on each call, whatever the size.
 * Buffered, that happens once per RNG_BUFFER bytes instead. */
#ifndef INGEST_RNG_H
#define INGEST_RNG_H

#include <stddef.h>

#define RNG_BUFFER 1024 /* bytes drawn from libsodium at a time, per thread */

/* Makes the buffered generator libsodium's (randombytes_set_implementation); call it before
 * sodium_init(). The bytes come from randombytes_internal_implementation, as before. Bytes
 * are wiped from the buffer as they are handed out. The buffer is not re-drawn after a
 * fork(): diary-ingest never forks. 0 or -1. */
int rng_install(void) __attribute__((warn_unused_result));

#endif
