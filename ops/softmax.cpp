// softmax and log_softmax over any dim. Conventions: kernels work on rows of the last dim of a contiguous
// (rows, cols) matrix; another dim is first moved last (a permuted copy) and the result is handed back as a
// permuted view in the input's dim order. Both ops save their output, which is all their backward needs.
#include <cmath>
#include <limits>

#include "autograd/parallel.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "ops/softmax_kernels.h"

namespace vt {

// Elements below which a kernel stays on one thread: about 1 ns each with the vectorised exp, so 16k elements
// take ~15 us, well above the cost of waking the other threads.
constexpr int64_t kSoftmaxGrain = 1 << 14;

// exp in the kernels: the vectorisable polynomial for float32 (the hot path), libm's exp for float64,
// whose callers (gradchecks, references) want full double accuracy more than speed.
static inline float kernel_exp(float x) { return vectorizable_exp(x); }
static inline double kernel_exp(double x) { return std::exp(x); }

// Numerical stability: softmax(x) = softmax(x - c) for any constant c, and with c = max(x) every exponent is
// <= 0, so exp cannot overflow (exp(89) is already inf in float32: logits ~1000 would give inf / inf = NaN)
// and the largest term is exactly 1, so the sum is >= 1 and the division and log are well-conditioned.
// (A row that is all -inf has no finite max and gives NaN, as in PyTorch.)
// The OpenMP simd reductions keep one partial sum per vector lane, which is what lets the compiler vectorise
// a float reduction without -ffast-math; float32 accumulation is then accurate enough here: the terms are
// positive (no cancellation) and each lane adds only cols / 8 of them.
template <class T>
static T row_max(const T* x, int64_t cols) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < cols; ++c) m = x[c] > m ? x[c] : m;  // measured 2x faster than std::max here
  return m;
}

template <class T>
void softmax_forward_cpu(T* y, const T* x, int64_t rows, int64_t cols) {
  parallel_for(0, rows, std::max<int64_t>(1, kSoftmaxGrain / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      const T m = row_max(xr, cols);
      T total = 0;
#pragma omp simd reduction(+ : total)
      for (int64_t c = 0; c < cols; ++c) {
        const T e = kernel_exp(xr[c] - m);
        yr[c] = e;
        total += e;
      }
      const T inverse = T(1) / total;
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) yr[c] *= inverse;
    }
  });
}

template <class T>
void softmax_backward_cpu(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols) {
  parallel_for(0, rows, std::max<int64_t>(1, kSoftmaxGrain / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* dyr = dy + r * cols;
      const T* yr = y + r * cols;
      T* dxr = dx + r * cols;
      T dot = 0;  // sum_j dy_j y_j
#pragma omp simd reduction(+ : dot)
      for (int64_t c = 0; c < cols; ++c) dot += dyr[c] * yr[c];
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) dxr[c] = yr[c] * (dyr[c] - dot);
    }
  });
}

// log_softmax = (x - max) - log(sum exp(x - max)): the shifted value is subtracted before the log-sum, so
// logits ~1000 keep the precision of their differences instead of that of 1000.
template <class T>
void log_softmax_forward_cpu(T* y, const T* x, int64_t rows, int64_t cols) {
  parallel_for(0, rows, std::max<int64_t>(1, kSoftmaxGrain / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      const T m = row_max(xr, cols);
      T total = 0;
#pragma omp simd reduction(+ : total)
      for (int64_t c = 0; c < cols; ++c) total += kernel_exp(xr[c] - m);
      const T log_total = std::log(total);
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - m) - log_total;
    }
  });
}

template <class T>
void log_softmax_backward_cpu(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols) {
  parallel_for(0, rows, std::max<int64_t>(1, kSoftmaxGrain / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* dyr = dy + r * cols;
      const T* yr = y + r * cols;
      T* dxr = dx + r * cols;
      T total = 0;  // sum_j dy_j
#pragma omp simd reduction(+ : total)
      for (int64_t c = 0; c < cols; ++c) total += dyr[c];
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) dxr[c] = dyr[c] - kernel_exp(yr[c]) * total;
    }
  });
}

// ---- reference kernels: the textbook formulas, double accumulation, one thread ----

template <class T>
void softmax_forward_reference(T* y, const T* x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, double(x[r * cols + c]));
    double total = 0;
    for (int64_t c = 0; c < cols; ++c) total += std::exp(double(x[r * cols + c]) - m);
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = T(std::exp(double(x[r * cols + c]) - m) / total);
  }
}

// The full Jacobian, derived independently of the fast kernel's closed form:
// d y_j / d x_i = y_j (delta_ij - y_i), so dx_i = sum_j dy_j y_j (delta_ij - y_i).
template <class T>
void softmax_backward_reference(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < cols; ++i) {
      double total = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const double yi = y[r * cols + i], yj = y[r * cols + j];
        total += double(dy[r * cols + j]) * yj * ((i == j ? 1.0 : 0.0) - yi);
      }
      dx[r * cols + i] = T(total);
    }
}

template <class T>
void log_softmax_forward_reference(T* y, const T* x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < cols; ++c) m = std::max(m, double(x[r * cols + c]));
    double total = 0;
    for (int64_t c = 0; c < cols; ++c) total += std::exp(double(x[r * cols + c]) - m);
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = T(double(x[r * cols + c]) - m - std::log(total));
  }
}

// d y_j / d x_i = delta_ij - p_i with p = exp(y), so dx_i = sum_j dy_j (delta_ij - p_i).
template <class T>
void log_softmax_backward_reference(T* dx, const T* dy, const T* y, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < cols; ++i) {
      double total = 0;
      for (int64_t j = 0; j < cols; ++j)
        total += double(dy[r * cols + j]) * ((i == j ? 1.0 : 0.0) - std::exp(double(y[r * cols + i])));
      dx[r * cols + i] = T(total);
    }
}

template void softmax_forward_cpu(float*, const float*, int64_t, int64_t);
template void softmax_forward_cpu(double*, const double*, int64_t, int64_t);
template void softmax_backward_cpu(float*, const float*, const float*, int64_t, int64_t);
template void softmax_backward_cpu(double*, const double*, const double*, int64_t, int64_t);
template void log_softmax_forward_cpu(float*, const float*, int64_t, int64_t);
template void log_softmax_forward_cpu(double*, const double*, int64_t, int64_t);
template void log_softmax_backward_cpu(float*, const float*, const float*, int64_t, int64_t);
template void log_softmax_backward_cpu(double*, const double*, const double*, int64_t, int64_t);
template void softmax_forward_reference(float*, const float*, int64_t, int64_t);
template void softmax_forward_reference(double*, const double*, int64_t, int64_t);
template void softmax_backward_reference(float*, const float*, const float*, int64_t, int64_t);
template void softmax_backward_reference(double*, const double*, const double*, int64_t, int64_t);
template void log_softmax_forward_reference(float*, const float*, int64_t, int64_t);
template void log_softmax_forward_reference(double*, const double*, int64_t, int64_t);
template void log_softmax_backward_reference(float*, const float*, const float*, int64_t, int64_t);
template void log_softmax_backward_reference(double*, const double*, const double*, int64_t, int64_t);

// ---- ops ----

namespace {

// How x is seen as rows of its softmax dim: `to_last` moves that dim last, `to_input_order` moves it back.
struct SoftmaxLayout {
  Shape to_last;          // permutation moving the softmax dim last
  Shape to_input_order;   // its inverse
  int64_t rows = 1, cols = 1;
};

SoftmaxLayout plan_layout(const Tensor& x, int64_t dim, const char* op) {
  if (!x.defined()) fail(op, "undefined input");
  if (x.dtype() == DType::i64) fail(op, "needs a float tensor, got " + x.str());
  const int64_t n = x.dim();
  const int64_t d = wrap_dim(dim, std::max<int64_t>(n, 1), op);  // a 0-dim tensor takes dim 0 or -1, as in PyTorch
  SoftmaxLayout layout;
  for (int64_t i = 0; i < n; ++i)
    if (i != d) layout.to_last.push_back(i);
  if (n > 0) layout.to_last.push_back(d);
  layout.to_input_order.assign(n, 0);
  for (int64_t i = 0; i < n; ++i) layout.to_input_order[layout.to_last[i]] = i;
  layout.cols = n > 0 ? x.shape()[d] : 1;  // a 0-dim tensor is one row of one element
  layout.rows = layout.cols > 0 ? x.numel() / layout.cols : 0;
  return layout;
}

// t (input order) -> (..., D) contiguous with the softmax dim last; no copy when t already is.
Tensor to_rows(const Tensor& t, const SoftmaxLayout& layout) {
  NoGradGuard no_grad;
  return contiguous(permute(t, layout.to_last));
}

// (..., D) with the softmax dim last -> a view in input order.
Tensor from_rows(const Tensor& t_rows, const SoftmaxLayout& layout) {
  NoGradGuard no_grad;
  return permute(t_rows, layout.to_input_order);
}

}  // namespace

// softmax and log_softmax share everything but their kernels: rows of the softmax dim, the forward kernel
// y = f(x) row by row, and a backward kernel that needs only dy and the output y.
enum class SoftmaxKind { softmax, log_softmax };

static Tensor row_softmax_op(const char* name, SoftmaxKind kind, const Tensor& x, int64_t dim) {
  const SoftmaxLayout layout = plan_layout(x, dim, name);
  const Tensor x_rows = to_rows(x, layout);                  // (..., D)
  const Tensor y_rows = Tensor::empty_like(x_rows);          // (..., D)
  const bool log = kind == SoftmaxKind::log_softmax;
  dispatch_float(
      x, name,
      [&](auto zero) {
        using T = decltype(zero);
        if (log) log_softmax_forward_cpu(y_rows.data<T>(), x_rows.data<T>(), layout.rows, layout.cols);
        else softmax_forward_cpu(y_rows.data<T>(), x_rows.data<T>(), layout.rows, layout.cols);
      },
      [&] {
        if (log) cuda::log_softmax_forward(y_rows.data<float>(), x_rows.data<float>(), layout.rows, layout.cols);
        else cuda::softmax_forward(y_rows.data<float>(), x_rows.data<float>(), layout.rows, layout.cols);
      });
  Tensor y = from_rows(y_rows, layout);                      // input order
  record(name, y, {x}, {y_rows}, [name, layout, log](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    const Tensor& y_rows = ctx.saved[0];                     // (..., D)
    const Tensor dy_rows = to_rows(dy, layout);              // (..., D)
    const Tensor dx_rows = Tensor::empty_like(y_rows);       // (..., D)
    dispatch_float(
        y_rows, name,
        [&](auto zero) {
          using T = decltype(zero);
          if (log) log_softmax_backward_cpu(dx_rows.data<T>(), dy_rows.data<T>(), y_rows.data<T>(), layout.rows, layout.cols);
          else softmax_backward_cpu(dx_rows.data<T>(), dy_rows.data<T>(), y_rows.data<T>(), layout.rows, layout.cols);
        },
        [&] {
          if (log)
            cuda::log_softmax_backward(dx_rows.data<float>(), dy_rows.data<float>(), y_rows.data<float>(), layout.rows,
                                       layout.cols);
          else
            cuda::softmax_backward(dx_rows.data<float>(), dy_rows.data<float>(), y_rows.data<float>(), layout.rows,
                                   layout.cols);
        });
    return {from_rows(dx_rows, layout)};
  });
  return y;
}

Tensor softmax(const Tensor& x, int64_t dim) { return row_softmax_op("softmax", SoftmaxKind::softmax, x, dim); }

Tensor log_softmax(const Tensor& x, int64_t dim) {
  return row_softmax_op("log_softmax", SoftmaxKind::log_softmax, x, dim);
}

}  // namespace vt
