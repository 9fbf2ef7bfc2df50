// The 16-lane vectors of TNT's pixel-level kernels (ops/token_lanes.h): SplitFloatLanes, the two AVX2-wide halves
// that stand for 16 floats without AVX-512, against g++'s 64-byte vector extension lane by lane, on every build,
// so that an AVX-512 machine checks the type it does not run; and the softmax over columns against plain loops.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/token_lanes.h"
#include "tests/helpers.h"

using namespace vt;

namespace {

typedef float WideLanes __attribute__((vector_size(kLaneTokens * sizeof(float))));

// The same 16 values in both: varied magnitudes and signs, and a NaN and an infinity where `special`.
void fill(SplitFloatLanes& split, WideLanes& wide, float seed, bool special) {
  for (int64_t i = 0; i < kLaneTokens; ++i) {
    const float value = std::sin(seed * static_cast<float>(i + 1)) * std::exp2(static_cast<float>(i % 7 - 3));
    split[i] = wide[i] = value;
  }
  if (special) {
    split[3] = wide[3] = std::numeric_limits<float>::quiet_NaN();
    split[12] = wide[12] = -std::numeric_limits<float>::infinity();
  }
}

// Every lane the same bits (NaN where NaN).
void check_lanes(const char* what, const SplitFloatLanes& split, const WideLanes& wide) {
  CAPTURE(what);
  for (int64_t i = 0; i < kLaneTokens; ++i) {
    CAPTURE(i);
    if (std::isnan(wide[i]))
      CHECK(std::isnan(split[i]));
    else
      CHECK(split[i] == wide[i]);
  }
}

}  // namespace

TEST_CASE("token lanes: SplitFloatLanes computes each lane as the 64-byte vector does") {
  SplitFloatLanes a, b;
  WideLanes wa, wb;
  fill(a, wa, 0.7f, true);
  fill(b, wb, 1.3f, false);
  b[5] = wb[5] = 0.0f;  // a / b is +-inf there
  const float s = 0.375f;
  check_lanes("a + b", a + b, wa + wb);
  check_lanes("a - b", a - b, wa - wb);
  check_lanes("a * b", a * b, wa * wb);
  check_lanes("a / b", a / b, wa / wb);
  check_lanes("a + s", a + s, wa + s);
  check_lanes("s - a", s - a, s - wa);
  check_lanes("s * a", s * a, s * wa);
  check_lanes("s / b", s / b, s / wb);
  check_lanes("-a", -a, -wa);
  check_lanes("lanes_max(a, b)", lanes_max(a, b), wa > wb ? wa : wb);  // NaN in a: b's lane
  check_lanes("lanes_max(b, a)", lanes_max(b, a), wb > wa ? wb : wa);  // NaN in a: a's NaN
  SplitFloatLanes c = a;
  WideLanes wc = wa;
  c += b, wc += wb;
  c *= s, wc *= s;
  c -= a, wc -= wa;
  c /= 2.0f, wc /= 2.0f;
  check_lanes("((a + b) s - a) / 2", c, wc);
  // Lane i of the pair is float i of its 64 bytes, as memcpy and the kernels' casts to float* read it.
  float values[kLaneTokens];
  std::memcpy(values, &a, sizeof values);
  for (int64_t i = 0; i < kLaneTokens; ++i)
    if (!std::isnan(wa[i])) CHECK(values[i] == wa[i]);
}

TEST_CASE("token lanes: softmax over columns is each lane's softmax over the keys") {
  // s_t[j][i] = score of key j for query i; lane i's probabilities are exp(s - max) / sum over j.
  constexpr int64_t keys = 5;
  TokenLanes<float> s_t[keys];
  float scores[keys][kLaneTokens];
  for (int64_t j = 0; j < keys; ++j)
    for (int64_t i = 0; i < kLaneTokens; ++i)
      s_t[j][i] = scores[j][i] = std::cos(static_cast<float>(3 * j + 7 * i)) * static_cast<float>(i + 1) * 10.0f;
  softmax_over_columns<float>(s_t, keys);
  for (int64_t i = 0; i < kLaneTokens; ++i) {
    double max = scores[0][i], total = 0;
    for (int64_t j = 1; j < keys; ++j) max = std::max<double>(max, scores[j][i]);
    for (int64_t j = 0; j < keys; ++j) total += std::exp(scores[j][i] - max);
    for (int64_t j = 0; j < keys; ++j) {
      CAPTURE(i);
      CAPTURE(j);
      CHECK(s_t[j][i] == doctest::Approx(std::exp(scores[j][i] - max) / total).epsilon(1e-6));
    }
  }
}
