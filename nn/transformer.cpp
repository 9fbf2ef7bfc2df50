// Attention and the pre-norm block. The attention op reads q, k and v as views of the projections' outputs
// and writes the heads merged (no copies either way).
#include "nn/transformer.h"

#include <cmath>

namespace vt::nn {

static Tensor select(const Tensor& x, int64_t dim, int64_t index) { return squeeze(slice(x, dim, index, index + 1), dim); }

Attention::Attention(int64_t dim, int64_t heads_, QkvLayout layout, bool qkv_bias, double drop) : heads(heads_) {
  if (heads < 1 || dim % heads != 0)
    fail("Attention", "dim " + std::to_string(dim) + " is not divisible by " + std::to_string(heads) + " heads");
  if (layout == QkvLayout::fused) {
    qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim, qkv_bias));
  } else {
    qk = register_module("qk", std::make_shared<Linear>(dim, 2 * dim, qkv_bias));
    v = register_module("v", std::make_shared<Linear>(dim, dim, qkv_bias));
  }
  proj = register_module("proj", std::make_shared<Linear>(dim, dim));
  proj_drop = register_module("proj_drop", std::make_shared<Dropout>(drop));
}

Tensor Attention::forward(const Tensor& x, bool class_token_only) const {
  const std::vector<Tensor> projections = qkv ? std::vector<Tensor>{qkv->forward(x)}                // {(B, N, 3D)}
                                              : std::vector<Tensor>{qk->forward(x), v->forward(x)};  // {(B, N, 2D), (B, N, D)}
  Tensor merged;  // (B, N, D): the heads' outputs side by side
  if (!keep_probabilities) {
    merged = multi_head_attention(projections, heads);
  } else {  // the same attention as separate ops on the heads' views, keeping softmax(q k^T / sqrt(hd)) (B, H, N, N)
    const int64_t batch = x.size(0), tokens = x.size(1), dim = x.size(2), head_dim = dim / heads;
    const Tensor packed = qkv ? projections[0] : cat(projections, 2);  // (B, N, 3D): a copy only for {qk, v}
    const Tensor qkv_heads = permute(view(packed, {batch, tokens, 3, heads, head_dim}), {2, 0, 3, 1, 4});  // (3, B, H, N, hd)
    const Tensor q = select(qkv_heads, 0, 0), k = select(qkv_heads, 0, 1), values = select(qkv_heads, 0, 2);   // (B, H, N, hd)
    probabilities = softmax(mul(matmul(q, transpose(k, 2, 3)), 1.0 / std::sqrt(static_cast<double>(head_dim))), -1);  // (B, H, N, N)
    merged = reshape(transpose(matmul(probabilities, values), 1, 2), {batch, tokens, dim});
  }
  if (class_token_only) merged = slice(merged, 1, 0, 1);  // (B, 1, D)
  return proj_drop->forward(proj->forward(merged));
}

Block::Block(int64_t dim, int64_t heads, double mlp_ratio, bool qkv_bias, double drop, double drop_path,
             double norm_eps, QkvLayout layout) {
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(dim, norm_eps));
  attn = register_module("attn", std::make_shared<Attention>(dim, heads, layout, qkv_bias, drop));
  drop_path1 = register_module("drop_path1", std::make_shared<DropPath>(drop_path));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(dim, norm_eps));
  mlp = register_module("mlp", std::make_shared<Mlp>(dim, static_cast<int64_t>(dim * mlp_ratio), drop));
  drop_path2 = register_module("drop_path2", std::make_shared<DropPath>(drop_path));
}

Tensor Block::forward(const Tensor& x, bool class_token_only) const {
  // h = x + drop_path(attn(norm1(x))), then h + drop_path(mlp(norm2(h))), on the class token's row alone or every row.
  const Tensor residual = class_token_only ? slice(x, 1, 0, 1) : x;  // (B, 1, D) or (B, N, D)
  const Tensor h = drop_path1->residual(residual, attn->forward(norm1->forward(x), class_token_only));
  return drop_path2->residual(h, mlp->forward(norm2->forward(h)));
}

std::vector<double> drop_path_rates(double rate, int64_t depth) {
  std::vector<double> rates(depth);
  for (int64_t i = 0; i < depth; ++i) rates[i] = depth > 1 ? rate * static_cast<double>(i) / (depth - 1) : 0.0;
  return rates;
}

}  // namespace vt::nn
