/*
 * rnn.c -- the recurrent layers RNN (tanh or ReLU), LSTM and GRU, stacked
 * `layers` deep, batch first, with PyTorch's parameters and equations
 * (torch.nn.RNN, LSTM, GRU).  For layer k, input x_t (in = nin for k = 0,
 * else h) and the previous state h_{t-1} (and c_{t-1}):
 *
 *   RNN   h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),  act tanh or ReLU
 *   LSTM  (i, f, g, o) = (sig, sig, tanh, sig)(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
 *         c_t = f c_{t-1} + i g            h_t = o tanh(c_t)
 *   GRU   (r, z) = sig(W_i{r,z} x_t + b_i{r,z} + W_h{r,z} h_{t-1} + b_h{r,z})
 *         n = tanh(W_in x_t + b_in + r (W_hn h_{t-1} + b_hn))
 *         h_t = (1 - z) n + z h_{t-1}
 *
 * Gates are stacked in that order in weight_ih_lk {G*h, in}, weight_hh_lk
 * {G*h, h}, bias_ih_lk and bias_hh_lk {G*h} (G = 1, 4, 3), the parameters
 * of layer k at positions 4k..4k+3.  Between layers, in training mode,
 * dropout with probability `dropout` is applied to a layer's output before
 * the next layer reads it (not after the last one), as PyTorch does.
 *
 * ---- how the kernels are laid out ---------------------------------------------
 *
 * Inside, everything is time-major, so that the N rows of one step are
 * contiguous: the input is transposed once to xt (T,N,nin), each layer
 * writes its states to hs (T+1,N,h) with hs[0] = the initial state, and the
 * top layer's hs[1..T] is transposed to the output (N,T,h).  A layer's
 * input projection for all T steps is one product,
 *     G (T*N, G*h) = X (T*N, in) W_ih^T + bias,
 * and each step adds its recurrent product into its slice of G (RNN,
 * LSTM) or into hh (GRU, whose n gate needs W_hn h + b_hn apart), then one
 * pointwise pass applies the gates.  Forward saves G (the gate
 * activations), hs, cs (LSTM cells) and hh (GRU) for backward.
 *
 * Backward runs the steps in reverse with the gradient of the outputs
 * dy (T,N,h) (the top layer's from the caller, transposed; a lower
 * layer's from the one above):
 *     dG_t = the cell's backward from dy_t (and the carried dc for LSTM)
 *     dy_{t-1} += dG_t W_hh            (one product per step; none at t = 0:
 *                                       the initial state gets no gradient)
 * and, after the loop, one product each over all steps:
 *     dW_hh += dG^T hs[0..T-1]   dW_ih += dG^T X   db += column sums of dG
 *     dX = dG W_ih               (the layer below's dy, through its dropout mask)
 * Every buffer belongs to the module and is reallocated only when N or T
 * change: a steady-state step allocates nothing.
 *
 * ---- state ---------------------------------------------------------------------
 *
 * After a forward, hidden (and cell) {layers,N,h} hold each layer's final
 * state.  Stateful, the next forward starts from them (a batch of another
 * size is an error until reset_state); the gradient stops there, since the
 * initial state never receives one (truncated backpropagation through
 * time).  Not stateful, every forward starts from zeros.
 *
 * The cell kernels use cellmath.h's exp, sigmoid and tanh; the _naive
 * reference (one layer, step by step, batch first, libm and double
 * accumulators, straight from the equations above) is kept beside them
 * and tested against the module.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/alloc.h"
#include "../core/gemm.h"
#include "../core/rng.h"
#include "cellmath.h"
#include "init.h"
#include "nn_internal.h"
#include "sequence.h"

/* Per stacked layer: what forward saves for backward. */
typedef struct layer_buf {
	ln_tensor g;     /* (T,N,G*h): input projections, then the gate activations */
	ln_tensor hs;    /* (T+1,N,h): hs[0] the initial state, hs[t+1] = h_t */
	ln_tensor cs;    /* LSTM (T+1,N,h): the cells, the same way */
	ln_tensor hh;    /* GRU (T,N,3h): W_hh h_{t-1} + b_hh */
	ln_tensor mask;  /* (T,N,h): dropout mask on this layer's output */
	ln_tensor drop;  /* (T,N,h): the masked output, the next layer's input */
	bool dropped;    /* the last forward applied the mask */
} layer_buf;

typedef struct rnn {
	ln_module base;
	ln_rnn_kind kind;
	int64_t nin, h, layers, gates;
	double dropout;
	bool stateful;
	bool have_state;    /* hidden (cell) hold a state for the next forward */
	ln_tensor hidden;   /* {layers,N,h} */
	ln_tensor cell;     /* {layers,N,h}, LSTM */
	layer_buf *lb;      /* layers entries */
	ln_tensor xt;       /* (T,N,nin) */
	ln_tensor dg;       /* (T,N,G*h) */
	ln_tensor dhh;      /* GRU (T,N,3h) */
	ln_tensor dy;       /* (T,N,h) */
	ln_tensor dx;       /* (T,N,nin): the first layer's input gradient */
	ln_tensor dc;       /* LSTM (N,h) */
	float *bias;        /* G*h: forward's b_ih + b_hh (RNN, LSTM) or b_ih (GRU), per
	                       layer in turn; backward's bias gradient of a layer */
	ln_tensor whht;     /* (h, G*h): forward's W_hh^T, per layer in turn */
} rnn;

#define PARAMS_PER_LAYER 4
enum { W_IH, W_HH, B_IH, B_HH };

/* ==== cell kernels ================================================================ */

/* LSTM step, n rows: g (n,4h) pre-activations in, (i,f,g,o) out;
 * c (n,h) = f cp + i g;  h (n,h) = o tanh(c). */
static void lstm_cell_forward(float *restrict g, float *restrict c, float *restrict h,
                              const float *restrict cp, int64_t n, int64_t hd)
{
	for (int64_t r = 0; r < n; r++) {
		float *gi = g + r * 4 * hd, *gf = gi + hd, *gg = gf + hd, *go = gg + hd;
		float *cr = c + r * hd, *hr = h + r * hd;
		const float *cpr = cp + r * hd;
		for (int64_t j = 0; j < hd; j++) {
			float i = ln_sigmoid_fast(gi[j]), f = ln_sigmoid_fast(gf[j]);
			float gt = ln_tanh_fast(gg[j]), o = ln_sigmoid_fast(go[j]);
			float cn = f * cpr[j] + i * gt;
			gi[j] = i;
			gf[j] = f;
			gg[j] = gt;
			go[j] = o;
			cr[j] = cn;
			hr[j] = o * ln_tanh_fast(cn);
		}
	}
}

/* LSTM step backward, n rows: from dh (n,h) and the carried dc (n,h),
 * with the saved activations g (n,4h) and cells c, cp (n,h):
 *   dc += dh o (1 - tanh(c)^2);  do = dh tanh(c)
 *   dg (n,4h) = (dc g i(1-i), dc cp f(1-f), dc i (1-g^2), do o(1-o))
 *   dc = dc f  (carried to the step before) */
static void lstm_cell_backward(float *restrict dg, float *restrict dc, const float *restrict g,
                               const float *restrict c, const float *restrict cp,
                               const float *restrict dh, int64_t n, int64_t hd)
{
	for (int64_t r = 0; r < n; r++) {
		const float *gi = g + r * 4 * hd, *gf = gi + hd, *gg = gf + hd, *go = gg + hd;
		float *di = dg + r * 4 * hd, *df = di + hd, *dgg = df + hd, *dout = dgg + hd;
		const float *cr = c + r * hd, *cpr = cp + r * hd, *dhr = dh + r * hd;
		float *dcr = dc + r * hd;
		for (int64_t j = 0; j < hd; j++) {
			float i = gi[j], f = gf[j], gt = gg[j], o = go[j];
			float tc = ln_tanh_fast(cr[j]);
			float d = dcr[j] + dhr[j] * o * (1.0f - tc * tc);
			di[j] = d * gt * i * (1.0f - i);
			df[j] = d * cpr[j] * f * (1.0f - f);
			dgg[j] = d * i * (1.0f - gt * gt);
			dout[j] = dhr[j] * tc * o * (1.0f - o);
			dcr[j] = d * f;
		}
	}
}

/* GRU step, n rows: g (n,3h) = W_ih x + b_ih in, (r,z,n) out; hh (n,3h) =
 * W_hh h_{t-1} in, + b_hh out (saved so); h (n,h) = (1-z) n + z hp. */
static void gru_cell_forward(float *restrict g, float *restrict hh, float *restrict h,
                             const float *restrict bhh, const float *restrict hp, int64_t n,
                             int64_t hd)
{
	for (int64_t r = 0; r < n; r++) {
		float *gr = g + r * 3 * hd, *gz = gr + hd, *gn = gz + hd;
		float *hr = hh + r * 3 * hd, *hz = hr + hd, *hn = hz + hd;
		float *out = h + r * hd;
		const float *hpr = hp + r * hd;
		for (int64_t j = 0; j < hd; j++) {
			float a = hr[j] + bhh[j], b = hz[j] + bhh[hd + j], c = hn[j] + bhh[2 * hd + j];
			float rg = ln_sigmoid_fast(gr[j] + a), zg = ln_sigmoid_fast(gz[j] + b);
			float ng = ln_tanh_fast(gn[j] + rg * c);
			hr[j] = a;
			hz[j] = b;
			hn[j] = c;
			gr[j] = rg;
			gz[j] = zg;
			gn[j] = ng;
			out[j] = (1.0f - zg) * ng + zg * hpr[j];
		}
	}
}

/* GRU step backward, n rows: from dh (n,h), with the saved (r,z,n) in g,
 * hh, and hp = h_{t-1}:
 *   dn' = dh (1-z) (1-n^2)      dz' = dh (hp - n) z(1-z)
 *   dr' = dn' (W_hn hp + b_hn) r(1-r)
 *   dgi (n,3h) = (dr', dz', dn')    dhh (n,3h) = (dr', dz', dn' r)
 *   dhp (n,h) += dh z  (NULL at the first step: no gradient to h0) */
static void gru_cell_backward(float *restrict dgi, float *restrict dhh, float *restrict dhp,
                              const float *restrict g, const float *restrict hh,
                              const float *restrict hp, const float *restrict dh, int64_t n,
                              int64_t hd)
{
	for (int64_t r = 0; r < n; r++) {
		const float *gr = g + r * 3 * hd, *gz = gr + hd, *gn = gz + hd;
		const float *hn = hh + r * 3 * hd + 2 * hd;
		float *ir = dgi + r * 3 * hd, *iz = ir + hd, *in = iz + hd;
		float *sr = dhh + r * 3 * hd, *sz = sr + hd, *sn = sz + hd;
		const float *hpr = hp + r * hd, *dhr = dh + r * hd;
		for (int64_t j = 0; j < hd; j++) {
			float rg = gr[j], zg = gz[j], ng = gn[j], d = dhr[j];
			float dn = d * (1.0f - zg) * (1.0f - ng * ng);
			float dz = d * (hpr[j] - ng) * zg * (1.0f - zg);
			float dr = dn * hn[j] * rg * (1.0f - rg);
			ir[j] = sr[j] = dr;
			iz[j] = sz[j] = dz;
			in[j] = dn;
			sn[j] = dn * rg;
		}
		if (dhp) {
			float *dp = dhp + r * hd;
			for (int64_t j = 0; j < hd; j++)
				dp[j] += dhr[j] * gz[j];
		}
	}
}

/* RNN step, n*h values: h = tanh(g) or max(g, 0). */
static void rnn_cell_forward(float *restrict h, const float *restrict g, int64_t n, bool relu)
{
	if (relu)
		for (int64_t k = 0; k < n; k++)
			h[k] = g[k] > 0 ? g[k] : 0.0f;
	else
		for (int64_t k = 0; k < n; k++)
			h[k] = ln_tanh_fast(g[k]);
}

/* dg = dh act'(.) from the output h: 1 - h^2, or h > 0 */
static void rnn_cell_backward(float *restrict dg, const float *restrict h, const float *restrict dh,
                              int64_t n, bool relu)
{
	if (relu)
		for (int64_t k = 0; k < n; k++)
			dg[k] = h[k] > 0 ? dh[k] : 0.0f;
	else
		for (int64_t k = 0; k < n; k++)
			dg[k] = dh[k] * (1.0f - h[k] * h[k]);
}

/* dst (B,A,d) = src (A,B,d) with the first two dimensions swapped */
static void swap01(float *dst, const float *src, int64_t a, int64_t b, int64_t d)
{
	for (int64_t i = 0; i < a; i++)
		for (int64_t j = 0; j < b; j++)
			memcpy(dst + (j * a + i) * d, src + (i * b + j) * d, (size_t)d * sizeof(float));
}

/* ==== the module ================================================================= */

static int64_t in_of(const rnn *r, int64_t k) { return k == 0 ? r->nin : r->h; }
static ln_tensor *param(rnn *r, int64_t k, int which)
{
	return &r->base.param[k * PARAMS_PER_LAYER + which];
}
static ln_tensor *grad(rnn *r, int64_t k, int which)
{
	return &r->base.grad[k * PARAMS_PER_LAYER + which];
}
static bool dropout_on(const rnn *r) { return r->base.training && r->dropout > 0; }

/* The input of layer k in the last forward: (T*N, in_of(k)). */
static const float *layer_input(rnn *r, int64_t k, int64_t n)
{
	if (k == 0)
		return ln_tensor_data(&r->xt);
	layer_buf *below = &r->lb[k - 1];
	return below->dropped ? ln_tensor_data(&below->drop)
	                      : ln_tensor_data(&below->hs) + n * r->h;
}

/* The buffers of one forward over T steps of N: LN_ENOMEM, or LN_OK. */
static ln_status ensure_forward(rnn *r, int64_t n, int64_t t, ln_error *err)
{
	int64_t hd = r->h, gh = r->gates * hd;
	ln_status s = ln_tensor_ensure(&r->xt, 3, (int64_t[]){t, n, r->nin}, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&r->whht, 2, (int64_t[]){hd, gh}, err);
	for (int64_t k = 0; k < r->layers && s == LN_OK; k++) {
		layer_buf *b = &r->lb[k];
		s = ln_tensor_ensure(&b->g, 3, (int64_t[]){t, n, gh}, err);
		if (s == LN_OK)
			s = ln_tensor_ensure(&b->hs, 3, (int64_t[]){t + 1, n, hd}, err);
		if (s == LN_OK && r->kind == LN_RNN_LSTM)
			s = ln_tensor_ensure(&b->cs, 3, (int64_t[]){t + 1, n, hd}, err);
		if (s == LN_OK && r->kind == LN_RNN_GRU)
			s = ln_tensor_ensure(&b->hh, 3, (int64_t[]){t, n, gh}, err);
		if (s == LN_OK && dropout_on(r) && k + 1 < r->layers) {
			s = ln_tensor_ensure(&b->mask, 3, (int64_t[]){t, n, hd}, err);
			if (s == LN_OK)
				s = ln_tensor_ensure(&b->drop, 3, (int64_t[]){t, n, hd}, err);
		}
	}
	int64_t st[3] = {r->layers, n, hd};
	if (s == LN_OK)
		s = ln_tensor_ensure(&r->base.output, 3, (int64_t[]){n, t, hd}, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&r->hidden, 3, st, err);
	if (s == LN_OK && r->kind == LN_RNN_LSTM)
		s = ln_tensor_ensure(&r->cell, 3, st, err);
	return s;
}

/* ---- the per-step recurrent products ----
 *
 * Each step multiplies by W_hh (G*h, h): forward h_{t-1} W_hh^T, backward
 * dG_t W_hh.  ln_gemm packs a transposed B, and an untransposed one of
 * more than a few ten thousand floats, on every call, which at T steps
 * of a few rows each costs about as much as the arithmetic.  So forward
 * multiplies by a transposed copy made once per layer and forward, and
 * both split the product so that each call's B (k times its columns)
 * stays within STEP_B_FLOATS, which ln_gemm reads in place. */
#define STEP_B_FLOATS (32 * 1024)

/* C (n, gh) = h (n, hd) whht (hd, gh) + beta C, by blocks of columns */
static void step_forward_product(float *c, const float *h, const float *whht, int64_t n,
                                 int64_t hd, int64_t gh, float beta)
{
	int64_t w = STEP_B_FLOATS / hd / 16 * 16;
	w = w < 16 ? 16 : w;
	for (int64_t j = 0; j < gh; j += w)
		ln_gemm(false, false, n, gh - j < w ? gh - j : w, hd, 1.0f, h, hd, whht + j, gh, beta,
		        c + j, gh);
}

/* dh (n, hd) += dg (n, gh) whh (gh, hd), by blocks of the inner dimension */
static void step_backward_product(float *dh, const float *dg, const float *whh, int64_t n,
                                  int64_t hd, int64_t gh)
{
	int64_t kc = STEP_B_FLOATS / hd;
	kc = kc < 1 ? 1 : kc;
	for (int64_t p = 0; p < gh; p += kc)
		ln_gemm(false, false, n, hd, gh - p < kc ? gh - p : kc, 1.0f, dg + p, gh, whh + p * hd,
		        hd, 1.0f, dh, hd);
}

/* Layer k over T steps of N rows: X (T*N, in) in, its buffers filled. */
static void layer_forward(rnn *r, int64_t k, const float *x, int64_t n, int64_t t)
{
	layer_buf *b = &r->lb[k];
	int64_t hd = r->h, gh = r->gates * hd, in = in_of(r, k), rows = n * t;
	const float *wih = ln_tensor_data(param(r, k, W_IH)), *whh = ln_tensor_data(param(r, k, W_HH));
	const float *bih = ln_tensor_data(param(r, k, B_IH)), *bhh = ln_tensor_data(param(r, k, B_HH));
	float *g = ln_tensor_data(&b->g), *hs = ln_tensor_data(&b->hs);
	/* G = X W_ih^T + bias: the bias rows first, then the product adds */
	for (int64_t j = 0; j < gh; j++)
		r->bias[j] = r->kind == LN_RNN_GRU ? bih[j] : bih[j] + bhh[j];
	for (int64_t i = 0; i < rows; i++)
		memcpy(g + i * gh, r->bias, (size_t)gh * sizeof(float));
	ln_gemm(false, true, rows, gh, in, 1.0f, x, in, wih, in, 1.0f, g, gh);
	float *whht = ln_tensor_data(&r->whht);
	for (int64_t i = 0; i < gh; i++)
		for (int64_t j = 0; j < hd; j++)
			whht[j * gh + i] = whh[i * hd + j];
	for (int64_t s = 0; s < t; s++) {
		float *gs = g + s * n * gh, *hp = hs + s * n * hd, *hn = hs + (s + 1) * n * hd;
		switch (r->kind) {
		case LN_RNN_TANH:
		case LN_RNN_RELU:
			step_forward_product(gs, hp, whht, n, hd, gh, 1.0f);
			rnn_cell_forward(hn, gs, n * hd, r->kind == LN_RNN_RELU);
			break;
		case LN_RNN_LSTM: {
			float *cs = ln_tensor_data(&b->cs);
			step_forward_product(gs, hp, whht, n, hd, gh, 1.0f);
			lstm_cell_forward(gs, cs + (s + 1) * n * hd, hn, cs + s * n * hd, n, hd);
			break;
		}
		case LN_RNN_GRU: {
			float *hh = ln_tensor_data(&b->hh) + s * n * gh;
			step_forward_product(hh, hp, whht, n, hd, gh, 0.0f);
			gru_cell_forward(gs, hh, hn, bhh, hp, n, hd);
			break;
		}
		}
	}
}

/* mask (k) = 1/(1-p) or 0, drawn from the lunet rng;  y (k) = x * mask */
static void dropout_draw(float *y, float *mask, const float *x, double p, int64_t k)
{
	float scale = (float)(1.0 / (1.0 - p));
	for (int64_t i = 0; i < k; i++) {
		mask[i] = ln_rng_uniform(ln_rng_global()) < p ? 0.0f : scale;
		y[i] = x[i] * mask[i];
	}
}

/* {N,T,nin} -> {N,T,h} */
static ln_status rnn_forward(ln_module *m, const ln_tensor *x, ln_error *err)
{
	rnn *r = (rnn *)m;
	if (x->ndim != 3 || x->shape[2] != r->nin) {
		char got[128];
		return ln_fail(err, LN_ESHAPE, "expected input of shape {N,T,%lld}, got %s",
		               (long long)r->nin, ln_tensor_shape_str(x, got, sizeof got));
	}
	int64_t n = x->shape[0], t = x->shape[1], hd = r->h;
	if (r->stateful && r->have_state && r->hidden.shape[1] != n)
		return ln_fail(err, LN_ESHAPE, "the state kept from the last forward is for a batch of "
		               "%lld, got a batch of %lld (reset_state() starts afresh)",
		               (long long)r->hidden.shape[1], (long long)n);
	if (x->storage == m->output.storage)
		return ln_fail(err, LN_EARG, "the input is this layer's own output buffer; pass a clone");
	ln_status s = ensure_forward(r, n, t, err);
	if (s != LN_OK) {
		r->have_state = false;  /* hidden may have been reallocated */
		return s;
	}
	swap01(ln_tensor_data(&r->xt), ln_tensor_data(x), n, t, r->nin);
	bool carry = r->stateful && r->have_state;
	for (int64_t k = 0; k < r->layers; k++) {
		layer_buf *b = &r->lb[k];
		size_t state = (size_t)(n * hd) * sizeof(float);
		float *h0 = ln_tensor_data(&b->hs);
		if (carry)
			memcpy(h0, ln_tensor_data(&r->hidden) + k * n * hd, state);
		else
			memset(h0, 0, state);
		if (r->kind == LN_RNN_LSTM) {
			float *c0 = ln_tensor_data(&b->cs);
			if (carry)
				memcpy(c0, ln_tensor_data(&r->cell) + k * n * hd, state);
			else
				memset(c0, 0, state);
		}
		layer_forward(r, k, layer_input(r, k, n), n, t);
		b->dropped = dropout_on(r) && k + 1 < r->layers;
		if (b->dropped)
			dropout_draw(ln_tensor_data(&b->drop), ln_tensor_data(&b->mask),
			             ln_tensor_data(&b->hs) + n * hd, r->dropout, t * n * hd);
		memcpy(ln_tensor_data(&r->hidden) + k * n * hd, ln_tensor_data(&b->hs) + t * n * hd,
		       state);
		if (r->kind == LN_RNN_LSTM)
			memcpy(ln_tensor_data(&r->cell) + k * n * hd, ln_tensor_data(&b->cs) + t * n * hd,
			       state);
	}
	r->have_state = true;
	swap01(ln_tensor_data(&m->output), ln_tensor_data(&r->lb[r->layers - 1].hs) + n * hd, t, n,
	       hd);
	return LN_OK;
}

/* g (n) += sums (n), or = sums when g is a pending zero */
static void add_bias_grad(ln_tensor *g, const float *sums, int64_t n)
{
	bool zero = ln_tensor_take_zero(g);
	float *d = ln_tensor_data(g);
	for (int64_t j = 0; j < n; j++)
		d[j] = zero ? sums[j] : d[j] + sums[j];
}

/* Layer k backward: dy (T,N,h) the gradient of its outputs (used up: the
 * recurrent gradients are added into it step by step); fills dg (and dhh)
 * and adds the parameter gradients.  x is its input (T*N, in). */
static void layer_backward(rnn *r, int64_t k, const float *x, int64_t n, int64_t t)
{
	layer_buf *b = &r->lb[k];
	int64_t hd = r->h, gh = r->gates * hd, in = in_of(r, k), rows = n * t;
	const float *whh = ln_tensor_data(param(r, k, W_HH));
	const float *g = ln_tensor_data(&b->g), *hs = ln_tensor_data(&b->hs);
	float *dy = ln_tensor_data(&r->dy), *dg = ln_tensor_data(&r->dg);
	/* the gradient the recurrent product sends back: into dhh for GRU
	 * (dhh differs from dg in its n gate), into dg otherwise */
	float *drec = r->kind == LN_RNN_GRU ? ln_tensor_data(&r->dhh) : dg;
	if (r->kind == LN_RNN_LSTM)
		memset(ln_tensor_data(&r->dc), 0, (size_t)(n * hd) * sizeof(float));
	for (int64_t s = t - 1; s >= 0; s--) {
		const float *gs = g + s * n * gh, *hn = hs + (s + 1) * n * hd, *hp = hs + s * n * hd;
		float *dgs = dg + s * n * gh, *dys = dy + s * n * hd;
		float *dprev = s > 0 ? dy + (s - 1) * n * hd : NULL;
		switch (r->kind) {
		case LN_RNN_TANH:
		case LN_RNN_RELU:
			rnn_cell_backward(dgs, hn, dys, n * hd, r->kind == LN_RNN_RELU);
			break;
		case LN_RNN_LSTM: {
			const float *cs = ln_tensor_data(&b->cs);
			lstm_cell_backward(dgs, ln_tensor_data(&r->dc), gs, cs + (s + 1) * n * hd,
			                   cs + s * n * hd, dys, n, hd);
			break;
		}
		case LN_RNN_GRU:
			gru_cell_backward(dgs, drec + s * n * gh, dprev, gs,
			                  ln_tensor_data(&b->hh) + s * n * gh, hp, dys, n, hd);
			break;
		}
		if (dprev)  /* dy_{t-1} += drec_t W_hh */
			step_backward_product(dprev, drec + s * n * gh, whh, n, hd, gh);
	}
	/* the weights, over all steps at once; a pending zero is overwritten */
	ln_tensor *gw = grad(r, k, W_HH);
	bool zero = ln_tensor_take_zero(gw);
	ln_gemm(true, false, gh, hd, rows, 1.0f, drec, gh, hs, hd, zero ? 0.0f : 1.0f,
	        ln_tensor_data(gw), hd);
	gw = grad(r, k, W_IH);
	zero = ln_tensor_take_zero(gw);
	ln_gemm(true, false, gh, in, rows, 1.0f, dg, gh, x, in, zero ? 0.0f : 1.0f,
	        ln_tensor_data(gw), in);
	/* the biases: column sums of dg and drec, one pass when they are one */
	if (drec == dg) {
		ln_colsum_add(r->bias, dg, rows, gh, true);
		add_bias_grad(grad(r, k, B_IH), r->bias, gh);
		add_bias_grad(grad(r, k, B_HH), r->bias, gh);
	} else {
		ln_tensor *gb = grad(r, k, B_IH);
		ln_colsum_add(ln_tensor_data(gb), dg, rows, gh, ln_tensor_take_zero(gb));
		gb = grad(r, k, B_HH);
		ln_colsum_add(ln_tensor_data(gb), drec, rows, gh, ln_tensor_take_zero(gb));
	}
}

static ln_status rnn_backward(ln_module *m, const ln_tensor *x, const ln_tensor *gy,
                              ln_error *err)
{
	rnn *r = (rnn *)m;
	int64_t n = x->shape[0], t = x->shape[1], hd = r->h, gh = r->gates * hd;
	if (gy->storage == m->grad_input.storage)
		return ln_fail(err, LN_EARG, "the gradient is this layer's own grad_input buffer; pass a clone");
	ln_status s = ln_tensor_ensure(&r->dg, 3, (int64_t[]){t, n, gh}, err);
	if (s == LN_OK)
		s = ln_tensor_ensure(&r->dy, 3, (int64_t[]){t, n, hd}, err);
	if (s == LN_OK && r->kind == LN_RNN_GRU)
		s = ln_tensor_ensure(&r->dhh, 3, (int64_t[]){t, n, gh}, err);
	if (s == LN_OK && r->kind == LN_RNN_LSTM)
		s = ln_tensor_ensure(&r->dc, 2, (int64_t[]){n, hd}, err);
	if (s == LN_OK && m->want_gx)
		s = ln_tensor_ensure(&r->dx, 3, (int64_t[]){t, n, r->nin}, err);
	if (s == LN_OK && m->want_gx)
		s = ln_tensor_ensure(&m->grad_input, 3, x->shape, err);
	if (s != LN_OK)
		return s;
	float *dy = ln_tensor_data(&r->dy), *dg = ln_tensor_data(&r->dg);
	swap01(dy, ln_tensor_data(gy), n, t, hd);
	for (int64_t k = r->layers - 1; k >= 0; k--) {
		layer_backward(r, k, layer_input(r, k, n), n, t);
		const float *wih = ln_tensor_data(param(r, k, W_IH));
		if (k > 0) {
			/* the layer below's dy = dG W_ih, through its dropout mask */
			ln_gemm(false, false, n * t, hd, gh, 1.0f, dg, gh, wih, hd, 0.0f, dy, hd);
			layer_buf *below = &r->lb[k - 1];
			if (below->dropped) {
				const float *mask = ln_tensor_data(&below->mask);
				for (int64_t i = 0; i < t * n * hd; i++)
					dy[i] *= mask[i];
			}
		} else if (m->want_gx) {
			float *dx = ln_tensor_data(&r->dx);
			ln_gemm(false, false, n * t, r->nin, gh, 1.0f, dg, gh, wih, r->nin, 0.0f, dx, r->nin);
			swap01(ln_tensor_data(&m->grad_input), dx, t, n, r->nin);
		}
	}
	return LN_OK;
}

/* ==== naive reference ================================================================ */

static double sigmoid_d(double v) { return 1.0 / (1.0 + exp(-v)); }

/* One step of one layer for one sample, in double: pre (G*h) the
 * pre-activations W_ih x + b_ih (for GRU) or + b_hh too (RNN, LSTM) plus
 * the recurrent part; see the equations at the top.  Writes the gates
 * act (G*h), and h (and c).  For GRU, rec (3h) = W_hh hp + b_hh. */
static void naive_cell(ln_rnn_kind kind, double *act, double *h, double *c, const double *pre,
                       const double *rec, const double *hp, const double *cp, int64_t hd)
{
	for (int64_t j = 0; j < hd; j++) {
		switch (kind) {
		case LN_RNN_TANH: act[j] = h[j] = tanh(pre[j]); break;
		case LN_RNN_RELU: act[j] = h[j] = pre[j] > 0 ? pre[j] : 0; break;
		case LN_RNN_LSTM: {
			double i = sigmoid_d(pre[j]), f = sigmoid_d(pre[hd + j]);
			double g = tanh(pre[2 * hd + j]), o = sigmoid_d(pre[3 * hd + j]);
			act[j] = i, act[hd + j] = f, act[2 * hd + j] = g, act[3 * hd + j] = o;
			c[j] = f * cp[j] + i * g;
			h[j] = o * tanh(c[j]);
			break;
		}
		case LN_RNN_GRU: {
			double r = sigmoid_d(pre[j] + rec[j]), z = sigmoid_d(pre[hd + j] + rec[hd + j]);
			double nn = tanh(pre[2 * hd + j] + r * rec[2 * hd + j]);
			act[j] = r, act[hd + j] = z, act[2 * hd + j] = nn;
			h[j] = (1 - z) * nn + z * hp[j];
			break;
		}
		}
	}
}

/* The gates of kind (G). */
static int64_t gates_of(ln_rnn_kind kind)
{
	return kind == LN_RNN_LSTM ? 4 : kind == LN_RNN_GRU ? 3 : 1;
}

/* Everything one naive forward computes, kept for its backward: per
 * sample and step (index (i*T + s)), the gates (G*h), h and c (h each),
 * the recurrent part rec (G*h: W_hh h_{t-1} + b_hh), in double. */
typedef struct naive_run {
	double *act, *h, *c, *rec, *hp0, *cp0;
} naive_run;

static void naive_free(naive_run *nr)
{
	ln_free(nr->act);
	ln_free(nr->h);
	ln_free(nr->c);
	ln_free(nr->rec);
	ln_free(nr->hp0);
	ln_free(nr->cp0);
}

/* h_{t-1} (or c_{t-1}) of sample i at step s */
static const double *prev_of(const double *v, const double *v0, int64_t i, int64_t s, int64_t t,
                             int64_t hd)
{
	return s == 0 ? v0 + i * hd : v + (i * t + s - 1) * hd;
}

static ln_status naive_run_forward(naive_run *nr, ln_rnn_kind kind, const float *x,
                                   const float *h0, const float *c0, const float *wih,
                                   const float *whh, const float *bih, const float *bhh, int64_t n,
                                   int64_t t, int64_t nin, int64_t hd)
{
	int64_t gh = gates_of(kind) * hd, steps = n * t;
	*nr = (naive_run){
		ln_malloc((size_t)(steps * gh) * sizeof(double)),
		ln_malloc((size_t)(steps * hd) * sizeof(double)),
		ln_malloc((size_t)(steps * hd) * sizeof(double)),
		ln_malloc((size_t)(steps * gh) * sizeof(double)),
		ln_malloc((size_t)(n * hd) * sizeof(double)),
		ln_malloc((size_t)(n * hd) * sizeof(double)),
	};
	double *pre = ln_malloc((size_t)gh * sizeof(double));
	if (!nr->act || !nr->h || !nr->c || !nr->rec || !nr->hp0 || !nr->cp0 || !pre) {
		naive_free(nr);
		ln_free(pre);
		return LN_ENOMEM;
	}
	for (int64_t k = 0; k < n * hd; k++) {
		nr->hp0[k] = h0 ? h0[k] : 0;
		nr->cp0[k] = c0 ? c0[k] : 0;
	}
	for (int64_t i = 0; i < n; i++)
		for (int64_t s = 0; s < t; s++) {
			const double *hp = prev_of(nr->h, nr->hp0, i, s, t, hd);
			const double *cp = prev_of(nr->c, nr->cp0, i, s, t, hd);
			const float *xs = x + (i * t + s) * nin;
			double *rec = nr->rec + (i * t + s) * gh;
			for (int64_t j = 0; j < gh; j++) {
				double a = bih[j], b = bhh[j];
				for (int64_t q = 0; q < nin; q++)
					a += (double)wih[j * nin + q] * xs[q];
				for (int64_t q = 0; q < hd; q++)
					b += (double)whh[j * hd + q] * hp[q];
				rec[j] = b;
				pre[j] = kind == LN_RNN_GRU ? a : a + b;
			}
			naive_cell(kind, nr->act + (i * t + s) * gh, nr->h + (i * t + s) * hd,
			           nr->c + (i * t + s) * hd, pre, rec, hp, cp, hd);
		}
	ln_free(pre);
	return LN_OK;
}

ln_status ln_rnn_forward_naive(ln_rnn_kind kind, float *y, float *ht, float *ct, const float *x,
                               const float *h0, const float *c0, const float *wih,
                               const float *whh, const float *bih, const float *bhh, int64_t n,
                               int64_t t, int64_t nin, int64_t hd)
{
	naive_run nr;
	ln_status s = naive_run_forward(&nr, kind, x, h0, c0, wih, whh, bih, bhh, n, t, nin, hd);
	if (s != LN_OK)
		return s;
	for (int64_t k = 0; k < n * t * hd; k++)
		y[k] = (float)nr.h[k];
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < hd; j++) {
			ht[i * hd + j] = (float)nr.h[(i * t + t - 1) * hd + j];
			if (ct)
				ct[i * hd + j] = (float)nr.c[(i * t + t - 1) * hd + j];
		}
	naive_free(&nr);
	return LN_OK;
}

ln_status ln_rnn_backward_naive(ln_rnn_kind kind, float *dx, float *dwih, float *dwhh,
                                float *dbih, float *dbhh, const float *dy, const float *x,
                                const float *h0, const float *c0, const float *wih,
                                const float *whh, const float *bih, const float *bhh, int64_t n,
                                int64_t t, int64_t nin, int64_t hd)
{
	naive_run nr;
	ln_status st = naive_run_forward(&nr, kind, x, h0, c0, wih, whh, bih, bhh, n, t, nin, hd);
	if (st != LN_OK)
		return st;
	int64_t gh = gates_of(kind) * hd;
	/* per sample, backwards through time: dh (h), dc (h), dpre (G*h: the
	 * gradient of W_ih x + b_ih), drec (G*h: of W_hh h + b_hh) */
	double *dh = ln_calloc((size_t)hd, sizeof(double)), *dc = ln_calloc((size_t)hd, sizeof(double));
	double *dpre = ln_malloc((size_t)gh * sizeof(double)), *drec = ln_malloc((size_t)gh * sizeof(double));
	double *dhn = ln_malloc((size_t)hd * sizeof(double));
	if (!dh || !dc || !dpre || !drec || !dhn) {
		st = LN_ENOMEM;
		goto done;
	}
	for (int64_t i = 0; i < n; i++) {
		memset(dh, 0, (size_t)hd * sizeof(double));
		memset(dc, 0, (size_t)hd * sizeof(double));
		for (int64_t s = t - 1; s >= 0; s--) {
			int64_t at = i * t + s;
			const double *a = nr.act + at * gh, *rec = nr.rec + at * gh;
			const double *hp = prev_of(nr.h, nr.hp0, i, s, t, hd);
			const double *cp = prev_of(nr.c, nr.cp0, i, s, t, hd);
			for (int64_t j = 0; j < hd; j++)
				dh[j] += dy[at * hd + j];
			for (int64_t j = 0; j < hd; j++) {
				switch (kind) {
				case LN_RNN_TANH: dpre[j] = dh[j] * (1 - a[j] * a[j]); break;
				case LN_RNN_RELU: dpre[j] = a[j] > 0 ? dh[j] : 0; break;
				case LN_RNN_LSTM: {
					double ig = a[j], f = a[hd + j], g = a[2 * hd + j], o = a[3 * hd + j];
					double tc = tanh(nr.c[at * hd + j]);
					double d = dc[j] + dh[j] * o * (1 - tc * tc);
					dpre[j] = d * g * ig * (1 - ig);
					dpre[hd + j] = d * cp[j] * f * (1 - f);
					dpre[2 * hd + j] = d * ig * (1 - g * g);
					dpre[3 * hd + j] = dh[j] * tc * o * (1 - o);
					dc[j] = d * f;
					break;
				}
				case LN_RNN_GRU: {
					double r = a[j], z = a[hd + j], nn = a[2 * hd + j];
					double dn = dh[j] * (1 - z) * (1 - nn * nn);
					double dz = dh[j] * (hp[j] - nn) * z * (1 - z);
					double dr = dn * rec[2 * hd + j] * r * (1 - r);
					dpre[j] = drec[j] = dr;
					dpre[hd + j] = drec[hd + j] = dz;
					dpre[2 * hd + j] = dn;
					drec[2 * hd + j] = dn * r;
					break;
				}
				}
			}
			if (kind != LN_RNN_GRU)
				memcpy(drec, dpre, (size_t)gh * sizeof(double));
			/* parameters */
			const float *xs = x + at * nin;
			for (int64_t j = 0; j < gh; j++) {
				for (int64_t q = 0; q < nin; q++)
					dwih[j * nin + q] = (float)(dwih[j * nin + q] + dpre[j] * xs[q]);
				for (int64_t q = 0; q < hd; q++)
					dwhh[j * hd + q] = (float)(dwhh[j * hd + q] + drec[j] * hp[q]);
				dbih[j] = (float)(dbih[j] + dpre[j]);
				dbhh[j] = (float)(dbhh[j] + drec[j]);
			}
			if (dx)
				for (int64_t q = 0; q < nin; q++) {
					double v = 0;
					for (int64_t j = 0; j < gh; j++)
						v += dpre[j] * wih[j * nin + q];
					dx[at * nin + q] = (float)v;
				}
			/* dh for the step before: the recurrent product, and GRU's z path */
			for (int64_t q = 0; q < hd; q++) {
				double v = kind == LN_RNN_GRU ? dh[q] * a[hd + q] : 0;
				for (int64_t j = 0; j < gh; j++)
					v += drec[j] * whh[j * hd + q];
				dhn[q] = v;
			}
			memcpy(dh, dhn, (size_t)hd * sizeof(double));
		}
	}
done:
	ln_free(dh);
	ln_free(dc);
	ln_free(dpre);
	ln_free(drec);
	ln_free(dhn);
	naive_free(&nr);
	return st;
}

/* ==== construction ============================================================== */

static const char *const kind_name[] = {
	[LN_RNN_TANH] = "RNN", [LN_RNN_RELU] = "RNN", [LN_RNN_LSTM] = "LSTM", [LN_RNN_GRU] = "GRU",
};

/* PyTorch's names, which the state dict and files use too (the default
 * naming of state_dict.h goes through this hook) */
static int rnn_param_name(const ln_module *m, int i, char *buf, size_t size)
{
	static const char *const names[PARAMS_PER_LAYER] = {"weight_ih_l%d", "weight_hh_l%d",
	                                                    "bias_ih_l%d", "bias_hh_l%d"};
	return snprintf(buf, size, names[i % PARAMS_PER_LAYER], i / PARAMS_PER_LAYER);
}

static ln_tensor *rnn_field(ln_module *m, const char *name)
{
	rnn *r = (rnn *)m;
	if (strcmp(name, "hidden") == 0)
		return &r->hidden;
	if (strcmp(name, "cell") == 0 && r->kind == LN_RNN_LSTM)
		return &r->cell;
	return NULL;
}

static void rnn_reset_state(ln_module *m)
{
	rnn *r = (rnn *)m;
	r->have_state = false;
	if (!ln_tensor_is_empty(&r->hidden))
		ln_tensor_fill(&r->hidden, 0.0f);
	if (!ln_tensor_is_empty(&r->cell))
		ln_tensor_fill(&r->cell, 0.0f);
}

static void rnn_destroy(ln_module *m)
{
	rnn *r = (rnn *)m;
	for (int64_t k = 0; r->lb && k < r->layers; k++) {
		layer_buf *b = &r->lb[k];
		ln_tensor_release(&b->g);
		ln_tensor_release(&b->hs);
		ln_tensor_release(&b->cs);
		ln_tensor_release(&b->hh);
		ln_tensor_release(&b->mask);
		ln_tensor_release(&b->drop);
	}
	ln_free(r->lb);
	ln_free(r->bias);
	ln_tensor_release(&r->whht);
	ln_tensor_release(&r->hidden);
	ln_tensor_release(&r->cell);
	ln_tensor_release(&r->xt);
	ln_tensor_release(&r->dg);
	ln_tensor_release(&r->dhh);
	ln_tensor_release(&r->dy);
	ln_tensor_release(&r->dx);
	ln_tensor_release(&r->dc);
}

/* The class of kind; the config layout is the class's (config_names). */
static const ln_module_class *class_of(ln_rnn_kind kind)
{
	return kind == LN_RNN_LSTM ? &ln_lstm_class : kind == LN_RNN_GRU ? &ln_gru_class
	                                                                 : &ln_rnn_class;
}

ln_status ln_rnn_new(ln_module **out, const ln_module_build *ctx, ln_rnn_kind kind, int64_t nin,
                     int64_t hidden, const ln_rnn_options *o, ln_error *err)
{
	ln_rnn_options def = {.layers = 1};
	if (!o)
		o = &def;
	if (nin < 1 || hidden < 1)
		return ln_fail(err, LN_ERANGE, "expected sizes nin >= 1 and hidden >= 1, got %lld and %lld",
		               (long long)nin, (long long)hidden);
	if (o->layers < 1 || o->layers > LN_RNN_MAX_LAYERS)
		return ln_fail(err, LN_ERANGE, "expected layers in 1..%d, got %lld", LN_RNN_MAX_LAYERS,
		               (long long)o->layers);
	if (!(o->dropout >= 0 && o->dropout < 1))
		return ln_fail(err, LN_ERANGE, "expected dropout in [0,1), got %g", ln_shown(o->dropout));
	int64_t gates = gates_of(kind);
	if (hidden > INT64_MAX / 4 / gates)
		return ln_fail(err, LN_ERANGE, "hidden size %lld is too large", (long long)hidden);
	ln_module *m;
	ln_status s = ln_module_alloc(&m, class_of(kind), err);
	if (s != LN_OK)
		return s;
	rnn *r = (rnn *)m;
	r->kind = kind;
	r->nin = nin;
	r->h = hidden;
	r->layers = o->layers;
	r->gates = gates;
	r->dropout = o->dropout;
	r->stateful = o->stateful;
	double *c = m->config;
	c[0] = (double)nin;
	c[1] = (double)hidden;
	c[2] = (double)o->layers;
	c[3] = o->dropout;
	c[4] = o->stateful ? 1 : 0;
	m->nconfig = 5;
	if (kind == LN_RNN_TANH || kind == LN_RNN_RELU) {
		c[5] = kind == LN_RNN_RELU ? 1 : 0;
		m->nconfig = 6;
	}
	r->lb = ln_calloc((size_t)o->layers, sizeof *r->lb);
	r->bias = ln_malloc((size_t)(gates * hidden) * sizeof(float));
	if (!r->lb || !r->bias)
		s = ln_fail(err, LN_ENOMEM, "out of memory for a %s of %lld layers", kind_name[kind],
		            (long long)o->layers);
	/* PyTorch's initialisation: every parameter U(-1/sqrt(h), 1/sqrt(h)) */
	double a = 1.0 / sqrt((double)hidden);
	for (int64_t k = 0; k < o->layers && s == LN_OK; k++) {
		int64_t in = k == 0 ? nin : hidden, gh = gates * hidden;
		const int64_t shapes[PARAMS_PER_LAYER][2] = {{gh, in}, {gh, hidden}, {gh, 0}, {gh, 0}};
		for (int w = 0; w < PARAMS_PER_LAYER && s == LN_OK; w++) {
			char name[LN_PARAM_NAME_MAX];
			rnn_param_name(m, (int)(k * PARAMS_PER_LAYER + w), name, sizeof name);
			s = ln_module_add_param(m, ctx, name, LN_PARAM_ZEROS, w < 2 ? 2 : 1, shapes[w], err);
			if (s == LN_OK)
				s = ln_init_uniform(&m->param[m->nparams - 1], ln_build_rng(ctx), -a, a, err);
		}
	}
	if (s != LN_OK) {
		ln_module_release(m);
		return s;
	}
	*out = m;
	return LN_OK;
}

static ln_status rnn_create(ln_module **out, const ln_module_class *cls,
                            const ln_module_build *ctx, const double *config, ln_error *err)
{
	int64_t nin, hidden, layers, stateful, relu = 0;
	ln_status s = ln_config_int(&nin, config[0], "nin", 1, INT64_MAX, err);
	if (s == LN_OK)
		s = ln_config_int(&hidden, config[1], "nhidden", 1, INT64_MAX, err);
	if (s == LN_OK)
		s = ln_config_int(&layers, config[2], "layers", 1, LN_RNN_MAX_LAYERS, err);
	if (s == LN_OK)
		s = ln_config_int(&stateful, config[4], "stateful", 0, 1, err);
	if (s == LN_OK && cls == &ln_rnn_class)
		s = ln_config_int(&relu, config[5], "nonlinearity", 0, 1, err);
	if (s != LN_OK)
		return s;
	ln_rnn_kind kind = cls == &ln_lstm_class ? LN_RNN_LSTM : cls == &ln_gru_class ? LN_RNN_GRU
	                 : relu ? LN_RNN_RELU : LN_RNN_TANH;
	ln_rnn_options o = {.layers = layers, .dropout = config[3], .stateful = stateful != 0};
	return ln_rnn_new(out, ctx, kind, nin, hidden, &o, err);
}

static int rnn_describe(const ln_module *m, char *buf, size_t size)
{
	const rnn *r = (const rnn *)m;
	char extra[128] = "";
	size_t n = 0;
	if (r->layers > 1)
		n += (size_t)snprintf(extra + n, sizeof extra - n, ", layers=%lld", (long long)r->layers);
	if (r->kind == LN_RNN_RELU)
		n += (size_t)snprintf(extra + n, sizeof extra - n, ", nonlinearity=relu");
	if (r->dropout > 0)
		n += (size_t)snprintf(extra + n, sizeof extra - n, ", dropout=%g", r->dropout);
	if (r->stateful)
		snprintf(extra + n, sizeof extra - n, ", stateful");
	return snprintf(buf, size, "%s(%lld -> %lld%s)", kind_name[r->kind], (long long)r->nin,
	                (long long)r->h, extra);
}

#define RNN_CLASS(nm, ...)                                                                  \
	{                                                                                       \
		.name = nm, .size = sizeof(rnn), .forward = rnn_forward, .backward = rnn_backward, \
		.destroy = rnn_destroy,                                                             \
		.config_names = {"nin", "nhidden", "layers", "dropout", "stateful", __VA_ARGS__},  \
		.create = rnn_create, .describe = rnn_describe,                                     \
		.param_name = rnn_param_name, .field = rnn_field, .reset_state = rnn_reset_state,   \
	}

const ln_module_class ln_rnn_class = RNN_CLASS("RNN", "nonlinearity", NULL);
const ln_module_class ln_lstm_class = RNN_CLASS("LSTM", NULL);
const ln_module_class ln_gru_class = RNN_CLASS("GRU", NULL);
