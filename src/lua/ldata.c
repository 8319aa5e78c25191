/*
 * ldata.c -- lunet.data: file loaders and the pieces data.batches is made
 * of (the rest of lunet.data is pure Lua, in lua/lunet/data.lua).
 *
 *     data.load_idx(path)                    -> tensor
 *     data.csv(path, {header=, label=, sep=}) -> {x=, y=, columns=, label=}
 *     data.gather(dst, src, index, first)    -> dst   (rows by index)
 *     data.text(path | {paths...})           -> {ids=, vocab=, encode=, decode=}
 *     data.random_crop(x, pad), data.hflip(x[, p]) -> x, augmented in place
 *     lunet.randperm(n[, seed])              -> tensor {n}: 1..n shuffled
 */
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "io/augment.h"
#include "io/csv.h"
#include "io/idx.h"
#include "io/text.h"
#include "lnaux.h"

#define CSV_MT "lunet.data.csvresult"
#define VOCAB_MT "lunet.data.vocab"

/* Floats represent every integer up to 2^24 exactly: the largest n for
 * which a permutation stored in a float tensor is exact. */
#define MAX_PERM ((lua_Integer)1 << 24)

/* data.load_idx(path) -> new tensor of the file's shape (values as stored). */
static int l_load_idx(lua_State *L)
{
	const char *path = lnL_checkpath(L, 1, "data.load_idx", NULL);
	ln_tensor *t = lnL_newtensor(L);
	ln_error err;
	if (ln_idx_load(t, path, &err) != LN_OK)
		return lnL_error(L, "data.load_idx", &err);
	lnL_gcpressure(L, (size_t)ln_tensor_numel(t) * sizeof(float));
	return 1;
}

/* __gc of the temporary userdata that holds an ln_csv_data while its
 * contents move into Lua values: whatever was not moved is freed. */
static int csv_gc(lua_State *L)
{
	ln_csv_data *d = luaL_checkudata(L, 1, CSV_MT);
	ln_csv_data_free(d);
	return 0;
}

/* data.csv(path[, {header=true, label=name|index, sep=","}])
 *   -> {x=tensor {n,f}, y=tensor {n} (with a label), columns={names of x's
 *       columns} (with a header), label=name or index of the label} */
static int l_csv(lua_State *L)
{
	static const char *fn = "data.csv";
	const char *path = lnL_checkpath(L, 1, fn, NULL);
	static const lnL_option known[] = {
		{"header", LUA_TBOOLEAN}, {"label", LUA_TNONE}, {"sep", LUA_TNONE}, {NULL, 0},
	};
	lnL_checkoptions(L, 2, fn, known);
	ln_csv_options o = ln_csv_defaults();
	o.header = lnL_optboolean(L, 2, "header", o.header);
	if (lua_istable(L, 2)) {
		int t = lua_getfield(L, 2, "label");
		if (lua_isinteger(L, -1)) {
			lua_Integer i = lua_tointeger(L, -1);
			if (i < 1 || i > 1000000)
				lnL_raisef(L, "%s: label column index must be in 1..1000000, got %lld", fn,
				           (long long)i);
			o.label_index = (int)(i - 1);
		} else if (t == LUA_TSTRING) {
			o.label = lua_tostring(L, -1);  /* stays alive in the options table */
		} else if (t != LUA_TNIL) {
			luaL_error(L, "%s: option 'label' must be a column name or index, got %s", fn,
			           luaL_typename(L, -1));
		}
		size_t len;
		t = lua_getfield(L, 2, "sep");
		const char *sep = t == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
		if (t != LUA_TNIL &&
		    (!sep || len != 1 || sep[0] == '"' || sep[0] == '\n' || sep[0] == '\r'))
			luaL_error(L, "%s: option 'sep' must be one character (not a quote or newline)", fn);
		if (sep)
			o.sep = sep[0];
		lua_pop(L, 2);
	}

	ln_csv_data *d = lua_newuserdatauv(L, sizeof *d, 0);
	memset(d, 0, sizeof *d);
	d->label_col = -1;
	luaL_setmetatable(L, CSV_MT);  /* its __gc frees whatever is not moved out */
	ln_error err;
	if (ln_csv_load(d, path, &o, &err) != LN_OK)
		return lnL_error(L, fn, &err);

	lua_createtable(L, 0, 4);
	ln_tensor *x = lnL_newtensor(L);
	*x = d->x;  /* the reference moves into the userdata */
	d->x = LN_TENSOR_EMPTY;
	lua_setfield(L, -2, "x");
	if (!ln_tensor_is_empty(&d->y)) {
		ln_tensor *y = lnL_newtensor(L);
		*y = d->y;
		d->y = LN_TENSOR_EMPTY;
		lua_setfield(L, -2, "y");
	}
	if (d->names) {
		lua_createtable(L, d->ncols, 0);
		int j = 1;
		for (int c = 0; c < d->ncols; c++)
			if (c != d->label_col) {
				lua_pushstring(L, d->names[c]);
				lua_rawseti(L, -2, j++);
			}
		lua_setfield(L, -2, "columns");
	}
	if (d->label_col >= 0) {
		if (d->names)
			lua_pushstring(L, d->names[d->label_col]);
		else
			lua_pushinteger(L, d->label_col + 1);
		lua_setfield(L, -2, "label");
	}
	ln_csv_data_free(d);
	return 1;
}

/* lunet.randperm(n[, seed]) -> tensor {n} holding 1..n in a random order
 * (Fisher-Yates).  Without seed it draws from lunet's seeded generator
 * (lunet.seed); with an integer seed, from a generator of its own seeded
 * with it, leaving lunet's untouched: the same seed gives the same order. */
static int l_randperm(lua_State *L)
{
	static const char *fn = "lunet.randperm";
	lnL_checknargs(L, 2, fn);
	lua_Integer n = luaL_checkinteger(L, 1);
	if (n < 1 || n > MAX_PERM)
		return lnL_raisef(L, "%s: n must be in 1..%lld, got %lld", fn, (long long)MAX_PERM,
		                  (long long)n);
	ln_rng own = LN_RNG_INIT, *rng = ln_rng_global();
	if (!lua_isnoneornil(L, 2)) {
		if (!lua_isinteger(L, 2))
			return luaL_error(L, "%s: seed must be an integer, got %s", fn,
			                  lua_type(L, 2) == LUA_TNUMBER ? lua_tostring(L, 2)
			                                                : luaL_typename(L, 2));
		ln_rng_seed(&own, (uint64_t)lua_tointeger(L, 2));
		rng = &own;
	}
	ln_tensor *t = lnL_newtensor(L);
	ln_error err;
	int64_t shape[1] = {n};
	if (ln_tensor_alloc(t, 1, shape, &err) != LN_OK)
		return lnL_error(L, fn, &err);
	float *p = ln_tensor_data(t);
	for (lua_Integer i = 0; i < n; i++)
		p[i] = (float)(i + 1);
	for (lua_Integer i = n - 1; i > 0; i--) {
		lua_Integer j = (lua_Integer)ln_rng_below(rng, (uint64_t)i + 1);
		float tmp = p[i];
		p[i] = p[j];
		p[j] = tmp;
	}
	lnL_gcpressure(L, (size_t)n * sizeof(float));
	return 1;
}

/* data.gather(dst, src, index, first) -> dst
 * dst[k] = src[index[first+k-1]] for k = 1..dst:size(1): rows (along
 * dimension 1) of src picked by 1-based indices.  dst must be contiguous
 * with src's shape apart from dimension 1; index is a 1-D tensor of
 * integers in 1..src:size(1).  Nothing is allocated. */
static int l_gather(lua_State *L)
{
	static const char *fn = "data.gather";
	ln_tensor *dst = lnL_checkargtensor(L, 1, fn, NULL, "dst");
	ln_tensor *src = lnL_checkargtensor(L, 2, fn, NULL, "src");
	ln_tensor *idx = lnL_checkargtensor(L, 3, fn, NULL, "index");
	lua_Integer first = luaL_optinteger(L, 4, 1);
	char a[128], b[128];
	if (!ln_tensor_is_contiguous(dst))
		return luaL_error(L, "%s: destination must be contiguous", fn);
	bool same_rows = dst->ndim == src->ndim;
	for (int i = 1; same_rows && i < dst->ndim; i++)
		same_rows = dst->shape[i] == src->shape[i];
	if (!same_rows)
		return luaL_error(L, "%s: destination %s and source %s differ beyond dimension 1", fn,
		                  ln_tensor_shape_str(dst, a, sizeof a),
		                  ln_tensor_shape_str(src, b, sizeof b));
	if (idx->ndim != 1)
		return luaL_error(L, "%s: index must be 1-D, got shape %s", fn,
		                  ln_tensor_shape_str(idx, a, sizeof a));
	if (dst->storage == src->storage || dst->storage == idx->storage)
		return luaL_error(L, "%s: destination shares memory with the %s; gather into a "
		                  "separate tensor", fn, dst->storage == src->storage ? "source" : "index");
	int64_t count = dst->shape[0], nidx = idx->shape[0], nsrc = src->shape[0];
	/* first - 1 + count > nidx, written so that no huge first overflows */
	if (first < 1 || first > nidx || count > nidx - (first - 1))
		return lnL_raisef(L, "%s: rows %lld..%lld of the index requested, it has %lld", fn,
		                  (long long)first,
		                  first > INT64_MAX - (count - 1) ? (long long)INT64_MAX
		                                                  : (long long)(first + (count - 1)),
		                  (long long)nidx);
	int64_t row = ln_tensor_numel(dst) / count;
	float *d = ln_tensor_data(dst);
	const float *ix = ln_tensor_data(idx);
	int64_t ixs = idx->stride[0];
	for (int64_t k = 0; k < count; k++) {
		double v = ix[(first - 1 + k) * ixs];
		if (!(v >= 1 && v <= (double)nsrc && v == floor(v)))
			return lnL_raisef(L, "%s: index[%lld] = %g is not a row of the source (1..%lld)", fn,
			                  (long long)(first + k), v, (long long)nsrc);
		int64_t r = (int64_t)v - 1;
		if (ln_tensor_is_contiguous(src)) {
			memcpy(d + k * row, ln_tensor_data(src) + r * row, (size_t)row * sizeof(float));
		} else {
			/* Strided source: copy element by element through its strides. */
			int64_t pos[LN_MAX_DIMS] = {r};
			for (int64_t e = 0; e < row; e++) {
				d[k * row + e] = ln_tensor_data(src)[ln_tensor_index_offset(src, pos)];
				for (int dd = src->ndim - 1; dd >= 1; dd--) {
					if (++pos[dd] < src->shape[dd])
						break;
					pos[dd] = 0;
				}
			}
		}
	}
	lua_settop(L, 1);
	return 1;
}

/* ---- data.text -------------------------------------------------------------------- */

/* The vocabulary a data.text result's encode and decode share (their
 * upvalue): a full userdata holding an ln_vocab, nothing to free. */
static ln_vocab *checkvocab(lua_State *L)
{
	return luaL_checkudata(L, lua_upvalueindex(1), VOCAB_MT);
}

/* encode and decode are plain functions (txt.encode(s)) that also take
 * the method form (txt:encode(s)): a table before the argument is skipped.
 * Returns the index of the argument. */
static int skip_self(lua_State *L, const char *fn)
{
	if (lua_gettop(L) == 2 && lua_type(L, 1) == LUA_TTABLE)
		return 2;
	lnL_checknargs(L, 1, fn);
	return 1;
}

/* encode(s) -> tensor {#s} of the ids of the bytes of s.  A byte the
 * vocabulary lacks is an error naming it and its position. */
static int l_encode(lua_State *L)
{
	static const char *fn = "encode";
	const ln_vocab *v = checkvocab(L);
	int arg = skip_self(L, fn);
	size_t n;
	const char *s = luaL_checklstring(L, arg, &n);
	if (n == 0)
		return luaL_error(L, "%s: empty string (a tensor holds at least one id)", fn);
	ln_tensor *t = lnL_newtensor(L);
	ln_error err;
	int64_t shape[1] = {(int64_t)n};
	if (ln_tensor_alloc(t, 1, shape, &err) != LN_OK)
		return lnL_error(L, fn, &err);
	if (ln_vocab_encode(ln_tensor_data(t), v, (const unsigned char *)s, n, &err) != LN_OK)
		return lnL_error(L, fn, &err);
	lnL_gcpressure(L, n * sizeof(float));
	return 1;
}

/* Appends the byte of id x (the element at position pos, 1-based) to b,
 * or raises when x is not an id of v. */
static void add_id(lua_State *L, luaL_Buffer *b, const ln_vocab *v, double x, lua_Integer pos)
{
	if (!(x >= 1 && x <= v->n && x == (double)(int)x))
		lnL_raisef(L, "decode: id %g at position %lld is not in 1..%d", isnan(x) ? NAN : x,
		           (long long)pos, v->n);
	luaL_addchar(b, (char)v->byte[(int)x - 1]);
}

/* decode(ids) -> the string of the bytes of ids: a tensor of any shape
 * (its elements in row-major order) or a table of integers. */
static int l_decode(lua_State *L)
{
	static const char *fn = "decode";
	const ln_vocab *v = checkvocab(L);
	int arg = skip_self(L, fn);
	luaL_Buffer b;
	ln_tensor *t = lnL_testtensor(L, arg);
	if (t) {
		t = lnL_checkargtensor(L, arg, fn, NULL, "ids");  /* a closed tensor is an error */
		int pushed;
		const ln_tensor *c = lnL_contiguous(L, t, fn, &pushed);
		int64_t n = ln_tensor_numel(c);
		const float *x = ln_tensor_data(c);
		luaL_buffinit(L, &b);
		for (int64_t i = 0; i < n; i++)
			add_id(L, &b, v, x[i], (lua_Integer)i + 1);
	} else if (lua_type(L, arg) == LUA_TTABLE) {
		lua_Integer n = luaL_len(L, arg);
		luaL_buffinit(L, &b);
		for (lua_Integer i = 1; i <= n; i++) {
			if (lua_geti(L, arg, i) != LUA_TNUMBER)
				lnL_raisef(L, "%s: entry %lld is a %s, expected an id", fn, (long long)i,
				           luaL_typename(L, -1));
			double x = lua_tonumber(L, -1);
			lua_pop(L, 1);
			add_id(L, &b, v, x, i);
		}
	} else {
		return luaL_error(L, "%s: expected a tensor or a table of ids, got %s", fn,
		                  luaL_typename(L, arg));
	}
	luaL_pushresult(&b);
	return 1;
}

/* data.text(path | {path, ...}) -> {ids = tensor {L}, vocab = {bytes...},
 *                                    encode = f, decode = f}
 * The files, joined in the order given, as byte-level text (io/text.h):
 * vocab[i] is the byte (a one-byte string) of id i, the distinct bytes of
 * the text in ascending order; ids holds the id of every byte. */
static int l_text(lua_State *L)
{
	static const char *fn = "data.text";
	lnL_checknargs(L, 1, fn);
	const char **paths;
	int n;
	if (lua_type(L, 1) == LUA_TTABLE) {
		lua_Integer len = luaL_len(L, 1);
		if (len < 1)
			return luaL_error(L, "%s: the list of files is empty", fn);
		if (len > 1000000)
			return lnL_raisef(L, "%s: %lld files, at most 1000000", fn, (long long)len);
		n = (int)len;
		/* the names stay alive in the table, which the call holds */
		paths = lua_newuserdatauv(L, (size_t)n * sizeof *paths, 0);
		for (int i = 0; i < n; i++) {
			if (lua_geti(L, 1, i + 1) != LUA_TSTRING)
				return lnL_raisef(L, "%s: file %d is a %s, expected a path", fn, i + 1,
				                  luaL_typename(L, -1));
			paths[i] = lnL_checkpath(L, -1, fn, NULL);
			lua_pop(L, 1);
		}
	} else if (lua_type(L, 1) == LUA_TSTRING) {
		paths = lua_newuserdatauv(L, sizeof *paths, 0);
		paths[0] = lnL_checkpath(L, 1, fn, NULL);
		n = 1;
	} else {
		return luaL_error(L, "%s: expected a path or a table of paths, got %s", fn,
		                  luaL_typename(L, 1));
	}

	ln_vocab *v = lua_newuserdatauv(L, sizeof *v, 0);
	luaL_setmetatable(L, VOCAB_MT);
	int vocab_idx = lua_gettop(L);
	ln_tensor *ids = lnL_newtensor(L);
	ln_text text;
	ln_error err;
	if (ln_text_load(&text, paths, n, &err) != LN_OK)
		return lnL_error(L, fn, &err);
	*ids = text.ids;  /* the reference moves into the userdata */
	*v = text.vocab;
	lnL_gcpressure(L, (size_t)ln_tensor_numel(ids) * sizeof(float));

	lua_createtable(L, 0, 4);
	lua_insert(L, -2);
	lua_setfield(L, -2, "ids");
	lua_createtable(L, v->n, 0);
	for (int i = 0; i < v->n; i++) {
		lua_pushlstring(L, (const char *)&v->byte[i], 1);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "vocab");
	lua_pushvalue(L, vocab_idx);
	lua_pushcclosure(L, l_encode, 1);
	lua_setfield(L, -2, "encode");
	lua_pushvalue(L, vocab_idx);
	lua_pushcclosure(L, l_decode, 1);
	lua_setfield(L, -2, "decode");
	return 1;
}

/* The image batch at 1 for data.random_crop/hflip: a tensor that is
 * contiguous and {N,C,H,W} (checked by the callee). */
static ln_tensor *check_images(lua_State *L, const char *fname)
{
	ln_tensor *x = lnL_checktensor(L, 1);
	if (x->ndim == 2)
		luaL_error(L, "%s: expected a tensor of shape {N,C,H,W}, got {%I,%I} (reshape the "
		           "batch into images first, x:reshape(n, 1, 28, 28))", fname,
		           (LUAI_UACINT)x->shape[0], (LUAI_UACINT)x->shape[1]);
	return x;
}

/* data.random_crop(x, pad) -> x: each image of x {N,C,H,W} shifted in
 * place as a random H x W crop of it padded with pad zeros all round
 * would be (torchvision's RandomCrop(size, padding=pad)), from lunet's
 * generator (lunet.seed). */
static int l_random_crop(lua_State *L)
{
	static const char *fname = "data.random_crop";
	ln_tensor *x = check_images(L, fname);
	lnL_checknargs(L, 2, fname);
	if (!lua_isinteger(L, 2))
		return luaL_error(L, "%s: pad must be an integer, got %s", fname, lnL_tname(L, 2));
	ln_error err;
	if (ln_augment_random_crop(x, (int64_t)lua_tointeger(L, 2), ln_rng_global(), &err) != LN_OK)
		return lnL_error(L, fname, &err);
	lua_settop(L, 1);
	return 1;
}

/* data.hflip(x[, p=0.5]) -> x: each image mirrored left to right in place
 * with probability p, from lunet's generator. */
static int l_hflip(lua_State *L)
{
	static const char *fname = "data.hflip";
	ln_tensor *x = check_images(L, fname);
	lnL_checknargs(L, 2, fname);
	if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TNUMBER)
		return luaL_error(L, "%s: p must be a number, got %s", fname, lnL_tname(L, 2));
	ln_error err;
	if (ln_augment_hflip(x, luaL_optnumber(L, 2, 0.5), ln_rng_global(), &err) != LN_OK)
		return lnL_error(L, fname, &err);
	lua_settop(L, 1);
	return 1;
}

void lnL_open_data(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"load_idx", l_load_idx},
		{"csv", l_csv},
		{"gather", l_gather},
		{"text", l_text},
		{"random_crop", l_random_crop},
		{"hflip", l_hflip},
		{NULL, NULL},
	};
	luaL_newmetatable(L, CSV_MT);
	lua_pushcfunction(L, csv_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	luaL_newmetatable(L, VOCAB_MT);
	lua_pop(L, 1);

	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "data");
	lua_pushcfunction(L, l_randperm);
	lua_setfield(L, -2, "randperm");
}
