// bf16 GEMM on the CPU, for --amp bf16: C (m, n) = alpha * op(A) @ op(B) + beta * C from float32 operands in
// memory, each element rounded to bf16 as it is packed and the products summed in float32 (what cuBLAS's
// CUBLAS_COMPUTE_32F_FAST_16BF does on the GPU). Row-major, with gemm's arguments (blas.h); each call runs on the
// thread that makes it (gemm's tiles are the threads).
#pragma once

#include <cstdint>

#include "autograd/gemm_epilogue.h"

namespace vt {

// The bf16 kernels a CPU can run, best last: AVX512-BF16's dot products of bf16 pairs (Cooper Lake, Zen 4), or
// AMX's tile multiplies (Sapphire Rapids and later), which also need the OS to enable the tile registers.
enum class Bf16Kernel { none, avx512_bf16, amx };
Bf16Kernel best_bf16_kernel();                    // this CPU's, detected once
const char* bf16_kernel_name(Bf16Kernel kernel);  // "AMX", "AVX512-BF16" or "none"

// float32 -> bf16 as the CPU's VCVTNE2PS2BF16 does it: round to nearest, ties to even; denormals become a zero of
// their sign (the instruction treats them as zero); a NaN stays a NaN (made quiet); too large rounds to infinity.
uint16_t round_to_bf16(float x);
float bf16_to_float(uint16_t x);  // exact

// The plain loop the kernels are checked against: C[i][j] = alpha * s + beta * C[i][j] + bias[j] with
// s = sum over p, in order, of bf16(op(A)[i][p]) * bf16(op(B)[p][j]) in float32 (each product of two bf16 values is
// exact in float32 unless it underflows, which the instructions flush to zero and this loop does not); with
// beta = 0, C is not read; a null bias adds nothing.
void gemm_bf16_reference(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                         int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                         const float* bias = nullptr);

// This CPU's level-2 cache per core in bytes, as the OS reports it (1 MiB when it does not say).
int64_t l2_cache_bytes();

// The same product on one of this CPU's kernels (not none, and one that best_bf16_kernel() allows); `epilogue`
// finishes each panel of 32 rows (by a chunk of columns) as soon as it is written. l2_bytes sizes the chunks of
// op(B)'s columns that stay in cache (the tests pass small ones to reach that path).
void gemm_bf16(Bf16Kernel kernel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
               const float* bias = nullptr, const GemmEpilogue<float>& epilogue = {},
               int64_t l2_bytes = l2_cache_bytes());

}  // namespace vt
