/*
 * alloc.c -- the 64-byte aligned, counted allocator behind ln_malloc.
 *
 * Each block is preceded by a header of LN_ALIGN bytes holding the
 * requested size, so that ln_free can keep bytes_live exact:
 *
 *     system block:  [ header (64 bytes: size) | user bytes ... ]
 *                                                ^ returned pointer
 */
#define _POSIX_C_SOURCE 200112L  /* posix_memalign */

#include <stdlib.h>
#include <string.h>

#include "alloc.h"

typedef struct block_header {
	size_t size;  /* bytes requested by the caller */
} block_header;
_Static_assert(sizeof(block_header) <= LN_ALIGN, "header fits in one alignment unit");

static ln_alloc_stats stats;
static long fail_countdown;                    /* > 0: fail when it reaches 0 */
static size_t size_limit = (size_t)16 << 30;   /* 16 GiB */
static uint64_t live_limit;                    /* 0: none */

/* True when this call is the one chosen by ln_alloc_fail_nth. */
static int injected_failure(void)
{
	if (fail_countdown <= 0)
		return 0;
	return --fail_countdown == 0;
}

/* The common path of ln_malloc and ln_calloc; zero selects zeroing. */
static void *alloc_block(size_t n, int zero)
{
	if (injected_failure() || n > size_limit || n > SIZE_MAX - 2 * LN_ALIGN ||
	    (live_limit && n > live_limit - (stats.bytes_live < live_limit ? stats.bytes_live
	                                                                    : live_limit))) {
		stats.failures++;
		return NULL;
	}
	/* at least one user byte, so that every block is distinct and in bounds */
	size_t total = LN_ALIGN + (n ? n : 1);
	void *raw = NULL;
	if (posix_memalign(&raw, LN_ALIGN, total) != 0) {
		stats.failures++;
		return NULL;
	}
	if (zero)
		memset((unsigned char *)raw + LN_ALIGN, 0, n);
	((block_header *)raw)->size = n;
	stats.allocs++;
	stats.bytes_live += n;
	if (stats.bytes_live > stats.bytes_peak)
		stats.bytes_peak = stats.bytes_live;
	return (unsigned char *)raw + LN_ALIGN;
}

void *ln_malloc(size_t n)
{
	return alloc_block(n, 0);
}

void *ln_calloc(size_t count, size_t size)
{
	if (size != 0 && count > SIZE_MAX / size) {
		/* still counts as one allocation call for ln_alloc_fail_nth */
		injected_failure();
		stats.failures++;
		return NULL;
	}
	return alloc_block(count * size, 1);
}

void ln_free(void *p)
{
	if (!p)
		return;
	unsigned char *raw = (unsigned char *)p - LN_ALIGN;
	stats.bytes_live -= ((block_header *)raw)->size;
	stats.frees++;
	free(raw);
}

void ln_alloc_get_stats(ln_alloc_stats *out)
{
	*out = stats;
}

void ln_alloc_fail_nth(long n)
{
	fail_countdown = n > 0 ? n : 0;
}

void ln_alloc_set_limit(size_t max_bytes)
{
	size_limit = max_bytes;
}

size_t ln_alloc_limit(void)
{
	return size_limit;
}

void ln_alloc_set_live_limit(uint64_t max_live)
{
	live_limit = max_live;
}

uint64_t ln_alloc_live_limit(void)
{
	return live_limit;
}
