// Model configurations: the named presets (timm's names and shapes, plus the CIFAR-10 presets), the
// overrides any preset takes ("dim=256"), and the analytic multiply-add count of a forward pass.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nn/embedding.h"
#include "nn/module.h"

namespace vt::models {

using nn::PosEmbed;  // learned, learned_2d, sincos_2d, none
enum class Pooling { cls, mean };
enum class Head { linear, mlp };  // mlp: Linear -> tanh -> Linear, the ViT paper's pre-training head

struct ModelConfig {
  std::string name;
  std::string arch = "vit";  // "vit" or "tnt"
  int64_t image_size = 224, patch_size = 16, in_channels = 3, num_classes = 1000;
  int64_t dim = 768, depth = 12, heads = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  // TNT's inner transformer: pixel tokens of inner_dim channels on a grid of patch_size / pixel_stride,
  // embedded by a conv of pixel_kernel with padding pixel_kernel / 2 inside each patch.
  int64_t inner_dim = 40, inner_heads = 4, pixel_stride = 4, pixel_kernel = 7;
  double inner_mlp_ratio = 4.0;
  PosEmbed pos_embed = PosEmbed::learned;
  Pooling pool = Pooling::cls;
  Head head = Head::linear;
  int64_t head_hidden = 0;  // width of the MLP head's hidden layer (0: dim)
  // ViT's patch embedding: 0 for timm's patchify conv, S > 0 for a convolutional stem whose first conv has S
  // channels (nn::PatchEmbed); not part of timm's ViT, so such a model has no timm counterpart.
  int64_t stem_channels = 0;
  double drop_rate = 0.0, drop_path_rate = 0.0;
  double norm_eps = 1e-6;  // LayerNorm eps: timm's ViT uses 1e-6, its TNT PyTorch's default 1e-5

  int64_t grid() const { return image_size / patch_size; }       // patches per side
  int64_t num_patches() const { return grid() * grid(); }
  int64_t pixel_grid() const { return patch_size / pixel_stride; }  // TNT: pixels per patch side
};

ModelConfig preset(const std::string& name);
std::vector<std::string> preset_names();
// Applies one "key=value" override (any key of to_map), checking the value's type and range.
void apply_override(ModelConfig& config, const std::string& key, const std::string& value);
// Checks every field's range and the fields together (divisibility, the model's size).
void validate(const ModelConfig& config);
std::map<std::string, std::string> to_map(const ModelConfig& config);  // every field, as overrides
ModelConfig from_map(const std::map<std::string, std::string>& fields);  // inverse of to_map

// The number of parameters create_model(config) has, counted from the config without building the model:
// how a checkpoint's tensors are checked against its metadata before anything is allocated.
double parameter_count(const ModelConfig& config);

// Multiply-adds of one image's forward pass: every Linear, conv and attention product (q k^T and P v),
// the convention of timm's model cards (fvcore): norms, softmax and activations are not counted.
double macs_per_image(const ModelConfig& config);
// The multiply-adds vt's forward does: with class-token pooling the last block's output projection and MLP
// run on the class token alone (nn::Block's class_token_only), N fewer rows than macs_per_image counts.
double computed_macs_per_image(const ModelConfig& config);

// An image classifier built from the config: images (B, C, H, W) -> logits (B, classes).
class Classifier : public nn::Module {
 public:
  explicit Classifier(ModelConfig config) : config(std::move(config)) {}
  virtual Tensor forward(const Tensor& images) const = 0;
  const ModelConfig config;
};

std::shared_ptr<Classifier> create_model(const ModelConfig& config);
// The model `config` describes with the weights of `checkpoint`. The file's header is checked against
// parameter_count(config) before the model is built, so that metadata describing a huge model over a small
// file fails at once instead of allocating and initialising the huge model first. A checkpoint trained at
// another image size (config.image_size set to a new one) gets its learned position embedding resampled to
// the new patch grid, bicubically as timm does (nn::resample_position_table).
std::shared_ptr<Classifier> load_model(const std::string& checkpoint, const ModelConfig& config);
// The same into an existing model: vt train --init-from.
void load_weights_at_size(const std::string& checkpoint, Classifier& model);

// Checkpoint metadata: {"format": "pt", "vt.model.<field>": value, ...} (Hugging Face files carry "format"),
// so that a checkpoint alone says which model it holds.
std::map<std::string, std::string> config_metadata(const ModelConfig& config);
bool has_config_metadata(const std::map<std::string, std::string>& metadata);
ModelConfig config_from_metadata(const std::map<std::string, std::string>& metadata);

}  // namespace vt::models
