/*
 * layers.h -- the basic layers and the Sequential container.
 *
 * Each constructor returns a new module with one reference (release it
 * with ln_module_release) in *out, or an error with *out untouched.  The
 * protocol (forward/backward, buffers, parameters) is in module.h; the
 * class objects below are the vtables, also listed in registry.c.
 *
 *     ln_module *seq, *l1, *act, *l2;
 *     ln_sequential_new(&seq, &err);
 *     ln_linear_new(&l1, NULL, 784, 256, true, &err);  // NULL: default build
 *     ln_sequential_add(seq, l1, &err);  ln_module_release(l1);  // seq holds it
 *     ...
 *     ln_module_forward(seq, &x, &err);        // seq->output
 *     ln_module_backward(seq, &x, &gy, &err);  // seq->grad_input, grads +=
 *
 * Shapes: dimension 0 is the batch N everywhere.
 */
#ifndef LN_LAYERS_H
#define LN_LAYERS_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"
#include "module.h"

extern const ln_module_class ln_linear_class;
extern const ln_module_class ln_softmax_class;
extern const ln_module_class ln_log_softmax_class;
extern const ln_module_class ln_dropout_class;
extern const ln_module_class ln_flatten_class;
extern const ln_module_class ln_sequential_class;
extern const ln_module_class ln_external_class;
extern const ln_module_class ln_layernorm_class;

/* ---- Linear (linear.c) ------------------------------------------------------
 *
 * y = x W^T + b on x {N,nin}, or {N,...,nin} giving {N,...,nout} (the
 * leading dimensions are rows); weight {nout,nin}, bias {nout} (param 0 and
 * 1; no bias param when bias is false).  Weight starts He-normal
 * (N(0, 2/nin), for ReLU networks), bias at zero; nn.init.* overrides.
 * Config: nin, nout, bias (0/1).  LN_ERANGE unless nin, nout >= 1, or
 * when the parameters exceed ctx's budget (ctx may be NULL: module.h). */
ln_status ln_linear_new(ln_module **out, const ln_module_build *ctx, int64_t nin, int64_t nout,
                        bool bias, ln_error *err);

/* Kernels, exposed so that the fast and naive forms can be tested against
 * each other.  All buffers contiguous, row-major.
 *   forward:  y (N,nout) = x (N,nin) w^T (nin,nout) + b (nout); b may be NULL
 *   backward: gx (N,nin) = gy (N,nout) w (nout,nin)          (overwritten)
 *             gw (nout,nin) += gy^T (nout,N) x (N,nin)
 *             gb (nout) += sum over rows of gy; gb may be NULL */
void ln_linear_forward_kernel(float *y, const float *x, const float *w, const float *b, int64_t n,
                              int64_t nin, int64_t nout);
void ln_linear_forward_naive(float *y, const float *x, const float *w, const float *b, int64_t n,
                             int64_t nin, int64_t nout);
void ln_linear_backward_kernel(float *gx, float *gw, float *gb, const float *gy, const float *x,
                               const float *w, int64_t n, int64_t nin, int64_t nout);
void ln_linear_backward_naive(float *gx, float *gw, float *gb, const float *gy, const float *x,
                              const float *w, int64_t n, int64_t nin, int64_t nout);

/* ---- activations (activation.c) ---------------------------------------------
 *
 * The elementwise activations, on any input of at least 2 dimensions
 * ({N,...}), in one table: Identity, Sigmoid, Tanh, ReLU, LeakyReLU (y = x
 * for x > 0, slope*x otherwise; config "slope", default 0.01), GELU (exact:
 * x Phi(x) with the normal CDF Phi, through erf), SiLU (x sigmoid(x)).  A row is the module class and its two kernels;
 * the registry and the Lua binding list the rows, so a new activation is
 * two kernels and one row in activation.c. */
typedef struct ln_activation_def {
	ln_module_class cls;  /* first member: a module's cls points at its row */
	/* y (n) = f(x); a is the parameter (0 for the rows without one) */
	void (*forward)(float *y, const float *x, int64_t n, float a);
	/* gx (n) = gy f'(x), from x or from y = f(x) (both given) */
	void (*backward)(float *gx, const float *gy, const float *x, const float *y, int64_t n,
	                 float a);
} ln_activation_def;

/* The rows of the table; *count set to their number. */
const ln_activation_def *ln_activation_defs(int *count);
/* Builds the activation called name ("ReLU"); param is its parameter
 * (LeakyReLU's slope; finite, else LN_ERANGE) and is ignored by the rows
 * without one.  LN_EARG for an unknown name. */
ln_status ln_activation_new(ln_module **out, const char *name, double param, ln_error *err);
/* GELU's references in libm's erff and expf, n elements: y = x Phi(x) and
 * gx = gy (Phi(x) + x phi(x)); the table's GELU kernels agree within
 * cellmath.h's bound for ln_normal_cdf_fast. */
void ln_gelu_forward_naive(float *y, const float *x, int64_t n);
void ln_gelu_backward_naive(float *gx, const float *gy, const float *x, int64_t n);
/* Whether m is a ReLU (for the joint kernels of a chain, module.h). */
bool ln_activation_is_relu(const ln_module *m);

/* ---- Softmax, LogSoftmax (softmax.c) ----------------------------------------
 * Over one dimension of x, at least 2-D: the last by default (x {N,...,C},
 * usually {N,C}), or dim (1-based; negative counts from the end, -1 the
 * last; config "dim"), checked against each input's rank at forward.
 * Computed stably (the maximum is subtracted first).  LN_ERANGE for dim 0
 * or |dim| > LN_MAX_DIMS. */
ln_status ln_softmax_new(ln_module **out, ln_error *err);
ln_status ln_log_softmax_new(ln_module **out, ln_error *err);
ln_status ln_softmax_new_dim(ln_module **out, int64_t dim, ln_error *err);
ln_status ln_log_softmax_new_dim(ln_module **out, int64_t dim, ln_error *err);

/* ---- Dropout (dropout.c) ------------------------------------------------------
 * In training mode each element is dropped with probability p (from the
 * lunet rng) and kept values are scaled by 1/(1-p) (inverted dropout), so
 * that evaluation needs no rescaling; backward uses the mask of the last
 * forward.  In evaluate mode it is the identity.  Input {N,...}, at least
 * 2-D.  p in [0,1), else
 * LN_ERANGE.  Config: p. */
ln_status ln_dropout_new(ln_module **out, double p, ln_error *err);

/* ---- Flatten (flatten.c) ----------------------------------------------------
 * {N,d1,d2,...} -> {N,d1*d2*...} ({N} -> {N,1}); backward reshapes back. */
ln_status ln_flatten_new(ln_module **out, ln_error *err);

/* ---- LayerNorm (layernorm.c) ---------------------------------------------------
 * Normalises each row of x {N,...,d} over its last dimension d (mean 0,
 * variance 1, biased variance plus eps under the square root) and scales
 * and shifts it: y = xhat * weight + bias, weight {d} starting at 1, bias
 * {d} at 0 (as torch.nn.LayerNorm(d)).  Config: d, eps.  LN_ERANGE unless
 * d >= 1 and eps is finite and > 0. */
ln_status ln_layernorm_new(ln_module **out, const ln_module_build *ctx, int64_t d, double eps,
                           ln_error *err);
/* Kernels, x (M,d) as M rows:
 *   forward   y (M,d), mean (M), rstd (M) = 1/sqrt(var + eps) written
 *   backward  gx (M,d) overwritten; acc (2d) += sum_r gy_r xhat_r, then
 *             sum_r gy_r (the weight and bias gradients, in double) */
void ln_layernorm_forward_kernel(float *y, float *mean, float *rstd, const float *x,
                                 const float *w, const float *b, int64_t rows, int64_t d,
                                 double eps);
void ln_layernorm_backward_kernel(float *gx, double *acc, const float *gy, const float *x,
                                  const float *mean, const float *rstd, const float *w,
                                  int64_t rows, int64_t d);
/* The references of the two kernels above (one double accumulator per
 * sum, in order), to test them against. */
void ln_layernorm_forward_naive(float *y, float *mean, float *rstd, const float *x,
                                const float *w, const float *b, int64_t rows, int64_t d,
                                double eps);
void ln_layernorm_backward_naive(float *gx, double *acc, const float *gy, const float *x,
                                 const float *mean, const float *rstd, const float *w,
                                 int64_t rows, int64_t d);

/* ---- Sequential (sequential.c) --------------------------------------------------
 * Applies its children in order.  Its output is a view of the last child's
 * output and its grad_input a view of the first child's grad_input.  A
 * child's error comes back prefixed with its 1-based position and class:
 * "Sequential: layer 3 (Linear): expected input of shape {N,784}, got
 * {64,785}".  Forward on an empty Sequential is LN_ESTATE. */
ln_status ln_sequential_new(ln_module **out, ln_error *err);
/* Appends child; seq takes its own reference (the caller keeps its one).
 * LN_EARG if seq is not a Sequential, if child is already in seq's tree
 * (a module has one output buffer, so it can sit at one place only), or if
 * seq is in child's tree (a cycle).  Modules do not know their parents, so
 * a child shared with a container that holds seq is not detected.
 * LN_ENOMEM leaves seq unchanged. */
ln_status ln_sequential_add(ln_module *seq, ln_module *child, ln_error *err);

/* ---- External (external.c) ----------------------------------------------------
 *
 * A module whose forward and backward are implemented outside C (a Lua
 * table with forward/backward, say).  The callbacks receive an EMPTY
 * tensor and fill it, either with ln_tensor_ref of a tensor they own
 * elsewhere or with a new tensor; the module keeps that reference as its
 * output / grad_input until the next call.  A callback reports failure by
 * returning non-LN_OK with a message in err.  The output may have any
 * shape; grad_input must have the shape of x (checked).  Non-contiguous
 * results are copied into a buffer the module owns. */
typedef struct ln_external_ops {
	ln_status (*forward)(void *ctx, const ln_tensor *x, ln_tensor *out, ln_error *err);
	ln_status (*backward)(void *ctx, const ln_tensor *x, const ln_tensor *gy,
	                      ln_tensor *grad_input, ln_error *err);
	/* Called once when the module is freed.  May be NULL. */
	void (*release)(void *ctx);
	/* Told when training mode changes (ln_module_set_training).  May be NULL. */
	void (*set_training)(void *ctx, bool training);
	/* One-line description, as snprintf.  May be NULL ("External"). */
	int (*describe)(void *ctx, char *buf, size_t size);
} ln_external_ops;

/* ops must outlive the module (usually a static const).  On failure ctx is
 * NOT released: the caller still owns it. */
ln_status ln_external_new(ln_module **out, const ln_external_ops *ops, void *ctx, ln_error *err);
/* The ctx given to ln_external_new (NULL if m is not External). */
void *ln_external_ctx(const ln_module *m);
/* Makes m's parameters views of params[i] with gradients grads[i] (shapes
 * must match pairwise), so that visit_params and zero_grad see them.
 * Replaces any earlier set.  LN_ERANGE if n > LN_MODULE_MAX_PARAMS,
 * LN_ESHAPE if a pair differs, LN_EARG if m is not External. */
ln_status ln_external_set_params(ln_module *m, int n, const ln_tensor *params,
                                 const ln_tensor *grads, ln_error *err);

#endif
