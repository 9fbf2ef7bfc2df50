// GEMM on OpenBLAS's CBLAS interface, cut into tiles that our threads run, and the settings OpenBLAS and
// libgomp read when they load.
#include "autograd/blas.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "autograd/parallel.h"
#include "autograd/tensor.h"

extern "C" char* openblas_get_corename(void);

namespace vt {

// OpenBLAS 0.3.21's OpenMP build runs a call on omp_get_max_threads() threads (it re-reads the count on every
// call) unless the call is made inside a parallel region. Our tiles are the threads, so a call from outside one
// lowers this thread's OpenMP count to 1 around it: every library call runs on the thread that makes it.
template <class Call>
static void on_this_thread(const Call& call) {
#ifdef _OPENMP
  if (!omp_in_parallel()) {
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    call();
    omp_set_num_threads(threads);
    return;
  }
#endif
  call();
}

// The library call for one tile.
static void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                      int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  on_this_thread([&] {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
  });
}

static void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                      int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  on_this_thread([&] {
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
  });
}

GemmTiling gemm_tiling(int64_t m, int64_t n, int64_t k) {
  // A tile of rows (or columns) repacks the whole other operand, so it should hold at least 256 of them and
  // kTileMacs multiply-adds (~50 us on one core) for that and the call to pay off.
  constexpr int64_t kTileMacs = int64_t(1) << 21, kMinTile = 256, kDepthParts = 4, kMinDepthSplit = 4 * kMinTile;
  auto tile = [&](int64_t other) {
    return std::max(kMinTile, (kTileMacs / std::max<int64_t>(other, 1) + 63) / 64 * 64);
  };
  const int64_t rows = tile(n * k), cols = tile(m * k);
  const int64_t row_tiles = (m + rows - 1) / rows, col_tiles = (n + cols - 1) / cols;
  const GemmTiling by_rows{GemmTiling::rows, rows, row_tiles}, by_cols{GemmTiling::cols, cols, col_tiles};
  const GemmTiling& wider = row_tiles >= col_tiles ? by_rows : by_cols;
  if (wider.count >= kDepthParts) return wider;
  // Few rows and columns but a long inner dimension (the weight gradient of a linear layer, dw = dy^T x over
  // every token): four partial products over slices of k, added in a fixed order. m and n are below four
  // tiles here (m n < 2^20, or < 2^23 / k for tiles above 256), so the three partials held meanwhile stay small.
  if (k >= kMinDepthSplit) return {GemmTiling::depth, (k + kDepthParts - 1) / kDepthParts, kDepthParts};
  if (wider.count >= 2) return wider;
  return {GemmTiling::whole, 0, 1};
}

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  const GemmTiling tiling = gemm_tiling(m, n, k);
  switch (tiling.kind) {
    case GemmTiling::whole:
      blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    case GemmTiling::rows:  // C rows [r0, r1) = op(A) rows [r0, r1) @ op(B)
      parallel_for(0, tiling.count, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t t = lo; t < hi; ++t) {
          const int64_t r0 = t * tiling.size, rows = std::min(m, r0 + tiling.size) - r0;
          blas_gemm(trans_a, trans_b, rows, n, k, alpha, trans_a ? a + r0 : a + r0 * lda, lda, b, ldb, beta,
                    c + r0 * ldc, ldc);
        }
      });
      return;
    case GemmTiling::cols:  // C columns [c0, c1) = op(A) @ op(B) columns [c0, c1)
      parallel_for(0, tiling.count, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t t = lo; t < hi; ++t) {
          const int64_t c0 = t * tiling.size, cols = std::min(n, c0 + tiling.size) - c0;
          blas_gemm(trans_a, trans_b, m, cols, k, alpha, a, lda, trans_b ? b + c0 * ldb : b + c0, ldb, beta, c + c0,
                    ldc);
        }
      });
      return;
    case GemmTiling::depth: {
      // C = beta C + alpha op(A)[:, slice 0] op(B)[slice 0, :], then + partial 1, + partial 2, + partial 3.
      // The caller's buffer, kept between calls; the workers get its address, not their own thread_local.
      thread_local std::vector<T> buffer;
      const int64_t mn = m * n;
      buffer.resize(static_cast<size_t>((tiling.count - 1) * mn));
      T* const partials = buffer.data();
      parallel_for(0, tiling.count, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t part = lo; part < hi; ++part) {
          const int64_t k0 = part * tiling.size, depth = std::min(k, k0 + tiling.size) - k0;
          const T* a_part = trans_a ? a + k0 * lda : a + k0;
          const T* b_part = trans_b ? b + k0 : b + k0 * ldb;
          if (part == 0)
            blas_gemm(trans_a, trans_b, m, n, depth, alpha, a_part, lda, b_part, ldb, beta, c, ldc);
          else
            blas_gemm(trans_a, trans_b, m, n, depth, alpha, a_part, lda, b_part, ldb, T(0),
                      partials + (part - 1) * mn, n);
        }
      });
      parallel_for(0, m, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
          for (int64_t part = 1; part < tiling.count; ++part)
            for (int64_t j = 0; j < n; ++j) c[i * ldc + j] += partials[(part - 1) * mn + i * n + j];
      });
      return;
    }
  }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);

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
