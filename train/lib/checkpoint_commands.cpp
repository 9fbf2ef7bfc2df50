// vt init and vt forward: write a freshly initialised model, and run a model on a tensor from a file, so
// that anyone can compare this implementation with timm on the same weights.
#include <cstdio>

#include "models/config.h"
#include "nn/safetensors.h"
#include "train/lib/commands.h"

namespace vt {

int command_init(Args& args) {
  const models::ModelConfig config = config_from_args(args);
  const uint64_t seed = static_cast<uint64_t>(args.get_int("seed", 0));
  const std::string out = args.require("out");
  args.finish();
  manual_seed(seed);
  const auto model = models::create_model(config);
  nn::save_weights(out, *model, models::config_metadata(config));
  std::printf("wrote %s: %s, %ld parameters, seed %lu\n", out.c_str(), config.name.c_str(),
              static_cast<long>(model->parameter_count()), static_cast<unsigned long>(seed));
  return 0;
}

// The model of a checkpoint: from --model and overrides when given, else from the file's metadata.
models::ModelConfig checkpoint_config(Args& args, const std::string& checkpoint) {
  if (!args.get("model", "").empty()) return config_from_args(args);
  return models::config_from_metadata(nn::read_metadata(checkpoint));
}

int command_forward(Args& args) {
  const std::string checkpoint = args.require("checkpoint");
  const std::string input = args.require("input"), output = args.require("output");
  const models::ModelConfig config = checkpoint_config(args, checkpoint);
  args.finish();
  const auto model = models::load_model(checkpoint, config);
  model->eval();
  Tensor x;
  for (const auto& [name, tensor] : nn::load_safetensors(input).tensors)
    if (name == "x") x = tensor;
  if (!x.defined()) fail("forward", "no tensor named 'x' in " + input);
  if (x.dim() != 4 || x.size(1) != config.in_channels || x.size(2) != config.image_size || x.size(3) != config.image_size)
    fail("forward", "x in " + input + " is " + x.str() + "; the model takes (B, " + std::to_string(config.in_channels) +
                        ", " + std::to_string(config.image_size) + ", " + std::to_string(config.image_size) + ")");
  NoGradGuard no_grad;
  const Tensor logits = model->forward(x.to(DType::f32));  // (B, classes)
  nn::save_safetensors(output, {{"logits", logits}}, {{"format", "pt"}});
  std::printf("wrote %s: logits %s\n", output.c_str(), shape_str(logits.shape()).c_str());
  return 0;
}

}  // namespace vt
