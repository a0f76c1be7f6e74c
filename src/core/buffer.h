/*
 * buffer — fixed-size byte buffers, cached per thread.
 *
 * A buffer holds bytes [start, end) of data[]. Connections take one when they
 * have bytes to hold and give it back when it empties, so idle keep-alive
 * connections hold no buffer. The cache belongs to one worker thread and is
 * never touched by another.
 *
 * Nothing is returned to the kernel on the request path: a buffer given back
 * goes on the free list and keeps its pages, so steady traffic reuses the
 * same warm memory. buf_pool_trim(), run by a timer every second or so,
 * unmaps the buffers that stayed unused for a whole period (the low-water
 * mark of the free list since the previous trim), so the cache follows the
 * working set and a burst does not pin memory for good.
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
    struct buf *free;             /* LIFO free list: the most recently used first */
    size_t num_free;              /* buffers on the free list */
    size_t low_water;             /* fewest free buffers seen since the last trim */
    size_t in_use;                /* buffers handed out and not returned */
};

void buf_pool_init(struct buf_pool *pool);
/* Unmaps every free buffer (the pool's owner has returned all of them). */
void buf_pool_fini(struct buf_pool *pool);

/* Returns an empty buffer, or NULL when memory is exhausted. */
struct buf *buf_get(struct buf_pool *pool);
void buf_put(struct buf_pool *pool, struct buf *b);

/* Unmaps the free buffers that were not needed since the previous call,
 * keeping at least `keep`. Returns how many were released. */
size_t buf_pool_trim(struct buf_pool *pool, size_t keep);

static inline size_t buf_len(const struct buf *b) { return b->end - b->start; }
static inline size_t buf_space(const struct buf *b) { return BUF_SIZE - b->end; }

/* Whole pages from the system, given back at once by pages_free. */
void *pages_alloc(size_t size);
void pages_free(void *p, size_t size);

/* Moves the held bytes to the front of data[] and returns how far they moved. */
size_t buf_compact(struct buf *b);

#endif
