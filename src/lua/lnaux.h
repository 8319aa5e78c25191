/*
 * lnaux.h -- helpers shared by the Lua bindings (mirrors lauxlib's luaL_).
 *
 * A tensor in Lua is a full userdata holding an ln_tensor by value, with
 * metatable "lunet.Tensor".  It is born empty (storage NULL) and filled
 * afterwards, so that a failure in between leaves nothing to leak: the
 * userdata's __gc releases whatever was attached.  __gc and __close are
 * the same idempotent function; a closed tensor raises an error when used.
 */
#ifndef LN_LNAUX_H
#define LN_LNAUX_H

#include <stdbool.h>

#include <lauxlib.h>
#include <lua.h>

#include "core/error.h"
#include "core/tensor.h"

#define LN_TENSOR_MT "lunet.Tensor"

/* Pushes a new empty tensor userdata and returns its ln_tensor, to be
 * filled by a core function.  If that fails, just raise: __gc cleans up. */
ln_tensor *lnL_newtensor(lua_State *L);

/* Pushes a new userdata that is a view of src (shares its storage). */
ln_tensor *lnL_pushview(lua_State *L, const ln_tensor *src);

/* The tensor at arg, or a type error ("bad argument #1 to 'matmul'
 * (lunet.Tensor expected, got table)"); a closed tensor is an error too. */
ln_tensor *lnL_checktensor(lua_State *L, int arg);
/* The tensor at arg, or NULL if it is not a tensor userdata. */
ln_tensor *lnL_testtensor(lua_State *L, int arg);
/* The open tensor at arg, for a function that knows its name even when
 * Lua does not (a method called through pcall(m.forward, m, x)): else
 * "<cls>:<method>: expected <what> as a lunet.Tensor, got nil", or
 * "<cls>:<method>: <what> is a closed tensor" (method NULL: "<cls>: ..."). */
ln_tensor *lnL_checkargtensor(lua_State *L, int arg, const char *cls, const char *method,
                              const char *what);

/* The value at arg as a tensor: a tensor userdata is returned as is; a
 * (nested) table of numbers is converted into a new tensor pushed onto
 * the stack (ragged tables and non-numbers raise "fname: ...").  Used for
 * targets and labels given as plain tables. */
ln_tensor *lnL_totensor(lua_State *L, int arg, const char *fname);

/* Name of the type of the value at idx ("lunet.Tensor" for tensors and
 * other named userdata), as luaL_typeerror gives it. */
const char *lnL_tname(lua_State *L, int idx);
/* A number at idx for a message: integers exactly, NaN as "nan". */
const char *lnL_numstr(char *buf, size_t size, lua_State *L, int idx);

/* Raises the Lua error "fname: <err->msg>".  Never returns. */
int lnL_error(lua_State *L, const char *fname, const ln_error *err);

/* Raises a Lua error with a printf-formatted message, for the formats
 * that luaL_error (lua_pushfstring) lacks: %lld, %zu, %g, widths.  The
 * message is built in a 1024-byte buffer on the C stack (longer ones are
 * cut short), so the longjmp skips no heap memory.  Never returns. */
int lnL_raisef(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads a shape from the arguments starting at arg: either integers
 * (2,3) or one table ({2,3}).  Raises "fname: ..." on bad sizes.
 * Returns ndim. */
int lnL_checkshape(lua_State *L, int arg, int64_t shape[LN_MAX_DIMS], const char *fname);

/* The path argument at arg: a string with no NUL byte (a NUL would cut
 * the name the system sees short, so another file would be used).
 * Raises "fname: path contains a NUL byte".  *len (if len is not NULL)
 * gets the length. */
const char *lnL_checkpath(lua_State *L, int arg, const char *fname, size_t *len);

/* ---- arguments and option tables -------------------------------------------
 *
 * One rule for every function of the bindings that takes an options table
 * (its last argument, at index arg): nothing may follow it ("fname:
 * expected at most 3 arguments, got 4"), it is a table or nothing
 * ("fname: options must be a table, got number"), every key is one of
 * the known ones ("fname: unknown option 'foo' (options: bias)"; "(it
 * takes no options)" when there are none), and every value has its type
 * ("fname: option 'bias' must be a boolean, got number").  Ranges and
 * meanings are the caller's to check. */
typedef struct lnL_option {
	const char *key;  /* NULL ends a list */
	int type;         /* LUA_TNUMBER, LUA_TBOOLEAN, LUA_TSTRING, LUA_TTABLE, or
	                     LUA_TNONE for a value the caller checks itself */
} lnL_option;

/* Checks the options table at arg (absent or nil: none given) against
 * `known`, as above.  Raises; returns normally only when all is well. */
void lnL_checkoptions(lua_State *L, int arg, const char *fname, const lnL_option *known);
/* "fname: expected at most n arguments, got m" ("expected no arguments")
 * when more than n arguments were passed. */
void lnL_checknargs(lua_State *L, int n, const char *fname);
/* lunet._optionerror(fname, known, opts) -> nil, or the message the rule
 * above gives for opts, for the pure-Lua parts to raise at their caller's
 * level.  known is a list of {key, type} pairs ({"shuffle", "boolean"});
 * type "any" leaves the value to the caller. */
int lnL_optionerror(lua_State *L);
/* The value of option key in the (checked) table at arg, or def when the
 * table or the key is absent. */
lua_Number lnL_optnumber(lua_State *L, int arg, const char *key, lua_Number def);
int lnL_optboolean(lua_State *L, int arg, const char *key, int def);

/* Copies a non-contiguous tensor into a new contiguous one pushed onto the
 * stack and returns it; a contiguous tensor is returned as is (nothing
 * pushed).  *pushed tells which. */
const ln_tensor *lnL_contiguous(lua_State *L, const ln_tensor *t, const char *fname, int *pushed);

/* Tells Lua's collector about `bytes` of memory it cannot see (tensor
 * storage lives outside the Lua heap), so that loops creating tensors do
 * not outrun it. */
void lnL_gcpressure(lua_State *L, size_t bytes);

/* Prints "lunet: warning: <msg>" to stderr once per key per process,
 * unless warnings were turned off with lunet.warnings(false). */
void lnL_warn_once(lua_State *L, const char *key, const char *msg);

/* The userdata at idx when its metatable has the field `mark` (how the
 * bindings tell their boxes apart: "__lunet_module"), else NULL. */
void *lnL_testmarked(lua_State *L, int idx, const char *mark);

/* Modules and optimisers in Lua are userdata boxes holding one reference
 * (NULL once closed), with metatables "lunet.nn.<Class>" and
 * "lunet.optim.<Kind>".  These let other bindings (save/load) use them
 * without knowing that layout. */
struct ln_module;
struct ln_optim;
typedef struct lnL_module_box { struct ln_module *m; } lnL_module_box;
typedef struct lnL_optim_box { struct ln_optim *opt; } lnL_optim_box;

/* Raises the error of a method called on something that is not its
 * object (argument 1), which is almost always m.forward(x) written for
 * m:forward(x): "module:forward: got lunet.Tensor instead of the module:
 * call methods with a colon, m:forward(x), not m.forward(x)".  kind is
 * "module", "loss" or "optimizer".  Never returns. */
int lnL_selferror(lua_State *L, const char *kind, const char *method);
/* Pushes and returns what the value at idx is, for a message where a
 * module belongs: its type name ("function", "lunet.Tensor"), or for a
 * constructor of nn passed without calling it, "nn.ReLU, the constructor,
 * where a module belongs: call it, nn.ReLU()". */
const char *lnL_pushwhat(lua_State *L, int idx);
/* The module box at idx, or NULL if the value is not a module. */
lnL_module_box *lnL_testmodule(lua_State *L, int idx);
/* Pushes a view of parameter i of the open module at module_idx (of its
 * gradient when grad) that remembers where it came from: an optimiser
 * built from a plain table of such views knows which module holds each
 * tensor (lnL_paramowner), as one built from the model does. */
ln_tensor *lnL_pushparam(lua_State *L, int module_idx, int i, bool grad);
/* For a tensor at idx that lnL_pushparam made and that still describes
 * that tensor of a module that is still open: the module (borrowed), the
 * index and whether it is the gradient.  False for any other value. */
bool lnL_paramowner(lua_State *L, int idx, struct ln_module **m, int *i, bool *grad);
/* Pushes the Lua table behind an External module (a custom module written
 * in Lua, inside a container), or nil if m is not one (lnn.c). */
void lnL_pushexternal(lua_State *L, struct ln_module *m);
/* Pushes a new Lua object for m, taking one new reference to it.  Raises
 * if m's class has no binding. */
void lnL_pushmodule(lua_State *L, struct ln_module *m);
/* Pushes the Lua table behind a custom module (an External wrapping a Lua
 * table placed in a container), or nil if m is not one. */
void lnL_pushexternal(lua_State *L, struct ln_module *m);
/* The optimiser box at idx, or NULL if the value is not an optimiser. */
lnL_optim_box *lnL_testoptim(lua_State *L, int idx);
/* Pushes a new, empty optimiser userdata for the optimiser called name
 * ("SGD", "AdamW"; metatable lunet.optim.<name>); the caller stores the
 * optimiser into the box, which then owns it. */
lnL_optim_box *lnL_newoptim(lua_State *L, const char *name);
/* Pushes the hyper-parameters of c by name: as opt:state() gives them
 * ({lr=, beta1=, beta2=, decoupled=...}), or as its constructor takes them
 * when `options` (pairs as one table: betas = {b1, b2}). */
struct ln_optim_config;
void lnL_pushoptimconfig(lua_State *L, const struct ln_optim_config *c, bool options);

/* Each registers its functions into the table on top of the stack (the
 * lunet table); nn, optim and data create their sub-tables. */
void lnL_open_tensor(lua_State *L);
void lnL_open_nn(lua_State *L);
void lnL_open_optim(lua_State *L);
void lnL_open_data(lua_State *L);
void lnL_open_save(lua_State *L);
void lnL_open_bench(lua_State *L);  /* lunet.alloc_stats, gemm_threads, bench_gemm, bench_fma (lbench.c) */
void lnL_open_sys(lua_State *L);    /* lunet.sys: mkdir, isatty, rng state (lsys.c) */
void lnL_open_dist(lua_State *L);   /* lunet.dist: MPI data parallelism (ldist.c) */
/* state_dict/load_state_dict on every module, lunet.save_safetensors and
 * lunet.load_safetensors (linterop.c); after lnL_open_nn. */
void lnL_open_interop(lua_State *L);

#endif
