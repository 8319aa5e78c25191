/*
 * test_tensor_core.c -- tensors (every function of tensor.h, on contiguous
 * and strided views), error values and messages, the rng, and LN_ENOMEM on
 * every allocating path without leaks.
 *
 * Expected values are computed here independently: by index arithmetic
 * over the row-major source data, or by hand.
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
#include "core/error.h"
#include "core/gemm.h"
#include "core/iter.h"
#include "core/rng.h"
#include "core/tensor.h"

#define SEED 7771u

/* ---- helpers ----------------------------------------------------------------- */

static uint64_t live_bytes(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s.bytes_live;
}

static uint64_t alloc_count(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s.allocs;
}

/* t = new tensor of `shape` holding 0, 1, 2, ... in row-major order. */
static void arange(ln_tensor *t, int ndim, const int64_t *shape)
{
	ln_error err;
	*t = LN_TENSOR_EMPTY;
	if (ln_tensor_alloc(t, ndim, shape, &err) != LN_OK)
		fail_msg("alloc: %s", err.msg);
	float *d = ln_tensor_data(t);
	for (int64_t i = 0; i < ln_tensor_numel(t); i++)
		d[i] = (float)i;
}

static void from_values(ln_tensor *t, int ndim, const int64_t *shape, const float *v)
{
	arange(t, ndim, shape);
	memcpy(ln_tensor_data(t), v, (size_t)ln_tensor_numel(t) * sizeof(float));
}

static void random_tensor(ln_tensor *t, int ndim, const int64_t *shape, float lo, float hi)
{
	arange(t, ndim, shape);
	float *d = ln_tensor_data(t);
	for (int64_t i = 0; i < ln_tensor_numel(t); i++)
		d[i] = lo + (hi - lo) * (float)ln_rng_uniform(ln_rng_global());
}

/* Element at a multi-index of up to 3 dims, through shape and strides only
 * (independent of the iterators under test). */
static float at3(const ln_tensor *t, int64_t i, int64_t j, int64_t k)
{
	int64_t idx[3] = { i, j, k };
	int64_t off = 0;
	for (int d = 0; d < t->ndim; d++)
		off += idx[d] * t->stride[d];
	return ln_tensor_data(t)[off];
}

/* The i-th element of t in row-major order (general ndim). */
static float nth(const ln_tensor *t, int64_t n)
{
	int64_t off = 0;
	for (int d = t->ndim - 1; d >= 0; d--) {
		off += (n % t->shape[d]) * t->stride[d];
		n /= t->shape[d];
	}
	return ln_tensor_data(t)[off];
}

static void assert_shape(const ln_tensor *t, int ndim, const int64_t *shape)
{
	assert_int_equal(t->ndim, ndim);
	for (int d = 0; d < ndim; d++)
		assert_int_equal(t->shape[d], shape[d]);
}

static void assert_msg(const ln_error *err, const char *want)
{
	if (!strstr(err->msg, want))
		fail_msg("message \"%s\" does not contain \"%s\"", err->msg, want);
}

/* 3-D tensor {2,3,4} = arange and its view narrowed along dim 2 to [1,3):
 * shape {2,3,2}, not contiguous. */
static void strided_fixture(ln_tensor *base, ln_tensor *view)
{
	ln_error err;
	static const int64_t s[3] = { 2, 3, 4 };
	arange(base, 3, s);
	*view = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(view, base, 2, 1, 2, &err), LN_OK);
	assert_false(ln_tensor_is_contiguous(view));
}

/* ---- error.c ---------------------------------------------------------------- */

static void test_error_fail(void **state)
{
	ln_error err = { 0 };
	assert_int_equal(ln_fail(&err, LN_ESHAPE, "got %d and %s", 42, "x"), LN_ESHAPE);
	assert_int_equal(err.code, LN_ESHAPE);
	assert_string_equal(err.msg, "got 42 and x");
	assert_int_equal(ln_fail(NULL, LN_EIO, "ignored %d", 1), LN_EIO);
	/* long messages are cut, still terminated */
	char big[2 * LN_ERROR_MSG_MAX];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	ln_fail(&err, LN_EARG, "%s", big);
	assert_int_equal(strlen(err.msg), LN_ERROR_MSG_MAX - 1);
}

static void test_status_names(void **state)
{
	assert_string_equal(ln_status_name(LN_OK), "LN_OK");
	assert_string_equal(ln_status_name(LN_ESHAPE), "LN_ESHAPE");
	assert_string_equal(ln_status_name(LN_ERANGE), "LN_ERANGE");
	assert_string_equal(ln_status_name(LN_ENAN), "LN_ENAN");
	assert_string_equal(ln_status_name(LN_ENOMEM), "LN_ENOMEM");
	assert_string_equal(ln_status_name(LN_EIO), "LN_EIO");
	assert_string_equal(ln_status_name(LN_EFORMAT), "LN_EFORMAT");
	assert_string_equal(ln_status_name(LN_EARG), "LN_EARG");
	assert_string_equal(ln_status_name(LN_ESTATE), "LN_ESTATE");
	assert_non_null(ln_status_name(LN_STATUS_COUNT));
	assert_non_null(ln_status_name((ln_status)-1));
}

static void test_shape_str(void **state)
{
	char buf[64];
	const int64_t s[4] = { 2, 3, 64, 1000000 };
	assert_string_equal(ln_shape_str(buf, sizeof buf, 2, s), "{2,3}");
	assert_string_equal(ln_shape_str(buf, sizeof buf, 1, s), "{2}");
	assert_string_equal(ln_shape_str(buf, sizeof buf, 4, s), "{2,3,64,1000000}");
	assert_string_equal(ln_shape_str(buf, sizeof buf, 0, s), "{}");
	/* "{2,3,64,1000000}" is 16 characters: exactly fits in 17 */
	assert_string_equal(ln_shape_str(buf, 17, 4, s), "{2,3,64,1000000}");
	/* does not fit: cut and marked */
	assert_string_equal(ln_shape_str(buf, 16, 4, s), "{2,3,64...");
	assert_string_equal(ln_shape_str(buf, 8, 4, s), "{2,3...");
	assert_string_equal(ln_shape_str(buf, 4, 4, s), "...");
	assert_string_equal(ln_shape_str(buf, 3, 4, s), "..");
	assert_string_equal(ln_shape_str(buf, 1, 4, s), "");
	for (size_t n = 1; n <= 20; n++) {
		memset(buf, 'z', sizeof buf);
		ln_shape_str(buf, n, 4, s);
		assert_true(strlen(buf) < n);
	}
	const int64_t neg[2] = { -1, 5 };
	assert_string_equal(ln_shape_str(buf, sizeof buf, 2, neg), "{-1,5}");
}

/* ---- rng.c ------------------------------------------------------------------- */

/* Runs first: before anything seeds it, the generator is in its fixed
 * default state, so a run without lunet.seed is reproducible. */
static void test_rng_default_state(void **state)
{
	uint64_t first = ln_rng_next(ln_rng_global());
	ln_rng_seed(ln_rng_global(), 0x5eed);
	assert_true(ln_rng_next(ln_rng_global()) == first);
}

static void test_rng_known_answers(void **state)
{
	/* splitmix64 from 0: its first output is 0xe220a8397b1dcdaf (Vigna's
	 * reference splitmix64.c); it becomes state word 0. */
	uint64_t st[4];
	ln_rng_seed(ln_rng_global(), 0);
	ln_rng_get_state(ln_rng_global(), st);
	assert_true(st[0] == 0xe220a8397b1dcdafULL);
	/* xoshiro256** from state {1,2,3,4} (reference xoshiro256starstar.c) */
	const uint64_t s1234[4] = { 1, 2, 3, 4 };
	ln_rng_set_state(ln_rng_global(), s1234);
	assert_true(ln_rng_next(ln_rng_global()) == 11520u);
	assert_true(ln_rng_next(ln_rng_global()) == 0u);
	assert_true(ln_rng_next(ln_rng_global()) == 1509978240u);
	assert_true(ln_rng_next(ln_rng_global()) == 1215971899390074240ULL);
}

static void test_rng_reproducible(void **state)
{
	uint64_t a[16], b[16];
	ln_rng_seed(ln_rng_global(), SEED);
	for (int i = 0; i < 16; i++)
		a[i] = ln_rng_next(ln_rng_global());
	ln_rng_seed(ln_rng_global(), SEED);
	for (int i = 0; i < 16; i++)
		b[i] = ln_rng_next(ln_rng_global());
	assert_memory_equal(a, b, sizeof a);
	ln_rng_seed(ln_rng_global(), SEED + 1);
	assert_true(ln_rng_next(ln_rng_global()) != a[0]);

	/* get/set state resumes the exact sequence */
	ln_rng_seed(ln_rng_global(), SEED);
	(void)ln_rng_next(ln_rng_global());
	uint64_t st[4];
	ln_rng_get_state(ln_rng_global(), st);
	double u1 = ln_rng_uniform(ln_rng_global()), u2 = ln_rng_uniform(ln_rng_global());
	ln_rng_set_state(ln_rng_global(), st);
	assert_true(ln_rng_uniform(ln_rng_global()) == u1);
	assert_true(ln_rng_uniform(ln_rng_global()) == u2);
}

static void test_rng_normal_cache_reset(void **state)
{
	/* after an odd number of normals one is cached; seeding must drop it */
	ln_rng_seed(ln_rng_global(), SEED);
	double n1 = ln_rng_normal(ln_rng_global()), n2 = ln_rng_normal(ln_rng_global());
	ln_rng_seed(ln_rng_global(), SEED);
	assert_true(ln_rng_normal(ln_rng_global()) == n1);  /* spare (n2) pending */
	ln_rng_seed(ln_rng_global(), SEED);
	assert_true(ln_rng_normal(ln_rng_global()) == n1);
	assert_true(ln_rng_normal(ln_rng_global()) == n2);

	uint64_t st[4];
	ln_rng_seed(ln_rng_global(), SEED);
	ln_rng_get_state(ln_rng_global(), st);
	double m1 = ln_rng_normal(ln_rng_global());  /* leaves a spare */
	ln_rng_set_state(ln_rng_global(), st);
	assert_true(ln_rng_normal(ln_rng_global()) == m1);
}

static void test_rng_distributions(void **state)
{
	ln_rng_seed(ln_rng_global(), SEED);
	const int n = 200000;
	double sum = 0, sq = 0, usum = 0;
	for (int i = 0; i < n; i++) {
		double u = ln_rng_uniform(ln_rng_global());
		assert_true(u >= 0.0 && u < 1.0);
		usum += u;
		double z = ln_rng_normal(ln_rng_global());
		assert_true(isfinite(z));
		sum += z;
		sq += z * z;
	}
	/* 5 standard errors */
	assert_true(fabs(usum / n - 0.5) < 5 * sqrt(1.0 / 12 / n));
	assert_true(fabs(sum / n) < 5 / sqrt((double)n));
	assert_true(fabs(sq / n - 1.0) < 5 * sqrt(2.0 / n));

	int counts[7] = { 0 };
	for (int i = 0; i < 70000; i++) {
		uint64_t r = ln_rng_below(ln_rng_global(), 7);
		assert_true(r < 7);
		counts[r]++;
	}
	for (int i = 0; i < 7; i++)
		assert_true(abs(counts[i] - 10000) < 500);
	for (int i = 0; i < 100; i++)
		assert_true(ln_rng_below(ln_rng_global(), 1) == 0);
	uint64_t big = (UINT64_C(1) << 63) + 12345;
	for (int i = 0; i < 100; i++)
		assert_true(ln_rng_below(ln_rng_global(), big) < big);
}

/* ---- creation, references ---------------------------------------------------- */

static void test_alloc(void **state)
{
	ln_error err;
	ln_tensor t = LN_TENSOR_EMPTY;
	assert_true(ln_tensor_is_empty(&t));
	assert_int_equal(ln_tensor_numel(&t), 0);
	const int64_t s[3] = { 2, 3, 4 };
	uint64_t live = live_bytes();
	assert_int_equal(ln_tensor_alloc(&t, 3, s, &err), LN_OK);
	assert_false(ln_tensor_is_empty(&t));
	assert_shape(&t, 3, s);
	assert_int_equal(t.stride[0], 12);
	assert_int_equal(t.stride[1], 4);
	assert_int_equal(t.stride[2], 1);
	assert_int_equal(t.offset, 0);
	assert_int_equal(ln_tensor_numel(&t), 24);
	assert_true(ln_tensor_is_contiguous(&t));
	assert_int_equal(t.storage->refcount, 1);
	assert_true(t.storage->capacity >= 24);
	assert_int_equal((uintptr_t)ln_tensor_data(&t) % LN_ALIGN, 0);
	for (int i = 0; i < 24; i++)
		assert_float_equal(ln_tensor_data(&t)[i], 0.0f, 0);
	assert_true(live_bytes() > live + 24 * sizeof(float) - 1);
	ln_tensor_release(&t);
	assert_true(ln_tensor_is_empty(&t));
	assert_int_equal(live_bytes(), live);
	ln_tensor_release(&t);  /* idempotent */
}

static void test_alloc_errors(void **state)
{
	ln_error err;
	ln_tensor t = LN_TENSOR_EMPTY;
	const int64_t s9[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
	assert_int_equal(ln_tensor_alloc(&t, 9, s9, &err), LN_ERANGE);
	assert_int_equal(err.code, LN_ERANGE);
	assert_msg(&err, "expected 1 to 8 dimensions, got 9");
	assert_true(ln_tensor_is_empty(&t));
	assert_int_equal(ln_tensor_alloc(&t, 0, s9, &err), LN_ERANGE);
	assert_msg(&err, "got 0");

	const int64_t zero[2] = { 2, 0 };
	assert_int_equal(ln_tensor_alloc(&t, 2, zero, &err), LN_ERANGE);
	assert_msg(&err, "size of dimension 2 is 0 in {2,0}");
	const int64_t neg[3] = { 2, 3, -4 };
	assert_int_equal(ln_tensor_alloc(&t, 3, neg, &err), LN_ERANGE);
	assert_msg(&err, "dimension 3 is -4");

	/* numel overflow */
	const int64_t huge[3] = { INT64_C(1) << 40, INT64_C(1) << 40, 16 };
	assert_int_equal(ln_tensor_alloc(&t, 3, huge, &err), LN_ERANGE);
	assert_msg(&err, "too many elements");
	/* representable but beyond the allocator's limit */
	const int64_t big[2] = { INT64_C(1) << 20, INT64_C(1) << 20 };
	uint64_t live = live_bytes();
	assert_int_equal(ln_tensor_alloc(&t, 2, big, &err), LN_ENOMEM);
	assert_msg(&err, "{1048576,1048576}");
	assert_true(ln_tensor_is_empty(&t));
	assert_int_equal(live_bytes(), live);
	/* err may be NULL */
	assert_int_equal(ln_tensor_alloc(&t, 2, zero, NULL), LN_ERANGE);
}

static void test_ensure(void **state)
{
	ln_error err;
	ln_tensor t = LN_TENSOR_EMPTY;
	const int64_t s1[2] = { 4, 5 }, s2[3] = { 2, 2, 3 }, s3[2] = { 10, 10 };
	uint64_t live0 = live_bytes();
	assert_int_equal(ln_tensor_ensure(&t, 2, s1, &err), LN_OK);
	assert_shape(&t, 2, s1);
	assert_true(ln_tensor_is_contiguous(&t));
	for (int i = 0; i < 20; i++)
		assert_float_equal(ln_tensor_data(&t)[i], 0.0f, 0);
	ln_storage *st = t.storage;

	/* same or smaller: no allocation, same storage, new shape */
	uint64_t n0 = alloc_count();
	assert_int_equal(ln_tensor_ensure(&t, 2, s1, &err), LN_OK);
	assert_int_equal(ln_tensor_ensure(&t, 3, s2, &err), LN_OK);
	assert_int_equal(alloc_count(), n0);
	assert_ptr_equal(t.storage, st);
	assert_shape(&t, 3, s2);
	assert_int_equal(t.stride[0], 6);
	assert_int_equal(t.stride[1], 3);
	assert_int_equal(t.stride[2], 1);
	assert_int_equal(ln_tensor_ensure(&t, 2, s1, &err), LN_OK);
	assert_int_equal(alloc_count(), n0);

	/* larger: new zeroed storage, the old one released */
	ln_tensor_fill(&t, 3.0f);
	assert_int_equal(ln_tensor_ensure(&t, 2, s3, &err), LN_OK);
	assert_shape(&t, 2, s3);
	assert_true(t.storage->capacity >= 100);
	assert_int_equal(t.storage->refcount, 1);
	for (int i = 0; i < 100; i++)
		assert_float_equal(ln_tensor_data(&t)[i], 0.0f, 0);

	/* from a view with an offset: back to offset 0 of the same storage */
	ln_tensor v = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(&v, &t, 0, 5, 5, &err), LN_OK);
	assert_int_equal(v.offset, 50);
	n0 = alloc_count();
	assert_int_equal(ln_tensor_ensure(&v, 2, s1, &err), LN_OK);
	assert_int_equal(alloc_count(), n0);
	assert_int_equal(v.offset, 0);
	assert_ptr_equal(v.storage, t.storage);
	assert_true(ln_tensor_is_contiguous(&v));
	ln_tensor_release(&v);

	/* errors leave t as it was */
	const int64_t bad[2] = { 3, 0 };
	ln_storage *keep = t.storage;
	assert_int_equal(ln_tensor_ensure(&t, 2, bad, &err), LN_ERANGE);
	assert_msg(&err, "size of dimension 2 is 0");
	assert_ptr_equal(t.storage, keep);
	assert_shape(&t, 2, s3);
	const int64_t more[2] = { 11, 11 };
	ln_alloc_fail_nth(1);
	assert_int_equal(ln_tensor_ensure(&t, 2, more, &err), LN_ENOMEM);
	assert_ptr_equal(t.storage, keep);
	assert_shape(&t, 2, s3);
	ln_tensor_release(&t);
	assert_int_equal(live_bytes(), live0);
}

static void test_ref_release(void **state)
{
	ln_tensor t, v = LN_TENSOR_EMPTY, w = LN_TENSOR_EMPTY;
	const int64_t s[2] = { 3, 4 };
	uint64_t live = live_bytes();
	arange(&t, 2, s);
	ln_tensor_ref(&v, &t);
	ln_tensor_ref(&w, &v);
	assert_int_equal(t.storage->refcount, 3);
	assert_ptr_equal(ln_tensor_data(&v), ln_tensor_data(&t));
	ln_tensor_data(&w)[5] = -1.0f;
	assert_float_equal(ln_tensor_data(&t)[5], -1.0f, 0);
	ln_tensor_release(&t);
	assert_true(ln_tensor_is_empty(&t));
	assert_int_equal(v.storage->refcount, 2);
	ln_tensor_release(&t);  /* releasing an empty tensor does not touch others */
	assert_int_equal(v.storage->refcount, 2);
	ln_tensor_release(&v);
	assert_float_equal(ln_tensor_data(&w)[5], -1.0f, 0);
	assert_true(live_bytes() > live);
	ln_tensor_release(&w);
	assert_int_equal(live_bytes(), live);
}

/* ---- queries ------------------------------------------------------------------- */

static void test_queries(void **state)
{
	ln_error err;
	ln_tensor base, v, row = LN_TENSOR_EMPTY, rows = LN_TENSOR_EMPTY;
	strided_fixture(&base, &v);
	char buf[32];
	assert_string_equal(ln_tensor_shape_str(&v, buf, sizeof buf), "{2,3,2}");
	assert_int_equal(ln_tensor_numel(&v), 12);
	assert_true(ln_tensor_is_contiguous(&base));
	/* narrowing the first dimension keeps it contiguous */
	assert_int_equal(ln_tensor_narrow(&rows, &base, 0, 1, 1, &err), LN_OK);
	assert_true(ln_tensor_is_contiguous(&rows));
	assert_int_equal(ln_tensor_select(&row, &v, 1, &err), LN_OK);
	assert_false(ln_tensor_is_contiguous(&row));
	assert_true(ln_tensor_same_shape(&base, &base));
	assert_false(ln_tensor_same_shape(&base, &v));
	assert_false(ln_tensor_same_shape(&v, &row));

	/* index_offset: base[1][2][3] is element 1*12+2*4+3 = 23 */
	const int64_t i1[3] = { 1, 2, 3 };
	assert_int_equal(ln_tensor_index_offset(&base, i1), 23);
	/* v[1][2][1] is base[1][2][2] = 22 */
	const int64_t i2[3] = { 1, 2, 1 };
	assert_float_equal(ln_tensor_data(&v)[ln_tensor_index_offset(&v, i2)], 22.0f, 0);
	ln_tensor_release(&row);
	ln_tensor_release(&rows);
	ln_tensor_release(&v);
	ln_tensor_release(&base);
}

/* ---- views --------------------------------------------------------------------- */

static void test_select(void **state)
{
	ln_error err;
	ln_tensor t, s = LN_TENSOR_EMPTY, s2 = LN_TENSOR_EMPTY;
	const int64_t sh[3] = { 2, 3, 4 };
	arange(&t, 3, sh);
	assert_int_equal(ln_tensor_select(&s, &t, 1, &err), LN_OK);
	const int64_t want[2] = { 3, 4 };
	assert_shape(&s, 2, want);
	assert_ptr_equal(s.storage, t.storage);
	assert_int_equal(t.storage->refcount, 2);
	for (int j = 0; j < 3; j++)
		for (int k = 0; k < 4; k++)
			assert_float_equal(at3(&s, j, k, 0), 12 + 4 * j + k, 0);
	/* select of a select: t[1][2] = {20,21,22,23} */
	assert_int_equal(ln_tensor_select(&s2, &s, 2, &err), LN_OK);
	assert_int_equal(s2.ndim, 1);
	assert_int_equal(s2.shape[0], 4);
	for (int k = 0; k < 4; k++)
		assert_float_equal(at3(&s2, k, 0, 0), 20 + k, 0);
	/* writes go through to the base */
	ln_tensor_data(&s2)[0] = 99.0f;
	assert_float_equal(ln_tensor_data(&t)[20], 99.0f, 0);

	ln_tensor bad = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_select(&bad, &s2, 0, &err), LN_ESHAPE);
	assert_msg(&err, "1-D tensor {4}");
	assert_int_equal(ln_tensor_select(&bad, &t, 2, &err), LN_ERANGE);
	assert_msg(&err, "index 3 is outside 1..2");
	assert_int_equal(ln_tensor_select(&bad, &t, -1, &err), LN_ERANGE);
	assert_msg(&err, "index 0 is outside 1..2");
	assert_int_equal(ln_tensor_select(&bad, &t, INT64_MAX, &err), LN_ERANGE);
	assert_int_equal(ln_tensor_select(&bad, &t, INT64_MIN, &err), LN_ERANGE);
	assert_true(ln_tensor_is_empty(&bad));
	assert_int_equal(t.storage->refcount, 3);
	ln_tensor_release(&s2);
	ln_tensor_release(&s);
	ln_tensor_release(&t);
}

static void test_narrow_each_dim(void **state)
{
	ln_error err;
	ln_tensor t;
	const int64_t sh[3] = { 3, 4, 5 };
	arange(&t, 3, sh);
	for (int dim = 0; dim < 3; dim++) {
		for (int64_t start = 0; start < sh[dim]; start++) {
			for (int64_t len = 1; start + len <= sh[dim]; len++) {
				ln_tensor v = LN_TENSOR_EMPTY;
				assert_int_equal(ln_tensor_narrow(&v, &t, dim, start, len, &err), LN_OK);
				assert_int_equal(v.shape[dim], len);
				for (int64_t i = 0; i < v.shape[0]; i++)
					for (int64_t j = 0; j < v.shape[1]; j++)
						for (int64_t k = 0; k < v.shape[2]; k++) {
							int64_t src[3] = { i, j, k };
							src[dim] += start;
							float want = (float)(src[0] * 20 + src[1] * 5 + src[2]);
							assert_float_equal(at3(&v, i, j, k), want, 0);
						}
				ln_tensor_release(&v);
			}
		}
	}
	/* narrow of a narrow */
	ln_tensor a = LN_TENSOR_EMPTY, b = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(&a, &t, 2, 1, 3, &err), LN_OK);
	assert_int_equal(ln_tensor_narrow(&b, &a, 2, 1, 2, &err), LN_OK);
	/* b[i][j][k] = t[i][j][k+2] */
	assert_float_equal(at3(&b, 2, 3, 1), 2 * 20 + 3 * 5 + 3, 0);
	ln_tensor_release(&a);
	ln_tensor_release(&b);
	ln_tensor_release(&t);
}

static void test_narrow_errors(void **state)
{
	ln_error err;
	ln_tensor t, v = LN_TENSOR_EMPTY;
	const int64_t sh[3] = { 2, 3, 4 };
	arange(&t, 3, sh);
	/* dim 1 (0-based) has size 3: start 2, len 3 covers 3..5 in 1-based terms */
	assert_int_equal(ln_tensor_narrow(&v, &t, 1, 2, 3, &err), LN_ERANGE);
	assert_msg(&err, "dimension 2 has size 3, range 3..5 is outside it");
	assert_int_equal(ln_tensor_narrow(&v, &t, 2, -1, 2, &err), LN_ERANGE);
	assert_msg(&err, "dimension 3 has size 4, range 0..1 is outside it");
	assert_int_equal(ln_tensor_narrow(&v, &t, 0, 2, 1, &err), LN_ERANGE);
	assert_msg(&err, "dimension 1 has size 2, range 3..3 is outside it");
	assert_int_equal(ln_tensor_narrow(&v, &t, 0, 0, 0, &err), LN_ERANGE);
	assert_msg(&err, "length must be >= 1, got 0");
	assert_int_equal(ln_tensor_narrow(&v, &t, 3, 0, 1, &err), LN_ERANGE);
	assert_msg(&err, "dimension 4 does not exist in 3-D tensor {2,3,4}");
	assert_int_equal(ln_tensor_narrow(&v, &t, -4, 0, 1, &err), LN_ERANGE);
	assert_msg(&err, "dimension -4 does not exist in 3-D tensor {2,3,4}");
	/* a negative dimension counts from the end: -1 is dimension 3 */
	assert_int_equal(ln_tensor_narrow(&v, &t, -1, 1, 2, &err), LN_OK);
	assert_int_equal(v.shape[2], 2);
	assert_float_equal(ln_tensor_data(&v)[0], 1.0f, 0);
	ln_tensor_release(&v);
	/* a huge length must not overflow start+len into a "valid" range */
	assert_int_equal(ln_tensor_narrow(&v, &t, 2, 1, INT64_MAX, &err), LN_ERANGE);
	assert_msg(&err, "range 2..9223372036854775807 is outside it");
	assert_int_equal(ln_tensor_narrow(&v, &t, 2, INT64_MAX, 1, &err), LN_ERANGE);
	assert_int_equal(ln_tensor_narrow(&v, &t, 2, INT64_MIN, 1, &err), LN_ERANGE);
	assert_true(ln_tensor_is_empty(&v));
	assert_int_equal(t.storage->refcount, 1);
	ln_tensor_release(&t);
}

static void test_reshape(void **state)
{
	ln_error err;
	ln_tensor t, r = LN_TENSOR_EMPTY;
	const int64_t sh[2] = { 2, 6 };
	arange(&t, 2, sh);

	const int64_t s34[2] = { 3, 4 };
	assert_int_equal(ln_tensor_reshape(&r, &t, 2, s34, &err), LN_OK);
	assert_shape(&r, 2, s34);
	assert_ptr_equal(r.storage, t.storage);  /* a view */
	assert_float_equal(at3(&r, 2, 1, 0), 9.0f, 0);
	ln_tensor_data(&r)[9] = -9.0f;
	assert_float_equal(ln_tensor_data(&t)[9], -9.0f, 0);
	ln_tensor_release(&r);

	/* -1 is inferred in any position */
	const int64_t m1[3] = { 2, -1, 3 }, w1[3] = { 2, 2, 3 };
	assert_int_equal(ln_tensor_reshape(&r, &t, 3, m1, &err), LN_OK);
	assert_shape(&r, 3, w1);
	ln_tensor_release(&r);
	const int64_t m2[1] = { -1 }, w2[1] = { 12 };
	assert_int_equal(ln_tensor_reshape(&r, &t, 1, m2, &err), LN_OK);
	assert_shape(&r, 1, w2);
	ln_tensor_release(&r);
	const int64_t m3[2] = { 12, -1 }, w3[2] = { 12, 1 };
	assert_int_equal(ln_tensor_reshape(&r, &t, 2, m3, &err), LN_OK);
	assert_shape(&r, 2, w3);
	ln_tensor_release(&r);

	/* errors */
	ln_tensor s = LN_TENSOR_EMPTY;
	const int64_t s23[2] = { 2, 3 };
	arange(&s, 2, s23);
	const int64_t s42[2] = { 4, 2 };
	assert_int_equal(ln_tensor_reshape(&r, &s, 2, s42, &err), LN_ESHAPE);
	assert_msg(&err, "cannot view {2,3} (6 elements) as {4,2} (8 elements)");
	const int64_t s4m[2] = { 4, -1 };
	assert_int_equal(ln_tensor_reshape(&r, &s, 2, s4m, &err), LN_ESHAPE);
	assert_msg(&err, "cannot view {2,3} (6 elements) as {4,-1}");
	const int64_t s7m[2] = { 7, -1 };
	assert_int_equal(ln_tensor_reshape(&r, &s, 2, s7m, &err), LN_ESHAPE);
	const int64_t two[3] = { -1, 2, -1 };
	assert_int_equal(ln_tensor_reshape(&r, &s, 3, two, &err), LN_ERANGE);
	assert_msg(&err, "only one size may be -1");
	const int64_t zero[2] = { 0, 6 };
	assert_int_equal(ln_tensor_reshape(&r, &s, 2, zero, &err), LN_ERANGE);
	assert_msg(&err, "size of dimension 1 is 0");
	const int64_t m5[2] = { -5, 6 };
	assert_int_equal(ln_tensor_reshape(&r, &s, 2, m5, &err), LN_ERANGE);
	const int64_t ovf[3] = { INT64_C(1) << 40, INT64_C(1) << 40, 8 };
	assert_int_equal(ln_tensor_reshape(&r, &s, 3, ovf, &err), LN_ESHAPE);
	assert_msg(&err, "cannot view {2,3} (6 elements)");
	assert_int_equal(ln_tensor_reshape(&r, &s, 9, ovf, &err), LN_ERANGE);
	assert_true(ln_tensor_is_empty(&r));
	assert_int_equal(s.storage->refcount, 1);
	ln_tensor_release(&s);
	ln_tensor_release(&t);
}

static void test_reshape_strided_copies(void **state)
{
	ln_error err;
	ln_tensor base, v, r = LN_TENSOR_EMPTY;
	strided_fixture(&base, &v);  /* v {2,3,2}: v[i][j][k] = 12i + 4j + k + 1 */
	const int64_t s[2] = { 3, 4 };
	assert_int_equal(ln_tensor_reshape(&r, &v, 2, s, &err), LN_OK);
	assert_shape(&r, 2, s);
	assert_true(ln_tensor_is_contiguous(&r));
	assert_ptr_not_equal(r.storage, base.storage);
	/* row-major order of v: 1,2,5,6,9,10,13,14,17,18,21,22 */
	for (int n = 0; n < 12; n++) {
		int i = n / 6, j = (n / 2) % 3, k = n % 2;
		assert_float_equal(ln_tensor_data(&r)[n], 12 * i + 4 * j + k + 1, 0);
	}
	ln_tensor_release(&r);
	ln_tensor_release(&v);
	ln_tensor_release(&base);
}

/* ---- copies, fills --------------------------------------------------------------- */

static void test_clone(void **state)
{
	ln_error err;
	ln_tensor base, v, c = LN_TENSOR_EMPTY;
	strided_fixture(&base, &v);
	assert_int_equal(ln_tensor_clone(&c, &v, &err), LN_OK);
	assert_shape(&c, 3, v.shape);
	assert_true(ln_tensor_is_contiguous(&c));
	assert_ptr_not_equal(c.storage, base.storage);
	for (int64_t n = 0; n < 12; n++)
		assert_float_equal(ln_tensor_data(&c)[n], nth(&v, n), 0);
	ln_tensor_data(&c)[0] = 100.0f;
	assert_float_equal(nth(&v, 0), 1.0f, 0);
	ln_tensor_release(&c);
	ln_tensor_release(&v);
	ln_tensor_release(&base);
}

static void test_copy(void **state)
{
	ln_error err;
	ln_tensor b1, v1, b2, v2, flat;
	strided_fixture(&b1, &v1);
	strided_fixture(&b2, &v2);
	ln_tensor_fill(&b2, -1.0f);
	/* strided -> strided, same shape */
	assert_int_equal(ln_tensor_copy(&v2, &v1, &err), LN_OK);
	for (int64_t n = 0; n < 24; n++) {
		bool inside = n % 4 == 1 || n % 4 == 2;
		assert_float_equal(ln_tensor_data(&b2)[n], inside ? (float)n : -1.0f, 0);
	}
	/* contiguous {12} -> strided {2,3,2}: shapes differ, numel equal; only
	 * the flat copy takes it */
	const int64_t s12[1] = { 12 };
	arange(&flat, 1, s12);
	assert_int_equal(ln_tensor_copy(&v2, &flat, &err), LN_ESHAPE);
	assert_msg(&err, "cannot copy {12} into {2,3,2}: the source must have the destination's "
	                 "shape or broadcast to it");
	assert_int_equal(ln_tensor_copy_flat(&v2, &flat, &err), LN_OK);
	for (int64_t n = 0; n < 12; n++)
		assert_float_equal(nth(&v2, n), (float)n, 0);
	/* strided {2,3,2} -> a strided {3,4} view (narrowed columns of a {3,5}) */
	ln_tensor b3, v3 = LN_TENSOR_EMPTY;
	const int64_t s35[2] = { 3, 5 };
	arange(&b3, 2, s35);
	assert_int_equal(ln_tensor_narrow(&v3, &b3, 1, 1, 4, &err), LN_OK);
	assert_int_equal(ln_tensor_copy_flat(&v3, &v1, &err), LN_OK);
	for (int64_t n = 0; n < 12; n++)
		assert_float_equal(nth(&v3, n), nth(&v1, n), 0);
	for (int i = 0; i < 3; i++)
		assert_float_equal(ln_tensor_data(&b3)[i * 5], (float)(i * 5), 0);  /* column 1 kept */
	/* contiguous -> contiguous of another shape */
	ln_tensor c34;
	const int64_t s34[2] = { 3, 4 };
	arange(&c34, 2, s34);
	ln_tensor_fill(&c34, 0.0f);
	assert_int_equal(ln_tensor_copy_flat(&c34, &flat, &err), LN_OK);
	for (int64_t n = 0; n < 12; n++)
		assert_float_equal(ln_tensor_data(&c34)[n], (float)n, 0);
	/* numel mismatch */
	assert_int_equal(ln_tensor_copy_flat(&b1, &flat, &err), LN_ESHAPE);
	assert_msg(&err, "cannot copy {12} (12 elements) into {2,3,4} (24 elements)");
	ln_tensor_release(&c34);
	ln_tensor_release(&v3);
	ln_tensor_release(&b3);
	ln_tensor_release(&flat);
	ln_tensor_release(&v1);
	ln_tensor_release(&b1);
	ln_tensor_release(&v2);
	ln_tensor_release(&b2);
}

static void record(float *v, void *ctx)
{
	float **out = ctx;
	*(*out)++ = *v;
	*v = -*v;
}

static void test_fill_foreach(void **state)
{
	ln_tensor base, v;
	strided_fixture(&base, &v);
	ln_tensor_fill(&v, 7.5f);
	for (int64_t n = 0; n < 24; n++) {
		bool inside = n % 4 == 1 || n % 4 == 2;
		assert_float_equal(ln_tensor_data(&base)[n], inside ? 7.5f : (float)n, 0);
	}
	ln_tensor_fill(&base, 1.0f);
	for (int64_t n = 0; n < 24; n++)
		assert_float_equal(ln_tensor_data(&base)[n], 1.0f, 0);

	float *d = ln_tensor_data(&base);
	for (int64_t n = 0; n < 24; n++)
		d[n] = (float)n;
	float seen[12], *p = seen;
	ln_tensor_foreach(&v, record, &p);
	assert_int_equal(p - seen, 12);
	/* row-major order of the view: 1,2,5,6,9,10,... */
	for (int n = 0; n < 12; n++)
		assert_float_equal(seen[n], (float)(4 * (n / 2) + 1 + n % 2), 0);
	for (int64_t n = 0; n < 24; n++) {
		bool inside = n % 4 == 1 || n % 4 == 2;
		assert_float_equal(d[n], inside ? -(float)n : (float)n, 0);
	}
	ln_tensor_release(&v);
	ln_tensor_release(&base);
}

/* ---- elementwise --------------------------------------------------------------- */

static double ref_binop(ln_binop op, double x, double y)
{
	switch (op) {
	case LN_ADD: return x + y;
	case LN_SUB: return x - y;
	case LN_MUL: return x * y;
	case LN_DIV: return x / y;
	case LN_POW: return pow(x, y);
	case LN_GT: return x > y;
	case LN_LT: return x < y;
	case LN_GE: return x >= y;
	case LN_LE: return x <= y;
	case LN_EQ: return x == y;
	case LN_NE: return x != y;
	case LN_BINOP_COUNT: break;
	}
	return NAN;
}

static void test_binary(void **state)
{
	ln_error err;
	ln_tensor a, b, o = LN_TENSOR_EMPTY;
	const int64_t s[2] = { 2, 3 };
	const float av[6] = { 1, 2, 3, 4, 5, 6 }, bv[6] = { 2, 4, 8, -1, 0.5f, 3 };
	from_values(&a, 2, s, av);
	from_values(&b, 2, s, bv);
	const float want[4][6] = {
		{ 3, 6, 11, 3, 5.5f, 9 },
		{ -1, -2, -5, 5, 4.5f, 3 },
		{ 2, 8, 24, -4, 2.5f, 18 },
		{ 0.5f, 0.5f, 0.375f, -4, 10, 2 },
	};
	for (int op = LN_ADD; op <= LN_DIV; op++) {
		assert_int_equal(ln_tensor_binary(&o, (ln_binop)op, &a, &b, &err), LN_OK);
		assert_shape(&o, 2, s);
		for (int i = 0; i < 6; i++)
			assert_float_equal(ln_tensor_data(&o)[i], want[op][i], 0);
		ln_tensor_release(&o);
	}
	/* shape mismatch names both shapes */
	ln_tensor c;
	const int64_t s32[2] = { 3, 2 };
	arange(&c, 2, s32);
	assert_int_equal(ln_tensor_binary(&o, LN_ADD, &a, &c, &err), LN_ESHAPE);
	assert_msg(&err, "shapes {2,3} and {3,2} do not broadcast: dimension -1 has sizes 3 and 2");
	assert_true(ln_tensor_is_empty(&o));
	ln_tensor_release(&c);
	ln_tensor_release(&a);
	ln_tensor_release(&b);
}

static void test_binary_strided(void **state)
{
	ln_error err;
	ln_tensor b1, v1, b2, v2, o = LN_TENSOR_EMPTY;
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t s1[3] = { 3, 4, 5 }, s2[3] = { 3, 5, 4 };
	random_tensor(&b1, 3, s1, 0.5f, 2.0f);
	random_tensor(&b2, 3, s2, 0.5f, 2.0f);
	/* v1 = b1[:, 1:4, 1:5] -> {3,3,4} via two narrows; v2 = b2[:, 2:5, :] */
	ln_tensor t1 = LN_TENSOR_EMPTY;
	v1 = LN_TENSOR_EMPTY;
	v2 = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(&t1, &b1, 1, 1, 3, &err), LN_OK);
	assert_int_equal(ln_tensor_narrow(&v1, &t1, 2, 1, 4, &err), LN_OK);
	assert_int_equal(ln_tensor_narrow(&v2, &b2, 1, 2, 3, &err), LN_OK);
	assert_true(ln_tensor_same_shape(&v1, &v2));
	for (int op = LN_ADD; op < LN_BINOP_COUNT; op++) {
		/* strided with strided, strided with contiguous, contiguous with strided */
		ln_tensor c2 = LN_TENSOR_EMPTY;
		assert_int_equal(ln_tensor_clone(&c2, &v2, &err), LN_OK);
		const ln_tensor *lhs[3] = { &v1, &v1, &c2 }, *rhs[3] = { &v2, &c2, &v1 };
		for (int c = 0; c < 3; c++) {
			assert_int_equal(ln_tensor_binary(&o, (ln_binop)op, lhs[c], rhs[c], &err), LN_OK);
			assert_true(ln_tensor_is_contiguous(&o));
			for (int64_t n = 0; n < 36; n++) {
				float want = (float)ref_binop((ln_binop)op, nth(lhs[c], n), nth(rhs[c], n));
				/* powf may differ from the double pow rounded by an ulp */
				assert_float_equal(ln_tensor_data(&o)[n], want,
				                   op == LN_POW ? 2e-7f * fabsf(want) : 0);
			}
			ln_tensor_release(&o);
		}
		ln_tensor_release(&c2);
	}
	ln_tensor_release(&t1);
	ln_tensor_release(&v1);
	ln_tensor_release(&v2);
	ln_tensor_release(&b1);
	ln_tensor_release(&b2);
}

static void test_binary_scalar(void **state)
{
	ln_error err;
	ln_tensor base, v, o = LN_TENSOR_EMPTY;
	strided_fixture(&base, &v);  /* values 1,2,5,6,... */
	for (int op = LN_ADD; op < LN_BINOP_COUNT; op++) {
		for (int first = 0; first <= 1; first++) {
			assert_int_equal(ln_tensor_binary_scalar(&o, (ln_binop)op, &v, 4.0f, first, &err),
			                 LN_OK);
			assert_shape(&o, 3, v.shape);
			for (int64_t n = 0; n < 12; n++) {
				double x = nth(&v, n);
				float want = (float)(first ? ref_binop((ln_binop)op, 4.0, x)
				                           : ref_binop((ln_binop)op, x, 4.0));
				assert_float_equal(ln_tensor_data(&o)[n], want,
				                   op == LN_POW ? 2e-7f * fabsf(want) : 0);
			}
			ln_tensor_release(&o);
		}
	}
	/* by hand: 4 - v and v / 4 for the first element (1) */
	assert_int_equal(ln_tensor_binary_scalar(&o, LN_SUB, &v, 4.0f, true, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[0], 3.0f, 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_binary_scalar(&o, LN_DIV, &v, 4.0f, false, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[0], 0.25f, 0);
	ln_tensor_release(&o);
	ln_tensor_release(&v);
	ln_tensor_release(&base);
}

static double ref_unop(ln_unop op, double x)
{
	switch (op) {
	case LN_NEG: return -x;
	case LN_EXP: return exp(x);
	case LN_LOG: return log(x);
	case LN_ABS: return fabs(x);
	case LN_SQRT: return sqrt(x);
	case LN_TANH: return tanh(x);
	case LN_SIGMOID: return 1.0 / (1.0 + exp(-x));
	}
	return NAN;
}

static void test_unary(void **state)
{
	ln_error err;
	ln_tensor b, v = LN_TENSOR_EMPTY, o = LN_TENSOR_EMPTY;
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t s[2] = { 5, 7 };
	random_tensor(&b, 2, s, -3.0f, 3.0f);
	assert_int_equal(ln_tensor_narrow(&v, &b, 1, 2, 4, &err), LN_OK);
	for (int op = LN_NEG; op <= LN_SIGMOID; op++) {
		const ln_tensor *in[2] = { &b, &v };
		for (int c = 0; c < 2; c++) {
			assert_int_equal(ln_tensor_unary(&o, (ln_unop)op, in[c], &err), LN_OK);
			assert_shape(&o, 2, in[c]->shape);
			for (int64_t n = 0; n < ln_tensor_numel(in[c]); n++) {
				double x = nth(in[c], n);
				double want = ref_unop((ln_unop)op, x);
				float y = ln_tensor_data(&o)[n];
				if (isnan(want)) {  /* log and sqrt of negatives, as in libm */
					assert_true(isnan(y));
					continue;
				}
				if (!(fabs(y - want) <= 1e-6 * fmax(1.0, fabs(want))))
					fail_msg("seed %u: op %d of %.9g gave %.9g, want %.9g", SEED, op, x, y, want);
			}
			ln_tensor_release(&o);
		}
	}
	/* sigmoid and tanh saturate without overflow or NaN */
	const int64_t s4[1] = { 4 };
	const float ext[4] = { -1000.0f, -90.0f, 90.0f, 1000.0f };
	ln_tensor e;
	from_values(&e, 1, s4, ext);
	assert_int_equal(ln_tensor_unary(&o, LN_SIGMOID, &e, &err), LN_OK);
	const float sig[4] = { 0.0f, 0.0f, 1.0f, 1.0f };
	for (int i = 0; i < 4; i++) {
		float y = ln_tensor_data(&o)[i];
		assert_true(y >= 0.0f && y <= 1.0f);
		assert_true(fabsf(y - sig[i]) < 1e-30f);
	}
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_unary(&o, LN_TANH, &e, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[0], -1.0f, 0);
	assert_float_equal(ln_tensor_data(&o)[3], 1.0f, 0);
	ln_tensor_release(&o);
	ln_tensor_release(&e);
	ln_tensor_release(&v);
	ln_tensor_release(&b);
}

/* ---- reductions --------------------------------------------------------------- */

static void test_reductions(void **state)
{
	ln_tensor base, v;
	strided_fixture(&base, &v);
	/* base: 0..23 */
	assert_true(ln_tensor_sum(&base) == 276.0);
	assert_true(ln_tensor_mean(&base) == 11.5);
	assert_float_equal(ln_tensor_max(&base), 23.0f, 0);
	assert_float_equal(ln_tensor_min(&base), 0.0f, 0);
	/* v holds 4m+1 and 4m+2 for m = 0..5: sum 8*15 + 18 = 138 */
	assert_true(ln_tensor_sum(&v) == 138.0);
	assert_true(ln_tensor_mean(&v) == 11.5);
	assert_float_equal(ln_tensor_max(&v), 22.0f, 0);
	assert_float_equal(ln_tensor_min(&v), 1.0f, 0);

	/* accumulated in double: 2^24 + 1 + 1 + ... is exact */
	ln_tensor t;
	const int64_t s[1] = { 101 };
	arange(&t, 1, s);
	ln_tensor_fill(&t, 1.0f);
	ln_tensor_data(&t)[0] = 16777216.0f;
	assert_true(ln_tensor_sum(&t) == 16777316.0);
	/* NaN propagates through max and min, wherever it is */
	ln_tensor_fill(&t, 2.0f);
	ln_tensor_data(&t)[50] = NAN;
	assert_true(isnan(ln_tensor_max(&t)));
	assert_true(isnan(ln_tensor_min(&t)));
	assert_true(isnan(ln_tensor_sum(&t)));
	ln_tensor_data(&t)[50] = 2.0f;
	ln_tensor_data(&t)[0] = NAN;
	assert_true(isnan(ln_tensor_max(&t)));
	assert_true(isnan(ln_tensor_min(&t)));
	ln_tensor_data(&t)[0] = -INFINITY;
	assert_true(ln_tensor_min(&t) == -INFINITY);
	assert_float_equal(ln_tensor_max(&t), 2.0f, 0);
	ln_tensor_release(&t);
	ln_tensor_release(&v);
	ln_tensor_release(&base);
}

/* Reference for reduce_dim over a tensor of up to 3 dims via at3. */
static double ref_reduce(const ln_tensor *t, ln_reduce op, int dim, int64_t i, int64_t j, int64_t k)
{
	int64_t idx[3] = { i, j, k };
	int64_t size = t->shape[dim];
	double acc = 0, best = -INFINITY, worst = INFINITY;
	int64_t arg = -1, argmin = -1;
	for (int64_t q = 0; q < size; q++) {
		idx[dim] = q;
		double x = at3(t, idx[0], idx[1], idx[2]);
		acc += x;
		if (x > best) {
			best = x;
			arg = q;
		}
		if (x < worst) {
			worst = x;
			argmin = q;
		}
	}
	switch (op) {
	case LN_RSUM: return acc;
	case LN_RMEAN: return acc / (double)size;
	case LN_RMAX: return best;
	case LN_RMIN: return worst;
	case LN_RARGMAX: return (double)(arg + 1);
	case LN_RARGMIN: return (double)(argmin + 1);
	}
	return NAN;
}

static void test_reduce_dim(void **state)
{
	ln_error err;
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor b, v = LN_TENSOR_EMPTY;
	const int64_t s[3] = { 3, 4, 6 };
	random_tensor(&b, 3, s, -1.0f, 1.0f);
	assert_int_equal(ln_tensor_narrow(&v, &b, 2, 1, 5, &err), LN_OK);
	const ln_tensor *in[2] = { &b, &v };
	for (int c = 0; c < 2; c++) {
		const ln_tensor *t = in[c];
		for (int dim = 0; dim < 3; dim++) {
			for (int op = LN_RSUM; op <= LN_RARGMIN; op++) {
				ln_tensor o = LN_TENSOR_EMPTY;
				assert_int_equal(ln_tensor_reduce_dim(&o, (ln_reduce)op, t, dim, &err), LN_OK);
				int64_t want_shape[3] = { t->shape[0], t->shape[1], t->shape[2] };
				want_shape[dim] = 1;
				assert_shape(&o, 3, want_shape);
				for (int64_t i = 0; i < o.shape[0]; i++)
					for (int64_t j = 0; j < o.shape[1]; j++)
						for (int64_t k = 0; k < o.shape[2]; k++) {
							float want = (float)ref_reduce(t, (ln_reduce)op, dim, i, j, k);
							if (at3(&o, i, j, k) != want)
								fail_msg("seed %u: op %d dim %d at (%lld,%lld,%lld): %g != %g",
								         SEED, op, dim, (long long)i, (long long)j,
								         (long long)k, at3(&o, i, j, k), want);
						}
				ln_tensor_release(&o);
			}
		}
	}
	/* 2-D by hand: [[1 5 2] [7 0 7]] */
	ln_tensor h, o = LN_TENSOR_EMPTY;
	const int64_t s23[2] = { 2, 3 };
	const float hv[6] = { 1, 5, 2, 7, 0, 7 };
	from_values(&h, 2, s23, hv);
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RSUM, &h, 0, &err), LN_OK);
	const float cs[3] = { 8, 5, 9 };
	for (int i = 0; i < 3; i++)
		assert_float_equal(ln_tensor_data(&o)[i], cs[i], 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RMEAN, &h, 1, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[0], 8.0f / 3.0f, 1e-6f);
	assert_float_equal(ln_tensor_data(&o)[1], 14.0f / 3.0f, 1e-6f);
	ln_tensor_release(&o);
	/* argmax picks the first maximum: row 2 has 7 at positions 1 and 3 */
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RARGMAX, &h, 1, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[0], 2.0f, 0);
	assert_float_equal(ln_tensor_data(&o)[1], 1.0f, 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RARGMAX, &h, 0, &err), LN_OK);
	const float am[3] = { 2, 1, 2 };
	for (int i = 0; i < 3; i++)
		assert_float_equal(ln_tensor_data(&o)[i], am[i], 0);
	ln_tensor_release(&o);
	/* all equal: index 1 */
	ln_tensor_fill(&h, 3.0f);
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RARGMAX, &h, 1, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[0], 1.0f, 0);
	ln_tensor_release(&o);
	/* NaN: max/min give NaN, argmax points at the (first) NaN */
	ln_tensor_data(&h)[4] = NAN;
	ln_tensor_data(&h)[5] = NAN;
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RMAX, &h, 1, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[0], 3.0f, 0);
	assert_true(isnan(ln_tensor_data(&o)[1]));
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RMIN, &h, 1, &err), LN_OK);
	assert_true(isnan(ln_tensor_data(&o)[1]));
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RARGMAX, &h, 1, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[1], 2.0f, 0);
	ln_tensor_release(&o);
	/* dim out of range */
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RSUM, &h, 2, &err), LN_ERANGE);
	assert_msg(&err, "dimension 3 does not exist in 2-D tensor {2,3}");
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RSUM, &h, -3, &err), LN_ERANGE);
	assert_msg(&err, "dimension -3 does not exist in 2-D tensor {2,3}");
	assert_true(ln_tensor_is_empty(&o));
	ln_tensor_release(&h);
	ln_tensor_release(&v);
	ln_tensor_release(&b);
}

/* ---- linear algebra ------------------------------------------------------------- */

/* out[i][j] = sum_p a[i][p] b[p][j] in double, from the views' strides. */
static void check_matmul(const ln_tensor *a, const ln_tensor *b)
{
	ln_error err;
	ln_tensor o = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_matmul(&o, a, b, &err), LN_OK);
	const int64_t want[2] = { a->shape[0], b->shape[1] };
	assert_shape(&o, 2, want);
	int64_t k = a->shape[1];
	for (int64_t i = 0; i < want[0]; i++)
		for (int64_t j = 0; j < want[1]; j++) {
			double s = 0;
			for (int64_t p = 0; p < k; p++)
				s += (double)at3(a, i, p, 0) * at3(b, p, j, 0);
			assert_true(fabs(at3(&o, i, j, 0) - s) <= 1e-5 * (double)k);
		}
	ln_tensor_release(&o);
}

static void test_matmul(void **state)
{
	ln_error err;
	ln_tensor a, b, o = LN_TENSOR_EMPTY;
	/* by hand: [1 2 3; 4 5 6] x [7 8; 9 10; 11 12] = [58 64; 139 154] */
	const int64_t s23[2] = { 2, 3 }, s32[2] = { 3, 2 };
	const float av[6] = { 1, 2, 3, 4, 5, 6 }, bv[6] = { 7, 8, 9, 10, 11, 12 };
	from_values(&a, 2, s23, av);
	from_values(&b, 2, s32, bv);
	assert_int_equal(ln_tensor_matmul(&o, &a, &b, &err), LN_OK);
	const float ab[4] = { 58, 64, 139, 154 };
	for (int i = 0; i < 4; i++)
		assert_float_equal(ln_tensor_data(&o)[i], ab[i], 0);
	ln_tensor_release(&o);

	/* errors */
	assert_int_equal(ln_tensor_matmul(&o, &a, &a, &err), LN_ESHAPE);
	assert_msg(&err, "inner dimensions differ: {2,3} x {2,3}");
	ln_tensor c, d;
	const int64_t s45[2] = { 4, 5 }, s234[3] = { 2, 3, 4 };
	arange(&c, 2, s45);
	assert_int_equal(ln_tensor_matmul(&o, &a, &c, &err), LN_ESHAPE);
	assert_msg(&err, "inner dimensions differ: {2,3} x {4,5}");
	arange(&d, 3, s234);
	assert_int_equal(ln_tensor_matmul(&o, &d, &a, &err), LN_ESHAPE);
	assert_msg(&err, "inner dimensions differ: {2,3,4} x {2,3}");
	const int64_t s3[1] = { 3 };
	ln_tensor e;
	arange(&e, 1, s3);
	assert_int_equal(ln_tensor_matmul(&o, &e, &b, &err), LN_ESHAPE);
	assert_msg(&err, "expected tensors of at least 2 dimensions, got {3} x {3,2}");
	ln_tensor_release(&e);
	assert_true(ln_tensor_is_empty(&o));
	ln_tensor_release(&c);
	ln_tensor_release(&d);
	ln_tensor_release(&a);
	ln_tensor_release(&b);
}

static void test_matmul_layouts(void **state)
{
	ln_error err;
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor ba, bb;
	const int64_t sa[2] = { 9, 13 }, sb[2] = { 11, 8 };
	random_tensor(&ba, 2, sa, -1.0f, 1.0f);
	random_tensor(&bb, 2, sb, -1.0f, 1.0f);
	/* column-narrowed (row stride > row length), row-narrowed, single rows
	 * and columns, and a 3-D slice whose last dim is not unit-stride */
	ln_tensor a1 = LN_TENSOR_EMPTY, b1 = LN_TENSOR_EMPTY, a2 = LN_TENSOR_EMPTY,
	          b2 = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(&a1, &ba, 1, 2, 7, &err), LN_OK);   /* {9,7} */
	assert_int_equal(ln_tensor_narrow(&b1, &bb, 0, 3, 7, &err), LN_OK);   /* {7,8} */
	check_matmul(&a1, &b1);
	assert_int_equal(ln_tensor_narrow(&b2, &b1, 1, 1, 5, &err), LN_OK);   /* {7,5} strided */
	check_matmul(&a1, &b2);
	assert_int_equal(ln_tensor_narrow(&a2, &a1, 0, 4, 1, &err), LN_OK);   /* {1,7} */
	check_matmul(&a2, &b2);
	ln_tensor col = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(&col, &b2, 1, 2, 1, &err), LN_OK);  /* {7,1} */
	check_matmul(&a1, &col);
	check_matmul(&a2, &col);

	/* {2,3,4} narrowed to {2,3,2} along dim 2, selected at 1 along dim 0:
	 * a {3,2} view with strides (4,1) and offset 13 */
	ln_tensor t3, n3 = LN_TENSOR_EMPTY, s3 = LN_TENSOR_EMPTY;
	const int64_t s234[3] = { 2, 3, 4 };
	random_tensor(&t3, 3, s234, -1.0f, 1.0f);
	assert_int_equal(ln_tensor_narrow(&n3, &t3, 2, 1, 2, &err), LN_OK);
	assert_int_equal(ln_tensor_select(&s3, &n3, 1, &err), LN_OK);
	ln_tensor r2 = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(&r2, &b2, 0, 0, 2, &err), LN_OK);  /* {2,5} */
	check_matmul(&s3, &r2);

	/* column-major layout (the transpose of a contiguous tensor, built by
	 * hand from strides): gemm takes it with its transpose flag */
	ln_tensor tr = LN_TENSOR_EMPTY;
	ln_tensor_ref(&tr, &ba);  /* {9,13} seen as its transpose {13,9} */
	tr.shape[0] = 13;
	tr.shape[1] = 9;
	tr.stride[0] = 1;
	tr.stride[1] = 13;
	ln_tensor cols9 = LN_TENSOR_EMPTY;
	const int64_t s9x4[2] = { 9, 4 };
	random_tensor(&cols9, 2, s9x4, -1.0f, 1.0f);
	check_matmul(&tr, &cols9);
	/* doubly strided (neither unit stride): a copy is made */
	ln_tensor odd = LN_TENSOR_EMPTY;
	ln_tensor_ref(&odd, &ba);
	odd.shape[0] = 4;
	odd.shape[1] = 6;
	odd.stride[0] = 26;
	odd.stride[1] = 2;
	ln_tensor b6 = LN_TENSOR_EMPTY;
	const int64_t s6x3[2] = { 6, 3 };
	random_tensor(&b6, 2, s6x3, -1.0f, 1.0f);
	check_matmul(&odd, &b6);
	ln_tensor_release(&b6);
	ln_tensor_release(&odd);
	ln_tensor_release(&cols9);
	ln_tensor_release(&tr);
	ln_tensor_release(&r2);
	ln_tensor_release(&s3);
	ln_tensor_release(&n3);
	ln_tensor_release(&t3);
	ln_tensor_release(&col);
	ln_tensor_release(&a1);
	ln_tensor_release(&a2);
	ln_tensor_release(&b1);
	ln_tensor_release(&b2);
	ln_tensor_release(&ba);
	ln_tensor_release(&bb);
}

static void test_transpose(void **state)
{
	ln_error err;
	ln_tensor a, o = LN_TENSOR_EMPTY;
	const int64_t s[2] = { 3, 5 };
	arange(&a, 2, s);
	assert_int_equal(ln_tensor_transpose(&o, &a, &err), LN_OK);
	const int64_t w[2] = { 5, 3 };
	assert_shape(&o, 2, w);
	assert_true(ln_tensor_is_contiguous(&o));
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 3; j++)
			assert_float_equal(ln_tensor_data(&o)[i * 3 + j], (float)(j * 5 + i), 0);
	ln_tensor_release(&o);
	/* strided: columns 1..3 of a -> {3,3}, transposed */
	ln_tensor v = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(&v, &a, 1, 1, 3, &err), LN_OK);
	assert_int_equal(ln_tensor_transpose(&o, &v, &err), LN_OK);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			assert_float_equal(ln_tensor_data(&o)[i * 3 + j], (float)(j * 5 + i + 1), 0);
	ln_tensor_release(&o);
	/* 1-D and 3-D are errors */
	ln_tensor r = LN_TENSOR_EMPTY;
	const int64_t s1[1] = { 15 };
	assert_int_equal(ln_tensor_reshape(&r, &a, 1, s1, &err), LN_OK);
	assert_int_equal(ln_tensor_transpose(&o, &r, &err), LN_ESHAPE);
	assert_msg(&err, "expected a 2-D tensor, got {15}");
	assert_true(ln_tensor_is_empty(&o));
	ln_tensor_release(&r);
	ln_tensor_release(&v);
	ln_tensor_release(&a);
}

static void test_allclose(void **state)
{
	ln_error err;
	ln_tensor a, b;
	const int64_t s[2] = { 2, 3 };
	const float av[6] = { 1, 2, 3, 4, 5, 1e6f };
	from_values(&a, 2, s, av);
	from_values(&b, 2, s, av);
	assert_true(ln_tensor_allclose(&a, &b, 0, 0));
	/* |a-b| <= atol + rtol |b| */
	ln_tensor_data(&b)[0] = 1.1f;
	assert_false(ln_tensor_allclose(&a, &b, 0, 0.05));
	assert_true(ln_tensor_allclose(&a, &b, 0, 0.11));
	assert_true(ln_tensor_allclose(&a, &b, 0.1, 0.0));   /* 0.1 <= 0.1*1.1 */
	assert_false(ln_tensor_allclose(&a, &b, 0.05, 0.0));
	ln_tensor_data(&b)[0] = 1.0f;
	ln_tensor_data(&b)[5] = 1e6f + 64.0f;
	assert_false(ln_tensor_allclose(&a, &b, 1e-5, 0.0));
	assert_true(ln_tensor_allclose(&a, &b, 1e-4, 0.0));
	ln_tensor_data(&b)[5] = 1e6f;
	/* NaN is never close, not even to NaN */
	ln_tensor_data(&a)[3] = NAN;
	assert_false(ln_tensor_allclose(&a, &b, 1e9, 1e9));
	ln_tensor_data(&b)[3] = NAN;
	assert_false(ln_tensor_allclose(&a, &b, 1e9, 1e9));
	ln_tensor_data(&a)[3] = 4.0f;
	ln_tensor_data(&b)[3] = 4.0f;
	/* equal infinities are close, opposite ones are not */
	ln_tensor_data(&a)[2] = INFINITY;
	ln_tensor_data(&b)[2] = INFINITY;
	assert_true(ln_tensor_allclose(&a, &b, 0, 0));
	ln_tensor_data(&b)[2] = -INFINITY;
	assert_false(ln_tensor_allclose(&a, &b, 1e9, 1e9));
	ln_tensor_data(&a)[2] = ln_tensor_data(&b)[2] = 3.0f;
	/* shapes differ */
	ln_tensor r = LN_TENSOR_EMPTY;
	const int64_t s32[2] = { 3, 2 };
	assert_int_equal(ln_tensor_reshape(&r, &b, 2, s32, &err), LN_OK);
	assert_false(ln_tensor_allclose(&a, &r, 1e9, 1e9));
	ln_tensor_release(&r);
	/* strided views compare element by element */
	ln_tensor b1, v1, b2, v2;
	strided_fixture(&b1, &v1);
	strided_fixture(&b2, &v2);
	ln_tensor c = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_clone(&c, &v1, &err), LN_OK);
	assert_true(ln_tensor_allclose(&v1, &c, 0, 0));
	assert_true(ln_tensor_allclose(&c, &v2, 0, 0));
	ln_tensor_data(&b2)[0] = 1000.0f;  /* outside the view: no effect */
	assert_true(ln_tensor_allclose(&v1, &v2, 0, 0));
	ln_tensor_data(&b2)[22] = 1000.0f;  /* inside it */
	assert_false(ln_tensor_allclose(&v1, &v2, 0, 0));
	ln_tensor_release(&c);
	ln_tensor_release(&v1);
	ln_tensor_release(&b1);
	ln_tensor_release(&v2);
	ln_tensor_release(&b2);
	ln_tensor_release(&a);
	ln_tensor_release(&b);
}

/* ---- random fills ------------------------------------------------------------- */

static void test_random_fills(void **state)
{
	ln_tensor t;
	const int64_t s[2] = { 200, 250 };
	arange(&t, 2, s);
	const int64_t n = 50000;
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor_rand(&t, ln_rng_global());
	double sum = 0;
	for (int64_t i = 0; i < n; i++) {
		float x = ln_tensor_data(&t)[i];
		assert_true(x >= 0.0f && x < 1.0f);
		sum += x;
	}
	assert_true(fabs(sum / n - 0.5) < 5 * sqrt(1.0 / 12 / n));

	ln_tensor_uniform(&t, ln_rng_global(), -3.0f, 5.0f);
	sum = 0;
	for (int64_t i = 0; i < n; i++) {
		float x = ln_tensor_data(&t)[i];
		assert_true(x >= -3.0f && x < 5.0f);
		sum += x;
	}
	assert_true(fabs(sum / n - 1.0) < 5 * 8 * sqrt(1.0 / 12 / n));

	ln_tensor_randn(&t, ln_rng_global(), 2.0f, 0.5f);
	double s1 = 0, s2 = 0;
	for (int64_t i = 0; i < n; i++) {
		double x = ln_tensor_data(&t)[i];
		s1 += x;
		s2 += x * x;
	}
	double mean = s1 / n, var = s2 / n - mean * mean;
	assert_true(fabs(mean - 2.0) < 5 * 0.5 / sqrt((double)n));
	assert_true(fabs(var - 0.25) < 5 * 0.25 * sqrt(2.0 / n));

	/* same seed, same values */
	ln_tensor u;
	arange(&u, 2, s);
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor_randn(&u, ln_rng_global(), 2.0f, 0.5f);
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor_rand(&t, ln_rng_global());
	ln_tensor_uniform(&t, ln_rng_global(), -3.0f, 5.0f);
	ln_tensor_randn(&t, ln_rng_global(), 2.0f, 0.5f);
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor_rand(&t, ln_rng_global());
	ln_tensor_uniform(&t, ln_rng_global(), -3.0f, 5.0f);
	float first = ln_tensor_data(&t)[0];
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor_rand(&u, ln_rng_global());
	ln_tensor_uniform(&u, ln_rng_global(), -3.0f, 5.0f);
	assert_memory_equal(ln_tensor_data(&t), ln_tensor_data(&u), (size_t)n * sizeof(float));
	assert_float_equal(ln_tensor_data(&u)[0], first, 0);
	ln_tensor_release(&u);
	ln_tensor_release(&t);

	/* fills of a view touch only the view */
	ln_tensor base, v;
	strided_fixture(&base, &v);
	ln_tensor_uniform(&v, ln_rng_global(), 100.0f, 101.0f);
	for (int64_t i = 0; i < 24; i++) {
		float x = ln_tensor_data(&base)[i];
		if (i % 4 == 1 || i % 4 == 2)
			assert_true(x >= 100.0f && x < 101.0f);
		else
			assert_float_equal(x, (float)i, 0);
	}
	ln_tensor_randn(&v, ln_rng_global(), -50.0f, 1.0f);
	ln_tensor_rand(&v, ln_rng_global());
	for (int64_t i = 0; i < 24; i++)
		if (i % 4 == 0 || i % 4 == 3)
			assert_float_equal(ln_tensor_data(&base)[i], (float)i, 0);
	/* a degenerate range gives its one value */
	ln_tensor_uniform(&v, ln_rng_global(), 4.0f, 4.0f);
	for (int64_t i = 0; i < 12; i++)
		assert_float_equal(nth(&v, i), 4.0f, 0);
	ln_tensor_release(&v);
	ln_tensor_release(&base);
}

/* ---- broadcasting and the iterator ------------------------------------------------ */

/* row-major offsets of every element of a walk over `shape` of one tensor
 * with `strides`, collected through the iterator */
static int64_t walk_offsets(int ndim, const int64_t *shape, const int64_t *strides, int64_t *out)
{
	ln_iter it;
	const int64_t *s[1] = { strides };
	ln_iter_init(&it, ndim, shape, 1, s);
	int64_t n = 0;
	do {
		for (int64_t j = 0; j < it.len; j++)
			out[n++] = it.off[0] + j * it.inc[0];
	} while (ln_iter_next(&it));
	return n;
}

static void test_iter(void **state)
{
	int64_t got[64];
	/* contiguous {2,3,4}: merged into one row of 24 */
	const int64_t s234[3] = { 2, 3, 4 }, c234[3] = { 12, 4, 1 };
	ln_iter it;
	const int64_t *cs[1] = { c234 };
	ln_iter_init(&it, 3, s234, 1, cs);
	assert_int_equal(it.outer, 0);
	assert_int_equal(it.len, 24);
	assert_int_equal(walk_offsets(3, s234, c234, got), 24);
	for (int i = 0; i < 24; i++)
		assert_int_equal(got[i], i);
	/* a column-narrowed view: rows of 2, not merged with the row above */
	const int64_t s32[2] = { 3, 2 }, v32[2] = { 5, 1 };
	assert_int_equal(walk_offsets(2, s32, v32, got), 6);
	const int64_t want_v[6] = { 0, 1, 5, 6, 10, 11 };
	for (int i = 0; i < 6; i++)
		assert_int_equal(got[i], want_v[i]);
	/* a transposed {3,2} of a {2,3}: column order */
	const int64_t t32[2] = { 1, 3 };
	walk_offsets(2, s32, t32, got);
	const int64_t want_t[6] = { 0, 3, 1, 4, 2, 5 };
	for (int i = 0; i < 6; i++)
		assert_int_equal(got[i], want_t[i]);
	/* size-1 dims dropped; broadcast dims (stride 0) repeat */
	const int64_t s1x[4] = { 1, 2, 1, 3 }, b1x[4] = { 99, 0, 77, 1 };
	assert_int_equal(walk_offsets(4, s1x, b1x, got), 6);
	const int64_t want_b[6] = { 0, 1, 2, 0, 1, 2 };
	for (int i = 0; i < 6; i++)
		assert_int_equal(got[i], want_b[i]);
	/* all sizes 1: one element */
	const int64_t ones[2] = { 1, 1 }, any[2] = { 5, 7 };
	assert_int_equal(walk_offsets(2, ones, any, got), 1);
	assert_int_equal(got[0], 0);
	/* the iterator is back on the first row after the last */
	ln_iter_init(&it, 2, s32, 1, (const int64_t *[]){ v32 });
	while (ln_iter_next(&it))
		;
	assert_int_equal(it.off[0], 0);
}

static void test_broadcast_shape(void **state)
{
	ln_error err;
	int nd;
	int64_t out[LN_MAX_DIMS];
	const int64_t a[2] = { 2, 3 }, b[1] = { 3 }, c[2] = { 4, 1 }, d[2] = { 1, 5 }, e[1] = { 4 };
	assert_int_equal(ln_broadcast_shape(&nd, out, 2, a, 1, b, &err), LN_OK);
	assert_int_equal(nd, 2);
	assert_int_equal(out[0], 2);
	assert_int_equal(out[1], 3);
	assert_int_equal(ln_broadcast_shape(&nd, out, 2, c, 2, d, &err), LN_OK);
	assert_int_equal(out[0], 4);
	assert_int_equal(out[1], 5);
	const int64_t f[3] = { 7, 1, 1 };
	assert_int_equal(ln_broadcast_shape(&nd, out, 2, a, 3, f, &err), LN_OK);
	assert_int_equal(nd, 3);
	assert_int_equal(out[0], 7);
	assert_int_equal(out[1], 2);
	assert_int_equal(out[2], 3);
	assert_int_equal(ln_broadcast_shape(&nd, out, 2, a, 1, e, &err), LN_ESHAPE);
	assert_msg(&err, "shapes {2,3} and {4} do not broadcast: dimension -1 has sizes 3 and 4");
	const int64_t g[2] = { 3, 3 };
	assert_int_equal(ln_broadcast_shape(&nd, out, 2, a, 2, g, &err), LN_ESHAPE);
	assert_msg(&err, "dimension -2 has sizes 2 and 3");

	ln_tensor t;
	arange(&t, 2, c);  /* {4,1} */
	const int64_t to[3] = { 2, 4, 6 }, bad[2] = { 3, 6 }, small[1] = { 4 };
	assert_true(ln_tensor_broadcasts_to(&t, 3, to));
	assert_false(ln_tensor_broadcasts_to(&t, 2, bad));
	assert_false(ln_tensor_broadcasts_to(&t, 1, small));  /* fewer dims than t */
	int64_t st[3];
	ln_broadcast_strides(st, &t, 3, to);
	assert_int_equal(st[0], 0);
	assert_int_equal(st[1], 1);
	assert_int_equal(st[2], 0);
	ln_tensor_release(&t);
}

static void test_dim_resolve(void **state)
{
	ln_error err;
	int d = -9;
	const int64_t s[3] = { 2, 3, 4 };
	assert_int_equal(ln_dim_resolve(-1, 3, s, &d, &err), LN_OK);
	assert_int_equal(d, 2);
	assert_int_equal(ln_dim_resolve(-3, 3, s, &d, &err), LN_OK);
	assert_int_equal(d, 0);
	assert_int_equal(ln_dim_resolve(1, 3, s, &d, &err), LN_OK);
	assert_int_equal(d, 1);
	assert_int_equal(ln_dim_resolve(3, 3, s, &d, &err), LN_ERANGE);
	assert_msg(&err, "dimension 4 does not exist in 3-D tensor {2,3,4}");
	assert_int_equal(ln_dim_resolve(-4, 3, NULL, &d, &err), LN_ERANGE);
	assert_msg(&err, "dimension -4 does not exist in a 3-D tensor");
}

/* Broadcast binary ops against a reference that indexes by hand:
 * a {2,1,3} (a transposed-and-narrowed view) op b {4,1}: out {2,4,3} with
 * out[i,j,k] = a[i,0,k] op b[j,0]. */
static void test_binary_broadcast(void **state)
{
	ln_error err;
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor base, a = LN_TENSOR_EMPTY, b, tmp = LN_TENSOR_EMPTY;
	const int64_t sb[3] = { 3, 1, 2 }, s41[2] = { 4, 1 };
	random_tensor(&base, 3, sb, 0.5f, 2.0f);
	assert_int_equal(ln_tensor_permute(&a, &base, (const int[]){ 2, 1, 0 }, &err), LN_OK);
	assert_false(ln_tensor_is_contiguous(&a));  /* {2,1,3} with strides {1,2,2} */
	random_tensor(&b, 2, s41, 0.5f, 2.0f);
	for (int op = LN_ADD; op < LN_BINOP_COUNT; op++) {
		ln_tensor o = LN_TENSOR_EMPTY;
		assert_int_equal(ln_tensor_binary(&o, (ln_binop)op, &a, &b, &err), LN_OK);
		const int64_t want[3] = { 2, 4, 3 };
		assert_shape(&o, 3, want);
		for (int64_t i = 0; i < 2; i++)
			for (int64_t j = 0; j < 4; j++)
				for (int64_t k = 0; k < 3; k++) {
					float w = (float)ref_binop((ln_binop)op, at3(&a, i, 0, k), at3(&b, j, 0, 0));
					assert_float_equal(at3(&o, i, j, k), w, op == LN_POW ? 2e-7f * fabsf(w) : 0);
				}
		ln_tensor_release(&o);
	}
	/* by hand: {{1},{2}} - {10,20,30} = {{-9,-19,-29},{-8,-18,-28}} */
	ln_tensor col, row, o = LN_TENSOR_EMPTY;
	const int64_t s21[2] = { 2, 1 }, s3[1] = { 3 };
	from_values(&col, 2, s21, (const float[]){ 1, 2 });
	from_values(&row, 1, s3, (const float[]){ 10, 20, 30 });
	assert_int_equal(ln_tensor_binary(&o, LN_SUB, &col, &row, &err), LN_OK);
	const float diff[6] = { -9, -19, -29, -8, -18, -28 };
	for (int i = 0; i < 6; i++)
		assert_float_equal(ln_tensor_data(&o)[i], diff[i], 0);
	ln_tensor_release(&o);
	/* comparisons: NaN compares false, except ne */
	ln_tensor n;
	from_values(&n, 1, s3, (const float[]){ NAN, 20, 31 });
	const float gt[3] = { 0, 0, 1 }, eq[3] = { 0, 1, 0 }, ne[3] = { 1, 0, 1 }, le[3] = { 0, 1, 0 };
	const struct { ln_binop op; const float *want; } cmp[4] = {
		{ LN_GT, gt }, { LN_EQ, eq }, { LN_NE, ne }, { LN_LE, le },
	};
	for (int c = 0; c < 4; c++) {
		assert_int_equal(ln_tensor_binary(&o, cmp[c].op, &n, &row, &err), LN_OK);
		for (int i = 0; i < 3; i++)
			assert_float_equal(ln_tensor_data(&o)[i], cmp[c].want[i], 0);
		ln_tensor_release(&o);
	}
	/* pow by hand: {1,2}^{10,20,30} is too big; 2^{0.5} etc. with a scalar */
	assert_int_equal(ln_tensor_binary_scalar(&o, LN_POW, &col, 3.0f, false, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[1], 8.0f, 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_binary_scalar(&o, LN_POW, &col, 3.0f, true, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[0], 3.0f, 0);
	assert_float_equal(ln_tensor_data(&o)[1], 9.0f, 0);
	ln_tensor_release(&o);
	ln_tensor_release(&n);
	ln_tensor_release(&col);
	ln_tensor_release(&row);
	ln_tensor_release(&tmp);
	ln_tensor_release(&a);
	ln_tensor_release(&b);
	ln_tensor_release(&base);
}

static void test_binary_inplace(void **state)
{
	ln_error err;
	ln_tensor a, r;
	const int64_t s23[2] = { 2, 3 }, s3[1] = { 3 };
	from_values(&a, 2, s23, (const float[]){ 1, 2, 3, 4, 5, 6 });
	from_values(&r, 1, s3, (const float[]){ 10, 20, 30 });
	assert_int_equal(ln_tensor_binary_(&a, LN_MUL, &r, &err), LN_OK);
	const float w1[6] = { 10, 40, 90, 40, 100, 180 };
	for (int i = 0; i < 6; i++)
		assert_float_equal(ln_tensor_data(&a)[i], w1[i], 0);
	/* b must broadcast to a: a {3} cannot grow into {2,3} */
	assert_int_equal(ln_tensor_binary_(&r, LN_ADD, &a, &err), LN_ESHAPE);
	assert_msg(&err, "operand {2,3} does not broadcast to {3}, the shape of the tensor "
	                 "written in place");
	assert_float_equal(ln_tensor_data(&r)[0], 10.0f, 0);
	/* b a row of a itself: read as it was before the first write */
	ln_tensor row0 = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_select(&row0, &a, 0, &err), LN_OK);
	assert_int_equal(ln_tensor_binary_(&a, LN_SUB, &row0, &err), LN_OK);
	const float w2[6] = { 0, 0, 0, 30, 60, 90 };
	for (int i = 0; i < 6; i++)
		assert_float_equal(ln_tensor_data(&a)[i], w2[i], 0);
	/* a transposed view of itself: a square matrix minus its transpose */
	ln_tensor sq, tr = LN_TENSOR_EMPTY;
	const int64_t s22[2] = { 2, 2 };
	from_values(&sq, 2, s22, (const float[]){ 1, 2, 3, 4 });
	assert_int_equal(ln_tensor_transpose_dims(&tr, &sq, 0, 1, &err), LN_OK);
	assert_int_equal(ln_tensor_binary_(&sq, LN_SUB, &tr, &err), LN_OK);
	const float w3[4] = { 0, -1, 1, 0 };
	for (int i = 0; i < 4; i++)
		assert_float_equal(ln_tensor_data(&sq)[i], w3[i], 0);
	/* scalar in place, through a strided view */
	ln_tensor col = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(&col, &a, 1, 1, 1, &err), LN_OK);
	assert_int_equal(ln_tensor_binary_scalar_(&col, LN_ADD, 0.5f, &err), LN_OK);
	const float w4[6] = { 0, 0.5f, 0, 30, 60.5f, 90 };
	for (int i = 0; i < 6; i++)
		assert_float_equal(ln_tensor_data(&a)[i], w4[i], 0);
	/* an expanded view cannot be written in place */
	ln_tensor ex = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_expand(&ex, &r, 2, s23, &err), LN_OK);
	assert_true(ln_tensor_has_aliases(&ex));
	assert_false(ln_tensor_has_aliases(&a));
	assert_int_equal(ln_tensor_binary_scalar_(&ex, LN_ADD, 1.0f, &err), LN_EARG);
	assert_msg(&err, "cannot write into {2,3}: several of its elements share one memory "
	                 "location (an expanded view); clone it first");
	assert_int_equal(ln_tensor_binary_(&ex, LN_ADD, &r, &err), LN_EARG);
	assert_float_equal(ln_tensor_data(&r)[0], 10.0f, 0);
	ln_tensor_release(&ex);
	ln_tensor_release(&col);
	ln_tensor_release(&tr);
	ln_tensor_release(&sq);
	ln_tensor_release(&row0);
	ln_tensor_release(&a);
	ln_tensor_release(&r);
}

static void test_copy_broadcast(void **state)
{
	ln_error err;
	ln_tensor d, r, one;
	const int64_t s23[2] = { 2, 3 }, s3[1] = { 3 }, s1[1] = { 1 };
	arange(&d, 2, s23);
	from_values(&r, 1, s3, (const float[]){ 7, 8, 9 });
	from_values(&one, 1, s1, (const float[]){ -1 });
	assert_int_equal(ln_tensor_copy(&d, &r, &err), LN_OK);
	const float w[6] = { 7, 8, 9, 7, 8, 9 };
	for (int i = 0; i < 6; i++)
		assert_float_equal(ln_tensor_data(&d)[i], w[i], 0);
	assert_int_equal(ln_tensor_copy(&d, &one, &err), LN_OK);
	for (int i = 0; i < 6; i++)
		assert_float_equal(ln_tensor_data(&d)[i], -1.0f, 0);
	/* a square matrix copied from its own transpose (through a temporary) */
	ln_tensor sq, tr = LN_TENSOR_EMPTY;
	const int64_t s33[2] = { 3, 3 };
	arange(&sq, 2, s33);
	assert_int_equal(ln_tensor_transpose_dims(&tr, &sq, 1, 0, &err), LN_OK);
	assert_int_equal(ln_tensor_copy(&sq, &tr, &err), LN_OK);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 3; j++)
			assert_float_equal(ln_tensor_data(&sq)[i * 3 + j], (float)(j * 3 + i), 0);
	/* the same view: nothing to do */
	assert_int_equal(ln_tensor_copy(&sq, &sq, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&sq)[1], 3.0f, 0);
	/* into an expanded view: refused */
	ln_tensor ex = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_expand(&ex, &one, 2, s23, &err), LN_OK);
	assert_int_equal(ln_tensor_copy(&ex, &d, &err), LN_EARG);
	assert_msg(&err, "cannot write into {2,3}");
	ln_tensor_release(&ex);
	ln_tensor_release(&tr);
	ln_tensor_release(&sq);
	ln_tensor_release(&one);
	ln_tensor_release(&r);
	ln_tensor_release(&d);
}

/* ---- views of tensor_view.c ------------------------------------------------------- */

static void test_unsqueeze_squeeze(void **state)
{
	ln_error err;
	ln_tensor t, u = LN_TENSOR_EMPTY, s = LN_TENSOR_EMPTY;
	const int64_t s23[2] = { 2, 3 };
	arange(&t, 2, s23);
	const int64_t w0[3] = { 1, 2, 3 }, w1[3] = { 2, 1, 3 }, w2[3] = { 2, 3, 1 };
	const struct { int dim; const int64_t *want; } cases[5] = {
		{ 0, w0 }, { 1, w1 }, { 2, w2 }, { -1, w2 }, { -3, w0 },
	};
	for (int c = 0; c < 5; c++) {
		assert_int_equal(ln_tensor_unsqueeze(&u, &t, cases[c].dim, &err), LN_OK);
		assert_shape(&u, 3, cases[c].want);
		assert_true(ln_tensor_is_contiguous(&u));
		assert_true(u.storage == t.storage);
		for (int64_t n = 0; n < 6; n++)
			assert_float_equal(nth(&u, n), (float)n, 0);
		/* squeezing that dimension gives t's shape back */
		int at = cases[c].dim < 0 ? cases[c].dim + 3 : cases[c].dim;
		assert_int_equal(ln_tensor_squeeze(&s, &u, at, &err), LN_OK);
		assert_shape(&s, 2, s23);
		ln_tensor_release(&s);
		ln_tensor_release(&u);
	}
	assert_int_equal(ln_tensor_unsqueeze(&u, &t, 3, &err), LN_ERANGE);
	assert_msg(&err, "cannot insert a dimension at 4 in 2-D tensor {2,3}");
	assert_int_equal(ln_tensor_unsqueeze(&u, &t, -4, &err), LN_ERANGE);
	/* squeeze of a dimension whose size is not 1 keeps the shape */
	assert_int_equal(ln_tensor_squeeze(&s, &t, 1, &err), LN_OK);
	assert_shape(&s, 2, s23);
	ln_tensor_release(&s);
	assert_int_equal(ln_tensor_squeeze(&s, &t, 2, &err), LN_ERANGE);
	/* squeeze all: {1,3,1} -> {3}; {1,1} -> {1} */
	ln_tensor a, b;
	const int64_t s131[3] = { 1, 3, 1 }, s11[2] = { 1, 1 }, w3[1] = { 3 }, w1d[1] = { 1 };
	arange(&a, 3, s131);
	arange(&b, 2, s11);
	ln_tensor_squeeze_all(&s, &a);
	assert_shape(&s, 1, w3);
	assert_float_equal(nth(&s, 2), 2.0f, 0);
	ln_tensor_release(&s);
	ln_tensor_squeeze_all(&s, &b);
	assert_shape(&s, 1, w1d);
	ln_tensor_release(&s);
	/* a full tensor cannot gain a dimension */
	ln_tensor full;
	const int64_t s8[8] = { 1, 1, 1, 1, 1, 1, 1, 2 };
	arange(&full, 8, s8);
	assert_int_equal(ln_tensor_unsqueeze(&u, &full, 0, &err), LN_ERANGE);
	assert_msg(&err, "tensors have at most 8");
	assert_true(ln_tensor_is_empty(&u));
	ln_tensor_release(&full);
	ln_tensor_release(&a);
	ln_tensor_release(&b);
	ln_tensor_release(&t);
}

static void test_permute_transpose(void **state)
{
	ln_error err;
	ln_tensor t, p = LN_TENSOR_EMPTY;
	const int64_t s234[3] = { 2, 3, 4 };
	arange(&t, 3, s234);
	/* p[i,j,k] = t[k,i,j]: perm {2,0,1} gives shape {4,2,3} */
	assert_int_equal(ln_tensor_permute(&p, &t, (const int[]){ 2, 0, -2 }, &err), LN_OK);
	const int64_t w[3] = { 4, 2, 3 };
	assert_shape(&p, 3, w);
	for (int64_t i = 0; i < 4; i++)
		for (int64_t j = 0; j < 2; j++)
			for (int64_t k = 0; k < 3; k++)
				assert_float_equal(at3(&p, i, j, k), at3(&t, j, k, i), 0);
	/* writes go through */
	ln_tensor_data(&p)[ln_tensor_index_offset(&p, (const int64_t[]){ 3, 1, 2 })] = -5.0f;
	assert_float_equal(at3(&t, 1, 2, 3), -5.0f, 0);
	ln_tensor_release(&p);
	assert_int_equal(ln_tensor_permute(&p, &t, (const int[]){ 0, 1, 0 }, &err), LN_ERANGE);
	assert_msg(&err, "dimension 1 appears twice in the permutation");
	assert_int_equal(ln_tensor_permute(&p, &t, (const int[]){ 0, 1, 3 }, &err), LN_ERANGE);
	assert_msg(&err, "dimension 4 does not exist");
	assert_true(ln_tensor_is_empty(&p));
	/* transpose_dims(0, 2): q[i,j,k] = t[k,j,i] */
	assert_int_equal(ln_tensor_transpose_dims(&p, &t, 0, -1, &err), LN_OK);
	const int64_t wq[3] = { 4, 3, 2 };
	assert_shape(&p, 3, wq);
	for (int64_t i = 0; i < 4; i++)
		for (int64_t j = 0; j < 3; j++)
			for (int64_t k = 0; k < 2; k++)
				assert_float_equal(at3(&p, i, j, k), at3(&t, k, j, i), 0);
	ln_tensor_release(&p);
	assert_int_equal(ln_tensor_transpose_dims(&p, &t, 0, 3, &err), LN_ERANGE);
	ln_tensor_release(&t);
}

static void test_expand_select_dim(void **state)
{
	ln_error err;
	ln_tensor c, e = LN_TENSOR_EMPTY;
	const int64_t s31[2] = { 3, 1 };
	from_values(&c, 2, s31, (const float[]){ 1, 2, 3 });
	/* {3,1} -> {2,3,4}: e[i,j,k] = c[j,0] */
	const int64_t s234[3] = { 2, 3, 4 };
	assert_int_equal(ln_tensor_expand(&e, &c, 3, s234, &err), LN_OK);
	assert_shape(&e, 3, s234);
	assert_int_equal(e.stride[0], 0);
	assert_int_equal(e.stride[2], 0);
	for (int64_t i = 0; i < 2; i++)
		for (int64_t j = 0; j < 3; j++)
			for (int64_t k = 0; k < 4; k++)
				assert_float_equal(at3(&e, i, j, k), (float)(j + 1), 0);
	assert_float_equal((float)ln_tensor_sum(&e), 48.0f, 0);
	ln_tensor_release(&e);
	/* -1 keeps a size */
	const int64_t keep[2] = { -1, 5 };
	assert_int_equal(ln_tensor_expand(&e, &c, 2, keep, &err), LN_OK);
	assert_int_equal(e.shape[0], 3);
	assert_int_equal(e.shape[1], 5);
	ln_tensor_release(&e);
	/* errors */
	const int64_t bad[2] = { 4, 5 }, newm1[3] = { -1, 3, 1 }, zero[2] = { 3, 0 },
	              huge[3] = { INT64_C(1) << 40, INT64_C(1) << 40, 1 };
	assert_int_equal(ln_tensor_expand(&e, &c, 2, bad, &err), LN_ESHAPE);
	assert_msg(&err, "cannot expand {3,1} to {4,5}: dimension 1 has size 3, only a size of 1 "
	                 "can stretch");
	assert_int_equal(ln_tensor_expand(&e, &c, 3, newm1, &err), LN_ERANGE);
	assert_msg(&err, "size -1 for the new dimension 1");
	assert_int_equal(ln_tensor_expand(&e, &c, 2, zero, &err), LN_ERANGE);
	assert_msg(&err, "size 0 for dimension 2");
	assert_int_equal(ln_tensor_expand(&e, &c, 1, s31, &err), LN_ERANGE);
	assert_msg(&err, "cannot expand {3,1} to 1 dimensions");
	ln_tensor one;
	const int64_t s1[1] = { 1 };
	arange(&one, 1, s1);
	assert_int_equal(ln_tensor_expand(&e, &one, 3, huge, &err), LN_ERANGE);
	assert_msg(&err, "too many elements");
	assert_true(ln_tensor_is_empty(&e));
	ln_tensor_release(&one);
	ln_tensor_release(&c);

	/* select_dim: t {2,3,4}, dim 1 index 2 -> s[i,k] = t[i,2,k] */
	ln_tensor t, s = LN_TENSOR_EMPTY;
	arange(&t, 3, s234);
	assert_int_equal(ln_tensor_select_dim(&s, &t, 1, 2, &err), LN_OK);
	const int64_t w24[2] = { 2, 4 };
	assert_shape(&s, 2, w24);
	for (int64_t i = 0; i < 2; i++)
		for (int64_t k = 0; k < 4; k++)
			assert_float_equal(at3(&s, i, k, 0), at3(&t, i, 2, k), 0);
	ln_tensor_data(&s)[0] = 100.0f;
	assert_float_equal(at3(&t, 0, 2, 0), 100.0f, 0);
	ln_tensor_release(&s);
	assert_int_equal(ln_tensor_select_dim(&s, &t, -1, 3, &err), LN_OK);
	assert_float_equal(at3(&s, 1, 1, 0), at3(&t, 1, 1, 3), 0);
	ln_tensor_release(&s);
	assert_int_equal(ln_tensor_select_dim(&s, &t, 2, 4, &err), LN_ERANGE);
	assert_msg(&err, "index 5 is outside 1..4 (dimension 3 of {2,3,4})");
	ln_tensor_release(&t);
}

/* ---- sorting and indexing ------------------------------------------------------- */

static void test_sort_topk(void **state)
{
	ln_error err;
	ln_tensor t, v = LN_TENSOR_EMPTY, i = LN_TENSOR_EMPTY;
	/* row 1 has ties (stable) and a NaN; row 2 is distinct */
	const int64_t s25[2] = { 2, 5 };
	from_values(&t, 2, s25, (const float[]){ 3, 1, NAN, 1, 2, 5, -1, 4, 0, 2 });
	assert_int_equal(ln_tensor_sort(&v, &i, &t, 1, false, &err), LN_OK);
	const float av[10] = { 1, 1, 2, 3, NAN, -1, 0, 2, 4, 5 };
	const float ai[10] = { 2, 4, 5, 1, 3, 2, 4, 5, 3, 1 };
	for (int k = 0; k < 10; k++) {
		if (isnan(av[k]))
			assert_true(isnan(ln_tensor_data(&v)[k]));
		else
			assert_float_equal(ln_tensor_data(&v)[k], av[k], 0);
		assert_float_equal(ln_tensor_data(&i)[k], ai[k], 0);
	}
	ln_tensor_release(&v);
	ln_tensor_release(&i);
	assert_int_equal(ln_tensor_sort(&v, &i, &t, -1, true, &err), LN_OK);
	const float dv[5] = { NAN, 3, 2, 1, 1 }, di[5] = { 3, 1, 5, 2, 4 };
	for (int k = 0; k < 5; k++) {
		if (isnan(dv[k]))
			assert_true(isnan(ln_tensor_data(&v)[k]));
		else
			assert_float_equal(ln_tensor_data(&v)[k], dv[k], 0);
		assert_float_equal(ln_tensor_data(&i)[k], di[k], 0);
	}
	ln_tensor_release(&v);
	ln_tensor_release(&i);
	/* along dimension 0 of a strided view: columns sorted */
	ln_tensor col = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_narrow(&col, &t, 1, 3, 2, &err), LN_OK);  /* {{1,2},{0,2}} */
	assert_int_equal(ln_tensor_sort(&v, &i, &col, 0, false, &err), LN_OK);
	const float cv[4] = { 0, 2, 1, 2 }, ci[4] = { 2, 1, 1, 2 };
	for (int k = 0; k < 4; k++) {
		assert_float_equal(ln_tensor_data(&v)[k], cv[k], 0);
		assert_float_equal(ln_tensor_data(&i)[k], ci[k], 0);
	}
	ln_tensor_release(&v);
	ln_tensor_release(&i);
	ln_tensor_release(&col);
	/* topk: the 2 largest of each row, largest first */
	assert_int_equal(ln_tensor_topk(&v, &i, &t, 2, 1, &err), LN_OK);
	const int64_t s22[2] = { 2, 2 };
	assert_shape(&v, 2, s22);
	assert_true(isnan(ln_tensor_data(&v)[0]));
	const float tv[3] = { 3, 5, 4 }, ti[4] = { 3, 1, 1, 3 };
	for (int k = 1; k < 4; k++)
		assert_float_equal(ln_tensor_data(&v)[k], tv[k - 1], 0);
	for (int k = 0; k < 4; k++)
		assert_float_equal(ln_tensor_data(&i)[k], ti[k], 0);
	ln_tensor_release(&v);
	ln_tensor_release(&i);
	assert_int_equal(ln_tensor_topk(&v, &i, &t, 6, 1, &err), LN_ERANGE);
	assert_msg(&err, "k must be in 1..5 (the size of dimension 2 of {2,5}), got 6");
	assert_int_equal(ln_tensor_topk(&v, &i, &t, 0, 1, &err), LN_ERANGE);
	assert_int_equal(ln_tensor_sort(&v, &i, &t, 2, false, &err), LN_ERANGE);
	assert_true(ln_tensor_is_empty(&v) && ln_tensor_is_empty(&i));
	/* an expanded dimension longer than 2^24 has no exact float indices */
	ln_tensor one, big = LN_TENSOR_EMPTY, o = LN_TENSOR_EMPTY;
	const int64_t s1[1] = { 1 }, sbig[1] = { LN_MAX_FLOAT_INDEX + 1 };
	arange(&one, 1, s1);
	assert_int_equal(ln_tensor_expand(&big, &one, 1, sbig, &err), LN_OK);
	assert_int_equal(ln_tensor_sort(&v, &i, &big, 0, false, &err), LN_ERANGE);
	assert_msg(&err, "is longer than 16777216");
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RARGMIN, &big, 0, &err), LN_ERANGE);
	assert_true(ln_tensor_is_empty(&o));
	ln_tensor_release(&big);
	ln_tensor_release(&one);
	ln_tensor_release(&t);
}

static void test_argmin(void **state)
{
	ln_error err;
	ln_tensor t, o = LN_TENSOR_EMPTY;
	const int64_t s23[2] = { 2, 3 };
	from_values(&t, 2, s23, (const float[]){ 4, 1, 1, 2, NAN, -3 });
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RARGMIN, &t, 1, &err), LN_OK);
	/* first minimum; a NaN counts as the extreme, as min's value is NaN */
	assert_float_equal(ln_tensor_data(&o)[0], 2.0f, 0);
	assert_float_equal(ln_tensor_data(&o)[1], 2.0f, 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RMIN, &t, -1, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[0], 1.0f, 0);
	assert_true(isnan(ln_tensor_data(&o)[1]));
	ln_tensor_release(&o);
	/* columns {4,2}, {1,NaN}, {1,-3}: the NaN of column 2 is its extreme */
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RARGMIN, &t, 0, &err), LN_OK);
	const float w[3] = { 2, 2, 2 };
	for (int i = 0; i < 3; i++)
		assert_float_equal(ln_tensor_data(&o)[i], w[i], 0);
	ln_tensor_release(&o);
	ln_tensor_release(&t);
}

static void test_index_cat_stack(void **state)
{
	ln_error err;
	ln_tensor t, o = LN_TENSOR_EMPTY;
	const int64_t s23[2] = { 2, 3 };
	arange(&t, 2, s23);  /* {{0,1,2},{3,4,5}} */
	assert_int_equal(ln_tensor_index_select(&o, &t, 1, (const int64_t[]){ 2, 0, 2, 1 }, 4, &err),
	                 LN_OK);
	const float w1[8] = { 2, 0, 2, 1, 5, 3, 5, 4 };
	for (int i = 0; i < 8; i++)
		assert_float_equal(ln_tensor_data(&o)[i], w1[i], 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_index_select(&o, &t, -2, (const int64_t[]){ 1 }, 1, &err), LN_OK);
	const int64_t w13[2] = { 1, 3 };
	assert_shape(&o, 2, w13);
	assert_float_equal(ln_tensor_data(&o)[0], 3.0f, 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_index_select(&o, &t, 1, (const int64_t[]){ 0, 3 }, 2, &err),
	                 LN_ERANGE);
	assert_msg(&err, "index 4 (position 2) is outside 1..3, the size of dimension 2 of {2,3}");
	assert_int_equal(ln_tensor_index_select(&o, &t, 1, (const int64_t[]){ -1 }, 1, &err),
	                 LN_ERANGE);
	assert_int_equal(ln_tensor_index_select(&o, &t, 1, NULL, 0, &err), LN_ERANGE);
	assert_true(ln_tensor_is_empty(&o));

	/* cat along 1: {2,3} and {2,1} -> {2,4}; along 0 with a transposed view */
	ln_tensor c, tr = LN_TENSOR_EMPTY;
	const int64_t s21[2] = { 2, 1 };
	from_values(&c, 2, s21, (const float[]){ 9, 8 });
	assert_int_equal(ln_tensor_cat(&o, 2, (const ln_tensor *[]){ &t, &c }, -1, &err), LN_OK);
	const float w2[8] = { 0, 1, 2, 9, 3, 4, 5, 8 };
	for (int i = 0; i < 8; i++)
		assert_float_equal(ln_tensor_data(&o)[i], w2[i], 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_transpose_dims(&tr, &c, 0, 1, &err), LN_OK);  /* {1,2} */
	ln_tensor sq;
	const int64_t s22[2] = { 2, 2 };
	from_values(&sq, 2, s22, (const float[]){ 1, 2, 3, 4 });
	assert_int_equal(ln_tensor_cat(&o, 3, (const ln_tensor *[]){ &tr, &sq, &tr }, 0, &err),
	                 LN_OK);
	const float w3[8] = { 9, 8, 1, 2, 3, 4, 9, 8 };
	for (int i = 0; i < 8; i++)
		assert_float_equal(ln_tensor_data(&o)[i], w3[i], 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_cat(&o, 2, (const ln_tensor *[]){ &t, &c }, 0, &err), LN_ESHAPE);
	assert_msg(&err, "tensor 2 has shape {2,1}, tensor 1 has {2,3}; all must have the same "
	                 "sizes apart from dimension 1");
	assert_int_equal(ln_tensor_cat(&o, 0, NULL, 0, &err), LN_EARG);
	/* stack: two {2,2} at 0 -> {2,2,2}; at -1 -> s[i,j,k] = ts[k][i,j] */
	assert_int_equal(ln_tensor_stack(&o, 2, (const ln_tensor *[]){ &sq, &sq }, -1, &err), LN_OK);
	const int64_t w222[3] = { 2, 2, 2 };
	assert_shape(&o, 3, w222);
	const float w4[8] = { 1, 1, 2, 2, 3, 3, 4, 4 };
	for (int i = 0; i < 8; i++)
		assert_float_equal(ln_tensor_data(&o)[i], w4[i], 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_stack(&o, 2, (const ln_tensor *[]){ &sq, &t }, 0, &err),
	                 LN_ESHAPE);
	assert_msg(&err, "tensor 2 has shape {2,3}, tensor 1 has {2,2}; all must have the same "
	                 "shape");
	assert_int_equal(ln_tensor_stack(&o, 1, (const ln_tensor *[]){ &sq }, 3, &err), LN_ERANGE);
	assert_true(ln_tensor_is_empty(&o));
	ln_tensor_release(&sq);
	ln_tensor_release(&tr);
	ln_tensor_release(&c);
	ln_tensor_release(&t);
}

static void test_clamp_where(void **state)
{
	ln_error err;
	ln_tensor t, o = LN_TENSOR_EMPTY;
	const int64_t s5[1] = { 5 };
	from_values(&t, 1, s5, (const float[]){ -2, 0.5f, 3, NAN, 1 });
	assert_int_equal(ln_tensor_clamp(&o, &t, 0, 1, &err), LN_OK);
	const float w[5] = { 0, 0.5f, 1, NAN, 1 };
	for (int i = 0; i < 5; i++) {
		if (isnan(w[i]))
			assert_true(isnan(ln_tensor_data(&o)[i]));
		else
			assert_float_equal(ln_tensor_data(&o)[i], w[i], 0);
	}
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_clamp(&o, &t, -INFINITY, 0, &err), LN_OK);
	assert_float_equal(ln_tensor_data(&o)[0], -2.0f, 0);
	assert_float_equal(ln_tensor_data(&o)[2], 0.0f, 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_clamp(&o, &t, 2, 1, &err), LN_ERANGE);
	assert_msg(&err, "lower bound 2 is above upper bound 1");
	assert_int_equal(ln_tensor_clamp(&o, &t, NAN, 1, &err), LN_ENAN);
	assert_true(ln_tensor_is_empty(&o));
	/* where(mask {2,1}, a {3}, b {1}) -> {2,3} */
	ln_tensor m, a, b;
	const int64_t s21[2] = { 2, 1 }, s3[1] = { 3 }, s1[1] = { 1 };
	from_values(&m, 2, s21, (const float[]){ 0, NAN });
	from_values(&a, 1, s3, (const float[]){ 1, 2, 3 });
	from_values(&b, 1, s1, (const float[]){ -1 });
	assert_int_equal(ln_tensor_where(&o, &m, &a, &b, &err), LN_OK);
	const float ww[6] = { -1, -1, -1, 1, 2, 3 };
	for (int i = 0; i < 6; i++)
		assert_float_equal(ln_tensor_data(&o)[i], ww[i], 0);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_where(&o, &t, &a, &b, &err), LN_ESHAPE);
	assert_msg(&err, "shapes {5} and {3} do not broadcast");
	ln_tensor_release(&m);
	ln_tensor_release(&a);
	ln_tensor_release(&b);
	ln_tensor_release(&t);
}

/* ---- batched matmul ----------------------------------------------------------------- */

/* o[b] == a[b or 0] x b[b or 0] by a triple loop in double, where a or b
 * may be a matrix (2-D) shared by every batch entry. */
static void check_bmm(const ln_tensor *o, const ln_tensor *a, const ln_tensor *b)
{
	int64_t batch = o->shape[0], m = o->shape[1], n = o->shape[2];
	int64_t k = a->shape[a->ndim - 1];
	for (int64_t q = 0; q < batch; q++)
		for (int64_t i = 0; i < m; i++)
			for (int64_t j = 0; j < n; j++) {
				double s = 0;
				for (int64_t p = 0; p < k; p++) {
					float x = a->ndim == 2 ? at3(a, i, p, 0)
					                       : at3(a, a->shape[0] == 1 ? 0 : q, i, p);
					float y = b->ndim == 2 ? at3(b, p, j, 0)
					                       : at3(b, b->shape[0] == 1 ? 0 : q, p, j);
					s += (double)x * y;
				}
				if (fabs(at3(o, q, i, j) - s) > 1e-5 * (double)k)
					fail_msg("seed %u: batch %lld (%lld,%lld): %g, want %g", SEED, (long long)q,
					         (long long)i, (long long)j, at3(o, q, i, j), s);
			}
}

static void test_matmul_batched(void **state)
{
	ln_error err;
	ln_tensor o = LN_TENSOR_EMPTY;
	/* by hand: [[1,2],[3,4]] x [[5],[6]] = [[17],[39]];
	 *          [[0,1],[1,0]] x [[7],[8]] = [[8],[7]] */
	ln_tensor a, b;
	const int64_t s222[3] = { 2, 2, 2 }, s221[3] = { 2, 2, 1 };
	from_values(&a, 3, s222, (const float[]){ 1, 2, 3, 4, 0, 1, 1, 0 });
	from_values(&b, 3, s221, (const float[]){ 5, 6, 7, 8 });
	assert_int_equal(ln_tensor_matmul(&o, &a, &b, &err), LN_OK);
	assert_shape(&o, 3, s221);
	const float w[4] = { 17, 39, 8, 7 };
	for (int i = 0; i < 4; i++)
		assert_float_equal(ln_tensor_data(&o)[i], w[i], 0);
	ln_tensor_release(&o);
	ln_tensor_release(&a);
	ln_tensor_release(&b);

	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor a3, b3, b2, a3t = LN_TENSOR_EMPTY, b3t = LN_TENSOR_EMPTY, a3n = LN_TENSOR_EMPTY,
	                    b1 = LN_TENSOR_EMPTY;
	const int64_t sa[3] = { 3, 4, 5 }, sb[3] = { 3, 5, 6 }, sb2[2] = { 5, 6 },
	              sbt[3] = { 3, 6, 5 }, sat[3] = { 3, 5, 4 };
	random_tensor(&a3, 3, sa, -1.0f, 1.0f);
	random_tensor(&b3, 3, sb, -1.0f, 1.0f);
	random_tensor(&b2, 2, sb2, -1.0f, 1.0f);
	const int64_t w346[3] = { 3, 4, 6 };
	/* {B,M,K} x {B,K,N} and {B,M,K} x {K,N} (the one-product path) */
	assert_int_equal(ln_tensor_matmul(&o, &a3, &b3, &err), LN_OK);
	assert_shape(&o, 3, w346);
	check_bmm(&o, &a3, &b3);
	ln_tensor_release(&o);
	assert_int_equal(ln_tensor_matmul(&o, &a3, &b2, &err), LN_OK);
	assert_shape(&o, 3, w346);
	check_bmm(&o, &a3, &b2);
	ln_tensor_release(&o);
	/* transposed operands (views of {3,5,4} and {3,6,5}): taken by gemm's flags */
	ln_tensor at, bt;
	random_tensor(&at, 3, sat, -1.0f, 1.0f);
	random_tensor(&bt, 3, sbt, -1.0f, 1.0f);
	assert_int_equal(ln_tensor_transpose_dims(&a3t, &at, 1, 2, &err), LN_OK);
	assert_int_equal(ln_tensor_transpose_dims(&b3t, &bt, -1, -2, &err), LN_OK);
	uint64_t allocs = alloc_count();
	assert_int_equal(ln_tensor_matmul(&o, &a3t, &b3t, &err), LN_OK);
	assert_int_equal(alloc_count() - allocs, 2);  /* the output only: no copies */
	check_bmm(&o, &a3t, &b3t);
	ln_tensor_release(&o);
	/* a non-contiguous a with a 2-D b: the per-entry loop */
	assert_int_equal(ln_tensor_matmul(&o, &a3t, &b2, &err), LN_OK);
	check_bmm(&o, &a3t, &b2);
	ln_tensor_release(&o);
	/* a layout gemm cannot take (batch dim innermost): copied */
	const int64_t sp[3] = { 4, 5, 3 };
	ln_tensor pa, pav = LN_TENSOR_EMPTY;
	random_tensor(&pa, 3, sp, -1.0f, 1.0f);
	assert_int_equal(ln_tensor_permute(&pav, &pa, (const int[]){ 2, 0, 1 }, &err), LN_OK);
	assert_int_equal(ln_tensor_matmul(&o, &pav, &b3, &err), LN_OK);
	check_bmm(&o, &pav, &b3);
	ln_tensor_release(&o);
	/* batch broadcast: {1,K,N} is shared, and a 2-D a with a batched b */
	assert_int_equal(ln_tensor_narrow(&b1, &b3, 0, 1, 1, &err), LN_OK);
	assert_int_equal(ln_tensor_matmul(&o, &a3, &b1, &err), LN_OK);
	assert_shape(&o, 3, w346);
	check_bmm(&o, &a3, &b1);
	ln_tensor_release(&o);
	ln_tensor m2, m2v = LN_TENSOR_EMPTY;
	const int64_t s45[2] = { 4, 5 };
	random_tensor(&m2, 2, s45, -1.0f, 1.0f);
	assert_int_equal(ln_tensor_matmul(&o, &m2, &b3, &err), LN_OK);
	assert_shape(&o, 3, w346);
	check_bmm(&o, &m2, &b3);
	ln_tensor_release(&o);
	/* errors */
	const int64_t s2[3] = { 2, 4, 5 };
	ln_tensor a2;
	arange(&a2, 3, s2);
	assert_int_equal(ln_tensor_matmul(&o, &a2, &b3, &err), LN_ESHAPE);
	assert_msg(&err, "batch dimensions of {2,4,5} and {3,5,6} do not broadcast");
	assert_int_equal(ln_tensor_matmul(&o, &a3, &a3, &err), LN_ESHAPE);
	assert_msg(&err, "inner dimensions differ: {3,4,5} x {3,4,5}");
	assert_true(ln_tensor_is_empty(&o));
	ln_tensor_release(&m2v);
	ln_tensor_release(&a2);
	ln_tensor_release(&m2);
	ln_tensor_release(&b1);
	ln_tensor_release(&pav);
	ln_tensor_release(&pa);
	ln_tensor_release(&a3t);
	ln_tensor_release(&b3t);
	ln_tensor_release(&at);
	ln_tensor_release(&bt);
	ln_tensor_release(&a3n);
	ln_tensor_release(&a3);
	ln_tensor_release(&b3);
	ln_tensor_release(&b2);
}

/* ---- multinomial ---------------------------------------------------------------------- */

static void test_multinomial(void **state)
{
	ln_error err;
	ln_rng *g = ln_rng_global();
	ln_tensor p, o = LN_TENSOR_EMPTY;
	/* one certain category per row */
	const int64_t s23[2] = { 2, 3 };
	from_values(&p, 2, s23, (const float[]){ 0, 5, 0, 0, 0, 0.1f });
	assert_int_equal(ln_tensor_multinomial(&o, &p, 4, true, g, &err), LN_OK);
	const int64_t w24[2] = { 2, 4 };
	assert_shape(&o, 2, w24);
	for (int i = 0; i < 4; i++) {
		assert_float_equal(ln_tensor_data(&o)[i], 2.0f, 0);
		assert_float_equal(ln_tensor_data(&o)[4 + i], 3.0f, 0);
	}
	ln_tensor_release(&o);
	ln_tensor_release(&p);
	/* without replacement, k = C: every row a permutation of 1..C, zero
	 * weights never drawn before the positive ones run out */
	ln_rng_seed(ln_rng_global(), SEED);
	const int64_t s45[2] = { 4, 5 };
	from_values(&p, 2, s45, (const float[]){ 1, 2, 3, 4, 5, 5, 4, 3, 2, 1,
	                                          0.2f, 0.2f, 0.2f, 0.2f, 0.2f, 9, 1, 1, 1, 1 });
	assert_int_equal(ln_tensor_multinomial(&o, &p, 5, false, g, &err), LN_OK);
	for (int r = 0; r < 4; r++) {
		int seen[5] = { 0 };
		for (int s = 0; s < 5; s++) {
			float v = ln_tensor_data(&o)[r * 5 + s];
			assert_true(v >= 1 && v <= 5 && v == floorf(v));
			seen[(int)v - 1]++;
		}
		for (int c = 0; c < 5; c++)
			assert_int_equal(seen[c], 1);
	}
	ln_tensor_release(&o);
	/* the same seed, the same draws */
	ln_rng_seed(ln_rng_global(), SEED);
	ln_tensor o2 = LN_TENSOR_EMPTY;
	assert_int_equal(ln_tensor_multinomial(&o2, &p, 5, false, g, &err), LN_OK);
	ln_rng_seed(ln_rng_global(), SEED);
	assert_int_equal(ln_tensor_multinomial(&o, &p, 5, false, g, &err), LN_OK);
	assert_memory_equal(ln_tensor_data(&o), ln_tensor_data(&o2), 20 * sizeof(float));
	ln_tensor_release(&o);
	/* a generator of one's own: the same draws for the same seed, and the
	 * global generator untouched */
	ln_rng mine = LN_RNG_INIT;
	ln_rng_seed(&mine, SEED);
	ln_rng_seed(g, SEED + 1);
	uint64_t next = ln_rng_next(g);
	ln_rng_seed(g, SEED + 1);
	assert_int_equal(ln_tensor_multinomial(&o, &p, 5, false, &mine, &err), LN_OK);
	assert_memory_equal(ln_tensor_data(&o), ln_tensor_data(&o2), 20 * sizeof(float));
	assert_true(ln_rng_next(g) == next);
	ln_tensor_release(&o);
	ln_tensor_release(&o2);
	ln_tensor_release(&p);
	/* frequencies: weights {1,3} (1-D) drawn 20000 times with replacement
	 * give category 2 with probability 3/4; 4 standard deviations */
	const int64_t s2[1] = { 2 };
	from_values(&p, 1, s2, (const float[]){ 1, 3 });
	ln_rng_seed(ln_rng_global(), SEED);
	assert_int_equal(ln_tensor_multinomial(&o, &p, 20000, true, g, &err), LN_OK);
	double twos = 0;
	for (int i = 0; i < 20000; i++)
		twos += ln_tensor_data(&o)[i] == 2.0f;
	assert_true(fabs(twos / 20000 - 0.75) < 4 * sqrt(0.75 * 0.25 / 20000));
	ln_tensor_release(&o);
	/* first draw without replacement from {1,3}: the same law */
	twos = 0;
	for (int i = 0; i < 4000; i++) {
		assert_int_equal(ln_tensor_multinomial(&o, &p, 2, false, g, &err), LN_OK);
		twos += ln_tensor_data(&o)[0] == 2.0f;
		assert_float_equal(ln_tensor_data(&o)[0] + ln_tensor_data(&o)[1], 3.0f, 0);
		ln_tensor_release(&o);
	}
	assert_true(fabs(twos / 4000 - 0.75) < 4 * sqrt(0.75 * 0.25 / 4000));
	ln_tensor_release(&p);
	/* errors: checked before any draw, the rng is untouched */
	const int64_t s22[2] = { 2, 2 };
	const struct { float v[4]; int64_t k; bool repl; ln_status st; const char *msg; } bad[] = {
		{ { 1, 1, 1, -0.5f }, 1, true, LN_ERANGE,
		  "weight -0.5 at row 2, column 2 is negative; probabilities must be >= 0" },
		{ { 1, NAN, 1, 1 }, 1, true, LN_ENAN, "weight nan at row 1, column 2 is not a finite" },
		{ { 1, 1, INFINITY, 1 }, 1, true, LN_ENAN, "row 2, column 1 is not a finite" },
		{ { 1, 1, 0, 0 }, 1, true, LN_ERANGE, "row 2 has no positive weight (all 2 are 0)" },
		{ { 1, 1, 0, 1 }, 2, false, LN_ERANGE,
		  "cannot draw 2 samples without replacement from row 2, which has 1 non-zero weight" },
		{ { 1, 1, 1, 1 }, 0, true, LN_ERANGE, "number of samples must be >= 1, got 0" },
		{ { 1, 1, 1, 1 }, -5, false, LN_ERANGE, "got -5" },
	};
	for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
		from_values(&p, 2, s22, bad[c].v);
		ln_rng_seed(ln_rng_global(), SEED);
		uint64_t before = ln_rng_next(ln_rng_global());
		ln_rng_seed(ln_rng_global(), SEED);
		assert_int_equal(ln_tensor_multinomial(&o, &p, bad[c].k, bad[c].repl, g, &err),
		                 bad[c].st);
		assert_msg(&err, bad[c].msg);
		assert_true(ln_tensor_is_empty(&o));
		assert_true(ln_rng_next(ln_rng_global()) == before);
		ln_tensor_release(&p);
	}
	/* shapes other than {C} and {N,C} */
	const int64_t s3d[3] = { 1, 2, 2 };
	arange(&p, 3, s3d);
	assert_int_equal(ln_tensor_multinomial(&o, &p, 1, true, g, &err), LN_ESHAPE);
	assert_msg(&err, "expected probabilities of shape {N,C} or {C}, got {1,2,2}");
	ln_tensor_release(&p);
}

/* ---- LN_ENOMEM on every allocating path, without leaks ------------------------- */

typedef ln_status (*alloc_op)(ln_tensor *out, const ln_tensor *a, const ln_tensor *b,
                              ln_error *err);

static ln_status op_alloc(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_alloc(o, a->ndim, a->shape, e);
}
static ln_status op_ensure(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_ensure(o, a->ndim, a->shape, e);
}
static ln_status op_reshape(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	const int64_t s[1] = { -1 };
	return ln_tensor_reshape(o, a, 1, s, e);
}
static ln_status op_clone(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_clone(o, a, e);
}
static ln_status op_binary(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_binary(o, LN_MUL, a, b, e);
}
static ln_status op_scalar(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_binary_scalar(o, LN_SUB, a, 2.0f, true, e);
}
static ln_status op_unary(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_unary(o, LN_EXP, a, e);
}
static ln_status op_reduce(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_reduce_dim(o, LN_RARGMAX, a, 1, e);
}
static ln_status op_matmul(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	/* a {4,3} strided (doubly, so it is copied); b {3,4} strided (copied too) */
	return ln_tensor_matmul(o, a, b, e);
}
static ln_status op_transpose(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_transpose(o, a, e);
}
static ln_status op_sort(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	ln_tensor idx = LN_TENSOR_EMPTY;
	ln_status st = ln_tensor_sort(o, &idx, a, 1, false, e);
	ln_tensor_release(&idx);
	return st;
}
static ln_status op_topk(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	ln_tensor idx = LN_TENSOR_EMPTY;
	ln_status st = ln_tensor_topk(o, &idx, a, 2, 0, e);
	ln_tensor_release(&idx);
	return st;
}
static ln_status op_index(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_index_select(o, a, 0, (const int64_t[]){ 3, 0, 3 }, 3, e);
}
static ln_status op_cat(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_cat(o, 2, (const ln_tensor *[]){ a, a }, 1, e);
}
static ln_status op_stack(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_stack(o, 2, (const ln_tensor *[]){ a, a }, 0, e);
}
static ln_status op_where(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_where(o, a, a, a, e);
}
static ln_status op_clamp(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	return ln_tensor_clamp(o, a, 1.0f, 5.0f, e);
}
static ln_status op_multinomial(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	/* each row of a has 2 positive entries */
	return ln_tensor_multinomial(o, a, 2, false, ln_rng_global(), e);
}
static ln_status op_broadcast(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	ln_tensor row = LN_TENSOR_EMPTY;
	ln_status st = ln_tensor_select(&row, a, 0, e);  /* {3}, broadcast over a's rows */
	if (st == LN_OK)
		st = ln_tensor_binary(o, LN_MUL, a, &row, e);
	ln_tensor_release(&row);
	return st;
}
/* in place with an operand sharing the storage: the temporary */
static ln_status op_inplace(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	ln_tensor row = LN_TENSOR_EMPTY;
	ln_status st = ln_tensor_clone(o, a, e);
	if (st == LN_OK)
		st = ln_tensor_select(&row, o, 1, e);
	if (st == LN_OK)
		st = ln_tensor_binary_(o, LN_SUB, &row, e);
	ln_tensor_release(&row);
	if (st != LN_OK)
		ln_tensor_release(o);
	return st;
}
static ln_status op_copy_alias(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	ln_tensor row = LN_TENSOR_EMPTY;
	ln_status st = ln_tensor_clone(o, a, e);
	if (st == LN_OK)
		st = ln_tensor_select(&row, o, 2, e);
	if (st == LN_OK)
		st = ln_tensor_copy(o, &row, e);
	ln_tensor_release(&row);
	if (st != LN_OK)
		ln_tensor_release(o);
	return st;
}
static ln_status op_bmm(ln_tensor *o, const ln_tensor *a, const ln_tensor *b, ln_error *e)
{
	ln_tensor a3 = LN_TENSOR_EMPTY;  /* {1,4,3}, strided: copied */
	ln_status st = ln_tensor_unsqueeze(&a3, a, 0, e);
	if (st == LN_OK)
		st = ln_tensor_matmul(o, &a3, b, e);
	ln_tensor_release(&a3);
	return st;
}

static void test_enomem_everywhere(void **state)
{
	static const struct {
		const char *name;
		alloc_op fn;
	} ops[] = {
		{ "alloc", op_alloc },   { "ensure", op_ensure },   { "reshape", op_reshape },
		{ "clone", op_clone },   { "binary", op_binary },   { "binary_scalar", op_scalar },
		{ "unary", op_unary },   { "reduce_dim", op_reduce }, { "matmul", op_matmul },
		{ "transpose", op_transpose }, { "sort", op_sort }, { "topk", op_topk },
		{ "index_select", op_index }, { "cat", op_cat }, { "stack", op_stack },
		{ "where", op_where }, { "clamp", op_clamp }, { "multinomial", op_multinomial },
		{ "broadcast", op_broadcast }, { "binary_", op_inplace }, { "copy", op_copy_alias },
		{ "batched matmul", op_bmm },
	};
	ln_error err;
	/* inputs: {4,3} and {3,4} views with neither stride 1 (every element
	 * stepping by 2 in a bigger block), so every path copies */
	ln_tensor ba, bb;
	const int64_t sa[2] = { 8, 6 };
	arange(&ba, 2, sa);
	arange(&bb, 2, sa);
	ln_tensor a = LN_TENSOR_EMPTY, b = LN_TENSOR_EMPTY;
	ln_tensor_ref(&a, &ba);
	a.shape[0] = 4;
	a.shape[1] = 3;
	a.stride[0] = 12;
	a.stride[1] = 2;
	ln_tensor_ref(&b, &bb);
	b.shape[0] = 3;
	b.shape[1] = 4;
	b.stride[0] = 12;
	b.stride[1] = 3;  /* 3 rows of 4, at columns 0,3,6,9 of every second row */
	ln_tensor bsame = LN_TENSOR_EMPTY;
	ln_tensor_ref(&bsame, &a);  /* same shape as a, for binary */
	bsame.offset = 1;

	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		const ln_tensor *rhs = ops[i].fn == op_binary ? &bsame : &b;
		uint64_t live = live_bytes();
		int failures = 0;
		for (long n = 1;; n++) {
			ln_tensor out = LN_TENSOR_EMPTY;
			ln_alloc_fail_nth(n);
			err.code = LN_OK;
			ln_status st = ops[i].fn(&out, &a, rhs, &err);
			ln_alloc_fail_nth(0);
			if (st == LN_OK) {
				assert_false(ln_tensor_is_empty(&out));
				ln_tensor_release(&out);
				assert_int_equal(live_bytes(), live);
				break;
			}
			if (st != LN_ENOMEM)
				fail_msg("%s: failing allocation %ld gave %s: %s", ops[i].name, n,
				         ln_status_name(st), err.msg);
			assert_int_equal(err.code, LN_ENOMEM);
			assert_non_null(strstr(err.msg, "out of memory"));
			assert_true(ln_tensor_is_empty(&out));
			if (live_bytes() != live)
				fail_msg("%s: failing allocation %ld leaked %lld bytes", ops[i].name, n,
				         (long long)(live_bytes() - live));
			failures++;
			assert_true(n < 100);
		}
		if (failures < 1)
			fail_msg("%s: no allocation was failed", ops[i].name);
	}
	ln_tensor_release(&bsame);
	ln_tensor_release(&a);
	ln_tensor_release(&b);
	ln_tensor_release(&ba);
	ln_tensor_release(&bb);
}

static void test_matmul_enomem_count(void **state)
{
	/* both inputs need copies: the 6 allocations (storage + data for two
	 * copies and the output) each fail in turn */
	ln_error err;
	ln_tensor base;
	const int64_t s[2] = { 8, 8 };
	arange(&base, 2, s);
	ln_tensor a = LN_TENSOR_EMPTY;
	ln_tensor_ref(&a, &base);
	a.shape[0] = 3;
	a.shape[1] = 3;
	a.stride[0] = 16;
	a.stride[1] = 2;
	int failures = 0;
	for (long n = 1; n < 50; n++) {
		ln_tensor o = LN_TENSOR_EMPTY;
		ln_alloc_fail_nth(n);
		ln_status st = ln_tensor_matmul(&o, &a, &a, &err);
		ln_alloc_fail_nth(0);
		ln_tensor_release(&o);
		if (st == LN_OK)
			break;
		failures++;
	}
	assert_int_equal(failures, 6);
	ln_tensor_release(&a);
	ln_tensor_release(&base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rng_default_state),  /* must run first */
		cmocka_unit_test(test_rng_known_answers),
		cmocka_unit_test(test_rng_reproducible),
		cmocka_unit_test(test_rng_normal_cache_reset),
		cmocka_unit_test(test_rng_distributions),
		cmocka_unit_test(test_error_fail),
		cmocka_unit_test(test_status_names),
		cmocka_unit_test(test_shape_str),
		cmocka_unit_test(test_alloc),
		cmocka_unit_test(test_alloc_errors),
		cmocka_unit_test(test_ensure),
		cmocka_unit_test(test_ref_release),
		cmocka_unit_test(test_queries),
		cmocka_unit_test(test_select),
		cmocka_unit_test(test_narrow_each_dim),
		cmocka_unit_test(test_narrow_errors),
		cmocka_unit_test(test_reshape),
		cmocka_unit_test(test_reshape_strided_copies),
		cmocka_unit_test(test_clone),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_fill_foreach),
		cmocka_unit_test(test_binary),
		cmocka_unit_test(test_binary_strided),
		cmocka_unit_test(test_binary_scalar),
		cmocka_unit_test(test_unary),
		cmocka_unit_test(test_reductions),
		cmocka_unit_test(test_reduce_dim),
		cmocka_unit_test(test_matmul),
		cmocka_unit_test(test_matmul_layouts),
		cmocka_unit_test(test_transpose),
		cmocka_unit_test(test_allclose),
		cmocka_unit_test(test_random_fills),
		cmocka_unit_test(test_iter),
		cmocka_unit_test(test_broadcast_shape),
		cmocka_unit_test(test_dim_resolve),
		cmocka_unit_test(test_binary_broadcast),
		cmocka_unit_test(test_binary_inplace),
		cmocka_unit_test(test_copy_broadcast),
		cmocka_unit_test(test_unsqueeze_squeeze),
		cmocka_unit_test(test_permute_transpose),
		cmocka_unit_test(test_expand_select_dim),
		cmocka_unit_test(test_sort_topk),
		cmocka_unit_test(test_argmin),
		cmocka_unit_test(test_index_cat_stack),
		cmocka_unit_test(test_clamp_where),
		cmocka_unit_test(test_matmul_batched),
		cmocka_unit_test(test_multinomial),
		cmocka_unit_test(test_enomem_everywhere),
		cmocka_unit_test(test_matmul_enomem_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
