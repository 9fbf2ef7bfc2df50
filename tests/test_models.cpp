// ViT and TNT against timm: parameter counts of the named presets, state_dict keys and shapes, and the
// logits of small models with formula weights (tests/reference/models.h, from scripts/reference/models.py).
#include <cmath>

#include "autograd/allocator.h"
#include "models/config.h"
#include "models/insight.h"
#include "models/tnt.h"
#include "models/vit.h"
#include "nn/safetensors.h"
#include "tests/helpers.h"
#include "tests/reference/models.h"

using namespace vt;
using models::ModelConfig;

namespace {

ModelConfig with(const std::string& name, const std::vector<std::pair<std::string, std::string>>& overrides) {
  ModelConfig config = models::preset(name);
  for (const auto& [key, value] : overrides) models::apply_override(config, key, value);
  return config;
}

// A TNT block small enough for finite differences: 8x8 images of 4 patches, each with 2x2 pixel tokens of 4
// channels (pixel stride 2); patch tokens of 8 channels.
ModelConfig tiny_tnt() {
  return with("tnt_s_patch16_224", {{"image_size", "8"}, {"patch_size", "4"}, {"dim", "8"}, {"inner_dim", "4"},
                                    {"depth", "1"}, {"heads", "2"}, {"inner_heads", "2"}, {"pixel_stride", "2"}});
}

// The formula of scripts/reference/models.py: parameter k, element i = 0.1 sin(0.37 i + 1.3 k), + 1 for
// LayerNorm weights.
void set_formula_weights(nn::Module& model) {
  NoGradGuard no_grad;
  int64_t k = 0;
  for (auto& [name, tensor] : model.named_parameters()) {
    std::vector<double> values(tensor.numel());
    const size_t dot = name.rfind('.');
    const std::string leaf = name.substr(dot + 1);
    const std::string owner = name.substr(0, dot).substr(name.substr(0, dot).rfind('.') + 1);
    const bool norm_weight = leaf == "weight" && owner.find("norm") != std::string::npos;
    for (size_t i = 0; i < values.size(); ++i) values[i] = 0.1 * std::sin(0.37 * i + 1.3 * k) + (norm_weight ? 1.0 : 0.0);
    tensor.copy_(Tensor::from_vector(values, tensor.shape(), tensor.dtype()));
    ++k;
  }
}

Tensor formula_images(int64_t batch, int64_t channels, int64_t size, DType dtype) {
  std::vector<double> values(batch * channels * size * size);
  for (size_t n = 0; n < values.size(); ++n) values[n] = std::sin(0.1 * n);
  return Tensor::from_vector(values, {batch, channels, size, size}, dtype);
}

void expect_keys(const nn::Module& model, const std::vector<std::pair<std::string, Shape>>& expected) {
  const auto params = model.named_parameters();
  REQUIRE(params.size() == expected.size());
  for (size_t i = 0; i < params.size(); ++i) {
    CAPTURE(i);
    CHECK(params[i].first == expected[i].first);
    CHECK(params[i].second.shape() == expected[i].second);
  }
}

}  // namespace

TEST_CASE("models: preset parameter counts equal timm's") {
  CHECK(models::create_model(models::preset("vit_tiny_patch16_224"))->parameter_count() == reference::params_vit_tiny_patch16_224);
  CHECK(models::create_model(models::preset("vit_small_patch16_224"))->parameter_count() == reference::params_vit_small_patch16_224);
  CHECK(models::create_model(models::preset("vit_base_patch16_224"))->parameter_count() == reference::params_vit_base_patch16_224);
  CHECK(models::create_model(models::preset("tnt_s_patch16_224"))->parameter_count() == reference::params_tnt_s_patch16_224);
  CHECK(models::create_model(models::preset("tnt_b_patch16_224"))->parameter_count() == reference::params_tnt_b_patch16_224);
  CHECK(reference::params_vit_tiny_patch16_224 == 5717416);  // the numbers the issue quotes
  CHECK(reference::params_tnt_s_patch16_224 == 23768584);
}

TEST_CASE("models: parameter names and shapes are timm's state_dict keys, in order") {
  expect_keys(*models::create_model(models::preset("vit_tiny_patch16_224")), reference::keys_vit_tiny_patch16_224);
  expect_keys(*models::create_model(models::preset("tnt_s_patch16_224")), reference::keys_tnt_s_patch16_224);
}

TEST_CASE("models: small ViT and TNT logits match timm on the same weights") {
  const std::vector<std::pair<std::string, std::string>> vit_small = {
      {"image_size", "16"}, {"patch_size", "4"}, {"dim", "16"}, {"depth", "2"}, {"heads", "2"}, {"num_classes", "5"}};
  auto vit_mean = vit_small;
  vit_mean.emplace_back("pool", "mean");
  const std::vector<std::pair<std::string, std::string>> tnt_small = {
      {"image_size", "16"}, {"patch_size", "8"}, {"dim", "16"}, {"inner_dim", "8"}, {"depth", "2"},
      {"heads", "2"}, {"inner_heads", "2"}, {"num_classes", "5"}};
  struct Case {
    ModelConfig config;
    const std::vector<std::pair<std::string, Shape>>& keys;
    const std::vector<double>& logits;
  };
  const std::vector<Case> cases = {
      {with("vit_tiny_patch16_224", vit_small), reference::keys_small_vit, reference::logits_small_vit},
      {with("vit_tiny_patch16_224", vit_mean), reference::keys_small_vit_mean, reference::logits_small_vit_mean},
      {with("tnt_s_patch16_224", tnt_small), reference::keys_small_tnt, reference::logits_small_tnt},
  };
  for (const Case& c : cases) {
    CAPTURE(c.config.name);
    const auto model = models::create_model(c.config);
    model->eval();
    expect_keys(*model, c.keys);
    set_formula_weights(*model);
    NoGradGuard no_grad;
    testing::expect_close(model->forward(formula_images(2, 3, 16, DType::f32)), c.logits, 1e-4);
    model->to(DType::f64);
    set_formula_weights(*model);  // again, now without the float32 rounding
    testing::expect_close(model->forward(formula_images(2, 3, 16, DType::f64)), c.logits, 1e-10);
  }
}

TEST_CASE("models: an empty batch gives (0, classes) logits, and a gradient of zeros, for ViT and TNT") {
  // TNT divided the pixel tokens' count by the batch to find the patches per image: SIGFPE at B = 0 (vt forward
  // on a file holding a (0, 3, 32, 32) batch).
  for (const ModelConfig& config :
       {with("vit_tiny_patch16_224", {{"image_size", "16"}, {"patch_size", "4"}, {"dim", "16"}, {"depth", "2"},
                                      {"heads", "2"}, {"num_classes", "5"}}),
        with("tnt_s_patch16_224", {{"image_size", "16"}, {"patch_size", "8"}, {"dim", "16"}, {"inner_dim", "8"},
                                   {"depth", "2"}, {"heads", "2"}, {"inner_heads", "2"}, {"num_classes", "5"}})}) {
    CAPTURE(config.name);
    const auto model = models::create_model(config);
    const Tensor logits = model->forward(Tensor::zeros({0, 3, 16, 16}));  // (0, 5)
    CHECK(logits.shape() == Shape{0, 5});
    sum(logits).backward();  // the sum of no logits is 0, and every weight's gradient 0
    for (const auto& [name, parameter] : model->named_parameters()) {
      CAPTURE(name);
      REQUIRE(parameter.grad().defined());
      testing::expect_close(parameter.grad(), Tensor::zeros(parameter.shape()), 0.0);
    }
  }
}

TEST_CASE("models: gradient check through a whole ViT block and a whole TNT block, and their class-token rows alone") {
  manual_seed(3);
  nn::Block block(8, 2, 2.0, true, 0.0, 0.0, 1e-6);
  block.to(DType::f64);
  std::vector<Tensor> leaves = {testing::random_leaf({2, 5, 8}, 61)};
  for (auto& [name, p] : block.named_parameters()) leaves.push_back(p);
  testing::gradcheck([&](const auto& l) { return block.forward(l[0]); }, leaves);
  testing::gradcheck([&](const auto& l) { return block.forward(l[0], true); }, leaves);  // the class token's row alone

  models::TNTBlock tnt_block(tiny_tnt(), 0.0);
  tnt_block.to(DType::f64);
  // 2 images of 4 patches, each with 2x2 pixel tokens of 4 channels; 1 + 4 patch tokens of 8 channels.
  std::vector<Tensor> tnt_leaves = {testing::random_leaf({8, 4, 4}, 62), testing::random_leaf({2, 5, 8}, 63)};
  for (auto& [name, p] : tnt_block.named_parameters()) tnt_leaves.push_back(p);
  testing::gradcheck([&](const auto& l) {
    const auto [pixels, patches] = tnt_block.forward(l[0], l[1]);
    return cat({reshape(pixels, {2, -1}), reshape(patches, {2, -1})}, 1);  // both outputs in one check
  }, tnt_leaves);
  testing::gradcheck([&](const auto& l) { return tnt_block.forward(l[0], l[1], true).second; }, tnt_leaves);
}

// The values and gradients of a class-token run: `forward(only)` gives the block's class-token row (B, 1, D),
// computed alone (only) or sliced from every row; the upstream gradient reaches that row only.
static std::vector<Tensor> class_token_run(nn::Module& block, const std::vector<Tensor>& inputs, const Tensor& upstream,
                                           const std::function<Tensor(const std::vector<Tensor>&, bool)>& forward,
                                           bool only) {
  block.zero_grad();
  std::vector<Tensor> leaves;
  for (const Tensor& x : inputs) leaves.push_back(x.detach().requires_grad_());
  manual_seed(77);  // the same DropPath draws in both runs
  const Tensor y = forward(leaves, only);
  y.backward(upstream);
  std::vector<Tensor> out = {y.detach()};
  for (const Tensor& leaf : leaves) out.push_back(leaf.grad());
  for (auto& [name, p] : block.named_parameters()) out.push_back(p.grad());
  return out;
}

TEST_CASE("models: a last block computing the class token's row alone matches the whole block's row, and its gradients") {
  // Under class-token pooling the head reads row 0 of the last block: y[:, 0] = x[:, 0] + attn(LN(x))[:, 0], whose
  // attention takes every token's keys and values, then the MLP of that row. Checked in float64 in eval mode and
  // in training with DropPath 0.5 (per-sample draws, the same in both runs), on the fused attention op and on the
  // separate ops the insight tools use (kept attention maps).
  manual_seed(5);
  nn::Block block(8, 2, 2.0, true, 0.0, 0.5, 1e-6);
  block.to(DType::f64);
  const std::vector<Tensor> x = {testing::random_leaf({3, 5, 8}, 81)};  // (B, N, D)
  const Tensor upstream = testing::random_leaf({3, 1, 8}, 82).detach();  // (B, 1, D)
  auto vit_row = [&](const std::vector<Tensor>& l, bool only) {
    const Tensor y = block.forward(l[0], only);  // (B, 1, D) or (B, N, D)
    return only ? y : slice(y, 1, 0, 1);
  };

  models::TNTBlock tnt_block(tiny_tnt(), 0.5);
  tnt_block.to(DType::f64);
  // 2 images of 4 patches, each with 2x2 pixel tokens of 4 channels; 1 + 4 patch tokens of 8 channels.
  const std::vector<Tensor> tnt_x = {testing::random_leaf({8, 4, 4}, 83), testing::random_leaf({2, 5, 8}, 84)};
  const Tensor tnt_upstream = testing::random_leaf({2, 1, 8}, 85).detach();
  auto tnt_row = [&](const std::vector<Tensor>& l, bool only) {
    const Tensor patches = tnt_block.forward(l[0], l[1], only).second;  // (B, 1, D) or (B, 1 + N, D)
    return only ? patches : slice(patches, 1, 0, 1);
  };

  for (bool training : {false, true})
    for (bool keep_maps : {false, true}) {
      CAPTURE(training);
      CAPTURE(keep_maps);
      block.train(training);
      tnt_block.train(training);
      block.attn->keep_probabilities = tnt_block.attn_out->keep_probabilities = keep_maps;
      const auto whole = class_token_run(block, x, upstream, vit_row, false);
      const auto alone = class_token_run(block, x, upstream, vit_row, true);
      const auto tnt_whole = class_token_run(tnt_block, tnt_x, tnt_upstream, tnt_row, false);
      const auto tnt_alone = class_token_run(tnt_block, tnt_x, tnt_upstream, tnt_row, true);
      REQUIRE(alone.size() == whole.size());
      REQUIRE(tnt_alone.size() == tnt_whole.size());
      for (size_t i = 0; i < whole.size(); ++i) {
        CAPTURE(i);
        REQUIRE(whole[i].defined());
        testing::expect_close(alone[i], whole[i], 1e-12, 1e-12);
      }
      for (size_t i = 0; i < tnt_whole.size(); ++i) {
        CAPTURE(i);
        REQUIRE(tnt_whole[i].defined());
        testing::expect_close(tnt_alone[i], tnt_whole[i], 1e-12, 1e-12);
      }
    }
}

TEST_CASE("models: ViT's convolutional stem: its layers, multiply-adds, a gradient check, and its limits") {
  // stem_channels = 16 on 4x4 patches: two 3x3 stride-2 convs 3 -> 16 (32 -> 16 pixels a side), 16 -> 32
  // (16 -> 8), then a 1x1 conv 32 -> D = 192 at each of the 8x8 token positions.
  const ModelConfig c = with("vit_cifar", {{"stem_channels", "16"}});
  const auto model = models::create_model(c);
  const auto params = model->named_parameters();
  auto shape_of = [&](const std::string& name) {
    for (const auto& [key, p] : params)
      if (key == name) return p.shape();
    FAIL("no parameter " << name);
    return Shape{};
  };
  CHECK(shape_of("patch_embed.stem.0.weight") == Shape{16, 3, 3, 3});
  CHECK(shape_of("patch_embed.stem.1.weight") == Shape{32, 16, 3, 3});
  CHECK(shape_of("patch_embed.proj.weight") == Shape{192, 32, 1, 1});
  CHECK(params.front().first == "cls_token");
  CHECK(models::patch_filters(*model).shape() == Shape{16, 27});  // the first conv's 3x3 RGB filters
  // vit_cifar's patchify conv does 64 * 192 * 3*4*4 multiply-adds; the stem 16^2 * 16 * 3*9 + 8^2 * 32 * 16*9
  // + 64 * 192 * 32 instead.
  const double patchify = 64.0 * 192 * 48, stem = 256.0 * 16 * 27 + 64.0 * 32 * 144 + 64.0 * 192 * 32;
  CHECK(models::macs_per_image(c) == models::macs_per_image(models::preset("vit_cifar")) - patchify + stem);
  {
    NoGradGuard no_grad;
    model->eval();
    CHECK(model->forward(Tensor::zeros({2, 3, 32, 32})).shape() == Shape{2, 10});
  }
  // The stem's own gradients: 2 images of 2 channels, 8x8 pixels, patch 4 (two stem convs), D = 6.
  manual_seed(5);
  nn::PatchEmbed embed(2, 6, 4, 3);
  embed.to(DType::f64);
  std::vector<Tensor> leaves = {testing::random_leaf({2, 2, 8, 8}, 64)};
  for (auto& [name, p] : embed.named_parameters()) leaves.push_back(p);
  CHECK(leaves.size() == 1 + 3 * 2);  // stem.0, stem.1 and proj, each a weight and a bias
  testing::gradcheck([&](const auto& l) { return embed.forward(l[0]); }, leaves);

  CHECK_THROWS_WITH_AS(models::validate(with("vit_cifar", {{"stem_channels", "8"}, {"patch_size", "6"}, {"image_size", "24"}})),
                       doctest::Contains("patch_size must be a power of 2 from 2, got 6"), std::runtime_error);
  CHECK_THROWS_WITH_AS(models::validate(with("vit_cifar", {{"stem_channels", "8"}, {"patch_size", "1"}})),
                       doctest::Contains("patch_size must be a power of 2 from 2, got 1"), std::runtime_error);
  CHECK_THROWS_WITH_AS(models::validate(with("tnt_cifar", {{"stem_channels", "8"}})),
                       doctest::Contains("stem_channels is a ViT setting"), std::runtime_error);
  CHECK_THROWS_WITH_AS(models::validate(with("vit_tiny_patch16_224", {{"stem_channels", "65536"}})),
                       doctest::Contains("the stem's last conv would have 524288 channels"), std::runtime_error);
}

TEST_CASE("models: the CIFAR presets are within 15% of each other in parameters") {
  const int64_t vit = models::create_model(models::preset("vit_cifar"))->parameter_count();
  const int64_t tnt = models::create_model(models::preset("tnt_cifar"))->parameter_count();
  CHECK(vit >= 2500000);
  CHECK(vit <= 4000000);
  CHECK(tnt >= 2500000);
  CHECK(tnt <= 4000000);
  CHECK(std::abs(static_cast<double>(tnt - vit)) <= 0.15 * vit);
}

TEST_CASE("models: multiply-adds per image match timm's model cards") {
  // timm's model cards: vit_tiny_patch16_224 1.3 GMACs, vit_small 4.6, vit_base 17.6, tnt_s 5.2
  CHECK(models::macs_per_image(models::preset("vit_tiny_patch16_224")) / 1e9 == doctest::Approx(1.26).epsilon(0.02));
  CHECK(models::macs_per_image(models::preset("vit_small_patch16_224")) / 1e9 == doctest::Approx(4.6).epsilon(0.02));
  CHECK(models::macs_per_image(models::preset("vit_base_patch16_224")) / 1e9 == doctest::Approx(17.6).epsilon(0.02));
  CHECK(models::macs_per_image(models::preset("tnt_s_patch16_224")) / 1e9 == doctest::Approx(5.2).epsilon(0.03));
}

TEST_CASE("models: the multiply-adds vt computes leave out the last block's patch rows past attention") {
  // vit_cifar: 64 patch rows of the output projection (192 x 192) and the MLP (192 x 768 twice) in the last block.
  const ModelConfig vit = models::preset("vit_cifar"), tnt = models::preset("tnt_cifar");
  CHECK(models::computed_macs_per_image(vit) == models::macs_per_image(vit) - 64 * (192 * 192 + 2 * 192 * 768));
  CHECK(models::computed_macs_per_image(tnt) == models::macs_per_image(tnt) - 64 * (192 * 192 + 2 * 192 * 768));
  const ModelConfig mean_pooled = with("vit_cifar", {{"pool", "mean"}});  // every row reaches the head
  CHECK(models::computed_macs_per_image(mean_pooled) == models::macs_per_image(mean_pooled));
}

TEST_CASE("models: overrides reshape a preset and bad ones fail loudly") {
  ModelConfig c = with("vit_cifar", {{"in_channels", "1"}, {"num_classes", "7"}, {"pos_embed", "sincos_2d"}, {"head", "mlp"}});
  const auto model = models::create_model(c);
  NoGradGuard no_grad;
  model->eval();
  CHECK(model->forward(Tensor::zeros({2, 1, 32, 32})).shape() == Shape{2, 7});
  for (const std::string kind : {"learned", "learned_2d", "sincos_2d", "none"}) {
    ModelConfig k = with("tnt_cifar", {{"pos_embed", kind}, {"pool", "mean"}, {"depth", "1"}});
    CHECK(models::create_model(k)->forward(Tensor::zeros({1, 3, 32, 32})).shape() == Shape{1, 10});
  }
  CHECK_THROWS_WITH_AS(models::validate(with("vit_cifar", {{"heads", "5"}})), doctest::Contains("not divisible by heads 5"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(with("vit_cifar", {{"colour", "blue"}}), doctest::Contains("unknown setting 'colour'"), std::runtime_error);
  CHECK_THROWS_WITH_AS(with("vit_cifar", {{"pool", "max"}}), doctest::Contains("pool=max is not one of cls, mean"), std::runtime_error);
  CHECK_THROWS_WITH_AS(models::preset("vit_huge"), doctest::Contains("unknown model 'vit_huge'"), std::runtime_error);
}

TEST_CASE("models: every field has a sane range, checked before any size is computed from it") {
  // Each of these overflowed a size computation (UBSan: signed overflow) or allocated gigabytes before.
  CHECK_THROWS_WITH_AS(with("vit_cifar", {{"dim", "4611686018427387904"}}),
                       doctest::Contains("dim=4611686018427387904 is outside [1, 65536]"), std::runtime_error);
  CHECK_THROWS_WITH_AS(with("vit_cifar", {{"image_size", "4294967296"}, {"patch_size", "1"}}),
                       doctest::Contains("image_size=4294967296 is outside [1, 4096]"), std::runtime_error);
  CHECK_THROWS_WITH_AS(with("tnt_cifar", {{"pixel_kernel", "2147483648"}}),
                       doctest::Contains("pixel_kernel=2147483648 is outside [1, 63]"), std::runtime_error);
  CHECK_THROWS_WITH_AS(with("vit_cifar", {{"head_hidden", "-5"}}), doctest::Contains("head_hidden=-5 is outside [0, 65536]"),
                       std::runtime_error);
  const std::string eps_range = "is outside [1.1754943508222875e-38, 1]";  // from float32's smallest normal number
  CHECK_THROWS_WITH_AS(with("vit_cifar", {{"norm_eps", "inf"}}), doctest::Contains(("norm_eps=inf " + eps_range).c_str()),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(with("vit_cifar", {{"norm_eps", "nan"}}), doctest::Contains(("norm_eps=nan " + eps_range).c_str()),
                       std::runtime_error);
  // 1e-320 read as "not a number" (std::stod throws on an underflow). Taken, it would give a constant row the rstd
  // 1/sqrt(0 + 1e-320) = 1e160, inf in float32, and inf * 0 = NaN: eps starts at float32's smallest normal number.
  CHECK_THROWS_WITH_AS(with("vit_cifar", {{"norm_eps", "1e-320"}}), doctest::Contains(("norm_eps=1e-320 " + eps_range).c_str()),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(with("vit_cifar", {{"norm_eps", "1e-50"}}), doctest::Contains(("norm_eps=1e-50 " + eps_range).c_str()),
                       std::runtime_error);
  CHECK(with("vit_cifar", {{"norm_eps", "1e-30"}}).norm_eps == 1e-30);
  CHECK_THROWS_WITH_AS(with("vit_cifar", {{"drop_path_rate", "1"}}), doctest::Contains("drop_path_rate=1 is outside [0, 1)"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(with("vit_cifar", {{"qkv_bias", "2"}}), doctest::Contains("qkv_bias=2 is not 0 or 1"),
                       std::runtime_error);
  // In range one by one, too large together: 4096 / 1 = 4096^2 patches, or a model past 2^32 parameters.
  CHECK_THROWS_WITH_AS(models::validate(with("vit_cifar", {{"image_size", "4096"}, {"patch_size", "1"}})),
                       doctest::Contains("16777216 patches; at most 65,536"), std::runtime_error);
  CHECK_THROWS_WITH_AS(models::validate(with("vit_cifar", {{"dim", "65536"}, {"heads", "1"}, {"depth", "1024"}})),
                       doctest::Contains("parameters; at most 2^32"), std::runtime_error);
  // A checkpoint's metadata goes through the same checks.
  std::map<std::string, std::string> metadata = models::config_metadata(models::preset("vit_cifar"));
  metadata["vt.model.dim"] = "4611686018427387904";
  CHECK_THROWS_WITH_AS(models::config_from_metadata(metadata), doctest::Contains("dim=4611686018427387904 is outside"),
                       std::runtime_error);
}

TEST_CASE("models: parameter_count from the config equals timm's and the built model's, for every preset and variant") {
  // timm's presets against timm's own counts (the built models are compared with them above).
  CHECK(models::parameter_count(models::preset("vit_tiny_patch16_224")) == reference::params_vit_tiny_patch16_224);
  CHECK(models::parameter_count(models::preset("vit_small_patch16_224")) == reference::params_vit_small_patch16_224);
  CHECK(models::parameter_count(models::preset("vit_base_patch16_224")) == reference::params_vit_base_patch16_224);
  CHECK(models::parameter_count(models::preset("tnt_s_patch16_224")) == reference::params_tnt_s_patch16_224);
  CHECK(models::parameter_count(models::preset("tnt_b_patch16_224")) == reference::params_tnt_b_patch16_224);
  std::vector<ModelConfig> configs = {models::preset("vit_cifar"), models::preset("tnt_cifar")};
  for (const std::string arch : {"vit_cifar", "tnt_cifar"})
    for (const std::string pos : {"learned", "learned_2d", "sincos_2d", "none"})
      for (const std::string pool : {"cls", "mean"}) {
        configs.push_back(with(arch, {{"pos_embed", pos}, {"pool", pool}, {"head", "mlp"}, {"head_hidden", "40"}}));
        configs.push_back(with(arch, {{"pos_embed", pos}, {"pool", pool}, {"qkv_bias", "1"}, {"mlp_ratio", "2.7"},
                                      {"inner_mlp_ratio", "1.5"}, {"in_channels", "1"}, {"num_classes", "3"}}));
      }
  configs.push_back(with("vit_cifar", {{"stem_channels", "16"}}));
  configs.push_back(with("vit_cifar", {{"stem_channels", "5"}, {"patch_size", "8"}, {"in_channels", "1"}}));  // 3 convs
  for (const ModelConfig& config : configs) {
    CAPTURE(models::to_map(config));
    CHECK(models::parameter_count(config) == static_cast<double>(models::create_model(config)->parameter_count()));
  }
}

TEST_CASE("models: a checkpoint whose metadata describes another model fails before the model is built") {
  testing::TemporaryDirectory directory("load_model");
  const std::string path = directory.file("small.safetensors");
  ModelConfig small = with("vit_cifar", {{"dim", "16"}, {"heads", "2"}, {"depth", "1"}});
  nn::save_weights(path, *models::create_model(small), models::config_metadata(small));
  CHECK(models::load_model(path, small)->parameter_count() == models::parameter_count(small));
  // The same small file read as vit_base (86M parameters, 344 MB): refused from the header, nothing allocated.
  reset_peak_live_bytes();
  const uint64_t before = allocator_stats().live_bytes;
  CHECK_THROWS_WITH_AS(models::load_model(path, models::preset("vit_base_patch16_224")),
                       doctest::Contains("but model vit_base_patch16_224 (vit, dim 768, depth 12) has 86567656 parameters"),
                       std::runtime_error);
  CHECK(allocator_stats().peak_live_bytes - before < (1 << 20));
}
