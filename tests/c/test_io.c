/*
 * test_io.c -- the IDX and CSV loaders.
 *
 * Every file is written by the test itself into a fresh temporary
 * directory: IDX files raw and gzip-compressed (written with zlib's gzopen), valid ones
 * of every type and broken ones of every kind the loader must refuse.
 */
#define _DEFAULT_SOURCE  /* mkdtemp */

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "core/alloc.h"
#include "core/tensor.h"
#include "io/csv.h"
#include "io/idx.h"

static char tmpdir[256];

/* Full path of a file in the temp dir (static buffer: one at a time). */
static const char *tpath(const char *name)
{
	static char buf[2][512];
	static int which;
	which ^= 1;
	snprintf(buf[which], sizeof buf[which], "%s/%s", tmpdir, name);
	return buf[which];
}

static void write_bytes(const char *name, const void *data, size_t n, int gz)
{
	const char *path = tpath(name);
	if (gz) {
		gzFile f = gzopen(path, "wb");
		assert_non_null(f);
		if (n)
			assert_int_equal(gzwrite(f, data, (unsigned)n), (int)n);
		assert_int_equal(gzclose(f), Z_OK);
	} else {
		FILE *f = fopen(path, "wb");
		assert_non_null(f);
		if (n)
			assert_int_equal(fwrite(data, 1, n, f), n);
		assert_int_equal(fclose(f), 0);
	}
}

/* Writes an IDX file: header (type, dims) then `n` data bytes. */
static void write_idx(const char *name, int gz, int type, int ndim, const uint32_t *dims,
                      const void *data, size_t n)
{
	size_t hlen = 4 + 4 * (size_t)ndim;
	unsigned char *buf = malloc(hlen + n + 1);
	assert_non_null(buf);
	buf[0] = 0;
	buf[1] = 0;
	buf[2] = (unsigned char)type;
	buf[3] = (unsigned char)ndim;
	for (int i = 0; i < ndim; i++) {
		buf[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
		buf[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
		buf[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
		buf[7 + 4 * i] = (unsigned char)dims[i];
	}
	if (n)
		memcpy(buf + hlen, data, n);
	write_bytes(name, buf, hlen + n, gz);
	free(buf);
}

static void put_be32(unsigned char *b, uint32_t v)
{
	b[0] = (unsigned char)(v >> 24);
	b[1] = (unsigned char)(v >> 16);
	b[2] = (unsigned char)(v >> 8);
	b[3] = (unsigned char)v;
}

/* Loads name expecting failure with code and message "<path>: <msg>". */
static void expect_idx_error(const char *name, ln_status code, const char *msg)
{
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	ln_tensor t = LN_TENSOR_EMPTY;
	ln_error err = {0};
	const char *path = tpath(name);
	ln_status st = ln_idx_load(&t, path, &err);
	if (st != code)
		fail_msg("%s: status %s, want %s (%s)", name, ln_status_name(st), ln_status_name(code),
		         err.msg);
	assert_true(ln_tensor_is_empty(&t));
	char want[1024];
	snprintf(want, sizeof want, "%s: %s", path, msg);
	assert_string_equal(err.msg, want);
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "%s/lunet-test-io-XXXXXX",
	         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	/* The files written here, then the directory. */
	static const char *names[] = {
		"u8.idx", "u8.idx.gz", "i8.idx", "i16.idx", "i32.idx.gz", "f32.idx", "f64.idx",
		"trunc.idx", "trunc.idx.gz", "cut.idx.gz", "magic.idx", "type.idx", "ndim0.idx",
		"ndim9.idx", "zero.idx", "huge.idx", "huge2.idx", "big.idx", "trail.idx", "trail.idx.gz",
		"empty.idx", "short.idx", "shortdims.idx", "crc.idx.gz", "oom.idx.gz", "gzmagic.idx",
		"members.idx.gz",
		"a.csv", "b.csv", "c.csv", "ragged.csv", "nan.csv", "bad.csv", "bad2.csv", "empty.csv",
		"hdr.csv", "one.csv", "quote.csv", "big.csv", "blank.csv", "nul.csv",
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		unlink(tpath(names[i]));
	rmdir(tpath("dir"));
	return rmdir(tmpdir);
}

/* ======================================================================
 * IDX: valid files of every type
 * ====================================================================== */

static void check_loaded(const char *name, int ndim, const int64_t *shape, const float *want,
                         size_t n)
{
	ln_tensor t = LN_TENSOR_EMPTY;
	ln_error err;
	if (ln_idx_load(&t, tpath(name), &err) != LN_OK)
		fail_msg("%s: %s", name, err.msg);
	assert_int_equal(t.ndim, ndim);
	for (int i = 0; i < ndim; i++)
		assert_int_equal(t.shape[i], shape[i]);
	assert_true(ln_tensor_is_contiguous(&t));
	assert_int_equal(ln_tensor_numel(&t), (int64_t)n);
	for (size_t i = 0; i < n; i++)
		if (ln_tensor_data(&t)[i] != want[i])
			fail_msg("%s: value %zu is %.9g, want %.9g", name, i, ln_tensor_data(&t)[i], want[i]);
	ln_tensor_release(&t);
}

static void test_idx_ubyte_raw_and_gz(void **state)
{
	const unsigned char data[6] = {0, 1, 127, 128, 200, 255};
	const float want[6] = {0, 1, 127, 128, 200, 255};
	write_idx("u8.idx", 0, 0x08, 2, (uint32_t[]){2, 3}, data, 6);
	write_idx("u8.idx.gz", 1, 0x08, 2, (uint32_t[]){2, 3}, data, 6);
	check_loaded("u8.idx", 2, (int64_t[]){2, 3}, want, 6);
	check_loaded("u8.idx.gz", 2, (int64_t[]){2, 3}, want, 6);
}

static void test_idx_signed_types(void **state)
{
	/* int8: 0x80 = -128, 0xFF = -1 */
	const unsigned char i8[4] = {0x80, 0xFF, 0x00, 0x7F};
	write_idx("i8.idx", 0, 0x09, 1, (uint32_t[]){4}, i8, 4);
	check_loaded("i8.idx", 1, (int64_t[]){4}, (float[]){-128, -1, 0, 127}, 4);

	/* int16 big-endian: 0xFED4 = -300, 0x03E8 = 1000 */
	const unsigned char i16[4] = {0xFE, 0xD4, 0x03, 0xE8};
	write_idx("i16.idx", 0, 0x0B, 1, (uint32_t[]){2}, i16, 4);
	check_loaded("i16.idx", 1, (int64_t[]){2}, (float[]){-300, 1000}, 2);

	/* int32 big-endian: 0xFFFEEE90 = -70000, 0x0001E240 = 123456; gz */
	const unsigned char i32[8] = {0xFF, 0xFE, 0xEE, 0x90, 0x00, 0x01, 0xE2, 0x40};
	write_idx("i32.idx.gz", 1, 0x0C, 3, (uint32_t[]){1, 2, 1}, i32, 8);
	check_loaded("i32.idx.gz", 3, (int64_t[]){1, 2, 1}, (float[]){-70000, 123456}, 2);
}

static void test_idx_float_types(void **state)
{
	/* float32 big-endian: 1.5 = 0x3FC00000, -2.25 = 0xC0100000 */
	const unsigned char f32[8] = {0x3F, 0xC0, 0x00, 0x00, 0xC0, 0x10, 0x00, 0x00};
	write_idx("f32.idx", 0, 0x0D, 1, (uint32_t[]){2}, f32, 8);
	check_loaded("f32.idx", 1, (int64_t[]){2}, (float[]){1.5f, -2.25f}, 2);

	/* float64 big-endian: 0.1 = 0x3FB999999999999A, -1e10 = 0xC202A05F20000000 */
	const unsigned char f64[16] = {0x3F, 0xB9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A,
	                               0xC2, 0x02, 0xA0, 0x5F, 0x20, 0x00, 0x00, 0x00};
	write_idx("f64.idx", 0, 0x0E, 1, (uint32_t[]){2}, f64, 16);
	check_loaded("f64.idx", 1, (int64_t[]){2}, (float[]){(float)0.1, -1e10f}, 2);
}

/* ======================================================================
 * IDX: broken files
 * ====================================================================== */

static void test_idx_truncated(void **state)
{
	/* {60000,28,28} ubyte claims 47040000 bytes; only 1000 are there.
	 * Memory committed while finding out stays far below the claim. */
	unsigned char data[1000];
	memset(data, 7, sizeof data);
	write_idx("trunc.idx", 0, 0x08, 3, (uint32_t[]){60000, 28, 28}, data, sizeof data);
	write_idx("trunc.idx.gz", 1, 0x08, 3, (uint32_t[]){60000, 28, 28}, data, sizeof data);
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	expect_idx_error("trunc.idx", LN_EFORMAT, "truncated: expected 47040000 bytes of data, got 1000");
	expect_idx_error("trunc.idx.gz", LN_EFORMAT,
	                 "truncated: expected 47040000 bytes of data, got 1000");
	ln_alloc_get_stats(&after);
	uint64_t bound = before.bytes_live + ((uint64_t)4 << 20);
	assert_true(after.bytes_peak <= (before.bytes_peak > bound ? before.bytes_peak : bound));
}

static void test_idx_cut_gzip_stream(void **state)
{
	/* A valid gzip file of 4096 data bytes, cut in the middle of the
	 * compressed stream. */
	unsigned char data[4096];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (unsigned char)(i * 2654435761u >> 13);  /* poorly compressible */
	write_idx("cut.idx.gz", 1, 0x08, 2, (uint32_t[]){64, 64}, data, sizeof data);
	const char *path = tpath("cut.idx.gz");
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(truncate(path, sb.st_size / 2), 0);

	ln_tensor t = LN_TENSOR_EMPTY;
	ln_error err;
	assert_int_equal(ln_idx_load(&t, path, &err), LN_EFORMAT);
	assert_true(ln_tensor_is_empty(&t));
	char prefix[600];
	snprintf(prefix, sizeof prefix, "%s: truncated: expected 4096 bytes of data, got ", path);
	assert_memory_equal(err.msg, prefix, strlen(prefix));
	assert_non_null(strstr(err.msg, "(the compressed stream ends early)"));
}

static void test_idx_gzip_members(void **state)
{
	/* Two gzip members back to back (as gzopen(path, "ab") or `cat a.gz b.gz` make): the
	 * header in the first, the data in the second; one file. */
	unsigned char head[12] = {0, 0, 0x08, 2};
	put_be32(head + 4, 2);
	put_be32(head + 8, 3);
	const unsigned char data[6] = {1, 2, 3, 4, 5, 6};
	const char *path = tpath("members.idx.gz");
	for (int m = 0; m < 2; m++) {
		gzFile f = gzopen(path, m == 0 ? "wb" : "ab");  /* "ab": a new member */
		assert_non_null(f);
		if (m == 0)
			assert_int_equal(gzwrite(f, head, sizeof head), (int)sizeof head);
		else
			assert_int_equal(gzwrite(f, data, sizeof data), (int)sizeof data);
		assert_int_equal(gzclose(f), Z_OK);
	}
	check_loaded("members.idx.gz", 2, (int64_t[]){2, 3}, (float[]){1, 2, 3, 4, 5, 6}, 6);
}

static void test_idx_corrupt_gzip(void **state)
{
	/* Flip a bit of the CRC-32 in the gzip trailer (8 bytes from the end). */
	unsigned char data[100];
	memset(data, 3, sizeof data);
	write_idx("crc.idx.gz", 1, 0x08, 1, (uint32_t[]){100}, data, sizeof data);
	const char *path = tpath("crc.idx.gz");
	FILE *f = fopen(path, "r+b");
	assert_non_null(f);
	assert_int_equal(fseek(f, -8, SEEK_END), 0);
	int c = fgetc(f);
	assert_int_equal(fseek(f, -8, SEEK_END), 0);
	fputc(c ^ 1, f);
	fclose(f);
	expect_idx_error("crc.idx.gz", LN_EFORMAT, "corrupt gzip data (incorrect data check)");
}

static void test_idx_bad_header(void **state)
{
	const unsigned char bad_magic[] = {0x01, 0x00, 0x08, 0x01, 0, 0, 0, 1, 9};
	write_bytes("magic.idx", bad_magic, sizeof bad_magic, 0);
	expect_idx_error("magic.idx", LN_EFORMAT,
	                 "not an IDX file: magic number starts with 0x01 0x00, expected 0x00 0x00");

	/* a gzip file that is not gzip-compressed IDX: raw gzip magic bytes */
	const unsigned char gzm[] = {0x1f, 0x8b, 0x08, 0x00, 0x00};
	write_bytes("gzmagic.idx", gzm, sizeof gzm, 0);
	ln_tensor t = LN_TENSOR_EMPTY;
	ln_error err;
	assert_int_not_equal(ln_idx_load(&t, tpath("gzmagic.idx"), &err), LN_OK);
	assert_true(ln_tensor_is_empty(&t));

	const unsigned char bad_type[] = {0x00, 0x00, 0x0A, 0x01, 0, 0, 0, 1, 9};
	write_bytes("type.idx", bad_type, sizeof bad_type, 0);
	expect_idx_error("type.idx", LN_EFORMAT,
	                 "unknown IDX data type code 0x0a (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or "
	                 "0x0E)");

	const unsigned char ndim0[] = {0x00, 0x00, 0x08, 0x00, 9};
	write_bytes("ndim0.idx", ndim0, sizeof ndim0, 0);
	expect_idx_error("ndim0.idx", LN_EFORMAT, "IDX header has 0 dimensions, expected 1..8");
	const unsigned char ndim9[] = {0x00, 0x00, 0x08, 0x09, 9};
	write_bytes("ndim9.idx", ndim9, sizeof ndim9, 0);
	expect_idx_error("ndim9.idx", LN_EFORMAT, "IDX header has 9 dimensions, expected 1..8");

	write_idx("zero.idx", 0, 0x08, 3, (uint32_t[]){4, 0, 2}, NULL, 0);
	expect_idx_error("zero.idx", LN_EFORMAT, "dimension 2 of the IDX header is 0");

	write_bytes("empty.idx", "", 0, 0);
	expect_idx_error("empty.idx", LN_EFORMAT, "empty file, expected an IDX header");
	write_bytes("short.idx", "\0\0", 2, 0);
	expect_idx_error("short.idx", LN_EFORMAT, "truncated header: expected 4 bytes of magic, got 2");
	const unsigned char shortdims[] = {0x00, 0x00, 0x08, 0x03, 0, 0, 0, 5, 0, 0};
	write_bytes("shortdims.idx", shortdims, sizeof shortdims, 0);
	expect_idx_error("shortdims.idx", LN_EFORMAT,
	                 "truncated header: expected 12 bytes of dimensions, got 6");
}

static void test_idx_oversized(void **state)
{
	/* 2^31 x 2^31 floats: 2^64 bytes, which overflows */
	unsigned char hdr[12] = {0, 0, 0x0D, 2};
	put_be32(hdr + 4, 1u << 31);
	put_be32(hdr + 8, 1u << 31);
	write_bytes("huge.idx", hdr, sizeof hdr, 0);
	expect_idx_error("huge.idx", LN_ERANGE,
	                 "IDX shape {2147483648,2147483648} is too large (its size overflows)");

	/* 65536 x 65536 x 16 bytes = 2^36 values, 2^38 bytes as float: over
	 * the 16 GiB limit, refused before any allocation */
	write_idx("huge2.idx", 0, 0x08, 3, (uint32_t[]){65536, 65536, 16}, NULL, 0);
	char msg[256];
	snprintf(msg, sizeof msg,
	         "IDX shape {65536,65536,16} needs 274877906944 bytes, more than the allocation limit "
	         "of %zu bytes", ln_alloc_limit());
	expect_idx_error("huge2.idx", LN_ERANGE, msg);

	/* a lowered limit applies: 300 ubytes become 1200 bytes of float */
	unsigned char data[300] = {0};
	write_idx("big.idx", 0, 0x08, 1, (uint32_t[]){300}, data, sizeof data);
	size_t old = ln_alloc_limit();
	ln_alloc_set_limit(1000);
	expect_idx_error("big.idx", LN_ERANGE,
	                 "IDX shape {300} needs 1200 bytes, more than the allocation limit of 1000 "
	                 "bytes");
	ln_alloc_set_limit(old);
	check_loaded("big.idx", 1, (int64_t[]){300}, (float[300]){0}, 300);
}

static void test_idx_trailing_data(void **state)
{
	const unsigned char data[7] = {1, 2, 3, 4, 5, 6, 99};
	write_idx("trail.idx", 0, 0x08, 2, (uint32_t[]){2, 3}, data, 7);
	write_idx("trail.idx.gz", 1, 0x08, 2, (uint32_t[]){2, 3}, data, 7);
	expect_idx_error("trail.idx", LN_EFORMAT,
	                 "unexpected data after the 6 bytes declared by the header (shape {2,3})");
	expect_idx_error("trail.idx.gz", LN_EFORMAT,
	                 "unexpected data after the 6 bytes declared by the header (shape {2,3})");
}

static void test_idx_missing_and_unreadable(void **state)
{
	char msg[256];
	snprintf(msg, sizeof msg, "cannot open: %s", strerror(ENOENT));
	expect_idx_error("no-such-file.idx", LN_EIO, msg);
	assert_int_equal(mkdir(tpath("dir"), 0700), 0);
	snprintf(msg, sizeof msg, "read error: %s", strerror(EISDIR));
	expect_idx_error("dir", LN_EIO, msg);
}

static void test_idx_out_of_memory(void **state)
{
	unsigned char data[3000];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (unsigned char)i;
	write_idx("oom.idx.gz", 1, 0x08, 2, (uint32_t[]){30, 100}, data, sizeof data);
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	int failures = 0;
	for (long n = 1;; n++) {
		ln_tensor t = LN_TENSOR_EMPTY;
		ln_error err;
		ln_alloc_fail_nth(n);
		ln_status st = ln_idx_load(&t, tpath("oom.idx.gz"), &err);
		ln_alloc_fail_nth(0);
		if (st == LN_OK) {
			assert_float_equal(ln_tensor_data(&t)[2999], (float)(2999 % 256), 0);
			ln_tensor_release(&t);
			break;
		}
		assert_int_equal(st, LN_ENOMEM);
		assert_true(ln_tensor_is_empty(&t));
		failures++;
	}
	assert_true(failures >= 2);  /* the byte buffer and the tensor */
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
}

/* The real thing, when Debian's dataset-fashion-mnist is installed. */
static void test_idx_fashion_mnist_labels(void **state)
{
	const char *path = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
	if (access(path, R_OK) != 0)
		skip();
	ln_tensor t = LN_TENSOR_EMPTY;
	ln_error err;
	if (ln_idx_load(&t, path, &err) != LN_OK)
		fail_msg("%s", err.msg);
	assert_int_equal(t.ndim, 1);
	assert_int_equal(t.shape[0], 10000);
	long count[10] = {0};
	for (int i = 0; i < 10000; i++) {
		float v = ln_tensor_data(&t)[i];
		assert_true(v >= 0 && v <= 9 && v == floorf(v));
		count[(int)v]++;
	}
	for (int k = 0; k < 10; k++)
		assert_int_equal(count[k], 1000);  /* the test set is balanced */
	ln_tensor_release(&t);
}

/* ======================================================================
 * CSV
 * ====================================================================== */

static void write_text(const char *name, const char *text)
{
	write_bytes(name, text, strlen(text), 0);
}

static void expect_csv_error(const char *name, const ln_csv_options *o, ln_status code,
                             const char *msg)
{
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	ln_csv_data d;
	ln_error err = {0};
	const char *path = tpath(name);
	ln_status st = ln_csv_load(&d, path, o, &err);
	if (st != code)
		fail_msg("%s: status %s, want %s (%s)", name, ln_status_name(st), ln_status_name(code),
		         err.msg);
	assert_true(ln_tensor_is_empty(&d.x));
	assert_true(ln_tensor_is_empty(&d.y));
	assert_null(d.names);
	char want[1024];
	snprintf(want, sizeof want, "%s: %s", path, msg);
	assert_string_equal(err.msg, want);
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
}

static void assert_values(const ln_tensor *t, const float *want, int64_t n)
{
	assert_int_equal(ln_tensor_numel(t), n);
	for (int64_t i = 0; i < n; i++)
		if (ln_tensor_data(t)[i] != want[i])
			fail_msg("value %lld is %.9g, want %.9g", (long long)i, ln_tensor_data(t)[i], want[i]);
}

static void test_csv_label_by_name(void **state)
{
	write_text("a.csv", "sepal,petal,species\n5.1,3.5,1\n4.9,-3e0,2\n6.25,.5,3\n");
	ln_csv_options o = ln_csv_defaults();
	o.label = "species";
	ln_csv_data d;
	ln_error err;
	if (ln_csv_load(&d, tpath("a.csv"), &o, &err) != LN_OK)
		fail_msg("%s", err.msg);
	assert_int_equal(d.x.ndim, 2);
	assert_int_equal(d.x.shape[0], 3);
	assert_int_equal(d.x.shape[1], 2);
	assert_int_equal(d.y.ndim, 1);
	assert_int_equal(d.y.shape[0], 3);
	assert_values(&d.x, (float[]){5.1f, 3.5f, 4.9f, -3.0f, 6.25f, 0.5f}, 6);
	assert_values(&d.y, (float[]){1, 2, 3}, 3);
	assert_int_equal(d.ncols, 3);
	assert_int_equal(d.label_col, 2);
	assert_string_equal(d.names[0], "sepal");
	assert_string_equal(d.names[2], "species");
	ln_csv_data_free(&d);
	ln_csv_data_free(&d);  /* idempotent */
}

static void test_csv_label_by_index_no_header(void **state)
{
	/* CRLF, spaces, a blank line, no newline at the end */
	write_text("b.csv", "1, 10, 2\r\n3 ,20,4\r\n\r\n5,30 ,6");
	ln_csv_options o = ln_csv_defaults();
	o.header = false;
	o.label_index = 1;
	ln_csv_data d;
	ln_error err;
	if (ln_csv_load(&d, tpath("b.csv"), &o, &err) != LN_OK)
		fail_msg("%s", err.msg);
	assert_int_equal(d.x.shape[0], 3);
	assert_int_equal(d.x.shape[1], 2);
	assert_values(&d.x, (float[]){1, 2, 3, 4, 5, 6}, 6);
	assert_values(&d.y, (float[]){10, 20, 30}, 3);
	assert_null(d.names);
	ln_csv_data_free(&d);
}

static void test_csv_no_label_quotes_bom(void **state)
{
	write_text("c.csv", "\xEF\xBB\xBF\"width (cm)\",\"a \"\"b\"\"\", c\n1,2,3\n\"4\",5,6\n");
	ln_csv_data d;
	ln_error err;
	if (ln_csv_load(&d, tpath("c.csv"), NULL, &err) != LN_OK)
		fail_msg("%s", err.msg);
	assert_int_equal(d.x.shape[0], 2);
	assert_int_equal(d.x.shape[1], 3);
	assert_true(ln_tensor_is_empty(&d.y));
	assert_int_equal(d.label_col, -1);
	assert_values(&d.x, (float[]){1, 2, 3, 4, 5, 6}, 6);
	assert_string_equal(d.names[0], "width (cm)");
	assert_string_equal(d.names[1], "a \"b\"");
	assert_string_equal(d.names[2], "c");
	ln_csv_data_free(&d);

	/* separator option */
	write_text("blank.csv", "a;b\n1;2\n");
	ln_csv_options o = ln_csv_defaults();
	o.sep = ';';
	assert_int_equal(ln_csv_load(&d, tpath("blank.csv"), &o, &err), LN_OK);
	assert_values(&d.x, (float[]){1, 2}, 2);
	ln_csv_data_free(&d);
}

static void test_csv_errors(void **state)
{
	ln_csv_options o = ln_csv_defaults();
	o.label = "label";

	write_text("ragged.csv", "a,b,c,label\n1,2,3,4\n5,6,7,8\n\n1,2,3\n");
	expect_csv_error("ragged.csv", &o, LN_EFORMAT, "line 5 has 3 fields, expected 4");

	write_text("bad.csv", "sepal,b,label\n1,2,3\n4,5,6\n7,8,9\n10,11,12\n13,14,15\nabc,1,2\n");
	expect_csv_error("bad.csv", &o, LN_EFORMAT, "line 7, column 'sepal': 'abc' is not a number");
	ln_csv_options nh = ln_csv_defaults();
	nh.header = false;
	write_text("bad2.csv", "1,2,3\n4,,6\n");
	expect_csv_error("bad2.csv", &nh, LN_EFORMAT, "line 2, column 2: '' is not a number");
	write_text("nan.csv", "x,label\n1,2\nnan,1\n");
	expect_csv_error("nan.csv", &o, LN_EFORMAT,
	                 "line 3, column 'x': 'nan' is not a finite float32 number");
	write_text("big.csv", "x,label\n1e39,2\n");
	expect_csv_error("big.csv", &o, LN_EFORMAT,
	                 "line 2, column 'x': '1e39' is not a finite float32 number");
	write_text("quote.csv", "x,label\n\"1,2\n");
	expect_csv_error("quote.csv", &o, LN_EFORMAT, "line 2: unterminated quoted field");
	/* A NUL byte used to cut its line short and glue the next one on:
	 * "1,2" then "3,4" read as the one row "1,23,4". */
	static const char nul1[] = "x,label\n1,2\0junk\n3,4\n", nul2[] = "x,label\n\0\n1,2\n";
	write_bytes("nul.csv", nul1, sizeof nul1 - 1, 0);
	expect_csv_error("nul.csv", &o, LN_EFORMAT, "line 2 contains a NUL byte");
	write_bytes("nul.csv", nul2, sizeof nul2 - 1, 0);
	expect_csv_error("nul.csv", &o, LN_EFORMAT, "line 2 contains a NUL byte");

	write_text("a.csv", "sepal,petal,species\n5.1,3.5,1\n");
	expect_csv_error("a.csv", &o, LN_EARG,
	                 "no column named 'label' (columns: 'sepal', 'petal', 'species')");
	ln_csv_options oi = ln_csv_defaults();
	oi.label_index = 3;
	expect_csv_error("a.csv", &oi, LN_EARG, "label column 4 out of range: the file has 3 columns");
	nh.label = "species";
	expect_csv_error("a.csv", &nh, LN_EARG,
	                 "label column 'species' given by name, but the file is read without a header");

	write_text("empty.csv", "");
	expect_csv_error("empty.csv", &o, LN_EFORMAT, "empty file");
	write_text("blank.csv", "\n  \n\r\n");
	expect_csv_error("blank.csv", NULL, LN_EFORMAT, "empty file");
	write_text("hdr.csv", "a,b,label\n");
	expect_csv_error("hdr.csv", &o, LN_EFORMAT, "no data rows after the header");
	write_text("one.csv", "label\n1\n");
	expect_csv_error("one.csv", &o, LN_EARG,
	                 "the label is the only column: no feature columns left for x");

	char msg[256];
	snprintf(msg, sizeof msg, "cannot open: %s", strerror(ENOENT));
	expect_csv_error("no-such.csv", &o, LN_EIO, msg);
}

static void test_csv_out_of_memory(void **state)
{
	/* Enough rows that the value array grows a few times. */
	char *text = malloc(200000);
	assert_non_null(text);
	size_t len = (size_t)sprintf(text, "a,b,label\n");
	for (int i = 0; i < 3000; i++)
		len += (size_t)sprintf(text + len, "%d,%d.5,%d\n", i, -i, i % 3);
	write_bytes("big.csv", text, len, 0);
	free(text);
	ln_csv_options o = ln_csv_defaults();
	o.label = "label";
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	int failures = 0;
	for (long n = 1;; n++) {
		ln_csv_data d;
		ln_error err;
		ln_alloc_fail_nth(n);
		ln_status st = ln_csv_load(&d, tpath("big.csv"), &o, &err);
		ln_alloc_fail_nth(0);
		if (st == LN_OK) {
			assert_int_equal(d.x.shape[0], 3000);
			assert_float_equal(ln_tensor_data(&d.x)[2 * 2999 + 1], -2999.5f, 0);
			assert_float_equal(ln_tensor_data(&d.y)[2999], (2999 % 3), 0);
			ln_csv_data_free(&d);
			break;
		}
		assert_int_equal(st, LN_ENOMEM);
		failures++;
	}
	assert_true(failures >= 5);
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idx_truncated),  /* first: checks the memory peak */
		cmocka_unit_test(test_idx_ubyte_raw_and_gz),
		cmocka_unit_test(test_idx_signed_types),
		cmocka_unit_test(test_idx_float_types),
		cmocka_unit_test(test_idx_cut_gzip_stream),
		cmocka_unit_test(test_idx_gzip_members),
		cmocka_unit_test(test_idx_corrupt_gzip),
		cmocka_unit_test(test_idx_bad_header),
		cmocka_unit_test(test_idx_oversized),
		cmocka_unit_test(test_idx_trailing_data),
		cmocka_unit_test(test_idx_missing_and_unreadable),
		cmocka_unit_test(test_idx_out_of_memory),
		cmocka_unit_test(test_idx_fashion_mnist_labels),
		cmocka_unit_test(test_csv_label_by_name),
		cmocka_unit_test(test_csv_label_by_index_no_header),
		cmocka_unit_test(test_csv_no_label_quotes_bom),
		cmocka_unit_test(test_csv_errors),
		cmocka_unit_test(test_csv_out_of_memory),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
