// The `vt` command line. Conventions: `vt COMMAND [options]`; every command prints plain text (one fact
// per line, so scripts can grep it) and exits non-zero with a one-line error on misuse.
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "autograd/blas.h"
#include "autograd/parallel.h"
#include "train/lib/commands.h"

namespace {

void print_usage() {
  std::puts(
      "usage: vt COMMAND [options]\n"
      "\n"
      "commands:\n"
      "  demo         build a small graph, run backward and print the gradients\n"
      "  bench-gemm   measure float32 GEMM GFLOP/s for a few shapes\n"
      "  info         --model NAME [key=value ...] [--json]: architecture, params and GMACs per image\n"
      "  init         --model NAME [key=value ...] --seed S --out W.safetensors: a freshly initialised model\n"
      "  forward      --checkpoint W.safetensors --input X.safetensors --output Y.safetensors [--model NAME]:\n"
      "               eval-mode logits (B, classes) of the tensor x (B, C, H, W)\n"
      "\n"
      "options for every command:\n"
      "  --threads T  threads for the kernels and OpenBLAS (default: all cores)");
}

}  // namespace

int main(int argc, char** argv) {
  vt::ensure_fast_blas(argc, argv);
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help")) {
    print_usage();
    return argc < 2 ? 1 : 0;
  }
  try {
    vt::Args args(argc, argv, 2, {"json"});
    const int64_t threads = args.get_int("threads", 0);
    if (threads > 0) vt::set_num_threads(static_cast<int>(threads));
    const std::string command = argv[1];
    if (command == "demo") return vt::command_demo(args);
    if (command == "bench-gemm") return vt::command_bench_gemm(args);
    if (command == "info") return vt::command_info(args);
    if (command == "init") return vt::command_init(args);
    if (command == "forward") return vt::command_forward(args);
    std::fprintf(stderr, "vt: unknown command '%s' (try vt help)\n", command.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vt: %s\n", e.what());
    return 1;
  }
}
