/* diaryctl tail and diaryctl audit: read the write log or the change stream, readable.
 *   tail   follows new messages (like kcat -C -o end), or from the beginning, optionally
 *          only one user's;
 *   audit  one user's writes from the log: when, what, which event, request and client. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctlkafka.h"
#include "diaryctl.h"
#include "envelope.h"

struct tail_state {
    const char *user;
    int json;
    int audit;
    int64_t from_ms, to_ms;
    long count, limit;
};

static int matches_user(const rd_kafka_message_t *m, const char *user)
{
    return !user || (m->key && m->key_len == strlen(user) && memcmp(m->key, user, m->key_len) == 0);
}

static int print_cb(const rd_kafka_message_t *m, void *arg)
{
    struct tail_state *st = arg;
    json_error_t jerr;
    json_t *o;
    rd_kafka_timestamp_type_t tst;
    int64_t ts = rd_kafka_message_timestamp(m, &tst);

    if (!matches_user(m, st->user))
        return 0;
    if (st->to_ms > 0 && ts > st->to_ms)
        return 0;
    if (st->json && !st->audit) {
        /* The value as JSON when it is, else as a string: a bad message still prints. */
        json_t *v = json_loadb(m->payload, m->len, 0, &jerr);
        json_t *line = json_pack("{s:i, s:I, s:I, s:s%, s:o}", "partition", (int)m->partition,
                                 "offset", (json_int_t)m->offset, "timestamp", (json_int_t)ts,
                                 "key", m->key ? (const char *)m->key : "", m->key_len, "value",
                                 v ? v : json_stringn_nocheck(m->payload, m->len));
        char *s = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (s)
            printf("%s\n", s);
        free(s);
        json_decref(line);
        fflush(stdout);
        st->count++;
        return st->limit > 0 && st->count >= st->limit;
    }
    o = json_loadb(m->payload, m->len, 0, &jerr);
    json_t *data = json_object_get(o, "data");
    const char *type = json_string_value(json_object_get(o, "type"));
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *time = json_string_value(json_object_get(o, "time"));
    const char *rid = json_string_value(json_object_get(o, "requestid"));
    const char *addr = json_string_value(json_object_get(o, "clientaddr"));
    char *d = NULL;

    if (data) {
        json_t *copy = json_deep_copy(data);
        json_object_del(copy, "password_hash"); /* never print credentials */
        d = json_dumps(copy, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(copy);
    }
    if (st->audit && st->json) {
        json_t *line = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:i, s:I}", "time", time, "type",
                                 type, "event_id", id, "request_id", rid, "client_addr", addr,
                                 "partition", (int)m->partition, "offset", (json_int_t)m->offset);
        if (data && d)
            json_object_set_new(line, "data", json_loads(d, 0, NULL));
        char *s = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
        free(s);
        json_decref(line);
    } else if (!o) {
        printf("%d:%lld  (not JSON: %.*s)\n", (int)m->partition, (long long)m->offset,
               (int)(m->len > 200 ? 200 : m->len), (const char *)m->payload);
    } else {
        printf("%-24s %3d:%-8lld %-32s %s  req=%s  from=%s  %s\n", time ? time : "-",
               (int)m->partition, (long long)m->offset, type ? type : "-", id ? id : "-",
               rid ? rid : "-", addr ? addr : "-", d ? d : "");
    }
    fflush(stdout);
    free(d);
    json_decref(o);
    st->count++;
    return st->limit > 0 && st->count >= st->limit;
}

static int run(int argc, char **argv, int audit)
{
    static const struct option opts[] = {{"changes", no_argument, NULL, 'c'},
                                         {"dlq", no_argument, NULL, 'd'},
                                         {"topic", required_argument, NULL, 't'},
                                         {"user", required_argument, NULL, 'u'},
                                         {"from-beginning", no_argument, NULL, 'B'},
                                         {"from", required_argument, NULL, 'f'},
                                         {"to", required_argument, NULL, 'T'},
                                         {"exit", no_argument, NULL, 'e'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"bootstrap", required_argument, NULL, 'b'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *topic = config_str("DIARY_EVENTS_TOPIC"), *bflag = NULL, *bootstrap;
    struct tail_state st = {0};
    struct ctl_scan scan = {0};
    static volatile sig_atomic_t stop;
    char err[512];
    rd_kafka_t *rk;
    int c, rc;

    scan.start = audit ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
    scan.partition = -1;
    scan.to_end = audit;
    st.audit = audit;
    optind = 1;
    while ((c = getopt_long(argc, argv, "cdt:u:Bf:T:en:b:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            topic = config_str("DIARY_CHANGES_TOPIC");
            break;
        case 'd':
            topic = config_str("DIARY_DLQ_TOPIC");
            break;
        case 't':
            topic = optarg;
            break;
        case 'u':
            st.user = optarg;
            break;
        case 'B':
            scan.start = RD_KAFKA_OFFSET_BEGINNING;
            break;
        case 'e':
            scan.to_end = true;
            break;
        case 'j':
            st.json = 1;
            break;
        case 'b':
            bflag = optarg;
            break;
        case 'n':
            st.limit = atol(optarg);
            if (st.limit <= 0) {
                fprintf(stderr, "diaryctl: --count wants a number > 0\n");
                return CTL_USAGE;
            }
            break;
        case 'f':
        case 'T':
            if (ctl_parse_time(optarg, c == 'f' ? &st.from_ms : &st.to_ms) != 0) {
                fprintf(stderr, "diaryctl: --%s wants a date or RFC 3339 UTC time, not \"%s\"\n",
                        c == 'f' ? "from" : "to", optarg);
                return CTL_USAGE;
            }
            break;
        case 'h':
            if (audit)
                printf("usage: diaryctl audit --user ID [--from TIME] [--to TIME] [--json]\n"
                       "Lists the user's writes from the log: time, type, event id, request "
                       "id, client address.\n");
            else
                printf("usage: diaryctl tail [--changes|--dlq|--topic T] [--user ID] "
                       "[--from-beginning|--from TIME] [--exit] [--count N] [--json]\n"
                       "Follows the topic (default diary.events) from its end.\n");
            return CTL_OK;
        default:
            return CTL_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "diaryctl: unexpected argument \"%s\"\n", argv[optind]);
        return CTL_USAGE;
    }
    if (audit && !st.user) {
        fprintf(stderr, "diaryctl audit: --user ID is required\n");
        return CTL_USAGE;
    }
    if (!(bootstrap = ctl_bootstrap(bflag)))
        return CTL_USAGE;
    scan.topic = topic;
    scan.start_time_ms = st.from_ms;
    scan.stop = &stop;
    ctl_on_interrupt(&stop);
    if (!(rk = ctl_reader_new(bootstrap, err, sizeof(err)))) {
        fprintf(stderr, "diaryctl: %s\n", err);
        return CTL_FAIL;
    }
    rc = ctl_scan_topic(rk, &scan, print_cb, &st, err, sizeof(err));
    if (rc)
        fprintf(stderr, "diaryctl: %s\n", err);
    if (audit && !st.json)
        fprintf(stderr, "%ld writes by %s\n", st.count, st.user);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc ? CTL_FAIL : CTL_OK;
}

int ctl_tail(int argc, char **argv)
{
    return run(argc, argv, 0);
}

int ctl_audit(int argc, char **argv)
{
    return run(argc, argv, 1);
}
