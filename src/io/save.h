/*
 * save.h -- the lunet file format: a versioned, checksummed, data-only
 * encoding of a tree of values (nil, booleans, numbers, strings, tables,
 * tensors, modules, optimizers).  file.h reads and writes the files.
 *
 * Loading never runs code: a file holds data only, and the only things
 * built from it are the values listed below (modules by class name,
 * through the registry's constructors).
 *
 * ---- file layout --------------------------------------------------------------
 *
 * Every integer is little-endian, every float IEEE-754 little-endian.
 *
 *   offset  size  field
 *   0       6     magic "LUNET\0"
 *   6       2     format version, u16 (LN_SAVE_VERSION; readers refuse newer)
 *   8       8     payload length P, u64
 *   16      P     payload
 *   16+P    4     CRC-32 of the payload bytes (zlib's crc32), u32
 *
 * A file is exactly 20 + P bytes: fewer is "truncated", more is corrupt.
 *
 * ---- payload -------------------------------------------------------------------
 *
 *   value      the root value
 *   bindings   for each optimizer record in the value, in the order they
 *              appear: u64 n (its parameter count), then n times
 *              { u64 owner, str name }: owner is 1 + the object id of the
 *              module holding that parameter, name the parameter's name in
 *              that module ("weight"); owner 0 (no module in this file
 *              holds it) is followed by no name.
 *
 * A value is a tag byte and a body; str below is { u64 length, bytes }
 * and a tensor body is { u8 ndim (1..8), ndim x i64 size (each >= 1),
 * prod(size) x f32 in row-major order }.
 *
 *   tag  kind       body
 *   0    nil        -
 *   1    false      -
 *   2    true       -
 *   3    number     f64
 *   4    integer    i64
 *   5    string     str (any bytes, NUL included)
 *   6    table      u64 na, na values (the keys 1..na, in order),
 *                   u64 nh, nh x { key value }; a key is a string, a
 *                   number (not NaN), an integer or a boolean
 *   7    tensor     tensor body
 *   8    module     str class name (as in registry.c), u8 training (0/1),
 *                   u8 nc, nc x { str name, f64 value }       config
 *                   u8 np, np x { str name, tensor body }     parameters
 *                   u8 nb, nb x { str name, tensor body }     buffers
 *                   u64 nk, nk x { a module value, or a ref to one }  children
 *                   u8 nw, nw x { str name, u64 n, n x i64 }   wiring
 *   9    optimizer  str name (an optimizer description's, optim.c: "SGD",
 *                   "Adam", "RMSprop"),
 *                   u8 nv, nv x { str name, f64 value }   hyper-parameters
 *                   (flags as 0 or 1; one left out takes its default),
 *                   i64 steps, u8 ns, ns x str state name,
 *                   u64 n, n x { u8 ndim, ndim x i64 size (the parameter's
 *                   shape), ns x tensor body (its state, in the order named) }
 *   10   ref        u64 object id: the same object again
 *
 * The wiring says how a container's children connect, as named lists of
 * integers (module.h, ln_wiring); nw is 0 for every class but the ones
 * whose children are not a plain list.  A Graph's (graph.h) are "arity"
 * (per node, in node order: its number of inputs, 0 for an input node),
 * "edges" (the node indices each node reads, node after node), "inputs"
 * and "outputs" (node indices); its module nodes take the children in
 * order.  Loading hands the children and the wiring to the class
 * (assemble), which checks them as it checks a graph a script builds.
 *
 * Version 2 differs in the module record only: it has no wiring (its
 * containers were Sequentials).  Version 1 differs from version 2 in the
 * optimizer record and its bindings only: the
 * record was { u8 kind (0 SGD, 1 Adam, 2 RMSprop), u8 flags (1 nesterov,
 * 2 decoupled, 4 centered), f64 lr, momentum, weight_decay, beta1, beta2,
 * eps, alpha (those the kind has are used), then steps and state as
 * above }, and a binding was { u64 owner, u8 index } with the parameter's
 * position in its module.  Readers read all three versions; writers
 * write LN_SAVE_VERSION.
 *
 * Objects.  Every table, tensor, module and optimizer record is an object,
 * numbered from 0 in the order its tag appears (a module's children follow
 * it, depth first).  A ref names an object that is complete (so a ref
 * cannot make a cycle) and the same object comes back: two references to
 * one tensor load as one tensor.  Nesting of tables and modules is limited
 * to LN_SAVE_MAX_DEPTH levels, on both sides.
 *
 * Modules are saved by name: config entries, parameters and buffers each
 * carry their name, and loading builds the module with its class's
 * create() from the config, then checks every saved tensor against the
 * shape the module has and copies it in.  Gradients, outputs and forward
 * caches are not saved (gradients load as zero).  A module of a class
 * outside the registry (External: a custom module written in Lua) cannot
 * be saved.  Loading changes nothing process-wide: create() gets a build
 * context (ln_module_build) whose generator, the reader's own, draws the
 * initial weights that the saved ones replace, so lunet.seed's sequence
 * is left alone.
 *
 * Optimizers are saved by name: the name of their description, each
 * hyper-parameter and each state tensor with its name, and their step
 * count.  Their parameters are not saved with them: the bindings section
 * says, for each parameter, which module in the same file holds it and
 * under which name, as the optimizer recorded it when it was built
 * (ln_optim_owner), so that a loader can rebuild the optimizer over the
 * loaded model's parameters.  An optimizer whose parameters are not all
 * held by saved modules loads as its state alone (ln_saved_optim), to be
 * applied to a new optimizer with ln_saved_optim_apply.
 *
 * Hostile input.  Every length is checked against the bytes remaining
 * before anything is allocated, so memory committed by a load is bounded by
 * a small multiple of the file's size; a module is built with a budget of
 * a few times the bytes its record holds for its parameters and buffers
 * (a config claiming a huge layer with tiny weights fails, LN_ENOMEM,
 * before anything that size is allocated).
 */
#ifndef LN_SAVE_H
#define LN_SAVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"
#include "../nn/module.h"
#include "../nn/optim.h"

#define LN_SAVE_MAGIC "LUNET"       /* followed by a NUL: 6 bytes */
#define LN_SAVE_MAGIC_LEN 6
#define LN_SAVE_VERSION 3
#define LN_SAVE_HEADER_LEN 16
#define LN_SAVE_TRAILER_LEN 4
#define LN_SAVE_MAX_DEPTH 128
#define LN_SAVE_NAME_MAX 64  /* class, config, parameter and state names are shorter */

typedef enum ln_save_tag {
	LN_SAVE_NIL = 0,
	LN_SAVE_FALSE = 1,
	LN_SAVE_TRUE = 2,
	LN_SAVE_NUMBER = 3,
	LN_SAVE_INTEGER = 4,
	LN_SAVE_STRING = 5,
	LN_SAVE_TABLE = 6,
	LN_SAVE_TENSOR = 7,
	LN_SAVE_MODULE = 8,
	LN_SAVE_OPTIM = 9,
	LN_SAVE_REF = 10,
	LN_SAVE_TAG_COUNT
} ln_save_tag;

/* "nil", "table", "module"... for messages. */
const char *ln_save_tag_name(ln_save_tag tag);

/* ==== writing ==================================================================
 *
 * A writer accumulates the payload in memory; ln_writer_finish adds the
 * bindings, header and checksum.  The caller walks its values and calls
 * one ln_write_* per value (for a table: begin, na values, hash, nh key
 * and value pairs, end).  Functions that write an object give its id in
 * *id (id may be NULL) so that the caller can write a ref to it later;
 * modules and optimizers are recognised by pointer and written as refs
 * the second time without the caller's help.
 *
 * Errors: LN_ENOMEM; LN_ERANGE for nesting deeper than LN_SAVE_MAX_DEPTH;
 * LN_EARG for what has no saved form (a module outside the registry, a
 * closed or empty tensor).  After an error the writer can only be freed. */

typedef struct ln_writer ln_writer;

ln_status ln_writer_new(ln_writer **out, ln_error *err);
/* Frees the writer and its buffer.  NULL is ignored. */
void ln_writer_free(ln_writer *w);

ln_status ln_write_nil(ln_writer *w, ln_error *err);
ln_status ln_write_boolean(ln_writer *w, bool v, ln_error *err);
ln_status ln_write_number(ln_writer *w, double v, ln_error *err);
ln_status ln_write_integer(ln_writer *w, int64_t v, ln_error *err);
ln_status ln_write_string(ln_writer *w, const char *s, size_t len, ln_error *err);
/* A table of na array values followed (after ln_write_table_hash) by nh
 * key/value pairs; ln_write_table_end closes it. */
ln_status ln_write_table_begin(ln_writer *w, uint64_t na, uint64_t *id, ln_error *err);
ln_status ln_write_table_hash(ln_writer *w, uint64_t nh, ln_error *err);
void ln_write_table_end(ln_writer *w);
/* t's elements in row-major order (any strides); t must not be empty. */
ln_status ln_write_tensor(ln_writer *w, const ln_tensor *t, uint64_t *id, ln_error *err);
/* m and its children, or a ref if m was written before.  A module outside
 * the registry (anywhere in the tree) is LN_EARG, naming its position
 * ("layer 2: ..."). */
ln_status ln_write_module(ln_writer *w, const ln_module *m, uint64_t *id, ln_error *err);
/* The optimizer's configuration, step count and state, or a ref. */
ln_status ln_write_optim(ln_writer *w, ln_optim *opt, uint64_t *id, ln_error *err);
ln_status ln_write_backref(ln_writer *w, uint64_t id, ln_error *err);

/* Appends the bindings, fills in the header and the checksum, and points
 * *data at the complete file image of *size bytes, owned by the writer
 * (valid until ln_writer_free).  No more writes afterwards. */
ln_status ln_writer_finish(ln_writer *w, const void **data, size_t *size, ln_error *err);

/* ==== reading ==================================================================
 *
 * A reader checks a file image whole (magic, version, length, checksum)
 * when it is created, then hands out the values one by one, in the order
 * they were written: ln_reader_peek tells the tag of the next value and
 * the matching ln_read_* consumes it.  Objects read are remembered so that
 * refs can be resolved (ln_read_backref, ln_reader_module).  After the root
 * value, ln_reader_finish reads the bindings.
 *
 * Errors are LN_EFORMAT with a message saying what is wrong ("not a lunet
 * file", "truncated (...)", "checksum mismatch (file corrupted)", "format
 * version 7 is newer than this lunet (1)", "malformed file at byte N:
 * ..."), or LN_ENOMEM.  The messages do not name the file: the caller
 * knows it.  After an error the reader can only be freed. */

typedef struct ln_reader ln_reader;

/* data is borrowed: it must outlive the reader and stay unchanged. */
ln_status ln_reader_new(ln_reader **out, const void *data, size_t size, ln_error *err);
/* Frees the reader, dropping its references to the modules it built and
 * the optimizer records it read.  NULL is ignored. */
void ln_reader_free(ln_reader *r);

ln_status ln_reader_peek(ln_reader *r, ln_save_tag *tag, ln_error *err);

/* nil, false, true, number, integer or string: the next value whatever its
 * kind among these (LN_EFORMAT for any other).  A string points into the
 * file image (not NUL-terminated). */
typedef struct ln_save_atom {
	ln_save_tag tag;
	bool boolean;
	double number;
	int64_t integer;
	const char *str;
	size_t len;
} ln_save_atom;
ln_status ln_read_atom(ln_reader *r, ln_save_atom *out, ln_error *err);
/* A table key: a string, a number (not NaN), an integer or a boolean;
 * anything else is LN_EFORMAT. */
ln_status ln_read_key(ln_reader *r, ln_save_atom *out, ln_error *err);

/* A table: begin gives na (at most the bytes remaining), then na values
 * follow; hash gives nh, then nh key/value pairs; end marks the table
 * complete (refs to it become valid). */
ln_status ln_read_table_begin(ln_reader *r, uint64_t *na, uint64_t *id, ln_error *err);
ln_status ln_read_table_hash(ln_reader *r, uint64_t *nh, ln_error *err);
void ln_read_table_end(ln_reader *r, uint64_t id);

/* A tensor into `out` (empty), which the caller then owns. */
ln_status ln_read_tensor(ln_reader *r, ln_tensor *out, uint64_t *id, ln_error *err);

/* A module and its children.  *out is owned by the reader (retain it to
 * keep it past ln_reader_free); its id is *id, and its descendants that
 * were new in this record have the ids that follow, up to
 * ln_reader_nobjects() - 1. */
ln_status ln_read_module(ln_reader *r, ln_module **out, uint64_t *id, ln_error *err);

typedef struct ln_save_shape {
	int ndim;
	int64_t size[LN_MAX_DIMS];
} ln_save_shape;

/* A saved optimizer: its configuration and state, and (once
 * ln_reader_finish has run) where its parameters are. */
typedef struct ln_saved_optim {
	ln_optim_config config;
	int64_t steps;
	int nparams;
	int nstate;
	const char *state_name[LN_OPTIM_MAX_STATE];  /* the description's names */
	ln_save_shape *shape;  /* per parameter: its shape */
	ln_tensor *state;      /* nparams*nstate tensors, [i*nstate + k], owned */
	ln_module **owner;     /* per parameter: the module holding it, or NULL */
	int *owner_index;      /* per parameter: its index in owner->param */
	bool bound;            /* every parameter has an owner */
} ln_saved_optim;

/* An optimizer record; the record is owned by the reader (*out borrowed). */
ln_status ln_read_optim(ln_reader *r, const ln_saved_optim **out, uint64_t *id, ln_error *err);

/* A ref: *id of an earlier, complete object and its kind (LN_SAVE_TABLE,
 * LN_SAVE_TENSOR, LN_SAVE_MODULE or LN_SAVE_OPTIM). */
ln_status ln_read_backref(ln_reader *r, uint64_t *id, ln_save_tag *kind, ln_error *err);

/* Number of objects read so far (the id the next one will get). */
uint64_t ln_reader_nobjects(const ln_reader *r);
/* The module / optimizer record with this id, or NULL if that object is
 * not one.  Owned by the reader. */
ln_module *ln_reader_module(const ln_reader *r, uint64_t id);
const ln_saved_optim *ln_reader_optim(const ln_reader *r, uint64_t id);

/* After the root value: reads the bindings (filling owner, owner_index and
 * bound of every optimizer record) and checks that nothing follows. */
ln_status ln_reader_finish(ln_reader *r, ln_error *err);

/* Makes opt continue from a saved state: checks kind, parameter count and
 * shapes, that the state tensors are the ones opt has (by name, in any
 * order), then applies the configuration (ln_optim_set_config), copies
 * the state tensors and sets the step count.  Nothing changes on error
 * (LN_EARG for a mismatch naming both sides, or the errors of
 * ln_optim_set_config). */
ln_status ln_saved_optim_apply(const ln_saved_optim *s, ln_optim *opt, ln_error *err);

/* Rebuilds a bound optimizer (s->bound) over its owners' parameters, each
 * owned by its module as when it was saved, and applies its state: the
 * optimizer continues exactly where the saved one stopped.  *out is new
 * (ln_optim_free).  Errors: LN_EARG for an unbound record, those of
 * ln_optim_new and ln_saved_optim_apply. */
ln_status ln_saved_optim_build(const ln_saved_optim *s, ln_optim **out, ln_error *err);

/* ==== convenience =================================================================
 * A file holding one module as its root value. */

ln_status ln_save_module(const char *path, const ln_module *m, ln_error *err);
/* *out is a new reference (release with ln_module_release).  Errors name
 * the path; a root that is not a module is LN_EFORMAT. */
ln_status ln_load_module(const char *path, ln_module **out, ln_error *err);

#endif
