/*
 * buffer — the per-thread buffer cache (see buffer.h).
 *
 * Buffers are mapped pages of their own rather than heap blocks, so a trim
 * returns their memory to the system at once instead of leaving the heap
 * grown.
 */
#include "core/buffer.h"

#include <string.h>
#include <sys/mman.h>

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

void buf_pool_init(struct buf_pool *pool)
{
    memset(pool, 0, sizeof(*pool));
}

void buf_pool_fini(struct buf_pool *pool)
{
    while (pool->free) {
        struct buf *b = pool->free;
        pool->free = b->next_free;
        pages_free(b, sizeof(*b));
    }
    pool->num_free = pool->low_water = 0;
}

struct buf *buf_get(struct buf_pool *pool)
{
    struct buf *b = pool->free;
    if (b) {
        pool->free = b->next_free;
        pool->num_free--;
        if (pool->num_free < pool->low_water)
            pool->low_water = pool->num_free;
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
    b->next_free = pool->free;
    pool->free = b;
    pool->num_free++;
}

size_t buf_pool_trim(struct buf_pool *pool, size_t keep)
{
    size_t idle = pool->low_water;
    size_t released = 0;
    while (idle > 0 && pool->num_free > keep) {
        struct buf *b = pool->free;
        pool->free = b->next_free;
        pool->num_free--;
        pages_free(b, sizeof(*b));
        idle--;
        released++;
    }
    pool->low_water = pool->num_free;
    return released;
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
