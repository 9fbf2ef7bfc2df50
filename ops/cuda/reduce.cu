// Reductions on the GPU. Conventions: every sum accumulates in double, as the CPU's, and in an order fixed by the
// sizes alone (per-block partial sums, then the partials in block order), so results repeat run to run; long
// rows are split over several blocks, and column sums over chunks of rows, so that the GPU has enough blocks.
#include <algorithm>
#include <cmath>

#include "autograd/cuda.h"
#include "autograd/cuda_runtime.cuh"
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/kernels.h"

namespace vt::cuda {

namespace {

// partial[r * splits + s] = sum of part s of row r (blockIdx.x = s; rows strided over blockIdx.y).
__global__ void row_partial_sums(double* partial, const float* x, int64_t rows, int64_t cols) {
  const int64_t splits = gridDim.x, chunk = (cols + splits - 1) / splits, begin = blockIdx.x * chunk;
  const int64_t end = begin + chunk < cols ? begin + chunk : cols;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    double sum = 0;
    for (int64_t c = begin + threadIdx.x; c < end; c += blockDim.x) sum += x[r * cols + c];
    sum = block_sum(sum);
    if (threadIdx.x == 0) partial[r * splits + blockIdx.x] = sum;
  }
}

// y[r] = the splits partials of row r, added in order.
__global__ void finish_row_sums(float* y, const double* partial, int64_t rows, int64_t splits) {
  for (int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; r < rows; r += int64_t{gridDim.x} * blockDim.x) {
    double sum = 0;
    for (int64_t s = 0; s < splits; ++s) sum += partial[r * splits + s];
    y[r] = static_cast<float>(sum);
  }
}

// partial[chunk * rows + r] = sum over the chunk's c of x[c * rows + r]: consecutive threads read consecutive r.
__global__ void column_partial_sums(double* partial, const float* x, int64_t rows, int64_t cols) {
  const int64_t chunks = gridDim.y, chunk = (cols + chunks - 1) / chunks;
  const int64_t begin = blockIdx.y * chunk, end = begin + chunk < cols ? begin + chunk : cols;
  for (int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; r < rows; r += int64_t{gridDim.x} * blockDim.x) {
    double sum = 0;
#pragma unroll 8  // loads in flight together; the adds stay in order
    for (int64_t c = begin; c < end; ++c) sum += x[c * rows + r];
    partial[blockIdx.y * rows + r] = sum;
  }
}

// y[r] = sum over the chunks of partial[s * rows + r]: one warp per r, its lanes over the chunks, then the
// butterfly (a fixed order). One thread per r waited out thousands of dependent loads where the chunks are many.
__global__ void finish_column_sums(float* y, const double* partial, int64_t rows, int64_t chunks) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32; r < rows;
       r += int64_t{gridDim.x} * blockDim.x / 32) {
    double sum = 0;
    for (int64_t s = lane; s < chunks; s += 32) sum += partial[s * rows + r];
    sum = warp_sum(sum);
    if (lane == 0) y[r] = static_cast<float>(sum);
  }
}

// Whether (value a, index i) beats (value b, index j) as a row's maximum: a NaN beats any number, and of two
// equal values (or two NaNs) the first index wins, as on the CPU.
__device__ bool beats(float a, int64_t i, float b, int64_t j) {
  if (isnan(a) || isnan(b)) return isnan(a) && (!isnan(b) || i < j);
  return a > b || (a == b && i < j);
}

__global__ void max_rows_kernel(float* y, int64_t* index, const float* x, int64_t rows, int64_t cols) {
  __shared__ float best_value[32];
  __shared__ int64_t best_index[32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float value = x[r * cols];
    int64_t at = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      if (beats(x[r * cols + c], c, value, at)) value = x[r * cols + c], at = c;
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, value, offset);
      const int64_t other_at = __shfl_xor_sync(0xffffffffu, at, offset);
      if (beats(other, other_at, value, at)) value = other, at = other_at;
    }
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) best_value[warp] = value, best_index[warp] = at;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < static_cast<int>(blockDim.x / 32); ++w)
        if (beats(best_value[w], best_index[w], value, at)) value = best_value[w], at = best_index[w];
      y[r] = value;
      index[r] = at;
    }
    __syncthreads();
  }
}

__global__ void max_rows_backward_kernel(float* dx, const float* dy, const int64_t* index, int64_t rows, int64_t cols) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < rows * cols; i += int64_t{gridDim.x} * blockDim.x)
    dx[i] = i % cols == index[i / cols] ? dy[i / cols] : 0.0f;
}

// One thread per row of logits (class counts are small): the first maximal logit against the label.
__global__ void count_correct_kernel(unsigned long long* count, const float* logits, const int64_t* labels, int64_t rows,
                                     int64_t cols) {
  for (int64_t r = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; r < rows; r += int64_t{gridDim.x} * blockDim.x) {
    const float* row = logits + r * cols;
    int64_t at = 0;
    for (int64_t c = 1; c < cols; ++c)
      if (beats(row[c], c, row[at], at)) at = c;
    if (at == labels[r]) atomicAdd(count, 1ull);  // integer adds: the count does not depend on their order
  }
}

}  // namespace

void sum_rows(float* y, const float* x, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  // Enough blocks for the GPU: a row of more than 64k elements is split into up to 1024 parts.
  const int64_t splits = std::min<int64_t>(1024, std::max<int64_t>(1, cols / 65536));
  Scratch partial(static_cast<size_t>(rows * splits) * sizeof(double));
  const unsigned int row_blocks = static_cast<unsigned int>(std::min<int64_t>(rows, 65535));
  row_partial_sums<<<dim3(static_cast<unsigned>(splits), row_blocks), kThreads, 0, stream()>>>(partial.as<double>(), x,
                                                                                               rows, cols);
  finish_row_sums<<<blocks_for(rows), kThreads, 0, stream()>>>(y, partial.as<double>(), rows, splits);
  check_launch("sum");
}

void sum_columns(float* y, const float* x, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  // Few kept rows over many summed ones (a bias gradient: 192 columns of 33,280 rows). In up to 256 chunks,
  // one thread per kept row, a tnt_cifar step's sums took 0.33 ms per launch on average on an H200.
  const ColumnSplit split = column_split(cols, rows);
  Scratch partial(static_cast<size_t>(rows * split.chunks) * sizeof(double));
  column_partial_sums<<<dim3(split.column_blocks, static_cast<unsigned>(split.chunks)), split.threads, 0, stream()>>>(
      partial.as<double>(), x, rows, cols);
  finish_column_sums<<<blocks_for(rows * 32), kThreads, 0, stream()>>>(y, partial.as<double>(), rows, split.chunks);
  check_launch("sum");
}

void max_rows(float* y, int64_t* index, const float* x, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  max_rows_kernel<<<blocks_for(rows, 1), kThreads, 0, stream()>>>(y, index, x, rows, cols);
  check_launch("max");
}

void max_rows_backward(float* dx, const float* dy, const int64_t* index, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  max_rows_backward_kernel<<<blocks_for(rows * cols), kThreads, 0, stream()>>>(dx, dy, index, rows, cols);
  check_launch("max backward");
}

void count_correct(int64_t* count, const float* logits, const int64_t* labels, int64_t rows, int64_t cols) {
  if (rows == 0) return;
  static_assert(sizeof(int64_t) == sizeof(unsigned long long));
  count_correct_kernel<<<blocks_for(rows), kThreads, 0, stream()>>>(reinterpret_cast<unsigned long long*>(count), logits,
                                                                    labels, rows, cols);
  check_launch("count_correct");
}

}  // namespace vt::cuda
