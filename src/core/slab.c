/*
 * slab — per-thread fixed-size object allocator (see slab.h).
 *
 * A chunk starts with its header (the link to the next chunk); the objects
 * follow, aligned to 16 bytes. A new chunk is mapped only when the free list
 * is empty, and all its objects go on the free list at once.
 */
#include "core/slab.h"

#include <stdint.h>

#include "core/buffer.h"

/* Under AddressSanitizer a free object is poisoned, so a use after free of
 * a connection or exchange is reported like one of a heap block. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SLAB_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define SLAB_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#endif
#endif
#ifndef SLAB_POISON
#define SLAB_POISON(p, n) ((void)(p), (void)(n))
#define SLAB_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct slab_chunk {
    struct slab_chunk *next;      /* next chunk of the same slab */
    size_t bytes;                 /* mapped size */
};

#define SLAB_HEADER ((sizeof(struct slab_chunk) + 15u) & ~(size_t)15u)

void slab_init(struct slab *s, size_t obj_size)
{
    s->obj_size = (obj_size + 15u) & ~(size_t)15u;
    if (s->obj_size < sizeof(void *))
        s->obj_size = 16;
    s->free = NULL;
    s->chunks = NULL;
    s->in_use = s->capacity = 0;
}

void slab_fini(struct slab *s)
{
    while (s->chunks) {
        struct slab_chunk *c = s->chunks;
        SLAB_UNPOISON(c, c->bytes);
        s->chunks = c->next;
        pages_free(c, c->bytes);
    }
    s->free = NULL;
    s->in_use = s->capacity = 0;
}

static int slab_grow(struct slab *s)
{
    size_t bytes = SLAB_CHUNK_BYTES;
    while (bytes < SLAB_HEADER + s->obj_size)
        bytes *= 2;
    struct slab_chunk *c = pages_alloc(bytes);
    if (!c)
        return -1;
    c->bytes = bytes;
    c->next = s->chunks;
    s->chunks = c;
    size_t n = (bytes - SLAB_HEADER) / s->obj_size;
    char *first = (char *)c + SLAB_HEADER;
    for (size_t i = n; i-- > 0;) {
        void **obj = (void **)(first + i * s->obj_size);
        *obj = s->free;
        s->free = obj;
        SLAB_POISON(obj, s->obj_size);
    }
    s->capacity += n;
    return 0;
}

void *slab_alloc(struct slab *s)
{
    if (!s->free && slab_grow(s) < 0)
        return NULL;
    void **obj = s->free;
    SLAB_UNPOISON(obj, s->obj_size);
    s->free = *obj;
    s->in_use++;
    return obj;
}

void slab_free(struct slab *s, void *obj)
{
    if (!obj)
        return;
    *(void **)obj = s->free;
    s->free = obj;
    s->in_use--;
    SLAB_POISON(obj, s->obj_size);
}
