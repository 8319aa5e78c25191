/*
 * repl.c -- the read-eval-print loop of `lunet`, after lua.c's doREPL.
 *
 * A line is first tried as `return <line>`, so that expressions print their
 * values (through the global `print`, hence through __tostring: tensors and
 * modules print readably); if that does not compile it is run as a
 * statement, and a statement that is incomplete (its syntax error ends in
 * "<eof>") is continued on the next lines with the prompt ">> ".  Errors are
 * printed with a traceback and the loop goes on.
 *
 * On a terminal the lines come from libedit's readline, with history kept in
 * ~/.lunet_history.  When stdin is not a terminal the lines are read with
 * fgets and no prompt or banner is printed, so that
 *     printf 'x = lunet.ones(2,3)\nx:sum()\n' | lunet
 * prints just the value.
 */
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

/* ---- reading lines ---------------------------------------------------------- */

/* Sets up readline and loads the history, on a terminal only.  No history
 * file when HOME is unset or the path does not fit. */
static void initreadline(void)
{
	interactive = isatty(STDIN_FILENO);
	history[0] = '\0';
	if (!interactive)
		return;
	rl_readline_name = "lunet";
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
		const char *prompt = get_prompt(L, firstline);
		char *b = readline(prompt);  /* malloc'd by readline; freed here */
		lua_pop(L, 1);  /* the prompt */
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

/* Prints the values above base with the global `print`. */
static void l_print(lua_State *L, int base)
{
	int n = lua_gettop(L) - base;
	if (n <= 0)
		return;
	luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
	lua_getglobal(L, "print");
	lua_insert(L, base + 1);
	if (lua_pcall(L, n, 0, 0) != LUA_OK)
		ln_cli_message(ln_cli_progname, lua_pushfstring(L, "error calling 'print' (%s)",
		                                                 lua_tostring(L, -1)));
}

void ln_cli_repl(lua_State *L, bool banner)
{
	const char *oldprogname = ln_cli_progname;
	int base = lua_gettop(L);
	int status;
	ln_cli_progname = NULL;  /* errors print bare in the REPL */
	initreadline();
	if (interactive && banner) {
		ln_cli_print_version(L);
		printf("globals: lunet, nn, optim, data.  Ctrl-D exits, Ctrl-C interrupts.\n");
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
