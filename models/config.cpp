// Presets, overrides and multiply-add counts. The timm presets reproduce timm's shapes (and so its
// parameter counts); the CIFAR presets are sized so that ViT and TNT have about the same parameters.
#include "models/config.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <variant>

#include "autograd/text.h"
#include "nn/safetensors.h"
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

// Names of the enum values, as written in overrides and metadata.
template <class E>
using Names = std::vector<std::pair<std::string, E>>;
const Names<PosEmbed> kPosEmbedNames = {{"learned", PosEmbed::learned}, {"learned_2d", PosEmbed::learned_2d},
                                        {"sincos_2d", PosEmbed::sincos_2d}, {"none", PosEmbed::none}};
const Names<Pooling> kPoolingNames = {{"cls", Pooling::cls}, {"mean", Pooling::mean}};
const Names<Head> kHeadNames = {{"linear", Head::linear}, {"mlp", Head::mlp}};
const Names<std::string> kArchNames = {{"vit", "vit"}, {"tnt", "tnt"}};

// One row per configurable field: its key, the member it sets and the range it must lie in. Parsing, printing
// and range checks all read this table, so a new field is one line here (plus its use in the model). The
// ranges are generous for real models and keep every size computed from them far from overflow: at most
// 4096^2 pixels, 65,536 tokens and 2^32 parameters (see validate).
template <class E>
struct Choice {
  E ModelConfig::*member;
  const Names<E>* names;
};
struct Integer {
  int64_t ModelConfig::*member;
  int64_t lo, hi;
};
struct Real {
  double ModelConfig::*member;
  double lo, hi;
  bool lo_open, hi_open;  // (lo, ...] or [..., hi)
};
struct Flag {
  bool ModelConfig::*member;
};
struct Text {
  std::string ModelConfig::*member;
};
using FieldKind = std::variant<Text, Choice<std::string>, Integer, Real, Flag, Choice<PosEmbed>, Choice<Pooling>, Choice<Head>>;
struct Field {
  const char* key;
  FieldKind kind;
};

const std::vector<Field>& fields() {
  static const std::vector<Field> table = {
      {"name", Text{&ModelConfig::name}},
      {"arch", Choice<std::string>{&ModelConfig::arch, &kArchNames}},
      {"image_size", Integer{&ModelConfig::image_size, 1, 4096}},
      {"patch_size", Integer{&ModelConfig::patch_size, 1, 4096}},
      {"in_channels", Integer{&ModelConfig::in_channels, 1, 64}},
      {"num_classes", Integer{&ModelConfig::num_classes, 1, 1'000'000}},
      {"dim", Integer{&ModelConfig::dim, 1, 65536}},
      {"depth", Integer{&ModelConfig::depth, 1, 1024}},
      {"heads", Integer{&ModelConfig::heads, 1, 65536}},
      {"mlp_ratio", Real{&ModelConfig::mlp_ratio, 0, 64, true, false}},
      {"qkv_bias", Flag{&ModelConfig::qkv_bias}},
      {"inner_dim", Integer{&ModelConfig::inner_dim, 1, 65536}},
      {"inner_heads", Integer{&ModelConfig::inner_heads, 1, 65536}},
      {"inner_mlp_ratio", Real{&ModelConfig::inner_mlp_ratio, 0, 64, true, false}},
      {"pixel_stride", Integer{&ModelConfig::pixel_stride, 1, 4096}},
      {"pixel_kernel", Integer{&ModelConfig::pixel_kernel, 1, 63}},
      {"pos_embed", Choice<PosEmbed>{&ModelConfig::pos_embed, &kPosEmbedNames}},
      {"pool", Choice<Pooling>{&ModelConfig::pool, &kPoolingNames}},
      {"head", Choice<Head>{&ModelConfig::head, &kHeadNames}},
      {"head_hidden", Integer{&ModelConfig::head_hidden, 0, 65536}},
      {"stem_channels", Integer{&ModelConfig::stem_channels, 0, 65536}},
      {"drop_rate", Real{&ModelConfig::drop_rate, 0, 1, false, true}},
      {"drop_path_rate", Real{&ModelConfig::drop_path_rate, 0, 1, false, true}},
      // From float32's smallest normal number, as the model computes in float32: at eps = 1e-320 a constant row's
      // rstd = 1/sqrt(0 + eps) overflows float32 to inf, and inf * 0 is NaN.
      {"norm_eps", Real{&ModelConfig::norm_eps, std::numeric_limits<float>::min(), 1, false, false}},
  };
  return table;
}

const Field& find_field(const std::string& key) {
  for (const Field& field : fields())
    if (key == field.key) return field;
  std::string keys;
  for (const Field& field : fields()) keys += (keys.empty() ? "" : ", ") + std::string(field.key);
  fail("model config", "unknown setting '" + key + "'; settings: " + keys);
}

// Why `value` of `field` is out of its range, or "" when it is in range.
std::string range_problem(const Field& field, const ModelConfig& c) {
  return std::visit(
      [&](const auto& kind) -> std::string {
        using Kind = std::decay_t<decltype(kind)>;
        if constexpr (std::is_same_v<Kind, Integer>) {
          const int64_t v = c.*kind.member;
          if (v < kind.lo || v > kind.hi)
            return std::string(field.key) + "=" + std::to_string(v) + " is outside [" + std::to_string(kind.lo) + ", " +
                   std::to_string(kind.hi) + "]";
        } else if constexpr (std::is_same_v<Kind, Real>) {
          const double v = c.*kind.member;
          const bool below = kind.lo_open ? !(v > kind.lo) : !(v >= kind.lo);
          const bool above = kind.hi_open ? !(v < kind.hi) : !(v <= kind.hi);
          if (below || above)
            return std::string(field.key) + "=" + shortest_text(v) + " is outside " + (kind.lo_open ? "(" : "[") +
                   shortest_text(kind.lo) + ", " + shortest_text(kind.hi) + (kind.hi_open ? ")" : "]");
        }
        return "";
      },
      field.kind);
}

template <class E>
std::string choice_name(E value, const Names<E>& names) {
  for (const auto& [name, e] : names)
    if (e == value) return name;
  return "?";
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
  const Field& field = find_field(key);
  const std::string bad = key + "=" + value + " is not ";
  std::visit(
      [&](const auto& kind) {
        using Kind = std::decay_t<decltype(kind)>;
        if constexpr (std::is_same_v<Kind, Text>) {
          c.*kind.member = value;
        } else if constexpr (std::is_same_v<Kind, Integer>) {
          const std::optional<int64_t> v = parse_integer(value);
          if (!v) fail("model config", bad + "an integer");
          c.*kind.member = *v;
        } else if constexpr (std::is_same_v<Kind, Real>) {
          const std::optional<double> v = parse_number(value);
          if (!v) fail("model config", bad + "a number");
          c.*kind.member = *v;
        } else if constexpr (std::is_same_v<Kind, Flag>) {
          if (value != "0" && value != "1") fail("model config", bad + "0 or 1");
          c.*kind.member = value == "1";
        } else {
          std::string options;
          for (const auto& [name, e] : *kind.names) {
            if (name == value) {
              c.*kind.member = e;
              return;
            }
            options += (options.empty() ? "" : ", ") + name;
          }
          fail("model config", bad + "one of " + options);
        }
      },
      field.kind);
  const std::string problem = range_problem(field, c);
  if (!problem.empty()) fail("model config", problem);
}

std::map<std::string, std::string> to_map(const ModelConfig& c) {
  std::map<std::string, std::string> out;
  for (const Field& field : fields())
    out[field.key] = std::visit(
        [&](const auto& kind) -> std::string {
          using Kind = std::decay_t<decltype(kind)>;
          if constexpr (std::is_same_v<Kind, Text>) return c.*kind.member;
          else if constexpr (std::is_same_v<Kind, Integer>) return std::to_string(c.*kind.member);
          else if constexpr (std::is_same_v<Kind, Real>) return shortest_text(c.*kind.member);
          else if constexpr (std::is_same_v<Kind, Flag>) return c.*kind.member ? "1" : "0";
          else return choice_name(c.*kind.member, *kind.names);
        },
        field.kind);
  return out;
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
  for (const Field& field : fields()) {
    const std::string problem = range_problem(field, c);
    require(problem.empty(), problem);
  }
  require(c.arch == "vit" || c.arch == "tnt", "arch must be vit or tnt, got " + c.arch);
  require(c.image_size % c.patch_size == 0,
          "image_size " + std::to_string(c.image_size) + " is not a multiple of patch_size " + std::to_string(c.patch_size));
  require(c.num_patches() <= 65536, std::to_string(c.num_patches()) + " patches; at most 65,536 are supported");
  require(c.dim % c.heads == 0, "dim " + std::to_string(c.dim) + " is not divisible by heads " + std::to_string(c.heads));
  require(c.pos_embed != PosEmbed::sincos_2d || c.dim % 4 == 0, "sincos_2d needs dim divisible by 4");
  require(c.pos_embed != PosEmbed::learned_2d || c.dim % 2 == 0, "learned_2d needs an even dim");
  if (c.stem_channels > 0) {
    require(c.arch == "vit", "stem_channels is a ViT setting; TNT embeds its pixels with pixel_kernel");
    require(c.patch_size >= 2 && (c.patch_size & (c.patch_size - 1)) == 0,
            "a convolutional stem halves the image per conv, so patch_size must be a power of 2 from 2, got " +
                std::to_string(c.patch_size));
    require(c.stem_channels * (c.patch_size / 2) <= 65536,
            "the stem's last conv would have " + std::to_string(c.stem_channels * (c.patch_size / 2)) +
                " channels (stem_channels * patch_size / 2); at most 65,536 are supported");
  }
  require(static_cast<int64_t>(c.dim * c.mlp_ratio) >= 1,
          "mlp_ratio " + shortest_text(c.mlp_ratio) + " gives an MLP of int(dim * mlp_ratio) = 0 hidden features");
  if (c.arch == "tnt") {
    require(static_cast<int64_t>(c.inner_dim * c.inner_mlp_ratio) >= 1,
            "inner_mlp_ratio " + shortest_text(c.inner_mlp_ratio) +
                " gives an inner MLP of int(inner_dim * inner_mlp_ratio) = 0 hidden features");
    require(c.patch_size % c.pixel_stride == 0,
            "patch_size " + std::to_string(c.patch_size) + " is not a multiple of pixel_stride " + std::to_string(c.pixel_stride));
    require(c.inner_dim % c.inner_heads == 0,
            "inner_dim " + std::to_string(c.inner_dim) + " is not divisible by inner_heads " + std::to_string(c.inner_heads));
    require(c.pixel_kernel % 2 == 1, "pixel_kernel must be odd (padding is kernel / 2)");
    require(c.pixel_grid() * c.pixel_grid() * c.inner_dim <= (int64_t{1} << 20),
            "each patch's pixel tokens hold " + std::to_string(c.pixel_grid() * c.pixel_grid() * c.inner_dim) +
                " values; at most 2^20 are supported");
  }
  // The sizes above are bounded, so this count is far from overflow; it bounds the memory a model takes.
  const double params = parameter_count(c);
  require(params <= 4294967296.0, "the model would have " + shortest_text(params) + " parameters; at most 2^32 are supported");
}

// Parameters of a pre-norm block on tokens of width w with an MLP of `hidden`: two LayerNorms, the q, k, v
// projections (biased or not), the output projection and the MLP.
static double block_parameters(double w, double hidden, bool qkv_bias) {
  return 2 * (2 * w) + 3 * w * w + (qkv_bias ? 3 * w : 0) + (w * w + w) + (w * hidden + hidden) + (hidden * w + w);
}

// The 3x3 stride-2 convs of ViT's convolutional stem (nn::PatchEmbed): channels in and out, output side.
struct StemConv {
  double in, out, side;
};
static std::vector<StemConv> stem_convs(const ModelConfig& c) {
  std::vector<StemConv> convs;
  double in = static_cast<double>(c.in_channels);
  for (int64_t scale = 1; scale < c.patch_size; scale *= 2) {
    convs.push_back({in, static_cast<double>(c.stem_channels * scale), static_cast<double>(c.image_size / (2 * scale))});
    in = convs.back().out;
  }
  return convs;
}

double parameter_count(const ModelConfig& c) {
  const double d = static_cast<double>(c.dim), n = static_cast<double>(c.num_patches());
  const double hidden = static_cast<double>(static_cast<int64_t>(d * c.mlp_ratio));
  double params = d;  // cls_token
  switch (c.pos_embed) {
    case PosEmbed::learned: params += (n + 1) * d; break;
    case PosEmbed::learned_2d: params += static_cast<double>(c.grid()) * d; break;  // a row and a column half
    case PosEmbed::sincos_2d:
    case PosEmbed::none: break;
  }
  if (c.arch == "vit" && c.stem_channels > 0) {
    const std::vector<StemConv> convs = stem_convs(c);
    for (const StemConv& conv : convs) params += conv.out * conv.in * 9 + conv.out;  // patch_embed.stem.i
    params += d * convs.back().out + d;                                           // patch_embed.proj: 1x1
    params += c.depth * block_parameters(d, hidden, c.qkv_bias);
  } else if (c.arch == "vit") {
    params += d * c.in_channels * c.patch_size * c.patch_size + d;  // patch_embed
    params += c.depth * block_parameters(d, hidden, c.qkv_bias);
  } else {
    const double di = static_cast<double>(c.inner_dim), m = static_cast<double>(c.pixel_grid() * c.pixel_grid());
    const double inner_hidden = static_cast<double>(static_cast<int64_t>(di * c.inner_mlp_ratio));
    params += di * m;                                                        // pixel_pos
    params += di * c.in_channels * c.pixel_kernel * c.pixel_kernel + di;    // pixel_embed
    params += 2 * m * di + m * di * d + d + 2 * d;                          // norm1_proj, proj, norm2_proj
    // Per block: the inner block, its LayerNorm -> Linear (no bias) -> LayerNorm into the patch token, the outer block.
    params += c.depth * (block_parameters(di, inner_hidden, c.qkv_bias) + 2 * m * di + m * di * d + 2 * d +
                         block_parameters(d, hidden, c.qkv_bias));
  }
  params += 2 * d;  // the final norm (cls pooling) or fc_norm (mean pooling)
  double head_in = d;
  if (c.head == Head::mlp) {
    head_in = c.head_hidden > 0 ? static_cast<double>(c.head_hidden) : d;
    params += d * head_in + head_in;  // pre_logits.fc
  }
  return params + head_in * c.num_classes + c.num_classes;
}

double macs_per_image(const ModelConfig& c) {
  const double n = static_cast<double>(c.num_patches()), tokens = n + 1, d = static_cast<double>(c.dim);
  const double hidden = std::floor(d * c.mlp_ratio);
  // One pre-norm block on T tokens of width w: q, k, v and output projections, q k^T and P v, the MLP.
  auto block = [](double t, double w, double mlp_hidden) {
    return t * w * 3 * w + 2 * t * t * w + t * w * w + 2 * t * w * mlp_hidden;
  };
  double macs = 0;
  if (c.arch == "vit" && c.stem_channels > 0) {
    const std::vector<StemConv> convs = stem_convs(c);
    for (const StemConv& conv : convs) macs += conv.side * conv.side * conv.out * conv.in * 9;
    macs += n * d * convs.back().out;  // the 1x1 conv to tokens
    macs += c.depth * block(tokens, d, hidden);
  } else if (c.arch == "vit") {
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

double computed_macs_per_image(const ModelConfig& c) {
  if (c.pool != Pooling::cls || c.depth == 0) return macs_per_image(c);
  const double n = static_cast<double>(c.num_patches()), d = static_cast<double>(c.dim);
  return macs_per_image(c) - n * (d * d + 2 * d * std::floor(d * c.mlp_ratio));  // the patch rows' proj and MLP
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

namespace {

// Timm's names: ViT's table is "pos_embed", TNT's "patch_pos"; the 2-D kind adds "_row" and "_col".
std::string position_name(const ModelConfig& c) { return c.arch == "tnt" ? "patch_pos" : "pos_embed"; }

// The patch grid the checkpoint's learned position embedding holds, read from its header: another image size
// than the config's, when the model was trained at one. The config's own grid when the file holds no learned
// embedding (sincos_2d is computed, none has none) or one of another form (the count check then refuses it).
int64_t stored_grid(const nn::SafetensorsHeader& header, const ModelConfig& c) {
  const std::string name = position_name(c);
  for (const auto& [key, shape] : header.shapes) {
    if (c.pos_embed == PosEmbed::learned && key == name && shape.size() == 3 && shape[1] >= 2) {
      const int64_t g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(shape[1] - 1))));
      if (g * g == shape[1] - 1) return g;
    }
    if (c.pos_embed == PosEmbed::learned_2d && key == name + "_row" && shape.size() == 3 && shape[0] >= 1) return shape[0];
  }
  return c.grid();
}

// The file's position embedding resampled to the config's grid (timm's resample_abs_pos_embed); the class
// token's row is kept. TNT's pixel embedding lives on the grid inside a patch, which the image size leaves alone.
void resample_position_embeddings(nn::NamedTensors& tensors, const ModelConfig& c) {
  const std::string name = position_name(c);
  const int64_t grid = c.grid();
  for (auto& [key, tensor] : tensors) {
    if (c.pos_embed == PosEmbed::learned && key == name) tensor = nn::resample_position_table(tensor, 1, grid);  // (1, 1 + N, D)
    if (c.pos_embed == PosEmbed::learned_2d && key == name + "_row") tensor = nn::resample_axis(tensor, 0, grid);  // (g, 1, D/2)
    if (c.pos_embed == PosEmbed::learned_2d && key == name + "_col") tensor = nn::resample_axis(tensor, 1, grid);  // (1, g, D/2)
  }
}

// Checks the header's tensor count against the model the config describes at the file's own grid.
void check_parameter_count(const std::string& checkpoint, const nn::SafetensorsHeader& header, const ModelConfig& config) {
  ModelConfig stored = config;
  stored.image_size = stored_grid(header, config) * config.patch_size;
  double values = 0;
  for (const auto& [name, shape] : header.shapes) values += static_cast<double>(shape_numel(shape));
  const double expected = parameter_count(stored);
  if (values != expected)
    fail("load_model", "'" + checkpoint + "' holds " + shortest_text(values) + " values in " +
                           std::to_string(header.shapes.size()) + " tensors, but model " + config.name + " (" +
                           config.arch + ", dim " + std::to_string(config.dim) + ", depth " + std::to_string(config.depth) +
                           ") has " + shortest_text(parameter_count(config)) + " parameters" +
                           (stored.grid() != config.grid() ? " (" + shortest_text(expected) + " on the checkpoint's " +
                                                                 std::to_string(stored.grid()) + "x" + std::to_string(stored.grid()) + " patch grid)"
                                                           : "") +
                           ": the configuration (the checkpoint's metadata or --model) does not describe these weights");
}

}  // namespace

void load_weights_at_size(const std::string& checkpoint, Classifier& model) {
  const nn::SafetensorsHeader header = nn::read_safetensors_header(checkpoint);
  // Tensors of the right shapes can still belong to another model (3 heads or 6 split the same weights
  // differently): where the file says which model it holds, every field that shapes the computation must
  // agree. The input size may differ (that is what the resampling is for), and so may the regularisation.
  if (has_config_metadata(header.metadata)) {
    std::string differences;
    const std::map<std::string, std::string> stored = to_map(config_from_metadata(header.metadata)), wanted = to_map(model.config);
    for (const auto& [key, value] : wanted)
      if (key != "name" && key != "image_size" && key != "drop_rate" && key != "drop_path_rate" && stored.at(key) != value)
        differences += " " + key + "=" + stored.at(key) + " (the model: " + value + ")";
    if (!differences.empty())
      fail("load_model", "'" + checkpoint + "' holds another model:" + differences);
  }
  check_parameter_count(checkpoint, header, model.config);
  nn::SafetensorsFile file = nn::load_safetensors(checkpoint);
  nn::check_finite_in_float32("load_model", checkpoint, file.tensors);
  resample_position_embeddings(file.tensors, model.config);
  nn::assign_named_tensors("load_weights", checkpoint, file.tensors, model.named_parameters());
}

std::shared_ptr<Classifier> load_model(const std::string& checkpoint, const ModelConfig& config) {
  check_parameter_count(checkpoint, nn::read_safetensors_header(checkpoint), config);
  const auto model = create_model(config);
  load_weights_at_size(checkpoint, *model);
  return model;
}

}  // namespace vt::models
