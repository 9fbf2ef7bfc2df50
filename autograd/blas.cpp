// GEMM on OpenBLAS's CBLAS interface, and the start-up choice of OpenBLAS kernels.
#include "autograd/blas.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "autograd/tensor.h"

extern "C" char* openblas_get_corename(void);

namespace vt {

template <>
void gemm<float>(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
              alpha, a, lda, b, ldb, beta, c, ldc);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                  int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
              alpha, a, lda, b, ldb, beta, c, ldc);
}

std::string blas_core_name() { return openblas_get_corename(); }

// The best OpenBLAS kernel family this CPU can run, or nullptr when it has neither AVX2 nor AVX-512.
static const char* best_core_for_cpu() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (avx512) return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return __builtin_cpu_is("amd") ? "Zen" : "Haswell";
  return nullptr;
}

// Kernel families at least as fast as what best_core_for_cpu() would pick at each level.
static bool is_avx512_core(const std::string& core) {
  return core == "SkylakeX" || core == "Cooperlake" || core == "CooperLake" || core == "SapphireRapids";
}
static bool is_avx2_core(const std::string& core) {
  return is_avx512_core(core) || core == "Haswell" || core == "Zen";
}

void ensure_fast_blas(int argc, char** argv) {
  (void)argc;
  if (std::getenv("OPENBLAS_CORETYPE")) return;  // the user's own choice is left alone
  const char* best = best_core_for_cpu();
  if (!best) return;
  const std::string core = openblas_get_corename();
  const bool good = std::strcmp(best, "SkylakeX") == 0 ? is_avx512_core(core) : is_avx2_core(core);
  if (good) return;
  std::fprintf(stderr, "vt: OpenBLAS picked its '%s' kernels for this CPU; restarting with OPENBLAS_CORETYPE=%s\n",
               core.c_str(), best);
  setenv("OPENBLAS_CORETYPE", best, 1);
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "vt: restart failed (%s); continuing with the '%s' kernels\n", std::strerror(errno),
               core.c_str());
}

}  // namespace vt
