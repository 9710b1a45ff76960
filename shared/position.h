/* The position token of a write: where the broker put it, "partition:offset". A read that
 * sends it sees at least that write (the replica's consumer_offsets row for the partition
 * has passed the offset). Pure. */
#ifndef DIARY_POSITION_H
#define DIARY_POSITION_H

#include <stddef.h>
#include <stdint.h>

#define POSITION_STRLEN 32

struct position {
    int32_t partition;
    int64_t offset;
};

void position_format(const struct position *p, char out[POSITION_STRLEN]);

/* Parses "P:O" with P in 0..100000 and O >= 0. Returns 0 or -1. */
int position_parse(const char *s, struct position *out) __attribute__((warn_unused_result));

#endif
