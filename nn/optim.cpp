// Optimizers, clipping and EMA over raw parameter buffers. Conventions: every update is one fused pass per
// parameter (no temporaries, no allocation per step), computed in the parameter's dtype with the
// hyperparameters rounded to it, as PyTorch's float32 kernels do; the plain references run in double.
#include "nn/optim.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "autograd/device.h"
#include "autograd/parallel.h"
#include "autograd/text.h"
#include "ops/cuda/kernels.h"

namespace vt::nn {

constexpr int64_t kUpdateGrain = 1 << 15;  // elements below which an update stays on one thread

// Tensors laid end to end in one range of elements, tensor i covering [offsets[i], offsets[i + 1]): calls
// f(i, begin, end) with tensor-local bounds for every tensor overlapping [lo, hi). Lets one parallel loop
// cover many tensors, so ~150 parameters cost one fork and join instead of 150.
template <class F>
static void for_each_piece(const std::vector<int64_t>& offsets, int64_t lo, int64_t hi, const F& f) {
  size_t i = std::upper_bound(offsets.begin(), offsets.end(), lo) - offsets.begin() - 1;
  for (; i + 1 < offsets.size() && offsets[i] < hi; ++i) {
    const int64_t begin = std::max(lo, offsets[i]) - offsets[i];
    const int64_t end = std::min(hi, offsets[i + 1]) - offsets[i];
    if (begin < end) f(i, begin, end);
  }
}

// ---- parameter groups ----

std::vector<ParamGroup> weight_decay_groups(const Module& model, double weight_decay) {
  if (!(weight_decay >= 0) || !std::isfinite(weight_decay))
    fail("weight_decay_groups", "weight_decay must be finite and >= 0, got " + std::to_string(weight_decay));
  // timm's no_weight_decay() names for ViT and TNT; matched as substrings so that nested and 2-D
  // variants ("pos_embed_row") are caught too.
  static const std::vector<std::string> kNoWeightDecayNames = {"pos_embed", "patch_pos", "pixel_pos", "cls_token"};
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = 0.0;
  groups[1].weight_decay = weight_decay;
  for (const auto& [name, tensor] : model.named_parameters()) {
    bool no_decay = tensor.dim() <= 1;
    for (const std::string& key : kNoWeightDecayNames) no_decay = no_decay || name.find(key) != std::string::npos;
    groups[no_decay ? 0 : 1].params.emplace_back(name, tensor);
  }
  return groups;
}

// ---- fused kernels: one thread over [0, n); the callers split the work across threads ----

template <class T>
void sgd_update_cpu(T* __restrict param, T* __restrict momentum_buffer, const T* __restrict grad, int64_t n,
                    const SgdHyper& hyper) {
  // Constants in locals, not read through `hyper`: a reference could alias the arrays written, which would
  // keep the loops from vectorising. Three loops instead of branches inside one, each a straight line.
  const T lr = static_cast<T>(hyper.lr), weight_decay = static_cast<T>(hyper.weight_decay);
  const T momentum = static_cast<T>(hyper.momentum);
  if (hyper.momentum == 0) {
    for (int64_t i = 0; i < n; ++i) param[i] -= lr * (grad[i] + weight_decay * param[i]);
  } else if (hyper.nesterov) {
    for (int64_t i = 0; i < n; ++i) {
      const T g = grad[i] + weight_decay * param[i];
      const T buffer = momentum * momentum_buffer[i] + g;
      momentum_buffer[i] = buffer;
      param[i] -= lr * (g + momentum * buffer);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const T g = grad[i] + weight_decay * param[i];
      const T buffer = momentum * momentum_buffer[i] + g;
      momentum_buffer[i] = buffer;
      param[i] -= lr * buffer;
    }
  }
}

template <class T>
void adamw_update_cpu(T* __restrict param, T* __restrict exp_avg, T* __restrict exp_avg_sq, const T* __restrict grad,
                      int64_t n, const AdamWHyper& hyper) {
  // The bias corrections are per-step scalars: computed once in double, then rounded to T like every
  // other hyperparameter, as PyTorch passes Python floats to its float32 kernels.
  const double t = static_cast<double>(hyper.step);
  const T decay = static_cast<T>(1.0 - hyper.lr * hyper.weight_decay);
  const T beta1 = static_cast<T>(hyper.beta1), one_minus_beta1 = static_cast<T>(1.0 - hyper.beta1);
  const T beta2 = static_cast<T>(hyper.beta2), one_minus_beta2 = static_cast<T>(1.0 - hyper.beta2);
  const T step_size = static_cast<T>(hyper.lr / (1.0 - std::pow(hyper.beta1, t)));
  const T bias_correction2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(hyper.beta2, t)));
  const T eps = static_cast<T>(hyper.eps);
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i];
    const T m = beta1 * exp_avg[i] + one_minus_beta1 * g;
    const T v = beta2 * exp_avg_sq[i] + one_minus_beta2 * g * g;
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    // eps is added after the bias correction of sqrt(v) (PyTorch's order), so it acts on the scale of the
    // corrected second moment. GCC vectorises this loop only under -fno-math-errno: otherwise sqrt keeps a
    // scalar path that sets errno for negative inputs, and the step runs 5x slower.
    const T denominator = std::sqrt(v) / bias_correction2_sqrt + eps;
    param[i] = param[i] * decay - step_size * m / denominator;
  }
}

template <class T>
void ema_update_cpu(T* __restrict ema, const T* __restrict param, int64_t n, double decay) {
  const T keep = static_cast<T>(decay), take = static_cast<T>(1.0 - decay);
  for (int64_t i = 0; i < n; ++i) ema[i] = keep * ema[i] + take * param[i];
}

template <class T>
static void scale_cpu(T* __restrict x, int64_t n, double factor) {
  const T f = static_cast<T>(factor);
  for (int64_t i = 0; i < n; ++i) x[i] *= f;
}

template <class T>
double sum_of_squares_cpu(const T* x, int64_t n) {
  // Squares summed in double: float32 partial sums over millions of gradients would lose digits. Eight
  // accumulators break the dependency chain so the loop vectorises.
  constexpr int64_t kLanes = 8;
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] += static_cast<double>(x[i + j]) * static_cast<double>(x[i + j]);
  for (; i < n; ++i) lanes[0] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  double total = 0;
  for (double lane : lanes) total += lane;
  return total;
}

template void sgd_update_cpu<float>(float*, float*, const float*, int64_t, const SgdHyper&);
template void sgd_update_cpu<double>(double*, double*, const double*, int64_t, const SgdHyper&);
template void adamw_update_cpu<float>(float*, float*, float*, const float*, int64_t, const AdamWHyper&);
template void adamw_update_cpu<double>(double*, double*, double*, const double*, int64_t, const AdamWHyper&);
template void ema_update_cpu<float>(float*, const float*, int64_t, double);
template void ema_update_cpu<double>(double*, const double*, int64_t, double);
template double sum_of_squares_cpu<float>(const float*, int64_t);
template double sum_of_squares_cpu<double>(const double*, int64_t);

// ---- plain references: PyTorch's update rules written out one element at a time ----

void sgd_update_reference(std::vector<double>& param, std::vector<double>& momentum_buffer,
                          const std::vector<double>& grad, const SgdHyper& hyper) {
  for (size_t i = 0; i < param.size(); ++i) {
    double d = grad[i] + hyper.weight_decay * param[i];
    if (hyper.momentum != 0) {
      momentum_buffer[i] = hyper.momentum * momentum_buffer[i] + d;
      d = hyper.nesterov ? d + hyper.momentum * momentum_buffer[i] : momentum_buffer[i];
    }
    param[i] -= hyper.lr * d;
  }
}

void adamw_update_reference(std::vector<double>& param, std::vector<double>& exp_avg,
                            std::vector<double>& exp_avg_sq, const std::vector<double>& grad,
                            const AdamWHyper& hyper) {
  const double t = static_cast<double>(hyper.step);
  const double bias_correction1 = 1 - std::pow(hyper.beta1, t);
  const double bias_correction2 = 1 - std::pow(hyper.beta2, t);
  for (size_t i = 0; i < param.size(); ++i) {
    param[i] *= 1 - hyper.lr * hyper.weight_decay;
    exp_avg[i] = hyper.beta1 * exp_avg[i] + (1 - hyper.beta1) * grad[i];
    exp_avg_sq[i] = hyper.beta2 * exp_avg_sq[i] + (1 - hyper.beta2) * grad[i] * grad[i];
    const double m_hat = exp_avg[i] / bias_correction1;
    const double v_hat_sqrt = std::sqrt(exp_avg_sq[i]) / std::sqrt(bias_correction2);
    param[i] -= hyper.lr * m_hat / (v_hat_sqrt + hyper.eps);
  }
}

void ema_update_reference(std::vector<double>& ema, const std::vector<double>& param, double decay) {
  for (size_t i = 0; i < ema.size(); ++i) ema[i] = decay * ema[i] + (1 - decay) * param[i];
}

double sum_of_squares_reference(const std::vector<double>& x) {
  double total = 0;
  for (double v : x) total += v * v;
  return total;
}

// ---- Optimizer ----

static void check_parameter(const char* op, const std::string& name, const Tensor& t) {
  if (!t.defined()) fail(op, "parameter '" + name + "' is undefined");
  if (t.dtype() == DType::i64) fail(op, "parameter '" + name + "' is " + t.str() + "; optimizers need float tensors");
  if (!t.is_leaf()) fail(op, "parameter '" + name + "' is not a leaf tensor");
  if (!t.is_contiguous()) fail(op, "parameter '" + name + "' " + t.str() + " is not contiguous");
}

Optimizer::Optimizer(const char* name, const std::vector<ParamGroup>& groups, double lr_,
                     std::vector<std::string> buffer_names)
    : lr(lr_), name_(name), buffer_names_(std::move(buffer_names)) {
  if (!(lr >= 0) || !std::isfinite(lr)) fail(name_, "lr must be finite and >= 0, got " + std::to_string(lr));
  std::set<std::string> names;
  std::set<const TensorImpl*> tensors;
  for (const ParamGroup& group : groups) {
    // An infinite one made every weight -inf or NaN at the first step, with no error.
    if (!(group.weight_decay >= 0) || !std::isfinite(group.weight_decay))
      fail(name_, "weight_decay must be finite and >= 0, got " + std::to_string(group.weight_decay));
    if (!(group.lr_scale >= 0) || !std::isfinite(group.lr_scale))
      fail(name_, "lr_scale must be finite and >= 0, got " + std::to_string(group.lr_scale));
    for (const auto& [param_name, param] : group.params) {
      check_parameter(name_, param_name, param);
      // Names key the exported state, so they must be unique; one tensor in two groups would be updated twice.
      if (!names.insert(param_name).second) fail(name_, "parameter name '" + param_name + "' appears twice");
      if (!tensors.insert(param.impl()).second)
        fail(name_, "parameter '" + param_name + "' appears in more than one place in the parameter groups");
      ParamSlot slot{param_name, param, group.weight_decay, group.lr_scale, 0, {}};
      // Zero buffers are PyTorch's initial state for AdamW's moments, and for SGD's momentum they give the
      // first step's buf = g (momentum * 0 + g) with dampening 0.
      for (size_t b = 0; b < buffer_names_.size(); ++b)
        slot.buffers.push_back(Tensor::zeros(param.shape(), param.dtype(), param.device()));
      slots_.push_back(std::move(slot));
    }
  }
  if (slots_.empty()) fail(name_, "got an empty parameter list");
}

void Optimizer::step() {
  if (!(lr >= 0) || !std::isfinite(lr)) fail(name_, "lr must be finite and >= 0, got " + std::to_string(lr));
  NoGradGuard no_grad;
  // Every gradient is checked before anything changes, so a failed step leaves the optimizer as it was.
  pending_slots_.clear();
  pending_grads_.clear();
  pending_offsets_.assign(1, 0);
  for (ParamSlot& slot : slots_) {
    const Tensor grad = slot.param.grad();
    if (!grad.defined()) continue;
    if (grad.shape() != slot.param.shape() || grad.dtype() != slot.param.dtype() || grad.device() != slot.param.device())
      fail(name_, "gradient " + grad.str() + " of parameter '" + slot.name + "' does not match the parameter " +
                      slot.param.str());
    if (!grad.is_contiguous()) fail(name_, "gradient " + grad.str() + " of parameter '" + slot.name + "' is not contiguous");
    if (!slot.param.is_contiguous()) fail(name_, "parameter '" + slot.name + "' " + slot.param.str() + " is not contiguous");
    // The update runs inside a parallel region, where an exception cannot be caught: every typed access it
    // makes (a parameter converted after the optimizer was built leaves its buffers behind) is checked here.
    for (size_t b = 0; b < slot.buffers.size(); ++b)
      if (slot.buffers[b].dtype() != slot.param.dtype() || slot.buffers[b].shape() != slot.param.shape() ||
          slot.buffers[b].device() != slot.param.device())
        fail(name_, "buffer '" + buffer_names_[b] + "' " + slot.buffers[b].str() + " of parameter '" + slot.name +
                        "' does not match the parameter " + slot.param.str() +
                        " (was the model converted after the optimizer was built?)");
    if (slot.param.device() != slots_.front().param.device())
      fail(name_, "parameter '" + slot.name + "' is on " + device_name(slot.param.device()) + ", parameter '" +
                      slots_.front().name + "' on " + device_name(slots_.front().param.device()) +
                      ": an optimizer's parameters share one device");
    check_cuda_dtype(name_, slot.param);
    pending_slots_.push_back(&slot);
    pending_grads_.push_back(grad);
    pending_offsets_.push_back(pending_offsets_.back() + slot.param.numel());
  }
  for (ParamSlot* slot : pending_slots_) ++slot->steps;
  switch (slots_.front().param.device()) {
    case Device::cpu:
      parallel_for(0, pending_offsets_.back(), kUpdateGrain, [&](int64_t lo, int64_t hi) {
        for_each_piece(pending_offsets_, lo, hi, [&](size_t i, int64_t begin, int64_t end) {
          update(*pending_slots_[i], pending_grads_[i], lr * pending_slots_[i]->lr_scale, begin, end);
        });
      });
      break;
    case Device::cuda: update_cuda(pending_slots_, pending_grads_, lr); break;
  }
  // In-place writes bump the version, so a graph still holding the old values refuses to run backward.
  for (const ParamSlot* slot : pending_slots_) slot->param.bump_version();
  pending_grads_.clear();  // drops the gradient references; every vector keeps its capacity
  ++step_count;
}

void Optimizer::zero_grad() {
  for (const ParamSlot& slot : slots_) slot.param.zero_grad();
}

void Optimizer::to(Device device) {
  NoGradGuard no_grad;
  for (ParamSlot& slot : slots_)
    for (Tensor& buffer : slot.buffers) buffer = buffer.to(device);
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  out.emplace_back("step_count", Tensor::from_indices({step_count}, {}));
  for (const ParamSlot& slot : slots_) {
    out.emplace_back("step." + slot.name, Tensor::from_indices({slot.steps}, {}));
    for (size_t b = 0; b < buffer_names_.size(); ++b) out.emplace_back(buffer_names_[b] + "." + slot.name, slot.buffers[b]);
  }
  return out;
}

// A count stored as a one-element tensor of any dtype (a file format may hand it back as float).
static int64_t read_count(const char* op, const std::string& key, const Tensor& t) {
  if (t.numel() != 1) fail(op, "load_state: entry '" + key + "' must hold one count, got " + t.str());
  const double value = t.item();
  // Read through a double, which holds every integer up to 2^53 exactly; a larger count is corrupt, not a
  // long run (2^53 steps), and casting one past 2^63 to int64_t is undefined.
  if (!(value >= 0 && value <= 0x1p53) || value != std::floor(value))
    fail(op, "load_state: entry '" + key + "' must be a count in [0, 2^53], got " + shortest_text(value));
  return static_cast<int64_t>(value);
}

void Optimizer::load_state(const NamedTensors& state) {
  std::map<std::string, Tensor> entries;
  for (const auto& [key, tensor] : state) {
    if (!tensor.defined()) fail(name_, "load_state: entry '" + key + "' is undefined");
    if (!entries.emplace(key, tensor).second) fail(name_, "load_state: entry '" + key + "' appears twice");
  }
  std::set<std::string> used;
  auto take = [&](const std::string& key) -> const Tensor& {
    const auto found = entries.find(key);
    if (found == entries.end())
      fail(name_, "load_state: missing entry '" + key + "' (was the state saved by another optimizer or model?)");
    used.insert(key);
    return found->second;
  };
  // Every entry is read and checked before anything is written, so a failed load leaves the optimizer as it was.
  const int64_t new_step_count = read_count(name_, "step_count", take("step_count"));
  std::vector<int64_t> new_steps;
  std::vector<std::vector<Tensor>> new_buffers;
  for (const ParamSlot& slot : slots_) {
    new_steps.push_back(read_count(name_, "step." + slot.name, take("step." + slot.name)));
    std::vector<Tensor> buffers;
    for (const std::string& buffer_name : buffer_names_) {
      const std::string key = buffer_name + "." + slot.name;
      const Tensor& value = take(key);
      if (value.shape() != slot.param.shape())
        fail(name_, "load_state: entry '" + key + "' has shape " + shape_str(value.shape()) + " but parameter '" +
                        slot.name + "' has shape " + shape_str(slot.param.shape()));
      if (value.dtype() == DType::i64) fail(name_, "load_state: entry '" + key + "' is " + value.str() + ", not float");
      buffers.push_back(value);
    }
    new_buffers.push_back(std::move(buffers));
  }
  for (const auto& [key, tensor] : entries)
    if (!used.count(key)) fail(name_, "load_state: unexpected entry '" + key + "' (no parameter or buffer of that name)");

  NoGradGuard no_grad;
  step_count = new_step_count;
  for (size_t s = 0; s < slots_.size(); ++s) {
    slots_[s].steps = new_steps[s];
    for (size_t b = 0; b < buffer_names_.size(); ++b) slots_[s].buffers[b].copy_(new_buffers[s][b]);
  }
}

// ---- SGD ----

static std::vector<std::string> sgd_buffer_names(double momentum) {
  if (momentum == 0) return {};
  return {"momentum_buffer"};
}

SGD::SGD(const std::vector<ParamGroup>& groups, double lr_, double momentum_, bool nesterov_)
    : Optimizer("SGD", groups, lr_, sgd_buffer_names(momentum_)), momentum(momentum_), nesterov(nesterov_) {
  if (!(momentum >= 0) || !std::isfinite(momentum))
    fail(name_, "momentum must be finite and >= 0, got " + std::to_string(momentum));
  if (nesterov && momentum == 0) fail(name_, "Nesterov momentum requires a momentum > 0");
}

void SGD::update(const ParamSlot& slot, const Tensor& grad, double group_lr, int64_t begin, int64_t end) const {
  const SgdHyper hyper{group_lr, momentum, slot.weight_decay, nesterov};
  if (slot.param.dtype() == DType::f32) {
    float* buffer = momentum != 0 ? slot.buffers[0].data<float>() + begin : nullptr;
    sgd_update_cpu<float>(slot.param.data<float>() + begin, buffer, grad.data<float>() + begin, end - begin, hyper);
  } else {
    double* buffer = momentum != 0 ? slot.buffers[0].data<double>() + begin : nullptr;
    sgd_update_cpu<double>(slot.param.data<double>() + begin, buffer, grad.data<double>() + begin, end - begin, hyper);
  }
}

void SGD::update_cuda(const std::vector<ParamSlot*>& slots, const std::vector<Tensor>& grads, double group_lr) const {
  on_cuda(name_, [&] {
    std::vector<cuda::ParamUpdate> updates;
    for (size_t i = 0; i < slots.size(); ++i) {
      const ParamSlot& slot = *slots[i];
      cuda::ParamUpdate u{};
      u.param = slot.param.data<float>();
      u.grad = grads[i].data<float>();
      u.first = momentum != 0 ? slot.buffers[0].data<float>() : nullptr;
      u.n = slot.param.numel();
      u.lr = static_cast<float>(group_lr * slot.lr_scale);  // rounded as sgd_update_cpu rounds them
      u.weight_decay = static_cast<float>(slot.weight_decay);
      updates.push_back(u);
    }
    cuda::sgd_update(updates.data(), static_cast<int>(updates.size()), static_cast<float>(momentum), nesterov);
  });
}

// ---- AdamW ----

AdamW::AdamW(const std::vector<ParamGroup>& groups, double lr_, double beta1_, double beta2_, double eps_)
    : Optimizer("AdamW", groups, lr_, {"exp_avg", "exp_avg_sq"}), beta1(beta1_), beta2(beta2_), eps(eps_) {
  if (!(beta1 >= 0 && beta1 < 1)) fail(name_, "beta1 must be in [0, 1), got " + std::to_string(beta1));
  if (!(beta2 >= 0 && beta2 < 1)) fail(name_, "beta2 must be in [0, 1), got " + std::to_string(beta2));
  // eps = 0 divides 0 by 0 where a gradient and its moments are zero (a frozen row): NaN weights.
  if (!(eps > 0) || !std::isfinite(eps)) fail(name_, "eps must be finite and > 0, got " + std::to_string(eps));
}

void AdamW::update(const ParamSlot& slot, const Tensor& grad, double group_lr, int64_t begin, int64_t end) const {
  const AdamWHyper hyper{group_lr, beta1, beta2, eps, slot.weight_decay, slot.steps};
  if (slot.param.dtype() == DType::f32)
    adamw_update_cpu<float>(slot.param.data<float>() + begin, slot.buffers[0].data<float>() + begin,
                            slot.buffers[1].data<float>() + begin, grad.data<float>() + begin, end - begin, hyper);
  else
    adamw_update_cpu<double>(slot.param.data<double>() + begin, slot.buffers[0].data<double>() + begin,
                             slot.buffers[1].data<double>() + begin, grad.data<double>() + begin, end - begin, hyper);
}

void AdamW::update_cuda(const std::vector<ParamSlot*>& slots, const std::vector<Tensor>& grads, double group_lr) const {
  on_cuda(name_, [&] {
    std::vector<cuda::ParamUpdate> updates;
    for (size_t i = 0; i < slots.size(); ++i) {
      const ParamSlot& slot = *slots[i];
      // The per-parameter scalars computed in double and rounded to float, as adamw_update_cpu does.
      const double lr = group_lr * slot.lr_scale, t = static_cast<double>(slot.steps);
      cuda::ParamUpdate u{};
      u.param = slot.param.data<float>();
      u.grad = grads[i].data<float>();
      u.first = slot.buffers[0].data<float>();
      u.second = slot.buffers[1].data<float>();
      u.n = slot.param.numel();
      u.decay = static_cast<float>(1.0 - lr * slot.weight_decay);
      u.step_size = static_cast<float>(lr / (1.0 - std::pow(beta1, t)));
      u.bias_correction2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(beta2, t)));
      updates.push_back(u);
    }
    const cuda::AdamWConstants constants{static_cast<float>(beta1), static_cast<float>(1.0 - beta1),
                                         static_cast<float>(beta2), static_cast<float>(1.0 - beta2),
                                         static_cast<float>(eps)};
    cuda::adamw_update(updates.data(), static_cast<int>(updates.size()), constants);
  });
}

// ---- gradient clipping ----

// The squares summed in chunks on the CPU threads; see clip_grad_norm.
static double clip_grad_norm_cpu(const std::vector<Tensor>& grads, const std::vector<int64_t>& offsets, double max_norm) {
  auto sum_of_squares = [&](size_t i, int64_t begin, int64_t end) {
    const Tensor& grad = grads[i];
    return grad.dtype() == DType::f32 ? sum_of_squares_cpu(grad.data<float>() + begin, end - begin)
                                      : sum_of_squares_cpu(grad.data<double>() + begin, end - begin);
  };
  // At most kChunks chunks of the whole range, whose bounds depend on the sizes only, so the sum (and the
  // norm) does not depend on the thread count.
  constexpr int64_t kChunks = 64;
  const int64_t total = offsets.back();
  const int64_t chunk = std::max<int64_t>(kUpdateGrain, (total + kChunks - 1) / kChunks);
  const int64_t chunks = (total + chunk - 1) / chunk;
  double partial[kChunks] = {};
  parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c)
      for_each_piece(offsets, c * chunk, std::min(total, (c + 1) * chunk),
                     [&](size_t i, int64_t begin, int64_t end) { partial[c] += sum_of_squares(i, begin, end); });
  });
  double sum_squares = 0;
  for (int64_t c = 0; c < chunks; ++c) sum_squares += partial[c];
  const double total_norm = std::sqrt(sum_squares);
  // The 1e-6 keeps the factor finite for a zero norm and makes the clipped norm land just under max_norm.
  // A NaN norm compares false and leaves the gradients as they are, for the caller to detect.
  const double scale = max_norm / (total_norm + 1e-6);
  if (scale < 1) {
    parallel_for(0, total, kUpdateGrain, [&](int64_t lo, int64_t hi) {
      for_each_piece(offsets, lo, hi, [&](size_t i, int64_t begin, int64_t end) {
        const Tensor& grad = grads[i];
        if (grad.dtype() == DType::f32)
          scale_cpu(grad.data<float>() + begin, end - begin, scale);
        else
          scale_cpu(grad.data<double>() + begin, end - begin, scale);
      });
    });
  }
  return total_norm;
}

Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  if (!(max_norm >= 0)) fail("clip_grad_norm", "max_norm must be >= 0, got " + std::to_string(max_norm));
  std::vector<Tensor> grads;
  std::vector<int64_t> offsets = {0};
  for (const Tensor& param : params) {
    if (!param.defined()) fail("clip_grad_norm", "undefined parameter");
    const Tensor grad = param.grad();
    if (!grad.defined()) continue;
    if (!grad.is_contiguous()) fail("clip_grad_norm", "gradient " + grad.str() + " is not contiguous");
    if (grad.dtype() == DType::i64) fail("clip_grad_norm", "gradient " + grad.str() + " is not float");
    if (!grads.empty()) check_same_device("clip_grad_norm", {grads.front(), grad});
    check_cuda_dtype("clip_grad_norm", grad);
    grads.push_back(grad);
    offsets.push_back(offsets.back() + grad.numel());
  }
  const Device device = grads.empty() ? Device::cpu : grads.front().device();
  Tensor norm;  // ()
  switch (device) {
    case Device::cpu: norm = Tensor::scalar(clip_grad_norm_cpu(grads, offsets, max_norm), DType::f64); break;
    case Device::cuda:
      norm = Tensor::empty({}, DType::f32, device);
      on_cuda("clip_grad_norm", [&] {
        std::vector<float*> pointers;
        std::vector<int64_t> sizes;
        for (const Tensor& grad : grads) pointers.push_back(grad.data<float>()), sizes.push_back(grad.numel());
        cuda::clip_grad_norm(norm.data<float>(), pointers.data(), sizes.data(), static_cast<int>(grads.size()), max_norm);
      });
      break;
  }
  for (const Tensor& grad : grads) grad.bump_version();
  return norm;
}

// ---- ModelEma ----

static void check_same_parameters(const char* op, const NamedTensors& ema, const NamedTensors& model) {
  if (ema.size() != model.size())
    fail(op, "the model has " + std::to_string(model.size()) + " parameters, the EMA " + std::to_string(ema.size()));
  for (size_t i = 0; i < ema.size(); ++i) {
    const auto& [ema_name, ema_tensor] = ema[i];
    const auto& [name, tensor] = model[i];
    if (name != ema_name) fail(op, "parameter " + std::to_string(i) + " is '" + name + "' in the model, '" + ema_name + "' in the EMA");
    if (tensor.shape() != ema_tensor.shape() || tensor.dtype() != ema_tensor.dtype())
      fail(op, "parameter '" + name + "' is " + tensor.str() + " in the model, " + ema_tensor.str() + " in the EMA");
  }
}

ModelEma::ModelEma(const Module& model, double decay_) : decay(decay_) {
  if (!(decay >= 0 && decay <= 1)) fail("ModelEma", "decay must be in [0, 1], got " + std::to_string(decay));
  for (const auto& [name, tensor] : model.named_parameters()) {
    check_parameter("ModelEma", name, tensor);
    weights_.emplace_back(name, tensor.detach().clone());
  }
}

void ModelEma::update(const Module& model) {
  const NamedTensors params = model.named_parameters();
  check_same_parameters("ModelEma.update", weights_, params);
  std::vector<int64_t> offsets = {0};
  for (const auto& [name, param] : params) {
    if (!param.is_contiguous()) fail("ModelEma.update", "parameter '" + name + "' is not contiguous");
    check_same_device("ModelEma.update", {param, weights_[offsets.size() - 1].second});
    offsets.push_back(offsets.back() + param.numel());
  }
  switch (params.empty() ? Device::cpu : params.front().second.device()) {
    case Device::cpu:
      parallel_for(0, offsets.back(), kUpdateGrain, [&](int64_t lo, int64_t hi) {
        for_each_piece(offsets, lo, hi, [&](size_t i, int64_t begin, int64_t end) {
          const Tensor& ema = weights_[i].second;
          const Tensor& param = params[i].second;
          if (param.dtype() == DType::f32)
            ema_update_cpu(ema.data<float>() + begin, param.data<float>() + begin, end - begin, decay);
          else
            ema_update_cpu(ema.data<double>() + begin, param.data<double>() + begin, end - begin, decay);
        });
      });
      break;
    case Device::cuda:
      on_cuda("ModelEma.update", [&] {
        std::vector<float*> averages;
        std::vector<const float*> sources;
        std::vector<int64_t> sizes;
        for (size_t i = 0; i < params.size(); ++i) {
          averages.push_back(weights_[i].second.data<float>());
          sources.push_back(params[i].second.data<float>());
          sizes.push_back(params[i].second.numel());
        }
        cuda::ema_update(averages.data(), sources.data(), sizes.data(), static_cast<int>(params.size()), decay);
      });
      break;
  }
  for (const auto& [name, ema] : weights_) ema.bump_version();
}

void ModelEma::to(Device device) {
  NoGradGuard no_grad;
  for (auto& [name, tensor] : weights_) tensor = tensor.to(device);
}

void ModelEma::copy_to(Module& model) const {
  const NamedTensors params = model.named_parameters();
  check_same_parameters("ModelEma.copy_to", weights_, params);
  NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) Tensor(params[i].second).copy_(weights_[i].second);
}

}  // namespace vt::nn
