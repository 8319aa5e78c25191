/*
 * registry.c -- the one list of module classes that can be built by name
 * from a config (the loader's constructors, and the Lua metatables
 * "lunet.nn.<name>"): the table below, then the rows of the activation
 * table (activation.c).  Files store class names, never positions, so the
 * order may change freely.
 *
 * External (layers.h) is deliberately absent: it wraps callbacks that no
 * config can describe, so it can be neither loaded nor saved.
 */
#include <assert.h>
#include <string.h>

#include "conv.h"
#include "graph.h"
#include "layers.h"
#include "module.h"
#include "sequence.h"

enum {
	/* layers.h */
	CLASS_LINEAR,
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
	CLASS_ADAPTIVE_AVGPOOL2D,
	/* layers.h, sequence.h */
	CLASS_LAYERNORM,
	CLASS_EMBEDDING,
	CLASS_RNN,
	CLASS_LSTM,
	CLASS_GRU,
	CLASS_ATTENTION,
	/* graph.h */
	CLASS_GRAPH,
	CLASS_ADD,
	CLASS_MUL,
	CLASS_CONCAT,
	CLASS_RESIDUAL,
	CLASS_COUNT
};

static const ln_module_class *const classes[] = {
	[CLASS_LINEAR] = &ln_linear_class,
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
	[CLASS_ADAPTIVE_AVGPOOL2D] = &ln_adaptive_avgpool2d_class,
	/* ---- sequences (sequence.h) ---- */
	[CLASS_LAYERNORM] = &ln_layernorm_class,
	[CLASS_EMBEDDING] = &ln_embedding_class,
	[CLASS_RNN] = &ln_rnn_class,
	[CLASS_LSTM] = &ln_lstm_class,
	[CLASS_GRU] = &ln_gru_class,
	[CLASS_ATTENTION] = &ln_attention_class,
	/* ---- graphs and joins (graph.h) ---- */
	[CLASS_GRAPH] = &ln_graph_class,
	[CLASS_ADD] = &ln_add_class,
	[CLASS_MUL] = &ln_mul_class,
	[CLASS_CONCAT] = &ln_concat_class,
	[CLASS_RESIDUAL] = &ln_residual_class,
};

static_assert(sizeof classes / sizeof classes[0] == CLASS_COUNT,
              "registry: one entry per class in the enum");

int ln_module_class_count(void)
{
	int nact;
	ln_activation_defs(&nact);
	return CLASS_COUNT + nact;
}

const ln_module_class *ln_module_class_at(int i)
{
	int nact;
	const ln_activation_def *act = ln_activation_defs(&nact);
	assert(i >= 0 && i < CLASS_COUNT + nact);
	return i < CLASS_COUNT ? classes[i] : &act[i - CLASS_COUNT].cls;
}

const ln_module_class *ln_module_class_find(const char *name)
{
	for (int i = 0, n = ln_module_class_count(); i < n; i++) {
		const ln_module_class *cls = ln_module_class_at(i);
		if (strcmp(cls->name, name) == 0)
			return cls;
	}
	return NULL;
}
