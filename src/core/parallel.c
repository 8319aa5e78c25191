/*
 * parallel.c -- the worker pool behind ln_parallel_run (parallel.h).
 *
 * Workers are plain pthreads, started when a split first asks for more
 * parts than there are (never stopped: between splits they spin a little,
 * unless OMP_WAIT_POLICY=PASSIVE, then sleep on a condition variable; see
 * SPIN_NS).  A
 * split publishes its job under `mu`, bumps `generation` and wakes every
 * worker; worker w runs part w if w < n and reports back through
 * `pending`.  `busy` is held by the thread that owns
 * the pool for the whole split, so that one split runs at a time.
 */
#define _GNU_SOURCE  /* pthread_mutex_trylock and friends under -std=c11 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>

#include <cblas.h>

#include "parallel.h"

static struct {
	pthread_mutex_t busy;   /* held by the thread running a split */
	pthread_mutex_t mu;     /* guards the fields below */
	pthread_cond_t wake, done;
	int want;               /* thread count asked for; 0 until first asked */
	int started;            /* worker threads running (never shrinks) */
	ln_part_fn fn;          /* the current split */
	void *ctx;
	int nparts;
	unsigned long generation;  /* bumped for each split with workers */
	int pending;            /* worker parts not yet finished */
} pool = {
	.busy = PTHREAD_MUTEX_INITIALIZER,
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.wake = PTHREAD_COND_INITIALIZER,
	.done = PTHREAD_COND_INITIALIZER,
};

/* The part this thread runs; -1 outside a split. */
static _Thread_local int current_part = -1;

int ln_parallel_part(void)
{
	return current_part;
}

/* How long a thread busy-waits before it sleeps.  Splits come in quick
 * succession in a training step (one per large product, with elementwise
 * layers between them), and every sleep between them costs a wake-up:
 * 10-20 us for a bare round trip on this project's virtual machines, more
 * inside a training step.  There are two waits:
 *
 *   idle  a worker waiting for the next split.  OMP_WAIT_POLICY=PASSIVE
 *         in the environment, the usual request of a machine shared with
 *         other work, turns this spin off, as it does for OpenMP programs.
 *   join  the caller of a split waiting for the other parts of its own
 *         split, which are running: the wait lasts as long as the parts'
 *         imbalance (or a late worker's wake-up), and sleeping through it
 *         would add a wake-up to every split.  Whatever the policy.
 *
 * Each is bounded by SPIN_NS.  Measured on mlp256 (784-256-128-10, batch
 * 256, 1000 steps, best of 3, quiet machine): 1 thread 3.67 s; 2 threads
 * with no spin at all 3.04 s, join spin only (PASSIVE) 2.43 s, both 2.18 s
 * (1000 us instead of 200 us: 2.11 s, within the noise). */
#define SPIN_NS 200000.0

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static pthread_once_t policy_once = PTHREAD_ONCE_INIT;
static bool idle_spin;

static void read_policy(void)
{
	const char *p = getenv("OMP_WAIT_POLICY");
	idle_spin = !(p && strcasecmp(p, "passive") == 0);
}

/* Busy-wait up to SPIN_NS: the first until *v differs from old, the
 * second until *v is 0; each returns whether it saw that.  The clock is
 * read every 64 pauses (a pause is about 30 ns on Zen 3, 10-140 cycles
 * elsewhere). */
static bool spin_while_equal(const unsigned long *v, unsigned long old)
{
	const double end = now_ns() + SPIN_NS;
	for (int i = 1;; i++) {
		if (__atomic_load_n(v, __ATOMIC_ACQUIRE) != old)
			return true;
		cpu_relax();
		if (i % 64 == 0 && now_ns() > end)
			return false;
	}
}

static bool spin_until_zero(const int *v)
{
	const double end = now_ns() + SPIN_NS;
	for (int i = 1;; i++) {
		if (__atomic_load_n(v, __ATOMIC_ACQUIRE) == 0)
			return true;
		cpu_relax();
		if (i % 64 == 0 && now_ns() > end)
			return false;
	}
}

/* A worker: waits for a split that has a part for it, runs it, reports
 * it done. */
static void *worker(void *arg)
{
	int w = (int)(intptr_t)arg;
	unsigned long seen = 0;
	pthread_mutex_lock(&pool.mu);
	for (;;) {
		if (pool.generation == seen) {
			pthread_mutex_unlock(&pool.mu);
			pthread_once(&policy_once, read_policy);
			if (idle_spin)
				spin_while_equal(&pool.generation, seen);
			pthread_mutex_lock(&pool.mu);
		}
		while (pool.generation == seen)
			pthread_cond_wait(&pool.wake, &pool.mu);
		seen = pool.generation;
		if (w >= pool.nparts)
			continue;
		ln_part_fn fn = pool.fn;
		void *ctx = pool.ctx;
		int n = pool.nparts;
		pthread_mutex_unlock(&pool.mu);
		current_part = w;
		fn(ctx, w, n);
		current_part = -1;
		pthread_mutex_lock(&pool.mu);
		if (__atomic_sub_fetch(&pool.pending, 1, __ATOMIC_RELEASE) == 0)
			pthread_cond_signal(&pool.done);
	}
	return NULL;
}

/* The thread count; OpenBLAS's own until set.  With pool.mu held. */
static int wanted(void)
{
	if (pool.want == 0)
		pool.want = openblas_get_num_threads();
	return pool.want < 1 ? 1 : pool.want;
}

/* Starts workers up to n-1 (with pool.mu held); returns how many parts a
 * split may have. */
static int ensure_workers(int n)
{
	if (n > LN_PARALLEL_MAX)
		n = LN_PARALLEL_MAX;
	while (pool.started < n - 1) {
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		int r = pthread_create(&t, &at, worker, (void *)(intptr_t)(pool.started + 1));
		pthread_attr_destroy(&at);
		if (r != 0)
			break;
		pool.started++;
	}
	return pool.started + 1 < n ? pool.started + 1 : n;
}

int ln_parallel_run(int nparts, ln_part_fn fn, void *ctx)
{
	if (current_part >= 0 || pthread_mutex_trylock(&pool.busy) != 0)
		return 0;
	int n = 1;
	if (nparts > 1) {
		pthread_mutex_lock(&pool.mu);
		int avail = wanted() > 1 ? ensure_workers(wanted()) : 1;
		n = nparts < avail ? nparts : avail;
		if (n > 1) {
			pool.fn = fn;
			pool.ctx = ctx;
			pool.nparts = n;
			pool.pending = n - 1;
			__atomic_store_n(&pool.generation, pool.generation + 1, __ATOMIC_RELEASE);
			pthread_cond_broadcast(&pool.wake);
		}
		pthread_mutex_unlock(&pool.mu);
	}
	current_part = 0;
	fn(ctx, 0, n);
	current_part = -1;
	if (n > 1) {
		spin_until_zero(&pool.pending);
		pthread_mutex_lock(&pool.mu);
		while (pool.pending > 0)
			pthread_cond_wait(&pool.done, &pool.mu);
		pthread_mutex_unlock(&pool.mu);
	}
	pthread_mutex_unlock(&pool.busy);
	return n;
}

void ln_parallel_set_threads(int n)
{
	pthread_mutex_lock(&pool.mu);
	pool.want = n < 1 ? 1 : n;
	pthread_mutex_unlock(&pool.mu);
}

int ln_parallel_threads(void)
{
	pthread_mutex_lock(&pool.mu);
	int n = wanted();
	pthread_mutex_unlock(&pool.mu);
	return n;
}
