// Shape ops: which ones are views (shared storage) and which copy, their values, and gradient checks.
#include <tuple>

#include "tests/helpers.h"

using namespace vt;
using testing::gradcheck;
using testing::random_leaf;

TEST_CASE("shape: reshape and view share storage when the strides allow it") {
  Tensor x = Tensor::arange(24).reshape({2, 3, 4});
  Tensor v = view(x, {6, -1});
  CHECK(v.shape() == Shape{6, 4});
  CHECK(v.storage() == x.storage());
  Tensor t = transpose(x, 0, 1);  // (3, 2, 4) with strides (4, 12, 1), not contiguous
  CHECK(view(t, {3, 2, 2, 2}).storage() == x.storage());  // splitting the unit-stride dim is still a view
  CHECK_THROWS_WITH_AS(view(t, {6, 4}), doctest::Contains("view: cannot view the non-contiguous"),
                       std::runtime_error);
  Tensor r = reshape(t, {6, 4});  // dims 0 and 1 of t are not adjacent in memory: a copy
  CHECK(r.storage() != x.storage());
  testing::expect_close(r.slice(0, 1, 2), {12, 13, 14, 15});  // t[0, 1] = x[1, 0]
  CHECK(flatten(x, 1).shape() == Shape{2, 12});
  CHECK(unsqueeze(x, -1).shape() == Shape{2, 3, 4, 1});
  CHECK(squeeze(unsqueeze(x, 0), 0).shape() == Shape{2, 3, 4});
}

TEST_CASE("shape: permute, slice, narrow and expand are views with the right values") {
  Tensor x = Tensor::arange(6).reshape({2, 3});  // [[0, 1, 2], [3, 4, 5]]
  testing::expect_close(permute(x, {1, 0}), {0, 3, 1, 4, 2, 5});
  testing::expect_close(slice(x, 1, 0, 3, 2), {0, 2, 3, 5});
  testing::expect_close(slice(x, 1, -2, 3), {1, 2, 4, 5});
  testing::expect_close(narrow(x, 0, 1, 1), {3, 4, 5});
  Tensor e = expand(Tensor::from_vector({7, 8}, {2, 1}), {2, 3});
  CHECK(e.strides()[1] == 0);
  testing::expect_close(e, {7, 7, 7, 8, 8, 8});
  testing::expect_close(expand(Tensor::from_vector({1, 2}, {2}), {3, -1}), {1, 2, 1, 2, 1, 2});
}

TEST_CASE("shape: cat, split, chunk and index_select") {
  Tensor a = Tensor::arange(4).reshape({2, 2});
  Tensor b = Tensor::from_vector({9, 9}, {2, 1});
  testing::expect_close(cat({a, b}, 1), {0, 1, 9, 2, 3, 9});
  testing::expect_close(cat({a, a}, 0), {0, 1, 2, 3, 0, 1, 2, 3});
  std::vector<Tensor> parts = split(Tensor::arange(7), 3, 0);
  REQUIRE(parts.size() == 3);
  testing::expect_close(parts[2], {6});
  std::vector<Tensor> sized = split(Tensor::arange(5), std::vector<int64_t>{1, 4}, 0);
  testing::expect_close(sized[1], {1, 2, 3, 4});
  std::vector<Tensor> chunks = chunk(Tensor::arange(6).reshape({3, 2}), 3, 0);
  REQUIRE(chunks.size() == 3);
  testing::expect_close(chunks[1], {2, 3});
  Tensor index = Tensor::from_indices({2, 0, 2}, {3});
  testing::expect_close(index_select(Tensor::arange(6).reshape({2, 3}), 1, index), {2, 0, 2, 5, 3, 5});
}

TEST_CASE("shape: gradients of views and copies") {
  Tensor x = random_leaf({2, 3, 4}, 21);
  Tensor y = random_leaf({2, 2, 4}, 22);
  gradcheck([](const auto& l) { return reshape(l[0], {6, 4}); }, {x});
  gradcheck([](const auto& l) { return reshape(transpose(l[0], 0, 2), {4, 6}); }, {x});  // copying reshape
  gradcheck([](const auto& l) { return permute(l[0], {2, 0, 1}); }, {x});
  gradcheck([](const auto& l) { return contiguous(transpose(l[0], 1, 2)); }, {x});
  gradcheck([](const auto& l) { return slice(l[0], 2, 1, 4, 2); }, {x});
  gradcheck([](const auto& l) { return narrow(l[0], 1, 1, 2); }, {x});
  gradcheck([](const auto& l) { return expand(slice(l[0], 1, 0, 1), {5, 2, 3, 4}); }, {x});
  gradcheck([](const auto& l) { return cat({l[0], l[1], transpose(l[1], 0, 1)}, 1); }, {x, y});
  gradcheck([](const auto& l) { return mul(split(l[0], 2, 2)[1], chunk(l[0], 2, 2)[0]); }, {x});
  gradcheck([](const auto& l) { return index_select(l[0], 1, Tensor::from_indices({2, 0, 2, 2}, {4})); }, {x});
  gradcheck([](const auto& l) { return index_select(transpose(l[0], 0, 2), 0, Tensor::from_indices({3, 3}, {2})); }, {x});
}

TEST_CASE("shape: misuse fails loudly") {
  Tensor x = Tensor::ones({2, 3});
  CHECK_THROWS_WITH_AS(reshape(x, {4, 2}), doctest::Contains("reshape: cannot view f32(2, 3) as (4, 2)"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(permute(x, {0, 0}), doctest::Contains("permute: repeated dim"), std::runtime_error);
  CHECK_THROWS_WITH_AS(expand(x, {2, 4}), doctest::Contains("expand: cannot expand"), std::runtime_error);
  CHECK_THROWS_WITH_AS(cat({x, Tensor::ones({3, 3})}, 1), doctest::Contains("cat: cannot concatenate"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(split(x, std::vector<int64_t>{1, 1}, 1), doctest::Contains("do not add up"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(index_select(x, 1, Tensor::from_indices({3}, {1})), doctest::Contains("index 3 out of range"),
                       std::runtime_error);
}

TEST_CASE("shape: a 0-dim tensor has no dim 0, except as a reduction's whole (found by an op-level hunt)") {
  // wrap_dim took dim 0 for a 0-dim tensor, and each op below then indexed its empty shape (SIGSEGV).
  const Tensor s = Tensor::scalar(1);
  const auto refuses = [](const std::function<void()>& f) {
    CHECK_THROWS_WITH_AS(f(), doctest::Contains("dim 0 out of range for a tensor of 0 dims"), std::runtime_error);
  };
  refuses([&] { cat({s, s}, 0); });
  refuses([&] { transpose(s, 0, 0); });
  refuses([&] { slice(s, 0, 0, 1); });
  refuses([&] { narrow(s, 0, 0, 1); });
  refuses([&] { squeeze(s, 0); });
  refuses([&] { split(s, 1, 0); });
  refuses([&] { chunk(s, 2, 0); });
  refuses([&] { index_select(s, 0, Tensor::from_indices({0}, {1})); });
  refuses([&] { s.size(0); });
  // As in PyTorch, dim 0 or -1 of a 0-dim tensor reduces it to itself: sum(3) = 3, max(3) = 3.
  const Tensor three = Tensor::scalar(3);
  CHECK(sum(three, {0}).item() == 3.0);
  CHECK(max(three, {-1}).item() == 3.0);
  CHECK(sum(three, {0}).dim() == 0);
  CHECK_THROWS_WITH_AS(sum(three, {1}), doctest::Contains("dim 1 out of range"), std::runtime_error);
}

TEST_CASE("shape: sizes and steps near 2^63 and negative sizes are refused or exact, never wrapped") {
  const Tensor x = Tensor::arange(5);  // 0 1 2 3 4
  // slice's count was (end - start + step - 1) / step, which overflowed to an empty view; one element is right.
  testing::expect_close(slice(x, 0, 0, 5, INT64_MAX), std::vector<double>{0});
  testing::expect_close(slice(x, 0, 1, 5, 3), std::vector<double>{1, 4});  // ceil(4 / 3) = 2 elements
  CHECK_THROWS_WITH_AS(narrow(x, 0, 2, INT64_MAX), doctest::Contains("narrow: start 2 and length"), std::runtime_error);
  CHECK_THROWS_WITH_AS(split(x, std::vector<int64_t>{INT64_MAX, INT64_MAX, 7}, 0), doctest::Contains("do not add up"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(split(x, std::vector<int64_t>{7, -2}, 0), doctest::Contains("do not add up"), std::runtime_error);
  CHECK(split(x, INT64_MAX, 0).size() == 1);
  CHECK(chunk(x, INT64_MAX, 0).size() == 5);  // chunks of ceil(5 / 2^63) = 1 element
  CHECK_THROWS_WITH_AS(reshape(Tensor::arange(4), {int64_t{1} << 62, 4, -1}), doctest::Contains("past 2^63"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(expand(Tensor::scalar(1), {int64_t{1} << 40, int64_t{1} << 40}), doctest::Contains("past 2^63"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(expand(Tensor::ones({1}), {-2}), doctest::Contains("expand: negative size"), std::runtime_error);
  const Tensor wide = expand(Tensor::ones({1}), {int64_t{1} << 62});
  CHECK_THROWS_WITH_AS(cat({wide, wide}, 0), doctest::Contains("add up past 2^63"), std::runtime_error);
  CHECK_THROWS_WITH_AS(Tensor::arange(-3), doctest::Contains("arange: negative length -3"), std::runtime_error);
}

TEST_CASE("shape: make_view refuses a view that reaches outside its storage") {
  const Tensor x = Tensor::arange(4);  // 4 elements
  CHECK(make_view(x, {2, 2}, {1, 2}, 0).to_vector() == std::vector<double>{0, 2, 1, 3});
  CHECK(make_view(x, {4}, {-1}, 3).to_vector() == std::vector<double>{3, 2, 1, 0});  // lowest element 0
  CHECK(make_view(x, {0, 9}, {100, 100}, 0).numel() == 0);  // names no element
  for (const auto& [shape, strides, offset] : {std::tuple<Shape, Shape, int64_t>{{2}, {1}, -3},
                                                {{10}, {1}, 0},
                                                {{4}, {-1}, 2},
                                                {{2, 2}, {INT64_MAX, 1}, 0}}) {
    CAPTURE(shape_str(shape));
    CHECK_THROWS_WITH_AS(make_view(x, shape, strides, offset), doctest::Contains("reaches outside its storage of 4"),
                         std::runtime_error);
  }
}
