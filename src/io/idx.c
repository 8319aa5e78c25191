/*
 * idx.c -- IDX loader, raw or gzip-compressed (detected from the content).
 *
 * The file is read through a small byte stream: raw bytes with fread, or
 * gzip members inflated with zlib's inflate (whose own allocations go
 * through ln_malloc, so they are counted and can be failed on purpose).
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
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "../core/alloc.h"

#define FIRST_CHUNK ((size_t)1 << 20)  /* initial data buffer, bytes */
#define IN_CHUNK ((size_t)1 << 17)     /* compressed bytes read at a time */

/* ---- byte stream ---------------------------------------------------------------- */

typedef struct stream {
	FILE *f;
	const char *path;        /* for messages */
	bool gz;                 /* gzip members, else raw bytes */
	bool zinit;              /* zs holds inflate state */
	bool member_end;         /* the last member ended (Z_STREAM_END) */
	bool truncated;          /* the input ended inside a gzip member */
	z_stream zs;
	unsigned char *in;       /* IN_CHUNK bytes from ln_malloc (gzip only) */
} stream;

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
	(void)opaque;
	return ln_calloc(items, size);
}

static void z_free(voidpf opaque, voidpf p)
{
	(void)opaque;
	ln_free(p);
}

static ln_status read_error(const stream *s, ln_error *err)
{
	return ln_fail(err, LN_EIO, "%s: read error: %s", s->path, strerror(errno));
}

/* Opens path and finds out whether it holds gzip (magic 1f 8b) or raw
 * bytes.  On failure nothing is left open. */
static ln_status stream_open(stream *s, const char *path, ln_error *err)
{
	memset(s, 0, sizeof *s);
	s->path = path;
	errno = 0;
	s->f = fopen(path, "rb");
	if (!s->f)
		return ln_fail(err, errno ? LN_EIO : LN_ENOMEM, "%s: cannot open: %s", path,
		               errno ? strerror(errno) : "out of memory");
	int c0 = fgetc(s->f), c1 = c0 == EOF ? EOF : fgetc(s->f);
	if (ferror(s->f)) {
		ln_status st = read_error(s, err);
		fclose(s->f);
		return st;
	}
	s->gz = c0 == 0x1f && c1 == 0x8b;
	rewind(s->f);
	if (!s->gz)
		return LN_OK;
	s->in = ln_malloc(IN_CHUNK);
	if (!s->in) {
		fclose(s->f);
		return ln_fail(err, LN_ENOMEM, "%s: out of memory", path);
	}
	s->zs.zalloc = z_alloc;
	s->zs.zfree = z_free;
	if (inflateInit2(&s->zs, 16 + MAX_WBITS) != Z_OK) {  /* 16: gzip wrapper */
		ln_free(s->in);
		fclose(s->f);
		return ln_fail(err, LN_ENOMEM, "%s: out of memory", path);
	}
	s->zinit = true;
	return LN_OK;
}

static void stream_close(stream *s)
{
	if (s->zinit)
		inflateEnd(&s->zs);
	ln_free(s->in);
	if (s->f)
		fclose(s->f);
}

/* Inflates into buf up to n bytes; *got receives the count.  A member
 * that ends is followed by another when more gzip input follows (as
 * gzip -c a b > ab writes); anything else after a member ends the
 * stream, as gunzip does. */
static ln_status inflate_some(stream *s, unsigned char *buf, size_t n, size_t *got, ln_error *err)
{
	z_stream *z = &s->zs;
	size_t total = 0;
	while (total < n) {
		if (z->avail_in == 0) {
			size_t r = fread(s->in, 1, IN_CHUNK, s->f);
			if (r == 0 && ferror(s->f))
				return *got = total, read_error(s, err);
			if (r == 0) {
				s->truncated = !s->member_end;
				break;
			}
			z->next_in = s->in;
			z->avail_in = (uInt)r;
		}
		if (s->member_end) {
			if (z->avail_in >= 2 && !(z->next_in[0] == 0x1f && z->next_in[1] == 0x8b))
				break;  /* not another member */
			s->member_end = false;
			if (inflateReset(z) != Z_OK)
				return *got = total, ln_fail(err, LN_EFORMAT, "%s: corrupt gzip data", s->path);
		}
		size_t want = n - total < UINT_MAX ? n - total : UINT_MAX;
		z->next_out = buf + total;
		z->avail_out = (uInt)want;
		int r = inflate(z, Z_NO_FLUSH);
		total += want - z->avail_out;
		if (r == Z_STREAM_END) {
			s->member_end = true;
		} else if (r == Z_MEM_ERROR) {
			*got = total;
			return ln_fail(err, LN_ENOMEM, "%s: out of memory while decompressing", s->path);
		} else if (r != Z_OK && r != Z_BUF_ERROR) {
			*got = total;
			return ln_fail(err, LN_EFORMAT, "%s: corrupt gzip data (%s)", s->path,
			               z->msg ? z->msg : "inflate failed");
		}
	}
	*got = total;
	return LN_OK;
}

/* Reads up to n bytes into buf, stopping early only at the end of the
 * stream; *got receives the count.  A read error or corrupt compressed
 * data is an error naming the path. */
static ln_status read_full(stream *s, void *buf, size_t n, size_t *got, ln_error *err)
{
	if (s->gz)
		return inflate_some(s, buf, n, got, err);
	*got = fread(buf, 1, n, s->f);
	if (*got < n && ferror(s->f))
		return read_error(s, err);
	return LN_OK;
}

/* " (the compressed stream ends early)" when the input ended inside a
 * gzip member, else "". */
static const char *truncation_note(const stream *s)
{
	return s->truncated ? " (the compressed stream ends early)" : "";
}

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
static ln_status read_data(stream *s, size_t need, unsigned char **buf, size_t *got,
                           ln_error *err)
{
	size_t want = need + 1;
	size_t cap = want < FIRST_CHUNK ? want : FIRST_CHUNK;
	size_t len = 0;
	unsigned char *b = ln_malloc(cap);
	*buf = NULL;
	*got = 0;
	if (!b)
		return ln_fail(err, LN_ENOMEM, "%s: out of memory", s->path);
	for (;;) {
		size_t r;
		ln_status st = read_full(s, b + len, cap - len, &r, err);
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
			return ln_fail(err, LN_ENOMEM, "%s: out of memory reading %zu bytes of data",
			               s->path, need);
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
static ln_status read_header(stream *s, int *code, int *ndim, int64_t shape[LN_MAX_DIMS],
                             size_t *numel, ln_error *err)
{
	const char *path = s->path;
	unsigned char magic[4];
	size_t got;
	ln_status st = read_full(s, magic, 4, &got, err);
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
	if ((st = read_full(s, dims, dbytes, &got, err)) != LN_OK)
		return st;
	if (got < dbytes)
		return ln_fail(err, LN_EFORMAT,
		               "%s: truncated header: expected %zu bytes of dimensions, got %zu%s", path,
		               dbytes, got, truncation_note(s));

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
	stream s;
	ln_status st = stream_open(&s, path, err);
	if (st != LN_OK)
		return st;

	int code = 0, ndim = 0;
	int64_t shape[LN_MAX_DIMS];
	size_t numel = 0;
	unsigned char *buf = NULL;
	st = read_header(&s, &code, &ndim, shape, &numel, err);
	if (st != LN_OK)
		goto done;

	size_t need = numel * type_size(code), got;
	if ((st = read_data(&s, need, &buf, &got, err)) != LN_OK)
		goto done;
	if (got < need) {
		st = ln_fail(err, LN_EFORMAT, "%s: truncated: expected %zu bytes of data, got %zu%s", path,
		             need, got, truncation_note(&s));
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
	stream_close(&s);
	return st;
}
