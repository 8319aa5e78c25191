/*
 * registry.c -- the one table of module classes that can be built by
 * name from a config (the loader's constructors, and the Lua metatables
 * "lunet.nn.<name>").  Files store class names, never positions, so the
 * order below may change freely.
 *
 * External (layers.h) is deliberately absent: it wraps callbacks that no
 * config can describe, so it can be neither loaded nor saved.
 */
#include <assert.h>
#include <string.h>

#include "conv.h"
#include "layers.h"
#include "module.h"

enum {
	/* layers.h */
	CLASS_LINEAR,
	CLASS_IDENTITY,
	CLASS_SIGMOID,
	CLASS_TANH,
	CLASS_RELU,
	CLASS_LEAKY_RELU,
	CLASS_SOFTMAX,
	CLASS_LOG_SOFTMAX,
	CLASS_DROPOUT,
	CLASS_FLATTEN,
	CLASS_SEQUENTIAL,
	/* conv.h */
	CLASS_CONV2D,
	CLASS_MAXPOOL2D,
	CLASS_AVGPOOL2D,
	CLASS_BATCHNORM,
	CLASS_COUNT
};

static const ln_module_class *const classes[] = {
	[CLASS_LINEAR] = &ln_linear_class,
	[CLASS_IDENTITY] = &ln_identity_class,
	[CLASS_SIGMOID] = &ln_sigmoid_class,
	[CLASS_TANH] = &ln_tanh_class,
	[CLASS_RELU] = &ln_relu_class,
	[CLASS_LEAKY_RELU] = &ln_leaky_relu_class,
	[CLASS_SOFTMAX] = &ln_softmax_class,
	[CLASS_LOG_SOFTMAX] = &ln_log_softmax_class,
	[CLASS_DROPOUT] = &ln_dropout_class,
	[CLASS_FLATTEN] = &ln_flatten_class,
	[CLASS_SEQUENTIAL] = &ln_sequential_class,
	/* ---- convolutional layers (conv.h) ---- */
	[CLASS_CONV2D] = &ln_conv2d_class,
	[CLASS_MAXPOOL2D] = &ln_maxpool2d_class,
	[CLASS_AVGPOOL2D] = &ln_avgpool2d_class,
	[CLASS_BATCHNORM] = &ln_batchnorm_class,
};

static_assert(sizeof classes / sizeof classes[0] == CLASS_COUNT,
              "registry: one entry per class in the enum");

const ln_module_class *ln_module_class_find(const char *name)
{
	for (int i = 0; i < CLASS_COUNT; i++)
		if (strcmp(classes[i]->name, name) == 0)
			return classes[i];
	return NULL;
}

const ln_module_class *const *ln_module_classes(int *count)
{
	*count = CLASS_COUNT;
	return classes;
}
