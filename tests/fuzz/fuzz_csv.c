/*
 * fuzz_csv.c -- the CSV reader, ln_csv_load (src/io/csv.c), on arbitrary
 * bytes given as a file, with options chosen by the input.
 *
 * Input: one control byte, then the file.  Control bits:
 *   0     header: the first non-blank line names the columns
 *   1-2   label: 0 none, 1 the column given by bits 3-4 (0-based), 2 the
 *         column named "label", 3 the column named "y"
 *   3-4   the label's column for label mode 1
 *   5-6   separator: ',' ';' '\t' ' '
 *
 * Oracles:
 *   - a failure is LN_EFORMAT, LN_EARG, LN_ENOMEM or LN_EIO with a
 *     message that names the path, and leaves nothing behind;
 *   - a success gives x {n, ncols - (1 if a label)} and y {n} of finite
 *     numbers, n being the number of lines that are not blank (less the
 *     header), column names (with a header) as many as the columns, the
 *     label column where it was asked for;
 *   - nothing of lunet's allocator stays live afterwards.
 */
#include <ctype.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "fuzz.h"
#include "io/csv.h"

#define MAX_FUZZ_INPUT ((size_t)1 << 20)

static void check_finite(const ln_tensor *t, const char *what)
{
	const float *v = ln_tensor_data(t);
	int64_t n = ln_tensor_numel(t);
	for (int64_t i = 0; i < n; i++)
		FUZZ_CHECK(isfinite(v[i]), "%s[%lld] = %g", what, (long long)i, v[i]);
}

/* Lines of text[0..n) holding something but white space (a UTF-8 byte
 * order mark at the start of the file does not count). */
static long content_lines(const uint8_t *text, size_t n)
{
	long lines = 0;
	int content = 0;
	size_t i = n >= 3 && text[0] == 0xEF && text[1] == 0xBB && text[2] == 0xBF ? 3 : 0;
	for (; i <= n; i++) {
		if (i == n || text[i] == '\n') {
			lines += content;
			content = 0;
		} else if (!isspace(text[i])) {
			content = 1;
		}
	}
	return lines;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > MAX_FUZZ_INPUT)
		return 0;
	fuzz_init();
	uint64_t live = fuzz_live_bytes();
	static const char seps[] = {',', ';', '\t', ' '};
	unsigned c = data[0];
	ln_csv_options o = ln_csv_defaults();
	o.header = c & 1;
	int mode = (c >> 1) & 3;
	o.label_index = mode == 1 ? (int)((c >> 3) & 3) : -1;
	o.label = mode == 2 ? "label" : mode == 3 ? "y" : NULL;
	o.sep = seps[(c >> 5) & 3];
	const char *path = fuzz_file(data + 1, size - 1);

	ln_csv_data d;
	ln_error err;
	ln_status st = ln_csv_load(&d, path, &o, &err);
	if (st != LN_OK) {
		FUZZ_CHECK(ln_tensor_is_empty(&d.x) && ln_tensor_is_empty(&d.y) && d.names == NULL,
		           "a failed load left data");
		FUZZ_CHECK(st == LN_EFORMAT || st == LN_EARG || st == LN_ENOMEM || st == LN_EIO,
		           "status %s: %s", ln_status_name(st), err.msg);
		FUZZ_CHECK(strncmp(err.msg, path, strlen(path)) == 0, "message without the path: %s",
		           err.msg);
	} else {
		int labelled = o.label != NULL || o.label_index >= 0;
		long rows = content_lines(data + 1, size - 1) - (o.header ? 1 : 0);
		FUZZ_CHECK(d.x.ndim == 2 && d.x.shape[0] == rows, "%lld rows from %ld lines",
		           (long long)d.x.shape[0], rows);
		FUZZ_CHECK(d.x.ndim == 2 && d.x.shape[1] == d.ncols - labelled, "x has shape {%lld,%lld} "
		           "for %d columns", (long long)d.x.shape[0], (long long)d.x.shape[1], d.ncols);
		if (labelled) {
			FUZZ_CHECK(d.y.ndim == 1 && d.y.shape[0] == d.x.shape[0], "y does not match x");
			FUZZ_CHECK(d.label_col >= 0 && d.label_col < d.ncols, "label column %d of %d",
			           d.label_col, d.ncols);
			if (o.label)
				FUZZ_CHECK(strcmp(d.names[d.label_col], o.label) == 0, "label column named %s",
				           d.names[d.label_col]);
			else
				FUZZ_CHECK(d.label_col == o.label_index, "label column %d, asked for %d",
				           d.label_col, o.label_index);
			check_finite(&d.y, "y");
		} else {
			FUZZ_CHECK(ln_tensor_is_empty(&d.y) && d.label_col == -1, "a label nobody asked for");
		}
		FUZZ_CHECK(o.header == (d.names != NULL), "column names without a header, or none with");
		for (int i = 0; d.names && i < d.ncols; i++)
			FUZZ_CHECK(d.names[i] != NULL, "column name %d missing", i);
		check_finite(&d.x, "x");
		ln_csv_data_free(&d);
	}
	fuzz_check_live(live, "ln_csv_load");
	return 0;
}
