// Data augmentation as timm trains: random crop with zero padding, horizontal flip, RandAugment or the CIFAR-10
// AutoAugment policy on 8-bit HWC images (the PIL operations re-implemented to PIL's exact integer results),
// random erasing and Mixup / CutMix on the normalised float batch. Every draw comes from an AugmentRng.
#include "datasets/augment.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numbers>
#include <set>
#include <string_view>
#include <vector>

#include "autograd/text.h"
#include "datasets/augment_ops.h"

// PIL's pixel arithmetic (Blend.c, Geometry.c) truncates float and double results to 8 bits, built without
// fused multiply-adds; a fused a + b * c rounds once instead of twice and can move a result that lies a hair
// below an integer onto it, so the file keeps separate multiplies and adds to match PIL pixel for pixel.
#pragma GCC optimize("fp-contract=off")

namespace vt::data {

// ---- the random stream ----

AugmentRng::AugmentRng(uint64_t seed, uint64_t epoch, uint64_t index)
    : key_(derive_key(derive_key(stream_key(seed, RandomStream::augment), epoch), index)) {}

AugmentRng AugmentRng::for_batch(uint64_t seed, uint64_t epoch, uint64_t batch) {
  return AugmentRng(derive_key(derive_key(stream_key(seed, RandomStream::batch_augment), epoch), batch));
}

uint64_t AugmentRng::next_bits() { return random_bits(key_, counter_++); }

double AugmentRng::uniform() { return static_cast<double>(next_bits() >> 11) * 0x1.0p-53; }

double AugmentRng::uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

int64_t AugmentRng::integer(int64_t lo, int64_t hi) {
  if (hi < lo) fail("AugmentRng::integer", "empty range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  const uint64_t range = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) + 1;  // 0: all 2^64 values
  if (range == 0) return static_cast<int64_t>(next_bits());
  // Rejecting the lowest (2^64 mod range) values leaves a multiple of `range` equally likely values, so the
  // remainder is exactly uniform (a bare modulo favours small results).
  const uint64_t threshold = (0 - range) % range;
  uint64_t bits = next_bits();
  while (bits < threshold) bits = next_bits();
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + bits % range);
}

bool AugmentRng::bernoulli(double p) { return uniform() < p; }

// Box-Muller; 1 - u lies in (0, 1], which keeps the logarithm finite.
static double standard_normal(AugmentRng& rng) {
  const double radius = std::sqrt(-2.0 * std::log(1.0 - rng.uniform()));
  return radius * std::cos(2.0 * std::numbers::pi * rng.uniform());
}

// The logarithm of a Gamma(shape, 1) draw by Marsaglia and Tsang's method (2000), exact for shape >= 1;
// smaller shapes use Gamma(a) = Gamma(a + 1) * U^(1/a). Logarithms, because for small shapes U^(1/a)
// underflows to 0 often enough to turn X / (X + Y) into 0 / 0.
static double log_gamma_draw(AugmentRng& rng, double shape) {
  if (shape < 1.0) return log_gamma_draw(rng, shape + 1.0) + std::log(1.0 - rng.uniform()) / shape;
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double x = standard_normal(rng);
    const double t = 1.0 + c * x;
    if (t <= 0.0) continue;
    const double v = t * t * t;
    const double u = 1.0 - rng.uniform();
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return std::log(d * v);
  }
}

double AugmentRng::beta(double alpha) {
  if (!(alpha > 0.0) || !std::isfinite(alpha)) fail("AugmentRng::beta", "alpha must be positive, got " + std::to_string(alpha));
  // Beta(a, a) = X / (X + Y) for independent X, Y ~ Gamma(a) = 1 / (1 + exp(log Y - log X)).
  const double log_x = log_gamma_draw(*this, alpha);
  const double log_y = log_gamma_draw(*this, alpha);
  return 1.0 / (1.0 + std::exp(log_y - log_x));
}

// ---- the spec grammar ----

namespace {

enum class AutoKind { none, rand_augment, autoaugment_cifar };

struct AutoPlan {
  AutoKind kind = AutoKind::none;
  int magnitude = 10;  // timm's RandAugment defaults: magnitude 10, 2 layers
  int layers = 2;
};

bool parse_int(std::string_view text, int& value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size() && !text.empty();
}

bool parse_double(std::string_view text, double& value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return error == std::errc() && end == text.data() + text.size() && !text.empty() && std::isfinite(value);
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  return text;
}

// Bounds on every parameter, so that no spec can ask for unbounded work: RandAugment layers per image, crop
// padding in pixels, and Mixup/CutMix alphas (below 1e-3 the Beta draw's logarithms reach -inf and 0/0).
constexpr int kMaxLayers = 16;
constexpr int kMaxCropPadding = 1024;
constexpr double kMinAlpha = 1e-3, kMaxAlpha = 1e3;

// "none", "autoaugment-cifar" or timm's "rand" followed by "-mM" (magnitude 0..10) and "-nN" (layers).
AutoPlan parse_auto(const std::string& spec, const char* op) {
  AutoPlan plan;
  if (spec == "none") return plan;
  if (spec == "autoaugment-cifar") {
    plan.kind = AutoKind::autoaugment_cifar;
    return plan;
  }
  const std::string_view text = spec;
  if (text.substr(0, 4) != "rand" || (text.size() > 4 && text[4] != '-'))
    fail(op, "unknown auto augmentation \"" + spec + "\" (expected rand-mM-nN, autoaugment-cifar or none)");
  plan.kind = AutoKind::rand_augment;
  if (text.size() == 4) return plan;  // bare "rand": timm's defaults
  bool seen_magnitude = false, seen_layers = false;
  for (size_t start = 5; start <= text.size();) {
    const size_t end = std::min(text.find('-', start), text.size());
    const std::string_view section = text.substr(start, end - start);
    const std::string where = " in \"" + spec + "\"";
    if (!section.empty() && section[0] == 'm' && !seen_magnitude) {
      if (!parse_int(section.substr(1), plan.magnitude) || plan.magnitude < 0 || plan.magnitude > 10)
        fail(op, "RandAugment magnitude must be an integer in [0, 10]" + where);
      seen_magnitude = true;
    } else if (!section.empty() && section[0] == 'n' && !seen_layers) {
      if (!parse_int(section.substr(1), plan.layers) || plan.layers < 0 || plan.layers > kMaxLayers)
        fail(op, "RandAugment layer count must be an integer in [0, " + std::to_string(kMaxLayers) + "]" + where);
      seen_layers = true;
    } else {
      fail(op, "unsupported RandAugment section \"" + std::string(section) + "\"" + where +
                   " (supported: mM and nN, each at most once)");
    }
    start = end + 1;
  }
  return plan;
}

}  // namespace

void parse_augment(AugmentConfig& config, const std::string& spec) {
  const char* op = "parse_augment";
  const std::string_view text = spec;
  size_t start = 0;
  std::set<std::string> keys;  // a key given twice kept its last value in silence
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    const std::string_view item = trim(text.substr(start, end - start));
    start = end + 1;
    if (item.empty()) {
      if (text.find_first_not_of(' ') == std::string_view::npos) return;  // the empty subset
      fail(op, "empty item in \"" + spec + "\"");
    }
    if (item == "none") {
      config = AugmentConfig();
      config.crop_padding = 0;
      config.horizontal_flip = false;
      config.auto_augment = "none";
      continue;
    }
    const size_t equals = item.find('=');
    if (equals == std::string_view::npos) fail(op, "expected key=value, got \"" + std::string(item) + "\" in \"" + spec + "\"");
    const std::string key(trim(item.substr(0, equals)));
    if (!keys.insert(key).second) fail(op, key + " is given twice in \"" + spec + "\"");
    const std::string_view value = trim(item.substr(equals + 1));
    const std::string bad = "bad value \"" + std::string(value) + "\" for " + key + " in \"" + spec + "\": ";
    double number = 0;
    if (key == "crop") {
      int padding = 0;
      if (!parse_int(value, padding) || padding < 0 || padding > kMaxCropPadding)
        fail(op, bad + "expected a padding in pixels in [0, " + std::to_string(kMaxCropPadding) + "]");
      config.crop_padding = padding;
    } else if (key == "flip") {
      if (value != "0" && value != "1") fail(op, bad + "expected 0 or 1");
      config.horizontal_flip = value == "1";
    } else if (key == "auto") {
      parse_auto(std::string(value), op);
      config.auto_augment = std::string(value);
    } else if (key == "mixup" || key == "cutmix") {
      if (!parse_double(value, number) || (number != 0 && !(number >= kMinAlpha && number <= kMaxAlpha)))
        fail(op, bad + "expected 0 (off) or an alpha in [0.001, 1000]");
      (key == "mixup" ? config.mixup_alpha : config.cutmix_alpha) = number;
    } else if (key == "mix_prob" || key == "erase") {
      if (!parse_double(value, number) || number < 0 || number > 1) fail(op, bad + "expected a probability in [0, 1]");
      (key == "mix_prob" ? config.mix_prob : config.erase_prob) = number;
    } else {
      fail(op, "unknown key \"" + key + "\" in \"" + spec + "\" (keys: crop, flip, auto, mixup, cutmix, mix_prob, erase; or none)");
    }
  }
}

std::string describe(const AugmentConfig& config) {
  return "crop=" + std::to_string(config.crop_padding) + ",flip=" + (config.horizontal_flip ? "1" : "0") +
         ",auto=" + config.auto_augment + ",mixup=" + shortest_text(config.mixup_alpha) +
         ",cutmix=" + shortest_text(config.cutmix_alpha) + ",mix_prob=" + shortest_text(config.mix_prob) +
         ",erase=" + shortest_text(config.erase_prob);
}

// ---- PIL's point operations (lookup tables, per channel) ----

static void check_image(const Image& image, const char* op) {
  if (image.channels != 1 && image.channels != 3)
    fail(op, "expects 1 or 3 channels, got " + std::to_string(image.channels));
  if (image.height <= 0 || image.width <= 0 ||
      image.pixels.size() != static_cast<size_t>(image.height) * image.width * image.channels)
    fail(op, "inconsistent image: " + std::to_string(image.height) + "x" + std::to_string(image.width) + "x" +
                 std::to_string(image.channels) + " with " + std::to_string(image.pixels.size()) + " pixels");
}

using Lut = std::array<uint8_t, 256>;
using Histogram = std::array<int64_t, 256>;

static std::vector<Histogram> channel_histograms(const Image& image) {
  std::vector<Histogram> histograms(image.channels, Histogram{});
  const size_t channels = image.channels;
  for (size_t i = 0; i < image.pixels.size(); i += channels)
    for (size_t c = 0; c < channels; ++c) ++histograms[c][image.pixels[i + c]];
  return histograms;
}

static Image apply_luts(const Image& image, const std::vector<Lut>& luts) {  // one table per channel
  Image out(image.height, image.width, image.channels);
  const size_t channels = image.channels;
  for (size_t i = 0; i < image.pixels.size(); i += channels)
    for (size_t c = 0; c < channels; ++c) out.pixels[i + c] = luts[c][image.pixels[i + c]];
  return out;
}

static Image apply_lut(const Image& image, const Lut& lut) {
  return apply_luts(image, std::vector<Lut>(image.channels, lut));
}

static Lut identity_lut() {
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i);
  return lut;
}

Image auto_contrast(const Image& image) {
  check_image(image, "auto_contrast");
  std::vector<Lut> luts;
  for (const Histogram& h : channel_histograms(image)) {
    int lo = 0, hi = 255;
    while (lo < 255 && h[lo] == 0) ++lo;
    while (hi > 0 && h[hi] == 0) --hi;
    if (hi <= lo) {
      luts.push_back(identity_lut());
      continue;
    }
    // ImageOps: ix * scale + offset in double, truncated toward zero by int(), then clipped.
    const double scale = 255.0 / (hi - lo);
    const double offset = -lo * scale;
    Lut lut;
    for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(std::clamp<int64_t>(static_cast<int64_t>(i * scale + offset), 0, 255));
    luts.push_back(lut);
  }
  return apply_luts(image, luts);
}

Image equalize(const Image& image) {
  check_image(image, "equalize");
  std::vector<Lut> luts;
  for (const Histogram& h : channel_histograms(image)) {
    // ImageOps: step = (pixel count - the count of the highest occupied level) // 255, and level i maps to
    // (step // 2 + the count of pixels below i) // step; PIL's point() clips the table to 255.
    int64_t total = 0, last = 0, levels = 0;
    for (int i = 0; i < 256; ++i)
      if (h[i] != 0) total += h[i], last = h[i], ++levels;
    const int64_t step = (total - last) / 255;
    if (levels <= 1 || step == 0) {
      luts.push_back(identity_lut());
      continue;
    }
    Lut lut;
    int64_t n = step / 2;
    for (int i = 0; i < 256; ++i) {
      lut[i] = static_cast<uint8_t>(std::min<int64_t>(n / step, 255));
      n += h[i];
    }
    luts.push_back(lut);
  }
  return apply_luts(image, luts);
}

Image invert(const Image& image) {
  check_image(image, "invert");
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(255 - i);
  return apply_lut(image, lut);
}

Image posterize(const Image& image, int bits) {
  check_image(image, "posterize");
  if (bits < 0) fail("posterize", "bits must be >= 0, got " + std::to_string(bits));
  if (bits >= 8) return image;
  const int mask = ~((1 << (8 - bits)) - 1);
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i & mask);
  return apply_lut(image, lut);
}

Image solarize(const Image& image, int threshold) {
  check_image(image, "solarize");
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i < threshold ? i : 255 - i);
  return apply_lut(image, lut);
}

Image solarize_add(const Image& image, int add, int threshold) {
  check_image(image, "solarize_add");
  Lut lut;
  for (int i = 0; i < 256; ++i) lut[i] = static_cast<uint8_t>(i < threshold ? std::clamp(i + add, 0, 255) : i);
  return apply_lut(image, lut);
}

// ---- ImageEnhance ----

// Image.blend(degenerate, image, factor): PIL passes the factor as a C float and computes
// in1 + alpha * (in2 - in1) in float, truncating (clipping to [0, 255] when extrapolating).
static Image blend(const Image& degenerate, const Image& image, double factor) {
  const float alpha = static_cast<float>(factor);
  Image out(image.height, image.width, image.channels);
  for (size_t i = 0; i < image.pixels.size(); ++i) {
    const int from = degenerate.pixels[i];
    const float value = static_cast<float>(from) + alpha * static_cast<float>(image.pixels[i] - from);
    out.pixels[i] = value <= 0.0f ? 0 : value >= 255.0f ? 255 : static_cast<uint8_t>(value);
  }
  return out;
}

// PIL's RGB -> L conversion: (299 R + 587 G + 114 B) / 1000 in 16-bit fixed point, rounded.
static uint8_t gray_level(const Image& image, size_t pixel) {
  if (image.channels == 1) return image.pixels[pixel];
  const uint8_t* rgb = &image.pixels[pixel * 3];
  return static_cast<uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
}

Image adjust_color(const Image& image, double factor) {
  check_image(image, "adjust_color");
  if (image.channels == 1) return image;  // the grayscale of a grayscale image is itself
  Image gray(image.height, image.width, image.channels);
  const size_t pixels = static_cast<size_t>(image.height) * image.width;
  for (size_t p = 0; p < pixels; ++p) {
    const uint8_t level = gray_level(image, p);
    for (int c = 0; c < 3; ++c) gray.pixels[p * 3 + c] = level;
  }
  return blend(gray, image, factor);
}

Image adjust_contrast(const Image& image, double factor) {
  check_image(image, "adjust_contrast");
  // ImageStat's mean of the L image (exact integer sum, one division), rounded half up by int(mean + 0.5).
  const size_t pixels = static_cast<size_t>(image.height) * image.width;
  int64_t sum = 0;
  for (size_t p = 0; p < pixels; ++p) sum += gray_level(image, p);
  const int mean = static_cast<int>(static_cast<double>(sum) / static_cast<double>(pixels) + 0.5);
  Image flat(image.height, image.width, image.channels);
  std::fill(flat.pixels.begin(), flat.pixels.end(), static_cast<uint8_t>(mean));
  return blend(flat, image, factor);
}

Image adjust_brightness(const Image& image, double factor) {
  check_image(image, "adjust_brightness");
  return blend(Image(image.height, image.width, image.channels), image, factor);
}

Image adjust_sharpness(const Image& image, double factor) {
  check_image(image, "adjust_sharpness");
  // ImageFilter.SMOOTH: kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, rounded; PIL copies the border pixels.
  // PIL sums the float kernel with +0.5 and truncates; the exact sum m / 13 is never within 1/26 of a
  // rounding boundary, so the integer form (2m + 13) / 26 gives the same levels.
  Image smooth = image;
  const int channels = image.channels;
  for (int y = 1; y < image.height - 1; ++y)
    for (int x = 1; x < image.width - 1; ++x)
      for (int c = 0; c < channels; ++c) {
        int m = 4 * image.at(y, x, c);
        for (int dy = -1; dy <= 1; ++dy)
          for (int dx = -1; dx <= 1; ++dx) m += image.at(y + dy, x + dx, c);
        smooth.at(y, x, c) = static_cast<uint8_t>((2 * m + 13) / 26);
      }
  return blend(smooth, image, factor);
}

// ---- Image.transform (Geometry.c's generic transform with its bilinear and bicubic filters) ----

// Keys' cubic with a = -1 through (v1, v2, v3, v4) at offset d from v2, in PIL's order of operations: with
// 8-bit inputs the coefficients are exact integers, with double inputs every step rounds as PIL's does.
template <class T>
static double cubic(T v1, T v2, T v3, T v4, double d) {
  const double p1 = v2;
  const double p2 = -v1 + v3;
  const double p3 = 2 * (v1 - v2) + v3 - v4;
  const double p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

// The samplers write all channels of the point (x + dx, y + dy), in pixel-centre coordinates (x, y the pixel
// at or before it, 0 <= dx, dy < 1), into `out`. Taps past the edge read the edge pixel (PIL clamps columns
// and repeats the last valid row, which is the same).
static void sample_bilinear(uint8_t* out, const Image& image, int x, int y, double dx, double dy) {
  const int x0 = std::clamp(x, 0, image.width - 1), x1 = std::clamp(x + 1, 0, image.width - 1);
  const int y0 = std::clamp(y, 0, image.height - 1), y1 = std::clamp(y + 1, 0, image.height - 1);
  for (int c = 0; c < image.channels; ++c) {
    const int a0 = image.at(y0, x0, c), b0 = image.at(y0, x1, c);
    const int a1 = image.at(y1, x0, c), b1 = image.at(y1, x1, c);
    double v1 = a0 + (b0 - a0) * dx;
    const double v2 = a1 + (b1 - a1) * dx;
    v1 = v1 + (v2 - v1) * dy;
    out[c] = static_cast<uint8_t>(v1);  // in [0, 255]: a convex mix of 8-bit values
  }
}

static void sample_bicubic(uint8_t* out, const Image& image, int x, int y, double dx, double dy) {
  int columns[4], rows[4];
  for (int k = 0; k < 4; ++k) {
    columns[k] = std::clamp(x - 1 + k, 0, image.width - 1);
    rows[k] = std::clamp(y - 1 + k, 0, image.height - 1);
  }
  for (int c = 0; c < image.channels; ++c) {
    double across[4];  // the cubic along each row, then down the column of results
    for (int k = 0; k < 4; ++k)
      across[k] = cubic<int>(image.at(rows[k], columns[0], c), image.at(rows[k], columns[1], c),
                             image.at(rows[k], columns[2], c), image.at(rows[k], columns[3], c), dx);
    const double v = cubic<double>(across[0], across[1], across[2], across[3], dy);
    out[c] = v <= 0.0 ? 0 : v >= 255.0 ? 255 : static_cast<uint8_t>(v);
  }
}

Image affine(const Image& image, const std::array<double, 6>& a, Resample resample, uint8_t fill) {
  check_image(image, "affine");
  Image out(image.height, image.width, image.channels);
  std::fill(out.pixels.begin(), out.pixels.end(), fill);
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x) {
      const double xin = x + 0.5, yin = y + 0.5;
      const double source_x = a[0] * xin + a[1] * yin + a[2];
      const double source_y = a[3] * xin + a[4] * yin + a[5];
      // A point outside the image keeps the fill; inside, pixel centres sit at +0.5.
      if (source_x < 0.0 || source_x >= image.width || source_y < 0.0 || source_y >= image.height) continue;
      const double centre_x = source_x - 0.5, centre_y = source_y - 0.5;
      const int cell_x = static_cast<int>(std::floor(centre_x)), cell_y = static_cast<int>(std::floor(centre_y));
      uint8_t* pixel = &out.at(y, x, 0);
      switch (resample) {
        case Resample::bilinear:
          sample_bilinear(pixel, image, cell_x, cell_y, centre_x - cell_x, centre_y - cell_y);
          break;
        case Resample::bicubic:
          sample_bicubic(pixel, image, cell_x, cell_y, centre_x - cell_x, centre_y - cell_y);
          break;
      }
    }
  return out;
}

// Python's round(value, 15), as PIL rounds the rotation matrix: correctly rounded to 15 decimals and back.
static double round_15_decimals(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.15f", value);
  return std::strtod(buffer, nullptr);
}

Image rotate(const Image& image, double degrees, Resample resample, uint8_t fill) {
  // Image.rotate without expand: the inverse rotation about the centre (w / 2, h / 2) as an affine map. The
  // angle is reduced like Python's `angle % 360.0` first, since cos and sin of 333 and -27 degrees differ in
  // the last bits.
  double angle = std::fmod(degrees, 360.0);
  if (angle < 0) angle += 360.0;
  const double radians = -(angle * (std::numbers::pi / 180.0));
  std::array<double, 6> m = {round_15_decimals(std::cos(radians)), round_15_decimals(std::sin(radians)), 0.0,
                             round_15_decimals(-std::sin(radians)), round_15_decimals(std::cos(radians)), 0.0};
  const double centre_x = image.width / 2.0, centre_y = image.height / 2.0;
  m[2] = m[0] * -centre_x + m[1] * -centre_y + m[2] + centre_x;
  m[5] = m[3] * -centre_x + m[4] * -centre_y + m[5] + centre_y;
  return affine(image, m, resample, fill);
}

// ---- timm's AugmentOp ----

const char* augment_op_name(AugmentOp op) {
  switch (op) {
    case AugmentOp::auto_contrast: return "AutoContrast";
    case AugmentOp::equalize: return "Equalize";
    case AugmentOp::invert: return "Invert";
    case AugmentOp::rotate: return "Rotate";
    case AugmentOp::posterize: return "Posterize";
    case AugmentOp::solarize: return "Solarize";
    case AugmentOp::solarize_add: return "SolarizeAdd";
    case AugmentOp::color: return "Color";
    case AugmentOp::contrast: return "Contrast";
    case AugmentOp::brightness: return "Brightness";
    case AugmentOp::sharpness: return "Sharpness";
    case AugmentOp::shear_x: return "ShearX";
    case AugmentOp::shear_y: return "ShearY";
    case AugmentOp::translate_x: return "TranslateXRel";
    case AugmentOp::translate_y: return "TranslateYRel";
    case AugmentOp::posterize_original: return "PosterizeOriginal";
  }
  return "?";
}

constexpr uint8_t kFill = 128;  // timm's _FILL, the fill colour of geometric ops without an img_mean

Image apply_augment_op(const Image& image, AugmentOp op, double magnitude, AugmentRng& rng) {
  // timm's level functions, written as timm computes them: level = magnitude / 10 scaled to the op's range.
  const double level = std::clamp(magnitude, 0.0, 10.0) / 10.0;
  auto random_sign = [&](double value) { return rng.uniform() > 0.5 ? -value : value; };
  auto random_resample = [&] { return rng.uniform() < 0.5 ? Resample::bilinear : Resample::bicubic; };
  switch (op) {
    case AugmentOp::auto_contrast: return auto_contrast(image);
    case AugmentOp::equalize: return equalize(image);
    case AugmentOp::invert: return invert(image);
    case AugmentOp::rotate: {
      const double degrees = random_sign(level * 30.0);
      return rotate(image, degrees, random_resample(), kFill);
    }
    case AugmentOp::posterize: return posterize(image, static_cast<int>(level * 4));
    case AugmentOp::posterize_original: return posterize(image, static_cast<int>(level * 4) + 4);
    case AugmentOp::solarize: return solarize(image, std::min(256, static_cast<int>(level * 256)));
    case AugmentOp::solarize_add: return solarize_add(image, std::min(128, static_cast<int>(level * 110)), 128);
    case AugmentOp::color: return adjust_color(image, level * 1.8 + 0.1);
    case AugmentOp::contrast: return adjust_contrast(image, level * 1.8 + 0.1);
    case AugmentOp::brightness: return adjust_brightness(image, level * 1.8 + 0.1);
    case AugmentOp::sharpness: return adjust_sharpness(image, level * 1.8 + 0.1);
    case AugmentOp::shear_x: {
      const double factor = random_sign(level * 0.3);
      return affine(image, {1, factor, 0, 0, 1, 0}, random_resample(), kFill);
    }
    case AugmentOp::shear_y: {
      const double factor = random_sign(level * 0.3);
      return affine(image, {1, 0, 0, factor, 1, 0}, random_resample(), kFill);
    }
    case AugmentOp::translate_x: {
      const double pixels = random_sign(level * 0.45) * image.width;
      return affine(image, {1, 0, pixels, 0, 1, 0}, random_resample(), kFill);
    }
    case AugmentOp::translate_y: {
      const double pixels = random_sign(level * 0.45) * image.height;
      return affine(image, {1, 0, 0, 0, 1, pixels}, random_resample(), kFill);
    }
  }
  fail("apply_augment_op", "unknown op");
}

// The reduced CIFAR-10 policy of Cubuk et al., "AutoAugment: Learning Augmentation Policies from Data" (CVPR
// 2019), appendix table, in the order torchvision's AutoAugmentPolicy.CIFAR10 lists it; timm has no CIFAR
// policy. Magnitudes 0..9 map through timm's level functions (level / 10 of the paper's ranges), as timm's
// own paper policy for ImageNet does: Posterize keeps 4..8 bits (PosterizeOriginal); TranslateX/Y move by up
// to 0.45 of the image (the paper's 150 of 331 pixels); ops without a magnitude ignore it.
const std::vector<SubPolicy>& autoaugment_cifar_policy() {
  using enum AugmentOp;
  static const std::vector<SubPolicy> policy = {
      {{{invert, 0.1, 0}, {contrast, 0.2, 6}}},
      {{{rotate, 0.7, 2}, {translate_x, 0.3, 9}}},
      {{{sharpness, 0.8, 1}, {sharpness, 0.9, 3}}},
      {{{shear_y, 0.5, 8}, {translate_y, 0.7, 9}}},
      {{{auto_contrast, 0.5, 0}, {equalize, 0.9, 0}}},
      {{{shear_y, 0.2, 7}, {posterize_original, 0.3, 7}}},
      {{{color, 0.4, 3}, {brightness, 0.6, 7}}},
      {{{sharpness, 0.3, 9}, {brightness, 0.7, 9}}},
      {{{equalize, 0.6, 0}, {equalize, 0.5, 0}}},
      {{{contrast, 0.6, 7}, {sharpness, 0.6, 5}}},
      {{{color, 0.7, 7}, {translate_x, 0.5, 8}}},
      {{{equalize, 0.3, 0}, {auto_contrast, 0.4, 0}}},
      {{{translate_y, 0.4, 3}, {sharpness, 0.2, 6}}},
      {{{brightness, 0.9, 6}, {color, 0.2, 8}}},
      {{{solarize, 0.5, 2}, {invert, 0.0, 0}}},
      {{{equalize, 0.2, 0}, {auto_contrast, 0.6, 0}}},
      {{{equalize, 0.2, 0}, {equalize, 0.6, 0}}},
      {{{color, 0.9, 9}, {equalize, 0.6, 0}}},
      {{{auto_contrast, 0.8, 0}, {solarize, 0.2, 8}}},
      {{{brightness, 0.1, 3}, {color, 0.7, 0}}},
      {{{solarize, 0.4, 5}, {auto_contrast, 0.9, 0}}},
      {{{translate_y, 0.9, 9}, {translate_y, 0.7, 9}}},
      {{{auto_contrast, 0.9, 0}, {solarize, 0.8, 3}}},
      {{{equalize, 0.8, 0}, {invert, 0.1, 0}}},
      {{{translate_y, 0.7, 9}, {auto_contrast, 0.9, 0}}},
  };
  return policy;
}

// ---- per-image augmentation ----

// torchvision's RandomCrop(size, padding): zero-pad every side, then crop the original size at a uniform offset.
static size_t pixel_offset(const Image& image, int y, int x) {
  return (static_cast<size_t>(y) * image.width + x) * image.channels;
}

// output(y, x) = image(y + top, x + left), 0 outside: each row is one contiguous run of the source row.
static Image random_crop(const Image& image, int padding, AugmentRng& rng) {
  const int top = static_cast<int>(rng.integer(0, 2 * padding)) - padding;
  const int left = static_cast<int>(rng.integer(0, 2 * padding)) - padding;
  Image out(image.height, image.width, image.channels);
  const int x_lo = std::max(0, -left), x_hi = std::min(image.width, image.width - left);  // columns with a source
  if (x_hi <= x_lo) return out;
  for (int y = std::max(0, -top); y < std::min(image.height, image.height - top); ++y)
    std::copy_n(&image.pixels[pixel_offset(image, y + top, x_lo + left)], static_cast<size_t>(x_hi - x_lo) * image.channels,
                &out.pixels[pixel_offset(out, y, x_lo)]);
  return out;
}

static Image mirror(const Image& image) {
  Image out(image.height, image.width, image.channels);
  for (int y = 0; y < image.height; ++y)
    for (int x = 0; x < image.width; ++x)
      std::copy_n(&image.pixels[pixel_offset(image, y, x)], image.channels, &out.pixels[pixel_offset(out, y, image.width - 1 - x)]);
  return out;
}

Image augment_image(const Image& image, const AugmentConfig& config, AugmentRng& rng) {
  check_image(image, "augment_image");
  if (config.crop_padding < 0) fail("augment_image", "crop_padding must be >= 0, got " + std::to_string(config.crop_padding));
  const AutoPlan plan = parse_auto(config.auto_augment, "augment_image");
  Image out = config.crop_padding > 0 ? random_crop(image, config.crop_padding, rng) : image;
  if (config.horizontal_flip && rng.bernoulli(0.5)) out = mirror(out);
  switch (plan.kind) {
    case AutoKind::none: break;
    case AutoKind::rand_augment:
      // timm's RandAugment: `layers` ops drawn uniformly with replacement, each applied with probability 0.5.
      for (int layer = 0; layer < plan.layers; ++layer) {
        const auto op = static_cast<AugmentOp>(rng.integer(0, rand_augment_op_count - 1));
        if (rng.uniform() > 0.5) continue;
        out = apply_augment_op(out, op, plan.magnitude, rng);
      }
      break;
    case AutoKind::autoaugment_cifar: {
      const std::vector<SubPolicy>& policy = autoaugment_cifar_policy();
      const SubPolicy& sub_policy = policy[rng.integer(0, static_cast<int64_t>(policy.size()) - 1)];
      for (const PolicyStep& step : sub_policy) {
        if (rng.uniform() > step.probability) continue;
        out = apply_augment_op(out, step.op, step.magnitude, rng);
      }
      break;
    }
  }
  return out;
}

// ---- random erasing ----

void random_erase(float* image, int channels, int height, int width, double probability, AugmentRng& rng) {
  if (!image || channels <= 0 || height <= 0 || width <= 0)
    fail("random_erase", "bad image (" + std::to_string(channels) + ", " + std::to_string(height) + ", " +
                             std::to_string(width) + ")");
  if (!(probability >= 0.0 && probability <= 1.0)) fail("random_erase", "probability must be in [0, 1]");
  // timm's RandomErasing(mode="pixel", min_area=0.02, max_area=1/3, min_aspect=0.3, max_count=1): up to 10
  // tries for a box of that area and log-uniform aspect ratio that fits inside the image.
  if (rng.uniform() > probability) return;
  const double area = static_cast<double>(height) * width;
  const double log_aspect_lo = std::log(0.3), log_aspect_hi = std::log(1.0 / 0.3);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = rng.uniform(0.02, 1.0 / 3.0) * area;
    const double aspect = std::exp(rng.uniform(log_aspect_lo, log_aspect_hi));
    // Python's round() rounds halves to even, as nearbyint does in the default rounding mode.
    const int h = static_cast<int>(std::nearbyint(std::sqrt(target_area * aspect)));
    const int w = static_cast<int>(std::nearbyint(std::sqrt(target_area / aspect)));
    if (w >= width || h >= height) continue;
    const int top = static_cast<int>(rng.integer(0, height - h));
    const int left = static_cast<int>(rng.integer(0, width - w));
    for (int c = 0; c < channels; ++c)
      for (int y = top; y < top + h; ++y)
        for (int x = left; x < left + w; ++x)
          image[(static_cast<size_t>(c) * height + y) * width + x] = static_cast<float>(standard_normal(rng));
    return;
  }
}

// ---- Mixup and CutMix ----

Tensor mix_batch(Tensor& images, const std::vector<int64_t>& labels, int64_t classes, const AugmentConfig& config,
                 AugmentRng& rng) {
  const char* op = "mix_batch";
  if (!images.defined()) fail(op, "undefined images");
  if (images.dim() != 4 || images.dtype() != DType::f32 || !images.is_contiguous())
    fail(op, "expects contiguous float32 images (B, C, H, W), got " + images.str());
  const int64_t batch = images.size(0), height = images.size(2), width = images.size(3);
  const int64_t plane = images.size(1) * height * width;  // one image
  if (static_cast<int64_t>(labels.size()) != batch)
    fail(op, std::to_string(labels.size()) + " labels for " + images.str() + " images");
  if (classes < 1) fail(op, "classes must be >= 1");
  for (int64_t label : labels)
    if (label < 0 || label >= classes) fail(op, "label " + std::to_string(label) + " outside [0, " + std::to_string(classes) + ")");
  if (config.mixup_alpha < 0 || config.cutmix_alpha < 0 || !(config.mix_prob >= 0 && config.mix_prob <= 1))
    fail(op, "bad config " + describe(config));
  switch (images.device()) {
    case Device::cpu: break;
    case Device::cuda:  // the loader mixes each batch on the host, before it is uploaded
      fail(op, "mixes batches on the CPU, before they are uploaded; got " + images.str() + " on cuda");
  }

  // timm's Mixup._params_per_batch: mix with mix_prob; with both on, CutMix with switch probability 0.5.
  const bool mixup_on = config.mixup_alpha > 0, cutmix_on = config.cutmix_alpha > 0;
  if (!mixup_on && !cutmix_on) return Tensor();
  if (!(rng.uniform() < config.mix_prob)) return Tensor();
  const bool use_cutmix = mixup_on && cutmix_on ? rng.uniform() < 0.5 : cutmix_on;
  double lam = rng.beta(use_cutmix ? config.cutmix_alpha : config.mixup_alpha);
  if (lam == 1.0) return Tensor();

  float* x = images.data<float>();  // (B, C, H, W)
  // Image i is mixed with image B-1-i (timm's x.flip(0)); both of a pair are written from the originals at
  // once, so the in-place update needs no copy. An odd batch's middle image pairs with itself.
  if (use_cutmix) {
    // timm's rand_bbox: a box of side sqrt(1 - lam) times the image's, centred uniformly, clipped to the image;
    // lam is then corrected to the box's exact area (correct_lam).
    const double ratio = std::sqrt(1.0 - lam);
    const int64_t cut_h = static_cast<int64_t>(height * ratio), cut_w = static_cast<int64_t>(width * ratio);
    const int64_t centre_y = rng.integer(0, height - 1), centre_x = rng.integer(0, width - 1);
    const int64_t y_lo = std::clamp<int64_t>(centre_y - cut_h / 2, 0, height);
    const int64_t y_hi = std::clamp<int64_t>(centre_y + (cut_h + 1) / 2, 0, height);
    const int64_t x_lo = std::clamp<int64_t>(centre_x - cut_w / 2, 0, width);
    const int64_t x_hi = std::clamp<int64_t>(centre_x + (cut_w + 1) / 2, 0, width);
    for (int64_t i = 0; i < batch / 2; ++i) {
      float* a = x + i * plane;
      float* b = x + (batch - 1 - i) * plane;
      for (int64_t c = 0; c < images.size(1); ++c)
        for (int64_t y = y_lo; y < y_hi; ++y)
          for (int64_t xx = x_lo; xx < x_hi; ++xx) std::swap(a[(c * height + y) * width + xx], b[(c * height + y) * width + xx]);
    }
    lam = 1.0 - static_cast<double>((y_hi - y_lo) * (x_hi - x_lo)) / static_cast<double>(height * width);
  } else {
    const float keep = static_cast<float>(lam), take = static_cast<float>(1.0 - lam);
    for (int64_t i = 0; i < batch / 2; ++i) {
      float* a = x + i * plane;
      float* b = x + (batch - 1 - i) * plane;
      for (int64_t k = 0; k < plane; ++k) {
        const float va = a[k], vb = b[k];
        a[k] = va * keep + vb * take;
        b[k] = vb * keep + va * take;
      }
    }
  }
  images.bump_version();

  // timm's mixup_target without smoothing: lam * onehot(y) + (1 - lam) * onehot(y.flip(0)).
  Tensor targets = Tensor::zeros({batch, classes});  // (B, classes)
  float* t = targets.data<float>();
  for (int64_t i = 0; i < batch; ++i) {
    t[i * classes + labels[i]] += static_cast<float>(lam);
    t[i * classes + labels[batch - 1 - i]] += static_cast<float>(1.0 - lam);
  }
  return targets;
}

}  // namespace vt::data
