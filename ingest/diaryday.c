#include "diaryday.h"

#include <math.h>
#include <string.h>

static const char *const meal_order[] = {"breakfast", "lunch", "dinner", "snack"};
#define MEALS (sizeof(meal_order) / sizeof(meal_order[0]))

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

json_t *diaryday_build(const char *date, const struct diaryday_item *items, size_t count,
                       const struct diaryday_settings *s)
{
    json_t *page, *meals, *lists[MEALS];
    double tk = 0, tp = 0, tc = 0, tf = 0;
    struct diaryday_goals g;

    meals = json_object();
    for (size_t i = 0; i < MEALS; i++) {
        lists[i] = json_array();
        json_object_set_new(meals, meal_order[i], lists[i]);
    }
    for (size_t i = 0; i < count; i++) {
        const struct diaryday_item *it = &items[i];
        int m = meal_index(it->meal_type);
        double k = diaryday_round1(it->kcal_100g * it->amount / 100.0),
               p = diaryday_round1(it->protein_100g * it->amount / 100.0),
               c = diaryday_round1(it->carbs_100g * it->amount / 100.0),
               f = diaryday_round1(it->fat_100g * it->amount / 100.0);

        if (m < 0)
            continue;
        json_array_append_new(lists[m], json_pack("{s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:I}",
                                                  "food_id", it->food_id ? it->food_id : "", "name",
                                                  it->name ? it->name : "", "amount", it->amount,
                                                  "calories", k, "protein", p, "carbs", c, "fat", f,
                                                  "version", (json_int_t)it->version));
        tk += k;
        tp += p;
        tc += c;
        tf += f;
    }
    diaryday_goals(s, &g);
    page = json_pack("{s:s, s:o, s:{s:f, s:f, s:f, s:f}, s:{s:f, s:f, s:f, s:f}}", "date", date,
                     "meals", meals, "totals", "calories", diaryday_round1(tk), "protein",
                     diaryday_round1(tp), "carbs", diaryday_round1(tc), "fat", diaryday_round1(tf),
                     "goals", "calories", g.calories, "protein_g", g.protein_g, "fat_g", g.fat_g,
                     "carbs_g", g.carbs_g);
    return page;
}
