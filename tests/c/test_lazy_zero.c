/*
 * test_lazy_zero.c -- ln_tensor_zero marks a whole storage as zero without
 * writing it; every read through ln_tensor_data sees zeros, and a writer
 * that overwrites everything (Linear and Conv2d backward, through
 * ln_tensor_take_zero) skips both the clearing and the read.  Checked
 * against the plain path: gradients after zero_grad + backward must equal
 * those of an explicit fill(0) + accumulating backward, bit for bit.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/gemm.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/conv.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "testutil.h"

#define SEED 777u

static void fill_ramp(ln_tensor *t, float base)
{
	float *d = ln_tensor_data(t);
	for (int64_t i = 0; i < ln_tensor_numel(t); i++)
		d[i] = base + (float)i;
}

static void assert_all(const ln_tensor *t, float v)
{
	const float *d = ln_tensor_data(t);
	for (int64_t i = 0; i < ln_tensor_numel(t); i++)
		if (d[i] != v)
			fail_msg("element %lld is %g, expected %g", (long long)i, d[i], v);
}

/* A whole tensor: nothing is written until it is read, then it reads 0. */
static void test_zero_whole(void **state)
{
	ln_tensor t = LN_TENSOR_EMPTY, v = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_alloc(&t, 2, (int64_t[]){3, 5}, NULL), LN_OK);
	fill_ramp(&t, 1.0f);
	ln_tensor_ref(&v, &t);  /* a second view of the same storage */
	ln_tensor_zero(&t);
	assert_true(t.storage->zero_pending);
	assert_all(&v, 0.0f);  /* reading through any view settles it */
	assert_false(t.storage->zero_pending);
	assert_all(&t, 0.0f);
	ln_tensor_release(&v);
	ln_tensor_release(&t);
}

/* A view of part of a storage is zeroed at once; the rest is kept. */
static void test_zero_part(void **state)
{
	ln_tensor t = LN_TENSOR_EMPTY, row = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_alloc(&t, 2, (int64_t[]){3, 4}, NULL), LN_OK);
	fill_ramp(&t, 1.0f);
	assert_int_equal(ln_tensor_narrow(&row, &t, 0, 1, 1, NULL), LN_OK);
	ln_tensor_zero(&row);
	assert_false(t.storage->zero_pending);
	assert_false(ln_tensor_take_zero(&row));
	const float *d = ln_tensor_data(&t);
	for (int i = 0; i < 12; i++)
		assert_float_equal(d[i], i >= 4 && i < 8 ? 0.0f : 1.0f + (float)i, 0);
	ln_tensor_release(&row);
	ln_tensor_release(&t);
}

/* take_zero hands the zero over once; afterwards the caller's writes are
 * what the storage holds. */
static void test_take_zero(void **state)
{
	ln_tensor t = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_alloc(&t, 1, (int64_t[]){6}, NULL), LN_OK);
	assert_false(ln_tensor_take_zero(&t));  /* fresh storage: zeroed, not pending */
	fill_ramp(&t, 2.0f);
	ln_tensor_zero(&t);
	assert_true(ln_tensor_take_zero(&t));
	assert_false(ln_tensor_take_zero(&t));
	fill_ramp(&t, 10.0f);  /* the writer's values stand */
	assert_float_equal(ln_tensor_data(&t)[5], 15.0f, 0);
	ln_tensor_release(&t);
}

/* Gradients of m after zero_grad (lazy) + backward, against a copy of the
 * same module zeroed with fill (eager) + backward; then a second backward
 * with the same gradient, without zeroing, must double them (up to the
 * rounding of Conv2d's sums over samples) in both. */
static void compare_paths(ln_module *lazy, ln_module *eager, const ln_tensor *x)
{
	for (int i = 0; i < lazy->nparams; i++)
		ln_tensor_copy(&eager->param[i], &lazy->param[i], NULL);
	ln_error err;
	assert_int_equal(ln_module_forward(lazy, x, &err), LN_OK);
	assert_int_equal(ln_module_forward(eager, x, &err), LN_OK);
	ln_tensor gy = LN_TENSOR_EMPTY;
	tu_tensor_uniform(&gy, lazy->output.ndim, lazy->output.shape, -1.0f, 1.0f);
	ln_tensor first[LN_MODULE_MAX_PARAMS];
	for (int round = 0; round < 2; round++) {
		if (round == 0) {
			for (int i = 0; i < lazy->nparams; i++) {
				fill_ramp(&lazy->grad[i], 5.0f);  /* stale values to be cleared */
				fill_ramp(&eager->grad[i], 5.0f);
			}
			ln_module_zero_grad(lazy);
			for (int i = 0; i < lazy->nparams; i++) {
				assert_true(lazy->grad[i].storage->zero_pending);
				ln_tensor_fill(&eager->grad[i], 0.0f);
			}
		}
		assert_int_equal(ln_module_backward(lazy, x, &gy, &err), LN_OK);
		assert_int_equal(ln_module_backward(eager, x, &gy, &err), LN_OK);
		for (int i = 0; i < lazy->nparams; i++) {
			assert_false(lazy->grad[i].storage->zero_pending);
			const float *a = ln_tensor_data(&lazy->grad[i]), *b = ln_tensor_data(&eager->grad[i]);
			for (int64_t k = 0; k < ln_tensor_numel(&lazy->grad[i]); k++)
				if (a[k] != b[k])
					fail_msg("seed %u, round %d, %s grad %d element %lld: lazy %.9g, eager %.9g",
					         SEED, round, lazy->cls->name, i, (long long)k, a[k], b[k]);
			if (round == 0) {
				first[i] = LN_TENSOR_EMPTY;
				assert_int_equal(ln_tensor_clone(&first[i], &lazy->grad[i], NULL), LN_OK);
				continue;
			}
			const float *f = ln_tensor_data(&first[i]);
			for (int64_t k = 0; k < ln_tensor_numel(&lazy->grad[i]); k++)
				if (!(fabsf(a[k] - 2.0f * f[k]) <= 1e-5f * (fabsf(f[k]) + 1e-3f)))
					fail_msg("seed %u, %s grad %d element %lld: %.9g after two backward passes, "
					         "%.9g after one", SEED, lazy->cls->name, i, (long long)k, a[k], f[k]);
			ln_tensor_release(&first[i]);
		}
	}
	ln_tensor_release(&gy);
}

static void test_linear_backward(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_module *a, *b;
	assert_int_equal(ln_linear_new(&a, NULL, 37, 19, true, NULL), LN_OK);
	assert_int_equal(ln_linear_new(&b, NULL, 37, 19, true, NULL), LN_OK);
	ln_tensor x = LN_TENSOR_EMPTY;
	tu_tensor_uniform(&x, 2, (int64_t[]){13, 37}, -1.0f, 1.0f);
	compare_paths(a, b, &x);
	ln_tensor_release(&x);
	ln_module_release(a);
	ln_module_release(b);
}

static void test_conv2d_backward(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	ln_module *a, *b;
	assert_int_equal(ln_conv2d_new(&a, NULL, 2, 3, 3, 1, 1, true, NULL), LN_OK);
	assert_int_equal(ln_conv2d_new(&b, NULL, 2, 3, 3, 1, 1, true, NULL), LN_OK);
	ln_tensor x = LN_TENSOR_EMPTY;
	tu_tensor_uniform(&x, 4, (int64_t[]){3, 2, 6, 5}, -1.0f, 1.0f);
	compare_paths(a, b, &x);
	ln_tensor_release(&x);
	ln_module_release(a);
	ln_module_release(b);
}

/* The optimiser's zero_grad is lazy too, and a step right after it (no
 * backward in between) reads zero gradients: SGD without momentum or
 * weight decay leaves the parameters as they were. */
static void test_optim_zero_grad(void **state)
{
	ln_tensor p = LN_TENSOR_EMPTY, g = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_alloc(&p, 1, (int64_t[]){8}, NULL), LN_OK);
	assert_int_equal(ln_tensor_alloc(&g, 1, (int64_t[]){8}, NULL), LN_OK);
	fill_ramp(&p, 1.0f);
	fill_ramp(&g, 3.0f);
	ln_optim_config cfg = tu_optim_config("SGD", "lr", 0.5, NULL);
	ln_optim *opt;
	assert_int_equal(tu_optim_new(&opt, &cfg, 1, &p, &g, NULL), LN_OK);
	ln_alloc_stats s0, s1;
	ln_alloc_get_stats(&s0);
	ln_optim_zero_grad(opt);
	assert_true(g.storage->zero_pending);
	ln_optim_step(opt);
	ln_alloc_get_stats(&s1);
	assert_int_equal(s1.allocs, s0.allocs);
	const float *d = ln_tensor_data(&p);
	for (int i = 0; i < 8; i++)
		assert_float_equal(d[i], 1.0f + (float)i, 0);
	assert_all(&g, 0.0f);
	ln_optim_free(opt);
	ln_tensor_release(&p);
	ln_tensor_release(&g);
}

/* A backward that fails for lack of memory leaves a pending zero in
 * place: the gradients still read as zero afterwards.  Conv2d's scratch
 * grows with the thread count, which makes an allocation in backward. */
static void test_failed_backward_keeps_zero(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	int before = ln_gemm_threads();
	ln_gemm_set_threads(1);
	ln_module *m;
	assert_int_equal(ln_conv2d_new(&m, NULL, 2, 3, 3, 1, 1, true, NULL), LN_OK);
	ln_tensor x = LN_TENSOR_EMPTY, gy = LN_TENSOR_EMPTY;
	tu_tensor_uniform(&x, 4, (int64_t[]){2, 2, 5, 5}, -1.0f, 1.0f);
	ln_error err;
	assert_int_equal(ln_module_forward(m, &x, &err), LN_OK);
	tu_tensor_uniform(&gy, 4, m->output.shape, -1.0f, 1.0f);
	assert_int_equal(ln_module_backward(m, &x, &gy, &err), LN_OK);
	ln_module_zero_grad(m);
	ln_gemm_set_threads(2);
	ln_alloc_fail_nth(1);
	ln_status st = ln_module_backward(m, &x, &gy, &err);
	ln_alloc_fail_nth(0);
	assert_int_equal(st, LN_ENOMEM);
	assert_all(&m->grad[0], 0.0f);
	assert_all(&m->grad[1], 0.0f);
	ln_gemm_set_threads(before);
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
	ln_module_release(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_whole),
		cmocka_unit_test(test_zero_part),
		cmocka_unit_test(test_take_zero),
		cmocka_unit_test(test_linear_backward),
		cmocka_unit_test(test_conv2d_backward),
		cmocka_unit_test(test_optim_zero_grad),
		cmocka_unit_test(test_failed_backward_keeps_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
