/*
 * ltensor.c -- the Lua binding of tensors: lunet.tensor and friends, and
 * the methods and metamethods of lunet.Tensor.
 *
 * Conventions for every function here:
 *   - Indices and dimensions are 1-based in Lua and converted to 0-based
 *     for the core; out-of-range values are errors that name the value and
 *     the size ("Tensor:get: index 3 out of range for dimension 1 of size 2").
 *   - Error messages read "<function>: expected <what>, got <what arrived>",
 *     where <function> is what the script called: "lunet.zeros",
 *     "Tensor:matmul", or "Tensor:__add" for the + operator.
 *   - A result is born as an empty userdata (lnL_newtensor) before any
 *     storage exists, then filled by a core function; on failure we raise
 *     and the userdata's __gc frees whatever was attached.  No C frame that
 *     owns memory is ever skipped by a Lua error.
 *   - New storage is reported to the collector with lnL_gcpressure.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/tensor.h"
#include "ltensor.h"

/* ==================================================================== */
/* Argument helpers                                                      */
/* ==================================================================== */

/* Shape of t as "{2,3}" in buf. */
const char *lnL_tshape(const ln_tensor *t, char *buf)
{
	return ln_tensor_shape_str(t, buf, SHAPE_BUF);
}

/* The open tensor at arg, or "fname: expected a lunet.Tensor, got <type>"
 * / "fname: tensor is closed". */
ln_tensor *lnL_checkt(lua_State *L, int arg, const char *fname)
{
	ln_tensor *t = luaL_testudata(L, arg, LN_TENSOR_MT);
	if (t == NULL && arg == 1 && strncmp(fname, "Tensor:", 7) == 0)  /* t.sum() for t:sum() */
		lnL_raisef(L, "%s: expected a lunet.Tensor, got %s (call methods with a colon: "
		           "t:%s(...), not t.%s(...))", fname, lnL_tname(L, arg), fname + 7, fname + 7);
	if (t == NULL)
		lnL_raisef(L, "%s: expected a lunet.Tensor, got %s", fname, lnL_tname(L, arg));
	if (ln_tensor_is_empty(t))
		lnL_raisef(L, "%s: tensor is closed", fname);
	return t;
}

/* A number argument (NaN and infinities allowed: they are valid values). */
float lnL_checkvalue(lua_State *L, int arg, const char *fname)
{
	if (lua_type(L, arg) != LUA_TNUMBER)
		lnL_raisef(L, "%s: expected a number, got %s", fname, lnL_tname(L, arg));
	return (float)lua_tonumber(L, arg);
}

/* An integer argument (what = "index", "dimension", "start"...). */
lua_Integer lnL_checkint(lua_State *L, int arg, const char *fname, const char *what)
{
	char buf[64];
	if (lua_type(L, arg) != LUA_TNUMBER)
		lnL_raisef(L, "%s: expected an integer %s, got %s", fname, what, lnL_tname(L, arg));
	int isint;
	lua_Integer v = lua_tointegerx(L, arg, &isint);
	if (!isint)
		lnL_raisef(L, "%s: expected an integer %s, got %s", fname, what,
		           lnL_numstr(buf, sizeof buf, L, arg));
	return v;
}

/* ltensor.h: 1..ndim or -ndim..-1, returned 0-based. */
int lnL_checkdim(lua_State *L, int arg, const ln_tensor *t, const char *fname)
{
	return lnL_todim(L, lnL_checkint(L, arg, fname, "dimension"), t, fname);
}

/* ltensor.h: the dimension d of t, returned 0-based. */
int lnL_todim(lua_State *L, lua_Integer d, const ln_tensor *t, const char *fname)
{
	char buf[SHAPE_BUF];
	if (d == 0 || d > t->ndim || d < -t->ndim)
		lnL_raisef(L, "%s: dimension %lld out of range for a tensor of shape %s (expected "
		           "1..%d or -%d..-1)", fname, (long long)d, lnL_tshape(t, buf), t->ndim,
		           t->ndim);
	return d < 0 ? (int)(d + t->ndim) : (int)d - 1;
}

/* ltensor.h: 1..ndim+1 or -(ndim+1)..-1, returned 0..ndim. */
int lnL_checkinsert(lua_State *L, int arg, int ndim, const char *fname)
{
	lua_Integer d = lnL_checkint(L, arg, fname, "dimension");
	if (d == 0 || d > ndim + 1 || d < -(ndim + 1))
		lnL_raisef(L, "%s: position %lld out of range for a new dimension of a %d-D tensor "
		           "(expected 1..%d or -%d..-1)", fname, (long long)d, ndim, ndim + 1,
		           ndim + 1);
	return d < 0 ? (int)(d + ndim + 1) : (int)d - 1;
}

/* ltensor.h: nil or none gives dflt; anything but a boolean raises. */
bool lnL_optbool(lua_State *L, int arg, bool dflt, const char *fname, const char *what)
{
	if (lua_isnoneornil(L, arg))
		return dflt;
	if (lua_type(L, arg) != LUA_TBOOLEAN)
		lnL_raisef(L, "%s: expected %s to be a boolean, got %s", fname, what,
		           lnL_tname(L, arg));
	return lua_toboolean(L, arg);
}

/* The 1-based index at arg for dimension dim (0-based), returned 0-based. */
static int64_t checkindex(lua_State *L, int arg, const ln_tensor *t, int dim, const char *fname)
{
	lua_Integer i = lnL_checkint(L, arg, fname, "index");
	if (i < 1 || i > t->shape[dim])
		lnL_raisef(L, "%s: index %lld out of range for dimension %d of size %lld", fname,
		           (long long)i, dim + 1, (long long)t->shape[dim]);
	return (int64_t)i - 1;
}

/* Raises "fname: err" for a failed core call. */
static int fail(lua_State *L, const char *fname, const ln_error *err)
{
	return lnL_error(L, fname, err);
}

/* Reports the storage of a newly filled tensor to the collector. */
void lnL_tpressure(lua_State *L, const ln_tensor *t)
{
	lnL_gcpressure(L, (size_t)ln_tensor_numel(t) * sizeof(float));
}

/* An operand that may be a tensor, a nested table (converted; pushed) or
 * a number (when allow_number).  Returns the tensor or NULL with *num set. */
ln_tensor *lnL_operand(lua_State *L, int arg, const char *fname, bool allow_number, float *num)
{
	int type = lua_type(L, arg);
	if (type == LUA_TNUMBER && allow_number) {
		*num = (float)lua_tonumber(L, arg);
		return NULL;
	}
	if (type == LUA_TUSERDATA && luaL_testudata(L, arg, LN_TENSOR_MT))
		return lnL_checkt(L, arg, fname);
	if (type == LUA_TTABLE)
		return lnL_totensor(L, arg, fname);
	lnL_raisef(L, "%s: expected a lunet.Tensor%s, got %s", fname,
	           allow_number ? " or a number" : " or a table of numbers", lnL_tname(L, arg));
	return NULL;
}

/* ==================================================================== */
/* Constructors                                                          */
/* ==================================================================== */

/* lunet.tensor(table | tensor): a new tensor from nested tables of numbers
 * (shape from the nesting), or a copy of a tensor. */
static int l_tensor(lua_State *L)
{
	const char *fname = "lunet.tensor";
	if (lua_type(L, 1) == LUA_TTABLE) {
		lnL_totensor(L, 1, fname);
		return 1;
	}
	if (luaL_testudata(L, 1, LN_TENSOR_MT)) {
		ln_tensor *src = lnL_checkt(L, 1, fname);
		ln_tensor *t = lnL_newtensor(L);
		ln_error err;
		if (ln_tensor_clone(t, src, &err) != LN_OK)
			return fail(L, fname, &err);
		lnL_tpressure(L, t);
		return 1;
	}
	return lnL_raisef(L, "%s: expected a table of numbers or a lunet.Tensor, got %s", fname,
	                  lnL_tname(L, 1));
}

/* Pushes a new zeroed tensor of the shape given from arg on. */
static ln_tensor *newshaped(lua_State *L, int arg, const char *fname)
{
	int64_t shape[LN_MAX_DIMS];
	int ndim = lnL_checkshape(L, arg, shape, fname);
	ln_tensor *t = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_alloc(t, ndim, shape, &err) != LN_OK)
		fail(L, fname, &err);
	lnL_tpressure(L, t);
	return t;
}

/* lunet.zeros(d1, d2, ...) or lunet.zeros{d1, d2, ...} */
static int l_zeros(lua_State *L)
{
	newshaped(L, 1, "lunet.zeros");
	return 1;
}

/* lunet.ones(shape) */
static int l_ones(lua_State *L)
{
	ln_tensor_fill(newshaped(L, 1, "lunet.ones"), 1.0f);
	return 1;
}

/* lunet.full({d1,...}, v) or lunet.full(d1, ..., v) */
static int l_full(lua_State *L)
{
	const char *fname = "lunet.full";
	int top = lua_gettop(L);
	if (top < 2)
		return lnL_raisef(L, "%s: expected a shape and a value, got %d argument%s", fname, top,
		                  top == 1 ? "" : "s");
	float v = lnL_checkvalue(L, top, fname);
	lua_settop(L, top - 1);
	ln_tensor_fill(newshaped(L, 1, fname), v);
	return 1;
}

/* lunet.rand(shape): uniform in [0,1) from the seeded generator. */
static int l_rand(lua_State *L)
{
	ln_tensor_rand(newshaped(L, 1, "lunet.rand"), ln_rng_global());
	return 1;
}

/* lunet.randn(shape): N(0,1) from the seeded generator. */
static int l_randn(lua_State *L)
{
	ln_tensor_randn(newshaped(L, 1, "lunet.randn"), ln_rng_global(), 0.0f, 1.0f);
	return 1;
}

/* lunet.arange(n) -> {1,...,n}; lunet.arange(a, b[, step]) -> the values
 * of Lua's `for i = a, b, step` (b included when reached). */
static int l_arange(lua_State *L)
{
	const char *fname = "lunet.arange";
	char b1[64], b2[64], b3[64];
	int top = lua_gettop(L);
	double a = 1, b, step = 1;
	if (top == 0)
		return lnL_raisef(L, "%s: expected a number of elements, got no value", fname);
	if (top > 3)
		return lnL_raisef(L, "%s: expected at most 3 arguments (start, stop, step), got %d",
		                  fname, top);
	for (int i = 1; i <= top; i++)
		if (lua_type(L, i) != LUA_TNUMBER)
			return lnL_raisef(L, "%s: expected numbers, got %s for argument %d", fname,
			                  lnL_tname(L, i), i);
	if (top == 1) {
		lua_Integer n = lnL_checkint(L, 1, fname, "number of elements");
		if (n < 1)
			return lnL_raisef(L, "%s: expected a number of elements >= 1, got %lld", fname,
			                  (long long)n);
		b = (double)n;
	} else {
		a = lua_tonumber(L, 1);
		b = lua_tonumber(L, 2);
		if (top == 3)
			step = lua_tonumber(L, 3);
	}
	if (!isfinite(a) || !isfinite(b) || !isfinite(step))
		return lnL_raisef(L, "%s: expected finite numbers, got %s, %s, %s", fname,
		                  lnL_numstr(b1, sizeof b1, L, 1),
		                  top >= 2 ? lnL_numstr(b2, sizeof b2, L, 2) : "-",
		                  top >= 3 ? lnL_numstr(b3, sizeof b3, L, 3) : "1");
	if (step == 0)
		return lnL_raisef(L, "%s: expected a non-zero step, got 0", fname);
	double span = floor((b - a) / step);
	if (span < 0)
		return lnL_raisef(L, "%s: expected a non-empty range, got %.14g to %.14g step %.14g",
		                  fname, a, b, step);
	if (span >= 4.0e12)
		return lnL_raisef(L, "%s: expected a range of fewer than 4e12 elements, got %.14g",
		                  fname, span + 1);
	int64_t n = (int64_t)span + 1;
	ln_tensor *t = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_alloc(t, 1, &n, &err) != LN_OK)
		return fail(L, fname, &err);
	float *p = ln_tensor_data(t);
	for (int64_t i = 0; i < n; i++)
		p[i] = (float)(a + (double)i * step);
	lnL_tpressure(L, t);
	return 1;
}

/* lunet.is_tensor(v) -> true for any lunet.Tensor (even a closed one). */
static int l_is_tensor(lua_State *L)
{
	lua_pushboolean(L, luaL_testudata(L, 1, LN_TENSOR_MT) != NULL);
	return 1;
}

/* ==================================================================== */
/* Queries                                                               */
/* ==================================================================== */

/* Pushes {d1, d2, ...}. */
static void pushshape(lua_State *L, const ln_tensor *t)
{
	lua_createtable(L, t->ndim, 0);
	for (int i = 0; i < t->ndim; i++) {
		lua_pushinteger(L, (lua_Integer)t->shape[i]);
		lua_rawseti(L, -2, i + 1);
	}
}

/* t:shape() -> {d1, d2, ...} (a new table) */
static int t_shape(lua_State *L)
{
	pushshape(L, lnL_checkt(L, 1, "Tensor:shape"));
	return 1;
}

/* t:dim() -> number of dimensions */
static int t_dim(lua_State *L)
{
	lua_pushinteger(L, lnL_checkt(L, 1, "Tensor:dim")->ndim);
	return 1;
}

/* t:numel() -> number of elements */
static int t_numel(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)ln_tensor_numel(lnL_checkt(L, 1, "Tensor:numel")));
	return 1;
}

/* t:size(dim) -> size of dimension dim; t:size() -> the shape table */
static int t_size(lua_State *L)
{
	const char *fname = "Tensor:size";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	if (lua_isnoneornil(L, 2)) {
		pushshape(L, t);
		return 1;
	}
	lua_pushinteger(L, (lua_Integer)t->shape[lnL_checkdim(L, 2, t, fname)]);
	return 1;
}

/* t:stride() -> {s1, s2, ...} in elements; t:stride(dim) -> one stride */
static int t_stride(lua_State *L)
{
	const char *fname = "Tensor:stride";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	if (lua_isnoneornil(L, 2)) {
		lua_createtable(L, t->ndim, 0);
		for (int i = 0; i < t->ndim; i++) {
			lua_pushinteger(L, (lua_Integer)t->stride[i]);
			lua_rawseti(L, -2, i + 1);
		}
		return 1;
	}
	lua_pushinteger(L, (lua_Integer)t->stride[lnL_checkdim(L, 2, t, fname)]);
	return 1;
}

/* #t -> size of dimension 1 */
static int t_len(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)lnL_checkt(L, 1, "Tensor:__len")->shape[0]);
	return 1;
}

/* t:is_contiguous() */
static int t_is_contiguous(lua_State *L)
{
	lua_pushboolean(L, ln_tensor_is_contiguous(lnL_checkt(L, 1, "Tensor:is_contiguous")));
	return 1;
}

/* ==================================================================== */
/* Element access                                                        */
/* ==================================================================== */

/* Offset of the element whose ndim 1-based indices are at arg.. */
static size_t element_offset(lua_State *L, int arg, const ln_tensor *t, const char *fname)
{
	size_t off = 0;
	for (int d = 0; d < t->ndim; d++)
		off += (size_t)(checkindex(L, arg + d, t, d, fname) * t->stride[d]);
	return off;
}

/* t:get(i, j, ...) -> the number at those 1-based indices (one per dim) */
static int t_get(lua_State *L)
{
	const char *fname = "Tensor:get";
	char buf[SHAPE_BUF];
	ln_tensor *t = lnL_checkt(L, 1, fname);
	int n = lua_gettop(L) - 1;
	if (n != t->ndim)
		return lnL_raisef(L, "%s: expected %d indices for a tensor of shape %s, got %d", fname,
		                  t->ndim, lnL_tshape(t, buf), n);
	lua_pushnumber(L, ln_tensor_data(t)[element_offset(L, 2, t, fname)]);
	return 1;
}

/* t:set(i, j, ..., v) -> t, with t[i][j]... = v */
static int t_set(lua_State *L)
{
	const char *fname = "Tensor:set";
	char buf[SHAPE_BUF];
	ln_tensor *t = lnL_checkt(L, 1, fname);
	int n = lua_gettop(L) - 2;
	if (n != t->ndim)
		return lnL_raisef(L, "%s: expected %d indices and a value for a tensor of shape %s, "
		                  "got %d argument%s", fname, t->ndim, lnL_tshape(t, buf), n + 1,
		                  n + 1 == 1 ? "" : "s");
	size_t off = element_offset(L, 2, t, fname);
	ln_tensor_data(t)[off] = lnL_checkvalue(L, n + 2, fname);
	lua_settop(L, 1);
	return 1;
}

/* t:item() -> the only element of a one-element tensor */
static int t_item(lua_State *L)
{
	const char *fname = "Tensor:item";
	char buf[SHAPE_BUF];
	ln_tensor *t = lnL_checkt(L, 1, fname);
	if (ln_tensor_numel(t) != 1)
		return lnL_raisef(L, "%s: expected a tensor of one element, got shape %s", fname,
		                  lnL_tshape(t, buf));
	lua_pushnumber(L, *ln_tensor_data(t));
	return 1;
}

/* Pushes t[i] (0-based i along dimension 1): a number for a 1-D tensor,
 * else a view of row i that shares t's storage. */
static void pushrow(lua_State *L, const ln_tensor *t, int64_t i, const char *fname)
{
	if (t->ndim == 1) {
		lua_pushnumber(L, ln_tensor_data(t)[i * t->stride[0]]);
		return;
	}
	ln_tensor *row = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_select(row, t, i, &err) != LN_OK)
		fail(L, fname, &err);
}

/* __index: integer keys read elements/rows; string keys find methods (in
 * the table that is this closure's upvalue). */
static int t_index(lua_State *L)
{
	int kt = lua_type(L, 2);
	if (kt == LUA_TSTRING) {
		lua_pushvalue(L, 2);
		lua_rawget(L, lua_upvalueindex(1));
		return 1;
	}
	if (kt == LUA_TNUMBER) {
		const char *fname = "Tensor:__index";
		ln_tensor *t = lnL_checkt(L, 1, fname);
		pushrow(L, t, checkindex(L, 2, t, 0, fname), fname);
		return 1;
	}
	lua_pushnil(L);
	return 1;
}

/* Copies src into dst, src broadcast to dst's shape, or raises. */
static void copy_into(lua_State *L, ln_tensor *dst, const ln_tensor *src, const char *fname)
{
	ln_error err;
	if (ln_tensor_copy(dst, src, &err) != LN_OK)
		fail(L, fname, &err);
}

/* __newindex: t[i] = v sets element i of a 1-D tensor; for an N-D tensor
 * it fills row i with the number v, or copies a tensor/table of the row's
 * shape (or one that broadcasts to it) into it. */
static int t_newindex(lua_State *L)
{
	const char *fname = "Tensor:__newindex";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	if (lua_type(L, 2) != LUA_TNUMBER)
		return lnL_raisef(L, "%s: expected an integer index, got %s", fname, lnL_tname(L, 2));
	int64_t i = checkindex(L, 2, t, 0, fname);
	if (t->ndim == 1) {
		ln_tensor_data(t)[i * t->stride[0]] = lnL_checkvalue(L, 3, fname);
		return 0;
	}
	float v = 0;
	ln_tensor *src = NULL;
	if (lua_type(L, 3) == LUA_TNUMBER)
		v = (float)lua_tonumber(L, 3);
	else if (lua_type(L, 3) == LUA_TTABLE || luaL_testudata(L, 3, LN_TENSOR_MT))
		src = lnL_operand(L, 3, fname, false, &v);
	else
		return lnL_raisef(L, "%s: expected a number or a lunet.Tensor, got %s", fname,
		                  lnL_tname(L, 3));
	ln_tensor *row = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_select(row, t, i, &err) != LN_OK)
		return fail(L, fname, &err);
	if (src)
		copy_into(L, row, src, fname);
	else
		ln_tensor_fill(row, v);
	ln_tensor_release(row);
	return 0;
}

/* Iterator of __pairs: (t, i) -> i+1, t[i+1] while in range. */
static int pairs_next(lua_State *L)
{
	const char *fname = "Tensor:__pairs";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	lua_Integer i = luaL_optinteger(L, 2, 0) + 1;
	if (i < 1 || i > t->shape[0])
		return 0;
	lua_pushinteger(L, i);
	pushrow(L, t, (int64_t)i - 1, fname);
	return 2;
}

/* pairs(t): i, t[i] for i = 1..#t */
static int t_pairs(lua_State *L)
{
	lnL_checkt(L, 1, "Tensor:__pairs");
	lua_pushcfunction(L, pairs_next);
	lua_pushvalue(L, 1);
	lua_pushinteger(L, 0);
	return 3;
}

/* Pushes the nested table of t's elements from dimension d, starting at
 * the element offset off. */
static void totable_rec(lua_State *L, const ln_tensor *t, int d, size_t off)
{
	int64_t n = t->shape[d];
	lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
	const float *p = ln_tensor_data(t);
	for (int64_t i = 0; i < n; i++) {
		size_t o = off + (size_t)(i * t->stride[d]);
		if (d == t->ndim - 1)
			lua_pushnumber(L, p[o]);
		else
			totable_rec(L, t, d + 1, o);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
}

/* t:totable() -> nested Lua tables of numbers */
static int t_totable(lua_State *L)
{
	ln_tensor *t = lnL_checkt(L, 1, "Tensor:totable");
	luaL_checkstack(L, t->ndim + 4, "Tensor:totable");
	totable_rec(L, t, 0, 0);
	return 1;
}

/* ==================================================================== */
/* Copies, fills, views                                                  */
/* ==================================================================== */

/* t:clone() -> a new contiguous copy */
static int t_clone(lua_State *L)
{
	const char *fname = "Tensor:clone";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_clone(out, t, &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

/* t:contiguous() -> t when contiguous, else a contiguous copy */
static int t_contiguous(lua_State *L)
{
	ln_tensor *t = lnL_checkt(L, 1, "Tensor:contiguous");
	int pushed;
	lnL_contiguous(L, t, "Tensor:contiguous", &pushed);
	if (!pushed)
		lua_settop(L, 1);
	return 1;
}

/* t:copy(src) -> t, with src (a tensor or nested table) copied in, broadcast
 * to t's shape: a {3} fills every row of a {2,3}, but a {6} is refused
 * for a {2,3} (reshape it first). */
static int t_copy(lua_State *L)
{
	const char *fname = "Tensor:copy";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	float unused;
	ln_tensor *src = lnL_operand(L, 2, fname, false, &unused);
	copy_into(L, t, src, fname);
	lua_settop(L, 1);
	return 1;
}

/* t:fill(v) -> t */
static int t_fill(lua_State *L)
{
	const char *fname = "Tensor:fill";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	ln_tensor_fill(t, lnL_checkvalue(L, 2, fname));
	lua_settop(L, 1);
	return 1;
}

/* t:zero() -> t */
static int t_zero(lua_State *L)
{
	ln_tensor_fill(lnL_checkt(L, 1, "Tensor:zero"), 0.0f);
	lua_settop(L, 1);
	return 1;
}

/* Reads the new shape for reshape from arg on (integers or a table; one
 * entry may be -1) and resolves -1 against numel.  Raises on bad sizes,
 * on more than one -1, and when the element counts cannot match. */
static int reshape_shape(lua_State *L, int arg, const ln_tensor *t, int64_t shape[LN_MAX_DIMS],
                         const char *fname)
{
	char b1[SHAPE_BUF], b2[SHAPE_BUF], vb[64];
	int top = lua_gettop(L);
	int n, from_table = lua_type(L, arg) == LUA_TTABLE;
	if (arg > top)
		lnL_raisef(L, "%s: expected a shape (sizes or a table of sizes), got no value", fname);
	if (from_table) {
		if (top > arg)
			lnL_raisef(L, "%s: expected nothing after the shape table, got %s", fname,
			           lnL_tname(L, arg + 1));
		lua_Unsigned len = lua_rawlen(L, arg);
		if (len == 0)
			lnL_raisef(L, "%s: expected a non-empty table of sizes, got an empty table", fname);
		if (len > LN_MAX_DIMS)
			lnL_raisef(L, "%s: expected at most %d dimensions, got %lld", fname, LN_MAX_DIMS,
			           (long long)len);
		n = (int)len;
	} else {
		n = top - arg + 1;
		if (n > LN_MAX_DIMS)
			lnL_raisef(L, "%s: expected at most %d dimensions, got %d", fname, LN_MAX_DIMS, n);
	}
	int infer = -1;
	int64_t known = 1;
	for (int i = 0; i < n; i++) {
		int idx = arg + i;
		if (from_table) {
			lua_rawgeti(L, arg, i + 1);
			idx = lua_gettop(L);
		}
		int isint = 0;
		lua_Integer v = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isint) : 0;
		if (!isint || (v < 1 && v != -1))
			lnL_raisef(L, "%s: expected sizes that are integers >= 1 (or one -1), got %s "
			           "for dimension %d", fname,
			           lua_type(L, idx) == LUA_TNUMBER ? lnL_numstr(vb, sizeof vb, L, idx)
			                                           : lnL_tname(L, idx), i + 1);
		if (v == -1) {
			if (infer >= 0)
				lnL_raisef(L, "%s: expected at most one -1 in the shape, got -1 for "
				           "dimensions %d and %d", fname, infer + 1, i + 1);
			infer = i;
		} else if (known > INT64_MAX / v) {
			lnL_raisef(L, "%s: expected a shape with %lld elements, got a larger one", fname,
			           (long long)ln_tensor_numel(t));
		} else {
			known *= v;
		}
		shape[i] = v;
		if (from_table)
			lua_pop(L, 1);
	}
	int64_t numel = ln_tensor_numel(t);
	if (infer >= 0) {
		if (numel % known != 0)
			lnL_raisef(L, "%s: cannot infer the -1 size: %lld elements of shape %s do not "
			           "divide by %lld", fname, (long long)numel, lnL_tshape(t, b1), (long long)known);
		shape[infer] = numel / known;
	} else if (known != numel) {
		lnL_raisef(L, "%s: expected a shape with %lld elements (as %s), got %s", fname,
		           (long long)numel, lnL_tshape(t, b1), ln_shape_str(b2, sizeof b2, n, shape));
	}
	return n;
}

/* t:reshape(d1, d2, ...) or t:reshape{...}: a view when t is contiguous,
 * else a contiguous copy; one size may be -1.  Also t:view(...). */
static int t_reshape(lua_State *L)
{
	const char *fname = "Tensor:reshape";
	int64_t shape[LN_MAX_DIMS];
	ln_tensor *t = lnL_checkt(L, 1, fname);
	int n = reshape_shape(L, 2, t, shape, fname);
	bool copies = !ln_tensor_is_contiguous(t);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_reshape(out, t, n, shape, &err) != LN_OK)
		return fail(L, fname, &err);
	if (copies)
		lnL_tpressure(L, out);
	return 1;
}

/* t:narrow(dim, start, len): a view of t restricted to indices
 * start..start+len-1 (1-based) along dim. */
static int t_narrow(lua_State *L)
{
	const char *fname = "Tensor:narrow";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	int d = lnL_checkdim(L, 2, t, fname);
	lua_Integer start = lnL_checkint(L, 3, fname, "start");
	lua_Integer len = lnL_checkint(L, 4, fname, "length");
	int64_t size = t->shape[d];
	if (start < 1 || start > size)
		return lnL_raisef(L, "%s: start %lld out of range for dimension %d of size %lld", fname,
		                  (long long)start, d + 1, (long long)size);
	if (len < 1 || len > size - start + 1)
		return lnL_raisef(L, "%s: expected a length between 1 and %lld (start %lld in "
		                  "dimension %d of size %lld), got %lld", fname,
		                  (long long)(size - start + 1), (long long)start, d + 1,
		                  (long long)size, (long long)len);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_narrow(out, t, d, (int64_t)start - 1, (int64_t)len, &err) != LN_OK)
		return fail(L, fname, &err);
	return 1;
}

/* t:transpose(d1, d2) -> a view with dimensions d1 and d2 swapped (any
 * ndim); t:transpose() -> a contiguous transposed copy of a 2-D tensor
 * (as before views existed; also t:t()). */
static int t_transpose(lua_State *L)
{
	const char *fname = "Tensor:transpose";
	char buf[SHAPE_BUF];
	ln_tensor *t = lnL_checkt(L, 1, fname);
	int nargs = lua_gettop(L) - 1;
	if (nargs > 0 && !(nargs == 1 && lua_isnil(L, 2))) {
		if (nargs != 2)
			return lnL_raisef(L, "%s: expected two dimensions (or none, for the 2-D copy), got "
			                  "%d argument%s", fname, nargs, nargs == 1 ? "" : "s");
		int d1 = lnL_checkdim(L, 2, t, fname), d2 = lnL_checkdim(L, 3, t, fname);
		ln_tensor *out = lnL_newtensor(L);
		ln_error err;
		if (ln_tensor_transpose_dims(out, t, d1, d2, &err) != LN_OK)
			return fail(L, fname, &err);
		return 1;
	}
	if (t->ndim != 2)
		return lnL_raisef(L, "%s: expected a 2-D tensor, got shape %s", fname, lnL_tshape(t, buf));
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_transpose(out, t, &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

/* ==================================================================== */
/* Arithmetic                                                            */
/* ==================================================================== */

/* Pushes a op b where each side is a tensor, a nested table or a number
 * (at least one a tensor): elementwise with NumPy broadcasting, or with a
 * scalar on either side. */
static int arith(lua_State *L, ln_binop op, const char *fname)
{
	float sa = 0, sb = 0;
	ln_tensor *a = lnL_operand(L, 1, fname, true, &sa);
	ln_tensor *b = lnL_operand(L, 2, fname, true, &sb);
	ln_error err;
	ln_status st;
	if (a == NULL && b == NULL)
		return lnL_raisef(L, "%s: expected at least one lunet.Tensor, got two numbers", fname);
	ln_tensor *out = lnL_newtensor(L);
	if (a && b)
		st = ln_tensor_binary(out, op, a, b, &err);
	else if (a)
		st = ln_tensor_binary_scalar(out, op, a, sb, false, &err);
	else
		st = ln_tensor_binary_scalar(out, op, b, sa, true, &err);
	if (st != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

static int t_add(lua_State *L) { return arith(L, LN_ADD, "Tensor:__add"); }
static int t_sub(lua_State *L) { return arith(L, LN_SUB, "Tensor:__sub"); }
static int t_mul(lua_State *L) { return arith(L, LN_MUL, "Tensor:__mul"); }
static int t_div(lua_State *L) { return arith(L, LN_DIV, "Tensor:__div"); }
static int m_add(lua_State *L) { return arith(L, LN_ADD, "Tensor:add"); }
static int m_sub(lua_State *L) { return arith(L, LN_SUB, "Tensor:sub"); }
static int m_mul(lua_State *L) { return arith(L, LN_MUL, "Tensor:mul"); }
static int m_div(lua_State *L) { return arith(L, LN_DIV, "Tensor:div"); }
static int t_pow(lua_State *L) { return arith(L, LN_POW, "Tensor:__pow"); }
static int m_pow(lua_State *L) { return arith(L, LN_POW, "Tensor:pow"); }
/* t:gt(u) ...: 1 where the comparison holds, else 0 (u a tensor, table or
 * number, broadcast) */
static int m_gt(lua_State *L) { return arith(L, LN_GT, "Tensor:gt"); }
static int m_lt(lua_State *L) { return arith(L, LN_LT, "Tensor:lt"); }
static int m_ge(lua_State *L) { return arith(L, LN_GE, "Tensor:ge"); }
static int m_le(lua_State *L) { return arith(L, LN_LE, "Tensor:le"); }
static int m_eq(lua_State *L) { return arith(L, LN_EQ, "Tensor:eq"); }
static int m_ne(lua_State *L) { return arith(L, LN_NE, "Tensor:ne"); }

/* t:add_(v) etc.: t = t op v in place (v a number, or a tensor/table that
 * broadcasts to t's shape); returns t.  The core takes care of a v that
 * shares t's memory. */
static int arith_inplace(lua_State *L, ln_binop op, const char *fname)
{
	ln_tensor *t = lnL_checkt(L, 1, fname);
	float s = 0;
	ln_tensor *b = lnL_operand(L, 2, fname, true, &s);
	ln_error err;
	ln_status st = b ? ln_tensor_binary_(t, op, b, &err) : ln_tensor_binary_scalar_(t, op, s, &err);
	if (st != LN_OK)
		return fail(L, fname, &err);
	lua_settop(L, 1);
	return 1;
}

static int t_add_(lua_State *L) { return arith_inplace(L, LN_ADD, "Tensor:add_"); }
static int t_sub_(lua_State *L) { return arith_inplace(L, LN_SUB, "Tensor:sub_"); }
static int t_mul_(lua_State *L) { return arith_inplace(L, LN_MUL, "Tensor:mul_"); }
static int t_div_(lua_State *L) { return arith_inplace(L, LN_DIV, "Tensor:div_"); }

/* -t */
static int t_unm(lua_State *L)
{
	const char *fname = "Tensor:__unm";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_unary(out, LN_NEG, t, &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

/* Pushes op(t), a new tensor. */
static int unary(lua_State *L, ln_unop op, const char *fname)
{
	ln_tensor *t = lnL_checkt(L, 1, fname);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_unary(out, op, t, &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

static int t_exp(lua_State *L) { return unary(L, LN_EXP, "Tensor:exp"); }
static int t_log(lua_State *L) { return unary(L, LN_LOG, "Tensor:log"); }
static int t_abs(lua_State *L) { return unary(L, LN_ABS, "Tensor:abs"); }
static int t_sqrt(lua_State *L) { return unary(L, LN_SQRT, "Tensor:sqrt"); }
static int t_tanh(lua_State *L) { return unary(L, LN_TANH, "Tensor:tanh"); }
static int t_sigmoid(lua_State *L) { return unary(L, LN_SIGMOID, "Tensor:sigmoid"); }
static int t_neg(lua_State *L) { return unary(L, LN_NEG, "Tensor:neg"); }

/* a:matmul(b) -> a (m,k) x b (k,n); batched: {B,M,K} x {B,K,N} or
 * {B,M,K} x {K,N} -> {B,M,N} (leading dimensions broadcast) */
static int t_matmul(lua_State *L)
{
	const char *fname = "Tensor:matmul";
	char b1[SHAPE_BUF], b2[SHAPE_BUF];
	ln_tensor *a = lnL_checkt(L, 1, fname);
	float unused;
	ln_tensor *b = lnL_operand(L, 2, fname, false, &unused);
	if (a->ndim < 2 || b->ndim < 2 || a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
		return lnL_raisef(L, "%s: expected shapes {...,m,k} and {...,k,n}, got %s and %s",
		                  fname, lnL_tshape(a, b1), lnL_tshape(b, b2));
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_matmul(out, a, b, &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

/* ==================================================================== */
/* Reductions                                                            */
/* ==================================================================== */

/* Pushes the reduction of t along the 1-based dimension at arg 2, that
 * dimension kept with size 1. */
static int reduce_dim(lua_State *L, ln_tensor *t, ln_reduce op, const char *fname)
{
	int d = lnL_checkdim(L, 2, t, fname);
	ln_tensor *out = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_reduce_dim(out, op, t, d, &err) != LN_OK)
		return fail(L, fname, &err);
	lnL_tpressure(L, out);
	return 1;
}

/* t:sum() -> number; t:sum(dim) -> tensor */
static int t_sum(lua_State *L)
{
	ln_tensor *t = lnL_checkt(L, 1, "Tensor:sum");
	if (!lua_isnoneornil(L, 2))
		return reduce_dim(L, t, LN_RSUM, "Tensor:sum");
	lua_pushnumber(L, ln_tensor_sum(t));
	return 1;
}

/* t:mean() -> number; t:mean(dim) -> tensor */
static int t_mean(lua_State *L)
{
	ln_tensor *t = lnL_checkt(L, 1, "Tensor:mean");
	if (!lua_isnoneornil(L, 2))
		return reduce_dim(L, t, LN_RMEAN, "Tensor:mean");
	lua_pushnumber(L, ln_tensor_mean(t));
	return 1;
}

/* t:max() -> number (NaN if any is NaN); t:max(dim) -> values, indices:
 * two tensors with dim kept as size 1, the indices 1-based (the first
 * maximum; a NaN is the maximum).  Likewise t:min. */
static int extreme(lua_State *L, bool want_max, const char *fname)
{
	ln_tensor *t = lnL_checkt(L, 1, fname);
	if (lua_isnoneornil(L, 2)) {
		lua_pushnumber(L, want_max ? ln_tensor_max(t) : ln_tensor_min(t));
		return 1;
	}
	reduce_dim(L, t, want_max ? LN_RMAX : LN_RMIN, fname);
	reduce_dim(L, t, want_max ? LN_RARGMAX : LN_RARGMIN, fname);
	return 2;
}

static int t_max(lua_State *L) { return extreme(L, true, "Tensor:max"); }
static int t_min(lua_State *L) { return extreme(L, false, "Tensor:min"); }

/* t:argmax(dim) -> tensor of 1-based indices (dim kept with size 1);
 * t:argmax() -> the 1-based row-major position of the first maximum. */
static int t_argmax(lua_State *L)
{
	const char *fname = "Tensor:argmax";
	ln_tensor *t = lnL_checkt(L, 1, fname);
	if (!lua_isnoneornil(L, 2))
		return reduce_dim(L, t, LN_RARGMAX, fname);
	int pushed;
	const ln_tensor *c = lnL_contiguous(L, t, fname, &pushed);
	const float *p = ln_tensor_data(c);
	int64_t n = ln_tensor_numel(c), best = 0;
	for (int64_t i = 1; i < n; i++)
		if (p[i] > p[best] || (isnan(p[i]) && !isnan(p[best])))
			best = i;
	lua_pushinteger(L, (lua_Integer)best + 1);
	return 1;
}

/* t:allclose(u[, rtol=1e-5[, atol=1e-8]]) -> |t-u| <= atol + rtol*|u|
 * everywhere; false when the shapes differ or any value is NaN. */
static int t_allclose(lua_State *L)
{
	const char *fname = "Tensor:allclose";
	char buf[64];
	ln_tensor *a = lnL_checkt(L, 1, fname);
	double tol[2] = {1e-5, 1e-8};
	const char *names[2] = {"rtol", "atol"};
	for (int i = 0; i < 2; i++) {
		int arg = 3 + i;
		if (lua_isnoneornil(L, arg))
			continue;
		if (lua_type(L, arg) != LUA_TNUMBER)
			return lnL_raisef(L, "%s: expected %s to be a number >= 0, got %s", fname,
			                  names[i], lnL_tname(L, arg));
		tol[i] = lua_tonumber(L, arg);
		if (!(tol[i] >= 0))
			return lnL_raisef(L, "%s: expected %s to be a number >= 0, got %s", fname,
			                  names[i], lnL_numstr(buf, sizeof buf, L, arg));
	}
	float unused;
	ln_tensor *b = lnL_operand(L, 2, fname, false, &unused);  /* may push */
	lua_pushboolean(L, ln_tensor_allclose(a, b, tol[0], tol[1]));
	return 1;
}

/* ==================================================================== */
/* Printing                                                              */
/* ==================================================================== */

/* Like Torch: tensors of more than THRESHOLD elements print only the first
 * and last EDGE entries along every dimension longer than 2*EDGE. */
#define PRINT_THRESHOLD 1000
#define PRINT_EDGE 3

enum { FMT_INT, FMT_FIXED, FMT_SCI };

typedef struct printer {
	const ln_tensor *t;
	const float *data;
	bool summarize;
	int mode;       /* FMT_* for all values */
	int width;      /* widest formatted value */
	/* statistics from the first pass */
	bool all_int;
	double maxabs, minabs;  /* over finite values; minabs over non-zeros */
	luaL_Buffer *b;
} printer;

/* The next index to show after i along dimension d (or shape[d]); skips
 * the middle of long dimensions when summarizing. */
static int64_t next_shown(const printer *p, int d, int64_t i)
{
	int64_t n = p->t->shape[d];
	if (p->summarize && n > 2 * PRINT_EDGE && i == PRINT_EDGE - 1)
		return n - PRINT_EDGE;
	return i + 1;
}

/* True when the gap "..." follows index i along dimension d. */
static bool gap_after(const printer *p, int d, int64_t i)
{
	return p->summarize && p->t->shape[d] > 2 * PRINT_EDGE && i == PRINT_EDGE - 1;
}

/* Formats v in the printer's mode into buf; returns the length. */
static int fmtval(char *buf, size_t size, float v, int mode)
{
	if (isnan(v))
		return snprintf(buf, size, "nan");
	if (isinf(v))
		return snprintf(buf, size, v > 0 ? "inf" : "-inf");
	double x = v == 0 ? 0.0 : (double)v;  /* no "-0" */
	switch (mode) {
	case FMT_INT: return snprintf(buf, size, "%.0f", x);
	case FMT_FIXED: return snprintf(buf, size, "%.4f", x);
	default: return snprintf(buf, size, "%.4e", x);
	}
}

/* Calls fn on every shown element at or below dimension d. */
static void visit(printer *p, int d, size_t off, void (*fn)(printer *, float))
{
	for (int64_t i = 0; i < p->t->shape[d]; i = next_shown(p, d, i)) {
		size_t o = off + (size_t)(i * p->t->stride[d]);
		if (d == p->t->ndim - 1)
			fn(p, p->data[o]);
		else
			visit(p, d + 1, o, fn);
	}
}

static void stat_value(printer *p, float v)
{
	if (!isfinite(v))
		return;
	double a = fabs((double)v);
	if (a > p->maxabs)
		p->maxabs = a;
	if (a > 0 && a < p->minabs)
		p->minabs = a;
	if ((double)v != floor((double)v))
		p->all_int = false;
}

static void width_value(printer *p, float v)
{
	char buf[64];
	int w = fmtval(buf, sizeof buf, v, p->mode);
	if (w > p->width)
		p->width = w;
}

/* Adds one row (the last dimension) starting at element offset off. */
static void print_row(printer *p, size_t off)
{
	const ln_tensor *t = p->t;
	int d = t->ndim - 1;
	char buf[64];
	for (int64_t i = 0; i < t->shape[d]; i = next_shown(p, d, i)) {
		int w = fmtval(buf, sizeof buf, p->data[off + (size_t)(i * t->stride[d])], p->mode);
		if (i > 0)
			luaL_addstring(p->b, "  ");
		for (int k = w; k < p->width; k++)
			luaL_addchar(p->b, ' ');
		luaL_addlstring(p->b, buf, (size_t)w);
		if (gap_after(p, d, i))
			luaL_addstring(p->b, "  ...");
	}
	luaL_addchar(p->b, '\n');
}

/* Adds the matrix made of the last two dimensions at offset off. */
static void print_matrix(printer *p, size_t off)
{
	const ln_tensor *t = p->t;
	int d = t->ndim - 2;
	for (int64_t i = 0; i < t->shape[d]; i = next_shown(p, d, i)) {
		print_row(p, off + (size_t)(i * t->stride[d]));
		if (gap_after(p, d, i))
			luaL_addstring(p->b, "...\n");
	}
}

/* Adds the 2-D slices of dimensions d.. with headers "(i,j,.,.) =". */
static void print_slices(printer *p, int d, size_t off, int64_t *idx)
{
	const ln_tensor *t = p->t;
	if (d == t->ndim - 2) {
		char buf[32];
		luaL_addchar(p->b, '(');
		for (int k = 0; k < d; k++) {
			snprintf(buf, sizeof buf, "%lld,", (long long)idx[k] + 1);
			luaL_addstring(p->b, buf);
		}
		luaL_addstring(p->b, ".,.) =\n");
		print_matrix(p, off);
		luaL_addchar(p->b, '\n');
		return;
	}
	for (int64_t i = 0; i < t->shape[d]; i = next_shown(p, d, i)) {
		idx[d] = i;
		print_slices(p, d + 1, off + (size_t)(i * t->stride[d]), idx);
		if (gap_after(p, d, i))
			luaL_addstring(p->b, "...\n\n");
	}
}

/* tostring(t): the values (abridged when large), then
 * "[lunet.Tensor of shape {2,3}]".  A closed tensor prints as such. */
static int t_tostring(lua_State *L)
{
	ln_tensor *t = luaL_checkudata(L, 1, LN_TENSOR_MT);
	if (ln_tensor_is_empty(t)) {
		lua_pushliteral(L, "[lunet.Tensor (closed)]");
		return 1;
	}
	luaL_Buffer b;
	char shape[SHAPE_BUF];
	printer p = {
		.t = t, .data = ln_tensor_data(t), .b = &b,
		.summarize = ln_tensor_numel(t) > PRINT_THRESHOLD,
		.all_int = true, .maxabs = 0, .minabs = INFINITY,
	};
	visit(&p, 0, 0, stat_value);
	if (p.all_int && p.maxabs < 1e9)
		p.mode = FMT_INT;
	else if (p.maxabs < 1e5 && (p.minabs >= 1e-4 || isinf(p.minabs)))
		p.mode = FMT_FIXED;
	else
		p.mode = FMT_SCI;
	visit(&p, 0, 0, width_value);

	luaL_buffinit(L, &b);
	if (t->ndim == 1) {
		print_row(&p, 0);
	} else if (t->ndim == 2) {
		print_matrix(&p, 0);
	} else {
		int64_t idx[LN_MAX_DIMS] = {0};
		print_slices(&p, 0, 0, idx);
	}
	luaL_addstring(&b, "[lunet.Tensor of shape ");
	luaL_addstring(&b, lnL_tshape(t, shape));
	luaL_addchar(&b, ']');
	luaL_pushresult(&b);
	return 1;
}

/* ==================================================================== */
/* Lifetime                                                              */
/* ==================================================================== */

/* __gc and __close: drops the storage reference; idempotent.  Afterwards
 * the tensor is closed and every use raises "...: tensor is closed". */
static int t_gc(lua_State *L)
{
	ln_tensor *t = luaL_checkudata(L, 1, LN_TENSOR_MT);
	ln_tensor_release(t);
	return 0;
}

/* ==================================================================== */
/* Registration                                                          */
/* ==================================================================== */

static const luaL_Reg tensor_methods[] = {
	{"shape", t_shape},
	{"dim", t_dim},
	{"numel", t_numel},
	{"nelement", t_numel},
	{"size", t_size},
	{"stride", t_stride},
	{"is_contiguous", t_is_contiguous},
	{"contiguous", t_contiguous},
	{"get", t_get},
	{"set", t_set},
	{"item", t_item},
	{"totable", t_totable},
	{"clone", t_clone},
	{"copy", t_copy},
	{"fill", t_fill},
	{"zero", t_zero},
	{"reshape", t_reshape},
	{"view", t_reshape},
	{"narrow", t_narrow},
	{"transpose", t_transpose},
	{"t", t_transpose},
	{"add", m_add},
	{"sub", m_sub},
	{"mul", m_mul},
	{"div", m_div},
	{"add_", t_add_},
	{"sub_", t_sub_},
	{"mul_", t_mul_},
	{"div_", t_div_},
	{"pow", m_pow},
	{"gt", m_gt},
	{"lt", m_lt},
	{"ge", m_ge},
	{"le", m_le},
	{"eq", m_eq},
	{"ne", m_ne},
	{"neg", t_neg},
	{"matmul", t_matmul},
	{"sum", t_sum},
	{"mean", t_mean},
	{"max", t_max},
	{"min", t_min},
	{"argmax", t_argmax},
	{"exp", t_exp},
	{"log", t_log},
	{"abs", t_abs},
	{"sqrt", t_sqrt},
	{"tanh", t_tanh},
	{"sigmoid", t_sigmoid},
	{"allclose", t_allclose},
	{"close", t_gc},
	{NULL, NULL},
};

static const luaL_Reg tensor_meta[] = {
	{"__newindex", t_newindex},
	{"__len", t_len},
	{"__tostring", t_tostring},
	{"__gc", t_gc},
	{"__close", t_gc},
	{"__add", t_add},
	{"__sub", t_sub},
	{"__mul", t_mul},
	{"__div", t_div},
	{"__unm", t_unm},
	{"__pow", t_pow},
	{"__pairs", t_pairs},
	{NULL, NULL},
};

static const luaL_Reg tensor_funcs[] = {
	{"tensor", l_tensor},
	{"zeros", l_zeros},
	{"ones", l_ones},
	{"full", l_full},
	{"rand", l_rand},
	{"randn", l_randn},
	{"arange", l_arange},
	{"is_tensor", l_is_tensor},
	{NULL, NULL},
};

/* Creates the lunet.Tensor metatable and registers the constructors into
 * the lunet table on top of the stack; the method table is also exposed
 * as lunet.Tensor so that scripts can add methods. */
void lnL_open_tensor(lua_State *L)
{
	int lunet = lua_gettop(L);
	luaL_newmetatable(L, LN_TENSOR_MT);
	int mt = lua_gettop(L);
	luaL_setfuncs(L, tensor_meta, 0);
	luaL_newlib(L, tensor_methods);
	lnL_open_tensor_ops(L, lua_gettop(L), lunet);
	lua_pushvalue(L, -1);
	lua_setfield(L, lunet, "Tensor");
	lua_pushcclosure(L, t_index, 1);  /* __index with the methods as upvalue */
	lua_setfield(L, mt, "__index");
	lua_settop(L, lunet);
	luaL_setfuncs(L, tensor_funcs, 0);
}
