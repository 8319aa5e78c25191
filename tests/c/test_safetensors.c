/*
 * test_safetensors.c -- the safetensors parser and encoder (io/safetensors.h).
 *
 * Files are built here byte by byte (an 8-byte length, a JSON header
 * written out by hand, data) so that each rule of the format is tested
 * on its own: every dtype's conversion, scalars and empty tensors, and
 * every kind of broken file the parser must refuse with a message that
 * names the tensor and the numbers.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "testutil.h"

/* A file image: 8-byte length of hdr, hdr, then dlen data bytes.  The
 * caller frees it. */
static unsigned char *make_file(const char *hdr, const void *data, size_t dlen, size_t *size)
{
	size_t n = strlen(hdr);
	*size = 8 + n + dlen;
	unsigned char *b = malloc(*size ? *size : 1);
	assert_non_null(b);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)n >> (8 * i));
	memcpy(b + 8, hdr, n);
	if (dlen)
		memcpy(b + 8 + n, data, dlen);
	return b;
}

/* Parses hdr + data and expects success. */
static ln_safetensors *parse_ok(const char *hdr, const void *data, size_t dlen,
                                unsigned char **keep)
{
	size_t size;
	unsigned char *b = make_file(hdr, data, dlen, &size);
	ln_safetensors *f = NULL;
	ln_error err = {0};
	ln_status st = ln_safetensors_parse(&f, b, size, &err);
	if (st != LN_OK)
		fail_msg("expected the file to parse, got %s: %s\nheader: %s", ln_status_name(st),
		         err.msg, hdr);
	*keep = b;
	return f;
}

/* Parses hdr + data and expects LN_EFORMAT with every given text in the
 * message (NULL-terminated list). */
static void parse_bad(const char *hdr, const void *data, size_t dlen, ...)
{
	size_t size;
	unsigned char *b = make_file(hdr, data, dlen, &size);
	ln_safetensors *f = (ln_safetensors *)&size;  /* must come back NULL */
	ln_error err = {0};
	ln_status st = ln_safetensors_parse(&f, b, size, &err);
	free(b);
	if (st != LN_EFORMAT)
		fail_msg("expected LN_EFORMAT, got %s (%s)\nheader: %s", ln_status_name(st), err.msg, hdr);
	assert_null(f);
	va_list ap;
	va_start(ap, dlen);
	for (const char *want; (want = va_arg(ap, const char *));)
		if (!strstr(err.msg, want))
			fail_msg("message '%s' lacks '%s'\nheader: %s", err.msg, want, hdr);
	va_end(ap);
}

static const ln_st_tensor *find(const ln_safetensors *f, const char *name)
{
	for (size_t i = 0; i < f->ntensors; i++)
		if (strcmp(f->tensors[i].name, name) == 0)
			return &f->tensors[i];
	fail_msg("no tensor '%s'", name);
	return NULL;
}

static void put_f32(unsigned char *p, float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(u >> (8 * i));
}

/* ---- conversions -------------------------------------------------------------- */

/* Reference half -> double from the definition: (-1)^s 2^(e-15) (1 + m/1024),
 * subnormals 2^-14 m/1024. */
static double half_naive(uint16_t h)
{
	int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
	double v;
	if (e == 0)
		v = ldexp(m / 1024.0, -14);
	else if (e == 31)
		v = m ? NAN : INFINITY;
	else
		v = ldexp(1 + m / 1024.0, e - 15);
	return s ? -v : v;
}

static void test_half_all_patterns(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		float got = ln_half_to_float((uint16_t)h);
		double want = half_naive((uint16_t)h);
		if (isnan(want)) {
			assert_true(isnan(got));
		} else {
			if ((double)got != want)
				fail_msg("half 0x%04x: got %.9g, want %.9g", h, got, want);
			assert_int_equal(signbit(got) != 0, (h >> 15) != 0);
		}
	}
}

static void test_bfloat16(void **state)
{
	(void)state;
	assert_true(ln_bfloat16_to_float(0x3f80) == 1.0f);
	assert_true(ln_bfloat16_to_float(0xc040) == -3.0f);
	assert_true(ln_bfloat16_to_float(0x7f80) == INFINITY);
	assert_true(isnan(ln_bfloat16_to_float(0x7fc1)));
	assert_true(ln_bfloat16_to_float(0x0001) == 0x1p-133f);  /* smallest subnormal */
}

/* Every dtype read from a hand-built file, with the header in a different
 * order from the data and trailing spaces after it. */
static void test_parse_dtypes(void **state)
{
	(void)state;
	unsigned char d[4 * 2 + 2 * 3 + 2 * 2 + 8 * 2 + 8 * 2 + 8];
	unsigned char *p = d;
	put_f32(p, 1.5f), put_f32(p + 4, -2.25f), p += 8;                 /* f32 [2]   0..8   */
	const uint16_t h[3] = {0x3c00, 0x0001, 0xfc00};                    /* 1, 2^-24, -inf */
	for (int i = 0; i < 3; i++)
		p[2 * i] = (unsigned char)h[i], p[2 * i + 1] = (unsigned char)(h[i] >> 8);
	p += 6;                                                            /* f16 [3]   8..14  */
	p[0] = 0x40, p[1] = 0x40, p[2] = 0x80, p[3] = 0xbf, p += 4;        /* bf16 [2] 14..18  */
	double dv[2] = {0.1, -1e300};
	memcpy(p, dv, 16), p += 16;                                        /* f64 [2]  18..34  */
	int64_t iv[2] = {-7, (int64_t)1 << 40};
	memcpy(p, iv, 16), p += 16;                                        /* i64 [2]  34..50  */
	int64_t sc = 123456789012345;
	memcpy(p, &sc, 8), p += 8;                                         /* i64 []   50..58  */
	assert_int_equal(p - d, sizeof d);

	unsigned char *b;
	ln_safetensors *f = parse_ok(
		"{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"},"
		"\"count\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[50,58]},"
		"\"i\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[34,50]},"
		"\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[8,14]},"
		"\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		"\"bf\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[14,18]},"
		"\"d\":{\"data_offsets\":[18,34],\"shape\":[2],\"dtype\":\"F64\"}}   ",
		d, sizeof d, &b);
	assert_int_equal(f->ntensors, 6);
	/* in data order */
	const char *order[] = {"f", "h", "bf", "d", "i", "count"};
	for (int i = 0; i < 6; i++)
		assert_string_equal(f->tensors[i].name, order[i]);
	assert_int_equal(f->nmeta, 2);
	assert_string_equal(f->meta[0].key, "format");
	assert_string_equal(f->meta[0].value, "pt");
	assert_string_equal(f->meta[1].key, "note");

	float out[3];
	ln_st_to_float(out, find(f, "f"));
	assert_true(out[0] == 1.5f && out[1] == -2.25f);
	ln_st_to_float(out, find(f, "h"));
	assert_true(out[0] == 1.0f && out[1] == 0x1p-24f && out[2] == -INFINITY);
	const ln_st_tensor *bf = find(f, "bf");
	assert_int_equal(bf->ndim, 2);
	assert_int_equal(bf->shape[0], 1);
	assert_int_equal(bf->shape[1], 2);
	ln_st_to_float(out, bf);
	assert_true(out[0] == 3.0f && out[1] == -1.0f);
	ln_st_to_float(out, find(f, "d"));
	assert_true(out[0] == 0.1f && out[1] == -INFINITY);  /* rounded to float */
	ln_st_to_float(out, find(f, "i"));
	assert_true(out[0] == -7.0f && out[1] == 0x1p40f);
	const ln_st_tensor *c = find(f, "count");
	assert_int_equal(c->ndim, 0);
	assert_int_equal(c->numel, 1);
	assert_int_equal(ln_st_scalar_integer(c), 123456789012345);
	assert_true(ln_st_scalar_number(c) == 123456789012345.0);
	assert_true(ln_st_scalar_number(find(f, "d")) == 0.1);
	ln_safetensors_free(f);
	free(b);
}

/* Empty tensors take no bytes; an empty file (header {}) is valid; the
 * header length need not be a multiple of 8. */
static void test_parse_empty_and_unaligned(void **state)
{
	(void)state;
	unsigned char *b;
	float one = 4.0f;
	ln_safetensors *f = parse_ok(
		"{\"e\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
		"\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		"\"z\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[0,0]}}",
		&one, 4, &b);
	assert_int_equal(f->ntensors, 3);
	assert_string_equal(f->tensors[0].name, "z");
	assert_string_equal(f->tensors[1].name, "a");
	assert_string_equal(f->tensors[2].name, "e");
	assert_int_equal(find(f, "e")->numel, 0);
	assert_int_equal(find(f, "e")->shape[0], 3);
	ln_safetensors_free(f);
	free(b);

	f = parse_ok("{}", NULL, 0, &b);
	assert_int_equal(f->ntensors, 0);
	assert_int_equal(f->nmeta, 0);
	ln_safetensors_free(f);
	free(b);
}

/* ---- refused files ----------------------------------------------------------------- */

#define T(dtype, shape, offs) "{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

static void test_parse_refuses_lengths(void **state)
{
	(void)state;
	ln_safetensors *f = NULL;
	ln_error err;
	unsigned char small[7] = {0};
	assert_int_equal(ln_safetensors_parse(&f, small, sizeof small, &err), LN_EFORMAT);
	assert_non_null(strstr(err.msg, "truncated: 7 bytes"));

	/* a header length past the end, and one over the limit */
	unsigned char b[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
	assert_int_equal(ln_safetensors_parse(&f, b, 10, &err), LN_EFORMAT);
	assert_non_null(strstr(err.msg, "header length 100, but only 2 bytes follow"));
	uint64_t big = (uint64_t)LN_ST_MAX_HEADER + 1;
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(big >> (8 * i));
	assert_int_equal(ln_safetensors_parse(&f, b, sizeof b, &err), LN_EFORMAT);
	assert_non_null(strstr(err.msg, "over the limit"));
	memset(b, 0xff, 8);  /* 2^64 - 1: no overflow in the checks */
	assert_int_equal(ln_safetensors_parse(&f, b, sizeof b, &err), LN_EFORMAT);
	assert_null(f);

	/* every truncation of a valid file is refused */
	float v[2] = {1, 2};
	size_t size;
	unsigned char *good = make_file("{\"a\":" T("F32", "[2]", "[0,8]") "}", v, 8, &size);
	for (size_t n = 0; n < size; n++) {
		assert_int_equal(ln_safetensors_parse(&f, good, n, &err), LN_EFORMAT);
		assert_null(f);
	}
	assert_int_equal(ln_safetensors_parse(&f, good, size, &err), LN_OK);
	ln_safetensors_free(f);
	free(good);
}

static void test_parse_refuses_json(void **state)
{
	(void)state;
	parse_bad("", NULL, 0, "must start with '{'", NULL);
	parse_bad(" {}", NULL, 0, "must start with '{'", NULL);
	parse_bad("[1]", NULL, 0, "must start with '{'", NULL);
	parse_bad("{\"a\":", NULL, 0, "not valid JSON", NULL);
	parse_bad("{} x", NULL, 0, "not valid JSON", NULL);
	/* duplicate keys: the format forbids them */
	parse_bad("{\"a\":" T("F32", "[0]", "[0,0]") ",\"a\":" T("F32", "[0]", "[0,0]") "}", NULL, 0,
	          "not valid JSON", "duplicate", NULL);
	/* a NUL inside a name, invalid UTF-8 */
	parse_bad("{\"a\\u0000b\":" T("F32", "[0]", "[0,0]") "}", NULL, 0, "not valid JSON", NULL);
	parse_bad("{\"a\xff\":" T("F32", "[0]", "[0,0]") "}", NULL, 0, "not valid JSON", NULL);
	/* a raw NUL byte inside the header */
	unsigned char nul[] = {10, 0, 0, 0, 0, 0, 0, 0, '{', '"', 'a', 0, '"', ':', '1', '}', ' ', ' '};
	ln_safetensors *f = NULL;
	ln_error err;
	assert_int_equal(ln_safetensors_parse(&f, nul, sizeof nul, &err), LN_EFORMAT);
	assert_non_null(strstr(err.msg, "not valid JSON"));
	parse_bad("{\"__metadata__\":[]}", NULL, 0, "__metadata__ must be an object, got an array",
	          NULL);
	parse_bad("{\"__metadata__\":{\"k\":1}}", NULL, 0, "__metadata__ value 'k' must be a string",
	          NULL);
}

static void test_parse_refuses_entries(void **state)
{
	(void)state;
	unsigned char d[64] = {0};
	parse_bad("{\"w\":[1]}", NULL, 0, "tensor 'w': expected an object, got an array", NULL);
	parse_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0],\"x\":1}}", NULL, 0,
	          "tensor 'w': unexpected field 'x'", NULL);
	parse_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[0]}}", NULL, 0,
	          "tensor 'w': missing field 'data_offsets'", NULL);
	parse_bad("{\"w\":{\"dtype\":1,\"shape\":[0],\"data_offsets\":[0,0]}}", NULL, 0,
	          "dtype must be a string, got an integer", NULL);
	parse_bad("{\"w\":" T("I32", "[1]", "[0,4]") "}", d, 4, "tensor 'w': dtype 'I32' is not supported",
	          NULL);
	parse_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,12]}}", d, 12,
	          "shape must be an array", NULL);
	parse_bad("{\"w\":" T("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", d, 4, "has 9 dimensions", NULL);
	parse_bad("{\"w\":" T("F32", "[-1]", "[0,4]") "}", d, 4, "shape[0] must be an integer >= 0", NULL);
	parse_bad("{\"w\":" T("F32", "[1.0]", "[0,4]") "}", d, 4, "got a real number", NULL);
	parse_bad("{\"w\":" T("F32", "[4294967296,4294967296]", "[0,4]") "}", d, 4, "overflows", NULL);
	parse_bad("{\"w\":" T("F32", "[4611686018427387904]", "[0,4]") "}", d, 4, "overflows", NULL);
	parse_bad("{\"w\":" T("F32", "[1]", "[0]") "}", d, 4, "two integers", NULL);
	parse_bad("{\"w\":" T("F32", "[1]", "[0,4,8]") "}", d, 4, "two integers", NULL);
	parse_bad("{\"w\":" T("F32", "[1]", "[-4,0]") "}", d, 4, "integers >= 0", NULL);
	parse_bad("{\"w\":" T("F32", "[1]", "[4,0]") "}", d, 4, "[4, 0] end before they begin", NULL);
	parse_bad("{\"w\":" T("F32", "[1]", "[0,8]") "}", d, 4,
	          "tensor 'w': data_offsets [0, 8] run past the end of the data (4 bytes)", NULL);
	parse_bad("{\"w\":" T("F32", "[1]", "[0,18446744073709551615]") "}", d, 4, "not valid JSON",
	          NULL);  /* beyond int64: jansson refuses the integer */
	parse_bad("{\"w\":" T("F32", "[2]", "[0,4]") "}", d, 4,
	          "tensor 'w': data_offsets [0, 4] hold 4 bytes, but 2 elements of F32 take 8", NULL);
	parse_bad("{\"w\":" T("F64", "[]", "[0,4]") "}", d, 4, "1 elements of F64 take 8", NULL);
}

static void test_parse_refuses_layout(void **state)
{
	(void)state;
	unsigned char d[64] = {0};
	/* overlap */
	parse_bad("{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("F32", "[2]", "[4,12]") "}", d, 12,
	          "tensor 'b' (bytes [4, 12) of the data) overlaps tensor 'a' (bytes [0, 8))", NULL);
	/* the same range twice */
	parse_bad("{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("F32", "[2]", "[0,8]") "}", d, 8,
	          "overlaps", NULL);
	/* a hole between two tensors, before the first, after the last */
	parse_bad("{\"a\":" T("F32", "[1]", "[0,4]") ",\"b\":" T("F32", "[1]", "[8,12]") "}", d, 12,
	          "bytes [4, 8) of the data belong to no tensor (before 'b')", NULL);
	parse_bad("{\"a\":" T("F32", "[1]", "[4,8]") "}", d, 8, "bytes [0, 4)", NULL);
	parse_bad("{\"a\":" T("F32", "[1]", "[0,4]") "}", d, 12,
	          "bytes [4, 12) of the data belong to no tensor (after the last one)", NULL);
	parse_bad("{}", d, 3, "bytes [0, 3) of the data belong to no tensor", NULL);
	/* out of order in the header is fine when the ranges tile */
	unsigned char *b;
	ln_safetensors *f =
		parse_ok("{\"b\":" T("F32", "[1]", "[4,8]") ",\"a\":" T("F32", "[1]", "[0,4]") "}", d, 8, &b);
	assert_string_equal(f->tensors[0].name, "a");
	assert_true(f->tensors[1].data == f->tensors[0].data + 4);
	ln_safetensors_free(f);
	free(b);
}

/* Every allocation of a parse failed in turn: LN_ENOMEM (or success once
 * past the last), nothing leaked. */
static void test_parse_out_of_memory(void **state)
{
	(void)state;
	float v[3] = {1, 2, 3};
	size_t size;
	unsigned char *b = make_file("{\"__metadata__\":{\"k\":\"v\"},\"a\":" T("F32", "[3]", "[0,12]") "}",
	                             v, 12, &size);
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	int failures = 0;
	for (long k = 1;; k++) {
		ln_safetensors *f = NULL;
		ln_error err;
		ln_alloc_fail_nth(k);
		ln_status st = ln_safetensors_parse(&f, b, size, &err);
		ln_alloc_fail_nth(0);
		if (st == LN_OK) {
			ln_safetensors_free(f);
			break;
		}
		assert_int_equal(st, LN_ENOMEM);
		assert_null(f);
		failures++;
	}
	assert_true(failures >= 1);
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
	free(b);
}

/* ---- encoding ------------------------------------------------------------------------ */

/* Tensors (one a non-contiguous view), an integer and a float scalar and
 * metadata, encoded then parsed back. */
static void test_encode_round_trip(void **state)
{
	(void)state;
	ln_tensor w, b, wt = LN_TENSOR_EMPTY;
	ln_error err;
	tu_tensor_uniform(&w, 2, (int64_t[]){3, 4}, -1, 1);
	tu_tensor(&b, 1, (int64_t[]){3}, (float[]){0.5f, -0.25f, 1e-30f});
	assert_int_equal(ln_tensor_narrow(&wt, &w, 1, 1, 2, &err), LN_OK);  /* {3,2}, strided */
	assert_false(ln_tensor_is_contiguous(&wt));
	ln_st_item items[] = {
		{.name = "0.weight", .tensor = &w},
		{.name = "0.bias", .tensor = &b},
		{.name = "1.num_batches_tracked", .is_integer = true, .integer = (int64_t)1 << 53 | 1},
		{.name = "scale", .number = 0.75},
		{.name = "view \xc3\xa9", .tensor = &wt},
	};
	ln_st_meta meta[] = {{"format", "pt"}};
	void *buf;
	size_t size;
	assert_int_equal(ln_safetensors_encode(&buf, &size, items, 5, meta, 1, &err), LN_OK);
	const unsigned char *c = buf;
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | c[i];
	assert_int_equal((8 + hlen) % 8, 0);  /* the data starts aligned */
	assert_int_equal(size, 8 + hlen + 4 * (12 + 3 + 1 + 6) + 8);

	ln_safetensors *f;
	assert_int_equal(ln_safetensors_parse(&f, buf, size, &err), LN_OK);
	assert_int_equal(f->ntensors, 5);
	for (size_t i = 0; i < 5; i++)
		assert_string_equal(f->tensors[i].name, items[i].name);  /* data in item order */
	assert_int_equal(f->nmeta, 1);
	assert_string_equal(f->meta[0].value, "pt");
	float out[12];
	ln_st_to_float(out, &f->tensors[0]);
	assert_memory_equal(out, ln_tensor_data(&w), 12 * sizeof(float));
	ln_st_to_float(out, &f->tensors[1]);
	assert_memory_equal(out, ln_tensor_data(&b), 3 * sizeof(float));
	assert_int_equal(f->tensors[2].dtype, LN_ST_I64);
	assert_int_equal(f->tensors[2].ndim, 0);
	assert_int_equal(ln_st_scalar_integer(&f->tensors[2]), ((int64_t)1 << 53) + 1);
	assert_int_equal(f->tensors[3].dtype, LN_ST_F32);
	assert_true(ln_st_scalar_number(&f->tensors[3]) == 0.75);
	ln_st_to_float(out, &f->tensors[4]);
	const float *wd = ln_tensor_data(&w);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 2; j++)
			assert_true(out[i * 2 + j] == wd[i * 4 + 1 + j]);
	assert_int_equal(f->tensors[4].shape[0], 3);
	assert_int_equal(f->tensors[4].shape[1], 2);
	ln_safetensors_free(f);
	ln_free(buf);

	/* nothing at all: a valid file with an empty header object */
	assert_int_equal(ln_safetensors_encode(&buf, &size, NULL, 0, NULL, 0, &err), LN_OK);
	assert_int_equal(size, 16);
	assert_memory_equal((const char *)buf + 8, "{}      ", 8);
	ln_free(buf);
	ln_tensor_release(&w);
	ln_tensor_release(&b);
	ln_tensor_release(&wt);
}

static void encode_bad(const ln_st_item *items, size_t n, const ln_st_meta *meta, size_t nmeta,
                       ln_status code, const char *want)
{
	void *buf = (void *)&n;
	size_t size = 1;
	ln_error err;
	assert_int_equal(ln_safetensors_encode(&buf, &size, items, n, meta, nmeta, &err), code);
	assert_null(buf);
	assert_int_equal(size, 0);
	if (!strstr(err.msg, want))
		fail_msg("message '%s' lacks '%s'", err.msg, want);
}

static void test_encode_refuses(void **state)
{
	(void)state;
	ln_tensor t, empty = LN_TENSOR_EMPTY;
	tu_tensor(&t, 1, (int64_t[]){2}, (float[]){1, 2});
	encode_bad((ln_st_item[]){{.name = "a", .tensor = &t}, {.name = "a", .tensor = &t}}, 2, NULL, 0,
	           LN_EARG, "the name 'a' is given twice");
	encode_bad((ln_st_item[]){{.name = "", .tensor = &t}}, 1, NULL, 0, LN_EARG,
	           "'' cannot be a tensor name");
	encode_bad((ln_st_item[]){{.name = "__metadata__", .tensor = &t}}, 1, NULL, 0, LN_EARG,
	           "cannot be a tensor name");
	encode_bad((ln_st_item[]){{.name = "a\xff", .tensor = &t}}, 1, NULL, 0, LN_EARG, "not UTF-8");
	encode_bad((ln_st_item[]){{.name = "a\xed\xa0\x80", .tensor = &t}}, 1, NULL, 0, LN_EARG,
	           "not UTF-8");  /* a surrogate */
	encode_bad((ln_st_item[]){{.name = "a\xc0\xaf", .tensor = &t}}, 1, NULL, 0, LN_EARG,
	           "not UTF-8");  /* overlong '/' */
	encode_bad((ln_st_item[]){{.name = "e", .tensor = &empty}}, 1, NULL, 0, LN_EARG,
	           "tensor 'e' is empty");
	encode_bad(NULL, 0, (ln_st_meta[]){{"k", "v\xfe"}}, 1, LN_EARG, "metadata 'k'");

	/* allocation failures: LN_ENOMEM from the file buffer, no leak */
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	ln_alloc_fail_nth(1);
	encode_bad((ln_st_item[]){{.name = "a", .tensor = &t}}, 1, NULL, 0, LN_ENOMEM, "out of memory");
	ln_alloc_fail_nth(0);
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
	ln_tensor_release(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_half_all_patterns),
		cmocka_unit_test(test_bfloat16),
		cmocka_unit_test(test_parse_dtypes),
		cmocka_unit_test(test_parse_empty_and_unaligned),
		cmocka_unit_test(test_parse_refuses_lengths),
		cmocka_unit_test(test_parse_refuses_json),
		cmocka_unit_test(test_parse_refuses_entries),
		cmocka_unit_test(test_parse_refuses_layout),
		cmocka_unit_test(test_parse_out_of_memory),
		cmocka_unit_test(test_encode_round_trip),
		cmocka_unit_test(test_encode_refuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
