/* diaryctl dlq list|show|redrive: the dead letters of diary.events.dlq.
 *   list     one line per dead letter: where, when, which event, why
 *   show     one dead letter whole, P:O
 *   redrive  sends chosen dead letters' original events back to diary.events (same key,
 *            same value, same headers plus diary-redrive: P:O) once their cause is fixed.
 *            The worker then applies them: see docs/worker.md, "Redrive". */
#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctlkafka.h"
#include "diaryctl.h"
#include "kafka.h"
#include "position.h"

struct dlq_state {
    int json;
    const char *only_event; /* redrive/list: only dead letters of this event id */
    struct position *picks; /* show/redrive: only these P:O */
    size_t npicks;
    int dry_run, show;
    rd_kafka_t *producer;
    const char *events_topic;
    long seen, matched, sent, failed;
};

/* Whether the dead letter at m (of event evid, may be NULL) is one the command chose: the
 * --event id, else the P:O given, else all of them (list, or redrive --all). */
static int chosen(const struct dlq_state *st, const rd_kafka_message_t *m, const char *evid)
{
    if (st->only_event)
        return evid && strcmp(evid, st->only_event) == 0;
    for (size_t i = 0; i < st->npicks; i++)
        if (st->picks[i].partition == m->partition && st->picks[i].offset == m->offset)
            return 1;
    return st->npicks == 0 && !st->show;
}

/* The original event's bytes out of a dead letter: "event" (a string) or "event_base64".
 * The caller frees *out. Returns 0 or -1. */
static int original_value(json_t *dl, char **out, size_t *len)
{
    json_t *ev = json_object_get(dl, "event");
    const char *b64 = json_string_value(json_object_get(dl, "event_base64"));

    if (json_is_string(ev)) {
        *len = json_string_length(ev);
        *out = malloc(*len ? *len : 1);
        memcpy(*out, json_string_value(ev), *len);
        return 0;
    }
    if (b64) {
        size_t cap = strlen(b64) + 1;
        *out = malloc(cap);
        if (sodium_base642bin((unsigned char *)*out, cap, b64, strlen(b64), NULL, len, NULL,
                              sodium_base64_VARIANT_ORIGINAL) == 0)
            return 0;
        free(*out);
    }
    *out = NULL;
    return -1;
}

static int redrive(struct dlq_state *st, const rd_kafka_message_t *m, json_t *dl)
{
    char *value, where[POSITION_STRLEN];
    size_t len;
    rd_kafka_headers_t *hdrs = NULL, *orig;
    struct position pos = {m->partition, m->offset};
    rd_kafka_resp_err_t err;

    if (original_value(dl, &value, &len) != 0) {
        fprintf(stderr, "dlq: %d:%lld has no original event to redrive\n", (int)m->partition,
                (long long)m->offset);
        st->failed++;
        return 0;
    }
    position_format(&pos, where);
    if (st->dry_run) {
        printf("would redrive %s (%zu bytes) to %s\n", where, len, st->events_topic);
        free(value);
        return 0;
    }
    /* Keep the original headers (request id, type) and say where the redrive came from. */
    hdrs = rd_kafka_message_headers(m, &orig) == 0 ? rd_kafka_headers_copy(orig)
                                                   : rd_kafka_headers_new(2);
    rd_kafka_header_remove(hdrs, "diary-redrive");
    rd_kafka_header_add(hdrs, "diary-redrive", -1, where, -1);
    err = rd_kafka_producev(st->producer, RD_KAFKA_V_TOPIC(st->events_topic),
                            RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(value, len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_HEADERS(hdrs),
                            RD_KAFKA_V_END);
    if (err) {
        fprintf(stderr, "dlq: redrive %s: %s\n", where, rd_kafka_err2str(err));
        rd_kafka_headers_destroy(hdrs);
        free(value);
        st->failed++;
        return 0;
    }
    printf("redriven %s\n", where);
    st->sent++;
    return 0;
}

static int dlq_cb(const rd_kafka_message_t *m, void *arg)
{
    struct dlq_state *st = arg;
    json_error_t jerr;
    json_t *dl = json_loadb(m->payload, m->len, 0, &jerr), *ev = NULL;
    const char *evid = NULL, *type = NULL;

    st->seen++;
    if (json_is_string(json_object_get(dl, "event"))) {
        ev = json_loads(json_string_value(json_object_get(dl, "event")), 0, &jerr);
        evid = json_string_value(json_object_get(ev, "id"));
        type = json_string_value(json_object_get(ev, "type"));
    }
    if (!chosen(st, m, evid))
        goto done;
    st->matched++;
    if (st->producer || st->dry_run) {
        redrive(st, m, dl);
    } else if (st->show || st->json) {
        json_t *o =
            json_pack("{s:i, s:I, s:s%}", "partition", (int)m->partition, "offset",
                      (json_int_t)m->offset, "key", m->key ? (const char *)m->key : "", m->key_len);
        json_object_set(o, "dead_letter", dl ? dl : json_null());
        if (ev)
            json_object_set(o, "original", ev);
        char *s = json_dumps(o, (st->show ? JSON_INDENT(2) : JSON_COMPACT) | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("%3d:%-8lld %-24s %-36s %-26s %-10s x%-2lld %s\n", (int)m->partition,
               (long long)m->offset, json_string_value(json_object_get(dl, "time")) ?: "-",
               evid ? evid : "-", type ? type : "-",
               json_string_value(json_object_get(dl, "worker")) ?: "-",
               (long long)json_integer_value(json_object_get(dl, "attempts")),
               json_string_value(json_object_get(dl, "error")) ?: "(not a dead letter)");
    }
done:
    json_decref(ev);
    json_decref(dl);
    return 0;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct dlq_state *st = opaque;
    if (m->err) {
        st->failed++;
        fprintf(stderr, "dlq: delivery failed: %s\n", rd_kafka_err2str(m->err));
    }
}

int ctl_dlq(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"all", no_argument, NULL, 'a'},
                                         {"event", required_argument, NULL, 'E'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {"bootstrap", required_argument, NULL, 'b'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct dlq_state st;
    struct ctl_scan scan = {0};
    static volatile sig_atomic_t stop;
    const char *bflag = NULL, *bootstrap, *verb;
    rd_kafka_t *reader = NULL;
    char err[512];
    int c, rc = CTL_FAIL, all = 0;

    memset(&st, 0, sizeof(st));
    st.events_topic = config_str("DIARY_EVENTS_TOPIC");
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: diaryctl dlq list [--json] | show P:O... | redrive "
                        "(P:O...|--event ID|--all) [--dry-run]\n");
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? CTL_OK : CTL_USAGE;
    }
    verb = argv[1];
    if (strcmp(verb, "list") && strcmp(verb, "show") && strcmp(verb, "redrive")) {
        fprintf(stderr, "diaryctl dlq: unknown action \"%s\" (list, show, redrive)\n", verb);
        return CTL_USAGE;
    }
    optind = 2;
    while ((c = getopt_long(argc, argv, "jaE:nb:h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            st.json = 1;
            break;
        case 'a':
            all = 1;
            break;
        case 'E':
            st.only_event = optarg;
            break;
        case 'n':
            st.dry_run = 1;
            break;
        case 'b':
            bflag = optarg;
            break;
        case 'h':
            printf("usage: diaryctl dlq list [--json] | show P:O... | redrive "
                   "(P:O...|--event ID|--all) [--dry-run]\n");
            return CTL_OK;
        default:
            return CTL_USAGE;
        }
    }
    st.picks = calloc((size_t)(argc - optind) + 1, sizeof(*st.picks));
    for (int i = optind; i < argc; i++) {
        if (position_parse(argv[i], &st.picks[st.npicks]) != 0) {
            fprintf(stderr,
                    "diaryctl dlq: \"%s\" is not a partition:offset of the dead letter "
                    "topic\n",
                    argv[i]);
            free(st.picks);
            return CTL_USAGE;
        }
        st.npicks++;
    }
    st.show = strcmp(verb, "show") == 0;
    if (st.show && !st.npicks) {
        fprintf(stderr, "diaryctl dlq show: name the dead letters, P:O (from dlq list)\n");
        free(st.picks);
        return CTL_USAGE;
    }
    if (!strcmp(verb, "redrive") && !st.npicks && !all && !st.only_event) {
        fprintf(stderr, "diaryctl dlq redrive: choose P:O..., --event ID or --all\n");
        free(st.picks);
        return CTL_USAGE;
    }
    if (!(bootstrap = ctl_bootstrap(bflag)))
        goto out;
    if (!(reader = ctl_reader_new(bootstrap, err, sizeof(err))))
        goto kafka_fail;
    if (!strcmp(verb, "redrive") && !st.dry_run) {
        rd_kafka_conf_t *conf = kafka_conf_new(bootstrap, "diaryctl-redrive",
                                               kafka_producer_settings, err, sizeof(err));
        if (!conf)
            goto kafka_fail;
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_conf_set_opaque(conf, &st);
        if (!(st.producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err)))) {
            rd_kafka_conf_destroy(conf);
            goto kafka_fail;
        }
    }
    if (!strcmp(verb, "list") && !st.json)
        printf("%-12s %-24s %-36s %-26s %-10s %-3s %s\n", "P:O", "TIME", "EVENT", "TYPE", "WORKER",
               "ATT", "ERROR");
    scan.topic = config_str("DIARY_DLQ_TOPIC");
    scan.start = RD_KAFKA_OFFSET_BEGINNING;
    scan.partition = -1;
    scan.to_end = true;
    scan.stop = &stop;
    ctl_on_interrupt(&stop);
    if (ctl_scan_topic(reader, &scan, dlq_cb, &st, err, sizeof(err)) != 0)
        goto kafka_fail;
    if (st.producer) {
        rd_kafka_flush(st.producer, 30000);
        if (rd_kafka_outq_len(st.producer) > 0) {
            fprintf(stderr, "diaryctl dlq: %d redriven events not acknowledged\n",
                    rd_kafka_outq_len(st.producer));
            st.failed++;
        }
    }
    if (!strcmp(verb, "list") && !st.json)
        printf("%ld dead letters\n", st.seen);
    if (!strcmp(verb, "redrive"))
        printf("%ld redriven, %ld failed%s\n", st.sent, st.failed,
               st.dry_run ? " (dry run: nothing sent)" : "");
    if ((st.npicks && st.matched < (long)st.npicks) || (st.only_event && !st.matched)) {
        fprintf(stderr, "diaryctl dlq: %ld of the chosen dead letters found\n", st.matched);
        goto out;
    }
    rc = st.failed ? CTL_FAIL : CTL_OK;
    goto out;
kafka_fail:
    fprintf(stderr, "diaryctl dlq: %s\n", err);
out:
    if (reader) {
        rd_kafka_consumer_close(reader);
        rd_kafka_destroy(reader);
    }
    if (st.producer)
        rd_kafka_destroy(st.producer);
    free(st.picks);
    return rc;
}
