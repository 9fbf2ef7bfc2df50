// Devices: what a build can run on, and the one place where the CUDA backend plugs into an op's dispatch.
// Conventions: every op switches visibly on its tensors' device; the cuda case wraps its kernel launch in
// on_cuda(op, [&] { ... }), which runs the launch in a build with the CUDA backend (VT_CUDA) and fails naming
// the op in one without. There the lambda is never called, so a CPU-only build needs no CUDA symbol at all.
// Arithmetic shared by CPU and CUDA kernels is written once, as VT_HOST_DEVICE functions.
#pragma once

#include "autograd/tensor.h"

#ifdef __CUDACC__
#define VT_HOST_DEVICE __host__ __device__
#else
#define VT_HOST_DEVICE
#endif
// Forced inlining: loops over a functor vectorise only when its arithmetic is inlined into them.
#define VT_INLINE __attribute__((always_inline)) inline

namespace vt {

#ifdef VT_CUDA
inline constexpr bool kCudaBuild = true;
#else
inline constexpr bool kCudaBuild = false;
#endif

template <class Launch>
void on_cuda(const char* op, const Launch& launch) {
  if constexpr (kCudaBuild)
    launch();
  else
    fail(op, "this build has no CUDA backend (configure with -DVT_CUDA=ON on a machine with nvcc)");
}

// A GPU is visible and this build has the CUDA backend, and what it is ("no GPU ..." otherwise).
bool cuda_available();
std::string cuda_description();
// Waits until the device has done all the work queued on it (a no-op on the CPU): for timings.
void synchronize(Device device);
// The most bytes tensors held on `device` at once since the last reset (the caching allocators' count).
uint64_t peak_memory_bytes(Device device);
void reset_peak_memory(Device device);
// Blocks the caching allocator of `device` has ever taken from the system (malloc, or cudaMalloc): a warmed-up
// training step adds none.
uint64_t system_allocations(Device device);
// The arithmetic of float32 GEMMs on `device`: exact fp32 by default, as PyTorch's. On the GPU, tf32 lets cuBLAS
// round the inputs to TF32 (about 8x the fp32 rate on an H100) and bf16 to bfloat16 (twice TF32's rate; cuBLAS
// may still pick TF32 where bf16 is no faster). Outputs and accumulation stay fp32, so weights, activations and
// the LayerNorm and softmax statistics are fp32 throughout. The CPU has fp32, and bf16 where it has AVX512-BF16
// or AMX (set_cpu_matmul_precision in blas.h); asking it for TF32, or for bf16 without either, fails.
void set_matmul_precision(Device device, MatmulPrecision precision);
const char* matmul_precision_name(MatmulPrecision precision);  // "fp32", "tf32" or "bf16"

// Fails naming the op and both devices unless every defined tensor sits on the first one's device.
void check_same_device(const char* op, std::initializer_list<Tensor> tensors);
// Fails naming the op unless a CUDA tensor is float32 (or i64 indices): float64 stays on the CPU, where the
// gradient checks run. With a device: t as it would be there (the check before a move).
void check_cuda_dtype(const char* op, const Tensor& t);
void check_cuda_dtype(const char* op, const Tensor& t, Device device);

}  // namespace vt
