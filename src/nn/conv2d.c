/*
 * conv2d.c -- Conv2d: 2-D cross-correlation over {N,C,H,W}, as in PyTorch.
 *
 * With cg = cin/groups input and og = cout/groups output channels per
 * group, and output channel o in group g = o/og:
 *
 *   y[n,o,i,j] = b[o] + sum_{c<cg,u,v} w[o,c,u,v] *
 *                x[n, g*cg+c, i*sh - pt + u*dh, j*sw - pl + v*dw]
 *
 * with zero padding (top pt, left pl, bottom pb, right pr), stride s and
 * dilation d.  The fast path lowers each sample to matrix products
 * (im2col): with K = cin*kh*kw rows of columns (Kg = K/groups per group)
 * and P = ho*wo output pixels,
 *
 *   col_n (K,P)        the im2col of sample n (group g: rows g*Kg ..)
 *   forward            Y_n,g (og,P)   = W_g (og,Kg) col_n,g (Kg,P)
 *   backward           gW_g (og,Kg)  += sum_n gY_n,g col_n,g^T
 *                      gcol_n,g (Kg,P) = W_g^T gY_n,g;  gx_n = col2im(gcol_n)
 *
 * Each sample's columns are built just before its products, in forward
 * and again in backward, so that they are still in cache; a 1x1
 * convolution with stride 1 and no padding needs none (its columns are
 * the sample itself).  The layer works sample by sample (module.h): its
 * own forward/backward, or a Sequential's chain of it with the layers
 * around it, cut the batch into runs and split them over the worker
 * threads; gW's terms are summed per run, then the runs in order, so the
 * bits do not depend on the thread count.  gW's sum is made as gW^T =
 * col gY^T when og <= Kg: the product then transposes gY (og x P) to pack
 * it rather than the larger columns (the benchmark CNN's 32x144x196 per
 * sample took 22 us, its transpose 19 us, on one Zen 3 core).
 *
 * All buffers live in the module and are reused, so after the first step
 * of a given shape (and thread count) nothing is allocated.  The
 * direct-loop kernels ln_conv2d_forward_naive/backward_naive are the
 * reference the fast path is tested against.
 */
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

#include "../core/alloc.h"
#include "../core/gemm.h"
#include "conv.h"
#include "nn_internal.h"

typedef struct conv2d {
	ln_module base;
	ln_conv2d_opts o;  /* as built */
	ln_conv2d_geom g;  /* of the last prepare */
	bool pointwise;    /* 1x1, stride 1, no padding: the columns are the sample */
	ln_tensor col;     /* (parts, K, P): each part's columns of one sample */
	ln_tensor gcol;    /* (parts, K, P): each part's dL/dcol of one sample */
	ln_tensor gwp;     /* (runs, cout*Kg): each run's sum of gW terms, group g's at
	                      g*og*Kg, as (og,Kg), or (Kg,og) when gw_t */
	bool gw_t;
	double *gbp;       /* (runs, cout): each run's sum of bias terms, from ln_malloc */
	size_t gbp_cap;    /* doubles */
	bool gw_zero, gb_zero;  /* gW, gb: pending zeros taken, to be overwritten */
} conv2d;

/* ==== geometry ================================================================ */

void ln_conv2d_opts_init(ln_conv2d_opts *o, int64_t cin, int64_t cout, int64_t k)
{
	*o = (ln_conv2d_opts){.cin = cin, .cout = cout, .kh = k, .kw = k, .sh = 1, .sw = 1,
	                      .ph = 0, .pw = 0, .dh = 1, .dw = 1, .groups = 1, .same = false,
	                      .bias = true};
}

/* The padding before and after along one axis. */
static void pads(int64_t *before, int64_t *after, bool same, int64_t p, int64_t k, int64_t d)
{
	if (same) {
		const int64_t span = d * (k - 1);
		*before = span / 2;
		*after = span - span / 2;
	} else {
		*before = *after = p;
	}
}

void ln_conv2d_geom_init(ln_conv2d_geom *g, const ln_conv2d_opts *o, int64_t n, int64_t h,
                         int64_t w)
{
	*g = (ln_conv2d_geom){.n = n, .cin = o->cin, .h = h, .w = w, .cout = o->cout,
	                      .groups = o->groups, .kh = o->kh, .kw = o->kw, .sh = o->sh,
	                      .sw = o->sw, .dh = o->dh, .dw = o->dw};
	pads(&g->pt, &g->pb, o->same, o->ph, o->kh, o->dh);
	pads(&g->pl, &g->pr, o->same, o->pw, o->kw, o->dw);
	const int64_t sh = h + g->pt + g->pb - o->dh * (o->kh - 1) - 1;
	const int64_t sw = w + g->pl + g->pr - o->dw * (o->kw - 1) - 1;
	g->ho = sh < 0 ? 0 : sh / o->sh + 1;
	g->wo = sw < 0 ? 0 : sw / o->sw + 1;
}

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
	const int64_t cg = g->cin / g->groups, og = g->cout / g->groups;
	for (int64_t n = 0; n < g->n; n++)
		for (int64_t o = 0; o < g->cout; o++)
			for (int64_t i = 0; i < g->ho; i++)
				for (int64_t j = 0; j < g->wo; j++) {
					double acc = b ? b[o] : 0.0;
					for (int64_t c = 0; c < cg; c++)
						for (int64_t u = 0; u < g->kh; u++)
							for (int64_t v = 0; v < g->kw; v++) {
								int64_t ih = i * g->sh - g->pt + u * g->dh;
								int64_t iw = j * g->sw - g->pl + v * g->dw;
								if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w)
									continue;
								acc += (double)w[at4(cg, g->kh, g->kw, o, c, u, v)] *
								       x[at4(g->cin, g->h, g->w, n, o / og * cg + c, ih, iw)];
							}
					y[at4(g->cout, g->ho, g->wo, n, o, i, j)] = (float)acc;
				}
}

/*
 *   gb[o]         += sum_{n,i,j} gy[n,o,i,j]
 *   gw[o,c,u,v]   += sum_{n,i,j} gy[n,o,i,j] * x[n, g*cg+c, i*sh-pt+u*dh, j*sw-pl+v*dw]
 *   gx[n,g*cg+c,ih,iw] = sum over the o of group g, (u,v) and the (i,j) with
 *                    i*sh-pt+u*dh = ih and j*sw-pl+v*dw = iw of gy[n,o,i,j] * w[o,c,u,v]
 * Each sum is gathered in double in a fixed order.
 */
void ln_conv2d_backward_naive(float *gx, float *gw, float *gb, const float *gy, const float *x,
                              const float *w, const ln_conv2d_geom *g)
{
	const int64_t cg = g->cin / g->groups, og = g->cout / g->groups;
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
		for (int64_t c = 0; c < cg; c++)
			for (int64_t u = 0; u < g->kh; u++)
				for (int64_t v = 0; v < g->kw; v++) {
					double acc = 0;
					for (int64_t n = 0; n < g->n; n++)
						for (int64_t i = 0; i < g->ho; i++)
							for (int64_t j = 0; j < g->wo; j++) {
								int64_t ih = i * g->sh - g->pt + u * g->dh;
								int64_t iw = j * g->sw - g->pl + v * g->dw;
								if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w)
									continue;
								acc += (double)gy[at4(g->cout, g->ho, g->wo, n, o, i, j)] *
								       x[at4(g->cin, g->h, g->w, n, o / og * cg + c, ih, iw)];
							}
					gw[at4(cg, g->kh, g->kw, o, c, u, v)] += (float)acc;
				}
	if (!gx)
		return;
	for (int64_t n = 0; n < g->n; n++)
		for (int64_t ci = 0; ci < g->cin; ci++)
			for (int64_t ih = 0; ih < g->h; ih++)
				for (int64_t iw = 0; iw < g->w; iw++) {
					const int64_t grp = ci / cg, c = ci % cg;
					double acc = 0;
					for (int64_t o = grp * og; o < (grp + 1) * og; o++)
						for (int64_t u = 0; u < g->kh; u++)
							for (int64_t v = 0; v < g->kw; v++) {
								/* = i*sh, j*sw */
								int64_t ti = ih + g->pt - u * g->dh, tj = iw + g->pl - v * g->dw;
								if (ti < 0 || tj < 0 || ti % g->sh || tj % g->sw)
									continue;
								int64_t i = ti / g->sh, j = tj / g->sw;
								if (i >= g->ho || j >= g->wo)
									continue;
								acc += (double)gy[at4(g->cout, g->ho, g->wo, n, o, i, j)] *
								       w[at4(cg, g->kh, g->kw, o, c, u, v)];
							}
					gx[at4(g->cin, g->h, g->w, n, ci, ih, iw)] = (float)acc;
				}
}

/* ==== im2col / col2im ====================================================== */

/* ceil(a/b) for b > 0, and 0 when a <= 0. */
static inline int64_t ceil_div0(int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

static inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* The output columns j in [*j0, *j1) whose input column j*sw - pl + off
 * lies inside [0, w) (off = v*dw); the others read padding. */
static inline void span(int64_t *j0, int64_t *j1, int64_t off, const ln_conv2d_geom *g)
{
	*j0 = clamp64(ceil_div0(g->pl - off, g->sw), 0, g->wo);
	*j1 = clamp64(ceil_div0(g->w + g->pl - off, g->sw), *j0, g->wo);
}

/*
 * With stride 1 and an output as wide as the input (wo = w: pl + pr =
 * dw*(kw-1), as for every "same" convolution), im2col is simpler: row
 * (c,u,v) of col is the plane x[c] shifted by du = u*dh - pt rows and
 * dv = v*dw - pl columns, zero where that reads outside it.  Read as flat
 * arrays, out[t] = x[t + du*w + dv] for every output row whose input row
 * exists -- one long copy instead of ho short ones -- except the -dv first
 * (dv < 0) or dv last (dv > 0) columns of each row, which wrapped around
 * into the neighbouring input row and must be zero.  shift_rows gives the
 * output rows [*i0, *i1) whose input row is inside, and the flat range
 * [*s0, *s1) whose source is inside the plane; a shift by a whole row or
 * more (|dv| >= w) reads nothing.
 */
static bool is_shift(const ln_conv2d_geom *g)
{
	return g->sh == 1 && g->sw == 1 && g->wo == g->w;
}

static void shift_rows(const ln_conv2d_geom *g, int64_t du, int64_t dv, int64_t *i0, int64_t *i1,
                       int64_t *s0, int64_t *s1)
{
	const int64_t h = g->h, w = g->w, ho = g->ho;
	*i0 = clamp64(-du, 0, ho);
	*i1 = clamp64(h - du, *i0, ho);
	if (dv <= -w || dv >= w)
		*i1 = *i0;
	const int64_t delta = du * w + dv;
	*s0 = *i0 * w > -delta ? *i0 * w : -delta;
	*s1 = *i1 * w < h * w - delta ? *i1 * w : h * w - delta;
	if (*s0 > *i1 * w)
		*s0 = *i1 * w;
	if (*s1 < *s0)
		*s1 = *s0;
}

/* Zeroes, in rows [i0, i1) of a (.,w) plane, the |dv| < w columns that a
 * shift by dv wraps around.  Column by column: along a row the compiler
 * would make each run of |dv| (usually 1) floats a memset call. */
static void zero_wrapped(float *out, int64_t w, int64_t i0, int64_t i1, int64_t dv)
{
	int64_t j0 = dv > 0 ? w - dv : 0, j1 = dv < 0 ? -dv : dv > 0 ? w : 0;
	for (int64_t j = j0; j < j1; j++)
		for (int64_t i = i0; i < i1; i++)
			out[i * w + j] = 0;
}

/* One row of im2col for a shift (see above): out (ho*w). */
static void im2col_row_shift(float *restrict out, const float *restrict xc,
                             const ln_conv2d_geom *g, int64_t du, int64_t dv)
{
	int64_t i0, i1, s0, s1;
	shift_rows(g, du, dv, &i0, &i1, &s0, &s1);
	const int64_t end = g->ho * g->w;
	/* the ends are at most a row and a bit: loops, not memset calls */
	for (int64_t t = 0; t < s0; t++)
		out[t] = 0;
	if (s1 > s0)
		memcpy(out + s0, xc + s0 + du * g->w + dv, (size_t)(s1 - s0) * sizeof(float));
	for (int64_t t = s1; t < end; t++)
		out[t] = 0;
	zero_wrapped(out, g->w, i0, i1, dv);
}

/* out[j] = src[2j] for j < n: stride 2, the commonest after 1, written
 * with the stride as a constant so that the compiler vectorises it (a
 * load of 2 vectors and a shuffle per vector of out). */
static void gather2(float *restrict out, const float *restrict src, int64_t n)
{
	for (int64_t j = 0; j < n; j++)
		out[j] = src[2 * j];
}

void ln_conv2d_im2col(float *col, int64_t ld, const float *x_n, const ln_conv2d_geom *g)
{
	const int64_t kh = g->kh, kw = g->kw, wo = g->wo;
	const bool shift = is_shift(g);
	for (int64_t c = 0; c < g->cin; c++)
		for (int64_t u = 0; u < kh; u++)
			for (int64_t v = 0; v < kw; v++) {
				float *row = col + ((c * kh + u) * kw + v) * ld;
				const float *xc = x_n + c * g->h * g->w;
				if (shift) {
					im2col_row_shift(row, xc, g, u * g->dh - g->pt, v * g->dw - g->pl);
					continue;
				}
				int64_t j0, j1;
				span(&j0, &j1, v * g->dw, g);
				for (int64_t i = 0; i < g->ho; i++) {
					float *out = row + i * wo;
					int64_t ih = i * g->sh - g->pt + u * g->dh;
					if (ih < 0 || ih >= g->h) {
						memset(out, 0, (size_t)wo * sizeof(float));
						continue;
					}
					/* out[j] = xc[ih, j*sw - pl + v*dw] */
					int64_t base = ih * g->w - g->pl + v * g->dw;
					for (int64_t j = 0; j < j0; j++)
						out[j] = 0;
					if (g->sw == 1)
						memcpy(out + j0, xc + base + j0, (size_t)(j1 - j0) * sizeof(float));
					else if (g->sw == 2)
						gather2(out + j0, xc + base + 2 * j0, j1 - j0);
					else
						for (int64_t j = j0; j < j1; j++)
							out[j] = xc[base + j * g->sw];
					for (int64_t j = j1; j < wo; j++)
						out[j] = 0;
				}
			}
}

/* One row of col2im for a shift: gc (h*w) += the entries of row that
 * im2col_row_shift copied from inside the plane, as one long sum (the
 * wrapped-around entries of row are zeroed first, so that they add
 * nothing). */
static void col2im_row_shift(float *restrict gc, float *restrict row, const ln_conv2d_geom *g,
                             int64_t du, int64_t dv)
{
	int64_t i0, i1, s0, s1;
	shift_rows(g, du, dv, &i0, &i1, &s0, &s1);
	zero_wrapped(row, g->w, i0, i1, dv);
	const int64_t delta = du * g->w + dv;
	for (int64_t t = s0; t < s1; t++)
		gc[t + delta] += row[t];
}

void ln_conv2d_col2im(float *gx_n, float *col, int64_t ld, const ln_conv2d_geom *g)
{
	const int64_t kh = g->kh, kw = g->kw, wo = g->wo;
	const bool shift = is_shift(g);
	memset(gx_n, 0, (size_t)(g->cin * g->h * g->w) * sizeof(float));
	for (int64_t c = 0; c < g->cin; c++)
		for (int64_t u = 0; u < kh; u++)
			for (int64_t v = 0; v < kw; v++) {
				float *row = col + ((c * kh + u) * kw + v) * ld;
				float *gc = gx_n + c * g->h * g->w;
				if (shift) {
					col2im_row_shift(gc, row, g, u * g->dh - g->pt, v * g->dw - g->pl);
					continue;
				}
				int64_t j0, j1;
				span(&j0, &j1, v * g->dw, g);
				for (int64_t i = 0; i < g->ho; i++) {
					int64_t ih = i * g->sh - g->pt + u * g->dh;
					if (ih < 0 || ih >= g->h)
						continue;
					const float *in = row + i * wo;
					int64_t base = ih * g->w - g->pl + v * g->dw;
					if (g->sw == 1) {  /* contiguous: vectorises */
						float *restrict dst = gc + base;
						const float *restrict src = in;
						for (int64_t j = j0; j < j1; j++)
							dst[j] += src[j];
					} else {
						for (int64_t j = j0; j < j1; j++)
							gc[base + j * g->sw] += in[j];
					}
				}
			}
}

/* ==== the module, sample by sample ================================================ */

static bool has_bias(const ln_module *m) { return m->nparams > 1; }

/* The geometry of a 1x1 convolution with stride 1 and no padding, whose
 * columns are the sample itself. */
static bool is_pointwise(const ln_conv2d_geom *g)
{
	return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->pt == 0 && g->pl == 0 &&
	       g->pb == 0 && g->pr == 0;
}

/* "3" for a pair of equal values, else "3x5" (for describe and messages). */
static const char *pair_str(char *buf, size_t size, int64_t a, int64_t b)
{
	if (a == b)
		snprintf(buf, size, "%lld", (long long)a);
	else
		snprintf(buf, size, "%lldx%lld", (long long)a, (long long)b);
	return buf;
}

static int conv2d_describe(const ln_module *m, char *buf, size_t size)
{
	const ln_conv2d_opts *o = &((const conv2d *)m)->o;
	char s[48], p[48], d[64] = "", gr[48] = "";
	pair_str(s, sizeof s, o->sh, o->sw);
	if (o->same)
		snprintf(p, sizeof p, "same");
	else
		pair_str(p, sizeof p, o->ph, o->pw);
	if (o->dh != 1 || o->dw != 1) {
		char t[48];
		snprintf(d, sizeof d, ", dilation %s", pair_str(t, sizeof t, o->dh, o->dw));
	}
	if (o->groups != 1)
		snprintf(gr, sizeof gr, ", groups %lld", (long long)o->groups);
	return snprintf(buf, size, "Conv2d(%lld -> %lld, %lldx%lld, stride %s, padding %s%s%s%s)",
	                (long long)o->cin, (long long)o->cout, (long long)o->kh, (long long)o->kw, s,
	                p, d, gr, has_bias(m) ? "" : ", bias=false");
}

/* Checks x against the layer and fills c->g.  The sizes handed to the
 * matrix products must fit in an int. */
static ln_status check_input(conv2d *c, const ln_tensor *x, ln_error *err)
{
	const ln_conv2d_opts *o = &c->o;
	char got[96];
	if (x->ndim != 4 || x->shape[1] != o->cin)
		return ln_fail(err, LN_ESHAPE, "expected input of shape {N,%lld,H,W}, got %s",
		               (long long)o->cin, ln_tensor_shape_str(x, got, sizeof got));
	ln_conv2d_geom *g = &c->g;
	ln_conv2d_geom_init(g, o, x->shape[0], x->shape[2], x->shape[3]);
	if (g->ho < 1 || g->wo < 1)
		return ln_fail(err, LN_ESHAPE,
		               "input of shape %s is smaller than the %lldx%lld kernel's span "
		               "(%lldx%lld with dilation; %lldx%lld after padding)",
		               ln_tensor_shape_str(x, got, sizeof got), (long long)o->kh,
		               (long long)o->kw, (long long)(o->dh * (o->kh - 1) + 1),
		               (long long)(o->dw * (o->kw - 1) + 1), (long long)(g->h + g->pt + g->pb),
		               (long long)(g->w + g->pl + g->pr));
	const int64_t kk = o->cin * o->kh * o->kw, pp = g->ho * g->wo;
	if (pp > INT32_MAX || kk > INT32_MAX || pp > INT64_MAX / kk)
		return ln_fail(err, LN_ERANGE, "input of shape %s is too large",
		               ln_tensor_shape_str(x, got, sizeof got));
	c->pointwise = is_pointwise(g);
	return LN_OK;
}

static ln_status conv2d_forward_prepare(ln_module *m, const ln_tensor *x, int parts,
                                        double *work, ln_error *err)
{
	conv2d *c = (conv2d *)m;
	ln_status st = check_input(c, x, err);
	if (st != LN_OK)
		return st;
	const ln_conv2d_geom *g = &c->g;
	const int64_t kk = g->cin * g->kh * g->kw, pp = g->ho * g->wo;
	if ((st = ln_tensor_ensure(&m->output, 4, (int64_t[]){g->n, g->cout, g->ho, g->wo}, err)) !=
	    LN_OK)
		return st;
	if (!c->pointwise && (st = ln_tensor_ensure(&c->col, 3, (int64_t[]){parts, kk, pp}, err)) !=
	                         LN_OK)
		return st;
	*work += (double)g->n * (double)g->cout * (double)(kk / g->groups) * (double)pp;
	return LN_OK;
}

/* The columns of sample n: built into part's buffer, or the sample. */
static const float *columns(conv2d *c, const float *xn, int part)
{
	if (c->pointwise)
		return xn;
	const ln_conv2d_geom *g = &c->g;
	const int64_t kk = g->cin * g->kh * g->kw, pp = g->ho * g->wo;
	float *col = ln_tensor_data(&c->col) + part * kk * pp;
	ln_conv2d_im2col(col, pp, xn, g);
	return col;
}

/* y_n,g (og,P) = W_g (og,Kg) col_n,g (Kg,P) + b (added as the product
 * writes y), for n in [n0, n1). */
static void conv2d_forward_rows(ln_module *m, const ln_tensor *x, int64_t n0, int64_t n1,
                                int part)
{
	conv2d *c = (conv2d *)m;
	const ln_conv2d_geom *g = &c->g;
	const int64_t kg = g->cin / g->groups * g->kh * g->kw, og = g->cout / g->groups;
	const int64_t pp = g->ho * g->wo, xs = g->cin * g->h * g->w;
	const float *w = ln_tensor_data(&m->param[0]);
	const float *b = has_bias(m) ? ln_tensor_data(&m->param[1]) : NULL;
	for (int64_t n = n0; n < n1; n++) {
		const float *col = columns(c, ln_tensor_data(x) + n * xs, part);
		float *yn = ln_tensor_data(&m->output) + n * g->cout * pp;
		for (int64_t gr = 0; gr < g->groups; gr++)
			ln_gemm_biased(false, false, og, pp, kg, 1.0f, w + gr * og * kg, kg,
			               col + gr * kg * pp, pp, 0.0f, yn + gr * og * pp, pp,
			               b ? b + gr * og : NULL, NULL);
	}
}

/* Everything backward writes besides the gradients, for the last
 * forward's geometry c->g and input shape xshape: grad_input when want_gx,
 * the columns and their gradient for `parts` parts, the gW and bias sums
 * of `runs` runs. */
static ln_status backward_buffers(conv2d *c, const int64_t *xshape, bool want_gx, int parts,
                                  int runs, ln_error *err)
{
	ln_module *m = &c->base;
	const ln_conv2d_geom *g = &c->g;
	const int64_t kk = g->cin * g->kh * g->kw, kg = kk / g->groups, pp = g->ho * g->wo;
	ln_status st;
	if (want_gx && (st = ln_tensor_ensure(&m->grad_input, 4, xshape, err)) != LN_OK)
		return st;
	if (!c->pointwise && (st = ln_tensor_ensure(&c->col, 3, (int64_t[]){parts, kk, pp}, err)) !=
	                         LN_OK)
		return st;
	if (!c->pointwise && want_gx &&
	    (st = ln_tensor_ensure(&c->gcol, 3, (int64_t[]){parts, kk, pp}, err)) != LN_OK)
		return st;
	if ((st = ln_tensor_ensure(&c->gwp, 2, (int64_t[]){runs, g->cout * kg}, err)) != LN_OK)
		return st;
	const size_t nb = (size_t)runs * (size_t)g->cout;
	if (has_bias(m) && nb > c->gbp_cap) {
		double *p = ln_malloc(nb * sizeof *p);
		if (!p)
			return ln_fail(err, LN_ENOMEM, "out of memory for %zu bias sums", nb);
		ln_free(c->gbp);
		c->gbp = p;
		c->gbp_cap = nb;
	}
	return LN_OK;
}

/* module.h: reserve -- backward_buffers for the last forward's input, with
 * the parts and runs a chain backward over its batch will use. */
static ln_status conv2d_reserve(ln_module *m, bool need_gx, ln_error *err)
{
	int runs, parts;
	ln_module_chain_sizes(m->in_shape[0], &runs, &parts);
	return backward_buffers((conv2d *)m, m->in_shape, need_gx, parts, runs, err);
}

/* x is the last forward's input (ln_module_backward checked its shape). */
static ln_status conv2d_backward_prepare(ln_module *m, const ln_tensor *x, int parts, int runs,
                                         double *work, ln_error *err)
{
	conv2d *c = (conv2d *)m;
	ln_status st = check_input(c, x, err);
	if (st == LN_OK)
		st = backward_buffers(c, x->shape, m->want_gx, parts, runs, err);
	if (st != LN_OK)
		return st;
	const ln_conv2d_geom *g = &c->g;
	const int64_t kg = g->cin / g->groups * g->kh * g->kw, pp = g->ho * g->wo;
	/* nothing below fails: pending zeros taken over are always written */
	c->gw_t = g->cout / g->groups <= kg;
	c->gw_zero = ln_tensor_take_zero(&m->grad[0]);
	c->gb_zero = has_bias(m) && ln_tensor_take_zero(&m->grad[1]);
	*work += (m->want_gx ? 2.0 : 1.0) * (double)g->n * (double)g->cout * (double)kg * (double)pp;
	return LN_OK;
}

/* sum of v[0..n) in double, in 8 interleaved partial sums (a fixed order
 * that vectorises). */
static double sum8(const float *v, int64_t n)
{
	double lane[8] = {0}, acc = 0;
	int64_t q = 0;
	for (; q + 8 <= n; q += 8)
		for (int l = 0; l < 8; l++)
			lane[l] += v[q + l];
	for (; q < n; q++)
		lane[q % 8] += v[q];
	for (int l = 0; l < 8; l++)
		acc += lane[l];
	return acc;
}

/* sum8 of the 4 arrays v + k*stride (k < 4), each n long, into out[k]: the
 * same additions in the same order, bit for bit, but 4 arrays at a time,
 * so that the additions of one do not all wait on each other.  The bias
 * sums of the benchmark CNN's backward took 102 and 63 us per step for
 * its two layers one array at a time, 76 and 58 this way (Zen 3 core,
 * best of 300).  In vectors of 4 doubles (GCC's vector extension: plain
 * loops over lane[4][8] were turned into 32 scalar sums on the stack). */
typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

/* 4 floats from p, as doubles (with AVX one instruction, which GCC's
 * generic conversion does not make). */
static inline v4d load4d(const float *p)
{
#ifdef __AVX__
	return (v4d)_mm256_cvtps_pd(_mm_loadu_ps(p));
#else
	v4f x;
	memcpy(&x, p, sizeof x);
	return __builtin_convertvector(x, v4d);
#endif
}

static __attribute__((noinline)) void sum8x4(double out[4], const float *v, int64_t stride,
                                             int64_t n)
{
	v4d lo[4] = {{0}}, hi[4] = {{0}};  /* lanes 0-3 and 4-7 */
	int64_t q = 0;
	for (; q + 8 <= n; q += 8)
		for (int k = 0; k < 4; k++) {
			lo[k] += load4d(v + k * stride + q);
			hi[k] += load4d(v + k * stride + q + 4);
		}
	for (int k = 0; k < 4; k++) {
		double lane[8];
		memcpy(lane, &lo[k], sizeof lo[k]);
		memcpy(lane + 4, &hi[k], sizeof hi[k]);
		for (int64_t r = q; r < n; r++)
			lane[r % 8] += v[k * stride + r];
		double acc = 0;
		for (int l = 0; l < 8; l++)
			acc += lane[l];
		out[k] = acc;
	}
}

/* For n in [n0, n1): run's gW sum (+)= gY_n,g col_n,g^T (as its transpose
 * when gw_t), run's bias sums (+)= the pixel sums of gY_n, and, when
 * wanted, gx_n = col2im(W_g^T gY_n,g). */
static void conv2d_backward_rows(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                 int64_t n0, int64_t n1, int run, bool first, int part)
{
	conv2d *c = (conv2d *)m;
	const ln_conv2d_geom *g = &c->g;
	const int64_t kk = g->cin * g->kh * g->kw, kg = kk / g->groups, og = g->cout / g->groups;
	const int64_t pp = g->ho * g->wo, xs = g->cin * g->h * g->w;
	const float *w = ln_tensor_data(&m->param[0]);
	float *acc = ln_tensor_data(&c->gwp) + run * g->cout * kg;
	double *gb = has_bias(m) ? c->gbp + run * g->cout : NULL;
	for (int64_t n = n0; n < n1; n++) {
		const float *col = columns(c, ln_tensor_data(x) + n * xs, part);
		const float *gyn = ln_tensor_data(gy) + n * g->cout * pp;
		const bool start = first && n == n0;
		for (int64_t gr = 0; gr < g->groups; gr++) {
			const float *cg = col + gr * kg * pp, *gg = gyn + gr * og * pp;
			float *ag = acc + gr * og * kg;
			if (c->gw_t)
				ln_gemm(false, true, kg, og, pp, 1.0f, cg, pp, gg, pp, start ? 0.0f : 1.0f, ag,
				        og);
			else
				ln_gemm(false, true, og, kg, pp, 1.0f, gg, pp, cg, pp, start ? 0.0f : 1.0f, ag,
				        kg);
		}
		int64_t o = 0;
		for (double s4[4]; gb && o + 4 <= g->cout; o += 4) {
			sum8x4(s4, gyn + o * pp, pp, pp);
			for (int k = 0; k < 4; k++)
				gb[o + k] = (start ? 0.0 : gb[o + k]) + s4[k];
		}
		for (; gb && o < g->cout; o++)
			gb[o] = (start ? 0.0 : gb[o]) + sum8(gyn + o * pp, pp);
		if (!m->want_gx)
			continue;
		float *gxn = ln_tensor_data(&m->grad_input) + n * xs;
		float *gcol = c->pointwise ? gxn : ln_tensor_data(&c->gcol) + part * kk * pp;
		for (int64_t gr = 0; gr < g->groups; gr++)
			ln_gemm(true, false, kg, pp, og, 1.0f, w + gr * og * kg, kg, gyn + gr * og * pp, pp,
			        0.0f, gcol + gr * kg * pp, pp);
		if (!c->pointwise)
			ln_conv2d_col2im(gxn, gcol, pp, g);
	}
}

/* gW (+)= the runs' sums in run order, gb likewise (in double): the same
 * bits for any thread count. */
static void conv2d_backward_finish(ln_module *m, int runs)
{
	conv2d *c = (conv2d *)m;
	const ln_conv2d_geom *g = &c->g;
	const int64_t kg = g->cin / g->groups * g->kh * g->kw, og = g->cout / g->groups;
	const int64_t nw = g->cout * kg;
	float *gw = ln_tensor_data(&m->grad[0]);
	const float *sums = ln_tensor_data(&c->gwp);
	for (int r = 0; r < runs; r++) {
		const float *s = sums + r * nw;
		const bool set = r == 0 && c->gw_zero;
		if (!c->gw_t) {
			for (int64_t e = 0; e < nw; e++)
				gw[e] = set ? s[e] : gw[e] + s[e];
			continue;
		}
		for (int64_t gr = 0; gr < g->groups; gr++) {
			float *wg = gw + gr * og * kg;
			const float *sg = s + gr * og * kg;  /* (kg, og) */
			for (int64_t o = 0; o < og; o++)
				for (int64_t k = 0; k < kg; k++)
					wg[o * kg + k] = set ? sg[k * og + o] : wg[o * kg + k] + sg[k * og + o];
		}
	}
	if (has_bias(m)) {
		float *gb = ln_tensor_data(&m->grad[1]);
		for (int64_t o = 0; o < g->cout; o++) {
			double acc = 0;
			for (int r = 0; r < runs; r++)
				acc += c->gbp[r * g->cout + o];
			gb[o] = c->gb_zero ? (float)acc : gb[o] + (float)acc;
		}
	}
}

static const ln_rows_ops conv2d_rows = {
	.forward_prepare = conv2d_forward_prepare,
	.forward_rows = conv2d_forward_rows,
	.backward_prepare = conv2d_backward_prepare,
	.backward_rows = conv2d_backward_rows,
	.backward_finish = conv2d_backward_finish,
};

static void conv2d_destroy(ln_module *m)
{
	conv2d *c = (conv2d *)m;
	ln_tensor_release(&c->col);
	ln_tensor_release(&c->gcol);
	ln_tensor_release(&c->gwp);
	ln_free(c->gbp);
	c->gbp = NULL;
	c->gbp_cap = 0;
}

/* ==== construction ================================================================ */

/* Config slots (conv2d_class.config_names). */
enum { C_CIN, C_COUT, C_KH, C_SH, C_PH, C_BIAS, C_KW, C_SW, C_PW, C_DH, C_DW, C_GROUPS, C_SAME,
       C_COUNT };

ln_status ln_conv2d_new_opts(ln_module **out, const ln_module_build *ctx,
                             const ln_conv2d_opts *o, ln_error *err)
{
	*out = NULL;
	const struct { const char *name; int64_t v, lo; } args[] = {
		{"in_channels", o->cin, 1}, {"out_channels", o->cout, 1},
		{o->kh == o->kw ? "kernel size" : "kernel height", o->kh, 1},
		{o->kh == o->kw ? "kernel size" : "kernel width", o->kw, 1},
		{"stride", o->sh, 1}, {"stride", o->sw, 1},
		{"padding", o->ph, 0}, {"padding", o->pw, 0},
		{"dilation", o->dh, 1}, {"dilation", o->dw, 1}, {"groups", o->groups, 1},
	};
	for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
		if (o->same && i >= 6 && i < 8)
			continue;  /* "same" ignores the padding given */
		if (args[i].v < args[i].lo)
			return ln_fail(err, LN_ERANGE, "%s must be >= %lld, got %lld", args[i].name,
			               (long long)args[i].lo, (long long)args[i].v);
		if (args[i].v > INT32_MAX)  /* keeps every size computation in range */
			return ln_fail(err, LN_ERANGE, "%s must be <= %d, got %lld", args[i].name,
			               INT32_MAX, (long long)args[i].v);
	}
	if (o->cin % o->groups || o->cout % o->groups)
		return ln_fail(err, LN_ERANGE,
		               "in_channels (%lld) and out_channels (%lld) must both be multiples of "
		               "groups (%lld)",
		               (long long)o->cin, (long long)o->cout, (long long)o->groups);
	if (o->same && (o->sh != 1 || o->sw != 1))
		return ln_fail(err, LN_ERANGE, "padding \"same\" needs stride 1, got stride %lldx%lld",
		               (long long)o->sh, (long long)o->sw);
	/* the kernel's span must fit an int too: (k-1)*d */
	if ((o->kh - 1) * o->dh > INT32_MAX || (o->kw - 1) * o->dw > INT32_MAX)
		return ln_fail(err, LN_ERANGE, "the kernel's span (dilation * (kernel - 1)) must be <= %d",
		               INT32_MAX);
	ln_module *m;
	ln_status st = ln_module_alloc(&m, &ln_conv2d_class, err);
	if (st != LN_OK)
		return st;
	conv2d *c = (conv2d *)m;
	c->o = *o;
	int64_t pt, pb, pl, pr;
	pads(&pt, &pb, o->same, o->ph, o->kh, o->dh);
	pads(&pl, &pr, o->same, o->pw, o->kw, o->dw);
	c->o.ph = pt;  /* for "same", the padding before (config and m.padding) */
	c->o.pw = pl;
	const double config[C_COUNT] = {
		[C_CIN] = (double)o->cin, [C_COUT] = (double)o->cout, [C_KH] = (double)o->kh,
		[C_SH] = (double)o->sh, [C_PH] = (double)pt, [C_BIAS] = o->bias ? 1 : 0,
		[C_KW] = (double)o->kw, [C_SW] = (double)o->sw, [C_PW] = (double)pl,
		[C_DH] = (double)o->dh, [C_DW] = (double)o->dw, [C_GROUPS] = (double)o->groups,
		[C_SAME] = o->same ? 1 : 0,
	};
	m->nconfig = C_COUNT;
	memcpy(m->config, config, sizeof config);
	const int64_t wshape[4] = {o->cout, o->cin / o->groups, o->kh, o->kw};
	st = ln_module_add_param(m, ctx, "weight", LN_PARAM_HE, 4, wshape, err);
	if (st == LN_OK && o->bias)
		st = ln_module_add_param(m, ctx, "bias", LN_PARAM_ZEROS, 1, (int64_t[]){o->cout}, err);
	if (st != LN_OK) {
		ln_module_release(m);
		return st;
	}
	*out = m;
	return LN_OK;
}

ln_status ln_conv2d_new(ln_module **out, const ln_module_build *ctx, int64_t cin, int64_t cout,
                        int64_t k, int64_t stride, int64_t padding, bool bias, ln_error *err)
{
	ln_conv2d_opts o;
	ln_conv2d_opts_init(&o, cin, cout, k);
	o.sh = o.sw = stride;
	o.ph = o.pw = padding;
	o.bias = bias;
	return ln_conv2d_new_opts(out, ctx, &o, err);
}

/* From a config (conv2d_class.config_names): integers in range; the
 * entries a file written before they existed lacks come as their
 * defaults, which stand for "as along the other axis" (kw 0, stride_w 0,
 * padding_w -1, dilation_w 0). */
static ln_status conv2d_create(ln_module **out, const ln_module_class *cls,
                               const ln_module_build *ctx, const double *config, ln_error *err)
{
	static const int64_t lo[C_COUNT] = {
		[C_CIN] = 1, [C_COUT] = 1, [C_KH] = 1, [C_SH] = 1, [C_PH] = 0, [C_BIAS] = 0,
		[C_KW] = 0, [C_SW] = 0, [C_PW] = -1, [C_DH] = 1, [C_DW] = 0, [C_GROUPS] = 1,
		[C_SAME] = 0,
	};
	int64_t v[C_COUNT];
	*out = NULL;
	for (int i = 0; i < C_COUNT; i++) {
		const int64_t hi = i == C_BIAS || i == C_SAME ? 1 : INT32_MAX;
		ln_status st = ln_config_int(&v[i], config[i], cls->config_names[i], lo[i], hi, err);
		if (st != LN_OK)
			return st;
	}
	ln_conv2d_opts o = {
		.cin = v[C_CIN], .cout = v[C_COUT], .kh = v[C_KH], .sh = v[C_SH], .ph = v[C_PH],
		.bias = v[C_BIAS] != 0, .kw = v[C_KW] ? v[C_KW] : v[C_KH],
		.sw = v[C_SW] ? v[C_SW] : v[C_SH], .pw = v[C_PW] >= 0 ? v[C_PW] : v[C_PH],
		.dh = v[C_DH], .dw = v[C_DW] ? v[C_DW] : v[C_DH], .groups = v[C_GROUPS],
		.same = v[C_SAME] != 0,
	};
	return ln_conv2d_new_opts(out, ctx, &o, err);
}

const ln_module_class ln_conv2d_class = {
	.name = "Conv2d",
	.size = sizeof(conv2d),
	.rows = &conv2d_rows,
	.reserve = conv2d_reserve,
	.destroy = conv2d_destroy,
	.param_names = {"weight", "bias", NULL},
	.config_names = {"cin", "cout", "k", "stride", "padding", "bias", "kw", "stride_w",
	                 "padding_w", "dilation", "dilation_w", "groups", "same", NULL},
	/* files written before Conv2d could drop its bias have no "bias", and
	 * none before the later entries existed has them: as along the other
	 * axis, one group, not "same" */
	.config_defaults = {[C_BIAS] = 1, [C_KW] = 0, [C_SW] = 0, [C_PW] = -1, [C_DH] = 1,
	                    [C_DW] = 0, [C_GROUPS] = 1, [C_SAME] = 0},
	.config_optional = C_COUNT - C_BIAS,
	.create = conv2d_create,
	.describe = conv2d_describe,
};
