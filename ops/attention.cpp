// Scaled dot-product attention as one op with its own backward: per (batch, head), two GEMMs forward and
// four backward, reading q, k, v in place through strides and transpose flags (no copies of the slices of a
// fused qkv projection); tiny heads run plain loops over local copies instead, TNT's pixel heads (16 tokens,
// head dim 6, float32) a kernel in vector registers, and, on builds for AVX-512, float32 heads whose head dim is
// a multiple of 16 (the ViTs') products of our own with S in cache, ahead of the other paths. Shapes: q, k, v,
// out (B, H, N, hd); the saved probabilities P (B, H, N, N), each pixel head's transposed.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#include "autograd/blas.h"
#include "autograd/parallel.h"
#include "ops/attention_kernels.h"
#include "ops/cuda/kernels.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "ops/softmax_kernels.h"
#include "ops/token_lanes.h"

namespace vt {

// Multiply-adds below which a batch of heads stays on one thread (waking threads costs microseconds).
constexpr int64_t kParallelWork = 1 << 15;

static int64_t heads_per_grain(const AttentionSizes& sizes) {
  return std::max<int64_t>(1, kParallelWork / std::max<int64_t>(1, sizes.tokens * sizes.tokens * sizes.head_dim));
}

static int64_t head_offset(const HeadStrides& strides, int64_t b, int64_t h) {
  return b * strides.batch + h * strides.head;
}

// A head of at most kSmallTokens tokens and kSmallHeadDim features (TNT's pixel attention: 16 tokens, head
// dim 6, B*64 sequences) is too small for GEMM calls: OpenBLAS's dispatch and packing cost more than its
// arithmetic. Such heads run plain loops on local arrays, every innermost loop over the token index j and
// unit-stride, so that it vectorises (the head dim, 6, would not).
constexpr int64_t kSmallTokens = 32, kSmallHeadDim = 16;

static bool small_head(const AttentionSizes& sizes) {
  return sizes.tokens <= kSmallTokens && sizes.head_dim <= kSmallHeadDim;
}

// x^T (hd, N) of a head's rows x (N, hd), row stride x_row.
template <class T>
static void small_transpose(T (&x_t)[kSmallHeadDim][kSmallTokens], const T* x, int64_t x_row, int64_t n, int64_t d) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < d; ++c) x_t[c][j] = x[j * x_row + c];
}

// m^T (N, N) of a contiguous m (N, N).
template <class T>
static void small_transpose_square(T (&m_t)[kSmallTokens * kSmallTokens], const T* m, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) m_t[j * n + i] = m[i * n + j];
}

// rows (N, N) contiguous = scale * a b^T: a (N, hd) with row stride a_row, b^T (hd, N) local.
template <class T>
static void small_scores(T* rows, const T* a, int64_t a_row, const T (&b_t)[kSmallHeadDim][kSmallTokens], int64_t n,
                         int64_t d, T scale) {
  for (int64_t i = 0; i < n; ++i) {
    T* row = rows + i * n;
    for (int64_t j = 0; j < n; ++j) row[j] = 0;
    for (int64_t c = 0; c < d; ++c) {
      const T a_ic = scale * a[i * a_row + c];
      for (int64_t j = 0; j < n; ++j) row[j] += a_ic * b_t[c][j];
    }
  }
}

// y (N, hd) with row stride y_row = scale * m^T x: m (N, N) contiguous, x (N, hd) with row stride x_row.
// y[j][c] = sum_i m[i][j] x[i][c], accumulated as y^T so that the loop over j runs along m's rows.
template <class T>
static void small_transposed_product(T* y, int64_t y_row, const T* m, const T* x, int64_t x_row, int64_t n, int64_t d,
                                     T scale) {
  T y_t[kSmallHeadDim][kSmallTokens];  // (hd, N)
  for (int64_t c = 0; c < d; ++c)
    for (int64_t j = 0; j < n; ++j) y_t[c][j] = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < d; ++c) {
      const T x_ic = x[i * x_row + c];
      for (int64_t j = 0; j < n; ++j) y_t[c][j] += x_ic * m[i * n + j];
    }
  for (int64_t j = 0; j < n; ++j)
    for (int64_t c = 0; c < d; ++c) y[j * y_row + c] = scale * y_t[c][j];
}

// ---- TNT's pixel heads in vector registers: 16 tokens, head dim 6, float32 ----
// One vector of 16 floats holds a column of a head's scores S (N, N): lane i for query i, one vector per key j.
// The softmax over j is then elementwise across the 16 vectors (no horizontal reduction), and P is saved as
// these columns, P^T. Products with the feature rows (V, dO, K, Q: 6 floats in lanes 0-5) broadcast one
// probability at a time. The loops above, with the token count known only at run time, ran ~7 GFLOP/s here.
constexpr int64_t kPixelTokens = kLaneTokens, kPixelHeadDim = 6;
using Lanes = TokenLanes<float>;

static bool pixel_head(const AttentionSizes& sizes) {
  return sizes.tokens == kPixelTokens && sizes.head_dim == kPixelHeadDim;
}

// rows[i]: the 6 features of token i of a head's (16, 6) rows x, row stride x_row, in lanes 0-5, the rest zero.
static void feature_rows(Lanes (&rows)[kPixelTokens], const float* x, int64_t x_row) {
  for (int64_t i = 0; i < kPixelTokens; ++i) {
    rows[i] = Lanes{};
    std::memcpy(&rows[i], x + i * x_row, kPixelHeadDim * sizeof(float));
  }
}

// y[o] = scale sum_s w[o * WOut + s * WIn] x[s] for the 16 outputs o (6 features each, rows y_row apart): a
// head's (16, 16) probabilities or dS, read along either index, times the feature rows x, one broadcast weight
// at a time.
template <int64_t WOut, int64_t WIn>
static void weighted_rows(float* y, int64_t y_row, const float* w, const Lanes (&x)[kPixelTokens], float scale) {
  for (int64_t o = 0; o < kPixelTokens; ++o) {
    Lanes sum{};
    for (int64_t s = 0; s < kPixelTokens; ++s) sum += w[o * WOut + s * WIn] * x[s];
    const Lanes out = scale * sum;
    std::memcpy(y + o * y_row, &out, kPixelHeadDim * sizeof(float));
  }
}

// columns[c][i] = scale * x[i][c]: the head's (16, 6) rows x, row stride x_row, as 6 vectors over the tokens.
static void feature_columns(Lanes (&columns)[kPixelHeadDim], const float* x, int64_t x_row, float scale) {
  alignas(64) float values[kPixelHeadDim][kPixelTokens];
  for (int64_t i = 0; i < kPixelTokens; ++i)
    for (int64_t c = 0; c < kPixelHeadDim; ++c) values[c][i] = scale * x[i * x_row + c];
  std::memcpy(columns, values, sizeof values);
}

// O (16, 6) = softmax(scale q k^T) v for one pixel head, saving P^T (16, 16): p_t[j * 16 + i] = P[i][j].
static void pixel_head_forward(float* o, int64_t o_row, float* p_t, const float* q, int64_t q_row, const float* k,
                               int64_t k_row, const float* v, int64_t v_row, float scale) {
  constexpr int64_t n = kPixelTokens, d = kPixelHeadDim;
  Lanes q_t[d];  // q_t[c][i] = scale q[i][c]
  feature_columns(q_t, q, q_row, scale);
  Lanes s_t[n];  // s_t[j][i] = S[i][j] = scale q_i . k_j
  for (int64_t j = 0; j < n; ++j) {
    Lanes s{};
    for (int64_t c = 0; c < d; ++c) s += k[j * k_row + c] * q_t[c];
    s_t[j] = s;
  }
  softmax_over_columns<float>(s_t, n);
  for (int64_t j = 0; j < n; ++j) std::memcpy(p_t + j * n, &s_t[j], sizeof(Lanes));
  Lanes v_rows[n];
  feature_rows(v_rows, v, v_row);
  weighted_rows<1, n>(o, o_row, p_t, v_rows, 1.0f);  // O[i] = sum_j P[i][j] v_j
}

// With P^T saved by the forward: dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dP * P)), dQ = scale dS K,
// dK = scale dS^T Q, for one pixel head; null gradients are skipped.
static void pixel_head_backward(float* dq, int64_t dq_row, float* dk, int64_t dk_row, float* dv, int64_t dv_row,
                                const float* dout, int64_t dout_row, const float* p_t, const float* q, int64_t q_row,
                                const float* k, int64_t k_row, const float* v, int64_t v_row, float scale) {
  constexpr int64_t n = kPixelTokens, d = kPixelHeadDim;
  if (dv) {  // dV[j] = sum_i P[i][j] dO_i
    Lanes dout_rows[n];
    feature_rows(dout_rows, dout, dout_row);
    weighted_rows<n, 1>(dv, dv_row, p_t, dout_rows, 1.0f);
  }
  if (!dq && !dk) return;
  Lanes dout_t[d];  // dout_t[c][i] = dO[i][c]
  feature_columns(dout_t, dout, dout_row, 1.0f);
  Lanes p_cols[n], ds_t[n], weighted{};  // P^T, dS^T (lane i, one vector per key j); weighted[i] = sum_j dP P
  for (int64_t j = 0; j < n; ++j) {
    std::memcpy(&p_cols[j], p_t + j * n, sizeof(Lanes));
    Lanes dp{};  // dP[i][j] = dO_i . v_j
    for (int64_t c = 0; c < d; ++c) dp += v[j * v_row + c] * dout_t[c];
    ds_t[j] = dp;
    weighted += dp * p_cols[j];
  }
  alignas(64) float ds_values[n][n];  // ds_values[j][i] = dS[i][j]
  for (int64_t j = 0; j < n; ++j) {
    ds_t[j] = p_cols[j] * (ds_t[j] - weighted);
    std::memcpy(ds_values[j], &ds_t[j], sizeof(Lanes));
  }
  if (dq) {  // dQ[i] = scale sum_j dS[i][j] k_j
    Lanes k_rows[n];
    feature_rows(k_rows, k, k_row);
    weighted_rows<1, n>(dq, dq_row, &ds_values[0][0], k_rows, scale);
  }
  if (dk) {  // dK[j] = scale sum_i dS[i][j] q_i
    Lanes q_rows[n];
    feature_rows(q_rows, q, q_row);
    weighted_rows<n, 1>(dk, dk_row, &ds_values[0][0], q_rows, scale);
  }
}

// ---- float32 heads whose head dim is a multiple of 16 (ViT's 64), in cache from q k^T to P v ----
// Every product of a head, forward and backward, has the form out = scale op(a) b with b read by rows of whole
// vectors: S = scale q (k^T) with k transposed once into a local (hd, N) copy padded to a whole number of
// vectors, O = P v with v's rows read where they lie, and likewise dV = P^T dO, dP = dO (v^T), dQ = scale dS k,
// dK = scale dS^T q. Each block of out sums in vector registers, as the float32 GEMM kernel does
// (autograd/gemm_f32.cpp): every step of the depth loads a row of vectors of b and broadcasts one value of
// op(a) per row. S and dS stay in a local buffer, in L1 or L2, from their product to the next. OpenBLAS, which
// packs both operands of q k^T for every head, ran vit_cifar's attention forward at 82-97 GFLOP/s on a 2-core
// Zen 4, these kernels at 86-111 (`vt bench-gemm`, README). Only where 16 floats are one register (AVX-512):
// with AVX2's pairs, 20 vectors of sums would not fit.
constexpr bool kFusedHeads = kRegistersPerLanes == 1;

// Whether the fused kernels below run heads of these sizes: the one test that attention_*_cpu dispatch on and
// that the ops use to leave out P (inference) and dS (backward) buffers, which these kernels do not need.
template <class T>
static bool runs_fused(const AttentionSizes& sizes) {
  return std::is_same_v<T, float> && kFusedHeads && !small_head(sizes) && sizes.head_dim % kLaneTokens == 0;
}

// out[r][16 u + l] (+)= scale sum_p op(a)[r][p] b[p][16 u + l] for r < Rows and u < Vectors, added to out
// when `accumulate`: op(a)[r][p] is a[r * lda + p], or a[p * lda + r] when TransA; b's rows b_row apart with
// 16 Vectors readable floats each, out's rows out_row apart.
template <int Rows, int Vectors, bool TransA>
static void product_block(float* out, int64_t out_row, const float* a, int64_t lda, const float* b, int64_t b_row,
                          int64_t depth, float scale, bool accumulate) {
  Lanes sum[Rows][Vectors];
  for (int r = 0; r < Rows; ++r)
    for (int u = 0; u < Vectors; ++u) sum[r][u] = Lanes{};
#pragma GCC unroll 4
  for (int64_t p = 0; p < depth; ++p) {
    Lanes b_p[Vectors];
    for (int u = 0; u < Vectors; ++u) std::memcpy(&b_p[u], b + p * b_row + u * kLaneTokens, sizeof(Lanes));
    for (int r = 0; r < Rows; ++r) {
      const float a_rp = TransA ? a[p * lda + r] : a[r * lda + p];
      for (int u = 0; u < Vectors; ++u) sum[r][u] += a_rp * b_p[u];
    }
  }
  for (int r = 0; r < Rows; ++r)
    for (int u = 0; u < Vectors; ++u) {
      float* o = out + r * out_row + u * kLaneTokens;
      Lanes value = scale * sum[r][u];
      if (accumulate) {
        Lanes before;
        std::memcpy(&before, o, sizeof before);
        value += before;
      }
      std::memcpy(o, &value, sizeof value);
    }
}

// product_block over `rows` rows: blocks of Rows, then the rest in one smaller block.
template <int Rows, int Vectors, bool TransA>
static void product_rows(float* out, int64_t out_row, const float* a, int64_t lda, const float* b, int64_t b_row,
                         int64_t rows, int64_t depth, float scale, bool accumulate) {
  const int64_t next_row = TransA ? 1 : lda;  // from op(a)'s row r to row r + 1
  int64_t i = 0;
  for (; i + Rows <= rows; i += Rows)
    product_block<Rows, Vectors, TransA>(out + i * out_row, out_row, a + i * next_row, lda, b, b_row, depth, scale,
                                         accumulate);
  if constexpr (Rows > 1)
    if (i < rows)
      product_rows<Rows - 1, Vectors, TransA>(out + i * out_row, out_row, a + i * next_row, lda, b, b_row, rows - i,
                                              depth, scale, accumulate);
}

// out (rows, 16 vectors) (+)= scale op(a) (rows, depth) b (depth, 16 vectors), in column chunks of up to 5
// vectors: 4 rows by 5 vectors of sums (S's 65 keys padded to 80) or 5 rows by up to 4 (64 features) fill 20
// of the 32 registers. 5 rows measured faster than 6 (24 sums) and 4 at vit_cifar's heads on a Zen 4, where
// 65 rows are 13 whole blocks of 5.
template <bool TransA>
static void head_product(float* out, int64_t out_row, const float* a, int64_t lda, const float* b, int64_t b_row,
                         int64_t rows, int64_t vectors, int64_t depth, float scale, bool accumulate = false) {
  for (int64_t u = 0; u < vectors;) {
    const int64_t chunk = std::min<int64_t>(5, vectors - u);
    float* o = out + u * kLaneTokens;
    const float* bu = b + u * kLaneTokens;
    switch (chunk) {
      case 5: product_rows<4, 5, TransA>(o, out_row, a, lda, bu, b_row, rows, depth, scale, accumulate); break;
      case 4: product_rows<5, 4, TransA>(o, out_row, a, lda, bu, b_row, rows, depth, scale, accumulate); break;
      case 3: product_rows<5, 3, TransA>(o, out_row, a, lda, bu, b_row, rows, depth, scale, accumulate); break;
      case 2: product_rows<5, 2, TransA>(o, out_row, a, lda, bu, b_row, rows, depth, scale, accumulate); break;
      default: product_rows<5, 1, TransA>(o, out_row, a, lda, bu, b_row, rows, depth, scale, accumulate); break;
    }
    u += chunk;
  }
}

#ifdef __AVX512F__
typedef int32_t LaneIndex __attribute__((vector_size(kLaneTokens * sizeof(int32_t))));

// Lane l of the result is lane l ^ Step of x. (The zero-masking forms with every lane kept: the plain ones leave
// g++ 12 warning about their undefined source.)
template <int Step>
static Lanes swap_lanes(const Lanes& x) {
  constexpr __mmask16 all = 0xffff;
  if constexpr (Step == 8) return _mm512_maskz_shuffle_f32x4(all, x, x, 0b01001110);  // 128-bit quarters 2, 3, 0, 1
  if constexpr (Step == 4) return _mm512_maskz_shuffle_f32x4(all, x, x, 0b10110001);  // 1, 0, 3, 2
  if constexpr (Step == 2) return _mm512_maskz_permute_ps(all, x, 0b01001110);        // in each quarter: 2, 3, 0, 1
  return _mm512_maskz_permute_ps(all, x, 0b10110001);                                 // 1, 0, 3, 2
}

// One round of a 16 x 16 transpose: for rows i and i + Step (i & Step == 0), the lanes l & Step of row i trade
// places with the lanes l & Step == 0 of row i + Step, shifted by Step.
template <int Step>
static void transpose_block(Lanes (&rows)[kLaneTokens]) {
  LaneIndex first, second;  // indices into (rows[i], rows[i + Step]), 16 and up for the second
  for (int l = 0; l < kLaneTokens; ++l) {
    first[l] = (l & Step) ? kLaneTokens + l - Step : l;
    second[l] = (l & Step) ? kLaneTokens + l : l + Step;
  }
  for (int i = 0; i < kLaneTokens; ++i)
    if ((i & Step) == 0) {
      const Lanes a = rows[i], b = rows[i + Step];
      rows[i] = _mm512_permutex2var_ps(a, reinterpret_cast<__m512i>(first), b);
      rows[i + Step] = _mm512_permutex2var_ps(a, reinterpret_cast<__m512i>(second), b);
    }
}
#endif

// The largest and the sum of a vector's 16 lanes: where 16 floats are one register, in four halving steps
// (each lane l meets lane l ^ Step) instead of fifteen dependent scalar ones.
static float lanes_max_value(const Lanes& lanes) {
#ifdef __AVX512F__
  Lanes x = lanes;
  x = lanes_max(x, swap_lanes<8>(x));
  x = lanes_max(x, swap_lanes<4>(x));
  x = lanes_max(x, swap_lanes<2>(x));
  x = lanes_max(x, swap_lanes<1>(x));
  return x[0];
#else
  float value = lanes[0];
  for (int64_t l = 1; l < kLaneTokens; ++l) value = std::max(value, lanes[l]);
  return value;
#endif
}

static float lanes_sum(const Lanes& lanes) {
#ifdef __AVX512F__
  Lanes x = lanes;
  x += swap_lanes<8>(x);
  x += swap_lanes<4>(x);
  x += swap_lanes<2>(x);
  x += swap_lanes<1>(x);
  return x[0];
#else
  float value = 0;
  for (int64_t l = 0; l < kLaneTokens; ++l) value += lanes[l];
  return value;
#endif
}

// x^T (hd, padded) of a head's rows x (N, hd), row stride x_row, zero past N; hd and padded are multiples of 16.
// Where 16 floats are one register, by blocks of 16 x 16: four rounds of swapping the off-diagonal blocks of
// 1, 2, 4 and 8 lanes between rows Step apart: 64 two-register shuffles for 256 values. Moving the values one by
// one, a load and a store each, took a third as long as the product S = q k^T itself.
static void transpose_rows(float* x_t, int64_t padded, const float* x, int64_t x_row, int64_t n, int64_t d) {
#ifdef __AVX512F__
  for (int64_t j0 = 0; j0 < padded; j0 += kLaneTokens)
    for (int64_t c0 = 0; c0 < d; c0 += kLaneTokens) {
      Lanes rows[kLaneTokens];  // rows[t][c] = x[j0 + t][c0 + c]
      for (int64_t t = 0; t < kLaneTokens; ++t) {
        rows[t] = Lanes{};
        if (j0 + t < n) std::memcpy(&rows[t], x + (j0 + t) * x_row + c0, sizeof(Lanes));
      }
      transpose_block<1>(rows);
      transpose_block<2>(rows);
      transpose_block<4>(rows);
      transpose_block<8>(rows);
      for (int64_t c = 0; c < kLaneTokens; ++c) std::memcpy(x_t + (c0 + c) * padded + j0, &rows[c], sizeof(Lanes));
    }
#else
  for (int64_t c = 0; c < d; ++c) {
    for (int64_t j = 0; j < n; ++j) x_t[c * padded + j] = x[j * x_row + c];
    for (int64_t j = n; j < padded; ++j) x_t[c * padded + j] = 0;
  }
#endif
}

// Softmax in place over a row of S held as `vectors` whole vectors; `pad` (0 in the lanes of keys, -inf past N)
// is added to the last vector, so that the lanes past N come out 0. The row's max is subtracted before exp
// (every exponent <= 0, the largest term exactly 1).
static void padded_row_softmax(Lanes* row, int64_t vectors, const Lanes& pad) {
  row[vectors - 1] += pad;
  Lanes max_lanes = row[0];
  for (int64_t u = 1; u < vectors; ++u) max_lanes = lanes_max(row[u], max_lanes);
  const float row_max = lanes_max_value(max_lanes);
  float* values = reinterpret_cast<float*>(row);
#pragma omp simd
  for (int64_t i = 0; i < vectors * kLaneTokens; ++i) values[i] = vectorizable_exp(values[i] - row_max);
  Lanes total = row[0];
  for (int64_t u = 1; u < vectors; ++u) total += row[u];
  const float inverse = 1.0f / lanes_sum(total);
  for (int64_t u = 0; u < vectors; ++u) row[u] *= inverse;
}

// Query rows per block of S or dS: 128 rows of S (N, N) at a time keep a thread's buffers proportional to N
// (k^T and the block), never N^2, and in L2 for N up to a few hundred; vit_cifar's 65 tokens are one block.
constexpr int64_t kQueryBlock = 128;

// A thread's buffers, in 64-byte lines (a std::vector of Lanes would drop Lanes' attributes), kept and grown to
// the largest head seen, so that a warmed-up step allocates nothing here.
struct alignas(64) ScratchLine {
  float values[kLaneTokens];
};

static float* head_scratch(int64_t floats) {
  thread_local std::vector<ScratchLine> scratch;
  const int64_t lines = (floats + kLaneTokens - 1) / kLaneTokens;
  if (static_cast<int64_t>(scratch.size()) < lines) scratch.resize(lines);
  return scratch.data()->values;
}

// O (N, hd) = softmax(scale q k^T) v for one head, writing P (N, N) to `probs` when it is not null.
static void fused_head_forward(float* o, int64_t o_row, float* probs, const float* q, int64_t q_row, const float* k,
                               int64_t k_row, const float* v, int64_t v_row, int64_t n, int64_t d, float scale) {
  const int64_t vectors = (n + kLaneTokens - 1) / kLaneTokens, padded = vectors * kLaneTokens;
  float* k_t = head_scratch((d + std::min(n, kQueryBlock)) * padded);  // (hd, padded): k^T, zero past N
  float* s = k_t + d * padded;  // (block rows, padded): S, then P
  transpose_rows(k_t, padded, k, k_row, n, d);
  Lanes pad{};
  for (int64_t l = n - (vectors - 1) * kLaneTokens; l < kLaneTokens; ++l) pad[l] = -INFINITY;
  for (int64_t i0 = 0; i0 < n; i0 += kQueryBlock) {
    const int64_t rows = std::min(kQueryBlock, n - i0);
    head_product<false>(s, padded, q + i0 * q_row, q_row, k_t, padded, rows, vectors, d, scale);
    for (int64_t i = 0; i < rows; ++i) {
      float* row = s + i * padded;
      padded_row_softmax(reinterpret_cast<Lanes*>(row), vectors, pad);
      if (probs) std::memcpy(probs + (i0 + i) * n, row, n * sizeof(float));
    }
    head_product<false>(o + i0 * o_row, o_row, s, padded, v, v_row, rows, d / kLaneTokens, n, 1.0f);
  }
}

// dV = P^T dO, dP = dO v^T, dS = P * (dP - rowsum(dP * P)), dQ = scale dS k, dK = scale dS^T q for one head,
// from the forward's P (N, N); null gradients are skipped. dK sums over the blocks of query rows.
static void fused_head_backward(float* dq, int64_t dq_row, float* dk, int64_t dk_row, float* dv, int64_t dv_row,
                                const float* dout, int64_t dout_row, const float* probs, const float* q, int64_t q_row,
                                const float* k, int64_t k_row, const float* v, int64_t v_row, int64_t n, int64_t d,
                                float scale) {
  const int64_t vectors = (n + kLaneTokens - 1) / kLaneTokens, padded = vectors * kLaneTokens;
  const int64_t feature_vectors = d / kLaneTokens;
  if (dv) head_product<true>(dv, dv_row, probs, n, dout, dout_row, n, feature_vectors, n, 1.0f);
  if (!dq && !dk) return;
  float* v_t = head_scratch((d + std::min(n, kQueryBlock)) * padded);  // (hd, padded): v^T, zero past N
  float* ds = v_t + d * padded;  // (block rows, padded): dP, then dS in its first N columns
  transpose_rows(v_t, padded, v, v_row, n, d);
  for (int64_t i0 = 0; i0 < n; i0 += kQueryBlock) {
    const int64_t rows = std::min(kQueryBlock, n - i0);
    head_product<false>(ds, padded, dout + i0 * dout_row, dout_row, v_t, padded, rows, vectors, d, 1.0f);
    for (int64_t i = 0; i < rows; ++i)  // row by row: dS is `padded` apart, P n apart
      softmax_backward_cpu(ds + i * padded, ds + i * padded, probs + (i0 + i) * n, 1, n);
    if (dq) head_product<false>(dq + i0 * dq_row, dq_row, ds, padded, k, k_row, rows, feature_vectors, n, scale);
    if (dk)
      head_product<true>(dk, dk_row, ds, padded, q + i0 * q_row, q_row, n, feature_vectors, rows, scale, i0 > 0);
  }
}

void attention_forward_fused_cpu(float* out, float* probs, const float* q, const float* k, const float* v,
                                 HeadStrides out_strides, HeadStrides q_strides, HeadStrides k_strides,
                                 HeadStrides v_strides, AttentionSizes sizes, float scale) {
  const int64_t n = sizes.tokens;
  parallel_for(0, sizes.batch * sizes.heads, heads_per_grain(sizes), [&](int64_t lo, int64_t hi) {
    for (int64_t bh = lo; bh < hi; ++bh) {
      const int64_t b = bh / sizes.heads, h = bh % sizes.heads;
      fused_head_forward(out + head_offset(out_strides, b, h), out_strides.row, probs ? probs + bh * n * n : nullptr,
                         q + head_offset(q_strides, b, h), q_strides.row, k + head_offset(k_strides, b, h),
                         k_strides.row, v + head_offset(v_strides, b, h), v_strides.row, n, sizes.head_dim, scale);
    }
  });
}

void attention_backward_fused_cpu(float* dq, float* dk, float* dv, const float* dout, const float* probs,
                                  const float* q, const float* k, const float* v, HeadStrides dq_strides,
                                  HeadStrides dk_strides, HeadStrides dv_strides, HeadStrides dout_strides,
                                  HeadStrides q_strides, HeadStrides k_strides, HeadStrides v_strides,
                                  AttentionSizes sizes, float scale) {
  const int64_t n = sizes.tokens;
  parallel_for(0, sizes.batch * sizes.heads, heads_per_grain(sizes), [&](int64_t lo, int64_t hi) {
    for (int64_t bh = lo; bh < hi; ++bh) {
      const int64_t b = bh / sizes.heads, h = bh % sizes.heads;
      fused_head_backward(dq ? dq + head_offset(dq_strides, b, h) : nullptr, dq_strides.row,
                          dk ? dk + head_offset(dk_strides, b, h) : nullptr, dk_strides.row,
                          dv ? dv + head_offset(dv_strides, b, h) : nullptr, dv_strides.row,
                          dout + head_offset(dout_strides, b, h), dout_strides.row, probs + bh * n * n,
                          q + head_offset(q_strides, b, h), q_strides.row, k + head_offset(k_strides, b, h),
                          k_strides.row, v + head_offset(v_strides, b, h), v_strides.row, n, sizes.head_dim, scale);
    }
  });
}

// Heads that the fused kernels do not take run single-threaded GEMMs: inside our parallel region OpenBLAS's
// OpenMP build does not start threads of its own, and heads are independent, so threads split the heads instead.
template <class T>
void attention_forward_cpu(T* out, T* probs, const T* q, const T* k, const T* v, HeadStrides out_strides,
                           HeadStrides q_strides, HeadStrides k_strides, HeadStrides v_strides, AttentionSizes sizes,
                           T scale) {
  if constexpr (std::is_same_v<T, float>)
    if (runs_fused<T>(sizes))
      return attention_forward_fused_cpu(out, probs, q, k, v, out_strides, q_strides, k_strides, v_strides, sizes,
                                         scale);
  const int64_t n = sizes.tokens, d = sizes.head_dim;
  const bool small = small_head(sizes), pixel = std::is_same_v<T, float> && pixel_head(sizes);
  parallel_for(0, sizes.batch * sizes.heads, heads_per_grain(sizes), [&](int64_t lo, int64_t hi) {
    for (int64_t bh = lo; bh < hi; ++bh) {
      const int64_t b = bh / sizes.heads, h = bh % sizes.heads;
      const T* qh = q + head_offset(q_strides, b, h);  // (N, hd)
      const T* kh = k + head_offset(k_strides, b, h);  // (N, hd)
      const T* vh = v + head_offset(v_strides, b, h);  // (N, hd)
      T* oh = out + head_offset(out_strides, b, h);    // (N, hd)
      T* p = probs + bh * n * n;                       // (N, N), or P^T for a pixel head
      if constexpr (std::is_same_v<T, float>) {
        if (pixel) {
          pixel_head_forward(oh, out_strides.row, p, qh, q_strides.row, kh, k_strides.row, vh, v_strides.row, scale);
          continue;
        }
      }
      if (small) {  // S = scale * q k^T, P = softmax(S), O = P v = (P^T)^T v
        T k_t[kSmallHeadDim][kSmallTokens];  // (hd, N)
        T p_t[kSmallTokens * kSmallTokens];  // (N, N)
        small_transpose(k_t, kh, k_strides.row, n, d);
        small_scores(p, qh, q_strides.row, k_t, n, d, scale);
        softmax_forward_cpu(p, p, n, n);
        small_transpose_square(p_t, p, n);
        small_transposed_product(oh, out_strides.row, p_t, vh, v_strides.row, n, d, T(1));
        continue;
      }
      // S = scale * q k^T, with k read transposed in place by GEMM.
      gemm<T>(false, true, n, n, d, scale, qh, q_strides.row, kh, k_strides.row, T(0), p, n);
      softmax_forward_cpu(p, p, n, n);  // row by row, max subtracted; in place, single-threaded in here
      gemm<T>(false, false, n, d, n, T(1), p, n, vh, v_strides.row, T(0), oh, out_strides.row);
    }
  });
}

// With O = P V and P = softmax(S) row by row: dV = P^T dO, dP = dO V^T, and the softmax Jacobian
// diag(p) - p p^T of each row gives dS = P * (dP - rowsum(dP * P)); then S = scale * Q K^T gives
// dQ = scale * dS K and dK = scale * dS^T Q.
template <class T>
void attention_backward_cpu(T* dq, T* dk, T* dv, T* scores_grad, const T* dout, const T* probs, const T* q,
                            const T* k, const T* v, HeadStrides dq_strides, HeadStrides dk_strides,
                            HeadStrides dv_strides, HeadStrides dout_strides, HeadStrides q_strides,
                            HeadStrides k_strides, HeadStrides v_strides, AttentionSizes sizes, T scale) {
  if constexpr (std::is_same_v<T, float>)
    if (runs_fused<T>(sizes))
      return attention_backward_fused_cpu(dq, dk, dv, dout, probs, q, k, v, dq_strides, dk_strides, dv_strides,
                                          dout_strides, q_strides, k_strides, v_strides, sizes, scale);
  const int64_t n = sizes.tokens, d = sizes.head_dim;
  const bool small = small_head(sizes), pixel = std::is_same_v<T, float> && pixel_head(sizes);
  parallel_for(0, sizes.batch * sizes.heads, heads_per_grain(sizes), [&](int64_t lo, int64_t hi) {
    for (int64_t bh = lo; bh < hi; ++bh) {
      const int64_t b = bh / sizes.heads, h = bh % sizes.heads;
      const T* p = probs + bh * n * n;                            // (N, N), or P^T for a pixel head
      const T* douth = dout + head_offset(dout_strides, b, h);   // (N, hd)
      if constexpr (std::is_same_v<T, float>) {
        if (pixel) {
          pixel_head_backward(dq ? dq + head_offset(dq_strides, b, h) : nullptr, dq_strides.row,
                              dk ? dk + head_offset(dk_strides, b, h) : nullptr, dk_strides.row,
                              dv ? dv + head_offset(dv_strides, b, h) : nullptr, dv_strides.row, douth,
                              dout_strides.row, p, q + head_offset(q_strides, b, h), q_strides.row,
                              k + head_offset(k_strides, b, h), k_strides.row, v + head_offset(v_strides, b, h),
                              v_strides.row, scale);
          continue;
        }
      }
      if (small) {  // the same formulas as the GEMMs below, dQ = scale * (dS^T)^T K
        if (dv) small_transposed_product(dv + head_offset(dv_strides, b, h), dv_strides.row, p, douth, dout_strides.row, n, d, T(1));
        if (!dq && !dk) continue;
        T v_t[kSmallHeadDim][kSmallTokens];  // (hd, N)
        small_transpose(v_t, v + head_offset(v_strides, b, h), v_strides.row, n, d);
        T* ds = scores_grad + bh * n * n;  // (N, N): dP, then dS in place
        small_scores(ds, douth, dout_strides.row, v_t, n, d, T(1));
        softmax_backward_cpu(ds, ds, p, n, n);
        if (dq) {
          T ds_t[kSmallTokens * kSmallTokens];  // (N, N)
          small_transpose_square(ds_t, ds, n);
          small_transposed_product(dq + head_offset(dq_strides, b, h), dq_strides.row, ds_t, k + head_offset(k_strides, b, h),
                                   k_strides.row, n, d, scale);
        }
        if (dk)
          small_transposed_product(dk + head_offset(dk_strides, b, h), dk_strides.row, ds, q + head_offset(q_strides, b, h),
                                   q_strides.row, n, d, scale);
        continue;
      }
      if (dv)
        gemm<T>(true, false, n, d, n, T(1), p, n, douth, dout_strides.row, T(0),
                dv + head_offset(dv_strides, b, h), dv_strides.row);
      if (!dq && !dk) continue;
      T* ds = scores_grad + bh * n * n;  // (N, N): dP, then dS in place
      gemm<T>(false, true, n, n, d, T(1), douth, dout_strides.row, v + head_offset(v_strides, b, h), v_strides.row,
              T(0), ds, n);
      softmax_backward_cpu(ds, ds, p, n, n);  // dS = P * (dP - rowsum(dP * P)), in place
      if (dq)
        gemm<T>(false, false, n, d, n, scale, ds, n, k + head_offset(k_strides, b, h), k_strides.row, T(0),
                dq + head_offset(dq_strides, b, h), dq_strides.row);
      if (dk)
        gemm<T>(true, false, n, d, n, scale, ds, n, q + head_offset(q_strides, b, h), q_strides.row, T(0),
                dk + head_offset(dk_strides, b, h), dk_strides.row);
    }
  });
}

template <class T>
void attention_forward_reference(T* out, T* probs, const T* q, const T* k, const T* v, int64_t batch_heads,
                                 int64_t tokens, int64_t head_dim, double scale) {
  const int64_t n = tokens, d = head_dim;
  std::vector<double> row(n);  // (N)
  for (int64_t bh = 0; bh < batch_heads; ++bh) {
    const T *qh = q + bh * n * d, *kh = k + bh * n * d, *vh = v + bh * n * d;
    for (int64_t i = 0; i < n; ++i) {
      double row_max = -INFINITY, total = 0;
      for (int64_t j = 0; j < n; ++j) {
        double score = 0;
        for (int64_t c = 0; c < d; ++c) score += double(qh[i * d + c]) * double(kh[j * d + c]);
        row[j] = score * scale;
        row_max = std::max(row_max, row[j]);
      }
      for (int64_t j = 0; j < n; ++j) {
        row[j] = std::exp(row[j] - row_max);
        total += row[j];
      }
      for (int64_t j = 0; j < n; ++j) {
        row[j] /= total;
        probs[(bh * n + i) * n + j] = T(row[j]);
      }
      for (int64_t c = 0; c < d; ++c) {
        double value = 0;
        for (int64_t j = 0; j < n; ++j) value += row[j] * double(vh[j * d + c]);
        out[(bh * n + i) * d + c] = T(value);
      }
    }
  }
}

template <class T>
void attention_backward_reference(T* dq, T* dk, T* dv, const T* dout, const T* probs, const T* q, const T* k,
                                  const T* v, int64_t batch_heads, int64_t tokens, int64_t head_dim, double scale) {
  const int64_t n = tokens, d = head_dim;
  std::vector<double> scores_grad(n * n);  // (N, N)
  for (int64_t bh = 0; bh < batch_heads; ++bh) {
    const T *p = probs + bh * n * n, *douth = dout + bh * n * d;
    const T *qh = q + bh * n * d, *kh = k + bh * n * d, *vh = v + bh * n * d;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t c = 0; c < d; ++c) {
        double value = 0;
        for (int64_t i = 0; i < n; ++i) value += double(p[i * n + j]) * double(douth[i * d + c]);
        dv[(bh * n + j) * d + c] = T(value);
      }
    for (int64_t i = 0; i < n; ++i) {
      double weighted_mean = 0;
      for (int64_t j = 0; j < n; ++j) {
        double probs_grad = 0;
        for (int64_t c = 0; c < d; ++c) probs_grad += double(douth[i * d + c]) * double(vh[j * d + c]);
        scores_grad[i * n + j] = probs_grad;
        weighted_mean += probs_grad * double(p[i * n + j]);
      }
      for (int64_t j = 0; j < n; ++j) scores_grad[i * n + j] = double(p[i * n + j]) * (scores_grad[i * n + j] - weighted_mean);
    }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < d; ++c) {
        double value_q = 0, value_k = 0;
        for (int64_t j = 0; j < n; ++j) {
          value_q += scores_grad[i * n + j] * double(kh[j * d + c]);
          value_k += scores_grad[j * n + i] * double(qh[j * d + c]);
        }
        dq[(bh * n + i) * d + c] = T(value_q * scale);
        dk[(bh * n + i) * d + c] = T(value_k * scale);
      }
  }
}

template void attention_forward_cpu<float>(float*, float*, const float*, const float*, const float*, HeadStrides,
                                           HeadStrides, HeadStrides, HeadStrides, AttentionSizes, float);
template void attention_forward_cpu<double>(double*, double*, const double*, const double*, const double*,
                                            HeadStrides, HeadStrides, HeadStrides, HeadStrides, AttentionSizes, double);
template void attention_backward_cpu<float>(float*, float*, float*, float*, const float*, const float*, const float*,
                                            const float*, const float*, HeadStrides, HeadStrides, HeadStrides,
                                            HeadStrides, HeadStrides, HeadStrides, HeadStrides, AttentionSizes, float);
template void attention_backward_cpu<double>(double*, double*, double*, double*, const double*, const double*,
                                             const double*, const double*, const double*, HeadStrides, HeadStrides,
                                             HeadStrides, HeadStrides, HeadStrides, HeadStrides, HeadStrides,
                                             AttentionSizes, double);
template void attention_forward_reference<float>(float*, float*, const float*, const float*, const float*, int64_t,
                                                 int64_t, int64_t, double);
template void attention_forward_reference<double>(double*, double*, const double*, const double*, const double*,
                                                  int64_t, int64_t, int64_t, double);
template void attention_backward_reference<float>(float*, float*, float*, const float*, const float*, const float*,
                                                  const float*, const float*, int64_t, int64_t, int64_t, double);
template void attention_backward_reference<double>(double*, double*, double*, const double*, const double*,
                                                   const double*, const double*, const double*, int64_t, int64_t,
                                                   int64_t, double);

// ---- the ops ----

namespace {

// GEMM reads a (B, H, N, hd) operand in place when its last dim is unit-stride and its rows are at least hd
// elements apart (the leading-dimension rule); broadcast batch or head dims (stride 0) are fine.
bool gemm_readable(const Tensor& t) {
  const int64_t tokens = t.size(2), head_dim = t.size(3);
  return (t.strides()[3] == 1 || head_dim == 1) && (tokens == 1 || t.strides()[2] >= head_dim);
}

// A single row has no row stride to speak of; GEMM still wants a leading dimension >= hd.
HeadStrides head_strides(const Tensor& t) {
  return {t.strides()[0], t.strides()[1], t.size(2) == 1 ? t.size(3) : t.strides()[2]};
}

// Gradients nobody asked for are undefined tensors: null pointers (and no strides) for the kernel.
template <class T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

HeadStrides head_strides_or_none(const Tensor& t) { return t.defined() ? head_strides(t) : HeadStrides{}; }

// Both ops' forward: writes the (B, H, N, hd) view `out` from GEMM-readable views q, k, v, and returns what
// the backward reads. The CPU keeps the probabilities P (B, H, N, N) (P^T per pixel head), which the fused
// kernels write only when for_backward; the GPU kernel keeps only each row's logsumexp (B, H, N) and
// recomputes P from q and k, so that no (N, N) matrix is ever stored there.
// Saved: {P, q, k, v} on the CPU, {logsumexp, q, k, v, out} on the GPU.
std::vector<Tensor> attention_forward(const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v,
                                      const AttentionSizes& sizes, double scale, bool for_backward, const char* op) {
  Tensor probs, logsumexp;
  if (q.device() == Device::cpu) {
    const bool fused = q.dtype() == DType::f32 && runs_fused<float>(sizes);
    if (for_backward || !fused)
      probs = Tensor::empty({sizes.batch, sizes.heads, sizes.tokens, sizes.tokens}, q.dtype(), q.device());
  } else {
    logsumexp = Tensor::empty({sizes.batch, sizes.heads, sizes.tokens}, q.dtype(), q.device());
  }
  dispatch_float(
      q, op,
      [&](auto zero) {
        using T = decltype(zero);
        attention_forward_cpu<T>(out.data<T>(), data_or_null<T>(probs), q.data<T>(), k.data<T>(), v.data<T>(),
                                 head_strides(out), head_strides(q), head_strides(k), head_strides(v), sizes, T(scale));
      },
      [&] {
        cuda::attention_forward(out.data<float>(), logsumexp.data<float>(), q.data<float>(), k.data<float>(),
                                v.data<float>(), head_strides(out), head_strides(q), head_strides(k), head_strides(v),
                                sizes, static_cast<float>(scale));
      });
  if (q.device() == Device::cpu) return {probs, q, k, v};
  return {logsumexp, q, k, v, out};
}

// Both ops' backward: writes the (B, H, N, hd) views dq, dk, dv (each undefined when not needed) from dout, a
// GEMM-readable (B, H, N, hd) view, and what attention_forward saved.
void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                        const std::vector<Tensor>& saved, const AttentionSizes& sizes, double scale, const char* op) {
  const Tensor &q = saved[1], &k = saved[2], &v = saved[3];
  dispatch_float(
      dout, op,
      [&](auto zero) {
        using T = decltype(zero);
        const Tensor& probs = saved[0];  // (B, H, N, N)
        Tensor scores_grad;              // (B, H, N, N)
        // The pixel heads keep dS in registers, the fused ones in a buffer per thread.
        const bool local_ds = (std::is_same_v<T, float> && pixel_head(sizes)) || runs_fused<T>(sizes);
        if ((dq.defined() || dk.defined()) && !local_ds)
          scores_grad = Tensor::empty(probs.shape(), dout.dtype(), dout.device());
        attention_backward_cpu<T>(data_or_null<T>(dq), data_or_null<T>(dk), data_or_null<T>(dv),
                                  data_or_null<T>(scores_grad), dout.data<T>(), probs.data<T>(), q.data<T>(),
                                  k.data<T>(), v.data<T>(), head_strides_or_none(dq), head_strides_or_none(dk),
                                  head_strides_or_none(dv), head_strides(dout), head_strides(q), head_strides(k),
                                  head_strides(v), sizes, T(scale));
      },
      [&] {
        const Tensor &logsumexp = saved[0], &out = saved[4];
        const Tensor delta = Tensor::empty(logsumexp.shape(), dout.dtype(), dout.device());  // (B, H, N)
        cuda::attention_backward(data_or_null<float>(dq), data_or_null<float>(dk), data_or_null<float>(dv),
                                 delta.data<float>(), dout.data<float>(), out.data<float>(), logsumexp.data<float>(),
                                 q.data<float>(), k.data<float>(), v.data<float>(), head_strides_or_none(dq),
                                 head_strides_or_none(dk), head_strides_or_none(dv), head_strides(dout),
                                 head_strides(out), head_strides(q), head_strides(k), head_strides(v), sizes,
                                 static_cast<float>(scale));
      });
}

void check_attention_inputs(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  const char* op = "scaled_dot_product_attention";
  if (!q.defined() || !k.defined() || !v.defined()) fail(op, "undefined input");
  if (q.dtype() == DType::i64 || q.dtype() != k.dtype() || q.dtype() != v.dtype())
    fail(op, "needs q, k, v float tensors of one dtype, got " + q.str() + ", " + k.str() + ", " + v.str());
  check_same_device(op, {q, k, v});
  if (q.dim() != 4) fail(op, "needs q, k, v of shape (B, H, N, hd), got " + q.str());
  if (k.shape() != q.shape() || v.shape() != q.shape())
    fail(op, "q, k, v shapes differ: " + q.str() + ", " + k.str() + ", " + v.str());
  if (q.size(2) == 0 || q.size(3) == 0) fail(op, "needs at least one token and one feature per head, got " + q.str());
  if (!std::isfinite(scale)) fail(op, "scale must be finite, got " + std::to_string(scale));
}

// GEMM reads the heads of a (B, N, width) tensor in place when its last dim is unit-stride and its rows do not
// overlap (the leading-dimension rule again).
bool rows_readable(const Tensor& t) {
  return t.strides()[2] == 1 && (t.size(1) == 1 || t.strides()[1] >= t.size(2));
}

// The (B, H, N, hd) view of a (B, N, D) tensor's heads, starting `offset` features into each row of t
// (B, N, width), whose last dim is unit-stride.
Tensor heads_of(const Tensor& t, int64_t offset, const AttentionSizes& sizes) {
  return make_view(t, {sizes.batch, sizes.heads, sizes.tokens, sizes.head_dim},
                   {t.strides()[0], sizes.head_dim, t.strides()[1], 1}, t.offset() + offset);
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  check_attention_inputs(q, k, v, scale);
  const AttentionSizes sizes{q.size(0), q.size(1), q.size(2), q.size(3)};
  const int64_t batch = sizes.batch, heads = sizes.heads, tokens = sizes.tokens, head_dim = sizes.head_dim;
  if (scale == 0) scale = 1 / std::sqrt(static_cast<double>(head_dim));
  // The output lives in (B, N, H, hd) memory order, returned as its (B, H, N, hd) permutation: merging the
  // heads afterwards, transpose(1, 2).reshape(B, N, H * hd), is then a view instead of a copy (and so is the
  // gradient coming back through it, which the backward reads in place).
  const Tensor out_memory = Tensor::empty({batch, tokens, heads, head_dim}, q.dtype(), q.device());  // (B, N, H, hd)
  Tensor out = heads_of(out_memory, 0, sizes);  // (B, H, N, hd)
  std::vector<Tensor> saved;
  const bool for_backward = any_requires_grad({q, k, v});
  {
    NoGradGuard no_grad;  // q, k, v (B, H, N, hd) each, copied only when GEMM cannot read the layout
    saved = attention_forward(out, gemm_readable(q) ? q : contiguous(q), gemm_readable(k) ? k : contiguous(k),
                              gemm_readable(v) ? v : contiguous(v), sizes, scale, for_backward,
                              "scaled_dot_product_attention");
  }
  record("scaled_dot_product_attention", out, {q, k, v}, saved,
         [sizes, scale](const Tensor& dy, const BackwardContext& ctx) -> Grads {
           const Tensor dout = gemm_readable(dy) ? dy : contiguous(dy);  // (B, H, N, hd)
           const Shape shape = ctx.saved[1].shape();
           Tensor dq, dk, dv;
           if (ctx.needs_input_grad[0]) dq = Tensor::empty(shape, dy.dtype(), dy.device());  // (B, H, N, hd)
           if (ctx.needs_input_grad[1]) dk = Tensor::empty(shape, dy.dtype(), dy.device());  // (B, H, N, hd)
           if (ctx.needs_input_grad[2]) dv = Tensor::empty(shape, dy.dtype(), dy.device());  // (B, H, N, hd)
           attention_backward(dq, dk, dv, dout, ctx.saved, sizes, scale, "scaled_dot_product_attention backward");
           return {dq, dk, dv};
         });
  return out;
}

Tensor multi_head_attention(const std::vector<Tensor>& projections, int64_t heads, double scale) {
  const char* op = "multi_head_attention";
  if (projections.empty() || projections.size() > 3)
    fail(op, "needs 1 to 3 projections ({qkv}, {qk, v} or {q, k, v}), got " + std::to_string(projections.size()));
  for (const Tensor& p : projections) {
    if (!p.defined()) fail(op, "undefined projection");
    if (p.dim() != 3) fail(op, "needs projections of shape (B, N, width), got " + p.str());
  }
  auto shapes = [&projections] {  // for the messages only
    std::string text;
    for (const Tensor& p : projections) text += (text.empty() ? "" : ", ") + p.str();
    return text;
  };
  const Tensor& first = projections[0];
  int64_t width = 0;
  for (const Tensor& p : projections) {
    if (p.dtype() == DType::i64 || p.dtype() != first.dtype())
      fail(op, "needs float projections of one dtype, got " + shapes());
    if (p.size(0) != first.size(0) || p.size(1) != first.size(1))
      fail(op, "projections differ in batch or tokens: " + shapes());
    check_same_device(op, {first, p});
    width += p.size(2);
  }
  // q, k and v are the three blocks of D features, in order, across the projections' last dims; each block
  // lies inside one projection.
  const int64_t dim = width / 3;
  if (heads < 1 || width % 3 != 0 || dim == 0 || dim % heads != 0)
    fail(op, "widths of " + shapes() + " do not make q, k, v of D features each, D divisible by " +
                 std::to_string(heads) + " heads");
  for (const Tensor& p : projections)
    if (p.size(2) % dim != 0) fail(op, "a projection splits q, k or v (D = " + std::to_string(dim) + "): " + shapes());
  if (first.size(1) == 0) fail(op, "needs at least one token, got " + shapes());
  if (!std::isfinite(scale)) fail(op, "scale must be finite, got " + std::to_string(scale));
  const AttentionSizes sizes{first.size(0), heads, first.size(1), dim / heads};
  if (scale == 0) scale = 1 / std::sqrt(static_cast<double>(sizes.head_dim));

  std::vector<int64_t> widths;
  for (const Tensor& p : projections) widths.push_back(p.size(2));
  // The (B, H, N, hd) views of q, k and v (blocks 0, 1, 2) in tensors laid out as the projections; an
  // undefined tensor (a projection that needs no gradient) gives undefined blocks.
  auto blocks = [dim, sizes, widths](const std::vector<Tensor>& ts) {
    std::vector<Tensor> views;
    for (size_t i = 0; i < ts.size(); ++i)
      for (int64_t offset = 0; offset < widths[i]; offset += dim)
        views.push_back(ts[i].defined() ? heads_of(ts[i], offset, sizes) : Tensor());
    return views;
  };
  Tensor y = Tensor::empty({sizes.batch, sizes.tokens, dim}, first.dtype(), first.device());  // (B, N, D): heads merged
  std::vector<Tensor> saved;
  const bool for_backward = any_requires_grad(projections);
  {
    NoGradGuard no_grad;
    std::vector<Tensor> sources;  // (B, N, width) each, copied only when GEMM cannot read its rows in place
    for (const Tensor& p : projections) sources.push_back(rows_readable(p) ? p : contiguous(p));
    const std::vector<Tensor> qkv = blocks(sources);
    saved = attention_forward(heads_of(y, 0, sizes), qkv[0], qkv[1], qkv[2], sizes, scale, for_backward, op);
  }
  record(op, y, projections, saved, [sizes, scale, widths, blocks](const Tensor& dy, const BackwardContext& ctx) -> Grads {
    const Tensor dout = rows_readable(dy) ? dy : contiguous(dy);  // (B, N, D)
    // Each projection's gradient (B, N, width) in one piece: the kernel writes dq, dk, dv straight into it.
    Grads dprojections(widths.size());
    for (size_t i = 0; i < widths.size(); ++i)
      if (ctx.needs_input_grad[i])
        dprojections[i] = Tensor::empty({sizes.batch, sizes.tokens, widths[i]}, dy.dtype(), dy.device());
    const std::vector<Tensor> dqkv = blocks(dprojections);
    attention_backward(dqkv[0], dqkv[1], dqkv[2], heads_of(dout, 0, sizes), ctx.saved, sizes, scale,
                       "multi_head_attention backward");
    return dprojections;
  });
  return y;
}

}  // namespace vt
