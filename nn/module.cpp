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

Tensor Module::register_buffer(Tensor value) {
  if (!value.defined()) fail("register_buffer", "undefined buffer");
  buffers_.push_back(value);
  return value;
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, tensor] : parameters_) out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

void Module::collect_buffers(std::vector<Tensor>& out) const {
  out.insert(out.end(), buffers_.begin(), buffers_.end());
  for (const auto& [name, child] : children_) child->collect_buffers(out);
}

// Points `tensor`'s TensorImpl at `converted`'s memory, so that every holder of the tensor sees the change.
static void replace_storage(const Tensor& tensor, const Tensor& converted) {
  TensorImpl& impl = *tensor.impl();
  impl.storage = converted.storage();
  impl.strides = converted.strides();
  impl.offset = converted.offset();
  impl.dtype = converted.dtype();
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
  NoGradGuard no_grad;
  std::vector<Tensor> tensors;
  for (auto& [name, tensor] : named_parameters()) tensors.push_back(tensor);
  collect_buffers(tensors);
  for (const Tensor& tensor : tensors) {
    if (tensor.dtype() == dtype) continue;
    replace_storage(tensor, tensor.to(dtype));
    tensor.zero_grad();
  }
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  for (auto& [name, tensor] : named_parameters()) {
    if (tensor.device() == device) continue;
    const Tensor grad = tensor.grad();
    replace_storage(tensor, tensor.to(device));
    if (grad.defined()) tensor.set_grad(grad.to(device));
  }
  std::vector<Tensor> buffers;
  collect_buffers(buffers);
  for (const Tensor& buffer : buffers)
    if (buffer.device() != device) replace_storage(buffer, buffer.to(device));
}

void Module::train(bool training) {
  training_ = training;
  for (auto& [name, child] : children_) child->train(training);
}

}  // namespace vt::nn
