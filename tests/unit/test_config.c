#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static void parse_long_bounds(void **state)
{
    long v;
    assert_int_equal(config_parse_long("8080", 1, 65535, &v), 0);
    assert_int_equal(v, 8080);
    assert_int_equal(config_parse_long("0", 1, 65535, &v), -1);
    assert_int_equal(config_parse_long("65536", 1, 65535, &v), -1);
    assert_int_equal(config_parse_long("12x", 0, 100, &v), -1);
    assert_int_equal(config_parse_long("", 0, 100, &v), -1);
    assert_int_equal(config_parse_long(NULL, 0, 100, &v), -1);
}

static void parse_bool_words(void **state)
{
    bool b;
    assert_int_equal(config_parse_bool("YES", &b), 0);
    assert_true(b);
    assert_int_equal(config_parse_bool("off", &b), 0);
    assert_false(b);
    assert_int_equal(config_parse_bool("maybe", &b), -1);
}

static void parse_hostport(void **state)
{
    char host[64];
    int port;
    assert_int_equal(config_parse_hostport("127.0.0.1:9092", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 9092);
    assert_int_equal(config_parse_hostport("nohost", host, sizeof(host), &port), -1);
    assert_int_equal(config_parse_hostport(":80", host, sizeof(host), &port), -1);
    assert_int_equal(config_parse_hostport("h:99999", host, sizeof(host), &port), -1);
}

static void env_overrides_default_and_bad_values_are_named(void **state)
{
    long v;
    char err[200];

    unsetenv("DIARY_HTTP_PORT");
    assert_string_equal(config_str("DIARY_HTTP_PORT"), "8080");
    setenv("DIARY_HTTP_PORT", "9999", 1);
    assert_int_equal(config_long("DIARY_HTTP_PORT", 0, 65535, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 9999);
    setenv("DIARY_HTTP_PORT", "http", 1);
    assert_int_equal(config_long("DIARY_HTTP_PORT", 0, 65535, &v, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "DIARY_HTTP_PORT=http"));
    unsetenv("DIARY_HTTP_PORT");
    unsetenv("KAFKA_BOOTSTRAP");
    assert_null(config_str("KAFKA_BOOTSTRAP"));
}

static void every_setting_is_documented(void **state)
{
    size_t n;
    const struct config_entry *t = config_table(&n);
    assert_true(n > 10);
    for (size_t i = 0; i < n; i++)
        assert_true(t[i].help && strlen(t[i].help) > 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_long_bounds),
        cmocka_unit_test(parse_bool_words),
        cmocka_unit_test(parse_hostport),
        cmocka_unit_test(env_overrides_default_and_bad_values_are_named),
        cmocka_unit_test(every_setting_is_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
