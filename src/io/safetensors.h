/*
 * safetensors.h -- the safetensors format (Hugging Face's tensor file,
 * read and written by PyTorch's ecosystem): a parser that is a pure
 * function of a byte buffer, and an encoder.
 *
 * ---- file layout ----------------------------------------------------------------
 *
 *   offset  size  field
 *   0       8     N, the header length, u64 little-endian
 *   8       N     the header: UTF-8 JSON, one object, possibly padded with
 *                 trailing spaces
 *   8+N     D     the data: every tensor's bytes, little-endian, row-major,
 *                 packed one after the other
 *
 * The header maps each tensor name to
 *     {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]}
 * where BEGIN and END are byte offsets into the data (END one past the
 * last byte), and may hold one "__metadata__" object of string values.
 *
 * ---- what the parser accepts ------------------------------------------------------
 *
 * A file is accepted only when all of these hold (each failure is
 * LN_EFORMAT with a message naming the tensor and the numbers):
 *   - at least 8 bytes; N at most LN_ST_MAX_HEADER (100 MB, the limit of
 *     the reference implementation) and at most the bytes that follow;
 *   - the header is valid JSON (UTF-8, no NUL, no duplicate keys -- the
 *     format forbids them), an object, starting with '{';
 *   - "__metadata__", if present, is an object whose values are strings;
 *   - every other entry is an object with exactly the fields dtype, shape
 *     and data_offsets; dtype one of F32, F16, BF16, F64, I64; shape an
 *     array of at most LN_ST_MAX_DIMS integers >= 0 ([] is a scalar, a 0
 *     is an empty tensor); data_offsets two integers;
 *   - END >= BEGIN, END within the data, and END - BEGIN equal to the
 *     element count times the dtype's size (no size overflows);
 *   - taken in the order of BEGIN, the ranges tile the data exactly: the
 *     first starts at 0, each starts where the previous one ends (no
 *     overlap, no gap) and the last ends at D (no trailing bytes).  This
 *     is the reference reader's rule: no byte is read twice and no byte is
 *     left unaccounted for.
 * The header length need not be a multiple of 8: writers pad it so that
 * the data starts aligned, but not all do, and the parser reads unaligned
 * data byte by byte.
 *
 * Memory: the parse result comes from ln_malloc, in proportion to the
 * header; the JSON tree is built by jansson with the system allocator
 * while parsing and freed before returning.  Tensor data is not copied:
 * entries point into the caller's buffer.
 */
#ifndef LN_SAFETENSORS_H
#define LN_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"

#define LN_ST_MAX_HEADER (100u * 1000u * 1000u)
#define LN_ST_MAX_DIMS LN_MAX_DIMS

typedef enum ln_st_dtype {
	LN_ST_F32,
	LN_ST_F16,
	LN_ST_BF16,
	LN_ST_F64,
	LN_ST_I64,
	LN_ST_DTYPE_COUNT
} ln_st_dtype;

/* "F32", "F16"...; and the size of one element in bytes. */
const char *ln_st_dtype_name(ln_st_dtype d);
size_t ln_st_dtype_size(ln_st_dtype d);

/* One tensor of a parsed file. */
typedef struct ln_st_tensor {
	const char *name;           /* NUL-terminated; owned by the ln_safetensors */
	ln_st_dtype dtype;
	int ndim;                   /* 0: a scalar (one element) */
	int64_t shape[LN_ST_MAX_DIMS];  /* each >= 0 */
	uint64_t numel;             /* product of shape (1 for a scalar, 0 if a size is 0) */
	const unsigned char *data;  /* numel * dtype size bytes, into the parsed buffer */
} ln_st_tensor;

typedef struct ln_st_meta {
	const char *key, *value;    /* NUL-terminated */
} ln_st_meta;

/* A parsed file: tensors in the order of their data (BEGIN), metadata in
 * header order. */
typedef struct ln_safetensors {
	size_t ntensors;
	ln_st_tensor *tensors;
	size_t nmeta;
	ln_st_meta *meta;
} ln_safetensors;

/* Parses the file image buf[0..size) and checks all of the above.  On
 * success *out is a new ln_safetensors (free it with ln_safetensors_free)
 * whose tensors point into buf: buf must outlive it and stay unchanged.
 * Errors: LN_EFORMAT (message says what and where; it does not name the
 * file, which the caller knows), LN_ENOMEM.  *out is NULL on failure.
 * This is the entry point for fuzzing: it reads nothing but buf. */
ln_status ln_safetensors_parse(ln_safetensors **out, const void *buf, size_t size,
                               ln_error *err);
/* Frees a parse result.  NULL is ignored. */
void ln_safetensors_free(ln_safetensors *f);

/* Converts t's numel elements to float (F64 and I64 are rounded to
 * nearest; F16 and BF16 are exact) into dst. */
void ln_st_to_float(float *dst, const ln_st_tensor *t);
/* t's one element as a double (t->numel must be 1); I64 values beyond
 * 2^53 are rounded. */
double ln_st_scalar_number(const ln_st_tensor *t);
/* t's one element as an integer (t->dtype == LN_ST_I64, t->numel == 1). */
int64_t ln_st_scalar_integer(const ln_st_tensor *t);

/* IEEE half and bfloat16 bit patterns to float (exact), exposed for
 * tests. */
float ln_half_to_float(uint16_t h);
float ln_bfloat16_to_float(uint16_t b);

/* ---- writing --------------------------------------------------------------------- */

/* One entry to write: a tensor (written F32, any strides) or, when
 * tensor is NULL, a scalar (shape []): I64 if is_integer, else F32. */
typedef struct ln_st_item {
	const char *name;
	const ln_tensor *tensor;
	bool is_integer;
	int64_t integer;
	double number;
} ln_st_item;

/* Encodes items (in this order, data packed in the same order) and the
 * metadata pairs (nmeta may be 0: no "__metadata__") into a new file
 * image *out of *size bytes, from ln_malloc (the caller frees it with
 * ln_free).  The header is padded with spaces so that the data starts at
 * a multiple of 8.  Errors: LN_EARG for an empty name, a name that is not
 * UTF-8, a name given twice or "__metadata__", an empty tensor; LN_ERANGE
 * when the file would exceed the header limit; LN_ENOMEM. */
ln_status ln_safetensors_encode(void **out, size_t *size, const ln_st_item *items, size_t n,
                                const ln_st_meta *meta, size_t nmeta, ln_error *err);

#endif
