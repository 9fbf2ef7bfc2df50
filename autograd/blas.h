// The BLAS layer: one row-major GEMM entry point for float and double, and the start-up check that gets
// OpenBLAS's fast kernels on CPUs it does not recognise (see ensure_fast_blas).
#pragma once

#include <cstdint>
#include <string>

namespace vt {

// C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C; row-major, op = transpose when the flag is set,
// so callers pass a transposed view's storage with a flag instead of copying it.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

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

// OpenBLAS 0.3.21 (Debian 12) reports some newer CPUs as "Prescott" and runs SSE3 kernels, 4-5x slower.
// When that happens and the user has not set OPENBLAS_CORETYPE, pick the best kernel family the CPU
// supports, set the variable and re-exec the program (it is read only when the library loads).
// Logs one line to stderr when it re-execs. Call first thing in main().
void ensure_fast_blas(int argc, char** argv);

}  // namespace vt
