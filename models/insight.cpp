// Attention maps, rollout, attention distance, position-embedding similarity and filter components. These run
// once per picture on small matrices (T = 65 tokens for the CIFAR presets, 197 for timm's), so they are written
// in plain double loops on the host, as the formulas read.
#include "models/insight.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "models/tnt.h"
#include "models/vit.h"

namespace vt::models {

namespace {

std::vector<nn::Attention*> outer_attentions(const Classifier& model) {
  std::vector<nn::Attention*> out;
  if (const auto* vit = dynamic_cast<const VisionTransformer*>(&model))
    for (const auto& block : vit->blocks) out.push_back(block->attn.get());
  if (const auto* tnt = dynamic_cast<const TransformerInTransformer*>(&model))
    for (const auto& block : tnt->blocks) out.push_back(block->attn_out.get());
  return out;
}

std::vector<nn::Attention*> inner_attentions(const Classifier& model) {
  std::vector<nn::Attention*> out;
  if (const auto* tnt = dynamic_cast<const TransformerInTransformer*>(&model))
    for (const auto& block : tnt->blocks) out.push_back(block->attn_in.get());
  return out;
}

// Turns on keep_probabilities for the forward pass, and off again however it ends.
struct KeepProbabilities {
  explicit KeepProbabilities(std::vector<nn::Attention*> attentions) : attentions(std::move(attentions)) {
    for (nn::Attention* a : this->attentions) a->keep_probabilities = true;
  }
  ~KeepProbabilities() {
    for (nn::Attention* a : attentions) {
      a->keep_probabilities = false;
      a->probabilities = Tensor();
    }
  }
  std::vector<nn::Attention*> attentions;
};

Tensor host_f64(const Tensor& t) {
  NoGradGuard no_grad;
  return contiguous(t.to(Device::cpu).to(DType::f64));
}

void check_layer(const char* op, const Tensor& layer) {
  if (layer.dim() != 4 || layer.size(2) != layer.size(3) || layer.size(2) < 1)
    fail(op, "expected attention probabilities (B, H, T, T), got " + layer.str());
}

// Non-finite values would give pictures of nothing (and Jacobi sweeps that never converge): refused.
void check_finite(const char* op, const std::string& what, const Tensor& t) {
  for (double value : t.to_vector())
    if (!std::isfinite(value)) fail(op, what + " " + t.str() + " hold NaN or infinity: the checkpoint's weights are not finite");
}

// Cyclic Jacobi: rotates the symmetric (n, n) matrix a to diagonal form; a's diagonal ends as the eigenvalues
// and the columns of the returned v as the unit eigenvectors. Quadratically convergent, a few sweeps suffice.
std::vector<double> jacobi_eigenvectors(std::vector<double>& a, int64_t n) {
  std::vector<double> v(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) v[i * n + i] = 1;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0, total = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) (i == j ? total : off) += a[i * n + j] * a[i * n + j];
    if (off <= 1e-30 * (total + off) || off == 0) break;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        if (apq == 0) continue;
        // The rotation angle that zeroes a[p][q]: t = tan(theta), the smaller root for stability.
        const double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int64_t k = 0; k < n; ++k) {  // columns p and q
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (int64_t k = 0; k < n; ++k) {  // rows p and q
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (int64_t k = 0; k < n; ++k) {
          const double vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
  }
  return v;
}

}  // namespace

AttentionMaps attention_maps(const Classifier& model, const Tensor& images) {
  const std::vector<nn::Attention*> outer = outer_attentions(model), inner = inner_attentions(model);
  if (outer.empty()) fail("attention_maps", "model " + model.config.name + " (" + model.config.arch + ") has no attention to show");
  if (model.is_training()) fail("attention_maps", "model " + model.config.name + " is in training mode: call eval() first");
  std::vector<nn::Attention*> all = outer;
  all.insert(all.end(), inner.begin(), inner.end());
  const KeepProbabilities keep(all);
  NoGradGuard no_grad;
  AttentionMaps maps;
  maps.logits = host_f64(model.forward(images));  // (B, classes)
  check_finite("attention_maps", "the logits", maps.logits);
  for (const nn::Attention* a : outer) maps.outer.push_back(host_f64(a->probabilities));  // (B, H, T, T)
  for (const nn::Attention* a : inner) maps.inner.push_back(host_f64(a->probabilities));  // (B*N, h, M, M)
  return maps;
}

TokenMatrix head_map(const Tensor& layer, int64_t image, int64_t head) {
  check_layer("head_map", layer);
  const int64_t heads = layer.size(1), tokens = layer.size(2);
  if (image < 0 || image >= layer.size(0) || head < -1 || head >= heads)
    fail("head_map", "no image " + std::to_string(image) + ", head " + std::to_string(head) + " in " + layer.str());
  const std::vector<double> all = host_f64(slice(layer, 0, image, image + 1)).to_vector();  // (H, T, T)
  TokenMatrix map{tokens, std::vector<double>(static_cast<size_t>(tokens * tokens), 0.0)};
  for (int64_t h = head < 0 ? 0 : head; h < (head < 0 ? heads : head + 1); ++h)
    for (int64_t i = 0; i < tokens * tokens; ++i) map.values[i] += all[h * tokens * tokens + i] / (head < 0 ? heads : 1);
  return map;
}

std::vector<double> query_weights(int64_t tokens, int64_t prefix, bool class_token_query) {
  if (tokens - prefix < 1 || prefix < 0 || (class_token_query && prefix < 1))
    fail("query_weights", std::to_string(tokens) + " tokens with " + std::to_string(prefix) + " leading tokens" +
                              (class_token_query ? " and a class-token query" : ""));
  std::vector<double> query(static_cast<size_t>(tokens), 0.0);
  if (class_token_query) query[0] = 1;
  else
    for (int64_t q = prefix; q < tokens; ++q) query[q] = 1.0 / static_cast<double>(tokens - prefix);
  return query;
}

std::vector<double> attended(const TokenMatrix& map, const std::vector<double>& query) {
  if (static_cast<int64_t>(query.size()) != map.tokens)
    fail("attended", std::to_string(query.size()) + " query weights for " + std::to_string(map.tokens) + " tokens");
  std::vector<double> row(query.size(), 0.0);
  for (int64_t q = 0; q < map.tokens; ++q)
    for (int64_t k = 0; k < map.tokens; ++k) row[k] += query[q] * map.at(q, k);
  return row;
}

std::vector<double> patch_part(const std::vector<double>& row, int64_t prefix) {
  if (prefix < 0 || static_cast<int64_t>(row.size()) <= prefix)
    fail("patch_part", std::to_string(row.size()) + " tokens with " + std::to_string(prefix) + " leading tokens");
  std::vector<double> patches(row.begin() + prefix, row.end());
  const double total = std::accumulate(patches.begin(), patches.end(), 0.0);
  if (total > 0)
    for (double& value : patches) value /= total;
  return patches;
}

std::vector<double> attention_rollout(const std::vector<Tensor>& layers, int64_t image, const std::vector<double>& query) {
  if (layers.empty()) fail("attention_rollout", "needs at least one layer");
  std::vector<double> row = query;  // query^T Â_L ... Â_l, from the top layer down
  for (auto layer = layers.rbegin(); layer != layers.rend(); ++layer) {
    TokenMatrix a = head_map(*layer, image);  // (T, T), mean over heads
    if (a.tokens != static_cast<int64_t>(row.size()))
      fail("attention_rollout", std::to_string(row.size()) + " query weights for a layer " + layer->str());
    for (int64_t i = 0; i < a.tokens; ++i) {  // Â = A + I, rows renormalised
      a.values[i * a.tokens + i] += 1;
      double total = 0;
      for (int64_t j = 0; j < a.tokens; ++j) total += a.at(i, j);
      for (int64_t j = 0; j < a.tokens; ++j) a.values[i * a.tokens + j] /= total;
    }
    row = attended(a, row);
  }
  return row;
}

std::vector<double> mean_attention_distance(const Tensor& layer, int64_t prefix, int64_t grid, double cell) {
  check_layer("mean_attention_distance", layer);
  const int64_t images = layer.size(0), heads = layer.size(1), tokens = layer.size(2);
  if (prefix < 0 || grid < 1 || tokens != prefix + grid * grid)
    fail("mean_attention_distance", layer.str() + " is not " + std::to_string(prefix) + " + " + std::to_string(grid) +
                                        "^2 tokens");
  const std::vector<double> a = host_f64(layer).to_vector();  // (B, H, T, T)
  std::vector<double> distance(static_cast<size_t>(heads), 0.0);
  for (int64_t b = 0; b < images; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t q = 0; q < grid * grid; ++q) {
        const double* row = a.data() + ((b * heads + h) * tokens + prefix + q) * tokens + prefix;
        double weighted = 0, weight = 0;
        for (int64_t k = 0; k < grid * grid; ++k) {
          const double dy = static_cast<double>(q / grid - k / grid), dx = static_cast<double>(q % grid - k % grid);
          weighted += row[k] * cell * std::sqrt(dx * dx + dy * dy);
          weight += row[k];
        }
        if (weight > 0) distance[h] += weighted / weight / static_cast<double>(images * grid * grid);
      }
  return distance;
}

Tensor patch_position_table(const Classifier& model) {
  const nn::PositionEmbedding* embedding = nullptr;
  if (const auto* vit = dynamic_cast<const VisionTransformer*>(&model)) embedding = vit->pos_embed.get();
  if (const auto* tnt = dynamic_cast<const TransformerInTransformer*>(&model)) embedding = tnt->patch_pos.get();
  if (!embedding || embedding->kind() == PosEmbed::none)
    fail("patch_position_table", "model " + model.config.name + " has no position embedding (pos_embed=none)");
  const Tensor table = host_f64(embedding->table());  // (1, 1 + N, D)
  return contiguous(squeeze(slice(table, 1, 1, table.size(1)), 0));  // (N, D)
}

Tensor pixel_position_table(const Classifier& model) {
  const auto* tnt = dynamic_cast<const TransformerInTransformer*>(&model);
  if (!tnt) fail("pixel_position_table", "model " + model.config.name + " is not a TNT: it has no pixel tokens");
  const Tensor pixel_pos = host_f64(tnt->pixel_pos);                                  // (1, d, g, g)
  return contiguous(transpose(flatten(squeeze(pixel_pos, 0), 1), 0, 1));               // (g*g, d)
}

std::vector<double> cosine_similarity(const Tensor& rows) {
  if (rows.dim() != 2) fail("cosine_similarity", "expected rows (R, D), got " + rows.str());
  const int64_t r = rows.size(0), d = rows.size(1);
  check_finite("cosine_similarity", "the rows", rows);
  const std::vector<double> x = host_f64(rows).to_vector();
  std::vector<double> norm(static_cast<size_t>(r), 0.0), out(static_cast<size_t>(r * r), 0.0);
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t k = 0; k < d; ++k) norm[i] += x[i * d + k] * x[i * d + k];
    norm[i] = std::sqrt(norm[i]);
  }
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < r; ++j) {
      double dot = 0;
      for (int64_t k = 0; k < d; ++k) dot += x[i * d + k] * x[j * d + k];
      out[i * r + j] = norm[i] > 0 && norm[j] > 0 ? dot / (norm[i] * norm[j]) : 0.0;
    }
  return out;
}

PrincipalComponents principal_components(const Tensor& rows, int64_t count) {
  if (rows.dim() != 2 || rows.size(0) < 2 || count < 1)
    fail("principal_components", "expected at least 2 rows (R, F) and count >= 1, got " + rows.str() + " and " +
                                     std::to_string(count));
  check_finite("principal_components", "the rows", rows);
  const int64_t r = rows.size(0), f = rows.size(1);
  std::vector<double> x = host_f64(rows).to_vector();
  for (int64_t k = 0; k < f; ++k) {  // centre each feature
    double mean = 0;
    for (int64_t i = 0; i < r; ++i) mean += x[i * f + k] / r;
    for (int64_t i = 0; i < r; ++i) x[i * f + k] -= mean;
  }
  // The covariance X^T X / (R - 1) is (F, F); with more features than rows (timm's 16x16 RGB filters: F = 768,
  // R = 192) the Gram matrix X X^T (R, R) is smaller and has the same non-zero eigenvalues: for its unit
  // eigenvector w with eigenvalue s, X^T w / sqrt(s) is the covariance's unit eigenvector.
  const bool gram = f > r;
  const int64_t n = gram ? r : f;
  std::vector<double> m(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t k = 0; k < (gram ? f : r); ++k)
        m[i * n + j] += gram ? x[i * f + k] * x[j * f + k] : x[k * f + i] * x[k * f + j];
  const std::vector<double> v = jacobi_eigenvectors(m, n);
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return m[a * n + a] > m[b * n + b]; });

  PrincipalComponents pcs;
  pcs.count = std::min({count, n, r - 1}), pcs.features = f;
  for (int64_t i = 0; i < n; ++i) pcs.total_variance += std::max(m[i * n + i], 0.0) / static_cast<double>(r - 1);
  for (int64_t c = 0; c < pcs.count; ++c) {
    const int64_t e = order[c];
    const double eigenvalue = std::max(m[e * n + e], 0.0);
    std::vector<double> u(static_cast<size_t>(f), 0.0);
    if (gram) {
      for (int64_t k = 0; k < f; ++k)
        for (int64_t i = 0; i < r; ++i) u[k] += x[i * f + k] * v[i * n + e];
      const double length = std::sqrt(std::inner_product(u.begin(), u.end(), u.begin(), 0.0));
      if (length > 0)
        for (double& value : u) value /= length;
    } else {
      for (int64_t k = 0; k < f; ++k) u[k] = v[k * n + e];
    }
    const auto largest = std::max_element(u.begin(), u.end(), [](double a, double b) { return std::abs(a) < std::abs(b); });
    if (*largest < 0)
      for (double& value : u) value = -value;
    pcs.components.insert(pcs.components.end(), u.begin(), u.end());
    pcs.variances.push_back(eigenvalue / static_cast<double>(r - 1));
  }
  return pcs;
}

Tensor patch_filters(const Classifier& model) {
  Tensor weight;  // (D, C, k, k)
  if (const auto* vit = dynamic_cast<const VisionTransformer*>(&model))  // with a stem: its first conv's 3x3 filters
    weight = vit->patch_embed->stem.empty() ? vit->patch_embed->proj->weight : vit->patch_embed->stem.front()->weight;
  if (const auto* tnt = dynamic_cast<const TransformerInTransformer*>(&model)) weight = tnt->pixel_embed->proj->weight;
  if (!weight.defined()) fail("patch_filters", "model " + model.config.name + " has no patch embedding");
  return flatten(host_f64(weight), 1);  // (D, C*k*k)
}

}  // namespace vt::models
