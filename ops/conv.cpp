// unfold and conv2d on im2col + GEMM. Conventions: receptive fields are gathered one patch per row,
// patches (B*L, C*kh*kw), so that every image's positions form one tall matrix and conv2d is a single GEMM
// with the weight (O, C*kh*kw) as a transpose flag; results are views with PyTorch's shapes over that memory.
#include "ops/conv_kernels.h"

#include <algorithm>

#include "autograd/blas.h"
#include "autograd/parallel.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"
#include "ops/ops.h"

namespace vt {

// ---- CPU kernels ----

namespace {

constexpr int64_t kConvGrain = 1 << 15;  // elements of work below which a kernel stays on one thread

// The number of units of `work_per_unit` elements each that makes one thread's minimum share.
int64_t grain_in_units(int64_t work_per_unit) {
  return std::max<int64_t>(1, kConvGrain / std::max<int64_t>(work_per_unit, 1));
}

// Output columns [begin, end) whose window [ow*s - p, ow*s - p + kw) lies inside [0, W): their patch rows are
// plain copies; only the columns outside the range (at most about p/s on each side) need clipping.
struct ColumnRange {
  int64_t begin, end;
};

ColumnRange interior_columns(const ConvGeometry& g) {
  const int64_t begin = std::min(g.out_w, (g.padding + g.stride - 1) / g.stride);  // first ow with ow*s >= p
  const int64_t last_left = g.width - g.kernel_w + g.padding;                       // ow*s may not exceed this
  const int64_t end = last_left < 0 ? 0 : std::min(g.out_w, last_left / g.stride + 1);
  return {begin, std::max(begin, end)};
}

// KernelW > 0 fixes the kernel width at compile time: patch rows of 2-4 or 7 pixels (3x3 kernels, 4x4 patch
// embeddings, the 7x7 pixel embedding of timm's TNT) are too short for a loop with a run-time trip count, and
// become a few plain moves.
template <int64_t KernelW, class T>
void im2col_width(T* patches, const T* x, const ConvGeometry& g) {
  const int64_t kernel_w = KernelW > 0 ? KernelW : g.kernel_w;
  const int64_t patch_size = g.patch_size(), plane = g.height * g.width, stride = g.stride, padding = g.padding;
  const ColumnRange interior = interior_columns(g);
  // One unit = one row of output positions (b, oh): Wo whole patches; each (c, ki) source row is read once
  // and spread over the Wo patches, patch_size apart.
  parallel_for(0, g.batch * g.out_h, grain_in_units(g.out_w * patch_size), [&](int64_t lo, int64_t hi) {
    for (int64_t unit = lo; unit < hi; ++unit) {
      const int64_t b = unit / g.out_h, oh = unit % g.out_h;
      const T* image = x + b * g.channels * plane;     // (C, H, W)
      T* out = patches + unit * g.out_w * patch_size;  // (Wo, C*kh*kw)
      for (int64_t c = 0; c < g.channels; ++c) {
        for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
          T* column = out + (c * g.kernel_h + ki) * kernel_w;  // entries (c, ki, .) of patch ow at ow * patch_size
          const int64_t ih = oh * stride - padding + ki;
          if (ih < 0 || ih >= g.height) {
            for (int64_t ow = 0; ow < g.out_w; ++ow) std::fill_n(column + ow * patch_size, kernel_w, T(0));
            continue;
          }
          const T* source = image + c * plane + ih * g.width;  // (W)
          auto clipped = [&](int64_t ow) {
            const int64_t left = ow * stride - padding;
            for (int64_t kj = 0; kj < kernel_w; ++kj) {
              const int64_t iw = left + kj;
              column[ow * patch_size + kj] = iw >= 0 && iw < g.width ? source[iw] : T(0);
            }
          };
          for (int64_t ow = 0; ow < interior.begin; ++ow) clipped(ow);
          for (int64_t ow = interior.begin; ow < interior.end; ++ow) {
            T* to = column + ow * patch_size;
            const T* from = source + (ow * stride - padding);
            for (int64_t kj = 0; kj < kernel_w; ++kj) to[kj] = from[kj];
          }
          for (int64_t ow = interior.end; ow < g.out_w; ++ow) clipped(ow);
        }
      }
    }
  });
}

template <int64_t KernelW, class T>
void col2im_width(T* dx, const T* patches, const ConvGeometry& g) {
  const int64_t kernel_w = KernelW > 0 ? KernelW : g.kernel_w;
  const int64_t patch_size = g.patch_size(), plane = g.height * g.width, positions = g.positions();
  const int64_t kernel_area = g.kernel_h * kernel_w, stride = g.stride, padding = g.padding;
  const ColumnRange interior = interior_columns(g);
  // One unit = one (b, c) plane of dx: overlapping patches only ever add into their own plane, so threads
  // never write the same pixel and no atomics are needed.
  parallel_for(0, g.batch * g.channels, grain_in_units(positions * kernel_area), [&](int64_t lo, int64_t hi) {
    for (int64_t unit = lo; unit < hi; ++unit) {
      const int64_t b = unit / g.channels, c = unit % g.channels;
      T* out = dx + unit * plane;  // (H, W)
      std::fill_n(out, plane, T(0));
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        for (int64_t ki = 0; ki < g.kernel_h; ++ki) {
          const int64_t ih = oh * stride - padding + ki;
          if (ih < 0 || ih >= g.height) continue;  // read from the padding: no pixel to credit
          T* row = out + ih * g.width;             // (W)
          // entries (c, ki, .) of patch (b, oh, ow) at ow * patch_size
          const T* column = patches + ((b * g.out_h + oh) * g.out_w * patch_size) + c * kernel_area + ki * kernel_w;
          auto clipped = [&](int64_t ow) {
            const int64_t left = ow * stride - padding;
            for (int64_t kj = 0; kj < kernel_w; ++kj) {
              const int64_t iw = left + kj;
              if (iw >= 0 && iw < g.width) row[iw] += column[ow * patch_size + kj];
            }
          };
          for (int64_t ow = 0; ow < interior.begin; ++ow) clipped(ow);
          for (int64_t ow = interior.begin; ow < interior.end; ++ow) {
            T* to = row + (ow * stride - padding);
            const T* from = column + ow * patch_size;
            for (int64_t kj = 0; kj < kernel_w; ++kj) to[kj] += from[kj];
          }
          for (int64_t ow = interior.end; ow < g.out_w; ++ow) clipped(ow);
        }
      }
    }
  });
}

}  // namespace

template <class T>
void im2col_cpu(T* patches, const T* x, const ConvGeometry& g) {
  switch (g.kernel_w) {
    case 2: return im2col_width<2>(patches, x, g);
    case 3: return im2col_width<3>(patches, x, g);
    case 4: return im2col_width<4>(patches, x, g);
    case 7: return im2col_width<7>(patches, x, g);
    default: return im2col_width<0>(patches, x, g);
  }
}

template <class T>
void col2im_cpu(T* dx, const T* patches, const ConvGeometry& g) {
  switch (g.kernel_w) {
    case 2: return col2im_width<2>(dx, patches, g);
    case 3: return col2im_width<3>(dx, patches, g);
    case 4: return col2im_width<4>(dx, patches, g);
    case 7: return col2im_width<7>(dx, patches, g);
    default: return col2im_width<0>(dx, patches, g);
  }
}

template <class T>
void conv2d_forward_cpu(T* y, T* patches, const T* x, const T* weight, const T* bias, const ConvGeometry& g,
                        int64_t out_channels) {
  im2col_cpu(patches, x, g);
  const int64_t rows = g.batch * g.positions(), patch_size = g.patch_size();
  // Every image's positions in one GEMM, (B*L, C*kh*kw) @ (C*kh*kw, O): tall enough to cut into tiles even when
  // each image alone is tiny (4x4 TNT pixel patches, 8x8 CIFAR patch grids). GEMM adds the bias as it writes y.
  gemm<T>(false, true, rows, out_channels, patch_size, T(1), patches, patch_size, weight, patch_size, T(0), y,
          out_channels, bias);
}

template <class T>
void conv2d_backward_cpu(T* dx, T* dweight, T* dpatches, const T* dy, const T* patches, const T* weight,
                         const ConvGeometry& g, int64_t out_channels) {
  const int64_t rows = g.batch * g.positions(), patch_size = g.patch_size();
  // y = patches w^T  =>  dw = dy^T patches (the sum over images is the GEMM's inner dimension),
  // dpatches = dy w, and each pixel collects the dpatches entries that read it.
  if (dweight)
    gemm<T>(true, false, out_channels, patch_size, rows, T(1), dy, out_channels, patches, patch_size, T(0), dweight,
            patch_size);
  if (dx) {
    gemm<T>(false, false, rows, patch_size, out_channels, T(1), dy, out_channels, weight, patch_size, T(0), dpatches,
            patch_size);
    col2im_cpu(dx, dpatches, g);
  }
}

// ---- reference kernels: the definitions written out as loops ----

template <class T>
void im2col_reference(T* patches, const T* x, const ConvGeometry& g) {
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t c = 0; c < g.channels; ++c)
          for (int64_t ki = 0; ki < g.kernel_h; ++ki)
            for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
              const int64_t ih = oh * g.stride - g.padding + ki, iw = ow * g.stride - g.padding + kj;
              const bool inside = ih >= 0 && ih < g.height && iw >= 0 && iw < g.width;
              const int64_t row = (b * g.out_h + oh) * g.out_w + ow, column = (c * g.kernel_h + ki) * g.kernel_w + kj;
              patches[row * g.patch_size() + column] =
                  inside ? x[((b * g.channels + c) * g.height + ih) * g.width + iw] : T(0);
            }
}

template <class T>
void col2im_reference(T* dx, const T* patches, const ConvGeometry& g) {
  std::fill_n(dx, g.batch * g.channels * g.height * g.width, T(0));
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t c = 0; c < g.channels; ++c)
          for (int64_t ki = 0; ki < g.kernel_h; ++ki)
            for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
              const int64_t ih = oh * g.stride - g.padding + ki, iw = ow * g.stride - g.padding + kj;
              if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width) continue;
              const int64_t row = (b * g.out_h + oh) * g.out_w + ow, column = (c * g.kernel_h + ki) * g.kernel_w + kj;
              dx[((b * g.channels + c) * g.height + ih) * g.width + iw] += patches[row * g.patch_size() + column];
            }
}

template <class T>
void conv2d_forward_reference(T* y, const T* x, const T* weight, const T* bias, const ConvGeometry& g,
                              int64_t out_channels) {
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow)
        for (int64_t o = 0; o < out_channels; ++o) {
          double acc = bias ? bias[o] : 0.0;
          for (int64_t c = 0; c < g.channels; ++c)
            for (int64_t ki = 0; ki < g.kernel_h; ++ki)
              for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
                const int64_t ih = oh * g.stride - g.padding + ki, iw = ow * g.stride - g.padding + kj;
                if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width) continue;
                acc += static_cast<double>(x[((b * g.channels + c) * g.height + ih) * g.width + iw]) *
                       weight[((o * g.channels + c) * g.kernel_h + ki) * g.kernel_w + kj];
              }
          y[((b * g.out_h + oh) * g.out_w + ow) * out_channels + o] = static_cast<T>(acc);
        }
}

template <class T>
void conv2d_backward_reference(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight,
                               const ConvGeometry& g, int64_t out_channels) {
  auto dy_at = [&](int64_t b, int64_t oh, int64_t ow, int64_t o) {
    return static_cast<double>(dy[((b * g.out_h + oh) * g.out_w + ow) * out_channels + o]);
  };
  for (int64_t o = 0; o < out_channels; ++o) {  // dbias[o] = sum over (b, oh, ow) of dy
    double acc = 0;
    for (int64_t b = 0; b < g.batch; ++b)
      for (int64_t oh = 0; oh < g.out_h; ++oh)
        for (int64_t ow = 0; ow < g.out_w; ++ow) acc += dy_at(b, oh, ow, o);
    dbias[o] = static_cast<T>(acc);
  }
  // dweight[o, c, ki, kj] = sum over (b, oh, ow) of dy[b, oh, ow, o] * x[b, c, oh*s - p + ki, ow*s - p + kj]
  for (int64_t o = 0; o < out_channels; ++o)
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t ki = 0; ki < g.kernel_h; ++ki)
        for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
          double acc = 0;
          for (int64_t b = 0; b < g.batch; ++b)
            for (int64_t oh = 0; oh < g.out_h; ++oh)
              for (int64_t ow = 0; ow < g.out_w; ++ow) {
                const int64_t ih = oh * g.stride - g.padding + ki, iw = ow * g.stride - g.padding + kj;
                if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width) continue;
                acc += dy_at(b, oh, ow, o) * x[((b * g.channels + c) * g.height + ih) * g.width + iw];
              }
          dweight[((o * g.channels + c) * g.kernel_h + ki) * g.kernel_w + kj] = static_cast<T>(acc);
        }
  // dx gathered per pixel (the transposed convolution): pixel (ih, iw) was read by output (oh, ow) through
  // kernel tap (ki, kj) exactly when oh*s - p + ki = ih and ow*s - p + kj = iw.
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t c = 0; c < g.channels; ++c)
      for (int64_t ih = 0; ih < g.height; ++ih)
        for (int64_t iw = 0; iw < g.width; ++iw) {
          double acc = 0;
          for (int64_t ki = 0; ki < g.kernel_h; ++ki)
            for (int64_t kj = 0; kj < g.kernel_w; ++kj) {
              const int64_t row_offset = ih + g.padding - ki, column_offset = iw + g.padding - kj;
              if (row_offset < 0 || column_offset < 0 || row_offset % g.stride != 0 || column_offset % g.stride != 0)
                continue;
              const int64_t oh = row_offset / g.stride, ow = column_offset / g.stride;
              if (oh >= g.out_h || ow >= g.out_w) continue;
              for (int64_t o = 0; o < out_channels; ++o)
                acc += dy_at(b, oh, ow, o) * weight[((o * g.channels + c) * g.kernel_h + ki) * g.kernel_w + kj];
            }
          dx[((b * g.channels + c) * g.height + ih) * g.width + iw] = static_cast<T>(acc);
        }
}

template void im2col_cpu<float>(float*, const float*, const ConvGeometry&);
template void im2col_cpu<double>(double*, const double*, const ConvGeometry&);
template void im2col_reference<float>(float*, const float*, const ConvGeometry&);
template void im2col_reference<double>(double*, const double*, const ConvGeometry&);
template void col2im_cpu<float>(float*, const float*, const ConvGeometry&);
template void col2im_cpu<double>(double*, const double*, const ConvGeometry&);
template void col2im_reference<float>(float*, const float*, const ConvGeometry&);
template void col2im_reference<double>(double*, const double*, const ConvGeometry&);
template void conv2d_forward_cpu<float>(float*, float*, const float*, const float*, const float*, const ConvGeometry&,
                                        int64_t);
template void conv2d_forward_cpu<double>(double*, double*, const double*, const double*, const double*,
                                         const ConvGeometry&, int64_t);
template void conv2d_forward_reference<float>(float*, const float*, const float*, const float*, const ConvGeometry&,
                                              int64_t);
template void conv2d_forward_reference<double>(double*, const double*, const double*, const double*,
                                               const ConvGeometry&, int64_t);
template void conv2d_backward_cpu<float>(float*, float*, float*, const float*, const float*, const float*,
                                         const ConvGeometry&, int64_t);
template void conv2d_backward_cpu<double>(double*, double*, double*, const double*, const double*, const double*,
                                          const ConvGeometry&, int64_t);
template void conv2d_backward_reference<float>(float*, float*, float*, const float*, const float*, const float*,
                                               const ConvGeometry&, int64_t);
template void conv2d_backward_reference<double>(double*, double*, double*, const double*, const double*,
                                                const double*, const ConvGeometry&, int64_t);

// ---- ops ----

namespace {

// Validates x (B, C, H, W) and the window; returns the geometry with Ho, Wo >= 1.
ConvGeometry checked_geometry(const Tensor& x, int64_t kernel_h, int64_t kernel_w, int64_t stride, int64_t padding,
                              const char* op) {
  if (!x.defined()) fail(op, "undefined input");
  if (x.dtype() == DType::i64) fail(op, "needs a float tensor, got " + x.str());
  if (x.dim() != 4) fail(op, "expects x (B, C, H, W), got " + x.str());
  if (kernel_h < 1 || kernel_w < 1 || stride < 1 || padding < 0)
    fail(op, "needs kernel >= 1, stride >= 1 and padding >= 0, got kernel (" + std::to_string(kernel_h) + ", " +
                 std::to_string(kernel_w) + "), stride " + std::to_string(stride) + ", padding " +
                 std::to_string(padding));
  // Every size below is checked against 2^63: unchecked, a kernel of 2^31 x 2^31 made C*kh*kw wrap to 0, and
  // im2col filled a patch buffer of 0 bytes.
  const auto too_large = [&] {
    fail(op, "kernel (" + std::to_string(kernel_h) + ", " + std::to_string(kernel_w) + ") and padding " +
                 std::to_string(padding) + " on " + x.str() + " give sizes past 2^63");
  };
  int64_t twice_padding = 0, padded_h = 0, padded_w = 0;
  if (__builtin_mul_overflow(padding, 2, &twice_padding) || __builtin_add_overflow(x.size(2), twice_padding, &padded_h) ||
      __builtin_add_overflow(x.size(3), twice_padding, &padded_w))
    too_large();
  if (padded_h < kernel_h || padded_w < kernel_w)
    fail(op, "kernel (" + std::to_string(kernel_h) + ", " + std::to_string(kernel_w) + ") is larger than the input " +
                 x.str() + " with padding " + std::to_string(padding));
  const ConvGeometry g = make_conv_geometry(x.size(0), x.size(1), x.size(2), x.size(3), kernel_h, kernel_w, stride, padding);
  int64_t positions = 0, patch_size = 0, workspace = 0;
  if (__builtin_mul_overflow(g.out_h, g.out_w, &positions) || __builtin_mul_overflow(g.channels, kernel_h, &patch_size) ||
      __builtin_mul_overflow(patch_size, kernel_w, &patch_size) || __builtin_mul_overflow(positions, patch_size, &workspace) ||
      __builtin_mul_overflow(workspace, std::max<int64_t>(g.batch, 1), &workspace))
    too_large();
  return g;
}

// Optional operands (bias, gradients nobody asked for) reach the kernels as null pointers.
template <class T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

Tensor unfold(const Tensor& x, int64_t kernel_h, int64_t kernel_w, int64_t stride, int64_t padding) {
  const ConvGeometry g = checked_geometry(x, kernel_h, kernel_w, stride, padding, "unfold");
  const int64_t positions = g.positions(), patch_size = g.patch_size();
  Tensor patches = Tensor::empty({g.batch, positions, patch_size}, x.dtype(), x.device());  // (B, L, C*kh*kw)
  {
    NoGradGuard no_grad;
    const Tensor xc = contiguous(x);  // (B, C, H, W)
    dispatch_float(
        x, "unfold", [&](auto zero) { im2col_cpu(patches.data<decltype(zero)>(), xc.data<decltype(zero)>(), g); },
        [&] { cuda::im2col(patches.data<float>(), xc.data<float>(), g); });
  }
  // F.unfold's (B, C*kh*kw, L) as a transposed view of the patch rows: the usual consumer is a patch
  // embedding, unfold(x).transpose(1, 2) (B, L, C*kh*kw), which then reads contiguous memory with no copy.
  Tensor y = make_view(patches, {g.batch, patch_size, positions}, {positions * patch_size, 1, patch_size}, 0);
  record("unfold", y, {x}, {}, [g](const Tensor& dy, const BackwardContext&) -> Grads {
    const Tensor dpatches = contiguous(transpose(dy, 1, 2));  // (B, L, C*kh*kw)
    Tensor dx = Tensor::empty({g.batch, g.channels, g.height, g.width}, dy.dtype(), dy.device());  // (B, C, H, W)
    dispatch_float(
        dy, "unfold backward", [&](auto zero) { col2im_cpu(dx.data<decltype(zero)>(), dpatches.data<decltype(zero)>(), g); },
        [&] { cuda::col2im(dx.data<float>(), dpatches.data<float>(), g); });
    return {dx};
  });
  return y;
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride, int64_t padding) {
  if (!x.defined() || !weight.defined()) fail("conv2d", "undefined input");
  if (weight.dim() != 4) fail("conv2d", "expects weight (O, C, kh, kw), got " + weight.str());
  const ConvGeometry g = checked_geometry(x, weight.size(2), weight.size(3), stride, padding, "conv2d");
  const int64_t out_channels = weight.size(0), positions = g.positions(), patch_size = g.patch_size();
  if (weight.dtype() != x.dtype() || (bias.defined() && bias.dtype() != x.dtype()))
    fail("conv2d", "needs one float dtype, got x " + x.str() + ", weight " + weight.str() +
                       (bias.defined() ? ", bias " + bias.str() : std::string()));
  check_same_device("conv2d", {x, weight, bias});
  if (weight.size(1) != g.channels)
    fail("conv2d", "x " + x.str() + " has " + std::to_string(g.channels) + " channels but weight " + weight.str() +
                       " (O, C, kh, kw) expects " + std::to_string(weight.size(1)));
  if (out_channels == 0 || g.channels == 0)
    fail("conv2d", "needs at least one channel in and out, got weight " + weight.str());
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != out_channels))
    fail("conv2d", "bias " + bias.str() + " does not match weight " + weight.str() + " (O, C, kh, kw)");

  Tensor out = Tensor::empty({g.batch, g.out_h, g.out_w, out_channels}, x.dtype(), x.device());  // (B, Ho, Wo, O)
  Tensor patches = Tensor::empty({g.batch * positions, patch_size}, x.dtype(), x.device());     // (B*L, C*kh*kw)
  Tensor w;                                                                                      // (O, C, kh, kw)
  {
    NoGradGuard no_grad;
    const Tensor xc = contiguous(x);  // (B, C, H, W)
    w = contiguous(weight);
    const Tensor b = bias.defined() ? contiguous(bias) : Tensor();  // (O)
    dispatch_float(
        x, "conv2d",
        [&](auto zero) {
          using T = decltype(zero);
          conv2d_forward_cpu(out.data<T>(), patches.data<T>(), xc.data<T>(), w.data<T>(), data_or_null<T>(b), g,
                             out_channels);
        },
        [&] {  // the CPU kernel's steps: im2col, the bias rows, every image's positions in one GEMM
          const int64_t rows = g.batch * positions;
          cuda::im2col(patches.data<float>(), xc.data<float>(), g);
          if (b.defined()) cuda::fill_rows(out.data<float>(), b.data<float>(), rows, out_channels);
          cuda::gemm(false, true, rows, out_channels, patch_size, 1.0f, patches.data<float>(), patch_size,
                     w.data<float>(), patch_size, b.defined() ? 1.0f : 0.0f, out.data<float>(), out_channels);
        });
  }
  // (B, O, Ho, Wo) over channels-last memory, as GEMM wrote it. Patch embeddings continue with
  // flatten(2).transpose(1, 2) (B, L, O), which is then contiguous: no transposing copy either way.
  Tensor y = make_view(out, {g.batch, out_channels, g.out_h, g.out_w},
                       {positions * out_channels, 1, g.out_w * out_channels, out_channels}, 0);
  // The patches serve dweight only and the weight serves dx only: keep neither when its gradient is not
  // wanted (a frozen weight, or an input image, which never requires grad).
  const bool weight_grad = weight.requires_grad(), input_grad = x.requires_grad();
  record("conv2d", y, {x, weight, bias}, {weight_grad ? patches : Tensor(), input_grad ? w : Tensor()},
         [g, out_channels](const Tensor& dy, const BackwardContext& ctx) -> Grads {
           const Tensor &patches = ctx.saved[0], &w = ctx.saved[1];  // (B*L, C*kh*kw), (O, C, kh, kw)
           const Tensor dy_rows = contiguous(permute(dy, {0, 2, 3, 1}));  // (B, Ho, Wo, O), free for our own layout
           const DType dtype = dy.dtype();
           Tensor dx, dw, dpatches;
           if (ctx.needs_input_grad[0]) {
             dx = Tensor::empty({g.batch, g.channels, g.height, g.width}, dtype, dy.device());      // (B, C, H, W)
             dpatches = Tensor::empty({g.batch * g.positions(), g.patch_size()}, dtype, dy.device());  // (B*L, C*kh*kw)
           }
           if (ctx.needs_input_grad[1])  // (O, C, kh, kw)
             dw = Tensor::empty({out_channels, g.channels, g.kernel_h, g.kernel_w}, dtype, dy.device());
           dispatch_float(
               dy, "conv2d backward",
               [&](auto zero) {
                 using T = decltype(zero);
                 conv2d_backward_cpu(data_or_null<T>(dx), data_or_null<T>(dw), data_or_null<T>(dpatches),
                                     dy_rows.data<T>(), data_or_null<T>(patches), data_or_null<T>(w), g, out_channels);
               },
               [&] {  // dw = dy^T patches; dpatches = dy w, folded back onto the pixels
                 const int64_t rows = g.batch * g.positions(), patch_size = g.patch_size();
                 if (dw.defined())
                   cuda::gemm(true, false, out_channels, patch_size, rows, 1.0f, dy_rows.data<float>(), out_channels,
                              patches.data<float>(), patch_size, 0.0f, dw.data<float>(), patch_size);
                 if (dx.defined()) {
                   cuda::gemm(false, false, rows, patch_size, out_channels, 1.0f, dy_rows.data<float>(), out_channels,
                              w.data<float>(), patch_size, 0.0f, dpatches.data<float>(), patch_size);
                   cuda::col2im(dx.data<float>(), dpatches.data<float>(), g);
                 }
               });
           Tensor db;  // (O)
           if (ctx.needs_input_grad[2]) db = sum(reshape(dy_rows, {-1, out_channels}), {0});
           return {dx, dw, db};
         });
  return y;
}

}  // namespace vt
