/* diary-worker: applies diary.events to the PostgreSQL primary (docs/worker.md).
 *
 * Two threads: the consumer thread (this one, worker.c) and the HTTP thread (health.c) that
 * reports what the first one counts. SIGTERM or SIGINT finishes the current batch, leaves
 * the group, flushes the producer and exits 0; a fatal condition exits 1. */
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

static atomic_bool stop_requested;

static void on_signal(int sig)
{
    atomic_store(&stop_requested, true);
}

int main(void)
{
    static struct worker_metrics metrics;
    struct worker_config cfg;
    char err[512], id[64], host[256];
    long batch_max, session_ms, lanes = 1, port_l = 0;
    int port;
    struct sigaction sa;
    sigset_t block, old;
    health_t *health = NULL;
    worker_t *w = NULL;
    int rc = 1;

    log_init("diary-worker", log_level_parse(config_str("DIARY_LOG_LEVEL")));
    if (sodium_init() < 0) {
        log_error(NULL, "libsodium: cannot initialise");
        return 1;
    }
    metrics_init(&metrics);

    memset(&cfg, 0, sizeof(cfg));
    cfg.bootstrap = config_str("KAFKA_BOOTSTRAP");
    cfg.pg_url = config_str("PG_PRIMARY_URL");
    cfg.group = config_str("DIARY_GROUP");
    cfg.events_topic = config_str("DIARY_EVENTS_TOPIC");
    cfg.changes_topic = config_str("DIARY_CHANGES_TOPIC");
    cfg.dlq_topic = config_str("DIARY_DLQ_TOPIC");
    cfg.worker_id = config_str("DIARY_WORKER_ID");
    if (!cfg.worker_id) {
        snprintf(id, sizeof(id), "worker-%ld", (long)getpid());
        cfg.worker_id = id;
    }
    if (!cfg.bootstrap || !cfg.pg_url) {
        log_error(NULL, "KAFKA_BOOTSTRAP and PG_PRIMARY_URL must be set");
        return 1;
    }
    if (config_long("DIARY_BATCH_MAX", 1, 100000, &batch_max, err, sizeof(err)) != 0 ||
        config_long("DIARY_WORKER_PORT", 0, 65535, &port_l, err, sizeof(err)) != 0 ||
        config_long("DIARY_APPLY_LANES", 1, 64, &lanes, err, sizeof(err)) != 0 ||
        config_parse_long(config_str("DIARY_SESSION_TIMEOUT_MS"), 1000, 3600000, &session_ms) !=
            0) {
        log_error(NULL, "configuration: %s",
                  err[0] ? err : "DIARY_SESSION_TIMEOUT_MS: want 1000 to 3600000");
        return 1;
    }
    {
        const char *mode = config_str("DIARY_APPLY_MODE");
        if (strcmp(mode, "set") != 0 && strcmp(mode, "event") != 0) {
            log_error(NULL, "configuration: DIARY_APPLY_MODE=%s: want set or event", mode);
            return 1;
        }
        cfg.per_event = strcmp(mode, "event") == 0;
    }
    cfg.batch_max = batch_max;
    cfg.lanes = lanes;
    cfg.session_timeout_ms = session_ms;
    port = (int)port_l;
    snprintf(host, sizeof(host), "%s", config_str("DIARY_WORKER_ADDR"));

    /* The signals go to this thread only: the HTTP and librdkafka threads inherit the mask
     * set here, and the consumer loop notices the flag within one poll. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);

    if (evthread_use_pthreads() != 0) {
        log_error(NULL, "libevent: no pthreads support");
        goto done;
    }
    health = health_new(host, port, config_str("DIARY_WORKER_PORT_FILE"), cfg.worker_id, &metrics,
                        err, sizeof(err));
    if (!health) {
        log_error(NULL, "%s", err);
        goto done;
    }
    w = worker_new(&cfg, &metrics, &stop_requested, err, sizeof(err));
    if (!w) {
        log_error(NULL, "%s", err);
        goto done;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    rc = worker_run(w);
done:
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    worker_destroy(w);
    health_destroy(health);
    libevent_global_shutdown();
    log_info(NULL, "stopped (exit %d)", rc);
    return rc;
}
