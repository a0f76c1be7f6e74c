/*
 * buffer — fixed-size byte buffers recycled through a per-thread free list.
 *
 * A buffer holds bytes [start, end) of data[]. Connections take one when they
 * have bytes to hold and give it back when it empties, so idle keep-alive
 * connections hold no buffer. The free list belongs to one worker thread and
 * is never touched by another; it keeps at most `max_free` buffers and
 * releases the rest, so a burst does not pin memory forever.
 */
#ifndef LIMPET_CORE_BUFFER_H
#define LIMPET_CORE_BUFFER_H

#include <stddef.h>
#include <stdint.h>

#define BUF_SIZE 65536u

struct buf {
    struct buf *next_free;        /* free-list link */
    uint32_t start;               /* first unconsumed byte */
    uint32_t end;                 /* one past the last byte held */
    char data[BUF_SIZE];
};

struct buf_pool {
    struct buf *free;             /* LIFO free list */
    size_t num_free;
    size_t max_free;
    size_t in_use;                /* buffers handed out and not returned */
};

void buf_pool_init(struct buf_pool *pool, size_t max_free);
void buf_pool_fini(struct buf_pool *pool);

/* Returns an empty buffer, or NULL when memory is exhausted. */
struct buf *buf_get(struct buf_pool *pool);
void buf_put(struct buf_pool *pool, struct buf *b);

static inline size_t buf_len(const struct buf *b) { return b->end - b->start; }
static inline size_t buf_space(const struct buf *b) { return BUF_SIZE - b->end; }

/* Whole pages from the system, given back at once by pages_free: for the
 * per-connection objects that free lists recycle (buffers, connections). */
void *pages_alloc(size_t size);
void pages_free(void *p, size_t size);

/* Moves the held bytes to the front of data[] and returns how far they moved. */
size_t buf_compact(struct buf *b);

#endif
