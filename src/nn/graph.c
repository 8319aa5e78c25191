/*
 * graph.c -- the Graph container (graph.h): modules wired as a directed
 * acyclic graph, run in C node by node.
 *
 * Built once (ln_graph_new, or the loader's assemble), a graph holds, per
 * node, its module (borrowed from m->children, which owns the
 * references), the nodes it reads, and the list of its uses: the (node,
 * input slot) pairs that read it and the outputs it is.  Forward walks the
 * nodes in order, pointing each module at the outputs of the nodes it
 * reads (nothing is copied).  Backward walks them in reverse: a node's
 * gradient is the one thing sent back to it when it has one use (a
 * pointer to that module's grad buffer, or to the caller's gradient), and
 * the sum of all of them, in use order, in a buffer of its own when it
 * has several.  All buffers are kept and reused, so a steady-state step
 * allocates nothing.
 *
 * The graph's output k is a view of its output node's output (a copy
 * when that node is an input: the graph never hands out the caller's
 * tensor as its own), and its dL/d(input i) a view of that input node's
 * gradient (likewise copied when that gradient would be the caller's).
 */
#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/alloc.h"
#include "graph.h"
#include "nn_internal.h"

#define MAX_NODES (1 << 24)  /* far beyond any real network; bounds the arrays */

typedef struct gnode {
	ln_module *m;            /* NULL: an input node; else borrowed from children */
	int pos;                 /* input node: index among the inputs; else among the children */
	int nin;
	const int *in;           /* into graph.edges */
	const ln_tensor **xs;    /* into graph.xs: the tensors it reads (set by each pass) */
	int nuses;
	int *use_node;           /* into graph.use_node: the reading node, or -1 for an output */
	int *use_slot;           /* its input slot, or the output's index */
	const ln_tensor *value;  /* its output in the last forward */
	const ln_tensor *grad;   /* dL/d(value) in the last backward; NULL before one */
	bool need;               /* backward: someone needs dL/d(value) */
	bool need_in;            /* backward: someone needs dL/d(the nodes it reads) */
	ln_tensor acc;           /* owned: the sum of several gradients, or a copy */
} gnode;

typedef struct graph {
	ln_module base;
	int nnodes;
	gnode *node;
	int ninputs, noutputs;
	int *input, *output;        /* node indices */
	int *edges;                 /* every node's inputs, in node order */
	int *use_node, *use_slot;   /* every node's uses, in node order */
	const ln_tensor **xs;       /* one slot per edge */
	ln_tensor *out;             /* noutputs views (or copies, out_copy) of the outputs */
	ln_tensor *out_copy;
	/* the wiring as saved (int64 lists): arity per node, edges, inputs, outputs */
	int64_t *w_arity, *w_edges, *w_inputs, *w_outputs;
	int nedges;
	/* set for the length of ln_graph_forward/backward: several outputs allowed,
	 * and the gradients of outputs 2.. */
	bool several;
	const ln_tensor *const *gys;
} graph;

static graph *as_graph(const ln_module *m)
{
	assert(m->cls == &ln_graph_class);
	return (graph *)m;
}

/* ---- structure -------------------------------------------------------------- */

int ln_graph_noutputs(const ln_module *m) { return as_graph(m)->noutputs; }
int ln_graph_nnodes(const ln_module *m) { return as_graph(m)->nnodes; }

const ln_tensor *ln_graph_output(const ln_module *m, int k)
{
	const graph *g = as_graph(m);
	assert(k >= 0 && k < g->noutputs);
	return &g->out[k];
}

int ln_graph_output_node(const ln_module *m, int k)
{
	assert(k >= 0 && k < as_graph(m)->noutputs);
	return as_graph(m)->output[k];
}

int ln_graph_input_node(const ln_module *m, int i)
{
	assert(i >= 0 && i < as_graph(m)->ninputs);
	return as_graph(m)->input[i];
}

ln_graph_node_desc ln_graph_node(const ln_module *m, int k)
{
	const graph *g = as_graph(m);
	assert(k >= 0 && k < g->nnodes);
	const gnode *n = &g->node[k];
	return (ln_graph_node_desc){n->m, n->nin, n->in};
}

int ln_graph_node_position(const ln_module *m, int k)
{
	assert(k >= 0 && k < as_graph(m)->nnodes);
	return as_graph(m)->node[k].pos;
}

const ln_tensor *ln_graph_node_grad(const ln_module *m, int k)
{
	assert(k >= 0 && k < as_graph(m)->nnodes);
	return as_graph(m)->node[k].grad;
}

/* "node 3 (Linear)", "input 1" for node k of a description (nodes that
 * are not built yet are labelled the same way). */
static void label(const ln_graph_node_desc *nodes, const int *pos, int k, char *buf, size_t size)
{
	if (nodes[k].m)
		snprintf(buf, size, "node %d (%s)", pos[k] + 1, nodes[k].m->cls->name);
	else if (pos[k] >= 0)
		snprintf(buf, size, "input %d", pos[k] + 1);
	else
		snprintf(buf, size, "an Input");
}

void ln_graph_node_label(const ln_module *m, int k, char *buf, size_t size)
{
	const graph *g = as_graph(m);
	assert(k >= 0 && k < g->nnodes);
	const gnode *n = &g->node[k];
	if (n->m)
		snprintf(buf, size, "node %d (%s)", n->pos + 1, n->m->cls->name);
	else
		snprintf(buf, size, "input %d", n->pos + 1);
}

/* ---- building ------------------------------------------------------------------- */

/* A module of the tree under node `node`'s module. */
typedef struct owned { const ln_module *m; int node; } owned;

/* Adds the size of m's tree to *n, stopping once it reaches cap; with a,
 * also appends its modules (m first) to a[*n]. */
static void walk_tree(const ln_module *m, int node, owned *a, size_t *n, size_t cap)
{
	if (*n >= cap)
		return;
	if (a)
		a[*n] = (owned){m, node};
	(*n)++;
	for (int i = 0; i < m->nchildren; i++)
		walk_tree(m->children[i], node, a, n, cap);
}

static int owned_cmp(const void *pa, const void *pb)
{
	const owned *a = pa, *b = pb;
	uintptr_t x = (uintptr_t)a->m, y = (uintptr_t)b->m;
	return x < y ? -1 : x > y ? 1 : a->node - b->node;
}

/* LN_EARG when one module is in the trees of two nodes (at both, or
 * inside another's), found by sorting every module of every node's tree:
 * time n log n in the size of those trees, which is capped (a file could
 * describe trees that share subtrees exponentially often). */
static ln_status check_sharing(const ln_graph_desc *d, const int *pos, ln_error *err)
{
	const size_t cap = (size_t)1 << 24;
	size_t used = 0;
	for (int k = 0; k < d->nnodes; k++)
		if (d->nodes[k].m)
			walk_tree(d->nodes[k].m, k, NULL, &used, cap);
	if (used >= cap)
		return ln_fail(err, LN_ERANGE, "the modules at the nodes hold %zu modules or more", cap);
	owned *a = ln_malloc((used > 0 ? used : 1) * sizeof *a);
	if (!a)
		return ln_fail(err, LN_ENOMEM, "out of memory checking a graph of %d nodes", d->nnodes);
	ln_status s = LN_OK;
	used = 0;
	for (int k = 0; k < d->nnodes; k++)
		if (d->nodes[k].m)
			walk_tree(d->nodes[k].m, k, a, &used, cap);
	if (s == LN_OK)
		qsort(a, used, sizeof *a, owned_cmp);
	for (size_t i = 1; s == LN_OK && i < used; i++) {
		if (a[i].m != a[i - 1].m || a[i].node == a[i - 1].node)
			continue;
		int k = a[i - 1].node, l = a[i].node;
		const ln_graph_node_desc *nodes = d->nodes;
		char ka[96], la[96];
		label(nodes, pos, k, ka, sizeof ka);
		label(nodes, pos, l, la, sizeof la);
		if (nodes[k].m == nodes[l].m)
			s = ln_fail(err, LN_EARG, "one %s module sits at two nodes (%s and %s); a module "
			            "keeps one output buffer, so it can sit at one node only: make another",
			            nodes[k].m->cls->name, ka, la);
		else
			s = ln_fail(err, LN_EARG, "%s and %s share a %s module; a module keeps one output "
			            "buffer, so it can sit at one place only: make another", ka, la,
			            a[i].m->cls->name);
	}
	ln_free(a);
	return s;
}

/* Everything a description can get wrong, before anything is allocated
 * for the graph.  pos[k] is set to each node's position (children order
 * for module nodes, input order for listed input nodes, -1 for unlisted
 * ones).  flags is scratch of nnodes bytes. */
static ln_status check_desc(const ln_graph_desc *d, int *pos, unsigned char *flags, ln_error *err)
{
	char a[96];
	const ln_graph_node_desc *nodes = d->nodes;
	int n = d->nnodes;
	if (n < 1 || n > MAX_NODES)
		return ln_fail(err, LN_ERANGE, "expected 1 to %d nodes, got %d", MAX_NODES, n);
	if (d->ninputs < 1 || d->ninputs > n)
		return ln_fail(err, LN_ERANGE, "expected 1 to %d inputs, got %d", n, d->ninputs);
	if (d->noutputs < 1 || d->noutputs > MAX_NODES)
		return ln_fail(err, LN_ERANGE, "expected 1 to %d outputs, got %d", MAX_NODES,
		               d->noutputs);
	int nmod = 0;
	ln_status s;
	for (int k = 0; k < n; k++)
		pos[k] = nodes[k].m ? nmod++ : -1;
	/* the inputs: input nodes, each once */
	for (int i = 0; i < d->ninputs; i++) {
		int k = d->inputs[i];
		if (k < 0 || k >= n)
			return ln_fail(err, LN_ERANGE, "input %d is node index %d, outside 0..%d", i + 1, k,
			               n - 1);
		if (nodes[k].m) {
			label(nodes, pos, k, a, sizeof a);
			return ln_fail(err, LN_EARG, "input %d is %s, not an Input", i + 1, a);
		}
		if (pos[k] >= 0)
			return ln_fail(err, LN_EARG, "inputs %d and %d are the same Input", pos[k] + 1,
			               i + 1);
		pos[k] = i;
	}
	/* each node: its inputs come before it, its module takes that many */
	for (int k = 0; k < n; k++) {
		const ln_graph_node_desc *nd = &nodes[k];
		label(nodes, pos, k, a, sizeof a);
		if (!nd->m) {
			if (nd->nin != 0)
				return ln_fail(err, LN_EARG, "%s takes no inputs, got %d", a, nd->nin);
			continue;
		}
		if (nd->nin < 1 || nd->nin > MAX_NODES)
			return ln_fail(err, LN_ERANGE, "%s takes %d inputs (expected 1 to %d)", a,
			               nd->nin, MAX_NODES);
		int arity = nd->m->arity;
		if (arity != LN_ARITY_ANY && arity != nd->nin)
			return ln_fail(err, LN_EARG, "%s is given %d input%s, but its module takes %d", a,
			               nd->nin, nd->nin == 1 ? "" : "s", arity);
		if (nd->m->cls == &ln_graph_class && as_graph(nd->m)->noutputs != 1)
			return ln_fail(err, LN_EARG, "%s has %d outputs; the module at a node must have "
			               "one", a, as_graph(nd->m)->noutputs);
		for (int j = 0; j < nd->nin; j++)
			if (nd->in[j] < 0 || nd->in[j] >= k)
				return ln_fail(err, LN_EARG, "%s reads node index %d, which does not come "
				               "before it (0..%d)", a, nd->in[j], k - 1);
	}
	if ((s = check_sharing(d, pos, err)) != LN_OK)
		return s;
	/* flags bit 1: depends on a listed input; bit 2: on an unlisted one */
	for (int k = 0; k < n; k++) {
		if (!nodes[k].m) {
			flags[k] = pos[k] >= 0 ? 1 : 2;
			continue;
		}
		flags[k] = 0;
		for (int j = 0; j < nodes[k].nin; j++)
			flags[k] |= flags[nodes[k].in[j]];
	}
	for (int o = 0; o < d->noutputs; o++) {
		int k = d->outputs[o];
		if (k < 0 || k >= n)
			return ln_fail(err, LN_ERANGE, "output %d is node index %d, outside 0..%d", o + 1,
			               k, n - 1);
		if (!(flags[k] & 1))
			return ln_fail(err, LN_EARG, "output %d depends on no input of the graph", o + 1);
		if (flags[k] & 2)
			return ln_fail(err, LN_EARG, "output %d depends on an Input that is not among the "
			               "graph's inputs", o + 1);
	}
	/* every node reaches an output: mark backwards from the outputs (bit 4) */
	for (int o = 0; o < d->noutputs; o++)
		flags[d->outputs[o]] |= 4;
	for (int k = n - 1; k >= 0; k--)
		for (int j = 0; (flags[k] & 4) && j < nodes[k].nin; j++)
			flags[nodes[k].in[j]] |= 4;
	for (int k = 0; k < n; k++)
		if (!(flags[k] & 4)) {
			label(nodes, pos, k, a, sizeof a);
			return ln_fail(err, LN_EARG, "%s is used by no output", a);
		}
	return LN_OK;
}

/* Allocates an array of n elements of `size` bytes (zeroed) into *p. */
static ln_status alloc_array(void *p, size_t n, size_t size, ln_error *err)
{
	void *a = ln_calloc(n > 0 ? n : 1, size);
	if (!a)
		return ln_fail(err, LN_ENOMEM, "out of memory building a graph (%zu entries)", n);
	*(void **)p = a;
	return LN_OK;
}

/* Fills the (empty, fresh from create) graph m from d, which check_desc
 * passed, with pos from it. */
static ln_status build(ln_module *m, const ln_graph_desc *d, const int *pos, ln_error *err)
{
	graph *g = as_graph(m);
	int n = d->nnodes;
	size_t nedges = 0, nuses = (size_t)d->noutputs;
	for (int k = 0; k < n; k++)
		nedges += (size_t)d->nodes[k].nin;
	nuses += nedges;
	if (nedges > INT_MAX)
		return ln_fail(err, LN_ERANGE, "a graph of %zu edges is too large", nedges);
	ln_status s;
	if ((s = alloc_array(&g->node, (size_t)n, sizeof *g->node, err)) != LN_OK ||
	    (s = alloc_array(&g->input, (size_t)d->ninputs, sizeof(int), err)) != LN_OK ||
	    (s = alloc_array(&g->output, (size_t)d->noutputs, sizeof(int), err)) != LN_OK ||
	    (s = alloc_array(&g->edges, nedges, sizeof(int), err)) != LN_OK ||
	    (s = alloc_array(&g->use_node, nuses, sizeof(int), err)) != LN_OK ||
	    (s = alloc_array(&g->use_slot, nuses, sizeof(int), err)) != LN_OK ||
	    (s = alloc_array(&g->xs, nedges, sizeof *g->xs, err)) != LN_OK ||
	    (s = alloc_array(&g->out, (size_t)d->noutputs, sizeof(ln_tensor), err)) != LN_OK ||
	    (s = alloc_array(&g->out_copy, (size_t)d->noutputs, sizeof(ln_tensor), err)) != LN_OK ||
	    (s = alloc_array(&g->w_arity, (size_t)n, sizeof(int64_t), err)) != LN_OK ||
	    (s = alloc_array(&g->w_edges, nedges, sizeof(int64_t), err)) != LN_OK ||
	    (s = alloc_array(&g->w_inputs, (size_t)d->ninputs, sizeof(int64_t), err)) != LN_OK ||
	    (s = alloc_array(&g->w_outputs, (size_t)d->noutputs, sizeof(int64_t), err)) != LN_OK)
		return s;
	g->nnodes = n;
	g->ninputs = d->ninputs;
	g->noutputs = d->noutputs;
	g->nedges = (int)nedges;
	for (int i = 0; i < d->ninputs; i++)
		g->w_inputs[i] = g->input[i] = d->inputs[i];
	for (int o = 0; o < d->noutputs; o++)
		g->w_outputs[o] = g->output[o] = d->outputs[o];
	/* nodes, their edges and their modules (the children, in node order) */
	int e = 0;
	for (int k = 0; k < n; k++) {
		const ln_graph_node_desc *nd = &d->nodes[k];
		gnode *gn = &g->node[k];
		gn->m = nd->m;
		gn->pos = pos[k];
		gn->nin = nd->nin;
		gn->in = g->edges + e;
		gn->xs = g->xs + e;
		g->w_arity[k] = nd->nin;
		for (int j = 0; j < nd->nin; j++, e++)
			g->w_edges[e] = g->edges[e] = nd->in[j];
		if (nd->m && (s = ln_module_add_child(m, nd->m, err)) != LN_OK)
			return s;
	}
	/* uses, grouped by node: count, then place */
	for (int k = 0; k < n; k++)
		for (int j = 0; j < g->node[k].nin; j++)
			g->node[g->node[k].in[j]].nuses++;
	for (int o = 0; o < g->noutputs; o++)
		g->node[g->output[o]].nuses++;
	int u = 0;
	for (int k = 0; k < n; k++) {
		g->node[k].use_node = g->use_node + u;
		g->node[k].use_slot = g->use_slot + u;
		u += g->node[k].nuses;
		g->node[k].nuses = 0;  /* counted again while placing */
	}
	for (int k = 0; k < n; k++)
		for (int j = 0; j < g->node[k].nin; j++) {
			gnode *src = &g->node[g->node[k].in[j]];
			src->use_node[src->nuses] = k;
			src->use_slot[src->nuses++] = j;
		}
	for (int o = 0; o < g->noutputs; o++) {
		gnode *src = &g->node[g->output[o]];
		src->use_node[src->nuses] = -1;
		src->use_slot[src->nuses++] = o;
	}
	m->arity = d->ninputs;
	return LN_OK;
}

/* Checks d and builds the empty graph m from it. */
static ln_status graph_build(ln_module *m, const ln_graph_desc *d, ln_error *err)
{
	if (as_graph(m)->node || m->nchildren > 0)
		return ln_fail(err, LN_ESTATE, "is already built");
	if (d->nnodes < 1 || d->nnodes > MAX_NODES)
		return ln_fail(err, LN_ERANGE, "expected 1 to %d nodes, got %d", MAX_NODES, d->nnodes);
	int *pos = NULL;
	unsigned char *flags = NULL;
	ln_status s = alloc_array(&pos, (size_t)d->nnodes, sizeof *pos, err);
	if (s == LN_OK)
		s = alloc_array(&flags, (size_t)d->nnodes, 1, err);
	if (s == LN_OK)
		s = check_desc(d, pos, flags, err);
	if (s == LN_OK)
		s = build(m, d, pos, err);
	ln_free(pos);
	ln_free(flags);
	return s;
}

ln_status ln_graph_new(ln_module **out, const ln_graph_desc *d, ln_error *err)
{
	ln_module *m;
	ln_status s = ln_module_alloc(&m, &ln_graph_class, err);
	if (s != LN_OK)
		return s;
	if ((s = graph_build(m, d, err)) != LN_OK) {
		ln_module_release(m);
		return s;
	}
	*out = m;
	return LN_OK;
}

/* ---- forward ------------------------------------------------------------------------ */

/* Prefixes err with node k's label and, for a shape error, the nodes it
 * reads with their shapes ("node 4 (Add) on node 2 (ReLU) {4,8} and
 * node 3 (Linear) {4,9}: "). */
static void node_context(const graph *g, int k, ln_status s, ln_error *err)
{
	const gnode *gn = &g->node[k];
	char buf[LN_ERROR_MSG_MAX], part[160], shape[96];
	ln_graph_node_label(&g->base, k, buf, sizeof buf);
	size_t len = strlen(buf);
	for (int j = 0; s == LN_ESHAPE && j < gn->nin && len < sizeof buf; j++) {
		ln_graph_node_label(&g->base, gn->in[j], part, sizeof part);
		ln_tensor_shape_str(gn->xs[j], shape, sizeof shape);
		const char *sep = j == 0 ? " on " : j == gn->nin - 1 ? " and " : ", ";
		len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s %s", sep, part, shape);
	}
	ln_error_prefix(err, "%s: ", buf);
}

/* Points every module node's inputs at the values of the nodes it reads
 * (input nodes at x). */
static void bind_inputs(graph *g, const ln_tensor *const *x)
{
	for (int k = 0; k < g->nnodes; k++) {
		gnode *gn = &g->node[k];
		if (!gn->m) {
			gn->value = x[gn->pos];
			continue;
		}
		for (int j = 0; j < gn->nin; j++)
			gn->xs[j] = g->node[gn->in[j]].value;
	}
}

/* After a failure at node k: the nodes before it leave their buffers as
 * they were (ln_module_revert), so that the failed forward changes
 * nothing. */
static void revert_before(graph *g, int k)
{
	for (int j = k - 1; j >= 0; j--)
		if (g->node[j].m)
			ln_module_revert(g->node[j].m);
}

static ln_status graph_forward(ln_module *m, int n, const ln_tensor *const *x, ln_error *err)
{
	graph *g = as_graph(m);
	if (!g->node)
		return ln_fail(err, LN_ESTATE, "has no nodes");
	if (g->noutputs > 1 && !g->several)
		return ln_fail(err, LN_EARG, "has %d outputs; as a layer a Graph must have one",
		               g->noutputs);
	assert(n == g->ninputs);
	for (int k = 0; k < g->nnodes; k++) {
		gnode *gn = &g->node[k];
		gn->grad = NULL;
		if (!gn->m) {
			gn->value = x[gn->pos];
			continue;
		}
		for (int j = 0; j < gn->nin; j++)
			gn->xs[j] = g->node[gn->in[j]].value;
		ln_status s = ln_module_forward_multi_unprefixed(gn->m, gn->nin, gn->xs, err);
		if (s != LN_OK) {
			node_context(g, k, s, err);
			revert_before(g, k);
			return s;
		}
		gn->value = &gn->m->output;
	}
	for (int o = 0; o < g->noutputs; o++) {
		const gnode *gn = &g->node[g->output[o]];
		ln_tensor_release(&g->out[o]);
		if (gn->m) {
			ln_tensor_ref(&g->out[o], gn->value);
			continue;
		}
		ln_tensor *c = &g->out_copy[o];
		ln_status s = ln_tensor_ensure(c, gn->value->ndim, gn->value->shape, err);
		if (s != LN_OK) {
			revert_before(g, g->nnodes);
			return s;
		}
		memcpy(ln_tensor_data(c), ln_tensor_data(gn->value),
		       (size_t)ln_tensor_numel(c) * sizeof(float));
		ln_tensor_ref(&g->out[o], c);
	}
	ln_tensor_release(&m->output);
	ln_tensor_ref(&m->output, &g->out[0]);
	return LN_OK;
}

/* ---- backward ------------------------------------------------------------------------ */

/* The gradient that use u of node gn sends back. */
static const ln_tensor *use_grad(const graph *g, const gnode *gn, int u, const ln_tensor *gy)
{
	int c = gn->use_node[u], slot = gn->use_slot[u];
	if (c < 0)
		return slot == 0 ? gy : g->gys[slot];
	return ln_module_grad_input_at(g->node[c].m, slot);
}

/* Sets gn->grad: the one gradient sent back to it, or the sum of several
 * into gn->acc (also a copy of a lone caller's gradient for an input
 * node, whose gradient the graph hands out as its own). */
static ln_status gather_grad(graph *g, gnode *gn, const ln_tensor *gy, ln_error *err)
{
	assert(gn->nuses >= 1);
	const ln_tensor *first = use_grad(g, gn, 0, gy);
	if (gn->nuses == 1 && (gn->m || gn->use_node[0] >= 0)) {
		gn->grad = first;
		return LN_OK;
	}
	ln_status s = ln_tensor_ensure(&gn->acc, first->ndim, first->shape, err);
	if (s != LN_OK)
		return s;
	float *a = ln_tensor_data(&gn->acc);
	const float *f = ln_tensor_data(first);
	int64_t numel = ln_tensor_numel(first);
	if (gn->nuses == 1) {
		memcpy(a, f, (size_t)numel * sizeof(float));
	} else {  /* the first two in one pass, the same sum as a copy then an add */
		const float *b = ln_tensor_data(use_grad(g, gn, 1, gy));
		for (int64_t i = 0; i < numel; i++)
			a[i] = f[i] + b[i];
	}
	for (int u = 2; u < gn->nuses; u++) {
		const float *b = ln_tensor_data(use_grad(g, gn, u, gy));
		for (int64_t i = 0; i < numel; i++)
			a[i] += b[i];
	}
	gn->grad = &gn->acc;
	return LN_OK;
}

/*
 * Which gradients are computed (module.h, "input gradients"): an input
 * node's when the graph is asked for dL/dx (m->want_gx), a module node's
 * when its module trains or a node it reads needs one.  A node nobody
 * needs is not run; one that needs no gradient of what it reads computes
 * its parameter gradients only.  A node whose module computes no input
 * gradient (its input_grad is false, or a layer inside it cuts the
 * chain) leaves the nodes it reads without theirs: an error when one of
 * them needs it for parameters, else the graph's input gradient is left
 * out (m->want_gx cleared; module.c marks it skipped).
 */
/* Sets need and need_in of every node for a backward in which the
 * graph's input gradient is wanted or not (want_gx). */
static void plan_need(graph *g, bool want_gx)
{
	for (int k = 0; k < g->nnodes; k++) {
		gnode *gn = &g->node[k];
		if (!gn->m) {
			gn->need = want_gx;
			continue;
		}
		gn->need_in = false;
		for (int j = 0; j < gn->nin; j++)
			gn->need_in |= g->node[gn->in[j]].need;
		gn->need = gn->need_in || ln_module_trains(gn->m);
	}
}

/* module.h: reserve -- for every node whose backward will run, its
 * module's buffers and the sum of the gradients sent back to it
 * (gather_grad's acc, of its output's shape). */
static ln_status graph_reserve(ln_module *m, bool need_gx, ln_error *err)
{
	graph *g = as_graph(m);
	if (!g->node)
		return LN_OK;  /* the backward says what is wrong */
	plan_need(g, need_gx);
	ln_status s = LN_OK;
	for (int k = g->nnodes - 1; k >= 0 && s == LN_OK; k--) {
		gnode *gn = &g->node[k];
		if (!gn->need || gn->nuses == 0)
			continue;
		if (gn->nuses > 1 || (!gn->m && gn->use_node[0] < 0)) {
			const ln_module_input *in = gn->m ? NULL : &m->inputs[gn->pos];
			s = gn->m ? ln_tensor_ensure(&gn->acc, gn->m->output.ndim, gn->m->output.shape, err)
			          : ln_tensor_ensure(&gn->acc, in->ndim, in->shape, err);
		}
		if (s == LN_OK && gn->m)
			s = ln_module_reserve(gn->m, gn->need_in, err);
	}
	return s;
}

static ln_status graph_backward(ln_module *m, int n, const ln_tensor *const *x,
                                const ln_tensor *gy, ln_error *err)
{
	graph *g = as_graph(m);
	if (g->noutputs > 1 && !g->several)
		return ln_fail(err, LN_EARG, "has %d outputs; backward needs a gradient for each",
		               g->noutputs);
	/* every buffer first: a backward that runs out of memory does it
	 * before any gradient is added to, so that it can be called again */
	ln_status s = graph_reserve(m, m->want_gx, err);
	if (s != LN_OK)
		return s;
	/* the caller's x may be other tensors (of the same shapes) than forward's */
	bind_inputs(g, x);
	for (int k = 0; k < g->nnodes; k++)
		g->node[k].grad = NULL;
	plan_need(g, m->want_gx);
	bool whole = m->want_gx;  /* every input node gets its whole gradient */
	for (int k = g->nnodes - 1; k >= 0; k--) {
		gnode *gn = &g->node[k];
		if (!gn->need)
			continue;
		int cut = -1;  /* a node reading this one that computed no input gradient */
		for (int u = 0; u < gn->nuses && cut < 0; u++)
			if (gn->use_node[u] >= 0 && g->node[gn->use_node[u]].m->gx_skipped)
				cut = gn->use_node[u];
		if (cut >= 0 && gn->m) {
			char a[96], b[96];
			ln_graph_node_label(m, cut, a, sizeof a);
			ln_graph_node_label(m, k, b, sizeof b);
			return ln_fail(err, LN_EARG, "%s computes no input gradient (input_grad = false, "
			               "or a layer inside it), so %s before it would get no gradient for "
			               "the parameters it or the nodes before it hold (set input_grad = "
			               "false on the graph instead)", a, b);
		}
		if (cut >= 0) {
			whole = false;
			continue;
		}
		s = gather_grad(g, gn, gy, err);
		if (s != LN_OK)
			return s;
		if (!gn->m)
			continue;
		s = ln_module_backward_multi_ex(gn->m, gn->nin, gn->xs, gn->grad, gn->need_in, err);
		if (s != LN_OK) {
			node_context(g, k, s, err);
			return s;
		}
	}
	for (int k = 0; k < g->nnodes; k++)
		if (g->node[k].m && !g->node[k].need)
			ln_module_skip_gx(g->node[k].m);
	if (!whole) {
		m->want_gx = false;
		return LN_OK;
	}
	for (int i = 0; i < g->ninputs; i++) {
		ln_tensor *dst = &m->inputs[i].grad;
		ln_tensor_release(dst);
		ln_tensor_ref(dst, g->node[g->input[i]].grad);
	}
	return LN_OK;
}

ln_status ln_graph_forward(ln_module *m, int n, const ln_tensor *const *x, ln_error *err)
{
	if (m->cls != &ln_graph_class)
		return ln_fail(err, LN_EARG, "expected a Graph, got a %s", m->cls->name);
	graph *g = as_graph(m);
	g->several = true;
	ln_status s = ln_module_forward_multi_unprefixed(m, n, x, err);
	g->several = false;
	return s;
}

ln_status ln_graph_backward(ln_module *m, int n, const ln_tensor *const *x, int noutputs,
                            const ln_tensor *const *gy, ln_error *err)
{
	if (m->cls != &ln_graph_class)
		return ln_fail(err, LN_EARG, "expected a Graph, got a %s", m->cls->name);
	graph *g = as_graph(m);
	if (noutputs != g->noutputs)
		return ln_fail(err, LN_EARG, "expected %d gradient%s (one per output), got %d",
		               g->noutputs, g->noutputs == 1 ? "" : "s", noutputs);
	/* gradient 1 is checked by the protocol against m->output; the others here */
	for (int o = 1; o < noutputs; o++) {
		if (ln_tensor_is_empty(&g->out[o]))
			return ln_fail(err, LN_ESTATE, "backward called before forward");
		if (ln_tensor_is_empty(gy[o]) || !ln_tensor_is_contiguous(gy[o]) ||
		    !ln_tensor_same_shape(gy[o], &g->out[o])) {
			char want[96], got[96] = "an empty tensor";
			if (!ln_tensor_is_empty(gy[o]))
				ln_tensor_shape_str(gy[o], got, sizeof got);
			return ln_fail(err, ln_tensor_is_empty(gy[o]) ? LN_EARG : LN_ESHAPE,
			               "expected gradient %d of shape %s%s, got %s", o + 1,
			               ln_tensor_shape_str(&g->out[o], want, sizeof want),
			               ln_tensor_is_contiguous(gy[o]) ? "" : " (contiguous)", got);
		}
	}
	g->several = true;
	g->gys = gy;
	ln_status s = ln_module_backward_multi_unprefixed(m, n, x, gy[0], err);
	g->several = false;
	g->gys = NULL;
	return s;
}

/* ---- lifetime, saving ------------------------------------------------------------------- */

static void graph_destroy(ln_module *m)
{
	graph *g = as_graph(m);
	for (int k = 0; g->node && k < g->nnodes; k++)
		ln_tensor_release(&g->node[k].acc);
	for (int o = 0; g->out && o < g->noutputs; o++) {
		ln_tensor_release(&g->out[o]);
		ln_tensor_release(&g->out_copy[o]);
	}
	ln_free(g->node);
	ln_free(g->input);
	ln_free(g->output);
	ln_free(g->edges);
	ln_free(g->use_node);
	ln_free(g->use_slot);
	ln_free(g->xs);
	ln_free(g->out);
	ln_free(g->out_copy);
	ln_free(g->w_arity);
	ln_free(g->w_edges);
	ln_free(g->w_inputs);
	ln_free(g->w_outputs);
}

/* The wiring a file keeps: per node its number of inputs (0: an input
 * node), the nodes each reads (in node order), the input nodes and the
 * output nodes.  Module nodes take the children in order. */
static void graph_wiring(const ln_module *m, ln_wiring *w)
{
	const graph *g = as_graph(m);
	if (!g->node) {  /* not built: nothing to say */
		w->nlists = 0;
		return;
	}
	w->nlists = 4;
	w->list[0] = (ln_wiring_list){"arity", g->nnodes, g->w_arity};
	w->list[1] = (ln_wiring_list){"edges", g->nedges, g->w_edges};
	w->list[2] = (ln_wiring_list){"inputs", g->ninputs, g->w_inputs};
	w->list[3] = (ln_wiring_list){"outputs", g->noutputs, g->w_outputs};
}

/* A list of w as ints in [lo, hi] into a new array *out (ln_free). */
static ln_status wiring_ints(const ln_wiring *w, const char *name, int64_t lo, int64_t hi,
                             int **out, int *n, ln_error *err)
{
	const ln_wiring_list *l = ln_wiring_find(w, name);
	if (!l)
		return ln_fail(err, LN_EARG, "the wiring has no list '%s'", name);
	if (l->n < 0 || l->n > MAX_NODES * 8LL)
		return ln_fail(err, LN_ERANGE, "wiring list '%s' has %lld entries", name,
		               (long long)l->n);
	ln_status s = alloc_array(out, (size_t)l->n, sizeof(int), err);
	if (s != LN_OK)
		return s;
	for (int64_t i = 0; i < l->n; i++) {
		if (l->v[i] < lo || l->v[i] > hi)
			return ln_fail(err, LN_ERANGE, "wiring list '%s': entry %lld is %lld, outside "
			               "%lld..%lld", name, (long long)i + 1, (long long)l->v[i],
			               (long long)lo, (long long)hi);
		(*out)[i] = (int)l->v[i];
	}
	*n = (int)l->n;
	return LN_OK;
}

/* The loader's way back: a description from the wiring, with the
 * children at the module nodes in order, checked as ln_graph_new checks. */
static ln_status graph_assemble(ln_module *m, int n, ln_module *const *children,
                                const ln_wiring *w, ln_error *err)
{
	int *arity = NULL, *edges = NULL, *inputs = NULL, *outputs = NULL;
	int nnodes = 0, nedges = 0, ninputs = 0, noutputs = 0;
	ln_graph_node_desc *nodes = NULL;
	ln_status s;
	for (int i = 0; w && i < w->nlists; i++) {
		const char *name = w->list[i].name;
		if (strcmp(name, "arity") && strcmp(name, "edges") && strcmp(name, "inputs") &&
		    strcmp(name, "outputs"))
			return ln_fail(err, LN_EARG, "a Graph's wiring has no list '%s'", name);
	}
	if ((s = wiring_ints(w, "arity", 0, MAX_NODES, &arity, &nnodes, err)) == LN_OK &&
	    (s = wiring_ints(w, "edges", 0, MAX_NODES, &edges, &nedges, err)) == LN_OK &&
	    (s = wiring_ints(w, "inputs", 0, MAX_NODES, &inputs, &ninputs, err)) == LN_OK &&
	    (s = wiring_ints(w, "outputs", 0, MAX_NODES, &outputs, &noutputs, err)) == LN_OK &&
	    (s = alloc_array(&nodes, (size_t)nnodes, sizeof *nodes, err)) == LN_OK) {
		int e = 0, c = 0;
		for (int k = 0; k < nnodes && s == LN_OK; k++) {
			if (arity[k] > nedges - e)
				s = ln_fail(err, LN_EARG, "the wiring's edges end before node index %d's", k);
			else if (arity[k] > 0 && c >= n)
				s = ln_fail(err, LN_EARG, "the wiring has more module nodes than the %d "
				            "children", n);
			if (s != LN_OK)
				break;
			nodes[k] = (ln_graph_node_desc){arity[k] > 0 ? children[c++] : NULL, arity[k],
			                                edges + e};
			e += arity[k];
		}
		if (s == LN_OK && (e != nedges || c != n))
			s = ln_fail(err, LN_EARG, "the wiring uses %d of %d edges and %d of %d children", e,
			            nedges, c, n);
		if (s == LN_OK)
			s = graph_build(m, &(ln_graph_desc){nnodes, nodes, ninputs, inputs, noutputs,
			                                    outputs}, err);
	}
	ln_free(arity);
	ln_free(edges);
	ln_free(inputs);
	ln_free(outputs);
	ln_free(nodes);
	return s;
}

/* Child i sits at module node i + 1. */
static int graph_child_label(const ln_module *m, int i, char *buf, size_t size)
{
	return snprintf(buf, size, "node %d", i + 1);
}

static int graph_describe(const ln_module *m, char *buf, size_t size)
{
	const graph *g = as_graph(m);
	return snprintf(buf, size, "Graph(%d input%s, %d node%s, %d output%s)", g->ninputs,
	                g->ninputs == 1 ? "" : "s", m->nchildren, m->nchildren == 1 ? "" : "s",
	                g->noutputs, g->noutputs == 1 ? "" : "s");
}

const ln_module_class ln_graph_class = {
	.name = "Graph",
	.size = sizeof(graph),
	.arity = LN_ARITY_ANY,
	.forward_multi = graph_forward,
	.backward_multi = graph_backward,
	.destroy = graph_destroy,
	.create = ln_module_create_plain,
	.describe = graph_describe,
	.assemble = graph_assemble,
	.wiring = graph_wiring,
	.child_label = graph_child_label,
	.reserve = graph_reserve,
};
