/*
 * test_attention.c -- MultiheadAttention: one head worked out from
 * PyTorch's equations, the module against the naive reference (heads,
 * shapes, causal or not, forward and backward), gradient checks, the
 * causal mask (an output at t does not depend on inputs after t),
 * attention dropout, parameters and names, errors, allocation failures
 * and the allocation-free steady state.
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
#include "nn/module.h"
#include "nn/sequence.h"
#include "nn/state_dict.h"
#include "testutil.h"

#define SEED 31337u

static ln_module *make(int64_t d, int64_t heads, bool causal, double dropout)
{
	ln_module *m = NULL;
	ln_error err;
	if (ln_attention_new(&m, NULL, d, heads, causal, dropout, &err) != LN_OK)
		fail_msg("ln_attention_new: %s", err.msg);
	return m;
}

static float *data(ln_tensor *t) { return ln_tensor_data(t); }

/* ---- one head by hand ------------------------------------------------------------------- */

/* d = 2, one head, three positions, every weight set.  The expected
 * values are worked out here from the equations of
 * torch.nn.MultiheadAttention (q, k, v = x W_in^T + b_in split in three;
 * softmax(q k^T / sqrt(d)) v; then the output projection), with and
 * without the causal mask; PyTorch 1.13 gives the numbers beside them. */
static void test_one_head_by_hand(void **state)
{
	const float win[6][2] = {{0.5f, -0.2f}, {0.1f, 0.3f}, {-0.4f, 0.6f},
	                         {0.2f, 0.2f}, {0.7f, -0.1f}, {-0.3f, 0.5f}};
	const float bin[6] = {0.1f, -0.1f, 0.05f, 0.0f, 0.2f, -0.2f};
	const float wo[2][2] = {{0.9f, -0.5f}, {0.3f, 0.8f}}, bo[2] = {0.01f, -0.02f};
	const float x[3][2] = {{1.0f, 2.0f}, {-1.0f, 0.5f}, {0.3f, -0.7f}};
	const float torch_full[6] = {0.161063775f, 0.178111136f, 0.254294783f,
	                             0.014185101f, 0.087681212f, 0.133897558f};
	const float torch_causal[6] = {0.389999986f, 0.590000033f, -0.150772601f,
	                               0.335064352f, 0.087681212f, 0.133897558f};
	for (int causal = 0; causal < 2; causal++) {
		double q[3][2], k[3][2], v[3][2];
		for (int t = 0; t < 3; t++)
			for (int j = 0; j < 2; j++) {
				q[t][j] = bin[j] + win[j][0] * x[t][0] + win[j][1] * x[t][1];
				k[t][j] = bin[2 + j] + win[2 + j][0] * x[t][0] + win[2 + j][1] * x[t][1];
				v[t][j] = bin[4 + j] + win[4 + j][0] * x[t][0] + win[4 + j][1] * x[t][1];
			}
		float want[6];
		for (int t = 0; t < 3; t++) {
			int len = causal ? t + 1 : 3;
			double s[3], mx = -INFINITY, sum = 0, o[2] = {0, 0};
			for (int c = 0; c < len; c++) {
				s[c] = (q[t][0] * k[c][0] + q[t][1] * k[c][1]) / sqrt(2.0);
				mx = fmax(mx, s[c]);
			}
			for (int c = 0; c < len; c++)
				sum += s[c] = exp(s[c] - mx);
			for (int c = 0; c < len; c++)
				for (int j = 0; j < 2; j++)
					o[j] += s[c] / sum * v[c][j];
			for (int j = 0; j < 2; j++)
				want[t * 2 + j] = (float)(bo[j] + wo[j][0] * o[0] + wo[j][1] * o[1]);
		}
		tu_expect_near(want, causal ? torch_causal : torch_full, 6, 5e-7, "equations vs PyTorch");
		ln_module *m = make(2, 1, causal, 0);
		memcpy(data(&m->param[0]), win, sizeof win);
		memcpy(data(&m->param[1]), bin, sizeof bin);
		memcpy(data(&m->param[2]), wo, sizeof wo);
		memcpy(data(&m->param[3]), bo, sizeof bo);
		ln_tensor xt;
		tu_tensor(&xt, 3, (int64_t[]){1, 3, 2}, &x[0][0]);
		tu_forward_ok(m, &xt);
		tu_expect_near(data(&m->output), want, 6, 1e-6, causal ? "causal" : "full");
		ln_tensor_release(&xt);
		ln_module_release(m);
	}
}

/* ---- against the reference ------------------------------------------------------------------ */

/* Runs m (d, heads, causal as built) forward and backward on x, gy
 * {n,t,d} and compares with the reference: the output to tol_y, the
 * gradients to tol_g (relative, tu_expect_near).  When finite is true,
 * also checks that the output and grad_input hold no inf or NaN. */
static void compare_with_naive(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                               int64_t heads, bool causal, double tol_y, double tol_g,
                               const char *what)
{
	int64_t n = x->shape[0], t = x->shape[1], d = x->shape[2], k = n * t * d;
	tu_forward_ok(m, x);
	ln_module_zero_grad(m);
	tu_backward_ok(m, x, gy);
	float *y = malloc((size_t)k * sizeof(float)), *dx = malloc((size_t)k * sizeof(float));
	float *g[4];
	const float *w[4];
	for (int p = 0; p < 4; p++) {
		g[p] = calloc((size_t)ln_tensor_numel(&m->param[p]), sizeof(float));
		w[p] = data(&m->param[p]);
	}
	assert_int_equal(ln_attention_forward_naive(y, ln_tensor_data(x), w[0], w[1], w[2], w[3], n,
	                                            t, d, heads, causal),
	                 LN_OK);
	assert_int_equal(ln_attention_backward_naive(dx, g[0], g[1], g[2], g[3], ln_tensor_data(gy),
	                                             ln_tensor_data(x), w[0], w[1], w[2], n, t, d,
	                                             heads, causal),
	                 LN_OK);
	for (int64_t i = 0; i < k; i++)
		if (!isfinite(data(&m->output)[i]) || !isfinite(data(&m->grad_input)[i]))
			fail_msg("%s: element %lld is not finite", what, (long long)i);
	char msg[96];
	snprintf(msg, sizeof msg, "%s: output", what);
	tu_expect_near(data(&m->output), y, k, tol_y, msg);
	snprintf(msg, sizeof msg, "%s: grad_input", what);
	tu_expect_near(data(&m->grad_input), dx, k, tol_g, msg);
	for (int p = 0; p < 4; p++) {
		snprintf(msg, sizeof msg, "%s: gradient of parameter %d", what, p);
		tu_expect_near(data(&m->grad[p]), g[p], ln_tensor_numel(&m->param[p]), tol_g, msg);
		free(g[p]);
	}
	free(y);
	free(dx);
}

static void test_against_naive(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t cases[][4] = {  /* N, T, d, heads; T past 16: several causal blocks */
		{1, 1, 1, 1}, {2, 5, 8, 2}, {3, 4, 6, 3}, {1, 9, 8, 1}, {2, 7, 12, 4},
		{1, 16, 4, 1}, {2, 17, 8, 2}, {1, 33, 12, 3}, {1, 40, 8, 2},
	};
	for (int causal = 0; causal < 2; causal++)
		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
			int64_t n = cases[c][0], t = cases[c][1], d = cases[c][2], heads = cases[c][3];
			ln_module *m = make(d, heads, causal, 0);
			ln_tensor_uniform(&m->param[1], ln_rng_global(), -0.5f, 0.5f);
			ln_tensor_uniform(&m->param[3], ln_rng_global(), -0.5f, 0.5f);
			ln_tensor x, gy;
			tu_tensor_uniform(&x, 3, (int64_t[]){n, t, d}, -2, 2);
			tu_tensor_uniform(&gy, 3, (int64_t[]){n, t, d}, -1, 1);
			char what[64];
			snprintf(what, sizeof what, "case %zu%s", c, causal ? " causal" : "");
			compare_with_naive(m, &x, &gy, heads, causal, 2e-6, 2e-5, what);
			ln_tensor_release(&x);
			ln_tensor_release(&gy);
			ln_module_release(m);
		}
}

/* Scores in the thousands: e^s overflows float32 past s = 88, so only
 * the softmax that subtracts each row's maximum first stays finite and
 * right; the outputs and gradients still match the reference in double.
 * The weights are then nearly one-hot, and the gradients through the
 * softmax differences of nearly equal numbers, of which float32 keeps
 * fewer digits than of the output: hence the wider gradient tolerance. */
static void test_large_scores(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	int64_t n = 2, t = 5, d = 4, heads = 2;
	for (int causal = 0; causal < 2; causal++) {
		ln_module *m = make(d, heads, causal, 0);
		ln_tensor_uniform(&m->param[0], ln_rng_global(), -10, 10);
		ln_tensor x, gy;
		tu_tensor_uniform(&x, 3, (int64_t[]){n, t, d}, -10, 10);
		tu_tensor_uniform(&gy, 3, (int64_t[]){n, t, d}, -1, 1);
		/* the largest score, to show that the case is one that needs it */
		const float *w = data(&m->param[0]), *xd = data(&x);
		int64_t hd = d / heads;
		double top = 0;
		for (int64_t r = 0; r < n * t; r++)
			for (int64_t c = 0; c < n * t; c++)
				for (int64_t h = 0; h < heads; h++) {
					double s = 0;
					for (int64_t e = h * hd; e < (h + 1) * hd; e++) {
						double q = 0, kk = 0;
						for (int64_t j = 0; j < d; j++) {
							q += (double)w[e * d + j] * xd[r * d + j];
							kk += (double)w[(d + e) * d + j] * xd[c * d + j];
						}
						s += q * kk;
					}
					top = fmax(top, fabs(s) / sqrt((double)hd));
				}
		assert_true(top > 1000);
		compare_with_naive(m, &x, &gy, heads, causal, 1e-5, 1e-3,
		                   causal ? "large scores, causal" : "large scores");
		ln_tensor_release(&x);
		ln_tensor_release(&gy);
		ln_module_release(m);
	}
}

/* ---- gradient checks ----------------------------------------------------------------------- */

static void expect_gradcheck(ln_module *m, const ln_tensor *x, tu_before_fn before, void *ctx)
{
	double e = tu_gradcheck_ex(m, x, 1e-2, true, before, ctx);
	if (!(e < 1e-2)) {
		char name[128];
		m->cls->describe(m, name, sizeof name);
		fail_msg("%s: gradcheck relative error %g [seed %u]", name, e, SEED);
	}
}

static void test_gradcheck(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t cases[][4] = {{2, 3, 4, 2}, {1, 5, 6, 3}, {3, 2, 2, 1}, {1, 4, 8, 4},
	                            {1, 19, 4, 2}, {1, 35, 2, 1}};  /* several causal blocks */
	for (int causal = 0; causal < 2; causal++)
		for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
			ln_module *m = make(cases[c][2], cases[c][3], causal, 0);
			ln_tensor_uniform(&m->param[1], ln_rng_global(), -0.5f, 0.5f);
			ln_tensor_uniform(&m->param[3], ln_rng_global(), -0.5f, 0.5f);
			ln_tensor x;
			tu_tensor_uniform(&x, 3, (int64_t[]){cases[c][0], cases[c][1], cases[c][2]}, -1.5f,
			                  1.5f);
			expect_gradcheck(m, &x, NULL, NULL);
			ln_tensor_release(&x);
			ln_module_release(m);
		}
}

/* ---- the causal mask ---------------------------------------------------------------------- */

/* With the mask, changing the inputs after position t leaves the outputs
 * up to t exactly as they were, and the gradient of an output at t
 * reaches no input after t; without it, both change. */
static void test_causal_mask(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	int64_t n = 2, t = 6, d = 8;
	for (int causal = 0; causal < 2; causal++) {
		ln_module *m = make(d, 2, causal, 0);
		ln_tensor x, y0 = LN_TENSOR_EMPTY, gy;
		ln_error err;
		tu_tensor_uniform(&x, 3, (int64_t[]){n, t, d}, -1, 1);
		tu_forward_ok(m, &x);
		assert_int_equal(ln_tensor_clone(&y0, &m->output, &err), LN_OK);
		for (int64_t at = 0; at < t - 1; at++) {
			ln_tensor x2 = LN_TENSOR_EMPTY;
			assert_int_equal(ln_tensor_clone(&x2, &x, &err), LN_OK);
			for (int64_t i = 0; i < n; i++)
				for (int64_t s = at + 1; s < t; s++)
					for (int64_t j = 0; j < d; j++)
						data(&x2)[(i * t + s) * d + j] += 0.5f;
			tu_forward_ok(m, &x2);
			bool same = true;
			for (int64_t i = 0; i < n; i++)
				same = same && memcmp(data(&m->output) + i * t * d, data(&y0) + i * t * d,
				                      (size_t)((at + 1) * d) * sizeof(float)) == 0;
			if (causal)
				assert_true(same);
			else
				assert_false(same);
			ln_tensor_release(&x2);
		}
		/* the gradient of position 2's output only */
		tu_forward_ok(m, &x);
		tu_tensor(&gy, 3, (int64_t[]){n, t, d}, NULL);
		for (int64_t i = 0; i < n; i++)
			for (int64_t j = 0; j < d; j++)
				data(&gy)[(i * t + 2) * d + j] = 1;
		tu_backward_ok(m, &x, &gy);
		double after = 0;
		for (int64_t i = 0; i < n; i++)
			for (int64_t s = 3; s < t; s++)
				for (int64_t j = 0; j < d; j++)
					after = fmax(after, fabs(data(&m->grad_input)[(i * t + s) * d + j]));
		if (causal)
			assert_true(after == 0);
		else
			assert_true(after > 1e-4);
		ln_tensor_release(&gy);
		ln_tensor_release(&y0);
		ln_tensor_release(&x);
		ln_module_release(m);
	}
}

/* ---- dropout -------------------------------------------------------------------------------- */

/* Evaluate mode: no dropout.  Training: the output changes, the seed
 * fixes it, and the gradients are those of the masked weights (checked
 * with the rng reseeded before every forward). */
static void test_dropout(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	for (int causal = 0; causal < 2; causal++) {
		ln_module *m = make(6, 2, causal, 0.3), *plain = make(6, 2, causal, 0);
		for (int p = 0; p < 4; p++)
			memcpy(data(&plain->param[p]), data(&m->param[p]),
			       (size_t)ln_tensor_numel(&m->param[p]) * sizeof(float));
		ln_tensor x, y1 = LN_TENSOR_EMPTY;
		ln_error err;
		tu_tensor_uniform(&x, 3, (int64_t[]){2, 5, 6}, -1, 1);
		tu_forward_ok(plain, &x);
		ln_module_set_training(m, false);
		tu_forward_ok(m, &x);
		assert_memory_equal(data(&m->output), data(&plain->output), 60 * sizeof(float));
		ln_module_set_training(m, true);
		ln_rng_seed(ln_rng_global(), 8);
		tu_forward_ok(m, &x);
		assert_int_equal(ln_tensor_clone(&y1, &m->output, &err), LN_OK);
		double diff = 0;
		for (int i = 0; i < 60; i++)
			diff = fmax(diff, fabs(data(&y1)[i] - data(&plain->output)[i]));
		assert_true(diff > 1e-3);
		ln_rng_seed(ln_rng_global(), 8);
		tu_forward_ok(m, &x);
		assert_memory_equal(data(&m->output), data(&y1), 60 * sizeof(float));
		uint64_t seed = 21;
		expect_gradcheck(m, &x, tu_reseed, &seed);
		ln_tensor_release(&y1);
		ln_tensor_release(&x);
		ln_module_release(m);
		ln_module_release(plain);
	}
}

/* ---- parameters, names, errors ---------------------------------------------------------------- */

static ln_status record(const ln_state_entry *e, void *ctx, ln_error *err)
{
	strcat(ctx, e->key);
	strcat(ctx, " ");
	return LN_OK;
}

static void test_parameters(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_module *m = make(8, 2, false, 0);
	assert_int_equal(m->nparams, 4);
	const int64_t shapes[4][2] = {{24, 8}, {24, 0}, {8, 8}, {8, 0}};
	for (int p = 0; p < 4; p++) {
		assert_int_equal(m->param[p].shape[0], shapes[p][0]);
		assert_int_equal(m->param[p].ndim, shapes[p][1] ? 2 : 1);
	}
	/* Xavier-uniform: |w| <= sqrt(6 / (8 + 24)); U(-1/sqrt(8), 1/sqrt(8)); biases 0 */
	float a = (float)sqrt(6.0 / 32), b = (float)(1 / sqrt(8.0));
	assert_true(ln_tensor_max(&m->param[0]) <= a && ln_tensor_min(&m->param[0]) >= -a);
	assert_true(ln_tensor_max(&m->param[0]) > 0.8f * a);
	assert_true(ln_tensor_max(&m->param[2]) <= b && ln_tensor_min(&m->param[2]) >= -b);
	assert_true(ln_tensor_max(&m->param[1]) == 0 && ln_tensor_min(&m->param[3]) == 0);
	char keys[256] = "";
	ln_error err;
	assert_int_equal(ln_module_state_walk(m, record, keys, &err), LN_OK);
	assert_string_equal(keys, "in_proj_weight in_proj_bias out_proj.weight out_proj.bias ");
	char desc[96];
	m->cls->describe(m, desc, sizeof desc);
	assert_string_equal(desc, "MultiheadAttention(8, heads=2)");
	ln_module_release(m);
	m = make(4, 4, true, 0.1);
	m->cls->describe(m, desc, sizeof desc);
	assert_string_equal(desc, "MultiheadAttention(4, heads=4, causal, dropout=0.1)");
	ln_module_release(m);
}

static void test_errors(void **state)
{
	ln_error err;
	ln_module *m = NULL;
	assert_int_equal(ln_attention_new(&m, NULL, 0, 1, false, 0, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected sizes d >= 1 and heads >= 1, got 0 and 1");
	assert_int_equal(ln_attention_new(&m, NULL, 6, 4, false, 0, &err), LN_ERANGE);
	assert_string_equal(err.msg, "d (6) must be a multiple of heads (4)");
	assert_int_equal(ln_attention_new(&m, NULL, 6, 2, false, 1, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected dropout in [0,1), got 1");
	assert_int_equal(ln_attention_new(&m, NULL, 6, 2, false, NAN, &err), LN_ERANGE);
	assert_null(m);
	double cfg[4] = {6, 2, 2, 0};
	assert_int_equal(ln_module_create(&m, &ln_attention_class, NULL, cfg, &err), LN_ERANGE);
	assert_string_equal(err.msg, "expected causal to be an integer in [0, 1], got 2");
	m = make(6, 2, false, 0);
	ln_tensor x;
	tu_tensor_uniform(&x, 3, (int64_t[]){2, 3, 4}, -1, 1);
	assert_int_equal(ln_module_forward(m, &x, &err), LN_ESHAPE);
	assert_string_equal(err.msg,
	                    "MultiheadAttention: expected input of shape {N,T,6}, got {2,3,4}");
	ln_tensor_release(&x);
	tu_tensor_uniform(&x, 2, (int64_t[]){2, 6}, -1, 1);
	assert_int_equal(ln_module_forward(m, &x, &err), LN_ESHAPE);
	ln_tensor_release(&x);
	ln_module_release(m);
}

/* ---- allocation ------------------------------------------------------------------------------ */

static ln_status build(ln_module **out, void *ctx, ln_error *err)
{
	(void)ctx;
	return ln_attention_new(out, NULL, 4, 2, true, 0.2, err);
}

/* Each allocation of the constructor, of the first forward and of the
 * first backward fails in turn: LN_ENOMEM, and nothing is left behind. */
static void test_enomem(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t shape[3] = {2, 3, 4};
	tu_check_enomem(build, NULL, shape, shape, "MultiheadAttention");
}

static void test_steady_state_no_alloc(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_module *m = make(8, 2, true, 0.1);
	ln_tensor x, gy;
	tu_tensor_uniform(&x, 3, (int64_t[]){3, 5, 8}, -1, 1);
	tu_tensor_uniform(&gy, 3, (int64_t[]){3, 5, 8}, -1, 1);
	for (int step = 0; step < 3; step++) {
		uint64_t before = tu_alloc_calls();
		ln_module_zero_grad(m);
		tu_forward_ok(m, &x);
		tu_backward_ok(m, &x, &gy);
		if (step > 0)
			assert_int_equal(tu_alloc_calls(), before);
	}
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
	ln_module_release(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_head_by_hand),
		cmocka_unit_test(test_against_naive),
		cmocka_unit_test(test_large_scores),
		cmocka_unit_test(test_gradcheck),
		cmocka_unit_test(test_causal_mask),
		cmocka_unit_test(test_dropout),
		cmocka_unit_test(test_parameters),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_enomem),
		cmocka_unit_test(test_steady_state_no_alloc),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
