// The CUDA runtime as the engine sees it: the GPU, device memory and copies, with no CUDA type in sight, so
// that any file may include it (autograd/cuda.cu implements it; only a build with VT_CUDA links it).
// Conventions: one device (the first visible GPU) and one stream, on which every kernel and copy of a training
// step is queued in order; a host read of device data (copy_to_host) waits for that stream. Every CUDA and
// cuBLAS call is checked, and its error names the op, CUDA's error string and the file:line of the call; with
// VT_CUDA_SYNC=1 in the environment every kernel launch is followed by a synchronisation, so the first kernel
// that fails is the one named.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "autograd/allocator.h"
#include "autograd/tensor.h"

namespace vt::cuda {

// A GPU is visible, and this build has the CUDA backend. Never fails: no GPU and no driver are both "false".
bool available();
// "NVIDIA H100 80GB HBM3 (compute capability 9.0, 132 SMs, 79.1 GiB)" or why there is none.
std::string device_description();

// Device memory from a caching allocator: freed blocks are kept by size and reused, so a warmed-up training
// step makes no cudaMalloc. Blocks are reused in stream order (there is one stream), so no synchronisation
// is needed. On out-of-memory the cache is returned to the driver and the allocation tried once more; then it
// fails with the requested, in-use and cached bytes.
void* allocate(size_t bytes);
void release(void* data, size_t bytes);
AllocatorStats allocator_stats();  // system_allocations counts cudaMalloc calls
void reset_peak_live_bytes();
void empty_cache();

// Copies of `bytes` between the host and the device, or within the device, in stream order. copy_to_host
// waits until the bytes have arrived; copy_to_device returns once `source` may be reused.
void copy_to_device(void* destination, const void* source, size_t bytes);
void copy_to_host(void* destination, const void* source, size_t bytes);
void copy_on_device(void* destination, const void* source, size_t bytes);
void synchronize();

// The compute type of every float32 GEMM from now on: exact fp32 (the default, as PyTorch's), or TF32 or bf16
// tensor cores with fp32 accumulation (vt::set_matmul_precision explains the trade).
void set_matmul_precision(MatmulPrecision precision);

}  // namespace vt::cuda
