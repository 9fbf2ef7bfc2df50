// Basic layers over the engine's ops; each forward is a line or two of ops, so gradients come for free.
#include "nn/layers.h"

#include <cmath>

#include "nn/init.h"

namespace vt::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias) {
  weight = register_parameter("weight", Tensor::empty({out_features, in_features}));
  trunc_normal_(weight, 0.02);
  if (has_bias) bias = register_parameter("bias", Tensor::zeros({out_features}));
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight, bias); }

LayerNorm::LayerNorm(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", Tensor::ones({dim}));
  bias = register_parameter("bias", Tensor::zeros({dim}));
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride_, int64_t padding_)
    : stride(stride_), padding(padding_) {
  // PyTorch's default (kaiming_uniform with a = sqrt 5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_channels * kernel * kernel));
  weight = register_parameter("weight", Tensor::empty({out_channels, in_channels, kernel, kernel}));
  bias = register_parameter("bias", Tensor::empty({out_channels}));
  uniform_(weight, bound);
  uniform_(bias, bound);
}

Tensor Conv2d::forward(const Tensor& x) const { return conv2d(x, weight, bias, stride, padding); }

Tensor Dropout::forward(const Tensor& x) const { return dropout(x, p, training_); }

Tensor DropPath::forward(const Tensor& x) const { return drop_path(x, p, training_); }

Tensor DropPath::residual(const Tensor& x, const Tensor& branch) const {
  return add_drop_path(x, branch, p, training_);
}

Mlp::Mlp(int64_t dim, int64_t hidden, double drop) {
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden));
  drop1 = register_module("drop1", std::make_shared<Dropout>(drop));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim));
  drop2 = register_module("drop2", std::make_shared<Dropout>(drop));
}

Tensor Mlp::forward(const Tensor& x) const {
  // With no dropout between them (p = 0, the presets' default, or eval mode), both linears and GELU are one op.
  if (drop1->p == 0 || !drop1->is_training())
    return drop2->forward(mlp(x, fc1->weight, fc1->bias, fc2->weight, fc2->bias));
  return drop2->forward(fc2->forward(drop1->forward(linear_gelu(x, fc1->weight, fc1->bias))));  // (..., hidden) inside
}

}  // namespace vt::nn
