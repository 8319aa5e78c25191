/*
 * test_model_api.c -- lunet.h's model API from inside the engine's test
 * suite, where the allocator can be watched: a forward with an input
 * shape seen before allocates nothing, and every engine allocation of a
 * load and of a forward failed in turn gives LUNET_ENOMEM (or success)
 * with nothing leaked.  (The API as a host sees it, built against an
 * installed lunet, is tests/host/test_host.c.)
 */
#define _DEFAULT_SOURCE  /* mkdtemp */

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "io/save.h"
#include "lunet.h"
#include "nn/conv.h"
#include "nn/layers.h"
#include "testutil.h"

static char dir[64];
static char model_path[128];

/* Conv2d BatchNorm ReLU MaxPool Flatten Linear, saved with the C API. */
static int setup(void **state)
{
	(void)state;
	strcpy(dir, "/tmp/lunet_model_api_XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(model_path, sizeof model_path, "%s/cnn.lunet", dir);
	ln_error err;
	ln_module *seq, *m;
	assert_int_equal(ln_sequential_new(&seq, &err), LN_OK);
	assert_int_equal(ln_conv2d_new(&m, NULL, 1, 3, 3, 1, 1, true, &err), LN_OK);
	ln_sequential_add(seq, m, &err), ln_module_release(m);
	assert_int_equal(ln_batchnorm_new(&m, NULL, 3, &err), LN_OK);
	ln_sequential_add(seq, m, &err), ln_module_release(m);
	assert_int_equal(ln_activation_new(&m, "ReLU", 0, &err), LN_OK);
	ln_sequential_add(seq, m, &err), ln_module_release(m);
	assert_int_equal(ln_maxpool2d_new(&m, 2, 0, &err), LN_OK);
	ln_sequential_add(seq, m, &err), ln_module_release(m);
	assert_int_equal(ln_flatten_new(&m, &err), LN_OK);
	ln_sequential_add(seq, m, &err), ln_module_release(m);
	assert_int_equal(ln_linear_new(&m, NULL, 3 * 4 * 4, 5, true, &err), LN_OK);
	ln_sequential_add(seq, m, &err), ln_module_release(m);
	assert_int_equal(seq->nchildren, 6);
	if (ln_save_module(model_path, seq, &err) != LN_OK)
		fail_msg("%s", err.msg);
	ln_module_release(seq);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(model_path);
	rmdir(dir);
	return 0;
}

static uint64_t allocs(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s.allocs;
}

static uint64_t live(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s.bytes_live;
}

static void test_steady_forward_allocates_nothing(void **state)
{
	(void)state;
	lunet_model *m;
	lunet_error err;
	assert_int_equal(lunet_model_load(&m, model_path, &err), LUNET_OK);
	float x[4 * 8 * 8], y[4 * 5];
	for (int i = 0; i < 4 * 64; i++)
		x[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
	const int64_t shape[4] = {4, 1, 8, 8};
	int nd;
	int64_t sh[LUNET_MAX_DIMS];
	assert_int_equal(lunet_model_forward(m, x, 4, shape, y, 20, &nd, sh, &err), LUNET_OK);
	float first[20];
	memcpy(first, y, sizeof y);
	uint64_t before = allocs();
	for (int i = 0; i < 3; i++)
		assert_int_equal(lunet_model_forward(m, x, 4, shape, y, 20, &nd, sh, &err), LUNET_OK);
	assert_int_equal(allocs(), before);
	assert_memory_equal(y, first, sizeof y);
	/* evaluate mode: one sample alone gives its row of the batch's output */
	const int64_t one[4] = {1, 1, 8, 8};
	float y1[5];
	assert_int_equal(lunet_model_forward(m, x + 64, 4, one, y1, 5, &nd, sh, &err), LUNET_OK);
	for (int j = 0; j < 5; j++)  /* (the batch may take another summation order) */
		if (!(fabsf(y1[j] - first[5 + j]) <= 1e-5f * (1 + fabsf(first[5 + j]))))
			fail_msg("output %d of sample 2 alone: %.9g, in the batch: %.9g", j, y1[j],
			         first[5 + j]);
	lunet_model_free(m);
}

/* Fails the k-th engine allocation of a load for every k: each run ends
 * in LUNET_ENOMEM or, past the last, success; nothing leaks. */
static void test_load_out_of_memory(void **state)
{
	(void)state;
	uint64_t base = live();
	int failures = 0;
	for (long k = 1;; k++) {
		lunet_model *m = NULL;
		lunet_error err;
		ln_alloc_fail_nth(k);
		lunet_status s = lunet_model_load(&m, model_path, &err);
		ln_alloc_fail_nth(0);
		if (s == LUNET_OK) {
			lunet_model_free(m);
			break;
		}
		if (s != LUNET_ENOMEM)
			fail_msg("allocation %ld failed: expected LUNET_ENOMEM, got %s: %s", k,
			         lunet_status_name(s), err.message);
		assert_null(m);
		assert_int_equal(live(), base);
		failures++;
	}
	assert_true(failures > 5);
	assert_int_equal(live(), base);
}

static void test_forward_out_of_memory(void **state)
{
	(void)state;
	lunet_model *m;
	lunet_error err;
	assert_int_equal(lunet_model_load(&m, model_path, &err), LUNET_OK);
	float x[2 * 64] = {0}, y[10];
	const int64_t shape[4] = {2, 1, 8, 8};
	int nd;
	int64_t sh[LUNET_MAX_DIMS];
	int failures = 0;
	for (long k = 1;; k++) {
		ln_alloc_fail_nth(k);
		lunet_status s = lunet_model_forward(m, x, 4, shape, y, 10, &nd, sh, &err);
		ln_alloc_fail_nth(0);
		if (s == LUNET_OK)
			break;
		if (s != LUNET_ENOMEM)
			fail_msg("allocation %ld failed: expected LUNET_ENOMEM, got %s: %s", k,
			         lunet_status_name(s), err.message);
		failures++;
	}
	assert_true(failures >= 2);  /* the input buffer, then the layers' outputs */
	lunet_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_steady_forward_allocates_nothing),
		cmocka_unit_test(test_load_out_of_memory),
		cmocka_unit_test(test_forward_out_of_memory),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
