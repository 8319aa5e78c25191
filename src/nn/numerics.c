/*
 * numerics.c -- the NaN finder (lunet.check_numerics): with it on, every
 * module's forward and backward is followed by a scan of what it wrote,
 * and the first NaN or infinity stops the call with LN_ENAN and a message
 * naming the module by its place in the model:
 *
 *     check_numerics: Sequential[3] (Linear(256 -> 128)): backward produced
 *     inf in grad_weight (row 12, column 40), at step 17
 *
 * module.c calls in only when the check is on (one predictable branch per
 * forward and backward otherwise), through ln_numerics_forward and
 * ln_numerics_backward, which run the call themselves so that they can
 * tell the model (the outermost module of a nest of calls) from the
 * modules inside it:
 *   - the model's input and the gradient handed to its backward are
 *     scanned first (bad values that come from outside are named so);
 *   - a layer's output after its forward, and after its backward its
 *     parameter gradients (in order) and its grad_input (if it computed
 *     one); a container's are its layers' and are not scanned twice;
 *   - the layer that finds one records itself; the error travels out
 *     through the containers, and the model's call writes the message,
 *     with the path from the model down to that layer: the model's class,
 *     then [i] per level (1-based child positions), then the layer's
 *     description.
 * The step is the model's count of forwards since the check was turned on
 * (ln_module.numerics_steps): the backward belongs to the step of the
 * forward before it.  Process-wide, like the allocator: lunet runs its
 * modules from one thread.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "module.h"
#include "nn_internal.h"

bool ln_numerics_on;

static int depth;                 /* nesting of checked calls now running */
static const ln_module *culprit;  /* the module that found a bad value, or NULL */
static char finding[LN_ERROR_MSG_MAX];

void ln_numerics_set(bool on)
{
	ln_numerics_on = on;
}

/* The index of the first NaN or infinity of t (contiguous) in *at, or -1. */
static int64_t first_bad(const ln_tensor *t)
{
	if (ln_tensor_is_empty(t) || t->storage->zero_pending)
		return -1;  /* a gradient still owed its zeros holds nothing else */
	const float *v = ln_tensor_data(t);
	int64_t n = ln_tensor_numel(t);
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(v[i]))
			return i;
	return -1;
}

/* Scans t; on a bad value records m as the culprit with what was found:
 * "<lead> NaN in <noun> (row 2, column 5)", or without " in <noun>" when
 * noun is NULL, and returns LN_ENAN. */
static ln_status scan(const ln_module *m, const ln_tensor *t, const char *lead, const char *noun,
                      ln_error *err)
{
	int64_t i = first_bad(t);
	if (i < 0)
		return LN_OK;
	float v = ln_tensor_data(t)[i];
	char where[96];
	ln_pos_str(where, sizeof where, t, i);
	culprit = m;
	snprintf(finding, sizeof finding, "%s %s%s%s (%s)", lead,
	         isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf", noun ? " in " : "", noun ? noun : "", where);
	return ln_fail(err, LN_ENAN, "check_numerics: %s", finding);
}

/* Appends to buf (at *len) the path from m down to target: "[i]" per
 * level.  True when target is m or below it. */
static bool path_to(const ln_module *m, const ln_module *target, char *buf, size_t size,
                    size_t *len)
{
	if (m == target)
		return true;
	for (int i = 0; i < m->nchildren; i++) {
		size_t mark = *len;
		int w = snprintf(buf + *len, size - *len, "[%d]", i + 1);
		if (w > 0 && (size_t)w < size - *len)
			*len += (size_t)w;
		if (path_to(m->children[i], target, buf, size, len))
			return true;
		*len = mark;
		buf[mark] = '\0';
	}
	return false;
}

/* At the model's level: the message of the finding, with the path. */
static ln_status report(const ln_module *model, ln_error *err)
{
	char path[256], desc[160];
	size_t len = (size_t)snprintf(path, sizeof path, "%s", model->cls->name);
	if (len >= sizeof path)
		len = sizeof path - 1;
	const ln_module *who = culprit;
	if (!path_to(model, who, path, sizeof path, &len))
		who = model;  /* found inside a module written in Lua: name the model */
	if (who->cls->describe)
		who->cls->describe(who, desc, sizeof desc);
	else
		snprintf(desc, sizeof desc, "%s", who->cls->name);
	culprit = NULL;
	if (strcmp(desc, who->cls->name) == 0)  /* "ReLU" says no more than the path */
		return ln_fail(err, LN_ENAN, "check_numerics: %s: %s, at step %llu", path, finding,
		               (unsigned long long)model->numerics_steps);
	return ln_fail(err, LN_ENAN, "check_numerics: %s (%s): %s, at step %llu", path, desc, finding,
	               (unsigned long long)model->numerics_steps);
}

ln_status ln_numerics_forward(ln_module *m, int n, const ln_tensor *const *x, ln_error *err)
{
	ln_status s = LN_OK;
	if (depth++ == 0) {
		m->numerics_steps++;
		culprit = NULL;
		for (int i = 0; i < n && s == LN_OK; i++) {
			char lead[48];
			if (n > 1)
				snprintf(lead, sizeof lead, "input %d holds", i + 1);
			s = scan(m, x[i], n > 1 ? lead : "the input holds", NULL, err);
		}
	}
	if (s == LN_OK && (s = ln_module_forward_body(m, n, x, err)) == LN_OK && m->nchildren == 0 &&
	    (s = scan(m, &m->output, "forward produced", "its output", err)) != LN_OK) {
		/* the forward ran but stops here: it changes nothing, as one that
		 * failed (BatchNorm's running statistics), and no backward follows */
		ln_module_revert(m);
		m->in_ndim = 0;
	}
	if (--depth == 0 && s == LN_ENAN && culprit)
		s = report(m, err);
	return s;
}

ln_status ln_numerics_backward(ln_module *m, int n, const ln_tensor *const *x, const ln_tensor *gy,
                               bool need_gx, ln_error *err)
{
	ln_status s = LN_OK;
	if (depth++ == 0) {
		culprit = NULL;
		s = scan(m, gy, "the gradient given to backward holds", NULL, err);
	}
	if (s == LN_OK)
		s = ln_module_backward_body(m, n, x, gy, need_gx, err);
	if (s == LN_OK && m->nchildren == 0) {
		char name[LN_PARAM_NAME_MAX], noun[LN_PARAM_NAME_MAX + 8];
		for (int i = 0; s == LN_OK && i < m->nparams; i++) {
			snprintf(noun, sizeof noun, "grad_%s", ln_module_param_name(m, i, name));
			s = scan(m, &m->grad[i], "backward produced", noun, err);
		}
		if (s == LN_OK && !m->gx_skipped && !ln_module_is_multi(m))
			s = scan(m, &m->grad_input, "backward produced", "grad_input", err);
		for (int i = 0; s == LN_OK && !m->gx_skipped && ln_module_is_multi(m) && i < n; i++) {
			char what[48];  /* a join's gradient for each of its inputs */
			snprintf(what, sizeof what, "the gradient of input %d", i + 1);
			s = scan(m, ln_module_grad_input_at(m, i), "backward produced", what, err);
		}
	}
	if (--depth == 0 && s == LN_ENAN && culprit)
		s = report(m, err);
	return s;
}
