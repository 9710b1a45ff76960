/* The devbroker's control endpoint: fault injection for tests over loopback HTTP, JSON in
 * every answer. The routes are the table at the top of dbcontrol.c; docs/devbroker.md shows
 * them with curl. */
#ifndef DIARY_DBCONTROL_H
#define DIARY_DBCONTROL_H

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#include "dbcluster.h"

typedef struct dbcontrol dbcontrol_t;

/* Listens on host:port (a loopback address; port 0 picks a free one) in base's loop and
 * changes c on request; c must outlive the endpoint. bound receives the actual
 * "host:port". On success *out is the caller's to destroy. */
int dbcontrol_new(struct event_base *base, dbcluster_t *c, const char *host, int port,
                  dbcontrol_t **out, char *bound, size_t boundlen, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Pure: true for the addresses the endpoint accepts (127.0.0.0/8, ::1, localhost). */
bool dbcontrol_host_is_loopback(const char *host);

/* Stops listening, drops open connections and frees ctl. NULL is a no-op. */
void dbcontrol_destroy(dbcontrol_t *ctl);

#endif
