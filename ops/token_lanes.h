// A vector of 16 float lanes, one per token of a short sequence (TNT's 16 pixel tokens per patch), for the
// kernels that hold a sequence transposed, one vector per channel or per key: the pixel-head attention
// (ops/attention.cpp) and the fused inner block (ops/inner_block.cpp). g++ vector extensions, 512 bits wide.
#pragma once

#include <cstdint>
#include <cstring>

#include "ops/softmax_kernels.h"

namespace vt {

constexpr int64_t kLaneTokens = 16;
typedef float TokenLanes __attribute__((vector_size(kLaneTokens * sizeof(float))));

// Softmax over keys, in place, of scores held as columns: s_t[j] is key j's score for query i in lane i, for
// the first `keys` keys. Each query's max is subtracted before exp (every exponent <= 0, the largest term
// exactly 1), and the max, the sum and the division are elementwise across the vectors: no horizontal step.
inline void softmax_over_columns(TokenLanes* s_t, int64_t keys) {
  TokenLanes row_max = s_t[0];
  for (int64_t j = 1; j < keys; ++j) row_max = s_t[j] > row_max ? s_t[j] : row_max;
  TokenLanes total{};
  for (int64_t j = 0; j < keys; ++j) {
    alignas(64) float e[kLaneTokens];
    const TokenLanes shifted = s_t[j] - row_max;
    std::memcpy(e, &shifted, sizeof e);
#pragma omp simd
    for (int64_t i = 0; i < kLaneTokens; ++i) e[i] = vectorizable_exp(e[i]);
    std::memcpy(&s_t[j], e, sizeof e);
    total += s_t[j];
  }
  const TokenLanes inverse = 1.0f / total;
  for (int64_t j = 0; j < keys; ++j) s_t[j] *= inverse;
}

}  // namespace vt
