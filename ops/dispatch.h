// The device and dtype dispatch shared by op files: one visible switch on the device, then the float type on
// the CPU (float32 or float64) or the CUDA launch (float32 only, see autograd/device.h).
#pragma once

#include "autograd/device.h"

namespace vt {

// Calls cpu(T{}) with T the element type of t (float or double) on the CPU, or cuda() on the GPU.
template <class Cpu, class Cuda>
void dispatch_float(const Tensor& t, const char* op, const Cpu& cpu, const Cuda& cuda) {
  switch (t.device()) {
    case Device::cpu:
      if (t.dtype() == DType::f32)
        cpu(float{});
      else
        cpu(double{});
      return;
    case Device::cuda:
      check_cuda_dtype(op, t);
      on_cuda(op, cuda);
      return;
  }
}

}  // namespace vt
