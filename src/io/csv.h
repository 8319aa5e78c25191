/*
 * csv.h -- numeric CSV files: one sample per line, one number per field,
 * optionally a header line naming the columns and one column holding the
 * label.
 *
 * Accepted: ',' (or opt.sep) separated fields, surrounding spaces,
 * double-quoted fields ("a, b" and "" for a quote; no newlines inside),
 * CRLF line ends, a UTF-8 byte-order mark, blank lines (skipped).  Every
 * data field must be a finite number that fits a float.
 */
#ifndef LN_CSV_H
#define LN_CSV_H

#include <stdbool.h>

#include "../core/error.h"
#include "../core/tensor.h"

typedef struct ln_csv_options {
	bool header;        /* the first non-blank line names the columns */
	const char *label;  /* name of the label column (needs a header), or NULL */
	int label_index;    /* 0-based column of the label, or -1; used when label is NULL */
	char sep;           /* field separator; 0 means ',' */
} ln_csv_options;

/* header on, no label, separator ','.  Start from these: a zeroed struct
 * means label_index 0, i.e. the first column is the label. */
ln_csv_options ln_csv_defaults(void);

typedef struct ln_csv_data {
	ln_tensor x;     /* {n, nfeatures}: every column but the label, in file order */
	ln_tensor y;     /* {n}: the label column; empty when no label was asked for */
	int ncols;       /* columns in the file */
	int label_col;   /* 0-based column of the label, or -1 */
	char **names;    /* ncols column names in file order (with a header), else NULL */
} ln_csv_data;

/* Reads the CSV file at path into *out (which it first sets empty).
 * Errors, all naming the path:
 *   LN_EIO     cannot open or read ("No such file or directory")
 *   LN_EFORMAT empty file, no data rows, ragged rows ("line 5 has 3
 *              fields, expected 4"), non-numbers ("line 7, column
 *              'sepal': 'abc' is not a number"), unterminated quotes
 *   LN_EARG    label column not found or out of range, label name without
 *              a header, no feature column left besides the label
 *   LN_ENOMEM
 * On failure *out holds nothing.  On success the caller releases it with
 * ln_csv_data_free. */
ln_status ln_csv_load(ln_csv_data *out, const char *path, const ln_csv_options *opt,
                      ln_error *err);

/* Releases x, y and the names; leaves *d empty.  Idempotent. */
void ln_csv_data_free(ln_csv_data *d);

#endif
