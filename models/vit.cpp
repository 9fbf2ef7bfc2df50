// ViT. Registration order follows timm's, so named_parameters() lists timm's state_dict keys in order.
// Shapes carry vit_cifar's numbers after the symbols: 32x32 RGB images cut into 4x4 patches give N = 64 patch
// tokens (an 8x8 grid) of D = 192 channels, plus the class token; 7 blocks of 3 heads of 64; 10 classes.
#include "models/vit.h"

#include "nn/init.h"

namespace vt::models {

VisionTransformer::VisionTransformer(const ModelConfig& c) : Classifier(c) {
  validate(c);
  cls_token = register_parameter("cls_token", Tensor::empty({1, 1, c.dim}));
  nn::normal_(cls_token, 1e-6);  // timm: nn.init.normal_(cls_token, std=1e-6)
  pos_embed = std::make_unique<nn::PositionEmbedding>(*this, "pos_embed", c.pos_embed, c.grid(), c.dim);
  patch_embed = register_module("patch_embed", std::make_shared<nn::PatchEmbed>(c.in_channels, c.dim, c.patch_size, c.stem_channels));
  pos_drop = register_module("pos_drop", std::make_shared<nn::Dropout>(c.drop_rate));
  const std::vector<double> rates = nn::drop_path_rates(c.drop_path_rate, c.depth);
  for (int64_t i = 0; i < c.depth; ++i)
    blocks.push_back(register_module("blocks." + std::to_string(i),
                                     std::make_shared<nn::Block>(c.dim, c.heads, c.mlp_ratio, c.qkv_bias, c.drop_rate, rates[i], c.norm_eps)));
  if (c.pool == Pooling::cls)
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(c.dim, c.norm_eps));
  else
    fc_norm = register_module("fc_norm", std::make_shared<nn::LayerNorm>(c.dim, c.norm_eps));
  int64_t head_in = c.dim;
  if (c.head == Head::mlp) {
    head_in = c.head_hidden > 0 ? c.head_hidden : c.dim;
    pre_logits = register_module("pre_logits", std::make_shared<nn::PreLogits>(c.dim, head_in))->fc;
  }
  head = register_module("head", std::make_shared<nn::Linear>(head_in, c.num_classes));
}

Tensor VisionTransformer::features(const Tensor& images) const {
  const int64_t batch = images.size(0);
  const Tensor patches = patch_embed->forward(images);                      // (B, N, D) = (B, 64, 192)
  const Tensor cls = expand(cls_token, {batch, 1, config.dim});             // (B, 1, D)
  Tensor x = pos_drop->forward(pos_embed->add_to(cat({cls, patches}, 1)));  // (B, 1 + N, D) = (B, 65, 192)
  // Class-token pooling reads one row of the last block's output, so that block computes that row alone.
  const bool class_token_only = config.pool == Pooling::cls;
  for (size_t i = 0; i < blocks.size(); ++i)
    x = blocks[i]->forward(x, class_token_only && i + 1 == blocks.size());  // (B, 65, 192); (B, 1, 192) after the last
  if (class_token_only) return squeeze(norm->forward(slice(x, 1, 0, 1)), 1);  // (B, D): the class token
  return fc_norm->forward(mean(slice(x, 1, 1, x.size(1)), {1}));            // (B, D): the mean of the patch tokens
}

Tensor VisionTransformer::forward(const Tensor& images) const {
  Tensor x = features(images);                          // (B, D) = (B, 192)
  if (pre_logits) x = tanh(pre_logits->forward(x));     // (B, hidden)
  return head->forward(x);                              // (B, classes) = (B, 10)
}

}  // namespace vt::models
