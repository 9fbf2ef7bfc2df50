// The arithmetic of the elementwise ops, written once for the CPU kernels (ops/elementwise.cpp) and the CUDA
// kernels (ops/cuda/elementwise.cu). Conventions: a unary op is a functor holding its forward f(x) and its
// derivative side by side, backward(g, s) = g * f'(x) written in terms of what the op saves (the input x, the
// output y, or nothing); binary ops are plain functors. Everything is VT_HOST_DEVICE and forced inline, so each
// CPU loop sees the arithmetic and vectorises it.
#pragma once

#include <cmath>

#include "autograd/device.h"
#include "ops/softmax_kernels.h"

namespace vt {

enum class Saves { nothing, input, output };

// ---- binary ----

struct Add {
  template <class T> VT_HOST_DEVICE VT_INLINE T operator()(T a, T b) const { return a + b; }
};
struct Sub {
  template <class T> VT_HOST_DEVICE VT_INLINE T operator()(T a, T b) const { return a - b; }
};
struct Mul {
  template <class T> VT_HOST_DEVICE VT_INLINE T operator()(T a, T b) const { return a * b; }
};
struct Div {
  template <class T> VT_HOST_DEVICE VT_INLINE T operator()(T a, T b) const { return a / b; }
};
struct DivDenominatorGrad {  // d(a/b)/db = -a/b^2, applied as (g * a, b) -> -g a / b^2
  template <class T> VT_HOST_DEVICE VT_INLINE T operator()(T ga, T b) const { return -ga / (b * b); }
};

// ---- unary ----

struct AddScalar {
  static constexpr const char* name = "add_scalar";
  static constexpr Saves saves = Saves::nothing;
  double s;
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x) const { return x + T(s); }
  template <class T> VT_HOST_DEVICE VT_INLINE T backward(T g, T) const { return g; }
};
struct MulScalar {
  static constexpr const char* name = "mul_scalar";
  static constexpr Saves saves = Saves::nothing;
  double s;
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x) const { return x * T(s); }
  template <class T> VT_HOST_DEVICE VT_INLINE T backward(T g, T) const { return g * T(s); }
};
struct RsubScalar {  // s - x
  static constexpr const char* name = "rsub_scalar";
  static constexpr Saves saves = Saves::nothing;
  double s;
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x) const { return T(s) - x; }
  template <class T> VT_HOST_DEVICE VT_INLINE T backward(T g, T) const { return -g; }
};
struct Neg {
  static constexpr const char* name = "neg";
  static constexpr Saves saves = Saves::nothing;
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x) const { return -x; }
  template <class T> VT_HOST_DEVICE VT_INLINE T backward(T g, T) const { return -g; }
};
struct Exp {  // d exp(x) = exp(x) = y
  static constexpr const char* name = "exp";
  static constexpr Saves saves = Saves::output;
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x) const { return std::exp(x); }
  template <class T> VT_HOST_DEVICE VT_INLINE T backward(T g, T y) const { return g * y; }
};
struct Log {  // d log(x) = 1 / x
  static constexpr const char* name = "log";
  static constexpr Saves saves = Saves::input;
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x) const { return std::log(x); }
  template <class T> VT_HOST_DEVICE VT_INLINE T backward(T g, T x) const { return g / x; }
};
struct Sqrt {  // d sqrt(x) = 1 / (2 sqrt(x)) = 1 / (2 y)
  static constexpr const char* name = "sqrt";
  static constexpr Saves saves = Saves::output;
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x) const { return std::sqrt(x); }
  template <class T> VT_HOST_DEVICE VT_INLINE T backward(T g, T y) const { return g / (T(2) * y); }
};
struct Pow {  // d x^p = p x^(p-1)
  static constexpr const char* name = "pow";
  static constexpr Saves saves = Saves::input;
  double p;
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x) const { return p == 2.0 ? x * x : std::pow(x, T(p)); }
  template <class T> VT_HOST_DEVICE VT_INLINE T backward(T g, T x) const {
    return p == 2.0 ? T(2) * g * x : g * T(p) * std::pow(x, T(p - 1));
  }
};
struct Tanh {  // d tanh(x) = 1 - tanh(x)^2 = 1 - y^2
  static constexpr const char* name = "tanh";
  static constexpr Saves saves = Saves::output;
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x) const { return std::tanh(x); }
  template <class T> VT_HOST_DEVICE VT_INLINE T backward(T g, T y) const { return g * (T(1) - y * y); }
};
struct Relu {  // d relu(x) = [x > 0] (0 at x = 0, as PyTorch)
  static constexpr const char* name = "relu";
  static constexpr Saves saves = Saves::input;
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x) const { return x > T(0) ? x : T(0); }
  template <class T> VT_HOST_DEVICE VT_INLINE T backward(T g, T x) const { return x > T(0) ? g : T(0); }
};

// The normal CDF Phi(x) = erfc(-x / sqrt 2) / 2 in arithmetic that vectorises: glibc's erff and expf are
// scalar calls, and GELU runs over every MLP hidden activation (a fifth of a ViT's training time with erff).
// float32: erfc(a) = t e^{-a^2} Q(t), t = 1 / (1 + a / 2), where Q is smooth on t in (0, 1] (from 1 at a = 0 to
// 1 / (2 sqrt pi) as a -> inf) and Q(t) below is our degree-8 fit of it, weighted for relative error on t >=
// 0.17 (a <= 9.8; past a = 9.3 the float32 e^{-a^2} is 0): 4.3e-8 with exact coefficients, 2.0e-7 with these
// float32 ones in float32 arithmetic (they sum to 1 - 5.8e-8, so Phi(0) is one float spacing below 1/2).
// With a = |x| / sqrt 2, e^{-a^2} = e^{-x^2 / 2} is also sqrt(2 pi) times the density phi(x), so GELU's
// backward computes one exponential for both. The tail erfc(|x| / sqrt 2) / 2 is computed directly, never as 1 - erf, so
// that Phi of a negative x keeps its relative precision instead of cancelling. float64 keeps std::erfc and is
// the reference the float32 path is tested against. The GPU runs the same float32 arithmetic, so both devices
// agree to rounding.
VT_HOST_DEVICE VT_INLINE float exp_fast(float x) { return vectorizable_exp(x); }
VT_HOST_DEVICE inline double exp_fast(double x) { return std::exp(x); }
// Phi(x), given gaussian = e^{-x^2 / 2}
VT_HOST_DEVICE VT_INLINE float normal_cdf(float x, float gaussian) {
  const float t = 1.0f / (1.0f + std::fabs(x) * float(0.5 * M_SQRT1_2));
  const float q = 2.820869386e-1f + t * (2.823661566e-1f + t * (2.431697994e-1f + t * (2.024274319e-1f +
                  t * (-2.601630799e-2f + t * (2.771874368e-1f + t * (-4.864346683e-1f + t * (2.842069864e-1f +
                  t * -5.899383128e-2f)))))));
  const float tail = 0.5f * t * q * gaussian;        // Phi(-|x|)
  const float positive = x > 0.0f ? 1.0f : 0.0f;     // a select of constants, which vectorises
  return positive + (1.0f - 2.0f * positive) * tail;  // 1 - tail for x > 0, tail otherwise
}
// float64, the reference, needs no e^{-x^2 / 2}: std::erfc.
VT_HOST_DEVICE inline double normal_cdf(double x, double /* gaussian */) { return 0.5 * std::erfc(-x * M_SQRT1_2); }

struct Gelu {  // gelu(x) = x Phi(x); d gelu(x) = Phi(x) + x phi(x), Phi the normal CDF and phi its density
  static constexpr const char* name = "gelu";
  static constexpr Saves saves = Saves::input;
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x) const {
    return x * normal_cdf(x, exp_fast(T(-0.5) * x * x));
  }
  template <class T> VT_HOST_DEVICE VT_INLINE T backward(T g, T x) const {
    const T gaussian = exp_fast(T(-0.5) * x * x);                 // e^{-x^2/2}
    const T pdf = gaussian * T(0.5 * M_2_SQRTPI * M_SQRT1_2);     // 1/sqrt(2 pi) e^{-x^2/2}
    return g * (normal_cdf(x, gaussian) + x * pdf);
  }
  // gelu(x), and gelu'(x) in `derivative`, from one e^{-x^2/2}: linear_gelu keeps the derivative, not x, so that
  // its backward is g * derivative, the bits of backward(g, x) without its exponential and division.
  template <class T> VT_HOST_DEVICE VT_INLINE T forward(T x, T& derivative) const {
    const T gaussian = exp_fast(T(-0.5) * x * x);
    const T cdf = normal_cdf(x, gaussian);
    derivative = cdf + x * (gaussian * T(0.5 * M_2_SQRTPI * M_SQRT1_2));
    return x * cdf;
  }
};

// A unary op's forward, and its backward as a binary function of (dy, saved) or a unary one of dy.
template <class Op>
struct Forward {
  Op op;
  template <class T> VT_HOST_DEVICE VT_INLINE T operator()(T x) const { return op.forward(x); }
};
template <class Op>
struct Backward {
  Op op;
  template <class T> VT_HOST_DEVICE VT_INLINE T operator()(T g, T saved) const { return op.backward(g, saved); }
};
template <class Op>
struct BackwardOfDy {
  Op op;
  template <class T> VT_HOST_DEVICE VT_INLINE T operator()(T g) const { return op.backward(g, T(0)); }
};

}  // namespace vt
