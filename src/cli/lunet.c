/*
 * lunet.c -- the `lunet` runner: Lua 5.4 with the lunet module preloaded.
 *
 *     lunet script.lua [args...]   run a script (`arg` and `...` as in lua)
 *     lunet -e 'code' [-e ...]     run chunks, then the script if one is given
 *     lunet [-i]                   the REPL (see repl.c)
 *     lunet sweep script.lua --key=v1,v2 ...   a grid of runs (sweep.lua)
 *     lunet runs [dir]             the runs under dir (runs.lua)
 *
 * The structure is that of Lua 5.4's lua.c: main() creates the state and
 * calls pmain() under lua_pcall, so that even a memory error while opening
 * the libraries is reported rather than fatal; every chunk runs through
 * ln_cli_docall(), whose message handler adds a traceback (except to an
 * error object with __tostring, printed as it says, and to a Ctrl-C);
 * Ctrl-C sets a hook that raises "interrupted!" (lunet_interrupt) at the
 * next Lua instruction.
 *
 * Where lunet differs from lua.c:
 *   - the globals lunet, nn, optim and data are set before anything runs;
 *   - -h/--help and --version exist;
 *   - `lunet` with no script and stdin not a terminal runs the REPL
 *     without prompts (lua.c would run stdin as one chunk; `lunet -` does);
 *   - -i does not print the version unless stdin is a terminal;
 *   - the init variable is LUNET_INIT (ignored with -E);
 *   - a first argument "sweep" or "runs" is a command, not a script: the
 *     function of that name in lunet._commands gets the words after it
 *     and returns the exit status.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "cli.h"
#include "lunet.h"

#define LUNET_INIT_VAR "LUNET_INIT"

const char *ln_cli_progname = "lunet";

/* ---- Ctrl-C ------------------------------------------------------------------ */

/* The state running a protected call, for the signal handler. */
static lua_State *volatile global_L;

/* Hook set by the signal handler: runs at the next Lua instruction (call,
 * return, line or count event), removes itself and raises the error
 * "interrupted!" through lunet_interrupt, which marks it as a Ctrl-C for
 * lunet.experiment. */
static void lstop(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	lua_sethook(L, NULL, 0, 0);
	lunet_interrupt(L);
}

static void setsignal(int sig, void (*handler)(int), struct sigaction *old)
{
	struct sigaction sa;
	sa.sa_handler = handler;
	sa.sa_flags = 0;
	sigemptyset(&sa.sa_mask);  /* mask no signal */
	sigaction(sig, &sa, old);
}

/* SIGINT handler.  lua_sethook is safe to call from a signal handler (see
 * lua.c).  The default action is restored first, so that a second Ctrl-C
 * kills a process stuck in C code that never reaches the hook. */
static void laction(int sig)
{
	int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
	setsignal(sig, SIG_DFL, NULL);
	lua_sethook(global_L, lstop, flag, 1);
}

/* ---- messages and protected calls ------------------------------------------ */

void ln_cli_message(const char *pname, const char *msg)
{
	if (pname)
		lua_writestringerror("%s: ", pname);
	lua_writestringerror("%s\n", msg);
}

int ln_cli_report(lua_State *L, int status)
{
	if (status != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		if (msg == NULL)
			msg = "(error object is not a string)";
		ln_cli_message(ln_cli_progname, msg);
		lua_pop(L, 1);
	}
	return status;
}

/* Message handler: turns the error object into a string (through
 * __tostring if it has one) and appends a traceback.  A Ctrl-C passes
 * unchanged: its message says where it stopped, and lunet.experiment must
 * see the very value lunet_interrupt raised to report the run. */
static int msghandler(lua_State *L)
{
	if (lunet_is_interrupt(L, 1))
		return 1;
	const char *msg = lua_tostring(L, 1);
	if (msg == NULL) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
			return 1;
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

int ln_cli_docall(lua_State *L, int narg, int nres)
{
	int base = lua_gettop(L) - narg;  /* function index */
	lua_pushcfunction(L, msghandler);
	lua_insert(L, base);
	struct sigaction old;  /* restored afterwards: lua.c sets SIG_DFL instead,
	                        * which would undo an inherited SIG_IGN */
	global_L = L;
	setsignal(SIGINT, laction, &old);
	int status = lua_pcall(L, narg, nres, base);
	sigaction(SIGINT, &old, NULL);
	/* A Ctrl-C that arrived after the last Lua instruction of the call
	 * left its hook behind: drop it, or it would interrupt whatever runs
	 * next (the next REPL line).  A hook set by the script stays. */
	if (lua_gethook(L) == lstop)
		lua_sethook(L, NULL, 0, 0);
	lua_remove(L, base);
	return status;
}

static int dochunk(lua_State *L, int status)
{
	if (status == LUA_OK)
		status = ln_cli_docall(L, 0, 0);
	return ln_cli_report(L, status);
}

static int dostring(lua_State *L, const char *s, const char *name)
{
	return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* `-l mod` and `-l g=mod`: global g (or mod) = require(mod). */
static int dolibrary(lua_State *L, char *globname)
{
	char *modname = strchr(globname, '=');
	if (modname == NULL) {
		modname = globname;
	} else {
		*modname = '\0';
		modname++;
	}
	lua_getglobal(L, "require");
	lua_pushstring(L, modname);
	int status = ln_cli_docall(L, 1, 1);
	if (status == LUA_OK)
		lua_setglobal(L, globname);
	return ln_cli_report(L, status);
}

/* ---- version and usage ------------------------------------------------------ */

void ln_cli_print_version(lua_State *L)
{
	char fallback[32];
	const char *v = NULL;
	int top = lua_gettop(L);
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	if (lua_getfield(L, -1, "lunet") == LUA_TTABLE &&
	    lua_getfield(L, -1, "version") == LUA_TSTRING)
		v = lua_tostring(L, -1);
	if (v == NULL) {
		snprintf(fallback, sizeof fallback, "%d.%d.%d", LUNET_VERSION_MAJOR,
		         LUNET_VERSION_MINOR, LUNET_VERSION_PATCH);
		v = fallback;
	}
	printf("lunet %s (%s)\n", v, LUA_RELEASE);
	fflush(stdout);
	lua_settop(L, top);
}

static const char usage_text[] =
	"usage: %s [options] [script [args]]\n"
	"Available options are:\n"
	"  -e stat   execute string 'stat'\n"
	"  -i        enter interactive mode after executing 'script'\n"
	"  -l mod    require library 'mod' into global 'mod'\n"
	"  -l g=mod  require library 'mod' into global 'g'\n"
	"  -v        show version information (also --version)\n"
	"  -h        show this help (also --help)\n"
	"  -E        ignore environment variables\n"
	"  -W        turn warnings on\n"
	"  --        stop handling options\n"
	"  -         stop handling options and execute stdin\n"
	"Commands (the first argument):\n"
	"  sweep script.lua --key=v1,v2 --key2=lo..hi [-j N] [--emit=slurm|parallel]\n"
	"            run the script over a grid of values (lunet sweep --help)\n"
	"  runs [dir] [--compare RUN1 RUN2]\n"
	"            list the runs under dir (default runs/) (lunet runs --help)\n"
	"With no script and no -e, %s starts the interactive loop, where the\n"
	"globals lunet, nn, optim and data are set and expressions print their value.\n"
	"LUNET_INIT, if set, runs first: a chunk, or @file for a file (not with -E).\n";

/* Bad option: names it, then the usage, on stderr. */
static void print_usage(const char *badoption)
{
	lua_writestringerror("%s: ", ln_cli_progname);
	if (badoption[1] == 'e' || badoption[1] == 'l')
		lua_writestringerror("'%s' needs argument\n", badoption);
	else
		lua_writestringerror("unrecognized option '%s'\n", badoption);
	fprintf(stderr, usage_text, ln_cli_progname, ln_cli_progname);
	fflush(stderr);
}

/* ---- command line ------------------------------------------------------------ */

#define has_error 1  /* bad option */
#define has_i 2      /* -i */
#define has_v 4      /* -v, --version */
#define has_e 8      /* -e */
#define has_E 16     /* -E */
#define has_h 32     /* -h, --help */

/* Scans the options, as lua.c's collectargs.  Sets *first to the index of
 * the script name (argc if none; the bad option on error) and returns the
 * has_ flags seen. */
static int collectargs(char **argv, int *first)
{
	int args = 0;
	int i;
	if (argv[0] == NULL) {  /* argc == 0: no program name, no script */
		*first = 0;
		return 0;
	}
	for (i = 1; argv[i] != NULL; i++) {
		*first = i;
		if (argv[i][0] != '-')  /* not an option: the script */
			return args;
		switch (argv[i][1]) {
		case '-':
			if (argv[i][2] == '\0') {  /* '--' */
				*first = i + 1;
				return args;
			}
			if (strcmp(argv[i], "--version") == 0)
				args |= has_v;
			else if (strcmp(argv[i], "--help") == 0)
				args |= has_h;
			else
				return has_error;
			break;
		case '\0':  /* '-': the script is stdin */
			return args;
		case 'E':
			if (argv[i][2] != '\0')
				return has_error;
			args |= has_E;
			break;
		case 'W':
			if (argv[i][2] != '\0')
				return has_error;
			break;
		case 'h':
			if (argv[i][2] != '\0')
				return has_error;
			args |= has_h;
			break;
		case 'i':
			if (argv[i][2] != '\0')
				return has_error;
			args |= has_i;
			break;
		case 'v':
			if (argv[i][2] != '\0')
				return has_error;
			args |= has_v;
			break;
		case 'e':
			args |= has_e;  /* -e and -l both need an argument */
			/* FALLTHROUGH */
		case 'l':
			if (argv[i][2] == '\0') {  /* no concatenated argument */
				i++;
				if (argv[i] == NULL || argv[i][0] == '-')
					return has_error;
			}
			break;
		default:
			return has_error;
		}
	}
	*first = i;  /* no script name */
	return args;
}

/* Runs the -e and -l options in order, and -W.  Returns false on the first
 * failure (already reported). */
static bool runargs(lua_State *L, char **argv, int n)
{
	for (int i = 1; i < n; i++) {
		int option = argv[i][1];
		switch (option) {
		case 'e':
		case 'l': {
			char *extra = argv[i] + 2;
			if (*extra == '\0')
				extra = argv[++i];
			int status = (option == 'e') ? dostring(L, extra, "=(command line)")
			                             : dolibrary(L, extra);
			if (status != LUA_OK)
				return false;
			break;
		}
		case 'W':
			lua_warning(L, "@on", 0);
			break;
		}
	}
	return true;
}

/* The global `arg`: script name at 0, its arguments at 1.., and the
 * interpreter and options at negative indices, as lua.c builds it. */
static void createargtable(lua_State *L, char **argv, int argc, int script)
{
	if (script == argc)
		script = 0;  /* no script name */
	int narg = argc - (script + 1);
	lua_createtable(L, narg, script + 1);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - script);
	}
	lua_setglobal(L, "arg");
}

/* Pushes arg[1..#arg] for the script's `...`; returns how many. */
static int pushargs(lua_State *L)
{
	if (lua_getglobal(L, "arg") != LUA_TTABLE)
		luaL_error(L, "'arg' is not a table");
	int n = (int)luaL_len(L, -1);
	luaL_checkstack(L, n + 3, "too many arguments to script");
	int i;
	for (i = 1; i <= n; i++)
		lua_rawgeti(L, -i, i);
	lua_remove(L, -i);  /* the arg table */
	return n;
}

static int handle_script(lua_State *L, char **argv)
{
	const char *fname = argv[0];
	if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
		fname = NULL;  /* stdin */
	int status = luaL_loadfile(L, fname);
	if (status == LUA_OK) {
		int n = pushargs(L);
		status = ln_cli_docall(L, n, LUA_MULTRET);
	}
	return ln_cli_report(L, status);
}

/* ---- commands: lunet sweep, lunet runs ------------------------------------ */

/* The exit status a command asked for (0 unless one ran and said otherwise). */
static int command_status = 0;

/* Whether argv[1] names a command of lunet._commands rather than a script
 * (a script called "sweep" runs as ./sweep). */
static bool is_command(const char *word)
{
	return strcmp(word, "sweep") == 0 || strcmp(word, "runs") == 0;
}

/* Runs the command argv[0] ("sweep" or "runs", from sweep.lua and runs.lua)
 * with the words after it, under ln_cli_docall: a Ctrl-C is the Lua error a
 * script would get, and one-line error objects print as one line.  The
 * command returns its exit status, kept in command_status. */
static int handle_command(lua_State *L, char **argv)
{
	int top = lua_gettop(L);
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	lua_getfield(L, -1, "lunet");
	if (!lua_istable(L, -1) || lua_getfield(L, -1, "_commands") != LUA_TTABLE ||
	    lua_getfield(L, -1, argv[0]) != LUA_TFUNCTION) {
		lua_settop(L, top);
		ln_cli_message(ln_cli_progname, "this lunet has no command of that name");
		return LUA_ERRRUN;
	}
	lua_newtable(L);
	for (int i = 1; argv[i] != NULL; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i);
	}
	int status = ln_cli_docall(L, 1, 1);
	if (status == LUA_OK)
		command_status = (int)lua_tointeger(L, -1);
	else
		ln_cli_report(L, status);  /* pops the message */
	lua_settop(L, top);
	return status;
}

/* LUNET_INIT: "@file" runs the file, anything else runs as a chunk. */
static int handle_init(lua_State *L)
{
	const char *init = getenv(LUNET_INIT_VAR);
	if (init == NULL)
		return LUA_OK;
	if (init[0] == '@')
		return dochunk(L, luaL_loadfile(L, init + 1));
	return dostring(L, init, "=" LUNET_INIT_VAR);
}

/* Opens lunet as lua.c opens the standard libraries: registered in
 * package.preload (so a cleared package.loaded.lunet can be required
 * again), required into the global `lunet`, and its sub-tables nn, optim
 * and data made globals too (nil if the module lacks them). */
static void openlunet(lua_State *L)
{
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
	lua_pushcfunction(L, luaopen_lunet);
	lua_setfield(L, -2, "lunet");
	lua_pop(L, 1);
	luaL_requiref(L, "lunet", luaopen_lunet, 1);
	static const char *const subs[] = {"nn", "optim", "data"};
	for (size_t k = 0; k < sizeof subs / sizeof subs[0]; k++) {
		lua_getfield(L, -1, subs[k]);
		lua_setglobal(L, subs[k]);
	}
	lua_pop(L, 1);
}

/* The body of main, run in protected mode.  Pushes true when everything
 * went well; errors have been reported by then. */
static int pmain(lua_State *L)
{
	int argc = (int)lua_tointeger(L, 1);
	char **argv = (char **)lua_touserdata(L, 2);
	int script;  /* index of the script name; argc if none */
	int args = collectargs(argv, &script);
	luaL_checkversion(L);
	if (args == has_error) {
		print_usage(argv[script]);
		return 0;
	}
	if (args & has_h) {
		printf(usage_text, ln_cli_progname, ln_cli_progname);
		fflush(stdout);
		lua_pushboolean(L, 1);
		return 1;
	}
	if (args & has_E) {  /* tell the libraries to ignore LUA_PATH etc. */
		lua_pushboolean(L, 1);
		lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
	}
	luaL_openlibs(L);
	createargtable(L, argv, argc, script);
	openlunet(L);
	lua_gc(L, LUA_GCRESTART);
	lua_gc(L, LUA_GCGEN, 0, 0);
	if (args & has_v)
		ln_cli_print_version(L);
	if (!(args & has_E) && handle_init(L) != LUA_OK)
		return 0;
	if (!runargs(L, argv, script))
		return 0;
	if (script == 1 && script < argc && is_command(argv[1])) {
		if (handle_command(L, argv + 1) != LUA_OK)
			return 0;
		lua_pushboolean(L, 1);
		return 1;
	}
	if (script < argc) {
		if (handle_script(L, argv + script) != LUA_OK)
			return 0;
	}
	if (args & has_i) {
		ln_cli_repl(L, !(args & has_v));
	} else if (script == argc && !(args & (has_e | has_v))) {
		/* no script and nothing else to do */
		ln_cli_repl(L, true);
	}
	lua_pushboolean(L, 1);
	return 1;
}

int main(int argc, char **argv)
{
	lua_State *L = luaL_newstate();
	if (L == NULL) {
		ln_cli_message(ln_cli_progname, "cannot create state: not enough memory");
		return EXIT_FAILURE;
	}
	lua_gc(L, LUA_GCSTOP);  /* no collection while building the state */
	lua_pushcfunction(L, pmain);
	lua_pushinteger(L, argc);
	lua_pushlightuserdata(L, argv);
	int status = lua_pcall(L, 2, 1, 0);
	int result = lua_toboolean(L, -1);
	ln_cli_progname = "lunet";  /* the REPL clears it; an error may skip the reset */
	ln_cli_report(L, status);
	if (!(result && status == LUA_OK))
		lunet_dist_abort(EXIT_FAILURE);  /* under mpirun: end every rank */
	lua_close(L);
	if (result && status == LUA_OK)
		return command_status;
	return EXIT_FAILURE;
}
