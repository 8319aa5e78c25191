/* embedded.h -- files compiled into the library by cmake/embed_lua.cmake:
 * the pure-Lua parts of lunet (the .lua files of lua/lunet), run by
 * lunet.c, and the pages of the manual (the .md files of docs/), read by
 * lunet.help. */
#ifndef LN_EMBEDDED_H
#define LN_EMBEDDED_H

#include <stddef.h>

typedef struct ln_embedded_script {
	const char *name;  /* module name, "lunet.gradcheck"; page name, "tensors" */
	const char *code;  /* the file's bytes (not NUL-terminated) */
	size_t len;
} ln_embedded_script;

extern const ln_embedded_script ln_embedded_scripts[];  /* ends with {NULL} */
extern const ln_embedded_script ln_embedded_docs[];     /* ends with {NULL} */

#endif
