/*
 * state_dict.h -- a module tree's state (parameters, buffers, counters)
 * under the names PyTorch gives the same architecture, so that weights
 * move between the two (safetensors files) by name.
 *
 * Keys are paths: a child's entries are prefixed with the child's name
 * and a dot.  For a Sequential holding Linear, ReLU, Sequential{Linear}:
 *
 *     0.weight  0.bias  2.0.weight  2.0.bias
 *
 * and a BatchNorm adds weight, bias, running_mean, running_var and the
 * integer num_batches_tracked, as torch.nn.BatchNorm1d/2d.
 *
 * ---- naming is per class ------------------------------------------------------------
 *
 * Each class names its own entries through the `state` hook of its
 * ln_module_class (module.h); the walk only joins the names into paths.
 * With no hook a class gets ln_state_default: its parameters and buffers
 * under param_names and buffer_names, then its children numbered from 0.
 * A class whose PyTorch counterpart names things differently writes a
 * hook that calls the functions below, for example
 *
 *     // a recurrent layer with one parameter block per stacked layer
 *     static void rnn_state(ln_module *m, ln_state_visitor *v)
 *     {
 *         char name[32];
 *         for (int k = 0; k < layers(m); k++) {
 *             snprintf(name, sizeof name, "weight_ih_l%d", k);
 *             ln_state_tensor(v, name, weight_ih(m, k));
 *             ...
 *         }
 *     }
 *     // attention whose output projection is a submodule in PyTorch
 *     ln_state_tensor(v, "out_proj.weight", &m->param[2]);
 *     // a graph naming its nodes
 *     ln_state_child(v, node_name, node_module);
 *
 * A name may contain dots (it is joined as is).  The ln_state_*
 * functions record the first error (a key longer than LN_STATE_KEY_MAX,
 * or what the walk's callback returned) and do nothing after it, so a
 * hook needs no error handling of its own.
 */
#ifndef LN_STATE_DICT_H
#define LN_STATE_DICT_H

#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"
#include "module.h"

#define LN_STATE_KEY_MAX 256  /* bytes of a full key, NUL included */

typedef enum ln_state_kind {
	LN_STATE_TENSOR,   /* a parameter or buffer: entry.tensor */
	LN_STATE_INTEGER,  /* an integer the module keeps: entry.integer */
	LN_STATE_OPAQUE,   /* a module whose state lives outside C (a custom
	                    * module written in Lua): entry.key is its prefix
	                    * (no trailing dot), the caller asks it */
} ln_state_kind;

typedef struct ln_state_entry {
	ln_state_kind kind;
	const char *key;     /* the full key; valid during the callback only */
	ln_module *owner;    /* the module the entry belongs to */
	ln_tensor *tensor;   /* LN_STATE_TENSOR: the module's own tensor (loading copies into it) */
	int64_t *integer;    /* LN_STATE_INTEGER: the module's own counter */
} ln_state_entry;

/* Called for every entry in order; a status other than LN_OK (with err
 * filled) stops the walk and is returned by it. */
typedef ln_status (*ln_state_fn)(const ln_state_entry *e, void *ctx, ln_error *err);

/* Walks m's state in order -- for each module its own entries, then its
 * children's, depth first, as torch.nn.Module.state_dict orders them --
 * calling fn for each entry.  Returns LN_OK, fn's first failure, or
 * LN_ERANGE for a key longer than LN_STATE_KEY_MAX.  The walk allocates
 * nothing and holds no resource while fn runs, so fn may also leave by a
 * longjmp (a Lua error). */
ln_status ln_module_state_walk(ln_module *m, ln_state_fn fn, void *ctx, ln_error *err);

/* ---- for class hooks ------------------------------------------------------------------ */

/* An entry of the module being named: a tensor it owns, or a counter. */
void ln_state_tensor(ln_state_visitor *v, const char *name, ln_tensor *t);
void ln_state_integer(ln_state_visitor *v, const char *name, int64_t *value);
/* A child, whose own hook names the entries under "<name>.". */
void ln_state_child(ln_state_visitor *v, const char *name, ln_module *child);
/* The module being named keeps its state outside C (External). */
void ln_state_opaque(ln_state_visitor *v, ln_module *m);
/* The default naming (see above); a hook may call it, then add entries. */
void ln_state_default(ln_module *m, ln_state_visitor *v);

#endif
