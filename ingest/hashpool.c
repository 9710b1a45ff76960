#include "hashpool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct job {
    struct job *next;
    bool verify;
    char *pw;                     /* owned, wiped and freed with the job */
    char hash[PASSWORD_HASH_MAX]; /* verify: the stored hash; hash: the result */
    enum hashpool_status status;
    hashpool_cb cb;
    void *arg;
};

struct jobq {
    struct job *head, *tail;
    size_t len;
};

struct hashpool {
    struct event_base *base;
    struct event *done_ev; /* watches wakefd[0] */
    int wakefd[2];
    pthread_t *threads;
    int nthreads;
    unsigned long long ops;
    size_t mem, max_queue;

    /* Everything below is shared with the threads and guarded by mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct jobq todo, done;
    size_t running;
    bool stop;
};

static void q_push(struct jobq *q, struct job *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->len++;
}

static struct job *q_pop(struct jobq *q)
{
    struct job *j = q->head;

    if (j) {
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        q->len--;
    }
    return j;
}

static void job_free(struct job *j)
{
    if (!j)
        return;
    if (j->pw) {
        sodium_memzero(j->pw, strlen(j->pw));
        free(j->pw);
    }
    sodium_memzero(j->hash, sizeof(j->hash));
    free(j);
}

static void *worker_main(void *arg)
{
    hashpool_t *p = arg;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        struct job *j;

        while (!p->stop && !p->todo.head)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        j = q_pop(&p->todo);
        p->running++;
        pthread_mutex_unlock(&p->mu);

        if (j->verify) {
            j->status = password_verify(j->hash, j->pw) ? HASHPOOL_OK : HASHPOOL_MISMATCH;
        } else {
            j->status =
                password_hash(j->pw, p->ops, p->mem, j->hash) == 0 ? HASHPOOL_OK : HASHPOOL_FAILED;
        }
        sodium_memzero(j->pw, strlen(j->pw));

        pthread_mutex_lock(&p->mu);
        p->running--;
        q_push(&p->done, j);
        /* One byte per empty-to-non-empty transition: the pipe never fills up. */
        if (p->done.len == 1) {
            ssize_t n;
            do
                n = write(p->wakefd[1], "x", 1);
            while (n < 0 && errno == EINTR);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Runs each finished job's callback on the loop thread, outside the lock. */
static void deliver(hashpool_t *p)
{
    struct jobq done;
    struct job *j;

    pthread_mutex_lock(&p->mu);
    done = p->done;
    memset(&p->done, 0, sizeof(p->done));
    pthread_mutex_unlock(&p->mu);
    while ((j = q_pop(&done)) != NULL) {
        j->cb(j->arg, j->status, j->status == HASHPOOL_OK && !j->verify ? j->hash : NULL);
        job_free(j);
    }
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    char buf[64];

    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    deliver(arg);
}

hashpool_t *hashpool_new(struct event_base *base, int threads, unsigned long long ops, size_t mem,
                         size_t max_queue, char *err, size_t errlen)
{
    hashpool_t *p = calloc(1, sizeof(*p));

    if (!p) {
        snprintf(err, errlen, "hash pool: out of memory");
        return NULL;
    }
    p->base = base;
    p->ops = ops;
    p->mem = mem;
    p->max_queue = max_queue;
    p->wakefd[0] = p->wakefd[1] = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pipe2(p->wakefd, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "hash pool: pipe: %s", strerror(errno));
        goto fail;
    }
    p->done_ev = event_new(base, p->wakefd[0], EV_READ | EV_PERSIST, done_cb, p);
    if (!p->done_ev || event_add(p->done_ev, NULL) != 0) {
        snprintf(err, errlen, "hash pool: cannot watch the pipe");
        goto fail;
    }
    p->threads = calloc((size_t)threads, sizeof(*p->threads));
    if (!p->threads) {
        snprintf(err, errlen, "hash pool: out of memory");
        goto fail;
    }
    for (; p->nthreads < threads; p->nthreads++) {
        int rc = pthread_create(&p->threads[p->nthreads], NULL, worker_main, p);
        if (rc != 0) {
            snprintf(err, errlen, "hash pool: pthread_create: %s", strerror(rc));
            goto fail;
        }
    }
    return p;
fail:
    hashpool_destroy(p);
    return NULL;
}

static int submit(hashpool_t *p, bool verify, const char *hash, const char *pw, hashpool_cb cb,
                  void *arg)
{
    struct job *j = calloc(1, sizeof(*j));

    if (!j || !(j->pw = strdup(pw))) {
        free(j);
        return -1;
    }
    j->verify = verify;
    if (verify)
        snprintf(j->hash, sizeof(j->hash), "%s", hash);
    j->cb = cb;
    j->arg = arg;
    pthread_mutex_lock(&p->mu);
    if (p->stop || p->todo.len >= p->max_queue) {
        pthread_mutex_unlock(&p->mu);
        job_free(j);
        return -1;
    }
    q_push(&p->todo, j);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int hashpool_hash(hashpool_t *p, const char *pw, hashpool_cb cb, void *arg)
{
    return submit(p, false, NULL, pw, cb, arg);
}

int hashpool_verify(hashpool_t *p, const char *hash, const char *pw, hashpool_cb cb, void *arg)
{
    return submit(p, true, hash, pw, cb, arg);
}

void hashpool_stats(hashpool_t *p, size_t *queued, size_t *running)
{
    pthread_mutex_lock(&p->mu);
    *queued = p->todo.len;
    *running = p->running;
    pthread_mutex_unlock(&p->mu);
}

void hashpool_destroy(hashpool_t *p)
{
    struct job *j;

    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    /* The threads are gone: what finished is delivered, what never ran is cancelled. */
    deliver(p);
    while ((j = q_pop(&p->todo)) != NULL) {
        j->cb(j->arg, HASHPOOL_SHUTDOWN, NULL);
        job_free(j);
    }
    if (p->done_ev)
        event_free(p->done_ev);
    if (p->wakefd[0] >= 0)
        close(p->wakefd[0]);
    if (p->wakefd[1] >= 0)
        close(p->wakefd[1]);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
