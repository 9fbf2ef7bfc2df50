// The vt command line on CLI11: `vt COMMAND [options] [key=value ...]`, `vt COMMAND --help` for a command's
// flags. Conventions: every flag's type and range is checked here, when the command line is parsed (a float
// flag must be a finite number in its range, nan included in "not"); a mistyped flag gets the closest real one;
// each command binds its flags straight to the fields of its options struct.
#include <CLI/CLI.hpp>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <set>

#include "autograd/device.h"
#include "autograd/json.h"
#include "autograd/parallel.h"
#include "autograd/text.h"
#include "train/lib/commands.h"

namespace vt {

namespace {

// A float in [lo, hi] (or (lo, hi] with lo_open): finite, which CLI::Range does not check (nan passes it).
CLI::Validator number_in(double lo, double hi, bool lo_open = false) {
  const std::string range = std::string(lo_open ? "(" : "[") + shortest_text(lo) + ", " + shortest_text(hi) + "]";
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        const std::optional<double> value = parse_number(text);
        if (!value || !std::isfinite(*value) || (lo_open ? !(*value > lo) : !(*value >= lo)) || !(*value <= hi))
          return text + " is not a number in " + range;
        return "";
      },
      "NUMBER in " + range);
}

// An integer in [lo, hi].
CLI::Validator integer_in(int64_t lo, int64_t hi) {
  const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        const std::optional<int64_t> value = parse_integer(text);
        if (!value || *value < lo || *value > hi) return text + " is not an integer in " + range;
        return "";
      },
      "INTEGER in " + range);
}

// A spec accepted by `check` (a function that throws on a bad one).
CLI::Validator parsed_by(const std::function<void(const std::string&)>& check, const std::string& name) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        try {
          check(text);
        } catch (const std::exception& error) {
          return error.what();
        }
        return "";
      },
      name);
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// The name among `names` closest to `given`, or "" when none is close enough to be what was meant.
std::string closest(const std::string& given, const std::vector<std::string>& names) {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string& name : names) {
    const size_t distance = edit_distance(given, name);
    if (distance < best_distance) best_distance = distance, best = name;
  }
  return best_distance <= std::max<size_t>(2, given.size() / 3) ? best : "";
}

// Fails on an argument no flag took (`extras`, left over by `command` and by vt itself, which the command's
// unknown flags fall through to), naming the closest flag of the command or of vt. CLI11 leaves the "--" that
// ends the flags among them, and it was refused as an unknown option.
void refuse_extras(const CLI::App& command, const std::vector<std::string>& extras) {
  for (const std::string& extra : extras) {
    if (extra == "--") continue;
    std::vector<std::string> names;
    for (const CLI::App* app : {&command, static_cast<const CLI::App*>(command.get_parent())})
      for (const CLI::Option* option : app->get_options())
        for (const std::string& name : option->get_lnames()) names.push_back("--" + name);
    const std::string suggestion = closest(extra.substr(0, extra.find('=')), names);
    const CLI::App* parent = command.get_parent();
    const std::string name = parent && parent->get_parent() ? parent->get_name() + " " + command.get_name() : command.get_name();
    throw CLI::ValidationError("unknown option " + extra + " for vt " + name +
                               (suggestion.empty() ? "" : "; did you mean " + suggestion + "?"));
  }
}

// Every long flag name of `app` and of its commands, with its dashes ("--data").
void collect_flag_names(const CLI::App& app, std::set<std::string>& names) {
  for (const CLI::Option* option : app.get_options())
    for (const std::string& name : option->get_lnames()) names.insert("--" + name);
  for (const CLI::App* command : app.get_subcommands({})) collect_flag_names(*command, names);
}

// `vt train --data --model vit_cifar`: CLI11 gives --data the value "--model", and the error that follows
// ("--model is required") points away from the slip. Every flag that takes a value refuses one of vt's flag
// names (alone or as --name=value), naming both.
void refuse_flags_as_values(CLI::App& app, const std::shared_ptr<const std::set<std::string>>& names) {
  const CLI::Validator not_a_flag(
      [names](std::string& text) -> std::string {
        const std::string name = text.substr(0, text.find('='));
        return names->contains(name) ? "got the flag " + name + " where its value was due" : "";
      },
      "");
  for (CLI::Option* option : app.get_options({}))
    if (!option->get_positional() && option->get_expected_min() > 0) option->check(not_a_flag);
  for (CLI::App* command : app.get_subcommands({})) refuse_flags_as_values(*command, names);
}

// A run's config.toml as vt train writes it (run_config_file): a [train] section of `flag = "JSON string"` lines and
// `model-fields = [JSON strings]`, with # comments. CLI11's own reader unescaped nothing (a data path holding a
// quote did not reload), split values at commas and cut them at '#', and passed over a mistyped key, a key
// given twice and a file without [train] in silence; this one refuses each, naming the line, as it refuses a list
// for a flag of one value (an empty one crashed CLI11), an on/off flag that is not true, false, 1 or 0, a NUL,
// and a line past 64 KiB (--config /dev/zero grew without end).
class RunConfigReader : public CLI::ConfigTOML {
 public:
  RunConfigReader(const CLI::App& train, std::vector<std::string> command_line)
      : train_(train), command_line_(std::move(command_line)) {}

  std::vector<CLI::ConfigItem> from_config(std::istream& input) const override {
    std::vector<CLI::ConfigItem> items;
    std::vector<std::string> flags, keys;  // the train command's flags; the file's keys so far
    for (const CLI::Option* option : train_.get_options())
      for (const std::string& name : option->get_lnames()) flags.push_back(name);
    bool in_train = false;
    std::string line;
    for (int number = 1; read_line(input, line, number); ++number) {
      const std::string where = "--config, line " + std::to_string(number);
      if (number == 1 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);  // a UTF-8 byte-order mark
      const std::string text = CLI::detail::trim_copy(line);
      if (text.empty() || text.front() == '#') continue;
      if (text.front() == '[') {
        if (text != "[train]") throw CLI::ConfigError(where + ": section " + text + " is not [train]");
        if (in_train) throw CLI::ConfigError(where + ": a second [train] section");
        in_train = true;
        continue;
      }
      const size_t equals = text.find('=');
      if (!in_train || equals == std::string::npos)
        throw CLI::ConfigError(where + ": expected flag = \"value\" in the [train] section, got '" + text + "'");
      CLI::ConfigItem item;
      item.parents = {"train"};
      item.name = CLI::detail::trim_copy(text.substr(0, equals));
      const CLI::Option* option = train_.get_option_no_throw("--" + item.name);
      if (!option) {
        const std::string suggestion = closest(item.name, flags);
        throw CLI::ConfigError(where + ": '" + item.name + "' is not a flag of vt train" +
                               (suggestion.empty() ? "" : "; did you mean " + suggestion + "?"));
      }
      if (std::find(keys.begin(), keys.end(), item.name) != keys.end())
        throw CLI::ConfigError(where + ": '" + item.name + "' is given twice");
      keys.push_back(item.name);
      const std::string value = text.substr(equals + 1);
      bool list = false;
      try {
        JsonReader reader("--config", "line " + std::to_string(number) + ", the value of '" + item.name + "'", value);
        list = reader.next_is('[');
        item.inputs = list ? reader.read_string_array() : std::vector<std::string>{reader.read_string()};
        if (!reader.next_is('#')) reader.expect_end();  // a comment may follow the value
      } catch (const std::exception& error) {
        throw CLI::ConfigError(error.what());
      }
      const bool takes_list = option->get_items_expected_max() > 1;
      if (list && !takes_list) throw CLI::ConfigError(where + ": '" + item.name + "' takes one value, not a list");
      if (!list && takes_list) throw CLI::ConfigError(where + ": '" + item.name + "' takes a list [\"...\", ...]");
      for (const std::string& input : item.inputs) {
        if (input.find('\0') != std::string::npos)
          throw CLI::ConfigError(where + ": the value of '" + item.name + "' holds a NUL character");
        if (option->get_expected_min() == 0 && input != "true" && input != "false" && input != "1" && input != "0")
          throw CLI::ConfigError(where + ": '" + item.name + "' is on or off: \"true\" or \"false\", got \"" + input + "\"");
      }
      if (!item.inputs.empty() && !overridden(*option)) items.push_back(std::move(item));  // an empty list gives no values
    }
    if (!in_train) throw CLI::ConfigError("--config: the file has no [train] section (each run's config.toml has one)");
    return items;
  }

 private:
  // Whether the command line gives this flag, or one that excludes it (--time-budget over the file's epochs), or
  // --model over the file's model-fields (the fields of the file's model): flags given as well as the file win.
  bool overridden(const CLI::Option& option) const {
    const auto given = [&](const CLI::Option& flag) {
      for (const std::string& name : flag.get_lnames())
        for (const std::string& word : command_line_)
          if (word == "--" + name || word.starts_with("--" + name + "=")) return true;
      return false;
    };
    if (given(option)) return true;
    for (const CLI::Option* excluding : option.get_excludes())
      if (given(*excluding)) return true;
    const CLI::Option* model = train_.get_option_no_throw("--model");
    return option.check_lname("model-fields") && model && given(*model);
  }

  // std::getline with a bound on the line's length.
  static bool read_line(std::istream& input, std::string& line, int number) {
    constexpr size_t kMaxLine = 64 * 1024;
    line.clear();
    char c = 0;
    while (input.get(c) && c != '\n') {
      if (line.size() == kMaxLine)
        throw CLI::ConfigError("--config, line " + std::to_string(number) + ": longer than 64 KiB (is this a run's config.toml?)");
      line += c;
    }
    return !line.empty() || c == '\n';
  }

  const CLI::App& train_;
  std::vector<std::string> command_line_;
};

// Training takes the class count from the data's class folders: a num_classes=5 override for 3 folders was replaced
// in silence.
void refuse_class_count(const std::vector<std::string>& overrides) {
  for (const std::string& field : overrides)
    if (field.starts_with("num_classes="))
      throw CLI::ValidationError(field + ": training takes the number of classes from the data's class folders");
}

void add_model_options(CLI::App& command, ModelSpec& spec, bool required) {
  auto* model = command.add_option("--model", spec.name, "preset: " + [] {
    std::string names;
    for (const std::string& name : models::preset_names()) names += (names.empty() ? "" : ", ") + name;
    return names;
  }());
  if (required) model->required();
  command.add_option("overrides", spec.overrides, "model settings key=value, e.g. dim=256 depth=9 (any field of vt info --json)");
}

// --device cpu|cuda, by default cuda when a GPU is visible. Choosing cuda without one fails when the command
// line is parsed, saying why there is none.
void add_device_option(CLI::App& command, Device& device) {
  device = cuda_available() ? Device::cuda : Device::cpu;
  command
      .add_option_function<std::string>(
          "--device", [&device](const std::string& name) { device = name == "cuda" ? Device::cuda : Device::cpu; },
          std::string("where the model runs (default here: ") + device_name(device) + ")")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->check(CLI::Validator(
          [](std::string& name) -> std::string {
            return name == "cuda" && !cuda_available() ? "no GPU to run on: " + cuda_description() : "";
          },
          ""));
}

// The matmul arithmetic: exact fp32 unless one of these is given.
void add_precision_options(CLI::App& command, bool& tf32, std::string& amp) {
  command.add_flag("--tf32", tf32, "float32 matmuls on the GPU's TF32 tensor cores (10-bit mantissa inputs; default: exact fp32)");
  command.add_option("--amp", amp,
                     "bf16: float32 matmuls with bf16 inputs (7-bit mantissa), fp32 accumulation, weights, activations "
                     "and statistics; on the GPU's tensor cores (the fused attention stays fp32), or on a CPU with AMX "
                     "or AVX512-BF16 (TNT's pixel-level products, attention and products small enough for one "
                     "thread stay fp32)")
      ->check(CLI::IsMember({"none", "bf16"}))
      ->capture_default_str();
}

// The first line of every command that runs a model: the device, and the GPU's name.
void print_device(Device device) {
  if (device == Device::cuda) std::printf("device: cuda, %s\n", cuda_description().c_str());
  else std::printf("device: cpu, %d threads\n", num_threads());
}

void add_max_pixels(CLI::App& command, int64_t& max_pixels) {
  command.add_option("--max-image-pixels", max_pixels, "refuse images with more pixels (checked before decoding)")
      ->check(integer_in(1, int64_t{1} << 40))
      ->capture_default_str();
}

// --img-size: run a checkpoint at another input size, its position embedding resampled.
void add_image_size(CLI::App& command, int64_t& image_size) {
  command.add_option("--img-size", image_size,
                     "input size to run the model at, its learned position embedding resampled bicubically (default: the checkpoint's)")
      ->check(integer_in(1, 4096));
}

// The flags of vt train, shared by vt compare. `model` and `augment` are bound to text and converted later.
void add_train_options(CLI::App& command, TrainOptions& o, std::string& augment) {
  command.add_option("--data", o.data_dir, "CIFAR-10 binary files, or train/ and test/ image folders")->capture_default_str();
  command.add_option("--out", o.out_dir, "run folder (default runs/<model>; vt compare: runs/compare)")
      ->check(CLI::Validator([](std::string& text) { return text.empty() ? std::string("an empty folder name") : ""; }, "DIR"))
      ->configurable(false);
  command.add_option("--epochs", o.epochs)->check(integer_in(1, kMaxEpochs))->capture_default_str();
  command.add_option("--batch", o.batch_size)->check(integer_in(1, 1 << 20))->capture_default_str();
  command.add_option("--opt", o.optimizer)->check(CLI::IsMember({"adamw", "sgd"}))->capture_default_str();
  command.add_option("--lr", o.lr, "peak learning rate")->check(number_in(0, 100, true))->capture_default_str();
  command.add_option("--min-lr", o.min_lr, "final learning rate of the cosine")->check(number_in(0, 100))->capture_default_str();
  command.add_option("--wd", o.weight_decay, "weight decay")->check(number_in(0, 100))->capture_default_str();
  command.add_option("--momentum", o.momentum, "SGD momentum")->check(number_in(0, 0.999999))->capture_default_str();
  command.add_option("--warmup", o.warmup_epochs, "warm-up epochs (at most a tenth of the run)")
      ->check(number_in(0, 1'000'000))
      ->capture_default_str();
  command.add_option("--label-smoothing", o.label_smoothing)->check(number_in(0, 0.999999))->capture_default_str();
  command.add_option("--clip-grad", o.clip_grad, "max gradient norm (0: off)")->check(number_in(0, 1e9))->capture_default_str();
  command.add_option("--ema", o.ema_decay, "EMA decay of the weights (0: off)")->check(number_in(0, 0.999999999))->capture_default_str();
  command.add_option("--aug", augment, "none, or any of crop=4,flip=1,auto=rand-m9-n2|autoaugment-cifar|none,mixup=A,cutmix=A,mix_prob=P,erase=P")
      ->check(parsed_by([](const std::string& spec) {
        data::AugmentConfig config;
        data::parse_augment(config, spec);
      }, "SPEC"));
  command.add_option("--normalize", o.normalize, "input statistics: CIFAR-10's, or computed from the training set")
      ->check(CLI::IsMember({"cifar10", "computed"}))
      ->capture_default_str();
  command.add_flag("--skip-bad", o.dataset.skip_bad, "skip unreadable images (with a warning) instead of failing");
  command.add_option("--train-limit", o.dataset.limit, "use this many training images, spread over classes (0: all)")
      ->check(integer_in(0, std::numeric_limits<int64_t>::max()));
  command.add_option("--test-limit", o.test_limit, "evaluate on this many test images (0: all)")
      ->check(integer_in(0, std::numeric_limits<int64_t>::max()));
  add_max_pixels(command, o.dataset.max_pixels);
  command.add_option("--workers", o.workers, "data loading threads")->check(integer_in(1, 256))->capture_default_str();
  add_device_option(command, o.device);
  add_precision_options(command, o.tf32, o.amp);
  command.add_option("--seed", o.seed)->check(integer_in(0, std::numeric_limits<int64_t>::max()))->capture_default_str();
  command.add_flag("--resume", o.resume, "continue the run in --out from its training state")->configurable(false);
  command.add_flag("--allow-changed-config", o.allow_changed_config,
                   "resume although the settings or the data differ from the run's")
      ->configurable(false);
  command.add_option("--stop-after-steps", o.stop_after_steps, "stop (resumably) after this many optimizer steps")
      ->check(integer_in(0, std::numeric_limits<int64_t>::max()))
      ->configurable(false);
}

void apply_augment(const std::string& spec, data::AugmentConfig& config) {
  if (!spec.empty()) data::parse_augment(config, spec);
}

}  // namespace

models::ModelConfig ModelSpec::config() const {
  models::ModelConfig config = models::preset(name);
  for (const std::vector<std::string>* items : {&fields, &overrides})
    for (const std::string& item : *items) {
      const size_t equals = item.find('=');
      if (equals == std::string::npos) {
        const auto presets = models::preset_names();
        const bool model = std::find(presets.begin(), presets.end(), item) != presets.end();
        fail("model config", "expected key=value, got '" + item + "'" +
                                 (model ? " (a model: --models takes several comma-separated, as --models a,b)" : ""));
      }
      models::apply_override(config, item.substr(0, equals), item.substr(equals + 1));
    }
  models::validate(config);
  return config;
}

int run_cli(int argc, const char* const* argv) {
  CLI::App app{"vt: Vision Transformers (ViT, TNT) from scratch, trained on CIFAR-10 and other image folders."};
  app.require_subcommand(1);
  app.fallthrough();  // flags of vt itself (--threads) may come after the command
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a flag given twice: the last wins
  int threads = 0;
  constexpr int kMaxThreads = 1024;
  app.add_option("--threads", threads, "threads for the kernels and the GEMM tiles (default: all cores)")
      ->check(integer_in(1, kMaxThreads))
      ->configurable(false);
  std::function<int()> run;  // the chosen command, bound to its parsed options

  TrainOptions train;
  ModelSpec train_model;
  std::string train_augment;
  auto* train_command = app.add_subcommand("train", "train a model; writes a run folder (checkpoints, metrics, state)");
  add_model_options(*train_command, train_model, true);
  train_command->add_option("--model-fields", train_model.fields, "every field of the model, key=value (as a run's config.toml lists them)");
  add_train_options(*train_command, train, train_augment);
  train_command
      ->add_option("--time-budget", train.time_budget,
                   "seconds for the whole run: the epochs, warm-up and cosine are fitted to the measured speed of about 10 s of its steps (instead of --epochs)")
      ->check(number_in(0, 1e9, true))
      ->excludes(train_command->get_option("--epochs"));
  int64_t train_image_size = 0;
  train_command->add_option("--img-size", train_image_size, "input size (the model field image_size)")->check(integer_in(1, 4096));
  train_command->add_option("--init-from", train.init_from,
                            "start from these weights (.safetensors), the position embedding resampled to the input size");
  // CLI11 2.1 reads config files for the top-level app only; the file's [train] section holds vt train's flags.
  app.set_config("--config", "", "vt train: read a run's settings from its config.toml (flags given as well win)")
      ->configurable(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::Throw)  // a second file would replace the first in silence
      ->check(CLI::Validator(
          [](std::string& path) -> std::string {  // CLI11 opens it with std::ifstream: a FIFO would block there
            struct stat status;
            if (::stat(path.c_str(), &status) != 0) return "";  // CLI11 names a missing file itself
            return S_ISREG(status.st_mode) ? "" : path + " is not a regular file";
          },
          "FILE"));
  app.config_formatter(std::make_shared<RunConfigReader>(*train_command, std::vector<std::string>(argv + 1, argv + argc)));
  train_command->callback([&] {
    refuse_class_count(train_model.overrides);
    run = [&] {
      print_device(train.device);
      if (train_image_size > 0) train_model.overrides.push_back("image_size=" + std::to_string(train_image_size));
      train.model = train_model.config();
      for (const std::string& field : train_model.fields)
        if (field.starts_with("num_classes=")) train.listed_classes = train.model.num_classes;
      apply_augment(train_augment, train.augment);
      return command_train(train);
    };
  });

  EvalOptions eval;
  auto* eval_command = app.add_subcommand("eval", "accuracy, per class and as a confusion matrix, of a checkpoint");
  eval_command->add_option("--checkpoint", eval.checkpoint, "weights (.safetensors)")->required();
  eval_command->add_option("--data", eval.data_dir)->capture_default_str();
  eval_command->add_option("--split", eval.split)->check(CLI::IsMember({"test", "train"}))->capture_default_str();
  add_model_options(*eval_command, eval.model, false);
  add_image_size(*eval_command, eval.image_size);
  eval_command->add_flag("--skip-bad", eval.skip_bad, "skip unreadable images instead of failing");
  eval_command->add_option("--batch", eval.batch_size)->check(integer_in(1, 1 << 20))->capture_default_str();
  eval_command->add_option("--workers", eval.workers)->check(integer_in(1, 256))->capture_default_str();
  add_max_pixels(*eval_command, eval.max_pixels);
  add_precision_options(*eval_command, eval.tf32, eval.amp);
  add_device_option(*eval_command, eval.device);
  eval_command->callback([&] {
    run = [&] {
      print_device(eval.device);
      return command_eval(eval);
    };
  });

  PredictOptions predict;
  auto* predict_command = app.add_subcommand("predict", "the top classes of images, with probabilities");
  predict_command->add_option("--checkpoint", predict.checkpoint, "weights (.safetensors)")->required();
  predict_command->add_option("--model", predict.model.name, "preset (default: the checkpoint's metadata)");
  predict_command->add_option("--top", predict.top)->check(integer_in(1, 1'000'000))->capture_default_str();
  add_max_pixels(*predict_command, predict.max_pixels);
  add_image_size(*predict_command, predict.image_size);
  add_precision_options(*predict_command, predict.tf32, predict.amp);
  predict_command->add_option("images", predict.images, "image files (after --, names that start with -)")->required();
  add_device_option(*predict_command, predict.device);
  predict_command->callback([&] {
    run = [&] {
      print_device(predict.device);
      return command_predict(predict);
    };
  });

  CompareOptions compare;
  std::string compare_augment;
  auto* compare_command = app.add_subcommand("compare", "train several models with one recipe; writes report.md and curves.png");
  // One word after --models, split at commas: `--models vit_cifar depth=1` took depth=1 for a second model.
  compare_command->add_option("--models", compare.models, "presets, comma-separated")
      ->delimiter(',')
      ->expected(1)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->capture_default_str();
  add_train_options(*compare_command, compare.base, compare_augment);
  compare_command->add_option("--time-budget", compare.time_budget, "seconds for all models together (instead of --epochs)")
      ->check(number_in(0, 1e9, true))
      ->excludes(compare_command->get_option("--epochs"));
  compare_command->add_option("overrides", compare.overrides, "model settings key=value, applied to every model");
  compare_command->callback([&] {
    refuse_class_count(compare.overrides);
    run = [&] {
      print_device(compare.base.device);
      apply_augment(compare_augment, compare.base.augment);
      return command_compare(compare);
    };
  });

  InfoOptions info;
  auto* info_command = app.add_subcommand("info", "a model's architecture, parameters and multiply-adds per image");
  add_model_options(*info_command, info.model, true);
  info_command->add_flag("--json", info.json, "print every field as JSON");
  info_command->callback([&] { run = [&] { return command_info(info); }; });

  InitOptions init;
  auto* init_command = app.add_subcommand("init", "write a freshly initialised model");
  add_model_options(*init_command, init.model, true);
  init_command->add_option("--seed", init.seed)->check(integer_in(0, std::numeric_limits<int64_t>::max()))->capture_default_str();
  init_command->add_option("--out", init.out, "weights file to write (.safetensors)")->required();
  init_command->callback([&] { run = [&] { return command_init(init); }; });

  ForwardOptions forward;
  auto* forward_command = app.add_subcommand("forward", "eval-mode logits (B, classes) of the tensor x (B, C, H, W) in a file");
  forward_command->add_option("--checkpoint", forward.checkpoint)->required();
  forward_command->add_option("--input", forward.input, "safetensors file holding x")->required();
  forward_command->add_option("--output", forward.output, "safetensors file to write the logits to")->required();
  forward_command->add_option("--model", forward.model.name, "preset (default: the checkpoint's metadata)");
  add_image_size(*forward_command, forward.image_size);
  add_device_option(*forward_command, forward.device);
  forward_command->callback([&] {
    run = [&] {
      print_device(forward.device);
      return command_forward(forward);
    };
  });

  VizOptions viz;
  auto* viz_command = app.add_subcommand("viz", "pictures of what a checkpoint learned: attention, posembed, filters, distance");
  viz_command->require_subcommand(1);
  const auto add_viz = [&](const std::string& kind, const std::string& about) {
    auto* command = viz_command->add_subcommand(kind, about);
    command->add_option("--checkpoint", viz.checkpoint, "weights (.safetensors)")->required();
    command->add_option("--out", viz.out, "the PNG to write (numbers go to the .csv beside it)")->required();
    command->add_option("--model", viz.model.name, "preset (default: the checkpoint's metadata)");
    add_image_size(*command, viz.image_size);
    add_device_option(*command, viz.device);
    command->callback([&, kind] {
      viz.kind = kind;
      run = [&] {
        print_device(viz.device);
        return command_viz(viz);
      };
    });
    return command;
  };
  auto* viz_attention = add_viz("attention", "the class token's attention per head over each image, and its rollout");
  viz_attention->add_option("images", viz.images, "image files")->required();
  viz_attention->add_option("--layer", viz.layer, "the layer to show (default: the last)")->check(integer_in(0, 1 << 20));
  viz_attention->add_flag("--rollout", viz.rollout, "add the attention rollout through all layers");
  viz_attention->add_option("--patch", viz.patch, "TNT: the patch whose inner attention is shown (default: the most attended)")
      ->check(integer_in(0, 1 << 24));
  add_max_pixels(*viz_attention, viz.max_pixels);
  add_viz("posembed", "cosine similarity of the position embeddings, as a grid of grids");
  auto* viz_filters = add_viz("filters", "principal components of the patch-embedding filters");
  viz_filters->add_option("--components", viz.components)->check(integer_in(1, 4096))->capture_default_str();
  auto* viz_distance = add_viz("distance", "mean attention distance per head against depth, over test images");
  viz_distance->add_option("--data", viz.data_dir)->capture_default_str();
  viz_distance->add_option("--split", viz.split)->check(CLI::IsMember({"test", "train"}))->capture_default_str();
  viz_distance->add_option("--images", viz.image_count, "images to average over")->check(integer_in(1, 1 << 24))->capture_default_str();
  add_max_pixels(*viz_distance, viz.max_pixels);

  app.add_subcommand("demo", "a small graph, its backward, and its gradients")->callback([&] { run = command_demo; });
  app.add_subcommand("bench-gemm", "float32 GEMM GFLOP/s for a few shapes, and attention's at vit_cifar's sizes")
      ->callback([&] { run = command_bench_gemm; });

  BenchTrainOptions bench_train;
  auto* bench_train_command = app.add_subcommand("bench-train", "training images/s of a model on random data");
  add_model_options(*bench_train_command, bench_train.model, true);
  bench_train_command->add_option("--batch", bench_train.batch_size)->check(integer_in(1, 1 << 20))->capture_default_str();
  add_device_option(*bench_train_command, bench_train.device);
  add_precision_options(*bench_train_command, bench_train.tf32, bench_train.amp);
  bench_train_command->callback([&] {
    run = [&] {
      print_device(bench_train.device);
      return command_bench_train(bench_train);
    };
  });

  BenchDataOptions bench_data;
  auto* bench_data_command = app.add_subcommand("bench-data", "decoding and loader images/s");
  bench_data_command->add_option("--data", bench_data.data_dir)->capture_default_str();
  bench_data_command->add_option("--batch", bench_data.batch_size)->check(integer_in(1, 1 << 20))->capture_default_str();
  bench_data_command->add_option("--workers", bench_data.workers)->check(integer_in(1, 256))->capture_default_str();
  bench_data_command->add_option("--aug", bench_data.augment)->check(parsed_by([](const std::string& spec) {
    data::AugmentConfig config;
    data::parse_augment(config, spec);
  }, "SPEC"));
  bench_data_command->callback([&] { run = [&] { return command_bench_data(bench_data); }; });

  app.allow_extras();
  for (CLI::App* command : app.get_subcommands({})) {
    command->allow_extras();
    for (CLI::App* nested : command->get_subcommands({})) nested->allow_extras();
  }
  auto flag_names = std::make_shared<std::set<std::string>>();
  collect_flag_names(app, *flag_names);
  refuse_flags_as_values(app, flag_names);
  if (argc < 2) {
    std::printf("%s", app.help().c_str());
    return 1;
  }
  try {
    // A mistyped command would only read "A subcommand is required": name the closest command instead.
    std::vector<std::string> commands;
    for (const CLI::App* command : app.get_subcommands({})) commands.push_back(command->get_name());
    const std::string first = argv[1];
    if (!first.starts_with("-") && std::find(commands.begin(), commands.end(), first) == commands.end()) {
      const std::string suggestion = closest(first, commands);
      throw CLI::ValidationError("unknown command '" + first + "'" +
                                 (suggestion.empty() ? "" : "; did you mean " + suggestion + "?"));
    }
    // The same for vt viz's pictures, which CLI11 would only answer with "A subcommand is required".
    if (first == "viz") {
      std::vector<std::string> kinds;
      for (const CLI::App* kind : viz_command->get_subcommands({})) kinds.push_back(kind->get_name());
      const std::string second = argc > 2 ? argv[2] : "";
      if (second != "--help" && second != "-h" && std::find(kinds.begin(), kinds.end(), second) == kinds.end()) {
        const std::string suggestion = second.empty() ? "" : closest(second, kinds);
        throw CLI::ValidationError("vt viz draws attention, posembed, filters or distance" +
                                   (second.empty() ? std::string() : ", not '" + second + "'") +
                                   (suggestion.empty() ? "" : "; did you mean " + suggestion + "?"));
      }
    }
    app.parse(argc, argv);
    for (const CLI::App* command : app.get_subcommands()) {
      if (app.get_option("--config")->count() > 0 && command->get_name() != "train")
        throw CLI::ValidationError("--config: only vt train reads a run's config.toml, not vt " + command->get_name());
      std::vector<std::string> extras = command->remaining();
      for (const std::string& extra : app.remaining()) extras.push_back(extra);
      for (const CLI::App* nested : command->get_subcommands()) {  // vt viz KIND
        for (const std::string& extra : nested->remaining()) extras.push_back(extra);
        refuse_extras(*nested, extras);
      }
      refuse_extras(*command, extras);
    }
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);  // prints the help, or the error with a hint
    return code == 0 ? 0 : 2;          // 2: a usage error, as getopt programs exit
  }
  try {
    if (threads > 0) {
      set_num_threads(threads);
    } else if (num_threads() > kMaxThreads || num_threads() < 1) {
      // OMP_NUM_THREADS=65536 crashed libgomp in the first parallel region; 2^31 came back as a negative count.
      const char* asked = std::getenv("OMP_NUM_THREADS");
      std::fprintf(stderr, "vt: OMP_NUM_THREADS=%s; running %d threads (--threads sets the count)\n",
                   asked ? asked : "", kMaxThreads);
      set_num_threads(kMaxThreads);
    }
    return run();
  } catch (const std::exception& error) {
    std::fflush(stdout);
    std::fprintf(stderr, "vt: %s\n", error.what());
    return 1;
  }
}

}  // namespace vt
