/*
 * lhost.c -- the C API that runs a saved model (lunet.h, "running a saved
 * model").
 *
 * Loading goes through lunet's own Lua functions (lunet.load,
 * lunet.load_safetensors, model:load_state_dict) in a private lua_State,
 * so that a host reads exactly what scripts read.  Every Lua call runs
 * inside lua_pcall: a Lua error becomes a status and a message, and no
 * longjmp ever reaches the host.  Which status depends on the step that
 * failed (reading the file, decoding it, fitting the weights), never on
 * the text of the message.
 *
 * The forward pass needs no Lua: a loaded model is made of built-in
 * modules (custom Lua modules cannot be saved), so lunet_model_forward
 * calls ln_module_forward on the engine module directly, and its
 * ln_status maps onto the public codes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "core/alloc.h"
#include "core/tensor.h"
#include "lnaux.h"
#include "lunet.h"
#include "nn/module.h"

struct lunet_model {
	lua_State *L;     /* private state holding the module's Lua object */
	ln_module *m;     /* the engine module; one reference of ours */
	ln_tensor input;  /* the input buffer, reused while the shape stays */
};

static const char *const status_names[] = {
	[LUNET_OK] = "LUNET_OK",
	[LUNET_EARG] = "LUNET_EARG",
	[LUNET_EIO] = "LUNET_EIO",
	[LUNET_EFORMAT] = "LUNET_EFORMAT",
	[LUNET_EMISMATCH] = "LUNET_EMISMATCH",
	[LUNET_ESHAPE] = "LUNET_ESHAPE",
	[LUNET_ESPACE] = "LUNET_ESPACE",
	[LUNET_ENOMEM] = "LUNET_ENOMEM",
	[LUNET_EMODEL] = "LUNET_EMODEL",
};

const char *lunet_status_name(lunet_status status)
{
	if ((unsigned)status >= sizeof status_names / sizeof status_names[0])
		return "LUNET_(unknown status)";
	return status_names[status];
}

/* Fills err (may be NULL) and returns status. */
static lunet_status fail(lunet_error *err, lunet_status status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static lunet_status fail(lunet_error *err, lunet_status status, const char *fmt, ...)
{
	if (err) {
		err->status = status;
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->message, sizeof err->message, fmt, ap);
		va_end(ap);
	}
	return status;
}

/* ---- loading ----------------------------------------------------------------------- */

/* What load_body does, and the status its current step stands for. */
typedef struct load_job {
	const char *arch, *weights;  /* weights may be NULL */
	lunet_status step;           /* the status if the step now running fails */
	ln_module *m;                /* the result, one reference */
} load_job;

/* Runs in protected mode on the private state: opens the libraries and
 * lunet, loads the architecture file, finds the module, loads the weights
 * into it, sets evaluate mode and keeps the module in the registry. */
static int load_body(lua_State *L)
{
	load_job *job = lua_touserdata(L, 1);
	job->step = LUNET_ENOMEM;
	luaL_openlibs(L);
	luaL_requiref(L, "lunet", luaopen_lunet, 0);
	int lunet = lua_gettop(L);

	job->step = LUNET_EFORMAT;
	lua_getfield(L, lunet, "load");
	lua_pushstring(L, job->arch);
	lua_call(L, 1, 1);
	int root = lua_gettop(L);
	if (!lnL_testmodule(L, root)) {
		if (lua_istable(L, root) && lua_getfield(L, root, "model") != LUA_TNIL &&
		    lnL_testmodule(L, -1)) {
			lua_replace(L, root);
		} else {
			lua_settop(L, root);
			return luaL_error(L, "%s: holds no model (a %s; expected a module, or a table with "
			                  "the module in the field 'model', as exp:checkpoint writes)",
			                  job->arch, luaL_typename(L, root));
		}
	}
	if (job->weights) {
		lua_getfield(L, lunet, "load_safetensors");
		lua_pushstring(L, job->weights);
		lua_call(L, 1, 1);
		job->step = LUNET_EMISMATCH;
		lua_getfield(L, root, "load_state_dict");
		lua_pushvalue(L, root);
		lua_rotate(L, -3, -1);  /* f, model, dict */
		lua_call(L, 2, 0);
	}
	job->step = LUNET_EMODEL;
	lua_getfield(L, root, "evaluate");
	lua_pushvalue(L, root);
	lua_call(L, 1, 0);
	lua_pushvalue(L, root);
	luaL_ref(L, LUA_REGISTRYINDEX);  /* the state is private: never released before lua_close */
	job->m = lnL_testmodule(L, root)->m;
	ln_module_retain(job->m);
	return 0;
}

/* LUNET_EIO unless path names a regular file that can be opened. */
static lunet_status check_file(const char *path, const char *fname, lunet_error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return fail(err, LUNET_EIO, "%s: %s: cannot open: %s", fname, path, strerror(errno));
	struct stat st;
	int bad = fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode);
	fclose(f);
	if (bad)
		return fail(err, LUNET_EIO, "%s: %s: not a regular file", fname, path);
	return LUNET_OK;
}

static lunet_status load(lunet_model **out, const char *arch, const char *weights,
                         const char *fname, lunet_error *err)
{
	if (!out)
		return fail(err, LUNET_EARG, "%s: out is NULL", fname);
	*out = NULL;
	if (!arch)
		return fail(err, LUNET_EARG, "%s: path is NULL", fname);
	lunet_status s = check_file(arch, fname, err);
	if (s == LUNET_OK && weights)
		s = check_file(weights, fname, err);
	if (s != LUNET_OK)
		return s;

	lunet_model *model = ln_calloc(1, sizeof *model);
	lua_State *L = model ? luaL_newstate() : NULL;
	if (!L) {
		ln_free(model);
		return fail(err, LUNET_ENOMEM, "%s: out of memory", fname);
	}
	load_job job = {.arch = arch, .weights = weights, .step = LUNET_ENOMEM};
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	lua_pushcfunction(L, load_body);
	lua_pushlightuserdata(L, &job);
	int rc = lua_pcall(L, 1, 0, 0);
	if (rc != LUA_OK) {
		/* An engine allocation that failed during the load is the cause,
		 * whatever step reported it. */
		ln_alloc_get_stats(&after);
		s = rc == LUA_ERRMEM || after.failures != before.failures ? LUNET_ENOMEM : job.step;
		const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(no message)";
		fail(err, s, "%s: %s", fname, msg);
		if (job.m)
			ln_module_release(job.m);
		lua_close(L);
		ln_free(model);
		return s;
	}
	model->L = L;
	model->m = job.m;
	*out = model;
	return LUNET_OK;
}

lunet_status lunet_model_load(lunet_model **out, const char *path, lunet_error *err)
{
	return load(out, path, NULL, "lunet_model_load", err);
}

lunet_status lunet_model_load_safetensors(lunet_model **out, const char *architecture_path,
                                          const char *weights_path, lunet_error *err)
{
	static const char fname[] = "lunet_model_load_safetensors";
	if (!weights_path) {
		if (out)
			*out = NULL;
		return fail(err, LUNET_EARG, "%s: weights_path is NULL", fname);
	}
	return load(out, architecture_path, weights_path, fname, err);
}

void lunet_model_free(lunet_model *model)
{
	if (!model)
		return;
	ln_tensor_release(&model->input);
	ln_module_release(model->m);
	lua_close(model->L);
	ln_free(model);
}

/* ---- forward ------------------------------------------------------------------------ */

static lunet_status from_ln(ln_status s)
{
	switch (s) {
	case LN_OK: return LUNET_OK;
	case LN_ESHAPE: return LUNET_ESHAPE;
	case LN_ENOMEM: return LUNET_ENOMEM;
	default: return LUNET_EMODEL;
	}
}

lunet_status lunet_model_forward(lunet_model *model, const float *input, int ndim,
                                 const int64_t *shape, float *output, size_t capacity,
                                 int *out_ndim, int64_t *out_shape, lunet_error *err)
{
	static const char fname[] = "lunet_model_forward";
	if (!model || !input || !shape || !out_ndim || !out_shape)
		return fail(err, LUNET_EARG, "%s: %s is NULL", fname,
		            !model ? "model" : !input ? "input" : !shape ? "shape"
		                                     : !out_ndim ? "out_ndim" : "out_shape");
	if (!output && capacity)
		return fail(err, LUNET_EARG, "%s: output is NULL with a capacity of %zu", fname, capacity);
	if (ndim < 1 || ndim > LUNET_MAX_DIMS)
		return fail(err, LUNET_EARG, "%s: ndim must be in 1..%d, got %d", fname, LUNET_MAX_DIMS,
		            ndim);
	for (int d = 0; d < ndim; d++)
		if (shape[d] < 1)
			return fail(err, LUNET_EARG, "%s: shape[%d] must be >= 1, got %lld", fname, d,
			            (long long)shape[d]);
	ln_error e;
	ln_status st = ln_tensor_ensure(&model->input, ndim, shape, &e);
	if (st != LN_OK)
		return fail(err, st == LN_ENOMEM ? LUNET_ENOMEM : LUNET_EARG, "%s: input: %s", fname,
		            e.msg);
	memcpy(ln_tensor_data(&model->input), input,
	       (size_t)ln_tensor_numel(&model->input) * sizeof(float));
	if ((st = ln_module_forward(model->m, &model->input, &e)) != LN_OK)
		return fail(err, from_ln(st), "%s: %s", fname, e.msg);

	const ln_tensor *y = &model->m->output;
	*out_ndim = y->ndim;
	for (int d = 0; d < y->ndim; d++)
		out_shape[d] = y->shape[d];
	size_t n = (size_t)ln_tensor_numel(y);
	if (!output)
		return LUNET_OK;
	if (capacity < n) {
		char s[96];
		return fail(err, LUNET_ESPACE, "%s: the output %s needs %zu floats, the buffer holds %zu",
		            fname, ln_tensor_shape_str(y, s, sizeof s), n, capacity);
	}
	if (ln_tensor_is_contiguous(y)) {
		memcpy(output, ln_tensor_data(y), n * sizeof(float));
	} else {
		ln_tensor tmp = LN_TENSOR_EMPTY;
		if ((st = ln_tensor_clone(&tmp, y, &e)) != LN_OK)
			return fail(err, from_ln(st), "%s: %s", fname, e.msg);
		memcpy(output, ln_tensor_data(&tmp), n * sizeof(float));
		ln_tensor_release(&tmp);
	}
	return LUNET_OK;
}
