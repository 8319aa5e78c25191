/*
 * dist.h -- data-parallel training over MPI.
 *
 * The processes of one job (ranks 0 .. size-1 of MPI_COMM_WORLD) each
 * hold a copy of the model, run forward and backward on their share of
 * every batch, and average their gradients before the optimiser step, so
 * that every copy takes the same step:
 *
 *     ln_dist_init(&err);                             once per process
 *     ln_dist_packer_new(&p, n, grads, &err);         once per model
 *     for every batch:
 *         backward on this rank's share of n_r samples
 *         ln_dist_average(p, n_r, &err);              one allreduce
 *         optimiser step
 *     ln_dist_packer_free(p);
 *
 * Built with -DLUNET_MPI=ON, the functions that communicate are
 * dist_mpi.c; in the default build they are dist_none.c, where
 * ln_dist_available() is false and each fails with LN_ESTATE saying that
 * this lunet was built without MPI.  The packer itself (dist.c) is plain
 * C in both builds.
 *
 * Collective calls: every rank makes the same calls in the same order, on
 * buffers of the same length.  Only the thread that called ln_dist_init
 * may call them (MPI_THREAD_FUNNELED).  Errors: LN_ESTATE (no MPI in this
 * build, or not initialised), LN_ESHAPE (lengths differ across ranks),
 * LN_ERANGE (a bad root or weight), LN_ENOMEM, LN_EIO (MPI itself
 * reported an error; its message is in err).
 */
#ifndef LN_DIST_H
#define LN_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/error.h"
#include "../core/tensor.h"

/* ---- the job --------------------------------------------------------------- */

/* True when lunet was built with MPI. */
bool ln_dist_available(void);

/* Joins the MPI job (MPI_Init_thread), or adopts MPI when the host
 * program initialised it already (then the host also finalises it).
 * Idempotent.  Outside mpirun this gives a job of one rank.  When lunet
 * initialised MPI, it finalises it at process exit (or earlier through
 * ln_dist_finalize). */
ln_status ln_dist_init(ln_error *err);

/* True between a successful ln_dist_init and ln_dist_finalize. */
bool ln_dist_initialized(void);

/* This process's rank (0-based) and the number of ranks; 0 and 1 when not
 * initialised. */
int ln_dist_rank(void);
int ln_dist_size(void);

/* Ranks of this job on this machine (MPI_COMM_TYPE_SHARED); 1 when not
 * initialised. */
int ln_dist_local_size(void);

/* Finalises MPI if lunet initialised it and the job is still up.  Every
 * rank must get here (MPI_Finalize is collective).  Idempotent. */
void ln_dist_finalize(void);

/* Ends the whole job with exit status `code` (MPI_Abort) when this process
 * is initialised; returns at once otherwise.  For a rank that failed:
 * the others may be waiting for it inside a collective call, and would
 * wait for ever.  Flushes stdout and stderr first. */
void ln_dist_abort(int code);

/* ---- collectives on float buffers ---------------------------------------- */

typedef enum ln_dist_op { LN_DIST_SUM, LN_DIST_MEAN, LN_DIST_MAX, LN_DIST_MIN } ln_dist_op;

/* data[0..n) = the element-wise op over every rank's data, on every rank
 * (in place).  Checks first that n is the same on every rank (one small
 * extra allreduce): LN_ESHAPE otherwise, on every rank alike. */
ln_status ln_dist_allreduce(float *data, size_t n, ln_dist_op op, ln_error *err);

/* data[0..n) = root's data[0..n), on every rank.  n checked as above;
 * LN_ERANGE when root is not a rank. */
ln_status ln_dist_broadcast(float *data, size_t n, int root, ln_error *err);

/* The non-blocking form of ln_dist_allreduce, for overlapping the
 * reduction with other work: starts it and returns a request in *out
 * (from ln_malloc).  data must stay valid and untouched until
 * ln_dist_wait; n must fit an int (LN_ERANGE otherwise) and is not
 * checked across ranks.  Every rank must start the same reductions in the
 * same order. */
typedef struct ln_dist_request ln_dist_request;
ln_status ln_dist_iallreduce(float *data, size_t n, ln_dist_op op, ln_dist_request **out,
                             ln_error *err);
/* Lets MPI progress the reduction; *done set true once it has completed
 * (then ln_dist_wait returns at once). */
ln_status ln_dist_test(ln_dist_request *r, bool *done, ln_error *err);
/* Waits for the reduction to complete (dividing by the size for MEAN) and
 * frees the request, on failure too. */
ln_status ln_dist_wait(ln_dist_request *r, ln_error *err);

/* Returns once every rank has called it. */
ln_status ln_dist_barrier(ln_error *err);

/* Checks that `value` is the same on every rank.  On a mismatch every rank
 * gets LN_ESHAPE with "<what> differs across ranks: from <min> to <max>".
 * One allreduce of two integers. */
ln_status ln_dist_check_same(int64_t value, const char *what, ln_error *err);

/* ---- gradient averaging: one buffer, one allreduce ------------------------ */

/* The gradients of one model and the buffer they are packed into:
 *   buf = [ w*g_1 | w*g_2 | ... | w*g_n | w ]
 * then one sum-allreduce gives every rank  Σ_r w_r g_r  and  W = Σ_r w_r,
 * and each gradient is overwritten with  Σ_r w_r g_r / W.  With w_r the
 * number of samples rank r's gradient is a mean over, that is the mean
 * over every sample of the global batch, however unevenly the batch was
 * split; with w_r = 1 everywhere it is the plain mean over ranks. */
typedef struct ln_dist_packer {
	int n;          /* gradient tensors */
	ln_tensor *g;   /* n views of them, each holding a reference */
	size_t total;   /* their elements, summed */
	float *buf;     /* total + 1 floats, from ln_malloc */
} ln_dist_packer;

/* Makes a packer over grads[0..n) (contiguous tensors; n >= 0), taking a
 * reference to each and allocating the buffer once.  The caller frees it
 * with ln_dist_packer_free.  LN_EARG if a gradient is not contiguous,
 * LN_ERANGE if the sizes overflow, LN_ENOMEM.  Plain C: no communication. */
ln_status ln_dist_packer_new(ln_dist_packer **out, int n, const ln_tensor *grads, ln_error *err);
void ln_dist_packer_free(ln_dist_packer *p);

/* buf = [weight*g_i ..., weight] (pack) and g_i = buf_i / buf[total]
 * (unpack), the two halves of ln_dist_average around its allreduce. */
void ln_dist_packer_pack(ln_dist_packer *p, float weight);
void ln_dist_packer_unpack(ln_dist_packer *p);

/* Averages the gradients over the ranks, weighted: pack, one allreduce,
 * unpack.  weight >= 0 and finite (LN_ERANGE otherwise); when the weights
 * of all ranks sum to 0 the gradients are left as they were and the
 * result is LN_ERANGE.  On one rank the gradients are left exactly as
 * they are (the mean over one), with no communication.  Allocates nothing.  The packer must hold the same
 * number of elements on every rank (checked once by the caller with
 * ln_dist_check_same when the packer is made). */
ln_status ln_dist_average(ln_dist_packer *p, double weight, ln_error *err);

#endif
