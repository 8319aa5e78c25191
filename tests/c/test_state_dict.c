/*
 * test_state_dict.c -- the walk over a module tree's state under PyTorch's
 * names (nn/state_dict.h): the default naming of Sequential, BatchNorm's
 * counter, a class with its own naming hook, custom (External) modules,
 * keys that are too long and a callback that stops the walk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "nn/conv.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "nn/state_dict.h"
#include "testutil.h"

/* What a walk saw: keys joined with spaces, and each entry's details. */
typedef struct seen {
	char keys[2048];
	int n;
	ln_state_entry e[64];
	int stop_at;  /* fail at this entry (1-based), 0: never */
} seen;

static ln_status record(const ln_state_entry *e, void *ctx, ln_error *err)
{
	seen *s = ctx;
	if (s->n == s->stop_at - 1)
		return ln_fail(err, LN_EARG, "stopped at '%s'", e->key);
	if (s->n)
		strcat(s->keys, " ");
	strcat(s->keys, e->key);
	s->e[s->n] = *e;
	s->e[s->n].key = NULL;  /* valid during the call only */
	s->n++;
	return LN_OK;
}

static ln_module *add(ln_module *seq, ln_module *child)
{
	ln_error err;
	assert_int_equal(ln_sequential_add(seq, child, &err), LN_OK);
	ln_module_release(child);
	return child;
}

static ln_module *sequential(void)
{
	ln_module *m;
	ln_error err;
	assert_int_equal(ln_sequential_new(&m, &err), LN_OK);
	return m;
}

/* Sequential{Linear, ReLU, Sequential{Conv2d, BatchNorm}, Linear(no bias)}:
 * PyTorch's keys, in PyTorch's order, each pointing at the module's own
 * tensor. */
static void test_sequential_names(void **state)
{
	(void)state;
	ln_error err;
	ln_module *seq = sequential(), *lin, *relu, *inner, *conv, *bn, *last;
	assert_int_equal(ln_linear_new(&lin, NULL, 3, 4, true, &err), LN_OK);
	add(seq, lin);
	assert_int_equal(ln_activation_new(&relu, "ReLU", 0, &err), LN_OK);
	add(seq, relu);
	inner = add(seq, sequential());
	assert_int_equal(ln_conv2d_new(&conv, NULL, 1, 2, 3, 1, 1, true, &err), LN_OK);
	add(inner, conv);
	assert_int_equal(ln_batchnorm_new(&bn, NULL, 2, &err), LN_OK);
	add(inner, bn);
	assert_int_equal(ln_linear_new(&last, NULL, 4, 2, false, &err), LN_OK);
	add(seq, last);

	seen s = {0};
	assert_int_equal(ln_module_state_walk(seq, record, &s, &err), LN_OK);
	assert_string_equal(s.keys, "0.weight 0.bias 2.0.weight 2.0.bias 2.1.weight 2.1.bias "
	                            "2.1.running_mean 2.1.running_var 2.1.num_batches_tracked "
	                            "3.weight");
	assert_int_equal(s.n, 10);
	assert_true(s.e[0].kind == LN_STATE_TENSOR && s.e[0].owner == lin &&
	            s.e[0].tensor == &lin->param[0]);
	assert_true(s.e[1].tensor == &lin->param[1]);
	assert_true(s.e[2].owner == conv && s.e[2].tensor == &conv->param[0]);
	assert_true(s.e[6].owner == bn && s.e[6].tensor == &bn->buffer[0]);
	assert_true(s.e[7].tensor == &bn->buffer[1]);
	assert_true(s.e[8].kind == LN_STATE_INTEGER && s.e[8].owner == bn && s.e[8].integer);
	assert_true(s.e[9].owner == last && s.e[9].tensor == &last->param[0]);

	/* a module alone: its own names, no prefix */
	memset(&s, 0, sizeof s);
	assert_int_equal(ln_module_state_walk(lin, record, &s, &err), LN_OK);
	assert_string_equal(s.keys, "weight bias");
	ln_module_release(seq);
}

/* num_batches_tracked counts forwards in training mode only. */
static void test_batchnorm_counter(void **state)
{
	(void)state;
	ln_error err;
	ln_module *bn;
	assert_int_equal(ln_batchnorm_new(&bn, NULL, 3, &err), LN_OK);
	seen s = {0};
	assert_int_equal(ln_module_state_walk(bn, record, &s, &err), LN_OK);
	assert_string_equal(s.keys, "weight bias running_mean running_var num_batches_tracked");
	int64_t *count = s.e[4].integer;
	assert_int_equal(*count, 0);
	ln_tensor x;
	tu_tensor_uniform(&x, 2, (int64_t[]){4, 3}, -1, 1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(ln_module_forward(bn, &x, &err), LN_OK);
	assert_int_equal(*count, 3);
	ln_module_set_training(bn, false);
	assert_int_equal(ln_module_forward(bn, &x, &err), LN_OK);
	assert_int_equal(*count, 3);
	/* it is state: written through the entry, it is what the walk reads */
	*count = 41;
	memset(&s, 0, sizeof s);
	assert_int_equal(ln_module_state_walk(bn, record, &s, &err), LN_OK);
	assert_int_equal(*s.e[4].integer, 41);
	ln_tensor_release(&x);
	ln_module_release(bn);
}

/* ---- a class with its own naming ------------------------------------------------------ */

/* Like an attention layer whose output projection is a submodule in
 * PyTorch, holding two children that it names itself. */
static void custom_state(ln_module *m, ln_state_visitor *v)
{
	ln_state_tensor(v, "in_proj_weight", &m->param[0]);
	ln_state_tensor(v, "out_proj.weight", &m->param[1]);
	ln_state_child(v, "encoder", m->children[0]);
	ln_state_child(v, "layers.3", m->children[1]);
}

static const ln_module_class custom_class = {
	.name = "Custom",
	.size = sizeof(ln_module),
	.param_names = {"a", "b", NULL},
	.state = custom_state,
};

static void test_class_hook(void **state)
{
	(void)state;
	ln_error err;
	ln_module *m, *a, *b;
	assert_int_equal(ln_module_alloc(&m, &custom_class, &err), LN_OK);
	assert_int_equal(ln_module_resize_params(m, 2, &err), LN_OK);
	for (int i = 0; i < 2; i++) {
		tu_tensor_uniform(&m->param[i], 1, (int64_t[]){2}, 0, 1);
		tu_tensor_uniform(&m->grad[i], 1, (int64_t[]){2}, 0, 1);
	}
	assert_int_equal(ln_linear_new(&a, NULL, 2, 2, true, &err), LN_OK);
	b = sequential();
	ln_module *bl;
	assert_int_equal(ln_linear_new(&bl, NULL, 2, 1, false, &err), LN_OK);
	add(b, bl);
	m->children = ln_malloc(2 * sizeof *m->children);
	assert_non_null(m->children);
	m->children[0] = a;
	m->children[1] = b;  /* the module owns both references */
	m->nchildren = 2;

	seen s = {0};
	assert_int_equal(ln_module_state_walk(m, record, &s, &err), LN_OK);
	assert_string_equal(s.keys, "in_proj_weight out_proj.weight encoder.weight encoder.bias "
	                            "layers.3.0.weight");
	assert_true(s.e[1].owner == m && s.e[1].tensor == &m->param[1]);
	assert_true(s.e[2].owner == a);
	assert_true(s.e[4].owner == bl);

	/* inside a Sequential, its keys get the position as prefix */
	ln_module *seq = sequential();
	ln_module *relu;
	assert_int_equal(ln_activation_new(&relu, "ReLU", 0, &err), LN_OK);
	add(seq, relu);
	add(seq, m);
	memset(&s, 0, sizeof s);
	assert_int_equal(ln_module_state_walk(seq, record, &s, &err), LN_OK);
	assert_string_equal(s.keys, "1.in_proj_weight 1.out_proj.weight 1.encoder.weight "
	                            "1.encoder.bias 1.layers.3.0.weight");
	ln_module_release(seq);
}

/* ---- custom modules, errors ------------------------------------------------------------ */

static ln_status ext_forward(void *ctx, const ln_tensor *x, ln_tensor *out, ln_error *err)
{
	(void)ctx, (void)err;
	ln_tensor_ref(out, x);
	return LN_OK;
}

static ln_status ext_backward(void *ctx, const ln_tensor *x, const ln_tensor *gy,
                              ln_tensor *grad_input, ln_error *err)
{
	(void)ctx, (void)x, (void)err;
	ln_tensor_ref(grad_input, gy);
	return LN_OK;
}

static const ln_external_ops ext_ops = {.forward = ext_forward, .backward = ext_backward};

/* A module whose state lives outside C is one opaque entry, keyed by its
 * prefix, for the caller to ask. */
static void test_external_is_opaque(void **state)
{
	(void)state;
	ln_error err;
	ln_module *seq = sequential(), *lin, *ext, *inner;
	assert_int_equal(ln_linear_new(&lin, NULL, 2, 2, true, &err), LN_OK);
	add(seq, lin);
	int ctx;
	assert_int_equal(ln_external_new(&ext, &ext_ops, &ctx, &err), LN_OK);
	add(seq, ext);
	inner = add(seq, sequential());
	assert_int_equal(ln_external_new(&ext, &ext_ops, &ctx, &err), LN_OK);
	ln_module *ext2 = add(inner, ext);
	seen s = {0};
	assert_int_equal(ln_module_state_walk(seq, record, &s, &err), LN_OK);
	assert_string_equal(s.keys, "0.weight 0.bias 1 2.0");
	assert_true(s.e[2].kind == LN_STATE_OPAQUE && s.e[2].owner != NULL);
	assert_true(s.e[3].kind == LN_STATE_OPAQUE && s.e[3].owner == ext2);
	assert_null(s.e[3].tensor);
	ln_module_release(seq);
}

/* A key over LN_STATE_KEY_MAX is LN_ERANGE naming it; a callback's
 * failure stops the walk and comes back as is. */
static void test_errors(void **state)
{
	(void)state;
	ln_error err;
	ln_module *root = sequential(), *at = root;
	for (int depth = 0; depth < LN_STATE_KEY_MAX / 2; depth++)
		at = add(at, sequential());
	ln_module *lin;
	assert_int_equal(ln_linear_new(&lin, NULL, 1, 1, true, &err), LN_OK);
	add(at, lin);
	seen s = {0};
	assert_int_equal(ln_module_state_walk(root, record, &s, &err), LN_ERANGE);
	assert_non_null(strstr(err.msg, "state key '0.0.0.0."));
	assert_non_null(strstr(err.msg, "is longer than 255 bytes"));
	assert_int_equal(s.n, 0);
	ln_module_release(root);

	ln_module *bn;
	assert_int_equal(ln_batchnorm_new(&bn, NULL, 2, &err), LN_OK);
	memset(&s, 0, sizeof s);
	s.stop_at = 3;
	assert_int_equal(ln_module_state_walk(bn, record, &s, &err), LN_EARG);
	assert_string_equal(err.msg, "stopped at 'running_mean'");
	assert_int_equal(s.n, 2);  /* nothing after the failure */
	ln_module_release(bn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sequential_names),
		cmocka_unit_test(test_batchnorm_counter),
		cmocka_unit_test(test_class_hook),
		cmocka_unit_test(test_external_is_opaque),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
