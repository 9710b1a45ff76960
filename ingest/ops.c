/* Operations routes: /healthz (the process answers), /readyz (Kafka, the replica and the
 * revocation cache are usable, with detail), /metrics (Prometheus text). The replica is probed with
 * SELECT 1 on a timer, so that /readyz answers at once from the last probe. */
#include "ingest.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"

#define PROBE_INTERVAL_MS 1000
#define PROBE_STALE_MS    5000

static void probe_cb(PGresult *res, const char *err, void *arg)
{
    struct ingest *app = arg;
    bool ok = res && PQresultStatus(res) == PGRES_TUPLES_OK;

    app->probe_inflight = false;
    if (ok != app->replica_ok)
        log_write(ok ? LOG_INFO : LOG_WARN, NULL, "replica %s", ok ? "reachable" : "unreachable");
    app->replica_ok = ok;
    if (ok) {
        app->replica_ok_at = replwait_now_ms();
        snprintf(app->replica_detail, sizeof(app->replica_detail), "SELECT 1 answered");
    } else {
        snprintf(app->replica_detail, sizeof(app->replica_detail), "%s",
                 err   ? err
                 : res ? PQresultErrorMessage(res)
                       : "no answer");
    }
}

static void probe_tick(evutil_socket_t fd, short what, void *arg)
{
    struct ingest *app = arg;

    if (app->probe_inflight)
        return;
    if (pgpool_query_timeout(app->pg, "SELECT 1", 0, NULL, PROBE_INTERVAL_MS, probe_cb, app) == 0)
        app->probe_inflight = true;
}

int ops_setup(struct ingest *app)
{
    struct timeval tv = {PROBE_INTERVAL_MS / 1000, (PROBE_INTERVAL_MS % 1000) * 1000};

    snprintf(app->replica_detail, sizeof(app->replica_detail), "not probed yet");
    app->probe_ev = event_new(app->base, -1, EV_PERSIST, probe_tick, app);
    if (!app->probe_ev || event_add(app->probe_ev, &tv) != 0)
        return -1;
    probe_tick(-1, 0, app);
    return 0;
}

void ops_teardown(struct ingest *app)
{
    if (app->probe_ev)
        event_free(app->probe_ev);
    app->probe_ev = NULL;
}

void ops_healthz(struct req *r)
{
    req_reply(r, 200, json_pack("{s:s}", "status", "ok"));
}

void ops_readyz(struct req *r)
{
    struct ingest *app = r->app;
    char kdetail[160], rdetail[200], vdetail[240];
    bool kok = kprod_ready(app->prod, kdetail, sizeof(kdetail));
    bool pool = pgpool_ready(app->pg);
    bool rok = pool && app->replica_ok && replwait_now_ms() - app->replica_ok_at < PROBE_STALE_MS;
    /* A node that cannot tell revoked tokens takes no traffic (fail closed). */
    bool vok = revoke_ready(app->revoke, vdetail, sizeof(vdetail));

    if (!pool)
        snprintf(rdetail, sizeof(rdetail), "no connection to the replica");
    else
        snprintf(rdetail, sizeof(rdetail), "%s", app->replica_detail);
    req_reply(r, kok && rok && vok && !app->draining ? 200 : 503,
              json_pack("{s:{s:b, s:s}, s:{s:b, s:s}, s:{s:b, s:s}, s:b, s:b}", "kafka", "ok", kok,
                        "detail", kdetail, "replica", "ok", rok, "detail", rdetail, "revocations",
                        "ok", vok, "detail", vdetail, "primary_fallback", app->primary != NULL,
                        "draining", app->draining));
}

void ops_metrics(struct req *r)
{
    struct ingest *app = r->app;
    size_t queued = 0, running = 0, len = 0, rsessions = 0, rusers = 0;
    char kd[160], vd[240];
    char *text;
    struct pgpool_stats ps;

    hashpool_stats(app->hash, &queued, &running);
    pgpool_stats(app->pg, &ps);
    revoke_counts(app->revoke, &rsessions, &rusers);
    {
        const char *gauge = "gauge", *counter = "counter";
        const struct counters_gauge g[] = {
            {"diary_ingest_requests_in_flight", "Requests not yet answered.", (double)app->nlive,
             gauge},
            {"diary_ingest_connections", "Open client connections (that sent a request).",
             (double)app->nconns, gauge},
            {"diary_ingest_hash_jobs_queued", "Password jobs waiting for a thread.", (double)queued,
             gauge},
            {"diary_ingest_hash_jobs_running", "Password jobs running.", (double)running, gauge},
            {"diary_ingest_replica_waiters", "Requests waiting for the replica to catch up.",
             (double)replwait_count(app->wait), gauge},
            {"diary_ingest_kafka_outq", "Messages not yet acknowledged by the broker.",
             (double)kprod_outq_len(app->prod), gauge},
            {"diary_ingest_kafka_ready", "1 when a broker is connected.",
             kprod_ready(app->prod, kd, sizeof(kd)) ? 1.0 : 0.0, gauge},
            {"diary_ingest_replica_ready", "1 when the replica answers.",
             pgpool_ready(app->pg) && app->replica_ok ? 1.0 : 0.0, gauge},
            {"diary_ingest_replica_pool_size", "Replica connections configured.", (double)ps.size,
             gauge},
            {"diary_ingest_replica_pool_up", "Replica connections established.", (double)ps.up,
             gauge},
            {"diary_ingest_replica_pool_busy", "Replica connections running a query.",
             (double)ps.busy, gauge},
            {"diary_ingest_replica_pool_queued", "Replica queries waiting for a connection.",
             (double)ps.queued, gauge},
            {"diary_ingest_replica_queries_total", "Replica queries accepted.", (double)ps.queries,
             counter},
            {"diary_ingest_replica_errors_total", "Replica queries that failed.", (double)ps.errors,
             counter},
            {"diary_ingest_replica_timeouts_total", "Replica queries past their deadline.",
             (double)ps.timeouts, counter},
            {"diary_ingest_revoked_sessions", "Revoked sessions held in memory.", (double)rsessions,
             gauge},
            {"diary_ingest_revoked_users", "Users with a token cut-off held in memory.",
             (double)rusers, gauge},
            {"diary_ingest_revocations_ready", "1 when the revocation cache is fresh.",
             revoke_ready(app->revoke, vd, sizeof(vd)) ? 1.0 : 0.0, gauge},
            {"diary_ingest_primary_reads_total",
             "Reads answered from the primary because the replica was behind.",
             (double)app->primary_reads, counter},
            {"diary_ingest_numbers_bodies_total",
             "Bodies of numbers read and validated without a JSON tree (the fast path).",
             (double)app->numbers_fast, counter},
            {"diary_ingest_shed_total",
             "Writes refused (503 apply-behind) because the apply was too far behind.",
             (double)shed_refused(app->shed), counter},
            {"diary_ingest_apply_lag_max",
             "Largest apply lag (events) of a partition, as load shedding sees it (0 when off).",
             (double)shed_max_lag(app->shed), gauge},
            {"diary_ingest_apply_lag_fresh",
             "1 when load shedding read the apply's positions in the last 5 s (0 when off).",
             app->shed && shed_fresh(app->shed) ? 1.0 : 0.0, gauge},
        };
        text = counters_render(app->stats, g, sizeof(g) / sizeof(g[0]), &len);
    }
    if (!text) {
        req_unavailable(r, "out of memory");
        return;
    }
    req_reply_text(r, 200, "text/plain; version=0.0.4", text, len);
    free(text);
}
