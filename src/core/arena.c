/*
 * arena.c -- a bump allocator for per-step scratch.
 *
 *     base                                   base+capacity
 *     [ piece | piece | piece |    free       ]
 *                             ^ used
 *
 * Pieces are rounded up to LN_ALIGN bytes, so each starts 64-byte aligned
 * (base comes from ln_malloc, which aligns to 64).
 */
#include <stdint.h>

#include "alloc.h"
#include "arena.h"

/* n rounded up to a multiple of LN_ALIGN (at least one unit, so that
 * every piece is distinct); SIZE_MAX when that overflows. */
static size_t round_up(size_t n)
{
	if (n == 0)
		n = 1;
	if (n > SIZE_MAX - (LN_ALIGN - 1))
		return SIZE_MAX;
	return (n + LN_ALIGN - 1) & ~(size_t)(LN_ALIGN - 1);
}

/*
 * Grows the block to max(bytes, high_water) when it is smaller; a new block
 * replaces the old, so every piece handed out before is invalidated and
 * `used` restarts at 0.  high_water restarts at 0 after a successful call.
 * Errors: LN_ENOMEM (the arena is left as it was).
 */
ln_status ln_arena_reserve(ln_arena *a, size_t bytes, ln_error *err)
{
	size_t want = bytes > a->high_water ? bytes : a->high_water;
	if (want > a->capacity) {
		size_t cap = round_up(want);
		unsigned char *p = cap == SIZE_MAX ? NULL : ln_malloc(cap);
		if (!p)
			return ln_fail(err, LN_ENOMEM, "out of memory reserving %zu bytes of scratch",
			               want);
		ln_free(a->base);
		a->base = p;
		a->capacity = cap;
		a->used = 0;
	}
	a->high_water = 0;
	return LN_OK;
}

/*
 * A piece of n bytes from the block, or NULL when it does not fit.  Never
 * calls the system allocator.  A request that does not fit is still
 * counted in `used` (which then exceeds capacity, so every later request
 * of the step fails too): high_water thus ends up holding what the whole
 * step asked for, and one ln_arena_reserve makes the next step fit.
 */
void *ln_arena_alloc(ln_arena *a, size_t n)
{
	size_t r = round_up(n);
	size_t start = a->used;
	size_t end = r > SIZE_MAX - start ? SIZE_MAX : start + r;
	a->used = end;
	if (end > a->high_water)
		a->high_water = end;
	if (end > a->capacity)
		return NULL;
	return a->base + start;
}

/* Makes every piece free again; the block is kept. */
void ln_arena_reset(ln_arena *a)
{
	a->used = 0;
}

/* Releases the block and leaves the arena as LN_ARENA_INIT. */
void ln_arena_free(ln_arena *a)
{
	ln_free(a->base);
	*a = LN_ARENA_INIT;
}
