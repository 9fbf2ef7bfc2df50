// dropout and add_drop_path: identity outside training, the mask against its definition from the counter-based generator,
// reproducibility and thread-count independence, kept fraction and preserved mean, gradcheck, misuse.
#include <cmath>
#include <vector>

#include "autograd/parallel.h"
#include "tests/helpers.h"

using namespace vt;

TEST_CASE("dropout is the identity in eval mode and for p = 0") {
  Tensor x = testing::random_leaf({3, 4}, 1);  // (3, 4)
  Generator generator(5);
  // The very same tensor comes back (no copy, no node), and no random numbers are drawn.
  CHECK(dropout(x, 0.5, /*training=*/false, generator).impl() == x.impl());
  CHECK(dropout(x, 0.0, /*training=*/true, generator).impl() == x.impl());
  CHECK(generator.offset() == 0);
}

TEST_CASE("dropout with p = 1 gives zeros and a zero gradient") {
  Tensor x = testing::random_leaf({2, 5}, 2);  // (2, 5)
  Generator generator(5);
  Tensor y = dropout(x, 1.0, true, generator);
  testing::expect_close(y, std::vector<double>(10, 0.0), 0.0);
  y.backward(Tensor::ones({2, 5}, DType::f64));
  testing::expect_close(x.grad(), std::vector<double>(10, 0.0), 0.0);
}

TEST_CASE("dropout keeps element i when random_uniform(key, first + i) >= p and scales it by 1 / (1 - p)") {
  const int64_t n = 1000;
  std::vector<double> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = 1.0 + std::sin(0.3 * i);
  const double p = 0.25;
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor x = Tensor::from_vector(values, {10, 100}, dtype);  // (10, 100)
    Generator generator(77);
    generator.reserve(123);  // a non-zero starting counter
    const Tensor y = dropout(x, p, true, generator);
    CHECK(generator.offset() == 123 + n);  // the draw reserved one counter per element
    // Survivors are x / (1 - p) = x / 0.75 = 4x / 3; the rest are 0.
    std::vector<double> expected(n);
    for (int64_t i = 0; i < n; ++i)
      expected[i] = random_uniform(generator.key(), 123 + static_cast<uint64_t>(i)) >= p ? values[i] / 0.75 : 0.0;
    testing::expect_close(y, expected, 1e-6, 1e-6);
  }
}

TEST_CASE("dropout masks are reproducible for a seed and differ between draws") {
  const Tensor x = Tensor::ones({64, 32});  // (64, 32)
  Generator first_generator(9), second_generator(9), other_seed(10);
  const std::vector<double> a = dropout(x, 0.5, true, first_generator).to_vector();
  CHECK(a == dropout(x, 0.5, true, second_generator).to_vector());
  CHECK(a != dropout(x, 0.5, true, other_seed).to_vector());
  // The offset moved on, so the next draw from the same generator has a new mask.
  CHECK(a != dropout(x, 0.5, true, first_generator).to_vector());
}

TEST_CASE("dropout keeps a fraction 1 - p and preserves the mean") {
  const int64_t n = 200003;
  const double p = 0.3;
  Generator generator(2024);
  const std::vector<double> y = dropout(Tensor::ones({n}), p, true, generator).to_vector();  // (200003)
  int64_t kept = 0, kept_with_another_value = 0;
  double total = 0;
  for (double v : y) {
    if (v != 0) {
      ++kept;
      if (std::abs(v - 1.0 / 0.7) > 1e-6) ++kept_with_another_value;  // survivors are 1 / (1 - p)
    }
    total += v;
  }
  CHECK(kept_with_another_value == 0);
  // The kept count is Binomial(n, 0.7): std sqrt(n p (1 - p)) / n = 0.001 as a fraction, so 0.005 is 5 sigma.
  CHECK(std::abs(static_cast<double>(kept) / n - (1 - p)) < 0.005);
  // The mean of y is kept / (0.7 n), whose std is 0.001 / 0.7 = 0.0015: within 0.0075 of E[x] = 1.
  CHECK(std::abs(total / n - 1.0) < 0.0075);
}

TEST_CASE("dropout gradcheck with a fixed generator") {
  // Every call of the lambda rebuilds the generator from the same seed, so every call draws the same mask and
  // the op is a fixed linear map of x.
  Tensor x = testing::random_leaf({6, 7}, 3);  // (6, 7)
  testing::gradcheck(
      [](const std::vector<Tensor>& l) {
        Generator generator(31);
        return dropout(l[0], 0.4, true, generator);
      },
      {x});
  // A non-contiguous input (the mask follows the logical row-major order of the transposed view).
  Tensor x_transposed = testing::random_leaf({5, 3}, 4);  // (5, 3), read as (3, 5)
  testing::gradcheck(
      [](const std::vector<Tensor>& l) {
        Generator generator(32);
        return dropout(transpose(l[0], 0, 1), 0.5, true, generator);
      },
      {x_transposed});
}

TEST_CASE("dropout backward uses the forward's mask") {
  Tensor x = Tensor::from_vector(std::vector<double>(500, 2.0), {500}, DType::f64).requires_grad_();  // (500)
  Generator generator(8);
  Tensor y = dropout(x, 0.6, true, generator);
  y.backward(Tensor::ones({500}, DType::f64));
  // y = 2 * mask / 0.4 and dx = mask / 0.4, so dx = y / 2 element for element.
  const std::vector<double> forward = y.to_vector(), gradient = x.grad().to_vector();
  for (size_t i = 0; i < forward.size(); ++i) CHECK(gradient[i] == forward[i] / 2.0);
}

TEST_CASE("dropout masks are identical for 1 and 2 threads") {
  const int64_t n = (1 << 16) + 17;  // above the single-thread grain
  auto mask = [n] {
    Generator generator(123);
    return dropout(Tensor::ones({n}), 0.5, true, generator).to_vector();
  };
  CHECK(testing::with_threads(1, mask) == testing::with_threads(2, mask));
}

TEST_CASE("dropout misuse fails loudly") {
  const Tensor x = Tensor::ones({4});  // (4)
  CHECK_THROWS_WITH_AS(dropout(x, -0.1, true), doctest::Contains("p must be in [0, 1]"), std::runtime_error);
  CHECK_THROWS_WITH_AS(dropout(x, 1.5, false), doctest::Contains("p must be in [0, 1]"), std::runtime_error);
  CHECK_THROWS_WITH_AS(dropout(x, std::nan(""), true), doctest::Contains("p must be in [0, 1]"), std::runtime_error);
  CHECK_THROWS_WITH_AS(dropout(Tensor::from_indices({1, 2}, {2}), 0.5, true), doctest::Contains("needs a float tensor"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(dropout(Tensor(), 0.5, true), doctest::Contains("undefined input"), std::runtime_error);
}

TEST_CASE("add_drop_path: x + drop_path(branch) in one pass, the same draws, with gradients") {
  // Against the two ops from the same generator state: x + branch * mask with mask (B) 1 / (1 - p) or 0 per
  // sample. One product and one add either way (up to the compiler fusing them into one rounding).
  Generator generator(40);
  const Tensor x = randn({64, 5, 7}, DType::f32, generator), branch = randn({64, 5, 7}, DType::f32, generator);
  Generator fused_draws(41), separate_draws(41);
  const Tensor fused = add_drop_path(x, branch, 0.3, true, fused_draws);
  const Tensor separate = add(x, drop_path(branch, 0.3, true, separate_draws));
  testing::expect_close(fused, separate.to_vector(), 1e-6, 1e-6);
  CHECK(fused_draws.reserve(1) == separate_draws.reserve(1));  // the same number of draws taken
  // Some samples dropped and some kept at p = 0.3 over 64 samples: y = x there, and y = x + branch / 0.7.
  const std::vector<double> y = fused.to_vector(), xs = x.to_vector(), bs = branch.to_vector();
  int64_t dropped = 0;
  for (int64_t b = 0; b < 64; ++b) dropped += y[b * 35] == xs[b * 35];
  CHECK(dropped > 0);
  CHECK(dropped < 64);
  // Eval mode and p = 0 add the branch as it is; p = 1 drops every sample.
  testing::expect_close(add_drop_path(x, branch, 0.3, false), add(x, branch).to_vector(), 0);
  testing::expect_close(add_drop_path(x, branch, 0.0, true), add(x, branch).to_vector(), 0);
  testing::expect_close(add_drop_path(x, branch, 1.0, true), xs, 0);
  // float64 gradients with a generator rebuilt per call (a fixed mask), on plain and transposed inputs.
  const Tensor x64 = testing::random_leaf({6, 3, 4}, 42), branch64 = testing::random_leaf({6, 3, 4}, 43);
  testing::gradcheck(
      [](const std::vector<Tensor>& l) {
        Generator draws(44);
        return add_drop_path(l[0], l[1], 0.5, true, draws);
      },
      {x64, branch64});
  testing::gradcheck(
      [](const std::vector<Tensor>& l) {
        Generator draws(45);
        return add_drop_path(l[0], transpose(l[1], 1, 2), 0.5, true, draws);
      },
      {testing::random_leaf({6, 4, 3}, 46), branch64});
  // Misuse names the op and the shapes.
  CHECK_THROWS_WITH_AS(add_drop_path(x, reshape(branch, {64, 35}), 0.3, true),
                       doctest::Contains("add_drop_path: needs x and branch of one shape"), std::runtime_error);
  CHECK_THROWS_WITH_AS(add_drop_path(x, branch, 1.5, true), doctest::Contains("p must be in [0, 1]"), std::runtime_error);
}
