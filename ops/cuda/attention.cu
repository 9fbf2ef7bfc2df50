// Fused attention on the GPU, flash-attention style: the scores of a query row live only in registers, the
// softmax is computed online (a running max m, a running sum l, the output rescaled whenever m grows), and
// forward keeps only each row's logsumexp L = m + log l; backward recomputes P = exp(S - L) from q and k.
// No (N, N) matrix is ever written to memory. Two shapes of problem get two kernels:
//  - heads of up to 128 features: one warp per query row (each lane holds hd/32 features), keys and values
//    staged through shared memory in tiles;
//  - TNT's inner attention, a very large number of tiny problems (16 pixel tokens, head dim 6): one thread per
//    row, several (batch, head) problems per block, each problem's rows whole in shared memory.
// With S = scale q k^T, P = softmax(S) and O = P V: dV = P^T dO, dP = dO V^T, dS = P (dP - D) with
// D_i = rowsum(dO_i O_i) = rowsum(dP_i P_i), dQ = scale dS K and dK = scale dS^T Q. Every kernel writes its
// own rows only: no atomics, so gradients repeat run to run.
#include <algorithm>
#include <limits>
#include <string>

#include "autograd/cuda_runtime.cuh"
#include "ops/cuda/block_reduce.cuh"
#include "ops/cuda/kernels.h"

namespace vt::cuda {

namespace {

// At most this many query (or key) rows, one per warp, per block of the warp kernels. Every block stages all of
// its head's keys and values, so more rows per block stage them fewer times: a vit_cifar layer's forward at
// batch 512 on an H200 took 1.77 ms with 4 rows per block (17 blocks per 65-token head), 0.92 ms with 13 and
// loads in flight in `stage`. warp_rows spreads a head's rows evenly: 65 tokens are 5 blocks of 13.
constexpr int kMaxWarps = 16;
constexpr int kMaxWarpHeadDim = 128;  // 4 features per lane
constexpr int kMaxSmallHeadDim = 16;
constexpr int kMaxSmallTokens = 64;
constexpr int kSmallThreads = 128;

__device__ const float* head(const float* base, HeadStrides s, int64_t bh, int64_t heads) {
  return base + (bh / heads) * s.batch + (bh % heads) * s.head;
}
__device__ float* head(float* base, HeadStrides s, int64_t bh, int64_t heads) {
  return base + (bh / heads) * s.batch + (bh % heads) * s.head;
}

// Rows [first, first + count) of a head (row stride `row`) into shared memory as count x hd, zero-padded. Each
// thread issues kInFlight loads before it stores any: one load at a time waited out the memory's latency per
// element. Indices within a tile fit 32 bits (count x hd <= 64 x 128).
__device__ void stage(float* __restrict__ shared, const float* __restrict__ rows, int64_t row, int64_t first,
                      int64_t count, int64_t tokens, int hd) {
  constexpr int kInFlight = 8;
  const int total = static_cast<int>(count) * hd, threads = static_cast<int>(blockDim.x);
  for (int base = threadIdx.x; base < total; base += kInFlight * threads) {
    float values[kInFlight];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int index = base + u * threads, j = index / hd, c = index - j * hd;
      values[u] = index < total && first + j < tokens ? rows[(first + j) * row + c] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kInFlight; ++u)
      if (base + u * threads < total) shared[base + u * threads] = values[u];
  }
}

// ---- one warp per row ----

// The lane's features of one row: feature lane + 32 t for t < LANE_VALUES, zero past hd.
template <int LANE_VALUES>
__device__ void load_row(float (&values)[LANE_VALUES], const float* row, int hd, float scale) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int t = 0; t < LANE_VALUES; ++t) values[t] = lane + 32 * t < hd ? row[lane + 32 * t] * scale : 0.0f;
}

// sum over features of a[c] * b_row[c], b_row in shared memory; the same value in every lane.
template <int LANE_VALUES>
__device__ float dot(const float (&a)[LANE_VALUES], const float* b_row, int hd) {
  const int lane = threadIdx.x % 32;
  float sum = 0;
#pragma unroll
  for (int t = 0; t < LANE_VALUES; ++t)
    if (lane + 32 * t < hd) sum += a[t] * b_row[lane + 32 * t];
  return warp_sum(sum);
}

template <int LANE_VALUES>
__global__ void forward_warp_rows(float* out, float* logsumexp, const float* q, const float* k, const float* v,
                                  HeadStrides os, HeadStrides qs, HeadStrides ks, HeadStrides vs, AttentionSizes sz,
                                  float scale, int tile) {
  extern __shared__ float shared[];
  float* k_tile = shared;                  // (tile, hd)
  float* v_tile = shared + tile * sz.head_dim;  // (tile, hd)
  const int hd = static_cast<int>(sz.head_dim), lane = threadIdx.x % 32;
  const int64_t n = sz.tokens, i = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32;
  for (int64_t bh = blockIdx.y; bh < sz.batch * sz.heads; bh += gridDim.y) {
    const float *qh = head(q, qs, bh, sz.heads), *kh = head(k, ks, bh, sz.heads), *vh = head(v, vs, bh, sz.heads);
    const bool active = i < n;  // the same for the whole warp, so its shuffles stay convergent
    float query[LANE_VALUES], accumulator[LANE_VALUES] = {};
    if (active) load_row(query, qh + i * qs.row, hd, scale);
    float m = -INFINITY, l = 0;
    for (int64_t first = 0; first < n; first += tile) {
      __syncthreads();
      stage(k_tile, kh, ks.row, first, tile, n, hd);
      stage(v_tile, vh, vs.row, first, tile, n, hd);
      __syncthreads();
      if (!active) continue;
      const int64_t count = std::min<int64_t>(tile, n - first);
      for (int64_t j = 0; j < count; ++j) {
        const float s = dot(query, k_tile + j * hd, hd);
        const float m_new = fmaxf(m, s), correction = expf(m - m_new), p = expf(s - m_new);
        l = l * correction + p;
#pragma unroll
        for (int t = 0; t < LANE_VALUES; ++t)
          accumulator[t] = accumulator[t] * correction + (lane + 32 * t < hd ? p * v_tile[j * hd + lane + 32 * t] : 0.0f);
        m = m_new;
      }
    }
    if (!active) continue;
    float* oh = head(out, os, bh, sz.heads) + i * os.row;
#pragma unroll
    for (int t = 0; t < LANE_VALUES; ++t)
      if (lane + 32 * t < hd) oh[lane + 32 * t] = accumulator[t] / l;
    if (lane == 0) logsumexp[bh * n + i] = m + logf(l);
  }
}

// delta (B H N) = rowsum(dO O); one warp per row.
template <int LANE_VALUES>
__global__ void delta_warp_rows(float* delta, const float* dout, const float* out, HeadStrides ds, HeadStrides os,
                                AttentionSizes sz) {
  const int hd = static_cast<int>(sz.head_dim);
  const int64_t rows = sz.batch * sz.heads * sz.tokens;
  for (int64_t r = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32; r < rows; r += int64_t{gridDim.x} * blockDim.x / 32) {
    const int64_t bh = r / sz.tokens, i = r % sz.tokens;
    float d[LANE_VALUES], o[LANE_VALUES];
    load_row(d, head(dout, ds, bh, sz.heads) + i * ds.row, hd, 1.0f);
    load_row(o, head(out, os, bh, sz.heads) + i * os.row, hd, 1.0f);
    float sum = 0;
#pragma unroll
    for (int t = 0; t < LANE_VALUES; ++t) sum += d[t] * o[t];
    sum = warp_sum(sum);
    if (threadIdx.x % 32 == 0) delta[r] = sum;
  }
}

// dQ_i = scale sum_j P_ij (dP_ij - D_i) k_j, one warp per query row, keys and values in tiles.
template <int LANE_VALUES>
__global__ void dq_warp_rows(float* dq, const float* dout, const float* logsumexp, const float* delta, const float* q,
                             const float* k, const float* v, HeadStrides dqs, HeadStrides ds, HeadStrides qs,
                             HeadStrides ks, HeadStrides vs, AttentionSizes sz, float scale, int tile) {
  extern __shared__ float shared[];
  float* k_tile = shared;
  float* v_tile = shared + tile * sz.head_dim;
  const int hd = static_cast<int>(sz.head_dim), lane = threadIdx.x % 32;
  const int64_t n = sz.tokens, i = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32;
  for (int64_t bh = blockIdx.y; bh < sz.batch * sz.heads; bh += gridDim.y) {
    const bool active = i < n;
    float query[LANE_VALUES], d_out[LANE_VALUES], accumulator[LANE_VALUES] = {};
    float row_logsumexp = 0, row_delta = 0;
    if (active) {
      load_row(query, head(q, qs, bh, sz.heads) + i * qs.row, hd, scale);
      load_row(d_out, head(dout, ds, bh, sz.heads) + i * ds.row, hd, 1.0f);
      row_logsumexp = logsumexp[bh * n + i];
      row_delta = delta[bh * n + i];
    }
    for (int64_t first = 0; first < n; first += tile) {
      __syncthreads();
      stage(k_tile, head(k, ks, bh, sz.heads), ks.row, first, tile, n, hd);
      stage(v_tile, head(v, vs, bh, sz.heads), vs.row, first, tile, n, hd);
      __syncthreads();
      if (!active) continue;
      const int64_t count = std::min<int64_t>(tile, n - first);
      for (int64_t j = 0; j < count; ++j) {
        const float p = expf(dot(query, k_tile + j * hd, hd) - row_logsumexp);
        const float ds_ij = p * (dot(d_out, v_tile + j * hd, hd) - row_delta);
#pragma unroll
        for (int t = 0; t < LANE_VALUES; ++t)
          if (lane + 32 * t < hd) accumulator[t] += ds_ij * k_tile[j * hd + lane + 32 * t];
      }
    }
    if (!active) continue;
    float* row = head(dq, dqs, bh, sz.heads) + i * dqs.row;
#pragma unroll
    for (int t = 0; t < LANE_VALUES; ++t)
      if (lane + 32 * t < hd) row[lane + 32 * t] = accumulator[t] * scale;
  }
}

// dK_j = scale sum_i dS_ij q_i and dV_j = sum_i P_ij dO_i, one warp per key row, queries in tiles.
template <int LANE_VALUES>
__global__ void dkdv_warp_rows(float* dk, float* dv, const float* dout, const float* logsumexp, const float* delta,
                               const float* q, const float* k, const float* v, HeadStrides dks, HeadStrides dvs,
                               HeadStrides ds, HeadStrides qs, HeadStrides ks, HeadStrides vs, AttentionSizes sz,
                               float scale, int tile) {
  extern __shared__ float shared[];
  float* q_tile = shared;                        // (tile, hd), scaled
  float* dout_tile = shared + tile * sz.head_dim;  // (tile, hd)
  float* row_stats = shared + 2 * tile * sz.head_dim;  // (tile, 2): logsumexp and delta
  const int hd = static_cast<int>(sz.head_dim), lane = threadIdx.x % 32;
  const int64_t n = sz.tokens, j = blockIdx.x * int64_t{blockDim.x / 32} + threadIdx.x / 32;
  for (int64_t bh = blockIdx.y; bh < sz.batch * sz.heads; bh += gridDim.y) {
    const bool active = j < n;
    float key[LANE_VALUES], value[LANE_VALUES], dk_sum[LANE_VALUES] = {}, dv_sum[LANE_VALUES] = {};
    if (active) {
      load_row(key, head(k, ks, bh, sz.heads) + j * ks.row, hd, 1.0f);
      load_row(value, head(v, vs, bh, sz.heads) + j * vs.row, hd, 1.0f);
    }
    for (int64_t first = 0; first < n; first += tile) {
      __syncthreads();
      stage(q_tile, head(q, qs, bh, sz.heads), qs.row, first, tile, n, hd);
      stage(dout_tile, head(dout, ds, bh, sz.heads), ds.row, first, tile, n, hd);
      for (int64_t r = threadIdx.x; r < tile; r += blockDim.x) {
        row_stats[2 * r] = first + r < n ? logsumexp[bh * n + first + r] : 0.0f;
        row_stats[2 * r + 1] = first + r < n ? delta[bh * n + first + r] : 0.0f;
      }
      __syncthreads();
      for (int64_t index = threadIdx.x; index < tile * hd; index += blockDim.x) q_tile[index] *= scale;
      __syncthreads();
      if (!active) continue;
      const int64_t count = std::min<int64_t>(tile, n - first);
      for (int64_t i = 0; i < count; ++i) {
        const float p = expf(dot(key, q_tile + i * hd, hd) - row_stats[2 * i]);
        const float ds_ij = p * (dot(value, dout_tile + i * hd, hd) - row_stats[2 * i + 1]);
#pragma unroll
        for (int t = 0; t < LANE_VALUES; ++t)
          if (lane + 32 * t < hd) {
            dv_sum[t] += p * dout_tile[i * hd + lane + 32 * t];
            dk_sum[t] += ds_ij * q_tile[i * hd + lane + 32 * t];  // q scaled: this is scale dS^T Q already
          }
      }
    }
    if (!active) continue;
#pragma unroll
    for (int t = 0; t < LANE_VALUES; ++t)
      if (lane + 32 * t < hd) {
        if (dk) head(dk, dks, bh, sz.heads)[j * dks.row + lane + 32 * t] = dk_sum[t];
        if (dv) head(dv, dvs, bh, sz.heads)[j * dvs.row + lane + 32 * t] = dv_sum[t];
      }
  }
}

// ---- one thread per row: many tiny problems per block ----

// Thread t of a block works on problem t / n (of the block's group) and row t % n of it.
struct SmallProblem {
  int64_t bh;   // the problem's (batch, head), or past the end
  int64_t row;  // this thread's row
  int slot;     // the problem's slot among the block's
  bool active;
};

__device__ SmallProblem small_problem(const AttentionSizes& sz) {
  const int per_block = kSmallThreads / static_cast<int>(sz.tokens);
  SmallProblem p;
  p.slot = threadIdx.x / static_cast<int>(sz.tokens);
  p.row = threadIdx.x % sz.tokens;
  p.bh = blockIdx.x * int64_t{per_block} + p.slot;
  p.active = p.slot < per_block && p.bh < sz.batch * sz.heads;
  return p;
}

// Every active thread copies row `row` of its problem's operand into the block's (slot, row) place.
__device__ void stage_own_row(float* shared, const float* base, HeadStrides s, const SmallProblem& p,
                              const AttentionSizes& sz, float scale) {
  if (!p.active) return;
  const float* row = head(base, s, p.bh, sz.heads) + p.row * s.row;
  float* to = shared + (p.slot * sz.tokens + p.row) * sz.head_dim;
  for (int c = 0; c < sz.head_dim; ++c) to[c] = row[c] * scale;
}

__device__ float small_dot(const float* a, const float* b, int hd) {
  float sum = 0;
#pragma unroll
  for (int c = 0; c < kMaxSmallHeadDim; ++c)
    if (c < hd) sum += a[c] * b[c];
  return sum;
}

__global__ void forward_small(float* out, float* logsumexp, const float* q, const float* k, const float* v,
                              HeadStrides os, HeadStrides qs, HeadStrides ks, HeadStrides vs, AttentionSizes sz,
                              float scale) {
  extern __shared__ float shared[];
  const int64_t n = sz.tokens, group = (kSmallThreads / n) * n * sz.head_dim;
  float *k_rows = shared, *v_rows = shared + group, *q_rows = shared + 2 * group;
  const SmallProblem p = small_problem(sz);
  stage_own_row(k_rows, k, ks, p, sz, 1.0f);
  stage_own_row(v_rows, v, vs, p, sz, 1.0f);
  stage_own_row(q_rows, q, qs, p, sz, scale);
  __syncthreads();
  if (!p.active) return;
  const int hd = static_cast<int>(sz.head_dim);
  const float* query = q_rows + (p.slot * n + p.row) * hd;
  const float* keys = k_rows + p.slot * n * hd;
  const float* values = v_rows + p.slot * n * hd;
  float m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) m = fmaxf(m, small_dot(query, keys + j * hd, hd));
  float l = 0, accumulator[kMaxSmallHeadDim] = {};
  for (int64_t j = 0; j < n; ++j) {
    const float e = expf(small_dot(query, keys + j * hd, hd) - m);
    l += e;
#pragma unroll
    for (int c = 0; c < kMaxSmallHeadDim; ++c)
      if (c < hd) accumulator[c] += e * values[j * hd + c];
  }
  float* row = head(out, os, p.bh, sz.heads) + p.row * os.row;
#pragma unroll
  for (int c = 0; c < kMaxSmallHeadDim; ++c)
    if (c < hd) row[c] = accumulator[c] / l;
  logsumexp[p.bh * n + p.row] = m + logf(l);
}

// Per query thread: delta_i = rowsum(dO_i O_i), then dQ_i. Per key thread (a second launch): dK_j and dV_j.
__global__ void backward_small(float* dq, float* dk, float* dv, float* delta, const float* dout, const float* out,
                               const float* logsumexp, const float* q, const float* k, const float* v, HeadStrides dqs,
                               HeadStrides dks, HeadStrides dvs, HeadStrides ds, HeadStrides os, HeadStrides qs,
                               HeadStrides ks, HeadStrides vs, AttentionSizes sz, float scale, bool keys_pass) {
  extern __shared__ float shared[];
  const int64_t n = sz.tokens, group = (kSmallThreads / n) * n * sz.head_dim;
  float *q_rows = shared, *k_rows = shared + group, *v_rows = shared + 2 * group, *dout_rows = shared + 3 * group;
  float* stats = shared + 4 * group;  // (slots, n, 2): logsumexp and delta of each row
  const SmallProblem p = small_problem(sz);
  const int hd = static_cast<int>(sz.head_dim);
  stage_own_row(q_rows, q, qs, p, sz, scale);
  stage_own_row(k_rows, k, ks, p, sz, 1.0f);
  stage_own_row(v_rows, v, vs, p, sz, 1.0f);
  stage_own_row(dout_rows, dout, ds, p, sz, 1.0f);
  if (p.active) {
    float* own = stats + 2 * (p.slot * n + p.row);
    own[0] = logsumexp[p.bh * n + p.row];
    if (keys_pass) {
      own[1] = delta[p.bh * n + p.row];
    } else {
      const float* o = head(out, os, p.bh, sz.heads) + p.row * os.row;
      own[1] = small_dot(dout_rows + (p.slot * n + p.row) * hd, o, hd);
      delta[p.bh * n + p.row] = own[1];
    }
  }
  __syncthreads();
  if (!p.active) return;
  const float* row_stats = stats + 2 * p.slot * n;
  const float *queries = q_rows + p.slot * n * hd, *keys = k_rows + p.slot * n * hd;
  const float *values = v_rows + p.slot * n * hd, *douts = dout_rows + p.slot * n * hd;
  float first_sum[kMaxSmallHeadDim] = {}, second_sum[kMaxSmallHeadDim] = {};
  if (!keys_pass) {  // this thread is query row i
    const int64_t i = p.row;
    for (int64_t j = 0; j < n; ++j) {
      const float prob = expf(small_dot(queries + i * hd, keys + j * hd, hd) - row_stats[2 * i]);
      const float ds_ij = prob * (small_dot(douts + i * hd, values + j * hd, hd) - row_stats[2 * i + 1]);
#pragma unroll
      for (int c = 0; c < kMaxSmallHeadDim; ++c)
        if (c < hd) first_sum[c] += ds_ij * keys[j * hd + c];
    }
    if (dq) {
      float* row = head(dq, dqs, p.bh, sz.heads) + i * dqs.row;
      for (int c = 0; c < hd; ++c) row[c] = first_sum[c] * scale;
    }
    return;
  }
  const int64_t j = p.row;  // this thread is key row j
  for (int64_t i = 0; i < n; ++i) {
    const float prob = expf(small_dot(queries + i * hd, keys + j * hd, hd) - row_stats[2 * i]);
    const float ds_ij = prob * (small_dot(douts + i * hd, values + j * hd, hd) - row_stats[2 * i + 1]);
#pragma unroll
    for (int c = 0; c < kMaxSmallHeadDim; ++c)
      if (c < hd) {
        first_sum[c] += ds_ij * queries[i * hd + c];  // queries scaled: scale dS^T Q
        second_sum[c] += prob * douts[i * hd + c];
      }
  }
  if (dk) {
    float* row = head(dk, dks, p.bh, sz.heads) + j * dks.row;
    for (int c = 0; c < hd; ++c) row[c] = first_sum[c];
  }
  if (dv) {
    float* row = head(dv, dvs, p.bh, sz.heads) + j * dvs.row;
    for (int c = 0; c < hd; ++c) row[c] = second_sum[c];
  }
}

// ---- launch ----

bool small(const AttentionSizes& sz) { return sz.head_dim <= kMaxSmallHeadDim && sz.tokens <= kMaxSmallTokens; }

void check_sizes(const AttentionSizes& sz) {
  if (!small(sz) && sz.head_dim > kMaxWarpHeadDim)
    fail("scaled_dot_product_attention", "heads of " + std::to_string(sz.head_dim) + " features; the GPU kernels take up to " +
                                             std::to_string(kMaxWarpHeadDim));
}

// Keys per shared-memory tile, so that two tiles of hd floats (and the row statistics) fit in 40 KB.
int tile_for(int64_t head_dim) { return static_cast<int>(std::max<int64_t>(8, std::min<int64_t>(64, 5120 / (head_dim + 1)))); }

// Rows per block: as many blocks per head as kMaxWarps rows need, the rows shared out evenly among them.
int warp_rows(const AttentionSizes& sz) {
  const int64_t blocks = (sz.tokens + kMaxWarps - 1) / kMaxWarps;
  return static_cast<int>((sz.tokens + blocks - 1) / blocks);
}

dim3 warp_grid(const AttentionSizes& sz) {
  const int64_t rows = warp_rows(sz);
  return dim3(static_cast<unsigned>((sz.tokens + rows - 1) / rows),
              static_cast<unsigned>(std::min<int64_t>(sz.batch * sz.heads, 65535)));
}

// One block per group of problems (the kernels take no grid-stride loop): more than the grid's 2^31 - 1 blocks
// would leave problems undone, so it is refused.
unsigned int small_blocks(const AttentionSizes& sz) {
  const int64_t per_block = kSmallThreads / sz.tokens, blocks = (sz.batch * sz.heads + per_block - 1) / per_block;
  if (blocks > std::numeric_limits<int32_t>::max())
    fail("attention", std::to_string(sz.batch * sz.heads) + " (batch, head) problems exceed one launch's grid");
  return static_cast<unsigned>(blocks);
}

size_t small_shared(const AttentionSizes& sz, int operands) {
  return static_cast<size_t>((kSmallThreads / sz.tokens) * sz.tokens * (sz.head_dim * operands + 2)) * sizeof(float);
}

// Calls launch with LANE_VALUES = ceil(hd / 32) as a compile-time constant.
template <class Launch>
void with_lane_values(int64_t head_dim, const Launch& launch) {
  switch ((head_dim + 31) / 32) {
    case 1: return launch(std::integral_constant<int, 1>{});
    case 2: return launch(std::integral_constant<int, 2>{});
    case 3: return launch(std::integral_constant<int, 3>{});
    default: return launch(std::integral_constant<int, 4>{});
  }
}

}  // namespace

void attention_forward(float* out, float* logsumexp, const float* q, const float* k, const float* v,
                       HeadStrides out_strides, HeadStrides q_strides, HeadStrides k_strides, HeadStrides v_strides,
                       AttentionSizes sizes, float scale) {
  if (sizes.batch * sizes.heads * sizes.tokens == 0) return;
  check_sizes(sizes);
  if (small(sizes)) {
    forward_small<<<small_blocks(sizes), kSmallThreads, small_shared(sizes, 3), stream()>>>(
        out, logsumexp, q, k, v, out_strides, q_strides, k_strides, v_strides, sizes, scale);
  } else {
    const int tile = tile_for(sizes.head_dim);
    const size_t shared = static_cast<size_t>(2 * tile * sizes.head_dim) * sizeof(float);
    with_lane_values(sizes.head_dim, [&](auto lanes) {
      forward_warp_rows<decltype(lanes)::value><<<warp_grid(sizes), warp_rows(sizes) * 32, shared, stream()>>>(
          out, logsumexp, q, k, v, out_strides, q_strides, k_strides, v_strides, sizes, scale, tile);
    });
  }
  check_launch("scaled_dot_product_attention");
}

void attention_backward(float* dq, float* dk, float* dv, float* delta, const float* dout, const float* out,
                        const float* logsumexp, const float* q, const float* k, const float* v, HeadStrides dq_strides,
                        HeadStrides dk_strides, HeadStrides dv_strides, HeadStrides dout_strides,
                        HeadStrides out_strides, HeadStrides q_strides, HeadStrides k_strides, HeadStrides v_strides,
                        AttentionSizes sizes, float scale) {
  if (sizes.batch * sizes.heads * sizes.tokens == 0) return;
  check_sizes(sizes);
  if (small(sizes)) {
    // The query pass writes delta, which the key pass reads: two launches, in stream order.
    for (const bool keys_pass : {false, true})
      backward_small<<<small_blocks(sizes), kSmallThreads, small_shared(sizes, 4), stream()>>>(
          dq, dk, dv, delta, dout, out, logsumexp, q, k, v, dq_strides, dk_strides, dv_strides, dout_strides,
          out_strides, q_strides, k_strides, v_strides, sizes, scale, keys_pass);
  } else {
    const int tile = tile_for(sizes.head_dim);
    const size_t two_tiles = static_cast<size_t>(2 * tile * sizes.head_dim) * sizeof(float);
    const int64_t rows = sizes.batch * sizes.heads * sizes.tokens;
    with_lane_values(sizes.head_dim, [&](auto lanes) {
      constexpr int kLanes = decltype(lanes)::value;
      delta_warp_rows<kLanes><<<static_cast<unsigned>(std::min<int64_t>((rows + 7) / 8, 65536)), 256, 0, stream()>>>(
          delta, dout, out, dout_strides, out_strides, sizes);
      if (dq)
        dq_warp_rows<kLanes><<<warp_grid(sizes), warp_rows(sizes) * 32, two_tiles, stream()>>>(
            dq, dout, logsumexp, delta, q, k, v, dq_strides, dout_strides, q_strides, k_strides, v_strides, sizes, scale,
            tile);
      if (dk || dv)
        dkdv_warp_rows<kLanes><<<warp_grid(sizes), warp_rows(sizes) * 32, two_tiles + 2 * tile * sizeof(float), stream()>>>(
            dk, dv, dout, logsumexp, delta, q, k, v, dk_strides, dv_strides, dout_strides, q_strides, k_strides,
            v_strides, sizes, scale, tile);
    });
  }
  check_launch("scaled_dot_product_attention backward");
}

}  // namespace vt::cuda
