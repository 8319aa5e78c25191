/*
 * tensor_random.c -- tensors drawn from a generator (rng.h; scripts use
 * ln_rng_global(), the one lunet.seed seeds): uniform and normal fills,
 * and categorical sampling (multinomial).  Everything draws in row-major
 * order, so that a seed fixes the result whatever the tensor's strides.
 */
#include <assert.h>
#include <math.h>

#include "alloc.h"
#include "rng.h"
#include "tensor_internal.h"

/* ======================================================================
 * Random fills
 * ====================================================================== */

void ln_tensor_rand(ln_tensor *t, ln_rng *rng)
{
	ln_tensor_uniform(t, rng, 0.0f, 1.0f);
}

void ln_tensor_randn(ln_tensor *t, ln_rng *rng, float mean, float std)
{
	assert(!ln_tensor_is_empty(t));
	float *d = ln_tensor_data(t);
	ln_iter it;
	ln_iter_tensors(&it, t->ndim, t->shape, 1, (const ln_tensor *[]){ t });
	do {
		for (int64_t j = 0; j < it.len; j++)
			d[it.off[0] + j * it.inc[0]] = (float)(mean + std * ln_rng_normal(rng));
	} while (ln_iter_next(&it));
}

/* Uniform in [a,b).  The float rounding of a + (b-a)u can reach b; such
 * draws are pulled back to the largest float below b. */
void ln_tensor_uniform(ln_tensor *t, ln_rng *rng, float a, float b)
{
	assert(!ln_tensor_is_empty(t));
	float *d = ln_tensor_data(t);
	ln_iter it;
	ln_iter_tensors(&it, t->ndim, t->shape, 1, (const ln_tensor *[]){ t });
	do {
		for (int64_t j = 0; j < it.len; j++) {
			float v = (float)((double)a + ((double)b - (double)a) * ln_rng_uniform(rng));
			if (v >= b && b > a)
				v = nextafterf(b, a);
			d[it.off[0] + j * it.inc[0]] = v;
		}
	} while (ln_iter_next(&it));
}


/* ======================================================================
 * Categorical sampling
 * ====================================================================== */

/* Checks every row of the weights p (rows x cols, row stride rs, column
 * stride cs): finite, >= 0, some positive, and enough positive ones for k
 * draws without replacement.  Errors: LN_ENAN, LN_ERANGE. */
static ln_status check_weights(const float *p, int64_t rows, int64_t cols, int64_t rs,
                               int64_t cs, int64_t k, bool replacement, ln_error *err)
{
	for (int64_t r = 0; r < rows; r++) {
		int64_t positive = 0;
		for (int64_t c = 0; c < cols; c++) {
			float w = p[r * rs + c * cs];
			if (!isfinite(w))
				return ln_fail(err, LN_ENAN, "weight %g at row %lld, column %lld is not a "
				               "finite number", ln_shown(w), (long long)r + 1, (long long)c + 1);
			if (w < 0)
				return ln_fail(err, LN_ERANGE, "weight %g at row %lld, column %lld is "
				               "negative; probabilities must be >= 0", (double)w,
				               (long long)r + 1, (long long)c + 1);
			positive += w > 0;
		}
		if (positive == 0)
			return ln_fail(err, LN_ERANGE, "row %lld has no positive weight (all %lld are 0)",
			               (long long)r + 1, (long long)cols);
		if (!replacement && k > positive)
			return ln_fail(err, LN_ERANGE, "cannot draw %lld samples without replacement from "
			               "row %lld, which has %lld non-zero weight%s", (long long)k,
			               (long long)r + 1, (long long)positive, positive == 1 ? "" : "s");
	}
	return LN_OK;
}

/* Draws with replacement: cum[] is the running sum of w (double, in
 * order); a draw u in [0, total) picks the first j with cum[j] > u, which
 * has w[j] > 0.  Rounding may leave u == total, which picks the last
 * positive weight. */
static int64_t draw_cumulative(ln_rng *rng, const double *cum, int64_t cols)
{
	double u = ln_rng_uniform(rng) * cum[cols - 1];
	int64_t lo = 0, hi = cols - 1;
	if (!(cum[hi] > u)) {
		while (hi > 0 && cum[hi - 1] == cum[hi])
			hi--;
		return hi;
	}
	while (lo < hi) {  /* first j with cum[j] > u */
		int64_t mid = lo + (hi - lo) / 2;
		if (cum[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* One draw without replacement from w (positive weights left), which
 * then zeroes the one drawn: the running sum is taken afresh in order. */
static int64_t draw_remove(ln_rng *rng, double *w, int64_t cols)
{
	double total = 0;
	for (int64_t j = 0; j < cols; j++)
		total += w[j];
	double u = ln_rng_uniform(rng) * total, acc = 0;
	int64_t pick = -1, last = -1;
	for (int64_t j = 0; j < cols; j++) {
		if (w[j] <= 0)
			continue;
		last = j;
		acc += w[j];
		if (acc > u) {
			pick = j;
			break;
		}
	}
	if (pick < 0)  /* rounding: u reached the total */
		pick = last;
	assert(pick >= 0);
	w[pick] = 0;
	return pick;
}

/*
 * out = k samples per row of the weights probs ({N,C} -> {N,k}, {C} ->
 * {k}), 1-based category indices as floats.  All rows are checked
 * before the first draw.  The scratch row (C doubles) is freed here.
 * Errors: LN_ESHAPE, LN_ENAN, LN_ERANGE, LN_ENOMEM.
 */
ln_status ln_tensor_multinomial(ln_tensor *out, const ln_tensor *probs, int64_t k,
                                bool replacement, ln_rng *rng, ln_error *err)
{
	char buf[SHAPE_BUF];
	assert(ln_tensor_is_empty(out) && !ln_tensor_is_empty(probs));
	if (probs->ndim > 2)
		return ln_fail(err, LN_ESHAPE, "expected probabilities of shape {N,C} or {C}, got %s",
		               ln_tensor_shape_str(probs, buf, sizeof buf));
	bool two = probs->ndim == 2;
	int64_t rows = two ? probs->shape[0] : 1, cols = probs->shape[probs->ndim - 1];
	int64_t rs = two ? probs->stride[0] : 0, cs = probs->stride[probs->ndim - 1];
	if (k < 1)
		return ln_fail(err, LN_ERANGE, "number of samples must be >= 1, got %lld",
		               (long long)k);
	if (cols > LN_MAX_FLOAT_INDEX)
		return ln_fail(err, LN_ERANGE, "%lld categories are more than %lld: their indices "
		               "would not be exact in float32", (long long)cols,
		               (long long)LN_MAX_FLOAT_INDEX);
	const float *p = ln_tensor_data(probs);
	ln_status st = check_weights(p, rows, cols, rs, cs, k, replacement, err);
	if (st != LN_OK)
		return st;
	int64_t shape[2] = { rows, k };
	if ((st = ln_tensor_alloc(out, two ? 2 : 1, two ? shape : &k, err)) != LN_OK)
		return st;
	double *w = ln_malloc((size_t)cols * sizeof *w);
	if (w == NULL) {
		ln_tensor_release(out);
		return ln_fail(err, LN_ENOMEM, "out of memory for %lld categories", (long long)cols);
	}
	float *o = ln_tensor_data(out);
	for (int64_t r = 0; r < rows; r++) {
		double acc = 0;
		for (int64_t c = 0; c < cols; c++) {
			double v = p[r * rs + c * cs];
			acc += v;
			w[c] = replacement ? acc : v;
		}
		for (int64_t s = 0; s < k; s++) {
			int64_t j = replacement ? draw_cumulative(rng, w, cols) : draw_remove(rng, w, cols);
			o[r * k + s] = (float)(j + 1);
		}
	}
	ln_free(w);
	return LN_OK;
}
