// matmul and linear on GEMM. Conventions: an operand whose last two dims are row-major or column-major
// (a transposed view) goes to GEMM as a pointer, a leading dimension and a transpose flag, never copied;
// batched products run one GEMM per batch, in parallel over batches when each GEMM is a single call.
#include "autograd/blas.h"
#include "autograd/parallel.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"
#include "ops/elementwise_functors.h"
#include "ops/ops.h"

namespace vt {

namespace {

// How GEMM reads a (rows, cols) matrix with strides (row_stride, col_stride).
struct GemmLayout {
  bool ok = false;
  bool trans = false;
  int64_t ld = 0;
};

GemmLayout gemm_layout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  if (col_stride == 1 && (rows == 1 || row_stride >= std::max<int64_t>(cols, 1)))
    return {true, false, rows == 1 ? std::max<int64_t>(cols, 1) : row_stride};
  if (row_stride == 1 && (cols == 1 || col_stride >= std::max<int64_t>(rows, 1)))
    return {true, true, cols == 1 ? std::max<int64_t>(rows, 1) : col_stride};
  return {};
}

GemmLayout matrix_layout(const Tensor& t) {
  const int64_t n = t.dim();
  return gemm_layout(t.shape()[n - 2], t.shape()[n - 1], t.strides()[n - 2], t.strides()[n - 1]);
}

// y (batch, M, N) = a (batch, M, K) @ b (batch, K, N), with per-batch element offsets into a and b. GEMMs
// that gemm runs as one call (attention's per-head products) are spread over the threads a batch each; larger
// ones tile over the threads themselves.
template <class T>
void batched_gemm_cpu(T* y, const T* a, const T* b, const std::vector<int64_t>& a_offsets,
                      const std::vector<int64_t>& b_offsets, GemmLayout la, GemmLayout lb, int64_t m, int64_t n,
                      int64_t k) {
  const int64_t batch = static_cast<int64_t>(a_offsets.size());
  auto one = [&](int64_t i) {
    gemm<T>(la.trans, lb.trans, m, n, k, T(1), a + a_offsets[i], la.ld, b + b_offsets[i], lb.ld, T(0),
            y + i * m * n, n);
  };
  if (batch == 1 || gemm_tiling(m, n, k).kind != GemmTiling::whole) {
    for (int64_t i = 0; i < batch; ++i) one(i);
  } else {
    parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) one(i);
    });
  }
}

// Element offsets of each batch index of `t` (dims before the last two), broadcast to `batch_shape`.
std::vector<int64_t> batch_offsets(const Tensor& t, const Shape& batch_shape) {
  const int64_t nb = static_cast<int64_t>(batch_shape.size());
  const int64_t lead = nb - (t.dim() - 2);
  std::vector<int64_t> offsets(shape_numel(batch_shape));
  for (size_t i = 0; i < offsets.size(); ++i) {
    int64_t rest = static_cast<int64_t>(i), offset = 0;
    for (int64_t d = nb - 1; d >= 0; --d) {
      const int64_t index = rest % batch_shape[d];
      rest /= batch_shape[d];
      const int64_t td = d - lead;
      if (td >= 0 && t.shape()[td] != 1) offset += index * t.strides()[td];
    }
    offsets[i] = offset;
  }
  return offsets;
}

// The batches on cuBLAS: one strided-batched call when the batch offsets are evenly spaced (any batch of a
// contiguous or broadcast operand), else one call per batch.
void batched_gemm_cuda(float* y, const float* a, const float* b, const std::vector<int64_t>& a_offsets,
                       const std::vector<int64_t>& b_offsets, GemmLayout la, GemmLayout lb, int64_t m, int64_t n,
                       int64_t k) {
  const int64_t batch = static_cast<int64_t>(a_offsets.size());
  if (batch == 0) return;  // no first offset to read
  const int64_t stride_a = batch > 1 ? a_offsets[1] - a_offsets[0] : 0, stride_b = batch > 1 ? b_offsets[1] - b_offsets[0] : 0;
  bool even = true;
  for (int64_t i = 0; i < batch && even; ++i)
    even = a_offsets[i] == a_offsets[0] + i * stride_a && b_offsets[i] == b_offsets[0] + i * stride_b;
  if (even) {
    cuda::gemm(la.trans, lb.trans, m, n, k, 1.0f, a + a_offsets[0], la.ld, b + b_offsets[0], lb.ld, 0.0f, y, n, batch,
               stride_a, stride_b, m * n);
    return;
  }
  for (int64_t i = 0; i < batch; ++i)
    cuda::gemm(la.trans, lb.trans, m, n, k, 1.0f, a + a_offsets[i], la.ld, b + b_offsets[i], lb.ld, 0.0f, y + i * m * n, n);
}

void check_matmul_inputs(const Tensor& a, const Tensor& b, const char* op) {
  if (!a.defined() || !b.defined()) fail(op, "undefined input");
  if (a.dtype() != b.dtype() || a.dtype() == DType::i64)
    fail(op, "needs two float tensors of one dtype, got " + a.str() + " and " + b.str());
  check_same_device(op, {a, b});
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_matmul_inputs(a, b, "matmul");
  if (a.dim() < 2 || b.dim() < 2) fail("matmul", "needs at least 2-D inputs, got " + a.str() + " @ " + b.str());
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  if (b.size(-2) != k) fail("matmul", "inner dims differ: " + a.str() + " @ " + b.str());
  const Shape batch_shape = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                             Shape(b.shape().begin(), b.shape().end() - 2), "matmul");
  Shape out = batch_shape;
  out.push_back(m);
  out.push_back(n);
  Tensor y = Tensor::empty(out, a.dtype(), a.device());
  {
    NoGradGuard no_grad;
    // Layouts GEMM cannot read (neither dim unit-stride) are copied once.
    const Tensor ac = matrix_layout(a).ok ? a : contiguous(a);
    const Tensor bc = matrix_layout(b).ok ? b : contiguous(b);
    GemmLayout la = matrix_layout(ac), lb = matrix_layout(bc);
    std::vector<int64_t> a_offsets = batch_offsets(ac, batch_shape), b_offsets = batch_offsets(bc, batch_shape);
    int64_t rows = m;
    // A weight shared by every batch (b broadcast) and a row-major a whose batches are consecutive rows:
    // one GEMM of (batch * M, K) @ (K, N) instead of many.
    bool shared_b = true;
    for (int64_t offset : b_offsets) shared_b = shared_b && offset == 0;
    if (a_offsets.size() > 1 && shared_b && !la.trans) {
      bool rows_consecutive = true;
      for (size_t i = 0; i < a_offsets.size(); ++i) rows_consecutive = rows_consecutive && a_offsets[i] == static_cast<int64_t>(i) * m * la.ld;
      if (rows_consecutive) {
        rows = m * static_cast<int64_t>(a_offsets.size());
        a_offsets.assign(1, 0);
        b_offsets.assign(1, 0);
      }
    }
    dispatch_float(
        a, "matmul",
        [&](auto zero) {
          using T = decltype(zero);
          batched_gemm_cpu(y.data<T>(), ac.data<T>(), bc.data<T>(), a_offsets, b_offsets, la, lb, rows, n, k);
        },
        [&] { batched_gemm_cuda(y.data<float>(), ac.data<float>(), bc.data<float>(), a_offsets, b_offsets, la, lb, rows, n, k); });
  }
  record("matmul", y, {a, b}, {a, b}, [](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    const Tensor &a = ctx.saved[0], &b = ctx.saved[1];
    Tensor da, db;
    // y = a b  =>  da = dy b^T, db = a^T dy (transposes are views; the engine sums broadcast batches).
    if (ctx.needs_input_grad[0]) da = matmul(dy, transpose(b, -1, -2));
    if (ctx.needs_input_grad[1]) {
      if (b.dim() == 2 && a.dim() > 2) {
        // A weight shared across batches: fold the batches into one GEMM, (K, batch*M) @ (batch*M, N).
        db = matmul(transpose(reshape(a, {-1, a.size(-1)}), 0, 1), reshape(dy, {-1, dy.size(-1)}));
      } else {
        db = matmul(transpose(a, -1, -2), dy);
      }
    }
    return {da, db};
  });
  return y;
}

// ---- linear ----

// y (rows, out) = x (rows, in) @ w^T (in, out) + bias, the bias added by GEMM as it writes each tile of y.
template <class T>
static void linear_forward_cpu(T* y, const T* x, const T* w, const T* bias, int64_t rows, int64_t in, int64_t out) {
  gemm<T>(false, true, rows, out, in, T(1), x, in, w, in, T(0), y, out, bias);
}

// dx (rows, in) = dy @ w; dw (out, in) = dy^T @ x; both straight from GEMM's transpose flags. db (out) = the sum
// of dy's rows, taken by the GEMM that forms dw as it reads dy (db needs dw).
template <class T>
static void linear_backward_cpu(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, int64_t rows, int64_t in,
                                int64_t out) {
  if (dx) gemm<T>(false, false, rows, in, out, T(1), dy, out, w, in, T(0), dx, in);
  if (dw) gemm<T>(true, false, out, in, rows, T(1), dy, out, x, in, T(0), dw, in, nullptr, {}, db);
}

// ---- linear + GELU ----

// GEMM's epilogue for y = gelu(h), h = x w^T + b (rows, out): each block of h, final and in cache, is replaced by
// its GELU, and GELU's derivative there is written to `dgelu` when the backward needs it. Keeping gelu'(h) rather
// than h costs the same memory and leaves the backward a product: its exponential and division (half of GELU's
// backward on a Xeon) share the forward's.
template <class T>
struct GeluFinish {
  T* y;      // (rows, out), where GEMM writes h
  T* dgelu;  // (rows, out): gelu'(h), or null in inference
  int64_t out;
  static void finish(T* block, int64_t rows, int64_t cols, void* context) {
    const auto& self = *static_cast<const GeluFinish*>(context);
    for (int64_t r = 0; r < rows; ++r) {
      T* row = block + r * self.out;
      if (self.dgelu) {
        T* derivative = self.dgelu + (row - self.y);
        for (int64_t j = 0; j < cols; ++j) row[j] = Gelu{}.forward(row[j], derivative[j]);
      } else {
        for (int64_t j = 0; j < cols; ++j) row[j] = Gelu{}.forward(row[j]);
      }
    }
  }
};

// y (rows, out) = gelu(x (rows, in) @ w^T + bias), keeping gelu'(h) (rows, out) when `dgelu` is given.
template <class T>
static void linear_gelu_forward_cpu(T* y, T* dgelu, const T* x, const T* w, const T* bias, int64_t rows, int64_t in,
                                    int64_t out) {
  GeluFinish<T> finish{y, dgelu, out};
  gemm<T>(false, true, rows, out, in, T(1), x, in, w, in, T(0), y, out, bias, {&GeluFinish<T>::finish, &finish});
}

// dh (rows, out) = dy * gelu'(h), one pass; linear's backward then takes dh.
template <class T>
static void gelu_grad_cpu(T* dh, const T* dy, const T* dgelu, int64_t count) {
  parallel_for(0, count, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) dh[i] = dy[i] * dgelu[i];
  });
}

// The rows of x (..., in) seen as a matrix: the product of its leading dims (numel / in would give 0 rows for
// in = 0, where y is still the bias on every row).
static int64_t leading_rows(const Tensor& x) { return shape_numel(Shape(x.shape().begin(), x.shape().end() - 1)); }

// bias (out) or undefined, for weight (out, in) and input x.
static void check_bias(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0) || bias.dtype() != x.dtype()))
    fail(op, "bias " + bias.str() + " does not match weight " + weight.str());
  check_same_device(op, {x, weight, bias});
}

// x (..., in), weight (out, in), bias (out) or undefined.
static void check_linear_inputs(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_matmul_inputs(x, weight, op);
  if (weight.dim() != 2 || x.dim() < 1 || x.size(-1) != weight.size(1))
    fail(op, "input " + x.str() + " does not match weight " + weight.str() + " (out, in)");
  check_bias(op, x, weight, bias);
}

// linear, and linear_gelu on the CPU (with_gelu): the same GEMMs, with GELU in the forward's epilogue and, in the
// backward, dh = dy gelu'(h) in dy's place, from the derivative the forward kept.
static Tensor linear_op(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias, bool with_gelu) {
  check_linear_inputs(op, x, weight, bias);
  const int64_t in = weight.size(1), out = weight.size(0);
  if (with_gelu && x.device() == Device::cuda) return gelu(linear(x, weight, bias));  // cuBLAS, then GELU's kernel
  Shape out_shape = x.shape();
  out_shape.back() = out;
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());
  const int64_t rows = leading_rows(x);  // x (rows, in) as a matrix
  Tensor x2, w;
  const Tensor dgelu =  // (rows, out), gelu'(h), only when a backward will need it
      with_gelu && any_requires_grad({x, weight, bias}) ? Tensor::empty({rows, out}, x.dtype(), x.device()) : Tensor();
  {
    NoGradGuard no_grad;
    x2 = contiguous(reshape(x, {rows, in}));  // (rows, in), a view unless x's rows are scattered
    w = contiguous(weight);       // (out, in)
    const Tensor b = bias.defined() ? contiguous(bias) : Tensor();
    dispatch_float(
        x, op,
        [&](auto zero) {
          using T = decltype(zero);
          const T* b_data = b.defined() ? b.data<T>() : nullptr;
          if (with_gelu)
            linear_gelu_forward_cpu(y.data<T>(), dgelu.defined() ? dgelu.data<T>() : nullptr, x2.data<T>(), w.data<T>(),
                                    b_data, rows, in, out);
          else
            linear_forward_cpu(y.data<T>(), x2.data<T>(), w.data<T>(), b_data, rows, in, out);
        },
        [&] {  // the bias rows first, then GEMM adds x w^T onto them
          if (b.defined()) cuda::fill_rows(y.data<float>(), b.data<float>(), rows, out);
          cuda::gemm(false, true, rows, out, in, 1.0f, x2.data<float>(), in, w.data<float>(), in,
                     b.defined() ? 1.0f : 0.0f, y.data<float>(), out);
        });
  }
  const Shape x_shape = x.shape();
  record(op, y, {x, weight, bias}, {x2, w, dgelu},
         [=](const Tensor& dy, const BackwardContext& ctx) -> Grads {
           const Tensor &x2 = ctx.saved[0], &w = ctx.saved[1], &dgelu = ctx.saved[2];
           Tensor g = reshape(contiguous(dy), {rows, out});  // (rows, out): dy, or dh after GELU's backward
           Tensor dx = ctx.needs_input_grad[0] ? Tensor::empty(x_shape, g.dtype(), g.device()) : Tensor();
           Tensor dw = ctx.needs_input_grad[1] ? Tensor::empty({out, in}, g.dtype(), g.device()) : Tensor();
           // (out): on the CPU, from dw's GEMM, which reads dy anyway; else a sum of its own below
           Tensor db = ctx.needs_input_grad[2] && dw.defined() && g.device() == Device::cpu
                           ? Tensor::empty({out}, g.dtype(), g.device())
                           : Tensor();
           dispatch_float(
               g, op,
               [&](auto zero) {
                 using T = decltype(zero);
                 if (dgelu.defined()) {  // linear_gelu
                   const Tensor dh = Tensor::empty({rows, out}, g.dtype(), g.device());
                   gelu_grad_cpu(dh.data<T>(), g.data<T>(), dgelu.data<T>(), rows * out);
                   g = dh;
                 }
                 linear_backward_cpu(dx.defined() ? dx.data<T>() : nullptr, dw.defined() ? dw.data<T>() : nullptr,
                                     db.defined() ? db.data<T>() : nullptr, g.data<T>(), x2.data<T>(), w.data<T>(),
                                     rows, in, out);
               },
               [&] {  // dx = dy w, dw = dy^T x
                 if (dx.defined())
                   cuda::gemm(false, false, rows, in, out, 1.0f, g.data<float>(), out, w.data<float>(), in, 0.0f,
                              dx.data<float>(), in);
                 if (dw.defined())
                   cuda::gemm(true, false, out, in, rows, 1.0f, g.data<float>(), out, x2.data<float>(), in, 0.0f,
                              dw.data<float>(), in);
               });
           if (ctx.needs_input_grad[2] && !db.defined()) db = sum(g, {0});
           return {dx, dw, db};
         });
  return y;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  return linear_op("linear", x, weight, bias, false);
}

Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  return linear_op("linear_gelu", x, weight, bias, true);
}

// ---- the MLP: linear, GELU, linear ----

// GEMM's epilogue for dh = (dy w2) * gelu'(h) (rows, hidden): each block of dy w2, final and in cache, becomes dh
// in place, from the derivative the forward kept. As a pass of its own, GELU's backward read dy w2 and h back from
// memory and wrote dh (3.5% of vit_cifar's training step on a Xeon).
template <class T>
struct GeluGradFinish {
  T* dh;           // (rows, hidden), where GEMM writes dy w2
  const T* dgelu;  // (rows, hidden): gelu'(h)
  int64_t hidden;
  static void finish(T* block, int64_t rows, int64_t cols, void* context) {
    const auto& self = *static_cast<const GeluGradFinish*>(context);
    for (int64_t r = 0; r < rows; ++r) {
      T* row = block + r * self.hidden;
      const T* derivative = self.dgelu + (row - self.dh);
      for (int64_t j = 0; j < cols; ++j) row[j] *= derivative[j];
    }
  }
};

Tensor mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2) {
  const char* op = "mlp";
  check_linear_inputs(op, x, w1, b1);
  if (!w2.defined() || w2.dim() != 2 || w2.size(1) != w1.size(0))  // w2 takes h (..., hidden)
    fail(op, "second weight " + w2.str() + " does not take the first weight's " + std::to_string(w1.size(0)) +
                 " outputs (first weight " + w1.str() + ")");
  check_matmul_inputs(x, w2, op);
  check_bias(op, x, w2, b2);
  if (x.device() == Device::cuda) return linear(linear_gelu(x, w1, b1), w2, b2);
  const int64_t in = w1.size(1), hidden = w1.size(0), out = w2.size(0);
  const int64_t rows = leading_rows(x);  // x (rows, in) as a matrix
  Shape out_shape = x.shape();
  out_shape.back() = out;
  Tensor y = Tensor::empty(out_shape, x.dtype(), x.device());  // (..., out)
  const bool backward = any_requires_grad({x, w1, b1, w2, b2});
  const Tensor a = Tensor::empty({rows, hidden}, x.dtype(), x.device());                       // (rows, hidden): gelu(h)
  const Tensor dgelu =  // (rows, hidden): gelu'(h)
      backward ? Tensor::empty({rows, hidden}, x.dtype(), x.device()) : Tensor();
  Tensor x2, w1c, w2c;
  {
    NoGradGuard no_grad;
    x2 = contiguous(reshape(x, {rows, in}));  // (rows, in), a view unless x's rows are scattered
    w1c = contiguous(w1);                    // (hidden, in)
    w2c = contiguous(w2);                    // (out, hidden)
    const Tensor b1c = b1.defined() ? contiguous(b1) : Tensor(), b2c = b2.defined() ? contiguous(b2) : Tensor();
    auto forward = [&](auto zero) {
      using T = decltype(zero);
      linear_gelu_forward_cpu(a.data<T>(), dgelu.defined() ? dgelu.data<T>() : nullptr, x2.data<T>(), w1c.data<T>(),
                              b1c.defined() ? b1c.data<T>() : nullptr, rows, in, hidden);
      linear_forward_cpu(y.data<T>(), a.data<T>(), w2c.data<T>(), b2c.defined() ? b2c.data<T>() : nullptr, rows,
                         hidden, out);
    };
    if (x.dtype() == DType::f32) forward(float{});
    else forward(double{});
  }
  const Shape x_shape = x.shape();
  record(op, y, {x, w1, b1, w2, b2}, {x2, w1c, dgelu, a, w2c},
         [=](const Tensor& dy, const BackwardContext& ctx) -> Grads {
           const Tensor &x2 = ctx.saved[0], &w1 = ctx.saved[1], &dgelu = ctx.saved[2], &a = ctx.saved[3],
                        &w2 = ctx.saved[4];
           const Tensor g = reshape(contiguous(dy), {rows, out});  // (rows, out)
           const auto& needs = ctx.needs_input_grad;
           Tensor dx = needs[0] ? Tensor::empty(x_shape, g.dtype(), g.device()) : Tensor();     // (..., in)
           Tensor dw1 = needs[1] ? Tensor::empty({hidden, in}, g.dtype(), g.device()) : Tensor();  // (hidden, in)
           Tensor dw2 = needs[3] ? Tensor::empty({out, hidden}, g.dtype(), g.device()) : Tensor();  // (out, hidden)
           Tensor dh;  // (rows, hidden), when anything before GELU needs a gradient
           if (needs[0] || needs[1] || needs[2]) dh = Tensor::empty({rows, hidden}, g.dtype(), g.device());
           // The biases' gradients come with the weights' from the same GEMMs (linear_backward_cpu), else below.
           Tensor db1 = needs[2] && needs[1] ? Tensor::empty({hidden}, g.dtype(), g.device()) : Tensor();  // (hidden)
           Tensor db2 = needs[4] && needs[3] ? Tensor::empty({out}, g.dtype(), g.device()) : Tensor();     // (out)
           auto backward = [&](auto zero) {
             using T = decltype(zero);
             if (dw2.defined())  // dw2 = dy^T gelu(h), db2 = the sum of dy's rows
               gemm<T>(true, false, out, hidden, rows, T(1), g.data<T>(), out, a.data<T>(), hidden, T(0),
                       dw2.data<T>(), hidden, nullptr, {}, db2.defined() ? db2.data<T>() : nullptr);
             if (!dh.defined()) return;
             GeluGradFinish<T> finish{dh.data<T>(), dgelu.data<T>(), hidden};  // dh = (dy w2) gelu'(h)
             gemm<T>(false, false, rows, hidden, out, T(1), g.data<T>(), out, w2.data<T>(), hidden, T(0),
                     dh.data<T>(), hidden, nullptr, {&GeluGradFinish<T>::finish, &finish});
             linear_backward_cpu(dx.defined() ? dx.data<T>() : nullptr, dw1.defined() ? dw1.data<T>() : nullptr,
                                 db1.defined() ? db1.data<T>() : nullptr, dh.data<T>(), x2.data<T>(), w1.data<T>(),
                                 rows, in, hidden);
           };
           if (g.dtype() == DType::f32) backward(float{});
           else backward(double{});
           if (needs[2] && !db1.defined()) db1 = sum(dh, {0});
           if (needs[4] && !db2.defined()) db2 = sum(g, {0});
           return {dx, dw1, db1, dw2, db2};
         });
  return y;
}

}  // namespace vt
