// For .cu files: a StridedPlan handed to a kernel by value, and the element offsets of linear index i in it.
// Conventions: the plan's last dim is the innermost; a linear index runs over the logical shape in row-major
// order, so consecutive threads touch consecutive elements of a contiguous operand (coalesced).
#pragma once

#include "autograd/strided.h"

namespace vt::cuda {

template <size_t K>
struct DevicePlan {
  int ndim;
  int64_t numel;
  int64_t sizes[kMaxDims];
  int64_t strides[K][kMaxDims];

  explicit DevicePlan(const StridedPlan<K>& plan) : ndim(plan.ndim), numel(plan.numel) {
    for (int d = 0; d < kMaxDims; ++d) {
      sizes[d] = d < plan.ndim ? plan.sizes[d] : 1;
      for (size_t k = 0; k < K; ++k) strides[k][d] = d < plan.ndim ? plan.strides[k][d] : 0;
    }
  }

  // Offsets (in elements) of linear index i into each operand.
  __device__ void offsets(int64_t i, int64_t (&out)[K]) const {
    for (size_t k = 0; k < K; ++k) out[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t index = i % sizes[d];
      i /= sizes[d];
      for (size_t k = 0; k < K; ++k) out[k] += index * strides[k][d];
    }
  }

  // True when every operand is one unit-stride run: then offset i is i for all of them.
  bool contiguous() const {
    if (ndim == 0) return true;
    if (ndim != 1) return false;
    for (size_t k = 0; k < K; ++k)
      if (strides[k][0] != 1) return false;
    return true;
  }
};

}  // namespace vt::cuda
