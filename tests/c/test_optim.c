/*
 * test_optim.c -- SGD, Adam(W) and RMSprop.
 *
 * Each optimiser runs three steps on a small quadratic problem (two
 * parameter tensors, gradient g = w .* (p - target) recomputed before each
 * step), and every element is compared with a reference computed here in
 * double from the update rules as torch.optim's documentation writes them
 * (bias-corrected m-hat / v-hat for Adam, b_1 = g_1 for SGD momentum):
 * a different arrangement of the same maths than the implementation's.
 * A few scalar cases are also worked out by hand to literal numbers.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/gemm.h"
#include "core/tensor.h"
#include "nn/optim.h"
#include "testutil.h"

/* ---- the problem: p1 {2,2}, p2 {3}, 7 values in all ------------------------ */

#define NV 7
static const double P0[NV] = {0.5, -1.0, 2.0, 0.25, -0.3, 0.8, 1.5};
static const double TARGET[NV] = {1.0, 0.0, -1.0, 0.5, 0.2, -0.4, 1.0};
static const double W[NV] = {1.0, 2.0, 0.5, 3.0, 1.5, 0.25, 4.0};

typedef struct problem {
	ln_tensor p[2], g[2];
} problem;

static void problem_init(problem *pb)
{
	float v1[4], v2[3];
	for (int i = 0; i < 4; i++)
		v1[i] = (float)P0[i];
	for (int i = 0; i < 3; i++)
		v2[i] = (float)P0[4 + i];
	tu_tensor(&pb->p[0], 2, (int64_t[]){2, 2}, v1);
	tu_tensor(&pb->p[1], 1, (int64_t[]){3}, v2);
	tu_tensor(&pb->g[0], 2, (int64_t[]){2, 2}, NULL);
	tu_tensor(&pb->g[1], 1, (int64_t[]){3}, NULL);
}

static void problem_free(problem *pb)
{
	for (int i = 0; i < 2; i++) {
		ln_tensor_release(&pb->p[i]);
		ln_tensor_release(&pb->g[i]);
	}
}

/* Flat access to value k of the problem (params or grads). */
static float *elem(ln_tensor *t, int k)
{
	return k < 4 ? ln_tensor_data(&t[0]) + k : ln_tensor_data(&t[1]) + (k - 4);
}

/* g = w .* (p - target), written into the gradient tensors. */
static void problem_grad(problem *pb)
{
	for (int k = 0; k < NV; k++)
		*elem(pb->g, k) = (float)(W[k] * ((double)*elem(pb->p, k) - TARGET[k]));
}

/* ---- hyper-parameters, as the references read them ------------------------- */

/* Every hyper-parameter of the three optimisers by field; to_config gives
 * each description the ones it has. */
typedef struct hp {
	const char *kind;  /* "SGD", "Adam" or "RMSprop" */
	double lr, momentum, weight_decay, beta1, beta2, eps, alpha;
	bool nesterov, decoupled, centered;
} hp;

static ln_optim_config to_config(const hp *h)
{
	ln_optim_config c;
	ln_error err;
	if (ln_optim_config_init(&c, h->kind, &err) != LN_OK)
		fail_msg("%s", err.msg);
	const struct {
		const char *name;
		double v;
	} vals[] = {
		{"lr", h->lr}, {"momentum", h->momentum}, {"weight_decay", h->weight_decay},
		{"beta1", h->beta1}, {"beta2", h->beta2}, {"eps", h->eps}, {"alpha", h->alpha},
		{"nesterov", h->nesterov}, {"decoupled", h->decoupled}, {"centered", h->centered},
	};
	for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
		if (ln_optim_value_index(c.desc, vals[i].name) >= 0)
			ln_optim_config_set(&c, vals[i].name, vals[i].v, NULL);
	return c;
}

/* tu_optim_new with the configuration of h. */
static ln_status new_opt(ln_optim **opt, const hp *h, int n, const ln_tensor *p,
                         const ln_tensor *g, ln_error *err)
{
	ln_optim_config c = to_config(h);
	return tu_optim_new(opt, &c, n, p, g, err);
}

/* ---- references in double, straight from the documented algorithms -------- */

typedef struct ref {
	hp c;
	int t;
	double p[NV], b[NV], m[NV], v[NV], gave[NV];
} ref;

static void ref_init(ref *r, const hp *c)
{
	memset(r, 0, sizeof *r);
	r->c = *c;
	memcpy(r->p, P0, sizeof P0);
}

/* SGD (torch.optim.SGD docs, dampening 0):
 *   g <- g + wd*theta
 *   if mu != 0:  b_1 = g;  b_t = mu*b_{t-1} + g  (t > 1)
 *                g <- nesterov ? g + mu*b_t : b_t
 *   theta <- theta - lr*g */
static void ref_sgd(ref *r)
{
	const hp *c = &r->c;
	r->t++;
	for (int k = 0; k < NV; k++) {
		double g = W[k] * (r->p[k] - TARGET[k]);
		g += c->weight_decay * r->p[k];
		if (c->momentum != 0) {
			r->b[k] = r->t == 1 ? g : c->momentum * r->b[k] + g;
			g = c->nesterov ? g + c->momentum * r->b[k] : r->b[k];
		}
		r->p[k] -= c->lr * g;
	}
}

/* Adam / AdamW (torch.optim.Adam and AdamW docs, amsgrad off):
 *   AdamW: theta <- theta - lr*wd*theta      Adam: g <- g + wd*theta
 *   m <- b1*m + (1-b1)*g;   v <- b2*v + (1-b2)*g^2
 *   mhat = m/(1-b1^t);      vhat = v/(1-b2^t)
 *   theta <- theta - lr*mhat/(sqrt(vhat) + eps) */
static void ref_adam(ref *r)
{
	const hp *c = &r->c;
	r->t++;
	for (int k = 0; k < NV; k++) {
		double g = W[k] * (r->p[k] - TARGET[k]);
		if (c->decoupled)
			r->p[k] -= c->lr * c->weight_decay * r->p[k];
		else
			g += c->weight_decay * r->p[k];
		r->m[k] = c->beta1 * r->m[k] + (1 - c->beta1) * g;
		r->v[k] = c->beta2 * r->v[k] + (1 - c->beta2) * g * g;
		double mhat = r->m[k] / (1 - pow(c->beta1, r->t));
		double vhat = r->v[k] / (1 - pow(c->beta2, r->t));
		r->p[k] -= c->lr * mhat / (sqrt(vhat) + c->eps);
	}
}

/* RMSprop (torch.optim.RMSprop docs):
 *   g <- g + wd*theta
 *   v <- alpha*v + (1-alpha)*g^2;  vt = v
 *   centered: gave <- alpha*gave + (1-alpha)*g;  vt = v - gave^2
 *   mu > 0: b <- mu*b + g/(sqrt(vt)+eps);  theta <- theta - lr*b
 *   else    theta <- theta - lr*g/(sqrt(vt)+eps) */
static void ref_rmsprop(ref *r)
{
	const hp *c = &r->c;
	r->t++;
	for (int k = 0; k < NV; k++) {
		double g = W[k] * (r->p[k] - TARGET[k]);
		g += c->weight_decay * r->p[k];
		r->v[k] = c->alpha * r->v[k] + (1 - c->alpha) * g * g;
		double vt = r->v[k];
		if (c->centered) {
			r->gave[k] = c->alpha * r->gave[k] + (1 - c->alpha) * g;
			vt -= r->gave[k] * r->gave[k];
		}
		if (c->momentum > 0) {
			r->b[k] = c->momentum * r->b[k] + g / (sqrt(vt) + c->eps);
			r->p[k] -= c->lr * r->b[k];
		} else {
			r->p[k] -= c->lr * g / (sqrt(vt) + c->eps);
		}
	}
}

static void ref_step(ref *r)
{
	if (strcmp(r->c.kind, "SGD") == 0)
		ref_sgd(r);
	else if (strcmp(r->c.kind, "Adam") == 0)
		ref_adam(r);
	else if (strcmp(r->c.kind, "RMSprop") == 0)
		ref_rmsprop(r);
	else
		fail();
}

/* Runs `steps` steps of the optimiser and of the reference side by side
 * and compares every parameter value after each step. */
static void run_against_reference(const hp *c, int steps)
{
	problem pb;
	problem_init(&pb);
	ln_optim *opt = NULL;
	ln_error err;
	ln_optim_config cfg = to_config(c);
	if (tu_optim_new(&opt, &cfg, 2, pb.p, pb.g, &err) != LN_OK)
		fail_msg("ln_optim_new: %s", err.msg);
	ref r;
	ref_init(&r, c);
	for (int s = 1; s <= steps; s++) {
		problem_grad(&pb);
		ln_optim_step(opt);
		ref_step(&r);
		assert_int_equal(ln_optim_step_count(opt), s);
		for (int k = 0; k < NV; k++) {
			double got = *elem(pb.p, k), want = r.p[k];
			if (fabs(got - want) > 1e-6 + 1e-5 * fabs(want))
				fail_msg("%s step %d value %d: got %.9g, want %.9g", ln_optim_name(&cfg), s, k,
				         got, want);
		}
		/* the update actually moved every value */
		for (int k = 0; k < NV; k++)
			assert_true(fabs(r.p[k] - P0[k]) > 1e-4);
	}
	ln_optim_free(opt);
	problem_free(&pb);
}

static hp sgd(double lr, double mu, bool nesterov, double wd)
{
	return (hp){.kind = "SGD", .lr = lr, .momentum = mu, .nesterov = nesterov,
	            .weight_decay = wd};
}

static hp adam(double lr, double b1, double b2, double eps, double wd, bool decoupled)
{
	return (hp){.kind = "Adam", .lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps,
	            .weight_decay = wd, .decoupled = decoupled};
}

static hp rmsprop(double lr, double alpha, double eps, double mu, double wd, bool centered)
{
	return (hp){.kind = "RMSprop", .lr = lr, .alpha = alpha, .eps = eps, .momentum = mu,
	            .weight_decay = wd, .centered = centered};
}

static void test_sgd_plain(void **state)
{
	hp c = sgd(0.1, 0, false, 0);
	run_against_reference(&c, 3);
}

static void test_sgd_momentum(void **state)
{
	hp c = sgd(0.1, 0.9, false, 0);
	run_against_reference(&c, 3);
}

static void test_sgd_nesterov_weight_decay(void **state)
{
	hp c = sgd(0.05, 0.8, true, 0.01);
	run_against_reference(&c, 3);
}

static void test_sgd_weight_decay(void **state)
{
	hp c = sgd(0.1, 0, false, 0.1);
	run_against_reference(&c, 3);
}

static void test_adam(void **state)
{
	hp c = adam(0.01, 0.9, 0.999, 1e-8, 0, false);
	run_against_reference(&c, 3);
	c = adam(0.1, 0.5, 0.75, 1e-3, 0, false);
	run_against_reference(&c, 3);
}

static void test_adam_l2(void **state)
{
	hp c = adam(0.01, 0.9, 0.999, 1e-8, 0.1, false);
	run_against_reference(&c, 3);
}

static void test_adamw(void **state)
{
	hp c = adam(0.01, 0.9, 0.999, 1e-8, 0.1, true);
	ln_optim_config cfg = to_config(&c);
	assert_string_equal(ln_optim_name(&cfg), "AdamW");
	run_against_reference(&c, 3);
}

static void test_rmsprop(void **state)
{
	hp c = rmsprop(0.01, 0.99, 1e-8, 0, 0, false);
	run_against_reference(&c, 3);
}

static void test_rmsprop_momentum_weight_decay(void **state)
{
	hp c = rmsprop(0.01, 0.9, 1e-6, 0.9, 0.1, false);
	run_against_reference(&c, 3);
}

static void test_rmsprop_centered(void **state)
{
	hp c = rmsprop(0.01, 0.9, 1e-8, 0.5, 0, true);
	run_against_reference(&c, 3);
}

/* ---- the same problem through PyTorch ----------------------------------------- */

/* Parameter values after three steps, printed by PyTorch 1.13 (Debian's
 * python3-torch) running the same problem:
 *
 *   for name, kw in cfgs:
 *       p1 = torch.tensor(P0[:4]).reshape(2,2).requires_grad_()
 *       p2 = torch.tensor(P0[4:]).requires_grad_()
 *       opt = getattr(torch.optim, name)([p1, p2], **kw)
 *       for s in range(3):
 *           p = torch.cat([p1.detach().reshape(-1), p2.detach()])
 *           g = torch.tensor(W) * (p - torch.tensor(T))
 *           p1.grad = g[:4].reshape(2,2).clone(); p2.grad = g[4:].clone()
 *           opt.step()
 *       print(torch.cat([p1.detach().reshape(-1), p2.detach()]).tolist()) */
static void test_matches_pytorch(void **state)
{
	static const struct {
		hp c;
		double want[NV];
	} cases[] = {
		/* SGD(lr=0.1) */
		{{.kind = "SGD", .lr = 0.1},
		 {0.635500014, -0.511999965, 1.57212496, 0.414249986, -0.107062511, 0.712231219,
		  1.10799992}},
		/* SGD(lr=0.1, momentum=0.9) */
		{{.kind = "SGD", .lr = 0.1, .momentum = 0.9},
		 {0.756999969, -0.061999999, 1.19412506, 0.569500029, 0.0684375018, 0.635281265,
		  0.730000019}},
		/* SGD(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01) */
		{{.kind = "SGD", .lr = 0.05, .momentum = 0.8, .nesterov = true,
		  .weight_decay = 0.01},
		 {0.663341582, -0.392729461, 1.47642219, 0.456103832, -0.0621486939, 0.691635251,
		  0.994674683}},
		/* SGD(lr=0.1, weight_decay=0.1) */
		{{.kind = "SGD", .lr = 0.1, .weight_decay = 0.1},
		 {0.620694518, -0.493039012, 1.51998794, 0.407042265, -0.101443194, 0.689943433,
		  1.08330846}},
		/* Adam(lr=0.01) */
		{{.kind = "Adam", .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8},
		 {0.529978633, -0.970010102, 1.97000325, 0.279952615, -0.270021349, 0.770008385,
		  1.47002125}},
		/* Adam(lr=0.1, betas=(0.5,0.75), eps=1e-3) */
		{{.kind = "Adam", .lr = 0.1, .beta1 = 0.5, .beta2 = 0.75, .eps = 1e-3},
		 {0.788532615, -0.704391003, 1.70140719, 0.513894856, -0.0112617239, 0.504413486,
		  1.21100414}},
		/* Adam(lr=0.01, weight_decay=0.1) */
		{{.kind = "Adam", .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
		  .weight_decay = 0.1},
		 {0.529973269, -0.970010102, 1.97000349, 0.279948592, -0.270021975, 0.770009279,
		  1.47002029}},
		/* AdamW(lr=0.01, weight_decay=0.1) */
		{{.kind = "Adam", .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
		  .weight_decay = 0.1, .decoupled = true},
		 {0.528451443, -0.967044234, 1.96404004, 0.279174834, -0.269152939, 0.767641485,
		  1.46555936}},
		/* RMSprop(lr=0.01) */
		{{.kind = "RMSprop", .lr = 0.01, .alpha = 0.99, .eps = 1e-8},
		 {0.709566712, -0.779982269, 1.77388847, 0.433857679, -0.090433225, 0.578395605,
		  1.29043317}},
		/* RMSprop(lr=0.01, alpha=0.9, eps=1e-6, momentum=0.9, weight_decay=0.1) */
		{{.kind = "RMSprop", .lr = 0.01, .alpha = 0.9, .eps = 1e-6, .momentum = 0.9,
		  .weight_decay = 0.1},
		 {0.644570053, -0.853019774, 1.85202551, 0.391099542, -0.154746562, 0.652896643,
		  1.35450065}},
		/* RMSprop(lr=0.01, alpha=0.9, momentum=0.5, centered=True) */
		{{.kind = "RMSprop", .lr = 0.01, .alpha = 0.9, .eps = 1e-8, .momentum = 0.5,
		  .centered = true},
		 {0.615970254, -0.882418334, 1.88141429, 0.362339139, -0.184029669, 0.682162285,
		  1.38402975}},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		problem pb;
		problem_init(&pb);
		ln_optim *opt;
		ln_error err;
		ln_optim_config cfg = to_config(&cases[i].c);
		if (tu_optim_new(&opt, &cfg, 2, pb.p, pb.g, &err) != LN_OK)
			fail_msg("case %zu: %s", i, err.msg);
		for (int s = 0; s < 3; s++) {
			problem_grad(&pb);
			ln_optim_step(opt);
		}
		for (int k = 0; k < NV; k++) {
			double got = *elem(pb.p, k), want = cases[i].want[k];
			if (fabs(got - want) > 2e-6 + 2e-6 * fabs(want))
				fail_msg("case %zu (%s) value %d: got %.9g, PyTorch %.9g", i,
				         ln_optim_name(&cfg), k, got, want);
		}
		ln_optim_free(opt);
		problem_free(&pb);
	}
}

/* ---- scalar cases worked out by hand ---------------------------------------- */

/* One parameter [1.0] with the gradient held at 0.5. */
static void scalar_run(const hp *c, int steps, float *out)
{
	ln_tensor p, g;
	tu_tensor(&p, 1, (int64_t[]){1}, (float[]){1.0f});
	tu_tensor(&g, 1, (int64_t[]){1}, (float[]){0.5f});
	ln_optim *opt;
	ln_error err;
	ln_optim_config cfg = to_config(c);
	assert_int_equal(tu_optim_new(&opt, &cfg, 1, &p, &g, &err), LN_OK);
	for (int s = 0; s < steps; s++) {
		ln_optim_step(opt);
		out[s] = ln_tensor_data(&p)[0];
	}
	ln_optim_free(opt);
	ln_tensor_release(&p);
	ln_tensor_release(&g);
}

static void test_by_hand(void **state)
{
	float v[3];
	/* SGD lr 0.1, momentum 0.9:
	 *   b1 = 0.5            p1 = 1 - 0.1*0.5   = 0.95
	 *   b2 = 0.45 + 0.5     p2 = 0.95 - 0.095  = 0.855
	 *   b3 = 0.855 + 0.5    p3 = 0.855 - 0.1355 = 0.7195 */
	hp c = sgd(0.1, 0.9, false, 0);
	scalar_run(&c, 3, v);
	assert_float_equal(v[0], 0.95, 1e-6);
	assert_float_equal(v[1], 0.855, 1e-6);
	assert_float_equal(v[2], 0.7195, 1e-6);

	/* Nesterov, lr 0.1, mu 0.5: b1 = 0.5, d = 0.5 + 0.25 = 0.75, p1 = 0.925;
	 * b2 = 0.25 + 0.5 = 0.75, d = 0.5 + 0.375 = 0.875, p2 = 0.8375 */
	c = sgd(0.1, 0.5, true, 0);
	scalar_run(&c, 2, v);
	assert_float_equal(v[0], 0.925, 1e-6);
	assert_float_equal(v[1], 0.8375, 1e-6);

	/* Adam with a constant gradient: mhat = 0.5 and vhat = 0.25 at every
	 * step, so each step moves by lr*0.5/(0.5 + eps) = lr (to 1e-7). */
	c = adam(0.01, 0.9, 0.999, 1e-8, 0, false);
	scalar_run(&c, 3, v);
	assert_float_equal(v[0], 0.99, 1e-6);
	assert_float_equal(v[1], 0.98, 1e-6);
	assert_float_equal(v[2], 0.97, 1e-6);

	/* AdamW lr 0.1, wd 0.5: p <- p*(1 - 0.05) first, then the Adam step of
	 * 0.1: p1 = 0.95 - 0.1 = 0.85;  p2 = 0.85*0.95 - 0.1 = 0.7075 */
	c = adam(0.1, 0.9, 0.999, 1e-8, 0.5, true);
	scalar_run(&c, 2, v);
	assert_float_equal(v[0], 0.85, 1e-6);
	assert_float_equal(v[1], 0.7075, 1e-6);

	/* RMSprop lr 0.01, alpha 0.75, eps 0: s1 = 0.25*0.25 = 0.0625,
	 * p1 = 1 - 0.01*0.5/0.25 = 0.98;  s2 = 0.046875 + 0.0625 = 0.109375,
	 * p2 = 0.98 - 0.01*0.5/sqrt(0.109375) = 0.96488132... */
	c = rmsprop(0.01, 0.75, 0, 0, 0, false);
	scalar_run(&c, 2, v);
	assert_float_equal(v[0], 0.98, 1e-6);
	assert_float_equal(v[1], 0.98 - 0.005 / 0.33071891388307384, 1e-6);
}

/* ---- validation ---------------------------------------------------------------- */

/* ln_optim_new on a valid problem with config c must fail with code and
 * exactly msg. */
static void expect_config_error(const hp *h, ln_status code, const char *msg)
{
	ln_optim_config cfg = to_config(h);
	const ln_optim_config *c = &cfg;
	problem pb;
	problem_init(&pb);
	ln_alloc_stats before;
	ln_alloc_get_stats(&before);
	ln_optim *opt = (ln_optim *)&pb;  /* must be reset to NULL */
	ln_error err = {0};
	assert_int_equal(tu_optim_new(&opt, c, 2, pb.p, pb.g, &err), code);
	assert_null(opt);
	assert_int_equal(err.code, code);
	assert_string_equal(err.msg, msg);
	assert_int_equal(ln_optim_validate(c, NULL), code);
	ln_alloc_stats after;
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
	problem_free(&pb);
}

static void test_validation(void **state)
{
	hp c;
	c = sgd(-0.1, 0, false, 0);
	expect_config_error(&c, LN_ERANGE, "lr must be >= 0, got -0.1");
	c = sgd(NAN, 0, false, 0);
	expect_config_error(&c, LN_ERANGE, "lr must be >= 0, got nan");
	c = sgd(INFINITY, 0, false, 0);
	expect_config_error(&c, LN_ERANGE, "lr must be finite, got inf");
	c = sgd(0.1, -0.5, false, 0);
	expect_config_error(&c, LN_ERANGE, "momentum must be >= 0, got -0.5");
	c = sgd(0.1, 0.9, false, -0.01);
	expect_config_error(&c, LN_ERANGE, "weight_decay must be >= 0, got -0.01");
	c = sgd(0.1, 0, true, 0);
	expect_config_error(&c, LN_EARG, "nesterov requires momentum > 0, got 0");

	c = adam(-1e-3, 0.9, 0.999, 1e-8, 0, false);
	expect_config_error(&c, LN_ERANGE, "lr must be >= 0, got -0.001");
	c = adam(1e-3, 1.0, 0.999, 1e-8, 0, false);
	expect_config_error(&c, LN_ERANGE, "beta1 must be in [0,1), got 1");
	c = adam(1e-3, -0.1, 0.999, 1e-8, 0, false);
	expect_config_error(&c, LN_ERANGE, "beta1 must be in [0,1), got -0.1");
	c = adam(1e-3, 0.9, 1.5, 1e-8, 0, false);
	expect_config_error(&c, LN_ERANGE, "beta2 must be in [0,1), got 1.5");
	c = adam(1e-3, 0.9, 0.999, -1e-8, 0, false);
	expect_config_error(&c, LN_ERANGE, "eps must be >= 0, got -1e-08");
	c = adam(1e-3, 0.9, 0.999, 1e-8, -0.01, true);
	expect_config_error(&c, LN_ERANGE, "weight_decay must be >= 0, got -0.01");

	c = rmsprop(0.01, 1.0, 1e-8, 0, 0, false);
	expect_config_error(&c, LN_ERANGE, "alpha must be in [0,1), got 1");
	c = rmsprop(0.01, -0.5, 1e-8, 0, 0, false);
	expect_config_error(&c, LN_ERANGE, "alpha must be in [0,1), got -0.5");
	c = rmsprop(0.01, 0.99, -1, 0, 0, false);
	expect_config_error(&c, LN_ERANGE, "eps must be >= 0, got -1");
	c = rmsprop(0.01, 0.99, 1e-8, -0.9, 0, false);
	expect_config_error(&c, LN_ERANGE, "momentum must be >= 0, got -0.9");
	c = rmsprop(-2, 0.99, 1e-8, 0, 0, false);
	expect_config_error(&c, LN_ERANGE, "lr must be >= 0, got -2");
	c = rmsprop(0.01, 0.99, 1e-8, 0, -3, false);
	expect_config_error(&c, LN_ERANGE, "weight_decay must be >= 0, got -3");

	/* fields a kind does not use are not checked: they are not there */
	c = sgd(0.1, 0, false, 0);
	c.beta1 = 7;
	c.alpha = -1;
	ln_optim_config cfg = to_config(&c);
	assert_int_equal(ln_optim_validate(&cfg, NULL), LN_OK);
	ln_error err;
	assert_int_equal(ln_optim_config_set(&cfg, "beta1", 7, &err), LN_EARG);
	assert_string_equal(err.msg, "no hyper-parameter named 'beta1'");
}

static void test_parameter_errors(void **state)
{
	hp c = sgd(0.1, 0.9, false, 0);
	ln_optim *opt;
	ln_error err;
	ln_tensor a, ga, b, gb, view;
	tu_tensor(&a, 2, (int64_t[]){2, 3}, NULL);
	tu_tensor(&ga, 2, (int64_t[]){2, 3}, NULL);
	tu_tensor(&b, 1, (int64_t[]){4}, NULL);
	tu_tensor(&gb, 1, (int64_t[]){5}, NULL);

	assert_int_equal(new_opt(&opt, &c, 0, &a, &ga, &err), LN_EARG);
	assert_string_equal(err.msg, "no parameters to optimize");

	ln_tensor ps[2] = {a, b}, gs[2] = {ga, gb};
	assert_int_equal(new_opt(&opt, &c, 2, ps, gs, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "parameter 2 has shape {4} but its gradient has shape {5}");

	/* a parameter listed twice */
	ln_tensor ps2[2] = {a, a}, gs2[2] = {ga, ga};
	assert_int_equal(new_opt(&opt, &c, 2, ps2, gs2, &err), LN_EARG);
	assert_string_equal(err.msg, "parameters 1 and 2 share memory (a parameter listed twice?)");

	/* a non-contiguous view (one column of a {2,3}) */
	view = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(&view, &a, 1, 0, 1, &err), LN_OK);
	assert_false(ln_tensor_is_contiguous(&view));
	ln_tensor gview;
	tu_tensor(&gview, 2, (int64_t[]){2, 1}, NULL);
	assert_int_equal(new_opt(&opt, &c, 1, &view, &gview, &err), LN_EARG);
	assert_string_equal(err.msg, "parameter 1: tensor is not contiguous");

	ln_tensor empty = LN_TENSOR_EMPTY;
	assert_int_equal(new_opt(&opt, &c, 1, &a, &empty, &err), LN_EARG);
	assert_string_equal(err.msg, "parameter 1: gradient is empty");
	assert_null(opt);

	ln_tensor_release(&view);
	ln_tensor_release(&gview);
	ln_tensor_release(&a);
	ln_tensor_release(&ga);
	ln_tensor_release(&b);
	ln_tensor_release(&gb);
}

/* ---- lr changes, zero_grad, state, allocation ---------------------------------- */

static void test_set_get(void **state)
{
	problem pb;
	problem_init(&pb);
	hp c = sgd(0.1, 0, false, 0);
	ln_optim *opt;
	ln_error err;
	assert_int_equal(new_opt(&opt, &c, 2, pb.p, pb.g, &err), LN_OK);
	double v;
	assert_true(ln_optim_get(opt, "lr", &v));
	assert_float_equal(v, 0.1, 0);
	assert_false(ln_optim_get(opt, "beta1", &v));

	/* a new lr is used by the next step: p -= 0.5*g */
	assert_int_equal(ln_optim_set(opt, "lr", 0.5, &err), LN_OK);
	problem_grad(&pb);
	float p0 = *elem(pb.p, 0), g0 = *elem(pb.g, 0);
	ln_optim_step(opt);
	assert_float_equal(*elem(pb.p, 0), p0 - 0.5f * g0, 1e-6);

	assert_int_equal(ln_optim_set(opt, "lr", -1, &err), LN_ERANGE);
	assert_string_equal(err.msg, "lr must be >= 0, got -1");
	assert_true(ln_optim_get(opt, "lr", &v));
	assert_float_equal(v, 0.5, 0);  /* unchanged */

	assert_int_equal(ln_optim_set(opt, "momentum", 0.9, &err), LN_ESTATE);
	assert_string_equal(err.msg, "cannot set momentum to 0.9: built without momentum, so "
	                             "there is no state 'momentum_buffer' (construct with momentum "
	                             "> 0)");
	assert_int_equal(ln_optim_set(opt, "alpha", 0.9, &err), LN_EARG);
	assert_string_equal(err.msg, "no hyper-parameter named 'alpha'");
	assert_int_equal(ln_optim_set(opt, "weight_decay", 0.01, &err), LN_OK);
	assert_true(ln_optim_get(opt, "weight_decay", &v));
	assert_float_equal(v, 0.01, 0);
	ln_optim_free(opt);

	/* Adam: betas by name */
	c = adam(0.01, 0.9, 0.999, 1e-8, 0, false);
	assert_int_equal(new_opt(&opt, &c, 2, pb.p, pb.g, &err), LN_OK);
	assert_int_equal(ln_optim_set(opt, "beta2", 1.0, &err), LN_ERANGE);
	assert_string_equal(err.msg, "beta2 must be in [0,1), got 1");
	assert_int_equal(ln_optim_set(opt, "beta1", 0.8, &err), LN_OK);
	assert_true(ln_optim_get(opt, "beta1", &v));
	assert_float_equal(v, 0.8, 0);
	ln_optim_free(opt);
	problem_free(&pb);
}

static void test_zero_grad(void **state)
{
	problem pb;
	problem_init(&pb);
	hp c = adam(0.01, 0.9, 0.999, 1e-8, 0, false);
	ln_optim *opt;
	assert_int_equal(new_opt(&opt, &c, 2, pb.p, pb.g, NULL), LN_OK);
	problem_grad(&pb);
	assert_true(*elem(pb.g, 0) != 0);
	ln_optim_zero_grad(opt);
	/* zeroed through the views, visible in the caller's tensors */
	for (int k = 0; k < NV; k++)
		assert_float_equal(*elem(pb.g, k), 0, 0);
	ln_optim_free(opt);
	problem_free(&pb);
}

static void test_state_access(void **state)
{
	problem pb;
	problem_init(&pb);
	hp c = sgd(0.1, 0.9, false, 0);
	ln_optim *opt;
	assert_int_equal(new_opt(&opt, &c, 2, pb.p, pb.g, NULL), LN_OK);
	assert_int_equal(ln_optim_nparams(opt), 2);
	assert_int_equal(ln_optim_nstate(opt), 1);
	assert_string_equal(ln_optim_state_name(opt, 0), "momentum_buffer");
	assert_null(ln_optim_state_name(opt, 1));
	assert_null(ln_optim_state(opt, 2, 0));
	assert_null(ln_optim_state(opt, 0, 1));
	assert_ptr_equal(ln_tensor_data(ln_optim_param(opt, 1)), ln_tensor_data(&pb.p[1]));
	assert_ptr_equal(ln_tensor_data(ln_optim_grad(opt, 0)), ln_tensor_data(&pb.g[0]));

	/* after one step the momentum buffer is the first gradient */
	problem_grad(&pb);
	float g[NV];
	for (int k = 0; k < NV; k++)
		g[k] = *elem(pb.g, k);
	ln_optim_step(opt);
	ln_tensor *b0 = ln_optim_state(opt, 0, 0), *b1 = ln_optim_state(opt, 1, 0);
	assert_true(ln_tensor_same_shape(b0, &pb.p[0]));
	assert_true(ln_tensor_same_shape(b1, &pb.p[1]));
	for (int k = 0; k < 4; k++)
		assert_float_equal(ln_tensor_data(b0)[k], g[k], 0);
	for (int k = 0; k < 3; k++)
		assert_float_equal(ln_tensor_data(b1)[k], g[4 + k], 0);
	assert_int_equal(ln_optim_step_count(opt), 1);
	ln_error err;
	assert_int_equal(ln_optim_set_step_count(opt, 41, &err), LN_OK);
	assert_int_equal(ln_optim_step_count(opt), 41);
	assert_int_equal(ln_optim_set_step_count(opt, -1, &err), LN_ERANGE);
	assert_string_equal(err.msg, "step count must be >= 0, got -1");
	ln_optim_free(opt);

	/* names of each kind's state */
	c = adam(0.01, 0.9, 0.999, 1e-8, 0, false);
	assert_int_equal(new_opt(&opt, &c, 2, pb.p, pb.g, NULL), LN_OK);
	assert_int_equal(ln_optim_nstate(opt), 2);
	assert_string_equal(ln_optim_state_name(opt, 0), "exp_avg");
	assert_string_equal(ln_optim_state_name(opt, 1), "exp_avg_sq");
	ln_optim_free(opt);
	c = rmsprop(0.01, 0.99, 1e-8, 0.9, 0, true);
	assert_int_equal(new_opt(&opt, &c, 2, pb.p, pb.g, NULL), LN_OK);
	assert_int_equal(ln_optim_nstate(opt), 3);
	assert_string_equal(ln_optim_state_name(opt, 0), "square_avg");
	assert_string_equal(ln_optim_state_name(opt, 1), "momentum_buffer");
	assert_string_equal(ln_optim_state_name(opt, 2), "grad_avg");
	ln_optim_free(opt);
	c = sgd(0.1, 0, false, 0);
	assert_int_equal(new_opt(&opt, &c, 2, pb.p, pb.g, NULL), LN_OK);
	assert_int_equal(ln_optim_nstate(opt), 0);
	ln_optim_free(opt);
	problem_free(&pb);
}

/* Parameters as views into one flat block (the layout of a model whose
 * parameters live in one allocation). */
static void test_views_of_one_block(void **state)
{
	ln_tensor flat, gflat, p[2] = {LN_TENSOR_EMPTY, LN_TENSOR_EMPTY},
	                       g[2] = {LN_TENSOR_EMPTY, LN_TENSOR_EMPTY};
	tu_tensor(&flat, 1, (int64_t[]){10}, (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
	tu_tensor(&gflat, 1, (int64_t[]){10}, (float[]){1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
	ln_error err;
	assert_int_equal(ln_tensor_narrow(&p[0], &flat, 0, 0, 6, &err), LN_OK);
	assert_int_equal(ln_tensor_narrow(&p[1], &flat, 0, 6, 4, &err), LN_OK);
	assert_int_equal(ln_tensor_narrow(&g[0], &gflat, 0, 0, 6, &err), LN_OK);
	assert_int_equal(ln_tensor_narrow(&g[1], &gflat, 0, 6, 4, &err), LN_OK);
	hp c = sgd(0.5, 0, false, 0);
	ln_optim *opt;
	assert_int_equal(new_opt(&opt, &c, 2, p, g, &err), LN_OK);
	/* the optimiser holds its own references: the caller's go away */
	for (int i = 0; i < 2; i++) {
		ln_tensor_release(&p[i]);
		ln_tensor_release(&g[i]);
	}
	ln_optim_step(opt);
	for (int i = 0; i < 10; i++)
		assert_float_equal(ln_tensor_data(&flat)[i], (float)(i + 1) - 0.5f, 0);
	ln_optim_free(opt);
	ln_tensor_release(&flat);
	ln_tensor_release(&gflat);
}

static void test_step_allocates_nothing(void **state)
{
	/* every state tensor of every kind in use */
	const hp kinds[] = {sgd(0.1, 0.9, false, 0), adam(0.01, 0.9, 0.999, 1e-8, 0, false),
	                    rmsprop(0.01, 0.99, 1e-8, 0.9, 0, true)};
	for (int i = 0; i < 3; i++) {
		problem pb;
		problem_init(&pb);
		const hp *c = &kinds[i];
		ln_optim *opt;
		assert_int_equal(new_opt(&opt, c, 2, pb.p, pb.g, NULL), LN_OK);
		ln_alloc_stats before, after;
		ln_alloc_get_stats(&before);
		for (int s = 0; s < 50; s++) {
			problem_grad(&pb);
			ln_optim_step(opt);
			ln_optim_zero_grad(opt);
		}
		ln_alloc_get_stats(&after);
		assert_int_equal(after.allocs, before.allocs);
		assert_int_equal(after.frees, before.frees);
		ln_optim_free(opt);
		problem_free(&pb);
	}
}

/* An update over enough elements is split over the worker threads, in
 * ranges across the parameters (optim.c, SPLIT_ELEMS): at 2 threads it
 * must give the same bits as at 1, parameters and state, wherever the
 * ranges' ends fall (inside the first parameter, inside the second), also
 * when a gradient was zeroed lazily and not written since. */
static void split_run(const hp *c, const int64_t *sizes, int threads, ln_tensor *p,
                      ln_tensor *st)
{
	ln_gemm_set_threads(threads);
	ln_tensor g[3];
	for (int i = 0; i < 3; i++) {
		tu_tensor(&p[i], 1, (int64_t[]){sizes[i]}, NULL);
		tu_tensor(&g[i], 1, (int64_t[]){sizes[i]}, NULL);
		float *d = ln_tensor_data(&p[i]);
		for (int64_t j = 0; j < sizes[i]; j++)
			d[j] = (float)sin(0.37 * (double)j + i);
	}
	ln_optim *opt;
	assert_int_equal(new_opt(&opt, c, 3, p, g, NULL), LN_OK);
	for (int s = 0; s < 3; s++) {
		for (int i = 0; i < 3; i++) {
			if (s == 1 && i == 1) {
				ln_tensor_zero(&g[i]);  /* lazily: settled by the step */
				continue;
			}
			const float *pd = ln_tensor_data(&p[i]);
			float *gd = ln_tensor_data(&g[i]);
			for (int64_t j = 0; j < sizes[i]; j++)
				gd[j] = pd[j] * (float)(1 + j % 5) - 0.25f;
		}
		ln_optim_step(opt);
	}
	const int ns = ln_optim_nstate(opt);
	assert_true(ns <= 3);
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++) {
			if (k < ns)
				tu_tensor(&st[i * 3 + k], 1, (int64_t[]){sizes[i]}, NULL);
			else
				tu_tensor(&st[i * 3 + k], 1, (int64_t[]){1}, (float[]){0});
			if (k < ns)
				assert_int_equal(ln_tensor_copy(&st[i * 3 + k], ln_optim_state(opt, i, k),
				                                NULL), LN_OK);
		}
	ln_optim_free(opt);
	for (int i = 0; i < 3; i++)
		ln_tensor_release(&g[i]);
}

static void test_split_over_threads(void **state)
{
	const int before = ln_gemm_threads();
	const hp kinds[] = {sgd(0.1, 0.9, true, 0.01), adam(0.01, 0.9, 0.999, 1e-8, 0.01, false),
	                    adam(0.01, 0.9, 0.999, 1e-8, 0.01, true),
	                    rmsprop(0.01, 0.99, 1e-8, 0.9, 0.01, true)};
	/* 70007 elements in all: the 2 parts meet at 35000 (rounded to 34992),
	 * inside the first parameter, then inside the second */
	const int64_t layouts[2][3] = {{40001, 29999, 7}, {7, 30001, 39999}};
	for (size_t c = 0; c < sizeof kinds / sizeof kinds[0]; c++)
		for (int l = 0; l < 2; l++) {
			ln_tensor p1[3], p2[3], s1[9], s2[9];
			split_run(&kinds[c], layouts[l], 1, p1, s1);
			split_run(&kinds[c], layouts[l], 2, p2, s2);
			for (int i = 0; i < 3; i++) {
				const size_t bytes = (size_t)layouts[l][i] * sizeof(float);
				if (memcmp(ln_tensor_data(&p1[i]), ln_tensor_data(&p2[i]), bytes) != 0)
					fail_msg("%s layout %d: parameter %d differs at 2 threads",
					         kinds[c].kind, l, i + 1);
				/* the update moved it */
				assert_true(ln_tensor_data(&p1[i])[0] != (float)sin((double)i));
				ln_tensor_release(&p1[i]);
				ln_tensor_release(&p2[i]);
			}
			for (int k = 0; k < 9; k++) {
				const size_t bytes = (size_t)ln_tensor_numel(&s1[k]) * sizeof(float);
				if (memcmp(ln_tensor_data(&s1[k]), ln_tensor_data(&s2[k]), bytes) != 0)
					fail_msg("%s layout %d: state %d of parameter %d differs at 2 threads",
					         kinds[c].kind, l, k % 3 + 1, k / 3 + 1);
				ln_tensor_release(&s1[k]);
				ln_tensor_release(&s2[k]);
			}
		}
	ln_gemm_set_threads(before);
}

/* Every allocation in ln_optim_new fails in turn: LN_ENOMEM, nothing
 * retained, nothing leaked. */
static void test_out_of_memory(void **state)
{
	problem pb;
	problem_init(&pb);
	hp c = adam(0.01, 0.9, 0.999, 1e-8, 0, false);
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	int failures = 0;
	for (long n = 1;; n++) {
		ln_optim *opt;
		ln_error err;
		ln_alloc_fail_nth(n);
		ln_status st = new_opt(&opt, &c, 2, pb.p, pb.g, &err);
		ln_alloc_fail_nth(0);
		if (st == LN_OK) {
			ln_optim_free(opt);
			break;
		}
		assert_int_equal(st, LN_ENOMEM);
		assert_null(opt);
		failures++;
		ln_alloc_get_stats(&after);
		assert_int_equal(after.bytes_live, before.bytes_live);
	}
	/* the optimiser struct, the slots, and 2 x 2 state buffers */
	assert_true(failures >= 6);
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
	problem_free(&pb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sgd_plain),
		cmocka_unit_test(test_sgd_momentum),
		cmocka_unit_test(test_sgd_nesterov_weight_decay),
		cmocka_unit_test(test_sgd_weight_decay),
		cmocka_unit_test(test_adam),
		cmocka_unit_test(test_adam_l2),
		cmocka_unit_test(test_adamw),
		cmocka_unit_test(test_rmsprop),
		cmocka_unit_test(test_rmsprop_momentum_weight_decay),
		cmocka_unit_test(test_rmsprop_centered),
		cmocka_unit_test(test_matches_pytorch),
		cmocka_unit_test(test_by_hand),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_parameter_errors),
		cmocka_unit_test(test_set_get),
		cmocka_unit_test(test_zero_grad),
		cmocka_unit_test(test_state_access),
		cmocka_unit_test(test_views_of_one_block),
		cmocka_unit_test(test_step_allocates_nothing),
		cmocka_unit_test(test_split_over_threads),
		cmocka_unit_test(test_out_of_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
