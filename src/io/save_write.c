/*
 * save_write.c -- the encoder of the lunet file format (save.h): a writer
 * that encodes values into a growing byte buffer, then adds the bindings
 * of the optimizers, the header and the checksum.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "../nn/layers.h"
#include "save.h"
#include "save_internal.h"

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
	ln_save_put_le(w->buf + w->len, v, 8);
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
		ln_save_floats_to_le(w->buf + w->len, data, numel);
		w->len += numel * sizeof(float);
		return LN_OK;
	}
	int64_t idx[LN_MAX_DIMS] = {0};
	for (size_t e = 0; e < numel; e++) {
		int64_t off = 0;
		for (int d = 0; d < t->ndim; d++)
			off += idx[d] * t->stride[d];
		ln_save_floats_to_le(w->buf + w->len, data + off, 1);
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

ln_status ln_write_backref(ln_writer *w, uint64_t id, ln_error *err)
{
	assert(id < w->nobjects);
	ln_status st = reserve(w, 9, err);
	if (st != LN_OK)
		return st;
	put_u8(w, LN_SAVE_REF);
	put_u64(w, id);
	return LN_OK;
}

/* A section of named tensor bodies (a module's parameters or buffers):
 * u8 n, n x { str name, tensor body }. */
/* m's parameters (or its buffers), each as { str name, tensor body }
 * after a u8 count. */
static ln_status write_named_tensors(ln_writer *w, const ln_module *m, bool buffers,
                                     ln_error *err)
{
	int n = buffers ? m->nbuffers : m->nparams;
	const ln_tensor *t = buffers ? m->buffer : m->param;
	ln_status st = reserve(w, 1, err);
	if (st != LN_OK)
		return st;
	assert(n <= 255);
	put_u8(w, (unsigned)n);
	for (int i = 0; i < n; i++) {
		char buf[LN_PARAM_NAME_MAX];
		const char *name = buffers ? m->cls->buffer_names[i] : ln_module_param_name(m, i, buf);
		if ((st = write_str(w, name, strlen(name), err)) != LN_OK ||
		    (st = write_tensor_body(w, &t[i], err)) != LN_OK)
			return st;
	}
	return LN_OK;
}

/* The wiring of a container (module.h), after its children: u8 n, n x
 * { str name, u64 count, count x i64 }.  n is 0 for every class but
 * those whose children are not a plain list (Graph). */
static ln_status write_wiring(ln_writer *w, const ln_module *m, ln_error *err)
{
	ln_wiring wr = {.nlists = 0};
	if (m->cls->wiring)
		m->cls->wiring(m, &wr);
	assert(wr.nlists >= 0 && wr.nlists <= LN_WIRING_MAX);
	ln_status st = reserve(w, 1, err);
	if (st != LN_OK)
		return st;
	put_u8(w, (unsigned)wr.nlists);
	for (int i = 0; i < wr.nlists; i++) {
		const ln_wiring_list *l = &wr.list[i];
		if ((st = write_str(w, l->name, strlen(l->name), err)) != LN_OK ||
		    (st = reserve(w, 8 + 8 * (size_t)l->n, err)) != LN_OK)
			return st;
		put_u64(w, (uint64_t)l->n);
		for (int64_t j = 0; j < l->n; j++)
			put_u64(w, (uint64_t)l->v[j]);
	}
	return LN_OK;
}

/* `where` names m for messages: "" at the top, else "layer 2.3" or
 * "node 4, layer 2". */
static ln_status write_module(ln_writer *w, const ln_module *m, uint64_t *id, const char *where,
                              ln_error *err)
{
	uint64_t prev;
	if (seen_find(&w->modules, m, &prev)) {
		if (id)
			*id = prev;
		return ln_write_backref(w, prev, err);
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
	assert(m->nconfig <= ln_save_count_names(cls->config_names, LN_MODULE_MAX_CONFIG));
	put_u8(w, (unsigned)m->nconfig);
	for (int i = 0; i < m->nconfig; i++) {
		const char *name = cls->config_names[i];
		if ((st = write_str(w, name, strlen(name), err)) != LN_OK ||
		    (st = reserve(w, 8, err)) != LN_OK)
			return st;
		put_f64(w, m->config[i]);
	}
	assert(m->nbuffers <= ln_save_count_names(cls->buffer_names, LN_MODULE_MAX_BUFFERS));
	if ((st = write_named_tensors(w, m, false, err)) != LN_OK ||
	    (st = write_named_tensors(w, m, true, err)) != LN_OK)
		return st;
	if ((st = reserve(w, 8, err)) != LN_OK)
		return st;
	put_u64(w, (uint64_t)m->nchildren);
	for (int i = 0; i < m->nchildren; i++) {
		/* "layer 2.3" down Sequentials, "node 4", "layer 2, block" through others */
		char child[256], label[64];
		if (cls->child_label)
			cls->child_label(m, i, label, sizeof label);
		else
			snprintf(label, sizeof label, "layer %d", i + 1);
		if (!*where)
			snprintf(child, sizeof child, "%s", label);
		else if (!cls->child_label && strncmp(where, "layer ", 6) == 0 && !strchr(where, ','))
			snprintf(child, sizeof child, "%s.%d", where, i + 1);
		else
			snprintf(child, sizeof child, "%s, %s", where, label);
		if ((st = write_module(w, m->children[i], NULL, child, err)) != LN_OK)
			return st;
	}
	if ((st = write_wiring(w, m, err)) != LN_OK)
		return st;
	w->depth--;
	return LN_OK;
}

ln_status ln_write_module(ln_writer *w, const ln_module *m, uint64_t *id, ln_error *err)
{
	return write_module(w, m, id, "", err);
}

/* The optimizer's record (save.h, tag 9): its description's name, every
 * hyper-parameter and state tensor by name, its step count. */
ln_status ln_write_optim(ln_writer *w, ln_optim *opt, uint64_t *id, ln_error *err)
{
	uint64_t prev;
	if (seen_find(&w->optims, opt, &prev)) {
		if (id)
			*id = prev;
		return ln_write_backref(w, prev, err);
	}
	const ln_optim_config *c = ln_optim_get_config(opt);
	const ln_optim_desc *d = c->desc;
	int n = ln_optim_nparams(opt), ns = ln_optim_nstate(opt), nv = ln_optim_desc_nvalues(d);
	uint64_t myid = w->nobjects;
	ln_status st = write_tag(w, LN_SAVE_OPTIM, err);
	if (st != LN_OK || (st = seen_add(&w->optims, opt, myid, err)) != LN_OK)
		return st;
	w->nobjects++;
	if (id)
		*id = myid;
	if ((st = write_str(w, d->name, strlen(d->name), err)) != LN_OK ||
	    (st = reserve(w, 1, err)) != LN_OK)
		return st;
	put_u8(w, (unsigned)nv);
	for (int i = 0; i < nv; i++) {
		const char *name = d->values[i].name;
		if ((st = write_str(w, name, strlen(name), err)) != LN_OK ||
		    (st = reserve(w, 8, err)) != LN_OK)
			return st;
		put_f64(w, c->v[i]);
	}
	if ((st = reserve(w, 9, err)) != LN_OK)
		return st;
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

/* The bindings of one optimizer: for each parameter, the module written
 * to w that the optimizer recorded as its owner and the parameter's name
 * there, or 0 when that module is not in the file (or there is none). */
static ln_status write_bindings(ln_writer *w, const ln_optim *opt, ln_error *err)
{
	int n = ln_optim_nparams(opt);
	ln_status st = reserve(w, 8, err);
	if (st != LN_OK)
		return st;
	put_u64(w, (uint64_t)n);
	for (int i = 0; i < n; i++) {
		int index;
		uint64_t id;
		const ln_module *owner = ln_optim_owner(opt, i, &index);
		if (!owner || !seen_find(&w->modules, owner, &id)) {
			if ((st = reserve(w, 8, err)) != LN_OK)
				return st;
			put_u64(w, 0);
			continue;
		}
		char buf[LN_PARAM_NAME_MAX];
		assert(index >= 0 && index < owner->nparams);
		const char *name = ln_module_param_name(owner, index, buf);
		if ((st = reserve(w, 8, err)) != LN_OK)
			return st;
		put_u64(w, id + 1);
		if ((st = write_str(w, name, strlen(name), err)) != LN_OK)
			return st;
	}
	return LN_OK;
}

ln_status ln_writer_finish(ln_writer *w, const void **data, size_t *size, ln_error *err)
{
	assert(w->depth == 0);
	ln_status st;
	for (size_t o = 0; o < w->optims.n; o++)
		if ((st = write_bindings(w, w->optims.v[o].ptr, err)) != LN_OK)
			return st;
	if ((st = reserve(w, LN_SAVE_TRAILER_LEN, err)) != LN_OK)
		return st;
	size_t plen = w->len - LN_SAVE_HEADER_LEN;
	memcpy(w->buf, LN_SAVE_MAGIC, LN_SAVE_MAGIC_LEN);  /* includes the NUL */
	ln_save_put_le(w->buf + 6, LN_SAVE_VERSION, 2);
	ln_save_put_le(w->buf + 8, plen, 8);
	ln_save_put_le(w->buf + w->len, ln_save_crc(w->buf + LN_SAVE_HEADER_LEN, plen), 4);
	w->len += LN_SAVE_TRAILER_LEN;
	w->finished = true;
	*data = w->buf;
	*size = w->len;
	return LN_OK;
}
