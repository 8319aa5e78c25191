/*
 * nn_internal.h -- helpers shared by the module implementations in src/nn.
 * Not part of the public API.
 *
 * Error messages.  Every error that leaves ln_module_forward starts with
 * "<Class>: " and every one that leaves ln_module_backward with
 * "<Class>:backward: ".  A class's forward/backward may write its message
 * with or without that prefix; the wrappers in module.c normalise it.
 * Sequential uses the *_unprefixed variants so that it can put the child's
 * position in front instead ("layer 3 (Linear): ...").
 */
#ifndef LN_NN_INTERNAL_H
#define LN_NN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"
#include "module.h"

/* The shared checks and the class's forward/backward, with messages that
 * carry no "<Class>: " prefix (any prefix the class wrote is removed). */
ln_status ln_module_forward_unprefixed(ln_module *m, const ln_tensor *x, ln_error *err);
ln_status ln_module_backward_unprefixed(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                        ln_error *err);

/* Puts a printf-formatted prefix in front of err->msg (truncating the end
 * if the whole does not fit).  err may be NULL. */
void ln_error_prefix(ln_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Removes a leading "<name>: ", "<name>:forward: " or "<name>:backward: "
 * from err->msg, if present.  err may be NULL. */
void ln_error_strip_prefix(ln_error *err, const char *name);

/* Reads config value `v` (named `what`, for the message) as an integer
 * in [lo, hi]: LN_ERANGE if it is not finite, not integral or out of range.
 * Messages read "<cls>: expected <what> to be an integer >= lo, got v". */
ln_status ln_config_int(int64_t *out, double v, const char *cls, const char *what, int64_t lo,
                        int64_t hi, ln_error *err);

/* For a layer whose output has its input's shape: checks that x is shaped
 * like the last forward's output (LN_ESHAPE naming both shapes; gy already
 * is: ln_module_backward) and makes m->grad_input that shape (LN_ENOMEM). */
ln_status ln_module_prepare_backward(ln_module *m, const ln_tensor *x, ln_error *err);

/* Called by module.c for External modules (external.c). */
void ln_external_on_set_training(ln_module *m, bool training);

#endif
