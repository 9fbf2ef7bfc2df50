// Random tensors from the counter-based generator: element i of a draw reads only counters reserved for it,
// so the values are the same whatever the thread count. Normals use Box-Muller on two counters per element.
#include "autograd/random.h"

#include <cmath>

#include "autograd/parallel.h"

namespace vt {

Generator& default_generator() {
  static Generator generator(0, RandomStream::tensors);
  return generator;
}

Generator& dropout_generator() {
  static Generator generator(0, RandomStream::dropout);
  return generator;
}

void manual_seed(uint64_t seed) {
  default_generator().manual_seed(seed);
  dropout_generator().manual_seed(seed);
}

template <class T, class F>
static Tensor fill_random(const Shape& shape, DType dtype, const F& value_of) {
  Tensor t = Tensor::empty(shape, dtype);
  T* p = t.data<T>();
  parallel_for(0, t.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) p[i] = static_cast<T>(value_of(static_cast<uint64_t>(i)));
  });
  return t;
}

template <class F>
static Tensor random_tensor(const Shape& shape, DType dtype, const F& value_of) {
  return dtype == DType::f32 ? fill_random<float>(shape, dtype, value_of) : fill_random<double>(shape, dtype, value_of);
}

// Box-Muller on counters `first` and `first + 1`; 1 - u keeps the log argument in (0, 1].
static double standard_normal(uint64_t key, uint64_t first) {
  const double u1 = 1.0 - random_uniform(key, first);
  const double u2 = random_uniform(key, first + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

// The first of `per_element` counters for each element of `shape`, reserved after checking the dtype (numel is
// below 2^63 and per_element at most 2, so the count cannot overflow).
static uint64_t reserve_draws(Generator& generator, const Shape& shape, DType dtype, uint64_t per_element,
                              const char* op) {
  if (dtype == DType::i64) fail(op, std::string("needs a floating dtype, got ") + dtype_name(dtype));
  return generator.reserve(static_cast<uint64_t>(shape_numel(shape)) * per_element);
}

Tensor rand(const Shape& shape, DType dtype, Generator& generator, Device device) {
  const uint64_t key = generator.key(), first = reserve_draws(generator, shape, dtype, 1, "rand");
  return random_tensor(shape, dtype, [=](uint64_t i) { return random_uniform(key, first + i); }).to(device);
}

Tensor randn(const Shape& shape, DType dtype, Generator& generator, Device device) {
  const uint64_t key = generator.key(), first = reserve_draws(generator, shape, dtype, 2, "randn");
  return random_tensor(shape, dtype, [=](uint64_t i) { return standard_normal(key, first + 2 * i); }).to(device);
}

Tensor trunc_normal(const Shape& shape, double std, double lo, double hi, DType dtype, Generator& generator,
                    Device device) {
  if (!(lo < hi)) fail("trunc_normal", "empty interval [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  const uint64_t key = generator.key(), first = reserve_draws(generator, shape, dtype, 1, "trunc_normal");
  return random_tensor(shape, dtype, [=](uint64_t i) {
    // Element i owns counter first + i; its attempts draw counters (2a, 2a + 1) of the child stream keyed by it.
    const uint64_t element_key = derive_key(key, first + i);
    for (uint64_t attempt = 0;; ++attempt) {
      const double v = std * standard_normal(element_key, 2 * attempt);
      if (v >= lo && v <= hi) return v;
      if (attempt == 1000) return std::clamp(v, lo, hi);  // only reachable when [lo, hi] is far in a tail
    }
  }).to(device);
}

}  // namespace vt
