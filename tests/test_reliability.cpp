// Hostile inputs to the training side: checkpoint metadata (class names, normalisation), evaluation against
// data of another class count. Each case once crashed, hung or gave a silent wrong answer.
#include <stb/stb_image_write.h>

#include <filesystem>
#include <functional>

#include "tests/helpers.h"
#include "train/lib/trainer.h"

using namespace vt;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& error) {
    return error.what();
  }
  return "(no error)";
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// root/<split>/<class>/<i>.png for each class, `per_class` 32 x 32 gray images each.
void write_folders(const fs::path& root, const std::string& split, const std::vector<std::string>& classes, int per_class) {
  const std::vector<uint8_t> pixels(32 * 32 * 3, 90);
  for (const std::string& name : classes) {
    fs::create_directories(root / split / name);
    for (int i = 0; i < per_class; ++i)
      REQUIRE(stbi_write_png((root / split / name / (std::to_string(i) + ".png")).c_str(), 32, 32, 3, pixels.data(), 96));
  }
}

}  // namespace

TEST_CASE("reliability: class names with commas survive the checkpoint metadata") {
  // Comma-joined, a class "b,x" shifted every later label of vt predict by one.
  const std::vector<std::string> classes = {"a", "b,x", "c \"quoted\"", "d"};
  const auto metadata = data_metadata(data::Normalization(), classes);
  CHECK(metadata.at("vt.data.classes") == R"(["a","b,x","c \"quoted\"","d"])");
  CHECK(classes_from_metadata(metadata) == classes);
  // Checkpoints written before the JSON array still read; a malformed array is named.
  CHECK(classes_from_metadata({{"vt.data.classes", "cat,dog"}}) == std::vector<std::string>{"cat", "dog"});
  CHECK(has(error_of([] { classes_from_metadata({{"vt.data.classes", R"(["cat",)"}}); }),
            "checkpoint metadata: 'vt.data.classes' at byte 7: expected a string"));
}

TEST_CASE("reliability: bad normalisation metadata is refused with the key, not 'stod' or a nan% later") {
  auto normalization_error = [](const std::string& mean, const std::string& std) {
    return error_of([&] { normalization_from_metadata({{"vt.data.mean", mean}, {"vt.data.std", std}}); });
  };
  CHECK(has(normalization_error("0.5,0.5,0.5", "0.2,0,0.2"), "'vt.data.std' = '0.2,0,0.2': every std must be positive"));
  CHECK(has(normalization_error("0.5,abc,0.5", "0.2,0.2,0.2"), "'vt.data.mean' = '0.5,abc,0.5' holds 'abc', not a finite number"));
  CHECK(has(normalization_error("0.5,0.5", "0.2,0.2,0.2"), "must give one value per channel, got 2 and 3"));
  CHECK(has(normalization_error("0.5,nan,0.5", "0.2,0.2,0.2"), "holds 'nan', not a finite number"));
  const data::Normalization ok = normalization_from_metadata({{"vt.data.mean", "0.5"}, {"vt.data.std", "0.25"}});
  CHECK(ok.mean == std::vector<double>{0.5});
  CHECK(ok.std == std::vector<double>{0.25});
}

TEST_CASE("reliability: evaluating a model on data with another class count fails instead of writing past the matrix") {
  testing::TemporaryDirectory directory("evaluate_classes");
  write_folders(directory.path, "test", {"ant", "bee", "cat"}, 2);
  models::ModelConfig config = models::preset("vit_cifar");
  config.dim = 16, config.heads = 2, config.depth = 1, config.num_classes = 2;
  const auto model = models::create_model(config);
  data::DatasetOptions options;
  const auto dataset = data::open_dataset(directory.path.string(), "test", options);
  CHECK(has(error_of([&] { evaluate(*model, *dataset, data::Normalization(), 4, 1); }),
            "evaluate: the data has 3 classes, the model 2 outputs"));
  config.num_classes = 3;
  const Evaluation e = evaluate(*models::create_model(config), *dataset, data::Normalization(), 4, 1);
  CHECK(e.confusion.size() == 3);
}
