/*
 * dist_none.c -- dist.h in a build without MPI (the default): nothing to
 * join, and every call that would communicate fails with LN_ESTATE saying
 * how to get a build that can.
 */
#include "dist.h"

static ln_status no_mpi(ln_error *err)
{
	return ln_fail(err, LN_ESTATE, "this lunet was built without MPI (configure it with "
	               "cmake -DLUNET_MPI=ON)");
}

bool ln_dist_available(void) { return false; }
bool ln_dist_initialized(void) { return false; }
int ln_dist_rank(void) { return 0; }
int ln_dist_size(void) { return 1; }
int ln_dist_local_size(void) { return 1; }
void ln_dist_finalize(void) {}
void ln_dist_abort(int code) { (void)code; }

ln_status ln_dist_init(ln_error *err) { return no_mpi(err); }

ln_status ln_dist_allreduce(float *data, size_t n, ln_dist_op op, ln_error *err)
{
	(void)data, (void)n, (void)op;
	return no_mpi(err);
}

ln_status ln_dist_broadcast(float *data, size_t n, int root, ln_error *err)
{
	(void)data, (void)n, (void)root;
	return no_mpi(err);
}

ln_status ln_dist_barrier(ln_error *err) { return no_mpi(err); }

ln_status ln_dist_iallreduce(float *data, size_t n, ln_dist_op op, ln_dist_request **out,
                             ln_error *err)
{
	(void)data, (void)n, (void)op, (void)out;
	return no_mpi(err);
}

/* No request can exist without MPI. */
ln_status ln_dist_test(ln_dist_request *r, bool *done, ln_error *err)
{
	(void)r;
	*done = true;
	return no_mpi(err);
}

ln_status ln_dist_wait(ln_dist_request *r, ln_error *err)
{
	(void)r;
	return no_mpi(err);
}

ln_status ln_dist_check_same(int64_t value, const char *what, ln_error *err)
{
	(void)value, (void)what;
	return no_mpi(err);
}

ln_status ln_dist_average(ln_dist_packer *p, double weight, ln_error *err)
{
	(void)p, (void)weight;
	return no_mpi(err);
}
