/* diary-ingest: the HTTP node of the write path. Reads its settings from the environment
 * (shared/config.c), listens, and runs one event loop that serves HTTP, the producer's
 * delivery reports, the replica pool and the hash threads' results. The loop runs one pass at
 * a time (EVLOOP_ONCE) so that what is cheaper done once per pass than once per request is
 * done at the end of each pass: serving the delivery reports that arrived meanwhile, and
 * writing the log lines the pass produced in one write. SIGTERM or SIGINT
 * drains it: stop accepting, finish what is in flight (replica waits end early with their
 * 202), flush the producer, answer what is left, free everything, exit 0. A second signal
 * cuts the drain short. Start-up errors exit 2 with a message.
 *
 * `diary-ingest --routes` prints the route table and `--schemas` the JSON Schema of every
 * validation rule set (schema/api.yaml), without starting anything: tests compare them with
 * docs/openapi.yaml. */
#include "ingest.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "rng.h"
#include "validate.h"

#define REPLWAIT_TICK_MS 5
#define SHED_TICK_MS     100 /* how often load shedding reads the apply's positions */
#define DRAIN_TICK_MS    20
#define DRAIN_GRACE_MS   10000 /* longest wait for in-flight requests at shutdown */
#define FLUSH_MS         5000  /* longest wait for the broker at shutdown */
#define HASH_QUEUE_MAX   1024
#define PRIMARY_POOL     2    /* connections to the primary, for Diary-Min-Position fallbacks */
#define REVOKE_TICK_MS   1000 /* how often revocations are read from the replica */
#define LOG_BUFFER       (64 * 1024) /* stderr's buffer, written out at the end of each pass */

struct shutdown_state {
    struct ingest *app;
    struct event *sigterm, *sigint, *drain;
    int64_t drain_until;
    int signals;
};

static int load_config(struct ingest_config *c, char *err, size_t errlen)
{
    long v;
    const char *s;

    snprintf(c->addr, sizeof(c->addr), "%s", config_str("DIARY_HTTP_ADDR"));
    if (config_long("DIARY_HTTP_PORT", 0, 65535, &v, err, errlen))
        return -1;
    c->port = (int)v;
    c->bootstrap = config_str("KAFKA_BOOTSTRAP");
    if (!c->bootstrap) {
        snprintf(err, errlen, "KAFKA_BOOTSTRAP is not set (host:port of the Kafka brokers)");
        return -1;
    }
    /* Optional for ingest: the primary answers reads whose replica is behind. */
    c->primary_url = config_str("PG_PRIMARY_URL");
    c->replica_url = config_str("PG_REPLICA_URL");
    if (!c->replica_url) {
        snprintf(err, errlen, "PG_REPLICA_URL is not set (libpq URL of the read replica)");
        return -1;
    }
    s = config_str("DIARY_TOKEN_KEY");
    if (!s || token_key_parse(s, c->token_key) != 0) {
        snprintf(err, errlen, "DIARY_TOKEN_KEY must be 64 hex characters (a 32-byte key)%s",
                 s ? "" : "; it is not set");
        return -1;
    }
    if (config_long("DIARY_TOKEN_TTL", 60, 366L * 86400, &c->token_ttl, err, errlen))
        return -1;
    if (config_long("DIARY_PWHASH_OPSLIMIT", 0, 1000, &v, err, errlen))
        return -1;
    c->pw_ops = (unsigned long long)v;
    if (config_long("DIARY_PWHASH_MEMLIMIT", 0, 4L * 1024 * 1024 * 1024, &v, err, errlen))
        return -1;
    if (v != 0 && (size_t)v < crypto_pwhash_MEMLIMIT_MIN) {
        snprintf(err, errlen, "DIARY_PWHASH_MEMLIMIT=%ld: want 0 or at least %zu", v,
                 (size_t)crypto_pwhash_MEMLIMIT_MIN);
        return -1;
    }
    c->pw_mem = (size_t)v;
    if (config_long("DIARY_HASH_THREADS", 1, 64, &c->hash_threads, err, errlen) ||
        config_long("DIARY_READ_POOL", 1, 256, &c->read_pool, err, errlen) ||
        config_long("DIARY_MAX_BODY", 1024, 64L * 1024 * 1024, &c->max_body, err, errlen) ||
        config_long("DIARY_MAX_CONNECTIONS", 1, 1000000, &c->max_conns, err, errlen) ||
        config_long("DIARY_REQUEST_TIMEOUT_MS", 100, 600000, &c->req_timeout_ms, err, errlen) ||
        config_long("DIARY_MAX_WAIT", 0, 600, &c->max_wait, err, errlen) ||
        config_long("DIARY_INGEST_LINGER_MS", 0, 1000, &c->linger_ms, err, errlen) ||
        config_long("DIARY_INGEST_MAX_LAG", 0, 1000000000, &c->max_lag, err, errlen))
        return -1;
    c->group = config_str("DIARY_GROUP");
    c->topic = config_str("DIARY_EVENTS_TOPIC");
    s = config_str("DIARY_SOURCE");
    snprintf(c->source, sizeof(c->source), "%s", s ? s : "");
    /* Not in the shared table (yet): where to write the bound port, for port 0. */
    s = config_str("DIARY_HTTP_PORT_FILE");
    c->port_file = s && *s ? s : NULL;
    return 0;
}

/* Writes the port next to its final name and renames it, so a reader never sees half. */
static int write_port_file(const char *path, int port, char *err, size_t errlen)
{
    char tmp[4096];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write the port to %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct shutdown_state *s = arg;
    struct ingest *app = s->app;

    if ((app->nlive == 0 && kprod_outq_len(app->prod) == 0) ||
        replwait_now_ms() >= s->drain_until) {
        if (app->nlive > 0)
            log_warn(NULL, "drain time is up with %ld requests in flight", app->nlive);
        event_base_loopbreak(app->base);
    }
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct shutdown_state *s = arg;
    struct timeval tv = {0, DRAIN_TICK_MS * 1000};

    if (++s->signals > 1) {
        log_warn(NULL, "second signal: stopping now");
        event_base_loopbreak(s->app->base);
        return;
    }
    log_info(NULL, "signal %d: draining (%ld requests in flight)", (int)sig, s->app->nlive);
    server_stop_accepting(s->app);
    replwait_shutdown(s->app->wait);
    if (s->app->primary_wait)
        replwait_shutdown(s->app->primary_wait);
    s->drain_until = replwait_now_ms() + DRAIN_GRACE_MS;
    event_add(s->drain, &tv);
}

/* What each loop pass ends with: the delivery reports that came in during the pass (one
 * rd_kafka_poll for all of them rather than a wake-up per report), then the pass's log lines
 * in one write. */
static void pass_end(struct ingest *app)
{
    kprod_poll(app->prod);
    fflush(stderr);
}

/* The event loop. With epoll's change list, the changes a pass makes to the sockets it
 * watches go to the kernel once, at the next epoll_wait, merged per socket: evhttp stops
 * reading a connection while it answers and starts again once the answer is written, and
 * for a write those two changes (stop writing, start reading) fall in one pass, one
 * epoll_ctl instead of two. libevent's caveat for the flag is file descriptors cloned with
 * dup(): diary-ingest watches none (its sockets, libpq's and its own pipes are each opened
 * once). */
static struct event_base *new_base(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;

    if (!cfg)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

/* Runs the loop pass by pass until a loopbreak (the drain, a second signal). */
static void serve(struct ingest *app)
{
    for (;;) {
        int rc = event_base_loop(app->base, EVLOOP_ONCE);

        pass_end(app);
        if (rc != 0 || event_base_got_break(app->base) || event_base_got_exit(app->base))
            break;
    }
}

/* Lets libevent write out answers queued outside the loop. */
static void pump(struct event_base *base, int passes)
{
    for (int i = 0; i < passes; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

/* --schemas: {name: JSON Schema} of every loaded rule set. */
static int print_schemas(void)
{
    json_t *all = json_object();
    char *text;

    for (size_t i = 0; i < validate_schema_count(); i++) {
        const struct vschema *s = validate_schema_at(i);
        json_object_set_new(all, s->name, validate_json_schema(s));
    }
    text = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(all);
    if (!text)
        return 2;
    puts(text);
    free(text);
    return 0;
}

/* The options that print and exit; -1 when argv asks for none of them. */
static int one_shot(int argc, char **argv)
{
    char err[512];

    if (argc < 2)
        return -1;
    if (strcmp(argv[1], "--routes") == 0) {
        server_list_routes(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--schemas") == 0) {
        if (validate_load_default(err, sizeof(err)) != 0) {
            fprintf(stderr, "diary-ingest: %s\n", err);
            return 2;
        }
        return print_schemas();
    }
    fprintf(stderr, "usage: diary-ingest [--routes | --schemas]\n"
                    "  (no option: serve, configured by the environment)\n");
    return strcmp(argv[1], "--help") == 0 ? 0 : 2;
}

int main(int argc, char **argv)
{
    static struct ingest app;
    struct shutdown_state sd = {.app = &app};
    char err[512];
    int rc = 2, left;

    rc = one_shot(argc, argv);
    if (rc >= 0) {
        validate_unload();
        return rc;
    }
    /* Log lines (one per request) collect in stderr's buffer and go out at the end of each
     * loop pass (pass_end) or when the buffer fills: one write instead of two per line.
     * Other threads' lines wait at most until the next pass (the producer's tick is 100 ms);
     * lines are never split, stdio's lock keeps them whole. */
    setvbuf(stderr, NULL, _IOFBF, LOG_BUFFER);
    app.log_min = (int)log_level_parse(config_str("DIARY_LOG_LEVEL"));
    log_init("diary-ingest", (enum log_level)app.log_min);
    /* libsodium's user-space generator (ChaCha20, keyed from the kernel once per thread)
     * instead of a getrandom() system call for each request id and event id, with a buffer
     * per thread in front of it (rng.c). */
    if (rng_install() != 0) {
        fprintf(stderr, "diary-ingest: cannot select libsodium's random generator\n");
        return 2;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "diary-ingest: libsodium failed to initialise\n");
        return 2;
    }
    if (validate_load_default(err, sizeof(err)) != 0) {
        log_error(NULL, "API rules: %s", err);
        fprintf(stderr, "diary-ingest: %s\n", err);
        return 2;
    }
    log_info(NULL, "API rules loaded from %s", validate_source());
    if (load_config(&app.cfg, err, sizeof(err)) != 0) {
        log_error(NULL, "configuration: %s", err);
        fprintf(stderr, "diary-ingest: %s\n", err);
        validate_unload();
        return 2;
    }
    /* The requesthash is keyed so that the log never holds a plain hash of a body that
     * carried a password; all nodes share the token key, so they agree on it. */
    crypto_kdf_derive_from_key(app.reqhash_key, sizeof(app.reqhash_key), 1, "reqhash_",
                               app.cfg.token_key);
    signal(SIGPIPE, SIG_IGN);

    app.base = new_base();
    if (!app.base) {
        snprintf(err, sizeof(err), "cannot create the event loop");
        goto fail;
    }
    if (server_setup(&app, err, sizeof(err)) != 0)
        goto fail;
    if (!app.cfg.source[0])
        snprintf(app.cfg.source, sizeof(app.cfg.source), "ingest/%s:%d", app.cfg.addr, app.port);

    {
        /* Ingest's own linger rather than the shared one (which the worker's relay and
         * diaryctl keep): a few milliseconds cost each write little at low load and, under
         * load, give librdkafka far fewer and larger produce requests, so fewer wake-ups of
         * its broker threads and fewer delivery reports for the loop. */
        char linger[24];
        const char *const settings[] = {"linger.ms", linger, NULL};

        snprintf(linger, sizeof(linger), "%ld", app.cfg.linger_ms);
        app.prod = kprod_new(app.base, app.cfg.bootstrap, "diary-ingest", settings,
                             writes_delivered, err, sizeof(err));
    }
    if (!app.prod)
        goto fail;
    app.pg = pgpool_new(app.base, app.cfg.replica_url, (int)app.cfg.read_pool, err, sizeof(err));
    if (!app.pg)
        goto fail;
    app.hash = hashpool_new(app.base, (int)app.cfg.hash_threads, app.cfg.pw_ops, app.cfg.pw_mem,
                            HASH_QUEUE_MAX, err, sizeof(err));
    if (!app.hash)
        goto fail;
    /* Log-in with an unknown email verifies against this, so that it takes as long as a
     * wrong password. Computed once, at start-up, before the loop runs. */
    if (password_hash("not a password: timing decoy", app.cfg.pw_ops, app.cfg.pw_mem,
                      app.dummy_hash) != 0) {
        snprintf(err, sizeof(err), "cannot hash with DIARY_PWHASH_OPSLIMIT/MEMLIMIT");
        goto fail;
    }
    if (app.cfg.primary_url) {
        app.primary = pgpool_new(app.base, app.cfg.primary_url, PRIMARY_POOL, err, sizeof(err));
        if (!app.primary)
            goto fail;
        app.primary_wait =
            replwait_new(app.base, app.primary, app.cfg.group, app.cfg.topic, REPLWAIT_TICK_MS);
        if (!app.primary_wait) {
            snprintf(err, sizeof(err), "out of memory");
            goto fail;
        }
    }
    if (app.cfg.max_lag > 0) {
        /* The positions from the primary when there is one: the apply's own truth, not the
         * replica's view of it, which would also count the replication lag. */
        app.shed = shed_new(app.base, app.primary ? app.primary : app.pg, app.cfg.group,
                            app.cfg.topic, app.cfg.max_lag, SHED_TICK_MS);
        if (!app.shed || kprod_count_partitions(app.prod, app.cfg.topic) != 0) {
            snprintf(err, sizeof(err), "out of memory");
            goto fail;
        }
    }
    app.wait = replwait_new(app.base, app.pg, app.cfg.group, app.cfg.topic, REPLWAIT_TICK_MS);
    app.revoke = revoke_new(app.base, app.pg, app.cfg.token_ttl, REVOKE_TICK_MS);
    if (!app.wait || !app.revoke || ops_setup(&app) != 0) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    sd.sigterm = evsignal_new(app.base, SIGTERM, signal_cb, &sd);
    sd.sigint = evsignal_new(app.base, SIGINT, signal_cb, &sd);
    sd.drain = event_new(app.base, -1, EV_PERSIST, drain_tick, &sd);
    if (!sd.sigterm || !sd.sigint || !sd.drain || evsignal_add(sd.sigterm, NULL) != 0 ||
        evsignal_add(sd.sigint, NULL) != 0) {
        snprintf(err, sizeof(err), "cannot install signal handlers");
        goto fail;
    }
    if (app.cfg.port_file && write_port_file(app.cfg.port_file, app.port, err, sizeof(err)) != 0)
        goto fail;
    {
        char port[8];
        const char *kv[] = {"addr",         app.cfg.addr, "port",        port, "source",
                            app.cfg.source, "topic",      app.cfg.topic, NULL};
        snprintf(port, sizeof(port), "%d", app.port);
        log_fields(LOG_INFO, NULL, "listening", kv);
    }

    serve(&app);

    /* Shutdown: the loop has stopped. Stop accepting (if a second signal skipped the drain),
     * let the broker acknowledge what it has, answer what is left, then free in an order
     * where every pending callback still finds its owner alive. */
    server_stop_accepting(&app);
    replwait_shutdown(app.wait);
    if (app.primary_wait)
        replwait_shutdown(app.primary_wait);
    left = kprod_drain(app.prod, FLUSH_MS);
    pump(app.base, 4);
    server_abandon_all(&app, "the server is shutting down");
    pump(app.base, 4);
    rc = 0; /* a drain that lost messages is logged; the exit is still orderly */
    if (left)
        log_error(NULL, "%d messages were not acknowledged by the broker", left);
    goto cleanup;

fail:
    log_error(NULL, "start-up failed: %s", err);
    fprintf(stderr, "diary-ingest: %s\n", err);
    rc = 2;
cleanup:
    if (sd.sigterm)
        event_free(sd.sigterm);
    if (sd.sigint)
        event_free(sd.sigint);
    if (sd.drain)
        event_free(sd.drain);
    server_stop_accepting(&app);
    server_abandon_all(&app, "the server is shutting down");
    hashpool_destroy(app.hash); /* pending jobs' callbacks run: their requests are answered */
    app.hash = NULL;
    ops_teardown(&app);
    revoke_destroy(app.revoke);
    app.revoke = NULL;
    shed_destroy(app.shed); /* late delivery reports find NULL */
    app.shed = NULL;
    pgpool_destroy(app.pg); /* pending queries' callbacks run with "shutdown" */
    app.pg = NULL;
    pgpool_destroy(app.primary);
    app.primary = NULL;
    replwait_destroy(app.wait);
    app.wait = NULL;
    replwait_destroy(app.primary_wait);
    app.primary_wait = NULL;
    if (app.prod)
        kprod_drain(app.prod, 0);
    kprod_destroy(app.prod);
    server_reap(&app);
    if (app.nreqs)
        log_error(NULL, "%ld requests were still allocated at exit", app.nreqs);
    server_teardown(&app);
    if (app.base)
        event_base_free(app.base);
    libevent_global_shutdown();
    validate_unload();
    if (rc == 0)
        log_info(NULL, "stopped");
    return rc;
}
