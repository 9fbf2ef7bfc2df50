// The training loop, split along its seams: setting a run up, starting it fresh or resuming it, the steps of
// an epoch, and the end of an epoch (evaluation, metrics, checkpoints). Conventions: one optimizer step per
// batch, lr from the schedule before each step; the training state file is the one commit point of a run:
// it holds the weights, the optimizer, the EMA, the random streams, the metrics so far and the run's settings,
// and is replaced atomically, so that a run killed at any instant resumes from its last complete state.
#include "train/lib/trainer.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "autograd/files.h"
#include "autograd/json.h"
#include "autograd/parallel.h"
#include "autograd/text.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "nn/schedule.h"

namespace vt {

namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_interrupted{false};

// Ctrl-C sets a flag that the loop checks after each step; a second Ctrl-C kills the process as usual. SIGTERM
// (timeout, batch schedulers, kill) and SIGHUP (a closed terminal) stop the run the same way: they killed it
// mid-epoch, losing the epoch's steps.
constexpr int kStopSignals[] = {SIGINT, SIGTERM, SIGHUP};

class InterruptScope {
 public:
  InterruptScope() {
    g_interrupted = false;
    for (size_t i = 0; i < std::size(kStopSignals); ++i)
      previous_[i] = std::signal(kStopSignals[i], [](int signal) {
        g_interrupted = true;
        std::signal(signal, SIG_DFL);
      });
  }
  ~InterruptScope() {
    for (size_t i = 0; i < std::size(kStopSignals); ++i) std::signal(kStopSignals[i], previous_[i]);
  }

 private:
  void (*previous_[std::size(kStopSignals)])(int);
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string format_duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%ld:%02ld:%02ld", static_cast<long>(s / 3600), static_cast<long>(s / 60 % 60),
                static_cast<long>(s % 60));
  return buffer;
}

// Prints training progress: a bar redrawn in place on a terminal, plain lines every tenth of an epoch
// otherwise (a log file gets a readable history).
class ProgressBar {
 public:
  ProgressBar(int64_t epoch, int64_t epochs, int64_t steps, bool quiet)
      : epoch_(epoch), epochs_(epochs), steps_(steps), quiet_(quiet), terminal_(isatty(STDOUT_FILENO)) {}

  void update(int64_t step, double loss, double accuracy, double images_per_s, double elapsed) {
    if (quiet_) return;
    const double eta = step > 0 ? elapsed / step * (steps_ - step) : 0;
    if (terminal_) {
      const int width = 24, filled = static_cast<int>(width * step / std::max<int64_t>(steps_, 1));
      std::printf("\repoch %ld/%ld [%s%s] %ld/%ld loss %.4f acc %5.1f%% %6.0f img/s ETA %s ", static_cast<long>(epoch_),
                  static_cast<long>(epochs_), std::string(filled, '=').c_str(), std::string(width - filled, ' ').c_str(),
                  static_cast<long>(step), static_cast<long>(steps_), loss, 100 * accuracy, images_per_s,
                  format_duration(eta).c_str());
      std::fflush(stdout);
    } else if (step == steps_ || step % std::max<int64_t>(1, steps_ / 10) == 0) {
      std::printf("epoch %ld/%ld step %ld/%ld loss %.4f acc %.1f%% %.0f img/s ETA %s\n", static_cast<long>(epoch_),
                  static_cast<long>(epochs_), static_cast<long>(step), static_cast<long>(steps_), loss, 100 * accuracy,
                  images_per_s, format_duration(eta).c_str());
    }
  }
  void finish() {
    if (!quiet_ && terminal_) std::printf("\n");
  }

 private:
  int64_t epoch_, epochs_, steps_;
  bool quiet_, terminal_;
};

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

std::unique_ptr<nn::Optimizer> make_optimizer(const TrainOptions& o, const nn::Module& model) {
  const auto groups = nn::weight_decay_groups(model, o.weight_decay);
  if (o.optimizer == "adamw") return std::make_unique<nn::AdamW>(groups, o.lr);
  if (o.optimizer == "sgd") return std::make_unique<nn::SGD>(groups, o.lr, o.momentum, /*nesterov=*/true);
  fail("train", "--opt " + o.optimizer + " is not one of adamw, sgd");
}

// ---- metrics ----

const char* const kMetricsHeader = "epoch,lr,train_loss,train_acc,test_loss,test_acc,images_per_s,seconds";

// The metrics table as CSV: rounded for people (metrics.csv), or exact (kept in the training state).
std::string metrics_csv(const std::vector<EpochMetrics>& history, bool exact_values) {
  std::string out = std::string(kMetricsHeader) + "\n";
  for (const EpochMetrics& m : history) {
    if (exact_values) {
      out += std::to_string(m.epoch);
      for (double v : {m.lr, m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.images_per_s, m.seconds})
        out += "," + shortest_text(v);
      out += "\n";
    } else {
      char line[256];
      std::snprintf(line, sizeof line, "%ld,%.6g,%.6f,%.6f,%.6f,%.6f,%.1f,%.1f\n", static_cast<long>(m.epoch), m.lr,
                    m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.images_per_s, m.seconds);
      out += line;
    }
  }
  return out;
}

std::vector<EpochMetrics> parse_metrics_csv(const std::string& text, const std::string& where) {
  std::vector<EpochMetrics> history;
  std::istringstream lines(text);
  std::string line;
  if (!std::getline(lines, line) || line != kMetricsHeader) fail("resume", where + ": the metrics table has no header");
  while (std::getline(lines, line)) {
    std::vector<std::string> fields;
    std::istringstream cells(line);
    for (std::string cell; std::getline(cells, cell, ',');) fields.push_back(cell);
    EpochMetrics m;
    const std::optional<int64_t> epoch = fields.size() == 8 ? parse_integer(fields[0]) : std::nullopt;
    double* values[] = {&m.lr, &m.train_loss, &m.train_acc, &m.test_loss, &m.test_acc, &m.images_per_s, &m.seconds};
    bool ok = epoch.has_value() && *epoch == static_cast<int64_t>(history.size()) + 1;
    for (size_t i = 0; ok && i < 7; ++i) {
      const std::optional<double> v = parse_number(fields[i + 1]);
      ok = v.has_value();
      if (ok) *values[i] = *v;
    }
    if (!ok) fail("resume", where + ": metrics row '" + line + "' is malformed");
    m.epoch = *epoch;
    history.push_back(m);
  }
  return history;
}

// ---- the run ----

// Everything a run is made of, built from the options before its first step.
struct Run {
  TrainOptions options;  // a copy: --time-budget sets its epochs, the data its model.num_classes
  std::string dir, last, best, state, metrics, config;
  std::unique_ptr<data::Dataset> train_set, test_set;
  uint64_t data_fingerprint = 0;
  data::LoaderOptions loader_options;
  std::unique_ptr<data::DataLoader> loader;
  int64_t steps_per_epoch = 0, total_steps = 0;
  std::shared_ptr<models::Classifier> model, ema_model;
  std::unique_ptr<nn::Optimizer> optimizer;
  std::unique_ptr<nn::ModelEma> ema;
  std::unique_ptr<nn::LrSchedule> schedule;
  std::map<std::string, std::string> checkpoint_metadata;  // the model's config, normalisation and classes

  explicit Run(const TrainOptions& o) : options(o) {}
};

// Where a run stands: the epochs completed, their metrics, and how far the epoch in progress has come, with its
// running sums (non-zero only in a state saved mid-epoch, so that its metrics row comes out as if the epoch
// had never been interrupted).
struct Standing {
  int64_t epochs_done = 0;
  std::vector<EpochMetrics> history;
  double best_test_acc = 0;
  int64_t batches_done = 0;  // of the epoch in progress
  double loss_sum = 0, seconds = 0;
  int64_t correct = 0, seen = 0;
};

void set_up(Run& run) {
  const TrainOptions& o = run.options;
  for (const auto& [key, value] : run_settings(o))  // the state's metadata and config.toml hold them as UTF-8 text
    if (!valid_utf8(value))
      fail("train", "the value of " + (key.starts_with("model.") ? key.substr(6) : "--" + key) +
                        " is not valid UTF-8 (the run records it as text): rename it");
  if (o.min_lr > o.lr)
    fail("train", "--min-lr " + shortest_text(o.min_lr) + " is above --lr " + shortest_text(o.lr) +
                      ": the cosine would raise the learning rate");
  run.dir = o.out_dir.empty() ? "runs/" + o.model.name : o.out_dir;
  run.last = run.dir + "/last.safetensors";
  run.best = run.dir + "/best.safetensors";
  run.state = run_state_path(run.dir);
  run.metrics = run.dir + "/metrics.csv";
  run.config = run.dir + "/config.toml";

  data::DatasetOptions dataset_options = o.dataset;
  dataset_options.channels = static_cast<int>(o.model.in_channels);
  dataset_options.image_size = static_cast<int>(o.model.image_size);
  run.train_set = data::open_dataset(o.data_dir, "train", dataset_options);
  data::DatasetOptions test_options = dataset_options;
  test_options.limit = o.test_limit;
  test_options.classes = run.train_set->classes();  // test labels by name, in the training set's label space
  run.test_set = data::open_dataset(o.data_dir, "test", test_options);
  run.data_fingerprint = data::fingerprint(*run.train_set);
  // The class count comes from the data; config.toml and the state record it, so that --config repeats the run.
  const auto classes = static_cast<int64_t>(run.train_set->classes().size());
  if (o.listed_classes != 0 && o.listed_classes != classes)
    fail("train", "--model-fields lists num_classes=" + std::to_string(o.listed_classes) + ", but the data in '" +
                      o.data_dir + "' has " + std::to_string(classes) + " class folders");
  run.options.model.num_classes = classes;

  data::LoaderOptions& l = run.loader_options;
  l.batch_size = o.batch_size;
  l.shuffle = true;
  l.drop_last = true;  // equal-sized steps; at most batch - 1 images wait for the next epoch
  l.augment = true;
  l.augment_config = o.augment;
  l.seed = o.seed;
  l.workers = o.workers;
  // CIFAR-10's statistics are RGB: other channel counts always get their own.
  if (o.normalize == "computed" || run.train_set->channels() != 3) l.normalization = data::compute_normalization(*run.train_set);
  run.loader = std::make_unique<data::DataLoader>(*run.train_set, l);
  run.steps_per_epoch = run.loader->batches_per_epoch();
  if (run.steps_per_epoch == 0)
    fail("train", "the training set has " + std::to_string(run.train_set->size()) + " images, fewer than one batch of " +
                      std::to_string(o.batch_size) + "; lower --batch");

  manual_seed(o.seed);
  set_matmul_precision(o.device, matmul_precision(o.tf32, o.amp));
  run.model = models::create_model(o.model);  // initialised on the CPU, so both devices start alike
  if (!o.init_from.empty() && !o.resume) models::load_weights_at_size(o.init_from, *run.model);  // a resume loads its own
  run.model->to(o.device);
  run.optimizer = make_optimizer(o, *run.model);
  if (o.ema_decay > 0) {
    run.ema = std::make_unique<nn::ModelEma>(*run.model, o.ema_decay);
    run.ema_model = models::create_model(o.model);
    run.ema_model->to(o.device);
  }
  run.checkpoint_metadata = models::config_metadata(o.model);
  run.checkpoint_metadata.merge(data_metadata(l.normalization, run.train_set->classes()));
}

// The run's length in steps and its learning-rate schedule, once its epochs are known.
void plan_schedule(Run& run) {
  const TrainOptions& o = run.options;
  if (__builtin_mul_overflow(o.epochs, run.steps_per_epoch, &run.total_steps))
    fail("train", std::to_string(o.epochs) + " epochs of " + std::to_string(run.steps_per_epoch) + " steps are too many");
  const int64_t warmup_steps = warmup_steps_for(run.total_steps, run.steps_per_epoch, o.warmup_epochs);
  run.schedule = std::make_unique<nn::LrSchedule>(nn::LrSchedule::cosine(o.lr, run.total_steps, warmup_steps, o.min_lr));
}

// A training batch's forward pass on the run's device: the logits (B, classes), the labels (B) and the loss (),
// against the labels or, with Mixup/CutMix, the batch's soft targets (B, classes).
struct BatchLoss {
  Tensor logits, labels, loss;
};

BatchLoss batch_loss(const Run& run, const data::Batch& batch) {
  const TrainOptions& o = run.options;
  const int64_t b = static_cast<int64_t>(batch.labels.size());
  const Tensor images = batch.images.to(o.device);                                   // (B, C, H, W)
  const Tensor labels = Tensor::from_indices(batch.labels, {b}, o.device);            // (B)
  const Tensor target = batch.targets.defined() ? batch.targets.to(o.device) : labels;  // (B) or (B, classes)
  const Tensor logits = run.model->forward(images);                                   // (B, classes)
  return {logits, labels, cross_entropy(logits, target, o.label_smoothing)};
}

// The run's settings as a file that `vt train --config FILE` reads back (CLI11's subset of TOML): each flag of
// vt train that shapes the run, values quoted, and the model's fields as the --model-fields list (key=value).
std::string run_config_file(const TrainOptions& o) {
  std::string out = "# The settings of this run; `vt train --config <this file>` repeats it.\n";
  if (o.time_budget > 0)
    out += "# Its epochs were fitted to --time-budget " + shortest_text(o.time_budget) + " on the machine that ran it.\n";
  out += "[train]\n";
  std::vector<std::string> fields;
  for (const auto& [key, value] : run_settings(o)) {
    if (key == "threads") continue;  // an option of every command, not of vt train
    if (key.starts_with("model.")) {
      fields.push_back(key.substr(6) + "=" + value);
      continue;
    }
    out += key + " = ";
    append_json_string(out, value);
    out += "\n";
  }
  return out + "model-fields = " + json_string_array(fields) + "\n";
}

// ---- the training state: saved, loaded, checked ----

// The settings a resume may differ in without --allow-changed-config: where the data lives, which device and how
// many workers and threads do the work (the data itself is compared by its fingerprint).
bool free_to_change(const std::string& key) {
  return key == "data" || key == "workers" || key == "threads" || key == "device" || key == "tf32" ||
         key == "amp";
}

void save_state(const Run& run, const Standing& standing) {
  nn::TrainingState state;
  for (const auto& [name, tensor] : run.model->named_parameters()) state.tensors.emplace_back("model." + name, tensor);
  for (auto& entry : run.optimizer->state()) state.tensors.push_back(std::move(entry));
  if (run.ema)
    for (const auto& [name, tensor] : run.ema->named_parameters()) state.tensors.emplace_back("ema." + name, tensor);
  state.step = run.optimizer->step_count;
  state.epoch = standing.epochs_done;
  state.rng_seed = default_generator().seed();
  state.rng_offset_tensors = default_generator().offset();
  state.rng_offset_dropout = dropout_generator().offset();
  auto& m = state.metadata;
  m["best_test_acc"] = shortest_text(standing.best_test_acc);
  m["epoch.batches"] = std::to_string(standing.batches_done);
  m["epoch.loss_sum"] = shortest_text(standing.loss_sum);
  m["epoch.seconds"] = shortest_text(standing.seconds);
  m["epoch.correct"] = std::to_string(standing.correct);
  m["epoch.seen"] = std::to_string(standing.seen);
  m["metrics"] = metrics_csv(standing.history, /*exact_values=*/true);
  m["data.fingerprint"] = std::to_string(run.data_fingerprint);
  for (const auto& [key, value] : run_settings(run.options)) m["run." + key] = value;
  if (run.options.time_budget > 0) m["time_budget"] = shortest_text(run.options.time_budget);
  nn::save_training_state(run.state, state);
}

// A value the state must hold, parsed strictly; fails naming the file and the key.
template <class T>
T state_value(const nn::TrainingState& state, const std::string& path, const std::string& key) {
  const auto found = state.metadata.find(key);
  if (found == state.metadata.end()) fail("resume", "'" + path + "': the training state has no '" + key + "'");
  if constexpr (std::is_same_v<T, double>) {
    const std::optional<double> v = parse_number(found->second);
    if (v && std::isfinite(*v)) return *v;
  } else if constexpr (std::is_same_v<T, std::string>) {
    return found->second;
  } else {
    T v = 0;
    const std::string& text = found->second;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (error == std::errc() && end == text.data() + text.size() && !text.empty() && v >= 0) return v;
  }
  fail("resume", "'" + path + "': '" + key + "' = '" + found->second + "' is not a valid value");
}

// The epochs a run's training state was saved with: for a budgeted run, what the budget bought at its start.
int64_t saved_epochs(const std::string& path) {
  nn::TrainingState header;
  header.metadata = nn::read_metadata(path);
  const int64_t epochs = state_value<int64_t>(header, path, "run.epochs");
  if (epochs < 1) fail("resume", "'" + path + "': 'run.epochs' = 0: the state is corrupt");
  return epochs;
}

// A budgeted run resumes with the budget its epochs were fitted to: with another, it kept the old epochs in
// silence (a run fitted to 10^6 s went on for hours when resumed with --time-budget 2).
void check_saved_budget(const std::string& path, double budget, int64_t epochs, bool allow_changed) {
  const std::map<std::string, std::string> metadata = nn::read_metadata(path);
  const auto found = metadata.find("time_budget");
  const std::string saved = found == metadata.end() ? "none" : found->second;
  if (saved == shortest_text(budget) || allow_changed) return;
  fail("resume", "--time-budget " + shortest_text(budget) + " is not the run's (" + saved + "), to which its " +
                     std::to_string(epochs) + " epochs were fitted: resume with the same budget, or keep those "
                     "epochs with --allow-changed-config");
}

// Refuses a state that does not belong to this run, or that contradicts itself, naming what differs; returns
// whether the run's settings are unchanged (else, with --allow-changed-config, an interrupted epoch restarts).
bool check_state(const Run& run, const nn::TrainingState& state) {
  const std::string& path = run.state;
  const TrainOptions& o = run.options;
  std::string differences;
  for (const auto& [key, value] : run_settings(o)) {
    const auto found = state.metadata.find("run." + key);
    const std::string saved = found == state.metadata.end() ? "(not set)" : found->second;
    if (saved != value && !free_to_change(key)) differences += "\n  " + key + ": " + saved + " in the run, " + value + " now";
  }
  if (state_value<uint64_t>(state, path, "data.fingerprint") != run.data_fingerprint)
    differences += "\n  the training data: " + std::to_string(run.train_set->size()) + " images now, not the run's images";
  if (!differences.empty() && !o.allow_changed_config)
    fail("resume", "'" + path + "' was saved by a run with other settings:" + differences +
                       "\npass --allow-changed-config to resume with the new ones, or start a new run in another --out");
  if (state.epoch > o.epochs)
    fail("resume", "'" + path + "': the run has completed " + std::to_string(state.epoch) + " epochs, more than --epochs " +
                       std::to_string(o.epochs));
  if (!differences.empty()) return false;
  // Unchanged settings: the step count must be the epochs done plus the batches of the epoch in progress.
  const int64_t batches = state_value<int64_t>(state, path, "epoch.batches");
  if (batches >= run.steps_per_epoch || (state.epoch == o.epochs && batches != 0) ||
      state.step != state.epoch * run.steps_per_epoch + batches)
    fail("resume", "'" + path + "': step " + std::to_string(state.step) + " is not " + std::to_string(state.epoch) +
                       " epochs of " + std::to_string(run.steps_per_epoch) + " steps and " + std::to_string(batches) +
                       " more: the state is corrupt");
  return true;
}

Standing resume(Run& run) {
  if (!fs::exists(run.state))
    fail("resume", "there is no training state to resume in " + run.dir + " (no " + fs::path(run.state).filename().string() +
                       "); run without --resume to start");
  const nn::TrainingState state = nn::load_training_state(run.state);
  const bool unchanged = check_state(run, state);
  nn::NamedTensors model_state, optimizer_state, ema_state;
  for (const auto& [name, tensor] : state.tensors) {
    if (name.starts_with("model.")) model_state.emplace_back(name.substr(6), tensor);
    else if (name.starts_with("ema.")) ema_state.emplace_back(name.substr(4), tensor);
    else optimizer_state.emplace_back(name, tensor);
  }
  nn::assign_named_tensors("resume", run.state, model_state, run.model->named_parameters());
  run.optimizer->load_state(optimizer_state);
  if (run.optimizer->step_count != state.step)
    fail("resume", "'" + run.state + "': the optimizer has taken " + std::to_string(run.optimizer->step_count) +
                       " steps, the run " + std::to_string(state.step));
  for (const nn::ParamSlot& slot : run.optimizer->slots())
    if (slot.steps > state.step)
      fail("resume", "'" + run.state + "': parameter '" + slot.name + "' has taken " + std::to_string(slot.steps) +
                         " steps, more than the run's " + std::to_string(state.step));
  if (run.ema) nn::assign_named_tensors("resume", run.state, ema_state, run.ema->named_parameters());
  else if (!ema_state.empty()) fail("resume", "'" + run.state + "' holds EMA weights, but --ema is off");
  manual_seed(state.rng_seed);
  default_generator().set_offset(state.rng_offset_tensors);
  dropout_generator().set_offset(state.rng_offset_dropout);

  Standing standing;
  standing.epochs_done = state.epoch;
  standing.history = parse_metrics_csv(state_value<std::string>(state, run.state, "metrics"), run.state);
  if (static_cast<int64_t>(standing.history.size()) != state.epoch)
    fail("resume", "'" + run.state + "' has " + std::to_string(standing.history.size()) + " metrics rows for " +
                       std::to_string(state.epoch) + " epochs");
  standing.best_test_acc = state_value<double>(state, run.state, "best_test_acc");
  if (unchanged) {
    standing.batches_done = state_value<int64_t>(state, run.state, "epoch.batches");
    standing.loss_sum = state_value<double>(state, run.state, "epoch.loss_sum");
    standing.seconds = state_value<double>(state, run.state, "epoch.seconds");
    standing.correct = state_value<int64_t>(state, run.state, "epoch.correct");
    standing.seen = state_value<int64_t>(state, run.state, "epoch.seen");
  } else if (state_value<int64_t>(state, run.state, "epoch.batches") > 0 && !run.options.quiet) {
    std::printf("the settings changed: epoch %ld restarts from its first batch\n", static_cast<long>(state.epoch + 1));
  }
  // The state is the commit point; the files written after it may be older, and are brought up to it. The
  // config takes this resume's settings, which --allow-changed-config may have changed (it kept the old ones).
  write_file_atomically("train", run.config, run_config_file(run.options));
  write_file_atomically("train", run.metrics, metrics_csv(standing.history, false));
  nn::save_weights(run.last, *run.model, run.checkpoint_metadata);
  if (!run.options.quiet)
    std::printf("resuming %s at epoch %ld, step %ld\n", run.dir.c_str(), static_cast<long>(state.epoch + 1),
                static_cast<long>(state.step));
  return standing;
}

void refuse_existing_run(const Run& run) {
  if (fs::exists(run.state))
    fail("train", run.dir + " already holds a run (" + fs::path(run.state).filename().string() +
                      "); continue it with --resume, or remove it or choose another --out to start over");
}

void start_fresh(const Run& run) {
  write_file_atomically("train", run.config, run_config_file(run.options));
  write_file_atomically("train", run.metrics, metrics_csv({}, false));
}

// ---- an epoch ----

// Runs the steps of epoch `epoch` from where `standing` left it; returns true when the run must stop (Ctrl-C
// or --stop-after-steps) with the epoch unfinished.
bool train_epoch(Run& run, Standing& standing, int64_t epoch, double& lr) {
  const TrainOptions& o = run.options;
  nn::Optimizer& optimizer = *run.optimizer;
  run.model->train();
  run.loader->start_epoch(epoch);
  ProgressBar progress(epoch + 1, o.epochs, run.steps_per_epoch, o.quiet);
  data::Batch batch;
  for (int64_t skip = standing.batches_done; skip > 0 && run.loader->next(batch);) --skip;  // resumed: same batches
  const auto start = std::chrono::steady_clock::now();
  const double seconds_before = standing.seconds;
  // The loss and the correct count are summed where the model runs, and read (which waits for the GPU) only
  // every `sync_every` steps: every step on the CPU, where reading costs nothing, and twenty times an epoch on
  // the GPU, which then never waits for the host inside a step. A non-finite loss is caught at those reads.
  const int64_t sync_every = o.device == Device::cpu ? 1 : std::max<int64_t>(1, run.steps_per_epoch / 20);
  Tensor loss_sum = Tensor::zeros({}, DType::f32, o.device);  // ()
  Tensor correct = Tensor::zeros({}, DType::i64, o.device);   // ()
  int64_t unread_steps = 0, first_unread_step = optimizer.step_count + 1;
  auto read_sums = [&] {
    const double losses = loss_sum.item();
    if (!std::isfinite(losses)) {
      const std::string cause = !all_finite(batch.images) ? "the input batch holds non-finite values (check the data and --normalize)"
                                : batch.targets.defined() && !all_finite(batch.targets) ? "the Mixup/CutMix targets are not finite (check --aug)"
                                : "lower --lr or set --clip-grad";
      const std::string steps = first_unread_step == optimizer.step_count
                                    ? "step " + std::to_string(optimizer.step_count)
                                    : "steps " + std::to_string(first_unread_step) + " to " + std::to_string(optimizer.step_count);
      const std::string last_good = fs::exists(run.state) ? "The last good state is " + run.state
                                                           : "No training state was saved before it";
      fail("train", "the loss became " + std::to_string(losses) + " at epoch " + std::to_string(epoch + 1) + ", " + steps +
                        "; stopped. " + last_good + " (" + cause + ")");
    }
    standing.loss_sum += losses;
    standing.correct += static_cast<int64_t>(correct.item());
    NoGradGuard no_grad;
    loss_sum.zero_();
    correct.zero_();
    unread_steps = 0;
    first_unread_step = optimizer.step_count + 1;
  };
  while (run.loader->next(batch)) {
    lr = run.schedule->at(optimizer.step_count);
    optimizer.lr = lr;
    const int64_t b = static_cast<int64_t>(batch.labels.size());
    const auto [logits, labels, loss] = batch_loss(run, batch);  // (B, classes), (B), ()
    optimizer.zero_grad();
    loss.backward();
    if (o.clip_grad > 0) nn::clip_grad_norm(run.model->parameters(), o.clip_grad);
    optimizer.step();
    if (run.ema) run.ema->update(*run.model);
    {
      NoGradGuard no_grad;
      loss_sum.add_(loss, static_cast<double>(b));
      accumulate_correct(correct, logits, labels);
    }
    standing.seen += b;
    ++standing.batches_done;
    const bool stop = g_interrupted || optimizer.step_count == o.stop_after_steps;
    if (++unread_steps == sync_every || stop || standing.batches_done == run.steps_per_epoch) read_sums();
    standing.seconds = seconds_before + seconds_since(start);
    if (unread_steps == 0)
      progress.update(standing.batches_done, standing.loss_sum / standing.seen,
                      static_cast<double>(standing.correct) / standing.seen, standing.seen / standing.seconds,
                      standing.seconds);
    if (stop && standing.batches_done < run.steps_per_epoch) {
      progress.finish();
      return true;
    }
  }
  if (unread_steps > 0) read_sums();
  progress.finish();
  return false;
}

// The files an epoch ends with: metrics.csv, the best checkpoint when the test accuracy improved (or there is
// none yet), the training state (the commit) and the last checkpoint.
void save_epoch_files(const Run& run, const Standing& standing, models::Classifier& evaluated, bool improved) {
  write_file_atomically("train", run.metrics, metrics_csv(standing.history, false));
  if (improved) nn::save_weights(run.best, evaluated, run.checkpoint_metadata);
  save_state(run, standing);
  nn::save_weights(run.last, *run.model, run.checkpoint_metadata);
}

// Evaluation, the metrics row, then the epoch's files.
void finish_epoch(Run& run, Standing& standing, int64_t epoch, double lr) {
  const TrainOptions& o = run.options;
  EpochMetrics m;
  m.epoch = epoch + 1;
  m.lr = lr;
  m.seconds = standing.seconds;
  m.train_loss = standing.seen ? standing.loss_sum / standing.seen : 0;
  m.train_acc = standing.seen ? static_cast<double>(standing.correct) / standing.seen : 0;
  m.images_per_s = standing.seen / std::max(m.seconds, 1e-9);
  models::Classifier* evaluated = run.model.get();
  if (run.ema) {
    nn::assign_named_tensors("ema", "the EMA weights", run.ema->named_parameters(), run.ema_model->named_parameters());
    evaluated = run.ema_model.get();
  }
  const Evaluation test = evaluate(*evaluated, *run.test_set, run.loader_options.normalization, o.batch_size, o.workers);
  m.test_loss = test.loss;
  m.test_acc = test.accuracy;
  standing.history.push_back(m);
  standing.epochs_done = epoch + 1;
  standing.batches_done = 0;
  standing.loss_sum = standing.seconds = 0;
  standing.correct = standing.seen = 0;
  // A best.safetensors removed from the folder is written again from this epoch, whose accuracy becomes the
  // best's: keeping the older best figure reported 22% for a checkpoint that scored 11%.
  const bool best_missing = !fs::exists(run.best);
  if (best_missing && standing.history.size() > 1 && !o.quiet)
    std::fprintf(stderr, "warning: train: %s is missing; it now holds epoch %ld's weights, and the best accuracy is "
                         "counted from there\n", run.best.c_str(), static_cast<long>(m.epoch));
  const bool improved = best_missing || m.test_acc > standing.best_test_acc;
  standing.best_test_acc = best_missing ? m.test_acc : std::max(standing.best_test_acc, m.test_acc);
  save_epoch_files(run, standing, *evaluated, improved);
  if (!o.quiet)
    std::printf("epoch %ld/%ld: lr %.2e train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | %.0f img/s, %.0f s\n",
                static_cast<long>(m.epoch), static_cast<long>(o.epochs), m.lr, m.train_loss, 100 * m.train_acc,
                m.test_loss, 100 * m.test_acc, m.images_per_s, m.seconds);
}

// --time-budget: the cost of an epoch, measured on the run itself. Its training pass: about measure_seconds of
// real steps (the run's loader with its augmentation and workers, its model, device and batch, over several
// of its epochs if they are short), each timed with its wait for the loader, the first ones left out since
// they fill the allocator's cache and the loader's window. Its end, timed whole: the test pass and the files
// the epoch writes, which in a run of tiny epochs cost as much as the steps. The steps run on a loader of their
// own and take no optimizer step, the files go to temporary names (a killed run's are removed when it
// restarts) and are removed, and the random streams are put back, so the run that follows is exactly the run
// of `--epochs E` with the same seed.
struct EpochEstimate {
  double train_rate = 0, test_rate = 0;       // images/s
  double train_seconds = 0, end_seconds = 0;  // of an epoch's training pass and of its end
};

EpochEstimate measure_epoch(Run& run, double measure_seconds) {
  const TrainOptions& o = run.options;
  const uint64_t tensors_offset = default_generator().offset(), dropout_offset = dropout_generator().offset();
  data::DataLoader loader(*run.train_set, run.loader_options);
  loader.start_epoch(0);
  data::Batch batch;
  const int64_t untimed_steps = std::min<int64_t>(2, run.steps_per_epoch - 1);
  int64_t train_images = 0;
  double train_seconds = 0;
  run.model->train();
  for (int64_t step = 0, loader_epoch = 0; train_seconds < measure_seconds; ++step) {
    const auto start = std::chrono::steady_clock::now();
    if (!loader.next(batch)) {  // a small training set: its next epoch, whose start is part of the cost
      loader.start_epoch(++loader_epoch);
      loader.next(batch);
    }
    const BatchLoss step_loss = batch_loss(run, batch);
    run.optimizer->zero_grad();
    step_loss.loss.backward();
    step_loss.loss.item();  // waits for the device
    if (step < untimed_steps) continue;
    train_seconds += seconds_since(start);
    train_images += static_cast<int64_t>(batch.labels.size());
  }
  run.optimizer->zero_grad();

  const auto end_start = std::chrono::steady_clock::now();
  const Evaluation test = evaluate(*run.model, *run.test_set, run.loader_options.normalization, o.batch_size, o.workers);
  const std::array<std::string*, 4> paths = {&run.metrics, &run.best, &run.state, &run.last};
  const std::array<std::string, 4> kept = {run.metrics, run.best, run.state, run.last};
  for (std::string* path : paths) *path += ".measure.tmp-" + std::to_string(::getpid());
  Standing standing;
  standing.history.resize(1);
  save_epoch_files(run, standing, *run.model, /*improved=*/true);
  for (size_t i = 0; i < paths.size(); ++i) {
    fs::remove(*paths[i]);
    *paths[i] = kept[i];
  }
  default_generator().set_offset(tensors_offset);
  dropout_generator().set_offset(dropout_offset);

  EpochEstimate e;
  e.train_rate = train_images / std::max(train_seconds, 1e-9);  // at least one step is timed
  e.test_rate = test.images_per_s;
  e.train_seconds = static_cast<double>(run.steps_per_epoch * o.batch_size) / std::max(e.train_rate, 1e-9);
  e.end_seconds = seconds_since(end_start);
  return e;
}

// --time-budget: the epochs that fit in what is left of the budget at the measured cost.
int64_t epochs_for_budget(Run& run, std::chrono::steady_clock::time_point run_start) {
  const TrainOptions& o = run.options;
  const EpochEstimate e = measure_epoch(run, budget_measure_seconds(o.time_budget));
  const double epoch = e.train_seconds + e.end_seconds;
  const double spent = seconds_since(run_start);  // loading the data, building the model and measuring
  const double left = o.time_budget - spent;
  const int64_t epochs = std::max<int64_t>(1, epochs_that_fit(left, epoch));
  if (!o.quiet) {
    std::printf("time budget %.0f s: %.0f s spent loading and measuring; an epoch takes about %.3g s (%.0f training "
                "images/s, then %.3g s for the test pass at %.0f images/s and the checkpoints), so %ld epoch%s\n",
                o.time_budget, spent, epoch, e.train_rate, e.end_seconds, e.test_rate, static_cast<long>(epochs),
                epochs == 1 ? "" : "s");
    if (left < epoch) std::printf("one epoch does not fit in the budget: training one epoch anyway\n");
    if (epochs == kMaxEpochs)
      std::printf("%ld epochs is the limit of --epochs: the run will end before its budget\n", static_cast<long>(epochs));
  }
  return epochs;
}

// After an epoch of a fresh budgeted run: the epochs fitted again from the epochs' own mean wall time, which the
// first steps only estimated (refit_epochs says when the count may change). Saves the state and the config
// again when it does.
void refit_to_budget(Run& run, const Standing& standing, double seconds_per_epoch,
                     std::chrono::steady_clock::time_point run_start) {
  TrainOptions& o = run.options;
  const int64_t epochs = refit_epochs(o.epochs, standing.epochs_done, run.steps_per_epoch, o.warmup_epochs,
                                      o.time_budget - seconds_since(run_start), seconds_per_epoch);
  if (epochs == o.epochs) return;
  if (!o.quiet)
    std::printf("time budget %.0f s: an epoch took %.3g s, so %ld epochs instead of %ld\n", o.time_budget,
                seconds_per_epoch, static_cast<long>(epochs), static_cast<long>(o.epochs));
  o.epochs = epochs;
  plan_schedule(run);
  save_state(run, standing);
  write_file_atomically("train", run.config, run_config_file(o));
}

}  // namespace

int64_t warmup_steps_for(int64_t total_steps, int64_t steps_per_epoch, double warmup_epochs) {
  // Never longer than a tenth of the run, so a one-epoch run still spends most steps learning.
  return std::min<int64_t>(static_cast<int64_t>(warmup_epochs * steps_per_epoch), total_steps / 10);
}

int64_t epochs_that_fit(double seconds_left, double seconds_per_epoch) {
  const double epochs = (1 - kBudgetSlack) * seconds_left / seconds_per_epoch;
  return std::isnan(epochs) ? 0 : static_cast<int64_t>(std::clamp(std::floor(epochs), 0.0, double(kMaxEpochs)));
}

double budget_measure_seconds(double budget) { return std::clamp(budget / 40, 0.25, 10.0); }

int64_t epochs_that_fit_after_setup(double seconds_left, const RunCost& cost) {
  return std::max<int64_t>(1, epochs_that_fit(seconds_left - cost.setup_seconds, cost.epoch_seconds));
}

RunCost measure_run_cost(const TrainOptions& options, double measure_seconds) {
  const auto start = std::chrono::steady_clock::now();
  Run run(options);
  set_up(run);
  refuse_existing_run(run);  // before measuring, not after
  create_folder("train", run.dir);  // the epoch's files are timed there, as the run will write them
  const FolderLock lock("train", run.dir);
  RunCost cost;
  cost.setup_seconds = seconds_since(start);
  const EpochEstimate e = measure_epoch(run, measure_seconds);
  cost.epoch_seconds = e.train_seconds + e.end_seconds;
  return cost;
}

int64_t refit_epochs(int64_t epochs, int64_t epochs_done, int64_t steps_per_epoch, double warmup_epochs,
                     double seconds_left, double seconds_per_epoch) {
  if (!(seconds_per_epoch > 0) || !std::isfinite(seconds_left)) return epochs;
  const int64_t fitted = std::min(kMaxEpochs, epochs_done + epochs_that_fit(seconds_left, seconds_per_epoch));
  int64_t steps = 0, fitted_steps = 0;
  if (fitted <= epochs_done || __builtin_mul_overflow(epochs, steps_per_epoch, &steps) ||
      __builtin_mul_overflow(fitted, steps_per_epoch, &fitted_steps))
    return epochs;
  const int64_t warmup = warmup_steps_for(steps, steps_per_epoch, warmup_epochs);
  const bool only_warmup_so_far = epochs_done * steps_per_epoch <= warmup;
  return only_warmup_so_far && warmup_steps_for(fitted_steps, steps_per_epoch, warmup_epochs) == warmup ? fitted
                                                                                                          : epochs;
}

MatmulPrecision matmul_precision(bool tf32, const std::string& amp) {
  if (amp == "bf16") {
    if (tf32) fail("matmul_precision", "--tf32 and --amp bf16 are two matmul precisions: choose one");
    return MatmulPrecision::bf16;
  }
  if (amp != "none") fail("matmul_precision", "--amp is none or bf16, got '" + amp + "'");
  return tf32 ? MatmulPrecision::tf32 : MatmulPrecision::fp32;
}

std::vector<std::pair<std::string, std::string>> run_settings(const TrainOptions& o) {
  std::vector<std::pair<std::string, std::string>> s = {{"model", o.model.name}};
  for (const auto& [key, value] : models::to_map(o.model))
    if (key != "name") s.emplace_back("model." + key, value);
  s.insert(s.end(), {{"data", o.data_dir},
                     {"epochs", std::to_string(o.epochs)},
                     {"batch", std::to_string(o.batch_size)},
                     {"opt", o.optimizer},
                     {"lr", shortest_text(o.lr)},
                     {"min-lr", shortest_text(o.min_lr)},
                     {"wd", shortest_text(o.weight_decay)},
                     {"momentum", shortest_text(o.momentum)},
                     {"warmup", shortest_text(o.warmup_epochs)},
                     {"label-smoothing", shortest_text(o.label_smoothing)},
                     {"clip-grad", shortest_text(o.clip_grad)},
                     {"ema", shortest_text(o.ema_decay)},
                     {"aug", data::describe(o.augment)},
                     {"normalize", o.normalize},
                     {"skip-bad", o.dataset.skip_bad ? "1" : "0"},
                     {"train-limit", std::to_string(o.dataset.limit)},
                     {"test-limit", std::to_string(o.test_limit)},
                     {"max-image-pixels", std::to_string(o.dataset.max_pixels)},
                     {"seed", std::to_string(o.seed)},
                     {"device", device_name(o.device)},
                     {"tf32", o.tf32 ? "1" : "0"},
                     {"amp", o.amp},
                     {"workers", std::to_string(o.workers)},
                     {"threads", std::to_string(num_threads())}});
  if (!o.init_from.empty()) s.emplace_back("init-from", o.init_from);  // only then, so older runs' settings still match
  return s;
}

static std::string join(const std::vector<double>& values) {
  std::string s;
  for (double v : values) s += (s.empty() ? "" : ",") + shortest_text(v);
  return s;
}

static std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream stream(s);
  for (std::string part; std::getline(stream, part, ',');) parts.push_back(part);
  return parts;
}

std::map<std::string, std::string> data_metadata(const data::Normalization& normalization,
                                                 const std::vector<std::string>& classes) {
  return {{"vt.data.mean", join(normalization.mean)},
          {"vt.data.std", join(normalization.std)},
          {"vt.data.classes", json_string_array(classes)}};
}

// The numbers of a comma-separated metadata value, each finite; fails naming the key.
static std::vector<double> numbers_from_metadata(const std::map<std::string, std::string>& metadata, const std::string& key) {
  std::vector<double> values;
  for (const std::string& text : split_commas(metadata.at(key))) {
    const std::optional<double> value = parse_number(text);
    if (!value || !std::isfinite(*value))
      fail("checkpoint metadata", "'" + key + "' = '" + metadata.at(key) + "' holds '" + text + "', not a finite number");
    values.push_back(*value);
  }
  return values;
}

data::Normalization normalization_from_metadata(const std::map<std::string, std::string>& metadata) {
  data::Normalization n;
  const bool has_mean = metadata.count("vt.data.mean"), has_std = metadata.count("vt.data.std");
  if (!has_mean && !has_std) return n;  // CIFAR-10 statistics
  if (has_mean != has_std)
    fail("checkpoint metadata", std::string(has_mean ? "'vt.data.mean'" : "'vt.data.std'") + " without " +
                                    (has_mean ? "'vt.data.std'" : "'vt.data.mean'") + ": the normalisation is half given");
  n.mean = numbers_from_metadata(metadata, "vt.data.mean");
  n.std = numbers_from_metadata(metadata, "vt.data.std");
  if (n.mean.size() != n.std.size() || n.mean.empty())
    fail("checkpoint metadata", "'vt.data.mean' and 'vt.data.std' must give one value per channel, got " +
                                    std::to_string(n.mean.size()) + " and " + std::to_string(n.std.size()));
  for (size_t c = 0; c < n.std.size(); ++c) {
    if (!(n.std[c] > 0)) fail("checkpoint metadata", "'vt.data.std' = '" + metadata.at("vt.data.std") + "': every std must be positive");
    if (!data::normalization_in_range(n.mean[c], n.std[c]))
      fail("checkpoint metadata", "'vt.data.mean' = '" + metadata.at("vt.data.mean") + "' and 'vt.data.std' = '" +
                                      metadata.at("vt.data.std") + "': channel " + std::to_string(c) +
                                      "'s (x / 255 - mean) / std goes beyond +-1e6 (images' statistics keep it near +-5)");
  }
  return n;
}

std::vector<std::string> classes_from_metadata(const std::map<std::string, std::string>& metadata) {
  const auto found = metadata.find("vt.data.classes");
  if (found == metadata.end()) return {};
  // Checkpoints before the JSON array stored the names comma-joined (which a name with a comma broke).
  const std::vector<std::string> classes = found->second.starts_with('[')
                                               ? parse_json_string_array("checkpoint metadata", "'vt.data.classes'", found->second)
                                               : split_commas(found->second);
  if (const std::string* repeated = first_repeat(classes))  // predict would print one name for two outputs
    fail("checkpoint metadata", "'vt.data.classes' names '" + *repeated + "' twice");
  return classes;
}

Evaluation evaluate(models::Classifier& model, const data::Dataset& dataset, const data::Normalization& normalization,
                    int64_t batch_size, int workers) {
  data::LoaderOptions options;
  options.batch_size = batch_size;
  options.shuffle = false;
  options.normalization = normalization;
  options.workers = workers;
  data::DataLoader loader(dataset, options);
  Evaluation result;
  result.classes = dataset.classes();
  const size_t classes = result.classes.size();
  if (static_cast<int64_t>(classes) != model.config.num_classes)
    fail("evaluate", "the data has " + std::to_string(classes) + " classes, the model " +
                         std::to_string(model.config.num_classes) + " outputs");
  result.confusion.assign(classes, std::vector<int64_t>(classes, 0));
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  loader.start_epoch(0);
  data::Batch batch;
  // The summed loss and each batch's predictions stay where the model runs until every batch is queued: one wait
  // for the GPU at the end, not one per batch.
  const Device device = model.parameters().front().device();
  Tensor loss_sum = Tensor::zeros({}, model.parameters().front().dtype(), device);  // ()
  std::vector<Tensor> predictions;                           // a (B) tensor per batch
  std::vector<int64_t> labels;                               // every batch's, in order
  const auto start = std::chrono::steady_clock::now();
  while (loader.next(batch)) {
    const Tensor logits = model.forward(batch.images.to(device));  // (B, classes)
    const int64_t b = static_cast<int64_t>(batch.labels.size());
    loss_sum.add_(cross_entropy(logits, Tensor::from_indices(batch.labels, {b}, device)), static_cast<double>(b));
    predictions.push_back(argmax(logits, 1));
    labels.insert(labels.end(), batch.labels.begin(), batch.labels.end());
  }
  int64_t seen = 0, correct = 0;
  for (const Tensor& batch_predictions : predictions)
    for (const int64_t predicted : batch_predictions.to_indices()) {
      const int64_t label = labels[seen++];
      result.confusion[label][predicted] += 1;
      correct += predicted == label;
    }
  model.train(was_training);
  result.loss = seen ? loss_sum.item() / seen : 0;
  if (!std::isfinite(result.loss))  // finite weights can still overflow (3e38 in a weight): no accuracy to report
    fail("evaluate", "the model's loss over " + std::to_string(seen) + " images is " + std::to_string(result.loss) +
                         ": its outputs are not finite");
  result.accuracy = seen ? static_cast<double>(correct) / seen : 0;
  result.images_per_s = seen / std::max(seconds_since(start), 1e-9);
  return result;
}

std::string run_state_path(const std::string& run_dir) { return run_dir + "/last.state.safetensors"; }

TrainResult train(const TrainOptions& options) {
  const auto run_start = std::chrono::steady_clock::now();
  Run run(options);
  set_up(run);
  TrainOptions& o = run.options;
  create_folder("train", run.dir);
  const FolderLock lock("train", run.dir);  // before anything in the folder is read or removed
  const int stale = remove_stale_temporary_files(run.dir);
  if (stale > 0 && !o.quiet) std::printf("removed %d temporary files left in %s by a killed run\n", stale, run.dir.c_str());
  Standing standing;
  if (o.resume) {
    // A budgeted run keeps the epochs it was fitted to; the budget is not measured again.
    if (o.time_budget > 0 && fs::exists(run.state)) {
      o.epochs = saved_epochs(run.state);
      check_saved_budget(run.state, o.time_budget, o.epochs, o.allow_changed_config);
    }
    plan_schedule(run);
    standing = resume(run);
  } else {
    refuse_existing_run(run);
    if (o.time_budget > 0) o.epochs = epochs_for_budget(run, run_start);
    plan_schedule(run);
    start_fresh(run);
  }

  TrainResult result;
  InterruptScope interrupt_scope;
  const bool refits = o.time_budget > 0 && !o.resume;
  double epochs_seconds = 0;  // wall time of this call's epochs, test passes and checkpoints included
  for (int64_t epoch = standing.epochs_done; epoch < o.epochs; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    double lr = run.schedule->at(run.optimizer->step_count);
    if (train_epoch(run, standing, epoch, lr)) {
      save_state(run, standing);
      nn::save_weights(run.last, *run.model, run.checkpoint_metadata);
      if (!o.quiet)
        std::printf("stopped at step %ld: saved %s; continue with --resume\n", static_cast<long>(run.optimizer->step_count),
                    run.state.c_str());
      result.interrupted = true;
      break;
    }
    finish_epoch(run, standing, epoch, lr);
    epochs_seconds += seconds_since(epoch_start);
    if (refits) refit_to_budget(run, standing, epochs_seconds / static_cast<double>(epoch + 1), run_start);
    if (g_interrupted || run.optimizer->step_count == o.stop_after_steps) {
      result.interrupted = epoch + 1 < o.epochs;
      if (result.interrupted && !o.quiet)  // finish_epoch saved the state, as at any epoch's end
        std::printf("stopped after epoch %ld: saved %s; continue with --resume\n", static_cast<long>(epoch + 1),
                    run.state.c_str());
      break;
    }
  }
  result.epochs = standing.history;
  result.best_test_acc = standing.best_test_acc;
  result.wall_seconds = seconds_since(run_start);
  return result;
}

}  // namespace vt
