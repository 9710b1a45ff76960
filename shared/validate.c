#include "validate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "password.h"
#include "uuid.h"

static const char *const meal_types[] = {"breakfast", "lunch", "dinner", "snack", NULL};

/* Upper bounds match the numeric(8,2) and varchar(255) columns in schema/. */
static const struct vrule user_register[] = {
    {"email", V_EMAIL, true, 3, 255, false, NULL},
    {"name", V_STRING, true, 1, 255, false, NULL},
    {"password", V_PASSWORD, true, 0, 0, false, NULL},
};

static const struct vrule session_create[] = {
    {"email", V_STRING, true, 1, 255, false, NULL},
    {"password", V_STRING, true, 1, PASSWORD_MAX_LEN, false, NULL},
};

static const struct vrule food_create[] = {
    {"name", V_STRING, true, 1, 255, false, NULL},
    {"calories_per_100g", V_NUMBER, true, 0, 900, false, NULL},
    {"protein_per_100g", V_NUMBER, true, 0, 100, false, NULL},
    {"carbs_per_100g", V_NUMBER, true, 0, 100, false, NULL},
    {"fat_per_100g", V_NUMBER, true, 0, 100, false, NULL},
};

static const struct vrule entry_set[] = {
    {"amount", V_NUMBER, true, 0, 100000, true, NULL},
};

static const char *const unit_systems[] = {"metric", "imperial", NULL};

static const struct vrule settings_update[] = {
    {"unit_system", V_ENUM, false, 0, 0, false, unit_systems},
    {"daily_calorie_goal", V_INTEGER, false, 1, 20000, false, NULL},
    {"protein_percentage", V_NUMBER, false, 0, 100, false, NULL},
    {"fat_percentage", V_NUMBER, false, 0, 100, false, NULL},
};

static const struct vrule weight_set[] = {
    {"weight", V_NUMBER, true, 0, 999.99, true, NULL},
};

static double num(json_t *body, const char *k)
{
    return json_number_value(json_object_get(body, k));
}

/* Macros per 100 g cannot weigh more than 100 g, and the energy they carry (4 kcal/g for
 * protein and carbohydrate, 9 for fat) must be near the stated calories: within 20% plus
 * 20 kcal, which leaves room for fibre, alcohol and rounding on labels. */
static void food_check(json_t *body, json_t *errors)
{
    double p = num(body, "protein_per_100g"), c = num(body, "carbs_per_100g"),
           f = num(body, "fat_per_100g"), kcal = num(body, "calories_per_100g");
    double from_macros = 4 * p + 4 * c + 9 * f;

    if (p + c + f > 100.0001)
        validate_add_error(errors, "protein_per_100g",
                           "protein, carbs and fat together exceed 100 g per 100 g");
    else if (fabs(kcal - from_macros) > 0.2 * from_macros + 20)
        validate_add_error(errors, "calories_per_100g",
                           "not plausible for the macros (4 kcal/g protein and carbs, 9 fat)");
}

/* Protein and fat are shares of the calorie goal; carbohydrate takes the rest. When only
 * one of the two is sent the other keeps its stored value, which the worker checks. */
static void settings_check(json_t *body, json_t *errors)
{
    json_t *p = json_object_get(body, "protein_percentage"), *f = json_object_get(body, "fat_percentage");

    if (p && f && json_number_value(p) + json_number_value(f) > 100)
        validate_add_error(errors, "fat_percentage",
                           "protein and fat percentages together exceed 100");
}

#define SCHEMA(n, r, c) {n, r, sizeof(r) / sizeof(r[0]), c}
static const struct vschema schemas[] = {
    SCHEMA("user.register", user_register, NULL),
    SCHEMA("session.create", session_create, NULL),
    SCHEMA("food.create", food_create, food_check),
    SCHEMA("diary.entry.set", entry_set, NULL),
    SCHEMA("settings.update", settings_update, settings_check),
    SCHEMA("weight.set", weight_set, NULL),
};

const struct vschema *validate_schema(const char *name)
{
    for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++)
        if (strcmp(schemas[i].name, name) == 0)
            return &schemas[i];
    return NULL;
}

void validate_add_error(json_t *errors, const char *field, const char *msg)
{
    json_array_append_new(errors, json_pack("{s:s, s:s}", "field", field, "message", msg));
}

bool validate_date(const char *s)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d, n = 0;

    if (!s || strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 ||
        s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    if (y < 1900 || m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap);
}

bool validate_email(const char *s)
{
    const char *at = s ? strchr(s, '@') : NULL;

    if (!at || at == s || strchr(at + 1, '@') || !strchr(at + 1, '.') || at[1] == '.' ||
        s[strlen(s) - 1] == '.')
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

bool validate_meal_type(const char *s)
{
    for (const char *const *m = meal_types; s && *m; m++)
        if (strcmp(*m, s) == 0)
            return true;
    return false;
}

static void check_rule(const struct vrule *r, json_t *v, json_t *errors)
{
    char msg[160];

    switch (r->kind) {
    case V_STRING:
    case V_EMAIL:
    case V_PASSWORD:
    case V_UUID:
    case V_DATE:
    case V_ENUM:
        if (!json_is_string(v)) {
            validate_add_error(errors, r->name, "must be a string");
            return;
        }
        break;
    case V_NUMBER:
        if (!json_is_number(v)) {
            validate_add_error(errors, r->name, "must be a number");
            return;
        }
        break;
    case V_INTEGER:
        if (!json_is_integer(v)) {
            validate_add_error(errors, r->name, "must be an integer");
            return;
        }
        break;
    }

    const char *s = json_string_value(v);
    double d = json_number_value(v);
    size_t len = s ? json_string_length(v) : 0;

    switch (r->kind) {
    case V_STRING:
        if (len < (size_t)r->min || len > (size_t)r->max) {
            snprintf(msg, sizeof(msg), "must be %g to %g characters long", r->min, r->max);
            validate_add_error(errors, r->name, msg);
        } else if (strlen(s) != len) {
            validate_add_error(errors, r->name, "must not contain NUL characters");
        }
        break;
    case V_EMAIL:
        if (len > (size_t)r->max || strlen(s) != len || !validate_email(s))
            validate_add_error(errors, r->name, "must be an email address");
        break;
    case V_PASSWORD:
        if (strlen(s) != len || password_policy_check(s, msg, sizeof(msg)) != 0)
            validate_add_error(errors, r->name, strlen(s) != len ? "must not contain NUL" : msg);
        break;
    case V_UUID:
        if (!uuid_valid(s))
            validate_add_error(errors, r->name, "must be a UUID");
        break;
    case V_DATE:
        if (!validate_date(s))
            validate_add_error(errors, r->name, "must be a date YYYY-MM-DD");
        break;
    case V_ENUM: {
        bool ok = false;
        for (const char *const *c = r->choices; *c && !ok; c++)
            ok = strcmp(*c, s) == 0;
        if (!ok)
            validate_add_error(errors, r->name, "is not one of the allowed values");
        break;
    }
    case V_NUMBER:
    case V_INTEGER:
        if (!isfinite(d) || d < r->min || d > r->max || (r->exclusive_min && d <= r->min)) {
            snprintf(msg, sizeof(msg), "must be %s %g and at most %g",
                     r->exclusive_min ? "more than" : "at least", r->min, r->max);
            validate_add_error(errors, r->name, msg);
        }
        break;
    }
}

json_t *validate_body(const struct vschema *s, json_t *body)
{
    json_t *errors = json_array(), *v;
    const char *key;

    if (!s) {
        validate_add_error(errors, "", "no validation rules for this body");
        return errors;
    }
    if (!json_is_object(body)) {
        validate_add_error(errors, "", "the body must be a JSON object");
        return errors;
    }
    json_object_foreach(body, key, v) {
        bool known = false;
        for (size_t i = 0; i < s->count && !known; i++)
            known = strcmp(s->rules[i].name, key) == 0;
        if (!known)
            validate_add_error(errors, key, "is not a known field");
    }
    for (size_t i = 0; i < s->count; i++) {
        v = json_object_get(body, s->rules[i].name);
        if (!v || json_is_null(v)) {
            if (s->rules[i].required)
                validate_add_error(errors, s->rules[i].name, "is required");
            continue;
        }
        check_rule(&s->rules[i], v, errors);
    }
    if (json_array_size(errors) == 0 && s->check)
        s->check(body, errors);
    if (json_array_size(errors) == 0) {
        json_decref(errors);
        return NULL;
    }
    return errors;
}
