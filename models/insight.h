// What a trained model has learned, as numbers for the `vt viz` pictures: attention maps and their rollout,
// the mean attention distance, the similarity of position embeddings, and the principal components of the
// patch filters (the ViT paper's Figures 6 and 7). Conventions: results are host float64 vectors, row-major;
// tokens are ordered class token first, then the patches row by row over the patch grid.
#pragma once

#include <vector>

#include "models/config.h"

namespace vt::models {

// Every attention's probabilities during one forward pass of `images` (B, C, H, W); the model must be in eval
// mode (dropout off), else this fails. Fails as well on non-finite logits (weights holding NaN or infinity).
struct AttentionMaps {
  std::vector<Tensor> outer;  // per block, (B, H, T, T), T = 1 + N: ViT's attention, TNT's outer attention
  std::vector<Tensor> inner;  // TNT only, per block, (B*N, h, M, M) over each patch's M pixel tokens
  Tensor logits;              // (B, classes)
};
AttentionMaps attention_maps(const Classifier& model, const Tensor& images);

// An attention map (rows: queries, columns: keys; rows sum to 1) as a host matrix.
struct TokenMatrix {
  int64_t tokens = 0;
  std::vector<double> values;  // (T, T)
  double at(int64_t row, int64_t column) const { return values[static_cast<size_t>(row * tokens + column)]; }
};

// Image `image`'s map in `layer` (B, H, T, T): head `head`, or the mean over heads when head is -1.
TokenMatrix head_map(const Tensor& layer, int64_t image, int64_t head = -1);

// The question a picture asks of an attention map, as weights over the T query tokens: the class token's
// row (class-token pooling), or the mean of the patch tokens' rows (mean pooling, where the output does not
// read the class token). `prefix` tokens (the class token) lead. -> (T)
std::vector<double> query_weights(int64_t tokens, int64_t prefix, bool class_token_query);
// What those queries read from each token: query^T A. -> (T)
std::vector<double> attended(const TokenMatrix& map, const std::vector<double>& query);
// The patch tokens' share of a token row, renormalised to sum 1: an image over the patch grid. -> (N)
std::vector<double> patch_part(const std::vector<double>& row, int64_t prefix);

// Attention rollout (Abnar & Zuidema 2020) of image `image` through `layers` (each (B, H, T, T)): per layer the
// mean over heads A plus the identity I, for the residual path that carries a token past the attention, rows
// renormalised to sum 1, so (A + I) / 2; multiplied through the layers, last on the left: R = Â_L ... Â_2 Â_1,
// whose row q says how much each input token flows into token q at the top. Returns query^T R (T), computed
// as a row vector from the top layer down, O(L T^2) instead of the O(L T^3) of forming R.
std::vector<double> attention_rollout(const std::vector<Tensor>& layers, int64_t image, const std::vector<double>& query);

// Mean attention distance of each head of `layer` (B, H, T, T), averaged over the images and the patch queries:
// sum_k a(q, k) |pos(q) - pos(k)|, pos a patch's centre in pixels on a grid x grid of cells `cell` pixels wide.
// The `prefix` tokens are left out as queries and as keys (the patch keys' weights renormalised), since the
// class token has no position. -> (H)
std::vector<double> mean_attention_distance(const Tensor& layer, int64_t prefix, int64_t grid, double cell);

// The position embedding of each patch, (N, D): the table a ViT or TNT adds to its patch tokens, the class
// token's row left out. Fails for pos_embed=none.
Tensor patch_position_table(const Classifier& model);
// TNT's pixel position embedding, one row per pixel token of a patch: pixel_pos (1, d, g, g) -> (g*g, d).
Tensor pixel_position_table(const Classifier& model);
// cos(x_i, x_j) for every pair of rows of x (R, D): (R, R). A zero row has similarity 0 with every row; x must
// be finite.
std::vector<double> cosine_similarity(const Tensor& rows);

// The `count` leading principal components of the rows of x (R, F): the unit eigenvectors of the rows'
// covariance with the largest eigenvalues, each signed so that its largest entry is positive. At most
// min(R - 1, F): centred rows span no more, and further "components" would be rounding noise. x must be finite.
struct PrincipalComponents {
  int64_t count = 0, features = 0;
  std::vector<double> components;  // (count, F)
  std::vector<double> variances;   // (count): the eigenvalues, largest first
  double total_variance = 0;       // the sum of all F eigenvalues (the covariance's trace)
};
PrincipalComponents principal_components(const Tensor& rows, int64_t count);
// The patch embedding's filters, one row per output channel: ViT's patch_embed.proj.weight (D, C, p, p) (with a
// convolutional stem, its first conv's (S, C, 3, 3)) and TNT's pixel_embed.proj.weight (d, C, k, k), flattened
// to (D, C*k*k).
Tensor patch_filters(const Classifier& model);

}  // namespace vt::models
