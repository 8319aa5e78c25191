/*
 * arena.h -- scratch memory that lives for one step.
 *
 * A bump allocator over one block from ln_malloc.  ln_arena_alloc hands
 * out 64-byte aligned pieces; ln_arena_reset makes all of them free again
 * at once.  When a request does not fit, the arena records the high-water
 * mark and fails with NULL; ln_arena_reserve (outside the step) grows the
 * block to that mark, so after the first step the arena never allocates.
 */
#ifndef LN_ARENA_H
#define LN_ARENA_H

#include <stddef.h>

#include "error.h"

typedef struct ln_arena {
	unsigned char *base;  /* from ln_malloc, or NULL */
	size_t capacity;
	size_t used;
	size_t high_water;    /* largest `used` requested since the last reserve */
} ln_arena;

#define LN_ARENA_INIT ((ln_arena){0})

/* Ensures capacity >= max(bytes, high_water).  May allocate. */
ln_status ln_arena_reserve(ln_arena *a, size_t bytes, ln_error *err);
/* A 64-byte aligned piece of n bytes, or NULL (no system allocation). */
void *ln_arena_alloc(ln_arena *a, size_t n);
void ln_arena_reset(ln_arena *a);
void ln_arena_free(ln_arena *a);

#endif
