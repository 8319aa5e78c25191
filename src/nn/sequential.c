/*
 * sequential.c -- the Sequential container: children applied in order.
 *
 * Forward and backward walk the children's vtables here in C, passing
 * each child the previous child's output (forward) or the next child's
 * grad_input (backward); nothing is copied.  The container's output is a
 * view of the last child's output and its grad_input a view of the first
 * child's grad_input.  Children are owned references (module.h).
 */
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "layers.h"
#include "nn_internal.h"

static ln_status sequential_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	if (m->nchildren == 0)
		return ln_fail(err, LN_ESTATE, "has no layers (add some first)");
	const ln_tensor *in = x;
	for (int i = 0; i < m->nchildren; i++) {
		ln_module *c = m->children[i];
		ln_status s = ln_module_forward_unprefixed(c, in, err);
		if (s != LN_OK) {
			ln_error_prefix(err, "layer %d (%s): ", i + 1, c->cls->name);
			return s;
		}
		in = &c->output;
	}
	ln_tensor_release(&m->output);
	ln_tensor_ref(&m->output, in);
	return LN_OK;
}

static ln_status sequential_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                     ln_error *err)
{
	int n = m->nchildren;
	if (n == 0)
		return ln_fail(err, LN_ESTATE, "has no layers (add some first)");
	const ln_tensor *g = gy;
	for (int i = n - 1; i >= 0; i--) {
		ln_module *c = m->children[i];
		const ln_tensor *in = i == 0 ? x : &m->children[i - 1]->output;
		ln_status s = ln_module_backward_unprefixed(c, in, g, err);
		if (s != LN_OK) {
			ln_error_prefix(err, "layer %d (%s): ", i + 1, c->cls->name);
			return s;
		}
		g = &c->grad_input;
	}
	ln_tensor_release(&m->grad_input);
	ln_tensor_ref(&m->grad_input, g);
	return LN_OK;
}

ln_status ln_sequential_new(ln_module **out, ln_error *err)
{
	return ln_module_alloc(out, &ln_sequential_class, err);
}

/* Whether target is root or one of its descendants. */
static bool contains(const ln_module *root, const ln_module *target)
{
	if (root == target)
		return true;
	for (int i = 0; i < root->nchildren; i++)
		if (contains(root->children[i], target))
			return true;
	return false;
}

ln_status ln_sequential_add(ln_module *seq, ln_module *child, ln_error *err)
{
	if (seq->cls != &ln_sequential_class)
		return ln_fail(err, LN_EARG, "add expects a Sequential, got a %s", seq->cls->name);
	if (contains(child, seq))
		return ln_fail(err, LN_EARG,
		               "cannot add a container to itself or to one of its own layers");
	if (contains(seq, child))
		return ln_fail(err, LN_EARG,
		               "this %s is already inside the container; a module keeps one "
		               "output buffer, so it can sit at one place only (create another)",
		               child->cls->name);
	int n = seq->nchildren;
	ln_module **a = ln_malloc((size_t)(n + 1) * sizeof *a);
	if (!a)
		return ln_fail(err, LN_ENOMEM, "out of memory adding layer %d", n + 1);
	if (n > 0)
		memcpy(a, seq->children, (size_t)n * sizeof *a);
	a[n] = child;
	ln_module_retain(child);
	ln_free(seq->children);
	seq->children = a;
	seq->nchildren = n + 1;
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
};
