// The OpenBLAS kernels and libgomp spinning chosen at start-up, GEMM's transpose flags and tilings against a
// plain triple loop, and its epilogue.
#include <map>

#include "autograd/blas.h"
#include "autograd/gemm_bf16.h"
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
  // Tiles hold >= 1024 rows (or columns), or up to four of about 256 when 1024 would give fewer, and >= 2^21
  // multiply-adds; a k of 1024 or more with few rows and columns is cut into four slices whose partial products
  // are added in order. The kind checked is that of the default flags: with trans_a alone, {8, 9, 5003} and
  // {3, 4, 13000} run as skinny_depth (checked here all the same; the latter's row sums of op(A) in three
  // slices of k). {600, 64, 128} is 3 tiles of 208 rows (the last 184),
  // {1100, 64, 128} 4 of 288 (the last 236), {2500, 64, 128} 4 of 640 (the last 580), {64, 600, 128} 3 of 208
  // columns.
  const std::vector<Case> cases = {{5, 7, 3, GemmTiling::whole},     {600, 64, 128, GemmTiling::rows},
                                   {1100, 64, 128, GemmTiling::rows}, {2500, 64, 128, GemmTiling::rows},
                                   {64, 600, 128, GemmTiling::cols},  {8, 9, 5003, GemmTiling::depth},
                                   {192, 192, 1040, GemmTiling::depth}, {3, 4, 13000, GemmTiling::depth}};
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
    const std::vector<double> bias = randn({n}, DType::f64, generator).to_vector();
    const double *pa = a.data<double>(), *pb = b.data<double>();
    for (bool trans_a : {false, true})
      for (bool trans_b : {false, true})
        for (bool with_bias : {false, true}) {
          CAPTURE(trans_a);
          CAPTURE(trans_b);
          CAPTURE(with_bias);
          // op(A)[i][p] is A[i * lda + p] stored (m, k), or A[p * lda + i] stored (k, m) when transposed.
          const int64_t lda = (trans_a ? m : k) + 3, ldb = (trans_b ? k : n) + 3, ldc = n + 2;
          std::vector<double> out(m * ldc, 1.0);
          // With the bias, the row sums of op(A) too (a linear layer's backward asks for db with dw).
          std::vector<double> a_sums(m, 1.0);
          gemm<double>(trans_a, trans_b, m, n, k, 2.0, pa, lda, pb, ldb, 0.5, out.data(), ldc,
                       with_bias ? bias.data() : nullptr, {}, with_bias ? a_sums.data() : nullptr);
          int64_t wrong = 0;
          for (int64_t i = 0; i < m; ++i) {
            double expected = 1.0;  // left alone without the bias
            if (with_bias) {
              expected = 0.0;  // sum_p op(A)[i][p]
              for (int64_t p = 0; p < k; ++p) expected += trans_a ? pa[p * lda + i] : pa[i * lda + p];
            }
            wrong += std::abs(a_sums[i] - expected) > 1e-12 * (1 + std::abs(expected));
          }
          for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
              double expected = 0.5 + (with_bias ? bias[j] : 0.0);  // beta * C + bias
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

TEST_CASE("blas: row tiles are long, equal and a multiple of four in number") {
  auto tiling = [](int64_t m, int64_t n, int64_t k) {
    const GemmTiling t = gemm_tiling(m, n, k);
    return std::vector<int64_t>{t.kind, t.size, t.count};
  };
  // vit_cifar's linears at batch 128, (128 * 65 = 8320, 192) @ (192, 576): 8320 / 1024 = 8 tiles of 1040 rows,
  // 4 per thread on 2 threads (the 256-row tiles before were 33, 17 against 16).
  CHECK(tiling(8320, 576, 192) == std::vector<int64_t>{GemmTiling::rows, 1040, 8});
  // 9 tiles of 1024 would fit in 9360 rows; rounded down to 8 they hold 1170, rounded up to 1184 (16s).
  CHECK(tiling(9360, 128, 128) == std::vector<int64_t>{GemmTiling::rows, 1184, 8});
  // Fewer than four 1024-row tiles: four of at least 256 instead (4160 / 4 = 1040; 2000 / 4 = 500 -> 512).
  CHECK(tiling(4160, 576, 192) == std::vector<int64_t>{GemmTiling::rows, 1040, 4});
  CHECK(tiling(2000, 128, 64) == std::vector<int64_t>{GemmTiling::rows, 512, 4});
  // And at least 2^21 multiply-adds each: with n k = 64 * 64, 2^21 / 4096 = 512 rows, so 1500 rows make 3 tiles.
  CHECK(tiling(1500, 64, 64) == std::vector<int64_t>{GemmTiling::rows, 512, 3});
  CHECK(tiling(0, 64, 64)[0] == GemmTiling::whole);  // nothing to cut
}

// C = alpha op(A) op(B) + beta C summed in double, the plain triple loop the skinny kernels are checked against.
template <class T>
static std::vector<double> gemm_reference(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
                                          const T* a, int64_t lda, const T* b, int64_t ldb, double beta,
                                          const std::vector<T>& c, int64_t ldc) {
  std::vector<double> out(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < k; ++p)
        sum += double(trans_a ? a[p * lda + i] : a[i * lda + p]) * double(trans_b ? b[j * ldb + p] : b[p * ldb + j]);
      out[i * n + j] = alpha * sum + (beta == 0 ? 0.0 : beta * double(c[i * ldc + j]));
    }
  return out;
}

TEST_CASE("blas: skinny products (a long dimension against operands that fit in L1) match a triple loop") {
  struct Case {
    bool trans_a, trans_b;
    int64_t m, n, k;
    GemmTiling::Kind kind;
  };
  // TNT's pixel linears: y = x W^T over (rows, 12) -> 48 and back, dx = dy W, dW = dy^T x, and its 7x7 pixel
  // convolution (depth 3 x 49 = 147); widths that are not a whole number of 8-float vectors, a depth of 1, and
  // row counts that are not a whole number of blocks.
  const std::vector<Case> cases = {
      {false, true, 4099, 48, 12, GemmTiling::skinny_rows},  {false, false, 4099, 12, 48, GemmTiling::skinny_rows},
      {false, true, 4103, 64, 64, GemmTiling::skinny_rows},  {false, false, 5000, 3, 1, GemmTiling::skinny_rows},
      {false, true, 4096, 21, 7, GemmTiling::skinny_rows},   {true, false, 48, 12, 4099, GemmTiling::skinny_depth},
      {true, false, 12, 48, 4099, GemmTiling::skinny_depth}, {true, false, 64, 64, 4160, GemmTiling::skinny_depth},
      {true, false, 5, 61, 4097, GemmTiling::skinny_depth},  {true, true, 12, 48, 4099, GemmTiling::depth},
      {false, true, 4099, 65, 12, GemmTiling::rows},         {false, true, 4095, 48, 12, GemmTiling::rows},
      {false, true, 4099, 12, 147, GemmTiling::skinny_rows}, {false, true, 4099, 12, 257, GemmTiling::rows},
      {false, false, 4099, 64, 65, GemmTiling::rows},  // the last two: op(B) padded over 16 KiB
      {false, true, 4099, 0, 12, GemmTiling::whole},     // an empty C: OpenBLAS returns at once
      {false, true, 4099, 12, 0, GemmTiling::skinny_rows}};  // depth 0: C = beta C
  Generator generator(7);
  for (const Case& c : cases) {
    const int64_t m = c.m, n = c.n, k = c.k;
    CAPTURE(c.trans_a);
    CAPTURE(c.trans_b);
    CAPTURE(m);
    CAPTURE(n);
    CAPTURE(k);
    CHECK(gemm_tiling(m, n, k, c.trans_a, c.trans_b).kind == c.kind);
    // Leading dimensions 3 wider than the operands, as views into larger tensors.
    const int64_t lda = (c.trans_a ? m : k) + 3, ldb = (c.trans_b ? k : n) + 3, ldc = n + 2;
    const Tensor a = randn({(c.trans_a ? k : m) * lda}, DType::f64, generator);
    const Tensor b = randn({(c.trans_b ? n : k) * ldb}, DType::f64, generator);
    const std::vector<double> c0 = randn({m * ldc}, DType::f64, generator).to_vector();
    const std::vector<double> bias64 = randn({n}, DType::f64, generator).to_vector();
    const std::vector<float> bias32(bias64.begin(), bias64.end());
    for (auto [beta, with_bias] : {std::pair{0.5, false}, {0.0, false}, {0.5, true}, {0.0, true}}) {
      CAPTURE(beta);
      CAPTURE(with_bias);
      // float64: the same arithmetic as float32, checked to rounding. beta = 0 must not read C, which holds NaN.
      std::vector<double> out64 = c0;
      if (beta == 0) std::fill(out64.begin(), out64.end(), std::nan(""));
      auto expected = gemm_reference(c.trans_a, c.trans_b, m, n, k, 2.0, a.data<double>(), lda, b.data<double>(),
                                     ldb, beta, out64, ldc);
      if (with_bias)
        for (int64_t i = 0; i < m * n; ++i) expected[i] += bias64[i % n];
      gemm<double>(c.trans_a, c.trans_b, m, n, k, 2.0, a.data<double>(), lda, b.data<double>(), ldb, beta,
                   out64.data(), ldc, with_bias ? bias64.data() : nullptr);
      // float32: the error of a float sum of k terms of size ~1 is ~sqrt(k) 6e-8 relative to sqrt(k), and adding
      // beta C and the bias rounds once or twice more.
      const std::vector<double> a64 = a.to_vector(), b64 = b.to_vector();
      const std::vector<float> a32(a64.begin(), a64.end()), b32(b64.begin(), b64.end());
      std::vector<float> out32(c0.begin(), c0.end());
      if (beta == 0) std::fill(out32.begin(), out32.end(), std::nanf(""));
      auto expected32 = gemm_reference(c.trans_a, c.trans_b, m, n, k, 2.0, a32.data(), lda, b32.data(), ldb, beta,
                                       out32, ldc);
      if (with_bias)
        for (int64_t i = 0; i < m * n; ++i) expected32[i] += bias32[i % n];
      gemm<float>(c.trans_a, c.trans_b, m, n, k, 2.0f, a32.data(), lda, b32.data(), ldb, float(beta), out32.data(),
                  ldc, with_bias ? bias32.data() : nullptr);
      int64_t wrong64 = 0, wrong32 = 0;
      const double tolerance32 = 1e-5 * std::sqrt(double(k));
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          const double e64 = expected[i * n + j], e32 = expected32[i * n + j];
          wrong64 += !(std::abs(out64[i * ldc + j] - e64) <= 1e-10 * (1 + std::abs(e64)));
          wrong32 += !(std::abs(out32[i * ldc + j] - e32) <= tolerance32 + 2.4e-7 * (1 + std::abs(e32)));
        }
      CHECK(wrong64 == 0);
      CHECK(wrong32 == 0);
      int64_t padding_touched = 0;  // the padding between C's rows is left alone
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = n; j < ldc; ++j) {
          padding_touched += beta == 0 ? !std::isnan(out64[i * ldc + j]) : out64[i * ldc + j] != c0[i * ldc + j];
        }
      CHECK(padding_touched == 0);
    }
  }
}

TEST_CASE("blas: skinny products give the same bits on 1 and on 2 threads") {
  // Rows are computed whole by one thread; dW's four slices of k are fixed by the shape and added in order.
  // in = 6 and out = 12 also run blocks of 6 and 4 rows, which do not divide the 256-row tiles.
  Generator generator(8);
  const int64_t rows = 8320, in = 6, out = 12;
  const Tensor x = randn({rows, in}, DType::f32, generator), w = randn({out, in}, DType::f32, generator);
  const Tensor dy = randn({rows, out}, DType::f32, generator);
  // With dw, the bias gradient db = the sum of dy's rows, in a pass of its own in two slices of 4,160 rows.
  auto products = [&] {
    std::vector<float> y(rows * out), dx(rows * in), dw(out * in), db(out);
    gemm<float>(false, true, rows, out, in, 1.0f, x.data<float>(), in, w.data<float>(), in, 0.0f, y.data(), out);
    gemm<float>(false, false, rows, in, out, 1.0f, dy.data<float>(), out, w.data<float>(), in, 0.0f, dx.data(), in);
    gemm<float>(true, false, out, in, rows, 1.0f, dy.data<float>(), out, x.data<float>(), in, 0.0f, dw.data(), in,
                nullptr, {}, db.data());
    return std::vector<std::vector<float>>{y, dx, dw, db};
  };
  const auto one = testing::with_threads(1, products), two = testing::with_threads(2, products);
  CHECK(one[0] == two[0]);
  CHECK(one[1] == two[1]);
  CHECK(one[2] == two[2]);
  CHECK(one[3] == two[3]);
  const std::vector<double> dy_values = dy.to_vector();
  for (int64_t j = 0; j < out; ++j) {
    double sum = 0;  // summed in double, rounded once to float: within float's half ulp
    for (int64_t r = 0; r < rows; ++r) sum += dy_values[r * out + j];
    CHECK(std::abs(two[3][j] - sum) <= 0x1p-24 * std::abs(sum) + 1e-9);
  }
}

TEST_CASE("blas: gemm's epilogue finishes every element of C once, after its last sum, in every tiling") {
  // The epilogue negates what it finishes, so C with it must be exactly -C without it: a value finished before
  // its last partial sum, or twice, or not at all, would differ. Every kind of tiling, with float32 and float64
  // (and bf16 where the CPU has it), transpose flags as each kind runs them.
  struct Case {
    bool trans_a, trans_b;
    int64_t m, n, k;
    GemmTiling::Kind kind;
  };
  const std::vector<Case> cases = {{false, true, 5, 7, 3, GemmTiling::whole},
                                   {false, true, 1100, 64, 300, GemmTiling::rows},
                                   {false, false, 64, 600, 128, GemmTiling::cols},
                                   {true, false, 192, 192, 1040, GemmTiling::depth},
                                   {false, true, 4099, 48, 12, GemmTiling::skinny_rows},
                                   {true, false, 48, 12, 4099, GemmTiling::skinny_depth}};
  Generator generator(13);
  auto check = [&]<class T>(const Case& c, T zero) {
    const int64_t lda = c.trans_a ? c.m : c.k, ldb = c.trans_b ? c.k : c.n, ldc = c.n + 1;
    const std::vector<double> a64 = randn({c.m * c.k}, DType::f64, generator).to_vector();
    const std::vector<double> b64 = randn({c.k * c.n}, DType::f64, generator).to_vector();
    const std::vector<double> bias64 = randn({c.n}, DType::f64, generator).to_vector();
    const std::vector<T> a(a64.begin(), a64.end()), b(b64.begin(), b64.end()), bias(bias64.begin(), bias64.end());
    std::vector<T> plain(c.m * ldc, zero), finished(c.m * ldc, zero);
    gemm<T>(c.trans_a, c.trans_b, c.m, c.n, c.k, T(1), a.data(), lda, b.data(), ldb, T(0), plain.data(), ldc,
            bias.data());
    testing::CountingEpilogue<T> negate(finished.data(), c.m, c.n, ldc);
    gemm<T>(c.trans_a, c.trans_b, c.m, c.n, c.k, T(1), a.data(), lda, b.data(), ldb, T(0), finished.data(), ldc,
            bias.data(), negate.epilogue());
    CHECK(negate.each_once());
    int64_t differ = 0;
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) differ += finished[i * ldc + j] != -plain[i * ldc + j];
    CHECK(differ == 0);
  };
  for (const Case& c : cases) {
    CAPTURE(c.m);
    CAPTURE(c.n);
    CAPTURE(c.k);
    CHECK(gemm_tiling(c.m, c.n, c.k, c.trans_a, c.trans_b).kind == c.kind);
    check(c, 0.0);
    check(c, 0.0f);
    if (best_bf16_kernel() != Bf16Kernel::none)
      testing::with_cpu_matmul_precision(MatmulPrecision::bf16, [&] { check(c, 0.0f); });
  }
}
