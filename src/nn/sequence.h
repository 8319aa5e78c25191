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
extern const ln_module_class ln_rnn_class;
extern const ln_module_class ln_lstm_class;
extern const ln_module_class ln_gru_class;
extern const ln_module_class ln_attention_class;

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

/* ---- RNN, LSTM, GRU (rnn.c) ----------------------------------------------------
 * x {N,T,nin} -> y {N,T,h}, the top layer's states, batch first.  The
 * equations, gate orders and parameter layout are PyTorch's (rnn.c says
 * them): per layer k, weight_ih_lk {G*h,in}, weight_hh_lk {G*h,h},
 * bias_ih_lk, bias_hh_lk {G*h} with G = 1 (RNN), 4 (LSTM: i,f,g,o), 3 (GRU:
 * r,z,n), all U(-1/sqrt(h), 1/sqrt(h)) at first.  The fields "hidden"
 * (and "cell" for LSTM) {layers,N,h} hold each layer's final state after
 * a forward.  Options: layers (1..LN_RNN_MAX_LAYERS, as a file counts a
 * module's parameters in a byte), dropout in [0,1) between layers in
 * training mode, stateful (each forward starts from the last one's final
 * state, and no gradient flows into it; reset_state zeroes it).  Config:
 * nin, nhidden, layers, dropout, stateful, and for RNN nonlinearity (0
 * tanh, 1 ReLU).  LN_ERANGE for a size < 1 or an option out of range. */
typedef enum ln_rnn_kind { LN_RNN_TANH, LN_RNN_RELU, LN_RNN_LSTM, LN_RNN_GRU } ln_rnn_kind;
#define LN_RNN_MAX_LAYERS 63
typedef struct ln_rnn_options {
	int64_t layers;   /* stacked layers, >= 1 */
	double dropout;
	bool stateful;
} ln_rnn_options;
/* o may be NULL: one layer, no dropout, not stateful. */
ln_status ln_rnn_new(ln_module **out, const ln_module_build *ctx, ln_rnn_kind kind, int64_t nin,
                     int64_t hidden, const ln_rnn_options *o, ln_error *err);

/* The reference: one layer of kind over x (N,T,nin) from h0 (and c0) (N,h)
 * (NULL: zeros), step by step in double, straight from the equations.
 * forward writes y (N,T,h) and the final ht (and ct, LSTM; else may be
 * NULL) (N,h); backward, given dy (N,T,h), writes dx (N,T,nin) (may be
 * NULL) and adds into dw_ih, dw_hh, db_ih, db_hh, with no gradient into
 * the initial state.  Both allocate their scratch: LN_ENOMEM. */
ln_status ln_rnn_forward_naive(ln_rnn_kind kind, float *y, float *ht, float *ct, const float *x,
                               const float *h0, const float *c0, const float *wih,
                               const float *whh, const float *bih, const float *bhh, int64_t n,
                               int64_t t, int64_t nin, int64_t hd);
ln_status ln_rnn_backward_naive(ln_rnn_kind kind, float *dx, float *dwih, float *dwhh,
                                float *dbih, float *dbhh, const float *dy, const float *x,
                                const float *h0, const float *c0, const float *wih,
                                const float *whh, const float *bih, const float *bhh, int64_t n,
                                int64_t t, int64_t nin, int64_t hd);

/* ---- MultiheadAttention (attention.c) ----------------------------------------
 * Self-attention on x {N,T,d} -> {N,T,d} with `heads` heads of d/heads
 * columns each, as torch.nn.MultiheadAttention(d, heads, batch_first=True)
 * with query = key = value = x (attention.c has the equations).  Params,
 * in this order: in_proj_weight {3d,d} (Xavier-uniform), in_proj_bias
 * {3d} (0), out_proj_weight {d,d} (U(-1/sqrt(d), 1/sqrt(d))), out_proj_bias
 * {d} (0); the state dict names the last two out_proj.weight and
 * out_proj.bias, as PyTorch's submodule.  causal: position t attends to
 * positions 1..t only.  dropout in [0,1): on the attention weights, in
 * training mode.  Config: d, heads, causal (0/1), dropout.  LN_ERANGE for
 * sizes < 1, d not a multiple of heads, dropout out of range. */
ln_status ln_attention_new(ln_module **out, const ln_module_build *ctx, int64_t d, int64_t heads,
                           bool causal, double dropout, ln_error *err);
/* The reference, in double, without dropout: y (N,T,d) from x (N,T,d);
 * backward adds into dw_in, db_in, dw_out, db_out and writes dx (may be
 * NULL) from gy (N,T,d).  LN_ENOMEM (they allocate their scratch). */
ln_status ln_attention_forward_naive(float *y, const float *x, const float *win, const float *bin,
                                     const float *wout, const float *bout, int64_t n, int64_t t,
                                     int64_t d, int64_t heads, bool causal);
ln_status ln_attention_backward_naive(float *dx, float *dwin, float *dbin, float *dwout,
                                      float *dbout, const float *gy, const float *x,
                                      const float *win, const float *bin, const float *wout,
                                      int64_t n, int64_t t, int64_t d, int64_t heads, bool causal);

#endif
