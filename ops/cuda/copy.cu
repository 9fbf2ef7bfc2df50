// Strided copies with dtype conversion, and index_select, on the GPU.
#include "autograd/cuda_runtime.cuh"
#include "ops/cuda/kernels.h"
#include "ops/cuda/strided.cuh"

namespace vt::cuda {

namespace {

template <class D, class S>
__global__ void copy_kernel(D* dst, const S* src, DevicePlan<2> plan) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < plan.numel; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t offsets[2];
    plan.offsets(i, offsets);
    dst[offsets[0]] = static_cast<D>(src[offsets[1]]);
  }
}

template <class D, class S>
void launch_copy(void* dst, const void* src, const StridedPlan<2>& plan) {
  copy_kernel<<<blocks_for(plan.numel), kThreads, 0, stream()>>>(static_cast<D*>(dst), static_cast<const S*>(src),
                                                                  DevicePlan<2>(plan));
}

template <class D>
void copy_from(void* dst, const void* src, DType src_dtype, const StridedPlan<2>& plan) {
  switch (src_dtype) {
    case DType::f32: return launch_copy<D, float>(dst, src, plan);
    case DType::f64: return launch_copy<D, double>(dst, src, plan);
    case DType::i64: return launch_copy<D, int64_t>(dst, src, plan);
  }
}

template <class T>
__global__ void fill_kernel(T* dst, T value, DevicePlan<1> plan) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < plan.numel; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t offset[1];
    plan.offsets(i, offset);
    dst[offset[0]] = value;
  }
}

template <class T>
void launch_fill(void* dst, T value, const StridedPlan<1>& plan) {
  fill_kernel<<<blocks_for(plan.numel), kThreads, 0, stream()>>>(static_cast<T*>(dst), value, DevicePlan<1>(plan));
}

// y (outer, K, inner) from x (outer, n, inner): one thread per element of y.
__global__ void index_select_kernel(float* y, const float* x, const int64_t* index, int64_t outer, int64_t n,
                                    int64_t k, int64_t inner) {
  const int64_t total = outer * k * inner;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = i % inner, j = i / inner % k, o = i / (inner * k);
    y[i] = x[(o * n + index[j]) * inner + c];
  }
}

// dx (outer, n, inner): each element sums the dy rows whose index names it, in index order (deterministic,
// no atomics; repeated indices add up).
__global__ void index_select_backward_kernel(float* dx, const float* dy, const int64_t* index, int64_t outer, int64_t n,
                                             int64_t k, int64_t inner) {
  const int64_t total = outer * n * inner;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = i % inner, row = i / inner % n, o = i / (inner * n);
    float sum = 0;
    for (int64_t j = 0; j < k; ++j)
      if (index[j] == row) sum += dy[(o * k + j) * inner + c];
    dx[i] = sum;
  }
}

}  // namespace

void copy_strided(void* dst, DType dst_dtype, const void* src, DType src_dtype, const StridedPlan<2>& plan) {
  if (plan.numel == 0) return;
  switch (dst_dtype) {
    case DType::f32: copy_from<float>(dst, src, src_dtype, plan); break;
    case DType::f64: copy_from<double>(dst, src, src_dtype, plan); break;
    case DType::i64: copy_from<int64_t>(dst, src, src_dtype, plan); break;
  }
  check_launch("copy");
}

void fill_strided(void* dst, DType dtype, double value, const StridedPlan<1>& plan) {
  if (plan.numel == 0) return;
  switch (dtype) {
    case DType::f32: launch_fill(dst, static_cast<float>(value), plan); break;
    case DType::f64: launch_fill(dst, value, plan); break;
    case DType::i64: launch_fill(dst, static_cast<int64_t>(value), plan); break;
  }
  check_launch("fill");
}

void index_select_forward(float* y, const float* x, const int64_t* index, int64_t outer, int64_t n, int64_t k,
                          int64_t inner) {
  if (outer * k * inner == 0) return;
  index_select_kernel<<<blocks_for(outer * k * inner), kThreads, 0, stream()>>>(y, x, index, outer, n, k, inner);
  check_launch("index_select");
}

void index_select_backward(float* dx, const float* dy, const int64_t* index, int64_t outer, int64_t n, int64_t k,
                           int64_t inner) {
  if (outer * n * inner == 0) return;
  index_select_backward_kernel<<<blocks_for(outer * n * inner), kThreads, 0, stream()>>>(dx, dy, index, outer, n, k,
                                                                                          inner);
  check_launch("index_select backward");
}

}  // namespace vt::cuda
