#include "route.h"

#include <stdio.h>
#include <string.h>

static const struct {
    unsigned bit;
    const char *name;
} method_names[] = {
    {ROUTE_GET, "GET"},     {ROUTE_POST, "POST"},     {ROUTE_PUT, "PUT"},
    {ROUTE_PATCH, "PATCH"}, {ROUTE_DELETE, "DELETE"},
};

const char *route_method_name(unsigned method)
{
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++)
        if (method_names[i].bit == method)
            return method_names[i].name;
    return "?";
}

/* Length of the segment that starts at s: up to the next '/' or the end. */
static size_t seglen(const char *s)
{
    size_t n = 0;

    while (s[n] && s[n] != '/')
        n++;
    return n;
}

/* The routes are tried in turn and most part at their first differing byte, so segments are
 * compared as they are walked rather than measured first. */
bool route_match_path(const char *pattern, const char *path, struct route_params *params)
{
    const char *p = pattern, *s = path;

    params->count = 0;
    if (*p != '/' || *s != '/')
        return false;
    while (*p == '/' && *s == '/') {
        size_t pl;

        p++;
        s++;
        pl = *p == '{' ? seglen(p) : 0;
        if (pl >= 2 && p[pl - 1] == '}') {
            int i = params->count;
            size_t sl = seglen(s);

            if (sl == 0 || sl >= ROUTE_PARAM_MAX || i >= ROUTE_MAX_PARAMS)
                return false;
            params->names[i] = p + 1;
            params->namelens[i] = pl - 2;
            memcpy(params->values[i], s, sl);
            params->values[i][sl] = '\0';
            params->count++;
            p += pl;
            s += sl;
            continue;
        }
        /* A literal segment: equal bytes up to the end of both segments. */
        while (*p && *p != '/' && *p == *s) {
            p++;
            s++;
        }
        if ((*p && *p != '/') || (*s && *s != '/'))
            return false;
    }
    return *p == '\0' && *s == '\0';
}

enum route_result route_find(const struct route *table, size_t count, unsigned method,
                             const char *path, const struct route **out,
                             struct route_params *params, unsigned *allow)
{
    struct route_params scratch;

    *allow = 0;
    *out = NULL;
    /* The rows of the request's method first: the first of them whose path matches is the
     * first matching row of the table. Only without one are the other rows' paths matched,
     * for the Allow header. */
    for (size_t i = 0; i < count; i++) {
        if (table[i].method == method && route_match_path(table[i].pattern, path, &scratch)) {
            *out = &table[i];
            *params = scratch;
            return ROUTE_FOUND;
        }
    }
    for (size_t i = 0; i < count; i++)
        if (table[i].method != method && route_match_path(table[i].pattern, path, &scratch))
            *allow |= table[i].method;
    return *allow ? ROUTE_NO_METHOD : ROUTE_NO_PATH;
}

const char *route_param(const struct route_params *params, const char *name)
{
    size_t n = strlen(name);

    for (int i = 0; i < params->count; i++)
        if (params->namelens[i] == n && memcmp(params->names[i], name, n) == 0)
            return params->values[i];
    return NULL;
}

void route_allow_header(unsigned allow, char *out, size_t outlen)
{
    size_t used = 0;

    if (outlen == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
        if (!(allow & method_names[i].bit))
            continue;
        int n = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", method_names[i].name);
        if (n < 0 || (size_t)n >= outlen - used)
            return;
        used += (size_t)n;
    }
}
