/*
 * error.c -- status names, error messages and shape formatting.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

#define OOM_WORDS "out of memory"

/* Formats the message into err->msg (when err is non-NULL) and returns code.
 * Every LN_ENOMEM message says "out of memory", whatever its caller wrote
 * ("... (out of memory)" is added, over the end of a message too long for
 * it): a script that runs out (lunet.memory_limit) can rely on the words. */
ln_status ln_fail(ln_error *err, ln_status code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
		err->code = code;
		if (code == LN_ENOMEM && !strstr(err->msg, OOM_WORDS)) {
			static const char tail[] = " (" OOM_WORDS ")";
			size_t len = strlen(err->msg);
			if (len > sizeof err->msg - sizeof tail)
				len = sizeof err->msg - sizeof tail;
			memcpy(err->msg + len, tail, sizeof tail);
		}
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

/* Piece i of the text of a shape: "{d0" for the first, ",di" for the next,
 * "}" after the last (and "{}" for ndim 0).  Returns its length. */
static int shape_piece(char *tmp, size_t size, int i, int ndim, const int64_t *shape)
{
	if (i == ndim)
		return snprintf(tmp, size, "%s}", ndim == 0 ? "{" : "");
	return snprintf(tmp, size, "%s%lld", i == 0 ? "{" : ",", (long long)shape[i]);
}

/*
 * Writes "{d0,d1,...}" into buf.  When the text does not fit, it is cut
 * after the last whole number that leaves room for "..." and ends with
 * "..." (or as many dots as fit).  buf is always NUL-terminated when
 * bufsize >= 1.
 */
char *ln_shape_str(char *buf, size_t bufsize, int ndim, const int64_t *shape)
{
	if (bufsize == 0)
		return buf;
	char tmp[32];
	size_t total = 0;
	for (int i = 0; i <= ndim; i++)
		total += (size_t)shape_piece(tmp, sizeof tmp, i, ndim, shape);
	bool fits = total < bufsize;
	size_t len = 0;
	for (int i = 0; i <= ndim; i++) {
		size_t n = (size_t)shape_piece(tmp, sizeof tmp, i, ndim, shape);
		if (!fits && len + n + 3 > bufsize - 1)
			break;
		memcpy(buf + len, tmp, n);
		len += n;
	}
	if (!fits) {
		size_t dots = bufsize - 1 - len < 3 ? bufsize - 1 - len : 3;
		memcpy(buf + len, "...", dots);
		len += dots;
	}
	buf[len] = '\0';
	return buf;
}

/* Shifts the message right to make room for the prefix; what no longer
 * fits in LN_ERROR_MSG_MAX is cut from the end of the message. */
void ln_error_prefix(ln_error *err, const char *fmt, ...)
{
	if (!err)
		return;
	char prefix[LN_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	size_t plen = strlen(prefix);
	size_t mlen = strnlen(err->msg, LN_ERROR_MSG_MAX - 1);
	if (plen > LN_ERROR_MSG_MAX - 1)
		plen = LN_ERROR_MSG_MAX - 1;
	if (plen + mlen > LN_ERROR_MSG_MAX - 1)
		mlen = LN_ERROR_MSG_MAX - 1 - plen;
	memmove(err->msg + plen, err->msg, mlen);
	memcpy(err->msg, prefix, plen);
	err->msg[plen + mlen] = '\0';
}
