// Training-state files: the optimizer's named tensors plus the counters needed to resume a run (step, epoch,
// the random streams' seed and offsets), stored as a safetensors file whose counters are decimal metadata
// strings under reserved "vt." keys.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "nn/safetensors.h"

namespace vt::nn {

struct TrainingState {
  NamedTensors tensors;  // the optimizer's state() (moments, per-parameter counters), by name
  int64_t step = 0;      // optimizer steps taken
  int64_t epoch = 0;     // epochs completed
  // The seed of vt's generators and the offsets of its tensors and dropout streams (default_generator() and
  // dropout_generator()); stored as decimal strings, so the whole uint64 range survives as written (an I64
  // tensor would need the bits reinterpreted).
  uint64_t rng_seed = 0;
  uint64_t rng_offset_tensors = 0;
  uint64_t rng_offset_dropout = 0;
  std::map<std::string, std::string> metadata;  // anything else; keys starting with "vt." are reserved
};

// Atomic, like every safetensors write.
void save_training_state(const std::string& path, const TrainingState& state);
// Fails naming the file and the key when the file is not a vt training state or a counter is malformed.
// The optimizer copies the tensors into its own state, e.g. with assign_named_tensors.
TrainingState load_training_state(const std::string& path);

}  // namespace vt::nn
