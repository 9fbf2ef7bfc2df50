// TNT's fused inner block (ops/inner_block.cpp) against the same block written as separate ops in float64, and
// the TNT model's eval-mode logits with and without it.
#include <cmath>

#include "models/tnt.h"
#include "tests/helpers.h"

using namespace vt;

namespace {

Tensor random_f64(const Shape& shape, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  Generator generator(seed);
  NoGradGuard no_grad;
  return add(mul(randn(shape, DType::f64, generator), scale), shift);
}

InnerBlockWeights random_weights(int64_t d, int64_t hidden, bool qkv_bias, uint64_t seed) {
  const double s = 1.0 / std::sqrt(static_cast<double>(d)), s2 = 1.0 / std::sqrt(static_cast<double>(hidden));
  InnerBlockWeights w;
  w.norm1_weight = random_f64({d}, seed + 1, 0.2, 1.0), w.norm1_bias = random_f64({d}, seed + 2, 0.1);
  w.qk_weight = random_f64({2 * d, d}, seed + 3, s);
  w.v_weight = random_f64({d, d}, seed + 4, s);
  if (qkv_bias) w.qk_bias = random_f64({2 * d}, seed + 5, 0.1), w.v_bias = random_f64({d}, seed + 6, 0.1);
  w.proj_weight = random_f64({d, d}, seed + 7, s), w.proj_bias = random_f64({d}, seed + 8, 0.1);
  w.norm2_weight = random_f64({d}, seed + 9, 0.2, 1.0), w.norm2_bias = random_f64({d}, seed + 10, 0.1);
  w.fc1_weight = random_f64({hidden, d}, seed + 11, s), w.fc1_bias = random_f64({hidden}, seed + 12, 0.1);
  w.fc2_weight = random_f64({d, hidden}, seed + 13, s2), w.fc2_bias = random_f64({d}, seed + 14, 0.1);
  return w;
}

// The block as separate ops: x1 = x + proj(attention(LN1(x))), y = x1 + fc2(gelu(fc1(LN2(x1)))).
Tensor block_of_ops(const Tensor& x, const InnerBlockWeights& w, int64_t heads) {
  const Tensor n1 = layer_norm(x, w.norm1_weight, w.norm1_bias, w.norm1_eps);  // (S, M, d)
  const Tensor attended = multi_head_attention({linear(n1, w.qk_weight, w.qk_bias), linear(n1, w.v_weight, w.v_bias)}, heads);
  const Tensor x1 = add(x, linear(attended, w.proj_weight, w.proj_bias));         // (S, M, d)
  const Tensor n2 = layer_norm(x1, w.norm2_weight, w.norm2_bias, w.norm2_eps);
  return add(x1, linear(gelu(linear(n2, w.fc1_weight, w.fc1_bias)), w.fc2_weight, w.fc2_bias));  // (S, M, d)
}

InnerBlockWeights to_f32(const InnerBlockWeights& w) {
  InnerBlockWeights f = w;
  Tensor* fields[] = {&f.norm1_weight, &f.norm1_bias, &f.qk_weight, &f.qk_bias, &f.v_weight, &f.v_bias,
                      &f.proj_weight, &f.proj_bias, &f.norm2_weight, &f.norm2_bias, &f.fc1_weight, &f.fc1_bias,
                      &f.fc2_weight, &f.fc2_bias};
  for (Tensor* t : fields)
    if (t->defined()) *t = t->to(DType::f32);
  return f;
}

}  // namespace

TEST_CASE("inner_block_inference: equals LN, attention, LN and MLP as separate float64 ops") {
  struct Case {
    int64_t sequences, tokens, dim, heads, hidden;
    bool qkv_bias;
    double eps;
  };
  const Case cases[] = {
      {37, 16, 12, 2, 48, true, 1e-5},  // tnt_cifar's pixel tokens (B*64 sequences of 16 tokens, 12 channels)
      {3, 16, 24, 4, 96, false, 1e-5},  // timm's TNT-S, without qkv biases
      {5, 4, 8, 2, 32, false, 1e-6},    // 4 tokens: 12 lanes of padding, whose keys must get no weight
      {2, 1, 64, 1, 256, true, 1e-6},   // the largest sizes; one token, so attention returns v
  };
  for (const Case& c : cases) {
    CAPTURE(c.tokens);
    CAPTURE(c.dim);
    CAPTURE(c.hidden);
    const InnerBlockWeights w64 = [&] {
      InnerBlockWeights w = random_weights(c.dim, c.hidden, c.qkv_bias, 100 + c.dim);
      w.norm1_eps = w.norm2_eps = c.eps;
      return w;
    }();
    const Tensor x64 = random_f64({c.sequences, c.tokens, c.dim}, 7, 1.5, 0.3);
    NoGradGuard no_grad;
    const Tensor expected = block_of_ops(x64, w64, c.heads);
    const Tensor got = inner_block_inference(x64.to(DType::f32), to_f32(w64), c.heads);
    CHECK(got.dtype() == DType::f32);
    // float32 through two LayerNorms, five products and a softmax: a few float spacings of values near 1-10.
    testing::expect_close(got, expected, 2e-5, 2e-5);
  }
}

TEST_CASE("inner_block_inference: reads a non-contiguous input and strided weights") {
  const InnerBlockWeights w64 = random_weights(12, 48, true, 300);
  const Tensor stored = random_f64({6, 12, 16}, 8);  // (S, d, M): x below is its transpose, a strided view
  const Tensor x64 = transpose(stored, 1, 2);        // (S, M, d)
  InnerBlockWeights w32 = to_f32(w64);
  w32.fc1_weight = contiguous(transpose(w32.fc1_weight, 0, 1));  // stored (d, hidden), then viewed (hidden, d)
  w32.fc1_weight = transpose(w32.fc1_weight, 0, 1);
  NoGradGuard no_grad;
  REQUIRE_FALSE(x64.is_contiguous());
  REQUIRE_FALSE(w32.fc1_weight.is_contiguous());
  testing::expect_close(inner_block_inference(x64.to(DType::f32), w32, 2), block_of_ops(x64, w64, 2), 2e-5, 2e-5);
}

TEST_CASE("inner_block_inference: TNT's eval-mode logits are those of the separate modules") {
  // tnt_cifar's pixel geometry (16 tokens of 12 channels) on 2 blocks; the same model and images give logits
  // through the fused op under NoGradGuard and through the separate modules with grad mode on.
  models::ModelConfig config = models::preset("tnt_cifar");
  config.depth = 2;
  manual_seed(11);
  const auto model = models::create_model(config);
  model->eval();
  Generator generator(12);
  const Tensor images = randn({3, 3, 32, 32}, DType::f32, generator);
  const Tensor separate = model->forward(images);  // parameters require grad: the fused op is not used
  REQUIRE(separate.requires_grad());
  NoGradGuard no_grad;
  testing::expect_close(model->forward(images), separate.detach(), 1e-5, 1e-5);
}

TEST_CASE("inner_block_inference: misuse fails loudly") {
  const InnerBlockWeights w = to_f32(random_weights(12, 48, true, 400));
  const Tensor x = Tensor::zeros({2, 16, 12});
  {
    NoGradGuard no_grad;
    CHECK_THROWS_WITH_AS(inner_block_inference(Tensor::zeros({2, 17, 12}), w, 2),
                         doctest::Contains("M <= 16"), std::runtime_error);
    CHECK_THROWS_WITH_AS(inner_block_inference(Tensor::zeros({2, 16, 12}, DType::f64), w, 2),
                         doctest::Contains("needs f32 (S, M, d) on the cpu"), std::runtime_error);
    CHECK_THROWS_WITH_AS(inner_block_inference(x, w, 5), doctest::Contains("12 channels are not divisible by 5 heads"),
                         std::runtime_error);
    InnerBlockWeights wrong = w;
    wrong.v_weight = Tensor::zeros({12, 13});
    CHECK_THROWS_WITH_AS(inner_block_inference(x, wrong, 2), doctest::Contains("v weight is f32(12, 13)"),
                         std::runtime_error);
    wrong = w;
    wrong.norm2_bias = Tensor();
    CHECK_THROWS_WITH_AS(inner_block_inference(x, wrong, 2), doctest::Contains("norm2 bias is undefined"),
                         std::runtime_error);
  }
  InnerBlockWeights trained = w;
  trained.fc2_weight = trained.fc2_weight.detach().requires_grad_();
  CHECK_THROWS_WITH_AS(inner_block_inference(x, trained, 2), doctest::Contains("has no backward"), std::runtime_error);
}
