/*
 * save.c -- the pieces of the lunet file format (save.h) that are neither
 * the encoder (save_write.c) nor the decoder (save_read.c): the names of
 * the value tags, and a file holding one module.  Files are written and
 * read by file.c.
 */
#include "save.h"

#include "../core/alloc.h"
#include "file.h"
#include "save_internal.h"

static const char *const tag_names[LN_SAVE_TAG_COUNT] = {
	[LN_SAVE_NIL] = "nil",         [LN_SAVE_FALSE] = "false",    [LN_SAVE_TRUE] = "true",
	[LN_SAVE_NUMBER] = "number",   [LN_SAVE_INTEGER] = "integer", [LN_SAVE_STRING] = "string",
	[LN_SAVE_TABLE] = "table",     [LN_SAVE_TENSOR] = "tensor",  [LN_SAVE_MODULE] = "module",
	[LN_SAVE_OPTIM] = "optimizer", [LN_SAVE_REF] = "ref",
};

const char *ln_save_tag_name(ln_save_tag tag)
{
	return (unsigned)tag < LN_SAVE_TAG_COUNT ? tag_names[tag] : "unknown";
}

/* ==== convenience ===================================================================== */

ln_status ln_save_module(const char *path, const ln_module *m, ln_error *err)
{
	ln_writer *w;
	const void *data;
	size_t size;
	ln_status st = ln_writer_new(&w, err);
	if (st != LN_OK)
		return st;
	ln_error e;
	if ((st = ln_write_module(w, m, NULL, &e)) == LN_OK &&
	    (st = ln_writer_finish(w, &data, &size, &e)) == LN_OK)
		st = ln_file_write_atomic(path, data, size, err);
	else
		ln_fail(err, st, "%s: %s", path, e.msg);
	ln_writer_free(w);
	return st;
}

ln_status ln_load_module(const char *path, ln_module **out, ln_error *err)
{
	*out = NULL;
	void *data;
	size_t size;
	ln_status st = ln_file_read(path, &data, &size, err);
	if (st != LN_OK)
		return st;
	ln_reader *r = NULL;
	ln_module *m = NULL;
	uint64_t id;
	ln_save_tag tag;
	ln_error e;
	if ((st = ln_reader_new(&r, data, size, &e)) == LN_OK &&
	    (st = ln_reader_peek(r, &tag, &e)) == LN_OK) {
		if (tag != LN_SAVE_MODULE)
			st = ln_fail(&e, LN_EFORMAT, "the root value is not a module (it is: %s)", ln_save_tag_name(tag));
		else if ((st = ln_read_module(r, &m, &id, &e)) == LN_OK &&
		         (st = ln_reader_finish(r, &e)) == LN_OK) {
			ln_module_retain(m);
			*out = m;
		}
	}
	if (st != LN_OK)
		ln_fail(err, st, "%s: %s", path, e.msg);
	ln_reader_free(r);
	ln_free(data);
	return st;
}
