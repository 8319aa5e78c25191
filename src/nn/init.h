/*
 * init.h -- weight initialisation (nn.init.*).
 *
 * All draw from the generator given (rng.h; nn.init.* passes the
 * process-wide one, so lunet.seed makes them repeatable) and fill t in
 * place (any layout, views included).
 *
 * Fans come from the weight's shape, as in Torch/PyTorch: {out,in} gives
 * fan_in = in, fan_out = out; {out,in,k1,k2,...} multiplies both by the
 * receptive field k1*k2*...  Tensors with fewer than 2 dimensions have no
 * fans: LN_ESHAPE.  An empty tensor is LN_EARG.
 */
#ifndef LN_INIT_H
#define LN_INIT_H

#include "../core/error.h"
#include "../core/tensor.h"

/* Glorot & Bengio (2010): U(-a, a) with a = sqrt(6 / (fan_in + fan_out)),
 * which keeps the variance of activations and gradients about equal
 * across tanh/sigmoid layers. */
ln_status ln_init_xavier(ln_tensor *t, ln_rng *rng, ln_error *err);

/* He et al. (2015): N(0, std^2) with std = sqrt(2 / fan_in), for layers
 * followed by ReLU. */
ln_status ln_init_he(ln_tensor *t, ln_rng *rng, ln_error *err);

/* U(a, b); a and b finite with a <= b, else LN_ERANGE. */
ln_status ln_init_uniform(ln_tensor *t, ln_rng *rng, double a, double b, ln_error *err);

/* N(mean, std^2); mean finite, std finite and >= 0, else LN_ERANGE. */
ln_status ln_init_normal(ln_tensor *t, ln_rng *rng, double mean, double std, ln_error *err);

/* fan_in and fan_out of a weight shape, as above (LN_ESHAPE below 2-D). */
ln_status ln_init_fans(const ln_tensor *t, double *fan_in, double *fan_out, ln_error *err);

#endif
