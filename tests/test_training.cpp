// Whole-model training checks: both CIFAR presets overfit one batch of 16 images, one optimizer step changes
// every parameter and gives the same bits on any thread count, Dropout and DropPath are identities in eval
// mode, and initialisation follows timm.
#include <cmath>

#include "autograd/gemm_bf16.h"
#include "models/config.h"
#include "models/vit.h"
#include "nn/optim.h"
#include "tests/helpers.h"

using namespace vt;

namespace {

// Trains on one fixed batch of 16 random images with random labels until every image is classified right;
// returns the number of steps taken (or max_steps + 1 if it never got there).
int steps_to_memorise(const std::string& preset, int max_steps) {
  models::ModelConfig config = models::preset(preset);
  config.drop_path_rate = 0.0;  // a deterministic network, so that memorising is a pure optimisation question
  manual_seed(5);
  const auto model = models::create_model(config);
  Generator data(17);
  const Tensor images = randn({16, 3, 32, 32}, DType::f32, data);  // (B, C, H, W)
  std::vector<int64_t> labels(16);
  for (int i = 0; i < 16; ++i) labels[i] = (i * 7 + 3) % 10;
  const Tensor target = Tensor::from_indices(labels, {16});
  nn::AdamW optimizer(nn::weight_decay_groups(*model, 0.05), 1e-3);
  for (int step = 1; step <= max_steps; ++step) {
    const Tensor logits = model->forward(images);  // (B, 10)
    const std::vector<int64_t> predicted = argmax(logits.detach(), 1).to_indices();
    if (predicted == labels) return step - 1;
    optimizer.zero_grad();
    cross_entropy(logits, target).backward();
    optimizer.step();
  }
  return max_steps + 1;
}

}  // namespace

TEST_CASE("training: vit_cifar memorises one batch of 16 images within 300 steps") {
  const int steps = steps_to_memorise("vit_cifar", 300);
  MESSAGE("vit_cifar reached 100% training accuracy after " << steps << " steps");
  CHECK(steps <= 300);
}

TEST_CASE("training: tnt_cifar memorises one batch of 16 images within 300 steps") {
  const int steps = steps_to_memorise("tnt_cifar", 300);
  MESSAGE("tnt_cifar reached 100% training accuracy after " << steps << " steps");
  CHECK(steps <= 300);
}

TEST_CASE("training: one optimizer step changes every parameter of both presets") {
  for (const std::string preset : {"vit_cifar", "tnt_cifar"}) {
    CAPTURE(preset);
    manual_seed(1);
    const auto model = models::create_model(models::preset(preset));
    std::vector<std::vector<double>> before;
    for (const auto& [name, p] : model->named_parameters()) before.push_back(p.to_vector());
    nn::AdamW optimizer(nn::weight_decay_groups(*model, 0.05), 1e-3);
    const Tensor images = randn({4, 3, 32, 32});
    cross_entropy(model->forward(images), Tensor::from_indices({0, 1, 2, 3}, {4})).backward();
    optimizer.step();
    size_t i = 0;
    for (const auto& [name, p] : model->named_parameters()) {
      CAPTURE(name);
      const std::vector<double> after = p.to_vector();
      size_t changed = 0;
      for (size_t j = 0; j < after.size(); ++j) changed += after[j] != before[i][j];
      // AdamW's first step moves every element with a nonzero gradient by ~lr. Not quite every element: the
      // key bias's gradient is zero in exact arithmetic (adding b to every key adds q.b to a whole softmax
      // row, which the softmax ignores), so rounding decides whether a few of its elements move.
      CHECK(changed > 0);
      if (name.find("qkv.bias") == std::string::npos) CHECK(changed == after.size());
      ++i;
    }
  }
}

TEST_CASE("training: a step of both presets gives the same bits on 1 and on 2 threads") {
  // Every kernel splits work between threads without changing any output's order of summation (GEMMs in
  // tiles fixed by their shapes, reductions in fixed chunks), and DropPath's masks come from counters, not
  // from a thread's position in a stream. Batch 16 is large enough that the GEMMs tile: vit_cifar's linears
  // run over 16 * 65 = 1040 rows, tnt_cifar's pixel linears over 16 * 64 * 16 = 16384.
  for (const std::string preset : {"vit_cifar", "tnt_cifar"}) {
    CAPTURE(preset);
    auto step = [&] {
      manual_seed(3);
      const auto model = models::create_model(models::preset(preset));  // drop_path_rate 0.1
      nn::AdamW optimizer(nn::weight_decay_groups(*model, 0.05), 1e-3);
      Generator data(7);
      const Tensor images = randn({16, 3, 32, 32}, DType::f32, data);  // (B, C, H, W)
      std::vector<int64_t> labels(16);
      for (int i = 0; i < 16; ++i) labels[i] = i % 10;
      cross_entropy(model->forward(images), Tensor::from_indices(labels, {16}), 0.1).backward();
      std::vector<Tensor> params;
      for (const auto& [name, p] : model->named_parameters()) params.push_back(p);
      nn::clip_grad_norm(params, 1.0);
      optimizer.step();
      std::vector<std::pair<std::string, std::vector<double>>> after;
      for (const auto& [name, p] : model->named_parameters()) after.emplace_back(name, p.to_vector());
      return after;
    };
    const auto one = testing::with_threads(1, step), two = testing::with_threads(2, step);
    REQUIRE(one.size() == two.size());
    for (size_t i = 0; i < one.size(); ++i) {
      CAPTURE(one[i].first);
      CHECK(one[i].second == two[i].second);
    }
  }
}

TEST_CASE("training: under bf16 matmuls on the CPU, a step of both presets follows float32's, on any thread count") {
  if (best_bf16_kernel() == Bf16Kernel::none) {
    MESSAGE("this CPU has neither AVX512-BF16 nor AMX: no bf16 training step to check");
    return;
  }
  for (const std::string preset : {"vit_cifar", "tnt_cifar"}) {
    CAPTURE(preset);
    // The loss and every parameter's gradient of one batch of 16, from the same weights and DropPath masks.
    auto gradients = [&] {
      manual_seed(3);
      const auto model = models::create_model(models::preset(preset));  // drop_path_rate 0.1
      Generator data(7);
      const Tensor images = randn({16, 3, 32, 32}, DType::f32, data);  // (B, C, H, W)
      std::vector<int64_t> labels(16);
      for (int i = 0; i < 16; ++i) labels[i] = i % 10;
      const Tensor loss = cross_entropy(model->forward(images), Tensor::from_indices(labels, {16}), 0.1);
      loss.backward();
      std::vector<std::vector<double>> result = {{loss.item()}};
      for (const auto& [name, p] : model->named_parameters()) result.push_back(p.grad().to_vector());
      return result;
    };
    const auto fp32 = gradients();
    auto bf16 = [&] { return testing::with_cpu_matmul_precision(MatmulPrecision::bf16, gradients); };
    const auto one = testing::with_threads(1, bf16), two = testing::with_threads(2, bf16);
    CHECK(one == two);
    // Inputs rounded to 8 bits of mantissa (relative error <= 2^-9 each) move the loss by well under 1%, and
    // leave each gradient pointing the same way: cosine similarity above 0.99 with float32's.
    CHECK(std::abs(one[0][0] - fp32[0][0]) <= 1e-2 * fp32[0][0]);
    int64_t turned = 0;
    double lowest = 1;
    for (size_t i = 1; i < fp32.size(); ++i) {
      double dot = 0, norm32 = 0, norm16 = 0;
      for (size_t j = 0; j < fp32[i].size(); ++j) {
        dot += fp32[i][j] * one[i][j];
        norm32 += fp32[i][j] * fp32[i][j];
        norm16 += one[i][j] * one[i][j];
      }
      if (norm32 < 1e-20) continue;  // the key bias: zero in exact arithmetic, rounding noise either way
      const double cosine = dot / std::sqrt(norm32 * norm16);
      lowest = std::min(lowest, cosine);
      turned += !(cosine > 0.99);
    }
    MESSAGE(preset << ": loss " << fp32[0][0] << " in float32, " << one[0][0] << " with bf16 matmuls; lowest gradient cosine " << lowest);
    CHECK(turned == 0);
  }
}

TEST_CASE("training: Dropout and DropPath do nothing in eval mode") {
  models::ModelConfig config = models::preset("vit_cifar");
  config.drop_rate = 0.5;
  config.drop_path_rate = 0.5;
  const auto model = models::create_model(config);
  const Tensor images = randn({2, 3, 32, 32});
  NoGradGuard no_grad;
  model->eval();
  const std::vector<double> first = model->forward(images).to_vector();
  CHECK(model->forward(images).to_vector() == first);  // no randomness left
  model->train();
  CHECK(model->forward(images).to_vector() != first);  // but there is in training mode
  nn::Dropout dropout(0.9);
  nn::DropPath drop_path(0.9);
  dropout.eval();
  drop_path.eval();
  CHECK(dropout.forward(images).storage() == images.storage());
  CHECK(drop_path.forward(images).storage() == images.storage());
}

TEST_CASE("training: DropPath drops whole samples and rates rise linearly over blocks") {
  nn::DropPath drop_path(0.5);
  const Tensor x = Tensor::ones({400, 3, 5});
  const Tensor y = drop_path.forward(x);
  int kept = 0;
  for (int64_t b = 0; b < 400; ++b) {
    const Tensor sample = y.slice(0, b, b + 1);
    const double first = sample.at({0, 0, 0});
    CHECK((first == 0.0 || first == 2.0));  // dropped, or kept and scaled by 1 / (1 - p)
    CHECK(max(sample).item() == first);
    CHECK(-max(neg(sample)).item() == first);
    kept += first != 0.0;
  }
  CHECK(kept > 150);  // Binomial(400, 0.5): 200 +- 10
  CHECK(kept < 250);
  const std::vector<double> rates = nn::drop_path_rates(0.1, 5);
  CHECK(rates.front() == 0.0);
  CHECK(rates[2] == doctest::Approx(0.05));
  CHECK(rates.back() == doctest::Approx(0.1));
}

TEST_CASE("training: initialisation follows timm") {
  manual_seed(2);
  models::VisionTransformer vit(models::preset("vit_small_patch16_224"));
  auto std_of = [](const Tensor& t) { return std::sqrt(mean(mul(t, t)).item() - std::pow(mean(t).item(), 2)); };
  CHECK(std_of(vit.cls_token) < 1e-5);  // normal(std 1e-6)
  CHECK(std_of(vit.blocks[0]->attn->qkv->weight) == doctest::Approx(0.02).epsilon(0.02));
  CHECK(std_of(vit.head->weight) == doctest::Approx(0.02).epsilon(0.05));
  CHECK(max(vit.blocks[0]->mlp->fc1->bias).item() == 0.0);
  CHECK(-max(neg(vit.norm->weight)).item() == 1.0);
  // The patch embedding keeps PyTorch's Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 3*16*16.
  CHECK(max(vit.patch_embed->proj->weight).item() <= 1.0 / std::sqrt(768.0));
  const auto tnt = models::create_model(models::preset("tnt_s_patch16_224"));
  for (const auto& [name, p] : tnt->named_parameters())
    if (name == "cls_token" || name == "pixel_pos") CHECK(std_of(p) == doctest::Approx(0.02).epsilon(0.2));
}
