// A vector of 16 lanes, one per token of a short sequence (TNT's 16 pixel tokens per patch), for the kernels
// that hold a sequence transposed, one vector per channel or per key: the pixel-head attention
// (ops/attention.cpp) and the fused inner block (ops/inner_block.cpp). 16 floats are one 512-bit register with
// AVX-512, two 256-bit halves otherwise (SplitFloatLanes); 16 doubles are g++'s vector extension (the float64
// twin serves the gradient checks). may_alias: an array of them is also read as plain T, for the loops of scalar
// functions (exp, GELU) that the compiler vectorises itself.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "ops/softmax_kernels.h"

namespace vt {

constexpr int64_t kLaneTokens = 16;

// 16 floats as two vectors of 8, with the arithmetic of g++'s vector extensions, lane by lane. Without
// AVX-512, g++ keeps such a pair in two AVX2 registers, but a 64-byte vector extension it keeps in memory and
// moves through general registers 64 bits at a time: on a Zen 3, tnt_cifar trained 1.7x as fast on the pair
// (bench/compare_cpu.sh: 42.2 -> 73.4 images/s).
struct alignas(64) [[gnu::may_alias]] SplitFloatLanes {
  typedef float Half __attribute__((vector_size(kLaneTokens / 2 * sizeof(float))));
  Half low, high;  // lanes 0-7, 8-15

  float& operator[](int64_t i) { return reinterpret_cast<float*>(this)[i]; }
  float operator[](int64_t i) const { return reinterpret_cast<const float*>(this)[i]; }
  SplitFloatLanes operator-() const { return {-low, -high}; }
  // a op b, a op scalar and scalar op b on each half, and the compound assignments.
#define VT_SPLIT_LANES_OPERATOR(op)                                                                             \
  friend SplitFloatLanes operator op(const SplitFloatLanes& a, const SplitFloatLanes& b) {                      \
    return {a.low op b.low, a.high op b.high};                                                                  \
  }                                                                                                             \
  friend SplitFloatLanes operator op(const SplitFloatLanes& a, float b) { return {a.low op b, a.high op b}; }   \
  friend SplitFloatLanes operator op(float a, const SplitFloatLanes& b) { return {a op b.low, a op b.high}; }   \
  SplitFloatLanes& operator op##=(const SplitFloatLanes& b) { return *this = *this op b; }                      \
  SplitFloatLanes& operator op##=(float b) { return *this = *this op b; }
  VT_SPLIT_LANES_OPERATOR(+)
  VT_SPLIT_LANES_OPERATOR(-)
  VT_SPLIT_LANES_OPERATOR(*)
  VT_SPLIT_LANES_OPERATOR(/)
#undef VT_SPLIT_LANES_OPERATOR
};
static_assert(sizeof(SplitFloatLanes) == kLaneTokens * sizeof(float));

template <class T>
struct TokenLanesOf;
template <>
struct TokenLanesOf<float> {
#ifdef __AVX512F__
  typedef float type __attribute__((vector_size(kLaneTokens * sizeof(float)), may_alias));
#else
  using type = SplitFloatLanes;
#endif
};
template <>
struct TokenLanesOf<double> {
  typedef double type __attribute__((vector_size(kLaneTokens * sizeof(double)), aligned(64), may_alias));  // 64: as the allocator's blocks
};
template <class T>
using TokenLanes = typename TokenLanesOf<T>::type;

// The vector registers a TokenLanes<float> fills: one of AVX-512's, or the pair's two of AVX2's. Kernels that
// keep several vectors of sums size their blocks by it.
constexpr int64_t kRegistersPerLanes = std::is_same_v<TokenLanes<float>, SplitFloatLanes> ? 2 : 1;

// The larger of a and b, lane by lane (NaN in a gives b, as a > b is false).
template <class Lanes>
Lanes lanes_max(const Lanes& a, const Lanes& b) {
  return a > b ? a : b;
}
inline SplitFloatLanes lanes_max(const SplitFloatLanes& a, const SplitFloatLanes& b) {
  return {a.low > b.low ? a.low : b.low, a.high > b.high ? a.high : b.high};
}

inline float lane_exp(float x) { return vectorizable_exp(x); }
inline double lane_exp(double x) { return std::exp(x); }

// Softmax over keys, in place, of scores held as columns: s_t[j] is key j's score for query i in lane i, for
// the first `keys` keys. Each query's max is subtracted before exp (every exponent <= 0, the largest term
// exactly 1), and the max, the sum and the division are elementwise across the vectors: no horizontal step.
template <class T>
void softmax_over_columns(TokenLanes<T>* s_t, int64_t keys) {
  using Lanes = TokenLanes<T>;
  Lanes row_max = s_t[0];
  for (int64_t j = 1; j < keys; ++j) row_max = lanes_max(s_t[j], row_max);
  for (int64_t j = 0; j < keys; ++j) s_t[j] -= row_max;
  T* values = reinterpret_cast<T*>(s_t);  // every key's exponentials in one loop
#pragma omp simd
  for (int64_t i = 0; i < keys * kLaneTokens; ++i) values[i] = lane_exp(values[i]);
  Lanes total{};
  for (int64_t j = 0; j < keys; ++j) total += s_t[j];
  const Lanes inverse = T(1) / total;
  for (int64_t j = 0; j < keys; ++j) s_t[j] *= inverse;
}

}  // namespace vt
