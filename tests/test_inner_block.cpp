// TNT's fused inner block (ops/inner_block.cpp) against the same block written as separate ops: values and every
// gradient in float64, a gradient check of its own, float32 at tnt_cifar's sizes, the thread count, and a TNT
// block trained through it and through its modules with DropPath drawing the same patches.
#include <algorithm>
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

InnerBlockWeights random_weights(int64_t d, int64_t hidden, bool qkv_bias, uint64_t seed, double eps = 1e-5) {
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
  w.norm1_eps = w.norm2_eps = eps;
  return w;
}

// Every defined parameter, as a fresh leaf of `dtype` that requires grad.
InnerBlockWeights leaves_of(const InnerBlockWeights& w, DType dtype) {
  InnerBlockWeights f = w;
  Tensor* fields[] = {&f.norm1_weight, &f.norm1_bias, &f.qk_weight, &f.qk_bias, &f.v_weight, &f.v_bias,
                      &f.proj_weight, &f.proj_bias, &f.norm2_weight, &f.norm2_bias, &f.fc1_weight, &f.fc1_bias,
                      &f.fc2_weight, &f.fc2_bias};
  for (Tensor* t : fields)
    if (t->defined()) *t = t->to(dtype).detach().requires_grad_();
  return f;
}

// The block as separate ops: x1 = x + a * proj(attention(LN1(x))), y = x1 + m * fc2(gelu(fc1(LN2(x1)))), with
// a and m the per-sequence scales (S) or 1.
Tensor block_of_ops(const Tensor& x, const InnerBlockWeights& w, int64_t heads, const Tensor& attn_scales = Tensor(),
                    const Tensor& mlp_scales = Tensor()) {
  auto scaled = [&](const Tensor& branch, const Tensor& scales) {
    return scales.defined() ? mul(branch, reshape(scales, {-1, 1, 1})) : branch;  // (S, M, d)
  };
  const Tensor n1 = layer_norm(x, w.norm1_weight, w.norm1_bias, w.norm1_eps);  // (S, M, d)
  const Tensor attended = multi_head_attention({linear(n1, w.qk_weight, w.qk_bias), linear(n1, w.v_weight, w.v_bias)}, heads);
  const Tensor x1 = add(x, scaled(linear(attended, w.proj_weight, w.proj_bias), attn_scales));  // (S, M, d)
  const Tensor n2 = layer_norm(x1, w.norm2_weight, w.norm2_bias, w.norm2_eps);
  const Tensor mlp = linear(gelu(linear(n2, w.fc1_weight, w.fc1_bias)), w.fc2_weight, w.fc2_bias);
  return add(x1, scaled(mlp, mlp_scales));  // (S, M, d)
}

// y and the gradients of x and of every defined parameter, for sum(y * upstream).
std::vector<Tensor> values_and_grads(const Tensor& y, const Tensor& x, const InnerBlockWeights& w,
                                     const Tensor& upstream) {
  y.backward(upstream);
  std::vector<Tensor> out = {y.detach(), x.grad()};
  for (const Tensor& p : w.tensors())
    if (p.defined()) out.push_back(p.grad());
  return out;
}

struct Geometry {
  int64_t sequences, tokens, dim, heads, hidden;
  bool qkv_bias;
  double eps;
};

}  // namespace

TEST_CASE("inner_block: values and every gradient equal the separate float64 ops") {
  const Geometry cases[] = {
      {37, 16, 12, 2, 48, true, 1e-5},  // tnt_cifar's pixel tokens (B*64 sequences of 16 tokens, 12 channels)
      {3, 16, 24, 4, 96, false, 1e-5},  // timm's TNT-S, without qkv biases
      {5, 4, 8, 2, 32, false, 1e-6},    // 4 tokens: 12 lanes of padding, which must carry no weight or gradient
      {2, 1, 64, 1, 256, true, 1e-6},   // the largest sizes; one token, so attention returns v
  };
  for (const Geometry& c : cases) {
    CAPTURE(c.tokens);
    CAPTURE(c.dim);
    CAPTURE(c.hidden);
    const InnerBlockWeights w64 = random_weights(c.dim, c.hidden, c.qkv_bias, 100 + c.dim, c.eps);
    const Tensor x64 = random_f64({c.sequences, c.tokens, c.dim}, 7, 1.5, 0.3);
    const Tensor upstream = random_f64({c.sequences, c.tokens, c.dim}, 9);
    // DropPath's scales: every other sequence dropped from the attention branch, every third from the MLP's.
    std::vector<double> attn(c.sequences), mlp(c.sequences);
    for (int64_t s = 0; s < c.sequences; ++s) attn[s] = s % 2 ? 0.0 : 2.0, mlp[s] = s % 3 ? 1.25 : 0.0;
    const Tensor attn_scales = Tensor::from_vector(attn, {c.sequences}, DType::f64);
    const Tensor mlp_scales = Tensor::from_vector(mlp, {c.sequences}, DType::f64);
    for (bool with_scales : {false, true}) {
      CAPTURE(with_scales);
      const Tensor a = with_scales ? attn_scales : Tensor(), m = with_scales ? mlp_scales : Tensor();
      const InnerBlockWeights w_ops = leaves_of(w64, DType::f64), w_fused = leaves_of(w64, DType::f64);
      const Tensor x_ops = x64.detach().requires_grad_(), x_fused = x64.to(DType::f64).detach().requires_grad_();
      const auto expected = values_and_grads(block_of_ops(x_ops, w_ops, c.heads, a, m), x_ops, w_ops, upstream);
      const auto got = values_and_grads(inner_block(x_fused, w_fused, c.heads, a, m), x_fused, w_fused, upstream);
      REQUIRE(got.size() == expected.size());
      for (size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);  // 0: y, 1: dx, then the parameters in InnerBlockWeights::tensors() order
        testing::expect_close(got[i], expected[i], 1e-10, 1e-10);
      }
    }
    // float32 against the float64 ops: a few float spacings of values near 1-10.
    NoGradGuard no_grad;
    InnerBlockWeights w32 = w64;
    for (Tensor* t : {&w32.norm1_weight, &w32.norm1_bias, &w32.qk_weight, &w32.qk_bias, &w32.v_weight, &w32.v_bias,
                      &w32.proj_weight, &w32.proj_bias, &w32.norm2_weight, &w32.norm2_bias, &w32.fc1_weight,
                      &w32.fc1_bias, &w32.fc2_weight, &w32.fc2_bias})
      if (t->defined()) *t = t->to(DType::f32);
    testing::expect_close(inner_block(x64.to(DType::f32), w32, c.heads), block_of_ops(x64, w64, c.heads), 2e-5, 2e-5);
  }
}

TEST_CASE("inner_block: gradcheck, with and without biases and DropPath scales") {
  for (bool biases : {true, false}) {
    CAPTURE(biases);
    const InnerBlockWeights w = leaves_of(random_weights(4, 8, biases, 500), DType::f64);
    std::vector<Tensor> leaves = {testing::random_leaf({3, 5, 4}, 501)};  // 3 sequences of 5 tokens, d = 4
    for (const Tensor& p : w.tensors())
      if (p.defined()) leaves.push_back(p);
    const Tensor attn_scales = Tensor::from_vector({2.0, 0.0, 2.0}, {3}, DType::f64);
    const Tensor mlp_scales = Tensor::from_vector({0.0, 1.5, 1.5}, {3}, DType::f64);
    testing::gradcheck([&](const std::vector<Tensor>& l) {
      InnerBlockWeights lw = w;
      size_t next = 1;
      for (Tensor* t : {&lw.norm1_weight, &lw.norm1_bias, &lw.qk_weight, &lw.qk_bias, &lw.v_weight, &lw.v_bias,
                        &lw.proj_weight, &lw.proj_bias, &lw.norm2_weight, &lw.norm2_bias, &lw.fc1_weight, &lw.fc1_bias,
                        &lw.fc2_weight, &lw.fc2_bias})
        if (t->defined()) *t = l[next++];
      return inner_block(l[0], lw, 2, attn_scales, mlp_scales);
    }, leaves);
  }
}

TEST_CASE("inner_block: reads a non-contiguous input and strided weights") {
  const InnerBlockWeights w64 = random_weights(12, 48, true, 300);
  const Tensor stored = random_f64({6, 12, 16}, 8);  // (S, d, M): x below is its transpose, a strided view
  const Tensor x64 = transpose(stored, 1, 2);        // (S, M, d)
  InnerBlockWeights w32 = w64;
  for (Tensor* t : {&w32.norm1_weight, &w32.norm1_bias, &w32.qk_weight, &w32.qk_bias, &w32.v_weight, &w32.v_bias,
                    &w32.proj_weight, &w32.proj_bias, &w32.norm2_weight, &w32.norm2_bias, &w32.fc1_weight,
                    &w32.fc1_bias, &w32.fc2_weight, &w32.fc2_bias})
    *t = t->to(DType::f32);
  w32.fc1_weight = transpose(contiguous(transpose(w32.fc1_weight, 0, 1)), 0, 1);  // stored (d, hidden), viewed (hidden, d)
  NoGradGuard no_grad;
  REQUIRE_FALSE(x64.is_contiguous());
  REQUIRE_FALSE(w32.fc1_weight.is_contiguous());
  testing::expect_close(inner_block(x64.to(DType::f32), w32, 2), block_of_ops(x64, w64, 2), 2e-5, 2e-5);
}

TEST_CASE("inner_block: float32 gradients are the same bits on 1 and 2 threads") {
  const InnerBlockWeights w64 = random_weights(12, 48, true, 600);
  const Tensor x64 = random_f64({300, 16, 12}, 601);  // 300 sequences: several blocks of sums on each thread
  const Tensor upstream = random_f64({300, 16, 12}, 602).to(DType::f32);
  auto run = [&] {
    const InnerBlockWeights w = leaves_of(w64, DType::f32);
    const Tensor x = x64.to(DType::f32).detach().requires_grad_();
    std::vector<std::vector<double>> out;
    for (const Tensor& t : values_and_grads(inner_block(x, w, 2), x, w, upstream)) out.push_back(t.to_vector());
    return out;
  };
  const auto one = testing::with_threads(1, run), two = testing::with_threads(2, run);
  REQUIRE(one.size() == 16);
  for (size_t i = 0; i < one.size(); ++i) CHECK(one[i] == two[i]);  // bit for bit
}

TEST_CASE("inner_block: a TNT block trains through it as through its modules, DropPath dropping the same patches") {
  // tnt_cifar's pixel geometry (16 tokens of 12 channels, 2 heads) on 2 images; DropPath 0.5, so about half the
  // 128 patches skip each branch. keep_probabilities sends the block through its modules instead.
  models::ModelConfig config = models::preset("tnt_cifar");
  models::TNTBlock block(config, 0.5);
  block.to(DType::f64);
  const Tensor pixels64 = random_f64({128, 16, 12}, 700), patches64 = random_f64({2, 65, 192}, 701);
  const Tensor upstream = random_f64({128, 16, 12}, 702);
  auto run = [&](bool fused) {
    block.attn_in->keep_probabilities = !fused;
    block.zero_grad();
    const Tensor pixels = pixels64.detach().requires_grad_();
    manual_seed(703);
    const Tensor y = block.inner(pixels);  // (128, 16, 12)
    y.backward(upstream);
    std::vector<Tensor> out = {y.detach(), pixels.grad()};
    for (auto& [name, p] : block.named_parameters())
      if (p.grad().defined()) out.push_back(p.grad());
    return out;
  };
  const auto modules = run(false), fused = run(true);
  REQUIRE(fused.size() == modules.size());
  REQUIRE(fused.size() == 2 + 12);  // norm_in, attn_in (qk, v, proj without qkv bias: 4), norm_mlp_in, mlp_in
  for (size_t i = 0; i < fused.size(); ++i) {
    CAPTURE(i);
    testing::expect_close(fused[i], modules[i], 1e-10, 1e-10);
  }
  // Those draws did drop patches (about 64 of 128 from each branch), so the agreement above covers the scales.
  manual_seed(703);
  const Tensor attn_scales = drop_path_scales(pixels64, 0.5, true), mlp_scales = drop_path_scales(pixels64, 0.5, true);
  for (const Tensor& scales : {attn_scales, mlp_scales}) {
    const std::vector<double> values = scales.to_vector();
    const auto dropped = std::count(values.begin(), values.end(), 0.0);
    CHECK(dropped >= 32);
    CHECK(dropped <= 96);
    CHECK(std::count(values.begin(), values.end(), 2.0) == 128 - dropped);  // kept: 1 / (1 - 0.5)
  }
}

TEST_CASE("inner_block: TNT's eval-mode logits are those of the separate modules") {
  models::ModelConfig config = models::preset("tnt_cifar");
  config.depth = 2;
  manual_seed(11);
  const auto model = models::create_model(config);
  model->eval();
  Generator generator(12);
  const Tensor images = randn({3, 3, 32, 32}, DType::f32, generator);
  NoGradGuard no_grad;
  const Tensor fused = model->forward(images);
  for (const auto& block : dynamic_cast<models::TransformerInTransformer&>(*model).blocks)
    block->attn_in->keep_probabilities = true;  // the separate modules
  testing::expect_close(fused, model->forward(images), 1e-5, 1e-5);
}

TEST_CASE("inner_block: misuse fails loudly") {
  InnerBlockWeights w = random_weights(12, 48, true, 400);
  for (Tensor* t : {&w.norm1_weight, &w.norm1_bias, &w.qk_weight, &w.qk_bias, &w.v_weight, &w.v_bias, &w.proj_weight,
                    &w.proj_bias, &w.norm2_weight, &w.norm2_bias, &w.fc1_weight, &w.fc1_bias, &w.fc2_weight, &w.fc2_bias})
    *t = t->to(DType::f32);
  const Tensor x = Tensor::zeros({2, 16, 12});
  CHECK_THROWS_WITH_AS(inner_block(Tensor::zeros({2, 17, 12}), w, 2), doctest::Contains("M <= 16"), std::runtime_error);
  CHECK_THROWS_WITH_AS(inner_block(Tensor::zeros({2, 16, 12}, DType::f64), w, 2),
                       doctest::Contains("norm1 weight is f32(12) on cpu, expected f64(12)"), std::runtime_error);
  CHECK_THROWS_WITH_AS(inner_block(x, w, 5), doctest::Contains("12 channels are not divisible by 5 heads"),
                       std::runtime_error);
  InnerBlockWeights wrong = w;
  wrong.v_weight = Tensor::zeros({12, 13});
  CHECK_THROWS_WITH_AS(inner_block(x, wrong, 2), doctest::Contains("v weight is f32(12, 13)"), std::runtime_error);
  wrong = w;
  wrong.norm2_bias = Tensor();
  CHECK_THROWS_WITH_AS(inner_block(x, wrong, 2), doctest::Contains("norm2 bias is undefined"), std::runtime_error);
  CHECK_THROWS_WITH_AS(inner_block(x, w, 2, Tensor::ones({3})),
                       doctest::Contains("attention scales f32(3) must be constant f32(2)"), std::runtime_error);
  // NaN or a negative LayerNorm eps gave NaN outputs; layer_norm refuses both.
  wrong = w;
  wrong.norm2_eps = NAN;
  CHECK_THROWS_WITH_AS(inner_block(x, wrong, 2), doctest::Contains("LayerNorm eps must be non-negative, got nan"),
                       std::runtime_error);
  wrong.norm2_eps = -1e-6;
  CHECK_THROWS_WITH_AS(inner_block(x, wrong, 2), doctest::Contains("LayerNorm eps must be non-negative"),
                       std::runtime_error);
}

TEST_CASE("inner_block: strided and expanded DropPath scales are read by value (found by an op-level hunt)") {
  // The kernels read the scales' raw storage: a stride-2 view of {1, 0, 1, 0, 1, 0} (values 1 1 1) was read as
  // 1 0 1, and an expanded one-element scale past its storage (ASan: heap-buffer-overflow).
  const InnerBlockWeights w = random_weights(4, 8, true, 700);
  const Tensor x = random_f64({3, 5, 4}, 701);  // 3 sequences of 5 tokens, d = 4
  const Tensor ones = Tensor::ones({3}, DType::f64);
  NoGradGuard no_grad;
  const Tensor expected = inner_block(x, w, 2, ones, ones);
  const Tensor strided = slice(Tensor::from_vector({1, 0, 1, 0, 1, 0}, {6}, DType::f64), 0, 0, 6, 2);
  const Tensor expanded = expand(Tensor::ones({1}, DType::f64), {3});
  testing::expect_close(inner_block(x, w, 2, strided, expanded), expected, 0.0);
  testing::expect_close(inner_block(x, w, 2, expanded, strided), expected, 0.0);
}
