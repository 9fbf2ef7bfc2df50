// Module: the base of every layer and model. Conventions: parameters and child modules are registered in
// construction order under the names timm uses, so named_parameters() yields timm's state_dict keys
// ("blocks.0.attn.qkv.weight") in a stable order; train()/eval() reach every child.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ops/ops.h"

namespace vt::nn {

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter, depth first in registration order, with its dotted name.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  int64_t parameter_count() const;
  void zero_grad();

  // Converts every parameter and buffer to `dtype` in place (float64 models for gradient checks); gradients
  // are dropped.
  void to(DType dtype);
  // Moves every parameter, its gradient and every buffer to `device` in place: the layers that hold them see
  // the move, since they share the tensors' TensorImpl with the registry. An optimizer or EMA built over the
  // parameters moves with its own to(Device).
  void to(Device device);

  void train(bool training = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Registers a parameter (it is made a leaf that requires grad) and returns it.
  Tensor register_parameter(const std::string& name, Tensor value);
  // Registers a constant tensor the module uses (a sin-cos table): it moves with the module, is not trained,
  // and is not part of the checkpoint (timm's state_dict has no such entry).
  Tensor register_buffer(Tensor value);

 protected:
  // Registers a child module; an empty pointer is allowed and skipped (an optional layer).
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    if (module) children_.emplace_back(name, module);
    return module;
  }
  bool training_ = true;

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;
  void collect_buffers(std::vector<Tensor>& out) const;
  std::vector<std::pair<std::string, Tensor>> parameters_;
  std::vector<Tensor> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace vt::nn
