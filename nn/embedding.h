// Token embeddings: patch embedding (a conv with kernel = stride = patch, or a convolutional stem), and the
// position embeddings a model adds to its (B, 1 + N, D) tokens: learned 1-D (timm's default), learned 2-D (a
// row half and a column half, the ViT paper's ablation), fixed 2-D sin-cos (as MAE), or none. The class token
// gets zeros from the 2-D kinds: its own embedding is learned anyway.
#pragma once

#include "nn/layers.h"

namespace vt::nn {

enum class PosEmbed { learned, learned_2d, sincos_2d, none };

// stem_channels = 0: timm's patchify, one conv of kernel = stride = patch. stem_channels = S > 0: the
// convolutional stem of Xiao et al. 2021 ("Early convolutions help transformers see better"), log2(patch)
// 3x3 convs of stride 2 with S, 2S, 4S, ... channels, each followed by GELU, then a 1x1 conv to D. It sees
// across patch borders, which the paper found to make training faster and more stable; its BatchNorm is
// left out, as vt has none (the blocks' pre-norms see the tokens first). README measures it on CIFAR-10.
class PatchEmbed : public Module {
 public:
  PatchEmbed(int64_t in_channels, int64_t dim, int64_t patch, int64_t stem_channels = 0);
  Tensor forward(const Tensor& images) const;  // (B, C, H, W) -> (B, N, D), N = (H / p) * (W / p)
  std::vector<std::shared_ptr<Conv2d>> stem;  // "stem.i": (B, S 2^i, H / 2^(i+1), W / 2^(i+1)); empty for patchify
  std::shared_ptr<Conv2d> proj;               // patchify (D, C, p, p), or the stem's 1x1 (D, S p / 2, 1, 1)
};

// Registers its parameters on `owner` under `name` (timm: "pos_embed" for ViT, "patch_pos" for TNT;
// the 2-D kind uses name + "_row" and name + "_col").
class PositionEmbedding {
 public:
  PositionEmbedding(Module& owner, const std::string& name, PosEmbed kind, int64_t grid, int64_t dim);
  Tensor add_to(const Tensor& tokens) const;  // (B, 1 + N, D) -> (B, 1 + N, D)
  // What add_to adds: (1, 1 + N, D), the class token's row first; undefined for `none`.
  Tensor table() const;
  PosEmbed kind() const { return kind_; }

 private:
  PosEmbed kind_;
  int64_t grid_, dim_;
  Tensor table_;     // learned: (1, 1 + N, D) parameter; sincos: (1, 1 + N, D) constant
  Tensor row_, col_;  // learned 2-D: (grid, 1, D/2) and (1, grid, D/2)
};

Tensor sincos_2d_table(int64_t grid, int64_t dim);  // (1, 1 + grid^2, D), class token row zero

// Resampling a learned embedding to another grid, so that a model trained at one image size runs at another.
// The weights are PyTorch's F.interpolate(mode="bicubic", antialias=True, align_corners=False), which timm's
// resample_abs_pos_embed uses: Keys' cubic kernel with a = -0.5, stretched by in/out when shrinking (so that
// every input row contributes), the taps that fall outside the grid dropped and the rest renormalised.
// (out, in) weights, row i holding output i's taps.
std::vector<double> resample_weights(int64_t in, int64_t out);
// x with dimension `dim` resampled from its size to `size`: y[.., i, ..] = sum_j w[i][j] x[.., j, ..].
Tensor resample_axis(const Tensor& x, int64_t dim, int64_t size);
// table (1, prefix + g^2, D) -> (1, prefix + new_grid^2, D): the patch rows resampled as a g x g image of D
// channels, both axes; the `prefix` rows (the class token's) kept as they are.
Tensor resample_position_table(const Tensor& table, int64_t prefix, int64_t new_grid);

}  // namespace vt::nn
