/*
 * text.h -- byte-level text for language models: the vocabulary of the
 * bytes a text holds, and the text as a tensor of ids.
 *
 * The vocabulary is the set of distinct bytes present in the text, in
 * ascending byte order; the id of a byte is its 1-based rank in that set
 * (a text of "baab" has the vocabulary {'a', 'b'}: 'a' is 1, 'b' is 2).
 * Every byte value 0..255 is an ordinary byte: no encoding is assumed, so
 * a multi-byte UTF-8 character is several ids.
 *
 *     ln_text t;
 *     if (ln_text_parse(&t, buf, n, &err) != LN_OK) ...   (a byte buffer)
 *     if (ln_text_load(&t, paths, npaths, &err) != LN_OK) ... (files, joined)
 *     ... t.ids is {n} ...
 *     ln_text_free(&t);
 */
#ifndef LN_TEXT_H
#define LN_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"

/* A byte-level vocabulary: n distinct bytes, ids 1..n in byte order. */
typedef struct ln_vocab {
	int n;                      /* 1..256 */
	unsigned char byte[256];    /* byte[k] is the byte of id k+1; ascending */
	int16_t id[256];            /* id[b] is the id of byte b, 0 when b is absent */
} ln_vocab;

typedef struct ln_text {
	ln_tensor ids;    /* {L} floats, ids[i] = vocab.id[byte i] */
	ln_vocab vocab;
} ln_text;

/* Parses the n bytes at buf into `out`: its vocabulary, and ids, a new
 * contiguous tensor {n}.  A pure function of the buffer, which is only
 * read (any bytes are accepted).
 * Errors: LN_EFORMAT "empty text" when n is 0; LN_ERANGE (more bytes than
 * a tensor may hold, or over ln_alloc_limit()), LN_ENOMEM.  On failure
 * `out` holds no tensor.  The caller releases it with ln_text_free. */
ln_status ln_text_parse(ln_text *out, const void *buf, size_t n, ln_error *err);

/* Reads the files paths[0..npaths-1] (npaths >= 1) and parses them
 * joined end to end in that order, as ln_text_parse would the one buffer
 * (never built: the files are read into buffers of their own, and
 * those are scanned and converted in turn).  Errors name the file: LN_EIO ("<path>: cannot open: No such file
 * or directory", "<path>: is a directory"), LN_EFORMAT ("<path> is
 * empty": every file must hold at least one byte), LN_ERANGE, LN_ENOMEM.
 * On failure `out` holds no tensor. */
ln_status ln_text_load(ln_text *out, const char *const *paths, int npaths, ln_error *err);

/* The ids of the n bytes at s, written to ids[0..n-1].  A byte the
 * vocabulary lacks is LN_ERANGE "byte 'Z' (0x5a) at position 3 is not in
 * the vocabulary of 42 bytes" (a byte outside printable ASCII as "byte
 * 0x07"; positions 1-based); ids is then partly written. */
ln_status ln_vocab_encode(float *ids, const ln_vocab *v, const unsigned char *s, size_t n,
                          ln_error *err);

/* Releases the tensor of t (the vocabulary needs nothing); idempotent. */
void ln_text_free(ln_text *t);

#endif
