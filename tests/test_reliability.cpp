// Hostile inputs to the training side: checkpoint metadata (class names, normalisation), evaluation against
// data of another class count, corrupt or mismatched training states, the command line, and runs killed at
// every step of their writes. Each case once crashed, hung, lost work or gave a silent wrong answer.
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>

#include "autograd/files.h"
#include "autograd/gemm_bf16.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "tests/helpers.h"
#include "train/lib/commands.h"
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
  // predict printed the same name for two outputs.
  CHECK(has(error_of([] { classes_from_metadata({{"vt.data.classes", R"(["cat","dog","cat"])"}}); }),
            "'vt.data.classes' names 'cat' twice"));
}

TEST_CASE("reliability: bad normalisation metadata is refused with the key, not 'stod' or a nan% later") {
  auto normalization_error = [](const std::string& mean, const std::string& std) {
    return error_of([&] { normalization_from_metadata({{"vt.data.mean", mean}, {"vt.data.std", std}}); });
  };
  CHECK(has(normalization_error("0.5,0.5,0.5", "0.2,0,0.2"), "'vt.data.std' = '0.2,0,0.2': every std must be positive"));
  CHECK(has(normalization_error("0.5,abc,0.5", "0.2,0.2,0.2"), "'vt.data.mean' = '0.5,abc,0.5' holds 'abc', not a finite number"));
  CHECK(has(normalization_error("0.5,0.5", "0.2,0.2,0.2"), "must give one value per channel, got 2 and 3"));
  CHECK(has(normalization_error("0.5,nan,0.5", "0.2,0.2,0.2"), "holds 'nan', not a finite number"));
  // Positive and finite in double, but (1 - 0) / 1e-40 and -1e300 / 1 overflow float32, where the pixels are
  // normalised: every input was infinite and predict printed nan%. 1e-20 overflowed the first products instead.
  const std::string beyond = "'s (x / 255 - mean) / std goes beyond +-1e6";
  CHECK(has(normalization_error("0,0,0", "1e-40,1,1"), "channel 0" + beyond));
  CHECK(has(normalization_error("0,1e300,0", "1,1,1"), "channel 1" + beyond));
  CHECK(has(normalization_error("0,0,0.5", "1,1,1e-20"), "channel 2" + beyond));
  // (1 - 0.5) / 5e-7 = 1e6 exactly is still taken.
  CHECK(normalization_from_metadata({{"vt.data.mean", "0.5"}, {"vt.data.std", "5e-7"}}).std == std::vector<double>{5e-7});
  // Half a normalisation fell back to CIFAR-10's statistics without a word.
  CHECK(has(error_of([] { normalization_from_metadata({{"vt.data.mean", "0.5"}}); }),
            "'vt.data.mean' without 'vt.data.std': the normalisation is half given"));
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
  const auto three_classes = models::create_model(config);
  const Evaluation e = evaluate(*three_classes, *dataset, data::Normalization(), 4, 1);
  REQUIRE(e.confusion.size() == 3);
  // 6 images in batches of 4 and 2: each label's row of the confusion matrix counts its 2 images, accuracy is
  // its diagonal over 6, and the loss is the mean over images, as in one batch of 6 (each batch's mean loss is
  // weighted by its size).
  int64_t diagonal = 0;
  for (size_t label = 0; label < 3; ++label) {
    int64_t row = 0;
    for (int64_t count : e.confusion[label]) row += count;
    CHECK(row == 2);
    diagonal += e.confusion[label][label];
  }
  CHECK(e.accuracy == doctest::Approx(static_cast<double>(diagonal) / 6));
  const Evaluation whole = evaluate(*three_classes, *dataset, data::Normalization(), 6, 1);
  CHECK(whole.confusion == e.confusion);
  CHECK(whole.loss == doctest::Approx(e.loss).epsilon(1e-6));
}

namespace {

struct Outcome {
  int exit_code = -1;  // -1: killed by a signal
  int signal = 0;
  std::string output;  // stdout and stderr together
};

// Runs the vt program with `arguments` (and `environment` assignments before it) in a shell; returns how it ended.
Outcome run_vt(const std::string& arguments, const std::string& environment = "") {
  static int uses = 0;
  const std::string log = (fs::temp_directory_path() / ("vt_reliability_" + std::to_string(::getpid()) + "_" +
                                                         std::to_string(uses++) + ".log")).string();
  // exec: the shell becomes vt, so the status is vt's own (a shell would turn a signal into exit code 128 + s).
  const std::string command = "exec env " + environment + " " + VT_BINARY + " " + arguments + " > '" + log + "' 2>&1";
  const int status = std::system(command.c_str());
  Outcome outcome;
  outcome.output = testing::read_file(log);
  fs::remove(log);
  if (WIFEXITED(status)) outcome.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) outcome.signal = WTERMSIG(status);
  return outcome;
}

// Every tensor of two safetensors files, bit for bit.
void expect_same_tensors(const std::string& a, const std::string& b) {
  const auto first = nn::load_safetensors(a).tensors, second = nn::load_safetensors(b).tensors;
  REQUIRE(first.size() == second.size());
  for (size_t i = 0; i < first.size(); ++i) {
    CAPTURE(first[i].first);
    CHECK(first[i].first == second[i].first);
    CHECK(first[i].second.to_vector() == second[i].second.to_vector());
  }
}

// The metrics rows without the timing columns (images/s and seconds).
std::vector<std::string> metrics_without_timings(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);) {
    size_t cut = line.size();
    for (int commas = 0; commas < 2 && cut != std::string::npos; ++commas) cut = line.rfind(',', cut - 1);
    rows.push_back(line.substr(0, cut));
  }
  return rows;
}

// A small run: 64 generated images of 2 classes, 4 steps of 16 per epoch, a 1-block ViT of width 16.
const std::string kTinyRun = "train --model vit_cifar dim=16 heads=2 depth=1 mlp_ratio=2 --epochs 3 --batch 16 "
                             "--workers 1 --threads 1 --aug crop=2,flip=1,auto=none";

std::string tiny_run(const fs::path& data, const fs::path& out) {
  return kTinyRun + " --data '" + data.string() + "' --out '" + out.string() + "'";
}

// A tiny run's data in root/data: 32 training and 4 test images in each of 2 classes (4 steps of 16 an epoch).
void write_tiny_data(const fs::path& root) {
  write_folders(root / "data", "train", {"ant", "bee"}, 32);
  write_folders(root / "data", "test", {"ant", "bee"}, 4);
}

// Rewrites a training state's metadata entry.
void edit_state(const fs::path& path, const std::string& key, const std::string& value) {
  nn::SafetensorsFile file = nn::load_safetensors(path.string());
  file.metadata[key] = value;
  nn::save_safetensors(path.string(), file.tensors, file.metadata);
}

}  // namespace

TEST_CASE("reliability: a resumed run refuses a state that is corrupt, missing, or from other settings or data") {
  testing::TemporaryDirectory directory("resume_checks");
  write_tiny_data(directory.path);
  const fs::path data = directory.path / "data", run = directory.path / "run", state = run / "last.state.safetensors";
  REQUIRE(run_vt(tiny_run(data, run) + " --stop-after-steps 6").exit_code == 130);  // stopped in epoch 2

  // --resume where there is nothing to resume used to start over silently and overwrite the run.
  const Outcome nothing = run_vt(tiny_run(data, directory.path / "elsewhere") + " --resume");
  CHECK(nothing.exit_code == 1);
  CHECK(has(nothing.output, "there is no training state to resume in"));
  // Starting afresh over a run would overwrite it.
  const Outcome fresh = run_vt(tiny_run(data, run));
  CHECK(fresh.exit_code == 1);
  CHECK(has(fresh.output, "already holds a run (last.state.safetensors); continue it with --resume"));

  // Other settings or other data: refused, naming the difference, unless asked for.
  const Outcome batch = run_vt(tiny_run(data, run) + " --resume --batch 8");
  CHECK(batch.exit_code == 1);
  CHECK(has(batch.output, "batch: 16 in the run, 8 now"));
  CHECK(has(batch.output, "--allow-changed-config"));
  const Outcome model = run_vt(tiny_run(data, run) + " --resume depth=2");
  CHECK(has(model.output, "model.depth: 1 in the run, 2 now"));
  write_folders(data, "train", {"cat"}, 1);
  CHECK(has(run_vt(tiny_run(data, run) + " --resume").output, "the training data: 65 images now, not the run's images"));
  fs::remove_all(data / "train" / "cat");

  // A step that contradicts the epoch (vt.step=100 once made every remaining epoch run no steps, exit 0).
  const fs::path saved = directory.path / "saved.safetensors";
  fs::copy_file(state, saved);
  edit_state(state, "vt.step", "100");
  const Outcome step = run_vt(tiny_run(data, run) + " --resume");
  CHECK(step.exit_code == 1);
  CHECK(has(step.output, "step 100 is not 1 epochs of 4 steps and 2 more: the state is corrupt"));
  // An epoch count far past the run's (2^62: its step arithmetic overflowed, which UBSan reported).
  fs::copy_file(saved, state, fs::copy_options::overwrite_existing);
  edit_state(state, "vt.epoch", "4611686018427387904");
  CHECK(has(run_vt(tiny_run(data, run) + " --resume").output,
            "the run has completed 4611686018427387904 epochs, more than --epochs 3"));
  // An optimizer step count that disagrees with the run's (it set the learning rate to its minimum).
  fs::copy_file(saved, state, fs::copy_options::overwrite_existing);
  nn::SafetensorsFile file = nn::load_safetensors(state.string());
  for (auto& [name, tensor] : file.tensors)
    if (name == "step_count") tensor = Tensor::from_indices({1000000}, {});
  nn::save_safetensors(state.string(), file.tensors, file.metadata);
  CHECK(has(run_vt(tiny_run(data, run) + " --resume").output, "the optimizer has taken 1000000 steps, the run 6"));

  // vt eval matches the data's classes to the checkpoint's by name: a renamed class scored 0.00% silently.
  write_folders(directory.path / "renamed", "test", {"ant", "bea"}, 2);
  const Outcome renamed = run_vt("eval --checkpoint '" + (run / "last.safetensors").string() + "' --data '" +
                                 (directory.path / "renamed").string() + "'");
  CHECK(renamed.exit_code == 1);
  CHECK(has(renamed.output, "class 'bea' in " + (directory.path / "renamed" / "test").string() +
                                " is not one of the 2 classes of the model or training set (ant, bee)"));
  // Untouched, it resumes; a deliberate change resumes with the flag.
  fs::copy_file(saved, state, fs::copy_options::overwrite_existing);
  CHECK(run_vt(tiny_run(data, run) + " --resume --epochs 4 --allow-changed-config").exit_code == 0);
  CHECK(metrics_without_timings(run / "metrics.csv").size() == 5);  // header and 4 epochs
  // config.toml now holds the settings resumed with, so `vt train --config` repeats 4 epochs, not the first 3.
  const std::string config = testing::read_file(run / "config.toml");
  CHECK(has(config, "epochs = \"4\"\n"));
  CHECK(!has(config, "epochs = \"3\""));
}

TEST_CASE("reliability: metrics.csv keeps every epoch across stops and resumes, as a straight run writes it") {
  testing::TemporaryDirectory directory("resume_metrics");
  write_tiny_data(directory.path);
  const fs::path data = directory.path / "data";
  REQUIRE(run_vt(tiny_run(data, directory.path / "straight")).exit_code == 0);
  const std::vector<std::string> straight = metrics_without_timings(directory.path / "straight" / "metrics.csv");
  REQUIRE(straight.size() == 4);
  // Stopped mid-epoch 2 of 3 (step 6), then exactly at the end of epoch 1 (step 4): each resume used to drop a
  // row, and a stop at an epoch's end rewrote that epoch's row with zeros.
  for (const int stop : {6, 4}) {
    CAPTURE(stop);
    const fs::path run = directory.path / ("stopped_" + std::to_string(stop));
    const Outcome stopped = run_vt(tiny_run(data, run) + " --stop-after-steps " + std::to_string(stop));
    REQUIRE(stopped.exit_code == 130);
    // A stop at an epoch's end printed nothing of where the run stood.
    CHECK(has(stopped.output, stop == 4 ? "stopped after epoch 1: saved " : "stopped at step 6: saved "));
    CHECK(has(stopped.output, "continue with --resume"));
    CHECK(has(stopped.output, "model.num_classes from the data's class folders"));  // it printed the preset's 10
    REQUIRE(run_vt(tiny_run(data, run) + " --resume").exit_code == 0);
    CHECK(metrics_without_timings(run / "metrics.csv") == straight);
    expect_same_tensors((directory.path / "straight" / "last.safetensors").string(), (run / "last.safetensors").string());
  }
}

TEST_CASE("reliability: a run killed at any step of any write resumes to the same final weights, or refuses clearly") {
  testing::TemporaryDirectory directory("kill_points");
  write_tiny_data(directory.path);
  const fs::path data = directory.path / "data", straight = directory.path / "straight";
  REQUIRE(run_vt(tiny_run(data, straight)).exit_code == 0);
  // VT_FAULT_KILL_AT=k sends SIGKILL at the k-th step of any file write: creating a temporary file, each write
  // into it, the fsync, the rename, the directory's fsync. Every 13th step is tried until a run is never killed.
  int kill_points = 0, refused = 0;
  for (int k = 1;; k += 13) {
    CAPTURE(k);
    const fs::path run = directory.path / ("killed_" + std::to_string(k));
    const Outcome killed = run_vt(tiny_run(data, run), "VT_FAULT_KILL_AT=" + std::to_string(k));
    if (killed.exit_code == 0) break;  // k is past the last write step of the run
    REQUIRE(killed.signal == SIGKILL);
    ++kill_points;
    const Outcome resumed = run_vt(tiny_run(data, run) + " --resume");
    if (resumed.exit_code != 0) {
      // Killed before the first training state was complete: nothing to resume, and it says so.
      CHECK(has(resumed.output, "there is no training state to resume"));
      ++refused;
      REQUIRE(run_vt(tiny_run(data, run)).exit_code == 0);  // and a fresh start in the same folder works
    }
    expect_same_tensors((straight / "last.safetensors").string(), (run / "last.safetensors").string());
    expect_same_tensors((straight / "best.safetensors").string(), (run / "best.safetensors").string());
    CHECK(metrics_without_timings(run / "metrics.csv") == metrics_without_timings(straight / "metrics.csv"));
    for (const auto& entry : fs::directory_iterator(run))  // no temporary file outlives a resumed run
      CHECK(entry.path().filename().string().find(".tmp-") == std::string::npos);
    fs::remove_all(run);
  }
  MESSAGE(kill_points << " kill points, " << refused << " of them before the first state (refused, then restarted)");
  CHECK(kill_points >= 20);
}

TEST_CASE("reliability: a killed writer's temporary files are removed at the next start, a live one's kept") {
  testing::TemporaryDirectory directory("stale_temporaries");
  // A pid no process has (kill(pid, 0) fails with ESRCH), and this process's own.
  int dead = 4'000'000;
  while (::kill(dead, 0) == 0 || errno != ESRCH) --dead;
  std::ofstream(directory.path / ("last.state.safetensors.tmp-" + std::to_string(dead))) << "half a file";
  std::ofstream(directory.path / ("metrics.csv.tmp-" + std::to_string(::getpid()))) << "being written";
  std::ofstream(directory.path / "notes.tmp-x") << "not ours";
  CHECK(remove_stale_temporary_files(directory.path.string()) == 1);
  CHECK(directory.listing() == std::vector<std::string>{"metrics.csv.tmp-" + std::to_string(::getpid()), "notes.tmp-x"});
}

TEST_CASE("reliability: the command line checks every flag's type and range, and suggests the flag meant") {
  auto vt = [](const std::string& arguments) { return run_vt(arguments); };
  CHECK(has(vt("train --help").output, "--epochs INT:INTEGER in [1, 1000000]=30"));  // once: "--help needs a value"
  const Outcome typo = vt("train --model vit_cifar --epoch 3");
  CHECK(typo.exit_code == 2);
  CHECK(has(typo.output, "unknown option --epoch for vt train; did you mean --epochs?"));
  CHECK(has(vt("trian --model vit_cifar").output, "unknown command 'trian'; did you mean train?"));
  // Each of these was accepted silently: 0 and -3 meant all cores, 4294967297 wrapped to 1, nan went through.
  for (const std::string bad : {"--threads 0", "--threads -3", "--threads 4294967297", "--ema nan", "--clip-grad nan",
                                "--warmup nan", "--normalize bogus", "--seed -1", "--lr 0", "--epochs 9223372036854775807"}) {
    CAPTURE(bad);
    const Outcome outcome = vt("train --model vit_cifar " + bad);
    CHECK(outcome.exit_code == 2);
    CHECK(has(outcome.output, bad.substr(0, bad.find(' ')) + ":"));
  }
  for (const std::string bad : {"--time-budget 0", "--time-budget nan", "--time-budget -5"}) {
    CAPTURE(bad);
    CHECK(vt("train --model vit_cifar " + bad).exit_code == 2);
  }
  // A flag whose value was forgotten took the next flag for it: --data read "--model", and the error that
  // followed was "--model is required"; --models took "--data" for a model's name; and `--out --epochs=3`
  // trained 30 epochs into a folder named "--epochs=3".
  const Outcome forgotten = vt("train --data --model vit_cifar");
  CHECK(forgotten.exit_code == 2);
  CHECK(has(forgotten.output, "--data: got the flag --model where its value was due"));
  CHECK(has(vt("compare --models --data data").output, "--models: got the flag --data where its value was due"));
  CHECK(has(vt("train --model vit_cifar --data none --out --epochs=3").output,
            "--out: got the flag --epochs where its value was due"));
  // A budget chooses the epochs: both at once is a contradiction, refused before anything runs.
  const Outcome both = vt("train --model vit_cifar --time-budget 60 --epochs 3");
  CHECK(both.exit_code == 2);
  CHECK(has(both.output, "--epochs excludes --time-budget"));
  // TF32 is a GPU matmul mode: on the CPU the flag is refused, not ignored. bf16 runs on a CPU with AMX or
  // AVX512-BF16, and is refused, naming what is missing, on one without.
  const Outcome tf32 = vt("bench-train --model vit_cifar --device cpu --tf32");
  CHECK(tf32.exit_code == 1);
  CHECK(has(tf32.output, "set_matmul_precision: TF32 is a mode of the GPU's matmuls: it needs --device cuda"));
  const Outcome bf16 = vt("bench-train --model vit_cifar depth=1 --batch 4 --device cpu --amp bf16");
  if (best_bf16_kernel() == Bf16Kernel::none) {
    CHECK(bf16.exit_code == 1);
    CHECK(has(bf16.output, "set_matmul_precision: bf16 matmuls on the CPU need AVX512-BF16 or AMX"));
  } else {
    CHECK(bf16.exit_code == 0);
    CHECK(has(bf16.output, "vt vit_cifar bf16 batch 4 on cpu: training"));
  }
  CHECK(has(vt("bench-train --model vit_cifar --tf32 --amp bf16").output, "--tf32 and --amp bf16 are two matmul precisions: choose one"));
  CHECK(vt("train --model vit_cifar --amp fp16").exit_code == 2);
  CHECK(has(vt("train --model vit_cifar head_hidden=-5").output, "head_hidden=-5 is outside [0, 65536]"));
  CHECK(has(vt("train --model vit_cifar --aug auto=rand-m9-n2000000000").output, "layer count must be an integer in [0, 16]"));
}

TEST_CASE("reliability: hostile settings are refused or tamed before anything runs") {
  testing::TemporaryDirectory directory("hostile_settings");
  // libgomp took OMP_NUM_THREADS=65536 at its word and crashed creating the threads (SIGSEGV); --threads had a range.
  const Outcome threads = run_vt("info --model vit_cifar depth=1", "OMP_NUM_THREADS=65536");
  CHECK(threads.exit_code == 0);
  CHECK(has(threads.output, "OMP_NUM_THREADS=65536; running 1024 threads"));
  const Outcome wrapped = run_vt("info --model vit_cifar depth=1", "OMP_NUM_THREADS=2147483648");  // read as -2^31
  CHECK(wrapped.exit_code == 0);
  CHECK(has(wrapped.output, "OMP_NUM_THREADS=2147483648; running 1024 threads"));
  // libgomp warns of a count it cannot read and ignores it; vt's restart, which sets GOMP_SPINCOUNT unless
  // it or OMP_WAIT_POLICY is set (library_settings), warned a second time.
  for (const std::string unread : {"abc", "0", "2,", "-1"}) {
    CAPTURE(unread);
    const Outcome outcome = run_vt("info --model vit_cifar depth=1",
                                   "-u GOMP_SPINCOUNT -u OMP_WAIT_POLICY OMP_NUM_THREADS='" + unread + "'");
    CHECK(outcome.exit_code == 0);
    const std::string warning = "Invalid value for environment variable OMP_NUM_THREADS";
    const size_t first = outcome.output.find(warning);
    CHECK(first != std::string::npos);
    CHECK(outcome.output.find(warning, first + 1) == std::string::npos);
  }
  // int(192 * 0.001) = 0: an MLP without hidden features was built.
  CHECK(has(run_vt("info --model vit_cifar mlp_ratio=0.001").output, "gives an MLP of int(dim * mlp_ratio) = 0 hidden"));
  // A name with a newline was printed raw inside --json's string.
  CHECK(has(run_vt("info --model vit_cifar depth=1 'name=a\nb' --json").output, R"("name": "a\nb")"));
  // A 3-class dataset trained a 3-class model under num_classes=5 without a word.
  const Outcome classes = run_vt(tiny_run(directory.path / "none", directory.path / "run") + " num_classes=5");
  CHECK(classes.exit_code == 2);
  CHECK(has(classes.output, "num_classes=5: training takes the number of classes from the data's class folders"));
  // The cosine rose from 1e-5 to 0.96 when --min-lr was above --lr.
  const Outcome min_lr = run_vt(tiny_run(directory.path / "none", directory.path / "run") + " --lr 1e-5 --min-lr 1");
  CHECK(min_lr.exit_code == 1);
  CHECK(has(min_lr.output, "--min-lr 1 is above --lr 1e-05"));
  // vt compare took --time-budget 0 (and trained 30 epochs), and --epochs with --time-budget (and used the budget).
  const std::string compare = "compare --models vit_cifar --data '" + (directory.path / "none").string() + "' --out '" +
                              (directory.path / "compare").string() + "' ";
  CHECK(run_vt(compare + "--time-budget 0").exit_code == 2);
  const Outcome both = run_vt(compare + "--time-budget 5 --epochs 1");
  CHECK(both.exit_code == 2);
  CHECK(has(both.output, "--epochs excludes --time-budget"));
  // The same model twice trained the first fully, then failed on the second's run folder.
  const Outcome twice = run_vt("compare --models vit_cifar,tnt_cifar,vit_cifar --data '" + (directory.path / "none").string() +
                               "' --out '" + (directory.path / "compare").string() + "'");
  CHECK(twice.exit_code == 1);
  CHECK(has(twice.output, "--models names vit_cifar twice"));
  // A misspelt second model was found only after the first had been benchmarked.
  const Outcome unknown = run_vt("compare --models vit_cifar,vit_cifa --data '" + (directory.path / "none").string() +
                                 "' --out '" + (directory.path / "compare").string() + "'");
  CHECK(unknown.exit_code == 1);
  CHECK(has(unknown.output, "vit_cifa"));
  CHECK(!has(unknown.output, "GMACs/image"));
  // Models given apart, as --models takes one word, are named as models rather than as bad settings.
  const Outcome spaced = run_vt("compare --models vit_cifar tnt_cifar --data '" + (directory.path / "none").string() + "'");
  CHECK(spaced.exit_code == 1);
  CHECK(has(spaced.output, "got 'tnt_cifar' (a model: --models takes several comma-separated, as --models a,b)"));
  // A loss that turns NaN within the first epoch pointed at a last good state that was never written.
  write_tiny_data(directory.path);
  const Outcome diverged =
      run_vt(tiny_run(directory.path / "data", directory.path / "diverged") + " --lr 100 --wd 100 --warmup 0 --batch 2");
  CHECK(diverged.exit_code == 1);
  CHECK(has(diverged.output, "at epoch 1, step"));
  CHECK(has(diverged.output, "No training state was saved before it"));
  CHECK(!fs::exists(directory.path / "diverged" / "last.state.safetensors"));
  // --models took every word after it: `--models vit_cifar depth=1` failed on a model named depth=1.
  const Outcome overridden = run_vt("compare --models vit_cifar dim=16 heads=2 depth=1 mlp_ratio=2 --epochs 1 --batch 16 "
                                    "--threads 1 --data '" + (directory.path / "data").string() + "' --out '" +
                                    (directory.path / "overridden").string() + "'");
  CHECK(overridden.exit_code == 0);
  const std::string report = testing::read_file(directory.path / "overridden" / "report.md");
  CHECK(has(report, "Model overrides: dim=16 heads=2 depth=1 mlp_ratio=2."));
  CHECK(has(report, "| vit_cifar | 4,266 |"));  // the overrides' model with 2 classes, not the preset's 3,138,442
  // --out naming a file gave std::filesystem's bare "cannot create directories: Not a directory"; an empty
  // --out silently meant runs/vit_cifar.
  const fs::path file = directory.path / "a_file";
  std::ofstream(file) << "x";
  const Outcome onto_file = run_vt(tiny_run(directory.path / "data", file));
  CHECK(onto_file.exit_code == 1);
  CHECK(has(onto_file.output, "train: '" + file.string() + "' is a file, not a folder"));
  CHECK(run_vt(tiny_run(directory.path / "data", "")).exit_code == 2);
}

TEST_CASE("reliability: FIFOs, an output over an input, and model fields without --model are refused") {
  // Each was found by a hunt for hostile inputs: a FIFO given to --config or as a checkpoint hung until killed, one
  // given to --out was replaced by a regular file, `vt forward --output` over the checkpoint replaced the weights
  // with logits, and `vt eval` without --model dropped its model fields in silence.
  testing::TemporaryDirectory directory("refusals");
  const std::string checkpoint = directory.file("model.safetensors"), input = directory.file("x.safetensors");
  const std::string pipe = directory.file("pipe");
  REQUIRE(::mkfifo(pipe.c_str(), 0600) == 0);
  REQUIRE(run_vt("init --model vit_cifar depth=1 dim=16 heads=2 --out '" + checkpoint + "'").exit_code == 0);
  nn::save_safetensors(input, {{"x", Tensor::zeros({1, 3, 32, 32})}});

  const Outcome config = run_vt("--config '" + pipe + "' train", "timeout 20");
  CHECK(config.exit_code != 124);  // timeout's code: it hung
  CHECK(has(config.output, pipe + " is not a regular file"));
  const Outcome weights_pipe = run_vt("forward --checkpoint '" + pipe + "' --input '" + input + "' --output o", "timeout 20");
  CHECK(weights_pipe.exit_code == 1);
  CHECK(has(weights_pipe.output, "not a regular file"));
  const Outcome init = run_vt("init --model vit_cifar depth=1 dim=16 heads=2 --out '" + pipe + "'");
  CHECK(init.exit_code == 1);
  CHECK(has(init.output, "exists and is not a regular file"));
  CHECK(fs::is_fifo(pipe));

  const std::string weights = testing::read_file(checkpoint);
  for (const std::string& source : {checkpoint, input}) {
    const Outcome over = run_vt("forward --checkpoint '" + checkpoint + "' --input '" + input + "' --output '" + source + "'");
    CHECK(over.exit_code == 1);
    CHECK(has(over.output, "--output " + source + " is the " + (source == checkpoint ? "checkpoint" : "input")));
  }
  CHECK(testing::read_file(checkpoint) == weights);
  const Outcome forward = run_vt("forward --checkpoint '" + checkpoint + "' --input '" + input + "' --output '" +
                                 directory.file("logits.safetensors") + "'");
  CHECK(forward.exit_code == 0);
  CHECK(has(forward.output, "logits (1, 10)"));

  const Outcome fields = run_vt("eval --checkpoint '" + checkpoint + "' --data '" + directory.file("data") + "' dim=999");
  CHECK(fields.exit_code == 1);
  CHECK(has(fields.output, "'dim=999' changes a model, but no --model names one"));
}

TEST_CASE("reliability: a run folder another vt is writing is refused, and a stop signal saves the run") {
  // Two runs into one --out both exited 0, each overwriting the other's files (found by a hunt for hostile inputs).
  testing::TemporaryDirectory directory("run_lock");
  write_tiny_data(directory.path);
  const fs::path data = directory.path / "data", run = directory.path / "run";
  fs::create_directories(run);
  {
    const FolderLock held("test", run.string());  // as a running vt holds it
    const std::string held_by = "is in use by another vt process (pid " + std::to_string(::getpid()) + ")";
    CHECK(has(error_of([&] { FolderLock("train", run.string()); }), held_by));
    const Outcome second = run_vt(tiny_run(data, run));
    CHECK(second.exit_code == 1);
    CHECK(has(second.output, "'" + run.string() + "' is in use by another vt process"));
  }
  // SIGTERM (timeout, a batch scheduler) stops the run as Ctrl-C does, with a resumable state; it killed it. The
  // signal is sent once the first epoch's metrics.csv exists, so that the run is surely training (not by a clock,
  // which a slow sanitizer build can outrun).
  const fs::path script = directory.path / "terminate.sh", log = directory.path / "terminate.log";
  std::ofstream(script) << VT_BINARY << " " << tiny_run(data, run) << " --epochs 100000 > '" << log.string()
                        << "' 2>&1 &\npid=$!\ni=0\nwhile [ ! -f '" << (run / "metrics.csv").string()
                        << "' ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done\nkill -TERM $pid\nwait $pid\n";
  const int status = std::system(("sh '" + script.string() + "'").c_str());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);  // vt's own stop, not 128 + SIGTERM
  CHECK(has(testing::read_file(log), "continue with --resume"));
  CHECK(fs::exists(run / "last.state.safetensors"));
}

TEST_CASE("reliability: a best.safetensors removed before a resume is written again, its accuracy the best's") {
  // The state's best accuracy was kept while the next epoch's weights became best.safetensors: the run reported
  // "best: 22.22%" for a checkpoint that scored 11.11% (found by a hunt for hostile inputs).
  testing::TemporaryDirectory directory("best_removed");
  write_tiny_data(directory.path);
  const fs::path data = directory.path / "data", run = directory.path / "run";
  REQUIRE(run_vt(tiny_run(data, run) + " --stop-after-steps 6").exit_code == 130);  // in epoch 2 of 3
  fs::remove(run / "best.safetensors");
  const Outcome resumed = run_vt(tiny_run(data, run) + " --resume");
  REQUIRE(resumed.exit_code == 0);
  CHECK(has(resumed.output, "best.safetensors is missing; it now holds epoch 2's weights"));
  const Outcome scored = run_vt("eval --checkpoint '" + (run / "best.safetensors").string() + "' --data '" +
                                data.string() + "' --threads 1");
  REQUIRE(scored.exit_code == 0);
  const auto percent_after = [](const std::string& text, const std::string& key) {
    const size_t at = text.find(key);
    return at == std::string::npos ? std::string("(none)") : text.substr(at + key.size(), text.find('%', at) - at - key.size());
  };
  CHECK(percent_after(resumed.output, "best: ") == percent_after(scored.output, "\naccuracy: "));
}

TEST_CASE("reliability: a vt compare stopped during its first model finishes with --resume") {
  // --resume failed on the models after the stopped one, which had no state yet, and without it the first
  // model's run was refused: the comparison could never be finished (found by a hunt for hostile inputs).
  testing::TemporaryDirectory directory("compare_resume");
  write_tiny_data(directory.path);
  const std::string compare = "compare --models vit_cifar,tnt_cifar --data '" + (directory.path / "data").string() +
                              "' --out '" + (directory.path / "out").string() + "' --epochs 2 --batch 16 --workers 1 "
                              "--threads 1 --aug crop=2,flip=1,auto=none depth=1 dim=16 heads=2 mlp_ratio=2 "
                              "inner_dim=8 inner_heads=2";
  REQUIRE(run_vt(compare + " --stop-after-steps 3").exit_code == 130);  // in vit_cifar's first epoch
  const Outcome resumed = run_vt(compare + " --resume");
  CHECK(resumed.exit_code == 0);
  CHECK(fs::exists(directory.path / "out" / "report.md"));
  CHECK(fs::exists(directory.path / "out" / "tnt_cifar" / "last.state.safetensors"));
  std::string budgeted = compare;
  budgeted.replace(budgeted.find(" --epochs 2"), 11, " --time-budget 60");  // the two exclude each other
  CHECK(has(run_vt(budgeted + " --resume").output, "one fitted to --time-budget cannot be resumed"));
}

TEST_CASE("reliability: vt viz refuses outputs that would replace its inputs or a run's metrics") {
  // Each was replaced in silence: the checkpoint by a CSV, the input image by the picture, a run's metrics.csv.
  testing::TemporaryDirectory directory("viz_outputs");
  const fs::path checkpoint = directory.path / "ck.csv";  // a checkpoint may have any name
  REQUIRE(run_vt("init --model vit_cifar depth=1 dim=16 heads=2 --out '" + checkpoint.string() + "'").exit_code == 0);
  const std::string weights = testing::read_file(checkpoint);
  const Outcome csv = run_vt("viz posembed --checkpoint '" + checkpoint.string() + "' --out '" +
                             (directory.path / "ck.png").string() + "'");
  CHECK(csv.exit_code == 1);
  CHECK(has(csv.output, "which is an input"));
  CHECK(testing::read_file(checkpoint) == weights);
  const fs::path image = directory.path / "cat.png";
  const std::vector<uint8_t> gray(32 * 32, 90);
  REQUIRE(stbi_write_png(image.c_str(), 32, 32, 1, gray.data(), 32));
  const Outcome picture = run_vt("viz attention --checkpoint '" + checkpoint.string() + "' --out '" + image.string() +
                                 "' '" + image.string() + "'");
  CHECK(picture.exit_code == 1);
  CHECK(has(picture.output, "which is an input"));
  const fs::path run = directory.path / "run";
  fs::create_directories(run);
  std::ofstream(run / "last.state.safetensors") << "a run's state";
  std::ofstream(run / "metrics.csv") << "epoch,lr\n";
  const Outcome metrics = run_vt("viz posembed --checkpoint '" + checkpoint.string() + "' --out '" +
                                 (run / "metrics.png").string() + "'");
  CHECK(metrics.exit_code == 1);
  CHECK(has(metrics.output, "would replace the metrics.csv of the run in"));
  CHECK(testing::read_file(run / "metrics.csv") == "epoch,lr\n");
  CHECK(run_vt("viz posembed --checkpoint '" + checkpoint.string() + "' --out '" + (run / "posembed.png").string() +
               "'").exit_code == 0);  // a picture of its own in a run folder is fine
}

TEST_CASE("reliability: weights holding NaN are refused where they are loaded, not evaluated to class 0") {
  testing::TemporaryDirectory directory("nan_weights");
  write_folders(directory.path / "data", "test", {"ant", "bee"}, 2);
  const std::string weights = (directory.path / "w.safetensors").string();
  REQUIRE(run_vt("init --model vit_cifar dim=16 heads=2 depth=1 num_classes=2 --out '" + weights + "'").exit_code == 0);
  // A file named like a flag goes after "--", which vt refused as "unknown option --".
  fs::copy_file(directory.path / "data" / "test" / "ant" / "0.png", directory.path / "-a.png");
  const Outcome dashed = run_vt("predict --checkpoint '" + weights + "' -- -a.png", "--chdir='" + directory.path.string() + "'");
  CHECK(dashed.exit_code == 0);
  CHECK(has(dashed.output, "-a.png"));
  CHECK(has(dashed.output, "%  class 0"));
  nn::SafetensorsFile file = nn::load_safetensors(weights);
  for (auto& [name, tensor] : file.tensors)
    if (name == "head.bias") tensor.fill_(std::nan(""));
  nn::save_safetensors(weights, file.tensors, file.metadata);
  const std::vector<std::string> commands = {
      "eval --checkpoint '" + weights + "' --data '" + (directory.path / "data").string() + "'",
      "predict --checkpoint '" + weights + "' '" + (directory.path / "data" / "test" / "ant" / "0.png").string() + "'"};
  // eval reported 50% (every image "ant", the argmax of NaN) and predict "nan%  ant", both with exit code 0.
  for (const std::string& command : commands) {
    CAPTURE(command);
    const Outcome outcome = run_vt(command);
    CHECK(outcome.exit_code == 1);
    CHECK(has(outcome.output, "load_model: '" + weights + "': tensor 'head.bias' f32(2) holds values that are not finite in float32"));
  }
  // 1e300 is finite in a float64 file and infinite in the float32 model.
  for (auto& [name, tensor] : file.tensors) {
    tensor = tensor.to(DType::f64);
    if (name == "head.bias") tensor.fill_(1e300);
  }
  nn::save_safetensors(weights, file.tensors, file.metadata);
  CHECK(has(run_vt(commands[1]).output, "tensor 'head.bias' f64(2) holds values that are not finite in float32"));
  // Finite weights whose outputs overflow (3e38 in the head): eval printed "loss: -nan" and an accuracy.
  for (auto& [name, tensor] : file.tensors) {
    tensor = tensor.to(DType::f32);
    if (name == "head.bias") tensor.fill_(0);
    if (name == "head.weight") tensor.fill_(3e38);
  }
  nn::save_safetensors(weights, file.tensors, file.metadata);
  const Outcome eval = run_vt(commands[0]), predict = run_vt(commands[1]);
  CHECK(eval.exit_code == 1);
  CHECK(has(eval.output, "evaluate: the model's loss over 4 images is"));
  CHECK(predict.exit_code == 1);
  CHECK(has(predict.output, "0.png': the model's probabilities are not finite"));
}

TEST_CASE("reliability: a run's config.toml reloads with --config to the same run") {
  testing::TemporaryDirectory directory("config_file");
  // A quote, a backslash, '#' and ',' in the data path: CLI11's reader kept the escapes, cut at '#' and split at ','.
  const fs::path data = directory.path / "da\"ta\\ #1,2";
  write_folders(data, "train", {"ant", "bee"}, 32);
  write_folders(data, "test", {"ant", "bee"}, 4);
  const fs::path first = directory.path / "first", second = directory.path / "second";
  REQUIRE(run_vt(tiny_run(data, first) + " --seed 7 --lr 0.002 --ema 0.9").exit_code == 0);
  REQUIRE(run_vt("train --config '" + (first / "config.toml").string() + "' --out '" + second.string() + "' --threads 1")
              .exit_code == 0);
  expect_same_tensors((first / "last.safetensors").string(), (second / "last.safetensors").string());
  const std::string first_config = testing::read_file(first / "config.toml");
  CHECK(first_config == testing::read_file(second / "config.toml"));
  CHECK(has(first_config, "seed = \"7\""));
  // The class count is the data's: the file listed the preset's num_classes=10 for these 2 class folders, and
  // --model-fields num_classes=5 was replaced in silence.
  CHECK(has(first_config, "\"num_classes=2\""));
  std::string five_classes = first_config;
  five_classes.replace(five_classes.find("num_classes=2"), 13, "num_classes=5");
  const fs::path five = directory.path / "five.toml";
  std::ofstream(five) << five_classes;
  const Outcome classes = run_vt("train --config '" + five.string() + "' --out '" + (directory.path / "five").string() + "'");
  CHECK(classes.exit_code == 1);
  CHECK(has(classes.output, "train: --model-fields lists num_classes=5, but the data in '" + data.string() +
                                "' has 2 class folders"));

  // A mistyped key, a key given twice and a file without [train] each ran the default 30 epochs in silence.
  auto refusal = [&](const std::string& text) {
    const fs::path file = directory.path / "edited.toml";
    std::ofstream(file) << text;
    const Outcome outcome = run_vt("train --config '" + file.string() + "' --out '" + (directory.path / "third").string() + "'");
    CHECK(outcome.exit_code == 2);
    return outcome.output;
  };
  CHECK(has(refusal(first_config + "epoch = \"50\"\n"), "'epoch' is not a flag of vt train; did you mean epochs?"));
  CHECK(has(refusal(first_config + "epochs = \"2\"\n"), "'epochs' is given twice"));
  const fs::path twice = directory.path / "twice.toml";  // also when the command line gives the key as well
  std::ofstream(twice) << first_config << "epochs = \"2\"\n";
  CHECK(has(run_vt("train --config '" + twice.string() + "' --epochs 1").output, "'epochs' is given twice"));
  CHECK(has(refusal("epochs = \"2\"\n"), "expected flag = \"value\" in the [train] section"));
  CHECK(has(refusal(""), "the file has no [train] section"));
  CHECK(has(refusal("[train]\nlr = \"0.1\n"), "the value of 'lr' at byte"));
  // An empty list for a flag of one value crashed CLI11 (SIGSEGV); a longer one kept only its last value.
  CHECK(has(refusal("[train]\nseed = []\n"), "line 2: 'seed' takes one value, not a list"));
  CHECK(has(refusal("[train]\naug = [\"crop=0\",\"flip=0\"]\n"), "'aug' takes one value, not a list"));
  CHECK(has(refusal("[train]\nskip-bad = \"\"\n"), "'skip-bad' is on or off: \"true\" or \"false\", got \"\""));
  CHECK(has(refusal("[train]\ndata = \"data\\u0000xyz\"\n"), "the value of 'data' holds a NUL character"));
  CHECK(has(refusal("[train]\n[train]\n"), "line 2: a second [train] section"));
  const Outcome endless = run_vt("train --config /dev/zero");  // grew without end; now refused as a device
  CHECK(endless.exit_code == 2);
  CHECK(has(endless.output, "/dev/zero is not a regular file"));
  CHECK(has(refusal("[train]\n" + std::string(70000, '#') + "\n"), "--config, line 2: longer than 64 KiB"));
  // A byte-order mark and a comment after a value are TOML; --config twice dropped the first file in silence, and
  // the other commands ignored it.
  std::string marked = first_config;
  marked.replace(marked.find("seed = \"7\""), 10, "seed = \"7\" # as before");
  const fs::path file = directory.path / "marked.toml";
  std::ofstream(file) << "\xEF\xBB\xBF" << marked;
  const Outcome read = run_vt("train --config '" + file.string() + "' --out '" + (directory.path / "marked").string() +
                              "' --stop-after-steps 1");
  CHECK(read.exit_code == 130);  // stopped after its step: the file was read
  CHECK(has(read.output, "seed 7"));
  CHECK(run_vt("train --config '" + file.string() + "' --config '" + file.string() + "'").exit_code == 2);
  const Outcome eval = run_vt("eval --config '" + (first / "config.toml").string() + "' --checkpoint x");
  CHECK(eval.exit_code == 2);
  CHECK(has(eval.output, "--config: only vt train reads a run's config.toml, not vt eval"));
  // Flags on the command line win over the file: --model over its model-fields (the file's model, which gave a
  // ViT labelled tnt_cifar), --time-budget over its epochs (refused as "--epochs excludes --time-budget").
  const Outcome model = run_vt("train --config '" + (first / "config.toml").string() + "' --out '" +
                               (directory.path / "tnt").string() + "' --model tnt_cifar --stop-after-steps 1");
  CHECK(model.exit_code == 130);  // stopped after its step
  CHECK(has(model.output, "model.arch tnt"));
  CHECK(run_vt("train --config '" + (first / "config.toml").string() + "' --out '" + (directory.path / "budget").string() +
               "' --time-budget 30 --stop-after-steps 1").exit_code == 130);

  // A training state holding NaN was resumed, and the NaN loss that followed blamed the learning rate.
  fs::copy(first, directory.path / "nan_state");
  const fs::path state = directory.path / "nan_state" / "last.state.safetensors";
  nn::SafetensorsFile state_file = nn::load_safetensors(state.string());
  state_file.tensors.front().second.fill_(std::nan(""));
  nn::save_safetensors(state.string(), state_file.tensors, state_file.metadata);
  const Outcome resumed = run_vt(tiny_run(data, directory.path / "nan_state") + " --seed 7 --lr 0.002 --ema 0.9 --resume");
  CHECK(resumed.exit_code == 1);
  CHECK(has(resumed.output, "load_training_state: '" + state.string() + "': tensor '"));
  CHECK(has(resumed.output, "holds values that are not finite in float32"));
  // A data path that is not UTF-8 trained an epoch, then could not be written into the state's metadata.
  const Outcome bytes = run_vt(tiny_run(directory.path / "d\xff\xfe", directory.path / "bytes"));
  CHECK(bytes.exit_code == 1);
  CHECK(has(bytes.output, "the value of --data is not valid UTF-8"));
}

TEST_CASE("vt eval and predict --amp bf16: the checkpoint's accuracy with bf16 matmuls, or a clear refusal") {
  testing::TemporaryDirectory directory("eval_amp");
  write_tiny_data(directory.path);
  const fs::path run = directory.path / "run";
  REQUIRE(run_vt(tiny_run(directory.path / "data", run)).exit_code == 0);
  const std::string checkpoint = "--checkpoint '" + (run / "last.safetensors").string() + "'";
  const std::string image = (directory.path / "data" / "test" / "ant" / "0.png").string();
  const Outcome fp32 = run_vt("eval " + checkpoint + " --data '" + (directory.path / "data").string() + "'");
  REQUIRE(fp32.exit_code == 0);
  CHECK(has(fp32.output, "8 images"));
  CHECK(has(fp32.output, "fp32 matmuls"));
  const Outcome bf16 = run_vt("eval " + checkpoint + " --data '" + (directory.path / "data").string() + "' --amp bf16");
  const Outcome top = run_vt("predict " + checkpoint + " --amp bf16 '" + image + "'");
  if (best_bf16_kernel() == Bf16Kernel::none) {
    MESSAGE("this CPU has neither AVX512-BF16 nor AMX: --amp bf16 must be refused");
    for (const Outcome* outcome : {&bf16, &top}) {
      CHECK(outcome->exit_code == 1);
      CHECK(has(outcome->output, "bf16 matmuls on the CPU need AVX512-BF16 or AMX"));
    }
    return;
  }
  CHECK(bf16.exit_code == 0);
  CHECK(has(bf16.output, "bf16 matmuls"));
  CHECK(has(bf16.output, "accuracy: "));
  CHECK(top.exit_code == 0);
  CHECK(has(top.output, image));
  CHECK(has(top.output, "%  ant"));  // both classes listed with their probabilities
  CHECK(has(top.output, "%  bee"));
}
