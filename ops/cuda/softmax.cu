// Softmax, log_softmax and cross entropy on the GPU: one block per row (rows strided over the grid). The
// numerics are the CPU kernels' (ops/softmax_kernels.h, ops/loss.cpp): the row's maximum is subtracted before
// exp, softmax sums in float, cross entropy works in double; the loss is reduced on the device.
#include "autograd/cuda_runtime.cuh"
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/kernels.h"

namespace vt::cuda {

namespace {

__global__ void softmax_forward_kernel(float* y, const float* x, int64_t rows, int64_t cols, bool log_output) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = xr[c] > m ? xr[c] : m;
    m = block_max(m, -INFINITY);
    float total = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) total += expf(xr[c] - m);
    total = block_sum(total);
    if (log_output) {
      const float log_total = logf(total);
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = (xr[c] - m) - log_total;
    } else {
      const float inverse = 1.0f / total;
      for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = expf(xr[c] - m) * inverse;
    }
  }
}

// softmax: dx = y (dy - sum(dy y)); log_softmax: dx = dy - exp(y) sum(dy).
__global__ void softmax_backward_kernel(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols,
                                        bool log_output) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *dyr = dy + r * cols, *yr = y + r * cols;
    float* dxr = dx + r * cols;
    float total = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) total += log_output ? dyr[c] : dyr[c] * yr[c];
    total = block_sum(total);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      dxr[c] = log_output ? dyr[c] - expf(yr[c]) * total : yr[c] * (dyr[c] - total);
  }
}

// q_c of row r: (1 - smoothing) target_c + smoothing / C, the target one-hot of a label or a probability row.
__device__ double target_weight(const int64_t* labels, const float* probabilities, int64_t r, int64_t c, int64_t cols,
                                double smoothing) {
  const double target = labels ? (c == labels[r] ? 1.0 : 0.0) : double(probabilities[r * cols + c]);
  return (1 - smoothing) * target + smoothing / double(cols);
}

// loss_r = sum_c q_c (m - x_c) + log s * sum_c q_c with m the row's max and s = sum_c exp(x_c - m).
__global__ void cross_entropy_rows(double* row_loss, double* logsumexp, const float* logits, const int64_t* labels,
                                   const float* probabilities, int64_t rows, int64_t cols, double smoothing) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = logits + r * cols;
    double m = -INFINITY;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = double(xr[c]) > m ? double(xr[c]) : m;
    m = block_max(m, double(-INFINITY));
    double total = 0, q_sum = 0, q_distance = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      total += exp(double(xr[c]) - m);
      const double q = target_weight(labels, probabilities, r, c, cols, smoothing);
      q_sum += q;
      q_distance += q * (m - double(xr[c]));
    }
    total = block_sum(total);
    q_sum = block_sum(q_sum);
    q_distance = block_sum(q_distance);
    if (threadIdx.x == 0) {
      const double log_total = log(total);
      const bool bad_label = labels && (labels[r] < 0 || labels[r] >= cols);  // reported as a NaN loss
      row_loss[r] = bad_label ? NAN : q_distance + log_total * q_sum;
      logsumexp[r] = m + log_total;
    }
  }
}

// loss[0] = the mean of the row losses, added in row order by one block (deterministic).
__global__ void mean_of_rows(float* loss, const double* row_loss, int64_t rows) {
  double total = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) total += row_loss[r];
  total = block_sum(total);
  if (threadIdx.x == 0) loss[0] = static_cast<float>(total / double(rows));
}

// dlogits = scale (p sum_j q_j - q), dtarget = -scale (1 - smoothing) log p, with scale = dloss / rows.
__global__ void cross_entropy_backward_rows(float* dlogits, float* dtarget, const float* dloss, const float* logits,
                                            const double* logsumexp, const int64_t* labels, const float* probabilities,
                                            int64_t rows, int64_t cols, double smoothing) {
  const double scale = double(dloss[0]) / double(rows);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    double q_sum = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) q_sum += target_weight(labels, probabilities, r, c, cols, smoothing);
    q_sum = block_sum(q_sum);
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      const double log_p = double(logits[r * cols + c]) - logsumexp[r];
      const double q = target_weight(labels, probabilities, r, c, cols, smoothing);
      dlogits[r * cols + c] = static_cast<float>(scale * (exp(log_p) * q_sum - q));
      if (dtarget) dtarget[r * cols + c] = static_cast<float>(-scale * (1 - smoothing) * log_p);
    }
  }
}

unsigned int row_blocks(int64_t rows) { return rows < 65536 ? static_cast<unsigned int>(rows) : 65536u; }

}  // namespace

void softmax_forward(float* y, const float* x, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  softmax_forward_kernel<<<row_blocks(rows), kThreads, 0, stream()>>>(y, x, rows, cols, false);
  check_launch("softmax");
}

void softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  softmax_backward_kernel<<<row_blocks(rows), kThreads, 0, stream()>>>(dx, dy, y, rows, cols, false);
  check_launch("softmax backward");
}

void log_softmax_forward(float* y, const float* x, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  softmax_forward_kernel<<<row_blocks(rows), kThreads, 0, stream()>>>(y, x, rows, cols, true);
  check_launch("log_softmax");
}

void log_softmax_backward(float* dx, const float* dy, const float* y, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  softmax_backward_kernel<<<row_blocks(rows), kThreads, 0, stream()>>>(dx, dy, y, rows, cols, true);
  check_launch("log_softmax backward");
}

void cross_entropy_forward(float* loss, double* logsumexp, const float* logits, const int64_t* labels,
                           const float* probabilities, int64_t rows, int64_t cols, double smoothing) {
  Scratch row_loss(static_cast<size_t>(rows) * sizeof(double));
  cross_entropy_rows<<<row_blocks(rows), kThreads, 0, stream()>>>(row_loss.as<double>(), logsumexp, logits, labels,
                                                                   probabilities, rows, cols, smoothing);
  mean_of_rows<<<1, 1024, 0, stream()>>>(loss, row_loss.as<double>(), rows);
  check_launch("cross_entropy");
}

void cross_entropy_backward(float* dlogits, float* dtarget, const float* dloss, const float* logits,
                            const double* logsumexp, const int64_t* labels, const float* probabilities, int64_t rows,
                            int64_t cols, double smoothing) {
  cross_entropy_backward_rows<<<row_blocks(rows), kThreads, 0, stream()>>>(dlogits, dtarget, dloss, logits, logsumexp,
                                                                           labels, probabilities, rows, cols, smoothing);
  check_launch("cross_entropy backward");
}

}  // namespace vt::cuda
