// What a GEMM does to each block of C as soon as the block holds its final values, while it is still in cache: a
// fused op's elementwise finish (linear_gelu's GELU), instead of a pass of its own over C from memory. Shared by
// gemm (blas.h) and its kernels; each decides the blocks.
#pragma once

#include <cstdint>

namespace vt {

template <class T>
struct GemmEpilogue {
  // Called once for every element of C, block by block: the block's first element, its rows and columns (rows
  // ldc apart, the ldc of the gemm call) and `context`. No call when finish is null.
  void (*finish)(T* block, int64_t rows, int64_t cols, void* context) = nullptr;
  void* context = nullptr;

  void operator()(T* block, int64_t rows, int64_t cols) const {
    if (finish && rows > 0 && cols > 0) finish(block, rows, cols, context);
  }
};

}  // namespace vt
