/* Topic definitions: one YAML file per topic in a folder (topics/NAME.yaml), read with libcyaml.
 * They drive the devbroker's topic creation, `diaryctl topics apply`, the docs and the tests
 * from one place. A file looks like:
 *
 *     name: diary.events
 *     description: Every accepted diary write.
 *     key: user id
 *     partitions: 12
 *     replication_factor: 3
 *     config:
 *       - name: retention.ms
 *         value: "-1"
 *
 * name and partitions are required; description, key, replication_factor (0 when absent:
 * "the cluster's default") and config are optional. Unknown keys are rejected so that a typo
 * does not silently drop a setting. Pure: no Kafka, libevent or libpq in here. */
#ifndef DIARY_TOPICDEF_H
#define DIARY_TOPICDEF_H

#include <stddef.h>

struct topicdef_config {
    char *name;
    char *value;
};

struct topicdef {
    char *name;
    char *description; /* NULL when absent */
    char *key;         /* NULL when absent */
    int partitions;
    int replication_factor; /* 0 when absent */
    struct topicdef_config *config;
    unsigned config_count;
};

struct topicdef_set {
    struct topicdef *topics; /* sorted by file name */
    size_t count;
    /* Private: the documents as libcyaml loaded them, freed by topicdef_set_destroy. */
    struct topicdef **docs_;
    size_t docs_count_;
};

/* Loads every file of dir whose name ends in .yaml or .yml (sorted by file name, byte order).
 * Rejects a file that does not parse, a missing or invalid topic name, partitions < 1, a negative
 * replication factor, a config entry without name or value, and a name used twice.
 * On success *out is a new set the caller frees with topicdef_set_destroy; on failure *out
 * is NULL and err says which file and why. An empty folder is not an error. */
int topicdef_load_dir(const char *dir, struct topicdef_set **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The topic called name, or NULL. The pointer lives as long as the set. */
const struct topicdef *topicdef_find(const struct topicdef_set *set, const char *name);

/* The value of config entry name (the last one if repeated), or NULL if absent. */
const char *topicdef_config_get(const struct topicdef *t, const char *name);

/* Pure: 1 if name is a legal Kafka topic name (1..249 of [a-zA-Z0-9._-], not "." or ".."),
 * else 0. */
int topicdef_name_valid(const char *name);

/* Frees the set and everything in it. NULL is a no-op. */
void topicdef_set_destroy(struct topicdef_set *set);

#endif
