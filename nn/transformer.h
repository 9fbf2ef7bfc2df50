// Transformer pieces shared by ViT and TNT. Conventions: tokens are (B, N, D); multi-head attention splits
// D into H heads of hd = D / H and runs the fused multi_head_attention op on the q, k, v projections.
#pragma once

#include "nn/layers.h"

namespace vt::nn {

// ViT projects q, k and v with one fused Linear named "qkv" (with bias); TNT uses "qk" and "v" (no bias).
enum class QkvLayout { fused, separate };

class Attention : public Module {
 public:
  Attention(int64_t dim, int64_t heads, QkvLayout layout, bool qkv_bias, double proj_drop = 0.0);
  // (B, N, D) -> (B, N, D), or with class_token_only (B, 1, D): the attention of every token, then the class
  // token's row alone through the projection and dropout.
  Tensor forward(const Tensor& x, bool class_token_only = false) const;
  int64_t heads;
  // Set by the insight tools (models/insight.h): forward then computes softmax(q k^T / sqrt(hd)) as a tensor of
  // its own, keeps it in `probabilities` (B, H, N, N) and multiplies it into v, instead of the fused op, which
  // never holds the N x N matrix.
  bool keep_probabilities = false;
  mutable Tensor probabilities;
  std::shared_ptr<Linear> qkv, qk, v, proj;  // qkv for the fused layout, qk and v for the separate one
  std::shared_ptr<Dropout> proj_drop;
};

// Pre-norm transformer block: x + DropPath(Attention(LN(x))), then x + DropPath(Mlp(LN(x))).
class Block : public Module {
 public:
  Block(int64_t dim, int64_t heads, double mlp_ratio, bool qkv_bias, double drop, double drop_path, double norm_eps,
        QkvLayout layout = QkvLayout::fused);
  // (B, N, D) -> (B, N, D), or with class_token_only the class token's row alone, (B, 1, D): all that
  // class-token pooling reads of the last block, whose other rows would reach neither the logits nor the loss.
  Tensor forward(const Tensor& x, bool class_token_only = false) const;
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<Attention> attn;
  std::shared_ptr<Mlp> mlp;
  std::shared_ptr<DropPath> drop_path1, drop_path2;
};

// Per-block stochastic-depth rates rising linearly from 0 to `rate` over `depth` blocks (timm's rule).
std::vector<double> drop_path_rates(double rate, int64_t depth);

}  // namespace vt::nn
