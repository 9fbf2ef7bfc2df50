// Transformer in Transformer (Han et al. 2021), with timm's parameter names. Each patch is cut into a grid
// of M "pixel" tokens of inner_dim channels; an inner transformer runs on every patch's pixel tokens
// (B*N, M, d) and feeds them, flattened, into the patch tokens (B, 1 + N, D) of the outer transformer.
#pragma once

#include "models/config.h"
#include "nn/embedding.h"
#include "nn/transformer.h"

namespace vt::models {

// Pixel embedding: unfold the image into patches, run a conv inside each patch (padding at the patch
// border), add the pixel position embedding: images (B, C, H, W) -> pixel tokens (B*N, M, d).
class PixelEmbed : public nn::Module {
 public:
  explicit PixelEmbed(const ModelConfig& config);
  Tensor forward(const Tensor& images, const Tensor& pixel_pos) const;
  std::shared_ptr<nn::Conv2d> proj;
  int64_t patch_size, in_channels;
};

class TNTBlock : public nn::Module {
 public:
  TNTBlock(const ModelConfig& config, double drop_path);
  // pixels (B*N, M, d), patches (B, 1 + N, D) -> the same shapes, or with class_token_only patches (B, 1, D):
  // the outer block's class-token row alone past its attention (nn::Block's rule, for the last block).
  std::pair<Tensor, Tensor> forward(const Tensor& pixels, const Tensor& patches, bool class_token_only = false) const;
  // The inner transformer on the pixel tokens (B*N, M, d): one fused op (inner_block) where the sizes fit, on
  // the CPU, without dropout or kept attention maps; else the separate modules.
  Tensor inner(const Tensor& pixels) const;

  std::shared_ptr<nn::LayerNorm> norm_in, norm_mlp_in, norm1_proj, norm2_proj, norm_out, norm_mlp;
  std::shared_ptr<nn::Attention> attn_in, attn_out;
  std::shared_ptr<nn::Mlp> mlp_in, mlp;
  std::shared_ptr<nn::Linear> proj;
  std::shared_ptr<nn::DropPath> drop_path;
};

class TransformerInTransformer : public Classifier {
 public:
  explicit TransformerInTransformer(const ModelConfig& config);
  Tensor forward(const Tensor& images) const override;  // (B, C, H, W) -> (B, classes)

  Tensor cls_token;  // (1, 1, D)
  std::unique_ptr<nn::PositionEmbedding> patch_pos;
  Tensor pixel_pos;  // (1, d, g, g), g = patch_size / pixel_stride
  std::shared_ptr<PixelEmbed> pixel_embed;
  std::shared_ptr<nn::LayerNorm> norm1_proj, norm2_proj, norm;
  std::shared_ptr<nn::Linear> proj, pre_logits, head;
  std::shared_ptr<nn::Dropout> pos_drop;
  std::vector<std::shared_ptr<TNTBlock>> blocks;
};

}  // namespace vt::models
