/* Unit tests for ingest/diaryday.c (the GET /v1/diary/{date} page) and ingest/counters.c (the
 * Prometheus text of ingest's metrics). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../ingest/counters.c"
#include "../../ingest/diaryday.c"

static double num_at(json_t *o, const char *path)
{
    char buf[128], *save = NULL, *tok;

    snprintf(buf, sizeof(buf), "%s", path);
    for (tok = strtok_r(buf, ".", &save); tok && o; tok = strtok_r(NULL, ".", &save)) {
        if (json_is_array(o))
            o = json_array_get(o, (size_t)atoi(tok));
        else
            o = json_object_get(o, tok);
    }
    assert_non_null(o);
    assert_true(json_is_number(o));
    return json_number_value(o);
}

static void rounds_half_away_from_zero(void **state)
{
    (void)state;
    assert_true(diaryday_round1(583.5) == 583.5);
    assert_true(diaryday_round1(25.35) == 25.4);
    assert_true(diaryday_round1(129.537) == 129.5);
    assert_true(diaryday_round1(0.04) == 0.0);
    assert_true(diaryday_round1(-0.04) == 0.0);
    assert_true(diaryday_round1(-1.25) == -1.3);
}

static void default_goals(void **state)
{
    struct diaryday_goals g;

    (void)state;
    diaryday_goals(NULL, &g);
    assert_true(g.calories == 2000.0);
    assert_true(g.protein_g == 125.0); /* 2000 * 25% / 4 */
    assert_true(g.fat_g == 66.7);      /* 2000 * 30% / 9 */
    assert_true(g.carbs_g == 225.0);   /* 2000 * 45% / 4 */
}

static void goals_from_settings(void **state)
{
    struct diaryday_settings s = {true, 2500, 30, 20};
    struct diaryday_goals g;

    (void)state;
    diaryday_goals(&s, &g);
    assert_true(g.calories == 2500.0);
    assert_true(g.protein_g == 187.5);
    assert_true(g.fat_g == 55.6);
    assert_true(g.carbs_g == 312.5);
    /* Protein and fat taking everything leaves no carbohydrate, never a negative amount. */
    s.protein_pct = 60;
    s.fat_pct = 40;
    diaryday_goals(&s, &g);
    assert_true(g.carbs_g == 0.0);
}

static void page_groups_scales_and_totals(void **state)
{
    const struct diaryday_item items[] = {
        {"breakfast", "f1", "Oats", 150, 389, 16.9, 66.3, 6.9, 2, "e1"},
        {"lunch", "f1", "Oats", 33.3, 389, 16.9, 66.3, 6.9, 1, "e2"},
        {"brunch", "f2", "Ignored", 100, 100, 1, 1, 1, 1, "e3"},
        {"breakfast", "f3", "Milk", 200, 64, 3.4, 4.8, 3.6, 1, NULL},
    };
    json_t *page = diaryday_build("2026-11-24", items, 4, NULL);
    json_t *meals = json_object_get(page, "meals");

    (void)state;
    assert_string_equal(json_string_value(json_object_get(page, "date")), "2026-11-24");
    assert_int_equal(json_array_size(json_object_get(meals, "breakfast")), 2);
    assert_int_equal(json_array_size(json_object_get(meals, "lunch")), 1);
    assert_int_equal(json_array_size(json_object_get(meals, "dinner")), 0);
    assert_int_equal(json_array_size(json_object_get(meals, "snack")), 0);
    assert_null(json_object_get(meals, "brunch"));
    /* Order within a meal is the given order. */
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(meals, "breakfast"), 1), "name")),
                        "Milk");
    assert_true(num_at(page, "meals.breakfast.0.calories") == 583.5);
    assert_true(num_at(page, "meals.breakfast.0.protein") == 25.4);
    assert_true(num_at(page, "meals.breakfast.0.carbs") == 99.5);
    assert_true(num_at(page, "meals.breakfast.0.fat") == 10.4);
    assert_true(num_at(page, "meals.breakfast.0.version") == 2);
    assert_true(num_at(page, "meals.lunch.0.calories") == 129.5);
    assert_true(num_at(page, "meals.breakfast.1.calories") == 128.0);
    /* Totals are the sums of the rounded item values. */
    assert_true(num_at(page, "totals.calories") == 841.0);
    assert_true(num_at(page, "totals.protein") == 37.8);
    assert_true(num_at(page, "goals.calories") == 2000.0);
    json_decref(page);
}

static void empty_day(void **state)
{
    json_t *page = diaryday_build("2026-01-01", NULL, 0, NULL);

    (void)state;
    assert_true(num_at(page, "totals.calories") == 0.0);
    assert_true(num_at(page, "totals.fat") == 0.0);
    assert_int_equal(json_object_size(json_object_get(page, "meals")), 4);
    json_decref(page);
}

static void meal_totals_and_progress(void **state)
{
    const struct diaryday_item items[] = {
        {"breakfast", "f1", "Oats", 150, 389, 16.9, 66.3, 6.9, 2, "e1"},
        {"breakfast", "f3", "Milk", 200, 64, 3.4, 4.8, 3.6, 1, "e2"},
        {"dinner", "f1", "Oats", 100, 389, 16.9, 66.3, 6.9, 1, "e3"},
    };
    struct diaryday_settings s = {true, 2000, 100, 0}; /* all protein: carbs and fat goals 0 */
    json_t *page = diaryday_build("2026-11-24", items, 3, NULL), *p;

    (void)state;
    assert_true(num_at(page, "meal_totals.breakfast.calories") == 711.5); /* 583.5 + 128 */
    assert_true(num_at(page, "meal_totals.dinner.calories") == 389.0);
    assert_true(num_at(page, "meal_totals.lunch.calories") == 0.0);
    assert_true(num_at(page, "totals.calories") == 1100.5);
    /* 1100.5 of 2000 kcal; 25.4 + 6.8 + 16.9 = 49.1 of 125 g protein. */
    assert_true(num_at(page, "progress.calories") == 55.0);
    assert_true(num_at(page, "progress.protein") == 39.3);
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_object_get(page, "meals"), "breakfast"), 0), "id")),
        "e1");
    json_decref(page);

    page = diaryday_build("2026-11-24", items, 3, &s);
    p = json_object_get(page, "progress");
    assert_true(json_is_null(json_object_get(p, "fat")));
    assert_true(json_is_null(json_object_get(p, "carbs")));
    assert_true(json_is_number(json_object_get(p, "protein")));
    json_decref(page);
}

static void summaries_cover_every_day(void **state)
{
    long from = 20000; /* 2024-10-04 */
    const struct diaryday_row rows[] = {
        {20001, 150, 389, 16.9, 66.3, 6.9},
        {20001, 200, 64, 3.4, 4.8, 3.6},
        {20003, 100, 100, 10, 10, 1},
        {19999, 100, 100, 10, 10, 1}, /* before the range: ignored */
    };
    json_t *page = diaryday_summaries(from, from + 3, rows, 4, NULL), *days;

    (void)state;
    assert_non_null(page);
    assert_string_equal(json_string_value(json_object_get(page, "from")), "2024-10-04");
    assert_string_equal(json_string_value(json_object_get(page, "to")), "2024-10-07");
    days = json_object_get(page, "days");
    assert_int_equal(json_array_size(days), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(days, 1), "date")),
                        "2024-10-05");
    assert_true(num_at(page, "days.0.calories") == 0.0);
    assert_true(num_at(page, "days.0.entries") == 0);
    /* The day page's numbers: the sum of the rounded entries. */
    assert_true(num_at(page, "days.1.calories") == 711.5);
    assert_true(num_at(page, "days.1.entries") == 2);
    assert_true(num_at(page, "days.3.protein") == 10.0);
    assert_true(num_at(page, "goals.calories") == 2000.0);
    json_decref(page);
    assert_null(diaryday_summaries(5, 4, NULL, 0, NULL));
}

static void metrics_text(void **state)
{
    static const char *const names[] = {"POST /v1/users", "GET /healthz"};
    counters_t *c = counters_new(names, 2);
    const struct counters_gauge g[] = {{"diary_ingest_connections", "Open.", 3, NULL},
                                       {"x_total", "A total.", 7, "counter"}};
    size_t len = 0;
    char *text;

    (void)state;
    assert_non_null(c);
    counters_request(c, 0, 202);
    counters_request(c, 0, 202);
    counters_request(c, 0, 422);
    counters_request(c, 1, 200);
    counters_request(c, 99, 404); /* out of range: unmatched */
    counters_request(c, 1, 999);  /* nonsense status: counted as 5xx */
    counters_produce(c, 0.003, 1);
    counters_produce(c, 2.0, 1);
    counters_produce(c, 0.1, 0);
    counters_refused(c);
    text = counters_render(c, g, 2, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_non_null(
        strstr(text, "diary_ingest_requests_total{route=\"POST /v1/users\",code=\"2xx\"} 2\n"));
    assert_non_null(
        strstr(text, "diary_ingest_requests_total{route=\"POST /v1/users\",code=\"4xx\"} 1\n"));
    assert_non_null(
        strstr(text, "diary_ingest_requests_total{route=\"GET /healthz\",code=\"5xx\"} 1\n"));
    assert_non_null(
        strstr(text, "diary_ingest_requests_total{route=\"unmatched\",code=\"4xx\"} 1\n"));
    assert_non_null(strstr(text, "diary_ingest_produce_seconds_bucket{le=\"0.001\"} 0\n"));
    assert_non_null(strstr(text, "diary_ingest_produce_seconds_bucket{le=\"0.005\"} 1\n"));
    assert_non_null(strstr(text, "diary_ingest_produce_seconds_bucket{le=\"2.5\"} 2\n"));
    assert_non_null(strstr(text, "diary_ingest_produce_seconds_bucket{le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(text, "diary_ingest_produce_seconds_count 2\n"));
    assert_non_null(strstr(text, "diary_ingest_produce_failed_total 1\n"));
    assert_non_null(strstr(text, "diary_ingest_connections_refused_total 1\n"));
    assert_non_null(
        strstr(text, "# TYPE diary_ingest_connections gauge\ndiary_ingest_connections 3\n"));
    assert_non_null(strstr(text, "# TYPE x_total counter\nx_total 7\n"));
    free(text);
    counters_destroy(c);
    counters_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rounds_half_away_from_zero),
        cmocka_unit_test(default_goals),
        cmocka_unit_test(goals_from_settings),
        cmocka_unit_test(page_groups_scales_and_totals),
        cmocka_unit_test(empty_day),
        cmocka_unit_test(meal_totals_and_progress),
        cmocka_unit_test(summaries_cover_every_day),
        cmocka_unit_test(metrics_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
