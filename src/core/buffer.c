/*
 * buffer — per-thread buffer free list (see buffer.h).
 */
#include "core/buffer.h"

#include <stdlib.h>
#include <string.h>

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
        free(b);
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
        b = malloc(sizeof(*b));
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
        free(b);
        return;
    }
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
