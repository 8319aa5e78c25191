/*
 * cli.h -- the pieces of the `lunet` runner shared between lunet.c (command
 * line, scripts, protected calls) and repl.c (the read-eval-print loop).
 * The runner mirrors Lua 5.4's lua.c; names follow it so the two can be
 * read side by side.
 */
#ifndef LN_CLI_H
#define LN_CLI_H

#include <stdbool.h>

#include <lua.h>

/* Name printed before messages ("lunet: ..."); NULL inside the REPL, where
 * errors are printed bare, as lua.c does. */
extern const char *ln_cli_progname;

/* Prints "progname: msg\n" to stderr (without the prefix when progname is
 * NULL) and flushes. */
void ln_cli_message(const char *progname, const char *msg);

/* If status is not LUA_OK, prints the error message on top of the stack
 * and pops it.  Returns status. */
int ln_cli_report(lua_State *L, int status);

/* Calls the function below narg arguments on the stack under lua_pcall with
 * a traceback-adding message handler, and with Ctrl-C (SIGINT) turned into
 * the Lua error "interrupted!" for the length of the call.  Returns the
 * pcall status; on error the message (with traceback) is on the stack. */
int ln_cli_docall(lua_State *L, int narg, int nres);

/* Prints "lunet X.Y.Z (Lua 5.4.x)" on stdout, taking X.Y.Z from the
 * loaded module's `version` field. */
void ln_cli_print_version(lua_State *L);

/* Runs the read-eval-print loop until end of input.  On a terminal: banner
 * (unless banner is false), prompts, line editing and history in
 * ~/.lunet_history.  Otherwise lines are read plainly, with no prompt and
 * no banner, so that piped input gives clean output. */
void ln_cli_repl(lua_State *L, bool banner);

#endif
