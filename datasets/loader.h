// The data loader: shuffles with a seed per epoch, decodes and augments in background worker threads,
// and keeps `prefetch` batches ready so that training does not wait on data. A batch's content depends
// only on (seed, epoch, batch index), never on the number of workers or their timing.
#pragma once

#include <array>
#include <memory>

#include "autograd/tensor.h"
#include "datasets/augment.h"
#include "datasets/dataset.h"

namespace vt::data {

struct Normalization {
  std::vector<double> mean = {0.4914, 0.4822, 0.4465};  // CIFAR-10 training set, per channel
  std::vector<double> std = {0.2470, 0.2435, 0.2616};
};
// Whether a channel's (x / 255 - mean) / std stays within +-1e6 for pixels x in [0, 255] and its scale 1 / (255 std)
// is a nonzero float32. Image statistics give values within about +-5; a std of 1e-40 passes "std > 0" in double
// and makes every pixel infinite in float32, and one of 1e-20 overflows the model's first products.
bool normalization_in_range(double mean, double std);
// Per-channel mean and std of a dataset's images (in [0, 1]), for --normalize computed.
Normalization compute_normalization(const Dataset& dataset);

// One image as a normalised float32 batch of one, (1, C, H, W).
Tensor image_to_tensor(const Image& image, const Normalization& normalization);

struct Batch {
  Tensor images;                // (B, C, H, W) float32, normalised
  std::vector<int64_t> labels;  // (B)
  Tensor targets;               // (B, classes) soft targets when Mixup/CutMix mixed the batch, else undefined
};

struct LoaderOptions {
  int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;
  bool augment = false;         // apply `augment_config` (training) or not (evaluation)
  AugmentConfig augment_config;
  Normalization normalization;
  uint64_t seed = 0;
  int workers = 2;
  int prefetch = 4;             // batches decoded ahead
};

class DataLoader {
 public:
  DataLoader(const Dataset& dataset, LoaderOptions options);
  ~DataLoader();
  void start_epoch(int64_t epoch);  // reshuffles (seeded by seed and epoch) and starts the workers
  bool next(Batch& batch);          // false at the end of the epoch
  int64_t batches_per_epoch() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace vt::data
