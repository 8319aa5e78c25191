/*
 * test_kill.c -- SIGKILL during saves (CTest label kill).
 *
 *     test_kill DIR save [KILLS]         lunet.save of a model and its optimiser
 *     test_kill DIR checkpoint [KILLS]   exp:checkpoint of lunet.experiment
 *
 * The file (DIR/kill.lunet, or the run's checkpoint.lunet) first holds a
 * good checkpoint, saved here.  Then KILLS times (default 200):
 *
 *   - a child process (fork: it shares this process's Lua state as it
 *     was) saves two checkpoints in turn, generation 1 and generation 2,
 *     over and over, as fast as it can, beginning with the one the file
 *     does not hold;
 *   - after a random delay (up to three times what one save takes) it is
 *     killed with SIGKILL: in the middle of writing the temporary file,
 *     of flushing it, of renaming it, or between saves;
 *   - the file must load, and be one of the two checkpoints whole: every
 *     parameter of its model and every optimiser state holds the
 *     generation's own values, its tag and step are the generation's.
 *     A torn file (part old, part new) fails to load or shows here;
 *   - at most one temporary file ("<name>.tmp.<pid>") may be next to it:
 *     the one the killed child was writing.  Each save removes those of
 *     writers that are gone, so the temporary file of the child before it
 *     must be gone once this child has begun its first save.
 *
 * At the end a save by this process must leave no temporary file at all.
 * It prints the number of kills survived, how many of them left a
 * temporary file (killed inside a save), and how often the file held
 * the old checkpoint (the child killed in its first save) or a new one.  Exits non-zero at the first broken rule.
 */
#define _XOPEN_SOURCE 700  /* nftw, nanosleep, kill */

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "lunet.h"

/* The Lua side.  setup(dir, mode) makes the two generations and saves
 * generation 1; it returns save(g) (one save of generation g), check()
 * (what the file holds: its generation, or an error) and the path. */
static const char SCRIPT[] =
	"local dir, mode = ...\n"
	"local nn, optim = lunet.nn, lunet.optim\n"
	"lunet.warnings(false)\n"
	"local function generation(g)\n"
	/* about 1.2 MB of parameters and as much Adam state: a save takes a
	 * while, so that most kills land inside one */
	"  local m = nn.Sequential{nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 64)}\n"
	"  for i, p in ipairs(m:parameters()) do p:fill(g * 1000 + i) end\n"
	"  local opt = optim.Adam(m, {lr = g / 100})\n"
	"  local x = lunet.full({2, 256}, g)\n"
	"  m:zero_grad()\n"
	"  m:forward(x)\n"
	"  m:backward(x, lunet.ones(2, 64))\n"
	"  opt:step()\n"
	"  for i, p in ipairs(m:parameters()) do p:fill(g * 1000 + i) end\n"
	"  return {model = m, opt = opt, tag = 'generation ' .. g, step = g}\n"
	"end\n"
	"local gens = {generation(1), generation(2)}\n"
	"local exp, path\n"
	"if mode == 'save' then\n"
	"  path = dir .. '/kill.lunet'\n"
	"else\n"
	"  exp = lunet.experiment{name = 'kill', root = dir, args = {},\n"
	"    output = io.open('/dev/null', 'w')}\n"
	"  path = exp.dir .. 'checkpoint.lunet'\n"
	"end\n"
	"local function save(g)\n"
	"  local v = gens[g]\n"
	"  if exp then\n"
	"    exp:checkpoint(v.model, v.opt, {tag = v.tag, step = v.step})\n"
	"  else\n"
	"    lunet.save(path, v)\n"
	"  end\n"
	"end\n"
	/* the generation the file holds, or an error saying what is wrong */
	"local function check()\n"
	"  local ok, ck = pcall(lunet.load, path)\n"
	"  if not ok then error('the file does not load: ' .. tostring(ck), 0) end\n"
	"  local g = ck.step\n"
	"  if g ~= 1 and g ~= 2 then error('step ' .. tostring(g) .. ', expected 1 or 2', 0) end\n"
	"  if ck.tag ~= 'generation ' .. g then error('tag ' .. tostring(ck.tag) .. ' with step ' .. g, 0) end\n"
	"  for i, p in ipairs(ck.model:parameters()) do\n"
	"    local want = g * 1000 + i\n"
	"    if p:min() ~= want or p:max() ~= want then\n"
	"      error(string.format('generation %d: parameter %d holds %g..%g, expected %g', g, i,\n"
	"        p:min(), p:max(), want), 0)\n"
	"    end\n"
	"  end\n"
	"  if ck.opt.lr ~= g / 100 then error('optimiser lr ' .. tostring(ck.opt.lr), 0) end\n"
	"  local s1, s2 = ck.opt:state(), gens[g].opt:state()\n"
	"  if s1.steps ~= s2.steps then error('optimiser steps ' .. tostring(s1.steps), 0) end\n"
	"  local n = 0\n"
	"  for i, bufs in ipairs(s2.params) do\n"
	"    for name, t in pairs(bufs) do\n"
	"      local u = s1.params[i] and s1.params[i][name]\n"
	"      if not lunet.is_tensor(u) or not u:allclose(t, 0, 0) then\n"
	"        error(string.format('generation %d: optimiser state %s of parameter %d differs', g,\n"
	"          name, i), 0)\n"
	"      end\n"
	"      n = n + 1\n"
	"    end\n"
	"  end\n"
"  if n == 0 then error('no optimiser state to compare', 0) end\n"
	"  return g\n"
	"end\n"
	"save(1)\n"
	"assert(check() == 1)\n"
	"return save, check, path\n";

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("test_kill: FAIL: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The temporary files of base ("<base>.tmp.*") in dir; the name of the
 * last one found into last. */
static int count_temps(const char *dir, const char *base, char *last, size_t lastsize)
{
	size_t blen = strlen(base);
	DIR *d = opendir(dir);
	if (!d)
		fail("cannot list %s: %s", dir, strerror(errno));
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, base, blen) == 0 && strncmp(e->d_name + blen, ".tmp.", 5) == 0) {
			snprintf(last, lastsize, "%s", e->d_name);
			n++;
		}
	}
	closedir(d);
	return n;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(path);
}

/* Calls the function at stack index fn with integer argument arg (if
 * >= 0); returns the integer it returns, or fails with its error. */
static long call(lua_State *L, int fn, long arg, const char *what)
{
	lua_pushvalue(L, fn);
	int nargs = 0;
	if (arg >= 0) {
		lua_pushinteger(L, arg);
		nargs = 1;
	}
	if (lua_pcall(L, nargs, 1, 0) != LUA_OK)
		fail("%s: %s", what, lua_tostring(L, -1));
	long r = (long)lua_tointeger(L, -1);
	lua_pop(L, 1);
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 3 || (strcmp(argv[2], "save") != 0 && strcmp(argv[2], "checkpoint") != 0)) {
		fprintf(stderr, "usage: test_kill DIR save|checkpoint [KILLS]\n");
		return 2;
	}
	const char *mode = argv[2];
	long kills = argc > 3 ? atol(argv[3]) : 200;
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/%s", argv[1], mode);
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	mkdir(argv[1], 0777);
	if (mkdir(dir, 0777) != 0)
		fail("cannot create %s: %s", dir, strerror(errno));
	unsigned seed = getenv("LUNET_KILL_SEED") ? (unsigned)atol(getenv("LUNET_KILL_SEED")) : 2026;
	srand(seed);

	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	luaL_requiref(L, "lunet", luaopen_lunet, 1);
	lua_pop(L, 1);
	if (luaL_loadbufferx(L, SCRIPT, sizeof SCRIPT - 1, "=kill", "t") != LUA_OK)
		fail("%s", lua_tostring(L, -1));
	lua_pushstring(L, dir);
	lua_pushstring(L, mode);
	if (lua_pcall(L, 2, 3, 0) != LUA_OK)
		fail("setup: %s", lua_tostring(L, -1));
	const int save = 1, check = 2;
	char path[4096], fdir[4096];
	snprintf(path, sizeof path, "%s", lua_tostring(L, 3));
	snprintf(fdir, sizeof fdir, "%s", path);
	char *slash = strrchr(fdir, '/');
	*slash = '\0';
	const char *base = slash + 1;

	/* how long a save takes, to spread the kills over a few of them */
	double t0 = now();
	for (int i = 0; i < 3; i++)
		call(L, save, 1 + i % 2, "save");
	double per_save = (now() - t0) / 3;
	call(L, save, 1, "save");
	long max_delay_us = (long)(3e6 * per_save) + 1;

	long inside = 0, same = 0;
	long held = 1;  /* the generation the file holds */
	char temp[512] = "";
	for (long k = 1; k <= kills; k++) {
		int ready[2];
		if (pipe(ready) != 0)
			fail("pipe: %s", strerror(errno));
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0)
			fail("fork: %s", strerror(errno));
		if (pid == 0) {
			close(ready[0]);
			if (write(ready[1], "r", 1) != 1)
				_exit(3);
			close(ready[1]);
			for (long g = 3 - held;; g = 3 - g) {
				lua_pushvalue(L, save);
				lua_pushinteger(L, g);
				if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
					fprintf(stderr, "test_kill: child: %s\n", lua_tostring(L, -1));
					_exit(4);
				}
			}
		}
		close(ready[1]);
		char c;
		if (read(ready[0], &c, 1) != 1)
			fail("kill %ld: the child did not start", k);
		close(ready[0]);
		long delay = rand() % max_delay_us;
		struct timespec ts = {delay / 1000000, (delay % 1000000) * 1000};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		if (waitpid(pid, &status, 0) != pid)
			fail("waitpid: %s", strerror(errno));
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
			fail("kill %ld: the child ended by itself (status %d) before it was killed", k, status);

		int temps = count_temps(fdir, base, temp, sizeof temp);
		if (temps > 1)
			fail("kill %ld: %d temporary files next to %s (the earlier writers' were not "
			     "removed), one is %s", k, temps, path, temp);
		inside += temps;
		lua_pushvalue(L, check);
		if (lua_pcall(L, 0, 1, 0) != LUA_OK)
			fail("kill %ld (after %ld us, seed %u): %s", k, delay, seed, lua_tostring(L, -1));
		long now_held = (long)lua_tointeger(L, -1);
		same += now_held == held;
		held = now_held;
		lua_pop(L, 1);
	}
	/* the next save removes the temporary file of the last killed writer */
	call(L, save, 3 - held, "save");
	if (count_temps(fdir, base, temp, sizeof temp) != 0)
		fail("a temporary file is left after a save: %s", temp);
	if (call(L, check, -1, "check") != 3 - held)
		fail("the last save did not hold");
	printf("test_kill %s: %ld SIGKILLs survived (%ld inside a save, leaving a temporary file); "
	       "the file held the old checkpoint %ld times, a new one %ld times; never torn\n",
	       mode, kills, inside, same, kills - same);
	if (inside == 0)
		fail("no kill landed inside a save: the test tested nothing");
	lua_close(L);
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
