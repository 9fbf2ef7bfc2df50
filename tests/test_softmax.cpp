// softmax and log_softmax: values against hand-derived and PyTorch numbers, gradchecks over the last dim, a
// middle dim and non-contiguous inputs, large-logit stability, the vectorised exp, fast kernels vs reference.
#include <cmath>
#include <limits>

#include "ops/softmax_kernels.h"
#include "tests/helpers.h"
#include "tests/reference/softmax.h"

using namespace vt;

namespace {

// x[i] = scale * sin(0.37 i + 0.1), the inputs of scripts/reference/softmax.py.
Tensor sine_input(const Shape& shape, double scale, DType dtype = DType::f64) {
  std::vector<double> values(shape_numel(shape));
  for (size_t i = 0; i < values.size(); ++i) values[i] = scale * std::sin(0.37 * double(i) + 0.1);
  return Tensor::from_vector(values, shape, dtype);
}

}  // namespace

TEST_CASE("softmax and log_softmax forward: hand-derived values") {
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor x = Tensor::from_vector({1, 2, 3}, {1, 3}, dtype);  // (1, 3)
    // softmax([1, 2, 3]) = e^x / (e + e^2 + e^3) = [0.0900306, 0.2447285, 0.6652410]
    testing::expect_close(softmax(x, -1), {0.09003057317038046, 0.24472847105479767, 0.6652409557748219}, 1e-7);
    // log_softmax([1, 2, 3]) = x - log(e + e^2 + e^3) = x - 3.4076059644 = [-2.4076060, -1.4076060, -0.4076060]
    testing::expect_close(log_softmax(x, -1), {-2.4076059644443806, -1.4076059644443806, -0.4076059644443806}, 1e-6);
  }
  // Over dim 0 of a (2, 2): each column is a softmax of two values, softmax([0, ln 3]) = [1/4, 3/4].
  const Tensor x = Tensor::from_vector({0, 0, std::log(3.0), 0}, {2, 2}, DType::f64);  // (2, 2)
  testing::expect_close(softmax(x, 0), {0.25, 0.5, 0.75, 0.5}, 1e-15);
  // A 0-dim tensor is a softmax over one element, as in PyTorch: softmax = 1, log_softmax = 0.
  testing::expect_close(softmax(Tensor::scalar(5.0), 0), {1.0}, 0.0);
  testing::expect_close(log_softmax(Tensor::scalar(5.0), -1), {0.0}, 0.0);
}

TEST_CASE("softmax and log_softmax forward: PyTorch values") {
  const Tensor x = sine_input({2, 3, 4}, 3.0);  // (2, 3, 4)
  testing::expect_close(softmax(x, 1), reference::softmax_dim1, 1e-14);
  testing::expect_close(log_softmax(x, -1), reference::log_softmax_last, 1e-14);
  // float32 runs the vectorised exp: a few float32 ulps.
  const Tensor x32 = sine_input({2, 3, 4}, 3.0, DType::f32);  // (2, 3, 4)
  testing::expect_close(softmax(x32, 1), reference::softmax_dim1, 1e-7, 1e-6);
  testing::expect_close(log_softmax(x32, -1), reference::log_softmax_last, 1e-6, 1e-6);
}

TEST_CASE("softmax output is in the input's dim order and its rows sum to 1") {
  const Tensor x = sine_input({3, 4, 5}, 2.0);  // (3, 4, 5)
  const Tensor y = softmax(x, 1);               // (3, 4, 5)
  CHECK(y.shape() == Shape{3, 4, 5});
  testing::expect_close(sum(y, {1}), std::vector<double>(15, 1.0), 1e-14);
  // Element (i, j, k) of softmax over dim 1 is exp(x[i, j, k]) / sum_j' exp(x[i, j', k]).
  double column_total = 0;
  for (int64_t j = 0; j < 4; ++j) column_total += std::exp(x.at({2, j, 3}));
  CHECK(y.at({2, 1, 3}) == doctest::Approx(std::exp(x.at({2, 1, 3})) / column_total).epsilon(1e-14));
}

TEST_CASE("softmax gradcheck: last dim, middle dim, non-contiguous input") {
  const Tensor a = testing::random_leaf({3, 4, 5}, 11);
  testing::gradcheck([](const std::vector<Tensor>& l) { return softmax(l[0], -1); }, {a});
  testing::gradcheck([](const std::vector<Tensor>& l) { return softmax(l[0], 1); }, {a});
  testing::gradcheck([](const std::vector<Tensor>& l) { return softmax(l[0], 0); }, {a});
  // A transposed view: the softmax dim (last of the view) has stride 5 in the leaf.
  testing::gradcheck([](const std::vector<Tensor>& l) { return softmax(transpose(l[0], 1, 2), -1); }, {a});
  // A strided slice along the softmax dim.
  testing::gradcheck([](const std::vector<Tensor>& l) { return softmax(slice(l[0], 2, 0, 5, 2), 2); }, {a});
}

TEST_CASE("log_softmax gradcheck: last dim, middle dim, non-contiguous input") {
  const Tensor a = testing::random_leaf({3, 4, 5}, 12);
  testing::gradcheck([](const std::vector<Tensor>& l) { return log_softmax(l[0], -1); }, {a});
  testing::gradcheck([](const std::vector<Tensor>& l) { return log_softmax(l[0], 1); }, {a});
  testing::gradcheck([](const std::vector<Tensor>& l) { return log_softmax(transpose(l[0], 0, 2), -1); }, {a});
  testing::gradcheck([](const std::vector<Tensor>& l) { return log_softmax(slice(l[0], 1, 1, 4), 1); }, {a});
}

TEST_CASE("softmax and log_softmax of large logits stay finite") {
  // Without the max shift exp(1000) overflows to inf and softmax would be inf / inf = NaN. Shifting by the
  // max gives softmax([1000, 1001, 1002]) = softmax([0, 1, 2]) = [0.0900306, 0.2447285, 0.6652410].
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor x = Tensor::from_vector({1000, 1001, 1002, -1000, 0, 1000}, {2, 3}, dtype);  // (2, 3)
    // Row 2: e^-2000 and e^-1000 vanish next to e^0: softmax = [0, 0, 1], log_softmax = [-2000, -1000, 0].
    testing::expect_close(softmax(x, -1), {0.09003057317038046, 0.24472847105479767, 0.6652409557748219, 0, 0, 1},
                          1e-7);
    testing::expect_close(log_softmax(x, -1),
                          {-2.4076059644443806, -1.4076059644443806, -0.4076059644443806, -2000, -1000, 0}, 1e-5);
    // Backward is finite as well: d sum(w * softmax) / dx with w = [1, 2, 3, 1, 2, 3].
    Tensor leaf = x.clone().requires_grad_();
    const Tensor weights = Tensor::from_vector({1, 2, 3, 1, 2, 3}, {2, 3}, dtype);
    sum(mul(softmax(leaf, -1), weights)).backward();
    for (double g : leaf.grad().to_vector()) CHECK(std::isfinite(g));
  }
}

TEST_CASE("softmax gives exactly zero probability to -inf logits (masking)") {
  const double inf = std::numeric_limits<double>::infinity();
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor x = Tensor::from_vector({0, -inf, 0, -inf}, {1, 4}, dtype);  // (1, 4)
    // softmax([0, -inf, 0, -inf]) = [1/2, 0, 1/2, 0]
    testing::expect_close(softmax(x, -1), {0.5, 0.0, 0.5, 0.0}, 0.0);
  }
}

TEST_CASE("vectorizable_exp matches std::exp to a few float ulps") {
  double worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.0f + 175.0f * float(i) / 200000.0f;  // the whole range where exp is a normal float
    const double exact = std::exp(double(x));
    worst = std::max(worst, std::abs(double(vectorizable_exp(x)) - exact) / exact);
  }
  INFO("worst relative error " << worst);
  CHECK(worst < 1.5e-7);  // about 1 float32 ulp (eps = 1.19e-7); measured 8.3e-8
  CHECK(vectorizable_exp(0.0f) == 1.0f);
  CHECK(vectorizable_exp(-100.0f) == 0.0f);
  CHECK(vectorizable_exp(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(std::isinf(vectorizable_exp(100.0f)));
  CHECK(std::isnan(vectorizable_exp(std::numeric_limits<float>::quiet_NaN())));
}

namespace {

// Runs every fast softmax kernel and its reference on random (rows, cols) inputs of type T and compares.
template <class T>
void compare_softmax_kernels(DType dtype, int64_t rows, int64_t cols, double atol, double rtol) {
  INFO("dtype " << dtype_name(dtype) << ", rows " << rows << ", cols " << cols);
  Generator generator(rows * 1000 + cols);
  const Tensor x = mul(randn({rows, cols}, dtype, generator), 3.0);  // (rows, cols)
  const Tensor dy = randn({rows, cols}, dtype, generator);           // (rows, cols)
  Tensor fast = Tensor::empty({rows, cols}, dtype), reference = Tensor::empty({rows, cols}, dtype);

  softmax_forward_cpu(fast.data<T>(), x.data<T>(), rows, cols);
  softmax_forward_reference(reference.data<T>(), x.data<T>(), rows, cols);
  testing::expect_close(fast, reference, atol, rtol);
  const Tensor y = reference.clone();  // (rows, cols) softmax output
  softmax_backward_cpu(fast.data<T>(), dy.data<T>(), y.data<T>(), rows, cols);
  softmax_backward_reference(reference.data<T>(), dy.data<T>(), y.data<T>(), rows, cols);
  testing::expect_close(fast, reference, atol, rtol);

  log_softmax_forward_cpu(fast.data<T>(), x.data<T>(), rows, cols);
  log_softmax_forward_reference(reference.data<T>(), x.data<T>(), rows, cols);
  testing::expect_close(fast, reference, atol * 10, rtol);  // log-probabilities reach about -20
  const Tensor log_y = reference.clone();  // (rows, cols) log_softmax output
  log_softmax_backward_cpu(fast.data<T>(), dy.data<T>(), log_y.data<T>(), rows, cols);
  log_softmax_backward_reference(reference.data<T>(), dy.data<T>(), log_y.data<T>(), rows, cols);
  testing::expect_close(fast, reference, atol * 10, rtol);  // dy - p * sum(dy): sum(dy) grows like sqrt(cols)
}

}  // namespace

TEST_CASE("softmax fast kernels match the reference kernels (f32, f64, odd sizes, threaded)") {
  // Sizes: a single column, sizes around the 8-float vector width, and 260 x 67 > the threading grain (16384 elements).
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{1, 1}, {5, 1}, {3, 7}, {7, 9}, {4, 17}, {2, 130}, {260, 67}};
  for (auto [rows, cols] : sizes) {
    compare_softmax_kernels<float>(DType::f32, rows, cols, 1e-6, 1e-5);
    compare_softmax_kernels<double>(DType::f64, rows, cols, 1e-13, 1e-12);
  }
}

TEST_CASE("softmax misuse fails loudly") {
  CHECK_THROWS_WITH_AS(softmax(Tensor::from_indices({1, 2}, {2}), -1), doctest::Contains("needs a float tensor"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(log_softmax(Tensor::zeros({2, 3}), 2), doctest::Contains("out of range"), std::runtime_error);
  CHECK_THROWS_WITH_AS(softmax(Tensor::zeros({2, 3}), -3), doctest::Contains("softmax"), std::runtime_error);
  CHECK_THROWS_WITH_AS(softmax(Tensor(), -1), doctest::Contains("undefined"), std::runtime_error);
}
