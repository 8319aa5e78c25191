/*
 * loss.h -- losses and output/loss pairings, in C.
 *
 * A loss maps (input, target) to a number and gives dL/dinput.  Every loss
 * is averaged over the batch N = input->shape[0] (LN_REDUCE_SUM sums
 * instead).
 *
 * Targets are tensors.  For the class-based losses (CrossEntropyLoss,
 * NLLLoss, and the cross_entropy pairing) a target may be
 *   - class indices: a 1-D tensor of length N holding integers 1..C
 *     (1-based, as in Lua) stored as floats, or
 *   - one-hot / probability rows: a tensor of the input's shape {N,C}.
 * Labels out of range or not integral, wrong lengths, NaN inputs, and
 * BCELoss inputs or targets outside [0,1] fail with a message that names
 * the values.  Positions in messages are 1-based, as a Lua script counts
 * them ("input has NaN at row 3, column 2").  Every input must be finite (NaN and +-inf are LN_ENAN), and so
 * must every target; probability rows must be non-negative (they need not
 * sum to 1: the gradient is exact either way).  The mean divides by the
 * batch size N, not by the element count, for every loss.
 *
 * Lifetime and buffers as for modules (module.h): refcounted, grad_input
 * and output owned and reused across calls.
 */
#ifndef LN_LOSS_H
#define LN_LOSS_H

#include <stdbool.h>

#include "../core/error.h"
#include "../core/tensor.h"

typedef enum ln_reduction { LN_REDUCE_MEAN = 0, LN_REDUCE_SUM } ln_reduction;

typedef struct ln_loss ln_loss;

typedef struct ln_loss_class {
	const char *name;  /* "CrossEntropyLoss" */
	size_t size;       /* sizeof the concrete struct, which begins with ln_loss */
	/* *loss = L(input, target).  Validates shapes, labels and values. */
	ln_status (*forward)(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
	                     double *loss, ln_error *err);
	/* c->grad_input = dL/dinput (overwritten). */
	ln_status (*backward)(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
	                      ln_error *err);
	void (*destroy)(ln_loss *c);  /* may be NULL */
	int (*describe)(const ln_loss *c, char *buf, size_t size);
} ln_loss_class;

struct ln_loss {
	const ln_loss_class *cls;
	long refcount;
	ln_reduction reduction;
	ln_tensor grad_input;  /* owned, reused */
	ln_tensor output;      /* OutputLoss: the activation's output y_hat; else empty */
};

ln_status ln_loss_alloc(ln_loss **out, const ln_loss_class *cls, ln_reduction reduction,
                        ln_error *err);
void ln_loss_retain(ln_loss *c);
void ln_loss_release(ln_loss *c);
/* *loss = L(input, target) (loss may be NULL; NAN on failure), after the
 * checks every loss shares (non-empty contiguous input and target, finite
 * input: LN_EARG, LN_ENAN).  Messages start with the loss's name,
 * "CrossEntropyLoss: " or for an OutputLoss its pairing
 * "OutputLoss(softmax, cross_entropy): ". */
ln_status ln_loss_forward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                          double *loss, ln_error *err);
/* c->grad_input = dL/dinput, overwritten (the buffer is reused while the
 * shape stays the same).  Recomputes what it needs from input, so it does
 * not depend on a previous forward.  Messages as ln_loss_forward's. */
ln_status ln_loss_backward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                           ln_error *err);
/* The same with the class's own message, for callers that put their own
 * context in front (the Lua binding). */
ln_status ln_loss_forward_unprefixed(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                                     double *loss, ln_error *err);
ln_status ln_loss_backward_unprefixed(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                                      ln_error *err);
/* The pairing an OutputLoss's messages are given under,
 * "OutputLoss(sigmoid, bce)"; NULL for every other loss.  Valid while c
 * lives. */
const char *ln_loss_pairing(const ln_loss *c);
/* One-line description, as snprintf: "CrossEntropyLoss()",
 * "MSELoss(reduction=sum)", "OutputLoss(softmax, cross_entropy) [canonical]". */
int ln_loss_describe(const ln_loss *c, char *buf, size_t size);

/* ---- the built-in losses ---------------------------------------------------- */

ln_status ln_mse_loss_new(ln_loss **out, ln_reduction r, ln_error *err);
ln_status ln_bce_loss_new(ln_loss **out, ln_reduction r, ln_error *err);
ln_status ln_bce_logits_loss_new(ln_loss **out, ln_reduction r, ln_error *err);
ln_status ln_cross_entropy_loss_new(ln_loss **out, ln_reduction r, ln_error *err);
ln_status ln_nll_loss_new(ln_loss **out, ln_reduction r, ln_error *err);

/* ---- output/loss pairings ------------------------------------------------------
 *
 * An activation applied to the pre-activation z, followed by a loss on
 * y_hat = act(z).  forward keeps y_hat in c->output; backward gives dL/dz.
 * The canonical pairings (identity,mse), (sigmoid,bce), (softmax,
 * cross_entropy) compute dL/dz = (y_hat - y)/N in fused, stable form; the
 * other defined pairings go through the chain rule; undefined ones fail in
 * ln_output_loss_new with LN_EARG and a message saying why.  Defined: mse
 * after any activation; bce after sigmoid (canonical) and softmax (its
 * outputs lie in (0,1), so bce is defined, if rarely wise); cross_entropy
 * after softmax only.  See output_loss.c for the table. */
typedef enum ln_activation {
	LN_ACT_IDENTITY, LN_ACT_SIGMOID, LN_ACT_TANH, LN_ACT_RELU, LN_ACT_SOFTMAX, LN_ACT_COUNT
} ln_activation;
typedef enum ln_loss_kind { LN_LOSS_MSE, LN_LOSS_BCE, LN_LOSS_CROSS_ENTROPY, LN_LOSS_KIND_COUNT } ln_loss_kind;

/* Names as used from Lua ("identity", "cross_entropy"); -1 if unknown. */
int ln_activation_from_name(const char *name);
int ln_loss_kind_from_name(const char *name);
const char *ln_activation_name(ln_activation a);
const char *ln_loss_kind_name(ln_loss_kind k);
/* The valid names joined by ", " ("identity, sigmoid, tanh, relu, softmax"),
 * for messages about unknown names; return as snprintf. */
int ln_activation_names(char *buf, size_t size);
int ln_loss_kind_names(char *buf, size_t size);

ln_status ln_output_loss_new(ln_loss **out, ln_activation act, ln_loss_kind kind,
                             ln_reduction r, ln_error *err);
/* As ln_output_loss_new, by name; an unknown name fails with LN_EARG and
 * lists the valid ones ("unknown activation "softplus" (expected one of
 * identity, sigmoid, tanh, relu, softmax)"). */
ln_status ln_output_loss_new_by_name(ln_loss **out, const char *act, const char *kind,
                                     ln_reduction r, ln_error *err);
/* Whether feeding loss c the output of a layer of class `producer` (its
 * registered name, "Softmax") is a known mistake: softmax or sigmoid
 * applied twice (CrossEntropyLoss or an OutputLoss with softmax after a
 * Softmax/LogSoftmax layer, BCEWithLogitsLoss or OutputLoss with sigmoid
 * after a Sigmoid layer), or NLLLoss after Softmax.  If so, writes what
 * to do instead into msg (as snprintf) and returns true.  All the
 * knowledge of which activation goes with which loss is in output_loss.c. */
bool ln_pairing_warning(const ln_loss *c, const char *producer, char *msg, size_t size);
/* True for the three canonical pairings; false for any other loss. */
bool ln_output_loss_is_canonical(const ln_loss *c);
/* The pairing of an OutputLoss (c must be one). */
ln_activation ln_output_loss_activation(const ln_loss *c);
ln_loss_kind ln_output_loss_kind(const ln_loss *c);

#endif
