/*
 * fuzz_idx.c -- the IDX reader, ln_idx_load (src/io/idx.c), on arbitrary
 * bytes given as a file (raw, or gzip: the reader tells them apart by
 * content, through zlib).
 *
 * Input: the file itself.
 *
 * Oracles:
 *   - a failure is LN_EFORMAT, LN_ERANGE, LN_ENOMEM (or LN_EIO for a
 *     read error) with a message that names the path, and leaves the
 *     tensor empty;
 *   - for a raw file that loads, the header's shape is the tensor's and
 *     the file is exactly header + numel * element size bytes, and every
 *     value is the stored one converted (checked for uint8 and float32);
 *   - nothing of lunet's allocator stays live afterwards.
 */
#include <string.h>

#include "core/alloc.h"
#include "fuzz.h"
#include "io/idx.h"

#define MAX_FUZZ_INPUT ((size_t)1 << 20)

static size_t type_size(int code)
{
	switch (code) {
	case 0x08: case 0x09: return 1;
	case 0x0B: return 2;
	case 0x0C: case 0x0D: return 4;
	case 0x0E: return 8;
	default: return 0;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_FUZZ_INPUT)
		return 0;
	fuzz_init();
	uint64_t live = fuzz_live_bytes();
	const char *path = fuzz_file(data, size);
	ln_tensor t = LN_TENSOR_EMPTY;
	ln_error err;
	ln_status st = ln_idx_load(&t, path, &err);
	if (st != LN_OK) {
		FUZZ_CHECK(ln_tensor_is_empty(&t), "a failed load left a tensor");
		FUZZ_CHECK(st == LN_EFORMAT || st == LN_ERANGE || st == LN_ENOMEM || st == LN_EIO,
		           "status %s: %s", ln_status_name(st), err.msg);
		FUZZ_CHECK(strncmp(err.msg, path, strlen(path)) == 0, "message without the path: %s",
		           err.msg);
	} else {
		int gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
		if (!gz) {
			FUZZ_CHECK(size >= 4 && data[0] == 0 && data[1] == 0, "loaded without the magic");
			size_t es = type_size(data[2]);
			int ndim = data[3];
			FUZZ_CHECK(es > 0 && ndim == t.ndim, "type 0x%02x, %d dimensions; tensor of %d",
			           data[2], ndim, t.ndim);
			size_t numel = 1;
			for (int d = 0; d < ndim; d++) {
				const uint8_t *b = data + 4 + 4 * d;
				int64_t s = (int64_t)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3];
				FUZZ_CHECK(s == t.shape[d], "dimension %d: header %lld, tensor %lld", d + 1,
				           (long long)s, (long long)t.shape[d]);
				numel *= (size_t)s;
			}
			size_t hdr = 4 + 4 * (size_t)ndim;
			FUZZ_CHECK(size == hdr + numel * es, "%zu bytes for a header of %zu and %zu values",
			           size, hdr, numel);
			const float *v = ln_tensor_data(&t);
			for (size_t i = 0; i < numel; i++) {
				if (data[2] == 0x08) {
					FUZZ_CHECK(v[i] == (float)data[hdr + i], "value %zu", i);
				} else if (data[2] == 0x0D) {
					const uint8_t *b = data + hdr + 4 * i;
					uint32_t u = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | b[2] << 8 | b[3];
					float f;
					memcpy(&f, &u, 4);
					FUZZ_CHECK(memcmp(&f, &v[i], 4) == 0, "value %zu", i);
				}
			}
		}
		ln_tensor_release(&t);
	}
	fuzz_check_live(live, "ln_idx_load");
	return 0;
}
