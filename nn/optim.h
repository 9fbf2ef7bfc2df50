// Optimizers (SGD, AdamW), weight-decay parameter groups, gradient clipping and weight EMA, with PyTorch's
// and timm's semantics. Conventions: parameters are contiguous float32 (or, on the CPU, float64) leaves on one
// device, updated in place under NoGradGuard: on the CPU by one fused pass each, split across the threads
// together; on the GPU by one launch for all of them. A parameter whose .grad() is undefined is skipped.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace vt::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// ---- parameter groups ----

// Parameters sharing hyperparameters; the group's learning rate is the optimizer's lr * lr_scale
// (timm's layer-wise lr decay sets lr_scale per group).
struct ParamGroup {
  NamedTensors params;
  double weight_decay = 0.0;
  double lr_scale = 1.0;
};

// timm's param_groups_weight_decay: group 0 takes weight decay 0 and holds every 1-D parameter (biases,
// norm weights) and every parameter named in the no-weight-decay list (names containing "pos_embed",
// "patch_pos", "pixel_pos" or "cls_token"); group 1 holds the rest with `weight_decay`. Both groups are
// returned, possibly empty, in the model's parameter order.
std::vector<ParamGroup> weight_decay_groups(const Module& model, double weight_decay);

// ---- optimizers ----

// The optimizer's state for one parameter: its name and tensor, its group's hyperparameters, how many
// updates it received (AdamW's bias correction counts per parameter, as PyTorch does), and its buffers
// ("exp_avg", "exp_avg_sq" or "momentum_buffer", with the parameter's shape and dtype).
struct ParamSlot {
  std::string name;
  Tensor param;
  double weight_decay;
  double lr_scale;
  int64_t steps = 0;
  std::vector<Tensor> buffers;
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Updates every parameter that has a gradient, then counts the step. All parameters' elements are
  // split across the threads in one parallel loop, so ~150 small tensors cost one fork and join, not 150.
  void step();
  // Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();
  // Moves the state (moments, momentum buffers) to `device`, after the model's parameters moved there.
  void to(Device device);

  // Named state for an exact resume: "step_count" (i64 scalar), then per parameter "step.NAME" (i64
  // scalar) and one "BUFFER.NAME" per buffer (e.g. "exp_avg.blocks.0.attn.qkv.weight"). The buffers are
  // the live tensors, not copies: write them out before the next step. lr is not part of the state: it is
  // a function of step_count given by the schedule.
  NamedTensors state() const;
  // Restores what state() exported from an optimizer of the same kind over the same parameter names and
  // shapes; every entry is checked (missing, unexpected, mis-shaped, wrong dtype) before any is copied.
  void load_state(const NamedTensors& state);

  const std::vector<ParamSlot>& slots() const { return slots_; }

  double lr;               // set it from the schedule before each step
  int64_t step_count = 0;  // completed step() calls

 protected:
  Optimizer(const char* name, const std::vector<ParamGroup>& groups, double lr, std::vector<std::string> buffer_names);
  // Applies the update rule to elements [begin, end) of one parameter (a piece of it or all of it), its
  // gradient and its buffers, with the group's learning rate. Runs inside the step's parallel loop.
  virtual void update(const ParamSlot& slot, const Tensor& grad, double lr, int64_t begin, int64_t end) const = 0;
  // The same rule for every pending parameter at once, on the GPU (float32).
  virtual void update_cuda(const std::vector<ParamSlot*>& slots, const std::vector<Tensor>& grads, double lr) const = 0;

  const char* name_;

 private:
  std::vector<std::string> buffer_names_;
  std::vector<ParamSlot> slots_;
  // The parameters updated in this step, their gradients, and where each starts in the step's range of
  // elements (one more entry: the total). Reused from step to step: no allocation once they have grown.
  std::vector<ParamSlot*> pending_slots_;
  std::vector<Tensor> pending_grads_;
  std::vector<int64_t> pending_offsets_;
};

// PyTorch's SGD with dampening 0: g = grad + weight_decay * p; buf = momentum * buf + g (the first step
// sets buf = g, which a zero-initialised buffer gives for free); d = nesterov ? g + momentum * buf : buf;
// p -= lr * d. Buffer: "momentum_buffer" (none when momentum is 0).
class SGD : public Optimizer {
 public:
  SGD(const std::vector<ParamGroup>& groups, double lr, double momentum = 0.0, bool nesterov = false);
  const double momentum;
  const bool nesterov;

 protected:
  void update(const ParamSlot& slot, const Tensor& grad, double lr, int64_t begin, int64_t end) const override;
  void update_cuda(const std::vector<ParamSlot*>& slots, const std::vector<Tensor>& grads, double lr) const override;
};

// PyTorch's AdamW (decoupled weight decay), in its order: p *= 1 - lr * wd; m = b1 m + (1 - b1) g;
// v = b2 v + (1 - b2) g^2; p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), with t the
// parameter's own step count. Buffers: "exp_avg" (m) and "exp_avg_sq" (v).
class AdamW : public Optimizer {
 public:
  AdamW(const std::vector<ParamGroup>& groups, double lr, double beta1 = 0.9, double beta2 = 0.999,
        double eps = 1e-8);
  const double beta1, beta2, eps;

 protected:
  void update(const ParamSlot& slot, const Tensor& grad, double lr, int64_t begin, int64_t end) const override;
  void update_cuda(const std::vector<ParamSlot*>& slots, const std::vector<Tensor>& grads, double lr) const override;
};

// ---- gradient clipping ----

// torch.nn.utils.clip_grad_norm_ with the L2 norm: the norm of all gradients together (squares summed in
// double), and when it exceeds max_norm every gradient scaled in place by max_norm / (norm + 1e-6).
// Parameters without a gradient are skipped. The norm comes back as a 0-dim tensor on the gradients' device
// (float64 on the CPU, float32 on the GPU): on the GPU it is decided and applied there, and only .item()
// brings it to the host.
Tensor clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// ---- exponential moving average of weights ----

// timm's ModelEmaV2: a copy of the parameters updated after each step by ema = decay * ema + (1 - decay) * p.
class ModelEma {
 public:
  ModelEma(const Module& model, double decay);
  void update(const Module& model);
  NamedTensors named_parameters() const { return weights_; }  // the averaged weights, under the model's names
  void copy_to(Module& model) const;                           // writes the averaged weights into the model
  void to(Device device);                                      // after the model moved there
  const double decay;

 private:
  NamedTensors weights_;
};

// ---- fused kernels and their plain references (callable from tests) ----

struct SgdHyper {
  double lr, momentum, weight_decay;
  bool nesterov;
};

struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // the parameter's step count including this update (>= 1)
};

// One pass over n elements on the calling thread (the callers split many tensors across threads at once);
// momentum_buffer is unused (may be null) when hyper.momentum is 0.
template <class T>
void sgd_update_cpu(T* param, T* momentum_buffer, const T* grad, int64_t n, const SgdHyper& hyper);
template <class T>
void adamw_update_cpu(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, int64_t n, const AdamWHyper& hyper);
template <class T>
void ema_update_cpu(T* ema, const T* param, int64_t n, double decay);
template <class T>
double sum_of_squares_cpu(const T* x, int64_t n);  // accumulates in double

void sgd_update_reference(std::vector<double>& param, std::vector<double>& momentum_buffer,
                          const std::vector<double>& grad, const SgdHyper& hyper);
void adamw_update_reference(std::vector<double>& param, std::vector<double>& exp_avg,
                            std::vector<double>& exp_avg_sq, const std::vector<double>& grad,
                            const AdamWHyper& hyper);
void ema_update_reference(std::vector<double>& ema, const std::vector<double>& param, double decay);
double sum_of_squares_reference(const std::vector<double>& x);

}  // namespace vt::nn
