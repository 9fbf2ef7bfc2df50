// Device checks shared by the ops, and the one place that asks the CUDA runtime whether a GPU is there.
#include "autograd/device.h"

#include "autograd/allocator.h"
#include "autograd/blas.h"
#include "autograd/cuda.h"

namespace vt {

bool cuda_available() {
#ifdef VT_CUDA
  return cuda::available();
#else
  return false;
#endif
}

std::string cuda_description() {
#ifdef VT_CUDA
  return cuda::device_description();
#else
  return "no CUDA backend in this build";
#endif
}

void synchronize(Device device) {
  if (device == Device::cuda) on_cuda("synchronize", [] { cuda::synchronize(); });
}

uint64_t peak_memory_bytes(Device device) {
  uint64_t peak = allocator_stats().peak_live_bytes;
  if (device == Device::cuda) on_cuda("peak_memory_bytes", [&] { peak = cuda::allocator_stats().peak_live_bytes; });
  return peak;
}

void reset_peak_memory(Device device) {
  if (device == Device::cpu) reset_peak_live_bytes();
  else on_cuda("reset_peak_memory", [] { cuda::reset_peak_live_bytes(); });
}

uint64_t system_allocations(Device device) {
  uint64_t count = allocator_stats().system_allocations;
  if (device == Device::cuda) on_cuda("system_allocations", [&] { count = cuda::allocator_stats().system_allocations; });
  return count;
}

void set_matmul_precision(Device device, MatmulPrecision precision) {
  const char* op = "set_matmul_precision";
  if (device == Device::cuda) on_cuda(op, [&] { cuda::set_matmul_precision(precision); });
  else set_cpu_matmul_precision(precision);
}

const char* matmul_precision_name(MatmulPrecision precision) {
  switch (precision) {
    case MatmulPrecision::fp32: return "fp32";
    case MatmulPrecision::tf32: return "tf32";
    case MatmulPrecision::bf16: return "bf16";
  }
  return "?";
}

void check_same_device(const char* op, std::initializer_list<Tensor> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor& t : tensors) {
    if (!t.defined()) continue;
    if (!first) first = &t;
    else if (t.device() != first->device())
      fail(op, "inputs on different devices: " + first->str() + " on " + device_name(first->device()) + ", " + t.str() +
                   " on " + device_name(t.device()) + "; move one with .to(Device)");
  }
}

void check_cuda_dtype(const char* op, const Tensor& t) {
  if (t.defined()) check_cuda_dtype(op, t, t.device());
}

void check_cuda_dtype(const char* op, const Tensor& t, Device device) {
  if (device == Device::cuda && t.dtype() == DType::f64)
    fail(op, "float64 tensors stay on the CPU (where the gradient checks run); got " + t.str() + " for cuda");
}

}  // namespace vt
