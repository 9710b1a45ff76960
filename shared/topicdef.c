#include "topicdef.h"

#include <cyaml/cyaml.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The schema mirrors struct topicdef one to one, so libcyaml allocates the strings and the
 * config array and cyaml_free releases them with the same schema. */
static const cyaml_schema_field_t config_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER, struct topicdef_config, name, 1,
                           CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("value", CYAML_FLAG_POINTER, struct topicdef_config, value, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t config_entry_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct topicdef_config, config_fields),
};

static const cyaml_schema_field_t topic_fields[] = {
    CYAML_FIELD_STRING_PTR("name", CYAML_FLAG_POINTER, struct topicdef, name, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("description", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct topicdef,
                           description, 0, CYAML_UNLIMITED),
    CYAML_FIELD_STRING_PTR("key", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct topicdef, key, 0,
                           CYAML_UNLIMITED),
    CYAML_FIELD_INT("partitions", CYAML_FLAG_DEFAULT, struct topicdef, partitions),
    CYAML_FIELD_INT("replication_factor", CYAML_FLAG_OPTIONAL, struct topicdef, replication_factor),
    CYAML_FIELD_SEQUENCE("config", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, struct topicdef,
                         config, &config_entry_schema, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END,
};

static const cyaml_schema_value_t topic_schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct topicdef, topic_fields),
};

/* libcyaml reports the reason for a rejected document only through its log function, so the
 * error lines are collected here and appended to the caller's err. */
struct cyaml_capture {
    char text[512];
    size_t len;
};

static void capture_log_cb(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    struct cyaml_capture *cap = ctx;
    char line[256];
    const char *text = line;
    size_t n;

    if (level < CYAML_LOG_ERROR || cap->len + 1 >= sizeof(cap->text))
        return;
    vsnprintf(line, sizeof(line), fmt, args);
    n = strcspn(line, "\n");
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
        n--;
    line[n] = '\0';
    /* Drop libcyaml's "Load: " prefix and its "Backtrace:" heading, keep the substance. */
    if (strncmp(text, "Load: ", 6) == 0)
        text += 6;
    text += strspn(text, " \t");
    if (*text == '\0' || strcmp(text, "Backtrace:") == 0)
        return;
    cap->len += (size_t)snprintf(cap->text + cap->len, sizeof(cap->text) - cap->len, "%s%s",
                                 cap->len ? ", " : "", text);
    if (cap->len >= sizeof(cap->text))
        cap->len = sizeof(cap->text) - 1;
}

static int has_yaml_suffix(const char *name)
{
    size_t n = strlen(name);

    if (name[0] == '.')
        return 0;
    return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/* Lists the YAML files of dir, sorted. On success *names_out (each name and the array) is
 * the caller's to free with free_names. */
static int list_yaml_files(const char *dir, char ***names_out, size_t *count_out, char *err,
                           size_t errlen)
{
    DIR *d = NULL;
    struct dirent *de;
    char **names = NULL;
    size_t count = 0, cap = 0;

    d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        goto fail;
    }
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (!has_yaml_suffix(de->d_name))
            continue;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            char **grown = realloc(names, ncap * sizeof(*names));
            if (!grown)
                goto oom;
            names = grown;
            cap = ncap;
        }
        names[count] = strdup(de->d_name);
        if (!names[count])
            goto oom;
        count++;
    }
    if (errno != 0) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        goto fail;
    }
    closedir(d);
    if (count > 1)
        qsort(names, count, sizeof(*names), compare_names);
    *names_out = names;
    *count_out = count;
    return 0;

oom:
    snprintf(err, errlen, "%s: out of memory", dir);
fail:
    if (d)
        closedir(d);
    free_names(names, count);
    return -1;
}

int topicdef_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > 249 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Checks one loaded document against the rules libcyaml cannot express. */
static int validate_topic(const struct topicdef *t, const char *path, char *err, size_t errlen)
{
    if (!t->name || !topicdef_name_valid(t->name)) {
        snprintf(err, errlen,
                 "%s: name \"%s\" is not a valid topic name (1..249 of a-z A-Z 0-9 . _ -)", path,
                 t->name ? t->name : "");
        return -1;
    }
    if (t->partitions < 1) {
        snprintf(err, errlen, "%s: topic %s: partitions must be at least 1, not %d", path, t->name,
                 t->partitions);
        return -1;
    }
    if (t->replication_factor < 0) {
        snprintf(err, errlen, "%s: topic %s: replication_factor must not be negative, not %d", path,
                 t->name, t->replication_factor);
        return -1;
    }
    for (unsigned i = 0; i < t->config_count; i++) {
        if (!t->config[i].name || !t->config[i].name[0] || !t->config[i].value) {
            snprintf(err, errlen, "%s: topic %s: config entry %u needs a name and a value", path,
                     t->name, i + 1);
            return -1;
        }
    }
    return 0;
}

int topicdef_load_dir(const char *dir, struct topicdef_set **out, char *err, size_t errlen)
{
    struct cyaml_capture cap;
    cyaml_config_t cfg = {
        .log_fn = capture_log_cb,
        .log_ctx = &cap,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_DEFAULT,
    };
    struct topicdef_set *set = NULL;
    char **names = NULL;
    size_t name_count = 0;
    char path[4096];

    *out = NULL;
    if (list_yaml_files(dir, &names, &name_count, err, errlen) != 0)
        goto fail;
    set = calloc(1, sizeof(*set));
    if (!set)
        goto oom;
    if (name_count > 0) {
        set->docs_ = calloc(name_count, sizeof(*set->docs_));
        set->topics = calloc(name_count, sizeof(*set->topics));
        if (!set->docs_ || !set->topics)
            goto oom;
    }

    for (size_t i = 0; i < name_count; i++) {
        struct topicdef *doc = NULL;
        cyaml_err_t rc;

        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path)) {
            snprintf(err, errlen, "%s/%s: path too long", dir, names[i]);
            goto fail;
        }
        memset(&cap, 0, sizeof(cap));
        rc = cyaml_load_file(path, &cfg, &topic_schema, (cyaml_data_t **)&doc, NULL);
        if (rc != CYAML_OK) {
            snprintf(err, errlen, "%s: %s", path, cap.len ? cap.text : cyaml_strerror(rc));
            goto fail;
        }
        if (!doc) {
            snprintf(err, errlen, "%s: empty document", path);
            goto fail;
        }
        /* The set owns the document from here, so a validation failure frees it too. */
        set->docs_[set->docs_count_++] = doc;
        if (validate_topic(doc, path, err, errlen) != 0)
            goto fail;
        if (topicdef_find(set, doc->name)) {
            snprintf(err, errlen, "%s: topic %s is already defined by another file", path,
                     doc->name);
            goto fail;
        }
        set->topics[set->count++] = *doc;
    }

    free_names(names, name_count);
    *out = set;
    return 0;

oom:
    snprintf(err, errlen, "%s: out of memory", dir);
fail:
    free_names(names, name_count);
    topicdef_set_destroy(set);
    return -1;
}

const struct topicdef *topicdef_find(const struct topicdef_set *set, const char *name)
{
    if (!set || !name)
        return NULL;
    for (size_t i = 0; i < set->count; i++)
        if (strcmp(set->topics[i].name, name) == 0)
            return &set->topics[i];
    return NULL;
}

const char *topicdef_config_get(const struct topicdef *t, const char *name)
{
    const char *found = NULL;

    if (!t || !name)
        return NULL;
    for (unsigned i = 0; i < t->config_count; i++)
        if (strcmp(t->config[i].name, name) == 0)
            found = t->config[i].value;
    return found;
}

void topicdef_set_destroy(struct topicdef_set *set)
{
    cyaml_config_t cfg = {.mem_fn = cyaml_mem, .log_level = CYAML_LOG_ERROR};

    if (!set)
        return;
    for (size_t i = 0; i < set->docs_count_; i++)
        cyaml_free(&cfg, &topic_schema, set->docs_[i], 0);
    free(set->docs_);
    free(set->topics);
    free(set);
}
