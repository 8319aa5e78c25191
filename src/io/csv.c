/*
 * csv.c -- numeric CSV loader.
 *
 * One pass over the file: lines are read into a growing buffer, split in
 * place into fields, and the numbers appended to a growing float array
 * (row-major, all columns).  At the end the array is scattered into x
 * (feature columns) and y (label column).  All memory comes from
 * ln_malloc and is released on every path through `reader_free`.
 */
#include "csv.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"

typedef struct reader {
	const char *path;
	FILE *f;
	char *line;       /* current line, NUL-terminated, from ln_malloc */
	size_t line_cap;
	char **fields;    /* pointers into line */
	int fields_cap;
	float *vals;      /* rows * ncols values, from ln_malloc */
	size_t vals_len, vals_cap;
	char **names;     /* header names (owned copies), or NULL */
	int nnames;
} reader;

static void reader_free(reader *r)
{
	if (r->f)
		fclose(r->f);
	ln_free(r->line);
	ln_free(r->fields);
	ln_free(r->vals);
	if (r->names) {
		for (int i = 0; i < r->nnames; i++)
			ln_free(r->names[i]);
		ln_free(r->names);
	}
	memset(r, 0, sizeof *r);
}

ln_csv_options ln_csv_defaults(void)
{
	return (ln_csv_options){.header = true, .label = NULL, .label_index = -1, .sep = ','};
}

/* Reads the next line (without its "\n" or "\r\n") into r->line; lineno
 * (1-based) is for messages.  A NUL byte in a line is an error: the line
 * would be cut short there.  Returns 1 for a line, 0 at end of file, or
 * an error status negated. */
static int read_line(reader *r, long lineno, ln_error *err)
{
	size_t len = 0;
	int c;
	while ((c = getc(r->f)) != EOF && c != '\n') {
		if (c == '\0')
			return -(int)ln_fail(err, LN_EFORMAT, "%s: line %ld contains a NUL byte", r->path,
			                     lineno);
		if (r->line_cap - len < 2) {
			if (r->line_cap > SIZE_MAX / 2)
				return -(int)ln_fail(err, LN_ENOMEM, "%s: line %ld is too long", r->path, lineno);
			size_t ncap = r->line_cap ? 2 * r->line_cap : 256;
			char *nl = ln_malloc(ncap);
			if (!nl)
				return -(int)ln_fail(err, LN_ENOMEM, "%s: out of memory reading line %ld",
				                     r->path, lineno);
			if (r->line)
				memcpy(nl, r->line, len);
			ln_free(r->line);
			r->line = nl;
			r->line_cap = ncap;
		}
		r->line[len++] = (char)c;
	}
	if (ferror(r->f))
		return -(int)ln_fail(err, LN_EIO, "%s: read error: %s", r->path, strerror(errno));
	if (c == EOF && len == 0)
		return 0;
	if (!r->line) {  /* an empty first line */
		if (!(r->line = ln_malloc(256)))
			return -(int)ln_fail(err, LN_ENOMEM, "%s: out of memory reading line %ld", r->path,
			                     lineno);
		r->line_cap = 256;
	}
	if (len > 0 && r->line[len - 1] == '\r')
		len--;
	r->line[len] = '\0';
	return 1;
}

/* Strips leading and trailing white space in place; returns the start. */
static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* Splits r->line in place at sep into r->fields (trimmed, quotes
 * removed); *nfields receives the count.  lineno is for messages. */
static ln_status split(reader *r, char sep, long lineno, int *nfields, ln_error *err)
{
	int n = 0;
	char *s = r->line;
	for (;;) {
		if (n == r->fields_cap) {
			if (r->fields_cap > INT_MAX / 2)
				return ln_fail(err, LN_ERANGE, "%s: line %ld has more than %d fields", r->path,
				               lineno, INT_MAX / 2);
			int ncap = r->fields_cap ? 2 * r->fields_cap : 16;
			char **nf = ln_malloc((size_t)ncap * sizeof *nf);
			if (!nf)
				return ln_fail(err, LN_ENOMEM, "%s: out of memory", r->path);
			if (r->fields)
				memcpy(nf, r->fields, (size_t)n * sizeof *nf);
			ln_free(r->fields);
			r->fields = nf;
			r->fields_cap = ncap;
		}
		while (*s == ' ' || *s == '\t')
			s++;
		char *next;
		if (*s == '"') {
			/* Quoted: copy down over the opening quote, "" -> ". */
			char *w = s, *p = s + 1;
			for (;;) {
				if (*p == '\0')
					return ln_fail(err, LN_EFORMAT, "%s: line %ld: unterminated quoted field",
					               r->path, lineno);
				if (*p == '"') {
					if (p[1] == '"') {
						*w++ = '"';
						p += 2;
						continue;
					}
					p++;
					break;
				}
				*w++ = *p++;
			}
			*w = '\0';
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p != '\0' && *p != sep)
				return ln_fail(err, LN_EFORMAT,
				               "%s: line %ld: unexpected text after a quoted field", r->path,
				               lineno);
			r->fields[n++] = s;
			if (*p == '\0')
				break;
			next = p + 1;
		} else {
			char *e = strchr(s, sep);
			if (e)
				*e = '\0';
			r->fields[n++] = trim(s);
			if (!e)
				break;
			next = e + 1;
		}
		s = next;
	}
	*nfields = n;
	return LN_OK;
}

/* True for a line holding only white space. */
static bool blank(const char *s)
{
	for (; *s; s++)
		if (!isspace((unsigned char)*s))
			return false;
	return true;
}

/* Copies a string into ln_malloc memory. */
static char *dupstr(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = ln_malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}

/* Column description for messages: "'sepal'" with a header, else "3". */
static const char *colname(const reader *r, int col, char *buf, size_t size)
{
	if (r->names)
		snprintf(buf, size, "'%s'", r->names[col]);
	else
		snprintf(buf, size, "%d", col + 1);
	return buf;
}

/* Parses one field as a finite float into *v. */
static ln_status parse_number(const reader *r, const char *s, long lineno, int col, float *v,
                              ln_error *err)
{
	char cbuf[96];
	char *end;
	errno = 0;
	double d = strtod(s, &end);
	if (end == s || *end != '\0')
		return ln_fail(err, LN_EFORMAT, "%s: line %ld, column %s: '%.40s' is not a number",
		               r->path, lineno, colname(r, col, cbuf, sizeof cbuf), s);
	if (!isfinite(d) || fabs(d) > FLT_MAX)
		return ln_fail(err, LN_EFORMAT,
		               "%s: line %ld, column %s: '%.40s' is not a finite float32 number",
		               r->path, lineno, colname(r, col, cbuf, sizeof cbuf), s);
	*v = (float)d;
	return LN_OK;
}

/* Appends n values to r->vals, growing it by doubling. */
static ln_status append(reader *r, const float *v, size_t n, ln_error *err)
{
	if (r->vals_cap - r->vals_len < n) {
		size_t ncap = r->vals_cap ? r->vals_cap : 1024;
		while (ncap - r->vals_len < n) {
			if (ncap > SIZE_MAX / 2 / sizeof(float))
				return ln_fail(err, LN_ENOMEM, "%s: too much data", r->path);
			ncap *= 2;
		}
		float *nv = ln_malloc(ncap * sizeof *nv);
		if (!nv)
			return ln_fail(err, LN_ENOMEM, "%s: out of memory after %zu values", r->path,
			               r->vals_len);
		if (r->vals)
			memcpy(nv, r->vals, r->vals_len * sizeof *nv);
		ln_free(r->vals);
		r->vals = nv;
		r->vals_cap = ncap;
	}
	memcpy(r->vals + r->vals_len, v, n * sizeof *v);
	r->vals_len += n;
	return LN_OK;
}

/* Resolves the label column from the options once ncols is known. */
static ln_status find_label(const reader *r, const ln_csv_options *o, int ncols, int *label,
                            ln_error *err)
{
	*label = -1;
	if (o->label) {
		if (!r->names)
			return ln_fail(err, LN_EARG,
			               "%s: label column '%s' given by name, but the file is read without a "
			               "header", r->path, o->label);
		for (int i = 0; i < ncols; i++)
			if (strcmp(r->names[i], o->label) == 0) {
				*label = i;
				break;
			}
		if (*label < 0) {
			char list[256] = "";
			size_t used = 0;
			for (int i = 0; i < ncols && used < sizeof list - 1; i++)
				used += (size_t)snprintf(list + used, sizeof list - used, "%s'%s'",
				                         i ? ", " : "", r->names[i]);
			return ln_fail(err, LN_EARG, "%s: no column named '%s' (columns: %s)", r->path,
			               o->label, list);
		}
	} else if (o->label_index >= 0) {
		if (o->label_index >= ncols)
			return ln_fail(err, LN_EARG,
			               "%s: label column %d out of range: the file has %d columns", r->path,
			               o->label_index + 1, ncols);
		*label = o->label_index;
	}
	if (*label >= 0 && ncols < 2)
		return ln_fail(err, LN_EARG,
		               "%s: the label is the only column: no feature columns left for x", r->path);
	return LN_OK;
}

ln_status ln_csv_load(ln_csv_data *out, const char *path, const ln_csv_options *opt,
                      ln_error *err)
{
	memset(out, 0, sizeof *out);
	out->label_col = -1;
	ln_csv_options o = opt ? *opt : ln_csv_defaults();
	char sep = o.sep ? o.sep : ',';
	reader r = {.path = path};
	ln_status st = LN_OK;

	errno = 0;
	r.f = fopen(path, "rb");
	if (!r.f)
		return ln_fail(err, LN_EIO, "%s: cannot open: %s", path, strerror(errno));

	long lineno = 0, nrows = 0;
	int ncols = -1, label = -1, rc;
	bool any_line = false;
	float *row = NULL;
	while ((rc = read_line(&r, lineno + 1, err)) == 1) {
		lineno++;
		char *text = r.line;
		if (lineno == 1 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
		    (unsigned char)text[2] == 0xBF)
			memmove(text, text + 3, strlen(text + 3) + 1);  /* UTF-8 BOM */
		if (blank(text))
			continue;
		int nf = 0;
		if ((st = split(&r, sep, lineno, &nf, err)) != LN_OK)
			goto fail;
		if (!any_line) {
			any_line = true;
			ncols = nf;
			if (o.header) {
				r.names = ln_calloc((size_t)nf, sizeof *r.names);
				if (!r.names) {
					st = ln_fail(err, LN_ENOMEM, "%s: out of memory", path);
					goto fail;
				}
				r.nnames = nf;
				for (int i = 0; i < nf; i++)
					if (!(r.names[i] = dupstr(r.fields[i]))) {
						st = ln_fail(err, LN_ENOMEM, "%s: out of memory", path);
						goto fail;
					}
			}
			if ((st = find_label(&r, &o, ncols, &label, err)) != LN_OK)
				goto fail;
			row = ln_malloc((size_t)ncols * sizeof *row);
			if (!row) {
				st = ln_fail(err, LN_ENOMEM, "%s: out of memory", path);
				goto fail;
			}
			if (o.header)
				continue;
		}
		if (nf != ncols) {
			st = ln_fail(err, LN_EFORMAT, "%s: line %ld has %d field%s, expected %d", path, lineno,
			             nf, nf == 1 ? "" : "s", ncols);
			goto fail;
		}
		for (int c = 0; c < ncols; c++)
			if ((st = parse_number(&r, r.fields[c], lineno, c, &row[c], err)) != LN_OK)
				goto fail;
		if ((st = append(&r, row, (size_t)ncols, err)) != LN_OK)
			goto fail;
		nrows++;
	}
	if (rc < 0) {
		st = (ln_status)-rc;
		goto fail;
	}
	if (!any_line) {
		st = ln_fail(err, LN_EFORMAT, "%s: empty file", path);
		goto fail;
	}
	if (nrows == 0) {
		st = ln_fail(err, LN_EFORMAT, "%s: no data rows after the header", path);
		goto fail;
	}

	/* Scatter the (nrows, ncols) values into x and y. */
	int nfeat = label >= 0 ? ncols - 1 : ncols;
	int64_t xshape[2] = {nrows, nfeat}, yshape[1] = {nrows};
	if ((st = ln_tensor_alloc(&out->x, 2, xshape, err)) != LN_OK)
		goto fail;
	if (label >= 0 && (st = ln_tensor_alloc(&out->y, 1, yshape, err)) != LN_OK)
		goto fail;
	float *x = ln_tensor_data(&out->x);
	float *y = label >= 0 ? ln_tensor_data(&out->y) : NULL;
	for (long i = 0; i < nrows; i++) {
		const float *v = r.vals + (size_t)i * (size_t)ncols;
		for (int c = 0; c < ncols; c++) {
			if (c == label)
				y[i] = v[c];
			else
				*x++ = v[c];
		}
	}
	out->ncols = ncols;
	out->label_col = label;
	out->names = r.names;  /* ownership moves to out */
	r.names = NULL;
	ln_free(row);
	reader_free(&r);
	return LN_OK;

fail:
	ln_free(row);
	reader_free(&r);
	ln_csv_data_free(out);
	return st;
}

void ln_csv_data_free(ln_csv_data *d)
{
	ln_tensor_release(&d->x);
	ln_tensor_release(&d->y);
	if (d->names) {
		for (int i = 0; i < d->ncols; i++)
			ln_free(d->names[i]);
		ln_free(d->names);
	}
	d->names = NULL;
	d->ncols = 0;
	d->label_col = -1;
}
