/*
 * tensor.h -- float32 tensors: shape, strides and offset over a
 * reference-counted storage.
 *
 * An ln_tensor is a small value (it lives inside a Lua userdata, a module
 * struct or on the stack).  It is "empty" when storage == NULL; every
 * function that fills a tensor expects an empty destination unless it says
 * otherwise, and leaves it empty on failure.  Views (narrow, select,
 * reshape of a contiguous tensor, ln_tensor_ref) share the storage and
 * retain it; ln_tensor_release drops one reference and makes the tensor
 * empty again.  Storage is freed with its last reference.
 *
 * Shapes are int64_t; every dimension is >= 1 (no zero-size tensors);
 * strides are in elements.  Indices in this C API are 0-based; the Lua
 * binding converts from 1-based.
 *
 * Ownership: a function that writes into `ln_tensor *out` makes `out` own
 * one reference; the caller releases it.
 */
#ifndef LN_TENSOR_H
#define LN_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "rng.h"

#define LN_MAX_DIMS 8

typedef struct ln_storage {
	float *data;      /* 64-byte aligned, from ln_malloc */
	size_t capacity;  /* in floats */
	long refcount;
	/* All `capacity` floats are zero but were not written yet
	 * (ln_tensor_zero); the first ln_tensor_data writes them, unless a
	 * writer that overwrites everything takes the zero over first
	 * (ln_tensor_take_zero). */
	bool zero_pending;
} ln_storage;

typedef struct ln_tensor {
	ln_storage *storage;  /* NULL: empty tensor */
	size_t offset;        /* in floats, into storage->data */
	int ndim;             /* 0 only when empty */
	int64_t shape[LN_MAX_DIMS];
	int64_t stride[LN_MAX_DIMS];
} ln_tensor;

#define LN_TENSOR_EMPTY ((ln_tensor){0})

/* ---- creation, references ------------------------------------------------ */

/* Allocates new zeroed contiguous storage for `shape`.  Errors: LN_ERANGE
 * (ndim outside 1..LN_MAX_DIMS, a dimension < 1, or numel overflows),
 * LN_ENOMEM. */
ln_status ln_tensor_alloc(ln_tensor *out, int ndim, const int64_t *shape, ln_error *err);

/* Makes `t` (empty or not) a contiguous tensor of `shape` at offset 0,
 * reusing its storage when that is large enough, else allocating new
 * storage (zeroed) and releasing the old one.  Contents are unspecified
 * when reused.  This is how modules keep output buffers across steps:
 * after the first call with a given shape it never allocates. */
ln_status ln_tensor_ensure(ln_tensor *t, int ndim, const int64_t *shape, ln_error *err);

/* Makes `out` (empty) a view of `src` sharing its storage. */
void ln_tensor_ref(ln_tensor *out, const ln_tensor *src);

/* Drops the reference held by `t` and makes it empty.  Idempotent. */
void ln_tensor_release(ln_tensor *t);

/* ---- queries ------------------------------------------------------------- */

static inline bool ln_tensor_is_empty(const ln_tensor *t) { return t->storage == NULL; }
int64_t ln_tensor_numel(const ln_tensor *t);
bool ln_tensor_is_contiguous(const ln_tensor *t);
bool ln_tensor_same_shape(const ln_tensor *a, const ln_tensor *b);
/* Writes the zeros a storage owes (zero_pending), then clears the flag. */
void ln_storage_settle(ln_storage *s);
/* Pointer to element 0 (storage->data + offset).  Every access to tensor
 * memory goes through here, which is what lets ln_tensor_zero be lazy. */
static inline float *ln_tensor_data(const ln_tensor *t)
{
	if (__builtin_expect(t->storage->zero_pending, 0))
		ln_storage_settle(t->storage);
	return t->storage->data + t->offset;
}
/* Writes the tensor's shape as "{2,3}" into buf; returns buf. */
char *ln_tensor_shape_str(const ln_tensor *t, char *buf, size_t bufsize);
/* Offset (in floats, from ln_tensor_data) of the element at 0-based idx[ndim]. */
size_t ln_tensor_index_offset(const ln_tensor *t, const int64_t *idx);

/* ---- zeroing gradients ---------------------------------------------------- */

/* Sets every element of t to zero.  When t covers its whole storage (as a
 * parameter gradient does), nothing is written yet: the storage is marked
 * and the zeros are written by the first ln_tensor_data on it -- or never,
 * when the next writer overwrites all of it and says so with
 * ln_tensor_take_zero.  That saves a pass over every gradient per training
 * step (zero_grad, then a backward that would add into zeros).  Views of
 * part of a storage are zeroed at once. */
void ln_tensor_zero(ln_tensor *t);

/* For a writer about to overwrite every element of t: true when t's
 * contents are a pending zero (ln_tensor_zero over its whole storage), in
 * which case the mark is dropped without writing anything and the caller
 * must write all of t (an accumulation c += x becomes c = x).  False
 * otherwise, with nothing changed. */
bool ln_tensor_take_zero(ln_tensor *t);

/* ---- views --------------------------------------------------------------- */

/* out = src[index] along dimension 0 (0-based), a view with ndim-1 dims.
 * For a 1-D src this is an error (LN_ESHAPE): read the number instead. */
ln_status ln_tensor_select(ln_tensor *out, const ln_tensor *src, int64_t index, ln_error *err);
/* out = view of src with dimension dim (0-based) restricted to
 * [start, start+len). */
ln_status ln_tensor_narrow(ln_tensor *out, const ln_tensor *src, int dim, int64_t start,
                           int64_t len, ln_error *err);
/* out = src with a new shape; one entry may be -1 (inferred).  A view when
 * src is contiguous, else a contiguous copy.  LN_ESHAPE if numel differs. */
ln_status ln_tensor_reshape(ln_tensor *out, const ln_tensor *src, int ndim, const int64_t *shape,
                            ln_error *err);

/* ---- copies, fills -------------------------------------------------------- */

/* out = new contiguous copy of src. */
ln_status ln_tensor_clone(ln_tensor *out, const ln_tensor *src, ln_error *err);
/* dst[...] = src[...] element by element in row-major order; numel must
 * match (shapes may differ).  dst is not empty. */
ln_status ln_tensor_copy(ln_tensor *dst, const ln_tensor *src, ln_error *err);
void ln_tensor_fill(ln_tensor *t, float value);
/* Calls fn(value pointer, ctx) for every element of t in row-major order. */
void ln_tensor_foreach(ln_tensor *t, void (*fn)(float *v, void *ctx), void *ctx);

/* ---- elementwise ----------------------------------------------------------- */

typedef enum ln_binop { LN_ADD, LN_SUB, LN_MUL, LN_DIV } ln_binop;
typedef enum ln_unop {
	LN_NEG, LN_EXP, LN_LOG, LN_ABS, LN_SQRT, LN_TANH, LN_SIGMOID
} ln_unop;

/* out = a op b, same shape (LN_ESHAPE otherwise).  out empty. */
ln_status ln_tensor_binary(ln_tensor *out, ln_binop op, const ln_tensor *a, const ln_tensor *b,
                           ln_error *err);
/* out = a op s (scalar_first false) or s op a (scalar_first true). */
ln_status ln_tensor_binary_scalar(ln_tensor *out, ln_binop op, const ln_tensor *a, float s,
                                  bool scalar_first, ln_error *err);
ln_status ln_tensor_unary(ln_tensor *out, ln_unop op, const ln_tensor *a, ln_error *err);

/* ---- reductions (accumulated in double, fixed order) ---------------------- */

double ln_tensor_sum(const ln_tensor *t);
double ln_tensor_mean(const ln_tensor *t);
float ln_tensor_max(const ln_tensor *t);   /* NaN if any element is NaN */
float ln_tensor_min(const ln_tensor *t);

typedef enum ln_reduce { LN_RSUM, LN_RMEAN, LN_RMAX, LN_RMIN, LN_RARGMAX } ln_reduce;
/* out = reduction of t along dim (0-based), that dim kept with size 1.
 * LN_RARGMAX stores 1-based indices as floats (the Lua convention) and
 * picks the first maximum. */
ln_status ln_tensor_reduce_dim(ln_tensor *out, ln_reduce op, const ln_tensor *t, int dim,
                               ln_error *err);

/* ---- linear algebra ------------------------------------------------------- */

/* out = a (m,k) x b (k,n), 2-D only; LN_ESHAPE names both shapes. */
ln_status ln_tensor_matmul(ln_tensor *out, const ln_tensor *a, const ln_tensor *b, ln_error *err);
/* out = contiguous transpose of a 2-D tensor. */
ln_status ln_tensor_transpose(ln_tensor *out, const ln_tensor *a, ln_error *err);
/* |a-b| <= atol + rtol*|b| everywhere; false when shapes differ or any is NaN. */
bool ln_tensor_allclose(const ln_tensor *a, const ln_tensor *b, double rtol, double atol);

/* ---- random ---------------------------------------------------------------- */

/* Fill t in row-major order with draws from rng (rng.h). */
void ln_tensor_rand(ln_tensor *t, ln_rng *rng);                     /* uniform [0,1) */
void ln_tensor_randn(ln_tensor *t, ln_rng *rng, float mean, float std);
void ln_tensor_uniform(ln_tensor *t, ln_rng *rng, float a, float b);

#endif
