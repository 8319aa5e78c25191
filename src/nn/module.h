/*
 * module.h -- the module protocol, in C.
 *
 * A module (layer or container) is a struct that begins with ln_module and
 * is described by a constant ln_module_class vtable.  The one table of all
 * classes is in registry.c; classes are known by name (that name is saved
 * to disk, and the Lua metatable is "lunet.nn.<name>").
 *
 * Protocol (the same as the Lua one):
 *   forward(m, x)       computes m->output from x.  Validates x's shape and
 *                       fails with LN_ESHAPE naming both shapes ("expected
 *                       input of shape {N,784}, got {64,785}").
 *   backward(m, x, gy)  given the x of the last forward and gy = dL/dy,
 *                       overwrites m->grad_input with dL/dx and ADDS the
 *                       parameter gradients into m->grad[i].  That x is
 *                       the last forward's input and gy has the output's
 *                       shape is checked before the class is called.
 *                       When m->want_gx is false (see "input gradients"
 *                       below) a class may leave grad_input alone and
 *                       compute the parameter gradients only.
 *
 * Several inputs.  A class takes one input unless it says otherwise in
 * `arity` (module.h's default, 0, means one): LN_ARITY_ANY for one or
 * more (Add, Concat), n >= 2 for exactly n (Mul).  Such a class implements
 * forward_multi/backward_multi instead of forward/backward:
 *   forward_multi(m, n, x)       x[0..n-1] -> m->output.
 *   backward_multi(m, n, x, gy)  overwrites m->inputs[i].grad with dL/dx[i]
 *                                for every i < n, ADDS the parameter
 *                                gradients.
 * The wrappers below (ln_module_forward_multi...) check the count against
 * the module's arity (m->arity: the class's, or what the instance says --
 * a Graph takes as many inputs as it was given), check every input as for
 * one, remember every input's shape, and make m->grad_input a view of
 * inputs[0].grad, so that code that knows only one input (a Sequential
 * holding a Graph) still finds dL/d(input 1) where it always does.  The
 * one-input entry points call a multi-input class with n = 1, and the
 * multi-input ones call a one-input class when n = 1: callers need not
 * know which kind they hold.  One-input classes (every layer so far) are
 * untouched by all this: they never see m->inputs.
 *
 * Containers.  A module may hold children (owned references in
 * m->children, which the recursive walks below visit: training mode,
 * zero_grad, parameters, state names).  How they are connected is the
 * class's business: Sequential chains them, Residual adds a block to a
 * shortcut, Graph wires them as a directed acyclic graph.  The loader
 * rebuilds a container with `assemble` (children, and the wiring the class
 * saved with `wiring`: named lists of integers), so that a new container
 * class needs no change to the file format.
 *
 * Error messages follow one rule: a class never puts its own name in front
 * of its messages; the caller that knows the context adds it once.
 * ln_module_forward/backward add "<Class>: " / "<Class>:backward: " for a C
 * caller holding any module; a container calls the *_unprefixed forms and
 * adds the child's position ("layer 3 (Linear): "), the Lua binding adds
 * the method ("Linear:forward: ") or constructor ("nn.Linear: "), the
 * loader the class and record it was building.
 * Both reuse m->output / m->grad_input across calls (ln_tensor_ensure), so
 * a steady-state step allocates nothing.  Inputs are contiguous (the
 * binding makes them so); output/grad_input are contiguous.
 *
 * Parameters live in m->param[i] with gradients in m->grad[i], weight
 * before bias; names come from the class (param_names: "weight", "bias",
 * or its param_name hook; the gradient of "weight" is exposed as
 * "grad_weight").  Buffers are
 * state that is saved but not trained (BatchNorm's running statistics).
 *
 * Input gradients.  m->input_grad (m.input_grad in Lua, default true) says
 * whether backward computes dL/dx.  Nobody reads the input gradient of
 * the first layer of a network, and it is a large part of the work
 * (about 28% of the multiply-adds of a 784-256-128-10 MLP), so training
 * scripts turn it off there.  A container passes it on to the layers that
 * see its input: with the container's flag false, its first child
 * computes no dL/dx either, nor does any later child whose earlier
 * siblings have no parameters (Flatten then Linear: Linear's dL/dx would
 * only feed Flatten's).  Before each call of a class's backward, the
 * caller sets m->want_gx; a class with parameters skips its dL/dx when it
 * is false (one without parameters is then not called at all), and
 * m->gx_skipped records that grad_input does not hold the last backward's
 * dL/dx, so that reading it is an error rather than a stale buffer.
 *
 * Lifetime: modules are reference counted.  ln_module_new returns one
 * reference; containers hold one per child; ln_module_release frees the
 * module (output, grad_input, params, grads, buffers, children, then the
 * class's destroy) with the last reference.
 */
#ifndef LN_MODULE_H
#define LN_MODULE_H

#include <stdbool.h>
#include <stddef.h>

#include "../core/error.h"
#include "../core/rng.h"
#include "../core/tensor.h"

/* The most parameters one module may hold (the file format counts them in
 * a byte), and the length of a class's fixed list of parameter names. */
#define LN_MODULE_MAX_PARAMS 255
#define LN_MODULE_MAX_PARAM_NAMES 4
#define LN_MODULE_MAX_BUFFERS 4
/* Bytes of a parameter name, NUL included (ln_module_param_name). */
#define LN_PARAM_NAME_MAX 64
#define LN_MODULE_MAX_CONFIG 16

#define LN_ARITY_ANY (-1)  /* a class or module taking one or more inputs */
#define LN_WIRING_MAX 4    /* named lists in an ln_wiring */

typedef struct ln_module ln_module;
typedef struct ln_state_visitor ln_state_visitor;  /* state_dict.h */

/* How a container's children are connected, as named lists of integers
 * (a Graph's: "arity", "edges", "inputs", "outputs"; graph.h).  This is
 * what the file format saves for a container besides its children, so it
 * is by name and plain data.  Lists point into memory someone else owns:
 * the module (`wiring`) or the loader (`assemble`). */
typedef struct ln_wiring_list {
	const char *name;
	int64_t n;
	const int64_t *v;
} ln_wiring_list;

typedef struct ln_wiring {
	int nlists;
	ln_wiring_list list[LN_WIRING_MAX];
} ln_wiring;

/* The list called name in w (w may be NULL), or NULL. */
const ln_wiring_list *ln_wiring_find(const ln_wiring *w, const char *name);

/* One input of a multi-input module: its shape at the last successful
 * forward and, after backward, dL/d(that input) (owned, reused). */
typedef struct ln_module_input {
	ln_tensor grad;
	int ndim;
	int64_t shape[LN_MAX_DIMS];
} ln_module_input;

/* How a module is built: where its initial weights come from, and how many
 * bytes of parameters and buffers it may claim.  Every constructor of a
 * class with parameters takes one, as does ln_module_class.create; NULL
 * means the default: the process-wide generator, no budget.  The loader
 * passes a generator of its own (so that loading leaves lunet.seed's
 * sequence alone) and the bytes the file holds for the module, so that a
 * config claiming more is an error before anything that size is
 * allocated.  Read during construction only; the module keeps no pointer
 * to it. */
typedef struct ln_module_build {
	ln_rng *rng;    /* initial weights are drawn from it; NULL: ln_rng_global() */
	size_t budget;  /* bytes of parameters and buffers (their gradients not
	                   counted) the module may hold; 0: no limit */
	/* When not NULL, set to true when a tensor did not fit the budget, so
	 * that the caller can tell that LN_ERANGE from the class's own range
	 * checks without reading the message (the loader reports it as a
	 * config asking for more than the file holds). */
	bool *over_budget;
} ln_module_build;

/* The generator a build draws initial weights from: ctx's, or the
 * process-wide one (ctx NULL or without one). */
static inline ln_rng *ln_build_rng(const ln_module_build *ctx)
{
	return ctx && ctx->rng ? ctx->rng : ln_rng_global();
}

/*
 * Sample by sample.  A layer whose samples do not interact (Conv2d, the
 * pools, the elementwise activations) may also describe its forward and
 * backward for a range of samples.  A container then runs a chain of such
 * layers a few samples at a time through all of them
 * (ln_module_chain_forward), so that what one layer writes for them is
 * still in cache when the next one reads it, and the batch is split over
 * the worker threads (one split per chain, not one per layer).  The
 * layer's own forward/backward are the chain of one.
 *
 * The batch is cut into runs of consecutive samples whose number depends on
 * the batch size only (LN_CHAIN_RUNS at most); parameter gradients are
 * summed per run, then the runs in order (backward_finish), so that the
 * bits do not depend on the thread count.  Part p of a split uses
 * scratch p of the layer.
 */
#define LN_CHAIN_RUNS 8

typedef struct ln_rows_ops {
	/* Checks x as forward does (the same messages), makes m->output and
	 * the scratch of `parts` parts, and adds to *work the multiply-adds
	 * (or, for elementwise work, the elements) of the whole batch.  The
	 * only step that may fail. */
	ln_status (*forward_prepare)(ln_module *m, const ln_tensor *x, int parts, double *work,
	                             ln_error *err);
	/* Samples n0..n1-1 of m->output from those of x. */
	void (*forward_rows)(ln_module *m, const ln_tensor *x, int64_t n0, int64_t n1, int part);
	/* Makes grad_input (when m->want_gx) and the scratch of `parts` parts
	 * and `runs` runs, takes over the parameter gradients' pending zeros,
	 * adds to *work.  The only step that may fail. */
	ln_status (*backward_prepare)(ln_module *m, const ln_tensor *x, int parts, int runs,
	                              double *work, ln_error *err);
	/* Samples n0..n1-1: their dL/dx (when m->want_gx) and their terms of
	 * the parameter gradients, into run `run`'s sums (first: n0 begins
	 * the run, whose sums start there). */
	void (*backward_rows)(ln_module *m, const ln_tensor *x, const ln_tensor *gy, int64_t n0,
	                      int64_t n1, int run, bool first, int part);
	/* Adds the runs' sums into the parameter gradients, in run order.  NULL
	 * for a layer without parameters. */
	void (*backward_finish)(ln_module *m, int runs);
	/* Optional joint kernels with the layer before m in a chain (prev,
	 * whose output is m's input; xp is prev's input): the forward_rows of
	 * prev then m, or the backward_rows of m then prev (gy is m's output
	 * gradient), for samples n0..n1-1 in one pass, with the same results,
	 * buffers and bits as the two calls.  They return false, having done
	 * nothing, when the pair (or its state: geometry, want_gx) has no joint
	 * kernel; the chain then makes the two calls.  NULL: never. */
	bool (*forward_rows_after)(ln_module *m, ln_module *prev, const ln_tensor *xp, int64_t n0,
	                           int64_t n1, int part);
	bool (*backward_rows_after)(ln_module *m, ln_module *prev, const ln_tensor *xp,
	                            const ln_tensor *gy, int64_t n0, int64_t n1, int run, bool first,
	                            int part);
} ln_rows_ops;

typedef struct ln_module_class {
	const char *name;  /* "Linear" */
	size_t size;       /* sizeof the concrete struct, which begins with ln_module */
	ln_status (*forward)(ln_module *m, const ln_tensor *x, ln_error *err);
	ln_status (*backward)(ln_module *m, const ln_tensor *x, const ln_tensor *gy, ln_error *err);
	/* Inputs a forward takes: 0 (the default) or 1 for one, through
	 * forward/backward; n >= 2 for exactly n, or LN_ARITY_ANY for one or
	 * more, through forward_multi/backward_multi (see the top of this
	 * file).  Set one pair or the other. */
	int arity;
	ln_status (*forward_multi)(ln_module *m, int n, const ln_tensor *const *x, ln_error *err);
	ln_status (*backward_multi)(ln_module *m, int n, const ln_tensor *const *x,
	                            const ln_tensor *gy, ln_error *err);
	/* Frees what the concrete struct owns beyond the ln_module fields
	 * (forward caches, masks...).  May be NULL. */
	void (*destroy)(ln_module *m);
	/* Names of the parameters, buffers and numeric config entries, in order;
	 * NULL-terminated.  A class whose parameters are not a fixed list
	 * names them with param_name instead and leaves param_names empty. */
	const char *param_names[LN_MODULE_MAX_PARAM_NAMES + 1];
	const char *buffer_names[LN_MODULE_MAX_BUFFERS + 1];
	const char *config_names[LN_MODULE_MAX_CONFIG + 1];
	/* Default config values: what a constructor takes for an argument left
	 * out (LeakyReLU's slope) and, for the last config_optional entries,
	 * what the loader takes when a file lacks them (entries added to a
	 * class after files were written with it, such as Conv2d's bias). */
	double config_defaults[LN_MODULE_MAX_CONFIG];
	int config_optional;
	/* Builds a module of class cls (this class; classes that share code
	 * share a create) from its config values (same order as config_names),
	 * as the loader does: the registry's constructor by name.  ctx may be
	 * NULL (ln_module_build). */
	ln_status (*create)(ln_module **out, const struct ln_module_class *cls,
	                    const ln_module_build *ctx, const double *config, ln_error *err);
	/* Writes a one-line description, "Linear(784 -> 256)"; returns as
	 * snprintf. */
	int (*describe)(const ln_module *m, char *buf, size_t size);
	/* Names m's state under PyTorch's names for the same layer, by calling
	 * the ln_state_* functions of state_dict.h.  May be NULL: parameters
	 * and buffers under param_names and buffer_names, then the children
	 * as "0", "1", ... (ln_state_default, torch.nn.Sequential's naming). */
	void (*state)(ln_module *m, ln_state_visitor *v);
	/* Writes the name of parameter i (0 <= i < m->nparams, or the one
	 * about to be added) into buf, as snprintf, for a class whose number
	 * of parameters depends on its config: a recurrent layer has
	 * weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, weight_ih_l1...
	 * NULL: the names are param_names.  Names are shorter than
	 * LN_PARAM_NAME_MAX. */
	int (*param_name)(const ln_module *m, int i, char *buf, size_t size);
	/* A tensor the module shows under `name` besides its parameters and
	 * buffers (a recurrent layer's last state, "hidden"), or NULL.  Not
	 * saved, not in the state dict.  May be NULL. */
	ln_tensor *(*field)(ln_module *m, const char *name);
	/* Forgets what the module carries from one forward to the next (a
	 * stateful recurrent layer's state).  May be NULL: nothing carried. */
	void (*reset_state)(ln_module *m);
	/* Undoes what m's last successful forward changed in m's buffers
	 * (BatchNorm's running statistics), for a container whose later layer
	 * then failed: a forward that fails changes nothing.  Called at most
	 * once after a forward; may be NULL (the forward changes only output
	 * and caches).  Through ln_module_revert, never directly. */
	void (*revert)(ln_module *m);
	/* Allocates everything m's backward will need after its last forward
	 * (whose input shape is m->in_shape), so that the backward itself
	 * cannot fail for want of memory; need_gx: whether that backward
	 * computes dL/dx (ln_module_backward_ex's, and m->input_grad).  May be
	 * NULL: a layer that needs nothing but grad_input, of its input's shape
	 * (ln_module_reserve makes that one); a container reserves for the
	 * children whose backward it will run.  Through ln_module_reserve,
	 * never directly. */
	ln_status (*reserve)(ln_module *m, bool need_gx, ln_error *err);
	/* The sample-by-sample form (above), or NULL. */
	const ln_rows_ops *rows;
	/* Containers: makes m, fresh from create(), whole with its n children
	 * (m takes a reference to each) connected as w says (w may be NULL: no
	 * wiring).  The loader's way of rebuilding a container, so it checks
	 * everything a file could get wrong (LN_EARG, LN_ERANGE naming it); on
	 * failure m may hold some of the children and can only be released.
	 * NULL: the class has no children. */
	ln_status (*assemble)(ln_module *m, int n, ln_module *const *children, const ln_wiring *w,
	                      ln_error *err);
	/* Containers whose children are not a plain list: fills *w with the
	 * lists that `assemble` takes back (pointers into m, valid until m
	 * changes).  NULL: no wiring (nlists 0). */
	void (*wiring)(const ln_module *m, ln_wiring *w);
	/* How messages name child i of a container ("node 3", "block"), as
	 * snprintf.  NULL: "layer i+1". */
	int (*child_label)(const ln_module *m, int i, char *buf, size_t size);
} ln_module_class;

struct ln_module {
	const ln_module_class *cls;
	long refcount;
	bool training;          /* default true */
	bool input_grad;        /* backward computes grad_input; default true */
	bool want_gx;           /* for the backward running now: compute grad_input */
	bool gx_skipped;        /* the last successful backward left grad_input out */
	/* The last successful backward came after the last forward: its
	 * grad_input and parameter gradients belong to the output now held
	 * (false after each forward, until a backward; m:trace() reads it). */
	bool backward_current;
	ln_tensor output;       /* owned, reused */
	ln_tensor grad_input;   /* owned, reused */
	int nparams;            /* <= LN_MODULE_MAX_PARAMS */
	ln_tensor *param;       /* nparams tensors, array from ln_malloc (NULL: none) */
	ln_tensor *grad;        /* their gradients, the same */
	int nbuffers;
	ln_tensor buffer[LN_MODULE_MAX_BUFFERS];
	int nconfig;
	double config[LN_MODULE_MAX_CONFIG];
	int nchildren;          /* containers only */
	ln_module **children;   /* owned references, array from ln_malloc */
	/* The shape of the input of the last successful forward (in_ndim 0:
	 * none since creation or since a forward failed); backward accepts
	 * only an input of this shape.  Kept by ln_module_forward. */
	int in_ndim;
	int64_t in_shape[LN_MAX_DIMS];
	/* Forwards of this module as a model (the outermost call) since
	 * lunet.check_numerics was turned on: the step its messages name. */
	uint64_t numerics_steps;
	/* The number of inputs a forward takes: 1, n, or LN_ARITY_ANY; the
	 * class's arity (0 read as 1) unless the instance sets its own (a
	 * Graph: its number of inputs). */
	int arity;
	/* Multi-input classes only: ninputs entries, one per input of the last
	 * successful forward (0: none), each with that input's shape and its
	 * gradient after backward; grad_input is a view of inputs[0].grad.  The
	 * array (ninputs_cap entries, from ln_malloc) grows when a forward
	 * has more inputs than any before, and is owned by the module. */
	int ninputs;
	int ninputs_cap;
	ln_module_input *inputs;
};

/* Allocates a zeroed struct of cls->size bytes with refcount 1, training
 * on.  Concrete constructors call this, then fill config and params. */
ln_status ln_module_alloc(ln_module **out, const ln_module_class *cls, ln_error *err);

/* Builds a module of class cls from its config (cls->create): how the
 * loader and a C caller that holds a class build one.  ctx may be NULL.
 * Errors are the class's (LN_ERANGE for a bad config value, naming it). */
ln_status ln_module_create(ln_module **out, const ln_module_class *cls,
                           const ln_module_build *ctx, const double *config, ln_error *err);

/* The create of a class with no config and nothing to build beyond the
 * module itself (ln_module_alloc). */
ln_status ln_module_create_plain(ln_module **out, const ln_module_class *cls,
                                 const ln_module_build *ctx, const double *config,
                                 ln_error *err);

/* The default values of a new parameter or buffer. */
typedef enum ln_param_init {
	LN_PARAM_ZEROS,  /* biases, running means */
	LN_PARAM_ONES,   /* scales such as BatchNorm's weight, running variances */
	LN_PARAM_HE,     /* He normal N(0, 2/fan_in) from the build's generator
	                    (init.h), for the ReLU that usually follows */
} ln_param_init;

/* Appends parameter `name` (the class's next name, ln_module_param_name,
 * asserted) of `shape` to m, with its gradient (zeros), filled as `init`
 * says.  Checks ctx's budget against the bytes m's parameters and buffers
 * would then hold: over it, LN_ERANGE naming the tensor, its shape and
 * both sizes, and nothing is allocated.  Also LN_ERANGE for an impossible
 * shape and LN_ENOMEM; on failure m keeps what it had, and releasing it
 * frees everything. */
ln_status ln_module_add_param(ln_module *m, const ln_module_build *ctx, const char *name,
                              ln_param_init init, int ndim, const int64_t *shape, ln_error *err);
/* The same for a buffer (the class's next buffer_names entry), which has
 * no gradient. */
ln_status ln_module_add_buffer(ln_module *m, const ln_module_build *ctx, const char *name,
                               ln_param_init init, int ndim, const int64_t *shape,
                               ln_error *err);
/* The name of parameter i of m (0 <= i <= m->nparams): param_names[i],
 * or what the class's param_name hook writes into buf. */
const char *ln_module_param_name(const ln_module *m, int i, char buf[LN_PARAM_NAME_MAX]);
/* Makes m hold n parameters (n <= LN_MODULE_MAX_PARAMS), keeping the
 * first min(n, nparams) and releasing the others; new ones are empty.
 * For classes that set their parameters themselves (External).  Errors:
 * LN_ERANGE, LN_ENOMEM (m unchanged). */
ln_status ln_module_resize_params(ln_module *m, int n, ln_error *err);
void ln_module_retain(ln_module *m);
void ln_module_release(ln_module *m);

/* The class's forward/backward, with the checks every module shares
 * (non-empty contiguous input; backward after a successful forward, with
 * that forward's input shape and gy shaped like its output: LN_ESTATE,
 * LN_ESHAPE).  Messages start with "<Class>: " (forward) or
 * "<Class>:backward: ". */
ln_status ln_module_forward(ln_module *m, const ln_tensor *x, ln_error *err);
ln_status ln_module_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy, ln_error *err);
/* The same with the class's own message, for callers that put their own
 * context in front (containers, the Lua binding). */
ln_status ln_module_forward_unprefixed(ln_module *m, const ln_tensor *x, ln_error *err);
ln_status ln_module_backward_unprefixed(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                        ln_error *err);
/* The backward of a container's child: dL/dx is computed only when
 * need_gx is true and the child's own input_grad is too (the unprefixed
 * backward above passes m->input_grad).  With it off, a child without
 * parameters is not called at all, and m->gx_skipped is set. */
ln_status ln_module_backward_ex(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                                bool need_gx, ln_error *err);
/* The same for n inputs (a multi-input class computes the gradients of
 * all its inputs or of none). */
ln_status ln_module_backward_multi_ex(ln_module *m, int n, const ln_tensor *const *x,
                                      const ln_tensor *gy, bool need_gx, ln_error *err);

/* The forward of the chain mods[0..count) (each has rows ops): the
 * first reads x, each the output of the one before, sample by sample
 * through all of them, the batch split over the worker threads when the
 * work is large enough.  Every module's output (and its record of the
 * input) is as if each had run ln_module_forward_unprefixed in turn.  On
 * failure *failed is the index of the module whose message err holds. */
ln_status ln_module_chain_forward(ln_module *const *mods, int count, const ln_tensor *x,
                                  int *failed, ln_error *err);
/* Its backward, from gy = dL/d(last output): mods[0] computes its dL/dx
 * when need_gx and its own input_grad are true, every later one always
 * (their input_grad must be true: the caller, a container, has checked).
 * As ln_module_backward_ex in turn from the last, with the parameter
 * gradients the same bits for any thread count. */
ln_status ln_module_chain_backward(ln_module *const *mods, int count, const ln_tensor *x,
                                   const ln_tensor *gy, bool need_gx, int *failed,
                                   ln_error *err);

/* The runs a chain cuts a batch of n samples into, and the most parts
 * its split may have (the thread count): what a layer's reserve sizes its
 * per-run and per-part scratch for. */
void ln_module_chain_sizes(int64_t n, int *runs, int *parts);

/* Whether m or a module under it has parameters, or is External (whose
 * parameters may live outside C): whether its backward does anything
 * beyond computing dL/dx. */
bool ln_module_trains(const ln_module *m);

/* ---- the NaN finder (numerics.c) -------------------------------------------------
 *
 * With ln_numerics_set(true) (lunet.check_numerics), every forward and
 * backward through ln_module_forward_unprefixed / ln_module_backward_ex
 * scans what each layer wrote (output; parameter gradients and
 * grad_input) and the first NaN or infinity is LN_ENAN: "check_numerics:
 * Sequential[3] (Linear(256 -> 128)): backward produced inf in
 * grad_weight (row 2, column 7), at step 17", the path leading from the model (the
 * outermost module called) to the layer, and the model's forward count
 * since the check was turned on.  Off by default; off, it costs one
 * predictable branch per call. */
extern bool ln_numerics_on;
void ln_numerics_set(bool on);

/* After m's forward succeeded and its container's forward then failed:
 * undoes what that forward changed in the buffers of m and its
 * descendants (each class's revert), so that the failed call as a whole
 * changed nothing that a later call sees. */
void ln_module_revert(ln_module *m);

/* Before a container's backward adds into any parameter gradient: makes
 * every buffer that the backward of m and its descendants will need after
 * their last forward (each class's reserve; grad_input of the input's
 * shape when a class has none and need_gx, as for ln_module_backward_ex),
 * so that a backward that runs out of memory does it before anything is
 * accumulated, and calling it again does not count a gradient twice.
 * Modules written in Lua (External) get nothing.  LN_ENOMEM. */
ln_status ln_module_reserve(ln_module *m, bool need_gx, ln_error *err);
/* The same for n inputs x[0..n-1] (n >= 1), for any module: the count is
 * checked against m->arity ("expected 2 inputs, got 3", LN_EARG), every
 * input as above (messages name it, "input 2: ..." when n > 1), and a
 * backward must be given as many inputs as the forward it follows, each
 * of the shape it had.  After backward, dL/dx[i] is
 * ln_module_grad_input_at(m, i). */
ln_status ln_module_forward_multi(ln_module *m, int n, const ln_tensor *const *x, ln_error *err);
ln_status ln_module_backward_multi(ln_module *m, int n, const ln_tensor *const *x,
                                   const ln_tensor *gy, ln_error *err);
ln_status ln_module_forward_multi_unprefixed(ln_module *m, int n, const ln_tensor *const *x,
                                             ln_error *err);
ln_status ln_module_backward_multi_unprefixed(ln_module *m, int n, const ln_tensor *const *x,
                                              const ln_tensor *gy, ln_error *err);
/* dL/d(input i) after the last backward: m->grad_input for i = 0 and every
 * module, m->inputs[i].grad for a multi-input class.  i must be below the
 * number of inputs of that backward (asserted). */
const ln_tensor *ln_module_grad_input_at(const ln_module *m, int i);
/* True when m's class takes its inputs through forward_multi. */
static inline bool ln_module_is_multi(const ln_module *m) { return m->cls->forward_multi != NULL; }

/* Builds the container m (fresh from create()) from its children and
 * wiring: its class's assemble.  No children and no wiring leave m as it
 * is (a container saved empty loads empty); LN_EARG when the class has no
 * children and is given some. */
ln_status ln_module_assemble(ln_module *m, int n, ln_module *const *children, const ln_wiring *w,
                             ln_error *err);
/* Appends child to m->children, taking a reference.  For a class's
 * assemble and add; LN_ENOMEM leaves m unchanged. */
ln_status ln_module_add_child(ln_module *m, ln_module *child, ln_error *err);
/* Whether target is root or one of root's descendants. */
bool ln_module_contains(const ln_module *root, const ln_module *target);

/* Sets training mode on m and all its descendants. */
void ln_module_set_training(ln_module *m, bool training);
/* Zeroes every parameter gradient of m and its descendants. */
void ln_module_zero_grad(ln_module *m);
/* Calls the reset_state hook of m and of all its descendants: a stateful
 * recurrent layer starts its next forward from zeros. */
void ln_module_reset_state(ln_module *m);

/* Visits every parameter of m and its descendants, in order (children in
 * order, within a module weight before bias): fn(owner, index, ctx).
 * Stops and returns the first non-zero value fn returns. */
int ln_module_visit_params(ln_module *m, int (*fn)(ln_module *owner, int index, void *ctx),
                           void *ctx);

/* ---- registry (registry.c) ----------------------------------------------- */

/* The class with this name, or NULL. */
const ln_module_class *ln_module_class_find(const char *name);
/* The number of classes, and class i (0 <= i < count), in registry order. */
int ln_module_class_count(void);
const ln_module_class *ln_module_class_at(int i);

#endif
