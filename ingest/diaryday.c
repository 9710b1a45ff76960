#include "diaryday.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

static const char *const meal_order[] = {"breakfast", "lunch", "dinner", "snack"};
#define MEALS (sizeof(meal_order) / sizeof(meal_order[0]))

struct macros {
    double kcal, protein, carbs, fat;
};

double diaryday_round1(double v)
{
    double r = round(v * 10.0) / 10.0;
    return r == 0.0 ? 0.0 : r; /* no "-0" on the page */
}

void diaryday_goals(const struct diaryday_settings *s, struct diaryday_goals *out)
{
    double kcal = DIARYDAY_DEFAULT_KCAL, p = DIARYDAY_DEFAULT_PROTEIN_PCT,
           f = DIARYDAY_DEFAULT_FAT_PCT, c;

    if (s && s->present) {
        kcal = s->daily_kcal;
        p = s->protein_pct;
        f = s->fat_pct;
    }
    c = 100.0 - p - f;
    if (c < 0)
        c = 0;
    out->calories = diaryday_round1(kcal);
    out->protein_g = diaryday_round1(kcal * p / 100.0 / 4.0);
    out->fat_g = diaryday_round1(kcal * f / 100.0 / 9.0);
    out->carbs_g = diaryday_round1(kcal * c / 100.0 / 4.0);
}

static int meal_index(const char *m)
{
    for (size_t i = 0; m && i < MEALS; i++)
        if (strcmp(meal_order[i], m) == 0)
            return (int)i;
    return -1;
}

/* One entry's macros, each rounded as the page shows it. */
static struct macros scale(double amount, double kcal, double p, double c, double f)
{
    struct macros m = {
        diaryday_round1(kcal * amount / 100.0),
        diaryday_round1(p * amount / 100.0),
        diaryday_round1(c * amount / 100.0),
        diaryday_round1(f * amount / 100.0),
    };
    return m;
}

static void add(struct macros *sum, const struct macros *m)
{
    sum->kcal += m->kcal;
    sum->protein += m->protein;
    sum->carbs += m->carbs;
    sum->fat += m->fat;
}

static json_t *totals_json(const struct macros *t)
{
    return json_pack("{s:f, s:f, s:f, s:f}", "calories", diaryday_round1(t->kcal), "protein",
                     diaryday_round1(t->protein), "carbs", diaryday_round1(t->carbs), "fat",
                     diaryday_round1(t->fat));
}

static json_t *goals_json(const struct diaryday_goals *g)
{
    return json_pack("{s:f, s:f, s:f, s:f}", "calories", g->calories, "protein_g", g->protein_g,
                     "fat_g", g->fat_g, "carbs_g", g->carbs_g);
}

static json_t *percent(double total, double goal)
{
    return goal > 0 ? json_real(diaryday_round1(diaryday_round1(total) * 100.0 / goal))
                    : json_null();
}

json_t *diaryday_build(const char *date, const struct diaryday_item *items, size_t count,
                       const struct diaryday_settings *s)
{
    json_t *meals, *meal_totals, *lists[MEALS];
    struct macros day = {0}, per_meal[MEALS];
    struct diaryday_goals g;

    memset(per_meal, 0, sizeof(per_meal));
    meals = json_object();
    for (size_t i = 0; i < MEALS; i++) {
        lists[i] = json_array();
        json_object_set_new(meals, meal_order[i], lists[i]);
    }
    for (size_t i = 0; i < count; i++) {
        const struct diaryday_item *it = &items[i];
        int m = meal_index(it->meal_type);
        struct macros x =
            scale(it->amount, it->kcal_100g, it->protein_100g, it->carbs_100g, it->fat_100g);
        json_t *entry;

        if (m < 0)
            continue;
        entry = json_pack("{s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:I}", "food_id",
                          it->food_id ? it->food_id : "", "name", it->name ? it->name : "",
                          "amount", it->amount, "calories", x.kcal, "protein", x.protein, "carbs",
                          x.carbs, "fat", x.fat, "version", (json_int_t)it->version);
        if (it->id)
            json_object_set_new(entry, "id", json_string(it->id));
        json_array_append_new(lists[m], entry);
        add(&per_meal[m], &x);
        add(&day, &x);
    }
    meal_totals = json_object();
    for (size_t i = 0; i < MEALS; i++)
        json_object_set_new(meal_totals, meal_order[i], totals_json(&per_meal[i]));
    diaryday_goals(s, &g);
    return json_pack("{s:s, s:o, s:o, s:o, s:o, s:{s:o, s:o, s:o, s:o}}", "date", date, "meals",
                     meals, "meal_totals", meal_totals, "totals", totals_json(&day), "goals",
                     goals_json(&g), "progress", "calories", percent(day.kcal, g.calories),
                     "protein", percent(day.protein, g.protein_g), "carbs",
                     percent(day.carbs, g.carbs_g), "fat", percent(day.fat, g.fat_g));
}

json_t *diaryday_summaries(long from, long to, const struct diaryday_row *rows, size_t count,
                           const struct diaryday_settings *s)
{
    size_t ndays;
    struct macros *sums;
    long *entries;
    json_t *days;
    struct diaryday_goals g;

    if (to < from)
        return NULL;
    ndays = (size_t)(to - from + 1);
    sums = calloc(ndays, sizeof(*sums));
    entries = calloc(ndays, sizeof(*entries));
    if (!sums || !entries) {
        free(sums);
        free(entries);
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        const struct diaryday_row *r = &rows[i];
        struct macros x;

        if (r->day < from || r->day > to)
            continue;
        x = scale(r->amount, r->kcal_100g, r->protein_100g, r->carbs_100g, r->fat_100g);
        add(&sums[r->day - from], &x);
        entries[r->day - from]++;
    }
    days = json_array();
    for (size_t d = 0; d < ndays; d++) {
        char date[16];
        json_t *day, *t = totals_json(&sums[d]);

        validate_date_format(from + (long)d, date, sizeof(date));
        day = json_pack("{s:s}", "date", date);
        json_object_update(day, t);
        json_decref(t);
        json_object_set_new(day, "entries", json_integer(entries[d]));
        json_array_append_new(days, day);
    }
    free(sums);
    free(entries);
    diaryday_goals(s, &g);
    {
        char f[16], t[16];
        validate_date_format(from, f, sizeof(f));
        validate_date_format(to, t, sizeof(t));
        return json_pack("{s:s, s:s, s:o, s:o}", "from", f, "to", t, "goals", goals_json(&g),
                         "days", days);
    }
}
