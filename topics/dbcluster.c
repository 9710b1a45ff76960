#include "dbcluster.h"

#include <arpa/inet.h>
#include <errno.h>
#include <librdkafka/rdkafka_mock.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Kafka protocol request types go up to about 70 in 2023; the mock implements a subset. */
#define MAX_API_KEY 74

/* librdkafka 2.0.2's mock thread sometimes misses the wake-up for a control operation (it
 * drains its wake-up pipe after serving the queue, so a wake-up written in between is lost)
 * and serves the operation only when its one-second poll times out. A control call that has
 * waited KICK_AFTER_MS gets the thread out of its poll with a connection to a broker's
 * listener: the thread serves its queue on every wake-up, whatever woke it. */
#define KICK_AFTER_MS 20

struct kicker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started, stop;
    int64_t busy_since_ms; /* 0 while no control operation waits */
    struct sockaddr_in brokers[DBCLUSTER_MAX_BROKERS];
    int broker_count;
};

struct leaderless {
    char *topic;
    int32_t partition;
};

struct dbcluster {
    rd_kafka_t *host; /* owns the mock cluster's bookkeeping; never connects to it */
    rd_kafka_mock_cluster_t *mock;
    char *bootstraps;
    int brokers;
    bool down[DBCLUSTER_MAX_BROKERS + 1];
    int rtt_ms[DBCLUSTER_MAX_BROKERS + 1];
    struct dbcluster_topic *topics;
    size_t topic_count;
    struct leaderless *leaderless;
    size_t leaderless_count;
    struct kicker kicker;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Opens and closes a connection to the first broker that takes one. */
static void kick_mock_thread(const struct kicker *k)
{
    for (int i = 0; i < k->broker_count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int rc;
        if (fd < 0)
            return;
        rc = connect(fd, (const struct sockaddr *)&k->brokers[i], sizeof(k->brokers[i]));
        close(fd);
        if (rc == 0)
            return;
    }
}

static void *kicker_main(void *arg)
{
    struct kicker *k = arg;

    pthread_mutex_lock(&k->lock);
    while (!k->stop) {
        struct timespec until;
        if (k->busy_since_ms && now_ms() - k->busy_since_ms >= KICK_AFTER_MS) {
            k->busy_since_ms = now_ms();
            pthread_mutex_unlock(&k->lock);
            kick_mock_thread(k);
            pthread_mutex_lock(&k->lock);
            continue;
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (k->busy_since_ms ? 5 : 1000) * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&k->cond, &k->lock, &until);
    }
    pthread_mutex_unlock(&k->lock);
    return NULL;
}

/* Sets TCP_NODELAY on the brokers' listening sockets, which Linux passes on to every
 * connection they accept, as a Kafka broker sets it on its connections. librdkafka 2.0.2's
 * mock leaves Nagle's algorithm on: an answer written while an earlier one is not yet
 * acknowledged waits for that acknowledgement, which a client with nothing to send delays by
 * 40 ms; two requests in flight on one connection (a producer with several partitions to
 * send) then made the second answer take ~45 ms. The mock does not hand out its sockets: they
 * are found among the process's descriptors by their address. Returns how many were set. */
static int nodelay_listeners(const struct kicker *k)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int set = 0;

    if (!d)
        return 0;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name), listening = 0, one = 1;
        struct sockaddr_in sin;
        socklen_t len = sizeof(sin), ilen = sizeof(listening);

        if (fd <= 2 || fd == dirfd(d) || getsockname(fd, (struct sockaddr *)&sin, &len) != 0 ||
            sin.sin_family != AF_INET ||
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ilen) != 0 || !listening)
            continue;
        for (int i = 0; i < k->broker_count; i++) {
            if (k->brokers[i].sin_port == sin.sin_port &&
                k->brokers[i].sin_addr.s_addr == sin.sin_addr.s_addr &&
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0)
                set++;
        }
    }
    closedir(d);
    return set;
}

/* Parses "127.0.0.1:port,..." into the kicker's broker addresses and starts its thread. */
static int kicker_start(struct kicker *k, const char *bootstraps)
{
    const char *p = bootstraps;

    while (*p && k->broker_count < DBCLUSTER_MAX_BROKERS) {
        char host[64];
        unsigned port;
        size_t n = strcspn(p, ",");
        if (sscanf(p, "%63[^:]:%u", host, &port) == 2 && port < 65536) {
            struct sockaddr_in *sin = &k->brokers[k->broker_count];
            sin->sin_family = AF_INET;
            sin->sin_port = htons((uint16_t)port);
            if (inet_pton(AF_INET, host, &sin->sin_addr) == 1)
                k->broker_count++;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    pthread_mutex_init(&k->lock, NULL);
    pthread_cond_init(&k->cond, NULL);
    if (pthread_create(&k->thread, NULL, kicker_main, k) != 0) {
        pthread_cond_destroy(&k->cond);
        pthread_mutex_destroy(&k->lock);
        return -1;
    }
    k->started = true;
    return 0;
}

static void kicker_stop(struct kicker *k)
{
    if (!k->started)
        return;
    pthread_mutex_lock(&k->lock);
    k->stop = true;
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
    pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->cond);
    pthread_mutex_destroy(&k->lock);
    k->started = false;
}

/* Brackets every rd_kafka_mock_* call that goes through the mock thread's queue. */
static void mock_op_begin(dbcluster_t *c)
{
    struct kicker *k = &c->kicker;

    if (!k->started)
        return;
    pthread_mutex_lock(&k->lock);
    k->busy_since_ms = now_ms();
    pthread_cond_signal(&k->cond);
    pthread_mutex_unlock(&k->lock);
}

static void mock_op_end(dbcluster_t *c)
{
    struct kicker *k = &c->kicker;

    if (!k->started)
        return;
    pthread_mutex_lock(&k->lock);
    k->busy_since_ms = 0;
    pthread_mutex_unlock(&k->lock);
}

/* librdkafka's log levels are syslog's: 0..3 errors, 4 warning, 5..6 info, 7 debug. */
static enum log_level level_from_syslog(int level)
{
    if (level <= 3)
        return LOG_ERROR;
    if (level == 4)
        return LOG_WARN;
    if (level <= 6)
        return LOG_INFO;
    return LOG_DEBUG;
}

static void client_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const char *kv[] = {"fac", fac, "client", rd_kafka_name(rk), NULL};

    log_fields(level_from_syslog(level), NULL, buf, kv);
}

/* The mock's host is deliberately without bootstrap.servers; librdkafka's warning about that
 * would only mislead. */
static void host_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers"))
        return;
    client_log_cb(rk, level, fac, buf);
}

/* Client errors are generally informational: the client recovers by itself. Only a fatal
 * error is logged as an error; the code that drives the client decides what it means. */
static void client_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    const char *kv[] = {"client", rd_kafka_name(rk), "error", rd_kafka_err2name(err), NULL};

    log_fields(err == RD_KAFKA_RESP_ERR__FATAL ? LOG_ERROR : LOG_WARN, NULL, reason, kv);
}

int dbcluster_conf_set_all(rd_kafka_conf_t *conf, const struct dbcluster_setting *settings,
                           size_t count, char *err, size_t errlen)
{
    for (size_t i = 0; i < count; i++)
        if (rd_kafka_conf_set(conf, settings[i].name, settings[i].value, err, errlen) !=
            RD_KAFKA_CONF_OK)
            return -1;
    return 0;
}

int dbcluster_new(int brokers, const char *debug, dbcluster_t **out, char *err, size_t errlen)
{
    dbcluster_t *c = NULL;
    rd_kafka_conf_t *conf = NULL;
    const char *bs;

    *out = NULL;
    if (brokers < 1 || brokers > DBCLUSTER_MAX_BROKERS) {
        snprintf(err, errlen, "broker count must be 1..%d, not %d", DBCLUSTER_MAX_BROKERS, brokers);
        return -1;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->brokers = brokers;
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, host_log_cb);
    rd_kafka_conf_set_error_cb(conf, client_error_cb);
    if (rd_kafka_conf_set(conf, "client.id", "devbroker-mock", err, errlen) != RD_KAFKA_CONF_OK)
        goto fail;
    if (debug && *debug && rd_kafka_conf_set(conf, "debug", debug, err, errlen) != RD_KAFKA_CONF_OK)
        goto fail;
    /* No bootstrap.servers: the host stays disconnected. */
    c->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!c->host)
        goto fail;
    conf = NULL; /* rd_kafka_new() took it */
    c->mock = rd_kafka_mock_cluster_new(c->host, brokers);
    if (!c->mock) {
        snprintf(err, errlen, "could not create a mock cluster of %d brokers", brokers);
        goto fail;
    }
    bs = rd_kafka_mock_cluster_bootstraps(c->mock);
    if (!bs || !(c->bootstraps = strdup(bs))) {
        snprintf(err, errlen, "mock cluster has no bootstrap address");
        goto fail;
    }
    if (kicker_start(&c->kicker, c->bootstraps) != 0) {
        snprintf(err, errlen, "cannot start a thread: %s", strerror(errno));
        goto fail;
    }
    if (nodelay_listeners(&c->kicker) != c->kicker.broker_count)
        log_warn(NULL, "devbroker: TCP_NODELAY not set on every broker's listener: answers to "
                       "pipelined requests may wait 40 ms");
    *out = c;
    return 0;

fail:
    if (conf)
        rd_kafka_conf_destroy(conf);
    dbcluster_destroy(c);
    return -1;
}

void dbcluster_destroy(dbcluster_t *c)
{
    if (!c)
        return;
    if (c->mock) {
        mock_op_begin(c);
        rd_kafka_mock_cluster_destroy(c->mock);
        mock_op_end(c);
    }
    kicker_stop(&c->kicker);
    if (c->host)
        rd_kafka_destroy(c->host);
    for (size_t i = 0; i < c->topic_count; i++)
        free(c->topics[i].name);
    free(c->topics);
    for (size_t i = 0; i < c->leaderless_count; i++)
        free(c->leaderless[i].topic);
    free(c->leaderless);
    free(c->bootstraps);
    free(c);
}

const char *dbcluster_bootstraps(const dbcluster_t *c)
{
    return c->bootstraps;
}

int dbcluster_broker_count(const dbcluster_t *c)
{
    return c->brokers;
}

int dbcluster_topic_create(dbcluster_t *c, const char *name, int partitions, int replication_factor,
                           char *err, size_t errlen)
{
    struct dbcluster_topic *grown;
    rd_kafka_resp_err_t kerr;
    char *copy;

    if (dbcluster_topic_find(c, name)) {
        snprintf(err, errlen, "topic %s exists already", name);
        return -1;
    }
    if (partitions < 1) {
        snprintf(err, errlen, "topic %s: %d partitions", name, partitions);
        return -1;
    }
    if (replication_factor > c->brokers) {
        const char *kv[] = {"topic", name, NULL};
        log_fields(LOG_WARN, NULL,
                   "replication factor above the broker count; using the broker count", kv);
        replication_factor = c->brokers;
    } else if (replication_factor < 1) {
        replication_factor = c->brokers < 3 ? c->brokers : 3;
    }
    grown = realloc(c->topics, (c->topic_count + 1) * sizeof(*grown));
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->topics = grown;
    copy = strdup(name);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    mock_op_begin(c);
    kerr = rd_kafka_mock_topic_create(c->mock, name, partitions, replication_factor);
    mock_op_end(c);
    if (kerr) {
        snprintf(err, errlen, "create topic %s: %s", name, rd_kafka_err2str(kerr));
        free(copy);
        return -1;
    }
    c->topics[c->topic_count].name = copy;
    c->topics[c->topic_count].partitions = partitions;
    c->topics[c->topic_count].replication_factor = replication_factor;
    c->topic_count++;
    return 0;
}

size_t dbcluster_topic_count(const dbcluster_t *c)
{
    return c->topic_count;
}

const struct dbcluster_topic *dbcluster_topic_at(const dbcluster_t *c, size_t i)
{
    return i < c->topic_count ? &c->topics[i] : NULL;
}

const struct dbcluster_topic *dbcluster_topic_find(const dbcluster_t *c, const char *name)
{
    for (size_t i = 0; i < c->topic_count; i++)
        if (strcmp(c->topics[i].name, name) == 0)
            return &c->topics[i];
    return NULL;
}

static int check_broker(const dbcluster_t *c, int32_t broker, char *err, size_t errlen)
{
    if (broker < 1 || broker > c->brokers) {
        snprintf(err, errlen, "no broker %d (brokers are 1..%d)", (int)broker, c->brokers);
        return -1;
    }
    return 0;
}

static int check_kafka(rd_kafka_resp_err_t kerr, const char *what, char *err, size_t errlen)
{
    if (!kerr)
        return 0;
    snprintf(err, errlen, "%s: %s", what, rd_kafka_err2str(kerr));
    return -1;
}

int dbcluster_broker_set_down(dbcluster_t *c, int32_t broker, bool down, char *err, size_t errlen)
{
    rd_kafka_resp_err_t kerr;

    if (check_broker(c, broker, err, errlen) != 0)
        return -1;
    mock_op_begin(c);
    kerr = down ? rd_kafka_mock_broker_set_down(c->mock, broker)
                : rd_kafka_mock_broker_set_up(c->mock, broker);
    mock_op_end(c);
    if (check_kafka(kerr, down ? "broker down" : "broker up", err, errlen) != 0)
        return -1;
    c->down[broker] = down;
    return 0;
}

int dbcluster_broker_set_rtt(dbcluster_t *c, int32_t broker, int rtt_ms, char *err, size_t errlen)
{
    rd_kafka_resp_err_t kerr;

    if (check_broker(c, broker, err, errlen) != 0)
        return -1;
    mock_op_begin(c);
    kerr = rd_kafka_mock_broker_set_rtt(c->mock, broker, rtt_ms);
    mock_op_end(c);
    if (check_kafka(kerr, "broker rtt", err, errlen) != 0)
        return -1;
    c->rtt_ms[broker] = rtt_ms;
    return 0;
}

bool dbcluster_broker_is_down(const dbcluster_t *c, int32_t broker)
{
    return broker >= 1 && broker <= c->brokers && c->down[broker];
}

int dbcluster_broker_rtt(const dbcluster_t *c, int32_t broker)
{
    return broker >= 1 && broker <= c->brokers ? c->rtt_ms[broker] : 0;
}

int dbcluster_push_errors(dbcluster_t *c, int16_t api_key, rd_kafka_resp_err_t code, size_t count,
                          char *err, size_t errlen)
{
    rd_kafka_resp_err_t *codes = calloc(count ? count : 1, sizeof(*codes));

    if (!codes) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < count; i++)
        codes[i] = code;
    rd_kafka_mock_push_request_errors_array(c->mock, api_key, count, codes);
    free(codes);
    return 0;
}

int dbcluster_broker_push_errors(dbcluster_t *c, int32_t broker, int16_t api_key,
                                 rd_kafka_resp_err_t code, size_t count, int rtt_ms, char *err,
                                 size_t errlen)
{
    if (check_broker(c, broker, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < count; i++)
        if (check_kafka(rd_kafka_mock_broker_push_request_error_rtts(c->mock, broker, api_key, 1,
                                                                     code, rtt_ms),
                        "push broker error", err, errlen) != 0)
            return -1;
    return 0;
}

size_t dbcluster_broker_pending_errors(dbcluster_t *c, int32_t broker)
{
    size_t total = 0;

    for (int16_t key = 0; key <= MAX_API_KEY; key++) {
        size_t cnt = 0;
        if (rd_kafka_mock_broker_error_stack_cnt(c->mock, broker, key, &cnt) == 0)
            total += cnt;
    }
    return total;
}

static void forget_leaderless(dbcluster_t *c, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < c->leaderless_count; i++) {
        if (c->leaderless[i].partition == partition && strcmp(c->leaderless[i].topic, topic) == 0) {
            free(c->leaderless[i].topic);
            c->leaderless[i] = c->leaderless[--c->leaderless_count];
            return;
        }
    }
}

int dbcluster_partition_set_leader(dbcluster_t *c, const char *topic, int32_t partition,
                                   int32_t broker, char *err, size_t errlen)
{
    const struct dbcluster_topic *t = dbcluster_topic_find(c, topic);
    rd_kafka_resp_err_t kerr;

    /* The mock creates a topic it does not know; only existing ones are accepted here. */
    if (!t) {
        snprintf(err, errlen, "no topic %s", topic);
        return -1;
    }
    if (partition < 0 || partition >= t->partitions) {
        snprintf(err, errlen, "topic %s has partitions 0..%d", topic, t->partitions - 1);
        return -1;
    }
    if (broker != -1 && check_broker(c, broker, err, errlen) != 0)
        return -1;
    if (broker == -1) {
        struct leaderless *grown =
            realloc(c->leaderless, (c->leaderless_count + 1) * sizeof(*grown));
        char *copy = strdup(topic);
        if (grown)
            c->leaderless = grown;
        if (!grown || !copy) {
            free(copy);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        forget_leaderless(c, topic, partition);
        c->leaderless[c->leaderless_count].topic = copy;
        c->leaderless[c->leaderless_count].partition = partition;
        c->leaderless_count++;
    } else {
        forget_leaderless(c, topic, partition);
    }
    mock_op_begin(c);
    kerr = rd_kafka_mock_partition_set_leader(c->mock, topic, partition, broker);
    mock_op_end(c);
    return check_kafka(kerr, "set leader", err, errlen);
}

void dbcluster_clear_faults(dbcluster_t *c)
{
    /* Request errors are behind a mutex, not the mock thread's queue; the rest only where
     * something was changed, since every queued operation costs a round trip. */
    for (int16_t key = 0; key <= MAX_API_KEY; key++)
        rd_kafka_mock_clear_request_errors(c->mock, key);
    for (int32_t b = 1; b <= c->brokers; b++) {
        mock_op_begin(c);
        if (c->down[b])
            rd_kafka_mock_broker_set_up(c->mock, b);
        if (c->rtt_ms[b])
            rd_kafka_mock_broker_set_rtt(c->mock, b, 0);
        mock_op_end(c);
        c->down[b] = false;
        c->rtt_ms[b] = 0;
    }
    for (size_t i = 0; i < c->leaderless_count; i++) {
        const struct leaderless *l = &c->leaderless[i];
        mock_op_begin(c);
        rd_kafka_mock_partition_set_leader(c->mock, l->topic, l->partition,
                                           1 + l->partition % c->brokers);
        mock_op_end(c);
        free(l->topic);
    }
    c->leaderless_count = 0;
}

rd_kafka_conf_t *dbcluster_client_conf(const dbcluster_t *c, const char *client_id, char *err,
                                       size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const struct dbcluster_setting settings[] = {
        {"bootstrap.servers", c->bootstraps},
        {"client.id", client_id},
    };

    rd_kafka_conf_set_log_cb(conf, client_log_cb);
    rd_kafka_conf_set_error_cb(conf, client_error_cb);
    if (dbcluster_conf_set_all(conf, settings, 2, err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}
