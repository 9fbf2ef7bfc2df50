// Convolution kernels (ops/conv.cpp) with their plain reference versions, callable from tests.
// Layouts: x (B, C, H, W) contiguous; patches (B, L, C*kh*kw), one row per sliding position (the transpose of
// F.unfold's (B, C*kh*kw, L)), row entries in (c, ki, kj) order; conv outputs channels-last (B, Ho, Wo, O).
#pragma once

#include <cstdint>

namespace vt {

// Sizes of one convolution: square stride and zero padding, no dilation, Ho = (H + 2p - kh) / stride + 1.
struct ConvGeometry {
  int64_t batch = 0, channels = 0, height = 0, width = 0;
  int64_t kernel_h = 0, kernel_w = 0, stride = 1, padding = 0;
  int64_t out_h = 0, out_w = 0;

  int64_t positions() const { return out_h * out_w; }                   // L
  int64_t patch_size() const { return channels * kernel_h * kernel_w; }  // C*kh*kw
};

// Fills out_h and out_w from the other fields (no validation: the ops check their arguments first).
inline ConvGeometry make_conv_geometry(int64_t batch, int64_t channels, int64_t height, int64_t width,
                                       int64_t kernel_h, int64_t kernel_w, int64_t stride, int64_t padding) {
  ConvGeometry g{batch, channels, height, width, kernel_h, kernel_w, stride, padding, 0, 0};
  g.out_h = (height + 2 * padding - kernel_h) / stride + 1;
  g.out_w = (width + 2 * padding - kernel_w) / stride + 1;
  return g;
}

// patches (B, L, C*kh*kw) = receptive fields of x (B, C, H, W), zeros where they overlap the padding.
template <class T> void im2col_cpu(T* patches, const T* x, const ConvGeometry& g);
template <class T> void im2col_reference(T* patches, const T* x, const ConvGeometry& g);

// dx (B, C, H, W) = sum of every patch entry (B, L, C*kh*kw) onto the pixel it was read from (col2im, "fold");
// entries that fell on the padding are dropped.
template <class T> void col2im_cpu(T* dx, const T* patches, const ConvGeometry& g);
template <class T> void col2im_reference(T* dx, const T* patches, const ConvGeometry& g);

// y (B, Ho, Wo, O) = patches (B*L, C*kh*kw) @ weight^T + bias, with patches filled from x first (a workspace
// of B*L*C*kh*kw elements); weight (O, C, kh, kw) contiguous; bias (O) or null.
template <class T>
void conv2d_forward_cpu(T* y, T* patches, const T* x, const T* weight, const T* bias, const ConvGeometry& g,
                        int64_t out_channels);
// Direct convolution, y (B, Ho, Wo, O), double accumulation.
template <class T>
void conv2d_forward_reference(T* y, const T* x, const T* weight, const T* bias, const ConvGeometry& g,
                              int64_t out_channels);

// From dy (B, Ho, Wo, O) and the forward's patches: dweight (O, C, kh, kw) = dy^T @ patches, and
// dx (B, C, H, W) = col2im(dy @ weight) through the dpatches workspace (B*L*C*kh*kw elements).
// dx or dweight may be null when not wanted (dpatches is then unused too when dx is null).
template <class T>
void conv2d_backward_cpu(T* dx, T* dweight, T* dpatches, const T* dy, const T* patches, const T* weight,
                         const ConvGeometry& g, int64_t out_channels);
// Direct loops from x instead of patches; also writes dbias (O) = sum of dy over (B, Ho, Wo). Double accumulation.
template <class T>
void conv2d_backward_reference(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight,
                               const ConvGeometry& g, int64_t out_channels);

}  // namespace vt
