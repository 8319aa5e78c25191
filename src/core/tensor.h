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
 * strides are in elements, >= 0 (0 along a dimension stretched by
 * ln_tensor_expand).  Indices and dimensions in this C API are 0-based;
 * a dimension may also be negative, counted from the end (-1 is the last,
 * as in Python); the Lua binding converts from 1-based.  Messages put into
 * ln_error count dimensions and indices from 1, as the Lua user sees them
 * (a negative dimension is shown as given).
 *
 * Elementwise operations broadcast as NumPy does: shapes are aligned on
 * their last dimensions, a size 1 stretches to the other side's size and a
 * missing leading dimension counts as 1 ({2,3} with {3} gives {2,3}; {4,1}
 * with {1,5} gives {4,5}).
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
/* True when two different positions of t are the same float in memory (a
 * dimension of size > 1 with stride 0, as made by ln_tensor_expand).  Such
 * a tensor can be read but not written element by element. */
bool ln_tensor_has_aliases(const ln_tensor *t);
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

/* Checks a shape (ndim in 1..LN_MAX_DIMS, every size >= 1, the element
 * count and its bytes representable) and stores the count in *numel.
 * Errors: LN_ERANGE naming the shape. */
ln_status ln_shape_check(int ndim, const int64_t *shape, int64_t *numel, ln_error *err);

/* Resolves a dimension of an ndim-D tensor: 0..ndim-1, or -ndim..-1
 * counted from the end, into 0..ndim-1 in *out.  Errors: LN_ERANGE
 * ("dimension 3 does not exist in 2-D tensor {2,3}"; `shape` is only used
 * for the message and may be NULL). */
ln_status ln_dim_resolve(int dim, int ndim, const int64_t *shape, int *out, ln_error *err);

/* ---- broadcasting ---------------------------------------------------------- */

/* The shape two shapes broadcast to, in *ndim and shape[LN_MAX_DIMS].
 * Errors: LN_ESHAPE ("shapes {2,3} and {4} do not broadcast: dimension -1
 * has sizes 3 and 4", the dimension counted from the end). */
ln_status ln_broadcast_shape(int *ndim, int64_t *shape, int an, const int64_t *ashape, int bn,
                             const int64_t *bshape, ln_error *err);
/* True when t broadcasts to `shape` without changing it (t has at most
 * ndim dimensions and each of its sizes is 1 or shape's). */
bool ln_tensor_broadcasts_to(const ln_tensor *t, int ndim, const int64_t *shape);

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

/* ---- views (tensor_view.c) -------------------------------------------------
 * Each makes the empty `out` a view sharing src's storage (one new
 * reference, released by the caller); nothing is copied unless said.  On
 * failure out stays empty.  Writes through a view reach src. */

/* out = src[index] along dimension 0, with ndim-1 dims.  For a 1-D src
 * this is an error (LN_ESHAPE): read the number instead.  LN_ERANGE for
 * an index outside 0..size-1. */
ln_status ln_tensor_select(ln_tensor *out, const ln_tensor *src, int64_t index, ln_error *err);
/* out = src with dimension dim fixed at index and removed ({2,3,4} with
 * dim 1 gives {2,4}).  LN_ESHAPE for a 1-D src, LN_ERANGE for a bad dim
 * or index. */
ln_status ln_tensor_select_dim(ln_tensor *out, const ln_tensor *src, int dim, int64_t index,
                               ln_error *err);
/* out = src with dimension dim restricted to [start, start+len). */
ln_status ln_tensor_narrow(ln_tensor *out, const ln_tensor *src, int dim, int64_t start,
                           int64_t len, ln_error *err);
/* out = src with a new shape; one entry may be -1 (inferred).  A view when
 * src is contiguous, else a contiguous copy.  LN_ESHAPE if numel differs,
 * LN_ERANGE for a bad entry, LN_ENOMEM. */
ln_status ln_tensor_reshape(ln_tensor *out, const ln_tensor *src, int ndim, const int64_t *shape,
                            ln_error *err);
/* out = src with a new dimension of size 1 inserted before position dim
 * (0..ndim, or -ndim-1..-1 where -1 appends it): {2,3} at 0 gives {1,2,3},
 * at -1 gives {2,3,1}.  LN_ERANGE for a bad dim or when src already has
 * LN_MAX_DIMS dimensions. */
ln_status ln_tensor_unsqueeze(ln_tensor *out, const ln_tensor *src, int dim, ln_error *err);
/* out = src without dimension dim if its size is 1, else the same view
 * (as PyTorch); a 1-D src is kept as is.  LN_ERANGE for a bad dim. */
ln_status ln_tensor_squeeze(ln_tensor *out, const ln_tensor *src, int dim, ln_error *err);
/* out = src without any dimension of size 1, keeping one if all are
 * ({1,3,1} gives {3}, {1,1} gives {1}).  Never fails. */
void ln_tensor_squeeze_all(ln_tensor *out, const ln_tensor *src);
/* out = src with its dimensions reordered: out's dimension d is src's
 * perm[d] (perm holds src->ndim entries, each 0..ndim-1 or negative, each
 * dimension exactly once).  LN_ERANGE naming the bad or repeated entry. */
ln_status ln_tensor_permute(ln_tensor *out, const ln_tensor *src, const int *perm, ln_error *err);
/* out = src with dimensions d1 and d2 swapped (any ndim; d1 == d2 gives
 * the same view).  LN_ERANGE for a bad dim.  ln_tensor_transpose below is
 * the 2-D contiguous copy. */
ln_status ln_tensor_transpose_dims(ln_tensor *out, const ln_tensor *src, int d1, int d2,
                                   ln_error *err);
/* out = src seen with `shape` (ndim >= src->ndim entries): src's dims are
 * aligned with the trailing ones; a size-1 dim may stretch to any size
 * and new leading dims may be added, all with stride 0 (no memory); -1
 * keeps src's size.  Many positions of out then share one float
 * (ln_tensor_has_aliases): read it, or clone it before writing.
 * LN_ESHAPE when a size other than 1 would change, LN_ERANGE for a bad
 * entry (-1 in a new leading dim, < -1, 0) or a shape too large. */
ln_status ln_tensor_expand(ln_tensor *out, const ln_tensor *src, int ndim, const int64_t *shape,
                           ln_error *err);

/* ---- copies, fills -------------------------------------------------------- */

/* out = new contiguous copy of src. */
ln_status ln_tensor_clone(ln_tensor *out, const ln_tensor *src, ln_error *err);
/* dst[...] = src[...] with src broadcast to dst's shape ({3} into each row
 * of a {2,3}; a {1} everywhere).  dst is not empty.  When the two share
 * storage (other than being the same view) src is read through a
 * temporary copy first, so the result is as if src were copied out.
 * Errors: LN_ESHAPE (src does not broadcast to dst: a {6} into a {2,3}
 * is refused), LN_EARG (dst has aliased positions: an expanded view),
 * LN_ENOMEM (the temporary). */
ln_status ln_tensor_copy(ln_tensor *dst, const ln_tensor *src, ln_error *err);
/* dst[...] = src[...] element by element in row-major order; only numel
 * must match (shapes may differ: a {6} fills a {2,3} row by row).  The two
 * must not overlap in memory unless they are the same view.  Errors:
 * LN_ESHAPE. */
ln_status ln_tensor_copy_flat(ln_tensor *dst, const ln_tensor *src, ln_error *err);
void ln_tensor_fill(ln_tensor *t, float value);
/* Calls fn(value pointer, ctx) for every element of t in row-major order. */
void ln_tensor_foreach(ln_tensor *t, void (*fn)(float *v, void *ctx), void *ctx);

/* ---- elementwise (tensor_math.c) -------------------------------------------- */

/* Comparisons give 1 or 0 (NaN compares false, except LN_NE: true);
 * LN_POW is powf. */
typedef enum ln_binop {
	LN_ADD, LN_SUB, LN_MUL, LN_DIV, LN_POW,
	LN_GT, LN_LT, LN_GE, LN_LE, LN_EQ, LN_NE,
	LN_BINOP_COUNT
} ln_binop;
typedef enum ln_unop {
	LN_NEG, LN_EXP, LN_LOG, LN_ABS, LN_SQRT, LN_TANH, LN_SIGMOID
} ln_unop;

/* out (empty) = a op b, broadcast: out has the broadcast shape.
 * Errors: LN_ESHAPE (the shapes do not broadcast), LN_ENOMEM. */
ln_status ln_tensor_binary(ln_tensor *out, ln_binop op, const ln_tensor *a, const ln_tensor *b,
                           ln_error *err);
/* out = a op s (scalar_first false) or s op a (scalar_first true). */
ln_status ln_tensor_binary_scalar(ln_tensor *out, ln_binop op, const ln_tensor *a, float s,
                                  bool scalar_first, ln_error *err);
/* a = a op b in place, b broadcast to a's shape (b {3} into a {2,3}; a
 * {3} with b {2,3} is LN_ESHAPE: a's shape cannot change).  b may share
 * a's storage (even overlap it partially): it is then read through a
 * temporary.  Errors: LN_ESHAPE, LN_EARG (a has aliased positions),
 * LN_ENOMEM (the temporary). */
ln_status ln_tensor_binary_(ln_tensor *a, ln_binop op, const ln_tensor *b, ln_error *err);
/* a = a op s in place.  Errors: LN_EARG (a has aliased positions). */
ln_status ln_tensor_binary_scalar_(ln_tensor *a, ln_binop op, float s, ln_error *err);
ln_status ln_tensor_unary(ln_tensor *out, ln_unop op, const ln_tensor *a, ln_error *err);
/* out = min(max(a, lo), hi) elementwise; lo may be -INFINITY and hi
 * INFINITY for no bound; NaN elements stay NaN.  Errors: LN_ENAN (a bound
 * is NaN), LN_ERANGE (lo > hi), LN_ENOMEM. */
ln_status ln_tensor_clamp(ln_tensor *out, const ln_tensor *a, float lo, float hi,
                          ln_error *err);
/* out = mask != 0 ? a : b elementwise, the three broadcast together (NaN
 * in mask counts as true: it is not 0).  Errors: LN_ESHAPE, LN_ENOMEM. */
ln_status ln_tensor_where(ln_tensor *out, const ln_tensor *mask, const ln_tensor *a,
                          const ln_tensor *b, ln_error *err);

/* ---- reductions (accumulated in double, fixed order) ---------------------- */

double ln_tensor_sum(const ln_tensor *t);
double ln_tensor_mean(const ln_tensor *t);
float ln_tensor_max(const ln_tensor *t);   /* NaN if any element is NaN */
float ln_tensor_min(const ln_tensor *t);

/* Largest index kept in a float tensor of indices: every integer up to
 * 2^24 is exact in float32. */
#define LN_MAX_FLOAT_INDEX (INT64_C(1) << 24)

typedef enum ln_reduce { LN_RSUM, LN_RMEAN, LN_RMAX, LN_RMIN, LN_RARGMAX, LN_RARGMIN } ln_reduce;
/* out = reduction of t along dim, that dim kept with size 1.
 * LN_RMAX/LN_RMIN give NaN for a slice holding NaN.  LN_RARGMAX and
 * LN_RARGMIN store 1-based indices as floats (the Lua convention) and pick
 * the first extreme, a NaN counting as the extreme (so the index matches
 * the value LN_RMAX/LN_RMIN give).  Errors: LN_ERANGE (bad dim; for the
 * arg reductions also a dim longer than LN_MAX_FLOAT_INDEX), LN_ENOMEM. */
ln_status ln_tensor_reduce_dim(ln_tensor *out, ln_reduce op, const ln_tensor *t, int dim,
                               ln_error *err);

/* ---- sorting and indexing (tensor_index.c) ----------------------------------
 * Index tensors hold 1-based indices as floats, as ln_tensor_reduce_dim's
 * argmax does; dims longer than LN_MAX_FLOAT_INDEX are refused (LN_ERANGE)
 * where indices are produced. */

/* values, indices (both empty) = t sorted along dim, ascending or
 * descending; stable (equal values keep their order) and NaN sorts above
 * every number (last ascending, first descending).  Both have t's shape.
 * Errors: LN_ERANGE (bad dim, dim too long), LN_ENOMEM (both left empty). */
ln_status ln_tensor_sort(ln_tensor *values, ln_tensor *indices, const ln_tensor *t, int dim,
                         bool descending, ln_error *err);
/* values, indices = the k largest entries along dim, largest first (equal
 * values in index order; NaN largest): t's shape with dim of size k.
 * Errors: LN_ERANGE (bad dim, k outside 1..size), LN_ENOMEM. */
ln_status ln_tensor_topk(ln_tensor *values, ln_tensor *indices, const ln_tensor *t, int64_t k,
                         int dim, ln_error *err);
/* out = t's entries idx[0..n) (0-based) along dim, a new contiguous tensor
 * of t's shape with dim of size n (an index may repeat).  Errors:
 * LN_ERANGE (bad dim, n < 1, an index outside 0..size-1, named with its
 * 1-based position and value), LN_ENOMEM. */
ln_status ln_tensor_index_select(ln_tensor *out, const ln_tensor *t, int dim, const int64_t *idx,
                                 int64_t n, ln_error *err);
/* out = ts[0..n) joined along dim (0..ndim-1 or negative); all have the
 * same ndim and the same sizes apart from dim.  Errors: LN_EARG (n < 1),
 * LN_ESHAPE naming the first tensor that does not fit, LN_ERANGE, LN_ENOMEM. */
ln_status ln_tensor_cat(ln_tensor *out, int n, const ln_tensor *const *ts, int dim,
                        ln_error *err);
/* out = ts[0..n) stacked along a new dimension dim (0..ndim, or -ndim-1..-1
 * where -1 makes it the last): n tensors of shape {2,3} stacked at 0 give
 * {n,2,3}.  All have the same shape.  Errors as ln_tensor_cat. */
ln_status ln_tensor_stack(ln_tensor *out, int n, const ln_tensor *const *ts, int dim,
                          ln_error *err);

/* ---- linear algebra ------------------------------------------------------- */

/*
 * out = a x b, matrix products over the last two dimensions:
 *     a {M,K} x b {K,N} -> {M,N}
 *     a {B,M,K} x b {B,K,N} -> {B,M,N}   (one product per batch entry)
 *     a {B,M,K} x b {K,N} -> {B,M,N}     (b shared by every batch entry)
 * In general the leading (batch) dimensions of a and b broadcast as in
 * NumPy's matmul; both need at least 2 dimensions.  Inputs in a layout
 * the product cannot take (not row- or column-major in their last two
 * dims) are copied first; the copies are freed here.  Errors: LN_ESHAPE
 * (fewer than 2 dims, inner dimensions differ, batch dims do not
 * broadcast; names both shapes), LN_ERANGE (a matrix dimension beyond
 * gemm's int range), LN_ENOMEM.
 */
ln_status ln_tensor_matmul(ln_tensor *out, const ln_tensor *a, const ln_tensor *b, ln_error *err);
/* out = contiguous transpose of a 2-D tensor (a copy; ln_tensor_transpose_dims
 * is the view). */
ln_status ln_tensor_transpose(ln_tensor *out, const ln_tensor *a, ln_error *err);
/* |a-b| <= atol + rtol*|b| everywhere; false when shapes differ or any is NaN. */
bool ln_tensor_allclose(const ln_tensor *a, const ln_tensor *b, double rtol, double atol);

/* ---- random (tensor_random.c) ------------------------------------------------ */

/* Fill t in row-major order with draws from rng (rng.h). */
void ln_tensor_rand(ln_tensor *t, ln_rng *rng);                     /* uniform [0,1) */
void ln_tensor_randn(ln_tensor *t, ln_rng *rng, float mean, float std);
void ln_tensor_uniform(ln_tensor *t, ln_rng *rng, float a, float b);

/*
 * out (empty) = k category indices (1-based, as floats) drawn from rng per
 * row of probs: probs {N,C} gives out {N,k}, probs {C} gives out {k}.  A row's
 * entries are weights: non-negative, finite, not all zero; they need not
 * sum to 1 (each is divided by the row's sum, taken in double).  Without
 * replacement (as PyTorch by default) a category is drawn at most once
 * per row, so k may not exceed the row's number of non-zero weights;
 * with replacement any k >= 1.  Draws one ln_rng_uniform per sample, rows
 * in order, so a seed fixes the result.  Every row is checked before the
 * first draw: on error the rng is untouched.  Errors: LN_ESHAPE (probs
 * not 1-D or 2-D), LN_ENAN (NaN or infinite weight), LN_ERANGE (negative
 * weight, all-zero row, k < 1, k too large, C > LN_MAX_FLOAT_INDEX; the
 * message names the row and column), LN_ENOMEM.
 */
ln_status ln_tensor_multinomial(ln_tensor *out, const ln_tensor *probs, int64_t k,
                                bool replacement, ln_rng *rng, ln_error *err);

#endif
