// Basic layers. Conventions: forward() takes and returns tensors with the shapes in the comments; weights
// are initialised as timm initialises ViT and TNT (see nn/init.h) from the default generator, so a seed
// set with vt::manual_seed reproduces a model; layers hold their parameters as public members.
#pragma once

#include "nn/module.h"

namespace vt::nn {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) const;  // (..., in) -> (..., out)
  Tensor weight;                          // (out, in)
  Tensor bias;                            // (out), undefined without bias
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-6);  // timm's ViT and TNT use eps 1e-6
  Tensor forward(const Tensor& x) const;               // (..., dim) -> (..., dim)
  Tensor weight;                                       // (dim)
  Tensor bias;                                         // (dim)
  double eps;
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1, int64_t padding = 0);
  Tensor forward(const Tensor& x) const;  // (B, C, H, W) -> (B, O, Ho, Wo)
  Tensor weight;                          // (O, C, k, k)
  Tensor bias;                            // (O)
  int64_t stride, padding;
};

class Dropout : public Module {
 public:
  explicit Dropout(double p) : p(p) {}
  Tensor forward(const Tensor& x) const;  // identity in eval mode
  double p;
};

// Stochastic depth: drops a residual branch for whole samples with probability p, scaling the kept ones
// by 1 / (1 - p), so a block is skipped for that sample; identity in eval mode.
class DropPath : public Module {
 public:
  explicit DropPath(double p) : p(p) {}
  Tensor forward(const Tensor& x) const;  // (B, ...) -> (B, ...)
  // x + forward(branch), the residual add after it, in one pass (add_drop_path); x, branch (B, ...).
  Tensor residual(const Tensor& x, const Tensor& branch) const;
  double p;
};

// fc1 -> GELU -> dropout -> fc2 -> dropout, as timm's Mlp; without the hidden dropout, fc1, GELU and fc2 run as
// one op (mlp), else fc1 and GELU (linear_gelu).
class Mlp : public Module {
 public:
  Mlp(int64_t dim, int64_t hidden, double drop = 0.0);
  Tensor forward(const Tensor& x) const;  // (..., dim) -> (..., dim)
  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<Dropout> drop1, drop2;
};

// The hidden layer of an MLP classifier head (Linear, then tanh in the model), named "pre_logits.fc" as in
// timm's ViT with a representation layer.
class PreLogits : public Module {
 public:
  PreLogits(int64_t dim, int64_t hidden) { fc = register_module("fc", std::make_shared<Linear>(dim, hidden)); }
  std::shared_ptr<Linear> fc;
};

}  // namespace vt::nn
