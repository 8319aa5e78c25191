/*
 * text.c -- byte-level text: the vocabulary of a text's bytes and the text
 * as ids (text.h).
 *
 * A text arrives in one or more parts (one per file); both entry points
 * share parts_parse, which makes two passes: the first marks the bytes
 * present and builds the vocabulary, the second writes each byte's id.
 */
#include "text.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "../core/alloc.h"
#include "file.h"

/* One part of a text: n bytes at p (n >= 1). */
typedef struct part {
	const unsigned char *p;
	size_t n;
} part;

/* The vocabulary of the bytes in the parts: ascending byte order. */
static void vocab_build(ln_vocab *v, const part *parts, int nparts)
{
	bool seen[256] = {false};
	for (int k = 0; k < nparts; k++)
		for (size_t i = 0; i < parts[k].n; i++)
			seen[parts[k].p[i]] = true;
	v->n = 0;
	for (int b = 0; b < 256; b++) {
		v->id[b] = 0;
		if (seen[b]) {
			v->byte[v->n] = (unsigned char)b;
			v->id[b] = (int16_t)(++v->n);
		}
	}
}

/* ids of the parts joined end to end into out->ids, a new tensor {total};
 * total >= 1 is the sum of the parts' lengths. */
static ln_status parts_parse(ln_text *out, const part *parts, int nparts, size_t total,
                             ln_error *err)
{
	out->ids = LN_TENSOR_EMPTY;
	if (total > (size_t)INT64_MAX)
		return ln_fail(err, LN_ERANGE, "text of %zu bytes is too long", total);
	vocab_build(&out->vocab, parts, nparts);
	int64_t shape[1] = {(int64_t)total};
	ln_status st = ln_tensor_alloc(&out->ids, 1, shape, err);
	if (st != LN_OK)
		return st;
	float *ids = ln_tensor_data(&out->ids);
	for (int k = 0; k < nparts; k++) {
		for (size_t i = 0; i < parts[k].n; i++)
			ids[i] = (float)out->vocab.id[parts[k].p[i]];
		ids += parts[k].n;
	}
	return LN_OK;
}

ln_status ln_text_parse(ln_text *out, const void *buf, size_t n, ln_error *err)
{
	out->ids = LN_TENSOR_EMPTY;
	if (n == 0)
		return ln_fail(err, LN_EFORMAT, "empty text");
	part p = {buf, n};
	return parts_parse(out, &p, 1, n, err);
}

/* Reads every file into a buffer of its own (all from ln_malloc, freed
 * before returning), then parses them as one text. */
ln_status ln_text_load(ln_text *out, const char *const *paths, int npaths, ln_error *err)
{
	out->ids = LN_TENSOR_EMPTY;
	if (npaths < 1)
		return ln_fail(err, LN_EARG, "no files given");
	part *parts = ln_calloc((size_t)npaths, sizeof *parts);
	if (!parts)
		return ln_fail(err, LN_ENOMEM, "out of memory listing %d files", npaths);
	ln_status st = LN_OK;
	size_t total = 0;
	for (int k = 0; k < npaths && st == LN_OK; k++) {
		void *data;
		st = ln_file_read(paths[k], &data, &parts[k].n, err);
		parts[k].p = data;
		if (st == LN_OK && parts[k].n == 0)
			st = ln_fail(err, LN_EFORMAT, "%s is empty", paths[k]);
		else if (st == LN_OK && parts[k].n > SIZE_MAX - total)
			st = ln_fail(err, LN_ERANGE, "the files hold more than %zu bytes", SIZE_MAX);
		total += parts[k].n;
	}
	if (st == LN_OK)
		st = parts_parse(out, parts, npaths, total, err);
	for (int k = 0; k < npaths; k++)
		ln_free((void *)parts[k].p);
	ln_free(parts);
	return st;
}

ln_status ln_vocab_encode(float *ids, const ln_vocab *v, const unsigned char *s, size_t n,
                          ln_error *err)
{
	for (size_t i = 0; i < n; i++) {
		int id = v->id[s[i]];
		if (id == 0 && s[i] >= 0x20 && s[i] < 0x7f)
			return ln_fail(err, LN_ERANGE, "byte '%c' (0x%02x) at position %zu is not in the "
			               "vocabulary of %d bytes", s[i], s[i], i + 1, v->n);
		if (id == 0)
			return ln_fail(err, LN_ERANGE, "byte 0x%02x at position %zu is not in the "
			               "vocabulary of %d bytes", s[i], i + 1, v->n);
		ids[i] = (float)id;
	}
	return LN_OK;
}

void ln_text_free(ln_text *t)
{
	ln_tensor_release(&t->ids);
}
