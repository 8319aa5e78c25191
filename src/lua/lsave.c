/*
 * lsave.c -- lunet.save(path, obj) and lunet.load(path).
 *
 *     lunet.save("mlp.lnt", model)
 *     lunet.save("ckpt.lnt", {model = model, opt = opt, epoch = 3})
 *     local ck = lunet.load("ckpt.lnt")   -- ck.opt trains ck.model
 *
 * Saving walks the Lua value and hands each piece to the writer of
 * io/save.c (the format is documented in save.h); loading reads the
 * pieces back and rebuilds the Lua values.  Loading never runs code: no
 * chunk is loaded and no function or metamethod is called.
 *
 * What can be saved: nil, booleans, numbers (integers stay integers),
 * strings, tables (their raw contents, keys being strings, numbers or
 * booleans; metatables are not saved), tensors, built-in modules and
 * optimizers.  Anything else (functions, threads, other userdata, custom
 * modules written in Lua) is an error naming where it was found:
 * "lunet.save: cannot save a function at obj.callbacks[1]".  A table or
 * tensor met twice is saved once and loads as one object; a table that
 * contains itself is an error ("lunet.save: table cycle at key obj.a.b").
 * Fields a script stored on a module are not saved.
 *
 * Optimizers.  An optimizer saved in the same file as the modules that
 * hold its parameters ({model = m, opt = o}) is rebuilt on load, in C,
 * over the loaded modules' parameters (ln_saved_optim_build), with its
 * hyper-parameters, step count and state: training continues exactly
 * where it stopped.  An optimizer saved
 * without them loads as its state table (the form of opt:state(), plus
 * `options` for the constructor), to be attached to a new one:
 *
 *     local st = lunet.load("opt.lnt")
 *     local opt = optim[st.kind](model, st.options)
 *     opt:load_state(st)
 *
 * Module and optimizer userdata are reached through lnaux.h
 * (lnL_testmodule, lnL_pushmodule, lnL_testoptim), so their layout stays
 * private to lnn.c and loptim.c.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "core/alloc.h"
#include "io/file.h"
#include "io/save.h"
#include "lnaux.h"
#include "nn/module.h"
#include "nn/optim.h"

#define WRITER_MT "lunet.save.writer"
#define READER_MT "lunet.save.reader"

typedef lnL_module_box module_box;
typedef lnL_optim_box optim_box;

/* ---- resources held across Lua calls ------------------------------------------
 *
 * The writer and the reader (with the file image it reads) live in
 * userdata whose __gc frees them, so that a Lua error anywhere in the walk
 * (out of memory, a bad value) leaks nothing. */

typedef struct writer_box { ln_writer *w; } writer_box;
typedef struct reader_box {
	ln_reader *r;
	void *data;  /* the file image, from ln_file_read */
} reader_box;

static int writer_gc(lua_State *L)
{
	writer_box *b = luaL_checkudata(L, 1, WRITER_MT);
	ln_writer_free(b->w);
	b->w = NULL;
	return 0;
}

static int reader_gc(lua_State *L)
{
	reader_box *b = luaL_checkudata(L, 1, READER_MT);
	ln_reader_free(b->r);
	ln_free(b->data);
	b->r = NULL;
	b->data = NULL;
	return 0;
}

/* ==== saving ======================================================================= */

/* One step of the path from the root to the value being written: a key
 * on the Lua stack, or an array index. */
typedef struct frame {
	int key;             /* stack index of the key, or 0 */
	lua_Integer index;   /* the array index when key is 0 */
} frame;

typedef struct saver {
	lua_State *L;
	ln_writer *w;
	int ids;     /* stack index: table or tensor userdata -> object id */
	int active;  /* stack index: tables being written -> true */
	int depth;   /* frames in use */
	frame path[LN_SAVE_MAX_DEPTH + 2];
} saver;

static bool is_identifier(const char *s, size_t len)
{
	if (len == 0 || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z')))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!(s[i] == '_' || (s[i] >= '0' && s[i] <= '9') ||
		      ((s[i] | 32) >= 'a' && (s[i] | 32) <= 'z')))
			return false;
	return true;
}

/* Appends the key at idx as a path step: .name, ["odd key"], [3], [true]. */
static void add_key(luaL_Buffer *b, lua_State *L, int idx)
{
	char tmp[64];
	switch (lua_type(L, idx)) {
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		if (is_identifier(s, len) && len <= 60) {
			luaL_addchar(b, '.');
			luaL_addlstring(b, s, len);
			break;
		}
		luaL_addstring(b, "[\"");
		for (size_t i = 0; i < len && i < 40; i++) {
			unsigned char c = (unsigned char)s[i];
			if (c == '"' || c == '\\') {
				luaL_addchar(b, '\\');
				luaL_addchar(b, (char)c);
			} else if (c < 32 || c >= 127) {
				snprintf(tmp, sizeof tmp, "\\%u", c);
				luaL_addstring(b, tmp);
			} else {
				luaL_addchar(b, (char)c);
			}
		}
		luaL_addstring(b, len > 40 ? "...\"]" : "\"]");
		break;
	}
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			snprintf(tmp, sizeof tmp, "[%lld]", (long long)lua_tointeger(L, idx));
		else
			snprintf(tmp, sizeof tmp, "[%.14g]", lua_tonumber(L, idx));
		luaL_addstring(b, tmp);
		break;
	case LUA_TBOOLEAN:
		luaL_addstring(b, lua_toboolean(L, idx) ? "[true]" : "[false]");
		break;
	default:
		snprintf(tmp, sizeof tmp, "[<%s>]", luaL_typename(L, idx));
		luaL_addstring(b, tmp);
		break;
	}
}

/* Pushes the path of the value being written: "obj.layers[2].weight". */
static const char *push_path(saver *S)
{
	lua_State *L = S->L;
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	luaL_addstring(&b, "obj");
	for (int i = 0; i < S->depth; i++) {
		if (S->path[i].key) {
			add_key(&b, L, S->path[i].key);
		} else {
			char tmp[32];
			snprintf(tmp, sizeof tmp, "[%lld]", (long long)S->path[i].index);
			luaL_addstring(&b, tmp);
		}
	}
	luaL_pushresult(&b);
	return lua_tostring(L, -1);
}

/* "lunet.save: <what> at <path>" */
static int fail_at(saver *S, const char *what)
{
	const char *path = push_path(S);
	return luaL_error(S->L, "lunet.save: %s at %s", what, path);
}

/* A C error while writing the value at the current path. */
static int fail_status(saver *S, const ln_error *err)
{
	const char *path = push_path(S);
	return luaL_error(S->L, "lunet.save: cannot save %s: %s", path, err->msg);
}

static void push_frame(saver *S, int key, lua_Integer index)
{
	if (S->depth >= (int)(sizeof S->path / sizeof S->path[0]))
		luaL_error(S->L, "lunet.save: nesting deeper than %d levels", LN_SAVE_MAX_DEPTH);
	S->path[S->depth++] = (frame){key, index};
}

static void save_value(saver *S, int idx);

/* A key of the table being written: a string, number or boolean. */
static void save_key(saver *S, int idx)
{
	lua_State *L = S->L;
	ln_error err;
	ln_status st;
	switch (lua_type(L, idx)) {
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		st = ln_write_string(S->w, s, len, &err);
		break;
	}
	case LUA_TNUMBER:
		st = lua_isinteger(L, idx) ? ln_write_integer(S->w, lua_tointeger(L, idx), &err)
		                           : ln_write_number(S->w, lua_tonumber(L, idx), &err);
		break;
	case LUA_TBOOLEAN:
		st = ln_write_boolean(S->w, lua_toboolean(L, idx), &err);
		break;
	default: {
		char what[96];
		snprintf(what, sizeof what, "cannot save a %s as a table key", luaL_typename(L, idx));
		S->depth--;  /* the path is the table's, not the key's */
		fail_at(S, what);
		return;
	}
	}
	if (st != LN_OK)
		fail_status(S, &err);
}

/* The key at idx lies in the array part 1..na written first. */
static bool in_array(lua_State *L, int idx, lua_Integer na)
{
	if (!lua_isinteger(L, idx))
		return false;
	lua_Integer k = lua_tointeger(L, idx);
	return k >= 1 && k <= na;
}

/* If the value at idx (a table or tensor) was written before, writes a
 * reference to it and returns true; otherwise writes nothing. */
static bool save_backref(saver *S, int idx)
{
	lua_State *L = S->L;
	ln_error err;
	lua_pushvalue(L, idx);
	if (lua_rawget(L, S->ids) != LUA_TNUMBER) {
		lua_pop(L, 1);
		return false;
	}
	uint64_t id = (uint64_t)lua_tointeger(L, -1);
	lua_pop(L, 1);
	if (ln_write_backref(S->w, id, &err) != LN_OK)
		fail_status(S, &err);
	return true;
}

/* A table: its array part 1..na (up to the first nil), then every other
 * key.  Seen before: a ref.  Being written (we are inside it): a cycle. */
static void save_table(saver *S, int idx)
{
	lua_State *L = S->L;
	ln_error err;
	uint64_t id;
	lua_pushvalue(L, idx);
	if (lua_rawget(L, S->active) != LUA_TNIL)
		luaL_error(L, "lunet.save: table cycle at key %s", push_path(S));
	lua_pop(L, 1);
	if (save_backref(S, idx))
		return;

	lua_Integer na = 0;
	while (lua_rawgeti(L, idx, na + 1) != LUA_TNIL) {
		lua_pop(L, 1);
		na++;
	}
	lua_pop(L, 1);
	lua_Integer nh = 0;
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		lua_pop(L, 1);
		if (!in_array(L, -1, na))
			nh++;
	}

	if (ln_write_table_begin(S->w, (uint64_t)na, &id, &err) != LN_OK)
		fail_status(S, &err);
	lua_pushvalue(L, idx);
	lua_pushinteger(L, (lua_Integer)id);
	lua_rawset(L, S->ids);
	lua_pushvalue(L, idx);
	lua_pushboolean(L, 1);
	lua_rawset(L, S->active);

	for (lua_Integer i = 1; i <= na; i++) {
		push_frame(S, 0, i);
		lua_rawgeti(L, idx, i);
		save_value(S, lua_gettop(L));
		lua_pop(L, 1);
		S->depth--;
	}
	if (ln_write_table_hash(S->w, (uint64_t)nh, &err) != LN_OK)
		fail_status(S, &err);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		if (!in_array(L, -2, na)) {
			push_frame(S, lua_gettop(L) - 1, 0);
			save_key(S, lua_gettop(L) - 1);
			save_value(S, lua_gettop(L));
			S->depth--;
		}
		lua_pop(L, 1);
	}
	ln_write_table_end(S->w);

	lua_pushvalue(L, idx);
	lua_pushnil(L);
	lua_rawset(L, S->active);
}

/* A tensor (once per userdata), module or optimizer; other userdata are
 * errors naming their type. */
static void save_userdata(saver *S, int idx)
{
	lua_State *L = S->L;
	ln_error err;
	ln_status st;
	ln_tensor *t = lnL_testtensor(L, idx);
	if (t) {
		if (ln_tensor_is_empty(t))
			fail_at(S, "cannot save a closed tensor");
		if (save_backref(S, idx))
			return;
		uint64_t id;
		if (ln_write_tensor(S->w, t, &id, &err) != LN_OK)
			fail_status(S, &err);
		lua_pushvalue(L, idx);
		lua_pushinteger(L, (lua_Integer)id);
		lua_rawset(L, S->ids);
		return;
	}
	module_box *mb = lnL_testmodule(L, idx);
	if (mb) {
		if (!mb->m)
			fail_at(S, "cannot save a closed module");
		if ((st = ln_write_module(S->w, mb->m, NULL, &err)) != LN_OK)
			fail_status(S, &err);
		return;
	}
	optim_box *ob = lnL_testoptim(L, idx);
	if (ob) {
		if (!ob->opt)
			fail_at(S, "cannot save a closed optimizer");
		if ((st = ln_write_optim(S->w, ob->opt, NULL, &err)) != LN_OK)
			fail_status(S, &err);
		return;
	}
	char what[128];
	if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING)
		snprintf(what, sizeof what, "cannot save a userdata (%s)", lua_tostring(L, -1));
	else
		snprintf(what, sizeof what, "cannot save a userdata");
	fail_at(S, what);
}

static void save_value(saver *S, int idx)
{
	lua_State *L = S->L;
	ln_error err;
	ln_status st = LN_OK;
	if (!lua_checkstack(L, 10))
		luaL_error(L, "lunet.save: out of Lua stack space");
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		st = ln_write_nil(S->w, &err);
		break;
	case LUA_TBOOLEAN:
		st = ln_write_boolean(S->w, lua_toboolean(L, idx), &err);
		break;
	case LUA_TNUMBER:
		st = lua_isinteger(L, idx) ? ln_write_integer(S->w, lua_tointeger(L, idx), &err)
		                           : ln_write_number(S->w, lua_tonumber(L, idx), &err);
		break;
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		st = ln_write_string(S->w, s, len, &err);
		break;
	}
	case LUA_TTABLE:
		save_table(S, idx);
		return;
	case LUA_TUSERDATA:
		save_userdata(S, idx);
		return;
	default: {
		char what[64];
		snprintf(what, sizeof what, "cannot save a %s", luaL_typename(L, idx));
		fail_at(S, what);
		return;
	}
	}
	if (st != LN_OK)
		fail_status(S, &err);
}

/* lunet.save(path, obj): writes obj to path atomically. */
static int l_save(lua_State *L)
{
	const char *path = lnL_checkpath(L, 1, "lunet.save", NULL);
	luaL_checkany(L, 2);
	lua_settop(L, 2);
	writer_box *wb = lua_newuserdatauv(L, sizeof *wb, 0);  /* 3 */
	wb->w = NULL;
	luaL_setmetatable(L, WRITER_MT);
	ln_error err;
	if (ln_writer_new(&wb->w, &err) != LN_OK)
		return luaL_error(L, "lunet.save: %s: %s", path, err.msg);
	lua_newtable(L);  /* 4: ids */
	lua_newtable(L);  /* 5: active */
	saver S;
	S.L = L;
	S.w = wb->w;
	S.ids = 4;
	S.active = 5;
	S.depth = 0;
	save_value(&S, 2);
	const void *data;
	size_t size;
	if (ln_writer_finish(wb->w, &data, &size, &err) != LN_OK)
		return luaL_error(L, "lunet.save: %s: %s", path, err.msg);
	if (ln_file_write_atomic(path, data, size, &err) != LN_OK)
		return luaL_error(L, "lunet.save: %s", err.msg);
	ln_writer_free(wb->w);
	wb->w = NULL;
	return 0;
}

/* ==== loading ======================================================================= */

typedef struct loader {
	lua_State *L;
	ln_reader *r;
	const char *path;
	int objs;     /* stack index: object id -> Lua value */
	int mods;     /* stack index: ln_module * (light userdata) -> its userdata */
	int pending;  /* stack index: placeholder table -> optimizer id */
	int noptims;
} loader;

static int fail_load(loader *Ld, const ln_error *err)
{
	return luaL_error(Ld->L, "lunet.load: %s: %s", Ld->path, err->msg);
}

/* objs[id] = the value on top (left there). */
static void remember(loader *Ld, uint64_t id)
{
	lua_pushvalue(Ld->L, -1);
	lua_rawseti(Ld->L, Ld->objs, (lua_Integer)id);
}

static void push_atom(lua_State *L, const ln_save_atom *a)
{
	switch (a->tag) {
	case LN_SAVE_NIL: lua_pushnil(L); break;
	case LN_SAVE_FALSE:
	case LN_SAVE_TRUE: lua_pushboolean(L, a->boolean); break;
	case LN_SAVE_NUMBER: lua_pushnumber(L, a->number); break;
	case LN_SAVE_INTEGER: lua_pushinteger(L, (lua_Integer)a->integer); break;
	default: lua_pushlstring(L, a->str, a->len); break;
	}
}

static void load_value(loader *Ld);

static void load_table(loader *Ld)
{
	lua_State *L = Ld->L;
	ln_error err;
	uint64_t na, nh, id;
	if (ln_read_table_begin(Ld->r, &na, &id, &err) != LN_OK)
		fail_load(Ld, &err);
	/* na is at most the bytes left in the file */
	lua_createtable(L, na < (1u << 24) ? (int)na : 1 << 24, 0);
	int t = lua_gettop(L);
	remember(Ld, id);
	for (uint64_t i = 1; i <= na; i++) {
		load_value(Ld);
		lua_rawseti(L, t, (lua_Integer)i);
	}
	if (ln_read_table_hash(Ld->r, &nh, &err) != LN_OK)
		fail_load(Ld, &err);
	for (uint64_t i = 0; i < nh; i++) {
		ln_save_atom key;
		if (ln_read_key(Ld->r, &key, &err) != LN_OK)
			fail_load(Ld, &err);
		push_atom(L, &key);
		load_value(Ld);
		lua_rawset(L, t);
	}
	ln_read_table_end(Ld->r, id);
}

static void push_module(loader *Ld, ln_module *m)
{
	lua_State *L = Ld->L;
	char mt[96];
	snprintf(mt, sizeof mt, "lunet.nn.%s", m->cls->name);
	if (luaL_getmetatable(L, mt) != LUA_TTABLE)
		luaL_error(L, "lunet.load: %s: no Lua binding for module class %s", Ld->path,
		           m->cls->name);
	lua_pop(L, 1);
	lnL_pushmodule(L, m);
}

/* A module record: the root and the descendants that were new in it get
 * userdata; containers get their children table (seq:get(i)). */
static void load_module(loader *Ld)
{
	lua_State *L = Ld->L;
	ln_error err;
	ln_module *root;
	uint64_t first;
	if (ln_read_module(Ld->r, &root, &first, &err) != LN_OK)
		fail_load(Ld, &err);
	uint64_t last = ln_reader_nobjects(Ld->r);
	for (uint64_t id = first; id < last; id++) {
		ln_module *m = ln_reader_module(Ld->r, id);
		push_module(Ld, m);
		remember(Ld, id);
		lua_rawsetp(L, Ld->mods, m);
	}
	for (uint64_t id = first; id < last; id++) {
		ln_module *m = ln_reader_module(Ld->r, id);
		if (m->nchildren == 0)
			continue;
		lua_rawgeti(L, Ld->objs, (lua_Integer)id);
		lua_getiuservalue(L, -1, 1);
		lua_createtable(L, m->nchildren, 0);
		for (int i = 0; i < m->nchildren; i++) {
			lua_rawgetp(L, Ld->mods, m->children[i]);
			lua_rawseti(L, -2, i + 1);
		}
		lua_setfield(L, -2, "children");
		lua_pop(L, 2);
	}
	lua_rawgeti(L, Ld->objs, (lua_Integer)first);
}

static void load_value(loader *Ld)
{
	lua_State *L = Ld->L;
	ln_error err;
	ln_save_tag tag;
	uint64_t id;
	if (!lua_checkstack(L, 10))
		luaL_error(L, "lunet.load: %s: out of Lua stack space", Ld->path);
	if (ln_reader_peek(Ld->r, &tag, &err) != LN_OK)
		fail_load(Ld, &err);
	switch (tag) {
	case LN_SAVE_TABLE:
		load_table(Ld);
		return;
	case LN_SAVE_TENSOR: {
		ln_tensor *t = lnL_newtensor(L);
		if (ln_read_tensor(Ld->r, t, &id, &err) != LN_OK)
			fail_load(Ld, &err);
		lnL_gcpressure(L, (size_t)ln_tensor_numel(t) * sizeof(float));
		remember(Ld, id);
		return;
	}
	case LN_SAVE_MODULE:
		load_module(Ld);
		return;
	case LN_SAVE_OPTIM: {
		/* built once the whole file is read: its modules may come later */
		const ln_saved_optim *s;
		if (ln_read_optim(Ld->r, &s, &id, &err) != LN_OK)
			fail_load(Ld, &err);
		lua_newtable(L);
		remember(Ld, id);
		lua_pushvalue(L, -1);
		lua_pushinteger(L, (lua_Integer)id);
		lua_rawset(L, Ld->pending);
		Ld->noptims++;
		return;
	}
	case LN_SAVE_REF: {
		ln_save_tag kind;
		if (ln_read_backref(Ld->r, &id, &kind, &err) != LN_OK)
			fail_load(Ld, &err);
		lua_rawgeti(L, Ld->objs, (lua_Integer)id);
		return;
	}
	default: {
		ln_save_atom a;
		if (ln_read_atom(Ld->r, &a, &err) != LN_OK)
			fail_load(Ld, &err);
		push_atom(L, &a);
		return;
	}
	}
}

/* ---- optimizers ------------------------------------------------------------------ */

/* Pushes a saved optimizer that has no model to attach to as its state:
 * {kind=, steps=, config={...}, params={{<state name>=tensor, ...}, ...},
 * options={...}}. */
static void push_state(lua_State *L, const ln_saved_optim *s)
{
	lua_newtable(L);
	lua_pushstring(L, ln_optim_name(&s->config));
	lua_setfield(L, -2, "kind");
	lua_pushinteger(L, (lua_Integer)s->steps);
	lua_setfield(L, -2, "steps");
	lnL_pushoptimconfig(L, &s->config, false);
	lua_setfield(L, -2, "config");
	lnL_pushoptimconfig(L, &s->config, true);
	lua_setfield(L, -2, "options");
	lua_createtable(L, s->nparams, 0);
	for (int i = 0; i < s->nparams; i++) {
		lua_createtable(L, 0, s->nstate);
		for (int k = 0; k < s->nstate; k++) {
			lnL_pushview(L, &s->state[i * s->nstate + k]);
			lua_setfield(L, -2, s->state_name[k]);
		}
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "params");
}

/* Pushes the optimizer of a saved record: rebuilt in C over the loaded
 * modules' parameters when it is bound to them, else its state. */
static void push_optim(loader *Ld, const ln_saved_optim *s)
{
	lua_State *L = Ld->L;
	if (!s->bound) {
		push_state(L, s);
		return;
	}
	const char *kind = ln_optim_name(&s->config);
	lnL_optim_box *ob = lnL_newoptim(L, kind);
	ln_error err;
	if (ln_saved_optim_build(s, &ob->opt, &err) != LN_OK)
		lnL_raisef(L, "lunet.load: %s: cannot rebuild the %s optimizer: %s", Ld->path, kind,
		           err.msg);
	size_t bytes = 0;
	for (int i = 0; i < s->nparams * s->nstate; i++)
		bytes += (size_t)ln_tensor_numel(&s->state[i]) * sizeof(float);
	lnL_gcpressure(L, bytes);
}

/* Replaces the placeholders left for optimizers in the table at t (and
 * the tables below it) with the optimizers in `built` (id -> value). */
static void fix_placeholders(loader *Ld, int t, int built, int visited)
{
	lua_State *L = Ld->L;
	if (!lua_checkstack(L, 8))
		luaL_error(L, "lunet.load: %s: out of Lua stack space", Ld->path);
	lua_pushvalue(L, t);
	if (lua_rawget(L, visited) != LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	lua_pop(L, 1);
	lua_pushvalue(L, t);
	lua_pushboolean(L, 1);
	lua_rawset(L, visited);
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (lua_istable(L, -1)) {
			lua_pushvalue(L, -1);
			if (lua_rawget(L, Ld->pending) == LUA_TNUMBER) {
				/* an existing key may be reassigned during lua_next */
				lua_rawget(L, built);
				lua_pushvalue(L, -3);
				lua_insert(L, -2);
				lua_rawset(L, t);
			} else {
				lua_pop(L, 1);
				fix_placeholders(Ld, lua_gettop(L), built, visited);
			}
		}
		lua_pop(L, 1);
	}
}

/* lunet.load(path) -> the saved value. */
static int l_load(lua_State *L)
{
	const char *path = lnL_checkpath(L, 1, "lunet.load", NULL);
	lua_settop(L, 1);
	reader_box *rb = lua_newuserdatauv(L, sizeof *rb, 0);  /* 2 */
	rb->r = NULL;
	rb->data = NULL;
	luaL_setmetatable(L, READER_MT);
	ln_error err;
	size_t size;
	if (ln_file_read(path, &rb->data, &size, &err) != LN_OK)
		return luaL_error(L, "lunet.load: %s", err.msg);
	if (ln_reader_new(&rb->r, rb->data, size, &err) != LN_OK)
		return luaL_error(L, "lunet.load: %s: %s", path, err.msg);
	lua_newtable(L);  /* 3: objs */
	lua_newtable(L);  /* 4: mods */
	lua_newtable(L);  /* 5: pending */
	loader Ld = {L, rb->r, path, 3, 4, 5, 0};
	load_value(&Ld);  /* 6: the root */
	if (ln_reader_finish(rb->r, &err) != LN_OK)
		return fail_load(&Ld, &err);
	if (Ld.noptims > 0) {
		lua_newtable(L);  /* 7: built, optimizer id -> optimizer */
		uint64_t n = ln_reader_nobjects(rb->r);
		for (uint64_t id = 0; id < n; id++) {
			const ln_saved_optim *s = ln_reader_optim(rb->r, id);
			if (!s)
				continue;
			push_optim(&Ld, s);
			lua_rawseti(L, 7, (lua_Integer)id);
		}
		lua_newtable(L);  /* 8: visited */
		lua_pushvalue(L, 6);
		if (lua_rawget(L, 5) == LUA_TNUMBER) {  /* the root is an optimizer */
			lua_rawget(L, 7);
			lua_replace(L, 6);
		} else {
			lua_pop(L, 1);
			if (lua_istable(L, 6))
				fix_placeholders(&Ld, 6, 7, 8);
		}
	}
	lua_pushvalue(L, 6);
	/* The reader's references go now; the values hold their own. */
	ln_reader_free(rb->r);
	ln_free(rb->data);
	rb->r = NULL;
	rb->data = NULL;
	return 1;
}

void lnL_open_save(lua_State *L)
{
	luaL_newmetatable(L, WRITER_MT);
	lua_pushcfunction(L, writer_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	luaL_newmetatable(L, READER_MT);
	lua_pushcfunction(L, reader_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);

	lua_pushcfunction(L, l_save);
	lua_setfield(L, -2, "save");
	lua_pushcfunction(L, l_load);
	lua_setfield(L, -2, "load");
}
