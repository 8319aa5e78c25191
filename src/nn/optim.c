/*
 * optim.c -- SGD, Adam(W) and RMSprop over (parameter, gradient) views.
 *
 * The update rules, written out in optim.h, follow torch.optim so that a
 * run can be checked against PyTorch.  Each kernel below is one pass over
 * one parameter's contiguous memory: the wrapper validates, the kernel
 * trusts.  Scalars that depend on the step (Adam's bias corrections) are
 * computed in double once per step, then used in float.
 */
#include "optim.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"

typedef struct ln_optim_slot {
	ln_tensor param;                      /* view of the model's parameter */
	ln_tensor grad;                       /* view of its gradient */
	ln_tensor state[LN_OPTIM_MAX_STATE];  /* owned, shaped like param */
} ln_optim_slot;

struct ln_optim {
	ln_optim_config cfg;
	int64_t steps;
	int nslots;
	ln_optim_slot *slots;  /* nslots entries, from ln_malloc */
	int nstate;
	const char *state_names[LN_OPTIM_MAX_STATE];
	/* Which state index holds what; -1 when absent. */
	int momentum_idx;  /* SGD, RMSprop: "momentum_buffer" */
	int exp_avg_idx, exp_avg_sq_idx;       /* Adam */
	int square_avg_idx, grad_avg_idx;      /* RMSprop */
};

/* ======================================================================
 * Kernels.  Buffers are (n) floats; p, g, state all the same length.
 * ====================================================================== */

/* SGD: d = g + wd*p;  b = mu*b + d (if b);  d = nesterov ? d + mu*b : b;
 * p -= lr*d.  b == NULL when momentum is 0. */
static void sgd_kernel(float *p, const float *g, float *b, int64_t n, float lr, float mu,
                       float wd, bool nesterov)
{
	if (b == NULL) {
		for (int64_t i = 0; i < n; i++)
			p[i] -= lr * (g[i] + wd * p[i]);
		return;
	}
	for (int64_t i = 0; i < n; i++) {
		float d = g[i] + wd * p[i];
		b[i] = mu * b[i] + d;
		d = nesterov ? d + mu * b[i] : b[i];
		p[i] -= lr * d;
	}
}

/* Adam: (decay) p *= 1 - lr*wd  or  d = g + wd*p;
 * m = b1*m + c1*d;  v = b2*v + c2*d*d   (c1 = 1-b1, c2 = 1-b2);
 * p -= step_size * m / (sqrt(v)/bc2_sqrt + eps),
 * with step_size = lr/(1-b1^t) and bc2_sqrt = sqrt(1-b2^t).
 * c1 and c2 come from double: 1 - 0.999f in float loses 5 digits. */
static void adam_kernel(float *p, const float *g, float *m, float *v, int64_t n, float b1,
                        float c1, float b2, float c2, float eps, float wd_l2, float decay,
                        float step_size, float bc2_sqrt)
{
	for (int64_t i = 0; i < n; i++) {
		p[i] *= decay;
		float d = g[i] + wd_l2 * p[i];
		m[i] = b1 * m[i] + c1 * d;
		v[i] = b2 * v[i] + c2 * d * d;
		p[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
	}
}

/* RMSprop: d = g + wd*p;  s = a*s + ca*d*d  (ca = 1-a, from double);
 * centered: c = a*c + ca*d, den = sqrt(max(s - c*c, 0)) + eps, else
 * den = sqrt(s) + eps;  momentum: b = mu*b + d/den, p -= lr*b;  else
 * p -= lr*d/den.  c == NULL unless centered, b == NULL unless mu > 0.
 * (The max(.,0) guards against rounding making s - c*c slightly
 * negative, where PyTorch would produce NaN.) */
static void rmsprop_kernel(float *p, const float *g, float *s, float *c, float *b, int64_t n,
                           float lr, float a, float ca, float eps, float wd, float mu)
{
	for (int64_t i = 0; i < n; i++) {
		float d = g[i] + wd * p[i];
		s[i] = a * s[i] + ca * d * d;
		float den;
		if (c) {
			c[i] = a * c[i] + ca * d;
			den = sqrtf(fmaxf(s[i] - c[i] * c[i], 0.0f)) + eps;
		} else {
			den = sqrtf(s[i]) + eps;
		}
		if (b) {
			b[i] = mu * b[i] + d / den;
			p[i] -= lr * b[i];
		} else {
			p[i] -= lr * d / den;
		}
	}
}

/* ======================================================================
 * Configuration
 * ====================================================================== */

ln_optim_config ln_optim_defaults(ln_optim_kind kind)
{
	ln_optim_config c = {0};
	c.kind = kind;
	c.beta1 = 0.9;
	c.beta2 = 0.999;
	c.eps = 1e-8;
	c.alpha = 0.99;
	c.lr = kind == LN_OPTIM_RMSPROP ? 1e-2 : 1e-3;
	return c;
}

const char *ln_optim_name(const ln_optim_config *cfg)
{
	switch (cfg->kind) {
	case LN_OPTIM_SGD: return "SGD";
	case LN_OPTIM_ADAM: return cfg->decoupled ? "AdamW" : "Adam";
	case LN_OPTIM_RMSPROP: return "RMSprop";
	default: return "optimizer";
	}
}

/* v as "%g", but NaN always as "nan" (0/0 is "-nan" on x86). */
static const char *num(char *buf, size_t size, double v)
{
	if (isnan(v))
		snprintf(buf, size, "nan");
	else
		snprintf(buf, size, "%g", v);
	return buf;
}

/* value must be finite and >= 0. */
static ln_status check_nonneg(const char *who, const char *name, double v, ln_error *err)
{
	char b[32];
	if (isnan(v) || v < 0)
		return ln_fail(err, LN_ERANGE, "%s: %s must be >= 0, got %s", who, name,
		               num(b, sizeof b, v));
	if (isinf(v))
		return ln_fail(err, LN_ERANGE, "%s: %s must be finite, got %g", who, name, v);
	return LN_OK;
}

/* value must be in [0,1). */
static ln_status check_unit(const char *who, const char *name, double v, ln_error *err)
{
	char b[32];
	if (!(v >= 0 && v < 1))
		return ln_fail(err, LN_ERANGE, "%s: %s must be in [0,1), got %s", who, name,
		               num(b, sizeof b, v));
	return LN_OK;
}

ln_status ln_optim_validate(const ln_optim_config *cfg, ln_error *err)
{
	if ((unsigned)cfg->kind >= LN_OPTIM_KIND_COUNT)
		return ln_fail(err, LN_EARG, "optimizer: unknown kind %d", (int)cfg->kind);
	const char *who = ln_optim_name(cfg);
	ln_status st;
	if ((st = check_nonneg(who, "lr", cfg->lr, err)) != LN_OK)
		return st;
	if ((st = check_nonneg(who, "weight_decay", cfg->weight_decay, err)) != LN_OK)
		return st;
	switch (cfg->kind) {
	case LN_OPTIM_SGD:
		if ((st = check_nonneg(who, "momentum", cfg->momentum, err)) != LN_OK)
			return st;
		if (cfg->nesterov && cfg->momentum <= 0)
			return ln_fail(err, LN_EARG, "%s: nesterov requires momentum > 0, got %g", who,
			               cfg->momentum);
		break;
	case LN_OPTIM_ADAM:
		if ((st = check_unit(who, "beta1", cfg->beta1, err)) != LN_OK)
			return st;
		if ((st = check_unit(who, "beta2", cfg->beta2, err)) != LN_OK)
			return st;
		if ((st = check_nonneg(who, "eps", cfg->eps, err)) != LN_OK)
			return st;
		break;
	case LN_OPTIM_RMSPROP:
		if ((st = check_unit(who, "alpha", cfg->alpha, err)) != LN_OK)
			return st;
		if ((st = check_nonneg(who, "eps", cfg->eps, err)) != LN_OK)
			return st;
		if ((st = check_nonneg(who, "momentum", cfg->momentum, err)) != LN_OK)
			return st;
		break;
	default:
		break;
	}
	return LN_OK;
}

/* ======================================================================
 * Construction
 * ====================================================================== */

/* Fills the state layout (names and indices) for cfg. */
static void layout_state(ln_optim *o)
{
	const ln_optim_config *c = &o->cfg;
	o->momentum_idx = o->exp_avg_idx = o->exp_avg_sq_idx = -1;
	o->square_avg_idx = o->grad_avg_idx = -1;
	o->nstate = 0;
	switch (c->kind) {
	case LN_OPTIM_SGD:
		if (c->momentum != 0) {
			o->momentum_idx = o->nstate;
			o->state_names[o->nstate++] = "momentum_buffer";
		}
		break;
	case LN_OPTIM_ADAM:
		o->exp_avg_idx = o->nstate;
		o->state_names[o->nstate++] = "exp_avg";
		o->exp_avg_sq_idx = o->nstate;
		o->state_names[o->nstate++] = "exp_avg_sq";
		break;
	case LN_OPTIM_RMSPROP:
		o->square_avg_idx = o->nstate;
		o->state_names[o->nstate++] = "square_avg";
		if (c->momentum > 0) {
			o->momentum_idx = o->nstate;
			o->state_names[o->nstate++] = "momentum_buffer";
		}
		if (c->centered) {
			o->grad_avg_idx = o->nstate;
			o->state_names[o->nstate++] = "grad_avg";
		}
		break;
	default:
		break;
	}
	assert(o->nstate <= LN_OPTIM_MAX_STATE);
}

/* Checks one (param, grad) pair; i is 0-based, messages say "parameter
 * i+1" as a Lua user counts. */
static ln_status check_pair(const char *who, int i, const ln_tensor *p, const ln_tensor *g,
                            ln_error *err)
{
	if (ln_tensor_is_empty(p) || ln_tensor_is_empty(g))
		return ln_fail(err, LN_EARG, "%s: parameter %d: %s is empty", who, i + 1,
		               ln_tensor_is_empty(p) ? "tensor" : "gradient");
	if (!ln_tensor_is_contiguous(p) || !ln_tensor_is_contiguous(g))
		return ln_fail(err, LN_EARG, "%s: parameter %d: %s is not contiguous", who, i + 1,
		               !ln_tensor_is_contiguous(p) ? "tensor" : "gradient");
	if (!ln_tensor_same_shape(p, g)) {
		char a[64], b[64];
		return ln_fail(err, LN_ESHAPE,
		               "%s: parameter %d has shape %s but its gradient has shape %s", who, i + 1,
		               ln_tensor_shape_str(p, a, sizeof a), ln_tensor_shape_str(g, b, sizeof b));
	}
	return LN_OK;
}

/* True when the memory of a and b (both contiguous) overlaps. */
static bool overlaps(const ln_tensor *a, const ln_tensor *b)
{
	if (a->storage != b->storage)
		return false;
	size_t a0 = a->offset, a1 = a0 + (size_t)ln_tensor_numel(a);
	size_t b0 = b->offset, b1 = b0 + (size_t)ln_tensor_numel(b);
	return a0 < b1 && b0 < a1;
}

ln_status ln_optim_new(ln_optim **out, const ln_optim_config *cfg, int n, const ln_tensor *params,
                       const ln_tensor *grads, ln_error *err)
{
	*out = NULL;
	ln_status st = ln_optim_validate(cfg, err);
	if (st != LN_OK)
		return st;
	const char *who = ln_optim_name(cfg);
	if (n < 1)
		return ln_fail(err, LN_EARG, "%s: no parameters to optimize", who);
	for (int i = 0; i < n; i++) {
		if ((st = check_pair(who, i, &params[i], &grads[i], err)) != LN_OK)
			return st;
		for (int j = 0; j < i; j++)
			if (overlaps(&params[i], &params[j]))
				return ln_fail(err, LN_EARG,
				               "%s: parameters %d and %d share memory (a parameter listed "
				               "twice?)", who, j + 1, i + 1);
	}

	ln_optim *o = ln_calloc(1, sizeof *o);
	if (!o)
		return ln_fail(err, LN_ENOMEM, "%s: out of memory", who);
	o->cfg = *cfg;
	layout_state(o);
	o->slots = ln_calloc((size_t)n, sizeof *o->slots);
	if (!o->slots) {
		ln_free(o);
		return ln_fail(err, LN_ENOMEM, "%s: out of memory for %d parameters", who, n);
	}
	/* Slots are zeroed, so every tensor in them is empty: ln_optim_free
	 * can release a partly built optimiser. */
	o->nslots = n;
	for (int i = 0; i < n; i++) {
		ln_optim_slot *s = &o->slots[i];
		ln_tensor_ref(&s->param, &params[i]);
		ln_tensor_ref(&s->grad, &grads[i]);
		for (int k = 0; k < o->nstate; k++) {
			st = ln_tensor_alloc(&s->state[k], params[i].ndim, params[i].shape, err);
			if (st != LN_OK) {
				const char *sname = o->state_names[k];
				ln_optim_free(o);
				return ln_fail(err, st, "%s: cannot allocate state buffer '%s' of parameter %d",
				               who, sname, i + 1);
			}
		}
	}
	*out = o;
	return LN_OK;
}

void ln_optim_free(ln_optim *opt)
{
	if (!opt)
		return;
	if (opt->slots) {
		for (int i = 0; i < opt->nslots; i++) {
			ln_optim_slot *s = &opt->slots[i];
			ln_tensor_release(&s->param);
			ln_tensor_release(&s->grad);
			for (int k = 0; k < LN_OPTIM_MAX_STATE; k++)
				ln_tensor_release(&s->state[k]);
		}
		ln_free(opt->slots);
	}
	ln_free(opt);
}

/* ======================================================================
 * Step
 * ====================================================================== */

/* Data pointer of state k of slot s, or NULL when k < 0. */
static float *state_data(ln_optim_slot *s, int k)
{
	return k < 0 ? NULL : ln_tensor_data(&s->state[k]);
}

void ln_optim_step(ln_optim *opt)
{
	const ln_optim_config *c = &opt->cfg;
	opt->steps++;
	/* Adam's step-dependent scalars, in double (only Adam needs them). */
	double bc1 = 1.0, bc2 = 1.0;
	if (c->kind == LN_OPTIM_ADAM) {
		bc1 = 1.0 - pow(c->beta1, (double)opt->steps);
		bc2 = 1.0 - pow(c->beta2, (double)opt->steps);
	}
	for (int i = 0; i < opt->nslots; i++) {
		ln_optim_slot *s = &opt->slots[i];
		float *p = ln_tensor_data(&s->param);
		const float *g = ln_tensor_data(&s->grad);
		int64_t n = ln_tensor_numel(&s->param);
		switch (c->kind) {
		case LN_OPTIM_SGD:
			sgd_kernel(p, g, state_data(s, opt->momentum_idx), n, (float)c->lr,
			           (float)c->momentum, (float)c->weight_decay, c->nesterov);
			break;
		case LN_OPTIM_ADAM: {
			float wd_l2 = c->decoupled ? 0.0f : (float)c->weight_decay;
			float decay = c->decoupled ? (float)(1.0 - c->lr * c->weight_decay) : 1.0f;
			adam_kernel(p, g, state_data(s, opt->exp_avg_idx), state_data(s, opt->exp_avg_sq_idx),
			            n, (float)c->beta1, (float)(1.0 - c->beta1), (float)c->beta2,
			            (float)(1.0 - c->beta2), (float)c->eps, wd_l2, decay,
			            (float)(c->lr / bc1), (float)sqrt(bc2));
			break;
		}
		case LN_OPTIM_RMSPROP:
			rmsprop_kernel(p, g, state_data(s, opt->square_avg_idx),
			               state_data(s, opt->grad_avg_idx), state_data(s, opt->momentum_idx), n,
			               (float)c->lr, (float)c->alpha, (float)(1.0 - c->alpha), (float)c->eps,
			               (float)c->weight_decay,
			               (float)c->momentum);
			break;
		default:
			assert(!"unknown optimizer kind");
		}
	}
}

/* Lazily where a gradient is a whole storage (ln_tensor_zero): the next
 * backward then writes it instead of adding to zeros. */
void ln_optim_zero_grad(ln_optim *opt)
{
	for (int i = 0; i < opt->nslots; i++)
		ln_tensor_zero(&opt->slots[i].grad);
}

/* ======================================================================
 * Hyper-parameters by name
 * ====================================================================== */

/* Pointer to the named field of c if the kind uses it, else NULL. */
static double *hyper_field(ln_optim_config *c, const char *name)
{
	if (strcmp(name, "lr") == 0)
		return &c->lr;
	if (strcmp(name, "weight_decay") == 0)
		return &c->weight_decay;
	switch (c->kind) {
	case LN_OPTIM_SGD:
		if (strcmp(name, "momentum") == 0)
			return &c->momentum;
		break;
	case LN_OPTIM_ADAM:
		if (strcmp(name, "beta1") == 0)
			return &c->beta1;
		if (strcmp(name, "beta2") == 0)
			return &c->beta2;
		if (strcmp(name, "eps") == 0)
			return &c->eps;
		break;
	case LN_OPTIM_RMSPROP:
		if (strcmp(name, "momentum") == 0)
			return &c->momentum;
		if (strcmp(name, "alpha") == 0)
			return &c->alpha;
		if (strcmp(name, "eps") == 0)
			return &c->eps;
		break;
	default:
		break;
	}
	return NULL;
}

bool ln_optim_get(const ln_optim *opt, const char *name, double *value)
{
	double *f = hyper_field((ln_optim_config *)&opt->cfg, name);
	if (!f)
		return false;
	*value = *f;
	return true;
}

ln_status ln_optim_set_config(ln_optim *opt, const ln_optim_config *cfg, ln_error *err)
{
	const char *who = ln_optim_name(&opt->cfg);
	if (cfg->kind != opt->cfg.kind)
		return ln_fail(err, LN_ESTATE, "%s: cannot change the kind of optimizer to %s", who,
		               ln_optim_name(cfg));
	ln_status st = ln_optim_validate(cfg, err);
	if (st != LN_OK)
		return st;
	if (cfg->kind != LN_OPTIM_ADAM && cfg->momentum != 0 && opt->momentum_idx < 0)
		return ln_fail(err, LN_ESTATE,
		               "%s: cannot set momentum to %g: built without momentum, so there is no "
		               "momentum buffer (construct with momentum > 0)", who, cfg->momentum);
	if (cfg->kind == LN_OPTIM_RMSPROP && cfg->centered != opt->cfg.centered)
		return ln_fail(err, LN_ESTATE, "%s: cannot change centered after construction", who);
	opt->cfg = *cfg;
	return LN_OK;
}

ln_status ln_optim_set(ln_optim *opt, const char *name, double value, ln_error *err)
{
	ln_optim_config c = opt->cfg;
	double *f = hyper_field(&c, name);
	if (!f)
		return ln_fail(err, LN_EARG, "%s: no hyper-parameter named '%s'",
		               ln_optim_name(&opt->cfg), name);
	*f = value;
	return ln_optim_set_config(opt, &c, err);
}

const ln_optim_config *ln_optim_get_config(const ln_optim *opt)
{
	return &opt->cfg;
}

/* ======================================================================
 * State access
 * ====================================================================== */

int ln_optim_nparams(const ln_optim *opt)
{
	return opt->nslots;
}

const ln_tensor *ln_optim_param(const ln_optim *opt, int i)
{
	return i >= 0 && i < opt->nslots ? &opt->slots[i].param : NULL;
}

const ln_tensor *ln_optim_grad(const ln_optim *opt, int i)
{
	return i >= 0 && i < opt->nslots ? &opt->slots[i].grad : NULL;
}

int64_t ln_optim_step_count(const ln_optim *opt)
{
	return opt->steps;
}

ln_status ln_optim_set_step_count(ln_optim *opt, int64_t steps, ln_error *err)
{
	if (steps < 0)
		return ln_fail(err, LN_ERANGE, "%s: step count must be >= 0, got %lld",
		               ln_optim_name(&opt->cfg), (long long)steps);
	opt->steps = steps;
	return LN_OK;
}

int ln_optim_nstate(const ln_optim *opt)
{
	return opt->nstate;
}

const char *ln_optim_state_name(const ln_optim *opt, int k)
{
	return k >= 0 && k < opt->nstate ? opt->state_names[k] : NULL;
}

ln_tensor *ln_optim_state(ln_optim *opt, int i, int k)
{
	if (i < 0 || i >= opt->nslots || k < 0 || k >= opt->nstate)
		return NULL;
	return &opt->slots[i].state[k];
}
