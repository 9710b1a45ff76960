/* diaryctl migrate: applies schema/migrations/NNNN_name.sql in order, each in its own
 * transaction with its row in schema_migrations (version, name, checksum). A file whose
 * checksum differs from the one recorded when it was applied is refused: migrations are
 * append-only. An advisory lock keeps two migrators from racing. */
#include <dirent.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "diaryctl.h"

#define MIGRATE_LOCK_ID "4242001"

struct migration {
    char version[16];
    char name[256];
    char checksum[65];
    char *sql;
};

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct migration *)a)->name, ((const struct migration *)b)->name);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* Loads every NNNN_*.sql of dir, sorted. The caller frees with free_migrations. */
static int load_migrations(const char *dir, struct migration **out, size_t *count)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct migration *m = NULL;
    size_t n = 0;

    if (!d) {
        fprintf(stderr, "diaryctl migrate: cannot open %s\n", dir);
        return -1;
    }
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        size_t digits = strspn(de->d_name, "0123456789");
        char path[4096];
        unsigned char h[32];

        if (len < 5 || strcmp(de->d_name + len - 4, ".sql") != 0)
            continue;
        if (digits == 0 || digits >= 16 || de->d_name[digits] != '_' || len >= 256) {
            fprintf(stderr, "diaryctl migrate: %s: name must be NNNN_description.sql\n",
                    de->d_name);
            goto fail;
        }
        struct migration *grown = realloc(m, (n + 1) * sizeof(*m));
        if (!grown)
            goto fail;
        m = grown;
        memset(&m[n], 0, sizeof(m[n]));
        memcpy(m[n].version, de->d_name, digits);
        snprintf(m[n].name, sizeof(m[n].name), "%s", de->d_name);
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (!(m[n].sql = read_file(path))) {
            fprintf(stderr, "diaryctl migrate: cannot read %s\n", path);
            goto fail;
        }
        n++;
        crypto_generichash(h, sizeof(h), (const unsigned char *)m[n - 1].sql, strlen(m[n - 1].sql),
                           NULL, 0);
        sodium_bin2hex(m[n - 1].checksum, sizeof(m[n - 1].checksum), h, sizeof(h));
    }
    closedir(d);
    qsort(m, n, sizeof(*m), by_name);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(m[i].version, m[i - 1].version) == 0) {
            fprintf(stderr, "diaryctl migrate: %s and %s share version %s\n", m[i - 1].name,
                    m[i].name, m[i].version);
            d = NULL;
            goto fail;
        }
    }
    *out = m;
    *count = n;
    return 0;
fail:
    if (d)
        closedir(d);
    for (size_t i = 0; i < n; i++)
        free(m[i].sql);
    free(m);
    return -1;
}

static void free_migrations(struct migration *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(m[i].sql);
    free(m);
}

static int exec_ok(PGconn *c, const char *sql, const char *what)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;

    if (!ok)
        fprintf(stderr, "diaryctl migrate: %s: %s", what, PQerrorMessage(c));
    PQclear(r);
    return ok ? 0 : -1;
}

static int apply_one(PGconn *c, const struct migration *m)
{
    const char *params[3] = {m->version, m->name, m->checksum};
    PGresult *r;

    if (exec_ok(c, "BEGIN", "begin") != 0)
        return -1;
    if (exec_ok(c, m->sql, m->name) != 0)
        goto fail;
    r = PQexecParams(c,
                     "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                     3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "diaryctl migrate: recording %s: %s", m->name, PQerrorMessage(c));
        PQclear(r);
        goto fail;
    }
    PQclear(r);
    return exec_ok(c, "COMMIT", "commit");
fail:
    PQclear(PQexec(c, "ROLLBACK"));
    return -1;
}

int ctl_migrate(int argc, char **argv)
{
    static const struct option opts[] = {{"dry-run", no_argument, NULL, 'n'},
                                         {"dir", required_argument, NULL, 'd'},
                                         {"url", required_argument, NULL, 'u'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *dir = "schema/migrations", *url = config_str("PG_PRIMARY_URL");
    int dry = 0, c, rc = CTL_FAIL, applied = 0, pending = 0;
    struct migration *m = NULL;
    size_t n = 0;
    PGconn *conn = NULL;
    PGresult *r = NULL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "nd:u:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            dry = 1;
            break;
        case 'd':
            dir = optarg;
            break;
        case 'u':
            url = optarg;
            break;
        case 'h':
            printf("usage: diaryctl migrate [--dry-run] [--dir DIR] [--url URL]\n"
                   "Applies DIR/NNNN_*.sql (default schema/migrations) to URL (default "
                   "$PG_PRIMARY_URL).\n");
            return CTL_OK;
        default:
            return CTL_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "diaryctl migrate: unexpected argument \"%s\"\n", argv[optind]);
        return CTL_USAGE;
    }
    if (!url) {
        fprintf(stderr, "diaryctl migrate: no database: set PG_PRIMARY_URL or pass --url\n");
        return CTL_USAGE;
    }
    if (load_migrations(dir, &m, &n) != 0)
        return CTL_FAIL;

    conn = PQconnectdb(url);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "diaryctl migrate: cannot connect: %s", PQerrorMessage(conn));
        goto out;
    }
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    /* The advisory lock is released when the session ends. */
    if (exec_ok(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_ID ")", "lock") != 0 ||
        exec_ok(conn,
                "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
                "name text NOT NULL, checksum text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())",
                "schema_migrations") != 0)
        goto out;
    r = PQexec(conn, "SELECT version, name, checksum FROM schema_migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "diaryctl migrate: %s", PQerrorMessage(conn));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *recorded = NULL;
        for (int row = 0; row < PQntuples(r); row++)
            if (strcmp(PQgetvalue(r, row, 0), m[i].version) == 0)
                recorded = PQgetvalue(r, row, 2);
        if (recorded) {
            if (strcmp(recorded, m[i].checksum) != 0) {
                fprintf(stderr,
                        "diaryctl migrate: %s was changed after it was applied (recorded "
                        "checksum %.16s..., file %.16s...): add a new migration instead\n",
                        m[i].name, recorded, m[i].checksum);
                goto out;
            }
            continue;
        }
        pending++;
        if (dry) {
            printf("would apply %s\n", m[i].name);
            continue;
        }
        if (apply_one(conn, &m[i]) != 0)
            goto out;
        printf("applied %s\n", m[i].name);
        applied++;
    }
    if (dry)
        printf("%d of %zu migrations pending (dry run: nothing changed)\n", pending, n);
    else
        printf("%d applied, %zu up to date\n", applied, n - (size_t)applied);
    rc = CTL_OK;
out:
    PQclear(r);
    PQfinish(conn);
    free_migrations(m, n);
    return rc;
}
