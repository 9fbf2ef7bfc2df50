// Fuzzes training-state loading: the file is read as a training state, then handed to an AdamW over a small
// model and the model's weights, as vt train --resume does.
#include <stdexcept>

#include "models/config.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto model = [] {
    vt::models::ModelConfig config = vt::models::preset("vit_cifar");
    config.dim = 8, config.heads = 2, config.depth = 1, config.num_classes = 2;
    return vt::models::create_model(config);
  }();
  const std::string path = vt::fuzz::as_file(data, size);
  try {
    const vt::nn::TrainingState state = vt::nn::load_training_state(path);
    vt::nn::AdamW optimizer(vt::nn::weight_decay_groups(*model, 0.05), 1e-3);
    vt::nn::NamedTensors weights, moments;
    for (const auto& [name, tensor] : state.tensors)
      (name.starts_with("model.") ? weights : moments).emplace_back(name.starts_with("model.") ? name.substr(6) : name, tensor);
    optimizer.load_state(moments);
    vt::nn::assign_named_tensors("resume", path, weights, model->named_parameters());
  } catch (const std::runtime_error&) {
  }
  return 0;
}
