// The data loader. Conventions: batch b of an epoch holds the examples order[b * B, (b + 1) * B) of that
// epoch's permutation; workers claim batch indices in order, may finish out of order, and park finished
// batches in a window of `prefetch` slots until next() takes them in order. Every random draw is keyed by
// (seed, epoch, example index) or (seed, epoch, batch index), so no batch depends on the worker count.
#include <cmath>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>

#include "autograd/parallel.h"
#include "datasets/loader.h"

namespace vt::data {
namespace {

// Fisher-Yates from the epoch's child of the shuffle stream. The multiply-shift maps 64 random bits onto
// [0, i] without the bias of a modulo.
std::vector<int64_t> epoch_order(int64_t size, bool shuffle, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(size);
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!shuffle) return order;
  const uint64_t stream = derive_key(stream_key(seed, RandomStream::shuffle), static_cast<uint64_t>(epoch));
  for (int64_t i = size - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(
        (static_cast<unsigned __int128>(random_bits(stream, static_cast<uint64_t>(i))) * static_cast<uint64_t>(i + 1)) >> 64);
    std::swap(order[i], order[j]);
  }
  return order;
}

}  // namespace

struct DataLoader::State {
  struct Slot {
    bool filled = false;
    Batch batch;
    std::exception_ptr error;
  };

  const Dataset& dataset;
  LoaderOptions options;
  std::vector<float> scale, shift;  // (C): (x / 255 - mean) / std = x * scale + shift
  int64_t epoch = -1;
  std::vector<int64_t> order;

  std::mutex mutex;
  std::condition_variable batch_ready;  // a worker filled a slot
  std::condition_variable slot_free;    // next() emptied a slot, or the loader stops
  std::vector<Slot> slots;              // (prefetch): batch b waits in slot b % prefetch
  int64_t next_claim = 0;               // the next batch a worker will build
  int64_t next_take = 0;                // the next batch next() returns
  bool stopping = false;
  std::vector<std::thread> workers;

  State(const Dataset& dataset, LoaderOptions options) : dataset(dataset), options(std::move(options)) {}

  int64_t batches() const {
    const int64_t size = dataset.size(), batch = options.batch_size;
    return options.drop_last ? size / batch : (size + batch - 1) / batch;
  }

  Batch build(int64_t index) const {
    const int channels = dataset.channels(), side = dataset.image_size();
    const int64_t begin = index * options.batch_size;
    const int64_t count = std::min<int64_t>(options.batch_size, dataset.size() - begin);
    const int64_t plane = static_cast<int64_t>(side) * side;
    const AugmentConfig& config = options.augment_config;
    Batch batch;
    batch.images = Tensor::empty({count, channels, side, side});  // (B, C, H, W)
    batch.labels.resize(count);
    float* images = batch.images.data<float>();
    for (int64_t j = 0; j < count; ++j) {
      const int64_t example_index = order[begin + j];
      Example example = dataset.get(example_index);
      AugmentRng rng(options.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(example_index));
      const Image image = options.augment ? augment_image(example.image, config, rng) : std::move(example.image);
      if (image.height != side || image.width != side || image.channels != channels)
        fail("DataLoader", "example " + std::to_string(example_index) + " came out " + std::to_string(image.height) +
                               "x" + std::to_string(image.width) + "x" + std::to_string(image.channels) + ", expected " +
                               std::to_string(side) + "x" + std::to_string(side) + "x" + std::to_string(channels));
      float* chw = images + j * channels * plane;  // (C, H, W)
      const uint8_t* hwc = image.pixels.data();    // (H, W, C)
      for (int c = 0; c < channels; ++c)
        for (int64_t p = 0; p < plane; ++p) chw[c * plane + p] = hwc[p * channels + c] * scale[c] + shift[c];
      if (options.augment && config.erase_prob > 0) random_erase(chw, channels, side, side, config.erase_prob, rng);
      batch.labels[j] = example.label;
    }
    if (options.augment) {
      AugmentRng rng = AugmentRng::for_batch(options.seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(index));
      batch.targets = mix_batch(batch.images, batch.labels, static_cast<int64_t>(dataset.classes().size()), config, rng);
    }
    return batch;
  }

  void work() {
    for (;;) {
      int64_t index;
      {
        std::unique_lock<std::mutex> lock(mutex);
        slot_free.wait(lock, [&] {
          return stopping || next_claim >= batches() || next_claim < next_take + options.prefetch;
        });
        if (stopping || next_claim >= batches()) return;
        index = next_claim++;
      }
      Slot result;
      try {
        result.batch = build(index);
      } catch (...) {
        result.error = std::current_exception();  // rethrown by next() in the caller's thread
      }
      result.filled = true;
      {
        std::lock_guard<std::mutex> lock(mutex);
        slots[index % options.prefetch] = std::move(result);
      }
      batch_ready.notify_all();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    slot_free.notify_all();
    for (std::thread& worker : workers) worker.join();
    workers.clear();
    stopping = false;
  }
};

DataLoader::DataLoader(const Dataset& dataset, LoaderOptions options)
    : state_(std::make_unique<State>(dataset, std::move(options))) {
  const LoaderOptions& o = state_->options;
  const size_t channels = static_cast<size_t>(dataset.channels());
  if (o.batch_size < 1) fail("DataLoader", "batch_size must be positive, got " + std::to_string(o.batch_size));
  if (o.workers < 0) fail("DataLoader", "workers must be 0 (load in the caller) or more, got " + std::to_string(o.workers));
  if (o.prefetch < 1) fail("DataLoader", "prefetch must be positive, got " + std::to_string(o.prefetch));
  if (o.normalization.mean.size() != channels || o.normalization.std.size() != channels)
    fail("DataLoader", "normalization has " + std::to_string(o.normalization.mean.size()) + " means and " +
                           std::to_string(o.normalization.std.size()) + " stds for a dataset of " +
                           std::to_string(channels) + " channels");
  for (size_t c = 0; c < channels; ++c) {
    const double mean = o.normalization.mean[c], std = o.normalization.std[c];
    if (!(std > 0))
      fail("DataLoader", "normalization std of channel " + std::to_string(c) + " must be positive, got " +
                             std::to_string(std) + (std == 0 ? " (a channel constant across the images)" : ""));
    if (!normalization_in_range(mean, std))
      fail("DataLoader", "normalization of channel " + std::to_string(c) + " (mean " + std::to_string(mean) + ", std " +
                             std::to_string(std) + ") takes pixels beyond +-1e6");
    state_->scale.push_back(static_cast<float>(1.0 / (255.0 * std)));
    state_->shift.push_back(static_cast<float>(-mean / std));
  }
}

DataLoader::~DataLoader() { state_->stop(); }

int64_t DataLoader::batches_per_epoch() const { return state_->batches(); }

void DataLoader::start_epoch(int64_t epoch) {
  State& s = *state_;
  s.stop();
  s.epoch = epoch;
  s.order = epoch_order(s.dataset.size(), s.options.shuffle, s.options.seed, epoch);
  s.slots.assign(static_cast<size_t>(s.options.prefetch), State::Slot());
  s.next_claim = s.next_take = 0;
  for (int w = 0; w < s.options.workers && w < s.batches(); ++w) s.workers.emplace_back([&s] { s.work(); });
}

bool DataLoader::next(Batch& batch) {
  State& s = *state_;
  if (s.epoch < 0) fail("DataLoader::next", "call start_epoch(epoch) before next()");
  if (s.next_take >= s.batches()) return false;
  if (s.options.workers == 0) {
    batch = s.build(s.next_take++);
    return true;
  }
  State::Slot slot;
  {
    std::unique_lock<std::mutex> lock(s.mutex);
    State::Slot& waiting = s.slots[s.next_take % s.options.prefetch];
    s.batch_ready.wait(lock, [&] { return waiting.filled; });
    slot = std::move(waiting);
    waiting = State::Slot();
    ++s.next_take;
  }
  s.slot_free.notify_all();
  if (slot.error) std::rethrow_exception(slot.error);
  batch = std::move(slot.batch);
  return true;
}

// Pixel sums are exact integers (uint64 holds 255^2 * 2^40), and the variance is formed as
// (n * sum(x^2) - sum(x)^2) / n^2 in 128-bit integers, so the only rounding is the final division: no
// cancellation, whatever the dataset size.
Tensor image_to_tensor(const Image& image, const Normalization& normalization) {
  const int c = image.channels, h = image.height, w = image.width;
  if (static_cast<int>(normalization.mean.size()) != c || static_cast<int>(normalization.std.size()) != c)
    fail("image_to_tensor", "normalization has " + std::to_string(normalization.mean.size()) + " means for an image of " +
                                std::to_string(c) + " channels");
  Tensor x = Tensor::empty({1, c, h, w});  // (1, C, H, W)
  float* out = x.data<float>();
  for (int ch = 0; ch < c; ++ch)
    for (int y = 0; y < h; ++y)
      for (int col = 0; col < w; ++col)
        out[(ch * h + y) * w + col] =
            static_cast<float>((image.at(y, col, ch) / 255.0 - normalization.mean[ch]) / normalization.std[ch]);
  return x;
}

bool normalization_in_range(double mean, double std) {
  constexpr double kLimit = 1e6;
  return std::abs(mean / std) <= kLimit && std::abs((1 - mean) / std) <= kLimit &&
         static_cast<float>(1.0 / (255.0 * std)) != 0.0f;
}

Normalization compute_normalization(const Dataset& dataset) {
  const int channels = dataset.channels();
  const int64_t size = dataset.size();
  if (size == 0) fail("compute_normalization", "the dataset is empty");
  std::vector<uint64_t> sums(channels, 0), squares(channels, 0);
  std::mutex merge;
  parallel_for(0, size, 256, [&](int64_t begin, int64_t end) {
    std::vector<uint64_t> local_sums(channels, 0), local_squares(channels, 0);
    for (int64_t i = begin; i < end; ++i) {
      const Image image = dataset.get(i).image;
      for (size_t p = 0; p < image.pixels.size(); ++p) {
        const uint64_t value = image.pixels[p];
        local_sums[p % channels] += value;
        local_squares[p % channels] += value * value;
      }
    }
    std::lock_guard<std::mutex> lock(merge);
    for (int c = 0; c < channels; ++c) sums[c] += local_sums[c], squares[c] += local_squares[c];
  });
  const uint64_t count = static_cast<uint64_t>(size) * dataset.image_size() * dataset.image_size();
  Normalization normalization;
  normalization.mean.assign(channels, 0.0);
  normalization.std.assign(channels, 0.0);
  for (int c = 0; c < channels; ++c) {
    const unsigned __int128 spread = static_cast<unsigned __int128>(count) * squares[c] -
                                     static_cast<unsigned __int128>(sums[c]) * sums[c];  // n^2 * 255^2 * variance
    normalization.mean[c] = static_cast<double>(sums[c]) / (255.0 * static_cast<double>(count));
    normalization.std[c] = std::sqrt(static_cast<double>(spread)) / (255.0 * static_cast<double>(count));
  }
  return normalization;
}

}  // namespace vt::data
