// GEMM on OpenBLAS's CBLAS interface, and the settings OpenBLAS and libgomp read when they load.
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

// Kernel families at least as fast as the best one each instruction-set level allows.
static bool is_avx512_core(const std::string& core) {
  return core == "SkylakeX" || core == "Cooperlake" || core == "CooperLake" || core == "SapphireRapids";
}
static bool is_avx2_core(const std::string& core) {
  return is_avx512_core(core) || core == "Haswell" || core == "Zen";
}

const char* better_blas_core(const std::string& detected, const CpuFeatures& cpu) {
  if (cpu.avx512) return is_avx512_core(detected) ? nullptr : "SkylakeX";
  if (cpu.avx2_fma) return is_avx2_core(detected) ? nullptr : (cpu.amd ? "Zen" : "Haswell");
  return nullptr;
}

CpuFeatures this_cpu() {
  __builtin_cpu_init();
  CpuFeatures cpu;
  cpu.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  cpu.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  cpu.amd = __builtin_cpu_is("amd");
  return cpu;
}

std::vector<std::pair<std::string, std::string>> library_settings(const std::function<const char*(const char*)>& lookup,
                                                                  const std::string& blas_core, const CpuFeatures& cpu) {
  std::vector<std::pair<std::string, std::string>> settings;
  if (!lookup("OPENBLAS_CORETYPE"))
    if (const char* better = better_blas_core(blas_core, cpu)) settings.emplace_back("OPENBLAS_CORETYPE", better);
  if (!lookup("GOMP_SPINCOUNT") && !lookup("OMP_WAIT_POLICY")) settings.emplace_back("GOMP_SPINCOUNT", "1000");
  return settings;
}

void restart_with_library_settings(int argc, char** argv) {
  (void)argc;
  const std::string core = openblas_get_corename();
  const auto settings = library_settings([](const char* name) { return std::getenv(name); }, core, this_cpu());
  if (settings.empty()) return;
  for (const auto& [name, value] : settings) {
    if (name == "OPENBLAS_CORETYPE")
      std::fprintf(stderr, "vt: OpenBLAS picked its '%s' kernels for this CPU; restarting with OPENBLAS_CORETYPE=%s\n",
                   core.c_str(), value.c_str());
    setenv(name.c_str(), value.c_str(), 1);
  }
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "vt: restart failed (%s); continuing with the '%s' kernels and libgomp's default spinning\n",
               std::strerror(errno), core.c_str());
}

}  // namespace vt
