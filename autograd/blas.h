// The BLAS layer: one row-major GEMM entry point for float and double, and the start-up settings of the
// libraries under it: OpenBLAS's fast kernels on CPUs it does not recognise, and how long libgomp's idle threads
// spin (see restart_with_library_settings).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "autograd/gemm_epilogue.h"
#include "autograd/tensor.h"

namespace vt {

// C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C, plus `bias` (n) on every row when given (a linear
// layer's, added as each tile is written, not in a pass of its own); row-major, op = transpose when the flag is
// set, so callers pass a transposed view's storage with a flag instead of copying it. The product is cut into
// tiles that depend on (m, n, k) alone, each one single-threaded call (our float32 kernel on AVX-512 builds,
// OpenBLAS, the bf16 kernel, or our skinny loops), so it is bit-identical for any thread count; called inside a
// parallel region, it runs its tiles on the calling thread.
// `epilogue` finishes C's values block by block once they are final: as our kernels write each block of rows,
// after each library call's tile, or over the whole of C when slices of k are added at the end.
// `a_sums`, when given, receives the m sums over p of op(A)[i, p], in double, rounded once: with op(A) = dy^T, the
// bias gradient that goes with the weight gradient dW = dy^T x. When the product is cut along k (the weight
// gradients of vit_cifar's linears), each slice sums its rows of dy as the kernel has just read them (from cache,
// not memory); the slices' sums are added in order, so the result depends on the shape alone.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc, const T* bias = nullptr,
          const GemmEpilogue<T>& epilogue = {}, T* a_sums = nullptr);

// The arithmetic of gemm<float>: exact float32 (the default), or MatmulPrecision::bf16 (--amp bf16): each tile
// on this CPU's bf16 kernel (gemm_bf16.h), the inputs rounded to bf16 and the products summed in float32. The
// skinny kinds below stay float32: they are bound by memory, not multiply-adds. Fails for bf16 on a CPU without
// AVX512-BF16 or AMX, and for TF32, which is a GPU format.
void set_cpu_matmul_precision(MatmulPrecision precision);
MatmulPrecision cpu_matmul_precision();

// How gemm cuts C (m, n): `count` tiles of `size` rows or columns, or `count` slices of `size` along k whose
// partial products are added in order (depth), or one call (whole). The skinny kinds are a long dimension
// against operands that fit in L1, which our own loops run instead of OpenBLAS: `skinny_rows`, C's rows
// (m >= kSkinnyLong, from A's rows) at most kSkinnyWidth wide, with op(B) padded to whole 8-float vectors
// within kSkinnyPacked bytes of floats (Y = X W^T, dX = dY W);
// `skinny_depth`, a C of at most kSkinnyWidth rows and columns summed over k >= kSkinnyLong, from A stored
// (k, m) and B stored (k, n) (dW = dY^T X).
struct GemmTiling {
  enum Kind { whole, rows, cols, depth, skinny_rows, skinny_depth } kind;
  int64_t size, count;
};
constexpr int64_t kSkinnyWidth = 64, kSkinnyPacked = 16384, kSkinnyLong = 4096;
GemmTiling gemm_tiling(int64_t m, int64_t n, int64_t k, bool trans_a = false, bool trans_b = false);

std::string blas_core_name();  // OpenBLAS's kernel family, e.g. "Haswell", "SkylakeX", "Zen"

struct CpuFeatures {
  bool avx512 = false;    // AVX-512 F, BW, VL and DQ: what OpenBLAS's SkylakeX kernels use
  bool avx2_fma = false;  // AVX2 and FMA: the Haswell and Zen kernels
  bool amd = false;
};
CpuFeatures this_cpu();

// The kernel family to force instead of `detected`, or nullptr when `detected` is already the best
// this CPU can run.
const char* better_blas_core(const std::string& detected, const CpuFeatures& cpu);

// The environment variables to set, as (name, value), in an environment that `lookup` reads:
// - OPENBLAS_CORETYPE: OpenBLAS 0.3.21 (Debian 12) reports some newer CPUs as "Prescott" and runs SSE3
//   kernels, 4-5x slower; then the best kernel family the CPU supports (better_blas_core).
// - GOMP_SPINCOUNT=1000: between parallel regions libgomp's threads spin 300,000 times (several ms) before
//   they sleep. On a machine where another process keeps a core busy, those spins take the time slices our
//   other thread needs, and training on 2 cores falls to about 0.3 of its idle speed; 1,000 spins (tens of
//   µs) still bridge the gaps between a step's kernels but leave about half (bench/shared_machine.sh).
// A variable the user has set is left alone, and OMP_WAIT_POLICY set by the user also decides the spinning.
std::vector<std::pair<std::string, std::string>> library_settings(const std::function<const char*(const char*)>& lookup,
                                                                  const std::string& blas_core, const CpuFeatures& cpu);

// Sets library_settings for this process, and when there are any re-executes the program: both libraries read
// them only when they load. Logs one line to stderr when it changes OpenBLAS's kernels. Call first in main().
void restart_with_library_settings(int argc, char** argv);

}  // namespace vt
