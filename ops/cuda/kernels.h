// The CUDA kernels of the ops, one launcher each, implemented in ops/cuda/*.cu and linked only in a build with
// VT_CUDA (ops call them inside on_cuda, see autograd/device.h). Conventions, as the CPU kernels': outputs first,
// then inputs, then sizes; float32 data (float64 stays on the CPU), int64 indices and labels; every launcher
// queues its work on the one stream and returns without waiting for it; a null output pointer means "not wanted".
#pragma once

#include <cstdint>

#include "autograd/strided.h"
#include "ops/attention_kernels.h"
#include "ops/conv_kernels.h"

namespace vt::cuda {

// ---- copies (ops/cuda/copy.cu) ----

// dst[...] = src[...] over a plan of (dst, src), offsets in elements of each one's dtype, converting the dtype.
void copy_strided(void* dst, DType dst_dtype, const void* src, DType src_dtype, const StridedPlan<2>& plan);
// dst[...] = value (converted to dtype as the CPU's fill_ converts it): no upload of the value, no host wait.
void fill_strided(void* dst, DType dtype, double value, const StridedPlan<1>& plan);

// ---- elementwise (ops/cuda/elementwise.cu): one strided kernel for every functor of elementwise_functors.h ----

template <class F>
void map_unary(float* y, const float* x, const StridedPlan<2>& plan, const F& f);  // y = f(x)
template <class F>
void map_binary(float* y, const float* a, const float* b, const StridedPlan<3>& plan, const F& f);  // y = f(a, b)

// ---- reductions (ops/cuda/reduce.cu); x contiguous, sums accumulated in double as on the CPU ----

void sum_rows(float* y, const float* x, int64_t rows, int64_t cols);     // y[r] = sum_c x[r, c]
void sum_columns(float* y, const float* x, int64_t rows, int64_t cols);  // y[r] = sum_c x[c, r], x (cols, rows)
// y[r] = max_c x[r, c], index[r] = its first c (a NaN wins, as on the CPU).
void max_rows(float* y, int64_t* index, const float* x, int64_t rows, int64_t cols);
// dx (rows, cols) = 0 but dx[r, index[r]] = dy[r]: the gradient of max_rows.
void max_rows_backward(float* dx, const float* dy, const int64_t* index, int64_t rows, int64_t cols);
// count[0] += the rows whose first maximal logit is at labels[r]: accuracy counted on the device.
void count_correct(int64_t* count, const float* logits, const int64_t* labels, int64_t rows, int64_t cols);

// ---- softmax and cross entropy (ops/cuda/softmax.cu), one row per softmax, as ops/softmax_kernels.h ----

void softmax_forward(float* y, const float* x, int64_t rows, int64_t cols);
void softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols);
void log_softmax_forward(float* y, const float* x, int64_t rows, int64_t cols);
void log_softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols);
// loss[0] = mean over rows of each row's cross entropy, and logsumexp (rows) for backward; target is labels
// (rows) when `labels` is not null, else probabilities (rows, cols). The loss stays on the device.
void cross_entropy_forward(float* loss, double* logsumexp, const float* logits, const int64_t* labels,
                           const float* probabilities, int64_t rows, int64_t cols, double smoothing);
// dlogits = dloss[0] / rows * (p sum_c q_c - q); dtarget (probability targets only, or null)
// = dloss[0] / rows * (1 - smoothing) * (logsumexp - logits). dloss is read on the device.
void cross_entropy_backward(float* dlogits, float* dtarget, const float* dloss, const float* logits,
                            const double* logsumexp, const int64_t* labels, const float* probabilities, int64_t rows,
                            int64_t cols, double smoothing);

// ---- layer norm (ops/cuda/layer_norm.cu), as ops/layer_norm_kernels.h ----

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight, const float* bias,
                        int64_t rows, int64_t cols, double eps);
void layer_norm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x, const float* mean,
                         const float* rstd, const float* weight, int64_t rows, int64_t cols);

// ---- random masks (ops/cuda/dropout.cu): the CPU's counters and keep rule, so both devices draw one mask ----

void dropout_forward(float* y, float* mask, const float* x, int64_t n, double p, uint64_t key, uint64_t first);
void drop_mask(float* mask, int64_t n, double p, uint64_t key, uint64_t first);

// ---- convolution and matrix products (ops/cuda/conv.cu, ops/cuda/matmul.cu) ----

void im2col(float* patches, const float* x, const ConvGeometry& g);
void col2im(float* dx, const float* patches, const ConvGeometry& g);
void fill_rows(float* y, const float* row, int64_t rows, int64_t cols);  // y[r, :] = row: a bias before a GEMM
// Row-major C (m, n) = alpha op(A) op(B) + beta C on cuBLAS, as the CPU's vt::gemm; `batch` products whose
// operands lie stride_a, stride_b and stride_c elements apart.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc, int64_t batch = 1, int64_t stride_a = 0,
          int64_t stride_b = 0, int64_t stride_c = 0);

// ---- attention (ops/cuda/attention.cu): fused, flash-attention style, no (N, N) matrix in memory ----

// out (B, H, N, hd) = softmax(q k^T scale) v, and logsumexp (B, H, N) of each row of scores for backward.
void attention_forward(float* out, float* logsumexp, const float* q, const float* k, const float* v,
                       HeadStrides out_strides, HeadStrides q_strides, HeadStrides k_strides, HeadStrides v_strides,
                       AttentionSizes sizes, float scale);
// dq, dk, dv from dout and the forward's out and logsumexp, recomputing the probabilities; delta (B, H, N) is
// scratch for rowsum(dout * out).
void attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout, const float* out,
                        const float* logsumexp, const float* q, const float* k, const float* v, HeadStrides dq_strides,
                        HeadStrides dk_strides, HeadStrides dv_strides, HeadStrides dout_strides,
                        HeadStrides out_strides, HeadStrides q_strides, HeadStrides k_strides, HeadStrides v_strides,
                        AttentionSizes sizes, float scale);

// ---- gathers (ops/cuda/copy.cu) ----

// y (outer, K, inner) = x (outer, n, inner) at the K indices; dx (outer, n, inner) = the sum of dy rows per index.
void index_select_forward(float* y, const float* x, const int64_t* index, int64_t outer, int64_t n, int64_t k,
                          int64_t inner);
void index_select_backward(float* dx, const float* dy, const int64_t* index, int64_t outer, int64_t n, int64_t k,
                           int64_t inner);

// ---- optimizers (ops/cuda/optim.cu): every parameter in one launch ----

// One parameter's buffers and its hyperparameters, rounded to float by the host exactly as the CPU kernels
// round them (nn/optim.cpp), so that both devices run the same arithmetic.
struct ParamUpdate {
  float* param;
  const float* grad;
  float* first;   // AdamW's exp_avg; SGD's momentum buffer (null without momentum)
  float* second;  // AdamW's exp_avg_sq
  int64_t n;
  float lr, weight_decay;           // SGD
  float decay, step_size, bias_correction2_sqrt;  // AdamW: 1 - lr wd, lr / (1 - b1^t), sqrt(1 - b2^t)
};
// `updates` is a host array of `count`; it is copied to the device (no synchronisation) before the launch.
struct AdamWConstants {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps;  // each rounded from double, as on the CPU
};
void adamw_update(const ParamUpdate* updates, int count, const AdamWConstants& constants);
void sgd_update(const ParamUpdate* updates, int count, float momentum, bool nesterov);
// norm[0] = sqrt of the sum of every gradient's squares (summed in double), and when it exceeds max_norm every
// gradient is scaled by max_norm / (norm + 1e-6), the factor read on the device: the norm never reaches the host.
// `grads` and `sizes` are host arrays of `count`.
void clip_grad_norm(float* norm, float* const* grads, const int64_t* sizes, int count, double max_norm);
// ema = decay ema + (1 - decay) param, over `count` tensors (host arrays).
void ema_update(float* const* ema, const float* const* params, const int64_t* sizes, int count, double decay);

}  // namespace vt::cuda
