/*
 * file.c -- whole-file reads and atomic whole-file writes (see file.h).
 *
 * The atomic write is the classic sequence: write a temporary file next
 * to the target, fsync it, rename it over the target, fsync the
 * directory.  The temporary file is named after the writing process
 * ("<path>.tmp.<pid>"), so that two processes saving the same path never
 * write into the same temporary file, and so that a later writer can tell
 * a temporary file whose writer was killed (its process is gone) from
 * one that is being written right now.
 */
#define _POSIX_C_SOURCE 200809L  /* fsync, O_CLOEXEC, unlinkat, dirfd */

#include "file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/alloc.h"

#define CHUNK ((size_t)1 << 30)  /* largest single read or write */

/* Writes all n bytes, retrying short writes and EINTR.  0 or -1 (errno). */
static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n > CHUNK ? CHUNK : n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* True when name is "<base>.tmp.<pid>" for a pid other than ours whose
 * process no longer exists: a temporary file left by a killed writer. */
static int is_stale_temp(const char *name, const char *base, size_t blen)
{
	if (strncmp(name, base, blen) != 0 || strncmp(name + blen, ".tmp.", 5) != 0)
		return 0;
	const char *digits = name + blen + 5;
	if (*digits < '1' || *digits > '9' || strlen(digits) > 9)
		return 0;
	char *end;
	long pid = strtol(digits, &end, 10);
	if (*end != '\0' || pid == (long)getpid())
		return 0;
	return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Removes the stale temporary files of base in dir.  Best effort: a
 * directory that cannot be listed is left as it is (creating the new
 * temporary file will then report the real problem). */
static void remove_stale_temps(const char *dir, const char *base)
{
	size_t blen = strlen(base);
	if (blen == 0)
		return;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (is_stale_temp(e->d_name, base, blen))
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

/* fsync of the directory dir, so that a rename in it is durable.  0, or
 * an errno value.  A directory that cannot be opened (no read permission)
 * or a file system that cannot sync directories (EINVAL) counts as done:
 * there is nothing more a writer can do. */
static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int e = fsync(fd) == 0 || errno == EINVAL ? 0 : errno;
	close(fd);
	return e;
}

/* Splits path into its directory (into dir, which has room for strlen(path)
 * + 2 bytes) and returns its last component. */
static const char *split_path(const char *path, char *dir)
{
	const char *slash = strrchr(path, '/');
	if (!slash) {
		strcpy(dir, ".");
		return path;
	}
	if (slash == path) {
		strcpy(dir, "/");
	} else {
		memcpy(dir, path, (size_t)(slash - path));
		dir[slash - path] = '\0';
	}
	return slash + 1;
}

ln_status ln_file_write_atomic(const char *path, const void *data, size_t size, ln_error *err)
{
	if (!*path)
		return ln_fail(err, LN_EIO, "empty path");
	size_t plen = strlen(path);
	if (plen > SIZE_MAX / 2 - 64)
		return ln_fail(err, LN_ENOMEM, "%s: out of memory", path);
	/* one block: the temporary name, then the directory */
	char *tmp = ln_malloc(2 * plen + 64);
	if (!tmp)
		return ln_fail(err, LN_ENOMEM, "%s: out of memory", path);
	char *dir = tmp + plen + 32;
	const char *base = split_path(path, dir);
	snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
	remove_stale_temps(dir, base);

	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0) {
		ln_status st = ln_fail(err, LN_EIO, "%s: cannot create %s: %s", path, tmp,
		                       strerror(errno));
		ln_free(tmp);
		return st;
	}
	const char *what = NULL;
	int saved = 0;
	if (write_all(fd, data, size) != 0)
		what = "cannot write";
	else if (fsync(fd) != 0)
		what = "cannot flush to disk";
	if (what)
		saved = errno;
	if (close(fd) != 0 && !what) {
		what = "cannot close";
		saved = errno;
	}
	if (!what && rename(tmp, path) != 0) {
		what = "cannot rename the temporary file over it";
		saved = errno;
	}
	if (what) {
		unlink(tmp);
	} else if ((saved = sync_dir(dir)) != 0) {
		what = "cannot flush the directory to disk";
	}
	ln_free(tmp);
	if (what)
		return ln_fail(err, LN_EIO, "%s: %s: %s", path, what, strerror(saved));
	return LN_OK;
}

ln_status ln_file_read(const char *path, void **data, size_t *size, ln_error *err)
{
	*data = NULL;
	*size = 0;
	if (!*path)
		return ln_fail(err, LN_EIO, "empty path");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ln_fail(err, LN_EIO, "%s: cannot open: %s", path, strerror(errno));
	struct stat sb;
	ln_status st = LN_OK;
	if (fstat(fd, &sb) != 0)
		st = ln_fail(err, LN_EIO, "%s: cannot stat: %s", path, strerror(errno));
	else if (S_ISDIR(sb.st_mode))
		st = ln_fail(err, LN_EIO, "%s: is a directory", path);
	else if (!S_ISREG(sb.st_mode))
		st = ln_fail(err, LN_EIO, "%s: not a regular file", path);
	else if (sb.st_size < 0 || (uint64_t)sb.st_size > ln_alloc_limit())
		st = ln_fail(err, LN_ERANGE, "%s: file of %lld bytes exceeds the allocation limit "
		             "(%zu bytes)", path, (long long)sb.st_size, ln_alloc_limit());
	if (st != LN_OK) {
		close(fd);
		return st;
	}
	size_t n = (size_t)sb.st_size;
	unsigned char *buf = ln_malloc(n);
	if (!buf) {
		close(fd);
		return ln_fail(err, LN_ENOMEM, "%s: out of memory reading %zu bytes", path, n);
	}
	size_t got = 0;
	while (got < n) {
		ssize_t k = read(fd, buf + got, n - got > CHUNK ? CHUNK : n - got);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			int e = errno;
			close(fd);
			ln_free(buf);
			return ln_fail(err, LN_EIO, "%s: read error: %s", path, strerror(e));
		}
		if (k == 0)
			break;  /* the file shrank: a decoder will call it truncated */
		got += (size_t)k;
	}
	close(fd);
	*data = buf;
	*size = got;
	return LN_OK;
}
