/* embedded.h -- the pure-Lua parts of lunet (the .lua files of lua/lunet),
 * compiled into the library by cmake/embed_lua.cmake and run by lunet.c. */
#ifndef LN_EMBEDDED_H
#define LN_EMBEDDED_H

#include <stddef.h>

typedef struct ln_embedded_script {
	const char *name;  /* module name, "lunet.gradcheck" */
	const char *code;
	size_t len;
} ln_embedded_script;

extern const ln_embedded_script ln_embedded_scripts[];  /* ends with {NULL} */

#endif
