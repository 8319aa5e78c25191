/*
 * residual.c -- Residual(block[, proj]): y = block(x) + x, or
 * y = block(x) + proj(x) when the block changes the shape (a 1x1
 * convolution with stride, say, on the shortcut).
 *
 *   forward:  b = block(x);  s = proj ? proj(x) : x;  y = b + s
 *   backward: dL/dx = block's dL/dx + (proj ? proj's dL/dx : gy)
 *
 * A one-input module like any layer, so it sits in a Sequential, a Graph
 * or another Residual.  Its children are the block and the projection
 * (children[0], children[1]), which parameters(), training mode and the
 * state names reach as for any container; under PyTorch's names they are
 * "block." and "proj.".  Forward saves nothing of its own: the children
 * keep what their backward needs.
 */
#include <stdio.h>
#include <string.h>

#include "graph.h"
#include "nn_internal.h"
#include "state_dict.h"

static ln_module *block_of(const ln_module *m) { return m->children[0]; }
static ln_module *proj_of(const ln_module *m) { return m->nchildren > 1 ? m->children[1] : NULL; }

/* y (n) = a + b */
static void add2(float *y, const float *a, const float *b, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = a[i] + b[i];
}

static ln_status residual_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	if (m->nchildren == 0)
		return ln_fail(err, LN_ESTATE, "has no block");
	ln_module *block = block_of(m), *proj = proj_of(m);
	ln_status s = ln_module_forward_unprefixed(block, x, err);
	if (s != LN_OK) {
		ln_error_prefix(err, "block (%s): ", block->cls->name);
		return s;
	}
	if (proj && (s = ln_module_forward_unprefixed(proj, x, err)) != LN_OK) {
		ln_error_prefix(err, "proj (%s): ", proj->cls->name);
		ln_module_revert(block);  /* a forward that fails changes nothing */
		return s;
	}
	const ln_tensor *b = &block->output, *sc = proj ? &proj->output : x;
	if (!ln_tensor_same_shape(b, sc)) {
		char bs[128], ss[128];
		ln_tensor_shape_str(b, bs, sizeof bs);
		ln_tensor_shape_str(sc, ss, sizeof ss);
		s = proj ? ln_fail(err, LN_ESHAPE, "the block's output %s and the projection's "
		                   "output %s differ", bs, ss)
		         : ln_fail(err, LN_ESHAPE, "the block's output %s differs from its input %s: "
		                   "give a projection for the shortcut, Residual(block, proj)", bs, ss);
	}
	if (s == LN_OK)
		s = ln_tensor_ensure(&m->output, b->ndim, b->shape, err);
	if (s != LN_OK) {
		ln_module_revert(m);  /* the block's and the projection's */
		return s;
	}
	add2(ln_tensor_data(&m->output), ln_tensor_data(b), ln_tensor_data(sc), ln_tensor_numel(b));
	return LN_OK;
}

/* module.h: reserve -- the block's and the projection's, and dL/dx. */
static ln_status residual_reserve(ln_module *m, bool need_gx, ln_error *err)
{
	ln_module *block = block_of(m), *proj = proj_of(m);
	ln_status s = ln_module_reserve(block, need_gx, err);
	if (s == LN_OK && proj)
		s = ln_module_reserve(proj, need_gx, err);
	if (s == LN_OK && need_gx)
		s = ln_tensor_ensure(&m->grad_input, m->in_ndim, m->in_shape, err);
	return s;
}

/* Without m->want_gx (module.h, "input gradients") the children compute
 * their parameter gradients only; when one of them computes no dL/dx
 * (its input_grad is false), dL/dx is not whole and is left out too. */
static ln_status residual_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                   ln_error *err)
{
	ln_module *block = block_of(m), *proj = proj_of(m);
	bool want = m->want_gx;
	/* every buffer first: a backward that runs out of memory does it
	 * before any gradient is added to, so that it can be called again */
	ln_status s = residual_reserve(m, want, err);
	if (s != LN_OK)
		return s;
	s = ln_module_backward_ex(block, x, gy, want, err);
	if (s != LN_OK) {
		ln_error_prefix(err, "block (%s): ", block->cls->name);
		return s;
	}
	if (proj && (s = ln_module_backward_ex(proj, x, gy, want, err)) != LN_OK) {
		ln_error_prefix(err, "proj (%s): ", proj->cls->name);
		return s;
	}
	if (!want || block->gx_skipped || (proj && proj->gx_skipped)) {
		m->want_gx = false;
		return LN_OK;
	}
	if ((s = ln_tensor_ensure(&m->grad_input, x->ndim, x->shape, err)) != LN_OK)
		return s;
	const ln_tensor *gs = proj ? &proj->grad_input : gy;
	add2(ln_tensor_data(&m->grad_input), ln_tensor_data(&block->grad_input), ln_tensor_data(gs),
	     ln_tensor_numel(x));
	return LN_OK;
}

/* The block and the projection: one-input modules, different, neither
 * inside the other (each keeps one output buffer). */
static ln_status residual_assemble(ln_module *m, int n, ln_module *const *children,
                                   const ln_wiring *w, ln_error *err)
{
	static const char *const role[] = {"block", "proj"};
	if (w && w->nlists > 0)
		return ln_fail(err, LN_EARG, "a Residual has no wiring, got a list '%s'",
		               w->list[0].name);
	if (n < 1 || n > 2)
		return ln_fail(err, LN_EARG, "expected a block and at most a projection, got %d "
		               "modules", n);
	if (m->nchildren > 0)
		return ln_fail(err, LN_ESTATE, "already has its block");
	for (int i = 0; i < n; i++) {
		const ln_module *c = children[i];
		if (c->arity != 1 && c->arity != LN_ARITY_ANY)
			return ln_fail(err, LN_EARG, "the %s (%s) takes %d inputs; a Residual gives it "
			               "one", role[i], c->cls->name, c->arity);
		if (ln_module_contains(c, m))
			return ln_fail(err, LN_EARG, "the %s contains the Residual itself", role[i]);
	}
	if (n == 2 && (ln_module_contains(children[0], children[1]) ||
	               ln_module_contains(children[1], children[0])))
		return ln_fail(err, LN_EARG, "the block and the projection share a module; a module "
		               "keeps one output buffer, so it can sit at one place only (create "
		               "another)");
	for (int i = 0; i < n; i++) {
		ln_status s = ln_module_add_child(m, children[i], err);
		if (s != LN_OK)
			return s;
	}
	return LN_OK;
}

ln_status ln_residual_new(ln_module **out, ln_module *block, ln_module *proj, ln_error *err)
{
	ln_module *m;
	ln_status s = ln_module_alloc(&m, &ln_residual_class, err);
	if (s != LN_OK)
		return s;
	ln_module *const children[2] = {block, proj};
	if ((s = residual_assemble(m, proj ? 2 : 1, children, NULL, err)) != LN_OK) {
		ln_module_release(m);
		return s;
	}
	*out = m;
	return LN_OK;
}

static int residual_describe(const ln_module *m, char *buf, size_t size)
{
	return snprintf(buf, size, "Residual");
}

static int residual_child_label(const ln_module *m, int i, char *buf, size_t size)
{
	return snprintf(buf, size, "%s", i == 0 ? "block" : "proj");
}

/* PyTorch's names for a module with attributes block and proj. */
static void residual_state(ln_module *m, ln_state_visitor *v)
{
	if (m->nchildren > 0)
		ln_state_child(v, "block", block_of(m));
	if (proj_of(m))
		ln_state_child(v, "proj", proj_of(m));
}

const ln_module_class ln_residual_class = {
	.name = "Residual",
	.size = sizeof(ln_module),
	.forward = residual_forward,
	.backward = residual_backward,
	.create = ln_module_create_plain,
	.describe = residual_describe,
	.state = residual_state,
	.assemble = residual_assemble,
	.child_label = residual_child_label,
	.reserve = residual_reserve,
};
