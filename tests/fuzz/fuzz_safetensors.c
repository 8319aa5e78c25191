/*
 * fuzz_safetensors.c -- the safetensors reader, ln_safetensors_parse
 * (src/io/safetensors.c), on arbitrary bytes, and lunet.load_safetensors
 * (src/lua/linterop.c) on the same bytes as a file.
 *
 * Input: the file image itself.
 *
 * Oracles:
 *   - the parser either fails with LN_EFORMAT or LN_ENOMEM and a message,
 *     or returns tensors whose data lie inside the buffer, tile the data
 *     section, and whose sizes are numel times the dtype's size;
 *   - what parses encodes again (as F32 tensors and scalars, with the same
 *     metadata) and parses back to the same names, shapes and values
 *     (converted to float, bit for bit but for NaN payloads);
 *   - lunet.load_safetensors succeeds exactly when the parse does and a
 *     tensor has no zero size (or fails with an error naming itself);
 *   - nothing of lunet's allocator stays live afterwards.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "core/alloc.h"
#include "fuzz.h"
#include "io/safetensors.h"

#define MAX_FUZZ_INPUT ((size_t)1 << 20)

static int same_float(float a, float b)
{
	return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

/* Checks the invariants of a parse result against the buffer. */
static void check_parse(const ln_safetensors *f, const uint8_t *buf, size_t size)
{
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | buf[i];
	const uint8_t *start = buf + 8 + hlen, *at = start;
	for (size_t i = 0; i < f->ntensors; i++) {
		const ln_st_tensor *t = &f->tensors[i];
		uint64_t n = 1;
		for (int d = 0; d < t->ndim; d++)
			n *= (uint64_t)t->shape[d];
		FUZZ_CHECK(n == t->numel, "tensor %s: numel %llu, shape gives %llu", t->name,
		           (unsigned long long)t->numel, (unsigned long long)n);
		FUZZ_CHECK(t->data == at, "tensor %s does not start where the previous one ends",
		           t->name);
		at += t->numel * ln_st_dtype_size(t->dtype);
		FUZZ_CHECK(at <= buf + size, "tensor %s ends past the buffer", t->name);
	}
	FUZZ_CHECK(at == buf + size, "the tensors end %td bytes before the end of the file",
	           (buf + size) - at);
}

/* Encodes f again (F32 tensors, scalars as numbers or integers) and checks
 * that it parses back to the same contents. */
static void check_roundtrip(const ln_safetensors *f)
{
	ln_st_item *items = calloc(f->ntensors + 1, sizeof *items);
	ln_tensor *tensors = calloc(f->ntensors + 1, sizeof *tensors);
	ln_error err;
	int skip = 0;
	for (size_t i = 0; i < f->ntensors && !skip; i++) {
		const ln_st_tensor *t = &f->tensors[i];
		items[i].name = t->name;
		if (t->ndim == 0) {
			items[i].is_integer = t->dtype == LN_ST_I64;
			if (items[i].is_integer)
				items[i].integer = ln_st_scalar_integer(t);
			else
				items[i].number = ln_st_scalar_number(t);
			continue;
		}
		if (t->numel == 0) {
			skip = 1;  /* lunet has no empty tensors: nothing to encode */
			break;
		}
		if (ln_tensor_alloc(&tensors[i], t->ndim, t->shape, &err) != LN_OK) {
			FUZZ_CHECK(err.code == LN_ENOMEM || err.code == LN_ERANGE, "%s", err.msg);
			skip = 1;
			break;
		}
		ln_st_to_float(ln_tensor_data(&tensors[i]), t);
		items[i].tensor = &tensors[i];
	}
	void *img = NULL;
	size_t isize = 0;
	if (!skip) {
		ln_status st = ln_safetensors_encode(&img, &isize, items, f->ntensors, f->meta, f->nmeta,
		                                     &err);
		if (st == LN_OK) {
			ln_safetensors *g = NULL;
			st = ln_safetensors_parse(&g, img, isize, &err);
			FUZZ_CHECK(st == LN_OK, "an encoded file does not parse: %s", err.msg);
			FUZZ_CHECK(g->ntensors == f->ntensors && g->nmeta == f->nmeta,
			           "%zu tensors and %zu metadata entries, then %zu and %zu", f->ntensors,
			           f->nmeta, g->ntensors, g->nmeta);
			for (size_t i = 0; i < g->nmeta; i++)
				FUZZ_CHECK(strcmp(g->meta[i].key, f->meta[i].key) == 0 &&
				           strcmp(g->meta[i].value, f->meta[i].value) == 0,
				           "metadata entry %zu changed", i);
			for (size_t j = 0; j < g->ntensors; j++) {
				const ln_st_tensor *b = &g->tensors[j];
				size_t i = 0;
				while (i < f->ntensors && strcmp(f->tensors[i].name, b->name) != 0)
					i++;
				FUZZ_CHECK(i < f->ntensors, "tensor '%s' appeared", b->name);
				const ln_st_tensor *a = &f->tensors[i];
				FUZZ_CHECK(a->ndim == b->ndim && a->numel == b->numel &&
				           memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]) == 0,
				           "tensor '%s' changed shape", a->name);
				if (a->ndim == 0 && a->dtype == LN_ST_I64) {
					FUZZ_CHECK(b->dtype == LN_ST_I64 &&
					           ln_st_scalar_integer(a) == ln_st_scalar_integer(b),
					           "integer '%s' changed", a->name);
					continue;
				}
				float *va = malloc(a->numel * sizeof *va + 1);
				float *vb = malloc(b->numel * sizeof *vb + 1);
				ln_st_to_float(va, a);
				ln_st_to_float(vb, b);
				for (uint64_t k = 0; k < a->numel; k++)
					FUZZ_CHECK(same_float(va[k], vb[k]), "tensor '%s' element %llu: %.9g, then %.9g",
					           a->name, (unsigned long long)k, va[k], vb[k]);
				free(va);
				free(vb);
			}
			ln_safetensors_free(g);
			ln_free(img);
		} else {
			/* names that are not UTF-8 are refused by the encoder alone */
			FUZZ_CHECK(st == LN_EARG || st == LN_ERANGE || st == LN_ENOMEM, "encode: %s",
			           err.msg);
		}
	}
	for (size_t i = 0; i < f->ntensors; i++)
		ln_tensor_release(&tensors[i]);
	free(tensors);
	free(items);
}

/* lunet.load_safetensors on the same bytes: it succeeds when parsing
 * does (and no tensor is empty), else fails naming itself. */
static void check_lua(const uint8_t *data, size_t size, int parsed, int has_empty)
{
	lua_State *L = fuzz_lua();
	lua_getglobal(L, "lunet");
	lua_getfield(L, -1, "load_safetensors");
	lua_remove(L, -2);
	lua_pushstring(L, fuzz_file(data, size));
	int rc = lua_pcall(L, 1, 2, 0);
	if (rc == LUA_OK) {
		FUZZ_CHECK(parsed && !has_empty, "lunet.load_safetensors accepted what the parser refuses");
		FUZZ_CHECK(lua_istable(L, -2) && lua_istable(L, -1), "results are not tables");
		lua_pop(L, 2);
	} else {
		const char *msg = lua_tostring(L, -1);
		FUZZ_CHECK(msg && strncmp(msg, "lunet.load_safetensors: ", 24) == 0,
		           "error without the function's name: %s", msg ? msg : "(not a string)");
		FUZZ_CHECK(!parsed || has_empty || strstr(msg, "out of memory") ||
		           strstr(msg, "allocation limit"),
		           "lunet.load_safetensors refused what the parser accepts: %s", msg);
		lua_pop(L, 1);
	}
	fuzz_lua_done(L);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > MAX_FUZZ_INPUT)
		return 0;
	fuzz_init();
	uint64_t live = fuzz_live_bytes();
	ln_safetensors *f = NULL;
	ln_error err;
	ln_status st = ln_safetensors_parse(&f, data, size, &err);
	int has_empty = 0;
	if (st == LN_OK) {
		check_parse(f, data, size);
		for (size_t i = 0; i < f->ntensors; i++)
			if (f->tensors[i].numel == 0)
				has_empty = 1;
		check_roundtrip(f);
		ln_safetensors_free(f);
	} else {
		FUZZ_CHECK(f == NULL, "a failed parse left a result");
		FUZZ_CHECK(st == LN_EFORMAT || st == LN_ENOMEM, "status %s: %s", ln_status_name(st),
		           err.msg);
		FUZZ_CHECK(err.msg[0] != '\0', "no message");
	}
	fuzz_check_live(live, "ln_safetensors_parse");
	check_lua(data, size, st == LN_OK, has_empty);
	return 0;
}
