#include "dbstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_MAGIC      "DVBSTATE"
#define STATE_END_MAGIC  "DVBSTEND"
#define STATE_VERSION    1u
#define STATE_SUBDIR     "topics"
#define STATE_SUFFIX     ".state"
#define MAX_FIELD_LEN    (256u * 1024u * 1024u)
#define MAX_HEADER_COUNT 100000u
#define FNV_OFFSET       0xcbf29ce484222325ULL
#define FNV_PRIME        0x100000001b3ULL
#define IO_BUFFER_SIZE   (1u << 20)

struct dbstore_writer {
    FILE *f;
    char *tmp_path;
    char *final_path;
    char *dir_path;
    uint64_t hash;
    int32_t partition_count;
    int32_t partitions_written;
    int32_t current; /* -1 before the first partition */
    int64_t low, high, last_offset;
    uint64_t messages;
    int failed; /* sticky: set on the first write error or misuse */
    char why[256];
};

enum reader_state { IN_FILE, IN_PARTITION, AT_END };

struct dbstore_reader {
    FILE *f;
    char *path;
    char topic[256];
    int32_t partition_count;
    int32_t replication_factor;
    uint64_t hash;
    long data_start;
    uint64_t hash_at_data_start;
    enum reader_state state;
    int32_t partitions_seen;
    int32_t current;
    int64_t low, high, last_offset;
    uint64_t messages;
    /* Message storage reused from one message to the next. */
    unsigned char *data;
    size_t data_cap;
    struct dbstore_header *headers;
    size_t *header_offs; /* two per header: name and value offsets in data */
    size_t headers_cap;
    char error[512];
};

static void fnv_update(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        *h ^= b[i];
        *h *= FNV_PRIME;
    }
}

static char *join_path(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
    char *p = malloc(n);

    if (p)
        snprintf(p, n, "%s/%s%s", a, b, c);
    return p;
}

/* Writer. */

static void w_fail(dbstore_writer_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void w_fail(dbstore_writer_t *w, const char *fmt, ...)
{
    va_list ap;

    if (w->failed)
        return;
    w->failed = 1;
    va_start(ap, fmt);
    vsnprintf(w->why, sizeof(w->why), fmt, ap);
    va_end(ap);
}

static void w_put(dbstore_writer_t *w, const void *p, size_t n)
{
    if (w->failed || n == 0)
        return;
    if (fwrite(p, 1, n, w->f) != n) {
        w_fail(w, "%s: write: %s", w->tmp_path, strerror(errno));
        return;
    }
    fnv_update(&w->hash, p, n);
}

static void w_u8(dbstore_writer_t *w, uint8_t v)
{
    w_put(w, &v, 1);
}

static void w_u16(dbstore_writer_t *w, uint16_t v)
{
    unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};

    w_put(w, b, sizeof(b));
}

static void w_u32(dbstore_writer_t *w, uint32_t v)
{
    unsigned char b[4];

    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (24 - 8 * i));
    w_put(w, b, sizeof(b));
}

static void w_u64(dbstore_writer_t *w, uint64_t v)
{
    unsigned char b[8];

    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (56 - 8 * i));
    w_put(w, b, sizeof(b));
}

static void w_bytes(dbstore_writer_t *w, const void *p, size_t n)
{
    if (!p) {
        w_u32(w, UINT32_MAX); /* -1: null */
        return;
    }
    if (n > MAX_FIELD_LEN) {
        w_fail(w, "%s: field of %zu bytes is too large", w->tmp_path, n);
        return;
    }
    w_u32(w, (uint32_t)n);
    w_put(w, p, n);
}

static int mkdir_if_missing(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return -1;
}

int dbstore_writer_open(const char *dir, const char *topic, int32_t partition_count,
                        int32_t replication_factor, dbstore_writer_t **out, char *err,
                        size_t errlen)
{
    dbstore_writer_t *w = NULL;
    size_t topic_len = strlen(topic);
    int fd = -1;

    *out = NULL;
    if (topic_len == 0 || topic_len > 249 || strchr(topic, '/') || partition_count < 1) {
        snprintf(err, errlen, "cannot save topic \"%s\" with %d partitions", topic,
                 (int)partition_count);
        return -1;
    }
    w = calloc(1, sizeof(*w));
    if (!w)
        goto oom;
    w->dir_path = join_path(dir, STATE_SUBDIR, "");
    w->final_path = malloc(strlen(dir) + topic_len + 32);
    w->tmp_path = malloc(strlen(dir) + topic_len + 48);
    if (!w->dir_path || !w->final_path || !w->tmp_path)
        goto oom;
    sprintf(w->final_path, "%s/%s%s", w->dir_path, topic, STATE_SUFFIX);
    sprintf(w->tmp_path, "%s/.%s%s.tmp.%ld", w->dir_path, topic, STATE_SUFFIX, (long)getpid());
    if (mkdir_if_missing(dir) != 0 || mkdir_if_missing(w->dir_path) != 0) {
        snprintf(err, errlen, "%s: mkdir: %s", w->dir_path, strerror(errno));
        goto fail;
    }
    fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || !(w->f = fdopen(fd, "wb"))) {
        snprintf(err, errlen, "%s: %s", w->tmp_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto fail;
    }
    setvbuf(w->f, NULL, _IOFBF, IO_BUFFER_SIZE);
    w->hash = FNV_OFFSET;
    w->partition_count = partition_count;
    w->current = -1;
    w_put(w, STATE_MAGIC, 8);
    w_u32(w, STATE_VERSION);
    w_u16(w, (uint16_t)topic_len);
    w_put(w, topic, topic_len);
    w_u32(w, (uint32_t)partition_count);
    w_u32(w, (uint32_t)replication_factor);
    *out = w;
    return 0;

oom:
    snprintf(err, errlen, "out of memory");
fail:
    dbstore_writer_abort(w);
    return -1;
}

static void w_close_partition(dbstore_writer_t *w)
{
    if (w->current < 0)
        return;
    w_u8(w, 'E');
    w_u64(w, w->messages);
    w->partitions_written++;
}

int dbstore_writer_partition(dbstore_writer_t *w, int32_t partition, int64_t low, int64_t high)
{
    if (partition <= w->current || partition >= w->partition_count || low < 0 || high < low) {
        w_fail(w, "partition %d (low %lld, high %lld) out of order or out of range", (int)partition,
               (long long)low, (long long)high);
        return -1;
    }
    w_close_partition(w);
    w->current = partition;
    w->low = low;
    w->high = high;
    w->last_offset = -1;
    w->messages = 0;
    w_u8(w, 'P');
    w_u32(w, (uint32_t)partition);
    w_u64(w, (uint64_t)low);
    w_u64(w, (uint64_t)high);
    return w->failed ? -1 : 0;
}

int dbstore_writer_message(dbstore_writer_t *w, const struct dbstore_msg *m)
{
    if (w->current < 0 || m->offset <= w->last_offset || m->offset < w->low ||
        m->offset >= w->high) {
        w_fail(w, "partition %d: offset %lld out of order or outside %lld..%lld", (int)w->current,
               (long long)m->offset, (long long)w->low, (long long)w->high);
        return -1;
    }
    if (m->header_count > MAX_HEADER_COUNT) {
        w_fail(w, "partition %d offset %lld: too many headers", (int)w->current,
               (long long)m->offset);
        return -1;
    }
    w_u8(w, 'M');
    w_u64(w, (uint64_t)m->offset);
    w_u64(w, (uint64_t)m->timestamp);
    w_u32(w, (uint32_t)m->timestamp_type);
    w_bytes(w, m->key, m->key_len);
    w_bytes(w, m->value, m->value_len);
    w_u32(w, (uint32_t)m->header_count);
    for (size_t i = 0; i < m->header_count; i++) {
        const struct dbstore_header *h = &m->headers[i];
        if (h->name_len > UINT16_MAX) {
            w_fail(w, "header name of %zu bytes is too long", h->name_len);
            return -1;
        }
        w_u16(w, (uint16_t)h->name_len);
        w_put(w, h->name, h->name_len);
        w_bytes(w, h->value, h->value_len);
    }
    w->last_offset = m->offset;
    w->messages++;
    return w->failed ? -1 : 0;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

int dbstore_writer_commit(dbstore_writer_t *w, char *err, size_t errlen)
{
    uint64_t sum;

    w_close_partition(w);
    if (!w->failed && w->partitions_written != w->partition_count)
        w_fail(w, "%d of %d partitions written", (int)w->partitions_written,
               (int)w->partition_count);
    sum = w->hash;
    w_u8(w, 'Z');
    w_u64(w, sum);
    w_put(w, STATE_END_MAGIC, 8);
    if (!w->failed && fflush(w->f) != 0)
        w_fail(w, "%s: flush: %s", w->tmp_path, strerror(errno));
    if (!w->failed && fsync(fileno(w->f)) != 0)
        w_fail(w, "%s: fsync: %s", w->tmp_path, strerror(errno));
    if (fclose(w->f) != 0)
        w_fail(w, "%s: close: %s", w->tmp_path, strerror(errno));
    w->f = NULL;
    if (!w->failed && rename(w->tmp_path, w->final_path) != 0)
        w_fail(w, "rename %s: %s", w->final_path, strerror(errno));
    if (!w->failed && fsync_dir(w->dir_path) != 0)
        w_fail(w, "%s: fsync: %s", w->dir_path, strerror(errno));
    if (w->failed) {
        snprintf(err, errlen, "%s", w->why);
        dbstore_writer_abort(w);
        return -1;
    }
    free(w->tmp_path);
    free(w->final_path);
    free(w->dir_path);
    free(w);
    return 0;
}

void dbstore_writer_abort(dbstore_writer_t *w)
{
    if (!w)
        return;
    if (w->f)
        fclose(w->f);
    if (w->tmp_path)
        unlink(w->tmp_path);
    free(w->tmp_path);
    free(w->final_path);
    free(w->dir_path);
    free(w);
}

/* Listing. */

static int has_state_suffix(const char *name)
{
    size_t n = strlen(name), s = strlen(STATE_SUFFIX);

    return name[0] != '.' && n > s && strcmp(name + n - s, STATE_SUFFIX) == 0;
}

static int compare_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void dbstore_paths_free(char **paths, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(paths[i]);
    free(paths);
}

int dbstore_list(const char *dir, char ***paths_out, size_t *count_out, char *err, size_t errlen)
{
    char *sub = join_path(dir, STATE_SUBDIR, "");
    DIR *d = NULL;
    struct dirent *de;
    char **paths = NULL;
    size_t count = 0, cap = 0;

    *paths_out = NULL;
    *count_out = 0;
    if (!sub)
        goto oom;
    d = opendir(sub);
    if (!d) {
        if (errno == ENOENT) {
            free(sub);
            return 0;
        }
        snprintf(err, errlen, "%s: %s", sub, strerror(errno));
        goto fail;
    }
    while ((de = readdir(d)) != NULL) {
        if (!has_state_suffix(de->d_name))
            continue;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            char **grown = realloc(paths, ncap * sizeof(*paths));
            if (!grown)
                goto oom;
            paths = grown;
            cap = ncap;
        }
        if (!(paths[count] = join_path(sub, de->d_name, "")))
            goto oom;
        count++;
    }
    closedir(d);
    free(sub);
    if (count > 1)
        qsort(paths, count, sizeof(*paths), compare_paths);
    *paths_out = paths;
    *count_out = count;
    return 0;

oom:
    snprintf(err, errlen, "out of memory");
fail:
    if (d)
        closedir(d);
    free(sub);
    dbstore_paths_free(paths, count);
    return -1;
}

/* Reader. */

static int r_fail(dbstore_reader_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int r_fail(dbstore_reader_t *r, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (r->error[0])
        return -1;
    n = snprintf(r->error, sizeof(r->error), "%s: ", r->path);
    va_start(ap, fmt);
    vsnprintf(r->error + n, sizeof(r->error) - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int r_get(dbstore_reader_t *r, void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (fread(p, 1, n, r->f) != n)
        return r_fail(r, ferror(r->f) ? "read error" : "truncated or damaged file");
    fnv_update(&r->hash, p, n);
    return 0;
}

static int r_u8(dbstore_reader_t *r, uint8_t *v)
{
    return r_get(r, v, 1);
}

static int r_u16(dbstore_reader_t *r, uint16_t *v)
{
    unsigned char b[2];

    if (r_get(r, b, 2) != 0)
        return -1;
    *v = (uint16_t)((b[0] << 8) | b[1]);
    return 0;
}

static int r_u32(dbstore_reader_t *r, uint32_t *v)
{
    unsigned char b[4];

    if (r_get(r, b, 4) != 0)
        return -1;
    *v = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
    return 0;
}

static int r_u64(dbstore_reader_t *r, uint64_t *v)
{
    unsigned char b[8];

    if (r_get(r, b, 8) != 0)
        return -1;
    *v = 0;
    for (int i = 0; i < 8; i++)
        *v = (*v << 8) | b[i];
    return 0;
}

/* Makes room for n more bytes in r->data after used bytes. */
static int r_reserve(dbstore_reader_t *r, size_t used, size_t n)
{
    size_t want = used + n;
    unsigned char *grown;

    if (want <= r->data_cap)
        return 0;
    if (want < r->data_cap * 2)
        want = r->data_cap * 2;
    grown = realloc(r->data, want);
    if (!grown)
        return r_fail(r, "out of memory");
    r->data = grown;
    r->data_cap = want;
    return 0;
}

/* Reads a length-prefixed field into r->data at *used; *off is where it starts, or
 * SIZE_MAX for null. */
static int r_field(dbstore_reader_t *r, size_t *used, size_t *off, size_t *len)
{
    uint32_t n;

    if (r_u32(r, &n) != 0)
        return -1;
    if (n == UINT32_MAX) {
        *off = SIZE_MAX;
        *len = 0;
        return 0;
    }
    if (n > MAX_FIELD_LEN)
        return r_fail(r, "field length %u is implausible", n);
    if (r_reserve(r, *used, n) != 0 || r_get(r, r->data + *used, n) != 0)
        return -1;
    *off = *used;
    *len = n;
    *used += n;
    return 0;
}

int dbstore_reader_open(const char *path, dbstore_reader_t **out, char *err, size_t errlen)
{
    dbstore_reader_t *r = NULL;
    char magic[8];
    uint32_t version, pcount, rf;
    uint16_t name_len;

    *out = NULL;
    r = calloc(1, sizeof(*r));
    if (!r || !(r->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    r->f = fopen(path, "rbe");
    if (!r->f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    setvbuf(r->f, NULL, _IOFBF, IO_BUFFER_SIZE);
    r->hash = FNV_OFFSET;
    if (r_get(r, magic, 8) != 0 || memcmp(magic, STATE_MAGIC, 8) != 0) {
        r_fail(r, "not a devbroker state file");
        goto fail_r;
    }
    if (r_u32(r, &version) != 0)
        goto fail_r;
    if (version != STATE_VERSION) {
        r_fail(r, "state format version %u, this devbroker reads %u", version, STATE_VERSION);
        goto fail_r;
    }
    if (r_u16(r, &name_len) != 0)
        goto fail_r;
    if (name_len == 0 || name_len >= sizeof(r->topic)) {
        r_fail(r, "bad topic name length %u", name_len);
        goto fail_r;
    }
    if (r_get(r, r->topic, name_len) != 0 || r_u32(r, &pcount) != 0 || r_u32(r, &rf) != 0)
        goto fail_r;
    r->topic[name_len] = '\0';
    if (memchr(r->topic, '\0', name_len) || strchr(r->topic, '/')) {
        r_fail(r, "bad topic name");
        goto fail_r;
    }
    if (pcount < 1 || pcount > 100000 || rf > 1000) {
        r_fail(r, "implausible partition count %u or replication factor %u", pcount, rf);
        goto fail_r;
    }
    r->partition_count = (int32_t)pcount;
    r->replication_factor = (int32_t)rf;
    r->data_start = ftell(r->f);
    r->hash_at_data_start = r->hash;
    r->state = IN_FILE;
    r->current = -1;
    *out = r;
    return 0;

fail_r:
    snprintf(err, errlen, "%s", r->error);
fail:
    dbstore_reader_close(r);
    return -1;
}

const char *dbstore_reader_topic(const dbstore_reader_t *r)
{
    return r->topic;
}

int32_t dbstore_reader_partition_count(const dbstore_reader_t *r)
{
    return r->partition_count;
}

int32_t dbstore_reader_replication_factor(const dbstore_reader_t *r)
{
    return r->replication_factor;
}

const char *dbstore_reader_error(const dbstore_reader_t *r)
{
    return r->error[0] ? r->error : "no error";
}

int dbstore_reader_next_message(dbstore_reader_t *r, struct dbstore_msg *m)
{
    uint8_t tag;
    uint64_t u64;
    uint32_t u32, hcount;
    size_t used = 0, key_off, value_off;

    if (r->error[0])
        return -1;
    if (r->state != IN_PARTITION)
        return 0;
    if (r_u8(r, &tag) != 0)
        return -1;
    if (tag == 'E') {
        if (r_u64(r, &u64) != 0)
            return -1;
        if (u64 != r->messages)
            return r_fail(r, "partition %d: %llu messages read, trailer says %llu", (int)r->current,
                          (unsigned long long)r->messages, (unsigned long long)u64);
        r->state = IN_FILE;
        return 0;
    }
    if (tag != 'M')
        return r_fail(r, "partition %d: unexpected record tag 0x%02x", (int)r->current, tag);

    memset(m, 0, sizeof(*m));
    if (r_u64(r, &u64) != 0)
        return -1;
    m->offset = (int64_t)u64;
    if (m->offset <= r->last_offset || m->offset < r->low || m->offset >= r->high)
        return r_fail(r, "partition %d: offset %lld out of order or outside %lld..%lld",
                      (int)r->current, (long long)m->offset, (long long)r->low, (long long)r->high);
    if (r_u64(r, &u64) != 0 || r_u32(r, &u32) != 0)
        return -1;
    m->timestamp = (int64_t)u64;
    m->timestamp_type = (int32_t)u32;
    if (r_field(r, &used, &key_off, &m->key_len) != 0 ||
        r_field(r, &used, &value_off, &m->value_len) != 0 || r_u32(r, &hcount) != 0)
        return -1;
    if (hcount > MAX_HEADER_COUNT)
        return r_fail(r, "partition %d offset %lld: %u headers", (int)r->current,
                      (long long)m->offset, hcount);
    if (hcount > r->headers_cap) {
        struct dbstore_header *grown = realloc(r->headers, hcount * sizeof(*grown));
        size_t *offs;
        if (!grown)
            return r_fail(r, "out of memory");
        r->headers = grown;
        offs = realloc(r->header_offs, 2 * hcount * sizeof(*offs));
        if (!offs)
            return r_fail(r, "out of memory");
        r->header_offs = offs;
        r->headers_cap = hcount;
    }
    /* r->data may move while it grows, so fields are recorded as offsets first and turned
     * into pointers once everything is read. */
    for (uint32_t i = 0; i < hcount; i++) {
        uint16_t nlen;
        if (r_u16(r, &nlen) != 0 || r_reserve(r, used, nlen) != 0 ||
            r_get(r, r->data + used, nlen) != 0)
            return -1;
        r->header_offs[2 * i] = used;
        r->headers[i].name_len = nlen;
        used += nlen;
        if (r_field(r, &used, &r->header_offs[2 * i + 1], &r->headers[i].value_len) != 0)
            return -1;
    }
    /* A zero-length field still needs a non-NULL pointer to tell it from null. */
    if (r_reserve(r, used, 1) != 0)
        return -1;
    for (uint32_t i = 0; i < hcount; i++) {
        size_t voff = r->header_offs[2 * i + 1];
        r->headers[i].name = (const char *)r->data + r->header_offs[2 * i];
        r->headers[i].value = voff == SIZE_MAX ? NULL : r->data + voff;
    }
    m->key = key_off == SIZE_MAX ? NULL : r->data + key_off;
    m->value = value_off == SIZE_MAX ? NULL : r->data + value_off;
    m->headers = r->headers;
    m->header_count = hcount;
    r->last_offset = m->offset;
    r->messages++;
    return 1;
}

int dbstore_reader_next_partition(dbstore_reader_t *r, int32_t *partition, int64_t *low,
                                  int64_t *high)
{
    struct dbstore_msg m;
    uint8_t tag;
    uint32_t u32;
    uint64_t lo, hi, sum, expected;
    char magic[8];
    int rc;

    while ((rc = dbstore_reader_next_message(r, &m)) == 1)
        ;
    if (rc < 0)
        return -1;
    if (r->state == AT_END)
        return 0;
    expected = r->hash;
    if (r_u8(r, &tag) != 0)
        return -1;
    if (tag == 'Z') {
        if (r->partitions_seen != r->partition_count)
            return r_fail(r, "%d of %d partitions present", (int)r->partitions_seen,
                          (int)r->partition_count);
        if (r_u64(r, &sum) != 0 || r_get(r, magic, 8) != 0)
            return -1;
        if (sum != expected)
            return r_fail(r, "checksum mismatch: the file is damaged");
        if (memcmp(magic, STATE_END_MAGIC, 8) != 0)
            return r_fail(r, "bad end marker");
        if (fgetc(r->f) != EOF)
            return r_fail(r, "data after the end marker");
        r->state = AT_END;
        return 0;
    }
    if (tag != 'P')
        return r_fail(r, "unexpected record tag 0x%02x", tag);
    if (r_u32(r, &u32) != 0 || r_u64(r, &lo) != 0 || r_u64(r, &hi) != 0)
        return -1;
    if ((int32_t)u32 <= r->current || (int32_t)u32 >= r->partition_count || (int64_t)lo < 0 ||
        (int64_t)hi < (int64_t)lo)
        return r_fail(r, "bad partition record %d (%lld..%lld)", (int)(int32_t)u32,
                      (long long)(int64_t)lo, (long long)(int64_t)hi);
    r->current = (int32_t)u32;
    r->low = (int64_t)lo;
    r->high = (int64_t)hi;
    r->last_offset = -1;
    r->messages = 0;
    r->partitions_seen++;
    r->state = IN_PARTITION;
    *partition = r->current;
    *low = r->low;
    *high = r->high;
    return 1;
}

int dbstore_reader_verify(dbstore_reader_t *r, uint64_t *messages)
{
    struct dbstore_msg m;
    int32_t p;
    int64_t lo, hi;
    uint64_t total = 0;
    int rc;

    while ((rc = dbstore_reader_next_partition(r, &p, &lo, &hi)) == 1) {
        while ((rc = dbstore_reader_next_message(r, &m)) == 1)
            total++;
        if (rc < 0)
            return -1;
    }
    if (rc < 0)
        return -1;
    if (fseek(r->f, r->data_start, SEEK_SET) != 0)
        return r_fail(r, "seek: %s", strerror(errno));
    r->hash = r->hash_at_data_start;
    r->state = IN_FILE;
    r->partitions_seen = 0;
    r->current = -1;
    if (messages)
        *messages = total;
    return 0;
}

void dbstore_reader_close(dbstore_reader_t *r)
{
    if (!r)
        return;
    if (r->f)
        fclose(r->f);
    free(r->path);
    free(r->data);
    free(r->headers);
    free(r->header_offs);
    free(r);
}
