/* diary-devbroker: the development Kafka. A librdkafka mock cluster on loopback with the
 * topics of topics/NAME.yaml, saved to a state folder on SIGTERM/SIGINT and restored on the
 * next start, and a loopback control endpoint for fault injection. See docs/devbroker.md.
 *
 * Start-up order makes the bootstrap file the readiness signal: topics created, state
 * restored, control endpoint listening (its address written), then the bootstrap file. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "dbcluster.h"
#include "dbcontrol.h"
#include "dbsnapshot.h"
#include "log.h"
#include "topicdef.h"

#define EXIT_USAGE 2

struct options {
    const char *topics_dir;
    const char *state_dir;
    int brokers;
    char control_host[64];
    int control_port;
    char *bootstrap_file; /* owned */
    char *control_file;   /* owned */
    const char *debug;
};

/* Everything the running broker holds, released in reverse order by broker_close. */
struct broker {
    struct options *opt;
    int lock_fd;
    struct topicdef_set *defs;
    struct dbsnapshot_saved *saved;
    dbcluster_t *cluster;
    struct event_base *base;
    struct event *sigterm, *sigint;
    dbcontrol_t *control;
    bool files_written;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: diary-devbroker --topics DIR --state DIR [options]\n"
            "\n"
            "The development Kafka: a librdkafka mock cluster on loopback with the topics\n"
            "defined in DIR/NAME.yaml, saved to the state folder on SIGTERM or SIGINT and\n"
            "restored on the next start, with a control endpoint for fault injection.\n"
            "\n"
            "  --topics DIR            topic definitions (env DEVBROKER_TOPICS_DIR)\n"
            "  --state DIR             saved state, lock and address files\n"
            "                          (env DEVBROKER_STATE_DIR)\n"
            "  --brokers N             brokers in the cluster, 1..%d (env DEVBROKER_BROKERS,\n"
            "                          default 3)\n"
            "  --control HOST:PORT     control endpoint, loopback only, port 0 picks one\n"
            "                          (env DEVBROKER_CONTROL, default 127.0.0.1:0)\n"
            "  --bootstrap-file PATH   where the bootstrap servers are written once ready\n"
            "                          (env DEVBROKER_BOOTSTRAP_FILE, default STATE/bootstrap)\n"
            "  --control-file PATH     where the control address is written\n"
            "                          (env DEVBROKER_CONTROL_FILE, default STATE/control.addr)\n"
            "  --debug CONTEXTS        librdkafka debug contexts for the mock, e.g. mock\n"
            "                          (env DEVBROKER_DEBUG)\n"
            "  --help                  this text\n"
            "\n"
            "Logs are JSON lines on stderr (DIARY_LOG_LEVEL=debug|info|warn|error).\n",
            DBCLUSTER_MAX_BROKERS);
}

static char *path_in(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);

    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Fills opt from the command line, then the environment, then defaults. 0, or -1 with err
 * (a usage error). */
static int parse_options(int argc, char **argv, struct options *opt, bool *help, char *err,
                         size_t errlen)
{
    static const struct option longopts[] = {
        {"topics", required_argument, NULL, 't'},
        {"state", required_argument, NULL, 's'},
        {"brokers", required_argument, NULL, 'b'},
        {"control", required_argument, NULL, 'c'},
        {"bootstrap-file", required_argument, NULL, 'f'},
        {"control-file", required_argument, NULL, 'F'},
        {"debug", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *brokers = NULL, *control = NULL, *bootstrap_file = NULL, *control_file = NULL;
    long n;
    int c;

    *help = false;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            opt->topics_dir = optarg;
            break;
        case 's':
            opt->state_dir = optarg;
            break;
        case 'b':
            brokers = optarg;
            break;
        case 'c':
            control = optarg;
            break;
        case 'f':
            bootstrap_file = optarg;
            break;
        case 'F':
            control_file = optarg;
            break;
        case 'd':
            opt->debug = optarg;
            break;
        case 'h':
            *help = true;
            return 0;
        case ':':
            snprintf(err, errlen, "option %s needs a value", argv[optind - 1]);
            return -1;
        default:
            snprintf(err, errlen, "unknown option %s", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument \"%s\"", argv[optind]);
        return -1;
    }

    if (!opt->topics_dir)
        opt->topics_dir = config_str("DEVBROKER_TOPICS_DIR");
    if (!opt->state_dir)
        opt->state_dir = config_str("DEVBROKER_STATE_DIR");
    if (!brokers)
        brokers = config_str("DEVBROKER_BROKERS");
    if (!control)
        control = config_str("DEVBROKER_CONTROL");
    if (!bootstrap_file)
        bootstrap_file = config_str("DEVBROKER_BOOTSTRAP_FILE");
    if (!control_file)
        control_file = config_str("DEVBROKER_CONTROL_FILE");
    if (!opt->debug)
        opt->debug = config_str("DEVBROKER_DEBUG");

    if (!opt->topics_dir || !*opt->topics_dir) {
        snprintf(err, errlen, "--topics DIR (or DEVBROKER_TOPICS_DIR) is required");
        return -1;
    }
    if (!opt->state_dir || !*opt->state_dir) {
        snprintf(err, errlen, "--state DIR (or DEVBROKER_STATE_DIR) is required");
        return -1;
    }
    opt->brokers = 3;
    if (brokers && *brokers) {
        if (config_parse_long(brokers, 1, DBCLUSTER_MAX_BROKERS, &n) != 0) {
            snprintf(err, errlen, "--brokers must be a whole number from 1 to %d, not \"%s\"",
                     DBCLUSTER_MAX_BROKERS, brokers);
            return -1;
        }
        opt->brokers = (int)n;
    }
    snprintf(opt->control_host, sizeof(opt->control_host), "127.0.0.1");
    opt->control_port = 0;
    if (control && *control) {
        char host[64];
        size_t len;
        if (config_parse_hostport(control, host, sizeof(host), &opt->control_port) != 0) {
            snprintf(err, errlen, "--control must be HOST:PORT with PORT 0..65535, not \"%s\"",
                     control);
            return -1;
        }
        /* "[::1]:0" names an IPv6 host in brackets. */
        len = strlen(host);
        if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
            host[len - 1] = '\0';
            memmove(host, host + 1, len - 1);
        }
        if (!dbcontrol_host_is_loopback(host)) {
            snprintf(err, errlen,
                     "--control must be a loopback address (127.0.0.1, ::1, localhost), not "
                     "\"%s\": the endpoint has no authentication",
                     host);
            return -1;
        }
        snprintf(opt->control_host, sizeof(opt->control_host), "%s", host);
    }
    opt->bootstrap_file = bootstrap_file && *bootstrap_file ? strdup(bootstrap_file)
                                                            : path_in(opt->state_dir, "bootstrap");
    opt->control_file = control_file && *control_file ? strdup(control_file)
                                                      : path_in(opt->state_dir, "control.addr");
    if (!opt->bootstrap_file || !opt->control_file) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Files. */

static int mkdir_p(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(buf))
        return -1;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Replaces path with text: written to a temporary file, fsynced, renamed, so a reader sees
 * the old file, no file, or the whole new one. */
static int write_file_atomic(const char *path, const char *text, char *err, size_t errlen)
{
    size_t n = strlen(path) + 32, len = strlen(text);
    char *tmp = malloc(n);
    int fd = -1;

    if (!tmp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "rename to %s: %s", path, strerror(errno));
        goto fail;
    }
    free(tmp);
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    return -1;
}

/* Takes an exclusive lock on STATE/devbroker.lock: two brokers on one state folder would
 * overwrite each other's saves. The lock goes with the process. */
static int lock_state_dir(const char *dir, int *fd_out, char *err, size_t errlen)
{
    char *path = path_in(dir, "devbroker.lock");
    int fd;

    if (!path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "%s: %s", path,
                 errno == EWOULDBLOCK ? "another devbroker uses this state folder"
                                      : strerror(errno));
        close(fd);
        free(path);
        return -1;
    }
    free(path);
    *fd_out = fd;
    return 0;
}

/* Start-up. */

/* defined is the definition's partition count, or 0 for a topic without definition. */
static void log_topic_warning(const char *msg, const char *topic, int defined, int saved)
{
    char d[16], s[16];
    const char *kv[] = {"topic", topic, "saved_partitions", s, "defined_partitions", d, NULL};

    snprintf(d, sizeof(d), "%d", defined);
    snprintf(s, sizeof(s), "%d", saved);
    if (defined == 0)
        kv[4] = NULL;
    log_fields(LOG_WARN, NULL, msg, kv);
}

/* Creates every defined topic, with the saved partition count where state exists, then
 * every saved topic that has no definition any more (its data is kept, not dropped). */
static int create_topics(struct broker *b, char *err, size_t errlen)
{
    for (size_t i = 0; i < b->defs->count; i++) {
        const struct topicdef *t = &b->defs->topics[i];
        const struct dbsnapshot_topic *s = dbsnapshot_saved_find(b->saved, t->name);
        int partitions = t->partitions;

        if (s && s->partitions != t->partitions) {
            log_topic_warning("saved state has a different partition count than the "
                              "definition; keeping the saved count (delete the state file "
                              "to start the topic afresh)",
                              t->name, t->partitions, (int)s->partitions);
            partitions = s->partitions;
        }
        if (dbcluster_topic_create(b->cluster, t->name, partitions, t->replication_factor, err,
                                   errlen) != 0)
            return -1;
    }
    for (size_t i = 0; b->saved && i < b->saved->count; i++) {
        const struct dbsnapshot_topic *s = &b->saved->topics[i];
        if (topicdef_find(b->defs, s->name))
            continue;
        log_topic_warning("saved topic has no definition; restoring it anyway", s->name, 0,
                          (int)s->partitions);
        if (dbcluster_topic_create(b->cluster, s->name, s->partitions, s->replication_factor, err,
                                   errlen) != 0)
            return -1;
    }
    return 0;
}

/* libevent writes its own warnings to stderr unless told otherwise; every log line is JSON. */
static void libevent_log_cb(int severity, const char *msg)
{
    const char *kv[] = {"fac", "libevent", NULL};

    log_fields(severity >= EVENT_LOG_ERR    ? LOG_ERROR
               : severity == EVENT_LOG_WARN ? LOG_WARN
                                            : LOG_DEBUG,
               NULL, msg, kv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct broker *b = arg;
    const char *kv[] = {"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", NULL};

    log_fields(LOG_INFO, NULL, "stopping", kv);
    event_base_loopbreak(b->base);
}

static int broker_open(struct broker *b, char *err, size_t errlen)
{
    char bound[128], line[4200], msg[768];

    if (mkdir_p(b->opt->state_dir) != 0) {
        snprintf(err, errlen, "%s: cannot create: %s", b->opt->state_dir, strerror(errno));
        return -1;
    }
    if (lock_state_dir(b->opt->state_dir, &b->lock_fd, err, errlen) != 0)
        return -1;
    /* Stale address files from a previous run would announce a broker that is not there. */
    unlink(b->opt->bootstrap_file);
    unlink(b->opt->control_file);

    if (topicdef_load_dir(b->opt->topics_dir, &b->defs, msg, sizeof(msg)) != 0) {
        snprintf(err, errlen, "topic definitions: %s", msg);
        return -1;
    }
    if (dbsnapshot_scan(b->opt->state_dir, &b->saved, err, errlen) != 0)
        return -1;
    if (dbcluster_new(b->opt->brokers, b->opt->debug, &b->cluster, err, errlen) != 0)
        return -1;
    if (create_topics(b, err, errlen) != 0)
        return -1;

    /* Signals are caught from here on; one arriving during the restore stops the broker
     * right after it, with a save. */
    b->base = event_base_new();
    if (!b->base) {
        snprintf(err, errlen, "event_base_new failed");
        return -1;
    }
    b->sigterm = evsignal_new(b->base, SIGTERM, signal_cb, b);
    b->sigint = evsignal_new(b->base, SIGINT, signal_cb, b);
    if (!b->sigterm || !b->sigint || event_add(b->sigterm, NULL) != 0 ||
        event_add(b->sigint, NULL) != 0) {
        snprintf(err, errlen, "cannot catch signals");
        return -1;
    }

    if (dbsnapshot_restore(b->cluster, b->saved, err, errlen) != 0)
        return -1;

    if (dbcontrol_new(b->base, b->cluster, b->opt->control_host, b->opt->control_port, &b->control,
                      bound, sizeof(bound), err, errlen) != 0)
        return -1;
    snprintf(line, sizeof(line), "%s\n", bound);
    b->files_written = true;
    if (write_file_atomic(b->opt->control_file, line, err, errlen) != 0)
        return -1;
    snprintf(line, sizeof(line), "%s\n", dbcluster_bootstraps(b->cluster));
    if (write_file_atomic(b->opt->bootstrap_file, line, err, errlen) != 0)
        return -1;
    {
        char brokers[16];
        const char *kv[] = {"bootstrap", dbcluster_bootstraps(b->cluster),
                            "control",   bound,
                            "brokers",   brokers,
                            "state",     b->opt->state_dir,
                            NULL};
        snprintf(brokers, sizeof(brokers), "%d", b->opt->brokers);
        log_fields(LOG_INFO, NULL, "ready", kv);
    }
    return 0;
}

/* Saves the state when the broker got as far as running, then releases everything. Returns
 * the exit code. */
static int broker_close(struct broker *b, bool save)
{
    char err[1024];
    int rc = 0;

    /* No control request may change the cluster while it is saved. */
    dbcontrol_destroy(b->control);
    b->control = NULL;
    if (b->files_written) {
        unlink(b->opt->bootstrap_file);
        unlink(b->opt->control_file);
    }
    if (save && b->cluster) {
        dbcluster_clear_faults(b->cluster);
        if (dbsnapshot_save(b->cluster, b->opt->state_dir, err, sizeof(err)) != 0) {
            log_write(LOG_ERROR, NULL, "saving the state failed, the previous save is kept: %s",
                      err);
            rc = 1;
        }
    }
    dbcluster_destroy(b->cluster);
    if (b->sigterm)
        event_free(b->sigterm);
    if (b->sigint)
        event_free(b->sigint);
    if (b->base)
        event_base_free(b->base);
    dbsnapshot_saved_free(b->saved);
    topicdef_set_destroy(b->defs);
    if (b->lock_fd >= 0)
        close(b->lock_fd);
    return rc;
}

int main(int argc, char **argv)
{
    struct options opt = {0};
    struct broker b = {.opt = &opt, .lock_fd = -1};
    char err[1024];
    bool help;
    int rc;

    log_init("devbroker", log_level_parse(config_str("DIARY_LOG_LEVEL")));
    event_set_log_callback(libevent_log_cb);
    signal(SIGPIPE, SIG_IGN);

    if (parse_options(argc, argv, &opt, &help, err, sizeof(err)) != 0) {
        log_write(LOG_ERROR, NULL, "%s (see diary-devbroker --help)", err);
        free(opt.bootstrap_file);
        free(opt.control_file);
        return EXIT_USAGE;
    }
    if (help) {
        usage(stdout);
        return 0;
    }

    if (broker_open(&b, err, sizeof(err)) != 0) {
        log_write(LOG_ERROR, NULL, "%s", err);
        broker_close(&b, false);
        rc = 1;
    } else {
        event_base_dispatch(b.base);
        rc = broker_close(&b, true);
        if (rc == 0)
            log_write(LOG_INFO, NULL, "stopped");
    }
    free(opt.bootstrap_file);
    free(opt.control_file);
    libevent_global_shutdown();
    return rc;
}
