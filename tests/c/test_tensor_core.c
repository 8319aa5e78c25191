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
	assert_int_equal(ln_tensor_narrow(&v, &t, -1, 0, 1, &err), LN_ERANGE);
	assert_msg(&err, "dimension 0 does not exist");
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
	/* contiguous {12} -> strided {2,3,2}: shapes differ, numel equal */
	const int64_t s12[1] = { 12 };
	arange(&flat, 1, s12);
	assert_int_equal(ln_tensor_copy(&v2, &flat, &err), LN_OK);
	for (int64_t n = 0; n < 12; n++)
		assert_float_equal(nth(&v2, n), (float)n, 0);
	/* strided {2,3,2} -> a strided {3,4} view (narrowed columns of a {3,5}) */
	ln_tensor b3, v3 = LN_TENSOR_EMPTY;
	const int64_t s35[2] = { 3, 5 };
	arange(&b3, 2, s35);
	assert_int_equal(ln_tensor_narrow(&v3, &b3, 1, 1, 4, &err), LN_OK);
	assert_int_equal(ln_tensor_copy(&v3, &v1, &err), LN_OK);
	for (int64_t n = 0; n < 12; n++)
		assert_float_equal(nth(&v3, n), nth(&v1, n), 0);
	for (int i = 0; i < 3; i++)
		assert_float_equal(ln_tensor_data(&b3)[i * 5], (float)(i * 5), 0);  /* column 1 kept */
	/* contiguous -> contiguous of another shape */
	ln_tensor c34;
	const int64_t s34[2] = { 3, 4 };
	arange(&c34, 2, s34);
	ln_tensor_fill(&c34, 0.0f);
	assert_int_equal(ln_tensor_copy(&c34, &flat, &err), LN_OK);
	for (int64_t n = 0; n < 12; n++)
		assert_float_equal(ln_tensor_data(&c34)[n], (float)n, 0);
	/* numel mismatch */
	assert_int_equal(ln_tensor_copy(&b1, &flat, &err), LN_ESHAPE);
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
	assert_msg(&err, "expected tensors of the same shape, got {2,3} and {3,2}");
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
	for (int op = LN_ADD; op <= LN_DIV; op++) {
		/* strided with strided, strided with contiguous, contiguous with strided */
		ln_tensor c2 = LN_TENSOR_EMPTY;
		assert_int_equal(ln_tensor_clone(&c2, &v2, &err), LN_OK);
		const ln_tensor *lhs[3] = { &v1, &v1, &c2 }, *rhs[3] = { &v2, &c2, &v1 };
		for (int c = 0; c < 3; c++) {
			assert_int_equal(ln_tensor_binary(&o, (ln_binop)op, lhs[c], rhs[c], &err), LN_OK);
			assert_true(ln_tensor_is_contiguous(&o));
			for (int64_t n = 0; n < 36; n++) {
				float want = (float)ref_binop((ln_binop)op, nth(lhs[c], n), nth(rhs[c], n));
				assert_float_equal(ln_tensor_data(&o)[n], want, 0);
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
	for (int op = LN_ADD; op <= LN_DIV; op++) {
		for (int first = 0; first <= 1; first++) {
			assert_int_equal(ln_tensor_binary_scalar(&o, (ln_binop)op, &v, 4.0f, first, &err),
			                 LN_OK);
			assert_shape(&o, 3, v.shape);
			for (int64_t n = 0; n < 12; n++) {
				double x = nth(&v, n);
				float want = (float)(first ? ref_binop((ln_binop)op, 4.0, x)
				                           : ref_binop((ln_binop)op, x, 4.0));
				assert_float_equal(ln_tensor_data(&o)[n], want, 0);
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
	int64_t arg = -1;
	for (int64_t q = 0; q < size; q++) {
		idx[dim] = q;
		double x = at3(t, idx[0], idx[1], idx[2]);
		acc += x;
		if (x > best) {
			best = x;
			arg = q;
		}
		if (x < worst)
			worst = x;
	}
	switch (op) {
	case LN_RSUM: return acc;
	case LN_RMEAN: return acc / (double)size;
	case LN_RMAX: return best;
	case LN_RMIN: return worst;
	case LN_RARGMAX: return (double)(arg + 1);
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
			for (int op = LN_RSUM; op <= LN_RARGMAX; op++) {
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
	assert_int_equal(ln_tensor_reduce_dim(&o, LN_RSUM, &h, -1, &err), LN_ERANGE);
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
	assert_int_equal(ln_tensor_matmul(&o, &d, &c, &err), LN_ESHAPE);
	assert_msg(&err, "expected 2-D tensors, got {2,3,4} x {4,5}");
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

static void test_enomem_everywhere(void **state)
{
	static const struct {
		const char *name;
		alloc_op fn;
	} ops[] = {
		{ "alloc", op_alloc },   { "ensure", op_ensure },   { "reshape", op_reshape },
		{ "clone", op_clone },   { "binary", op_binary },   { "binary_scalar", op_scalar },
		{ "unary", op_unary },   { "reduce_dim", op_reduce }, { "matmul", op_matmul },
		{ "transpose", op_transpose },
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
		cmocka_unit_test(test_enomem_everywhere),
		cmocka_unit_test(test_matmul_enomem_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
