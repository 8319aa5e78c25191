/*
 * adaptive_pool.c -- AdaptiveAvgPool2d(oh, ow): the mean over oh x ow
 * windows that tile each channel of {N,C,H,W}, whatever H and W are, as
 * torch.nn.AdaptiveAvgPool2d.  AdaptiveAvgPool2d(1) is global average
 * pooling: {N,C,H,W} -> {N,C,1,1}.
 *
 * Output row i covers input rows [floor(i*H/oh), ceil((i+1)*H/oh)), and
 * likewise for columns, so windows differ in size by at most one and may
 * overlap when H is not a multiple of oh:
 *
 *   y[n,c,i,j] = 1/|w_ij| sum_{(a,b) in w_ij} x[n,c,a,b]
 *   gx[n,c,a,b] = sum over the windows w_ij holding (a,b) of gy[n,c,i,j] / |w_ij|
 *
 * Sums run in double, in row-major order.  Forward saves nothing.
 * Config: out_h, out_w (>= 1).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "conv.h"
#include "nn_internal.h"

/* The window of output index i along a dimension of size n split in o. */
static inline int64_t win_start(int64_t i, int64_t n, int64_t o) { return i * n / o; }
static inline int64_t win_end(int64_t i, int64_t n, int64_t o) { return ((i + 1) * n + o - 1) / o; }

/* y (planes, oh, ow) from x (planes, h, w). */
void ln_adaptive_avgpool2d_forward_kernel(float *y, const float *x, int64_t planes, int64_t h,
                                          int64_t w, int64_t oh, int64_t ow)
{
	for (int64_t p = 0; p < planes; p++) {
		const float *xp = x + p * h * w;
		float *yp = y + p * oh * ow;
		for (int64_t i = 0; i < oh; i++) {
			int64_t a0 = win_start(i, h, oh), a1 = win_end(i, h, oh);
			for (int64_t j = 0; j < ow; j++) {
				int64_t b0 = win_start(j, w, ow), b1 = win_end(j, w, ow);
				double s = 0;
				for (int64_t a = a0; a < a1; a++)
					for (int64_t b = b0; b < b1; b++)
						s += xp[a * w + b];
				yp[i * ow + j] = (float)(s / (double)((a1 - a0) * (b1 - b0)));
			}
		}
	}
}

/* gx (planes, h, w) = the adjoint of the forward applied to gy (planes, oh, ow). */
void ln_adaptive_avgpool2d_backward_kernel(float *gx, const float *gy, int64_t planes, int64_t h,
                                           int64_t w, int64_t oh, int64_t ow)
{
	memset(gx, 0, (size_t)(planes * h * w) * sizeof(float));
	for (int64_t p = 0; p < planes; p++) {
		float *gp = gx + p * h * w;
		const float *yp = gy + p * oh * ow;
		for (int64_t i = 0; i < oh; i++) {
			int64_t a0 = win_start(i, h, oh), a1 = win_end(i, h, oh);
			for (int64_t j = 0; j < ow; j++) {
				int64_t b0 = win_start(j, w, ow), b1 = win_end(j, w, ow);
				float g = (float)(yp[i * ow + j] / (double)((a1 - a0) * (b1 - b0)));
				for (int64_t a = a0; a < a1; a++)
					for (int64_t b = b0; b < b1; b++)
						gp[a * w + b] += g;
			}
		}
	}
}

static ln_status check_input(const ln_tensor *x, ln_error *err)
{
	if (x->ndim == 4)
		return LN_OK;
	char got[96];
	return ln_fail(err, LN_ESHAPE, "expected input of shape {N,C,H,W}, got %s",
	               ln_tensor_shape_str(x, got, sizeof got));
}

static ln_status adaptive_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	ln_status s = check_input(x, err);
	int64_t oh = (int64_t)m->config[0], ow = (int64_t)m->config[1];
	if (s == LN_OK)
		s = ln_tensor_ensure(&m->output, 4, (int64_t[]){x->shape[0], x->shape[1], oh, ow}, err);
	if (s != LN_OK)
		return s;
	ln_adaptive_avgpool2d_forward_kernel(ln_tensor_data(&m->output), ln_tensor_data(x),
	                                     x->shape[0] * x->shape[1], x->shape[2], x->shape[3], oh,
	                                     ow);
	return LN_OK;
}

static ln_status adaptive_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                   ln_error *err)
{
	ln_status s = ln_tensor_ensure(&m->grad_input, 4, x->shape, err);
	if (s != LN_OK)
		return s;
	ln_adaptive_avgpool2d_backward_kernel(ln_tensor_data(&m->grad_input), ln_tensor_data(gy),
	                                      x->shape[0] * x->shape[1], x->shape[2], x->shape[3],
	                                      gy->shape[2], gy->shape[3]);
	return LN_OK;
}

/* config: out_h, out_w, integers >= 1 (at most 2^31: far beyond any image). */
static ln_status adaptive_create(ln_module **out, const ln_module_class *cls,
                                 const ln_module_build *ctx, const double *config, ln_error *err)
{
	if (!config)
		config = cls->config_defaults;
	int64_t oh, ow;
	ln_status s = ln_config_int(&oh, config[0], "out_h", 1, INT32_MAX, err);
	if (s == LN_OK)
		s = ln_config_int(&ow, config[1], "out_w", 1, INT32_MAX, err);
	ln_module *m;
	if (s == LN_OK)
		s = ln_module_alloc(&m, cls, err);
	if (s != LN_OK)
		return s;
	m->nconfig = 2;
	m->config[0] = (double)oh;
	m->config[1] = (double)ow;
	*out = m;
	return LN_OK;
}

ln_status ln_adaptive_avgpool2d_new(ln_module **out, int64_t oh, int64_t ow, ln_error *err)
{
	return adaptive_create(out, &ln_adaptive_avgpool2d_class, NULL,
	                       (const double[]){(double)oh, (double)ow}, err);
}

static int adaptive_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "AdaptiveAvgPool2d(%gx%g)", m->config[0], m->config[1]);
}

const ln_module_class ln_adaptive_avgpool2d_class = {
	.name = "AdaptiveAvgPool2d",
	.size = sizeof(ln_module),
	.forward = adaptive_forward,
	.backward = adaptive_backward,
	.config_names = {"out_h", "out_w"},
	.config_defaults = {1, 1},
	.create = adaptive_create,
	.describe = adaptive_describe,
};
