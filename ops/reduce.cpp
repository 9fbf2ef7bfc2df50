// Reductions over any set of dims, with keepdim. Conventions: the input is viewed as (rows, cols) with the
// kept dims as rows and the reduced dims as cols; a contiguous input reduced over trailing or leading dims
// is read in place, any other layout is first permuted and copied. Float32 row sums accumulate in double.
#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/device.h"
#include "autograd/parallel.h"
#include "ops/cuda/kernels.h"
#include "ops/ops.h"

namespace vt {

namespace {

struct Reduction {
  std::vector<bool> reduced;  // per input dim
  Shape kept_shape;           // output shape with keepdim
  Shape out_shape;            // output shape as requested
  Shape permutation;          // kept dims, then reduced dims
  int64_t rows = 1, cols = 1;
};

Reduction plan_reduction(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, const char* op) {
  Reduction r;
  const int64_t n = x.dim();
  r.reduced.assign(n, dims.empty());
  for (int64_t d : dims) {
    // A 0-dim tensor takes dim 0 or -1 as its one value, reduced to itself, as in PyTorch.
    const int64_t w = wrap_dim(d, std::max<int64_t>(n, 1), op);
    if (n == 0) {
      if (dims.size() > 1) fail(op, "dims " + shape_str(dims) + " for a 0-dim tensor");
      break;
    }
    if (r.reduced[w]) fail(op, "dim " + std::to_string(d) + " listed twice for " + x.str());
    r.reduced[w] = true;
  }
  for (int64_t d = 0; d < n; ++d) {
    const int64_t s = x.shape()[d];
    r.kept_shape.push_back(r.reduced[d] ? 1 : s);
    if (!r.reduced[d]) {
      r.out_shape.push_back(s);
      r.permutation.push_back(d);
      r.rows *= s;  // rows * cols = x.numel(), which shape_numel checked when x was made
    }
  }
  for (int64_t d = 0; d < n; ++d)
    if (r.reduced[d]) {
      r.permutation.push_back(d);
      r.cols *= x.shape()[d];
    }
  if (keepdim) r.out_shape = r.kept_shape;
  return r;
}

// True when x is contiguous and every reduced dim comes before every kept dim (reduce "columns").
bool reduces_leading_dims(const Tensor& x, const Reduction& r) {
  if (!x.is_contiguous()) return false;
  bool seen_kept = false;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (x.shape()[d] == 1) continue;
    if (!r.reduced[d]) seen_kept = true;
    else if (seen_kept) return false;
  }
  return true;
}

// ---- CPU kernels ----

// y[r] = sum_c x[r * cols + c], in double. One long row is cut into chunks whose size depends on its length
// only, never on the thread count, and their sums are added in order: any number of threads gives the same bits.
template <class T>
void sum_rows_cpu(T* y, const T* x, int64_t rows, int64_t cols) {
  if (rows == 1) {
    constexpr int64_t kMaxChunks = 1024;
    const int64_t chunk = std::max<int64_t>(int64_t{1} << 14, (cols + kMaxChunks - 1) / kMaxChunks);
    const int64_t chunks = (cols + chunk - 1) / chunk;
    double partial[kMaxChunks];
    parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t k = lo; k < hi; ++k) {
        double acc = 0;
        for (int64_t c = k * chunk; c < std::min(cols, (k + 1) * chunk); ++c) acc += x[c];
        partial[k] = acc;
      }
    });
    double total = 0;
    for (int64_t k = 0; k < chunks; ++k) total += partial[k];
    y[0] = static_cast<T>(total);
    return;
  }
  parallel_for(0, rows, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* row = x + r * cols;
      double acc = 0;
      for (int64_t c = 0; c < cols; ++c) acc += row[c];
      y[r] = static_cast<T>(acc);
    }
  });
}

// y[r] = sum_c x[c * rows + r]: column sums of a (cols, rows) matrix, e.g. a bias gradient over B*N tokens. Each
// thread takes a range of r and walks down c, summing in double (a float32 running sum of n = 8,320 tokens has
// an error bound of n 2^-24 = 5e-4 relative): 256 accumulators at a time, which stay in L1 and vectorise over r.
template <class T>
void sum_columns_cpu(T* y, const T* x, int64_t rows, int64_t cols) {
  parallel_for(0, rows, std::max<int64_t>(16, (1 << 15) / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    constexpr int64_t kBlock = 256;
    double acc[kBlock];
    for (int64_t block = lo; block < hi; block += kBlock) {
      const int64_t n = std::min(kBlock, hi - block);
      std::fill(acc, acc + n, 0.0);
      for (int64_t c = 0; c < cols; ++c) {
        const T* row = x + c * rows + block;
        for (int64_t r = 0; r < n; ++r) acc[r] += row[r];
      }
      for (int64_t r = 0; r < n; ++r) y[block + r] = static_cast<T>(acc[r]);
    }
  });
}

// y[r] = max_c x[r * cols + c], index[r] = first c attaining it (NaN wins, as in PyTorch).
template <class T>
void max_rows_cpu(T* y, int64_t* index, const T* x, int64_t rows, int64_t cols) {
  parallel_for(0, rows, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(cols, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* row = x + r * cols;
      int64_t best = 0;
      for (int64_t c = 1; c < cols; ++c) {
        if (std::isnan(row[best])) break;
        if (row[c] > row[best] || std::isnan(row[c])) best = c;
      }
      y[r] = row[best];
      index[r] = best;
    }
  });
}

// x viewed so that reduced dims are last and contiguous: (rows, cols).
Tensor rows_by_cols(const Tensor& x, const Reduction& r) {
  return contiguous(permute(x, r.permutation));
}

void check_reducible(const Tensor& x, const char* op) {
  if (!x.defined()) fail(op, "undefined input");
  if (x.dtype() == DType::i64) fail(op, "needs a float tensor, got " + x.str());
  check_cuda_dtype(op, x);
}

// values (rows) and index (rows) of each row's first maximum, on x's device.
void max_of_rows(const Tensor& values, const Tensor& index, const Tensor& source, int64_t rows, int64_t cols) {
  switch (source.device()) {
    case Device::cpu:
      if (source.dtype() == DType::f32)
        max_rows_cpu(values.data<float>(), index.data<int64_t>(), source.data<float>(), rows, cols);
      else
        max_rows_cpu(values.data<double>(), index.data<int64_t>(), source.data<double>(), rows, cols);
      break;
    case Device::cuda:
      on_cuda("max", [&] { cuda::max_rows(values.data<float>(), index.data<int64_t>(), source.data<float>(), rows, cols); });
      break;
  }
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_reducible(x, "sum");
  const Reduction r = plan_reduction(x, dims, keepdim, "sum");
  Tensor y = Tensor::empty(r.out_shape, x.dtype(), x.device());
  {
    NoGradGuard no_grad;  // the permuted copy below is an implementation detail, not part of the graph
    // A full reduction is one long row (threaded), not one column.
    const bool columns = reduces_leading_dims(x, r) && r.rows > 1;
    const Tensor source = columns ? x : rows_by_cols(x, r);
    switch (x.device()) {
      case Device::cpu:
        if (x.dtype() == DType::f32) {
          if (columns) sum_columns_cpu(y.data<float>(), source.data<float>(), r.rows, r.cols);
          else sum_rows_cpu(y.data<float>(), source.data<float>(), r.rows, r.cols);
        } else {
          if (columns) sum_columns_cpu(y.data<double>(), source.data<double>(), r.rows, r.cols);
          else sum_rows_cpu(y.data<double>(), source.data<double>(), r.rows, r.cols);
        }
        break;
      case Device::cuda:
        on_cuda("sum", [&] {
          if (columns) cuda::sum_columns(y.data<float>(), source.data<float>(), r.rows, r.cols);
          else cuda::sum_rows(y.data<float>(), source.data<float>(), r.rows, r.cols);
        });
        break;
    }
  }
  const Shape input_shape = x.shape(), kept_shape = r.kept_shape;
  record("sum", y, {x}, {}, [input_shape, kept_shape](const Tensor& dy, const BackwardContext&) -> Grads {
    return {expand(reshape(dy, kept_shape), input_shape)};  // every summed element gets dy
  });
  return y;
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_reducible(x, "mean");
  const Reduction r = plan_reduction(x, dims, keepdim, "mean");
  // An empty reduction is 0 / 0: the sum 0 times 1 / 0 = inf gives NaN, as in PyTorch.
  return mul(sum(x, dims, keepdim), 1.0 / static_cast<double>(r.cols));
}

Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_reducible(x, "max");
  const Reduction r = plan_reduction(x, dims, keepdim, "max");
  if (r.cols == 0) fail("max", "reduction over an empty dim of " + x.str());
  Tensor y = Tensor::empty(r.out_shape, x.dtype(), x.device());
  Tensor index = Tensor::empty({r.rows}, DType::i64, x.device());
  {
    NoGradGuard no_grad;
    max_of_rows(y, index, rows_by_cols(x, r), r.rows, r.cols);
  }
  const Shape permutation = r.permutation;
  const int64_t rows = r.rows, cols = r.cols;
  const Shape permuted_shape = [&] {
    Shape s;
    for (int64_t d : r.permutation) s.push_back(x.shape()[d]);
    return s;
  }();
  record("max", y, {x}, {index}, [=](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    // The gradient goes to the first maximal element of each reduced group only.
    const Tensor g = contiguous(dy);
    Tensor dx;  // (rows, cols)
    switch (dy.device()) {
      case Device::cpu: {
        dx = Tensor::zeros({rows, cols}, dy.dtype(), dy.device());
        const int64_t* best = ctx.saved[0].data<int64_t>();
        for (int64_t row = 0; row < rows; ++row) {
          if (dy.dtype() == DType::f32) dx.data<float>()[row * cols + best[row]] = g.data<float>()[row];
          else dx.data<double>()[row * cols + best[row]] = g.data<double>()[row];
        }
        break;
      }
      case Device::cuda:
        dx = Tensor::empty({rows, cols}, dy.dtype(), dy.device());
        on_cuda("max backward", [&] {
          cuda::max_rows_backward(dx.data<float>(), g.data<float>(), ctx.saved[0].data<int64_t>(), rows, cols);
        });
        break;
    }
    Shape inverse(permutation.size());
    for (size_t i = 0; i < permutation.size(); ++i) inverse[permutation[i]] = static_cast<int64_t>(i);
    return {permute(reshape(dx, permuted_shape), inverse)};
  });
  return y;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  check_reducible(x, "argmax");
  const Reduction r = plan_reduction(x, {dim}, keepdim, "argmax");
  if (r.cols == 0) fail("argmax", "reduction over an empty dim of " + x.str());
  Tensor values = Tensor::empty({r.rows}, x.dtype(), x.device());
  Tensor index = Tensor::empty(r.out_shape, DType::i64, x.device());
  NoGradGuard no_grad;
  max_of_rows(values, index, rows_by_cols(x, r), r.rows, r.cols);
  return index;
}

void accumulate_correct(const Tensor& count, const Tensor& logits, const Tensor& labels) {
  const char* op = "accumulate_correct";
  if (!count.defined() || !logits.defined() || !labels.defined()) fail(op, "undefined input");
  if (count.dtype() != DType::i64 || count.numel() != 1 || logits.dim() != 2 || labels.dtype() != DType::i64 ||
      labels.shape() != Shape{logits.size(0)})
    fail(op, "needs an i64 count, logits (B, C) and i64 labels (B), got " + count.str() + ", " + logits.str() + ", " +
                 labels.str());
  check_same_device(op, {count, logits, labels});
  NoGradGuard no_grad;
  const Tensor logits_c = contiguous(logits), labels_c = contiguous(labels);
  switch (logits.device()) {
    case Device::cpu: {
      const std::vector<int64_t> predicted = argmax(logits_c, 1).to_indices();
      const int64_t* label = labels_c.data<int64_t>();
      int64_t correct = 0;
      for (size_t i = 0; i < predicted.size(); ++i) correct += predicted[i] == label[i];
      *count.data<int64_t>() += correct;
      break;
    }
    case Device::cuda:
      check_cuda_dtype(op, logits);
      on_cuda(op, [&] {
        cuda::count_correct(count.data<int64_t>(), logits_c.data<float>(), labels_c.data<int64_t>(), logits.size(0),
                            logits.size(1));
      });
      break;
  }
  count.bump_version();
}

}  // namespace vt
