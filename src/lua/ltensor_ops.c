/*
 * ltensor_ops.c -- the Lua binding of the tensor operations beyond the
 * basics of ltensor.c: views (unsqueeze, squeeze, permute, expand,
 * select), index, sort, topk, clamp, multinomial, and lunet.cat,
 * lunet.stack and lunet.where.
 *
 * The conventions of ltensor.c hold: dimensions are 1-based or negative
 * (-1 is the last), indices 1-based; a result is born as an empty
 * userdata before the core fills it; every error names the function and
 * the value ("Tensor:topk: k must be in 1..3 ..., got 5").  Scratch
 * memory (index arrays, lists of tensors) lives in userdata pushed on the
 * stack, so that a Lua error frees it with the rest.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "core/tensor.h"
#include "ltensor.h"

/* Raises "fname: err" for a failed core call. */
static int fail(lua_State *L, const char *fname, const ln_error *err)
{
	return lnL_error(L, fname, err);
}

/* Reads up to LN_MAX_DIMS integers from the arguments arg..top, or from
 * one table at arg, into v; returns how many.  what names them ("sizes",
 * "dimensions").  Raises on none, too many, or a value that is not an
 * integer (naming its position). */
static int readints(lua_State *L, int arg, lua_Integer *v, const char *fname, const char *what)
{
	char buf[64];
	int top = lua_gettop(L), n;
	bool table = lua_type(L, arg) == LUA_TTABLE;
	if (table) {
		if (top > arg)
			lnL_raisef(L, "%s: expected nothing after the table of %s, got %s", fname, what,
			           lnL_tname(L, arg + 1));
		lua_Unsigned len = lua_rawlen(L, arg);
		if (len > LN_MAX_DIMS)
			lnL_raisef(L, "%s: expected at most %d %s, got %llu", fname, LN_MAX_DIMS, what,
			           (unsigned long long)len);
		n = (int)len;
	} else {
		n = top < arg ? 0 : top - arg + 1;
		if (n > LN_MAX_DIMS)
			lnL_raisef(L, "%s: expected at most %d %s, got %d", fname, LN_MAX_DIMS, what, n);
	}
	if (n == 0)
		lnL_raisef(L, "%s: expected %s, got none", fname, what);
	for (int i = 0; i < n; i++) {
		int idx = arg + i;
		if (table) {
			lua_rawgeti(L, arg, i + 1);
			idx = lua_gettop(L);
		}
		int isint = 0;
		if (lua_type(L, idx) == LUA_TNUMBER)
			v[i] = lua_tointegerx(L, idx, &isint);
		if (!isint)
			lnL_raisef(L, "%s: expected integer %s, got %s at position %d", fname, what,
			           lua_type(L, idx) == LUA_TNUMBER ? lnL_numstr(buf, sizeof buf, L, idx)
			                                           : lnL_tname(L, idx), i + 1);
		if (table)
			lua_pop(L, 1);
	}
	return n;
}

/* ==================================================================== */
/* Views                                                                 */
/* ==================================================================== */

/* t:unsqueeze(d) -> a view with a new dimension of size 1 at position d
 * (1..ndim+1, or negative: -1 appends it) */
static int t_unsqueeze(lua_State *L)
{
	const char *fname = "Tensor:unsqueeze";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	int d = lnL_checkinsert(L, 2, t->ndim, fname);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_unsqueeze(out, t, d, &err) != LN_OK)
		return fail(L, fname, &err);
	return 1;
}

/* t:squeeze() -> a view without the dimensions of size 1 (one kept if all
 * are); t:squeeze(d) -> without dimension d if its size is 1, else t's
 * shape unchanged */
static int t_squeeze(lua_State *L)
{
	const char *fname = "Tensor:squeeze";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	if (lua_isnoneornil(L, 2)) {
		ln_tensor_squeeze_all(lnL_newtensor(L), t);
		return 1;
	}
	int d = lnL_checkdim(L, 2, t, fname);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_squeeze(out, t, d, &err) != LN_OK)
		return fail(L, fname, &err);
	return 1;
}

/* t:permute(d1, ..., dn) or t:permute{...} -> a view whose dimension i is
 * t's dimension di; every dimension of t appears once */
static int t_permute(lua_State *L)
{
	const char *fname = "Tensor:permute";
	char buf[SHAPE_BUF];
	ln_tensor *t = lnL_checkt(L, 1, fname);
	lua_Integer v[LN_MAX_DIMS];
	int n = readints(L, 2, v, fname, "dimensions");
	if (n != t->ndim)
		return lnL_raisef(L, "%s: expected %d dimensions (one per dimension of %s), got %d",
		                  fname, t->ndim, lnL_tshape(t, buf), n);
	int perm[LN_MAX_DIMS];
	for (int i = 0; i < n; i++)
		perm[i] = lnL_todim(L, v[i], t, fname);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_permute(out, t, perm, &err) != LN_OK)
		return fail(L, fname, &err);
	return 1;
}

/* t:expand(s1, ..., sn) or t:expand{...} -> a view of t broadcast to that
 * shape (size-1 dims stretch, new leading dims may be added, -1 keeps a
 * size); no memory is copied, so write to a clone */
static int t_expand(lua_State *L)
{
	const char *fname = "Tensor:expand";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	lua_Integer v[LN_MAX_DIMS];
	int n = readints(L, 2, v, fname, "sizes");
	int64_t shape[LN_MAX_DIMS];
	for (int i = 0; i < n; i++)
		shape[i] = (int64_t)v[i];
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_expand(out, t, n, shape, &err) != LN_OK)
		return fail(L, fname, &err);
	return 1;
}

/* t:select(d, i) -> a view of t at index i of dimension d, without that
 * dimension; for a 1-D tensor, the number t[i] */
static int t_select(lua_State *L)
{
	const char *fname = "Tensor:select";
	char buf[SHAPE_BUF];
	ln_tensor *t = lnL_checkt(L, 1, fname);
	int d = lnL_checkdim(L, 2, t, fname);
	lua_Integer i = lnL_checkint(L, 3, fname, "index");
	if (i < 1 || i > t->shape[d])
		return lnL_raisef(L, "%s: index %lld out of range for dimension %d of %s (expected "
		                  "1..%lld)", fname, (long long)i, d + 1, lnL_tshape(t, buf),
		                  (long long)t->shape[d]);
	if (t->ndim == 1) {
		lua_pushnumber(L, ln_tensor_data(t)[(i - 1) * t->stride[0]]);
		return 1;
	}
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_select_dim(out, t, d, (int64_t)i - 1, &err) != LN_OK)
		return fail(L, fname, &err);
	return 1;
}

/* ==================================================================== */
/* Indexing, sorting                                                     */
/* ==================================================================== */

/* The 1-based indices at arg (a table of integers or a 1-D tensor of
 * integral values), each in 1..size, as 0-based int64_t in a userdata
 * pushed onto the stack; *n gets the count.  Raises naming the position
 * and the value of the first bad one. */
static const int64_t *checkindices(lua_State *L, int arg, const ln_tensor *t, int dim,
                                   int64_t *n, const char *fname)
{
	char buf[64], sbuf[SHAPE_BUF];
	int64_t size = t->shape[dim];
	ln_tensor *it = NULL;
	if (lua_type(L, arg) == LUA_TTABLE) {
		*n = (int64_t)lua_rawlen(L, arg);
	} else if (luaL_testudata(L, arg, LN_TENSOR_MT)) {
		it = lnL_checkt(L, arg, fname);
		if (it->ndim != 1)
			lnL_raisef(L, "%s: expected a 1-D tensor of indices, got shape %s", fname,
			           lnL_tshape(it, sbuf));
		*n = it->shape[0];
	} else {
		lnL_raisef(L, "%s: expected indices as a table or a 1-D lunet.Tensor, got %s", fname,
		           lnL_tname(L, arg));
	}
	if (*n == 0)
		lnL_raisef(L, "%s: expected at least one index, got an empty table", fname);
	int64_t *idx = lua_newuserdatauv(L, (size_t)*n * sizeof *idx, 0);
	const float *p = it ? ln_tensor_data(it) : NULL;
	for (int64_t i = 0; i < *n; i++) {
		double v;
		const char *shown;
		if (it) {
			v = p[i * it->stride[0]];
			snprintf(buf, sizeof buf, "%.9g", isnan(v) ? fabs(v) : v);  /* no "-nan" */
			shown = buf;
		} else {
			lua_rawgeti(L, arg, (lua_Integer)i + 1);
			int type = lua_type(L, -1);
			v = type == LUA_TNUMBER ? lua_tonumber(L, -1) : NAN;
			shown = type == LUA_TNUMBER ? lnL_numstr(buf, sizeof buf, L, -1) : lnL_tname(L, -1);
			lua_pop(L, 1);  /* a string from a number stays in buf; a type name is static */
		}
		if (!(v == floor(v)))
			lnL_raisef(L, "%s: expected integer indices, got %s at position %lld", fname, shown,
			           (long long)i + 1);
		if (v < 1 || v > (double)size)
			lnL_raisef(L, "%s: index %s at position %lld is out of range for dimension %d of %s "
			           "(expected 1..%lld)", fname, shown, (long long)i + 1, dim + 1,
			           lnL_tshape(t, sbuf), (long long)size);
		idx[i] = (int64_t)v - 1;
	}
	return idx;
}

/* t:index(d, idx) -> a new tensor of t's entries idx (a table or 1-D
 * tensor of 1-based indices, repeats allowed) along dimension d */
static int t_index_select(lua_State *L)
{
	const char *fname = "Tensor:index";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	int d = lnL_checkdim(L, 2, t, fname);
	int64_t n = 0;
	const int64_t *idx = checkindices(L, 3, t, d, &n, fname);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_index_select(out, t, d, idx, n, &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

/* The dimension at arg of t, -1 (the last) when nil or absent. */
static int optdim(lua_State *L, int arg, const ln_tensor *t, const char *fname)
{
	return lua_isnoneornil(L, arg) ? t->ndim - 1 : lnL_checkdim(L, arg, t, fname);
}

/* Pushes the two tensors of a sort or topk. */
static int sorted(lua_State *L, ln_tensor *values, ln_tensor *indices, ln_status st,
                  const ln_error *err, const char *fname)
{
	if (st != LN_OK)
		return fail(L, fname, err);
	lnL_tpressure(L, values);
	lnL_tpressure(L, indices);
	return 2;
}

/* t:sort([d=-1[, descending=false]]) -> values, indices (1-based) along d;
 * stable, NaN above every number */
static int t_sort(lua_State *L)
{
	const char *fname = "Tensor:sort";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	int d = optdim(L, 2, t, fname);
	bool desc = lnL_optbool(L, 3, false, fname, "descending");
	ln_tensor *values = lnL_newtensor(L), *indices = lnL_newtensor(L);
	ln_error err;
	return sorted(L, values, indices, ln_tensor_sort(values, indices, t, d, desc, &err), &err,
	              fname);
}

/* t:topk(k[, d=-1]) -> values, indices of the k largest along d, largest
 * first */
static int t_topk(lua_State *L)
{
	const char *fname = "Tensor:topk";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	lua_Integer k = lnL_checkint(L, 2, fname, "k");
	int d = optdim(L, 3, t, fname);
	ln_tensor *values = lnL_newtensor(L), *indices = lnL_newtensor(L);
	ln_error err;
	return sorted(L, values, indices, ln_tensor_topk(values, indices, t, (int64_t)k, d, &err),
	              &err, fname);
}

/* ==================================================================== */
/* Values                                                                */
/* ==================================================================== */

/* A bound of clamp at arg: a number, or nil for none (dflt). */
static float optbound(lua_State *L, int arg, float dflt, const char *fname, const char *what)
{
	if (lua_isnoneornil(L, arg))
		return dflt;
	if (lua_type(L, arg) != LUA_TNUMBER)
		lnL_raisef(L, "%s: expected %s to be a number or nil, got %s", fname, what,
		           lnL_tname(L, arg));
	return (float)lua_tonumber(L, arg);
}

/* t:clamp(lo, hi) -> a new tensor with values below lo set to lo and
 * above hi to hi; either bound may be nil (not both) */
static int t_clamp(lua_State *L)
{
	const char *fname = "Tensor:clamp";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3))
		return lnL_raisef(L, "%s: expected a lower bound, an upper bound or both, got none",
		                  fname);
	float lo = optbound(L, 2, -INFINITY, fname, "the lower bound");
	float hi = optbound(L, 3, INFINITY, fname, "the upper bound");
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_clamp(out, t, lo, hi, &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

/* probs:multinomial(k[, replacement=false]) -> {N,k} (or {k} for {C})
 * category indices, 1-based, drawn from lunet's seeded generator; rows are
 * weights (>= 0, finite, not all 0), normalised by their sum */
static int t_multinomial(lua_State *L)
{
	const char *fname = "Tensor:multinomial";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	lua_Integer k = lnL_checkint(L, 2, fname, "number of samples");
	bool replacement = lnL_optbool(L, 3, false, fname, "replacement");
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_multinomial(out, t, (int64_t)k, replacement, ln_rng_global(), &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

/* ==================================================================== */
/* Joining, selecting                                                    */
/* ==================================================================== */

/* The tensors of the list at arg (a non-empty table of open tensors) as
 * an array in a userdata pushed onto the stack; the table keeps them
 * alive for the call.  *n gets the count. */
static const ln_tensor **checklist(lua_State *L, int arg, int *n, const char *fname)
{
	if (lua_type(L, arg) != LUA_TTABLE)
		lnL_raisef(L, "%s: expected a table of tensors, got %s", fname, lnL_tname(L, arg));
	lua_Unsigned len = lua_rawlen(L, arg);
	if (len == 0)
		lnL_raisef(L, "%s: expected a non-empty table of tensors, got an empty table", fname);
	if (len > INT_MAX)
		lnL_raisef(L, "%s: expected at most %d tensors, got %llu", fname, INT_MAX,
		           (unsigned long long)len);
	*n = (int)len;
	const ln_tensor **ts = lua_newuserdatauv(L, len * sizeof *ts, 0);
	for (int i = 0; i < *n; i++) {
		lua_rawgeti(L, arg, i + 1);
		ln_tensor *t = luaL_testudata(L, -1, LN_TENSOR_MT);
		if (t == NULL)
			lnL_raisef(L, "%s: expected a lunet.Tensor at position %d, got %s", fname, i + 1,
			           lnL_tname(L, -1));
		if (ln_tensor_is_empty(t))
			lnL_raisef(L, "%s: tensor %d is closed", fname, i + 1);
		ts[i] = t;
		lua_pop(L, 1);
	}
	return ts;
}

/* lunet.cat({a, b, ...}[, d=1]) -> the tensors joined along dimension d
 * (same sizes elsewhere) */
static int l_cat(lua_State *L)
{
	const char *fname = "lunet.cat";
	lua_settop(L, 2);  /* the list's scratch goes above */
	int n;
	const ln_tensor **ts = checklist(L, 1, &n, fname);
	int d = lua_isnoneornil(L, 2) ? 0 : lnL_checkdim(L, 2, ts[0], fname);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_cat(out, n, ts, d, &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

/* lunet.stack({a, b, ...}[, d=1]) -> the tensors (same shape) stacked
 * along a new dimension d (1..ndim+1, or -1 for a new last one) */
static int l_stack(lua_State *L)
{
	const char *fname = "lunet.stack";
	lua_settop(L, 2);
	int n;
	const ln_tensor **ts = checklist(L, 1, &n, fname);
	int d = lua_isnoneornil(L, 2) ? 0 : lnL_checkinsert(L, 2, ts[0]->ndim, fname);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_stack(out, n, ts, d, &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

/* The operand of where at arg: a tensor, a table (converted) or a number
 * (a new 1-element tensor); both pushed when made here. */
static const ln_tensor *where_operand(lua_State *L, int arg, const char *fname)
{
	float v = 0;
	ln_tensor *t = lnL_operand(L, arg, fname, true, &v);
	if (t != NULL)
		return t;
	ln_tensor *s = lnL_newtensor(L);
	int64_t one = 1;
	ln_error err;
	if (ln_tensor_alloc(s, 1, &one, &err) != LN_OK)
		fail(L, fname, &err);
	ln_tensor_fill(s, v);
	return s;
}

/* lunet.where(mask, a, b) -> a where mask is non-zero, else b; a and b
 * tensors or numbers, the three broadcast together */
static int l_where(lua_State *L)
{
	const char *fname = "lunet.where";
	lua_settop(L, 3);
	float unused;
	const ln_tensor *mask = lnL_operand(L, 1, fname, false, &unused);
	const ln_tensor *a = where_operand(L, 2, fname);
	const ln_tensor *b = where_operand(L, 3, fname);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_where(out, mask, a, b, &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

/* ==================================================================== */
/* Registration                                                          */
/* ==================================================================== */

static const luaL_Reg ops_methods[] = {
	{"unsqueeze", t_unsqueeze},
	{"squeeze", t_squeeze},
	{"permute", t_permute},
	{"expand", t_expand},
	{"select", t_select},
	{"index", t_index_select},
	{"sort", t_sort},
	{"topk", t_topk},
	{"clamp", t_clamp},
	{"multinomial", t_multinomial},
	{NULL, NULL},
};

static const luaL_Reg ops_funcs[] = {
	{"cat", l_cat},
	{"stack", l_stack},
	{"where", l_where},
	{NULL, NULL},
};

void lnL_open_tensor_ops(lua_State *L, int methods, int lunet)
{
	lua_pushvalue(L, methods);
	luaL_setfuncs(L, ops_methods, 0);
	lua_pop(L, 1);
	lua_pushvalue(L, lunet);
	luaL_setfuncs(L, ops_funcs, 0);
	lua_pop(L, 1);
}
