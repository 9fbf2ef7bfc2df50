// Initialisers: draw a fresh tensor from the default generator, then copy it into the parameter under
// no-grad (parameters require grad, and an initialiser is not part of any graph).
#include "nn/init.h"

#include "ops/ops.h"

namespace vt::nn {

static void assign(Tensor& t, const Tensor& values) {
  NoGradGuard no_grad;
  t.copy_(values);
}

void trunc_normal_(Tensor& t, double std, double lo, double hi) {
  assign(t, trunc_normal(t.shape(), std, lo, hi, t.dtype()));
}

void normal_(Tensor& t, double std) {
  NoGradGuard no_grad;
  assign(t, mul(randn(t.shape(), t.dtype()), std));
}

void uniform_(Tensor& t, double bound) {
  NoGradGuard no_grad;
  assign(t, sub(mul(rand(t.shape(), t.dtype()), 2.0 * bound), bound));
}

}  // namespace vt::nn
