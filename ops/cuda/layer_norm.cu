// Layer norm on the GPU: a group of G lanes per row (G = 32 for ViT's 192 features, 4 for TNT's 12 pixel
// features: a whole warp on 12 values left 20 lanes idle), two-pass statistics in double and normalisation with
// the saved float mean and rstd, as the CPU kernel; the weight and bias gradients are column sums over rows, per
// chunk of rows first, then the chunks in a fixed order (deterministic, no atomics).
#include <algorithm>

#include "autograd/cuda_runtime.cuh"
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/kernels.h"

namespace vt::cuda {

namespace {

constexpr int kWarpsPerBlock = kThreads / 32;

__device__ int64_t warp_row() { return (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32; }
__device__ int64_t row_step() { return int64_t{gridDim.x} * blockDim.x / 32; }

// A warp holds 32 / G rows; its rows advance together, so that every lane reaches every shuffle.
struct GroupRow {
  int64_t row;
  int lane;  // within the group
  bool active;
};

template <int G>
__device__ GroupRow group_row(int64_t warp_first, int64_t rows) {
  const int64_t row = warp_first + (threadIdx.x % 32) / G;
  return {row < rows ? row : rows - 1, static_cast<int>(threadIdx.x % G), row < rows};
}

template <int G>
__global__ void layer_norm_forward_kernel(float* y, float* mean, float* rstd, const float* x, const float* weight,
                                          const float* bias, int64_t rows, int64_t cols, double eps) {
  constexpr int kRowsPerWarp = 32 / G;
  for (int64_t first = warp_row() * kRowsPerWarp; first < rows; first += row_step() * kRowsPerWarp) {
    const auto [r, lane, active] = group_row<G>(first, rows);  // an inactive lane repeats the last row, unsaved
    const float* xr = x + r * cols;
    double sum = 0;
    for (int64_t c = lane; c < cols; c += G) sum += xr[c];
    const double row_mean = warp_sum<G>(sum) / double(cols);
    double squares = 0;
    for (int64_t c = lane; c < cols; c += G) squares += (xr[c] - row_mean) * (xr[c] - row_mean);
    const double row_rstd = 1.0 / sqrt(warp_sum<G>(squares) / double(cols) + eps);  // biased variance
    const float m = static_cast<float>(row_mean), s = static_cast<float>(row_rstd);
    if (!active) continue;
    if (lane == 0) mean[r] = m, rstd[r] = s;
    for (int64_t c = lane; c < cols; c += G) {
      float value = (xr[c] - m) * s;
      if (weight) value *= weight[c];
      if (bias) value += bias[c];
      y[r * cols + c] = value;
    }
  }
}

// dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)) with xhat = (x - mean) rstd and g = dy weight.
template <int G>
__global__ void layer_norm_dx_kernel(float* dx, const float* dy, const float* x, const float* mean, const float* rstd,
                                     const float* weight, int64_t rows, int64_t cols) {
  constexpr int kRowsPerWarp = 32 / G;
  for (int64_t first = warp_row() * kRowsPerWarp; first < rows; first += row_step() * kRowsPerWarp) {
    const auto [r, lane, active] = group_row<G>(first, rows);
    const float *dyr = dy + r * cols, *xr = x + r * cols;
    const float m = mean[r], s = rstd[r];
    double sum_g = 0, sum_g_xhat = 0;
    for (int64_t c = lane; c < cols; c += G) {
      const float xhat = (xr[c] - m) * s, g = dyr[c] * (weight ? weight[c] : 1.0f);
      sum_g += g;
      sum_g_xhat += double(g) * xhat;
    }
    // The means rounded to float and dx in float, in the CPU kernel's order, so that both devices agree closely.
    const float mean_g = static_cast<float>(warp_sum<G>(sum_g) / double(cols));
    const float mean_g_xhat = static_cast<float>(warp_sum<G>(sum_g_xhat) / double(cols));
    if (!active) continue;
    for (int64_t c = lane; c < cols; c += G) {
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
#pragma unroll 8  // loads in flight together; the adds stay in order
    for (int64_t r = begin; r < end; ++r) {
      const float xhat = (x[r * cols + c] - mean[r]) * rstd[r];
      dweight += double(dy[r * cols + c]) * xhat;
      dbias += dy[r * cols + c];
    }
    partial_dweight[blockIdx.y * cols + c] = dweight;
    partial_dbias[blockIdx.y * cols + c] = dbias;
  }
}

// One warp per column, its lanes over the chunks, then the butterfly (a fixed order): one thread per column
// waited out a chain of dependent loads per chunk.
__global__ void layer_norm_parameter_gradients(float* dweight, float* dbias, const double* partial_dweight,
                                               const double* partial_dbias, int64_t chunks, int64_t cols) {
  const int lane = threadIdx.x % 32;
  for (int64_t c = warp_row(); c < cols; c += row_step()) {
    double w = 0, b = 0;
    for (int64_t k = lane; k < chunks; k += 32) w += partial_dweight[k * cols + c], b += partial_dbias[k * cols + c];
    w = warp_sum(w);
    b = warp_sum(b);
    if (lane == 0 && dweight) dweight[c] = static_cast<float>(w);
    if (lane == 0 && dbias) dbias[c] = static_cast<float>(b);
  }
}

unsigned int warp_row_blocks(int64_t rows) {
  return static_cast<unsigned int>(std::min<int64_t>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock, 65536));
}

// Calls launch with G, the lanes per row, as a compile-time constant: about four values per lane, at most 32.
template <class Launch>
void with_group(int64_t cols, const Launch& launch) {
  if (cols <= 4) return launch(std::integral_constant<int, 1>{});
  if (cols <= 8) return launch(std::integral_constant<int, 2>{});
  if (cols <= 16) return launch(std::integral_constant<int, 4>{});
  if (cols <= 32) return launch(std::integral_constant<int, 8>{});
  if (cols <= 64) return launch(std::integral_constant<int, 16>{});
  return launch(std::integral_constant<int, 32>{});
}

}  // namespace

void layer_norm_forward(float* y, float* mean, float* rstd, const float* x, const float* weight, const float* bias,
                        int64_t rows, int64_t cols, double eps) {
  if (rows == 0) return;
  with_group(cols, [&](auto group) {
    constexpr int G = decltype(group)::value;
    layer_norm_forward_kernel<G><<<warp_row_blocks((rows + 32 / G - 1) / (32 / G)), kThreads, 0, stream()>>>(
        y, mean, rstd, x, weight, bias, rows, cols, eps);
  });
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
    with_group(cols, [&](auto group) {
      constexpr int G = decltype(group)::value;
      layer_norm_dx_kernel<G><<<warp_row_blocks((rows + 32 / G - 1) / (32 / G)), kThreads, 0, stream()>>>(
          dx, dy, x, mean, rstd, weight, rows, cols);
    });
  if (dweight || dbias) {
    // (B N, D) = (33280, 192) gives 1,040 chunks of 192 columns. In 1,024 chunks of at least 64 rows, one
    // thread per column, the sums of a tnt_cifar step took 0.55 ms per LayerNorm on average on an H200.
    const ColumnSplit split = column_split(rows, cols);
    Scratch partial_dweight(static_cast<size_t>(split.chunks * cols) * sizeof(double));
    Scratch partial_dbias(static_cast<size_t>(split.chunks * cols) * sizeof(double));
    layer_norm_parameter_partials<<<dim3(split.column_blocks, static_cast<unsigned>(split.chunks)), split.threads, 0,
                                    stream()>>>(partial_dweight.as<double>(), partial_dbias.as<double>(), dy, x, mean,
                                                rstd, rows, cols);
    layer_norm_parameter_gradients<<<blocks_for(cols * 32), kThreads, 0, stream()>>>(
        dweight, dbias, partial_dweight.as<double>(), partial_dbias.as<double>(), split.chunks, cols);
  }
  check_launch("layer_norm backward");
}

}  // namespace vt::cuda
