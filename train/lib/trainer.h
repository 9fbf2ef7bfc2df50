// Training and evaluation of an image classifier: the loop behind vt train, vt eval and vt compare.
// Conventions: a run lives in one folder (config.toml, metrics.csv, last/best checkpoints and the training
// state); schedules are per optimizer step and scale with the run's length; the same seed and thread count
// give the same run, and a resumed run (even one killed mid-write) ends with the same weights.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "datasets/augment.h"
#include "datasets/dataset.h"
#include "datasets/loader.h"
#include "models/config.h"

namespace vt {

struct TrainOptions {
  models::ModelConfig model;     // its num_classes is replaced by the data's class count
  int64_t listed_classes = 0;     // num_classes as --model-fields lists it (a run's config.toml): the data must agree
  std::string data_dir = "data";
  std::string out_dir;            // default: runs/<model name>
  int64_t epochs = 30;
  double time_budget = 0;         // seconds for the whole run: the epochs are fitted to it (0: train `epochs`)
  int64_t batch_size = 128;
  std::string optimizer = "adamw";  // or "sgd"
  double lr = 1e-3, min_lr = 1e-5, weight_decay = 0.05, momentum = 0.9;
  double warmup_epochs = 5;       // capped at a tenth of the run
  double label_smoothing = 0.1;
  double clip_grad = 0.0;         // max gradient norm; 0: no clipping
  double ema_decay = 0.0;         // 0: no EMA of the weights
  data::AugmentConfig augment;
  data::DatasetOptions dataset;   // channels and size follow the model
  int64_t test_limit = 0;         // evaluate on a class-balanced subset of the test set (0: all)
  std::string normalize = "cifar10";  // or "computed": the training set's own per-channel statistics
  int workers = 2;
  uint64_t seed = 0;
  Device device = Device::cpu;    // where the model trains (the command line picks cuda when a GPU is visible)
  bool tf32 = false;              // float32 GEMMs on the GPU's TF32 tensor cores
  std::string amp = "none";       // "bf16": float32 GEMMs on the GPU's bf16 tensor cores
  std::string init_from;          // a fresh run starts from these weights (fine-tuning), resampled to the image size
  bool resume = false;
  bool allow_changed_config = false;  // resume although the options or the data differ from the run's
  int64_t stop_after_steps = 0;   // stop as Ctrl-C would after this many optimizer steps (0: never)
  bool quiet = false;             // no per-step output (tests)
};

// The warm-up of a cosine schedule of total_steps: warmup_epochs of steps, never more than a tenth of the run.
int64_t warmup_steps_for(int64_t total_steps, int64_t steps_per_epoch, double warmup_epochs);

// The most epochs a run may have: --epochs' range, and the cap of a fit to --time-budget (a larger fit wrote a
// config.toml that --config refused).
constexpr int64_t kMaxEpochs = 1'000'000;

// --time-budget: the whole epochs of seconds_per_epoch that fit in seconds_left, less kBudgetSlack of it (0 when
// none fit, at most kMaxEpochs). On a 2-core Zen 3 one run's training passes took 142-179 s, and its fit, which left a
// tenth of an epoch spare, ended 62 s (1.7%) past a 3,600 s budget; the slack keeps such a run inside it.
constexpr double kBudgetSlack = 0.03;
int64_t epochs_that_fit(double seconds_left, double seconds_per_epoch);

// --time-budget: the seconds of real steps a budget's speed is measured over, a fortieth of the budget from 0.25
// to 10 s, so that measuring a small budget does not spend it.
double budget_measure_seconds(double budget);

// What a run of these options costs on this machine, measured as --time-budget measures it (real steps on the
// run's loader, no optimizer step, the random streams put back): loading the data and building the model, and
// one epoch, its training pass and its end (the test pass and the checkpoints).
struct RunCost {
  double setup_seconds = 0, epoch_seconds = 0;
};
RunCost measure_run_cost(const TrainOptions& options, double measure_seconds);

// The epochs of `cost` that fit in seconds_left after its set-up: at least 1, else epochs_that_fit. For vt
// compare, `cost` sums its runs, which set up and train one after another.
int64_t epochs_that_fit_after_setup(double seconds_left, const RunCost& cost);

// --time-budget: after an epoch, the epochs that fit in what is left (epochs_done plus epochs_that_fit at the
// seconds_per_epoch measured over the epochs so far), or `epochs` unchanged. A warm-up step's learning rate
// does not depend on the run's length, so the count changes only while every step so far was a warm-up step
// and to a length whose warm-up is the same: the run stays exactly the run of `--epochs` the new count.
int64_t refit_epochs(int64_t epochs, int64_t epochs_done, int64_t steps_per_epoch, double warmup_epochs,
                     double seconds_left, double seconds_per_epoch);

// The GPU's matmul arithmetic that --tf32 and --amp chose (exact fp32 with neither; both is an error).
MatmulPrecision matmul_precision(bool tf32, const std::string& amp);

// Every option that shapes a run, as (key, value) text in a fixed order: written to the run's config and
// into its training state, and compared at resume. The keys are the command-line flags' names.
std::vector<std::pair<std::string, std::string>> run_settings(const TrainOptions& options);

struct EpochMetrics {
  int64_t epoch = 0;
  double lr = 0, train_loss = 0, train_acc = 0, test_loss = 0, test_acc = 0, images_per_s = 0, seconds = 0;
};

struct TrainResult {
  std::vector<EpochMetrics> epochs;  // every epoch of the run so far, those before a resume included
  double best_test_acc = 0;
  double wall_seconds = 0;          // of this call, from loading the data to the last checkpoint
  bool interrupted = false;
};

// Trains as configured, writing the run folder; throws on a non-finite loss (after keeping the last good
// checkpoint); returns early with interrupted set when Ctrl-C was pressed (a resumable state is saved).
TrainResult train(const TrainOptions& options);

// The training state of the run in folder `run_dir`, which --resume continues from.
std::string run_state_path(const std::string& run_dir);

// What a checkpoint needs besides the model to be used on images: the normalisation and the class names,
// stored in its metadata as "vt.data.mean", "vt.data.std" (comma-separated) and "vt.data.classes" (a JSON array).
std::map<std::string, std::string> data_metadata(const data::Normalization& normalization,
                                                 const std::vector<std::string>& classes);
data::Normalization normalization_from_metadata(const std::map<std::string, std::string>& metadata);
std::vector<std::string> classes_from_metadata(const std::map<std::string, std::string>& metadata);

struct Evaluation {
  double loss = 0, accuracy = 0;
  std::vector<std::string> classes;
  std::vector<std::vector<int64_t>> confusion;  // [true class][predicted class]
  double images_per_s = 0;
};
// Evaluates in eval mode (and restores the model's mode); the data's classes must be the model's outputs.
Evaluation evaluate(models::Classifier& model, const data::Dataset& dataset, const data::Normalization& normalization,
                    int64_t batch_size, int workers);

}  // namespace vt
