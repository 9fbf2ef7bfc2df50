// vt demo and vt bench-gemm: the engine's smallest end-to-end example, and the GEMM (and attention) speed check.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>

#include <sys/resource.h>

#include "autograd/blas.h"
#include "autograd/device.h"
#include "autograd/gemm_bf16.h"
#include "autograd/parallel.h"
#include "datasets/loader.h"
#include "models/config.h"
#include "nn/optim.h"
#include "ops/ops.h"
#include "train/lib/commands.h"

namespace vt {

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// GFLOP/s of C (m, n) = op(A) op(B): the best of 7 runs (what the kernels can do, not what a noisy neighbour
// allows).
double best_gemm_gflops(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k) {
  Tensor a = randn({m, k}), b = randn({k, n}), c = Tensor::empty({m, n});
  const double flops = 2.0 * m * n * k;
  double best = 0;
  for (int rep = 0; rep < 7; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    gemm<float>(trans_a, trans_b, m, n, k, 1.0f, a.data<float>(), trans_a ? m : k, b.data<float>(), trans_b ? k : n,
                0.0f, c.data<float>(), n);
    best = std::max(best, flops / seconds_since(start) / 1e9);
  }
  return best;
}

// The float32 GEMM peak in GFLOP/s over a few shapes, printing each shape's when `print` (under --amp bf16, the
// bf16 kernel's: gemm<float> runs on it).
double sgemm_peak_gflops(bool print) {
  const std::vector<std::array<int64_t, 3>> shapes = {
      {512, 512, 512}, {1024, 1024, 1024}, {2048, 2048, 2048}, {8320, 576, 192}, {8320, 192, 768}};
  double peak = 0;
  for (const auto& [m, n, k] : shapes) {
    const double best = best_gemm_gflops(false, false, m, n, k);
    if (print)
      std::printf("%s %ldx%ldx%ld: %.1f GFLOP/s\n",
                  cpu_matmul_precision() == MatmulPrecision::bf16 ? "bf16 gemm" : "sgemm", static_cast<long>(m),
                  static_cast<long>(n), static_cast<long>(k), best);
    peak = std::max(peak, best);
  }
  return peak;
}

// Attention at vit_cifar's sizes, batch 128 (384 heads of 65 tokens, head dim 64) read from a fused qkv
// projection, as in training: GFLOP/s of the forward's products (q k^T and P v: 4 B H N^2 hd FLOPs) and of the
// backward's four (8 B H N^2 hd), the best of 7 runs; the softmax and its backward count in the time only.
void print_attention_gflops() {
  const int64_t batch = 128, tokens = 65, heads = 3, head_dim = 64;
  const Tensor qkv = randn({batch, tokens, 3 * heads * head_dim});   // (B, N, 3D)
  const Tensor upstream = randn({batch, tokens, heads * head_dim});  // (B, N, D)
  const double forward_flops = 4.0 * batch * heads * tokens * tokens * head_dim;
  double forward = 0, backward = 0;
  for (int rep = 0; rep < 7; ++rep) {
    const Tensor leaf = qkv.detach().requires_grad_();  // a fresh gradient each time, not a sum into the last
    auto start = std::chrono::steady_clock::now();
    const Tensor out = multi_head_attention({leaf}, heads);  // (B, N, D)
    forward = std::max(forward, forward_flops / seconds_since(start) / 1e9);
    start = std::chrono::steady_clock::now();
    out.backward(upstream);
    backward = std::max(backward, 2 * forward_flops / seconds_since(start) / 1e9);
  }
  std::printf("attention, vit_cifar's heads at batch 128 (384 of 65 tokens, head dim 64): forward %.1f GFLOP/s, "
              "backward %.1f GFLOP/s\n",
              forward, backward);
}

}  // namespace

// A tiny two-layer network on fixed inputs: y = sum(w2 . gelu(w1 x + b1)), with every gradient printed.
int command_demo() {
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


int command_bench_gemm() {
  std::printf("OpenBLAS core: %s, threads: %d\n", blas_core_name().c_str(), num_threads());
  std::printf("sgemm peak GFLOP/s: %.1f\n", sgemm_peak_gflops(true));
  // The same shapes on this CPU's bf16 kernel (--amp bf16), where it has one.
  if (best_bf16_kernel() != Bf16Kernel::none) {
    set_cpu_matmul_precision(MatmulPrecision::bf16);
    const double bf16_peak = sgemm_peak_gflops(true);
    set_cpu_matmul_precision(MatmulPrecision::fp32);
    std::printf("bf16 gemm peak GFLOP/s (%s): %.1f\n", bf16_kernel_name(best_bf16_kernel()), bf16_peak);
  }
  // TNT's pixel-level linears at batch 128 (B*N*M = 131,072 pixel tokens of 12 channels), which gemm runs as
  // skinny products (see blas.h): far from the peak, since each output is only 12 to 48 multiply-adds.
  struct Skinny {
    const char* what;
    bool trans_a, trans_b;
    int64_t m, n, k;
  };
  const int64_t tokens = 128 * 64 * 16;
  for (const Skinny& s : {Skinny{"y = x W^T, 12 -> 48", false, true, tokens, 48, 12},
                          Skinny{"y = x W^T, 48 -> 12", false, true, tokens, 12, 48},
                          Skinny{"dx = dy W, 48 -> 12", false, false, tokens, 12, 48},
                          Skinny{"dW = dy^T x, (48, 12)", true, false, 48, 12, tokens}})
    std::printf("sgemm %-22s over %ld pixel tokens: %.1f GFLOP/s\n", s.what, static_cast<long>(tokens),
                best_gemm_gflops(s.trans_a, s.trans_b, s.m, s.n, s.k));
  print_attention_gflops();
  return 0;
}

// Training and inference speed of a model on random data: a training step is forward, backward and AdamW, the
// median of 5 steps after 2 warm-up steps (the measurement of bench/pytorch_train_step.py, for a side-by-side
// comparison); inference is an eval-mode forward, median of 5 after 2. Each timing waits for the device.
// On the CPU it also prints the roofline: the GEMM peak (sgemm, or the bf16 kernel under --amp bf16) measured in
// the same run over the training FLOPs per image (forward and backward are 3x the multiply-adds the forward does,
// computed_macs_per_image, 2 FLOPs each), and the fraction reached.
int command_bench_train(const BenchTrainOptions& o) {
  const models::ModelConfig config = o.model.config();
  const int64_t batch = o.batch_size;
  manual_seed(0);
  const MatmulPrecision precision = matmul_precision(o.tf32, o.amp);
  set_matmul_precision(o.device, precision);
  const auto model = models::create_model(config);
  model->to(o.device);
  nn::AdamW optimizer(nn::weight_decay_groups(*model, 0.05), 1e-3);
  const Tensor images = randn({batch, config.in_channels, config.image_size, config.image_size}).to(o.device);  // (B, C, H, W)
  std::vector<int64_t> labels(batch);
  for (int64_t i = 0; i < batch; ++i) labels[i] = i % config.num_classes;
  const Tensor target = Tensor::from_indices(labels, {batch}, o.device);
  auto median_seconds = [&](const auto& step) {
    std::vector<double> times;
    for (int repeat = 0; repeat < 7; ++repeat) {
      const auto start = std::chrono::steady_clock::now();
      step();
      synchronize(o.device);
      if (repeat >= 2) times.push_back(seconds_since(start));
    }
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
  };
  reset_peak_memory(o.device);
  const double train_seconds = median_seconds([&] {
    const Tensor loss = cross_entropy(model->forward(images), target, 0.1);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
  });
  const uint64_t train_peak = peak_memory_bytes(o.device);
  model->eval();
  const double infer_seconds = median_seconds([&] {
    NoGradGuard no_grad;
    model->forward(images);
  });
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);  // the process's high-water mark, what PyTorch's script reports too
  const double peak_rss_gib = static_cast<double>(usage.ru_maxrss) / (1 << 20);  // ru_maxrss is in KiB
  std::printf("vt %s %s batch %ld on %s: training %.1f images/s, inference %.1f images/s, peak memory %.2f GiB (threads %d)\n",
              config.name.c_str(), matmul_precision_name(precision), static_cast<long>(batch), device_name(o.device), batch / train_seconds,
              batch / infer_seconds, static_cast<double>(train_peak) / (1 << 30), num_threads());
  if (o.device == Device::cpu) {
    const double flops_per_image = 3 * 2 * models::computed_macs_per_image(config), peak = sgemm_peak_gflops(false);
    const double roofline = peak * 1e9 / flops_per_image;
    std::printf("roofline: %s peak %.1f GFLOP/s over %.3f GFLOP per training image = %.1f images/s; "
                "this run reached %.0f%% of it\n",
                precision == MatmulPrecision::bf16 ? "bf16 gemm" : "sgemm", peak, flops_per_image / 1e9, roofline,
                100 * batch / train_seconds / roofline);
    std::printf("memory: peak RSS %.2f GiB, the whole process's\n", peak_rss_gib);
  }
  return 0;
}

// Data-loading speed: decoding a split, then one epoch of the training loader (augmentation on, as
// configured by --aug) with no model, so the number is what the loader can feed a training run.
int command_bench_data(const BenchDataOptions& o) {
  const std::string& dir = o.data_dir;
  data::LoaderOptions options;
  options.batch_size = o.batch_size;
  options.workers = o.workers;
  options.augment = true;
  if (!o.augment.empty()) data::parse_augment(options.augment_config, o.augment);
  const auto decode_start = std::chrono::steady_clock::now();
  const auto dataset = data::open_dataset(dir, "train", data::DatasetOptions());
  const double decode_seconds = seconds_since(decode_start);
  std::printf("decoded %ld training images in %.2f s (%.0f images/s)\n", static_cast<long>(dataset->size()),
              decode_seconds, dataset->size() / decode_seconds);
  data::DataLoader loader(*dataset, options);
  const auto start = std::chrono::steady_clock::now();
  loader.start_epoch(0);
  data::Batch batch;
  int64_t images = 0;
  while (loader.next(batch)) images += static_cast<int64_t>(batch.labels.size());
  std::printf("loader (augment %s, %d workers, batch %ld): %.0f images/s\n", data::describe(options.augment_config).c_str(),
              options.workers, static_cast<long>(options.batch_size), images / seconds_since(start));
  return 0;
}

}  // namespace vt
