// Reductions: values over chosen dims with and without keepdim, gradient checks (random upstream) over
// leading, trailing, middle and all dims, on non-contiguous inputs, and max's tie rule.
#include "autograd/parallel.h"
#include "tests/helpers.h"

using namespace vt;
using testing::gradcheck;
using testing::random_leaf;

TEST_CASE("reduce: sum, mean and max values") {
  // x = [[1, 2, 3], [4, 5, 6]]
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  testing::expect_close(sum(x), {21});
  testing::expect_close(sum(x, {0}), {5, 7, 9});
  testing::expect_close(sum(x, {1}), {6, 15});
  testing::expect_close(sum(x, {-1}, true), {6, 15});
  CHECK(sum(x, {1}, true).shape() == Shape{2, 1});
  CHECK(sum(x, {0, 1}).shape() == Shape{});
  testing::expect_close(mean(x, {0}), {2.5, 3.5, 4.5});
  testing::expect_close(mean(x), {3.5});
  testing::expect_close(max(x, {1}), {3, 6});
  testing::expect_close(max(x, {0}), {4, 5, 6});
  testing::expect_close(max(x), {6});
  CHECK(argmax(x, 1).to_indices() == std::vector<int64_t>{2, 2});
  testing::expect_close(sum(transpose(x, 0, 1), {1}), {5, 7, 9});  // non-contiguous input
}

TEST_CASE("reduce: long rows and columns are summed in double on the threaded paths") {
  Tensor ones = Tensor::ones({3, 100000});
  testing::expect_close(sum(ones, {1}), {100000, 100000, 100000});
  testing::expect_close(sum(ones, {0}).slice(0, 0, 3), {3, 3, 3});  // column sums, e.g. a bias gradient
  // A float32 running sum stops at 2^24: 2^24 + 1 rounds back to 2^24, so 2^24 + 4096 ones summed in float32
  // give 16777216. In double every partial sum is exact: 16781312. A full sum of a contiguous tensor used to
  // take the serial float32 column path.
  const int64_t n = (int64_t{1} << 24) + 4096;
  CHECK(sum(Tensor::ones({n})).item() == 16781312.0);
  CHECK(sum(Tensor::ones({n / 4096, 4096})).item() == 16781312.0);
  // Column sums: 2^24 + 4096 rows of [1, 1] summed down the rows.
  testing::expect_close(sum(Tensor::ones({n, 2}), {0}), {16781312.0, 16781312.0});
}

TEST_CASE("reduce: sums give the same bits on 1 and on 2 threads") {
  // Long rows are summed in chunks fixed by the length and columns per output element: no partial sum depends
  // on the thread count.
  auto random = [](const Shape& shape, uint64_t seed) {
    Generator generator(seed);
    return randn(shape, DType::f32, generator);
  };
  const Tensor x = random({3000, 700}, 31);  // (rows, cols)
  auto results = [&] {
    return std::vector<std::vector<double>>{sum(x).to_vector(), sum(transpose(x, 0, 1)).to_vector(),
                                            sum(x, {0}).to_vector(), sum(x, {1}).to_vector(), mean(x, {0}).to_vector()};
  };
  const auto one = testing::with_threads(1, results), two = testing::with_threads(2, results);
  for (size_t i = 0; i < one.size(); ++i) {
    CAPTURE(i);
    CHECK(one[i] == two[i]);
  }
}

TEST_CASE("reduce: gradients over any dims") {
  Tensor x = random_leaf({2, 3, 4}, 11);
  const std::vector<std::pair<std::vector<int64_t>, bool>> cases = {
      {{}, false}, {{0}, false}, {{1}, true}, {{2}, false}, {{0, 2}, true}, {{-1, 0}, false}};
  for (const auto& [dims, keepdim] : cases) {
    CAPTURE(shape_str(dims));
    CAPTURE(keepdim);
    gradcheck([&](const auto& l) { return sum(l[0], dims, keepdim); }, {x});
    gradcheck([&](const auto& l) { return mean(l[0], dims, keepdim); }, {x});
    gradcheck([&](const auto& l) { return max(l[0], dims, keepdim); }, {x});
  }
  gradcheck([](const auto& l) { return sum(permute(l[0], {2, 0, 1}), {1}); }, {x});
  gradcheck([](const auto& l) { return max(transpose(l[0], 0, 2), {0, 1}, true); }, {x});
  gradcheck([](const auto& l) { return mean(slice(l[0], 2, 0, 4, 3), {2}); }, {x});
}

TEST_CASE("reduce: max sends the gradient to the first maximal element only") {
  Tensor x = Tensor::from_vector({1, 3, 3, 2}, {4}).requires_grad_();
  Tensor m = max(x);  // 3, attained at 1 and 2
  m.backward();
  testing::expect_close(x.grad(), {0, 1, 0, 0});
}

TEST_CASE("reduce: misuse fails loudly") {
  Tensor x = Tensor::ones({2, 3});
  CHECK_THROWS_WITH_AS(sum(x, {2}), doctest::Contains("sum: dim 2 out of range"), std::runtime_error);
  CHECK_THROWS_WITH_AS(sum(x, {1, -1}), doctest::Contains("listed twice"), std::runtime_error);
  CHECK_THROWS_WITH_AS(max(Tensor::ones({0, 2}), {0}), doctest::Contains("max: reduction over an empty dim"),
                       std::runtime_error);
}

TEST_CASE("reduce: the mean over an empty dim is NaN (0 / 0), the sum 0, as in PyTorch") {
  const Tensor empty_rows = Tensor::ones({0, 3});
  const std::vector<double> means = mean(empty_rows, {0}).to_vector();  // (3)
  REQUIRE(means.size() == 3);
  for (double m : means) CHECK(std::isnan(m));
  CHECK(std::isnan(mean(empty_rows).item()));
  testing::expect_close(sum(empty_rows, {0}), {0, 0, 0});
  CHECK(mean(empty_rows, {1}).numel() == 0);  // nothing to average, nothing returned
}
