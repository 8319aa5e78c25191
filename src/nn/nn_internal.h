/*
 * nn_internal.h -- helpers shared by the module implementations in src/nn.
 * Not part of the public API.
 *
 * Error messages: a class never names itself in front of its messages;
 * the caller that knows the context adds it (module.h).
 */
#ifndef LN_NN_INTERNAL_H
#define LN_NN_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"
#include "module.h"

/* v for a "%g" in a message: NaN without its sign (0/0 is -NaN on x86,
 * which "%g" prints "-nan"), as the Lua side shows it. */
static inline double ln_shown(double v)
{
	return isnan(v) ? (double)NAN : v;
}

/* Reads config value `v` (named `what`, for the message) as an integer
 * in [lo, hi]: LN_ERANGE if it is not finite, not integral or out of range.
 * Messages read "expected <what> to be an integer >= lo, got v". */
ln_status ln_config_int(int64_t *out, double v, const char *what, int64_t lo, int64_t hi,
                        ln_error *err);

/* Marks m and every module under it as holding no dL/dx of the last
 * backward (module.h, "input gradients"): a container calls it on the
 * children its backward did not reach. */
void ln_module_skip_gx(ln_module *m);
/* LN_ESHAPE unless the n tensors x[0..n-1] have one shape: "expected
 * inputs of one shape, got {4,8} (input 1) and {4,9} (input 2)", naming
 * the first that differs from input 1.  For the elementwise joins. */
ln_status ln_check_same_shapes(int n, const ln_tensor *const *x, ln_error *err);

/* The check of every layer that works on the last dimension and takes any
 * leading ones ({N,...,d}, at least 2-D: dimension 0 is the batch):
 * LN_ESHAPE "expected input of shape {N,784}, got {64,785}" (the shape
 * shown as {N,...,784} for an input of 3 or more dimensions).  d < 0
 * accepts any last dimension: "expected input of shape {N,...} (at
 * least 2-D), got {5}".  On success *rows is the product of the leading
 * dimensions (may be NULL). */
ln_status ln_check_rows(const ln_tensor *x, int64_t d, int64_t *rows, ln_error *err);

/* Describes the position of element `flat` (0-based, row-major) of a
 * contiguous tensor, 1-based as a script counts: "position 5" (1-D),
 * "row 3, column 2" (2-D), "index {1,2,3}" (more).  Returns buf. */
char *ln_pos_str(char *buf, size_t size, const ln_tensor *t, int64_t flat);

/* gb (nout) += sum_i gy[i,:] over the n rows of gy (n,nout) -- a bias
 * gradient -- accumulated in double, rows in order; gb = the sum when
 * overwrite (its old contents, a pending zero, are not read).  linear.c. */
void ln_colsum_add(float *gb, const float *gy, int64_t n, int64_t nout, bool overwrite);

/* The body of ln_module_forward_multi_unprefixed and
 * ln_module_backward_multi_ex (module.c), for n inputs x[0..n-1], and what
 * those call instead when lunet.check_numerics is on (numerics.c: the
 * same, then a scan of what the module wrote). */
ln_status ln_module_forward_body(ln_module *m, int n, const ln_tensor *const *x, ln_error *err);
ln_status ln_module_backward_body(ln_module *m, int n, const ln_tensor *const *x,
                                  const ln_tensor *gy, bool need_gx, ln_error *err);
ln_status ln_numerics_forward(ln_module *m, int n, const ln_tensor *const *x, ln_error *err);
ln_status ln_numerics_backward(ln_module *m, int n, const ln_tensor *const *x, const ln_tensor *gy,
                               bool need_gx, ln_error *err);

/* Called by module.c for External modules (external.c). */
void ln_external_on_set_training(ln_module *m, bool training);

#endif
