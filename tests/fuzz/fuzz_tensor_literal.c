/*
 * fuzz_tensor_literal.c -- lunet.tensor on nested tables (the conversion
 * of src/lua/lnaux.c that every function taking "a tensor or a table of
 * numbers" goes through), with the tables made from the input.
 *
 * The input is read as a Lua table constructor in a small grammar, and
 * the tables are built here with the C API (lua_createtable, lua_rawset):
 * no Lua code is compiled or run from the input, so it can do nothing but
 * describe values.
 *
 *     value  := number | word | string | table | ref
 *     table  := '{' [ field { (',' | ';') field } [',' | ';'] ] '}'
 *     field  := '[' value ']' '=' value  |  name '=' value  |  value
 *     word   := nil | true | false | nan | inf | -inf
 *             | T (a tensor {1,2}) | C (a closed tensor)
 *     number := a Lua numeral, optionally signed (lua_stringtonumber)
 *     string := '"' any bytes but '"' '"'
 *     ref    := '@' digits: the n-th table opened so far (shared
 *               sub-tables, and cycles when it is still open)
 *
 * White space is skipped.  Input that does not parse (or nests deeper
 * than 200 levels, or makes more than 10000 tables) is skipped: it is not
 * a case for lunet.  A key that is nil or NaN (which Lua refuses) drops
 * its field.
 *
 * Oracles (in CHECK below):
 *   - lunet.tensor(v) succeeds exactly when v is a well-formed nest: the
 *     shape read from v, v[1], v[1][1]... (at most 8 levels, no empty
 *     table), every table at each level of that length, numbers at the
 *     last;
 *   - on success every element is the number at its position rounded to
 *     float32, and t:totable() gives them back;
 *   - on failure the error starts "lunet.tensor: ";
 *   - the same table as the operand of + and of Tensor:copy behaves alike;
 *   - nothing of lunet's allocator stays live afterwards.
 */
#include <ctype.h>
#include <math.h>
#include <string.h>

#include <lauxlib.h>

#include "fuzz.h"

#define MAX_FUZZ_INPUT ((size_t)1 << 16)
#define MAX_DEPTH 200
#define MAX_TABLES 10000

typedef struct parser {
	const char *p, *end;
	int depth;
	int ntables;
	int refs;  /* stack index of the table of tables opened so far */
} parser;

static void skip_space(parser *ps)
{
	while (ps->p < ps->end && isspace((unsigned char)*ps->p))
		ps->p++;
}

static int word(parser *ps, const char *w)
{
	size_t n = strlen(w);
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0)
		return 0;
	if (ps->p + n < ps->end && (isalnum((unsigned char)ps->p[n]) || ps->p[n] == '_'))
		return 0;
	ps->p += n;
	return 1;
}

static int value(lua_State *L, parser *ps);

/* A numeral: the longest run of characters a Lua number can hold. */
static int numeral(lua_State *L, parser *ps)
{
	const char *s = ps->p;
	while (ps->p < ps->end && ps->p - s < 64 &&
	       (isalnum((unsigned char)*ps->p) || *ps->p == '.' ||
	        ((*ps->p == '+' || *ps->p == '-') &&
	         (ps->p == s || strchr("eEpP", ps->p[-1])))))
		ps->p++;
	char buf[72];
	size_t n = (size_t)(ps->p - s);
	if (n == 0)
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return lua_stringtonumber(L, buf) != 0;
}

/* A table constructor; the table is pushed. */
static int table(lua_State *L, parser *ps)
{
	if (++ps->depth > MAX_DEPTH || ++ps->ntables > MAX_TABLES)
		return 0;
	lua_newtable(L);
	lua_pushvalue(L, -1);
	lua_rawseti(L, ps->refs, ps->ntables);
	lua_Integer next = 1;
	for (;;) {
		skip_space(ps);
		if (ps->p < ps->end && *ps->p == '}') {
			ps->p++;
			break;
		}
		if (ps->p < ps->end && *ps->p == '[') {
			ps->p++;
			if (!value(L, ps))
				return 0;
			skip_space(ps);
			if (ps->p + 1 >= ps->end || ps->p[0] != ']')
				return 0;
			ps->p++;
			skip_space(ps);
			if (ps->p >= ps->end || *ps->p != '=')
				return 0;
			ps->p++;
			if (!value(L, ps))
				return 0;
		} else {
			/* name '=' value, or a positional value */
			const char *s = ps->p;
			while (ps->p < ps->end && (isalnum((unsigned char)*ps->p) || *ps->p == '_'))
				ps->p++;
			const char *e = ps->p;
			skip_space(ps);
			if (e > s && !isdigit((unsigned char)*s) && ps->p < ps->end && *ps->p == '=') {
				ps->p++;
				lua_pushlstring(L, s, (size_t)(e - s));
				if (!value(L, ps))
					return 0;
			} else {
				ps->p = s;
				lua_pushinteger(L, next++);
				if (!value(L, ps))
					return 0;
			}
		}
		/* key at -2, value at -1, table at -3 */
		int drop = lua_isnil(L, -2) ||
		           (lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) != lua_tonumber(L, -2));
		if (drop)
			lua_pop(L, 2);
		else
			lua_rawset(L, -3);
		skip_space(ps);
		if (ps->p < ps->end && (*ps->p == ',' || *ps->p == ';')) {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == '}') {
			ps->p++;
			break;
		}
		return 0;
	}
	ps->depth--;
	return 1;
}

/* One value, pushed.  0 when the input does not parse. */
static int value(lua_State *L, parser *ps)
{
	if (!lua_checkstack(L, 8))
		return 0;
	skip_space(ps);
	if (ps->p >= ps->end)
		return 0;
	char c = *ps->p;
	if (c == '{') {
		ps->p++;
		return table(L, ps);
	}
	if (c == '"') {
		const char *s = ++ps->p;
		while (ps->p < ps->end && *ps->p != '"')
			ps->p++;
		if (ps->p >= ps->end)
			return 0;
		lua_pushlstring(L, s, (size_t)(ps->p - s));
		ps->p++;
		return 1;
	}
	if (c == '@') {
		ps->p++;
		long n = 0;
		while (ps->p < ps->end && isdigit((unsigned char)*ps->p) && n < MAX_TABLES)
			n = 10 * n + (*ps->p++ - '0');
		if (n < 1 || n > ps->ntables)
			return 0;
		lua_rawgeti(L, ps->refs, n);
		return 1;
	}
	if (word(ps, "nil")) {
		lua_pushnil(L);
	} else if (word(ps, "true")) {
		lua_pushboolean(L, 1);
	} else if (word(ps, "false")) {
		lua_pushboolean(L, 0);
	} else if (word(ps, "nan")) {
		lua_pushnumber(L, (lua_Number)NAN);
	} else if (word(ps, "inf")) {
		lua_pushnumber(L, (lua_Number)INFINITY);
	} else if (word(ps, "-inf")) {
		lua_pushnumber(L, -(lua_Number)INFINITY);
	} else if (word(ps, "T") || word(ps, "C")) {
		int closed = ps->p[-1] == 'C';
		lua_getglobal(L, "lunet");
		lua_getfield(L, -1, "zeros");
		lua_remove(L, -2);
		lua_pushinteger(L, 1);
		lua_pushinteger(L, 2);
		lua_call(L, 2, 1);
		if (closed) {
			lua_getfield(L, -1, "close");
			lua_pushvalue(L, -2);
			lua_call(L, 1, 0);
		}
	} else {
		return numeral(L, ps);
	}
	return 1;
}

/* build(input) -> true and the value, or false when the input does not
 * parse.  Run under lua_pcall, so that running out of memory is an
 * error. */
static int l_build(lua_State *L)
{
	size_t n;
	const char *s = lua_tolstring(L, 1, &n);
	lua_newtable(L);
	parser ps = {s, s + n, 0, 0, lua_gettop(L)};
	int ok = value(L, &ps);
	if (ok) {
		skip_space(&ps);
		ok = ps.p == ps.end;
	}
	lua_pushboolean(L, ok);
	lua_insert(L, ok ? -2 : -1);
	return ok ? 2 : 1;
}

static const char CHECK[] =
	"local lunet, v = ...\n"
	"local function finding(...) error('FINDING: ' .. string.format(...), 0) end\n"
	"local function f32(x) return (string.unpack('<f', string.pack('<f', x))) end\n"
	/* what lunet.tensor should make of v: the shape, or nil */
	"local function expected_shape(v)\n"
	"  local shape, x = {}, v\n"
	"  while type(x) == 'table' do\n"
	"    local n = rawlen(x)\n"
	"    if n == 0 or #shape == 8 then return nil end\n"
	"    shape[#shape + 1] = n\n"
	"    x = rawget(x, 1)\n"
	"  end\n"
	"  if #shape == 0 then return nil end\n"
	"  local function ok(x, d)\n"
	"    for i = 1, shape[d] do\n"
	"      local e = rawget(x, i)\n"
	"      if d == #shape then\n"
	"        if type(e) ~= 'number' then return false end\n"
	"      elseif type(e) ~= 'table' or rawlen(e) ~= shape[d + 1] or not ok(e, d + 1) then\n"
	"        return false\n"
	"      end\n"
	"    end\n"
	"    return true\n"
	"  end\n"
	"  return ok(v, 1) and shape or nil\n"
	"end\n"
	"local function same(got, x, where)\n"
	"  if type(x) == 'table' then\n"
	"    if type(got) ~= 'table' or #got ~= rawlen(x) then finding('totable at %s', where) end\n"
	"    for i = 1, #got do same(got[i], rawget(x, i), where .. '[' .. i .. ']') end\n"
	"  else\n"
	"    local want = f32(x)\n"
	"    if not (got == want or (got ~= got and want ~= want)) then\n"
	"      finding('value at %s: %s, expected %s', where, tostring(got), tostring(want))\n"
	"    end\n"
	"  end\n"
	"end\n"
	"local ok, t = pcall(lunet.tensor, v)\n"
	"if type(v) ~= 'table' then\n"
	"  if not ok and (type(t) ~= 'string' or t:sub(1, 14) ~= 'lunet.tensor: ') then\n"
	"    finding('lunet.tensor raised %s', tostring(t))\n"
	"  end\n"
	"  return\n"
	"end\n"
	"local shape = expected_shape(v)\n"
	"if not ok then\n"
	"  if type(t) ~= 'string' or t:sub(1, 14) ~= 'lunet.tensor: ' then\n"
	"    finding('lunet.tensor raised %s', tostring(t))\n"
	"  end\n"
	"  if shape then finding('lunet.tensor refused a well-formed nest: %s', t) end\n"
	"else\n"
	"  if not shape then finding('lunet.tensor accepted an ill-formed nest') end\n"
	"  local s = t:shape()\n"
	"  if #s ~= #shape then finding('%d dimensions, expected %d', #s, #shape) end\n"
	"  for d = 1, #s do\n"
	"    if s[d] ~= shape[d] then finding('size %d of dimension %d, expected %d', s[d], d, shape[d]) end\n"
	"  end\n"
	"  same(t:totable(), v, '')\n"
	"  local u = lunet.zeros(table.unpack(shape))\n"
	"  u:copy(v)\n"
	"  same(u:totable(), v, '')\n"
	"end\n"
	"local ok2, w = pcall(function() return lunet.zeros(1) + v end)\n"
	"if ok2 ~= ok then finding('the operand of + and lunet.tensor disagree: %s', tostring(w)) end\n"
	"if ok2 then same(w:totable(), v, '') end\n"
	"if not ok2 and (type(w) ~= 'string' or not w:find('Tensor:__add: ', 1, true)) then\n"
	"  finding('+ raised %s', tostring(w))\n"
	"end\n";

static int check_ref = LUA_NOREF;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_FUZZ_INPUT)
		return 0;
	lua_State *L = fuzz_lua();
	if (check_ref == LUA_NOREF) {
		FUZZ_CHECK(luaL_loadbufferx(L, CHECK, sizeof CHECK - 1, "=check", "t") == LUA_OK, "%s",
		           lua_tostring(L, -1));
		check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
	lua_getglobal(L, "lunet");
	lua_pushcfunction(L, l_build);
	lua_pushlstring(L, (const char *)data, size);
	if (lua_pcall(L, 1, 2, 0) != LUA_OK || !lua_toboolean(L, -2)) {
		lua_settop(L, 0);  /* not a value of the grammar */
		fuzz_lua_done(L);
		return 0;
	}
	lua_remove(L, -2);
	if (lua_pcall(L, 2, 0, 0) != LUA_OK)
		FUZZ_CHECK(0, "%s", lua_tostring(L, -1));
	fuzz_lua_done(L);
	return 0;
}
