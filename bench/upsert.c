/* The raw upsert ceiling of `make bench`: what PostgreSQL takes when nothing but the rows is
 * written. THREADS connections each send, for SECONDS, one statement of ROWS rows at a
 * time (one transaction each): a multi-row INSERT ... ON CONFLICT into daily_meals from
 * arrays (unnest), the form a set-based apply would use. The users and foods must exist
 * (the caller inserts them); each connection writes its own users' rows, so the two never
 * wait for each other's locks. Every row is new except the one in ten that sets an earlier
 * row of the same user again, as in the apply backlog.
 *
 *   upsert URL SECONDS THREADS ROWS
 *
 * Prints one JSON object: rows, transactions, seconds, rows per second. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uuid.h"

#define MAX_THREADS 16

static const char upsert_sql[] =
    "INSERT INTO daily_meals (id, user_id, date, meal_type, food_id, amount, version, "
    "created_at, updated_at) "
    "SELECT id, u, d, m, f, a, 1, now(), now() "
    "FROM unnest($1::uuid[], $2::uuid[], $3::date[], $4::text[], $5::uuid[], $6::numeric[]) "
    "AS t(id, u, d, m, f, a) "
    "ON CONFLICT (user_id, date, meal_type, food_id) DO UPDATE "
    "SET amount = EXCLUDED.amount, version = daily_meals.version + 1, "
    "updated_at = EXCLUDED.updated_at";

struct food {
    char user[UUID_STRLEN];
    char id[UUID_STRLEN];
};

struct job {
    pthread_t tid;
    const char *url;
    const struct food *foods; /* shared, read only */
    int nfoods, index, nthreads, rows;
    double seconds;
    int64_t done_rows, done_txns;
    int failed;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Appends one array element; buffers are sized by the caller for ROWS elements. */
static char *append(char *p, const char *s, int first)
{
    if (!first)
        *p++ = ',';
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static void *run(void *arg)
{
    struct job *j = arg;
    static const char *const meals[4] = {"breakfast", "lunch", "dinner", "snack"};
    size_t cap = (size_t)j->rows * 40 + 16;
    char *buf[6] = {0};
    PGconn *c = PQconnectdb(j->url);
    int64_t n = 0; /* this connection's row counter */
    double end;

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "upsert: %s", PQerrorMessage(c));
        j->failed = 1;
        goto out;
    }
    for (int i = 0; i < 6; i++)
        if (!(buf[i] = malloc(cap))) {
            j->failed = 1;
            goto out;
        }
    end = now_s() + j->seconds;
    while (now_s() < end) {
        char *p[6];
        const char *params[6];
        for (int i = 0; i < 6; i++) {
            p[i] = buf[i];
            *p[i]++ = '{';
        }
        for (int r = 0; r < j->rows; r++, n++) {
            /* This connection's users are those with index = j->index (mod nthreads). */
            int per = j->nfoods / j->nthreads;
            const struct food *f = &j->foods[(int)(n % per) * j->nthreads + j->index];
            int64_t k = n / per;
            int64_t slot = (k % 10 == 9 && k >= 37) ? k - 37 : k;
            char id[UUID_STRLEN], date[16], amount[16];
            diary_uuid_t u;
            struct tm tm = {.tm_year = 120, .tm_mday = 1 + (int)(slot / 4), .tm_hour = 12};
            time_t day = timegm(&tm);

            uuid_v7(&u, (uint64_t)time(NULL) * 1000);
            uuid_format(&u, id);
            strftime(date, sizeof(date), "%Y-%m-%d", gmtime_r(&day, &tm));
            snprintf(amount, sizeof(amount), "%d.5", 50 + (int)(n % 400));
            p[0] = append(p[0], id, r == 0);
            p[1] = append(p[1], f->user, r == 0);
            p[2] = append(p[2], date, r == 0);
            p[3] = append(p[3], meals[slot % 4], r == 0);
            p[4] = append(p[4], f->id, r == 0);
            p[5] = append(p[5], amount, r == 0);
        }
        for (int i = 0; i < 6; i++) {
            *p[i]++ = '}';
            *p[i] = '\0';
            params[i] = buf[i];
        }
        PGresult *res = PQexecParams(c, upsert_sql, 6, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fprintf(stderr, "upsert: %s", PQresultErrorMessage(res));
            PQclear(res);
            j->failed = 1;
            goto out;
        }
        PQclear(res);
        j->done_rows += j->rows;
        j->done_txns++;
    }
out:
    for (int i = 0; i < 6; i++)
        free(buf[i]);
    PQfinish(c);
    return NULL;
}

int main(int argc, char **argv)
{
    struct job jobs[MAX_THREADS];
    struct food *foods = NULL;
    PGconn *c = NULL;
    PGresult *res = NULL;
    int nthreads, nfoods, rc = 1;
    int64_t rows = 0, txns = 0;
    double t0, secs;

    if (argc != 5 || (nthreads = atoi(argv[3])) < 1 || nthreads > MAX_THREADS ||
        atoi(argv[4]) < 1) {
        fprintf(stderr, "usage: upsert URL SECONDS THREADS ROWS\n");
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    c = PQconnectdb(argv[1]);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "upsert: %s", PQerrorMessage(c));
        goto out;
    }
    res = PQexec(c, "SELECT user_id, id FROM foods ORDER BY user_id");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || (nfoods = PQntuples(res)) < nthreads) {
        fprintf(stderr, "upsert: need at least one food per connection in the database\n");
        goto out;
    }
    /* A statement must not touch a row twice (ON CONFLICT refuses it): the update of entry
     * k - 37 must fall in an earlier statement, so each connection needs rows / 37 users. */
    if ((nfoods / nthreads) * 37 < atoi(argv[4])) {
        fprintf(stderr, "upsert: need at least %d foods (of distinct users) for %s rows\n",
                atoi(argv[4]) * nthreads / 37 + nthreads, argv[4]);
        goto out;
    }
    if (!(foods = calloc((size_t)nfoods, sizeof(*foods))))
        goto out;
    for (int i = 0; i < nfoods; i++) {
        snprintf(foods[i].user, UUID_STRLEN, "%s", PQgetvalue(res, i, 0));
        snprintf(foods[i].id, UUID_STRLEN, "%s", PQgetvalue(res, i, 1));
    }
    memset(jobs, 0, sizeof(jobs));
    t0 = now_s();
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = (struct job){.url = argv[1],
                               .foods = foods,
                               .nfoods = nfoods,
                               .index = i,
                               .nthreads = nthreads,
                               .rows = atoi(argv[4]),
                               .seconds = atof(argv[2])};
        if (pthread_create(&jobs[i].tid, NULL, run, &jobs[i]) != 0) {
            nthreads = i;
            goto join;
        }
    }
join:
    for (int i = 0; i < nthreads; i++) {
        pthread_join(jobs[i].tid, NULL);
        rows += jobs[i].done_rows;
        txns += jobs[i].done_txns;
        if (jobs[i].failed)
            goto out;
    }
    secs = now_s() - t0;
    printf("{\"rows\":%" PRId64 ",\"transactions\":%" PRId64 ",\"seconds\":%.3f,\"per_s\":%.0f,"
           "\"connections\":%d,\"rows_per_txn\":%s}\n",
           rows, txns, secs, (double)rows / secs, nthreads, argv[4]);
    rc = 0;
out:
    PQclear(res);
    PQfinish(c);
    free(foods);
    return rc;
}
