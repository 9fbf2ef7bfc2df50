// The float32 GEMM kernel (gemm_f32.h) against exact arithmetic: across its block, panel, depth and chunk edges,
// with every flag, reading and writing nothing past its operands; and gemm<float>'s tilings on it, the same bits
// on 1 and 2 threads. The kernel is checked on every CPU; gemm<float> runs on it where kGemmF32Preferred.
#include <cmath>

#include "autograd/blas.h"
#include "autograd/gemm_f32.h"
#include "tests/helpers.h"

using namespace vt;

namespace {

// The float32 error bound of a result that took `roundings` roundings, each within a relative u = 2^-24, against
// the sum of its terms' magnitudes: gamma = r u / (1 - r u) (Higham, Accuracy and Stability of Numerical
// Algorithms, 3.1). A wrong or missing term is off by a whole term, far above it.
double gamma(int64_t roundings) {
  const double ru = static_cast<double>(roundings) * 0x1p-24;
  return ru / (1 - ru);
}

struct Operands {
  int64_t m, n, k;
  bool trans_a, trans_b;
  int64_t lda, ldb, ldc;
};

// C = alpha op(A) op(B) + beta C + bias in double from the float operands (exact products, sums 2^29 times finer than
// float's), and the magnitude |alpha| sum |A op(B)| + |beta C| + |bias| that the bound scales.
void exact(const Operands& o, float alpha, const float* a, const float* b, float beta, const float* c,
           const float* bias, std::vector<double>& value, std::vector<double>& magnitude) {
  value.assign(o.m * o.n, 0.0);
  magnitude.assign(o.m * o.n, 0.0);
  for (int64_t i = 0; i < o.m; ++i)
    for (int64_t j = 0; j < o.n; ++j) {
      double sum = 0, size = 0;
      for (int64_t p = 0; p < o.k; ++p) {
        const double term = double(o.trans_a ? a[p * o.lda + i] : a[i * o.lda + p]) *
                            double(o.trans_b ? b[j * o.ldb + p] : b[p * o.ldb + j]);
        sum += term;
        size += std::abs(term);
      }
      const double old = beta == 0 ? 0.0 : double(beta) * c[i * o.ldc + j], add = bias ? double(bias[j]) : 0.0;
      value[i * o.n + j] = alpha * sum + old + add;
      magnitude[i * o.n + j] = std::abs(alpha) * size + std::abs(old) + std::abs(add);
    }
}

// The outputs of C (rows ldc apart) further from the exact ones than float32's bound: each term is rounded at most
// k times as its 256-deep block is summed (with FMA, once per step), and then by alpha, by the adds of the
// ceil(k / 256) blocks into C, of beta C (and its product) and of the bias.
int64_t outside_bound(const Operands& o, const float* c, const std::vector<double>& value,
                      const std::vector<double>& magnitude) {
  const double bound = gamma(o.k + (o.k + 255) / 256 + 4);
  int64_t outside = 0;
  for (int64_t i = 0; i < o.m; ++i)
    for (int64_t j = 0; j < o.n; ++j)
      outside += !(std::abs(c[i * o.ldc + j] - value[i * o.n + j]) <= bound * magnitude[i * o.n + j]);
  return outside;
}

// `count` standard normal floats.
std::vector<float> random_floats(int64_t count, Generator& generator) {
  const std::vector<double> values = randn({count}, DType::f64, generator).to_vector();
  return {values.begin(), values.end()};
}

}  // namespace

TEST_CASE("gemm_f32: the packed kernel matches exact arithmetic across block, panel, depth and chunk edges") {
  // Blocks are 6 rows by one 64-column panel, summed over 256 values of p at a time; chunks of panels fill half
  // of L2 (with 32 KiB, one panel per chunk). Row counts around 6 and 12, widths around 64 and 128, depths
  // around 256 and 512, a depth of 0 (C = beta C + bias) and of 1.
  struct Case {
    int64_t m, n, k;
  };
  const std::vector<Case> cases = {{1, 1, 1},     {5, 63, 5},  {6, 64, 256}, {7, 65, 257}, {13, 130, 600},
                                   {12, 128, 512}, {3, 100, 0}, {40, 192, 40}};
  Generator generator(11);
  for (const Case& s : cases)
    for (auto [trans_a, trans_b] : {std::pair{false, false}, {false, true}, {true, false}, {true, true}})
      for (int64_t l2_bytes : {l2_cache_bytes(), int64_t{32768}}) {
        // Each operand's leading dimension 3 wider than its rows, and each buffer ending exactly at a guard page
        // after the last element read or written: the kernel faults if it touches anything past them.
        const Operands o{s.m, s.n, s.k, trans_a, trans_b, (trans_a ? s.m : s.k) + 3, (trans_b ? s.k : s.n) + 3, s.n + 2};
        CAPTURE(o.m);
        CAPTURE(o.n);
        CAPTURE(o.k);
        CAPTURE(trans_a);
        CAPTURE(trans_b);
        CAPTURE(l2_bytes);
        const int64_t a_rows = trans_a ? o.k : o.m, a_cols = trans_a ? o.m : o.k;
        const int64_t a_size = o.k == 0 ? 0 : (a_rows - 1) * o.lda + a_cols;
        const int64_t b_rows = trans_b ? o.n : o.k, b_cols = trans_b ? o.k : o.n;
        const int64_t b_size = b_rows == 0 ? 0 : (b_rows - 1) * o.ldb + b_cols, c_size = (o.m - 1) * o.ldc + o.n;
        testing::GuardedFloats a(a_size), b(b_size), c(c_size), bias(o.n);
        const std::vector<float> c_values = random_floats(c_size, generator);
        const std::vector<float> a_values = random_floats(a_size, generator), b_values = random_floats(b_size, generator);
        const std::vector<float> bias_values = random_floats(o.n, generator);
        std::copy(a_values.begin(), a_values.end(), a.data());
        std::copy(b_values.begin(), b_values.end(), b.data());
        std::copy(bias_values.begin(), bias_values.end(), bias.data());
        for (auto [alpha, beta, with_bias] : {std::tuple{1.0f, 0.0f, false}, {-1.5f, 0.5f, true}, {2.0f, 0.0f, true}}) {
          CAPTURE(alpha);
          CAPTURE(beta);
          CAPTURE(with_bias);
          // With beta = 0 C is not read: it holds NaN, which would show in every output. The padding between its
          // rows holds 7 and must keep it.
          for (int64_t i = 0; i < c_size; ++i)
            c.data()[i] = i % o.ldc >= o.n ? 7.0f : beta == 0 ? std::nanf("") : c_values[i];
          std::vector<double> value, magnitude;
          exact(o, alpha, a.data(), b.data(), beta, c.data(), with_bias ? bias.data() : nullptr, value, magnitude);
          PackedB packed;
          // The epilogue negates each value it finishes (exact): it must see every element once, summed.
          testing::CountingEpilogue<float> negate(c.data(), o.m, o.n, o.ldc);
          // The row sums of op(A) are added onto 0.25 (what a caller's slice held), each op(A)[i, p] once, p in
          // order: the same double additions as this loop, so the same bits.
          std::vector<double> a_sums(o.m, 0.25), expected_sums(o.m, 0.25);
          for (int64_t i = 0; i < o.m; ++i)
            for (int64_t p = 0; p < o.k; ++p) expected_sums[i] += a.data()[trans_a ? p * o.lda + i : i * o.lda + p];
          gemm_f32_packed(c.data(), o.ldc, a.data(), o.lda, trans_a, packed.pack(b.data(), o.ldb, trans_b, o.n, o.k),
                          o.m, o.n, o.k, alpha, beta, with_bias ? bias.data() : nullptr, negate.epilogue(),
                          a_sums.data(), l2_bytes);
          CHECK(negate.each_once());
          CHECK(a_sums == expected_sums);
          for (int64_t i = 0; i < o.m; ++i)
            for (int64_t j = 0; j < o.n; ++j) c.data()[i * o.ldc + j] = -c.data()[i * o.ldc + j];
          CHECK(outside_bound(o, c.data(), value, magnitude) == 0);
          int64_t padding_touched = 0;
          for (int64_t i = 0; i < c_size; ++i) padding_touched += i % o.ldc >= o.n && c.data()[i] != 7.0f;
          CHECK(padding_touched == 0);
        }
      }
}

TEST_CASE("gemm_f32: op(B) is read in place when B's rows are whole panels, packed otherwise") {
  // The edge cases above run both ways (widths 64, 128 and 192 untransposed are read in place, rows ldb = n + 3
  // apart, up to a guard page); here, which way each shape goes.
  std::vector<float> b(130 * 70);
  PackedB packed;
  const PanelsB in_place = packed.pack(b.data(), 130, false, 128, 70);  // B (70, 128), rows 130 apart
  CHECK(in_place.data == b.data());
  CHECK(in_place.row_stride == 130);
  CHECK(in_place.panel_stride == 64);
  for (auto [trans_b, n] : {std::pair{false, int64_t{65}}, {true, int64_t{64}}}) {
    CAPTURE(trans_b);
    CAPTURE(n);
    const PanelsB copy = packed.pack(b.data(), 130, trans_b, n, 70);
    CHECK(copy.data != b.data());
    CHECK(copy.row_stride == 64);
    CHECK(copy.panel_stride == 70 * 64);  // k rows of 64 floats per panel
  }
}

TEST_CASE("gemm_f32: gemm<float>'s tilings agree with exact arithmetic, the same bits on 1 and 2 threads") {
  const std::string kernel = kGemmF32Preferred ? "gemm<float> runs its tiles on the packed kernel in this build"
                                               : "gemm<float> stays on OpenBLAS in this build (no AVX-512)";
  MESSAGE(kernel);
  struct Case {
    bool trans_a;
    int64_t m, n, k;
    GemmTiling::Kind kind;
  };
  // vit_cifar's qkv projection at batch 32 (2080 = 4 tiles of 528 rows, the last 496: 4 rows past whole blocks
  // of 6), a wide product cut into 3 tiles of 208 columns (not a multiple of 64), and the weight gradient of that
  // projection, summed over 2080 rows in four slices, run on the kernel; one small enough to run whole (an
  // attention head's scores) stays on OpenBLAS.
  const std::vector<Case> cases = {{false, 2080, 576, 192, GemmTiling::rows},
                                   {false, 64, 600, 128, GemmTiling::cols},
                                   {true, 576, 192, 2080, GemmTiling::depth},
                                   {false, 65, 65, 64, GemmTiling::whole}};
  Generator generator(12);
  for (const Case& s : cases)
    for (bool trans_b : {false, true}) {
      const Operands o{s.m, s.n, s.k, s.trans_a, trans_b, s.trans_a ? s.m : s.k, trans_b ? s.k : s.n, s.n};
      CAPTURE(o.m);
      CAPTURE(o.n);
      CAPTURE(o.k);
      CAPTURE(trans_b);
      CHECK(gemm_tiling(o.m, o.n, o.k, s.trans_a, trans_b).kind == s.kind);
      const std::vector<float> a = random_floats(o.m * o.k, generator), b = random_floats(o.n * o.k, generator);
      const std::vector<float> bias = random_floats(o.n, generator), c0 = random_floats(o.m * o.n, generator);
      // C, then the row sums of op(A) (m), which the kernel takes as it reads A when k is cut into slices.
      auto product = [&] {
        std::vector<float> c = c0;
        c.resize(o.m * o.n + o.m);
        gemm<float>(s.trans_a, trans_b, o.m, o.n, o.k, 0.5f, a.data(), o.lda, b.data(), o.ldb, 2.0f, c.data(), o.ldc,
                    bias.data(), {}, c.data() + o.m * o.n);
        return c;
      };
      const std::vector<float> one = testing::with_threads(1, product), two = testing::with_threads(2, product);
      CHECK(one == two);
      int64_t sums_wrong = 0;
      for (int64_t i = 0; i < o.m; ++i) {
        double sum = 0, magnitude = 0;  // sum_p op(A)[i][p], and its terms' magnitudes for the bound
        for (int64_t p = 0; p < o.k; ++p) {
          const float x = s.trans_a ? a[p * o.lda + i] : a[i * o.lda + p];
          sum += x;
          magnitude += std::abs(x);
        }
        // Summed in double and rounded once to float: within half an ulp of float, plus double's k 2^-53.
        sums_wrong += std::abs(two[o.m * o.n + i] - sum) > 0x1p-24 * std::abs(sum) + 1e-12 * magnitude;
      }
      CHECK(sums_wrong == 0);
      std::vector<double> value, magnitude;
      exact(o, 0.5f, a.data(), b.data(), 2.0f, c0.data(), bias.data(), value, magnitude);
      CHECK(outside_bound(o, two.data(), value, magnitude) == 0);
    }
}
