/* Configuration from the environment. Every setting, its default and its meaning is one
 * row of the table in config.c; docs/configuration.md is generated from it
 * (`diaryctl config`), so the two cannot drift. */
#ifndef DIARY_CONFIG_H
#define DIARY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct config_entry {
    const char *name;
    const char *def; /* NULL: no default; the programs that need it refuse to start */
    const char *help;
};

/* The value of name from the environment, else its default; NULL when neither. name must
 * be in the table (an unknown name is a programming error and aborts). */
const char *config_str(const char *name);

/* config_str parsed as a whole decimal number in [min, max]. 0, or -1 with err. */
int config_long(const char *name, long min, long max, long *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Pure parser behind config_long. */
int config_parse_long(const char *s, long min, long max, long *out)
    __attribute__((warn_unused_result));

/* Pure: "true/false/1/0/yes/no/on/off". Returns 0 or -1. */
int config_parse_bool(const char *s, bool *out) __attribute__((warn_unused_result));

/* Pure: "host:port" into host (hostlen) and port 0..65535. 0 or -1. */
int config_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
    __attribute__((warn_unused_result));

/* The table, for documentation. */
const struct config_entry *config_table(size_t *count);
void config_write_markdown(FILE *f);

#endif
