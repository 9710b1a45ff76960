/* diaryctl verify A B: compares two databases table by table and, within a table, user by
 * user, by a checksum of each user's rows (every column, rows in id order). Prints the
 * differences; exits 0 only when the two are equal. This is the check of a replay, a
 * migration or a dual write: the same log applied twice must give the same rows. */
#include <getopt.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diaryctl.h"

struct vtable {
    const char *name;
    const char *sql; /* user_id, row count, md5 of the rows; ordered by user_id */
};

/* Columns that record when or where a row was applied (applied_at, offsets of another
 * group) are left out: they differ between two correct databases. */
static const struct vtable vtables[] = {
    {"users", "SELECT id::text, count(*), md5(string_agg(t::text, '|' ORDER BY id)) "
              "FROM users t GROUP BY id ORDER BY id"},
    {"foods", "SELECT user_id::text, count(*), md5(string_agg(t::text, '|' ORDER BY id)) "
              "FROM foods t GROUP BY user_id ORDER BY user_id"},
    {"daily_meals", "SELECT user_id::text, count(*), md5(string_agg(t::text, '|' ORDER BY id)) "
                    "FROM daily_meals t GROUP BY user_id ORDER BY user_id"},
    {"user_settings", "SELECT user_id::text, count(*), md5(string_agg(t::text, '|')) "
                      "FROM user_settings t GROUP BY user_id ORDER BY user_id"},
    {"weight_entries", "SELECT user_id::text, count(*), md5(string_agg(t::text, '|' ORDER BY id)) "
                       "FROM weight_entries t GROUP BY user_id ORDER BY user_id"},
    {"processed_events",
     "SELECT coalesce(user_id::text, ''), count(*), md5(string_agg(event_id::text || status || "
     "coalesce(reason, '') || coalesce(resource_id::text, ''), '|' ORDER BY event_id)) "
     "FROM processed_events GROUP BY user_id ORDER BY 1"},
};

static PGresult *query(PGconn *c, const char *sql, const char *which)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "diaryctl verify: %s: %s", which, PQerrorMessage(c));
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Merges the two sorted per-user lists; prints up to limit differing users. Returns the
 * number of users that differ, or -1 on a query failure. */
static long compare_table(PGconn *a, PGconn *b, const struct vtable *t, int limit, int json,
                          long *rows_a, long *rows_b)
{
    PGresult *ra = query(a, t->sql, "A"), *rb = ra ? query(b, t->sql, "B") : NULL;
    int i = 0, j = 0, na, nb;
    long diff = 0, shown = 0;

    if (!ra || !rb) {
        PQclear(ra);
        return -1;
    }
    na = PQntuples(ra);
    nb = PQntuples(rb);
    *rows_a = *rows_b = 0;
    for (int k = 0; k < na; k++)
        *rows_a += atol(PQgetvalue(ra, k, 1));
    for (int k = 0; k < nb; k++)
        *rows_b += atol(PQgetvalue(rb, k, 1));
    while (i < na || j < nb) {
        int cmp = i >= na ? 1 : j >= nb ? -1 : strcmp(PQgetvalue(ra, i, 0), PQgetvalue(rb, j, 0));
        const char *user = cmp <= 0 ? PQgetvalue(ra, i, 0) : PQgetvalue(rb, j, 0);
        const char *ca = cmp <= 0 ? PQgetvalue(ra, i, 1) : "0";
        const char *cb = cmp >= 0 ? PQgetvalue(rb, j, 1) : "0";
        int same = cmp == 0 && strcmp(PQgetvalue(ra, i, 2), PQgetvalue(rb, j, 2)) == 0;

        if (!same) {
            diff++;
            if (shown++ < limit) {
                if (json)
                    printf("{\"table\":\"%s\",\"user_id\":\"%s\",\"rows_a\":%s,\"rows_b\":%s}\n",
                           t->name, user, ca, cb);
                else
                    printf("  %-16s user %s: %s rows in A, %s in B%s\n", t->name, user, ca, cb,
                           cmp == 0 ? ", contents differ" : "");
            }
        }
        if (cmp <= 0)
            i++;
        if (cmp >= 0)
            j++;
    }
    if (!json && shown > limit)
        printf("  %-16s ... and %ld more users\n", t->name, shown - limit);
    PQclear(ra);
    PQclear(rb);
    return diff;
}

static PGconn *connect_db(const char *url, const char *which)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "diaryctl verify: cannot connect to %s: %s", which, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    /* One snapshot per side, so a table is compared as of one moment. */
    PQclear(PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
    return c;
}

int ctl_verify(int argc, char **argv)
{
    static const struct option opts[] = {{"limit", required_argument, NULL, 'l'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c, limit = 20, json = 0, rc = CTL_FAIL;
    long total = 0;
    PGconn *a = NULL, *b = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "l:jh", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            limit = atoi(optarg);
            if (limit < 0) {
                fprintf(stderr, "diaryctl verify: --limit wants a number >= 0\n");
                return CTL_USAGE;
            }
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            printf("usage: diaryctl verify [--limit N] [--json] URL_A URL_B\n"
                   "Compares two databases per table and per user; exit 0 when equal, 1 when "
                   "not.\n");
            return CTL_OK;
        default:
            return CTL_USAGE;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "diaryctl verify: want two database URLs (A and B)\n");
        return CTL_USAGE;
    }
    if (!(a = connect_db(argv[optind], "A")) || !(b = connect_db(argv[optind + 1], "B")))
        goto out;
    for (size_t i = 0; i < sizeof(vtables) / sizeof(vtables[0]); i++) {
        long ra, rb, d = compare_table(a, b, &vtables[i], limit, json, &ra, &rb);
        if (d < 0)
            goto out;
        total += d;
        if (json)
            printf("{\"table\":\"%s\",\"rows_a\":%ld,\"rows_b\":%ld,\"users_differing\":%ld}\n",
                   vtables[i].name, ra, rb, d);
        else
            printf("%-16s %8ld rows in A %8ld in B  %s\n", vtables[i].name, ra, rb,
                   d ? "DIFFERENT" : "equal");
    }
    if (!json)
        printf(total ? "databases differ (%ld user-table pairs)\n" : "databases are equal\n",
               total);
    rc = total ? CTL_FAIL : CTL_OK;
out:
    PQfinish(a);
    PQfinish(b);
    return rc;
}
