/*
 * dist_mpi.c -- dist.h over MPI_COMM_WORLD (built with -DLUNET_MPI=ON).
 *
 * MPI is reached only from here: core and nn know nothing of it, and the
 * default build compiles dist_none.c instead.  Errors from MPI come back
 * as return codes (MPI_ERRORS_RETURN is set on MPI_COMM_WORLD) and become
 * LN_EIO with MPI's own message.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "../core/alloc.h"
#include "dist.h"

/* Largest count handed to one MPI call (MPI counts are int). */
#define CHUNK ((size_t)1 << 30)

static bool initialized;       /* ln_dist_init succeeded, not finalised since */
static bool owns_mpi;          /* lunet called MPI_Init_thread, so it finalises */
static int world_rank, world_size = 1, local_size = 1;

bool ln_dist_available(void) { return true; }
bool ln_dist_initialized(void) { return initialized; }
int ln_dist_rank(void) { return initialized ? world_rank : 0; }
int ln_dist_size(void) { return initialized ? world_size : 1; }
int ln_dist_local_size(void) { return initialized ? local_size : 1; }

/* LN_EIO with "<call>: <MPI's message>". */
static ln_status mpi_fail(ln_error *err, int rc, const char *call)
{
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;
	if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
		snprintf(msg, sizeof msg, "error code %d", rc);
	return ln_fail(err, LN_EIO, "%s failed: %s", call, msg);
}

static ln_status need_init(ln_error *err)
{
	if (initialized)
		return LN_OK;
	return ln_fail(err, LN_ESTATE, "not initialised: call lunet.dist.init() first");
}

static void finalize_at_exit(void) { ln_dist_finalize(); }

ln_status ln_dist_init(ln_error *err)
{
	if (initialized)
		return LN_OK;
	int flag = 0;
	MPI_Finalized(&flag);
	if (flag)
		return ln_fail(err, LN_ESTATE, "MPI was finalised already in this process and cannot "
		               "start again");
	MPI_Initialized(&flag);
	if (!flag) {
		int provided;
		int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
		if (rc != MPI_SUCCESS)
			return mpi_fail(err, rc, "MPI_Init_thread");
		owns_mpi = true;
		atexit(finalize_at_exit);
	}
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	int rc = MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
	if (rc == MPI_SUCCESS)
		rc = MPI_Comm_size(MPI_COMM_WORLD, &world_size);
	if (rc != MPI_SUCCESS)
		return mpi_fail(err, rc, "MPI_Comm_rank/size");
	MPI_Comm local;
	rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
	if (rc == MPI_SUCCESS) {
		MPI_Comm_size(local, &local_size);
		MPI_Comm_free(&local);
	} else {
		local_size = 1;
	}
	initialized = true;
	return LN_OK;
}

void ln_dist_finalize(void)
{
	if (!initialized)
		return;
	initialized = false;
	int done = 0;
	MPI_Finalized(&done);
	if (owns_mpi && !done)
		MPI_Finalize();
}

void ln_dist_abort(int code)
{
	if (!initialized)
		return;
	fflush(stdout);
	fflush(stderr);
	MPI_Abort(MPI_COMM_WORLD, code);
}

/* ---- agreement between ranks ---------------------------------------------- */

/* For k values: lo[i], hi[i] = their minimum and maximum over the ranks,
 * in one allreduce (max of v and of -v).  Values must be > INT64_MIN. */
static ln_status agree(const int64_t *v, int k, int64_t *lo, int64_t *hi, ln_error *err)
{
	int64_t buf[8];
	for (int i = 0; i < k; i++) {
		buf[i] = v[i];
		buf[k + i] = -v[i];
	}
	int rc = MPI_Allreduce(MPI_IN_PLACE, buf, 2 * k, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
	if (rc != MPI_SUCCESS)
		return mpi_fail(err, rc, "MPI_Allreduce");
	for (int i = 0; i < k; i++) {
		hi[i] = buf[i];
		lo[i] = -buf[k + i];
	}
	return LN_OK;
}

ln_status ln_dist_check_same(int64_t value, const char *what, ln_error *err)
{
	if (need_init(err) != LN_OK)
		return LN_ESTATE;
	int64_t lo = 0, hi = 0;
	ln_status s = agree(&value, 1, &lo, &hi, err);
	if (s != LN_OK)
		return s;
	if (lo != hi)
		return ln_fail(err, LN_ESHAPE, "%s differs across ranks: from %lld to %lld", what,
		               (long long)lo, (long long)hi);
	return LN_OK;
}

/* ---- collectives ------------------------------------------------------------ */

/* One allreduce (MPI_SUM/MAX/MIN) over data[0..n), in chunks of CHUNK. */
static ln_status allreduce_raw(float *data, size_t n, MPI_Op op, ln_error *err)
{
	for (size_t at = 0; at < n; at += CHUNK) {
		int count = (int)(n - at < CHUNK ? n - at : CHUNK);
		int rc = MPI_Allreduce(MPI_IN_PLACE, data + at, count, MPI_FLOAT, op, MPI_COMM_WORLD);
		if (rc != MPI_SUCCESS)
			return mpi_fail(err, rc, "MPI_Allreduce");
	}
	return LN_OK;
}

ln_status ln_dist_allreduce(float *data, size_t n, ln_dist_op op, ln_error *err)
{
	if (need_init(err) != LN_OK)
		return LN_ESTATE;
	ln_status s = ln_dist_check_same((int64_t)n, "the number of elements", err);
	if (s != LN_OK)
		return s;
	MPI_Op mop = op == LN_DIST_MAX ? MPI_MAX : op == LN_DIST_MIN ? MPI_MIN : MPI_SUM;
	s = allreduce_raw(data, n, mop, err);
	if (s == LN_OK && op == LN_DIST_MEAN) {
		float size = (float)world_size;
		for (size_t i = 0; i < n; i++)
			data[i] /= size;
	}
	return s;
}

ln_status ln_dist_broadcast(float *data, size_t n, int root, ln_error *err)
{
	if (need_init(err) != LN_OK)
		return LN_ESTATE;
	/* n and root must agree, or ranks would wait for different messages */
	int64_t v[2] = {(int64_t)n, root}, lo[2] = {0, 0}, hi[2] = {0, 0};
	ln_status s = agree(v, 2, lo, hi, err);
	if (s != LN_OK)
		return s;
	if (lo[0] != hi[0])
		return ln_fail(err, LN_ESHAPE, "the number of elements differs across ranks: from "
		               "%lld to %lld", (long long)lo[0], (long long)hi[0]);
	if (lo[1] != hi[1])
		return ln_fail(err, LN_ERANGE, "the root differs across ranks: from %lld to %lld",
		               (long long)lo[1], (long long)hi[1]);
	if (root < 0 || root >= world_size)
		return ln_fail(err, LN_ERANGE, "root must be a rank in 0..%d, got %d", world_size - 1,
		               root);
	for (size_t at = 0; at < n; at += CHUNK) {
		int count = (int)(n - at < CHUNK ? n - at : CHUNK);
		int rc = MPI_Bcast(data + at, count, MPI_FLOAT, root, MPI_COMM_WORLD);
		if (rc != MPI_SUCCESS)
			return mpi_fail(err, rc, "MPI_Bcast");
	}
	return LN_OK;
}

struct ln_dist_request {
	MPI_Request req;
	float *data;
	size_t n;
	ln_dist_op op;
	bool done;
};

ln_status ln_dist_iallreduce(float *data, size_t n, ln_dist_op op, ln_dist_request **out,
                             ln_error *err)
{
	if (need_init(err) != LN_OK)
		return LN_ESTATE;
	if (n > (size_t)INT_MAX)
		return ln_fail(err, LN_ERANGE, "%zu elements are too many for one non-blocking "
		               "reduction (at most %d)", n, INT_MAX);
	ln_dist_request *r = ln_malloc(sizeof *r);
	if (!r)
		return ln_fail(err, LN_ENOMEM, "out of memory for a request");
	MPI_Op mop = op == LN_DIST_MAX ? MPI_MAX : op == LN_DIST_MIN ? MPI_MIN : MPI_SUM;
	int rc = MPI_Iallreduce(MPI_IN_PLACE, data, (int)n, MPI_FLOAT, mop, MPI_COMM_WORLD, &r->req);
	if (rc != MPI_SUCCESS) {
		ln_free(r);
		return mpi_fail(err, rc, "MPI_Iallreduce");
	}
	r->data = data;
	r->n = n;
	r->op = op;
	r->done = false;
	*out = r;
	return LN_OK;
}

ln_status ln_dist_test(ln_dist_request *r, bool *done, ln_error *err)
{
	int flag = r->done;
	if (!r->done) {
		int rc = MPI_Test(&r->req, &flag, MPI_STATUS_IGNORE);
		if (rc != MPI_SUCCESS)
			return mpi_fail(err, rc, "MPI_Test");
		r->done = flag != 0;
	}
	*done = r->done;
	return LN_OK;
}

ln_status ln_dist_wait(ln_dist_request *r, ln_error *err)
{
	ln_status s = LN_OK;
	if (!r->done) {
		int rc = MPI_Wait(&r->req, MPI_STATUS_IGNORE);
		if (rc != MPI_SUCCESS)
			s = mpi_fail(err, rc, "MPI_Wait");
	}
	if (s == LN_OK && r->op == LN_DIST_MEAN) {
		float size = (float)world_size;
		for (size_t i = 0; i < r->n; i++)
			r->data[i] /= size;
	}
	ln_free(r);
	return s;
}

ln_status ln_dist_barrier(ln_error *err)
{
	if (need_init(err) != LN_OK)
		return LN_ESTATE;
	int rc = MPI_Barrier(MPI_COMM_WORLD);
	return rc == MPI_SUCCESS ? LN_OK : mpi_fail(err, rc, "MPI_Barrier");
}

/* Pack, one sum-allreduce of total + 1 floats, unpack (dist.h). */
ln_status ln_dist_average(ln_dist_packer *p, double weight, ln_error *err)
{
	if (need_init(err) != LN_OK)
		return LN_ESTATE;
	if (!(weight >= 0.0) || !isfinite(weight) || weight > 16777216.0)
		return ln_fail(err, LN_ERANGE, "weight must be in 0..2^24, got %g", weight);
	if (world_size == 1) {  /* the mean over one rank: the gradients as they are */
		if (weight == 0.0)
			return ln_fail(err, LN_ERANGE, "the weights of all ranks sum to 0: no rank had "
			               "samples");
		return LN_OK;
	}
	ln_dist_packer_pack(p, (float)weight);
	ln_status s = allreduce_raw(p->buf, p->total + 1, MPI_SUM, err);
	if (s != LN_OK)
		return s;
	if (!(p->buf[p->total] > 0.0f))
		return ln_fail(err, LN_ERANGE, "the weights of all ranks sum to %g: no rank had "
		               "samples", (double)p->buf[p->total]);
	ln_dist_packer_unpack(p);
	return LN_OK;
}
