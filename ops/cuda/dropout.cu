// Dropout and DropPath masks on the GPU from the CPU's counters and keep rule: element i is kept when the top 53
// bits of random_bits(key, first + i) reach ceil(p 2^53), so the same generator state gives the same mask on
// either device.
#include <cmath>

#include "autograd/cuda_runtime.cuh"
#include "autograd/random.h"
#include "ops/cuda/kernels.h"

namespace vt::cuda {

namespace {

uint64_t keep_threshold(double p) { return static_cast<uint64_t>(std::ceil(p * 0x1.0p53)); }

__global__ void dropout_kernel(float* y, float* mask, const float* x, int64_t n, float scale, uint64_t threshold,
                               uint64_t key, uint64_t first) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const bool keep = (random_bits(key, first + static_cast<uint64_t>(i)) >> 11) >= threshold;
    if (y) y[i] = keep ? x[i] * scale : 0.0f;
    if (mask) mask[i] = keep ? scale : 0.0f;
  }
}

}  // namespace

void dropout_forward(float* y, float* mask, const float* x, int64_t n, double p, uint64_t key, uint64_t first) {
  if (n == 0) return;
  dropout_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(y, mask, x, n, static_cast<float>(1.0 / (1.0 - p)),
                                                           keep_threshold(p), key, first);
  check_launch("dropout");
}

void drop_mask(float* mask, int64_t n, double p, uint64_t key, uint64_t first) {
  if (n == 0) return;
  dropout_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(nullptr, mask, nullptr, n, static_cast<float>(1.0 / (1.0 - p)),
                                                           keep_threshold(p), key, first);
  check_launch("drop_path");
}

}  // namespace vt::cuda
