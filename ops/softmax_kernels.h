// Row kernels for softmax, log_softmax (ops/softmax.cpp) and cross_entropy (ops/loss.cpp) on contiguous
// (rows, cols) matrices, one row per softmax; outputs first, then inputs, then sizes. Each fast kernel has a
// plain *_reference twin (simple loops, double accumulation) that the tests compare it against.
#pragma once

#include <bit>
#include <cstdint>

#include "autograd/device.h"

namespace vt {

// exp(x) for float written as plain arithmetic, so that loops calling it vectorise (a call to glibc's
// expf blocks vectorisation without -ffast-math). exp(x) = 2^n exp(r) with n = round(x / ln 2) and
// r = x - n ln 2 in [-ln2/2, ln2/2]; ln 2 is split in a high part with few mantissa bits (n * high is exact)
// and a low part (Cody-Waite), so r keeps full precision; exp(r) is Cephes' expf polynomial; 2^n is built in
// the exponent bits. Measured error below 1 ulp on [-87, 88]. Below -87 it returns 0 (the exact result is
// under 1.7e-38, denormal or zero), above 88 +inf; NaN stays NaN. Out-of-range inputs are computed like the
// others (unsigned wrap-around, garbage bits) and then replaced through bit masks: GCC does not if-convert a
// `?:` or clamp whose arms hold float arithmetic (it could trap under the default -ftrapping-math), and such a
// select left the loop scalar.
VT_HOST_DEVICE VT_INLINE float vectorizable_exp(float x) {
  constexpr float kLow = -87.0f, kHigh = 88.0f;
  constexpr float kRoundingShift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  const float shifted = x * 1.44269504088896341f + kRoundingShift;
  const float n = shifted - kRoundingShift;
  const uint32_t biased_exponent = std::bit_cast<uint32_t>(shifted) - std::bit_cast<uint32_t>(kRoundingShift) + 127u;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const uint32_t bits = std::bit_cast<uint32_t>(p * std::bit_cast<float>(biased_exponent << 23));
  const uint32_t underflow = 0u - uint32_t(x < kLow);  // all ones where the result is 0
  const uint32_t overflow = 0u - uint32_t(x > kHigh);  // all ones where the result is +inf
  const uint32_t infinity_bits = 0x7f800000u;
  return std::bit_cast<float>((bits & ~(underflow | overflow)) | (overflow & infinity_bits));
}

// ---- softmax and log_softmax over each row of x (rows, cols) ----

// y = exp(x - max) / sum exp(x - max)
template <class T> void softmax_forward_cpu(T* y, const T* x, int64_t rows, int64_t cols);
// dx = y * (dy - sum(dy * y)), y the forward output
template <class T> void softmax_backward_cpu(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols);
// y = x - max - log(sum exp(x - max))
template <class T> void log_softmax_forward_cpu(T* y, const T* x, int64_t rows, int64_t cols);
// dx = dy - exp(y) * sum(dy), y the forward output (log-probabilities)
template <class T> void log_softmax_backward_cpu(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols);

template <class T> void softmax_forward_reference(T* y, const T* x, int64_t rows, int64_t cols);
template <class T> void softmax_backward_reference(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols);
template <class T> void log_softmax_forward_reference(T* y, const T* x, int64_t rows, int64_t cols);
template <class T> void log_softmax_backward_reference(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols);

// ---- cross entropy of logits (rows, cols) against a target distribution q per row ----
// q = (1 - smoothing) * target + smoothing / cols, target one-hot of labels (rows) or probabilities
// target (rows, cols). Forward writes each row's loss -sum_c q_c log p_c and its logsumexp (kept in double:
// backward rebuilds p = exp(logits - logsumexp) from it, and a float logsumexp of logits ~1000 would be off
// by 3e-5). Backward writes dlogits = scale * (p * sum_c q_c - q) (p - q when q sums to 1) with
// scale = dloss / rows, and for probability targets dtarget = scale * (1 - smoothing) * (logsumexp - logits)
// when dtarget is not null.
template <class T>
void cross_entropy_labels_forward_cpu(T* row_loss, double* logsumexp, const T* logits, const int64_t* labels,
                                      int64_t rows, int64_t cols, double smoothing);
template <class T>
void cross_entropy_labels_backward_cpu(T* dlogits, const T* logits, const double* logsumexp, const int64_t* labels,
                                       double scale, int64_t rows, int64_t cols, double smoothing);
template <class T>
void cross_entropy_probs_forward_cpu(T* row_loss, double* logsumexp, const T* logits, const T* target, int64_t rows,
                                     int64_t cols, double smoothing);
template <class T>
void cross_entropy_probs_backward_cpu(T* dlogits, T* dtarget, const T* logits, const double* logsumexp,
                                      const T* target, double scale, int64_t rows, int64_t cols, double smoothing);

template <class T>
void cross_entropy_labels_forward_reference(T* row_loss, double* logsumexp, const T* logits, const int64_t* labels,
                                            int64_t rows, int64_t cols, double smoothing);
template <class T>
void cross_entropy_labels_backward_reference(T* dlogits, const T* logits, const double* logsumexp,
                                             const int64_t* labels, double scale, int64_t rows, int64_t cols,
                                             double smoothing);
template <class T>
void cross_entropy_probs_forward_reference(T* row_loss, double* logsumexp, const T* logits, const T* target,
                                           int64_t rows, int64_t cols, double smoothing);
template <class T>
void cross_entropy_probs_backward_reference(T* dlogits, T* dtarget, const T* logits, const double* logsumexp,
                                            const T* target, double scale, int64_t rows, int64_t cols,
                                            double smoothing);

}  // namespace vt
