// Data augmentation: the AugmentRng stream and Beta draws, the spec grammar, every RandAugment op against PIL's
// pixels (tests/reference/augment.h) and hand-derived values, timm's magnitude mapping, crop / flip geometry,
// RandAugment and AutoAugment composition, random erasing, and Mixup / CutMix images and targets.
#include <cmath>
#include <functional>
#include <set>

#include "datasets/augment.h"
#include "datasets/augment_ops.h"
#include "tests/helpers.h"
#include "tests/reference/augment.h"

using namespace vt;
using namespace vt::data;

namespace {

Image formula_image(int height, int width, int channels, const std::function<int(int, int, int)>& value) {
  Image image(height, width, channels);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c) image.at(y, x, c) = static_cast<uint8_t>(value(y, x, c));
  return image;
}

// The formula images of scripts/reference/augment.py.
// pattern[y, x, c] = (23 x + 41 y + 67 c + (7 x y) mod 29) mod 256
Image pattern(int height, int width, int channels) {
  return formula_image(height, width, channels, [](int y, int x, int c) { return (23 * x + 41 * y + 67 * c + (7 * x * y) % 29) % 256; });
}
// dull = 60 + (100 pattern) div 255, levels in [60, 160]
Image dull(int height, int width, int channels) {
  Image image = pattern(height, width, channels);
  for (uint8_t& v : image.pixels) v = static_cast<uint8_t>(60 + 100 * v / 255);
  return image;
}
// sparse[y, x, c] = (0, 7, 255)[(x + 2 y + c) mod 3]
Image sparse(int height, int width, int channels) {
  return formula_image(height, width, channels, [](int y, int x, int c) { return std::array{0, 7, 255}[(x + 2 * y + c) % 3]; });
}

void expect_pixels(const Image& got, const std::vector<uint8_t>& expected) {
  REQUIRE(got.pixels.size() == expected.size());
  size_t mismatches = 0, first = 0;
  for (size_t i = 0; i < expected.size(); ++i)
    if (got.pixels[i] != expected[i] && mismatches++ == 0) first = i;
  INFO(mismatches << " of " << expected.size() << " values differ; first at " << first << ": got "
                  << int(got.pixels[first]) << ", expected " << int(expected[first]));
  CHECK(mismatches == 0);
}

bool same(const Image& a, const Image& b) {
  return a.height == b.height && a.width == b.width && a.channels == b.channels && a.pixels == b.pixels;
}

AugmentConfig plain_config() {  // everything off; each test turns on what it checks
  AugmentConfig config;
  parse_augment(config, "none");
  return config;
}

}  // namespace

TEST_CASE("AugmentRng is a pure function of (seed, epoch, index)") {
  AugmentRng a(7, 3, 11), b(7, 3, 11), other_index(7, 3, 12), other_epoch(7, 4, 11), other_seed(8, 3, 11);
  std::vector<uint64_t> first;
  for (int i = 0; i < 8; ++i) first.push_back(a.next_bits());
  for (int i = 0; i < 8; ++i) CHECK(b.next_bits() == first[i]);
  CHECK(other_index.next_bits() != first[0]);
  CHECK(other_epoch.next_bits() != first[0]);
  CHECK(other_seed.next_bits() != first[0]);

  // integer(lo, hi) is inclusive at both ends and uniform: 6000 draws over 6 values, about 1000 each
  // (binomial sd = sqrt(6000 * 1/6 * 5/6) = 29).
  AugmentRng rng(1, 0, 0);
  std::vector<int> counts(6, 0);
  for (int i = 0; i < 6000; ++i) {
    const int64_t v = rng.integer(-2, 3);
    REQUIRE((v >= -2 && v <= 3));
    ++counts[v + 2];
  }
  for (int count : counts) CHECK(std::abs(count - 1000) < 150);
  CHECK(rng.integer(5, 5) == 5);
  CHECK_THROWS_WITH_AS(rng.integer(3, 2), doctest::Contains("empty range"), std::runtime_error);

  double sum = 0;
  int heads = 0;
  for (int i = 0; i < 10000; ++i) {
    const double u = rng.uniform();
    REQUIRE((u >= 0.0 && u < 1.0));
    sum += u;
    const double v = rng.uniform(-3.0, 5.0);
    REQUIRE((v >= -3.0 && v < 5.0));
    heads += rng.bernoulli(0.25);
  }
  CHECK(sum / 10000 == doctest::Approx(0.5).epsilon(0.02));  // mean of U(0, 1), sd of the mean 0.003
  CHECK(std::abs(heads - 2500) < 200);                        // sd = sqrt(10000 * 0.25 * 0.75) = 43
}

TEST_CASE("AugmentRng::beta has the moments of Beta(alpha, alpha)") {
  // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); a = 1 is U(0, 1) with variance 1/12.
  for (double alpha : {0.2, 1.0, 4.0}) {
    AugmentRng rng(5, 0, static_cast<uint64_t>(alpha * 10));
    const int n = 20000;
    double sum = 0, sum_squares = 0;
    for (int i = 0; i < n; ++i) {
      const double lam = rng.beta(alpha);
      REQUIRE((lam >= 0.0 && lam <= 1.0));
      sum += lam;
      sum_squares += lam * lam;
    }
    const double mean = sum / n, variance = sum_squares / n - mean * mean;
    INFO("alpha " << alpha << ": mean " << mean << ", variance " << variance);
    CHECK(std::abs(mean - 0.5) < 0.01);
    CHECK(variance == doctest::Approx(1.0 / (4.0 * (2.0 * alpha + 1.0))).epsilon(0.05));
  }
  AugmentRng rng(0, 0, 0);
  CHECK(rng.beta(0.01) >= 0.0);  // tiny shapes: both gammas underflow in linear space, not in logs
  CHECK_THROWS_WITH_AS(rng.beta(0.0), doctest::Contains("alpha must be positive"), std::runtime_error);
}

TEST_CASE("parse_augment reads the spec grammar and describe writes it back") {
  AugmentConfig config;
  parse_augment(config, "crop=2, flip=0,auto=rand-m7-n3,mixup=0.8,cutmix=1.0,mix_prob=0.5,erase=0.25");
  CHECK(config.crop_padding == 2);
  CHECK(!config.horizontal_flip);
  CHECK(config.auto_augment == "rand-m7-n3");
  CHECK(config.mixup_alpha == 0.8);
  CHECK(config.cutmix_alpha == 1.0);
  CHECK(config.mix_prob == 0.5);
  CHECK(config.erase_prob == 0.25);
  CHECK(describe(config) == "crop=2,flip=0,auto=rand-m7-n3,mixup=0.8,cutmix=1,mix_prob=0.5,erase=0.25");
  AugmentConfig round_trip;
  parse_augment(round_trip, describe(config));
  CHECK(describe(round_trip) == describe(config));

  // A subset changes only its keys; the empty spec changes nothing; "none" turns everything off.
  AugmentConfig defaults;
  parse_augment(defaults, "erase=0.5");
  CHECK(describe(defaults) == "crop=4,flip=1,auto=rand-m9-n2,mixup=0,cutmix=0,mix_prob=1,erase=0.5");
  parse_augment(defaults, "");
  CHECK(defaults.erase_prob == 0.5);
  parse_augment(config, "none");
  CHECK(describe(config) == "crop=0,flip=0,auto=none,mixup=0,cutmix=0,mix_prob=1,erase=0");
  parse_augment(config, "none,auto=autoaugment-cifar");
  CHECK(config.auto_augment == "autoaugment-cifar");
  parse_augment(config, "auto=rand");  // timm's defaults: magnitude 10, 2 layers
  CHECK(config.auto_augment == "rand");

  auto fails_with = [](const std::string& spec, const char* message) {
    AugmentConfig c;
    INFO(spec);
    CHECK_THROWS_WITH_AS(parse_augment(c, spec), doctest::Contains(message), std::runtime_error);
  };
  fails_with("crops=4", "unknown key \"crops\"");
  fails_with("crop", "expected key=value");
  fails_with("crop=-1", "bad value \"-1\" for crop");
  fails_with("crop=4.5", "bad value \"4.5\" for crop");
  fails_with("flip=2", "expected 0 or 1");
  fails_with("mixup=abc", "expected 0 (off) or an alpha in [0.001, 1000]");
  fails_with("cutmix=-1", "expected 0 (off) or an alpha in [0.001, 1000]");
  // Each bound below kept a spec from asking for unbounded work or a NaN target: a Beta(1e-320) draw is 0 / 0,
  // whose NaN loss was blamed on the learning rate; 2e9 RandAugment layers per image never finish; a crop
  // padding of 2e9 pixels overflows the padded size.
  fails_with("mixup=1e-320", "expected 0 (off) or an alpha in [0.001, 1000]");
  fails_with("cutmix=1e9", "expected 0 (off) or an alpha in [0.001, 1000]");
  fails_with("auto=rand-m9-n2000000000", "layer count must be an integer in [0, 16]");
  fails_with("crop=2000000000", "expected a padding in pixels in [0, 1024]");
  fails_with("mix_prob=1.5", "expected a probability in [0, 1]");
  fails_with("erase=nan", "expected a probability in [0, 1]");
  fails_with("crop=4,flip=1,crop=8", "crop is given twice in \"crop=4,flip=1,crop=8\"");  // kept 8 in silence
  fails_with("crop=4,,flip=1", "empty item");
  fails_with("auto=randaugment", "unknown auto augmentation");
  fails_with("auto=autoaugment", "unknown auto augmentation");
  fails_with("auto=rand-m11-n2", "magnitude must be an integer in [0, 10]");
  fails_with("auto=rand-m9-n-1", "layer count must be an integer in [0, 16]");
  fails_with("auto=rand-m9-", "unsupported RandAugment section \"\"");
  fails_with("auto=rand-m9-mstd0.5", "unsupported RandAugment section \"mstd0.5\"");
  fails_with("auto=rand-m9-m8", "unsupported RandAugment section \"m8\"");

  AugmentConfig bad_auto = plain_config();
  bad_auto.auto_augment = "rand-x";
  AugmentRng rng(0, 0, 0);
  CHECK_THROWS_WITH_AS(augment_image(pattern(4, 4, 3), bad_auto, rng), doctest::Contains("augment_image"), std::runtime_error);
  CHECK_THROWS_WITH_AS(augment_image(pattern(4, 4, 2), plain_config(), rng), doctest::Contains("1 or 3 channels"),
                       std::runtime_error);
}

TEST_CASE("point ops: hand-derived values") {
  const Image image = formula_image(1, 4, 1, [](int, int x, int) { return std::array{3, 50, 183, 250}[x]; });
  // invert: 255 - v
  CHECK(invert(image).pixels == std::vector<uint8_t>{252, 205, 72, 5});
  // posterize 3 bits: v & 0b11100000; 183 = 0b10110111 -> 0b10100000 = 160, 250 -> 224
  CHECK(posterize(image, 3).pixels == std::vector<uint8_t>{0, 32, 160, 224});
  CHECK(posterize(image, 8).pixels == image.pixels);
  // solarize 128: v < 128 ? v : 255 - v
  CHECK(solarize(image, 128).pixels == std::vector<uint8_t>{3, 50, 72, 5});
  CHECK(solarize(image, 256).pixels == image.pixels);
  // solarize_add(100, 128): v < 128 ? min(255, v + 100) : v
  CHECK(solarize_add(image, 100, 128).pixels == std::vector<uint8_t>{103, 150, 183, 250});
  // auto_contrast maps [3, 250] onto [0, 255]: scale 255/247, int(v * scale - 3 * scale)
  // 50 -> int(48.522) = 48, 183 -> int(185.830) = 185
  CHECK(auto_contrast(image).pixels == std::vector<uint8_t>{0, 48, 185, 255});
  // brightness 0.5: int(0.5 v); contrast 0 gives the mean gray level int(121.5 + 0.5) = 122 everywhere
  CHECK(adjust_brightness(image, 0.5).pixels == std::vector<uint8_t>{1, 25, 91, 125});
  CHECK(adjust_contrast(image, 0.0).pixels == std::vector<uint8_t>{122, 122, 122, 122});
  // color 0 gives PIL's gray level (299 R + 587 G + 114 B) / 1000: (200, 100, 50) -> 124.2 -> 124
  const Image rgb = formula_image(1, 1, 3, [](int, int, int c) { return std::array{200, 100, 50}[c]; });
  CHECK(adjust_color(rgb, 0.0).pixels == std::vector<uint8_t>{124, 124, 124});
  // sharpness 0 on a 3x3 image: the centre becomes (sum of the 9 + 4 centre) / 13, rounded, the borders stay;
  // for v[y][x] = 10 (3y + x) the sum is 360 and the centre 40: (360 + 4 * 40) / 13 = 40, the image itself.
  const Image ramp = formula_image(3, 3, 1, [](int y, int x, int) { return 10 * (3 * y + x); });
  CHECK(adjust_sharpness(ramp, 0.0).pixels == ramp.pixels);
  const Image spike = formula_image(3, 3, 1, [](int y, int x, int) { return y == 1 && x == 1 ? 130 : 0; });
  // (5 * 130) / 13 = 50 in the centre; factor 2 extrapolates to 50 + 2 (130 - 50) = 210
  CHECK(adjust_sharpness(spike, 0.0).at(1, 1, 0) == 50);
  CHECK(adjust_sharpness(spike, 2.0).at(1, 1, 0) == 210);
  CHECK_THROWS_WITH_AS(posterize(image, -1), doctest::Contains("bits must be >= 0"), std::runtime_error);
}

TEST_CASE("point ops against PIL (ImageOps)") {
  using namespace vt::reference;
  expect_pixels(auto_contrast(dull(12, 14, 3)), augment_auto_contrast_dull_rgb);
  expect_pixels(auto_contrast(dull(12, 14, 1)), augment_auto_contrast_dull_gray);
  expect_pixels(auto_contrast(pattern(12, 14, 3)), augment_auto_contrast_pattern_rgb);
  expect_pixels(equalize(pattern(24, 30, 3)), augment_equalize_large_rgb);
  expect_pixels(equalize(dull(24, 30, 3)), augment_equalize_large_dull_rgb);
  expect_pixels(equalize(sparse(24, 30, 3)), augment_equalize_sparse_rgb);  // table entries above 255 clip
  expect_pixels(invert(pattern(12, 14, 3)), augment_invert_pattern_rgb);
  expect_pixels(posterize(pattern(12, 14, 3), 3), augment_posterize_3_pattern_rgb);
  expect_pixels(posterize(pattern(12, 14, 1), 0), augment_posterize_0_pattern_gray);
  expect_pixels(solarize(pattern(12, 14, 3), 100), augment_solarize_100_pattern_rgb);
  expect_pixels(solarize_add(pattern(12, 14, 3), 77, 128), augment_solarize_add_77_pattern_rgb);
}

TEST_CASE("enhance ops against PIL (ImageEnhance)") {
  using namespace vt::reference;
  const Image rgb = pattern(12, 14, 3), gray = pattern(12, 14, 1);
  expect_pixels(adjust_color(rgb, 0.1), augment_color_0_1_pattern_rgb);
  expect_pixels(adjust_color(rgb, 1.72), augment_color_1_72_pattern_rgb);
  expect_pixels(adjust_color(gray, 0.37), augment_color_0_37_pattern_gray);  // identity on one channel
  CHECK(same(adjust_color(gray, 0.37), gray));
  expect_pixels(adjust_contrast(rgb, 0.28), augment_contrast_0_28_pattern_rgb);
  expect_pixels(adjust_contrast(rgb, 1.72), augment_contrast_1_72_pattern_rgb);
  expect_pixels(adjust_contrast(dull(12, 14, 1), 1.9), augment_contrast_1_9_dull_gray);
  expect_pixels(adjust_brightness(rgb, 0.55), augment_brightness_0_55_pattern_rgb);
  expect_pixels(adjust_brightness(rgb, 1.54), augment_brightness_1_54_pattern_rgb);
  expect_pixels(adjust_sharpness(rgb, 0.1), augment_sharpness_0_1_pattern_rgb);
  expect_pixels(adjust_sharpness(rgb, 1.9), augment_sharpness_1_9_pattern_rgb);
  expect_pixels(adjust_sharpness(gray, 1.72), augment_sharpness_1_72_pattern_gray);
}

TEST_CASE("geometric ops against PIL (Image.transform, bilinear and bicubic)") {
  using namespace vt::reference;
  const Image rgb = pattern(12, 14, 3), gray = pattern(12, 14, 1);
  expect_pixels(rotate(rgb, 27, Resample::bilinear, 128), augment_rotate_27_bilinear_rgb);
  expect_pixels(rotate(rgb, -27, Resample::bicubic, 128), augment_rotate_m27_bicubic_rgb);
  expect_pixels(rotate(gray, 13.5, Resample::bilinear, 128), augment_rotate_13_5_bilinear_gray);
  expect_pixels(rotate(gray, -6, Resample::bicubic, 128), augment_rotate_m6_bicubic_gray);
  expect_pixels(rotate(rgb, 90, Resample::bilinear, 128), augment_rotate_90_bilinear_rgb);
  expect_pixels(rotate(rgb, 180, Resample::bicubic, 128), augment_rotate_180_bicubic_rgb);
  expect_pixels(rotate(gray, -90, Resample::bicubic, 128), augment_rotate_m90_bicubic_gray);
  expect_pixels(affine(rgb, {1, 0.27, 0, 0, 1, 0}, Resample::bilinear, 128), augment_shear_x_0_27_bilinear_rgb);
  expect_pixels(affine(rgb, {1, -0.27, 0, 0, 1, 0}, Resample::bicubic, 128), augment_shear_x_m0_27_bicubic_rgb);
  expect_pixels(affine(gray, {1, 0, 0, 0.21, 1, 0}, Resample::bicubic, 128), augment_shear_y_0_21_bicubic_gray);
  expect_pixels(affine(rgb, {1, 0, 0, -0.3, 1, 0}, Resample::bilinear, 128), augment_shear_y_m0_3_bilinear_rgb);
  // timm's translate_x_rel(pct) moves by pct * width pixels, translate_y_rel by pct * height
  expect_pixels(affine(rgb, {1, 0, 0.405 * 14, 0, 1, 0}, Resample::bilinear, 128), augment_translate_x_0_405_bilinear_rgb);
  expect_pixels(affine(rgb, {1, 0, -0.2 * 14, 0, 1, 0}, Resample::bicubic, 128), augment_translate_x_m0_2_bicubic_rgb);
  expect_pixels(affine(gray, {1, 0, 0, 0, 1, 0.36 * 12}, Resample::bicubic, 128), augment_translate_y_0_36_bicubic_gray);
  expect_pixels(affine(rgb, {1, 0, 0, 0, 1, -0.45 * 12}, Resample::bilinear, 128), augment_translate_y_m0_45_bilinear_rgb);
}

TEST_CASE("geometric ops: hand-derived values") {
  // v[y][x] = 3y + x on a 3x3 image; rotating 90 degrees counter-clockwise puts the right column on top:
  // [[0 1 2] [3 4 5] [6 7 8]] -> [[2 5 8] [1 4 7] [0 3 6]], exact because pixel centres land on centres.
  const Image grid = formula_image(3, 3, 1, [](int y, int x, int) { return 3 * y + x; });
  for (Resample resample : {Resample::bilinear, Resample::bicubic}) {
    CHECK(rotate(grid, 90, resample, 99).pixels == std::vector<uint8_t>{2, 5, 8, 1, 4, 7, 0, 3, 6});
    CHECK(rotate(grid, 0, resample, 99).pixels == grid.pixels);
  }
  // Translating by 2 whole pixels samples input column x + 2: no interpolation; the uncovered columns get the fill.
  const Image row = formula_image(1, 5, 1, [](int, int x, int) { return 10 + 10 * x; });
  CHECK(affine(row, {1, 0, 2, 0, 1, 0}, Resample::bilinear, 128).pixels == std::vector<uint8_t>{30, 40, 50, 128, 128});
  CHECK(affine(row, {1, 0, -1, 0, 1, 0}, Resample::bicubic, 7).pixels == std::vector<uint8_t>{7, 10, 20, 30, 40});
  // Half a pixel: the mean of neighbours, (10 + 20) / 2 = 15 ... and (40 + 50) / 2 = 45; the last centre reads
  // x = 5.0, outside.
  CHECK(affine(row, {1, 0, 0.5, 0, 1, 0}, Resample::bilinear, 0).pixels == std::vector<uint8_t>{15, 25, 35, 45, 0});
}

TEST_CASE("apply_augment_op maps magnitudes as timm's level functions do") {
  const Image image = pattern(12, 14, 3);
  AugmentRng rng(3, 0, 0);
  auto at = [&](AugmentOp op, double magnitude) { return apply_augment_op(image, op, magnitude, rng); };
  // Magnitude 9 of 10: posterize int(0.9 * 4) = 3 bits, solarize int(0.9 * 256) = 230, solarize_add
  // int(0.9 * 110) = 99, enhance factors 0.9 * 1.8 + 0.1 = 1.72; PosterizeOriginal int(0.9 * 4) + 4 = 7 bits.
  CHECK(same(at(AugmentOp::posterize, 9), posterize(image, 3)));
  CHECK(same(at(AugmentOp::posterize_original, 9), posterize(image, 7)));
  CHECK(same(at(AugmentOp::solarize, 9), solarize(image, 230)));
  CHECK(same(at(AugmentOp::solarize_add, 9), solarize_add(image, 99, 128)));
  CHECK(same(at(AugmentOp::color, 9), adjust_color(image, 1.72)));
  CHECK(same(at(AugmentOp::contrast, 9), adjust_contrast(image, 1.72)));
  CHECK(same(at(AugmentOp::brightness, 9), adjust_brightness(image, 1.72)));
  CHECK(same(at(AugmentOp::sharpness, 9), adjust_sharpness(image, 1.72)));
  CHECK(same(at(AugmentOp::auto_contrast, 9), auto_contrast(image)));
  CHECK(same(at(AugmentOp::equalize, 9), equalize(image)));
  CHECK(same(at(AugmentOp::invert, 9), invert(image)));
  CHECK(same(at(AugmentOp::solarize, 15), solarize(image, 256)));  // magnitudes clamp to 10

  // Signed ops: 0.9 * 30 = 27 degrees, shear 0.9 * 0.3 = 0.27, translate 0.9 * 0.45 = 0.405 of the side, each
  // with a random sign and random bilinear or bicubic sampling; 64 draws reach all four combinations.
  struct Signed {
    AugmentOp op;
    std::function<Image(double sign, Resample)> expected;
  };
  const std::vector<Signed> signed_ops = {
      {AugmentOp::rotate, [&](double s, Resample r) { return rotate(image, s * 27.0, r, 128); }},
      {AugmentOp::shear_x, [&](double s, Resample r) { return affine(image, {1, s * 0.27, 0, 0, 1, 0}, r, 128); }},
      {AugmentOp::shear_y, [&](double s, Resample r) { return affine(image, {1, 0, 0, s * 0.27, 1, 0}, r, 128); }},
      {AugmentOp::translate_x, [&](double s, Resample r) { return affine(image, {1, 0, s * 0.405 * 14, 0, 1, 0}, r, 128); }},
      {AugmentOp::translate_y, [&](double s, Resample r) { return affine(image, {1, 0, 0, 0, 1, s * 0.405 * 12}, r, 128); }},
  };
  for (const Signed& op : signed_ops) {
    INFO(std::string(augment_op_name(op.op)));
    std::vector<Image> outcomes;
    for (double sign : {1.0, -1.0})
      for (Resample resample : {Resample::bilinear, Resample::bicubic}) outcomes.push_back(op.expected(sign, resample));
    std::set<int> seen;
    for (int draw = 0; draw < 64; ++draw) {
      const Image got = at(op.op, 9);
      int match = -1;
      for (int k = 0; k < 4; ++k)
        if (same(got, outcomes[k])) match = k;
      REQUIRE(match >= 0);
      seen.insert(match);
    }
    CHECK(seen.size() == 4);
  }

  // Where timm's mapping has an identity: geometric ops at magnitude 0, SolarizeAdd at 0 (adds 0), Solarize at
  // 10 (threshold 256), the enhancers at 5 (factor 0.5 * 1.8 + 0.1 = 1). Posterize at 0 keeps 0 bits: black.
  for (AugmentOp op : {AugmentOp::rotate, AugmentOp::shear_x, AugmentOp::shear_y, AugmentOp::translate_x,
                       AugmentOp::translate_y, AugmentOp::solarize_add}) {
    INFO(std::string(augment_op_name(op)));
    CHECK(same(at(op, 0), image));
  }
  CHECK(same(at(AugmentOp::solarize, 10), image));
  for (AugmentOp op : {AugmentOp::color, AugmentOp::contrast, AugmentOp::brightness, AugmentOp::sharpness}) {
    INFO(std::string(augment_op_name(op)));
    CHECK(same(at(op, 5), image));
  }
  CHECK(same(at(AugmentOp::posterize, 0), Image(12, 14, 3)));
}

TEST_CASE("random crop pads with zeros and crops at one of (2p + 1)^2 offsets") {
  // Pixels 1 + (x + 6 y) * 3 + c (never 0); with padding 2 each output is the image shifted by (dy, dx) in
  // [-2, 2]^2: output(y, x) = image(y + dy, x + dx), 0 where that falls outside.
  const Image image = formula_image(5, 6, 3, [](int y, int x, int c) { return 1 + (x + 6 * y) * 3 + c; });
  AugmentConfig config = plain_config();
  config.crop_padding = 2;
  std::set<std::pair<int, int>> offsets;
  for (uint64_t index = 0; index < 300; ++index) {
    AugmentRng rng(9, 0, index);
    const Image out = augment_image(image, config, rng);
    int matches = 0;
    for (int dy = -2; dy <= 2; ++dy)
      for (int dx = -2; dx <= 2; ++dx) {
        const Image shifted = formula_image(5, 6, 3, [&](int y, int x, int c) {
          const int sy = y + dy, sx = x + dx;
          return sy < 0 || sy >= 5 || sx < 0 || sx >= 6 ? 0 : image.at(sy, sx, c);
        });
        if (same(out, shifted)) ++matches, offsets.insert({dy, dx});
      }
    REQUIRE(matches == 1);
  }
  CHECK(offsets.size() == 25);  // 300 draws miss one of 25 offsets with probability < 25 (24/25)^300 = 1e-4
}

TEST_CASE("horizontal flip mirrors columns with probability 1/2") {
  const Image ramp = formula_image(2, 5, 3, [](int y, int x, int c) { return 50 * x + 3 * y + c; });
  const Image mirrored = formula_image(2, 5, 3, [](int y, int x, int c) { return 50 * (4 - x) + 3 * y + c; });
  AugmentConfig config = plain_config();
  config.horizontal_flip = true;
  int flips = 0;
  for (uint64_t index = 0; index < 400; ++index) {
    AugmentRng rng(2, 1, index);
    const Image out = augment_image(ramp, config, rng);
    REQUIRE((same(out, ramp) || same(out, mirrored)));
    flips += same(out, mirrored);
  }
  CHECK(std::abs(flips - 200) < 40);  // binomial sd 10
  config.horizontal_flip = false;
  AugmentRng rng(2, 1, 0);
  CHECK(same(augment_image(ramp, config, rng), ramp));
}

TEST_CASE("augment_image is deterministic per (seed, epoch, index)") {
  const Image image = pattern(16, 16, 3);
  AugmentConfig config;  // crop 4, flip, rand-m9-n2
  std::vector<Image> outputs;
  for (uint64_t index = 0; index < 12; ++index) {
    AugmentRng first(4, 2, index), second(4, 2, index);
    outputs.push_back(augment_image(image, config, first));
    CHECK(same(outputs.back(), augment_image(image, config, second)));
  }
  int distinct_from_first = 0;
  for (size_t i = 1; i < outputs.size(); ++i) distinct_from_first += !same(outputs[i], outputs[0]);
  CHECK(distinct_from_first == 11);
  AugmentRng other_epoch(4, 3, 0);
  CHECK(!same(augment_image(image, config, other_epoch), outputs[0]));
}

TEST_CASE("RandAugment applies each chosen op with probability 1/2") {
  // rand-m9-n1 leaves the image unchanged when the op is skipped (1/2) or the chosen op is an identity on this
  // image at magnitude 9 (counted below; the geometric ops never are): P(unchanged) = 1/2 + 1/2 * k / 15.
  const Image image = pattern(16, 16, 3);
  int identities = 0;
  AugmentRng probe(0, 0, 0);
  for (int op = 0; op < rand_augment_op_count; ++op) identities += same(apply_augment_op(image, AugmentOp(op), 9, probe), image);
  AugmentConfig config = plain_config();
  config.auto_augment = "rand-m9-n1";
  const int n = 1500;
  int unchanged = 0;
  for (uint64_t index = 0; index < n; ++index) {
    AugmentRng rng(6, 0, index);
    unchanged += same(augment_image(image, config, rng), image);
  }
  const double expected = 0.5 + 0.5 * identities / 15.0;
  INFO(identities << " identity ops, " << unchanged << " unchanged of " << n);
  CHECK(std::abs(unchanged / double(n) - expected) < 0.04);  // sd 0.013

  config.auto_augment = "rand-m9-n0";
  AugmentRng rng(6, 0, 0);
  CHECK(same(augment_image(image, config, rng), image));
}

TEST_CASE("AutoAugment's CIFAR-10 policy") {
  const std::vector<SubPolicy>& policy = autoaugment_cifar_policy();
  REQUIRE(policy.size() == 25);
  // The paper's first and last sub-policies: (Invert 0.1, Contrast 0.2 @ 6), (TranslateY 0.7 @ 9, AutoContrast 0.9).
  CHECK(policy[0][0].op == AugmentOp::invert);
  CHECK(policy[0][1].op == AugmentOp::contrast);
  CHECK(policy[0][1].probability == 0.2);
  CHECK(policy[0][1].magnitude == 6);
  CHECK(policy[24][0].op == AugmentOp::translate_y);
  CHECK(policy[24][1].op == AugmentOp::auto_contrast);
  CHECK(policy[24][1].probability == 0.9);
  for (const SubPolicy& sub : policy)
    for (const PolicyStep& step : sub) CHECK((step.probability >= 0 && step.probability <= 1 && step.magnitude >= 0 && step.magnitude <= 9));

  // An output equals its input when no step of the chosen sub-policy ran or the steps that ran are identities
  // on it (timm's mapping has some: Sharpness at 5 is factor 1; Solarize at 8 thresholds at 204, above every
  // level of the dull image): P(unchanged) = mean over sub-policies of prod (1 - p [step changes the image]).
  const Image image = dull(24, 24, 3);
  AugmentRng probe(0, 0, 0);
  double expected_unchanged = 0;
  int identity_steps = 0;
  for (const SubPolicy& sub : policy) {
    double unchanged = 1.0 / 25;
    for (const PolicyStep& step : sub) {
      const bool changes = !same(apply_augment_op(image, step.op, step.magnitude, probe), image);
      identity_steps += !changes;
      if (changes) unchanged *= 1 - step.probability;
    }
    expected_unchanged += unchanged;
  }
  CHECK(identity_steps == 2);
  AugmentConfig config = plain_config();
  config.auto_augment = "autoaugment-cifar";
  const int n = 1500;
  int unchanged = 0;
  for (uint64_t index = 0; index < n; ++index) {
    AugmentRng rng(8, 0, index);
    unchanged += same(augment_image(image, config, rng), image);
  }
  INFO("expected " << expected_unchanged << ", got " << unchanged / double(n));
  CHECK(std::abs(unchanged / double(n) - expected_unchanged) < 0.04);  // sd 0.012
}

TEST_CASE("one-channel images go through every augmentation") {
  const Image gray = pattern(16, 16, 1);
  for (const char* spec : {"crop=4,flip=1,auto=rand-m9-n2", "crop=4,flip=1,auto=autoaugment-cifar", "auto=rand-m10-n4"}) {
    AugmentConfig config = plain_config();
    parse_augment(config, spec);
    int changed = 0;
    for (uint64_t index = 0; index < 60; ++index) {
      AugmentRng rng(1, 0, index);
      const Image out = augment_image(gray, config, rng);
      REQUIRE(out.channels == 1);
      REQUIRE(out.pixels.size() == gray.pixels.size());
      changed += !same(out, gray);
    }
    INFO(spec);
    CHECK(changed > 30);
  }
  // Each op on one channel agrees with the same op on a 3-channel image whose channels are equal (Color and
  // Contrast included: their gray level of (v, v, v) is v).
  const Image triple = formula_image(16, 16, 3, [&](int y, int x, int) { return gray.at(y, x, 0); });
  for (int op = 0; op < rand_augment_op_count; ++op) {
    AugmentRng a(0, 0, op), b(0, 0, op);
    const Image one = apply_augment_op(gray, AugmentOp(op), 9, a);
    const Image three = apply_augment_op(triple, AugmentOp(op), 9, b);
    INFO(std::string(augment_op_name(AugmentOp(op))));
    CHECK(same(one, formula_image(16, 16, 1, [&](int y, int x, int) { return three.at(y, x, 1); })));
  }
}

TEST_CASE("random_erase replaces one rectangle of 2% to 1/3 of the image with N(0, 1) noise") {
  const int channels = 3, height = 20, width = 24;
  int erased = 0;
  for (uint64_t index = 0; index < 200; ++index) {
    std::vector<float> image(channels * height * width, 7.0f);  // (C, H, W), 7 is far outside N(0, 1) draws here
    AugmentRng rng(3, 0, index);
    random_erase(image.data(), channels, height, width, 0.5, rng);
    int top = height, bottom = -1, left = width, right = -1, changed = 0;
    double sum = 0, sum_squares = 0;
    for (int c = 0; c < channels; ++c)
      for (int y = 0; y < height; ++y)
        for (int x = 0; x < width; ++x) {
          const float v = image[(c * height + y) * width + x];
          if (v == 7.0f) continue;
          ++changed, sum += v, sum_squares += v * v;
          top = std::min(top, y), bottom = std::max(bottom, y), left = std::min(left, x), right = std::max(right, x);
        }
    if (changed == 0) continue;
    ++erased;
    // Every pixel of the bounding box changed in every channel: the change is exactly one rectangle.
    const int h = bottom - top + 1, w = right - left + 1;
    REQUIRE(changed == channels * h * w);
    // Area: target in [0.02, 1/3] of 480 = [9.6, 160]; rounding each side by up to 1/2 adds at most
    // (h + w) / 2 + 1/4, and the aspect ratio in [0.3, 3.33] bounds h + w by 2.2 sqrt(area).
    const double area = h * w;
    CHECK(area >= 9.6 - 0.5 * (h + w) - 0.25);
    CHECK(area <= 160 + 0.5 * (h + w) + 0.25);
    CHECK((h < height && w < width));
    const double mean = sum / changed, variance = sum_squares / changed - mean * mean;
    CHECK(std::abs(mean) < 4.0 / std::sqrt(changed) + 1e-9);
    CHECK(std::abs(variance - 1.0) < 0.1 + 8.0 / std::sqrt(changed));
  }
  CHECK(std::abs(erased - 100) < 30);  // probability 0.5, binomial sd 7

  std::vector<float> untouched(3 * 4 * 4, 1.0f);
  AugmentRng rng(0, 0, 0);
  random_erase(untouched.data(), 3, 4, 4, 0.0, rng);
  CHECK(untouched == std::vector<float>(3 * 4 * 4, 1.0f));
  CHECK_THROWS_WITH_AS(random_erase(untouched.data(), 3, 4, 4, 1.5, rng), doctest::Contains("probability"), std::runtime_error);
}

namespace {

// x[b, c, y, x] = sin(0.37 i + 0.1) + 10 b over the flat index i: the images of a pair always differ.
Tensor batch_images(int64_t batch, int64_t channels, int64_t height, int64_t width) {
  const int64_t plane = channels * height * width;
  std::vector<double> values(batch * plane);
  for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(0.37 * double(i) + 0.1) + 10.0 * double(i / plane);
  return Tensor::from_vector(values, {batch, channels, height, width});
}

}  // namespace

TEST_CASE("Mixup: x = lam x + (1 - lam) x.flip(0), targets the same mix of one-hot labels") {
  const std::vector<int64_t> labels = {0, 3, 1, 4, 2};  // an odd batch: the middle image pairs with itself
  AugmentConfig config = plain_config();
  config.mixup_alpha = 0.8;
  int mixed = 0;
  for (uint64_t index = 0; index < 20; ++index) {
    Tensor images = batch_images(5, 2, 3, 4);  // (B, C, H, W)
    const std::vector<double> original = images.to_vector();
    AugmentRng rng(0, 0, index);
    const Tensor targets = mix_batch(images, labels, 6, config, rng);  // (B, classes)
    if (!targets.defined()) continue;
    ++mixed;
    REQUIRE(targets.shape() == Shape{5, 6});
    const double lam = targets.at({0, labels[0]});
    CHECK((lam > 0 && lam < 1));
    for (int64_t i = 0; i < 5; ++i) {
      double row_sum = 0;
      for (int64_t k = 0; k < 6; ++k) row_sum += targets.at({i, k});
      CHECK(row_sum == doctest::Approx(1.0).epsilon(1e-6));
      // lam on the own label, 1 - lam on the partner's (both on the middle image's own label)
      if (i != 2) {
        CHECK(targets.at({i, labels[i]}) == doctest::Approx(lam).epsilon(1e-6));
        CHECK(targets.at({i, labels[4 - i]}) == doctest::Approx(1 - lam).epsilon(1e-6));
      }
    }
    const std::vector<double> got = images.to_vector();
    const size_t plane = 2 * 3 * 4;
    for (size_t i = 0; i < 5; ++i)
      for (size_t k = 0; k < plane; ++k) {
        const double expected = lam * original[i * plane + k] + (1 - lam) * original[(4 - i) * plane + k];
        REQUIRE(std::abs(got[i * plane + k] - expected) < 1e-5);
      }
  }
  CHECK(mixed == 20);  // mix_prob 1: every batch is mixed
}

TEST_CASE("CutMix: a box from the flipped batch, lam corrected to the box area") {
  const std::vector<int64_t> labels = {2, 0, 1, 3};
  AugmentConfig config = plain_config();
  config.cutmix_alpha = 1.0;
  int boxes = 0;
  for (uint64_t index = 0; index < 20; ++index) {
    Tensor images = batch_images(4, 3, 8, 10);  // (B, C, H, W)
    const Tensor original = images.clone();
    AugmentRng rng(1, 0, index);
    const Tensor targets = mix_batch(images, labels, 4, config, rng);
    REQUIRE(targets.defined());
    // The changed pixels, located through image 0 channel 0, form the box [y_lo, y_hi) x [x_lo, x_hi).
    int y_lo = 8, y_hi = 0, x_lo = 10, x_hi = 0;
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 10; ++x)
        if (images.at({0, 0, y, x}) != original.at({0, 0, y, x}))
          y_lo = std::min(y_lo, y), y_hi = std::max(y_hi, y + 1), x_lo = std::min(x_lo, x), x_hi = std::max(x_hi, x + 1);
    const int area = y_hi > y_lo ? (y_hi - y_lo) * (x_hi - x_lo) : 0;
    boxes += area > 0;
    // Inside the box every image holds its partner's pixels; outside, its own.
    for (int64_t b = 0; b < 4; ++b)
      for (int64_t c = 0; c < 3; ++c)
        for (int y = 0; y < 8; ++y)
          for (int x = 0; x < 10; ++x) {
            const bool inside = y >= y_lo && y < y_hi && x >= x_lo && x < x_hi;
            REQUIRE(images.at({b, c, y, x}) == original.at({inside ? 3 - b : b, c, y, x}));
          }
    // lam = 1 - box area / image area, exactly as timm's correct_lam
    const double lam = 1.0 - area / 80.0;
    for (int64_t i = 0; i < 4; ++i) {
      CHECK(targets.at({i, labels[i]}) == doctest::Approx(lam).epsilon(1e-6));
      CHECK(targets.at({i, labels[3 - i]}) == doctest::Approx(1 - lam).epsilon(1e-6));
      double row_sum = 0;
      for (int64_t k = 0; k < 4; ++k) row_sum += targets.at({i, k});
      CHECK(row_sum == doctest::Approx(1.0).epsilon(1e-6));
    }
  }
  CHECK(boxes >= 15);  // lam ~ U(0, 1): boxes of zero size need 1 - lam < 1/80 or so
}

TEST_CASE("mix_batch: switching, mix_prob and misuse") {
  const std::vector<int64_t> labels = {0, 1};
  // With both on, each batch is Mixup (every pixel changes) or CutMix (a box changes), about half each.
  AugmentConfig config = plain_config();
  config.mixup_alpha = 1.0;
  config.cutmix_alpha = 1.0;
  int mixups = 0, cutmixes = 0;
  for (uint64_t index = 0; index < 200; ++index) {
    Tensor images = batch_images(2, 1, 6, 6);
    const Tensor original = images.clone();
    AugmentRng rng(2, 0, index);
    REQUIRE(mix_batch(images, labels, 2, config, rng).defined());
    int changed = 0;
    for (int64_t y = 0; y < 6; ++y)
      for (int64_t x = 0; x < 6; ++x) changed += images.at({0, 0, y, x}) != original.at({0, 0, y, x});
    (changed == 36 ? mixups : cutmixes) += 1;
  }
  CHECK(std::abs(mixups - 100) < 30);  // includes the rare CutMix box covering everything: lam < 1/36
  CHECK(mixups + cutmixes == 200);

  // mix_prob 0, or both alphas 0: never mixed, images untouched.
  for (const char* spec : {"mixup=1,mix_prob=0", "mixup=0,cutmix=0"}) {
    AugmentConfig off = plain_config();
    parse_augment(off, spec);
    Tensor images = batch_images(2, 1, 6, 6);
    const Tensor original = images.clone();
    AugmentRng rng(0, 0, 0);
    CHECK(!mix_batch(images, labels, 2, off, rng).defined());
    testing::expect_close(images, original, 0.0);
  }
  // mix_prob 0.3: about 30% of batches mixed.
  config.mix_prob = 0.3;
  int mixed = 0;
  for (uint64_t index = 0; index < 400; ++index) {
    Tensor images = batch_images(2, 1, 2, 2);
    AugmentRng rng(5, 0, index);
    mixed += mix_batch(images, labels, 2, config, rng).defined();
  }
  CHECK(std::abs(mixed - 120) < 30);  // binomial sd 9

  AugmentRng rng(0, 0, 0);
  Tensor images = batch_images(2, 1, 2, 2);
  CHECK_THROWS_WITH_AS(mix_batch(images, {0}, 2, config, rng), doctest::Contains("1 labels for"), std::runtime_error);
  CHECK_THROWS_WITH_AS(mix_batch(images, {0, 2}, 2, config, rng), doctest::Contains("label 2 outside [0, 2)"), std::runtime_error);
  Tensor flat = Tensor::zeros({2, 4});
  CHECK_THROWS_WITH_AS(mix_batch(flat, labels, 2, config, rng), doctest::Contains("(B, C, H, W)"), std::runtime_error);
  Tensor doubles = Tensor::zeros({2, 1, 2, 2}, DType::f64);
  CHECK_THROWS_WITH_AS(mix_batch(doubles, labels, 2, config, rng), doctest::Contains("float32"), std::runtime_error);
}
