/*
 * test_host.c -- a C host of lunet.h's model API, built against an
 * installed lunet with `pkg-config --cflags --libs lunet cmocka` only (no
 * path into the source tree).  Run as `test_host FIXTURES_DIR` with the
 * files of make_fixtures.lua: every result is compared with the output
 * lunet itself gave for the same model and input, bit for bit, and every
 * error status is reached with its message checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lunet.h>

static const char *fixtures;

static const char *fx(const char *name)
{
	static char buf[4][1024];
	static int which;
	which = (which + 1) % 4;
	snprintf(buf[which], sizeof buf[which], "%s/%s", fixtures, name);
	return buf[which];
}

/* The n floats of a fixture file (must be exactly n). */
static float *read_floats(const char *name, size_t n)
{
	FILE *f = fopen(fx(name), "rb");
	assert_non_null(f);
	float *v = malloc(n * sizeof *v + 1);
	assert_non_null(v);
	assert_int_equal(fread(v, sizeof *v, n, f), n);
	assert_int_equal(fgetc(f), EOF);
	fclose(f);
	return v;
}

static void expect_message(const lunet_error *err, const char *want)
{
	if (!strstr(err->message, want))
		fail_msg("message '%s' lacks '%s'", err->message, want);
}

/* Loads (with weights when given) and expects success. */
static lunet_model *load_ok(const char *arch, const char *weights)
{
	lunet_model *m = NULL;
	lunet_error err;
	lunet_status s = weights ? lunet_model_load_safetensors(&m, fx(arch), fx(weights), &err)
	                         : lunet_model_load(&m, fx(arch), &err);
	if (s != LUNET_OK)
		fail_msg("loading %s: %s: %s", arch, lunet_status_name(s), err.message);
	assert_non_null(m);
	return m;
}

/* Runs m on the n_in floats of x_name shaped `shape` and compares the
 * output with y_name ({rows, 10}). */
static void forward_matches(lunet_model *m, const char *x_name, int ndim, const int64_t *shape,
                            const char *y_name, int64_t rows)
{
	size_t nin = 1;
	for (int d = 0; d < ndim; d++)
		nin *= (size_t)shape[d];
	float *x = read_floats(x_name, nin), *want = read_floats(y_name, (size_t)rows * 10);
	float y[64];
	int ondim = 0;
	int64_t oshape[LUNET_MAX_DIMS];
	lunet_error err;
	lunet_status s = lunet_model_forward(m, x, ndim, shape, y, 64, &ondim, oshape, &err);
	if (s != LUNET_OK)
		fail_msg("forward: %s: %s", lunet_status_name(s), err.message);
	assert_int_equal(ondim, 2);
	assert_int_equal(oshape[0], rows);
	assert_int_equal(oshape[1], 10);
	assert_memory_equal(y, want, (size_t)rows * 10 * sizeof(float));
	free(x);
	free(want);
}

static const int64_t mlp_shape[2] = {3, 4};
static const int64_t cnn_shape[4] = {2, 1, 28, 28};

/* ---- loading ---------------------------------------------------------------------- */

static void test_mlp_file(void **state)
{
	(void)state;
	lunet_model *m = load_ok("mlp.lunet", NULL);
	forward_matches(m, "mlp_x.f32", 2, mlp_shape, "mlp_y.f32", 3);
	forward_matches(m, "mlp_x.f32", 2, mlp_shape, "mlp_y.f32", 3);  /* again: same result */
	lunet_model_free(m);
}

static void test_checkpoint_file(void **state)
{
	(void)state;
	lunet_model *m = load_ok("ckpt.lunet", NULL);
	forward_matches(m, "mlp_x.f32", 2, mlp_shape, "mlp_y.f32", 3);
	lunet_model_free(m);
}

static void test_safetensors_weights(void **state)
{
	(void)state;
	lunet_model *m = load_ok("cnn_arch.lunet", "cnn.safetensors");
	forward_matches(m, "cnn_x.f32", 4, cnn_shape, "cnn_y.f32", 2);
	lunet_model_free(m);

	/* the architecture alone has other weights: the file's were used */
	m = load_ok("cnn_arch.lunet", NULL);
	float *x = read_floats("cnn_x.f32", 2 * 28 * 28), *want = read_floats("cnn_y.f32", 20);
	float y[20];
	int nd;
	int64_t sh[LUNET_MAX_DIMS];
	assert_int_equal(lunet_model_forward(m, x, 4, cnn_shape, y, 20, &nd, sh, NULL), LUNET_OK);
	assert_true(memcmp(y, want, sizeof y) != 0);
	free(x);
	free(want);
	lunet_model_free(m);
}

/* ---- forward: the output's shape, buffers, errors ---------------------------------- */

static void test_output_shape_query(void **state)
{
	(void)state;
	lunet_model *m = load_ok("mlp.lunet", NULL);
	float x[4 * 7] = {0};
	const int64_t shape[2] = {7, 4};
	int nd = 0;
	int64_t sh[LUNET_MAX_DIMS] = {0};
	lunet_error err;
	assert_int_equal(lunet_model_forward(m, x, 2, shape, NULL, 0, &nd, sh, &err), LUNET_OK);
	assert_int_equal(nd, 2);
	assert_int_equal(sh[0], 7);
	assert_int_equal(sh[1], 10);

	float y[69];
	assert_int_equal(lunet_model_forward(m, x, 2, shape, y, 69, &nd, sh, &err), LUNET_ESPACE);
	assert_int_equal(err.status, LUNET_ESPACE);
	expect_message(&err, "lunet_model_forward: the output {7,10} needs 70 floats, the buffer "
	                     "holds 69");
	assert_int_equal(sh[1], 10);
	lunet_model_free(m);
}

static void test_forward_errors(void **state)
{
	(void)state;
	lunet_model *m = load_ok("mlp.lunet", NULL);
	float x[15] = {0}, y[64];
	int nd;
	int64_t sh[LUNET_MAX_DIMS];
	lunet_error err;

	const int64_t wrong[2] = {3, 5};
	assert_int_equal(lunet_model_forward(m, x, 2, wrong, y, 64, &nd, sh, &err), LUNET_ESHAPE);
	expect_message(&err, "lunet_model_forward: ");
	expect_message(&err, "expected input of shape {N,4}, got {3,5}");

	assert_int_equal(lunet_model_forward(NULL, x, 2, mlp_shape, y, 64, &nd, sh, &err), LUNET_EARG);
	expect_message(&err, "model is NULL");
	assert_int_equal(lunet_model_forward(m, NULL, 2, mlp_shape, y, 64, &nd, sh, &err), LUNET_EARG);
	expect_message(&err, "input is NULL");
	assert_int_equal(lunet_model_forward(m, x, 2, NULL, y, 64, &nd, sh, &err), LUNET_EARG);
	assert_int_equal(lunet_model_forward(m, x, 2, mlp_shape, y, 64, NULL, sh, &err), LUNET_EARG);
	assert_int_equal(lunet_model_forward(m, x, 2, mlp_shape, y, 64, &nd, NULL, &err), LUNET_EARG);
	assert_int_equal(lunet_model_forward(m, x, 2, mlp_shape, NULL, 64, &nd, sh, &err), LUNET_EARG);
	expect_message(&err, "output is NULL with a capacity of 64");
	assert_int_equal(lunet_model_forward(m, x, 0, mlp_shape, y, 64, &nd, sh, &err), LUNET_EARG);
	expect_message(&err, "ndim must be in 1..8, got 0");
	assert_int_equal(lunet_model_forward(m, x, 9, mlp_shape, y, 64, &nd, sh, &err), LUNET_EARG);
	const int64_t zero[2] = {3, 0};
	assert_int_equal(lunet_model_forward(m, x, 2, zero, y, 64, &nd, sh, &err), LUNET_EARG);
	expect_message(&err, "shape[1] must be >= 1, got 0");
	/* err may be NULL */
	assert_int_equal(lunet_model_forward(m, x, 2, wrong, y, 64, &nd, sh, NULL), LUNET_ESHAPE);

	/* still usable after every error */
	forward_matches(m, "mlp_x.f32", 2, mlp_shape, "mlp_y.f32", 3);
	lunet_model_free(m);
	lunet_model_free(NULL);
}

/* ---- load errors --------------------------------------------------------------------- */

static void load_fails(const char *arch, const char *weights, lunet_status want, const char *text)
{
	lunet_model *m = (lunet_model *)&m;  /* must come back NULL */
	lunet_error err;
	lunet_status s = weights ? lunet_model_load_safetensors(&m, arch, weights, &err)
	                         : lunet_model_load(&m, arch, &err);
	if (s != want)
		fail_msg("loading %s: expected %s, got %s: %s", arch, lunet_status_name(want),
		         lunet_status_name(s), err.message);
	assert_int_equal(err.status, want);
	assert_null(m);
	expect_message(&err, text);
}

static void test_load_errors(void **state)
{
	(void)state;
	load_fails(fx("no-such-file"), NULL, LUNET_EIO, "cannot open: No such file or directory");
	load_fails(fx("no-such-file"), NULL, LUNET_EIO, "lunet_model_load: ");
	load_fails(fixtures, NULL, LUNET_EIO, "not a regular file");
	load_fails(fx("truncated.lunet"), NULL, LUNET_EFORMAT, "truncated");
	load_fails(fx("nomodel.lunet"), NULL, LUNET_EFORMAT,
	           "holds no model (a table; expected a module, or a table with the module in the "
	           "field 'model'");
	load_fails(fx("cnn.safetensors"), NULL, LUNET_EFORMAT, "not a lunet file");
	load_fails(fx("cnn_arch.lunet"), fx("mlp.lunet"), LUNET_EFORMAT,
	           "lunet_model_load_safetensors: lunet.load_safetensors: ");
	load_fails(fx("cnn_arch.lunet"), fx("no-such-file"), LUNET_EIO, "no-such-file: cannot open");
	load_fails(fx("cnn_arch.lunet"), fx("cnn_other.safetensors"), LUNET_EMISMATCH,
	           "0.weight: shape {4,1,3,3} in the model, {5,1,3,3} in the dict");
	load_fails(fx("mlp.lunet"), fx("cnn.safetensors"), LUNET_EMISMATCH, "missing key");
	load_fails(NULL, NULL, LUNET_EARG, "path is NULL");
	lunet_model *m = NULL;
	lunet_error err;
	assert_int_equal(lunet_model_load_safetensors(&m, fx("cnn_arch.lunet"), NULL, &err),
	                 LUNET_EARG);
	expect_message(&err, "weights_path is NULL");
	assert_int_equal(lunet_model_load(NULL, fx("mlp.lunet"), &err), LUNET_EARG);
	assert_int_equal(lunet_model_load(&m, fx("no-such-file"), NULL), LUNET_EIO);  /* err NULL */
	assert_null(m);
}

static void test_status_names(void **state)
{
	(void)state;
	assert_string_equal(lunet_status_name(LUNET_OK), "LUNET_OK");
	assert_string_equal(lunet_status_name(LUNET_EMISMATCH), "LUNET_EMISMATCH");
	assert_string_equal(lunet_status_name(LUNET_EMODEL), "LUNET_EMODEL");
	assert_string_equal(lunet_status_name((lunet_status)99), "LUNET_(unknown status)");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test_host FIXTURES_DIR\n");
		return 2;
	}
	fixtures = argv[1];
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mlp_file),
		cmocka_unit_test(test_checkpoint_file),
		cmocka_unit_test(test_safetensors_weights),
		cmocka_unit_test(test_output_shape_query),
		cmocka_unit_test(test_forward_errors),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_status_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
