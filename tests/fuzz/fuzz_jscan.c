/* libFuzzer target: the scanner alone against jansson on any JSON text (JSON_DECODE_ANY, no
 * duplicate check, which the scanner leaves to its caller): the same verdict, and for a
 * top-level string the same decoded bytes. Not part of `make test`; build and run by hand:
 *
 *   clang -g -O1 -std=c17 -D_GNU_SOURCE -Ishared -fsanitize=fuzzer,address,undefined \
 *       tests/fuzz/fuzz_jscan.c shared/jscan.c -ljansson -o /tmp/fuzz_jscan
 *   /tmp/fuzz_jscan -max_total_time=60 -max_len=512
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct jscan s;
    struct jscan_value v;
    json_error_t e;
    json_t *j;
    bool mine;

    jscan_init(&s, buf, size);
    mine = jscan_value(&s, 1, &v) && jscan_end(&s);
    j = json_loadb(buf, size, JSON_DECODE_ANY, &e);
    /* jansson 2.14 skips a NUL byte straight after a number or literal; the scanner does not. */
    if (mine != (j != NULL) && !(j && memchr(buf, '\0', size))) {
        fprintf(stderr, "jscan %s (%s), jansson %s (%s)\n", mine ? "accepts" : "refuses",
                mine ? "" : s.err, j ? "accepts" : "refuses", j ? "" : e.text);
        abort();
    }
    if (mine && j && json_is_string(j)) {
        char out[1024];
        size_t len;

        jscan_init(&s, buf, size);
        if (!jscan_string(&s, out, sizeof(out), &len) || len != json_string_length(j) ||
            memcmp(out, json_string_value(j), len < sizeof(out) ? len : sizeof(out) - 1) != 0)
            abort();
    }
    if (mine && j && json_is_integer(j) && v.type == JSCAN_INTEGER &&
        v.integer != json_integer_value(j))
        abort();
    json_decref(j);
    return 0;
}
