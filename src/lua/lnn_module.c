/*
 * lnn_module.c -- the Lua binding of modules (lunet.nn): the module
 * userdata and its methods, the layer constructors, nn.init, and
 * lnL_open_nn, which also registers the containers (lnn_container.c) and
 * the losses (lnn_loss.c).  The layout of a module userdata is in lnn.h.
 *
 * forward/backward of built-in modules, Sequential included, run entirely
 * in C; custom modules written in Lua inside a container call back into
 * Lua on the thread of the call (lnn_state.running).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lnaux.h"
#include "lnn.h"
#include "nn/conv.h"
#include "nn/graph.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/sequence.h"

#define MODULE_MARK "__lunet_module"
#define STATE_REG "lunet.nn.state"
#define NN_REG "lunet.nn.table"  /* the nn table, for lnL_pushwhat */

static int l_plain(lua_State *L);
static int l_activation(lua_State *L);
static int l_softmax(lua_State *L);

/* ---- arguments ---------------------------------------------------------------- */

/* A size argument: an integer >= 1. */
static int64_t check_size(lua_State *L, int arg, const char *fname, const char *what)
{
	if (!lua_isinteger(L, arg)) {
		char num[64];
		if (lua_type(L, arg) == LUA_TNUMBER)
			luaL_error(L, "%s: %s must be an integer, got %s", fname, what,
			           lnL_numstr(num, sizeof num, L, arg));
		luaL_error(L, "%s: %s must be an integer, got %s", fname, what, luaL_typename(L, arg));
	}
	lua_Integer v = lua_tointeger(L, arg);
	if (v < 1)
		luaL_error(L, "%s: %s must be >= 1, got %I", fname, what, (LUAI_UACINT)v);
	return (int64_t)v;
}

/* An option that must hold an integer >= lo: "fname: stride must be an
 * integer >= 1, got 0". */
static int64_t opt_int(lua_State *L, int opts, const char *fname, const char *key, int64_t def,
                       int64_t lo)
{
	lua_Number v = lnL_optnumber(L, opts, key, (lua_Number)def);
	if (!(v >= (lua_Number)lo && v <= 9.2e18) || v != floor(v))  /* then the cast is defined */
		luaL_error(L, "%s: %s must be an integer >= %d, got %s", fname, key, (int)lo,
		           isnan(v) ? "nan" : lua_pushfstring(L, "%f", v));
	return (int64_t)v;
}

/* Pushes "{3, 1.5, x}": the first entries of the table at idx, for a
 * message, and returns it. */
static const char *show_list(lua_State *L, int idx)
{
	luaL_Buffer b;
	lua_Integer n = luaL_len(L, idx);
	luaL_buffinit(L, &b);
	luaL_addchar(&b, '{');
	for (lua_Integer i = 1; i <= n && i <= 4; i++) {
		if (i > 1)
			luaL_addstring(&b, ", ");
		lua_geti(L, idx, i);
		luaL_tolstring(L, -1, NULL);
		lua_remove(L, -2);
		luaL_addvalue(&b);
	}
	luaL_addstring(&b, n > 4 ? ", ...}" : "}");
	luaL_pushresult(&b);
	return lua_tostring(L, -1);
}

/* The value at idx as a pair of integers >= lo: a number n (n along both
 * axes) or a table {h, w}.  Raises "fname: what must be an integer >= lo,
 * got 0", "... must be a table {h, w} of integers >= lo, got {3}" or
 * "... must be an integer >= lo or a table {h, w} of them, got string". */
static void check_pair(lua_State *L, int idx, const char *fname, const char *what, int64_t lo,
                       int64_t out[2])
{
	idx = lua_absindex(L, idx);
	if (lua_type(L, idx) == LUA_TNUMBER) {
		lua_Number v = lua_tonumber(L, idx);
		if (!(v >= (lua_Number)lo && v <= 9.2e18) || v != floor(v))  /* then the cast is defined */
			luaL_error(L, "%s: %s must be an integer >= %d, got %s", fname, what, (int)lo,
			           lua_tostring(L, idx));
		out[0] = out[1] = (int64_t)v;
		return;
	}
	if (lua_type(L, idx) != LUA_TTABLE)
		luaL_error(L, "%s: %s must be an integer >= %d or a table {h, w} of them, got %s", fname,
		           what, (int)lo, luaL_typename(L, idx));
	bool ok = luaL_len(L, idx) == 2;
	for (int i = 0; ok && i < 2; i++) {
		lua_geti(L, idx, i + 1);
		lua_Number v = lua_tonumber(L, -1);
		ok = lua_type(L, -1) == LUA_TNUMBER && v >= (lua_Number)lo && v <= 9.2e18 && v == floor(v);
		out[i] = ok ? (int64_t)v : 0;
		lua_pop(L, 1);
	}
	if (!ok)
		luaL_error(L, "%s: %s must be a table {h, w} of integers >= %d, got %s", fname, what,
		           (int)lo, show_list(L, idx));
}

/* Option key of the options table at opts as a pair (check_pair); def
 * when absent. */
static void opt_pair(lua_State *L, int opts, const char *fname, const char *key, int64_t def,
                     int64_t lo, int64_t out[2])
{
	out[0] = out[1] = def;
	if (!lua_istable(L, opts))
		return;
	if (lua_getfield(L, opts, key) != LUA_TNIL)
		check_pair(L, -1, fname, key, lo, out);
	lua_pop(L, 1);
}

/* ---- module userdata ---------------------------------------------------------- */

lnL_module_box *lnL_testmodule(lua_State *L, int idx)
{
	return lnL_testmarked(L, idx, MODULE_MARK);
}

const char *lnn_box_class(lua_State *L, int idx)
{
	const char *name = "module";
	int t = luaL_getmetafield(L, idx, "__name");
	if (t == LUA_TSTRING) {
		name = lua_tostring(L, -1);  /* kept alive by the metatable */
		if (strncmp(name, LNN_MT_PREFIX, strlen(LNN_MT_PREFIX)) == 0)
			name += strlen(LNN_MT_PREFIX);
	}
	if (t != LUA_TNIL)
		lua_pop(L, 1);
	return name;
}

/* The arguments a method is shown with in the hint below. */
static const char *method_args(const char *kind, const char *method)
{
	bool loss = strcmp(kind, "loss") == 0;
	if (strcmp(method, "forward") == 0)
		return loss ? "x, y" : "x";
	if (strcmp(method, "backward") == 0)
		return loss ? "x, y" : "x, gy";
	if (strcmp(method, "summary") == 0)
		return "shape";
	return "";
}

int lnL_selferror(lua_State *L, const char *kind, const char *method)
{
	const char *got = lua_isnone(L, 1) ? "no value" : lnL_tname(L, 1);
	const char *v = strcmp(kind, "loss") == 0 ? "c" : strcmp(kind, "optimizer") == 0 ? "opt" : "m";
	const char *args = method_args(kind, method);
	return luaL_error(L, "%s:%s: got %s instead of the %s: call methods with a colon, "
	                  "%s:%s(%s), not %s.%s(%s)", kind, method, got, kind, v, method, args, v,
	                  method, args);
}

const char *lnL_pushwhat(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	if (lua_type(L, idx) == LUA_TFUNCTION &&
	    lua_getfield(L, LUA_REGISTRYINDEX, NN_REG) == LUA_TTABLE) {
		int nn = lua_gettop(L);
		lua_pushnil(L);
		while (lua_next(L, nn)) {
			if (lua_rawequal(L, -1, idx) && lua_type(L, -2) == LUA_TSTRING) {
				lua_CFunction f = lua_tocfunction(L, idx);
				bool no_args = f == l_plain || f == l_activation || f == l_softmax;
				const char *name = lua_tostring(L, -2);
				lua_pushfstring(L, "nn.%s, the constructor, where a module belongs: call "
				                "it, nn.%s(%s)", name, name, no_args ? "" : "...");
				lua_replace(L, nn);
				lua_settop(L, nn);
				return lua_tostring(L, -1);
			}
			lua_pop(L, 1);
		}
		lua_settop(L, nn - 1);
	}
	return lua_pushstring(L, lnL_tname(L, idx));
}

ln_module *lnn_check_module(lua_State *L, int idx, const char *method)
{
	module_box *b = lnL_testmodule(L, idx);
	if (!b && idx == 1)
		lnL_selferror(L, "module", method);
	if (!b)
		luaL_error(L, "module:%s: expected a lunet module as argument %d, got %s", method, idx,
		           luaL_typename(L, idx));
	if (!b->m)
		luaL_error(L, "%s:%s: module is closed", lnn_box_class(L, idx), method);
	return b->m;
}

module_box *lnn_new_module_box(lua_State *L, const ln_module_class *cls)
{
	module_box *b = lua_newuserdatauv(L, sizeof *b, UV_COUNT);
	b->m = NULL;
	char mt[64];
	snprintf(mt, sizeof mt, LNN_MT_PREFIX "%s", cls->name);
	luaL_setmetatable(L, mt);
	lua_newtable(L);
	lua_setiuservalue(L, -2, UV_FIELDS);
	return b;
}

void lnL_pushmodule(lua_State *L, ln_module *m)
{
	char mt[64];
	snprintf(mt, sizeof mt, LNN_MT_PREFIX "%s", m->cls->name);
	if (luaL_getmetatable(L, mt) != LUA_TTABLE)
		luaL_error(L, "no Lua binding for module class %s", m->cls->name);
	lua_pop(L, 1);
	module_box *b = lnn_new_module_box(L, m->cls);
	ln_module_retain(m);
	b->m = m;
}

int lnn_module_done(lua_State *L, module_box *b, ln_module *m, ln_status st, const ln_error *err,
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

/* When the buffer was reallocated (new batch shape), or the script closed
 * or reshaped the view it was given, a new view replaces the kept one: a
 * training loop creates no userdata (and no garbage) per step. */
void lnn_push_cached_view(lua_State *L, int idx, int slot, const ln_tensor *t)
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

/* The name is only formatted on failure: the common, contiguous case
 * costs one check. */
const ln_tensor *lnn_contiguous_arg(lua_State *L, const ln_tensor *t, const char *cls,
                                    const char *method)
{
	if (ln_tensor_is_contiguous(t))
		return t;
	char where[96];
	int pushed;
	snprintf(where, sizeof where, "%s:%s", cls, method);
	return lnL_contiguous(L, t, where, &pushed);
}

void lnn_push_children(lua_State *L, int idx)
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

/* ---- forward and backward ------------------------------------------------------- */

/*
 * forward/backward may call back into Lua (custom modules in a
 * Sequential), and a callback may close the very module being run, or run
 * modules on another coroutine.  enter_callbacks takes a reference to m for
 * the length of the call, so that m outlives a close from inside, and makes
 * L the thread that callbacks run on; it returns the thread that was
 * running before, for leave_callbacks to restore (a nested call from
 * inside a coroutine must not leave the callbacks of the outer call on a
 * coroutine that may be suspended or collected).
 */
static lua_State *enter_callbacks(lnn_state *S, lua_State *L, ln_module *m)
{
	lua_State *outer = S->running;
	S->running = L;
	ln_module_retain(m);
	return outer;
}

/* Ends what enter_callbacks began: restores the thread and drops the
 * reference.  Returns true when the call succeeded and m is still open
 * (the box at index 1 still holds it, so m stays alive); else false with
 * *err describing the failure, and m must no longer be touched. */
static bool leave_callbacks(lnn_state *S, lua_State *L, ln_module *m, lua_State *outer,
                            ln_status *st, ln_error *err, const char *method)
{
	S->running = outer;
	module_box *b = lua_touserdata(L, 1);
	bool open = b->m == m;
	ln_module_release(m);
	if (*st == LN_OK && !open)
		*st = ln_fail(err, LN_ESTATE, "the module was closed during its own %s", method);
	return *st == LN_OK;
}

/* The class that produced m's output: the last leaf of nested
 * Sequentials, the module at a Graph's first output node. */
static const ln_module_class *output_class(const ln_module *m)
{
	for (;;) {
		if (m->cls == &ln_sequential_class && m->nchildren > 0) {
			m = m->children[m->nchildren - 1];
		} else if (m->cls == &ln_graph_class && ln_graph_nnodes(m) > 0) {
			ln_graph_node_desc d = ln_graph_node(m, ln_graph_output_node(m, 0));
			if (!d.m)
				return m->cls;
			m = d.m;
		} else {
			return m->cls;
		}
	}
}

/* Pushes a table of views of the n tensors at(m, i), kept in the user
 * value `slot` of the module at idx and handed out again while its views
 * still describe those tensors (so that a loop over a module with several
 * inputs or outputs makes no garbage). */
static void push_views(lua_State *L, int idx, int slot, ln_module *m, int n,
                       const ln_tensor *(*at)(const ln_module *, int))
{
	if (lua_getiuservalue(L, idx, slot) != LUA_TTABLE || luaL_len(L, -1) != n) {
		lua_pop(L, 1);
		lua_createtable(L, n, 0);
		lua_pushvalue(L, -1);
		lua_setiuservalue(L, idx, slot);
	}
	int t = lua_gettop(L);
	for (int i = 0; i < n; i++) {
		const ln_tensor *want = at(m, i);
		lua_geti(L, t, i + 1);
		ln_tensor *v = lnL_testtensor(L, -1);
		bool keep = v && same_view(v, want);
		lua_pop(L, 1);
		if (keep)
			continue;
		lnL_pushview(L, want);
		lua_seti(L, t, i + 1);
	}
}

static const ln_tensor *graph_output_at(const ln_module *m, int i) { return ln_graph_output(m, i); }

/* m.output: a tensor, or for a Graph with several outputs a table of them. */
static void push_output(lua_State *L, int idx, ln_module *m)
{
	if (m->cls == &ln_graph_class && ln_graph_noutputs(m) > 1 && !ln_tensor_is_empty(&m->output))
		push_views(L, idx, UV_OUTPUTS, m, ln_graph_noutputs(m), graph_output_at);
	else
		lnn_push_cached_view(L, idx, UV_OUTPUT, &m->output);
}

/* dL/dx of the last backward: a tensor, or for a module that took several
 * inputs a table of them. */
static void push_gx(lua_State *L, int idx, ln_module *m)
{
	if (ln_module_is_multi(m) && m->ninputs > 1)
		push_views(L, idx, UV_GRAD_INPUTS, m, m->ninputs, ln_module_grad_input_at);
	else
		lnn_push_cached_view(L, idx, UV_GRAD_INPUT, &m->grad_input);
}

/* The tensor or, when `several` may be given, table of tensors at arg as
 * n input pointers (contiguous: copies are pushed onto the stack where
 * needed), in xs (room for `room`) or in a scratch userdata pushed onto
 * the stack.  Errors name "cls:method" and the position. */
static const ln_tensor **check_tensors(lua_State *L, int arg, const char *cls, const char *method,
                                       const char *what, bool several, const ln_tensor **xs,
                                       int room, int *n)
{
	ln_tensor *t = lnL_testtensor(L, arg);
	if (t || !several) {  /* one tensor: "expected the input as a lunet.Tensor" otherwise */
		char the[32];
		snprintf(the, sizeof the, "the %s", what);
		xs[0] = lnn_contiguous_arg(L, lnL_checkargtensor(L, arg, cls, method, the), cls, method);
		*n = 1;
		return xs;
	}
	if (!lua_istable(L, arg) || lnL_testmodule(L, arg))
		luaL_error(L, "%s:%s: expected the %s as a lunet.Tensor or a table of them, got %s",
		           cls, method, what, lnL_pushwhat(L, arg));
	lua_Integer len = luaL_len(L, arg);
	if (len < 1 || len > 1 << 20)
		luaL_error(L, "%s:%s: expected a table of 1 to %d tensors, got %I", cls, method, 1 << 20,
		           (LUAI_UACINT)len);
	if (len > room)
		xs = lua_newuserdatauv(L, (size_t)len * sizeof *xs, 0);
	for (lua_Integer i = 1; i <= len; i++) {
		lua_geti(L, arg, i);
		ln_tensor *e = lnL_testtensor(L, -1);
		if (!e)
			luaL_error(L, "%s:%s: %s %I: expected a tensor, got %s", cls, method, what,
			           (LUAI_UACINT)i, lnL_pushwhat(L, -1));
		lnL_checktensor(L, -1);  /* a closed one raises */
		int top = lua_gettop(L);
		xs[i - 1] = lnn_contiguous_arg(L, e, cls, method);
		if (lua_gettop(L) == top)
			lua_pop(L, 1);  /* no copy: the table keeps the tensor */
	}
	*n = (int)len;
	return xs;
}

/* m:forward(x), also m(x) -> output (the module's buffer, reused by the
 * next call; the same userdata while the buffer keeps its shape).  x is a
 * tensor, or a table of tensors for a module taking several; a Graph with
 * several outputs returns a table of them.  Called on nodes (m(h1, h2)),
 * it makes a node instead (lnn_graph.c). */
static int module_forward(lua_State *L)
{
	if (lnn_is_node(L, 2))
		return lnn_node_call(L);
	lnn_state *S = LNN_STATE(L);
	ln_module *m = lnn_check_module(L, 1, "forward");
	const char *cls = m->cls->name;  /* static: outlives m */
	const ln_tensor *room[16];
	int n;
	const ln_tensor **xs = check_tensors(L, 2, cls, "forward", "input", m->arity != 1, room, 16, &n);
	ln_error err;
	lua_State *outer = enter_callbacks(S, L, m);
	ln_status st = m->cls == &ln_graph_class ? ln_graph_forward(m, n, xs, &err)
	                                         : ln_module_forward_multi_unprefixed(m, n, xs, &err);
	if (!leave_callbacks(S, L, m, outer, &st, &err, "forward"))
		return lnL_raisef(L, "%s:forward: %s", cls, err.msg);
	S->last_storage = m->output.storage;
	S->last_cls = output_class(m);
	push_output(L, 1, m);
	return 1;
}

/* m:backward(x, gy) -> grad_input, or nil when it was not computed
 * (input_grad false); adds into the parameter gradients.  x as for
 * forward; gy a table of gradients for a Graph with several outputs; the
 * result a table for a module that took several inputs. */
static int module_backward(lua_State *L)
{
	lnn_state *S = LNN_STATE(L);
	ln_module *m = lnn_check_module(L, 1, "backward");
	const char *cls = m->cls->name;  /* static: outlives m */
	const ln_tensor *room[16], *gyroom[16];
	int n, ng;
	const ln_tensor **xs = check_tensors(L, 2, cls, "backward", "input", m->arity != 1, room, 16, &n);
	bool several = m->cls == &ln_graph_class && ln_graph_noutputs(m) > 1;
	const ln_tensor **gys = check_tensors(L, 3, cls, "backward", "gradient", several, gyroom, 16,
	                                      &ng);
	if (several && !lua_istable(L, 3))
		return luaL_error(L, "%s:backward: expected a table of %d gradients (one per output), "
		                  "got a tensor", cls, ln_graph_noutputs(m));
	ln_error err;
	lua_State *outer = enter_callbacks(S, L, m);
	ln_status st = m->cls == &ln_graph_class
	             ? ln_graph_backward(m, n, xs, ng, gys, &err)
	             : ln_module_backward_multi_unprefixed(m, n, xs, gys[0], &err);
	if (!leave_callbacks(S, L, m, outer, &st, &err, "backward"))
		return lnL_raisef(L, "%s:backward: %s", cls, err.msg);
	if (m->gx_skipped)
		lua_pushnil(L);
	else
		push_gx(L, 1, m);
	return 1;
}

/* m.grad_input: the last backward's dL/dx, or an error saying why there
 * is none when that backward left it out (module.h, "input gradients"). */
static int push_grad_input(lua_State *L, ln_module *m)
{
	if (!m->gx_skipped) {
		push_gx(L, 1, m);
		return 1;
	}
	if (!m->input_grad)
		return luaL_error(L, "%s: grad_input was not computed by the last backward: this "
		                  "module's input_grad is false (set m.input_grad = true to compute it)",
		                  m->cls->name);
	return luaL_error(L, "%s: grad_input was not computed by the last backward: nobody needed "
	                  "it (it would flow into a container's input whose input_grad is false, "
	                  "or into a layer with input_grad = false)",
	                  m->cls->name);
}

/* ---- the tree: parameters, buffers, modes --------------------------------------- */

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

/* Pushes the children list of the module at idx and returns its index,
 * or returns 0 (nothing pushed) when it has none. */
static int children_of(lua_State *L, int idx)
{
	int top = lua_gettop(L);
	if (lua_getiuservalue(L, idx, UV_FIELDS) == LUA_TTABLE &&
	    lua_getfield(L, -1, "children") == LUA_TTABLE) {
		lua_remove(L, -2);
		return lua_gettop(L);
	}
	lua_settop(L, top);
	return 0;
}

/* m:parameters() -> {params...}, {grads...}: views sharing the module's
 * memory, layer by layer, weight before bias.  A container asks each child
 * (built-in or a Lua table with its own parameters method). */
static int module_parameters(lua_State *L)
{
	ln_module *m = lnn_check_module(L, 1, "parameters");
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
	int children = children_of(L, 1);
	for (lua_Integer i = 1; children && i <= luaL_len(L, children); i++) {
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
	lua_settop(L, grads + 2);
	append_all(L, params, grads + 1);
	append_all(L, grads, grads + 2);
	lua_settop(L, grads);
	return 2;
}

/* m:buffers() -> {name = tensor}: the state a module saves but does not
 * train (BatchNorm's running statistics), named as its class names them
 * (ln_module_class.buffer_names); a container's are those of its layers,
 * named by position: "2.running_mean", "3.1.running_var".  Views share
 * the module's memory.  A Lua child contributes its buffers method's. */
static int module_buffers(lua_State *L)
{
	ln_module *m = lnn_check_module(L, 1, "buffers");
	lua_settop(L, 1);
	lua_newtable(L);
	int result = lua_gettop(L);
	for (int i = 0; i < m->nbuffers; i++) {
		lnL_pushview(L, &m->buffer[i]);
		lua_setfield(L, result, m->cls->buffer_names[i]);
	}
	int children = children_of(L, 1);
	for (lua_Integer i = 1; children && i <= luaL_len(L, children); i++) {
		lua_geti(L, children, i);
		if (lua_getfield(L, -1, "buffers") != LUA_TFUNCTION) {
			lua_pop(L, 2);
			continue;
		}
		lua_insert(L, -2);
		lua_call(L, 1, 1);
		int sub = lua_gettop(L);
		if (lua_istable(L, sub)) {
			lua_pushnil(L);
			while (lua_next(L, sub)) {
				if (lua_type(L, -2) == LUA_TSTRING) {
					lua_pushfstring(L, "%I.%s", (LUAI_UACINT)i, lua_tostring(L, -2));
					lua_insert(L, -2);
					lua_settable(L, result);
				} else {
					lua_pop(L, 1);
				}
			}
		}
		lua_settop(L, children);
	}
	lua_settop(L, result);
	return 1;
}

/* Calls method `name` (no arguments) on every child that is a Lua table
 * having it, or a module; built-in children were handled in C already. */
static void call_on_lua_children(lua_State *L, int idx, const char *name)
{
	int children = children_of(L, idx);
	for (lua_Integer i = 1; children && i <= luaL_len(L, children); i++) {
		lua_geti(L, children, i);
		if (lua_istable(L, -1) || lnL_testmodule(L, -1)) {
			if (lua_getfield(L, -1, name) == LUA_TFUNCTION) {
				lua_insert(L, -2);
				lua_call(L, 1, 0);
				continue;
			}
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	lua_settop(L, idx);
}

static int module_zero_grad(lua_State *L)
{
	ln_module *m = lnn_check_module(L, 1, "zero_grad");
	ln_module_zero_grad(m);
	call_on_lua_children(L, 1, "zero_grad");
	return 0;
}

/* m:reset_state(): every stateful layer in m starts its next forward
 * from zeros (ln_module_reset_state). */
static int module_reset_state(lua_State *L)
{
	ln_module *m = lnn_check_module(L, 1, "reset_state");
	ln_module_reset_state(m);
	call_on_lua_children(L, 1, "reset_state");
	lua_settop(L, 1);
	return 1;
}

static int set_mode(lua_State *L, bool training)
{
	const char *method = training ? "train" : "evaluate";
	ln_module *m = lnn_check_module(L, 1, method);
	ln_module_set_training(m, training);
	call_on_lua_children(L, 1, method);
	lua_settop(L, 1);
	return 1;
}

static int module_train(lua_State *L) { return set_mode(L, true); }
/* m:evaluate(), also m:eval() */
static int module_evaluate(lua_State *L) { return set_mode(L, false); }

/* ---- metamethods ------------------------------------------------------------------------ */

/* The one-line description of m ("Linear(784 -> 256)") into line. */
static void describe_line(const ln_module *m, char *line, size_t size)
{
	if (m->cls->describe)
		m->cls->describe(m, line, size);
	else
		snprintf(line, size, "%s", m->cls->name);
}

/* m:_describe() -> the one-line description of m itself (for a container,
 * without its children): what the tree printer puts on m's line. */
static int module_describe(lua_State *L)
{
	ln_module *m = lnn_check_module(L, 1, "_describe");
	char line[256];
	describe_line(m, line, sizeof line);
	lua_pushstring(L, line);
	return 1;
}

/* m:_own_parameters() -> {names...}, {params...}: m's own parameters (not
 * its children's), named as the class names them ("weight", "bias"). */
static int module_own_parameters(lua_State *L)
{
	ln_module *m = lnn_check_module(L, 1, "_own_parameters");
	lua_createtable(L, m->nparams, 0);
	lua_createtable(L, m->nparams, 0);
	for (int i = 0; i < m->nparams; i++) {
		char buf[LN_PARAM_NAME_MAX];
		lua_pushstring(L, ln_module_param_name(m, i, buf));
		lua_seti(L, -3, i + 1);
		lnL_pushparam(L, 1, i, false);
		lua_seti(L, -2, i + 1);
	}
	return 2;
}

/* m:_child_label(i) -> how print(m) heads m's child i: "(3) <- (1), input 1"
 * for a Graph's node, "block" for a Residual's, "(3)" in a Sequential. */
static int module_child_label(lua_State *L)
{
	ln_module *m = lnn_check_module(L, 1, "_child_label");
	lua_Integer i = luaL_checkinteger(L, 2);
	luaL_argcheck(L, i >= 1 && i <= m->nchildren, 2, "no such child");
	char label[256];
	lnn_child_label(m, (int)i - 1, label, sizeof label);
	lua_pushstring(L, label);
	return 1;
}

/* m:_outputs_line() -> "outputs: (4), (3)", the last line of a Graph's
 * listing; nil for any other module. */
static int module_outputs_line(lua_State *L)
{
	ln_module *m = lnn_check_module(L, 1, "_outputs_line");
	char line[256];
	if (lnn_outputs_line(m, line, sizeof line))
		lua_pushstring(L, line);
	else
		lua_pushnil(L);
	return 1;
}

/* tostring(m): the class's description; a container is a tree of its
 * layers with their parameters, drawn by nn._tree (nn.lua) when it is
 * there, else a plain list of its children, indented, as Torch does. */
static int module_tostring(lua_State *L)
{
	module_box *mb = lnL_testmodule(L, 1);
	if (mb && !mb->m) {
		lua_pushfstring(L, "%s (closed)", lnn_box_class(L, 1));
		return 1;
	}
	ln_module *m = lnn_check_module(L, 1, "__tostring");
	char line[256];
	describe_line(m, line, sizeof line);
	if (m->nchildren == 0 && m->cls != &ln_sequential_class) {
		lua_pushstring(L, line);
		return 1;
	}
	if (lua_getfield(L, LUA_REGISTRYINDEX, NN_REG) == LUA_TTABLE &&
	    lua_getfield(L, -1, "_tree") == LUA_TFUNCTION) {
		lua_pushvalue(L, 1);
		/* a custom layer's parameters method that fails leaves the tree
		 * for the plain list below */
		if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
			return 1;
	}
	lua_settop(L, 1);
	luaL_Buffer b;
	lnn_push_children(L, 1);
	int children = lua_gettop(L);
	luaL_buffinit(L, &b);
	luaL_addstring(&b, m->cls == &ln_graph_class ? line : m->cls->name);
	luaL_addstring(&b, " {");
	lua_Integer n = luaL_len(L, children);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_geti(L, children, i);
		const char *s = luaL_tolstring(L, -1, NULL);
		char label[224], head[256];
		lnn_child_label(m, (int)i - 1, label, sizeof label);
		snprintf(head, sizeof head, "\n  %s: ", label);
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
	char outputs[256];
	if (lnn_outputs_line(m, outputs, sizeof outputs)) {
		luaL_addstring(&b, "\n  ");
		luaL_addstring(&b, outputs);
	}
	luaL_addstring(&b, "\n}");
	luaL_pushresult(&b);
	return 1;
}

/* __index: methods first, then the module's named tensors and settings,
 * then fields a script stored on it.  Upvalue 2: the methods table. */
static int module_index(lua_State *L)
{
	/* methods first: m:forward(x) looks its method up on every call */
	lua_pushvalue(L, 2);
	if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	ln_module *m = lnn_check_module(L, 1, "__index");
	if (lua_type(L, 2) == LUA_TSTRING) {
		const char *key = lua_tostring(L, 2);
		if (strcmp(key, "output") == 0) {
			push_output(L, 1, m);
			return 1;
		}
		if (strcmp(key, "grad_input") == 0)
			return push_grad_input(L, m);
		if (strcmp(key, "input_grad") == 0) {
			lua_pushboolean(L, m->input_grad);
			return 1;
		}
		if (strcmp(key, "training") == 0) {
			lua_pushboolean(L, m->training);
			return 1;
		}
		if (strcmp(key, "_backward_current") == 0) {  /* for m:trace() */
			lua_pushboolean(L, m->backward_current);
			return 1;
		}
		if (strcmp(key, "name") == 0) {
			lua_pushstring(L, m->cls->name);
			return 1;
		}
		bool grad = strncmp(key, "grad_", 5) == 0;
		char buf[LN_PARAM_NAME_MAX];
		for (int i = 0; i < m->nparams; i++) {
			const char *p = ln_module_param_name(m, i, buf);
			if (strcmp(key, p) == 0 || (grad && strcmp(key + 5, p) == 0)) {
				lnL_pushparam(L, 1, i, strcmp(key, p) != 0);
				return 1;
			}
		}
		/* a parameter this module was built without (a bias) is nil, not
		 * the config value of the same name */
		for (int i = m->nparams; i < LN_MODULE_MAX_PARAM_NAMES && m->cls->param_names[i]; i++) {
			const char *p = m->cls->param_names[i];
			if (strcmp(key, p) == 0 || (grad && strcmp(key + 5, p) == 0)) {
				lua_pushnil(L);
				return 1;
			}
		}
		for (int i = 0; i < m->nbuffers && m->cls->buffer_names[i]; i++) {
			if (strcmp(key, m->cls->buffer_names[i]) == 0) {
				lnL_pushview(L, &m->buffer[i]);
				return 1;
			}
		}
		if (m->cls == &ln_residual_class &&
		    (strcmp(key, "block") == 0 || strcmp(key, "proj") == 0)) {
			lnn_push_children(L, 1);
			lua_rawgeti(L, -1, key[0] == 'b' ? 1 : 2);
			return 1;
		}
		ln_tensor *f = m->cls->field ? m->cls->field(m, key) : NULL;
		if (f) {
			if (ln_tensor_is_empty(f))
				lua_pushnil(L);
			else
				lnL_pushview(L, f);
			return 1;
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
	ln_module *m = lnn_check_module(L, 1, "__newindex");
	if (lua_type(L, 2) == LUA_TSTRING) {
		const char *key = lua_tostring(L, 2);
		char buf[LN_PARAM_NAME_MAX];
		bool own = m->cls->field && m->cls->field(m, key);
		for (int i = 0; i < m->nparams && !own; i++)
			own = strcmp(key, ln_module_param_name(m, i, buf)) == 0;
		if (own)
			return luaL_error(L, "%s: cannot replace '%s'; copy into it with m.%s:copy(t)",
			                  m->cls->name, key, key);
		if (strcmp(key, "output") == 0 || strcmp(key, "grad_input") == 0)
			return luaL_error(L, "%s: '%s' is read-only", m->cls->name, key);
		if (strcmp(key, "input_grad") == 0) {
			if (!lua_isboolean(L, 3))
				return luaL_error(L, "%s: input_grad must be a boolean, got %s", m->cls->name,
				                  luaL_typename(L, 3));
			m->input_grad = lua_toboolean(L, 3);
			return 0;
		}
	}
	lua_getiuservalue(L, 1, UV_FIELDS);
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	lua_rawset(L, -3);
	return 0;
}

static int module_len(lua_State *L)
{
	ln_module *m = lnn_check_module(L, 1, "__len");
	lua_pushinteger(L, m->nchildren);
	return 1;
}

/* ---- layer constructors ---------------------------------------------------------- */

/* nn.Linear(nin, nout[, {bias=true}]) */
static int l_linear(lua_State *L)
{
	static const lnL_option known[] = {{"bias", LUA_TBOOLEAN}, {NULL, 0}};
	int64_t nin = check_size(L, 1, "nn.Linear", "nin");
	int64_t nout = check_size(L, 2, "nn.Linear", "nout");
	lnL_checkoptions(L, 3, "nn.Linear", known);
	int bias = lnL_optboolean(L, 3, "bias", 1);
	module_box *b = lnn_new_module_box(L, &ln_linear_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_linear_new(&m, NULL, nin, nout, bias, &err);
	return lnn_module_done(L, b, m, st, &err, "nn.Linear");
}

/* Layers without arguments share one constructor; upvalue 2 is their
 * class. */
static const ln_module_class *const plain_layers[] = {
	&ln_flatten_class,
};

/* Builds a module of class cls from config, as nn.<Class> (raises). */
static int build(lua_State *L, const ln_module_class *cls, const double *config)
{
	char fname[64];
	snprintf(fname, sizeof fname, "nn.%s", cls->name);
	module_box *b = lnn_new_module_box(L, cls);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_module_create(&m, cls, NULL, config, &err);
	return lnn_module_done(L, b, m, st, &err, fname);
}

static int l_plain(lua_State *L)
{
	const ln_module_class *cls = lua_touserdata(L, lua_upvalueindex(2));
	char fname[64];
	snprintf(fname, sizeof fname, "nn.%s", cls->name);
	lnL_checknargs(L, 0, fname);
	return build(L, cls, NULL);
}

/* nn.<Activation>([param]): every row of the activation table; upvalue 2
 * is the row.  A parameter left out takes the class's default
 * (LeakyReLU's slope, 0.01). */
static int l_activation(lua_State *L)
{
	const ln_activation_def *d = lua_touserdata(L, lua_upvalueindex(2));
	const char *pname = d->cls.config_names[0];
	char fname[64];
	snprintf(fname, sizeof fname, "nn.%s", d->cls.name);
	lnL_checknargs(L, pname ? 1 : 0, fname);
	double param = d->cls.config_defaults[0];
	if (pname && !lua_isnoneornil(L, 1)) {
		if (lua_type(L, 1) != LUA_TNUMBER)
			luaL_error(L, "%s: %s must be a number, got %s", fname, pname, luaL_typename(L, 1));
		param = lua_tonumber(L, 1);
	}
	return build(L, &d->cls, &param);
}

/* nn.Softmax([dim=-1]) and nn.LogSoftmax([dim=-1]); upvalue 2 is the
 * class. */
static int l_softmax(lua_State *L)
{
	const ln_module_class *cls = lua_touserdata(L, lua_upvalueindex(2));
	char fname[64];
	snprintf(fname, sizeof fname, "nn.%s", cls->name);
	lnL_checknargs(L, 1, fname);
	double dim = -1;
	if (!lua_isnoneornil(L, 1)) {
		char v[64];
		if (!lua_isinteger(L, 1))
			return luaL_error(L, "%s: dim must be an integer, got %s", fname,
			                  lua_type(L, 1) == LUA_TNUMBER ? lnL_numstr(v, sizeof v, L, 1)
			                                                : luaL_typename(L, 1));
		dim = (double)lua_tointeger(L, 1);
	}
	return build(L, cls, &dim);
}

/* nn.Dropout([p=0.5]) */
static int l_dropout(lua_State *L)
{
	lnL_checknargs(L, 1, "nn.Dropout");
	double p = luaL_optnumber(L, 1, 0.5);
	module_box *b = lnn_new_module_box(L, &ln_dropout_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_dropout_new(&m, p, &err);
	return lnn_module_done(L, b, m, st, &err, "nn.Dropout");
}

/* nn.Conv2d(cin, cout, k[, {stride=1, padding=0, dilation=1, groups=1, bias=true}]);
 * k, stride, padding, dilation: a number or {h, w}; padding also "same"
 * (stride 1) or "valid" (0). */
static int l_conv2d(lua_State *L)
{
	static const lnL_option known[] = {
		{"stride", LUA_TNONE}, {"padding", LUA_TNONE}, {"dilation", LUA_TNONE},
		{"groups", LUA_TNUMBER}, {"bias", LUA_TBOOLEAN}, {NULL, 0},
	};
	static const char *fname = "nn.Conv2d";
	int64_t cin = check_size(L, 1, fname, "cin");
	int64_t cout = check_size(L, 2, fname, "cout");
	int64_t k[2], st[2], pad[2] = {0, 0}, dil[2];
	check_pair(L, 3, fname, "kernel size", 1, k);
	lnL_checkoptions(L, 4, fname, known);
	ln_conv2d_opts o;
	ln_conv2d_opts_init(&o, cin, cout, k[0]);
	o.kw = k[1];
	opt_pair(L, 4, fname, "stride", 1, 1, st);
	opt_pair(L, 4, fname, "dilation", 1, 1, dil);
	if (lua_istable(L, 4) && lua_getfield(L, 4, "padding") != LUA_TNIL) {
		if (lua_type(L, -1) == LUA_TSTRING) {
			const char *p = lua_tostring(L, -1);
			if (strcmp(p, "same") == 0)
				o.same = true;
			else if (strcmp(p, "valid") != 0)
				return luaL_error(L, "%s: padding must be \"same\", \"valid\", an integer >= 0 "
				                  "or a table {h, w} of them, got \"%s\"", fname, p);
		} else {
			check_pair(L, -1, fname, "padding", 0, pad);
		}
	}
	if (o.same && (st[0] != 1 || st[1] != 1))
		return luaL_error(L, "%s: padding \"same\" needs stride 1, got stride %I x %I", fname,
		                  (LUAI_UACINT)st[0], (LUAI_UACINT)st[1]);
	o.sh = st[0], o.sw = st[1];
	o.ph = pad[0], o.pw = pad[1];
	o.dh = dil[0], o.dw = dil[1];
	o.groups = opt_int(L, 4, fname, "groups", 1, 1);
	o.bias = lnL_optboolean(L, 4, "bias", 1);
	module_box *b = lnn_new_module_box(L, &ln_conv2d_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status s = ln_conv2d_new_opts(&m, NULL, &o, &err);
	return lnn_module_done(L, b, m, s, &err, fname);
}

/* nn.MaxPool2d(k[, stride=k][, {padding=0, ceil_mode=false}]) and
 * nn.AvgPool2d(...), whose options also take count_include_pad=true; k,
 * stride and padding: a number or {h, w}.  Upvalue 2 is the class. */
static int l_pool(lua_State *L)
{
	static const lnL_option max_known[] = {
		{"padding", LUA_TNONE}, {"ceil_mode", LUA_TBOOLEAN}, {NULL, 0},
	};
	static const lnL_option avg_known[] = {
		{"padding", LUA_TNONE}, {"ceil_mode", LUA_TBOOLEAN},
		{"count_include_pad", LUA_TBOOLEAN}, {NULL, 0},
	};
	const ln_module_class *cls = lua_touserdata(L, lua_upvalueindex(2));
	const bool avg = cls == &ln_avgpool2d_class;
	char fname[64];
	snprintf(fname, sizeof fname, "nn.%s", cls->name);
	int64_t k[2], st[2], pad[2];
	check_pair(L, 1, fname, "kernel size", 1, k);
	/* a table second is the options, unless it is a pair {h, w} (a stride) */
	bool opts_second = lua_istable(L, 2) && lua_rawgeti(L, 2, 1) == LUA_TNIL;
	if (lua_istable(L, 2))
		lua_pop(L, 1);
	int opts = opts_second ? 2 : 3;
	if (opts_second || lua_isnoneornil(L, 2))
		st[0] = k[0], st[1] = k[1];
	else
		check_pair(L, 2, fname, "stride", 1, st);
	lnL_checkoptions(L, opts, fname, avg ? avg_known : max_known);
	opt_pair(L, opts, fname, "padding", 0, 0, pad);
	ln_pool2d_opts o;
	ln_pool2d_opts_init(&o, k[0]);
	o.kw = k[1];
	o.sh = st[0], o.sw = st[1];
	o.ph = pad[0], o.pw = pad[1];
	o.ceil_mode = lnL_optboolean(L, opts, "ceil_mode", 0);
	o.count_include_pad = lnL_optboolean(L, opts, "count_include_pad", 1);
	module_box *b = lnn_new_module_box(L, cls);
	ln_module *m = NULL;
	ln_error err;
	ln_status s = avg ? ln_avgpool2d_new_opts(&m, &o, &err) : ln_maxpool2d_new_opts(&m, &o, &err);
	return lnn_module_done(L, b, m, s, &err, fname);
}

/* nn.BatchNorm(n[, {eps=1e-5, momentum=0.1}]) */
static int l_batchnorm(lua_State *L)
{
	static const lnL_option known[] = {{"eps", LUA_TNUMBER}, {"momentum", LUA_TNUMBER}, {NULL, 0}};
	/* the aliases nn.BatchNorm1d/2d carry the name the script called as
	 * upvalue 2, for the messages */
	const char *fn = lua_type(L, lua_upvalueindex(2)) == LUA_TSTRING
	               ? lua_tostring(L, lua_upvalueindex(2))
	               : "nn.BatchNorm";
	int64_t n = check_size(L, 1, fn, "n");
	lnL_checkoptions(L, 2, fn, known);
	double eps = lnL_optnumber(L, 2, "eps", 1e-5), momentum = lnL_optnumber(L, 2, "momentum", 0.1);
	module_box *b = lnn_new_module_box(L, &ln_batchnorm_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_batchnorm_new_ex(&m, NULL, n, eps, momentum, &err);
	return lnn_module_done(L, b, m, st, &err, fn);
}

/* nn.LayerNorm(d[, {eps=1e-5}]) */
static int l_layernorm(lua_State *L)
{
	static const lnL_option known[] = {{"eps", LUA_TNUMBER}, {NULL, 0}};
	int64_t d = check_size(L, 1, "nn.LayerNorm", "d");
	lnL_checkoptions(L, 2, "nn.LayerNorm", known);
	double eps = lnL_optnumber(L, 2, "eps", 1e-5);
	module_box *b = lnn_new_module_box(L, &ln_layernorm_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_layernorm_new(&m, NULL, d, eps, &err);
	return lnn_module_done(L, b, m, st, &err, "nn.LayerNorm");
}

/* nn.Embedding(n, d) */
static int l_embedding(lua_State *L)
{
	int64_t n = check_size(L, 1, "nn.Embedding", "n");
	int64_t d = check_size(L, 2, "nn.Embedding", "d");
	lnL_checknargs(L, 2, "nn.Embedding");
	module_box *b = lnn_new_module_box(L, &ln_embedding_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_embedding_new(&m, NULL, n, d, &err);
	return lnn_module_done(L, b, m, st, &err, "nn.Embedding");
}

/* nn.RNN(nin, h[, {layers=1, nonlinearity="tanh", dropout=0, stateful=false}]),
 * nn.LSTM(nin, h[, {layers=1, dropout=0, stateful=false}]), nn.GRU (the
 * same); upvalue 2 is the class. */
static int l_rnn(lua_State *L)
{
	const ln_module_class *cls = lua_touserdata(L, lua_upvalueindex(2));
	static const lnL_option known_rnn[] = {
		{"layers", LUA_TNUMBER}, {"nonlinearity", LUA_TSTRING}, {"dropout", LUA_TNUMBER},
		{"stateful", LUA_TBOOLEAN}, {NULL, 0},
	};
	static const lnL_option known[] = {
		{"layers", LUA_TNUMBER}, {"dropout", LUA_TNUMBER}, {"stateful", LUA_TBOOLEAN},
		{NULL, 0},
	};
	char fname[64];
	snprintf(fname, sizeof fname, "nn.%s", cls->name);
	int64_t nin = check_size(L, 1, fname, "nin");
	int64_t hidden = check_size(L, 2, fname, "hidden size");
	lnL_checkoptions(L, 3, fname, cls == &ln_rnn_class ? known_rnn : known);
	ln_rnn_options o = {
		.layers = opt_int(L, 3, fname, "layers", 1, 1),
		.dropout = lnL_optnumber(L, 3, "dropout", 0),
		.stateful = lnL_optboolean(L, 3, "stateful", 0),
	};
	ln_rnn_kind kind = cls == &ln_lstm_class ? LN_RNN_LSTM : cls == &ln_gru_class ? LN_RNN_GRU
	                                                                              : LN_RNN_TANH;
	if (cls == &ln_rnn_class && lua_istable(L, 3) &&
	    lua_getfield(L, 3, "nonlinearity") == LUA_TSTRING) {
		const char *nl = lua_tostring(L, -1);
		if (strcmp(nl, "relu") == 0)
			kind = LN_RNN_RELU;
		else if (strcmp(nl, "tanh") != 0)
			return luaL_error(L, "%s: nonlinearity must be \"tanh\" or \"relu\", got \"%s\"",
			                  fname, nl);
	}
	module_box *b = lnn_new_module_box(L, cls);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_rnn_new(&m, NULL, kind, nin, hidden, &o, &err);
	return lnn_module_done(L, b, m, st, &err, fname);
}

/* nn.MultiheadAttention(d, heads[, {causal=false, dropout=0}]) */
static int l_attention(lua_State *L)
{
	static const char *fname = "nn.MultiheadAttention";
	static const lnL_option known[] = {{"causal", LUA_TBOOLEAN}, {"dropout", LUA_TNUMBER},
	                                   {NULL, 0}};
	int64_t d = check_size(L, 1, fname, "d");
	int64_t heads = check_size(L, 2, fname, "heads");
	lnL_checkoptions(L, 3, fname, known);
	bool causal = lnL_optboolean(L, 3, "causal", 0);
	double dropout = lnL_optnumber(L, 3, "dropout", 0);
	module_box *b = lnn_new_module_box(L, &ln_attention_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_attention_new(&m, NULL, d, heads, causal, dropout, &err);
	return lnn_module_done(L, b, m, st, &err, fname);
}

/* ---- nn.init ----------------------------------------------------------------------- */

/* nn.init.<fn>(t, ...) -> t, filled from the process-wide generator.
 * Upvalue 2 says which: 'x' xavier, 'h' he, 'u' uniform(a, b), 'n'
 * normal(mean, std). */
static int l_init(lua_State *L)
{
	const char *which = lua_tostring(L, lua_upvalueindex(2));
	const char *fname = which[0] == 'x' ? "nn.init.xavier" : which[0] == 'h' ? "nn.init.he"
	                  : which[0] == 'u' ? "nn.init.uniform" : "nn.init.normal";
	bool two = which[0] == 'u' || which[0] == 'n';
	ln_tensor *t = lnL_checkargtensor(L, 1, fname, NULL, "the tensor");
	lnL_checknargs(L, two ? 3 : 1, fname);
	double a = two ? luaL_checknumber(L, 2) : 0, b = two ? luaL_checknumber(L, 3) : 0;
	if (which[0] == 'u' && !(a <= b))
		return luaL_error(L, "nn.init.uniform: expected a <= b, got %f and %f", a, b);
	if (which[0] == 'n' && !(b >= 0))
		return luaL_error(L, "nn.init.normal: std must be >= 0, got %f", b);
	ln_rng *rng = ln_rng_global();
	ln_error err;
	ln_status st = which[0] == 'x' ? ln_init_xavier(t, rng, &err)
	             : which[0] == 'h' ? ln_init_he(t, rng, &err)
	             : which[0] == 'u' ? ln_init_uniform(t, rng, a, b, &err)
	                               : ln_init_normal(t, rng, a, b, &err);
	if (st != LN_OK)
		return lnL_error(L, fname, &err);
	lua_settop(L, 1);
	return 1;
}

/* ---- registration -------------------------------------------------------------------- */

static const luaL_Reg module_methods[] = {
	{"forward", module_forward},
	{"backward", module_backward},
	{"parameters", module_parameters},
	{"_own_parameters", module_own_parameters},
	{"_describe", module_describe},
	{"_child_label", module_child_label},
	{"_outputs_line", module_outputs_line},
	{"buffers", module_buffers},
	{"zero_grad", module_zero_grad},
	{"reset_state", module_reset_state},
	{"train", module_train},
	{"evaluate", module_evaluate},
	{"eval", module_evaluate},
	{NULL, NULL},
};

void lnn_new_metatable(lua_State *L, const char *name, const char *mark, lua_CFunction index_fn,
                       const luaL_Reg *meta, int state, int methods)
{
	char mt[64];
	snprintf(mt, sizeof mt, LNN_MT_PREFIX "%s", name);
	luaL_newmetatable(L, mt);
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, mark);
	lua_pushvalue(L, state);
	lua_pushvalue(L, methods);
	lua_pushcclosure(L, index_fn, 2);
	lua_setfield(L, -2, "__index");
	lua_pushvalue(L, state);
	luaL_setfuncs(L, meta, 1);
	lua_pop(L, 1);
}

static const luaL_Reg module_meta[] = {
	{"__newindex", module_newindex},
	{"__gc", module_gc},
	{"__close", module_gc},
	{"__tostring", module_tostring},
	{"__len", module_len},
	{"__call", module_forward},
	{NULL, NULL},
};

/* nn._what(v) -> what v is, for a message where a module belongs
 * (lnL_pushwhat): for the pure-Lua parts. */
static int l_what(lua_State *L)
{
	luaL_checkany(L, 1);
	lnL_pushwhat(L, 1);
	return 1;
}

static int check_self_body(lua_State *L)
{
	lnn_check_module(L, 1, lua_tostring(L, 2));
	return 0;
}

/* nn._self_error(m, method) -> nil, or the message lnn_check_module gives
 * when m is not an open module (the colon hint, or "module is closed"),
 * for the methods written in Lua to raise at their caller's level. */
static int l_self_error(lua_State *L)
{
	luaL_checkstring(L, 2);
	lua_settop(L, 2);
	lua_pushcfunction(L, check_self_body);
	lua_insert(L, 1);
	if (lua_pcall(L, 2, 0, 0) == LUA_OK)
		lua_pushnil(L);
	return 1;
}

/* nn.is_module(v) -> boolean */
static int l_is_module(lua_State *L)
{
	lua_pushboolean(L, lnL_testmodule(L, 1) != NULL);
	return 1;
}

/* Sets nn[name] to a closure of fn with the state and p as upvalues. */
static void set_closure(lua_State *L, int nn, int state, const char *name, lua_CFunction fn,
                        const void *p)
{
	lua_pushvalue(L, state);
	lua_pushlightuserdata(L, (void *)p);
	lua_pushcclosure(L, fn, 2);
	lua_setfield(L, nn, name);
}

void lnL_open_nn(lua_State *L)
{
	int lunet = lua_gettop(L);
	lua_newtable(L);
	int nn = lua_gettop(L);

	/* the state of this Lua state's nn binding, anchored in the registry */
	lnn_state *S = lua_newuserdatauv(L, sizeof *S, 0);
	memset(S, 0, sizeof *S);
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, STATE_REG);
	int state = lua_gettop(L);

	/* the methods every module has, Sequential's among them */
	lua_newtable(L);
	int methods = lua_gettop(L);
	lua_pushvalue(L, state);
	luaL_setfuncs(L, module_methods, 1);
	lua_pushvalue(L, state);
	luaL_setfuncs(L, lnn_container_methods, 1);
	lua_pushvalue(L, state);
	luaL_setfuncs(L, lnn_graph_methods, 1);
	lua_pushvalue(L, methods);
	lua_setfield(L, nn, "_module_methods");
	for (int i = 0, n = ln_module_class_count(); i < n; i++)
		lnn_new_metatable(L, ln_module_class_at(i)->name, MODULE_MARK, module_index, module_meta,
		                  state, methods);

	static const luaL_Reg ctors[] = {
		{"Linear", l_linear},
		{"Dropout", l_dropout},
		{"Conv2d", l_conv2d},
		{"BatchNorm", l_batchnorm},
		{"LayerNorm", l_layernorm},
		{"Embedding", l_embedding},
		{"MultiheadAttention", l_attention},
		{"is_module", l_is_module},
		{NULL, NULL},
	};
	lua_pushvalue(L, nn);
	lua_pushvalue(L, state);
	luaL_setfuncs(L, ctors, 1);
	lua_pop(L, 1);
	/* familiar aliases: BatchNorm works on {N,C} and {N,C,H,W}; each names
	 * itself in its messages */
	static const char *const bn_alias[] = {"BatchNorm1d", "BatchNorm2d"};
	for (int i = 0; i < 2; i++) {
		lua_pushvalue(L, state);
		lua_pushfstring(L, "nn.%s", bn_alias[i]);
		lua_pushcclosure(L, l_batchnorm, 2);
		lua_setfield(L, nn, bn_alias[i]);
	}
	set_closure(L, nn, state, "RNN", l_rnn, &ln_rnn_class);
	set_closure(L, nn, state, "LSTM", l_rnn, &ln_lstm_class);
	set_closure(L, nn, state, "GRU", l_rnn, &ln_gru_class);
	set_closure(L, nn, state, "MaxPool2d", l_pool, &ln_maxpool2d_class);
	set_closure(L, nn, state, "Softmax", l_softmax, &ln_softmax_class);
	set_closure(L, nn, state, "LogSoftmax", l_softmax, &ln_log_softmax_class);
	set_closure(L, nn, state, "AvgPool2d", l_pool, &ln_avgpool2d_class);
	for (size_t i = 0; i < sizeof plain_layers / sizeof plain_layers[0]; i++)
		set_closure(L, nn, state, plain_layers[i]->name, l_plain, plain_layers[i]);
	int nact;
	const ln_activation_def *act = ln_activation_defs(&nact);
	for (int i = 0; i < nact; i++)
		set_closure(L, nn, state, act[i].cls.name, l_activation, &act[i]);

	lua_newtable(L);
	static const char *const inits[] = {"xavier", "he", "uniform", "normal"};
	for (size_t i = 0; i < sizeof inits / sizeof inits[0]; i++) {
		lua_pushvalue(L, state);
		lua_pushlstring(L, inits[i], 1);
		lua_pushcclosure(L, l_init, 2);
		lua_setfield(L, -2, inits[i]);
	}
	lua_setfield(L, nn, "init");

	lua_pushvalue(L, nn);
	lua_setfield(L, LUA_REGISTRYINDEX, NN_REG);
	lua_pushvalue(L, state);
	lua_pushcclosure(L, l_what, 1);
	lua_setfield(L, nn, "_what");
	lua_pushvalue(L, state);
	lua_pushcclosure(L, l_self_error, 1);
	lua_setfield(L, nn, "_self_error");

	lua_pushvalue(L, state);
	lnn_open_container(L, nn);
	lnn_open_graph(L, nn);
	lnn_open_loss(L, nn);
	lua_settop(L, nn);
	lua_setfield(L, lunet, "nn");
}
