// Layer-norm CPU kernels and their plain reference versions (defined in ops/layer_norm.cpp for float and double).
// Conventions: outputs first, then inputs, then sizes; x is (rows, cols) contiguous and normalised over cols;
// weight, bias and any output that is not wanted (dx, dweight, dbias) may be null.
#pragma once

#include <cstdint>

namespace vt {

// y (rows, cols) = (x - mean) * rstd * weight + bias, also writing mean (rows) and rstd (rows) for backward.
template <class T>
void layer_norm_forward_cpu(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t rows,
                            int64_t cols, double eps);
template <class T>
void layer_norm_forward_reference(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t rows,
                                  int64_t cols, double eps);

// dx (rows, cols), dweight (cols), dbias (cols) from dy (rows, cols) and the forward's x, mean, rstd, weight.
template <class T>
void layer_norm_backward_cpu(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* mean, const T* rstd,
                             const T* weight, int64_t rows, int64_t cols);
template <class T>
void layer_norm_backward_reference(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* mean,
                                   const T* rstd, const T* weight, int64_t rows, int64_t cols);

}  // namespace vt
