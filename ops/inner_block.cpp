// TNT's inner transformer block for inference, fused: each patch's pixel tokens (at most 16 of them, d channels)
// go through LN, attention, the residual add, LN, the MLP and the second residual add without leaving the core's
// L1 cache. Unfused, every one of those steps streams the whole (B*N, M, d) activation through memory, a few
// multiply-adds per byte. Layout inside the kernel: a patch is held transposed, one vector of 16 float lanes
// per channel, lane t for token t, so every product, the LayerNorm statistics and the softmax over keys are
// vertical vector arithmetic. float32 on the CPU; the reference is the unfused ops (tests/test_attention.cpp).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "autograd/parallel.h"
#include "ops/elementwise_functors.h"
#include "ops/ops.h"
#include "ops/token_lanes.h"

namespace vt {

namespace {

using Lanes = TokenLanes;  // one channel of a sequence's 16 tokens
static_assert(kLaneTokens == kInnerBlockMaxTokens);

struct InnerBlockPointers {
  const float *norm1_weight, *norm1_bias, *qk_weight, *qk_bias, *v_weight, *v_bias, *proj_weight, *proj_bias;
  const float *norm2_weight, *norm2_bias, *fc1_weight, *fc1_bias, *fc2_weight, *fc2_bias;
};

struct InnerBlockSizes {
  int64_t sequences, tokens, dim, heads, hidden;
  float norm1_eps, norm2_eps;
};

// out[o] = bias[o] + sum_c weight[o][c] in[c] for the `outs` rows of a (outs, ins) weight: four outputs at a
// time, so that each input vector loaded serves four multiply-adds.
void columns_linear(Lanes* out, const float* weight, const float* bias, const Lanes* in, int64_t outs, int64_t ins) {
  int64_t o = 0;
  for (; o + 4 <= outs; o += 4) {
    const float *w0 = weight + o * ins, *w1 = w0 + ins, *w2 = w1 + ins, *w3 = w2 + ins;
    Lanes s0{}, s1{}, s2{}, s3{};
    for (int64_t c = 0; c < ins; ++c) {
      s0 += w0[c] * in[c], s1 += w1[c] * in[c], s2 += w2[c] * in[c], s3 += w3[c] * in[c];
    }
    if (bias) s0 += bias[o], s1 += bias[o + 1], s2 += bias[o + 2], s3 += bias[o + 3];
    out[o] = s0, out[o + 1] = s1, out[o + 2] = s2, out[o + 3] = s3;
  }
  for (; o < outs; ++o) {
    Lanes s{};
    for (int64_t c = 0; c < ins; ++c) s += weight[o * ins + c] * in[c];
    out[o] = bias ? s + bias[o] : s;
  }
}

// y[c] = (x[c] - mean) / sqrt(var + eps) * weight[c] + bias[c], each token's statistics over its d channels.
// Two passes (the mean first, then squared deviations) as layer_norm, in float: d is at most 64 here.
void columns_layer_norm(Lanes* y, const Lanes* x, const float* weight, const float* bias, int64_t d, float eps) {
  Lanes mean{};
  for (int64_t c = 0; c < d; ++c) mean += x[c];
  mean *= 1.0f / static_cast<float>(d);
  Lanes squares{};
  for (int64_t c = 0; c < d; ++c) squares += (x[c] - mean) * (x[c] - mean);
  alignas(64) float rstd[kInnerBlockMaxTokens];
  std::memcpy(rstd, &squares, sizeof rstd);
#pragma omp simd
  for (int64_t t = 0; t < kInnerBlockMaxTokens; ++t) rstd[t] = 1.0f / std::sqrt(rstd[t] / static_cast<float>(d) + eps);
  Lanes scale;
  std::memcpy(&scale, rstd, sizeof scale);
  for (int64_t c = 0; c < d; ++c) y[c] = (x[c] - mean) * scale * weight[c] + bias[c];
}

// out[c] for the head's hd channels = softmax(q k^T / sqrt(hd)) v over the sequence's first `tokens` keys;
// q, k, v are the head's channels. The scores are held as columns S^T: s_t[j] holds key j's score in lane i
// for query i, so the softmax over j is elementwise across the vectors (no horizontal reduction). Lanes of
// padding queries (t >= tokens) compute finite values that are never stored.
void columns_attention_head(Lanes* out, const Lanes* q, const Lanes* k, const Lanes* v, int64_t tokens, int64_t hd) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Lanes q_scaled[kInnerBlockMaxDim];
  for (int64_t c = 0; c < hd; ++c) q_scaled[c] = scale * q[c];
  Lanes s_t[kInnerBlockMaxTokens];
  for (int64_t j = 0; j < tokens; ++j) {
    Lanes s{};
    for (int64_t c = 0; c < hd; ++c) s += k[c][j] * q_scaled[c];
    s_t[j] = s;
  }
  softmax_over_columns(s_t, tokens);
  for (int64_t c = 0; c < hd; ++c) {
    Lanes o{};
    for (int64_t j = 0; j < tokens; ++j) o += v[c][j] * s_t[j];
    out[c] = o;
  }
}

void columns_gelu(Lanes* h, int64_t count) {
  for (int64_t o = 0; o < count; ++o) {
    alignas(64) float e[kInnerBlockMaxTokens];
    std::memcpy(e, &h[o], sizeof e);
#pragma omp simd
    for (int64_t t = 0; t < kInnerBlockMaxTokens; ++t) e[t] = Gelu{}.forward(e[t]);
    std::memcpy(&h[o], e, sizeof e);
  }
}

// y (S, M, d) = the block applied to x (S, M, d), one sequence at a time; a thread's arrays (about 45 KB at the
// largest sizes, 10 KB for tnt_cifar) stay in L1 and L2.
void inner_block_forward_cpu(float* y, const float* x, const InnerBlockPointers& w, const InnerBlockSizes& sizes) {
  const int64_t m = sizes.tokens, d = sizes.dim, hidden = sizes.hidden, hd = d / sizes.heads;
  parallel_for(0, sizes.sequences, 8, [&](int64_t lo, int64_t hi) {
    Lanes x_t[kInnerBlockMaxDim], n_t[kInnerBlockMaxDim], qk_t[2 * kInnerBlockMaxDim], v_t[kInnerBlockMaxDim];
    Lanes a_t[kInnerBlockMaxDim], branch_t[kInnerBlockMaxDim], h_t[kInnerBlockMaxHidden];
    alignas(64) float columns[kInnerBlockMaxDim][kInnerBlockMaxTokens];  // a patch's (d, 16) as plain floats
    for (int64_t s = lo; s < hi; ++s) {
      const float* xs = x + s * m * d;  // (M, d)
      if (m < kInnerBlockMaxTokens) std::memset(columns, 0, d * sizeof(Lanes));  // padding tokens: zeros
      for (int64_t t = 0; t < m; ++t)
        for (int64_t c = 0; c < d; ++c) columns[c][t] = xs[t * d + c];
      std::memcpy(x_t, columns, d * sizeof(Lanes));
      // x += proj(attention(LN1(x)))
      columns_layer_norm(n_t, x_t, w.norm1_weight, w.norm1_bias, d, sizes.norm1_eps);
      columns_linear(qk_t, w.qk_weight, w.qk_bias, n_t, 2 * d, d);  // q: channels 0..d-1, k: d..2d-1
      columns_linear(v_t, w.v_weight, w.v_bias, n_t, d, d);
      for (int64_t h = 0; h < sizes.heads; ++h)
        columns_attention_head(a_t + h * hd, qk_t + h * hd, qk_t + d + h * hd, v_t + h * hd, m, hd);
      columns_linear(branch_t, w.proj_weight, w.proj_bias, a_t, d, d);
      for (int64_t c = 0; c < d; ++c) x_t[c] += branch_t[c];
      // x += fc2(gelu(fc1(LN2(x))))
      columns_layer_norm(n_t, x_t, w.norm2_weight, w.norm2_bias, d, sizes.norm2_eps);
      columns_linear(h_t, w.fc1_weight, w.fc1_bias, n_t, hidden, d);
      columns_gelu(h_t, hidden);
      columns_linear(branch_t, w.fc2_weight, w.fc2_bias, h_t, d, hidden);
      for (int64_t c = 0; c < d; ++c) x_t[c] += branch_t[c];
      std::memcpy(columns, x_t, d * sizeof(Lanes));
      float* ys = y + s * m * d;  // (M, d)
      for (int64_t t = 0; t < m; ++t)
        for (int64_t c = 0; c < d; ++c) ys[t * d + c] = columns[c][t];
    }
  });
}

// A parameter's shape must be `expected`; an optional one (a bias) may be undefined.
void check_parameter(const char* op, const char* name, const Tensor& p, const Shape& expected, bool optional,
                     const Tensor& x) {
  if (!p.defined()) {
    if (optional) return;
    fail(op, std::string(name) + " is undefined (x " + x.str() + ")");
  }
  if (p.shape() != expected || p.dtype() != DType::f32 || p.device() != Device::cpu)
    fail(op, std::string(name) + " is " + p.str() + " on " + device_name(p.device()) + ", expected f32" +
                 shape_str(expected) + " on cpu for x " + x.str());
}

const float* pointer(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

}  // namespace

bool inner_block_fusable(const Tensor& x, int64_t hidden) {
  return x.defined() && x.dim() == 3 && x.dtype() == DType::f32 && x.device() == Device::cpu && x.size(1) >= 1 &&
         x.size(1) <= kInnerBlockMaxTokens && x.size(2) >= 1 && x.size(2) <= kInnerBlockMaxDim && hidden >= 1 &&
         hidden <= kInnerBlockMaxHidden;
}

Tensor inner_block_inference(const Tensor& x, const InnerBlockWeights& w, int64_t heads) {
  const char* op = "inner_block_inference";
  if (!x.defined()) fail(op, "undefined input");
  const int64_t hidden = w.fc1_weight.defined() && w.fc1_weight.dim() == 2 ? w.fc1_weight.size(0) : 0;
  if (!inner_block_fusable(x, hidden))
    fail(op, "x " + x.str() + " on " + device_name(x.device()) + " with an MLP of " + std::to_string(hidden) +
                 " hidden features: needs f32 (S, M, d) on the cpu, M <= " + std::to_string(kInnerBlockMaxTokens) +
                 ", d <= " + std::to_string(kInnerBlockMaxDim) + ", 1 to " + std::to_string(kInnerBlockMaxHidden) +
                 " hidden features");
  const int64_t d = x.size(2);
  if (heads < 1 || d % heads != 0)
    fail(op, "x " + x.str() + ": " + std::to_string(d) + " channels are not divisible by " + std::to_string(heads) +
                 " heads");
  check_parameter(op, "norm1 weight", w.norm1_weight, {d}, false, x);
  check_parameter(op, "norm1 bias", w.norm1_bias, {d}, false, x);
  check_parameter(op, "qk weight", w.qk_weight, {2 * d, d}, false, x);
  check_parameter(op, "qk bias", w.qk_bias, {2 * d}, true, x);
  check_parameter(op, "v weight", w.v_weight, {d, d}, false, x);
  check_parameter(op, "v bias", w.v_bias, {d}, true, x);
  check_parameter(op, "proj weight", w.proj_weight, {d, d}, false, x);
  check_parameter(op, "proj bias", w.proj_bias, {d}, true, x);
  check_parameter(op, "norm2 weight", w.norm2_weight, {d}, false, x);
  check_parameter(op, "norm2 bias", w.norm2_bias, {d}, false, x);
  check_parameter(op, "fc1 weight", w.fc1_weight, {hidden, d}, false, x);
  check_parameter(op, "fc1 bias", w.fc1_bias, {hidden}, true, x);
  check_parameter(op, "fc2 weight", w.fc2_weight, {d, hidden}, false, x);
  check_parameter(op, "fc2 bias", w.fc2_bias, {d}, true, x);
  std::vector<Tensor> inputs = w.tensors();
  inputs.insert(inputs.begin(), x);
  if (any_requires_grad(inputs))
    fail(op, "has no backward: call it with grad mode off or on inputs that do not require grad (x " + x.str() + ")");
  NoGradGuard no_grad;
  std::vector<Tensor> dense;  // every input with unit strides (views of the inputs when they are already)
  for (const Tensor& t : inputs) dense.push_back(t.defined() ? contiguous(t) : t);
  const InnerBlockPointers pointers = {pointer(dense[1]),  pointer(dense[2]),  pointer(dense[3]),  pointer(dense[4]),
                                       pointer(dense[5]),  pointer(dense[6]),  pointer(dense[7]),  pointer(dense[8]),
                                       pointer(dense[9]),  pointer(dense[10]), pointer(dense[11]), pointer(dense[12]),
                                       pointer(dense[13]), pointer(dense[14])};
  const InnerBlockSizes sizes = {x.size(0), x.size(1), d, heads, hidden, static_cast<float>(w.norm1_eps),
                                 static_cast<float>(w.norm2_eps)};
  Tensor y = Tensor::empty(x.shape());  // (S, M, d)
  inner_block_forward_cpu(y.data<float>(), dense[0].data<float>(), pointers, sizes);
  return y;
}

}  // namespace vt
