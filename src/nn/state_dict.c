/*
 * state_dict.c -- the walk that joins the names each class gives its state
 * (its `state` hook, or the default) into full keys (state_dict.h).
 *
 * The visitor carries one key buffer: the prefix of the module being
 * named ("2.0." inside the first child of the third child) followed, for
 * the entry being emitted, by its own name.  Entering a child appends to
 * the prefix and leaving it truncates back, so the walk allocates nothing.
 */
#include "state_dict.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct ln_state_visitor {
	ln_state_fn fn;
	void *ctx;
	ln_error *err;
	ln_status st;            /* the first failure; later calls do nothing */
	ln_module *owner;        /* the module being named */
	size_t len;              /* key[0..len) is its prefix, dot included */
	char key[LN_STATE_KEY_MAX];
};

/* Appends s to the key after the prefix; false (and st set) when the
 * whole does not fit. */
static bool append(ln_state_visitor *v, const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);
	if (v->len + n + t >= sizeof v->key) {
		v->key[v->len] = '\0';
		v->st = ln_fail(v->err, LN_ERANGE, "state key '%s%s%s' is longer than %d bytes", v->key,
		                s, tail, LN_STATE_KEY_MAX - 1);
		return false;
	}
	memcpy(v->key + v->len, s, n);
	memcpy(v->key + v->len + n, tail, t + 1);
	return true;
}

static void emit(ln_state_visitor *v, ln_state_entry *e)
{
	e->key = v->key;
	e->owner = v->owner;
	v->st = v->fn(e, v->ctx, v->err);
}

void ln_state_tensor(ln_state_visitor *v, const char *name, ln_tensor *t)
{
	if (v->st != LN_OK || !append(v, name, ""))
		return;
	emit(v, &(ln_state_entry){.kind = LN_STATE_TENSOR, .tensor = t});
}

void ln_state_integer(ln_state_visitor *v, const char *name, int64_t *value)
{
	if (v->st != LN_OK || !append(v, name, ""))
		return;
	emit(v, &(ln_state_entry){.kind = LN_STATE_INTEGER, .integer = value});
}

void ln_state_opaque(ln_state_visitor *v, ln_module *m)
{
	if (v->st != LN_OK)
		return;
	/* the prefix without its dot: the key under which m's entries go */
	v->key[v->len ? v->len - 1 : 0] = '\0';
	ln_module *owner = v->owner;
	v->owner = m;
	emit(v, &(ln_state_entry){.kind = LN_STATE_OPAQUE});
	v->owner = owner;
}

static void visit(ln_module *m, ln_state_visitor *v)
{
	if (m->cls->state)
		m->cls->state(m, v);
	else
		ln_state_default(m, v);
}

void ln_state_child(ln_state_visitor *v, const char *name, ln_module *child)
{
	if (v->st != LN_OK || !append(v, name, "."))
		return;
	size_t len = v->len;
	ln_module *owner = v->owner;
	v->len += strlen(name) + 1;
	v->owner = child;
	visit(child, v);
	v->len = len;
	v->owner = owner;
}

void ln_state_default(ln_module *m, ln_state_visitor *v)
{
	char pname[LN_PARAM_NAME_MAX];
	for (int i = 0; i < m->nparams; i++)
		ln_state_tensor(v, ln_module_param_name(m, i, pname), &m->param[i]);
	for (int i = 0; i < m->nbuffers && m->cls->buffer_names[i]; i++)
		ln_state_tensor(v, m->cls->buffer_names[i], &m->buffer[i]);
	for (int i = 0; i < m->nchildren; i++) {
		char name[24];
		snprintf(name, sizeof name, "%d", i);
		ln_state_child(v, name, m->children[i]);
	}
}

ln_status ln_module_state_walk(ln_module *m, ln_state_fn fn, void *ctx, ln_error *err)
{
	ln_state_visitor v = {.fn = fn, .ctx = ctx, .err = err, .st = LN_OK, .owner = m, .len = 0};
	v.key[0] = '\0';
	visit(m, &v);
	return v.st;
}
