#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "validate.h"

/* Runs schema name on json text; returns the error array (or NULL) and checks that the
 * field list names want_field when given. */
static json_t *run(const char *name, const char *text)
{
    json_error_t jerr;
    json_t *body = json_loads(text, 0, &jerr), *errs;

    assert_non_null(body);
    errs = validate_body(validate_schema(name), body);
    json_decref(body);
    return errs;
}

static bool names(json_t *errs, const char *field)
{
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "field")), field) == 0)
            return true;
    }
    return false;
}

static void valid_bodies_pass(void **state)
{
    assert_null(
        run("user.register", "{\"email\":\"a@b.co\",\"name\":\"A\",\"password\":\"Str0ng!pass\"}"));
    assert_null(run("food.create",
                    "{\"name\":\"Oats\",\"calories_per_100g\":389,\"protein_per_100g\":16.9,"
                    "\"carbs_per_100g\":66.3,\"fat_per_100g\":6.9}"));
    assert_null(run("diary.entry.set", "{\"amount\":150}"));
    assert_null(run("session.create", "{\"email\":\"a@b.co\",\"password\":\"x\"}"));
}

static void each_fault_names_its_field(void **state)
{
    json_t *e;

    e = run("user.register", "{\"email\":\"nope\",\"name\":\"\",\"password\":\"weak\"}");
    assert_true(names(e, "email") && names(e, "name") && names(e, "password"));
    json_decref(e);

    e = run("user.register", "{\"name\":\"A\",\"password\":\"Str0ng!pass\"}");
    assert_true(names(e, "email"));
    json_decref(e);

    e = run("diary.entry.set", "{\"amount\":\"150\"}");
    assert_true(names(e, "amount"));
    json_decref(e);

    e = run("diary.entry.set", "{\"amount\":0}");
    assert_true(names(e, "amount"));
    json_decref(e);

    e = run("diary.entry.set", "{\"amount\":5,\"extra\":1}");
    assert_true(names(e, "extra"));
    json_decref(e);

    e = run("food.create", "{\"name\":\"X\",\"calories_per_100g\":-1,\"protein_per_100g\":0,"
                           "\"carbs_per_100g\":0,\"fat_per_100g\":0}");
    assert_true(names(e, "calories_per_100g"));
    json_decref(e);
}

static void implausible_calories_are_refused(void **state)
{
    json_t *e =
        run("food.create", "{\"name\":\"X\",\"calories_per_100g\":10,\"protein_per_100g\":20,"
                           "\"carbs_per_100g\":20,\"fat_per_100g\":20}");
    assert_true(names(e, "calories_per_100g"));
    json_decref(e);
    e = run("food.create", "{\"name\":\"X\",\"calories_per_100g\":800,\"protein_per_100g\":50,"
                           "\"carbs_per_100g\":50,\"fat_per_100g\":50}");
    assert_true(names(e, "protein_per_100g"));
    json_decref(e);
}

static void non_object_body_is_one_error(void **state)
{
    json_t *e = run("diary.entry.set", "[1]");
    assert_int_equal(json_array_size(e), 1);
    json_decref(e);
}

static void dates_and_meals(void **state)
{
    assert_true(validate_date("2024-02-29"));
    assert_false(validate_date("2023-02-29"));
    assert_false(validate_date("2024-13-01"));
    assert_false(validate_date("2024-1-01"));
    assert_false(validate_date("2024-01-01x"));
    assert_false(validate_date("+024-01-01"));
    assert_false(validate_date(NULL));
    assert_true(validate_meal_type("snack"));
    assert_false(validate_meal_type("brunch"));
    assert_false(validate_meal_type(NULL));
    assert_true(validate_email("x.y@example.org"));
    assert_false(validate_email("x y@example.org"));
    assert_false(validate_email("@example.org"));
    assert_false(validate_email("x@@example.org"));
}

/* The first error's message for field, or NULL. */
static const char *message_of(json_t *errs, const char *field)
{
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "field")), field) == 0)
            return json_string_value(json_object_get(e, "message"));
    }
    return NULL;
}

static void rules_come_from_the_yaml(void **state)
{
    const struct vschema *s = validate_schema("food.create");
    const struct vrule *r = validate_rule(s, "calories_per_100g");

    assert_non_null(validate_source());
    assert_non_null(strstr(validate_source(), "schema/api.yaml"));
    assert_non_null(r);
    assert_int_equal(r->kind, V_NUMBER);
    assert_true(r->required && r->has_min && r->has_max);
    assert_true(r->min == 0 && r->max == 900);
    assert_string_equal(s->check, "food_macros");
    assert_non_null(s->check_fn);
    /* Every name the programs use is there. */
    assert_non_null(validate_schema("user.register"));
    assert_non_null(validate_schema("session.create"));
    assert_non_null(validate_schema("diary.entry.set"));
    assert_non_null(validate_schema("settings.update"));
    assert_non_null(validate_schema("weight.set"));
    assert_non_null(validate_schema("diary.batch.item"));
    assert_non_null(validate_schema("path"));
    assert_null(validate_schema("no.such"));
    assert_true(validate_schema_count() >= 12);
}

/* Writes text to a temporary file and loads it; returns validate_load's result. */
static int load_text(const char *text, char *err, size_t errlen)
{
    char path[] = "/tmp/test_validate.XXXXXX";
    int fd = mkstemp(path), rc;
    FILE *f = fdopen(fd, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    rc = validate_load(path, err, errlen);
    unlink(path);
    return rc;
}

static void bad_rule_files_are_refused_and_keep_the_old_rules(void **state)
{
    char err[512];
    const char *before = validate_source();

    assert_int_equal(validate_load("/nonexistent/api.yaml", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/api.yaml"));
    assert_int_equal(load_text("schemas:\n  - name: a\n    fields:\n      - name: x\n        kind: "
                               "colour\n",
                               err, sizeof(err)),
                     -1);
    assert_int_equal(
        load_text("schemas:\n  - name: a\n    check: nope\n    fields:\n      - name: x\n"
                  "        kind: string\n",
                  err, sizeof(err)),
        -1);
    assert_non_null(strstr(err, "unknown check nope"));
    assert_int_equal(load_text("schemas:\n  - name: a\n    fields:\n      - name: x\n        kind: "
                               "enum\n",
                               err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "choices"));
    assert_int_equal(load_text("schemas:\n  - name: a\n    fields:\n      - name: x\n        kind: "
                               "string\n  - name: a\n    fields:\n      - name: y\n        kind: "
                               "string\n",
                               err, sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(load_text("schemas:\n  - name: a\n    fields:\n      - name: x\n        kind: "
                               "string\n        pattern: \"([\"\n",
                               err, sizeof(err)),
                     -1);
    assert_int_equal(load_text("schemas:\n  - name: a\n    fields:\n      - name: x\n        kind: "
                               "string\n        colour: red\n",
                               err, sizeof(err)),
                     -1);
    /* A failed load leaves the loaded rules as they were. */
    assert_ptr_equal(validate_source(), before);
    assert_non_null(validate_schema("food.create"));
}

static void messages_and_patterns_come_from_the_rules(void **state)
{
    json_t *e =
        run("diary.batch.item", "{\"op\":\"set\",\"date\":\"2026-01-01\",\"meal_type\":"
                                "\"lunch\",\"food_id\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\","
                                "\"amount\":1,\"idempotency_key\":\"has space\"}");

    assert_string_equal(message_of(e, "idempotency_key"),
                        "must be 1 to 255 visible ASCII characters");
    json_decref(e);
    e = run("weight.set", "{\"weight\":0}");
    assert_string_equal(message_of(e, "weight"), "must be more than 0 and at most 999.99");
    json_decref(e);
    e = run("settings.update", "{\"unit_system\":\"stone\"}");
    assert_string_equal(message_of(e, "unit_system"), "must be one of metric, imperial");
    json_decref(e);
    e = run("diary.batch", "{\"items\":[]}");
    assert_string_equal(message_of(e, "items"), "must have at least 1 and at most 500 items");
    json_decref(e);
}

static void cross_field_checks(void **state)
{
    json_t *e;
    const char *food = "\"date\":\"2026-01-01\",\"meal_type\":\"lunch\","
                       "\"food_id\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\"";
    char body[256];

    snprintf(body, sizeof(body), "{\"op\":\"set\",%s}", food);
    e = run("diary.batch.item", body);
    assert_string_equal(message_of(e, "amount"), "is required for set");
    json_decref(e);
    snprintf(body, sizeof(body), "{\"op\":\"remove\",%s,\"amount\":3}", food);
    e = run("diary.batch.item", body);
    assert_string_equal(message_of(e, "amount"), "must not be given for remove");
    json_decref(e);
    snprintf(body, sizeof(body), "{\"op\":\"remove\",%s}", food);
    assert_null(run("diary.batch.item", body));

    e = run("user.update", "{}");
    assert_true(names(e, ""));
    json_decref(e);
    e = run("user.update", "{\"email\":\"a@b.co\",\"password\":\"Str0ng!pass\"}");
    assert_true(names(e, "password"));
    json_decref(e);
    assert_null(run("user.update", "{\"password\":\"Str0ng!pass\"}"));
    assert_null(run("user.update", "{\"name\":\"A\",\"email\":\"a@b.co\"}"));

    e = run("settings.update", "{}");
    assert_true(names(e, ""));
    json_decref(e);
    e = run("settings.update", "{\"protein_percentage\":60,\"fat_percentage\":41}");
    assert_true(names(e, "fat_percentage"));
    json_decref(e);
    assert_null(run("settings.update", "{\"protein_percentage\":60}"));

    assert_null(run("date.range", "{\"from\":\"2024-01-01\",\"to\":\"2024-12-31\"}")); /* 366 */
    e = run("date.range", "{\"from\":\"2023-01-01\",\"to\":\"2024-01-01\"}");          /* 366 */
    assert_null(e);
    e = run("date.range", "{\"from\":\"2023-01-01\",\"to\":\"2024-01-02\"}"); /* 367 */
    assert_true(names(e, "to"));
    json_decref(e);
    e = run("date.range", "{\"from\":\"2024-01-02\",\"to\":\"2024-01-01\"}");
    assert_true(names(e, "to"));
    json_decref(e);
}

static void query_strings_are_typed_by_the_rules(void **state)
{
    const struct vschema *s = validate_schema("foods.query");
    json_t *q = NULL, *e;

    e = validate_query(s, "q=oat%20milk&limit=20&cursor=a+b", &q);
    assert_null(e);
    assert_string_equal(json_string_value(json_object_get(q, "q")), "oat milk");
    assert_string_equal(json_string_value(json_object_get(q, "cursor")), "a b");
    assert_true(json_is_integer(json_object_get(q, "limit")));
    assert_int_equal(json_integer_value(json_object_get(q, "limit")), 20);
    json_decref(q);

    e = validate_query(s, NULL, &q);
    assert_null(e);
    assert_int_equal(json_object_size(q), 0);
    json_decref(q);

    e = validate_query(s, "q=", &q); /* empty prefix: every food */
    assert_null(e);
    json_decref(q);

    e = validate_query(s, "limit=2.5", &q);
    assert_string_equal(message_of(e, "limit"), "must be an integer");
    json_decref(e);
    json_decref(q);
    e = validate_query(s, "limit=0", &q);
    assert_true(names(e, "limit"));
    json_decref(e);
    json_decref(q);
    e = validate_query(s, "limit=1&limit=2", &q);
    assert_string_equal(message_of(e, "limit"), "is given more than once");
    json_decref(e);
    json_decref(q);
    e = validate_query(s, "q=%zz", &q);
    assert_true(names(e, "q"));
    json_decref(e);
    json_decref(q);
    e = validate_query(s, "q=a%00b", &q); /* a NUL in the middle of a value */
    assert_true(names(e, "q"));
    json_decref(e);
    json_decref(q);
    e = validate_query(s, "colour=red&&", &q);
    assert_string_equal(message_of(e, "colour"), "is not a known field");
    json_decref(e);
    json_decref(q);

    e = validate_query(validate_schema("date.range"), "from=2026-01-01", &q);
    assert_string_equal(message_of(e, "to"), "is required");
    json_decref(e);
    json_decref(q);
}

static void json_schema_of_the_rules(void **state)
{
    json_t *js = validate_json_schema(validate_schema("diary.batch.item")), *p;

    assert_string_equal(json_string_value(json_object_get(js, "type")), "object");
    assert_true(json_is_false(json_object_get(js, "additionalProperties")));
    assert_int_equal(json_array_size(json_object_get(js, "required")), 4);
    p = json_object_get(json_object_get(js, "properties"), "amount");
    assert_string_equal(json_string_value(json_object_get(p, "type")), "number");
    assert_int_equal(json_integer_value(json_object_get(p, "exclusiveMinimum")), 0);
    assert_null(json_object_get(p, "minimum"));
    assert_int_equal(json_integer_value(json_object_get(p, "maximum")), 100000);
    p = json_object_get(json_object_get(js, "properties"), "food_id");
    assert_string_equal(json_string_value(json_object_get(p, "format")), "uuid");
    p = json_object_get(json_object_get(js, "properties"), "meal_type");
    assert_int_equal(json_array_size(json_object_get(p, "enum")), 4);
    p = json_object_get(json_object_get(js, "properties"), "idempotency_key");
    assert_string_equal(json_string_value(json_object_get(p, "pattern")), "^[!-~]+$");
    assert_int_equal(json_integer_value(json_object_get(p, "maxLength")), 255);
    json_decref(js);

    js = validate_json_schema(validate_schema("diary.batch"));
    p = json_object_get(json_object_get(js, "properties"), "items");
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "items"), "$ref")),
                        "#/components/schemas/diary.batch.item");
    assert_int_equal(json_integer_value(json_object_get(p, "maxItems")), 500);
    json_decref(js);
    js = validate_json_schema(validate_schema("weight.set"));
    p = json_object_get(json_object_get(js, "properties"), "weight");
    assert_true(json_real_value(json_object_get(p, "maximum")) == 999.99);
    json_decref(js);
    assert_null(validate_json_schema(NULL));
}

static void day_numbers(void **state)
{
    long d;
    char out[16];

    assert_true(validate_date_days("1970-01-01", &d));
    assert_int_equal(d, 0);
    assert_true(validate_date_days("2000-03-01", &d));
    assert_int_equal(d, 11017);
    assert_false(validate_date_days("2023-02-29", &d));
    for (long day = -25567; day < 80000; day += 97) { /* 1900 .. 2189 */
        long back;
        validate_date_format(day, out, sizeof(out));
        assert_true(validate_date_days(out, &back));
        assert_int_equal(back, day);
    }
    validate_date_format(19723, out, sizeof(out));
    assert_string_equal(out, "2024-01-01");
}

/* One body through both paths: validate_numbers may accept it only when json_loadb and
 * validate_body do, with the same members, types, values and dumped text; when plain is set
 * (an object of the schema's numbers, each a short number token), it must accept exactly
 * those. */
static void both_paths(const char *schema, const char *text, size_t len, bool plain)
{
    const struct vschema *s = validate_schema(schema);
    json_t *body = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL), *errs = NULL;
    struct vnumber nums[VALIDATE_NUMBERS_MAX];
    size_t n = 99;
    bool slow, fast;

    if (body)
        errs = validate_body(s, body);
    slow = body && !errs;
    fast = validate_numbers(s, text, len, nums, &n);
    if (fast && !slow) {
        print_error("%s: numbers path accepts %.*s, validate_body does not\n", schema, (int)len,
                    text);
        fail();
    }
    if (plain && fast != slow) {
        print_error("%s: numbers path refuses the plain valid body %.*s\n", schema, (int)len, text);
        fail();
    }
    if (fast) {
        assert_int_equal(n, json_object_size(body));
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_object_get(body, nums[i].rule->name);
            char want[64];
            size_t wn = json_dumpb(v, want, sizeof(want), JSON_COMPACT | JSON_ENCODE_ANY);

            assert_non_null(v);
            assert_int_equal(nums[i].integer, json_is_integer(v));
            if (nums[i].integer)
                assert_true(nums[i].ivalue == json_integer_value(v));
            assert_true(nums[i].value == json_number_value(v));
            assert_int_equal(nums[i].len, wn);
            assert_memory_equal(nums[i].text, want, wn);
            assert_int_equal(nums[i].text[wn], '\0');
        }
    }
    json_decref(errs);
    json_decref(body);
}

static void numbers_path_agrees_with_jansson(void **state)
{
    static const char *const bodies[] = {
        "{\"amount\":150}",
        "{\"amount\":150.5}",
        "{\"amount\":0.1}",
        "{\"amount\":1e2}",
        "{\"amount\":1E-3}",
        "{\"amount\":-0}",
        "{\"amount\":0}",
        "{\"amount\":0.0}",
        "{\"amount\":100000}",
        "{\"amount\":100000.0000001}",
        "{\"amount\":1e5}",
        "{\"amount\":\"150\"}",
        "{\"amount\":null}",
        "{}",
        "[]",
        "null",
        "",
        " ",
        "150",
        "{\"amount\":150,\"x\":1}",
        "{\"x\":1,\"amount\":150}",
        "{\"amount\":1,\"amount\":2}",
        "{\"amo\\u0075nt\":3}",
        " {\"amount\" : 3 }\n",
        "{\"amount\":3}x",
        "{\"amount\":3,}",
        "{\"amount\":01}",
        "{\"amount\":1.}",
        "{\"amount\":.5}",
        "{\"amount\":+5}",
        "{\"amount\":1e400}",
        "{\"amount\":1e-400}",
        "{\"amount\":4.9e-324}",
        "{\"amount\":1.2345678901234567e-300}",
        "{\"amount\":123456789012345678901234567890}",
        "{\"amount\":true}",
        "{\"amount\":[1]}",
        "{\"amount\":{\"a\":1}}",
        "{\"amount\":-5}",
        "{\"amount\":3",
        "{\"amount\" 3}",
        "{amount:3}",
        "{\"amount\\u0000\":3}",
        "{\"weight\":80}",
        "{\"amount\":0.0000000000000000000000000000000000000000000000001}",
    };

    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        both_paths("diary.entry.set", bodies[i], strlen(bodies[i]), false);
        both_paths("weight.set", bodies[i], strlen(bodies[i]), false);
    }
    both_paths("diary.entry.set", "{\"amount\":3}\0", 13, false);
    both_paths("diary.entry.set", "{\"amount\":150}", 14, true);
    both_paths("weight.set", "{\"weight\":80.25}", 16, true);

    /* Numbers as clients and libraries print them: many magnitudes, several notations. */
    uint64_t x = 0x2545f4914f6cdd1du;
    for (int i = 0; i < 50000; i++) {
        char num[48], text[80];
        double d;

        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        d = (double)(x % 200000001u) / 1000.0 * ((x >> 40) % 3 ? 1.0 : 1e-3);
        switch ((x >> 33) % 7) {
        case 0:
            snprintf(num, sizeof(num), "%.17g", d);
            break;
        case 1:
            snprintf(num, sizeof(num), "%.15g", d);
            break;
        case 2:
            snprintf(num, sizeof(num), "%.2f", d);
            break;
        case 3:
            snprintf(num, sizeof(num), "%.0f", d);
            break;
        case 4:
            snprintf(num, sizeof(num), "%e", d);
            break;
        case 5:
            snprintf(num, sizeof(num), "%.3E", d);
            break;
        default:
            snprintf(num, sizeof(num), "%g", d);
            break;
        }
        snprintf(text, sizeof(text), "{\"amount\":%s}", num);
        both_paths("diary.entry.set", text, strlen(text), true);
        snprintf(text, sizeof(text), "{\"weight\": %s }", num);
        both_paths("weight.set", text, strlen(text), true);
        snprintf(text, sizeof(text), "{\"amount\":%" PRIu64 "}", x % 200001u);
        both_paths("diary.entry.set", text, strlen(text), true);
    }
}

static void numbers_only_schemas(void **state)
{
    assert_true(validate_numbers_only(validate_schema("diary.entry.set")));
    assert_true(validate_numbers_only(validate_schema("weight.set")));
    assert_false(validate_numbers_only(validate_schema("food.create")));
    assert_false(validate_numbers_only(validate_schema("diary.batch.item")));
    assert_false(validate_numbers_only(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_bodies_pass),
        cmocka_unit_test(each_fault_names_its_field),
        cmocka_unit_test(implausible_calories_are_refused),
        cmocka_unit_test(non_object_body_is_one_error),
        cmocka_unit_test(dates_and_meals),
        cmocka_unit_test(rules_come_from_the_yaml),
        cmocka_unit_test(bad_rule_files_are_refused_and_keep_the_old_rules),
        cmocka_unit_test(messages_and_patterns_come_from_the_rules),
        cmocka_unit_test(cross_field_checks),
        cmocka_unit_test(query_strings_are_typed_by_the_rules),
        cmocka_unit_test(json_schema_of_the_rules),
        cmocka_unit_test(day_numbers),
        cmocka_unit_test(numbers_path_agrees_with_jansson),
        cmocka_unit_test(numbers_only_schemas),
    };
    int rc;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    validate_unload();
    return rc;
}
