// Initialisers, in place on a parameter and drawing from the default generator.
// timm's trunc_normal_(std=s) keeps its default absolute bounds [-2, 2], so for s = 0.02 it is in effect
// a plain normal; we keep the same bounds to draw the same distribution.
#pragma once

#include "autograd/tensor.h"

namespace vt::nn {

void trunc_normal_(Tensor& t, double std, double lo = -2.0, double hi = 2.0);
void normal_(Tensor& t, double std);
void uniform_(Tensor& t, double bound);  // U(-bound, bound): PyTorch's default Conv2d init with bound 1/sqrt(fan_in)

}  // namespace vt::nn
