// Shape ops. Conventions: reshape/view, permute/transpose, slice/narrow, expand, squeeze/unsqueeze and split
// return views (new shape, strides and offset over the same storage); cat, index_select and contiguous copy.
// Backwards of views are views or copies of dy; expand's backward leaves the sum over broadcast dims to the engine.
#include <algorithm>
#include <optional>

#include "autograd/parallel.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"
#include "ops/ops.h"

namespace vt {

static void check_defined(const Tensor& x, const char* op) {
  if (!x.defined()) fail(op, "undefined input");
}

// Resolves one -1 and checks that the element count is unchanged.
static Shape infer_shape(const Tensor& x, const Shape& shape, const char* op) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      if (infer >= 0) fail(op, "more than one -1 in " + shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else if (out[i] < 0) {
      fail(op, "negative size in " + shape_str(shape));
    } else if (__builtin_mul_overflow(known, out[i], &known)) {
      fail(op, shape_str(shape) + " is too large: its sizes multiply past 2^63");
    }
  }
  if (infer >= 0) {
    if (known == 0 || x.numel() % known != 0) fail(op, "cannot view " + x.str() + " as " + shape_str(shape));
    out[infer] = x.numel() / known;
  }
  if (shape_numel(out) != x.numel()) fail(op, "cannot view " + x.str() + " as " + shape_str(shape));
  return out;
}

// Strides that view x's elements with `shape` without moving them, or nothing when the layout forbids it.
// Walks x's dims from the last, in chunks of dims that are contiguous with one another; each chunk must be
// covered exactly by a run of the new dims (the algorithm of PyTorch's computeStride).
static std::optional<Shape> view_strides(const Tensor& x, const Shape& shape) {
  if (x.is_contiguous() || x.numel() == 0) return contiguous_strides(shape);
  const Shape &old_shape = x.shape(), &old_strides = x.strides();
  Shape strides(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t tensor_d = static_cast<int64_t>(old_shape.size()) - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= old_shape[tensor_d];
    const bool chunk_ends = tensor_d == 0 || (old_shape[tensor_d - 1] != 1 &&
                                              old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
      strides[view_d] = view_numel * chunk_base_stride;
      view_numel *= shape[view_d];
      --view_d;
    }
    if (view_numel != tensor_numel) return std::nullopt;
    if (tensor_d > 0) {
      chunk_base_stride = old_strides[tensor_d - 1];
      tensor_numel = 1;
      view_numel = 1;
    }
  }
  if (view_d != -1) return std::nullopt;
  return strides;
}

Tensor view(const Tensor& x, const Shape& shape) {
  check_defined(x, "view");
  const Shape out = infer_shape(x, shape, "view");
  const std::optional<Shape> strides = view_strides(x, out);
  if (!strides)
    fail("view", "cannot view the non-contiguous " + x.str() + " (strides " + shape_str(x.strides()) + ") as " +
                     shape_str(out) + "; use reshape, which copies");
  Tensor y = make_view(x, out, *strides, x.offset());
  const Shape input_shape = x.shape();
  record("view", y, {x}, {}, [input_shape](const Tensor& dy, const BackwardContext&) -> Grads {
    return {reshape(dy, input_shape)};
  });
  return y;
}

Tensor reshape(const Tensor& x, const Shape& shape) {
  check_defined(x, "reshape");
  const Shape out = infer_shape(x, shape, "reshape");
  if (view_strides(x, out)) return view(x, out);
  return view(contiguous(x), out);
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  check_defined(x, "flatten");
  if (x.dim() == 0) return reshape(x, {1});
  const int64_t s = wrap_dim(start_dim, x.dim(), "flatten"), e = wrap_dim(end_dim, x.dim(), "flatten");
  if (s > e) fail("flatten", "start_dim after end_dim for " + x.str());
  Shape out(x.shape().begin(), x.shape().begin() + s);
  int64_t merged = 1;
  for (int64_t d = s; d <= e; ++d) merged *= x.shape()[d];
  out.push_back(merged);
  out.insert(out.end(), x.shape().begin() + e + 1, x.shape().end());
  return reshape(x, out);
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  check_defined(x, "unsqueeze");
  const int64_t d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape out = x.shape();
  out.insert(out.begin() + d, 1);
  return view(x, out);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  check_defined(x, "squeeze");
  const int64_t d = wrap_dim(dim, x.dim(), "squeeze");
  if (x.shape()[d] != 1) return x;
  Shape out = x.shape();
  out.erase(out.begin() + d);
  return view(x, out);
}

Tensor permute(const Tensor& x, const Shape& dims) {
  check_defined(x, "permute");
  if (static_cast<int64_t>(dims.size()) != x.dim())
    fail("permute", "permutation " + shape_str(dims) + " does not match " + x.str());
  Shape shape(dims.size()), strides(dims.size()), inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], x.dim(), "permute");
    if (inverse[d] != -1) fail("permute", "repeated dim in " + shape_str(dims));
    inverse[d] = static_cast<int64_t>(i);
    shape[i] = x.shape()[d];
    strides[i] = x.strides()[d];
  }
  Tensor y = make_view(x, shape, strides, x.offset());
  record("permute", y, {x}, {}, [inverse](const Tensor& dy, const BackwardContext&) -> Grads {
    return {permute(dy, inverse)};
  });
  return y;
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  check_defined(x, "transpose");
  Shape dims(x.dim());
  for (int64_t d = 0; d < x.dim(); ++d) dims[d] = d;
  std::swap(dims[wrap_dim(d0, x.dim(), "transpose")], dims[wrap_dim(d1, x.dim(), "transpose")]);
  return permute(x, dims);
}

Tensor contiguous(const Tensor& x) {
  check_defined(x, "contiguous");
  if (x.is_contiguous()) return x;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  copy_strided(y, x);
  record("contiguous", y, {x}, {}, [](const Tensor& dy, const BackwardContext&) -> Grads { return {dy}; });
  return y;
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  check_defined(x, "slice");
  const int64_t d = wrap_dim(dim, x.dim(), "slice");
  const int64_t n = x.shape()[d];
  if (step < 1) fail("slice", "step must be positive, got " + std::to_string(step));
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape = x.shape(), strides = x.strides();
  shape[d] = (end - start) / step + ((end - start) % step != 0);  // ceil, without end - start + step overflowing
  strides[d] *= step;
  Tensor y = make_view(x, shape, strides, x.offset() + start * x.strides()[d]);
  const Shape input_shape = x.shape();
  record("slice", y, {x}, {}, [=](const Tensor& dy, const BackwardContext&) -> Grads {
    // Zeros everywhere but the sliced part, which receives dy.
    Tensor dx = Tensor::zeros(input_shape, dy.dtype(), dy.device());
    copy_strided(slice(dx, d, start, end, step), dy);
    return {dx};
  });
  return y;
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  check_defined(x, "narrow");
  const int64_t d = wrap_dim(dim, x.dim(), "narrow");
  if (start < 0 || length < 0 || length > x.shape()[d] - start)  // start + length could overflow
    fail("narrow", "start " + std::to_string(start) + " and length " + std::to_string(length) + " out of range for dim " +
                       std::to_string(dim) + " of " + x.str());
  return slice(x, d, start, start + length);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  check_defined(x, "expand");
  if (shape.size() < x.shape().size()) fail("expand", "cannot expand " + x.str() + " to " + shape_str(shape));
  const size_t lead = shape.size() - x.shape().size();
  Shape out(shape.size()), strides(shape.size(), 0);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < -1) fail("expand", "negative size in " + shape_str(shape));
    if (i < lead) {
      if (shape[i] < 0) fail("expand", "-1 for a new leading dim in " + shape_str(shape));
      out[i] = shape[i];
      continue;
    }
    const int64_t have = x.shape()[i - lead];
    const int64_t want = shape[i] == -1 ? have : shape[i];
    if (have != want && have != 1) fail("expand", "cannot expand " + x.str() + " to " + shape_str(shape));
    out[i] = want;
    strides[i] = have == want ? x.strides()[i - lead] : 0;
  }
  shape_numel(out);  // its element count must fit, as any tensor's: sums over it count in int64
  Tensor y = make_view(x, out, strides, x.offset());
  record("expand", y, {x}, {}, [](const Tensor& dy, const BackwardContext&) -> Grads { return {dy}; });
  return y;
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  if (xs.empty()) fail("cat", "no tensors");
  for (const Tensor& x : xs) check_defined(x, "cat");
  const Tensor& first = xs[0];
  const int64_t d = wrap_dim(dim, first.dim(), "cat");
  Shape out = first.shape();
  out[d] = 0;
  for (const Tensor& x : xs) {
    bool same = x.dim() == first.dim() && x.dtype() == first.dtype() && x.device() == first.device();
    for (int64_t i = 0; same && i < x.dim(); ++i) same = i == d || x.shape()[i] == first.shape()[i];
    if (!same) fail("cat", "cannot concatenate " + x.str() + " with " + first.str() + " along dim " + std::to_string(dim));
    if (__builtin_add_overflow(out[d], x.shape()[d], &out[d]))
      fail("cat", "the sizes along dim " + std::to_string(dim) + " add up past 2^63");
  }
  Tensor y = Tensor::empty(out, first.dtype(), first.device());
  std::vector<int64_t> starts;
  int64_t start = 0;
  {
    NoGradGuard no_grad;
    for (const Tensor& x : xs) {
      starts.push_back(start);
      copy_strided(slice(y, d, start, start + x.shape()[d]), x);
      start += x.shape()[d];
    }
  }
  starts.push_back(start);
  record("cat", y, xs, {}, [d, starts](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    Grads dxs(starts.size() - 1);
    for (size_t i = 0; i + 1 < starts.size(); ++i)
      if (ctx.needs_input_grad[i]) dxs[i] = slice(dy, d, starts[i], starts[i + 1]);
    return dxs;
  });
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  check_defined(x, "split");
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes)
    if (s < 0 || __builtin_add_overflow(total, s, &total)) {
      total = -1;  // a negative size, or a sum past 2^63: neither adds up to a dim
      break;
    }
  if (total != x.shape()[d])
    fail("split", "sizes " + shape_str(sizes) + " do not add up to dim " + std::to_string(dim) + " of " + x.str());
  std::vector<Tensor> parts;
  int64_t start = 0;
  for (int64_t s : sizes) {
    parts.push_back(slice(x, d, start, start + s));
    start += s;
  }
  return parts;
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  check_defined(x, "split");
  if (split_size < 1) fail("split", "split_size must be positive, got " + std::to_string(split_size));
  const int64_t n = x.shape()[wrap_dim(dim, x.dim(), "split")];
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < n; start += sizes.back()) sizes.push_back(std::min(split_size, n - start));
  return split(x, sizes, dim);
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  check_defined(x, "chunk");
  if (chunks < 1) fail("chunk", "chunks must be positive, got " + std::to_string(chunks));
  const int64_t n = x.shape()[wrap_dim(dim, x.dim(), "chunk")];
  return split(x, std::max<int64_t>(1, n / chunks + (n % chunks != 0)), dim);  // ceil, without n + chunks overflowing
}

// ---- index_select ----

// y (outer, K, inner) = x (outer, n, inner) gathered along the middle dim.
template <class T>
static void index_select_forward_cpu(T* y, const T* x, const int64_t* index, int64_t outer, int64_t n, int64_t k,
                                     int64_t inner) {
  parallel_for(0, outer * k, std::max<int64_t>(1, 4096 / std::max<int64_t>(inner, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t ok = lo; ok < hi; ++ok) {
      const int64_t o = ok / k, j = ok % k;
      std::copy_n(x + (o * n + index[j]) * inner, inner, y + ok * inner);
    }
  });
}

// dx (outer, n, inner) += dy (outer, K, inner) scattered back; repeated indices accumulate, serially over K
// within each outer slice so the order of additions is fixed.
template <class T>
static void index_select_backward_cpu(T* dx, const T* dy, const int64_t* index, int64_t outer, int64_t n, int64_t k,
                                      int64_t inner) {
  parallel_for(0, outer, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t o = lo; o < hi; ++o)
      for (int64_t j = 0; j < k; ++j) {
        T* dst = dx + (o * n + index[j]) * inner;
        const T* src = dy + (o * k + j) * inner;
        for (int64_t i = 0; i < inner; ++i) dst[i] += src[i];
      }
  });
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  check_defined(x, "index_select");
  check_defined(index, "index_select");
  if (index.dtype() != DType::i64 || index.dim() != 1)
    fail("index_select", "index must be a 1-D i64 tensor, got " + index.str());
  if (x.dtype() == DType::i64) fail("index_select", "needs a float tensor, got " + x.str());
  check_same_device("index_select", {x, index});
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  const Tensor idx = contiguous(index);
  const int64_t n = x.shape()[d], k = idx.numel();
  for (int64_t i : idx.to_indices())
    if (i < 0 || i >= n) fail("index_select", "index " + std::to_string(i) + " out of range for dim " +
                                                  std::to_string(dim) + " of " + x.str());
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= x.shape()[i];
  for (int64_t i = d + 1; i < x.dim(); ++i) inner *= x.shape()[i];
  Shape out = x.shape();
  out[d] = k;
  Tensor y = Tensor::empty(out, x.dtype(), x.device());
  {
    NoGradGuard no_grad;
    const Tensor xc = contiguous(x);
    dispatch_float(
        x, "index_select",
        [&](auto zero) {
          using T = decltype(zero);
          index_select_forward_cpu(y.data<T>(), xc.data<T>(), idx.data<int64_t>(), outer, n, k, inner);
        },
        [&] { cuda::index_select_forward(y.data<float>(), xc.data<float>(), idx.data<int64_t>(), outer, n, k, inner); });
  }
  const Shape input_shape = x.shape();
  record("index_select", y, {x}, {idx}, [=](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    Tensor dx = Tensor::zeros(input_shape, dy.dtype(), dy.device());
    const Tensor g = contiguous(dy);
    const int64_t* indices = ctx.saved[0].data<int64_t>();
    dispatch_float(
        dy, "index_select backward",
        [&](auto zero) {
          using T = decltype(zero);
          index_select_backward_cpu(dx.data<T>(), g.data<T>(), indices, outer, n, k, inner);
        },
        [&] { cuda::index_select_backward(dx.data<float>(), g.data<float>(), indices, outer, n, k, inner); });
    return {dx};
  });
  return y;
}

}  // namespace vt
