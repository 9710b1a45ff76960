/* The route matcher (ingest/route.c) walks segments without measuring them first, and
 * route_find tries the rows of the request's method first. Both against the straightforward
 * versions they replace, on every pattern of a table like server.c's and paths made from
 * pieces of them (literals, near-misses, empty and overlong segments, slashes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include "../../ingest/route.c"

static void h(struct req *r)
{
    (void)r;
}

static const struct route table[] = {
    {ROUTE_POST, "/v1/users", h, 0, NULL, NULL},
    {ROUTE_POST, "/v1/sessions", h, 0, NULL, NULL},
    {ROUTE_DELETE, "/v1/sessions/current", h, 0, NULL, NULL},
    {ROUTE_GET, "/v1/me", h, 0, NULL, NULL},
    {ROUTE_PATCH, "/v1/me", h, 0, NULL, NULL},
    {ROUTE_DELETE, "/v1/me", h, 0, NULL, NULL},
    {ROUTE_GET, "/v1/me/settings", h, 0, NULL, NULL},
    {ROUTE_PUT, "/v1/me/settings", h, 0, NULL, NULL},
    {ROUTE_GET, "/v1/foods", h, 0, NULL, NULL},
    {ROUTE_POST, "/v1/foods", h, 0, NULL, NULL},
    {ROUTE_GET, "/v1/foods/{id}", h, 0, NULL, NULL},
    {ROUTE_PUT, "/v1/foods/{id}", h, 0, NULL, NULL},
    {ROUTE_DELETE, "/v1/foods/{id}", h, 0, NULL, NULL},
    {ROUTE_GET, "/v1/diary", h, 0, NULL, NULL},
    {ROUTE_POST, "/v1/diary/batch", h, 0, NULL, NULL},
    {ROUTE_GET, "/v1/diary/{date}", h, 0, NULL, NULL},
    {ROUTE_PUT, "/v1/diary/{date}/{meal}/{food_id}", h, 0, NULL, NULL},
    {ROUTE_DELETE, "/v1/diary/{date}/{meal}/{food_id}", h, 0, NULL, NULL},
    {ROUTE_GET, "/v1/weights", h, 0, NULL, NULL},
    {ROUTE_PUT, "/v1/weights/{date}", h, 0, NULL, NULL},
    {ROUTE_DELETE, "/v1/weights/{date}", h, 0, NULL, NULL},
    {ROUTE_GET, "/v1/events/{id}", h, 0, NULL, NULL},
    {ROUTE_GET, "/healthz", h, 0, NULL, NULL},
    {ROUTE_GET, "/readyz", h, 0, NULL, NULL},
    {ROUTE_GET, "/metrics", h, 0, NULL, NULL},
    /* Odd patterns the matcher must treat as literals. */
    {ROUTE_GET, "/odd/{x", h, 0, NULL, NULL},
    {ROUTE_GET, "/odd/{", h, 0, NULL, NULL},
    {ROUTE_GET, "/odd/{}/y", h, 0, NULL, NULL},
};
#define N (sizeof(table) / sizeof(table[0]))

/* The matcher as it was: each segment measured with strchr, then compared. */
static size_t ref_seglen(const char *s)
{
    const char *slash = strchr(s, '/');
    return slash ? (size_t)(slash - s) : strlen(s);
}

static bool ref_match(const char *pattern, const char *path, struct route_params *params)
{
    const char *p = pattern, *s = path;

    params->count = 0;
    if (*p != '/' || *s != '/')
        return false;
    while (*p == '/' && *s == '/') {
        size_t pl, sl;

        p++;
        s++;
        pl = ref_seglen(p);
        sl = ref_seglen(s);
        if (pl >= 2 && p[0] == '{' && p[pl - 1] == '}') {
            int i = params->count;

            if (sl == 0 || sl >= ROUTE_PARAM_MAX || i >= ROUTE_MAX_PARAMS)
                return false;
            params->names[i] = p + 1;
            params->namelens[i] = pl - 2;
            memcpy(params->values[i], s, sl);
            params->values[i][sl] = '\0';
            params->count++;
        } else if (pl != sl || memcmp(p, s, pl) != 0) {
            return false;
        }
        p += pl;
        s += sl;
    }
    return *p == '\0' && *s == '\0';
}

/* route_find as it was: one pass in table order. */
static enum route_result ref_find(unsigned method, const char *path, const struct route **out,
                                  struct route_params *params, unsigned *allow)
{
    struct route_params scratch;

    *allow = 0;
    *out = NULL;
    for (size_t i = 0; i < N; i++) {
        if (!ref_match(table[i].pattern, path, &scratch))
            continue;
        if (table[i].method == method) {
            *out = &table[i];
            *params = scratch;
            return ROUTE_FOUND;
        }
        *allow |= table[i].method;
    }
    return *allow ? ROUTE_NO_METHOD : ROUTE_NO_PATH;
}

static void same_params(const struct route_params *a, const struct route_params *b)
{
    assert_int_equal(a->count, b->count);
    for (int i = 0; i < a->count; i++) {
        assert_ptr_equal(a->names[i], b->names[i]);
        assert_int_equal(a->namelens[i], b->namelens[i]);
        assert_string_equal(a->values[i], b->values[i]);
    }
}

static const char *const pieces[] = {
    "",       "v1",      "v",     "v12",        "users",     "user",    "sessions", "current",
    "me",     "meX",     "foods", "diary",      "batch",     "x",       "{id}",     "{",
    "{x",     "{}",      "y",     "2026-11-24", "lunch",     "weights", "events",   "healthz",
    "readyz", "metrics", "odd",   "settings",   "settingsX", NULL};

static void check(const char *path)
{
    static const unsigned methods[] = {0,         ROUTE_GET,   ROUTE_POST,
                                       ROUTE_PUT, ROUTE_PATCH, ROUTE_DELETE};
    struct route_params a, b;

    for (size_t i = 0; i < N; i++) {
        bool got = route_match_path(table[i].pattern, path, &a),
             want = ref_match(table[i].pattern, path, &b);
        if (got != want)
            fail_msg("%s against %s: %d, want %d", path, table[i].pattern, got, want);
        if (got)
            same_params(&a, &b);
    }
    for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
        const struct route *ra, *rb;
        unsigned aa, ab;
        enum route_result x = route_find(table, N, methods[m], path, &ra, &a, &aa),
                          y = ref_find(methods[m], path, &rb, &b, &ab);

        assert_int_equal(x, y);
        assert_ptr_equal(ra, rb);
        /* The Allow bits are route_find's answer only for ROUTE_NO_METHOD. */
        if (x == ROUTE_NO_METHOD)
            assert_int_equal(aa, ab);
        if (x == ROUTE_FOUND)
            same_params(&a, &b);
    }
}

/* Paths of up to four segments from the pieces, with and without a trailing slash. */
static void matcher_and_finder_agree_with_the_old_ones(void **state)
{
    char path[256], longseg[ROUTE_PARAM_MAX + 2];
    size_t np = sizeof(pieces) / sizeof(pieces[0]) - 1;

    check("");
    check("/");
    check("v1/users");
    for (size_t i = 0; i < np; i++) {
        snprintf(path, sizeof(path), "/%s", pieces[i]);
        check(path);
        for (size_t j = 0; j < np; j++) {
            snprintf(path, sizeof(path), "/%s/%s", pieces[i], pieces[j]);
            check(path);
            snprintf(path, sizeof(path), "/%s/%s/", pieces[i], pieces[j]);
            check(path);
        }
    }
    for (size_t j = 0; j < np; j++)
        for (size_t k = 0; k < np; k++) {
            snprintf(path, sizeof(path), "/v1/diary/%s/%s", pieces[j], pieces[k]);
            check(path);
            snprintf(path, sizeof(path), "/v1/diary/2026-11-24/%s/%s", pieces[j], pieces[k]);
            check(path);
            snprintf(path, sizeof(path), "/odd/%s/%s", pieces[j], pieces[k]);
            check(path);
        }
    memset(longseg, 'a', sizeof(longseg) - 1);
    longseg[sizeof(longseg) - 1] = '\0';
    for (size_t n = ROUTE_PARAM_MAX - 2; n <= ROUTE_PARAM_MAX + 1; n++) {
        snprintf(path, sizeof(path), "/v1/foods/%.*s", (int)n, longseg);
        check(path);
        snprintf(path, sizeof(path), "/v1/diary/%.*s/lunch/x", (int)n, longseg);
        check(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matcher_and_finder_agree_with_the_old_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
