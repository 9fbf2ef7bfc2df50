// Random tensors from the counter-based generator: element i of a draw uses counter offset + i, so the
// values are the same whatever the thread count. Normals use Box-Muller on two counters per element.
#include "autograd/random.h"

#include <cmath>

#include "autograd/parallel.h"

namespace vt {

Generator& default_generator() {
  static Generator generator(0);
  return generator;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

template <class T, class F>
static Tensor fill_random(const Shape& shape, DType dtype, const char* op, const F& value_of) {
  Tensor t = Tensor::empty(shape, dtype);
  T* p = nullptr;
  if constexpr (std::is_same_v<T, float>) p = t.data<float>();
  else p = t.data<double>();
  parallel_for(0, t.numel(), 1 << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) p[i] = static_cast<T>(value_of(static_cast<uint64_t>(i)));
  });
  (void)op;
  return t;
}

template <class F>
static Tensor random_tensor(const Shape& shape, DType dtype, const char* op, const F& value_of) {
  switch (dtype) {
    case DType::f32: return fill_random<float>(shape, dtype, op, value_of);
    case DType::f64: return fill_random<double>(shape, dtype, op, value_of);
    case DType::i64: break;
  }
  fail(op, std::string("needs a floating dtype, got ") + dtype_name(dtype));
}

static double standard_normal(uint64_t seed, uint64_t counter) {
  // Box-Muller; 1 - u keeps the log argument in (0, 1].
  const double u1 = 1.0 - random_uniform(seed, 2 * counter);
  const double u2 = random_uniform(seed, 2 * counter + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

Tensor rand(const Shape& shape, DType dtype, Generator& generator) {
  const uint64_t seed = generator.seed(), first = generator.reserve(shape_numel(shape));
  return random_tensor(shape, dtype, "rand", [=](uint64_t i) { return random_uniform(seed, first + i); });
}

Tensor randn(const Shape& shape, DType dtype, Generator& generator) {
  const uint64_t seed = generator.seed(), first = generator.reserve(shape_numel(shape));
  return random_tensor(shape, dtype, "randn", [=](uint64_t i) { return standard_normal(seed, first + i); });
}

Tensor trunc_normal(const Shape& shape, double std, double lo, double hi, DType dtype, Generator& generator) {
  if (!(lo < hi)) fail("trunc_normal", "empty interval [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  const uint64_t seed = generator.seed(), first = generator.reserve(shape_numel(shape));
  return random_tensor(shape, dtype, "trunc_normal", [=](uint64_t i) {
    // Resample out-of-range draws from independent streams (seed + attempt), deterministically per element.
    for (uint64_t attempt = 0;; ++attempt) {
      const double v = std * standard_normal(seed + 0x9E3779B97F4A7C15ull * attempt, first + i);
      if (v >= lo && v <= hi) return v;
      if (attempt == 1000) return std::clamp(v, lo, hi);  // only reachable when [lo, hi] is far in a tail
    }
  });
}

}  // namespace vt
