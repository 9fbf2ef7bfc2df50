// vt init and vt forward: write a freshly initialised model, and run a model on a tensor from a file, so
// that anyone can compare this implementation with timm on the same weights.
#include <cstdio>
#include <filesystem>

#include "models/config.h"
#include "nn/safetensors.h"
#include "train/lib/commands.h"

namespace vt {

int command_init(const InitOptions& o) {
  const models::ModelConfig config = o.model.config();
  manual_seed(o.seed);
  const auto model = models::create_model(config);
  nn::save_weights(o.out, *model, models::config_metadata(config));
  std::printf("wrote %s: %s, %ld parameters, seed %lu\n", o.out.c_str(), config.name.c_str(),
              static_cast<long>(model->parameter_count()), static_cast<unsigned long>(o.seed));
  return 0;
}

models::ModelConfig checkpoint_config(const ModelSpec& spec, const std::string& checkpoint, int64_t image_size) {
  if (spec.name.empty() && !(spec.fields.empty() && spec.overrides.empty())) {  // they were dropped in silence
    const std::string& first = spec.fields.empty() ? spec.overrides.front() : spec.fields.front();
    fail("model config", "'" + first + "' changes a model, but no --model names one: " + checkpoint +
                             "'s metadata gives its model whole (give --model with the fields, or neither)");
  }
  models::ModelConfig config = spec.name.empty() ? models::config_from_metadata(nn::read_metadata(checkpoint)) : spec.config();
  if (image_size > 0) {
    config.image_size = image_size;
    models::validate(config);
  }
  return config;
}

int command_forward(const ForwardOptions& o) {
  const std::string &checkpoint = o.checkpoint, &input = o.input, &output = o.output;
  for (const std::string* source : {&checkpoint, &input}) {  // a slip that would replace the weights with logits
    std::error_code error;
    if (std::filesystem::equivalent(output, *source, error))
      fail("forward", "--output " + output + " is " + (source == &checkpoint ? "the checkpoint" : "the input") +
                          "; writing the logits there would replace it");
  }
  const models::ModelConfig config = checkpoint_config(o.model, checkpoint, o.image_size);
  const auto model = models::load_model(checkpoint, config);
  model->to(o.device);
  model->eval();
  Tensor x;
  for (const auto& [name, tensor] : nn::load_safetensors(input).tensors)
    if (name == "x") x = tensor;
  if (!x.defined()) fail("forward", "no tensor named 'x' in " + input);
  if (x.dim() != 4 || x.size(1) != config.in_channels || x.size(2) != config.image_size || x.size(3) != config.image_size)
    fail("forward", "x in " + input + " is " + x.str() + "; the model takes (B, " + std::to_string(config.in_channels) +
                        ", " + std::to_string(config.image_size) + ", " + std::to_string(config.image_size) + ")");
  NoGradGuard no_grad;
  const Tensor logits = model->forward(x.to(DType::f32).to(o.device));  // (B, classes)
  nn::save_safetensors(output, {{"logits", logits}}, {{"format", "pt"}});
  std::printf("wrote %s: logits %s\n", output.c_str(), shape_str(logits.shape()).c_str());
  return 0;
}

}  // namespace vt
