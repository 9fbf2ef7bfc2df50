// The OpenBLAS kernels and libgomp spinning chosen at start-up, and GEMM's transpose flags and tilings against
// a plain triple loop.
#include <map>

#include "autograd/blas.h"
#include "tests/helpers.h"

using namespace vt;

TEST_CASE("blas: an unrecognised CPU gets the best kernels its instruction set allows") {
  const CpuFeatures intel_avx512{true, true, false}, intel_avx2{false, true, false}, amd_avx2{false, true, true};
  const CpuFeatures old_cpu{false, false, false};
  // Debian's OpenBLAS 0.3.21 reports some AVX-512 Xeons as "Prescott" (SSE3 kernels, ~5x slower).
  CHECK(std::string(better_blas_core("Prescott", intel_avx512)) == "SkylakeX");
  CHECK(std::string(better_blas_core("Haswell", intel_avx512)) == "SkylakeX");
  CHECK(std::string(better_blas_core("Prescott", intel_avx2)) == "Haswell");
  CHECK(std::string(better_blas_core("Prescott", amd_avx2)) == "Zen");
  CHECK(better_blas_core("SkylakeX", intel_avx512) == nullptr);
  CHECK(better_blas_core("Zen", amd_avx2) == nullptr);
  CHECK(better_blas_core("Haswell", intel_avx2) == nullptr);
  CHECK(better_blas_core("Prescott", old_cpu) == nullptr);  // nothing better to offer
  // This process went through restart_with_library_settings in main: its kernels are the best for this CPU,
  // unless the user chose them with OPENBLAS_CORETYPE.
  if (!std::getenv("OPENBLAS_CORETYPE")) CHECK(better_blas_core(blas_core_name(), this_cpu()) == nullptr);
}

TEST_CASE("blas: libgomp's threads spin 1,000 times, not 300,000, unless the user chose a wait policy") {
  const CpuFeatures amd_avx2{false, true, true};
  using Settings = std::vector<std::pair<std::string, std::string>>;
  auto settings = [&](std::map<std::string, std::string> environment, const std::string& core) {
    return library_settings([&](const char* name) {
      const auto found = environment.find(name);
      return found == environment.end() ? nullptr : found->second.c_str();
    }, core, amd_avx2);
  };
  CHECK(settings({}, "Zen") == Settings{{"GOMP_SPINCOUNT", "1000"}});
  CHECK(settings({}, "Prescott") == Settings{{"OPENBLAS_CORETYPE", "Zen"}, {"GOMP_SPINCOUNT", "1000"}});
  CHECK(settings({{"OMP_WAIT_POLICY", "active"}}, "Zen").empty());
  CHECK(settings({{"GOMP_SPINCOUNT", "infinite"}, {"OPENBLAS_CORETYPE", "Haswell"}}, "Prescott").empty());
  // This process was restarted with it, unless the user set either variable.
  if (!std::getenv("OMP_WAIT_POLICY")) CHECK(std::getenv("GOMP_SPINCOUNT") != nullptr);
}

TEST_CASE("blas: gemm with every transpose flag and every tiling matches a triple loop") {
  struct Case {
    int64_t m, n, k;
    GemmTiling::Kind kind;
  };
  // Tiles hold >= 256 rows (or columns) and >= 2^21 multiply-adds; a k of 1024 or more with few rows and
  // columns is cut into four slices whose partial products are added in order.
  const std::vector<Case> cases = {{5, 7, 3, GemmTiling::whole},     {600, 64, 128, GemmTiling::rows},
                                   {1100, 64, 128, GemmTiling::rows}, {64, 600, 128, GemmTiling::cols},
                                   {8, 9, 5003, GemmTiling::depth},   {192, 192, 1040, GemmTiling::depth}};
  Generator generator(5);
  for (const Case& c : cases) {
    const int64_t m = c.m, n = c.n, k = c.k;
    CAPTURE(m);
    CAPTURE(n);
    CAPTURE(k);
    CHECK(gemm_tiling(m, n, k).kind == c.kind);
    // Each operand sits in a wider buffer (leading dimension + 3), as a view into a larger tensor would.
    const Tensor a = randn({(m + 3) * (k + 3)}, DType::f64, generator);
    const Tensor b = randn({(k + 3) * (n + 3)}, DType::f64, generator);
    const double *pa = a.data<double>(), *pb = b.data<double>();
    for (bool trans_a : {false, true})
      for (bool trans_b : {false, true}) {
        CAPTURE(trans_a);
        CAPTURE(trans_b);
        // op(A)[i][p] is A[i * lda + p] stored (m, k), or A[p * lda + i] stored (k, m) when transposed.
        const int64_t lda = (trans_a ? m : k) + 3, ldb = (trans_b ? k : n) + 3, ldc = n + 2;
        std::vector<double> out(m * ldc, 1.0);
        gemm<double>(trans_a, trans_b, m, n, k, 2.0, pa, lda, pb, ldb, 0.5, out.data(), ldc);
        int64_t wrong = 0;
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double expected = 0.5;  // beta * C
            for (int64_t p = 0; p < k; ++p)
              expected += 2.0 * (trans_a ? pa[p * lda + i] : pa[i * lda + p]) *
                          (trans_b ? pb[j * ldb + p] : pb[p * ldb + j]);
            wrong += std::abs(out[i * ldc + j] - expected) > 1e-10 * (1 + std::abs(expected));
          }
        CHECK(wrong == 0);
        for (int64_t i = 0; i < m; ++i)  // the padding between C's rows is left alone
          for (int64_t j = n; j < ldc; ++j) CHECK(out[i * ldc + j] == 1.0);
      }
  }
}
