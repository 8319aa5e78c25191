/*
 * test_text.c -- byte-level text (io/text.h): the vocabulary and ids of a
 * byte buffer, worked out by hand; several files joined; every byte value;
 * encoding; the errors (empty text, missing, empty and directory files);
 * and allocation failures at every step, without leaks.
 */
#define _DEFAULT_SOURCE  /* mkdtemp */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/tensor.h"
#include "io/text.h"

static char tmpdir[256];

/* Full path of a file in the temp dir (static buffers: two at a time). */
static const char *tpath(const char *name)
{
	static char buf[2][512];
	static int which;
	which ^= 1;
	snprintf(buf[which], sizeof buf[which], "%s/%s", tmpdir, name);
	return buf[which];
}

static void write_file(const char *name, const void *data, size_t n)
{
	FILE *f = fopen(tpath(name), "wb");
	assert_non_null(f);
	if (n)
		assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* Checks that t holds exactly the ids want[0..n-1]. */
static void expect_ids(const ln_text *t, const float *want, int64_t n)
{
	assert_int_equal(t->ids.ndim, 1);
	assert_int_equal(t->ids.shape[0], n);
	for (int64_t i = 0; i < n; i++)
		assert_float_equal(ln_tensor_data(&t->ids)[i], want[i], 0);
}

/* "baab\n": the bytes present are '\n' (10), 'a' (97), 'b' (98), ids 1..3
 * in that order. */
static void test_parse_by_hand(void **state)
{
	ln_text t;
	ln_error err;
	assert_int_equal(ln_text_parse(&t, "baab\n", 5, &err), LN_OK);
	assert_int_equal(t.vocab.n, 3);
	assert_int_equal(t.vocab.byte[0], '\n');
	assert_int_equal(t.vocab.byte[1], 'a');
	assert_int_equal(t.vocab.byte[2], 'b');
	assert_int_equal(t.vocab.id['\n'], 1);
	assert_int_equal(t.vocab.id['a'], 2);
	assert_int_equal(t.vocab.id['b'], 3);
	assert_int_equal(t.vocab.id['c'], 0);
	assert_int_equal(t.vocab.id[0], 0);
	expect_ids(&t, (const float[]){3, 2, 2, 3, 1}, 5);
	ln_text_free(&t);
	ln_text_free(&t);  /* idempotent */
}

/* Every byte value, 0 and 255 included, in descending order: ids 256..1. */
static void test_parse_all_bytes(void **state)
{
	unsigned char buf[256];
	float want[256];
	for (int i = 0; i < 256; i++) {
		buf[i] = (unsigned char)(255 - i);
		want[i] = (float)(256 - i);
	}
	ln_text t;
	assert_int_equal(ln_text_parse(&t, buf, sizeof buf, NULL), LN_OK);
	assert_int_equal(t.vocab.n, 256);
	for (int b = 0; b < 256; b++) {
		assert_int_equal(t.vocab.byte[b], b);
		assert_int_equal(t.vocab.id[b], b + 1);
	}
	expect_ids(&t, want, 256);
	ln_text_free(&t);
}

static void test_parse_empty(void **state)
{
	ln_text t;
	ln_error err;
	assert_int_equal(ln_text_parse(&t, "", 0, &err), LN_EFORMAT);
	assert_string_equal(err.msg, "empty text");
	assert_true(ln_tensor_is_empty(&t.ids));
	ln_text_free(&t);
}

/* Two files joined: the vocabulary is that of both ("xy" + "zx\0"). */
static void test_load_joins_files(void **state)
{
	write_file("one", "xy", 2);
	write_file("two", "zx\0", 3);
	const char *paths[] = {tpath("one"), tpath("two")};
	ln_text t;
	ln_error err;
	assert_int_equal(ln_text_load(&t, paths, 2, &err), LN_OK);
	assert_int_equal(t.vocab.n, 4);  /* \0 x y z */
	expect_ids(&t, (const float[]){2, 3, 4, 2, 1}, 5);
	ln_text_free(&t);
	/* the same file twice */
	const char *twice[] = {tpath("one"), tpath("one")};
	assert_int_equal(ln_text_load(&t, twice, 2, &err), LN_OK);
	expect_ids(&t, (const float[]){1, 2, 1, 2}, 4);
	ln_text_free(&t);
}

/* Checks that loading paths fails with code and a message holding want. */
static void expect_load_error(const char *const *paths, int n, ln_status code, const char *want)
{
	ln_text t;
	ln_error err;
	assert_int_equal(ln_text_load(&t, paths, n, &err), code);
	if (!strstr(err.msg, want))
		fail_msg("message '%s' lacks '%s'", err.msg, want);
	assert_true(ln_tensor_is_empty(&t.ids));
}

static void test_load_errors(void **state)
{
	char msg[600];
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	write_file("ok", "abc", 3);
	write_file("empty", "", 0);
	assert_int_equal(mkdir(tpath("dir"), 0700), 0);

	snprintf(msg, sizeof msg, "%s: cannot open: %s", tpath("nowhere"), strerror(ENOENT));
	expect_load_error((const char *[]){tpath("nowhere")}, 1, LN_EIO, msg);
	/* a missing file after a good one: the good one's buffer is freed */
	expect_load_error((const char *[]){tpath("ok"), tpath("nowhere")}, 2, LN_EIO, msg);
	snprintf(msg, sizeof msg, "%s is empty", tpath("empty"));
	expect_load_error((const char *[]){tpath("ok"), tpath("empty")}, 2, LN_EFORMAT, msg);
	snprintf(msg, sizeof msg, "%s: is a directory", tpath("dir"));
	expect_load_error((const char *[]){tpath("dir")}, 1, LN_EIO, msg);
	expect_load_error((const char *[]){""}, 1, LN_EIO, "empty path");
	expect_load_error(NULL, 0, LN_EARG, "no files given");
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
}

static void test_encode(void **state)
{
	ln_text t;
	ln_error err;
	assert_int_equal(ln_text_parse(&t, "hello\x01", 6, &err), LN_OK);
	float ids[8];
	assert_int_equal(ln_vocab_encode(ids, &t.vocab, (const unsigned char *)"olleh", 5, &err), LN_OK);
	const float want[] = {5, 4, 4, 2, 3};  /* ids: \x01 1, e 2, h 3, l 4, o 5 */
	for (int i = 0; i < 5; i++)
		assert_float_equal(ids[i], want[i], 0);
	assert_int_equal(ln_vocab_encode(ids, &t.vocab, (const unsigned char *)"heZ", 3, &err),
	                 LN_ERANGE);
	assert_string_equal(err.msg,
	                    "byte 'Z' (0x5a) at position 3 is not in the vocabulary of 5 bytes");
	assert_int_equal(ln_vocab_encode(ids, &t.vocab, (const unsigned char *)"h\xff", 2, &err),
	                 LN_ERANGE);
	assert_string_equal(err.msg, "byte 0xff at position 2 is not in the vocabulary of 5 bytes");
	ln_text_free(&t);
}

/* Every allocation of a load fails in turn: LN_ENOMEM, nothing left. */
static void test_out_of_memory(void **state)
{
	write_file("a", "some text\n", 10);
	write_file("b", "more text\n", 10);
	const char *paths[] = {tpath("a"), tpath("b")};
	ln_alloc_stats before, after;
	ln_alloc_get_stats(&before);
	int failures = 0;
	for (long n = 1;; n++) {
		ln_text t;
		ln_error err;
		ln_alloc_fail_nth(n);
		ln_status st = ln_text_load(&t, paths, 2, &err);
		ln_alloc_fail_nth(0);
		if (st == LN_OK) {
			assert_int_equal(t.ids.shape[0], 20);
			ln_text_free(&t);
			break;
		}
		assert_int_equal(st, LN_ENOMEM);
		assert_true(ln_tensor_is_empty(&t.ids));
		failures++;
	}
	assert_true(failures >= 4);  /* the list, two file buffers, the tensor */
	ln_alloc_get_stats(&after);
	assert_int_equal(after.bytes_live, before.bytes_live);
}

static int setup(void **state)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/lunet_test_text_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_by_hand),
		cmocka_unit_test(test_parse_all_bytes),
		cmocka_unit_test(test_parse_empty),
		cmocka_unit_test(test_load_joins_files),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_out_of_memory),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
