// Safetensors files (Hugging Face's checkpoint format) and model weights stored in them. Conventions: tensors
// are stored row-major and little-endian under their exact names (timm's state_dict keys for a model), from
// either device; every write is atomic (temporary file, fsync, rename) and every read checks the whole file
// before trusting it. Reads give CPU tensors; load_weights copies them onto the parameters' device.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace vt::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;  // the header's "__metadata__" (string to string)
  NamedTensors tensors;                         // in the header's order; F16 and BF16 are widened to f32
};

// Layout: 8-byte little-endian header length N, N bytes of JSON header padded with spaces to a multiple of 8,
// then the data section. Tensors may be strided (they are written row-major); names must be unique.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});
// Reads F32, F64, I64, F16 and BF16 tensors; refuses (naming the file and the problem) a truncated file, a
// malformed header, an unsupported dtype, duplicate names, and data offsets that overlap, leave holes or do
// not match shape * element size.
SafetensorsFile load_safetensors(const std::string& path);
// Reads and checks the header only (no tensor data): the metadata, and each tensor's name and shape.
struct SafetensorsHeader {
  std::map<std::string, std::string> metadata;
  std::vector<std::pair<std::string, Shape>> shapes;  // in the header's order
};
SafetensorsHeader read_safetensors_header(const std::string& path);
std::map<std::string, std::string> read_metadata(const std::string& path);

// Writes model.named_parameters() under their names.
void save_weights(const std::string& path, const Module& model, const std::map<std::string, std::string>& metadata = {});
// Copies the file's tensors into the model's existing parameters, converting the dtype. When the file and the
// model disagree nothing is copied and one error lists every missing, unexpected and mis-shaped name.
void load_weights(const std::string& path, Module& model);

// The matching behind load_weights, for any named state (an optimizer's moments): copies every source tensor
// into the destination tensor of the same name (floating dtypes convert), or copies nothing and fails as `op`
// listing every missing, unexpected and mismatched name; `source_name` (the file) names the source.
void assign_named_tensors(const char* op, const std::string& source_name, const NamedTensors& source,
                          const NamedTensors& destination);

// Fails as `op`, naming the file and the tensor, where a value is NaN, infinite or beyond float32's range (where
// the model computes): a diverged run's weights, which eval would score as always class 0 and predict as nan%.
void check_finite_in_float32(const char* op, const std::string& source_name, const NamedTensors& tensors);

}  // namespace vt::nn
