/* The devbroker's saved state: one file per topic, <state>/topics/<topic>.state, holding
 * every partition's low and high watermark and its messages with their offsets, keys, values,
 * headers and timestamps. Files are written to a temporary name, fsynced and renamed, so a
 * reader sees either the previous complete file or the new complete file.
 *
 * Layout (all integers big-endian; "bytes" is an i32 length, -1 for null, then the bytes):
 *
 *     file      = "DVBSTATE" u32 version(=1) u16 name_len name
 *                 i32 partition_count i32 replication_factor
 *                 partition* 'Z' u64 fnv1a64 "DVBSTEND"
 *     partition = 'P' i32 partition i64 low_watermark i64 high_watermark
 *                 message* 'E' u64 message_count
 *     message   = 'M' i64 offset i64 timestamp i32 timestamp_type
 *                 bytes key bytes value u32 header_count header*
 *     header    = u16 name_len name bytes value
 *
 * The checksum is FNV-1a 64 over every byte before the 'Z'. Partitions appear in increasing
 * order, each exactly once, and messages in increasing offset order; offsets may have gaps
 * (transaction markers, aborted records), which a restore fills. Pure file I/O: no Kafka in
 * here. */
#ifndef DIARY_DBSTORE_H
#define DIARY_DBSTORE_H

#include <stddef.h>
#include <stdint.h>

struct dbstore_header {
    const char *name;
    size_t name_len;
    const void *value; /* NULL for a null value */
    size_t value_len;
};

struct dbstore_msg {
    int64_t offset;
    int64_t timestamp; /* milliseconds since the epoch */
    int32_t timestamp_type;
    const void *key; /* NULL for a null key */
    size_t key_len;
    const void *value; /* NULL for a null value */
    size_t value_len;
    const struct dbstore_header *headers;
    size_t header_count;
};

typedef struct dbstore_writer dbstore_writer_t;
typedef struct dbstore_reader dbstore_reader_t;

/* Starts <dir>/topics/<topic>.state (creating <dir>/topics) under a temporary name. On
 * success *out is the caller's, to finish with dbstore_writer_commit or _abort. */
int dbstore_writer_open(const char *dir, const char *topic, int32_t partition_count,
                        int32_t replication_factor, dbstore_writer_t **out, char *err,
                        size_t errlen) __attribute__((warn_unused_result));

/* Starts the next partition; closes the previous one. Partitions must come in increasing
 * order and all partition_count of them must be written. */
int dbstore_writer_partition(dbstore_writer_t *w, int32_t partition, int64_t low, int64_t high)
    __attribute__((warn_unused_result));

/* Appends a message to the current partition; the data is copied. */
int dbstore_writer_message(dbstore_writer_t *w, const struct dbstore_msg *m)
    __attribute__((warn_unused_result));

/* Writes the trailer, fsyncs, renames over the previous file and fsyncs the folder. Frees w
 * whatever the outcome; on failure the previous file is left as it was. */
int dbstore_writer_commit(dbstore_writer_t *w, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Drops the temporary file and frees w. NULL is a no-op. */
void dbstore_writer_abort(dbstore_writer_t *w);

/* Lists the state files of <dir>/topics, sorted. *paths (every string and the array) is the
 * caller's to free with dbstore_paths_free. A missing folder is an empty list. */
int dbstore_list(const char *dir, char ***paths, size_t *count, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void dbstore_paths_free(char **paths, size_t count);

/* Opens a state file and reads its header. On success *out is the caller's to close. */
int dbstore_reader_open(const char *path, dbstore_reader_t **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
const char *dbstore_reader_topic(const dbstore_reader_t *r);
int32_t dbstore_reader_partition_count(const dbstore_reader_t *r);
int32_t dbstore_reader_replication_factor(const dbstore_reader_t *r);

/* Moves to the next partition, skipping what is left of the current one. Returns 1 with the
 * partition's id and watermarks, 0 after the last partition once the trailer and checksum
 * are verified, -1 on a damaged file (see dbstore_reader_error). */
int dbstore_reader_next_partition(dbstore_reader_t *r, int32_t *partition, int64_t *low,
                                  int64_t *high) __attribute__((warn_unused_result));

/* Reads the next message of the current partition: 1 with *m filled (its pointers are valid
 * until the next call on r), 0 at the end of the partition, -1 on a damaged file. */
int dbstore_reader_next_message(dbstore_reader_t *r, struct dbstore_msg *m)
    __attribute__((warn_unused_result));

/* Reads the whole file and checks its structure and checksum, then rewinds to the first
 * partition. 0, or -1 (see dbstore_reader_error). Fills the message count when not NULL. */
int dbstore_reader_verify(dbstore_reader_t *r, uint64_t *messages)
    __attribute__((warn_unused_result));

const char *dbstore_reader_error(const dbstore_reader_t *r);

/* Closes the file and frees r. NULL is a no-op. */
void dbstore_reader_close(dbstore_reader_t *r);

#endif
