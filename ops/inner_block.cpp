// TNT's inner transformer block as one op, forward and backward. Each patch's pixel tokens (at most 16, d
// channels) go through LN, attention, the residual add, LN, the MLP and the second residual add in registers
// and L1, loaded once and stored once; as separate ops, every one of those steps streams the whole (B*N, M, d)
// activation through memory for a few multiply-adds per byte. The op saves only its input: backward computes
// each patch's forward again before going back through it. Layout: a patch is held transposed, one vector of 16
// lanes per channel (lane t for token t), so the products, the LayerNorm statistics and the softmax over keys
// are vertical vector arithmetic. float32 and float64 on the CPU; the reference is the same block written as
// separate ops (tests/test_inner_block.cpp).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "autograd/parallel.h"
#include "ops/elementwise_functors.h"
#include "ops/ops.h"
#include "ops/token_lanes.h"

namespace vt {

namespace {

constexpr int64_t kTokens = kInnerBlockMaxTokens, kMaxDim = kInnerBlockMaxDim, kMaxHidden = kInnerBlockMaxHidden;
static_assert(kLaneTokens == kTokens);
// The weight gradients are summed per block of sequences, at most this many blocks of fixed extent, and the
// blocks' sums added in order: the result depends on the shape alone, not on the threads.
constexpr int64_t kGradientBlocks = 32;

template <class T>
using Lanes = TokenLanes<T>;

// The parameters in InnerBlockWeights::tensors()'s order.
enum Param {
  kNorm1Weight, kNorm1Bias, kQkWeight, kQkBias, kVWeight, kVBias, kProjWeight, kProjBias,
  kNorm2Weight, kNorm2Bias, kFc1Weight, kFc1Bias, kFc2Weight, kFc2Bias, kParams
};
template <class T>
using Params = std::array<const T*, kParams>;  // contiguous, null for an absent bias

struct Sizes {
  int64_t sequences, tokens, dim, heads, hidden;
  double norm1_eps, norm2_eps;
};

// Vectors of 16 lanes that hold n values.
constexpr int64_t lane_vectors(int64_t n) { return (n + kTokens - 1) / kTokens; }

// Where a block's gradient sums of one parameter lie. A weight (outs, ins) sums with its input channels in the
// lanes: element (o, c) in lane c % 16 of vector o * lane_vectors(ins) + c / 16. Every other parameter (biases,
// LayerNorm) sums with the tokens in the lanes, one vector per element, added across lanes at the end.
struct SumLayout {
  int64_t elements;  // the parameter's
  int64_t vectors;   // its sums'
  int64_t ins;       // a weight's input channels; 0 for a parameter summed over lanes
};

std::array<SumLayout, kParams> sum_layouts(const Sizes& z) {
  const int64_t d = z.dim, h = z.hidden, vd = lane_vectors(d), vh = lane_vectors(h);
  auto weight = [](int64_t outs, int64_t ins, int64_t vectors) { return SumLayout{outs * ins, outs * vectors, ins}; };
  auto lanes = [](int64_t n) { return SumLayout{n, n, 0}; };
  return {lanes(d),           lanes(d), weight(2 * d, d, vd), lanes(2 * d), weight(d, d, vd), lanes(d),
          weight(d, d, vd),   lanes(d), lanes(d),             lanes(d),     weight(h, d, vd), lanes(h),
          weight(d, h, vh),   lanes(d)};
}

// ---- one sequence, transposed: x[c] holds channel c of every token ----

// out[o + i] = bias[o + i] + sum_c weight[o + i][c] in[c] for i < Rows: Rows independent chains of multiply-adds,
// each input vector loaded once for all of them.
template <int64_t Rows, class T>
void linear_rows(Lanes<T>* out, const T* weight, const T* bias, const Lanes<T>* in, int64_t o, int64_t ins) {
  Lanes<T> sum[Rows] = {};
  for (int64_t c = 0; c < ins; ++c)
    for (int64_t i = 0; i < Rows; ++i) sum[i] += weight[(o + i) * ins + c] * in[c];
  for (int64_t i = 0; i < Rows; ++i) out[o + i] = bias ? sum[i] + bias[o + i] : sum[i];
}

// out[o] = bias[o] + sum_c weight[o][c] in[c] for the `outs` rows of a (outs, ins) weight, eight rows at a time
// with AVX-512 (8 of its 32 registers), four with AVX2 (8 of its 16; 8 rows spilled sums to the stack).
template <class T>
void columns_linear(Lanes<T>* out, const T* weight, const T* bias, const Lanes<T>* in, int64_t outs, int64_t ins) {
  constexpr int64_t kRows = 8 / kRegistersPerLanes;
  int64_t o = 0;
  for (; o + kRows <= outs; o += kRows) linear_rows<kRows, T>(out, weight, bias, in, o, ins);
  if constexpr (kRows > 4)
    for (; o + 4 <= outs; o += 4) linear_rows<4, T>(out, weight, bias, in, o, ins);
  for (; o < outs; ++o) linear_rows<1, T>(out, weight, bias, in, o, ins);
}

// in_grad[c] = sum_o weight[o][c] out_grad[o]: the gradient through a (outs, ins) weight, four inputs at a time.
template <class T>
void columns_linear_input_grad(Lanes<T>* in_grad, const T* weight, const Lanes<T>* out_grad, int64_t outs,
                               int64_t ins) {
  int64_t c = 0;
  for (; c + 4 <= ins; c += 4) {
    Lanes<T> s0{}, s1{}, s2{}, s3{};
    for (int64_t o = 0; o < outs; ++o) {
      const T* w = weight + o * ins + c;
      s0 += w[0] * out_grad[o], s1 += w[1] * out_grad[o], s2 += w[2] * out_grad[o], s3 += w[3] * out_grad[o];
    }
    in_grad[c] = s0, in_grad[c + 1] = s1, in_grad[c + 2] = s2, in_grad[c + 3] = s3;
  }
  for (; c < ins; ++c) {
    Lanes<T> s{};
    for (int64_t o = 0; o < outs; ++o) s += weight[o * ins + c] * out_grad[o];
    in_grad[c] = s;
  }
}

// rows[t * vectors + c / 16][c % 16] = columns[c][t], vectors = lane_vectors(channels): a sequence's columns
// as 16 token rows of channels, padded with zeros to whole vectors.
template <class T>
void columns_to_rows(Lanes<T>* rows, const Lanes<T>* columns, int64_t channels) {
  const int64_t vectors = lane_vectors(channels);
  std::fill(rows, rows + kTokens * vectors, Lanes<T>{});
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t t = 0; t < kTokens; ++t) rows[t * vectors + c / kTokens][c % kTokens] = columns[c][t];
}

// weight_sums[o][c] += sum_t out_grad[o][t] in[c][t] with the input channels in the lanes (in_rows from
// columns_to_rows): 16 multiply-adds into one vector per (o, vector of c), each token's gradient broadcast, so
// the sums stay in L1 (with the tokens in the lanes they were outs * ins vectors, read and written per sequence
// from L2). Four outputs at a time, each summing tokens 0-7 and 8-15 apart: eight independent chains of
// multiply-adds instead of one chain of 16. bias_sums[o] += out_grad[o] when not null. Padding tokens add
// nothing: their out_grad is zero.
template <class T>
void accumulate_linear_grads(Lanes<T>* weight_sums, Lanes<T>* bias_sums, const Lanes<T>* out_grad,
                             const Lanes<T>* in_rows, int64_t outs, int64_t ins) {
  constexpr int64_t half = kTokens / 2;
  const int64_t vectors = lane_vectors(ins);
  int64_t o = 0;
  for (; o + 4 <= outs; o += 4)
    for (int64_t v = 0; v < vectors; ++v) {
      Lanes<T> low[4] = {}, high[4] = {};
      for (int64_t t = 0; t < half; ++t) {
        const Lanes<T> row_low = in_rows[t * vectors + v], row_high = in_rows[(t + half) * vectors + v];
        for (int64_t i = 0; i < 4; ++i) {
          low[i] += out_grad[o + i][t] * row_low;
          high[i] += out_grad[o + i][t + half] * row_high;
        }
      }
      for (int64_t i = 0; i < 4; ++i) weight_sums[(o + i) * vectors + v] += low[i] + high[i];
    }
  for (; o < outs; ++o)
    for (int64_t v = 0; v < vectors; ++v) {
      Lanes<T> low{}, high{};
      for (int64_t t = 0; t < half; ++t) {
        low += out_grad[o][t] * in_rows[t * vectors + v];
        high += out_grad[o][t + half] * in_rows[(t + half) * vectors + v];
      }
      weight_sums[o * vectors + v] += low + high;
    }
  if (bias_sums)
    for (int64_t i = 0; i < outs; ++i) bias_sums[i] += out_grad[i];
}

// y[c] = (x[c] - mean) rstd weight[c] + bias[c], each token's statistics over its d channels, kept for the
// backward. Two passes (the mean first, then squared deviations), as layer_norm; d is at most 64 here.
template <class T>
void columns_layer_norm(Lanes<T>* y, Lanes<T>& mean, Lanes<T>& rstd, const Lanes<T>* x, const T* weight,
                        const T* bias, int64_t d, double eps) {
  Lanes<T> sum{};
  for (int64_t c = 0; c < d; ++c) sum += x[c];
  mean = sum / static_cast<T>(d);
  Lanes<T> squares{};
  for (int64_t c = 0; c < d; ++c) squares += (x[c] - mean) * (x[c] - mean);
  alignas(64) T r[kTokens];
  std::memcpy(r, &squares, sizeof r);
#pragma omp simd
  for (int64_t t = 0; t < kTokens; ++t) r[t] = T(1) / std::sqrt(r[t] / static_cast<T>(d) + static_cast<T>(eps));
  std::memcpy(&rstd, r, sizeof r);
  for (int64_t c = 0; c < d; ++c) y[c] = (x[c] - mean) * rstd * weight[c] + bias[c];
}

// dx[c] += the gradient through y = LN(x) given dy; weight_sums, bias_sums += dy xhat, dy. With xhat = (x - mean)
// rstd and g = dy weight: dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)).
template <class T>
void columns_layer_norm_backward(Lanes<T>* dx, Lanes<T>* weight_sums, Lanes<T>* bias_sums, const Lanes<T>* dy,
                                 const Lanes<T>* x, Lanes<T> mean, Lanes<T> rstd, const T* weight, int64_t d) {
  Lanes<T> g_sum{}, gx_sum{};
  for (int64_t c = 0; c < d; ++c) {
    const Lanes<T> xhat = (x[c] - mean) * rstd, g = dy[c] * weight[c];
    g_sum += g, gx_sum += g * xhat;
    weight_sums[c] += dy[c] * xhat, bias_sums[c] += dy[c];
  }
  const Lanes<T> g_mean = g_sum / static_cast<T>(d), gx_mean = gx_sum / static_cast<T>(d);
  for (int64_t c = 0; c < d; ++c) dx[c] += rstd * (dy[c] * weight[c] - g_mean - (x[c] - mean) * rstd * gx_mean);
}

// A head's probabilities P = softmax(q k^T / sqrt(hd)) as columns: s_t[j] holds P[i][j] in lane i, for the
// first `tokens` keys j. Lanes of padding queries hold finite values that nothing stores.
template <class T>
void attention_probabilities(Lanes<T>* s_t, const Lanes<T>* q, const Lanes<T>* k, int64_t tokens, int64_t hd) {
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  Lanes<T> q_scaled[kMaxDim];
  for (int64_t c = 0; c < hd; ++c) q_scaled[c] = scale * q[c];
  for (int64_t j = 0; j < tokens; ++j) {
    Lanes<T> s{};
    for (int64_t c = 0; c < hd; ++c) s += k[c][j] * q_scaled[c];
    s_t[j] = s;
  }
  softmax_over_columns<T>(s_t, tokens);
}

// rows[i] holds P[i][j] in lane j (zero for padding keys j >= tokens): the columns s_t transposed, for the sums
// over queries of the backward.
template <class T>
void transpose_columns(Lanes<T>* rows, const Lanes<T>* s_t, int64_t tokens) {
  for (int64_t i = 0; i < kTokens; ++i) {
    rows[i] = Lanes<T>{};
    for (int64_t j = 0; j < tokens; ++j) rows[i][j] = s_t[j][i];
  }
}

// One head's backward from its P^T columns s_t and dO: dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dP P)),
// dQ = scale dS K, dK = scale dS^T Q. Padding tokens stay zero: dO is zero there (dy is) and P has no padding keys.
template <class T>
void attention_head_backward(Lanes<T>* dq, Lanes<T>* dk, Lanes<T>* dv, const Lanes<T>* s_t, const Lanes<T>* q,
                             const Lanes<T>* k, const Lanes<T>* v, const Lanes<T>* dout, int64_t tokens, int64_t hd) {
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  Lanes<T> rows[kTokens];  // P, then dS, with the keys in the lanes
  transpose_columns<T>(rows, s_t, tokens);
  for (int64_t c = 0; c < hd; ++c) {  // dv[c][j] = sum_i P[i][j] dO[c][i]
    Lanes<T> s{};
    for (int64_t i = 0; i < tokens; ++i) s += dout[c][i] * rows[i];
    dv[c] = s;
  }
  Lanes<T> ds_t[kTokens], weighted{};  // dS^T; weighted[i] = sum_j dP[i][j] P[i][j]
  for (int64_t j = 0; j < tokens; ++j) {
    Lanes<T> dp{};  // dP[i][j] = dO_i . v_j
    for (int64_t c = 0; c < hd; ++c) dp += v[c][j] * dout[c];
    ds_t[j] = dp;
    weighted += dp * s_t[j];
  }
  for (int64_t j = 0; j < tokens; ++j) ds_t[j] = s_t[j] * (ds_t[j] - weighted);
  for (int64_t c = 0; c < hd; ++c) {  // dq[c][i] = scale sum_j dS[i][j] k[c][j]
    Lanes<T> s{};
    for (int64_t j = 0; j < tokens; ++j) s += k[c][j] * ds_t[j];
    dq[c] = scale * s;
  }
  transpose_columns<T>(rows, ds_t, tokens);
  for (int64_t c = 0; c < hd; ++c) {  // dk[c][j] = scale sum_i dS[i][j] q[c][i]
    Lanes<T> s{};
    for (int64_t i = 0; i < tokens; ++i) s += q[c][i] * rows[i];
    dk[c] = scale * s;
  }
}

// h[o] = gelu(h[o]), and gelu'(h[o]) in derivative[o] when it is not null (one exponential for both). One loop
// over all count * 16 values, long enough for the compiler to overlap the polynomials of successive vectors.
template <class T>
void columns_gelu(Lanes<T>* h, Lanes<T>* derivative, int64_t count) {
  T* values = reinterpret_cast<T*>(h);
  const int64_t n = count * kTokens;
  if (derivative) {
    T* derivatives = reinterpret_cast<T*>(derivative);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) values[i] = Gelu{}.forward(values[i], derivatives[i]);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) values[i] = Gelu{}.forward(values[i]);
  }
}

// columns[c][t] = rows[t * d + c] for a sequence's (M, d) rows; padding tokens t >= M are zero.
template <class T>
void load_columns(Lanes<T>* columns, const T* rows, int64_t m, int64_t d) {
  for (int64_t c = 0; c < d; ++c) columns[c] = Lanes<T>{};
  for (int64_t t = 0; t < m; ++t)
    for (int64_t c = 0; c < d; ++c) columns[c][t] = rows[t * d + c];
}

template <class T>
void store_columns(T* rows, const Lanes<T>* columns, int64_t m, int64_t d) {
  for (int64_t t = 0; t < m; ++t)
    for (int64_t c = 0; c < d; ++c) rows[t * d + c] = columns[c][t];
}

// One sequence's forward, kept for its backward.
template <class T>
struct Tape {
  Lanes<T> x[kMaxDim], n1[kMaxDim], qk[2 * kMaxDim], v[kMaxDim], a[kMaxDim], x1[kMaxDim], n2[kMaxDim];
  Lanes<T> h[kMaxHidden], dgelu[kMaxHidden];  // gelu(fc1(n2)) and gelu' there
  Lanes<T> mean1, rstd1, mean2, rstd2;
};

// y = x1 + mlp_scale * fc2(gelu(fc1(LN2(x1)))), x1 = x + attn_scale * proj(attention(LN1(x))), from t.x.
// The scales are DropPath's (1 / (1 - p) or 0 for the sequence, 1 without it).
template <class T>
void sequence_forward(Tape<T>& t, Lanes<T>* y, const Params<T>& w, const Sizes& z, T attn_scale, T mlp_scale,
                      bool keep_derivative) {
  const int64_t m = z.tokens, d = z.dim, hd = d / z.heads;
  columns_layer_norm<T>(t.n1, t.mean1, t.rstd1, t.x, w[kNorm1Weight], w[kNorm1Bias], d, z.norm1_eps);
  columns_linear<T>(t.qk, w[kQkWeight], w[kQkBias], t.n1, 2 * d, d);  // q: channels 0..d-1, k: d..2d-1
  columns_linear<T>(t.v, w[kVWeight], w[kVBias], t.n1, d, d);
  for (int64_t h = 0; h < z.heads; ++h) {
    Lanes<T> s_t[kTokens];
    attention_probabilities<T>(s_t, t.qk + h * hd, t.qk + d + h * hd, m, hd);
    for (int64_t c = 0; c < hd; ++c) {  // a[c][i] = sum_j P[i][j] v[c][j]
      Lanes<T> o{};
      for (int64_t j = 0; j < m; ++j) o += t.v[h * hd + c][j] * s_t[j];
      t.a[h * hd + c] = o;
    }
  }
  Lanes<T> branch[kMaxDim];
  columns_linear<T>(branch, w[kProjWeight], w[kProjBias], t.a, d, d);
  for (int64_t c = 0; c < d; ++c) t.x1[c] = t.x[c] + branch[c] * attn_scale;
  columns_layer_norm<T>(t.n2, t.mean2, t.rstd2, t.x1, w[kNorm2Weight], w[kNorm2Bias], d, z.norm2_eps);
  columns_linear<T>(t.h, w[kFc1Weight], w[kFc1Bias], t.n2, z.hidden, d);
  columns_gelu<T>(t.h, keep_derivative ? t.dgelu : nullptr, z.hidden);
  columns_linear<T>(branch, w[kFc2Weight], w[kFc2Bias], t.h, d, z.hidden);
  for (int64_t c = 0; c < d; ++c) y[c] = t.x1[c] + branch[c] * mlp_scale;
}

// ---- the kernels: y, x, dy, dx (S, M, d); scales (S) or null ----

template <class T>
void inner_block_forward_cpu(T* y, const T* x, const T* attn_scales, const T* mlp_scales, const Params<T>& w,
                             const Sizes& z) {
  const int64_t m = z.tokens, d = z.dim;
  parallel_for(0, z.sequences, 8, [&](int64_t lo, int64_t hi) {
    Tape<T> tape;
    Lanes<T> out[kMaxDim];
    for (int64_t s = lo; s < hi; ++s) {
      load_columns<T>(tape.x, x + s * m * d, m, d);
      sequence_forward<T>(tape, out, w, z, attn_scales ? attn_scales[s] : T(1), mlp_scales ? mlp_scales[s] : T(1),
                          false);
      store_columns<T>(y + s * m * d, out, m, d);
    }
  });
}

// dx and the parameters' gradients (grads[p], null where not wanted) from dy. `sums` is scratch for
// blocks x (the parameters' elements) vectors of 16 lanes.
template <class T>
void inner_block_backward_cpu(T* dx, const std::array<T*, kParams>& grads, Lanes<T>* sums, const T* dy, const T* x,
                              const T* attn_scales, const T* mlp_scales, const Params<T>& w, const Sizes& z,
                              int64_t blocks) {
  const int64_t m = z.tokens, d = z.dim, hd = d / z.heads, hidden = z.hidden;
  const std::array<SumLayout, kParams> layout = sum_layouts(z);
  std::array<int64_t, kParams + 1> offset{};
  for (int64_t p = 0; p < kParams; ++p) offset[p + 1] = offset[p] + layout[p].vectors;
  const int64_t total = offset[kParams], per_block = (z.sequences + blocks - 1) / blocks;
  parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) {
    Tape<T> t;
    Lanes<T> out[kMaxDim], g[kMaxDim], dx1[kMaxDim], branch_grad[kMaxDim], dn[kMaxDim], dn_v[kMaxDim];
    Lanes<T> dh[kMaxHidden], dqk[2 * kMaxDim], dv[kMaxDim];
    Lanes<T> rows[kTokens * lane_vectors(kMaxDim)], hidden_rows[kTokens * lane_vectors(kMaxHidden)];  // columns_to_rows
    for (int64_t b = lo; b < hi; ++b) {
      Lanes<T>* acc = sums + b * total;
      std::fill(acc, acc + total, Lanes<T>{});
      auto sum_of = [&](Param p) { return acc + offset[p]; };
      auto bias_sum_of = [&](Param p) { return w[p] ? acc + offset[p] : nullptr; };
      for (int64_t s = b * per_block; s < std::min(z.sequences, (b + 1) * per_block); ++s) {
        const T attn_scale = attn_scales ? attn_scales[s] : T(1), mlp_scale = mlp_scales ? mlp_scales[s] : T(1);
        load_columns<T>(t.x, x + s * m * d, m, d);
        sequence_forward<T>(t, out, w, z, attn_scale, mlp_scale, true);
        load_columns<T>(g, dy + s * m * d, m, d);
        // y = x1 + mlp_scale fc2(gelu(fc1(LN2(x1))))
        for (int64_t c = 0; c < d; ++c) branch_grad[c] = g[c] * mlp_scale;
        columns_to_rows<T>(hidden_rows, t.h, hidden);
        accumulate_linear_grads<T>(sum_of(kFc2Weight), bias_sum_of(kFc2Bias), branch_grad, hidden_rows, d, hidden);
        columns_linear_input_grad<T>(dh, w[kFc2Weight], branch_grad, d, hidden);
        for (int64_t o = 0; o < hidden; ++o) dh[o] *= t.dgelu[o];
        columns_to_rows<T>(rows, t.n2, d);
        accumulate_linear_grads<T>(sum_of(kFc1Weight), bias_sum_of(kFc1Bias), dh, rows, hidden, d);
        columns_linear_input_grad<T>(dn, w[kFc1Weight], dh, hidden, d);
        std::copy(g, g + d, dx1);
        columns_layer_norm_backward<T>(dx1, sum_of(kNorm2Weight), sum_of(kNorm2Bias), dn, t.x1, t.mean2, t.rstd2,
                                       w[kNorm2Weight], d);
        // x1 = x + attn_scale proj(attention(LN1(x)))
        for (int64_t c = 0; c < d; ++c) branch_grad[c] = dx1[c] * attn_scale;
        columns_to_rows<T>(rows, t.a, d);
        accumulate_linear_grads<T>(sum_of(kProjWeight), bias_sum_of(kProjBias), branch_grad, rows, d, d);
        Lanes<T>* da = dn;  // the attention output's gradient
        columns_linear_input_grad<T>(da, w[kProjWeight], branch_grad, d, d);
        for (int64_t h = 0; h < z.heads; ++h) {
          Lanes<T> s_t[kTokens];
          const Lanes<T>*q = t.qk + h * hd, *k = t.qk + d + h * hd;
          attention_probabilities<T>(s_t, q, k, m, hd);
          attention_head_backward<T>(dqk + h * hd, dqk + d + h * hd, dv + h * hd, s_t, q, k, t.v + h * hd, da + h * hd, m,
                                     hd);
        }
        columns_to_rows<T>(rows, t.n1, d);
        accumulate_linear_grads<T>(sum_of(kQkWeight), bias_sum_of(kQkBias), dqk, rows, 2 * d, d);
        accumulate_linear_grads<T>(sum_of(kVWeight), bias_sum_of(kVBias), dv, rows, d, d);
        columns_linear_input_grad<T>(dn, w[kQkWeight], dqk, 2 * d, d);
        columns_linear_input_grad<T>(dn_v, w[kVWeight], dv, d, d);
        for (int64_t c = 0; c < d; ++c) dn[c] += dn_v[c];
        columns_layer_norm_backward<T>(dx1, sum_of(kNorm1Weight), sum_of(kNorm1Bias), dn, t.x, t.mean1, t.rstd1,
                                       w[kNorm1Weight], d);
        if (dx) store_columns<T>(dx + s * m * d, dx1, m, d);
      }
    }
  });
  // Each gradient element: the blocks in order (and a lane-summed parameter's lanes in order), in double.
  for (int64_t p = 0; p < kParams; ++p) {
    if (!grads[p]) continue;
    const SumLayout& l = layout[p];
    parallel_for(0, l.elements, 256, [&](int64_t lo, int64_t hi) {
      for (int64_t e = lo; e < hi; ++e) {
        double sum = 0;
        for (int64_t b = 0; b < blocks; ++b) {
          const Lanes<T>* block_sums = sums + b * total + offset[p];
          if (l.ins > 0) {  // (o, c) = (e / ins, e % ins), channels in the lanes
            const int64_t o = e / l.ins, c = e % l.ins;
            sum += block_sums[o * lane_vectors(l.ins) + c / kTokens][c % kTokens];
          } else {
            double lane_sum = 0;
            for (int64_t i = 0; i < kTokens; ++i) lane_sum += block_sums[e][i];
            sum += lane_sum;
          }
        }
        grads[p][e] = static_cast<T>(sum);
      }
    });
  }
}

// A parameter's shape must be `expected`; an optional one (a bias) may be undefined.
void check_parameter(const char* op, const char* name, const Tensor& p, const Shape& expected, bool optional,
                     const Tensor& x) {
  if (!p.defined()) {
    if (optional) return;
    fail(op, std::string(name) + " is undefined (x " + x.str() + ")");
  }
  if (p.shape() != expected || p.dtype() != x.dtype() || p.device() != Device::cpu)
    fail(op, std::string(name) + " is " + p.str() + " on " + device_name(p.device()) + ", expected " +
                 dtype_name(x.dtype()) + shape_str(expected) + " on cpu for x " + x.str());
}

void check_scales(const char* op, const char* name, const Tensor& scales, const Tensor& x) {
  if (scales.defined() && (scales.shape() != Shape{x.size(0)} || scales.dtype() != x.dtype() ||
                           scales.device() != Device::cpu || scales.requires_grad()))
    fail(op, std::string(name) + " " + scales.str() + " must be constant " + dtype_name(x.dtype()) + "(" +
                 std::to_string(x.size(0)) + ") on the cpu, one scale per sequence of x " + x.str());
}

template <class T>
const T* pointer(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

template <class T>
Params<T> parameter_pointers(const std::vector<Tensor>& dense) {
  Params<T> w;
  for (int64_t p = 0; p < kParams; ++p) w[p] = pointer<T>(dense[p]);
  return w;
}

}  // namespace

bool inner_block_fusable(const Tensor& x, int64_t hidden) {
  return x.defined() && x.dim() == 3 && (x.dtype() == DType::f32 || x.dtype() == DType::f64) &&
         x.device() == Device::cpu && x.size(1) >= 1 && x.size(1) <= kInnerBlockMaxTokens && x.size(2) >= 1 &&
         x.size(2) <= kInnerBlockMaxDim && hidden >= 1 && hidden <= kInnerBlockMaxHidden;
}

Tensor inner_block(const Tensor& x, const InnerBlockWeights& w, int64_t heads, const Tensor& attn_scales,
                   const Tensor& mlp_scales) {
  const char* op = "inner_block";
  if (!x.defined()) fail(op, "undefined input");
  const int64_t hidden = w.fc1_weight.defined() && w.fc1_weight.dim() == 2 ? w.fc1_weight.size(0) : 0;
  if (!inner_block_fusable(x, hidden))
    fail(op, "x " + x.str() + " on " + device_name(x.device()) + " with an MLP of " + std::to_string(hidden) +
                 " hidden features: needs (S, M, d) on the cpu, M <= " + std::to_string(kInnerBlockMaxTokens) +
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
  check_scales(op, "attention scales", attn_scales, x);
  check_scales(op, "MLP scales", mlp_scales, x);
  for (const double eps : {w.norm1_eps, w.norm2_eps})  // as layer_norm checks it: NaN or negative gave NaN
    if (!(eps >= 0)) fail(op, "LayerNorm eps must be non-negative, got " + std::to_string(eps));
  const Sizes sizes = {x.size(0), x.size(1), d, heads, hidden, w.norm1_eps, w.norm2_eps};
  std::vector<Tensor> inputs = w.tensors();  // kParams parameters, then x
  inputs.push_back(x);
  std::vector<Tensor> dense;  // the same with unit strides (views of the inputs when they are already)
  Tensor xc, attn_dense, mlp_dense;
  {
    NoGradGuard no_grad;
    for (int64_t p = 0; p < kParams; ++p) dense.push_back(inputs[p].defined() ? contiguous(inputs[p]) : Tensor());
    xc = contiguous(x);
    // The kernels read scale s at s: an expanded or strided scale was read past its storage, or gave wrong values.
    if (attn_scales.defined()) attn_dense = contiguous(attn_scales);
    if (mlp_scales.defined()) mlp_dense = contiguous(mlp_scales);
  }
  Tensor y = Tensor::empty(x.shape(), x.dtype());  // (S, M, d)
  auto forward = [&](auto zero) {
    using T = decltype(zero);
    inner_block_forward_cpu<T>(y.data<T>(), xc.data<T>(), pointer<T>(attn_dense), pointer<T>(mlp_dense),
                               parameter_pointers<T>(dense), sizes);
  };
  if (x.dtype() == DType::f32) forward(float{});
  else forward(double{});
  std::vector<Tensor> saved = dense;
  saved.push_back(xc), saved.push_back(attn_dense), saved.push_back(mlp_dense);
  record(op, y, inputs, saved, [=](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    const std::vector<Tensor>& kept = ctx.saved;  // the parameters, x, the two scales
    const Tensor g = contiguous(dy);              // (S, M, d)
    Grads grads(kParams + 1);
    for (int64_t p = 0; p < kParams; ++p)
      if (ctx.needs_input_grad[p]) grads[p] = Tensor::empty(kept[p].shape(), g.dtype());
    if (ctx.needs_input_grad[kParams]) grads[kParams] = Tensor::empty(kept[kParams].shape(), g.dtype());
    const int64_t blocks = std::min<int64_t>(kGradientBlocks, std::max<int64_t>(1, sizes.sequences));
    int64_t vectors = 0;
    for (const SumLayout& l : sum_layouts(sizes)) vectors += l.vectors;
    const Tensor sums = Tensor::empty({blocks * vectors * kInnerBlockMaxTokens}, g.dtype());  // scratch
    auto backward = [&](auto zero) {
      using T = decltype(zero);
      std::array<T*, kParams> param_grads;
      for (int64_t p = 0; p < kParams; ++p) param_grads[p] = grads[p].defined() ? grads[p].data<T>() : nullptr;
      inner_block_backward_cpu<T>(grads[kParams].defined() ? grads[kParams].data<T>() : nullptr, param_grads,
                                  reinterpret_cast<Lanes<T>*>(sums.data<T>()), g.data<T>(), kept[kParams].data<T>(),
                                  pointer<T>(kept[kParams + 1]), pointer<T>(kept[kParams + 2]),
                                  parameter_pointers<T>(kept), sizes, blocks);
    };
    if (g.dtype() == DType::f32) backward(float{});
    else backward(double{});
    return grads;
  });
  return y;
}

}  // namespace vt
