// For .cu files only: the stream and the cuBLAS handle every kernel uses, checked CUDA and cuBLAS calls, and
// the launch check. Conventions: kernels are launched on stream() with grid-stride loops (any size fits in a
// bounded grid); after each launch, check_launch(op) turns a launch error, or with VT_CUDA_SYNC=1 any error
// of the kernel itself, into a vt error naming the op, CUDA's error string and the file:line of the launch.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "autograd/cuda.h"
#include "autograd/tensor.h"

namespace vt::cuda {

cudaStream_t stream();
cublasHandle_t cublas();  // bound to stream(), with a workspace
// CUBLAS_COMPUTE_32F, or its TF32 or bf16 tensor-core variant after set_matmul_precision.
cublasComputeType_t gemm_compute_type();

void check(cudaError_t error, const char* op, const char* file = __builtin_FILE(), int line = __builtin_LINE());
void check(cublasStatus_t status, const char* op, const char* file = __builtin_FILE(), int line = __builtin_LINE());
void check_launch(const char* op, const char* file = __builtin_FILE(), int line = __builtin_LINE());

// Scratch memory from the caching allocator for one launcher, released when it goes out of scope: in stream
// order, so the kernels queued before still see it, and the next user is queued after them.
class Scratch {
 public:
  explicit Scratch(size_t bytes) : bytes_(bytes), data_(allocate(bytes)) {}
  ~Scratch() { release(data_, bytes_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T> T* as() const { return static_cast<T*>(data_); }

 private:
  size_t bytes_;
  void* data_;
};

constexpr int kThreads = 256;  // threads per block of the elementwise and row kernels

// Blocks for a grid-stride loop over n items: enough to fill the GPU several times, never more than needed.
inline unsigned int blocks_for(int64_t n, int threads = kThreads) {
  const int64_t wanted = (n + threads - 1) / threads;
  return static_cast<unsigned int>(wanted < 1 ? 1 : (wanted > 65536 ? 65536 : wanted));
}

// How a sum over many rows of `kept` columns is split (bias and LayerNorm parameter gradients): chunks of 32 or
// more of the `summed` rows, each its own row of blocks (grid y) of `threads` threads, one per kept column, with
// no idle warps; then the chunks' partial sums, at most 2^22 doubles, a warp per column. Few kept columns want
// many chunks: with one thread per column summing each chunk, TNT's 12- to 48-column sums over 524,288 pixel
// tokens (batch 512) waited out hundreds to thousands of dependent loads.
struct ColumnSplit {
  int64_t chunks;
  int threads;
  unsigned int column_blocks;
};

inline ColumnSplit column_split(int64_t summed, int64_t kept) {
  const int64_t most_chunks = std::min<int64_t>(65535, std::max<int64_t>(1, (int64_t{1} << 22) / kept));
  const int threads = static_cast<int>(std::min<int64_t>(kThreads, (kept + 31) / 32 * 32));
  return {std::clamp<int64_t>(summed / 32, 1, most_chunks), threads,
          std::min<unsigned int>(blocks_for(kept, threads), 1024)};
}

}  // namespace vt::cuda
