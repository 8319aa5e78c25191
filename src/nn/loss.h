/*
 * loss.h -- losses and output/loss pairings, in C.
 *
 * A loss maps (input, target) to a number and gives dL/dinput.  Every loss
 * is a sum of per-sample losses l_i (a sample is a row of the batch, or for
 * the class losses a row of class scores), reduced as the reduction says:
 *   LN_REDUCE_MEAN  L = sum_i l_i / D: D is the batch size N = input->shape[0]
 *                   (for the class losses the number of rows of classes,
 *                   or, with class weights or ignored labels, the weight
 *                   of the labels that count: PyTorch's weighted mean);
 *   LN_REDUCE_SUM   L = sum_i l_i;
 *   LN_REDUCE_NONE  the l_i themselves, kept in c->losses (shape {N}; for
 *                   the class losses the input's shape without its class
 *                   dimension), and forward's number is their sum.
 * The per-sample loss of MSELoss and the BCE losses is the sum over the
 * sample's outputs (1/2 ||x_i - y_i||^2 for MSE), so that the mean divides
 * by N, not by the element count.
 *
 * Targets are tensors.  For the class-based losses (CrossEntropyLoss,
 * NLLLoss, and the cross_entropy pairing) a target may be
 *   - class indices: a 1-D tensor of length N holding integers 1..C
 *     (1-based, as in Lua) stored as floats, or
 *   - one-hot / probability rows: a tensor of the input's shape {N,C}.
 * CrossEntropyLoss and NLLLoss also take a sequence's scores {N,T,C} with
 * labels {N,T} (or rows {N,T,C}): N*T rows, the mean over the tokens.
 * Labels out of range or not integral, wrong lengths, NaN inputs, and
 * BCELoss inputs or targets outside [0,1] fail with a message that names
 * the values.  Positions in messages are 1-based, as a Lua script counts
 * them ("input has NaN at row 3, column 2").  Every input must be finite
 * (NaN and +-inf are LN_ENAN), and so must every target; probability rows
 * must be non-negative (they need not sum to 1: the gradient is exact
 * either way).
 *
 * Lifetime and buffers as for modules (module.h): refcounted, grad_input,
 * output and losses owned and reused across calls.
 */
#ifndef LN_LOSS_H
#define LN_LOSS_H

#include <stdbool.h>

#include "../core/error.h"
#include "../core/tensor.h"

typedef enum ln_reduction { LN_REDUCE_MEAN = 0, LN_REDUCE_SUM, LN_REDUCE_NONE } ln_reduction;

typedef struct ln_loss ln_loss;
/* One call described row by row: what a class's prepare fills in
 * (loss_impl.h). */
typedef struct ln_loss_rows ln_loss_rows;

/* A loss class is three functions over rows; loss.c runs the reductions,
 * the buffers and the checks every loss shares around them. */
typedef struct ln_loss_class {
	const char *name;  /* "CrossEntropyLoss" */
	size_t size;       /* sizeof the concrete struct, which begins with ln_loss */
	/* Validates input and target (shapes, labels, values) and describes
	 * the call as rows (loss_impl.h). */
	ln_status (*prepare)(const ln_loss *c, const ln_tensor *input, const ln_tensor *target,
	                     ln_loss_rows *r, ln_error *err);
	/* Returns the loss l_i of row i (unscaled).  When yhat is not NULL
	 * (classes with has_output), writes the row's y_hat into it. */
	double (*row_loss)(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *yhat);
	/* g (the row's k entries of grad_input) = s * dl_i/dx_i (overwritten). */
	void (*row_grad)(const ln_loss *c, const ln_loss_rows *r, int64_t i, float *g, double s);
	bool has_output;              /* forward fills c->output (OutputLoss's y_hat) */
	void (*destroy)(ln_loss *c);  /* may be NULL */
	int (*describe)(const ln_loss *c, char *buf, size_t size);  /* may be NULL */
} ln_loss_class;

struct ln_loss {
	const ln_loss_class *cls;
	long refcount;
	ln_reduction reduction;
	ln_tensor grad_input;  /* owned, reused */
	ln_tensor output;      /* OutputLoss: the activation's output y_hat; else empty */
	ln_tensor losses;      /* LN_REDUCE_NONE: the per-sample losses of the last forward */
};

ln_status ln_loss_alloc(ln_loss **out, const ln_loss_class *cls, ln_reduction reduction,
                        ln_error *err);
void ln_loss_retain(ln_loss *c);
void ln_loss_release(ln_loss *c);
/* *loss = L(input, target) (loss may be NULL; NAN on failure), after the
 * checks every loss shares (non-empty contiguous input and target, finite
 * input: LN_EARG, LN_ENAN).  With LN_REDUCE_NONE the per-sample losses go
 * into c->losses and *loss is their sum.  Messages start with the loss's
 * name, "CrossEntropyLoss: " or for an OutputLoss its pairing
 * "OutputLoss(softmax, cross_entropy): ". */
ln_status ln_loss_forward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                          double *loss, ln_error *err);
/* c->grad_input = dL/dinput, overwritten (the buffer is reused while the
 * shape stays the same).  Recomputes what it needs from input, so it does
 * not depend on a previous forward.  With LN_REDUCE_NONE, L is the sum of
 * the per-sample losses.  Messages as ln_loss_forward's. */
ln_status ln_loss_backward(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                           ln_error *err);
/* The same for L = sum_i gout_i l_i: gout holds dL/dl_i, one entry per
 * per-sample loss (c->losses' shape), finite; only with LN_REDUCE_NONE
 * (else LN_EARG).  gout NULL is ln_loss_backward. */
ln_status ln_loss_backward_weighted(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                                    const ln_tensor *gout, ln_error *err);
/* The same with the class's own message, for callers that put their own
 * context in front (the Lua binding). */
ln_status ln_loss_forward_unprefixed(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                                     double *loss, ln_error *err);
ln_status ln_loss_backward_unprefixed(ln_loss *c, const ln_tensor *input, const ln_tensor *target,
                                      const ln_tensor *gout, ln_error *err);
/* The pairing an OutputLoss's messages are given under,
 * "OutputLoss(sigmoid, bce)"; NULL for every other loss.  Valid while c
 * lives. */
const char *ln_loss_pairing(const ln_loss *c);
/* One-line description, as snprintf: "CrossEntropyLoss()",
 * "MSELoss(reduction=sum)", "OutputLoss(softmax, cross_entropy) [canonical]",
 * "CrossEntropyLoss(label_smoothing=0.1, ignore_index=0)". */
int ln_loss_describe(const ln_loss *c, char *buf, size_t size);
/* "mean", "sum" or "none". */
const char *ln_reduction_name(ln_reduction r);

/* ---- the built-in losses ---------------------------------------------------- */

ln_status ln_mse_loss_new(ln_loss **out, ln_reduction r, ln_error *err);
ln_status ln_bce_loss_new(ln_loss **out, ln_reduction r, ln_error *err);
ln_status ln_bce_logits_loss_new(ln_loss **out, ln_reduction r, ln_error *err);
ln_status ln_cross_entropy_loss_new(ln_loss **out, ln_reduction r, ln_error *err);
ln_status ln_nll_loss_new(ln_loss **out, ln_reduction r, ln_error *err);

/* The options of the class losses, as in PyTorch (labels 1-based):
 *   label_smoothing  eps in [0,1] (CrossEntropyLoss only): the target of a
 *                    row becomes (1 - eps) y + eps/C, so a label l gives
 *                    l_i = (1 - eps)(-log p_l) + eps/C sum_j (-log p_j);
 *   weight           C non-negative finite class weights (NULL: all 1):
 *                    each term -y_j log p_j is multiplied by w_j, and the
 *                    mean over labels divides by sum_i w_{l_i} over the
 *                    labels that count (rows of probabilities: by the
 *                    number of rows);
 *   ignore_index     with has_ignore, a label equal to it (any integer, in
 *                    1..C or not: 0 and -100 are usual paddings) adds 0 to
 *                    the loss and its gradient and does not count in the
 *                    mean; it needs class-label targets.
 * If no label counts (all ignored, or all of weight 0), the mean is 0 with
 * a zero gradient (PyTorch gives NaN). */
typedef struct ln_class_loss_options {
	double label_smoothing;
	const ln_tensor *weight;  /* {C}, copied by the constructor; or NULL */
	bool has_ignore;
	int64_t ignore_index;
} ln_class_loss_options;

/* CrossEntropyLoss / NLLLoss with options (o may be NULL: none).
 * Errors: LN_ERANGE (label_smoothing outside [0,1] or NaN, label_smoothing
 * given to NLLLoss, a negative weight), LN_ENAN (a non-finite weight),
 * LN_ESHAPE (weight not 1-D); LN_ENOMEM.  A weight whose length differs
 * from the input's classes fails at forward (LN_ESHAPE). */
ln_status ln_cross_entropy_loss_new_ex(ln_loss **out, ln_reduction r,
                                       const ln_class_loss_options *o, ln_error *err);
ln_status ln_nll_loss_new_ex(ln_loss **out, ln_reduction r, const ln_class_loss_options *o,
                             ln_error *err);
/* The options c was built with (c must be a CrossEntropyLoss or NLLLoss;
 * o->weight then points at c's own copy, valid while c lives); false for
 * any other loss. */
bool ln_class_loss_options_get(const ln_loss *c, ln_class_loss_options *o);

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
/* Whether feeding loss c this input is a known mistake that its values
 * show: NLLLoss given something that is not log-probabilities (a value
 * above 0, or a row whose exponentials do not sum to 1; the first rows
 * are looked at).  If so, writes what to do instead into msg and returns
 * true.  input must be contiguous and finite. */
bool ln_input_warning(const ln_loss *c, const ln_tensor *input, char *msg, size_t size);
/* True for the three canonical pairings; false for any other loss. */
bool ln_output_loss_is_canonical(const ln_loss *c);
/* The pairing of an OutputLoss (c must be one). */
ln_activation ln_output_loss_activation(const ln_loss *c);
ln_loss_kind ln_output_loss_kind(const ln_loss *c);

#endif
