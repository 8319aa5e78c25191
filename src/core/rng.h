/*
 * rng.h -- the one seeded random source of lunet (xoshiro256**, seeded
 * through splitmix64).  lunet.seed(s) seeds it; the same seed gives the
 * same run.  Process-wide, not thread-safe.
 */
#ifndef LN_RNG_H
#define LN_RNG_H

#include <stdint.h>

void ln_rng_seed(uint64_t seed);
uint64_t ln_rng_next(void);         /* 64 random bits */
double ln_rng_uniform(void);        /* [0,1), 53 bits */
double ln_rng_normal(void);         /* N(0,1) */
uint64_t ln_rng_below(uint64_t n);  /* uniform in [0,n), unbiased; n >= 1 */

/* Saves/restores the full state (4 words), for checkpoints. */
void ln_rng_get_state(uint64_t state[4]);
void ln_rng_set_state(const uint64_t state[4]);

#endif
