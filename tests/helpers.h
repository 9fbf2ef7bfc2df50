// Test helpers: value comparison and the float64 finite-difference gradient check.
// gradcheck compares backward against central differences of L = sum(f(leaves) * G) with G a fixed random
// upstream gradient: a plain sum(y) would hide bugs whose gradient terms cancel (softmax, layer_norm).
#pragma once

#include <doctest/doctest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "autograd/blas.h"
#include "autograd/parallel.h"
#include "ops/ops.h"

namespace vt::testing {

// A fresh directory under /tmp, unique per process and per use, removed with everything in it at the end.
struct TemporaryDirectory {
  explicit TemporaryDirectory(const std::string& name) {
    static std::atomic<int> uses{0};
    path = std::filesystem::temp_directory_path() /
           ("vt_test_" + name + "_" + std::to_string(::getpid()) + "_" + std::to_string(uses++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TemporaryDirectory() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> listing() const {  // sorted file names
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(path)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  std::filesystem::path path;
};

// A whole file's bytes (empty when it cannot be opened: the caller's checks then fail on the contents).
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Every element of t within atol + rtol * |expected| of the expected values (row-major order).
inline void expect_close(const Tensor& t, const std::vector<double>& expected, double atol = 1e-6,
                         double rtol = 0.0) {
  const std::vector<double> got = t.to_vector();
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << " of " << t.str() << ": got " << got[i] << ", expected " << expected[i]);
    CHECK(std::abs(got[i] - expected[i]) <= atol + rtol * std::abs(expected[i]));
  }
}

inline void expect_close(const Tensor& a, const Tensor& b, double atol = 1e-6, double rtol = 0.0) {
  REQUIRE(a.shape() == b.shape());
  expect_close(a, b.to_vector(), atol, rtol);
}

// Random float64 leaf of the given shape (seeded per call site by `seed`).
inline Tensor random_leaf(const Shape& shape, uint64_t seed, double scale = 1.0) {
  Generator generator(seed);
  Tensor t = randn(shape, DType::f64, generator);
  if (scale != 1.0) {
    NoGradGuard no_grad;
    t = mul(t, scale);
  }
  return t.requires_grad_();
}

using LeafFunction = std::function<Tensor(const std::vector<Tensor>&)>;

// Checks d/d(leaf) of sum(f(leaves) * G) for every element of every leaf that requires grad.
inline void gradcheck(const LeafFunction& f, const std::vector<Tensor>& leaves, double eps = 1e-6,
                      double atol = 1e-7, double rtol = 1e-5) {
  for (const Tensor& leaf : leaves) {
    REQUIRE(leaf.dtype() == DType::f64);
    REQUIRE(leaf.is_contiguous());
    leaf.zero_grad();
  }
  Tensor y = f(leaves);
  REQUIRE(y.dtype() == DType::f64);
  Generator generator(1234);
  const Tensor upstream = randn(y.shape(), DType::f64, generator);
  y.backward(upstream);

  auto loss = [&] {
    NoGradGuard no_grad;
    return sum(mul(f(leaves), upstream)).item();
  };
  for (size_t l = 0; l < leaves.size(); ++l) {
    const Tensor& leaf = leaves[l];
    if (!leaf.requires_grad()) continue;
    const Tensor grad = leaf.grad();
    REQUIRE_MESSAGE(grad.defined(), "leaf " << l << " " << leaf.str() << " got no gradient");
    REQUIRE(grad.shape() == leaf.shape());
    const std::vector<double> analytic = grad.to_vector();
    double* data = leaf.data<double>();
    for (int64_t i = 0; i < leaf.numel(); ++i) {
      const double saved = data[i];
      data[i] = saved + eps;
      const double up = loss();
      data[i] = saved - eps;
      const double down = loss();
      data[i] = saved;
      const double numeric = (up - down) / (2 * eps);
      INFO("leaf " << l << " " << leaf.str() << " element " << i << ": backward " << analytic[i]
                   << ", finite difference " << numeric);
      CHECK(std::abs(analytic[i] - numeric) <= atol + rtol * std::abs(numeric));
    }
  }
}

// `count` floats that end exactly where an unreadable, unwritable page begins: a kernel reading or writing one
// element past the end faults, which the padding of a larger buffer (or ASan, blind to masked vector loads and
// to AMX's tile loads) would not show.
class GuardedFloats {
 public:
  explicit GuardedFloats(int64_t count) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t bytes = (static_cast<size_t>(count) * sizeof(float) + page - 1) / page * page;
    size_ = bytes + page;
    base_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(base_ != MAP_FAILED);
    REQUIRE(mprotect(static_cast<char*>(base_) + bytes, page, PROT_NONE) == 0);
    data_ = reinterpret_cast<float*>(static_cast<char*>(base_) + bytes) - count;
  }
  ~GuardedFloats() { munmap(base_, size_); }
  GuardedFloats(const GuardedFloats&) = delete;
  GuardedFloats& operator=(const GuardedFloats&) = delete;
  float* data() const { return data_; }

 private:
  void* base_ = nullptr;
  size_t size_ = 0;
  float* data_ = nullptr;
};

// A GEMM epilogue for tests: negates each value it finishes (exact, so any bound on C still holds) and counts
// how often each element of C (m, n), rows ldc apart, was finished; each must be exactly once. Blocks finished
// on different threads are disjoint, so their counts are too.
template <class T>
class CountingEpilogue {
 public:
  CountingEpilogue(T* c, int64_t m, int64_t n, int64_t ldc) : c_(c), n_(n), ldc_(ldc), visits_(m * n, 0) {}
  GemmEpilogue<T> epilogue() { return {&finish, this}; }
  bool each_once() const {
    return std::all_of(visits_.begin(), visits_.end(), [](int v) { return v == 1; });
  }

 private:
  static void finish(T* block, int64_t rows, int64_t cols, void* context) {
    auto* self = static_cast<CountingEpilogue*>(context);
    const int64_t offset = block - self->c_, row0 = offset / self->ldc_, col0 = offset % self->ldc_;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) {
        block[r * self->ldc_ + j] = -block[r * self->ldc_ + j];
        ++self->visits_[(row0 + r) * self->n_ + col0 + j];
      }
  }
  T* c_;
  int64_t n_, ldc_;
  std::vector<int> visits_;
};

// f() run with the kernels and the GEMM tiles on `threads` threads; the thread count is restored afterwards, also
// when f throws. For tests that results do not depend on the thread count.
template <class F>
auto with_threads(int threads, F f) {
  struct Restore {
    int threads = num_threads();
    ~Restore() { set_num_threads(threads); }
  } restore;
  set_num_threads(threads);
  return f();
}

// f() run with the CPU's float32 GEMMs in `precision` (set_cpu_matmul_precision); float32 is put back
// afterwards, also when f throws.
template <class F>
auto with_cpu_matmul_precision(MatmulPrecision precision, F f) {
  struct Restore {
    ~Restore() { set_cpu_matmul_precision(MatmulPrecision::fp32); }
  } restore;
  set_cpu_matmul_precision(precision);
  return f();
}

}  // namespace vt::testing
