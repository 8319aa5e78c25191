/*
 * pool.c -- MaxPool2d and AvgPool2d over {N,C,H,W}.
 *
 * A k x k window moves with stride s over each channel of each sample; no
 * padding, so the output is {N,C,ho,wo} with ho = floor((H-k)/s)+1, and
 * likewise wo.
 *
 *   MaxPool2d  y[n,c,i,j] = max_{u,v} x[n,c,i*s+u,j*s+v]
 *              forward saves the position of that maximum (the first one in
 *              row-major window order) for every output element; backward
 *              routes each gradient there: gx = sum over the outputs whose
 *              arg-max is that element of gy (several when windows overlap).
 *   AvgPool2d  y[n,c,i,j] = 1/k^2 sum_{u,v} x[n,c,i*s+u,j*s+v]
 *              gx[n,c,a,b] = 1/k^2 sum over the windows holding (a,b) of gy.
 * A NaN in a window makes the max NaN (and its arg-max the last NaN).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/cpu.h"
#include "conv.h"
#include "nn_internal.h"
#include "pool_kernels.h"

typedef struct pool2d {
	ln_module base;
	int64_t k, stride;
	int32_t *argmax;    /* MaxPool2d: (N,C,ho,wo) offsets into the (H,W) plane of the
	                       last successful forward's input */
	size_t argmax_cap;  /* in elements; from ln_malloc, freed by destroy */
} pool2d;

static int pool_describe(const ln_module *m, char *buf, size_t size)
{
	const pool2d *p = (const pool2d *)m;
	return snprintf(buf, size, "%s(%lldx%lld, stride %lld)", m->cls->name, (long long)p->k,
	                (long long)p->k, (long long)p->stride);
}

/* Checks x and computes the output shape y {N,C,ho,wo}. */
static ln_status check_input(const ln_module *m, const ln_tensor *x, int64_t y[4], ln_error *err)
{
	const pool2d *p = (const pool2d *)m;
	char got[96];
	if (x->ndim != 4)
		return ln_fail(err, LN_ESHAPE, "expected input of shape {N,C,H,W}, got %s",
		               ln_tensor_shape_str(x, got, sizeof got));
	if (x->shape[2] < p->k || x->shape[3] < p->k)
		return ln_fail(err, LN_ESHAPE,
		               "input of shape %s is smaller than the %lldx%lld window",
		               ln_tensor_shape_str(x, got, sizeof got), (long long)p->k,
		               (long long)p->k);
	if (x->shape[2] * x->shape[3] > INT32_MAX)
		return ln_fail(err, LN_ERANGE, "input of shape %s is too large",
		               ln_tensor_shape_str(x, got, sizeof got));
	y[0] = x->shape[0];
	y[1] = x->shape[1];
	y[2] = (x->shape[2] - p->k) / p->stride + 1;
	y[3] = (x->shape[3] - p->k) / p->stride + 1;
	return LN_OK;
}

/* ==== MaxPool2d ============================================================= */

/* One step of the window walk below: val takes the place of the maximum
 * when greater, or when NaN. */
#define MAX_STEP(val, off)                          \
	do {                                            \
		const float v_ = (val);                     \
		const bool t_ = v_ > best || isnan(v_);     \
		best = t_ ? v_ : best;                      \
		at = t_ ? (off) : at;                       \
	} while (0)

/* maxpool_forward_kernel for the common 2x2 window with stride 2: the
 * same walk, (0,0) (0,1) (1,0) (1,1), written out so that the loop along
 * an output row reads both input rows pairwise and vectorises (four times
 * faster on the benchmark CNN's 28x28 planes).  y and am do not overlap x. */
static void maxpool2_forward_kernel(float *restrict y, int32_t *restrict am,
                                    const float *restrict x, int64_t planes, int64_t h, int64_t w,
                                    int64_t ho, int64_t wo)
{
	for (int64_t pl = 0; pl < planes; pl++) {
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

/* y (planes,ho,wo), am (planes,ho,wo) = max and its offset a*w+b over each
 * window of x (planes,h,w).  The window elements are visited in row-major
 * order and only a strictly greater value takes the place, so a tie goes
 * to the first; as in PyTorch a NaN takes the place and keeps it (nothing
 * compares greater than NaN).  The inner loop runs along an output row,
 * over independent windows, without branches (random data mispredicts). */
static void maxpool_forward_kernel(float *y, int32_t *am, const float *x, int64_t planes,
                                   int64_t h, int64_t w, int64_t ho, int64_t wo, int64_t k,
                                   int64_t s)
{
	if (k == 2 && s == 2) {
		if (ln_cpu_avx512())
			ln_maxpool2_forward_avx512(y, am, x, planes, h, w, ho, wo);
		else
			maxpool2_forward_kernel(y, am, x, planes, h, w, ho, wo);
		return;
	}
	for (int64_t pl = 0; pl < planes; pl++) {
		const float *xp = x + pl * h * w;
		for (int64_t i = 0; i < ho; i++) {
			float *yr = y + (pl * ho + i) * wo;
			int32_t *ar = am + (pl * ho + i) * wo;
			for (int64_t j = 0; j < wo; j++) {
				yr[j] = xp[i * s * w + j * s];
				ar[j] = (int32_t)(i * s * w + j * s);
			}
			for (int64_t u = 0; u < k; u++)
				for (int64_t v = u == 0; v < k; v++) {
					const int64_t row = (i * s + u) * w + v;
					for (int64_t j = 0; j < wo; j++) {
						const float val = xp[row + j * s];
						const bool take = val > yr[j] || isnan(val);
						yr[j] = take ? val : yr[j];
						ar[j] = take ? (int32_t)(row + j * s) : ar[j];
					}
				}
		}
	}
}

/* gx (planes,h,w) = 0, then gx[am[o]] += gy[o] plane by plane. */
static void maxpool_backward_kernel(float *gx, const float *gy, const int32_t *am, int64_t planes,
                                    int64_t h, int64_t w, int64_t ho, int64_t wo)
{
	memset(gx, 0, (size_t)(planes * h * w) * sizeof(float));
	for (int64_t pl = 0; pl < planes; pl++) {
		float *gp = gx + pl * h * w;
		const float *gyp = gy + pl * ho * wo;
		const int32_t *ap = am + pl * ho * wo;
		for (int64_t q = 0; q < ho * wo; q++)
			gp[ap[q]] += gyp[q];
	}
}

static ln_status maxpool_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	pool2d *p = (pool2d *)m;
	int64_t y[4];
	ln_status st = check_input(m, x, y, err);
	if (st != LN_OK)
		return st;
	if ((st = ln_tensor_ensure(&m->output, 4, y, err)) != LN_OK)
		return st;
	size_t need = (size_t)ln_tensor_numel(&m->output);
	if (need > p->argmax_cap) {
		int32_t *a = ln_malloc(need * sizeof(int32_t));
		if (!a)
			return ln_fail(err, LN_ENOMEM, "out of memory for %zu arg-max indices", need);
		ln_free(p->argmax);
		p->argmax = a;
		p->argmax_cap = need;
	}
	maxpool_forward_kernel(ln_tensor_data(&m->output), p->argmax, ln_tensor_data(x),
	                       y[0] * y[1], x->shape[2], x->shape[3], y[2], y[3], p->k, p->stride);
	return LN_OK;
}

/* x is the last forward's input and gy has its output's shape y
 * (ln_module_backward), so argmax belongs to them. */
static ln_status maxpool_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                  ln_error *err)
{
	pool2d *p = (pool2d *)m;
	const int64_t *y = m->output.shape;
	ln_status st = ln_tensor_ensure(&m->grad_input, 4, x->shape, err);
	if (st != LN_OK)
		return st;
	if (p->k == 2 && p->stride == 2 && ln_cpu_avx512())
		ln_maxpool2_backward_avx512(ln_tensor_data(&m->grad_input), ln_tensor_data(gy), p->argmax,
		                            y[0] * y[1], x->shape[2], x->shape[3], y[2], y[3]);
	else
		maxpool_backward_kernel(ln_tensor_data(&m->grad_input), ln_tensor_data(gy), p->argmax,
		                        y[0] * y[1], x->shape[2], x->shape[3], y[2], y[3]);
	return LN_OK;
}

static void maxpool_destroy(ln_module *m)
{
	pool2d *p = (pool2d *)m;
	ln_free(p->argmax);
	p->argmax = NULL;
	p->argmax_cap = 0;
}

/* ==== AvgPool2d ============================================================= */

/* y (planes,ho,wo) = mean of each k x k window of x (planes,h,w), summed in
 * double. */
static void avgpool_forward_kernel(float *y, const float *x, int64_t planes, int64_t h, int64_t w,
                                   int64_t ho, int64_t wo, int64_t k, int64_t s)
{
	const double scale = 1.0 / (double)(k * k);
	for (int64_t pl = 0; pl < planes; pl++) {
		const float *xp = x + pl * h * w;
		float *yp = y + pl * ho * wo;
		for (int64_t i = 0; i < ho; i++)
			for (int64_t j = 0; j < wo; j++) {
				double acc = 0;
				for (int64_t u = 0; u < k; u++)
					for (int64_t v = 0; v < k; v++)
						acc += xp[(i * s + u) * w + j * s + v];
				yp[i * wo + j] = (float)(acc * scale);
			}
	}
}

/* gx (planes,h,w) = 0, then every window adds gy/k^2 to the elements it
 * covers. */
static void avgpool_backward_kernel(float *gx, const float *gy, int64_t planes, int64_t h,
                                    int64_t w, int64_t ho, int64_t wo, int64_t k, int64_t s)
{
	const float scale = (float)(1.0 / (double)(k * k));
	memset(gx, 0, (size_t)(planes * h * w) * sizeof(float));
	for (int64_t pl = 0; pl < planes; pl++) {
		float *gp = gx + pl * h * w;
		const float *gyp = gy + pl * ho * wo;
		for (int64_t i = 0; i < ho; i++)
			for (int64_t j = 0; j < wo; j++) {
				float g = gyp[i * wo + j] * scale;
				for (int64_t u = 0; u < k; u++)
					for (int64_t v = 0; v < k; v++)
						gp[(i * s + u) * w + j * s + v] += g;
			}
	}
}

static ln_status avgpool_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	pool2d *p = (pool2d *)m;
	int64_t y[4];
	ln_status st = check_input(m, x, y, err);
	if (st != LN_OK || (st = ln_tensor_ensure(&m->output, 4, y, err)) != LN_OK)
		return st;
	avgpool_forward_kernel(ln_tensor_data(&m->output), ln_tensor_data(x), y[0] * y[1],
	                       x->shape[2], x->shape[3], y[2], y[3], p->k, p->stride);
	return LN_OK;
}

/* As maxpool_backward. */
static ln_status avgpool_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                  ln_error *err)
{
	pool2d *p = (pool2d *)m;
	const int64_t *y = m->output.shape;
	ln_status st = ln_tensor_ensure(&m->grad_input, 4, x->shape, err);
	if (st != LN_OK)
		return st;
	avgpool_backward_kernel(ln_tensor_data(&m->grad_input), ln_tensor_data(gy), y[0] * y[1],
	                        x->shape[2], x->shape[3], y[2], y[3], p->k, p->stride);
	return LN_OK;
}

/* ==== construction ========================================================== */

static ln_status pool_new(ln_module **out, const ln_module_class *cls, int64_t k, int64_t stride,
                          ln_error *err)
{
	*out = NULL;
	if (k < 1)
		return ln_fail(err, LN_ERANGE, "kernel size must be >= 1, got %lld", (long long)k);
	if (stride <= 0)
		stride = k;
	if (k > INT32_MAX || stride > INT32_MAX)
		return ln_fail(err, LN_ERANGE, "%s must be <= %d, got %lld",
		               k > INT32_MAX ? "kernel size" : "stride", INT32_MAX,
		               (long long)(k > INT32_MAX ? k : stride));
	ln_module *m;
	ln_status st = ln_module_alloc(&m, cls, err);
	if (st != LN_OK)
		return st;
	pool2d *p = (pool2d *)m;
	p->k = k;
	p->stride = stride;
	m->nconfig = 2;
	m->config[0] = (double)k;
	m->config[1] = (double)stride;
	*out = m;
	return LN_OK;
}

ln_status ln_maxpool2d_new(ln_module **out, int64_t k, int64_t stride, ln_error *err)
{
	return pool_new(out, &ln_maxpool2d_class, k, stride, err);
}

ln_status ln_avgpool2d_new(ln_module **out, int64_t k, int64_t stride, ln_error *err)
{
	return pool_new(out, &ln_avgpool2d_class, k, stride, err);
}

/* config {k, stride}: integers, k >= 1, stride >= 0 (0: stride = k);
 * pool_new checks their upper bounds. */
static ln_status pool_create(ln_module **out, const ln_module_class *cls,
                             const ln_module_build *ctx, const double *config, ln_error *err)
{
	int64_t k, stride;
	ln_status st;
	*out = NULL;
	if ((st = ln_config_int(&k, config[0], "k", 1, INT64_MAX, err)) != LN_OK ||
	    (st = ln_config_int(&stride, config[1], "stride", 0, INT64_MAX, err)) != LN_OK)
		return st;
	return pool_new(out, cls, k, stride, err);
}

const ln_module_class ln_maxpool2d_class = {
	.name = "MaxPool2d",
	.size = sizeof(pool2d),
	.forward = maxpool_forward,
	.backward = maxpool_backward,
	.destroy = maxpool_destroy,
	.config_names = {"k", "stride", NULL},
	.create = pool_create,
	.describe = pool_describe,
};

const ln_module_class ln_avgpool2d_class = {
	.name = "AvgPool2d",
	.size = sizeof(pool2d),
	.forward = avgpool_forward,
	.backward = avgpool_backward,
	.config_names = {"k", "stride", NULL},
	.create = pool_create,
	.describe = pool_describe,
};
