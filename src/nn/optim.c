/*
 * optim.c -- the optimisers: SGD, Adam(W) and RMSprop, each one
 * description and one kernel, and the machine that runs any description.
 *
 * The update rules, written out in optim.h, follow torch.optim so that a
 * run can be checked against PyTorch.  Each kernel is one pass over one
 * parameter's contiguous memory: the machine validates, the kernel
 * trusts.  Scalars that depend on the step (Adam's bias corrections) are
 * computed in double, then used in float.
 *
 * To add an optimiser: an enum of its values, a kernel, a step function
 * that unpacks the values for the kernel, a description, and its line in
 * `descs` below.  Its Lua constructor (lunet.optim.<name>), option
 * checking, tostring, state()/load_state() and file format follow.
 */
#include "optim.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/parallel.h"

/* ======================================================================
 * SGD
 * ====================================================================== */

enum { SGD_LR, SGD_MOMENTUM, SGD_NESTEROV, SGD_WEIGHT_DECAY, SGD_NVALUES };
enum { SGD_MOMENTUM_BUFFER };

/* d = g + wd*p;  b = mu*b + d (if b);  d = nesterov ? d + mu*b : b;
 * p -= lr*d.  p, b, g: (n).  b == NULL when momentum is 0. */
static void sgd_kernel(float *p, float *b, const float *g, int64_t n, float lr, float mu,
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

static void sgd_step(const double *v, int64_t t, float *p, const float *g, float *const *state,
                     int64_t n)
{
	sgd_kernel(p, state[SGD_MOMENTUM_BUFFER], g, n, (float)v[SGD_LR], (float)v[SGD_MOMENTUM],
	           (float)v[SGD_WEIGHT_DECAY], v[SGD_NESTEROV] != 0);
}

static ln_status sgd_check(const double *v, ln_error *err)
{
	if (v[SGD_NESTEROV] != 0 && v[SGD_MOMENTUM] <= 0)
		return ln_fail(err, LN_EARG, "nesterov requires momentum > 0, got %g", v[SGD_MOMENTUM]);
	return LN_OK;
}

static const ln_optim_desc sgd_desc = {
	.name = "SGD",
	.values = {
		[SGD_LR] = {"lr", LN_OPTIM_NUMBER, LN_OPTIM_NONNEG, NAN, NULL, false},
		[SGD_MOMENTUM] = {"momentum", LN_OPTIM_NUMBER, LN_OPTIM_NONNEG, 0, NULL, false},
		[SGD_NESTEROV] = {"nesterov", LN_OPTIM_BOOL, LN_OPTIM_ANY, 0, NULL, false},
		[SGD_WEIGHT_DECAY] = {"weight_decay", LN_OPTIM_NUMBER, LN_OPTIM_NONNEG, 0, NULL, false},
	},
	.state = {
		[SGD_MOMENTUM_BUFFER] = {"momentum_buffer", SGD_MOMENTUM},
	},
	.check = sgd_check,
	.step = sgd_step,
	.variant = {NULL, 0, -1, 0},
};

/* ======================================================================
 * Adam, and AdamW (its decoupled weight decay)
 * ====================================================================== */

enum { ADAM_LR, ADAM_BETA1, ADAM_BETA2, ADAM_EPS, ADAM_WEIGHT_DECAY, ADAM_DECOUPLED,
       ADAM_NVALUES };
enum { ADAM_EXP_AVG, ADAM_EXP_AVG_SQ };

/* (decay) p *= 1 - lr*wd  or  d = g + wd*p;
 * m = b1*m + c1*d;  v = b2*v + c2*d*d   (c1 = 1-b1, c2 = 1-b2);
 * p -= step_size * m / (sqrt(v)/bc2_sqrt + eps),
 * with step_size = lr/(1-b1^t) and bc2_sqrt = sqrt(1-b2^t).
 * p, m, v, g: (n).  c1 and c2 come from double: 1 - 0.999f in float
 * loses 5 digits. */
static void adam_kernel(float *p, float *m, float *v, const float *g, int64_t n, float b1,
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

static void adam_step(const double *v, int64_t t, float *p, const float *g, float *const *state,
                      int64_t n)
{
	double lr = v[ADAM_LR], b1 = v[ADAM_BETA1], b2 = v[ADAM_BETA2], wd = v[ADAM_WEIGHT_DECAY];
	bool decoupled = v[ADAM_DECOUPLED] != 0;
	double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
	adam_kernel(p, state[ADAM_EXP_AVG], state[ADAM_EXP_AVG_SQ], g, n, (float)b1,
	            (float)(1.0 - b1), (float)b2, (float)(1.0 - b2), (float)v[ADAM_EPS],
	            decoupled ? 0.0f : (float)wd, decoupled ? (float)(1.0 - lr * wd) : 1.0f,
	            (float)(lr / bc1), (float)sqrt(bc2));
}

static const ln_optim_desc adam_desc = {
	.name = "Adam",
	.values = {
		[ADAM_LR] = {"lr", LN_OPTIM_NUMBER, LN_OPTIM_NONNEG, 1e-3, NULL, false},
		[ADAM_BETA1] = {"beta1", LN_OPTIM_NUMBER, LN_OPTIM_UNIT, 0.9, "betas", false},
		[ADAM_BETA2] = {"beta2", LN_OPTIM_NUMBER, LN_OPTIM_UNIT, 0.999, "betas", false},
		[ADAM_EPS] = {"eps", LN_OPTIM_NUMBER, LN_OPTIM_NONNEG, 1e-8, NULL, false},
		[ADAM_WEIGHT_DECAY] = {"weight_decay", LN_OPTIM_NUMBER, LN_OPTIM_NONNEG, 0, NULL,
		                       false},
		/* fixed: it names the optimiser (Adam or AdamW) */
		[ADAM_DECOUPLED] = {"decoupled", LN_OPTIM_BOOL, LN_OPTIM_ANY, 0, NULL, true},
	},
	.state = {
		[ADAM_EXP_AVG] = {"exp_avg", -1},
		[ADAM_EXP_AVG_SQ] = {"exp_avg_sq", -1},
	},
	.check = NULL,
	.step = adam_step,
	/* PyTorch's AdamW: weight decay 0.01 by default */
	.variant = {"AdamW", ADAM_DECOUPLED, ADAM_WEIGHT_DECAY, 1e-2},
};

/* ======================================================================
 * RMSprop
 * ====================================================================== */

enum { RMS_LR, RMS_ALPHA, RMS_EPS, RMS_MOMENTUM, RMS_WEIGHT_DECAY, RMS_CENTERED, RMS_NVALUES };
enum { RMS_SQUARE_AVG, RMS_MOMENTUM_BUFFER, RMS_GRAD_AVG };

/* d = g + wd*p;  s = a*s + ca*d*d  (ca = 1-a, from double);
 * centered: c = a*c + ca*d, den = sqrt(max(s - c*c, 0)) + eps, else
 * den = sqrt(s) + eps;  momentum: b = mu*b + d/den, p -= lr*b;  else
 * p -= lr*d/den.  p, s, c, b, g: (n).  c == NULL unless centered, b ==
 * NULL unless mu > 0.  (The max(.,0) guards against rounding making
 * s - c*c slightly negative, where PyTorch would produce NaN.) */
static void rmsprop_kernel(float *p, float *s, float *c, float *b, const float *g, int64_t n,
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

static void rmsprop_step(const double *v, int64_t t, float *p, const float *g,
                         float *const *state, int64_t n)
{
	rmsprop_kernel(p, state[RMS_SQUARE_AVG], state[RMS_GRAD_AVG], state[RMS_MOMENTUM_BUFFER], g,
	               n, (float)v[RMS_LR], (float)v[RMS_ALPHA], (float)(1.0 - v[RMS_ALPHA]),
	               (float)v[RMS_EPS], (float)v[RMS_WEIGHT_DECAY], (float)v[RMS_MOMENTUM]);
}

static const ln_optim_desc rmsprop_desc = {
	.name = "RMSprop",
	.values = {
		[RMS_LR] = {"lr", LN_OPTIM_NUMBER, LN_OPTIM_NONNEG, 1e-2, NULL, false},
		[RMS_ALPHA] = {"alpha", LN_OPTIM_NUMBER, LN_OPTIM_UNIT, 0.99, NULL, false},
		[RMS_EPS] = {"eps", LN_OPTIM_NUMBER, LN_OPTIM_NONNEG, 1e-8, NULL, false},
		[RMS_MOMENTUM] = {"momentum", LN_OPTIM_NUMBER, LN_OPTIM_NONNEG, 0, NULL, false},
		[RMS_WEIGHT_DECAY] = {"weight_decay", LN_OPTIM_NUMBER, LN_OPTIM_NONNEG, 0, NULL, false},
		[RMS_CENTERED] = {"centered", LN_OPTIM_BOOL, LN_OPTIM_ANY, 0, NULL, true},
	},
	.state = {
		[RMS_SQUARE_AVG] = {"square_avg", -1},
		[RMS_MOMENTUM_BUFFER] = {"momentum_buffer", RMS_MOMENTUM},
		[RMS_GRAD_AVG] = {"grad_avg", RMS_CENTERED},
	},
	.check = NULL,
	.step = rmsprop_step,
	.variant = {NULL, 0, -1, 0},
};

/* ======================================================================
 * The table of optimisers
 * ====================================================================== */

static_assert(SGD_NVALUES <= LN_OPTIM_MAX_VALUES && ADAM_NVALUES <= LN_OPTIM_MAX_VALUES &&
              RMS_NVALUES <= LN_OPTIM_MAX_VALUES, "optim: LN_OPTIM_MAX_VALUES too small");
static_assert(LN_OPTIM_MAX_VALUES <= 8 * sizeof(unsigned), "optim: unset mask too small");

static const ln_optim_desc *const descs[] = {&sgd_desc, &adam_desc, &rmsprop_desc};

const ln_optim_desc *const *ln_optim_descs(int *count)
{
	*count = (int)(sizeof descs / sizeof descs[0]);
	return descs;
}

int ln_optim_desc_nvalues(const ln_optim_desc *d)
{
	int n = 0;
	while (n < LN_OPTIM_MAX_VALUES && d->values[n].name)
		n++;
	return n;
}

int ln_optim_desc_nstate(const ln_optim_desc *d)
{
	int n = 0;
	while (n < LN_OPTIM_MAX_STATE && d->state[n].name)
		n++;
	return n;
}

int ln_optim_value_index(const ln_optim_desc *d, const char *name)
{
	for (int i = 0; i < LN_OPTIM_MAX_VALUES && d->values[i].name; i++)
		if (strcmp(d->values[i].name, name) == 0)
			return i;
	return -1;
}

/* ======================================================================
 * Configurations
 * ====================================================================== */

ln_status ln_optim_config_init(ln_optim_config *c, const char *name, ln_error *err)
{
	memset(c, 0, sizeof *c);
	for (size_t k = 0; k < sizeof descs / sizeof descs[0]; k++) {
		const ln_optim_desc *d = descs[k];
		const ln_optim_variant *var = &d->variant;
		bool is_variant = var->name && strcmp(var->name, name) == 0;
		if (strcmp(d->name, name) != 0 && !is_variant)
			continue;
		c->desc = d;
		int n = ln_optim_desc_nvalues(d);
		for (int i = 0; i < n; i++) {
			c->v[i] = d->values[i].def;
			if (isnan(c->v[i]))
				c->unset |= 1u << i;
		}
		if (is_variant) {
			c->v[var->flag] = 1;
			if (var->changed >= 0)
				c->v[var->changed] = var->changed_def;
		}
		return LN_OK;
	}
	return ln_fail(err, LN_EARG, "no optimizer named '%s'", name);
}

const char *ln_optim_name(const ln_optim_config *c)
{
	const ln_optim_variant *var = &c->desc->variant;
	return var->name && c->v[var->flag] != 0 ? var->name : c->desc->name;
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

int ln_optim_describe(const ln_optim_config *c, char *buf, size_t size)
{
	const ln_optim_desc *d = c->desc;
	int n = ln_optim_desc_nvalues(d), len = snprintf(buf, size, "%s(", ln_optim_name(c));
	const char *sep = "";
	for (int i = 0; i < n && len >= 0; i++) {
		const ln_optim_value *e = &d->values[i];
		size_t at = (size_t)len < size ? (size_t)len : size;
		char a[32], b[32];
		int k;
		if (d->variant.name && i == d->variant.flag)
			continue;
		if (e->pair && i + 1 < n && d->values[i + 1].pair) {
			k = snprintf(buf + at, size - at, "%s%s={%s,%s}", sep, e->pair,
			             num(a, sizeof a, c->v[i]), num(b, sizeof b, c->v[i + 1]));
			i++;
		} else if (e->type == LN_OPTIM_BOOL) {
			k = snprintf(buf + at, size - at, "%s%s=%s", sep, e->name,
			             c->v[i] != 0 ? "true" : "false");
		} else {
			k = snprintf(buf + at, size - at, "%s%s=%s", sep, e->name, num(a, sizeof a, c->v[i]));
		}
		len = k < 0 ? k : len + k;
		sep = ", ";
	}
	if (len >= 0) {
		size_t at = (size_t)len < size ? (size_t)len : size;
		int k = snprintf(buf + at, size - at, ")");
		len = k < 0 ? k : len + k;
	}
	return len;
}

bool ln_optim_config_get(const ln_optim_config *c, const char *name, double *value)
{
	int i = ln_optim_value_index(c->desc, name);
	if (i < 0)
		return false;
	*value = c->v[i];
	return true;
}

ln_status ln_optim_config_set(ln_optim_config *c, const char *name, double value,
                              ln_error *err)
{
	int i = ln_optim_value_index(c->desc, name);
	if (i < 0)
		return ln_fail(err, LN_EARG, "no hyper-parameter named '%s'", name);
	c->v[i] = value;
	c->unset &= ~(1u << i);
	return LN_OK;
}


/* Value i of c against its kind and range. */
static ln_status check_value(const ln_optim_config *c, int i, ln_error *err)
{
	const ln_optim_value *d = &c->desc->values[i];
	double v = c->v[i];
	char b[32];
	if (c->unset & (1u << i))
		return ln_fail(err, LN_EARG, "%s is required: it has no default", d->name);
	if (d->type == LN_OPTIM_BOOL) {
		if (v != 0 && v != 1)
			return ln_fail(err, LN_EARG, "%s must be true or false (1 or 0), got %s", d->name,
			               num(b, sizeof b, v));
		return LN_OK;
	}
	switch (d->range) {
	case LN_OPTIM_NONNEG:
		if (isnan(v) || v < 0)
			return ln_fail(err, LN_ERANGE, "%s must be >= 0, got %s", d->name,
			               num(b, sizeof b, v));
		if (isinf(v))
			return ln_fail(err, LN_ERANGE, "%s must be finite, got %g", d->name, v);
		break;
	case LN_OPTIM_UNIT:
		if (!(v >= 0 && v < 1))
			return ln_fail(err, LN_ERANGE, "%s must be in [0,1), got %s", d->name,
			               num(b, sizeof b, v));
		break;
	case LN_OPTIM_ANY:
		break;
	}
	return LN_OK;
}

ln_status ln_optim_validate(const ln_optim_config *c, ln_error *err)
{
	if (!c->desc)
		return ln_fail(err, LN_EARG, "no optimizer description");
	int n = ln_optim_desc_nvalues(c->desc);
	for (int i = 0; i < n; i++) {
		ln_status st = check_value(c, i, err);
		if (st != LN_OK)
			return st;
	}
	return c->desc->check ? c->desc->check(c->v, err) : LN_OK;
}

/* ======================================================================
 * Construction
 * ====================================================================== */

typedef struct ln_optim_slot {
	ln_tensor param;                      /* view of the model's parameter */
	ln_tensor grad;                       /* view of its gradient */
	ln_module *owner;                     /* one reference, or NULL */
	int index;                            /* owner->param[index] */
	ln_tensor state[LN_OPTIM_MAX_STATE];  /* by description index; empty when absent */
} ln_optim_slot;

struct ln_optim {
	ln_optim_config cfg;
	int64_t steps;
	int nslots;
	ln_optim_slot *slots;  /* nslots entries, from ln_malloc */
	int nstate;            /* state tensors that exist */
	int state_of[LN_OPTIM_MAX_STATE];  /* k-th existing one -> description index */
};

/* Checks one parameter; i is 0-based, messages say "parameter i+1" as a
 * Lua user counts. */
static ln_status check_param(int i, const ln_optim_entry *e, ln_error *err)
{
	const ln_tensor *p = e->param, *g = e->grad;
	if (ln_tensor_is_empty(p) || ln_tensor_is_empty(g))
		return ln_fail(err, LN_EARG, "parameter %d: %s is empty", i + 1,
		               ln_tensor_is_empty(p) ? "tensor" : "gradient");
	if (!ln_tensor_is_contiguous(p) || !ln_tensor_is_contiguous(g))
		return ln_fail(err, LN_EARG, "parameter %d: %s is not contiguous", i + 1,
		               !ln_tensor_is_contiguous(p) ? "tensor" : "gradient");
	if (!ln_tensor_same_shape(p, g)) {
		char a[64], b[64];
		return ln_fail(err, LN_ESHAPE, "parameter %d has shape %s but its gradient has shape %s",
		               i + 1, ln_tensor_shape_str(p, a, sizeof a),
		               ln_tensor_shape_str(g, b, sizeof b));
	}
	if (e->owner) {
		const ln_module *m = e->owner;
		if (e->index < 0 || e->index >= m->nparams || p->storage != m->param[e->index].storage ||
		    p->offset != m->param[e->index].offset || g->storage != m->grad[e->index].storage ||
		    g->offset != m->grad[e->index].offset)
			return ln_fail(err, LN_EARG, "parameter %d is not parameter %d of its %s", i + 1,
			               e->index + 1, m->cls->name);
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

ln_status ln_optim_new(ln_optim **out, const ln_optim_config *cfg, int n,
                       const ln_optim_entry *params, ln_error *err)
{
	*out = NULL;
	if (n < 1)
		return ln_fail(err, LN_EARG, "no parameters to optimize");
	ln_status st;
	for (int i = 0; i < n; i++) {
		if ((st = check_param(i, &params[i], err)) != LN_OK)
			return st;
		for (int j = 0; j < i; j++)
			if (overlaps(params[i].param, params[j].param))
				return ln_fail(err, LN_EARG, "parameters %d and %d share memory (a parameter "
				               "listed twice?)", j + 1, i + 1);
	}
	if ((st = ln_optim_validate(cfg, err)) != LN_OK)
		return st;

	ln_optim *o = ln_calloc(1, sizeof *o);
	if (!o)
		return ln_fail(err, LN_ENOMEM, "out of memory");
	o->cfg = *cfg;
	int ndesc = ln_optim_desc_nstate(cfg->desc);
	for (int k = 0; k < ndesc; k++) {
		int when = cfg->desc->state[k].when;
		if (when < 0 || cfg->v[when] != 0)
			o->state_of[o->nstate++] = k;
	}
	o->slots = ln_calloc((size_t)n, sizeof *o->slots);
	if (!o->slots) {
		ln_free(o);
		return ln_fail(err, LN_ENOMEM, "out of memory for %d parameters", n);
	}
	/* Slots are zeroed, so every tensor in them is empty and no owner is
	 * held: ln_optim_free can release a partly built optimiser. */
	o->nslots = n;
	for (int i = 0; i < n; i++) {
		ln_optim_slot *s = &o->slots[i];
		const ln_tensor *p = params[i].param;
		ln_tensor_ref(&s->param, p);
		ln_tensor_ref(&s->grad, params[i].grad);
		if (params[i].owner) {
			s->owner = params[i].owner;
			s->index = params[i].index;
			ln_module_retain(s->owner);
		}
		for (int k = 0; k < o->nstate; k++) {
			st = ln_tensor_alloc(&s->state[o->state_of[k]], p->ndim, p->shape, err);
			if (st != LN_OK) {
				const char *sname = cfg->desc->state[o->state_of[k]].name;
				ln_optim_free(o);
				return ln_fail(err, st, "cannot allocate state buffer '%s' of parameter %d",
				               sname, i + 1);
			}
		}
	}
	*out = o;
	return LN_OK;
}

/* The parameters of a module tree, gathered by ln_module_visit_params. */
typedef struct gather {
	int n;
	ln_optim_entry *v;  /* NULL while counting */
} gather;

static int gather_param(ln_module *owner, int index, void *ctx)
{
	gather *g = ctx;
	if (g->v)
		g->v[g->n] = (ln_optim_entry){&owner->param[index], &owner->grad[index], owner, index};
	g->n++;
	return 0;
}

ln_status ln_optim_new_module(ln_optim **out, const ln_optim_config *cfg, ln_module *m,
                              ln_error *err)
{
	*out = NULL;
	gather g = {0, NULL};
	ln_module_visit_params(m, gather_param, &g);
	if (g.n == 0)
		return ln_optim_new(out, cfg, 0, NULL, err);
	g.v = ln_malloc((size_t)g.n * sizeof *g.v);
	if (!g.v)
		return ln_fail(err, LN_ENOMEM, "out of memory for %d parameters", g.n);
	g.n = 0;
	ln_module_visit_params(m, gather_param, &g);
	ln_status st = ln_optim_new(out, cfg, g.n, g.v, err);
	ln_free(g.v);
	return st;
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
			if (s->owner)
				ln_module_release(s->owner);
		}
		ln_free(opt->slots);
	}
	ln_free(opt);
}

/* ======================================================================
 * Step
 * ====================================================================== */

/* Elements [lo, hi) of all parameters taken end to end, in slot order. */
static void step_range(ln_optim *opt, int64_t lo, int64_t hi)
{
	int64_t base = 0;
	for (int i = 0; i < opt->nslots && base < hi; i++) {
		ln_optim_slot *s = &opt->slots[i];
		const int64_t n = ln_tensor_numel(&s->param);
		const int64_t a = lo > base ? lo - base : 0, b = hi - base < n ? hi - base : n;
		base += n;
		if (a >= b)
			continue;
		float *state[LN_OPTIM_MAX_STATE] = {NULL};
		for (int k = 0; k < opt->nstate; k++)
			state[opt->state_of[k]] = ln_tensor_data(&s->state[opt->state_of[k]]) + a;
		opt->cfg.desc->step(opt->cfg.v, opt->steps, ln_tensor_data(&s->param) + a,
		                    ln_tensor_data(&s->grad) + a, state, b - a);
	}
}

/* The update is split over the worker threads (parallel.h) when the
 * parameters have at least this many elements in all, into one range per
 * part across the parameters; each element is updated the same way
 * whichever part takes it (ln_optim_kernel), so the result does not
 * depend on the thread count.  Measured (one parameter of n elements,
 * best of 5, microseconds per step, quiet machine, every size split):
 *
 *     n        SGD+momentum 1t   2t     Adam 1t   2t     SGD 2t, OMP_WAIT_POLICY=PASSIVE
 *     8192          1.2          1.6        4.1     5.4       4.7
 *     32768         4.8          3.9       16.1    11.4       8.0
 *     65536        13.6          7.4       31.7    19.1      12.2 (1t 10.4)
 *     262144       41.1         27.3      125.0    74.6      37.1
 *     1048576     200.0         91.8      533.0   315.3     159.4 (1t 179.8)
 *
 * Below 64k the gain is a few microseconds at best; with threads that
 * sleep between splits (PASSIVE) a split costs a wake-up, which a small
 * update does not earn back. */
#define SPLIT_ELEMS (64 * 1024)

typedef struct step_job {
	ln_optim *opt;
	int64_t total;
} step_job;

/* ln_part_fn: part w of n takes elements [w*total/n, (w+1)*total/n),
 * its ends rounded down to 16 floats (a cache line) so that no two parts
 * write the same line of a parameter. */
static void step_part(void *ctx, int w, int n)
{
	const step_job *jb = ctx;
	const int64_t lo = w == 0 ? 0 : jb->total * w / n / 16 * 16;
	const int64_t hi = w == n - 1 ? jb->total : jb->total * (w + 1) / n / 16 * 16;
	step_range(jb->opt, lo, hi);
}

void ln_optim_step(ln_optim *opt)
{
	opt->steps++;
	int64_t total = 0;
	for (int i = 0; i < opt->nslots; i++) {
		ln_optim_slot *s = &opt->slots[i];
		total += ln_tensor_numel(&s->param);
		/* a tensor zeroed lazily (ln_tensor_zero) is cleared by its first
		 * ln_tensor_data: here, before the parts read them */
		(void)ln_tensor_data(&s->param);
		(void)ln_tensor_data(&s->grad);
		for (int k = 0; k < opt->nstate; k++)
			(void)ln_tensor_data(&s->state[opt->state_of[k]]);
	}
	step_job jb = {opt, total};
	const int parts = total >= SPLIT_ELEMS ? ln_parallel_threads() : 1;
	if (parts < 2 || ln_parallel_run(parts, step_part, &jb) == 0)
		step_range(opt, 0, total);
}

/* Lazily where a gradient is a whole storage (ln_tensor_zero): the next
 * backward then writes it instead of adding to zeros. */
void ln_optim_zero_grad(ln_optim *opt)
{
	for (int i = 0; i < opt->nslots; i++)
		ln_tensor_zero(&opt->slots[i].grad);
}

/* ======================================================================
 * Hyper-parameters
 * ====================================================================== */

const ln_optim_config *ln_optim_get_config(const ln_optim *opt)
{
	return &opt->cfg;
}

bool ln_optim_get(const ln_optim *opt, const char *name, double *value)
{
	return ln_optim_config_get(&opt->cfg, name, value);
}

/* True when state tensor k of the description exists in opt. */
static bool has_state(const ln_optim *opt, int k)
{
	for (int j = 0; j < opt->nstate; j++)
		if (opt->state_of[j] == k)
			return true;
	return false;
}

ln_status ln_optim_set_config(ln_optim *opt, const ln_optim_config *cfg, ln_error *err)
{
	const ln_optim_desc *d = opt->cfg.desc;
	if (cfg->desc != d)
		return ln_fail(err, LN_ESTATE, "cannot change the kind of optimizer to %s",
		               ln_optim_name(cfg));
	ln_status st = ln_optim_validate(cfg, err);
	if (st != LN_OK)
		return st;
	int n = ln_optim_desc_nvalues(d);
	for (int i = 0; i < n; i++)
		if (d->values[i].fixed && cfg->v[i] != opt->cfg.v[i])
			return ln_fail(err, LN_ESTATE, "cannot change %s after construction",
			               d->values[i].name);
	int ns = ln_optim_desc_nstate(d);
	for (int k = 0; k < ns; k++) {
		int when = d->state[k].when;
		if (when < 0 || cfg->v[when] == 0 || has_state(opt, k))
			continue;
		const ln_optim_value *w = &d->values[when];
		char b[32];
		return ln_fail(err, LN_ESTATE, "cannot set %s to %s: built without %s, so there is no "
		               "state '%s' (construct with %s %s)", w->name,
		               w->type == LN_OPTIM_BOOL ? "true" : num(b, sizeof b, cfg->v[when]),
		               w->name, d->state[k].name, w->name,
		               w->type == LN_OPTIM_BOOL ? "= true" : "> 0");
	}
	opt->cfg = *cfg;
	return LN_OK;
}

ln_status ln_optim_set(ln_optim *opt, const char *name, double value, ln_error *err)
{
	ln_optim_config c = opt->cfg;
	ln_status st = ln_optim_config_set(&c, name, value, err);
	return st != LN_OK ? st : ln_optim_set_config(opt, &c, err);
}

/* ======================================================================
 * Parameters and state
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

ln_module *ln_optim_owner(const ln_optim *opt, int i, int *index)
{
	if (i < 0 || i >= opt->nslots || !opt->slots[i].owner)
		return NULL;
	*index = opt->slots[i].index;
	return opt->slots[i].owner;
}

int64_t ln_optim_step_count(const ln_optim *opt)
{
	return opt->steps;
}

ln_status ln_optim_set_step_count(ln_optim *opt, int64_t steps, ln_error *err)
{
	if (steps < 0)
		return ln_fail(err, LN_ERANGE, "step count must be >= 0, got %lld", (long long)steps);
	opt->steps = steps;
	return LN_OK;
}

int ln_optim_nstate(const ln_optim *opt)
{
	return opt->nstate;
}

const char *ln_optim_state_name(const ln_optim *opt, int k)
{
	return k >= 0 && k < opt->nstate ? opt->cfg.desc->state[opt->state_of[k]].name : NULL;
}

ln_tensor *ln_optim_state(ln_optim *opt, int i, int k)
{
	if (i < 0 || i >= opt->nslots || k < 0 || k >= opt->nstate)
		return NULL;
	return &opt->slots[i].state[opt->state_of[k]];
}

int ln_optim_state_index(const ln_optim *opt, const char *name)
{
	for (int k = 0; k < opt->nstate; k++)
		if (strcmp(opt->cfg.desc->state[opt->state_of[k]].name, name) == 0)
			return k;
	return -1;
}

/* ==== gradient clipping ========================================================= */

static void add_square(float *v, void *ctx) { *(double *)ctx += (double)*v * *v; }

double ln_grad_sumsq(const ln_tensor *g)
{
	if (g->storage->zero_pending)
		return 0;
	double s = 0;
	if (ln_tensor_is_contiguous(g)) {
		const float *d = ln_tensor_data(g);
		for (int64_t i = 0, n = ln_tensor_numel(g); i < n; i++)
			s += (double)d[i] * d[i];
	} else {
		ln_tensor_foreach((ln_tensor *)g, add_square, &s);
	}
	return s;
}

double ln_clip_coef(double total, double max_norm)
{
	double coef = max_norm / (total + 1e-6);
	return coef < 1 || isnan(coef) ? coef : 1.0;
}

static void scale_one(float *v, void *ctx) { *v *= *(float *)ctx; }

/* The factor is rounded to float first, as PyTorch multiplies by it. */
void ln_grad_scale(ln_tensor *g, double coef)
{
	if (coef == 1.0 || g->storage->zero_pending)
		return;
	float c = (float)coef;
	if (ln_tensor_is_contiguous(g)) {
		float *d = ln_tensor_data(g);
		for (int64_t i = 0, n = ln_tensor_numel(g); i < n; i++)
			d[i] *= c;
	} else {
		ln_tensor_foreach(g, scale_one, &c);
	}
}

static int sum_grad(ln_module *owner, int index, void *ctx)
{
	*(double *)ctx += ln_grad_sumsq(&owner->grad[index]);
	return 0;
}

static int scale_grad(ln_module *owner, int index, void *ctx)
{
	ln_grad_scale(&owner->grad[index], *(double *)ctx);
	return 0;
}

double ln_clip_grad_norm(ln_module *m, double max_norm)
{
	double sq = 0;
	ln_module_visit_params(m, sum_grad, &sq);
	double total = sqrt(sq), coef = ln_clip_coef(total, max_norm);
	ln_module_visit_params(m, scale_grad, &coef);
	return total;
}
