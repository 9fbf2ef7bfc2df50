// Tensor basics: creation, element access, dtype conversion, strides, seeded random numbers.
#include "autograd/parallel.h"
#include "tests/helpers.h"

using namespace vt;

TEST_CASE("tensor: creation, strides and element access") {
  Tensor t = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(t.strides() == Shape{3, 1});
  CHECK(t.numel() == 6);
  CHECK(t.at({1, 2}) == 6);
  CHECK(t.str() == "f32(2, 3)");
  CHECK(Tensor::zeros({2}).to_vector() == std::vector<double>{0, 0});
  CHECK(Tensor::full({2}, 2.5, DType::f64).to_vector() == std::vector<double>{2.5, 2.5});
  CHECK(Tensor::scalar(3).item() == 3);
  Tensor d = t.to(DType::f64);
  CHECK(d.dtype() == DType::f64);
  CHECK(d.to_vector() == t.to_vector());
  CHECK_THROWS_WITH_AS(t.item(), doctest::Contains("item: needs one element"), std::runtime_error);
  CHECK_THROWS_WITH_AS(t.data<double>(), doctest::Contains("asked for f64 data of a f32(2, 3)"), std::runtime_error);
  CHECK_THROWS_WITH_AS(Tensor::from_vector({1, 2}, {3}), doctest::Contains("from_vector: 2 values for shape (3)"),
                       std::runtime_error);
}

TEST_CASE("tensor: copy_ converts dtypes and broadcasts and clone owns its memory") {
  Tensor dst = Tensor::zeros({2, 2}, DType::f64);
  dst.copy_(Tensor::from_vector({1, 2}, {2}));
  CHECK(dst.to_vector() == std::vector<double>{1, 2, 1, 2});
  Tensor c = dst.clone();
  CHECK(c.storage() != dst.storage());
}

TEST_CASE("tensor: copy_ from an overlapping view, into a broadcast view, and to i64 (found by an op-level hunt)") {
  // t[1:6] = t[0:5] read elements it had already written: 0 0 0 0 0 0. The source is now copied first.
  Tensor t = Tensor::arange(6);
  slice(t, 0, 1, 6).copy_(slice(t, 0, 0, 5));
  CHECK(t.to_vector() == std::vector<double>{0, 0, 1, 2, 3, 4});
  // Four values into one element: the last write won (3); add_ refused this already.
  CHECK_THROWS_WITH_AS(expand(Tensor::zeros({1}), {4}).copy_(Tensor::arange(4)),
                       doctest::Contains("copy_: cannot write into f32(4): a broadcast view"), std::runtime_error);
  // NaN, the infinities and 1e19 have no i64 value: the cast gave INT64_MIN.
  CHECK_THROWS_WITH_AS(Tensor::from_vector({1, NAN}, {2}, DType::i64), doctest::Contains("from_vector: cannot convert nan"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(Tensor::from_vector({INFINITY}, {1}).to(DType::i64), doctest::Contains("to(i64): cannot convert inf"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(Tensor::full({1}, 1e19, DType::i64), doctest::Contains("fill_: cannot convert"), std::runtime_error);
  CHECK(Tensor::from_vector({-3.7, 2.9, -0x1p63}, {3}).to(DType::f64).to(DType::i64).to_vector() ==
        std::vector<double>{-3, 2, -0x1p63});  // truncated toward zero, as C++ and PyTorch do
  // An undefined tensor's metadata is an error, not a null dereference.
  CHECK_THROWS_WITH_AS(Tensor().shape(), doctest::Contains("of an undefined tensor"), std::runtime_error);
  CHECK_THROWS_WITH_AS(Tensor().dtype(), doctest::Contains("of an undefined tensor"), std::runtime_error);
}

TEST_CASE("random: seeded draws repeat and do not depend on the thread count") {
  Generator g1(7), g2(7);
  Tensor a = randn({1000, 70}, DType::f32, g1);
  Tensor b = testing::with_threads(1, [&] { return randn({1000, 70}, DType::f32, g2); });
  CHECK(a.to_vector() == b.to_vector());
  // mean 0 and variance 1 within a few standard errors (70,000 samples: se of the mean ~0.004)
  CHECK(std::abs(mean(a).item()) < 0.02);
  CHECK(std::abs(mean(mul(a, a)).item() - 1.0) < 0.03);
  Tensor next = randn({1000, 70}, DType::f32, g1);  // the offset advanced: a different draw
  CHECK(next.to_vector() != a.to_vector());
  Tensor u = rand({10000});
  CHECK(max(u).item() < 1.0);
  CHECK(-max(neg(u)).item() >= 0.0);
  Tensor t = trunc_normal({10000}, 0.02, -0.04, 0.04);  // timm's trunc_normal_(std=.02, a=-2std, b=2std)
  CHECK(max(t).item() <= 0.04);
  CHECK(-max(neg(t)).item() >= -0.04);
}

TEST_CASE("tensor: sizes that overflow are refused before anything is allocated") {
  const int64_t huge = int64_t{1} << 62;
  // 2^62 * 4 bytes wraps a 64-bit byte count to 0; 2^62 * 2^62 elements wraps the element count.
  CHECK_THROWS_WITH_AS(Tensor::empty({huge}), doctest::Contains("f32(4611686018427387904) tensor is too large"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(Tensor::empty({huge, huge}), doctest::Contains("sizes multiply past 2^63"), std::runtime_error);
  CHECK_THROWS_WITH_AS(randn({huge}), doctest::Contains("too large"), std::runtime_error);
  // No elements, but strides of 2^62 * 2^62: refused too, rather than computed with a signed overflow.
  CHECK_THROWS_WITH_AS(Tensor::empty({0, huge, huge}), doctest::Contains("sizes multiply past 2^63"), std::runtime_error);
  CHECK_THROWS_WITH_AS(Tensor::empty({2, -1}), doctest::Contains("negative size in (2, -1)"), std::runtime_error);
  // An empty tensor with a huge dim that fits is fine, and contiguous.
  const Tensor empty = Tensor::empty({0, huge});
  CHECK(empty.numel() == 0);
  CHECK(empty.is_contiguous());
  CHECK(Tensor::empty({3, 0}).is_contiguous());
}

TEST_CASE("tensor: an allocation the system refuses names the tensor, not only its bytes") {
  // 2^45 floats are 2^47 bytes, the whole user address space: no overcommit setting grants them.
  const int64_t n = int64_t{1} << 45;
  CHECK_THROWS_WITH_AS(Tensor::empty({2, n / 2}),
                       doctest::Contains("empty: a f32(2, 17592186044416) tensor on cpu: allocate: out of memory: "
                                         "140737488355328 bytes requested"),
                       std::runtime_error);
  CHECK(sum(Tensor::ones({3})).item() == 3.0);  // the refusal left the allocator working
}

TEST_CASE("tensor: copy_strided refuses a source that does not broadcast into the destination") {
  const Tensor dst = Tensor::zeros({3});
  // A source with more dims than the destination read elements the destination has no room for.
  CHECK_THROWS_WITH_AS(copy_strided(dst, Tensor::ones({2, 3})),
                       doctest::Contains("cannot copy f32(2, 3) into f32(3): the shapes do not broadcast"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(copy_strided(dst, Tensor::ones({4})), doctest::Contains("do not broadcast"), std::runtime_error);
  copy_strided(dst, Tensor::full({1}, 2.0));
  CHECK(dst.to_vector() == std::vector<double>{2, 2, 2});
}

TEST_CASE("tensor: a float64 tensor is refused on the GPU before it moves, whether or not a GPU is there") {
  // float64 stays on the CPU, where the gradient checks run. The check once looked at the tensor's own device
  // (the CPU, before the move), so on a GPU the move went through.
  CHECK_THROWS_WITH_AS(Tensor::ones({2, 3}, DType::f64).to(Device::cuda),
                       doctest::Contains("to(cuda): float64 tensors stay on the CPU"), std::runtime_error);
}
