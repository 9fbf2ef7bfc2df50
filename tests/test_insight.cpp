// The numbers behind vt viz (models/insight.h), position-embedding resampling (nn/embedding.h) and the vt viz
// commands: each checked against values worked out by hand, or against PyTorch where noted.
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <cmath>
#include <filesystem>

#include "models/insight.h"
#include "models/vit.h"
#include "nn/embedding.h"
#include "nn/safetensors.h"
#include "tests/helpers.h"
#include "train/lib/commands.h"

namespace fs = std::filesystem;

namespace vt {

TEST_CASE("insight: rollout of a hand-built two-layer attention is (A2 + I)/2 (A1 + I)/2") {
  // Layer 1 has two heads whose mean is all 0.5; layer 2 has one head.
  const Tensor layer1 = Tensor::from_vector({1.0, 0.0, 0.5, 0.5,    // head 0
                                             0.0, 1.0, 0.5, 0.5},   // head 1
                                            {1, 2, 2, 2}, DType::f64);
  const Tensor layer2 = Tensor::from_vector({0.2, 0.8, 0.6, 0.4}, {1, 1, 2, 2}, DType::f64);
  // Â1 = ([[.5, .5], [.5, .5]] + I) / 2 = [[.75, .25], [.25, .75]];  Â2 = ([[.2, .8], [.6, .4]] + I) / 2 = [[.6, .4], [.3, .7]]
  // Â2 Â1 = [[.6*.75 + .4*.25, .6*.25 + .4*.75], [.3*.75 + .7*.25, .3*.25 + .7*.75]] = [[.55, .45], [.4, .6]]
  // Rollout's rows, asked one query at a time: e_0^T R and e_1^T R.
  const std::vector<double> row0 = models::attention_rollout({layer1, layer2}, 0, {1.0, 0.0});
  const std::vector<double> row1 = models::attention_rollout({layer1, layer2}, 0, {0.0, 1.0});
  CHECK(row0[0] == doctest::Approx(0.55));
  CHECK(row0[1] == doctest::Approx(0.45));
  CHECK(row1[0] == doctest::Approx(0.40));
  CHECK(row1[1] == doctest::Approx(0.60));
  // One layer alone is its own (A + I) / 2.
  CHECK(models::attention_rollout({layer2}, 0, {0.0, 1.0})[0] == doctest::Approx(0.3));
}

TEST_CASE("insight: the class token's row, or the patch rows' mean, over the patch columns") {
  // 1 class token + 2 patches; rows are queries.
  const models::TokenMatrix map{3, {0.2, 0.6, 0.2,    // class token: patches get 0.6 and 0.2 -> 0.75, 0.25
                                    0.5, 0.1, 0.4,    // patch 0
                                    0.0, 0.3, 0.7}};  // patch 1
  const std::vector<double> cls = models::patch_part(models::attended(map, models::query_weights(3, 1, true)), 1);
  CHECK(cls[0] == doctest::Approx(0.75));
  CHECK(cls[1] == doctest::Approx(0.25));
  // The patch rows' mean over the patch columns: (0.1 + 0.3, 0.4 + 0.7) / 2 = (0.2, 0.55) -> / 0.75.
  const std::vector<double> mean = models::patch_part(models::attended(map, models::query_weights(3, 1, false)), 1);
  CHECK(mean[0] == doctest::Approx(0.2 / 0.75));
  CHECK(mean[1] == doctest::Approx(0.55 / 0.75));
  CHECK_THROWS_WITH_AS(models::query_weights(3, 0, true), doctest::Contains("class-token query"), std::runtime_error);
}

TEST_CASE("insight: mean attention distance of uniform attention on a 2x2 grid") {
  // 4 patches 4 px apart; each query spreads evenly over the 4 patch keys: distances 0, 4, 4, 4*sqrt(2), mean
  // (8 + 4 sqrt 2) / 4 = 3.414 px. The class token's column (weight 0.2) is dropped and the rest renormalised.
  const Tensor uniform = Tensor::full({1, 1, 5, 5}, 0.2, DType::f64);
  CHECK(models::mean_attention_distance(uniform, 1, 2, 4.0)[0] == doctest::Approx((8 + 4 * std::sqrt(2.0)) / 4));
  // Each query attending only to itself: distance 0. Head 1 attends only to patch 3 (bottom right): from patches
  // 0, 1, 2, 3 that is 4 sqrt 2, 4, 4, 0 -> mean (8 + 4 sqrt 2) / 4 as well, from a different pattern.
  std::vector<double> two_heads(2 * 5 * 5, 0.0);
  for (int q = 0; q < 5; ++q) {
    two_heads[q * 5 + q] = 1;
    two_heads[25 + q * 5 + 4] = 1;
  }
  const std::vector<double> d = models::mean_attention_distance(Tensor::from_vector(two_heads, {1, 2, 5, 5}, DType::f64), 1, 2, 4.0);
  CHECK(d[0] == doctest::Approx(0.0));
  CHECK(d[1] == doctest::Approx((8 + 4 * std::sqrt(2.0)) / 4));
  CHECK_THROWS_WITH_AS(models::mean_attention_distance(uniform, 1, 3, 4.0), doctest::Contains("is not 1 + 3^2 tokens"),
                       std::runtime_error);
}

TEST_CASE("insight: the sin-cos position embedding's similarity peaks at each patch and falls off along rows and columns") {
  models::ModelConfig config = models::preset("vit_cifar");
  config.pos_embed = models::PosEmbed::sincos_2d;
  const auto model = models::create_model(config);
  const int64_t grid = config.grid();  // 8
  const std::vector<double> similarity = models::cosine_similarity(models::patch_position_table(*model));  // (64, 64)
  for (int64_t p = 0; p < grid * grid; ++p) {
    CAPTURE(p);
    CHECK(similarity[p * grid * grid + p] == doctest::Approx(1.0));
    for (const auto& [di, dj] : {std::pair{0, 1}, {0, -1}, {1, 0}, {-1, 0}}) {
      double previous = 1.0;
      for (int64_t i = p / grid + di, j = p % grid + dj; i >= 0 && i < grid && j >= 0 && j < grid; i += di, j += dj) {
        const double s = similarity[p * grid * grid + i * grid + j];
        CHECK(s < previous);  // strictly lower one step further away
        previous = s;
      }
    }
  }
}

TEST_CASE("insight: principal components find the direction of largest variance, from the covariance or the Gram matrix") {
  // Rows t_i * u + s_i * v with var(t) >> var(s): the first component is u, the second v (signs: largest entry positive).
  for (const int64_t features : {3, 12}) {  // 12 features > 6 rows: the Gram path
    CAPTURE(features);
    std::vector<double> u(features, 0.0), v(features, 0.0), rows;
    u[0] = 0.6, u[1] = -0.8;  // unit, largest entry -0.8 -> reported as -u
    v[2] = 1.0;
    const std::vector<double> t = {-3, -2, -1, 1, 2, 3}, s = {1, -1, 0, 0, -1, 1};  // centred, t . s = 0
    for (size_t i = 0; i < t.size(); ++i)
      for (int64_t k = 0; k < features; ++k) rows.push_back(t[i] * u[k] + s[i] * v[k] + 7.0);  // + 7: centring matters
    const models::PrincipalComponents pcs = models::principal_components(Tensor::from_vector(rows, {6, features}, DType::f64), 2);
    REQUIRE(pcs.count == 2);
    for (int64_t k = 0; k < features; ++k) {
      CHECK(pcs.components[k] == doctest::Approx(-u[k]).epsilon(1e-9));
      CHECK(pcs.components[features + k] == doctest::Approx(v[k]).epsilon(1e-9));
    }
    // var(t) = 28 / 5, var(s) = 4 / 5; together all the variance there is.
    CHECK(pcs.variances[0] == doctest::Approx(28.0 / 5));
    CHECK(pcs.variances[1] == doctest::Approx(4.0 / 5));
    CHECK(pcs.total_variance == doctest::Approx(32.0 / 5));
    // 6 centred rows span at most 5 directions: asking for more gives 5, never rounding noise.
    CHECK(models::principal_components(Tensor::from_vector(rows, {6, features}, DType::f64), 100).count == std::min<int64_t>(5, features));
  }
  CHECK_THROWS_WITH_AS(models::principal_components(Tensor::full({4, 3}, NAN, DType::f64), 2), doctest::Contains("NaN or infinity"),
                       std::runtime_error);
}

TEST_CASE("insight: keeping the attention probabilities gives the fused op's output, and rows that sum to 1") {
  manual_seed(3);
  nn::Attention attention(8, 2, nn::QkvLayout::fused, true);
  const Tensor x = randn({2, 5, 8});
  const Tensor fused = attention.forward(x);
  attention.keep_probabilities = true;
  const Tensor explicit_softmax = attention.forward(x);
  testing::expect_close(explicit_softmax, fused, 1e-5);
  REQUIRE(attention.probabilities.shape() == Shape{2, 2, 5, 5});  // (B, H, N, N)
  testing::expect_close(sum(attention.probabilities, {3}), std::vector<double>(20, 1.0), 1e-5);
}

TEST_CASE("resampling: a constant stays constant, a ramp stays a ramp inside, and the weights are PyTorch's") {
  // A constant grid, up (8 -> 12) and down (8 -> 5): every output row's weights sum to 1.
  for (const int64_t size : {12, 5}) {
    const Tensor constant = nn::resample_axis(Tensor::full({8, 3}, 2.5, DType::f64), 0, size);
    testing::expect_close(constant, std::vector<double>(size * 3, 2.5), 1e-12);
  }
  // A ramp 0..7 up to 12 samples: output i sits at (i + 0.5) * 8/12 - 0.5 and Keys' cubic reproduces linear
  // functions exactly wherever all 4 taps fall inside; at the two ends taps are dropped and renormalised.
  std::vector<double> ramp(8);
  for (int i = 0; i < 8; ++i) ramp[i] = i;
  const std::vector<double> up = nn::resample_axis(Tensor::from_vector(ramp, {8}, DType::f64), 0, 12).to_vector();
  for (int i = 2; i < 10; ++i) CHECK(up[i] == doctest::Approx((i + 0.5) * 8 / 12 - 0.5));
  // PyTorch 2.15: F.interpolate(x.view(1, 1, 1, 4), size=(1, n), mode="bicubic", antialias=True) of x = [0, 1, 4, 9].
  const Tensor squares = Tensor::from_vector({0.0, 1.0, 4.0, 9.0}, {4}, DType::f64);
  testing::expect_close(nn::resample_axis(squares, 0, 6),
                        {-0.065789473684, 0.294117647059, 1.361111111111, 3.361111111111, 6.823529411765, 9.328947368421}, 1e-9);
  testing::expect_close(nn::resample_axis(squares, 0, 3), {0.075514874142, 2.359195402299, 7.935926773455}, 1e-9);
  // A table keeps its class-token row and resamples the patch rows as a grid.
  std::vector<double> table = {42.0};  // (1, 1 + 2*2, 1)
  for (double v : {1.0, 1.0, 1.0, 1.0}) table.push_back(v);
  testing::expect_close(nn::resample_position_table(Tensor::from_vector(table, {1, 5, 1}, DType::f64), 1, 3),
                        {42.0, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 1e-12);
  CHECK_THROWS_WITH_AS(nn::resample_position_table(Tensor::zeros({1, 6, 4}), 1, 3), doctest::Contains("expected (1, 1 + g*g, D)"),
                       std::runtime_error);
}

TEST_CASE("resampling: a checkpoint trained at 32 pixels loads at 48, its position embedding resampled") {
  testing::TemporaryDirectory directory("resample");
  for (const char* kind : {"learned", "learned_2d"})
    for (const char* preset : {"vit_cifar", "tnt_cifar"}) {
      CAPTURE(kind);
      CAPTURE(preset);
      models::ModelConfig config = models::preset(preset);
      models::apply_override(config, "pos_embed", kind);
      manual_seed(1);
      const auto model = models::create_model(config);
      const std::string file = directory.file(std::string(preset) + kind + ".safetensors");
      nn::save_weights(file, *model, models::config_metadata(config));

      config.image_size = 48;  // a 12 x 12 patch grid instead of 8 x 8
      const auto bigger = models::load_model(file, config);
      const Tensor table = models::patch_position_table(*bigger);  // (144, D)
      CHECK(table.shape() == Shape{144, config.dim});
      bigger->eval();
      NoGradGuard no_grad;
      CHECK(bigger->forward(Tensor::zeros({1, 3, 48, 48})).shape() == Shape{1, 10});
      // At its own size nothing is resampled: the same table as saved.
      config.image_size = 32;
      testing::expect_close(models::patch_position_table(*models::load_model(file, config)),
                            models::patch_position_table(*model), 0.0);
    }
  // The class token's row is kept as it was.
  models::ModelConfig config = models::preset("vit_cifar");
  manual_seed(2);
  const auto model = models::create_model(config);
  const std::string file = directory.file("cls.safetensors");
  nn::save_weights(file, *model, models::config_metadata(config));
  config.image_size = 16;
  const auto smaller = models::load_model(file, config);
  const auto* vit = dynamic_cast<const models::VisionTransformer*>(smaller.get());
  const auto* original = dynamic_cast<const models::VisionTransformer*>(model.get());
  testing::expect_close(slice(vit->pos_embed->table(), 1, 0, 1), slice(original->pos_embed->table(), 1, 0, 1), 0.0);
}

namespace {

int run_vt(std::vector<std::string> arguments) {
  arguments.insert(arguments.begin(), "vt");
  std::vector<const char*> argv;
  for (const std::string& argument : arguments) argv.push_back(argument.c_str());
  return run_cli(static_cast<int>(argv.size()), argv.data());
}

std::pair<int, int> png_size(const std::string& path) {
  const std::string png = testing::read_file(path);
  int width = 0, height = 0, channels = 0;
  REQUIRE(stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(png.data()), static_cast<int>(png.size()), &width,
                                &height, &channels) == 1);
  return {width, height};
}

}  // namespace

TEST_CASE("vt viz: each command writes a PNG of the expected size and its CSV, for ViT and TNT") {
  testing::TemporaryDirectory directory("viz");
  const auto file = [&](const std::string& name) { return directory.file(name); };
  REQUIRE(run_vt({"init", "--model", "vit_cifar", "--seed", "1", "--out", file("vit.safetensors")}) == 0);
  REQUIRE(run_vt({"init", "--model", "tnt_cifar", "--seed", "1", "--out", file("tnt.safetensors")}) == 0);
  // Images as vt predict takes them: any size and channel count, converted to the model's 32 x 32 RGB.
  std::vector<uint8_t> grey(50 * 40), rgba(20 * 20 * 4);
  for (size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<uint8_t>(i * 7);
  for (size_t i = 0; i < rgba.size(); ++i) rgba[i] = static_cast<uint8_t>(i * 13);
  REQUIRE(stbi_write_png(file("grey.png").c_str(), 50, 40, 1, grey.data(), 50));
  REQUIRE(stbi_write_png(file("rgba.png").c_str(), 20, 20, 4, rgba.data(), 80));
  // Test images for the distance: 3 classes of 4.
  for (const char* name : {"a", "b", "c"}) {
    fs::create_directories(directory.path / "data" / "test" / name);
    for (int i = 0; i < 4; ++i)
      REQUIRE(stbi_write_png((directory.path / "data" / "test" / name / (std::to_string(i) + ".png")).c_str(), 20, 20, 4,
                             rgba.data(), 80));
  }

  // attention: tiles of 128 px (32 scaled up) with 6 px gaps under 14 px captions, below a 26 px title.
  // ViT: image, mean, 3 heads, rollout = 6 columns: 6 + 6 * 134 = 810 wide; 2 images: 26 + 2 * 148 + 6 = 328 high.
  REQUIRE(run_vt({"viz", "attention", "--checkpoint", file("vit.safetensors"), "--rollout", "--out", file("va.png"),
                  file("grey.png"), file("rgba.png")}) == 0);
  CHECK(png_size(file("va.png")) == std::pair{810, 328});
  CHECK(fs::exists(file("va.csv")));
  // TNT adds the patch and its inner attention: mean and 2 inner heads -> 5 + 4 = 9 columns without rollout.
  REQUIRE(run_vt({"viz", "attention", "--checkpoint", file("tnt.safetensors"), "--layer", "2", "--patch", "9", "--out",
                  file("ta.png"), file("grey.png")}) == 0);
  CHECK(png_size(file("ta.png")) == std::pair{6 + 9 * 134, 26 + 148 + 6});

  // posembed: an 8 x 8 grid of 8 x 8 tiles of 12 px cells, 2 px apart: 8 * 98 = 784, + 5 gaps = 814 wide;
  // 26 title + 16 subtitle + 784 + 40 colour bar + 6 = 872 high. TNT adds its 4 x 4 pixel grid (24 px cells).
  REQUIRE(run_vt({"viz", "posembed", "--checkpoint", file("vit.safetensors"), "--out", file("vp.png")}) == 0);
  CHECK(png_size(file("vp.png")) == std::pair{814, 872});
  REQUIRE(run_vt({"viz", "posembed", "--checkpoint", file("tnt.safetensors"), "--out", file("tp.png")}) == 0);
  CHECK(png_size(file("tp.png")).first == 814 + 4 * 98 + 4 * 6);

  // filters: 28 components of vit_cifar's 4x4 RGB filters (48 features), 7 per row, 56 px tiles (zoom 14).
  REQUIRE(run_vt({"viz", "filters", "--checkpoint", file("vit.safetensors"), "--out", file("vf.png")}) == 0);
  CHECK(png_size(file("vf.png")).second == 26 + 4 * (14 + 56 + 6) + 6);

  // distance: the plot code's 480 x 360 panel, one per attention (TNT: outer and inner).
  REQUIRE(run_vt({"viz", "distance", "--checkpoint", file("vit.safetensors"), "--data", (directory.path / "data").string(),
                  "--images", "5", "--out", file("vd.png")}) == 0);
  CHECK(png_size(file("vd.png")) == std::pair{480, 360});
  REQUIRE(run_vt({"viz", "distance", "--checkpoint", file("tnt.safetensors"), "--data", (directory.path / "data").string(),
                  "--images", "3", "--out", file("td.png")}) == 0);
  CHECK(png_size(file("td.png")) == std::pair{960, 360});

  // Refused with a clear error (exit 1): weights of the other architecture, a layer the model lacks.
  CHECK(run_vt({"viz", "posembed", "--checkpoint", file("vit.safetensors"), "--model", "tnt_cifar", "--out", file("x.png")}) == 1);
  CHECK(run_vt({"viz", "attention", "--checkpoint", file("vit.safetensors"), "--layer", "7", "--out", file("x.png"),
                file("grey.png")}) == 1);
  CHECK(run_vt({"viz", "posembed", "--checkpoint", file("vit.safetensors"), "--out", file("x.png"), "--layer", "1"}) == 2);
  // --out must name a PNG (the CSV goes beside it); a grid past 32 x 32 is refused (vit_cifar at 160 px: 40 x 40).
  CHECK(run_vt({"viz", "posembed", "--checkpoint", file("vit.safetensors"), "--out", file("x.csv")}) == 1);
  CHECK(run_vt({"viz", "posembed", "--checkpoint", file("vit.safetensors"), "--img-size", "160", "--out", file("x.png")}) == 1);
  // Usage errors (exit 2): a mistyped picture (the closest is suggested), none at all.
  CHECK(run_vt({"viz", "atention", "--checkpoint", file("vit.safetensors"), "--out", file("x.png"), file("grey.png")}) == 2);
  CHECK(run_vt({"viz"}) == 2);
  CHECK_FALSE(fs::exists(file("x.png")));
}

}  // namespace vt

namespace vt {

TEST_CASE("vt train --img-size 48 --init-from: fine-tuning starts from a 32-pixel checkpoint, its table resampled") {
  testing::TemporaryDirectory directory("init_from");
  const std::vector<std::string> model = {"--model", "vit_cifar", "dim=32", "heads=2", "depth=1", "mlp_ratio=2"};
  const auto init = [&](const std::string& file, const std::string& classes) {
    std::vector<std::string> arguments = {"init", "--seed", "5", "--out", file, "num_classes=" + classes};
    arguments.insert(arguments.end(), model.begin(), model.end());
    REQUIRE(run_vt(arguments) == 0);
  };
  const std::string two = directory.file("two.safetensors"), ten = directory.file("ten.safetensors");
  init(two, "2");
  init(ten, "10");
  std::vector<uint8_t> pixels(20 * 20 * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 11);
  for (const char* split : {"train", "test"})
    for (const char* name : {"a", "b"}) {  // 2 classes of 4 images, 20 x 20, resized to 48 x 48
      fs::create_directories(directory.path / "data" / split / name);
      for (int i = 0; i < 4; ++i)
        REQUIRE(stbi_write_png((directory.path / "data" / split / name / (std::to_string(i) + ".png")).c_str(), 20, 20, 3,
                               pixels.data(), 60));
    }
  // One step at a learning rate of 1e-12 leaves the weights where they started, to within 1e-9.
  const auto train = [&](const std::string& from, const std::string& out) {
    std::vector<std::string> arguments = {"train", "--img-size", "48", "--init-from", from, "--data",
                                          (directory.path / "data").string(), "--out", directory.file(out), "--epochs", "1",
                                          "--batch", "8", "--workers", "1", "--lr", "1e-12", "--min-lr", "0", "--aug", "none"};
    arguments.insert(arguments.end(), model.begin(), model.end());
    return run_vt(arguments);
  };
  REQUIRE(train(two, "run") == 0);
  const nn::NamedTensors start = nn::load_safetensors(two).tensors;
  const nn::NamedTensors end = nn::load_safetensors(directory.file("run/last.safetensors")).tensors;
  REQUIRE(start.size() == end.size());
  for (size_t i = 0; i < start.size(); ++i) {
    CAPTURE(start[i].first);
    REQUIRE(start[i].first == end[i].first);
    // pos_embed: (1, 1 + 8*8, 32) at 32 pixels, (1, 1 + 12*12, 32) at 48: timm's bicubic resampling of the grid.
    const Tensor expected = start[i].first == "pos_embed" ? nn::resample_position_table(start[i].second, 1, 12) : start[i].second;
    testing::expect_close(end[i].second, expected, 1e-9);
  }
  // A checkpoint whose head has 10 outputs does not fit the data's 2 classes: refused (exit 1), nothing trained.
  CHECK(train(ten, "refused") == 1);
  CHECK_FALSE(fs::exists(directory.file("refused/last.safetensors")));
  // Nor one of 1 head where the run has 2: the same tensors, another model; its metadata says so.
  std::vector<std::string> one_head = {"init", "--seed", "5", "--out", directory.file("one_head.safetensors"), "num_classes=2",
                                       "--model", "vit_cifar", "dim=32", "heads=1", "depth=1", "mlp_ratio=2"};
  REQUIRE(run_vt(one_head) == 0);
  CHECK(train(directory.file("one_head.safetensors"), "heads") == 1);
  CHECK_FALSE(fs::exists(directory.file("heads/last.safetensors")));
}

}  // namespace vt
