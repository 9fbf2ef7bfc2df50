// Elementwise ops on the GPU: one strided kernel per functor of ops/elementwise_functors.h (the arithmetic the
// CPU runs too), with a contiguous fast path, instantiated below for every functor the ops use.
#include "autograd/cuda_runtime.cuh"
#include "ops/cuda/kernels.h"
#include "ops/cuda/strided.cuh"
#include "ops/elementwise_functors.h"

namespace vt::cuda {

namespace {

template <class F>
__global__ void unary_contiguous(float* y, const float* x, int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) y[i] = f(x[i]);
}

template <class F>
__global__ void unary_strided(float* y, const float* x, DevicePlan<2> plan, F f) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < plan.numel; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t o[2];
    plan.offsets(i, o);
    y[o[0]] = f(x[o[1]]);
  }
}

template <class F>
__global__ void binary_contiguous(float* y, const float* a, const float* b, int64_t n, F f) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x)
    y[i] = f(a[i], b[i]);
}

template <class F>
__global__ void binary_strided(float* y, const float* a, const float* b, DevicePlan<3> plan, F f) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < plan.numel; i += int64_t{gridDim.x} * blockDim.x) {
    int64_t o[3];
    plan.offsets(i, o);
    y[o[0]] = f(a[o[1]], b[o[2]]);
  }
}

}  // namespace

template <class F>
void map_unary(float* y, const float* x, const StridedPlan<2>& plan, const F& f) {
  if (plan.numel == 0) return;
  const DevicePlan<2> device_plan(plan);
  if (device_plan.contiguous())
    unary_contiguous<<<blocks_for(plan.numel), kThreads, 0, stream()>>>(y, x, plan.numel, f);
  else
    unary_strided<<<blocks_for(plan.numel), kThreads, 0, stream()>>>(y, x, device_plan, f);
  check_launch("elementwise");
}

template <class F>
void map_binary(float* y, const float* a, const float* b, const StridedPlan<3>& plan, const F& f) {
  if (plan.numel == 0) return;
  const DevicePlan<3> device_plan(plan);
  if (device_plan.contiguous())
    binary_contiguous<<<blocks_for(plan.numel), kThreads, 0, stream()>>>(y, a, b, plan.numel, f);
  else
    binary_strided<<<blocks_for(plan.numel), kThreads, 0, stream()>>>(y, a, b, device_plan, f);
  check_launch("elementwise");
}

template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const Add&);
template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const Sub&);
template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const Mul&);
template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const Div&);
template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const DivDenominatorGrad&);

// Every unary op: its forward; the backward of the ops that save nothing as a function of dy, of the others
// as a function of (dy, saved).
template void map_unary(float*, const float*, const StridedPlan<2>&, const Forward<AddScalar>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const BackwardOfDy<AddScalar>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const Forward<MulScalar>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const BackwardOfDy<MulScalar>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const Forward<RsubScalar>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const BackwardOfDy<RsubScalar>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const Forward<Neg>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const BackwardOfDy<Neg>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const Forward<Exp>&);
template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const Backward<Exp>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const Forward<Log>&);
template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const Backward<Log>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const Forward<Sqrt>&);
template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const Backward<Sqrt>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const Forward<Pow>&);
template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const Backward<Pow>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const Forward<Tanh>&);
template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const Backward<Tanh>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const Forward<Relu>&);
template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const Backward<Relu>&);
template void map_unary(float*, const float*, const StridedPlan<2>&, const Forward<Gelu>&);
template void map_binary(float*, const float*, const float*, const StridedPlan<3>&, const Backward<Gelu>&);

}  // namespace vt::cuda
