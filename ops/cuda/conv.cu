// im2col and col2im on the GPU, the gathers around conv2d's GEMM: one thread per patch entry (im2col) and one
// per input pixel (col2im, which sums the entries that read its pixel in a fixed order: no atomics).
#include "autograd/cuda_runtime.cuh"
#include "ops/cuda/kernels.h"

namespace vt::cuda {

namespace {

// patches (B*L, C*kh*kw): entry (row = (b, oh, ow), column = (c, ki, kj)) is pixel (c, oh*s - p + ki,
// ow*s - p + kj) of image b, or 0 on the padding.
__global__ void im2col_kernel(float* patches, const float* x, ConvGeometry g) {
  const int64_t patch_size = g.channels * g.kernel_h * g.kernel_w, total = g.batch * g.out_h * g.out_w * patch_size;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t column = i % patch_size, row = i / patch_size;
    const int64_t kj = column % g.kernel_w, ki = column / g.kernel_w % g.kernel_h, c = column / (g.kernel_w * g.kernel_h);
    const int64_t ow = row % g.out_w, oh = row / g.out_w % g.out_h, b = row / (g.out_w * g.out_h);
    const int64_t ih = oh * g.stride - g.padding + ki, iw = ow * g.stride - g.padding + kj;
    patches[i] = ih >= 0 && ih < g.height && iw >= 0 && iw < g.width
                     ? x[((b * g.channels + c) * g.height + ih) * g.width + iw]
                     : 0.0f;
  }
}

// dx (B, C, H, W): pixel (ih, iw) was read by output (oh, ow) through tap (ki, kj) exactly when
// oh*s - p + ki = ih and ow*s - p + kj = iw.
__global__ void col2im_kernel(float* dx, const float* patches, ConvGeometry g) {
  const int64_t patch_size = g.channels * g.kernel_h * g.kernel_w, total = g.batch * g.channels * g.height * g.width;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t iw = i % g.width, ih = i / g.width % g.height, c = i / (g.width * g.height) % g.channels;
    const int64_t b = i / (g.width * g.height * g.channels);
    float sum = 0;
    for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
      const int64_t row_offset = ih + g.padding - ki;
      if (row_offset < 0 || row_offset % g.stride != 0 || row_offset / g.stride >= g.out_h) continue;
      for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
        const int64_t column_offset = iw + g.padding - kj;
        if (column_offset < 0 || column_offset % g.stride != 0 || column_offset / g.stride >= g.out_w) continue;
        const int64_t row = (b * g.out_h + row_offset / g.stride) * g.out_w + column_offset / g.stride;
        sum += patches[row * patch_size + (c * g.kernel_h + ki) * g.kernel_w + kj];
      }
    }
    dx[i] = sum;
  }
}

__global__ void fill_rows_kernel(float* y, const float* row, int64_t rows, int64_t cols) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < rows * cols; i += int64_t{gridDim.x} * blockDim.x)
    y[i] = row[i % cols];
}

}  // namespace

void im2col(float* patches, const float* x, const ConvGeometry& g) {
  const int64_t total = g.batch * g.positions() * g.patch_size();
  if (total == 0) return;
  im2col_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(patches, x, g);
  check_launch("im2col");
}

void col2im(float* dx, const float* patches, const ConvGeometry& g) {
  const int64_t total = g.batch * g.channels * g.height * g.width;
  if (total == 0) return;
  col2im_kernel<<<blocks_for(total), kThreads, 0, stream()>>>(dx, patches, g);
  check_launch("col2im");
}

void fill_rows(float* y, const float* row, int64_t rows, int64_t cols) {
  if (rows * cols == 0) return;
  fill_rows_kernel<<<blocks_for(rows * cols), kThreads, 0, stream()>>>(y, row, rows, cols);
  check_launch("fill_rows");
}

}  // namespace vt::cuda
