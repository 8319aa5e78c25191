/*
 * parallel.h -- lunet's worker threads: a piece of work split into parts,
 * part 0 run by the calling thread and the others by a small pool of
 * threads started on first use.  The matrix products (gemm.c) and the
 * layers that split their batch (Conv2d) go through here.
 *
 * One split runs at a time in the process: a second thread that asks
 * while one is running gets 0 back and does its work some other way
 * (ln_gemm falls back to OpenBLAS).  The thread count is ln_gemm_threads
 * (gemm.h).  Between splits, idle threads spin briefly (up to 200 us)
 * before they sleep; OMP_WAIT_POLICY=PASSIVE in the environment makes them
 * sleep at once.  The caller of a split waits for its other parts the same
 * way, whatever the policy.
 * Nothing here allocates through ln_malloc.
 */
#ifndef LN_PARALLEL_H
#define LN_PARALLEL_H

#include <stdbool.h>

/* Most parts a split can have (and scratch buffers indexed by part need). */
#define LN_PARALLEL_MAX 8

typedef void (*ln_part_fn)(void *ctx, int part, int nparts);

/* Runs fn(ctx, part, n) for part = 0..n-1 and returns n once all are
 * done, where n = min(nparts, thread count, LN_PARALLEL_MAX) (at least
 * 1).  Part 0 runs on the calling thread; the caller may use per-part
 * scratch indexed by part.  Returns 0, running nothing, when another
 * thread's split holds the pool, and when called from inside a part (a
 * part that needs to split further runs its work itself: ln_gemm does,
 * on the scratch of its part). */
int ln_parallel_run(int nparts, ln_part_fn fn, void *ctx);

/* The part the calling thread is running inside ln_parallel_run, or -1. */
int ln_parallel_part(void);

/* The thread count (see ln_gemm_set_threads). */
void ln_parallel_set_threads(int n);
int ln_parallel_threads(void);

#endif
