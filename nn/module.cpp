// Module registry: names are joined with dots depth first, so the order is the order of construction.
#include "nn/module.h"

namespace vt::nn {

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  if (!value.defined()) fail("register_parameter", "parameter '" + name + "' is undefined");
  for (const auto& [existing, tensor] : parameters_)
    if (existing == name) fail("register_parameter", "parameter '" + name + "' registered twice");
  value.requires_grad_(true);
  parameters_.emplace_back(name, value);
  return value;
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, tensor] : parameters_) out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, tensor] : named_parameters()) out.push_back(tensor);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, tensor] : named_parameters()) n += tensor.numel();
  return n;
}

void Module::zero_grad() {
  for (const auto& [name, tensor] : named_parameters()) tensor.zero_grad();
}

void Module::to(DType dtype) {
  for (auto& [name, tensor] : named_parameters()) {
    if (tensor.dtype() == dtype) continue;
    // Layers and the registry share the parameter's TensorImpl, so swapping its storage converts both.
    const Tensor converted = tensor.to(dtype);
    TensorImpl& impl = *tensor.impl();
    impl.storage = converted.storage();
    impl.strides = converted.strides();
    impl.offset = 0;
    impl.dtype = dtype;
    impl.grad = Tensor();
  }
}

void Module::train(bool training) {
  training_ = training;
  for (auto& [name, child] : children_) child->train(training);
}

}  // namespace vt::nn
