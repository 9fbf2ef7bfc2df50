// The CUDA backend against the CPU: every op forward and backward on plain, broadcast and non-contiguous inputs
// (float32, TF32 off, a tolerance stated per op), optimizer steps, a whole training step of both CIFAR presets
// with dropout and DropPath on, a short run, and the device allocator. Each case needs a GPU: without one it
// prints one line, "SKIPPED: ..." (which ctest reports as skipped), and returns.
#include <cmath>
#include <functional>

#include "autograd/device.h"
#include "models/config.h"
#include "nn/optim.h"
#include "tests/helpers.h"

using namespace vt;

namespace {

bool gpu() {
  if (cuda_available()) return true;
  MESSAGE("SKIPPED: no GPU: " << cuda_description());
  return false;
}

using Function = std::function<Tensor(const std::vector<Tensor>&)>;

// Random float32 values (seeded), scaled.
Tensor input(const Shape& shape, uint64_t seed, double scale = 1.0) {
  Generator generator(seed);
  NoGradGuard no_grad;
  return mul(randn(shape, DType::f32, generator), scale);
}

// Largest |a - b| / (atol + rtol |b|) over the elements; <= 1 passes.
double excess(const Tensor& a, const Tensor& b, double atol, double rtol) {
  const std::vector<double> x = a.to_vector(), y = b.to_vector();
  REQUIRE(x.size() == y.size());
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) && std::isnan(y[i])) continue;
    worst = std::max(worst, std::abs(x[i] - y[i]) / (atol + rtol * std::abs(y[i])));
  }
  return worst;
}

// f on the CPU and on the GPU from the same inputs; the outputs and every float input's gradient (for a random
// upstream gradient) agree within atol + rtol |cpu|.
void expect_parity(const std::string& what, const Function& f, const std::vector<Tensor>& inputs, double atol,
                   double rtol) {
  CAPTURE(what);
  std::vector<Tensor> cpu, gpu_inputs;
  for (const Tensor& x : inputs) {
    Tensor c = x.clone(), g = x.to(Device::cuda);
    if (x.dtype() != DType::i64) c.requires_grad_(), g.requires_grad_();
    cpu.push_back(c);
    gpu_inputs.push_back(g);
  }
  const Tensor y_cpu = f(cpu), y_gpu = f(gpu_inputs);
  REQUIRE(y_gpu.device() == Device::cuda);
  REQUIRE(y_cpu.shape() == y_gpu.shape());
  CHECK(excess(y_gpu, y_cpu, atol, rtol) <= 1.0);
  if (!y_cpu.requires_grad()) return;
  const Tensor upstream = input(y_cpu.shape(), 991);
  y_cpu.backward(upstream);
  y_gpu.backward(upstream.to(Device::cuda));
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!cpu[i].grad().defined()) continue;
    CAPTURE(i);
    REQUIRE(gpu_inputs[i].grad().defined());
    CHECK(gpu_inputs[i].grad().device() == Device::cuda);
    CHECK(excess(gpu_inputs[i].grad(), cpu[i].grad(), atol, rtol) <= 1.0);
  }
}

}  // namespace

TEST_CASE("cuda: tensors move between devices exactly, strided, broadcast and converting copies on the device") {
  if (!gpu()) return;
  const Tensor x = input({3, 4, 5}, 1);
  CHECK(x.to(Device::cuda).to(Device::cpu).to_vector() == x.to_vector());
  const Tensor permuted = permute(x.to(Device::cuda), {2, 0, 1});  // a strided view on the device
  CHECK(contiguous(permuted).to_vector() == contiguous(permute(x, {2, 0, 1})).to_vector());
  Tensor broadcast = Tensor::zeros({2, 3, 4, 5}, DType::f32, Device::cuda);
  broadcast.copy_(x);  // a CPU source broadcast into a device destination
  CHECK(broadcast.to_vector() == Tensor::zeros({2, 3, 4, 5}).copy_(x).to_vector());
  const Tensor indices = Tensor::from_indices({7, -2, 1000000}, {3}, Device::cuda);
  CHECK(indices.to(DType::f32).to_vector() == std::vector<double>{7, -2, 1000000});
  CHECK(Tensor::full({2, 2}, 1.5, DType::f32, Device::cuda).to_vector() == std::vector<double>{1.5, 1.5, 1.5, 1.5});
  Generator on_cpu(8), on_gpu(8);  // the random creation functions: the counters' values on either device
  const Tensor drawn = randn({3, 5}, DType::f32, on_gpu, Device::cuda);
  CHECK(drawn.device() == Device::cuda);
  CHECK(drawn.to_vector() == randn({3, 5}, DType::f32, on_cpu).to_vector());
  CHECK(rand({7}, DType::f32, on_gpu, Device::cuda).to_vector() == rand({7}, DType::f32, on_cpu).to_vector());
  CHECK(trunc_normal({9}, 1.0, -0.5, 0.5, DType::f32, on_gpu, Device::cuda).to_vector() ==
        trunc_normal({9}, 1.0, -0.5, 0.5, DType::f32, on_cpu).to_vector());
  CHECK_THROWS_WITH_AS(add(x, x.to(Device::cuda)), doctest::Contains("on cpu"), std::runtime_error);
  CHECK_THROWS_WITH_AS(x.to(DType::f64).to(Device::cuda), doctest::Contains("float64 tensors stay on the CPU"),
                       std::runtime_error);
}

TEST_CASE("cuda: uploads through the pinned staging ring: larger than a buffer, and more in flight than buffers") {
  if (!gpu()) return;
  // 5 * 2^20 floats are 20 MiB: three 8 MiB chunks. Then 9 uploads in a row reuse each of the 4 buffers twice;
  // each must hold its own values once the device has them (a buffer overwritten before its DMA would not).
  const Tensor big = input({5, 1 << 20}, 2);
  CHECK(big.to(Device::cuda).to(Device::cpu).to_vector() == big.to_vector());
  std::vector<Tensor> uploads;
  for (int i = 0; i < 9; ++i) uploads.push_back(Tensor::full({1 << 20}, i, DType::f32).to(Device::cuda));
  for (int i = 0; i < 9; ++i) CHECK(sum(uploads[i]).item() == double(i) * (1 << 20));
  // Small uploads (up to 64 KiB) have their own ring of 64 buffers: 70 in a row reuse six of them.
  std::vector<Tensor> small;
  for (int i = 0; i < 70; ++i) small.push_back(Tensor::full({1000}, i, DType::f32).to(Device::cuda));
  for (int i = 0; i < 70; ++i) CHECK(sum(small[i]).item() == double(i) * 1000);
}

TEST_CASE("cuda: fill_ writes on the device through any strides, and the misuse of a device is named") {
  if (!gpu()) return;
  Tensor x = Tensor::zeros({4, 6}, DType::f32, Device::cuda);
  narrow(transpose(x, 0, 1), 0, 1, 2).fill_(2.5);  // columns 1 and 2 of x, through a transposed view
  std::vector<double> expected(24, 0.0);
  for (int r = 0; r < 4; ++r) expected[r * 6 + 1] = expected[r * 6 + 2] = 2.5;
  CHECK(x.to_vector() == expected);
  CHECK(Tensor::zeros({3}, DType::i64, Device::cuda).fill_(-7.9).to_vector() == std::vector<double>{-7, -7, -7});
  // A bias or an index left on the CPU would hand a host pointer to a kernel: refused, naming both devices.
  const Tensor a = input({2, 3}, 3).to(Device::cuda), w = input({5, 3}, 4).to(Device::cuda);
  CHECK_THROWS_WITH_AS(linear(a, w, input({5}, 5)), doctest::Contains("on cpu"), std::runtime_error);
  CHECK_THROWS_WITH_AS(index_select(a, 1, Tensor::from_indices({0, 2}, {2})), doctest::Contains("on cpu"),
                       std::runtime_error);
  // An empty batch of products is an empty result, not a read of the first batch's offset.
  CHECK(matmul(Tensor::zeros({0, 4, 5}, DType::f32, Device::cuda), Tensor::zeros({0, 5, 6}, DType::f32, Device::cuda))
            .shape() == Shape{0, 4, 6});
  // LayerNorm over zero rows: the parameter gradients are sums of nothing, 0 (as on the CPU), not stale memory.
  Tensor weight = Tensor::ones({8}, DType::f32, Device::cuda).requires_grad_(),
         bias = Tensor::zeros({8}, DType::f32, Device::cuda).requires_grad_();
  sum(layer_norm(Tensor::zeros({0, 8}, DType::f32, Device::cuda), weight, bias, 1e-5)).backward();
  CHECK(weight.grad().to_vector() == std::vector<double>(8, 0.0));
  CHECK(bias.grad().to_vector() == std::vector<double>(8, 0.0));
}

TEST_CASE("cuda: elementwise ops, forward and backward, plain, broadcast and non-contiguous (rtol 1e-5)") {
  if (!gpu()) return;
  const Tensor a = input({6, 7}, 2), b = input({7}, 3), positive = add(mul(input({6, 7}, 4), 0.1), 2.0).detach();
  expect_parity("add broadcast", [](const auto& x) { return add(x[0], x[1]); }, {a, b}, 1e-6, 1e-5);
  expect_parity("sub", [](const auto& x) { return sub(x[0], x[1]); }, {a, positive}, 1e-6, 1e-5);
  expect_parity("mul transposed", [](const auto& x) { return mul(transpose(x[0], 0, 1), x[1]); }, {a, input({7, 6}, 5)},
                1e-6, 1e-5);
  expect_parity("div", [](const auto& x) { return div(x[0], x[1]); }, {a, positive}, 1e-6, 1e-5);
  expect_parity("scalars", [](const auto& x) { return rsub(3.0, sub(mul(add(x[0], 1.5), -2.0), 0.5)); }, {a}, 1e-6, 1e-5);
  expect_parity("exp log sqrt pow", [](const auto& x) { return pow(sqrt(log(exp(x[0]))), 3.0); }, {positive}, 1e-6, 1e-5);
  expect_parity("tanh relu neg", [](const auto& x) { return neg(relu(tanh(x[0]))); }, {a}, 1e-6, 1e-5);
  expect_parity("gelu non-contiguous", [](const auto& x) { return gelu(transpose(x[0], 0, 1)); }, {mul(a, 3.0).detach()},
                1e-6, 1e-5);
}

TEST_CASE("cuda: reductions and shape ops (sums in double on both devices: rtol 1e-6)") {
  if (!gpu()) return;
  const Tensor x = input({4, 5, 6}, 6);
  expect_parity("sum all", [](const auto& t) { return sum(t[0]); }, {x}, 1e-6, 1e-6);
  expect_parity("sum leading", [](const auto& t) { return sum(t[0], {0, 1}); }, {x}, 1e-6, 1e-6);
  expect_parity("sum middle keepdim", [](const auto& t) { return sum(t[0], {1}, true); }, {x}, 1e-6, 1e-6);
  expect_parity("mean trailing", [](const auto& t) { return mean(t[0], {-1}); }, {x}, 1e-6, 1e-6);
  expect_parity("max", [](const auto& t) { return max(t[0], {2}); }, {x}, 1e-12, 0);
  expect_parity("long row", [](const auto& t) { return sum(t[0]); }, {input({300000}, 7)}, 1e-4, 1e-6);
  expect_parity("cat slice expand", [](const auto& t) {
    return cat({slice(t[0], 1, 1, 4), expand(slice(t[0], 1, 0, 1), {4, 2, 6})}, 1);
  }, {x}, 1e-12, 0);
  const Tensor index = Tensor::from_indices({2, 0, 2, 4}, {4});
  expect_parity("index_select", [&](const auto& t) { return index_select(t[0], 1, index.to(t[0].device())); }, {x}, 1e-12, 1e-6);
  CHECK(argmax(x.to(Device::cuda), 2).to_indices() == argmax(x, 2).to_indices());
}

TEST_CASE("cuda: softmax, log_softmax and cross entropy with labels, probabilities and smoothing (rtol 1e-5)") {
  if (!gpu()) return;
  const Tensor x = mul(input({5, 11}, 8), 4.0).detach();
  expect_parity("softmax", [](const auto& t) { return softmax(t[0], -1); }, {x}, 1e-6, 1e-5);
  expect_parity("softmax over dim 0", [](const auto& t) { return softmax(t[0], 0); }, {x}, 1e-6, 1e-5);
  expect_parity("log_softmax", [](const auto& t) { return log_softmax(t[0], -1); }, {x}, 1e-6, 1e-5);
  const Tensor labels = Tensor::from_indices({0, 10, 3, 3, 7}, {5});
  for (const double smoothing : {0.0, 0.1}) {
    expect_parity("cross_entropy labels", [&](const auto& t) { return cross_entropy(t[0], t[1], smoothing); },
                  {x, labels}, 1e-6, 1e-5);
    const Tensor probabilities = softmax(input({5, 11}, 9), -1).detach();
    expect_parity("cross_entropy probabilities", [&](const auto& t) { return cross_entropy(t[0], t[1], smoothing); },
                  {x, probabilities}, 1e-6, 1e-5);
  }
  // An out-of-range label cannot be checked on the host without a sync: the GPU reports it as a NaN loss.
  CHECK(std::isnan(cross_entropy(x.to(Device::cuda), Tensor::from_indices({0, 11, 3, 3, 7}, {5}, Device::cuda)).item()));
}

TEST_CASE("cuda: layer_norm forward and backward, with and without affine parameters (rtol 1e-5)") {
  if (!gpu()) return;
  const Tensor x = add(mul(input({7, 3, 192}, 10), 3.0), 5.0).detach();
  expect_parity("layer_norm", [](const auto& t) { return layer_norm(t[0], t[1], t[2], 1e-6); },
                {x, add(input({192}, 11), 1.0).detach(), input({192}, 12)}, 1e-5, 1e-5);
  expect_parity("layer_norm plain, non-contiguous", [](const auto& t) {
    return layer_norm(transpose(t[0], 0, 1), Tensor(), Tensor(), 1e-5);
  }, {x}, 1e-5, 1e-5);
}

TEST_CASE("cuda: dropout and DropPath draw the CPU's masks from the same generator state") {
  if (!gpu()) return;
  const Tensor x = input({64, 33}, 13);
  Generator cpu_generator(21, RandomStream::dropout), gpu_generator(21, RandomStream::dropout);
  CHECK(dropout(x, 0.3, true, cpu_generator).to_vector() == dropout(x.to(Device::cuda), 0.3, true, gpu_generator).to_vector());
  CHECK(drop_path(x, 0.5, true, cpu_generator).to_vector() ==
        drop_path(x.to(Device::cuda), 0.5, true, gpu_generator).to_vector());
  CHECK(cpu_generator.offset() == gpu_generator.offset());
}

TEST_CASE("cuda: conv2d, unfold, matmul and linear on cuBLAS (rtol 1e-5, fp32 without TF32)") {
  if (!gpu()) return;
  const Tensor images = input({2, 3, 9, 9}, 14), weight = input({5, 3, 3, 3}, 15, 0.2), bias = input({5}, 16);
  expect_parity("conv2d padded strided", [](const auto& t) { return conv2d(t[0], t[1], t[2], 2, 1); },
                {images, weight, bias}, 1e-5, 1e-5);
  expect_parity("unfold", [](const auto& t) { return unfold(t[0], 3, 3, 3, 0); }, {images}, 1e-12, 0);
  const Tensor a = input({4, 6, 8}, 17), b = input({8, 5}, 18);
  expect_parity("matmul shared weight", [](const auto& t) { return matmul(t[0], t[1]); }, {a, b}, 1e-5, 1e-5);
  expect_parity("matmul batched, transposed", [](const auto& t) {
    return matmul(t[0], transpose(t[1], 1, 2));
  }, {a, input({4, 5, 8}, 19)}, 1e-5, 1e-5);
  expect_parity("linear", [](const auto& t) { return linear(t[0], t[1], t[2]); }, {a, input({7, 8}, 20), input({7}, 21)},
                1e-5, 1e-5);
  // No input features: y is the bias on every row (cuBLAS refuses leading dimensions of 0, which k = 0 gives).
  expect_parity("linear, no input features", [](const auto& t) { return linear(t[0], t[1], t[2]); },
                {input({3, 0}, 20), input({4, 0}, 20), input({4}, 21)}, 1e-7, 0);
}

TEST_CASE("cuda: --tf32 and --amp bf16 round matmul inputs within their mantissa's bound, and fp32 is exact") {
  if (!gpu()) return;
  // A dot product of 512 terms: TF32 keeps 10 of float32's 23 mantissa bits of each input, bf16 7, so each input
  // is off by less than 2^-10 or 2^-7 relative (rounded or truncated), each product by twice that, and the dot
  // product by twice that times sum_k |a_ik b_kj|. Summed, the result moves far past fp32's ~1e-6. Exact fp32
  // inputs leave only the sums' rounding: float32's 2^-24 per addition, in another order than OpenBLAS's, stays
  // within 2^-20 sum_k |a_ik b_kj| (TF32's input rounding alone is ~2^-11 / sqrt(512) = 2^-15.5 of it). A bound
  // relative to c itself fails where the sum cancels: on an H200, 1.6x over 1e-5 + 1e-5 |c|.
  const Tensor a = input({64, 512}, 22), b = input({512, 64}, 23);
  const Tensor exact = matmul(a, b);                                   // (64, 64)
  std::vector<double> magnitude(64 * 64, 0.0);  // sum_k |a_ik b_kj|
  const std::vector<double> av = a.to_vector(), bv = b.to_vector();
  for (int i = 0; i < 64; ++i)
    for (int k = 0; k < 512; ++k)
      for (int j = 0; j < 64; ++j) magnitude[i * 64 + j] += std::abs(av[i * 512 + k] * bv[k * 64 + j]);
  auto rounded = [&](MatmulPrecision precision) {
    set_matmul_precision(Device::cuda, precision);
    const Tensor c = matmul(a.to(Device::cuda), b.to(Device::cuda));
    set_matmul_precision(Device::cuda, MatmulPrecision::fp32);
    return c;
  };
  // Largest |c - exact| / (2^-bits sum_k |a_ik b_kj|) over the elements.
  auto worst = [&](const Tensor& c, int bits) {
    const std::vector<double> got = c.to_vector(), want = exact.to_vector();
    double ratio = 0;
    for (size_t i = 0; i < got.size(); ++i)
      ratio = std::max(ratio, std::abs(got[i] - want[i]) / std::ldexp(magnitude[i], -bits));
    return ratio;
  };
  for (const auto& [precision, mantissa_bits] : {std::pair{MatmulPrecision::tf32, 10}, {MatmulPrecision::bf16, 7}}) {
    CAPTURE(matmul_precision_name(precision));
    const Tensor c = rounded(precision);
    CHECK(worst(c, 20) > 1.0);                       // not fp32
    CHECK(worst(c, mantissa_bits - 1) <= 1.0);       // within its inputs' rounding
  }
  CHECK(worst(matmul(a.to(Device::cuda), b.to(Device::cuda)), 20) <= 1.0);
}

TEST_CASE("cuda: fused attention against the CPU's, ViT-sized heads and TNT's tiny ones, strided q k v (rtol 2e-5)") {
  if (!gpu()) return;
  // (B, N, 3, H, hd) as a fused qkv projection gives them: q, k, v are strided views of one tensor.
  for (const auto& [tokens, heads, head_dim] : {std::tuple<int64_t, int64_t, int64_t>{65, 3, 64}, {16, 2, 6}, {17, 4, 40}}) {
    CAPTURE(tokens);
    const Tensor qkv = input({3, tokens, 3, heads, head_dim}, 22);
    expect_parity("attention", [&](const auto& t) {
      const Tensor u = permute(t[0], {2, 0, 3, 1, 4});  // (3, B, H, N, hd)
      return scaled_dot_product_attention(squeeze(slice(u, 0, 0, 1), 0), squeeze(slice(u, 0, 1, 2), 0),
                                          squeeze(slice(u, 0, 2, 3), 0));
    }, {qkv}, 2e-6, 2e-5);
    // The same heads from the projections themselves: {qkv} (B, N, 3D) as ViT's, {qk, v} as TNT's, where the
    // kernels write dq, dk, dv as strided views of each projection's gradient.
    const int64_t dim = heads * head_dim;
    expect_parity("multi_head_attention {qkv}", [&](const auto& t) { return multi_head_attention({t[0]}, heads); },
                  {reshape(qkv, {3, tokens, 3 * dim})}, 2e-6, 2e-5);
    expect_parity("multi_head_attention {qk, v}", [&](const auto& t) { return multi_head_attention({t[0], t[1]}, heads); },
                  {input({3, tokens, 2 * dim}, 23), input({3, tokens, dim}, 24)}, 2e-6, 2e-5);
  }
}

TEST_CASE("cuda: AdamW, SGD, clipping and EMA steps match the CPU's (rtol 1e-6)") {
  if (!gpu()) return;
  for (const bool adamw : {true, false}) {
    CAPTURE(adamw);
    const Tensor start = input({1000}, 23), grad = input({1000}, 24);
    Tensor cpu = start.clone().requires_grad_(), gpu_param = start.to(Device::cuda).requires_grad_();
    auto make = [&](const Tensor& p) -> std::unique_ptr<nn::Optimizer> {
      const std::vector<nn::ParamGroup> groups = {nn::ParamGroup{{{"w", p}}, 0.05}};
      if (adamw) return std::make_unique<nn::AdamW>(groups, 1e-2);
      return std::make_unique<nn::SGD>(groups, 1e-2, 0.9, true);
    };
    auto cpu_optimizer = make(cpu), gpu_optimizer = make(gpu_param);
    for (int step = 0; step < 3; ++step) {
      cpu.set_grad(grad.clone());
      gpu_param.set_grad(grad.to(Device::cuda));
      cpu_optimizer->step();
      gpu_optimizer->step();
    }
    CHECK(excess(gpu_param, cpu, 1e-7, 1e-6) <= 1.0);
  }
  Tensor cpu = input({3000}, 25).requires_grad_(), gpu_param = cpu.detach().to(Device::cuda).requires_grad_();
  cpu.set_grad(input({3000}, 26));
  gpu_param.set_grad(cpu.grad().to(Device::cuda));
  CHECK(nn::clip_grad_norm({gpu_param}, 1.0).item() == doctest::Approx(nn::clip_grad_norm({cpu}, 1.0).item()).epsilon(1e-6));
  CHECK(excess(gpu_param.grad(), cpu.grad(), 1e-8, 1e-6) <= 1.0);
  // EMA of a one-block ViT's weights, ema = 0.9 ema + 0.1 p, after the weights moved to the same new values on
  // both devices, twice.
  models::ModelConfig config = models::preset("vit_cifar");
  config.depth = 1;
  manual_seed(4);
  const auto cpu_model = models::create_model(config);
  manual_seed(4);
  const auto gpu_model = models::create_model(config);
  gpu_model->to(Device::cuda);
  nn::ModelEma cpu_ema(*cpu_model, 0.9), gpu_ema(*gpu_model, 0.9);
  for (uint64_t step = 0; step < 2; ++step) {
    NoGradGuard no_grad;
    auto cpu_weights = cpu_model->named_parameters(), gpu_weights = gpu_model->named_parameters();
    for (size_t i = 0; i < cpu_weights.size(); ++i) {
      const Tensor moved = input(cpu_weights[i].second.shape(), 100 * step + i);
      cpu_weights[i].second.copy_(moved);
      gpu_weights[i].second.copy_(moved.to(Device::cuda));
    }
    cpu_ema.update(*cpu_model);
    gpu_ema.update(*gpu_model);
  }
  const auto cpu_average = cpu_ema.named_parameters(), gpu_average = gpu_ema.named_parameters();
  REQUIRE(cpu_average.size() == gpu_average.size());
  for (size_t i = 0; i < cpu_average.size(); ++i) {
    CAPTURE(cpu_average[i].first);
    CHECK(gpu_average[i].second.device() == Device::cuda);
    CHECK(excess(gpu_average[i].second, cpu_average[i].second, 1e-7, 1e-6) <= 1.0);
  }
}

TEST_CASE("cuda: one training step of vit_cifar and of tnt_cifar, dropout and DropPath on, matches the CPU's") {
  if (!gpu()) return;
  for (const std::string name : {"vit_cifar", "tnt_cifar"}) {
    CAPTURE(name);
    models::ModelConfig config = models::preset(name);
    config.drop_rate = 0.1;  // drop_path_rate is 0.1 in both presets
    auto step = [&](Device device) {
      manual_seed(3);
      const auto model = models::create_model(config);
      model->to(device);
      nn::AdamW optimizer(nn::weight_decay_groups(*model, 0.05), 1e-3);
      const Tensor images = input({8, 3, 32, 32}, 27).to(device);
      const Tensor labels = Tensor::from_indices({0, 1, 2, 3, 4, 5, 6, 7}, {8}, device);
      cross_entropy(model->forward(images), labels, 0.1).backward();
      std::vector<Tensor> grads;  // before the step, on the CPU
      for (const auto& [parameter_name, parameter] : model->named_parameters())
        grads.push_back(parameter.grad().to(Device::cpu));
      optimizer.step();
      return std::pair{model->named_parameters(), grads};
    };
    const auto [cpu, cpu_grads] = step(Device::cpu);
    const auto [gpu_params, gpu_grads] = step(Device::cuda);
    REQUIRE(cpu.size() == gpu_params.size());
    for (size_t i = 0; i < cpu.size(); ++i) {
      CAPTURE(cpu[i].first);
      // The gradients, to 2e-3 of each tensor's largest (float32 sums in another order, through the whole
      // model): a gradient of the right sign and the wrong size (a lost 1 / batch) fails here.
      const std::vector<double> g = cpu_grads[i].to_vector();
      double largest = 0;
      for (double value : g) largest = std::max(largest, std::abs(value));
      CHECK(excess(gpu_grads[i], cpu_grads[i], 2e-3 * largest + 1e-12, 2e-3) <= 1.0);
      // AdamW's first step moves each weight by lr f(g), f(g) = g / (|g| + eps), about lr sign(g) = 1e-3 whatever
      // the gradient's size. Where |g| is near eps = 1e-8, gradients that differ by float rounding (delta) move
      // the weights differently: by at most lr delta f'(g') for the g' between them, f'(g) = eps / (|g| + eps)^2,
      // and never by more than 2 lr. Beyond that, the weights agree to an absolute 2e-4, a fifth of lr. (On an
      // H200, tnt_cifar's blocks.0.mlp.fc1.bias broke the old bound, 2e-4 + 1e-5 |p| alone, 1.66-fold.)
      const double lr = 1e-3, eps = 1e-8;
      const std::vector<double> g_gpu = gpu_grads[i].to_vector();
      const std::vector<double> p = cpu[i].second.to_vector(), p_gpu = gpu_params[i].second.to_vector();
      double worst = 0;
      for (size_t j = 0; j < p.size(); ++j) {
        const double delta = std::abs(g_gpu[j] - g[j]), nearest = std::max(std::abs(g[j]) - delta, 0.0);
        const double step_bound = lr * std::min(2.0, delta * eps / ((nearest + eps) * (nearest + eps)));
        worst = std::max(worst, std::abs(p_gpu[j] - p[j]) / (step_bound + 2e-4 + 1e-5 * std::abs(p[j])));
      }
      CHECK(worst <= 1.0);
    }
  }
}

TEST_CASE("cuda: a warmed-up training step makes no cudaMalloc, past the card's memory, a precise error") {
  if (!gpu()) return;
  models::ModelConfig config = models::preset("vit_cifar");
  config.depth = 2;
  const auto model = models::create_model(config);
  model->to(Device::cuda);
  nn::AdamW optimizer(nn::weight_decay_groups(*model, 0.05), 1e-3);
  const Tensor images = input({32, 3, 32, 32}, 28).to(Device::cuda);
  const Tensor labels = Tensor::from_indices(std::vector<int64_t>(32, 1), {32}, Device::cuda);
  auto step = [&] {
    optimizer.zero_grad();
    cross_entropy(model->forward(images), labels).backward();
    optimizer.step();
  };
  step();
  step();
  const uint64_t before = system_allocations(Device::cuda);
  step();
  synchronize(Device::cuda);
  CHECK(system_allocations(Device::cuda) == before);
  CHECK_THROWS_WITH_AS(Tensor::empty({int64_t{1} << 40}, DType::f32, Device::cuda),
                       doctest::Contains("out of device memory: 4096.00 GiB requested"), std::runtime_error);
}
