/* Helpers for unit tests that feed parsers raw bytes: include after cmocka.h. */
#ifndef TEST_INPUT_H
#define TEST_INPUT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* buf in an allocation of exactly len bytes, so that ASan sees any read past the end. */
static inline char *test_exact(const char *buf, size_t len)
{
    char *copy = malloc(len ? len : 1);

    assert_non_null(copy);
    if (len)
        memcpy(copy, buf, len);
    return copy;
}

/* The first 600 bytes of buf on stderr, bytes outside printable ASCII as \xNN: the input a
 * failed comparison was about. */
static inline void test_print_input(const char *buf, size_t len)
{
    fprintf(stderr, "input (%zu bytes): ", len);
    for (size_t i = 0; i < len && i < 600; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c >= 0x20 && c < 0x7f)
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fputc('\n', stderr);
}

#endif
