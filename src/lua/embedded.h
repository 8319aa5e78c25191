/* embedded.h -- the pure-Lua parts of lunet, compiled into the library. */
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
