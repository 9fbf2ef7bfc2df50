// Presets, overrides and multiply-add counts. The timm presets reproduce timm's shapes (and so its
// parameter counts); the CIFAR presets are sized so that ViT and TNT have about the same parameters.
#include "models/config.h"

#include <cmath>
#include <cstdlib>
#include <functional>

#include "autograd/text.h"
#include "models/tnt.h"
#include "models/vit.h"

namespace vt::models {

namespace {

ModelConfig vit(const std::string& name, int64_t dim, int64_t depth, int64_t heads) {
  ModelConfig c;
  c.name = name, c.arch = "vit", c.dim = dim, c.depth = depth, c.heads = heads;
  return c;
}

ModelConfig tnt(const std::string& name, int64_t dim, int64_t inner_dim, int64_t heads) {
  ModelConfig c;
  c.name = name, c.arch = "tnt", c.dim = dim, c.depth = 12, c.heads = heads;
  c.inner_dim = inner_dim, c.inner_heads = 4, c.pixel_stride = 4, c.pixel_kernel = 7, c.qkv_bias = false;
  c.norm_eps = 1e-5;
  return c;
}

// CIFAR-10: 32x32 images cut into 4x4 patches (an 8x8 grid, 64 tokens + the class token).
ModelConfig cifar(ModelConfig c) {
  c.image_size = 32, c.patch_size = 4, c.num_classes = 10, c.drop_path_rate = 0.1;
  return c;
}

const std::vector<ModelConfig>& presets() {
  static const std::vector<ModelConfig> all = [] {
    std::vector<ModelConfig> p = {
        vit("vit_tiny_patch16_224", 192, 12, 3),
        vit("vit_small_patch16_224", 384, 12, 6),
        vit("vit_base_patch16_224", 768, 12, 12),
        tnt("tnt_s_patch16_224", 384, 24, 6),
        tnt("tnt_b_patch16_224", 640, 40, 10),
        cifar(vit("vit_cifar", 192, 7, 3)),
    };
    // TNT on 4x4 patches: every pixel is a token (stride 1), 12 channels each, embedded by a 3x3 conv.
    ModelConfig t = cifar(tnt("tnt_cifar", 192, 12, 3));
    t.depth = 7, t.inner_heads = 2, t.pixel_stride = 1, t.pixel_kernel = 3;
    p.push_back(t);
    return p;
  }();
  return all;
}

template <class E>
E parse_enum(const std::string& key, const std::string& value, const std::vector<std::pair<std::string, E>>& names) {
  std::string options;
  for (const auto& [name, e] : names) {
    if (name == value) return e;
    options += (options.empty() ? "" : ", ") + name;
  }
  fail("model config", key + "=" + value + " is not one of " + options);
}

const std::vector<std::pair<std::string, PosEmbed>> kPosEmbedNames = {
    {"learned", PosEmbed::learned}, {"learned_2d", PosEmbed::learned_2d}, {"sincos_2d", PosEmbed::sincos_2d},
    {"none", PosEmbed::none}};
const std::vector<std::pair<std::string, Pooling>> kPoolingNames = {{"cls", Pooling::cls}, {"mean", Pooling::mean}};
const std::vector<std::pair<std::string, Head>> kHeadNames = {{"linear", Head::linear}, {"mlp", Head::mlp}};

template <class E>
std::string enum_name(E value, const std::vector<std::pair<std::string, E>>& names) {
  for (const auto& [name, e] : names)
    if (e == value) return name;
  return "?";
}

int64_t parse_int(const std::string& key, const std::string& value) {
  const std::optional<int64_t> v = parse_integer(value);
  if (!v) fail("model config", key + "=" + value + " is not an integer");
  return *v;
}

double parse_double(const std::string& key, const std::string& value) {
  const std::optional<double> v = parse_number(value);
  if (!v) fail("model config", key + "=" + value + " is not a number");
  return *v;
}

// The shortest decimal that reads back as the same double ("1e-05", not "1.0000000000000001e-05").
std::string format_double(double v) {
  char buffer[32];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof buffer, "%.*g", precision, v);
    if (std::strtod(buffer, nullptr) == v) break;
  }
  return buffer;
}

}  // namespace

ModelConfig preset(const std::string& name) {
  for (const ModelConfig& c : presets())
    if (c.name == name) return c;
  std::string names;
  for (const std::string& n : preset_names()) names += (names.empty() ? "" : ", ") + n;
  fail("model", "unknown model '" + name + "'; presets: " + names);
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const ModelConfig& c : presets()) names.push_back(c.name);
  return names;
}

void apply_override(ModelConfig& c, const std::string& key, const std::string& value) {
  const std::map<std::string, std::function<void()>> setters = {
      {"name", [&] { c.name = value; }},
      {"arch", [&] { c.arch = value; }},
      {"image_size", [&] { c.image_size = parse_int(key, value); }},
      {"patch_size", [&] { c.patch_size = parse_int(key, value); }},
      {"in_channels", [&] { c.in_channels = parse_int(key, value); }},
      {"num_classes", [&] { c.num_classes = parse_int(key, value); }},
      {"dim", [&] { c.dim = parse_int(key, value); }},
      {"depth", [&] { c.depth = parse_int(key, value); }},
      {"heads", [&] { c.heads = parse_int(key, value); }},
      {"mlp_ratio", [&] { c.mlp_ratio = parse_double(key, value); }},
      {"qkv_bias", [&] { c.qkv_bias = parse_int(key, value) != 0; }},
      {"inner_dim", [&] { c.inner_dim = parse_int(key, value); }},
      {"inner_heads", [&] { c.inner_heads = parse_int(key, value); }},
      {"inner_mlp_ratio", [&] { c.inner_mlp_ratio = parse_double(key, value); }},
      {"pixel_stride", [&] { c.pixel_stride = parse_int(key, value); }},
      {"pixel_kernel", [&] { c.pixel_kernel = parse_int(key, value); }},
      {"pos_embed", [&] { c.pos_embed = parse_enum(key, value, kPosEmbedNames); }},
      {"pool", [&] { c.pool = parse_enum(key, value, kPoolingNames); }},
      {"head", [&] { c.head = parse_enum(key, value, kHeadNames); }},
      {"head_hidden", [&] { c.head_hidden = parse_int(key, value); }},
      {"drop_rate", [&] { c.drop_rate = parse_double(key, value); }},
      {"drop_path_rate", [&] { c.drop_path_rate = parse_double(key, value); }},
      {"norm_eps", [&] { c.norm_eps = parse_double(key, value); }},
  };
  const auto it = setters.find(key);
  if (it == setters.end()) {
    std::string keys;
    for (const auto& [k, setter] : setters) keys += (keys.empty() ? "" : ", ") + k;
    fail("model config", "unknown setting '" + key + "'; settings: " + keys);
  }
  it->second();
}

std::map<std::string, std::string> to_map(const ModelConfig& c) {
  return {{"name", c.name},
          {"arch", c.arch},
          {"image_size", std::to_string(c.image_size)},
          {"patch_size", std::to_string(c.patch_size)},
          {"in_channels", std::to_string(c.in_channels)},
          {"num_classes", std::to_string(c.num_classes)},
          {"dim", std::to_string(c.dim)},
          {"depth", std::to_string(c.depth)},
          {"heads", std::to_string(c.heads)},
          {"mlp_ratio", format_double(c.mlp_ratio)},
          {"qkv_bias", c.qkv_bias ? "1" : "0"},
          {"inner_dim", std::to_string(c.inner_dim)},
          {"inner_heads", std::to_string(c.inner_heads)},
          {"inner_mlp_ratio", format_double(c.inner_mlp_ratio)},
          {"pixel_stride", std::to_string(c.pixel_stride)},
          {"pixel_kernel", std::to_string(c.pixel_kernel)},
          {"pos_embed", enum_name(c.pos_embed, kPosEmbedNames)},
          {"pool", enum_name(c.pool, kPoolingNames)},
          {"head", enum_name(c.head, kHeadNames)},
          {"head_hidden", std::to_string(c.head_hidden)},
          {"drop_rate", format_double(c.drop_rate)},
          {"drop_path_rate", format_double(c.drop_path_rate)},
          {"norm_eps", format_double(c.norm_eps)}};
}

ModelConfig from_map(const std::map<std::string, std::string>& fields) {
  ModelConfig c;
  for (const auto& [key, value] : fields) apply_override(c, key, value);
  validate(c);
  return c;
}

void validate(const ModelConfig& c) {
  auto require = [&](bool ok, const std::string& message) {
    if (!ok) fail("model config", c.name + ": " + message);
  };
  require(c.arch == "vit" || c.arch == "tnt", "arch must be vit or tnt, got " + c.arch);
  require(c.image_size > 0 && c.patch_size > 0 && c.image_size % c.patch_size == 0,
          "image_size " + std::to_string(c.image_size) + " is not a multiple of patch_size " + std::to_string(c.patch_size));
  require(c.in_channels > 0 && c.num_classes > 0 && c.depth > 0, "in_channels, num_classes and depth must be positive");
  require(c.heads > 0 && c.dim > 0 && c.dim % c.heads == 0,
          "dim " + std::to_string(c.dim) + " is not divisible by heads " + std::to_string(c.heads));
  require(c.mlp_ratio > 0, "mlp_ratio must be positive");
  require(c.norm_eps > 0, "norm_eps must be positive");
  require(c.drop_rate >= 0 && c.drop_rate < 1 && c.drop_path_rate >= 0 && c.drop_path_rate < 1,
          "drop rates must be in [0, 1)");
  require(c.pos_embed != PosEmbed::sincos_2d || c.dim % 4 == 0, "sincos_2d needs dim divisible by 4");
  require(c.pos_embed != PosEmbed::learned_2d || c.dim % 2 == 0, "learned_2d needs an even dim");
  if (c.arch == "tnt") {
    require(c.pixel_stride > 0 && c.patch_size % c.pixel_stride == 0,
            "patch_size " + std::to_string(c.patch_size) + " is not a multiple of pixel_stride " + std::to_string(c.pixel_stride));
    require(c.inner_heads > 0 && c.inner_dim > 0 && c.inner_dim % c.inner_heads == 0,
            "inner_dim " + std::to_string(c.inner_dim) + " is not divisible by inner_heads " + std::to_string(c.inner_heads));
    require(c.pixel_kernel > 0 && c.pixel_kernel % 2 == 1, "pixel_kernel must be odd (padding is kernel / 2)");
  }
}

double macs_per_image(const ModelConfig& c) {
  const double n = static_cast<double>(c.num_patches()), tokens = n + 1, d = static_cast<double>(c.dim);
  const double hidden = std::floor(d * c.mlp_ratio);
  // One pre-norm block on T tokens of width w: q, k, v and output projections, q k^T and P v, the MLP.
  auto block = [](double t, double w, double mlp_hidden) {
    return t * w * 3 * w + 2 * t * t * w + t * w * w + 2 * t * w * mlp_hidden;
  };
  double macs = 0;
  if (c.arch == "vit") {
    macs += n * d * c.in_channels * c.patch_size * c.patch_size;  // patch embedding conv
    macs += c.depth * block(tokens, d, hidden);
  } else {
    const double m = static_cast<double>(c.pixel_grid() * c.pixel_grid()), di = static_cast<double>(c.inner_dim);
    macs += n * m * di * c.in_channels * c.pixel_kernel * c.pixel_kernel;  // pixel embedding conv
    macs += n * m * di * d;                                              // flattened pixels -> patch tokens
    macs += c.depth * (n * block(m, di, std::floor(di * c.inner_mlp_ratio)) + n * m * di * d + block(tokens, d, hidden));
  }
  const double head_in = c.head == Head::mlp ? (c.head_hidden > 0 ? c.head_hidden : d) : d;
  if (c.head == Head::mlp) macs += d * head_in;
  macs += head_in * c.num_classes;
  return macs;
}

static const std::string kMetadataPrefix = "vt.model.";

std::map<std::string, std::string> config_metadata(const ModelConfig& config) {
  std::map<std::string, std::string> metadata = {{"format", "pt"}};
  for (const auto& [key, value] : to_map(config)) metadata[kMetadataPrefix + key] = value;
  return metadata;
}

bool has_config_metadata(const std::map<std::string, std::string>& metadata) {
  return metadata.count(kMetadataPrefix + "arch") > 0;
}

ModelConfig config_from_metadata(const std::map<std::string, std::string>& metadata) {
  std::map<std::string, std::string> fields;
  for (const auto& [key, value] : metadata)
    if (key.rfind(kMetadataPrefix, 0) == 0) fields[key.substr(kMetadataPrefix.size())] = value;
  if (fields.empty()) fail("model config", "the checkpoint's metadata names no model; pass --model");
  return from_map(fields);
}

std::shared_ptr<Classifier> create_model(const ModelConfig& config) {
  validate(config);
  if (config.arch == "tnt") return std::make_shared<TransformerInTransformer>(config);
  return std::make_shared<VisionTransformer>(config);
}

}  // namespace vt::models
