/*
 * init.c -- weight initialisation: Xavier/Glorot, He, uniform, normal.
 */
#include <float.h>
#include <math.h>

#include "init.h"

ln_status ln_init_fans(const ln_tensor *t, double *fan_in, double *fan_out, ln_error *err)
{
	if (ln_tensor_is_empty(t))
		return ln_fail(err, LN_EARG, "expected a non-empty tensor, got an empty one");
	if (t->ndim < 2) {
		char s[128];
		return ln_fail(err, LN_ESHAPE,
		               "expected a weight of at least 2 dimensions ({out,in} or {out,in,k,k}) "
		               "to compute fan_in/fan_out, got %s",
		               ln_tensor_shape_str(t, s, sizeof s));
	}
	double receptive = 1;
	for (int d = 2; d < t->ndim; d++)
		receptive *= (double)t->shape[d];
	*fan_in = (double)t->shape[1] * receptive;
	*fan_out = (double)t->shape[0] * receptive;
	return LN_OK;
}

ln_status ln_init_xavier(ln_tensor *t, ln_rng *rng, ln_error *err)
{
	double fan_in, fan_out;
	ln_status s = ln_init_fans(t, &fan_in, &fan_out, err);
	if (s != LN_OK)
		return s;
	float a = (float)sqrt(6.0 / (fan_in + fan_out));
	ln_tensor_uniform(t, rng, -a, a);
	return LN_OK;
}

ln_status ln_init_he(ln_tensor *t, ln_rng *rng, ln_error *err)
{
	double fan_in, fan_out;
	ln_status s = ln_init_fans(t, &fan_in, &fan_out, err);
	if (s != LN_OK)
		return s;
	ln_tensor_randn(t, rng, 0.0f, (float)sqrt(2.0 / fan_in));
	return LN_OK;
}

ln_status ln_init_uniform(ln_tensor *t, ln_rng *rng, double a, double b, ln_error *err)
{
	if (ln_tensor_is_empty(t))
		return ln_fail(err, LN_EARG, "expected a non-empty tensor, got an empty one");
	if (!(fabs(a) <= FLT_MAX) || !(fabs(b) <= FLT_MAX) || a > b)
		return ln_fail(err, LN_ERANGE, "expected finite float bounds with a <= b, got a=%g, b=%g", a, b);
	ln_tensor_uniform(t, rng, (float)a, (float)b);
	return LN_OK;
}

ln_status ln_init_normal(ln_tensor *t, ln_rng *rng, double mean, double std, ln_error *err)
{
	if (ln_tensor_is_empty(t))
		return ln_fail(err, LN_EARG, "expected a non-empty tensor, got an empty one");
	if (!(fabs(mean) <= FLT_MAX) || !(std >= 0 && std <= FLT_MAX))
		return ln_fail(err, LN_ERANGE, "expected a finite mean and a finite std >= 0, got mean=%g, std=%g",
		               mean, std);
	ln_tensor_randn(t, rng, (float)mean, (float)std);
	return LN_OK;
}
