/*
 * safetensors.c -- parsing and encoding safetensors file images (format
 * and rules in safetensors.h).  The JSON header is read and written with
 * jansson; everything about the numbers in it (dtype sizes, shapes,
 * offsets) is checked here, with overflow checks, before any pointer into
 * the data is formed.
 */
#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../core/alloc.h"

#define METADATA_KEY "__metadata__"

static const struct {
	const char *name;
	size_t size;
} dtypes[LN_ST_DTYPE_COUNT] = {
	[LN_ST_F32] = {"F32", 4},
	[LN_ST_F16] = {"F16", 2},
	[LN_ST_BF16] = {"BF16", 2},
	[LN_ST_F64] = {"F64", 8},
	[LN_ST_I64] = {"I64", 8},
};

const char *ln_st_dtype_name(ln_st_dtype d) { return dtypes[d].name; }
size_t ln_st_dtype_size(ln_st_dtype d) { return dtypes[d].size; }

/* ---- little-endian loads and stores --------------------------------------------- */

static uint64_t load_le(const unsigned char *p, int nbytes)
{
	uint64_t v = 0;
	for (int i = nbytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void store_le(unsigned char *p, uint64_t v, int nbytes)
{
	for (int i = 0; i < nbytes; i++, v >>= 8)
		p[i] = (unsigned char)v;
}

static float bits_to_float(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* Half: 1 sign, 5 exponent (bias 15), 10 mantissa bits.  Normal numbers
 * and infinities/NaNs move into float's fields (bias 127: +112); a
 * subnormal half is mantissa * 2^-24, exactly representable in float. */
float ln_half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h >> 15) << 31;
	uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
	if (exp == 0) {
		float v = (float)man * 0x1p-24f;
		return sign ? -v : v;
	}
	if (exp == 31)
		return bits_to_float(sign | 0x7f800000u | man << 13);
	return bits_to_float(sign | (exp + 112) << 23 | man << 13);
}

/* bfloat16 is the top half of a float. */
float ln_bfloat16_to_float(uint16_t b) { return bits_to_float((uint32_t)b << 16); }

static float element_to_float(const unsigned char *p, ln_st_dtype d)
{
	switch (d) {
	case LN_ST_F32:
		return bits_to_float((uint32_t)load_le(p, 4));
	case LN_ST_F16:
		return ln_half_to_float((uint16_t)load_le(p, 2));
	case LN_ST_BF16:
		return ln_bfloat16_to_float((uint16_t)load_le(p, 2));
	case LN_ST_F64: {
		uint64_t u = load_le(p, 8);
		double v;
		memcpy(&v, &u, sizeof v);
		return (float)v;
	}
	case LN_ST_I64:
		return (float)(int64_t)load_le(p, 8);
	case LN_ST_DTYPE_COUNT:
		break;
	}
	return 0;
}

void ln_st_to_float(float *dst, const ln_st_tensor *t)
{
	size_t es = dtypes[t->dtype].size;
	for (uint64_t i = 0; i < t->numel; i++)
		dst[i] = element_to_float(t->data + i * es, t->dtype);
}

double ln_st_scalar_number(const ln_st_tensor *t)
{
	if (t->dtype == LN_ST_I64)
		return (double)ln_st_scalar_integer(t);
	if (t->dtype == LN_ST_F64) {
		uint64_t u = load_le(t->data, 8);
		double v;
		memcpy(&v, &u, sizeof v);
		return v;
	}
	return element_to_float(t->data, t->dtype);
}

int64_t ln_st_scalar_integer(const ln_st_tensor *t) { return (int64_t)load_le(t->data, 8); }

/* ==== parsing ==================================================================== */

/* A tensor while parsing: its entry and where its bytes are. */
typedef struct pending {
	ln_st_tensor t;
	uint64_t begin, end;
	size_t order;  /* position in the header, to break ties */
} pending;

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "a value";
}

/* v as an integer >= 0, or -1 if it is not one. */
static int64_t nonneg_integer(const json_t *v)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	return (int64_t)json_integer_value(v);
}

/* Reads the fields of one tensor entry into p (name already set) and
 * checks its range against the data length dlen. */
static ln_status parse_tensor(pending *p, const json_t *v, uint64_t dlen, ln_error *err)
{
	const char *name = p->t.name;
	if (!json_is_object(v))
		return ln_fail(err, LN_EFORMAT, "tensor '%s': expected an object, got %s", name,
		               json_kind(v));
	const json_t *dtype = NULL, *shape = NULL, *offsets = NULL;
	const char *key;
	json_t *field;
	json_object_foreach((json_t *)v, key, field) {
		if (strcmp(key, "dtype") == 0)
			dtype = field;
		else if (strcmp(key, "shape") == 0)
			shape = field;
		else if (strcmp(key, "data_offsets") == 0)
			offsets = field;
		else
			return ln_fail(err, LN_EFORMAT,
			               "tensor '%s': unexpected field '%s' (expected dtype, shape, data_offsets)",
			               name, key);
	}
	if (!dtype || !shape || !offsets)
		return ln_fail(err, LN_EFORMAT, "tensor '%s': missing field '%s'", name,
		               !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

	if (!json_is_string(dtype))
		return ln_fail(err, LN_EFORMAT, "tensor '%s': dtype must be a string, got %s", name,
		               json_kind(dtype));
	int d = 0;
	while (d < LN_ST_DTYPE_COUNT && strcmp(json_string_value(dtype), dtypes[d].name) != 0)
		d++;
	if (d == LN_ST_DTYPE_COUNT)
		return ln_fail(err, LN_EFORMAT,
		               "tensor '%s': dtype '%.32s' is not supported (lunet reads F32, F16, BF16, "
		               "F64, I64)", name, json_string_value(dtype));
	p->t.dtype = (ln_st_dtype)d;

	if (!json_is_array(shape))
		return ln_fail(err, LN_EFORMAT, "tensor '%s': shape must be an array, got %s", name,
		               json_kind(shape));
	size_t ndim = json_array_size(shape);
	if (ndim > LN_ST_MAX_DIMS)
		return ln_fail(err, LN_EFORMAT, "tensor '%s' has %zu dimensions (at most %d)", name, ndim,
		               LN_ST_MAX_DIMS);
	p->t.ndim = (int)ndim;
	uint64_t numel = 1;
	bool overflow = false;
	for (size_t i = 0; i < ndim; i++) {
		int64_t s = nonneg_integer(json_array_get(shape, i));
		if (s < 0)
			return ln_fail(err, LN_EFORMAT,
			               "tensor '%s': shape[%zu] must be an integer >= 0, got %s", name, i,
			               json_kind(json_array_get(shape, i)));
		p->t.shape[i] = s;
		if (s != 0 && numel > UINT64_MAX / (uint64_t)s)
			overflow = true;
		else
			numel *= (uint64_t)s;
	}
	for (size_t i = 0; i < ndim; i++)
		if (p->t.shape[i] == 0)
			numel = 0, overflow = false;  /* an empty tensor, whatever the other sizes */
	size_t es = dtypes[d].size;
	if (overflow || numel > UINT64_MAX / es)
		return ln_fail(err, LN_EFORMAT, "tensor '%s': its shape's size overflows", name);
	p->t.numel = numel;

	if (!json_is_array(offsets) || json_array_size(offsets) != 2)
		return ln_fail(err, LN_EFORMAT, "tensor '%s': data_offsets must be an array of two integers",
		               name);
	int64_t b = nonneg_integer(json_array_get(offsets, 0));
	int64_t e = nonneg_integer(json_array_get(offsets, 1));
	if (b < 0 || e < 0)
		return ln_fail(err, LN_EFORMAT, "tensor '%s': data_offsets must be integers >= 0", name);
	p->begin = (uint64_t)b;
	p->end = (uint64_t)e;
	if (p->end < p->begin)
		return ln_fail(err, LN_EFORMAT, "tensor '%s': data_offsets [%llu, %llu] end before they begin",
		               name, (unsigned long long)p->begin, (unsigned long long)p->end);
	if (p->end > dlen)
		return ln_fail(err, LN_EFORMAT,
		               "tensor '%s': data_offsets [%llu, %llu] run past the end of the data "
		               "(%llu bytes)", name, (unsigned long long)p->begin,
		               (unsigned long long)p->end, (unsigned long long)dlen);
	if (p->end - p->begin != numel * es)
		return ln_fail(err, LN_EFORMAT,
		               "tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but %llu elements "
		               "of %s take %llu", name, (unsigned long long)p->begin,
		               (unsigned long long)p->end, (unsigned long long)(p->end - p->begin),
		               (unsigned long long)numel, dtypes[d].name, (unsigned long long)(numel * es));
	return LN_OK;
}

static int by_offset(const void *a, const void *b)
{
	const pending *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* The ranges, sorted, must tile [0, dlen) exactly. */
static ln_status check_tiling(const pending *p, size_t n, uint64_t dlen, ln_error *err)
{
	uint64_t pos = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i].begin < pos)
			return ln_fail(err, LN_EFORMAT,
			               "tensor '%s' (bytes [%llu, %llu) of the data) overlaps tensor '%s' "
			               "(bytes [%llu, %llu))", p[i].t.name, (unsigned long long)p[i].begin,
			               (unsigned long long)p[i].end, p[i - 1].t.name,
			               (unsigned long long)p[i - 1].begin, (unsigned long long)pos);
		if (p[i].begin > pos)
			return ln_fail(err, LN_EFORMAT,
			               "bytes [%llu, %llu) of the data belong to no tensor (before '%s')",
			               (unsigned long long)pos, (unsigned long long)p[i].begin, p[i].t.name);
		pos = p[i].end;
	}
	if (pos != dlen)
		return ln_fail(err, LN_EFORMAT, "bytes [%llu, %llu) of the data belong to no tensor%s",
		               (unsigned long long)pos, (unsigned long long)dlen,
		               n ? " (after the last one)" : "");
	return LN_OK;
}

/* Copies s into the pool at *at; returns the copy. */
static const char *pool_copy(char **at, const char *s)
{
	size_t n = strlen(s) + 1;
	char *c = memcpy(*at, s, n);
	*at += n;
	return c;
}

void ln_safetensors_free(ln_safetensors *f)
{
	ln_free(f);  /* one block: the struct, the arrays and the strings */
}

/* Everything after the JSON parse: root is the header object. */
static ln_status parse_header(ln_safetensors **out, const json_t *root, const unsigned char *data,
                              uint64_t dlen, ln_error *err)
{
	/* First pass: counts and string sizes, metadata checked. */
	size_t ntensors = 0, nmeta = 0, strbytes = 0;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)root, key, v) {
		if (strcmp(key, METADATA_KEY) == 0) {
			if (!json_is_object(v))
				return ln_fail(err, LN_EFORMAT, "__metadata__ must be an object, got %s",
				               json_kind(v));
			const char *mk;
			json_t *mv;
			json_object_foreach(v, mk, mv) {
				if (!json_is_string(mv))
					return ln_fail(err, LN_EFORMAT,
					               "__metadata__ value '%s' must be a string, got %s", mk,
					               json_kind(mv));
				nmeta++;
				strbytes += strlen(mk) + 1 + strlen(json_string_value(mv)) + 1;
			}
		} else {
			ntensors++;
			strbytes += strlen(key) + 1;
		}
	}

	/* One block: struct, tensors, metadata, strings; pending entries apart. */
	size_t bytes = sizeof(ln_safetensors) + ntensors * sizeof(ln_st_tensor) +
	               nmeta * sizeof(ln_st_meta) + strbytes;
	ln_safetensors *f = ln_malloc(bytes);
	pending *p = ln_calloc(ntensors ? ntensors : 1, sizeof *p);
	if (!f || !p) {
		ln_free(f);
		ln_free(p);
		return ln_fail(err, LN_ENOMEM, "out of memory for a header of %zu tensors", ntensors);
	}
	f->ntensors = ntensors;
	f->tensors = (ln_st_tensor *)(f + 1);
	f->nmeta = nmeta;
	f->meta = (ln_st_meta *)(f->tensors + ntensors);
	char *pool = (char *)(f->meta + nmeta);

	size_t it = 0, im = 0;
	ln_status st = LN_OK;
	json_object_foreach((json_t *)root, key, v) {
		if (strcmp(key, METADATA_KEY) == 0) {
			const char *mk;
			json_t *mv;
			json_object_foreach(v, mk, mv) {
				f->meta[im].key = pool_copy(&pool, mk);
				f->meta[im].value = pool_copy(&pool, json_string_value(mv));
				im++;
			}
			continue;
		}
		p[it].t.name = pool_copy(&pool, key);
		p[it].order = it;
		if ((st = parse_tensor(&p[it], v, dlen, err)) != LN_OK)
			break;
		it++;
	}
	if (st == LN_OK) {
		qsort(p, ntensors, sizeof *p, by_offset);
		st = check_tiling(p, ntensors, dlen, err);
	}
	if (st != LN_OK) {
		ln_free(p);
		ln_free(f);
		return st;
	}
	for (size_t i = 0; i < ntensors; i++) {
		f->tensors[i] = p[i].t;
		f->tensors[i].data = data + p[i].begin;
	}
	ln_free(p);
	*out = f;
	return LN_OK;
}

ln_status ln_safetensors_parse(ln_safetensors **out, const void *buf, size_t size, ln_error *err)
{
	*out = NULL;
	const unsigned char *b = buf;
	if (size < 8)
		return ln_fail(err, LN_EFORMAT,
		               "truncated: %zu bytes, but a safetensors file starts with an 8-byte header "
		               "length", size);
	uint64_t n = load_le(b, 8);
	if (n > LN_ST_MAX_HEADER)
		return ln_fail(err, LN_EFORMAT, "header length %llu is over the limit of %u bytes",
		               (unsigned long long)n, LN_ST_MAX_HEADER);
	if (n > size - 8)
		return ln_fail(err, LN_EFORMAT, "truncated: header length %llu, but only %zu bytes follow",
		               (unsigned long long)n, size - 8);
	if (n == 0 || b[8] != '{')
		return ln_fail(err, LN_EFORMAT, "the header is not a JSON object (it must start with '{')");
	json_error_t je;
	json_t *root = json_loadb((const char *)b + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return ln_fail(err, LN_EFORMAT, "the header is not valid JSON: %s (at byte %d of the header)",
		               je.text, je.position);
	ln_status st;
	if (!json_is_object(root))
		st = ln_fail(err, LN_EFORMAT, "the header is %s, expected an object", json_kind(root));
	else
		st = parse_header(out, root, b + 8 + n, (uint64_t)(size - 8 - n), err);
	json_decref(root);
	return st;
}

/* ==== encoding =================================================================== */

/* Whether s is well-formed UTF-8 (no overlong forms, surrogates or code
 * points past U+10FFFF), as JSON text must be.  jansson refuses other
 * names too, but with the same answer as for a failed allocation. */
static bool is_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned c = *p++;
		int more;
		unsigned cp, min;
		if (c < 0x80)
			continue;
		else if ((c & 0xe0) == 0xc0)
			more = 1, cp = c & 0x1f, min = 0x80;
		else if ((c & 0xf0) == 0xe0)
			more = 2, cp = c & 0x0f, min = 0x800;
		else if ((c & 0xf8) == 0xf0)
			more = 3, cp = c & 0x07, min = 0x10000;
		else
			return false;
		for (; more > 0; more--, p++) {
			if ((*p & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (*p & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

/* The header object for items and meta, with the data length in *dlen. */
static ln_status build_header(json_t **out, uint64_t *dlen, const ln_st_item *items, size_t n,
                              const ln_st_meta *meta, size_t nmeta, ln_error *err)
{
	json_t *root = json_object();
	if (!root)
		return ln_fail(err, LN_ENOMEM, "out of memory for the header");
	ln_status st = LN_OK;
	if (nmeta) {
		json_t *m = json_object();
		if (!m || json_object_set_new(root, METADATA_KEY, m) != 0) {
			json_decref(root);
			return ln_fail(err, LN_ENOMEM, "out of memory for the header");
		}
		for (size_t i = 0; i < nmeta && st == LN_OK; i++) {
			if (!is_utf8(meta[i].key) || !is_utf8(meta[i].value)) {
				st = ln_fail(err, LN_EARG, "metadata '%s': key and value must be UTF-8 text",
				             meta[i].key);
				break;
			}
			if (json_object_set_new(m, meta[i].key, json_string(meta[i].value)) != 0)
				st = ln_fail(err, LN_ENOMEM, "out of memory for the header");
		}
	}
	uint64_t off = 0;
	for (size_t i = 0; i < n && st == LN_OK; i++) {
		const ln_st_item *it = &items[i];
		if (!it->name[0] || strcmp(it->name, METADATA_KEY) == 0) {
			st = ln_fail(err, LN_EARG, "'%s' cannot be a tensor name", it->name);
			break;
		}
		if (!is_utf8(it->name)) {
			st = ln_fail(err, LN_EARG, "tensor name '%s' is not UTF-8 text", it->name);
			break;
		}
		if (json_object_get(root, it->name)) {
			st = ln_fail(err, LN_EARG, "the name '%s' is given twice", it->name);
			break;
		}
		json_t *shape = json_array();
		uint64_t bytes;
		const char *dt;
		if (it->tensor) {
			if (ln_tensor_is_empty(it->tensor)) {
				json_decref(shape);
				st = ln_fail(err, LN_EARG, "tensor '%s' is empty", it->name);
				break;
			}
			for (int d = 0; shape && d < it->tensor->ndim; d++)
				if (json_array_append_new(shape, json_integer(it->tensor->shape[d])) != 0) {
					json_decref(shape);
					shape = NULL;
				}
			bytes = (uint64_t)ln_tensor_numel(it->tensor) * 4;
			dt = "F32";
		} else {
			bytes = it->is_integer ? 8 : 4;
			dt = it->is_integer ? "I64" : "F32";
		}
		json_t *e = shape ? json_pack("{s:s, s:o, s:[I,I]}", "dtype", dt, "shape", shape,
		                              "data_offsets", (json_int_t)off, (json_int_t)(off + bytes))
		                  : NULL;
		if (!e) {
			st = ln_fail(err, LN_ENOMEM, "out of memory for the header");
			break;
		}
		if (json_object_set_new(root, it->name, e) != 0) {
			st = ln_fail(err, LN_ENOMEM, "out of memory for the header");
			break;
		}
		off += bytes;
	}
	if (st != LN_OK) {
		json_decref(root);
		return st;
	}
	*out = root;
	*dlen = off;
	return LN_OK;
}

/* Writes t's elements, row-major, as little-endian F32 at dst. */
static ln_status put_tensor(unsigned char *dst, const ln_tensor *t, ln_error *err)
{
	ln_tensor tmp = LN_TENSOR_EMPTY;
	const ln_tensor *src = t;
	if (!ln_tensor_is_contiguous(t)) {
		ln_status st = ln_tensor_clone(&tmp, t, err);
		if (st != LN_OK)
			return st;
		src = &tmp;
	}
	const float *x = ln_tensor_data(src);
	int64_t n = ln_tensor_numel(src);
	for (int64_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &x[i], sizeof u);
		store_le(dst + 4 * i, u, 4);
	}
	ln_tensor_release(&tmp);
	return LN_OK;
}

ln_status ln_safetensors_encode(void **out, size_t *size, const ln_st_item *items, size_t n,
                                const ln_st_meta *meta, size_t nmeta, ln_error *err)
{
	*out = NULL;
	*size = 0;
	json_t *root = NULL;
	uint64_t dlen = 0;
	ln_status st = build_header(&root, &dlen, items, n, meta, nmeta, err);
	if (st != LN_OK)
		return st;
	size_t hlen = json_dumpb(root, NULL, 0, JSON_COMPACT);
	size_t padded = (hlen + 7) / 8 * 8;
	if (hlen == 0 || padded > LN_ST_MAX_HEADER) {
		json_decref(root);
		return ln_fail(err, LN_ERANGE, "the header would take %zu bytes (the limit is %u)", padded,
		               LN_ST_MAX_HEADER);
	}
	if (dlen > SIZE_MAX - 8 - padded) {
		json_decref(root);
		return ln_fail(err, LN_ERANGE, "%llu bytes of tensor data do not fit in memory",
		               (unsigned long long)dlen);
	}
	size_t total = 8 + padded + (size_t)dlen;
	unsigned char *buf = ln_malloc(total);
	if (!buf) {
		json_decref(root);
		return ln_fail(err, LN_ENOMEM, "out of memory for a file of %zu bytes", total);
	}
	store_le(buf, padded, 8);
	size_t wrote = json_dumpb(root, (char *)buf + 8, hlen, JSON_COMPACT);
	json_decref(root);
	if (wrote != hlen) {
		ln_free(buf);
		return ln_fail(err, LN_ENOMEM, "out of memory while writing the header");
	}
	memset(buf + 8 + hlen, ' ', padded - hlen);
	unsigned char *d = buf + 8 + padded;
	for (size_t i = 0; i < n; i++) {
		const ln_st_item *it = &items[i];
		if (it->tensor) {
			if ((st = put_tensor(d, it->tensor, err)) != LN_OK) {
				ln_free(buf);
				return st;
			}
			d += (size_t)ln_tensor_numel(it->tensor) * 4;
		} else if (it->is_integer) {
			store_le(d, (uint64_t)it->integer, 8);
			d += 8;
		} else {
			float f = (float)it->number;
			uint32_t u;
			memcpy(&u, &f, sizeof u);
			store_le(d, u, 4);
			d += 4;
		}
	}
	*out = buf;
	*size = total;
	return LN_OK;
}
