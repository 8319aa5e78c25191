/*
 * fuzz_text.c -- the text loader of the language-model experiments:
 * lunet.data.text (src/io/text.c through src/lua/ldata.c) on arbitrary
 * bytes given as a file, its encode and decode, and the next-id windows
 * of lunet.data.sequences (lua/lunet/data.lua) over the ids it gives.
 *
 * Input: two control bytes, then the file.
 *   byte 0, bits 0-1   the file is given k = 1..3 times ({path, path}):
 *                      the text read is the file k times over
 *           bits 2-7   T = 1 + bits (1..64)
 *   byte 1, bits 0-3   batch = 1 + bits (1..16)
 *           bit 4      shuffle
 *           bit 5      drop_last
 *           bit 6      a seed of its own for the shuffle (seed = byte 1)
 *
 * Oracles (in CHECK below):
 *   - data.text fails exactly on an empty file, with an error that starts
 *     "data.text: " and names the path;
 *   - otherwise ids is {k*n}; vocab lists the distinct bytes of the text
 *     in ascending order; ids[i] is the rank of byte i in vocab;
 *     decode(ids) gives the text back; encode(text) gives ids back; a
 *     byte the vocabulary lacks, and an id past it, are errors of encode
 *     and decode that say so;
 *   - data.sequences(ids, batch, T, opts) fails exactly when the text is
 *     too short for one window and its next id, or drop_last leaves no
 *     batch, with an error that starts "data.sequences: "; otherwise the
 *     same call over the positions 1..L (same options, same generator
 *     state) says which window each row is: every row is a window
 *     (ids (w-1)*T+1 .. w*T) and y the ids one further, every window once
 *     (all W = (L-1)//T of them, or the full batches with drop_last),
 *     no batch larger than `batch`, only the last one smaller, and
 *     without shuffle row r of each full batch continues row r of the
 *     batch before it;
 *   - nothing of lunet's allocator stays live afterwards.
 */
#include <lauxlib.h>

#include "fuzz.h"

#define MAX_FUZZ_INPUT ((size_t)1 << 12)

static const char CHECK[] =
	"local lunet, path, text, k, T, batch, shuffle, drop_last, seed = ...\n"
	"local data = lunet.data\n"
	"local function finding(...) error('FINDING: ' .. string.format(...), 0) end\n"
	"local paths = {}\n"
	"for i = 1, k do paths[i] = path end\n"
	"local ok, txt = pcall(data.text, k == 1 and path or paths)\n"
	"if #text == 0 then\n"
	"  if ok then finding('data.text accepted an empty file') end\n"
	"  if type(txt) ~= 'string' or txt:sub(1, 11) ~= 'data.text: ' or\n"
	"     not txt:find(path, 1, true) then\n"
	"    finding('data.text raised %s', tostring(txt))\n"
	"  end\n"
	"  return\n"
	"end\n"
	"if not ok then finding('data.text failed: %s', tostring(txt)) end\n"
	"local full = text:rep(k)\n"
	"local L = #full\n"
	"local s = txt.ids:shape()\n"
	"if #s ~= 1 or s[1] ~= L then finding('ids of shape {%s} for %d bytes', table.concat(s, ','), L) end\n"
	"local present, rank = {}, {}\n"
	"for i = 1, #text do present[text:byte(i)] = true end\n"
	"local want = {}\n"
	"for b = 0, 255 do if present[b] then want[#want + 1] = string.char(b); rank[b] = #want end end\n"
	"if #txt.vocab ~= #want then finding('%d bytes in vocab, %d distinct', #txt.vocab, #want) end\n"
	"for i = 1, #want do\n"
	"  if txt.vocab[i] ~= want[i] then finding('vocab[%d] = %q, expected %q', i, txt.vocab[i], want[i]) end\n"
	"end\n"
	"local ids = txt.ids:totable()\n"
	"for i = 1, L do\n"
	"  if ids[i] ~= rank[full:byte(i)] then finding('ids[%d] = %s, expected %d', i, ids[i], rank[full:byte(i)]) end\n"
	"end\n"
	"if txt.decode(txt.ids) ~= full then finding('decode(ids) is not the text') end\n"
	"local enc = txt:encode(text)\n"
	"if enc:size(1) ~= #text then finding('encode gave %d ids for %d bytes', enc:size(1), #text) end\n"
	"local et = enc:totable()\n"
	"for i = 1, #text do if et[i] ~= ids[i] then finding('encode(text)[%d] = %s', i, et[i]) end end\n"
	"if #want < 256 then\n"
	"  local b = 0\n"
	"  while present[b] do b = b + 1 end\n"
	"  local ok2, e = pcall(txt.encode, text:sub(1, 1) .. string.char(b))\n"
	"  if ok2 or type(e) ~= 'string' or not e:find('encode: byte', 1, true) or\n"
	"     not e:find('at position 2', 1, true) then\n"
	"    finding('encode of a byte the vocabulary lacks: %s', tostring(e))\n"
	"  end\n"
	"end\n"
	"local ok3, e3 = pcall(txt.decode, {1, #want + 1})\n"
	"if ok3 or type(e3) ~= 'string' or not e3:find('decode: id ' .. (#want + 1) .. ' at position 2', 1, true) then\n"
	"  finding('decode of an id past the vocabulary: %s', tostring(e3))\n"
	"end\n"
	/* the windows */
	"local opts = {shuffle = shuffle, drop_last = drop_last, seed = seed}\n"
	"local W = (L - 1) // T\n"
	"local nfull = W // batch\n"
	"local expect_fail = W < 1 or (drop_last and nfull == 0)\n"
	"local function batches(v)\n"
	"  lunet.seed(7)\n"
	"  local out = {}\n"
	"  for x, y in data.sequences(v, batch, T, opts) do out[#out + 1] = {x:totable(), y:totable()} end\n"
	"  return out\n"
	"end\n"
	"local ok4, got = pcall(batches, txt.ids)\n"
	"if expect_fail then\n"
	"  if ok4 then finding('data.sequences accepted %d ids, T=%d, batch=%d', L, T, batch) end\n"
	"  if type(got) ~= 'string' or not got:find('data.sequences: ', 1, true) then\n"
	"    finding('data.sequences raised %s', tostring(got))\n"
	"  end\n"
	"  return\n"
	"end\n"
	"if not ok4 then finding('data.sequences failed: %s', tostring(got)) end\n"
	"local pos = batches(lunet.arange(L))\n"
	"if #pos ~= #got then finding('%d batches, %d over the positions', #got, #pos) end\n"
	"local seen, rows = {}, 0\n"
	"for b = 1, #got do\n"
	"  local x, y, px = got[b][1], got[b][2], pos[b][1]\n"
	"  if #x > batch or #x ~= #y or #x ~= #px then finding('batch %d of %d rows', b, #x) end\n"
	"  if b < #got and #x ~= batch then finding('batch %d of %d rows is not the last', b, #x) end\n"
	"  for r = 1, #x do\n"
	"    local first = px[r][1]\n"
	"    if (first - 1) % T ~= 0 then finding('batch %d row %d starts at id %d', b, r, first) end\n"
	"    local w = (first - 1) // T + 1\n"
	"    if w < 1 or w > W or seen[w] then finding('window %d out of range or twice', w) end\n"
	"    seen[w] = true\n"
	"    rows = rows + 1\n"
	"    for t = 1, T do\n"
	"      local p = first + t - 1\n"
	"      if px[r][t] ~= p then finding('positions of batch %d row %d not consecutive', b, r) end\n"
	"      if x[r][t] ~= ids[p] or y[r][t] ~= ids[p + 1] then\n"
	"        finding('batch %d row %d column %d: x=%s y=%s, expected %s %s', b, r, t, x[r][t],\n"
	"          y[r][t], ids[p], ids[p + 1])\n"
	"      end\n"
	"    end\n"
	"    if not shuffle and b > 1 and #px == batch and #pos[b - 1][1] == batch and\n"
	"       first ~= pos[b - 1][1][r][T] + 1 then\n"
	"      finding('row %d of batch %d does not continue the batch before it', r, b)\n"
	"    end\n"
	"  end\n"
	"end\n"
	"local expect_rows = drop_last and nfull * batch or W\n"
	"if rows ~= expect_rows then finding('%d windows visited, expected %d of %d', rows, expect_rows, W) end\n";

static int check_ref = LUA_NOREF;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > MAX_FUZZ_INPUT)
		return 0;
	lua_State *L = fuzz_lua();
	if (check_ref == LUA_NOREF) {
		FUZZ_CHECK(luaL_loadbufferx(L, CHECK, sizeof CHECK - 1, "=check", "t") == LUA_OK, "%s",
		           lua_tostring(L, -1));
		check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	unsigned c0 = data[0], c1 = data[1];
	int k = 1 + (int)(c0 & 3) % 3;
	const char *path = fuzz_file(data + 2, size - 2);
	lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
	lua_getglobal(L, "lunet");
	lua_pushstring(L, path);
	lua_pushlstring(L, (const char *)data + 2, size - 2);
	lua_pushinteger(L, k);
	lua_pushinteger(L, 1 + (c0 >> 2));
	lua_pushinteger(L, 1 + (c1 & 15));
	lua_pushboolean(L, (c1 >> 4) & 1);
	lua_pushboolean(L, (c1 >> 5) & 1);
	if (((c1 >> 6) & 1) && ((c1 >> 4) & 1))
		lua_pushinteger(L, c1);
	else
		lua_pushnil(L);
	if (lua_pcall(L, 9, 0, 0) != LUA_OK)
		FUZZ_CHECK(0, "%s", lua_tostring(L, -1));
	fuzz_lua_done(L);
	return 0;
}
