#include "revset.h"

#include <stdlib.h>
#include <string.h>

#define MIN_SLOTS 64 /* a power of two */

struct slot {
    diary_uuid_t key;
    int64_t value, expires;
    bool used;
};

struct revset {
    struct slot *slots;
    size_t nslots; /* a power of two */
    size_t count;
};

/* UUIDv7 keys start with a timestamp, so every byte is mixed in (splitmix64's finaliser). */
static size_t slot_of(const revset_t *s, const diary_uuid_t *k)
{
    uint64_t a, b, h;

    memcpy(&a, k->b, 8);
    memcpy(&b, k->b + 8, 8);
    h = a ^ (b * 0x9e3779b97f4a7c15ULL);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (size_t)h & (s->nslots - 1);
}

revset_t *revset_new(void)
{
    revset_t *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->slots = calloc(MIN_SLOTS, sizeof(*s->slots));
    if (!s->slots) {
        free(s);
        return NULL;
    }
    s->nslots = MIN_SLOTS;
    return s;
}

void revset_destroy(revset_t *s)
{
    if (!s)
        return;
    free(s->slots);
    free(s);
}

static struct slot *find(const revset_t *s, const diary_uuid_t *key)
{
    for (size_t i = slot_of(s, key);; i = (i + 1) & (s->nslots - 1)) {
        struct slot *sl = &s->slots[i];
        if (!sl->used || memcmp(sl->key.b, key->b, 16) == 0)
            return sl;
    }
}

static int grow(revset_t *s)
{
    struct slot *old = s->slots;
    size_t n = s->nslots;

    s->slots = calloc(n * 2, sizeof(*s->slots));
    if (!s->slots) {
        s->slots = old;
        return -1;
    }
    s->nslots = n * 2;
    for (size_t i = 0; i < n; i++)
        if (old[i].used)
            *find(s, &old[i].key) = old[i];
    free(old);
    return 0;
}

int revset_put(revset_t *s, const diary_uuid_t *key, int64_t value, int64_t expires)
{
    struct slot *sl;

    /* At most 3/4 full, so that a probe always ends at a free slot. */
    if ((s->count + 1) * 4 > s->nslots * 3 && grow(s) != 0)
        return -1;
    sl = find(s, key);
    if (sl->used) {
        if (value > sl->value)
            sl->value = value;
        if (expires > sl->expires)
            sl->expires = expires;
        return 0;
    }
    sl->used = true;
    sl->key = *key;
    sl->value = value;
    sl->expires = expires;
    s->count++;
    return 0;
}

bool revset_get(const revset_t *s, const diary_uuid_t *key, int64_t *value)
{
    const struct slot *sl = find(s, key);

    if (!sl->used)
        return false;
    *value = sl->value;
    return true;
}

/* Empties slot i and moves later members of its probe run back, so that every remaining key
 * is still reachable from its home slot without tombstones. */
static void remove_at(revset_t *s, size_t i)
{
    size_t mask = s->nslots - 1, j = i;

    s->slots[i].used = false;
    for (;;) {
        size_t home;

        j = (j + 1) & mask;
        if (!s->slots[j].used)
            break;
        home = slot_of(s, &s->slots[j].key);
        /* Move j into the hole at i when its home is not cyclically within (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->slots[i] = s->slots[j];
            s->slots[j].used = false;
            i = j;
        }
    }
    s->count--;
}

size_t revset_prune(revset_t *s, int64_t now)
{
    size_t removed = 0;

    for (size_t i = 0; i < s->nslots;) {
        if (s->slots[i].used && s->slots[i].expires <= now) {
            /* The backward shift may pull an unvisited entry into i: look at i again. */
            remove_at(s, i);
            removed++;
            continue;
        }
        i++;
    }
    return removed;
}

size_t revset_count(const revset_t *s)
{
    return s->count;
}
