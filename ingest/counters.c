#include "counters.h"

#include <stdio.h>
#include <stdlib.h>

#define CLASSES 5 /* 1xx .. 5xx */

static const double produce_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,   0.25,   0.5,   1.0,  2.5,   5.0};
#define NBUCKETS (sizeof(produce_buckets) / sizeof(produce_buckets[0]))

struct counters {
    const char *const *names;
    size_t nroutes;
    uint64_t *requests; /* (nroutes + 1) * CLASSES */
    uint64_t produce_hist[NBUCKETS];
    uint64_t produce_count, produce_failed, refused;
    double produce_sum;
};

counters_t *counters_new(const char *const *route_names, size_t nroutes)
{
    counters_t *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->requests = calloc((nroutes + 1) * CLASSES, sizeof(*c->requests));
    if (!c->requests) {
        free(c);
        return NULL;
    }
    c->names = route_names;
    c->nroutes = nroutes;
    return c;
}

void counters_request(counters_t *c, size_t route, int status)
{
    int cls = status / 100 - 1;

    if (route > c->nroutes)
        route = c->nroutes;
    if (cls < 0 || cls >= CLASSES)
        cls = CLASSES - 1;
    c->requests[route * CLASSES + (size_t)cls]++;
}

void counters_produce(counters_t *c, double seconds, int ok)
{
    if (!ok) {
        c->produce_failed++;
        return;
    }
    for (size_t i = 0; i < NBUCKETS; i++)
        if (seconds <= produce_buckets[i])
            c->produce_hist[i]++;
    c->produce_count++;
    c->produce_sum += seconds;
}

void counters_refused(counters_t *c)
{
    c->refused++;
}

char *counters_render(const counters_t *c, const struct counters_gauge *gauges, size_t ngauges,
                      size_t *len)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);

    if (!f)
        return NULL;
    fputs("# HELP diary_ingest_requests_total Answered HTTP requests by route and status "
          "class.\n# TYPE diary_ingest_requests_total counter\n",
          f);
    for (size_t r = 0; r <= c->nroutes; r++)
        for (int k = 0; k < CLASSES; k++) {
            uint64_t n = c->requests[r * CLASSES + (size_t)k];
            if (n)
                fprintf(f, "diary_ingest_requests_total{route=\"%s\",code=\"%dxx\"} %llu\n",
                        r < c->nroutes ? c->names[r] : "unmatched", k + 1, (unsigned long long)n);
        }
    fputs("# HELP diary_ingest_produce_seconds Time from produce to the broker's "
          "acknowledgement.\n# TYPE diary_ingest_produce_seconds histogram\n",
          f);
    for (size_t i = 0; i < NBUCKETS; i++)
        fprintf(f, "diary_ingest_produce_seconds_bucket{le=\"%g\"} %llu\n", produce_buckets[i],
                (unsigned long long)c->produce_hist[i]);
    fprintf(f, "diary_ingest_produce_seconds_bucket{le=\"+Inf\"} %llu\n",
            (unsigned long long)c->produce_count);
    fprintf(f, "diary_ingest_produce_seconds_sum %.6f\n", c->produce_sum);
    fprintf(f, "diary_ingest_produce_seconds_count %llu\n", (unsigned long long)c->produce_count);
    fprintf(f,
            "# HELP diary_ingest_produce_failed_total Writes the broker did not acknowledge.\n"
            "# TYPE diary_ingest_produce_failed_total counter\n"
            "diary_ingest_produce_failed_total %llu\n",
            (unsigned long long)c->produce_failed);
    fprintf(f,
            "# HELP diary_ingest_connections_refused_total Connections refused over the cap.\n"
            "# TYPE diary_ingest_connections_refused_total counter\n"
            "diary_ingest_connections_refused_total %llu\n",
            (unsigned long long)c->refused);
    for (size_t i = 0; i < ngauges; i++)
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", gauges[i].name, gauges[i].help,
                gauges[i].name, gauges[i].type ? gauges[i].type : "gauge", gauges[i].name,
                gauges[i].value);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    if (len)
        *len = size;
    return buf;
}

void counters_destroy(counters_t *c)
{
    if (!c)
        return;
    free(c->requests);
    free(c);
}
