// float32 GEMM: op(B) is read in panels of 64 columns, in place or packed (once for all the tiles of rows of a
// product), A is read where it lies, transposed or not, and alpha, beta and the bias are applied as C is written. gemm<float>
// (blas.h) runs it in place of OpenBLAS on builds for AVX-512, where it measured faster; it compiles everywhere
// (GCC's vector extensions), so the tests check its arithmetic on any CPU.
#pragma once

#include <cstdint>
#include <vector>

#include "autograd/gemm_bf16.h"
#include "autograd/gemm_epilogue.h"

namespace vt {

// Whether gemm<float> uses this kernel: on builds that target AVX-512 (VT_NATIVE on such a CPU).
// With AVX2 alone its 6 x 64 block of sums does not fit the 16 registers, and OpenBLAS's Haswell and Zen kernels
// stay.
constexpr bool kGemmF32Preferred =
#ifdef __AVX512F__
    true;
#else
    false;
#endif

// sums[i] += op(A)[i, p] over p in [0, k) in order, for i in [0, m), in double: op(A) is A (rows lda apart) or A^T
// with A stored (k, m) (trans_a). With op(A) = dy^T, these are a linear layer's bias gradient, sum_r dy[r, :].
template <class T>
void add_row_sums(double* sums, const T* a, int64_t lda, bool trans_a, int64_t m, int64_t k) {
  if (trans_a)  // down A's rows, each a run of m contiguous values
    for (int64_t p = 0; p < k; ++p)
      for (int64_t i = 0; i < m; ++i) sums[i] += a[p * lda + i];
  else
    for (int64_t i = 0; i < m; ++i)
      for (int64_t p = 0; p < k; ++p) sums[i] += a[i * lda + p];
}

// op(B) (k, n) as the kernel reads it: panels of 64 columns, row p of panel jp at
// data + jp * panel_stride + p * row_stride.
struct PanelsB {
  const float* data;
  int64_t row_stride, panel_stride;
};

// The panels of op(B): B itself when it is stored (k, n) with n a multiple of 64 (each panel is then 64 columns
// of B's rows, read in place, rows ldb apart), else op(B) packed as (ceil(n / 64), k, 64) floats, each panel's k
// rows side by side, zero-padded past n, in storage kept between calls. Reading in place saves a copy of B per
// product; weight gradients (dW = dY^T X, with X the B operand) copied 45 MB a layer of vit_cifar's step.
class PackedB {
 public:
  // The panels of op(B) = B stored (k, n), or B^T when B is stored (n, k) (trans_b).
  PanelsB pack(const float* b, int64_t ldb, bool trans_b, int64_t n, int64_t k);

 private:
  struct alignas(64) Line {
    float values[16];
  };
  std::vector<Line> storage_;
};

// C (m, n) = alpha * op(A) (m, k) @ op(B) + beta * C + bias (n) on every row, with op(B)'s panels from PackedB::pack;
// op(A) is A with rows lda apart, or A^T with A stored (k, m) (trans_a: a weight gradient, dW = dY^T X). With
// beta = 0, C is not read (BLAS's rule: it may hold NaN); a null bias adds nothing. Each output is summed over p
// in order, in blocks of 256 that are added to C in order, so the result depends on the shape alone. `epilogue`
// finishes each block of 6 rows (by a chunk of columns) after its last pass. With `a_sums`, also
// add_row_sums(a_sums, ...) over all of op(A), a block of 256 values of p at a time, as the block has just been read
// and is still in L2 (a bias gradient without reading dy from memory again). Runs on the calling thread.
// l2_bytes sizes the chunks of panels that stay in cache (the tests pass small ones to reach that path).
void gemm_f32_packed(float* c, int64_t ldc, const float* a, int64_t lda, bool trans_a, const PanelsB& b, int64_t m,
                     int64_t n, int64_t k, float alpha, float beta, const float* bias,
                     const GemmEpilogue<float>& epilogue = {}, double* a_sums = nullptr,
                     int64_t l2_bytes = l2_cache_bytes());

}  // namespace vt
