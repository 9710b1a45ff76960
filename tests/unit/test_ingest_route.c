/* Unit tests for ingest/route.c: the route table's path matcher, parameter capture, the
 * 404/405 decision and the Allow header. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../ingest/route.c"

static void h_a(struct req *r)
{
    (void)r;
}

static void h_b(struct req *r)
{
    (void)r;
}

static const struct route table[] = {
    {ROUTE_POST, "/v1/users", h_a, 0, NULL, NULL},
    {ROUTE_GET, "/v1/foods", h_a, ROUTE_AUTH, NULL, "foods.query"},
    {ROUTE_GET, "/v1/foods/{id}", h_a, ROUTE_AUTH, NULL, NULL},
    {ROUTE_PUT, "/v1/foods/{id}", h_b, ROUTE_AUTH, NULL, NULL},
    {ROUTE_DELETE, "/v1/foods/{id}", h_b, ROUTE_AUTH, NULL, NULL},
    {ROUTE_POST, "/v1/diary/batch", h_b, ROUTE_AUTH, "diary.batch", NULL},
    {ROUTE_PUT, "/v1/diary/{date}/{meal}/{food_id}", h_b, ROUTE_AUTH, NULL, NULL},
    {ROUTE_GET, "/v1/diary/{date}", h_a, ROUTE_AUTH, NULL, NULL},
    {ROUTE_GET, "/healthz", h_a, 0, NULL, NULL},
};
#define N (sizeof(table) / sizeof(table[0]))

static void literal_paths_match_exactly(void **state)
{
    struct route_params p;

    (void)state;
    assert_true(route_match_path("/healthz", "/healthz", &p));
    assert_int_equal(p.count, 0);
    assert_false(route_match_path("/healthz", "/healthz/", &p));
    assert_false(route_match_path("/healthz", "/healthzz", &p));
    assert_false(route_match_path("/healthz", "/health", &p));
    assert_false(route_match_path("/healthz", "healthz", &p));
    assert_false(route_match_path("/healthz", "", &p));
    assert_false(route_match_path("/v1/users", "/v1//users", &p));
}

static void params_are_captured_by_name(void **state)
{
    struct route_params p;

    (void)state;
    assert_true(route_match_path("/v1/diary/{date}/{meal}/{food_id}",
                                 "/v1/diary/2026-11-24/lunch/abc", &p));
    assert_int_equal(p.count, 3);
    assert_string_equal(route_param(&p, "date"), "2026-11-24");
    assert_string_equal(route_param(&p, "meal"), "lunch");
    assert_string_equal(route_param(&p, "food_id"), "abc");
    assert_null(route_param(&p, "food"));
    assert_null(route_param(&p, "id"));
}

static void params_need_one_nonempty_segment(void **state)
{
    struct route_params p;
    char longpath[400];

    (void)state;
    assert_false(route_match_path("/v1/foods/{id}", "/v1/foods/", &p));
    assert_false(route_match_path("/v1/foods/{id}", "/v1/foods", &p));
    assert_false(route_match_path("/v1/foods/{id}", "/v1/foods/a/b", &p));
    assert_false(route_match_path("/v1/diary/{date}", "/v1/diary//x", &p));
    /* A value longer than ROUTE_PARAM_MAX - 1 does not match (404, not truncation). */
    strcpy(longpath, "/v1/foods/");
    memset(longpath + 10, 'a', ROUTE_PARAM_MAX);
    longpath[10 + ROUTE_PARAM_MAX] = '\0';
    assert_false(route_match_path("/v1/foods/{id}", longpath, &p));
    longpath[10 + ROUTE_PARAM_MAX - 1] = '\0';
    assert_true(route_match_path("/v1/foods/{id}", longpath, &p));
}

static void find_distinguishes_404_and_405(void **state)
{
    const struct route *rt;
    struct route_params p;
    unsigned allow;

    (void)state;
    assert_int_equal(route_find(table, N, ROUTE_GET, "/v1/foods/x", &rt, &p, &allow), ROUTE_FOUND);
    assert_ptr_equal(rt, &table[2]);
    assert_string_equal(route_param(&p, "id"), "x");

    assert_int_equal(route_find(table, N, ROUTE_PUT, "/v1/foods/x", &rt, &p, &allow), ROUTE_FOUND);
    assert_ptr_equal(rt, &table[3]);

    assert_int_equal(route_find(table, N, ROUTE_POST, "/v1/foods/x", &rt, &p, &allow),
                     ROUTE_NO_METHOD);
    assert_null(rt);
    assert_int_equal(allow, ROUTE_GET | ROUTE_PUT | ROUTE_DELETE);

    assert_int_equal(route_find(table, N, ROUTE_DELETE, "/v1/users", &rt, &p, &allow),
                     ROUTE_NO_METHOD);
    assert_int_equal(allow, ROUTE_POST);

    assert_int_equal(route_find(table, N, ROUTE_GET, "/v1/nowhere", &rt, &p, &allow),
                     ROUTE_NO_PATH);
    assert_int_equal(allow, 0);
    /* Method 0 (HEAD, OPTIONS: methods no row serves) on a known path is a 405. */
    assert_int_equal(route_find(table, N, 0, "/healthz", &rt, &p, &allow), ROUTE_NO_METHOD);
    assert_int_equal(allow, ROUTE_GET);
}

static void allow_header_lists_methods_in_order(void **state)
{
    char buf[64];

    (void)state;
    route_allow_header(ROUTE_DELETE | ROUTE_GET | ROUTE_PUT, buf, sizeof(buf));
    assert_string_equal(buf, "GET, PUT, DELETE");
    route_allow_header(ROUTE_POST, buf, sizeof(buf));
    assert_string_equal(buf, "POST");
    route_allow_header(0, buf, sizeof(buf));
    assert_string_equal(buf, "");
    /* A short buffer stays a terminated prefix. */
    route_allow_header(ROUTE_GET | ROUTE_POST | ROUTE_PUT, buf, 9);
    assert_string_equal(buf, "GET, POS");
    assert_string_equal(route_method_name(ROUTE_PATCH), "PATCH");
    assert_string_equal(route_method_name(ROUTE_GET | ROUTE_PUT), "?");
}

/* A literal segment beside a {param} one: POST /v1/diary/batch is its own route, GET falls to
 * the day route (whose date check then refuses "batch"), and another method lists both. */
static void literal_beside_param(void **state)
{
    const struct route *rt;
    struct route_params p;
    unsigned allow;
    char hdr[64];

    (void)state;
    assert_int_equal(route_find(table, N, ROUTE_POST, "/v1/diary/batch", &rt, &p, &allow),
                     ROUTE_FOUND);
    assert_string_equal(rt->pattern, "/v1/diary/batch");
    assert_int_equal(route_find(table, N, ROUTE_GET, "/v1/diary/batch", &rt, &p, &allow),
                     ROUTE_FOUND);
    assert_string_equal(rt->pattern, "/v1/diary/{date}");
    assert_string_equal(route_param(&p, "date"), "batch");
    assert_int_equal(route_find(table, N, ROUTE_DELETE, "/v1/diary/batch", &rt, &p, &allow),
                     ROUTE_NO_METHOD);
    route_allow_header(allow, hdr, sizeof(hdr));
    assert_string_equal(hdr, "GET, POST");
    assert_int_equal(route_find(table, N, ROUTE_GET, "/v1/foods", &rt, &p, &allow), ROUTE_FOUND);
    assert_string_equal(rt->query, "foods.query");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(literal_beside_param),
        cmocka_unit_test(literal_paths_match_exactly),
        cmocka_unit_test(params_are_captured_by_name),
        cmocka_unit_test(params_need_one_nonempty_segment),
        cmocka_unit_test(find_distinguishes_404_and_405),
        cmocka_unit_test(allow_header_lists_methods_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
