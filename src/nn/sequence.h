/*
 * sequence.h -- layers for sequences: Embedding, the recurrent layers
 * (RNN, LSTM, GRU) and multi-head self-attention.
 *
 * Sequence tensors are batch first: {N,T,features}.  Parameter names,
 * shapes, order and initialisation follow PyTorch's torch.nn layers of
 * the same names, so that a state dict moves between the two (the classes'
 * state hooks give PyTorch's keys).  Constructors return a new module with
 * one reference in *out (module.h); ctx may be NULL (the default build).
 */
#ifndef LN_SEQUENCE_H
#define LN_SEQUENCE_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"
#include "module.h"

extern const ln_module_class ln_embedding_class;

/* ---- Embedding (embedding.c) -------------------------------------------------
 * labels x {...} (any shape, up to 7 dimensions; integers 1..n stored as
 * floats) -> y {...,d}, the rows of weight {n,d} (N(0,1) at first).  A
 * label that is not an integer in 1..n is LN_ERANGE naming it and its
 * position.  Backward adds each row of gy into the weight gradient row of
 * its label (repeated labels accumulate); grad_input is zeros (labels have
 * no gradient).  Config: n, d; LN_ERANGE unless 1 <= n <= 2^24, d >= 1. */
ln_status ln_embedding_new(ln_module **out, const ln_module_build *ctx, int64_t n, int64_t d,
                           ln_error *err);
/* Kernels over k labels (checked by the caller):
 *   forward   y (k,d) = w rows x_i - 1
 *   backward  gw (n,d) row x_i - 1 += gy row i, i in order */
void ln_embedding_forward_kernel(float *y, const float *x, const float *w, int64_t k, int64_t d);
void ln_embedding_backward_kernel(float *gw, const float *gy, const float *x, int64_t k,
                                  int64_t d);

#endif
