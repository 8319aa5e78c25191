/*
 * test_augment.c -- random crops and flips of image batches (io/augment.h):
 * the in-place shift against a crop of a zero-padded copy made the plain
 * way, for every shift up to beyond the image; flips by hand; the random
 * choices (every offset reached, the same batch from the same seed, p = 0
 * and p = 1); errors; and no allocation.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "io/augment.h"
#include "testutil.h"

static uint64_t alloc_count(void)
{
	ln_alloc_stats st;
	ln_alloc_get_stats(&st);
	return st.allocs;
}

/* The reference: pad (c,h,w) with p zeros all round, take the h x w
 * window at (oy, ox). */
static void crop_naive(float *out, const float *img, int64_t c, int64_t h, int64_t w, int64_t p,
                       int64_t oy, int64_t ox)
{
	int64_t ph = h + 2 * p, pw = w + 2 * p;
	float *padded = calloc((size_t)(c * ph * pw), sizeof(float));
	assert_non_null(padded);
	for (int64_t k = 0; k < c; k++)
		for (int64_t i = 0; i < h; i++)
			for (int64_t j = 0; j < w; j++)
				padded[(k * ph + i + p) * pw + j + p] = img[(k * h + i) * w + j];
	for (int64_t k = 0; k < c; k++)
		for (int64_t i = 0; i < h; i++)
			for (int64_t j = 0; j < w; j++)
				out[(k * h + i) * w + j] = padded[(k * ph + i + oy) * pw + j + ox];
	free(padded);
}

static void test_shift_against_padded_crop(void **state)
{
	const int64_t c = 2, h = 4, w = 5, p = 6;  /* shifts beyond the image too */
	float img[40], work[40], want[40];
	for (int i = 0; i < 40; i++)
		img[i] = (float)(i + 1);
	for (int64_t oy = 0; oy <= 2 * p; oy++)
		for (int64_t ox = 0; ox <= 2 * p; ox++) {
			memcpy(work, img, sizeof img);
			ln_augment_shift_image(work, c, h, w, p - oy, p - ox);
			crop_naive(want, img, c, h, w, p, oy, ox);
			if (memcmp(work, want, sizeof work) != 0)
				fail_msg("shift (%lld, %lld) differs from the padded crop", (long long)(p - oy),
				         (long long)(p - ox));
		}
	/* by hand: one down, one left */
	float a[6] = {1, 2, 3, 4, 5, 6};
	ln_augment_shift_image(a, 1, 2, 3, 1, -1);
	const float want_a[6] = {0, 0, 0, 2, 3, 0};
	assert_memory_equal(a, want_a, sizeof a);
}

static void test_flip(void **state)
{
	float a[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};  /* (2,2,3) */
	ln_augment_flip_image(a, 2, 2, 3);
	const float want[12] = {3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10};
	assert_memory_equal(a, want, sizeof a);
	float b[4] = {1, 2, 3, 4};  /* even width */
	ln_augment_flip_image(b, 1, 1, 4);
	const float want_b[4] = {4, 3, 2, 1};
	assert_memory_equal(b, want_b, sizeof b);
}

/* One pixel lit per image: where it lands tells the shift drawn. */
static void test_random_crop(void **state)
{
	const int64_t n = 400, pad = 2;
	ln_tensor x;
	tu_tensor(&x, 4, (int64_t[]){n, 1, 7, 7}, NULL);
	float *d = ln_tensor_data(&x);
	for (int64_t i = 0; i < n; i++)
		d[i * 49 + 3 * 7 + 3] = 1;
	ln_rng r;
	ln_rng_seed(&r, 99);
	ln_error err;
	uint64_t before = alloc_count();
	assert_int_equal(ln_augment_random_crop(&x, pad, &r, &err), LN_OK);
	assert_int_equal(alloc_count(), before);
	int seen[5][5] = {{0}};
	ln_rng check;
	ln_rng_seed(&check, 99);
	for (int64_t i = 0; i < n; i++) {
		int64_t oy = (int64_t)ln_rng_below(&check, 5), ox = (int64_t)ln_rng_below(&check, 5);
		int64_t at = -1;
		for (int k = 0; k < 49; k++)
			if (d[i * 49 + k] == 1)
				at = k;
		assert_true(at >= 0);
		/* the pixel at (3,3) moves by (pad - oy, pad - ox) */
		assert_int_equal(at / 7, 3 + pad - oy);
		assert_int_equal(at % 7, 3 + pad - ox);
		seen[oy][ox]++;
	}
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 5; j++)
			if (seen[i][j] == 0)
				fail_msg("offset (%d, %d) never drawn in %lld images", i, j, (long long)n);
	/* pad 0 leaves the batch alone */
	ln_tensor y = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_clone(&y, &x, &err), LN_OK);
	assert_int_equal(ln_augment_random_crop(&x, 0, &r, &err), LN_OK);
	assert_memory_equal(ln_tensor_data(&x), ln_tensor_data(&y), (size_t)n * 49 * sizeof(float));
	assert_int_equal(ln_augment_random_crop(&x, -1, &r, &err), LN_ERANGE);
	assert_non_null(strstr(err.msg, "expected a padding in 0..2^30, got -1"));
	ln_tensor_release(&x);
	ln_tensor_release(&y);
}

static void test_hflip(void **state)
{
	const int64_t n = 200;
	ln_tensor x, orig = LN_TENSOR_EMPTY;
	tu_tensor_uniform(&x, 4, (int64_t[]){n, 2, 3, 4}, -1, 1);
	ln_error err;
	assert_int_equal(ln_tensor_clone(&orig, &x, &err), LN_OK);
	ln_rng r;
	ln_rng_seed(&r, 7);
	assert_int_equal(ln_augment_hflip(&x, 0, &r, &err), LN_OK);
	assert_memory_equal(ln_tensor_data(&x), ln_tensor_data(&orig), (size_t)n * 24 * sizeof(float));
	/* p = 0.5: the images flipped are those whose draw was below 0.5 */
	assert_int_equal(ln_augment_hflip(&x, 0.5, &r, &err), LN_OK);
	ln_rng check;
	ln_rng_seed(&check, 7);
	for (int64_t i = 0; i < n; i++)
		(void)ln_rng_uniform(&check);  /* the draws of the p = 0 call */
	int flipped = 0;
	for (int64_t i = 0; i < n; i++) {
		float img[24];
		memcpy(img, ln_tensor_data(&orig) + i * 24, sizeof img);
		bool flip = ln_rng_uniform(&check) < 0.5;
		if (flip)
			ln_augment_flip_image(img, 2, 3, 4);
		flipped += flip;
		assert_memory_equal(ln_tensor_data(&x) + i * 24, img, sizeof img);
	}
	assert_true(flipped > n / 4 && flipped < 3 * n / 4);
	assert_int_equal(ln_augment_hflip(&x, 1.5, &r, &err), LN_ERANGE);
	assert_int_equal(ln_augment_hflip(&x, NAN, &r, &err), LN_ERANGE);
	ln_tensor flat;
	tu_tensor(&flat, 2, (int64_t[]){2, 3}, NULL);
	assert_int_equal(ln_augment_hflip(&flat, 0.5, &r, &err), LN_ESHAPE);
	assert_non_null(strstr(err.msg, "expected a contiguous tensor of shape {N,C,H,W}, got {2,3}"));
	ln_tensor_release(&flat);
	ln_tensor_release(&x);
	ln_tensor_release(&orig);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shift_against_padded_crop),
		cmocka_unit_test(test_flip),
		cmocka_unit_test(test_random_crop),
		cmocka_unit_test(test_hflip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
