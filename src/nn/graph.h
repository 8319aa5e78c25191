/*
 * graph.h -- networks that are not a chain: the Graph container, the join
 * modules that merge several inputs (Add, Mul, Concat) and Residual.
 *
 * A Graph is a directed acyclic graph of nodes.  An input node stands for
 * one of the graph's inputs; every other node applies one module to the
 * outputs of earlier nodes.  Nodes are listed in the order they were
 * made, which is a topological order (a node can only be made from nodes
 * that exist), and forward walks them in that order, backward in reverse:
 *
 *     //   x -> Linear(4,8) -> ReLU -> h -+-> Add -> y
 *     //                               +-> Linear(8,8) -+
 *     ln_graph_node_desc nodes[] = {
 *         {NULL},                          // 0: input 1
 *         {lin1, 1, (int[]){0}},           // 1: node 1, Linear(x)
 *         {relu, 1, (int[]){1}},           // 2: node 2, h = ReLU(...)
 *         {lin2, 1, (int[]){2}},           // 3: node 3, Linear(h)
 *         {add,  2, (int[]){2, 3}},        // 4: node 4, Add(h, ...)
 *     };
 *     ln_graph_desc d = {5, nodes, 1, (int[]){0}, 1, (int[]){4}};
 *     ln_graph_new(&g, &d, &err);          // g holds its own references
 *     ln_module_forward(g, &x, &err);      // g->output
 *     ln_module_backward(g, &x, &gy, &err);
 *
 * Where a node feeds several others (h above), the gradients they send
 * back are added up before its own backward.  A Graph is a module: its
 * children are the modules at its nodes in node order (so parameters,
 * training mode and zero_grad reach them all, and its state is named
 * "0.weight", "1.weight", ... as a Sequential's), it takes as many inputs
 * as it was given (m->arity), and it sits in a Sequential, a Residual or
 * another Graph's node.  With several outputs it is run with
 * ln_graph_forward/ln_graph_backward; as a layer it must have one.
 *
 * Messages number the module nodes from 1 in node order, as a Sequential
 * numbers its layers ("node 3 (Linear): ..."), and call the input nodes
 * "input 1", "input 2".  A forward that fails on shapes names the node,
 * the nodes it takes its inputs from and their shapes: "node 4 (Add) on
 * node 2 (ReLU) {4,8} and node 3 (Linear) {4,9}: expected inputs of one
 * shape, ...".
 */
#ifndef LN_GRAPH_H
#define LN_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"
#include "module.h"

extern const ln_module_class ln_graph_class;
extern const ln_module_class ln_add_class;
extern const ln_module_class ln_mul_class;
extern const ln_module_class ln_concat_class;
extern const ln_module_class ln_residual_class;

/* ---- Graph (graph.c) --------------------------------------------------------- */

typedef struct ln_graph_node_desc {
	ln_module *m;    /* the module applied at this node; NULL for an input node */
	int nin;         /* module nodes: how many inputs it takes (>= 1); input nodes: 0 */
	const int *in;   /* their node indices, each below this node's own */
} ln_graph_node_desc;

typedef struct ln_graph_desc {
	int nnodes;
	const ln_graph_node_desc *nodes;  /* in a topological order (each after its inputs) */
	int ninputs;
	const int *inputs;                /* the graph's inputs: input nodes, in order */
	int noutputs;
	const int *outputs;               /* the graph's outputs: any nodes, in order */
} ln_graph_desc;

/* Builds a Graph from d, taking a reference to every module in it (the
 * caller keeps its own).  Everything is checked, with LN_EARG naming the
 * node: a module at two nodes, or inside another node's module ("a
 * module keeps one output buffer, so it can sit at one node only: make
 * another"); a node taking a node that does not come before it, or a
 * number of inputs its module does not take; a module with several
 * outputs at a node; an input that is not an input node, or is given
 * twice; an input node that is not among the inputs ("output 1 depends
 * on an Input that is not among the graph's inputs"); an output that
 * depends on no input; an input, or a node, that no output uses.
 * LN_ERANGE for counts out of range, LN_ENOMEM. */
ln_status ln_graph_new(ln_module **out, const ln_graph_desc *d, ln_error *err);

/* Forward and backward of a Graph with any number of outputs: outputs
 * ln_graph_output(m, k); backward takes one gradient per output (gy[k]
 * shaped as output k) and leaves dL/d(input i) in
 * ln_module_grad_input_at(m, i).  Checks and messages as
 * ln_module_forward_multi_unprefixed (no prefix: the caller adds it).
 * LN_EARG if m is not a Graph or noutputs is not its number of outputs. */
ln_status ln_graph_forward(ln_module *m, int n, const ln_tensor *const *x, ln_error *err);
ln_status ln_graph_backward(ln_module *m, int n, const ln_tensor *const *x, int noutputs,
                            const ln_tensor *const *gy, ln_error *err);

/* The structure of a Graph, for printing and tracing. */
int ln_graph_noutputs(const ln_module *m);
/* Output k of the last forward (empty before one). */
const ln_tensor *ln_graph_output(const ln_module *m, int k);
/* The node index of output k, of input i. */
int ln_graph_output_node(const ln_module *m, int k);
int ln_graph_input_node(const ln_module *m, int i);
int ln_graph_nnodes(const ln_module *m);
/* Node k as it was described (in points into the graph; m NULL for an
 * input node). */
ln_graph_node_desc ln_graph_node(const ln_module *m, int k);
/* Input nodes: their position among the graph's inputs; module nodes:
 * their position among the children (both 0-based). */
int ln_graph_node_position(const ln_module *m, int k);
/* dL/d(output of node k) after the last backward, summed over the nodes
 * it feeds and the outputs it is; NULL before a backward. */
const ln_tensor *ln_graph_node_grad(const ln_module *m, int k);
/* "node 3 (Linear)" or "input 1", as messages name node k. */
void ln_graph_node_label(const ln_module *m, int k, char *buf, size_t size);

/* ---- joins (add.c, mul.c, concat.c) -------------------------------------------- */

/* Add: y = x_1 + ... + x_n, any n >= 1 inputs of one shape. */
ln_status ln_add_new(ln_module **out, ln_error *err);
/* Mul: y = a * b elementwise, two inputs of one shape. */
ln_status ln_mul_new(ln_module **out, ln_error *err);
/* Concat(dim): n >= 1 inputs joined along dim (1-based; negative counts
 * from the end, -1 the last), which must be the only dimension where
 * their sizes differ.  dim is a non-zero integer within +-LN_MAX_DIMS,
 * else LN_ERANGE.  Config: dim. */
ln_status ln_concat_new(ln_module **out, int dim, ln_error *err);

/* ---- Residual (residual.c) ------------------------------------------------------ */

/* Residual(block[, proj]): y = block(x) + x, or block(x) + proj(x) when
 * proj is not NULL.  Takes a reference to block and proj.  LN_EARG if
 * either takes other than one input or they share a module. */
ln_status ln_residual_new(ln_module **out, ln_module *block, ln_module *proj, ln_error *err);

#endif
