/*
 * slab — fixed-size objects carved many to a page, per thread.
 *
 * Connection records and exchanges are small and come and go with traffic;
 * a page each (what mmap gives) would cost an idle connection 4 KiB. A slab
 * maps chunks of SLAB_CHUNK_BYTES and hands out objects of one size from
 * them through a LIFO free list. Memory of freed objects stays with the slab
 * (its high-water mark) and is reused by the next allocation; chunks are
 * unmapped by slab_fini. One thread owns a slab; nothing here is shared.
 */
#ifndef LIMPET_CORE_SLAB_H
#define LIMPET_CORE_SLAB_H

#include <stddef.h>

#define SLAB_CHUNK_BYTES (64u * 1024u)

struct slab_chunk;

struct slab {
    size_t obj_size;              /* bytes per object, rounded up to 16 */
    void *free;                   /* free objects (the first word links them) */
    struct slab_chunk *chunks;    /* every chunk mapped, for slab_fini */
    size_t in_use;                /* objects handed out */
    size_t capacity;              /* objects the mapped chunks hold */
};

void slab_init(struct slab *s, size_t obj_size);
void slab_fini(struct slab *s);

/* An object of s->obj_size bytes (contents undefined), or NULL when memory
 * is exhausted. */
void *slab_alloc(struct slab *s);
void slab_free(struct slab *s, void *obj);

#endif
