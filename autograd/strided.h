// Strided iteration shared by the elementwise, copy and reduction kernels. A loop over K operands that
// share a logical shape is "planned": size-1 dims are dropped and adjacent dims that are contiguous for
// every operand are merged, so that most loops become one long inner run with unit strides.
#pragma once

#include <array>
#include <cstdint>

#include "autograd/parallel.h"
#include "autograd/tensor.h"

namespace vt {

constexpr int kMaxDims = 12;

template <size_t K>
struct StridedPlan {
  int ndim = 0;                                // after merging; 0 means a single element
  int64_t sizes[kMaxDims];
  std::array<std::array<int64_t, kMaxDims>, K> strides;
  int64_t numel = 1;
};

template <size_t K>
StridedPlan<K> plan_strided(const Shape& shape, const std::array<const Shape*, K>& strides) {
  StridedPlan<K> plan;
  if (shape.size() > static_cast<size_t>(kMaxDims)) fail("strided loop", "too many dims: " + shape_str(shape));
  for (size_t d = 0; d < shape.size(); ++d) {
    plan.numel *= shape[d];
    if (shape[d] == 1) continue;
    const int nd = plan.ndim;
    bool mergeable = nd > 0;
    for (size_t k = 0; k < K && mergeable; ++k)
      mergeable = plan.strides[k][nd - 1] == (*strides[k])[d] * shape[d];
    if (mergeable) {
      plan.sizes[nd - 1] *= shape[d];
      for (size_t k = 0; k < K; ++k) plan.strides[k][nd - 1] = (*strides[k])[d];
    } else {
      plan.sizes[nd] = shape[d];
      for (size_t k = 0; k < K; ++k) plan.strides[k][nd] = (*strides[k])[d];
      plan.ndim = nd + 1;
    }
  }
  return plan;
}

// Calls run(offsets, n, inner_strides) for every inner run, in parallel over runs (or over chunks of the
// single run when everything merged into one dim). Offsets are in elements from each operand's base.
template <size_t K, class F>
void for_each_run(const StridedPlan<K>& plan, int64_t grain, const F& run) {
  if (plan.numel == 0) return;
  std::array<int64_t, K> inner{};
  if (plan.ndim == 0) {
    run(std::array<int64_t, K>{}, int64_t{1}, inner);
    return;
  }
  const int last = plan.ndim - 1;
  for (size_t k = 0; k < K; ++k) inner[k] = plan.strides[k][last];
  const int64_t n_inner = plan.sizes[last];
  if (plan.ndim == 1) {
    parallel_for(0, n_inner, grain, [&](int64_t lo, int64_t hi) {
      std::array<int64_t, K> base;
      for (size_t k = 0; k < K; ++k) base[k] = lo * inner[k];
      run(base, hi - lo, inner);
    });
    return;
  }
  const int64_t runs = plan.numel / n_inner;
  parallel_for(0, runs, std::max<int64_t>(1, grain / n_inner), [&](int64_t lo, int64_t hi) {
    int64_t index[kMaxDims];
    std::array<int64_t, K> base{};
    int64_t rest = lo;
    for (int d = last - 1; d >= 0; --d) {
      index[d] = rest % plan.sizes[d];
      rest /= plan.sizes[d];
      for (size_t k = 0; k < K; ++k) base[k] += index[d] * plan.strides[k][d];
    }
    for (int64_t r = lo; r < hi; ++r) {
      run(base, n_inner, inner);
      for (int d = last - 1; d >= 0; --d) {  // odometer increment
        for (size_t k = 0; k < K; ++k) base[k] += plan.strides[k][d];
        if (++index[d] < plan.sizes[d]) break;
        for (size_t k = 0; k < K; ++k) base[k] -= plan.strides[k][d] * plan.sizes[d];
        index[d] = 0;
      }
    }
  });
}

}  // namespace vt
