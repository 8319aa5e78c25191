/*
 * file.h -- whole-file reads and atomic whole-file writes.
 *
 * Every file lunet writes (saved models and checkpoints through
 * lunet.save, the text files of an experiment run through
 * lunet.sys.write_atomic) goes through ln_file_write_atomic, so that a
 * crash or a kill at any moment leaves either the old file or the new
 * one, never a mix.
 */
#ifndef LN_FILE_H
#define LN_FILE_H

#include <stddef.h>

#include "../core/error.h"

/* Writes size bytes to path atomically:
 *   1. removes the temporary files that earlier writers of the same path
 *      left when they were killed ("<path>.tmp.<pid>" whose process no
 *      longer exists);
 *   2. writes the bytes into "<path>.tmp.<pid>", in the same directory (a
 *      rename is atomic only within one file system);
 *   3. flushes that file to disk (fsync), closes it;
 *   4. renames it over path;
 *   5. flushes the directory (fsync), so that the rename itself survives
 *      a crash.  File systems that cannot fsync a directory (EINVAL) are
 *      accepted as they are.
 * On a failure in steps 2-4 the temporary file is removed and an existing
 * file at path is left untouched.  A failure in step 5 is reported, but
 * the new contents are then already in place.
 * Errors: LN_EIO with "<path>: <what failed>: <strerror>" ("<path>: cannot
 * create <tmp>: ...", "cannot write", "cannot flush to disk", "cannot
 * rename the temporary file over it", "cannot flush the directory to
 * disk"), or "empty path"; LN_ENOMEM.  data is only read. */
ln_status ln_file_write_atomic(const char *path, const void *data, size_t size, ln_error *err);

/* Reads the whole regular file at path into *data (from ln_malloc; the
 * caller frees it with ln_free) of *size bytes.  LN_EIO ("<path>: cannot
 * open: <strerror>", "<path>: is a directory"...), LN_ERANGE (larger than
 * ln_alloc_limit()), LN_ENOMEM.  On failure *data is NULL. */
ln_status ln_file_read(const char *path, void **data, size_t *size, ln_error *err);

#endif
