/*
 * conv.h -- convolutional layers: Conv2d, MaxPool2d, AvgPool2d, BatchNorm.
 *
 * All of them take batched images {N,C,H,W} (BatchNorm also {N,C}) and
 * follow the module protocol of module.h: forward fills m->output,
 * backward overwrites m->grad_input and adds into m->grad[i], and every
 * buffer (outputs, im2col columns, arg-max indices, saved statistics) is
 * kept in the module and reused, so a steady-state step allocates nothing.
 *
 *     ln_module *conv;
 *     ln_error err;
 *     if (ln_conv2d_new(&conv, NULL, 1, 16, 3, 1, 1, true, &err) != LN_OK)
 *         fprintf(stderr, "%s\n", err.msg);
 *     ln_module_forward(conv, &x, &err);          // x {64,1,28,28}
 *     ln_module_backward(conv, &x, &gy, &err);    // gy {64,16,28,28}
 *     ln_module_release(conv);
 *
 * Constructors return one reference in *out (release with
 * ln_module_release); on failure *out is NULL and the status is
 * LN_ERANGE (a size out of range, or parameters over ctx's budget; the
 * message names it) or LN_ENOMEM.  ctx may be NULL (module.h).
 */
#ifndef LN_CONV_H
#define LN_CONV_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"
#include "module.h"

extern const ln_module_class ln_conv2d_class;
extern const ln_module_class ln_maxpool2d_class;
extern const ln_module_class ln_avgpool2d_class;
extern const ln_module_class ln_batchnorm_class;

/* ---- constructors -------------------------------------------------------- */

/* Conv2d(cin -> cout, k x k, stride, padding): cross-correlation as in
 * PyTorch, params "weight" {cout,cin,k,k} (He normal, fan_in = cin*k*k)
 * and, with bias, "bias" {cout} (zero).  cin, cout, k, stride >= 1,
 * padding >= 0.  Config: cin, cout, k, stride, padding, bias (0/1; files
 * written before it existed load with a bias). */
ln_status ln_conv2d_new(ln_module **out, const ln_module_build *ctx, int64_t cin, int64_t cout,
                        int64_t k, int64_t stride, int64_t padding, bool bias, ln_error *err);

/* MaxPool2d(k, stride): the maximum over each k x k window; stride <= 0
 * means stride = k.  No padding; output size floor((H-k)/stride)+1.
 * Config: k, stride. */
ln_status ln_maxpool2d_new(ln_module **out, int64_t k, int64_t stride, ln_error *err);

/* AvgPool2d(k, stride): the mean over each k x k window, otherwise as
 * MaxPool2d.  Config: k, stride. */
ln_status ln_avgpool2d_new(ln_module **out, int64_t k, int64_t stride, ln_error *err);

/* BatchNorm(n) over {N,n} or per channel over {N,n,H,W}, eps 1e-5,
 * momentum 0.1 (as PyTorch).  Params "weight" {n} (ones) and "bias" {n}
 * (zeros); buffers "running_mean" {n} (zeros) and "running_var" {n}
 * (ones).  Config: n, eps, momentum.  It counts its forwards in training
 * mode, named num_batches_tracked in its state (state_dict.h); lunet's
 * own file format does not keep the count. */
ln_status ln_batchnorm_new(ln_module **out, const ln_module_build *ctx, int64_t n, ln_error *err);
/* The same with explicit eps > 0 and momentum in [0,1]. */
ln_status ln_batchnorm_new_ex(ln_module **out, const ln_module_build *ctx, int64_t n, double eps,
                              double momentum, ln_error *err);

/* ---- Conv2d kernels (used by the module; exposed for tests and benchmarks) */

/* The sizes of one convolution.  ho = (h + 2*padding - k)/stride + 1,
 * likewise wo. */
typedef struct ln_conv2d_geom {
	int64_t n, cin, h, w;      /* input  (n,cin,h,w) */
	int64_t cout, k, stride, padding;
	int64_t ho, wo;            /* output (n,cout,ho,wo) */
} ln_conv2d_geom;

/* Plain direct loops, accumulated in double: the reference the im2col
 * path is tested against.
 *   y[n,o,i,j] = b[o] + sum_{c,u,v} w[o,c,u,v] * x[n,c, i*s-p+u, j*s-p+v]
 * (terms outside the input are zero).  y (n,cout,ho,wo), x (n,cin,h,w),
 * w (cout,cin,k,k), b (cout) or NULL. */
void ln_conv2d_forward_naive(float *y, const float *x, const float *w, const float *b,
                           const ln_conv2d_geom *g);
/* gx = dL/dx (overwritten), gw += dL/dw, gb += dL/db (gb may be NULL),
 * given gy = dL/dy of the same shapes as above. */
void ln_conv2d_backward_naive(float *gx, float *gw, float *gb, const float *gy, const float *x,
                            const float *w, const ln_conv2d_geom *g);

/* im2col of sample x_n (cin,h,w) into the columns of a matrix with row
 * stride ld:  col[r*ld + q] = x_n[c, i*s-p+u, j*s-p+v]  (0 outside)
 * for row r = (c*k+u)*k+v (cin*k*k rows) and column q = i*wo+j
 * (ho*wo columns). */
void ln_conv2d_im2col(float *col, int64_t ld, const float *x_n, const ln_conv2d_geom *g);
/* The adjoint: gx_n (cin,h,w) = sum of the column entries that im2col
 * copied from each input element (gx_n is overwritten).  col is scratch:
 * entries that stand for padding may be set to zero (they are not part of
 * the sum either way). */
void ln_conv2d_col2im(float *gx_n, float *col, int64_t ld, const ln_conv2d_geom *g);

/* How Conv2d multiplies: LN_CONV2D_BATCHED makes one product for the whole
 * batch (columns of all samples side by side, output transposed into
 * place afterwards); LN_CONV2D_PER_SAMPLE makes one product per sample,
 * written straight into place.  Both give the same numbers up to
 * rounding.  The default is LN_CONV2D_PER_SAMPLE, measured faster on the
 * benchmark CNN (see conv2d.c). */
typedef enum ln_conv2d_strategy { LN_CONV2D_BATCHED = 0, LN_CONV2D_PER_SAMPLE } ln_conv2d_strategy;
void ln_conv2d_set_strategy(ln_module *m, ln_conv2d_strategy s);

#endif
