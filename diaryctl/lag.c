/* diaryctl lag: per partition of the events topic, the log end (high watermark), how far the
 * database has applied (consumer_offsets.next_offset of the group, written in the same
 * transaction as the effects) and the difference. */
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctlkafka.h"
#include "diaryctl.h"

int ctl_lag(int argc, char **argv)
{
    static const struct option opts[] = {{"group", required_argument, NULL, 'g'},
                                         {"topic", required_argument, NULL, 't'},
                                         {"url", required_argument, NULL, 'u'},
                                         {"bootstrap", required_argument, NULL, 'b'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *group = config_str("DIARY_GROUP"), *topic = config_str("DIARY_EVENTS_TOPIC");
    const char *url = config_str("PG_PRIMARY_URL"), *bflag = NULL, *bootstrap;
    int c, json = 0, rc = CTL_FAIL, parts;
    char err[512];
    rd_kafka_t *rk = NULL;
    PGconn *pg = NULL;
    PGresult *r = NULL;
    int64_t total = 0;

    optind = 1;
    while ((c = getopt_long(argc, argv, "g:t:u:b:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'g':
            group = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'u':
            url = optarg;
            break;
        case 'b':
            bflag = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            printf("usage: diaryctl lag [--group G] [--topic T] [--url DB] [--bootstrap B] "
                   "[--json]\n");
            return CTL_OK;
        default:
            return CTL_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "diaryctl lag: unexpected argument \"%s\"\n", argv[optind]);
        return CTL_USAGE;
    }
    if (!(bootstrap = ctl_bootstrap(bflag)))
        return CTL_USAGE;
    if (!url) {
        fprintf(stderr, "diaryctl lag: no database: set PG_PRIMARY_URL or pass --url\n");
        return CTL_USAGE;
    }
    pg = PQconnectdb(url);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "diaryctl lag: cannot connect: %s", PQerrorMessage(pg));
        goto out;
    }
    {
        const char *params[2] = {group, topic};
        r = PQexecParams(pg,
                         "SELECT \"partition\", next_offset FROM consumer_offsets "
                         "WHERE group_id = $1 AND topic = $2",
                         2, NULL, params, NULL, NULL, 0);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "diaryctl lag: %s", PQerrorMessage(pg));
        goto out;
    }
    if (!(rk = ctl_reader_new(bootstrap, err, sizeof(err))) ||
        (parts = ctl_partition_count(rk, topic, err, sizeof(err))) < 0) {
        fprintf(stderr, "diaryctl lag: %s\n", err);
        goto out;
    }
    if (!json)
        printf("%-20s %9s %12s %12s %10s\n", "TOPIC", "PARTITION", "LOG-END", "APPLIED", "LAG");
    for (int p = 0; p < parts; p++) {
        int64_t lo, hi, applied = -1;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);

        if (e) {
            fprintf(stderr, "diaryctl lag: watermarks of %s [%d]: %s\n", topic, p,
                    rd_kafka_err2str(e));
            goto out;
        }
        for (int row = 0; row < PQntuples(r); row++)
            if (atoi(PQgetvalue(r, row, 0)) == p)
                applied = strtoll(PQgetvalue(r, row, 1), NULL, 10);
        int64_t lag = hi - (applied < 0 ? lo : applied);
        total += lag;
        if (json)
            printf("{\"topic\":\"%s\",\"partition\":%d,\"log_start\":%" PRId64
                   ",\"log_end\":%" PRId64 ",\"applied\":%" PRId64 ",\"lag\":%" PRId64 "}\n",
                   topic, p, lo, hi, applied, lag);
        else if (applied < 0)
            printf("%-20s %9d %12" PRId64 " %12s %10" PRId64 "\n", topic, p, hi, "-", lag);
        else
            printf("%-20s %9d %12" PRId64 " %12" PRId64 " %10" PRId64 "%s\n", topic, p, hi, applied,
                   lag, lag < 0 ? "  (database ahead of the log!)" : "");
    }
    if (!json)
        printf("total lag %" PRId64 " (group %s)\n", total, group);
    rc = CTL_OK;
out:
    if (rk)
        rd_kafka_destroy(rk);
    PQclear(r);
    PQfinish(pg);
    return rc;
}
