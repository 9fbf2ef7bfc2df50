// vt info: a model's architecture summary, parameter count and multiply-adds per image.
#include <cstdio>
#include <cstdlib>

#include "autograd/blas.h"
#include "autograd/device.h"
#include "autograd/gemm_bf16.h"
#include "autograd/json.h"
#include "autograd/parallel.h"
#include "models/config.h"
#include "train/lib/commands.h"

namespace vt {

namespace {

// Parameters per top-level entry ("blocks.3.attn.qkv.weight" counts towards "blocks").
std::vector<std::pair<std::string, int64_t>> parameters_by_part(const nn::Module& model) {
  std::vector<std::pair<std::string, int64_t>> parts;
  for (const auto& [name, tensor] : model.named_parameters()) {
    const std::string part = name.substr(0, name.find('.'));
    if (parts.empty() || parts.back().first != part) parts.emplace_back(part, 0);
    parts.back().second += tensor.numel();
  }
  return parts;
}

}  // namespace

int command_info(const InfoOptions& o) {
  const models::ModelConfig config = o.model.config();
  const bool json = o.json;
  const auto model = models::create_model(config);
  const int64_t params = model->parameter_count();
  const double gmacs = models::macs_per_image(config) / 1e9, computed = models::computed_macs_per_image(config) / 1e9;
  const auto fields = models::to_map(config);
  if (json) {
    std::printf("{");
    for (const auto& [key, value] : fields) {
      char* end = nullptr;
      std::strtod(value.c_str(), &end);
      const bool number = !value.empty() && *end == '\0';
      std::string text;  // a name's control characters escaped, so that the output stays JSON
      if (number) text = value;
      else append_json_string(text, value);
      std::printf("\"%s\": %s, ", key.c_str(), text.c_str());
    }
    std::printf("\"parameters_by_part\": {");
    const auto parts = parameters_by_part(*model);
    for (size_t i = 0; i < parts.size(); ++i)
      std::printf("%s\"%s\": %ld", i ? ", " : "", parts[i].first.c_str(), static_cast<long>(parts[i].second));
    std::printf("}, \"params\": %ld, \"gmacs\": %.6f, \"computed_gmacs\": %.6f}\n", static_cast<long>(params), gmacs,
                computed);
    return 0;
  }
  std::printf("backends: cpu (OpenBLAS %s, %d threads, bf16 matmuls: %s); cuda: %s\n", blas_core_name().c_str(),
              num_threads(), best_bf16_kernel() == Bf16Kernel::none ? "none, no AMX or AVX512-BF16" : bf16_kernel_name(best_bf16_kernel()),
              kCudaBuild ? cuda_description().c_str() : "not in this build");
  std::printf("model: %s (%s)\n", config.name.c_str(), config.arch == "vit" ? "Vision Transformer" : "Transformer in Transformer");
  std::printf("input: %ldx%ld, %ld channels; %ldx%ld patches -> %ld tokens + class token; %ld classes\n",
              static_cast<long>(config.image_size), static_cast<long>(config.image_size), static_cast<long>(config.in_channels),
              static_cast<long>(config.patch_size), static_cast<long>(config.patch_size),
              static_cast<long>(config.num_patches()), static_cast<long>(config.num_classes));
  std::printf("outer transformer: dim %ld, depth %ld, heads %ld, mlp ratio %g\n", static_cast<long>(config.dim),
              static_cast<long>(config.depth), static_cast<long>(config.heads), config.mlp_ratio);
  if (config.arch == "tnt")
    std::printf("inner transformer: %ld pixel tokens of dim %ld per patch (pixel stride %ld, %ldx%ld conv), heads %ld\n",
                static_cast<long>(config.pixel_grid() * config.pixel_grid()), static_cast<long>(config.inner_dim),
                static_cast<long>(config.pixel_stride), static_cast<long>(config.pixel_kernel),
                static_cast<long>(config.pixel_kernel), static_cast<long>(config.inner_heads));
  std::printf("position embedding: %s; pooling: %s; head: %s; drop rate %g, drop-path rate %g\n",
              fields.at("pos_embed").c_str(), fields.at("pool").c_str(), fields.at("head").c_str(), config.drop_rate,
              config.drop_path_rate);
  std::printf("parameters by part:\n");
  for (const auto& [part, count] : parameters_by_part(*model))
    std::printf("  %-14s %12ld\n", part.c_str(), static_cast<long>(count));
  std::printf("params: %ld\n", static_cast<long>(params));
  std::printf("gmacs: %.4f\n", gmacs);
  if (computed != gmacs)
    std::printf("computed gmacs: %.4f (the last block's projection and MLP on the class token alone)\n", computed);
  return 0;
}

}  // namespace vt
