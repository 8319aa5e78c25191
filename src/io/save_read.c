/*
 * save_read.c -- the decoder of the lunet file format (save.h): a reader
 * that checks a file image whole, then decodes its values one by one.
 *
 * The reader trusts nothing: every count and size is checked against the
 * bytes that remain before it is used, in the style of idx.c, and every
 * way a file can be wrong is an LN_EFORMAT value, never an assert.
 */
#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/rng.h"
#include "../nn/layers.h"
#include "save.h"
#include "save_internal.h"

/* ==== reader ======================================================================= */

typedef struct object {
	ln_save_tag kind;  /* TABLE, TENSOR, MODULE or OPTIM */
	bool done;         /* complete: refs to it are valid */
	void *ptr;         /* MODULE: ln_module * (one reference); OPTIM: ln_saved_optim * */
} object;

struct ln_reader {
	const unsigned char *file;  /* the image, for offsets in messages */
	const unsigned char *p;     /* cursor in the payload */
	const unsigned char *end;   /* end of the payload */
	int depth;
	object *obj;
	uint64_t nobj, capobj;
	unsigned version;           /* of the file: 1 .. LN_SAVE_VERSION */
	ln_rng rng;                 /* initial weights of the modules built (replaced) */
	bool finished;
};

/* LN_EFORMAT "malformed file at byte N: ..." at the cursor. */
static ln_status bad(const ln_reader *r, ln_error *err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static ln_status bad(const ln_reader *r, ln_error *err, const char *fmt, ...)
{
	if (!err)
		return LN_EFORMAT;
	char msg[LN_ERROR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return ln_fail(err, LN_EFORMAT, "malformed file at byte %zu: %s", (size_t)(r->p - r->file),
	               msg);
}

static size_t left(const ln_reader *r) { return (size_t)(r->end - r->p); }

/* n more bytes must be there. */
static ln_status need(const ln_reader *r, size_t n, ln_error *err)
{
	if (left(r) < n)
		return bad(r, err, "value runs past the end of the payload (%zu bytes needed, %zu left)",
		           n, left(r));
	return LN_OK;
}

static unsigned get_u8(ln_reader *r) { return *r->p++; }

static uint64_t get_u64(ln_reader *r)
{
	uint64_t v = ln_save_get_le(r->p, 8);
	r->p += 8;
	return v;
}

static double get_f64(ln_reader *r)
{
	uint64_t u = get_u64(r);
	double v;
	memcpy(&v, &u, 8);
	return v;
}

/* A str: *s points into the image. */
static ln_status read_str(ln_reader *r, const char **s, size_t *len, ln_error *err)
{
	ln_status st = need(r, 8, err);
	if (st != LN_OK)
		return st;
	uint64_t n = get_u64(r);
	if (n > left(r))
		return bad(r, err, "string of %llu bytes, only %zu left", (unsigned long long)n, left(r));
	*s = (const char *)r->p;
	*len = (size_t)n;
	r->p += n;
	return LN_OK;
}

/* A short name (class, config, parameter, state) into buf, NUL-terminated;
 * it must be non-empty, shorter than STR_MAX and free of NULs. */
static ln_status read_name(ln_reader *r, char buf[STR_MAX], const char *what, ln_error *err)
{
	const char *s = NULL;
	size_t len = 0;
	ln_status st = read_str(r, &s, &len, err);
	if (st != LN_OK)
		return st;
	if (len == 0 || len >= STR_MAX || memchr(s, '\0', len))
		return bad(r, err, "invalid %s name (%zu bytes)", what, len);
	memcpy(buf, s, len);
	buf[len] = '\0';
	return LN_OK;
}

static ln_status add_object(ln_reader *r, ln_save_tag kind, void *ptr, uint64_t *id,
                            ln_error *err)
{
	if (r->nobj == r->capobj) {
		uint64_t cap = r->capobj ? 2 * r->capobj : 64;
		if (cap > SIZE_MAX / sizeof(object))
			return ln_fail(err, LN_ENOMEM, "out of memory (object table)");
		object *v = ln_malloc((size_t)cap * sizeof *v);
		if (!v)
			return ln_fail(err, LN_ENOMEM, "out of memory (object table of %llu entries)",
			               (unsigned long long)cap);
		if (r->nobj)
			memcpy(v, r->obj, (size_t)r->nobj * sizeof *v);
		ln_free(r->obj);
		r->obj = v;
		r->capobj = cap;
	}
	r->obj[r->nobj] = (object){kind, false, ptr};
	*id = r->nobj++;
	return LN_OK;
}

static ln_status enter_r(ln_reader *r, ln_error *err)
{
	if (r->depth >= LN_SAVE_MAX_DEPTH)
		return bad(r, err, "nesting deeper than %d levels", LN_SAVE_MAX_DEPTH);
	r->depth++;
	return LN_OK;
}

ln_status ln_reader_new(ln_reader **out, const void *data, size_t size, ln_error *err)
{
	*out = NULL;
	const unsigned char *b = data;
	if (size == 0)
		return ln_fail(err, LN_EFORMAT, "not a lunet file (empty)");
	size_t m = size < LN_SAVE_MAGIC_LEN ? size : LN_SAVE_MAGIC_LEN;
	if (memcmp(b, LN_SAVE_MAGIC, m) != 0)
		return ln_fail(err, LN_EFORMAT, "not a lunet file");
	if (size < LN_SAVE_HEADER_LEN)
		return ln_fail(err, LN_EFORMAT, "truncated (%zu bytes; the header alone is %d)", size,
		               LN_SAVE_HEADER_LEN);
	unsigned version = (unsigned)ln_save_get_le(b + 6, 2);
	if (version == 0)
		return ln_fail(err, LN_EFORMAT, "invalid format version 0 (file corrupted)");
	if (version > LN_SAVE_VERSION)
		return ln_fail(err, LN_EFORMAT, "format version %u is newer than this lunet (%d)",
		               version, LN_SAVE_VERSION);
	uint64_t plen = ln_save_get_le(b + 8, 8);
	size_t room = size - LN_SAVE_HEADER_LEN;
	if (room < LN_SAVE_TRAILER_LEN || plen > room - LN_SAVE_TRAILER_LEN) {
		if (plen > UINT64_MAX - LN_SAVE_HEADER_LEN - LN_SAVE_TRAILER_LEN)
			return ln_fail(err, LN_EFORMAT, "truncated (%zu bytes; the header announces more "
			               "than 2^64)", size);
		return ln_fail(err, LN_EFORMAT, "truncated (%zu bytes, expected %llu)", size,
		               (unsigned long long)(plen + LN_SAVE_HEADER_LEN + LN_SAVE_TRAILER_LEN));
	}
	if (plen < room - LN_SAVE_TRAILER_LEN)
		return ln_fail(err, LN_EFORMAT, "file corrupted (%zu bytes, expected %llu)", size,
		               (unsigned long long)(plen + LN_SAVE_HEADER_LEN + LN_SAVE_TRAILER_LEN));
	const unsigned char *payload = b + LN_SAVE_HEADER_LEN;
	uint32_t want = (uint32_t)ln_save_get_le(payload + plen, 4);
	if (ln_save_crc(payload, (size_t)plen) != want)
		return ln_fail(err, LN_EFORMAT, "checksum mismatch (file corrupted)");
	ln_reader *r = ln_calloc(1, sizeof *r);
	if (!r)
		return ln_fail(err, LN_ENOMEM, "out of memory (reader)");
	r->file = b;
	r->version = version;
	r->p = payload;
	r->end = payload + plen;
	*out = r;
	return LN_OK;
}

static void saved_optim_free(ln_saved_optim *s)
{
	if (!s)
		return;
	if (s->state)
		for (int i = 0; i < s->nparams * s->nstate; i++)
			ln_tensor_release(&s->state[i]);
	ln_free(s->state);
	ln_free(s->shape);
	ln_free(s->owner);
	ln_free(s->owner_index);
	ln_free(s);
}

void ln_reader_free(ln_reader *r)
{
	if (!r)
		return;
	for (uint64_t i = 0; i < r->nobj; i++) {
		if (r->obj[i].kind == LN_SAVE_MODULE)
			ln_module_release(r->obj[i].ptr);
		else if (r->obj[i].kind == LN_SAVE_OPTIM)
			saved_optim_free(r->obj[i].ptr);
	}
	ln_free(r->obj);
	ln_free(r);
}

uint64_t ln_reader_nobjects(const ln_reader *r) { return r->nobj; }

ln_module *ln_reader_module(const ln_reader *r, uint64_t id)
{
	return id < r->nobj && r->obj[id].kind == LN_SAVE_MODULE ? r->obj[id].ptr : NULL;
}

const ln_saved_optim *ln_reader_optim(const ln_reader *r, uint64_t id)
{
	return id < r->nobj && r->obj[id].kind == LN_SAVE_OPTIM ? r->obj[id].ptr : NULL;
}

ln_status ln_reader_peek(ln_reader *r, ln_save_tag *tag, ln_error *err)
{
	if (left(r) == 0)
		return bad(r, err, "a value was expected, the payload ends");
	unsigned t = *r->p;
	if (t >= LN_SAVE_TAG_COUNT)
		return bad(r, err, "unknown value tag %u", t);
	*tag = (ln_save_tag)t;
	return LN_OK;
}

/* Consumes the tag byte, which must be `want`. */
static ln_status expect_tag(ln_reader *r, ln_save_tag want, ln_error *err)
{
	ln_save_tag t;
	ln_status st = ln_reader_peek(r, &t, err);
	if (st != LN_OK)
		return st;
	if (t != want)
		return bad(r, err, "expected a %s, found a %s", ln_save_tag_name(want), ln_save_tag_name(t));
	r->p++;
	return LN_OK;
}

ln_status ln_read_atom(ln_reader *r, ln_save_atom *out, ln_error *err)
{
	ln_save_tag t;
	ln_status st = ln_reader_peek(r, &t, err);
	if (st != LN_OK)
		return st;
	memset(out, 0, sizeof *out);
	out->tag = t;
	switch (t) {
	case LN_SAVE_NIL:
	case LN_SAVE_FALSE:
	case LN_SAVE_TRUE:
		out->boolean = t == LN_SAVE_TRUE;
		r->p++;
		return LN_OK;
	case LN_SAVE_NUMBER:
	case LN_SAVE_INTEGER:
		if ((st = need(r, 9, err)) != LN_OK)
			return st;
		r->p++;
		if (t == LN_SAVE_NUMBER)
			out->number = get_f64(r);
		else
			out->integer = (int64_t)get_u64(r);
		return LN_OK;
	case LN_SAVE_STRING:
		r->p++;
		return read_str(r, &out->str, &out->len, err);
	default:
		return bad(r, err, "expected a nil, boolean, number or string, found a %s",
		           ln_save_tag_name(t));
	}
}

ln_status ln_read_key(ln_reader *r, ln_save_atom *out, ln_error *err)
{
	ln_save_tag t;
	ln_status st = ln_reader_peek(r, &t, err);
	if (st != LN_OK)
		return st;
	if (t == LN_SAVE_NIL || t > LN_SAVE_STRING)
		return bad(r, err, "a table key cannot be a %s", ln_save_tag_name(t));
	if ((st = ln_read_atom(r, out, err)) != LN_OK)
		return st;
	if (t == LN_SAVE_NUMBER && isnan(out->number))
		return bad(r, err, "a table key cannot be NaN");
	return LN_OK;
}

ln_status ln_read_table_begin(ln_reader *r, uint64_t *na, uint64_t *id, ln_error *err)
{
	ln_status st = expect_tag(r, LN_SAVE_TABLE, err);
	if (st != LN_OK || (st = need(r, 8, err)) != LN_OK)
		return st;
	uint64_t n = get_u64(r);
	if (n > left(r))  /* every value takes at least a byte */
		return bad(r, err, "table of %llu values, only %zu bytes left", (unsigned long long)n,
		           left(r));
	if ((st = enter_r(r, err)) != LN_OK)
		return st;
	if ((st = add_object(r, LN_SAVE_TABLE, NULL, id, err)) != LN_OK)
		return st;
	*na = n;
	return LN_OK;
}

ln_status ln_read_table_hash(ln_reader *r, uint64_t *nh, ln_error *err)
{
	ln_status st = need(r, 8, err);
	if (st != LN_OK)
		return st;
	uint64_t n = get_u64(r);
	if (n > left(r) / 2)  /* a key and a value: at least two bytes */
		return bad(r, err, "table of %llu keys, only %zu bytes left", (unsigned long long)n,
		           left(r));
	*nh = n;
	return LN_OK;
}

void ln_read_table_end(ln_reader *r, uint64_t id)
{
	assert(id < r->nobj && r->obj[id].kind == LN_SAVE_TABLE && r->depth > 0);
	r->obj[id].done = true;
	r->depth--;
}

/* A shape (u8 ndim, ndim i64) whose elements (bytes_per_elem each) fit in
 * the bytes left: no size is trusted before that check.  bytes_per_elem 0:
 * no data follows, the element count need only fit an int64. */
static ln_status read_shape(ln_reader *r, ln_save_shape *s, size_t bytes_per_elem, ln_error *err)
{
	ln_status st = need(r, 1, err);
	if (st != LN_OK)
		return st;
	int ndim = (int)get_u8(r);
	if (ndim < 1 || ndim > LN_MAX_DIMS)
		return bad(r, err, "tensor of %d dimensions (expected 1..%d)", ndim, LN_MAX_DIMS);
	if ((st = need(r, 8 * (size_t)ndim, err)) != LN_OK)
		return st;
	uint64_t room = bytes_per_elem ? (left(r) - 8 * (size_t)ndim) / bytes_per_elem : INT64_MAX;
	uint64_t numel = 1;
	s->ndim = ndim;
	for (int d = 0; d < ndim; d++) {
		uint64_t v = get_u64(r);
		if (v < 1 || v > INT64_MAX)
			return bad(r, err, "tensor size %llu in dimension %d (expected 1..2^63-1)",
			           (unsigned long long)v, d + 1);
		if (v > room / numel)
			return bad(r, err, "tensor data runs past the end of the payload");
		numel *= v;
		s->size[d] = (int64_t)v;
	}
	return LN_OK;
}

static int64_t shape_numel(const ln_save_shape *s)
{
	int64_t n = 1;
	for (int d = 0; d < s->ndim; d++)
		n *= s->size[d];
	return n;
}

static bool shape_is(const ln_save_shape *s, const ln_tensor *t)
{
	return s->ndim == t->ndim && memcmp(s->size, t->shape, (size_t)s->ndim * 8) == 0;
}

static char *save_shape_str(const ln_save_shape *s, char *buf, size_t size)
{
	return ln_shape_str(buf, size, s->ndim, s->size);
}

/* The data of a tensor whose shape was just read, into dst (contiguous,
 * of that shape). */
static void read_data(ln_reader *r, ln_tensor *dst, const ln_save_shape *s)
{
	size_t n = (size_t)shape_numel(s);
	assert(ln_tensor_is_contiguous(dst) && left(r) >= n * 4);
	ln_save_floats_from_le(ln_tensor_data(dst), r->p, n);
	r->p += n * 4;
}

/* A tensor body into a new tensor `out`. */
static ln_status read_tensor_body(ln_reader *r, ln_tensor *out, ln_error *err)
{
	ln_save_shape s;
	ln_status st = read_shape(r, &s, 4, err);
	if (st != LN_OK || (st = ln_tensor_alloc(out, s.ndim, s.size, err)) != LN_OK)
		return st;
	read_data(r, out, &s);
	return LN_OK;
}

ln_status ln_read_tensor(ln_reader *r, ln_tensor *out, uint64_t *id, ln_error *err)
{
	ln_status st = expect_tag(r, LN_SAVE_TENSOR, err);
	if (st != LN_OK || (st = read_tensor_body(r, out, err)) != LN_OK)
		return st;
	if ((st = add_object(r, LN_SAVE_TENSOR, NULL, id, err)) != LN_OK) {
		ln_tensor_release(out);
		return st;
	}
	r->obj[*id].done = true;
	return LN_OK;
}

ln_status ln_read_backref(ln_reader *r, uint64_t *id, ln_save_tag *kind, ln_error *err)
{
	ln_status st = expect_tag(r, LN_SAVE_REF, err);
	if (st != LN_OK || (st = need(r, 8, err)) != LN_OK)
		return st;
	uint64_t v = get_u64(r);
	if (v >= r->nobj)
		return bad(r, err, "reference to object %llu, but only %llu were read",
		           (unsigned long long)v, (unsigned long long)r->nobj);
	if (!r->obj[v].done)
		return bad(r, err, "reference to object %llu, which is not complete (a cycle)",
		           (unsigned long long)v);
	*id = v;
	*kind = r->obj[v].kind;
	return LN_OK;
}

/* ---- modules ------------------------------------------------------------------- */

/* Index of name in a class's NULL-terminated list, or -1. */
static int name_index(const char *const *names, int max, const char *name)
{
	for (int i = 0; i < max && names[i]; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/* Index of m's parameter (buffer) called name, or -1. */
static int tensor_index(const ln_module *m, bool buffers, const char *name)
{
	if (buffers)
		return name_index(m->cls->buffer_names, m->nbuffers, name);
	char buf[LN_PARAM_NAME_MAX];
	for (int i = 0; i < m->nparams; i++)
		if (strcmp(ln_module_param_name(m, i, buf), name) == 0)
			return i;
	return -1;
}

/* Skims the parameter and buffer sections that follow the cursor without
 * consuming them: validates their layout and adds up the bytes of their
 * tensors (at most the bytes left).  The cursor is restored. */
static ln_status skim_tensors(ln_reader *r, size_t *bytes, ln_error *err)
{
	const unsigned char *start = r->p;
	ln_status st = LN_OK;
	*bytes = 0;
	for (int section = 0; section < 2 && st == LN_OK; section++) {
		if ((st = need(r, 1, err)) != LN_OK)
			break;
		int n = (int)get_u8(r);
		for (int i = 0; i < n && st == LN_OK; i++) {
			char name[STR_MAX];
			ln_save_shape s;
			if ((st = read_name(r, name, "tensor", err)) != LN_OK ||
			    (st = read_shape(r, &s, 4, err)) != LN_OK)
				break;
			size_t b = (size_t)shape_numel(&s) * 4;
			*bytes += b;
			r->p += b;  /* read_shape checked that it is there */
		}
	}
	if (st == LN_OK)
		r->p = start;
	return st;
}

/* Builds a module of class cls from config through a build context that
 * leaves the process alone: initial weights (which the saved ones
 * replace) come from the reader's own generator, and the parameters and
 * buffers may take a few times the bytes the record holds for them and no
 * more, so that a hostile config cannot make create allocate what the
 * file does not pay for.  (The slack lets a record whose tensors merely
 * have the wrong shapes fail on those shapes, naming them.) */
static ln_status create_module(ln_reader *r, const ln_module_class *cls, const double *config,
                               size_t bytes, ln_module **out, ln_error *err)
{
	bool over = false;
	size_t slack = 65536;
	size_t budget = bytes > (SIZE_MAX - slack) / 8 ? SIZE_MAX : 8 * bytes + slack;
	ln_module_build ctx = {&r->rng, budget, &over};
	ln_error e;
	ln_status st = ln_module_create(out, cls, &ctx, config, &e);
	if (over)
		return ln_fail(err, LN_ENOMEM, "cannot build a %s: its saved config asks for more "
		               "memory than its saved tensors account for (%s)", cls->name, e.msg);
	if (st == LN_ENOMEM)
		return ln_fail(err, LN_ENOMEM, "out of memory building a %s", cls->name);
	if (st != LN_OK)
		return bad(r, err, "cannot build a %s from its saved config: %s", cls->name, e.msg);
	return LN_OK;
}

/* The np parameters or nb buffers of a module record, into the tensors of
 * the module just built (names must be the class's, shapes the module's). */
static ln_status read_module_tensors(ln_reader *r, ln_module *m, bool buffers, ln_error *err)
{
	const ln_module_class *cls = m->cls;
	const char *what = buffers ? "buffer" : "parameter";
	int have = buffers ? m->nbuffers : m->nparams;
	ln_tensor *dst = buffers ? m->buffer : m->param;
	ln_status st = need(r, 1, err);
	if (st != LN_OK)
		return st;
	int n = (int)get_u8(r);
	if (n != have)
		return bad(r, err, "%s has %d %ss, the file has %d", cls->name, have, what, n);
	bool seen[256] = {false};  /* n is a byte */
	for (int i = 0; i < n; i++) {
		char name[STR_MAX];
		ln_save_shape s;
		if ((st = read_name(r, name, what, err)) != LN_OK)
			return st;
		int j = tensor_index(m, buffers, name);
		if (j < 0)
			return bad(r, err, "%s has no %s '%s'", cls->name, what, name);
		if (seen[j])
			return bad(r, err, "%s %s '%s' appears twice", cls->name, what, name);
		seen[j] = true;
		if ((st = read_shape(r, &s, 4, err)) != LN_OK)
			return st;
		if (!shape_is(&s, &dst[j])) {
			char a[96], b[96];
			return bad(r, err, "%s %s '%s' has shape %s, the file has %s", cls->name, what,
			           name, ln_tensor_shape_str(&dst[j], a, sizeof a),
			           save_shape_str(&s, b, sizeof b));
		}
		read_data(r, &dst[j], &s);
	}
	return LN_OK;
}

static ln_status read_module(ln_reader *r, ln_module **out, uint64_t *id, ln_error *err);

/* The wiring of a module record (save.h; none before version 3) into w,
 * its lists in *store (one block from ln_malloc, the caller's to free):
 * at most LN_WIRING_MAX lists, each named once, of at most the entries
 * the bytes left can hold. */
static ln_status read_wiring(ln_reader *r, ln_wiring *w, char names[][STR_MAX],
                             int64_t **store, ln_error *err)
{
	w->nlists = 0;
	*store = NULL;
	if (r->version < 3)
		return LN_OK;
	ln_status st = need(r, 1, err);
	if (st != LN_OK)
		return st;
	unsigned nl = get_u8(r);
	if (nl > LN_WIRING_MAX)
		return bad(r, err, "wiring of %u lists (at most %d)", nl, LN_WIRING_MAX);
	/* first pass: names and sizes, so that one block holds all the lists */
	const unsigned char *start = r->p;
	uint64_t total = 0;
	for (unsigned i = 0; i < nl; i++) {
		if ((st = read_name(r, names[i], "wiring list", err)) != LN_OK ||
		    (st = need(r, 8, err)) != LN_OK)
			return st;
		for (unsigned j = 0; j < i; j++)
			if (strcmp(names[i], names[j]) == 0)
				return bad(r, err, "wiring list '%s' appears twice", names[i]);
		uint64_t n = get_u64(r);
		if (n > left(r) / 8)
			return bad(r, err, "wiring list '%s' of %llu entries, only %zu bytes left",
			           names[i], (unsigned long long)n, left(r));
		r->p += 8 * n;
		total += n;
	}
	r->p = start;
	int64_t *v = ln_malloc((size_t)(total > 0 ? total : 1) * sizeof *v);
	if (!v)
		return ln_fail(err, LN_ENOMEM, "out of memory (wiring of %llu entries)",
		               (unsigned long long)total);
	*store = v;
	for (unsigned i = 0; i < nl; i++) {
		char skip[STR_MAX];
		read_name(r, skip, "wiring list", err);  /* checked above */
		uint64_t n = get_u64(r);
		w->list[i] = (ln_wiring_list){names[i], (int64_t)n, v};
		for (uint64_t j = 0; j < n; j++)
			*v++ = (int64_t)get_u64(r);
	}
	w->nlists = (int)nl;
	return LN_OK;
}

/* The nk children of the module record of m (class `name`), then its
 * wiring, handed to the class's assemble. */
static ln_status read_children(ln_reader *r, ln_module *m, const char *name, size_t nk,
                               ln_error *err)
{
	ln_module **kids = ln_malloc((nk > 0 ? nk : 1) * sizeof *kids);
	if (!kids)
		return ln_fail(err, LN_ENOMEM, "out of memory (%zu children of a %s)", nk, name);
	ln_status st = LN_OK;
	for (size_t i = 0; i < nk && st == LN_OK; i++) {
		ln_save_tag t;
		uint64_t cid;
		if ((st = ln_reader_peek(r, &t, err)) != LN_OK)
			break;
		if (t == LN_SAVE_MODULE) {
			st = read_module(r, &kids[i], &cid, err);
		} else if (t == LN_SAVE_REF) {
			ln_save_tag kind;
			if ((st = ln_read_backref(r, &cid, &kind, err)) == LN_OK && kind != LN_SAVE_MODULE)
				st = bad(r, err, "child %zu of a %s is a %s", i + 1, name,
				         ln_save_tag_name(kind));
			if (st == LN_OK)
				kids[i] = r->obj[cid].ptr;
		} else {
			st = bad(r, err, "child %zu of a %s is a %s", i + 1, name, ln_save_tag_name(t));
		}
	}
	char names[LN_WIRING_MAX][STR_MAX];
	ln_wiring w;
	int64_t *store = NULL;
	if (st == LN_OK)
		st = read_wiring(r, &w, names, &store, err);
	if (st == LN_OK) {
		ln_error e;
		if (nk > INT_MAX)
			st = bad(r, err, "a %s with %zu children", name, nk);
		else if ((st = ln_module_assemble(m, (int)nk, kids, &w, &e)) == LN_ENOMEM)
			ln_fail(err, st, "%s", e.msg);
		else if (st != LN_OK)
			st = bad(r, err, "cannot assemble a %s: %s", name, e.msg);
	}
	ln_free(store);
	ln_free(kids);
	return st;
}

static ln_status read_module(ln_reader *r, ln_module **out, uint64_t *id, ln_error *err)
{
	ln_status st = expect_tag(r, LN_SAVE_MODULE, err);
	if (st != LN_OK || (st = enter_r(r, err)) != LN_OK)
		return st;
	char name[STR_MAX];
	if ((st = read_name(r, name, "module class", err)) != LN_OK)
		return st;
	const ln_module_class *cls = ln_module_class_find(name);
	if (!cls)
		return bad(r, err, "unknown module class '%s'", name);
	if ((st = need(r, 2, err)) != LN_OK)
		return st;
	unsigned training = get_u8(r);
	if (training > 1)
		return bad(r, err, "%s: training flag %u (expected 0 or 1)", name, training);

	/* config, by name into the class's order */
	int want = ln_save_count_names(cls->config_names, LN_MODULE_MAX_CONFIG);
	int nc = (int)get_u8(r);
	int required = want - cls->config_optional;  /* the last ones may be absent */
	if (nc > want || nc < required)
		return bad(r, err, "%s has %d config values, the file has %d", name, want, nc);
	double config[LN_MODULE_MAX_CONFIG];
	memcpy(config, cls->config_defaults, sizeof config);
	unsigned seen = 0;
	for (int i = 0; i < nc; i++) {
		char cname[STR_MAX];
		if ((st = read_name(r, cname, "config", err)) != LN_OK)
			return st;
		int j = name_index(cls->config_names, LN_MODULE_MAX_CONFIG, cname);
		if (j < 0)
			return bad(r, err, "%s has no config value '%s'", name, cname);
		if (seen & (1u << j))
			return bad(r, err, "%s config value '%s' appears twice", name, cname);
		if ((st = need(r, 8, err)) != LN_OK)
			return st;
		seen |= 1u << j;
		config[j] = get_f64(r);
	}
	for (int j = 0; j < required; j++)
		if (!(seen & (1u << j)))
			return bad(r, err, "%s config value '%s' is missing", name, cls->config_names[j]);

	size_t bytes;
	if ((st = skim_tensors(r, &bytes, err)) != LN_OK)
		return st;
	uint64_t myid;
	if ((st = add_object(r, LN_SAVE_MODULE, NULL, &myid, err)) != LN_OK)
		return st;
	ln_module *m;
	if ((st = create_module(r, cls, config, bytes, &m, err)) != LN_OK)
		return st;
	r->obj[myid].ptr = m;  /* the reader's reference */
	m->training = training != 0;
	if ((st = read_module_tensors(r, m, false, err)) != LN_OK ||
	    (st = read_module_tensors(r, m, true, err)) != LN_OK ||
	    (st = need(r, 8, err)) != LN_OK)
		return st;

	uint64_t nk = get_u64(r);
	if (nk > left(r))
		return bad(r, err, "%s with %llu children, only %zu bytes left", name,
		           (unsigned long long)nk, left(r));
	if ((st = read_children(r, m, name, (size_t)nk, err)) != LN_OK)
		return st;
	r->obj[myid].done = true;
	r->depth--;
	*out = m;
	*id = myid;
	return LN_OK;
}

ln_status ln_read_module(ln_reader *r, ln_module **out, uint64_t *id, ln_error *err)
{
	return read_module(r, out, id, err);
}

/* ---- optimizers ----------------------------------------------------------------- */

/* The hyper-parameters of a version-1 record: a kind byte, a flags byte
 * and seven numbers in a fixed order, each given to the description by
 * name when it has that value.  The only place that knows those
 * positions. */
static ln_status read_config_v1(ln_reader *r, ln_optim_config *c, ln_error *err)
{
	static const char *const kinds[] = {"SGD", "Adam", "RMSprop"};
	static const char *const flags[] = {"nesterov", "decoupled", "centered"};
	static const char *const numbers[] = {"lr", "momentum", "weight_decay", "beta1", "beta2",
	                                      "eps", "alpha"};
	ln_status st = need(r, 2 + 7 * 8, err);
	if (st != LN_OK)
		return st;
	unsigned kind = get_u8(r), fl = get_u8(r);
	if (kind >= sizeof kinds / sizeof kinds[0])
		return bad(r, err, "unknown optimizer kind %u", kind);
	if (fl > 7)
		return bad(r, err, "optimizer flags %u (expected 0..7)", fl);
	ln_optim_config_init(c, kinds[kind], NULL);
	for (int i = 0; i < 3; i++)
		if (ln_optim_value_index(c->desc, flags[i]) >= 0)
			ln_optim_config_set(c, flags[i], (fl >> i) & 1, NULL);
	for (int i = 0; i < 7; i++) {
		double v = get_f64(r);
		if (ln_optim_value_index(c->desc, numbers[i]) >= 0)
			ln_optim_config_set(c, numbers[i], v, NULL);
	}
	return LN_OK;
}

/* The hyper-parameters of a record: the description's name, then each
 * value by name (save.h).  A value left out keeps its default. */
static ln_status read_config(ln_reader *r, ln_optim_config *c, ln_error *err)
{
	char name[STR_MAX];
	ln_status st = read_name(r, name, "optimizer", err);
	if (st != LN_OK)
		return st;
	if (ln_optim_config_init(c, name, NULL) != LN_OK)
		return bad(r, err, "unknown optimizer '%s'", name);
	if ((st = need(r, 1, err)) != LN_OK)
		return st;
	int nv = (int)get_u8(r);
	unsigned seen = 0;
	for (int k = 0; k < nv; k++) {
		char vname[STR_MAX];
		if ((st = read_name(r, vname, "hyper-parameter", err)) != LN_OK)
			return st;
		int i = ln_optim_value_index(c->desc, vname);
		if (i < 0)
			return bad(r, err, "%s has no hyper-parameter '%s'", name, vname);
		if (seen & (1u << i))
			return bad(r, err, "%s hyper-parameter '%s' appears twice", name, vname);
		if ((st = need(r, 8, err)) != LN_OK)
			return st;
		seen |= 1u << i;
		ln_optim_config_set(c, vname, get_f64(r), NULL);
	}
	return LN_OK;
}

ln_status ln_read_optim(ln_reader *r, const ln_saved_optim **out, uint64_t *id, ln_error *err)
{
	ln_status st = expect_tag(r, LN_SAVE_OPTIM, err);
	if (st != LN_OK)
		return st;
	ln_optim_config c;
	st = r->version == 1 ? read_config_v1(r, &c, err) : read_config(r, &c, err);
	if (st != LN_OK || (st = need(r, 9, err)) != LN_OK)
		return st;
	int64_t steps = (int64_t)get_u64(r);
	if (steps < 0)
		return bad(r, err, "optimizer step count %lld", (long long)steps);
	ln_error e;
	if (ln_optim_validate(&c, &e) != LN_OK)
		return bad(r, err, "optimizer config: %s", e.msg);
	int ns = (int)get_u8(r);
	if (ns > LN_OPTIM_MAX_STATE)
		return bad(r, err, "%d optimizer state buffers per parameter (at most %d)", ns,
		           LN_OPTIM_MAX_STATE);
	/* each a state tensor of the description, once */
	const char *names[LN_OPTIM_MAX_STATE];
	int ndesc = ln_optim_desc_nstate(c.desc);
	for (int k = 0; k < ns; k++) {
		char sname[STR_MAX];
		if ((st = read_name(r, sname, "optimizer state", err)) != LN_OK)
			return st;
		int j = 0;
		while (j < ndesc && strcmp(c.desc->state[j].name, sname) != 0)
			j++;
		if (j == ndesc)
			return bad(r, err, "%s has no state '%s'", c.desc->name, sname);
		for (int q = 0; q < k; q++)
			if (names[q] == c.desc->state[j].name)
				return bad(r, err, "%s state '%s' appears twice", c.desc->name, sname);
		names[k] = c.desc->state[j].name;
	}
	if ((st = need(r, 8, err)) != LN_OK)
		return st;
	uint64_t n = get_u64(r);
	if (n < 1 || n > left(r) / 9 || n > INT_MAX / (LN_OPTIM_MAX_STATE + 1))
		return bad(r, err, "optimizer over %llu parameters (%zu bytes left)",
		           (unsigned long long)n, left(r));

	ln_saved_optim *s = ln_calloc(1, sizeof *s);
	uint64_t myid;
	if (!s)
		return ln_fail(err, LN_ENOMEM, "out of memory (optimizer record)");
	if ((st = add_object(r, LN_SAVE_OPTIM, s, &myid, err)) != LN_OK) {
		ln_free(s);
		return st;
	}
	/* from here on the reader owns s */
	s->config = c;
	s->steps = steps;
	s->nparams = (int)n;
	s->nstate = ns;
	for (int k = 0; k < ns; k++)
		s->state_name[k] = names[k];
	s->shape = ln_calloc((size_t)n, sizeof *s->shape);
	s->state = ln_calloc((size_t)n * (size_t)(ns ? ns : 1), sizeof *s->state);
	s->owner = ln_calloc((size_t)n, sizeof *s->owner);
	s->owner_index = ln_calloc((size_t)n, sizeof *s->owner_index);
	if (!s->shape || !s->state || !s->owner || !s->owner_index)
		return ln_fail(err, LN_ENOMEM, "out of memory (optimizer record of %llu parameters)",
		               (unsigned long long)n);
	for (int i = 0; i < s->nparams; i++) {
		if ((st = read_shape(r, &s->shape[i], 4 * (size_t)ns, err)) != LN_OK)
			return st;
		for (int k = 0; k < ns; k++) {
			ln_save_shape ks;
			ln_tensor *t = &s->state[i * ns + k];
			if ((st = read_shape(r, &ks, 4, err)) != LN_OK)
				return st;
			if (ks.ndim != s->shape[i].ndim ||
			    memcmp(ks.size, s->shape[i].size, (size_t)ks.ndim * 8) != 0) {
				char a[96], b[96];
				return bad(r, err, "optimizer state '%s' of parameter %d has shape %s, the "
				           "parameter has %s", s->state_name[k], i + 1,
				           save_shape_str(&ks, a, sizeof a),
				           save_shape_str(&s->shape[i], b, sizeof b));
			}
			if ((st = ln_tensor_alloc(t, ks.ndim, ks.size, err)) != LN_OK)
				return st;
			read_data(r, t, &ks);
		}
	}
	r->obj[myid].done = true;
	*out = s;
	*id = myid;
	return LN_OK;
}

/* One binding (save.h): the module that holds parameter i of optimizer
 * record o, and the parameter's index there, into s->owner[i] and
 * s->owner_index[i]; NULL when no module in the file holds it. */
static ln_status read_binding(ln_reader *r, ln_saved_optim *s, uint64_t o, int i, ln_error *err)
{
	ln_status st = need(r, 8, err);
	if (st != LN_OK)
		return st;
	uint64_t owner = get_u64(r);
	s->owner[i] = NULL;
	s->owner_index[i] = 0;
	if (owner == 0 && r->version == 1 && (st = need(r, 1, err)) == LN_OK)
		get_u8(r);  /* version 1: an index follows even without an owner */
	if (owner == 0 || st != LN_OK)
		return st;
	ln_module *m = ln_reader_module(r, owner - 1);
	if (!m)
		return bad(r, err, "parameter %d of optimizer %llu is bound to object %llu, which is "
		           "not a module", i + 1, (unsigned long long)o,
		           (unsigned long long)(owner - 1));
	int index;
	char name[STR_MAX];
	if (r->version == 1) {
		if ((st = need(r, 1, err)) != LN_OK)
			return st;
		index = (int)get_u8(r);
		snprintf(name, sizeof name, "%d", index + 1);
	} else {
		if ((st = read_name(r, name, "parameter", err)) != LN_OK)
			return st;
		index = tensor_index(m, false, name);
	}
	if (index < 0 || index >= m->nparams || !shape_is(&s->shape[i], &m->param[index]))
		return bad(r, err, "parameter %d of optimizer %llu is bound to parameter %s of a %s, "
		           "which does not fit it", i + 1, (unsigned long long)o, name, m->cls->name);
	s->owner[i] = m;
	s->owner_index[i] = index;
	return LN_OK;
}

ln_status ln_reader_finish(ln_reader *r, ln_error *err)
{
	assert(r->depth == 0 && !r->finished);
	ln_status st;
	for (uint64_t o = 0; o < r->nobj; o++) {
		if (r->obj[o].kind != LN_SAVE_OPTIM)
			continue;
		ln_saved_optim *s = r->obj[o].ptr;
		if ((st = need(r, 8, err)) != LN_OK)
			return st;
		uint64_t n = get_u64(r);
		if (n != (uint64_t)s->nparams)
			return bad(r, err, "bindings of optimizer %llu list %llu parameters, it has %d",
			           (unsigned long long)o, (unsigned long long)n, s->nparams);
		s->bound = true;
		for (int i = 0; i < s->nparams; i++) {
			if ((st = read_binding(r, s, o, i, err)) != LN_OK)
				return st;
			if (!s->owner[i])
				s->bound = false;
		}
	}
	if (left(r) != 0)
		return bad(r, err, "%zu unexpected bytes after the last value", left(r));
	r->finished = true;
	return LN_OK;
}

ln_status ln_saved_optim_apply(const ln_saved_optim *s, ln_optim *opt, ln_error *err)
{
	const ln_optim_config *c = ln_optim_get_config(opt);
	const char *who = ln_optim_name(c);
	if (c->desc != s->config.desc)
		return ln_fail(err, LN_EARG, "saved state is for %s, the optimizer is %s",
		               ln_optim_name(&s->config), who);
	if (ln_optim_nparams(opt) != s->nparams)
		return ln_fail(err, LN_EARG, "saved state has %d parameters, the optimizer has %d",
		               s->nparams, ln_optim_nparams(opt));
	for (int i = 0; i < s->nparams; i++)
		if (!shape_is(&s->shape[i], ln_optim_param(opt, i))) {
			char a[96], b[96];
			return ln_fail(err, LN_EARG, "saved parameter %d has shape %s, the optimizer's %s",
			               i + 1, save_shape_str(&s->shape[i], a, sizeof a),
			               ln_tensor_shape_str(ln_optim_param(opt, i), b, sizeof b));
		}
	/* the same state tensors, by name (the record's are distinct) */
	int to[LN_OPTIM_MAX_STATE];
	for (int k = 0; k < s->nstate; k++)
		if ((to[k] = ln_optim_state_index(opt, s->state_name[k])) < 0)
			return ln_fail(err, LN_EARG, "saved state has '%s', the optimizer has no such "
			               "state", s->state_name[k]);
	if (ln_optim_nstate(opt) != s->nstate)
		return ln_fail(err, LN_EARG, "saved state has %d tensors per parameter, the optimizer "
		               "has %d", s->nstate, ln_optim_nstate(opt));
	/* The configuration is validated (and checked against the state the
	 * optimizer was built with) before anything changes. */
	ln_status st = ln_optim_set_config(opt, &s->config, err);
	if (st != LN_OK)
		return st;
	for (int i = 0; i < s->nparams; i++)
		for (int k = 0; k < s->nstate; k++)
			ln_tensor_copy(ln_optim_state(opt, i, to[k]), &s->state[i * s->nstate + k], NULL);
	ln_optim_set_step_count(opt, s->steps, NULL);
	return LN_OK;
}

ln_status ln_saved_optim_build(const ln_saved_optim *s, ln_optim **out, ln_error *err)
{
	*out = NULL;
	if (!s->bound)
		return ln_fail(err, LN_EARG, "the optimizer's parameters are not all in the file");
	ln_optim_entry *ps = ln_malloc((size_t)s->nparams * sizeof *ps);
	if (!ps)
		return ln_fail(err, LN_ENOMEM, "out of memory for %d parameters", s->nparams);
	for (int i = 0; i < s->nparams; i++) {
		ln_module *m = s->owner[i];
		int j = s->owner_index[i];
		ps[i] = (ln_optim_entry){&m->param[j], &m->grad[j], m, j};
	}
	ln_status st = ln_optim_new(out, &s->config, s->nparams, ps, err);
	ln_free(ps);
	if (st == LN_OK && (st = ln_saved_optim_apply(s, *out, err)) != LN_OK) {
		ln_optim_free(*out);
		*out = NULL;
	}
	return st;
}
