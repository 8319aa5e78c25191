/*
 * save.c -- the lunet file format (see save.h for the layout): a writer
 * that encodes values into a growing byte buffer, a reader that decodes
 * them from a file image after checking it whole.  Files are written and
 * read by file.c.
 *
 * The reader trusts nothing: every count and size is checked against the
 * bytes that remain before it is used, in the style of idx.c, and every
 * way a file can be wrong is an LN_EFORMAT value, never an assert.
 */
#include "save.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "../core/alloc.h"
#include "../core/rng.h"
#include "file.h"
#include "../nn/layers.h"

#define STR_MAX LN_SAVE_NAME_MAX

static const char *const tag_names[LN_SAVE_TAG_COUNT] = {
	[LN_SAVE_NIL] = "nil",         [LN_SAVE_FALSE] = "false",    [LN_SAVE_TRUE] = "true",
	[LN_SAVE_NUMBER] = "number",   [LN_SAVE_INTEGER] = "integer", [LN_SAVE_STRING] = "string",
	[LN_SAVE_TABLE] = "table",     [LN_SAVE_TENSOR] = "tensor",  [LN_SAVE_MODULE] = "module",
	[LN_SAVE_OPTIM] = "optimizer", [LN_SAVE_REF] = "ref",
};

const char *ln_save_tag_name(ln_save_tag tag)
{
	return (unsigned)tag < LN_SAVE_TAG_COUNT ? tag_names[tag] : "unknown";
}

/* ==== little-endian encoding ==================================================== */

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_LE 1
#else
#define HOST_LE 0
#endif

/* n floats from src to little-endian bytes at dst, and back. */
static void floats_to_le(unsigned char *dst, const float *src, size_t n)
{
	if (HOST_LE) {
		memcpy(dst, src, n * sizeof(float));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &src[i], 4);
		put_le(dst + 4 * i, u, 4);
	}
}

static void floats_from_le(float *dst, const unsigned char *src, size_t n)
{
	if (HOST_LE) {
		memcpy(dst, src, n * sizeof(float));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)get_le(src + 4 * i, 4);
		memcpy(&dst[i], &u, 4);
	}
}

/* CRC-32 of n bytes, in chunks that fit zlib's uInt. */
static uint32_t crc_of(const unsigned char *p, size_t n)
{
	uLong crc = crc32(0L, Z_NULL, 0);
	while (n > 0) {
		uInt chunk = n > (size_t)1 << 30 ? (uInt)1 << 30 : (uInt)n;
		crc = crc32(crc, p, chunk);
		p += chunk;
		n -= chunk;
	}
	return (uint32_t)crc;
}

/* Number of non-NULL names in a NULL-terminated class list. */
static int count_names(const char *const *names, int max)
{
	int n = 0;
	while (n < max && names[n])
		n++;
	return n;
}

/* ==== writer ======================================================================= */

/* A module or optimizer already written, and its object id. */
typedef struct seen_obj {
	const void *ptr;
	uint64_t id;
} seen_obj;

typedef struct seen_list {
	seen_obj *v;
	size_t n, cap;
} seen_list;

struct ln_writer {
	unsigned char *buf;  /* the file image: header (filled by finish), payload */
	size_t len, cap;
	uint64_t nobjects;
	int depth;
	bool finished;
	seen_list modules;  /* in the order written */
	seen_list optims;
};

static bool seen_find(const seen_list *l, const void *ptr, uint64_t *id)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].ptr == ptr) {
			*id = l->v[i].id;
			return true;
		}
	return false;
}

static ln_status seen_add(seen_list *l, const void *ptr, uint64_t id, ln_error *err)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		seen_obj *v = ln_malloc(cap * sizeof *v);
		if (!v)
			return ln_fail(err, LN_ENOMEM, "out of memory (object list of %zu entries)", cap);
		if (l->n)
			memcpy(v, l->v, l->n * sizeof *v);
		ln_free(l->v);
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (seen_obj){ptr, id};
	return LN_OK;
}

/* Makes room for n more bytes, doubling the buffer. */
static ln_status reserve(ln_writer *w, size_t n, ln_error *err)
{
	assert(!w->finished);
	if (w->cap - w->len >= n)
		return LN_OK;
	if (n > SIZE_MAX / 2 - w->len)
		return ln_fail(err, LN_ENOMEM, "out of memory: the file would exceed %zu bytes",
		               SIZE_MAX / 2);
	size_t need = w->len + n, cap = w->cap;
	while (cap < need)
		cap *= 2;
	unsigned char *b = ln_malloc(cap);
	if (!b)
		return ln_fail(err, LN_ENOMEM, "out of memory growing the file image to %zu bytes", cap);
	memcpy(b, w->buf, w->len);
	ln_free(w->buf);
	w->buf = b;
	w->cap = cap;
	return LN_OK;
}

/* The put_* helpers write into space already reserved. */
static void put_u8(ln_writer *w, unsigned v) { w->buf[w->len++] = (unsigned char)v; }

static void put_u64(ln_writer *w, uint64_t v)
{
	put_le(w->buf + w->len, v, 8);
	w->len += 8;
}

static void put_f64(ln_writer *w, double v)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	put_u64(w, u);
}

static void put_bytes(ln_writer *w, const void *p, size_t n)
{
	if (n)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
}

/* str: u64 length + bytes. */
static ln_status write_str(ln_writer *w, const char *s, size_t len, ln_error *err)
{
	ln_status st = reserve(w, 8 + len, err);
	if (st != LN_OK)
		return st;
	put_u64(w, len);
	put_bytes(w, s, len);
	return LN_OK;
}

static size_t shape_bytes(const ln_tensor *t) { return 1 + 8 * (size_t)t->ndim; }

static void put_shape(ln_writer *w, int ndim, const int64_t *shape)
{
	put_u8(w, (unsigned)ndim);
	for (int d = 0; d < ndim; d++)
		put_u64(w, (uint64_t)shape[d]);
}

/* A tensor body: shape, then the elements in row-major order, walking
 * any strides with an odometer when the tensor is not contiguous. */
static ln_status write_tensor_body(ln_writer *w, const ln_tensor *t, ln_error *err)
{
	if (ln_tensor_is_empty(t))
		return ln_fail(err, LN_EARG, "cannot save an empty tensor");
	assert(t->ndim >= 1 && t->ndim <= LN_MAX_DIMS);
	size_t numel = (size_t)ln_tensor_numel(t);
	if (numel > (SIZE_MAX / 2) / sizeof(float))
		return ln_fail(err, LN_ENOMEM, "out of memory: tensor too large to save");
	ln_status st = reserve(w, shape_bytes(t) + numel * sizeof(float), err);
	if (st != LN_OK)
		return st;
	put_shape(w, t->ndim, t->shape);
	const float *data = ln_tensor_data(t);
	if (ln_tensor_is_contiguous(t)) {
		floats_to_le(w->buf + w->len, data, numel);
		w->len += numel * sizeof(float);
		return LN_OK;
	}
	int64_t idx[LN_MAX_DIMS] = {0};
	for (size_t e = 0; e < numel; e++) {
		int64_t off = 0;
		for (int d = 0; d < t->ndim; d++)
			off += idx[d] * t->stride[d];
		floats_to_le(w->buf + w->len, data + off, 1);
		w->len += sizeof(float);
		for (int d = t->ndim - 1; d >= 0; d--) {
			if (++idx[d] < t->shape[d])
				break;
			idx[d] = 0;
		}
	}
	return LN_OK;
}

ln_status ln_writer_new(ln_writer **out, ln_error *err)
{
	*out = NULL;
	ln_writer *w = ln_calloc(1, sizeof *w);
	if (!w)
		return ln_fail(err, LN_ENOMEM, "out of memory (writer)");
	w->cap = 4096;
	w->buf = ln_malloc(w->cap);
	if (!w->buf) {
		ln_free(w);
		return ln_fail(err, LN_ENOMEM, "out of memory (writer buffer)");
	}
	w->len = LN_SAVE_HEADER_LEN;  /* filled in by finish */
	*out = w;
	return LN_OK;
}

void ln_writer_free(ln_writer *w)
{
	if (!w)
		return;
	ln_free(w->buf);
	ln_free(w->modules.v);
	ln_free(w->optims.v);
	ln_free(w);
}

static ln_status write_tag(ln_writer *w, ln_save_tag tag, ln_error *err)
{
	ln_status st = reserve(w, 1, err);
	if (st == LN_OK)
		put_u8(w, tag);
	return st;
}

ln_status ln_write_nil(ln_writer *w, ln_error *err) { return write_tag(w, LN_SAVE_NIL, err); }

ln_status ln_write_boolean(ln_writer *w, bool v, ln_error *err)
{
	return write_tag(w, v ? LN_SAVE_TRUE : LN_SAVE_FALSE, err);
}

ln_status ln_write_number(ln_writer *w, double v, ln_error *err)
{
	ln_status st = reserve(w, 9, err);
	if (st != LN_OK)
		return st;
	put_u8(w, LN_SAVE_NUMBER);
	put_f64(w, v);
	return LN_OK;
}

ln_status ln_write_integer(ln_writer *w, int64_t v, ln_error *err)
{
	ln_status st = reserve(w, 9, err);
	if (st != LN_OK)
		return st;
	put_u8(w, LN_SAVE_INTEGER);
	put_u64(w, (uint64_t)v);
	return LN_OK;
}

ln_status ln_write_string(ln_writer *w, const char *s, size_t len, ln_error *err)
{
	ln_status st = write_tag(w, LN_SAVE_STRING, err);
	return st != LN_OK ? st : write_str(w, s, len, err);
}

static ln_status enter(ln_writer *w, ln_error *err)
{
	if (w->depth >= LN_SAVE_MAX_DEPTH)
		return ln_fail(err, LN_ERANGE, "nesting deeper than %d levels", LN_SAVE_MAX_DEPTH);
	w->depth++;
	return LN_OK;
}

ln_status ln_write_table_begin(ln_writer *w, uint64_t na, uint64_t *id, ln_error *err)
{
	ln_status st = enter(w, err);
	if (st != LN_OK)
		return st;
	if ((st = reserve(w, 9, err)) != LN_OK)
		return st;
	put_u8(w, LN_SAVE_TABLE);
	put_u64(w, na);
	if (id)
		*id = w->nobjects;
	w->nobjects++;
	return LN_OK;
}

ln_status ln_write_table_hash(ln_writer *w, uint64_t nh, ln_error *err)
{
	ln_status st = reserve(w, 8, err);
	if (st == LN_OK)
		put_u64(w, nh);
	return st;
}

void ln_write_table_end(ln_writer *w)
{
	assert(w->depth > 0);
	w->depth--;
}

ln_status ln_write_tensor(ln_writer *w, const ln_tensor *t, uint64_t *id, ln_error *err)
{
	if (ln_tensor_is_empty(t))
		return ln_fail(err, LN_EARG, "cannot save an empty tensor");
	ln_status st = write_tag(w, LN_SAVE_TENSOR, err);
	if (st != LN_OK || (st = write_tensor_body(w, t, err)) != LN_OK)
		return st;
	if (id)
		*id = w->nobjects;
	w->nobjects++;
	return LN_OK;
}

ln_status ln_write_ref(ln_writer *w, uint64_t id, ln_error *err)
{
	assert(id < w->nobjects);
	ln_status st = reserve(w, 9, err);
	if (st != LN_OK)
		return st;
	put_u8(w, LN_SAVE_REF);
	put_u64(w, id);
	return LN_OK;
}

/* A named tensor body (parameter or buffer). */
static ln_status write_named_tensor(ln_writer *w, const char *name, const ln_tensor *t,
                                    ln_error *err)
{
	ln_status st = write_str(w, name, strlen(name), err);
	return st != LN_OK ? st : write_tensor_body(w, t, err);
}

/* `where` names m for messages: "" at the top, else "layer 2.3". */
static ln_status write_module(ln_writer *w, const ln_module *m, uint64_t *id, const char *where,
                              ln_error *err)
{
	uint64_t prev;
	if (seen_find(&w->modules, m, &prev)) {
		if (id)
			*id = prev;
		return ln_write_ref(w, prev, err);
	}
	const ln_module_class *cls = m->cls;
	if (ln_module_class_find(cls->name) != cls) {
		if (!*where)
			return ln_fail(err, LN_EARG, "a custom module (%s) cannot be saved: only built-in "
			               "modules can", cls->name);
		return ln_fail(err, LN_EARG, "%s is a custom module (%s): only built-in modules can be "
		               "saved", where, cls->name);
	}
	ln_status st = enter(w, err);
	if (st != LN_OK)
		return st;
	uint64_t myid = w->nobjects++;
	if (id)
		*id = myid;
	if ((st = seen_add(&w->modules, m, myid, err)) != LN_OK)
		return st;
	if ((st = write_tag(w, LN_SAVE_MODULE, err)) != LN_OK ||
	    (st = write_str(w, cls->name, strlen(cls->name), err)) != LN_OK ||
	    (st = reserve(w, 2, err)) != LN_OK)
		return st;
	put_u8(w, m->training ? 1 : 0);
	assert(m->nconfig <= count_names(cls->config_names, LN_MODULE_MAX_CONFIG));
	put_u8(w, (unsigned)m->nconfig);
	for (int i = 0; i < m->nconfig; i++) {
		const char *name = cls->config_names[i];
		if ((st = write_str(w, name, strlen(name), err)) != LN_OK ||
		    (st = reserve(w, 8, err)) != LN_OK)
			return st;
		put_f64(w, m->config[i]);
	}
	assert(m->nparams <= count_names(cls->param_names, LN_MODULE_MAX_PARAMS));
	if ((st = reserve(w, 1, err)) != LN_OK)
		return st;
	put_u8(w, (unsigned)m->nparams);
	for (int i = 0; i < m->nparams; i++)
		if ((st = write_named_tensor(w, cls->param_names[i], &m->param[i], err)) != LN_OK)
			return st;
	assert(m->nbuffers <= count_names(cls->buffer_names, LN_MODULE_MAX_BUFFERS));
	if ((st = reserve(w, 1, err)) != LN_OK)
		return st;
	put_u8(w, (unsigned)m->nbuffers);
	for (int i = 0; i < m->nbuffers; i++)
		if ((st = write_named_tensor(w, cls->buffer_names[i], &m->buffer[i], err)) != LN_OK)
			return st;
	if ((st = reserve(w, 8, err)) != LN_OK)
		return st;
	put_u64(w, (uint64_t)m->nchildren);
	for (int i = 0; i < m->nchildren; i++) {
		char child[256];
		snprintf(child, sizeof child, "%s%s%d", *where ? where : "layer ", *where ? "." : "",
		         i + 1);
		if ((st = write_module(w, m->children[i], NULL, child, err)) != LN_OK)
			return st;
	}
	w->depth--;
	return LN_OK;
}

ln_status ln_write_module(ln_writer *w, const ln_module *m, uint64_t *id, ln_error *err)
{
	return write_module(w, m, id, "", err);
}

/* The optimizer's flags byte. */
static unsigned optim_flags(const ln_optim_config *c)
{
	return (c->nesterov ? 1u : 0u) | (c->decoupled ? 2u : 0u) | (c->centered ? 4u : 0u);
}

ln_status ln_write_optim(ln_writer *w, ln_optim *opt, uint64_t *id, ln_error *err)
{
	uint64_t prev;
	if (seen_find(&w->optims, opt, &prev)) {
		if (id)
			*id = prev;
		return ln_write_ref(w, prev, err);
	}
	const ln_optim_config *c = ln_optim_get_config(opt);
	int n = ln_optim_nparams(opt), ns = ln_optim_nstate(opt);
	ln_status st = reserve(w, 1 + 2 + 7 * 8 + 8 + 1, err);
	if (st != LN_OK)
		return st;
	uint64_t myid = w->nobjects++;
	if (id)
		*id = myid;
	if ((st = seen_add(&w->optims, opt, myid, err)) != LN_OK)
		return st;
	put_u8(w, LN_SAVE_OPTIM);
	put_u8(w, (unsigned)c->kind);
	put_u8(w, optim_flags(c));
	const double hp[7] = {c->lr, c->momentum, c->weight_decay, c->beta1, c->beta2, c->eps,
	                      c->alpha};
	for (int i = 0; i < 7; i++)
		put_f64(w, hp[i]);
	put_u64(w, (uint64_t)ln_optim_step_count(opt));
	put_u8(w, (unsigned)ns);
	for (int k = 0; k < ns; k++) {
		const char *name = ln_optim_state_name(opt, k);
		if ((st = write_str(w, name, strlen(name), err)) != LN_OK)
			return st;
	}
	if ((st = reserve(w, 8, err)) != LN_OK)
		return st;
	put_u64(w, (uint64_t)n);
	for (int i = 0; i < n; i++) {
		const ln_tensor *p = ln_optim_param(opt, i);
		if ((st = reserve(w, shape_bytes(p), err)) != LN_OK)
			return st;
		put_shape(w, p->ndim, p->shape);
		for (int k = 0; k < ns; k++)
			if ((st = write_tensor_body(w, ln_optim_state(opt, i, k), err)) != LN_OK)
				return st;
	}
	return LN_OK;
}

/* Same memory and shape: the optimizer's view is of this tensor. */
static bool same_view(const ln_tensor *a, const ln_tensor *b)
{
	return a->storage == b->storage && a->offset == b->offset && ln_tensor_same_shape(a, b);
}

/* The module written to w holding parameter p with gradient g: its id and
 * the parameter's index; false if none. */
static bool find_owner(const ln_writer *w, const ln_tensor *p, const ln_tensor *g, uint64_t *id,
                       int *index)
{
	for (size_t i = 0; i < w->modules.n; i++) {
		const ln_module *m = w->modules.v[i].ptr;
		for (int j = 0; j < m->nparams; j++)
			if (same_view(&m->param[j], p) && same_view(&m->grad[j], g)) {
				*id = w->modules.v[i].id;
				*index = j;
				return true;
			}
	}
	return false;
}

ln_status ln_writer_finish(ln_writer *w, const void **data, size_t *size, ln_error *err)
{
	assert(w->depth == 0);
	ln_status st;
	for (size_t o = 0; o < w->optims.n; o++) {
		ln_optim *opt = (ln_optim *)w->optims.v[o].ptr;
		int n = ln_optim_nparams(opt);
		if ((st = reserve(w, 8 + 9 * (size_t)n, err)) != LN_OK)
			return st;
		put_u64(w, (uint64_t)n);
		for (int i = 0; i < n; i++) {
			uint64_t id;
			int index;
			if (find_owner(w, ln_optim_param(opt, i), ln_optim_grad(opt, i), &id, &index)) {
				put_u64(w, id + 1);
				put_u8(w, (unsigned)index);
			} else {
				put_u64(w, 0);
				put_u8(w, 0);
			}
		}
	}
	if ((st = reserve(w, LN_SAVE_TRAILER_LEN, err)) != LN_OK)
		return st;
	size_t plen = w->len - LN_SAVE_HEADER_LEN;
	memcpy(w->buf, LN_SAVE_MAGIC, LN_SAVE_MAGIC_LEN);  /* includes the NUL */
	put_le(w->buf + 6, LN_SAVE_VERSION, 2);
	put_le(w->buf + 8, plen, 8);
	put_le(w->buf + w->len, crc_of(w->buf + LN_SAVE_HEADER_LEN, plen), 4);
	w->len += LN_SAVE_TRAILER_LEN;
	w->finished = true;
	*data = w->buf;
	*size = w->len;
	return LN_OK;
}

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
	uint64_t v = get_le(r->p, 8);
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
	unsigned version = (unsigned)get_le(b + 6, 2);
	if (version == 0)
		return ln_fail(err, LN_EFORMAT, "invalid format version 0 (file corrupted)");
	if (version > LN_SAVE_VERSION)
		return ln_fail(err, LN_EFORMAT, "format version %u is newer than this lunet (%d)",
		               version, LN_SAVE_VERSION);
	uint64_t plen = get_le(b + 8, 8);
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
	uint32_t want = (uint32_t)get_le(payload + plen, 4);
	if (crc_of(payload, (size_t)plen) != want)
		return ln_fail(err, LN_EFORMAT, "checksum mismatch (file corrupted)");
	ln_reader *r = ln_calloc(1, sizeof *r);
	if (!r)
		return ln_fail(err, LN_ENOMEM, "out of memory (reader)");
	r->file = b;
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
		return bad(r, err, "expected a %s, found a %s", tag_names[want], tag_names[t]);
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
		           tag_names[t]);
	}
}

ln_status ln_read_key(ln_reader *r, ln_save_atom *out, ln_error *err)
{
	ln_save_tag t;
	ln_status st = ln_reader_peek(r, &t, err);
	if (st != LN_OK)
		return st;
	if (t == LN_SAVE_NIL || t > LN_SAVE_STRING)
		return bad(r, err, "a table key cannot be a %s", tag_names[t]);
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
	floats_from_le(ln_tensor_data(dst), r->p, n);
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

ln_status ln_read_ref(ln_reader *r, uint64_t *id, ln_save_tag *kind, ln_error *err)
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

/* Skims the parameter and buffer sections that follow the cursor without
 * consuming them: validates their layout and finds the largest tensor, in
 * bytes.  The cursor is restored. */
static ln_status skim_tensors(ln_reader *r, size_t *largest, ln_error *err)
{
	const unsigned char *start = r->p;
	ln_status st = LN_OK;
	*largest = 0;
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
			size_t bytes = (size_t)shape_numel(&s) * 4;
			if (bytes > *largest)
				*largest = bytes;
			r->p += bytes;  /* read_shape checked that it is there */
		}
	}
	if (st == LN_OK)
		r->p = start;
	return st;
}

/* Builds a module of class cls from config, under an allocation cap of a
 * few times its largest saved tensor (a hostile config cannot make create
 * allocate what the file does not pay for) and without disturbing the rng
 * (create draws the initial weights, which the saved ones replace). */
static ln_status create_module(ln_reader *r, const ln_module_class *cls, const double *config,
                               size_t largest, ln_module **out, ln_error *err)
{
	size_t limit = ln_alloc_limit();
	size_t cap = limit <= 65536 || largest > (limit - 65536) / 8 ? limit : 8 * largest + 65536;
	uint64_t rng[4];
	ln_rng_get_state(ln_rng_global(), rng);
	ln_alloc_set_limit(cap);
	ln_error e;
	ln_status st = ln_module_create(out, cls, NULL, config, &e);
	ln_alloc_set_limit(limit);
	ln_rng_set_state(ln_rng_global(), rng);
	if (st == LN_ENOMEM)
		return ln_fail(err, LN_ENOMEM, "out of memory building a %s (or its saved config asks "
		               "for more memory than its saved tensors account for)", cls->name);
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
	const char *const *names = buffers ? cls->buffer_names : cls->param_names;
	int have = buffers ? m->nbuffers : m->nparams;
	ln_tensor *dst = buffers ? m->buffer : m->param;
	ln_status st = need(r, 1, err);
	if (st != LN_OK)
		return st;
	int n = (int)get_u8(r);
	if (n != have)
		return bad(r, err, "%s has %d %ss, the file has %d", cls->name, have, what, n);
	unsigned seen = 0;
	for (int i = 0; i < n; i++) {
		char name[STR_MAX];
		ln_save_shape s;
		if ((st = read_name(r, name, what, err)) != LN_OK)
			return st;
		int j = name_index(names, have, name);
		if (j < 0)
			return bad(r, err, "%s has no %s '%s'", cls->name, what, name);
		if (seen & (1u << j))
			return bad(r, err, "%s %s '%s' appears twice", cls->name, what, name);
		seen |= 1u << j;
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
	int want = count_names(cls->config_names, LN_MODULE_MAX_CONFIG);
	int nc = (int)get_u8(r);
	if (nc != want)
		return bad(r, err, "%s has %d config values, the file has %d", name, want, nc);
	double config[LN_MODULE_MAX_CONFIG] = {0};
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

	size_t largest;
	if ((st = skim_tensors(r, &largest, err)) != LN_OK)
		return st;
	uint64_t myid;
	if ((st = add_object(r, LN_SAVE_MODULE, NULL, &myid, err)) != LN_OK)
		return st;
	ln_module *m;
	if ((st = create_module(r, cls, config, largest, &m, err)) != LN_OK)
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
	for (uint64_t i = 0; i < nk; i++) {
		ln_save_tag t;
		ln_module *child;
		uint64_t cid;
		if ((st = ln_reader_peek(r, &t, err)) != LN_OK)
			return st;
		if (t == LN_SAVE_MODULE) {
			if ((st = read_module(r, &child, &cid, err)) != LN_OK)
				return st;
		} else if (t == LN_SAVE_REF) {
			ln_save_tag kind;
			if ((st = ln_read_ref(r, &cid, &kind, err)) != LN_OK)
				return st;
			if (kind != LN_SAVE_MODULE)
				return bad(r, err, "child %llu of a %s is a %s", (unsigned long long)i + 1,
				           name, tag_names[kind]);
			child = r->obj[cid].ptr;
		} else {
			return bad(r, err, "child %llu of a %s is a %s", (unsigned long long)i + 1, name,
			           tag_names[t]);
		}
		ln_error e;
		if ((st = ln_sequential_add(m, child, &e)) != LN_OK) {
			if (st == LN_ENOMEM)
				return ln_fail(err, st, "%s", e.msg);
			return bad(r, err, "cannot add child %llu to a %s: %s", (unsigned long long)i + 1,
			           name, e.msg);
		}
	}
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

ln_status ln_read_optim(ln_reader *r, const ln_saved_optim **out, uint64_t *id, ln_error *err)
{
	ln_status st = expect_tag(r, LN_SAVE_OPTIM, err);
	if (st != LN_OK || (st = need(r, 2 + 7 * 8 + 8 + 1, err)) != LN_OK)
		return st;
	ln_optim_config c;
	memset(&c, 0, sizeof c);
	unsigned kind = get_u8(r), flags = get_u8(r);
	if (kind >= LN_OPTIM_KIND_COUNT)
		return bad(r, err, "unknown optimizer kind %u", kind);
	if (flags > 7)
		return bad(r, err, "optimizer flags %u (expected 0..7)", flags);
	c.kind = (ln_optim_kind)kind;
	c.nesterov = flags & 1;
	c.decoupled = (flags & 2) != 0;
	c.centered = (flags & 4) != 0;
	double *hp[7] = {&c.lr, &c.momentum, &c.weight_decay, &c.beta1, &c.beta2, &c.eps, &c.alpha};
	for (int i = 0; i < 7; i++)
		*hp[i] = get_f64(r);
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
	char names[LN_OPTIM_MAX_STATE][STR_MAX];
	for (int k = 0; k < ns; k++)
		if ((st = read_name(r, names[k], "optimizer state", err)) != LN_OK)
			return st;
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
		memcpy(s->state_name[k], names[k], STR_MAX);
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
		if ((st = need(r, 9 * (size_t)n, err)) != LN_OK)
			return st;
		s->bound = true;
		for (int i = 0; i < s->nparams; i++) {
			uint64_t owner = get_u64(r);
			unsigned index = get_u8(r);
			s->owner[i] = NULL;
			s->owner_index[i] = 0;
			if (owner == 0) {
				s->bound = false;
				continue;
			}
			ln_module *m = ln_reader_module(r, owner - 1);
			if (!m)
				return bad(r, err, "parameter %d of optimizer %llu is bound to object %llu, "
				           "which is not a module", i + 1, (unsigned long long)o,
				           (unsigned long long)(owner - 1));
			if ((int)index >= m->nparams || !shape_is(&s->shape[i], &m->param[index]))
				return bad(r, err, "parameter %d of optimizer %llu is bound to parameter %u "
				           "of a %s, which does not fit it", i + 1, (unsigned long long)o,
				           index + 1, m->cls->name);
			s->owner[i] = m;
			s->owner_index[i] = (int)index;
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
	if (c->kind != s->config.kind)
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
	if (ln_optim_nstate(opt) != s->nstate)
		return ln_fail(err, LN_EARG, "saved state has %d buffers per parameter, the optimizer "
		               "has %d", s->nstate, ln_optim_nstate(opt));
	for (int k = 0; k < s->nstate; k++)
		if (strcmp(ln_optim_state_name(opt, k), s->state_name[k]) != 0)
			return ln_fail(err, LN_EARG, "saved state buffer %d is '%s', the optimizer's is "
			               "'%s'", k + 1, s->state_name[k], ln_optim_state_name(opt, k));
	/* The configuration is validated (and checked against the state the
	 * optimizer was built with) before anything changes. */
	ln_status st = ln_optim_set_config(opt, &s->config, err);
	if (st != LN_OK)
		return st;
	for (int i = 0; i < s->nparams; i++)
		for (int k = 0; k < s->nstate; k++)
			ln_tensor_copy(ln_optim_state(opt, i, k), &s->state[i * s->nstate + k], NULL);
	ln_optim_set_step_count(opt, s->steps, NULL);
	return LN_OK;
}

/* ==== convenience ===================================================================== */

ln_status ln_save_module(const char *path, const ln_module *m, ln_error *err)
{
	ln_writer *w;
	const void *data;
	size_t size;
	ln_status st = ln_writer_new(&w, err);
	if (st != LN_OK)
		return st;
	ln_error e;
	if ((st = ln_write_module(w, m, NULL, &e)) == LN_OK &&
	    (st = ln_writer_finish(w, &data, &size, &e)) == LN_OK)
		st = ln_file_write_atomic(path, data, size, err);
	else
		ln_fail(err, st, "%s: %s", path, e.msg);
	ln_writer_free(w);
	return st;
}

ln_status ln_load_module(const char *path, ln_module **out, ln_error *err)
{
	*out = NULL;
	void *data;
	size_t size;
	ln_status st = ln_file_read(path, &data, &size, err);
	if (st != LN_OK)
		return st;
	ln_reader *r = NULL;
	ln_module *m = NULL;
	uint64_t id;
	ln_save_tag tag;
	ln_error e;
	if ((st = ln_reader_new(&r, data, size, &e)) == LN_OK &&
	    (st = ln_reader_peek(r, &tag, &e)) == LN_OK) {
		if (tag != LN_SAVE_MODULE)
			st = ln_fail(&e, LN_EFORMAT, "the root value is not a module (it is: %s)", tag_names[tag]);
		else if ((st = ln_read_module(r, &m, &id, &e)) == LN_OK &&
		         (st = ln_reader_finish(r, &e)) == LN_OK) {
			ln_module_retain(m);
			*out = m;
		}
	}
	if (st != LN_OK)
		ln_fail(err, st, "%s: %s", path, e.msg);
	ln_reader_free(r);
	ln_free(data);
	return st;
}
