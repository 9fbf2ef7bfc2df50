// Training-state files on top of safetensors. The counters live in "__metadata__" as decimal strings
// ("vt.step": "1234"), parsed back strictly (the whole string, no sign on unsigned values, range checked).
#include "nn/checkpoint.h"

#include <charconv>

namespace vt::nn {
namespace {

constexpr const char* format_key = "vt.format";
constexpr const char* format_value = "training_state/2";
constexpr const char* step_key = "vt.step";
constexpr const char* epoch_key = "vt.epoch";
constexpr const char* rng_seed_key = "vt.rng_seed";
constexpr const char* rng_offset_tensors_key = "vt.rng_offset.tensors";
constexpr const char* rng_offset_dropout_key = "vt.rng_offset.dropout";

const std::string& required(const std::map<std::string, std::string>& metadata, const std::string& path, const char* key) {
  const auto found = metadata.find(key);
  if (found == metadata.end())
    fail("load_training_state", "'" + path + "': metadata '" + key + "' is missing");
  return found->second;
}

template <class Integer>
Integer parse_integer(const std::map<std::string, std::string>& metadata, const std::string& path, const char* key) {
  const std::string& text = required(metadata, path, key);
  Integer value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size())
    fail("load_training_state", "'" + path + "': metadata '" + key + "' = '" + text + "' is not a valid integer");
  return value;
}

}  // namespace

void save_training_state(const std::string& path, const TrainingState& state) {
  if (state.step < 0 || state.epoch < 0)
    fail("save_training_state", "'" + path + "': step " + std::to_string(state.step) + " and epoch " +
                                    std::to_string(state.epoch) + " must not be negative");
  std::map<std::string, std::string> metadata;
  for (const auto& [key, value] : state.metadata) {
    if (key.starts_with("vt."))
      fail("save_training_state", "'" + path + "': metadata key '" + key + "' uses the reserved prefix 'vt.'");
    metadata[key] = value;
  }
  metadata[format_key] = format_value;
  metadata[step_key] = std::to_string(state.step);
  metadata[epoch_key] = std::to_string(state.epoch);
  metadata[rng_seed_key] = std::to_string(state.rng_seed);
  metadata[rng_offset_tensors_key] = std::to_string(state.rng_offset_tensors);
  metadata[rng_offset_dropout_key] = std::to_string(state.rng_offset_dropout);
  save_safetensors(path, state.tensors, metadata);
}

TrainingState load_training_state(const std::string& path) {
  SafetensorsFile file = load_safetensors(path);
  const auto format = file.metadata.find(format_key);
  if (format == file.metadata.end() || format->second != format_value)
    fail("load_training_state", "'" + path + "' is not a vt training-state file (metadata '" + format_key +
                                    "' is not '" + format_value + "')");
  check_finite_in_float32("load_training_state", path, file.tensors);  // a resume would go on from NaN
  TrainingState state;
  state.tensors = std::move(file.tensors);
  state.step = parse_integer<int64_t>(file.metadata, path, step_key);
  state.epoch = parse_integer<int64_t>(file.metadata, path, epoch_key);
  if (state.step < 0 || state.epoch < 0)
    fail("load_training_state", "'" + path + "': negative step or epoch");
  state.rng_seed = parse_integer<uint64_t>(file.metadata, path, rng_seed_key);
  state.rng_offset_tensors = parse_integer<uint64_t>(file.metadata, path, rng_offset_tensors_key);
  state.rng_offset_dropout = parse_integer<uint64_t>(file.metadata, path, rng_offset_dropout_key);
  for (auto& [key, value] : file.metadata)
    if (!key.starts_with("vt.")) state.metadata.emplace(key, std::move(value));
  return state;
}

}  // namespace vt::nn
