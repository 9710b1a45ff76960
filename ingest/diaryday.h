/* The diary pages: GET /v1/diary/{date} (entries grouped by meal with their macros scaled
 * from the food's per-100 g values, per-meal and day totals, the goals from the user's
 * settings or the defaults, and the share of each goal reached) and GET /v1/diary?from=&to=
 * (one summary per day of the range). Pure: jansson only; reads.c turns the replica's rows
 * into items. */
#ifndef INGEST_DIARYDAY_H
#define INGEST_DIARYDAY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DIARYDAY_DEFAULT_KCAL        2000.0
#define DIARYDAY_DEFAULT_PROTEIN_PCT 25.0
#define DIARYDAY_DEFAULT_FAT_PCT     30.0

struct diaryday_item {
    const char *meal_type; /* breakfast, lunch, dinner or snack; others are skipped */
    const char *food_id;
    const char *name;
    double amount; /* grams */
    double kcal_100g, protein_100g, carbs_100g, fat_100g;
    int64_t version;
    const char *id; /* the entry's id; may be NULL */
};

struct diaryday_settings {
    bool present; /* false: no user_settings row, the defaults apply */
    double daily_kcal, protein_pct, fat_pct;
};

struct diaryday_goals {
    double calories, protein_g, fat_g, carbs_g;
};

/* One entry of a range: its day (validate_date_days), amount and the food's values. */
struct diaryday_row {
    long day;
    double amount;
    double kcal_100g, protein_100g, carbs_100g, fat_100g;
};

/* v rounded half away from zero to one decimal. */
double diaryday_round1(double v);

/* Goals from the settings: protein and carbohydrate carry 4 kcal/g, fat 9; carbohydrate takes
 * the share protein and fat leave. Each rounded to 0.1. */
void diaryday_goals(const struct diaryday_settings *s, struct diaryday_goals *out);

/* The day page. Item macros are amount/100 times the per-100 g value, rounded to 0.1; meal
 * and day totals are the sums of the rounded item values (so the page adds up), rounded again
 * against float noise; progress is each day total as a percentage of its goal (0.1; null for
 * a goal of 0). Items keep the given order within their meal. Returns a new object. */
json_t *diaryday_build(const char *date, const struct diaryday_item *items, size_t count,
                       const struct diaryday_settings *s);

/* The range page: {from, to, goals, days: [{date, calories, protein, carbs, fat, entries}]}
 * with one element per day from..to (day numbers, inclusive), zeros for a day without
 * entries; each entry counts as on the day page. rows may come in any order; rows outside the
 * range are ignored. Returns a new object, NULL when to < from. */
json_t *diaryday_summaries(long from, long to, const struct diaryday_row *rows, size_t count,
                           const struct diaryday_settings *s);

#endif
