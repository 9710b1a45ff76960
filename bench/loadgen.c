/* The open-loop load generator of the end-to-end run of `make bench`: RATE diary writes a
 * second for SECONDS, each sent at its scheduled time whatever the answers before it
 * (requests due while every connection is busy wait in a queue, and their latency counts
 * from the scheduled time, so a slow server is not hidden by a slower sender).
 *
 *   loadgen PORT RATE SECONDS CONNS USERS_FILE OUT
 *
 * USERS_FILE has "token food_id" lines. Request i is user i mod U's
 * PUT /v1/diary/{date}/{meal}/{food_id} with {"amount": ...}, where (date, meal) is the
 * user's (i div U)-th slot: every request writes a row no other request writes, so the
 * database must end with exactly one row, at version 1, per acknowledged write.
 *
 * When SECONDS are up, requests still queued are never sent (the server did not keep up),
 * and the answers to those in flight are awaited for up to 10 s.
 *
 * OUT receives one line per request: "index scheduled_us sent_us done_us status partition
 * offset event_id" (CLOCK_REALTIME microseconds; sent_us 0 for a request never sent, status
 * 0 when the connection failed; -1 partition and "-" when the answer had no position or
 * event id). stdout receives a JSON summary. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_USERS 100000

struct rec {
    int64_t scheduled, sent, done;
    int64_t offset;
    int32_t partition;
    int16_t status;
    char event_id[37];
};

struct conn;

struct gen {
    struct event_base *base;
    struct event *tick;
    struct sockaddr_in addr;
    char (*tokens)[512];
    char (*foods)[64];
    int nusers;
    double rate, seconds;
    int64_t start_us, end_us, total, next; /* requests scheduled so far: [0, next) */
    int64_t dispatched;                    /* requests handed to a connection: [0, dispatched) */
    int64_t finished;
    struct rec *recs;
    struct conn *conns;
    int *idle; /* a stack of idle connections' indexes */
    int nidle, nconns, connect_failures;
    int64_t max_queue;
};

struct conn {
    struct gen *g;
    struct bufferevent *bev;
    int64_t req; /* the request in flight, -1 when idle */
    int index;
    int in_idle; /* on the idle stack (possibly stale after a close: dispatch skips it) */
};

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void dispatch(struct gen *g);
static int conn_open(struct conn *c);

static void idle_push(struct conn *c)
{
    if (!c->in_idle) {
        c->in_idle = 1;
        c->g->idle[c->g->nidle++] = c->index;
    }
}

static void send_request(struct conn *c, int64_t i)
{
    static const char *const meals[4] = {"breakfast", "lunch", "dinner", "snack"};
    struct gen *g = c->g;
    int u = (int)(i % g->nusers);
    int64_t k = i / g->nusers;
    struct tm tm = {.tm_year = 120, .tm_mday = 1 + (int)(k / 4), .tm_hour = 12};
    time_t day = timegm(&tm);
    char date[16], body[64];
    int blen;

    strftime(date, sizeof(date), "%Y-%m-%d", gmtime_r(&day, &tm));
    blen = snprintf(body, sizeof(body), "{\"amount\": %d.5}", 50 + (int)(i % 400));
    c->req = i;
    g->recs[i].sent = now_us();
    evbuffer_add_printf(bufferevent_get_output(c->bev),
                        "PUT /v1/diary/%s/%s/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %d\r\n\r\n%s",
                        date, meals[k % 4], g->foods[u], g->tokens[u], blen, body);
}

/* Finds header name (with its colon) in the head [h, end); copies its trimmed value. */
static int header(const char *h, const char *end, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);

    for (const char *p = h; p && p < end; p = memchr(p, '\n', (size_t)(end - p))) {
        if (*p == '\n')
            p++;
        if ((size_t)(end - p) > n && !strncasecmp(p, name, n)) {
            const char *v = p + n, *e = memchr(v, '\r', (size_t)(end - v));
            while (v < end && *v == ' ')
                v++;
            if (!e || (size_t)(e - v) >= outlen)
                return -1;
            memcpy(out, v, (size_t)(e - v));
            out[e - v] = '\0';
            return 0;
        }
    }
    return -1;
}

static void finish(struct conn *c, int status, const char *head, size_t head_len, const char *body,
                   size_t body_len)
{
    struct gen *g = c->g;
    struct rec *r = &g->recs[c->req];
    char pos[64];
    const char *e;

    r->done = now_us();
    r->status = (int16_t)status;
    r->partition = -1;
    if (head && header(head, head + head_len, "Diary-Position:", pos, sizeof(pos)) == 0)
        sscanf(pos, "%" SCNd32 ":%" SCNd64, &r->partition, &r->offset);
    if (body && (e = memmem(body, body_len, "\"event_id\":\"", 12)) &&
        (size_t)(body + body_len - e) > 12 + 36) {
        memcpy(r->event_id, e + 12, 36);
        r->event_id[36] = '\0';
    }
    c->req = -1;
    g->finished++;
    if (c->bev)
        idle_push(c);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    for (;;) {
        struct evbuffer_ptr eoh = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        size_t head_len, total;
        char cl[32], *all;
        long body_len = 0;
        int status = 0;

        if (eoh.pos < 0)
            return;
        head_len = (size_t)eoh.pos + 4;
        all = (char *)evbuffer_pullup(in, (ev_ssize_t)head_len);
        if (header(all, all + head_len, "Content-Length:", cl, sizeof(cl)) == 0)
            body_len = atol(cl);
        total = head_len + (size_t)body_len;
        if (evbuffer_get_length(in) < total)
            return;
        all = (char *)evbuffer_pullup(in, (ev_ssize_t)total);
        if (head_len > 12 && !strncmp(all, "HTTP/1.1 ", 9))
            status = atoi(all + 9);
        if (c->req >= 0)
            finish(c, status, all, head_len, all + head_len, (size_t)body_len);
        evbuffer_drain(in, total);
        dispatch(c->g);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;

    if (what & BEV_EVENT_CONNECTED)
        return;
    /* The connection is gone: its request failed; open another one. */
    bufferevent_free(c->bev);
    c->bev = NULL;
    if (c->req >= 0)
        finish(c, 0, NULL, 0, NULL, 0);
    c->g->connect_failures++;
    if (c->g->connect_failures < 1000)
        conn_open(c);
    dispatch(c->g);
}

static int conn_open(struct conn *c)
{
    int one = 1;

    c->req = -1;
    c->bev = bufferevent_socket_new(c->g->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev)
        return -1;
    bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->g->addr, sizeof(c->g->addr))) {
        bufferevent_free(c->bev);
        c->bev = NULL;
        return -1;
    }
    setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    idle_push(c);
    return 0;
}

/* Hands the due requests, oldest first, to idle connections. Once the run's time is up
 * (and 100 ms more for the last timer ticks), what is still queued is never sent (counted
 * as unsent: the server did not keep up). */
static void dispatch(struct gen *g)
{
    if (now_us() >= g->end_us + 100000)
        return;
    while (g->nidle > 0 && g->dispatched < g->next) {
        struct conn *c = &g->conns[g->idle[--g->nidle]];
        c->in_idle = 0;
        if (c->bev && c->req < 0)
            send_request(c, g->dispatched++);
    }
    if (g->next - g->dispatched > g->max_queue)
        g->max_queue = g->next - g->dispatched;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gen *g = arg;
    int64_t t = now_us();
    int64_t due = (int64_t)((double)(t - g->start_us) * g->rate / 1e6) + 1;

    if (due > g->total)
        due = g->total;
    for (; g->next < due; g->next++)
        g->recs[g->next].scheduled = g->start_us + (int64_t)((double)g->next * 1e6 / g->rate);
    dispatch(g);
    /* Stop once the time is up and every request sent was answered, or 10 s later. */
    if (t >= g->end_us + 100000 && (g->finished == g->dispatched || t > g->end_us + 10000000))
        event_base_loopbreak(g->base);
}

static int load_users(struct gen *g, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];

    if (!f)
        return -1;
    g->tokens = calloc(MAX_USERS, sizeof(*g->tokens));
    g->foods = calloc(MAX_USERS, sizeof(*g->foods));
    while (g->tokens && g->foods && g->nusers < MAX_USERS && fgets(line, sizeof(line), f))
        if (sscanf(line, "%511s %63s", g->tokens[g->nusers], g->foods[g->nusers]) == 2)
            g->nusers++;
    fclose(f);
    return g->nusers > 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct gen g = {0};
    struct timeval ms = {0, 1000};
    int64_t status[6] = {0}, acked = 0, acked_in_window = 0, last_done = 0, in_window = 0;
    FILE *out;

    if (argc != 7) {
        fprintf(stderr, "usage: loadgen PORT RATE SECONDS CONNS USERS_FILE OUT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    g.rate = atof(argv[2]);
    g.seconds = atof(argv[3]);
    g.nconns = atoi(argv[4]);
    g.total = (int64_t)(g.rate * g.seconds);
    if (g.rate <= 0 || g.total < 1 || g.nconns < 1 || load_users(&g, argv[5])) {
        fprintf(stderr, "loadgen: bad arguments or no users in %s\n", argv[5]);
        return 2;
    }
    g.addr.sin_family = AF_INET;
    g.addr.sin_port = htons((uint16_t)atoi(argv[1]));
    g.addr.sin_addr.s_addr = htonl(0x7f000001);
    g.recs = calloc((size_t)g.total, sizeof(*g.recs));
    g.conns = calloc((size_t)g.nconns, sizeof(*g.conns));
    g.idle = calloc((size_t)g.nconns, sizeof(*g.idle));
    if (!g.recs || !g.conns || !g.idle || !(g.base = event_base_new()))
        return 1;
    for (int i = 0; i < g.nconns; i++) {
        g.conns[i] = (struct conn){.g = &g, .index = i};
        if (conn_open(&g.conns[i]))
            return 1;
    }
    /* Let the connections open before the clock starts. */
    event_base_loopexit(g.base, &(struct timeval){0, 200000});
    event_base_dispatch(g.base);
    g.tick = event_new(g.base, -1, EV_PERSIST, tick_cb, &g);
    g.start_us = now_us();
    g.end_us = g.start_us + (int64_t)(g.seconds * 1e6);
    event_add(g.tick, &ms);
    event_base_dispatch(g.base);

    if (!(out = fopen(argv[6], "w")))
        return 1;
    for (int64_t i = 0; i < g.total; i++) {
        struct rec *r = &g.recs[i];
        fprintf(out, "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %d %d %" PRId64 " %s\n", i,
                r->scheduled, r->sent, r->done, r->status, r->partition, r->offset,
                r->event_id[0] ? r->event_id : "-");
        if (r->sent)
            status[r->done ? (r->status / 100 < 6 ? r->status / 100 : 0) : 0]++;
        if (r->status == 202 && r->event_id[0]) {
            acked++;
            if (r->done <= g.end_us)
                acked_in_window++;
        }
        if (r->done > last_done)
            last_done = r->done;
        if (r->done && r->done <= g.end_us)
            in_window++;
    }
    fclose(out);
    printf("{\"offered_per_s\":%.0f,\"seconds\":%.1f,\"requests\":%" PRId64 ",\"sent\":%" PRId64
           ",\"unsent\":%" PRId64 ",\"answered\":%" PRId64 ",\"acked\":%" PRId64
           ",\"status_2xx\":%" PRId64 ",\"status_4xx\":%" PRId64 ",\"status_5xx\":%" PRId64
           ",\"failed\":%" PRId64 ",\"connections\":%d,\"max_queue\":%" PRId64
           ",\"answered_in_window_per_s\":%.0f,\"acked_in_window_per_s\":%.0f,"
           "\"all_answered_after_s\":%.2f}\n",
           g.rate, g.seconds, g.total, g.dispatched, g.total - g.dispatched, g.finished, acked,
           status[2], status[4], status[5], status[0], g.nconns, g.max_queue,
           (double)in_window / g.seconds, (double)acked_in_window / g.seconds,
           (double)(last_done - g.start_us) / 1e6);
    for (int i = 0; i < g.nconns; i++)
        if (g.conns[i].bev)
            bufferevent_free(g.conns[i].bev);
    event_free(g.tick);
    event_base_free(g.base);
    free(g.recs);
    free(g.conns);
    free(g.idle);
    free(g.tokens);
    free(g.foods);
    return 0;
}
