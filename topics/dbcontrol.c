#include "dbcontrol.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/queue.h> /* before keyvalq_struct.h, for TAILQ_FOREACH */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "config.h"
#include "log.h"

#define MAX_BODY_BYTES    4096
#define MAX_HEADER_BYTES  8192
#define REQUEST_TIMEOUT_S 10
#define MAX_SEGMENTS      8
#define MAX_CAPTURES      3
#define MAX_ERROR_COUNT   100000
#define MAX_RTT_MS        600000

struct dbcontrol {
    struct evhttp *http;
    dbcluster_t *cluster;
};

/* One request being answered: the route's captures, the query, and the answer. */
struct call {
    dbcontrol_t *ctl;
    char *caps[MAX_CAPTURES];
    struct evkeyvalq query;
    json_t *reply; /* the 200 answer, set by a handler that succeeds */
    char msg[256]; /* why, when a handler fails */
};

typedef int (*handler_fn)(struct call *call);

static int h_status(struct call *call);
static int h_broker_down(struct call *call);
static int h_broker_up(struct call *call);
static int h_broker_rtt(struct call *call);
static int h_broker_errors(struct call *call);
static int h_errors(struct call *call);
static int h_leader(struct call *call);
static int h_clear(struct call *call);

/* Every route of the endpoint. "{}" matches one path segment and hands it to the handler. */
static const struct route {
    enum evhttp_cmd_type method;
    const char *pattern;
    handler_fn handler;
} routes[] = {
    {EVHTTP_REQ_GET, "/status", h_status},
    {EVHTTP_REQ_POST, "/brokers/{}/down", h_broker_down},
    {EVHTTP_REQ_POST, "/brokers/{}/up", h_broker_up},
    {EVHTTP_REQ_POST, "/brokers/{}/rtt", h_broker_rtt},
    {EVHTTP_REQ_POST, "/brokers/{}/errors", h_broker_errors},
    {EVHTTP_REQ_POST, "/errors", h_errors},
    {EVHTTP_REQ_POST, "/partitions/{}/{}/leader", h_leader},
    {EVHTTP_REQ_POST, "/clear", h_clear},
};

/* Kafka request types by name, for ?api=. Numbers are accepted too. */
static const struct api_name {
    const char *name;
    int16_t key;
} api_names[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"DescribeGroups", 15},
    {"ListGroups", 16},
    {"ApiVersions", 18},
    {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
};

#define MAX_API_KEY 74

/* Parameters. */

/* Fails the call with 400 if the query holds a name not in allowed (NULL-terminated). */
static int only_params(struct call *call, const char *const *allowed)
{
    struct evkeyval *kv;

    TAILQ_FOREACH(kv, &call->query, next)
    {
        const char *const *a = allowed;
        while (*a && strcmp(*a, kv->key) != 0)
            a++;
        if (!*a) {
            snprintf(call->msg, sizeof(call->msg), "unknown parameter \"%s\"", kv->key);
            return -1;
        }
    }
    return 0;
}

/* Reads integer parameter name in [min, max]; def when absent, or 400 when required. */
static int param_long(struct call *call, const char *name, long min, long max, bool required,
                      long def, long *out)
{
    const char *v = evhttp_find_header(&call->query, name);

    if (!v) {
        if (required) {
            snprintf(call->msg, sizeof(call->msg), "parameter %s is required", name);
            return -1;
        }
        *out = def;
        return 0;
    }
    if (config_parse_long(v, min, max, out) != 0) {
        snprintf(call->msg, sizeof(call->msg), "parameter %s must be a whole number in %ld..%ld",
                 name, min, max);
        return -1;
    }
    return 0;
}

static int param_api(struct call *call, int16_t *key, const char **name)
{
    const char *v = evhttp_find_header(&call->query, "api");
    long n;

    if (!v) {
        snprintf(call->msg, sizeof(call->msg), "parameter api is required (e.g. Produce)");
        return -1;
    }
    for (size_t i = 0; i < sizeof(api_names) / sizeof(api_names[0]); i++) {
        if (strcasecmp(v, api_names[i].name) == 0) {
            *key = api_names[i].key;
            *name = api_names[i].name;
            return 0;
        }
    }
    if (config_parse_long(v, 0, MAX_API_KEY, &n) == 0) {
        *key = (int16_t)n;
        *name = NULL;
        for (size_t i = 0; i < sizeof(api_names) / sizeof(api_names[0]); i++)
            if (api_names[i].key == *key)
                *name = api_names[i].name;
        return 0;
    }
    snprintf(call->msg, sizeof(call->msg),
             "unknown api \"%s\": use a Kafka request name (Produce, Fetch, Metadata, ...) or "
             "a number 0..%d",
             v, MAX_API_KEY);
    return -1;
}

/* Reads ?code= as a number or as an error name (NOT_LEADER_FOR_PARTITION, _TRANSPORT, with
 * or without the RD_KAFKA_RESP_ERR_ prefix), checked against librdkafka's error table. */
static int param_code(struct call *call, rd_kafka_resp_err_t *code)
{
    const struct rd_kafka_err_desc *descs;
    const char *v = evhttp_find_header(&call->query, "code");
    size_t count;
    long n;

    if (!v) {
        snprintf(call->msg, sizeof(call->msg), "parameter code is required");
        return -1;
    }
    rd_kafka_get_err_descs(&descs, &count);
    if (strncasecmp(v, "RD_KAFKA_RESP_ERR_", 18) == 0)
        v += 18;
    if (config_parse_long(v, -1000, 1000, &n) == 0) {
        for (size_t i = 0; i < count; i++) {
            if (descs[i].name && descs[i].code == n) {
                *code = descs[i].code;
                return 0;
            }
        }
    } else {
        for (size_t i = 0; i < count; i++) {
            if (descs[i].name && strcasecmp(descs[i].name, v) == 0) {
                *code = descs[i].code;
                return 0;
            }
        }
    }
    snprintf(call->msg, sizeof(call->msg), "unknown error code \"%s\"", v);
    return -1;
}

static int capture_broker(struct call *call, int32_t *broker)
{
    long n;

    if (config_parse_long(call->caps[0], 1, DBCLUSTER_MAX_BROKERS, &n) != 0 ||
        n > dbcluster_broker_count(call->ctl->cluster)) {
        snprintf(call->msg, sizeof(call->msg), "no broker \"%s\" (brokers are 1..%d)",
                 call->caps[0], dbcluster_broker_count(call->ctl->cluster));
        return -1;
    }
    *broker = (int32_t)n;
    return 0;
}

/* Handlers: each returns an HTTP status and sets call->reply (200) or call->msg. */

static json_t *broker_list(const dbcluster_t *c, bool only_down)
{
    json_t *a = json_array();

    for (int b = 1; b <= dbcluster_broker_count(c); b++)
        if (!only_down || dbcluster_broker_is_down(c, b))
            json_array_append_new(a, json_integer(b));
    return a;
}

static int h_status(struct call *call)
{
    dbcluster_t *c = call->ctl->cluster;
    json_t *topics = json_array(), *rtt = json_object(), *pending = json_object();

    if (only_params(call, (const char *const[]){NULL}) != 0) {
        json_decref(topics);
        json_decref(rtt);
        json_decref(pending);
        return 400;
    }
    for (size_t i = 0; i < dbcluster_topic_count(c); i++) {
        const struct dbcluster_topic *t = dbcluster_topic_at(c, i);
        json_array_append_new(topics, json_pack("{s:s, s:i, s:i}", "name", t->name, "partitions",
                                                t->partitions, "replication_factor",
                                                t->replication_factor));
    }
    for (int b = 1; b <= dbcluster_broker_count(c); b++) {
        char id[16];
        snprintf(id, sizeof(id), "%d", b);
        json_object_set_new(rtt, id, json_integer(dbcluster_broker_rtt(c, b)));
        json_object_set_new(pending, id,
                            json_integer((json_int_t)dbcluster_broker_pending_errors(c, b)));
    }
    call->reply = json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "bootstrap", dbcluster_bootstraps(c),
                            "brokers", broker_list(c, false), "down", broker_list(c, true),
                            "rtt_ms", rtt, "broker_errors_pending", pending, "topics", topics);
    return 200;
}

static int broker_up_down(struct call *call, bool down)
{
    int32_t broker;

    if (only_params(call, (const char *const[]){NULL}) != 0 || capture_broker(call, &broker) != 0)
        return 400;
    if (dbcluster_broker_set_down(call->ctl->cluster, broker, down, call->msg, sizeof(call->msg)) !=
        0)
        return 500;
    call->reply = json_pack("{s:b, s:i, s:o}", "ok", 1, "broker", broker, "down",
                            broker_list(call->ctl->cluster, true));
    return 200;
}

static int h_broker_down(struct call *call)
{
    return broker_up_down(call, true);
}

static int h_broker_up(struct call *call)
{
    return broker_up_down(call, false);
}

static int h_broker_rtt(struct call *call)
{
    int32_t broker;
    long ms;

    if (only_params(call, (const char *const[]){"ms", NULL}) != 0 ||
        capture_broker(call, &broker) != 0 ||
        param_long(call, "ms", 0, MAX_RTT_MS, true, 0, &ms) != 0)
        return 400;
    if (dbcluster_broker_set_rtt(call->ctl->cluster, broker, (int)ms, call->msg,
                                 sizeof(call->msg)) != 0)
        return 500;
    call->reply = json_pack("{s:b, s:i, s:i}", "ok", 1, "broker", broker, "rtt_ms", (int)ms);
    return 200;
}

static json_t *errors_reply(int16_t key, const char *api, rd_kafka_resp_err_t code, long count)
{
    return json_pack("{s:b, s:i, s:s?, s:i, s:s, s:i}", "ok", 1, "api_key", key, "api", api, "code",
                     code, "code_name", rd_kafka_err2name(code), "count", (int)count);
}

static int h_errors(struct call *call)
{
    rd_kafka_resp_err_t code;
    const char *api;
    int16_t key;
    long count;

    if (only_params(call, (const char *const[]){"api", "code", "count", NULL}) != 0 ||
        param_api(call, &key, &api) != 0 || param_code(call, &code) != 0 ||
        param_long(call, "count", 1, MAX_ERROR_COUNT, false, 1, &count) != 0)
        return 400;
    if (dbcluster_push_errors(call->ctl->cluster, key, code, (size_t)count, call->msg,
                              sizeof(call->msg)) != 0)
        return 500;
    call->reply = errors_reply(key, api, code, count);
    return 200;
}

static int h_broker_errors(struct call *call)
{
    rd_kafka_resp_err_t code;
    const char *api;
    int32_t broker;
    int16_t key;
    long count, rtt;

    if (only_params(call, (const char *const[]){"api", "code", "count", "rtt_ms", NULL}) != 0 ||
        capture_broker(call, &broker) != 0 || param_api(call, &key, &api) != 0 ||
        param_code(call, &code) != 0 ||
        param_long(call, "count", 1, MAX_ERROR_COUNT, false, 1, &count) != 0 ||
        param_long(call, "rtt_ms", 0, MAX_RTT_MS, false, 0, &rtt) != 0)
        return 400;
    if (dbcluster_broker_push_errors(call->ctl->cluster, broker, key, code, (size_t)count, (int)rtt,
                                     call->msg, sizeof(call->msg)) != 0)
        return 500;
    call->reply = errors_reply(key, api, code, count);
    json_object_set_new(call->reply, "broker", json_integer(broker));
    json_object_set_new(call->reply, "rtt_ms", json_integer(rtt));
    return 200;
}

static int h_leader(struct call *call)
{
    dbcluster_t *c = call->ctl->cluster;
    const struct dbcluster_topic *t;
    long partition, broker;

    if (only_params(call, (const char *const[]){"broker", NULL}) != 0)
        return 400;
    t = dbcluster_topic_find(c, call->caps[0]);
    if (!t) {
        snprintf(call->msg, sizeof(call->msg), "no topic \"%s\"", call->caps[0]);
        return 404;
    }
    if (config_parse_long(call->caps[1], 0, t->partitions - 1, &partition) != 0) {
        snprintf(call->msg, sizeof(call->msg), "topic %s has partitions 0..%d", t->name,
                 t->partitions - 1);
        return 404;
    }
    if (!evhttp_find_header(&call->query, "broker")) {
        snprintf(call->msg, sizeof(call->msg), "parameter broker is required (an id, or -1)");
        return 400;
    }
    if (config_parse_long(evhttp_find_header(&call->query, "broker"), -1, dbcluster_broker_count(c),
                          &broker) != 0 ||
        broker == 0) {
        snprintf(call->msg, sizeof(call->msg),
                 "parameter broker must be a broker id 1..%d, or -1 for no leader",
                 dbcluster_broker_count(c));
        return 400;
    }
    if (dbcluster_partition_set_leader(c, t->name, (int32_t)partition, (int32_t)broker, call->msg,
                                       sizeof(call->msg)) != 0)
        return 500;
    call->reply = json_pack("{s:b, s:s, s:i, s:i}", "ok", 1, "topic", t->name, "partition",
                            (int)partition, "leader", (int)broker);
    return 200;
}

static int h_clear(struct call *call)
{
    if (only_params(call, (const char *const[]){NULL}) != 0)
        return 400;
    dbcluster_clear_faults(call->ctl->cluster);
    call->reply = json_pack("{s:b}", "ok", 1);
    return 200;
}

/* Dispatch. */

static void send_json(struct evhttp_request *req, int status, json_t *body)
{
    struct evbuffer *out = evbuffer_new();
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    const char *reason = status == 200   ? "OK"
                         : status == 400 ? "Bad Request"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                                         : "Internal Server Error";

    evhttp_add_header(headers, "Content-Type", "application/json");
    evhttp_add_header(headers, "Cache-Control", "no-store");
    if (out) {
        evbuffer_add_printf(out, "%s\n", text ? text : "{}");
        evhttp_send_reply(req, status, reason, out);
        evbuffer_free(out);
    } else {
        evhttp_send_error(req, 500, NULL);
    }
    free(text);
}

static void send_problem(struct evhttp_request *req, int status, const char *kind, const char *msg)
{
    json_t *body = json_pack("{s:s, s:s}", "error", kind, "message", msg);

    send_json(req, status, body);
    json_decref(body);
}

/* Splits path into at most MAX_SEGMENTS decoded segments; each is the caller's to free. */
static int split_path(const char *path, char **segs, int *count)
{
    const char *p = path;

    *count = 0;
    if (*p != '/')
        return -1;
    while (*p == '/') {
        const char *end;
        char *raw;
        p++;
        end = p + strcspn(p, "/");
        if (end == p || *count == MAX_SEGMENTS)
            return -1;
        raw = strndup(p, (size_t)(end - p));
        if (!raw)
            return -1;
        segs[*count] = evhttp_uridecode(raw, 0, NULL);
        free(raw);
        if (!segs[*count])
            return -1;
        (*count)++;
        p = end;
    }
    return *p == '\0' ? 0 : -1;
}

/* 1 if the segments match pattern, with "{}" segments stored in caps. */
static int match_route(const char *pattern, char **segs, int count, char **caps)
{
    char buf[128];
    char *save = NULL, *tok;
    int i = 0, ncap = 0;

    snprintf(buf, sizeof(buf), "%s", pattern);
    for (tok = strtok_r(buf, "/", &save); tok; tok = strtok_r(NULL, "/", &save), i++) {
        if (i >= count)
            return 0;
        if (strcmp(tok, "{}") == 0) {
            if (ncap < MAX_CAPTURES)
                caps[ncap++] = segs[i];
        } else if (strcmp(tok, segs[i]) != 0) {
            return 0;
        }
    }
    return i == count;
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    dbcontrol_t *ctl = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    struct call call = {.ctl = ctl};
    char *segs[MAX_SEGMENTS] = {0};
    int nseg = 0, status;
    const struct route *found = NULL;
    bool path_known = false;

    TAILQ_INIT(&call.query);
    if (!path || split_path(path, segs, &nseg) != 0) {
        send_problem(req, 404, "not_found", "no such route");
        goto done;
    }
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        char *caps[MAX_CAPTURES] = {0};
        if (!match_route(routes[i].pattern, segs, nseg, caps))
            continue;
        path_known = true;
        if (routes[i].method == method) {
            found = &routes[i];
            memcpy(call.caps, caps, sizeof(caps));
            break;
        }
    }
    if (!found) {
        if (path_known) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                              method == EVHTTP_REQ_GET ? "POST" : "GET");
            send_problem(req, 405, "method_not_allowed", "wrong method for this route");
        } else {
            send_problem(req, 404, "not_found", "no such route");
        }
        goto done;
    }
    if (query && evhttp_parse_query_str(query, &call.query) != 0) {
        send_problem(req, 400, "bad_request", "the query string does not parse");
        goto done;
    }
    status = found->handler(&call);
    if (status == 200 && call.reply) {
        send_json(req, 200, call.reply);
    } else {
        const char *kv[] = {"path", path, "why", call.msg, NULL};
        if (status == 200)
            status = 500;
        send_problem(req, status,
                     status == 400   ? "bad_request"
                     : status == 404 ? "not_found"
                                     : "internal",
                     call.msg[0] ? call.msg : "failed");
        log_fields(status >= 500 ? LOG_ERROR : LOG_INFO, NULL, "control request refused", kv);
        goto done;
    }
    {
        const char *kv[] = {"method", method == EVHTTP_REQ_GET ? "GET" : "POST", "uri",
                            evhttp_request_get_uri(req), NULL};
        if (method != EVHTTP_REQ_GET)
            log_fields(LOG_INFO, NULL, "control", kv);
    }

done:
    json_decref(call.reply);
    evhttp_clear_headers(&call.query);
    for (int i = 0; i < nseg; i++)
        free(segs[i]);
}

/* Accepts loopback addresses only: the endpoint changes the cluster without credentials. */
static int loopback_host(const char *host, char *norm, size_t normlen)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) {
        snprintf(norm, normlen, "%s", host);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6)) {
        snprintf(norm, normlen, "%s", host);
        return 0;
    }
    return -1;
}

bool dbcontrol_host_is_loopback(const char *host)
{
    char norm[64];

    return loopback_host(host, norm, sizeof(norm)) == 0;
}

int dbcontrol_new(struct event_base *base, dbcluster_t *c, const char *host, int port,
                  dbcontrol_t **out, char *bound, size_t boundlen, char *err, size_t errlen)
{
    dbcontrol_t *ctl = NULL;
    struct evhttp_bound_socket *sock;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char addr[64], shown[INET6_ADDRSTRLEN];
    int bound_port;

    *out = NULL;
    if (loopback_host(host, addr, sizeof(addr)) != 0) {
        snprintf(err, errlen, "control address %s is not a loopback address", host);
        return -1;
    }
    ctl = calloc(1, sizeof(*ctl));
    if (!ctl || !(ctl->http = evhttp_new(base))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    ctl->cluster = c;
    evhttp_set_max_body_size(ctl->http, MAX_BODY_BYTES);
    evhttp_set_max_headers_size(ctl->http, MAX_HEADER_BYTES);
    evhttp_set_timeout(ctl->http, REQUEST_TIMEOUT_S);
    evhttp_set_allowed_methods(ctl->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(ctl->http, request_cb, ctl);
    sock = evhttp_bind_socket_with_handle(ctl->http, addr, (ev_uint16_t)port);
    if (!sock) {
        snprintf(err, errlen, "control endpoint: cannot listen on %s:%d: %s", addr, port,
                 strerror(errno));
        goto fail;
    }
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(err, errlen, "control endpoint: getsockname: %s", strerror(errno));
        goto fail;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, shown, sizeof(shown));
        bound_port = ntohs(s6->sin6_port);
        snprintf(bound, boundlen, "[%s]:%d", shown, bound_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, shown, sizeof(shown));
        bound_port = ntohs(s4->sin_port);
        snprintf(bound, boundlen, "%s:%d", shown, bound_port);
    }
    *out = ctl;
    return 0;

fail:
    dbcontrol_destroy(ctl);
    return -1;
}

void dbcontrol_destroy(dbcontrol_t *ctl)
{
    if (!ctl)
        return;
    if (ctl->http)
        evhttp_free(ctl->http);
    free(ctl);
}
