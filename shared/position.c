#include "position.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

void position_format(const struct position *p, char out[POSITION_STRLEN])
{
    snprintf(out, POSITION_STRLEN, "%" PRId32 ":%" PRId64, p->partition, p->offset);
}

int position_parse(const char *s, struct position *out)
{
    char part[16];
    const char *colon = s ? strchr(s, ':') : NULL;
    long p;
    long long o;
    char *end;

    if (!colon || colon == s || (size_t)(colon - s) >= sizeof(part))
        return -1;
    memcpy(part, s, (size_t)(colon - s));
    part[colon - s] = '\0';
    if (config_parse_long(part, 0, 100000, &p) != 0 || colon[1] < '0' || colon[1] > '9')
        return -1;
    o = strtoll(colon + 1, &end, 10);
    if (*end || o < 0)
        return -1;
    out->partition = (int32_t)p;
    out->offset = o;
    return 0;
}
