/*
 * iter.h -- walking tensors together, in row-major order, with NumPy
 * broadcasting.  Internal to core: every elementwise operation, copy,
 * reduction and fill goes through this one iterator.
 *
 * The walk is over a shape; each tensor walked has its own strides along
 * that shape, 0 along the dimensions where it is broadcast (a size 1 that
 * stretches, or a leading dimension it lacks).  Dimensions of size 1 are
 * dropped and neighbouring dimensions that are laid out one inside the
 * other in every tensor are merged, so that tensors that are all
 * contiguous walk as one row of numel elements:
 *
 *     ln_iter it;
 *     ln_iter_tensors(&it, out->ndim, out->shape, 3, (const ln_tensor *[]){out, a, b});
 *     float *o = ln_tensor_data(out); const float *x = ..., *y = ...;
 *     do {
 *         for (int64_t j = 0; j < it.len; j++)
 *             o[it.off[0] + j * it.inc[0]] = x[it.off[1] + j * it.inc[1]] + ...;
 *     } while (ln_iter_next(&it));
 *
 * off[i] is the offset (in floats, from ln_tensor_data of tensor i) of the
 * start of the current row; inc[i] the step along the row (0 when tensor
 * i is broadcast along it).
 */
#ifndef LN_ITER_H
#define LN_ITER_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

#define LN_ITER_MAX 4  /* tensors walked together: out and up to three inputs */

typedef struct ln_iter {
	int nt;                                /* tensors walked together */
	int outer;                             /* dimensions above the row */
	int64_t len;                           /* length of a row */
	int64_t shape[LN_MAX_DIMS];            /* after dropping and merging */
	int64_t stride[LN_ITER_MAX][LN_MAX_DIMS];
	int64_t idx[LN_MAX_DIMS];
	int64_t off[LN_ITER_MAX];
	int64_t inc[LN_ITER_MAX];
} ln_iter;

/* Sets up a walk over `shape` (ndim 1..LN_MAX_DIMS entries, each >= 1) of
 * nt (1..LN_ITER_MAX) tensors; strides[i] are tensor i's strides aligned
 * with shape (0 where it is broadcast).  Starts on the first row. */
void ln_iter_init(ln_iter *it, int ndim, const int64_t *shape, int nt,
                  const int64_t *const *strides);

/* Moves to the next row; false after the last one (the iterator is then
 * back on the first row). */
bool ln_iter_next(ln_iter *it);

/* Walk of the tensors ts[0..nt) over `shape`, each broadcast to it (the
 * caller has checked ln_tensor_broadcasts_to for each; asserted). */
void ln_iter_tensors(ln_iter *it, int ndim, const int64_t *shape, int nt,
                     const ln_tensor *const *ts);

/* Walk of the slices along dimension dim (0-based) of ts[0..nt): the
 * tensors have the same ndim and the same sizes apart from dim (where
 * they may differ, as an input and its reduction do); each position of
 * the walk is the start of one slice, dim pinned at 0, and the caller
 * steps along the slice with each tensor's stride[dim]. */
void ln_iter_slices(ln_iter *it, int nt, const ln_tensor *const *ts, int dim);

/* The strides (in floats) of t seen with `shape`, to which it broadcasts:
 * t's trailing dimensions are aligned with shape's; a dimension t lacks,
 * or one of size 1 that shape stretches, gets stride 0. */
void ln_broadcast_strides(int64_t *strides, const ln_tensor *t, int ndim, const int64_t *shape);

#endif
