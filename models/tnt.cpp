// TNT. Registration order follows timm's, so named_parameters() lists timm's state_dict keys in order.
// Shapes carry tnt_cifar's numbers after the symbols: 32x32 RGB images cut into N = 64 patches of 4x4 pixels;
// every pixel is a token (stride 1), so M = 16 pixel tokens of d = 12 channels per patch, and patch tokens of
// D = 192 channels; 7 blocks, 2 inner heads of 6 and 3 outer heads of 64; 10 classes.
//
//   images (B, 3, 32, 32)
//     | unfold into patches, 3x3 conv inside each, + pixel_pos          PixelEmbed
//     v
//   pixel tokens (B*N, M, d) = (B*64, 16, 12) ---- flatten each patch's M*d = 192, LN -> Linear -> LN
//     |                                                   |
//     |                                                   v
//     |                       patch tokens (B, 1 + N, D) = (B, 65, 192): [class token; patches] + patch_pos
//     |                                                   |
//   +-|---------------------- TNTBlock x 7 ---------------|-------------------------------------------+
//   | v                                                   v                                           |
//   | inner transformer: attention over the 16 pixels     patch token += LN(Linear(LN(flat pixels)))  |
//   | of each patch, then MLP (B*64 tiny sequences)  ---> (the class token gets nothing)               |
//   |                                                     outer transformer: attention over 65 tokens |
//   |                                                     then MLP                                    |
//   +-|---------------------------------------------------|-------------------------------------------+
//     v (pixel tokens go on to the next block)            v
//                                                   LN, class token (or mean of patches) -> head -> (B, 10)
#include "models/tnt.h"

#include "nn/init.h"

namespace vt::models {

PixelEmbed::PixelEmbed(const ModelConfig& c) : patch_size(c.patch_size), in_channels(c.in_channels) {
  proj = register_module("proj", std::make_shared<nn::Conv2d>(c.in_channels, c.inner_dim, c.pixel_kernel,
                                                              c.pixel_stride, c.pixel_kernel / 2));
}

Tensor PixelEmbed::forward(const Tensor& images, const Tensor& pixel_pos) const {
  const int64_t batch = images.size(0), p = patch_size;
  const Tensor columns = unfold(images, p, p, p, 0);                                   // (B, C*p*p, N) = (B, 48, 64)
  const int64_t patches = columns.size(2);
  const Tensor cut = reshape(transpose(columns, 1, 2), {batch * patches, in_channels, p, p});  // (B*N, C, p, p) = (B*64, 3, 4, 4)
  const Tensor maps = add(proj->forward(cut), pixel_pos);                              // (B*N, d, g, g) = (B*64, 12, 4, 4)
  return transpose(flatten(maps, 2), 1, 2);                                            // (B*N, M, d) = (B*64, 16, 12)
}

TNTBlock::TNTBlock(const ModelConfig& c, double drop_path_rate) {
  const int64_t d = c.inner_dim, pixels = c.pixel_grid() * c.pixel_grid();
  norm_in = register_module("norm_in", std::make_shared<nn::LayerNorm>(d, c.norm_eps));
  attn_in = register_module("attn_in", std::make_shared<nn::Attention>(d, c.inner_heads, nn::QkvLayout::separate,
                                                                       c.qkv_bias, c.drop_rate));
  norm_mlp_in = register_module("norm_mlp_in", std::make_shared<nn::LayerNorm>(d, c.norm_eps));
  mlp_in = register_module("mlp_in", std::make_shared<nn::Mlp>(d, static_cast<int64_t>(d * c.inner_mlp_ratio), c.drop_rate));
  norm1_proj = register_module("norm1_proj", std::make_shared<nn::LayerNorm>(pixels * d, c.norm_eps));
  proj = register_module("proj", std::make_shared<nn::Linear>(pixels * d, c.dim, /*bias=*/false));
  norm2_proj = register_module("norm2_proj", std::make_shared<nn::LayerNorm>(c.dim, c.norm_eps));
  norm_out = register_module("norm_out", std::make_shared<nn::LayerNorm>(c.dim, c.norm_eps));
  attn_out = register_module("attn_out", std::make_shared<nn::Attention>(c.dim, c.heads, nn::QkvLayout::separate,
                                                                         c.qkv_bias, c.drop_rate));
  drop_path = register_module("drop_path", std::make_shared<nn::DropPath>(drop_path_rate));
  norm_mlp = register_module("norm_mlp", std::make_shared<nn::LayerNorm>(c.dim, c.norm_eps));
  mlp = register_module("mlp", std::make_shared<nn::Mlp>(c.dim, static_cast<int64_t>(c.dim * c.mlp_ratio), c.drop_rate));
}

Tensor TNTBlock::inner(const Tensor& pixels_in) const {
  const nn::Linear &fc1 = *mlp_in->fc1, &fc2 = *mlp_in->fc2;
  // The fused op has no dropout inside the attention and the MLP, and keeps no attention map.
  const bool dropout = is_training() && (attn_in->proj_drop->p > 0 || mlp_in->drop1->p > 0 || mlp_in->drop2->p > 0);
  if (!dropout && !attn_in->keep_probabilities && inner_block_fusable(pixels_in, fc1.weight.size(0))) {
    const InnerBlockWeights w = {norm_in->weight,     norm_in->bias,     attn_in->qk->weight,   attn_in->qk->bias,
                                 attn_in->v->weight,  attn_in->v->bias,  attn_in->proj->weight, attn_in->proj->bias,
                                 norm_mlp_in->weight, norm_mlp_in->bias, fc1.weight,            fc1.bias,
                                 fc2.weight,          fc2.bias,          norm_in->eps,          norm_mlp_in->eps};
    // Drawn in the order of the two residual adds below, so that both paths drop the same patches.
    const Tensor attn_scales = drop_path_scales(pixels_in, drop_path->p, drop_path->is_training());  // (B*N)
    const Tensor mlp_scales = drop_path_scales(pixels_in, drop_path->p, drop_path->is_training());   // (B*N)
    return inner_block(pixels_in, w, attn_in->heads, attn_scales, mlp_scales);                       // (B*64, 16, 12)
  }
  const Tensor pixels = drop_path->residual(pixels_in, attn_in->forward(norm_in->forward(pixels_in)));  // (B*64, 16, 12)
  return drop_path->residual(pixels, mlp_in->forward(norm_mlp_in->forward(pixels)));                  // (B*64, 16, 12)
}

std::pair<Tensor, Tensor> TNTBlock::forward(const Tensor& pixels_in, const Tensor& patches_in, bool class_token_only) const {
  const Tensor pixels = inner(pixels_in);  // (B*N, M, d) = (B*64, 16, 12)
  // Each patch token (not the class token) gets LN -> Linear -> LN of its flattened pixel tokens.
  const int64_t batch = patches_in.size(0), tokens = patches_in.size(1);
  const Tensor flat = reshape(pixels, {batch, tokens - 1, pixels.size(1) * pixels.size(2)});          // (B, N, M*d) = (B, 64, 192)
  const Tensor from_pixels = norm2_proj->forward(proj->forward(norm1_proj->forward(flat)));            // (B, N, D) = (B, 64, 192)
  Tensor patches = cat({slice(patches_in, 1, 0, 1), add(slice(patches_in, 1, 1, tokens), from_pixels)}, 1);  // (B, 1 + N, D) = (B, 65, 192)
  // Outer transformer on the patch tokens; every token's keys and values, then the class token's row alone when
  // that is all that is read.
  const Tensor residual = class_token_only ? slice(patches, 1, 0, 1) : patches;  // (B, 1, D) or (B, 1 + N, D)
  patches = drop_path->residual(residual, attn_out->forward(norm_out->forward(patches), class_token_only));
  patches = drop_path->residual(patches, mlp->forward(norm_mlp->forward(patches)));
  return {pixels, patches};
}

TransformerInTransformer::TransformerInTransformer(const ModelConfig& c) : Classifier(c) {
  validate(c);
  const int64_t g = c.pixel_grid(), pixels = g * g;
  cls_token = register_parameter("cls_token", Tensor::empty({1, 1, c.dim}));
  nn::trunc_normal_(cls_token, 0.02);
  patch_pos = std::make_unique<nn::PositionEmbedding>(*this, "patch_pos", c.pos_embed, c.grid(), c.dim);
  pixel_pos = register_parameter("pixel_pos", Tensor::empty({1, c.inner_dim, g, g}));
  nn::trunc_normal_(pixel_pos, 0.02);
  pixel_embed = register_module("pixel_embed", std::make_shared<PixelEmbed>(c));
  norm1_proj = register_module("norm1_proj", std::make_shared<nn::LayerNorm>(pixels * c.inner_dim, c.norm_eps));
  proj = register_module("proj", std::make_shared<nn::Linear>(pixels * c.inner_dim, c.dim));
  norm2_proj = register_module("norm2_proj", std::make_shared<nn::LayerNorm>(c.dim, c.norm_eps));
  pos_drop = register_module("pos_drop", std::make_shared<nn::Dropout>(c.drop_rate));
  const std::vector<double> rates = nn::drop_path_rates(c.drop_path_rate, c.depth);
  for (int64_t i = 0; i < c.depth; ++i)
    blocks.push_back(register_module("blocks." + std::to_string(i), std::make_shared<TNTBlock>(c, rates[i])));
  norm = register_module("norm", std::make_shared<nn::LayerNorm>(c.dim, c.norm_eps));
  int64_t head_in = c.dim;
  if (c.head == Head::mlp) {
    head_in = c.head_hidden > 0 ? c.head_hidden : c.dim;
    pre_logits = register_module("pre_logits", std::make_shared<nn::PreLogits>(c.dim, head_in))->fc;
  }
  head = register_module("head", std::make_shared<nn::Linear>(head_in, c.num_classes));
}

Tensor TransformerInTransformer::forward(const Tensor& images) const {
  const int64_t batch = images.size(0);
  Tensor pixels = pixel_embed->forward(images, pixel_pos);                                   // (B*N, M, d) = (B*64, 16, 12)
  const Tensor flat = reshape(pixels, {batch, config.num_patches(), pixels.size(1) * pixels.size(2)});  // (B, N, M*d) = (B, 64, 192)
  const Tensor patch_tokens = norm2_proj->forward(proj->forward(norm1_proj->forward(flat)));  // (B, N, D) = (B, 64, 192)
  const Tensor cls = expand(cls_token, {batch, 1, config.dim});                              // (B, 1, D)
  Tensor patches = pos_drop->forward(patch_pos->add_to(cat({cls, patch_tokens}, 1)));        // (B, 1 + N, D) = (B, 65, 192)
  // Class-token pooling reads one row of the last block's output, so that block computes that row alone.
  const bool class_token_only = config.pool == Pooling::cls;
  for (size_t i = 0; i < blocks.size(); ++i)  // patches (B, 65, 192); (B, 1, 192) after the last with class_token_only
    std::tie(pixels, patches) = blocks[i]->forward(pixels, patches, class_token_only && i + 1 == blocks.size());
  patches = norm->forward(patches);
  Tensor x = class_token_only ? squeeze(slice(patches, 1, 0, 1), 1)                          // (B, D)
                              : mean(slice(patches, 1, 1, patches.size(1)), {1});
  if (pre_logits) x = tanh(pre_logits->forward(x));                                          // (B, hidden)
  return head->forward(x);                                                                   // (B, classes) = (B, 10)
}

}  // namespace vt::models
