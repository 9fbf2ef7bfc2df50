// The image operations behind RandAugment and AutoAugment, computed as PIL 9.4 computes them (ImageOps,
// ImageEnhance, Image.transform), on 8-bit HWC images with 1 or 3 channels; declared here so tests reach each.
// Conventions: arguments are PIL's (degrees counter-clockwise, enhance factors, thresholds, bits); geometric
// ops sample at pixel centres like Image.transform and set pixels whose source falls outside to `fill`.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "datasets/augment.h"
#include "datasets/image.h"

namespace vt::data {

enum class Resample { bilinear, bicubic };  // PIL's BILINEAR and BICUBIC (a = -1 cubic) transform filters

Image auto_contrast(const Image& image);                         // ImageOps.autocontrast, per channel
Image equalize(const Image& image);                              // ImageOps.equalize, per channel
Image invert(const Image& image);                                // 255 - v
Image posterize(const Image& image, int bits);                   // keep the `bits` high bits (8 or more: copy)
Image solarize(const Image& image, int threshold);               // v < threshold ? v : 255 - v
Image solarize_add(const Image& image, int add, int threshold);  // v < threshold ? min(255, v + add) : v
// ImageEnhance: Image.blend(degenerate, image, factor) with the degenerate image of each enhancer.
Image adjust_color(const Image& image, double factor);       // degenerate: the image in grayscale
Image adjust_contrast(const Image& image, double factor);    // degenerate: the mean gray level everywhere
Image adjust_brightness(const Image& image, double factor);  // degenerate: black
Image adjust_sharpness(const Image& image, double factor);   // degenerate: 3x3 smooth filter, borders kept
// Image.transform(AFFINE, matrix): output pixel (x, y) samples the input at
// (a0 x' + a1 y' + a2, a3 x' + a4 y' + a5) with (x', y') = (x + 0.5, y + 0.5).
Image affine(const Image& image, const std::array<double, 6>& matrix, Resample resample, uint8_t fill);
Image rotate(const Image& image, double degrees, Resample resample, uint8_t fill);  // Image.rotate about the centre

// The operations of timm's RandAugment (_RAND_TRANSFORMS, in timm's order) and, after them, the Posterize
// variant of the AutoAugment paper's policies (timm's PosterizeOriginal).
enum class AugmentOp {
  auto_contrast, equalize, invert, rotate, posterize, solarize, solarize_add, color, contrast, brightness,
  sharpness, shear_x, shear_y, translate_x, translate_y, posterize_original
};
inline constexpr int rand_augment_op_count = 15;
const char* augment_op_name(AugmentOp op);

// timm's AugmentOp.__call__ once the op is chosen to run: maps `magnitude` (clamped to [0, 10]) to the op's
// argument with timm's level functions, negates signed arguments with probability 1/2, picks bilinear or
// bicubic sampling with probability 1/2 each (timm's default random interpolation) and fills with 128.
Image apply_augment_op(const Image& image, AugmentOp op, double magnitude, AugmentRng& rng);

// One step of an AutoAugment sub-policy: run `op` with `probability` at `magnitude` (0..9 in the paper).
struct PolicyStep {
  AugmentOp op;
  double probability;
  int magnitude;
};
using SubPolicy = std::array<PolicyStep, 2>;
// The 25 sub-policies that AutoAugment found on reduced CIFAR-10 (Cubuk et al. 2019).
const std::vector<SubPolicy>& autoaugment_cifar_policy();

}  // namespace vt::data
