// bf16 GEMM: the reference loop first, then the packed layouts both kernels read, the AVX512-BF16 and AMX kernels,
// and the detection of what this CPU runs. The AVX-512 code has target attributes and the AMX instructions are
// inline assembly (binutils >= 2.36 knows them), so every x86-64 build has both, and a CPU without the
// instructions never reaches them (best_bf16_kernel decides at run time). No pointer is formed past an operand:
// the masked loads get null where no lane is read.
#include "autograd/gemm_bf16.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/tensor.h"

namespace vt {

uint16_t round_to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>(bits >> 16 | 0x0040);  // NaN: set the quiet bit
  if ((bits & 0x7f800000u) == 0) return static_cast<uint16_t>(bits >> 16 & 0x8000);          // zero or denormal
  // Adding 0x7fff rounds the dropped half up when it is above one half; the kept part's lowest bit adds the last
  // 1 for an exact half on an odd value (ties to even). A carry into the exponent is the right rounding, up to inf.
  bits += 0x7fffu + (bits >> 16 & 1);
  return static_cast<uint16_t>(bits >> 16);
}

float bf16_to_float(uint16_t x) {
  const uint32_t bits = uint32_t{x} << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

void gemm_bf16_reference(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                         int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const float* bias) {
  auto a_at = [&](int64_t i, int64_t p) { return bf16_to_float(round_to_bf16(trans_a ? a[p * lda + i] : a[i * lda + p])); };
  auto b_at = [&](int64_t p, int64_t j) { return bf16_to_float(round_to_bf16(trans_b ? b[j * ldb + p] : b[p * ldb + j])); };
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float sum = 0;
      for (int64_t p = 0; p < k; ++p) sum += a_at(i, p) * b_at(p, j);
      float& out = c[i * ldc + j];
      out = (beta == 0 ? alpha * sum : alpha * sum + beta * out) + (bias ? bias[j] : 0.0f);
    }
}

namespace {

// ---- packed layouts ----
// Both kernels multiply a panel of 32 rows of op(A) by a block of 32 columns of op(B), k in blocks of 32 (the
// depth of one AMX tile multiply), everything zero-padded to whole blocks (zeros add nothing to the sums):
// - A panel: (k / 32, 32 rows, 32) bf16, so a 16-row by 32-deep AMX tile is 1 KiB with rows 64 bytes apart;
// - op(B): (n / 16, k / 2, 16, 2) bf16 (the "VNNI" layout): for each group of 16 columns and each pair of
//   consecutive p, the pair of every column side by side, which is what AMX's and AVX512-BF16's dot products of
//   pairs read. A 32-deep block of one group is again a 1 KiB tile with rows 64 bytes apart.
constexpr int64_t kPanelRows = 32, kBlockCols = 32, kDepth = 32;

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

#define VT_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// The first `count` lanes of 16 (all when count >= 16, none when count <= 0).
VT_AVX512_BF16 __mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xffff) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

// 32 floats, the lanes at and past `count` read as zero, rounded to 32 bf16 (low lanes from x[0..15]); x may be
// null when count <= 0.
VT_AVX512_BF16 __m512i load_bf16x32(const float* x, int64_t count) {
  if (count <= 0) return _mm512_setzero_si512();
  const __m512 lo = _mm512_maskz_loadu_ps(first_lanes(count), x);
  const __m512 hi = count > 16 ? _mm512_maskz_loadu_ps(first_lanes(count - 16), x + 16) : _mm512_setzero_ps();
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
}

// Rows p and p + 1 of 16 floats each (lanes at and past `count` zero, a null row all zero), rounded and
// interleaved into 16 pairs: lane j holds (x0[j], x1[j]) as two bf16 in one 32-bit lane, the VNNI layout's row.
VT_AVX512_BF16 __m512i pairs_of_rows(const float* x0, const float* x1, int64_t count) {
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                              6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512 row0 = x0 ? _mm512_maskz_loadu_ps(first_lanes(count), x0) : _mm512_setzero_ps();
  const __m512 row1 = x1 ? _mm512_maskz_loadu_ps(first_lanes(count), x1) : _mm512_setzero_ps();
  return _mm512_permutexvar_epi16(interleave, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(row1, row0)));
}

// Transposes a 16 x 16 matrix of 32-bit lanes held as 16 rows: at each level s = 8, 4, 2, 1, rows i and i + s
// (bit s of i clear) swap the s-wide blocks off their diagonal, the upper lanes of row i with the lower of row i + s.
// Inlined into the packers, so that the 16 rows stay in registers.
struct TransposeIndices {
  alignas(64) int32_t keep_low[4][16], keep_high[4][16];  // per level, lanes of (row i, row i + s) = 0-15, 16-31
  constexpr TransposeIndices() : keep_low{}, keep_high{} {
    for (int level = 0; level < 4; ++level)
      for (int j = 0, s = 8 >> level; j < 16; ++j) {
        keep_low[level][j] = (j & s) ? 16 + j - s : j;   // row i: its own lanes with bit s clear, then row i + s's
        keep_high[level][j] = (j & s) ? 16 + j : j + s;  // row i + s: row i's lanes with bit s set, then its own
      }
  }
};
constexpr TransposeIndices kTranspose;

template <int Level>
VT_AVX512_BF16 __attribute__((always_inline)) inline void transpose_level(__m512i (&rows)[16]) {
  constexpr int s = 8 >> Level;
  const __m512i low = _mm512_load_si512(kTranspose.keep_low[Level]), high = _mm512_load_si512(kTranspose.keep_high[Level]);
  for (int i = 0; i < 16; ++i) {
    if (i & s) continue;
    const __m512i a = rows[i], b = rows[i + s];
    rows[i] = _mm512_permutex2var_epi32(a, low, b);
    rows[i + s] = _mm512_permutex2var_epi32(a, high, b);
  }
}

VT_AVX512_BF16 __attribute__((always_inline)) inline void transpose_16x16(__m512i (&rows)[16]) {
  transpose_level<0>(rows);
  transpose_level<1>(rows);
  transpose_level<2>(rows);
  transpose_level<3>(rows);
}

// The A panel of op(A) rows [i0, i0 + rows), stored (m, k): row r, depth p is A[(i0 + r) lda + p].
VT_AVX512_BF16 void pack_a_panel(uint16_t* panel, const float* a, int64_t lda, int64_t i0, int64_t rows,
                                 int64_t k, int64_t kpad) {
  for (int64_t p0 = 0; p0 < kpad; p0 += kDepth)
    for (int64_t r = 0; r < kPanelRows; ++r) {
      const __m512i v = r < rows && p0 < k ? load_bf16x32(a + (i0 + r) * lda + p0, k - p0) : _mm512_setzero_si512();
      _mm512_storeu_si512(panel + p0 * kPanelRows + r * kDepth, v);
    }
}

// Every A panel of op(A) stored (k, m), transposed: row r, depth p is A[p lda + r]. The depth runs down A's rows,
// so 16 pairs of rows p, p + 1 give 16 VNNI rows of 16 of op(A)'s rows each, and turning that 16 x 16 block of
// pairs over gives 16 panel rows of 32 depths. A's rows are read in order, 32 at a time: a panel at a time would
// read a strip of every row and stall on memory.
VT_AVX512_BF16 void pack_a_transposed(uint16_t* panels, const float* a, int64_t lda, int64_t m, int64_t k,
                                      int64_t kpad) {
  for (int64_t p0 = 0; p0 < kpad; p0 += kDepth)
    for (int64_t r0 = 0; r0 < round_up(m, kPanelRows); r0 += 16) {
      __m512i block[16];
      for (int64_t q = 0; q < 16; ++q) {
        const int64_t p = p0 + 2 * q;
        const bool inside = r0 < m;  // the last panel's padding rows read nothing
        block[q] = pairs_of_rows(inside && p < k ? a + p * lda + r0 : nullptr,
                                 inside && p + 1 < k ? a + (p + 1) * lda + r0 : nullptr, m - r0);
      }
      transpose_16x16(block);
      uint16_t* out = panels + (r0 / kPanelRows) * kPanelRows * kpad + p0 * kPanelRows + (r0 % kPanelRows) * kDepth;
      for (int64_t r = 0; r < 16; ++r) _mm512_storeu_si512(out + r * kDepth, block[r]);
    }
}

// op(B) (k, n) in the VNNI layout: op(B)[p][j] is B[p ldb + j], or B[j ldb + p] when transposed (stored (n, k)).
// Not transposed, each pair of B's rows is read whole, in order. Transposed, a column's depth is contiguous: 32 of
// its depths are 16 pairs, and 16 columns of them, turned over, are 16 VNNI rows.
VT_AVX512_BF16 void pack_b(uint16_t* packed, bool trans_b, const float* b, int64_t ldb, int64_t n, int64_t k,
                           int64_t npad, int64_t kpad) {
  if (!trans_b) {
    for (int64_t p = 0; p < kpad; p += 2)
      for (int64_t j0 = 0; j0 < npad; j0 += 16) {
        const bool inside = j0 < n;  // the last block's padding columns read nothing
        const __m512i v = pairs_of_rows(inside && p < k ? b + p * ldb + j0 : nullptr,
                                        inside && p + 1 < k ? b + (p + 1) * ldb + j0 : nullptr, n - j0);
        _mm512_storeu_si512(packed + j0 * kpad + p * 16, v);  // group j0 / 16: (kpad / 2, 16, 2)
      }
    return;
  }
  for (int64_t j0 = 0; j0 < npad; j0 += 16)
    for (int64_t p0 = 0; p0 < kpad; p0 += kDepth) {
      __m512i block[16];
      for (int64_t j = 0; j < 16; ++j)
        block[j] = j0 + j < n && p0 < k ? load_bf16x32(b + (j0 + j) * ldb + p0, k - p0) : _mm512_setzero_si512();
      transpose_16x16(block);
      for (int64_t q = 0; q < 16; ++q) _mm512_storeu_si512(packed + j0 * kpad + (p0 + 2 * q) * 16, block[q]);
    }
}

// block (32, 32) -> C rows [0, rows) and columns [0, cols): C = alpha block + beta C + bias (the bias's columns
// [0, cols), when given); C is not read when beta = 0.
VT_AVX512_BF16 void write_block(float* c, int64_t ldc, const float* block, int64_t rows, int64_t cols, float alpha,
                                float beta, const float* bias) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int64_t j = 0; j < cols; j += 16) {
    const __mmask16 mask = first_lanes(cols - j);
    const __m512 add = bias ? _mm512_maskz_loadu_ps(mask, bias + j) : _mm512_setzero_ps();
    for (int64_t r = 0; r < rows; ++r) {
      __m512 y = _mm512_fmadd_ps(va, _mm512_loadu_ps(block + r * kBlockCols + j), add);
      if (beta != 0) y = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mask, c + r * ldc + j), y);
      _mm512_mask_storeu_ps(c + r * ldc + j, mask, y);
    }
  }
}

// ---- AVX512-BF16: one dot product of 16 pairs per instruction ----
// block (32, 32) = panel (rows of 32) @ the 32 columns of two groups. Eight rows at a time keep 16 sums of 16
// lanes in registers; each step broadcasts one row's pair (p, p + 1) against both groups' 16 pairs.
VT_AVX512_BF16 void avx512_bf16_block(float* block, const uint16_t* panel, const uint16_t* group0,
                                      const uint16_t* group1, int64_t rows, int64_t kpad) {
  constexpr int kRows = 8;
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    __m512 sum[kRows][2];
    for (int r = 0; r < kRows; ++r) sum[r][0] = sum[r][1] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kpad; p += 2) {
      const __m512bh b0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(group0 + p * 16));
      const __m512bh b1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(group1 + p * 16));
      const uint16_t* a_pairs = panel + (p / kDepth) * kDepth * kPanelRows + (r0 * kDepth) + p % kDepth;
      for (int r = 0; r < kRows; ++r) {
        int32_t pair;
        std::memcpy(&pair, a_pairs + r * kDepth, sizeof pair);
        const __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
        sum[r][0] = _mm512_dpbf16_ps(sum[r][0], a, b0);
        sum[r][1] = _mm512_dpbf16_ps(sum[r][1], a, b1);
      }
    }
    for (int r = 0; r < kRows; ++r) {
      _mm512_storeu_ps(block + (r0 + r) * kBlockCols, sum[r][0]);
      _mm512_storeu_ps(block + (r0 + r) * kBlockCols + 16, sum[r][1]);
    }
  }
}

// ---- AMX: a (16, 32) x (32, 16) tile multiply per instruction, eight tile registers of 1 KiB ----
// Tiles 0-3 hold the four (16, 16) sums of the (32, 32) block, 4-5 the panel's two 16-row halves, 6-7 the two
// column groups. The tile numbers are part of the instructions, so each wrapper takes its tile as a constant.
// Written as assembly with a memory clobber: the compiler must not move the packing stores past a tile load.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t bytes_per_row[16] = {};
  uint8_t rows[16] = {};
};

template <int Tile>
void tile_load(const void* base, int64_t stride) {
  asm volatile("tileloadd (%0,%1,1), %%tmm%c2" ::"r"(base), "r"(stride), "i"(Tile) : "memory");
}
template <int Tile>
void tile_store(void* base, int64_t stride) {
  asm volatile("tilestored %%tmm%c2, (%0,%1,1)" ::"r"(base), "r"(stride), "i"(Tile) : "memory");
}
template <int Tile>
void tile_zero() {
  asm volatile("tilezero %%tmm%c0" ::"i"(Tile));
}
template <int Sum, int A, int B>  // tile Sum += tile A @ tile B, bf16 pairs summed into float32
void tile_dot_bf16() {
  asm volatile("tdpbf16ps %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"i"(Sum), "i"(A), "i"(B));
}

void amx_configure() {
  static const TileConfig config = [] {
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
      c.bytes_per_row[t] = 64;
      c.rows[t] = 16;
    }
    return c;
  }();
  asm volatile("ldtilecfg %0" ::"m"(config));
}
void amx_release() { asm volatile("tilerelease" ::); }

// out (32, 32), rows ld_out floats apart, = panel @ the two groups' 32 columns, the sums starting from zero or,
// when `start` is given, from that row (32 floats) on every row: a tile load with stride 0 repeats one row.
void amx_block(float* out, int64_t ld_out, const float* start, const uint16_t* panel, const uint16_t* group0,
               const uint16_t* group1, int64_t kpad) {
  constexpr int64_t kRowBytes = 64, kTile = 16 * kDepth;  // a tile: 16 rows of 32 bf16
  if (start) {
    tile_load<0>(start, 0);
    tile_load<1>(start + 16, 0);
    tile_load<2>(start, 0);
    tile_load<3>(start + 16, 0);
  } else {
    tile_zero<0>();
    tile_zero<1>();
    tile_zero<2>();
    tile_zero<3>();
  }
  for (int64_t p0 = 0; p0 < kpad; p0 += kDepth) {
    const uint16_t* a = panel + p0 * kPanelRows;
    tile_load<4>(a, kRowBytes);
    tile_load<5>(a + kTile, kRowBytes);
    tile_load<6>(group0 + p0 * 16, kRowBytes);
    tile_load<7>(group1 + p0 * 16, kRowBytes);
    tile_dot_bf16<0, 4, 6>();
    tile_dot_bf16<1, 4, 7>();
    tile_dot_bf16<2, 5, 6>();
    tile_dot_bf16<3, 5, 7>();
  }
  const int64_t stride = ld_out * static_cast<int64_t>(sizeof(float));
  tile_store<0>(out, stride);
  tile_store<1>(out + 16, stride);
  tile_store<2>(out + 16 * ld_out, stride);
  tile_store<3>(out + 16 * ld_out + 16, stride);
}

// ---- the driver ----

// A 64-byte aligned scratch buffer of bf16 values per thread, grown as needed and kept between calls.
struct Scratch {
  std::vector<uint16_t> storage;
  uint16_t* get(int64_t count) {
    if (static_cast<int64_t>(storage.size()) < count + 32) storage.resize(static_cast<size_t>(count + 32));
    const auto address = reinterpret_cast<uintptr_t>(storage.data());
    return reinterpret_cast<uint16_t*>((address + 63) / 64 * 64);
  }
};

}  // namespace

int64_t l2_cache_bytes() {
  static const int64_t bytes = [] {
    const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return reported > 0 ? static_cast<int64_t>(reported) : int64_t(1) << 20;
  }();
  return bytes;
}

void gemm_bf16(Bf16Kernel kernel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
               const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
               const float* bias, const GemmEpilogue<float>& epilogue, int64_t l2_bytes) {
  if (kernel == Bf16Kernel::none || static_cast<int>(kernel) > static_cast<int>(best_bf16_kernel()))
    fail("gemm_bf16", std::string("this CPU cannot run the ") + bf16_kernel_name(kernel) + " kernel");
  if (m <= 0 || n <= 0) return;
  const int64_t kpad = round_up(std::max<int64_t>(k, 0), kDepth), npad = round_up(n, kBlockCols);
  // Every panel of op(A) passes over op(B)'s packed columns. When they fill more than 3/4 of L2 they are taken in
  // chunks of about half of it (whole blocks of 32 columns, the last one smaller), which stay in L2 while every
  // panel passes; op(A) is then packed whole up front, so that each panel is still packed once. A (2048, 2048)
  // op(B) is 8 MiB and would stream from memory for every 32 rows (one core of a Xeon with 2 MiB of L2: 673 ->
  // 1073 GFLOP/s at (1024, 2048, 2048)); chunking an op(B) that fits costs the whole-A pass for nothing.
  const int64_t packed_b_bytes = npad * kpad * 2, chunk_bytes = std::max<int64_t>(l2_bytes / 2, 1);
  const int64_t chunks =
      packed_b_bytes <= l2_bytes / 4 * 3 ? 1 : std::max<int64_t>(1, (packed_b_bytes + chunk_bytes - 1) / chunk_bytes);
  const int64_t chunk_cols = round_up((npad + chunks - 1) / chunks, kBlockCols);
  const bool a_whole = trans_a || chunks > 1;
  thread_local Scratch b_scratch, a_scratch;
  uint16_t* const packed_b = b_scratch.get(npad * kpad);
  pack_b(packed_b, trans_b, b, ldb, n, k, npad, kpad);
  // Whole, op(A)'s panels follow each other; otherwise a panel at a time, packed just before its use.
  uint16_t* const packed_a = a_scratch.get((a_whole ? round_up(m, kPanelRows) : kPanelRows) * kpad);
  if (trans_a) pack_a_transposed(packed_a, a, lda, m, k, kpad);
  else if (a_whole)
    for (int64_t i0 = 0; i0 < m; i0 += kPanelRows)
      pack_a_panel(packed_a + i0 * kpad, a, lda, i0, std::min(kPanelRows, m - i0), k, kpad);
  alignas(64) float block[kPanelRows * kBlockCols];
  if (kernel == Bf16Kernel::amx) amx_configure();
  for (int64_t chunk = 0; chunk < n; chunk += chunk_cols)
    for (int64_t i0 = 0; i0 < m; i0 += kPanelRows) {
      const int64_t rows = std::min(kPanelRows, m - i0);
      const uint16_t* panel = a_whole ? packed_a + i0 * kpad : packed_a;
      if (!a_whole) pack_a_panel(packed_a, a, lda, i0, rows, k, kpad);
      for (int64_t j0 = chunk; j0 < std::min(n, chunk + chunk_cols); j0 += kBlockCols) {
        const uint16_t *group0 = packed_b + j0 * kpad, *group1 = group0 + 16 * kpad;
        const float* block_bias = bias ? bias + j0 : nullptr;
        // A whole block of C = op(A) op(B) (+ bias) goes straight from the tiles to C, summed onto the bias,
        // saving write_block's pass (a quarter of a forward product's time): the sum then rounds in another
        // order, within the bound the tests hold the kernels to.
        if (kernel == Bf16Kernel::amx && alpha == 1 && beta == 0 && rows == kPanelRows && n - j0 >= kBlockCols) {
          amx_block(c + i0 * ldc + j0, ldc, block_bias, panel, group0, group1, kpad);
          continue;
        }
        switch (kernel) {
          case Bf16Kernel::amx: amx_block(block, kBlockCols, nullptr, panel, group0, group1, kpad); break;
          case Bf16Kernel::avx512_bf16: avx512_bf16_block(block, panel, group0, group1, rows, kpad); break;
          case Bf16Kernel::none: break;
        }
        write_block(c + i0 * ldc + j0, ldc, block, rows, std::min(kBlockCols, n - j0), alpha, beta, block_bias);
      }
      // The panel's rows of the chunk, just written (32 x up to half of L2), in cache.
      epilogue(c + i0 * ldc + chunk, rows, std::min(n, chunk + chunk_cols) - chunk);
    }
  if (kernel == Bf16Kernel::amx) amx_release();
}

// ---- what this CPU runs ----

namespace {
// CPUID leaf 7 announces the instructions; XCR0 says whether the OS saves the registers they use (AVX-512's
// and AMX's); and Linux hands out AMX's 8 KiB of tile state only to a process that asks for it.
Bf16Kernel detect_bf16_kernel() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE)) return Bf16Kernel::none;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return Bf16Kernel::none;
  const bool avx512 = (ebx & bit_AVX512F) && (ebx & bit_AVX512BW) && (ebx & bit_AVX512VL);
  const bool amx = (edx & (1u << 22)) && (edx & (1u << 24));  // AMX-BF16, AMX-TILE
  if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return Bf16Kernel::none;
  const bool avx512_bf16 = eax & (1u << 5);
  uint32_t xcr0_low, xcr0_high;
  asm volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
  const bool os_avx512 = (xcr0_low & 0xe6) == 0xe6;                 // SSE, AVX, opmask, upper ZMM, ZMM 16-31
  const bool os_amx = (xcr0_low & (3u << 17)) == (3u << 17);        // tile configuration, tile data
  if (!avx512 || !avx512_bf16 || !os_avx512) return Bf16Kernel::none;
  constexpr long kArchRequestPermission = 0x1023, kTileData = 18;  // ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
  if (amx && os_amx && syscall(SYS_arch_prctl, kArchRequestPermission, kTileData) == 0) return Bf16Kernel::amx;
  return Bf16Kernel::avx512_bf16;
}

}  // namespace

Bf16Kernel best_bf16_kernel() {
  static const Bf16Kernel kernel = detect_bf16_kernel();
  return kernel;
}

const char* bf16_kernel_name(Bf16Kernel kernel) {
  switch (kernel) {
    case Bf16Kernel::none: return "none";
    case Bf16Kernel::avx512_bf16: return "AVX512-BF16";
    case Bf16Kernel::amx: return "AMX";
  }
  return "?";
}

}  // namespace vt
