/* Unit tests for shared/topicdef: the repository's own topics/ folder (run with the working
 * directory at the repository root) and a temporary folder of broken definitions. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "topicdef.h"

struct tmpdir {
    char path[64];
};

static int tmpdir_setup(void **state)
{
    struct tmpdir *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    snprintf(t->path, sizeof(t->path), "/tmp/test_topicdef.XXXXXX");
    assert_non_null(mkdtemp(t->path));
    *state = t;
    return 0;
}

static int tmpdir_teardown(void **state)
{
    struct tmpdir *t = *state;
    DIR *d = opendir(t->path);
    struct dirent *de;
    char p[512];

    while (d && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", t->path, de->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(t->path);
    free(t);
    return 0;
}

static void write_file(const struct tmpdir *t, const char *name, const char *text)
{
    char p[512];
    FILE *f;

    snprintf(p, sizeof(p), "%s/%s", t->path, name);
    f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static const char good_yaml[] = "name: t.good\n"
                                "partitions: 3\n"
                                "replication_factor: 1\n"
                                "config:\n"
                                "  - name: retention.ms\n"
                                "    value: \"1000\"\n";

static void test_repo_topics_load(void **state)
{
    struct topicdef_set *set = NULL;
    const struct topicdef *t;
    char err[512] = "";

    assert_int_equal(topicdef_load_dir("topics", &set, err, sizeof(err)), 0);
    assert_non_null(set);
    assert_int_equal(set->count, 3);
    /* Sorted by file name: diary.changes, diary.events.dlq, diary.events. */
    assert_string_equal(set->topics[0].name, "diary.changes");
    assert_string_equal(set->topics[1].name, "diary.events.dlq");
    assert_string_equal(set->topics[2].name, "diary.events");
    for (size_t i = 0; i < set->count; i++) {
        assert_int_equal(set->topics[i].partitions, 12);
        assert_int_equal(set->topics[i].replication_factor, 3);
        assert_string_equal(set->topics[i].key, "user id");
        assert_non_null(set->topics[i].description);
        assert_string_equal(topicdef_config_get(&set->topics[i], "cleanup.policy"), "delete");
        assert_string_equal(topicdef_config_get(&set->topics[i], "min.insync.replicas"), "2");
    }

    t = topicdef_find(set, "diary.events");
    assert_ptr_equal(t, &set->topics[2]);
    assert_string_equal(topicdef_config_get(t, "retention.ms"), "-1");
    assert_null(topicdef_config_get(t, "segment.bytes"));
    assert_string_equal(topicdef_config_get(topicdef_find(set, "diary.changes"), "retention.ms"),
                        "604800000");
    assert_null(topicdef_find(set, "diary.nope"));
    topicdef_set_destroy(set);
}

static void test_good_file_and_ignored_files(void **state)
{
    struct tmpdir *t = *state;
    struct topicdef_set *set = NULL;
    char err[512] = "";

    write_file(t, "a.yaml", good_yaml);
    write_file(t, "b.yml", "name: t.minimal\npartitions: 1\n");
    write_file(t, "README.md", "not yaml: [\n");
    write_file(t, ".hidden.yaml", "garbage: [\n");
    assert_int_equal(topicdef_load_dir(t->path, &set, err, sizeof(err)), 0);
    assert_int_equal(set->count, 2);
    assert_string_equal(set->topics[0].name, "t.good");
    assert_int_equal(set->topics[0].partitions, 3);
    assert_int_equal(set->topics[0].replication_factor, 1);
    assert_int_equal(set->topics[0].config_count, 1);
    assert_string_equal(set->topics[0].config[0].name, "retention.ms");
    assert_string_equal(set->topics[0].config[0].value, "1000");
    /* Optional fields are absent, not empty. */
    assert_string_equal(set->topics[1].name, "t.minimal");
    assert_null(set->topics[1].description);
    assert_null(set->topics[1].key);
    assert_int_equal(set->topics[1].replication_factor, 0);
    assert_int_equal(set->topics[1].config_count, 0);
    assert_null(topicdef_config_get(&set->topics[1], "retention.ms"));
    topicdef_set_destroy(set);
}

/* Loads the temporary folder expecting failure, and checks err names the offending file and
 * contains want. */
static void expect_rejected(const struct tmpdir *t, const char *file, const char *want)
{
    struct topicdef_set *set = (struct topicdef_set *)(uintptr_t)1;
    char err[512] = "";

    assert_int_equal(topicdef_load_dir(t->path, &set, err, sizeof(err)), -1);
    assert_null(set);
    if (!strstr(err, file) || !strstr(err, want))
        fail_msg("error \"%s\" should name %s and say \"%s\"", err, file, want);
}

static void test_missing_name_rejected(void **state)
{
    struct tmpdir *t = *state;

    write_file(t, "a.yaml", good_yaml);
    write_file(t, "noname.yaml", "partitions: 3\n");
    expect_rejected(t, "noname.yaml", "name");
}

static void test_partitions_zero_rejected(void **state)
{
    struct tmpdir *t = *state;

    write_file(t, "zero.yaml", "name: t.zero\npartitions: 0\n");
    expect_rejected(t, "zero.yaml", "partitions must be at least 1");
}

static void test_missing_partitions_rejected(void **state)
{
    struct tmpdir *t = *state;

    write_file(t, "nopart.yaml", "name: t.nopart\n");
    expect_rejected(t, "nopart.yaml", "partitions");
}

static void test_duplicate_name_rejected(void **state)
{
    struct tmpdir *t = *state;

    write_file(t, "a.yaml", good_yaml);
    write_file(t, "b.yaml", good_yaml);
    expect_rejected(t, "b.yaml", "already defined");
}

static void test_bad_topic_name_rejected(void **state)
{
    struct tmpdir *t = *state;

    write_file(t, "bad.yaml", "name: \"no spaces\"\npartitions: 1\n");
    expect_rejected(t, "bad.yaml", "not a valid topic name");
}

static void test_unknown_key_rejected(void **state)
{
    struct tmpdir *t = *state;

    write_file(t, "typo.yaml", "name: t.typo\npartitons: 3\npartitions: 3\n");
    expect_rejected(t, "typo.yaml", "partitons");
}

static void test_config_without_value_rejected(void **state)
{
    struct tmpdir *t = *state;

    write_file(t, "cfg.yaml", "name: t.cfg\npartitions: 1\nconfig:\n  - name: retention.ms\n");
    expect_rejected(t, "cfg.yaml", "value");
}

static void test_not_yaml_rejected(void **state)
{
    struct tmpdir *t = *state;

    write_file(t, "broken.yaml", "name: [unclosed\n");
    expect_rejected(t, "broken.yaml", "broken.yaml");
}

static void test_empty_dir_is_empty_set(void **state)
{
    struct tmpdir *t = *state;
    struct topicdef_set *set = NULL;
    char err[512] = "";

    assert_int_equal(topicdef_load_dir(t->path, &set, err, sizeof(err)), 0);
    assert_non_null(set);
    assert_int_equal(set->count, 0);
    assert_null(topicdef_find(set, "anything"));
    topicdef_set_destroy(set);
}

static void test_missing_dir_rejected(void **state)
{
    struct topicdef_set *set = NULL;
    char err[512] = "";

    assert_int_equal(topicdef_load_dir("/nonexistent/topics", &set, err, sizeof(err)), -1);
    assert_null(set);
    assert_non_null(strstr(err, "/nonexistent/topics"));
}

static void test_name_valid(void **state)
{
    assert_true(topicdef_name_valid("diary.events"));
    assert_true(topicdef_name_valid("a-b_c.9"));
    assert_false(topicdef_name_valid(""));
    assert_false(topicdef_name_valid("."));
    assert_false(topicdef_name_valid(".."));
    assert_false(topicdef_name_valid("a/b"));
    assert_false(topicdef_name_valid(NULL));
}

static void test_destroy_null_is_noop(void **state)
{
    topicdef_set_destroy(NULL);
    assert_null(topicdef_find(NULL, "x"));
    assert_null(topicdef_config_get(NULL, "x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repo_topics_load),
        cmocka_unit_test_setup_teardown(test_good_file_and_ignored_files, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_missing_name_rejected, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_partitions_zero_rejected, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_missing_partitions_rejected, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_name_rejected, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_bad_topic_name_rejected, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key_rejected, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_config_without_value_rejected, tmpdir_setup,
                                        tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_not_yaml_rejected, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test_setup_teardown(test_empty_dir_is_empty_set, tmpdir_setup, tmpdir_teardown),
        cmocka_unit_test(test_missing_dir_rejected),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_destroy_null_is_noop),
    };

    return cmocka_run_group_tests_name("topicdef", tests, NULL, NULL);
}
