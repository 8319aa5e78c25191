/*
 * rng.h -- lunet's random generators (xoshiro256**, seeded through
 * splitmix64).
 *
 * A generator is a small value, ln_rng; the same seed gives the same
 * sequence.  One process-wide generator, ln_rng_global(), is the one that
 * lunet.seed(s) seeds and that scripts draw from (tensor fills, dropout
 * masks, shuffles, default initial weights).  Code that must not disturb
 * it -- the loader building a module whose weights it then replaces --
 * draws from a generator of its own.  Not thread-safe: one generator per
 * thread.
 */
#ifndef LN_RNG_H
#define LN_RNG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ln_rng {
	uint64_t s[4];    /* never all zero once seeded */
	bool seeded;      /* false: seeded with the default seed on first use */
	bool have_spare;  /* Box-Muller makes normals in pairs; */
	double spare;     /* the second one waits here */
} ln_rng;

/* An unseeded generator; its first draw seeds it with the default seed, so
 * that a run that never seeds is still reproducible. */
#define LN_RNG_INIT ((ln_rng){0})

/* The process-wide generator (lunet.seed). */
ln_rng *ln_rng_global(void);

void ln_rng_seed(ln_rng *r, uint64_t seed);
uint64_t ln_rng_next(ln_rng *r);         /* 64 random bits */
double ln_rng_uniform(ln_rng *r);        /* [0,1), 53 bits */
double ln_rng_normal(ln_rng *r);         /* N(0,1) */
uint64_t ln_rng_below(ln_rng *r, uint64_t n);  /* uniform in [0,n), unbiased; n >= 1 */

/* Saves/restores the full state (4 words), for checkpoints. */
void ln_rng_get_state(ln_rng *r, uint64_t state[4]);
void ln_rng_set_state(ln_rng *r, const uint64_t state[4]);

#endif
