// Token embeddings: patch embedding (a conv with kernel = stride = patch), and the position embeddings a
// model adds to its (B, 1 + N, D) tokens: learned 1-D (timm's default), learned 2-D (a row half and a column
// half, the ViT paper's ablation), fixed 2-D sin-cos (as MAE), or none. The class token gets zeros from the
// 2-D kinds: its own embedding is learned anyway.
#pragma once

#include "nn/layers.h"

namespace vt::nn {

enum class PosEmbed { learned, learned_2d, sincos_2d, none };

class PatchEmbed : public Module {
 public:
  PatchEmbed(int64_t in_channels, int64_t dim, int64_t patch);
  Tensor forward(const Tensor& images) const;  // (B, C, H, W) -> (B, N, D), N = (H / p) * (W / p)
  std::shared_ptr<Conv2d> proj;
};

// Registers its parameters on `owner` under `name` (timm: "pos_embed" for ViT, "patch_pos" for TNT;
// the 2-D kind uses name + "_row" and name + "_col").
class PositionEmbedding {
 public:
  PositionEmbedding(Module& owner, const std::string& name, PosEmbed kind, int64_t grid, int64_t dim);
  Tensor add_to(const Tensor& tokens) const;  // (B, 1 + N, D) -> (B, 1 + N, D)

 private:
  PosEmbed kind_;
  int64_t grid_, dim_;
  Tensor table_;     // learned: (1, 1 + N, D) parameter; sincos: (1, 1 + N, D) constant
  Tensor row_, col_;  // learned 2-D: (grid, 1, D/2) and (1, grid, D/2)
};

Tensor sincos_2d_table(int64_t grid, int64_t dim);  // (1, 1 + grid^2, D), class token row zero

}  // namespace vt::nn
