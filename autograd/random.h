// Seeded random numbers. Every number is random_bits(key, counter), a pure function of a 64-bit stream key and
// a counter (like PyTorch's Philox offsets), so results depend neither on the thread count nor on the device.
// Conventions: a Generator is one stream, (key, offset); a draw reserves every counter it reads, so draws never
// share bits; each purpose (initialisation, dropout, shuffling, augmentation) has its own stream, keyed by
// derive_key(seed, stream), so that drawing more in one stream never shifts the numbers of another.
#pragma once

#include <cstdint>

#include "autograd/device.h"
#include "autograd/tensor.h"

namespace vt {

// The purposes that draw random numbers. `tensors` feeds rand/randn/trunc_normal and the initialisers.
enum class RandomStream : uint64_t { tensors = 0, dropout = 1, shuffle = 2, augment = 3, batch_augment = 4 };

// 64 random bits for counter `counter` of the stream keyed `key` (splitmix64's finaliser over a mixed key).
VT_HOST_DEVICE inline uint64_t random_bits(uint64_t key, uint64_t counter) {
  uint64_t z = key * 0x9E3779B97F4A7C15ull + counter * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Uniform in [0, 1) with 53 random bits.
VT_HOST_DEVICE inline double random_uniform(uint64_t key, uint64_t counter) {
  return static_cast<double>(random_bits(key, counter) >> 11) * 0x1.0p-53;
}

// The key of a child stream: MurmurHash3's finaliser with other constants than random_bits, so a derived key
// is unrelated to the numbers any stream hands out (and to the keys of sibling tags).
VT_HOST_DEVICE inline uint64_t derive_key(uint64_t parent, uint64_t tag) {
  uint64_t z = (parent ^ 0x2545F4914F6CDD1Dull) * 0xFF51AFD7ED558CCDull + tag * 0xC4CEB9FE1A85EC53ull;
  z = (z ^ (z >> 33)) * 0xFF51AFD7ED558CCDull;
  z = (z ^ (z >> 33)) * 0xC4CEB9FE1A85EC53ull;
  return z ^ (z >> 33);
}
inline uint64_t stream_key(uint64_t seed, RandomStream stream) {
  return derive_key(seed, static_cast<uint64_t>(stream));
}

class Generator {
 public:
  explicit Generator(uint64_t seed = 0, RandomStream stream = RandomStream::tensors)
      : seed_(seed), stream_(stream), key_(stream_key(seed, stream)) {}
  void manual_seed(uint64_t seed) { *this = Generator(seed, stream_); }
  uint64_t seed() const { return seed_; }
  RandomStream stream() const { return stream_; }
  uint64_t key() const { return key_; }
  uint64_t offset() const { return offset_; }
  void set_offset(uint64_t offset) { offset_ = offset; }
  // Returns the first counter of a fresh block of `count`; fails rather than wrap around to reused counters.
  uint64_t reserve(uint64_t count) {
    if (count > ~offset_) fail("Generator", "counter space exhausted: " + std::to_string(count) + " more after " + std::to_string(offset_));
    const uint64_t first = offset_;
    offset_ += count;
    return first;
  }

 private:
  uint64_t seed_;
  RandomStream stream_;
  uint64_t key_;
  uint64_t offset_ = 0;
};

Generator& default_generator();  // RandomStream::tensors: the initialisers and rand/randn/trunc_normal
Generator& dropout_generator();  // RandomStream::dropout: Dropout and DropPath masks
void manual_seed(uint64_t seed);  // seeds both, from counter 0

// Fresh tensors (no graph). rand reserves one counter per element; randn two (Box-Muller takes two uniforms);
// trunc_normal one, element i resampling from its own child stream derive_key(key, counter of i) when a draw
// falls outside [lo, hi]. They are drawn on the host and then placed on `device`: the values are the counters',
// the same on either device (initialisation, not a training step's work).
Tensor rand(const Shape& shape, DType dtype = DType::f32, Generator& generator = default_generator(),
            Device device = Device::cpu);
Tensor randn(const Shape& shape, DType dtype = DType::f32, Generator& generator = default_generator(),
             Device device = Device::cpu);
// Normal(0, std) truncated to [lo, hi] by resampling, as timm's trunc_normal_ initialisation.
Tensor trunc_normal(const Shape& shape, double std, double lo, double hi, DType dtype = DType::f32,
                    Generator& generator = default_generator(), Device device = Device::cpu);

}  // namespace vt
