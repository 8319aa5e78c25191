/*
 * pool.c -- MaxPool2d and AvgPool2d over {N,C,H,W}.
 *
 * A kh x kw window moves with stride (sh,sw) over each channel of each
 * sample, padded by ph rows and pw columns on each side; the output is
 * {N,C,ho,wo} (sizes as in conv.h, PyTorch's, ceil_mode included).
 * Windows are clipped to the input: padding is never the maximum, and
 * counts in AvgPool2d's divisor only with count_include_pad.
 *
 *   MaxPool2d  y[n,c,i,j] = max over window (i,j) of x[n,c,.,.]
 *              forward saves the position of that maximum (the first one in
 *              row-major window order) for every output element; backward
 *              routes each gradient there: gx = sum over the outputs whose
 *              arg-max is that element of gy (several when windows overlap).
 *   AvgPool2d  y[n,c,i,j] = (sum over window (i,j)) / divisor(i,j)
 *              gx[n,c,a,b] = sum over the windows holding (a,b) of gy/divisor.
 * A NaN in a window makes the max NaN (and its arg-max the last NaN).
 *
 * Both work sample by sample (module.h): a sample is its C planes.  The
 * direct loops ln_*pool2d_*_naive are the reference; MaxPool2d's common
 * cases have faster kernels, tested against them: a 2x2 window with stride
 * 2 and no padding (AVX-512 or AVX2 where the CPU has them, pool_avx*.c),
 * and the windows of any other case that lie wholly inside the input (a
 * loop along the output row, over independent windows).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/cpu.h"
#include "conv.h"
#include "layers.h"
#include "nn_internal.h"
#include "pool_kernels.h"

typedef struct pool2d {
	ln_module base;
	ln_pool2d_opts o;   /* as built */
	ln_pool2d_geom g;   /* of the last prepare: planes are the whole batch's */
	int64_t chans;      /* planes per sample */
	int32_t *argmax;    /* MaxPool2d: (N,C,ho,wo) offsets into the (H,W) plane of the
	                       last successful forward's input */
	size_t argmax_cap;  /* in elements; from ln_malloc, freed by destroy */
} pool2d;

/* ==== geometry ================================================================== */

void ln_pool2d_opts_init(ln_pool2d_opts *o, int64_t k)
{
	*o = (ln_pool2d_opts){.kh = k, .kw = k, .sh = k, .sw = k, .ph = 0, .pw = 0,
	                      .ceil_mode = false, .count_include_pad = true};
}

int64_t ln_pool2d_out_size(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode)
{
	const int64_t span = in + 2 * p - k;
	if (span < 0)
		return 0;
	int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
	/* PyTorch's rule: the last window starts inside the input or its left
	 * padding */
	if (ceil_mode && (out - 1) * s >= in + p)
		out--;
	return out;
}

/* The rows [*a, *b) of the input that window i covers, along one axis. */
static inline void window(int64_t *a, int64_t *b, int64_t i, int64_t s, int64_t p, int64_t k,
                          int64_t in)
{
	const int64_t start = i * s - p;
	*a = start < 0 ? 0 : start;
	*b = start + k < in ? start + k : in;
}

/* AvgPool2d's divisor of window (i,j): its size within the padded input
 * (count_include_pad), or within the input. */
static double divisor(const ln_pool2d_geom *g, int64_t i, int64_t j)
{
	int64_t a, b, c, d;
	window(&a, &b, i, g->sh, g->ph, g->kh, g->h);
	window(&c, &d, j, g->sw, g->pw, g->kw, g->w);
	if (!g->count_include_pad)
		return (double)((b - a) * (d - c));
	const int64_t hs = i * g->sh - g->ph, ws = j * g->sw - g->pw;
	const int64_t he = hs + g->kh < g->h + g->ph ? hs + g->kh : g->h + g->ph;
	const int64_t we = ws + g->kw < g->w + g->pw ? ws + g->kw : g->w + g->pw;
	return (double)((he - hs) * (we - ws));
}

/* ==== reference kernels (direct loops over each window) ========================== */

/* One step of a window walk: val takes the place of the maximum when
 * greater, or when NaN. */
#define MAX_STEP(val, off)                          \
	do {                                            \
		const float v_ = (val);                     \
		const bool t_ = v_ > best || isnan(v_);     \
		best = t_ ? v_ : best;                      \
		at = t_ ? (off) : at;                       \
	} while (0)

/* The maximum of window (i,j) of plane xp and its offset. */
static inline void max_window(float *y, int32_t *am, const float *xp, const ln_pool2d_geom *g,
                              int64_t i, int64_t j)
{
	int64_t a, b, c, d;
	window(&a, &b, i, g->sh, g->ph, g->kh, g->h);
	window(&c, &d, j, g->sw, g->pw, g->kw, g->w);
	float best = xp[a * g->w + c];
	int32_t at = (int32_t)(a * g->w + c);
	for (int64_t u = a; u < b; u++)
		for (int64_t v = u == a ? c + 1 : c; v < d; v++)
			MAX_STEP(xp[u * g->w + v], (int32_t)(u * g->w + v));
	*y = best;
	*am = at;
}

void ln_maxpool2d_forward_naive(float *y, int32_t *am, const float *x, const ln_pool2d_geom *g)
{
	for (int64_t pl = 0; pl < g->planes; pl++)
		for (int64_t i = 0; i < g->ho; i++)
			for (int64_t j = 0; j < g->wo; j++) {
				const int64_t o = (pl * g->ho + i) * g->wo + j;
				max_window(&y[o], &am[o], x + pl * g->h * g->w, g, i, j);
			}
}

void ln_maxpool2d_backward_naive(float *gx, const float *gy, const int32_t *am,
                                 const ln_pool2d_geom *g)
{
	memset(gx, 0, (size_t)(g->planes * g->h * g->w) * sizeof(float));
	for (int64_t pl = 0; pl < g->planes; pl++) {
		float *gp = gx + pl * g->h * g->w;
		const float *gyp = gy + pl * g->ho * g->wo;
		const int32_t *ap = am + pl * g->ho * g->wo;
		for (int64_t q = 0; q < g->ho * g->wo; q++)
			gp[ap[q]] += gyp[q];
	}
}

void ln_avgpool2d_forward_naive(float *y, const float *x, const ln_pool2d_geom *g)
{
	for (int64_t pl = 0; pl < g->planes; pl++) {
		const float *xp = x + pl * g->h * g->w;
		float *yp = y + pl * g->ho * g->wo;
		for (int64_t i = 0; i < g->ho; i++)
			for (int64_t j = 0; j < g->wo; j++) {
				int64_t a, b, c, d;
				window(&a, &b, i, g->sh, g->ph, g->kh, g->h);
				window(&c, &d, j, g->sw, g->pw, g->kw, g->w);
				double acc = 0;
				for (int64_t u = a; u < b; u++)
					for (int64_t v = c; v < d; v++)
						acc += xp[u * g->w + v];
				yp[i * g->wo + j] = (float)(acc / divisor(g, i, j));
			}
	}
}

void ln_avgpool2d_backward_naive(float *gx, const float *gy, const ln_pool2d_geom *g)
{
	memset(gx, 0, (size_t)(g->planes * g->h * g->w) * sizeof(float));
	for (int64_t pl = 0; pl < g->planes; pl++) {
		float *gp = gx + pl * g->h * g->w;
		const float *gyp = gy + pl * g->ho * g->wo;
		for (int64_t i = 0; i < g->ho; i++)
			for (int64_t j = 0; j < g->wo; j++) {
				int64_t a, b, c, d;
				window(&a, &b, i, g->sh, g->ph, g->kh, g->h);
				window(&c, &d, j, g->sw, g->pw, g->kw, g->w);
				const float v = (float)(gyp[i * g->wo + j] / divisor(g, i, j));
				for (int64_t u = a; u < b; u++)
					for (int64_t t = c; t < d; t++)
						gp[u * g->w + t] += v;
			}
	}
}

void ln_relu_maxpool2d_forward_naive(float *r, float *y, int32_t *am, const float *x,
                                     const ln_pool2d_geom *g)
{
	const int64_t n = g->planes * g->h * g->w;
	for (int64_t i = 0; i < n; i++)
		r[i] = x[i] < 0 ? 0.0f : x[i];
	ln_maxpool2d_forward_naive(y, am, r, g);
}

void ln_relu_maxpool2d_backward_naive(float *gr, float *gp, const float *gy, const int32_t *am,
                                      const float *x, const ln_pool2d_geom *g)
{
	ln_maxpool2d_backward_naive(gp, gy, am, g);
	const int64_t n = g->planes * g->h * g->w;
	for (int64_t i = 0; i < n; i++)
		gr[i] = x[i] > 0 ? gp[i] : 0.0f;
}

/* ==== MaxPool2d's fast kernels =================================================== */

/* A 2x2 window with stride 2 whose windows all lie inside the input. */
static bool is_pool2(const ln_pool2d_geom *g)
{
	return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 &&
	       2 * g->ho <= g->h && 2 * g->wo <= g->w;
}

/* The 2x2 case without AVX: the walk (0,0) (0,1) (1,0) (1,1), written out
 * so that the loop along an output row reads both input rows pairwise
 * and vectorises.  y and am do not overlap x. */
static void maxpool2_forward_portable(float *restrict y, int32_t *restrict am,
                                      const float *restrict x, const ln_pool2d_geom *g)
{
	const int64_t h = g->h, w = g->w, ho = g->ho, wo = g->wo;
	for (int64_t pl = 0; pl < g->planes; pl++) {
		const float *xp = x + pl * h * w;
		for (int64_t i = 0; i < ho; i++) {
			float *restrict yr = y + (pl * ho + i) * wo;
			int32_t *restrict ar = am + (pl * ho + i) * wo;
			const float *r0 = xp + 2 * i * w, *r1 = r0 + w;
			const int32_t o0 = (int32_t)(2 * i * w), o1 = o0 + (int32_t)w;
			for (int64_t j = 0; j < wo; j++) {
				const int32_t c = 2 * (int32_t)j;
				float best = r0[c];
				int32_t at = o0 + c;
				MAX_STEP(r0[c + 1], o0 + c + 1);
				MAX_STEP(r1[c], o1 + c);
				MAX_STEP(r1[c + 1], o1 + c + 1);
				yr[j] = best;
				ar[j] = at;
			}
		}
	}
}

/* Any other geometry: windows that lie wholly inside the input along a
 * row (columns [ja, jb)) are walked together, one loop along the row per
 * window element, over independent windows and without branches (random
 * data mispredicts); the windows the padding clips go one by one. */
static void maxpool_forward_general(float *y, int32_t *am, const float *x,
                                    const ln_pool2d_geom *g)
{
	const int64_t w = g->w, wo = g->wo, sw = g->sw, kw = g->kw;
	int64_t ja = (g->pw + sw - 1) / sw;
	int64_t jb = w + g->pw - kw >= 0 ? (w + g->pw - kw) / sw + 1 : 0;
	ja = ja < wo ? ja : wo;
	jb = jb < ja ? ja : jb > wo ? wo : jb;
	for (int64_t pl = 0; pl < g->planes; pl++) {
		const float *xp = x + pl * g->h * w;
		for (int64_t i = 0; i < g->ho; i++) {
			float *yr = y + (pl * g->ho + i) * wo;
			int32_t *ar = am + (pl * g->ho + i) * wo;
			for (int64_t j = 0; j < ja; j++)
				max_window(&yr[j], &ar[j], xp, g, i, j);
			for (int64_t j = jb; j < wo; j++)
				max_window(&yr[j], &ar[j], xp, g, i, j);
			int64_t a, b;
			window(&a, &b, i, g->sh, g->ph, g->kh, g->h);
			const int64_t off = a * w - g->pw;  /* (a, j*sw - pw) is a*w - pw + j*sw */
			for (int64_t j = ja; j < jb; j++) {
				yr[j] = xp[off + j * sw];
				ar[j] = (int32_t)(off + j * sw);
			}
			for (int64_t u = a; u < b; u++)
				for (int64_t v = u == a; v < kw; v++) {
					const int64_t row = u * w + v - g->pw;
					for (int64_t j = ja; j < jb; j++) {
						const float val = xp[row + j * sw];
						const bool take = val > yr[j] || isnan(val);
						yr[j] = take ? val : yr[j];
						ar[j] = take ? (int32_t)(row + j * sw) : ar[j];
					}
				}
		}
	}
}

static void maxpool_forward_kernel(float *y, int32_t *am, const float *x, const ln_pool2d_geom *g)
{
	if (!is_pool2(g))
		maxpool_forward_general(y, am, x, g);
	else if (ln_cpu_avx512())
		ln_maxpool2_forward_avx512(y, am, x, g->planes, g->h, g->w, g->ho, g->wo);
	else if (ln_cpu_avx2_fma())
		ln_maxpool2_forward_avx2(y, am, x, g->planes, g->h, g->w, g->ho, g->wo);
	else
		maxpool2_forward_portable(y, am, x, g);
}

static void maxpool_backward_kernel(float *gx, const float *gy, const int32_t *am,
                                    const ln_pool2d_geom *g)
{
	if (is_pool2(g) && ln_cpu_avx512())
		ln_maxpool2_backward_avx512(gx, gy, am, g->planes, g->h, g->w, g->ho, g->wo);
	else if (is_pool2(g) && ln_cpu_avx2_fma())
		ln_maxpool2_backward_avx2(gx, gy, am, g->planes, g->h, g->w, g->ho, g->wo);
	else
		ln_maxpool2d_backward_naive(gx, gy, am, g);
}

/* ==== the modules, sample by sample ================================================= */

static bool is_max(const ln_module *m) { return m->cls == &ln_maxpool2d_class; }

/* Checks x and fills p->g and p->chans for it. */
static ln_status check_input(pool2d *p, const ln_tensor *x, ln_error *err)
{
	const ln_pool2d_opts *o = &p->o;
	char got[96];
	if (x->ndim != 4)
		return ln_fail(err, LN_ESHAPE, "expected input of shape {N,C,H,W}, got %s",
		               ln_tensor_shape_str(x, got, sizeof got));
	const int64_t h = x->shape[2], w = x->shape[3];
	const int64_t ho = ln_pool2d_out_size(h, o->kh, o->sh, o->ph, o->ceil_mode);
	const int64_t wo = ln_pool2d_out_size(w, o->kw, o->sw, o->pw, o->ceil_mode);
	if (ho < 1 || wo < 1)
		return ln_fail(err, LN_ESHAPE,
		               "input of shape %s is smaller than the %lldx%lld window "
		               "(%lldx%lld after padding)",
		               ln_tensor_shape_str(x, got, sizeof got), (long long)o->kh,
		               (long long)o->kw, (long long)(h + 2 * o->ph), (long long)(w + 2 * o->pw));
	if (h * w > INT32_MAX)
		return ln_fail(err, LN_ERANGE, "input of shape %s is too large",
		               ln_tensor_shape_str(x, got, sizeof got));
	p->chans = x->shape[1];
	p->g = (ln_pool2d_geom){.planes = x->shape[0] * x->shape[1], .h = h, .w = w, .kh = o->kh,
	                        .kw = o->kw, .sh = o->sh, .sw = o->sw, .ph = o->ph, .pw = o->pw,
	                        .ho = ho, .wo = wo, .count_include_pad = o->count_include_pad};
	return LN_OK;
}

/* The geometry of planes [n0*C, n1*C): samples n0..n1-1. */
static ln_pool2d_geom rows_geom(const pool2d *p, int64_t n0, int64_t n1)
{
	ln_pool2d_geom g = p->g;
	g.planes = (n1 - n0) * p->chans;
	return g;
}

static ln_status pool_forward_prepare(ln_module *m, const ln_tensor *x, int parts, double *work,
                                      ln_error *err)
{
	pool2d *p = (pool2d *)m;
	ln_status st = check_input(p, x, err);
	if (st != LN_OK)
		return st;
	const ln_pool2d_geom *g = &p->g;
	if ((st = ln_tensor_ensure(&m->output, 4,
	                           (int64_t[]){x->shape[0], x->shape[1], g->ho, g->wo}, err)) != LN_OK)
		return st;
	size_t need = (size_t)ln_tensor_numel(&m->output);
	if (is_max(m) && need > p->argmax_cap) {
		int32_t *a = ln_malloc(need * sizeof(int32_t));
		if (!a)
			return ln_fail(err, LN_ENOMEM, "out of memory for %zu arg-max indices", need);
		ln_free(p->argmax);
		p->argmax = a;
		p->argmax_cap = need;
	}
	*work += (double)ln_tensor_numel(x);
	return LN_OK;
}

static void pool_forward_rows(ln_module *m, const ln_tensor *x, int64_t n0, int64_t n1, int part)
{
	pool2d *p = (pool2d *)m;
	const ln_pool2d_geom g = rows_geom(p, n0, n1);
	const int64_t at_x = n0 * p->chans * g.h * g.w, at_y = n0 * p->chans * g.ho * g.wo;
	float *y = ln_tensor_data(&m->output) + at_y;
	if (is_max(m))
		maxpool_forward_kernel(y, p->argmax + at_y, ln_tensor_data(x) + at_x, &g);
	else
		ln_avgpool2d_forward_naive(y, ln_tensor_data(x) + at_x, &g);
}

/* x is the last forward's input (ln_module_backward), so argmax and the
 * geometry belong to it. */
static ln_status pool_backward_prepare(ln_module *m, const ln_tensor *x, int parts, int runs,
                                       double *work, ln_error *err)
{
	pool2d *p = (pool2d *)m;
	ln_status st = check_input(p, x, err);
	if (st == LN_OK && m->want_gx)
		st = ln_tensor_ensure(&m->grad_input, 4, x->shape, err);
	*work += (double)ln_tensor_numel(x);
	return st;
}

static void pool_backward_rows(ln_module *m, const ln_tensor *x, const ln_tensor *gy, int64_t n0,
                               int64_t n1, int run, bool first, int part)
{
	pool2d *p = (pool2d *)m;
	if (!m->want_gx)
		return;
	const ln_pool2d_geom g = rows_geom(p, n0, n1);
	const int64_t at_x = n0 * p->chans * g.h * g.w, at_y = n0 * p->chans * g.ho * g.wo;
	float *gx = ln_tensor_data(&m->grad_input) + at_x;
	if (is_max(m))
		maxpool_backward_kernel(gx, ln_tensor_data(gy) + at_y, p->argmax + at_y, &g);
	else
		ln_avgpool2d_backward_naive(gx, ln_tensor_data(gy) + at_y, &g);
}

/*
 * ReLU then MaxPool2d in a chain (module.h, forward_rows_after): one pass
 * over each row pair for the common 2x2/stride-2 window on a CPU with AVX2
 * but not AVX-512 (whose separate kernels are not measured against the
 * joint ones).  The ReLU's output and input gradient are written as its
 * own kernels write them, bit for bit.  The backward reads the pooled
 * output of the last forward instead of the ReLU's input (pool_kernels.h),
 * as other layers' backwards read their outputs.
 */
static bool joint_relu(const ln_module *m, const ln_module *prev)
{
	return is_max(m) && ln_activation_is_relu(prev) && is_pool2(&((const pool2d *)m)->g) &&
	       ln_cpu_avx2_fma() && !ln_cpu_avx512();
}

static bool pool_forward_rows_after(ln_module *m, ln_module *prev, const ln_tensor *xp,
                                    int64_t n0, int64_t n1, int part)
{
	if (!joint_relu(m, prev))
		return false;
	pool2d *p = (pool2d *)m;
	const ln_pool2d_geom g = rows_geom(p, n0, n1);
	const int64_t at_x = n0 * p->chans * g.h * g.w, at_y = n0 * p->chans * g.ho * g.wo;
	ln_relu_maxpool2_forward_avx2(ln_tensor_data(&prev->output) + at_x,
	                              ln_tensor_data(&m->output) + at_y, p->argmax + at_y,
	                              ln_tensor_data(xp) + at_x, g.planes, g.h, g.w, g.ho, g.wo);
	return true;
}

static bool pool_backward_rows_after(ln_module *m, ln_module *prev, const ln_tensor *xp,
                                     const ln_tensor *gy, int64_t n0, int64_t n1, int run,
                                     bool first, int part)
{
	if (!m->want_gx || !prev->want_gx || !joint_relu(m, prev))
		return false;
	pool2d *p = (pool2d *)m;
	const ln_pool2d_geom g = rows_geom(p, n0, n1);
	const int64_t at_x = n0 * p->chans * g.h * g.w, at_y = n0 * p->chans * g.ho * g.wo;
	ln_relu_maxpool2_backward_avx2(ln_tensor_data(&prev->grad_input) + at_x,
	                               ln_tensor_data(&m->grad_input) + at_x,
	                               ln_tensor_data(gy) + at_y, p->argmax + at_y,
	                               ln_tensor_data(&m->output) + at_y, g.planes, g.h, g.w, g.ho,
	                               g.wo);
	return true;
}

static const ln_rows_ops pool_rows = {
	.forward_prepare = pool_forward_prepare,
	.forward_rows = pool_forward_rows,
	.backward_prepare = pool_backward_prepare,
	.backward_rows = pool_backward_rows,
	.forward_rows_after = pool_forward_rows_after,
	.backward_rows_after = pool_backward_rows_after,
};

static void pool_destroy(ln_module *m)
{
	pool2d *p = (pool2d *)m;
	ln_free(p->argmax);
	p->argmax = NULL;
	p->argmax_cap = 0;
}

static int pool_describe(const ln_module *m, char *buf, size_t size)
{
	const ln_pool2d_opts *o = &((const pool2d *)m)->o;
	char s[48], pad[64] = "";
	if (o->sh == o->sw)
		snprintf(s, sizeof s, "%lld", (long long)o->sh);
	else
		snprintf(s, sizeof s, "%lldx%lld", (long long)o->sh, (long long)o->sw);
	if (o->ph == o->pw && o->ph != 0)
		snprintf(pad, sizeof pad, ", padding %lld", (long long)o->ph);
	else if (o->ph != o->pw)
		snprintf(pad, sizeof pad, ", padding %lldx%lld", (long long)o->ph, (long long)o->pw);
	return snprintf(buf, size, "%s(%lldx%lld, stride %s%s%s%s)", m->cls->name, (long long)o->kh,
	                (long long)o->kw, s, pad, o->ceil_mode ? ", ceil_mode" : "",
	                o->count_include_pad ? "" : ", count_include_pad=false");
}

/* ==== construction ================================================================= */

/* Config slots (the classes' config_names). */
enum { P_KH, P_SH, P_KW, P_SW, P_PH, P_PW, P_CEIL, P_COUNT_PAD, P_COUNT };

static ln_status pool_new(ln_module **out, const ln_module_class *cls, const ln_pool2d_opts *o,
                          ln_error *err)
{
	*out = NULL;
	const struct { const char *name; int64_t v, lo; } args[] = {
		{o->kh == o->kw ? "kernel size" : "kernel height", o->kh, 1},
		{o->kh == o->kw ? "kernel size" : "kernel width", o->kw, 1}, {"stride", o->sh, 1},
		{"stride", o->sw, 1}, {"padding", o->ph, 0}, {"padding", o->pw, 0},
	};
	for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
		if (args[i].v < args[i].lo)
			return ln_fail(err, LN_ERANGE, "%s must be >= %lld, got %lld", args[i].name,
			               (long long)args[i].lo, (long long)args[i].v);
		if (args[i].v > INT32_MAX)
			return ln_fail(err, LN_ERANGE, "%s must be <= %d, got %lld", args[i].name,
			               INT32_MAX, (long long)args[i].v);
	}
	if (o->ph > o->kh / 2 || o->pw > o->kw / 2)  /* as PyTorch */
		return ln_fail(err, LN_ERANGE,
		               "padding must be at most half the window, got padding %lldx%lld for a "
		               "%lldx%lld window",
		               (long long)o->ph, (long long)o->pw, (long long)o->kh, (long long)o->kw);
	const bool avg = cls == &ln_avgpool2d_class;
	if (!avg && !o->count_include_pad)
		return ln_fail(err, LN_EARG, "count_include_pad applies to AvgPool2d only");
	ln_module *m;
	ln_status st = ln_module_alloc(&m, cls, err);
	if (st != LN_OK)
		return st;
	pool2d *p = (pool2d *)m;
	p->o = *o;
	const double config[P_COUNT] = {
		[P_KH] = (double)o->kh, [P_SH] = (double)o->sh, [P_KW] = (double)o->kw,
		[P_SW] = (double)o->sw, [P_PH] = (double)o->ph, [P_PW] = (double)o->pw,
		[P_CEIL] = o->ceil_mode ? 1 : 0, [P_COUNT_PAD] = o->count_include_pad ? 1 : 0,
	};
	m->nconfig = avg ? P_COUNT : P_COUNT_PAD;
	memcpy(m->config, config, sizeof config);
	*out = m;
	return LN_OK;
}

ln_status ln_maxpool2d_new_opts(ln_module **out, const ln_pool2d_opts *o, ln_error *err)
{
	return pool_new(out, &ln_maxpool2d_class, o, err);
}

ln_status ln_avgpool2d_new_opts(ln_module **out, const ln_pool2d_opts *o, ln_error *err)
{
	return pool_new(out, &ln_avgpool2d_class, o, err);
}

/* The square case; stride <= 0: stride = k. */
static ln_status square(ln_module **out, const ln_module_class *cls, int64_t k, int64_t stride,
                        ln_error *err)
{
	ln_pool2d_opts o;
	ln_pool2d_opts_init(&o, k);
	if (stride > 0)
		o.sh = o.sw = stride;
	return pool_new(out, cls, &o, err);
}

ln_status ln_maxpool2d_new(ln_module **out, int64_t k, int64_t stride, ln_error *err)
{
	return square(out, &ln_maxpool2d_class, k, stride, err);
}

ln_status ln_avgpool2d_new(ln_module **out, int64_t k, int64_t stride, ln_error *err)
{
	return square(out, &ln_avgpool2d_class, k, stride, err);
}

/* From a config: integers, k >= 1; 0 stands for "as given by another
 * entry" where a file written before the entry existed lacks it (stride
 * 0: k; kw 0: k; stride_w 0: stride); pool_new checks the rest. */
static ln_status pool_create(ln_module **out, const ln_module_class *cls,
                             const ln_module_build *ctx, const double *config, ln_error *err)
{
	static const char *const what[P_COUNT] = {"k", "stride", "kw", "stride_w", "padding",
	                                          "padding_w", "ceil_mode", "count_include_pad"};
	const bool avg = cls == &ln_avgpool2d_class;
	int64_t v[P_COUNT] = {[P_COUNT_PAD] = 1};
	*out = NULL;
	for (int i = 0; i < (avg ? P_COUNT : P_COUNT_PAD); i++) {
		const int64_t lo = i == P_KH ? 1 : 0, hi = i >= P_CEIL ? 1 : INT64_MAX;
		ln_status st = ln_config_int(&v[i], config[i], what[i], lo, hi, err);
		if (st != LN_OK)
			return st;
	}
	const int64_t sh = v[P_SH] ? v[P_SH] : v[P_KH], kw = v[P_KW] ? v[P_KW] : v[P_KH];
	ln_pool2d_opts o = {
		.kh = v[P_KH], .kw = kw, .sh = sh, .sw = v[P_SW] ? v[P_SW] : v[P_SH] ? sh : kw,
		.ph = v[P_PH], .pw = v[P_PW], .ceil_mode = v[P_CEIL] != 0,
		.count_include_pad = v[P_COUNT_PAD] != 0,
	};
	return pool_new(out, cls, &o, err);
}

const ln_module_class ln_maxpool2d_class = {
	.name = "MaxPool2d",
	.size = sizeof(pool2d),
	.rows = &pool_rows,
	.destroy = pool_destroy,
	.config_names = {"k", "stride", "kw", "stride_w", "padding", "padding_w", "ceil_mode", NULL},
	/* files written before the entries after stride existed lack them */
	.config_defaults = {[P_KW] = 0, [P_SW] = 0, [P_PH] = 0, [P_PW] = 0, [P_CEIL] = 0},
	.config_optional = P_COUNT_PAD - P_KW,
	.create = pool_create,
	.describe = pool_describe,
};

const ln_module_class ln_avgpool2d_class = {
	.name = "AvgPool2d",
	.size = sizeof(pool2d),
	.rows = &pool_rows,
	.destroy = pool_destroy,
	.config_names = {"k", "stride", "kw", "stride_w", "padding", "padding_w", "ceil_mode",
	                 "count_include_pad", NULL},
	.config_defaults = {[P_KW] = 0, [P_SW] = 0, [P_PH] = 0, [P_PW] = 0, [P_CEIL] = 0,
	                    [P_COUNT_PAD] = 1},
	.config_optional = P_COUNT - P_KW,
	.create = pool_create,
	.describe = pool_describe,
};
