// Layer normalisation over the last dim. Conventions: the input is viewed as (rows, D) contiguous rows (a
// non-contiguous input is copied once); statistics are accumulated in double for both float types; forward
// saves the per-row mean and rstd (in the input's dtype) so that backward never recomputes them.
#include <cmath>
#include <type_traits>
#include <vector>

#include "autograd/parallel.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"
#include "ops/layer_norm_kernels.h"
#include "ops/ops.h"

namespace vt {

constexpr int64_t kRowGrain = 1 << 14;  // elements below which a kernel stays on one thread
// The weight and bias gradients sum over rows. Rows are cut into at most this many fixed blocks, each block
// sums into its own partial row and the partial rows are added in block order: no races, and the result
// depends on the shape only, not on the thread count or on which thread ran which block.
constexpr int64_t kGradientBlocks = 32;

// ---- CPU kernels ----

// y = (x - m) s w + b over one row in a single pass, the absent weight (1) and bias (0) chosen at compile
// time: on TNT's 12-wide pixel rows a pass per term cost more in loop overhead than in arithmetic.
template <class T>
struct OneOf {
  T operator()(int64_t) const { return T(1); }
};
template <class T>
struct ZeroOf {
  T operator()(int64_t) const { return T(0); }
};
// Narrow rows (TNT's pixel embeddings: 12 channels in tnt_cifar, 24 in timm's TNT-S) spend more in loop
// control than in arithmetic, so these widths get loops with a compile-time trip count, which the compiler
// unrolls whole; other widths get a run-time one.
template <class F>
static void with_row_width(int64_t cols, const F& rows_of_width) {
  switch (cols) {
    case 12: return rows_of_width(std::integral_constant<int64_t, 12>{});
    case 24: return rows_of_width(std::integral_constant<int64_t, 24>{});
    default: return rows_of_width(cols);
  }
}

template <class T, class Width, class WeightOf, class BiasOf>
static inline void normalise_row(T* y_row, const T* x_row, T m, T s, Width cols, const WeightOf& weight_of,
                                 const BiasOf& bias_of) {
#pragma omp simd
  for (int64_t c = 0; c < cols; ++c) y_row[c] = (x_row[c] - m) * s * weight_of(c) + bias_of(c);
}

// Why two passes: the one-pass variance E[x^2] - E[x]^2 subtracts two numbers of size mean^2 to get one of
// size var. With x = 1e4 + noise of std 1 in float32, E[x^2] = 1e8, whose float spacing is 8, so the
// difference is pure rounding (even negative). Subtracting the mean first gives deviations of size std,
// whose squares sum without cancellation. Accumulating in double keeps the mean itself accurate to ~1e-16
// relative, and `omp simd reduction` lets the compiler vectorise the sums (it may reorder the additions).
template <class T>
void layer_norm_forward_cpu(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t rows,
                            int64_t cols, double eps) {
  const double inv_cols = 1.0 / static_cast<double>(cols);  // a product, not a division per row: 1 ulp of double
  auto rows_of_width = [&](int64_t lo, int64_t hi, auto width) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* x_row = x + r * width;
      T* y_row = y + r * width;
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t c = 0; c < width; ++c) sum += x_row[c];
      const double row_mean = sum * inv_cols;
      double squares = 0;
#pragma omp simd reduction(+ : squares)
      for (int64_t c = 0; c < width; ++c) {
        const double deviation = x_row[c] - row_mean;
        squares += deviation * deviation;
      }
      const double row_rstd = 1.0 / std::sqrt(squares * inv_cols + eps);  // biased variance
      mean[r] = static_cast<T>(row_mean);
      rstd[r] = static_cast<T>(row_rstd);
      // Normalise in T with the saved (rounded) mean and rstd, exactly as backward will rebuild xhat. For
      // float the rounded mean is off by at most half a float spacing of the input's magnitude, the input's
      // own resolution; x - mean is then exact (Sterbenz) where x is close to the mean.
      const T m = mean[r], s = rstd[r];
      if (weight && bias) normalise_row(y_row, x_row, m, s, width, [weight](int64_t c) { return weight[c]; },
                                        [bias](int64_t c) { return bias[c]; });
      else if (weight) normalise_row(y_row, x_row, m, s, width, [weight](int64_t c) { return weight[c]; }, ZeroOf<T>{});
      else if (bias) normalise_row(y_row, x_row, m, s, width, OneOf<T>{}, [bias](int64_t c) { return bias[c]; });
      else normalise_row(y_row, x_row, m, s, width, OneOf<T>{}, ZeroOf<T>{});
    }
  };
  parallel_for(0, rows, std::max<int64_t>(1, kRowGrain / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    with_row_width(cols, [&](auto width) { rows_of_width(lo, hi, width); });
  });
}

// Two-pass statistics in double, normalisation in double, one row at a time.
template <class T>
void layer_norm_forward_reference(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias, int64_t rows,
                                  int64_t cols, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* x_row = x + r * cols;
    double row_mean = 0;
    for (int64_t c = 0; c < cols; ++c) row_mean += x_row[c];
    row_mean /= static_cast<double>(cols);
    double variance = 0;
    for (int64_t c = 0; c < cols; ++c) variance += (x_row[c] - row_mean) * (x_row[c] - row_mean);
    variance /= static_cast<double>(cols);
    const double row_rstd = 1.0 / std::sqrt(variance + eps);
    mean[r] = static_cast<T>(row_mean);
    rstd[r] = static_cast<T>(row_rstd);
    for (int64_t c = 0; c < cols; ++c) {
      double value = (x_row[c] - row_mean) * row_rstd;
      if (weight) value *= weight[c];
      if (bias) value += bias[c];
      y[r * cols + c] = static_cast<T>(value);
    }
  }
}

// With xhat = (x - mean) * rstd and g = dy * weight, y = xhat * weight + bias gives
//   dx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat))
// (the two means are the gradient through the row's mean and through its variance), and
//   dweight = sum over rows of dy * xhat,  dbias = sum over rows of dy.
template <class T>
void layer_norm_backward_cpu(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* mean, const T* rstd,
                             const T* weight, int64_t rows, int64_t cols) {
  const int64_t blocks = std::max<int64_t>(1, std::min(rows, kGradientBlocks));
  // (blocks, cols) partial sums, zero-initialised, in double so that long sums over rows lose nothing in float32.
  // They are accumulated even when dweight or dbias is not wanted: inside the fused pass that costs less than
  // the branches that would keep the loop from vectorising.
  std::vector<double> partial_dweight(blocks * cols), partial_dbias(blocks * cols);
  const double inv_cols = 1.0 / static_cast<double>(cols);

  // One row: a fused pass for the two row means and the partial weight and bias sums, then a pass for dx.
  // weight_of(c) is weight[c] or OneOf, chosen at compile time so that both loops vectorise.
  auto backward_row = [&](int64_t r, double* block_dweight, double* block_dbias, const auto& weight_of, auto width) {
    const T* dy_row = dy + r * width;
    const T* x_row = x + r * width;
    const T m = mean[r], s = rstd[r];
    double sum_g = 0, sum_g_xhat = 0;
#pragma omp simd reduction(+ : sum_g, sum_g_xhat)
    for (int64_t c = 0; c < width; ++c) {
      const T xhat = (x_row[c] - m) * s;
      const T g = dy_row[c] * weight_of(c);
      sum_g += g;
      sum_g_xhat += static_cast<double>(g) * xhat;
      block_dweight[c] += static_cast<double>(dy_row[c]) * xhat;
      block_dbias[c] += dy_row[c];
    }
    if (!dx) return;
    const T mean_g = static_cast<T>(sum_g * inv_cols);
    const T mean_g_xhat = static_cast<T>(sum_g_xhat * inv_cols);
    T* dx_row = dx + r * width;
    for (int64_t c = 0; c < width; ++c) {
      const T g = dy_row[c] * weight_of(c);
      dx_row[c] = s * (g - mean_g - (x_row[c] - m) * s * mean_g_xhat);
    }
  };

  const int64_t grain = rows * cols < kRowGrain ? blocks : 1;
  parallel_for(0, blocks, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      double* block_dweight = partial_dweight.data() + b * cols;
      double* block_dbias = partial_dbias.data() + b * cols;
      with_row_width(cols, [&](auto width) {
        for (int64_t r = b * rows / blocks; r < (b + 1) * rows / blocks; ++r) {
          if (weight) backward_row(r, block_dweight, block_dbias, [weight](int64_t c) { return weight[c]; }, width);
          else backward_row(r, block_dweight, block_dbias, OneOf<T>{}, width);
        }
      });
    }
  });

  // Partial rows added in block order (row 0 accumulates the others).
  auto combine = [&](T* out, std::vector<double>& partial) {
    for (int64_t b = 1; b < blocks; ++b)
      for (int64_t c = 0; c < cols; ++c) partial[c] += partial[b * cols + c];
    for (int64_t c = 0; c < cols; ++c) out[c] = static_cast<T>(partial[c]);
  };
  if (dweight) combine(dweight, partial_dweight);
  if (dbias) combine(dbias, partial_dbias);
}

// The same formulas in double, one row at a time, with whole-tensor sums for dweight and dbias.
template <class T>
void layer_norm_backward_reference(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* mean,
                                   const T* rstd, const T* weight, int64_t rows, int64_t cols) {
  std::vector<double> sum_dweight(cols, 0.0), sum_dbias(cols, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const double m = mean[r], s = rstd[r];
    double sum_g = 0, sum_g_xhat = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = (x[r * cols + c] - m) * s;
      const double g = dy[r * cols + c] * (weight ? static_cast<double>(weight[c]) : 1.0);
      sum_g += g;
      sum_g_xhat += g * xhat;
      sum_dweight[c] += dy[r * cols + c] * xhat;
      sum_dbias[c] += dy[r * cols + c];
    }
    for (int64_t c = 0; c < cols; ++c) {
      const double xhat = (x[r * cols + c] - m) * s;
      const double g = dy[r * cols + c] * (weight ? static_cast<double>(weight[c]) : 1.0);
      if (dx) dx[r * cols + c] = static_cast<T>(s * (g - sum_g / cols - xhat * sum_g_xhat / cols));
    }
  }
  for (int64_t c = 0; c < cols; ++c) {
    if (dweight) dweight[c] = static_cast<T>(sum_dweight[c]);
    if (dbias) dbias[c] = static_cast<T>(sum_dbias[c]);
  }
}

template void layer_norm_forward_cpu<float>(float*, float*, float*, const float*, const float*, const float*,
                                            int64_t, int64_t, double);
template void layer_norm_forward_cpu<double>(double*, double*, double*, const double*, const double*,
                                             const double*, int64_t, int64_t, double);
template void layer_norm_forward_reference<float>(float*, float*, float*, const float*, const float*,
                                                  const float*, int64_t, int64_t, double);
template void layer_norm_forward_reference<double>(double*, double*, double*, const double*, const double*,
                                                   const double*, int64_t, int64_t, double);
template void layer_norm_backward_cpu<float>(float*, float*, float*, const float*, const float*, const float*,
                                             const float*, const float*, int64_t, int64_t);
template void layer_norm_backward_cpu<double>(double*, double*, double*, const double*, const double*,
                                              const double*, const double*, const double*, int64_t, int64_t);
template void layer_norm_backward_reference<float>(float*, float*, float*, const float*, const float*,
                                                   const float*, const float*, const float*, int64_t, int64_t);
template void layer_norm_backward_reference<double>(double*, double*, double*, const double*, const double*,
                                                    const double*, const double*, const double*, int64_t, int64_t);

// ---- op ----

namespace {

template <class T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

void check_layer_norm_inputs(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  if (!x.defined()) fail("layer_norm", "undefined input");
  if (x.dtype() == DType::i64) fail("layer_norm", "needs a float tensor, got " + x.str());
  if (x.dim() < 1) fail("layer_norm", "needs at least one dim to normalise over, got " + x.str());
  if (!(eps >= 0)) fail("layer_norm", "eps must be non-negative, got " + std::to_string(eps));
  for (const auto& [parameter, name] : {std::pair{weight, "weight"}, std::pair{bias, "bias"}}) {
    if (!parameter.defined()) continue;
    if (parameter.dim() != 1 || parameter.size(0) != x.size(-1))
      fail("layer_norm", std::string(name) + " " + parameter.str() + " does not match the last dim of " + x.str());
    if (parameter.dtype() != x.dtype())
      fail("layer_norm", std::string(name) + " " + parameter.str() + " has another dtype than " + x.str());
  }
  check_same_device("layer_norm", {x, weight, bias});
}

template <class T>
void layer_norm_forward_typed(Tensor& y, Tensor& mean, Tensor& rstd, const Tensor& x, const Tensor& weight,
                              const Tensor& bias, int64_t rows, int64_t cols, double eps) {
  layer_norm_forward_cpu(y.data<T>(), mean.data<T>(), rstd.data<T>(), x.data<T>(), data_or_null<T>(weight),
                         data_or_null<T>(bias), rows, cols, eps);
}

template <class T>
void layer_norm_backward_typed(Tensor& dx, Tensor& dweight, Tensor& dbias, const Tensor& dy, const Tensor& x,
                               const Tensor& mean, const Tensor& rstd, const Tensor& weight, int64_t rows,
                               int64_t cols) {
  layer_norm_backward_cpu(data_or_null<T>(dx), data_or_null<T>(dweight), data_or_null<T>(dbias), dy.data<T>(),
                          x.data<T>(), mean.data<T>(), rstd.data<T>(), data_or_null<T>(weight), rows, cols);
}

}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_layer_norm_inputs(x, weight, bias, eps);
  const int64_t cols = x.size(-1);
  const int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());  // (..., D)
  Tensor mean = Tensor::empty({rows}, x.dtype(), x.device());  // (rows)
  Tensor rstd = Tensor::empty({rows}, x.dtype(), x.device());  // (rows)
  Tensor x_rows, weight_row, bias_row;
  {
    NoGradGuard no_grad;  // these copies (only of non-contiguous inputs) are not part of the graph
    x_rows = contiguous(x);                                             // (..., D)
    weight_row = weight.defined() ? contiguous(weight) : Tensor();  // (D)
    bias_row = bias.defined() ? contiguous(bias) : Tensor();        // (D)
  }
  dispatch_float(
      x, "layer_norm",
      [&](auto zero) { layer_norm_forward_typed<decltype(zero)>(y, mean, rstd, x_rows, weight_row, bias_row, rows, cols, eps); },
      [&] {
        cuda::layer_norm_forward(y.data<float>(), mean.data<float>(), rstd.data<float>(), x_rows.data<float>(),
                                 data_or_null<float>(weight_row), data_or_null<float>(bias_row), rows, cols, eps);
      });
  record("layer_norm", y, {x, weight, bias}, {x_rows, mean, rstd, weight_row},
         [rows, cols](const Tensor& dy, const BackwardContext& ctx) -> Grads {
           const Tensor &x = ctx.saved[0], &mean = ctx.saved[1], &rstd = ctx.saved[2], &weight = ctx.saved[3];
           const Tensor dy_rows = contiguous(dy);  // (..., D)
           Tensor dx, dweight, dbias;
           if (ctx.needs_input_grad[0]) dx = Tensor::empty(x.shape(), dy.dtype(), dy.device());  // (..., D)
           if (ctx.needs_input_grad[1]) dweight = Tensor::empty({cols}, dy.dtype(), dy.device());  // (D)
           if (ctx.needs_input_grad[2]) dbias = Tensor::empty({cols}, dy.dtype(), dy.device());    // (D)
           dispatch_float(
               dy, "layer_norm backward",
               [&](auto zero) {
                 layer_norm_backward_typed<decltype(zero)>(dx, dweight, dbias, dy_rows, x, mean, rstd, weight, rows, cols);
               },
               [&] {
                 cuda::layer_norm_backward(data_or_null<float>(dx), data_or_null<float>(dweight),
                                           data_or_null<float>(dbias), dy_rows.data<float>(), x.data<float>(),
                                           mean.data<float>(), rstd.data<float>(), data_or_null<float>(weight), rows, cols);
               });
           return {dx, dweight, dbias};
         });
  return y;
}

}  // namespace vt
