// The data loader on synthetic in-memory datasets whose pixels encode the example index: each epoch is a
// permutation fixed by (seed, epoch), batches do not depend on the worker count, the last batch and
// drop_last, normalisation values and layout, compute_normalization, and clean stops and error propagation.
#include <algorithm>
#include <numeric>

#include "datasets/loader.h"
#include "tests/helpers.h"

using namespace vt;
using namespace vt::data;

namespace {

// Example i: pixel (0, 0, 0) = i % 256 and pixel (0, 1, 0) = i / 256 spell the index; the other pixels
// are (7 i + 3 y + x + 50 c) % 256; the label is i % classes. get() throws for `failing_index`.
class SyntheticDataset final : public Dataset {
 public:
  SyntheticDataset(int64_t size, int64_t classes, int channels, int side, int64_t failing_index = -1)
      : size_(size), channels_(channels), side_(side), failing_index_(failing_index) {
    for (int64_t c = 0; c < classes; ++c) classes_.push_back("class" + std::to_string(c));
  }
  int64_t size() const override { return size_; }
  Example get(int64_t index) const override {
    if (index == failing_index_) throw std::runtime_error("synthetic failure at " + std::to_string(index));
    Example example;
    example.image = Image(side_, side_, channels_);
    for (int y = 0; y < side_; ++y)
      for (int x = 0; x < side_; ++x)
        for (int c = 0; c < channels_; ++c) example.image.at(y, x, c) = static_cast<uint8_t>(7 * index + 3 * y + x + 50 * c);
    example.image.at(0, 0, 0) = static_cast<uint8_t>(index % 256);
    example.image.at(0, 1, 0) = static_cast<uint8_t>(index / 256);
    example.label = index % static_cast<int64_t>(classes_.size());
    return example;
  }
  const std::vector<std::string>& classes() const override { return classes_; }
  int channels() const override { return channels_; }
  int image_size() const override { return side_; }

 private:
  int64_t size_;
  int channels_, side_;
  int64_t failing_index_;
  std::vector<std::string> classes_;
};

// Every pixel of every image equals `values[c]` in channel c.
class ConstantDataset final : public Dataset {
 public:
  ConstantDataset(int64_t size, std::vector<std::vector<uint8_t>> values_per_image)
      : size_(size), values_(std::move(values_per_image)), classes_{"only"} {}
  int64_t size() const override { return size_; }
  Example get(int64_t index) const override {
    const std::vector<uint8_t>& values = values_[index % values_.size()];
    Example example;
    example.image = Image(4, 4, static_cast<int>(values.size()));
    for (size_t p = 0; p < example.image.pixels.size(); ++p) example.image.pixels[p] = values[p % values.size()];
    return example;
  }
  const std::vector<std::string>& classes() const override { return classes_; }
  int channels() const override { return static_cast<int>(values_[0].size()); }
  int image_size() const override { return 4; }

 private:
  int64_t size_;
  std::vector<std::vector<uint8_t>> values_;
  std::vector<std::string> classes_;
};

// Identity normalisation (mean 0, std 1) leaves x / 255, from which the tests read the example index back.
Normalization identity(int channels) {
  Normalization normalization;
  normalization.mean.assign(channels, 0.0);
  normalization.std.assign(channels, 1.0);
  return normalization;
}

LoaderOptions plain_options(int64_t batch_size, int workers) {
  LoaderOptions options;
  options.batch_size = batch_size;
  options.workers = workers;
  options.normalization = identity(3);
  return options;
}

struct Epoch {
  std::vector<int64_t> indices;      // example indices in batch order
  std::vector<int64_t> batch_sizes;
};

Epoch run_epoch(DataLoader& loader, int64_t epoch, int64_t classes = 10) {
  Epoch result;
  loader.start_epoch(epoch);
  Batch batch;
  while (loader.next(batch)) {
    const int64_t count = batch.images.size(0);
    const int64_t stride = batch.images.numel() / count;  // C * H * W
    const float* images = batch.images.data<float>();
    REQUIRE(static_cast<int64_t>(batch.labels.size()) == count);
    for (int64_t b = 0; b < count; ++b) {
      const int64_t index = std::lround(images[b * stride] * 255) + 256 * std::lround(images[b * stride + 1] * 255);
      CHECK(batch.labels[b] == index % classes);
      result.indices.push_back(index);
    }
    result.batch_sizes.push_back(count);
  }
  return result;
}

bool is_permutation_of_all(std::vector<int64_t> indices, int64_t size) {
  std::sort(indices.begin(), indices.end());
  std::vector<int64_t> all(size);
  std::iota(all.begin(), all.end(), int64_t{0});
  return indices == all;
}

}  // namespace

TEST_CASE("loader: every example once per epoch, in an order fixed by seed and epoch") {
  const SyntheticDataset dataset(300, 10, 3, 4);
  DataLoader loader(dataset, plain_options(32, 2));
  CHECK(loader.batches_per_epoch() == 10);  // ceil(300 / 32)
  const Epoch first = run_epoch(loader, 0);
  const Epoch second = run_epoch(loader, 1);
  CHECK(is_permutation_of_all(first.indices, 300));
  CHECK(is_permutation_of_all(second.indices, 300));
  CHECK(first.indices != second.indices);
  std::vector<int64_t> identity_order(300);
  std::iota(identity_order.begin(), identity_order.end(), int64_t{0});
  CHECK(first.indices != identity_order);

  DataLoader same_seed(dataset, plain_options(32, 3));
  CHECK(run_epoch(same_seed, 1).indices == second.indices);
  CHECK(run_epoch(same_seed, 0).indices == first.indices);
  LoaderOptions other_seed = plain_options(32, 2);
  other_seed.seed = 1;
  DataLoader reseeded(dataset, other_seed);
  CHECK(run_epoch(reseeded, 0).indices != first.indices);

  LoaderOptions in_order = plain_options(32, 2);
  in_order.shuffle = false;
  DataLoader sequential(dataset, in_order);
  CHECK(run_epoch(sequential, 5).indices == identity_order);
}

TEST_CASE("loader: the last partial batch, drop_last, and a dataset smaller than a batch") {
  const SyntheticDataset dataset(103, 10, 3, 4);
  DataLoader keep(dataset, plain_options(10, 2));
  CHECK(keep.batches_per_epoch() == 11);
  const Epoch kept = run_epoch(keep, 0);
  CHECK(kept.batch_sizes == std::vector<int64_t>{10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 3});
  CHECK(is_permutation_of_all(kept.indices, 103));

  LoaderOptions options = plain_options(10, 2);
  options.drop_last = true;
  DataLoader drop(dataset, options);
  CHECK(drop.batches_per_epoch() == 10);
  const Epoch dropped = run_epoch(drop, 0);
  CHECK(dropped.batch_sizes == std::vector<int64_t>(10, 10));
  // The same permutation, cut before the last 3 examples.
  CHECK(dropped.indices == std::vector<int64_t>(kept.indices.begin(), kept.indices.begin() + 100));

  const SyntheticDataset tiny(5, 10, 3, 4);
  DataLoader none(tiny, options);
  CHECK(none.batches_per_epoch() == 0);
  CHECK(run_epoch(none, 0).indices.empty());
}

TEST_CASE("loader: 0, 1 and 3 workers give identical batches, with augmentation") {
  const SyntheticDataset dataset(50, 4, 3, 8);
  LoaderOptions options;
  options.batch_size = 7;
  options.prefetch = 2;
  options.augment = true;
  options.augment_config.erase_prob = 0.5;
  options.augment_config.mixup_alpha = 0.8;
  options.augment_config.cutmix_alpha = 1.0;
  options.seed = 42;
  std::vector<std::vector<Batch>> runs;
  for (int workers : {0, 1, 3}) {
    options.workers = workers;
    DataLoader loader(dataset, options);
    loader.start_epoch(3);
    std::vector<Batch> batches;
    for (Batch batch; loader.next(batch);) batches.push_back(batch);
    runs.push_back(std::move(batches));
  }
  REQUIRE(runs[0].size() == 8);  // ceil(50 / 7)
  for (size_t run = 1; run < runs.size(); ++run)
    for (size_t b = 0; b < runs[0].size(); ++b) {
      INFO("run " << run << ", batch " << b);
      CHECK(runs[run][b].labels == runs[0][b].labels);
      CHECK(runs[run][b].images.to_vector() == runs[0][b].images.to_vector());
      REQUIRE(runs[run][b].targets.defined() == runs[0][b].targets.defined());
      if (runs[0][b].targets.defined()) CHECK(runs[run][b].targets.to_vector() == runs[0][b].targets.to_vector());
    }

  // Augmentation does change the images: the same epoch without it differs.
  options.augment = false;
  DataLoader plain(dataset, options);
  plain.start_epoch(3);
  bool any_difference = false;
  Batch batch;
  for (size_t b = 0; plain.next(batch); ++b) any_difference |= batch.images.to_vector() != runs[0][b].images.to_vector();
  CHECK(any_difference);
}

TEST_CASE("loader: images are (x / 255 - mean) / std in (B, C, H, W)") {
  const SyntheticDataset dataset(20, 10, 3, 4);
  LoaderOptions options;  // CIFAR-10's mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616)
  options.batch_size = 8;
  options.shuffle = false;
  DataLoader loader(dataset, options);
  loader.start_epoch(0);
  Batch batch;
  REQUIRE(loader.next(batch));
  REQUIRE(loader.next(batch));  // examples 8..15
  CHECK(batch.images.shape() == Shape{8, 3, 4, 4});
  CHECK(batch.images.dtype() == DType::f32);
  CHECK_FALSE(batch.targets.defined());
  // Example 10, pixel (y 2, x 3), channel 1: 7 * 10 + 3 * 2 + 3 + 50 = 129; (129 / 255 - 0.4822) / 0.2435 = 0.097258
  CHECK(batch.images.at({2, 1, 2, 3}) == doctest::Approx(0.0972581).epsilon(1e-5));
  // Example 10, pixel (y 1, x 2), channel 2: 70 + 3 + 2 + 100 = 175; (175 / 255 - 0.4465) / 0.2616 = 0.916569
  CHECK(batch.images.at({2, 2, 1, 2}) == doctest::Approx(0.9165692).epsilon(1e-5));
  CHECK(batch.labels[2] == 0);  // 10 % 10
}

TEST_CASE("loader: compute_normalization, per channel over every pixel") {
  // Constant channels 51, 204, 255 -> mean 51 / 255 = 0.2, 0.8, 1.0 and std 0.
  const Normalization constant = compute_normalization(ConstantDataset(10, {{51, 204, 255}}));
  REQUIRE(constant.mean.size() == 3);
  CHECK(constant.mean[0] == doctest::Approx(0.2).epsilon(1e-12));
  CHECK(constant.mean[1] == doctest::Approx(0.8).epsilon(1e-12));
  CHECK(constant.mean[2] == doctest::Approx(1.0).epsilon(1e-12));
  for (double s : constant.std) CHECK(s == 0.0);
  // Images alternately 0 and 255 (1,001 of them, 501 black): mean = 500 / 1001 and
  // std = sqrt(p (1 - p)) with p = 500 / 1001 (the population std, as over all CIFAR-10 pixels).
  const Normalization two_valued = compute_normalization(ConstantDataset(1001, {{0}, {255}}));
  const double p = 500.0 / 1001.0;
  CHECK(two_valued.mean[0] == doctest::Approx(p).epsilon(1e-12));
  CHECK(two_valued.std[0] == doctest::Approx(std::sqrt(p * (1 - p))).epsilon(1e-12));
  CHECK_THROWS_WITH_AS(compute_normalization(ConstantDataset(0, {{1}})), doctest::Contains("the dataset is empty"),
                       std::runtime_error);
}

TEST_CASE("loader: stops cleanly mid-epoch, restarts, and passes worker errors to next()") {
  const SyntheticDataset dataset(200, 10, 3, 4);
  LoaderOptions options = plain_options(3, 3);
  options.prefetch = 1;
  {
    DataLoader loader(dataset, options);
    Batch batch;
    CHECK_THROWS_WITH_AS(loader.next(batch), doctest::Contains("call start_epoch"), std::runtime_error);
    loader.start_epoch(0);
    REQUIRE(loader.next(batch));
    loader.start_epoch(0);  // abandon the epoch: the workers stop, and it starts over
    CHECK(run_epoch(loader, 0).indices.size() == 200);
    for (int64_t epoch = 1; epoch <= 20; ++epoch) CHECK(is_permutation_of_all(run_epoch(loader, epoch).indices, 200));
    loader.start_epoch(21);
    REQUIRE(loader.next(batch));
  }  // destroyed with the workers waiting on a full window

  const SyntheticDataset failing(40, 10, 3, 4, 17);
  LoaderOptions unshuffled = plain_options(4, 2);
  unshuffled.shuffle = false;
  DataLoader loader(failing, unshuffled);
  loader.start_epoch(0);
  Batch batch;
  for (int b = 0; b < 4; ++b) REQUIRE(loader.next(batch));
  CHECK_THROWS_WITH_AS(loader.next(batch), doctest::Contains("synthetic failure at 17"), std::runtime_error);
  CHECK(loader.next(batch));  // batch 5 (examples 20..23) is fine
}

TEST_CASE("loader: misuse fails loudly") {
  const SyntheticDataset gray(10, 2, 1, 4);
  CHECK_THROWS_WITH_AS(DataLoader(gray, LoaderOptions()),
                       doctest::Contains("normalization has 3 means and 3 stds for a dataset of 1 channels"),
                       std::runtime_error);
  const SyntheticDataset dataset(10, 2, 3, 4);
  LoaderOptions options;
  options.batch_size = 0;
  CHECK_THROWS_WITH_AS(DataLoader(dataset, options), doctest::Contains("batch_size must be positive"), std::runtime_error);
  options = LoaderOptions();
  options.prefetch = 0;
  CHECK_THROWS_WITH_AS(DataLoader(dataset, options), doctest::Contains("prefetch must be positive"), std::runtime_error);
  options = LoaderOptions();
  options.workers = -1;
  CHECK_THROWS_WITH_AS(DataLoader(dataset, options), doctest::Contains("workers must be"), std::runtime_error);
  options = LoaderOptions();
  options.normalization.std[1] = 0;
  CHECK_THROWS_WITH_AS(DataLoader(dataset, options), doctest::Contains("std of channel 1 must be positive"),
                       std::runtime_error);
}
