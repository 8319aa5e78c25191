/*
 * lnn.c -- the Lua binding of modules, losses and output/loss pairings
 * (lunet.nn).
 *
 * A module is a full userdata holding one reference to an ln_module, with
 * the metatable "lunet.nn.<Class>" (so type errors name the class).  Its
 * user value is a table holding the Lua objects of its children (for a
 * Sequential, so that seq:get(i) returns the very object that was added)
 * and any fields a script sets on it.
 *
 * forward/backward of built-in modules, Sequential included, run entirely
 * in C.  A plain Lua table with forward/backward placed in a Sequential is
 * wrapped in an "external" module whose callbacks call back into Lua under
 * lua_pcall, so a Lua error inside it comes back as an ln_error value and
 * never unwinds through the C frames of the container.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "core/alloc.h"
#include "lnaux.h"
#include "nn/conv.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/loss.h"
#include "nn/module.h"

#define MODULE_MT_PREFIX "lunet.nn."
#define MODULE_MARK "__lunet_module"
#define LOSS_MARK "__lunet_loss"
#define EXTERNAL_REG "lunet.external"

typedef lnL_module_box module_box;
typedef struct loss_box { ln_loss *c; } loss_box;

/* The thread that called the binding function now running; external
 * modules call back into Lua on it. */
static lua_State *current_L;

/* What produced the tensor most recently returned by a module's forward:
 * the loss bindings use it to spot a softmax or sigmoid applied twice. */
static struct {
	const ln_storage *storage;
	const ln_module_class *cls;
} last_output;

/* ---- helpers -------------------------------------------------------------- */

static lua_Number opt_number(lua_State *L, int opts, const char *fname, const char *key,
                             lua_Number def)
{
	if (lua_isnoneornil(L, opts))
		return def;
	lua_getfield(L, opts, key);
	lua_Number v = def;
	if (!lua_isnil(L, -1)) {
		if (!lua_isnumber(L, -1))
			luaL_error(L, "%s: option '%s' must be a number, got %s", fname, key,
			           luaL_typename(L, -1));
		v = lua_tonumber(L, -1);
	}
	lua_pop(L, 1);
	return v;
}

static int opt_boolean(lua_State *L, int opts, const char *fname, const char *key, int def)
{
	if (lua_isnoneornil(L, opts))
		return def;
	lua_getfield(L, opts, key);
	int v = def;
	if (!lua_isnil(L, -1)) {
		if (!lua_isboolean(L, -1))
			luaL_error(L, "%s: option '%s' must be a boolean, got %s", fname, key,
			           luaL_typename(L, -1));
		v = lua_toboolean(L, -1);
	}
	lua_pop(L, 1);
	return v;
}

/* A size argument: an integer >= 1. */
static int64_t check_size(lua_State *L, int arg, const char *fname, const char *what)
{
	if (!lua_isinteger(L, arg)) {
		if (lua_isnumber(L, arg))
			luaL_error(L, "%s: %s must be an integer, got %s", fname, what,
			           lua_tostring(L, arg));
		luaL_error(L, "%s: %s must be an integer, got %s", fname, what, luaL_typename(L, arg));
	}
	lua_Integer v = lua_tointeger(L, arg);
	if (v < 1)
		luaL_error(L, "%s: %s must be >= 1, got %I", fname, what, (LUAI_UACINT)v);
	return (int64_t)v;
}

static void check_options_table(lua_State *L, int arg, const char *fname)
{
	if (!lua_isnoneornil(L, arg) && !lua_istable(L, arg))
		luaL_error(L, "%s: options must be a table, got %s", fname, luaL_typename(L, arg));
}

/* ---- module userdata ------------------------------------------------------- */

lnL_module_box *lnL_testmodule(lua_State *L, int idx)
{
	if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
		return NULL;
	int marked = lua_getfield(L, -1, MODULE_MARK) != LUA_TNIL;
	lua_pop(L, 2);
	return marked ? lua_touserdata(L, idx) : NULL;
}


/* The class name of the module userdata at idx ("Linear"), from its
 * metatable, for messages about a closed module. */
static const char *box_class(lua_State *L, int idx)
{
	const char *name = "module";
	int t = luaL_getmetafield(L, idx, "__name");
	if (t == LUA_TSTRING) {
		name = lua_tostring(L, -1);  /* kept alive by the metatable */
		if (strncmp(name, MODULE_MT_PREFIX, strlen(MODULE_MT_PREFIX)) == 0)
			name += strlen(MODULE_MT_PREFIX);
	}
	if (t != LUA_TNIL)
		lua_pop(L, 1);
	return name;
}

/* The open module at idx, or an error naming `method` ("forward") and
 * what was found instead. */
static ln_module *check_module(lua_State *L, int idx, const char *method)
{
	module_box *b = lnL_testmodule(L, idx);
	if (!b)
		luaL_error(L, "module:%s: expected a lunet module as argument %d, got %s", method, idx,
		           luaL_typename(L, idx));
	if (!b->m)
		luaL_error(L, "%s:%s: module is closed", box_class(L, idx), method);
	return b->m;
}

/* User values of a module userdata: 1 the table of children and script
 * fields, then the tensor views last handed out for output and
 * grad_input (push_cached_view). */
enum { UV_FIELDS = 1, UV_OUTPUT, UV_GRAD_INPUT, UV_COUNT = UV_GRAD_INPUT };
/* And of a loss userdata: its output and grad_input views. */
enum { LUV_OUTPUT = 1, LUV_GRAD_INPUT, LUV_COUNT = LUV_GRAD_INPUT };

/* Pushes a new empty module userdata of class cls; the caller stores the
 * module into the box.  If the constructor then fails, __gc sees NULL. */
static module_box *new_module_box(lua_State *L, const ln_module_class *cls)
{
	module_box *b = lua_newuserdatauv(L, sizeof *b, UV_COUNT);
	b->m = NULL;
	char mt[64];
	snprintf(mt, sizeof mt, MODULE_MT_PREFIX "%s", cls->name);
	luaL_setmetatable(L, mt);
	lua_newtable(L);
	lua_setiuservalue(L, -2, UV_FIELDS);
	return b;
}

void lnL_pushmodule(lua_State *L, ln_module *m)
{
	char mt[64];
	snprintf(mt, sizeof mt, MODULE_MT_PREFIX "%s", m->cls->name);
	if (luaL_getmetatable(L, mt) != LUA_TTABLE)
		luaL_error(L, "no Lua binding for module class %s", m->cls->name);
	lua_pop(L, 1);
	module_box *b = new_module_box(L, m->cls);
	ln_module_retain(m);
	b->m = m;
}

/* Finishes a constructor: raises on failure, else returns the userdata. */
static int module_done(lua_State *L, module_box *b, ln_module *m, ln_status st, const ln_error *err,
                       const char *fname)
{
	if (st != LN_OK)
		return lnL_error(L, fname, err);
	b->m = m;
	return 1;
}

static int module_gc(lua_State *L)
{
	module_box *b = lua_touserdata(L, 1);
	if (b && b->m) {
		ln_module_release(b->m);
		b->m = NULL;
	}
	return 0;
}

/* The class that produced m's output: the last leaf of nested containers. */
static const ln_module_class *output_class(const ln_module *m)
{
	while (m->nchildren > 0)
		m = m->children[m->nchildren - 1];
	return m->cls;
}

/* True when the view v describes exactly the tensor t: same storage,
 * offset, shape and strides. */
static bool same_view(const ln_tensor *v, const ln_tensor *t)
{
	if (v->storage != t->storage || v->offset != t->offset || v->ndim != t->ndim)
		return false;
	for (int d = 0; d < t->ndim; d++)
		if (v->shape[d] != t->shape[d] || v->stride[d] != t->stride[d])
			return false;
	return true;
}

/*
 * Pushes a view of the module's (or loss's) buffer t, or nil when t is
 * empty.  The view is kept in user value `slot` of the userdata at idx and
 * handed out again while it still describes t, so that a training loop
 * does not create a new userdata (and garbage) per forward and backward.
 * When the buffer was reallocated (new batch shape), or the script closed
 * or reshaped the view it was given, a new view replaces the kept one.
 */
static void push_cached_view(lua_State *L, int idx, int slot, const ln_tensor *t)
{
	if (ln_tensor_is_empty(t)) {
		lua_pushnil(L);
		return;
	}
	lua_getiuservalue(L, idx, slot);
	ln_tensor *v = lnL_testtensor(L, -1);
	if (v && same_view(v, t))
		return;
	lua_pop(L, 1);
	lnL_pushview(L, t);
	lua_pushvalue(L, -1);
	lua_setiuservalue(L, idx, slot);
}

/* t, or a contiguous copy of it pushed onto the stack; `cls:method` names
 * the caller in the error raised if the copy fails.  The name is only
 * formatted then: the common, contiguous case costs one check. */
static const ln_tensor *contiguous_arg(lua_State *L, const ln_tensor *t, const char *cls,
                                       const char *method)
{
	if (ln_tensor_is_contiguous(t))
		return t;
	char where[96];
	int pushed;
	snprintf(where, sizeof where, "%s:%s", cls, method);
	return lnL_contiguous(L, t, where, &pushed);
}

/* The target argument of a loss: a tensor, or a table of numbers
 * converted into one (pushed), made contiguous. */
static const ln_tensor *target_arg(lua_State *L, int arg, const char *cls, const char *method)
{
	const ln_tensor *t = lnL_testtensor(L, arg);
	if (!t || ln_tensor_is_empty(t)) {
		char where[96];
		snprintf(where, sizeof where, "%s:%s", cls, method);
		t = lnL_totensor(L, arg, where);
	}
	return contiguous_arg(L, t, cls, method);
}

/* Raises "Class:method: msg" for a failed call. */
static int raise_method(lua_State *L, const char *cls, const char *method, const ln_error *err)
{
	return lnL_raisef(L, "%s:%s: %s", cls, method, err->msg);
}

/* Raises "Class:method: msg" for a failed loss call; an OutputLoss names
 * its pairing too ("OutputLoss:forward: OutputLoss(softmax,
 * cross_entropy): ..."). */
static int raise_loss(lua_State *L, const ln_loss *c, const char *method, const ln_error *err)
{
	const char *pairing = ln_loss_pairing(c);
	if (pairing)
		return lnL_raisef(L, "%s:%s: %s: %s", c->cls->name, method, pairing, err->msg);
	return raise_method(L, c->cls->name, method, err);
}

/*
 * forward/backward may call back into Lua (custom modules in a
 * Sequential), and a callback may close the very module being run, or run
 * modules on another coroutine.  enter_callbacks takes a reference to m for
 * the length of the call, so that m outlives a close from inside, and makes
 * L the thread that callbacks run on; it returns the thread that was
 * current before, for leave_callbacks to restore (a nested call from
 * inside a coroutine must not leave the callbacks of the outer call on a
 * coroutine that may be suspended or collected).
 */
static lua_State *enter_callbacks(lua_State *L, ln_module *m)
{
	lua_State *outer = current_L;
	current_L = L;
	ln_module_retain(m);
	return outer;
}

/* Ends what enter_callbacks began: restores the thread and drops the
 * reference.  Returns true when the call succeeded and m is still open
 * (the box at index 1 still holds it, so m stays alive); else false with
 * *err describing the failure, and m must no longer be touched. */
static bool leave_callbacks(lua_State *L, ln_module *m, lua_State *outer, ln_status *st,
                            ln_error *err, const char *method)
{
	current_L = outer;
	module_box *b = lua_touserdata(L, 1);
	bool open = b->m == m;
	ln_module_release(m);
	if (*st == LN_OK && !open)
		*st = ln_fail(err, LN_ESTATE, "the module was closed during its own %s", method);
	return *st == LN_OK;
}

/* m:forward(x) -> output (the module's buffer, reused by the next call;
 * the same userdata while the buffer keeps its shape). */
static int module_forward(lua_State *L)
{
	ln_module *m = check_module(L, 1, "forward");
	ln_tensor *x = lnL_checktensor(L, 2);
	const ln_tensor *xc = contiguous_arg(L, x, m->cls->name, "forward");
	const char *cls = m->cls->name;  /* static: outlives m */
	ln_error err;
	lua_State *outer = enter_callbacks(L, m);
	ln_status st = ln_module_forward_unprefixed(m, xc, &err);
	if (!leave_callbacks(L, m, outer, &st, &err, "forward"))
		return raise_method(L, cls, "forward", &err);
	last_output.storage = m->output.storage;
	last_output.cls = output_class(m);
	push_cached_view(L, 1, UV_OUTPUT, &m->output);
	return 1;
}

/* m:backward(x, gy) -> grad_input; adds into the parameter gradients. */
static int module_backward(lua_State *L)
{
	ln_module *m = check_module(L, 1, "backward");
	ln_tensor *x = lnL_checktensor(L, 2);
	ln_tensor *gy = lnL_checktensor(L, 3);
	const ln_tensor *xc = contiguous_arg(L, x, m->cls->name, "backward");
	const ln_tensor *gyc = contiguous_arg(L, gy, m->cls->name, "backward");
	const char *cls = m->cls->name;  /* static: outlives m */
	ln_error err;
	lua_State *outer = enter_callbacks(L, m);
	ln_status st = ln_module_backward_unprefixed(m, xc, gyc, &err);
	if (!leave_callbacks(L, m, outer, &st, &err, "backward"))
		return raise_method(L, cls, "backward", &err);
	push_cached_view(L, 1, UV_GRAD_INPUT, &m->grad_input);
	return 1;
}

/* Children of a container, as stored in the user value: pushes the list. */
static void push_children(lua_State *L, int idx)
{
	lua_getiuservalue(L, idx, UV_FIELDS);
	if (lua_getfield(L, -1, "children") == LUA_TNIL) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, "children");
	}
	lua_remove(L, -2);
}

/* Appends the elements of the table at src to the table at dst. */
static void append_all(lua_State *L, int dst, int src)
{
	lua_Integer n = luaL_len(L, dst);
	lua_Integer k = luaL_len(L, src);
	for (lua_Integer i = 1; i <= k; i++) {
		lua_geti(L, src, i);
		lua_seti(L, dst, ++n);
	}
}

/* m:parameters() -> {params...}, {grads...}: views sharing the module's
 * memory, layer by layer, weight before bias.  A container asks each child
 * (built-in or a Lua table with its own parameters method). */
static int module_parameters(lua_State *L)
{
	ln_module *m = check_module(L, 1, "parameters");
	lua_newtable(L);
	lua_newtable(L);
	int params = lua_gettop(L) - 1, grads = params + 1;
	if (m->cls->param_names[0] == NULL && m->nchildren == 0 && m->nparams == 0)
		return 2;
	/* m's own tensors are taken now: a child's parameters method below
	 * runs Lua, which may close m. */
	int nown = m->nparams;
	lua_createtable(L, nown, 0);
	lua_createtable(L, nown, 0);
	for (int i = 0; i < nown; i++) {
		lnL_pushparam(L, 1, i, false);
		lua_seti(L, grads + 1, i + 1);
		lnL_pushparam(L, 1, i, true);
		lua_seti(L, grads + 2, i + 1);
	}
	if (lua_getiuservalue(L, 1, UV_FIELDS) == LUA_TTABLE &&
	    lua_getfield(L, -1, "children") == LUA_TTABLE) {
		int children = lua_gettop(L);
		lua_Integer n = luaL_len(L, children);
		for (lua_Integer i = 1; i <= n; i++) {
			lua_geti(L, children, i);
			if (lua_getfield(L, -1, "parameters") == LUA_TNIL) {
				lua_pop(L, 2);
				continue;
			}
			lua_insert(L, -2);
			lua_call(L, 1, 2);
			if (lua_istable(L, -2))
				append_all(L, params, lua_gettop(L) - 1);
			if (lua_istable(L, -1))
				append_all(L, grads, lua_gettop(L));
			lua_pop(L, 2);
		}
	}
	lua_settop(L, grads + 2);
	append_all(L, params, grads + 1);
	append_all(L, grads, grads + 2);
	lua_settop(L, grads);
	return 2;
}

/* Calls method `name` (no arguments) on every child that is a Lua table
 * having it; built-in children are handled in C by the caller. */
static void call_on_lua_children(lua_State *L, int idx, const char *name)
{
	if (lua_getiuservalue(L, idx, UV_FIELDS) != LUA_TTABLE ||
	    lua_getfield(L, -1, "children") != LUA_TTABLE) {
		lua_settop(L, idx);
		return;
	}
	int children = lua_gettop(L);
	lua_Integer n = luaL_len(L, children);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_geti(L, children, i);
		if (lua_istable(L, -1)) {
			if (lua_getfield(L, -1, name) == LUA_TFUNCTION) {
				lua_insert(L, -2);
				lua_call(L, 1, 0);
				continue;
			}
			lua_pop(L, 1);
		} else if (lnL_testmodule(L, -1)) {
			lua_getfield(L, -1, name);
			lua_insert(L, -2);
			lua_call(L, 1, 0);
			continue;
		}
		lua_pop(L, 1);
	}
	lua_settop(L, idx);
}

static int module_zero_grad(lua_State *L)
{
	ln_module *m = check_module(L, 1, "zero_grad");
	ln_module_zero_grad(m);
	call_on_lua_children(L, 1, "zero_grad");
	return 0;
}

static int set_mode(lua_State *L, bool training)
{
	ln_module *m = check_module(L, 1, training ? "train" : "evaluate");
	ln_module_set_training(m, training);
	call_on_lua_children(L, 1, training ? "train" : "evaluate");
	lua_settop(L, 1);
	return 1;
}

static int module_train(lua_State *L) { return set_mode(L, true); }
static int module_evaluate(lua_State *L) { return set_mode(L, false); }

/* tostring(m): the class's description; containers list their children,
 * indented, as Torch does. */
static int module_tostring(lua_State *L)
{
	module_box *mb = lnL_testmodule(L, 1);
	if (mb && !mb->m) {
		lua_pushfstring(L, "%s (closed)", box_class(L, 1));
		return 1;
	}
	ln_module *m = check_module(L, 1, "__tostring");
	char line[256];
	if (m->cls->describe)
		m->cls->describe(m, line, sizeof line);
	else
		snprintf(line, sizeof line, "%s", m->cls->name);
	if (m->nchildren == 0 && strcmp(m->cls->name, "Sequential") != 0) {
		lua_pushstring(L, line);
		return 1;
	}
	luaL_Buffer b;
	push_children(L, 1);
	int children = lua_gettop(L);
	luaL_buffinit(L, &b);
	luaL_addstring(&b, m->cls->name);
	luaL_addstring(&b, " {");
	lua_Integer n = luaL_len(L, children);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_geti(L, children, i);
		const char *s = luaL_tolstring(L, -1, NULL);
		char head[32];
		snprintf(head, sizeof head, "\n  (%d): ", (int)i);
		/* indent nested lines */
		lua_pushstring(L, head);
		lua_pushstring(L, s);
		lua_remove(L, -3);
		lua_remove(L, -3);
		/* stack: ..., head, s */
		luaL_gsub(L, lua_tostring(L, -1), "\n", "\n  ");
		lua_remove(L, -2);
		lua_concat(L, 2);
		luaL_addvalue(&b);
	}
	luaL_addstring(&b, "\n}");
	luaL_pushresult(&b);
	return 1;
}

/* __index: methods first, then the module's named tensors and settings,
 * then fields a script stored on it. */
static int module_index(lua_State *L)
{
	/* methods first: m:forward(x) looks its method up on every call */
	lua_pushvalue(L, 2);
	if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	ln_module *m = check_module(L, 1, "__index");
	if (lua_type(L, 2) == LUA_TSTRING) {
		const char *key = lua_tostring(L, 2);
		if (strcmp(key, "output") == 0) {
			push_cached_view(L, 1, UV_OUTPUT, &m->output);
			return 1;
		}
		if (strcmp(key, "grad_input") == 0) {
			push_cached_view(L, 1, UV_GRAD_INPUT, &m->grad_input);
			return 1;
		}
		if (strcmp(key, "training") == 0) {
			lua_pushboolean(L, m->training);
			return 1;
		}
		if (strcmp(key, "name") == 0) {
			lua_pushstring(L, m->cls->name);
			return 1;
		}
		for (int i = 0; i < m->nparams && m->cls->param_names[i]; i++) {
			const char *p = m->cls->param_names[i];
			if (strcmp(key, p) == 0) {
				lnL_pushparam(L, 1, i, false);
				return 1;
			}
			if (strncmp(key, "grad_", 5) == 0 && strcmp(key + 5, p) == 0) {
				lnL_pushparam(L, 1, i, true);
				return 1;
			}
		}
		for (int i = 0; i < m->nbuffers && m->cls->buffer_names[i]; i++) {
			if (strcmp(key, m->cls->buffer_names[i]) == 0) {
				lnL_pushview(L, &m->buffer[i]);
				return 1;
			}
		}
		for (int i = 0; i < m->nconfig && m->cls->config_names[i]; i++) {
			if (strcmp(key, m->cls->config_names[i]) == 0) {
				lua_pushnumber(L, m->config[i]);
				lua_Integer iv;
				if (lua_numbertointeger(m->config[i], &iv) && (double)iv == m->config[i]) {
					lua_pop(L, 1);
					lua_pushinteger(L, iv);
				}
				return 1;
			}
		}
	}
	lua_getiuservalue(L, 1, UV_FIELDS);
	lua_pushvalue(L, 2);
	lua_rawget(L, -2);
	return 1;
}

/* __newindex: scripts may store their own fields on a module; the
 * module's own tensors are changed in place (m.weight:copy(t)). */
static int module_newindex(lua_State *L)
{
	ln_module *m = check_module(L, 1, "__newindex");
	if (lua_type(L, 2) == LUA_TSTRING) {
		const char *key = lua_tostring(L, 2);
		for (int i = 0; i < m->nparams && m->cls->param_names[i]; i++)
			if (strcmp(key, m->cls->param_names[i]) == 0)
				return luaL_error(L, "%s: cannot replace '%s'; copy into it with m.%s:copy(t)",
				                  m->cls->name, key, key);
		if (strcmp(key, "output") == 0 || strcmp(key, "grad_input") == 0)
			return luaL_error(L, "%s: '%s' is read-only", m->cls->name, key);
	}
	lua_getiuservalue(L, 1, UV_FIELDS);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	lua_rawset(L, -3);
	return 0;
}

/* ---- custom modules written in Lua ------------------------------------------ */

typedef struct lua_module_ctx { int unused; } lua_module_ctx;

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
	lua_State *L = current_L;
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

/* Wraps the Lua table at idx in an external module (one new reference). */
static ln_module *wrap_lua_module(lua_State *L, int idx, const char *fname)
{
	lua_getfield(L, idx, "forward");
	lua_getfield(L, idx, "backward");
	if (!lua_isfunction(L, -2) || !lua_isfunction(L, -1))
		luaL_error(L, "%s: a custom module needs forward and backward methods", fname);
	lua_pop(L, 2);
	lua_module_ctx *ctx = ln_malloc(sizeof *ctx);
	if (!ctx)
		luaL_error(L, "%s: out of memory", fname);
	ln_module *m = NULL;
	ln_error err;
	if (ln_external_new(&m, &external_ops, ctx, &err) != LN_OK) {
		ln_free(ctx);
		luaL_error(L, "%s: %s", fname, err.msg);
	}
	/* The table stays alive through the container's children list; the
	 * weak map only lets the callbacks find it. */
	lua_getfield(L, LUA_REGISTRYINDEX, EXTERNAL_REG);
	lua_pushvalue(L, idx);
	lua_rawsetp(L, -2, ctx);
	lua_pop(L, 1);
	return m;
}

/* ---- Sequential ------------------------------------------------------------------- */

/* Adds the module or Lua table at idx to the Sequential at 1. */
static void sequential_append(lua_State *L, ln_module *seq, int idx, const char *fname)
{
	ln_error err;
	ln_module *child;
	bool wrapped = false;
	module_box *b = lnL_testmodule(L, idx);
	if (b) {
		if (!b->m)
			luaL_error(L, "%s: the %s to add is closed", fname, box_class(L, idx));
		child = b->m;
		if (child == seq)
			luaL_error(L, "%s: cannot add a Sequential to itself", fname);
	} else if (lua_istable(L, idx)) {
		child = wrap_lua_module(L, idx, fname);
		wrapped = true;
	} else {
		luaL_error(L, "%s: expected a module or a table with forward/backward, got %s", fname,
		           luaL_typename(L, idx));
		return;
	}
	ln_status st = ln_sequential_add(seq, child, &err);
	if (wrapped)
		ln_module_release(child);  /* the container holds its own reference */
	if (st != LN_OK)
		luaL_error(L, "%s: %s", fname, err.msg);
	push_children(L, 1);
	lua_pushvalue(L, idx);
	lua_seti(L, -2, luaL_len(L, -2) + 1);
	lua_pop(L, 1);
}

/* nn.Sequential([{m1, m2, ...}]) */
static int l_sequential_new(lua_State *L)
{
	int has_list = !lua_isnoneornil(L, 1);
	if (has_list)
		luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	module_box *b = new_module_box(L, &ln_sequential_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_sequential_new(&m, &err);
	module_done(L, b, m, st, &err, "nn.Sequential");
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
	ln_module *seq = check_module(L, 1, "add");
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
	ln_module *seq = check_module(L, 1, "get");
	lua_Integer i = luaL_checkinteger(L, 2);
	if (i < 1 || i > seq->nchildren)
		return luaL_error(L, "%s:get: index %I out of range 1..%d", seq->cls->name,
		                  (LUAI_UACINT)i, seq->nchildren);
	push_children(L, 1);
	lua_geti(L, -1, i);
	return 1;
}

static int module_len(lua_State *L)
{
	ln_module *m = check_module(L, 1, "__len");
	lua_pushinteger(L, m->nchildren);
	return 1;
}

/* ---- layer constructors ------------------------------------------------------------ */

/* nn.Linear(nin, nout[, {bias=true}]) */
static int l_linear(lua_State *L)
{
	int64_t nin = check_size(L, 1, "nn.Linear", "nin");
	int64_t nout = check_size(L, 2, "nn.Linear", "nout");
	check_options_table(L, 3, "nn.Linear");
	int bias = opt_boolean(L, 3, "nn.Linear", "bias", 1);
	module_box *b = new_module_box(L, &ln_linear_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_linear_new(&m, NULL, nin, nout, bias, &err);
	return module_done(L, b, m, st, &err, "nn.Linear");
}

/* Layers without arguments share one constructor; the upvalue is their
 * class. */
static const ln_module_class *const plain_layers[] = {
	&ln_softmax_class,
	&ln_log_softmax_class,
	&ln_flatten_class,
};

static int l_plain(lua_State *L)
{
	const ln_module_class *cls = lua_touserdata(L, lua_upvalueindex(1));
	luaL_argcheck(L, lua_isnone(L, 1), 1, "this layer takes no arguments");
	module_box *b = new_module_box(L, cls);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_module_create(&m, cls, NULL, NULL, &err);
	char fname[64];
	snprintf(fname, sizeof fname, "nn.%s", cls->name);
	return module_done(L, b, m, st, &err, fname);
}

/* nn.<Activation>([param]): every row of the activation table; the
 * upvalue is the row.  LeakyReLU's slope defaults to its row's. */
static int l_activation(lua_State *L)
{
	const ln_activation_def *d = lua_touserdata(L, lua_upvalueindex(1));
	double param = 0;
	if (d->cls.config_names[0])
		param = luaL_optnumber(L, 1, d->param_default);
	else
		luaL_argcheck(L, lua_isnone(L, 1), 1, "this layer takes no arguments");
	module_box *b = new_module_box(L, &d->cls);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_module_create(&m, &d->cls, NULL, &param, &err);
	char fname[64];
	snprintf(fname, sizeof fname, "nn.%s", d->cls.name);
	return module_done(L, b, m, st, &err, fname);
}

/* nn.Dropout([p=0.5]) */
static int l_dropout(lua_State *L)
{
	double p = luaL_optnumber(L, 1, 0.5);
	module_box *b = new_module_box(L, &ln_dropout_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_dropout_new(&m, p, &err);
	return module_done(L, b, m, st, &err, "nn.Dropout");
}

/* nn.Conv2d(cin, cout, k[, {stride=1, padding=0}]) */
static int l_conv2d(lua_State *L)
{
	int64_t cin = check_size(L, 1, "nn.Conv2d", "cin");
	int64_t cout = check_size(L, 2, "nn.Conv2d", "cout");
	int64_t k = check_size(L, 3, "nn.Conv2d", "kernel size");
	check_options_table(L, 4, "nn.Conv2d");
	lua_Number stride = opt_number(L, 4, "nn.Conv2d", "stride", 1);
	lua_Number padding = opt_number(L, 4, "nn.Conv2d", "padding", 0);
	if (stride < 1 || stride != (int64_t)stride)
		return luaL_error(L, "nn.Conv2d: stride must be an integer >= 1, got %s",
		                  lua_pushfstring(L, "%f", stride));
	if (padding < 0 || padding != (int64_t)padding)
		return luaL_error(L, "nn.Conv2d: padding must be an integer >= 0, got %s",
		                  lua_pushfstring(L, "%f", padding));
	module_box *b = new_module_box(L, &ln_conv2d_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_conv2d_new(&m, NULL, cin, cout, k, (int64_t)stride, (int64_t)padding, &err);
	return module_done(L, b, m, st, &err, "nn.Conv2d");
}

/* nn.MaxPool2d(k[, stride=k]) and nn.AvgPool2d(k[, stride=k]) */
static int pool(lua_State *L, const ln_module_class *cls,
                ln_status (*ctor)(ln_module **, int64_t, int64_t, ln_error *), const char *fname)
{
	int64_t k = check_size(L, 1, fname, "kernel size");
	int64_t stride = lua_isnoneornil(L, 2) ? k : check_size(L, 2, fname, "stride");
	module_box *b = new_module_box(L, cls);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ctor(&m, k, stride, &err);
	return module_done(L, b, m, st, &err, fname);
}

static int l_maxpool2d(lua_State *L)
{
	return pool(L, &ln_maxpool2d_class, ln_maxpool2d_new, "nn.MaxPool2d");
}

static int l_avgpool2d(lua_State *L)
{
	return pool(L, &ln_avgpool2d_class, ln_avgpool2d_new, "nn.AvgPool2d");
}

/* nn.BatchNorm(n) */
static int l_batchnorm(lua_State *L)
{
	int64_t n = check_size(L, 1, "nn.BatchNorm", "n");
	module_box *b = new_module_box(L, &ln_batchnorm_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_batchnorm_new(&m, NULL, n, &err);
	return module_done(L, b, m, st, &err, "nn.BatchNorm");
}

/* ---- nn.init ----------------------------------------------------------------------- */

static int l_init_xavier(lua_State *L)
{
	ln_tensor *t = lnL_checktensor(L, 1);
	ln_error err;
	if (ln_init_xavier(t, ln_rng_global(), &err) != LN_OK)
		return lnL_error(L, "nn.init.xavier", &err);
	lua_settop(L, 1);
	return 1;
}

static int l_init_he(lua_State *L)
{
	ln_tensor *t = lnL_checktensor(L, 1);
	ln_error err;
	if (ln_init_he(t, ln_rng_global(), &err) != LN_OK)
		return lnL_error(L, "nn.init.he", &err);
	lua_settop(L, 1);
	return 1;
}

static int l_init_uniform(lua_State *L)
{
	ln_tensor *t = lnL_checktensor(L, 1);
	double a = luaL_checknumber(L, 2), b = luaL_checknumber(L, 3);
	if (!(a <= b))
		return luaL_error(L, "nn.init.uniform: expected a <= b, got %f and %f", a, b);
	ln_error err;
	if (ln_init_uniform(t, ln_rng_global(), a, b, &err) != LN_OK)
		return lnL_error(L, "nn.init.uniform", &err);
	lua_settop(L, 1);
	return 1;
}

static int l_init_normal(lua_State *L)
{
	ln_tensor *t = lnL_checktensor(L, 1);
	double mean = luaL_checknumber(L, 2), std = luaL_checknumber(L, 3);
	if (!(std >= 0))
		return luaL_error(L, "nn.init.normal: std must be >= 0, got %f", std);
	ln_error err;
	if (ln_init_normal(t, ln_rng_global(), mean, std, &err) != LN_OK)
		return lnL_error(L, "nn.init.normal", &err);
	lua_settop(L, 1);
	return 1;
}

/* ---- losses -------------------------------------------------------------------------- */

static loss_box *test_loss(lua_State *L, int idx)
{
	if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
		return NULL;
	int marked = lua_getfield(L, -1, LOSS_MARK) != LUA_TNIL;
	lua_pop(L, 2);
	return marked ? lua_touserdata(L, idx) : NULL;
}

static ln_loss *check_loss(lua_State *L, int idx)
{
	loss_box *b = test_loss(L, idx);
	if (!b)
		luaL_typeerror(L, idx, "lunet loss");
	if (!b->c)
		luaL_error(L, "loss is closed");
	return b->c;
}

static int loss_gc(lua_State *L)
{
	loss_box *b = lua_touserdata(L, 1);
	if (b && b->c) {
		ln_loss_release(b->c);
		b->c = NULL;
	}
	return 0;
}

static ln_reduction check_reduction(lua_State *L, int opts, const char *fname)
{
	check_options_table(L, opts, fname);
	if (lua_isnoneornil(L, opts))
		return LN_REDUCE_MEAN;
	lua_getfield(L, opts, "reduction");
	const char *r = lua_tostring(L, -1);
	ln_reduction red = LN_REDUCE_MEAN;
	if (r == NULL || strcmp(r, "mean") == 0)
		red = LN_REDUCE_MEAN;
	else if (strcmp(r, "sum") == 0)
		red = LN_REDUCE_SUM;
	else
		luaL_error(L, "%s: reduction must be \"mean\" or \"sum\", got \"%s\"", fname, r);
	lua_pop(L, 1);
	return red;
}

static loss_box *new_loss_box(lua_State *L, const char *name)
{
	loss_box *b = lua_newuserdatauv(L, sizeof *b, LUV_COUNT);
	b->c = NULL;
	char mt[64];
	snprintf(mt, sizeof mt, MODULE_MT_PREFIX "%s", name);
	luaL_setmetatable(L, mt);
	return b;
}

/* The losses built from a reduction alone; the upvalue of their shared
 * constructor points at their entry. */
typedef struct plain_loss {
	const char *name;
	ln_status (*create)(ln_loss **out, ln_reduction r, ln_error *err);
} plain_loss;

static const plain_loss plain_losses[] = {
	{"MSELoss", ln_mse_loss_new},
	{"BCELoss", ln_bce_loss_new},
	{"BCEWithLogitsLoss", ln_bce_logits_loss_new},
	{"CrossEntropyLoss", ln_cross_entropy_loss_new},
	{"NLLLoss", ln_nll_loss_new},
};

/* nn.MSELoss([{reduction="mean"|"sum"}]) and the others above. */
static int l_plain_loss(lua_State *L)
{
	const plain_loss *pl = lua_touserdata(L, lua_upvalueindex(1));
	char fname[64];
	snprintf(fname, sizeof fname, "nn.%s", pl->name);
	ln_reduction red = check_reduction(L, 1, fname);
	loss_box *b = new_loss_box(L, pl->name);
	ln_error err;
	if (pl->create(&b->c, red, &err) != LN_OK)
		return lnL_error(L, fname, &err);
	return 1;
}

/* nn.OutputLoss(activation, loss[, {reduction=}]) */
static int l_output_loss(lua_State *L)
{
	const char *an = luaL_checkstring(L, 1);
	const char *kn = luaL_checkstring(L, 2);
	ln_reduction red = check_reduction(L, 3, "nn.OutputLoss");
	loss_box *b = new_loss_box(L, "OutputLoss");
	ln_error err;
	if (ln_output_loss_new_by_name(&b->c, an, kn, red, &err) != LN_OK)
		return lnL_error(L, "nn.OutputLoss", &err);
	return 1;
}

/* Warns once when the input of a loss comes straight from a layer that
 * already applies what the loss applies itself. */
static void check_pairing(lua_State *L, const ln_loss *c, const ln_tensor *input)
{
	if (!last_output.cls || input->storage != last_output.storage)
		return;
	const char *layer = last_output.cls->name;
	const char *loss = c->cls->name;
	char msg[400];
	bool softmax_layer = strcmp(layer, "Softmax") == 0 || strcmp(layer, "LogSoftmax") == 0;
	if (strcmp(loss, "CrossEntropyLoss") == 0 && softmax_layer) {
		snprintf(msg, sizeof msg,
		         "CrossEntropyLoss takes logits, but its input comes from a %s layer, so softmax "
		         "is applied twice; remove the final %s (or use NLLLoss after LogSoftmax)",
		         layer, layer);
	} else if (strcmp(loss, "BCEWithLogitsLoss") == 0 && strcmp(layer, "Sigmoid") == 0) {
		snprintf(msg, sizeof msg,
		         "BCEWithLogitsLoss takes logits, but its input comes from a Sigmoid layer, so "
		         "sigmoid is applied twice; remove the final Sigmoid (or use BCELoss after it)");
	} else if (strcmp(loss, "NLLLoss") == 0 && strcmp(layer, "Softmax") == 0) {
		snprintf(msg, sizeof msg,
		         "NLLLoss takes log-probabilities, but its input comes from a Softmax layer; "
		         "use LogSoftmax instead (or CrossEntropyLoss on the logits)");
	} else if (strcmp(loss, "OutputLoss") == 0 && (softmax_layer || strcmp(layer, "Sigmoid") == 0)) {
		ln_activation act = ln_output_loss_activation(c);
		if (act != (softmax_layer ? LN_ACT_SOFTMAX : LN_ACT_SIGMOID))
			return;
		char desc[128];
		ln_loss_describe(c, desc, sizeof desc);
		snprintf(msg, sizeof msg,
		         "%s takes the pre-activation z, but its input comes from a %s layer, so the "
		         "activation is applied twice; remove the final %s",
		         desc, layer, layer);
	} else {
		return;
	}
	char key[128];
	snprintf(key, sizeof key, "pairing:%s:%s", layer, loss);
	lnL_warn_once(L, key, msg);
}

/* c:forward(input, target) -> number */
static int loss_forward(lua_State *L)
{
	ln_loss *c = check_loss(L, 1);
	ln_tensor *x = lnL_checktensor(L, 2);
	const ln_tensor *xc = contiguous_arg(L, x, c->cls->name, "forward");
	const ln_tensor *yc = target_arg(L, 3, c->cls->name, "forward");
	check_pairing(L, c, x);
	double loss;
	ln_error err;
	if (ln_loss_forward_unprefixed(c, xc, yc, &loss, &err) != LN_OK)
		return raise_loss(L, c, "forward", &err);
	lua_pushnumber(L, loss);
	return 1;
}

/* c:backward(input, target) -> dL/dinput (the loss's buffer, reused; the
 * same userdata while the buffer keeps its shape). */
static int loss_backward(lua_State *L)
{
	ln_loss *c = check_loss(L, 1);
	ln_tensor *x = lnL_checktensor(L, 2);
	const ln_tensor *xc = contiguous_arg(L, x, c->cls->name, "backward");
	const ln_tensor *yc = target_arg(L, 3, c->cls->name, "backward");
	ln_error err;
	if (ln_loss_backward_unprefixed(c, xc, yc, &err) != LN_OK)
		return raise_loss(L, c, "backward", &err);
	push_cached_view(L, 1, LUV_GRAD_INPUT, &c->grad_input);
	return 1;
}

static int loss_tostring(lua_State *L)
{
	ln_loss *c = check_loss(L, 1);
	char buf[160];
	ln_loss_describe(c, buf, sizeof buf);
	lua_pushstring(L, buf);
	return 1;
}

static int loss_index(lua_State *L)
{
	/* methods first: c:forward(y, t) looks its method up on every call */
	lua_pushvalue(L, 2);
	if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	ln_loss *c = check_loss(L, 1);
	const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
	if (!key)
		return 0;
	if (strcmp(key, "output") == 0) {
		push_cached_view(L, 1, LUV_OUTPUT, &c->output);
	} else if (strcmp(key, "grad_input") == 0) {
		push_cached_view(L, 1, LUV_GRAD_INPUT, &c->grad_input);
	} else if (strcmp(key, "canonical") == 0) {
		if (strcmp(c->cls->name, "OutputLoss") == 0)
			lua_pushboolean(L, ln_output_loss_is_canonical(c));
		else
			lua_pushnil(L);
	} else if (strcmp(key, "reduction") == 0) {
		lua_pushstring(L, c->reduction == LN_REDUCE_SUM ? "sum" : "mean");
	} else if (strcmp(key, "name") == 0) {
		lua_pushstring(L, c->cls->name);
	} else {
		lua_pushnil(L);
	}
	return 1;
}

/* ---- registration ---------------------------------------------------------------------- */

static const luaL_Reg module_methods[] = {
	{"forward", module_forward},
	{"backward", module_backward},
	{"parameters", module_parameters},
	{"zero_grad", module_zero_grad},
	{"train", module_train},
	{"evaluate", module_evaluate},
	{"add", sequential_add},
	{"get", sequential_get},
	{NULL, NULL},
};

static const luaL_Reg loss_methods[] = {
	{"forward", loss_forward},
	{"backward", loss_backward},
	{NULL, NULL},
};

/* One metatable per module class, all sharing the methods table at
 * methods_idx (exposed as nn._module_methods so that the pure-Lua part can
 * add methods such as trace). */
static void register_module_class(lua_State *L, const char *name, int methods_idx)
{
	char mt[64];
	snprintf(mt, sizeof mt, MODULE_MT_PREFIX "%s", name);
	luaL_newmetatable(L, mt);
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, MODULE_MARK);
	lua_pushvalue(L, methods_idx);
	lua_pushcclosure(L, module_index, 1);
	lua_setfield(L, -2, "__index");
	static const luaL_Reg meta[] = {
		{"__newindex", module_newindex},
		{"__gc", module_gc},
		{"__close", module_gc},
		{"__tostring", module_tostring},
		{"__len", module_len},
		{NULL, NULL},
	};
	luaL_setfuncs(L, meta, 0);
	lua_pop(L, 1);
}

static void register_loss_class(lua_State *L, const char *name, int methods_idx)
{
	char mt[64];
	snprintf(mt, sizeof mt, MODULE_MT_PREFIX "%s", name);
	luaL_newmetatable(L, mt);
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, LOSS_MARK);
	lua_pushvalue(L, methods_idx);
	lua_pushcclosure(L, loss_index, 1);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, loss_gc);
	lua_setfield(L, -2, "__gc");
	lua_pushcfunction(L, loss_gc);
	lua_setfield(L, -2, "__close");
	lua_pushcfunction(L, loss_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
}

/* nn.is_module(v) -> boolean */
static int l_is_module(lua_State *L)
{
	lua_pushboolean(L, lnL_testmodule(L, 1) != NULL);
	return 1;
}

/* nn.is_loss(v) -> boolean */
static int l_is_loss(lua_State *L)
{
	lua_pushboolean(L, test_loss(L, 1) != NULL);
	return 1;
}


void lnL_open_nn(lua_State *L)
{
	int lunet = lua_gettop(L);
	lua_newtable(L);
	int nn = lua_gettop(L);

	/* weak map from external-module contexts to their Lua tables */
	lua_newtable(L);
	lua_newtable(L);
	lua_pushliteral(L, "v");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	lua_setfield(L, LUA_REGISTRYINDEX, EXTERNAL_REG);

	luaL_newlib(L, module_methods);
	int methods = lua_gettop(L);
	lua_pushvalue(L, methods);
	lua_setfield(L, nn, "_module_methods");
	for (int i = 0, n = ln_module_class_count(); i < n; i++)
		register_module_class(L, ln_module_class_at(i)->name, methods);

	luaL_newlib(L, loss_methods);
	int lmethods = lua_gettop(L);
	lua_pushvalue(L, lmethods);
	lua_setfield(L, nn, "_loss_methods");

	static const luaL_Reg ctors[] = {
		{"Linear", l_linear},
		{"Dropout", l_dropout},
		{"Sequential", l_sequential_new},
		{"Conv2d", l_conv2d},
		{"MaxPool2d", l_maxpool2d},
		{"AvgPool2d", l_avgpool2d},
		{"BatchNorm", l_batchnorm},
		{"OutputLoss", l_output_loss},
		{"is_module", l_is_module},
		{"is_loss", l_is_loss},
		{NULL, NULL},
	};
	lua_pushvalue(L, nn);
	luaL_setfuncs(L, ctors, 0);
	lua_pop(L, 1);
	/* familiar aliases: BatchNorm works on {N,C} and {N,C,H,W} */
	lua_getfield(L, nn, "BatchNorm");
	lua_setfield(L, nn, "BatchNorm1d");
	lua_getfield(L, nn, "BatchNorm");
	lua_setfield(L, nn, "BatchNorm2d");

	for (size_t i = 0; i < sizeof plain_layers / sizeof plain_layers[0]; i++) {
		lua_pushlightuserdata(L, (void *)plain_layers[i]);
		lua_pushcclosure(L, l_plain, 1);
		lua_setfield(L, nn, plain_layers[i]->name);
	}
	int nact;
	const ln_activation_def *act = ln_activation_defs(&nact);
	for (int i = 0; i < nact; i++) {
		lua_pushlightuserdata(L, (void *)&act[i]);
		lua_pushcclosure(L, l_activation, 1);
		lua_setfield(L, nn, act[i].cls.name);
	}
	for (size_t i = 0; i < sizeof plain_losses / sizeof plain_losses[0]; i++) {
		register_loss_class(L, plain_losses[i].name, lmethods);
		lua_pushlightuserdata(L, (void *)&plain_losses[i]);
		lua_pushcclosure(L, l_plain_loss, 1);
		lua_setfield(L, nn, plain_losses[i].name);
	}
	register_loss_class(L, "OutputLoss", lmethods);

	static const luaL_Reg init[] = {
		{"xavier", l_init_xavier},
		{"he", l_init_he},
		{"uniform", l_init_uniform},
		{"normal", l_init_normal},
		{NULL, NULL},
	};
	luaL_newlib(L, init);
	lua_setfield(L, nn, "init");

	lua_settop(L, nn);
	lua_setfield(L, lunet, "nn");
}
