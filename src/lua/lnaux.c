/*
 * lnaux.c -- helpers shared by the Lua bindings: tensor userdata, argument
 * checks, conversion of nested tables, errors and GC pressure.
 *
 * Every function here that raises does so only after the memory it
 * acquired is anchored in a userdata on the Lua stack, so that no longjmp
 * ever skips a free: the userdata's __gc releases it.
 */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lnaux.h"
#include "nn/module.h"

/* Raises a Lua error with a printf-formatted message (lua_pushfstring,
 * behind luaL_error, knows no %lld or %g).  The message buffer lives on
 * the C stack, so the longjmp skips no heap memory.  Never returns. */
int lnL_raisef(lua_State *L, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return luaL_error(L, "%s", msg);
}

/* ==================================================================== */
/* Tensor userdata                                                       */
/* ==================================================================== */

/* Pushes a new empty tensor userdata (metatable lunet.Tensor, set up by
 * lnL_open_tensor) and returns its ln_tensor.  The caller fills it with a
 * core function; on failure it may raise at once, since __gc releases
 * whatever was attached (nothing, for an empty tensor). */
ln_tensor *lnL_newtensor(lua_State *L)
{
	ln_tensor *t = lua_newuserdatauv(L, sizeof(ln_tensor), 0);
	*t = LN_TENSOR_EMPTY;
	luaL_setmetatable(L, LN_TENSOR_MT);
	return t;
}

/* Pushes a new userdata that shares src's storage (one more reference,
 * dropped by the new userdata's __gc). */
ln_tensor *lnL_pushview(lua_State *L, const ln_tensor *src)
{
	ln_tensor *t = lnL_newtensor(L);
	ln_tensor_ref(t, src);
	return t;
}

/* A parameter view carries two user values: the module userdata it came
 * from, and i+1 for parameter i (-(i+1) for its gradient). */
enum { PV_MODULE = 1, PV_INDEX, PV_COUNT = PV_INDEX };

ln_tensor *lnL_pushparam(lua_State *L, int module_idx, int i, bool grad)
{
	module_idx = lua_absindex(L, module_idx);
	lnL_module_box *b = lnL_testmodule(L, module_idx);
	assert(b && b->m && i >= 0 && i < b->m->nparams);
	ln_tensor *t = lua_newuserdatauv(L, sizeof(ln_tensor), PV_COUNT);
	*t = LN_TENSOR_EMPTY;
	luaL_setmetatable(L, LN_TENSOR_MT);
	ln_tensor_ref(t, grad ? &b->m->grad[i] : &b->m->param[i]);
	lua_pushvalue(L, module_idx);
	lua_setiuservalue(L, -2, PV_MODULE);
	lua_pushinteger(L, grad ? -(i + 1) : i + 1);
	lua_setiuservalue(L, -2, PV_INDEX);
	return t;
}

bool lnL_paramowner(lua_State *L, int idx, struct ln_module **m, int *i, bool *grad)
{
	idx = lua_absindex(L, idx);
	ln_tensor *t = lnL_testtensor(L, idx);
	if (!t || ln_tensor_is_empty(t))
		return false;
	if (lua_getiuservalue(L, idx, PV_MODULE) == LUA_TNONE) {
		lua_pop(L, 1);
		return false;
	}
	lnL_module_box *b = lnL_testmodule(L, -1);
	lua_getiuservalue(L, idx, PV_INDEX);
	lua_Integer k = lua_tointeger(L, -1);
	lua_pop(L, 2);
	if (!b || !b->m || k == 0)
		return false;
	int j = (int)(k < 0 ? -k : k) - 1;
	if (j >= b->m->nparams)
		return false;
	/* it still describes that tensor (no reshape of the userdata since) */
	const ln_tensor *src = k < 0 ? &b->m->grad[j] : &b->m->param[j];
	if (t->storage != src->storage || t->offset != src->offset || !ln_tensor_same_shape(t, src))
		return false;
	*m = b->m;
	*i = j;
	*grad = k < 0;
	return true;
}

/* The tensor at arg; a type error in the standard Lua form when it is not a
 * tensor, an argument error when it is closed. */
ln_tensor *lnL_checktensor(lua_State *L, int arg)
{
	ln_tensor *t = luaL_checkudata(L, arg, LN_TENSOR_MT);
	if (ln_tensor_is_empty(t))
		luaL_argerror(L, arg, "tensor is closed");
	return t;
}

ln_tensor *lnL_checkargtensor(lua_State *L, int arg, const char *cls, const char *method,
                              const char *what)
{
	ln_tensor *t = lnL_testtensor(L, arg);
	const char *colon = method ? ":" : "";
	if (!t)
		lnL_raisef(L, "%s%s%s: expected %s as a lunet.Tensor, got %s", cls, colon,
		           method ? method : "", what, lnL_tname(L, arg));
	if (ln_tensor_is_empty(t))
		lnL_raisef(L, "%s%s%s: %s is a closed tensor", cls, colon, method ? method : "", what);
	return t;
}

/* The tensor at arg, or NULL when the value is not a tensor.  Never
 * raises (it is safe in callbacks that must not longjmp): a closed tensor
 * is returned as is, and the caller checks ln_tensor_is_empty. */
ln_tensor *lnL_testtensor(lua_State *L, int arg)
{
	return luaL_testudata(L, arg, LN_TENSOR_MT);
}

void *lnL_testmarked(lua_State *L, int idx, const char *mark)
{
	if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
		return NULL;
	int marked = lua_getfield(L, -1, mark) != LUA_TNIL;
	lua_pop(L, 2);
	return marked ? lua_touserdata(L, idx) : NULL;
}

/* ==================================================================== */
/* Errors and value descriptions                                         */
/* ==================================================================== */

int lnL_error(lua_State *L, const char *fname, const ln_error *err)
{
	if (err == NULL || err->msg[0] == '\0')
		return lnL_raisef(L, "%s: %s", fname,
		                  err ? ln_status_name(err->code) : "unknown error");
	return lnL_raisef(L, "%s: %s", fname, err->msg);
}

/* ==================================================================== */
/* Nested tables -> tensor                                               */
/* ==================================================================== */

/* Writes the position of an element as "[2][3]" (1-based, depth n). */
static const char *pos_str(char *buf, size_t size, int n, const int64_t *pos)
{
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < n && used < size; i++) {
		int w = snprintf(buf + used, size - used, "[%lld]", (long long)pos[i]);
		if (w < 0)
			break;
		used += (size_t)w;
	}
	return buf;
}

/* Name of the type of the value at idx ("lunet.Tensor" for tensors and
 * other named userdata). */
const char *lnL_tname(lua_State *L, int idx)
{
	if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) {
		const char *name = lua_tostring(L, -1);
		lua_pop(L, 1);  /* the string stays alive in the metatable */
		return name;
	}
	if (lua_type(L, idx) == LUA_TLIGHTUSERDATA)
		return "light userdata";
	return luaL_typename(L, idx);
}

/* Writes a number for an error message: integers exactly, NaN as "nan". */
const char *lnL_numstr(char *buf, size_t size, lua_State *L, int idx)
{
	if (lua_isinteger(L, idx))
		snprintf(buf, size, "%lld", (long long)lua_tointeger(L, idx));
	else if (isnan(lua_tonumber(L, idx)))
		snprintf(buf, size, "nan");
	else
		snprintf(buf, size, "%.14g", (double)lua_tonumber(L, idx));
	return buf;
}

typedef struct fill_ctx {
	const char *fname;
	int ndim;
	int64_t shape[LN_MAX_DIMS];
	int64_t pos[LN_MAX_DIMS];  /* 1-based position being read */
	float *out;                /* next element to write */
} fill_ctx;

/* Reads the table at idx (depth d, already known to have shape[d]
 * elements) into c->out, checking every sub-table's length and every leaf's
 * type.  Raises "fname: ..." naming the position of the first bad value;
 * the destination tensor is anchored on the stack by the caller. */
static void fill_from_table(lua_State *L, int idx, int d, fill_ctx *c)
{
	char where[LN_MAX_DIMS * 24];
	for (int64_t i = 1; i <= c->shape[d]; i++) {
		c->pos[d] = i;
		int type = lua_rawgeti(L, idx, (lua_Integer)i);
		if (d == c->ndim - 1) {
			if (type != LUA_TNUMBER)
				lnL_raisef(L, "%s: expected a number at %s, got %s", c->fname,
				           pos_str(where, sizeof where, d + 1, c->pos), lnL_tname(L, -1));
			*c->out++ = (float)lua_tonumber(L, -1);
		} else {
			if (type != LUA_TTABLE)
				lnL_raisef(L, "%s: expected a table at %s, got %s", c->fname,
				           pos_str(where, sizeof where, d + 1, c->pos), lnL_tname(L, -1));
			lua_Unsigned len = lua_rawlen(L, -1);
			if ((int64_t)len != c->shape[d + 1])
				lnL_raisef(L, "%s: ragged table: expected %lld elements at %s, got %lld",
				           c->fname, (long long)c->shape[d + 1],
				           pos_str(where, sizeof where, d + 1, c->pos), (long long)len);
			fill_from_table(L, lua_gettop(L), d + 1, c);
		}
		lua_pop(L, 1);
	}
}

/* Converts the (nested) table at idx into a new tensor pushed onto the
 * stack.  The shape comes from following first elements ({{1,2,3},...} ->
 * {2,3}); every other element must agree. */
static ln_tensor *table_to_tensor(lua_State *L, int idx, const char *fname)
{
	fill_ctx c;
	char where[LN_MAX_DIMS * 24];
	c.fname = fname;
	c.ndim = 0;

	/* The shape, from the chain t, t[1], t[1][1], ... */
	lua_pushvalue(L, idx);
	while (lua_type(L, -1) == LUA_TTABLE) {
		lua_Unsigned len = lua_rawlen(L, -1);
		if (len == 0) {
			if (c.ndim == 0)
				lnL_raisef(L, "%s: expected a non-empty table, got an empty table", fname);
			lnL_raisef(L, "%s: expected a non-empty table at %s, got an empty table", fname,
			           pos_str(where, sizeof where, c.ndim, c.pos));
		}
		if (c.ndim == LN_MAX_DIMS)
			lnL_raisef(L, "%s: expected at most %d nested tables, got more", fname,
			           LN_MAX_DIMS);
		c.shape[c.ndim] = (int64_t)len;
		c.pos[c.ndim] = 1;
		c.ndim++;
		lua_rawgeti(L, -1, 1);
		lua_remove(L, -2);
	}
	lua_pop(L, 1);

	ln_tensor *t = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_alloc(t, c.ndim, c.shape, &err) != LN_OK)
		lnL_error(L, fname, &err);
	c.out = ln_tensor_data(t);
	luaL_checkstack(L, c.ndim + 4, "nested tables too deep");
	fill_from_table(L, idx, 0, &c);
	lnL_gcpressure(L, (size_t)ln_tensor_numel(t) * sizeof(float));
	return t;
}

/* A tensor userdata as is, or a new tensor from a nested table. */
ln_tensor *lnL_totensor(lua_State *L, int arg, const char *fname)
{
	arg = lua_absindex(L, arg);
	ln_tensor *t = luaL_testudata(L, arg, LN_TENSOR_MT);
	if (t != NULL) {
		if (ln_tensor_is_empty(t))
			lnL_raisef(L, "%s: tensor is closed", fname);
		return t;
	}
	if (lua_type(L, arg) == LUA_TTABLE)
		return table_to_tensor(L, arg, fname);
	lnL_raisef(L, "%s: expected a lunet.Tensor or a table of numbers, got %s", fname,
	           lnL_tname(L, arg));
	return NULL;
}

/* ==================================================================== */
/* Shapes                                                                */
/* ==================================================================== */

/* Reads one size (integer >= 1) at idx for dimension dim (1-based). */
static int64_t check_size(lua_State *L, int idx, int dim, const char *fname)
{
	if (lua_type(L, idx) != LUA_TNUMBER)
		lnL_raisef(L, "%s: expected sizes that are integers >= 1, got %s for dimension %d",
		           fname, lnL_tname(L, idx), dim);
	int isint;
	lua_Integer v = lua_tointegerx(L, idx, &isint);
	if (!isint) {
		lua_Number x = lua_tonumber(L, idx);
		if (isnan(x))
			lnL_raisef(L, "%s: expected sizes that are integers >= 1, got nan for dimension %d",
			           fname, dim);
		lnL_raisef(L, "%s: expected sizes that are integers >= 1, got %.14g for dimension %d",
		           fname, (double)x, dim);
	}
	if (v < 1)
		lnL_raisef(L, "%s: expected sizes that are integers >= 1, got %lld for dimension %d",
		           fname, (long long)v, dim);
	return (int64_t)v;
}

/* A shape from the arguments arg..top: integers (2,3) or one table ({2,3}).
 * Raises "fname: ..." on a missing, empty or too long shape, on a size
 * that is not an integer >= 1, and on anything after a shape table. */
int lnL_checkshape(lua_State *L, int arg, int64_t shape[LN_MAX_DIMS], const char *fname)
{
	int top = lua_gettop(L);
	if (arg > top)
		lnL_raisef(L, "%s: expected a shape (sizes or a table of sizes), got no value", fname);
	if (lua_type(L, arg) == LUA_TTABLE) {
		lua_Unsigned n = lua_rawlen(L, arg);
		if (n == 0)
			lnL_raisef(L, "%s: expected a non-empty table of sizes, got an empty table", fname);
		if (n > LN_MAX_DIMS)
			lnL_raisef(L, "%s: expected at most %d dimensions, got %lld", fname, LN_MAX_DIMS,
			           (long long)n);
		if (top > arg)
			lnL_raisef(L, "%s: expected nothing after the shape table, got %s", fname,
			           lnL_tname(L, arg + 1));
		for (int i = 0; i < (int)n; i++) {
			lua_rawgeti(L, arg, i + 1);
			shape[i] = check_size(L, -1, i + 1, fname);
			lua_pop(L, 1);
		}
		return (int)n;
	}
	int n = top - arg + 1;
	if (n > LN_MAX_DIMS)
		lnL_raisef(L, "%s: expected at most %d dimensions, got %d", fname, LN_MAX_DIMS, n);
	for (int i = 0; i < n; i++)
		shape[i] = check_size(L, arg + i, i + 1, fname);
	return n;
}

/* ==================================================================== */
/* Arguments and option tables                                          */
/* ==================================================================== */

void lnL_checknargs(lua_State *L, int n, const char *fname)
{
	int got = lua_gettop(L);
	if (got <= n)
		return;
	if (n == 0)
		lnL_raisef(L, "%s: expected no arguments, got %d", fname, got);
	lnL_raisef(L, "%s: expected at most %d argument%s, got %d", fname, n, n == 1 ? "" : "s", got);
}

/* Pushes "a, b, c": the keys of known, or "" for none. */
static void push_known(lua_State *L, const lnL_option *known)
{
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (int i = 0; known[i].key; i++) {
		if (i)
			luaL_addstring(&b, ", ");
		luaL_addstring(&b, known[i].key);
	}
	luaL_pushresult(&b);
}

/* Lua's name of a type, as the messages use it. */
static const char *type_word(int type)
{
	return type == LUA_TNUMBER ? "number" : type == LUA_TBOOLEAN ? "boolean"
	     : type == LUA_TSTRING ? "string" : "table";
}

void lnL_checkoptions(lua_State *L, int arg, const char *fname, const lnL_option *known)
{
	lnL_checknargs(L, arg, fname);
	if (lua_isnoneornil(L, arg))
		return;
	if (!lua_istable(L, arg))
		luaL_error(L, "%s: options must be a table, got %s", fname, luaL_typename(L, arg));
	lua_pushnil(L);
	while (lua_next(L, arg)) {
		const lnL_option *o = known;
		if (lua_type(L, -2) == LUA_TSTRING)
			for (; o->key && strcmp(o->key, lua_tostring(L, -2)) != 0; o++)
				;
		if (lua_type(L, -2) != LUA_TSTRING || !o->key) {
			/* the key as the script wrote it: 'name', or [1] for a position */
			const char *k = lua_type(L, -2) == LUA_TSTRING
			                    ? lua_pushfstring(L, "'%s'", lua_tostring(L, -2))
			                    : lua_pushfstring(L, "[%s]", luaL_tolstring(L, -2, NULL));
			if (!known[0].key)
				luaL_error(L, "%s: unknown option %s (it takes no options)", fname, k);
			push_known(L, known);
			luaL_error(L, "%s: unknown option %s (options: %s)", fname, k, lua_tostring(L, -1));
		}
		if (o->type != LUA_TNONE && lua_type(L, -1) != o->type)
			luaL_error(L, "%s: option '%s' must be a %s, got %s", fname, o->key,
			           type_word(o->type), luaL_typename(L, -1));
		lua_pop(L, 1);
	}
}

/* The body of lnL_optionerror, under pcall: upvalue 1 the option list. */
static int check_listed(lua_State *L)
{
	lnL_checkoptions(L, 2, lua_tostring(L, 1), lua_touserdata(L, lua_upvalueindex(1)));
	return 0;
}

int lnL_optionerror(lua_State *L)
{
	enum { MAX = 16 };
	static const char *const types[] = {"number", "boolean", "string", "table", "any", NULL};
	static const int codes[] = {LUA_TNUMBER, LUA_TBOOLEAN, LUA_TSTRING, LUA_TTABLE, LUA_TNONE};
	luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TTABLE);
	lnL_option known[MAX + 1];
	lua_Integer n = luaL_len(L, 2);
	luaL_argcheck(L, n <= MAX, 2, "too many options");
	for (lua_Integer i = 1; i <= n; i++) {
		lua_geti(L, 2, i);
		luaL_checktype(L, -1, LUA_TTABLE);
		lua_geti(L, -1, 1);
		lua_geti(L, -2, 2);
		/* the strings stay alive in the known table */
		known[i - 1].key = luaL_checkstring(L, -2);
		known[i - 1].type = codes[luaL_checkoption(L, -1, NULL, types)];
		lua_pop(L, 3);
	}
	known[n].key = NULL;
	lua_settop(L, 3);
	lua_pushlightuserdata(L, known);
	lua_pushcclosure(L, check_listed, 1);
	lua_pushvalue(L, 1);
	lua_pushvalue(L, 3);
	if (lua_pcall(L, 2, 0, 0) == LUA_OK)
		lua_pushnil(L);
	return 1;
}

lua_Number lnL_optnumber(lua_State *L, int arg, const char *key, lua_Number def)
{
	if (!lua_istable(L, arg))
		return def;
	lua_getfield(L, arg, key);
	lua_Number v = lua_isnil(L, -1) ? def : lua_tonumber(L, -1);
	lua_pop(L, 1);
	return v;
}

int lnL_optboolean(lua_State *L, int arg, const char *key, int def)
{
	if (!lua_istable(L, arg))
		return def;
	lua_getfield(L, arg, key);
	int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}

/* ==================================================================== */
/* Contiguity, GC pressure                                               */
/* ==================================================================== */

/* t itself when contiguous (nothing pushed), else a contiguous copy in a
 * new userdata pushed onto the stack (freed by the GC). */
const ln_tensor *lnL_contiguous(lua_State *L, const ln_tensor *t, const char *fname, int *pushed)
{
	if (ln_tensor_is_contiguous(t)) {
		*pushed = 0;
		return t;
	}
	ln_tensor *c = lnL_newtensor(L);
	*pushed = 1;
	ln_error err;
	if (ln_tensor_clone(c, t, &err) != LN_OK)
		lnL_error(L, fname, &err);
	lnL_gcpressure(L, (size_t)ln_tensor_numel(c) * sizeof(float));
	return c;
}

/* lnaux.h: a string path with no NUL byte. */
const char *lnL_checkpath(lua_State *L, int arg, const char *fname, size_t *len)
{
	size_t n;
	const char *path = luaL_checklstring(L, arg, &n);
	if (strlen(path) != n)
		luaL_error(L, "%s: path contains a NUL byte", fname);
	if (len)
		*len = n;
	return path;
}

/* Tensor storage lives outside the Lua heap, so the collector does not see
 * it grow.  Each new storage is reported as GC debt (LUA_GCSTEP with a
 * size in KiB adds that much debt and runs a step when it is due); bytes
 * below 1 KiB are carried over to the next call.  The carry is process
 * wide, which only makes it approximate with several Lua states. */
void lnL_gcpressure(lua_State *L, size_t bytes)
{
	static size_t carry;
	carry += bytes;
	if (carry < 1024)
		return;
	size_t kib = carry / 1024;
	carry %= 1024;
	/* lua_gc takes an int; clamp very large reports. */
	while (kib > 0) {
		int step = kib > (size_t)(1 << 30) ? (1 << 30) : (int)kib;
		lua_gc(L, LUA_GCSTEP, step);
		kib -= (size_t)step;
	}
}
