// End to end: vt's training loop on CIFAR-10 images (1,000 from ../shared/data/cifar10-jpg.tar.gz when the
// archive is there, else generated images of 10 pattern classes) learns well above chance in 2 epochs, a
// run stopped mid-epoch and resumed ends bit-identical to one that ran straight through, vt compare writes
// its report and curves, and (with a GPU) a run on the GPU reaches the CPU's accuracy.
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "autograd/device.h"
#include "nn/safetensors.h"
#include "tests/helpers.h"
#include "train/lib/commands.h"
#include "train/lib/trainer.h"

using namespace vt;
namespace fs = std::filesystem;

namespace {

const fs::path kArchive = fs::path(VT_SOURCE_DIR) / ".." / "shared" / "data" / "cifar10-jpg.tar.gz";

// 10 classes of 32x32 RGB images: stripes whose angle and colour depend on the class, at a random phase, with
// noise, so that a model has to look at structure rather than one pixel.
void write_pattern_images(const fs::path& root, int per_class_train, int per_class_test) {
  Generator generator(99);
  for (const auto& [split, count] : {std::pair<std::string, int>{"train", per_class_train}, {"test", per_class_test}})
    for (int c = 0; c < 10; ++c) {
      const fs::path folder = root / split / ("class" + std::to_string(c));
      fs::create_directories(folder);
      for (int i = 0; i < count; ++i) {
        const std::vector<double> noise = rand({32 * 32 * 3 + 1}, DType::f64, generator).to_vector();
        const double angle = M_PI * c / 10, phase = 2 * M_PI * noise.back();
        std::vector<uint8_t> pixels(32 * 32 * 3);
        for (int y = 0; y < 32; ++y)
          for (int x = 0; x < 32; ++x) {
            const double wave = std::sin(0.8 * (x * std::cos(angle) + y * std::sin(angle)) + phase);
            for (int ch = 0; ch < 3; ++ch) {
              const double tint = 0.5 + 0.4 * std::sin(c + 2.1 * ch);
              const size_t at = (y * 32 + x) * 3 + ch;
              pixels[at] = static_cast<uint8_t>(std::clamp(255 * (tint * (0.5 + 0.4 * wave) + 0.2 * (noise[at] - 0.5)), 0.0, 255.0));
            }
          }
        const std::string file = (folder / (std::to_string(i) + ".png")).string();
        REQUIRE(stbi_write_png(file.c_str(), 32, 32, 3, pixels.data(), 32 * 3) != 0);
      }
    }
}

// The data folder for the test: the real archive unpacked, or generated images.
std::string prepare_data(const testing::TemporaryDirectory& directory) {
  if (fs::exists(kArchive)) {
    const std::string command = "tar xzf '" + kArchive.string() + "' -C '" + directory.path.string() + "'";
    REQUIRE(std::system(command.c_str()) == 0);
    MESSAGE("training on CIFAR-10 images from " << kArchive.string());
  } else {
    write_pattern_images(directory.path, 100, 100);
    MESSAGE("no CIFAR-10 archive at " << kArchive.string() << ": training on generated images");
  }
  return directory.path.string();
}

// A small ViT and a short recipe: 1,000 training images (100 per class), 2 epochs.
TrainOptions quick_recipe(const std::string& data, const std::string& out) {
  TrainOptions o;
  o.model = models::preset("vit_cifar");
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"dim", "64"}, {"depth", "2"}, {"heads", "2"}, {"mlp_ratio", "2"}})
    models::apply_override(o.model, key, value);
  o.data_dir = data;
  o.out_dir = out;
  o.epochs = 2;
  o.batch_size = 32;
  o.lr = 2e-3;
  data::parse_augment(o.augment, "crop=4,flip=1,auto=none");
  o.dataset.limit = 1000;
  o.test_limit = 1000;
  o.quiet = true;
  return o;
}

}  // namespace

TEST_CASE("end to end: 2 epochs on 1,000 images raise test accuracy well above chance") {
  testing::TemporaryDirectory directory("end_to_end");
  const std::string data = prepare_data(directory);
  const TrainResult result = train(quick_recipe(data, (directory.path / "run").string()));
  REQUIRE(result.epochs.size() == 2);
  const double accuracy = result.epochs.back().test_acc;
  MESSAGE("final test accuracy " << 100 * accuracy << "% after 2 epochs (chance: 10%), " << result.wall_seconds << " s");
  CHECK(accuracy > 0.18);
  CHECK(result.epochs.back().train_loss < result.epochs.front().train_loss);
  CHECK(fs::exists(directory.path / "run" / "metrics.csv"));
  CHECK(fs::exists(directory.path / "run" / "best.safetensors"));
  // The checkpoint carries the model and the data statistics, so eval and predict need no --model.
  const auto metadata = nn::read_metadata((directory.path / "run" / "last.safetensors").string());
  CHECK(models::config_from_metadata(metadata).dim == 64);
  CHECK(classes_from_metadata(metadata).size() == 10);
}

TEST_CASE("end to end: a run stopped mid-epoch and resumed matches an uninterrupted run bit for bit") {
  testing::TemporaryDirectory directory("resume");
  write_pattern_images(directory.path / "data", 20, 5);  // 200 training images: 6 steps of 32 per epoch
  const std::string data = (directory.path / "data").string();
  TrainOptions straight = quick_recipe(data, (directory.path / "straight").string());
  straight.dataset.limit = 0;
  straight.test_limit = 0;
  straight.model.drop_path_rate = 0.2;  // random draws in the model too, which the resume must restore
  const TrainResult a = train(straight);

  TrainOptions interrupted = straight;
  interrupted.out_dir = (directory.path / "resumed").string();
  interrupted.stop_after_steps = 8;  // in the middle of epoch 2
  const TrainResult first = train(interrupted);
  CHECK(first.interrupted);
  interrupted.stop_after_steps = 0;
  interrupted.resume = true;
  const TrainResult b = train(interrupted);
  REQUIRE(b.epochs.size() == 2);  // epoch 1 from the state, epoch 2 resumed
  CHECK(b.epochs.front().test_acc == a.epochs.front().test_acc);
  // The interrupted epoch's metrics come out as if it had run straight through (all but the timings).
  CHECK(b.epochs.back().train_loss == a.epochs.back().train_loss);
  CHECK(b.epochs.back().train_acc == a.epochs.back().train_acc);
  CHECK(b.epochs.back().test_acc == a.epochs.back().test_acc);
  CHECK(b.epochs.back().test_loss == a.epochs.back().test_loss);
  const auto weights_a = nn::load_safetensors((directory.path / "straight" / "last.safetensors").string()).tensors;
  const auto weights_b = nn::load_safetensors((directory.path / "resumed" / "last.safetensors").string()).tensors;
  REQUIRE(weights_a.size() == weights_b.size());
  for (size_t i = 0; i < weights_a.size(); ++i) {
    CAPTURE(weights_a[i].first);
    CHECK(weights_a[i].second.to_vector() == weights_b[i].second.to_vector());
  }
}

namespace {

// The epochs a run folder's config.toml records.
int64_t config_epochs(const fs::path& run) {
  std::ifstream config(run / "config.toml");
  for (std::string line; std::getline(config, line);)
    if (line.starts_with("epochs = ")) return std::stoll(line.substr(10));  // epochs = "E"
  return -1;
}

// The weights of a run's last checkpoint, as numbers.
std::vector<std::vector<double>> last_weights(const fs::path& run) {
  std::vector<std::vector<double>> weights;
  for (const auto& [name, tensor] : nn::load_safetensors((run / "last.safetensors").string()).tensors)
    weights.push_back(tensor.to_vector());
  return weights;
}

// The files a finished run's folder holds: no leftover of the measuring a budget does.
std::vector<std::string> run_files(const fs::path& run) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(run)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("vt train --time-budget: the epochs fitted to the budget, then exactly the run of --epochs E") {
  testing::TemporaryDirectory directory("budget");
  write_pattern_images(directory.path / "data", 20, 5);  // 200 training images: 6 steps of 32 per epoch
  const std::string data = (directory.path / "data").string();
  TrainOptions budgeted = quick_recipe(data, (directory.path / "budgeted").string());
  budgeted.dataset.limit = 0;
  budgeted.test_limit = 0;
  budgeted.model.drop_path_rate = 0.2;  // the measuring steps draw masks; the run's stream must not notice
  budgeted.time_budget = 4;
  const TrainResult a = train(budgeted);
  const int64_t epochs = config_epochs(directory.path / "budgeted");
  MESSAGE("a 4 s budget bought " << epochs << " epochs; the run took " << a.wall_seconds << " s");
  REQUIRE(epochs >= 1);
  CHECK(static_cast<int64_t>(a.epochs.size()) == epochs);
  // The epoch's end was timed on files of its own, removed after (.vt-lock is the folder's lock, FolderLock).
  CHECK(run_files(directory.path / "budgeted") == std::vector<std::string>{".vt-lock", "best.safetensors",
                                                                           "config.toml", "last.safetensors",
                                                                           "last.state.safetensors", "metrics.csv"});

  // The measuring took no optimizer step and left the random streams and the loader as they were.
  TrainOptions fixed = budgeted;
  fixed.time_budget = 0;
  fixed.epochs = epochs;
  fixed.out_dir = (directory.path / "fixed").string();
  const TrainResult b = train(fixed);
  CHECK(b.epochs.back().train_loss == a.epochs.back().train_loss);
  CHECK(b.epochs.back().test_acc == a.epochs.back().test_acc);
  CHECK(last_weights(directory.path / "fixed") == last_weights(directory.path / "budgeted"));

  // Resumed, a budgeted run keeps the epochs its state was saved with. Another budget is refused: it kept the
  // old epochs in silence. --allow-changed-config keeps them knowingly.
  TrainOptions stopped = budgeted;
  stopped.out_dir = (directory.path / "stopped").string();
  stopped.stop_after_steps = 3;
  CHECK(train(stopped).interrupted);
  const int64_t stopped_epochs = config_epochs(directory.path / "stopped");
  stopped.stop_after_steps = 0;
  stopped.resume = true;
  stopped.time_budget = 1e6;
  CHECK_THROWS_WITH_AS(train(stopped), doctest::Contains("--time-budget 1e+06 is not the run's (4), to which its"),
                       std::runtime_error);
  stopped.allow_changed_config = true;
  CHECK(static_cast<int64_t>(train(stopped).epochs.size()) == stopped_epochs);
}

TEST_CASE("vt train --time-budget: the epochs are fitted again after the warm-up, only where the run stays exact") {
  // 390 steps an epoch (50,000 images at batch 128), one epoch of warm-up; the first steps estimated 12 epochs.
  // After epoch 1, 3,300 s left at 150 s an epoch: 1 + floor(0.97 * 3300 / 150) = 1 + floor(21.34) = 22. Both
  // 12 and 22 epochs warm up for min(390, total / 10) = 390 steps, and the 390 steps taken were all warm-up steps.
  CHECK(warmup_steps_for(12 * 390, 390, 1.0) == 390);
  CHECK(refit_epochs(12, 1, 390, 1.0, 3300, 150) == 22);
  CHECK(refit_epochs(12, 1, 390, 1.0, 1499, 150) == 10);  // slower than estimated: 1 + floor(9.69) = 10
  // Never past --epochs' limit: 1 + 10^6 epochs gave a config.toml that --config refused.
  CHECK(epochs_that_fit(1e12, 1e-3) == kMaxEpochs);
  CHECK(refit_epochs(12, 1, 390, 1.0, 1e12, 1e-3) == kMaxEpochs);
  // 1 + floor(0.97 * 1300 / 150) = 9 epochs would warm up for 9 * 390 / 10 = 351 steps: the steps taken would
  // have had other learning rates, so the count stays.
  CHECK(refit_epochs(12, 1, 390, 1.0, 1300, 150) == 12);
  // After epoch 2 the cosine has begun (780 steps > 390): the count stays.
  CHECK(refit_epochs(12, 2, 390, 1.0, 3000, 150) == 12);
  // No warm-up at all: every step already depends on the length.
  CHECK(refit_epochs(12, 1, 390, 0.0, 3300, 150) == 12);
  // The default five epochs of warm-up, capped at a tenth of 12 epochs (468 steps): 23 epochs would warm up
  // for 897, so the count stays.
  CHECK(refit_epochs(12, 1, 390, 5.0, 3300, 150) == 12);
  // Nothing left, or nothing measured: the count stays.
  CHECK(refit_epochs(12, 1, 390, 1.0, -5, 150) == 12);
  CHECK(refit_epochs(12, 1, 390, 1.0, 3300, 0) == 12);
}

TEST_CASE("vt train --time-budget: the epochs fitted leave kBudgetSlack of the time spare") {
  // A run on a 2-core Zen 3: 3,421 s left after a first epoch of 162 s. Without the slack 1 + floor(21.12) = 22
  // epochs were fitted, and the run, its later training passes 3% slower, ended 62 s past its 3,600 s. Now
  // 1 + floor(0.97 * 3421 / 162) = 1 + floor(20.48) = 21.
  CHECK(refit_epochs(23, 1, 390, 1.0, 3421, 162) == 21);
  CHECK(epochs_that_fit(3421, 162) == 20);
  CHECK(epochs_that_fit(100, 10) == 9);  // floor(0.97 * 10) = 9: a budget of exactly 10 epochs fits 9
  CHECK(epochs_that_fit(-5, 10) == 0);
  CHECK(epochs_that_fit(1e300, 1e-300) == 1000000);  // clamped, never an overflowing cast
  CHECK(epochs_that_fit(0, 0) == 0);                 // 0 / 0 is no epochs, not NaN cast to an integer
}

namespace {

// Runs `vt compare` with the given arguments (after the command name) and returns the report it wrote.
std::string run_compare(std::vector<std::string> arguments, const fs::path& out) {
  arguments.insert(arguments.begin(), {"vt", "compare"});
  arguments.insert(arguments.end(), {"--out", out.string(), "--batch", "32", "--workers", "1",
                                     "dim=32", "heads=2", "depth=1", "mlp_ratio=2"});
  std::vector<const char*> argv;
  for (const std::string& argument : arguments) argv.push_back(argument.c_str());
  REQUIRE(run_cli(static_cast<int>(argv.size()), argv.data()) == 0);
  return testing::read_file(out / "report.md");
}

}  // namespace

TEST_CASE("vt compare: one recipe for both models, a report row each and a two-panel PNG, a budget buys epochs") {
  testing::TemporaryDirectory directory("compare");
  write_pattern_images(directory.path / "data", 10, 5);  // 100 training and 50 test images
  const std::string data = (directory.path / "data").string();

  const std::string report = run_compare({"--models", "vit_cifar,tnt_cifar", "--data", data, "--epochs", "2"},
                                         directory.path / "epochs");
  CHECK(report.find("Same recipe for every model: 2 epochs") != std::string::npos);
  CHECK(report.find("| vit_cifar | ") != std::string::npos);
  CHECK(report.find("| tnt_cifar | ") != std::string::npos);
  CHECK(report.find("Model overrides: dim=32 heads=2 depth=1 mlp_ratio=2.") != std::string::npos);
  for (const char* model : {"vit_cifar", "tnt_cifar"}) {
    CAPTURE(model);
    std::ifstream metrics(directory.path / "epochs" / model / "metrics.csv");
    int64_t lines = 0;
    for (std::string line; std::getline(metrics, line);) ++lines;
    CHECK(lines == 3);  // header + 2 epochs
  }
  // Two panels side by side: wider than tall.
  const std::string png = testing::read_file(directory.path / "epochs" / "curves.png");
  int width = 0, height = 0, channels = 0;
  REQUIRE(stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(png.data()), static_cast<int>(png.size()), &width,
                                &height, &channels) == 1);
  CHECK(width > height);

  // A budget far below one epoch still trains one epoch (never zero).
  const std::string budget_report = run_compare(
      {"--models", "vit_cifar,tnt_cifar", "--data", data, "--time-budget", "0.001"}, directory.path / "budget");
  CHECK(budget_report.find("Same recipe for every model: 1 epoch,") != std::string::npos);
}

TEST_CASE("vt compare --time-budget: the runs fit the budget, their set-up and each epoch's end included") {
  // Two runs of one step an epoch, each epoch ending in a test pass and four files. The budget used to buy
  // epochs at the models' speeds alone, and this 8 s took 10.4 and 12.6 s on a 2-core Zen 4. Now each run's
  // cost is measured on its own pipeline, its epoch's end timed whole: 6.0-7.3 s in four runs.
  testing::TemporaryDirectory directory("compare_budget");
  write_pattern_images(directory.path / "data", 10, 5);
  const std::string data = (directory.path / "data").string();
  constexpr double kBudget = 8;
  const auto start = std::chrono::steady_clock::now();
  const std::string report = run_compare({"--models", "vit_cifar,tnt_cifar", "--data", data, "--train-limit", "40",
                                          "--test-limit", "10", "--time-budget", std::to_string(kBudget)},
                                         directory.path / "out");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("a " << kBudget << " s budget took " << seconds << " s");
  // kBudgetSlack leaves 3% spare; the rest of the margin is for the noise of timing so small an epoch, and for
  // ctest running another test beside this one.
  CHECK(seconds <= 1.2 * kBudget);
  CHECK(report.find("Same recipe for every model: 1 epoch,") == std::string::npos);  // more than one fits
  const std::vector<std::string> files = {".vt-lock", "best.safetensors", "config.toml", "last.safetensors",
                                          "last.state.safetensors", "metrics.csv"};
  CHECK(run_files(directory.path / "out" / "vit_cifar") == files);
  CHECK(run_files(directory.path / "out" / "tnt_cifar") == files);
}

TEST_CASE("vt compare --time-budget: the epochs every run fits, one after another, after their set-ups") {
  // 100 s left; runs of 10 s and 20 s an epoch after set-ups of 4 s and 6 s: floor(0.97 * (100 - 10) / 30) =
  // floor(2.91) = 2 epochs each.
  CHECK(epochs_that_fit_after_setup(100, {4 + 6, 10 + 20}) == 2);
  CHECK(epochs_that_fit_after_setup(100, {0, 30}) == 3);  // floor(0.97 * 100 / 30) = floor(3.23)
  CHECK(epochs_that_fit_after_setup(5, {10, 30}) == 1);   // nothing fits: one epoch anyway, never zero
  // The measuring window: a fortieth of the budget, from 0.25 s to 10 s.
  CHECK(budget_measure_seconds(4) == 0.25);
  CHECK(budget_measure_seconds(200) == 5);
  CHECK(budget_measure_seconds(3600) == 10);
}

TEST_CASE("end to end (cuda): a short run on the GPU reaches the CPU's accuracy on the same data and seed") {
  if (!cuda_available()) {
    MESSAGE("SKIPPED: no GPU: " << cuda_description());
    return;
  }
  testing::TemporaryDirectory directory("cuda_run");
  write_pattern_images(directory.path / "data", 60, 30);  // 600 training and 300 test images
  TrainOptions cpu = quick_recipe((directory.path / "data").string(), (directory.path / "cpu").string());
  cpu.dataset.limit = 0;
  cpu.test_limit = 0;
  TrainOptions gpu = cpu;
  gpu.out_dir = (directory.path / "gpu").string();
  gpu.device = Device::cuda;
  const TrainResult on_cpu = train(cpu), on_gpu = train(gpu);
  const double cpu_accuracy = on_cpu.epochs.back().test_acc, gpu_accuracy = on_gpu.epochs.back().test_acc;
  MESSAGE("test accuracy after 2 epochs: cpu " << 100 * cpu_accuracy << "%, cuda " << 100 * gpu_accuracy << "%");
  // One seed, one data order, the same masks: the runs differ by float rounding only, far less than the
  // sampling noise of 300 test images (about 3 points).
  CHECK(std::abs(gpu_accuracy - cpu_accuracy) <= 0.03);
  CHECK(gpu_accuracy > 0.18);
}
