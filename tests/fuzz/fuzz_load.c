/*
 * fuzz_load.c -- lunet.load (the decoder of src/io/save_read.c and the
 * binding that builds Lua values from it, src/lua/lsave.c) on arbitrary
 * bytes.
 *
 * Input: one control byte, then the file.  When bit 0 of the control
 * byte is set and the file starts with the magic, the harness rewrites
 * the payload length and the CRC-32 to match the bytes given, so that
 * mutations reach the decoder instead of stopping at "checksum mismatch";
 * with it clear the file is read as it is (the header and checksum
 * checks).
 *
 * Oracles:
 *   - a failure is a Lua error that starts "lunet.load: ";
 *   - a value that loads saves again, and loads back as the same value:
 *     the same types, numbers bit for bit, strings, tables key by key
 *     with their sharing, tensors bit for bit, modules with the same
 *     description, parameters and buffers, optimizers with the same
 *     state;
 *   - nothing of lunet's allocator stays live once the values are
 *     collected.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <zlib.h>

#include "fuzz.h"
#include "lnaux.h"

#define MAX_FUZZ_INPUT ((size_t)1 << 20)

/* same_bits(a, b): both tensors have the same shape and the same bytes
 * (NaN payloads included). */
static int l_same_bits(lua_State *L)
{
	ln_tensor *a = lnL_checktensor(L, 1);
	ln_tensor *b = lnL_checktensor(L, 2);
	int same = ln_tensor_same_shape(a, b);
	if (same) {
		ln_tensor ca = LN_TENSOR_EMPTY, cb = LN_TENSOR_EMPTY;
		ln_error err;
		FUZZ_CHECK(ln_tensor_clone(&ca, a, &err) == LN_OK && ln_tensor_clone(&cb, b, &err) == LN_OK,
		           "clone: %s", err.msg);
		same = memcmp(ln_tensor_data(&ca), ln_tensor_data(&cb),
		              (size_t)ln_tensor_numel(a) * sizeof(float)) == 0;
		ln_tensor_release(&ca);
		ln_tensor_release(&cb);
	}
	lua_pushboolean(L, same);
	return 1;
}

static const char CHECK[] =
	"local lunet, same_bits, path, again = ...\n"
	"local ok, v = pcall(lunet.load, path)\n"
	"if not ok then\n"
	"  if type(v) ~= 'string' or v:sub(1, 12) ~= 'lunet.load: ' then\n"
	"    error('FINDING: lunet.load raised ' .. tostring(v), 0)\n"
	"  end\n"
	"  return\n"
	"end\n"
	"local ok2, err = pcall(lunet.save, again, v)\n"
	"if not ok2 then error('FINDING: a loaded value does not save: ' .. tostring(err), 0) end\n"
	"local w = lunet.load(again)\n"
	"local seen = {}\n"
	"local function fail(where, what) error('FINDING: saved again and loaded, ' .. what ..\n"
	"  ' differs at ' .. where, 0) end\n"
	"local function kind(x)\n"
	"  if lunet.is_tensor(x) then return 'tensor' end\n"
	"  if lunet.nn.is_module(x) then return 'module' end\n"
	"  local mt = getmetatable(x)\n"
	"  local name = type(mt) == 'table' and rawget(mt, '__name')\n"
	"  if type(name) == 'string' and name:find('^lunet%.optim%.') then return 'optim' end\n"
	"  return type(x)\n"
	"end\n"
	"local same\n"
	"local function same_list(a, b, where)\n"
	"  if #a ~= #b then fail(where, 'the length') end\n"
	"  for i = 1, #a do same(a[i], b[i], where .. '[' .. i .. ']') end\n"
	"end\n"
	"same = function(a, b, where)\n"
	"  local ka, kb = kind(a), kind(b)\n"
	"  if ka ~= kb then fail(where, 'the kind (' .. ka .. ', ' .. kb .. ')') end\n"
	"  if ka == 'number' then\n"
	"    if math.type(a) ~= math.type(b) then fail(where, 'the number type') end\n"
	"    if string.pack('<n', a) ~= string.pack('<n', b) then fail(where, 'the number') end\n"
	"  elseif ka == 'string' or ka == 'boolean' or ka == 'nil' then\n"
	"    if a ~= b then fail(where, 'the value') end\n"
	"  elseif seen[a] ~= nil then\n"
	"    if seen[a] ~= b then fail(where, 'the sharing') end\n"
	"  else\n"
	"    seen[a] = b\n"
	"    if ka == 'tensor' then\n"
	"      if not same_bits(a, b) then fail(where, 'the tensor') end\n"
	"    elseif ka == 'module' then\n"
	"      if tostring(a) ~= tostring(b) then fail(where, 'the description') end\n"
	"      local pa, ga = a:parameters()\n"
	"      local pb, gb = b:parameters()\n"
	"      same_list(pa, pb, where .. ':parameters()')\n"
	"      same_list(ga, gb, where .. ':parameters() gradients')\n"
	"      same(a:buffers(), b:buffers(), where .. ':buffers()')\n"
	"    elseif ka == 'optim' then\n"
	"      same(a:state(), b:state(), where .. ':state()')\n"
	"    elseif ka == 'table' then\n"
	"      local n = 0\n"
	"      for k, x in pairs(a) do\n"
	"        n = n + 1\n"
	"        same(x, rawget(b, k), where .. '[' .. tostring(k) .. ']')\n"
	"      end\n"
	"      for _ in pairs(b) do n = n - 1 end\n"
	"      if n ~= 0 then fail(where, 'the number of keys') end\n"
	"    else\n"
	"      fail(where, 'an unexpected ' .. ka)\n"
	"    end\n"
	"  end\n"
	"end\n"
	"same(v, w, 'the root')\n";

static int check_ref = LUA_NOREF;
static char again_path[256];

static void setup(lua_State *L)
{
	const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	snprintf(again_path, sizeof again_path, "%s/lunet-fuzz-load-%ld.lunet", dir ? dir : "/tmp",
	         (long)getpid());
	FUZZ_CHECK(luaL_loadbufferx(L, CHECK, sizeof CHECK - 1, "=check", "t") == LUA_OK, "%s",
	           lua_tostring(L, -1));
	check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > MAX_FUZZ_INPUT)
		return 0;
	lua_State *L = fuzz_lua();
	if (check_ref == LUA_NOREF)
		setup(L);
	unsigned char *file = malloc(size);
	size_t n = size - 1;
	memcpy(file, data + 1, n);
	if ((data[0] & 1) && n >= 20 && memcmp(file, "LUNET", 6) == 0) {
		put_le(file + 8, n - 20, 8);
		put_le(file + n - 4, crc32(0, file + 16, (uInt)(n - 20)), 4);
	}
	const char *path = fuzz_file(file, n);
	free(file);

	lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
	lua_getglobal(L, "lunet");
	lua_pushcfunction(L, l_same_bits);
	lua_pushstring(L, path);
	lua_pushstring(L, again_path);
	if (lua_pcall(L, 4, 0, 0) != LUA_OK)
		FUZZ_CHECK(0, "%s", lua_tostring(L, -1));
	unlink(again_path);
	fuzz_lua_done(L);
	return 0;
}
