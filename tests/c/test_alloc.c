/*
 * test_alloc.c -- the allocator (alignment, counters, size limit, failure
 * injection).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"

static ln_alloc_stats stats_now(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s;
}

static void test_alignment(void **state)
{
	static const size_t sizes[] = { 0, 1, 3, 7, 63, 64, 65, 127, 1000, 4096, 1 << 20 };
	void *blocks[sizeof sizes / sizeof sizes[0]];
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		blocks[i] = ln_malloc(sizes[i]);
		assert_non_null(blocks[i]);
		assert_int_equal((uintptr_t)blocks[i] % LN_ALIGN, 0);
		/* every byte is writable (ASan checks the bounds) */
		memset(blocks[i], 0xab, sizes[i]);
	}
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		unsigned char *p = blocks[i];
		for (size_t j = 0; j < sizes[i]; j++)
			assert_int_equal(p[j], 0xab);
		ln_free(blocks[i]);
	}
	for (size_t n = 1; n < 200; n += 13) {
		void *p = ln_calloc(n, 3);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % LN_ALIGN, 0);
		ln_free(p);
	}
}

static void test_zero_size_blocks_are_distinct(void **state)
{
	void *a = ln_malloc(0), *b = ln_malloc(0);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	ln_free(a);
	ln_free(b);
}

static void test_counters(void **state)
{
	ln_alloc_stats s0 = stats_now();
	void *a = ln_malloc(100);
	void *b = ln_calloc(10, 30);
	ln_alloc_stats s1 = stats_now();
	assert_int_equal(s1.allocs - s0.allocs, 2);
	assert_int_equal(s1.frees, s0.frees);
	assert_int_equal(s1.bytes_live - s0.bytes_live, 400);
	assert_true(s1.bytes_peak >= s1.bytes_live);
	ln_free(a);
	ln_alloc_stats s2 = stats_now();
	assert_int_equal(s2.frees - s0.frees, 1);
	assert_int_equal(s2.bytes_live - s0.bytes_live, 300);
	assert_int_equal(s2.bytes_peak, s1.bytes_peak);
	ln_free(b);
	ln_free(NULL);  /* ignored, not counted */
	ln_alloc_stats s3 = stats_now();
	assert_int_equal(s3.frees - s0.frees, 2);
	assert_int_equal(s3.bytes_live, s0.bytes_live);
	assert_int_equal(s3.failures, s0.failures);
}

static void test_peak(void **state)
{
	ln_alloc_stats s0 = stats_now();
	/* larger than anything live so far, so the peak must move to it */
	size_t big = (size_t)s0.bytes_peak + 12345;
	void *p = ln_malloc(big);
	assert_non_null(p);
	ln_free(p);
	ln_alloc_stats s1 = stats_now();
	assert_int_equal(s1.bytes_peak, s0.bytes_live + big);
	assert_int_equal(s1.bytes_live, s0.bytes_live);
}

static void test_calloc_zeroes(void **state)
{
	/* dirty a block, free it, and calloc the same size: must read zero */
	unsigned char *p = ln_malloc(4096);
	assert_non_null(p);
	memset(p, 0x5a, 4096);
	ln_free(p);
	unsigned char *q = ln_calloc(1024, 4);
	assert_non_null(q);
	for (size_t i = 0; i < 4096; i++)
		assert_int_equal(q[i], 0);
	ln_free(q);
}

static void test_calloc_overflow(void **state)
{
	ln_alloc_stats s0 = stats_now();
	assert_null(ln_calloc(SIZE_MAX / 2, 3));
	assert_null(ln_calloc(SIZE_MAX, SIZE_MAX));
	assert_null(ln_malloc(SIZE_MAX));
	ln_alloc_stats s1 = stats_now();
	assert_int_equal(s1.failures - s0.failures, 3);
	assert_int_equal(s1.allocs, s0.allocs);
	assert_int_equal(s1.bytes_live, s0.bytes_live);
	/* count*size == 0 is not an overflow */
	void *z = ln_calloc(0, SIZE_MAX);
	assert_non_null(z);
	ln_free(z);
}

static void test_limit(void **state)
{
	assert_int_equal(ln_alloc_limit(), (size_t)16 << 30);
	ln_alloc_set_limit(1000);
	assert_int_equal(ln_alloc_limit(), 1000);
	ln_alloc_stats s0 = stats_now();
	assert_null(ln_malloc(1001));
	assert_null(ln_calloc(1001, 1));
	assert_null(ln_calloc(251, 4));
	void *p = ln_malloc(1000);
	assert_non_null(p);
	ln_free(p);
	p = ln_calloc(250, 4);
	assert_non_null(p);
	ln_free(p);
	ln_alloc_stats s1 = stats_now();
	assert_int_equal(s1.failures - s0.failures, 3);
	ln_alloc_set_limit((size_t)16 << 30);
	/* a corrupt size just above the default limit fails without asking the system */
	assert_null(ln_malloc(((size_t)16 << 30) + 1));
}

static void test_fail_nth(void **state)
{
	ln_alloc_stats s0 = stats_now();
	ln_alloc_fail_nth(3);
	void *a = ln_malloc(8);
	void *b = ln_calloc(2, 8);
	void *c = ln_malloc(8);  /* the third: fails */
	void *d = ln_malloc(8);  /* and later ones succeed again */
	void *e = ln_calloc(1, 1);
	assert_non_null(a);
	assert_non_null(b);
	assert_null(c);
	assert_non_null(d);
	assert_non_null(e);
	ln_alloc_stats s1 = stats_now();
	assert_int_equal(s1.failures - s0.failures, 1);
	assert_int_equal(s1.allocs - s0.allocs, 4);
	ln_free(a);
	ln_free(b);
	ln_free(d);
	ln_free(e);

	ln_alloc_fail_nth(1);
	assert_null(ln_calloc(4, 4));
	void *f = ln_malloc(4);
	assert_non_null(f);
	ln_free(f);

	/* n <= 0 disables a pending injection */
	ln_alloc_fail_nth(2);
	ln_alloc_fail_nth(0);
	for (int i = 0; i < 4; i++) {
		void *g = ln_malloc(16);
		assert_non_null(g);
		ln_free(g);
	}
	ln_alloc_fail_nth(1);
	ln_alloc_fail_nth(-5);
	void *h = ln_malloc(16);
	assert_non_null(h);
	ln_free(h);

	/* an overflowing calloc still counts as one call */
	ln_alloc_fail_nth(2);
	assert_null(ln_calloc(SIZE_MAX, 2));
	assert_null(ln_malloc(1));
	void *i = ln_malloc(1);
	assert_non_null(i);
	ln_free(i);
	assert_int_equal(stats_now().bytes_live, s0.bytes_live);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alignment),
		cmocka_unit_test(test_zero_size_blocks_are_distinct),
		cmocka_unit_test(test_counters),
		cmocka_unit_test(test_peak),
		cmocka_unit_test(test_calloc_zeroes),
		cmocka_unit_test(test_calloc_overflow),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_fail_nth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
