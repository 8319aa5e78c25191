/*
 * test_save.c -- the file format of io/save.c: round trips of values,
 * tensors, modules and optimizers; every truncation of a valid file and
 * every flipped byte fails cleanly; hand-made hostile payloads (with a
 * valid checksum, so that the parser itself is reached) fail with the
 * reason and without large allocations; ENOMEM at every allocation leaks
 * nothing; file writes are atomic.
 *
 * Files go to a fresh temporary directory made by the test.
 */
#define _DEFAULT_SOURCE  /* mkdtemp */

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "io/file.h"
#include "io/save.h"
#include "nn/conv.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "testutil.h"

static char tmpdir[256];

static const char *tpath(const char *name)
{
	static char buf[2][512];
	static int which;
	which ^= 1;
	snprintf(buf[which], sizeof buf[which], "%s/%s", tmpdir, name);
	return buf[which];
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lunet_test_save_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	DIR *d = opendir(tmpdir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				remove(tpath(e->d_name));
		closedir(d);
	}
	rmdir(tmpdir);
	return 0;
}

/* Fails the test with the message unless st is LN_OK. */
static void ok(ln_status st, const ln_error *err)
{
	if (st != LN_OK)
		fail_msg("%s: %s", ln_status_name(st), err->msg);
}

static void expect_msg(const ln_error *err, const char *want)
{
	if (!strstr(err->msg, want))
		fail_msg("message \"%s\" lacks \"%s\"", err->msg, want);
}

static uint64_t live_bytes(void)
{
	ln_alloc_stats s;
	ln_alloc_get_stats(&s);
	return s.bytes_live;
}

/* ---- building files by hand ---------------------------------------------------- */

typedef struct bytes {
	unsigned char b[8192];
	size_t n;
} bytes;

static void b_u8(bytes *p, unsigned v) { p->b[p->n++] = (unsigned char)v; }

static void b_u64(bytes *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b_u8(p, (unsigned)(v >> (8 * i)) & 0xff);
}

static void b_f64(bytes *p, double v)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	b_u64(p, u);
}

static void b_f32(bytes *p, float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	for (int i = 0; i < 4; i++)
		b_u8(p, (u >> (8 * i)) & 0xff);
}

static void b_str(bytes *p, const char *s)
{
	b_u64(p, strlen(s));
	memcpy(p->b + p->n, s, strlen(s));
	p->n += strlen(s);
}

/* A module record with no config, parameters or buffers (save.h, tag 8):
 * tag, class name, training 1, nc 0, np 0, nb 0, then nk children, whose
 * records the caller appends, then the wiring (b_wiring_none). */
static void b_bare_module(bytes *p, const char *cls, uint64_t nchildren)
{
	b_u8(p, LN_SAVE_MODULE);
	b_str(p, cls);
	b_u8(p, 1);
	b_u8(p, 0);
	b_u8(p, 0);
	b_u8(p, 0);
	b_u64(p, nchildren);
}

/* The end of a module record: a wiring of no lists. */
static void b_wiring_none(bytes *p) { b_u8(p, 0); }

/* A Linear record without bias (tag 8): config nin, nout, bias 0, then
 * its weight saved with shape {w0,w1} (whatever the config says), every
 * element v, no buffers, no children. */
static void b_linear(bytes *p, double nin, double nout, uint64_t w0, uint64_t w1, float v)
{
	b_u8(p, LN_SAVE_MODULE);
	b_str(p, "Linear");
	b_u8(p, 1);
	b_u8(p, 3);
	b_str(p, "nin");
	b_f64(p, nin);
	b_str(p, "nout");
	b_f64(p, nout);
	b_str(p, "bias");
	b_f64(p, 0);
	b_u8(p, 1);
	b_str(p, "weight");
	b_u8(p, 2);
	b_u64(p, w0);
	b_u64(p, w1);
	for (uint64_t i = 0; i < w0 * w1; i++)
		b_f32(p, v);
	b_u8(p, 0);
	b_u64(p, 0);
	b_u8(p, 0);  /* no wiring */
}

/* A complete file image (header, payload, CRC) around a payload, in a
 * malloc'd buffer. */
static unsigned char *wrap(const bytes *payload, size_t *size, unsigned version)
{
	size_t n = 16 + payload->n + 4;
	unsigned char *f = malloc(n);
	assert_non_null(f);
	memcpy(f, "LUNET\0", 6);
	f[6] = version & 0xff;
	f[7] = version >> 8;
	for (int i = 0; i < 8; i++)
		f[8 + i] = (unsigned char)((uint64_t)payload->n >> (8 * i));
	memcpy(f + 16, payload->b, payload->n);
	uint32_t crc = (uint32_t)crc32(0L, payload->b, (uInt)payload->n);
	for (int i = 0; i < 4; i++)
		f[16 + payload->n + i] = (unsigned char)(crc >> (8 * i));
	*size = n;
	return f;
}

/* ---- a generic decoder: reads any value (as lunet.load does) ------------------- */

static ln_status walk(ln_reader *r, ln_error *err)
{
	ln_save_tag tag;
	ln_status st = ln_reader_peek(r, &tag, err);
	if (st != LN_OK)
		return st;
	uint64_t id, na, nh;
	switch (tag) {
	case LN_SAVE_TABLE:
		if ((st = ln_read_table_begin(r, &na, &id, err)) != LN_OK)
			return st;
		for (uint64_t i = 0; i < na; i++)
			if ((st = walk(r, err)) != LN_OK)
				return st;
		if ((st = ln_read_table_hash(r, &nh, err)) != LN_OK)
			return st;
		for (uint64_t i = 0; i < nh; i++) {
			ln_save_atom key;
			if ((st = ln_read_key(r, &key, err)) != LN_OK || (st = walk(r, err)) != LN_OK)
				return st;
		}
		ln_read_table_end(r, id);
		return LN_OK;
	case LN_SAVE_TENSOR: {
		ln_tensor t = LN_TENSOR_EMPTY;
		st = ln_read_tensor(r, &t, &id, err);
		ln_tensor_release(&t);
		return st;
	}
	case LN_SAVE_MODULE: {
		ln_module *m;
		return ln_read_module(r, &m, &id, err);
	}
	case LN_SAVE_OPTIM: {
		const ln_saved_optim *s;
		return ln_read_optim(r, &s, &id, err);
	}
	case LN_SAVE_REF: {
		ln_save_tag kind;
		return ln_read_backref(r, &id, &kind, err);
	}
	default: {
		ln_save_atom a;
		return ln_read_atom(r, &a, err);
	}
	}
}

/* Decodes a whole file image; the status of the first failure. */
static ln_status decode(const void *data, size_t size, ln_error *err)
{
	ln_reader *r;
	ln_status st = ln_reader_new(&r, data, size, err);
	if (st != LN_OK)
		return st;
	if ((st = walk(r, err)) == LN_OK)
		st = ln_reader_finish(r, err);
	ln_reader_free(r);
	return st;
}

/* Decodes a hand-made payload; expects LN_EFORMAT with `want` in the
 * message. */
static void expect_bad_payload(const bytes *p, const char *want)
{
	size_t size;
	unsigned char *f = wrap(p, &size, LN_SAVE_VERSION);
	ln_error err;
	uint64_t before = live_bytes();
	ln_status st = decode(f, size, &err);
	free(f);
	if (st != LN_EFORMAT)
		fail_msg("expected LN_EFORMAT containing \"%s\", got %s (%s)", want, ln_status_name(st),
		         st == LN_OK ? "" : err.msg);
	expect_msg(&err, want);
	assert_int_equal(live_bytes(), before);
}

/* ---- models ------------------------------------------------------------------------ */

/* *m after a constructor call st (taken by address: argument evaluation
 * order is unspecified). */
static ln_module *must(ln_status st, ln_module **m, const ln_error *err)
{
	ok(st, err);
	return *m;
}

static void add(ln_module *seq, ln_module *child)
{
	ln_error err;
	ok(ln_sequential_add(seq, child, &err), &err);
	ln_module_release(child);
}

/* Linear(6,16) ReLU Dropout(0.5) Linear(16,4) */
static ln_module *make_mlp(void)
{
	ln_error err;
	ln_module *seq, *m;
	ok(ln_sequential_new(&seq, &err), &err);
	add(seq, must(ln_linear_new(&m, NULL, 6, 16, true, &err), &m, &err));
	add(seq, must(ln_activation_new(&m, "ReLU", 0, &err), &m, &err));
	add(seq, must(ln_dropout_new(&m, 0.5, &err), &m, &err));
	add(seq, must(ln_linear_new(&m, NULL, 16, 4, true, &err), &m, &err));
	return seq;
}

/* Conv2d(1,4,3,pad 1) BatchNorm(4) ReLU MaxPool2d(2) Flatten Linear(64,3)
 * on {N,1,8,8}; BatchNorm's running statistics moved by a few batches. */
static ln_module *make_cnn(void)
{
	ln_error err;
	ln_module *seq, *m;
	ok(ln_sequential_new(&seq, &err), &err);
	add(seq, must(ln_conv2d_new(&m, NULL, 1, 4, 3, 1, 1, true, &err), &m, &err));
	add(seq, must(ln_batchnorm_new(&m, NULL, 4, &err), &m, &err));
	add(seq, must(ln_activation_new(&m, "ReLU", 0, &err), &m, &err));
	add(seq, must(ln_maxpool2d_new(&m, 2, 2, &err), &m, &err));
	add(seq, must(ln_flatten_new(&m, &err), &m, &err));
	add(seq, must(ln_linear_new(&m, NULL, 64, 3, false, &err), &m, &err));
	for (int i = 0; i < 3; i++) {
		ln_tensor x;
		tu_tensor_uniform(&x, 4, (int64_t[]){5, 1, 8, 8}, -2, 3);
		ok(ln_module_forward(seq, &x, &err), &err);
		ln_tensor_release(&x);
	}
	return seq;
}

/* Writes a module alone to an image owned by the writer *w. */
static const void *image_of_module(const ln_module *m, ln_writer **w, size_t *size)
{
	ln_error err;
	const void *data;
	ok(ln_writer_new(w, &err), &err);
	ok(ln_write_module(*w, m, NULL, &err), &err);
	ok(ln_writer_finish(*w, &data, size, &err), &err);
	return data;
}

static void expect_same_tensor(const ln_tensor *a, const ln_tensor *b)
{
	assert_true(ln_tensor_same_shape(a, b));
	assert_true(ln_tensor_is_contiguous(a) && ln_tensor_is_contiguous(b));
	assert_memory_equal(ln_tensor_data(a), ln_tensor_data(b),
	                    (size_t)ln_tensor_numel(a) * sizeof(float));
}

/* Same class, config, training flag, parameters and buffers, recursively. */
static void expect_same_module(const ln_module *a, const ln_module *b)
{
	assert_ptr_equal(a->cls, b->cls);
	assert_int_equal(a->training, b->training);
	assert_int_equal(a->nconfig, b->nconfig);
	for (int i = 0; i < a->nconfig; i++)
		assert_memory_equal(&a->config[i], &b->config[i], sizeof(double));
	assert_int_equal(a->nparams, b->nparams);
	for (int i = 0; i < a->nparams; i++)
		expect_same_tensor(&a->param[i], &b->param[i]);
	assert_int_equal(a->nbuffers, b->nbuffers);
	for (int i = 0; i < a->nbuffers; i++)
		expect_same_tensor(&a->buffer[i], &b->buffer[i]);
	assert_int_equal(a->nchildren, b->nchildren);
	for (int i = 0; i < a->nchildren; i++)
		expect_same_module(a->children[i], b->children[i]);
}

/* Forward of x through a and b gives the same bits. */
static void expect_same_outputs(ln_module *a, ln_module *b, const ln_tensor *x)
{
	ln_error err;
	ok(ln_module_forward(a, x, &err), &err);
	ok(ln_module_forward(b, x, &err), &err);
	expect_same_tensor(&a->output, &b->output);
}

/* ==== tests ============================================================================ */

/* Scalars, strings with NULs, nested tables, refs: each comes back as
 * written, through the reader's calls. */
static void test_values_roundtrip(void **state)
{
	ln_error err;
	ln_writer *w;
	const void *data;
	size_t size;
	uint64_t tid;
	const double numbers[] = {0.1, -0.0, INFINITY, -INFINITY, 5e-324, NAN};
	const char str[] = "a\0b\xff";
	ok(ln_writer_new(&w, &err), &err);
	/* {nil?, true, false, numbers..., INT64_MIN, "a\0b\xff", {}, ref} as
	 * an array of 11, then hash {[1.5]="x", [true]=42} */
	ok(ln_write_table_begin(w, 11, &tid, &err), &err);
	assert_int_equal(tid, 0);
	ok(ln_write_boolean(w, true, &err), &err);
	ok(ln_write_boolean(w, false, &err), &err);
	for (int i = 0; i < 6; i++)
		ok(ln_write_number(w, numbers[i], &err), &err);
	ok(ln_write_integer(w, INT64_MIN, &err), &err);
	ok(ln_write_string(w, str, sizeof str - 1, &err), &err);
	uint64_t inner;
	ok(ln_write_table_begin(w, 0, &inner, &err), &err);
	assert_int_equal(inner, 1);
	ok(ln_write_table_hash(w, 0, &err), &err);
	ln_write_table_end(w);
	ok(ln_write_table_hash(w, 3, &err), &err);
	ok(ln_write_number(w, 1.5, &err), &err);
	ok(ln_write_string(w, "x", 1, &err), &err);
	ok(ln_write_boolean(w, true, &err), &err);
	ok(ln_write_integer(w, 42, &err), &err);
	ok(ln_write_string(w, "same", 4, &err), &err);
	ok(ln_write_backref(w, inner, &err), &err);
	ln_write_table_end(w);
	ok(ln_writer_finish(w, &data, &size, &err), &err);

	const unsigned char *f = data;
	assert_memory_equal(f, "LUNET\0\3\0", 8);

	ln_reader *r;
	ln_save_atom a;
	uint64_t id, na, nh;
	ok(ln_reader_new(&r, data, size, &err), &err);
	ok(ln_read_table_begin(r, &na, &id, &err), &err);
	assert_int_equal(na, 11);
	ok(ln_read_atom(r, &a, &err), &err);
	assert_int_equal(a.tag, LN_SAVE_TRUE);
	assert_true(a.boolean);
	ok(ln_read_atom(r, &a, &err), &err);
	assert_int_equal(a.tag, LN_SAVE_FALSE);
	for (int i = 0; i < 6; i++) {
		ok(ln_read_atom(r, &a, &err), &err);
		assert_int_equal(a.tag, LN_SAVE_NUMBER);
		assert_memory_equal(&a.number, &numbers[i], sizeof(double));
	}
	ok(ln_read_atom(r, &a, &err), &err);
	assert_int_equal(a.tag, LN_SAVE_INTEGER);
	assert_true(a.integer == INT64_MIN);
	ok(ln_read_atom(r, &a, &err), &err);
	assert_int_equal(a.tag, LN_SAVE_STRING);
	assert_int_equal(a.len, 4);
	assert_memory_equal(a.str, str, 4);
	ok(ln_read_table_begin(r, &na, &inner, &err), &err);
	assert_int_equal(na, 0);
	ok(ln_read_table_hash(r, &nh, &err), &err);
	assert_int_equal(nh, 0);
	ln_read_table_end(r, inner);
	ok(ln_read_table_hash(r, &nh, &err), &err);
	assert_int_equal(nh, 3);
	ok(ln_read_key(r, &a, &err), &err);
	assert_true(a.tag == LN_SAVE_NUMBER && a.number == 1.5);
	ok(ln_read_atom(r, &a, &err), &err);
	assert_true(a.tag == LN_SAVE_STRING && a.len == 1 && a.str[0] == 'x');
	ok(ln_read_key(r, &a, &err), &err);
	assert_int_equal(a.tag, LN_SAVE_TRUE);
	ok(ln_read_atom(r, &a, &err), &err);
	assert_true(a.tag == LN_SAVE_INTEGER && a.integer == 42);
	ok(ln_read_key(r, &a, &err), &err);
	ln_save_tag kind;
	ok(ln_read_backref(r, &id, &kind, &err), &err);
	assert_int_equal(id, inner);
	assert_int_equal(kind, LN_SAVE_TABLE);
	ln_read_table_end(r, 0);
	ok(ln_reader_finish(r, &err), &err);
	ln_reader_free(r);
	ln_writer_free(w);
}

/* Tensors, contiguous or strided views, come back bit for bit (NaN
 * payloads, -0, denormals, infinities included), in row-major order. */
static void test_tensor_roundtrip(void **state)
{
	ln_error err;
	ln_tensor a, v = LN_TENSOR_EMPTY, c = LN_TENSOR_EMPTY;
	tu_tensor_uniform(&a, 3, (int64_t[]){3, 4, 5}, -10, 10);
	float *d = ln_tensor_data(&a);
	uint32_t qnan = 0x7fc01234u;
	memcpy(&d[0], &qnan, 4);
	d[1] = -0.0f;
	d[2] = 1e-45f;
	d[3] = INFINITY;
	ok(ln_tensor_narrow(&v, &a, 1, 1, 2, &err), &err);  /* {3,2,5}, not contiguous */
	assert_false(ln_tensor_is_contiguous(&v));
	ok(ln_tensor_clone(&c, &v, &err), &err);

	ln_writer *w;
	const void *data;
	size_t size;
	uint64_t ida, idv;
	ok(ln_writer_new(&w, &err), &err);
	ok(ln_write_table_begin(w, 3, NULL, &err), &err);
	ok(ln_write_tensor(w, &a, &ida, &err), &err);
	ok(ln_write_tensor(w, &v, &idv, &err), &err);
	ok(ln_write_backref(w, ida, &err), &err);
	ok(ln_write_table_hash(w, 0, &err), &err);
	ln_write_table_end(w);
	ok(ln_writer_finish(w, &data, &size, &err), &err);
	assert_int_equal(ida, 1);
	assert_int_equal(idv, 2);
	/* header + table(1+8) + 2 x tensor(1+1+3*8 + 4n) + ref(9) + nh(8) + crc */
	assert_int_equal(size, 16 + 9 + (26 + 4 * 60) + (26 + 4 * 30) + 9 + 8 + 4);

	ln_reader *r;
	uint64_t id, na, nh;
	ln_save_tag kind;
	ln_tensor ra = LN_TENSOR_EMPTY, rv = LN_TENSOR_EMPTY;
	ok(ln_reader_new(&r, data, size, &err), &err);
	ok(ln_read_table_begin(r, &na, &id, &err), &err);
	ok(ln_read_tensor(r, &ra, &id, &err), &err);
	assert_int_equal(id, 1);
	ok(ln_read_tensor(r, &rv, &id, &err), &err);
	ok(ln_read_backref(r, &id, &kind, &err), &err);
	assert_int_equal(id, 1);
	assert_int_equal(kind, LN_SAVE_TENSOR);
	ok(ln_read_table_hash(r, &nh, &err), &err);
	ln_read_table_end(r, 0);
	ok(ln_reader_finish(r, &err), &err);
	expect_same_tensor(&ra, &a);
	expect_same_tensor(&rv, &c);
	ln_reader_free(r);
	ln_writer_free(w);
	ln_tensor_release(&ra);
	ln_tensor_release(&rv);
	ln_tensor_release(&a);
	ln_tensor_release(&v);
	ln_tensor_release(&c);
}

/* An MLP with Dropout and a CNN with Conv2d/BatchNorm (running statistics
 * moved)/MaxPool, through a file: same config, parameters and buffers bit
 * for bit, and the same outputs in evaluate mode; loading draws no random
 * numbers; the training flag of each module comes back. */
static void test_module_roundtrip(void **state)
{
	ln_error err;
	ln_module *(*makers[2])(void) = {make_mlp, make_cnn};
	const int64_t xshape[2][4] = {{7, 6}, {3, 1, 8, 8}};
	for (int k = 0; k < 2; k++) {
		ln_module *m = makers[k]();
		ln_module_set_training(m, false);
		m->children[0]->training = true;  /* per-module flags are kept */
		const char *path = tpath(k ? "cnn.lnt" : "mlp.lnt");
		ok(ln_save_module(path, m, &err), &err);
		uint64_t rng_before[4], rng_after[4];
		ln_rng_get_state(ln_rng_global(), rng_before);
		ln_module *l;
		ok(ln_load_module(path, &l, &err), &err);
		ln_rng_get_state(ln_rng_global(), rng_after);
		assert_memory_equal(rng_before, rng_after, sizeof rng_before);
		expect_same_module(m, l);
		assert_true(l->children[0]->training && !l->children[1]->training);
		ln_module_set_training(m, false);
		ln_module_set_training(l, false);
		ln_tensor x;
		tu_tensor_uniform(&x, k ? 4 : 2, xshape[k], -1, 1);
		expect_same_outputs(m, l, &x);
		ln_tensor_release(&x);
		ln_module_release(l);
		ln_module_release(m);
	}
}

/* Every class of the registry, built from its config by name as the
 * loader builds it, comes back with the same config, parameters and
 * buffers (parameters randomised first, so that defaults cannot pass for
 * saved values). */
static void test_every_registry_class(void **state)
{
	static const struct { const char *name; double v; } values[] = {
		{"nin", 3}, {"nout", 2}, {"bias", 1}, {"p", 0.25}, {"slope", 0.2}, {"cin", 2},
		{"cout", 3}, {"k", 2}, {"stride", 1}, {"padding", 1}, {"n", 3}, {"eps", 1e-3},
		{"momentum", 0.2}, {"dim", 2}, {"d", 4}, {"nhidden", 3}, {"layers", 2},
		{"dropout", 0.25}, {"stateful", 1}, {"nonlinearity", 1}, {"heads", 2}, {"causal", 1},
		{"kw", 3}, {"stride_w", 2}, {"padding_w", 0}, {"dilation", 2},
		{"dilation_w", 1}, {"groups", 1}, {"same", 0}, {"ceil_mode", 1},
		{"count_include_pad", 0},
		{"out_h", 2}, {"out_w", 3},
	};
	int count = ln_module_class_count();
	assert_true(count >= 15);
	for (int c = 0; c < count; c++) {
		const ln_module_class *cls = ln_module_class_at(c);
		double config[LN_MODULE_MAX_CONFIG] = {0};
		for (int i = 0; cls->config_names[i]; i++) {
			bool found = false;
			for (size_t j = 0; j < sizeof values / sizeof values[0]; j++)
				if (strcmp(values[j].name, cls->config_names[i]) == 0) {
					config[i] = values[j].v;
					found = true;
				}
			if (!found)
				fail_msg("%s: no test value for config '%s'", cls->name, cls->config_names[i]);
		}
		ln_error err;
		ln_module *m, *l;
		ok(ln_module_create(&m, cls, NULL, config, &err), &err);
		for (int i = 0; i < m->nparams; i++)
			ln_tensor_uniform(&m->param[i], ln_rng_global(), -1, 1);
		for (int i = 0; i < m->nbuffers; i++)
			ln_tensor_uniform(&m->buffer[i], ln_rng_global(), 0.5f, 2);
		m->training = c % 2 == 0;
		char name[96];
		snprintf(name, sizeof name, "class_%s.lnt", cls->name);
		ok(ln_save_module(tpath(name), m, &err), &err);
		ok(ln_load_module(tpath(name), &l, &err), &err);
		expect_same_module(m, l);
		ln_module_release(l);
		ln_module_release(m);
	}
}

/* A module in two containers is written once and loads as one module. */
static void test_shared_module(void **state)
{
	ln_error err;
	ln_module *a, *b, *lin;
	ok(ln_sequential_new(&a, &err), &err);
	ok(ln_sequential_new(&b, &err), &err);
	ok(ln_linear_new(&lin, NULL, 3, 2, true, &err), &err);
	ok(ln_sequential_add(a, lin, &err), &err);
	ok(ln_sequential_add(b, lin, &err), &err);
	ln_module_release(lin);
	ln_writer *w;
	const void *data;
	size_t size;
	uint64_t ida, idb;
	ok(ln_writer_new(&w, &err), &err);
	ok(ln_write_table_begin(w, 3, NULL, &err), &err);
	ok(ln_write_module(w, a, &ida, &err), &err);
	ok(ln_write_module(w, b, &idb, &err), &err);
	ok(ln_write_module(w, a, NULL, &err), &err);  /* a ref */
	ok(ln_write_table_hash(w, 0, &err), &err);
	ln_write_table_end(w);
	ok(ln_writer_finish(w, &data, &size, &err), &err);
	assert_int_equal(ida, 1);  /* the table is 0, lin is 2 */
	assert_int_equal(idb, 3);

	ln_reader *r;
	ln_module *ra, *rb;
	uint64_t id, na, nh;
	ln_save_tag kind;
	ok(ln_reader_new(&r, data, size, &err), &err);
	ok(ln_read_table_begin(r, &na, &id, &err), &err);
	ok(ln_read_module(r, &ra, &id, &err), &err);
	assert_int_equal(ln_reader_nobjects(r), 3);
	ok(ln_read_module(r, &rb, &id, &err), &err);
	assert_int_equal(id, 3);
	ok(ln_read_backref(r, &id, &kind, &err), &err);
	assert_true(id == 1 && kind == LN_SAVE_MODULE && ln_reader_module(r, id) == ra);
	ok(ln_read_table_hash(r, &nh, &err), &err);
	ln_read_table_end(r, 0);
	ok(ln_reader_finish(r, &err), &err);
	assert_ptr_equal(ra->children[0], rb->children[0]);
	expect_same_module(a, ra);
	ln_reader_free(r);
	ln_writer_free(w);
	ln_module_release(a);
	ln_module_release(b);
}

/* A custom (External) module cannot be saved; the message says where. */
static ln_status ext_fwd(void *ctx, const ln_tensor *x, ln_tensor *out, ln_error *err)
{
	ln_tensor_ref(out, x);
	return LN_OK;
}

static ln_status ext_bwd(void *ctx, const ln_tensor *x, const ln_tensor *gy, ln_tensor *gx,
                         ln_error *err)
{
	ln_tensor_ref(gx, gy);
	return LN_OK;
}

static const ln_external_ops ext_ops = {.forward = ext_fwd, .backward = ext_bwd};

static void test_custom_module_refused(void **state)
{
	ln_error err;
	ln_module *outer, *inner, *m;
	ok(ln_sequential_new(&outer, &err), &err);
	ok(ln_sequential_new(&inner, &err), &err);
	add(outer, must(ln_activation_new(&m, "ReLU", 0, &err), &m, &err));
	add(inner, must(ln_activation_new(&m, "Tanh", 0, &err), &m, &err));
	add(inner, must(ln_external_new(&m, &ext_ops, NULL, &err), &m, &err));
	ok(ln_sequential_add(outer, inner, &err), &err);

	ln_writer *w;
	ok(ln_writer_new(&w, &err), &err);
	assert_int_equal(ln_write_module(w, outer, NULL, &err), LN_EARG);
	expect_msg(&err, "layer 2.2 is a custom module (External): only built-in modules can be saved");
	ln_writer_free(w);
	ok(ln_writer_new(&w, &err), &err);
	assert_int_equal(ln_write_module(w, inner->children[1], NULL, &err), LN_EARG);
	expect_msg(&err, "a custom module (External) cannot be saved");
	ln_writer_free(w);
	assert_int_equal(ln_save_module(tpath("custom.lnt"), inner, &err), LN_EARG);
	expect_msg(&err, "custom.lnt: layer 2 is a custom module");
	assert_int_equal(access(tpath("custom.lnt"), F_OK), -1);
	ln_module_release(inner);
	ln_module_release(outer);
}

/* Every prefix of a valid file fails as truncated (the empty one as not a
 * lunet file); nothing leaks. */
static void test_every_truncation(void **state)
{
	ln_module *m = make_cnn();
	ln_writer *w;
	size_t size;
	const unsigned char *data = image_of_module(m, &w, &size);
	ln_error err;
	ok(decode(data, size, &err), &err);
	uint64_t before = live_bytes();
	for (size_t n = 0; n < size; n++) {
		ln_status st = decode(data, n, &err);
		assert_int_equal(st, LN_EFORMAT);
		expect_msg(&err, n == 0 ? "not a lunet file (empty)" : "truncated");
		assert_int_equal(live_bytes(), before);
	}
	/* one byte too many is corrupt too */
	unsigned char *longer = malloc(size + 1);
	memcpy(longer, data, size);
	longer[size] = 0;
	assert_int_equal(decode(longer, size + 1, &err), LN_EFORMAT);
	expect_msg(&err, "file corrupted");
	free(longer);
	ln_writer_free(w);
	ln_module_release(m);
}

/* Flipping any byte of the payload or checksum is a checksum mismatch;
 * flipping a header byte is some other clean format error. */
static void test_flipped_bytes(void **state)
{
	ln_module *m = make_mlp();
	ln_writer *w;
	size_t size;
	const unsigned char *data = image_of_module(m, &w, &size);
	unsigned char *copy = malloc(size);
	ln_error err;
	for (size_t i = 0; i < size; i++) {
		for (int bit = 0; bit < 8; bit += 7) {
			memcpy(copy, data, size);
			copy[i] ^= (unsigned char)(1u << bit);
			assert_int_equal(decode(copy, size, &err), LN_EFORMAT);
			if (i >= 16)
				expect_msg(&err, "checksum mismatch (file corrupted)");
		}
	}
	free(copy);
	ln_writer_free(w);
	ln_module_release(m);
}

static void test_header_errors(void **state)
{
	ln_error err;
	bytes p = {.n = 0};
	b_u8(&p, LN_SAVE_NIL);
	size_t size;
	unsigned char *f = wrap(&p, &size, 7);
	assert_int_equal(decode(f, size, &err), LN_EFORMAT);
	expect_msg(&err, "format version 7 is newer than this lunet (3)");
	free(f);
	f = wrap(&p, &size, 0);
	assert_int_equal(decode(f, size, &err), LN_EFORMAT);
	expect_msg(&err, "invalid format version 0");
	f[6] = 1;
	ok(decode(f, size, &err), &err);
	free(f);
	const char *foreign[] = {"\x89PNG\r\n\x1a\n....", "LUNAT\0\1\0", "lunet", "L"};
	for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
		size_t n = strlen(foreign[i]) + (i == 1 ? 4 : 0);
		ln_status st = decode(foreign[i], n, &err);
		assert_int_equal(st, LN_EFORMAT);
		expect_msg(&err, i == 3 ? "truncated" : "not a lunet file");
	}
}

/* Payloads with a valid checksum but a broken structure: each fails with
 * its reason, leaks nothing, and allocates nothing large. */
static void test_hostile_payloads(void **state)
{
	bytes p;
#define RESET() (p.n = 0)
	RESET();
	b_u8(&p, 99);
	expect_bad_payload(&p, "unknown value tag 99");

	RESET();
	b_u8(&p, LN_SAVE_TABLE);
	b_u64(&p, (uint64_t)1 << 60);
	expect_bad_payload(&p, "table of 1152921504606846976 values, only 0 bytes left");

	RESET();
	b_u8(&p, LN_SAVE_TABLE);
	b_u64(&p, 0);
	b_u64(&p, UINT64_MAX);
	expect_bad_payload(&p, "table of 18446744073709551615 keys");

	RESET();
	b_u8(&p, LN_SAVE_STRING);
	b_u64(&p, (uint64_t)1 << 62);
	expect_bad_payload(&p, "string of 4611686018427387904 bytes, only 0 left");

	RESET();
	b_u8(&p, LN_SAVE_TENSOR);
	b_u8(&p, 9);
	expect_bad_payload(&p, "tensor of 9 dimensions (expected 1..8)");

	RESET();
	b_u8(&p, LN_SAVE_TENSOR);
	b_u8(&p, 2);
	b_u64(&p, 1u << 20);
	b_u64(&p, 1u << 20);
	b_f32(&p, 1.0f);
	expect_bad_payload(&p, "tensor data runs past the end of the payload");

	RESET();
	b_u8(&p, LN_SAVE_TENSOR);
	b_u8(&p, 2);
	b_u64(&p, 1);
	b_u64(&p, 0);
	b_f32(&p, 1.0f);
	expect_bad_payload(&p, "tensor size 0 in dimension 2");

	RESET();
	b_u8(&p, LN_SAVE_NUMBER);
	b_u8(&p, 0);
	expect_bad_payload(&p, "value runs past the end of the payload (9 bytes needed, 2 left)");

	/* a table holding a ref to itself, a ref to the future */
	RESET();
	b_u8(&p, LN_SAVE_TABLE);
	b_u64(&p, 1);
	b_u8(&p, LN_SAVE_REF);
	b_u64(&p, 0);
	b_u64(&p, 0);
	expect_bad_payload(&p, "reference to object 0, which is not complete (a cycle)");
	RESET();
	b_u8(&p, LN_SAVE_REF);
	b_u64(&p, 5);
	expect_bad_payload(&p, "reference to object 5, but only 0 were read");

	/* keys */
	RESET();
	b_u8(&p, LN_SAVE_TABLE);
	b_u64(&p, 0);
	b_u64(&p, 1);
	b_u8(&p, LN_SAVE_NUMBER);
	b_f64(&p, NAN);
	b_u8(&p, LN_SAVE_TRUE);
	expect_bad_payload(&p, "a table key cannot be NaN");
	RESET();
	b_u8(&p, LN_SAVE_TABLE);
	b_u64(&p, 0);
	b_u64(&p, 1);
	b_u8(&p, LN_SAVE_NIL);
	b_u8(&p, LN_SAVE_TRUE);
	expect_bad_payload(&p, "a table key cannot be a nil");

	/* 200 nested tables */
	RESET();
	for (int i = 0; i < 200; i++) {
		b_u8(&p, LN_SAVE_TABLE);
		b_u64(&p, 1);
	}
	b_u8(&p, LN_SAVE_NIL);
	for (int i = 0; i < 200; i++)
		b_u64(&p, 0);
	expect_bad_payload(&p, "nesting deeper than 128 levels");

	/* something after the root value */
	RESET();
	b_u8(&p, LN_SAVE_NIL);
	b_u8(&p, LN_SAVE_NIL);
	expect_bad_payload(&p, "1 unexpected bytes after the last value");

	/* modules */
	RESET();
	b_u8(&p, LN_SAVE_MODULE);
	b_str(&p, "Nope");
	expect_bad_payload(&p, "unknown module class 'Nope'");

	RESET();
	b_u8(&p, LN_SAVE_MODULE);
	b_str(&p, "Dropout");
	b_u8(&p, 1);
	b_u8(&p, 1);
	b_str(&p, "p");
	b_f64(&p, 1.5);
	b_u8(&p, 0);
	b_u8(&p, 0);
	b_u64(&p, 0);
	expect_bad_payload(&p, "cannot build a Dropout from its saved config: expected a "
	                       "probability p in [0,1), got 1.5");

	RESET();
	b_u8(&p, LN_SAVE_MODULE);
	b_str(&p, "Dropout");
	b_u8(&p, 1);
	b_u8(&p, 1);
	b_str(&p, "q");
	expect_bad_payload(&p, "Dropout has no config value 'q'");

	/* a config entry added later (Conv2d's bias) may be absent; the ones
	 * before it may not */
	RESET();
	b_u8(&p, LN_SAVE_MODULE);
	b_str(&p, "Conv2d");
	b_u8(&p, 1);
	b_u8(&p, 5);
	static const char *const conv_names[] = {"cin", "cout", "k", "stride", "bias"};
	for (int i = 0; i < 5; i++) {
		b_str(&p, conv_names[i]);
		b_f64(&p, 1);
	}
	expect_bad_payload(&p, "Conv2d config value 'padding' is missing");
	RESET();
	b_u8(&p, LN_SAVE_MODULE);
	b_str(&p, "Conv2d");
	b_u8(&p, 1);
	b_u8(&p, 4);
	expect_bad_payload(&p, "Conv2d has 13 config values, the file has 4");

	/* Linear(2,3) whose weight is saved as {2,2} */
	RESET();
	b_linear(&p, 2, 3, 2, 2, 1.0f);
	expect_bad_payload(&p, "Linear parameter 'weight' has shape {3,2}, the file has {2,2}");

	/* a ReLU with a child, a Sequential whose child is a tensor */
	RESET();
	b_bare_module(&p, "ReLU", 1);
	b_bare_module(&p, "ReLU", 0);
	b_wiring_none(&p);
	b_wiring_none(&p);
	expect_bad_payload(&p, "cannot assemble a ReLU: a ReLU has no children");
	RESET();
	b_bare_module(&p, "Sequential", 1);
	b_u8(&p, LN_SAVE_TENSOR);
	expect_bad_payload(&p, "child 1 of a Sequential is a tensor");
#undef RESET
}

/* A Linear whose config claims 8000 x 8000 (256 MB per tensor) with a
 * {1,1} weight saved: building it is refused before anything large is
 * allocated. */
static void test_hostile_config_allocates_little(void **state)
{
	bytes p = {.n = 0};
	b_linear(&p, 8000, 8000, 1, 1, 1.0f);
	size_t size;
	unsigned char *f = wrap(&p, &size, LN_SAVE_VERSION);
	size_t limit = ln_alloc_limit();
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	ln_error err;
	assert_int_equal(decode(f, size, &err), LN_ENOMEM);
	expect_msg(&err, "saved config asks for more memory than its saved tensors account for");
	ln_alloc_get_stats(&after);
	assert_int_equal(ln_alloc_limit(), limit);  /* the cap is lifted again */
	assert_true(after.bytes_peak < before.bytes_live + ((uint64_t)64 << 20) ||
	            after.bytes_peak == before.bytes_peak);
	assert_int_equal(after.bytes_live, before.bytes_live);
	free(f);
}

/* An optimizer saved with its model is bound to the model's parameters;
 * rebuilt over the loaded model it continues exactly as the original. */
static void run_steps(ln_module *m, ln_optim *opt, int steps, uint64_t seed)
{
	ln_error err;
	ln_rng_seed(ln_rng_global(), seed);
	for (int s = 0; s < steps; s++) {
		ln_tensor x, gy;
		tu_tensor_uniform(&x, 2, (int64_t[]){8, 6}, -1, 1);
		ln_optim_zero_grad(opt);
		ok(ln_module_forward(m, &x, &err), &err);
		tu_tensor_uniform(&gy, 2, (int64_t[]){8, 4}, -1, 1);
		ok(ln_module_backward(m, &x, &gy, &err), &err);
		ln_optim_step(opt);
		ln_tensor_release(&x);
		ln_tensor_release(&gy);
	}
}

static ln_optim *optim_over(ln_module *m, const ln_optim_config *cfg)
{
	ln_optim *opt;
	ln_error err;
	ok(ln_optim_new_module(&opt, cfg, m, &err), &err);
	return opt;
}

static void test_optim_roundtrip(void **state)
{
	ln_optim_config cfgs[3];
	cfgs[0] = tu_optim_config("SGD", "lr", 0.05, "momentum", 0.9, "nesterov", 1.0, NULL);
	cfgs[1] = tu_optim_config("Adam", "decoupled", 1.0, "weight_decay", 0.01, NULL);
	cfgs[2] = tu_optim_config("RMSprop", "centered", 1.0, "momentum", 0.5, NULL);
	for (int k = 0; k < 3; k++) {
		ln_error err;
		ln_module *m = make_mlp();
		ln_optim *opt = optim_over(m, &cfgs[k]);
		run_steps(m, opt, 3, 11);

		/* {model = m, opt = opt}, the optimizer first */
		ln_writer *w;
		const void *data;
		size_t size;
		ok(ln_writer_new(&w, &err), &err);
		ok(ln_write_table_begin(w, 0, NULL, &err), &err);
		ok(ln_write_table_hash(w, 2, &err), &err);
		ok(ln_write_string(w, "opt", 3, &err), &err);
		ok(ln_write_optim(w, opt, NULL, &err), &err);
		ok(ln_write_string(w, "model", 5, &err), &err);
		ok(ln_write_module(w, m, NULL, &err), &err);
		ln_write_table_end(w);
		ok(ln_writer_finish(w, &data, &size, &err), &err);

		ln_reader *r;
		uint64_t id, na, nh, oid, mid;
		ln_save_atom key;
		const ln_saved_optim *s;
		ln_module *lm;
		ok(ln_reader_new(&r, data, size, &err), &err);
		ok(ln_read_table_begin(r, &na, &id, &err), &err);
		ok(ln_read_table_hash(r, &nh, &err), &err);
		ok(ln_read_key(r, &key, &err), &err);
		ok(ln_read_optim(r, &s, &oid, &err), &err);
		ok(ln_read_key(r, &key, &err), &err);
		ok(ln_read_module(r, &lm, &mid, &err), &err);
		ln_read_table_end(r, id);
		assert_false(s->bound);  /* not known before the bindings */
		ok(ln_reader_finish(r, &err), &err);
		assert_true(s->bound);
		assert_ptr_equal(ln_reader_optim(r, oid), s);
		assert_int_equal(s->steps, 3);
		assert_int_equal(s->nparams, 4);
		assert_true(s->owner[0] == lm->children[0] && s->owner_index[0] == 0);
		assert_true(s->owner[1] == lm->children[0] && s->owner_index[1] == 1);
		assert_true(s->owner[3] == lm->children[3] && s->owner_index[3] == 1);

		/* rebuild over the loaded model's parameters */
		ln_optim *lopt;
		ok(ln_saved_optim_build(s, &lopt, &err), &err);
		assert_int_equal(ln_optim_step_count(lopt), 3);
		for (int i = 0; i < s->nparams; i++) {
			int index;
			assert_ptr_equal(ln_optim_owner(lopt, i, &index), s->owner[i]);
			assert_int_equal(index, s->owner_index[i]);
		}

		run_steps(m, opt, 4, 99);
		run_steps(lm, lopt, 4, 99);
		expect_same_module(m, lm);
		for (int i = 0; i < s->nparams; i++)
			for (int j = 0; j < ln_optim_nstate(opt); j++)
				expect_same_tensor(ln_optim_state(opt, i, j), ln_optim_state(lopt, i, j));

		ln_optim_free(lopt);
		ln_reader_free(r);
		ln_writer_free(w);
		ln_optim_free(opt);
		ln_module_release(m);
	}
}

/* A tensor body {n} holding v, v+1, ... */
static void b_vector(bytes *p, int n, float v)
{
	b_u8(p, 1);
	b_u64(p, (uint64_t)n);
	for (int i = 0; i < n; i++)
		b_f32(p, v + (float)i);
}

/* An RMSprop record written by hand, its hyper-parameters and its state
 * tensors in another order than the description's and some values left
 * out: everything is matched by name, the missing values take their
 * defaults, and the state goes where its name says. */
static void test_optim_state_by_name(void **state)
{
	bytes p = {.n = 0};
	b_u8(&p, LN_SAVE_OPTIM);
	b_str(&p, "RMSprop");
	b_u8(&p, 3);
	b_str(&p, "centered");
	b_f64(&p, 1);
	b_str(&p, "momentum");
	b_f64(&p, 0.5);
	b_str(&p, "lr");
	b_f64(&p, 0.02);
	b_u64(&p, 4);  /* steps */
	b_u8(&p, 3);
	b_str(&p, "grad_avg");
	b_str(&p, "square_avg");
	b_str(&p, "momentum_buffer");
	b_u64(&p, 1);  /* one parameter of shape {3} */
	b_u8(&p, 1);
	b_u64(&p, 3);
	b_vector(&p, 3, 10);  /* grad_avg */
	b_vector(&p, 3, 20);  /* square_avg */
	b_vector(&p, 3, 30);  /* momentum_buffer */
	b_u64(&p, 1);  /* bindings: no module holds it */
	b_u64(&p, 0);
	size_t size;
	unsigned char *f = wrap(&p, &size, LN_SAVE_VERSION);
	ln_error err;
	ln_reader *r;
	const ln_saved_optim *s;
	uint64_t id;
	ok(ln_reader_new(&r, f, size, &err), &err);
	ok(ln_read_optim(r, &s, &id, &err), &err);
	ok(ln_reader_finish(r, &err), &err);
	assert_false(s->bound);
	assert_string_equal(ln_optim_name(&s->config), "RMSprop");
	double v;
	assert_true(ln_optim_config_get(&s->config, "lr", &v) && v == 0.02);
	assert_true(ln_optim_config_get(&s->config, "alpha", &v) && v == 0.99);  /* default */
	assert_true(ln_optim_config_get(&s->config, "centered", &v) && v == 1);

	ln_tensor w, g;
	tu_tensor(&w, 1, (int64_t[]){3}, NULL);
	tu_tensor(&g, 1, (int64_t[]){3}, NULL);
	ln_optim_config cfg = tu_optim_config("RMSprop", "momentum", 0.9, "centered", 1.0, NULL);
	ln_optim *opt;
	ok(tu_optim_new(&opt, &cfg, 1, &w, &g, &err), &err);
	ok(ln_saved_optim_apply(s, opt, &err), &err);
	assert_int_equal(ln_optim_step_count(opt), 4);
	assert_true(ln_optim_get(opt, "lr", &v) && v == 0.02);
	assert_true(ln_optim_get(opt, "momentum", &v) && v == 0.5);
	static const struct {
		const char *name;
		float first;
	} want[] = {{"square_avg", 20}, {"momentum_buffer", 30}, {"grad_avg", 10}};
	for (int k = 0; k < 3; k++) {
		assert_string_equal(ln_optim_state_name(opt, k), want[k].name);
		const float *d = ln_tensor_data(ln_optim_state(opt, 0, k));
		for (int i = 0; i < 3; i++)
			assert_float_equal(d[i], want[k].first + (float)i, 0);
	}
	ln_optim_free(opt);

	/* an optimizer without one of the saved tensors is refused, unchanged */
	cfg = tu_optim_config("RMSprop", "momentum", 0.9, NULL);
	ok(tu_optim_new(&opt, &cfg, 1, &w, &g, &err), &err);
	assert_int_equal(ln_saved_optim_apply(s, opt, &err), LN_EARG);
	assert_string_equal(err.msg, "saved state has 'grad_avg', the optimizer has no such state");
	assert_int_equal(ln_optim_step_count(opt), 0);
	assert_true(ln_optim_get(opt, "lr", &v) && v == 0.01);
	ln_optim_free(opt);
	ln_reader_free(r);
	free(f);
	ln_tensor_release(&w);
	ln_tensor_release(&g);
}

/* Optimizer records and bindings that are wrong by name. */
static void test_optim_hostile(void **state)
{
	bytes p;
#define RESET() (p.n = 0)
	RESET();
	b_u8(&p, LN_SAVE_OPTIM);
	b_str(&p, "Lion");
	expect_bad_payload(&p, "unknown optimizer 'Lion'");

	RESET();
	b_u8(&p, LN_SAVE_OPTIM);
	b_str(&p, "SGD");
	b_u8(&p, 1);
	b_str(&p, "beta1");
	expect_bad_payload(&p, "SGD has no hyper-parameter 'beta1'");

	RESET();
	b_u8(&p, LN_SAVE_OPTIM);
	b_str(&p, "SGD");
	b_u8(&p, 2);
	b_str(&p, "lr");
	b_f64(&p, 0.1);
	b_str(&p, "lr");
	b_f64(&p, 0.2);
	expect_bad_payload(&p, "SGD hyper-parameter 'lr' appears twice");

	/* SGD's lr has no default: a record without it is refused */
	RESET();
	b_u8(&p, LN_SAVE_OPTIM);
	b_str(&p, "SGD");
	b_u8(&p, 0);
	b_u64(&p, 0);
	b_u8(&p, 0);
	expect_bad_payload(&p, "optimizer config: lr is required: it has no default");

	RESET();
	b_u8(&p, LN_SAVE_OPTIM);
	b_str(&p, "Adam");
	b_u8(&p, 1);
	b_str(&p, "beta2");
	b_f64(&p, 1.5);
	b_u64(&p, 0);
	b_u8(&p, 0);
	expect_bad_payload(&p, "optimizer config: beta2 must be in [0,1), got 1.5");

	RESET();
	b_u8(&p, LN_SAVE_OPTIM);
	b_str(&p, "Adam");
	b_u8(&p, 0);
	b_u64(&p, 0);
	b_u8(&p, 2);
	b_str(&p, "exp_avg");
	b_str(&p, "momentum_buffer");
	expect_bad_payload(&p, "Adam has no state 'momentum_buffer'");

	RESET();
	b_u8(&p, LN_SAVE_OPTIM);
	b_str(&p, "Adam");
	b_u8(&p, 0);
	b_u64(&p, 0);
	b_u8(&p, 2);
	b_str(&p, "exp_avg");
	b_str(&p, "exp_avg");
	expect_bad_payload(&p, "Adam state 'exp_avg' appears twice");

	/* {Linear(1,1) without bias, SGD bound to its "bias"} */
	RESET();
	b_u8(&p, LN_SAVE_TABLE);
	b_u64(&p, 2);
	b_linear(&p, 1, 1, 1, 1, 0.5f);
	b_u8(&p, LN_SAVE_OPTIM);
	b_str(&p, "SGD");
	b_u8(&p, 1);
	b_str(&p, "lr");
	b_f64(&p, 0.1);
	b_u64(&p, 0);
	b_u8(&p, 0);
	b_u64(&p, 1);
	b_u8(&p, 2);
	b_u64(&p, 1);
	b_u64(&p, 1);
	b_u64(&p, 0);  /* no hash part */
	b_u64(&p, 1);  /* bindings */
	b_u64(&p, 2);  /* object 1: the Linear */
	b_str(&p, "bias");
	expect_bad_payload(&p, "parameter 1 of optimizer 2 is bound to parameter bias of a Linear, "
	                       "which does not fit it");
#undef RESET
}

/* Loading changes nothing process-wide: the global generator draws the
 * same numbers as without the load, and the allocation limit stays. */
static void test_load_leaves_process_alone(void **state)
{
	ln_module *m = make_cnn();
	ln_writer *w;
	size_t size;
	const void *data = image_of_module(m, &w, &size);
	ln_rng_seed(ln_rng_global(), 77);
	double want = ln_rng_uniform(ln_rng_global());
	ln_rng_seed(ln_rng_global(), 77);
	size_t limit = ln_alloc_limit();
	ln_error err;
	ok(decode(data, size, &err), &err);
	assert_int_equal(ln_alloc_limit(), limit);
	assert_true(ln_rng_uniform(ln_rng_global()) == want);
	ln_writer_free(w);
	ln_module_release(m);
}

/* An optimizer saved alone is unbound; its state applies to a new
 * optimizer of the same kind, and mismatches are refused unchanged. */
static void test_optim_alone(void **state)
{
	ln_error err;
	ln_module *m = make_mlp();
	ln_optim_config cfg = tu_optim_config("Adam", "lr", 0.01, NULL);
	ln_optim *opt = optim_over(m, &cfg);
	run_steps(m, opt, 2, 5);
	ln_writer *w;
	const void *data;
	size_t size;
	ok(ln_writer_new(&w, &err), &err);
	ok(ln_write_optim(w, opt, NULL, &err), &err);
	ok(ln_writer_finish(w, &data, &size, &err), &err);
	ln_reader *r;
	const ln_saved_optim *s;
	uint64_t id;
	ok(ln_reader_new(&r, data, size, &err), &err);
	ok(ln_read_optim(r, &s, &id, &err), &err);
	ok(ln_reader_finish(r, &err), &err);
	assert_false(s->bound);
	assert_null(s->owner[0]);
	assert_string_equal(s->state_name[0], "exp_avg");
	assert_string_equal(s->state_name[1], "exp_avg_sq");

	ln_optim_config sgd = tu_optim_config("SGD", "lr", 0.1, NULL);
	ln_optim *wrong = optim_over(m, &sgd);
	assert_int_equal(ln_saved_optim_apply(s, wrong, &err), LN_EARG);
	expect_msg(&err, "saved state is for Adam, the optimizer is SGD");
	ln_optim_free(wrong);

	ln_optim_config def = tu_optim_config("Adam", NULL);
	ln_optim *fresh = optim_over(m, &def);
	ok(ln_saved_optim_apply(s, fresh, &err), &err);
	double lr;
	assert_true(ln_optim_get(fresh, "lr", &lr) && lr == 0.01);
	assert_int_equal(ln_optim_step_count(fresh), 2);
	for (int i = 0; i < 4; i++)
		for (int k = 0; k < 2; k++)
			expect_same_tensor(ln_optim_state(fresh, i, k), ln_optim_state(opt, i, k));
	ln_optim_free(fresh);
	ln_reader_free(r);
	ln_writer_free(w);
	ln_optim_free(opt);
	ln_module_release(m);
}

/* Writing nests at most LN_SAVE_MAX_DEPTH levels. */
static void test_write_depth(void **state)
{
	ln_error err;
	ln_writer *w;
	ok(ln_writer_new(&w, &err), &err);
	for (int i = 0; i < LN_SAVE_MAX_DEPTH; i++)
		ok(ln_write_table_begin(w, 1, NULL, &err), &err);
	assert_int_equal(ln_write_table_begin(w, 1, NULL, &err), LN_ERANGE);
	expect_msg(&err, "nesting deeper than 128 levels");
	ln_writer_free(w);
}

/* ENOMEM at every allocation of writing and of reading a checkpoint
 * {model, opt}: reported as LN_ENOMEM, nothing leaks, and the injection
 * eventually runs out (the whole thing succeeds). */
static ln_status write_checkpoint(ln_module *m, ln_optim *opt, const char *path, ln_error *err)
{
	ln_writer *w;
	const void *data;
	size_t size;
	ln_status st = ln_writer_new(&w, err);
	if (st != LN_OK)
		return st;
	if ((st = ln_write_table_begin(w, 2, NULL, err)) == LN_OK &&
	    (st = ln_write_module(w, m, NULL, err)) == LN_OK &&
	    (st = ln_write_optim(w, opt, NULL, err)) == LN_OK &&
	    (st = ln_write_table_hash(w, 0, err)) == LN_OK) {
		ln_write_table_end(w);
		if ((st = ln_writer_finish(w, &data, &size, err)) == LN_OK)
			st = ln_file_write_atomic(path, data, size, err);
	}
	ln_writer_free(w);
	return st;
}

static ln_status read_checkpoint(const char *path, ln_error *err)
{
	void *data;
	size_t size;
	ln_status st = ln_file_read(path, &data, &size, err);
	if (st != LN_OK)
		return st;
	st = decode(data, size, err);
	ln_free(data);
	return st;
}

static void test_enomem(void **state)
{
	ln_module *m = make_cnn();
	ln_optim_config cfg = tu_optim_config("Adam", NULL);
	ln_optim *opt = optim_over(m, &cfg);
	const char *path = tpath("enomem.lnt");
	ln_error err;
	for (int pass = 0; pass < 2; pass++) {
		int n;
		for (n = 1; n < 10000; n++) {
			uint64_t before = live_bytes();
			ln_alloc_fail_nth(n);
			ln_status st = pass == 0 ? write_checkpoint(m, opt, path, &err)
			                         : read_checkpoint(path, &err);
			ln_alloc_fail_nth(0);
			assert_int_equal(live_bytes(), before);
			if (st == LN_OK)
				break;
			if (st != LN_ENOMEM)
				fail_msg("pass %d, allocation %d: %s: %s", pass, n, ln_status_name(st), err.msg);
		}
		assert_true(n > 3 && n < 10000);
	}
	ln_optim_free(opt);
	ln_module_release(m);
}

/* ---- files ---------------------------------------------------------------------- */

static int count_temp_files(const char *prefix)
{
	DIR *d = opendir(tmpdir);
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	char want[300];
	snprintf(want, sizeof want, "%s.tmp.", prefix);
	while ((e = readdir(d)))
		if (strncmp(e->d_name, want, strlen(want)) == 0)
			n++;
	closedir(d);
	return n;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void expect_text(const char *path, const char *text)
{
	char buf[256] = {0};
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	assert_int_equal(n, strlen(text));
	assert_string_equal(buf, text);
}

static void test_atomic_write(void **state)
{
	ln_error err;
	static unsigned char big[100000];
	/* a directory that does not exist */
	char path[600];
	snprintf(path, sizeof path, "%s/no/such/dir/x.lnt", tmpdir);
	assert_int_equal(ln_file_write_atomic(path, "abc", 3, &err), LN_EIO);
	expect_msg(&err, path);
	expect_msg(&err, "No such file or directory");

	/* a write that fails half way (file size limit): the old file stays,
	 * the temporary one is gone */
	const char *keep = tpath("keep.lnt");
	write_text(keep, "old contents");
	struct rlimit old, small = {4096, 4096};
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small.rlim_max = old.rlim_max;
	void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	ln_status st = ln_file_write_atomic(keep, big, sizeof big, &err);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, prev);
	assert_int_equal(st, LN_EIO);
	expect_msg(&err, "keep.lnt: cannot write: File too large");
	expect_text(keep, "old contents");
	assert_int_equal(count_temp_files("keep.lnt"), 0);

	/* rename onto a non-empty directory fails: temporary file removed */
	const char *dir = tpath("adir");
	assert_int_equal(mkdir(dir, 0777), 0);
	char inside[600];
	snprintf(inside, sizeof inside, "%s/f", dir);
	write_text(inside, "x");
	assert_int_equal(ln_file_write_atomic(dir, "abc", 3, &err), LN_EIO);
	expect_msg(&err, "cannot rename the temporary file over it");
	assert_int_equal(count_temp_files("adir"), 0);
	remove(inside);
	rmdir(dir);

	/* success replaces the old file */
	ok(ln_file_write_atomic(keep, "new", 3, &err), &err);
	expect_text(keep, "new");
	assert_int_equal(count_temp_files("keep.lnt"), 0);

	/* the temporary file of a writer that was killed (its process is
	 * gone) is removed by the next write; one of a live process stays */
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0)
		_exit(0);
	assert_int_equal(waitpid(child, NULL, 0), child);
	char stale[700], live[700];
	snprintf(stale, sizeof stale, "%s.tmp.%ld", keep, (long)child);
	snprintf(live, sizeof live, "%s.tmp.1", keep);
	write_text(stale, "half");
	write_text(live, "busy");
	assert_int_equal(count_temp_files("keep.lnt"), 2);
	ok(ln_file_write_atomic(keep, "newer", 5, &err), &err);
	expect_text(keep, "newer");
	assert_int_equal(count_temp_files("keep.lnt"), 1);
	expect_text(live, "busy");
	remove(live);
	ok(ln_file_write_atomic(keep, "new", 3, &err), &err);

	/* reading */
	void *data;
	size_t size;
	ok(ln_file_read(keep, &data, &size, &err), &err);
	assert_int_equal(size, 3);
	assert_memory_equal(data, "new", 3);
	ln_free(data);
	assert_int_equal(ln_file_read(tmpdir, &data, &size, &err), LN_EIO);
	expect_msg(&err, "is a directory");
	assert_int_equal(ln_file_read(path, &data, &size, &err), LN_EIO);
	expect_msg(&err, "cannot open: No such file or directory");
	assert_null(data);
	remove(keep);
}

/* Random damage to the payload of a checkpoint, with the checksum
 * recomputed so that the parser sees it: every outcome is a clean status
 * (LN_OK if the damage happens to be harmless, LN_EFORMAT, or LN_ENOMEM
 * from the allocation cap on a config made huge), and nothing leaks. */
static void test_fuzz_payload(void **state)
{
	ln_error err;
	ln_module *m = make_cnn();
	ln_optim_config cfg = tu_optim_config("SGD", "lr", 1e-3, "momentum", 0.9, NULL);
	ln_optim *opt = optim_over(m, &cfg);
	ln_tensor t;
	tu_tensor_uniform(&t, 2, (int64_t[]){3, 2}, -1, 1);
	ln_writer *w;
	const void *data;
	size_t size;
	uint64_t tid;
	ok(ln_writer_new(&w, &err), &err);
	ok(ln_write_table_begin(w, 4, NULL, &err), &err);
	ok(ln_write_module(w, m, NULL, &err), &err);
	ok(ln_write_optim(w, opt, NULL, &err), &err);
	ok(ln_write_tensor(w, &t, &tid, &err), &err);
	ok(ln_write_backref(w, tid, &err), &err);
	ok(ln_write_table_hash(w, 1, &err), &err);
	ok(ln_write_string(w, "epoch", 5, &err), &err);
	ok(ln_write_integer(w, 3, &err), &err);
	ln_write_table_end(w);
	ok(ln_writer_finish(w, &data, &size, &err), &err);
	ok(decode(data, size, &err), &err);

	size_t plen = size - 20;
	bytes *p = malloc(sizeof *p);
	assert_non_null(p);
	assert_true(plen <= sizeof p->b);
	static const uint64_t interesting[] = {0, 1, 2, 7, 8, 9, 127, 128, 255, 0xffffffffu,
	                                       (uint64_t)1 << 31, (uint64_t)1 << 63, UINT64_MAX};
	int outcomes[3] = {0};
	uint64_t before = live_bytes();
	for (int iter = 0; iter < 4000; iter++) {
		memcpy(p->b, (const unsigned char *)data + 16, plen);
		p->n = plen;
		int nmut = 1 + (int)ln_rng_below(ln_rng_global(), 3);
		for (int k = 0; k < nmut; k++) {
			size_t at = (size_t)ln_rng_below(ln_rng_global(), plen);
			switch (ln_rng_below(ln_rng_global(), 4)) {
			case 0: p->b[at] ^= (unsigned char)(1u << ln_rng_below(ln_rng_global(), 8)); break;
			case 1: p->b[at] = (unsigned char)ln_rng_below(ln_rng_global(), 256); break;
			case 2:
				if (at + 8 <= plen) {
					uint64_t v = interesting[ln_rng_below(ln_rng_global(), sizeof interesting / 8)];
					for (int i = 0; i < 8; i++)
						p->b[at + i] = (unsigned char)(v >> (8 * i));
				}
				break;
			default: p->n = at; break;  /* cut, with a consistent length */
			}
		}
		size_t n;
		unsigned char *f = wrap(p, &n, LN_SAVE_VERSION);
		ln_status st = decode(f, n, &err);
		free(f);
		if (st != LN_OK && st != LN_EFORMAT && st != LN_ENOMEM)
			fail_msg("iteration %d: %s: %s", iter, ln_status_name(st), err.msg);
		outcomes[st == LN_OK ? 0 : st == LN_EFORMAT ? 1 : 2]++;
		assert_int_equal(live_bytes(), before);
	}
	print_message("fuzz: %d ok, %d format errors, %d capped\n", outcomes[0], outcomes[1], outcomes[2]);
	assert_true(outcomes[1] > 2000);  /* most damage is noticed */
	free(p);
	ln_tensor_release(&t);
	ln_writer_free(w);
	ln_optim_free(opt);
	ln_module_release(m);
}

/* ln_load_module refuses a file whose root is not a module. */
static void test_load_module_root(void **state)
{
	ln_error err;
	bytes p = {.n = 0};
	b_u8(&p, LN_SAVE_INTEGER);
	b_u64(&p, 3);
	size_t size;
	unsigned char *f = wrap(&p, &size, LN_SAVE_VERSION);
	FILE *fp = fopen(tpath("int.lnt"), "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(f, 1, size, fp), size);
	fclose(fp);
	free(f);
	ln_module *m = (ln_module *)&err;  /* set to NULL on failure */
	assert_int_equal(ln_load_module(tpath("int.lnt"), &m, &err), LN_EFORMAT);
	assert_null(m);
	expect_msg(&err, "int.lnt: the root value is not a module (it is: integer)");
}

int main(void)
{
	ln_rng_seed(ln_rng_global(), 20240601);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values_roundtrip),
		cmocka_unit_test(test_tensor_roundtrip),
		cmocka_unit_test(test_module_roundtrip),
		cmocka_unit_test(test_every_registry_class),
		cmocka_unit_test(test_shared_module),
		cmocka_unit_test(test_custom_module_refused),
		cmocka_unit_test(test_every_truncation),
		cmocka_unit_test(test_flipped_bytes),
		cmocka_unit_test(test_header_errors),
		cmocka_unit_test(test_hostile_payloads),
		cmocka_unit_test(test_hostile_config_allocates_little),
		cmocka_unit_test(test_fuzz_payload),
		cmocka_unit_test(test_optim_roundtrip),
		cmocka_unit_test(test_optim_alone),
		cmocka_unit_test(test_optim_state_by_name),
		cmocka_unit_test(test_optim_hostile),
		cmocka_unit_test(test_load_leaves_process_alone),
		cmocka_unit_test(test_write_depth),
		cmocka_unit_test(test_enomem),
		cmocka_unit_test(test_atomic_write),
		cmocka_unit_test(test_load_module_root),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
