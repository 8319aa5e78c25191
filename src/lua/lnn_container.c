/*
 * lnn_container.c -- the Lua binding of containers: nn.Sequential, seq:add,
 * seq:get, and the custom modules written in Lua that a container can hold.
 *
 * A plain Lua table with forward/backward placed in a Sequential is wrapped
 * in an External module (layers.h) whose callbacks call back into Lua under
 * lua_pcall, on the thread of the forward/backward that is running
 * (lnn_state.running), so a Lua error inside it comes back as an ln_error
 * value and never unwinds through the C frames of the container.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "core/alloc.h"
#include "lnaux.h"
#include "lnn.h"
#include "nn/layers.h"

#define EXTERNAL_REG "lunet.external"

/* ---- custom modules written in Lua ------------------------------------------ */

/* An External module's callback context: the state whose running thread
 * the callbacks use.  Its address is also the key of the module's table in
 * the registry's weak map. */
typedef struct lua_module_ctx {
	lnn_state *S;
} lua_module_ctx;

/* Pushes the Lua table behind an external module (registry weak map). */
static void push_external(lua_State *L, void *ctx)
{
	lua_getfield(L, LUA_REGISTRYINDEX, EXTERNAL_REG);
	lua_rawgetp(L, -1, ctx);
	lua_remove(L, -2);
}

void lnL_pushexternal(lua_State *L, ln_module *m)
{
	void *ctx = ln_external_ctx(m);
	if (ctx)
		push_external(L, ctx);
	else
		lua_pushnil(L);
}

/* Calls tbl:<method>(args...) under pcall and refs the tensor it returns
 * into out.  Lua errors become LN_EARG with their message. */
static ln_status call_external(void *ctx, const char *method, const ln_tensor *x,
                               const ln_tensor *gy, ln_tensor *out, ln_error *err)
{
	lua_State *L = ((lua_module_ctx *)ctx)->S->running;
	int top = lua_gettop(L);
	if (!lua_checkstack(L, 8))
		return ln_fail(err, LN_ENOMEM, "Lua stack overflow");
	push_external(L, ctx);
	if (lua_getfield(L, -1, method) != LUA_TFUNCTION) {
		lua_settop(L, top);
		return ln_fail(err, LN_EARG, "custom module has no %s method", method);
	}
	lua_insert(L, -2);
	lnL_pushview(L, x);
	int nargs = 2;
	if (gy) {
		lnL_pushview(L, gy);
		nargs = 3;
	}
	if (lua_pcall(L, nargs, 1, 0) != LUA_OK) {
		ln_fail(err, LN_EARG, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : "error object");
		lua_settop(L, top);
		return err ? err->code : LN_EARG;
	}
	ln_tensor *t = lnL_testtensor(L, -1);
	if (gy && lua_isnil(L, -1)) {
		/* backward may return nil when no input gradient is wanted
		 * (external.c decides) */
		lua_settop(L, top);
		return LN_OK;
	}
	if (!t || ln_tensor_is_empty(t)) {
		ln_fail(err, LN_EARG, "custom module's %s returned %s, expected a tensor", method,
		        luaL_typename(L, -1));
		lua_settop(L, top);
		return LN_EARG;
	}
	ln_tensor_ref(out, t);
	lua_settop(L, top);
	return LN_OK;
}

static ln_status external_forward(void *ctx, const ln_tensor *x, ln_tensor *out, ln_error *err)
{
	return call_external(ctx, "forward", x, NULL, out, err);
}

static ln_status external_backward(void *ctx, const ln_tensor *x, const ln_tensor *gy,
                                   ln_tensor *grad_input, ln_error *err)
{
	return call_external(ctx, "backward", x, gy, grad_input, err);
}

static void external_release(void *ctx) { ln_free(ctx); }

static const ln_external_ops external_ops = {
	.forward = external_forward,
	.backward = external_backward,
	.release = external_release,
};

/* Wraps the Lua table at idx in an external module: one new reference in
 * *out, or LN_EARG (no forward/backward methods) / LN_ENOMEM with err
 * filled.  Raises nothing. */
static ln_status wrap_lua_module(lua_State *L, int idx, ln_module **out, ln_error *err)
{
	lua_getfield(L, idx, "forward");
	lua_getfield(L, idx, "backward");
	bool ok = lua_isfunction(L, -2) && lua_isfunction(L, -1);
	lua_pop(L, 2);
	if (!ok)
		return ln_fail(err, LN_EARG, "a custom module needs forward and backward methods");
	lua_module_ctx *ctx = ln_malloc(sizeof *ctx);
	if (!ctx)
		return ln_fail(err, LN_ENOMEM, "out of memory");
	ctx->S = LNN_STATE(L);
	ln_status st = ln_external_new(out, &external_ops, ctx, err);
	if (st != LN_OK) {
		ln_free(ctx);
		return st;
	}
	/* The table stays alive through the container's children list; the
	 * weak map only lets the callbacks find it. */
	lua_getfield(L, LUA_REGISTRYINDEX, EXTERNAL_REG);
	lua_pushvalue(L, idx);
	lua_rawsetp(L, -2, ctx);
	lua_pop(L, 1);
	return LN_OK;
}

ln_status lnn_to_module(lua_State *L, int idx, ln_module **out, ln_error *err)
{
	module_box *b = lnL_testmodule(L, idx);
	if (b) {
		if (!b->m)
			return ln_fail(err, LN_EARG, "the %s is closed", lnn_box_class(L, idx));
		ln_module_retain(b->m);
		*out = b->m;
		return LN_OK;
	}
	if (lua_istable(L, idx))
		return wrap_lua_module(L, idx, out, err);
	return ln_fail(err, LN_EARG, "expected a module or a table with forward/backward, got %s",
	               lnL_pushwhat(L, idx));
}

/* ---- Sequential ------------------------------------------------------------------- */

/* Adds the module or Lua table at idx to the Sequential at 1. */
static void sequential_append(lua_State *L, ln_module *seq, int idx, const char *fname)
{
	ln_error err;
	ln_module *child;
	module_box *b = lnL_testmodule(L, idx);
	if (b && b->m == seq)
		luaL_error(L, "%s: cannot add a Sequential to itself", fname);
	if (b && !b->m)
		luaL_error(L, "%s: the %s to add is closed", fname, lnn_box_class(L, idx));
	if (lnn_to_module(L, idx, &child, &err) != LN_OK)
		luaL_error(L, "%s: %s", fname, err.msg);
	ln_status st = ln_sequential_add(seq, child, &err);
	ln_module_release(child);  /* the container holds its own reference */
	if (st != LN_OK)
		luaL_error(L, "%s: %s", fname, err.msg);
	lnn_push_children(L, 1);
	lua_pushvalue(L, idx);
	lua_seti(L, -2, luaL_len(L, -2) + 1);
	lua_pop(L, 1);
}

/* nn.Sequential([{m1, m2, ...}]) */
static int l_sequential_new(lua_State *L)
{
	/* nn.Sequential(m1, m2) is PyTorch's spelling: say how it is written here */
	int nargs = lua_gettop(L);
	bool custom = lua_istable(L, 1) && lua_getfield(L, 1, "forward") != LUA_TNIL;
	if (nargs > 1 || custom || lnL_testmodule(L, 1))
		return luaL_error(L, "nn.Sequential: takes one table of modules, as in "
		                  "nn.Sequential{m1, m2, ...}; got %d argument%s, the first a %s",
		                  nargs, nargs == 1 ? "" : "s", lnL_pushwhat(L, 1));
	lua_settop(L, nargs);
	int has_list = !lua_isnoneornil(L, 1);
	if (has_list)
		luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	module_box *b = lnn_new_module_box(L, &ln_sequential_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_sequential_new(&m, &err);
	lnn_module_done(L, b, m, st, &err, "nn.Sequential");
	lua_insert(L, 1);  /* 1: Sequential, 2: list or nil */
	if (has_list) {
		lua_Integer n = luaL_len(L, 2);
		for (lua_Integer i = 1; i <= n; i++) {
			lua_geti(L, 2, i);
			char fname[48];
			snprintf(fname, sizeof fname, "nn.Sequential (item %d)", (int)i);
			sequential_append(L, m, lua_gettop(L), fname);
			lua_pop(L, 1);
		}
	}
	lua_settop(L, 1);
	return 1;
}

/* seq:add(m) -> seq */
static int sequential_add(lua_State *L)
{
	ln_module *seq = lnn_check_module(L, 1, "add");
	if (seq->cls != &ln_sequential_class)
		return luaL_error(L, "%s:add: only a Sequential has add", seq->cls->name);
	luaL_checkany(L, 2);
	sequential_append(L, seq, 2, "Sequential:add");
	lua_settop(L, 1);
	return 1;
}

/* seq:get(i) -> the i-th module, as added */
static int sequential_get(lua_State *L)
{
	ln_module *seq = lnn_check_module(L, 1, "get");
	lua_Integer i = luaL_checkinteger(L, 2);
	if (i < 1 || i > seq->nchildren)
		return luaL_error(L, "%s:get: index %I out of range 1..%d", seq->cls->name,
		                  (LUAI_UACINT)i, seq->nchildren);
	lnn_push_children(L, 1);
	lua_geti(L, -1, i);
	return 1;
}

/* ---- registration ---------------------------------------------------------------------- */

const luaL_Reg lnn_container_methods[] = {
	{"add", sequential_add},
	{"get", sequential_get},
	{NULL, NULL},
};

void lnn_open_container(lua_State *L, int nn)
{
	/* weak map from external-module contexts to their Lua tables */
	lua_newtable(L);
	lua_newtable(L);
	lua_pushliteral(L, "v");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	lua_setfield(L, LUA_REGISTRYINDEX, EXTERNAL_REG);

	lua_pushvalue(L, -1);  /* the state */
	lua_pushcclosure(L, l_sequential_new, 1);
	lua_setfield(L, nn, "Sequential");
}
