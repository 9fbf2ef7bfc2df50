// Layer norm on the GPU: one warp per row (32 lanes stride over its D values), two-pass statistics in double
// and normalisation with the saved float mean and rstd, as the CPU kernel; the weight and bias gradients are
// column sums over rows, per chunk of rows first, then the chunks in order (deterministic, no atomics).
#include <algorithm>

#include "autograd/cuda_runtime.cuh"
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/kernels.h"

namespace vt::cuda {

namespace {

constexpr int kWarpsPerBlock = kThreads / 32;

__device__ int64_t warp_row() { return (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32; }
__device__ int64_t row_step() { return int64_t{gridDim.x} * blockDim.x / 32; }

__global__ void layer_norm_forward_kernel(float* y, float* mean, float* rstd, const float* x, const float* weight,
                                          const float* bias, int64_t rows, int64_t cols, double eps) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = warp_row(); r < rows; r += row_step()) {
    const float* xr = x + r * cols;
    double sum = 0;
    for (int64_t c = lane; c < cols; c += 32) sum += xr[c];
    const double row_mean = warp_sum(sum) / double(cols);
    double squares = 0;
    for (int64_t c = lane; c < cols; c += 32) squares += (xr[c] - row_mean) * (xr[c] - row_mean);
    const double row_rstd = 1.0 / sqrt(warp_sum(squares) / double(cols) + eps);  // biased variance
    const float m = static_cast<float>(row_mean), s = static_cast<float>(row_rstd);
    if (lane == 0) mean[r] = m, rstd[r] = s;
    for (int64_t c = lane; c < cols; c += 32) {
      float value = (xr[c] - m) * s;
      if (weight) value *= weight[c];
      if (bias) value += bias[c];
      y[r * cols + c] = value;
    }
  }
}

// dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)) with xhat = (x - mean) rstd and g = dy weight.
__global__ void layer_norm_dx_kernel(float* dx, const float* dy, const float* x, const float* mean, const float* rstd,
                                     const float* weight, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = warp_row(); r < rows; r += row_step()) {
    const float *dyr = dy + r * cols, *xr = x + r * cols;
    const float m = mean[r], s = rstd[r];
    double sum_g = 0, sum_g_xhat = 0;
    for (int64_t c = lane; c < cols; c += 32) {
      const float xhat = (xr[c] - m) * s, g = dyr[c] * (weight ? weight[c] : 1.0f);
      sum_g += g;
      sum_g_xhat += double(g) * xhat;
    }
    // The means rounded to float and dx in float, in the CPU kernel's order, so that both devices agree closely.
    const float mean_g = static_cast<float>(warp_sum(sum_g) / double(cols));
    const float mean_g_xhat = static_cast<float>(warp_sum(sum_g_xhat) / double(cols));
    for (int64_t c = lane; c < cols; c += 32) {
      const float g = dyr[c] * (weight ? weight[c] : 1.0f);
      dx[r * cols + c] = s * (g - mean_g - (xr[c] - m) * s * mean_g_xhat);
    }
  }
}

// partial_*[chunk * cols + c] = sums over the chunk's rows of dy xhat and dy (blockIdx.y = chunk).
__global__ void layer_norm_parameter_partials(double* partial_dweight, double* partial_dbias, const float* dy,
                                              const float* x, const float* mean, const float* rstd, int64_t rows,
                                              int64_t cols) {
  const int64_t chunks = gridDim.y, chunk = (rows + chunks - 1) / chunks;
  const int64_t begin = blockIdx.y * chunk, end = begin + chunk < rows ? begin + chunk : rows;
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols; c += int64_t{gridDim.x} * blockDim.x) {
    double dweight = 0, dbias = 0;
    for (int64_t r = begin; r < end; ++r) {
      const float xhat = (x[r * cols + c] - mean[r]) * rstd[r];
      dweight += double(dy[r * cols + c]) * xhat;
      dbias += dy[r * cols + c];
    }
    partial_dweight[blockIdx.y * cols + c] = dweight;
    partial_dbias[blockIdx.y * cols + c] = dbias;
  }
}

__global__ void layer_norm_parameter_gradients(float* dweight, float* dbias, const double* partial_dweight,
                                               const double* partial_dbias, int64_t chunks, int64_t cols) {
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols; c += int64_t{gridDim.x} * blockDim.x) {
    double w = 0, b = 0;
    for (int64_t k = 0; k < chunks; ++k) w += partial_dweight[k * cols + c], b += partial_dbias[k * cols + c];
    if (dweight) dweight[c] = static_cast<float>(w);
    if (dbias) dbias[c] = static_cast<float>(b);
  }
}

unsigned int warp_row_blocks(int64_t rows) {
  return static_cast<unsigned int>(std::min<int64_t>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock, 65536));
}

}  // namespace

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight, const float* bias,
                        int64_t rows, int64_t cols, double eps) {
  if (rows == 0) return;
  layer_norm_forward_kernel<<<warp_row_blocks(rows), kThreads, 0, stream()>>>(y, mean, rstd, x, weight, bias, rows, cols,
                                                                               eps);
  check_launch("layer_norm");
}

void layer_norm_backward(float* dx, float* dweight, float* dbias, const float* dy, const float* x, const float* mean,
                         const float* rstd, const float* weight, int64_t rows, int64_t cols) {
  if (rows == 0) {  // the parameter gradients are sums over no rows: zero, as on the CPU
    if (dweight) check(cudaMemsetAsync(dweight, 0, sizeof(float) * cols, stream()), "layer_norm backward");
    if (dbias) check(cudaMemsetAsync(dbias, 0, sizeof(float) * cols, stream()), "layer_norm backward");
    return;
  }
  if (dx)
    layer_norm_dx_kernel<<<warp_row_blocks(rows), kThreads, 0, stream()>>>(dx, dy, x, mean, rstd, weight, rows, cols);
  if (dweight || dbias) {
    // Chunks of 64 rows or more: (B N, D) = (8320, 192) gives 130 chunks of 192 columns.
    const int64_t chunks = std::min<int64_t>(1024, std::max<int64_t>(1, rows / 64));
    Scratch partial_dweight(static_cast<size_t>(chunks * cols) * sizeof(double));
    Scratch partial_dbias(static_cast<size_t>(chunks * cols) * sizeof(double));
    const unsigned int column_blocks = std::min<unsigned int>(blocks_for(cols), 1024);
    layer_norm_parameter_partials<<<dim3(column_blocks, static_cast<unsigned>(chunks)), kThreads, 0, stream()>>>(
        partial_dweight.as<double>(), partial_dbias.as<double>(), dy, x, mean, rstd, rows, cols);
    layer_norm_parameter_gradients<<<blocks_for(cols), kThreads, 0, stream()>>>(
        dweight, dbias, partial_dweight.as<double>(), partial_dbias.as<double>(), chunks, cols);
  }
  check_launch("layer_norm backward");
}

}  // namespace vt::cuda
