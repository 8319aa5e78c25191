/*
 * lnn.h -- what the three files of the lunet.nn binding share:
 *
 *   lnn_module.c     the module userdata and its methods, the layer
 *                    constructors, nn.init, and lnL_open_nn
 *   lnn_container.c  Sequential and the custom modules written in Lua
 *                    that it can hold
 *   lnn_graph.c      graphs: nn.Input, nodes (m(x)), nn.Graph, the joins
 *                    (Add, Mul, Concat), nn.Residual, AdaptiveAvgPool2d
 *   lnn_loss.c       losses and output/loss pairings
 *
 * Private to those files.
 *
 * A module is a full userdata holding one reference to an ln_module, with
 * the metatable "lunet.nn.<Class>" (so type errors name the class).  Its
 * user values: 1, a table of the Lua objects of its children (for a
 * Sequential, so that seq:get(i) returns the very object that was added)
 * and of fields a script set on it; 2 and 3, the tensor views last handed
 * out for output and grad_input (lnn_push_cached_view); 4 and 5, tables
 * of such views for a Graph's several outputs and a module's several
 * input gradients.
 *
 * State: everything the binding keeps between calls lives in one lnn_state
 * per Lua state (a userdata in the registry, no file-level variable), and
 * every function of lunet.nn receives it as upvalue 1.
 */
#ifndef LN_LNN_H
#define LN_LNN_H

#include <stdbool.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "lnaux.h"
#include "nn/loss.h"
#include "nn/module.h"

#define LNN_MT_PREFIX "lunet.nn."

typedef lnL_module_box module_box;

typedef struct lnn_state {
	/* The thread of the forward/backward now running; custom modules in a
	 * container call back into Lua on it (NULL outside such a call). */
	lua_State *running;
	/* The storage of the output the last module forward returned, and the
	 * class of the layer that computed it (the last leaf of a container),
	 * for the pairing warnings of the losses. */
	const ln_storage *last_storage;
	const ln_module_class *last_cls;
	/* Nodes made so far (lnn_graph.c): each node's number, which orders
	 * a graph's nodes as they were made. */
	int64_t nodes_made;
} lnn_state;

/* The state of the function running (its upvalue 1). */
#define LNN_STATE(L) ((lnn_state *)lua_touserdata((L), lua_upvalueindex(1)))

enum {
	UV_FIELDS = 1,
	UV_OUTPUT,
	UV_GRAD_INPUT,
	UV_OUTPUTS,      /* a table of views: the outputs of a Graph with several */
	UV_GRAD_INPUTS,  /* a table of views: the input gradients of a module with several */
	UV_COUNT = UV_GRAD_INPUTS
};

/* ---- lnn_module.c ------------------------------------------------------------- */

/* Makes the metatable "lunet.nn.<name>" of a module or loss class: the
 * field `mark` (lnL_testmarked), __index a closure of index_fn with the
 * state (at `state`) and the methods table (at `methods`) as upvalues, and
 * the metamethods in meta with the state as upvalue. */
void lnn_new_metatable(lua_State *L, const char *name, const char *mark, lua_CFunction index_fn,
                       const luaL_Reg *meta, int state, int methods);

/* Pushes a new empty module userdata of class cls; the constructor then
 * stores the module (lnn_module_done).  If it fails first, __gc sees NULL. */
module_box *lnn_new_module_box(lua_State *L, const ln_module_class *cls);
/* Finishes a constructor: raises "fname: msg" on failure, else stores m in
 * b and returns 1 (the userdata is on top). */
int lnn_module_done(lua_State *L, module_box *b, ln_module *m, ln_status st, const ln_error *err,
                    const char *fname);
/* The open module at idx, or an error naming `method` and what was found. */
ln_module *lnn_check_module(lua_State *L, int idx, const char *method);
/* The class name of the module userdata at idx, from its metatable (also
 * for a closed one). */
const char *lnn_box_class(lua_State *L, int idx);
/* Pushes the list of children kept in the user value of the module at
 * idx (created empty if missing). */
void lnn_push_children(lua_State *L, int idx);
/* Pushes a view of buffer t of the object at idx (nil when t is empty),
 * kept in its user value `slot` and handed out again while it still
 * describes t. */
void lnn_push_cached_view(lua_State *L, int idx, int slot, const ln_tensor *t);
/* t, or a contiguous copy of it pushed onto the stack; errors name
 * "cls:method". */
const ln_tensor *lnn_contiguous_arg(lua_State *L, const ln_tensor *t, const char *cls,
                                    const char *method);

/* ---- lnn_container.c ------------------------------------------------------------ */

/* The module at idx as an ln_module, with one new reference in *out: a
 * module userdata's own, or a Lua table with forward/backward wrapped in
 * an External (a custom module; layers.h).  LN_EARG for anything else or
 * a closed module, LN_ENOMEM; err says which.  Raises nothing, so a
 * caller holding other references can release them first. */
ln_status lnn_to_module(lua_State *L, int idx, ln_module **out, ln_error *err);
/* Sequential's methods (add, get), merged into the methods of every module. */
extern const luaL_Reg lnn_container_methods[];
/* Registers nn.Sequential and the registry table custom modules need;
 * the lnn_state is on top of the stack, nn at index nn. */
void lnn_open_container(lua_State *L, int nn);

/* ---- lnn_graph.c ------------------------------------------------------------------ */

/* Whether the value at idx is a node (nn.Input(), or a module called on
 * nodes). */
bool lnn_is_node(lua_State *L, int idx);
/* m(n1, n2, ...): the module (or Lua table) at 1 called on the nodes at
 * 2..top; pushes the new node.  Raises on a module already at a node, a
 * closed one, or a number of nodes it does not take. */
int lnn_node_call(lua_State *L);
/* "(3) <- (1), input 1", how print(m) heads child i (0-based) of m: a
 * Graph's node with what it reads, the class's child_label ("block"), or
 * the position "(3)". */
void lnn_child_label(const ln_module *m, int i, char *buf, size_t size);
/* "outputs: (4), (3)", the line that closes a Graph's listing; false (buf
 * untouched) for any other module. */
bool lnn_outputs_line(const ln_module *m, char *buf, size_t size);
/* "(3)" for a Graph's module node 3, "input 1" for its first input node. */
void lnn_node_label(const ln_module *g, int k, char *buf, size_t size);
/* Graph's method (nodes), merged into the methods of every module. */
extern const luaL_Reg lnn_graph_methods[];
/* Registers nn.Input, nn.node, nn.Graph, nn.Add, nn.Mul, nn.Concat,
 * nn.Residual and nn.AdaptiveAvgPool2d; the lnn_state is on top of the
 * stack, nn at index nn. */
void lnn_open_graph(lua_State *L, int nn);

/* ---- lnn_loss.c ------------------------------------------------------------------ */

/* Registers the losses and nn.OutputLoss, nn.is_loss; the lnn_state is on
 * top of the stack, nn at index nn. */
void lnn_open_loss(lua_State *L, int nn);

#endif
