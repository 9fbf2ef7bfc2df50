// Elementwise ops with NumPy broadcasting. Conventions: each op is a small functor holding its forward and
// its derivative side by side; one strided CPU loop runs them all (fast paths for unit-stride and
// scalar-broadcast runs, which the compiler vectorises). Backwards return gradients in the output's
// (broadcast) shape; the engine sums them back to each input's shape.
#include <cmath>

#include "autograd/strided.h"
#include "ops/ops.h"
#include "ops/softmax_kernels.h"

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
  if (a.device() != b.device())
    fail(op, std::string("inputs on different devices: ") + device_name(a.device()) + " and " + device_name(b.device()));
}

static void check_float(const Tensor& x, const char* op) {
  if (!x.defined()) fail(op, "undefined input");
  if (x.dtype() == DType::i64) fail(op, "needs a float tensor, got " + x.str());
}

// ---- CPU kernels ----

// y = f(a, b) over a plan of (y, a, b); y is freshly allocated, so its inner stride is 1.
template <class T, class F>
static void binary_forward_cpu(T* y, const T* a, const T* b, const StridedPlan<3>& plan, const F& f) {
  for_each_run(plan, kElementwiseGrain, [&](const std::array<int64_t, 3>& base, int64_t n,
                                            const std::array<int64_t, 3>& inner) {
    T* yy = y + base[0];
    const T* aa = a + base[1];
    const T* bb = b + base[2];
    if (inner[1] == 1 && inner[2] == 1) {
      for (int64_t i = 0; i < n; ++i) yy[i] = f(aa[i], bb[i]);
    } else if (inner[1] == 1 && inner[2] == 0) {
      const T bv = *bb;
      for (int64_t i = 0; i < n; ++i) yy[i] = f(aa[i], bv);
    } else if (inner[1] == 0 && inner[2] == 1) {
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
    if (inner[1] == 1) {
      for (int64_t i = 0; i < n; ++i) yy[i] = f(xx[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) yy[i * inner[0]] = f(xx[i * inner[1]]);
    }
  });
}

// Applies f elementwise to broadcast inputs a, b into a new tensor; f is called as f(T a, T b).
template <class F>
static Tensor binary_apply(const Tensor& a, const Tensor& b, const char* op, const F& f) {
  check_float_pair(a, b, op);
  const Shape out = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor y = Tensor::empty(out, a.dtype(), a.device());
  const Shape sa = broadcast_strides(a, out), sb = broadcast_strides(b, out);
  const StridedPlan<3> plan = plan_strided<3>(out, {&y.strides(), &sa, &sb});
  switch (a.device()) {
    case Device::cpu:
      if (a.dtype() == DType::f32)
        binary_forward_cpu(y.data<float>(), a.data<float>(), b.data<float>(), plan, f);
      else
        binary_forward_cpu(y.data<double>(), a.data<double>(), b.data<double>(), plan, f);
      break;
    case Device::cuda: fail(op, "this build has no CUDA backend");
  }
  return y;
}

template <class F>
static Tensor unary_apply(const Tensor& x, const char* op, const F& f) {
  check_float(x, op);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const StridedPlan<2> plan = plan_strided<2>(x.shape(), {&y.strides(), &x.strides()});
  switch (x.device()) {
    case Device::cpu:
      if (x.dtype() == DType::f32)
        unary_forward_cpu(y.data<float>(), x.data<float>(), plan, f);
      else
        unary_forward_cpu(y.data<double>(), x.data<double>(), plan, f);
      break;
    case Device::cuda: fail(op, "this build has no CUDA backend");
  }
  return y;
}

// ---- binary ops ----

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor y = binary_apply(a, b, "add", [](auto u, auto v) { return u + v; });
  record("add", y, {a, b}, {}, [](const Tensor& dy, const BackwardContext&) -> Grads { return {dy, dy}; });
  return y;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor y = binary_apply(a, b, "sub", [](auto u, auto v) { return u - v; });
  record("sub", y, {a, b}, {}, [](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    return {dy, ctx.needs_input_grad[1] ? neg(dy) : Tensor()};
  });
  return y;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor y = binary_apply(a, b, "mul", [](auto u, auto v) { return u * v; });
  if (any_requires_grad({a, b}))
    record("mul", y, {a, b}, {a, b}, [](const Tensor& dy, const BackwardContext& ctx) -> Grads {
      const Tensor &a = ctx.saved[0], &b = ctx.saved[1];
      return {ctx.needs_input_grad[0] ? mul(dy, b) : Tensor(),   // d(ab)/da = b
              ctx.needs_input_grad[1] ? mul(dy, a) : Tensor()};  // d(ab)/db = a
    });
  return y;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor y = binary_apply(a, b, "div", [](auto u, auto v) { return u / v; });
  if (any_requires_grad({a, b}))
    record("div", y, {a, b}, {a, b}, [](const Tensor& dy, const BackwardContext& ctx) -> Grads {
      const Tensor &a = ctx.saved[0], &b = ctx.saved[1];
      Tensor da, db;
      if (ctx.needs_input_grad[0]) da = div(dy, b);  // d(a/b)/da = 1/b
      if (ctx.needs_input_grad[1])                   // d(a/b)/db = -a/b^2
        db = binary_apply(mul(dy, a), b, "div backward", [](auto g, auto v) { return -g / (v * v); });
      return {da, db};
    });
  return y;
}

// ---- unary ops: forward f(x) and derivative f'(x) side by side ----
// Each functor says what its derivative needs: the input x, the output y, or nothing.
enum class Saves { nothing, input, output };

// The lambdas are forced inline so that each kernel loop sees the functor's arithmetic and vectorises it.
template <class Op>
static Tensor unary_op(const Tensor& x, const Op& op) {
  Tensor y = unary_apply(x, Op::name, [&op](auto v) __attribute__((always_inline)) { return op.forward(v); });
  if (!any_requires_grad({x})) return y;
  const Tensor saved = Op::saves == Saves::input ? x : Op::saves == Saves::output ? y : Tensor();
  record(Op::name, y, {x}, {saved}, [op](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    if (Op::saves == Saves::nothing)
      return {unary_apply(dy, Op::name,
                          [&op](auto g) __attribute__((always_inline)) { return op.backward(g, decltype(g)(0)); })};
    return {binary_apply(dy, ctx.saved[0], Op::name,
                         [&op](auto g, auto s) __attribute__((always_inline)) { return op.backward(g, s); })};
  });
  return y;
}

struct AddScalar {
  static constexpr const char* name = "add_scalar";
  static constexpr Saves saves = Saves::nothing;
  double s;
  template <class T> T forward(T x) const { return x + T(s); }
  template <class T> T backward(T g, T) const { return g; }
};
struct MulScalar {
  static constexpr const char* name = "mul_scalar";
  static constexpr Saves saves = Saves::nothing;
  double s;
  template <class T> T forward(T x) const { return x * T(s); }
  template <class T> T backward(T g, T) const { return g * T(s); }
};
struct RsubScalar {  // s - x
  static constexpr const char* name = "rsub_scalar";
  static constexpr Saves saves = Saves::nothing;
  double s;
  template <class T> T forward(T x) const { return T(s) - x; }
  template <class T> T backward(T g, T) const { return -g; }
};
struct Neg {
  static constexpr const char* name = "neg";
  static constexpr Saves saves = Saves::nothing;
  template <class T> T forward(T x) const { return -x; }
  template <class T> T backward(T g, T) const { return -g; }
};
struct Exp {  // d exp(x) = exp(x) = y
  static constexpr const char* name = "exp";
  static constexpr Saves saves = Saves::output;
  template <class T> T forward(T x) const { return std::exp(x); }
  template <class T> T backward(T g, T y) const { return g * y; }
};
struct Log {  // d log(x) = 1 / x
  static constexpr const char* name = "log";
  static constexpr Saves saves = Saves::input;
  template <class T> T forward(T x) const { return std::log(x); }
  template <class T> T backward(T g, T x) const { return g / x; }
};
struct Sqrt {  // d sqrt(x) = 1 / (2 sqrt(x)) = 1 / (2 y)
  static constexpr const char* name = "sqrt";
  static constexpr Saves saves = Saves::output;
  template <class T> T forward(T x) const { return std::sqrt(x); }
  template <class T> T backward(T g, T y) const { return g / (T(2) * y); }
};
struct Pow {  // d x^p = p x^(p-1)
  static constexpr const char* name = "pow";
  static constexpr Saves saves = Saves::input;
  double p;
  template <class T> T forward(T x) const { return p == 2.0 ? x * x : std::pow(x, T(p)); }
  template <class T> T backward(T g, T x) const { return p == 2.0 ? T(2) * g * x : g * T(p) * std::pow(x, T(p - 1)); }
};
struct Tanh {  // d tanh(x) = 1 - tanh(x)^2 = 1 - y^2
  static constexpr const char* name = "tanh";
  static constexpr Saves saves = Saves::output;
  template <class T> T forward(T x) const { return std::tanh(x); }
  template <class T> T backward(T g, T y) const { return g * (T(1) - y * y); }
};
struct Relu {  // d relu(x) = [x > 0] (0 at x = 0, as PyTorch)
  static constexpr const char* name = "relu";
  static constexpr Saves saves = Saves::input;
  template <class T> T forward(T x) const { return x > T(0) ? x : T(0); }
  template <class T> T backward(T g, T x) const { return x > T(0) ? g : T(0); }
};
// The normal CDF Phi(x) = erfc(-x / sqrt 2) / 2 in arithmetic that vectorises: glibc's erff and expf are
// scalar calls, and GELU runs over every MLP hidden activation (a fifth of a ViT's training time with erff).
// float32: erfc(a) = t exp(-a^2 + P(t)), t = 1 / (1 + a / 2), with the Chebyshev fit P of Numerical Recipes'
// erfcc (relative error < 1.2e-7 for every a >= 0) over vectorizable_exp. The tail erfc(|x| / sqrt 2) / 2 is
// computed directly, never as 1 - erf, so that Phi of a negative x keeps its relative precision instead of
// cancelling. float64 keeps std::erfc and is the reference the float32 path is tested against.
__attribute__((always_inline)) inline float normal_cdf(float x) {
  const float a = std::fabs(x) * float(M_SQRT1_2);
  const float t = 1.0f / (1.0f + 0.5f * a);
  const float p = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f +
                  t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
  const float tail = 0.5f * t * vectorizable_exp(-a * a + p);  // Phi(-|x|)
  const float positive = x > 0.0f ? 1.0f : 0.0f;              // a select of constants, which vectorises
  return positive + (1.0f - 2.0f * positive) * tail;           // 1 - tail for x > 0, tail otherwise
}
inline double normal_cdf(double x) { return 0.5 * std::erfc(-x * M_SQRT1_2); }
__attribute__((always_inline)) inline float exp_fast(float x) { return vectorizable_exp(x); }
inline double exp_fast(double x) { return std::exp(x); }

struct Gelu {  // gelu(x) = x Phi(x); d gelu(x) = Phi(x) + x phi(x), Phi the normal CDF and phi its density
  static constexpr const char* name = "gelu";
  static constexpr Saves saves = Saves::input;
  template <class T> __attribute__((always_inline)) T forward(T x) const { return x * normal_cdf(x); }
  template <class T> __attribute__((always_inline)) T backward(T g, T x) const {
    const T pdf = exp_fast(T(-0.5) * x * x) * T(0.5 * M_2_SQRTPI * M_SQRT1_2);  // 1/sqrt(2 pi) e^{-x^2/2}
    return g * (normal_cdf(x) + x * pdf);
  }
};

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
