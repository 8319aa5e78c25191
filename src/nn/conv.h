/*
 * conv.h -- convolutional layers: Conv2d, MaxPool2d, AvgPool2d, BatchNorm.
 *
 * All of them take batched images {N,C,H,W} (BatchNorm also {N,C}) and
 * follow the module protocol of module.h: forward fills m->output,
 * backward overwrites m->grad_input and adds into m->grad[i], and every
 * buffer (outputs, im2col columns, arg-max indices, saved statistics) is
 * kept in the module and reused, so a steady-state step allocates nothing.
 * Conv2d and the pools work sample by sample (module.h), so that a
 * Sequential runs a stack of them one sample at a time through all of
 * them, split over the worker threads.
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
 *
 * Sizes follow PyTorch (torch.nn.Conv2d, MaxPool2d, AvgPool2d): along each
 * axis, with kernel k, stride s, dilation d and zero padding p before and
 * q after,
 *     out = floor((in + p + q - d*(k-1) - 1) / s) + 1
 * and the pools' ceil_mode rounds up instead, but drops a last window that
 * would start beyond the input and its left padding.
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
extern const ln_module_class ln_adaptive_avgpool2d_class;

/* ---- Conv2d ----------------------------------------------------------------------- */

/* How a Conv2d is built (ln_conv2d_opts_init gives the defaults). */
typedef struct ln_conv2d_opts {
	int64_t cin, cout;  /* channels, >= 1, both multiples of groups */
	int64_t kh, kw;     /* kernel, >= 1 */
	int64_t sh, sw;     /* stride, >= 1 */
	int64_t ph, pw;     /* zero padding on both sides of each axis, >= 0 */
	int64_t dh, dw;     /* dilation, >= 1 */
	int64_t groups;     /* >= 1: input and output channels cut into this many groups,
	                       group g's outputs seeing only group g's inputs (groups = cin:
	                       depthwise) */
	bool same;          /* padding "same" (stride 1 only): the output is the input's size,
	                       the kernel's span d*(k-1) split between the sides, the odd one
	                       after, as PyTorch does; ph and pw are not read */
	bool bias;
} ln_conv2d_opts;

/* cin -> cout with a k x k kernel, stride 1, no padding, dilation 1, one
 * group, with bias. */
void ln_conv2d_opts_init(ln_conv2d_opts *o, int64_t cin, int64_t cout, int64_t k);

/* Conv2d: cross-correlation as in PyTorch, params "weight"
 * {cout, cin/groups, kh, kw} (He normal, fan_in = cin/groups*kh*kw) and,
 * with bias, "bias" {cout} (zero).  LN_ERANGE naming the value when one is
 * out of range, when groups does not divide both channel counts, or for
 * "same" with a stride other than 1.  Config (names as saved): cin, cout,
 * k (kh), stride (sh), padding (the top), bias, kw, stride_w, padding_w
 * (the left), dilation (dh), dilation_w, groups, same; files written
 * before the entries after bias existed load as square, symmetric,
 * undilated and ungrouped. */
ln_status ln_conv2d_new_opts(ln_module **out, const ln_module_build *ctx,
                             const ln_conv2d_opts *o, ln_error *err);
/* The square case: k x k, the same stride and padding along both axes. */
ln_status ln_conv2d_new(ln_module **out, const ln_module_build *ctx, int64_t cin, int64_t cout,
                        int64_t k, int64_t stride, int64_t padding, bool bias, ln_error *err);

/* The sizes of one convolution, as the kernels below take them. */
typedef struct ln_conv2d_geom {
	int64_t n, cin, h, w;    /* input (n,cin,h,w) */
	int64_t cout, groups;    /* weight (cout, cin/groups, kh, kw) */
	int64_t kh, kw, sh, sw;  /* kernel, stride */
	int64_t pt, pl, pb, pr;  /* zero padding: top, left, bottom, right */
	int64_t dh, dw;          /* dilation */
	int64_t ho, wo;          /* output (n,cout,ho,wo) */
} ln_conv2d_geom;

/* The geometry of o on an input of n x cin x h x w (ho, wo as in the
 * header comment; < 1 when the input is smaller than the kernel's span). */
void ln_conv2d_geom_init(ln_conv2d_geom *g, const ln_conv2d_opts *o, int64_t n, int64_t h,
                         int64_t w);

/* Plain direct loops, accumulated in double: the reference the fast path
 * is tested against.  With cg = cin/groups, og = cout/groups and
 * o in group g = o / og,
 *   y[n,o,i,j] = b[o] + sum_{c<cg,u,v} w[o,c,u,v] *
 *                x[n, g*cg + c, i*sh - pt + u*dh, j*sw - pl + v*dw]
 * (terms outside the input are zero).  y (n,cout,ho,wo), x (n,cin,h,w),
 * w (cout,cg,kh,kw), b (cout) or NULL. */
void ln_conv2d_forward_naive(float *y, const float *x, const float *w, const float *b,
                             const ln_conv2d_geom *g);
/* gx = dL/dx (overwritten; gx may be NULL), gw += dL/dw, gb += dL/db (gb
 * may be NULL), given gy = dL/dy of the same shapes as above. */
void ln_conv2d_backward_naive(float *gx, float *gw, float *gb, const float *gy, const float *x,
                              const float *w, const ln_conv2d_geom *g);

/* im2col of sample x_n (cin,h,w) into the columns of a matrix with row
 * stride ld:  col[r*ld + q] = x_n[c, i*sh-pt+u*dh, j*sw-pl+v*dw]  (0
 * outside) for row r = (c*kh+u)*kw+v (cin*kh*kw rows: group g's are the
 * g-th cin/groups*kh*kw of them) and column q = i*wo+j (ho*wo columns). */
void ln_conv2d_im2col(float *col, int64_t ld, const float *x_n, const ln_conv2d_geom *g);
/* The adjoint: gx_n (cin,h,w) = sum of the column entries that im2col
 * copied from each input element (gx_n is overwritten).  col is scratch:
 * entries that stand for padding may be set to zero (they are not part of
 * the sum either way). */
void ln_conv2d_col2im(float *gx_n, float *col, int64_t ld, const ln_conv2d_geom *g);

/* ---- MaxPool2d, AvgPool2d ---------------------------------------------------------- */

/* How a pool is built (ln_pool2d_opts_init gives the defaults). */
typedef struct ln_pool2d_opts {
	int64_t kh, kw;          /* window, >= 1 */
	int64_t sh, sw;          /* stride, >= 1 */
	int64_t ph, pw;          /* padding on both sides, 0 <= p <= k/2 (as PyTorch): for
	                            MaxPool2d never chosen, for AvgPool2d zeros */
	bool ceil_mode;          /* round the output size up (see the header comment) */
	bool count_include_pad;  /* AvgPool2d: padding counts in the divisor (PyTorch's
	                            default, true); MaxPool2d: must be true */
} ln_pool2d_opts;

/* A k x k window with stride k, no padding, floor mode. */
void ln_pool2d_opts_init(ln_pool2d_opts *o, int64_t k);

/* MaxPool2d: the maximum over each window (the first of equal maxima in
 * row-major window order; a NaN in a window makes it NaN).  AvgPool2d:
 * the mean, its divisor the window's size within the padded input
 * (count_include_pad) or within the input itself.  LN_ERANGE naming the
 * value when one is out of range.  Config (names as saved): k (kh),
 * stride (sh), kw, stride_w, padding (ph), padding_w, ceil_mode, and for
 * AvgPool2d count_include_pad; files written before the entries after
 * stride existed load as square, unpadded, floor mode. */
ln_status ln_maxpool2d_new_opts(ln_module **out, const ln_pool2d_opts *o, ln_error *err);
ln_status ln_avgpool2d_new_opts(ln_module **out, const ln_pool2d_opts *o, ln_error *err);
/* The square case without padding; stride <= 0 means stride = k. */
ln_status ln_maxpool2d_new(ln_module **out, int64_t k, int64_t stride, ln_error *err);
ln_status ln_avgpool2d_new(ln_module **out, int64_t k, int64_t stride, ln_error *err);

/* The sizes of one pooling, as the kernels below take them: `planes`
 * planes of h x w (N*C), out ho x wo. */
typedef struct ln_pool2d_geom {
	int64_t planes, h, w;
	int64_t kh, kw, sh, sw, ph, pw;
	int64_t ho, wo;
	bool count_include_pad;
} ln_pool2d_geom;

/* The output size along one axis (header comment); < 1: no window fits. */
int64_t ln_pool2d_out_size(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode);

/* Direct loops over each window, the references of the fast kernels:
 *   max:  y[o] = the maximum of x over window o (clipped to the input),
 *         am[o] its offset i*w+j in the plane (see MaxPool2d above);
 *         backward gx = 0, then gx[am[o]] += gy[o] plane by plane.
 *   avg:  y[o] = the sum over window o (clipped) / its divisor, in double;
 *         backward gx = 0, then every window adds gy[o]/divisor to the
 *         elements it covers.
 * x, gx (planes,h,w); y, gy, am (planes,ho,wo). */
void ln_maxpool2d_forward_naive(float *y, int32_t *am, const float *x, const ln_pool2d_geom *g);
void ln_maxpool2d_backward_naive(float *gx, const float *gy, const int32_t *am,
                                 const ln_pool2d_geom *g);
void ln_avgpool2d_forward_naive(float *y, const float *x, const ln_pool2d_geom *g);
void ln_avgpool2d_backward_naive(float *gx, const float *gy, const ln_pool2d_geom *g);

/* ReLU then MaxPool2d, the references of the joint kernels that a chain
 * runs for the pair (pool.c): forward r = max(x, 0) (NaN stays NaN), then
 * y, am = ln_maxpool2d_forward_naive of r; backward gp = the MaxPool2d
 * backward of gy (its input gradient), then gr = gp where x > 0, else 0
 * (the ReLU's input gradient).  x, r, gp, gr (planes,h,w); y, gy, am
 * (planes,ho,wo). */
void ln_relu_maxpool2d_forward_naive(float *r, float *y, int32_t *am, const float *x,
                                     const ln_pool2d_geom *g);
void ln_relu_maxpool2d_backward_naive(float *gr, float *gp, const float *gy, const int32_t *am,
                                      const float *x, const ln_pool2d_geom *g);

/* AdaptiveAvgPool2d(oh, ow): {N,C,H,W} -> {N,C,oh,ow}, the mean over
 * windows that tile each plane (adaptive_pool.c); (1, 1) is global
 * average pooling.  oh, ow >= 1, else LN_ERANGE.  Config: out_h, out_w. */
ln_status ln_adaptive_avgpool2d_new(ln_module **out, int64_t oh, int64_t ow, ln_error *err);
/* Its kernels: y (planes,oh,ow) from x (planes,h,w), and gx (planes,h,w)
 * (overwritten) from gy (planes,oh,ow); planes = N*C. */
void ln_adaptive_avgpool2d_forward_kernel(float *y, const float *x, int64_t planes, int64_t h,
                                          int64_t w, int64_t oh, int64_t ow);
void ln_adaptive_avgpool2d_backward_kernel(float *gx, const float *gy, int64_t planes, int64_t h,
                                           int64_t w, int64_t oh, int64_t ow);

/* ---- BatchNorm -------------------------------------------------------------------- */

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

#endif
