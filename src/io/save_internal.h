/*
 * save_internal.h -- what the encoder (save_write.c) and the decoder
 * (save_read.c) of the lunet file format share: little-endian numbers,
 * the checksum, name lists.  Not installed, not part of the API.
 */
#ifndef LN_SAVE_INTERNAL_H
#define LN_SAVE_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include <zlib.h>

#include "save.h"

#define STR_MAX LN_SAVE_NAME_MAX

/* ==== little-endian encoding ==================================================== */

static inline void ln_save_put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint64_t ln_save_get_le(const unsigned char *p, int n)
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
static inline void ln_save_floats_to_le(unsigned char *dst, const float *src, size_t n)
{
	if (HOST_LE) {
		memcpy(dst, src, n * sizeof(float));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &src[i], 4);
		ln_save_put_le(dst + 4 * i, u, 4);
	}
}

static inline void ln_save_floats_from_le(float *dst, const unsigned char *src, size_t n)
{
	if (HOST_LE) {
		memcpy(dst, src, n * sizeof(float));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)ln_save_get_le(src + 4 * i, 4);
		memcpy(&dst[i], &u, 4);
	}
}

/* CRC-32 of n bytes, in chunks that fit zlib's uInt. */
static inline uint32_t ln_save_crc(const unsigned char *p, size_t n)
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
static inline int ln_save_count_names(const char *const *names, int max)
{
	int n = 0;
	while (n < max && names[n])
		n++;
	return n;
}

#endif
