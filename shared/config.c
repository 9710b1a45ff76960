#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct config_entry config_entries[] = {
    {"DIARY_HTTP_ADDR", "127.0.0.1", "ingest: address the HTTP API listens on"},
    {"DIARY_HTTP_PORT", "8080", "ingest: port of the HTTP API"},
    {"DIARY_HTTP_PORT_FILE", NULL,
     "ingest: file that receives the bound port (useful with port 0)"},
    {"DIARY_WORKER_ADDR", "127.0.0.1", "worker: address of /healthz, /readyz, /metrics"},
    {"DIARY_WORKER_PORT", "8081", "worker: port of /healthz, /readyz, /metrics (0 = any free)"},
    {"DIARY_WORKER_PORT_FILE", NULL, "worker: file that receives the bound health port"},
    {"KAFKA_BOOTSTRAP", NULL, "all: Kafka bootstrap servers, host:port[,host:port]"},
    {"PG_PRIMARY_URL", NULL,
     "worker, diaryctl: libpq URL of the primary; ingest: read-your-writes fallback when the "
     "replica lags"},
    {"DIARY_API_SCHEMA", NULL,
     "ingest, diaryctl: the validation rules file (default schema/api.yaml near the binary, then "
     "/opt/diary/schema)"},
    {"PG_REPLICA_URL", NULL, "ingest: libpq URL of the read replica"},
    {"DIARY_TOKEN_KEY", NULL, "ingest: 64 hex characters, the key that signs bearer tokens"},
    {"DIARY_TOKEN_TTL", "86400", "ingest: bearer token lifetime in seconds"},
    {"DIARY_PWHASH_OPSLIMIT", "0", "ingest: argon2id ops limit (0 = libsodium interactive)"},
    {"DIARY_PWHASH_MEMLIMIT", "0", "ingest: argon2id memory limit in bytes (0 = interactive)"},
    {"DIARY_HASH_THREADS", "2", "ingest: threads that hash and verify passwords"},
    {"DIARY_READ_POOL", "4", "ingest: connections to the replica"},
    {"DIARY_READ_PREPARED", "true",
     "ingest: prepare read queries per connection (false behind pgbouncer in transaction mode)"},
    {"DIARY_MAX_BODY", "1048576", "ingest: largest request body in bytes (413 above)"},
    {"DIARY_MAX_CONNECTIONS", "10000", "ingest: open client connections at most"},
    {"DIARY_REQUEST_TIMEOUT_MS", "30000", "ingest: absolute deadline of one request"},
    {"DIARY_MAX_WAIT", "30", "ingest: largest Prefer: wait=N honoured, seconds"},
    {"DIARY_INGEST_LINGER_MS", "3",
     "ingest: linger.ms of its producer (larger batches to the broker under load, in exchange for "
     "latency)"},
    {"DIARY_INGEST_MAX_LAG", "0",
     "ingest: refuse writes (503 apply-behind) to a partition whose apply is more than this many "
     "events behind; 0 = never (a log kept forever needs no bound)"},
    {"DIARY_SOURCE", NULL,
     "ingest: CloudEvents source of this node (default ingest/<host>:<port>)"},
    {"DIARY_GROUP", "diary-apply", "worker: consumer group, also the key of consumer_offsets"},
    {"DIARY_EVENTS_TOPIC", "diary.events", "all: the write log"},
    {"DIARY_CHANGES_TOPIC", "diary.changes", "worker: the change stream"},
    {"DIARY_DLQ_TOPIC", "diary.events.dlq", "worker: dead letters"},
    {"DIARY_BATCH_MAX", "1000", "worker: most events applied in one transaction"},
    {"DIARY_APPLY_LANES", "2",
     "worker: apply threads, each with its own PostgreSQL connection and its share of the "
     "partitions"},
    {"DIARY_SESSION_TIMEOUT_MS", "10000",
     "worker: consumer group session timeout (how soon a dead worker's partitions move)"},
    {"DIARY_APPLY_MODE", "set",
     "worker: set (set-based statements per batch) or event (one call per event)"},
    {"DIARY_WORKER_ID", NULL, "worker: name in logs and dead letters (default worker-<pid>)"},
    {"DIARY_LOG_LEVEL", "info", "all: debug, info, warn or error"},
    {"DEVBROKER_TOPICS_DIR", NULL, "devbroker: folder of topic YAML files (or --topics)"},
    {"DEVBROKER_STATE_DIR", NULL, "devbroker: folder where topics are saved (or --state)"},
    {"DEVBROKER_BROKERS", "3", "devbroker: number of mock brokers (or --brokers)"},
    {"DEVBROKER_CONTROL", NULL,
     "devbroker: loopback host:port of the control endpoint (or --control)"},
    {"DEVBROKER_BOOTSTRAP_FILE", NULL,
     "devbroker: file that receives the bootstrap address when ready"},
    {"DEVBROKER_CONTROL_FILE", NULL,
     "devbroker: file that receives the control address (default STATE/control.addr)"},
    {"DEVBROKER_DEBUG", NULL, "devbroker: librdkafka debug contexts for the mock cluster"},
};

const struct config_entry *config_table(size_t *count)
{
    *count = sizeof(config_entries) / sizeof(config_entries[0]);
    return config_entries;
}

const char *config_str(const char *name)
{
    for (size_t i = 0; i < sizeof(config_entries) / sizeof(config_entries[0]); i++) {
        if (strcmp(config_entries[i].name, name) == 0) {
            const char *v = getenv(name);
            return v && *v ? v : config_entries[i].def;
        }
    }
    fprintf(stderr, "config: unknown setting %s\n", name);
    abort();
}

int config_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int config_long(const char *name, long min, long max, long *out, char *err, size_t errlen)
{
    const char *s = config_str(name);

    if (config_parse_long(s, min, max, out) != 0) {
        snprintf(err, errlen, "%s=%s: want a whole number from %ld to %ld", name, s ? s : "", min,
                 max);
        return -1;
    }
    return 0;
}

int config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no",
                                                                                "off"};
    for (size_t i = 0; s && i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = true, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = false, 0;
    }
    return -1;
}

int config_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    long p;

    if (!colon || colon == s || (size_t)(colon - s) >= hostlen ||
        config_parse_long(colon + 1, 0, 65535, &p) != 0)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = (int)p;
    return 0;
}

void config_write_markdown(FILE *f)
{
    fprintf(f, "| variable | default | meaning |\n|---|---|---|\n");
    for (size_t i = 0; i < sizeof(config_entries) / sizeof(config_entries[0]); i++)
        fprintf(f, "| `%s` | %s | %s |\n", config_entries[i].name,
                config_entries[i].def ? config_entries[i].def : "(required)",
                config_entries[i].help);
}
