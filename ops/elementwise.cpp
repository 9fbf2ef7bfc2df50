// Elementwise ops with NumPy broadcasting. Conventions: each op is a functor of ops/elementwise_functors.h
// holding its forward and its derivative side by side; one strided CPU loop runs them all (fast paths for
// unit-stride and scalar-broadcast runs, which the compiler vectorises), one strided CUDA kernel on the GPU.
// Backwards return gradients in the output's (broadcast) shape; the engine sums them back to each input's shape.
#include <cmath>

#include "autograd/strided.h"
#include "ops/cuda/kernels.h"
#include "ops/elementwise_functors.h"
#include "ops/ops.h"

namespace vt {

constexpr int64_t kElementwiseGrain = 1 << 15;  // elements below which a loop stays on one thread

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      fail(op, "shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Strides that read `t` as if it had shape `out` (a broadcast of t's shape): 0 on broadcast dims.
static Shape broadcast_strides(const Tensor& t, const Shape& out) {
  Shape strides(out.size(), 0);
  const size_t lead = out.size() - t.shape().size();
  for (size_t d = 0; d < t.shape().size(); ++d)
    strides[lead + d] = t.shape()[d] == 1 ? 0 : t.strides()[d];
  return strides;
}

static void check_float_pair(const Tensor& a, const Tensor& b, const char* op) {
  if (!a.defined() || !b.defined()) fail(op, "undefined input");
  if (a.dtype() != b.dtype() || a.dtype() == DType::i64)
    fail(op, "needs two float tensors of one dtype, got " + a.str() + " and " + b.str());
  check_same_device(op, {a, b});
  check_cuda_dtype(op, a);
}

static void check_float(const Tensor& x, const char* op) {
  if (!x.defined()) fail(op, "undefined input");
  if (x.dtype() == DType::i64) fail(op, "needs a float tensor, got " + x.str());
  check_cuda_dtype(op, x);
}

// ---- CPU kernels ----

// y = f(a, b) over a plan of (y, a, b); y is a new tensor, or a for the in-place ops (each element is read
// before it is written, at the same offset).
template <class T, class F>
static void binary_forward_cpu(T* y, const T* a, const T* b, const StridedPlan<3>& plan, const F& f) {
  for_each_run(plan, kElementwiseGrain, [&](const std::array<int64_t, 3>& base, int64_t n,
                                            const std::array<int64_t, 3>& inner) {
    T* yy = y + base[0];
    const T* aa = a + base[1];
    const T* bb = b + base[2];
    if (inner[0] == 1 && inner[1] == 1 && inner[2] == 1) {
      for (int64_t i = 0; i < n; ++i) yy[i] = f(aa[i], bb[i]);
    } else if (inner[0] == 1 && inner[1] == 1 && inner[2] == 0) {
      const T bv = *bb;
      for (int64_t i = 0; i < n; ++i) yy[i] = f(aa[i], bv);
    } else if (inner[0] == 1 && inner[1] == 0 && inner[2] == 1) {
      const T av = *aa;
      for (int64_t i = 0; i < n; ++i) yy[i] = f(av, bb[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) yy[i * inner[0]] = f(aa[i * inner[1]], bb[i * inner[2]]);
    }
  });
}

// y = f(x) over a plan of (y, x).
template <class T, class F>
static void unary_forward_cpu(T* y, const T* x, const StridedPlan<2>& plan, const F& f) {
  for_each_run(plan, kElementwiseGrain, [&](const std::array<int64_t, 2>& base, int64_t n,
                                            const std::array<int64_t, 2>& inner) {
    T* yy = y + base[0];
    const T* xx = x + base[1];
    if (inner[0] == 1 && inner[1] == 1) {
      for (int64_t i = 0; i < n; ++i) yy[i] = f(xx[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) yy[i * inner[0]] = f(xx[i * inner[1]]);
    }
  });
}

// y = f(a, b) elementwise, a and b broadcast to y's shape; f is called as f(T a, T b).
template <class F>
static void binary_apply_to(const Tensor& y, const Tensor& a, const Tensor& b, const char* op, const F& f) {
  const Shape sa = broadcast_strides(a, y.shape()), sb = broadcast_strides(b, y.shape());
  const StridedPlan<3> plan = plan_strided<3>(y.shape(), {&y.strides(), &sa, &sb});
  switch (a.device()) {
    case Device::cpu:
      if (a.dtype() == DType::f32)
        binary_forward_cpu(y.data<float>(), a.data<float>(), b.data<float>(), plan, f);
      else
        binary_forward_cpu(y.data<double>(), a.data<double>(), b.data<double>(), plan, f);
      break;
    case Device::cuda:
      on_cuda(op, [&] { cuda::map_binary(y.data<float>(), a.data<float>(), b.data<float>(), plan, f); });
      break;
  }
}

// f(a, b) into a new tensor of the broadcast shape.
template <class F>
static Tensor binary_apply(const Tensor& a, const Tensor& b, const char* op, const F& f) {
  check_float_pair(a, b, op);
  Tensor y = Tensor::empty(broadcast_shapes(a.shape(), b.shape(), op), a.dtype(), a.device());
  binary_apply_to(y, a, b, op, f);
  return y;
}

// y = f(x) elementwise, x of y's shape.
template <class F>
static void unary_apply_to(const Tensor& y, const Tensor& x, const char* op, const F& f) {
  const StridedPlan<2> plan = plan_strided<2>(x.shape(), {&y.strides(), &x.strides()});
  switch (x.device()) {
    case Device::cpu:
      if (x.dtype() == DType::f32)
        unary_forward_cpu(y.data<float>(), x.data<float>(), plan, f);
      else
        unary_forward_cpu(y.data<double>(), x.data<double>(), plan, f);
      break;
    case Device::cuda: on_cuda(op, [&] { cuda::map_unary(y.data<float>(), x.data<float>(), plan, f); }); break;
  }
}

template <class F>
static Tensor unary_apply(const Tensor& x, const char* op, const F& f) {
  check_float(x, op);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  unary_apply_to(y, x, op, f);
  return y;
}

// ---- in place, outside the graph (Tensor::add_ and mul_) ----
// y is updated where it lies, any strides: the engine's gradient sums write into the first gradient's buffer
// with no temporary and no copy back. Two elements of y must not share memory (a broadcast view), or the
// second update would read the first's result; b may be any view, even of y's own storage.

static void check_inplace_target(const Tensor& y, const char* op) {
  check_float(y, op);
  check_writable_elements(y, op);
}

void add_into(const Tensor& y, const Tensor& b) {
  check_inplace_target(y, "add_");
  check_float_pair(y, b, "add_");
  if (broadcast_shapes(y.shape(), b.shape(), "add_") != y.shape())
    fail("add_", "cannot add " + b.str() + " into " + y.str());
  binary_apply_to(y, y, source_for_inplace(y, b), "add_", Add{});
}

void mul_into(const Tensor& y, double value) {
  check_inplace_target(y, "mul_");
  unary_apply_to(y, y, "mul_", Forward<MulScalar>{MulScalar{value}});
}

// ---- binary ops ----

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = binary_apply(a, b, "add", Add{});
  record("add", y, {a, b}, {}, [](const Tensor& dy, const BackwardContext&) -> Grads { return {dy, dy}; });
  return y;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor y = binary_apply(a, b, "sub", Sub{});
  record("sub", y, {a, b}, {}, [](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    return {dy, ctx.needs_input_grad[1] ? neg(dy) : Tensor()};
  });
  return y;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor y = binary_apply(a, b, "mul", Mul{});
  if (any_requires_grad({a, b}))
    record("mul", y, {a, b}, {a, b}, [](const Tensor& dy, const BackwardContext& ctx) -> Grads {
      const Tensor &a = ctx.saved[0], &b = ctx.saved[1];
      return {ctx.needs_input_grad[0] ? mul(dy, b) : Tensor(),   // d(ab)/da = b
              ctx.needs_input_grad[1] ? mul(dy, a) : Tensor()};  // d(ab)/db = a
    });
  return y;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor y = binary_apply(a, b, "div", Div{});
  if (any_requires_grad({a, b}))
    record("div", y, {a, b}, {a, b}, [](const Tensor& dy, const BackwardContext& ctx) -> Grads {
      const Tensor &a = ctx.saved[0], &b = ctx.saved[1];
      Tensor da, db;
      if (ctx.needs_input_grad[0]) da = div(dy, b);  // d(a/b)/da = 1/b
      if (ctx.needs_input_grad[1])                   // d(a/b)/db = -a/b^2
        db = binary_apply(mul(dy, a), b, "div backward", DivDenominatorGrad{});
      return {da, db};
    });
  return y;
}

// ---- unary ops ----

template <class Op>
static Tensor unary_op(const Tensor& x, const Op& op) {
  Tensor y = unary_apply(x, Op::name, Forward<Op>{op});
  if (!any_requires_grad({x})) return y;
  const Tensor saved = Op::saves == Saves::input ? x : Op::saves == Saves::output ? y : Tensor();
  record(Op::name, y, {x}, {saved}, [op](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    if constexpr (Op::saves == Saves::nothing) return {unary_apply(dy, Op::name, BackwardOfDy<Op>{op})};
    else return {binary_apply(dy, ctx.saved[0], Op::name, Backward<Op>{op})};
  });
  return y;
}

Tensor add(const Tensor& a, double b) { return unary_op(a, AddScalar{b}); }
Tensor sub(const Tensor& a, double b) { return unary_op(a, AddScalar{-b}); }
Tensor mul(const Tensor& a, double b) { return unary_op(a, MulScalar{b}); }
Tensor div(const Tensor& a, double b) { return unary_op(a, MulScalar{1.0 / b}); }
Tensor rsub(double a, const Tensor& b) { return unary_op(b, RsubScalar{a}); }
Tensor neg(const Tensor& x) { return unary_op(x, Neg{}); }
Tensor exp(const Tensor& x) { return unary_op(x, Exp{}); }
Tensor log(const Tensor& x) { return unary_op(x, Log{}); }
Tensor sqrt(const Tensor& x) { return unary_op(x, Sqrt{}); }
Tensor pow(const Tensor& x, double exponent) { return unary_op(x, Pow{exponent}); }
Tensor tanh(const Tensor& x) { return unary_op(x, Tanh{}); }
Tensor relu(const Tensor& x) { return unary_op(x, Relu{}); }
Tensor gelu(const Tensor& x) { return unary_op(x, Gelu{}); }

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double b) { return add(a, b); }
Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
Tensor operator/(const Tensor& a, double b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }

}  // namespace vt
