/*
 * loptim.c -- lunet.optim: one constructor per optimiser description
 * (src/nn/optim.c), all driven by that description.
 *
 *     local opt = optim.SGD(model, {lr=0.1, momentum=0.9})
 *     local opt = optim.Adam(params, grads, {lr=1e-3, betas={0.9,0.999}})
 *     opt:zero_grad()  opt:step()  opt.lr = 0.01  opt.steps
 *     local st = opt:state()   opt:load_state(st)
 *
 * The options a constructor accepts, their types, the fields of an
 * optimiser, tostring and state()/load_state() all come from the
 * description's list of values: nothing here names a hyper-parameter.
 *
 * Parameters.  Built from a model, an optimiser takes the parameters of
 * the module tree in C (ln_optim_new_module), each with the module that
 * holds it.  A custom module written in Lua inside a container keeps its
 * tensors in Lua: its own parameters method is asked for them.  A plain
 * table of tensors (with the grads as a second table) is accepted too;
 * views that a module handed out (m.weight, m:parameters()) still say
 * which module holds them (lnL_paramowner).
 *
 * An optimiser is a full userdata holding an ln_optim pointer, born NULL
 * and filled once the C optimiser is built, so that a failure in between
 * leaves nothing to free; __gc releases it.  The C optimiser keeps its own
 * views of the parameters and gradients: the model may be collected first.
 *
 * Errors name the constructor or method ("optim.SGD: ", "SGD:step: "),
 * added here to the C messages, which never name the optimiser.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "lnaux.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/optim.h"

typedef lnL_optim_box optim_ud;  /* opt: NULL until built, and after close */

#define MT_PREFIX "lunet.optim."
/* A field of every optimiser metatable holding the optimiser's name: it
 * marks the metatable as an optimiser's and names it in messages. */
#define OPTIM_KIND "__lunet_optim"
#define PLIST_MT "lunet.optim.plist"

lnL_optim_box *lnL_testoptim(lua_State *L, int idx)
{
	/* one lookup instead of a luaL_testudata per name */
	if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
		return NULL;
	int marked = lua_getfield(L, -1, OPTIM_KIND) == LUA_TSTRING;
	lua_pop(L, 2);
	return marked ? lua_touserdata(L, idx) : NULL;
}

lnL_optim_box *lnL_newoptim(lua_State *L, const char *name)
{
	optim_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
	u->opt = NULL;
	char mt[64];
	snprintf(mt, sizeof mt, MT_PREFIX "%s", name);
	luaL_setmetatable(L, mt);
	return u;
}

/* The optimiser at arg (any kind), or a type error. */
static optim_ud *check_ud(lua_State *L, int arg)
{
	optim_ud *u = lnL_testoptim(L, arg);
	if (!u)
		luaL_typeerror(L, arg, "lunet optimizer");
	return u;
}

/* The open optimiser at arg; a closed one raises "<Kind>:<method>:
 * optimizer is closed", the kind read from the metatable. */
static ln_optim *check_optim(lua_State *L, int arg, const char *method)
{
	if (arg == 1 && !lnL_testoptim(L, 1))
		lnL_selferror(L, "optimizer", method);  /* opt.step() for opt:step() */
	optim_ud *u = check_ud(L, arg);
	if (!u->opt) {
		luaL_getmetafield(L, arg, OPTIM_KIND);  /* a string: lnL_testoptim checked it */
		luaL_error(L, "%s:%s: optimizer is closed", lua_tostring(L, -1), method);
	}
	return u->opt;
}

/* Raises "optim.<name>: <msg>" for a C error of the optimiser called
 * name: the context goes in front once, the C message is used whole. */
static int fail_optim(lua_State *L, const char *name, const ln_error *err)
{
	return lnL_raisef(L, "optim.%s: %s", name, err->msg);
}

/* ======================================================================
 * Hyper-parameters as Lua values
 * ====================================================================== */

/* True when value i is the first of a pair (Adam's beta1 of "betas"). */
static bool pair_starts(const ln_optim_desc *d, int i, int n)
{
	return d->values[i].pair && i + 1 < n && d->values[i + 1].pair &&
	       strcmp(d->values[i].pair, d->values[i + 1].pair) == 0;
}

static void push_value(lua_State *L, const ln_optim_config *c, int i)
{
	if (c->desc->values[i].type == LN_OPTIM_BOOL)
		lua_pushboolean(L, c->v[i] != 0);
	else
		lua_pushnumber(L, c->v[i]);
}

void lnL_pushoptimconfig(lua_State *L, const ln_optim_config *c, bool options)
{
	const ln_optim_desc *d = c->desc;
	int n = ln_optim_desc_nvalues(d);
	lua_createtable(L, 0, n);
	for (int i = 0; i < n; i++) {
		if (options && pair_starts(d, i, n)) {
			lua_createtable(L, 2, 0);
			lua_pushnumber(L, c->v[i]);
			lua_rawseti(L, -2, 1);
			lua_pushnumber(L, c->v[i + 1]);
			lua_rawseti(L, -2, 2);
			lua_setfield(L, -2, d->values[i].pair);
			i++;
			continue;
		}
		push_value(L, c, i);
		lua_setfield(L, -2, d->values[i].name);
	}
}

/* The option names of d, as a constructor takes them: "lr, betas, eps". */
static const char *option_list(const ln_optim_desc *d, char *buf, size_t size)
{
	int n = ln_optim_desc_nvalues(d);
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < n && used < size; i++) {
		const char *name = pair_starts(d, i, n) ? d->values[i++].pair : d->values[i].name;
		int w = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", name);
		if (w < 0)
			break;
		used += (size_t)w;
	}
	return buf;
}

/* The value at -1 as value i of cfg, or an error "<fn>: <pre><name><post>
 * must be a number/boolean, got <type>" (pre and post: "option '" and "'",
 * "config." and ""). */
static void read_value(lua_State *L, ln_optim_config *cfg, int i, const char *fn,
                       const char *pre, const char *post)
{
	const ln_optim_value *e = &cfg->desc->values[i];
	bool flag = e->type == LN_OPTIM_BOOL;
	if (lua_type(L, -1) != (flag ? LUA_TBOOLEAN : LUA_TNUMBER))
		lnL_raisef(L, "%s: %s%s%s must be a %s, got %s", fn, pre, e->name, post,
		           flag ? "boolean" : "number", luaL_typename(L, -1));
	double v = flag ? lua_toboolean(L, -1) : lua_tonumber(L, -1);
	ln_optim_config_set(cfg, e->name, v, NULL);
}

/* The value at -1 as the pair that starts at value i: a table of two
 * numbers. */
static void read_pair(lua_State *L, ln_optim_config *cfg, int i, const char *fn)
{
	const char *pair = cfg->desc->values[i].pair;
	if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 2)
		lnL_raisef(L, "%s: option '%s' must be a table of two numbers", fn, pair);
	for (int k = 0; k < 2; k++) {
		if (lua_rawgeti(L, -1, k + 1) != LUA_TNUMBER)
			lnL_raisef(L, "%s: option '%s' must be a table of two numbers, element %d is %s", fn,
			           pair, k + 1, luaL_typename(L, -1));
		ln_optim_config_set(cfg, cfg->desc->values[i + k].name, lua_tonumber(L, -1), NULL);
		lua_pop(L, 1);
	}
}

/* Reads the options table at idx (or none) into cfg; every key must be an
 * option of the description, with a value of its type. */
static void read_options(lua_State *L, int idx, ln_optim_config *cfg, const char *fn)
{
	if (lua_isnoneornil(L, idx))
		return;
	if (!lua_istable(L, idx))
		luaL_error(L, "%s: options must be a table, got %s", fn, luaL_typename(L, idx));
	const ln_optim_desc *d = cfg->desc;
	int n = ln_optim_desc_nvalues(d);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "%s: option names must be strings, got %s", fn, luaL_typename(L, -2));
		const char *k = lua_tostring(L, -2);
		int i, found = 0;
		for (i = 0; i < n; i++) {
			if (pair_starts(d, i, n)) {
				if (strcmp(k, d->values[i].pair) == 0) {
					read_pair(L, cfg, i, fn);
					found = 1;
					break;
				}
				i++;
			} else if (strcmp(k, d->values[i].name) == 0) {
				read_value(L, cfg, i, fn, "option '", "'");
				found = 1;
				break;
			}
		}
		if (!found) {
			char list[256];
			lnL_raisef(L, "%s: unknown option '%s' (options: %s)", fn, k,
			           option_list(d, list, sizeof list));
		}
		lua_pop(L, 1);
	}
}

/* ======================================================================
 * Parameters
 * ====================================================================== */

/* The parameters an optimiser is being built over, in a userdata whose
 * __gc frees the array, so that a Lua error while they are gathered
 * leaks nothing.  The tensors point into the modules of the tree, which
 * `root` keeps alive (a custom module's parameters method runs Lua, which
 * may close the model), or into tensor userdata anchored in the `keep`
 * table; each entry holds a reference to its owner. */
typedef struct plist {
	ln_optim_entry *v;
	int n, cap;
	ln_module *root;  /* one reference, or NULL */
} plist;

/* Frees what pl holds (idempotent). */
static void plist_clear(plist *pl)
{
	for (int i = 0; pl->v && i < pl->n; i++)
		if (pl->v[i].owner)
			ln_module_release(pl->v[i].owner);
	ln_free(pl->v);
	pl->v = NULL;
	pl->n = 0;
	if (pl->root)
		ln_module_release(pl->root);
	pl->root = NULL;
}

static int plist_gc(lua_State *L)
{
	plist_clear(luaL_checkudata(L, 1, PLIST_MT));
	return 0;
}

static void plist_add(lua_State *L, plist *pl, const ln_tensor *p, const ln_tensor *g,
                      ln_module *owner, int index, const char *fn)
{
	if (pl->n == pl->cap) {
		if (pl->cap >= 1000000)
			lnL_raisef(L, "%s: too many parameter tensors (more than %d)", fn, pl->cap);
		int cap = pl->cap ? 2 * pl->cap : 16;
		ln_optim_entry *v = ln_malloc((size_t)cap * sizeof *v);
		if (!v)
			lnL_raisef(L, "%s: out of memory", fn);
		if (pl->n)
			memcpy(v, pl->v, (size_t)pl->n * sizeof *v);
		ln_free(pl->v);
		pl->v = v;
		pl->cap = cap;
	}
	/* an owner outside the model's tree (a view handed out by another
	 * module) could be closed by a parameters method that runs later */
	if (owner)
		ln_module_retain(owner);
	pl->v[pl->n++] = (ln_optim_entry){p, g, owner, index};
}

/* Adds the tensors of the tables at pidx (parameters) and gidx
 * (gradients), anchoring them in `keep`.  A parameter and gradient that a
 * module handed out as its own pair keep that module as their owner. */
static void add_tables(lua_State *L, plist *pl, int pidx, int gidx, int keep, const char *fn)
{
	lua_Unsigned np = lua_rawlen(L, pidx), ng = lua_rawlen(L, gidx);
	if (np != ng)
		lnL_raisef(L, "%s: %d parameters but %d gradients", fn, (int)np, (int)ng);
	if (np > 1000000)
		lnL_raisef(L, "%s: too many parameter tensors (%d)", fn, (int)np);
	for (lua_Unsigned i = 1; i <= np; i++) {
		ln_tensor *t[2];
		for (int k = 0; k < 2; k++) {
			lua_rawgeti(L, k == 0 ? pidx : gidx, (lua_Integer)i);
			t[k] = lnL_testtensor(L, -1);
			if (!t[k])
				lnL_raisef(L, "%s: %s %d is %s, expected lunet.Tensor", fn,
				           k == 0 ? "parameter" : "gradient", pl->n + 1, luaL_typename(L, -1));
		}
		ln_module *mp, *mg;
		int ip, ig;
		bool gp, gg;
		bool owned = lnL_paramowner(L, -2, &mp, &ip, &gp) && lnL_paramowner(L, -1, &mg, &ig, &gg) &&
		             mp == mg && ip == ig && !gp && gg;
		for (int k = 0; k < 2; k++)
			lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
		plist_add(L, pl, t[0], t[1], owned ? mp : NULL, owned ? ip : 0, fn);
	}
}

/* Calls the parameters method of the Lua table at idx (a custom module or
 * a model written in Lua) and adds what it returns.  A custom module
 * inside a container that has no parameters method has no parameters. */
static void add_lua_model(lua_State *L, plist *pl, int idx, int keep, bool required,
                          const char *fn)
{
	if (lua_getfield(L, idx, "parameters") == LUA_TNIL && !required) {
		lua_pop(L, 1);
		return;
	}
	lua_pushvalue(L, idx);
	lua_call(L, 1, 2);
	int top = lua_gettop(L);
	if (!lua_istable(L, top - 1) || !lua_istable(L, top)) {
		if (!required) {  /* as m:parameters() does for such a child */
			lua_settop(L, top - 2);
			return;
		}
		lnL_raisef(L, "%s: model:parameters() must return two tables, got %s and %s", fn,
		           luaL_typename(L, top - 1), luaL_typename(L, top));
	}
	add_tables(L, pl, top - 1, top, keep, fn);
	lua_settop(L, top - 2);
}

static bool has_external(const ln_module *m)
{
	if (m->cls == &ln_external_class)
		return true;
	for (int i = 0; i < m->nchildren; i++)
		if (has_external(m->children[i]))
			return true;
	return false;
}

/* Adds the parameters of the module tree m in the order of
 * ln_module_visit_params, a custom module's (from Lua) in its place. */
static void add_tree(lua_State *L, plist *pl, ln_module *m, int keep, const char *fn)
{
	if (m->cls == &ln_external_class) {
		lnL_pushexternal(L, m);
		if (lua_istable(L, -1))
			add_lua_model(L, pl, lua_gettop(L), keep, false, fn);
		lua_pop(L, 1);
		return;
	}
	for (int i = 0; i < m->nparams; i++)
		plist_add(L, pl, &m->param[i], &m->grad[i], m, i, fn);
	for (int i = 0; i < m->nchildren; i++)
		add_tree(L, pl, m->children[i], keep, fn);
}

/* ======================================================================
 * Construction
 * ====================================================================== */

/* optim.<Name>(model, [opts]) or optim.<Name>(params, grads, [opts]).
 * The name (a description's or a variant's) is upvalue 1. */
static int optim_new(lua_State *L)
{
	const char *ctor = lua_tostring(L, lua_upvalueindex(1));
	char fn[64];
	snprintf(fn, sizeof fn, "optim.%s", ctor);
	ln_optim_config cfg;
	ln_optim_config_init(&cfg, ctor, NULL);  /* the name is one of the table's */
	lua_settop(L, 3);

	/* what to optimise: a model (module or Lua table with a parameters
	 * method), or a table of tensors with a table of gradients */
	int t = lua_type(L, 1), opts = 2;
	lnL_module_box *mb = lnL_testmodule(L, 1);
	bool lua_model = false;
	if (lnL_testtensor(L, 1))
		lnL_raisef(L, "%s: expected a model or a table of parameter tensors, got a "
		           "lunet.Tensor (pass {t} and {grad})", fn);
	if (t == LUA_TTABLE) {
		lua_model = lua_getfield(L, 1, "parameters") != LUA_TNIL;
		lua_pop(L, 1);
		if (!lua_model) {
			if (!lua_istable(L, 2))
				lnL_raisef(L, "%s: a table of parameters needs a table of gradients as "
				           "argument 2, got %s", fn, luaL_typename(L, 2));
			opts = 3;
		}
	} else if (!mb) {
		lnL_raisef(L, "%s: expected a model or a table of parameter tensors, got %s", fn,
		           lnL_pushwhat(L, 1));
	}
	if (mb && !mb->m)
		lnL_raisef(L, "%s: the model is closed", fn);
	read_options(L, opts, &cfg, fn);
	const char *name = ln_optim_name(&cfg);  /* decoupled=true makes Adam "AdamW" */

	optim_ud *u = lnL_newoptim(L, name);  /* 4 */
	ln_error err;
	ln_status st;
	if (mb && !has_external(mb->m)) {
		st = ln_optim_new_module(&u->opt, &cfg, mb->m, &err);
	} else {
		plist *pl = lua_newuserdatauv(L, sizeof *pl, 0);  /* 5 */
		*pl = (plist){NULL, 0, 0, NULL};
		luaL_setmetatable(L, PLIST_MT);
		lua_newtable(L);  /* 6: keep */
		if (mb) {
			pl->root = mb->m;
			ln_module_retain(pl->root);
			add_tree(L, pl, pl->root, 6, fn);
		} else if (lua_model) {
			add_lua_model(L, pl, 1, 6, true, fn);
		} else {
			add_tables(L, pl, 1, 2, 6, fn);
		}
		st = ln_optim_new(&u->opt, &cfg, pl->n, pl->v, &err);
		plist_clear(pl);
		lua_settop(L, 4);
	}
	if (st != LN_OK)
		return fail_optim(L, name, &err);
	size_t bytes = 0;
	int n = ln_optim_nparams(u->opt);
	for (int i = 0; i < n; i++)
		bytes += (size_t)ln_tensor_numel(ln_optim_param(u->opt, i)) * sizeof(float) *
		         (size_t)ln_optim_nstate(u->opt);
	lnL_gcpressure(L, bytes);
	return 1;
}

/* ======================================================================
 * Methods
 * ====================================================================== */

static int m_step(lua_State *L)
{
	ln_optim_step(check_optim(L, 1, "step"));
	return 0;
}

static int m_zero_grad(lua_State *L)
{
	ln_optim_zero_grad(check_optim(L, 1, "zero_grad"));
	return 0;
}

/* opt:state() -> {kind=, steps=, config={...}, params={{name=tensor,...},...}}.
 * The state tensors are views of the optimiser's own buffers: a saver
 * reads them, and they follow later steps. */
static int m_state(lua_State *L)
{
	ln_optim *opt = check_optim(L, 1, "state");
	lua_newtable(L);
	lua_pushstring(L, ln_optim_name(ln_optim_get_config(opt)));
	lua_setfield(L, -2, "kind");
	lua_pushinteger(L, (lua_Integer)ln_optim_step_count(opt));
	lua_setfield(L, -2, "steps");
	lnL_pushoptimconfig(L, ln_optim_get_config(opt), false);
	lua_setfield(L, -2, "config");
	int n = ln_optim_nparams(opt), ns = ln_optim_nstate(opt);
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		lua_createtable(L, 0, ns);
		for (int k = 0; k < ns; k++) {
			lnL_pushview(L, ln_optim_state(opt, i, k));
			lua_setfield(L, -2, ln_optim_state_name(opt, k));
		}
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "params");
	return 1;
}

/* Reads a config table (as state() writes it) at idx into cfg: each key
 * must be a value of the description, of its type; absent ones keep
 * their value. */
static void read_config(lua_State *L, int idx, ln_optim_config *cfg, const char *fn)
{
	const ln_optim_desc *d = cfg->desc;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		int i = lua_type(L, -2) == LUA_TSTRING ? ln_optim_value_index(d, lua_tostring(L, -2))
		                                        : -1;
		if (i < 0) {
			char list[256] = "";
			size_t used = 0;
			for (int j = 0; j < ln_optim_desc_nvalues(d) && used < sizeof list; j++)
				used += (size_t)snprintf(list + used, sizeof list - used, "%s%s",
				                         j ? ", " : "", d->values[j].name);
			lnL_raisef(L, "%s: config has no value %s%s%s (%s has: %s)", fn,
			           lua_type(L, -2) == LUA_TSTRING ? "'" : "",
			           lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
			                                           : luaL_typename(L, -2),
			           lua_type(L, -2) == LUA_TSTRING ? "'" : "", d->name, list);
		}
		read_value(L, cfg, i, fn, "config.", "");
		lua_pop(L, 1);
	}
}

/* opt:load_state(st): the inverse of state().  Everything is checked
 * before anything changes: kind, parameter count, each buffer's presence
 * and shape, each hyper-parameter's value. */
static int m_load_state(lua_State *L)
{
	static const char *fn = "optim:load_state";
	ln_optim *opt = check_optim(L, 1, "load_state");
	luaL_checktype(L, 2, LUA_TTABLE);
	const char *kind = ln_optim_name(ln_optim_get_config(opt));
	lua_settop(L, 2);

	lua_getfield(L, 2, "kind");  /* 3 */
	if (!lua_isstring(L, 3) || strcmp(lua_tostring(L, 3), kind) != 0)
		luaL_error(L, "%s: state is for %s, this optimizer is %s", fn,
		           lua_isstring(L, 3) ? lua_tostring(L, 3) : luaL_typename(L, 3), kind);
	lua_getfield(L, 2, "steps");  /* 4 */
	if (!lua_isinteger(L, 4) || lua_tointeger(L, 4) < 0)
		luaL_error(L, "%s: 'steps' must be an integer >= 0", fn);
	lua_getfield(L, 2, "params");  /* 5 */
	if (!lua_istable(L, 5))
		luaL_error(L, "%s: 'params' must be a table", fn);
	int n = ln_optim_nparams(opt), ns = ln_optim_nstate(opt);
	if ((int)lua_rawlen(L, 5) != n)
		luaL_error(L, "%s: state has %d parameters, this optimizer has %d", fn,
		           (int)lua_rawlen(L, 5), n);
	lua_getfield(L, 2, "config");  /* 6 */
	if (!lua_isnil(L, 6) && !lua_istable(L, 6))
		luaL_error(L, "%s: 'config' must be a table", fn);

	/* Check pass: every state tensor, by name. */
	for (int i = 0; i < n; i++) {
		if (lua_rawgeti(L, 5, i + 1) != LUA_TTABLE)
			luaL_error(L, "%s: params[%d] must be a table", fn, i + 1);
		for (int k = 0; k < ns; k++) {
			const char *name = ln_optim_state_name(opt, k);
			lua_getfield(L, -1, name);
			ln_tensor *t = lnL_testtensor(L, -1);
			if (!t || ln_tensor_is_empty(t))
				luaL_error(L, "%s: params[%d].%s must be a tensor, got %s", fn, i + 1, name,
				           t ? "a closed tensor" : luaL_typename(L, -1));
			const ln_tensor *p = ln_optim_param(opt, i);
			if (!ln_tensor_same_shape(t, p)) {
				char a[64], b[64];
				lnL_raisef(L, "%s: params[%d].%s has shape %s, the parameter has shape %s", fn,
				           i + 1, name, ln_tensor_shape_str(t, a, sizeof a),
				           ln_tensor_shape_str(p, b, sizeof b));
			}
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	/* Hyper-parameters: build the new configuration, then apply it whole
	 * (ln_optim_set_config validates and changes nothing on error). */
	ln_optim_config cfg = *ln_optim_get_config(opt);
	if (lua_istable(L, 6))
		read_config(L, 6, &cfg, fn);
	ln_error err;
	if (ln_optim_set_config(opt, &cfg, &err) != LN_OK)
		return lnL_raisef(L, "%s: %s: %s", fn, kind, err.msg);
	/* Copy pass: nothing below fails. */
	for (int i = 0; i < n; i++) {
		lua_rawgeti(L, 5, i + 1);
		for (int k = 0; k < ns; k++) {
			lua_getfield(L, -1, ln_optim_state_name(opt, k));
			ln_tensor_copy(ln_optim_state(opt, i, k), lnL_testtensor(L, -1), NULL);
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
	ln_optim_set_step_count(opt, (int64_t)lua_tointeger(L, 4), NULL);
	return 0;
}

/* tostring(opt): configuration, parameter count and steps taken. */
static int m_tostring(lua_State *L)
{
	optim_ud *u = check_ud(L, 1);
	if (!u->opt) {
		lua_pushliteral(L, "optimizer (closed)");
		return 1;
	}
	char desc[256];
	ln_optim_describe(ln_optim_get_config(u->opt), desc, sizeof desc);
	long long values = 0;
	int n = ln_optim_nparams(u->opt);
	for (int i = 0; i < n; i++)
		values += (long long)ln_tensor_numel(ln_optim_param(u->opt, i));
	long long steps = (long long)ln_optim_step_count(u->opt);
	char buf[400];
	snprintf(buf, sizeof buf, "%s over %d tensor%s (%lld values), %lld step%s", desc, n,
	         n == 1 ? "" : "s", values, steps, steps == 1 ? "" : "s");
	lua_pushstring(L, buf);
	return 1;
}

/* __gc and __close: releases the C optimiser (idempotent). */
static int m_gc(lua_State *L)
{
	optim_ud *u = check_ud(L, 1);
	ln_optim_free(u->opt);
	u->opt = NULL;
	return 0;
}

/* Index of the pair called name in d (its first value), or -1. */
static int pair_index(const ln_optim_desc *d, const char *name)
{
	int n = ln_optim_desc_nvalues(d);
	for (int i = 0; i < n; i++)
		if (pair_starts(d, i, n) && strcmp(d->values[i].pair, name) == 0)
			return i;
	return -1;
}

/* opt.<key>: a method; a hyper-parameter (a number or a boolean); a pair
 * ({b1, b2}); "steps"; "kind"; else nil. */
static int m_index(lua_State *L)
{
	/* methods first: opt:step() looks its method up on every call */
	lua_pushvalue(L, 2);
	if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
		return 1;
	ln_optim *opt = check_optim(L, 1, "__index");
	if (lua_type(L, 2) != LUA_TSTRING)
		return 1;  /* nil */
	const char *k = lua_tostring(L, 2);
	const ln_optim_config *c = ln_optim_get_config(opt);
	int i;
	if ((i = ln_optim_value_index(c->desc, k)) >= 0) {
		push_value(L, c, i);
	} else if ((i = pair_index(c->desc, k)) >= 0) {
		lua_createtable(L, 2, 0);
		lua_pushnumber(L, c->v[i]);
		lua_rawseti(L, -2, 1);
		lua_pushnumber(L, c->v[i + 1]);
		lua_rawseti(L, -2, 2);
	} else if (strcmp(k, "steps") == 0) {
		lua_pushinteger(L, (lua_Integer)ln_optim_step_count(opt));
	} else if (strcmp(k, "kind") == 0) {
		lua_pushstring(L, ln_optim_name(c));
	} else {
		lua_pushnil(L);
	}
	return 1;
}

/* opt.<key> = v: hyper-parameters (validated: opt.lr = -1 is an error),
 * "steps" (when restoring); nothing else. */
static int m_newindex(lua_State *L)
{
	ln_optim *opt = check_optim(L, 1, "__newindex");
	const char *k = luaL_checkstring(L, 2);
	const ln_optim_config *cur = ln_optim_get_config(opt);
	const char *name = ln_optim_name(cur);
	char fn[64];
	snprintf(fn, sizeof fn, "optim.%s", name);
	ln_error err;
	int i = ln_optim_value_index(cur->desc, k);
	if (i >= 0) {
		ln_optim_config c = *cur;
		lua_settop(L, 3);
		read_value(L, &c, i, fn, "", "");
		if (ln_optim_set_config(opt, &c, &err) != LN_OK)
			return fail_optim(L, name, &err);
		return 0;
	}
	if ((i = pair_index(cur->desc, k)) >= 0) {
		ln_optim_config c = *cur;
		lua_settop(L, 3);
		read_pair(L, &c, i, fn);
		if (ln_optim_set_config(opt, &c, &err) != LN_OK)
			return fail_optim(L, name, &err);
		return 0;
	}
	if (strcmp(k, "steps") == 0) {
		if (!lua_isinteger(L, 3))
			return luaL_error(L, "%s: steps must be an integer, got %s", fn, luaL_typename(L, 3));
		if (ln_optim_set_step_count(opt, (int64_t)lua_tointeger(L, 3), &err) != LN_OK)
			return fail_optim(L, name, &err);
		return 0;
	}
	return luaL_error(L, "%s: cannot set field '%s'", fn, k);
}

/* ======================================================================
 * optim.clip_grad_norm
 * ====================================================================== */

/* Adds the squares of the tensors of the table at idx into *sq (scale
 * false), or scales them by coef (scale true).  A parameter view handed
 * out by a module (the first table of m:parameters()) stands for its
 * gradient; any other tensor is a gradient itself. */
static void table_grads(lua_State *L, int idx, bool scale, double *sq, double coef,
                        const char *fn)
{
	lua_Unsigned n = lua_rawlen(L, idx);
	for (lua_Unsigned i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, (lua_Integer)i);
		ln_tensor *t = lnL_testtensor(L, -1);
		if (!t || ln_tensor_is_empty(t))
			lnL_raisef(L, "%s: element %d of the table is %s, expected lunet.Tensor", fn, (int)i,
			           t ? "a closed tensor" : luaL_typename(L, -1));
		ln_module *m;
		int k;
		bool grad;
		if (lnL_paramowner(L, -1, &m, &k, &grad) && !grad)
			t = &m->grad[k];
		lua_pop(L, 1);
		if (scale)
			ln_grad_scale(t, coef);
		else
			*sq += ln_grad_sumsq(t);
	}
}

/* optim.clip_grad_norm(model, max_norm) -> the total norm before clipping
 * (ln_clip_grad_norm).  model may also be a Lua model (its parameters()),
 * or a table of tensors: gradients, or parameters of modules (their
 * gradients are clipped). */
static int l_clip_grad_norm(lua_State *L)
{
	static const char *fn = "optim.clip_grad_norm";
	lnL_checknargs(L, 2, fn);
	if (lua_type(L, 2) != LUA_TNUMBER)
		lnL_raisef(L, "%s: max_norm must be a number, got %s", fn, luaL_typename(L, 2));
	double max_norm = lua_tonumber(L, 2);
	char num[64];
	if (!(max_norm >= 0))
		lnL_raisef(L, "%s: max_norm must be >= 0, got %s", fn, lnL_numstr(num, sizeof num, L, 2));
	lnL_module_box *mb = lnL_testmodule(L, 1);
	if (mb && !mb->m)
		lnL_raisef(L, "%s: the model is closed", fn);
	if (mb && !has_external(mb->m)) {
		lua_pushnumber(L, ln_clip_grad_norm(mb->m, max_norm));
		return 1;
	}
	int grads = 1;
	if (mb || (lua_istable(L, 1) && lua_getfield(L, 1, "parameters") != LUA_TNIL)) {
		lua_settop(L, 2);
		if (lua_getfield(L, 1, "parameters") != LUA_TFUNCTION)
			lnL_raisef(L, "%s: model.parameters must be a function", fn);
		lua_pushvalue(L, 1);
		lua_call(L, 1, 2);
		if (!lua_istable(L, -1))
			lnL_raisef(L, "%s: model:parameters() must return two tables", fn);
		grads = lua_gettop(L);
	} else if (!lua_istable(L, 1)) {
		lnL_raisef(L, "%s: expected a model or a table of tensors, got %s", fn,
		           lnL_testtensor(L, 1) ? "a lunet.Tensor (pass {t})" : luaL_typename(L, 1));
	}
	double sq = 0;
	table_grads(L, grads, false, &sq, 0, fn);
	double total = sqrt(sq);
	table_grads(L, grads, true, NULL, ln_clip_coef(total, max_norm), fn);
	lua_pushnumber(L, total);
	return 1;
}

static const luaL_Reg methods[] = {
	{"step", m_step},
	{"zero_grad", m_zero_grad},
	{"state", m_state},
	{"load_state", m_load_state},
	{"close", m_gc},
	{NULL, NULL},
};

static const luaL_Reg metamethods[] = {
	{"__newindex", m_newindex},
	{"__tostring", m_tostring},
	{"__gc", m_gc},
	{"__close", m_gc},
	{NULL, NULL},
};

/* The metatable of the optimiser called name and its constructor
 * optim.<name>, into the lunet.optim table on top of the stack; the
 * methods table is at `methods_idx`. */
static void open_one(lua_State *L, const char *name, int methods_idx)
{
	char mt[64];
	snprintf(mt, sizeof mt, MT_PREFIX "%s", name);
	luaL_newmetatable(L, mt);
	luaL_setfuncs(L, metamethods, 0);
	lua_pushstring(L, name);
	lua_setfield(L, -2, OPTIM_KIND);
	lua_pushvalue(L, methods_idx);
	lua_pushcclosure(L, m_index, 1);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);

	lua_pushstring(L, name);
	lua_pushcclosure(L, optim_new, 1);
	lua_setfield(L, -2, name);
}

void lnL_open_optim(lua_State *L)
{
	luaL_newmetatable(L, PLIST_MT);
	lua_pushcfunction(L, plist_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);

	luaL_newlib(L, methods);  /* shared by every metatable's __index */
	int methods_idx = lua_gettop(L);
	lua_newtable(L);  /* lunet.optim */
	int count;
	const ln_optim_desc *const *descs = ln_optim_descs(&count);
	for (int i = 0; i < count; i++) {
		open_one(L, descs[i]->name, methods_idx);
		if (descs[i]->variant.name)
			open_one(L, descs[i]->variant.name, methods_idx);
	}
	lua_pushcfunction(L, l_clip_grad_norm);
	lua_setfield(L, -2, "clip_grad_norm");
	lua_setfield(L, -3, "optim");
	lua_pop(L, 1);
}
