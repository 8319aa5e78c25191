/*
 * repl.c -- the read-eval-print loop of `lunet`, after lua.c's doREPL.
 *
 * A line is first tried as `return <line>`, so that expressions print their
 * values (through the global `print`, hence through __tostring: tensors and
 * modules print readably; tables through lunet.show: `{2, 3}`, nested
 * tables abridged, tensors and modules inside by their tostring); if that
 * does not compile it is run as a
 * statement, and a statement that is incomplete (its syntax error ends in
 * "<eof>") is continued on the next lines with the prompt ">> ".  Errors are
 * printed with a traceback and the loop goes on.
 *
 * The global `help` is lunet.help: help(nn.Linear) prints the manual's
 * entry (the pages of docs/, compiled in).
 *
 * On a terminal the lines come from libedit's readline, with history kept in
 * ~/.lunet_history.  When stdin is not a terminal the lines are read with
 * fgets and no prompt or banner is printed, so that
 *     printf 'x = lunet.ones(2,3)\nx:sum()\n' | lunet
 * prints just the value.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <editline/readline.h>

#include <lauxlib.h>
#include <lua.h>

#include "cli.h"

#define PROMPT "> "
#define PROMPT2 ">> "
#define HISTORY_FILE ".lunet_history"
#define HISTORY_LINES 1000
#define EOFMARK "<eof>"

static bool interactive;    /* stdin is a terminal */
static char history[4096];  /* history file path, "" when there is none */

/* ---- completion ------------------------------------------------------------- */

/*
 * Tab completes names: globals, then fields after '.' and methods after
 * ':' (`lunet.on<Tab>` -> `lunet.ones`, `t:res<Tab>` -> `t:reshape`).
 * Fields are looked up raw, following metatables' __index only where it is
 * a table, so completion never runs Lua code.  The Lua work happens in a
 * protected call, so that no error unwinds through libedit's frames.
 */

static lua_State *complete_L;  /* the REPL's state, while readline runs */
static int complete_list;      /* stack index of the completions, 0 if none */

#define COMPLETE_DEPTH 8  /* __index tables followed, at most */
#define COMPLETE_UPVALUES 4  /* upvalues of a C __index looked at */

/* Where fields of the value at idx are found without running code: pushes
 * its metatable's __index and returns its type (LUA_TNONE, nothing
 * pushed, when there is no metatable). */
static int getindex(lua_State *L, int idx)
{
	if (!lua_getmetatable(L, idx))
		return LUA_TNONE;
	lua_pushliteral(L, "__index");
	int t = lua_rawget(L, -2);
	lua_remove(L, -2);
	return t;
}

/* Replaces the value at -2 and the key at -1 by value[key], looked up raw
 * in the value (if a table), then along its chain of __index tables; an
 * __index that is a C function is searched through its table upvalues
 * (where bindings keep their methods). */
static void rawfield(lua_State *L)
{
	int value = lua_gettop(L) - 1, key = value + 1;
	lua_pushnil(L);  /* the result, at key + 1 */
	for (int depth = 0; depth < COMPLETE_DEPTH; depth++) {
		if (lua_istable(L, value)) {
			lua_pushvalue(L, key);
			if (lua_rawget(L, value) != LUA_TNIL) {
				lua_replace(L, key + 1);
				break;
			}
			lua_pop(L, 1);
		}
		int t = getindex(L, value);
		if (t == LUA_TFUNCTION && lua_iscfunction(L, -1)) {
			for (int up = 1; up <= COMPLETE_UPVALUES; up++) {
				if (lua_getupvalue(L, -1, up) == NULL)
					break;
				if (lua_istable(L, -1)) {
					lua_pushvalue(L, key);
					if (lua_rawget(L, -2) != LUA_TNIL) {
						lua_replace(L, key + 1);
						break;
					}
					lua_pop(L, 1);
				}
				lua_pop(L, 1);
			}
			break;
		}
		if (t != LUA_TTABLE)
			break;
		lua_replace(L, value);
	}
	lua_copy(L, key + 1, value);
	lua_settop(L, value);
}

static bool is_identifier(const char *s)
{
	if (!(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
		return false;
	for (s++; *s; s++)
		if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

/* The word being completed, for add_keys. */
typedef struct completion {
	const char *text;     /* the whole word: "lunet.on" */
	const char *partial;  /* its last name: "on" */
	bool methods;         /* after ':': functions only */
} completion;

/* Adds the keys of the table at t that complete c to the result (index 2),
 * each once (set of names at index 3). */
static void add_keys(lua_State *L, int t, const completion *c)
{
	size_t plen = strlen(c->partial);
	lua_pushnil(L);
	while (lua_next(L, t)) {
		const char *key;
		if (lua_type(L, -2) == LUA_TSTRING && strncmp(key = lua_tostring(L, -2), c->partial, plen) == 0 &&
		    is_identifier(key) && (!c->methods || lua_isfunction(L, -1))) {
			lua_pushvalue(L, -2);
			if (lua_rawget(L, 3) == LUA_TNIL) {
				lua_pushvalue(L, -3);
				lua_pushboolean(L, 1);
				lua_rawset(L, 3);
				lua_pushlstring(L, c->text, (size_t)(c->partial - c->text));
				lua_pushvalue(L, -4);
				lua_concat(L, 2);
				lua_rawseti(L, 2, (lua_Integer)lua_rawlen(L, 2) + 1);
			}
			lua_pop(L, 1);
		}
		lua_pop(L, 1);
	}
}

/* Protected: the completions of the word (light userdata, a C string) as a
 * sorted array of strings, each the whole word completed. */
static int collect(lua_State *L)
{
	completion c = {lua_touserdata(L, 1), NULL, false};
	const char *sep = NULL;  /* the last '.' or ':' */
	for (const char *p = c.text; *p; p++)
		if (*p == '.' || *p == ':')
			sep = p;
	lua_settop(L, 0);
	lua_newtable(L);  /* 1: unused slot, keeps the indices below fixed */
	lua_newtable(L);  /* 2: result */
	lua_newtable(L);  /* 3: names seen */
	lua_pushglobaltable(L);  /* 4: where the last name is looked up */
	c.partial = c.text;
	if (sep != NULL) {
		for (const char *p = c.text; p < sep;) {
			const char *q = p;
			while (q < sep && *q != '.' && *q != ':')
				q++;
			if (q < sep && *q == ':')  /* a:b.c is no name */
				return 1;
			lua_pushlstring(L, p, (size_t)(q - p));
			rawfield(L);
			if (!lua_istable(L, 4) && !lua_isuserdata(L, 4))
				return 1;
			p = q + 1;
		}
		c.partial = sep + 1;
		c.methods = *sep == ':';
	}
	for (int depth = 0; depth < COMPLETE_DEPTH; depth++) {
		if (lua_istable(L, 4))
			add_keys(L, 4, &c);
		int t = getindex(L, 4);
		if (t == LUA_TFUNCTION && lua_iscfunction(L, -1)) {
			for (int up = 1; up <= COMPLETE_UPVALUES; up++) {
				if (lua_getupvalue(L, 5, up) == NULL)
					break;
				if (lua_istable(L, -1))
					add_keys(L, lua_gettop(L), &c);
				lua_pop(L, 1);
			}
			break;
		}
		if (t != LUA_TTABLE)
			break;
		lua_replace(L, 4);
	}
	lua_getglobal(L, "table");
	lua_getfield(L, -1, "sort");
	lua_pushvalue(L, 2);
	lua_call(L, 1, 0);
	lua_settop(L, 2);
	return 1;
}

/* readline's generator: state 0 computes the completions (left on top of
 * the stack until readline returns, then popped by pushline), each call
 * hands out the next one, malloc'd for readline to free. */
static char *generator(const char *text, int state)
{
	lua_State *L = complete_L;
	static lua_Integer next;
	int list = complete_list;
	if (state == 0) {
		if (list != 0)  /* the previous Tab's, during this readline */
			lua_settop(L, list - 1);
		list = complete_list = 0;
		next = 1;
		if (!lua_checkstack(L, 4))
			return NULL;
		lua_pushcfunction(L, collect);
		lua_pushlightuserdata(L, (void *)text);
		if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
			lua_pop(L, 1);
			return NULL;
		}
		list = complete_list = lua_gettop(L);
	}
	if (list == 0 || lua_gettop(L) != list)
		return NULL;
	char *match = NULL;
	if (lua_rawgeti(L, list, next++) == LUA_TSTRING)
		match = strdup(lua_tostring(L, -1));
	lua_pop(L, 1);
	return match;
}

static char **complete(const char *text, int start, int end)
{
	(void)start;
	(void)end;
	rl_attempted_completion_over = 1;  /* no file names */
	return rl_completion_matches(text, generator);
}

/* ---- reading lines ---------------------------------------------------------- */

/* Sets up readline and loads the history, on a terminal only.  No history
 * file when HOME is unset or the path does not fit. */
static void initreadline(lua_State *L)
{
	interactive = isatty(STDIN_FILENO);
	history[0] = '\0';
	if (!interactive)
		return;
	rl_readline_name = "lunet";
	rl_attempted_completion_function = complete;
	rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{(}),[]+-*/%^~#";
	rl_completer_word_break_characters = (char *)rl_basic_word_break_characters;
	rl_completion_append_character = '\0';
	complete_L = L;
	using_history();
	stifle_history(HISTORY_LINES);
	const char *home = getenv("HOME");
	if (home != NULL && home[0] != '\0') {
		int n = snprintf(history, sizeof history, "%s/%s", home, HISTORY_FILE);
		if (n < 0 || (size_t)n >= sizeof history)
			history[0] = '\0';
		else
			read_history(history);  /* a missing file is fine */
	}
}

/* Adds a complete chunk to the history and saves the file at once, so that
 * a session ended by a signal keeps its history. */
static void saveline(const char *line)
{
	if (!interactive || line[0] == '\0')
		return;
	add_history(line);
	if (history[0] != '\0')
		write_history(history);
}

/* The prompt: _PROMPT / _PROMPT2 if set (through tostring), else the
 * default.  Pushes one value (the prompt string, or nil) that the caller
 * pops. */
static const char *get_prompt(lua_State *L, bool firstline)
{
	if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL)
		return firstline ? PROMPT : PROMPT2;
	const char *p = luaL_tolstring(L, -1, NULL);
	lua_remove(L, -2);
	return p;
}

/* Reads a line from a non-terminal stdin, of any length, and pushes it
 * without its newline.  Returns false (pushing nothing) at end of input. */
static bool readplain(lua_State *L)
{
	luaL_Buffer b;
	bool got = false;
	luaL_buffinit(L, &b);
	for (;;) {
		char *p = luaL_prepbuffer(&b);
		if (fgets(p, LUAL_BUFFERSIZE, stdin) == NULL)
			break;
		got = true;
		size_t n = strlen(p);
		if (n > 0 && p[n - 1] == '\n') {
			luaL_addsize(&b, n - 1);
			break;
		}
		luaL_addsize(&b, n);
	}
	luaL_pushresult(&b);
	if (!got) {
		lua_pop(L, 1);
		return false;
	}
	return true;
}

/* Reads the next line and pushes it; a first line "=expr" becomes
 * "return expr", as in Lua 5.2.  Returns false at end of input. */
static bool pushline(lua_State *L, bool firstline)
{
	if (interactive) {
		int top = lua_gettop(L);
		const char *prompt = get_prompt(L, firstline);
		char *b = readline(prompt);  /* malloc'd by readline; freed here */
		lua_settop(L, top);  /* the prompt, and what completion left */
		complete_list = 0;
		if (b == NULL)
			return false;
		lua_pushstring(L, b);
		free(b);
	} else if (!readplain(L)) {
		return false;
	}
	const char *line = lua_tostring(L, -1);
	if (firstline && line[0] == '=') {
		lua_pushfstring(L, "return %s", line + 1);
		lua_remove(L, -2);
	}
	return true;
}

/* ---- compiling lines -------------------------------------------------------- */

/* Is the error on top a syntax error at end of input? */
static bool incomplete(lua_State *L, int status)
{
	if (status != LUA_ERRSYNTAX)
		return false;
	size_t lmsg;
	const char *msg = lua_tolstring(L, -1, &lmsg);
	size_t lmark = sizeof(EOFMARK) - 1;
	return lmsg >= lmark && strcmp(msg + lmsg - lmark, EOFMARK) == 0;
}

/* Tries to compile "return <line>;" from the line on top.  On success
 * replaces nothing but pushes the function above the line. */
static int addreturn(lua_State *L)
{
	const char *line = lua_tostring(L, -1);
	const char *retline = lua_pushfstring(L, "return %s;", line);
	int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
	if (status == LUA_OK) {
		lua_remove(L, -2);  /* the modified line */
		saveline(line);
	} else {
		lua_pop(L, 2);  /* error message and modified line */
	}
	return status;
}

/* Compiles the line at index lineidx as a statement, reading more lines
 * while it is incomplete.  Pushes the function or the error message. */
static int multiline(lua_State *L, int lineidx)
{
	for (;;) {
		size_t len;
		const char *line = lua_tolstring(L, lineidx, &len);
		int status = luaL_loadbuffer(L, line, len, "=stdin");
		if (!incomplete(L, status) || !pushline(L, false)) {
			saveline(line);
			return status;  /* the function or the error is on top */
		}
		lua_remove(L, -2);  /* the "<eof>" error */
		/* join: line .. "\n" .. next, back into lineidx */
		lua_pushvalue(L, lineidx);
		lua_pushliteral(L, "\n");
		lua_rotate(L, -3, 2);
		lua_concat(L, 3);
		lua_replace(L, lineidx);
	}
}

/* Reads and compiles one chunk.  Returns -1 at end of input; otherwise the
 * load status, with the function or the error message pushed. */
static int loadline(lua_State *L)
{
	if (!pushline(L, true))
		return -1;
	int lineidx = lua_gettop(L);
	int status = addreturn(L);
	if (status != LUA_OK)
		status = multiline(L, lineidx);
	lua_remove(L, lineidx);
	return status;
}

/* ---- the loop ----------------------------------------------------------------- */

/* Replaces each table among the values above base by its rendering
 * through lunet.show ({2, 3} rather than "table: 0x..."; lua/lunet/show.lua
 * says how it abridges).  A value whose rendering fails is left for print.
 * lunet.show is taken from package.loaded, whatever the global `lunet`
 * has become. */
static void show_tables(lua_State *L, int base)
{
	int top = lua_gettop(L);
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	int show = LUA_TNIL;
	if (lua_getfield(L, -1, "lunet") == LUA_TTABLE)
		show = lua_getfield(L, -1, "show");
	if (show == LUA_TFUNCTION) {
		int fn = lua_gettop(L);
		for (int i = base + 1; i <= top; i++) {
			if (lua_type(L, i) != LUA_TTABLE)
				continue;
			lua_pushvalue(L, fn);
			lua_pushvalue(L, i);
			if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
				lua_replace(L, i);
			else
				lua_pop(L, 1);
		}
	}
	lua_settop(L, top);
}

/* Prints the values above base with the global `print`. */
static void l_print(lua_State *L, int base)
{
	int n = lua_gettop(L) - base;
	if (n <= 0)
		return;
	luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
	show_tables(L, base);
	/* A float with an integral value prints without ".0" (x:sum() shows 6,
	 * as a calculator would); the value itself stays a float. */
	for (int i = base + 1; i <= base + n; i++) {
		if (lua_type(L, i) != LUA_TNUMBER || lua_isinteger(L, i))
			continue;
		lua_Number v = lua_tonumber(L, i);
		if (v == floor(v) && fabs(v) < 1e15) {
			char buf[32];
			snprintf(buf, sizeof buf, "%.0f", v);
			lua_pushstring(L, buf);
			lua_replace(L, i);
		}
	}
	lua_getglobal(L, "print");
	lua_insert(L, base + 1);
	if (lua_pcall(L, n, 0, 0) != LUA_OK)
		ln_cli_message(ln_cli_progname, lua_pushfstring(L, "error calling 'print' (%s)",
		                                                 lua_tostring(L, -1)));
}

/* Sets the global `help` to lunet.help (the manual, lua/lunet/help.lua),
 * unless a script already gave `help` a value of its own. */
static void set_help(lua_State *L)
{
	int top = lua_gettop(L);
	if (lua_getglobal(L, "help") == LUA_TNIL) {
		luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
		if (lua_getfield(L, -1, "lunet") == LUA_TTABLE &&
		    lua_getfield(L, -1, "help") == LUA_TFUNCTION)
			lua_setglobal(L, "help");
	}
	lua_settop(L, top);
}

void ln_cli_repl(lua_State *L, bool banner)
{
	const char *oldprogname = ln_cli_progname;
	int base = lua_gettop(L);
	int status;
	ln_cli_progname = NULL;  /* errors print bare in the REPL */
	initreadline(L);
	set_help(L);
	if (interactive && banner) {
		ln_cli_print_version(L);
		printf("globals: lunet, nn, optim, data.  help() for the manual, help(x) for x.\n"
		       "Ctrl-D exits, Ctrl-C interrupts.\n");
		fflush(stdout);
	}
	while ((status = loadline(L)) != -1) {
		if (status == LUA_OK)
			status = ln_cli_docall(L, 0, LUA_MULTRET);
		if (status == LUA_OK)
			l_print(L, base);
		else
			ln_cli_report(L, status);
		lua_settop(L, base);
	}
	lua_settop(L, base);
	if (interactive) {
		lua_writeline();
	}
	ln_cli_progname = oldprogname;
}
