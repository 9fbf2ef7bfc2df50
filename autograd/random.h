// Seeded random numbers. A Generator is a (seed, offset) pair and element i of a draw is a pure function of
// (seed, offset + i) through a counter-based hash (like PyTorch's Philox offsets), so results do not depend
// on the thread count, and a draw of n numbers advances the offset by n.
#pragma once

#include <cstdint>

#include "autograd/tensor.h"

namespace vt {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  void manual_seed(uint64_t seed) { seed_ = seed, offset_ = 0; }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }
  uint64_t reserve(uint64_t count) {  // returns the first counter of a block of `count`
    const uint64_t first = offset_;
    offset_ += count;
    return first;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

Generator& default_generator();
void manual_seed(uint64_t seed);

// 64 random bits for counter `counter` of stream `seed` (splitmix64 finaliser over a mixed key).
inline uint64_t random_bits(uint64_t seed, uint64_t counter) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + counter * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Uniform in [0, 1) with 53 random bits.
inline double random_uniform(uint64_t seed, uint64_t counter) {
  return static_cast<double>(random_bits(seed, counter) >> 11) * 0x1.0p-53;
}

// Fresh tensors (no graph).
Tensor rand(const Shape& shape, DType dtype = DType::f32, Generator& generator = default_generator());
Tensor randn(const Shape& shape, DType dtype = DType::f32, Generator& generator = default_generator());
// Normal(0, std) truncated to [lo, hi] by resampling, as timm's trunc_normal_ initialisation.
Tensor trunc_normal(const Shape& shape, double std, double lo, double hi, DType dtype = DType::f32,
                    Generator& generator = default_generator());

}  // namespace vt
