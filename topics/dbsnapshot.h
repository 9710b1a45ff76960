/* Saving the mock cluster's topics to the state folder on shutdown and producing them back on
 * start, so every message keeps its partition, offset, key, value, headers and timestamp
 * across devbroker restarts. The file format is dbstore's.
 *
 * Save reads every partition from its low to its high watermark with an in-process consumer
 * (explicit assignment, no group membership, no commits). Restore produces each partition's
 * messages back into the same partition with an idempotent producer and one request in
 * flight, and fills offsets that hold no message (below the saved low watermark, or gaps
 * left by transaction markers) with empty "filler" messages carrying the header
 * devbroker-filler: 1, so that every restored message lands on its old offset. It then
 * checks every delivered offset and every partition's watermarks. */
#ifndef DIARY_DBSNAPSHOT_H
#define DIARY_DBSNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "dbcluster.h"

#define DBSNAPSHOT_FILLER_HEADER "devbroker-filler"

struct dbsnapshot_topic {
    char *name;
    char *path;
    int32_t partitions;
    int32_t replication_factor;
    uint64_t messages;
};

/* What a state folder holds, every file already checked end to end. */
struct dbsnapshot_saved {
    struct dbsnapshot_topic *topics;
    size_t count;
};

/* Lists and verifies the state files of state_dir (none is an empty list). A damaged file,
 * or one whose topic name does not match its file name, fails the whole scan. On success
 * *out is the caller's to free with dbsnapshot_saved_free. */
int dbsnapshot_scan(const char *state_dir, struct dbsnapshot_saved **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The saved topic called name, or NULL. */
const struct dbsnapshot_topic *dbsnapshot_saved_find(const struct dbsnapshot_saved *s,
                                                     const char *name);

void dbsnapshot_saved_free(struct dbsnapshot_saved *s);

/* Produces every saved topic back into c, where each must already exist with the saved
 * partition count. 0 once every offset and watermark matches, else -1 with err. */
int dbsnapshot_restore(dbcluster_t *c, const struct dbsnapshot_saved *s, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Writes every topic of the cluster to state_dir: those created through c, then any other
 * the cluster's metadata lists (topics clients had the mock create). Topics already written
 * stay written if a later one fails. 0, or -1 with err. Faults should be cleared first: the
 * save is a client like any other. */
int dbsnapshot_save(dbcluster_t *c, const char *state_dir, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
