// float32 GEMM: op(B)'s panels, the 6 x 64 block of C summed in registers, and the loop over blocks. A block
// keeps 6 rows by 64 columns of sums in 24 of AVX-512's 32 registers; each step of p loads a panel row (four
// vectors) and multiplies it by 6 values of A, broadcast from where A lies. Against 14 x 32 (28 sums, 14
// broadcasts for 2 loads), this shape measured 6-7% faster on one core of a Xeon at vit_cifar's products.
#include "autograd/gemm_f32.h"

#include <algorithm>
#include <cstring>

// load() below returns a 64-byte vector by value, whose calling convention differs between builds with and
// without AVX-512; g++ warns about that (-Wpsabi) on builds without it. It is internal to this file and inlined,
// so no call crosses that boundary (taking the vector by reference instead made the kernel 3.6x slower).
#pragma GCC diagnostic ignored "-Wpsabi"

namespace vt {

namespace {

constexpr int kLanes = 16, kVectors = 4, kPanel = kLanes * kVectors, kBlockRows = 6;
// Depth per pass over C: 6 rows of A (6 KiB) and a panel's rows (64 KiB, from L2) while a block is summed.
constexpr int64_t kDepthBlock = 256;

typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));

// 16 floats from x, and back, through memcpy so that x needs no alignment.
Vec load(const float* x) {
  Vec v;
  std::memcpy(&v, x, sizeof v);
  return v;
}

void store(float* x, const Vec& v) { std::memcpy(x, &v, sizeof v); }

// C rows [0, Rows) by the panel's `cols` (<= 64) columns, over `depth` values of p from A (its rows lda apart, or
// its columns when A is stored (k, m): TransA) and the panel's rows. The first pass over p writes
// alpha * sum + beta * C + bias; later passes add alpha * sum to C.
template <int Rows, bool TransA>
void block(float* c, int64_t ldc, const float* a, int64_t lda, const float* panel, int64_t panel_row, int64_t depth,
           int64_t cols, float alpha, float beta, const float* bias, bool first) {
  Vec sum[Rows][kVectors];  // sum[r][v]: row r, columns 16 v to 16 v + 15
  for (int r = 0; r < Rows; ++r)
    for (int v = 0; v < kVectors; ++v) sum[r][v] = Vec{};
#pragma GCC unroll 4  // 3-5% faster at vit_cifar's products on one core of a Xeon, in turn
  for (int64_t p = 0; p < depth; ++p) {
    Vec b[kVectors];
    for (int v = 0; v < kVectors; ++v) b[v] = load(panel + p * panel_row + v * kLanes);
    for (int r = 0; r < Rows; ++r) {
      const float x = TransA ? a[p * lda + r] : a[r * lda + p];
      for (int v = 0; v < kVectors; ++v) sum[r][v] += x * b[v];
    }
  }
  for (int r = 0; r < Rows; ++r) {
    float* row = c + r * ldc;
    if (cols == kPanel) {
      for (int v = 0; v < kVectors; ++v) {
        Vec out = alpha * sum[r][v];
        if (!first) {
          out += load(row + v * kLanes);
        } else {
          if (beta != 0.0f) out += beta * load(row + v * kLanes);
          if (bias) out += load(bias + v * kLanes);
        }
        store(row + v * kLanes, out);
      }
    } else {
      for (int64_t j = 0; j < cols; ++j) {  // the same steps, lane by lane
        float out = alpha * sum[r][j / kLanes][j % kLanes];
        if (!first) {
          out += row[j];
        } else {
          if (beta != 0.0f) out += beta * row[j];
          if (bias) out += bias[j];
        }
        row[j] = out;
      }
    }
  }
}

// block<rows> for the 1 to 6 rows left.
template <bool TransA, int Rows = kBlockRows>
void block_of(int64_t rows, float* c, int64_t ldc, const float* a, int64_t lda, const float* panel, int64_t panel_row,
              int64_t depth, int64_t cols, float alpha, float beta, const float* bias, bool first) {
  if constexpr (Rows > 1) {
    if (rows < Rows)
      return block_of<TransA, Rows - 1>(rows, c, ldc, a, lda, panel, panel_row, depth, cols, alpha, beta, bias, first);
  }
  block<Rows, TransA>(c, ldc, a, lda, panel, panel_row, depth, cols, alpha, beta, bias, first);
}

}  // namespace

PanelsB PackedB::pack(const float* b, int64_t ldb, bool trans_b, int64_t n, int64_t k) {
  if (!trans_b && n % kPanel == 0) return {b, ldb, kPanel};
  const int64_t panels = (n + kPanel - 1) / kPanel;
  storage_.resize(static_cast<size_t>(panels * k * (kPanel / kLanes)));
  float* const packed = storage_.empty() ? nullptr : storage_.data()->values;  // no panels when k or n is 0
  for (int64_t jp = 0; jp < panels; ++jp) {
    float* const panel = packed + jp * k * kPanel;
    const int64_t j0 = jp * kPanel, cols = std::min<int64_t>(kPanel, n - j0);
    if (cols < kPanel)
      for (int64_t p = 0; p < k; ++p) std::fill(panel + p * kPanel + cols, panel + (p + 1) * kPanel, 0.0f);
    if (trans_b)  // B stored (n, k): read each column of op(B) along its row of B
      for (int64_t j = 0; j < cols; ++j)
        for (int64_t p = 0; p < k; ++p) panel[p * kPanel + j] = b[(j0 + j) * ldb + p];
    else
      for (int64_t p = 0; p < k; ++p) std::copy_n(b + p * ldb + j0, cols, panel + p * kPanel);
  }
  return {packed, kPanel, k * kPanel};
}

namespace {

template <bool TransA>
void gemm_f32_packed_as(float* c, int64_t ldc, const float* a, int64_t lda, const PanelsB& b, int64_t m,
                        int64_t n, int64_t k, float alpha, float beta, const float* bias,
                        const GemmEpilogue<float>& epilogue, double* a_sums, int64_t l2_bytes) {
  if (k == 0) {  // no products: C = beta C + bias
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        c[i * ldc + j] = (beta == 0.0f ? 0.0f : beta * c[i * ldc + j]) + (bias ? bias[j] : 0.0f);
    epilogue(c, m, n);
    return;
  }
  // The 6 rows of A stay in L1 while the panels of a chunk pass, and the chunk's depth block of the panels stays
  // in L2 while every row of A passes: half of L2, 16 panels (1,024 columns) at 2 MiB.
  const int64_t panels = (n + kPanel - 1) / kPanel;
  const int64_t chunk = std::max<int64_t>(1, l2_bytes / 2 / (kDepthBlock * kPanel * int64_t{sizeof(float)}));
  for (int64_t p0 = 0; p0 < k; p0 += kDepthBlock) {
    const int64_t depth = std::min(kDepthBlock, k - p0);
    for (int64_t jp0 = 0; jp0 < panels; jp0 += chunk)
      for (int64_t i0 = 0; i0 < m; i0 += kBlockRows) {
        const int64_t rows = std::min<int64_t>(kBlockRows, m - i0);
        for (int64_t jp = jp0; jp < std::min(panels, jp0 + chunk); ++jp) {
          const int64_t j0 = jp * kPanel;
          block_of<TransA>(rows, c + i0 * ldc + j0, ldc, TransA ? a + p0 * lda + i0 : a + i0 * lda + p0, lda,
                           b.data + jp * b.panel_stride + p0 * b.row_stride, b.row_stride, depth,
                           std::min<int64_t>(kPanel, n - j0), alpha, beta, bias ? bias + j0 : nullptr, p0 == 0);
        }
        // The rows' chunk of C, just written (at most 6 x 1,024 floats, in L1), after the last pass.
        const int64_t j0 = jp0 * kPanel, cols = std::min(n, (jp0 + chunk) * kPanel) - j0;
        if (p0 + depth == k) epilogue(c + i0 * ldc + j0, rows, cols);
      }
    // The depth block of A (256 x m floats: 768 KiB at vit_cifar's widest, 768) was read for every row of C.
    if (a_sums) add_row_sums(a_sums, TransA ? a + p0 * lda : a + p0, lda, TransA, m, depth);
  }
}

}  // namespace

void gemm_f32_packed(float* c, int64_t ldc, const float* a, int64_t lda, bool trans_a, const PanelsB& b, int64_t m,
                     int64_t n, int64_t k, float alpha, float beta, const float* bias,
                     const GemmEpilogue<float>& epilogue, double* a_sums, int64_t l2_bytes) {
  if (trans_a)
    gemm_f32_packed_as<true>(c, ldc, a, lda, b, m, n, k, alpha, beta, bias, epilogue, a_sums, l2_bytes);
  else
    gemm_f32_packed_as<false>(c, ldc, a, lda, b, m, n, k, alpha, beta, bias, epilogue, a_sums, l2_bytes);
}

}  // namespace vt
