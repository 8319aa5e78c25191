/*
 * nn_internal.h -- helpers shared by the module implementations in src/nn.
 * Not part of the public API.
 *
 * Error messages: a class never names itself in front of its messages;
 * the caller that knows the context adds it (module.h).
 */
#ifndef LN_NN_INTERNAL_H
#define LN_NN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"
#include "module.h"

/* Reads config value `v` (named `what`, for the message) as an integer
 * in [lo, hi]: LN_ERANGE if it is not finite, not integral or out of range.
 * Messages read "expected <what> to be an integer >= lo, got v". */
ln_status ln_config_int(int64_t *out, double v, const char *what, int64_t lo, int64_t hi,
                        ln_error *err);

/* Marks m and every module under it as holding no dL/dx of the last
 * backward (module.h, "input gradients"): a container calls it on the
 * children its backward did not reach. */
void ln_module_skip_gx(ln_module *m);

/* Called by module.c for External modules (external.c). */
void ln_external_on_set_training(ln_module *m, bool training);

#endif
