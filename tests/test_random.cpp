// Random streams: every draw reserves the counters it reads, so consecutive draws never share bits; streams
// of different purposes (tensors, dropout, shuffling, augmentation) have unrelated keys, so drawing more in
// one never shifts another.
#include <cmath>
#include <set>

#include "datasets/augment.h"
#include "models/config.h"
#include "tests/helpers.h"

using namespace vt;

namespace {

// The Pearson correlation of two equally long samples.
double correlation(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  double mean_a = 0, mean_b = 0;
  for (size_t i = 0; i < a.size(); ++i) mean_a += a[i] / n, mean_b += b[i] / n;
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += (a[i] - mean_a) * (b[i] - mean_b);
    aa += (a[i] - mean_a) * (a[i] - mean_a);
    bb += (b[i] - mean_b) * (b[i] - mean_b);
  }
  return ab / std::sqrt(aa * bb);
}

}  // namespace

TEST_CASE("random: a draw reserves every counter it reads (randn two per element, rand and trunc_normal one)") {
  Generator generator(3);
  randn({10}, DType::f64, generator);
  CHECK(generator.offset() == 20);  // Box-Muller reads two uniforms per normal
  rand({7}, DType::f64, generator);
  CHECK(generator.offset() == 27);
  trunc_normal({5}, 1.0, -0.1, 0.1, DType::f64, generator);  // most elements resample, from their own child streams
  CHECK(generator.offset() == 32);
}

TEST_CASE("random: the uniforms of a rand after a randn are none of the uniforms the normals were made of") {
  const int64_t n = 1000;
  Generator generator(0);
  randn({n}, DType::f64, generator);
  // The normals were built from random_uniform(key, c) for c in [0, 2n): the next draw must read none of them.
  std::set<double> used;
  for (uint64_t c = 0; c < 2 * n; ++c) used.insert(random_uniform(generator.key(), c));
  const std::vector<double> next = rand({n}, DType::f64, generator).to_vector();
  int64_t reused = 0;
  for (double u : next) reused += used.count(u);
  CHECK(reused == 0);
}

TEST_CASE("random: consecutive draws of every kind are uncorrelated") {
  const int64_t n = 20000;  // |r| of independent samples has std 1 / sqrt(n) = 0.007; 0.03 is 4 sigma
  Generator generator(11);
  const std::vector<double> normals = randn({n}, DType::f64, generator).to_vector();
  const std::vector<double> uniforms = rand({n}, DType::f64, generator).to_vector();
  const std::vector<double> truncated = trunc_normal({n}, 1.0, -2.0, 2.0, DType::f64, generator).to_vector();
  const std::vector<double> mask = dropout(Tensor::ones({n}, DType::f64), 0.5, true, generator).to_vector();
  CHECK(std::abs(correlation(normals, uniforms)) < 0.03);
  CHECK(std::abs(correlation(uniforms, truncated)) < 0.03);
  CHECK(std::abs(correlation(truncated, mask)) < 0.03);
  CHECK(std::abs(correlation(normals, mask)) < 0.03);
}

TEST_CASE("random: streams of one seed have different keys and unrelated numbers") {
  std::set<uint64_t> keys;
  for (RandomStream stream : {RandomStream::tensors, RandomStream::dropout, RandomStream::shuffle,
                              RandomStream::augment, RandomStream::batch_augment})
    keys.insert(stream_key(7, stream));
  CHECK(keys.size() == 5);
  Generator tensors(7, RandomStream::tensors), dropout_stream(7, RandomStream::dropout);
  CHECK(std::abs(correlation(rand({5000}, DType::f64, tensors).to_vector(),
                             rand({5000}, DType::f64, dropout_stream).to_vector())) < 0.06);
  // manual_seed seeds both global streams from counter 0.
  manual_seed(7);
  CHECK(default_generator().key() == stream_key(7, RandomStream::tensors));
  CHECK(dropout_generator().key() == stream_key(7, RandomStream::dropout));
  CHECK(default_generator().offset() == 0);
  CHECK(dropout_generator().offset() == 0);
}

TEST_CASE("random: building a second model (an EMA copy) leaves the dropout masks unchanged") {
  models::ModelConfig config = models::preset("vit_cifar");
  config.depth = 1;
  const Tensor x = Tensor::ones({4, 8, 16});  // (B, N, D)
  auto masks_after = [&](int models_built) {
    manual_seed(21);
    for (int i = 0; i < models_built; ++i) models::create_model(config);
    const Tensor element_mask = dropout(x, 0.5, true);
    return std::pair{element_mask.to_vector(), drop_path(x, 0.5, true).to_vector()};
  };
  CHECK(masks_after(1) == masks_after(2));
}

TEST_CASE("random: counters never wrap around") {
  Generator generator(1);
  generator.set_offset(~uint64_t{0} - 3);
  CHECK_THROWS_WITH_AS(rand({5}, DType::f32, generator), doctest::Contains("counter space exhausted"), std::runtime_error);
  CHECK(generator.offset() == ~uint64_t{0} - 3);  // nothing was reserved
  rand({3}, DType::f32, generator);                 // the last three counters are still usable
}

TEST_CASE("random: augmentation streams are keyed apart from the tensors stream and from each other") {
  data::AugmentRng example(0, 0, 0), batch = data::AugmentRng::for_batch(0, 0, 0);
  const uint64_t example_bits = example.next_bits(), batch_bits = batch.next_bits();
  CHECK(example_bits != batch_bits);
  Generator tensors(0);
  CHECK(example_bits != random_bits(tensors.key(), 0));
  CHECK(example_bits != random_bits(0, 0));  // nor the raw seed used as a key
}
