/*
 * loptim.c -- lunet.optim: SGD, Adam, AdamW and RMSprop for Lua.
 *
 *     local opt = optim.SGD(model, {lr=0.1, momentum=0.9})
 *     local opt = optim.Adam(params, grads, {lr=1e-3, betas={0.9,0.999}})
 *     opt:zero_grad()  opt:step()  opt.lr = 0.01  opt.steps
 *     local st = opt:state()   opt:load_state(st)
 *
 * An optimiser is a full userdata holding an ln_optim pointer, born NULL
 * and filled once the C optimiser is built, so that a failure in between
 * leaves nothing to free; __gc releases it.  The C optimiser keeps its own
 * views of the parameters and gradients: the model may be collected first.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "lnaux.h"
#include "nn/optim.h"

typedef lnL_optim_box optim_ud;  /* opt: NULL until built, and after close */

/* One metatable per optimiser name, so that type errors and tostring
 * name the class; all share the same methods. */
static const char *const MT_NAMES[] = {
	"lunet.optim.SGD", "lunet.optim.Adam", "lunet.optim.AdamW", "lunet.optim.RMSprop", NULL,
};
#define OPTIM_MARK "__lunet_optim"  /* a field of each of those metatables */

static const char *mt_name(const ln_optim_config *c)
{
	switch (c->kind) {
	case LN_OPTIM_SGD: return MT_NAMES[0];
	case LN_OPTIM_ADAM: return c->decoupled ? MT_NAMES[2] : MT_NAMES[1];
	default: return MT_NAMES[3];
	}
}

/* Raises "optim.<msg>" for a C error whose message starts with the
 * optimiser's name ("SGD: lr must be >= 0, got -0.1"). */
static int raise_optim(lua_State *L, const ln_error *err)
{
	return luaL_error(L, "optim.%s", err->msg);
}

lnL_optim_box *lnL_testoptim(lua_State *L, int idx)
{
	/* every optimiser metatable carries OPTIM_MARK (lnL_open_optim): one
	 * lookup instead of a luaL_testudata per name */
	if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx))
		return NULL;
	int marked = lua_getfield(L, -1, OPTIM_MARK) != LUA_TNIL;
	lua_pop(L, 2);
	return marked ? lua_touserdata(L, idx) : NULL;
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
 * optimizer is closed", the kind read from the metatable's name. */
static ln_optim *check_optim(lua_State *L, int arg, const char *method)
{
	optim_ud *u = check_ud(L, arg);
	if (!u->opt) {
		const char *kind = "optim";
		int t = luaL_getmetafield(L, arg, "__name");
		if (t == LUA_TSTRING) {
			kind = lua_tostring(L, -1);  /* kept alive by the metatable */
			if (strncmp(kind, "lunet.optim.", 12) == 0)
				kind += 12;
		}
		luaL_error(L, "%s:%s: optimizer is closed", kind, method);
	}
	return u->opt;
}

/* ======================================================================
 * Construction
 * ====================================================================== */

/* Options each kind accepts, for the "unknown option" message. */
static const char *options_of(ln_optim_kind kind)
{
	switch (kind) {
	case LN_OPTIM_SGD: return "lr, momentum, nesterov, weight_decay";
	case LN_OPTIM_ADAM: return "lr, betas, eps, weight_decay, decoupled";
	default: return "lr, alpha, eps, momentum, weight_decay, centered";
	}
}

static double opt_number(lua_State *L, const char *who, const char *key)
{
	if (lua_type(L, -1) != LUA_TNUMBER)
		luaL_error(L, "optim.%s: option '%s' must be a number, got %s", who, key,
		           luaL_typename(L, -1));
	return lua_tonumber(L, -1);
}

static bool opt_bool(lua_State *L, const char *who, const char *key)
{
	if (lua_type(L, -1) != LUA_TBOOLEAN)
		luaL_error(L, "optim.%s: option '%s' must be a boolean, got %s", who, key,
		           luaL_typename(L, -1));
	return lua_toboolean(L, -1);
}

/* Reads the options table at idx (or none) into cfg; every key must be
 * one the kind knows. */
static void read_options(lua_State *L, int idx, ln_optim_config *cfg, const char *who)
{
	if (lua_isnoneornil(L, idx))
		return;
	if (!lua_istable(L, idx))
		luaL_error(L, "optim.%s: options must be a table, got %s", who, luaL_typename(L, idx));
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "optim.%s: option names must be strings, got %s", who,
			           luaL_typename(L, -2));
		const char *k = lua_tostring(L, -2);
		ln_optim_kind kind = cfg->kind;
		bool ok = true;
		if (strcmp(k, "lr") == 0)
			cfg->lr = opt_number(L, who, k);
		else if (strcmp(k, "weight_decay") == 0)
			cfg->weight_decay = opt_number(L, who, k);
		else if (strcmp(k, "momentum") == 0 && kind != LN_OPTIM_ADAM)
			cfg->momentum = opt_number(L, who, k);
		else if (strcmp(k, "nesterov") == 0 && kind == LN_OPTIM_SGD)
			cfg->nesterov = opt_bool(L, who, k);
		else if (strcmp(k, "eps") == 0 && kind != LN_OPTIM_SGD)
			cfg->eps = opt_number(L, who, k);
		else if (strcmp(k, "alpha") == 0 && kind == LN_OPTIM_RMSPROP)
			cfg->alpha = opt_number(L, who, k);
		else if (strcmp(k, "centered") == 0 && kind == LN_OPTIM_RMSPROP)
			cfg->centered = opt_bool(L, who, k);
		else if (strcmp(k, "decoupled") == 0 && kind == LN_OPTIM_ADAM)
			cfg->decoupled = opt_bool(L, who, k);
		else if (strcmp(k, "betas") == 0 && kind == LN_OPTIM_ADAM) {
			if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 2)
				luaL_error(L, "optim.%s: option 'betas' must be a table of two numbers", who);
			for (int i = 1; i <= 2; i++) {
				if (lua_rawgeti(L, -1, i) != LUA_TNUMBER)
					luaL_error(L, "optim.%s: option 'betas' must be a table of two numbers, "
					           "element %d is %s", who, i, luaL_typename(L, -1));
				*(i == 1 ? &cfg->beta1 : &cfg->beta2) = lua_tonumber(L, -1);
				lua_pop(L, 1);
			}
		} else
			ok = false;
		if (!ok)
			luaL_error(L, "optim.%s: unknown option '%s' (options: %s)", who, k,
			           options_of(kind));
		lua_pop(L, 1);
	}
}

/* Leaves the params table at index `base` and the grads table at base+1,
 * from either (model, opts) or (params, grads, opts); returns the index
 * of the options. */
static int get_param_tables(lua_State *L, const char *who, int base)
{
	int t = lua_type(L, 1);
	if (lnL_testtensor(L, 1))
		luaL_error(L, "optim.%s: expected a model or a table of parameter tensors, got a "
		           "lunet.Tensor (pass {t} and {grad})", who);
	if (t == LUA_TTABLE) {
		/* A model table has a parameters method; anything else is taken
		 * as a list of parameter tensors. */
		int has_method = lua_getfield(L, 1, "parameters") != LUA_TNIL;
		lua_pop(L, 1);
		if (!has_method) {
			if (!lua_istable(L, 2))
				luaL_error(L, "optim.%s: a table of parameters needs a table of gradients as "
				           "argument 2, got %s", who, luaL_typename(L, 2));
			lua_pushvalue(L, 1);
			lua_pushvalue(L, 2);
			lua_replace(L, base + 1);
			lua_replace(L, base);
			return 3;
		}
	}
	if (t != LUA_TTABLE && t != LUA_TUSERDATA)
		luaL_error(L, "optim.%s: expected a model or a table of parameter tensors, got %s", who,
		           luaL_typename(L, 1));
	lua_getfield(L, 1, "parameters");
	if (lua_isnil(L, -1))
		luaL_error(L, "optim.%s: expected a model (with a parameters method) or a table of "
		           "parameter tensors", who);
	lua_pushvalue(L, 1);
	lua_call(L, 1, 2);
	if (!lua_istable(L, -2) || !lua_istable(L, -1))
		luaL_error(L, "optim.%s: model:parameters() must return two tables, got %s and %s",
		           who, luaL_typename(L, -2), luaL_typename(L, -1));
	lua_replace(L, base + 1);
	lua_replace(L, base);
	return 2;
}

/* The i-th (1-based) element of the table at idx as a tensor, or an error
 * naming what was found. */
static ln_tensor *list_tensor(lua_State *L, int idx, int i, const char *what, const char *who)
{
	lua_rawgeti(L, idx, i);
	ln_tensor *t = lnL_testtensor(L, -1);
	if (!t)
		luaL_error(L, "optim.%s: %s %d is %s, expected lunet.Tensor", who, what, i,
		           luaL_typename(L, -1));
	lua_pop(L, 1);  /* still referenced by the table */
	return t;
}

/* Shared constructor: kind and the AdamW defaults come from upvalues. */
static int optim_new(lua_State *L)
{
	ln_optim_config cfg = ln_optim_defaults((ln_optim_kind)lua_tointeger(L, lua_upvalueindex(1)));
	if (lua_toboolean(L, lua_upvalueindex(2))) {  /* AdamW */
		cfg.decoupled = true;
		cfg.weight_decay = 1e-2;
	}
	const char *who = ln_optim_name(&cfg);
	/* Reserve slots above the arguments: base = params, base+1 = grads. */
	lua_settop(L, 3);
	lua_pushnil(L);
	lua_pushnil(L);
	int base = 4;
	int opts = get_param_tables(L, who, base);
	read_options(L, opts, &cfg, who);
	who = ln_optim_name(&cfg);  /* decoupled=true makes Adam "AdamW" */

	lua_Unsigned np = lua_rawlen(L, base), ng = lua_rawlen(L, base + 1);
	if (np != ng)
		luaL_error(L, "optim.%s: %d parameters but %d gradients", who, (int)np, (int)ng);
	if (np > 1000000)
		luaL_error(L, "optim.%s: too many parameter tensors (%d)", who, (int)np);
	int n = (int)np;
	/* Scratch arrays of tensor values (no references taken) in a userdata,
	 * so that an error below frees them with the userdata. */
	size_t cnt = n > 0 ? (size_t)n : 1;
	ln_tensor *ps = lua_newuserdatauv(L, 2 * cnt * sizeof(ln_tensor), 0);
	ln_tensor *gs = ps + cnt;
	for (int i = 0; i < n; i++) {
		ps[i] = *list_tensor(L, base, i + 1, "parameter", who);
		gs[i] = *list_tensor(L, base + 1, i + 1, "gradient", who);
	}

	optim_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
	u->opt = NULL;
	luaL_setmetatable(L, mt_name(&cfg));
	ln_error err;
	if (ln_optim_new(&u->opt, &cfg, n, ps, gs, &err) != LN_OK)
		return raise_optim(L, &err);
	size_t bytes = 0;
	for (int i = 0; i < n; i++)
		bytes += (size_t)ln_tensor_numel(&ps[i]) * sizeof(float) * (size_t)ln_optim_nstate(u->opt);
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

/* Pushes {lr=..., ...}: the hyper-parameters of c. */
static void push_config(lua_State *L, const ln_optim *opt)
{
	static const char *const names[] = {"lr", "momentum", "weight_decay", "beta1", "beta2",
	                                    "eps", "alpha", NULL};
	const ln_optim_config *c = ln_optim_get_config(opt);
	lua_newtable(L);
	for (int i = 0; names[i]; i++) {
		double v;
		if (ln_optim_get(opt, names[i], &v)) {
			lua_pushnumber(L, v);
			lua_setfield(L, -2, names[i]);
		}
	}
	switch (c->kind) {
	case LN_OPTIM_SGD:
		lua_pushboolean(L, c->nesterov);
		lua_setfield(L, -2, "nesterov");
		break;
	case LN_OPTIM_ADAM:
		lua_pushboolean(L, c->decoupled);
		lua_setfield(L, -2, "decoupled");
		break;
	case LN_OPTIM_RMSPROP:
		lua_pushboolean(L, c->centered);
		lua_setfield(L, -2, "centered");
		break;
	default:
		break;
	}
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
	push_config(L, opt);
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

/* Reads the fields of a config table (as push_config writes it) at idx
 * into cfg: numbers and the flags; absent fields keep their value. */
static void read_config(lua_State *L, int idx, ln_optim_config *cfg, const char *fn)
{
	static const struct {
		const char *name;
		size_t off;
	} nums[] = {
		{"lr", offsetof(ln_optim_config, lr)},
		{"momentum", offsetof(ln_optim_config, momentum)},
		{"weight_decay", offsetof(ln_optim_config, weight_decay)},
		{"beta1", offsetof(ln_optim_config, beta1)},
		{"beta2", offsetof(ln_optim_config, beta2)},
		{"eps", offsetof(ln_optim_config, eps)},
		{"alpha", offsetof(ln_optim_config, alpha)},
	}, flags[] = {
		{"nesterov", offsetof(ln_optim_config, nesterov)},
		{"decoupled", offsetof(ln_optim_config, decoupled)},
		{"centered", offsetof(ln_optim_config, centered)},
	};
	for (size_t j = 0; j < sizeof nums / sizeof nums[0]; j++) {
		int t = lua_getfield(L, idx, nums[j].name);
		if (t == LUA_TNUMBER)
			*(double *)((char *)cfg + nums[j].off) = lua_tonumber(L, -1);
		else if (t != LUA_TNIL)
			luaL_error(L, "%s: config.%s must be a number, got %s", fn, nums[j].name,
			           luaL_typename(L, -1));
		lua_pop(L, 1);
	}
	for (size_t j = 0; j < sizeof flags / sizeof flags[0]; j++) {
		int t = lua_getfield(L, idx, flags[j].name);
		if (t == LUA_TBOOLEAN)
			*(bool *)((char *)cfg + flags[j].off) = lua_toboolean(L, -1);
		else if (t != LUA_TNIL)
			luaL_error(L, "%s: config.%s must be a boolean, got %s", fn, flags[j].name,
			           luaL_typename(L, -1));
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

	/* Check pass. */
	for (int i = 0; i < n; i++) {
		if (lua_rawgeti(L, 5, i + 1) != LUA_TTABLE)
			luaL_error(L, "%s: params[%d] must be a table", fn, i + 1);
		for (int k = 0; k < ns; k++) {
			const char *name = ln_optim_state_name(opt, k);
			lua_getfield(L, -1, name);
			ln_tensor *t = lnL_testtensor(L, -1);
			if (!t)
				luaL_error(L, "%s: params[%d].%s must be a tensor, got %s", fn, i + 1, name,
				           luaL_typename(L, -1));
			const ln_tensor *p = ln_optim_param(opt, i);
			if (!ln_tensor_same_shape(t, p)) {
				char a[64], b[64];
				luaL_error(L, "%s: params[%d].%s has shape %s, the parameter has shape %s", fn,
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
		return luaL_error(L, "%s: %s", fn, err.msg);
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

/* Formats "SGD(lr=0.1, momentum=0.9, nesterov=false, weight_decay=0)". */
static void describe(const ln_optim *opt, char *buf, size_t size)
{
	const ln_optim_config *c = ln_optim_get_config(opt);
	switch (c->kind) {
	case LN_OPTIM_SGD:
		snprintf(buf, size, "SGD(lr=%g, momentum=%g, nesterov=%s, weight_decay=%g)", c->lr,
		         c->momentum, c->nesterov ? "true" : "false", c->weight_decay);
		break;
	case LN_OPTIM_ADAM:
		snprintf(buf, size, "%s(lr=%g, betas={%g,%g}, eps=%g, weight_decay=%g)",
		         ln_optim_name(c), c->lr, c->beta1, c->beta2, c->eps, c->weight_decay);
		break;
	default:
		snprintf(buf, size, "RMSprop(lr=%g, alpha=%g, eps=%g, momentum=%g, weight_decay=%g%s)",
		         c->lr, c->alpha, c->eps, c->momentum, c->weight_decay,
		         c->centered ? ", centered=true" : "");
		break;
	}
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
	describe(u->opt, desc, sizeof desc);
	long long values = 0;
	int n = ln_optim_nparams(u->opt);
	for (int i = 0; i < n; i++)
		values += (long long)ln_tensor_numel(ln_optim_param(u->opt, i));
	char buf[400];
	snprintf(buf, sizeof buf, "%s over %d tensor%s (%lld values), %lld step%s", desc, n,
	         n == 1 ? "" : "s", values, (long long)ln_optim_step_count(u->opt),
	         ln_optim_step_count(u->opt) == 1 ? "" : "s");
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

/* opt.<key>: a method; a hyper-parameter ("lr", "momentum", ...); "steps"
 * (steps taken); "kind"; the flags nesterov/decoupled/centered; else nil. */
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
	double v;
	if (ln_optim_get(opt, k, &v))
		lua_pushnumber(L, v);
	else if (strcmp(k, "steps") == 0)
		lua_pushinteger(L, (lua_Integer)ln_optim_step_count(opt));
	else if (strcmp(k, "kind") == 0)
		lua_pushstring(L, ln_optim_name(c));
	else if (strcmp(k, "nesterov") == 0 && c->kind == LN_OPTIM_SGD)
		lua_pushboolean(L, c->nesterov);
	else if (strcmp(k, "decoupled") == 0 && c->kind == LN_OPTIM_ADAM)
		lua_pushboolean(L, c->decoupled);
	else if (strcmp(k, "centered") == 0 && c->kind == LN_OPTIM_RMSPROP)
		lua_pushboolean(L, c->centered);
	else if (strcmp(k, "betas") == 0 && c->kind == LN_OPTIM_ADAM) {
		lua_createtable(L, 2, 0);
		lua_pushnumber(L, c->beta1);
		lua_rawseti(L, -2, 1);
		lua_pushnumber(L, c->beta2);
		lua_rawseti(L, -2, 2);
	} else
		lua_pushnil(L);
	return 1;
}

/* opt.<key> = v: hyper-parameters (validated: opt.lr = -1 is an error),
 * "steps" (when restoring); nothing else. */
static int m_newindex(lua_State *L)
{
	ln_optim *opt = check_optim(L, 1, "__newindex");
	const char *k = luaL_checkstring(L, 2);
	const char *who = ln_optim_name(ln_optim_get_config(opt));
	double cur;
	ln_error err;
	if (ln_optim_get(opt, k, &cur)) {
		if (lua_type(L, 3) != LUA_TNUMBER)
			return luaL_error(L, "optim.%s: %s must be a number, got %s", who, k,
			                  luaL_typename(L, 3));
		if (ln_optim_set(opt, k, lua_tonumber(L, 3), &err) != LN_OK)
			return raise_optim(L, &err);
		return 0;
	}
	if (strcmp(k, "steps") == 0) {
		if (!lua_isinteger(L, 3))
			return luaL_error(L, "optim.%s: steps must be an integer, got %s", who,
			                  luaL_typename(L, 3));
		if (ln_optim_set_step_count(opt, (int64_t)lua_tointeger(L, 3), &err) != LN_OK)
			return raise_optim(L, &err);
		return 0;
	}
	return luaL_error(L, "optim.%s: cannot set field '%s'", who, k);
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

/* Pushes a constructor closure for a kind (adamw: decoupled defaults). */
static void push_ctor(lua_State *L, ln_optim_kind kind, bool adamw)
{
	lua_pushinteger(L, kind);
	lua_pushboolean(L, adamw);
	lua_pushcclosure(L, optim_new, 2);
}

void lnL_open_optim(lua_State *L)
{
	/* The methods table, shared by every metatable's __index. */
	luaL_newlib(L, methods);
	int mt_methods = lua_gettop(L);
	for (int i = 0; MT_NAMES[i]; i++) {
		luaL_newmetatable(L, MT_NAMES[i]);
		luaL_setfuncs(L, metamethods, 0);
		lua_pushboolean(L, 1);
		lua_setfield(L, -2, OPTIM_MARK);
		lua_pushvalue(L, mt_methods);
		lua_pushcclosure(L, m_index, 1);
		lua_setfield(L, -2, "__index");
		lua_pop(L, 1);
	}
	lua_pop(L, 1);

	lua_newtable(L);  /* lunet.optim */
	push_ctor(L, LN_OPTIM_SGD, false);
	lua_setfield(L, -2, "SGD");
	push_ctor(L, LN_OPTIM_ADAM, false);
	lua_setfield(L, -2, "Adam");
	push_ctor(L, LN_OPTIM_ADAM, true);
	lua_setfield(L, -2, "AdamW");
	push_ctor(L, LN_OPTIM_RMSPROP, false);
	lua_setfield(L, -2, "RMSprop");
	lua_setfield(L, -2, "optim");
}
