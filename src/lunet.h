/*
 * lunet.h -- lunet for host programs: running a saved model from C or
 * C++ without writing any Lua, and embedding lunet in a Lua 5.4 host.
 *
 * ---- running a saved model ------------------------------------------------------
 *
 *     #include <stdio.h>
 *     #include <stdlib.h>
 *     #include <lunet.h>
 *
 *     int main(void)
 *     {
 *         lunet_error err;
 *         lunet_model *model;
 *         // a file written by lunet.save(path, model), or by exp:checkpoint
 *         if (lunet_model_load(&model, "mlp.lunet", &err) != LUNET_OK) {
 *             fprintf(stderr, "%s\n", err.message);
 *             return 1;
 *         }
 *         float x[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8};  // a batch of 2 inputs of 4 features
 *         const int64_t shape[2] = {2, 4};
 *         float y[2 * 10];
 *         int ndim;
 *         int64_t yshape[LUNET_MAX_DIMS];
 *         if (lunet_model_forward(model, x, 2, shape, y, 2 * 10, &ndim, yshape, &err)
 *             != LUNET_OK) {
 *             fprintf(stderr, "%s (%s)\n", err.message, lunet_status_name(err.status));
 *             lunet_model_free(model);
 *             return 1;
 *         }
 *         printf("output {%lld,%lld}, y[0] = %g\n", (long long)yshape[0],
 *                (long long)yshape[1], y[0]);
 *         lunet_model_free(model);
 *         return 0;
 *     }
 *
 * Build against an installed lunet with
 *
 *     cc host.c $(pkg-config --cflags --libs lunet) -o host
 *
 * (pkg-config's flags carry an rpath to lunet's library directory when it
 * is not one the loader searches anyway, so ./host runs as it is; a C++
 * host is built the same way with c++).
 *
 * The model runs in evaluate mode (Dropout off, BatchNorm on its running
 * statistics).  Inside, lunet loads the file with a private lua_State of
 * its own; the host never sees Lua.  Errors come back as a status and a
 * message in a lunet_error; nothing exits, aborts or jumps out of the
 * caller.  Calls into lunet, on any model, must come from one thread at a
 * time: the engine has process-wide state (its allocator's counters, the
 * random generator, its worker threads).
 *
 * ---- embedding lunet in a Lua host ------------------------------------------------
 *
 *     #include <lauxlib.h>
 *     #include <lualib.h>
 *     #include <lunet.h>
 *
 *     int main(void) {
 *         lua_State *L = luaL_newstate();
 *         luaL_openlibs(L);
 *         luaL_requiref(L, "lunet", luaopen_lunet, 1);   // sets global `lunet`
 *         lua_pop(L, 1);
 *         if (luaL_dostring(L, "print(lunet.ones(2,2):sum())") != LUA_OK)
 *             fprintf(stderr, "%s\n", lua_tostring(L, -1));
 *         lua_close(L);
 *     }
 *
 * Build with `pkg-config --cflags --libs lunet` as above.
 */
#ifndef LUNET_H
#define LUNET_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include <lua.h>

#define LUNET_VERSION_MAJOR 0
#define LUNET_VERSION_MINOR 1
#define LUNET_VERSION_PATCH 0

/* ==== running a saved model ==================================================== */

#define LUNET_MAX_DIMS 8            /* the most dimensions a tensor has */
#define LUNET_ERROR_MESSAGE_MAX 512

typedef enum lunet_status {
	LUNET_OK = 0,
	LUNET_EARG,      /* a bad argument from the caller: NULL pointer, ndim or a size out of range */
	LUNET_EIO,       /* a file cannot be opened or read */
	LUNET_EFORMAT,   /* a file is not one lunet reads (corrupt, truncated, foreign), or holds no model */
	LUNET_EMISMATCH, /* the weights do not fit the architecture (names, shapes) */
	LUNET_ESHAPE,    /* the input's shape does not fit the model */
	LUNET_ESPACE,    /* the output buffer is too small; the output's shape is returned */
	LUNET_ENOMEM,    /* out of memory */
	LUNET_EMODEL,    /* any other failure inside the model's forward */
} lunet_status;

/* What went wrong: the status and a message naming the function, the
 * file and the values ("lunet_model_forward: Linear: expected input of
 * shape {N,4}, got {2,5}").  message is always NUL-terminated. */
typedef struct lunet_error {
	lunet_status status;
	char message[LUNET_ERROR_MESSAGE_MAX];
} lunet_error;

typedef struct lunet_model lunet_model;

/* "LUNET_OK", "LUNET_ESHAPE", ... */
const char *lunet_status_name(lunet_status status);

/* Loads the model in a file written by lunet.save: the file's root value
 * if it is a module, else the module in the field `model` of a table (as
 * exp:checkpoint writes).  On success *out is a new model, to be freed
 * with lunet_model_free; on failure *out is NULL and err (which may be
 * NULL) says why: LUNET_EIO, LUNET_EFORMAT, LUNET_ENOMEM, LUNET_EARG. */
lunet_status lunet_model_load(lunet_model **out, const char *path, lunet_error *err);

/* Loads an architecture as above (its weights do not matter), then the
 * weights of a safetensors file (lunet.save_safetensors, or PyTorch's
 * state_dict under the same names) into it with every name and shape
 * checked (model:load_state_dict, strict).  A mismatch is LUNET_EMISMATCH
 * listing the keys; otherwise as lunet_model_load. */
lunet_status lunet_model_load_safetensors(lunet_model **out, const char *architecture_path,
                                          const char *weights_path, lunet_error *err);

/* Runs the model on `input`, a row-major float buffer of shape
 * shape[0..ndim) (ndim 1..LUNET_MAX_DIMS, every size >= 1; shape[0] is
 * the batch), and writes the output, row-major, into output[0..capacity).
 * The output's shape always comes back in *out_ndim and
 * out_shape[0..*out_ndim) (out_shape has room for LUNET_MAX_DIMS).
 *
 * How the caller learns the output's shape: pass output = NULL and
 * capacity = 0; the forward runs, the shape comes back, nothing is
 * written, and the status is LUNET_OK.  Since the first dimension is the
 * batch, one call with a batch of 1 sizes the buffer for any batch.  A
 * non-NULL output smaller than the result is LUNET_ESPACE (shape still
 * returned).
 *
 * Errors: LUNET_EARG, LUNET_ESHAPE (the input does not fit the model;
 * the message names the layer and both shapes), LUNET_ESPACE,
 * LUNET_ENOMEM, LUNET_EMODEL.  The model stays usable after any of them.
 * Repeated calls with the same input shape allocate nothing. */
lunet_status lunet_model_forward(lunet_model *model, const float *input, int ndim,
                                 const int64_t *shape, float *output, size_t capacity,
                                 int *out_ndim, int64_t *out_shape, lunet_error *err);

/* Frees the model and everything it holds.  NULL is ignored. */
void lunet_model_free(lunet_model *model);

/* ==== embedding lunet in a Lua host ============================================= */

/* Opens the lunet module: pushes its table (tensor functions, lunet.nn,
 * lunet.optim, lunet.data ...).  Use with luaL_requiref or
 * package.preload. */
int luaopen_lunet(lua_State *L);

/* For runners, after printing the error that ends a script: when this
 * process joined an MPI job of several ranks (lunet.dist.init), says
 * which rank failed and ends the whole job with exit status `code`
 * (MPI_Abort), so that the other ranks do not wait for ever inside a
 * collective call; it does not return then.  Otherwise it returns at
 * once. */
void lunet_dist_abort(int code);

/* Raises the Lua error "interrupted!" (after the position, as luaL_error
 * gives it) and records it as an interrupt: a run of lunet.experiment that
 * it stops then prints its summary and ends with one line saying where it
 * stopped and how to resume, instead of a traceback.  Call it where a host
 * turns Ctrl-C into a Lua error: from a hook that a SIGINT handler sets
 * with lua_sethook, as lua.c and the lunet runner do.  Does not return.
 * A message handler (lua_pcall's msgh) should pass that error value on
 * unchanged (lunet_is_interrupt), without appending a traceback: the
 * experiment recognises it by its identity. */
int lunet_interrupt(lua_State *L);

/* Whether the value at idx is the error that the last lunet_interrupt
 * raised. */
int lunet_is_interrupt(lua_State *L, int idx);

#ifdef __cplusplus
}
#endif

#endif
