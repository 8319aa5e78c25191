/*
 * error.c -- status names, error messages and shape formatting.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

/* Formats the message into err->msg (when err is non-NULL) and returns code. */
ln_status ln_fail(ln_error *err, ln_status code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
		err->code = code;
	}
	return code;
}

static const char *const status_names[] = {
	[LN_OK] = "LN_OK",
	[LN_ESHAPE] = "LN_ESHAPE",
	[LN_ERANGE] = "LN_ERANGE",
	[LN_ENAN] = "LN_ENAN",
	[LN_ENOMEM] = "LN_ENOMEM",
	[LN_EIO] = "LN_EIO",
	[LN_EFORMAT] = "LN_EFORMAT",
	[LN_EARG] = "LN_EARG",
	[LN_ESTATE] = "LN_ESTATE",
};
_Static_assert(sizeof status_names / sizeof status_names[0] == LN_STATUS_COUNT,
               "one name per ln_status");

/* Constant name of code; "LN_UNKNOWN" for values outside the enum. */
const char *ln_status_name(ln_status code)
{
	if ((unsigned)code >= LN_STATUS_COUNT)
		return "LN_UNKNOWN";
	return status_names[code];
}

/*
 * Writes "{d0,d1,...}" into buf.  When the text does not fit, it is cut
 * and ends with "..." (as much of it as fits).  buf is always
 * NUL-terminated when bufsize >= 1.
 */
char *ln_shape_str(char *buf, size_t bufsize, int ndim, const int64_t *shape)
{
	if (bufsize == 0)
		return buf;
	char tmp[32];
	size_t len = 0;
	int truncated = 0;
	buf[0] = '\0';
	for (int i = 0; i <= ndim && !truncated; i++) {
		/* piece i: "{d0" for the first, ",di" for the next, "}" at the end */
		int n;
		if (i == ndim)
			n = snprintf(tmp, sizeof tmp, "%s}", ndim == 0 ? "{" : "");
		else
			n = snprintf(tmp, sizeof tmp, "%s%lld", i == 0 ? "{" : ",",
			             (long long)shape[i]);
		if (len + (size_t)n + 1 <= bufsize) {
			memcpy(buf + len, tmp, (size_t)n + 1);
			len += (size_t)n;
		} else {
			truncated = 1;
		}
	}
	if (truncated) {
		/* make room for "..." at the end, dropping characters if needed */
		size_t dots = bufsize - 1 < 3 ? bufsize - 1 : 3;
		if (len + dots > bufsize - 1)
			len = bufsize - 1 - dots;
		memcpy(buf + len, "...", dots);
		buf[len + dots] = '\0';
	}
	return buf;
}
