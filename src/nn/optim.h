/*
 * optim.h -- optimisers: one description per optimiser, one generic
 * machine that runs them.
 *
 * An optimiser is described once, in optim.c, by an ln_optim_desc: its
 * name, its hyper-parameters (name, kind, valid range, default), the names
 * of its per-parameter state tensors and when each exists, an optional
 * check across hyper-parameters, and its update kernel.  Everything else is
 * driven from that description: construction and validation here, the Lua
 * constructor and its option checking, tostring, opt:state() and
 * load_state() (src/lua/loptim.c), and the file format, which saves
 * hyper-parameters and state by name (src/io/save.h).  Adding an optimiser
 * is one description and one kernel in optim.c.
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
 * Their names are those of PyTorch's state dict: SGD "momentum_buffer"
 * (only when momentum != 0); Adam "exp_avg", "exp_avg_sq"; RMSprop
 * "square_avg", then "momentum_buffer" (momentum > 0) and "grad_avg"
 * (centered).
 *
 * Parameters and their owners.  An optimiser holds, for every parameter,
 * views (ln_tensor_ref) of the tensor and of its gradient, and where the
 * tensor lives: the module that holds it and its index there, or no module
 * (a tensor the caller passed by itself).  ln_optim_new_module takes them
 * from a module tree (ln_module_visit_params); a saver uses the owners to
 * tie the optimiser to the saved modules.
 *
 * Errors.  Messages never name the optimiser: the caller, which knows the
 * context, adds it ("optim.SGD: " in the Lua binding).
 *
 * Lifetime: ln_optim_new returns an optimiser that owns one reference to
 * each parameter and gradient storage, to each owner module, and its
 * state; ln_optim_free releases all of it.  The model may be freed first.
 */
#ifndef LN_OPTIM_H
#define LN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"
#include "module.h"

#define LN_OPTIM_MAX_VALUES 8  /* hyper-parameters of one optimiser */
#define LN_OPTIM_MAX_STATE 3   /* state tensors per parameter */

/* ==== descriptions ============================================================ */

typedef enum ln_optim_type {
	LN_OPTIM_NUMBER,  /* a double */
	LN_OPTIM_BOOL,    /* a flag, held as 0 or 1 */
} ln_optim_type;

typedef enum ln_optim_range {
	LN_OPTIM_ANY,     /* flags */
	LN_OPTIM_NONNEG,  /* finite and >= 0 */
	LN_OPTIM_UNIT,    /* in [0,1) */
} ln_optim_range;

/* One hyper-parameter. */
typedef struct ln_optim_value {
	const char *name;      /* "lr"; NULL ends a description's list */
	ln_optim_type type;
	ln_optim_range range;
	double def;            /* default; NAN: none, the caller must give it (SGD's lr) */
	/* Non-NULL on two consecutive numbers that a constructor takes together
	 * as a pair, {a, b}, under this name (Adam's "betas" = beta1, beta2).
	 * Each is still a value of its own everywhere else. */
	const char *pair;
	/* Cannot change once built (RMSprop's centered selects state). */
	bool fixed;
} ln_optim_value;

/* One state tensor per parameter. */
typedef struct ln_optim_state_desc {
	const char *name;  /* "momentum_buffer"; NULL ends the list */
	/* The index of the value that must be non-zero for the tensor to exist,
	 * or -1 when it always does.  Such a value cannot turn non-zero after
	 * construction when it was zero then (there is no buffer). */
	int when;
} ln_optim_state_desc;

/* The update of one parameter of n floats: v the values (in description
 * order), t the step count (1 on the first step), state[k] the k-th state
 * tensor of the description (NULL when it does not exist).  Never fails,
 * never allocates.  Element by element: each element's update reads only
 * that element of p, g and the states, so the machine may hand a kernel any
 * piece of a parameter (it splits the update over threads). */
typedef void (*ln_optim_kernel)(const double *v, int64_t t, float *p, const float *g,
                                float *const *state, int64_t n);

/* A second name under which an optimiser is built with other defaults:
 * AdamW is Adam with decoupled weight decay.  The optimiser is called by
 * this name whenever value `flag` is true. */
typedef struct ln_optim_variant {
	const char *name;  /* NULL: no variant */
	int flag;          /* a boolean value, true in the variant */
	int changed;       /* another value whose default differs, or -1 */
	double changed_def;
} ln_optim_variant;

typedef struct ln_optim_desc {
	const char *name;  /* "SGD": the Lua constructor and the name saved to files */
	ln_optim_value values[LN_OPTIM_MAX_VALUES + 1];
	ln_optim_state_desc state[LN_OPTIM_MAX_STATE + 1];
	/* Rules across values that the ranges cannot say ("nesterov requires
	 * momentum > 0"): LN_EARG.  May be NULL. */
	ln_status (*check)(const double *v, ln_error *err);
	ln_optim_kernel step;
	ln_optim_variant variant;
} ln_optim_desc;

/* Every optimiser, in a fixed order; *count set to their number. */
const ln_optim_desc *const *ln_optim_descs(int *count);
/* Number of values and of state tensors of a description. */
int ln_optim_desc_nvalues(const ln_optim_desc *d);
int ln_optim_desc_nstate(const ln_optim_desc *d);
/* Index of the value called name, or -1. */
int ln_optim_value_index(const ln_optim_desc *d, const char *name);

/* ==== configurations ============================================================ */

/* An optimiser's hyper-parameters: its description and one double per
 * value (flags 0 or 1), in description order. */
typedef struct ln_optim_config {
	const ln_optim_desc *desc;
	double v[LN_OPTIM_MAX_VALUES];
	unsigned unset;  /* bit i: value i has no default and was not set yet */
} ln_optim_config;

/* The defaults of the optimiser called name ("SGD", "Adam", "AdamW",
 * "RMSprop": a description or a variant).  A value without a default is
 * marked unset, which validation refuses until the caller sets it
 * (ln_optim_config_set).  LN_EARG for an unknown name. */
ln_status ln_optim_config_init(ln_optim_config *c, const char *name, ln_error *err);

/* The name of a configuration: its variant's when the variant's flag is
 * set ("AdamW"), else its description's. */
const char *ln_optim_name(const ln_optim_config *c);

/* Writes "SGD(lr=0.1, momentum=0.9, nesterov=false, weight_decay=0)":
 * the name and every value in description order, a pair as {a,b}; the
 * flag that selects a variant is said by the name ("AdamW(...)").
 * Returns as snprintf. */
int ln_optim_describe(const ln_optim_config *c, char *buf, size_t size);

/* The value called name: *value and true, or false if there is none. */
bool ln_optim_config_get(const ln_optim_config *c, const char *name, double *value);
/* Sets the value called name (no validation: see ln_optim_validate) and
 * clears its unset mark.  LN_EARG "no hyper-parameter named 'x'". */
ln_status ln_optim_config_set(ln_optim_config *c, const char *name, double value,
                              ln_error *err);

/* Checks every value against its kind and range, then the description's
 * own rules.  LN_ERANGE names the value ("lr must be >= 0, got -0.1");
 * LN_EARG for a value still unset ("lr is required: it has no default"),
 * flags that are not 0 or 1 and combinations ("nesterov requires momentum
 * > 0, got 0"). */
ln_status ln_optim_validate(const ln_optim_config *c, ln_error *err);

/* ==== optimisers ================================================================== */

typedef struct ln_optim ln_optim;

/* One parameter to optimise: the tensor, its gradient, and where it lives
 * (owner->param[index], owner->grad[index]; owner NULL when it is not
 * known to belong to a module). */
typedef struct ln_optim_entry {
	const ln_tensor *param;
	const ln_tensor *grad;
	ln_module *owner;
	int index;
} ln_optim_entry;

/* Builds an optimiser over n >= 1 parameters.  Each pair must be
 * non-empty, contiguous and of one shape; parameters must not overlap in
 * memory (a parameter listed twice would be updated twice).  The entries
 * are only read: the optimiser takes its own references.  Parameters are
 * checked before the configuration.  Errors: LN_EARG (n < 1, empty or
 * non-contiguous tensors, overlap), LN_ESHAPE (param/grad shapes differ,
 * naming both and the parameter), the errors of ln_optim_validate,
 * LN_ENOMEM.  On failure *out is NULL and nothing is retained. */
ln_status ln_optim_new(ln_optim **out, const ln_optim_config *cfg, int n,
                       const ln_optim_entry *params, ln_error *err);

/* The same over every parameter of the module tree m, in the order of
 * ln_module_visit_params, each owned by its module. */
ln_status ln_optim_new_module(ln_optim **out, const ln_optim_config *cfg, ln_module *m,
                              ln_error *err);

/* Releases the optimiser, its views, its owners and its state.  NULL is
 * ignored. */
void ln_optim_free(ln_optim *opt);

/* One update of every parameter from its current gradient; increments the
 * step count first (Adam's bias correction uses the new count).  No
 * allocation, no failure. */
void ln_optim_step(ln_optim *opt);

/* Sets every gradient to zero. */
void ln_optim_zero_grad(ln_optim *opt);

/* ---- hyper-parameters ------------------------------------------------------------ */

/* The configuration in use. */
const ln_optim_config *ln_optim_get_config(const ln_optim *opt);

/* Reads the value called name (flags as 0 or 1); false if there is none. */
bool ln_optim_get(const ln_optim *opt, const char *name, double *value);

/* Sets one value, validating the new configuration as ln_optim_new would:
 * this is how schedules change lr between steps.  Errors as
 * ln_optim_set_config, and LN_EARG for an unknown name.  On error nothing
 * changes. */
ln_status ln_optim_set(ln_optim *opt, const char *name, double value, ln_error *err);

/* Replaces the whole configuration with cfg after validating it, as a
 * checkpoint loader does.  cfg must have the same description and fit the
 * state the optimiser was built with: a value that gates a state tensor
 * the optimiser lacks must stay 0, and fixed values must not change
 * (LN_ESTATE).  On error nothing changes. */
ln_status ln_optim_set_config(ln_optim *opt, const ln_optim_config *cfg, ln_error *err);

/* ---- parameters and state, for saving and loading ----------------------------- */

int ln_optim_nparams(const ln_optim *opt);
/* The i-th parameter / gradient view (0-based), owned by the optimiser. */
const ln_tensor *ln_optim_param(const ln_optim *opt, int i);
const ln_tensor *ln_optim_grad(const ln_optim *opt, int i);
/* The module holding parameter i, with its index there in *index, or NULL
 * when the parameter was given without one. */
ln_module *ln_optim_owner(const ln_optim *opt, int i, int *index);

/* Number of steps taken (0 after construction). */
int64_t ln_optim_step_count(const ln_optim *opt);
/* Restores the step count when loading a checkpoint.  LN_ERANGE if < 0. */
ln_status ln_optim_set_step_count(ln_optim *opt, int64_t steps, ln_error *err);

/* Number of state tensors each parameter has (those of the description
 * that exist, in description order) and the name of the k-th (NULL when
 * out of range). */
int ln_optim_nstate(const ln_optim *opt);
const char *ln_optim_state_name(const ln_optim *opt, int k);
/* The k-th existing state tensor of parameter i, shaped like that
 * parameter and owned by the optimiser.  A loader writes into it
 * (ln_tensor_copy); a saver reads it.  NULL when i or k is out of range. */
ln_tensor *ln_optim_state(ln_optim *opt, int i, int k);
/* The k (as above) of the state tensor called name, or -1. */
int ln_optim_state_index(const ln_optim *opt, const char *name);

/* ==== gradient clipping =========================================================
 *
 * ln_clip_grad_norm scales the gradients of a model so that their total
 * L2 norm is at most max_norm, as torch.nn.utils.clip_grad_norm_ does:
 *
 *     total = sqrt(sum over every gradient element g^2)   (in double)
 *     coef  = max_norm / (total + 1e-6)
 *     every gradient *= min(coef, 1)
 *
 * and returns total, the norm before clipping.  A NaN or infinite total
 * is not an error (PyTorch's default, error_if_nonfinite=False): an
 * infinite total gives coef 0, so finite entries become 0 and infinite
 * ones NaN; a NaN total makes every gradient NaN.  Gradients zeroed
 * lazily (ln_tensor_zero) count as zeros and stay lazy.  max_norm is the
 * caller's to check (a number >= 0; infinity leaves every gradient as it
 * is). */
double ln_clip_grad_norm(ln_module *m, double max_norm);
/* The pieces, for gradients that come one by one (a table of tensors, a
 * custom module's): the sum of squares of g's elements (any layout), in
 * double; the factor min(max_norm / (total + 1e-6), 1), NaN for a NaN
 * total; g *= coef (nothing when coef is 1). */
double ln_grad_sumsq(const ln_tensor *g);
double ln_clip_coef(double total, double max_norm);
void ln_grad_scale(ln_tensor *g, double coef);

#endif
