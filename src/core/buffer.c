/*
 * buffer — per-thread buffer free list (see buffer.h).
 *
 * Buffers are mapped pages of their own rather than heap blocks, so one given
 * back beyond the free list's bound returns its memory to the system at once
 * (a burst of connections does not leave the heap grown for good).
 */
#include "core/buffer.h"

#include <string.h>
#include <sys/mman.h>

#define BUF_KEPT_RESIDENT 8      /* free buffers that keep their memory */

void *pages_alloc(size_t size)
{
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return mem == MAP_FAILED ? NULL : mem;
}

void pages_free(void *p, size_t size)
{
    if (p)
        munmap(p, size);
}

static void buf_unmap(struct buf *b)
{
    pages_free(b, sizeof(*b));
}

void buf_pool_init(struct buf_pool *pool, size_t max_free)
{
    pool->free = NULL;
    pool->num_free = 0;
    pool->max_free = max_free;
    pool->in_use = 0;
}

void buf_pool_fini(struct buf_pool *pool)
{
    while (pool->free) {
        struct buf *b = pool->free;
        pool->free = b->next_free;
        buf_unmap(b);
    }
    pool->num_free = 0;
}

struct buf *buf_get(struct buf_pool *pool)
{
    struct buf *b = pool->free;
    if (b) {
        pool->free = b->next_free;
        pool->num_free--;
    } else {
        b = pages_alloc(sizeof(*b));
        if (!b)
            return NULL;
    }
    b->next_free = NULL;
    b->start = b->end = 0;
    pool->in_use++;
    return b;
}

void buf_put(struct buf_pool *pool, struct buf *b)
{
    if (!b)
        return;
    pool->in_use--;
    if (pool->num_free >= pool->max_free) {
        buf_unmap(b);
        return;
    }
    /* Beyond the few buffers steady traffic reuses, kept ones give their
     * pages back (they are mapped again, zeroed, on first touch). */
    if (pool->num_free >= BUF_KEPT_RESIDENT)
        madvise(b, sizeof(*b), MADV_DONTNEED);
    b->next_free = pool->free;
    pool->free = b;
    pool->num_free++;
}

size_t buf_compact(struct buf *b)
{
    size_t moved = b->start;
    if (moved == 0)
        return 0;
    size_t len = b->end - b->start;
    if (len)
        memmove(b->data, b->data + b->start, len);
    b->start = 0;
    b->end = (uint32_t)len;
    return moved;
}
