/*
 * error.h -- status codes and error values.
 *
 * Public C functions of lunet never abort, exit or print on bad input.
 * They return an ln_status and, when the caller passes a non-NULL
 * ln_error *, write a human-readable message into it.  The message names
 * what was expected and what arrived; the caller that knows the context
 * puts it in front, once (the Lua binding prefixes the name of the
 * function the script called):
 *
 *     ln_error err;
 *     if (ln_tensor_alloc(&t, 2, shape, &err) != LN_OK)
 *         return luaL_error(L, "%s: %s", "lunet.zeros", err.msg);
 */
#ifndef LN_ERROR_H
#define LN_ERROR_H

#include <stddef.h>
#include <stdint.h>

typedef enum ln_status {
	LN_OK = 0,
	LN_ESHAPE,   /* shapes do not fit together */
	LN_ERANGE,   /* a value, index or size outside its allowed range */
	LN_ENAN,     /* NaN or infinity where a finite number is needed */
	LN_ENOMEM,   /* allocation failed (or was failed on purpose) */
	LN_EIO,      /* a file could not be opened, read or written */
	LN_EFORMAT,  /* a file or buffer is not in the expected format */
	LN_EARG,     /* any other invalid argument */
	LN_ESTATE,   /* called in the wrong state (e.g. backward before forward) */
	LN_STATUS_COUNT
} ln_status;

#define LN_ERROR_MSG_MAX 512

typedef struct ln_error {
	ln_status code;
	char msg[LN_ERROR_MSG_MAX];
} ln_error;

/* Stores code and a printf-formatted message in err (which may be NULL)
 * and returns code, so that callers can write `return ln_fail(err, ...)`.
 * An LN_ENOMEM message always contains "out of memory" (added when the
 * caller's text lacks it). */
ln_status ln_fail(ln_error *err, ln_status code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Puts a printf-formatted prefix in front of err->msg, for a caller that
 * adds its context to a callee's message ("layer 3 (Linear): ").  The end
 * of the message is cut if the whole does not fit.  err may be NULL. */
void ln_error_prefix(ln_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Short constant name of a status ("LN_ESHAPE"). */
const char *ln_status_name(ln_status code);

/* Formats a shape as "{2,3}" into buf (always NUL-terminated, truncated
 * with "..." if it does not fit) and returns buf. */
char *ln_shape_str(char *buf, size_t bufsize, int ndim, const int64_t *shape);

#endif
