// Optimizers, clipping, EMA and schedules: update rules against hand-computed steps (checked against
// torch.optim 1.13 as well), fused kernels against the double references on odd sizes, weight-decay groups,
// exact resume from exported state, a small regression fitted end to end, and misuse errors.
#include <cmath>
#include <numbers>

#include "models/config.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "tests/helpers.h"

using namespace vt;
using testing::expect_close;

namespace {

Tensor scalar_parameter(double value) {
  return Tensor::from_vector({value}, {1}).requires_grad_();
}

void set_grad(const Tensor& param, const std::vector<double>& values) {
  param.set_grad(Tensor::from_vector(values, param.shape(), param.dtype()));
}

std::vector<nn::ParamGroup> one_group(const Tensor& param, double weight_decay = 0.0) {
  return {nn::ParamGroup{{{"w", param}}, weight_decay}};
}

// Parameters with chosen names and values, for the EMA and the state tests.
class Params : public nn::Module {
 public:
  Tensor add(const std::string& name, const std::vector<double>& values, const Shape& shape) {
    return register_parameter(name, Tensor::from_vector(values, shape));
  }
};

// A small model with timm's special names next to Linear and LayerNorm layers.
class TinyModel : public nn::Module {
 public:
  TinyModel() {
    cls_token = register_parameter("cls_token", Tensor::zeros({1, 1, 4}));
    pos_embed = register_parameter("pos_embed", Tensor::zeros({1, 3, 4}));
    fc = register_module("fc", std::make_shared<nn::Linear>(4, 8));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(8));
    head = register_module("head", std::make_shared<nn::Linear>(8, 2, /*bias=*/false));
  }
  Tensor cls_token, pos_embed;
  std::shared_ptr<nn::Linear> fc, head;
  std::shared_ptr<nn::LayerNorm> norm;
};

// Every element within tolerance * (1 + |expected|), checked once per tensor (one CHECK per element would
// make the long cases slow), reporting the worst element.
void expect_all_close(const Tensor& t, const std::vector<double>& expected, double tolerance) {
  const std::vector<double> got = t.to_vector();
  REQUIRE(got.size() == expected.size());
  double worst = 0;
  size_t where = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double excess = std::abs(got[i] - expected[i]) / (tolerance * (1 + std::abs(expected[i])));
    if (excess > worst) worst = excess, where = i;
  }
  INFO("worst element " << where << " of " << t.str() << ": got " << got[where] << ", expected " << expected[where]);
  CHECK(worst <= 1.0);
}

std::vector<std::string> names_of(const nn::ParamGroup& group) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : group.params) names.push_back(name);
  return names;
}

}  // namespace

TEST_CASE("optim: AdamW steps on one scalar match the hand-computed update") {
  // lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.01, p0 = 1, gradients 0.5, -1, 0.25.
  Tensor p = scalar_parameter(1.0);
  nn::AdamW adamw(one_group(p, 0.01), 0.1);

  // Step 1: p = 1 * (1 - 0.1 * 0.01) = 0.999; m = 0.1 * 0.5 = 0.05, v = 0.001 * 0.25 = 0.00025;
  // m_hat = 0.05 / (1 - 0.9) = 0.5, sqrt(v_hat) = sqrt(0.00025 / (1 - 0.999)) = 0.5, so the step is
  // lr * 0.5 / (0.5 + 1e-8) = 0.1 * sign(g) (to 2e-9): p = 0.999 - 0.099999998 = 0.899000002.
  set_grad(p, {0.5});
  adamw.step();
  expect_close(p, {0.899000002}, 1e-6);
  // Step 2: p = 0.899000002 * 0.999 = 0.898101002; m = 0.9 * 0.05 - 0.1 = -0.055,
  // v = 0.999 * 0.00025 + 0.001 * 1 = 0.00124975; m_hat = -0.055 / 0.19 = -0.2894737,
  // sqrt(v_hat) = sqrt(0.00124975 / 0.001999) = 0.7906881; step = 0.1 * -0.2894737 / 0.7906881 = -0.0366104;
  // p = 0.898101002 + 0.0366104 = 0.9347114.
  set_grad(p, {-1.0});
  adamw.step();
  expect_close(p, {0.9347113542}, 1e-6);
  // Step 3: p = 0.9347114 * 0.999 = 0.9337767; m = 0.9 * -0.055 + 0.025 = -0.0245,
  // v = 0.999 * 0.00124975 + 0.001 * 0.0625 = 0.00131100; m_hat = -0.0245 / 0.271 = -0.0904059,
  // sqrt(v_hat) = sqrt(0.00131100 / 0.002997001) = 0.6613905; step = -0.0136691; p = 0.9474457.
  set_grad(p, {0.25});
  adamw.step();
  expect_close(p, {0.9474457090}, 1e-6);  // torch.optim.AdamW: 0.9474457502 (float32)
  CHECK(adamw.step_count == 3);
  expect_close(adamw.state()[2].second, {-0.0245}, 1e-8);  // exp_avg.w
}

TEST_CASE("optim: SGD with momentum, Nesterov and weight decay match the hand-computed update") {
  // lr 0.1, momentum 0.9, weight decay 0.1, p0 = 1, gradients 1, 1, -2.
  Tensor p = scalar_parameter(1.0);
  nn::SGD sgd(one_group(p, 0.1), 0.1, 0.9);
  // Step 1: d = 1 + 0.1 * 1 = 1.1, buf = d = 1.1, p = 1 - 0.11 = 0.89.
  set_grad(p, {1.0});
  sgd.step();
  expect_close(p, {0.89}, 1e-6);
  // Step 2: d = 1 + 0.089 = 1.089, buf = 0.9 * 1.1 + 1.089 = 2.079, p = 0.89 - 0.2079 = 0.6821.
  set_grad(p, {1.0});
  sgd.step();
  expect_close(p, {0.6821}, 1e-6);
  // Step 3: d = -2 + 0.06821 = -1.93179, buf = 1.8711 - 1.93179 = -0.06069, p = 0.6821 + 0.006069 = 0.688169.
  set_grad(p, {-2.0});
  sgd.step();
  expect_close(p, {0.688169}, 1e-6);  // torch.optim.SGD: 0.6881690025

  Tensor q = scalar_parameter(1.0);
  nn::SGD nesterov(one_group(q, 0.1), 0.1, 0.9, /*nesterov=*/true);
  // Step 1: d = 1.1, buf = 1.1, update = d + 0.9 * buf = 2.09, p = 1 - 0.209 = 0.791.
  set_grad(q, {1.0});
  nesterov.step();
  expect_close(q, {0.791}, 1e-6);
  // Step 2: d = 1 + 0.0791 = 1.0791, buf = 0.99 + 1.0791 = 2.0691, update = 1.0791 + 1.86219 = 2.94129,
  // p = 0.791 - 0.294129 = 0.496871.
  set_grad(q, {1.0});
  nesterov.step();
  expect_close(q, {0.496871}, 1e-6);
  // Step 3: d = -2 + 0.0496871 = -1.9503129, buf = 1.86219 - 1.9503129 = -0.0881229,
  // update = -1.9503129 - 0.0793106 = -2.0296235, p = 0.496871 + 0.20296235 = 0.69983335.
  set_grad(q, {-2.0});
  nesterov.step();
  expect_close(q, {0.69983335}, 1e-6);  // torch.optim.SGD(nesterov=True): 0.6998333931

  // Plain SGD without momentum keeps no buffer: p = 1 - 0.5 * 2 = 0, then 0 - 0.5 * -1 = 0.5.
  Tensor r = scalar_parameter(1.0);
  nn::SGD plain(one_group(r), 0.5);
  set_grad(r, {2.0});
  plain.step();
  expect_close(r, {0.0});
  set_grad(r, {-1.0});
  plain.step();
  expect_close(r, {0.5});
  CHECK(plain.state().size() == 2);  // step_count and step.w, no momentum_buffer
}

TEST_CASE("optim: parameters without a gradient are skipped and keep their own step count") {
  Tensor a = scalar_parameter(1.0), b = scalar_parameter(1.0);
  nn::AdamW adamw({nn::ParamGroup{{{"a", a}, {"b", b}}, 0.0}}, 0.1);
  set_grad(a, {2.0});
  adamw.step();
  expect_close(a, {0.9}, 1e-6);  // first step of a: lr * sign(g)
  expect_close(b, {1.0});        // no gradient: untouched
  set_grad(b, {-3.0});
  a.zero_grad();
  adamw.step();
  // b's first update has t = 1 (its own count, as PyTorch's per-parameter state), so it moves by exactly
  // lr; with the optimizer's count t = 2 it would move by lr * (0.1 / 0.19) / sqrt(0.001 / 0.001999).
  expect_close(b, {1.1}, 1e-6);
  expect_close(a, {0.9}, 1e-6);
  CHECK(adamw.step_count == 2);
  CHECK(adamw.slots()[0].steps == 1);
  CHECK(adamw.slots()[1].steps == 1);
}

TEST_CASE("optim: a group's lr_scale scales its learning rate") {
  Tensor a = scalar_parameter(0.0), b = scalar_parameter(0.0);
  nn::SGD sgd({nn::ParamGroup{{{"a", a}}, 0.0, 1.0}, nn::ParamGroup{{{"b", b}}, 0.0, 0.25}}, 0.4);
  set_grad(a, {1.0});
  set_grad(b, {1.0});
  sgd.step();
  expect_close(a, {-0.4}, 1e-7);  // -0.4 * 1
  expect_close(b, {-0.1}, 1e-7);  // -(0.4 * 0.25) * 1
}

TEST_CASE("optim: weight-decay groups follow timm's rule") {
  TinyModel model;
  const std::vector<nn::ParamGroup> groups = nn::weight_decay_groups(model, 0.05);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].weight_decay == 0.0);
  CHECK(groups[1].weight_decay == 0.05);
  // 1-D parameters (biases, norm weights) and the special names take no decay; matrices do.
  CHECK(names_of(groups[0]) == std::vector<std::string>{"cls_token", "pos_embed", "fc.bias", "norm.weight", "norm.bias"});
  CHECK(names_of(groups[1]) == std::vector<std::string>{"fc.weight", "head.weight"});
  // The groups hold the model's own tensors, so the optimizer updates the model.
  CHECK(groups[1].params[0].second.impl() == model.fc->weight.impl());

  // The real models: the multi-dimensional parameters without decay are exactly the position embeddings
  // and the class token; every other no-decay parameter is 1-D and every decayed one is not.
  struct Case {
    std::string preset, pos_embed;
    std::vector<std::string> special;
  };
  const std::vector<Case> cases = {{"vit_cifar", "learned", {"cls_token", "pos_embed"}},
                                   {"vit_cifar", "learned_2d", {"cls_token", "pos_embed_row", "pos_embed_col"}},
                                   {"tnt_cifar", "learned", {"cls_token", "patch_pos", "pixel_pos"}}};
  for (const Case& c : cases) {
    CAPTURE(c.preset);
    CAPTURE(c.pos_embed);
    models::ModelConfig config = models::preset(c.preset);
    models::apply_override(config, "depth", "1");
    models::apply_override(config, "dim", "24");  // small and quick to initialise; the names do not change
    models::apply_override(config, "pos_embed", c.pos_embed);
    const auto real_model = models::create_model(config);
    const auto real_groups = nn::weight_decay_groups(*real_model, 0.05);
    std::vector<std::string> special;
    for (const auto& [name, tensor] : real_groups[0].params)
      if (tensor.dim() > 1) special.push_back(name);
    CHECK(special == c.special);
    for (const auto& [name, tensor] : real_groups[1].params) {
      CAPTURE(name);
      CHECK(tensor.dim() >= 2);
    }
    CHECK(real_groups[0].params.size() + real_groups[1].params.size() == real_model->named_parameters().size());
  }
}

TEST_CASE("optim: fused updates match the double references on odd sizes (float32 and float64)") {
  for (const DType dtype : {DType::f32, DType::f64}) {
    // float32 rounds each of the ~10 operations of a step at 6e-8 relative; the parameters are O(1).
    const double tolerance = dtype == DType::f32 ? 2e-6 : 1e-12;
    for (const int64_t n : {1, 7, 1031, 4099}) {  // odd sizes: vector loops end with remainders
      CAPTURE(dtype_name(dtype));
      CAPTURE(n);
      Generator generator(static_cast<uint64_t>(n));
      const Tensor param = randn({n}, dtype, generator), first = randn({n}, dtype, generator);
      const Tensor draw = randn({n}, dtype, generator);
      const Tensor second = mul(draw, draw);  // a second moment is >= 0
      const std::vector<Tensor> grads = {randn({n}, dtype, generator), randn({n}, dtype, generator),
                                         randn({n}, dtype, generator)};
      std::vector<double> p = param.to_vector(), a = first.to_vector(), b = second.to_vector();
      const std::vector<double> p0 = p, a0 = a, b0 = b;

      auto run = [&](auto kernel, auto reference) {
        Tensor pt = Tensor::from_vector(p0, {n}, dtype), at = Tensor::from_vector(a0, {n}, dtype);
        Tensor bt = Tensor::from_vector(b0, {n}, dtype);
        p = p0, a = a0, b = b0;
        for (int64_t step = 1; step <= 3; ++step) {
          kernel(pt, at, bt, grads[step - 1], step);
          reference(p, a, b, grads[step - 1].to_vector(), step);
        }
        expect_all_close(pt, p, tolerance);
        expect_all_close(at, a, tolerance);
        expect_all_close(bt, b, tolerance);
      };

      for (const bool nesterov : {false, true}) {
        const nn::SgdHyper hyper{0.05, 0.9, 0.01, nesterov};
        run([&](Tensor& pt, Tensor& at, Tensor&, const Tensor& g, int64_t) {
              if (dtype == DType::f32) nn::sgd_update_cpu(pt.data<float>(), at.data<float>(), g.data<float>(), n, hyper);
              else nn::sgd_update_cpu(pt.data<double>(), at.data<double>(), g.data<double>(), n, hyper);
            },
            [&](std::vector<double>& pr, std::vector<double>& ar, std::vector<double>&, const std::vector<double>& g,
                int64_t) { nn::sgd_update_reference(pr, ar, g, hyper); });
      }
      const nn::SgdHyper no_momentum{0.05, 0.0, 0.01, false};
      run([&](Tensor& pt, Tensor&, Tensor&, const Tensor& g, int64_t) {
            if (dtype == DType::f32) nn::sgd_update_cpu<float>(pt.data<float>(), nullptr, g.data<float>(), n, no_momentum);
            else nn::sgd_update_cpu<double>(pt.data<double>(), nullptr, g.data<double>(), n, no_momentum);
          },
          [&](std::vector<double>& pr, std::vector<double>& ar, std::vector<double>&, const std::vector<double>& g,
              int64_t) { nn::sgd_update_reference(pr, ar, g, no_momentum); });
      run([&](Tensor& pt, Tensor& at, Tensor& bt, const Tensor& g, int64_t step) {
            const nn::AdamWHyper hyper{0.01, 0.9, 0.999, 1e-8, 0.05, step};
            if (dtype == DType::f32)
              nn::adamw_update_cpu(pt.data<float>(), at.data<float>(), bt.data<float>(), g.data<float>(), n, hyper);
            else
              nn::adamw_update_cpu(pt.data<double>(), at.data<double>(), bt.data<double>(), g.data<double>(), n, hyper);
          },
          [&](std::vector<double>& pr, std::vector<double>& ar, std::vector<double>& br, const std::vector<double>& g,
              int64_t step) {
            nn::adamw_update_reference(pr, ar, br, g, nn::AdamWHyper{0.01, 0.9, 0.999, 1e-8, 0.05, step});
          });
      run([&](Tensor& pt, Tensor&, Tensor&, const Tensor& g, int64_t) {
            if (dtype == DType::f32) nn::ema_update_cpu(pt.data<float>(), g.data<float>(), n, 0.99);
            else nn::ema_update_cpu(pt.data<double>(), g.data<double>(), n, 0.99);
          },
          [&](std::vector<double>& pr, std::vector<double>&, std::vector<double>&, const std::vector<double>& g,
              int64_t) { nn::ema_update_reference(pr, g, 0.99); });

      const double got = dtype == DType::f32 ? nn::sum_of_squares_cpu(param.data<float>(), n)
                                             : nn::sum_of_squares_cpu(param.data<double>(), n);
      CHECK(got == doctest::Approx(nn::sum_of_squares_reference(param.to_vector())).epsilon(1e-12));
    }
  }
}

TEST_CASE("optim: a threaded step over many tensors matches the references tensor by tensor") {
  // One parallel loop covers all parameters end to end, so thread chunks start and stop inside tensors:
  // with 2 threads the ~36000 elements split inside the big tensor, next to tiny ones.
  const std::vector<int64_t> sizes = {7, 33001, 1, 2049, 1031};
  auto wave = [](int64_t n, double phase) {  // cheap deterministic values in [-1, 1]
    std::vector<double> values(n);
    for (int64_t i = 0; i < n; ++i) values[i] = std::sin(0.37 * static_cast<double>(i) + phase);
    return values;
  };
  Params model;
  std::vector<nn::ParamGroup> groups = {nn::ParamGroup{{}, 0.05, 1.0}, nn::ParamGroup{{}, 0.0, 0.5}};
  std::vector<std::vector<std::vector<double>>> grads;  // [step][tensor]
  for (int64_t step = 0; step < 3; ++step) {
    grads.emplace_back();
    for (size_t k = 0; k < sizes.size(); ++k) grads.back().push_back(wave(sizes[k], 1.0 + step + 0.1 * k));
  }
  for (size_t k = 0; k < sizes.size(); ++k) {
    std::string name = "p";
    name += std::to_string(k);  // not "p" + std::to_string(k): GCC 12 raises a false -Wrestrict on that
    const Tensor param = model.add(name, wave(sizes[k], 0.5 * k), {sizes[k]});
    groups[k % 2].params.emplace_back(name, param);
  }
  const nn::NamedTensors params = model.named_parameters();
  std::vector<std::vector<double>> start;
  for (const auto& [name, param] : params) start.push_back(param.to_vector());
  auto reset = [&] {
    NoGradGuard no_grad;
    for (size_t k = 0; k < params.size(); ++k) Tensor(params[k].second).copy_(Tensor::from_vector(start[k], {sizes[k]}));
  };
  auto set_grads = [&](int64_t step) {
    for (size_t k = 0; k < params.size(); ++k) set_grad(params[k].second, grads[step][k]);
  };

  // AdamW, lr 0.01: group 0 (even k) with decay 0.05, group 1 (odd k) with lr scale 0.5 and no decay.
  nn::AdamW adamw(groups, 0.01);
  for (int64_t step = 0; step < 3; ++step) {
    set_grads(step);
    adamw.step();
  }
  for (size_t k = 0; k < sizes.size(); ++k) {
    CAPTURE(k);
    std::vector<double> p = start[k], m(sizes[k], 0.0), v(sizes[k], 0.0);
    const double lr = k % 2 == 0 ? 0.01 : 0.005, weight_decay = k % 2 == 0 ? 0.05 : 0.0;
    for (int64_t step = 0; step < 3; ++step)
      nn::adamw_update_reference(p, m, v, grads[step][k], nn::AdamWHyper{lr, 0.9, 0.999, 1e-8, weight_decay, step + 1});
    expect_all_close(params[k].second, p, 2e-6);
  }

  reset();
  nn::SGD sgd(groups, 0.01, 0.9, /*nesterov=*/true);
  for (int64_t step = 0; step < 3; ++step) {
    set_grads(step);
    sgd.step();
  }
  for (size_t k = 0; k < sizes.size(); ++k) {
    CAPTURE(k);
    std::vector<double> p = start[k], buffer(sizes[k], 0.0);
    const nn::SgdHyper hyper{k % 2 == 0 ? 0.01 : 0.005, 0.9, k % 2 == 0 ? 0.05 : 0.0, true};
    for (int64_t step = 0; step < 3; ++step) nn::sgd_update_reference(p, buffer, grads[step][k], hyper);
    expect_all_close(params[k].second, p, 2e-6);
  }

  // EMA over the same tensors: start from the reset weights, then average in the first gradients as weights.
  reset();
  nn::ModelEma ema(model, 0.9);
  {
    NoGradGuard no_grad;
    for (size_t k = 0; k < params.size(); ++k) Tensor(params[k].second).copy_(Tensor::from_vector(grads[0][k], {sizes[k]}));
  }
  ema.update(model);
  for (size_t k = 0; k < sizes.size(); ++k) {
    std::vector<double> expected = start[k];
    nn::ema_update_reference(expected, grads[0][k], 0.9);
    expect_all_close(ema.named_parameters()[k].second, expected, 1e-6);
  }

  // Clipping: the norm over all tensors (of the float32 gradients, in double), every tensor scaled by one factor.
  set_grads(1);
  std::vector<std::vector<double>> float_grads;
  double sum_squares = 0;
  for (const auto& [name, param] : params) {
    float_grads.push_back(param.grad().to_vector());
    sum_squares += nn::sum_of_squares_reference(float_grads.back());
  }
  const double norm = std::sqrt(sum_squares);
  CHECK(nn::clip_grad_norm(model.parameters(), 1.0).item() == doctest::Approx(norm).epsilon(1e-12));
  for (size_t k = 0; k < sizes.size(); ++k) {
    for (double& g : float_grads[k]) g *= 1.0 / (norm + 1e-6);
    expect_all_close(params[k].second.grad(), float_grads[k], 1e-6);
  }
}

TEST_CASE("optim: clip_grad_norm returns the total norm and scales gradients above max_norm") {
  Tensor a = Tensor::zeros({2}).requires_grad_(), b = Tensor::zeros({1}).requires_grad_();
  Tensor no_grad = Tensor::zeros({3}).requires_grad_();
  set_grad(a, {3, 4});
  set_grad(b, {12});
  // norm = sqrt(9 + 16 + 144) = 13 < 20: nothing changes.
  CHECK(nn::clip_grad_norm({a, b, no_grad}, 20.0).item() == doctest::Approx(13.0).epsilon(1e-12));
  expect_close(a.grad(), {3, 4});
  // max_norm 6.5: scale = 6.5 / (13 + 1e-6) = 0.49999996, so [3, 4] -> [1.5, 2] and [12] -> [6].
  CHECK(nn::clip_grad_norm({a, b, no_grad}, 6.5).item() == doctest::Approx(13.0).epsilon(1e-12));
  expect_close(a.grad(), {1.5, 2.0}, 1e-6);
  expect_close(b.grad(), {6.0}, 1e-6);
  CHECK(!no_grad.grad().defined());
  // The clipped norm is now just under 6.5 and is returned as such.
  CHECK(nn::clip_grad_norm({a, b}, 6.5).item() == doctest::Approx(6.5).epsilon(1e-6));
  // Long gradients: squares summed in double over the threaded chunks, sqrt(100003 * 0.01) = 31.6233.
  Tensor big = Tensor::zeros({100003}).requires_grad_();
  big.set_grad(Tensor::full({100003}, 0.1));
  CHECK(nn::clip_grad_norm({big}, 100.0).item() == doctest::Approx(std::sqrt(100003 * 0.01)).epsilon(1e-7));
  CHECK(nn::clip_grad_norm({}, 1.0).item() == 0.0);
}

TEST_CASE("optim: ModelEma averages the weights as timm's ModelEmaV2") {
  Params model;
  Tensor w = model.add("w", {1, 2}, {2});
  nn::ModelEma ema(model, 0.9);
  {
    NoGradGuard no_grad;
    w.copy_(Tensor::from_vector({3, -2}, {2}));
  }
  expect_close(ema.named_parameters()[0].second, {1, 2});  // a copy, not a view of the model
  // ema = 0.9 * [1, 2] + 0.1 * [3, -2] = [1.2, 1.6]
  ema.update(model);
  expect_close(ema.named_parameters()[0].second, {1.2, 1.6}, 1e-6);
  // ema = 0.9 * [1.2, 1.6] + 0.1 * [3, -2] = [1.38, 1.24]
  ema.update(model);
  CHECK(ema.named_parameters()[0].first == "w");
  expect_close(ema.named_parameters()[0].second, {1.38, 1.24}, 1e-6);
  ema.copy_to(model);
  expect_close(w, {1.38, 1.24}, 1e-6);
}

TEST_CASE("optim: exported state resumes AdamW and SGD exactly") {
  auto make_params = [](Params& model) {
    model.add("layer.weight", {0.5, -1.0, 2.0, 0.25, -0.75, 1.5}, {2, 3});
    model.add("layer.bias", {0.1, -0.2}, {2});
  };
  auto grads_for = [](int64_t step) {
    return std::vector<std::vector<double>>{
        {std::sin(step * 1.0), std::cos(step * 2.0), 0.5, -0.25 * step, 1.0, std::sin(step + 0.3)},
        {0.3 * step, -0.7}};
  };
  auto run_steps = [&](nn::Optimizer& optimizer, const Params& model, int64_t first, int64_t last) {
    for (int64_t step = first; step < last; ++step) {
      const auto grads = grads_for(step);
      const auto params = model.named_parameters();
      for (size_t i = 0; i < params.size(); ++i) set_grad(params[i].second, grads[i]);
      optimizer.step();
    }
  };
  auto copy_params = [](const Params& from, Params& to) {
    NoGradGuard no_grad;
    const auto source = from.named_parameters(), target = to.named_parameters();
    for (size_t i = 0; i < source.size(); ++i) Tensor(target[i].second).copy_(source[i].second);
  };

  for (const std::string kind : {"AdamW", "SGD"}) {
    CAPTURE(kind);
    auto make_optimizer = [&](const Params& model) -> std::unique_ptr<nn::Optimizer> {
      const auto groups = nn::weight_decay_groups(model, 0.05);
      if (kind == "AdamW") return std::make_unique<nn::AdamW>(groups, 0.01);
      return std::make_unique<nn::SGD>(groups, 0.01, 0.9, true);
    };
    // One run of five steps, and a run stopped after three whose state and weights seed a fresh optimizer.
    Params straight, first_half, resumed;
    make_params(straight), make_params(first_half), make_params(resumed);
    auto straight_optimizer = make_optimizer(straight);
    run_steps(*straight_optimizer, straight, 0, 5);

    auto first_optimizer = make_optimizer(first_half);
    run_steps(*first_optimizer, first_half, 0, 3);
    const nn::NamedTensors state = first_optimizer->state();
    if (kind == "AdamW") {
      CHECK(state.size() == 1 + 2 * 3);
      CHECK(state[1].first == "step.layer.bias");  // groups: the 1-D bias comes first (no decay)
      CHECK(state[2].first == "exp_avg.layer.bias");
      CHECK(state[3].first == "exp_avg_sq.layer.bias");
      CHECK(state[4].first == "step.layer.weight");
    } else {
      CHECK(state.size() == 1 + 2 * 2);
      CHECK(state[2].first == "momentum_buffer.layer.bias");
    }
    CHECK(state[0].first == "step_count");
    CHECK(state[0].second.item() == 3);

    copy_params(first_half, resumed);
    auto resumed_optimizer = make_optimizer(resumed);
    resumed_optimizer->load_state(state);
    CHECK(resumed_optimizer->step_count == 3);
    run_steps(*resumed_optimizer, resumed, 3, 5);
    for (size_t i = 0; i < 2; ++i) {
      // Bit for bit: the same kernels on the same inputs.
      CHECK(resumed.named_parameters()[i].second.to_vector() == straight.named_parameters()[i].second.to_vector());
    }
    // A fresh optimizer without the state drifts from the straight run (the state matters).
    Params restarted;
    make_params(restarted);
    copy_params(first_half, restarted);
    auto restarted_optimizer = make_optimizer(restarted);
    run_steps(*restarted_optimizer, restarted, 3, 5);
    CHECK(restarted.named_parameters()[0].second.to_vector() != straight.named_parameters()[0].second.to_vector());
  }
}

TEST_CASE("optim: AdamW fits y = 3x + 1 with nn::Linear under a warm-up + cosine schedule") {
  manual_seed(0);
  nn::Linear model(1, 1);
  std::vector<double> xs, ys;
  for (int i = 0; i < 16; ++i) {
    xs.push_back(-1.0 + 2.0 * i / 15.0);
    ys.push_back(3.0 * xs.back() + 1.0);
  }
  const Tensor x = Tensor::from_vector(xs, {16, 1});  // (B, 1)
  const Tensor y = Tensor::from_vector(ys, {16, 1});  // (B, 1)
  nn::AdamW optimizer(nn::weight_decay_groups(model, 0.0), 0.1);
  const nn::LrSchedule schedule = nn::LrSchedule::cosine(0.1, 300, 10);
  double loss_value = 0;
  for (int step = 0; step < 300; ++step) {
    optimizer.lr = schedule.at(optimizer.step_count);
    const Tensor error = sub(model.forward(x), y);  // (B, 1)
    const Tensor loss = mean(mul(error, error));    // ()
    loss_value = loss.item();
    optimizer.zero_grad();
    loss.backward();
    nn::clip_grad_norm(model.parameters(), 10.0);
    optimizer.step();
  }
  INFO("final loss " << loss_value << ", weight " << model.weight.item() << ", bias " << model.bias.item());
  CHECK(loss_value < 1e-4);
  CHECK(model.weight.item() == doctest::Approx(3.0).epsilon(1e-2));
  CHECK(model.bias.item() == doctest::Approx(1.0).epsilon(1e-2));
}

TEST_CASE("schedule: warm-up then cosine, and step decay") {
  // Cosine: base 1e-3, min 1e-5, 110 steps of which 10 warm up from 0.
  const nn::LrSchedule cosine = nn::LrSchedule::cosine(1e-3, 110, 10, 1e-5);
  CHECK(cosine.at(0) == doctest::Approx(1e-4));   // 1e-3 * (0 + 1) / 10: small but nonzero
  CHECK(cosine.at(4) == doctest::Approx(5e-4));   // 1e-3 * 5 / 10
  CHECK(cosine.at(9) == doctest::Approx(1e-3));   // the last warm-up step reaches base
  CHECK(cosine.at(10) == doctest::Approx(1e-3));  // t = 0: cos(0) = 1 -> base
  // t = 50 of D = 100: cos(pi / 2) = 0 -> halfway (1e-3 + 1e-5) / 2 = 5.05e-4.
  CHECK(cosine.at(60) == doctest::Approx(5.05e-4));
  // t = 25: 1e-5 + (1e-3 - 1e-5) * (1 + cos(pi / 4)) / 2 = 1e-5 + 9.9e-4 * 0.8535534 = 8.550178e-4.
  CHECK(cosine.at(35) == doctest::Approx(8.550178e-4));
  // The last step t = 99: 1e-5 + 9.9e-4 * (1 + cos(0.99 pi)) / 2 = 1e-5 + 9.9e-4 * 2.4672e-4 = 1.02443e-5.
  CHECK(cosine.at(109) == doctest::Approx(1e-5 + 9.9e-4 * (1 + std::cos(0.99 * std::numbers::pi)) / 2));
  CHECK(cosine.at(109) > 1e-5);
  CHECK(cosine.at(110) == 1e-5);  // past the end: min_lr
  CHECK(cosine.at(1000) == 1e-5);

  // Warm-up from a nonzero start: 1e-6 + (1e-3 - 1e-6) * (s + 1) / 4.
  const nn::LrSchedule warm_start = nn::LrSchedule::cosine(1e-3, 20, 4, 0.0, 1e-6);
  CHECK(warm_start.at(0) == doctest::Approx(1e-6 + 0.999e-3 / 4));
  CHECK(warm_start.at(3) == doctest::Approx(1e-3));
  // No warm-up: step 0 is the peak.
  CHECK(nn::LrSchedule::cosine(0.5, 10).at(0) == 0.5);
  CHECK(nn::LrSchedule::cosine(0.5, 10).at(5) == doctest::Approx(0.25));  // cos(pi / 2) with min 0

  // Step decay after 5 warm-up steps: 0.1 * 0.5^floor((s - 5) / 30).
  const nn::LrSchedule step = nn::LrSchedule::step_decay(0.1, 30, 0.5, 5);
  CHECK(step.at(0) == doctest::Approx(0.02));  // 0.1 * 1 / 5
  CHECK(step.at(4) == doctest::Approx(0.1));
  CHECK(step.at(5) == doctest::Approx(0.1));
  CHECK(step.at(34) == doctest::Approx(0.1));
  CHECK(step.at(35) == doctest::Approx(0.05));
  CHECK(step.at(65) == doctest::Approx(0.025));
  CHECK(nn::LrSchedule::step_decay(0.1, 10, 0.1).at(25) == doctest::Approx(0.001));  // 0.1 * 0.1^2
}

TEST_CASE("optim: misuse fails loudly") {
  Tensor p = scalar_parameter(1.0);
  CHECK_THROWS_WITH_AS(nn::SGD(one_group(p), 0.1, 0.0, true), doctest::Contains("SGD: Nesterov momentum requires"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(nn::SGD(one_group(p), -0.1), doctest::Contains("lr must be finite and >= 0"), std::runtime_error);
  CHECK_THROWS_WITH_AS(nn::AdamW(one_group(p), 0.1, 1.0), doctest::Contains("AdamW: beta1 must be in [0, 1)"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(nn::AdamW(one_group(p, -1.0), 0.1), doctest::Contains("weight_decay must be finite and >= 0"),
                       std::runtime_error);
  // Each of these was accepted and made the weights -inf or NaN at the first step, with no error.
  CHECK_THROWS_WITH_AS(nn::SGD(one_group(p, INFINITY), 0.1), doctest::Contains("weight_decay must be finite"),
                       std::runtime_error);
  nn::ParamGroup scaled = one_group(p)[0];
  scaled.lr_scale = INFINITY;
  CHECK_THROWS_WITH_AS(nn::SGD({scaled}, 0.1), doctest::Contains("lr_scale must be finite"), std::runtime_error);
  CHECK_THROWS_WITH_AS(nn::SGD(one_group(p), 0.1, INFINITY), doctest::Contains("momentum must be finite"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(nn::AdamW(one_group(p), 0.1, 0.9, 0.999, 0.0), doctest::Contains("eps must be finite and > 0"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(nn::AdamW({nn::ParamGroup{{{"a", p}, {"b", p}}, 0.0}}, 0.1),
                       doctest::Contains("parameter 'b' appears in more than one place"), std::runtime_error);
  CHECK_THROWS_WITH_AS(nn::AdamW({nn::ParamGroup{{{"a", p}}, 0.0}, nn::ParamGroup{{{"a", scalar_parameter(2)}}, 0.0}}, 0.1),
                       doctest::Contains("parameter name 'a' appears twice"), std::runtime_error);
  CHECK_THROWS_WITH_AS(nn::AdamW({}, 0.1), doctest::Contains("AdamW: got an empty parameter list"), std::runtime_error);
  const Tensor non_leaf = mul(p, 2.0);
  CHECK_THROWS_WITH_AS(nn::SGD(one_group(non_leaf), 0.1), doctest::Contains("is not a leaf"), std::runtime_error);

  nn::AdamW adamw(one_group(p), 0.1);
  p.set_grad(Tensor::ones({2}));
  CHECK_THROWS_WITH_AS(adamw.step(), doctest::Contains("AdamW: gradient f32(2) of parameter 'w' does not match"),
                       std::runtime_error);
  p.set_grad(Tensor::ones({1}, DType::f64));
  CHECK_THROWS_WITH_AS(adamw.step(), doctest::Contains("does not match the parameter f32(1)"), std::runtime_error);
  // A failed step changes nothing: the first parameter's valid gradient was not applied either.
  Tensor first = scalar_parameter(1.0), second = scalar_parameter(1.0);
  nn::SGD two({nn::ParamGroup{{{"first", first}, {"second", second}}, 0.0}}, 0.1, 0.9);
  set_grad(first, {1.0});
  second.set_grad(Tensor::ones({3}));
  CHECK_THROWS_WITH_AS(two.step(), doctest::Contains("parameter 'second' does not match"), std::runtime_error);
  expect_close(first, {1.0});
  CHECK(two.step_count == 0);
  CHECK(two.slots()[0].steps == 0);
  expect_close(two.state()[2].second, {0.0});  // momentum_buffer.first
  second.zero_grad();
  two.step();
  expect_close(first, {0.9}, 1e-7);
  adamw.lr = std::nan("");
  CHECK_THROWS_WITH_AS(adamw.step(), doctest::Contains("lr must be finite"), std::runtime_error);

  // load_state: missing, mis-shaped, unexpected and foreign entries; a failed load changes nothing.
  Tensor q = Tensor::zeros({2, 3}).requires_grad_();
  nn::AdamW target({nn::ParamGroup{{{"layer.weight", q}}, 0.0}}, 0.1);
  nn::NamedTensors state = target.state();
  nn::NamedTensors missing(state.begin(), state.end() - 1);
  CHECK_THROWS_WITH_AS(target.load_state(missing), doctest::Contains("AdamW: load_state: missing entry 'exp_avg_sq.layer.weight'"),
                       std::runtime_error);
  nn::NamedTensors misshaped = state;
  misshaped[2].second = Tensor::ones({3, 2});
  CHECK_THROWS_WITH_AS(target.load_state(misshaped),
                       doctest::Contains("entry 'exp_avg.layer.weight' has shape (3, 2) but parameter 'layer.weight' has shape (2, 3)"),
                       std::runtime_error);
  nn::NamedTensors extra = state;
  extra.emplace_back("exp_avg.layer.bias", Tensor::zeros({3}));
  CHECK_THROWS_WITH_AS(target.load_state(extra), doctest::Contains("unexpected entry 'exp_avg.layer.bias'"), std::runtime_error);
  nn::NamedTensors bad_count = state;
  bad_count[0].second = Tensor::from_vector({-1.0}, {});
  CHECK_THROWS_WITH_AS(target.load_state(bad_count), doctest::Contains("entry 'step_count' must be a count in [0, 2^53], got -1"),
                       std::runtime_error);
  // 2.16e233 used to be cast to int64_t (UBSan: outside the range of representable values; found by fuzzing).
  bad_count[0].second = Tensor::from_vector({2.1621e233}, {}, DType::f64);
  CHECK_THROWS_WITH_AS(target.load_state(bad_count), doctest::Contains("must be a count in [0, 2^53], got 2.1621e+233"),
                       std::runtime_error);
  bad_count[0].second = Tensor::from_indices({(int64_t{1} << 53) + 2}, {});  // an integer, but past 2^53
  CHECK_THROWS_WITH_AS(target.load_state(bad_count), doctest::Contains("must be a count in [0, 2^53]"), std::runtime_error);
  nn::NamedTensors loaded_then_failed = state;
  loaded_then_failed[1].second = Tensor::from_indices({7}, {});
  loaded_then_failed.emplace_back("junk", Tensor::zeros({1}));
  CHECK_THROWS(target.load_state(loaded_then_failed));
  CHECK(target.slots()[0].steps == 0);
  nn::SGD sgd({nn::ParamGroup{{{"layer.weight", q}}, 0.0}}, 0.1, 0.9);
  CHECK_THROWS_WITH_AS(target.load_state(sgd.state()), doctest::Contains("missing entry 'exp_avg.layer.weight'"),
                       std::runtime_error);

  CHECK_THROWS_WITH_AS(nn::clip_grad_norm({p}, -1.0), doctest::Contains("clip_grad_norm: max_norm must be >= 0"),
                       std::runtime_error);

  Params model, other;
  model.add("w", {1, 2}, {2});
  other.add("v", {1, 2}, {2});
  nn::ModelEma ema(model, 0.99);
  CHECK_THROWS_WITH_AS(ema.update(other), doctest::Contains("ModelEma.update: parameter 0 is 'v' in the model, 'w' in the EMA"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(nn::ModelEma(model, 1.5), doctest::Contains("decay must be in [0, 1]"), std::runtime_error);

  CHECK_THROWS_WITH_AS(nn::LrSchedule::cosine(0.1, 10, 10), doctest::Contains("cosine needs warmup_steps < total_steps"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(nn::LrSchedule::step_decay(0.1, 0, 0.5), doctest::Contains("step_size must be >= 1"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(nn::LrSchedule::cosine(0.1, 10).at(-1), doctest::Contains("step must be >= 0"), std::runtime_error);
}

TEST_CASE("optim: a model converted after the optimizer was built is refused, not a crash in the parallel update") {
  // The update loop runs inside an OpenMP region, where an exception would call std::terminate.
  TinyModel model;
  nn::AdamW optimizer(nn::weight_decay_groups(model, 0.05), 1e-3);
  model.to(DType::f64);
  for (const Tensor& p : model.parameters()) p.set_grad(Tensor::ones(p.shape(), DType::f64));
  CHECK_THROWS_WITH_AS(optimizer.step(),
                       doctest::Contains("buffer 'exp_avg' f32(1, 1, 4) of parameter 'cls_token' does not match the "
                                         "parameter f64(1, 1, 4)"),
                       std::runtime_error);
  CHECK(optimizer.step_count == 0);
}
