/* diaryctl topics describe|apply: the topics as the YAML files of topics/ define them, against a
 * cluster. describe      compares each defined topic with the cluster: missing, partitions,
 *                 replication factor, configs; changes nothing; exit 1 on any drift
 *   apply         creates the missing topics; reports drift of existing ones and changes
 *                 them only with --alter (more partitions, configs); --dry-run plans only
 * The devbroker (librdkafka's mock cluster) has no admin API: it creates its topics itself
 * from the same files, configs cannot be read from it, and apply says so. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctlkafka.h"
#include "diaryctl.h"
#include "kafka.h"
#include "topicdef.h"

struct actual {
    int exists, partitions, replication;
    int configs_known;
    rd_kafka_ConfigResource_t *res; /* from DescribeConfigs, owned by the result event */
};

static const char *actual_config(const struct actual *a, const char *name)
{
    size_t n;
    const rd_kafka_ConfigEntry_t **entries;

    if (!a->res)
        return NULL;
    entries = rd_kafka_ConfigResource_configs(a->res, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(rd_kafka_ConfigEntry_name(entries[i]), name) == 0)
            return rd_kafka_ConfigEntry_value(entries[i]);
    return NULL;
}

/* One difference between the definition and the cluster, as text or a JSON line. */
static void report_drift(int json, const char *topic, const char *what, const char *actual,
                         const char *want, const char *note)
{
    if (json)
        printf("{\"topic\":\"%s\",\"drift\":\"%s\",\"actual\":\"%s\",\"want\":\"%s\"}\n", topic,
               what, actual, want);
    else
        printf("  DRIFT %s: %s, want %s%s\n", what, actual, want, note);
}

/* Asks for every topic's metadata rather than this one's: asking for a missing topic by
 * name makes some brokers (the devbroker among them) create it. */
static void read_metadata(rd_kafka_t *rk, const struct topicdef *t, struct actual *a)
{
    const struct rd_kafka_metadata *md;

    memset(a, 0, sizeof(*a));
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000) != 0)
        return;
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *mt = &md->topics[i];
        if (strcmp(mt->topic, t->name) == 0 && !mt->err) {
            a->exists = 1;
            a->partitions = mt->partition_cnt;
            a->replication = mt->partition_cnt ? mt->partitions[0].replica_cnt : 0;
        }
    }
    rd_kafka_metadata_destroy(md);
}

/* One admin request, waited for. Returns the result event (the caller destroys it) or NULL
 * with err. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, char *err, size_t errlen)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 15000);

    if (!ev) {
        snprintf(err, errlen, "the admin request timed out");
        return NULL;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "%s", rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

/* Set when a cluster did not answer DescribeConfigs (the devbroker has no admin API), so
 * the remaining topics do not wait for it again. */
static int configs_unreadable;

static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op)
{
    char err[256];
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, op);
    rd_kafka_AdminOptions_set_request_timeout(o, 5000, err, sizeof(err));
    rd_kafka_AdminOptions_set_operation_timeout(o, 10000, err, sizeof(err));
    return o;
}

static int check_topic(rd_kafka_t *rk, rd_kafka_queue_t *q, const struct topicdef *t, int json,
                       int *missing, char *partitions_to, int alter_cfg[1])
{
    struct actual a;
    int drift = 0;
    rd_kafka_event_t *ev = NULL;
    char err[512] = "";

    read_metadata(rk, t, &a);
    *missing = !a.exists;
    if (!a.exists) {
        printf(json ? "{\"topic\":\"%s\",\"state\":\"missing\"}\n" : "%-20s MISSING\n", t->name);
        return 1;
    }
    /* Configs, where the cluster answers DescribeConfigs. */
    if (configs_unreadable) {
        snprintf(err, sizeof(err), "DescribeConfigs unanswered");
    } else {
        rd_kafka_ConfigResource_t *want =
            rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, t->name);
        rd_kafka_AdminOptions_t *o = admin_options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
        rd_kafka_DescribeConfigs(rk, &want, 1, o, q);
        rd_kafka_AdminOptions_destroy(o);
        rd_kafka_ConfigResource_destroy(want);
        ev = admin_wait(q, err, sizeof(err));
        configs_unreadable = !ev;
    }
    if (ev) {
        size_t n;
        const rd_kafka_ConfigResource_t **rs = rd_kafka_DescribeConfigs_result_resources(
            rd_kafka_event_DescribeConfigs_result(ev), &n);
        if (n == 1 && !rd_kafka_ConfigResource_error(rs[0])) {
            a.res = (rd_kafka_ConfigResource_t *)rs[0];
            a.configs_known = 1;
        } else if (n == 1) {
            snprintf(err, sizeof(err), "%s", rd_kafka_ConfigResource_error_string(rs[0]));
        }
    }
    if (!json)
        printf("%-20s partitions %d (want %d), replication %d (want %d)\n", t->name, a.partitions,
               t->partitions, a.replication, t->replication_factor);
    if (a.partitions != t->partitions) {
        char have[16], want_n[16];
        drift++;
        if (a.partitions < t->partitions)
            snprintf(partitions_to, 16, "%d", t->partitions);
        snprintf(have, sizeof(have), "%d", a.partitions);
        snprintf(want_n, sizeof(want_n), "%d", t->partitions);
        report_drift(json, t->name, "partitions", have, want_n,
                     a.partitions > t->partitions ? " (Kafka cannot remove partitions)" : "");
    }
    if (t->replication_factor && a.replication != t->replication_factor) {
        char have[16], want_n[16];
        drift++;
        snprintf(have, sizeof(have), "%d", a.replication);
        snprintf(want_n, sizeof(want_n), "%d", t->replication_factor);
        report_drift(json, t->name, "replication_factor", have, want_n,
                     " (reassign partitions by hand)");
    }
    if (!a.configs_known) {
        if (!json)
            printf("  configs: not readable from this cluster (%s)\n", err[0] ? err : "no answer");
    } else {
        for (unsigned i = 0; i < t->config_count; i++) {
            const char *have = actual_config(&a, t->config[i].name);
            if (!have || strcmp(have, t->config[i].value) != 0) {
                drift++;
                alter_cfg[0] = 1;
                report_drift(json, t->name, t->config[i].name, have ? have : "(unset)",
                             t->config[i].value, "");
            }
        }
    }
    if (!drift && !json)
        printf("  in step\n");
    if (ev)
        rd_kafka_event_destroy(ev);
    return drift;
}

static int create_topic(rd_kafka_t *rk, rd_kafka_queue_t *q, const struct topicdef *t)
{
    char err[512];
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(t->name, t->partitions,
                              t->replication_factor ? t->replication_factor : -1, err, sizeof(err));
    rd_kafka_event_t *ev;
    int rc = -1;

    if (!nt) {
        fprintf(stderr, "diaryctl topics: %s: %s\n", t->name, err);
        return -1;
    }
    for (unsigned i = 0; i < t->config_count; i++)
        rd_kafka_NewTopic_set_config(nt, t->config[i].name, t->config[i].value);
    rd_kafka_AdminOptions_t *o = admin_options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_CreateTopics(rk, &nt, 1, o, q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_NewTopic_destroy(nt);
    if ((ev = admin_wait(q, err, sizeof(err)))) {
        size_t n;
        const rd_kafka_topic_result_t **tr =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        if (n == 1 && rd_kafka_topic_result_error(tr[0]))
            snprintf(err, sizeof(err), "%s", rd_kafka_topic_result_error_string(tr[0]));
        else
            rc = 0;
        rd_kafka_event_destroy(ev);
    }
    if (rc)
        fprintf(stderr, "diaryctl topics: creating %s: %s\n", t->name, err);
    else
        printf("created %s (%d partitions)\n", t->name, t->partitions);
    return rc;
}

static int alter_topic(rd_kafka_t *rk, rd_kafka_queue_t *q, const struct topicdef *t,
                       const char *partitions_to, int configs)
{
    char err[512];
    rd_kafka_event_t *ev;
    int rc = 0;

    if (partitions_to[0]) {
        rd_kafka_NewPartitions_t *np =
            rd_kafka_NewPartitions_new(t->name, (size_t)atoi(partitions_to), err, sizeof(err));
        rd_kafka_AdminOptions_t *o = admin_options(rk, RD_KAFKA_ADMIN_OP_CREATEPARTITIONS);
        rd_kafka_CreatePartitions(rk, &np, 1, o, q);
        rd_kafka_AdminOptions_destroy(o);
        rd_kafka_NewPartitions_destroy(np);
        if (!(ev = admin_wait(q, err, sizeof(err)))) {
            fprintf(stderr, "diaryctl topics: partitions of %s: %s\n", t->name, err);
            rc = -1;
        } else {
            rd_kafka_event_destroy(ev);
            printf("%s: partitions raised to %s\n", t->name, partitions_to);
        }
    }
    if (configs) {
        /* AlterConfigs sets the listed configs and resets the topic's other dynamic ones:
         * the YAML file is the whole truth for a topic this tool manages. */
        rd_kafka_ConfigResource_t *r =
            rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, t->name);
        for (unsigned i = 0; i < t->config_count; i++)
            rd_kafka_ConfigResource_set_config(r, t->config[i].name, t->config[i].value);
        rd_kafka_AdminOptions_t *o = admin_options(rk, RD_KAFKA_ADMIN_OP_ALTERCONFIGS);
        rd_kafka_AlterConfigs(rk, &r, 1, o, q);
        rd_kafka_AdminOptions_destroy(o);
        rd_kafka_ConfigResource_destroy(r);
        if (!(ev = admin_wait(q, err, sizeof(err)))) {
            fprintf(stderr, "diaryctl topics: configs of %s: %s\n", t->name, err);
            rc = -1;
        } else {
            rd_kafka_event_destroy(ev);
            printf("%s: configs set from its YAML file\n", t->name);
        }
    }
    return rc;
}

int ctl_topics(int argc, char **argv)
{
    static const struct option opts[] = {{"dir", required_argument, NULL, 'd'},
                                         {"bootstrap", required_argument, NULL, 'b'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {"alter", no_argument, NULL, 'a'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = "topics", *bflag = NULL, *bootstrap, *verb;
    int c, dry = 0, alter = 0, json = 0, rc = CTL_FAIL, drift = 0, failed = 0;
    struct topicdef_set *set = NULL;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    char err[512];

    if (argc < 2 || (strcmp(argv[1], "describe") && strcmp(argv[1], "apply"))) {
        fprintf(stderr, "usage: diaryctl topics describe|apply [--dir DIR] [--dry-run] "
                        "[--alter] [--json]\n");
        return CTL_USAGE;
    }
    verb = argv[1];
    optind = 2;
    while ((c = getopt_long(argc, argv, "d:b:najh", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'b':
            bflag = optarg;
            break;
        case 'n':
            dry = 1;
            break;
        case 'a':
            alter = 1;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            printf("usage: diaryctl topics describe|apply [--dir DIR] [--dry-run] [--alter] "
                   "[--json]\n");
            return CTL_OK;
        default:
            return CTL_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "diaryctl topics: unexpected argument \"%s\"\n", argv[optind]);
        return CTL_USAGE;
    }
    if (topicdef_load_dir(dir, &set, err, sizeof(err)) != 0) {
        fprintf(stderr, "diaryctl topics: %s\n", err);
        return CTL_USAGE;
    }
    if (!(bootstrap = ctl_bootstrap(bflag)))
        goto out;
    /* Looking at a topic must not create it (a producer handle would ask for that). */
    static const char *const settings[] = {"allow.auto.create.topics", "false", NULL};
    if (!(conf = kafka_conf_new(bootstrap, "diaryctl-topics", settings, err, sizeof(err))) ||
        !(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)))) {
        if (conf && !rk)
            rd_kafka_conf_destroy(conf);
        fprintf(stderr, "diaryctl topics: %s\n", err);
        goto out;
    }
    q = rd_kafka_queue_new(rk);
    for (size_t i = 0; i < set->count; i++) {
        const struct topicdef *t = &set->topics[i];
        char partitions_to[16] = "";
        int missing, configs = 0;
        int d = check_topic(rk, q, t, json, &missing, partitions_to, &configs);

        drift += d;
        if (strcmp(verb, "apply") || !d)
            continue;
        if (missing) {
            if (dry)
                printf("would create %s (%d partitions)\n", t->name, t->partitions);
            else if (create_topic(rk, q, t) == 0)
                drift--;
            else
                failed++;
        } else if (alter && (partitions_to[0] || configs)) {
            if (dry)
                printf("would alter %s\n", t->name);
            else if (alter_topic(rk, q, t, partitions_to, configs) != 0)
                failed++;
        } else if (!alter) {
            printf("%s: drift left as it is (pass --alter to change it)\n", t->name);
        }
    }
    if (!json)
        printf("%zu topics defined, %d differences%s\n", set->count, drift,
               dry ? " (dry run: nothing changed)" : "");
    rc = failed ? CTL_FAIL : (!strcmp(verb, "describe") && drift) ? CTL_FAIL : CTL_OK;
out:
    if (q)
        rd_kafka_queue_destroy(q);
    if (rk)
        rd_kafka_destroy(rk);
    topicdef_set_destroy(set);
    return rc;
}
