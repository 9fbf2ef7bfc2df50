// The device and dtype dispatch shared by op files: one visible switch on the device, then the float type.
#pragma once

#include "autograd/tensor.h"

namespace vt {

// Calls run(T{}) with T the element type of t (float or double), on t's device.
template <class F>
void dispatch_float(const Tensor& t, const char* op, const F& run) {
  switch (t.device()) {
    case Device::cpu:
      if (t.dtype() == DType::f32)
        run(float{});
      else
        run(double{});
      return;
    case Device::cuda: fail(op, "this build has no CUDA backend");
  }
}

}  // namespace vt
