// Device checks shared by the ops.
#include "autograd/device.h"

namespace vt {

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
  if (t.defined() && t.device() == Device::cuda && t.dtype() == DType::f64)
    fail(op, "float64 tensors stay on the CPU (where the gradient checks run); got " + t.str() + " on cuda");
}

}  // namespace vt
