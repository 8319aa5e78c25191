/*
 * conv2d.c -- Conv2d: 2-D cross-correlation over {N,C,H,W}, as in PyTorch.
 *
 *   y[n,o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] * x[n,c, i*s-p+u, j*s-p+v]
 *
 * with zero padding p and stride s.  The fast path lowers the convolution
 * to matrix products (im2col):
 *
 *   col (K, N*P)       K = cin*k*k rows, one column per output pixel of
 *                      every sample (P = ho*wo; sample n owns columns
 *                      n*P .. n*P+P-1)
 *   forward            Y_n (cout,P)  = W (cout,K) col_n (K,P)
 *   backward           gW (cout,K)  += sum_n gY_n (cout,P) col_n^T (P,K)
 *                      gcol_n (K,P)  = W^T (K,cout) gY_n (cout,P)
 *                      gx_n          = col2im(gcol_n)
 *
 * The products are made either per sample (written straight into the
 * output) or once for the whole batch (into a (cout, N*P) buffer that is
 * then transposed into {N,cout,ho,wo}); see ln_conv2d_strategy.  Per
 * sample is the default: on the benchmark CNN (batch 64; 1->16 channels on
 * 28x28 and 16->32 on 14x14, 3x3, padding 1) a forward+backward took
 * 10-40% less time than with the batched product, with one or two gemm
 * threads, mostly in backward: the (K,P) block of dL/dcol stays in cache
 * for col2im, and nothing is transposed.
 *
 * Per sample, each sample's columns are built just before its products,
 * in forward and again in backward, so that they are still in cache (see
 * per_sample below), and the batch is split over the worker threads; the
 * batched product keeps the columns of the last forward for backward.
 * All buffers live in the module and are reused, so after the first step
 * of a given shape (and thread count) nothing is allocated.
 *
 * The direct-loop kernels ln_conv2d_forward_naive/backward_naive are the
 * reference the fast path is tested against.
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../core/gemm.h"
#include "../core/parallel.h"
#include "conv.h"
#include "nn_internal.h"

typedef struct conv2d {
	ln_module base;
	int64_t cin, cout, k, stride, padding;
	ln_conv2d_strategy strategy;
	ln_tensor col;   /* BATCHED (K, N*P): im2col of the last forward's input;
	                    PER_SAMPLE (parts, K, P): one sample's columns per part */
	ln_tensor tmp;   /* (cout, N*P): BATCHED products, before/after transposing */
	ln_tensor gcol;  /* (K, N*P) batched or (parts, K, P) per sample: dL/dcol */
	ln_tensor gwp;   /* PER_SAMPLE (parts, cout, K): each part's sum of gW terms */
	/* How the last successful forward multiplied: backward follows it (a
	 * BATCHED forward leaves its columns in col). */
	ln_conv2d_strategy fwd_strategy;
} conv2d;

/* ==== reference kernels (direct loops, double accumulation) ============== */

/* Index of x[n,c,i,j] in a contiguous (N,C,H,W) array. */
static inline int64_t at4(int64_t c_, int64_t h_, int64_t w_, int64_t n, int64_t c, int64_t i,
                          int64_t j)
{
	return ((n * c_ + c) * h_ + i) * w_ + j;
}

void ln_conv2d_forward_naive(float *y, const float *x, const float *w, const float *b,
                           const ln_conv2d_geom *g)
{
	const int64_t k = g->k, s = g->stride, p = g->padding;
	for (int64_t n = 0; n < g->n; n++)
		for (int64_t o = 0; o < g->cout; o++)
			for (int64_t i = 0; i < g->ho; i++)
				for (int64_t j = 0; j < g->wo; j++) {
					double acc = b ? b[o] : 0.0;
					for (int64_t c = 0; c < g->cin; c++)
						for (int64_t u = 0; u < k; u++)
							for (int64_t v = 0; v < k; v++) {
								int64_t ih = i * s - p + u, iw = j * s - p + v;
								if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w)
									continue;
								acc += (double)w[at4(g->cin, k, k, o, c, u, v)] *
								       x[at4(g->cin, g->h, g->w, n, c, ih, iw)];
							}
					y[at4(g->cout, g->ho, g->wo, n, o, i, j)] = (float)acc;
				}
}

/*
 *   gb[o]         += sum_{n,i,j} gy[n,o,i,j]
 *   gw[o,c,u,v]   += sum_{n,i,j} gy[n,o,i,j] * x[n,c,i*s-p+u,j*s-p+v]
 *   gx[n,c,ih,iw]  = sum over (o,u,v) and the (i,j) with i*s-p+u = ih and
 *                    j*s-p+v = iw of gy[n,o,i,j] * w[o,c,u,v]
 * Each sum is gathered in double in a fixed order.
 */
void ln_conv2d_backward_naive(float *gx, float *gw, float *gb, const float *gy, const float *x,
                            const float *w, const ln_conv2d_geom *g)
{
	const int64_t k = g->k, s = g->stride, p = g->padding;
	if (gb)
		for (int64_t o = 0; o < g->cout; o++) {
			double acc = 0;
			for (int64_t n = 0; n < g->n; n++)
				for (int64_t i = 0; i < g->ho; i++)
					for (int64_t j = 0; j < g->wo; j++)
						acc += gy[at4(g->cout, g->ho, g->wo, n, o, i, j)];
			gb[o] += (float)acc;
		}
	for (int64_t o = 0; o < g->cout; o++)
		for (int64_t c = 0; c < g->cin; c++)
			for (int64_t u = 0; u < k; u++)
				for (int64_t v = 0; v < k; v++) {
					double acc = 0;
					for (int64_t n = 0; n < g->n; n++)
						for (int64_t i = 0; i < g->ho; i++)
							for (int64_t j = 0; j < g->wo; j++) {
								int64_t ih = i * s - p + u, iw = j * s - p + v;
								if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w)
									continue;
								acc += (double)gy[at4(g->cout, g->ho, g->wo, n, o, i, j)] *
								       x[at4(g->cin, g->h, g->w, n, c, ih, iw)];
							}
					gw[at4(g->cin, k, k, o, c, u, v)] += (float)acc;
				}
	for (int64_t n = 0; n < g->n; n++)
		for (int64_t c = 0; c < g->cin; c++)
			for (int64_t ih = 0; ih < g->h; ih++)
				for (int64_t iw = 0; iw < g->w; iw++) {
					double acc = 0;
					for (int64_t o = 0; o < g->cout; o++)
						for (int64_t u = 0; u < k; u++)
							for (int64_t v = 0; v < k; v++) {
								int64_t ti = ih + p - u, tj = iw + p - v;  /* = i*s, j*s */
								if (ti < 0 || tj < 0 || ti % s || tj % s)
									continue;
								int64_t i = ti / s, j = tj / s;
								if (i >= g->ho || j >= g->wo)
									continue;
								acc += (double)gy[at4(g->cout, g->ho, g->wo, n, o, i, j)] *
								       w[at4(g->cin, k, k, o, c, u, v)];
							}
					gx[at4(g->cin, g->h, g->w, n, c, ih, iw)] = (float)acc;
				}
}

/* ==== im2col / col2im ====================================================== */

/* ceil(a/b) for b > 0, and 0 when a <= 0. */
static inline int64_t ceil_div0(int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

/* The output columns j in [*j0, *j1) whose input column j*s-p+v lies inside
 * [0, w); the others read padding. */
static inline void span(int64_t *j0, int64_t *j1, int64_t v, const ln_conv2d_geom *g)
{
	int64_t a = ceil_div0(g->padding - v, g->stride);
	int64_t b = ceil_div0(g->w + g->padding - v, g->stride);
	*j0 = a < g->wo ? a : g->wo;
	*j1 = b < g->wo ? b : g->wo;
	if (*j1 < *j0)
		*j1 = *j0;
}

/*
 * "Same" convolutions (stride 1, ho = h, wo = w, padding < h and w) have
 * a simpler im2col: row (c,u,v) of col is the plane x[c] shifted by
 * du = u-p rows and dv = v-p columns, zero where that reads outside it.
 * Read as flat arrays of h*w values, out[t] = x[t + du*w + dv] for every
 * output row whose input row exists -- one long copy instead of h short
 * ones -- except the -dv first (dv < 0) or dv last (dv > 0) columns of
 * each row, which wrapped around into the neighbouring input row and must
 * be zero.  same_rows gives the output rows [*i0, *i1) whose input row is
 * inside, and the flat range [*s0, *s1) whose source is inside the plane.
 */
static bool is_same_conv(const ln_conv2d_geom *g)
{
	return g->stride == 1 && g->ho == g->h && g->wo == g->w && g->padding < g->h &&
	       g->padding < g->w;
}

static void same_rows(int64_t h, int64_t w, int64_t du, int64_t dv, int64_t *i0, int64_t *i1,
                      int64_t *s0, int64_t *s1)
{
	*i0 = du < 0 ? -du : 0;
	*i1 = du > 0 ? h - du : h;
	const int64_t delta = du * w + dv;
	*s0 = *i0 * w > -delta ? *i0 * w : -delta;
	*s1 = *i1 * w < h * w - delta ? *i1 * w : h * w - delta;
	if (*s1 < *s0)
		*s1 = *s0;
}

/* Zeroes, in rows [i0, i1) of a (.,w) plane, the |dv| columns that a
 * shift by dv wraps around.  Column by column: along a row the compiler
 * would make each run of |dv| (usually 1) floats a memset call. */
static void zero_wrapped(float *out, int64_t w, int64_t i0, int64_t i1, int64_t dv)
{
	int64_t j0 = dv > 0 ? w - dv : 0, j1 = dv < 0 ? -dv : dv > 0 ? w : 0;
	for (int64_t j = j0; j < j1; j++)
		for (int64_t i = i0; i < i1; i++)
			out[i * w + j] = 0;
}

/* One row of im2col for a same convolution (see above): out (h*w). */
static void im2col_row_same(float *restrict out, const float *restrict xc, int64_t h, int64_t w,
                            int64_t du, int64_t dv)
{
	int64_t i0, i1, s0, s1;
	same_rows(h, w, du, dv, &i0, &i1, &s0, &s1);
	/* the ends are at most a row and a bit: loops, not memset calls */
	for (int64_t t = 0; t < s0; t++)
		out[t] = 0;
	memcpy(out + s0, xc + s0 + du * w + dv, (size_t)(s1 - s0) * sizeof(float));
	for (int64_t t = s1; t < h * w; t++)
		out[t] = 0;
	zero_wrapped(out, w, i0, i1, dv);
}

void ln_conv2d_im2col(float *col, int64_t ld, const float *x_n, const ln_conv2d_geom *g)
{
	const int64_t k = g->k, s = g->stride, p = g->padding, wo = g->wo;
	if (is_same_conv(g)) {
		for (int64_t c = 0; c < g->cin; c++)
			for (int64_t u = 0; u < k; u++)
				for (int64_t v = 0; v < k; v++)
					im2col_row_same(col + ((c * k + u) * k + v) * ld, x_n + c * g->h * g->w, g->h,
					                g->w, u - p, v - p);
		return;
	}
	for (int64_t c = 0; c < g->cin; c++)
		for (int64_t u = 0; u < k; u++)
			for (int64_t v = 0; v < k; v++) {
				float *row = col + ((c * k + u) * k + v) * ld;
				const float *xc = x_n + c * g->h * g->w;
				int64_t j0, j1;
				span(&j0, &j1, v, g);
				for (int64_t i = 0; i < g->ho; i++) {
					float *out = row + i * wo;
					int64_t ih = i * s - p + u;
					if (ih < 0 || ih >= g->h) {
						memset(out, 0, (size_t)wo * sizeof(float));
						continue;
					}
					/* out[j] = xc[ih, j*s-p+v] */
					int64_t base = ih * g->w - p + v;
					for (int64_t j = 0; j < j0; j++)
						out[j] = 0;
					if (s == 1)
						memcpy(out + j0, xc + base + j0, (size_t)(j1 - j0) * sizeof(float));
					else
						for (int64_t j = j0; j < j1; j++)
							out[j] = xc[base + j * s];
					for (int64_t j = j1; j < wo; j++)
						out[j] = 0;
				}
			}
}

/* One row of col2im for a same convolution: gc (h*w) += the entries of
 * row that im2col_row_same copied from inside the plane, as one long sum
 * (the wrapped-around entries of row are zeroed first, so that they add
 * nothing). */
static void col2im_row_same(float *restrict gc, float *restrict row, int64_t h, int64_t w,
                            int64_t du, int64_t dv)
{
	int64_t i0, i1, s0, s1;
	same_rows(h, w, du, dv, &i0, &i1, &s0, &s1);
	zero_wrapped(row, w, i0, i1, dv);
	const int64_t delta = du * w + dv;
	for (int64_t t = s0; t < s1; t++)
		gc[t + delta] += row[t];
}

void ln_conv2d_col2im(float *gx_n, float *col, int64_t ld, const ln_conv2d_geom *g)
{
	const int64_t k = g->k, s = g->stride, p = g->padding, wo = g->wo;
	memset(gx_n, 0, (size_t)(g->cin * g->h * g->w) * sizeof(float));
	if (is_same_conv(g)) {
		for (int64_t c = 0; c < g->cin; c++)
			for (int64_t u = 0; u < k; u++)
				for (int64_t v = 0; v < k; v++)
					col2im_row_same(gx_n + c * g->h * g->w, col + ((c * k + u) * k + v) * ld, g->h,
					                g->w, u - p, v - p);
		return;
	}
	for (int64_t c = 0; c < g->cin; c++)
		for (int64_t u = 0; u < k; u++)
			for (int64_t v = 0; v < k; v++) {
				const float *row = col + ((c * k + u) * k + v) * ld;
				float *gc = gx_n + c * g->h * g->w;
				int64_t j0, j1;
				span(&j0, &j1, v, g);
				for (int64_t i = 0; i < g->ho; i++) {
					int64_t ih = i * s - p + u;
					if (ih < 0 || ih >= g->h)
						continue;
					const float *in = row + i * wo;
					int64_t base = ih * g->w - p + v;
					if (s == 1) {  /* contiguous: vectorises */
						float *restrict dst = gc + base;
						const float *restrict src = in;
						for (int64_t j = j0; j < j1; j++)
							dst[j] += src[j];
					} else {
						for (int64_t j = j0; j < j1; j++)
							gc[base + j * s] += in[j];
					}
				}
			}
}

/* ==== the module ============================================================ */

static bool has_bias(const ln_module *m) { return m->nparams > 1; }

static void geom_of(ln_conv2d_geom *g, const conv2d *c, const ln_tensor *x)
{
	g->n = x->shape[0];
	g->cin = c->cin;
	g->h = x->shape[2];
	g->w = x->shape[3];
	g->cout = c->cout;
	g->k = c->k;
	g->stride = c->stride;
	g->padding = c->padding;
	g->ho = (g->h + 2 * c->padding - c->k) / c->stride + 1;
	g->wo = (g->w + 2 * c->padding - c->k) / c->stride + 1;
}

static int conv2d_describe(const ln_module *m, char *buf, size_t size)
{
	const conv2d *c = (const conv2d *)m;
	return snprintf(buf, size, "Conv2d(%lld -> %lld, %lldx%lld, stride %lld, padding %lld%s)",
	                (long long)c->cin, (long long)c->cout, (long long)c->k, (long long)c->k,
	                (long long)c->stride, (long long)c->padding, has_bias(m) ? "" : ", bias=false");
}

/* Checks x against the layer and fills g.  The sizes handed to the matrix
 * library must fit in an int. */
static ln_status check_input(conv2d *c, const ln_tensor *x, ln_conv2d_geom *g, ln_error *err)
{
	char got[96];
	if (x->ndim != 4 || x->shape[1] != c->cin)
		return ln_fail(err, LN_ESHAPE, "expected input of shape {N,%lld,H,W}, got %s",
		               (long long)c->cin, ln_tensor_shape_str(x, got, sizeof got));
	int64_t hp = x->shape[2] + 2 * c->padding, wp = x->shape[3] + 2 * c->padding;
	if (hp < c->k || wp < c->k)
		return ln_fail(err, LN_ESHAPE,
		               "input of shape %s is smaller than the %lldx%lld kernel "
		               "(%lldx%lld after padding %lld)",
		               ln_tensor_shape_str(x, got, sizeof got), (long long)c->k, (long long)c->k,
		               (long long)hp, (long long)wp, (long long)c->padding);
	geom_of(g, c, x);
	int64_t kk = c->cin * c->k * c->k, np = g->n * g->ho * g->wo;
	if (np > INT32_MAX || kk > INT32_MAX || np > INT64_MAX / kk)
		return ln_fail(err, LN_ERANGE, "input of shape %s is too large",
		               ln_tensor_shape_str(x, got, sizeof got));
	return LN_OK;
}

/* ==== per sample, over worker threads ============================================
 *
 * LN_CONV2D_PER_SAMPLE makes each sample's products on its own columns,
 * built into a (K,P) buffer just before use -- in forward and again in
 * backward -- so that they are still in cache for the product, instead of
 * a (K, N*P) matrix for the whole batch that goes out to memory and back
 * (7 MB for the benchmark CNN's second layer).  The batch is cut into
 * SAMPLE_RUNS fixed runs of samples, each with its own gW sum, added up in
 * run order afterwards; the parts of ln_parallel_run take runs from a
 * shared counter (a thread slowed down by other work takes fewer), each
 * part building columns and dL/dcol in its own buffers.  The result is
 * the same, bit for bit, for any thread count.
 *
 *   forward    y_n (cout,P) = b 1^T + W (cout,K) col_n (K,P)
 *   backward   gwp_run (cout,K) = sum over the run's samples of
 *                                 gy_n (cout,P) col_n^T (P,K)
 *              gcol (K,P) = W^T (K,cout) gy_n (cout,P);  gx_n = col2im(gcol)
 *              gW (+)= sum over runs of gwp_run
 */

/* The batch is cut into this many runs of samples (fewer for smaller
 * batches), whatever the thread count; each run has its own gW sum. */
#define SAMPLE_RUNS 8

typedef struct per_sample_job {
	conv2d *c;
	const ln_conv2d_geom *g;
	const float *x, *gy, *w, *b;
	float *y, *gx, *col, *gcol, *gwp;
	int runs;
	int next;  /* first run not yet taken (atomic) */
} per_sample_job;

static int sample_runs(const ln_conv2d_geom *g)
{
	return g->n < SAMPLE_RUNS ? (int)g->n : SAMPLE_RUNS;
}

/* ln_part_fn: takes runs of samples until none are left, building
 * columns in part p's buffers; run r's gW terms go to its own sum. */
static void per_sample_part(void *ctx, int p, int nparts)
{
	per_sample_job *jb = ctx;
	const ln_conv2d_geom *g = jb->g;
	const int64_t kk = g->cin * g->k * g->k, pp = g->ho * g->wo, xs = g->cin * g->h * g->w;
	float *col = jb->col + p * kk * pp;
	for (;;) {
		const int r = __atomic_fetch_add(&jb->next, 1, __ATOMIC_RELAXED);
		if (r >= jb->runs)
			break;
		const int64_t n0 = g->n * r / jb->runs, n1 = g->n * (r + 1) / jb->runs;
		for (int64_t n = n0; n < n1; n++) {
			ln_conv2d_im2col(col, pp, jb->x + n * xs, g);
			if (!jb->gy) {
				float *yn = jb->y + n * g->cout * pp;
				for (int64_t o = 0; o < g->cout; o++)
					for (int64_t q = 0; q < pp; q++)
						yn[o * pp + q] = jb->b ? jb->b[o] : 0.0f;
				ln_gemm(false, false, g->cout, pp, kk, 1.0f, jb->w, kk, col, pp, 1.0f, yn, pp);
				continue;
			}
			const float *gyn = jb->gy + n * g->cout * pp;
			float *gcol = jb->gcol + p * kk * pp, *gwp = jb->gwp + r * g->cout * kk;
			ln_gemm(false, true, g->cout, kk, pp, 1.0f, gyn, pp, col, pp, n == n0 ? 0.0f : 1.0f,
			        gwp, kk);
			if (!jb->gx)
				continue;  /* no input gradient wanted */
			ln_gemm(true, false, kk, pp, g->cout, 1.0f, jb->w, kk, gyn, pp, 0.0f, gcol, pp);
			ln_conv2d_col2im(jb->gx + n * xs, gcol, pp, g);
		}
	}
}

/* Makes the per-sample scratch (columns, and for backward dL/dcol, for
 * as many parts as there are threads, at most one per run; for backward
 * also a gW sum per run); *parts says how many parts.  Only allocation can
 * fail, and it comes before anything is written. */
static ln_status per_sample_buffers(conv2d *c, const ln_conv2d_geom *g, bool backward, int *parts,
                                    ln_error *err)
{
	const int64_t kk = g->cin * g->k * g->k, pp = g->ho * g->wo;
	const int runs = sample_runs(g);
	int n = ln_parallel_threads();
	if (n > LN_PARALLEL_MAX)
		n = LN_PARALLEL_MAX;
	if (n > runs)
		n = runs;
	*parts = n;
	ln_status st = ln_tensor_ensure(&c->col, 3, (int64_t[]){n, kk, pp}, err);
	if (st == LN_OK && backward)
		st = ln_tensor_ensure(&c->gcol, 3, (int64_t[]){n, kk, pp}, err);
	if (st == LN_OK && backward)
		st = ln_tensor_ensure(&c->gwp, 3, (int64_t[]){runs, g->cout, kk}, err);
	return st;
}

/*
 * Forward (gy == NULL: m->output from x) or backward (m->grad_input and
 * gW from x and gy; gw_zero: gW's old contents are a pending zero, to be
 * overwritten) of the per-sample strategy, split over `parts` parts, with
 * the scratch of per_sample_buffers.  Cannot fail.
 */
static void per_sample_run(conv2d *c, const ln_conv2d_geom *g, const ln_tensor *x,
                           const ln_tensor *gy, int parts, bool gw_zero)
{
	ln_module *m = &c->base;
	const int64_t kk = g->cin * g->k * g->k;
	per_sample_job jb = {
		.c = c, .g = g, .x = ln_tensor_data(x), .w = ln_tensor_data(&m->param[0]),
		.b = has_bias(m) ? ln_tensor_data(&m->param[1]) : NULL, .y = ln_tensor_data(&m->output),
		.col = ln_tensor_data(&c->col), .runs = sample_runs(g), .next = 0,
	};
	if (gy) {
		jb.gy = ln_tensor_data(gy);
		jb.gx = m->want_gx ? ln_tensor_data(&m->grad_input) : NULL;
		jb.gcol = ln_tensor_data(&c->gcol);
		jb.gwp = ln_tensor_data(&c->gwp);
	}
	/* another thread's split holds the pool: all runs here, as one part */
	if (ln_parallel_run(parts, per_sample_part, &jb) == 0)
		per_sample_part(&jb, 0, 1);
	if (gy) {
		/* the runs' sums in run order: the same bits for any thread count */
		float *gw = ln_tensor_data(&m->grad[0]);
		const int64_t nw = g->cout * kk;
		for (int r = 0; r < jb.runs; r++) {
			const float *sum = jb.gwp + r * nw;
			if (r == 0 && gw_zero)
				memcpy(gw, sum, (size_t)nw * sizeof(float));
			else
				for (int64_t e = 0; e < nw; e++)
					gw[e] += sum[e];
		}
	}
}

static ln_status conv2d_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	conv2d *c = (conv2d *)m;
	ln_conv2d_geom g;
	ln_status st = check_input(c, x, &g, err);
	if (st != LN_OK)
		return st;
	const int64_t kk = g.cin * g.k * g.k, pp = g.ho * g.wo, np = g.n * pp;
	int64_t yshape[4] = {g.n, g.cout, g.ho, g.wo};
	if ((st = ln_tensor_ensure(&m->output, 4, yshape, err)) != LN_OK)
		return st;
	c->fwd_strategy = c->strategy;
	if (c->strategy == LN_CONV2D_PER_SAMPLE) {
		int parts;
		if ((st = per_sample_buffers(c, &g, false, &parts, err)) != LN_OK)
			return st;
		per_sample_run(c, &g, x, NULL, parts, false);
		return LN_OK;
	}
	int64_t cshape[2] = {kk, np};
	if ((st = ln_tensor_ensure(&c->col, 2, cshape, err)) != LN_OK)
		return st;
	const float *xd = ln_tensor_data(x), *w = ln_tensor_data(&m->param[0]),
	            *b = has_bias(m) ? ln_tensor_data(&m->param[1]) : NULL;
	float *y = ln_tensor_data(&m->output), *col = ln_tensor_data(&c->col);

	for (int64_t n = 0; n < g.n; n++)
		ln_conv2d_im2col(col + n * pp, np, xd + n * g.cin * g.h * g.w, &g);

	{
		/* tmp (cout, N*P) = W (cout,K) col (K, N*P); then
		 * y[n,o,q] = tmp[o, n*P+q] + b[o] */
		int64_t tshape[2] = {g.cout, np};
		if ((st = ln_tensor_ensure(&c->tmp, 2, tshape, err)) != LN_OK)
			return st;
		float *t = ln_tensor_data(&c->tmp);
		ln_gemm(false, false, g.cout, np, kk, 1.0f, w, kk, col, np, 0.0f, t, np);
		for (int64_t n = 0; n < g.n; n++)
			for (int64_t o = 0; o < g.cout; o++) {
				float *yo = y + (n * g.cout + o) * pp;
				const float *to = t + o * np + n * pp;
				for (int64_t q = 0; q < pp; q++)
					yo[q] = to[q] + (b ? b[o] : 0.0f);
			}
	}
	return LN_OK;
}

/* Everything backward writes besides the gradients: grad_input (of the
 * input's shape xshape) when want_gx, and the scratch of the forward's
 * strategy. */
static ln_status backward_buffers(conv2d *c, const ln_conv2d_geom *g, const int64_t *xshape,
                                  bool want_gx, int *parts, ln_error *err)
{
	ln_status st;
	if (want_gx && (st = ln_tensor_ensure(&c->base.grad_input, 4, xshape, err)) != LN_OK)
		return st;
	*parts = 1;
	if (c->fwd_strategy == LN_CONV2D_PER_SAMPLE)
		return per_sample_buffers(c, g, true, parts, err);
	const int64_t kk = g->cin * g->k * g->k, np = g->n * g->ho * g->wo;
	if ((st = ln_tensor_ensure(&c->tmp, 2, (int64_t[]){g->cout, np}, err)) != LN_OK)
		return st;
	return ln_tensor_ensure(&c->gcol, 2, (int64_t[]){kk, np}, err);
}

/* module.h: reserve -- backward_buffers for the last forward's input. */
static ln_status conv2d_reserve(ln_module *m, bool need_gx, ln_error *err)
{
	conv2d *c = (conv2d *)m;
	ln_tensor shape_only = {.ndim = m->in_ndim};
	memcpy(shape_only.shape, m->in_shape, sizeof shape_only.shape);
	ln_conv2d_geom g;
	geom_of(&g, c, &shape_only);
	int parts;
	return backward_buffers(c, &g, m->in_shape, need_gx, &parts, err);
}

/* x is the last forward's input (which passed check_input) and gy has its
 * output's shape (ln_module_backward). */
static ln_status conv2d_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                 ln_error *err)
{
	conv2d *c = (conv2d *)m;
	ln_conv2d_geom g;
	geom_of(&g, c, x);
	ln_status st;
	const int64_t kk = g.cin * g.k * g.k, pp = g.ho * g.wo, np = g.n * pp;
	/* all scratch first: nothing below fails, so a pending zero taken over
	 * is always written */
	int parts = 1;
	if ((st = backward_buffers(c, &g, x->shape, m->want_gx, &parts, err)) != LN_OK)
		return st;
	/* gradients zeroed since the last backward (ln_tensor_zero) are
	 * written, not added to: no pass to clear them, none to read them */
	const float gw_beta = ln_tensor_take_zero(&m->grad[0]) ? 0.0f : 1.0f;
	const bool gb_zero = has_bias(m) && ln_tensor_take_zero(&m->grad[1]);
	const float *gyd = ln_tensor_data(gy), *w = ln_tensor_data(&m->param[0]);
	float *gw = ln_tensor_data(&m->grad[0]);
	float *gx = m->want_gx ? ln_tensor_data(&m->grad_input) : NULL;
	float *gb = has_bias(m) ? ln_tensor_data(&m->grad[1]) : NULL;

	/* gb[o] += sum_{n,q} gy[n,o,q], in double, in 8 interleaved partial
	 * sums per run of P values (a fixed order that vectorises) */
	for (int64_t o = 0; gb && o < g.cout; o++) {
		double acc = 0;
		for (int64_t n = 0; n < g.n; n++) {
			const float *go = gyd + (n * g.cout + o) * pp;
			double lane[8] = {0};
			int64_t q = 0;
			for (; q + 8 <= pp; q += 8)
				for (int l = 0; l < 8; l++)
					lane[l] += go[q + l];
			for (; q < pp; q++)
				lane[q % 8] += go[q];
			for (int l = 0; l < 8; l++)
				acc += lane[l];
		}
		gb[o] = gb_zero ? (float)acc : gb[o] + (float)acc;
	}

	if (c->fwd_strategy == LN_CONV2D_PER_SAMPLE) {
		per_sample_run(c, &g, x, gy, parts, gw_beta == 0.0f);
		return LN_OK;
	}
	{
		/* tmp (cout, N*P): tmp[o, n*P+q] = gy[n,o,q];
		 * gW += tmp col^T;  gcol (K, N*P) = W^T tmp;  gx_n = col2im(gcol_n) */
		float *t = ln_tensor_data(&c->tmp), *gcol = ln_tensor_data(&c->gcol);
		const float *col = ln_tensor_data(&c->col);
		for (int64_t n = 0; n < g.n; n++)
			for (int64_t o = 0; o < g.cout; o++)
				memcpy(t + o * np + n * pp, gyd + (n * g.cout + o) * pp,
				       (size_t)pp * sizeof(float));
		ln_gemm(false, true, g.cout, kk, np, 1.0f, t, np, col, np, gw_beta, gw, kk);
		if (!gx)
			return LN_OK;  /* no input gradient wanted */
		ln_gemm(true, false, kk, np, g.cout, 1.0f, w, kk, t, np, 0.0f, gcol, np);
		for (int64_t n = 0; n < g.n; n++)
			ln_conv2d_col2im(gx + n * g.cin * g.h * g.w, gcol + n * pp, np, &g);
	}
	return LN_OK;
}

static void conv2d_destroy(ln_module *m)
{
	conv2d *c = (conv2d *)m;
	ln_tensor_release(&c->col);
	ln_tensor_release(&c->tmp);
	ln_tensor_release(&c->gcol);
	ln_tensor_release(&c->gwp);
}

void ln_conv2d_set_strategy(ln_module *m, ln_conv2d_strategy s)
{
	assert(m->cls == &ln_conv2d_class);
	((conv2d *)m)->strategy = s;
}

ln_status ln_conv2d_new(ln_module **out, const ln_module_build *ctx, int64_t cin, int64_t cout,
                        int64_t k, int64_t stride, int64_t padding, bool bias, ln_error *err)
{
	*out = NULL;
	const struct { const char *name; int64_t v, lo; } args[] = {
		{"in_channels", cin, 1}, {"out_channels", cout, 1}, {"kernel size", k, 1},
		{"stride", stride, 1}, {"padding", padding, 0},
	};
	for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
		if (args[i].v < args[i].lo)
			return ln_fail(err, LN_ERANGE, "%s must be >= %lld, got %lld", args[i].name,
			               (long long)args[i].lo, (long long)args[i].v);
		if (args[i].v > INT32_MAX)  /* keeps every size computation in range */
			return ln_fail(err, LN_ERANGE, "%s must be <= %d, got %lld", args[i].name,
			               INT32_MAX, (long long)args[i].v);
	}
	ln_module *m;
	ln_status st = ln_module_alloc(&m, &ln_conv2d_class, err);
	if (st != LN_OK)
		return st;
	conv2d *c = (conv2d *)m;
	c->cin = cin;
	c->cout = cout;
	c->k = k;
	c->stride = stride;
	c->padding = padding;
	c->strategy = LN_CONV2D_PER_SAMPLE;
	m->nconfig = 6;
	m->config[0] = (double)cin;
	m->config[1] = (double)cout;
	m->config[2] = (double)k;
	m->config[3] = (double)stride;
	m->config[4] = (double)padding;
	m->config[5] = bias ? 1 : 0;
	st = ln_module_add_param(m, ctx, "weight", LN_PARAM_HE, 4, (int64_t[]){cout, cin, k, k}, err);
	if (st == LN_OK && bias)
		st = ln_module_add_param(m, ctx, "bias", LN_PARAM_ZEROS, 1, (int64_t[]){cout}, err);
	if (st != LN_OK) {
		ln_module_release(m);
		return st;
	}
	*out = m;
	return LN_OK;
}

static ln_status conv2d_create(ln_module **out, const ln_module_class *cls,
                               const ln_module_build *ctx, const double *config, ln_error *err)
{
	int64_t v[6];
	*out = NULL;
	for (int i = 0; i < 6; i++) {
		ln_status st = ln_config_int(&v[i], config[i], cls->config_names[i], i >= 4 ? 0 : 1,
		                             i == 5 ? 1 : INT32_MAX, err);
		if (st != LN_OK)
			return st;
	}
	return ln_conv2d_new(out, ctx, v[0], v[1], v[2], v[3], v[4], v[5] != 0, err);
}

const ln_module_class ln_conv2d_class = {
	.name = "Conv2d",
	.size = sizeof(conv2d),
	.forward = conv2d_forward,
	.backward = conv2d_backward,
	.reserve = conv2d_reserve,
	.destroy = conv2d_destroy,
	.param_names = {"weight", "bias", NULL},
	.config_names = {"cin", "cout", "k", "stride", "padding", "bias", NULL},
	/* files written before Conv2d could drop its bias have no "bias" */
	.config_defaults = {[5] = 1},
	.config_optional = 1,
	.create = conv2d_create,
	.describe = conv2d_describe,
};
