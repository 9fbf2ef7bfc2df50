// For .cu files: sums and maxima across a warp and across a block, the building blocks of every row kernel.
// Conventions: blocks have a multiple of 32 threads, at most 1024; the xor butterfly leaves the warp's result
// in every lane; block_sum and block_max return the block's result to every thread (they synchronise twice,
// so every thread of the block must call them).
#pragma once

namespace vt::cuda {

// With a width W (a power of two up to 32): the sum over each aligned group of W lanes, in every lane of the
// group (the butterfly stays inside the group). Every lane of the warp must call it.
template <int W = 32, class T>
__device__ T warp_sum(T value) {
  for (int offset = W / 2; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

template <class T>
__device__ T warp_max(T value) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const T other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = other > value ? other : value;
  }
  return value;
}

// The partial results of the warps are summed by the first warp, in warp order (deterministic).
template <class T>
__device__ T block_sum(T value) {
  __shared__ T partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
  value = warp_sum(value);
  __syncthreads();  // `partial` may still be read by a previous call
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  value = lane < warps ? partial[lane] : T(0);
  return warp_sum(value);
}

template <class T>
__device__ T block_max(T value, T lowest) {
  __shared__ T partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
  value = warp_max(value);
  __syncthreads();
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  value = lane < warps ? partial[lane] : lowest;
  return warp_max(value);
}

}  // namespace vt::cuda
