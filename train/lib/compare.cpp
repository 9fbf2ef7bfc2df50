// vt compare: trains several models with one recipe and budget, then writes a Markdown report and a PNG of
// their curves. Conventions: every model gets the same epochs (a time budget is turned into the epochs that
// all models' runs fit, one after another, measured as vt train --time-budget measures), seed, data and
// augmentation.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "autograd/files.h"
#include "autograd/parallel.h"
#include "autograd/text.h"
#include "train/lib/commands.h"
#include "train/lib/plot.h"
#include "train/lib/trainer.h"

namespace vt {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Median seconds of `repeats` calls of f after one warm-up call.
template <class F>
double median_seconds(int repeats, const F& f) {
  f();
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    f();
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Images per second of the model alone on random inputs: training steps (forward and backward; the
// optimizer step is left out) and eval-mode forwards. Data loading is left out too: models compare on compute.
std::pair<double, double> model_throughput(const models::ModelConfig& config, int64_t batch, Device device) {
  manual_seed(0);
  const auto model = models::create_model(config);
  model->to(device);
  const Tensor images = randn({batch, config.in_channels, config.image_size, config.image_size}).to(device);
  const Tensor labels = Tensor::from_indices(std::vector<int64_t>(batch, 0), {batch}, device);
  const double train_seconds = median_seconds(3, [&] {
    model->zero_grad();
    cross_entropy(model->forward(images), labels).backward();
    synchronize(device);
  });
  model->eval();
  const double infer_seconds = median_seconds(3, [&] {
    NoGradGuard no_grad;
    model->forward(images);
    synchronize(device);
  });
  return {batch / train_seconds, batch / infer_seconds};
}

struct ModelReport {
  models::ModelConfig config;
  int64_t params = 0;
  double gmacs = 0, train_images_per_s = 0, infer_images_per_s = 0;
  TrainResult result;
};

std::string format_count(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace

int command_compare(const CompareOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string>& names = o.models;
  const double time_budget = o.time_budget;
  const TrainOptions& base = o.base;
  if (names.empty()) fail("compare", "--models names no model");
  if (time_budget > 0 && base.resume)  // the budget's measuring runs would find the runs already there
    fail("compare", "--resume continues a comparison of fixed --epochs; one fitted to --time-budget cannot be resumed");
  if (const std::string* repeated = first_repeat(names))  // each model's run folder is out/NAME: a second would find the first's
    fail("compare", "--models names " + *repeated + " twice");
  std::vector<ModelReport> reports(names.size());
  for (size_t i = 0; i < names.size(); ++i)  // every name and override checked before the first benchmark
    reports[i].config = ModelSpec{names[i], {}, o.overrides}.config();
  const std::string out = base.out_dir.empty() ? "runs/compare" : base.out_dir;
  create_folder("compare", out);

  for (ModelReport& r : reports) {
    const std::string& name = r.config.name;
    r.params = static_cast<int64_t>(models::parameter_count(r.config));
    r.gmacs = models::macs_per_image(r.config) / 1e9;
    std::tie(r.train_images_per_s, r.infer_images_per_s) = model_throughput(r.config, base.batch_size, base.device);
    std::printf("%s: %s parameters, %.3f GMACs/image, %.0f training images/s, %.0f inference images/s (model alone)\n",
                name.c_str(), format_count(r.params).c_str(), r.gmacs, r.train_images_per_s, r.infer_images_per_s);
  }

  // A model's run: the shared recipe, its model and a folder of its own.
  const auto run_options = [&](const ModelReport& r, int64_t epochs) {
    TrainOptions options = base;
    options.model = r.config;
    options.epochs = epochs;
    options.out_dir = out + "/" + r.config.name;
    return options;
  };
  int64_t epochs = base.epochs;
  if (time_budget > 0) {
    // Every model trains the same epochs. Each run's cost is measured on its real pipeline, data loading and
    // augmentation included, which share the cores with the model; the model-alone speeds above leave them
    // out, and on 2 cores overestimated a run's speed by 8-18% (1,933 s estimated for a 2,096 s epoch pair;
    // 3,981 images/s for a run that trained at 3,386).
    RunCost all;  // of every run, one after another
    const double measure_seconds = budget_measure_seconds(time_budget / static_cast<double>(reports.size()));
    for (const ModelReport& r : reports) {
      const RunCost cost = measure_run_cost(run_options(r, 1), measure_seconds);
      all.setup_seconds += cost.setup_seconds;
      all.epoch_seconds += cost.epoch_seconds;
    }
    const double spent = seconds_since(start), left = time_budget - spent;
    epochs = epochs_that_fit_after_setup(left, all);
    std::printf("time budget %.0f s: %.0f s spent measuring; an epoch of every model takes about %.3g s and setting "
                "their runs up %.3g s, so %ld epoch%s each\n",
                time_budget, spent, all.epoch_seconds, all.setup_seconds, static_cast<long>(epochs),
                epochs == 1 ? "" : "s");
    if (left < all.setup_seconds + all.epoch_seconds)
      std::printf("one epoch does not fit in the budget: training one epoch anyway\n");
  }

  for (ModelReport& r : reports) {
    std::printf("\n== training %s for %ld epoch%s ==\n", r.config.name.c_str(), static_cast<long>(epochs),
                epochs == 1 ? "" : "s");
    TrainOptions options = run_options(r, epochs);
    // A compare stopped during one model has no state yet for the models after it: --resume starts those
    // afresh (it used to fail on them, and the comparison could never be finished).
    if (options.resume && !std::filesystem::exists(run_state_path(options.out_dir))) options.resume = false;
    r.result = train(options);
    if (r.result.interrupted) return 130;
  }

  std::ostringstream report;  // written whole below, as every output is (an unchecked ofstream claimed success)
  report << "# ViT vs TNT on CIFAR-10\n\n"
         << "Same recipe for every model: " << epochs << (epochs == 1 ? " epoch" : " epochs") << ", batch " << base.batch_size << ", " << base.optimizer
         << " lr " << base.lr << " (warm-up then cosine to " << base.min_lr << "), weight decay " << base.weight_decay
         << ", label smoothing " << base.label_smoothing << ", augmentation " << data::describe(base.augment) << ", seed "
         << base.seed << ", " << num_threads() << " threads.";
  if (!o.overrides.empty()) {
    report << " Model overrides:";
    for (const std::string& item : o.overrides) report << " " << item;
    report << ".";
  }
  report << "\n\n"
         << "| model | params | GMACs/image | train img/s (model) | train img/s (run) | inference img/s | final test acc | best test acc | wall time |\n"
         << "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const ModelReport& r : reports) {
    double run_speed = 0;
    for (const EpochMetrics& m : r.result.epochs) run_speed += m.images_per_s / r.result.epochs.size();
    char row[512];
    std::snprintf(row, sizeof row, "| %s | %s | %.3f | %.0f | %.0f | %.0f | %.2f%% | %.2f%% | %.0f s |\n",
                  r.config.name.c_str(), format_count(r.params).c_str(), r.gmacs, r.train_images_per_s, run_speed,
                  r.infer_images_per_s, r.result.epochs.empty() ? 0.0 : 100 * r.result.epochs.back().test_acc,
                  100 * r.result.best_test_acc, r.result.wall_seconds);
    report << row;
  }
  report << "\n\"train img/s (model)\" and \"inference img/s\" time the model alone on random batches of "
         << base.batch_size << " (median of 3); \"train img/s (run)\" is the mean over epochs of the real run, "
         << "data loading and optimizer included. Test accuracy is measured after every epoch on "
         << (base.test_limit ? "a class-balanced subset of " + std::to_string(base.test_limit) + " test images"
                             : std::string("the whole test set"))
         << "; \"final\" is the last epoch's.\n\n![curves](curves.png)\n";
  write_file_atomically("compare", out + "/report.md", report.str());

  static const uint32_t colours[] = {0x1f77b4, 0xd62728, 0x2ca02c, 0xff7f0e, 0x9467bd};
  Panel accuracy{"test accuracy", "epoch", "accuracy (%)", {}}, loss{"training loss", "epoch", "loss", {}};
  for (size_t i = 0; i < reports.size(); ++i) {
    Series acc{reports[i].config.name, {}, {}, colours[i % 5]}, train_loss{reports[i].config.name, {}, {}, colours[i % 5]};
    for (const EpochMetrics& m : reports[i].result.epochs) {
      acc.x.push_back(static_cast<double>(m.epoch));
      acc.y.push_back(100 * m.test_acc);
      train_loss.x.push_back(static_cast<double>(m.epoch));
      train_loss.y.push_back(m.train_loss);
    }
    accuracy.series.push_back(acc);
    loss.series.push_back(train_loss);
  }
  write_line_chart_png(out + "/curves.png", {accuracy, loss});
  std::printf("\nwrote %s/report.md and %s/curves.png\n", out.c_str(), out.c_str());
  return 0;
}

}  // namespace vt
