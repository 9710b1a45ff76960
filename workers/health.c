#include "health.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http.h"
#include "log.h"

struct health {
    struct event_base *base;
    struct evhttp *http;
    struct event *stop_ev; /* activated by health_destroy from the other thread */
    pthread_t thread;
    bool started;
    struct worker_metrics *m; /* borrowed */
    char worker_id[128];
};

typedef void (*route_fn)(struct health *h, struct evhttp_request *req);

static bool kafka_ok(const struct worker_metrics *m)
{
    return atomic_load(&m->kafka_joined) && !atomic_load(&m->kafka_down);
}

static void route_healthz(struct health *h, struct evhttp_request *req)
{
    http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void route_readyz(struct health *h, struct evhttp_request *req)
{
    bool kok = kafka_ok(h->m), pok = atomic_load(&h->m->pg_ok);
    json_t *body = json_pack(
        "{s:s, s:{s:b, s:i}, s:{s:b}}", "status", kok && pok ? "ready" : "not ready", "kafka", "ok",
        kok, "assigned_partitions", atomic_load(&h->m->assigned_partitions), "postgres", "ok", pok);

    http_reply_json(req, kok && pok ? 200 : 503, body);
}

static void counter(struct evbuffer *b, const char *name, const char *help, const char *labels,
                    uint64_t v)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s%s %" PRIu64 "\n", name, help, name,
                        name, labels ? labels : "", v);
}

static void route_metrics(struct health *h, struct evhttp_request *req)
{
    struct worker_metrics *m = h->m;
    struct evbuffer *b = evbuffer_new();
    uint64_t cum = 0;

    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add_printf(b, "# HELP diary_worker_events_total Events by outcome.\n"
                           "# TYPE diary_worker_events_total counter\n");
    evbuffer_add_printf(b, "diary_worker_events_total{outcome=\"applied\"} %" PRIu64 "\n",
                        (uint64_t)atomic_load(&m->applied));
    evbuffer_add_printf(b, "diary_worker_events_total{outcome=\"rejected\"} %" PRIu64 "\n",
                        (uint64_t)atomic_load(&m->rejected));
    evbuffer_add_printf(b, "diary_worker_events_total{outcome=\"duplicate\"} %" PRIu64 "\n",
                        (uint64_t)atomic_load(&m->duplicates));
    evbuffer_add_printf(b, "diary_worker_events_total{outcome=\"dead_letter\"} %" PRIu64 "\n",
                        (uint64_t)atomic_load(&m->dead_letters));
    counter(b, "diary_worker_batches_total", "Batches committed.", NULL, atomic_load(&m->batches));
    counter(b, "diary_worker_failed_batches_total",
            "Batches that failed and were retried one event per transaction.", NULL,
            atomic_load(&m->failed_batches));
    counter(b, "diary_worker_stale_batches_total",
            "Batches refused by the consumer_offsets compare-and-set (another owner).", NULL,
            atomic_load(&m->stale_batches));
    counter(b, "diary_worker_apply_errors_total",
            "Batches that could not commit (database away, transient errors).", NULL,
            atomic_load(&m->apply_errors));
    counter(b, "diary_worker_db_reconnects_total", "Connections made to PostgreSQL again.", NULL,
            atomic_load(&m->db_reconnects));
    counter(b, "diary_worker_outbox_published_total",
            "Change events the broker acknowledged and that left the outbox.", NULL,
            atomic_load(&m->outbox_published));
    counter(b, "diary_worker_outbox_errors_total", "Outbox relay rounds that failed.", NULL,
            atomic_load(&m->outbox_errors));

    evbuffer_add_printf(b, "# HELP diary_worker_batch_size Events per batch.\n"
                           "# TYPE diary_worker_batch_size histogram\n");
    for (int i = 0; i < METRICS_BATCH_BUCKETS; i++) {
        cum += atomic_load(&m->batch_size_bucket[i]);
        evbuffer_add_printf(b, "diary_worker_batch_size_bucket{le=\"%u\"} %" PRIu64 "\n",
                            metrics_batch_bounds[i], cum);
    }
    cum += atomic_load(&m->batch_size_inf);
    evbuffer_add_printf(b, "diary_worker_batch_size_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    evbuffer_add_printf(b, "diary_worker_batch_size_sum %" PRIu64 "\n",
                        (uint64_t)atomic_load(&m->batch_size_sum));
    evbuffer_add_printf(b, "diary_worker_batch_size_count %" PRIu64 "\n", cum);

    evbuffer_add_printf(b,
                        "# HELP diary_worker_batch_seconds_total Time spent applying batches.\n"
                        "# TYPE diary_worker_batch_seconds_total counter\n"
                        "diary_worker_batch_seconds_total %.6f\n",
                        (double)atomic_load(&m->batch_us_sum) / 1e6);
    evbuffer_add_printf(b,
                        "# HELP diary_worker_outbox_seconds_total Time spent publishing the "
                        "outbox (produce, acknowledgements, delete).\n"
                        "# TYPE diary_worker_outbox_seconds_total counter\n"
                        "diary_worker_outbox_seconds_total %.6f\n",
                        (double)atomic_load(&m->outbox_us_sum) / 1e6);
    evbuffer_add_printf(b,
                        "# HELP diary_worker_last_batch_seconds Duration of the last batch.\n"
                        "# TYPE diary_worker_last_batch_seconds gauge\n"
                        "diary_worker_last_batch_seconds %.6f\n",
                        (double)atomic_load(&m->last_batch_us) / 1e6);
    evbuffer_add_printf(b,
                        "# HELP diary_worker_assigned_partitions Partitions this worker owns.\n"
                        "# TYPE diary_worker_assigned_partitions gauge\n"
                        "diary_worker_assigned_partitions %d\n",
                        atomic_load(&m->assigned_partitions));
    evbuffer_add_printf(
        b,
        "# HELP diary_worker_up Whether Kafka and PostgreSQL are usable (1) or not.\n"
        "# TYPE diary_worker_up gauge\n"
        "diary_worker_up{dependency=\"kafka\"} %d\n"
        "diary_worker_up{dependency=\"postgres\"} %d\n",
        kafka_ok(m) ? 1 : 0, atomic_load(&m->pg_ok) ? 1 : 0);
    evbuffer_add_printf(b, "# HELP diary_worker_lag Events in the log not yet applied, by "
                           "partition (from the last fetched high watermark).\n"
                           "# TYPE diary_worker_lag gauge\n");
    for (int p = 0; p < METRICS_MAX_PARTITIONS; p++) {
        int64_t lag = atomic_load(&m->lag[p]);
        if (lag >= 0)
            evbuffer_add_printf(b, "diary_worker_lag{partition=\"%d\"} %" PRId64 "\n", p, lag);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

/* The routes, one look finds them all. */
static const struct {
    const char *path;
    route_fn fn;
} routes[] = {
    {"/healthz", route_healthz},
    {"/readyz", route_readyz},
    {"/metrics", route_metrics},
};

static void request_cb(struct evhttp_request *req, void *arg)
{
    struct health *h = arg;
    const char *uri = evhttp_request_get_uri(req);
    size_t len = strcspn(uri ? uri : "", "?");

    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strlen(routes[i].path) != len || strncmp(routes[i].path, uri, len) != 0)
            continue;
        if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
            evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
            http_reply_problem(req, 405, "method_not_allowed", "Method not allowed",
                               "This route answers GET only.", NULL);
            return;
        }
        routes[i].fn(h, req);
        return;
    }
    http_reply_problem(req, 404, "not_found", "Not found", "No such route on the worker.", NULL);
}

/* Runs in the HTTP thread once health_destroy activated it, even if that happened before the
 * loop started (a loopbreak from outside would then be lost). */
static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct health *h = arg;

    event_base_loopbreak(h->base);
}

static void *thread_main(void *arg)
{
    struct health *h = arg;

    event_base_dispatch(h->base);
    return NULL;
}

static int write_port_file(const char *path, int port)
{
    char tmp[4096];
    FILE *f;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -1;
    f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0)
        return -1;
    /* The rename makes the file appear whole to whoever waits for it. */
    return rename(tmp, path);
}

health_t *health_new(const char *addr, int port, const char *port_file, const char *worker_id,
                     struct worker_metrics *m, char *err, size_t errlen)
{
    struct health *h = calloc(1, sizeof(*h));
    struct evhttp_bound_socket *bound;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int bound_port = port;

    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->m = m;
    snprintf(h->worker_id, sizeof(h->worker_id), "%s", worker_id);
    h->base = event_base_new();
    h->http = h->base ? evhttp_new(h->base) : NULL;
    h->stop_ev = h->base ? event_new(h->base, -1, 0, stop_cb, h) : NULL;
    if (!h->http || !h->stop_ev) {
        snprintf(err, errlen, "libevent: cannot create the HTTP server");
        goto fail;
    }
    /* Small and strict: only monitoring systems talk to this port. */
    evhttp_set_max_headers_size(h->http, 8192);
    evhttp_set_max_body_size(h->http, 1024);
    evhttp_set_timeout(h->http, 10);
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(h->http, request_cb, h);
    bound = evhttp_bind_socket_with_handle(h->http, addr, (ev_uint16_t)port);
    if (!bound) {
        snprintf(err, errlen, "cannot listen on %s:%d", addr, port);
        goto fail;
    }
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    log_info(NULL, "worker HTTP on %s:%d (/healthz, /readyz, /metrics)", addr, bound_port);
    if (port_file && *port_file && write_port_file(port_file, bound_port) != 0) {
        snprintf(err, errlen, "cannot write the port file %s", port_file);
        goto fail;
    }
    if (pthread_create(&h->thread, NULL, thread_main, h) != 0) {
        snprintf(err, errlen, "cannot start the HTTP thread");
        goto fail;
    }
    h->started = true;
    return h;
fail:
    health_destroy(h);
    return NULL;
}

void health_destroy(health_t *h)
{
    if (!h)
        return;
    if (h->started) {
        event_active(h->stop_ev, EV_READ, 0);
        pthread_join(h->thread, NULL);
    }
    if (h->stop_ev)
        event_free(h->stop_ev);
    if (h->http)
        evhttp_free(h->http);
    if (h->base)
        event_base_free(h->base);
    free(h);
}
