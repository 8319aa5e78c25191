/*
 * test_hostile.c -- modules driven the way a hostile script drives them:
 * an External layer whose callback runs the container it sits in again
 * (re-entrant forward/backward) must leave no reference behind, and the
 * outer call must still produce a well-formed result.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "testutil.h"

/* The callback context: the container to re-enter and how deep we are. */
typedef struct reenter {
	ln_module *seq;
	int depth;
	int64_t inner_batch;  /* batch size of the nested call */
} reenter;

/* Identity forward that first runs the whole container once more on a
 * batch of another size (so every buffer of the container is refilled
 * under the outer call), then returns a copy of x. */
static ln_status re_forward(void *ctx, const ln_tensor *x, ln_tensor *out, ln_error *err)
{
	reenter *r = ctx;
	if (r->depth == 0) {
		r->depth++;
		ln_tensor y = LN_TENSOR_EMPTY;
		int64_t shape[2] = {r->inner_batch, x->shape[1]};
		tu_tensor_uniform(&y, 2, shape, -1.0f, 1.0f);
		ln_status s = ln_module_forward(r->seq, &y, err);
		ln_tensor_release(&y);
		r->depth--;
		if (s != LN_OK)
			return s;
	}
	ln_status s = ln_tensor_ensure(out, x->ndim, x->shape, err);
	if (s == LN_OK)
		s = ln_tensor_copy(out, x, err);
	return s;
}

/* Identity backward, re-entering forward like re_forward does. */
static ln_status re_backward(void *ctx, const ln_tensor *x, const ln_tensor *gy,
                             ln_tensor *grad_input, ln_error *err)
{
	(void)x;
	return re_forward(ctx, gy, grad_input, err);
}

static const ln_external_ops re_ops = {
	.forward = re_forward,
	.backward = re_backward,
};

/* Forward through Linear -> re-entering External: the External's output
 * was filled by the nested call before the outer call stores its result;
 * the old reference must be dropped, or the nested output leaks. */
static void test_reentrant_forward_no_leak(void **state)
{
	(void)state;
	ln_rng_seed(ln_rng_global(), 7);
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	ln_error err;
	ln_module *seq = NULL, *lin = NULL, *ext = NULL;
	reenter r = {.depth = 0, .inner_batch = 5};
	assert_int_equal(ln_sequential_new(&seq, &err), LN_OK);
	assert_int_equal(ln_linear_new(&lin, NULL, 3, 3, true, &err), LN_OK);
	assert_int_equal(ln_external_new(&ext, &re_ops, &r, &err), LN_OK);
	r.seq = seq;
	assert_int_equal(ln_sequential_add(seq, lin, &err), LN_OK);
	assert_int_equal(ln_sequential_add(seq, ext, &err), LN_OK);
	ln_module_release(lin);  /* seq holds them; used below only while seq lives */
	ln_module_release(ext);

	ln_tensor x = LN_TENSOR_EMPTY, gy = LN_TENSOR_EMPTY;
	int64_t shape[2] = {2, 3};
	tu_tensor_uniform(&x, 2, shape, -1.0f, 1.0f);
	tu_tensor_uniform(&gy, 2, shape, -1.0f, 1.0f);
	for (int rep = 0; rep < 3; rep++) {
		assert_int_equal(ln_module_forward(seq, &x, &err), LN_OK);
		/* The callback copies its input after the nested call has refilled
		 * the Linear's output with the {5,3} batch: what comes out matches
		 * what the layer below holds now, and is one tensor, not two. */
		assert_int_equal(seq->output.ndim, 2);
		assert_int_equal(seq->output.shape[0], lin->output.shape[0]);
		assert_int_equal(seq->output.shape[1], 3);
		assert_ptr_equal(seq->output.storage, ext->output.storage);
		assert_int_equal(ext->output.storage->refcount, 2);  /* ext and seq */
	}
	/* Backward re-enters forward with batch 5, so the Linear below sees an
	 * output of another shape than the gradient it is handed: an error,
	 * not garbage. */
	ln_status s = ln_module_backward(seq, &x, &gy, &err);
	assert_int_not_equal(s, LN_OK);
	assert_non_null(strstr(err.msg, "Sequential:backward"));

	ln_tensor_release(&x);
	ln_tensor_release(&gy);
	ln_module_release(seq);
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
	assert_int_equal(after.allocs - before.allocs, after.frees - before.frees);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reentrant_forward_no_leak),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
