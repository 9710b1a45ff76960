#include "rng.h"

#include <sodium.h>
#include <stdint.h>
#include <string.h>

/* This thread's bytes not handed out yet: the last `left` bytes of buf. */
static _Thread_local struct {
    uint8_t buf[RNG_BUFFER];
    size_t left;
} pool;

static void buf_cb(void *const out, const size_t size)
{
    uint8_t *from;

    /* A large draw gains nothing from the buffer. */
    if (size > RNG_BUFFER / 4) {
        randombytes_internal_implementation.buf(out, size);
        return;
    }
    if (pool.left < size) {
        randombytes_internal_implementation.buf(pool.buf, sizeof(pool.buf));
        pool.left = sizeof(pool.buf);
    }
    from = pool.buf + sizeof(pool.buf) - pool.left;
    memcpy(out, from, size);
    sodium_memzero(from, size);
    pool.left -= size;
}

static uint32_t random_cb(void)
{
    uint32_t v;

    buf_cb(&v, sizeof(v));
    return v;
}

static void stir_cb(void)
{
    randombytes_internal_implementation.stir();
    sodium_memzero(pool.buf, sizeof(pool.buf));
    pool.left = 0;
}

static int close_cb(void)
{
    sodium_memzero(pool.buf, sizeof(pool.buf));
    pool.left = 0;
    return randombytes_internal_implementation.close();
}

static const char *name_cb(void)
{
    return "ingest-buffered-internal";
}

/* uniform is left to libsodium, which derives it from random_cb. */
static randombytes_implementation buffered = {
    .implementation_name = name_cb,
    .random = random_cb,
    .stir = stir_cb,
    .uniform = NULL,
    .buf = buf_cb,
    .close = close_cb,
};

int rng_install(void)
{
    return randombytes_set_implementation(&buffered);
}
