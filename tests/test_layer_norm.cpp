// layer_norm: hand-derived and PyTorch values, gradchecks (with and without weight and bias, non-contiguous
// inputs), the large-offset inputs that one-pass variance gets wrong, fast kernels against the reference
// kernels, and thread-count independence of the weight gradient.
#include <cmath>
#include <vector>

#include "autograd/parallel.h"
#include "ops/layer_norm_kernels.h"
#include "tests/helpers.h"
#include "tests/reference/layer_norm.h"

using namespace vt;

namespace {

Tensor leaf_from(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f64) {
  return Tensor::from_vector(values, shape, dtype).requires_grad_();
}

// The inputs of scripts/reference/layer_norm.py.
std::vector<double> reference_x() {
  std::vector<double> x(30);
  for (int i = 0; i < 30; ++i) x[i] = 2.0 * std::sin(0.37 * i + 0.1) + 0.3 * (i / 5);
  return x;
}
std::vector<double> reference_weight() {
  std::vector<double> w(5);
  for (int j = 0; j < 5; ++j) w[j] = 1.0 + 0.25 * std::cos(0.7 * j);
  return w;
}
std::vector<double> reference_bias() {
  std::vector<double> b(5);
  for (int j = 0; j < 5; ++j) b[j] = 0.1 * j - 0.2;
  return b;
}
std::vector<double> reference_upstream() {
  std::vector<double> g(30);
  for (int i = 0; i < 30; ++i) g[i] = std::cos(0.53 * i + 0.2);
  return g;
}

// Deterministic values of size about 1, plus offset_per_row * (r % 7) in row r of rows of `cols` values.
std::vector<double> wavy(int64_t n, double phase, double offset_per_row = 0.0, int64_t cols = 1) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i)
    v[i] = std::sin(0.731 * i + phase) + 0.5 * std::cos(0.157 * i) + offset_per_row * static_cast<double>(i / cols % 7);
  return v;
}

}  // namespace

TEST_CASE("layer_norm forward matches hand-derived values") {
  // x = [1, 2, 3, 4]: mean 2.5, biased var = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25,
  // rstd = 1 / sqrt(1.25 + 1e-5) = 0.8944236, xhat = [-1.5, -0.5, 0.5, 1.5] * rstd
  const Tensor x = Tensor::from_vector({1, 2, 3, 4}, {1, 4});  // (1, 4)
  testing::expect_close(layer_norm(x, Tensor(), Tensor()), {-1.3416354, -0.4472118, 0.4472118, 1.3416354}, 1e-6);
  // weight [1, 2, 0.5, -1], bias [0, 1, -1, 0.5]: y = xhat * weight + bias
  //   = [-1.3416354, -0.8944236 + 1, 0.2236059 - 1, -1.3416354 + 0.5]
  const Tensor weight = Tensor::from_vector({1, 2, 0.5, -1}, {4});  // (4)
  const Tensor bias = Tensor::from_vector({0, 1, -1, 0.5}, {4});    // (4)
  testing::expect_close(layer_norm(x, weight, bias), {-1.3416354, 0.1055764, -0.7763941, -0.8416354}, 1e-6);
  // A constant row has var 0: xhat = 0 * rstd = 0 (rstd = 1 / sqrt(eps) stays finite), so y = bias.
  const Tensor constant = Tensor::full({2, 4}, 7.0, DType::f64);  // (2, 4)
  testing::expect_close(layer_norm(constant, weight.to(DType::f64), bias.to(DType::f64)),
                        {0, 1, -1, 0.5, 0, 1, -1, 0.5}, 1e-12);
  // eps enters under the square root: x = [-1, 1] has var 1, so with eps = 3, xhat = [-1, 1] / sqrt(4) = [-0.5, 0.5].
  testing::expect_close(layer_norm(Tensor::from_vector({-1, 1}, {2}, DType::f64), Tensor(), Tensor(), 3.0), {-0.5, 0.5},
                        1e-15);
}

TEST_CASE("layer_norm forward and gradients match PyTorch") {
  for (DType dtype : {DType::f64, DType::f32}) {
    const double tolerance = dtype == DType::f64 ? 1e-12 : 2e-6;
    Tensor x = leaf_from(reference_x(), {2, 3, 5}, dtype);         // (2, 3, 5)
    Tensor weight = leaf_from(reference_weight(), {5}, dtype);     // (5)
    Tensor bias = leaf_from(reference_bias(), {5}, dtype);         // (5)
    const Tensor upstream = Tensor::from_vector(reference_upstream(), {2, 3, 5}, dtype);  // (2, 3, 5)
    Tensor y = layer_norm(x, weight, bias, 1e-5);
    testing::expect_close(y, reference::layer_norm_y, tolerance);
    y.backward(upstream);
    testing::expect_close(x.grad(), reference::layer_norm_dx, tolerance);
    testing::expect_close(weight.grad(), reference::layer_norm_dweight, tolerance);
    testing::expect_close(bias.grad(), reference::layer_norm_dbias, tolerance);

    Tensor x_plain = leaf_from(reference_x(), {2, 3, 5}, dtype);  // (2, 3, 5)
    Tensor y_plain = layer_norm(x_plain, Tensor(), Tensor(), 1e-5);
    testing::expect_close(y_plain, reference::layer_norm_plain_y, tolerance);
    y_plain.backward(upstream);
    testing::expect_close(x_plain.grad(), reference::layer_norm_plain_dx, tolerance);
  }
}

TEST_CASE("layer_norm gradcheck with weight and bias") {
  Tensor x = testing::random_leaf({3, 7}, 11);     // (3, 7)
  Tensor weight = testing::random_leaf({7}, 12);   // (7)
  Tensor bias = testing::random_leaf({7}, 13);     // (7)
  testing::gradcheck([](const std::vector<Tensor>& l) { return layer_norm(l[0], l[1], l[2]); }, {x, weight, bias});
  // A 3-D input: the rows are every leading index, (2, 3) -> 6 rows of D = 5.
  Tensor x3 = testing::random_leaf({2, 3, 5}, 14, 3.0);  // (2, 3, 5)
  Tensor weight5 = testing::random_leaf({5}, 15);        // (5)
  Tensor bias5 = testing::random_leaf({5}, 16);          // (5)
  testing::gradcheck([](const std::vector<Tensor>& l) { return layer_norm(l[0], l[1], l[2], 1e-3); },
                     {x3, weight5, bias5});
}

TEST_CASE("layer_norm gradcheck without weight, without bias, without both") {
  Tensor x = testing::random_leaf({4, 6}, 21);    // (4, 6)
  Tensor weight = testing::random_leaf({6}, 22);  // (6)
  Tensor bias = testing::random_leaf({6}, 23);    // (6)
  testing::gradcheck([](const std::vector<Tensor>& l) { return layer_norm(l[0], Tensor(), Tensor()); }, {x});
  testing::gradcheck([](const std::vector<Tensor>& l) { return layer_norm(l[0], l[1], Tensor()); }, {x, weight});
  testing::gradcheck([](const std::vector<Tensor>& l) { return layer_norm(l[0], Tensor(), l[1]); }, {x, bias});
}

TEST_CASE("layer_norm gradcheck on non-contiguous inputs and upstream") {
  Tensor x = testing::random_leaf({7, 3}, 31);        // (7, 3), read transposed as (3, 7) with strides (1, 3)
  Tensor weight = testing::random_leaf({14}, 32);     // (14), read as every other element: (7) with stride 2
  Tensor bias = testing::random_leaf({7}, 33);        // (7)
  testing::gradcheck(
      [](const std::vector<Tensor>& l) { return layer_norm(transpose(l[0], 0, 1), slice(l[1], 0, 0, 14, 2), l[2]); },
      {x, weight, bias});
  // Transposing the output makes the upstream gradient reaching layer_norm non-contiguous.
  testing::gradcheck([](const std::vector<Tensor>& l) { return transpose(layer_norm(l[0], l[1], l[2]), 0, 1); },
                     {testing::random_leaf({3, 7}, 34), bias, testing::random_leaf({7}, 35)});
}

TEST_CASE("layer_norm two-pass statistics survive a large offset") {
  // Row r is offset_r + z with z_c = (c - 31.5) / 64, c = 0..63: mean offset_r, biased var = (64^2 - 1) / 12 / 64^2
  // = 0.08331298828125, so y = z / sqrt(var + eps) exactly. Every x and every mean below is exact in its dtype
  // (z is a multiple of 1/128; the float spacing at 3e4 is 1/512, the double spacing at 3e8 is 2^-24).
  const int64_t cols = 64;
  const double variance = (64.0 * 64.0 - 1.0) / 12.0 / (64.0 * 64.0);
  auto offset_rows = [&](const std::vector<double>& offsets) {
    std::vector<double> x;
    for (double offset : offsets)
      for (int64_t c = 0; c < cols; ++c) x.push_back(offset + (static_cast<double>(c) - 31.5) / 64.0);
    return x;
  };
  std::vector<double> expected;
  for (int r = 0; r < 3; ++r)
    for (int64_t c = 0; c < cols; ++c)
      expected.push_back((static_cast<double>(c) - 31.5) / 64.0 / std::sqrt(variance + 1e-5));

  const std::vector<double> x32_values = offset_rows({1e4, 2e4, -3e4});
  // One-pass float statistics fail here: E[x^2] = 1e8 has a float spacing of 8, a hundred times var itself.
  float sum = 0, sum_squares = 0;
  for (int64_t c = 0; c < cols; ++c) {
    const float v = static_cast<float>(x32_values[c]);
    sum += v;
    sum_squares += v * v;
  }
  const float one_pass_variance = sum_squares / cols - (sum / cols) * (sum / cols);
  CHECK(std::abs(one_pass_variance - variance) > 0.5 * variance);
  const Tensor x32 = Tensor::from_vector(x32_values, {3, cols}, DType::f32);  // (3, 64)
  testing::expect_close(layer_norm(x32, Tensor(), Tensor()), expected, 2e-6, 1e-6);

  // float64 at offsets 1e8 (x^2 = 1e16 has a double spacing of 2): one-pass double statistics would fail alike.
  const Tensor x64 = Tensor::from_vector(offset_rows({1e8, 2e8, -3e8}), {3, cols}, DType::f64);  // (3, 64)
  testing::expect_close(layer_norm(x64, Tensor(), Tensor()), expected, 1e-12, 1e-12);
}

TEST_CASE("layer_norm float32 backward at a large offset agrees with float64") {
  // The same gradients in float32 and float64 at offset 1e3, where the float spacing is 6e-5: the float32 mean
  // is rounded by up to 3e-5, which moves xhat (std about 0.8) by 4e-5, hence the 2e-4 tolerance. A one-pass
  // float variance would be off by about 10% here (E[x^2] = 1e6 has a float spacing of 0.06).
  const int64_t rows = 5, cols = 48;
  std::vector<double> x_values = wavy(rows * cols, 0.3);
  for (double& v : x_values) v = static_cast<float>(1e3 + v);  // both dtypes see the same (float32) inputs
  const std::vector<double> weight_values = wavy(cols, 1.1), bias_values = wavy(cols, 2.2);
  const Tensor upstream = Tensor::from_vector(wavy(rows * cols, 0.7), {rows, cols}, DType::f64);  // (5, 48)
  std::vector<Tensor> grads[2];
  for (DType dtype : {DType::f64, DType::f32}) {
    Tensor x = leaf_from(x_values, {rows, cols}, dtype);    // (5, 48)
    Tensor weight = leaf_from(weight_values, {cols}, dtype);  // (48)
    Tensor bias = leaf_from(bias_values, {cols}, dtype);      // (48)
    layer_norm(x, weight, bias).backward(upstream.to(dtype));
    grads[dtype == DType::f32] = {x.grad(), weight.grad(), bias.grad()};
  }
  for (size_t i = 0; i < 3; ++i) testing::expect_close(grads[1][i], grads[0][i], 2e-4, 2e-4);
}

namespace {

// Runs the fast and the reference kernels on the same inputs and compares every output.
template <class T>
void compare_kernels(int64_t rows, int64_t cols, bool with_weight, bool with_bias, double tolerance) {
  CAPTURE(rows);
  CAPTURE(cols);
  CAPTURE(with_weight);
  CAPTURE(with_bias);
  auto as_t = [](const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); };
  const std::vector<T> x = as_t(wavy(rows * cols, 0.4, 3.0, cols));  // (rows, cols), offsets 0..18 per row
  const std::vector<T> dy = as_t(wavy(rows * cols, 1.9));            // (rows, cols)
  const std::vector<T> weight = as_t(wavy(cols, 0.8)), bias = as_t(wavy(cols, 2.5));  // (cols)
  const T* w = with_weight ? weight.data() : nullptr;
  const T* b = with_bias ? bias.data() : nullptr;
  struct Outputs {
    std::vector<T> y, mean, rstd, dx, dweight, dbias;
  };
  auto make = [&] {
    return Outputs{std::vector<T>(rows * cols), std::vector<T>(rows), std::vector<T>(rows),
                   std::vector<T>(rows * cols), std::vector<T>(cols), std::vector<T>(cols)};
  };
  Outputs fast = make(), reference = make();
  layer_norm_forward_cpu(fast.y.data(), fast.mean.data(), fast.rstd.data(), x.data(), w, b, rows, cols, 1e-5);
  layer_norm_forward_reference(reference.y.data(), reference.mean.data(), reference.rstd.data(), x.data(), w, b,
                               rows, cols, 1e-5);
  // Both backwards read the reference statistics, so that only the backward kernels are compared.
  layer_norm_backward_cpu(fast.dx.data(), fast.dweight.data(), fast.dbias.data(), dy.data(), x.data(),
                          reference.mean.data(), reference.rstd.data(), w, rows, cols);
  layer_norm_backward_reference(reference.dx.data(), reference.dweight.data(), reference.dbias.data(), dy.data(),
                                x.data(), reference.mean.data(), reference.rstd.data(), w, rows, cols);
  // The worst element, relative to 1 + |reference|, within the tolerance.
  auto compare = [tolerance](const std::vector<T>& got, const std::vector<T>& expected, const char* name) {
    REQUIRE(got.size() == expected.size());
    double worst = 0;
    size_t worst_index = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const double error = std::abs(double(got[i]) - double(expected[i])) / (1.0 + std::abs(double(expected[i])));
      if (!(error <= worst)) worst = error, worst_index = i;  // NaN counts as the worst
    }
    INFO(name << "[" << worst_index << "]: fast " << got[worst_index] << ", reference " << expected[worst_index]);
    CHECK(worst <= tolerance);
  };
  compare(fast.y, reference.y, "y");
  compare(fast.mean, reference.mean, "mean");
  compare(fast.rstd, reference.rstd, "rstd");
  compare(fast.dx, reference.dx, "dx");
  compare(fast.dweight, reference.dweight, "dweight");
  compare(fast.dbias, reference.dbias, "dbias");
}

}  // namespace

TEST_CASE("layer_norm fast kernels match the reference kernels") {
  // Odd sizes (no multiple of a vector width), one row, rows enough to use both threads and every block, and
  // the pixel rows of tnt_cifar (12 wide, a vector and a half) and of timm's TNT-S (24), which run loops of a
  // compile-time width.
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{1, 1}, {37, 129}, {1, 1000}, {301, 197}, {4099, 12}, {2053, 24}, {3, 12}})
    for (bool with_weight : {true, false})
      for (bool with_bias : {true, false}) {
        compare_kernels<float>(rows, cols, with_weight, with_bias, 2e-5);
        compare_kernels<double>(rows, cols, with_weight, with_bias, 1e-12);
      }
  // Outputs that are not wanted are null.
  const std::vector<double> x = wavy(12, 0.1), dy = wavy(12, 0.2);
  std::vector<double> y(12), mean(3), rstd(3), dx(12);
  layer_norm_forward_cpu<double>(y.data(), mean.data(), rstd.data(), x.data(), nullptr, nullptr, 3, 4, 1e-5);
  std::vector<double> dx_reference(12);
  layer_norm_backward_cpu<double>(dx.data(), nullptr, nullptr, dy.data(), x.data(), mean.data(), rstd.data(), nullptr,
                                  3, 4);
  layer_norm_backward_reference<double>(dx_reference.data(), nullptr, nullptr, dy.data(), x.data(), mean.data(),
                                        rstd.data(), nullptr, 3, 4);
  for (size_t i = 0; i < dx.size(); ++i) CHECK(std::abs(dx[i] - dx_reference[i]) <= 1e-12);
}

TEST_CASE("layer_norm gradients are identical for 1 and 2 threads") {
  const int64_t rows = 301, cols = 197;  // 59,297 elements: above the single-thread grain
  const std::vector<double> x_values = wavy(rows * cols, 0.6, 2.0, cols);
  const Tensor upstream = Tensor::from_vector(wavy(rows * cols, 1.3), {rows, cols});  // (301, 197)
  auto run = [&] {
    Tensor x = leaf_from(x_values, {rows, cols}, DType::f32);      // (301, 197)
    Tensor weight = leaf_from(wavy(cols, 0.9), {cols}, DType::f32);  // (197)
    Tensor bias = leaf_from(wavy(cols, 1.7), {cols}, DType::f32);    // (197)
    Tensor y = layer_norm(x, weight, bias);
    y.backward(upstream);
    return std::vector<std::vector<double>>{y.to_vector(), x.grad().to_vector(), weight.grad().to_vector(),
                                            bias.grad().to_vector()};
  };
  const auto one = testing::with_threads(1, run), two = testing::with_threads(2, run);
  for (size_t i = 0; i < 4; ++i) CHECK(one[i] == two[i]);  // bit for bit
}

TEST_CASE("layer_norm misuse fails loudly") {
  const Tensor x = Tensor::zeros({2, 4});  // (2, 4)
  CHECK_THROWS_WITH_AS(layer_norm(x, Tensor::ones({3}), Tensor()), doctest::Contains("weight f32(3) does not match"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(layer_norm(x, Tensor(), Tensor::ones({4, 1})), doctest::Contains("bias f32(4, 1)"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(layer_norm(x, Tensor::ones({4}, DType::f64), Tensor()),
                       doctest::Contains("another dtype"), std::runtime_error);
  CHECK_THROWS_WITH_AS(layer_norm(Tensor::scalar(1.0), Tensor(), Tensor()), doctest::Contains("at least one dim"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(layer_norm(Tensor::from_indices({1, 2}, {2}), Tensor(), Tensor()),
                       doctest::Contains("needs a float tensor"), std::runtime_error);
  CHECK_THROWS_WITH_AS(layer_norm(x, Tensor(), Tensor(), -1e-5), doctest::Contains("eps must be non-negative"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(layer_norm(Tensor(), Tensor(), Tensor()), doctest::Contains("undefined input"),
                       std::runtime_error);
}
