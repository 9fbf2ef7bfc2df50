// bf16 GEMM (--amp bf16 on the CPU): the rounding, the reference loop against exact arithmetic, every kernel this
// CPU has against the reference, and gemm's tilings under the bf16 precision. On a CPU without AVX512-BF16 or AMX
// the kernel cases say so and check the reference alone.
#include <cmath>
#include <cstring>
#include <limits>

#include "autograd/blas.h"
#include "autograd/gemm_bf16.h"
#include "tests/helpers.h"

using namespace vt;

namespace {

uint32_t bits_of(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}
float float_of(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// The kernels this CPU runs, each with its name; none on a CPU without the instructions.
std::vector<Bf16Kernel> kernels_here() {
  std::vector<Bf16Kernel> kernels;
  for (Bf16Kernel kernel : {Bf16Kernel::avx512_bf16, Bf16Kernel::amx})
    if (static_cast<int>(kernel) <= static_cast<int>(best_bf16_kernel())) kernels.push_back(kernel);
  if (kernels.empty()) MESSAGE("this CPU has neither AVX512-BF16 nor AMX: only the reference is checked");
  return kernels;
}

}  // namespace

TEST_CASE("bf16: rounding to nearest even keeps 8 bits of mantissa, denormals become zero, NaN stays NaN") {
  CHECK(round_to_bf16(1.0f) == 0x3f80);
  CHECK(round_to_bf16(-2.5f) == 0xc020);  // exact in bf16
  // Halfway between 1 and 1 + 2^-7 (the next bf16): ties go to the even one, 1.
  CHECK(round_to_bf16(1.0f + 0x1p-8f) == 0x3f80);
  // Halfway between 1 + 2^-7 (odd mantissa 0x01) and 1 + 2^-6: up, to the even one.
  CHECK(round_to_bf16(1.0f + 0x3p-8f) == 0x3f82);
  CHECK(round_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);  // just above half: up
  CHECK(round_to_bf16(1.0f + 0x1p-8f - 0x1p-20f) == 0x3f80);  // just below: down
  // The largest float is closer to 2^128 than to the largest bf16 (1 - 2^-8) 2^128: it rounds to infinity.
  CHECK(round_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);
  CHECK(round_to_bf16(std::numeric_limits<float>::infinity()) == 0x7f80);
  CHECK(round_to_bf16(-std::numeric_limits<float>::infinity()) == 0xff80);
  // Denormals are zeros of their sign, as the instruction reads them; the smallest normal is kept.
  CHECK(round_to_bf16(1e-39f) == 0x0000);
  CHECK(round_to_bf16(-1e-39f) == 0x8000);
  CHECK(round_to_bf16(std::numeric_limits<float>::min()) == 0x0080);
  // A NaN keeps its sign and top payload bits and becomes quiet, even one whose payload is in the dropped half.
  CHECK(round_to_bf16(float_of(0x7f800001)) == 0x7fc0);
  CHECK(round_to_bf16(float_of(0xffc12345)) == 0xffc1);
  CHECK(bf16_to_float(0x3f81) == 1.0f + 0x1p-7f);
  // Every float32 in [1, 2) is within half a bf16 step (2^-8) of its rounding.
  Generator generator(11);
  for (double v : rand({1000}, DType::f64, generator).to_vector()) {
    const float x = static_cast<float>(1 + v);
    CHECK(std::abs(bf16_to_float(round_to_bf16(x)) - x) <= 0x1p-8f);
  }
}

TEST_CASE("bf16: each kernel's packing rounds exactly as round_to_bf16 (products with 1 leave the rounding bare)") {
  // C (m, 1) = A (m, 1) @ [1]: every output is bf16(a) * 1, exact, so it shows the packed value itself (a
  // negative zero excepted: the sum starts at +0, and +0 + -0 = +0).
  std::vector<float> a = {1.0f,  1.0f + 0x1p-8f, 1.0f + 0x3p-8f, -1.0f - 0x1p-8f - 0x1p-20f, 1e-39f, -1e-39f,
                          3e38f, -std::numeric_limits<float>::infinity(), std::nanf(""), 0.1f, -7.3f, 65504.0f};
  Generator generator(12);
  for (double v : randn({200}, DType::f64, generator).to_vector()) a.push_back(static_cast<float>(v * 1e3));
  const int64_t m = static_cast<int64_t>(a.size());
  const float one = 1.0f;
  for (Bf16Kernel kernel : kernels_here()) {
    CAPTURE(bf16_kernel_name(kernel));
    for (bool trans_a : {false, true}) {  // the two ways A's panels are packed; (m, 1) and (1, m) share storage
      std::vector<float> c(m, -1.0f);
      gemm_bf16(kernel, trans_a, false, m, 1, 1, 1.0f, a.data(), trans_a ? m : 1, &one, 1, 0.0f, c.data(), 1);
      int64_t wrong = 0;
      for (int64_t i = 0; i < m; ++i) {
        const float expected = bf16_to_float(round_to_bf16(a[i]));
        wrong += std::isnan(expected) ? !std::isnan(c[i]) : c[i] != expected;  // -0 is +0: sums start at +0
      }
      CHECK(wrong == 0);
    }
  }
}

TEST_CASE("bf16: the reference sums the exact products of the rounded inputs in float32") {
  // (1, 2) @ (2, 1): bf16(1 + 2^-9) = 1 and bf16(3 + 2^-7) = 3 (half a step of 2^-6 above 3, a tie: to the even 3), while
  // bf16(1 + 2^-7) = 1 + 2^-7 is exact: 1 * 1 + 3 * (1 + 2^-7) = 4 + 3 * 2^-7.
  const float a[2] = {1.0f + 0x1p-9f, 3.0f + 0x1p-7f}, b[2] = {1.0f, 1.0f + 0x1p-7f};
  float c = std::nanf("");  // beta = 0: C is not read
  gemm_bf16_reference(false, false, 1, 1, 2, 1.0f, a, 2, b, 1, 0.0f, &c, 1);
  CHECK(c == 4.0f + 3 * 0x1p-7f);
  // alpha and beta: 2 * (4 + 3 * 2^-7) + 0.5 * 8.
  c = 8.0f;
  gemm_bf16_reference(false, false, 1, 1, 2, 2.0f, a, 2, b, 1, 0.5f, &c, 1);
  CHECK(c == 2 * (4.0f + 3 * 0x1p-7f) + 4.0f);
  // Random (17, 9) @ (9, 13) through every transpose: a float32 sum of k exact products is within
  // k 2^-24 sum |products| of the exact sum (in double) of the same products.
  Generator generator(13);
  const int64_t m = 17, n = 13, k = 9;
  const std::vector<double> av = randn({m * k}, DType::f64, generator).to_vector(),
                            bv = randn({k * n}, DType::f64, generator).to_vector();
  const std::vector<float> af(av.begin(), av.end()), bf(bv.begin(), bv.end());
  for (bool trans_a : {false, true})
    for (bool trans_b : {false, true}) {
      const int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
      std::vector<float> out(m * n);
      gemm_bf16_reference(trans_a, trans_b, m, n, k, 1.0f, af.data(), lda, bf.data(), ldb, 0.0f, out.data(), n);
      int64_t wrong = 0;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double exact = 0, magnitude = 0;
          for (int64_t p = 0; p < k; ++p) {
            const double term = double(bf16_to_float(round_to_bf16(af[trans_a ? p * lda + i : i * lda + p]))) *
                                bf16_to_float(round_to_bf16(bf[trans_b ? j * ldb + p : p * ldb + j]));
            exact += term;
            magnitude += std::abs(term);
          }
          wrong += std::abs(out[i * n + j] - exact) > k * 0x1p-24 * magnitude;
        }
      CHECK(wrong == 0);
    }
}

TEST_CASE("bf16: each kernel this CPU has matches the reference across panel and block edges, flags, alpha, beta, bias") {
  // Panels of 32 rows, blocks of 32 columns and depths of 32: sizes on both sides of each, a depth of 0 (C = beta C)
  // and ones. Each product runs three times: with this CPU's L2 size, and with 32 KiB and 128 KiB, so that op(B)s of
  // more than 24 KiB packed are taken in chunks of columns (one block each, or several and a smaller last one, as
  // (100, 200, 300) in chunks of 96, 96 and 8), with op(A) packed whole. Both sums add the same exact products in
  // float32, in orders that may differ, so each is within k 2^-24 sum |alpha products| of the exact sum and the two
  // within twice that (a bias adds its own size to the sum: with alpha 1 and beta 0, AMX sums a whole block onto the
  // bias in its tiles).
  struct Case {
    int64_t m, n, k;
  };
  const std::vector<Case> cases = {{1, 1, 1},    {5, 7, 3},   {31, 33, 31}, {32, 32, 32},   {33, 47, 65},
                                   {64, 16, 64}, {40, 17, 0}, {3, 70, 200}, {100, 200, 300}};
  Generator generator(14);
  for (Bf16Kernel kernel : kernels_here()) {
    CAPTURE(bf16_kernel_name(kernel));
    for (const Case& s : cases) {
      const int64_t m = s.m, n = s.n, k = s.k;
      CAPTURE(m);
      CAPTURE(n);
      CAPTURE(k);
      for (bool trans_a : {false, true})
        for (bool trans_b : {false, true})
          for (auto [alpha, beta, with_bias] : {std::tuple{2.0f, 0.0f, false}, {2.0f, 0.5f, false},
                                                 {2.0f, 0.0f, true}, {2.0f, 0.5f, true}, {1.0f, 0.0f, false},
                                                 {1.0f, 0.0f, true}}) {
            CAPTURE(trans_a);
            CAPTURE(trans_b);
            CAPTURE(alpha);
            CAPTURE(beta);
            CAPTURE(with_bias);
            // Operands inside wider buffers (leading dimensions + 3), as views into larger tensors.
            const int64_t lda = (trans_a ? m : k) + 3, ldb = (trans_b ? k : n) + 3, ldc = n + 2;
            const std::vector<double> av = randn({(trans_a ? k : m) * lda}, DType::f64, generator).to_vector(),
                                      bv = randn({(trans_b ? n : k) * ldb}, DType::f64, generator).to_vector(),
                                      cv = randn({m * ldc}, DType::f64, generator).to_vector();
            const std::vector<float> a(av.begin(), av.end()), b(bv.begin(), bv.end());
            const std::vector<double> biasv = randn({n}, DType::f64, generator).to_vector();
            const std::vector<float> bias_values(biasv.begin(), biasv.end());
            const float* bias = with_bias ? bias_values.data() : nullptr;  // added to every row of C
            std::vector<float> c0(cv.begin(), cv.end());
            if (beta == 0) std::fill(c0.begin(), c0.end(), std::nanf(""));  // beta = 0 must not read C
            std::vector<float> expected = c0;
            gemm_bf16_reference(trans_a, trans_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, expected.data(),
                                ldc, bias);
            std::vector<std::vector<float>> results;  // one C per L2 size
            for (int64_t l2_bytes : {l2_cache_bytes(), int64_t(32) << 10, int64_t(128) << 10}) {
              results.push_back(c0);
              gemm_bf16(kernel, trans_a, trans_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta,
                        results.back().data(), ldc, bias, {}, l2_bytes);
            }
            int64_t wrong = 0, padding_touched = 0;
            for (int64_t i = 0; i < m; ++i) {
              for (int64_t j = 0; j < n; ++j) {
                double magnitude = 0;
                for (int64_t p = 0; p < k; ++p)
                  magnitude += alpha * std::abs(double(bf16_to_float(round_to_bf16(a[trans_a ? p * lda + i : i * lda + p]))) *
                                            bf16_to_float(round_to_bf16(b[trans_b ? j * ldb + p : p * ldb + j])));
                if (bias) magnitude += std::abs(bias[j]);
                const double bound = 2 * (k + 1) * 0x1p-24 * magnitude + 1e-6;
                for (const auto& got : results) wrong += !(std::abs(got[i * ldc + j] - expected[i * ldc + j]) <= bound);
              }
              for (int64_t j = n; j < ldc; ++j)  // the padding between C's rows is left alone
                for (const auto& got : results) padding_touched += bits_of(got[i * ldc + j]) != bits_of(c0[i * ldc + j]);
            }
            CHECK(wrong == 0);
            CHECK(padding_touched == 0);
          }
    }
  }
}

TEST_CASE("bf16: each kernel reads and writes nothing past its operands, packed to their exact sizes") {
  // Leading dimensions equal to the rows' lengths and every operand (A, B, C, the bias) ending at an unreadable
  // page, so that the last row of each is where a load or store past it would fault: sizes that leave partial
  // vectors, panels, blocks and depths everywhere.
  struct Case {
    int64_t m, n, k;
  };
  Generator generator(16);
  for (Bf16Kernel kernel : kernels_here()) {
    CAPTURE(bf16_kernel_name(kernel));
    for (const Case& s : {Case{33, 47, 65}, Case{5, 7, 3}, Case{31, 1, 17}, Case{1, 33, 1}, Case{64, 32, 32}})
      for (bool trans_a : {false, true})
        for (bool trans_b : {false, true}) {
          const int64_t m = s.m, n = s.n, k = s.k;
          CAPTURE(m);
          CAPTURE(n);
          CAPTURE(k);
          CAPTURE(trans_a);
          CAPTURE(trans_b);
          testing::GuardedFloats a(m * k), b(k * n), c(m * n), bias(n);
          auto fill = [&](float* x, int64_t count) {
            const std::vector<double> values = randn({count}, DType::f64, generator).to_vector();
            std::copy(values.begin(), values.end(), x);
          };
          fill(a.data(), m * k);
          fill(b.data(), k * n);
          fill(bias.data(), n);
          const int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
          for (float alpha : {1.0f, 2.0f}) {  // alpha 1 and beta 0: AMX stores whole blocks straight into C
            CAPTURE(alpha);
            std::vector<float> expected(m * n);
            gemm_bf16_reference(trans_a, trans_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, 0.0f, expected.data(),
                                n, bias.data());
            gemm_bf16(kernel, trans_a, trans_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, 0.0f, c.data(), n,
                      bias.data());
            int64_t wrong = 0;
            for (int64_t i = 0; i < m * n; ++i) wrong += !(std::abs(c.data()[i] - expected[i]) <= 1e-4 * (k + 1));
            CHECK(wrong == 0);
          }
        }
  }
}

TEST_CASE("bf16: gemm's tilings run on the bf16 kernel, the same bits on 1 and 2 threads, skinny and whole ones stay fp32") {
  if (best_bf16_kernel() == Bf16Kernel::none) {
    MESSAGE("this CPU has neither AVX512-BF16 nor AMX: gemm refuses the bf16 precision");
    CHECK_THROWS_WITH_AS(set_cpu_matmul_precision(MatmulPrecision::bf16),
                         doctest::Contains("bf16 matmuls on the CPU need AVX512-BF16 or AMX"), std::runtime_error);
    return;
  }
  struct Case {
    int64_t m, n, k;
    GemmTiling::Kind kind;
  };
  // Row and column tiles, four slices of k added in order (vit_cifar's dW = dy^T x at batch 16, trans_a).
  const std::vector<Case> cases = {{600, 64, 128, GemmTiling::rows},
                                   {64, 600, 128, GemmTiling::cols},
                                   {192, 192, 1040, GemmTiling::depth}};
  Generator generator(15);
  for (const Case& s : cases) {
    const int64_t m = s.m, n = s.n, k = s.k;
    CAPTURE(m);
    CAPTURE(n);
    CAPTURE(k);
    const bool trans_a = s.kind == GemmTiling::depth;
    const Tensor a = randn({m * k}, DType::f32, generator), b = randn({k * n}, DType::f32, generator);
    const Tensor c0 = randn({m * n}, DType::f32, generator), bias = randn({n}, DType::f32, generator);
    const int64_t lda = trans_a ? m : k;
    // A linear layer's forward (a bias onto beta = 0) and an accumulation (beta = 0.5 and a bias): the bias must
    // land once in every kind, on the right columns of each column tile, and on the first depth slice only.
    for (bool trans_b : {false, true})
      for (auto [beta, with_bias] : {std::pair{0.0f, false}, {0.0f, true}, {0.5f, true}}) {
        CAPTURE(trans_b);
        CAPTURE(beta);
        CAPTURE(with_bias);
        REQUIRE(gemm_tiling(m, n, k, trans_a, trans_b).kind == s.kind);
        const int64_t ldb = trans_b ? k : n;
        const float* row_bias = with_bias ? bias.data<float>() : nullptr;
        auto product = [&] {
          return testing::with_cpu_matmul_precision(MatmulPrecision::bf16, [&] {
            std::vector<float> c(c0.data<float>(), c0.data<float>() + m * n);
            if (beta == 0) std::fill(c.begin(), c.end(), std::nanf(""));  // not read
            gemm<float>(trans_a, trans_b, m, n, k, 1.0f, a.data<float>(), lda, b.data<float>(), ldb, beta, c.data(), n,
                        row_bias);
            return c;
          });
        };
        const std::vector<float> one = testing::with_threads(1, product), two = testing::with_threads(2, product);
        CHECK(one == two);
        std::vector<float> expected(c0.data<float>(), c0.data<float>() + m * n);
        gemm_bf16_reference(trans_a, trans_b, m, n, k, 1.0f, a.data<float>(), lda, b.data<float>(), ldb, beta,
                            expected.data(), n, row_bias);
        // The depth slices' partial sums are added in float32 too: at most 4 more roundings of the total.
        int64_t wrong = 0;
        for (int64_t i = 0; i < m * n; ++i) wrong += !(std::abs(one[i] - expected[i]) <= 1e-5 * std::sqrt(double(k)));
        CHECK(wrong == 0);
      }
  }
  // TNT's pixel linear (4099, 12) @ (12, 48), a skinny product bound by memory, and attention's per-head scores
  // q k^T (65, 64) @ (64, 65), small enough to run whole on one thread, keep the float32 arithmetic: the same bits
  // as without --amp bf16, where rounding the inputs to bf16 would change about every value.
  for (const Case& s : {Case{4099, 48, 12, GemmTiling::skinny_rows}, Case{65, 65, 64, GemmTiling::whole}}) {
    const int64_t rows = s.m, out = s.n, in = s.k;
    CAPTURE(rows);
    const Tensor x = randn({rows, in}, DType::f32, generator), w = randn({out, in}, DType::f32, generator);
    REQUIRE(gemm_tiling(rows, out, in, false, true).kind == s.kind);
    std::vector<float> y32(rows * out), y16(rows * out);
    gemm<float>(false, true, rows, out, in, 1.0f, x.data<float>(), in, w.data<float>(), in, 0.0f, y32.data(), out);
    testing::with_cpu_matmul_precision(MatmulPrecision::bf16, [&] {
      gemm<float>(false, true, rows, out, in, 1.0f, x.data<float>(), in, w.data<float>(), in, 0.0f, y16.data(), out);
    });
    CHECK(y16 == y32);
  }
  CHECK(cpu_matmul_precision() == MatmulPrecision::fp32);  // float32 is back
  CHECK_THROWS_WITH_AS(set_cpu_matmul_precision(MatmulPrecision::tf32), doctest::Contains("TF32 is a mode of the GPU"),
                       std::runtime_error);
}
