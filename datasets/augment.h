// Data augmentation. Conventions: per-image transforms work on 8-bit HWC images and draw from an
// AugmentRng seeded per (seed, epoch, example index), so results do not depend on worker scheduling;
// batch transforms (Mixup, CutMix) and random erasing work on the normalised float batch (B, C, H, W).
#pragma once

#include <string>

#include "autograd/random.h"
#include "autograd/tensor.h"
#include "datasets/image.h"

namespace vt::data {

// A small counter-based random stream (vt::random_bits over (key, counter)). An example's stream is keyed by
// (seed, epoch, example index) in RandomStream::augment; a batch's (Mixup, CutMix) by (seed, epoch, batch index)
// in RandomStream::batch_augment.
class AugmentRng {
 public:
  AugmentRng(uint64_t seed, uint64_t epoch, uint64_t index);
  static AugmentRng for_batch(uint64_t seed, uint64_t epoch, uint64_t batch);
  uint64_t next_bits();
  double uniform();                   // [0, 1)
  double uniform(double lo, double hi);
  int64_t integer(int64_t lo, int64_t hi);  // [lo, hi] inclusive
  bool bernoulli(double p);
  double beta(double alpha);          // Beta(alpha, alpha), for Mixup / CutMix

 private:
  explicit AugmentRng(uint64_t key) : key_(key) {}
  uint64_t key_;
  uint64_t counter_ = 0;
};

struct AugmentConfig {
  int crop_padding = 4;             // random crop with zero padding; 0 turns it off
  bool horizontal_flip = true;
  std::string auto_augment = "rand-m9-n2";  // "rand-mM-nN" (RandAugment), "autoaugment-cifar", or "none"
  double mixup_alpha = 0.0;         // 0 turns Mixup off
  double cutmix_alpha = 0.0;        // 0 turns CutMix off; with both on, each batch picks one (timm's switch prob 0.5)
  double mix_prob = 1.0;            // probability that a batch is mixed at all
  double erase_prob = 0.0;          // random erasing probability per image (timm's RandomErasing, mode "pixel")
};

// Parses "crop=4,flip=1,auto=rand-m9-n2,mixup=0.8,cutmix=1.0,mix_prob=1,erase=0.25" (any subset) onto `config`,
// or "none" to turn everything off. Unknown keys fail loudly.
void parse_augment(AugmentConfig& config, const std::string& spec);
std::string describe(const AugmentConfig& config);

// Crop (with padding), flip and RandAugment / AutoAugment, as configured.
Image augment_image(const Image& image, const AugmentConfig& config, AugmentRng& rng);

// Random erasing on one normalised image (C, H, W) in place, drawing values from N(0, 1) per pixel.
void random_erase(float* image, int channels, int height, int width, double probability, AugmentRng& rng);

// Mixup or CutMix on a normalised batch: images (B, C, H, W) are mixed in place with the batch reversed
// (timm's pairing), and the returned soft targets (B, classes) are the matching mix of one-hot labels;
// each row sums to 1. Returns an undefined tensor when the batch is not mixed (then use the labels).
Tensor mix_batch(Tensor& images, const std::vector<int64_t>& labels, int64_t classes, const AugmentConfig& config,
                 AugmentRng& rng);

}  // namespace vt::data
