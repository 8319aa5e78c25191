/*
 * alloc.h -- the one allocator all lunet heap memory goes through.
 *
 * Every block is aligned to 64 bytes (a cache line, and what AVX-512 loads
 * want).  Counters make it possible to prove that a training step allocates
 * nothing, and failure injection makes it possible to test every
 * LN_ENOMEM path.  The counters are process-wide and not thread-safe:
 * lunet allocates only from the thread that drives it.
 */
#ifndef LN_ALLOC_H
#define LN_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#define LN_ALIGN 64

/* Returns a 64-byte aligned block of n bytes (n == 0 gives a valid unique
 * block), or NULL when memory is exhausted or a failure was injected.
 * The caller owns the block and releases it with ln_free. */
void *ln_malloc(size_t n);

/* As ln_malloc, for count*size bytes set to zero; NULL on overflow. */
void *ln_calloc(size_t count, size_t size);

/* Releases a block from ln_malloc/ln_calloc; NULL is ignored. */
void ln_free(void *p);

typedef struct ln_alloc_stats {
	uint64_t allocs;      /* successful ln_malloc/ln_calloc calls */
	uint64_t frees;       /* ln_free calls on non-NULL blocks */
	uint64_t failures;    /* calls that returned NULL (real or injected) */
	uint64_t bytes_live;  /* bytes currently allocated */
	uint64_t bytes_peak;  /* largest bytes_live seen */
} ln_alloc_stats;

void ln_alloc_get_stats(ln_alloc_stats *out);

/* Makes the n-th allocation from now fail (n = 1: the next one) and every
 * later one succeed again.  n <= 0 disables injection. */
void ln_alloc_fail_nth(long n);

/* Upper bound on any single allocation (default 16 GiB): larger requests
 * fail with NULL instead of asking the system, so that a corrupt size
 * field in a file cannot trigger a huge allocation. */
void ln_alloc_set_limit(size_t max_bytes);
size_t ln_alloc_limit(void);

/* Cap on bytes_live, the bytes of all blocks allocated and not yet freed
 * (lunet.memory_limit): an allocation that would take bytes_live over it
 * fails with NULL, as when the system runs out, and every caller reports
 * LN_ENOMEM.  0 (the default) removes the cap.  A cap below what is
 * already live refuses every new allocation until enough is freed. */
void ln_alloc_set_live_limit(uint64_t max_live);
uint64_t ln_alloc_live_limit(void);

#endif
