/*
 * linterop.c -- weights under PyTorch's names, in and out of safetensors
 * files:
 *
 *   model:state_dict()                       -> {["0.weight"] = t, ...}
 *   model:load_state_dict(dict[, {strict=true}]) -> missing, unexpected
 *   lunet.save_safetensors(path, model_or_dict[, metadata])
 *   lunet.load_safetensors(path)             -> dict, metadata
 *
 * The names come from nn/state_dict.h (each class names its own state);
 * this file turns the walk into Lua tables and back.  A custom module
 * written in Lua (a table with forward/backward placed in a container)
 * takes part through its own state_dict method, and load_state_dict if it
 * has one; one with parameters but no state_dict is an error, not a
 * silent gap.
 *
 * state_dict gives views that share the model's memory (as PyTorch's do);
 * an integer entry (BatchNorm's num_batches_tracked) is a Lua integer.
 * load_state_dict checks everything before it copies anything, so an
 * error leaves the model as it was.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "core/alloc.h"
#include "io/safetensors.h"
#include "io/file.h"
#include "lnaux.h"
#include "nn/module.h"
#include "nn/state_dict.h"

#define MODULE_MT_PREFIX "lunet.nn."
#define ST_BOX_MT "lunet.safetensors_buffer"

/* ---- helpers -------------------------------------------------------------------- */

/* The open module at index 1, with "<Class>:<method>" written into fname
 * for messages; errors for anything else and for a closed module. */
static ln_module *check_self(lua_State *L, const char *method, char *fname, size_t size)
{
	lnL_module_box *b = lnL_testmodule(L, 1);
	if (!b)
		lnL_selferror(L, "module", method);
	if (!b->m) {
		const char *cls = "module";
		if (luaL_getmetafield(L, 1, "__name") == LUA_TSTRING) {
			cls = lua_tostring(L, -1);
			if (strncmp(cls, MODULE_MT_PREFIX, strlen(MODULE_MT_PREFIX)) == 0)
				cls += strlen(MODULE_MT_PREFIX);
		}
		luaL_error(L, "%s:%s: module is closed", cls, method);
	}
	snprintf(fname, size, "%s:%s", b->m->cls->name, method);
	return b->m;
}

/* Appends the value on top of the stack to the list at idx (pops it). */
static void append(lua_State *L, int idx)
{
	lua_seti(L, idx, (lua_Integer)luaL_len(L, idx) + 1);
}

static int by_string(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Replaces the list of strings at idx by a new sorted one, in place on
 * the stack. */
static void sort_strings(lua_State *L, int idx)
{
	lua_Integer n = luaL_len(L, idx);
	const char **s = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *s, 0);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_geti(L, idx, i);
		s[i - 1] = lua_tostring(L, -1);  /* anchored in the list at idx */
		lua_pop(L, 1);
	}
	qsort(s, (size_t)n, sizeof *s, by_string);
	lua_createtable(L, (int)n, 0);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_pushstring(L, s[i - 1]);
		lua_seti(L, -2, i);
	}
	lua_replace(L, idx);
	lua_pop(L, 1);
}

/* Pushes the key of a custom module's entry: "<prefix>.<name>", or the
 * name alone at the top level.  The name is the key at index k. */
static const char *push_sub_key(lua_State *L, const char *fname, const char *prefix, int k)
{
	if (lua_type(L, k) != LUA_TSTRING)
		luaL_error(L, "%s: the custom module at '%s' has a state_dict key that is a %s, not a "
		           "string", fname, prefix, luaL_typename(L, k));
	if (!prefix[0])
		lua_pushvalue(L, k);
	else
		lua_pushfstring(L, "%s.%s", prefix, lua_tostring(L, k));
	return lua_tostring(L, -1);
}

/* For an opaque entry (a custom module written in Lua): pushes its table
 * and the result of its state_dict method and returns true, or pushes
 * nothing and returns false when it has no state.  A custom module with
 * parameters but no state_dict method is an error. */
static bool push_custom_state(lua_State *L, const char *fname, const ln_state_entry *e)
{
	luaL_checkstack(L, 8, NULL);
	lnL_pushexternal(L, e->owner);
	if (!lua_istable(L, -1)) {
		lua_pop(L, 1);
		return false;
	}
	int tbl = lua_gettop(L);
	if (lua_getfield(L, tbl, "state_dict") != LUA_TNIL) {
		lua_pushvalue(L, tbl);
		lua_call(L, 1, 1);
		if (!lua_istable(L, -1))
			luaL_error(L, "%s: the custom module at '%s': state_dict returned %s, expected a "
			           "table", fname, e->key, luaL_typename(L, -1));
		return true;
	}
	lua_pop(L, 1);
	if (lua_getfield(L, tbl, "parameters") == LUA_TFUNCTION) {
		lua_pushvalue(L, tbl);
		lua_call(L, 1, 1);
		if (lua_istable(L, -1) && luaL_len(L, -1) > 0)
			luaL_error(L, "%s: the custom module at '%s' has parameters but no state_dict method "
			           "(give it one returning {name = tensor, ...})", fname, e->key);
	}
	lua_settop(L, tbl - 1);
	return false;
}

/* ---- state_dict ------------------------------------------------------------------------ */

typedef struct walk {
	lua_State *L;
	const char *fname;
	int dict;             /* the table filled (state_dict) or read (load_state_dict) */
	/* load_state_dict */
	bool loading;         /* false: the checking pass; true: the copying pass */
	int expected;         /* set of the model's keys */
	int missing;          /* list of keys the dict lacks */
	int mismatch;         /* list of messages */
} walk;

static ln_status put_entry(const ln_state_entry *e, void *ctx, ln_error *err)
{
	walk *w = ctx;
	lua_State *L = w->L;
	luaL_checkstack(L, 8, NULL);
	switch (e->kind) {
	case LN_STATE_TENSOR:
		lnL_pushview(L, e->tensor);
		lua_setfield(L, w->dict, e->key);
		break;
	case LN_STATE_INTEGER:
		lua_pushinteger(L, (lua_Integer)*e->integer);
		lua_setfield(L, w->dict, e->key);
		break;
	case LN_STATE_OPAQUE:
		if (push_custom_state(L, w->fname, e)) {
			int sub = lua_gettop(L);
			lua_pushnil(L);
			while (lua_next(L, sub)) {
				push_sub_key(L, w->fname, e->key, sub + 1);
				lua_pushvalue(L, sub + 2);
				lua_settable(L, w->dict);
				lua_pop(L, 1);
			}
			lua_settop(L, sub - 2);
		}
		break;
	}
	return LN_OK;
}

/* Custom modules' Lua code runs during a walk and may close the module
 * being walked.  hold pushes a second Lua object for m, whose reference
 * keeps m alive until unhold drops it (or, after an error, the
 * collector). */
static lnL_module_box *hold(lua_State *L, ln_module *m)
{
	lnL_pushmodule(L, m);
	return lua_touserdata(L, -1);
}

static void unhold(lua_State *L, lnL_module_box *anchor, int idx)
{
	ln_module_release(anchor->m);
	anchor->m = NULL;
	lua_remove(L, idx);
}

/* Pushes m's state dict (fname for messages). */
static void push_state_dict(lua_State *L, ln_module *m, const char *fname)
{
	lnL_module_box *anchor = hold(L, m);
	int at = lua_gettop(L);
	lua_newtable(L);
	walk w = {.L = L, .fname = fname, .dict = lua_gettop(L)};
	ln_error err;
	if (ln_module_state_walk(m, put_entry, &w, &err) != LN_OK)
		lnL_error(L, fname, &err);
	unhold(L, anchor, at);
}

/* m:state_dict() -> {[key] = tensor view or integer} */
static int module_state_dict(lua_State *L)
{
	char fname[96];
	ln_module *m = check_self(L, "state_dict", fname, sizeof fname);
	if (lua_gettop(L) > 1)
		return luaL_error(L, "%s: takes no arguments, got %d", fname, lua_gettop(L) - 1);
	push_state_dict(L, m, fname);
	return 1;
}

/* ---- load_state_dict --------------------------------------------------------------------- */

/* Whether the value at idx is an integer entry's value: an integral
 * number, or (as PyTorch accepts for its 0-dim buffers) a tensor of one
 * element holding one.  The value goes to *out (out may be NULL). */
static bool integer_value(lua_State *L, int idx, int64_t *out)
{
	int ok = 0;
	lua_Integer v = 0;
	if (lua_type(L, idx) == LUA_TNUMBER) {
		v = lua_tointegerx(L, idx, &ok);
	} else {
		ln_tensor *t = lnL_testtensor(L, idx);
		if (t && !ln_tensor_is_empty(t) && ln_tensor_numel(t) == 1) {
			lua_pushnumber(L, (lua_Number)ln_tensor_data(t)[0]);
			v = lua_tointegerx(L, -1, &ok);
			lua_pop(L, 1);
		}
	}
	if (ok && out)
		*out = (int64_t)v;
	return ok;
}

/* What the model holds under a key, for the checking pass. */
typedef enum held { HELD_TENSOR, HELD_INTEGER, HELD_ANY } held;

/* Checking pass, for one key the model has: records it as expected, and
 * what is wrong with dict[key] if anything.  t is the model's tensor
 * (HELD_TENSOR); HELD_ANY is a custom module's value other than a tensor,
 * which its own load_state_dict checks. */
static void check_value(walk *w, const char *key, held kind, const ln_tensor *t)
{
	lua_State *L = w->L;
	lua_pushboolean(L, 1);
	lua_setfield(L, w->expected, key);
	int ty = lua_getfield(L, w->dict, key);
	char a[96], b[96];
	if (ty == LUA_TNIL) {
		lua_pushstring(L, key);
		append(L, w->missing);
	} else if (kind == HELD_TENSOR) {
		ln_tensor *v = lnL_testtensor(L, -1);
		if (!v)
			lua_pushfstring(L, "%s: expected a tensor of shape %s, got a %s", key,
			                ln_tensor_shape_str(t, a, sizeof a), luaL_typename(L, -1));
		else if (ln_tensor_is_empty(v))
			lua_pushfstring(L, "%s: the tensor is closed", key);
		else if (!ln_tensor_same_shape(v, t))
			lua_pushfstring(L, "%s: shape %s in the model, %s in the dict", key,
			                ln_tensor_shape_str(t, a, sizeof a), ln_tensor_shape_str(v, b, sizeof b));
		else
			lua_pushnil(L);
		if (lua_isnil(L, -1))
			lua_pop(L, 1);
		else
			append(L, w->mismatch);
	} else if (kind == HELD_INTEGER && !integer_value(L, -1, NULL)) {
		ln_tensor *v = lnL_testtensor(L, -1);
		if (v && !ln_tensor_is_empty(v))
			lua_pushfstring(L, "%s: expected an integer, got a tensor of shape %s", key,
			                ln_tensor_shape_str(v, a, sizeof a));
		else
			lua_pushfstring(L, "%s: expected an integer, got %s", key,
			                lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1)
			                                               : luaL_typename(L, -1));
		append(L, w->mismatch);
	}
	lua_pop(L, 1);
}

/* Copying pass: dict[key] (checked) into the model's tensor t, or into
 * *integer. */
static void load_value(walk *w, const char *key, ln_tensor *t, int64_t *integer)
{
	lua_State *L = w->L;
	if (lua_getfield(L, w->dict, key) != LUA_TNIL) {
		if (t) {
			ln_error err;
			if (ln_tensor_copy(t, lnL_testtensor(L, -1), &err) != LN_OK)
				lnL_error(L, w->fname, &err);
		} else {
			integer_value(L, -1, integer);
		}
	}
	lua_pop(L, 1);
}

/* A custom module's entries: checked against its own state_dict, then
 * loaded through its load_state_dict method (given the entries under its
 * prefix, prefix removed) or, without one, copied into the tensors its
 * state_dict returned. */
static void custom_entries(walk *w, const ln_state_entry *e)
{
	lua_State *L = w->L;
	if (!push_custom_state(L, w->fname, e))
		return;
	int sub = lua_gettop(L), tbl = sub - 1;
	bool has_load = lua_getfield(L, tbl, "load_state_dict") == LUA_TFUNCTION;
	lua_pop(L, 1);
	if (w->loading && has_load) {
		lua_getfield(L, tbl, "load_state_dict");
		lua_pushvalue(L, tbl);
		lua_newtable(L);
		int given = lua_gettop(L);
		lua_pushnil(L);
		while (lua_next(L, sub)) {
			lua_pop(L, 1);
			push_sub_key(L, w->fname, e->key, lua_gettop(L));
			lua_gettable(L, w->dict);
			lua_pushvalue(L, -2);
			lua_insert(L, -2);
			lua_settable(L, given);
		}
		lua_call(L, 2, 0);
		lua_settop(L, tbl - 1);
		return;
	}
	lua_pushnil(L);
	while (lua_next(L, sub)) {
		const char *key = push_sub_key(L, w->fname, e->key, sub + 1);
		ln_tensor *t = lnL_testtensor(L, sub + 2);
		if (t && ln_tensor_is_empty(t))
			luaL_error(L, "%s: the custom module at '%s' returned a closed tensor for '%s'",
			           w->fname, e->key, key);
		if (!w->loading) {
			if (!t && !has_load) {
				lua_pushfstring(L, "%s: the custom module at '%s' has no load_state_dict method "
				                "to set this %s", key, e->key, luaL_typename(L, sub + 2));
				append(L, w->mismatch);
			}
			check_value(w, key, t ? HELD_TENSOR : HELD_ANY, t);
		} else if (t) {
			load_value(w, key, t, NULL);
		}
		lua_settop(L, sub + 1);
	}
	lua_settop(L, tbl - 1);
}

static ln_status load_entry(const ln_state_entry *e, void *ctx, ln_error *err)
{
	walk *w = ctx;
	luaL_checkstack(w->L, 12, NULL);
	switch (e->kind) {
	case LN_STATE_TENSOR:
		if (w->loading)
			load_value(w, e->key, e->tensor, NULL);
		else
			check_value(w, e->key, HELD_TENSOR, e->tensor);
		break;
	case LN_STATE_INTEGER:
		if (w->loading)
			load_value(w, e->key, NULL, e->integer);
		else
			check_value(w, e->key, HELD_INTEGER, NULL);
		break;
	case LN_STATE_OPAQUE:
		custom_entries(w, e);
		break;
	}
	return LN_OK;
}

/* Adds "<n> <what>(s) (a, b, c)" for the list at idx, when not empty. */
static void add_list(luaL_Buffer *b, lua_State *L, int idx, const char *what, bool *first)
{
	lua_Integer n = luaL_len(L, idx);
	if (n == 0)
		return;
	lua_pushfstring(L, "%s%I %s%s (", *first ? "" : "; ", (LUAI_UACINT)n, what,
	                n == 1 ? "" : what[strlen(what) - 1] == 'h' ? "es" : "s");
	luaL_addvalue(b);
	for (lua_Integer i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addstring(b, ", ");
		lua_geti(L, idx, i);
		luaL_addvalue(b);
	}
	luaL_addchar(b, ')');
	*first = false;
}

/* m:load_state_dict(dict[, {strict=true}]) -> missing, unexpected (lists
 * of keys).  A shape or type mismatch is always an error; strict also
 * makes a missing or unexpected key one.  Nothing is copied unless
 * everything checks. */
static int module_load_state_dict(lua_State *L)
{
	char fname[96];
	ln_module *m = check_self(L, "load_state_dict", fname, sizeof fname);
	if (!lua_istable(L, 2) || lnL_testmodule(L, 2))
		return luaL_error(L, "%s: expected a table of tensors (a state dict), got %s", fname,
		                  lnL_testmodule(L, 2) ? "a module" : luaL_typename(L, 2));
	static const lnL_option known[] = {{"strict", LUA_TBOOLEAN}, {NULL, 0}};
	lnL_checkoptions(L, 3, fname, known);
	bool strict = lnL_optboolean(L, 3, "strict", 1);
	lua_settop(L, 2);
	lua_newtable(L);  /* 3 expected */
	lua_newtable(L);  /* 4 missing */
	lua_newtable(L);  /* 5 mismatch */
	lua_newtable(L);  /* 6 unexpected */
	lnL_module_box *anchor = hold(L, m);  /* 7 */
	walk w = {.L = L, .fname = fname, .dict = 2, .expected = 3, .missing = 4, .mismatch = 5};
	ln_error err;
	if (ln_module_state_walk(m, load_entry, &w, &err) != LN_OK)
		lnL_error(L, fname, &err);
	lua_pushnil(L);
	while (lua_next(L, 2)) {
		lua_pop(L, 1);
		lua_pushvalue(L, -1);
		if (lua_type(L, -1) != LUA_TSTRING || lua_gettable(L, 3) == LUA_TNIL) {
			lua_settop(L, 8);
			luaL_tolstring(L, 8, NULL);
			append(L, 6);
		}
		lua_settop(L, 8);
	}
	sort_strings(L, 6);
	if (luaL_len(L, 5) > 0 || (strict && (luaL_len(L, 4) > 0 || luaL_len(L, 6) > 0))) {
		luaL_Buffer b;
		luaL_buffinit(L, &b);
		luaL_addstring(&b, fname);
		luaL_addstring(&b, ": ");
		bool first = true;
		add_list(&b, L, 4, "missing key", &first);
		add_list(&b, L, 6, "unexpected key", &first);
		add_list(&b, L, 5, "mismatch", &first);
		if (luaL_len(L, 5) == 0)
			luaL_addstring(&b, " (strict=false loads the keys that match)");
		luaL_pushresult(&b);
		return lua_error(L);
	}
	w.loading = true;
	if (ln_module_state_walk(m, load_entry, &w, &err) != LN_OK)
		lnL_error(L, fname, &err);
	unhold(L, anchor, 7);
	lua_pushvalue(L, 4);
	lua_pushvalue(L, 6);
	return 2;
}

/* ---- safetensors files ---------------------------------------------------------------------- */

static int by_name(const void *a, const void *b)
{
	return strcmp(((const ln_st_item *)a)->name, ((const ln_st_item *)b)->name);
}

/* A string key at idx with no NUL byte, or an error. */
static const char *check_name(lua_State *L, int idx, const char *fname, const char *what)
{
	idx = lua_absindex(L, idx);
	if (lua_type(L, idx) != LUA_TSTRING) {
		const char *type = luaL_typename(L, idx);
		luaL_error(L, "%s: %s keys must be strings, got %s %s", fname, what, type,
		           luaL_tolstring(L, idx, NULL));
	}
	size_t len;
	const char *s = lua_tolstring(L, idx, &len);
	if (strlen(s) != len)
		luaL_error(L, "%s: %s key '%s...' contains a NUL byte", fname, what, s);
	return s;
}

/* lunet.save_safetensors(path, model_or_dict[, metadata]): tensors as F32,
 * integers as I64 scalars, other numbers as F32 scalars, in the order of
 * their names; metadata (string -> string, default {format = "pt"}) as
 * __metadata__.  Written atomically. */
static int l_save_safetensors(lua_State *L)
{
	const char *fname = "lunet.save_safetensors";
	const char *path = lnL_checkpath(L, 1, fname, NULL);
	lua_settop(L, 3);
	lnL_module_box *mb = lnL_testmodule(L, 2);
	if (mb) {
		if (!mb->m)
			return luaL_error(L, "%s: the module is closed", fname);
		push_state_dict(L, mb->m, fname);
		lua_replace(L, 2);
	} else if (!lua_istable(L, 2)) {
		return luaL_error(L, "%s: expected a module or a table of tensors, got %s", fname,
		                  luaL_typename(L, 2));
	}
	if (!lua_isnil(L, 3) && !lua_istable(L, 3))
		return luaL_error(L, "%s: metadata must be a table of strings, got %s", fname,
		                  luaL_typename(L, 3));

	size_t n = 0, nmeta = 1;
	for (lua_pushnil(L); lua_next(L, 2); lua_pop(L, 1))
		n++;
	if (!lua_isnil(L, 3))
		for (lua_pushnil(L); lua_next(L, 3); lua_pop(L, 1))
			nmeta++;
	/* arrays as userdata: collected if an error is raised below */
	ln_st_item *items = lua_newuserdatauv(L, (n ? n : 1) * sizeof *items, 0);
	ln_st_meta *meta = lua_newuserdatauv(L, nmeta * sizeof *meta, 0);
	size_t i = 0;
	for (lua_pushnil(L); lua_next(L, 2); lua_pop(L, 1)) {
		ln_st_item *it = &items[i++];
		memset(it, 0, sizeof *it);
		it->name = check_name(L, -2, fname, "state dict");
		ln_tensor *t = lnL_testtensor(L, -1);
		if (t) {
			if (ln_tensor_is_empty(t))
				return luaL_error(L, "%s: '%s' is a closed tensor", fname, it->name);
			it->tensor = t;
		} else if (lua_isinteger(L, -1)) {
			it->is_integer = true;
			it->integer = (int64_t)lua_tointeger(L, -1);
		} else if (lua_type(L, -1) == LUA_TNUMBER) {
			it->number = lua_tonumber(L, -1);
		} else {
			return luaL_error(L, "%s: '%s' is a %s, expected a tensor or a number", fname,
			                  it->name, luaL_typename(L, -1));
		}
	}
	qsort(items, n, sizeof *items, by_name);
	size_t k = 0;
	bool has_format = false;
	if (!lua_isnil(L, 3))
		for (lua_pushnil(L); lua_next(L, 3); lua_pop(L, 1)) {
			meta[k].key = check_name(L, -2, fname, "metadata");
			if (lua_type(L, -1) != LUA_TSTRING || strlen(lua_tostring(L, -1)) != lua_rawlen(L, -1))
				return luaL_error(L, "%s: metadata '%s' must be a string without NUL bytes, got %s",
				                  fname, meta[k].key, luaL_typename(L, -1));
			meta[k].value = lua_tostring(L, -1);
			has_format |= strcmp(meta[k].key, "format") == 0;
			k++;
		}
	if (!has_format)
		meta[k++] = (ln_st_meta){"format", "pt"};

	void *buf;
	size_t size;
	ln_error err;
	if (ln_safetensors_encode(&buf, &size, items, n, meta, k, &err) != LN_OK)
		return lnL_error(L, fname, &err);
	ln_status st = ln_file_write_atomic(path, buf, size, &err);
	ln_free(buf);
	if (st != LN_OK)
		return lnL_error(L, fname, &err);
	return 0;
}

/* The file image and parse result of a load, freed by __gc if an error
 * is raised before the load frees them. */
typedef struct st_box {
	void *data;
	ln_safetensors *f;
} st_box;

static int st_box_gc(lua_State *L)
{
	st_box *b = luaL_checkudata(L, 1, ST_BOX_MT);
	ln_safetensors_free(b->f);
	ln_free(b->data);
	b->f = NULL;
	b->data = NULL;
	return 0;
}

/* lunet.load_safetensors(path) -> dict, metadata.  Tensors become float32
 * tensors; a scalar becomes a number (an integer for I64). */
static int l_load_safetensors(lua_State *L)
{
	const char *fname = "lunet.load_safetensors";
	const char *path = lnL_checkpath(L, 1, fname, NULL);
	lua_settop(L, 1);
	st_box *b = lua_newuserdatauv(L, sizeof *b, 0);
	b->data = NULL;
	b->f = NULL;
	luaL_setmetatable(L, ST_BOX_MT);
	size_t size;
	ln_error err;
	if (ln_file_read(path, &b->data, &size, &err) != LN_OK)
		return lnL_error(L, fname, &err);
	if (ln_safetensors_parse(&b->f, b->data, size, &err) != LN_OK)
		return lnL_raisef(L, "%s: %s: %s", fname, path, err.msg);
	const ln_safetensors *f = b->f;
	lua_createtable(L, 0, (int)f->ntensors);
	for (size_t i = 0; i < f->ntensors; i++) {
		const ln_st_tensor *e = &f->tensors[i];
		if (e->ndim == 0) {
			if (e->dtype == LN_ST_I64)
				lua_pushinteger(L, (lua_Integer)ln_st_scalar_integer(e));
			else
				lua_pushnumber(L, (lua_Number)ln_st_scalar_number(e));
		} else if (e->numel == 0) {
			char shape[96];
			return lnL_raisef(L, "%s: %s: tensor '%s' has shape %s: lunet tensors cannot be empty",
			                  fname, path, e->name, ln_shape_str(shape, sizeof shape, e->ndim,
			                                                     e->shape));
		} else {
			ln_tensor *t = lnL_newtensor(L);
			if (ln_tensor_alloc(t, e->ndim, e->shape, &err) != LN_OK)
				return lnL_raisef(L, "%s: %s: tensor '%s': %s", fname, path, e->name, err.msg);
			ln_st_to_float(ln_tensor_data(t), e);
			lnL_gcpressure(L, (size_t)e->numel * sizeof(float));
		}
		lua_setfield(L, -2, e->name);
	}
	lua_createtable(L, 0, (int)f->nmeta);
	for (size_t i = 0; i < f->nmeta; i++) {
		lua_pushstring(L, f->meta[i].value);
		lua_setfield(L, -2, f->meta[i].key);
	}
	/* free the image now rather than at the next collection */
	lua_pushcfunction(L, st_box_gc);
	lua_pushvalue(L, 2);
	lua_call(L, 1, 0);
	return 2;
}

void lnL_open_interop(lua_State *L)
{
	luaL_newmetatable(L, ST_BOX_MT);
	lua_pushcfunction(L, st_box_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);

	lua_pushcfunction(L, l_save_safetensors);
	lua_setfield(L, -2, "save_safetensors");
	lua_pushcfunction(L, l_load_safetensors);
	lua_setfield(L, -2, "load_safetensors");

	lua_getfield(L, -1, "nn");
	lua_getfield(L, -1, "_module_methods");
	lua_pushcfunction(L, module_state_dict);
	lua_setfield(L, -2, "state_dict");
	lua_pushcfunction(L, module_load_state_dict);
	lua_setfield(L, -2, "load_state_dict");
	lua_pop(L, 2);
}
