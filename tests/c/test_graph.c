/*
 * test_graph.c -- the multi-input module protocol, the joins (Add, Mul,
 * Concat), Residual and Graph: values worked out by hand, gradient checks
 * over every input and parameter, the gradients of a node that feeds
 * several others, nesting both ways, the errors a graph can meet, saving
 * and loading (bit-identical outputs, hostile wiring), allocation failures
 * and the no-allocation steady state.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "io/save.h"
#include "nn/conv.h"
#include "nn/graph.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "nn/state_dict.h"
#include "testutil.h"

#define SEED 4242u

/* ---- helpers ---------------------------------------------------------------------- */

static void ok(ln_status s, const ln_error *err)
{
	if (s != LN_OK)
		fail_msg("unexpected failure: %s", err->msg);
}

static void expect_fail(ln_status s, ln_status want, const ln_error *err, const char *msg)
{
	if (s != want)
		fail_msg("expected %s, got %s (%s)", ln_status_name(want), ln_status_name(s),
		         s == LN_OK ? "" : err->msg);
	if (!strstr(err->msg, msg))
		fail_msg("message \"%s\" lacks \"%s\"", err->msg, msg);
}

static ln_module *linear(int64_t nin, int64_t nout)
{
	ln_module *m;
	ln_error err;
	ok(ln_linear_new(&m, NULL, nin, nout, true, &err), &err);
	return m;
}

static ln_module *act(const char *name)
{
	ln_module *m;
	ln_error err;
	ok(ln_activation_new(&m, name, 0, &err), &err);
	return m;
}

static ln_module *join(ln_status (*ctor)(ln_module **, ln_error *))
{
	ln_module *m;
	ln_error err;
	ok(ctor(&m, &err), &err);
	return m;
}

static ln_module *concat(int dim)
{
	ln_module *m;
	ln_error err;
	ok(ln_concat_new(&m, dim, &err), &err);
	return m;
}

/* A Sequential of the n modules given; it takes over the references. */
static ln_module *seq_of(int n, ...)
{
	ln_module *s;
	ln_error err;
	ok(ln_sequential_new(&s, &err), &err);
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++) {
		ln_module *c = va_arg(ap, ln_module *);
		ok(ln_sequential_add(s, c, &err), &err);
		ln_module_release(c);
	}
	va_end(ap);
	return s;
}

static ln_module *residual(ln_module *block, ln_module *proj)
{
	ln_module *m;
	ln_error err;
	ok(ln_residual_new(&m, block, proj, &err), &err);
	ln_module_release(block);
	if (proj)
		ln_module_release(proj);
	return m;
}

/* A graph description being written: nodes appended in order. */
typedef struct gb {
	ln_graph_node_desc node[32];
	int in[32][4];
	int n;
} gb;

/* Appends an input node; returns its index. */
static int gb_input(gb *b)
{
	b->node[b->n] = (ln_graph_node_desc){NULL, 0, NULL};
	return b->n++;
}

/* Appends a node applying m to the nodes given (-1 ends the list). */
static int gb_node(gb *b, ln_module *m, ...)
{
	int k = b->n, nin = 0;
	va_list ap;
	va_start(ap, m);
	for (int v = va_arg(ap, int); v >= 0; v = va_arg(ap, int))
		b->in[k][nin++] = v;
	va_end(ap);
	b->node[k] = (ln_graph_node_desc){m, nin, b->in[k]};
	return b->n++;
}

/* The graph of b with these inputs and outputs; the modules' references
 * pass to the graph (the caller's are dropped). */
static ln_status gb_build(gb *b, int ni, const int *in, int no, const int *out, ln_module **g,
                          ln_error *err)
{
	ln_graph_desc d = {b->n, b->node, ni, in, no, out};
	ln_status s = ln_graph_new(g, &d, err);
	for (int k = 0; k < b->n; k++)
		if (b->node[k].m)
			ln_module_release(b->node[k].m);
	return s;
}

static ln_module *gb_graph(gb *b, int ni, const int *in, int no, const int *out)
{
	ln_module *g;
	ln_error err;
	ok(gb_build(b, ni, in, no, out, &g, &err), &err);
	return g;
}

/* Uniform in [-2,2] but at least 0.2 away from 0 (the kink of ReLU). */
static void away_from_kink(ln_tensor *t, int ndim, const int64_t *shape)
{
	tu_tensor_uniform(t, ndim, shape, -2.0f, 2.0f);
	float *d = ln_tensor_data(t);
	for (int64_t i = 0; i < ln_tensor_numel(t); i++)
		if (fabsf(d[i]) < 0.2f)
			d[i] = d[i] < 0 ? d[i] - 0.2f : d[i] + 0.2f;
}

static void expect_values(const ln_tensor *t, const double *want, int n, double tol)
{
	assert_int_equal(ln_tensor_numel(t), n);
	const float *d = ln_tensor_data(t);
	for (int i = 0; i < n; i++)
		if (!(fabs(d[i] - want[i]) <= tol * fmax(1.0, fabs(want[i]))))
			fail_msg("element %d: got %.9g, want %.9g", i, d[i], want[i]);
}

static void expect_close_tensors(const ln_tensor *a, const ln_tensor *b, double tol)
{
	assert_true(ln_tensor_same_shape(a, b));
	const float *x = ln_tensor_data(a), *y = ln_tensor_data(b);
	for (int64_t i = 0; i < ln_tensor_numel(a); i++)
		if (!(fabs(x[i] - y[i]) <= tol * fmax(1.0, fabs(y[i]))))
			fail_msg("element %lld: %.9g vs %.9g", (long long)i, x[i], y[i]);
}

static void expect_same_bits(const ln_tensor *a, const ln_tensor *b)
{
	assert_true(ln_tensor_same_shape(a, b));
	assert_memory_equal(ln_tensor_data(a), ln_tensor_data(b),
	                    (size_t)ln_tensor_numel(a) * sizeof(float));
}

static uint64_t live_bytes(void)
{
	ln_alloc_stats st;
	ln_alloc_get_stats(&st);
	return st.bytes_live;
}

static uint64_t alloc_calls(void)
{
	ln_alloc_stats st;
	ln_alloc_get_stats(&st);
	return st.allocs + st.failures;
}

/* ---- gradient check over every input, every output and every parameter ---------- */

/* Runs m on x: a Graph through ln_graph_forward (any number of outputs),
 * anything else through the multi-input protocol. */
static void run_forward(ln_module *m, int n, const ln_tensor *const *x)
{
	ln_error err;
	if (m->cls == &ln_graph_class)
		ok(ln_graph_forward(m, n, x, &err), &err);
	else
		ok(ln_module_forward_multi(m, n, x, &err), &err);
}

static int noutputs(const ln_module *m)
{
	return m->cls == &ln_graph_class ? ln_graph_noutputs(m) : 1;
}

static const ln_tensor *output_at(const ln_module *m, int k)
{
	return m->cls == &ln_graph_class ? ln_graph_output(m, k) : &m->output;
}

/* The probe: sum over the outputs of sum(r_k .* y_k), in double. */
static double probe(ln_module *m, int n, const ln_tensor *const *x, ln_tensor *r)
{
	run_forward(m, n, x);
	double s = 0;
	for (int k = 0; k < noutputs(m); k++) {
		const float *y = ln_tensor_data(output_at(m, k)), *w = ln_tensor_data(&r[k]);
		for (int64_t i = 0; i < ln_tensor_numel(&r[k]); i++)
			s += (double)w[i] * y[i];
	}
	return s;
}

typedef struct plist { ln_tensor *p[64], *g[64]; int n; } plist;

static int collect(ln_module *owner, int index, void *ctx)
{
	plist *l = ctx;
	assert_true(l->n < 64);
	l->p[l->n] = &owner->param[index];
	l->g[l->n++] = &owner->grad[index];
	return 0;
}

/* Largest relative error between g and the central differences of the
 * probe over every element of v. */
static double check_elems(ln_module *m, int n, const ln_tensor *const *x, ln_tensor *r,
                          ln_tensor *v, const ln_tensor *g, double eps)
{
	float *d = ln_tensor_data(v);
	const float *gd = ln_tensor_data(g);
	double worst = 0;
	for (int64_t i = 0; i < ln_tensor_numel(v); i++) {
		float saved = d[i];
		d[i] = (float)(saved + eps);
		double hi = probe(m, n, x, r);
		d[i] = (float)(saved - eps);
		double lo = probe(m, n, x, r);
		d[i] = saved;
		double step = (double)(float)(saved + eps) - (double)(float)(saved - eps);
		double num = (hi - lo) / step;
		worst = fmax(worst, fabs(gd[i] - num) / fmax(fmax(fabs(gd[i]), fabs(num)), 1e-2));
	}
	return worst;
}

/* The largest relative error over every input and every parameter of m's
 * tree, with a fixed random weighting of every output. */
static double gradcheck(ln_module *m, int n, const ln_tensor *const *x, double eps)
{
	ln_error err;
	ln_tensor r[8], gx[8], gp[64];
	run_forward(m, n, x);
	int no = noutputs(m);
	assert_true(no <= 8 && n <= 8);
	for (int k = 0; k < no; k++)
		tu_tensor_uniform(&r[k], output_at(m, k)->ndim, output_at(m, k)->shape, -1, 1);
	ln_module_zero_grad(m);
	if (m->cls == &ln_graph_class) {
		const ln_tensor *gy[8];
		for (int k = 0; k < no; k++)
			gy[k] = &r[k];
		ok(ln_graph_backward(m, n, x, no, gy, &err), &err);
	} else {
		ok(ln_module_backward_multi(m, n, x, &r[0], &err), &err);
	}
	for (int i = 0; i < n; i++) {
		gx[i] = LN_TENSOR_EMPTY;
		ok(ln_tensor_clone(&gx[i], ln_module_grad_input_at(m, i), &err), &err);
	}
	plist l = {.n = 0};
	ln_module_visit_params(m, collect, &l);
	for (int i = 0; i < l.n; i++) {
		gp[i] = LN_TENSOR_EMPTY;
		ok(ln_tensor_clone(&gp[i], l.g[i], &err), &err);
	}
	double worst = 0;
	for (int i = 0; i < n; i++)
		worst = fmax(worst, check_elems(m, n, x, r, (ln_tensor *)x[i], &gx[i], eps));
	for (int i = 0; i < l.n; i++)
		worst = fmax(worst, check_elems(m, n, x, r, l.p[i], &gp[i], eps));
	for (int i = 0; i < n; i++)
		ln_tensor_release(&gx[i]);
	for (int i = 0; i < l.n; i++)
		ln_tensor_release(&gp[i]);
	for (int k = 0; k < no; k++)
		ln_tensor_release(&r[k]);
	return worst;
}

static void expect_gradcheck(ln_module *m, int n, const ln_tensor *const *x, double tol)
{
	double e = gradcheck(m, n, x, 1e-2);
	if (!(e < tol))
		fail_msg("%s: gradcheck relative error %g >= %g [seed %u]", m->cls->name, e, tol, SEED);
}

static void release_all(int n, ln_tensor *t)
{
	for (int i = 0; i < n; i++)
		ln_tensor_release(&t[i]);
}

/* ---- the protocol ---------------------------------------------------------------------- */

/* A one-input module through the multi-input entry points, and a
 * multi-input one through the one-input ones. */
static void test_protocol_both_ways(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x, gy, x2;
	tu_tensor_uniform(&x, 2, (int64_t[]){3, 4}, -1, 1);
	tu_tensor_uniform(&x2, 2, (int64_t[]){3, 4}, -1, 1);
	tu_tensor_uniform(&gy, 2, (int64_t[]){3, 4}, -1, 1);
	const ln_tensor *one[] = {&x}, *two[] = {&x, &x2};

	ln_module *tanh_ = act("Tanh");
	assert_int_equal(tanh_->arity, 1);
	ok(ln_module_forward_multi(tanh_, 1, one, &err), &err);
	ok(ln_module_backward_multi(tanh_, 1, one, &gy, &err), &err);
	assert_ptr_equal(ln_module_grad_input_at(tanh_, 0), &tanh_->grad_input);
	expect_fail(ln_module_forward_multi(tanh_, 2, two, &err), LN_EARG, &err,
	            "Tanh: expected 1 input, got 2");

	/* Add with one input is the identity; its grad_input is input 1's */
	ln_module *add = join(ln_add_new);
	assert_int_equal(add->arity, LN_ARITY_ANY);
	ok(ln_module_forward(add, &x, &err), &err);
	expect_same_bits(&add->output, &x);
	ok(ln_module_backward(add, &x, &gy, &err), &err);
	expect_same_bits(&add->grad_input, &gy);
	assert_ptr_equal(add->grad_input.storage, add->inputs[0].grad.storage);
	expect_fail(ln_module_forward_multi(add, 0, NULL, &err), LN_EARG, &err,
	            "Add: expected at least 1 input, got 0");

	/* a backward must see the inputs of its forward, by count and shape */
	ok(ln_module_forward_multi(add, 2, two, &err), &err);
	expect_fail(ln_module_backward_multi(add, 1, one, &gy, &err), LN_EARG, &err,
	            "Add:backward: expected the 2 inputs of the last forward, got 1");
	ln_tensor wide;
	tu_tensor_uniform(&wide, 2, (int64_t[]){3, 5}, -1, 1);
	const ln_tensor *bad[] = {&x, &wide};
	expect_fail(ln_module_backward_multi(add, 2, bad, &gy, &err), LN_ESHAPE, &err,
	            "expected input 2 of the last forward, of shape {3,4}, got {3,5}");
	expect_fail(ln_module_forward_multi(add, 2, bad, &err), LN_ESHAPE, &err,
	            "Add: expected inputs of one shape, got {3,4} (input 1) and {3,5} (input 2)");
	expect_fail(ln_module_backward_multi(add, 2, two, &gy, &err), LN_ESTATE, &err,
	            "backward called before forward");
	ln_tensor empty = LN_TENSOR_EMPTY;
	const ln_tensor *holes[] = {&x, &empty};
	expect_fail(ln_module_forward_multi(add, 2, holes, &err), LN_EARG, &err,
	            "expected a non-empty input 2 tensor");

	ln_module *mul = join(ln_mul_new);
	expect_fail(ln_module_forward(mul, &x, &err), LN_EARG, &err, "Mul: expected 2 inputs, got 1");

	ln_module_release(tanh_);
	ln_module_release(add);
	ln_module_release(mul);
	ln_tensor *all[] = {&x, &gy, &x2, &wide};
	for (int i = 0; i < 4; i++)
		ln_tensor_release(all[i]);
}

/* ---- joins ---------------------------------------------------------------------------------- */

static void test_add(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x[3], gy;
	tu_tensor(&x[0], 2, (int64_t[]){2, 2}, (const float[]){1, 2, 3, 4});
	tu_tensor(&x[1], 2, (int64_t[]){2, 2}, (const float[]){10, 20, 30, 40});
	tu_tensor(&x[2], 2, (int64_t[]){2, 2}, (const float[]){-1, 0.5f, 0, 100});
	tu_tensor(&gy, 2, (int64_t[]){2, 2}, (const float[]){1, -2, 3, -4});
	const ln_tensor *xs[] = {&x[0], &x[1], &x[2]};
	ln_module *m = join(ln_add_new);
	ok(ln_module_forward_multi(m, 3, xs, &err), &err);
	expect_values(&m->output, (const double[]){10, 22.5, 33, 144}, 4, 0);
	ok(ln_module_backward_multi(m, 3, xs, &gy, &err), &err);
	for (int i = 0; i < 3; i++) {
		expect_same_bits(ln_module_grad_input_at(m, i), &gy);
		assert_ptr_not_equal(ln_module_grad_input_at(m, i)->storage, gy.storage);
	}
	/* a second backward with another gradient: every input's gradient
	 * follows (inputs 2.. are views of input 1's buffer, made anew) */
	float *gd = ln_tensor_data(&gy);
	for (int i = 0; i < 4; i++)
		gd[i] = -3.0f * gd[i] + 0.25f;
	ok(ln_module_backward_multi(m, 3, xs, &gy, &err), &err);
	for (int i = 0; i < 3; i++)
		expect_same_bits(ln_module_grad_input_at(m, i), &gy);
	release_all(3, x);
	for (int i = 0; i < 3; i++)
		tu_tensor_uniform(&x[i], 3, (int64_t[]){2, 3, 2}, -1, 1);
	expect_gradcheck(m, 3, xs, 1e-2);
	ln_module_release(m);
	release_all(3, x);
	ln_tensor_release(&gy);
}

/* Add's forward against the sum written out in input order, bit for bit:
 * one input (a copy), two (one pass), three; with NaN, infinities, zeros
 * of both signs (-0 + -0 is -0, -0 + 0 is 0) and an odd length. */
static void test_add_bits(void **state)
{
	ln_error err;
	enum { N = 13 };
	const float a[N] = {1, -0.0f, -0.0f, 0.0f, NAN, INFINITY, -INFINITY, 1e30f, 3, -2.5f, 7, 1e-30f, -1};
	const float b[N] = {2, -0.0f, 0.0f, -0.0f, 1, -INFINITY, 5, 1e30f, NAN, 2.5f, -7, -1e-30f, 0.5f};
	const float c[N] = {-3, -0.0f, 0.0f, 1, 2, 3, 4, -1e30f, 5, 6, 0.0f, 8, 9};
	ln_tensor x[3];
	tu_tensor(&x[0], 2, (int64_t[]){1, N}, a);
	tu_tensor(&x[1], 2, (int64_t[]){1, N}, b);
	tu_tensor(&x[2], 2, (int64_t[]){1, N}, c);
	const ln_tensor *xs[] = {&x[0], &x[1], &x[2]};
	for (int n = 1; n <= 3; n++) {
		ln_module *m = join(ln_add_new);
		ok(ln_module_forward_multi(m, n, xs, &err), &err);
		float want[N];
		for (int j = 0; j < N; j++) {
			want[j] = a[j];
			if (n > 1)
				want[j] = want[j] + b[j];
			if (n > 2)
				want[j] = want[j] + c[j];
		}
		const float *y = ln_tensor_data(&m->output);
		for (int j = 0; j < N; j++)
			if (!(isnan(y[j]) && isnan(want[j])) && memcmp(&y[j], &want[j], sizeof y[j]))
				fail_msg("Add of %d inputs, element %d: got %g, want %g", n, j, y[j], want[j]);
		ln_module_release(m);
	}
	release_all(3, x);
}

static void test_mul(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x[3], gy;
	tu_tensor(&x[0], 2, (int64_t[]){1, 3}, (const float[]){1, -2, 3});
	tu_tensor(&x[1], 2, (int64_t[]){1, 3}, (const float[]){4, 5, -6});
	tu_tensor(&x[2], 2, (int64_t[]){1, 3}, (const float[]){1, 1, 1});
	tu_tensor(&gy, 2, (int64_t[]){1, 3}, (const float[]){1, 2, 3});
	const ln_tensor *xs[] = {&x[0], &x[1], &x[2]};
	ln_module *m = join(ln_mul_new);
	ok(ln_module_forward_multi(m, 2, xs, &err), &err);
	expect_values(&m->output, (const double[]){4, -10, -18}, 3, 0);
	ok(ln_module_backward_multi(m, 2, xs, &gy, &err), &err);
	expect_values(ln_module_grad_input_at(m, 0), (const double[]){4, 10, -18}, 3, 0);
	expect_values(ln_module_grad_input_at(m, 1), (const double[]){1, -4, 9}, 3, 0);
	expect_fail(ln_module_forward_multi(m, 3, xs, &err), LN_EARG, &err,
	            "Mul: expected 2 inputs, got 3");
	release_all(3, x);
	for (int i = 0; i < 2; i++)
		tu_tensor_uniform(&x[i], 2, (int64_t[]){3, 4}, -2, 2);
	tu_tensor_uniform(&x[2], 1, (int64_t[]){1}, 0, 1);
	expect_gradcheck(m, 2, xs, 1e-2);
	ln_module_release(m);
	release_all(3, x);
	ln_tensor_release(&gy);
}

static void test_concat(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor a, b, gy;
	tu_tensor(&a, 2, (int64_t[]){2, 1}, (const float[]){1, 2});
	tu_tensor(&b, 2, (int64_t[]){2, 2}, (const float[]){3, 4, 5, 6});
	const ln_tensor *xs[] = {&a, &b};
	/* dim 2 and dim -1 are the same here */
	for (int dim = -1; dim <= 2; dim += 3) {
		ln_module *m = concat(dim);
		ok(ln_module_forward_multi(m, 2, xs, &err), &err);
		assert_int_equal(m->output.shape[1], 3);
		expect_values(&m->output, (const double[]){1, 3, 4, 2, 5, 6}, 6, 0);
		tu_tensor(&gy, 2, (int64_t[]){2, 3}, (const float[]){10, 20, 30, 40, 50, 60});
		ok(ln_module_backward_multi(m, 2, xs, &gy, &err), &err);
		expect_values(ln_module_grad_input_at(m, 0), (const double[]){10, 40}, 2, 0);
		expect_values(ln_module_grad_input_at(m, 1), (const double[]){20, 30, 50, 60}, 4, 0);
		ln_tensor_release(&gy);
		/* along dim 1 the sizes of dim 2 differ */
		ln_module *rows = concat(1);
		expect_fail(ln_module_forward_multi(rows, 2, xs, &err), LN_ESHAPE, &err,
		            "Concat: inputs do not join along dim 1: {2,1} (input 1) and {2,2} "
		            "(input 2) differ in another dimension");
		ln_module_release(rows);
		ln_module_release(m);
	}
	ln_module *far = concat(3);
	expect_fail(ln_module_forward_multi(far, 2, xs, &err), LN_ESHAPE, &err,
	            "dim 3 does not exist in input 1 of shape {2,1} (expected 1..2 or -2..-1)");
	ln_module_release(far);
	ln_module *m;
	expect_fail(ln_concat_new(&m, 0, &err), LN_ERANGE, &err,
	            "expected dim to be a non-zero integer in [-8, 8], got 0");
	ln_tensor_release(&a);
	ln_tensor_release(&b);

	/* channels of images, three inputs */
	ln_tensor x[3];
	for (int i = 0; i < 3; i++)
		tu_tensor_uniform(&x[i], 4, (int64_t[]){2, i + 1, 3, 2}, -1, 1);
	const ln_tensor *xs3[] = {&x[0], &x[1], &x[2]};
	m = concat(2);
	ok(ln_module_forward_multi(m, 3, xs3, &err), &err);
	assert_int_equal(m->output.shape[1], 6);
	/* element (n=1, c=2, i=2, j=1) is input 2's channel 1 */
	const float *y = ln_tensor_data(&m->output);
	assert_true(y[1 * 36 + 2 * 6 + 2 * 2 + 1] == ln_tensor_data(&x[1])[1 * 12 + 1 * 6 + 2 * 2 + 1]);
	expect_gradcheck(m, 3, xs3, 1e-2);
	ln_module_release(m);
	release_all(3, x);
}

/* ---- Residual ------------------------------------------------------------------------------ */

static void test_residual(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x, gy;
	away_from_kink(&x, 2, (int64_t[]){3, 4});
	const ln_tensor *xs[] = {&x};

	/* y = x + block(x), by hand through the block alone */
	ln_module *block = seq_of(3, linear(4, 6), act("ReLU"), linear(6, 4));
	ln_module_retain(block);
	ln_module *r = residual(block, NULL);
	ok(ln_module_forward(r, &x, &err), &err);
	ln_tensor y = LN_TENSOR_EMPTY;
	ok(ln_tensor_clone(&y, &r->output, &err), &err);
	ok(ln_module_forward(block, &x, &err), &err);
	const float *b = ln_tensor_data(&block->output), *xd = ln_tensor_data(&x);
	for (int i = 0; i < 12; i++)
		assert_true(ln_tensor_data(&y)[i] == b[i] + xd[i]);
	/* dL/dx = gy + the block's dL/dx */
	tu_tensor_uniform(&gy, 2, (int64_t[]){3, 4}, -1, 1);
	ok(ln_module_forward(r, &x, &err), &err);
	ok(ln_module_backward(r, &x, &gy, &err), &err);
	for (int i = 0; i < 12; i++)
		assert_true(ln_tensor_data(&r->grad_input)[i] ==
		            ln_tensor_data(&block->grad_input)[i] + ln_tensor_data(&gy)[i]);
	expect_gradcheck(r, 1, xs, 1e-2);
	ln_module_release(block);
	ln_module_release(r);

	/* a block that changes the width needs a projection */
	r = residual(seq_of(2, linear(4, 6), act("Tanh")), NULL);
	expect_fail(ln_module_forward(r, &x, &err), LN_ESHAPE, &err,
	            "Residual: the block's output {3,6} differs from its input {3,4}: give a "
	            "projection for the shortcut, Residual(block, proj)");
	ln_module_release(r);
	r = residual(seq_of(2, linear(4, 6), act("Tanh")), linear(4, 6));
	ok(ln_module_forward(r, &x, &err), &err);
	assert_int_equal(r->output.shape[1], 6);
	expect_gradcheck(r, 1, xs, 1e-2);
	/* children: block, proj, named so */
	assert_int_equal(r->nchildren, 2);
	ln_module_release(r);
	r = residual(linear(4, 6), linear(4, 5));
	expect_fail(ln_module_forward(r, &x, &err), LN_ESHAPE, &err,
	            "the block's output {3,6} and the projection's output {3,5} differ");
	ln_module_release(r);

	/* a child's error names where it happened */
	r = residual(seq_of(1, linear(5, 5)), NULL);
	expect_fail(ln_module_forward(r, &x, &err), LN_ESHAPE, &err,
	            "Residual: block (Sequential): layer 1 (Linear): expected input of shape "
	            "{N,5}, got {3,4}");
	ln_module_release(r);

	/* inside a Sequential, with a residual inside its block */
	ln_module *inner = residual(seq_of(2, linear(4, 4), act("Tanh")), NULL);
	ln_module *s = seq_of(3, linear(4, 4), residual(seq_of(2, inner, linear(4, 4)), NULL),
	                      act("Sigmoid"));
	expect_gradcheck(s, 1, xs, 1e-2);
	ln_module_release(s);

	/* bad blocks */
	ln_module *mul = join(ln_mul_new), *lin = linear(4, 4);
	expect_fail(ln_residual_new(&r, mul, NULL, &err), LN_EARG, &err,
	            "the block (Mul) takes 2 inputs; a Residual gives it one");
	expect_fail(ln_residual_new(&r, lin, lin, &err), LN_EARG, &err,
	            "the block and the projection share a module");
	ln_module_release(mul);
	ln_module_release(lin);
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
	ln_tensor_release(&y);
}

/* ---- graphs -------------------------------------------------------------------------------- */

/* A chain as a graph gives the bits a Sequential of the same modules
 * gives, parameter gradients too. */
static void test_chain_equals_sequential(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x, gy;
	away_from_kink(&x, 2, (int64_t[]){5, 3});
	tu_tensor_uniform(&gy, 2, (int64_t[]){5, 2}, -1, 1);
	ln_module *l1 = linear(3, 4), *relu = act("ReLU"), *l2 = linear(4, 2);
	ln_module *s = seq_of(3, l1, relu, l2);
	gb b = {.n = 0};
	int in = gb_input(&b);
	int h = gb_node(&b, s->children[0], in, -1);
	h = gb_node(&b, s->children[1], h, -1);
	h = gb_node(&b, s->children[2], h, -1);
	for (int i = 0; i < 3; i++)
		ln_module_retain(s->children[i]);
	ln_module *g = gb_graph(&b, 1, &in, 1, &h);
	assert_int_equal(g->nchildren, 3);
	assert_int_equal(g->arity, 1);

	ok(ln_module_forward(s, &x, &err), &err);
	ln_tensor ys = LN_TENSOR_EMPTY;
	ok(ln_tensor_clone(&ys, &s->output, &err), &err);
	ln_module_zero_grad(s);
	ok(ln_module_backward(s, &x, &gy, &err), &err);
	ln_tensor gs = LN_TENSOR_EMPTY, gw = LN_TENSOR_EMPTY;
	ok(ln_tensor_clone(&gs, &s->grad_input, &err), &err);
	ok(ln_tensor_clone(&gw, &s->children[0]->grad[0], &err), &err);

	ln_module_zero_grad(g);
	ok(ln_module_forward(g, &x, &err), &err);
	expect_same_bits(&g->output, &ys);
	ok(ln_module_backward(g, &x, &gy, &err), &err);
	expect_same_bits(&g->grad_input, &gs);
	expect_same_bits(&g->children[0]->grad[0], &gw);
	/* the node's delta: dL/d(output of node 1) is the ReLU's grad_input */
	expect_same_bits(ln_graph_node_grad(g, 1), &s->children[1]->grad_input);
	expect_gradcheck(g, 1, (const ln_tensor *[]){&x}, 1e-2);

	ln_module_release(g);
	ln_module_release(s);
	ln_tensor *all[] = {&x, &gy, &ys, &gs, &gw};
	for (int i = 0; i < 5; i++)
		ln_tensor_release(all[i]);
}

/* x -> a = Linear(x) -> {b1 = Tanh(a), b2 = Linear(a)} -> Add(b1, b2):
 * node a feeds two others, and its gradient is the sum of theirs.  The
 * input gradient equals the sum of what each branch alone gives. */
static void test_diamond(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x, gy;
	tu_tensor_uniform(&x, 2, (int64_t[]){4, 3}, -1, 1);
	tu_tensor_uniform(&gy, 2, (int64_t[]){4, 5}, -1, 1);
	ln_module *la = linear(3, 5), *tanh_ = act("Tanh"), *lb = linear(5, 5);
	ln_module *add = join(ln_add_new);
	ln_module_retain(la);
	ln_module_retain(tanh_);
	ln_module_retain(lb);
	gb b = {.n = 0};
	int in = gb_input(&b);
	int a = gb_node(&b, la, in, -1);
	int b1 = gb_node(&b, tanh_, a, -1);
	int b2 = gb_node(&b, lb, a, -1);
	int y = gb_node(&b, add, b1, b2, -1);
	ln_module *g = gb_graph(&b, 1, &in, 1, &y);

	ln_module_zero_grad(g);
	ok(ln_module_forward(g, &x, &err), &err);
	ok(ln_module_backward(g, &x, &gy, &err), &err);
	ln_tensor gx = LN_TENSOR_EMPTY, gwa = LN_TENSOR_EMPTY;
	ok(ln_tensor_clone(&gx, &g->grad_input, &err), &err);
	ok(ln_tensor_clone(&gwa, &la->grad[0], &err), &err);
	/* the node's gradient is the sum of the two it feeds */
	const ln_tensor *ga = ln_graph_node_grad(g, a);
	const float *g1 = ln_tensor_data(&tanh_->grad_input), *g2 = ln_tensor_data(&lb->grad_input);
	for (int i = 0; i < 20; i++)
		assert_true(ln_tensor_data(ga)[i] == g1[i] + g2[i]);

	/* each branch alone, the same modules, the same gy (Add passes it on) */
	ln_tensor gsum = LN_TENSOR_EMPTY, wsum = LN_TENSOR_EMPTY;
	ln_module *branch[2] = {tanh_, lb};
	for (int k = 0; k < 2; k++) {
		gb bb = {.n = 0};
		int bin = gb_input(&bb);
		int ba = gb_node(&bb, la, bin, -1);
		int bo = gb_node(&bb, branch[k], ba, -1);
		ln_module_retain(la);
		ln_module_retain(branch[k]);
		ln_module *gk = gb_graph(&bb, 1, &bin, 1, &bo);
		ln_module_zero_grad(gk);
		ok(ln_module_forward(gk, &x, &err), &err);
		ok(ln_module_backward(gk, &x, &gy, &err), &err);
		if (k == 0) {
			ok(ln_tensor_clone(&gsum, &gk->grad_input, &err), &err);
			ok(ln_tensor_clone(&wsum, &la->grad[0], &err), &err);
		} else {
			ok(ln_tensor_binary_(&gsum, LN_ADD, &gk->grad_input, &err), &err);
			ok(ln_tensor_binary_(&wsum, LN_ADD, &la->grad[0], &err), &err);
		}
		ln_module_release(gk);
	}
	expect_close_tensors(&gx, &gsum, 1e-5);
	expect_close_tensors(&gwa, &wsum, 1e-5);
	expect_gradcheck(g, 1, (const ln_tensor *[]){&x}, 1e-2);

	ln_module_release(g);
	ln_module_release(la);
	ln_module_release(tanh_);
	ln_module_release(lb);
	ln_tensor *all[] = {&x, &gy, &gx, &gwa, &gsum, &wsum};
	for (int i = 0; i < 6; i++)
		ln_tensor_release(all[i]);
}

/* Two inputs and two outputs, one output also read by another node, and a
 * node read twice by one join:
 *   h1 = Linear(x1), h2 = Linear(x2), s = Add(h1, h2),
 *   o1 = Tanh(s), o2 = Mul(s, s) + ... as Mul(s, h1) */
static ln_module *two_in_two_out(void)
{
	gb b = {.n = 0};
	int x1 = gb_input(&b), x2 = gb_input(&b);
	int h1 = gb_node(&b, linear(3, 4), x1, -1);
	int h2 = gb_node(&b, linear(2, 4), x2, -1);
	int s = gb_node(&b, join(ln_add_new), h1, h2, h2, -1);
	int o1 = gb_node(&b, act("Tanh"), s, -1);
	int o2 = gb_node(&b, join(ln_mul_new), s, h1, -1);
	int cat = gb_node(&b, concat(-1), o1, o2, -1);
	return gb_graph(&b, 2, (int[]){x1, x2}, 2, (int[]){cat, s});
}

static void test_two_inputs_two_outputs(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x1, x2;
	tu_tensor_uniform(&x1, 2, (int64_t[]){3, 3}, -1, 1);
	tu_tensor_uniform(&x2, 2, (int64_t[]){3, 2}, -1, 1);
	const ln_tensor *xs[] = {&x1, &x2};
	ln_module *g = two_in_two_out();
	assert_int_equal(g->arity, 2);
	assert_int_equal(ln_graph_noutputs(g), 2);
	ok(ln_graph_forward(g, 2, xs, &err), &err);
	/* output 2 is s = h1 + 2 h2, output 1 joins tanh(s) and s * h1 */
	ln_module *l1 = g->children[0], *l2 = g->children[1];
	const ln_tensor *o1 = ln_graph_output(g, 0), *o2 = ln_graph_output(g, 1);
	assert_int_equal(o1->shape[1], 8);
	assert_int_equal(o2->shape[1], 4);
	for (int n = 0; n < 3; n++)
		for (int j = 0; j < 4; j++) {
			double h1 = ln_tensor_data(&l1->param[1])[j], h2 = ln_tensor_data(&l2->param[1])[j];
			for (int i = 0; i < 3; i++)
				h1 += (double)ln_tensor_data(&l1->param[0])[j * 3 + i] * ln_tensor_data(&x1)[n * 3 + i];
			for (int i = 0; i < 2; i++)
				h2 += (double)ln_tensor_data(&l2->param[0])[j * 2 + i] * ln_tensor_data(&x2)[n * 2 + i];
			double s = h1 + 2 * h2;
			assert_true(fabs(ln_tensor_data(o2)[n * 4 + j] - s) < 1e-5);
			assert_true(fabs(ln_tensor_data(o1)[n * 8 + j] - tanh(s)) < 1e-5);
			assert_true(fabs(ln_tensor_data(o1)[n * 8 + 4 + j] - s * h1) < 1e-5);
		}
	/* as a layer, or backward with one gradient: errors that say why */
	expect_fail(ln_module_forward_multi(g, 2, xs, &err), LN_EARG, &err,
	            "Graph: has 2 outputs; as a layer a Graph must have one");
	ok(ln_graph_forward(g, 2, xs, &err), &err);
	expect_fail(ln_graph_backward(g, 2, xs, 1, (const ln_tensor *[]){o1}, &err), LN_EARG, &err,
	            "expected 2 gradients (one per output), got 1");
	expect_fail(ln_graph_backward(g, 2, xs, 2, (const ln_tensor *[]){o1, o1}, &err), LN_ESHAPE,
	            &err, "expected gradient 2 of shape {3,4}, got {3,8}");
	expect_fail(ln_module_forward(g, &x1, &err), LN_EARG, &err, "Graph: expected 2 inputs, got 1");
	expect_gradcheck(g, 2, xs, 1e-2);
	ln_module_release(g);
	ln_tensor_release(&x1);
	ln_tensor_release(&x2);
}

/* A graph inside a Sequential, a Sequential (and a Residual) inside a
 * graph, a graph at a node of a graph. */
static void test_nesting(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x;
	away_from_kink(&x, 2, (int64_t[]){3, 4});
	const ln_tensor *xs[] = {&x};

	gb b = {.n = 0};
	int in = gb_input(&b);
	int a = gb_node(&b, seq_of(2, linear(4, 4), act("Tanh")), in, -1);
	int r = gb_node(&b, residual(seq_of(2, linear(4, 4), act("Sigmoid")), NULL), a, -1);
	int y = gb_node(&b, join(ln_add_new), a, r, in, -1);
	ln_module *inner = gb_graph(&b, 1, &in, 1, &y);
	ln_module *s = seq_of(3, linear(4, 4), inner, linear(4, 2));
	expect_gradcheck(s, 1, xs, 1e-2);

	/* the Sequential's output equals running its layers one by one */
	ok(ln_module_forward(s, &x, &err), &err);
	ln_module *l0 = s->children[0], *g = s->children[1], *l2 = s->children[2];
	ln_tensor y0 = LN_TENSOR_EMPTY;
	ok(ln_module_forward(l0, &x, &err), &err);
	ok(ln_module_forward(g, &l0->output, &err), &err);
	ok(ln_module_forward(l2, &g->output, &err), &err);
	ok(ln_tensor_clone(&y0, &l2->output, &err), &err);
	ok(ln_module_forward(s, &x, &err), &err);
	expect_same_bits(&s->output, &y0);

	/* a graph at a node of another graph, with two inputs */
	gb c = {.n = 0};
	int p = gb_input(&c), q = gb_input(&c);
	int pq = gb_node(&c, join(ln_mul_new), p, q, -1);
	ln_module *sub = gb_graph(&c, 2, (int[]){p, q}, 1, &pq);
	gb d = {.n = 0};
	int din = gb_input(&d);
	int u = gb_node(&d, linear(4, 3), din, -1);
	int v = gb_node(&d, linear(4, 3), din, -1);
	int w = gb_node(&d, sub, u, v, -1);
	ln_module *outer = gb_graph(&d, 1, &din, 1, &w);
	expect_gradcheck(outer, 1, xs, 1e-2);
	ln_module_release(outer);
	ln_module_release(s);
	ln_tensor_release(&x);
	ln_tensor_release(&y0);
}

/* Every error a description can hold, each naming what is wrong. */
static void test_graph_errors(void **state)
{
	ln_error err;
	ln_module *g;
	gb b;

	/* a module at two nodes */
	b = (gb){.n = 0};
	ln_module *lin = linear(2, 2);
	int in = gb_input(&b);
	int h1 = gb_node(&b, lin, in, -1);
	ln_module_retain(lin);
	int h2 = gb_node(&b, lin, h1, -1);
	expect_fail(gb_build(&b, 1, &in, 1, &h2, &g, &err), LN_EARG, &err,
	            "one Linear module sits at two nodes (node 1 (Linear) and node 2 (Linear)); a "
	            "module keeps one output buffer, so it can sit at one node only: make another");
	/* ... or inside another node's module */
	b = (gb){.n = 0};
	lin = linear(2, 2);
	ln_module_retain(lin);
	in = gb_input(&b);
	h1 = gb_node(&b, seq_of(2, lin, act("Tanh")), in, -1);
	ln_module_retain(lin);
	h2 = gb_node(&b, lin, h1, -1);
	expect_fail(gb_build(&b, 1, &in, 1, &h2, &g, &err), LN_EARG, &err,
	            "node 1 (Sequential) and node 2 (Linear) share a Linear module");
	ln_module_release(lin);

	/* an output that depends on no input of the graph */
	b = (gb){.n = 0};
	int x1 = gb_input(&b), x2 = gb_input(&b);
	h1 = gb_node(&b, linear(2, 2), x1, -1);
	h2 = gb_node(&b, linear(2, 2), x2, -1);
	expect_fail(gb_build(&b, 1, &x1, 2, (int[]){h1, h2}, &g, &err), LN_EARG, &err,
	            "output 2 depends on no input of the graph");
	/* ... on one input given and one not */
	b = (gb){.n = 0};
	x1 = gb_input(&b);
	x2 = gb_input(&b);
	int s = gb_node(&b, join(ln_add_new), x1, x2, -1);
	expect_fail(gb_build(&b, 1, &x1, 1, &s, &g, &err), LN_EARG, &err,
	            "output 1 depends on an Input that is not among the graph's inputs");
	/* an input that no output uses */
	b = (gb){.n = 0};
	x1 = gb_input(&b);
	x2 = gb_input(&b);
	h1 = gb_node(&b, linear(2, 2), x1, -1);
	expect_fail(gb_build(&b, 2, (int[]){x1, x2}, 1, &h1, &g, &err), LN_EARG, &err,
	            "input 2 is used by no output");
	/* a node no output uses */
	b = (gb){.n = 0};
	x1 = gb_input(&b);
	h1 = gb_node(&b, linear(2, 2), x1, -1);
	h2 = gb_node(&b, linear(2, 2), x1, -1);
	expect_fail(gb_build(&b, 1, &x1, 1, &h1, &g, &err), LN_EARG, &err,
	            "node 2 (Linear) is used by no output");
	/* a node given more inputs than its module takes, or one from the future */
	b = (gb){.n = 0};
	x1 = gb_input(&b);
	h1 = gb_node(&b, join(ln_mul_new), x1, x1, x1, -1);
	expect_fail(gb_build(&b, 1, &x1, 1, &h1, &g, &err), LN_EARG, &err,
	            "node 1 (Mul) is given 3 inputs, but its module takes 2");
	b = (gb){.n = 0};
	x1 = gb_input(&b);
	h1 = gb_node(&b, linear(2, 2), 2, -1);
	h2 = gb_node(&b, linear(2, 2), x1, -1);
	expect_fail(gb_build(&b, 1, &x1, 1, &h2, &g, &err), LN_EARG, &err,
	            "node 1 (Linear) reads node index 2, which does not come before it");
	/* inputs that are not Inputs, given twice */
	b = (gb){.n = 0};
	x1 = gb_input(&b);
	h1 = gb_node(&b, linear(2, 2), x1, -1);
	expect_fail(gb_build(&b, 2, (int[]){x1, h1}, 1, &h1, &g, &err), LN_EARG, &err,
	            "input 2 is node 1 (Linear), not an Input");
	b = (gb){.n = 0};
	x1 = gb_input(&b);
	h1 = gb_node(&b, linear(2, 2), x1, -1);
	expect_fail(gb_build(&b, 2, (int[]){x1, x1}, 1, &h1, &g, &err), LN_EARG, &err,
	            "inputs 1 and 2 are the same Input");
	/* a graph with two outputs at a node */
	ln_module *two = two_in_two_out();
	b = (gb){.n = 0};
	x1 = gb_input(&b);
	x2 = gb_input(&b);
	h1 = gb_node(&b, two, x1, x2, -1);
	expect_fail(gb_build(&b, 2, (int[]){x1, x2}, 1, &h1, &g, &err), LN_EARG, &err,
	            "node 1 (Graph) has 2 outputs; the module at a node must have one");
}

/* Shapes that do not join name the node, the nodes it reads and their
 * shapes; a failing node deep in a Sequential says where. */
static void test_graph_shape_errors(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	gb b = {.n = 0};
	int in = gb_input(&b);
	int h1 = gb_node(&b, linear(3, 4), in, -1);
	int h2 = gb_node(&b, linear(3, 5), in, -1);
	int y = gb_node(&b, join(ln_add_new), h1, h2, -1);
	ln_module *g = gb_graph(&b, 1, &in, 1, &y);
	ln_tensor x;
	tu_tensor_uniform(&x, 2, (int64_t[]){2, 3}, -1, 1);
	expect_fail(ln_module_forward(g, &x, &err), LN_ESHAPE, &err,
	            "Graph: node 3 (Add) on node 1 (Linear) {2,4} and node 2 (Linear) {2,5}: "
	            "expected inputs of one shape, got {2,4} (input 1) and {2,5} (input 2)");
	ln_module_release(g);

	b = (gb){.n = 0};
	in = gb_input(&b);
	h1 = gb_node(&b, seq_of(2, act("Tanh"), linear(4, 2)), in, -1);
	g = gb_graph(&b, 1, &in, 1, &h1);
	expect_fail(ln_module_forward(g, &x, &err), LN_ESHAPE, &err,
	            "Graph: node 1 (Sequential) on input 1 {2,3}: layer 2 (Linear): expected input "
	            "of shape {N,4}, got {2,3}");
	ln_module_release(g);
	ln_tensor_release(&x);
}

/* Saving and loading: the same outputs to the bit, the same structure;
 * a description of the wiring by name in the file. */
static void save_load_same(ln_module *m, int n, const ln_tensor *const *x)
{
	ln_error err;
	char path[] = "/tmp/lunet_test_graph_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	ok(ln_save_module(path, m, &err), &err);
	ln_module *l;
	ok(ln_load_module(path, &l, &err), &err);
	remove(path);
	assert_ptr_equal(l->cls, m->cls);
	assert_int_equal(l->nchildren, m->nchildren);
	assert_int_equal(l->arity, m->arity);
	ln_module_set_training(m, false);
	ln_module_set_training(l, false);
	run_forward(m, n, x);
	run_forward(l, n, x);
	for (int k = 0; k < noutputs(m); k++)
		expect_same_bits(output_at(l, k), output_at(m, k));
	if (m->cls == &ln_graph_class)
		for (int k = 0; k < ln_graph_nnodes(m); k++) {
			ln_graph_node_desc a = ln_graph_node(m, k), c = ln_graph_node(l, k);
			assert_int_equal(a.nin, c.nin);
			assert_true((a.m == NULL) == (c.m == NULL));
			for (int j = 0; j < a.nin; j++)
				assert_int_equal(a.in[j], c.in[j]);
		}
	ln_module_release(l);
}

static void test_save_load(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor x1, x2, img;
	tu_tensor_uniform(&x1, 2, (int64_t[]){3, 3}, -1, 1);
	tu_tensor_uniform(&x2, 2, (int64_t[]){3, 2}, -1, 1);
	ln_module *g = two_in_two_out();
	save_load_same(g, 2, (const ln_tensor *[]){&x1, &x2});
	ln_module_release(g);

	/* a residual CNN block with BatchNorm (moved statistics), in a graph in
	 * a Sequential */
	ln_error err;
	ln_module *c1, *c2, *bn1, *bn2, *proj, *pool;
	ok(ln_conv2d_new(&c1, NULL, 2, 4, 3, 1, 1, false, &err), &err);
	ok(ln_conv2d_new(&c2, NULL, 4, 4, 3, 1, 1, false, &err), &err);
	ok(ln_batchnorm_new(&bn1, NULL, 4, &err), &err);
	ok(ln_batchnorm_new(&bn2, NULL, 4, &err), &err);
	ok(ln_conv2d_new(&proj, NULL, 2, 4, 1, 1, 0, true, &err), &err);
	ok(ln_adaptive_avgpool2d_new(&pool, 1, 1, &err), &err);
	ln_module *res = residual(seq_of(4, c1, bn1, act("ReLU"), c2), proj);
	gb b = {.n = 0};
	int in = gb_input(&b);
	int r = gb_node(&b, res, in, -1);
	int bn = gb_node(&b, bn2, r, -1);
	int cat = gb_node(&b, concat(2), bn, r, -1);
	ln_module *net = seq_of(4, gb_graph(&b, 1, &in, 1, &cat), pool, act("ReLU"),
	                        act("Identity"));
	tu_tensor_uniform(&img, 4, (int64_t[]){2, 2, 5, 5}, -1, 1);
	for (int i = 0; i < 3; i++)
		ok(ln_module_forward(net, &img, &err), &err);  /* moves the statistics */
	save_load_same(net, 1, (const ln_tensor *[]){&img});
	ln_module_release(net);
	ln_tensor_release(&x1);
	ln_tensor_release(&x2);
	ln_tensor_release(&img);
}

/* ---- state names ---------------------------------------------------------------------------- */

static ln_status key_fn(const ln_state_entry *e, void *ctx, ln_error *err)
{
	char *keys = ctx;
	strcat(keys, e->key);
	strcat(keys, " ");
	return LN_OK;
}

static void test_state_names(void **state)
{
	ln_error err;
	gb b = {.n = 0};
	int in = gb_input(&b);
	int h = gb_node(&b, linear(2, 2), in, -1);
	int r = gb_node(&b, residual(seq_of(2, linear(2, 2), act("Tanh")), linear(2, 2)), h, -1);
	int y = gb_node(&b, join(ln_add_new), h, r, -1);
	ln_module *g = gb_graph(&b, 1, &in, 1, &y);
	char keys[512] = "";
	ok(ln_module_state_walk(g, key_fn, keys, &err), &err);
	assert_string_equal(keys, "0.weight 0.bias 1.block.0.weight 1.block.0.bias "
	                          "1.proj.weight 1.proj.bias ");
	ln_module_release(g);
}

/* ---- hostile wiring in a file ---------------------------------------------------------------- */

/* A file holding a graph whose wiring list `name` has entry `at` set to
 * v: the loader refuses it, naming the problem. */
static void test_hostile_wiring(void **state)
{
	ln_error err;
	gb b = {.n = 0};
	int in = gb_input(&b);
	int h = gb_node(&b, act("Tanh"), in, -1);
	int y = gb_node(&b, act("Sigmoid"), h, -1);
	ln_module *g = gb_graph(&b, 1, &in, 1, &y);
	ln_writer *w;
	const void *data;
	size_t size;
	ok(ln_writer_new(&w, &err), &err);
	ok(ln_write_module(w, g, NULL, &err), &err);
	ok(ln_writer_finish(w, &data, &size, &err), &err);
	unsigned char *f = malloc(size);
	memcpy(f, data, size);
	ln_writer_free(w);
	ln_module_release(g);

	/* the "edges" list holds {0, 1}: find it by name */
	size_t at = 0;
	for (size_t i = 0; i + 5 <= size && !at; i++)
		if (memcmp(f + i, "edges", 5) == 0)
			at = i + 5 + 8;  /* after the name and the count */
	assert_true(at > 0);
	struct { size_t off; int64_t v; const char *msg; } cases[] = {
		{at + 8, 2, "node 2 (Sigmoid) reads node index 2, which does not come before it"},
		{at + 8, -1, "wiring list 'edges': entry 2 is -1"},
		{at + 8, 0, "node 1 (Tanh) is used by no output"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		unsigned char *c = malloc(size);
		memcpy(c, f, size);
		for (int k = 0; k < 8; k++)
			c[cases[i].off + k] = (unsigned char)((uint64_t)cases[i].v >> (8 * k));
		/* fix the checksum */
		uint64_t plen = 0;
		for (int k = 0; k < 8; k++)
			plen |= (uint64_t)c[8 + k] << (8 * k);
		uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), c + 16, (uInt)plen);
		for (int k = 0; k < 4; k++)
			c[16 + plen + k] = (unsigned char)(crc >> (8 * k));
		ln_reader *r;
		ln_module *m;
		uint64_t id;
		uint64_t before = live_bytes();
		ok(ln_reader_new(&r, c, size, &err), &err);
		ln_status st = ln_read_module(r, &m, &id, &err);
		ln_reader_free(r);
		expect_fail(st, LN_EFORMAT, &err, "cannot assemble a Graph: ");
		expect_fail(st, LN_EFORMAT, &err, cases[i].msg);
		assert_int_equal(live_bytes(), before);
		free(c);
	}
	free(f);
}

/* ---- input gradients left out (module.h) ----------------------------------------------- */

/* With input_grad = false on a graph or a residual, backward gives the
 * same parameter gradients, computes no dL/dx (gx_skipped) and runs no
 * node that only an input gradient would need; a node that cuts the
 * chain before parameters is an error naming both. */
static void test_input_grad(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x, gy;
	away_from_kink(&x, 2, (int64_t[]){3, 4});
	tu_tensor_uniform(&gy, 2, (int64_t[]){3, 4}, -1, 1);
	gb b = {.n = 0};
	int in = gb_input(&b);
	int t = gb_node(&b, act("Tanh"), in, -1);  /* before any parameter: never needed */
	int a = gb_node(&b, linear(4, 4), t, -1);
	int r = gb_node(&b, residual(seq_of(2, linear(4, 4), act("ReLU")), NULL), a, -1);
	int y = gb_node(&b, join(ln_add_new), a, r, -1);
	ln_module *g = gb_graph(&b, 1, &in, 1, &y);
	plist l = {.n = 0};
	ln_module_visit_params(g, collect, &l);
	assert_int_equal(l.n, 4);
	ln_tensor full[4];
	ln_module_zero_grad(g);
	ok(ln_module_forward(g, &x, &err), &err);
	ok(ln_module_backward(g, &x, &gy, &err), &err);
	assert_false(g->gx_skipped);
	for (int i = 0; i < 4; i++) {
		full[i] = LN_TENSOR_EMPTY;
		ok(ln_tensor_clone(&full[i], l.g[i], &err), &err);
	}
	g->input_grad = false;
	ln_module *tanh_ = g->children[0], *lin = g->children[1];
	ln_module_zero_grad(g);
	ok(ln_module_forward(g, &x, &err), &err);
	ok(ln_module_backward(g, &x, &gy, &err), &err);
	assert_true(g->gx_skipped);
	assert_true(tanh_->gx_skipped && lin->gx_skipped);
	assert_null(ln_graph_node_grad(g, t));
	assert_non_null(ln_graph_node_grad(g, a));
	for (int i = 0; i < 4; i++)
		expect_same_bits(l.g[i], &full[i]);

	/* a node inside with input_grad = false: the Linear before it would
	 * get nothing */
	g->input_grad = true;
	ln_module *res = g->children[2];
	res->input_grad = false;
	ok(ln_module_forward(g, &x, &err), &err);
	expect_fail(ln_module_backward(g, &x, &gy, &err), LN_EARG, &err,
	            "node 3 (Residual) computes no input gradient (input_grad = false, or a layer "
	            "inside it), so node 2 (Linear) before it would get no gradient");
	res->input_grad = true;

	/* a Residual asked for no dL/dx gives its children's parameter
	 * gradients only */
	ln_module *r2 = residual(seq_of(2, linear(4, 4), act("Tanh")), linear(4, 4));
	ln_module_zero_grad(r2);
	ok(ln_module_forward(r2, &x, &err), &err);
	ok(ln_module_backward(r2, &x, &gy, &err), &err);
	ln_tensor pw = LN_TENSOR_EMPTY;
	ok(ln_tensor_clone(&pw, &r2->children[1]->grad[0], &err), &err);
	r2->input_grad = false;
	ln_module_zero_grad(r2);
	ok(ln_module_forward(r2, &x, &err), &err);
	ok(ln_module_backward(r2, &x, &gy, &err), &err);
	assert_true(r2->gx_skipped && r2->children[1]->gx_skipped);
	expect_same_bits(&r2->children[1]->grad[0], &pw);
	ln_module_release(r2);

	release_all(4, full);
	ln_tensor_release(&pw);
	ln_module_release(g);
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
}

/* ---- memory ------------------------------------------------------------------------------ */

/* One SGD training step of m on x with gradient gy. */
static void train_step(ln_module *m, ln_optim *opt, const ln_tensor *x, const ln_tensor *gy)
{
	ln_error err;
	ln_optim_zero_grad(opt);
	ok(ln_module_forward(m, x, &err), &err);
	ok(ln_module_backward(m, x, gy, &err), &err);
	ln_optim_step(opt);
}

/* A residual CNN as a graph (diamonds, joins, BatchNorm, pooling): after
 * the first steps a training step allocates nothing. */
static void test_steady_state_no_alloc(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_module *c1, *c2, *c3, *bn1, *bn2, *pool;
	ok(ln_conv2d_new(&c1, NULL, 1, 4, 3, 1, 1, false, &err), &err);
	ok(ln_conv2d_new(&c2, NULL, 4, 4, 3, 1, 1, false, &err), &err);
	ok(ln_conv2d_new(&c3, NULL, 8, 6, 1, 1, 0, true, &err), &err);
	ok(ln_batchnorm_new(&bn1, NULL, 4, &err), &err);
	ok(ln_batchnorm_new(&bn2, NULL, 4, &err), &err);
	ok(ln_adaptive_avgpool2d_new(&pool, 1, 1, &err), &err);
	gb b = {.n = 0};
	int in = gb_input(&b);
	int h = gb_node(&b, seq_of(3, c1, bn1, act("ReLU")), in, -1);
	int r = gb_node(&b, residual(seq_of(2, c2, bn2), NULL), h, -1);
	int s = gb_node(&b, join(ln_add_new), h, r, h, -1);
	int m = gb_node(&b, join(ln_mul_new), s, h, -1);
	int cat = gb_node(&b, concat(2), m, s, -1);
	int p = gb_node(&b, seq_of(3, c3, pool, act("Tanh")), cat, -1);
	ln_module *g = gb_graph(&b, 1, &in, 1, &p);
	ln_optim *opt;
	ln_optim_config cfg = tu_optim_config("SGD", "lr", 0.01, "momentum", 0.9, NULL);
	ok(ln_optim_new_module(&opt, &cfg, g, &err), &err);
	ln_tensor x, gy;
	tu_tensor_uniform(&x, 4, (int64_t[]){4, 1, 6, 6}, -1, 1);
	tu_tensor_uniform(&gy, 4, (int64_t[]){4, 6, 1, 1}, -1, 1);
	train_step(g, opt, &x, &gy);
	train_step(g, opt, &x, &gy);
	uint64_t before = alloc_calls();
	for (int i = 0; i < 3; i++)
		train_step(g, opt, &x, &gy);
	ln_module_set_training(g, false);
	ok(ln_module_forward(g, &x, &err), &err);
	assert_int_equal(alloc_calls(), before);
	ln_optim_free(opt);
	ln_module_release(g);
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
}

/* Failing the nth allocation of building a graph, and of its first
 * forward and backward: LN_ENOMEM, nothing leaked, and the graph works
 * once memory is back. */
static void test_enomem(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x, gy;
	tu_tensor_uniform(&x, 2, (int64_t[]){3, 2}, -1, 1);
	tu_tensor_uniform(&gy, 2, (int64_t[]){3, 4}, -1, 1);
	for (long nth = 1;; nth++) {
		uint64_t before = live_bytes();
		ln_module *la = linear(2, 4), *lb = linear(4, 4), *add = join(ln_add_new);
		ln_module *cat = concat(-1), *l2 = linear(8, 4);
		gb b = {.n = 0};
		int in = gb_input(&b);
		int a = gb_node(&b, la, in, -1);
		int h = gb_node(&b, lb, a, -1);
		int s = gb_node(&b, add, a, h, -1);
		int c = gb_node(&b, cat, s, a, -1);
		int y = gb_node(&b, l2, c, -1);
		ln_module *g = NULL;
		ln_alloc_fail_nth(nth);
		ln_status built = gb_build(&b, 1, &in, 1, &y, &g, &err), st = built;
		if (st == LN_OK)
			st = ln_module_forward(g, &x, &err);
		if (st == LN_OK)
			st = ln_module_backward(g, &x, &gy, &err);
		ln_alloc_fail_nth(0);
		if (st != LN_OK) {
			assert_int_equal(st, LN_ENOMEM);
			if (!strstr(err.msg, "out of memory"))
				fail_msg("allocation %ld: \"%s\"", nth, err.msg);
		}
		if (built == LN_OK) {  /* it still runs once memory is back */
			ok(ln_module_forward(g, &x, &err), &err);
			ok(ln_module_backward(g, &x, &gy, &err), &err);
			ln_module_release(g);
		}
		assert_int_equal(live_bytes(), before);
		if (st == LN_OK) {
			assert_true(nth > 10);
			break;
		}
	}
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
}

/* ---- AdaptiveAvgPool2d ---------------------------------------------------------------------- */

static ln_module *adaptive(int64_t oh, int64_t ow)
{
	ln_module *m;
	ln_error err;
	ok(ln_adaptive_avgpool2d_new(&m, oh, ow, &err), &err);
	return m;
}

static void test_adaptive_avgpool(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_error err;
	ln_tensor x;
	/* global: the mean of each plane */
	tu_tensor(&x, 4, (int64_t[]){1, 2, 2, 3}, (const float[]){1, 2, 3, 4, 5, 6, -1, -2, -3, 0, 0, 12});
	ln_module *m = adaptive(1, 1);
	ok(ln_module_forward(m, &x, &err), &err);
	assert_int_equal(m->output.ndim, 4);
	expect_values(&m->output, (const double[]){3.5, 1}, 2, 1e-7);
	ln_module_release(m);
	/* 3 rows into 2: windows [0,2) and [1,3) overlap on row 1; 3 columns
	 * into 3: one each */
	m = adaptive(2, 3);
	ln_tensor_release(&x);
	tu_tensor(&x, 4, (int64_t[]){1, 1, 3, 3}, (const float[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
	ok(ln_module_forward(m, &x, &err), &err);
	expect_values(&m->output, (const double[]){2.5, 3.5, 4.5, 5.5, 6.5, 7.5}, 6, 1e-7);
	ln_tensor gy;
	tu_tensor(&gy, 4, (int64_t[]){1, 1, 2, 3}, (const float[]){2, 4, 6, 8, 10, 12});
	ok(ln_module_backward(m, &x, &gy, &err), &err);
	/* row 0 gets the first output row /2, row 1 both, row 2 the second */
	expect_values(&m->grad_input, (const double[]){1, 2, 3, 5, 7, 9, 4, 5, 6}, 9, 1e-7);
	ln_module_release(m);
	ln_tensor_release(&x);
	ln_tensor_release(&gy);

	tu_tensor_uniform(&x, 3, (int64_t[]){2, 3, 4}, -1, 1);
	m = adaptive(1, 1);
	expect_fail(ln_module_forward(m, &x, &err), LN_ESHAPE, &err,
	            "AdaptiveAvgPool2d: expected input of shape {N,C,H,W}, got {2,3,4}");
	ln_tensor_release(&x);
	ln_module_release(m);
	expect_fail(ln_adaptive_avgpool2d_new(&m, 0, 1, &err), LN_ERANGE, &err,
	            "expected out_h to be an integer in [1, 2147483647], got 0");

	for (int k = 0; k < 3; k++) {
		static const int64_t sizes[3][4] = {{1, 1, 5, 7}, {2, 3, 2, 3}, {3, 4, 4, 4}};
		tu_tensor_uniform(&x, 4, (int64_t[]){2, 3, 5 + k, 7 - k}, -1, 1);
		m = adaptive(sizes[k][2], sizes[k][3]);
		expect_gradcheck(m, 1, (const ln_tensor *[]){&x}, 1e-2);
		ln_module_release(m);
		ln_tensor_release(&x);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_protocol_both_ways),
		cmocka_unit_test(test_add),
		cmocka_unit_test(test_add_bits),
		cmocka_unit_test(test_mul),
		cmocka_unit_test(test_concat),
		cmocka_unit_test(test_residual),
		cmocka_unit_test(test_chain_equals_sequential),
		cmocka_unit_test(test_diamond),
		cmocka_unit_test(test_two_inputs_two_outputs),
		cmocka_unit_test(test_nesting),
		cmocka_unit_test(test_graph_errors),
		cmocka_unit_test(test_graph_shape_errors),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_state_names),
		cmocka_unit_test(test_hostile_wiring),
		cmocka_unit_test(test_input_grad),
		cmocka_unit_test(test_steady_state_no_alloc),
		cmocka_unit_test(test_enomem),
		cmocka_unit_test(test_adaptive_avgpool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
