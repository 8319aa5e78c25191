/*
 * idx.h -- reading IDX files (the MNIST / Fashion-MNIST format), raw or
 * gzip-compressed.
 *
 * Layout (all numbers big-endian):
 *     0x00 0x00 <type> <ndim>      magic
 *     ndim x uint32                dimensions, each >= 1
 *     data                         prod(dims) values of <type>, row-major
 * with <type> one of 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
 * 0x0D float32, 0x0E float64.  Nothing may follow the data.
 */
#ifndef LN_IDX_H
#define LN_IDX_H

#include "../core/error.h"
#include "../core/tensor.h"

/* Loads the IDX file at path (raw or gzip: detected from the content)
 * into `out` (empty), a new contiguous float tensor of the file's shape
 * holding the stored values converted to float, unscaled.
 *
 * Every field is checked before it is trusted, and memory is committed
 * only for data actually present in the file, so a corrupt or hostile
 * header cannot cause a crash or a huge allocation.  Errors name the path:
 *   LN_EIO     the file cannot be opened or read (with strerror)
 *   LN_EFORMAT bad magic, unknown type code, ndim outside 1..LN_MAX_DIMS,
 *              a zero dimension, truncated header or data ("truncated:
 *              expected 47040000 bytes of data, got 1000"), trailing
 *              bytes after the data, corrupt gzip stream
 *   LN_ERANGE  the declared size overflows or exceeds ln_alloc_limit()
 *   LN_ENOMEM
 * On failure `out` stays empty.  The caller releases `out`. */
ln_status ln_idx_load(ln_tensor *out, const char *path, ln_error *err);

#endif
