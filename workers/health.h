/* The worker's HTTP port: GET /healthz, /readyz and /metrics, served by a thread of its own
 * with its own libevent base, reading the consumer thread's atomics (metrics.h). */
#ifndef DIARY_WORKER_HEALTH_H
#define DIARY_WORKER_HEALTH_H

#include <stddef.h>

#include "metrics.h"

typedef struct health health_t;

/* Binds addr:port (port 0: any free port, logged and written to port_file when port_file is
 * not NULL) and starts the thread. m is borrowed and must outlive the server. evthread must
 * be set up (evthread_use_pthreads) before. NULL with err on failure. */
health_t *health_new(const char *addr, int port, const char *port_file, const char *worker_id,
                     struct worker_metrics *m, char *err, size_t errlen);

/* Stops the thread and frees everything. NULL is a no-op. */
void health_destroy(health_t *h);

#endif
