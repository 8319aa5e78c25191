/*
 * test_dist.c -- the gradient packer of src/dist (plain C, every build):
 * pack and unpack against the weighted mean written out by hand, pending
 * zeros, bad gradients, failed allocations; and, in a build without MPI,
 * that every call that would communicate says so.  The collectives across
 * ranks are tested under mpirun (tests/mpi/).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "dist/dist.h"
#include "testutil.h"

static uint64_t live_bytes(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s.bytes_live;
}

/* Two "ranks" by hand: rank a packs with weight 3, rank b with weight 1;
 * their buffers summed are what the allreduce would give; unpacking must
 * give (3 g_a + 1 g_b) / 4 in every gradient. */
static void test_pack_unpack_weighted_mean(void **state)
{
	uint64_t live0 = live_bytes();
	ln_tensor ga[2] = {LN_TENSOR_EMPTY, LN_TENSOR_EMPTY};
	ln_tensor gb[2] = {LN_TENSOR_EMPTY, LN_TENSOR_EMPTY};
	const int64_t s0[2] = {2, 3}, s1[1] = {4};
	tu_tensor_uniform(&ga[0], 2, s0, -1, 1);
	tu_tensor_uniform(&ga[1], 1, s1, -1, 1);
	tu_tensor_uniform(&gb[0], 2, s0, -1, 1);
	tu_tensor_uniform(&gb[1], 1, s1, -1, 1);
	float want[10];
	for (int i = 0; i < 6; i++)
		want[i] = (3 * ln_tensor_data(&ga[0])[i] + ln_tensor_data(&gb[0])[i]) / 4;
	for (int i = 0; i < 4; i++)
		want[6 + i] = (3 * ln_tensor_data(&ga[1])[i] + ln_tensor_data(&gb[1])[i]) / 4;

	ln_dist_packer *pa = NULL, *pb = NULL;
	assert_int_equal(ln_dist_packer_new(&pa, 2, ga, NULL), LN_OK);
	assert_int_equal(ln_dist_packer_new(&pb, 2, gb, NULL), LN_OK);
	assert_int_equal(pa->total, 10);
	ln_dist_packer_pack(pa, 3.0f);
	ln_dist_packer_pack(pb, 1.0f);
	assert_true(pa->buf[10] == 3.0f);
	for (int i = 0; i <= 10; i++)
		pa->buf[i] += pb->buf[i];
	ln_dist_packer_unpack(pa);
	for (int i = 0; i < 6; i++)
		assert_float_equal(ln_tensor_data(&ga[0])[i], want[i], 1e-6);
	for (int i = 0; i < 4; i++)
		assert_float_equal(ln_tensor_data(&ga[1])[i], want[6 + i], 1e-6);

	/* the packer holds references: the gradients outlive the callers' */
	for (int i = 0; i < 2; i++) {
		ln_tensor_release(&ga[i]);
		ln_tensor_release(&gb[i]);
	}
	assert_true(pa->g[0].storage != NULL);
	ln_dist_packer_free(pa);
	ln_dist_packer_free(pb);
	assert_int_equal(live_bytes(), live0);
}

/* A gradient whose zeros are pending packs as zeros, and unpacking
 * overwrites it whole. */
static void test_pending_zeros(void **state)
{
	ln_tensor g = LN_TENSOR_EMPTY;
	const int64_t s[1] = {5};
	tu_tensor_uniform(&g, 1, s, 1, 2);
	ln_tensor_zero(&g);
	ln_dist_packer *p = NULL;
	assert_int_equal(ln_dist_packer_new(&p, 1, &g, NULL), LN_OK);
	ln_dist_packer_pack(p, 2.0f);
	for (int i = 0; i < 5; i++)
		assert_true(p->buf[i] == 0.0f);
	for (int i = 0; i < 5; i++)
		p->buf[i] = (float)i;
	p->buf[5] = 4.0f;
	ln_tensor_zero(&g);
	ln_dist_packer_unpack(p);
	for (int i = 0; i < 5; i++)
		assert_true(ln_tensor_data(&g)[i] == (float)i / 4.0f);
	ln_dist_packer_free(p);
	ln_tensor_release(&g);
}

static void test_bad_gradients(void **state)
{
	ln_tensor g = LN_TENSOR_EMPTY, view = LN_TENSOR_EMPTY;
	const int64_t s[2] = {3, 4};
	tu_tensor_uniform(&g, 2, s, -1, 1);
	assert_int_equal(ln_tensor_narrow(&view, &g, 1, 1, 2, NULL), LN_OK);
	ln_dist_packer *p = NULL;
	ln_error err;
	ln_tensor list[2] = {g, view};
	assert_int_equal(ln_dist_packer_new(&p, 2, list, &err), LN_EARG);
	assert_string_equal(err.msg, "gradient 2 (shape {3,2}) is not contiguous");
	ln_tensor empty = LN_TENSOR_EMPTY;
	assert_int_equal(ln_dist_packer_new(&p, 1, &empty, &err), LN_EARG);
	assert_string_equal(err.msg, "gradient 1 is empty");
	assert_int_equal(ln_dist_packer_new(&p, -1, NULL, &err), LN_ERANGE);
	assert_null(p);
	/* no gradients at all: a buffer holding only the weight */
	assert_int_equal(ln_dist_packer_new(&p, 0, NULL, &err), LN_OK);
	assert_int_equal(p->total, 0);
	ln_dist_packer_free(p);
	ln_dist_packer_free(NULL);
	ln_tensor_release(&view);
	ln_tensor_release(&g);
}

/* Each of the three allocations failing in turn: LN_ENOMEM, nothing kept. */
static void test_out_of_memory(void **state)
{
	ln_tensor g = LN_TENSOR_EMPTY;
	const int64_t s[1] = {8};
	tu_tensor_uniform(&g, 1, s, -1, 1);
	uint64_t live0 = live_bytes();
	for (long nth = 1; nth <= 3; nth++) {
		ln_dist_packer *p = NULL;
		ln_error err;
		ln_alloc_fail_nth(nth);
		assert_int_equal(ln_dist_packer_new(&p, 1, &g, &err), LN_ENOMEM);
		ln_alloc_fail_nth(0);
		assert_null(p);
		assert_int_equal(live_bytes(), live0);
		assert_int_equal(g.storage->refcount, 1);
	}
	ln_tensor_release(&g);
}

/* Without MPI every communicating call fails with LN_ESTATE and says how
 * to build with it; with MPI (this test runs outside mpirun) only the
 * checks before joining are exercised. */
static void test_without_mpi_or_before_init(void **state)
{
	ln_error err;
	float buf[3] = {1, 2, 3};
	ln_dist_packer *p = NULL;
	assert_int_equal(ln_dist_packer_new(&p, 0, NULL, NULL), LN_OK);
	if (!ln_dist_available()) {
		assert_int_equal(ln_dist_init(&err), LN_ESTATE);
		assert_non_null(strstr(err.msg, "built without MPI"));
		assert_int_equal(ln_dist_allreduce(buf, 3, LN_DIST_SUM, &err), LN_ESTATE);
		assert_int_equal(ln_dist_broadcast(buf, 3, 0, &err), LN_ESTATE);
		assert_int_equal(ln_dist_barrier(&err), LN_ESTATE);
		assert_int_equal(ln_dist_check_same(1, "x", &err), LN_ESTATE);
		assert_int_equal(ln_dist_average(p, 1.0, &err), LN_ESTATE);
		assert_non_null(strstr(err.msg, "-DLUNET_MPI=ON"));
	} else {
		assert_false(ln_dist_initialized());
		assert_int_equal(ln_dist_allreduce(buf, 3, LN_DIST_SUM, &err), LN_ESTATE);
		assert_string_equal(err.msg, "not initialised: call lunet.dist.init() first");
		assert_int_equal(ln_dist_average(p, 1.0, &err), LN_ESTATE);
	}
	assert_int_equal(ln_dist_rank(), 0);
	assert_int_equal(ln_dist_size(), 1);
	ln_dist_abort(1);  /* not initialised: returns */
	ln_dist_packer_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pack_unpack_weighted_mean),
		cmocka_unit_test(test_pending_zeros),
		cmocka_unit_test(test_bad_gradients),
		cmocka_unit_test(test_out_of_memory),
		cmocka_unit_test(test_without_mpi_or_before_init),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
