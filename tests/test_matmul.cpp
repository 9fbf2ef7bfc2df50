// matmul, linear, linear_gelu and mlp: values by hand, transposed views going to GEMM without copies, batch
// broadcasting, and gradient checks on broadcast and non-contiguous operands.
#include <functional>

#include "autograd/blas.h"
#include "autograd/gemm_bf16.h"
#include "tests/helpers.h"

using namespace vt;
using testing::gradcheck;
using testing::random_leaf;

namespace {

using Function = std::function<Tensor(const std::vector<Tensor>&)>;

// A fused op against the ops it fuses, from the same float32 inputs: the output with a gradient wanted and without
// (inference), and every input's gradient for `upstream`, each within atol + rtol |separate's|.
void expect_fused_matches(const std::vector<Tensor>& inputs, const Tensor& upstream, const Function& fused,
                          const Function& separate, double atol, double rtol) {
  auto run = [&](const Function& f) {
    std::vector<Tensor> leaves;
    for (const Tensor& t : inputs) leaves.push_back(t.clone().requires_grad_());
    const Tensor y = f(leaves);
    y.backward(upstream);
    NoGradGuard no_grad;
    std::vector<Tensor> results{y, f(inputs)};
    for (const Tensor& t : leaves) results.push_back(t.grad());
    return results;
  };
  const auto with_fused = run(fused), with_separate = run(separate);
  for (size_t i = 0; i < with_fused.size(); ++i) {
    CAPTURE(i);
    testing::expect_close(with_fused[i], with_separate[i].to_vector(), atol, rtol);
  }
}

}  // namespace

TEST_CASE("matmul: 2-D, transposed and batched products") {
  // [[1, 2], [3, 4]] @ [[5, 6], [7, 8]] = [[19, 22], [43, 50]]
  Tensor a = Tensor::from_vector({1, 2, 3, 4}, {2, 2});
  Tensor b = Tensor::from_vector({5, 6, 7, 8}, {2, 2});
  testing::expect_close(matmul(a, b), {19, 22, 43, 50});
  // a^T @ b = [[1, 3], [2, 4]] @ b = [[26, 30], [38, 44]]
  testing::expect_close(matmul(transpose(a, 0, 1), b), {26, 30, 38, 44});
  // a @ b^T = [[1*5 + 2*6, 1*7 + 2*8], [3*5 + 4*6, 3*7 + 4*8]] = [[17, 23], [39, 53]]
  testing::expect_close(matmul(a, transpose(b, 0, 1)), {17, 23, 39, 53});
  // (2, 2, 2) @ (2, 2): b broadcast over the batch; batch 1 is 2a, so its product is doubled
  Tensor batch = cat({unsqueeze(a, 0), unsqueeze(mul(a, 2.0), 0)}, 0);
  testing::expect_close(matmul(batch, b), {19, 22, 43, 50, 38, 44, 86, 100});
  // (2, 1, 2, 2) @ (3, 2, 2) -> (2, 3, 2, 2)
  CHECK(matmul(reshape(batch, {2, 1, 2, 2}), expand(b, {3, 2, 2})).shape() == Shape{2, 3, 2, 2});
  // a (1, 3) row times (3, 1) column: 1*4 + 2*5 + 3*6 = 32
  testing::expect_close(matmul(Tensor::from_vector({1, 2, 3}, {1, 3}), Tensor::from_vector({4, 5, 6}, {3, 1})), {32});
}

TEST_CASE("matmul: gradients, batched, broadcast and non-contiguous") {
  Tensor a = random_leaf({2, 3, 4}, 31), b = random_leaf({4, 5}, 32), c = random_leaf({2, 4, 5}, 33);
  Tensor d = random_leaf({5, 4}, 34), e = random_leaf({3, 1, 3, 4}, 35);
  gradcheck([](const auto& l) { return matmul(l[0], l[1]); }, {a, b});                       // shared weight
  gradcheck([](const auto& l) { return matmul(l[0], l[1]); }, {a, c});                       // batched
  gradcheck([](const auto& l) { return matmul(l[0], transpose(l[1], 0, 1)); }, {a, d});      // b^T view
  gradcheck([](const auto& l) { return matmul(transpose(l[0], 1, 2), l[1]); }, {a, a});      // a^T a
  gradcheck([](const auto& l) { return matmul(l[1], l[0]); }, {c, e});                       // broadcast batch
  gradcheck([](const auto& l) { return matmul(slice(l[0], 2, 0, 4, 2), slice(l[1], 0, 1, 4, 2)); }, {a, b});
}

TEST_CASE("linear: y = x W^T + b over any leading dims") {
  // x = [1, 2], W = [[1, 0], [0, 1], [1, 1]], b = [0.5, 0, -1]  ->  [1.5, 2, 2]
  Tensor x = Tensor::from_vector({1, 2}, {1, 2});
  Tensor w = Tensor::from_vector({1, 0, 0, 1, 1, 1}, {3, 2});
  Tensor b = Tensor::from_vector({0.5, 0, -1}, {3});
  testing::expect_close(linear(x, w, b), {1.5, 2, 2});
  testing::expect_close(linear(x, w), {1, 2, 3});
  Tensor x3 = random_leaf({2, 3, 4}, 41), w3 = random_leaf({5, 4}, 42), b3 = random_leaf({5}, 43);
  testing::expect_close(linear(x3, w3, b3), add(matmul(x3, transpose(w3, 0, 1)), b3), 1e-12);
  gradcheck([](const auto& l) { return linear(l[0], l[1], l[2]); }, {x3, w3, b3});
  gradcheck([](const auto& l) { return linear(l[0], l[1]); }, {x3, w3});
  gradcheck([](const auto& l) { return linear(transpose(l[0], 0, 1), l[1], l[2]); }, {x3, w3, b3});
  gradcheck([](const auto& l) { return linear(l[0], transpose(l[1], 0, 1)); }, {random_leaf({3, 5}, 44), w3});
}

TEST_CASE("linear_gelu: gelu(x W^T + b) in one pass, with gradients, on every GEMM path") {
  // x = [1, -2], W = [[1, 0], [0, 1], [1, 1]], b = [0, 0, 1] -> h = [1, -2, 0]; gelu(h) = h Phi(h):
  // gelu(1) = Phi(1) = 0.841344746..., gelu(-2) = -2 Phi(-2) = -2 * 0.022750131... = -0.045500263..., gelu(0) = 0.
  Tensor x = Tensor::from_vector({1, -2}, {1, 2}, DType::f64);
  Tensor w = Tensor::from_vector({1, 0, 0, 1, 1, 1}, {3, 2}, DType::f64);
  Tensor b = Tensor::from_vector({0, 0, 1}, {3}, DType::f64);
  testing::expect_close(linear_gelu(x, w, b), {0.8413447460685429, -0.04550026389635842, 0.0}, 1e-12);
  // float64 gradients against finite differences, also through non-contiguous x and W and without a bias.
  Tensor x3 = random_leaf({2, 3, 4}, 45), w3 = random_leaf({5, 4}, 46), b3 = random_leaf({5}, 47);
  gradcheck([](const auto& l) { return linear_gelu(l[0], l[1], l[2]); }, {x3, w3, b3});
  gradcheck([](const auto& l) { return linear_gelu(transpose(l[0], 0, 1), l[1]); }, {x3, w3});
  gradcheck([](const auto& l) { return linear_gelu(l[0], transpose(l[1], 0, 1), l[2]); },
            {random_leaf({3, 5}, 48), w3, random_leaf({4}, 49)});
  // float32 against the two ops, forward with and without a gradient wanted (the pre-activation kept or not),
  // and the backward, on shapes that take each GEMM path: our float32 kernel's row tiles (or OpenBLAS's), the
  // skinny rows of TNT's pixel MLP, one call for a small product; and the bf16 kernel where the CPU has one.
  Generator generator(52);
  struct Case {
    int64_t rows, in, out;
  };
  auto compare = [&](const Case& c) {
    CAPTURE(c.rows);
    CAPTURE(c.in);
    CAPTURE(c.out);
    const Tensor xs = randn({c.rows, c.in}, DType::f32, generator), ws = randn({c.out, c.in}, DType::f32, generator);
    const Tensor bs = randn({c.out}, DType::f32, generator), upstream = randn({c.rows, c.out}, DType::f32, generator);
    // The same GEMM sums and the same GELU: equal up to the last bit of GELU's arithmetic, which the compiler
    // may contract differently in the two files.
    expect_fused_matches(
        {xs, ws, bs}, upstream, [](const auto& l) { return linear_gelu(l[0], l[1], l[2]); },
        [](const auto& l) { return gelu(linear(l[0], l[1], l[2])); }, 1e-5, 1e-5);
  };
  const std::vector<Case> cases = {{2080, 192, 768}, {4099, 12, 48}, {65, 64, 65}};
  for (const Case& c : cases) compare(c);
  if (best_bf16_kernel() != Bf16Kernel::none)
    testing::with_cpu_matmul_precision(MatmulPrecision::bf16, [&] { compare(cases[0]); });
}

TEST_CASE("mlp: linear(gelu(linear(x))) as one op, with gradients, on every GEMM path") {
  // x = [1, -2], W1 = [[1, 0], [0, 1], [1, 1]], b1 = [0, 0, 1] -> h = [1, -2, 0], gelu(h) = [0.841344746...,
  // -0.045500263..., 0]; W2 = [[1, 1, 1], [2, 0, -1]], b2 = [0.5, 0] -> y = [0.5 + 0.841344746 - 0.045500263,
  // 2 * 0.841344746] = [1.295844483..., 1.682689492...].
  Tensor x = Tensor::from_vector({1, -2}, {1, 2}, DType::f64);
  Tensor w1 = Tensor::from_vector({1, 0, 0, 1, 1, 1}, {3, 2}, DType::f64);
  Tensor b1 = Tensor::from_vector({0, 0, 1}, {3}, DType::f64);
  Tensor w2 = Tensor::from_vector({1, 1, 1, 2, 0, -1}, {2, 3}, DType::f64);
  Tensor b2 = Tensor::from_vector({0.5, 0}, {2}, DType::f64);
  testing::expect_close(mlp(x, w1, b1, w2, b2), {0.5 + 0.8413447460685429 - 0.04550026389635842, 2 * 0.8413447460685429},
                        1e-12);
  // float64 gradients against finite differences, also through non-contiguous x and weights and without biases.
  Tensor x3 = random_leaf({2, 3, 4}, 53), w13 = random_leaf({5, 4}, 54), b13 = random_leaf({5}, 55);
  Tensor w23 = random_leaf({3, 5}, 56), b23 = random_leaf({3}, 57);
  gradcheck([](const auto& l) { return mlp(l[0], l[1], l[2], l[3], l[4]); }, {x3, w13, b13, w23, b23});
  gradcheck([](const auto& l) { return mlp(transpose(l[0], 0, 1), l[1], Tensor(), l[2], Tensor()); }, {x3, w13, w23});
  gradcheck([](const auto& l) { return mlp(l[0], transpose(l[1], 0, 1), l[2], transpose(l[3], 0, 1), l[4]); },
            {x3, random_leaf({4, 5}, 58), b13, random_leaf({5, 3}, 59), b23});
  // Only some inputs wanting a gradient (a frozen first layer: no dh is formed) still gives the right ones.
  gradcheck([&](const auto& l) { return mlp(x3.detach(), w13.detach(), b13.detach(), l[0], l[1]); }, {w23, b23});
  // float32 against the three ops, forward with and without a gradient wanted, and the backward, on shapes that
  // take each GEMM path (as linear_gelu's test above), and on the bf16 kernel where the CPU has one.
  Generator generator(60);
  struct Case {
    int64_t rows, in, hidden;
  };
  auto compare = [&](const Case& c) {
    CAPTURE(c.rows);
    CAPTURE(c.in);
    CAPTURE(c.hidden);
    const Tensor xs = randn({c.rows, c.in}, DType::f32, generator);
    const Tensor w1s = randn({c.hidden, c.in}, DType::f32, generator), b1s = randn({c.hidden}, DType::f32, generator);
    const Tensor w2s = randn({c.in, c.hidden}, DType::f32, generator), b2s = randn({c.in}, DType::f32, generator);
    const Tensor upstream = randn({c.rows, c.in}, DType::f32, generator);
    expect_fused_matches(
        {xs, w1s, b1s, w2s, b2s}, upstream, [](const auto& p) { return mlp(p[0], p[1], p[2], p[3], p[4]); },
        [](const auto& p) { return linear(gelu(linear(p[0], p[1], p[2])), p[3], p[4]); }, 1e-4, 1e-5);
  };
  const std::vector<Case> cases = {{2080, 192, 768}, {4099, 12, 48}, {65, 16, 24}};
  for (const Case& c : cases) compare(c);
  if (best_bf16_kernel() != Bf16Kernel::none)
    testing::with_cpu_matmul_precision(MatmulPrecision::bf16, [&] { compare(cases[0]); });
  // Shapes that do not chain fail naming the op and both weights.
  CHECK_THROWS_WITH(mlp(x, w1, b1, transpose(w2, 0, 1), b2), doctest::Contains("mlp: second weight"));
  CHECK_THROWS_WITH(mlp(x, w1, b1, w2, b1), doctest::Contains("does not match weight"));
}

TEST_CASE("linear, matmul and mlp with no input features: y is the bias on every row, or zeros") {
  // x (3, 0): each output sums no products, so y = b (as torch.nn.functional.linear gives).
  const Tensor x = Tensor::zeros({3, 0}), w = Tensor::zeros({2, 0});
  const Tensor b = Tensor::from_vector({1.5, -2}, {2});
  testing::expect_close(linear(x, w, b), {1.5, -2, 1.5, -2, 1.5, -2}, 0);
  testing::expect_close(matmul(x, transpose(w, 0, 1)), std::vector<double>(6, 0.0), 0);  // (3, 0) @ (0, 2): zeros
  // h = b1 = [0, 1] on every row, gelu(h) = [0, 0.841344746...], y = gelu(h) w2^T with w2 = [[1, 2]].
  const Tensor b1 = Tensor::from_vector({0, 1}, {2}), w2 = Tensor::from_vector({1, 2}, {1, 2});
  testing::expect_close(mlp(x, w, b1, w2, Tensor()), {2 * 0.8413447460685429, 2 * 0.8413447460685429,
                                                       2 * 0.8413447460685429}, 1e-6);
}

TEST_CASE("linear, matmul and attention: the same bits on 1 and on 2 threads") {
  // gemm cuts each product into tiles fixed by its shape (one single-threaded OpenBLAS call each, see
  // gemm_tiling), threads split the heads of attention and the columns of the bias gradient: no output's terms
  // are ever summed in an order that depends on the thread count. (OpenBLAS's own threading, which gemm
  // used before, gave linear's y, dx and dw different last bits on 1 and 2 threads.)
  Generator generator(51);
  const Tensor x = randn({64, 65, 192}, DType::f32, generator), w = randn({576, 192}, DType::f32, generator);
  const Tensor b = randn({576}, DType::f32, generator), upstream = randn({64, 65, 576}, DType::f32, generator);
  // y (4160, 576) tiles by rows; dw (576, 192) = dy^T x over 4160 rows is summed in four slices of them.
  CHECK(gemm_tiling(64 * 65, 576, 192).kind == GemmTiling::rows);
  CHECK(gemm_tiling(576, 192, 64 * 65).kind == GemmTiling::depth);
  const Tensor vit_heads = randn({8, 3, 65, 64}, DType::f32, generator);   // (B, H, N, hd): GEMM calls
  const Tensor pixel_heads = randn({512, 2, 16, 6}, DType::f32, generator);  // (B*64, H, M, hd): small-head loops
  auto results = [&] {
    Tensor xl = x.clone().requires_grad_(), wl = w.clone().requires_grad_(), bl = b.clone().requires_grad_();
    Tensor y = linear(xl, wl, bl);  // (64, 65, 576)
    y.backward(upstream);
    std::vector<std::vector<double>> out{y.to_vector(), xl.grad().to_vector(), wl.grad().to_vector(),
                                         bl.grad().to_vector(), matmul(transpose(x, 1, 2), x).to_vector()};
    for (const Tensor& m : {vit_heads, pixel_heads}) {
      Tensor q = m.clone().requires_grad_();
      Tensor attention = scaled_dot_product_attention(q, mul(q, 0.5), q);  // (B, H, N, hd)
      attention.backward(m);
      out.push_back(attention.to_vector());
      out.push_back(q.grad().to_vector());
    }
    return out;
  };
  const auto one = testing::with_threads(1, results), two = testing::with_threads(2, results);
  for (size_t i = 0; i < one.size(); ++i) {
    CAPTURE(i);
    CHECK(one[i] == two[i]);
  }
}

TEST_CASE("matmul and linear: misuse fails loudly") {
  CHECK_THROWS_WITH_AS(matmul(Tensor::ones({3}), Tensor::ones({3, 2})), doctest::Contains("at least 2-D"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(matmul(Tensor::ones({2, 2, 3}), Tensor::ones({3, 3, 2})),
                       doctest::Contains("matmul: shapes (2) and (3) do not broadcast"), std::runtime_error);
  CHECK_THROWS_WITH_AS(linear(Tensor::ones({2, 3}), Tensor::ones({4, 2})), doctest::Contains("linear: input f32(2, 3)"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(linear(Tensor::ones({2, 3}), Tensor::ones({4, 3}), Tensor::ones({3})),
                       doctest::Contains("linear: bias"), std::runtime_error);
}
