/*
 * rng.c -- xoshiro256** (Blackman & Vigna, 2018), seeded through
 * splitmix64, with Box-Muller normals.
 *
 * A generator starts from a fixed seed (LN_RNG_DEFAULT_SEED), so a run
 * that never calls ln_rng_seed is still reproducible.
 */
#include <math.h>
#include <stdbool.h>

#include "rng.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define LN_RNG_DEFAULT_SEED 0x5eedULL

static ln_rng global = LN_RNG_INIT;

ln_rng *ln_rng_global(void)
{
	return &global;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* Seeds the four state words from splitmix64(seed), which never gives an
 * all-zero state, and drops any cached normal. */
void ln_rng_seed(ln_rng *r, uint64_t seed)
{
	uint64_t x = seed;
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
	r->seeded = true;
	r->have_spare = false;
}

static inline void ensure_init(ln_rng *r)
{
	if (!r->seeded)
		ln_rng_seed(r, LN_RNG_DEFAULT_SEED);
}

uint64_t ln_rng_next(ln_rng *r)
{
	ensure_init(r);
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* The top 53 bits as a double in [0,1). */
double ln_rng_uniform(ln_rng *r)
{
	return (double)(ln_rng_next(r) >> 11) * 0x1.0p-53;
}

/* Box-Muller: for u1 in (0,1], u2 in [0,1), r = sqrt(-2 ln u1) gives the
 * independent normals r cos(2 pi u2) and r sin(2 pi u2). */
double ln_rng_normal(ln_rng *r)
{
	ensure_init(r);
	if (r->have_spare) {
		r->have_spare = false;
		return r->spare;
	}
	double u1 = 1.0 - ln_rng_uniform(r);  /* (0,1]: log(u1) is finite */
	double u2 = ln_rng_uniform(r);
	double rad = sqrt(-2.0 * log(u1));
	double theta = 2.0 * M_PI * u2;
	r->spare = rad * sin(theta);
	r->have_spare = true;
	return rad * cos(theta);
}

/* Uniform in [0,n) without modulo bias: draws below 2^64 mod n are
 * rejected, so the remaining range is a multiple of n. */
uint64_t ln_rng_below(ln_rng *r, uint64_t n)
{
	if (n <= 1)
		return 0;
	uint64_t threshold = (0 - n) % n;  /* 2^64 mod n */
	for (;;) {
		uint64_t v = ln_rng_next(r);
		if (v >= threshold)
			return v % n;
	}
}

void ln_rng_get_state(ln_rng *r, uint64_t state[4])
{
	ensure_init(r);
	for (int i = 0; i < 4; i++)
		state[i] = r->s[i];
}

/* Restores a saved state.  An all-zero state would stick at zero, so it
 * is replaced by the default seed.  Any cached normal is dropped. */
void ln_rng_set_state(ln_rng *r, const uint64_t state[4])
{
	if ((state[0] | state[1] | state[2] | state[3]) == 0) {
		ln_rng_seed(r, LN_RNG_DEFAULT_SEED);
		return;
	}
	for (int i = 0; i < 4; i++)
		r->s[i] = state[i];
	r->seeded = true;
	r->have_spare = false;
}
