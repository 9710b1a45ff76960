/* The buffered random generator (ingest/rng.c): installed as libsodium's, it hands out fresh
 * bytes for small and large draws, never the same bytes twice, and libsodium's functions
 * built on it (randombytes_uniform) keep working. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <sodium.h>
#include <string.h>
#include "../../ingest/rng.c"

static void install(void **state)
{
    assert_int_equal(rng_install(), 0);
    assert_true(sodium_init() >= 0);
    assert_string_equal(randombytes_implementation_name(), "ingest-buffered-internal");
}

/* Draws of every size up to past the buffer, one after the other: no draw repeats the bytes
 * of the draw before it, and no 16-byte draw (a request id) repeats over several buffers. */
static void draws_do_not_repeat(void **state)
{
    static uint8_t seen[4 * RNG_BUFFER / 16][16];
    uint8_t a[2 * RNG_BUFFER], b[2 * RNG_BUFFER];

    for (size_t n = 8; n <= sizeof(a); n += n < 64 ? 1 : 61) {
        randombytes_buf(a, n);
        randombytes_buf(b, n);
        assert_memory_not_equal(a, b, n);
    }
    for (size_t i = 0; i < sizeof(seen) / sizeof(seen[0]); i++) {
        randombytes_buf(seen[i], sizeof(seen[i]));
        for (size_t j = 0; j < i; j++)
            assert_memory_not_equal(seen[i], seen[j], sizeof(seen[i]));
    }
}

/* Handed-out bytes are wiped from the buffer. */
static void handed_out_bytes_are_wiped(void **state)
{
    uint8_t v[16];
    size_t at;

    randombytes_buf(v, sizeof(v)); /* the buffer holds bytes now */
    at = sizeof(pool.buf) - pool.left;
    randombytes_buf(v, sizeof(v));
    for (size_t i = 0; i < sizeof(v); i++)
        assert_int_equal(pool.buf[at + i], 0);
}

static void uniform_and_random_work(void **state)
{
    unsigned counts[10] = {0};
    uint32_t x = randombytes_random(), y = randombytes_random();

    assert_true(x != y || randombytes_random() != x);
    for (int i = 0; i < 10000; i++) {
        uint32_t r = randombytes_uniform(10);
        assert_true(r < 10);
        counts[r]++;
    }
    for (int i = 0; i < 10; i++)
        assert_true(counts[i] > 800 && counts[i] < 1200);
    randombytes_stir();
    assert_int_equal(pool.left, 0);
    randombytes_buf(&x, sizeof(x));
    assert_int_equal(pool.left, RNG_BUFFER - sizeof(x));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(install),
        cmocka_unit_test(draws_do_not_repeat),
        cmocka_unit_test(handed_out_bytes_are_wiped),
        cmocka_unit_test(uniform_and_random_work),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
