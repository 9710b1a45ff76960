/* The day page of GET /v1/diary/{date}: entries grouped by meal with their macros scaled
 * from the food's per-100 g values, the day's totals, and the goals from the user's settings
 * or the defaults. Pure: jansson only; reads.c turns the replica's rows into items. */
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
};

struct diaryday_settings {
    bool present; /* false: no user_settings row, the defaults apply */
    double daily_kcal, protein_pct, fat_pct;
};

struct diaryday_goals {
    double calories, protein_g, fat_g, carbs_g;
};

/* v rounded half away from zero to one decimal. */
double diaryday_round1(double v);

/* Goals from the settings: protein and carbohydrate carry 4 kcal/g, fat 9; carbohydrate takes
 * the share protein and fat leave. Each rounded to 0.1. */
void diaryday_goals(const struct diaryday_settings *s, struct diaryday_goals *out);

/* The page. Item macros are amount/100 times the per-100 g value, rounded to 0.1; totals are
 * the sums of the rounded item values (so the page adds up), rounded again against float
 * noise. Items keep the given order within their meal. Returns a new object. */
json_t *diaryday_build(const char *date, const struct diaryday_item *items, size_t count,
                       const struct diaryday_settings *s);

#endif
