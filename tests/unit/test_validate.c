#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

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
    json_array_foreach(errs, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "field")), field) == 0)
            return true;
    }
    return false;
}

static void valid_bodies_pass(void **state)
{
    assert_null(run("user.register", "{\"email\":\"a@b.co\",\"name\":\"A\",\"password\":\"Str0ng!pass\"}"));
    assert_null(run("food.create", "{\"name\":\"Oats\",\"calories_per_100g\":389,\"protein_per_100g\":16.9,"
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
    json_t *e = run("food.create", "{\"name\":\"X\",\"calories_per_100g\":10,\"protein_per_100g\":20,"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_bodies_pass),
        cmocka_unit_test(each_fault_names_its_field),
        cmocka_unit_test(implausible_calories_are_refused),
        cmocka_unit_test(non_object_body_is_one_error),
        cmocka_unit_test(dates_and_meals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
