/*
 * fuzz_cmdline.c -- the command-line parser of lunet.experiment
 * (lua/lunet/cmdline.lua, compiled into lunet), run from an embedded Lua
 * state on arguments taken from the input.
 *
 * Input: lines.  The first line adds keys to a fixed configuration, as
 * `key=value` pairs separated by spaces (an integer, a float, true/false
 * or else a string, as Lua reads the text); every later line is one
 * command-line argument.  The configuration is checked by cmdline.spec
 * (which may refuse it, with a message), then the arguments parsed by
 * cmdline.parse, the help text made, and the merged configuration written
 * as config.lua and read back.  os.exit (which --help calls) raises
 * instead of ending the process.
 *
 * Oracles (in CHECK below):
 *   - cmdline.spec refuses a configuration only with a string;
 *   - cmdline.parse either returns overrides whose keys are configuration
 *     keys, whose values have their default's type (floats for floats)
 *     and are among the choices of a key that has them, or raises its
 *     one-line error object ("lunet.experiment: ...");
 *   - --help (and -h) writes the help text and exits, nothing else does;
 *   - the text of config.lua, loaded as a chunk with an empty
 *     environment and a bound on the instructions it may run, gives back
 *     exactly the merged configuration (NaN for NaN);
 *   - nothing but these errors escapes.
 */
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "embedded.h"
#include "fuzz.h"

#define MAX_FUZZ_INPUT ((size_t)1 << 14)

static const char CHECK[] =
	"local cmdline, input = ...\n"
	"local function finding(...) error('FINDING: ' .. string.format(...), 0) end\n"
	"local EXIT = {}\n"
	"os.exit = function() error(EXIT, 0) end\n"
	"local lines = {}\n"
	"for line in (input .. '\\n'):gmatch('([^\\n]*)\\n') do lines[#lines + 1] = line end\n"
	"local config = {lr = 0.1, epochs = 5, batch = 64, optim = 'sgd', verbose = false,\n"
	"  name = 'run', scale = -1.5, big = 9007199254740993}\n"
	"for k, v in (lines[1] or ''):gmatch('(%S+)=(%S*)') do\n"
	"  if v == 'true' then v = true elseif v == 'false' then v = false\n"
	"  else v = tonumber(v) or v end\n"
	"  config[k] = v\n"
	"end\n"
	"local spec, why = cmdline.spec{config = config, help = {lr = 'learning rate'},\n"
	"  one_of = {optim = {'sgd', 'adam', 'rmsprop'}}, description = 'fuzz', script = 'f.lua'}\n"
	"if not spec then\n"
	"  if type(why) ~= 'string' then finding('spec refused with %s', tostring(why)) end\n"
	"  return\n"
	"end\n"
	"local args = table.move(lines, 2, #lines, 1, {})\n"
	"local help_asked = false\n"
	"for _, a in ipairs(args) do if a == '--help' or a == '-h' then help_asked = true break end end\n"
	"local text = {}\n"
	"local out = {write = function(self, s) text[#text + 1] = s end, flush = function() end}\n"
	"local ok, overrides, resume = pcall(cmdline.parse, spec, args, out)\n"
	"if not ok then\n"
	"  local e = overrides\n"
	"  if e == EXIT then\n"
	"    if #text == 0 then finding('exit without the help text') end\n"
	"    return\n"
	"  end\n"
	"  if type(e) ~= 'table' or type(e.message) ~= 'string' or tostring(e) ~= e.message\n"
	"      or e.message:sub(1, 18) ~= 'lunet.experiment: ' then\n"
	"    finding('cmdline.parse raised %s', tostring(e))\n"
	"  end\n"
	"  return\n"
	"end\n"
	"if #text > 0 then finding('text written without --help') end\n"
	"if resume ~= nil and (type(resume) ~= 'string' or resume == '') then finding('resume %s', tostring(resume)) end\n"
	"local merged = {}\n"
	"for k, v in pairs(spec.defaults) do merged[k] = v end\n"
	"for k, v in pairs(overrides) do\n"
	"  local d = spec.defaults[k]\n"
	"  if d == nil then finding('override of an unknown key %s', tostring(k)) end\n"
	"  if type(v) ~= type(d) or math.type(v) ~= math.type(d) then\n"
	"    finding('override %s is a %s, its default a %s', k, math.type(v) or type(v), math.type(d) or type(d))\n"
	"  end\n"
	"  local list = spec.choices[k]\n"
	"  if list then\n"
	"    local found = false\n"
	"    for _, c in ipairs(list) do if c == v then found = true end end\n"
	"    if not found then finding('override %s = %s is not a choice', k, tostring(v)) end\n"
	"  end\n"
	"  merged[k] = v\n"
	"end\n"
	"if help_asked then finding('--help given, yet parse returned') end\n"
	"cmdline.help_text(spec)\n"
	"local src = cmdline.config_text(merged, {'fuzz'})\n"
	"local chunk, err = load(src, '=config.lua', 't', {})\n"
	"if not chunk then finding('config.lua does not compile: %s\\n%s', err, src) end\n"
	"local co = coroutine.create(chunk)\n"
	"debug.sethook(co, function() error('config.lua runs too long', 0) end, '', 100000)\n"
	"local ok2, back = coroutine.resume(co)\n"
	"if not ok2 then finding('config.lua fails: %s', tostring(back)) end\n"
	"if type(back) ~= 'table' then finding('config.lua returns a %s', type(back)) end\n"
	"for k, v in pairs(merged) do\n"
	"  local b = back[k]\n"
	"  if not (b == v and math.type(b) == math.type(v) or (v ~= v and b ~= b)) then\n"
	"    finding('config.lua gives %s = %s for %s', k, tostring(b), tostring(v))\n"
	"  end\n"
	"end\n"
	"for k in pairs(back) do if merged[k] == nil then finding('config.lua adds %s', tostring(k)) end end\n";

static lua_State *state;
static int check_ref = LUA_NOREF, cmdline_ref = LUA_NOREF;

/* A plain Lua state (cmdline.lua needs nothing of lunet) holding the
 * compiled check and the module table cmdline.lua returns. */
static lua_State *setup(void)
{
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	const ln_embedded_script *s = ln_embedded_scripts;
	while (s->name && strcmp(s->name, "lunet.cmdline") != 0)
		s++;
	FUZZ_CHECK(s->name != NULL, "no embedded script lunet.cmdline");
	FUZZ_CHECK(luaL_loadbufferx(L, s->code, s->len, "=cmdline", "t") == LUA_OK, "%s",
	           lua_tostring(L, -1));
	lua_call(L, 0, 1);
	FUZZ_CHECK(lua_istable(L, -1), "cmdline.lua returns no table");
	cmdline_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	FUZZ_CHECK(luaL_loadbufferx(L, CHECK, sizeof CHECK - 1, "=check", "t") == LUA_OK, "%s",
	           lua_tostring(L, -1));
	check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	fuzz_lua_coverage(L);
	return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_FUZZ_INPUT)
		return 0;
	if (!state)
		state = setup();
	lua_State *L = state;
	lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, cmdline_ref);
	lua_pushlstring(L, (const char *)data, size);
	if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		FUZZ_CHECK(0, "%s", msg ? msg : "(an error that is not a string)");
	}
	FUZZ_CHECK(lua_gettop(L) == 0, "stack not empty");
	lua_gc(L, LUA_GCCOLLECT, 0);
	return 0;
}
