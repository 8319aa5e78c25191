/*
 * sequential.c -- the Sequential container: children applied in order.
 *
 * Forward and backward walk the children's vtables here in C, passing
 * each child the previous child's output (forward) or the next child's
 * grad_input (backward); nothing is copied.  Backward leaves out the
 * input gradients nobody needs (module.h, "input gradients").  The container's output is a
 * view of the last child's output and its grad_input a view of the first
 * child's grad_input.  Children are owned references (module.h).
 */
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "layers.h"
#include "nn_internal.h"

/* Whether child c may run in a chain with its neighbours (module.h,
 * "sample by sample").  Not while lunet.check_numerics is on: the check
 * scans each layer's results after its own forward and backward, so each
 * child then goes through ln_module_forward/backward (a chain of one). */
static bool chains(const ln_module *c)
{
	return c->cls->rows && !ln_numerics_on;
}

static ln_status sequential_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	if (m->nchildren == 0)
		return ln_fail(err, LN_ESTATE, "has no layers (add some first)");
	const ln_tensor *in = x;
	for (int i = 0; i < m->nchildren;) {
		/* children i..j-1: one child, or a chain of children that work
		 * sample by sample */
		int j = i + 1, failed = 0;
		while (chains(m->children[i]) && j < m->nchildren && chains(m->children[j]))
			j++;
		ln_status s = chains(m->children[i])
		            ? ln_module_chain_forward(m->children + i, j - i, in, &failed, err)
		            : ln_module_forward_unprefixed(m->children[i], in, err);
		if (s != LN_OK) {
			ln_error_prefix(err, "layer %d (%s): ", i + failed + 1,
			                m->children[i + failed]->cls->name);
			/* the layers before it leave their buffers as they were */
			for (int b = i + failed - 1; b >= 0; b--)
				ln_module_revert(m->children[b]);
			return s;
		}
		in = &m->children[j - 1]->output;
		i = j;
	}
	ln_tensor_release(&m->output);
	ln_tensor_ref(&m->output, in);
	return LN_OK;
}

/*
 * Backward walks the children from the last.  Which of them compute
 * dL/d(their input) (module.h, "input gradients"): a child whose
 * input_grad is false computes none, so the children before it get no
 * gradient -- they may not have parameters (LN_EARG naming both), and
 * their backward is not run.  Otherwise the first child computes dL/dx
 * when the container is asked for it (m->want_gx); when it is not, the
 * leading children without parameters are not run, and the first one
 * with parameters computes its parameter gradients only.  Every later
 * child computes its dL/dx, which the child before it needs.  The
 * container's grad_input is the first child's when that was computed;
 * else m->want_gx is cleared (module.c then marks it skipped).
 */
/* Which children the backward runs: from *first on, the first of them
 * computing its dL/dx when *need (want_gx: the container's own).  LN_EARG
 * for a cut before layers with parameters. */
static ln_status backward_plan(const ln_module *m, bool want_gx, int *first_out, bool *need_out,
                               ln_error *err)
{
	int n = m->nchildren;
	int first = 0;         /* the first child whose backward runs */
	bool need = want_gx;   /* whether that child computes its dL/dx */
	for (int i = n - 1; i > 0; i--)
		if (!m->children[i]->input_grad) {
			first = i;
			need = false;
			break;
		}
	for (int j = 0; j < first; j++)
		if (ln_module_trains(m->children[j]))
			return ln_fail(err, LN_EARG,
			               "layer %d (%s) has input_grad = false, so layer %d (%s) before it "
			               "would get no gradient for its parameters (set input_grad = false "
			               "on the container instead)",
			               first + 1, m->children[first]->cls->name, j + 1,
			               m->children[j]->cls->name);
	while (!need && first < n && !ln_module_trains(m->children[first]))
		first++;
	*first_out = first;
	*need_out = need;
	return LN_OK;
}

/* module.h: reserve -- for every child whose backward will run. */
static ln_status sequential_reserve(ln_module *m, bool need_gx, ln_error *err)
{
	int first;
	bool need;
	if (m->nchildren == 0 || backward_plan(m, need_gx, &first, &need, NULL) != LN_OK)
		return LN_OK;  /* the backward will say what is wrong */
	for (int i = m->nchildren - 1; i >= first; i--) {
		ln_status s = ln_module_reserve(m->children[i], need || i > first, err);
		if (s != LN_OK)
			return s;
	}
	return LN_OK;
}

static ln_status sequential_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                     ln_error *err)
{
	int n = m->nchildren;
	if (n == 0)
		return ln_fail(err, LN_ESTATE, "has no layers (add some first)");
	int first;
	bool need;
	ln_status s = backward_plan(m, m->want_gx, &first, &need, err);
	if (s != LN_OK)
		return s;
	/* every layer's buffers first: a backward that runs out of memory does
	 * it before any gradient is added to, so that it can be called again */
	if ((s = sequential_reserve(m, m->want_gx, err)) != LN_OK)
		return s;
	const ln_tensor *g = gy;
	int last = n;  /* the last child whose backward ran */
	for (int i = n - 1; i >= first; i--) {
		ln_module *c = m->children[i];
		/* children j..i: one child, or a chain of children that work
		 * sample by sample */
		int j = i, failed = 0;
		while (chains(c) && j > first && chains(m->children[j - 1]))
			j--;
		const ln_tensor *in = j == 0 ? x : &m->children[j - 1]->output;
		s = chains(c) ? ln_module_chain_backward(m->children + j, i - j + 1, in, g,
		                                         need || j > first, &failed, err)
		              : ln_module_backward_ex(c, in, g, need || i > first, err);
		if (s != LN_OK) {
			ln_error_prefix(err, "layer %d (%s): ", j + failed + 1,
			                m->children[j + failed]->cls->name);
			return s;
		}
		last = i = j;
		c = m->children[i];
		if (c->gx_skipped && i > first) {
			/* cut inside a nested container: nothing flows further back */
			for (int b = first; b < i; b++)
				if (ln_module_trains(m->children[b]))
					return ln_fail(err, LN_EARG,
					               "layer %d (%s) computes no input gradient (a layer inside "
					               "it has input_grad = false), so layer %d (%s) before it "
					               "would get no gradient for its parameters",
					               i + 1, c->cls->name, b + 1, m->children[b]->cls->name);
			break;
		}
		g = &c->grad_input;
	}
	for (int j = 0; j < last; j++)
		ln_module_skip_gx(m->children[j]);
	ln_tensor_release(&m->grad_input);
	if (last == 0 && !m->children[0]->gx_skipped)
		ln_tensor_ref(&m->grad_input, &m->children[0]->grad_input);
	else
		m->want_gx = false;
	return LN_OK;
}

ln_status ln_sequential_new(ln_module **out, ln_error *err)
{
	return ln_module_alloc(out, &ln_sequential_class, err);
}

ln_status ln_sequential_add(ln_module *seq, ln_module *child, ln_error *err)
{
	if (seq->cls != &ln_sequential_class)
		return ln_fail(err, LN_EARG, "add expects a Sequential, got a %s", seq->cls->name);
	if (ln_module_contains(child, seq))
		return ln_fail(err, LN_EARG,
		               "cannot add a container to itself or to one of its own layers");
	if (ln_module_contains(seq, child))
		return ln_fail(err, LN_EARG,
		               "this %s is already inside the container; a module keeps one "
		               "output buffer, so it can sit at one place only (create another)",
		               child->cls->name);
	return ln_module_add_child(seq, child, err);
}

/* The loader's way back: the children in order (a Sequential has no
 * wiring). */
static ln_status sequential_assemble(ln_module *m, int n, ln_module *const *children,
                                     const ln_wiring *w, ln_error *err)
{
	if (w && w->nlists > 0)
		return ln_fail(err, LN_EARG, "a Sequential has no wiring, got a list '%s'",
		               w->list[0].name);
	for (int i = 0; i < n; i++) {
		ln_status s = ln_sequential_add(m, children[i], err);
		if (s != LN_OK)
			return s;
	}
	return LN_OK;
}

static int sequential_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "Sequential");
}

const ln_module_class ln_sequential_class = {
	.name = "Sequential",
	.size = sizeof(ln_module),
	.forward = sequential_forward,
	.backward = sequential_backward,
	.create = ln_module_create_plain,
	.describe = sequential_describe,
	.reserve = sequential_reserve,
	.assemble = sequential_assemble,
};
