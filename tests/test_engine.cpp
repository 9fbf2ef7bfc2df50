// Engine tests: graph walks (shared subexpressions, accumulation, deep chains), grad mode, and the loud
// failures (shape mismatch, a freed graph, a saved tensor modified in place, an op without backward).
#include "autograd/allocator.h"
#include "tests/helpers.h"

using namespace vt;

TEST_CASE("engine: a shared subexpression receives the sum of its gradients") {
  Tensor x = Tensor::from_vector({1.0, 2.0, 3.0}, {3}, DType::f64).requires_grad_();
  Tensor a = mul(x, 2.0);          // a = 2x
  Tensor y = sum(add(mul(a, a), a));  // y = sum(a^2 + a)
  y.backward();
  // dy/dx = (2a + 1) * 2 = 8x + 2 = [10, 18, 26]
  testing::expect_close(x.grad(), {10, 18, 26});
}

TEST_CASE("engine: a node's gradients are summed in place only into a buffer nobody else holds") {
  // h = 2x feeds mul(h, 3) and the output's add directly, as a residual stream does: h receives 3 u (a new
  // buffer, summed into in place) and u itself, the caller's upstream (shared: it must not be written).
  // dout/dx = (3 + 1) * 2 = 8 times the upstream u = [1, -2, 0.5].
  for (bool residual_first : {true, false}) {
    CAPTURE(residual_first);
    Tensor x = Tensor::from_vector({1.0, 2.0, 3.0}, {3}, DType::f64).requires_grad_();
    const Tensor h = mul(x, 2.0);
    const Tensor out = residual_first ? add(h, mul(h, 3.0)) : add(mul(h, 3.0), h);
    const Tensor upstream = Tensor::from_vector({1.0, -2.0, 0.5}, {3}, DType::f64);
    out.backward(upstream);
    testing::expect_close(x.grad(), {8, -16, 4});
    testing::expect_close(upstream, {1, -2, 0.5});  // untouched
  }
  // add(h, h) hands one tensor to both inputs: h's first gradient is shared with its second.
  Tensor x = Tensor::from_vector({1.0, 2.0}, {2}, DType::f64).requires_grad_();
  const Tensor h = mul(x, 3.0);
  add(h, h).backward(Tensor::from_vector({1.0, 10.0}, {2}, DType::f64));
  testing::expect_close(x.grad(), {6, 60});  // (1 + 1) * 3 * upstream
}

TEST_CASE("engine: gradients accumulate across two backward calls") {
  Tensor x = Tensor::from_vector({1.0, -1.0}, {2}).requires_grad_();
  sum(mul(x, 3.0)).backward();
  sum(mul(x, 2.0)).backward();
  testing::expect_close(x.grad(), {5, 5});  // 3 + 2
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("engine: retain_graph lets the same graph be walked twice") {
  Tensor x = Tensor::from_vector({2.0}, {1}).requires_grad_();
  Tensor y = sum(mul(x, x));  // dy/dx = 2x = 4
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  testing::expect_close(x.grad(), {8});
}

TEST_CASE("engine: an explicit upstream gradient seeds a non-scalar output") {
  Tensor x = Tensor::from_vector({1.0, 2.0}, {2}).requires_grad_();
  Tensor y = mul(x, x);
  y.backward(Tensor::from_vector({1.0, 10.0}, {2}));
  testing::expect_close(x.grad(), {2, 40});  // 2x * upstream
  Tensor z = mul(x, x);
  CHECK_THROWS_WITH_AS(z.backward(), doctest::Contains("one-element output"), std::runtime_error);
  CHECK_THROWS_WITH_AS(mul(x, 1.0).backward(Tensor::ones({3})), doctest::Contains("does not match"),
                       std::runtime_error);
}

TEST_CASE("engine: no-grad mode records nothing, detach cuts the graph") {
  Tensor x = Tensor::ones({2}).requires_grad_();
  {
    NoGradGuard no_grad;
    Tensor y = mul(x, 2.0);
    CHECK_FALSE(y.requires_grad());
    CHECK_FALSE(y.grad_fn());
  }
  Tensor y = mul(x, 2.0);
  CHECK(y.requires_grad());
  Tensor d = y.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.storage() == y.storage());
  CHECK_THROWS_WITH_AS(sum(d).backward(), doctest::Contains("does not require grad"), std::runtime_error);
}

TEST_CASE("engine: a chain of 100,000 ops neither overflows backward nor its destruction") {
  Tensor x = Tensor::from_vector({0.0}, {1}).requires_grad_();
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = add(y, 1.0);
  y.backward(Tensor::ones({1}));
  testing::expect_close(y, {100000});
  testing::expect_close(x.grad(), {1});
  Tensor z = x;  // dropped without a backward: the iterative Node destructor must cope
  for (int i = 0; i < 100000; ++i) z = mul(z, 1.0);
  z = Tensor();
  CHECK(true);
}

TEST_CASE("engine: shape mismatches name the op and both shapes") {
  Tensor a = Tensor::ones({2, 3}), b = Tensor::ones({4});
  CHECK_THROWS_WITH_AS(add(a, b), doctest::Contains("add: shapes (2, 3) and (4) do not broadcast"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(matmul(a, a), doctest::Contains("matmul: inner dims differ"), std::runtime_error);
}

TEST_CASE("engine: an upstream gradient of another dtype is refused, not made the gradient") {
  // On a leaf an i64 seed became x.grad(), silently i64; on an op's output it failed deep in a kernel.
  Tensor x = Tensor::ones({2, 3});
  x.requires_grad_();
  CHECK_THROWS_WITH_AS(x.backward(Tensor::ones({2, 3}, DType::i64)),
                       doctest::Contains("backward: upstream gradient i64(2, 3) on cpu does not match the output f32(2, 3)"),
                       std::runtime_error);
  CHECK_FALSE(x.grad().defined());
  CHECK_THROWS_WITH_AS(mul(x, 2.0).backward(Tensor::ones({2, 3}, DType::f64)),
                       doctest::Contains("upstream gradient f64(2, 3) on cpu does not match"), std::runtime_error);
}

TEST_CASE("engine: backward through a freed graph fails") {
  Tensor x = Tensor::ones({2}).requires_grad_();
  Tensor y = sum(exp(x));
  y.backward();
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("already freed"), std::runtime_error);
}

TEST_CASE("engine: modifying a saved tensor in place is caught at backward") {
  Tensor w = Tensor::ones({2}).requires_grad_();
  Tensor a = Tensor::from_vector({1.0, 2.0}, {2});
  Tensor y = sum(mul(a, w));  // saves a for dy/dw = a
  a.add_(Tensor::ones({2}));
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("mul: a tensor saved for backward"), std::runtime_error);

  Tensor x = Tensor::ones({2}).requires_grad_();
  Tensor e = exp(x);  // saves its output
  Tensor loss = sum(e);
  {
    NoGradGuard no_grad;
    e.mul_(2.0);
  }
  CHECK_THROWS_WITH_AS(loss.backward(), doctest::Contains("modified in place"), std::runtime_error);
}

TEST_CASE("engine: in-place writes to tensors that require grad are refused in grad mode") {
  Tensor w = Tensor::ones({2}).requires_grad_();
  CHECK_THROWS_WITH_AS(w.fill_(0.0), doctest::Contains("fill_: in-place write"), std::runtime_error);
  NoGradGuard no_grad;
  w.fill_(3.0);  // an optimizer step runs under no-grad
  testing::expect_close(w, {3, 3});
}

TEST_CASE("engine: an op without a backward cannot take inputs that require grad") {
  Tensor x = Tensor::ones({2}).requires_grad_();
  Tensor y = Tensor::empty({2});
  CHECK_THROWS_WITH_AS(record("mystery_op", y, {x}, {}, BackwardFn()), doctest::Contains("mystery_op: op has no backward"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(Tensor::from_indices({1, 2}, {2}).requires_grad_(), doctest::Contains("integer"),
                       std::runtime_error);
}

TEST_CASE("engine: views share storage and bump one version counter") {
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor t = transpose(x, 0, 1);  // (3, 2) view
  CHECK(t.storage() == x.storage());
  CHECK_FALSE(t.is_contiguous());
  const uint64_t before = x.storage()->version;
  slice(t, 0, 1, 2).fill_(0.0);  // zero column 1 of x
  CHECK(x.storage()->version == before + 1);
  testing::expect_close(x, {1, 0, 3, 4, 0, 6});
}

TEST_CASE("engine: a warmed-up forward and backward allocates nothing from the system") {
  Tensor w = testing::random_leaf({16, 8}, 3).to(DType::f32).detach().requires_grad_();
  Tensor x = randn({4, 8});
  auto step = [&] {
    w.zero_grad();
    Tensor loss = sum(gelu(linear(x, w)));  // (4, 16) -> ()
    loss.backward();
  };
  step();
  step();
  const uint64_t before = allocator_stats().system_allocations;
  step();
  CHECK(allocator_stats().system_allocations == before);
}

TEST_CASE("engine: an exception in one thread of parallel_for reaches the caller instead of aborting") {
  // With 2 threads, [0, 1000) runs as [0, 500) and [500, 1000); the second chunk throws. Before, the exception
  // left the OpenMP region and the runtime called std::terminate.
  const auto run = [] {
    std::vector<int> visited(1000, 0);
    parallel_for(0, 1000, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) visited[i] = 1;
      if (hi == 1000) throw std::runtime_error("chunk [" + std::to_string(lo) + ", 1000) failed");
    });
  };
  testing::with_threads(2, [&] { CHECK_THROWS_WITH_AS(run(), "chunk [500, 1000) failed", std::runtime_error); });
  testing::with_threads(1, [&] { CHECK_THROWS_WITH_AS(run(), "chunk [0, 1000) failed", std::runtime_error); });
  // The pool still works afterwards: 0 + 1 + ... + 999 = 499500.
  std::vector<int64_t> sums(2, 0);
  testing::with_threads(2, [&] {
    parallel_for(0, 1000, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) sums[lo == 0 ? 0 : 1] += i;
    });
  });
  CHECK(sums[0] + sums[1] == 499500);
}
