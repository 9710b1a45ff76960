/* Ingest's Prometheus metrics: requests by route and status class, produce latency as a
 * histogram, and gauges sampled when /metrics is scraped. Pure: the owner bumps the counters
 * from the loop thread and renders the text exposition format on demand. */
#ifndef INGEST_COUNTERS_H
#define INGEST_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct counters counters_t;

/* One sampled value at render time: name (no labels), help, value, and its Prometheus type
 * ("gauge", or "counter" for a total kept elsewhere, such as the replica pool's). */
struct counters_gauge {
    const char *name;
    const char *help;
    double value;
    const char *type; /* NULL: "gauge" */
};

/* route_names label the routes (indexes 0..nroutes-1); index nroutes counts requests that
 * matched no route ("unmatched"). The names must outlive the counters. NULL on ENOMEM. */
counters_t *counters_new(const char *const *route_names, size_t nroutes);

/* Counts one answered request. route out of range counts as unmatched. */
void counters_request(counters_t *c, size_t route, int status);

/* Records the time from produce to the broker's delivery report. */
void counters_produce(counters_t *c, double seconds, int ok);

/* Counts one connection refused for being over the cap. */
void counters_refused(counters_t *c);

/* The exposition text of every counter and of the gauges; the caller frees it. NULL on
 * ENOMEM. */
char *counters_render(const counters_t *c, const struct counters_gauge *gauges, size_t ngauges,
                      size_t *len);

void counters_destroy(counters_t *c);

#endif
