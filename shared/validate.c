#include "validate.h"

#include <cyaml/cyaml.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "jscan.h"
#include "jsonw.h"
#include "password.h"
#include "textw.h"
#include "uuid.h"

#define DEFAULT_FILE "schema/api.yaml"

/* ---- the YAML document, as libcyaml loads it ---------------------------------------------- */

struct yfield {
    char *name;
    enum vkind kind;
    bool required;
    double *min, *max; /* NULL when absent */
    bool exclusive_min;
    char **choices;
    unsigned choices_count;
    char *pattern, *items, *message, *description;
};

struct yschema {
    char *name;
    char *description;
    char *check;
    struct yfield *fields;
    unsigned fields_count;
};

struct ydoc {
    struct yschema *schemas;
    unsigned schemas_count;
};

static const cyaml_strval_t kind_names[] = {
    {"string", V_STRING}, {"email", V_EMAIL},     {"password", V_PASSWORD},
    {"number", V_NUMBER}, {"integer", V_INTEGER}, {"uuid", V_UUID},
    {"date", V_DATE},     {"enum", V_ENUM},       {"array", V_ARRAY},
};

static const cyaml_schema_value_t string_entry = {
    CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 1, CYAML_UNLIMITED),
};

#define OPT (CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL)

static const cyaml_schema_field_t yfield_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER, struct yfield, name, 1, CYAML_UNLIMITED),
    CYAML_FIELD_ENUM("kind", CYAML_FLAG_DEFAULT, struct yfield, kind, kind_names,
                     sizeof(kind_names) / sizeof(kind_names[0])),
    CYAML_FIELD_BOOL("required", CYAML_FLAG_OPTIONAL, struct yfield, required),
    CYAML_FIELD_FLOAT_PTR("min", OPT, struct yfield, min),
    CYAML_FIELD_FLOAT_PTR("max", OPT, struct yfield, max),
    CYAML_FIELD_BOOL("exclusive_min", CYAML_FLAG_OPTIONAL, struct yfield, exclusive_min),
    CYAML_FIELD_SEQUENCE("choices", OPT, struct yfield, choices, &string_entry, 1, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("pattern", OPT, struct yfield, pattern, 1, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("items", OPT, struct yfield, items, 1, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("message", OPT, struct yfield, message, 1, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("description", OPT, struct yfield, description, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t yfield_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct yfield, yfield_fields),
};

static const cyaml_schema_field_t yschema_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER, struct yschema, name, 1, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("description", OPT, struct yschema, description, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("check", OPT, struct yschema, check, 1, CYAML_UNLIMITED),
    CYAML_FIELD_SEQUENCE("fields", CYAML_FLAG_POINTER, struct yschema, fields, &yfield_entry, 1,
                         CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t yschema_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct yschema, yschema_fields),
};

static const cyaml_schema_field_t ydoc_fields[] = {
    CYAML_FIELD_SEQUENCE("schemas", CYAML_FLAG_POINTER, struct ydoc, schemas, &yschema_entry, 1,
                         CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t ydoc_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct ydoc, ydoc_fields),
};

/* ---- cross-field checks, named by the rules' `check` ------------------------------------ */

static double num(json_t *body, const char *k)
{
    return json_number_value(json_object_get(body, k));
}

/* Present and not null. */
static bool has(json_t *body, const char *k)
{
    json_t *v = json_object_get(body, k);
    return v && !json_is_null(v);
}

/* Macros per 100 g cannot weigh more than 100 g, and the energy they carry (4 kcal/g for
 * protein and carbohydrate, 9 for fat) must be near the stated calories: within 20% plus
 * 20 kcal, which leaves room for fibre, alcohol and rounding on labels. */
static void food_macros(json_t *body, json_t *errors)
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
static void settings_shares(json_t *body, json_t *errors)
{
    if (json_object_size(body) == 0)
        validate_add_error(errors, "", "send at least one setting");
    else if (has(body, "protein_percentage") && has(body, "fat_percentage") &&
             num(body, "protein_percentage") + num(body, "fat_percentage") > 100)
        validate_add_error(errors, "fat_percentage",
                           "protein and fat percentages together exceed 100");
}

/* A password change is its own event (it ends every session), so it comes alone. */
static void user_update(json_t *body, json_t *errors)
{
    if (!has(body, "name") && !has(body, "email") && !has(body, "password"))
        validate_add_error(errors, "", "send at least one of name, email, password");
    else if (has(body, "password") && (has(body, "name") || has(body, "email")))
        validate_add_error(errors, "password",
                           "change the password in a request of its own, without name or email");
}

static void batch_item(json_t *body, json_t *errors)
{
    const char *op = json_string_value(json_object_get(body, "op"));

    if (op && strcmp(op, "set") == 0 && !has(body, "amount"))
        validate_add_error(errors, "amount", "is required for set");
    else if (op && strcmp(op, "remove") == 0 && has(body, "amount"))
        validate_add_error(errors, "amount", "must not be given for remove");
}

#define RANGE_MAX_DAYS 366

static void date_range(json_t *body, json_t *errors)
{
    long from, to;

    if (!validate_date_days(json_string_value(json_object_get(body, "from")), &from) ||
        !validate_date_days(json_string_value(json_object_get(body, "to")), &to))
        return;
    if (to < from)
        validate_add_error(errors, "to", "must not be before from");
    else if (to - from + 1 > RANGE_MAX_DAYS)
        validate_add_error(errors, "to", "the range may span at most 366 days");
}

static const struct {
    const char *name;
    void (*fn)(json_t *body, json_t *errors);
} checks[] = {
    {"food_macros", food_macros}, {"settings_shares", settings_shares},
    {"user_update", user_update}, {"batch_item", batch_item},
    {"date_range", date_range},
};

/* ---- the loaded rules ---------------------------------------------------------------------- */

/* What validate_load builds from one document: the public view (schemas, rules) pointing
 * into the document, and the compiled patterns. Owned by the global `loaded`. */
struct ruleset {
    char *path;
    struct ydoc *doc;
    struct vschema *schemas;
    size_t count;
    struct vrule *rules;
    regex_t *res;
    size_t nres;
};

static struct ruleset *loaded;
static pthread_once_t lazy_once = PTHREAD_ONCE_INIT;

static const cyaml_config_t yaml_config_base = {
    .mem_fn = cyaml_mem,
    .log_level = CYAML_LOG_ERROR,
    .flags = CYAML_CFG_DEFAULT,
};

static void ruleset_free(struct ruleset *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->nres; i++)
        regfree(&rs->res[i]);
    free(rs->res);
    free(rs->rules);
    free(rs->schemas);
    if (rs->doc)
        cyaml_free(&yaml_config_base, &ydoc_schema, rs->doc, 0);
    free(rs->path);
    free(rs);
}

/* libcyaml tells why a document is refused only through its log function: the first error
 * line is kept for the caller. */
struct yaml_capture {
    char text[256];
};

static void capture_cb(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    struct yaml_capture *cap = ctx;
    char line[256];
    size_t n;

    if (level < CYAML_LOG_ERROR || cap->text[0])
        return;
    vsnprintf(line, sizeof(line), fmt, args);
    n = strcspn(line, "\n");
    line[n] = '\0';
    snprintf(cap->text, sizeof(cap->text), "%s", strncmp(line, "Load: ", 6) ? line : line + 6);
}

/* Builds the public view of one field; -1 with err when the field makes no sense. */
static int build_rule(struct ruleset *rs, const struct yschema *ys, const struct yfield *yf,
                      struct vrule *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->name = yf->name;
    r->kind = yf->kind;
    r->required = yf->required;
    r->has_min = yf->min != NULL;
    r->has_max = yf->max != NULL;
    r->min = yf->min ? *yf->min : 0;
    r->max = yf->max ? *yf->max : 0;
    r->exclusive_min = yf->exclusive_min;
    r->choices = (const char *const *)yf->choices;
    r->choice_count = yf->choices_count;
    r->pattern = yf->pattern;
    r->items = yf->items;
    r->message = yf->message;
    r->description = yf->description;
    if (yf->kind == V_ENUM && yf->choices_count == 0) {
        snprintf(err, errlen, "%s.%s: an enum needs choices", ys->name, yf->name);
        return -1;
    }
    if (yf->kind == V_ARRAY && !yf->items) {
        snprintf(err, errlen, "%s.%s: an array needs items", ys->name, yf->name);
        return -1;
    }
    if (r->has_min && r->has_max && r->min > r->max) {
        snprintf(err, errlen, "%s.%s: min is above max", ys->name, yf->name);
        return -1;
    }
    if (yf->pattern) {
        regex_t *re = &rs->res[rs->nres];
        int rc = regcomp(re, yf->pattern, REG_EXTENDED | REG_NOSUB);

        if (rc != 0) {
            char why[128];
            regerror(rc, re, why, sizeof(why));
            snprintf(err, errlen, "%s.%s: pattern: %s", ys->name, yf->name, why);
            return -1;
        }
        rs->nres++;
        r->re_ = re;
    }
    return 0;
}

static int build(struct ruleset *rs, char *err, size_t errlen)
{
    size_t nrules = 0, k = 0;

    for (unsigned i = 0; i < rs->doc->schemas_count; i++)
        nrules += rs->doc->schemas[i].fields_count;
    rs->schemas = calloc(rs->doc->schemas_count, sizeof(*rs->schemas));
    rs->rules = calloc(nrules, sizeof(*rs->rules));
    rs->res = calloc(nrules, sizeof(*rs->res));
    if (!rs->schemas || !rs->rules || !rs->res) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < rs->doc->schemas_count; i++) {
        const struct yschema *ys = &rs->doc->schemas[i];
        struct vschema *s = &rs->schemas[i];

        for (size_t j = 0; j < i; j++)
            if (strcmp(rs->schemas[j].name, ys->name) == 0) {
                snprintf(err, errlen, "schema %s is declared twice", ys->name);
                return -1;
            }
        s->name = ys->name;
        s->description = ys->description;
        s->check = ys->check;
        s->rules = &rs->rules[k];
        s->count = ys->fields_count;
        if (ys->check) {
            for (size_t c = 0; c < sizeof(checks) / sizeof(checks[0]); c++)
                if (strcmp(checks[c].name, ys->check) == 0)
                    s->check_fn = checks[c].fn;
            if (!s->check_fn) {
                snprintf(err, errlen, "%s: unknown check %s", ys->name, ys->check);
                return -1;
            }
        }
        for (unsigned f = 0; f < ys->fields_count; f++) {
            for (unsigned g = 0; g < f; g++)
                if (strcmp(ys->fields[g].name, ys->fields[f].name) == 0) {
                    snprintf(err, errlen, "%s: field %s is declared twice", ys->name,
                             ys->fields[f].name);
                    return -1;
                }
            if (build_rule(rs, ys, &ys->fields[f], &rs->rules[k++], err, errlen) != 0)
                return -1;
        }
        rs->count++;
    }
    return 0;
}

int validate_load(const char *path, char *err, size_t errlen)
{
    struct yaml_capture cap = {{0}};
    cyaml_config_t cfg = yaml_config_base;
    struct ruleset *rs = calloc(1, sizeof(*rs));
    char why[400];
    cyaml_err_t rc;

    if (!rs || !(rs->path = strdup(path))) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    cfg.log_fn = capture_cb;
    cfg.log_ctx = &cap;
    rc = cyaml_load_file(path, &cfg, &ydoc_schema, (cyaml_data_t **)&rs->doc, NULL);
    if (rc != CYAML_OK || !rs->doc) {
        snprintf(err, errlen, "%s: %s", path,
                 cap.text[0]      ? cap.text
                 : rc != CYAML_OK ? cyaml_strerror(rc)
                                  : "empty document");
        goto fail;
    }
    if (build(rs, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        goto fail;
    }
    ruleset_free(loaded);
    loaded = rs;
    return 0;
fail:
    ruleset_free(rs);
    return -1;
}

const char *validate_source(void)
{
    return loaded ? loaded->path : NULL;
}

void validate_unload(void)
{
    ruleset_free(loaded);
    loaded = NULL;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The first rules file among the places the header lists, into out; false when none. */
static bool find_default(char *out, size_t outlen)
{
    const char *env = config_str("DIARY_API_SCHEMA");
    char exe[2048], *slash;
    ssize_t n;

    if (env && *env) {
        snprintf(out, outlen, "%s", env);
        return true;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 1; up <= 3 && (slash = strrchr(exe, '/')) != NULL; up++) {
            *slash = '\0';
            if ((size_t)snprintf(out, outlen, "%s/../%s", exe, DEFAULT_FILE) < outlen &&
                is_file(out))
                return true;
        }
    }
    if (is_file("/opt/diary/" DEFAULT_FILE)) {
        snprintf(out, outlen, "/opt/diary/%s", DEFAULT_FILE);
        return true;
    }
    if (is_file(DEFAULT_FILE)) {
        snprintf(out, outlen, "%s", DEFAULT_FILE);
        return true;
    }
    return false;
}

int validate_load_default(char *err, size_t errlen)
{
    char path[4096];

    if (!find_default(path, sizeof(path))) {
        snprintf(err, errlen, "no %s found (set DIARY_API_SCHEMA to its path)", DEFAULT_FILE);
        return -1;
    }
    return validate_load(path, err, errlen);
}

static void lazy_load(void)
{
    char err[512];

    if (!loaded && validate_load_default(err, sizeof(err)) != 0)
        fprintf(stderr, "validate: %s\n", err);
}

const struct vschema *validate_schema(const char *name)
{
    if (!loaded)
        pthread_once(&lazy_once, lazy_load);
    for (size_t i = 0; loaded && name && i < loaded->count; i++)
        if (strcmp(loaded->schemas[i].name, name) == 0)
            return &loaded->schemas[i];
    return NULL;
}

size_t validate_schema_count(void)
{
    if (!loaded)
        pthread_once(&lazy_once, lazy_load);
    return loaded ? loaded->count : 0;
}

const struct vschema *validate_schema_at(size_t i)
{
    return loaded && i < loaded->count ? &loaded->schemas[i] : NULL;
}

const struct vrule *validate_rule(const struct vschema *s, const char *name)
{
    for (size_t i = 0; s && name && i < s->count; i++)
        if (strcmp(s->rules[i].name, name) == 0)
            return &s->rules[i];
    return NULL;
}

/* ---- formats ------------------------------------------------------------------------------ */

void validate_add_error(json_t *errors, const char *field, const char *msg)
{
    json_array_append_new(errors, json_pack("{s:s, s:s}", "field", field, "message", msg));
}

/* Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static long days_from_civil(long y, unsigned m, unsigned d)
{
    long era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long)doe - 719468;
}

static bool parse_date(const char *s, int *y, int *m, int *d)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap;

    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    /* Digits checked above: read them directly (ingest checks every path date with this). */
    *y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    *m = (s[5] - '0') * 10 + (s[6] - '0');
    *d = (s[8] - '0') * 10 + (s[9] - '0');
    if (*y < 1900 || *m < 1 || *m > 12 || *d < 1)
        return false;
    leap = (*y % 4 == 0 && *y % 100 != 0) || *y % 400 == 0;
    return *d <= days[*m - 1] + (*m == 2 && leap);
}

bool validate_date(const char *s)
{
    int y, m, d;
    return parse_date(s, &y, &m, &d);
}

bool validate_date_days(const char *s, long *days)
{
    int y, m, d;

    if (!parse_date(s, &y, &m, &d))
        return false;
    *days = days_from_civil(y, (unsigned)m, (unsigned)d);
    return true;
}

void validate_date_format(long days, char *out, size_t outlen)
{
    /* civil_from_days, the inverse of days_from_civil. */
    long z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097, y;
    unsigned doe = (unsigned)(z - era * 146097),
             yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365,
             doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153,
             d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;

    y = (long)yoe + era * 400 + (m <= 2);
    snprintf(out, outlen, "%04ld-%02u-%02u", y, m, d);
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

/* The meal types are also the path rule `meal` in schema/api.yaml and a CHECK in the schema;
 * this copy serves the worker, which does not load the API rules. */
bool validate_meal_type(const char *s)
{
    static const char *const meal_types[] = {"breakfast", "lunch", "dinner", "snack"};

    for (size_t i = 0; s && i < sizeof(meal_types) / sizeof(meal_types[0]); i++)
        if (strcmp(meal_types[i], s) == 0)
            return true;
    return false;
}

/* ---- checking ----------------------------------------------------------------------------- */

/* "at least 0 and at most 900", "more than 0", "at most 100". */
static void bounds_text(const struct vrule *r, const char *unit, char *out, size_t outlen)
{
    if (r->has_min && r->has_max)
        snprintf(out, outlen, "%s %g and at most %g%s", r->exclusive_min ? "more than" : "at least",
                 r->min, r->max, unit);
    else if (r->has_min)
        snprintf(out, outlen, "%s %g%s", r->exclusive_min ? "more than" : "at least", r->min, unit);
    else
        snprintf(out, outlen, "at most %g%s", r->max, unit);
}

static void fail_rule(const struct vrule *r, json_t *errors, const char *fallback)
{
    validate_add_error(errors, r->name, r->message ? r->message : fallback);
}

static bool type_ok(const struct vrule *r, json_t *v, json_t *errors)
{
    switch (r->kind) {
    case V_NUMBER:
        if (json_is_number(v))
            return true;
        validate_add_error(errors, r->name, "must be a number");
        return false;
    case V_INTEGER:
        if (json_is_integer(v))
            return true;
        validate_add_error(errors, r->name, "must be an integer");
        return false;
    case V_ARRAY:
        if (json_is_array(v))
            return true;
        validate_add_error(errors, r->name, "must be an array");
        return false;
    default:
        if (!json_is_string(v)) {
            validate_add_error(errors, r->name, "must be a string");
            return false;
        }
        if (strlen(json_string_value(v)) != json_string_length(v)) {
            validate_add_error(errors, r->name, "must not contain NUL characters");
            return false;
        }
        return true;
    }
}

static bool in_bounds(const struct vrule *r, double d)
{
    return !(r->has_min && (d < r->min || (r->exclusive_min && d <= r->min))) &&
           !(r->has_max && d > r->max);
}

static void check_rule(const struct vrule *r, json_t *v, json_t *errors)
{
    char msg[160], b[120];
    const char *s;
    size_t len;

    if (!type_ok(r, v, errors))
        return;
    s = json_string_value(v);
    len = s ? json_string_length(v) : 0;
    switch (r->kind) {
    case V_STRING:
        if (!in_bounds(r, (double)len)) {
            bounds_text(r, " characters long", b, sizeof(b));
            snprintf(msg, sizeof(msg), "must be %s", b);
            fail_rule(r, errors, msg);
        } else if (r->re_ && regexec(r->re_, s, 0, NULL, 0) != 0) {
            fail_rule(r, errors, "is not in the expected form");
        }
        break;
    case V_EMAIL:
        if (!in_bounds(r, (double)len) || !validate_email(s))
            fail_rule(r, errors, "must be an email address");
        break;
    case V_PASSWORD:
        if (password_policy_check(s, msg, sizeof(msg)) != 0)
            validate_add_error(errors, r->name, r->message ? r->message : msg);
        break;
    case V_UUID:
        if (!uuid_valid(s))
            fail_rule(r, errors, "must be a UUID");
        break;
    case V_DATE:
        if (!validate_date(s))
            fail_rule(r, errors, "must be a date YYYY-MM-DD");
        break;
    case V_ENUM: {
        bool ok = false;
        for (size_t i = 0; i < r->choice_count && !ok; i++)
            ok = strcmp(r->choices[i], s) == 0;
        if (!ok) {
            size_t n = (size_t)snprintf(msg, sizeof(msg), "must be one of");
            for (size_t i = 0; i < r->choice_count && n < sizeof(msg); i++)
                n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s %s", i ? "," : "",
                                      r->choices[i]);
            fail_rule(r, errors, msg);
        }
        break;
    }
    case V_NUMBER:
    case V_INTEGER:
        if (!isfinite(json_number_value(v)) || !in_bounds(r, json_number_value(v))) {
            bounds_text(r, "", b, sizeof(b));
            snprintf(msg, sizeof(msg), "must be %s", b);
            fail_rule(r, errors, msg);
        }
        break;
    case V_ARRAY:
        if (!in_bounds(r, (double)json_array_size(v))) {
            bounds_text(r, " items", b, sizeof(b));
            snprintf(msg, sizeof(msg), "must have %s", b);
            fail_rule(r, errors, msg);
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
    json_object_foreach(body, key, v)
    {
        if (!validate_rule(s, key))
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
    if (json_array_size(errors) == 0 && s->check_fn)
        s->check_fn(body, errors);
    if (json_array_size(errors) == 0) {
        json_decref(errors);
        return NULL;
    }
    return errors;
}

bool validate_numbers_only(const struct vschema *s)
{
    if (!s || s->check_fn || s->count == 0 || s->count > VALIDATE_NUMBERS_MAX)
        return false;
    for (size_t i = 0; i < s->count; i++)
        if (s->rules[i].kind != V_NUMBER && s->rules[i].kind != V_INTEGER)
            return false;
    return true;
}

/* The value of a number token as jansson reads it: an integer token is an int64_t (jscan
 * checked the range), any other a double from strtod (jscan checked it does not overflow).
 * Its text as jansson dumps it into out. false when the token is too long to copy. */
_Static_assert(sizeof(((struct vnumber *)0)->text) >= JSONW_REAL_MAX,
               "a vnumber holds any real jsonw_real_text writes");

static bool number_of(const struct jscan_value *v, struct vnumber *out)
{
    char tok[64];
    struct textw w;
    long n;

    if (v->type == JSCAN_INTEGER) {
        out->integer = true;
        out->ivalue = v->integer;
        out->value = (double)v->integer;
        textw_init(&w, out->text, sizeof(out->text));
        textw_i64(&w, v->integer);
        n = textw_done(&w);
        if (n <= 0)
            return false;
        out->len = (size_t)n;
        return true;
    }
    if (v->len >= sizeof(tok))
        return false;
    memcpy(tok, v->start, v->len);
    tok[v->len] = '\0';
    out->integer = false;
    out->ivalue = 0;
    out->value = strtod(tok, NULL);
    out->len = jsonw_real_text(out->value, out->text, sizeof(out->text));
    return out->len > 0;
}

bool validate_numbers(const struct vschema *s, const char *buf, size_t len, struct vnumber *out,
                      size_t *n)
{
    struct jscan js;
    struct jscan_value v;
    char key[64];
    size_t keylen, count = 0;
    bool seen[VALIDATE_NUMBERS_MAX] = {false};
    int r;

    if (!validate_numbers_only(s))
        return false;
    jscan_init(&js, buf, len);
    for (r = jscan_member(&js, true, key, sizeof(key), &keylen); r > 0;
         r = jscan_member(&js, false, key, sizeof(key), &keylen)) {
        size_t i = 0;

        while (i < s->count && (keylen >= sizeof(key) || strcmp(s->rules[i].name, key) != 0))
            i++;
        /* An unknown or repeated field, or one whose value is not a number of its kind: the
         * general path says what is wrong. */
        if (i == s->count || seen[i] || !jscan_value(&js, 2, &v) ||
            (v.type != JSCAN_INTEGER && v.type != JSCAN_REAL) ||
            (s->rules[i].kind == V_INTEGER && v.type != JSCAN_INTEGER))
            return false;
        seen[i] = true;
        out[count].rule = &s->rules[i];
        if (!number_of(&v, &out[count]) || !isfinite(out[count].value) ||
            !in_bounds(&s->rules[i], out[count].value))
            return false;
        count++;
    }
    if (r < 0 || !jscan_end(&js))
        return false;
    for (size_t i = 0; i < s->count; i++)
        if (s->rules[i].required && !seen[i])
            return false;
    *n = count;
    return true;
}

/* ---- query strings ------------------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes n bytes of s (application/x-www-form-urlencoded) into a new string; NULL when a
 * %-escape is broken or decodes to NUL. The caller frees it. */
static char *url_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            *o++ = ' ';
        } else if (s[i] == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi | lo) == 0) {
                free(out);
                return NULL;
            }
            *o++ = (char)(hi << 4 | lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

/* A query value as JSON: a number for numeric rules when it is written as one. */
static json_t *typed_value(const struct vrule *r, const char *v)
{
    char *end;

    if (r && (r->kind == V_INTEGER || r->kind == V_NUMBER) && *v &&
        strspn(v, "-+.0123456789eE") == strlen(v)) {
        if (r->kind == V_INTEGER &&
            strspn(v + (*v == '-'), "0123456789") == strlen(v + (*v == '-')) && strlen(v) <= 18)
            return json_integer(strtoll(v, NULL, 10));
        if (r->kind == V_NUMBER) {
            double d = strtod(v, &end);
            if (*end == '\0' && isfinite(d))
                return json_real(d);
        }
    }
    return json_string(v);
}

json_t *validate_query(const struct vschema *s, const char *query, json_t **out)
{
    json_t *obj = json_object(), *errors = json_array(), *more;
    const char *p = query ? query : "";

    *out = obj;
    if (!obj || !errors) {
        json_decref(errors);
        return NULL;
    }
    while (*p) {
        size_t seg = strcspn(p, "&"), klen = strcspn(p, "=");
        char *key, *val;

        if (klen > seg)
            klen = seg;
        if (seg > 0) {
            key = url_decode(p, klen);
            val = url_decode(p + klen + (klen < seg), seg - klen - (klen < seg));
            if (!key || !val)
                validate_add_error(errors, key ? key : "", "is not correctly URL-encoded");
            else if (json_object_get(obj, key))
                validate_add_error(errors, key, "is given more than once");
            else
                json_object_set_new(obj, key, typed_value(validate_rule(s, key), val));
            free(key);
            free(val);
        }
        p += seg + (p[seg] == '&');
    }
    if (json_array_size(errors) > 0)
        return errors;
    json_decref(errors);
    more = validate_body(s, obj);
    return more;
}

/* ---- JSON Schema -------------------------------------------------------------------------- */

static json_t *bound(double v)
{
    return v == floor(v) && fabs(v) < 1e15 ? json_integer((json_int_t)v) : json_real(v);
}

static json_t *property_schema(const struct vrule *r)
{
    json_t *p = json_object();
    bool is_string = r->kind != V_NUMBER && r->kind != V_INTEGER && r->kind != V_ARRAY;

    json_object_set_new(p, "type",
                        json_string(r->kind == V_NUMBER    ? "number"
                                    : r->kind == V_INTEGER ? "integer"
                                    : r->kind == V_ARRAY   ? "array"
                                                           : "string"));
    switch (r->kind) {
    case V_EMAIL:
        json_object_set_new(p, "format", json_string("email"));
        break;
    case V_PASSWORD:
        json_object_set_new(p, "format", json_string("password"));
        json_object_set_new(p, "minLength", json_integer(PASSWORD_MIN_LEN));
        json_object_set_new(p, "maxLength", json_integer(PASSWORD_MAX_LEN));
        break;
    case V_UUID:
        json_object_set_new(p, "format", json_string("uuid"));
        break;
    case V_DATE:
        json_object_set_new(p, "format", json_string("date"));
        break;
    case V_ENUM: {
        json_t *e = json_array();
        for (size_t i = 0; i < r->choice_count; i++)
            json_array_append_new(e, json_string(r->choices[i]));
        json_object_set_new(p, "enum", e);
        break;
    }
    case V_ARRAY: {
        char ref[160];
        snprintf(ref, sizeof(ref), "#/components/schemas/%s", r->items);
        json_object_set_new(p, "items", json_pack("{s:s}", "$ref", ref));
        break;
    }
    default:
        break;
    }
    if (r->has_min) {
        const char *k = r->kind == V_ARRAY ? "minItems"
                        : is_string        ? "minLength"
                        : r->exclusive_min ? "exclusiveMinimum"
                                           : "minimum";
        json_object_set_new(p, k, bound(r->min));
    }
    if (r->has_max)
        json_object_set_new(p,
                            r->kind == V_ARRAY ? "maxItems"
                            : is_string        ? "maxLength"
                                               : "maximum",
                            bound(r->max));
    if (r->pattern)
        json_object_set_new(p, "pattern", json_string(r->pattern));
    if (r->description)
        json_object_set_new(p, "description", json_string(r->description));
    return p;
}

json_t *validate_json_schema(const struct vschema *s)
{
    json_t *o, *props, *req;

    if (!s)
        return NULL;
    o = json_object();
    props = json_object();
    req = json_array();
    json_object_set_new(o, "type", json_string("object"));
    if (s->description)
        json_object_set_new(o, "description", json_string(s->description));
    for (size_t i = 0; i < s->count; i++) {
        json_object_set_new(props, s->rules[i].name, property_schema(&s->rules[i]));
        if (s->rules[i].required)
            json_array_append_new(req, json_string(s->rules[i].name));
    }
    if (json_array_size(req) > 0)
        json_object_set_new(o, "required", req);
    else
        json_decref(req);
    json_object_set_new(o, "properties", props);
    json_object_set_new(o, "additionalProperties", json_false());
    return o;
}
