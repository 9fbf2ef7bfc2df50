// GEMM on OpenBLAS's CBLAS interface, cut into tiles that our threads run, and the settings OpenBLAS and
// libgomp read when they load.
#include "autograd/blas.h"

#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "autograd/gemm_bf16.h"
#include "autograd/gemm_f32.h"
#include "autograd/parallel.h"
#include "autograd/tensor.h"

extern "C" char* openblas_get_corename(void);

namespace vt {

// OpenBLAS 0.3.21's OpenMP build runs a call on omp_get_max_threads() threads (it re-reads the count on every
// call) unless the call is made inside a parallel region. Our tiles are the threads, so a call from outside one
// lowers this thread's OpenMP count to 1 around it: every library call runs on the thread that makes it.
template <class Call>
static void on_this_thread(const Call& call) {
#ifdef _OPENMP
  if (!omp_in_parallel()) {
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    call();
    omp_set_num_threads(threads);
    return;
  }
#endif
  call();
}

static std::atomic<MatmulPrecision> g_cpu_precision{MatmulPrecision::fp32};

void set_cpu_matmul_precision(MatmulPrecision precision) {
  const char* op = "set_matmul_precision";
  if (precision == MatmulPrecision::tf32) fail(op, "TF32 is a mode of the GPU's matmuls: it needs --device cuda");
  if (precision == MatmulPrecision::bf16 && best_bf16_kernel() == Bf16Kernel::none)
    fail(op, "bf16 matmuls on the CPU need AVX512-BF16 or AMX (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 "
             "and later), and this CPU has neither: train in float32 (no --amp) or on a GPU (--device cuda)");
  g_cpu_precision.store(precision);
}

MatmulPrecision cpu_matmul_precision() { return g_cpu_precision.load(); }

// C (rows, cols) = beta C + bias, the row vector `bias` (cols) on every row; with beta = 0, C is not read. What a
// bias needs before a library call that then adds alpha op(A) op(B) onto C (beta 1): C's tile is still in cache.
template <class T>
static void add_bias_rows(T* c, int64_t ldc, int64_t rows, int64_t cols, T beta, const T* bias) {
  for (int64_t i = 0; i < rows; ++i) {
    T* row = c + i * ldc;
    if (beta == T(0)) std::copy_n(bias, cols, row);
    else
      for (int64_t j = 0; j < cols; ++j) row[j] = beta * row[j] + bias[j];
  }
}

// The library's call for one tile, on the calling thread; the epilogue then runs over the tile.
template <class T>
static void library_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                         const T* b, int64_t ldb, T beta, T* c, int64_t ldc, const T* bias,
                         const GemmEpilogue<T>& epilogue) {
  if (bias) {
    add_bias_rows(c, ldc, m, n, beta, bias);
    beta = 1;
  }
  const CBLAS_TRANSPOSE op_a = trans_a ? CblasTrans : CblasNoTrans, op_b = trans_b ? CblasTrans : CblasNoTrans;
  on_this_thread([&] {
    if constexpr (std::is_same_v<T, float>)
      cblas_sgemm(CblasRowMajor, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
      cblas_dgemm(CblasRowMajor, op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  });
  epilogue(c, m, n);
}

// One tile's product: this CPU's bf16 kernel under --amp bf16 (which adds the bias and runs the epilogue as it
// writes C), else the library's.
template <class T>
static void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                      const T* b, int64_t ldb, T beta, T* c, int64_t ldc, const T* bias,
                      const GemmEpilogue<T>& epilogue) {
  if constexpr (std::is_same_v<T, float>) {
    if (g_cpu_precision.load(std::memory_order_relaxed) == MatmulPrecision::bf16) {
      gemm_bf16(best_bf16_kernel(), trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, epilogue);
      return;
    }
  }
  library_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, epilogue);
}

GemmTiling gemm_tiling(int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b) {
  constexpr int64_t kSkinnyTile = 256, kSkinnyParts = 4;
  // The rows kind keeps op(B), padded to whole 8-float vectors, within 16 KiB (half of L1): beyond that its
  // loads spill to L2 and OpenBLAS's blocking wins (a (8320, 256) @ (256, 64) product ran slower here).
  const int64_t padded_width = (n + 7) / 8 * 8;
  if (!trans_a && m >= kSkinnyLong && n >= 1 && n <= kSkinnyWidth && k * padded_width * 4 <= kSkinnyPacked)
    return {GemmTiling::skinny_rows, kSkinnyTile, (m + kSkinnyTile - 1) / kSkinnyTile};
  if (trans_a && !trans_b && k >= kSkinnyLong && m <= kSkinnyWidth && n <= kSkinnyWidth)
    return {GemmTiling::skinny_depth, (k + kSkinnyParts - 1) / kSkinnyParts, kSkinnyParts};
  // A tile of rows (or columns) repacks the whole other operand, so it should hold kTileMacs multiply-adds (~50
  // us on one core) and, to keep that repacking small, kLongTile rows (over a small ViT's GEMMs, 1,024-row tiles
  // took 8% less time than 256-row ones); or, when that leaves fewer than four tiles, up to four tiles of
  // kShortTile rows. Four tiles or more come in a multiple of four, of one size (to 16 rows), so that 1, 2 or 4
  // threads get equal shares.
  constexpr int64_t kTileMacs = int64_t(1) << 21, kLongTile = 1024, kShortTile = 256, kDepthParts = 4,
                    kMinDepthSplit = 1024;
  auto tiles = [&](GemmTiling::Kind kind, int64_t length, int64_t other) {
    const int64_t by_macs = kTileMacs / std::max<int64_t>(other, 1);
    int64_t count = length / std::max(kLongTile, by_macs);
    if (count < 4) {
      const int64_t shortest = std::max(kShortTile, by_macs);
      count = std::min<int64_t>(4, (length + shortest - 1) / shortest);
    }
    if (count >= 4) count -= count % 4;
    count = std::max<int64_t>(1, count);
    const int64_t size = std::max<int64_t>(16, ((length + count - 1) / count + 15) / 16 * 16);
    return GemmTiling{kind, size, (length + size - 1) / size};
  };
  const GemmTiling by_rows = tiles(GemmTiling::rows, m, n * k), by_cols = tiles(GemmTiling::cols, n, m * k);
  const GemmTiling& wider = by_rows.count >= by_cols.count ? by_rows : by_cols;
  if (wider.count >= kDepthParts) return wider;
  // Few rows and columns but a long inner dimension (the weight gradient of a linear layer, dw = dy^T x over
  // every token): four partial products over slices of k, added in a fixed order. m and n are below four
  // tiles here (m n < 2^20, or < 2^23 / k for tiles above 256), so the three partials held meanwhile stay small.
  if (k >= kMinDepthSplit) return {GemmTiling::depth, (k + kDepthParts - 1) / kDepthParts, kDepthParts};
  if (wider.count >= 2) return wider;
  return {GemmTiling::whole, 0, 1};
}

// ---- skinny products ----
// TNT's pixel-level linears multiply 131,072 rows by weights of 12 to 48 features. OpenBLAS copies ("packs")
// every operand into its own layout before it multiplies, and with a depth of 12 that copy, and zeroing C for
// beta = 0, cost more than the 12 multiply-adds per output: it ran them at 10-25 GFLOP/s on a 2-core Zen 3
// whose peak is 155. Here the small operand is laid out once in L1, zero-padded to whole vectors, and the long
// one is read straight from memory, once. Each output is summed in a fixed order that depends on the shape
// alone, so the result is the same on any number of threads.

// 8 lanes of T: one AVX register of floats (two SSE ones, or half an AVX-512 one); the compiler maps the
// arithmetic on it to the widest instructions -march allows. Doubles take two registers; they only serve
// gradient checks.
template <class T>
struct Lanes8 {
  typedef T type __attribute__((vector_size(8 * sizeof(T))));
};
constexpr int64_t kLanes = 8;

// Writes c[j] = alpha * sum[j] + beta * c[j] (+ bias[j]) for j < n from nv vectors of sums; with beta = 0, C is
// not read (BLAS's rule: C may hold NaN).
template <class T, int NV>
static void store_row(T* c, const typename Lanes8<T>::type (&sum)[NV], int64_t n, T alpha, T beta, const T* bias) {
  using V = typename Lanes8<T>::type;
  for (int v = 0; v < NV; ++v) {
    const int64_t j = v * kLanes;
    V y = alpha * sum[v];
    if (j + kLanes <= n) {
      if (beta != T(0)) {
        V old;
        std::memcpy(&old, c + j, sizeof old);
        y += beta * old;
      }
      if (bias) {
        V b;
        std::memcpy(&b, bias + j, sizeof b);
        y += b;
      }
      std::memcpy(c + j, &y, sizeof y);
    } else {
      for (int64_t t = 0; j + t < n; ++t)
        c[j + t] = (beta == T(0) ? y[t] : y[t] + beta * c[j + t]) + (bias ? bias[j + t] : T(0));
    }
  }
}

// Calls f.template operator()<NV>() with NV = nv (1..8), the number of 8-lane vectors a row of C needs, so that
// each kernel's sums are a register array of a size known at compile time.
template <class F>
static void with_vector_count(int64_t nv, const F& f) {
  switch (nv) {
    case 1: return f.template operator()<1>();
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    case 4: return f.template operator()<4>();
    case 5: return f.template operator()<5>();
    case 6: return f.template operator()<6>();
    case 7: return f.template operator()<7>();
    default: return f.template operator()<8>();
  }
}

// Rows per block for NV vectors of sums per row: R x NV sums, NV loads of the packed operand and a broadcast
// of the other fit in AVX2's 16 registers.
constexpr int rows_per_block(int nv) { return nv == 1 ? 6 : nv == 2 ? 4 : nv == 3 ? 3 : nv <= 5 ? 2 : 1; }

// C rows [0, rows) (each n <= 8 NV wide) = alpha * A rows (each k long) @ packed + beta C, where packed is
// op(B) as (k, 8 NV), zero-padded. R rows at a time share each load of a packed row; their R x NV sums stay
// in registers.
template <class T, int NV, int R = rows_per_block(NV)>
static void skinny_rows_tile(T* c, int64_t ldc, const T* a, int64_t lda, const T* packed, int64_t rows, int64_t n,
                             int64_t k, T alpha, T beta, const T* bias) {
  using V = typename Lanes8<T>::type;
  auto block = [&]<int Rows>(int64_t r0) {
    V sum[Rows][NV] = {};
    for (int64_t p = 0; p < k; ++p) {
      const V* b_row = reinterpret_cast<const V*>(packed + p * NV * kLanes);
      for (int r = 0; r < Rows; ++r) {
        const T x = a[(r0 + r) * lda + p];
        for (int v = 0; v < NV; ++v) sum[r][v] += x * b_row[v];
      }
    }
    for (int r = 0; r < Rows; ++r) store_row<T, NV>(c + (r0 + r) * ldc, sum[r], n, alpha, beta, bias);
  };
  int64_t r0 = 0;
  for (; r0 + R <= rows; r0 += R) block.template operator()<R>(r0);
  for (; r0 < rows; ++r0) block.template operator()<1>(r0);
}

// C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C with A's rows contiguous, n <= kSkinnyWidth and
// op(B) padded within kSkinnyPacked bytes of floats.
template <class T>
static void skinny_rows_gemm(bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                             const T* b, int64_t ldb, T beta, T* c, int64_t ldc, const T* bias,
                             const GemmEpilogue<T>& epilogue, int64_t tile) {
  const int64_t nv = (n + kLanes - 1) / kLanes;
  // op(B) as (k, 8 nv), zero-padded: at most kSkinnyPacked bytes of floats, 9 KiB for TNT's 7x7 pixel
  // convolution. The caller's buffer, kept between calls (the workers get its address), aligned for whole vectors.
  thread_local std::vector<typename Lanes8<T>::type> buffer;
  buffer.assign(static_cast<size_t>(k * nv), typename Lanes8<T>::type{});
  T* const packed = reinterpret_cast<T*>(buffer.data());
  for (int64_t p = 0; p < k; ++p)
    for (int64_t j = 0; j < n; ++j) packed[p * nv * kLanes + j] = trans_b ? b[j * ldb + p] : b[p * ldb + j];
  // Tile by tile, so that the row blocks start at the same rows whatever the thread count.
  auto run_tile = [&](int64_t t) {
    const int64_t r0 = t * tile, rows = std::min(m, r0 + tile) - r0;
    T* c_tile = c + r0 * ldc;
    const T* a_tile = a + r0 * lda;
    with_vector_count(nv, [&]<int NV>() {
      skinny_rows_tile<T, NV>(c_tile, ldc, a_tile, lda, packed, rows, n, k, alpha, beta, bias);
    });
    epilogue(c_tile, rows, n);  // the tile's 256 rows are still in L2
  };
  parallel_for(0, (m + tile - 1) / tile, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) run_tile(t);
  });
}

// total (m, n) += A^T B over `depth` rows of A (stored (depth, m)) and B (stored (depth, n)), in chunks of
// kChunk rows: each chunk's products are summed in registers in T (at most kChunk terms), then added to the
// double total, so that a sum over 131,072 rows loses no more than one over 64 does.
template <class T, int NV, int R = rows_per_block(NV)>
static void skinny_depth_part(double* total, const T* a, int64_t lda, const T* b, int64_t ldb, int64_t depth,
                              int64_t m, int64_t n) {
  using V = typename Lanes8<T>::type;
  constexpr int64_t kChunk = 64;
  alignas(64) T packed[kChunk * NV * kLanes] = {};  // a chunk of B's rows, (kChunk, 8 NV)
  for (int64_t p0 = 0; p0 < depth; p0 += kChunk) {
    const int64_t rows = std::min(kChunk, depth - p0);
    for (int64_t p = 0; p < rows; ++p) std::memcpy(packed + p * NV * kLanes, b + (p0 + p) * ldb, n * sizeof(T));
    auto block = [&]<int Rows>(int64_t i0) {
      V sum[Rows][NV] = {};
      for (int64_t p = 0; p < rows; ++p) {
        const V* b_row = reinterpret_cast<const V*>(packed + p * NV * kLanes);
        for (int r = 0; r < Rows; ++r) {
          const T x = a[(p0 + p) * lda + i0 + r];
          for (int v = 0; v < NV; ++v) sum[r][v] += x * b_row[v];
        }
      }
      for (int r = 0; r < Rows; ++r)
        for (int64_t j = 0; j < n; ++j) total[(i0 + r) * n + j] += sum[r][j / kLanes][j % kLanes];
    };
    int64_t i0 = 0;
    for (; i0 + R <= m; i0 += R) block.template operator()<R>(i0);
    for (; i0 < m; ++i0) block.template operator()<1>(i0);
  }
}

// C (m, n) = alpha * A^T B + beta * C, A stored (k, m) and B (k, n), m and n <= kSkinnyWidth: `parts` fixed
// slices of k summed in double by the threads, then added in order.
template <class T>
static void skinny_depth_gemm(int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
                              int64_t ldb, T beta, T* c, int64_t ldc, const T* bias, int64_t part_size, int64_t parts) {
  const int64_t nv = (n + kLanes - 1) / kLanes, mn = m * n;
  // The caller's buffer, kept between calls; the workers get its address, not their own thread_local.
  thread_local std::vector<double> buffer;
  buffer.assign(static_cast<size_t>(parts * mn), 0.0);
  double* const totals = buffer.data();  // (parts, m, n)
  parallel_for(0, parts, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t part = lo; part < hi; ++part) {
      const int64_t p0 = part * part_size, depth = std::min(k, p0 + part_size) - p0;
      double* total = totals + part * mn;
      const T *a_part = a + p0 * lda, *b_part = b + p0 * ldb;
      with_vector_count(nv, [&]<int NV>() { skinny_depth_part<T, NV>(total, a_part, lda, b_part, ldb, depth, m, n); });
    }
  });
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t part = 0; part < parts; ++part) sum += totals[part * mn + i * n + j];
      T& out = c[i * ldc + j];
      out = (beta == T(0) ? static_cast<T>(alpha * sum) : static_cast<T>(alpha * sum + beta * out)) + (bias ? bias[j] : T(0));
    }
}

// One tile's product on the calling thread: our float32 kernel when `own_kernel` (gemm_f32.h; the tile's columns
// and depths of op(B) packed here), else the library or the bf16 kernel. float64 always takes the library.
// With `a_sums`, also add_row_sums over the tile's op(A): as the kernel reads it, or in a pass after the library.
static void tile_gemm(bool own_kernel, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                      const float* bias, const GemmEpilogue<float>& epilogue, double* a_sums = nullptr) {
  if (!own_kernel) {
    blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, epilogue);
    if (a_sums) add_row_sums(a_sums, a, lda, trans_a, m, k);
    return;
  }
  thread_local PackedB packed;
  gemm_f32_packed(c, ldc, a, lda, trans_a, packed.pack(b, ldb, trans_b, n, k), m, n, k, alpha, beta, bias, epilogue,
                  a_sums);
}

static void tile_gemm(bool, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                      int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc,
                      const double* bias, const GemmEpilogue<double>& epilogue, double* a_sums = nullptr) {
  blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, epilogue);
  if (a_sums) add_row_sums(a_sums, a, lda, trans_a, m, k);
}

// a_sums (m) = the slices' sums added in slice order, partial (slices, m) in double: the result depends on how
// k was cut (by the shape), not on which thread summed which slice.
template <class T>
static void add_slices_in_order(T* a_sums, const double* partial, int64_t slices, int64_t m) {
  for (int64_t i = 0; i < m; ++i) {
    double sum = 0;
    for (int64_t s = 0; s < slices; ++s) sum += partial[s * m + i];
    a_sums[i] = static_cast<T>(sum);
  }
}

// a_sums (m) = the sums over p of op(A)[i, p], in a pass of their own over A: the tilings other than the slices of
// k, whose products do not leave A in cache in an order that suits (TNT's pixel weight gradients, small layers).
// Blocks of 256 rows of op(A) by up to four slices of k (at least kSkinnyLong values each), so that a few rows
// over many values (48 pixel features over 131,072 tokens) still split across threads; each slice's sums are
// kept apart and added in order, so the result depends on the shape alone.
template <class T>
static void row_sums(T* a_sums, const T* a, int64_t lda, bool trans_a, int64_t m, int64_t k) {
  constexpr int64_t kBlock = 256, kMaxSlices = 4;
  const int64_t blocks = (m + kBlock - 1) / kBlock, slices = std::clamp<int64_t>(k / kSkinnyLong, 1, kMaxSlices);
  const int64_t slice = (k + slices - 1) / slices;
  thread_local std::vector<double> buffer;  // (slices, m), the caller's, shared with the workers
  buffer.assign(static_cast<size_t>(slices * m), 0.0);
  double* const partial = buffer.data();
  parallel_for(0, blocks * slices, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t i0 = t / slices * kBlock, rows = std::min(m, i0 + kBlock) - i0;
      const int64_t p0 = t % slices * slice, depth = std::max<int64_t>(0, std::min(k, p0 + slice) - p0);
      add_row_sums(partial + t % slices * m + i0, trans_a ? a + p0 * lda + i0 : a + i0 * lda + p0, lda, trans_a, rows,
                   depth);
    }
  });
  add_slices_in_order(a_sums, partial, slices, m);
}

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc, const T* bias, const GemmEpilogue<T>& epilogue, T* a_sums) {
  const GemmTiling tiling = gemm_tiling(m, n, k, trans_a, trans_b);
  if (a_sums && tiling.kind != GemmTiling::depth) {
    gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, epilogue);
    return row_sums(a_sums, a, lda, trans_a, m, k);
  }
  // float32 tiles run on our kernel on builds for AVX-512, except a product small enough to run whole (the
  // classifier's head; attention's per-head products where the head dim is not a multiple of 16), which OpenBLAS
  // ran faster: it was measured at attention's 65 x 64 @ 64 x 65, before those heads had kernels of their own
  // (ops/attention.cpp). Such a product stays float32 under --amp bf16 too: rounding its operands into the bf16
  // kernel's panels took longer than the kernel saved (vit_cifar's bf16 inference on a Zen 4, 513 -> 559
  // images/s, medians of 8 runs in turn).
  const bool own_kernel = std::is_same_v<T, float> && kGemmF32Preferred && tiling.kind != GemmTiling::whole &&
                          g_cpu_precision.load(std::memory_order_relaxed) == MatmulPrecision::fp32;
  switch (tiling.kind) {
    case GemmTiling::skinny_rows:
      skinny_rows_gemm(trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, epilogue, tiling.size);
      return;
    case GemmTiling::skinny_depth:
      skinny_depth_gemm(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, tiling.size, tiling.count);
      epilogue(c, m, n);
      return;
    case GemmTiling::whole:  // on the library in float32, under --amp bf16 too (see above)
      library_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, epilogue);
      return;
    case GemmTiling::rows:  // C rows [r0, r1) = op(A) rows [r0, r1) @ op(B)
      if constexpr (std::is_same_v<T, float>) {
        if (own_kernel) {
          // op(B) packed once by the caller and shared by the tiles; OpenBLAS packs it again for every tile (8
          // times for vit_cifar's (8320, 192) @ (192, 576)). The workers read the caller's packing.
          thread_local PackedB shared;
          const PanelsB packed = shared.pack(b, ldb, trans_b, n, k);
          parallel_for(0, tiling.count, 1, [&](int64_t lo, int64_t hi) {
            for (int64_t t = lo; t < hi; ++t) {
              const int64_t r0 = t * tiling.size, rows = std::min(m, r0 + tiling.size) - r0;
              gemm_f32_packed(c + r0 * ldc, ldc, trans_a ? a + r0 : a + r0 * lda, lda, trans_a, packed, rows, n, k,
                              alpha, beta, bias, epilogue);
            }
          });
          return;
        }
      }
      parallel_for(0, tiling.count, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t t = lo; t < hi; ++t) {
          const int64_t r0 = t * tiling.size, rows = std::min(m, r0 + tiling.size) - r0;
          blas_gemm(trans_a, trans_b, rows, n, k, alpha, trans_a ? a + r0 : a + r0 * lda, lda, b, ldb, beta,
                    c + r0 * ldc, ldc, bias, epilogue);
        }
      });
      return;
    case GemmTiling::cols:  // C columns [c0, c1) = op(A) @ op(B) columns [c0, c1)
      parallel_for(0, tiling.count, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t t = lo; t < hi; ++t) {
          const int64_t c0 = t * tiling.size, cols = std::min(n, c0 + tiling.size) - c0;
          tile_gemm(own_kernel, trans_a, trans_b, m, cols, k, alpha, a, lda, trans_b ? b + c0 * ldb : b + c0, ldb,
                    beta, c + c0, ldc, bias ? bias + c0 : nullptr, epilogue);
        }
      });
      return;
    case GemmTiling::depth: {
      // C = beta C + bias + alpha op(A)[:, slice 0] op(B)[slice 0, :], then + partial 1, + partial 2, + partial 3.
      // The caller's buffer, kept between calls; the workers get its address, not their own thread_local.
      thread_local std::vector<T> buffer;
      thread_local std::vector<double> sums_buffer;  // (count, m): each slice's sums of op(A)'s rows
      const int64_t mn = m * n;
      buffer.resize(static_cast<size_t>((tiling.count - 1) * mn));
      T* const partials = buffer.data();
      if (a_sums) sums_buffer.assign(static_cast<size_t>(tiling.count * m), 0.0);
      double* const slice_sums = a_sums ? sums_buffer.data() : nullptr;
      parallel_for(0, tiling.count, 1, [&](int64_t lo, int64_t hi) {
        for (int64_t part = lo; part < hi; ++part) {
          const int64_t k0 = part * tiling.size, depth = std::min(k, k0 + tiling.size) - k0;
          const T* a_part = trans_a ? a + k0 * lda : a + k0;
          const T* b_part = trans_b ? b + k0 : b + k0 * ldb;
          double* const sums = slice_sums ? slice_sums + part * m : nullptr;
          if (part == 0)
            tile_gemm(own_kernel, trans_a, trans_b, m, n, depth, alpha, a_part, lda, b_part, ldb, beta, c, ldc, bias,
                      {}, sums);
          else
            tile_gemm(own_kernel, trans_a, trans_b, m, n, depth, alpha, a_part, lda, b_part, ldb, T(0),
                      partials + (part - 1) * mn, n, static_cast<const T*>(nullptr), {}, sums);
        }
      });
      if (a_sums) add_slices_in_order(a_sums, slice_sums, tiling.count, m);
      parallel_for(0, m, std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1)), [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i)
          for (int64_t part = 1; part < tiling.count; ++part)
            for (int64_t j = 0; j < n; ++j) c[i * ldc + j] += partials[(part - 1) * mn + i * n + j];
      });
      epilogue(c, m, n);  // C's values are final only now
      return;
    }
  }
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t, const float*, const GemmEpilogue<float>&, float*);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t, const double*, const GemmEpilogue<double>&, double*);

std::string blas_core_name() { return openblas_get_corename(); }

// Kernel families at least as fast as the best one each instruction-set level allows.
static bool is_avx512_core(const std::string& core) {
  return core == "SkylakeX" || core == "Cooperlake" || core == "CooperLake" || core == "SapphireRapids";
}
static bool is_avx2_core(const std::string& core) {
  return is_avx512_core(core) || core == "Haswell" || core == "Zen";
}

const char* better_blas_core(const std::string& detected, const CpuFeatures& cpu) {
  if (cpu.avx512) return is_avx512_core(detected) ? nullptr : "SkylakeX";
  if (cpu.avx2_fma) return is_avx2_core(detected) ? nullptr : (cpu.amd ? "Zen" : "Haswell");
  return nullptr;
}

CpuFeatures this_cpu() {
  __builtin_cpu_init();
  CpuFeatures cpu;
  cpu.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  cpu.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  cpu.amd = __builtin_cpu_is("amd");
  return cpu;
}

std::vector<std::pair<std::string, std::string>> library_settings(const std::function<const char*(const char*)>& lookup,
                                                                  const std::string& blas_core, const CpuFeatures& cpu) {
  std::vector<std::pair<std::string, std::string>> settings;
  if (!lookup("OPENBLAS_CORETYPE"))
    if (const char* better = better_blas_core(blas_core, cpu)) settings.emplace_back("OPENBLAS_CORETYPE", better);
  if (!lookup("GOMP_SPINCOUNT") && !lookup("OMP_WAIT_POLICY")) settings.emplace_back("GOMP_SPINCOUNT", "1000");
  return settings;
}

// Whether libgomp reads `text` as OMP_NUM_THREADS: comma-separated counts above 0, with spaces around them
// (strtoul's syntax, as libgomp parses them).
static bool libgomp_reads_thread_counts(const char* text) {
  for (const char* p = text;; ++p) {  // at the start, or past a comma
    while (std::isspace(static_cast<unsigned char>(*p))) ++p;
    char* end = nullptr;
    errno = 0;
    const unsigned long count = std::strtoul(p, &end, 10);
    if (end == p || errno != 0 || static_cast<long>(count) <= 0) return false;
    for (p = end; std::isspace(static_cast<unsigned char>(*p));) ++p;
    if (*p == '\0') return true;
    if (*p != ',') return false;
  }
}

void restart_with_library_settings(int argc, char** argv) {
  (void)argc;
  const std::string core = openblas_get_corename();
  const auto settings = library_settings([](const char* name) { return std::getenv(name); }, core, this_cpu());
  if (settings.empty()) return;
  // libgomp has warned of an OMP_NUM_THREADS it cannot read, and ignores it; the restarted vt warned again.
  if (const char* threads = std::getenv("OMP_NUM_THREADS"); threads && !libgomp_reads_thread_counts(threads))
    unsetenv("OMP_NUM_THREADS");
  for (const auto& [name, value] : settings) {
    if (name == "OPENBLAS_CORETYPE")
      std::fprintf(stderr, "vt: OpenBLAS picked its '%s' kernels for this CPU; restarting with OPENBLAS_CORETYPE=%s\n",
                   core.c_str(), value.c_str());
    setenv(name.c_str(), value.c_str(), 1);
  }
  execv("/proc/self/exe", argv);
  std::fprintf(stderr, "vt: restart failed (%s); continuing with the '%s' kernels and libgomp's default spinning\n",
               std::strerror(errno), core.c_str());
}

}  // namespace vt
