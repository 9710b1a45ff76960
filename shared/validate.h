/* Validation of request bodies, query strings and path parameters from declarative rules:
 * schema/api.yaml, read with libcyaml, holds one schema per body (its fields: kind, bounds,
 * required, choices, pattern, message) and names the cross-field checks implemented here.
 * The same rules give the JSON Schema that docs/openapi.yaml shows (validate_json_schema).
 * Pure: jansson, libcyaml and the C library only; no I/O except reading the rules file.
 *
 * The rules are loaded once per process: explicitly with validate_load (diary-ingest does at
 * start and refuses to start without them), or on the first validate_schema call from the
 * first file found among $DIARY_API_SCHEMA, schema/api.yaml above the executable's folder
 * (up to three levels: build/bin, build/san/bin, build/san/tests), /opt/diary/schema/api.yaml
 * and ./schema/api.yaml. Loading is not thread-safe against concurrent validation: load
 * before starting threads (the lazy first load itself is guarded by pthread_once). */
#ifndef DIARY_VALIDATE_H
#define DIARY_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vkind {
    V_STRING,
    V_EMAIL,
    V_PASSWORD,
    V_NUMBER,
    V_INTEGER,
    V_UUID,
    V_DATE,
    V_ENUM,
    V_ARRAY,
};

/* One field. The strings point into the loaded rules and live until validate_unload. */
struct vrule {
    const char *name;
    enum vkind kind;
    bool required;
    bool has_min, has_max;
    double min, max;            /* numbers: inclusive bounds; strings: bytes; arrays: items */
    bool exclusive_min;         /* numbers: min itself is not allowed */
    const char *const *choices; /* V_ENUM: choice_count values */
    size_t choice_count;
    const char *pattern;     /* strings: POSIX ERE the value must match, or NULL */
    const char *items;       /* V_ARRAY: schema name of each element, or NULL */
    const char *message;     /* the rule's own error message, or NULL */
    const char *description; /* or NULL */
    const void *re_;         /* private: the compiled pattern */
};

struct vschema {
    const char *name;
    const char *description; /* or NULL */
    const char *check;       /* the cross-field check's name, or NULL */
    const struct vrule *rules;
    size_t count;
    /* The cross-field check, run after every field passed; adds to errors. May be NULL. */
    void (*check_fn)(json_t *body, json_t *errors);
};

/* Loads the rules from path, replacing any loaded before. 0, or -1 with err (the file, and
 * what is wrong: YAML, an unknown kind or check, a bad pattern, a name used twice). */
int validate_load(const char *path, char *err, size_t errlen) __attribute__((warn_unused_result));

/* Loads the rules from the first file found where the comment at the top says. */
int validate_load_default(char *err, size_t errlen) __attribute__((warn_unused_result));

/* The path the rules were loaded from, or NULL when none are loaded. */
const char *validate_source(void);

/* Frees the loaded rules (pointers from validate_schema become invalid). */
void validate_unload(void);

/* The schema called name ("user.register", "session.create", "food.create",
 * "diary.entry.set", "settings.update", "weight.set", ...), or NULL (also when no rules
 * could be loaded: then the reason went to stderr once). */
const struct vschema *validate_schema(const char *name);

/* Every loaded schema, in file order: count, and the i-th. */
size_t validate_schema_count(void);
const struct vschema *validate_schema_at(size_t i);

/* The rule called name in s, or NULL. */
const struct vrule *validate_rule(const struct vschema *s, const char *name);

/* Checks body against s. Returns NULL when valid, else a new JSON array of
 * {"field", "message"} objects (the caller decrefs it). Unknown fields are errors. */
json_t *validate_body(const struct vschema *s, json_t *body);

/* The most members a numbers-only body (validate_numbers) may have. */
#define VALIDATE_NUMBERS_MAX 4

/* One member of a body read by validate_numbers. */
struct vnumber {
    const struct vrule *rule; /* its field */
    bool integer;             /* written as an integer: jansson would read a json_integer */
    int64_t ivalue;           /* its value when integer */
    double value;             /* its value as json_number_value gives it */
    char text[32];            /* the number as json_dumpb writes the value jansson reads */
    size_t len;
};

/* True when every field of s is a number or an integer (at most VALIDATE_NUMBERS_MAX) and s
 * has no cross-field check: the schemas validate_numbers reads. */
bool validate_numbers_only(const struct vschema *s);

/* The fast path for a numbers-only schema: reads buf without building a tree (shared/jscan)
 * and returns true, with the members in out (VALIDATE_NUMBERS_MAX of them) in body order and
 * their count in *n, exactly when json_loadb(JSON_REJECT_DUPLICATES) reads buf as an object
 * of numbers that validate_body accepts. false for everything else, and for two kinds of
 * bodies that are valid but unusual (a member null, a number token of 64 bytes or more): the
 * caller then takes the general path, which accepts them or says what is wrong. */
bool validate_numbers(const struct vschema *s, const char *buf, size_t len, struct vnumber *out,
                      size_t *n) __attribute__((warn_unused_result));

/* Parses a URL query string ("a=1&b=x%20y", NULL or "" for none) into a new object in *out
 * (the caller decrefs it), typed by the rules of s: an integer or number field whose value is
 * a plain decimal number becomes a JSON number, everything else stays a string, so that the
 * usual rules and messages apply. Then validates it like a body. Returns NULL when valid,
 * else the error array; *out is set either way (NULL only when memory ran out). A repeated
 * or undecodable parameter is an error. */
json_t *validate_query(const struct vschema *s, const char *query, json_t **out);

/* The JSON Schema (OpenAPI 3.1 dialect) of s as an object: type, additionalProperties false,
 * required, and per property its type, bounds, format, enum, pattern and description.
 * A new object; NULL when s is NULL. */
json_t *validate_json_schema(const struct vschema *s);

/* Pure helpers, also used by the worker and diaryctl. */
bool validate_date(const char *s); /* YYYY-MM-DD, a real calendar day, years 1900-9999 */
bool validate_email(const char *s);
bool validate_meal_type(const char *s); /* breakfast, lunch, dinner, snack */

/* Days since 1970-01-01 of a validate_date day; false when s is not one. */
bool validate_date_days(const char *s, long *days);
/* The YYYY-MM-DD form of a day number from validate_date_days; out of at least 11 bytes. */
void validate_date_format(long days, char *out, size_t outlen);

/* Appends {"field": field, "message": msg} to errors. */
void validate_add_error(json_t *errors, const char *field, const char *msg);

#endif
