/* The route table's matcher: a path pattern with {params} per row, matched segment by
 * segment, so that a route is found by one look at a static table rather than a chain of
 * string comparisons. Pure: no libevent in here; the table's rows carry the handler as an
 * opaque pointer that server.c calls. */
#ifndef INGEST_ROUTE_H
#define INGEST_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#define ROUTE_MAX_PARAMS 4
#define ROUTE_PARAM_MAX  128 /* longest parameter value accepted, NUL included */

/* Methods as bits, so that one pass over the table can collect the Allow header. */
enum route_method {
    ROUTE_GET = 1 << 0,
    ROUTE_POST = 1 << 1,
    ROUTE_PUT = 1 << 2,
    ROUTE_PATCH = 1 << 3,
    ROUTE_DELETE = 1 << 4,
};

/* Route flags. */
#define ROUTE_AUTH 1u /* needs Authorization: Bearer */
#define ROUTE_BODY 2u /* takes a JSON body */
#define ROUTE_READ 4u /* a replica read: honours Diary-Min-Position */
/* Its body schema holds only numbers, and the handler takes a body validate_numbers read
 * (struct req's nums, body NULL): no tree is built for the usual body. */
#define ROUTE_NUMBERS 8u

struct req;

struct route {
    unsigned method;     /* one enum route_method bit */
    const char *pattern; /* "/v1/foods/{id}": literal segments and {name} segments */
    void (*handler)(struct req *r);
    unsigned flags;
    const char *schema; /* validate_schema name of the body, or NULL */
    const char *query;  /* validate_schema name of the query string, or NULL: none taken */
};

struct route_params {
    int count;
    const char *names[ROUTE_MAX_PARAMS]; /* point into the pattern: "{id}" minus braces */
    size_t namelens[ROUTE_MAX_PARAMS];
    char values[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX];
};

enum route_result { ROUTE_FOUND, ROUTE_NO_PATH, ROUTE_NO_METHOD };

/* Matches path (without the query) against one pattern; fills params. A {param} matches one
 * non-empty segment of at most ROUTE_PARAM_MAX - 1 bytes; literal segments match exactly. */
bool route_match_path(const char *pattern, const char *path, struct route_params *params);

/* Finds the row for method and path: the first row of the table with both. ROUTE_FOUND: *out
 * and params are set. ROUTE_NO_METHOD: the path exists for other methods, whose bits are in
 * *allow (read it only then). ROUTE_NO_PATH: nothing. */
enum route_result route_find(const struct route *table, size_t count, unsigned method,
                             const char *path, const struct route **out,
                             struct route_params *params, unsigned *allow);

/* The value of parameter name, or NULL. */
const char *route_param(const struct route_params *params, const char *name);

/* "GET, PUT" for the method bits in allow. */
void route_allow_header(unsigned allow, char *out, size_t outlen);

/* The method's name ("GET"), or "?" for a value that is not one bit. */
const char *route_method_name(unsigned method);

#endif
