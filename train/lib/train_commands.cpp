// vt train, vt eval and vt predict.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "autograd/text.h"
#include "datasets/dataset.h"
#include "nn/safetensors.h"
#include "train/lib/commands.h"
#include "train/lib/trainer.h"

namespace vt {

int command_train(const TrainOptions& options) {
  for (const auto& [key, value] : run_settings(options)) {
    if (key == "epochs" && options.time_budget > 0) std::printf("time-budget %s\n", shortest_text(options.time_budget).c_str());
    else if (key == "model.num_classes" && options.listed_classes == 0)  // the preset's 10 was printed for 3 folders
      std::printf("%s from the data's class folders\n", key.c_str());
    else std::printf("%s %s\n", key.c_str(), value.c_str());
  }
  const TrainResult result = train(options);
  if (result.interrupted) return 130;
  if (!result.epochs.empty())
    std::printf("final test accuracy: %.2f%%, best: %.2f%%, wall time %.0f s%s\n", 100 * result.epochs.back().test_acc,
                100 * result.best_test_acc, result.wall_seconds,
                options.time_budget > 0 ? (" (budget " + shortest_text(options.time_budget) + " s)").c_str() : "");
  return 0;
}

std::vector<std::string> checkpoint_classes(const std::map<std::string, std::string>& metadata,
                                                   const models::ModelConfig& config) {
  const std::vector<std::string> classes = classes_from_metadata(metadata);
  if (!classes.empty() && static_cast<int64_t>(classes.size()) != config.num_classes)
    fail("checkpoint metadata", "'vt.data.classes' names " + std::to_string(classes.size()) + " classes, but the model has " +
                                    std::to_string(config.num_classes) + " outputs");
  return classes;
}

int command_eval(const EvalOptions& o) {
  const std::string& checkpoint = o.checkpoint;
  const models::ModelConfig config = checkpoint_config(o.model, checkpoint, o.image_size);
  data::DatasetOptions dataset_options;
  dataset_options.channels = static_cast<int>(config.in_channels);
  dataset_options.image_size = static_cast<int>(config.image_size);
  dataset_options.skip_bad = o.skip_bad;
  dataset_options.max_pixels = o.max_pixels;
  const auto metadata = nn::read_metadata(checkpoint);
  // The data's classes are matched to the checkpoint's by name: a class the model does not know is an error,
  // and a renamed one cannot silently score 0%.
  dataset_options.classes = checkpoint_classes(metadata, config);
  const auto dataset = data::open_dataset(o.data_dir, o.split, dataset_options);
  const MatmulPrecision precision = matmul_precision(o.tf32, o.amp);
  set_matmul_precision(o.device, precision);
  const auto model = models::load_model(checkpoint, config);
  model->to(o.device);
  const Evaluation e = evaluate(*model, *dataset, normalization_from_metadata(metadata), o.batch_size, o.workers);
  const size_t classes = e.classes.size();
  std::printf("%s on %s/%s: %ld images, %.0f images/s, %s matmuls\n", config.name.c_str(), o.data_dir.c_str(),
              o.split.c_str(), static_cast<long>(dataset->size()), e.images_per_s, matmul_precision_name(precision));
  std::printf("loss: %.4f\naccuracy: %.2f%%\n\nper-class accuracy:\n", e.loss, 100 * e.accuracy);
  for (size_t c = 0; c < classes; ++c) {
    int64_t total = 0;
    for (int64_t n : e.confusion[c]) total += n;
    std::printf("  %-12s %6.2f%%  (%ld images)\n", e.classes[c].c_str(),
                total ? 100.0 * e.confusion[c][c] / total : 0.0, static_cast<long>(total));
  }
  std::printf("\nconfusion matrix (rows: true class, columns: predicted):\n%12s", "");
  for (size_t c = 0; c < classes; ++c) std::printf(" %5.5s", e.classes[c].c_str());
  std::printf("\n");
  for (size_t r = 0; r < classes; ++r) {
    std::printf("%-12s", e.classes[r].c_str());
    for (size_t c = 0; c < classes; ++c) std::printf(" %5ld", static_cast<long>(e.confusion[r][c]));
    std::printf("\n");
  }
  return 0;
}

int command_predict(const PredictOptions& o) {
  const std::string& checkpoint = o.checkpoint;
  const models::ModelConfig config = checkpoint_config(o.model, checkpoint, o.image_size);
  const auto metadata = nn::read_metadata(checkpoint);
  const data::Normalization normalization = normalization_from_metadata(metadata);
  std::vector<std::string> classes = checkpoint_classes(metadata, config);
  if (classes.empty())
    for (int64_t c = 0; c < config.num_classes; ++c) classes.push_back("class " + std::to_string(c));
  set_matmul_precision(o.device, matmul_precision(o.tf32, o.amp));
  const auto model = models::load_model(checkpoint, config);
  model->to(o.device);
  model->eval();
  NoGradGuard no_grad;
  for (const std::string& path : o.images) {
    const data::Image image =
        data::load_image_file(path, static_cast<int>(config.in_channels), static_cast<int>(config.image_size), o.max_pixels);
    const Tensor x = data::image_to_tensor(image, normalization);                 // (1, C, H, W)
    const std::vector<double> probabilities = softmax(model->forward(x.to(o.device)), -1).to_vector();  // (classes)
    for (double p : probabilities)  // finite weights can still overflow (3e38 in a weight)
      if (!std::isfinite(p)) fail("predict", "'" + path + "': the model's probabilities are not finite");
    std::vector<size_t> order(probabilities.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return probabilities[a] > probabilities[b]; });
    std::printf("%s\n", path.c_str());
    for (int64_t k = 0; k < std::min<int64_t>(o.top, static_cast<int64_t>(order.size())); ++k)
      std::printf("  %6.2f%%  %s\n", 100 * probabilities[order[k]], classes[order[k]].c_str());
  }
  return 0;
}

}  // namespace vt
