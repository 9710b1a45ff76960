/* Request body validation from declarative rules: one table row per field (kind, bounds,
 * required), one table per body. Pure: jansson only. The rules are listed in validate.c and
 * documented in docs/openapi.yaml. */
#ifndef DIARY_VALIDATE_H
#define DIARY_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum vkind { V_STRING, V_EMAIL, V_PASSWORD, V_NUMBER, V_INTEGER, V_UUID, V_DATE, V_ENUM };

struct vrule {
    const char *name;
    enum vkind kind;
    bool required;
    double min, max;             /* numbers: inclusive bounds; strings: length bounds */
    bool exclusive_min;          /* numbers: min itself is not allowed */
    const char *const *choices;  /* V_ENUM: NULL-terminated */
};

struct vschema {
    const char *name;
    const struct vrule *rules;
    size_t count;
    /* Cross-field check after every field passed; adds to errors. May be NULL. */
    void (*check)(json_t *body, json_t *errors);
};

/* The schema called name ("user.register", "session.create", "food.create",
 * "diary.entry.set", ...), or NULL. */
const struct vschema *validate_schema(const char *name);

/* Checks body against s. Returns NULL when valid, else a new JSON array of
 * {"field", "message"} objects (the caller decrefs it). Unknown fields are errors. */
json_t *validate_body(const struct vschema *s, json_t *body);

/* Pure helpers, also used for path parameters. */
bool validate_date(const char *s);      /* YYYY-MM-DD, a real calendar day, years 1900-9999 */
bool validate_email(const char *s);
bool validate_meal_type(const char *s); /* breakfast, lunch, dinner, snack */

/* Appends {"field": field, "message": msg} to errors. */
void validate_add_error(json_t *errors, const char *field, const char *msg);

#endif
