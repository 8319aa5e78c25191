/*
 * idx.c -- IDX loader (raw or gzip through zlib's gzread, which reads
 * both transparently).
 *
 * The header is read and checked field by field.  The data is then read
 * into a byte buffer that grows (doubling) only as bytes actually arrive,
 * up to the declared size plus one byte (to detect trailing data): a
 * 200-byte file that claims 4 GiB of data costs 1 MiB, not 4 GiB.  Only
 * once the size is confirmed is the float tensor allocated and filled.
 */
#include "idx.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <zlib.h>

#include "../core/alloc.h"

#define FIRST_CHUNK ((size_t)1 << 20)  /* initial data buffer, bytes */
#define MAX_READ ((size_t)1 << 30)     /* largest single gzread, bytes */

/* Element size in bytes of an IDX type code, 0 if unknown. */
static size_t type_size(int code)
{
	switch (code) {
	case 0x08: return 1;  /* uint8 */
	case 0x09: return 1;  /* int8 */
	case 0x0B: return 2;  /* int16 */
	case 0x0C: return 4;  /* int32 */
	case 0x0D: return 4;  /* float32 */
	case 0x0E: return 8;  /* float64 */
	default: return 0;
	}
}

static uint32_t be32(const unsigned char *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static uint64_t be64(const unsigned char *b)
{
	return (uint64_t)be32(b) << 32 | be32(b + 4);
}

/* Reads up to n bytes into buf, stopping early only at the end of the
 * stream; *got receives the count.  A read error or corrupt compressed
 * data is an error naming the path. */
static ln_status read_full(gzFile gz, void *buf, size_t n, size_t *got, const char *path,
                           ln_error *err)
{
	size_t total = 0;
	while (total < n) {
		size_t want = n - total < MAX_READ ? n - total : MAX_READ;
		errno = 0;
		int r = gzread(gz, (unsigned char *)buf + total, (unsigned)want);
		if (r < 0) {
			int zerr;
			const char *zmsg = gzerror(gz, &zerr);
			size_t plen = strlen(path);
			if (strncmp(zmsg, path, plen) == 0 && strncmp(zmsg + plen, ": ", 2) == 0)
				zmsg += plen + 2;  /* zlib prefixes the path; ours is already there */
			*got = total;
			if (zerr == Z_ERRNO)
				return ln_fail(err, LN_EIO, "%s: read error: %s", path, strerror(errno));
			if (zerr == Z_MEM_ERROR)
				return ln_fail(err, LN_ENOMEM, "%s: out of memory while decompressing", path);
			return ln_fail(err, LN_EFORMAT, "%s: corrupt gzip data (%s)", path, zmsg);
		}
		if (r == 0)
			break;
		total += (size_t)r;
	}
	*got = total;
	return LN_OK;
}

/* " (the compressed stream ends early)" when zlib saw a truncated gzip
 * stream, else "". */
static const char *gz_truncation_note(gzFile gz)
{
	int zerr;
	gzerror(gz, &zerr);
	return zerr == Z_BUF_ERROR ? " (the compressed stream ends early)" : "";
}

/* Converts n big-endian values of the given type code from src into dst. */
static void convert(float *dst, const unsigned char *src, size_t n, int code)
{
	switch (code) {
	case 0x08:
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)src[i];
		break;
	case 0x09:
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)(int8_t)src[i];
		break;
	case 0x0B:
		for (size_t i = 0; i < n; i++) {
			uint16_t u = (uint16_t)(src[2 * i] << 8 | src[2 * i + 1]);
			int16_t v;
			memcpy(&v, &u, sizeof v);
			dst[i] = (float)v;
		}
		break;
	case 0x0C:
		for (size_t i = 0; i < n; i++) {
			uint32_t u = be32(src + 4 * i);
			int32_t v;
			memcpy(&v, &u, sizeof v);
			dst[i] = (float)v;
		}
		break;
	case 0x0D:
		for (size_t i = 0; i < n; i++) {
			uint32_t u = be32(src + 4 * i);
			float v;
			memcpy(&v, &u, sizeof v);
			dst[i] = v;
		}
		break;
	case 0x0E:
		for (size_t i = 0; i < n; i++) {
			uint64_t u = be64(src + 8 * i);
			double v;
			memcpy(&v, &u, sizeof v);
			dst[i] = (float)v;
		}
		break;
	}
}

/* Reads the data section: exactly `need` bytes are expected, and one more
 * is asked for to detect trailing data.  On success *buf (from ln_malloc,
 * the caller frees it) holds the bytes and *got their count, which may
 * differ from need (the caller reports that). */
static ln_status read_data(gzFile gz, size_t need, unsigned char **buf, size_t *got,
                           const char *path, ln_error *err)
{
	size_t want = need + 1;
	size_t cap = want < FIRST_CHUNK ? want : FIRST_CHUNK;
	size_t len = 0;
	unsigned char *b = ln_malloc(cap);
	*buf = NULL;
	*got = 0;
	if (!b)
		return ln_fail(err, LN_ENOMEM, "%s: out of memory", path);
	for (;;) {
		size_t r;
		ln_status st = read_full(gz, b + len, cap - len, &r, path, err);
		if (st != LN_OK) {
			ln_free(b);
			return st;
		}
		len += r;
		if (len < cap || cap == want)
			break;  /* end of stream, or everything we could want */
		size_t ncap = cap > want / 2 ? want : 2 * cap;
		unsigned char *nb = ln_malloc(ncap);
		if (!nb) {
			ln_free(b);
			return ln_fail(err, LN_ENOMEM, "%s: out of memory reading %zu bytes of data", path,
			               need);
		}
		memcpy(nb, b, len);
		ln_free(b);
		b = nb;
		cap = ncap;
	}
	*buf = b;
	*got = len;
	return LN_OK;
}

/* Parses and checks the header; fills *code, *ndim, shape, *numel. */
static ln_status read_header(gzFile gz, int *code, int *ndim, int64_t shape[LN_MAX_DIMS],
                             size_t *numel, const char *path, ln_error *err)
{
	unsigned char magic[4];
	size_t got;
	ln_status st = read_full(gz, magic, 4, &got, path, err);
	if (st != LN_OK)
		return st;
	if (got == 0)
		return ln_fail(err, LN_EFORMAT, "%s: empty file, expected an IDX header", path);
	if (got < 4)
		return ln_fail(err, LN_EFORMAT, "%s: truncated header: expected 4 bytes of magic, got %zu",
		               path, got);
	if (magic[0] != 0 || magic[1] != 0)
		return ln_fail(err, LN_EFORMAT,
		               "%s: not an IDX file: magic number starts with 0x%02x 0x%02x, expected "
		               "0x00 0x00", path, magic[0], magic[1]);
	*code = magic[2];
	if (type_size(*code) == 0)
		return ln_fail(err, LN_EFORMAT,
		               "%s: unknown IDX data type code 0x%02x (expected 0x08, 0x09, 0x0B, 0x0C, "
		               "0x0D or 0x0E)", path, *code);
	*ndim = magic[3];
	if (*ndim < 1 || *ndim > LN_MAX_DIMS)
		return ln_fail(err, LN_EFORMAT, "%s: IDX header has %d dimensions, expected 1..%d", path,
		               *ndim, LN_MAX_DIMS);

	unsigned char dims[4 * LN_MAX_DIMS];
	size_t dbytes = 4 * (size_t)*ndim;
	if ((st = read_full(gz, dims, dbytes, &got, path, err)) != LN_OK)
		return st;
	if (got < dbytes)
		return ln_fail(err, LN_EFORMAT,
		               "%s: truncated header: expected %zu bytes of dimensions, got %zu%s", path,
		               dbytes, got, gz_truncation_note(gz));

	uint64_t n = 1;
	bool overflow = false;
	for (int i = 0; i < *ndim; i++) {
		uint32_t d = be32(dims + 4 * i);
		if (d == 0)
			return ln_fail(err, LN_EFORMAT, "%s: dimension %d of the IDX header is 0", path,
			               i + 1);
		shape[i] = d;
		if (__builtin_mul_overflow(n, (uint64_t)d, &n))
			overflow = true;
	}
	/* Both the raw bytes and the float tensor must fit the allocation
	 * limit; the float one is the larger unless the type is float64. */
	size_t esize = type_size(*code);
	size_t biggest = esize > sizeof(float) ? esize : sizeof(float);
	uint64_t bytes = 0;
	if (!overflow && __builtin_mul_overflow(n, (uint64_t)biggest, &bytes))
		overflow = true;
	char sbuf[160];
	if (overflow || n > (uint64_t)INT64_MAX || bytes > SIZE_MAX)
		return ln_fail(err, LN_ERANGE, "%s: IDX shape %s is too large (its size overflows)", path,
		               ln_shape_str(sbuf, sizeof sbuf, *ndim, shape));
	if (bytes > ln_alloc_limit())
		return ln_fail(err, LN_ERANGE,
		               "%s: IDX shape %s needs %llu bytes, more than the allocation limit of %zu "
		               "bytes", path, ln_shape_str(sbuf, sizeof sbuf, *ndim, shape),
		               (unsigned long long)bytes, ln_alloc_limit());
	*numel = (size_t)n;
	return LN_OK;
}

ln_status ln_idx_load(ln_tensor *out, const char *path, ln_error *err)
{
	errno = 0;
	gzFile gz = gzopen(path, "rb");
	if (!gz)
		return ln_fail(err, errno ? LN_EIO : LN_ENOMEM, "%s: cannot open: %s", path,
		               errno ? strerror(errno) : "out of memory");
	gzbuffer(gz, 1 << 17);

	int code = 0, ndim = 0;
	int64_t shape[LN_MAX_DIMS];
	size_t numel = 0;
	unsigned char *buf = NULL;
	ln_status st = read_header(gz, &code, &ndim, shape, &numel, path, err);
	if (st != LN_OK)
		goto done;

	size_t need = numel * type_size(code), got;
	if ((st = read_data(gz, need, &buf, &got, path, err)) != LN_OK)
		goto done;
	if (got < need) {
		st = ln_fail(err, LN_EFORMAT, "%s: truncated: expected %zu bytes of data, got %zu%s", path,
		             need, got, gz_truncation_note(gz));
		goto done;
	}
	if (got > need) {
		char sbuf[160];
		st = ln_fail(err, LN_EFORMAT,
		             "%s: unexpected data after the %zu bytes declared by the header (shape %s)",
		             path, need, ln_shape_str(sbuf, sizeof sbuf, ndim, shape));
		goto done;
	}
	if ((st = ln_tensor_alloc(out, ndim, shape, err)) != LN_OK)
		goto done;
	convert(ln_tensor_data(out), buf, numel, code);

done:
	ln_free(buf);
	gzclose(gz);
	return st;
}
