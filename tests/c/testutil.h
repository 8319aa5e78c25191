/*
 * testutil.h -- shared helpers for the cmocka tests: tensors from arrays,
 * seeded random fills, and the finite-difference gradient checks that
 * every layer and loss goes through.
 */
#ifndef LN_TESTUTIL_H
#define LN_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/tensor.h"
#include "nn/loss.h"
#include "nn/module.h"
#include "nn/optim.h"

/* Allocates t with the given shape and fills it from vals (row-major) or,
 * when vals is NULL, uniformly in [lo,hi) from the seeded rng.  Fails the
 * test on error. */
void tu_tensor(ln_tensor *t, int ndim, const int64_t *shape, const float *vals);
void tu_tensor_uniform(ln_tensor *t, int ndim, const int64_t *shape, float lo, float hi);

/* ln_module_forward / ln_module_backward that fail the test with the
 * message on error. */
void tu_forward_ok(ln_module *m, const ln_tensor *x);
void tu_backward_ok(ln_module *m, const ln_tensor *x, const ln_tensor *gy);

/* Fails the test, naming `what` and the first element out of tolerance,
 * unless |got - want| <= tol * max(1, |want|) for each of the n elements. */
void tu_expect_near(const float *got, const float *want, int64_t n, double tol, const char *what);

/* From ln_alloc_get_stats: the ln_malloc calls so far (failed ones
 * included), and the bytes now allocated. */
uint64_t tu_alloc_calls(void);
uint64_t tu_live_bytes(void);

/* Builds a module into *out from ctx (a constructor with its arguments
 * fixed), as tu_check_enomem calls it. */
typedef ln_status (*tu_build_fn)(ln_module **out, void *ctx, ln_error *err);
/* Fails, in turn, each ln_malloc of build, of the first forward on a
 * uniform x of shape xshape (3 dimensions) and of the first backward
 * with a uniform gy of shape yshape: each failure must be LN_ENOMEM
 * saying "out of memory" and leave the live bytes as they were; after a
 * failed forward or backward the module still runs.  Each phase must
 * fail at least once and succeed within 200 allocations.  `what` names
 * the case in a failure. */
void tu_check_enomem(tu_build_fn build, void *ctx, const int64_t xshape[3],
                     const int64_t yshape[3], const char *what);

/* Gradient check of a module: central differences (step eps) of the probe
 * L = sum(r .* forward(x)), accumulated in double, with a fixed random
 * weighting r in [-1,1) (a plain sum hides errors in softmax), against
 * backward, over every element of x and of every parameter.  Returns the
 * largest relative error |a-n| / max(|a|, |n|, 1e-2).  The module's
 * parameter gradients are zeroed first and left holding the analytic
 * gradient of the probe. */
double tu_gradcheck_module(ln_module *m, const ln_tensor *x, double eps);

/* The same check with more control: over the input unless `input` is
 * false (labels have no gradient), and over every parameter of m's tree
 * (ln_module_visit_params: a container's layers too).  When `before` is
 * not NULL it is called before every forward, the first included, to put
 * back what a forward changes (the rng a dropout mask is drawn from, the
 * state a stateful layer carries). */
typedef void (*tu_before_fn)(ln_module *m, void *ctx);
double tu_gradcheck_ex(ln_module *m, const ln_tensor *x, double eps, bool input,
                       tu_before_fn before, void *ctx);
/* A tu_before_fn that seeds the process-wide generator with *(uint64_t
 * *)ctx, so that every forward draws the same dropout masks. */
void tu_reseed(ln_module *m, void *ctx);

/* The same for a loss, whose forward is already a number: checks
 * dL/dinput only.  With reduction none, of L = sum_i r_i l_i for random
 * r in [-1,1], through ln_loss_backward_weighted: each sample's loss
 * depends on its own row alone, so dL/dx at an element of row i is r_i
 * times the difference quotient of the forward's number (sum_i l_i, in
 * double). */
double tu_gradcheck_loss(ln_loss *c, const ln_tensor *x, const ln_tensor *target, double eps);

/* The defaults of the optimiser called name with the values that follow
 * set, as name/value pairs ending with NULL:
 *     tu_optim_config("SGD", "lr", 0.1, "momentum", 0.9, NULL)
 * (flags as 0 or 1).  Fails the test on an unknown name. */
ln_optim_config tu_optim_config(const char *name, ...);

/* ln_optim_new over the pairs (p[i], g[i]), i < n, owned by no module. */
ln_status tu_optim_new(ln_optim **out, const ln_optim_config *c, int n, const ln_tensor *p,
                       const ln_tensor *g, ln_error *err);

#endif
