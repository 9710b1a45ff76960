/* The bare libevent ceiling of `make bench`: one evhttp server on one event loop (like
 * diary-ingest's) that reads each request and its body and answers 202 with a body the size
 * of ingest's write answer, doing nothing else. What diary-ingest does per write (routing,
 * token MAC, validation, the event, the broker round trip, the access log) is measured as
 * its ratio to this.
 *
 *   ceiling_http PORT_FILE      listens on 127.0.0.1, a free port written to PORT_FILE
 *
 * Runs until SIGTERM or SIGINT. Built by scripts/bench.sh into bench/out/. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* The shape of ingest's 202 answer to a diary write, so both write the same bytes. */
static const char answer[] =
    "{\"event_id\":\"0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f\",\"position\":\"4:1042\","
    "\"status\":\"pending\",\"id\":\"6e2f8b31-4c5d-8e6f-a071-0000000000e1\"}";

static void request_cb(struct evhttp_request *req, void *arg)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);

    /* Drain the body as a server that used it would. */
    evbuffer_drain(in, evbuffer_get_length(in));
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Location", "/v1/events/0192f0a4-6b1e-7c3a-9a4e-3b2f1c0d9e8f");
    evhttp_add_header(h, "Diary-Position", "4:1042");
    evbuffer_add(out, answer, sizeof(answer) - 1);
    evhttp_send_reply(req, 202, "Accepted", NULL);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    struct event_base *base = NULL;
    struct evhttp *http = NULL;
    struct evhttp_bound_socket *sock;
    struct event *sigterm = NULL, *sigint = NULL;
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    FILE *f;
    int rc = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT_FILE\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!(base = event_base_new()) || !(http = evhttp_new(base)))
        goto fail;
    evhttp_set_allowed_methods(http, EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_GET);
    evhttp_set_gencb(http, request_cb, NULL);
    if (!(sock = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0)))
        goto fail;
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&sin, &len) != 0)
        goto fail;
    sigterm = evsignal_new(base, SIGTERM, signal_cb, base);
    sigint = evsignal_new(base, SIGINT, signal_cb, base);
    if (!sigterm || !sigint || evsignal_add(sigterm, NULL) || evsignal_add(sigint, NULL))
        goto fail;
    /* The port file appears only once the server accepts connections. */
    if (!(f = fopen(argv[1], "w")))
        goto fail;
    fprintf(f, "%d\n", ntohs(sin.sin_port));
    fclose(f);
    event_base_dispatch(base);
    rc = 0;
fail:
    if (rc)
        perror("ceiling_http");
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (http)
        evhttp_free(http);
    if (base)
        event_base_free(base);
    return rc;
}
