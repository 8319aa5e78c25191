/*
 * test_fault.c -- regression tests for what fault injection found
 * (tests/fault/test_oom.c: a call that fails must change nothing, so that
 * calling it again continues as if it never failed).
 *
 *   - A Sequential whose forward failed at a later layer had already
 *     moved the running statistics of a BatchNorm before it (a bad shape
 *     at layer 3, or running out of memory there): the container now
 *     reverts the layers that ran (ln_module_revert).
 *   - A Sequential whose backward ran out of memory at a layer had already
 *     added into the gradients of the layers after it, so that calling it
 *     again counted them twice: every buffer of the backward is now made
 *     before anything is added (ln_module_reserve).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "nn/conv.h"
#include "nn/layers.h"
#include "testutil.h"

static void assert_same(const ln_tensor *a, const ln_tensor *b)
{
	assert_true(ln_tensor_same_shape(a, b));
	assert_memory_equal(ln_tensor_data(a), ln_tensor_data(b),
	                    (size_t)ln_tensor_numel(a) * sizeof(float));
}

static ln_module *seq_of(int n, ln_module **layers)
{
	ln_module *s;
	ln_error err;
	assert_int_equal(ln_sequential_new(&s, &err), LN_OK);
	for (int i = 0; i < n; i++) {
		assert_int_equal(ln_sequential_add(s, layers[i], &err), LN_OK);
		ln_module_release(layers[i]);
	}
	return s;
}

/* Sequential{BatchNorm(3), Linear(3 -> 2)}; x {4,3}. */
static ln_module *bn_model(void)
{
	ln_module *l[2];
	ln_error err;
	assert_int_equal(ln_batchnorm_new(&l[0], NULL, 3, &err), LN_OK);
	assert_int_equal(ln_linear_new(&l[1], NULL, 3, 2, true, &err), LN_OK);
	return seq_of(2, l);
}

static void test_failed_forward_leaves_batchnorm_alone(void **state)
{
	ln_rng_seed(ln_rng_global(), 5);
	ln_module *s = bn_model(), *bn = s->children[0];
	ln_tensor x, mean0 = LN_TENSOR_EMPTY, var0 = LN_TENSOR_EMPTY;
	tu_tensor_uniform(&x, 2, (int64_t[]){4, 3}, -1, 2);
	ln_error err;
	assert_int_equal(ln_tensor_clone(&mean0, &bn->buffer[0], &err), LN_OK);
	assert_int_equal(ln_tensor_clone(&var0, &bn->buffer[1], &err), LN_OK);

	/* a bad shape at layer 2: BatchNorm(3) takes {4,3}... */
	ln_module *wide;
	assert_int_equal(ln_linear_new(&wide, NULL, 5, 2, true, &err), LN_OK);
	ln_module_release(s->children[1]);
	s->children[1] = wide;
	assert_int_not_equal(ln_module_forward(s, &x, &err), LN_OK);
	assert_non_null(strstr(err.msg, "layer 2 (Linear)"));
	assert_same(&bn->buffer[0], &mean0);
	assert_same(&bn->buffer[1], &var0);

	/* ...and running out of memory at layer 2, on its first forward */
	ln_module_release(s->children[1]);
	assert_int_equal(ln_linear_new(&s->children[1], NULL, 3, 2, true, &err), LN_OK);
	for (long k = 1;; k++) {
		ln_alloc_fail_nth(k);
		ln_status st = ln_module_forward(s, &x, &err);
		ln_alloc_fail_nth(0);
		if (st == LN_OK)
			break;
		assert_int_equal(st, LN_ENOMEM);
		assert_same(&bn->buffer[0], &mean0);
		assert_same(&bn->buffer[1], &var0);
	}
	/* the forward that succeeded moved them once */
	assert_false(memcmp(ln_tensor_data(&bn->buffer[0]), ln_tensor_data(&mean0), 3 * sizeof(float))
	             == 0);
	ln_tensor_release(&x);
	ln_tensor_release(&mean0);
	ln_tensor_release(&var0);
	ln_module_release(s);
}

/* Sequential{Conv2d(1,2,3), ReLU, Flatten, Linear(8 -> 3), Tanh, Linear(3 -> 2)}. */
static ln_module *deep_model(void)
{
	ln_module *l[6];
	ln_error err;
	assert_int_equal(ln_conv2d_new(&l[0], NULL, 1, 2, 3, 1, 0, true, &err), LN_OK);
	assert_int_equal(ln_activation_new(&l[1], "ReLU", 0, &err), LN_OK);
	assert_int_equal(ln_flatten_new(&l[2], &err), LN_OK);
	assert_int_equal(ln_linear_new(&l[3], NULL, 8, 3, true, &err), LN_OK);
	assert_int_equal(ln_activation_new(&l[4], "Tanh", 0, &err), LN_OK);
	assert_int_equal(ln_linear_new(&l[5], NULL, 3, 2, true, &err), LN_OK);
	return seq_of(6, l);
}

static void test_backward_out_of_memory_counts_no_gradient_twice(void **state)
{
	ln_error err;
	ln_tensor x, gy;
	ln_rng_seed(ln_rng_global(), 6);
	tu_tensor_uniform(&x, 4, (int64_t[]){2, 1, 4, 4}, -1, 1);
	tu_tensor_uniform(&gy, 2, (int64_t[]){2, 2}, -1, 1);

	/* the gradients of one backward, without failures */
	ln_rng_seed(ln_rng_global(), 7);
	ln_module *ref = deep_model();
	assert_int_equal(ln_module_forward(ref, &x, &err), LN_OK);
	assert_int_equal(ln_module_backward(ref, &x, &gy, &err), LN_OK);

	int failures = 0;
	for (long k = 1;; k++) {
		ln_rng_seed(ln_rng_global(), 7);
		ln_module *s = deep_model();
		assert_int_equal(ln_module_forward(s, &x, &err), LN_OK);
		ln_alloc_fail_nth(k);
		ln_status st = ln_module_backward(s, &x, &gy, &err);
		ln_alloc_fail_nth(0);
		if (st != LN_OK) {
			assert_int_equal(st, LN_ENOMEM);
			failures++;
			assert_int_equal(ln_module_backward(s, &x, &gy, &err), LN_OK);  /* again */
		}
		for (int i = 0; i < s->nchildren; i++)
			for (int j = 0; j < s->children[i]->nparams; j++)
				assert_same(&s->children[i]->grad[j], &ref->children[i]->grad[j]);
		assert_same(&s->grad_input, &ref->grad_input);
		ln_module_release(s);
		if (st == LN_OK)
			break;
	}
	assert_true(failures >= 6);  /* at least every layer's grad_input */
	ln_module_release(ref);
	ln_tensor_release(&x);
	ln_tensor_release(&gy);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failed_forward_leaves_batchnorm_alone),
		cmocka_unit_test(test_backward_out_of_memory_counts_no_gradient_twice),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
