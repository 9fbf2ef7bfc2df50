// A vector of 16 lanes, one per token of a short sequence (TNT's 16 pixel tokens per patch), for the kernels
// that hold a sequence transposed, one vector per channel or per key: the pixel-head attention
// (ops/attention.cpp) and the fused inner block (ops/inner_block.cpp). g++ vector extensions: 16 floats are one
// 512-bit register, 16 doubles two (the float64 twin serves the gradient checks). may_alias: an array of them is
// also read as plain T, for the loops of scalar functions (exp, GELU) that the compiler vectorises itself.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "ops/softmax_kernels.h"

namespace vt {

constexpr int64_t kLaneTokens = 16;
template <class T>
struct TokenLanesOf;
template <>
struct TokenLanesOf<float> {
  typedef float type __attribute__((vector_size(kLaneTokens * sizeof(float)), may_alias));
};
template <>
struct TokenLanesOf<double> {
  typedef double type __attribute__((vector_size(kLaneTokens * sizeof(double)), aligned(64), may_alias));  // 64: as the allocator's blocks
};
template <class T>
using TokenLanes = typename TokenLanesOf<T>::type;

inline float lane_exp(float x) { return vectorizable_exp(x); }
inline double lane_exp(double x) { return std::exp(x); }

// Softmax over keys, in place, of scores held as columns: s_t[j] is key j's score for query i in lane i, for
// the first `keys` keys. Each query's max is subtracted before exp (every exponent <= 0, the largest term
// exactly 1), and the max, the sum and the division are elementwise across the vectors: no horizontal step.
template <class T>
void softmax_over_columns(TokenLanes<T>* s_t, int64_t keys) {
  using Lanes = TokenLanes<T>;
  Lanes row_max = s_t[0];
  for (int64_t j = 1; j < keys; ++j) row_max = s_t[j] > row_max ? s_t[j] : row_max;
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
