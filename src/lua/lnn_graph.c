/*
 * lnn_graph.c -- the Lua binding of graphs (nn/graph.h): nn.Input(),
 * nodes made by calling a module on nodes, nn.Graph(inputs, outputs),
 * the joins nn.Add(), nn.Mul(), nn.Concat(dim), nn.Residual(block[,
 * proj]) and nn.AdaptiveAvgPool2d(size).
 *
 *     local x = nn.Input()
 *     local h = nn.ReLU()(nn.Linear(4, 8)(x))
 *     local y = nn.Add()(h, nn.Linear(8, 8)(h))
 *     local g = nn.Graph(x, y)          -- a module: g:forward(t), g:backward(t, gy)
 *
 * A node is a full userdata ("lunet.nn.Node") holding its number (nodes
 * are numbered as they are made, which orders a graph's nodes so that
 * each comes after the ones it reads) and, in its user values, its module
 * (a module userdata or a Lua table with forward/backward; nil for an
 * Input) and the list of the nodes it reads.  Nodes are plain Lua data
 * until nn.Graph: it collects the nodes its outputs depend on, sorts them
 * by number and hands the description to ln_graph_new, which checks it.
 * The graph's children list (user value 1) holds the module objects in
 * node order, as a Sequential's holds its layers, so that parameters(),
 * train() and the like reach custom modules too.
 *
 * A module object may sit at one node only: a registry table with weak
 * keys remembers the modules already at a node, and calling one again on
 * nodes is an error that says to make another.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lnaux.h"
#include "lnn.h"
#include "nn/conv.h"
#include "nn/graph.h"

#define NODE_MT "lunet.nn.Node"
#define AT_NODE_REG "lunet.nn.at_node"  /* weak-keyed: module object -> true */

enum { NODE_UV_MODULE = 1, NODE_UV_INPUTS, NODE_UV_COUNT = NODE_UV_INPUTS };

typedef struct node_box {
	int64_t number;  /* lnn_state.nodes_made when it was made */
	bool input;      /* nn.Input() */
} node_box;

bool lnn_is_node(lua_State *L, int idx) { return luaL_testudata(L, idx, NODE_MT) != NULL; }

static node_box *check_node(lua_State *L, int idx) { return luaL_checkudata(L, idx, NODE_MT); }

/* What the module or table at idx is called in messages: its class, or
 * "custom module". */
static const char *module_name(lua_State *L, int idx)
{
	module_box *b = lnL_testmodule(L, idx);
	return b && b->m ? b->m->cls->name : "custom module";
}

/* Pushes a new node with module (index `module`, 0 for an Input) and the
 * nodes at first..last as its inputs. */
static node_box *push_node(lua_State *L, lnn_state *S, int module, int first, int last)
{
	node_box *n = lua_newuserdatauv(L, sizeof *n, NODE_UV_COUNT);
	n->number = ++S->nodes_made;
	n->input = module == 0;
	luaL_setmetatable(L, NODE_MT);
	if (module)
		lua_pushvalue(L, module);
	else
		lua_pushnil(L);
	lua_setiuservalue(L, -2, NODE_UV_MODULE);
	lua_createtable(L, last - first + 1, 0);
	for (int i = first; i <= last; i++) {
		lua_pushvalue(L, i);
		lua_rawseti(L, -2, i - first + 1);
	}
	lua_setiuservalue(L, -2, NODE_UV_INPUTS);
	return n;
}

/* nn.Input() -> a node standing for an input of a graph. */
static int l_input(lua_State *L)
{
	lnL_checknargs(L, 0, "nn.Input");
	push_node(L, LNN_STATE(L), 0, 1, 0);
	return 1;
}

int lnn_node_call(lua_State *L)
{
	lnn_state *S = LNN_STATE(L);
	int top = lua_gettop(L);
	char fname[96];
	snprintf(fname, sizeof fname, "%s(node)", module_name(L, 1));
	for (int i = 2; i <= top; i++)
		if (!lnn_is_node(L, i))
			return luaL_error(L, "%s: argument %d is not a node (got %s); a module called on "
			                  "nodes takes nodes only", fname, i - 1, lnL_pushwhat(L, i));
	module_box *b = lnL_testmodule(L, 1);
	int arity = 1;
	if (b) {
		if (!b->m)
			return luaL_error(L, "%s: the module is closed", fname);
		arity = b->m->arity;
		if (b->m->cls == &ln_graph_class && ln_graph_noutputs(b->m) > 1)
			return luaL_error(L, "%s: a Graph with %d outputs cannot sit at a node (the "
			                  "module at a node has one output)", fname,
			                  ln_graph_noutputs(b->m));
	} else if (lua_istable(L, 1)) {
		lua_getfield(L, 1, "forward");
		lua_getfield(L, 1, "backward");
		if (!lua_isfunction(L, -2) || !lua_isfunction(L, -1))
			return luaL_error(L, "%s: a custom module needs forward and backward methods",
			                  fname);
		lua_pop(L, 2);
	} else {
		return luaL_error(L, "nn.node: expected a module or a table with forward/backward, got "
		                  "%s", lnL_pushwhat(L, 1));
	}
	int n = top - 1;
	if (arity == LN_ARITY_ANY ? n < 1 : n != arity)
		return luaL_error(L, "%s: takes %s%d node%s, got %d", fname,
		                  arity == LN_ARITY_ANY ? "at least " : "",
		                  arity == LN_ARITY_ANY ? 1 : arity,
		                  (arity == LN_ARITY_ANY ? 1 : arity) == 1 ? "" : "s", n);
	lua_getfield(L, LUA_REGISTRYINDEX, AT_NODE_REG);
	lua_pushvalue(L, 1);
	if (lua_rawget(L, -2) != LUA_TNIL)
		return luaL_error(L, "%s: this %s already sits at a node; a module keeps one output "
		                  "buffer, so it can sit at one node only: make another", fname,
		                  module_name(L, 1));
	lua_pop(L, 1);
	lua_pushvalue(L, 1);
	lua_pushboolean(L, 1);
	lua_rawset(L, -3);
	lua_pop(L, 1);
	push_node(L, S, 1, 2, top);
	return 1;
}

/* nn.node(m, n1, ...) -> m(n1, ...), for a module or a custom module
 * written as a Lua table (which cannot be called itself). */
static int l_node(lua_State *L)
{
	luaL_checkany(L, 1);
	return lnn_node_call(L);
}

/* node.module, node.inputs (a new list) */
static int node_index(lua_State *L)
{
	check_node(L, 1);
	const char *key = luaL_checkstring(L, 2);
	if (strcmp(key, "module") == 0) {
		lua_getiuservalue(L, 1, NODE_UV_MODULE);
		return 1;
	}
	if (strcmp(key, "inputs") == 0) {
		lua_getiuservalue(L, 1, NODE_UV_INPUTS);
		lua_Integer n = luaL_len(L, -1);
		lua_createtable(L, (int)n, 0);
		for (lua_Integer i = 1; i <= n; i++) {
			lua_rawgeti(L, -2, i);
			lua_rawseti(L, -2, i);
		}
		return 1;
	}
	lua_pushnil(L);
	return 1;
}

/* "Input", or "Node(Linear(4 -> 8))" (the first line of the module's). */
static int node_tostring(lua_State *L)
{
	node_box *n = check_node(L, 1);
	if (n->input) {
		lua_pushliteral(L, "Input");
		return 1;
	}
	lua_getiuservalue(L, 1, NODE_UV_MODULE);
	const char *s = luaL_tolstring(L, -1, NULL);
	const char *nl = strchr(s, '\n');
	lua_pushfstring(L, "Node(%s)", nl ? lua_pushlstring(L, s, (size_t)(nl - s)) : s);
	return 1;
}

/* ---- nn.Graph ------------------------------------------------------------------ */

/* The nodes given at arg (a node or a table of nodes) into a new list
 * pushed onto the stack; returns their number.  `what` is "input" or
 * "output". */
static int node_list(lua_State *L, int arg, const char *what)
{
	lua_newtable(L);
	int list = lua_gettop(L);
	if (lnn_is_node(L, arg)) {
		lua_pushvalue(L, arg);
		lua_rawseti(L, list, 1);
		return 1;
	}
	if (!lua_istable(L, arg) || lnL_testmodule(L, arg))
		luaL_error(L, "nn.Graph: expected the %ss as a node or a table of nodes, got %s", what,
		           lnL_pushwhat(L, arg));
	lua_Integer n = luaL_len(L, arg);
	if (n < 1)
		luaL_error(L, "nn.Graph: expected at least one %s", what);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_geti(L, arg, i);
		if (!lnn_is_node(L, -1))
			luaL_error(L, "nn.Graph: %s %I: expected a node, got %s", what, (LUAI_UACINT)i,
			           lnL_pushwhat(L, -1));
		lua_rawseti(L, list, i);
	}
	return (int)n;
}

typedef struct order { int64_t number; int at; } order;

static int order_cmp(const void *pa, const void *pb)
{
	const order *a = pa, *b = pb;
	return a->number < b->number ? -1 : a->number > b->number;
}

/* The scratch memory of a graph being built, in a userdata on the stack
 * (collected with it); refs holds the module references taken so far,
 * which build_fail releases before raising. */
typedef struct scratch {
	int n;
	ln_module **refs;
	int nrefs;
} scratch;

static int build_fail(lua_State *L, scratch *sc, const char *msg)
{
	for (int i = 0; i < sc->nrefs; i++)
		ln_module_release(sc->refs[i]);
	sc->nrefs = 0;
	return lnL_raisef(L, "nn.Graph: %s", msg);
}

/* nn.Graph(inputs, outputs): inputs and outputs each a node or a table
 * of nodes.  The nodes are those the outputs depend on, plus the inputs
 * given (so that an input no output uses is reported, not dropped). */
static int l_graph(lua_State *L)
{
	lnL_checknargs(L, 2, "nn.Graph");
	luaL_checkany(L, 2);
	lua_settop(L, 2);
	int ni = node_list(L, 1, "input");   /* 3 */
	int no = node_list(L, 2, "output");  /* 4 */
	for (int i = 1; i <= ni; i++) {
		lua_rawgeti(L, 3, i);
		if (!((node_box *)lua_touserdata(L, -1))->input) {
			lua_getiuservalue(L, -1, NODE_UV_MODULE);
			return luaL_error(L, "nn.Graph: input %d is a node of a %s, not an nn.Input()", i,
			                  module_name(L, -1));
		}
		lua_pop(L, 1);
	}
	/* every node the outputs depend on, and the inputs: seen (node -> its
	 * place in list), list */
	lua_newtable(L);
	int seen = lua_gettop(L);  /* 5 */
	lua_newtable(L);
	int list = lua_gettop(L);  /* 6 */
	lua_newtable(L);
	int stack = lua_gettop(L);  /* 7: nodes still to visit */
	int nlist = 0, nstack = 0;
	for (int i = 1; i <= no; i++) {
		lua_rawgeti(L, 4, i);
		lua_rawseti(L, stack, ++nstack);
	}
	for (int i = 1; i <= ni; i++) {
		lua_rawgeti(L, 3, i);
		lua_rawseti(L, stack, ++nstack);
	}
	while (nstack > 0) {
		lua_rawgeti(L, stack, nstack);
		lua_pushnil(L);
		lua_rawseti(L, stack, nstack--);
		int node = lua_gettop(L);
		lua_pushvalue(L, node);
		if (lua_rawget(L, seen) != LUA_TNIL) {
			lua_settop(L, stack);
			continue;
		}
		lua_pop(L, 1);
		lua_pushvalue(L, node);
		lua_pushinteger(L, ++nlist);
		lua_rawset(L, seen);
		lua_pushvalue(L, node);
		lua_rawseti(L, list, nlist);
		lua_getiuservalue(L, node, NODE_UV_INPUTS);
		lua_Integer k = luaL_len(L, -1);
		for (lua_Integer j = 1; j <= k; j++) {
			lua_rawgeti(L, -1, j);
			lua_rawseti(L, stack, ++nstack);
		}
		lua_settop(L, stack);
	}
	if (nlist > (1 << 24))
		return luaL_error(L, "nn.Graph: more than %d nodes", 1 << 24);

	/* node order: by number; edges as indices into that order */
	order *ord = lua_newuserdatauv(L, (size_t)nlist * sizeof *ord, 0);  /* 8 */
	for (int i = 0; i < nlist; i++) {
		lua_rawgeti(L, list, i + 1);
		ord[i] = (order){((node_box *)lua_touserdata(L, -1))->number, i + 1};
		lua_pop(L, 1);
	}
	qsort(ord, (size_t)nlist, sizeof *ord, order_cmp);
	for (int k = 0; k < nlist; k++) {  /* seen: node -> 0-based index in node order */
		lua_rawgeti(L, list, ord[k].at);
		lua_pushinteger(L, k);
		lua_rawset(L, seen);
	}
	int nedges = 0;
	for (int k = 0; k < nlist; k++) {
		lua_rawgeti(L, list, ord[k].at);
		lua_getiuservalue(L, -1, NODE_UV_INPUTS);
		nedges += (int)luaL_len(L, -1);
		lua_pop(L, 2);
	}
	scratch *sc = lua_newuserdatauv(L, sizeof *sc, 0);  /* 9 */
	*sc = (scratch){.n = nlist};
	ln_graph_node_desc *nodes = lua_newuserdatauv(L, (size_t)nlist * sizeof *nodes, 0);
	int *edges = lua_newuserdatauv(L, (size_t)(nedges + ni + no + 1) * sizeof *edges, 0);
	sc->refs = lua_newuserdatauv(L, (size_t)nlist * sizeof *sc->refs, 0);
	int *inputs = edges + nedges, *outputs = inputs + ni;
	/* the graph's userdata, then its children list: the module objects in
	 * node order */
	module_box *box = lnn_new_module_box(L, &ln_graph_class);
	int gidx = lua_gettop(L);
	lnn_push_children(L, gidx);
	int children = lua_gettop(L);
	int e = 0, nchild = 0;
	for (int k = 0; k < nlist; k++) {
		lua_rawgeti(L, list, ord[k].at);
		int node = lua_gettop(L);
		lua_getiuservalue(L, node, NODE_UV_INPUTS);
		int nin = (int)luaL_len(L, -1);
		nodes[k] = (ln_graph_node_desc){NULL, nin, edges + e};
		for (int j = 1; j <= nin; j++) {
			lua_rawgeti(L, -1, j);
			lua_rawget(L, seen);
			edges[e++] = (int)lua_tointeger(L, -1);
			lua_pop(L, 1);
		}
		lua_getiuservalue(L, node, NODE_UV_MODULE);
		if (!lua_isnil(L, -1)) {
			ln_error err;
			if (lnn_to_module(L, lua_gettop(L), &nodes[k].m, &err) != LN_OK)
				return build_fail(L, sc, err.msg);
			sc->refs[sc->nrefs++] = nodes[k].m;
			lua_rawseti(L, children, ++nchild);
		}
		lua_settop(L, children);
	}
	for (int i = 0; i < ni; i++) {
		lua_rawgeti(L, 3, i + 1);
		lua_rawget(L, seen);
		inputs[i] = (int)lua_tointeger(L, -1);
		lua_pop(L, 1);
	}
	for (int i = 0; i < no; i++) {
		lua_rawgeti(L, 4, i + 1);
		lua_rawget(L, seen);
		outputs[i] = (int)lua_tointeger(L, -1);
		lua_pop(L, 1);
	}
	ln_graph_desc d = {nlist, nodes, ni, inputs, no, outputs};
	ln_module *g = NULL;
	ln_error err;
	ln_status st = ln_graph_new(&g, &d, &err);
	if (st != LN_OK)
		return build_fail(L, sc, err.msg);
	for (int i = 0; i < sc->nrefs; i++)  /* the graph holds its own */
		ln_module_release(sc->refs[i]);
	sc->nrefs = 0;
	box->m = g;
	lua_settop(L, gidx);
	return 1;
}

/* g:nodes() -> one table per module node, in node order: {module=,
 * inputs={...} (node numbers, or "input 1"), output=, delta=} where
 * delta is dL/d(the node's output) after backward (nil before one, or
 * where nobody needed it).  Views of the graph's own buffers. */
static int graph_nodes(lua_State *L)
{
	ln_module *m = lnn_check_module(L, 1, "nodes");
	if (m->cls != &ln_graph_class)
		return luaL_error(L, "%s:nodes: only a Graph has nodes", m->cls->name);
	lua_settop(L, 1);
	lnn_push_children(L, 1);
	int children = lua_gettop(L);
	lua_newtable(L);
	int out = lua_gettop(L);
	for (int k = 0, row = 0; k < ln_graph_nnodes(m); k++) {
		ln_graph_node_desc d = ln_graph_node(m, k);
		if (!d.m)
			continue;
		lua_createtable(L, 0, 4);
		lua_rawgeti(L, children, ++row);
		lua_setfield(L, -2, "module");
		lua_createtable(L, d.nin, 0);
		for (int j = 0; j < d.nin; j++) {
			ln_graph_node_desc src = ln_graph_node(m, d.in[j]);
			int pos = ln_graph_node_position(m, d.in[j]);
			if (src.m)
				lua_pushinteger(L, pos + 1);
			else
				lua_pushfstring(L, "input %d", pos + 1);
			lua_rawseti(L, -2, j + 1);
		}
		lua_setfield(L, -2, "inputs");
		if (!ln_tensor_is_empty(&d.m->output)) {
			lnL_pushview(L, &d.m->output);
			lua_setfield(L, -2, "output");
		}
		const ln_tensor *g = ln_graph_node_grad(m, k);
		if (g && !ln_tensor_is_empty(g)) {
			lnL_pushview(L, g);
			lua_setfield(L, -2, "delta");
		}
		lua_rawseti(L, out, row);
	}
	return 1;
}

void lnn_node_label(const ln_module *g, int k, char *buf, size_t size)
{
	int pos = ln_graph_node_position(g, k);
	if (ln_graph_node(g, k).m)
		snprintf(buf, size, "(%d)", pos + 1);
	else
		snprintf(buf, size, "input %d", pos + 1);
}

void lnn_child_label(const ln_module *m, int i, char *buf, size_t size)
{
	if (m->cls != &ln_graph_class && m->cls->child_label) {
		m->cls->child_label(m, i, buf, size);
		return;
	}
	if (m->cls != &ln_graph_class) {
		snprintf(buf, size, "(%d)", i + 1);
		return;
	}
	int k = 0;
	while (k < ln_graph_nnodes(m) &&
	       !(ln_graph_node(m, k).m && ln_graph_node_position(m, k) == i))
		k++;
	ln_graph_node_desc d = ln_graph_node(m, k);
	size_t len = (size_t)snprintf(buf, size, "(%d) <- ", i + 1);
	for (int j = 0; j < d.nin && len < size; j++) {
		char label[32];
		lnn_node_label(m, d.in[j], label, sizeof label);
		len += (size_t)snprintf(buf + len, size - len, "%s%s", j ? ", " : "", label);
	}
}

bool lnn_outputs_line(const ln_module *m, char *buf, size_t size)
{
	if (m->cls != &ln_graph_class || ln_graph_nnodes(m) == 0)
		return false;
	size_t len = (size_t)snprintf(buf, size, "outputs: ");
	for (int k = 0; k < ln_graph_noutputs(m) && len < size; k++) {
		char label[32];
		lnn_node_label(m, ln_graph_output_node(m, k), label, sizeof label);
		len += (size_t)snprintf(buf + len, size - len, "%s%s", k ? ", " : "", label);
	}
	return true;
}

/* ---- joins, Residual, AdaptiveAvgPool2d ------------------------------------------------- */

/* nn.Add(), nn.Mul(): upvalue 2 is the class. */
static int l_join(lua_State *L)
{
	const ln_module_class *cls = lua_touserdata(L, lua_upvalueindex(2));
	char fname[32];
	snprintf(fname, sizeof fname, "nn.%s", cls->name);
	lnL_checknargs(L, 0, fname);
	module_box *b = lnn_new_module_box(L, cls);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_module_create(&m, cls, NULL, NULL, &err);
	return lnn_module_done(L, b, m, st, &err, fname);
}

/* An integer argument, for the constructors below. */
static lua_Integer check_integer(lua_State *L, int arg, const char *fname, const char *what)
{
	if (!lua_isinteger(L, arg)) {
		char num[64];
		luaL_error(L, "%s: %s must be an integer, got %s", fname, what,
		           lua_type(L, arg) == LUA_TNUMBER ? lnL_numstr(num, sizeof num, L, arg)
		                                           : lnL_pushwhat(L, arg));
	}
	return lua_tointeger(L, arg);
}

/* nn.Concat(dim): dim an integer, negative counting from the end. */
static int l_concat(lua_State *L)
{
	lnL_checknargs(L, 1, "nn.Concat");
	lua_Integer dim = check_integer(L, 1, "nn.Concat", "dim");
	if (dim == 0 || dim < -LN_MAX_DIMS || dim > LN_MAX_DIMS)
		return luaL_error(L, "nn.Concat: dim must be 1..%d or -%d..-1, got %I", LN_MAX_DIMS,
		                  LN_MAX_DIMS, (LUAI_UACINT)dim);
	module_box *b = lnn_new_module_box(L, &ln_concat_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_concat_new(&m, (int)dim, &err);
	return lnn_module_done(L, b, m, st, &err, "nn.Concat");
}

/* nn.Residual(block[, proj]): modules or custom modules (Lua tables). */
static int l_residual(lua_State *L)
{
	lnL_checknargs(L, 2, "nn.Residual");
	luaL_checkany(L, 1);
	lua_settop(L, 2);
	bool has_proj = !lua_isnil(L, 2);
	module_box *b = lnn_new_module_box(L, &ln_residual_class);  /* 3 */
	ln_module *block = NULL, *proj = NULL, *m = NULL;
	ln_error err;
	ln_status st = lnn_to_module(L, 1, &block, &err);
	if (st == LN_OK && has_proj && (st = lnn_to_module(L, 2, &proj, &err)) != LN_OK)
		ln_error_prefix(&err, "proj: ");
	if (st == LN_OK)
		st = ln_residual_new(&m, block, proj, &err);
	ln_module_release(block);
	ln_module_release(proj);
	lnn_module_done(L, b, m, st, &err, "nn.Residual");
	lnn_push_children(L, 3);
	lua_pushvalue(L, 1);
	lua_rawseti(L, -2, 1);
	if (has_proj) {
		lua_pushvalue(L, 2);
		lua_rawseti(L, -2, 2);
	}
	lua_settop(L, 3);
	return 1;
}

/* nn.AdaptiveAvgPool2d(size): size a number (square) or {h, w}. */
static int l_adaptive(lua_State *L)
{
	static const char *fname = "nn.AdaptiveAvgPool2d";
	lnL_checknargs(L, 1, fname);
	lua_Integer hw[2];
	if (lua_istable(L, 1)) {
		if (luaL_len(L, 1) != 2)
			return luaL_error(L, "%s: size must be a number or {h, w}, got a table of %I "
			                  "entries", fname, (LUAI_UACINT)luaL_len(L, 1));
		for (int i = 0; i < 2; i++) {
			lua_rawgeti(L, 1, i + 1);
			hw[i] = check_integer(L, -1, fname, i ? "size[2]" : "size[1]");
			lua_pop(L, 1);
		}
	} else {
		hw[0] = hw[1] = check_integer(L, 1, fname, "size");
	}
	for (int i = 0; i < 2; i++)
		if (hw[i] < 1 || hw[i] > INT32_MAX)
			return luaL_error(L, "%s: the output size must be >= 1, got %I", fname,
			                  (LUAI_UACINT)hw[i]);
	module_box *b = lnn_new_module_box(L, &ln_adaptive_avgpool2d_class);
	ln_module *m = NULL;
	ln_error err;
	ln_status st = ln_adaptive_avgpool2d_new(&m, hw[0], hw[1], &err);
	return lnn_module_done(L, b, m, st, &err, fname);
}

/* ---- registration ------------------------------------------------------------------ */

const luaL_Reg lnn_graph_methods[] = {
	{"nodes", graph_nodes},
	{NULL, NULL},
};

void lnn_open_graph(lua_State *L, int nn)
{
	int state = lua_gettop(L);
	luaL_newmetatable(L, NODE_MT);
	lua_pushcfunction(L, node_index);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, node_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);

	lua_newtable(L);
	lua_newtable(L);
	lua_pushliteral(L, "k");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	lua_setfield(L, LUA_REGISTRYINDEX, AT_NODE_REG);

	static const luaL_Reg fns[] = {
		{"Input", l_input},
		{"node", l_node},
		{"Graph", l_graph},
		{"Concat", l_concat},
		{"Residual", l_residual},
		{"AdaptiveAvgPool2d", l_adaptive},
		{NULL, NULL},
	};
	lua_pushvalue(L, nn);
	lua_pushvalue(L, state);
	luaL_setfuncs(L, fns, 1);
	lua_pop(L, 1);
	static const ln_module_class *const joins[] = {&ln_add_class, &ln_mul_class};
	for (size_t i = 0; i < sizeof joins / sizeof joins[0]; i++) {
		lua_pushvalue(L, state);
		lua_pushlightuserdata(L, (void *)joins[i]);
		lua_pushcclosure(L, l_join, 2);
		lua_setfield(L, nn, joins[i]->name);
	}
	lua_settop(L, state);
}
