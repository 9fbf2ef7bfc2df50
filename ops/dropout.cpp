// Dropout, DropPath, and a block's residual add with DropPath on its branch. Conventions: element i (row-major
// over the logical shape; for DropPath, sample i) of a draw is kept when random_uniform(key, first + i) >= p,
// with `first` reserved from the generator, so the mask is a pure function of (key, first, i) and the same for
// any thread count. Survivors are scaled by 1 / (1 - p).
#include <cmath>

#include "autograd/parallel.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"
#include "ops/ops.h"

namespace vt {

constexpr int64_t kDropoutGrain = 1 << 14;  // elements below which the loop stays on one thread

// y (n) = x * mask with mask[i] = 1 / (1 - p) for kept elements and 0 for dropped ones; mask (n) is written
// too unless null (it is saved for backward, dx = dy * mask, which is cheaper than hashing the counters again).
// random_uniform(seed, c) = (random_bits(seed, c) >> 11) * 2^-53 >= p is tested on the integer instead, as
// (random_bits >> 11) >= ceil(p * 2^53) (p * 2^53 is exact): the same decision without an int-to-double
// conversion per element. P(keep) = 1 - p up to the 2^-53 grid.
static uint64_t keep_threshold(double p) { return static_cast<uint64_t>(std::ceil(p * 0x1.0p53)); }

template <class T>
static void dropout_forward_cpu(T* y, T* mask, const T* x, int64_t n, double p, uint64_t key, uint64_t first) {
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  const uint64_t threshold = keep_threshold(p);
  parallel_for(0, n, kDropoutGrain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const bool keep = (random_bits(key, first + static_cast<uint64_t>(i)) >> 11) >= threshold;
      y[i] = keep ? x[i] * scale : T(0);
      if (mask) mask[i] = keep ? scale : T(0);
    }
  });
}

// mask (n) = 1 / (1 - p) where element i is kept, else 0: DropPath's per-sample scale.
template <class T>
static void drop_mask_cpu(T* mask, int64_t n, double p, uint64_t key, uint64_t first) {
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  const uint64_t threshold = keep_threshold(p);
  for (int64_t i = 0; i < n; ++i)
    mask[i] = (random_bits(key, first + static_cast<uint64_t>(i)) >> 11) >= threshold ? scale : T(0);
}

static void check_dropout_inputs(const Tensor& x, double p, const char* op) {
  if (!x.defined()) fail(op, "undefined input");
  if (x.dtype() == DType::i64) fail(op, "needs a float tensor, got " + x.str());
  if (!(p >= 0 && p <= 1)) fail(op, "p must be in [0, 1], got " + std::to_string(p));
}

Tensor dropout(const Tensor& x, double p, bool training, Generator& generator) {
  check_dropout_inputs(x, p, "dropout");
  if (!training || p == 0) return x;
  if (p == 1) {  // every element dropped; 1 / (1 - p) would be infinite, and no random numbers are needed
    Tensor y = Tensor::zeros(x.shape(), x.dtype(), x.device());  // (...)
    record("dropout", y, {x}, {}, [](const Tensor& dy, const BackwardContext&) -> Grads {
      return {Tensor::zeros_like(dy)};
    });
    return y;
  }
  const uint64_t key = generator.key(), first = generator.reserve(static_cast<uint64_t>(x.numel()));
  const bool save_mask = any_requires_grad({x});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());                                  // (...)
  Tensor mask = save_mask ? Tensor::empty(x.shape(), x.dtype(), x.device()) : Tensor();        // (...)
  {
    NoGradGuard no_grad;
    const Tensor x_flat = contiguous(x);  // (...), a copy only when x is not contiguous: i is the row-major index
    dispatch_float(
        x, "dropout",
        [&](auto zero) {
          using T = decltype(zero);
          dropout_forward_cpu(y.data<T>(), save_mask ? mask.data<T>() : nullptr, x_flat.data<T>(), x.numel(), p, key, first);
        },
        [&] {
          cuda::dropout_forward(y.data<float>(), save_mask ? mask.data<float>() : nullptr, x_flat.data<float>(), x.numel(),
                                p, key, first);
        });
  }
  record("dropout", y, {x}, {mask}, [](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    return {mul(dy, ctx.saved[0])};  // dx = dy * mask, mask = 1 / (1 - p) or 0
  });
  return y;
}

// (B, 1, ..., 1) for x (B, ...): one value per sample, broadcast over the rest.
static Shape per_sample_shape(const Tensor& x) {
  Shape shape(x.dim(), 1);
  shape[0] = x.size(0);
  return shape;
}

// DropPath's per-sample scale for x (B, ...): (B, 1, ..., 1), 1 / (1 - p) for kept samples and 0 for dropped
// ones, from `batch` draws reserved from the generator; 0 < p < 1.
static Tensor drop_path_mask(const Tensor& x, double p, Generator& generator) {
  const int64_t batch = x.size(0);
  const Shape mask_shape = per_sample_shape(x);
  const uint64_t key = generator.key(), first = generator.reserve(static_cast<uint64_t>(batch));
  Tensor mask = Tensor::empty(mask_shape, x.dtype(), x.device());  // (B, 1, ..., 1)
  dispatch_float(
      x, "drop_path", [&](auto zero) { drop_mask_cpu(mask.data<decltype(zero)>(), batch, p, key, first); },
      [&] { cuda::drop_mask(mask.data<float>(), batch, p, key, first); });
  return mask;
}

Tensor drop_path(const Tensor& x, double p, bool training, Generator& generator) {
  check_dropout_inputs(x, p, "drop_path");
  if (x.dim() < 1) fail("drop_path", "needs a batch dim, got " + x.str());
  if (!training || p == 0) return x;
  if (p == 1) return mul(x, Tensor::zeros(per_sample_shape(x), x.dtype(), x.device()));
  return mul(x, drop_path_mask(x, p, generator));  // mul saves the mask for its backward: dx = dy * mask
}

Tensor drop_path_scales(const Tensor& x, double p, bool training, Generator& generator) {
  check_dropout_inputs(x, p, "drop_path_scales");
  if (x.dim() < 1) fail("drop_path_scales", "needs a batch dim, got " + x.str());
  if (!training || p == 0) return Tensor();
  if (p == 1) return Tensor::zeros({x.size(0)}, x.dtype(), x.device());
  return view(drop_path_mask(x, p, generator), {x.size(0)});  // (B)
}

// y (B, S) = x + branch * mask, mask (B) DropPath's per-sample scale: the residual add and the branch's scaling in
// one pass over S = the elements of a sample.
template <class T>
static void add_drop_path_cpu(T* y, const T* x, const T* branch, const T* mask, int64_t batch, int64_t sample) {
  parallel_for(0, batch, std::max<int64_t>(1, kDropoutGrain / std::max<int64_t>(sample, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      const T scale = mask[b];
      const T *xb = x + b * sample, *branch_b = branch + b * sample;
      T* yb = y + b * sample;
      for (int64_t i = 0; i < sample; ++i) yb[i] = xb[i] + branch_b[i] * scale;
    }
  });
}

Tensor add_drop_path(const Tensor& x, const Tensor& branch, double p, bool training, Generator& generator) {
  const char* op = "add_drop_path";
  check_dropout_inputs(branch, p, op);
  if (!x.defined()) fail(op, "undefined input");
  if (x.shape() != branch.shape() || x.dtype() != branch.dtype())
    fail(op, "needs x and branch of one shape and dtype, got " + x.str() + " and " + branch.str());
  check_same_device(op, {x, branch});
  if (branch.dim() < 1) fail(op, "needs a batch dim, got " + branch.str());
  // Without draws (eval, p = 0 or 1), and on the GPU, the two ops.
  if (!training || p == 0 || p == 1 || x.device() == Device::cuda) return add(x, drop_path(branch, p, training, generator));
  const Tensor mask = drop_path_mask(branch, p, generator);  // (B, 1, ..., 1)
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());  // (B, ...)
  {
    NoGradGuard no_grad;
    const Tensor xc = contiguous(x), branch_c = contiguous(branch);  // (B, ...), views when already contiguous
    const int64_t batch = x.size(0), sample = batch == 0 ? 0 : x.numel() / batch;
    auto run = [&](auto zero) {
      using T = decltype(zero);
      add_drop_path_cpu(y.data<T>(), xc.data<T>(), branch_c.data<T>(), mask.data<T>(), batch, sample);
    };
    if (x.dtype() == DType::f32) run(float{});
    else run(double{});
  }
  record(op, y, {x, branch}, {mask}, [](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    return {dy, ctx.needs_input_grad[1] ? mul(dy, ctx.saved[0]) : Tensor()};  // dx = dy, dbranch = dy * mask
  });
  return y;
}

}  // namespace vt
