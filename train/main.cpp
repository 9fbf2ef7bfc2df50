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
      "training and evaluation (DIR: CIFAR-10 binary files, or train/ and test/ image folders):\n"
      "  train    --model NAME [key=value ...] --data DIR [--epochs N --batch B --lr LR --min-lr LR --wd WD\n"
      "           --warmup EPOCHS --label-smoothing S --opt adamw|sgd --momentum M --clip-grad NORM --ema DECAY\n"
      "           --aug SPEC --normalize cifar10|computed --skip-bad --train-limit N --test-limit N\n"
      "           --workers W --seed S --out RUN_DIR --resume --stop-after-steps N]\n"
      "           SPEC: none, or any of crop=4,flip=1,auto=rand-m9-n2|autoaugment-cifar|none,mixup=A,cutmix=A,\n"
      "           mix_prob=P,erase=P (comma-separated)\n"
      "  eval     --checkpoint W.safetensors --data DIR [--split test|train]: accuracy, per class, confusion matrix\n"
      "  predict  --checkpoint W.safetensors IMAGE...: top-5 classes with probabilities\n"
      "  compare  --models vit_cifar,tnt_cifar --data DIR (--epochs N | --time-budget SECONDS) [train options]\n"
      "           trains each model with the same recipe; writes RUN_DIR/report.md and RUN_DIR/curves.png\n"
      "\n"
      "models:\n"
      "  info     --model NAME [key=value ...] [--json]: architecture, params and GMACs per image\n"
      "  init     --model NAME [key=value ...] --seed S --out W.safetensors: a freshly initialised model\n"
      "  forward  --checkpoint W.safetensors --input X.safetensors --output Y.safetensors [--model NAME]:\n"
      "           eval-mode logits (B, classes) of the tensor x (B, C, H, W)\n"
      "  presets: vit_tiny_patch16_224 vit_small_patch16_224 vit_base_patch16_224 tnt_s_patch16_224\n"
      "           tnt_b_patch16_224 vit_cifar tnt_cifar; key=value overrides any field shown by vt info --json\n"
      "\n"
      "engine:\n"
      "  demo         a small graph, backward, and its gradients\n"
      "  bench-gemm   float32 GEMM GFLOP/s for a few shapes\n"
      "  bench-train  --model NAME [key=value ...] [--batch B]: training images/s on random data\n"
      "  bench-data   [--data DIR --aug SPEC --workers W --batch B]: decoding and loader images/s\n"
      "\n"
      "every command: --threads T  threads for the kernels and OpenBLAS (default: all cores)");
}

}  // namespace

int main(int argc, char** argv) {
  vt::ensure_fast_blas(argc, argv);
  // Line-buffered even into a file or pipe, so that `vt train > log` can be followed with tail -f.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help")) {
    print_usage();
    return argc < 2 ? 1 : 0;
  }
  try {
    vt::Args args(argc, argv, 2, {"json", "resume", "skip-bad"});
    const int64_t threads = args.get_int("threads", 0);
    if (threads > 0) vt::set_num_threads(static_cast<int>(threads));
    const std::string command = argv[1];
    if (command == "demo") return vt::command_demo(args);
    if (command == "bench-gemm") return vt::command_bench_gemm(args);
    if (command == "bench-train") return vt::command_bench_train(args);
    if (command == "bench-data") return vt::command_bench_data(args);
    if (command == "info") return vt::command_info(args);
    if (command == "init") return vt::command_init(args);
    if (command == "forward") return vt::command_forward(args);
    if (command == "train") return vt::command_train(args);
    if (command == "eval") return vt::command_eval(args);
    if (command == "predict") return vt::command_predict(args);
    if (command == "compare") return vt::command_compare(args);
    std::fprintf(stderr, "vt: unknown command '%s' (try vt help)\n", command.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vt: %s\n", e.what());
    return 1;
  }
}
