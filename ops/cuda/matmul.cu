// Row-major GEMM on cuBLAS (which is column-major): a row-major C = op(A) op(B) is the column-major
// C^T = op(B)^T op(A)^T, so cuBLAS gets B first and A second with the sizes swapped, and transposed views
// travel as transpose flags, as on the CPU. Inputs and outputs are fp32; the compute type (exact fp32 unless
// set_matmul_precision chose TF32 or bf16 tensor cores) is the only thing the precision changes.
#include <algorithm>
#include <limits>
#include <string>

#include "autograd/cuda_runtime.cuh"
#include "ops/cuda/kernels.h"

namespace vt::cuda {

namespace {

int checked_int(int64_t value, const char* what) {
  if (value < 0 || value > std::numeric_limits<int>::max())
    fail("gemm", std::string(what) + " " + std::to_string(value) + " does not fit cuBLAS's int");
  return static_cast<int>(value);
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc, int64_t batch, int64_t stride_a,
          int64_t stride_b, int64_t stride_c) {
  if (m == 0 || n == 0 || batch == 0) return;
  if (k == 0) {  // C = beta C: A and B are not read, but cuBLAS wants leading dimensions of at least 1
    lda = std::max<int64_t>(lda, 1);
    ldb = std::max<int64_t>(ldb, 1);
  }
  check(cublasGemmStridedBatchedEx(cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   checked_int(n, "n"), checked_int(m, "m"), checked_int(k, "k"), &alpha, b, CUDA_R_32F,
                                   checked_int(ldb, "ldb"), stride_b, a, CUDA_R_32F, checked_int(lda, "lda"), stride_a,
                                   &beta, c, CUDA_R_32F, checked_int(ldc, "ldc"), stride_c, checked_int(batch, "batch"),
                                   gemm_compute_type(), CUBLAS_GEMM_DEFAULT),
        "gemm");
  check_launch("gemm");  // with VT_CUDA_SYNC=1, a fault inside cuBLAS is named here, not at a later op
}

}  // namespace vt::cuda
