// The `vt` command line. Conventions: `vt COMMAND [--flag value ...]`; every command prints plain text
// (one fact per line, so scripts can grep it) and exits non-zero with a one-line error on misuse.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/blas.h"
#include "autograd/parallel.h"
#include "ops/ops.h"

namespace {

using namespace vt;

void print_usage() {
  std::puts(
      "usage: vt COMMAND [options]\n"
      "\n"
      "commands:\n"
      "  demo         build a small graph, run backward and print the gradients\n"
      "  bench-gemm   measure float32 GEMM GFLOP/s for a few shapes\n"
      "\n"
      "options for every command:\n"
      "  --threads T  threads for the kernels and OpenBLAS (default: all cores)");
}

// A tiny two-layer network on fixed inputs: y = sum(w2 . gelu(w1 x + b1)), with every gradient printed.
int run_demo() {
  manual_seed(0);
  Tensor x = Tensor::from_vector({1.0, -2.0, 0.5, 3.0, 0.0, -1.0}, {2, 3});  // (B=2, in=3)
  Tensor w1 = randn({4, 3}).requires_grad_();                                // (hidden=4, in=3)
  Tensor b1 = Tensor::zeros({4}).requires_grad_();                           // (hidden)
  Tensor w2 = randn({1, 4}).requires_grad_();                                // (out=1, hidden=4)
  Tensor hidden = gelu(linear(x, w1, b1));                                   // (B, hidden)
  Tensor loss = mean(linear(hidden, w2));                                    // ()
  loss.backward();
  auto show = [](const char* name, const Tensor& t) {
    std::printf("%s %s:", name, shape_str(t.shape()).c_str());
    for (double v : t.to_vector()) std::printf(" %.6f", v);
    std::printf("\n");
  };
  std::printf("loss = mean(linear(gelu(linear(x, w1, b1)), w2)) = %.6f\n", loss.item());
  show("dloss/dw1", w1.grad());
  show("dloss/db1", b1.grad());
  show("dloss/dw2", w2.grad());
  return 0;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Best of several runs for each shape: the peak is what the kernels can do, not what a noisy neighbour allows.
int run_bench_gemm() {
  std::printf("OpenBLAS core: %s, threads: %d\n", blas_core_name().c_str(), num_threads());
  const std::vector<std::array<int64_t, 3>> shapes = {
      {512, 512, 512}, {1024, 1024, 1024}, {2048, 2048, 2048}, {8320, 576, 192}, {8320, 192, 768}};
  double peak = 0;
  for (const auto& [m, n, k] : shapes) {
    Tensor a = randn({m, k}), b = randn({k, n}), c = Tensor::empty({m, n});
    const double flops = 2.0 * m * n * k;
    double best = 0;
    for (int rep = 0; rep < 7; ++rep) {
      const auto start = std::chrono::steady_clock::now();
      gemm<float>(false, false, m, n, k, 1.0f, a.data<float>(), k, b.data<float>(), n, 0.0f, c.data<float>(), n);
      best = std::max(best, flops / seconds_since(start) / 1e9);
    }
    std::printf("sgemm %ldx%ldx%ld: %.1f GFLOP/s\n", static_cast<long>(m), static_cast<long>(n),
                static_cast<long>(k), best);
    peak = std::max(peak, best);
  }
  std::printf("sgemm peak GFLOP/s: %.1f\n", peak);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  vt::ensure_fast_blas(argc, argv);
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help")) {
    print_usage();
    return argc < 2 ? 1 : 0;
  }
  try {
    for (int i = 2; i + 1 < argc; ++i)
      if (!std::strcmp(argv[i], "--threads")) vt::set_num_threads(std::stoi(argv[i + 1]));
    const std::string command = argv[1];
    if (command == "demo") return run_demo();
    if (command == "bench-gemm") return run_bench_gemm();
    std::fprintf(stderr, "vt: unknown command '%s' (try vt help)\n", command.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vt: %s\n", e.what());
    return 1;
  }
}
