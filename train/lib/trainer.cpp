// The training loop. Conventions: one optimizer step per batch; lr from the schedule before each step;
// test evaluation after every epoch; checkpoints written atomically, "last" every epoch and "best" when
// the test accuracy improves; Ctrl-C and non-finite losses end the run with a usable checkpoint on disk.
#include "train/lib/trainer.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/json.h"
#include "autograd/parallel.h"
#include "autograd/text.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "nn/schedule.h"
#include "train/lib/args.h"

namespace vt {

namespace {

std::atomic<bool> g_interrupted{false};

void on_interrupt(int) { g_interrupted = true; }

// Ctrl-C sets a flag that the loop checks after each step; a second Ctrl-C kills the process as usual.
class InterruptScope {
 public:
  InterruptScope() {
    g_interrupted = false;
    previous_ = std::signal(SIGINT, [](int signal) {
      on_interrupt(signal);
      std::signal(SIGINT, SIG_DFL);
    });
  }
  ~InterruptScope() { std::signal(SIGINT, previous_); }

 private:
  void (*previous_)(int);
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
class Progress {
 public:
  Progress(int64_t epoch, int64_t epochs, int64_t steps, bool quiet)
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

int64_t count_correct(const Tensor& logits, const std::vector<int64_t>& labels) {
  const std::vector<int64_t> predicted = argmax(logits, 1).to_indices();
  int64_t correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) correct += predicted[i] == labels[i];
  return correct;
}

void append_metrics(const std::string& path, const EpochMetrics& m) {
  const bool fresh = !std::filesystem::exists(path);
  std::ofstream out(path, std::ios::app);
  if (!out) fail("train", "cannot write " + path);
  if (fresh) out << "epoch,lr,train_loss,train_acc,test_loss,test_acc,images_per_s,seconds\n";
  char line[256];
  std::snprintf(line, sizeof line, "%ld,%.6g,%.6f,%.6f,%.6f,%.6f,%.1f,%.1f\n", static_cast<long>(m.epoch), m.lr,
                m.train_loss, m.train_acc, m.test_loss, m.test_acc, m.images_per_s, m.seconds);
  out << line;
}

// Keeps only the rows of epochs before `epoch` (a resumed run rewrites the epochs it repeats).
void truncate_metrics(const std::string& path, int64_t epoch) {
  std::ifstream in(path);
  if (!in) return;
  std::string header, line, kept;
  std::getline(in, header);
  while (std::getline(in, line))
    if (std::stoll(line.substr(0, line.find(','))) < epoch) kept += line + "\n";
  in.close();
  std::ofstream out(path, std::ios::trunc);
  out << header << "\n" << kept;
}

std::unique_ptr<nn::Optimizer> make_optimizer(const TrainOptions& o, const nn::Module& model) {
  const auto groups = nn::weight_decay_groups(model, o.weight_decay);
  if (o.optimizer == "adamw") return std::make_unique<nn::AdamW>(groups, o.lr);
  if (o.optimizer == "sgd") return std::make_unique<nn::SGD>(groups, o.lr, o.momentum, /*nesterov=*/true);
  fail("train", "--opt " + o.optimizer + " is not one of adamw, sgd");
}

}  // namespace

static std::string join(const std::vector<double>& values) {
  std::string s;
  for (double v : values) s += (s.empty() ? "" : ",") + std::to_string(v);
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
  if (!metadata.count("vt.data.mean") || !metadata.count("vt.data.std")) return n;  // CIFAR-10 statistics
  n.mean = numbers_from_metadata(metadata, "vt.data.mean");
  n.std = numbers_from_metadata(metadata, "vt.data.std");
  if (n.mean.size() != n.std.size() || n.mean.empty())
    fail("checkpoint metadata", "'vt.data.mean' and 'vt.data.std' must give one value per channel, got " +
                                    std::to_string(n.mean.size()) + " and " + std::to_string(n.std.size()));
  for (double s : n.std)
    if (!(s > 0)) fail("checkpoint metadata", "'vt.data.std' = '" + metadata.at("vt.data.std") + "': every std must be positive");
  return n;
}

std::vector<std::string> classes_from_metadata(const std::map<std::string, std::string>& metadata) {
  const auto found = metadata.find("vt.data.classes");
  if (found == metadata.end()) return {};
  // Checkpoints before the JSON array stored the names comma-joined (which a name with a comma broke).
  if (!found->second.starts_with('[')) return split_commas(found->second);
  return parse_json_string_array("checkpoint metadata", "'vt.data.classes'", found->second);
}

void parse_train_flags(Args& args, TrainOptions& o) {
  o.data_dir = args.get("data", o.data_dir);
  o.out_dir = args.get("out", o.out_dir);
  o.epochs = args.get_int("epochs", o.epochs);
  o.batch_size = args.get_int("batch", o.batch_size);
  o.optimizer = args.get("opt", o.optimizer);
  o.lr = args.get_double("lr", o.lr);
  o.min_lr = args.get_double("min-lr", o.min_lr);
  o.weight_decay = args.get_double("wd", o.weight_decay);
  o.momentum = args.get_double("momentum", o.momentum);
  o.warmup_epochs = args.get_double("warmup", o.warmup_epochs);
  o.label_smoothing = args.get_double("label-smoothing", o.label_smoothing);
  o.clip_grad = args.get_double("clip-grad", o.clip_grad);
  o.ema_decay = args.get_double("ema", o.ema_decay);
  data::parse_augment(o.augment, args.get("aug", ""));
  o.dataset.skip_bad = args.has("skip-bad");
  o.dataset.limit = args.get_int("train-limit", o.dataset.limit);
  o.test_limit = args.get_int("test-limit", o.test_limit);
  o.compute_normalization = args.get("normalize", "cifar10") == "computed";
  o.workers = static_cast<int>(args.get_int("workers", o.workers));
  o.seed = static_cast<uint64_t>(args.get_int("seed", static_cast<int64_t>(o.seed)));
  o.resume = args.has("resume");
  o.stop_after_steps = args.get_int("stop-after-steps", 0);
  if (o.epochs < 1 || o.batch_size < 1) fail("train", "--epochs and --batch must be positive");
  if (o.lr <= 0 || o.weight_decay < 0 || o.label_smoothing < 0 || o.label_smoothing >= 1)
    fail("train", "--lr must be positive, --wd non-negative and --label-smoothing in [0, 1)");
}

std::string describe(const TrainOptions& o) {
  std::ostringstream s;
  s << "model " << o.model.name << "\n";
  for (const auto& [key, value] : models::to_map(o.model)) s << "model." << key << " " << value << "\n";
  s << "data " << o.data_dir << "\nepochs " << o.epochs << "\nbatch " << o.batch_size << "\nopt " << o.optimizer
    << "\nlr " << o.lr << "\nmin_lr " << o.min_lr << "\nweight_decay " << o.weight_decay << "\nmomentum " << o.momentum
    << "\nwarmup_epochs " << o.warmup_epochs << "\nlabel_smoothing " << o.label_smoothing << "\nclip_grad "
    << o.clip_grad << "\nema " << o.ema_decay << "\naugment " << data::describe(o.augment) << "\nskip_bad "
    << o.dataset.skip_bad << "\ntrain_limit " << o.dataset.limit << "\ntest_limit " << o.test_limit
    << "\nnormalize " << (o.compute_normalization ? "computed" : "cifar10") << "\nworkers " << o.workers
    << "\nthreads " << num_threads() << "\nseed " << o.seed << "\n";
  return s.str();
}

Evaluation evaluate(const models::Classifier& model, const data::Dataset& dataset,
                    const data::Normalization& normalization, int64_t batch_size, int workers) {
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
  const_cast<models::Classifier&>(model).eval();
  loader.start_epoch(0);
  data::Batch batch;
  double loss_sum = 0;
  int64_t seen = 0, correct = 0;
  const auto start = std::chrono::steady_clock::now();
  while (loader.next(batch)) {
    const Tensor logits = model.forward(batch.images);  // (B, classes)
    const int64_t b = static_cast<int64_t>(batch.labels.size());
    loss_sum += cross_entropy(logits, Tensor::from_indices(batch.labels, {b})).item() * b;
    const std::vector<int64_t> predicted = argmax(logits, 1).to_indices();
    for (int64_t i = 0; i < b; ++i) {
      result.confusion[batch.labels[i]][predicted[i]] += 1;
      correct += predicted[i] == batch.labels[i];
    }
    seen += b;
  }
  const_cast<models::Classifier&>(model).train(was_training);
  result.loss = seen ? loss_sum / seen : 0;
  result.accuracy = seen ? static_cast<double>(correct) / seen : 0;
  result.images_per_s = seen / std::max(seconds_since(start), 1e-9);
  return result;
}

TrainResult train(const TrainOptions& o) {
  namespace fs = std::filesystem;
  const std::string out = o.out_dir.empty() ? "runs/" + o.model.name : o.out_dir;
  fs::create_directories(out);
  const std::string last = out + "/last.safetensors", last_state = out + "/last.state.safetensors";
  const std::string best = out + "/best.safetensors", metrics_path = out + "/metrics.csv";

  data::DatasetOptions dataset_options = o.dataset;
  dataset_options.channels = static_cast<int>(o.model.in_channels);
  dataset_options.image_size = static_cast<int>(o.model.image_size);
  const auto train_set = data::open_dataset(o.data_dir, "train", dataset_options);
  data::DatasetOptions test_options = dataset_options;
  test_options.limit = o.test_limit;
  test_options.classes = train_set->classes();  // test labels by name, in the training set's label space
  const auto test_set = data::open_dataset(o.data_dir, "test", test_options);
  models::ModelConfig config = o.model;
  config.num_classes = static_cast<int64_t>(train_set->classes().size());  // the class count comes from the data

  data::LoaderOptions loader_options;
  loader_options.batch_size = o.batch_size;
  loader_options.shuffle = true;
  loader_options.drop_last = true;  // equal-sized steps; at most batch - 1 images wait for the next epoch
  loader_options.augment = true;
  loader_options.augment_config = o.augment;
  loader_options.seed = o.seed;
  loader_options.workers = o.workers;
  // CIFAR-10's statistics are RGB: other channel counts always get their own.
  if (o.compute_normalization || train_set->channels() != 3)
    loader_options.normalization = data::compute_normalization(*train_set);
  data::DataLoader loader(*train_set, loader_options);
  const int64_t steps_per_epoch = loader.batches_per_epoch();
  if (steps_per_epoch == 0) fail("train", "fewer training images than one batch of " + std::to_string(o.batch_size));

  manual_seed(o.seed);
  const auto model = models::create_model(config);
  auto optimizer = make_optimizer(o, *model);
  const int64_t total_steps = o.epochs * steps_per_epoch;
  // Warm-up never longer than a tenth of the run, so a one-epoch run still spends most steps learning.
  const int64_t warmup_steps = std::min<int64_t>(static_cast<int64_t>(o.warmup_epochs * steps_per_epoch), total_steps / 10);
  const nn::LrSchedule schedule = nn::LrSchedule::cosine(o.lr, total_steps, warmup_steps, o.min_lr);
  std::unique_ptr<nn::ModelEma> ema = o.ema_decay > 0 ? std::make_unique<nn::ModelEma>(*model, o.ema_decay) : nullptr;
  std::shared_ptr<models::Classifier> ema_model = ema ? models::create_model(config) : nullptr;

  TrainResult result;
  int64_t first_epoch = 0, skip_batches = 0;
  if (o.resume && fs::exists(last_state)) {
    nn::load_weights(last, *model);
    const nn::TrainingState state = nn::load_training_state(last_state);
    nn::NamedTensors optimizer_state, ema_state;  // the EMA weights are stored as "ema.<name>"
    for (const auto& [name, tensor] : state.tensors)
      (name.rfind("ema.", 0) == 0 ? ema_state : optimizer_state).emplace_back(name, tensor);
    optimizer->load_state(optimizer_state);
    if (ema) {
      nn::NamedTensors destination;
      for (const auto& [name, tensor] : ema->named_parameters()) destination.emplace_back("ema." + name, tensor);
      nn::assign_named_tensors("resume", last_state, ema_state, destination);
    }
    manual_seed(state.rng_seed);
    default_generator().set_offset(state.rng_offset_tensors);
    dropout_generator().set_offset(state.rng_offset_dropout);
    first_epoch = state.epoch;
    skip_batches = state.step - state.epoch * steps_per_epoch;  // > 0 when interrupted mid-epoch
    if (state.metadata.count("best_test_acc")) result.best_test_acc = std::stod(state.metadata.at("best_test_acc"));
    truncate_metrics(metrics_path, first_epoch);
    std::printf("resuming %s at epoch %ld, step %ld\n", out.c_str(), static_cast<long>(first_epoch + 1),
                static_cast<long>(state.step));
  } else {
    std::ofstream(out + "/config.txt") << describe(o);
    fs::remove(metrics_path);
  }
  std::map<std::string, std::string> metadata = models::config_metadata(config);
  metadata.merge(data_metadata(loader_options.normalization, train_set->classes()));

  auto save_state = [&](int64_t epochs_done) {
    nn::save_weights(last, *model, metadata);
    nn::TrainingState state;
    state.tensors = optimizer->state();
    if (ema)
      for (const auto& [name, tensor] : ema->named_parameters()) state.tensors.emplace_back("ema." + name, tensor);
    state.step = optimizer->step_count;
    state.epoch = epochs_done;
    state.rng_seed = default_generator().seed();
    state.rng_offset_tensors = default_generator().offset();
    state.rng_offset_dropout = dropout_generator().offset();
    state.metadata["best_test_acc"] = std::to_string(result.best_test_acc);
    nn::save_training_state(last_state, state);
  };

  InterruptScope interrupt_scope;
  const auto run_start = std::chrono::steady_clock::now();
  for (int64_t epoch = first_epoch; epoch < o.epochs; ++epoch) {
    model->train();
    loader.start_epoch(epoch);
    Progress progress(epoch + 1, o.epochs, steps_per_epoch, o.quiet);
    data::Batch batch;
    while (skip_batches > 0 && loader.next(batch)) --skip_batches;  // resuming mid-epoch: same order, same batches
    double loss_sum = 0, lr = 0;
    int64_t seen = 0, correct = 0, step_in_epoch = 0;
    const auto epoch_start = std::chrono::steady_clock::now();
    while (loader.next(batch)) {
      lr = schedule.at(optimizer->step_count);
      optimizer->lr = lr;
      const Tensor logits = model->forward(batch.images);  // (B, classes)
      const int64_t b = static_cast<int64_t>(batch.labels.size());
      const Tensor target = batch.targets.defined() ? batch.targets : Tensor::from_indices(batch.labels, {b});
      const Tensor loss = cross_entropy(logits, target, o.label_smoothing);
      const double loss_value = loss.item();
      if (!std::isfinite(loss_value))
        fail("train", "the loss became " + std::to_string(loss_value) + " at epoch " + std::to_string(epoch + 1) +
                          ", step " + std::to_string(optimizer->step_count + 1) + "; stopped. The last good checkpoint is " +
                          last + " (lower --lr or set --clip-grad)");
      optimizer->zero_grad();
      loss.backward();
      if (o.clip_grad > 0) nn::clip_grad_norm(model->parameters(), o.clip_grad);
      optimizer->step();
      if (ema) ema->update(*model);
      loss_sum += loss_value * b;
      correct += count_correct(logits.detach(), batch.labels);
      seen += b;
      ++step_in_epoch;
      const double elapsed = seconds_since(epoch_start);
      progress.update(step_in_epoch, loss_sum / seen, static_cast<double>(correct) / seen, seen / elapsed, elapsed);
      if (g_interrupted || optimizer->step_count == o.stop_after_steps) break;
    }
    progress.finish();
    if (g_interrupted || optimizer->step_count == o.stop_after_steps) {
      save_state(epoch);
      if (!o.quiet)
        std::printf("stopped at step %ld: saved %s and %s; continue with --resume\n",
                    static_cast<long>(optimizer->step_count), last.c_str(), last_state.c_str());
      result.interrupted = true;
      break;
    }
    EpochMetrics m;
    m.epoch = epoch + 1;
    m.lr = lr;
    m.seconds = seconds_since(epoch_start);
    m.train_loss = seen ? loss_sum / seen : 0;
    m.train_acc = seen ? static_cast<double>(correct) / seen : 0;
    m.images_per_s = seen / std::max(m.seconds, 1e-9);
    const models::Classifier* evaluated = model.get();
    if (ema) {
      nn::assign_named_tensors("ema", "the EMA weights", ema->named_parameters(), ema_model->named_parameters());
      evaluated = ema_model.get();
    }
    const Evaluation test = evaluate(*evaluated, *test_set, loader_options.normalization, o.batch_size, o.workers);
    m.test_loss = test.loss;
    m.test_acc = test.accuracy;
    result.epochs.push_back(m);
    append_metrics(metrics_path, m);
    if (m.test_acc > result.best_test_acc || !fs::exists(best)) {
      result.best_test_acc = std::max(result.best_test_acc, m.test_acc);
      nn::save_weights(best, *evaluated, metadata);
    }
    save_state(epoch + 1);
    if (!o.quiet)
      std::printf("epoch %ld/%ld: lr %.2e train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | %.0f img/s, %.0f s\n",
                  static_cast<long>(m.epoch), static_cast<long>(o.epochs), m.lr, m.train_loss, 100 * m.train_acc,
                  m.test_loss, 100 * m.test_acc, m.images_per_s, m.seconds);
    std::fflush(stdout);
  }
  result.wall_seconds = seconds_since(run_start);
  return result;
}

}  // namespace vt
