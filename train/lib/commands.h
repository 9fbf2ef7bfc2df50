// The vt subcommands: one options struct and one function each. run_cli (train/lib/cli.cpp) parses the
// command line into these structs with CLI11, where every flag's type and range is checked in one place.
#pragma once

#include <string>
#include <vector>

#include "models/config.h"
#include "train/lib/trainer.h"

namespace vt {

// A preset (--model NAME) and its key=value overrides: first `fields` (a run's config file lists every field),
// then `overrides` (the command line's).
struct ModelSpec {
  std::string name;
  std::vector<std::string> fields;     // "dim=256", ...
  std::vector<std::string> overrides;  // "dim=256", ...
  models::ModelConfig config() const;  // the preset with both applied, validated
};

struct EvalOptions {
  std::string checkpoint, data_dir = "data", split = "test";
  ModelSpec model;  // empty name: the checkpoint's metadata says which model it holds
  Device device = Device::cpu;
  int64_t image_size = 0;  // evaluate at this input size (the position embedding resampled); 0: the model's
  bool skip_bad = false;
  int64_t batch_size = 256, max_pixels = data::kDefaultMaxPixels;
  int workers = 2;
  bool tf32 = false;          // as TrainOptions: the matmuls' arithmetic
  std::string amp = "none";
};

struct PredictOptions {
  std::string checkpoint;
  ModelSpec model;
  Device device = Device::cpu;
  std::vector<std::string> images;
  int64_t top = 5, max_pixels = data::kDefaultMaxPixels;
  int64_t image_size = 0;  // as EvalOptions::image_size
  bool tf32 = false;       // as EvalOptions
  std::string amp = "none";
};

struct CompareOptions {
  std::vector<std::string> models = {"vit_cifar", "tnt_cifar"};
  std::vector<std::string> overrides;  // applied to every model
  double time_budget = 0;              // seconds; 0: train base.epochs
  TrainOptions base;                   // the shared recipe (base.model is unused)
};

// vt viz KIND: pictures of what a checkpoint learned (train/lib/viz.cpp).
struct VizOptions {
  std::string kind;  // attention, posembed, filters or distance
  std::string checkpoint, out;
  ModelSpec model;
  Device device = Device::cpu;
  int64_t image_size = 0;  // run the model at this input size (its position embedding resampled); 0: its own
  int64_t max_pixels = data::kDefaultMaxPixels;
  // attention
  std::vector<std::string> images;
  int64_t layer = -1;  // -1: the last
  bool rollout = false;
  int64_t patch = -1;  // TNT's inner attention in this patch; -1: the patch the shown map weighs most
  // filters
  int64_t components = 28;
  // distance
  std::string data_dir = "data", split = "test";
  int64_t image_count = 128;
};

struct InfoOptions {
  ModelSpec model;
  bool json = false;
};

struct InitOptions {
  ModelSpec model;
  uint64_t seed = 0;
  std::string out;
};

struct ForwardOptions {
  std::string checkpoint, input, output;
  ModelSpec model;
  Device device = Device::cpu;
  int64_t image_size = 0;  // as EvalOptions::image_size
};

struct BenchTrainOptions {
  ModelSpec model;
  int64_t batch_size = 128;
  Device device = Device::cpu;
  bool tf32 = false;
  std::string amp = "none";
};

struct BenchDataOptions {
  std::string data_dir = "data";
  int64_t batch_size = 128;
  int workers = 2;
  std::string augment;
};

int command_train(const TrainOptions& options);
int command_eval(const EvalOptions& options);
int command_predict(const PredictOptions& options);
int command_compare(const CompareOptions& options);
int command_info(const InfoOptions& options);
int command_viz(const VizOptions& options);
int command_init(const InitOptions& options);
int command_forward(const ForwardOptions& options);
int command_demo();
int command_bench_gemm();
int command_bench_train(const BenchTrainOptions& options);
int command_bench_data(const BenchDataOptions& options);

// The model of a checkpoint: `spec` when it names one, else the checkpoint's metadata; at `image_size` when it
// is not 0 (load_model then resamples the checkpoint's position embedding to the new patch grid).
models::ModelConfig checkpoint_config(const ModelSpec& spec, const std::string& checkpoint, int64_t image_size = 0);

// The class names a checkpoint stores, one per model output, or none when it stores no names.
std::vector<std::string> checkpoint_classes(const std::map<std::string, std::string>& metadata,
                                            const models::ModelConfig& config);

// Parses the command line and runs the command; returns the process exit code (errors are printed).
int run_cli(int argc, const char* const* argv);

}  // namespace vt
