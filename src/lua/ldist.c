/*
 * ldist.c -- lunet.dist: data-parallel training over MPI (src/dist).
 *
 *     dist.available                       true when built with MPI
 *     dist.init()            -> rank, size  joins the job (idempotent)
 *     dist.initialized()     -> boolean
 *     dist.launched()        -> boolean     started by mpirun or srun (environment)
 *     dist.rank()  dist.size()              0 .. size-1, and size
 *     dist.allreduce(t[, op])  -> t         op "sum" (default), "mean", "max", "min"
 *     dist.broadcast(t[, root]) -> t        root's t on every rank (root 0)
 *     dist.iallreduce(t[, op]) -> request   started; request:test() -> done?,
 *                                           request:wait() -> t
 *     dist.barrier()
 *     dist.broadcast_parameters(model[, root])   parameters and buffers
 *     dist.average_gradients(model[, n])         one allreduce over all gradients
 *     dist.abort([code])                    ends the whole job (MPI_Abort)
 *
 * In a build without MPI every function except `available`, `initialized`
 * and `launched` raises "dist.<fn>: this lunet was built without MPI ...".
 *
 * average_gradients weights each rank's gradient by n, the number of
 * samples it is a mean over (dist.h explains the weighting): given
 * explicitly, or else the share of the last batch that a sharded
 * data.batches handed to this rank (data.lua reports it through the
 * internal dist._set_share), or else 1 (a plain mean over ranks).  The
 * packer -- views of the model's gradients and the buffer they travel in
 * -- is made on the first call for a model and kept in a weak table keyed
 * by the model, so later calls allocate nothing.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/gemm.h"
#include "dist/dist.h"
#include "lnaux.h"
#include "lunet.h"
#include "nn/module.h"

#define PACKER_MT "lunet.dist.Packer"
#define REQUEST_MT "lunet.dist.Request"
#define PACKERS_KEY "lunet.dist.packers"
#define SENTINEL_KEY "lunet.dist.finalizer"

/* Samples in this rank's share of the last sharded batch; -1 before any. */
static lua_Integer batch_share = -1;

/* Raises unless the job is initialised (or says there is no MPI). */
static void check_init(lua_State *L, const char *fn)
{
	if (!ln_dist_available())
		luaL_error(L, "%s: this lunet was built without MPI (configure it with "
		           "cmake -DLUNET_MPI=ON)", fn);
	if (!ln_dist_initialized())
		luaL_error(L, "%s: not initialised: call lunet.dist.init() first", fn);
}

/* __gc of the registry sentinel that dist.init leaves: the Lua state is
 * closing, so the job is done for this process. */
static int sentinel_gc(lua_State *L)
{
	(void)L;
	ln_dist_finalize();
	return 0;
}

/* With `ranks` ranks of the job on this machine and no thread count
 * asked for in the environment, gives each rank's matrix products
 * cores / ranks threads (at least 1, at most what they had). */
static void default_threads(int ranks)
{
	if (ranks <= 1 || getenv("OPENBLAS_NUM_THREADS") || getenv("OMP_NUM_THREADS"))
		return;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int share = cores > ranks ? (int)(cores / ranks) : 1;
	if (share < ln_gemm_threads())
		ln_gemm_set_threads(share);
}

/* dist.init() -> rank, size.  Joins the MPI job (once; later calls just
 * return the same numbers).  When several ranks share this machine and
 * no thread count was asked for (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS),
 * each rank's matrix products use cores / local ranks threads (at least
 * 1), so that the ranks do not fight over the cores. */
static int l_init(lua_State *L)
{
	static const char *fn = "dist.init";
	if (!ln_dist_available())
		check_init(L, fn);
	if (!ln_dist_initialized()) {
		ln_error err;
		if (ln_dist_init(&err) != LN_OK)
			return lnL_error(L, fn, &err);
		lua_newuserdatauv(L, 0, 0);
		lua_newtable(L);
		lua_pushcfunction(L, sentinel_gc);
		lua_setfield(L, -2, "__gc");
		lua_setmetatable(L, -2);
		lua_setfield(L, LUA_REGISTRYINDEX, SENTINEL_KEY);
		default_threads(ln_dist_local_size());
	}
	lua_pushinteger(L, ln_dist_rank());
	lua_pushinteger(L, ln_dist_size());
	return 2;
}

static int l_initialized(lua_State *L)
{
	lua_pushboolean(L, ln_dist_initialized());
	return 1;
}

/* Whether the environment says that a launcher of parallel jobs started
 * this process: Open MPI's mpirun (OMPI_COMM_WORLD_SIZE), a PMI or PMIx
 * launcher such as MPICH's mpiexec or Slurm's srun (PMI_SIZE, PMIX_RANK),
 * or srun with several tasks (SLURM_STEP_NUM_TASKS > 1).  Read when lunet
 * is opened: a process that starts MPI alone (a job of one) sets some of
 * these variables itself. */
static bool env_launched(void)
{
	static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", NULL};
	for (int i = 0; vars[i]; i++)
		if (getenv(vars[i]))
			return true;
	const char *tasks = getenv("SLURM_STEP_NUM_TASKS");
	return tasks && atol(tasks) > 1;
}

static bool launched = false;

/* dist.launched() -> boolean (env_launched).  Scripts use it to turn dist
 * on by themselves; it works in a build without MPI too, so that such a
 * build can refuse to run one whole copy of the training per rank. */
static int l_launched(lua_State *L)
{
	lua_pushboolean(L, launched);
	return 1;
}

static int l_rank(lua_State *L)
{
	check_init(L, "dist.rank");
	lua_pushinteger(L, ln_dist_rank());
	return 1;
}

static int l_size(lua_State *L)
{
	check_init(L, "dist.size");
	lua_pushinteger(L, ln_dist_size());
	return 1;
}

static int l_barrier(lua_State *L)
{
	check_init(L, "dist.barrier");
	ln_error err;
	if (ln_dist_barrier(&err) != LN_OK)
		return lnL_error(L, "dist.barrier", &err);
	return 0;
}

/* dist.abort([code]): prints nothing more, ends every rank of the job
 * with exit status code (default 1). */
static int l_abort(lua_State *L)
{
	lua_Integer code = luaL_optinteger(L, 1, 1);
	check_init(L, "dist.abort");
	if (code < 0 || code > 255)
		return luaL_error(L, "dist.abort: code must be in 0..255, got %I", code);
	ln_dist_abort((int)code);
	return 0;
}

/* ---- tensors ---------------------------------------------------------------- */

/* The float data of t to communicate in place.  A non-contiguous t is
 * copied into a new contiguous tensor pushed onto the stack (*copy set to
 * it); the caller copies the result back with put_back. */
static float *tensor_buffer(lua_State *L, ln_tensor *t, ln_tensor **copy, const char *fn)
{
	*copy = NULL;
	if (ln_tensor_is_contiguous(t))
		return ln_tensor_data(t);
	ln_tensor *c = lnL_newtensor(L);
	ln_error err;
	if (ln_tensor_clone(c, t, &err) != LN_OK)
		lnL_error(L, fn, &err);
	*copy = c;
	return ln_tensor_data(c);
}

static void put_back(lua_State *L, ln_tensor *t, ln_tensor *copy, const char *fn)
{
	ln_error err;
	if (copy && ln_tensor_copy(t, copy, &err) != LN_OK)
		lnL_error(L, fn, &err);
}

/* The reduction named at arg ("sum" when absent). */
static ln_dist_op check_op(lua_State *L, int arg, const char *fn)
{
	static const char *const names[] = {"sum", "mean", "max", "min"};
	static const ln_dist_op ops[] = {LN_DIST_SUM, LN_DIST_MEAN, LN_DIST_MAX, LN_DIST_MIN};
	const char *name = luaL_optstring(L, arg, "sum");
	for (int k = 0; k < 4; k++)
		if (strcmp(names[k], name) == 0)
			return ops[k];
	return (ln_dist_op)luaL_error(L, "%s: op must be \"sum\", \"mean\", \"max\" or \"min\", "
	                              "got \"%s\"", fn, name);
}

/* dist.allreduce(t[, op]) -> t: t becomes the element-wise sum (mean,
 * max, min) of every rank's t.  The element counts must agree. */
static int l_allreduce(lua_State *L)
{
	static const char *fn = "dist.allreduce";
	ln_tensor *t = lnL_checktensor(L, 1);
	ln_dist_op op = check_op(L, 2, fn);
	check_init(L, fn);
	ln_tensor *copy;
	float *data = tensor_buffer(L, t, &copy, fn);
	ln_error err;
	if (ln_dist_allreduce(data, (size_t)ln_tensor_numel(t), op, &err) != LN_OK)
		return lnL_error(L, fn, &err);
	put_back(L, t, copy, fn);
	lua_settop(L, 1);
	return 1;
}

/* A started non-blocking reduction.  `keep` holds a reference to the
 * tensor's storage, so that the memory MPI writes into outlives the
 * request even if the script closes the tensor; the user value holds the
 * tensor itself, for wait() to return. */
typedef struct request_box {
	ln_dist_request *r;
	ln_tensor keep;
} request_box;

/* dist.iallreduce(t[, op]) -> request: starts the reduction of t
 * (contiguous) and returns at once.  Every rank must start the same
 * reductions in the same order, and leave t alone until request:wait(). */
static int l_iallreduce(lua_State *L)
{
	static const char *fn = "dist.iallreduce";
	ln_tensor *t = lnL_checktensor(L, 1);
	ln_dist_op op = check_op(L, 2, fn);
	check_init(L, fn);
	if (!ln_tensor_is_contiguous(t))
		return luaL_error(L, "%s: t must be contiguous (clone() a view first)", fn);
	request_box *b = lua_newuserdatauv(L, sizeof *b, 1);
	b->r = NULL;
	b->keep = LN_TENSOR_EMPTY;
	luaL_setmetatable(L, REQUEST_MT);
	lua_pushvalue(L, 1);
	lua_setiuservalue(L, -2, 1);
	ln_error err;
	if (ln_dist_iallreduce(ln_tensor_data(t), (size_t)ln_tensor_numel(t), op, &b->r, &err) !=
	    LN_OK)
		return lnL_error(L, fn, &err);
	ln_tensor_ref(&b->keep, t);
	return 1;
}

/* request:wait() -> t.  Waits for the reduction (a finished request
 * returns its tensor again). */
static int request_wait(lua_State *L)
{
	request_box *b = luaL_checkudata(L, 1, REQUEST_MT);
	ln_dist_request *r = b->r;
	b->r = NULL;
	ln_error err;
	ln_status s = r ? ln_dist_wait(r, &err) : LN_OK;
	ln_tensor_release(&b->keep);
	if (s != LN_OK)
		return lnL_error(L, "request:wait", &err);
	lua_getiuservalue(L, 1, 1);
	return 1;
}

/* request:test() -> whether the reduction has completed. */
static int request_test(lua_State *L)
{
	request_box *b = luaL_checkudata(L, 1, REQUEST_MT);
	bool done = true;
	ln_error err;
	if (b->r && ln_dist_test(b->r, &done, &err) != LN_OK)
		return lnL_error(L, "request:test", &err);
	lua_pushboolean(L, done);
	return 1;
}

/* __gc and __close: a request dropped unfinished is waited for, since MPI
 * may still write into its tensor. */
static int request_gc(lua_State *L)
{
	request_box *b = luaL_checkudata(L, 1, REQUEST_MT);
	if (b->r)
		ln_dist_wait(b->r, NULL);
	b->r = NULL;
	ln_tensor_release(&b->keep);
	return 0;
}

/* Reads an optional root rank at arg (default 0); a non-integer is an
 * error here, a rank out of range is one in ln_dist_broadcast (on every
 * rank alike). */
static int opt_root(lua_State *L, int arg, const char *fn)
{
	if (lua_isnoneornil(L, arg))
		return 0;
	if (!lua_isinteger(L, arg))
		return luaL_error(L, "%s: root must be an integer rank, got %s", fn,
		                  luaL_typename(L, arg));
	lua_Integer r = lua_tointeger(L, arg);
	if (r < -1 || r > INT32_MAX)
		r = -1;  /* reported as out of range by the collective check */
	return (int)r;
}

static void broadcast_tensor(lua_State *L, ln_tensor *t, int root, const char *fn)
{
	ln_tensor *copy;
	float *data = tensor_buffer(L, t, &copy, fn);
	ln_error err;
	if (ln_dist_broadcast(data, (size_t)ln_tensor_numel(t), root, &err) != LN_OK)
		lnL_error(L, fn, &err);
	put_back(L, t, copy, fn);
	if (copy)
		lua_pop(L, 1);
}

/* dist.broadcast(t[, root]) -> t: root's t copied into t on every rank. */
static int l_broadcast(lua_State *L)
{
	static const char *fn = "dist.broadcast";
	ln_tensor *t = lnL_checktensor(L, 1);
	int root = opt_root(L, 2, fn);
	check_init(L, fn);
	broadcast_tensor(L, t, root, fn);
	lua_settop(L, 1);
	return 1;
}

/* ---- models ------------------------------------------------------------------ */

/* Pushes model:parameters()'s table number `which` (1 params, 2 grads).
 * A table without a parameters method is taken as the list itself. */
static void push_model_list(lua_State *L, int model, int which, const char *fn)
{
	bool table = lua_type(L, model) == LUA_TTABLE;
	if (!table && !lnL_testmodule(L, model))
		luaL_error(L, "%s: expected a model (a module, or a table with a parameters method) "
		           "or a table of tensors, got %s", fn, luaL_typename(L, model));
	if (lua_getfield(L, model, "parameters") == LUA_TNIL && table) {
		lua_pop(L, 1);
		lua_pushvalue(L, model);
		return;
	}
	lua_pushvalue(L, model);
	lua_call(L, 1, 2);
	if (!lua_istable(L, -2) || !lua_istable(L, -1))
		luaL_error(L, "%s: model:parameters() must return two tables, got %s and %s", fn,
		           luaL_typename(L, -2), luaL_typename(L, -1));
	lua_remove(L, which == 1 ? -1 : -2);
}

/* The i-th tensor of the list at idx, or an error naming what was there. */
static ln_tensor *list_tensor(lua_State *L, int idx, lua_Integer i, const char *what,
                              const char *fn)
{
	lua_geti(L, idx, i);
	ln_tensor *t = lnL_testtensor(L, -1);
	if (!t)
		luaL_error(L, "%s: %s %I is %s, expected lunet.Tensor", fn, what, i, luaL_typename(L, -1));
	lnL_checktensor(L, -1);  /* a closed tensor is an error */
	lua_pop(L, 1);           /* still held by the list */
	return t;
}

/* FNV-1a over 64-bit words: a fingerprint of a model's layout. */
static uint64_t fnv(uint64_t h, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		h ^= (v >> (8 * i)) & 0xff;
		h *= 0x100000001b3ULL;
	}
	return h;
}
#define FNV_START 0xcbf29ce484222325ULL

/* Buffers (BatchNorm's running statistics) of m and its descendants. */
static void collect_buffers(lua_State *L, ln_module *m, int list)
{
	for (int i = 0; i < m->nbuffers; i++) {
		lnL_pushview(L, &m->buffer[i]);
		lua_seti(L, list, (lua_Integer)luaL_len(L, list) + 1);
	}
	for (int i = 0; i < m->nchildren; i++)
		collect_buffers(L, m->children[i], list);
}

/* dist.broadcast_parameters(model[, root]): every parameter of model (as
 * model:parameters() lists them) and every buffer of its built-in modules
 * take root's values, so that all ranks start from the same weights.  The
 * layout (number and sizes of the tensors) must agree across ranks. */
static int l_broadcast_parameters(lua_State *L)
{
	static const char *fn = "dist.broadcast_parameters";
	int root = opt_root(L, 2, fn);
	check_init(L, fn);
	lua_settop(L, 2);
	push_model_list(L, 1, 1, fn);
	int list = lua_gettop(L);
	lnL_module_box *box = lnL_testmodule(L, 1);
	if (box && box->m)
		collect_buffers(L, box->m, list);
	lua_Integer n = luaL_len(L, list);
	uint64_t h = fnv(FNV_START, (uint64_t)n);
	for (lua_Integer i = 1; i <= n; i++)
		h = fnv(h, (uint64_t)ln_tensor_numel(list_tensor(L, list, i, "parameter", fn)));
	ln_error err;
	/* the fingerprint, kept positive and below 2^62, through the integer check */
	if (ln_dist_check_same((int64_t)(h >> 2), "the model's layout (number and sizes of its "
	                       "parameters and buffers)", &err) != LN_OK)
		return lnL_error(L, fn, &err);
	for (lua_Integer i = 1; i <= n; i++)
		broadcast_tensor(L, list_tensor(L, list, i, "parameter", fn), root, fn);
	return 0;
}

typedef struct packer_box {
	ln_dist_packer *p;
	uint64_t signature;  /* of the built-in module tree it was made for; 0 otherwise */
} packer_box;

static int packer_gc(lua_State *L)
{
	packer_box *b = luaL_checkudata(L, 1, PACKER_MT);
	ln_dist_packer_free(b->p);
	b->p = NULL;
	return 0;
}

static int sign_param(ln_module *owner, int index, void *ctx)
{
	uint64_t *h = ctx;
	const ln_tensor *g = &owner->grad[index];
	*h = fnv(*h, (uint64_t)(uintptr_t)g->storage);
	*h = fnv(*h, (uint64_t)g->offset);
	*h = fnv(*h, (uint64_t)ln_tensor_numel(g));
	return 0;
}

/* The fingerprint of a built-in model's gradient tensors (which storage,
 * where, how many): it changes when a layer is added or its gradients
 * are replaced, and then the packer is made again. */
static uint64_t module_signature(ln_module *m)
{
	uint64_t h = FNV_START;
	ln_module_visit_params(m, sign_param, &h);
	return h | 1;  /* never 0 */
}

/* Whether the packer made from the plain list at idx still matches it. */
static bool list_matches(lua_State *L, int idx, const ln_dist_packer *p)
{
	if (luaL_len(L, idx) != p->n)
		return false;
	for (int i = 0; i < p->n; i++) {
		lua_geti(L, idx, i + 1);
		ln_tensor *t = lnL_testtensor(L, -1);
		lua_pop(L, 1);
		if (!t || t->storage != p->g[i].storage || t->offset != p->g[i].offset ||
		    ln_tensor_numel(t) != ln_tensor_numel(&p->g[i]))
			return false;
	}
	return true;
}

/* Returns the packer for the model at index 1, making it (and checking
 * that every rank packs as many elements) when there is none yet or the
 * model changed. */
static ln_dist_packer *get_packer(lua_State *L, const char *fn)
{
	lnL_module_box *box = lnL_testmodule(L, 1);
	if (!box && lua_type(L, 1) != LUA_TTABLE)
		luaL_error(L, "%s: expected a model (a module, or a table with a parameters method) "
		           "or a table of gradient tensors, got %s", fn, luaL_typename(L, 1));
	if (box && !box->m)
		luaL_error(L, "%s: the model is closed", fn);
	bool plain_list = false;
	if (!box) {
		plain_list = lua_getfield(L, 1, "parameters") == LUA_TNIL;
		lua_pop(L, 1);
	}
	uint64_t sig = box ? module_signature(box->m) : 0;

	luaL_getsubtable(L, LUA_REGISTRYINDEX, PACKERS_KEY);
	int cache = lua_gettop(L);
	if (!lua_getmetatable(L, cache)) {  /* weak keys: the cache keeps no model alive */
		lua_newtable(L);
		lua_pushliteral(L, "k");
		lua_setfield(L, -2, "__mode");
		lua_setmetatable(L, cache);
	} else {
		lua_pop(L, 1);
	}
	lua_pushvalue(L, 1);
	if (lua_rawget(L, cache) == LUA_TUSERDATA) {
		packer_box *b = lua_touserdata(L, -1);
		if (b->p && b->signature == sig && (!plain_list || list_matches(L, 1, b->p))) {
			lua_pop(L, 2);
			return b->p;
		}
	}
	lua_pop(L, 1);

	/* make it: the gradients, as model:parameters() gives them */
	push_model_list(L, 1, 2, fn);
	int list = lua_gettop(L);
	lua_Integer n = luaL_len(L, list);
	if (n > 1000000)
		luaL_error(L, "%s: too many gradient tensors (%I)", fn, n);
	ln_tensor *gs = lua_newuserdatauv(L, (n > 0 ? (size_t)n : 1) * sizeof(ln_tensor), 0);
	for (lua_Integer i = 1; i <= n; i++)
		gs[i - 1] = *list_tensor(L, list, i, "gradient", fn);
	packer_box *b = lua_newuserdatauv(L, sizeof *b, 0);
	b->p = NULL;
	b->signature = sig;
	luaL_setmetatable(L, PACKER_MT);
	ln_error err;
	if (ln_dist_packer_new(&b->p, (int)n, gs, &err) != LN_OK)
		return lnL_error(L, fn, &err), NULL;
	if (ln_dist_check_same((int64_t)b->p->total, "the number of gradient elements", &err) !=
	    LN_OK)
		return lnL_error(L, fn, &err), NULL;
	lua_pushvalue(L, 1);
	lua_pushvalue(L, -2);
	lua_rawset(L, cache);
	lua_settop(L, cache - 1);
	return b->p;
}

/* dist.average_gradients(model[, n]): every gradient of model becomes the
 * mean over the ranks, rank r's weighted by its n_r (see the top of this
 * file).  One allreduce; allocates nothing after the first call. */
static int l_average_gradients(lua_State *L)
{
	static const char *fn = "dist.average_gradients";
	lua_Integer n = batch_share >= 0 ? batch_share : 1;
	if (!lua_isnoneornil(L, 2)) {
		if (!lua_isinteger(L, 2))
			return luaL_error(L, "%s: n must be an integer number of samples, got %s", fn,
			                  luaL_typename(L, 2));
		n = lua_tointeger(L, 2);
		if (n < 0 || n > ((lua_Integer)1 << 24))
			return luaL_error(L, "%s: n must be in 0..2^24, got %I", fn, n);
	}
	check_init(L, fn);
	lua_settop(L, 2);
	ln_dist_packer *p = get_packer(L, fn);
	ln_error err;
	if (ln_dist_average(p, (double)n, &err) != LN_OK)
		return lnL_error(L, fn, &err);
	return 0;
}

/* dist._set_share(n): data.batches with shard=true tells how many samples
 * of the current batch this rank got (internal). */
static int l_set_share(lua_State *L)
{
	batch_share = luaL_checkinteger(L, 1);
	return 0;
}

/* ---- the runner's side -------------------------------------------------------- */

void lunet_dist_abort(int code)
{
	if (!ln_dist_initialized() || ln_dist_size() == 1)
		return;  /* nobody waits for a job of one */
	fprintf(stderr, "lunet: rank %d of %d failed: ending the job\n", ln_dist_rank(),
	        ln_dist_size());
	ln_dist_abort(code);
}

void lnL_open_dist(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{"init", l_init},
		{"initialized", l_initialized},
		{"launched", l_launched},
		{"rank", l_rank},
		{"size", l_size},
		{"allreduce", l_allreduce},
		{"broadcast", l_broadcast},
		{"iallreduce", l_iallreduce},
		{"barrier", l_barrier},
		{"broadcast_parameters", l_broadcast_parameters},
		{"average_gradients", l_average_gradients},
		{"abort", l_abort},
		{"_set_share", l_set_share},
		{NULL, NULL},
	};
	static const luaL_Reg request_methods[] = {
		{"wait", request_wait},
		{"test", request_test},
		{"__gc", request_gc},
		{"__close", request_gc},
		{NULL, NULL},
	};
	if (!ln_dist_initialized())
		launched = env_launched();
	luaL_newmetatable(L, PACKER_MT);
	lua_pushcfunction(L, packer_gc);
	lua_setfield(L, -2, "__gc");
	lua_pop(L, 1);
	luaL_newmetatable(L, REQUEST_MT);
	luaL_setfuncs(L, request_methods, 0);
	lua_pushvalue(L, -1);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	luaL_newlib(L, funcs);
	lua_pushboolean(L, ln_dist_available());
	lua_setfield(L, -2, "available");
	lua_setfield(L, -2, "dist");
}
