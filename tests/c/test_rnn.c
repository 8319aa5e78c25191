/*
 * test_rnn.c -- RNN, LSTM and GRU: values worked out from PyTorch's
 * equations, the module against the naive reference (every kind, several
 * layers and shapes, forward and backward), gradient checks, stateful
 * mode (the state carries, the gradient does not cross the chunk
 * boundary), dropout between layers, parameter names and order, errors,
 * allocation failures and the allocation-free steady state.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "nn/layers.h"
#include "nn/cellmath.h"
#include "nn/module.h"
#include "nn/sequence.h"
#include "nn/state_dict.h"
#include "testutil.h"

#define SEED 777u

static const char *const kind_names[] = {"RNN(tanh)", "RNN(relu)", "LSTM", "GRU"};

static ln_module *make(ln_rnn_kind kind, int64_t nin, int64_t h, int64_t layers, double dropout,
                       bool stateful)
{
	ln_module *m = NULL;
	ln_error err;
	ln_rnn_options o = {.layers = layers, .dropout = dropout, .stateful = stateful};
	if (ln_rnn_new(&m, NULL, kind, nin, h, &o, &err) != LN_OK)
		fail_msg("ln_rnn_new: %s", err.msg);
	return m;
}

static float *data(ln_tensor *t) { return ln_tensor_data(t); }

/* ---- the cell's exp, sigmoid and tanh ------------------------------------------------------ */

/* The bounds cellmath.h states, against libm in double, every 1e-3 over
 * [-100, 100] and every 1e-7 near 0 (tanh's relative error there). */
static void test_cellmath_accuracy(void **state)
{
	double e = 0, sg = 0, th = 0, thr = 0;
	for (int64_t k = -100000; k <= 100000; k++) {
		float x = (float)((double)k * 1e-3);
		double want = exp((double)x);
		if (x > -87 && x < 88)
			e = fmax(e, fabs(ln_exp_fast(x) - want) / want);
		sg = fmax(sg, fabs(ln_sigmoid_fast(x) - 1 / (1 + exp(-(double)x))));
		th = fmax(th, fabs(ln_tanh_fast(x) - tanh((double)x)));
	}
	for (int64_t k = -10000; k <= 10000; k++) {
		float x = (float)((double)k * 1e-7);
		if (x != 0)
			thr = fmax(thr, fabs(ln_tanh_fast(x) - tanh((double)x)) / fabs(tanh((double)x)));
	}
	if (!(e < 2e-7 && sg < 2e-7 && th < 2e-7 && thr < 3e-7))
		fail_msg("exp %g, sigmoid %g, tanh %g (relative near 0 %g)", e, sg, th, thr);
	/* the ends: no overflow, no NaN */
	assert_true(ln_sigmoid_fast(-1000) >= 0 && ln_sigmoid_fast(-1000) < 1e-37f);
	assert_true(ln_sigmoid_fast(1000) == 1 && ln_tanh_fast(1000) == 1 && ln_tanh_fast(-1000) == -1);
	assert_true(isfinite(ln_exp_fast(1000)) && ln_exp_fast(-1000) < 2e-38f);
}

/* ln_exp_d's bound in cellmath.h against libm, over [-708, 709] and
 * finely over [-1, 1]; the ends clamp, NaN stays NaN. */
static void test_exp_d_accuracy(void **state)
{
	double e = 0;
	for (int64_t k = 0; k <= 1000000; k++) {
		double x = -708.0 + 1417.0 * (double)k / 1e6;
		e = fmax(e, fabs(ln_exp_d(x) - exp(x)) / exp(x));
		x = -1.0 + 2.0 * (double)k / 1e6;
		e = fmax(e, fabs(ln_exp_d(x) - exp(x)) / exp(x));
	}
	if (!(e < 1e-15))
		fail_msg("exp in double: relative error %g", e);
	assert_true(ln_exp_d(-1e300) > 0 && isfinite(ln_exp_d(1e300)) && isnan(ln_exp_d(NAN)));
}

/* ln_normal_cdf_fast's and ln_gauss_fast's bounds in cellmath.h, against erfc and exp in
 * double every 1e-4 over [-30, 30]; the ends and NaN. */
static void test_normal_cdf_accuracy(void **state)
{
	double ab = 0, rel = 0, dens = 0;
	for (int64_t k = -300000; k <= 300000; k++) {
		float x = (float)((double)k * 1e-4), e = ln_gauss_fast(x);
		double want = 0.5 * erfc(-(double)x / sqrt(2.0)), p = ln_normal_cdf_fast(x);
		ab = fmax(ab, fabs(p - want));
		if (x < 0 && x >= -13)
			rel = fmax(rel, fabs(p - want) / want);
		double wd = exp(-0.5 * (double)x * x);
		if (fabs(x) < 13)
			dens = fmax(dens, fabs(e - wd) / wd);
	}
	if (!(ab < 2.5e-7 && rel < 1e-6 && dens < 3e-7))
		fail_msg("Phi absolute %g, relative for x < 0 %g, density relative %g", ab, rel, dens);
	assert_true(ln_normal_cdf_fast(1e30f) == 1 && ln_gauss_fast(1e30f) == 0);
	assert_true(ln_normal_cdf_fast(-1e30f) == 0 && ln_gauss_fast(-1e30f) == 0);
	assert_true(ln_normal_cdf_fast(INFINITY) == 1 && ln_normal_cdf_fast(-INFINITY) == 0);
	assert_true(isnan(ln_normal_cdf_fast(NAN)) && isnan(ln_gauss_fast(NAN)));
}

/* ---- values from PyTorch's equations --------------------------------------------------- */

static double sig(double v) { return 1 / (1 + exp(-v)); }

/* One hidden unit, one input, three steps, every weight set by hand.
 * The expected values are computed here from the equations of
 * torch.nn.LSTM and torch.nn.GRU, step by step, and PyTorch 1.13 gives
 * the same numbers (written beside them). */
static void test_hand_values(void **state)
{
	const float x[] = {1.0f, -2.0f, 0.5f};
	const float wih[] = {0.5f, -0.3f, 0.8f, 0.2f}, whh[] = {0.1f, 0.4f, -0.6f, 0.7f};
	const float bih[] = {0.05f, 0.1f, -0.2f, 0.3f}, bhh[] = {-0.1f, 0.2f, 0.15f, -0.05f};
	ln_tensor xt;
	tu_tensor(&xt, 3, (int64_t[]){1, 3, 1}, x);

	/* LSTM: i, f, g, o from W_ih x + b_ih + W_hh h + b_hh; c = f c + i g;
	 * h = o tanh(c) */
	ln_module *m = make(LN_RNN_LSTM, 1, 1, 1, 0, false);
	const float *src[] = {wih, whh, bih, bhh};
	for (int p = 0; p < 4; p++)
		memcpy(data(&m->param[p]), src[p], 4 * sizeof(float));
	tu_forward_ok(m, &xt);
	double h = 0, c = 0;
	float want[3];
	for (int t = 0; t < 3; t++) {
		double a[4];
		for (int k = 0; k < 4; k++)
			a[k] = (double)wih[k] * x[t] + bih[k] + (double)whh[k] * h + bhh[k];
		double i = sig(a[0]), f = sig(a[1]), g = tanh(a[2]), o = sig(a[3]);
		c = f * c + i * g;
		h = o * tanh(c);
		want[t] = (float)h;
	}
	const float torch_lstm[] = {0.225632787f, 0.016879497f, 0.115366608f};
	tu_expect_near(want, torch_lstm, 3, 5e-7, "equations vs PyTorch (LSTM)");
	tu_expect_near(data(&m->output), want, 3, 1e-6, "LSTM output");
	ln_tensor *hidden = m->cls->field(m, "hidden"), *cell = m->cls->field(m, "cell");
	assert_true(fabs(data(hidden)[0] - want[2]) < 1e-6);
	assert_true(fabs(data(cell)[0] - c) < 1e-6 && fabs(c - 0.198266863822937) < 1e-7);
	ln_module_release(m);

	/* GRU: r, z from both products and both biases; n = tanh(W_in x + b_in
	 * + r (W_hn h + b_hn)); h = (1 - z) n + z h */
	m = make(LN_RNN_GRU, 1, 1, 1, 0, false);
	for (int p = 0; p < 4; p++)
		memcpy(data(&m->param[p]), src[p], 3 * sizeof(float));
	tu_forward_ok(m, &xt);
	h = 0;
	for (int t = 0; t < 3; t++) {
		double r = sig(wih[0] * x[t] + bih[0] + whh[0] * h + bhh[0]);
		double z = sig(wih[1] * x[t] + bih[1] + whh[1] * h + bhh[1]);
		double n = tanh(wih[2] * x[t] + bih[2] + r * (whh[2] * h + bhh[2]));
		h = (1 - z) * n + z * h;
		want[t] = (float)h;
	}
	const float torch_gru[] = {0.299503118f, -0.031065762f, 0.115890414f};
	tu_expect_near(want, torch_gru, 3, 5e-7, "equations vs PyTorch (GRU)");
	tu_expect_near(data(&m->output), want, 3, 1e-6, "GRU output");
	assert_null(m->cls->field(m, "cell"));
	ln_module_release(m);

	/* RNN, tanh and ReLU: h = act(W_ih x + b_ih + W_hh h + b_hh) */
	for (int relu = 0; relu < 2; relu++) {
		m = make(relu ? LN_RNN_RELU : LN_RNN_TANH, 1, 1, 1, 0, false);
		for (int p = 0; p < 4; p++)
			data(&m->param[p])[0] = src[p][3 - p];
		tu_forward_ok(m, &xt);
		h = 0;
		for (int t = 0; t < 3; t++) {
			double a = wih[3] * x[t] + bhh[0] + whh[2] * h + bih[1];
			h = relu ? (a > 0 ? a : 0) : tanh(a);
			want[t] = (float)h;
		}
		tu_expect_near(data(&m->output), want, 3, 1e-6, relu ? "RNN relu" : "RNN tanh");
		ln_module_release(m);
	}
	ln_tensor_release(&xt);
}

/* ---- the module against the naive reference ---------------------------------------------- */

/* The stacked naive layers, forward then backward: y (N,T,h), hidden and
 * cell (L,N,h), dx (N,T,nin) and the gradients of every parameter, in
 * the module's order (arrays of m->nparams, allocated here). */
typedef struct reference {
	float *y, *hidden, *cell, *dx;
	float **grads;
	int nparams;
} reference;

static void reference_free(reference *r)
{
	free(r->y);
	free(r->hidden);
	free(r->cell);
	free(r->dx);
	for (int i = 0; i < r->nparams; i++)
		free(r->grads[i]);
	free(r->grads);
}

static void reference_run(reference *ref, ln_rnn_kind kind, ln_module *m, const ln_tensor *x,
                          const ln_tensor *gy, int64_t layers, int64_t h)
{
	int64_t n = x->shape[0], t = x->shape[1], nin = x->shape[2];
	ref->nparams = m->nparams;
	ref->grads = calloc((size_t)m->nparams, sizeof *ref->grads);
	for (int i = 0; i < m->nparams; i++)
		ref->grads[i] = calloc((size_t)ln_tensor_numel(&m->param[i]), sizeof(float));
	/* the inputs of every layer, then the outputs */
	float **in = calloc((size_t)layers + 1, sizeof *in);
	in[0] = malloc((size_t)(n * t * nin) * sizeof(float));
	memcpy(in[0], data((ln_tensor *)x), (size_t)(n * t * nin) * sizeof(float));
	ref->hidden = calloc((size_t)(layers * n * h), sizeof(float));
	ref->cell = calloc((size_t)(layers * n * h), sizeof(float));
	for (int64_t k = 0; k < layers; k++) {
		int64_t kin = k ? h : nin;
		in[k + 1] = malloc((size_t)(n * t * h) * sizeof(float));
		const float *w[4];
		for (int p = 0; p < 4; p++)
			w[p] = data(&m->param[k * 4 + p]);
		assert_int_equal(ln_rnn_forward_naive(kind, in[k + 1], ref->hidden + k * n * h,
		                                      kind == LN_RNN_LSTM ? ref->cell + k * n * h : NULL,
		                                      in[k], NULL, NULL, w[0], w[1], w[2], w[3], n, t,
		                                      kin, h),
		                 LN_OK);
	}
	ref->y = malloc((size_t)(n * t * h) * sizeof(float));
	memcpy(ref->y, in[layers], (size_t)(n * t * h) * sizeof(float));
	/* backward from the top */
	float *dy = malloc((size_t)(n * t * h) * sizeof(float));
	memcpy(dy, data((ln_tensor *)gy), (size_t)(n * t * h) * sizeof(float));
	for (int64_t k = layers - 1; k >= 0; k--) {
		int64_t kin = k ? h : nin;
		float *dx = malloc((size_t)(n * t * kin) * sizeof(float));
		const float *w[4];
		for (int p = 0; p < 4; p++)
			w[p] = data(&m->param[k * 4 + p]);
		assert_int_equal(ln_rnn_backward_naive(kind, dx, ref->grads[k * 4], ref->grads[k * 4 + 1],
		                                       ref->grads[k * 4 + 2], ref->grads[k * 4 + 3], dy,
		                                       in[k], NULL, NULL, w[0], w[1], w[2], w[3], n, t,
		                                       kin, h),
		                 LN_OK);
		free(dy);
		dy = dx;
	}
	ref->dx = dy;
	for (int64_t k = 0; k <= layers; k++)
		free(in[k]);
	free(in);
}

/* Every kind, one to three layers, batches and lengths of 1 too: the
 * module (fast kernels, time-major buffers) equals the naive layers
 * stacked, forward and backward, twice (the second backward adds). */
static void test_against_naive(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t cases[][4] = {  /* N, T, nin, h */
		{1, 1, 1, 1}, {2, 5, 3, 4}, {3, 7, 5, 2}, {1, 9, 2, 6}, {4, 3, 8, 5},
		/* h large enough that the per-step products run in several blocks,
		 * the last one partial (rnn.c's STEP_B_FLOATS) */
		{2, 4, 3, 100}, {1, 3, 2, 130},
	};
	for (int kind = 0; kind < 4; kind++)
		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
			int64_t n = cases[c][0], t = cases[c][1], nin = cases[c][2], h = cases[c][3];
			int64_t layers = 1 + (int64_t)(c % 3);
			ln_module *m = make((ln_rnn_kind)kind, nin, h, layers, 0, false);
			ln_tensor x, gy;
			tu_tensor_uniform(&x, 3, (int64_t[]){n, t, nin}, -2, 2);
			tu_tensor_uniform(&gy, 3, (int64_t[]){n, t, h}, -1, 1);
			tu_forward_ok(m, &x);
			ln_module_zero_grad(m);
			tu_backward_ok(m, &x, &gy);
			reference ref;
			reference_run(&ref, (ln_rnn_kind)kind, m, &x, &gy, layers, h);
			char what[96];
			snprintf(what, sizeof what, "%s case %zu output", kind_names[kind], c);
			tu_expect_near(data(&m->output), ref.y, n * t * h, 2e-6, what);
			tu_expect_near(data(m->cls->field(m, "hidden")), ref.hidden, layers * n * h, 2e-6,
			            "hidden");
			if (kind == LN_RNN_LSTM)
				tu_expect_near(data(m->cls->field(m, "cell")), ref.cell, layers * n * h, 2e-6,
				            "cell");
			snprintf(what, sizeof what, "%s case %zu grad_input", kind_names[kind], c);
			tu_expect_near(data(&m->grad_input), ref.dx, n * t * nin, 2e-5, what);
			for (int p = 0; p < m->nparams; p++) {
				snprintf(what, sizeof what, "%s case %zu parameter %d", kind_names[kind], c, p);
				tu_expect_near(data(&m->grad[p]), ref.grads[p], ln_tensor_numel(&m->grad[p]), 2e-5,
				            what);
			}
			/* a second backward adds the same again */
			tu_backward_ok(m, &x, &gy);
			for (int p = 0; p < m->nparams; p++) {
				float *twice = malloc((size_t)ln_tensor_numel(&m->grad[p]) * sizeof(float));
				for (int64_t i = 0; i < ln_tensor_numel(&m->grad[p]); i++)
					twice[i] = 2 * ref.grads[p][i];
				tu_expect_near(data(&m->grad[p]), twice, ln_tensor_numel(&m->grad[p]), 4e-5,
				            "accumulated");
				free(twice);
			}
			reference_free(&ref);
			ln_tensor_release(&x);
			ln_tensor_release(&gy);
			ln_module_release(m);
		}
}

/* ---- gradient checks ------------------------------------------------------------------ */

static void expect_gradcheck(ln_module *m, const ln_tensor *x, double eps, double tol,
                             tu_before_fn before, void *ctx)
{
	double e = tu_gradcheck_ex(m, x, eps, true, before, ctx);
	if (!(e < tol)) {
		char name[128];
		m->cls->describe(m, name, sizeof name);
		fail_msg("%s: gradcheck relative error %g >= %g [seed %u]", name, e, tol, SEED);
	}
}

/* Several time steps and layers, every kind (ReLU with a small step:
 * its kink), input and every parameter against central differences. */
static void test_gradcheck(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t cases[][5] = {  /* N, T, nin, h, layers */
		{2, 4, 3, 3, 1}, {1, 6, 2, 2, 2}, {3, 3, 2, 4, 3}, {2, 1, 3, 2, 2},
	};
	for (int kind = 0; kind < 4; kind++)
		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
			const int64_t *k = cases[c];
			ln_module *m = make((ln_rnn_kind)kind, k[2], k[3], k[4], 0, false);
			ln_tensor x;
			tu_tensor_uniform(&x, 3, (int64_t[]){k[0], k[1], k[2]}, -1.5f, 1.5f);
			expect_gradcheck(m, &x, kind == LN_RNN_RELU ? 1e-3 : 1e-2, 1e-2, NULL, NULL);
			ln_tensor_release(&x);
			ln_module_release(m);
		}
}

/* ---- stateful mode -------------------------------------------------------------------------- */

/* What a stateful layer carries, saved and put back before each forward
 * of a gradient check: the chunk is then always run from the same state,
 * as in training, and the check measures the gradient with that state
 * held fixed. */
typedef struct carried {
	ln_tensor hidden, cell;
} carried;

static void carried_save(carried *c, ln_module *m)
{
	ln_error err;
	*c = (carried){LN_TENSOR_EMPTY, LN_TENSOR_EMPTY};
	assert_int_equal(ln_tensor_clone(&c->hidden, m->cls->field(m, "hidden"), &err), LN_OK);
	ln_tensor *cell = m->cls->field(m, "cell");
	if (cell)
		assert_int_equal(ln_tensor_clone(&c->cell, cell, &err), LN_OK);
}

static void restore(ln_module *m, void *ctx)
{
	carried *c = ctx;
	ln_error err;
	assert_int_equal(ln_tensor_copy(m->cls->field(m, "hidden"), &c->hidden, &err), LN_OK);
	if (!ln_tensor_is_empty(&c->cell))
		assert_int_equal(ln_tensor_copy(m->cls->field(m, "cell"), &c->cell, &err), LN_OK);
}

static void carried_free(carried *c)
{
	ln_tensor_release(&c->hidden);
	ln_tensor_release(&c->cell);
}

/* The chunk [a, a+len) of x {N,T,d} along T, as a new tensor. */
static void chunk(ln_tensor *out, const ln_tensor *x, int64_t a, int64_t len)
{
	int64_t n = x->shape[0], t = x->shape[1], d = x->shape[2];
	tu_tensor(out, 3, (int64_t[]){n, len, d}, NULL);
	for (int64_t i = 0; i < n; i++)
		memcpy(data(out) + i * len * d, data((ln_tensor *)x) + (i * t + a) * d,
		       (size_t)(len * d) * sizeof(float));
}

/* A stateful layer fed a sequence in two chunks gives the outputs of the
 * whole sequence at once; reset_state starts afresh; a batch of another
 * size is an error until then. */
static void test_stateful_carries(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	for (int kind = 0; kind < 4; kind++) {
		ln_module *whole = make((ln_rnn_kind)kind, 3, 4, 2, 0, false);
		ln_module *st = make((ln_rnn_kind)kind, 3, 4, 2, 0, true);
		for (int p = 0; p < whole->nparams; p++)
			memcpy(data(&st->param[p]), data(&whole->param[p]),
			       (size_t)ln_tensor_numel(&whole->param[p]) * sizeof(float));
		ln_tensor x, a, b;
		tu_tensor_uniform(&x, 3, (int64_t[]){2, 7, 3}, -1, 1);
		chunk(&a, &x, 0, 3);
		chunk(&b, &x, 3, 4);
		tu_forward_ok(whole, &x);
		tu_forward_ok(st, &a);
		tu_forward_ok(st, &b);
		ln_tensor tail;
		chunk(&tail, &whole->output, 3, 4);
		tu_expect_near(data(&st->output), data(&tail), ln_tensor_numel(&tail), 1e-6,
		            kind_names[kind]);
		tu_expect_near(data(st->cls->field(st, "hidden")), data(whole->cls->field(whole, "hidden")),
		            2 * 2 * 4, 1e-6, "final state");
		/* from zeros again */
		ln_module_reset_state(st);
		assert_true(ln_tensor_max(st->cls->field(st, "hidden")) == 0);
		tu_forward_ok(st, &a);
		ln_tensor head;
		chunk(&head, &whole->output, 0, 3);
		tu_expect_near(data(&st->output), data(&head), ln_tensor_numel(&head), 1e-6, "after reset");
		/* a batch of another size */
		ln_tensor other;
		ln_error err;
		tu_tensor_uniform(&other, 3, (int64_t[]){3, 2, 3}, -1, 1);
		assert_int_equal(ln_module_forward(st, &other, &err), LN_ESHAPE);
		char want[200];
		snprintf(want, sizeof want, "%s: the state kept from the last forward is for a batch of "
		         "2, got a batch of 3 (reset_state() starts afresh)", st->cls->name);
		assert_string_equal(err.msg, want);
		ln_module_reset_state(st);
		tu_forward_ok(st, &other);
		/* not stateful: every forward starts from zeros */
		tu_forward_ok(whole, &b);
		ln_tensor first = LN_TENSOR_EMPTY;
		assert_int_equal(ln_tensor_clone(&first, &whole->output, &err), LN_OK);
		tu_forward_ok(whole, &b);
		assert_memory_equal(data(&first), data(&whole->output), 2 * 4 * 4 * sizeof(float));
		ln_tensor_release(&first);
		ln_tensor_release(&other);
		ln_tensor_release(&head);
		ln_tensor_release(&tail);
		ln_tensor_release(&x);
		ln_tensor_release(&a);
		ln_tensor_release(&b);
		ln_module_release(whole);
		ln_module_release(st);
	}
}

/* Truncated backpropagation through time: after a first chunk, the
 * gradients of the second chunk (input and parameters) are those of the
 * chunk run from the carried state held fixed -- central differences
 * with the state put back before each forward agree -- and they differ
 * from the gradients through the whole sequence, which the first chunk's
 * steps would add to. */
static void test_stateful_gradient_stops(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	for (int kind = 0; kind < 4; kind++) {
		if (kind == LN_RNN_RELU)
			continue;  /* its kink makes central differences unreliable here */
		ln_module *st = make((ln_rnn_kind)kind, 2, 3, 2, 0, true);
		ln_tensor x, a, b, gy;
		tu_tensor_uniform(&x, 3, (int64_t[]){2, 6, 2}, -1.5f, 1.5f);
		chunk(&a, &x, 0, 3);
		chunk(&b, &x, 3, 3);
		tu_forward_ok(st, &a);
		carried c;
		carried_save(&c, st);
		expect_gradcheck(st, &b, 1e-2, 1e-2, restore, &c);

		/* the same chunk through a non-stateful layer over the whole
		 * sequence, with the gradient only on the second chunk's outputs:
		 * its parameter gradients include the first chunk's steps */
		ln_module *whole = make((ln_rnn_kind)kind, 2, 3, 2, 0, false);
		for (int p = 0; p < st->nparams; p++)
			memcpy(data(&whole->param[p]), data(&st->param[p]),
			       (size_t)ln_tensor_numel(&st->param[p]) * sizeof(float));
		restore(st, &c);
		tu_forward_ok(st, &b);
		tu_tensor_uniform(&gy, 3, (int64_t[]){2, 6, 3}, -1, 1);
		for (int64_t i = 0; i < 2; i++)
			memset(data(&gy) + i * 6 * 3, 0, 3 * 3 * sizeof(float));  /* first chunk: 0 */
		ln_tensor gb;
		chunk(&gb, &gy, 3, 3);
		ln_module_zero_grad(st);
		tu_backward_ok(st, &b, &gb);
		tu_forward_ok(whole, &x);
		ln_module_zero_grad(whole);
		tu_backward_ok(whole, &x, &gy);
		/* the input gradients of the second chunk agree (nothing after
		 * the chunk depends on it differently) ... */
		ln_tensor gxb;
		chunk(&gxb, &whole->grad_input, 3, 3);
		tu_expect_near(data(&st->grad_input), data(&gxb), ln_tensor_numel(&gxb), 1e-5,
		            "grad_input of the chunk");
		/* ... but the whole sequence also sends gradient into the first
		 * chunk's steps, which truncation leaves out */
		double diff = 0, first = 0;
		for (int p = 0; p < st->nparams; p++)
			for (int64_t i = 0; i < ln_tensor_numel(&st->grad[p]); i++)
				diff = fmax(diff, fabs(data(&st->grad[p])[i] - data(&whole->grad[p])[i]));
		for (int64_t i = 0; i < 2; i++)
			for (int64_t j = 0; j < 3 * 2; j++)
				first = fmax(first, fabs(data(&whole->grad_input)[i * 6 * 2 + j]));
		if (!(diff > 1e-3 && first > 1e-3))
			fail_msg("%s: truncation made no difference (%g, %g)", kind_names[kind], diff, first);
		ln_tensor_release(&gxb);
		ln_tensor_release(&gb);
		ln_tensor_release(&gy);
		carried_free(&c);
		ln_tensor_release(&x);
		ln_tensor_release(&a);
		ln_tensor_release(&b);
		ln_module_release(st);
		ln_module_release(whole);
	}
}

/* ---- dropout between layers --------------------------------------------------------------- */

/* In evaluate mode dropout does nothing; in training mode the output
 * changes, masks come from the seeded rng (same seed, same output), and
 * the gradients are those of the masked network (checked with the rng
 * reseeded before each forward, so that every forward draws the same
 * masks).  One layer has nothing between layers to drop. */
static void test_dropout(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	for (int kind = 0; kind < 4; kind++) {
		ln_module *m = make((ln_rnn_kind)kind, 3, 4, 3, 0.4, false);
		ln_module *plain = make((ln_rnn_kind)kind, 3, 4, 3, 0, false);
		for (int p = 0; p < m->nparams; p++)
			memcpy(data(&plain->param[p]), data(&m->param[p]),
			       (size_t)ln_tensor_numel(&m->param[p]) * sizeof(float));
		ln_tensor x;
		tu_tensor_uniform(&x, 3, (int64_t[]){2, 5, 3}, -1, 1);
		tu_forward_ok(plain, &x);
		ln_module_set_training(m, false);
		tu_forward_ok(m, &x);
		assert_memory_equal(data(&m->output), data(&plain->output), 2 * 5 * 4 * sizeof(float));
		ln_module_set_training(m, true);
		ln_rng_seed(ln_rng_global(), 99);
		tu_forward_ok(m, &x);
		ln_tensor y1 = LN_TENSOR_EMPTY;
		ln_error err;
		assert_int_equal(ln_tensor_clone(&y1, &m->output, &err), LN_OK);
		double diff = 0;
		for (int64_t i = 0; i < 40; i++)
			diff = fmax(diff, fabs(data(&y1)[i] - data(&plain->output)[i]));
		assert_true(diff > 1e-3);
		ln_rng_seed(ln_rng_global(), 99);
		tu_forward_ok(m, &x);
		assert_memory_equal(data(&m->output), data(&y1), 40 * sizeof(float));
		if (kind != LN_RNN_RELU) {
			uint64_t seed = 5;
			expect_gradcheck(m, &x, 1e-2, 1e-2, tu_reseed, &seed);
		}
		ln_tensor_release(&y1);
		ln_tensor_release(&x);
		ln_module_release(m);
		ln_module_release(plain);
	}
}

/* ---- names, order, initialisation, save formats --------------------------------------------- */

static ln_status record(const ln_state_entry *e, void *ctx, ln_error *err)
{
	char *keys = ctx;
	strcat(keys, e->key);
	strcat(keys, " ");
	return LN_OK;
}

static void test_parameters(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t gates[] = {1, 1, 4, 3};
	for (int kind = 0; kind < 4; kind++) {
		ln_module *m = make((ln_rnn_kind)kind, 5, 6, 2, 0, false);
		assert_int_equal(m->nparams, 8);
		const int64_t want[8][2] = {
			{gates[kind] * 6, 5}, {gates[kind] * 6, 6}, {gates[kind] * 6, 0}, {gates[kind] * 6, 0},
			{gates[kind] * 6, 6}, {gates[kind] * 6, 6}, {gates[kind] * 6, 0}, {gates[kind] * 6, 0},
		};
		for (int p = 0; p < 8; p++) {
			assert_int_equal(m->param[p].ndim, want[p][1] ? 2 : 1);
			assert_int_equal(m->param[p].shape[0], want[p][0]);
			if (want[p][1])
				assert_int_equal(m->param[p].shape[1], want[p][1]);
			/* U(-1/sqrt(6), 1/sqrt(6)), filling the range */
			float a = (float)(1 / sqrt(6.0));
			assert_true(ln_tensor_max(&m->param[p]) <= a && ln_tensor_min(&m->param[p]) >= -a);
		}
		assert_true(ln_tensor_max(&m->param[1]) > 0.3f && ln_tensor_min(&m->param[1]) < -0.3f);
		char keys[512] = "";
		ln_error err;
		assert_int_equal(ln_module_state_walk(m, record, keys, &err), LN_OK);
		assert_string_equal(keys, "weight_ih_l0 weight_hh_l0 bias_ih_l0 bias_hh_l0 "
		                          "weight_ih_l1 weight_hh_l1 bias_ih_l1 bias_hh_l1 ");
		char name[LN_PARAM_NAME_MAX];
		assert_string_equal(ln_module_param_name(m, 5, name), "weight_hh_l1");
		char desc[128];
		m->cls->describe(m, desc, sizeof desc);
		const char *descs[] = {"RNN(5 -> 6, layers=2)", "RNN(5 -> 6, layers=2, nonlinearity=relu)",
		                       "LSTM(5 -> 6, layers=2)", "GRU(5 -> 6, layers=2)"};
		assert_string_equal(desc, descs[kind]);
		ln_module_release(m);
	}
	ln_module *m = make(LN_RNN_LSTM, 2, 3, 1, 0.5, true);
	char desc[128];
	m->cls->describe(m, desc, sizeof desc);
	assert_string_equal(desc, "LSTM(2 -> 3, dropout=0.5, stateful)");
	ln_module_release(m);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
	ln_error err;
	ln_module *m = NULL;
	ln_rnn_options o = {.layers = 1};
	assert_int_equal(ln_rnn_new(&m, NULL, LN_RNN_LSTM, 0, 3, &o, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected sizes nin >= 1 and hidden >= 1, got 0 and 3");
	assert_int_equal(ln_rnn_new(&m, NULL, LN_RNN_LSTM, 2, -1, &o, &err), LN_ERANGE);
	o.layers = 0;
	assert_int_equal(ln_rnn_new(&m, NULL, LN_RNN_GRU, 2, 3, &o, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected layers in 1..63, got 0");
	o.layers = 64;
	assert_int_equal(ln_rnn_new(&m, NULL, LN_RNN_GRU, 2, 3, &o, &err), LN_ERANGE);
	o.layers = 2;
	o.dropout = 1;
	assert_int_equal(ln_rnn_new(&m, NULL, LN_RNN_TANH, 2, 3, &o, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected dropout in [0,1), got 1");
	o.dropout = NAN;
	assert_int_equal(ln_rnn_new(&m, NULL, LN_RNN_TANH, 2, 3, &o, &err), LN_ERANGE);
	o.dropout = -0.1;
	assert_int_equal(ln_rnn_new(&m, NULL, LN_RNN_TANH, 2, 3, &o, &err), LN_ERANGE);
	assert_null(m);
	/* from a config, as the loader builds: each value checked */
	double cfg[6] = {2, 3, 2, 0, 0, 0};
	ln_module *c = NULL;
	assert_int_equal(ln_module_create(&c, &ln_rnn_class, NULL, cfg, &err), LN_OK);
	ln_module_release(c);
	cfg[5] = 2;
	assert_int_equal(ln_module_create(&c, &ln_rnn_class, NULL, cfg, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected nonlinearity to be an integer in [0, 1], got 2");
	cfg[5] = 0;
	cfg[4] = 0.5;
	assert_int_equal(ln_module_create(&c, &ln_lstm_class, NULL, cfg, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected stateful to be an integer in [0, 1], got 0.5");
	cfg[4] = 0;
	cfg[2] = 1e9;
	assert_int_equal(ln_module_create(&c, &ln_gru_class, NULL, cfg, &err), LN_ERANGE);
	cfg[2] = 1;
	cfg[1] = 1.5;
	assert_int_equal(ln_module_create(&c, &ln_gru_class, NULL, cfg, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected nhidden to be an integer >= 1, got 1.5");

	m = make(LN_RNN_GRU, 3, 2, 1, 0, false);
	ln_tensor x2, x3;
	tu_tensor_uniform(&x2, 2, (int64_t[]){4, 3}, -1, 1);
	tu_tensor_uniform(&x3, 3, (int64_t[]){4, 5, 2}, -1, 1);
	assert_int_equal(ln_module_forward(m, &x2, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "GRU: expected input of shape {N,T,3}, got {4,3}");
	assert_int_equal(ln_module_forward(m, &x3, &err), LN_ESHAPE);
	assert_string_equal(err.msg, "GRU: expected input of shape {N,T,3}, got {4,5,2}");
	ln_tensor_release(&x2);
	ln_tensor_release(&x3);
	ln_module_release(m);
}

/* ---- allocation ------------------------------------------------------------------------------- */

static ln_status build(ln_module **out, void *ctx, ln_error *err)
{
	ln_rnn_options o = {.layers = 2, .dropout = 0.3, .stateful = true};
	return ln_rnn_new(out, NULL, *(ln_rnn_kind *)ctx, 4, 3, &o, err);
}

/* Each allocation of the constructor, of the first forward and of the
 * first backward fails in turn: LN_ENOMEM, and nothing is left behind. */
static void test_enomem(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	for (int kind = 0; kind < 4; kind++) {
		ln_rnn_kind k = (ln_rnn_kind)kind;
		tu_check_enomem(build, &k, (int64_t[]){2, 3, 4}, (int64_t[]){2, 3, 3}, kind_names[kind]);
	}
}

/* After the first step, a training step of a stateful two-layer LSTM with
 * dropout (and of every other kind) allocates nothing. */
static void test_steady_state_no_alloc(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	for (int kind = 0; kind < 4; kind++) {
		ln_module *m = make((ln_rnn_kind)kind, 4, 5, 2, 0.2, true);
		ln_tensor x, gy;
		tu_tensor_uniform(&x, 3, (int64_t[]){3, 6, 4}, -1, 1);
		tu_tensor_uniform(&gy, 3, (int64_t[]){3, 6, 5}, -1, 1);
		for (int step = 0; step < 4; step++) {
			uint64_t before = tu_alloc_calls();
			ln_module_zero_grad(m);
			tu_forward_ok(m, &x);
			tu_backward_ok(m, &x, &gy);
			if (step == 2)
				ln_module_reset_state(m);
			if (step > 0)
				assert_int_equal(tu_alloc_calls(), before);
		}
		ln_tensor_release(&x);
		ln_tensor_release(&gy);
		ln_module_release(m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cellmath_accuracy),
		cmocka_unit_test(test_normal_cdf_accuracy),
		cmocka_unit_test(test_exp_d_accuracy),
		cmocka_unit_test(test_hand_values),
		cmocka_unit_test(test_against_naive),
		cmocka_unit_test(test_gradcheck),
		cmocka_unit_test(test_stateful_carries),
		cmocka_unit_test(test_stateful_gradient_stops),
		cmocka_unit_test(test_dropout),
		cmocka_unit_test(test_parameters),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_enomem),
		cmocka_unit_test(test_steady_state_no_alloc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
