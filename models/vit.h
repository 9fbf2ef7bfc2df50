// Vision Transformer (Dosovitskiy et al. 2020), with timm's parameter names:
// images -> patch_embed -> [cls_token; patches] + pos_embed -> blocks -> norm -> pool -> head.
#pragma once

#include "models/config.h"
#include "nn/embedding.h"
#include "nn/transformer.h"

namespace vt::models {

class VisionTransformer : public Classifier {
 public:
  explicit VisionTransformer(const ModelConfig& config);
  Tensor forward(const Tensor& images) const override;  // (B, C, H, W) -> (B, classes)
  Tensor features(const Tensor& images) const;          // (B, C, H, W) -> (B, D), pooled and normalised

  Tensor cls_token;  // (1, 1, D)
  std::unique_ptr<nn::PositionEmbedding> pos_embed;
  std::shared_ptr<nn::PatchEmbed> patch_embed;
  std::shared_ptr<nn::Dropout> pos_drop;
  std::vector<std::shared_ptr<nn::Block>> blocks;
  std::shared_ptr<nn::LayerNorm> norm, fc_norm;  // norm before class-token pooling, fc_norm after mean pooling
  std::shared_ptr<nn::Linear> pre_logits, head;  // pre_logits: the MLP head's hidden layer (then tanh)
};

}  // namespace vt::models
