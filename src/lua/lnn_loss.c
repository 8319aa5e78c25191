/*
 * lnn_loss.c -- the Lua binding of losses and output/loss pairings:
 * nn.MSELoss, nn.BCELoss, nn.BCEWithLogitsLoss, nn.CrossEntropyLoss,
 * nn.NLLLoss, nn.OutputLoss, nn.is_loss.
 *
 * A loss is a full userdata holding one reference to an ln_loss, with the
 * metatable "lunet.nn.<Class>"; its user values are the views last handed
 * out for output and grad_input.  Which layer should not feed which loss
 * is output_loss.c's knowledge (ln_pairing_warning); this file only says
 * which class produced the input.
 */
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lnaux.h"
#include "lnn.h"

#define LOSS_MARK "__lunet_loss"

typedef struct loss_box { ln_loss *c; } loss_box;

/* User values of a loss userdata: its output, grad_input, per-sample
 * losses and class weights views. */
enum { LUV_OUTPUT = 1, LUV_GRAD_INPUT, LUV_LOSSES, LUV_WEIGHT, LUV_COUNT = LUV_WEIGHT };

/* The open loss at idx (1, self), or the error saying how to call a
 * method (lnL_selferror). */
static ln_loss *check_loss(lua_State *L, int idx, const char *method)
{
	loss_box *b = lnL_testmarked(L, idx, LOSS_MARK);
	if (!b)
		lnL_selferror(L, "loss", method);
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

/* The reduction option of the (checked) options table at arg:
 * "mean" (the default), "sum" or "none". */
static ln_reduction opt_reduction(lua_State *L, int arg, const char *fname)
{
	if (!lua_istable(L, arg) || lua_getfield(L, arg, "reduction") == LUA_TNIL)
		return LN_REDUCE_MEAN;
	const char *r = lua_tostring(L, -1);
	lua_pop(L, 1);
	if (strcmp(r, "mean") == 0)
		return LN_REDUCE_MEAN;
	if (strcmp(r, "sum") == 0)
		return LN_REDUCE_SUM;
	if (strcmp(r, "none") == 0)
		return LN_REDUCE_NONE;
	return luaL_error(L, "%s: reduction must be \"mean\", \"sum\" or \"none\", got \"%s\"",
	                  fname, r);
}

/* The options of every loss constructor, at arg: {reduction=}. */
static ln_reduction check_reduction(lua_State *L, int arg, const char *fname)
{
	static const lnL_option known[] = {{"reduction", LUA_TSTRING}, {NULL, 0}};
	lnL_checkoptions(L, arg, fname, known);
	return opt_reduction(L, arg, fname);
}

static loss_box *new_loss_box(lua_State *L, const char *name)
{
	loss_box *b = lua_newuserdatauv(L, sizeof *b, LUV_COUNT);
	b->c = NULL;
	char mt[64];
	snprintf(mt, sizeof mt, LNN_MT_PREFIX "%s", name);
	luaL_setmetatable(L, mt);
	return b;
}

/* ---- constructors -------------------------------------------------------------------- */

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
};

/* nn.MSELoss([{reduction="mean"|"sum"}]) and the others above. */
static int l_plain_loss(lua_State *L)
{
	const plain_loss *pl = lua_touserdata(L, lua_upvalueindex(2));
	char fname[64];
	snprintf(fname, sizeof fname, "nn.%s", pl->name);
	ln_reduction red = check_reduction(L, 1, fname);
	loss_box *b = new_loss_box(L, pl->name);
	ln_error err;
	if (pl->create(&b->c, red, &err) != LN_OK)
		return lnL_error(L, fname, &err);
	return 1;
}

/* nn.CrossEntropyLoss([{reduction=, label_smoothing=, weight=, ignore_index=}])
 * and nn.NLLLoss([{reduction=, weight=, ignore_index=}]); upvalue 2 says
 * which (true: CrossEntropyLoss).  The ranges and the weights' values are
 * checked by the C constructor. */
static int l_class_loss(lua_State *L)
{
	static const lnL_option ce_known[] = {
		{"reduction", LUA_TSTRING}, {"weight", LUA_TNONE}, {"ignore_index", LUA_TNUMBER},
		{"label_smoothing", LUA_TNUMBER}, {NULL, 0},
	};
	static const lnL_option nll_known[] = {
		{"reduction", LUA_TSTRING}, {"weight", LUA_TNONE}, {"ignore_index", LUA_TNUMBER},
		{NULL, 0},
	};
	bool ce = lua_toboolean(L, lua_upvalueindex(2));
	const char *fname = ce ? "nn.CrossEntropyLoss" : "nn.NLLLoss";
	lnL_checkoptions(L, 1, fname, ce ? ce_known : nll_known);
	ln_reduction red = opt_reduction(L, 1, fname);
	ln_class_loss_options o = {.label_smoothing = lnL_optnumber(L, 1, "label_smoothing", 0)};
	if (lua_istable(L, 1) && lua_getfield(L, 1, "ignore_index") != LUA_TNIL) {
		if (!lua_isinteger(L, -1)) {
			char v[64];
			return luaL_error(L, "%s: option 'ignore_index' must be an integer, got %s", fname,
			                  lnL_numstr(v, sizeof v, L, -1));
		}
		o.has_ignore = true;
		o.ignore_index = (int64_t)lua_tointeger(L, -1);
	}
	lua_settop(L, 1);
	if (lua_istable(L, 1) && lua_getfield(L, 1, "weight") != LUA_TNIL) {
		if (!lnL_testtensor(L, -1) && !lua_istable(L, -1))
			return luaL_error(L, "%s: option 'weight' must be a tensor or a table of numbers, "
			                  "got %s", fname, luaL_typename(L, -1));
		o.weight = lnL_totensor(L, lua_gettop(L), fname);
	}
	loss_box *b = new_loss_box(L, ce ? "CrossEntropyLoss" : "NLLLoss");
	ln_error err;
	ln_status st = ce ? ln_cross_entropy_loss_new_ex(&b->c, red, &o, &err)
	                  : ln_nll_loss_new_ex(&b->c, red, &o, &err);
	if (st != LN_OK)
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

/* ---- methods -------------------------------------------------------------------------- */

/* Raises "Class:method: msg" for a failed call; an OutputLoss names its
 * pairing too ("OutputLoss:forward: OutputLoss(softmax, cross_entropy):
 * ..."). */
static int raise_loss(lua_State *L, const ln_loss *c, const char *method, const ln_error *err)
{
	const char *pairing = ln_loss_pairing(c);
	if (pairing)
		return lnL_raisef(L, "%s:%s: %s: %s", c->cls->name, method, pairing, err->msg);
	return lnL_raisef(L, "%s:%s: %s", c->cls->name, method, err->msg);
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
	return lnn_contiguous_arg(L, t, cls, method);
}

/* Warns once when the input of a loss comes straight from a layer that
 * already applies what the loss applies itself (ln_pairing_warning), or
 * else when its values show that it is not what the loss takes
 * (ln_input_warning; input contiguous and, once the loss has checked it,
 * finite: the caller runs this after a successful forward). */
static void check_pairing(lua_State *L, const ln_loss *c, const ln_tensor *input)
{
	const lnn_state *S = LNN_STATE(L);
	char msg[400], key[128];
	if (S->last_cls && input->storage == S->last_storage &&
	    ln_pairing_warning(c, S->last_cls->name, msg, sizeof msg)) {
		snprintf(key, sizeof key, "pairing:%s:%s", S->last_cls->name, c->cls->name);
		lnL_warn_once(L, key, msg);
	} else if (ln_input_warning(c, input, msg, sizeof msg)) {
		snprintf(key, sizeof key, "input:%s", c->cls->name);
		lnL_warn_once(L, key, msg);
	}
}

/* c:forward(input, target) -> number; with reduction "none", the
 * per-sample losses (the loss's buffer, reused like grad_input). */
static int loss_forward(lua_State *L)
{
	ln_loss *c = check_loss(L, 1, "forward");
	ln_tensor *x = lnL_checkargtensor(L, 2, c->cls->name, "forward", "the input");
	const ln_tensor *xc = lnn_contiguous_arg(L, x, c->cls->name, "forward");
	const ln_tensor *yc = target_arg(L, 3, c->cls->name, "forward");
	double loss;
	ln_error err;
	if (ln_loss_forward_unprefixed(c, xc, yc, &loss, &err) != LN_OK)
		return raise_loss(L, c, "forward", &err);
	check_pairing(L, c, xc);
	if (c->reduction == LN_REDUCE_NONE)
		lnn_push_cached_view(L, 1, LUV_LOSSES, &c->losses);
	else
		lua_pushnumber(L, loss);
	return 1;
}

/* c:backward(input, target[, gout]) -> dL/dinput (the loss's buffer,
 * reused; the same userdata while the buffer keeps its shape).  gout,
 * with reduction "none" only: dL/dl_i for each per-sample loss (default:
 * all 1, the gradient of their sum). */
static int loss_backward(lua_State *L)
{
	ln_loss *c = check_loss(L, 1, "backward");
	ln_tensor *x = lnL_checkargtensor(L, 2, c->cls->name, "backward", "the input");
	const ln_tensor *gout = NULL;
	if (!lua_isnoneornil(L, 4))
		gout = lnL_checkargtensor(L, 4, c->cls->name, "backward",
		                          "the gradient of the per-sample losses");
	lua_settop(L, 4);  /* what the conversions below push goes above gout */
	const ln_tensor *xc = lnn_contiguous_arg(L, x, c->cls->name, "backward");
	const ln_tensor *yc = target_arg(L, 3, c->cls->name, "backward");
	ln_error err;
	if (ln_loss_backward_unprefixed(c, xc, yc, gout, &err) != LN_OK)
		return raise_loss(L, c, "backward", &err);
	lnn_push_cached_view(L, 1, LUV_GRAD_INPUT, &c->grad_input);
	return 1;
}

static int loss_tostring(lua_State *L)
{
	ln_loss *c = check_loss(L, 1, "__tostring");
	char buf[160];
	ln_loss_describe(c, buf, sizeof buf);
	lua_pushstring(L, buf);
	return 1;
}

/* Pushes option key of a class loss (label_smoothing, weight: a view of
 * the loss's own copy, ignore_index: nil when unset) and returns true;
 * false (nothing pushed) for any other key or loss. */
static bool push_class_option(lua_State *L, const ln_loss *c, const char *key)
{
	ln_class_loss_options o;
	if (!ln_class_loss_options_get(c, &o))
		return false;
	if (strcmp(key, "label_smoothing") == 0) {
		lua_pushnumber(L, o.label_smoothing);
	} else if (strcmp(key, "weight") == 0) {
		if (o.weight)
			lnn_push_cached_view(L, 1, LUV_WEIGHT, o.weight);
		else
			lua_pushnil(L);
	} else if (strcmp(key, "ignore_index") == 0) {
		if (o.has_ignore)
			lua_pushinteger(L, (lua_Integer)o.ignore_index);
		else
			lua_pushnil(L);
	} else {
		return false;
	}
	return true;
}

/* __index: methods first (upvalue 2), then output, grad_input, losses,
 * canonical (OutputLoss only), reduction, the class losses' options and
 * name. */
static int loss_index(lua_State *L)
{
	/* methods first: c:forward(y, t) looks its method up on every call */
	lua_pushvalue(L, 2);
	if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	ln_loss *c = check_loss(L, 1, "__index");
	const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
	if (!key)
		return 0;
	if (strcmp(key, "output") == 0) {
		lnn_push_cached_view(L, 1, LUV_OUTPUT, &c->output);
	} else if (strcmp(key, "grad_input") == 0) {
		lnn_push_cached_view(L, 1, LUV_GRAD_INPUT, &c->grad_input);
	} else if (strcmp(key, "canonical") == 0) {
		if (ln_loss_pairing(c))
			lua_pushboolean(L, ln_output_loss_is_canonical(c));
		else
			lua_pushnil(L);
	} else if (strcmp(key, "losses") == 0) {
		lnn_push_cached_view(L, 1, LUV_LOSSES, &c->losses);
	} else if (strcmp(key, "reduction") == 0) {
		lua_pushstring(L, ln_reduction_name(c->reduction));
	} else if (push_class_option(L, c, key)) {
		/* label_smoothing, weight, ignore_index */
	} else if (strcmp(key, "name") == 0) {
		lua_pushstring(L, c->cls->name);
	} else {
		lua_pushnil(L);
	}
	return 1;
}

/* ---- registration ---------------------------------------------------------------------- */

static const luaL_Reg loss_methods[] = {
	{"forward", loss_forward},
	{"backward", loss_backward},
	{NULL, NULL},
};

static const luaL_Reg loss_meta[] = {
	{"__gc", loss_gc},
	{"__close", loss_gc},
	{"__tostring", loss_tostring},
	{NULL, NULL},
};

/* nn.is_loss(v) -> boolean */
static int l_is_loss(lua_State *L)
{
	lua_pushboolean(L, lnL_testmarked(L, 1, LOSS_MARK) != NULL);
	return 1;
}

void lnn_open_loss(lua_State *L, int nn)
{
	int state = lua_gettop(L);
	lua_newtable(L);
	int methods = lua_gettop(L);
	lua_pushvalue(L, state);
	luaL_setfuncs(L, loss_methods, 1);
	lua_pushvalue(L, methods);
	lua_setfield(L, nn, "_loss_methods");

	for (size_t i = 0; i < sizeof plain_losses / sizeof plain_losses[0]; i++) {
		lnn_new_metatable(L, plain_losses[i].name, LOSS_MARK, loss_index, loss_meta, state,
		                  methods);
		lua_pushvalue(L, state);
		lua_pushlightuserdata(L, (void *)&plain_losses[i]);
		lua_pushcclosure(L, l_plain_loss, 2);
		lua_setfield(L, nn, plain_losses[i].name);
	}
	static const char *const class_losses[] = {"NLLLoss", "CrossEntropyLoss"};
	for (int i = 0; i < 2; i++) {
		lnn_new_metatable(L, class_losses[i], LOSS_MARK, loss_index, loss_meta, state, methods);
		lua_pushvalue(L, state);
		lua_pushboolean(L, i);
		lua_pushcclosure(L, l_class_loss, 2);
		lua_setfield(L, nn, class_losses[i]);
	}
	lnn_new_metatable(L, "OutputLoss", LOSS_MARK, loss_index, loss_meta, state, methods);
	static const luaL_Reg ctors[] = {
		{"OutputLoss", l_output_loss},
		{"is_loss", l_is_loss},
		{NULL, NULL},
	};
	lua_pushvalue(L, nn);
	lua_pushvalue(L, state);
	luaL_setfuncs(L, ctors, 1);
	lua_settop(L, state);
}
