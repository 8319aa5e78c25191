/*
 * optim.h -- optimisers over a list of (parameter, gradient) tensor pairs.
 *
 * An optimiser holds views (ln_tensor_ref) of the parameters and of their
 * gradients, sharing storage with the model that owns them, plus its own
 * state buffers (momentum, moment estimates), all allocated when it is
 * built.  ln_optim_step then makes one pass over each parameter's
 * contiguous memory and never allocates.
 *
 * The update rules are PyTorch's (torch.optim, 2.x), so that results can
 * be compared with it number by number.  With g the gradient, p the
 * parameter and t the step count after incrementing (1 on the first step):
 *
 *   SGD      g += wd*p
 *            if mu != 0:  b = mu*b + g;  g = nesterov ? g + mu*b : b
 *            p -= lr*g
 *   Adam     AdamW (decoupled): p -= lr*wd*p     else: g += wd*p
 *            m = b1*m + (1-b1)*g;   v = b2*v + (1-b2)*g*g
 *            p -= (lr / (1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 *   RMSprop  g += wd*p
 *            s = a*s + (1-a)*g*g
 *            centered: c = a*c + (1-a)*g;  d = sqrt(s - c*c) + eps
 *            else:     d = sqrt(s) + eps
 *            if mu > 0: b = mu*b + g/d;  p -= lr*b     else: p -= lr*g/d
 *
 * State buffers have the parameter's shape and start at zero; with
 * dampening 0 a zero momentum buffer gives PyTorch's first step (b = g).
 * Their names (for saving and loading) are those of PyTorch's state dict:
 * SGD "momentum_buffer" (only when momentum != 0); Adam "exp_avg",
 * "exp_avg_sq"; RMSprop "square_avg", then "momentum_buffer" (momentum >
 * 0) and "grad_avg" (centered).
 *
 * Lifetime: ln_optim_new returns an optimiser that owns one reference to
 * each parameter and gradient storage and owns its state; ln_optim_free
 * releases all of it.  The model may be freed first: the optimiser's views
 * keep the storage alive.
 */
#ifndef LN_OPTIM_H
#define LN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"

typedef enum ln_optim_kind {
	LN_OPTIM_SGD,
	LN_OPTIM_ADAM,
	LN_OPTIM_RMSPROP,
	LN_OPTIM_KIND_COUNT
} ln_optim_kind;

/* Hyper-parameters.  Fields that a kind does not use are ignored (and not
 * validated). */
typedef struct ln_optim_config {
	ln_optim_kind kind;
	double lr;
	double momentum;      /* SGD, RMSprop */
	bool nesterov;        /* SGD; needs momentum > 0 */
	double weight_decay;  /* all: L2 term added to the gradient (Adam: see decoupled) */
	double beta1, beta2;  /* Adam, each in [0,1) */
	double eps;           /* Adam, RMSprop; >= 0 */
	bool decoupled;       /* Adam: AdamW's decoupled weight decay */
	double alpha;         /* RMSprop smoothing constant, in [0,1) */
	bool centered;        /* RMSprop */
} ln_optim_config;

typedef struct ln_optim ln_optim;

#define LN_OPTIM_MAX_STATE 3

/* PyTorch's defaults for a kind: SGD lr 1e-3, momentum 0; Adam lr 1e-3,
 * betas (0.9, 0.999), eps 1e-8; RMSprop lr 1e-2, alpha 0.99, eps 1e-8;
 * weight_decay 0 everywhere. */
ln_optim_config ln_optim_defaults(ln_optim_kind kind);

/* Display name of a configuration: "SGD", "Adam", "AdamW" (decoupled) or
 * "RMSprop".  Error messages begin with it. */
const char *ln_optim_name(const ln_optim_config *cfg);

/* Checks the hyper-parameters of cfg.  LN_ERANGE names the value ("SGD:
 * lr must be >= 0, got -0.1"); LN_EARG for combinations ("SGD: nesterov
 * requires momentum > 0"). */
ln_status ln_optim_validate(const ln_optim_config *cfg, ln_error *err);

/* Builds an optimiser over n >= 1 pairs (params[i], grads[i]).  Each pair
 * must be non-empty, contiguous and of the same shape; parameters must not
 * overlap in memory (a parameter listed twice would be updated twice).
 * The arrays are only read: the optimiser takes its own references.
 * Errors: the ones of ln_optim_validate, LN_EARG (n < 1, empty or
 * non-contiguous tensors, overlap), LN_ESHAPE (param/grad shapes differ,
 * naming both and the index), LN_ENOMEM.  On failure *out is NULL and
 * nothing is retained. */
ln_status ln_optim_new(ln_optim **out, const ln_optim_config *cfg, int n, const ln_tensor *params,
                       const ln_tensor *grads, ln_error *err);

/* Releases the optimiser, its views and its state.  NULL is ignored. */
void ln_optim_free(ln_optim *opt);

/* One update of every parameter from its current gradient; increments the
 * step count first (Adam's bias correction uses the new count).  No
 * allocation, no failure. */
void ln_optim_step(ln_optim *opt);

/* Sets every gradient to zero. */
void ln_optim_zero_grad(ln_optim *opt);

/* ---- hyper-parameters by name ----------------------------------------------- */

/* Reads a numeric hyper-parameter ("lr", "momentum", "weight_decay",
 * "beta1", "beta2", "eps", "alpha") of the optimiser's kind into *value.
 * Returns false if the kind has no such hyper-parameter. */
bool ln_optim_get(const ln_optim *opt, const char *name, double *value);

/* Sets one (as ln_optim_get names them), validating the new value as
 * ln_optim_new would: this is how schedules change lr between steps.
 * Turning momentum from 0 to non-zero (or back, for SGD) would need a
 * state buffer the optimiser was built without: LN_ESTATE.  Unknown
 * names: LN_EARG.  On error nothing changes. */
ln_status ln_optim_set(ln_optim *opt, const char *name, double value, ln_error *err);

/* Replaces the whole configuration with cfg after validating it, as a
 * checkpoint loader does.  cfg must keep the kind and fit the state the
 * optimiser was built with (momentum != 0 needs the momentum buffer,
 * RMSprop's centered needs grad_avg): LN_ESTATE otherwise.  Flags without
 * state (nesterov, decoupled) may change.  On error nothing changes. */
ln_status ln_optim_set_config(ln_optim *opt, const ln_optim_config *cfg, ln_error *err);

/* The configuration in use (kind, flags and values). */
const ln_optim_config *ln_optim_get_config(const ln_optim *opt);

/* ---- state, for saving and loading ------------------------------------------- */

int ln_optim_nparams(const ln_optim *opt);
/* The i-th parameter / gradient view (0-based), owned by the optimiser. */
const ln_tensor *ln_optim_param(const ln_optim *opt, int i);
const ln_tensor *ln_optim_grad(const ln_optim *opt, int i);

/* Number of steps taken (0 after construction). */
int64_t ln_optim_step_count(const ln_optim *opt);
/* Restores the step count when loading a checkpoint.  LN_ERANGE if < 0. */
ln_status ln_optim_set_step_count(ln_optim *opt, int64_t steps, ln_error *err);

/* Number of state tensors per parameter (the same for every parameter)
 * and the name of the k-th one (0-based; NULL when out of range). */
int ln_optim_nstate(const ln_optim *opt);
const char *ln_optim_state_name(const ln_optim *opt, int k);
/* The k-th state tensor of parameter i, shaped like that parameter and
 * owned by the optimiser.  A loader writes into it (ln_tensor_copy);
 * a saver reads it.  NULL when i or k is out of range. */
ln_tensor *ln_optim_state(ln_optim *opt, int i, int k);

#endif
