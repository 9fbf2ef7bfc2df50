// Optimizer steps on the GPU, every parameter in one launch (multi-tensor): blockIdx.y picks the tensor,
// blockIdx.x strides over its elements. The tensor table (pointers, sizes, per-tensor hyperparameters) is
// copied to the device before each launch; the arithmetic is the CPU kernels' (equal to rounding: nvcc
// contracts a * b + c into one FMA).
#include <algorithm>
#include <string>
#include <vector>

#include "autograd/cuda_runtime.cuh"
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/kernels.h"

namespace vt::cuda {

namespace {

// A host array copied into scratch device memory for one launch.
template <class T>
class DeviceTable {
 public:
  DeviceTable(const T* host, int count) : scratch_(sizeof(T) * std::max(count, 1)) {
    copy_to_device(scratch_.as<void>(), host, sizeof(T) * count);
  }
  const T* data() const { return scratch_.as<const T>(); }

 private:
  Scratch scratch_;
};

// Blocks in x for the longest tensor (each thread takes several elements); y is one tensor each.
dim3 multi_tensor_grid(const int64_t* sizes, int count) {
  if (count > 65535) fail("optimizer step", std::to_string(count) + " tensors exceed the grid's 65,535 in y");
  int64_t longest = 1;
  for (int i = 0; i < count; ++i) longest = std::max(longest, sizes[i]);
  return dim3(std::min<unsigned int>(blocks_for((longest + 3) / 4), 1024), static_cast<unsigned int>(count));
}

std::vector<int64_t> sizes_of(const ParamUpdate* updates, int count) {
  std::vector<int64_t> sizes(count);
  for (int i = 0; i < count; ++i) sizes[i] = updates[i].n;
  return sizes;
}

__device__ int64_t first_element() { return blockIdx.x * int64_t{blockDim.x} + threadIdx.x; }
__device__ int64_t element_step() { return int64_t{gridDim.x} * blockDim.x; }

// PyTorch's AdamW order: p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= step_size m / (sqrt(v) / sqrt(1 - b2^t) + eps).
__global__ void adamw_kernel(const ParamUpdate* updates, AdamWConstants k) {
  const ParamUpdate u = updates[blockIdx.y];
  for (int64_t i = first_element(); i < u.n; i += element_step()) {
    const float g = u.grad[i];
    const float m = k.beta1 * u.first[i] + k.one_minus_beta1 * g;
    const float v = k.beta2 * u.second[i] + k.one_minus_beta2 * g * g;
    u.first[i] = m;
    u.second[i] = v;
    const float denominator = sqrtf(v) / u.bias_correction2_sqrt + k.eps;
    u.param[i] = u.param[i] * u.decay - u.step_size * m / denominator;
  }
}

// g = grad + wd p; buf = momentum buf + g; p -= lr (nesterov ? g + momentum buf : buf); plain SGD without momentum.
__global__ void sgd_kernel(const ParamUpdate* updates, float momentum, bool nesterov) {
  const ParamUpdate u = updates[blockIdx.y];
  for (int64_t i = first_element(); i < u.n; i += element_step()) {
    const float g = u.grad[i] + u.weight_decay * u.param[i];
    if (!u.first) {
      u.param[i] -= u.lr * g;
      continue;
    }
    const float buffer = momentum * u.first[i] + g;
    u.first[i] = buffer;
    u.param[i] -= u.lr * (nesterov ? g + momentum * buffer : buffer);
  }
}

// partial[tensor * gridDim.x + block] = that block's sum of squares of its tensor.
__global__ void square_sums_kernel(double* partial, float* const* grads, const int64_t* sizes) {
  const float* g = grads[blockIdx.y];
  double sum = 0;
  for (int64_t i = first_element(); i < sizes[blockIdx.y]; i += element_step()) sum += double(g[i]) * g[i];
  sum = block_sum(sum);
  if (threadIdx.x == 0) partial[blockIdx.y * gridDim.x + blockIdx.x] = sum;
}

// norm[0] = sqrt(sum of the partials in order), and factor[0] = the clipping factor (1 when not clipping).
__global__ void norm_kernel(float* norm, float* factor, const double* partial, int64_t count, double max_norm) {
  double sum = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += partial[i];
  sum = block_sum(sum);
  if (threadIdx.x == 0) {
    const double total = sqrt(sum), scale = max_norm / (total + 1e-6);
    norm[0] = static_cast<float>(total);
    factor[0] = scale < 1 ? static_cast<float>(scale) : 1.0f;  // a NaN norm leaves the gradients as they are
  }
}

__global__ void scale_kernel(float* const* grads, const int64_t* sizes, const float* factor) {
  const float f = factor[0];
  if (f == 1.0f) return;
  float* g = grads[blockIdx.y];
  for (int64_t i = first_element(); i < sizes[blockIdx.y]; i += element_step()) g[i] *= f;
}

__global__ void ema_kernel(float* const* ema, const float* const* params, const int64_t* sizes, float keep, float take) {
  float* e = ema[blockIdx.y];
  const float* p = params[blockIdx.y];
  for (int64_t i = first_element(); i < sizes[blockIdx.y]; i += element_step()) e[i] = keep * e[i] + take * p[i];
}

}  // namespace

void adamw_update(const ParamUpdate* updates, int count, const AdamWConstants& constants) {
  if (count == 0) return;
  const DeviceTable<ParamUpdate> table(updates, count);
  adamw_kernel<<<multi_tensor_grid(sizes_of(updates, count).data(), count), kThreads, 0, stream()>>>(table.data(),
                                                                                                       constants);
  check_launch("AdamW");
}

void sgd_update(const ParamUpdate* updates, int count, float momentum, bool nesterov) {
  if (count == 0) return;
  const DeviceTable<ParamUpdate> table(updates, count);
  sgd_kernel<<<multi_tensor_grid(sizes_of(updates, count).data(), count), kThreads, 0, stream()>>>(table.data(), momentum,
                                                                                                     nesterov);
  check_launch("SGD");
}

void clip_grad_norm(float* norm, float* const* grads, const int64_t* sizes, int count, double max_norm) {
  const DeviceTable<float*> grad_table(grads, count);
  const DeviceTable<int64_t> size_table(sizes, count);
  const dim3 grid = multi_tensor_grid(sizes, std::max(count, 1));
  Scratch partial(sizeof(double) * grid.x * grid.y);
  Scratch factor(sizeof(float));
  if (count > 0) square_sums_kernel<<<grid, kThreads, 0, stream()>>>(partial.as<double>(), grad_table.data(), size_table.data());
  else check(cudaMemsetAsync(partial.as<void>(), 0, sizeof(double), stream()), "clip_grad_norm");
  norm_kernel<<<1, 1024, 0, stream()>>>(norm, factor.as<float>(), partial.as<double>(), count > 0 ? int64_t{grid.x} * grid.y : 1,
                                        max_norm);
  if (count > 0) scale_kernel<<<grid, kThreads, 0, stream()>>>(grad_table.data(), size_table.data(), factor.as<float>());
  check_launch("clip_grad_norm");
}

void ema_update(float* const* ema, const float* const* params, const int64_t* sizes, int count, double decay) {
  if (count == 0) return;
  const DeviceTable<float*> ema_table(ema, count);
  const DeviceTable<const float*> param_table(params, count);
  const DeviceTable<int64_t> size_table(sizes, count);
  ema_kernel<<<multi_tensor_grid(sizes, count), kThreads, 0, stream()>>>(
      ema_table.data(), param_table.data(), size_table.data(), static_cast<float>(decay), static_cast<float>(1.0 - decay));
  check_launch("ModelEma");
}

}  // namespace vt::cuda
