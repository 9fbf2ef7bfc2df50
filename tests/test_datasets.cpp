// Dataset readers on files the tests write themselves (nothing is downloaded): CIFAR-10 binary batches
// (pixels and labels round-trip, truncated files and bad labels are refused by name) and image folders
// (PNG, JPEG, BMP, TGA, GIF; channel conversion, bilinear resizing, corrupt and truncated files, skip_bad).
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <array>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "datasets/dataset.h"
#include "tests/helpers.h"

using namespace vt;
using namespace vt::data;

namespace {

namespace fs = std::filesystem;

using testing::TemporaryDirectory;

void write_bytes(const fs::path& file, const std::vector<uint8_t>& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::vector<uint8_t> read_bytes(const fs::path& file) {
  const std::string bytes = testing::read_file(file);
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

// An 8 x 8 gray JPEG of stb_image_write's, written at `file` (its folders created); returns its bytes.
std::vector<uint8_t> write_gray_jpeg(const fs::path& file) {
  fs::create_directories(file.parent_path());
  const std::vector<uint8_t> gray(8 * 8, 128);
  REQUIRE(stbi_write_jpg(file.c_str(), 8, 8, 1, gray.data(), 90));
  return read_bytes(file);
}

// Where the marker FF `code` first stands in `bytes` (bytes.size() when nowhere).
size_t jpeg_marker(const std::vector<uint8_t>& bytes, uint8_t code) {
  const uint8_t marker[2] = {0xFF, code};
  return std::search(bytes.begin(), bytes.end(), marker, marker + 2) - bytes.begin();
}

// Keeps the first `fraction` of a file.
void truncate_file(const fs::path& file, double fraction) {
  std::vector<uint8_t> bytes = read_bytes(file);
  bytes.resize(static_cast<size_t>(static_cast<double>(bytes.size()) * fraction));
  write_bytes(file, bytes);
}

// Runs f with std::cerr captured; returns what it printed.
template <class F>
std::string capture_stderr(const F& f) {
  std::ostringstream captured;
  std::streambuf* previous = std::cerr.rdbuf(captured.rdbuf());
  try {
    f();
  } catch (...) {
    std::cerr.rdbuf(previous);
    throw;
  }
  std::cerr.rdbuf(previous);
  return captured.str();
}

// ---- CIFAR-10 binary ----

// Channel c of pixel (y, x) in record r of a test file: distinct across records, rows, columns and channels.
uint8_t cifar_pixel(int record, int y, int x, int c) { return static_cast<uint8_t>(record * 11 + y * 5 + x + c * 80); }

// Records as the official files store them: a label byte, then the R, G and B planes, each 32 x 32 row-major.
std::vector<uint8_t> cifar_records(const std::vector<int>& labels, int first_record = 0) {
  std::vector<uint8_t> bytes;
  for (size_t r = 0; r < labels.size(); ++r) {
    bytes.push_back(static_cast<uint8_t>(labels[r]));
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) bytes.push_back(cifar_pixel(first_record + static_cast<int>(r), y, x, c));
  }
  return bytes;
}

void expect_cifar_image(const Image& image, int record) {
  REQUIRE(image.height == 32);
  REQUIRE(image.width == 32);
  REQUIRE(image.channels == 3);
  int mismatches = 0;
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 32; ++x)
      for (int c = 0; c < 3; ++c) mismatches += image.at(y, x, c) != cifar_pixel(record, y, x, c);
  CHECK(mismatches == 0);
}

bool message_has(const std::string& message, const std::string& part) { return message.find(part) != std::string::npos; }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& error) {
    return error.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("cifar10: records round-trip with their labels and pixels, HWC, standard class names") {
  TemporaryDirectory tmp("cifar");
  write_bytes(tmp.path / "test_batch.bin", cifar_records({3, 0, 9, 3}));
  const auto dataset = open_dataset(tmp.path.string(), "test", DatasetOptions());
  REQUIRE(dataset->size() == 4);
  CHECK(dataset->channels() == 3);
  CHECK(dataset->image_size() == 32);
  CHECK(dataset->classes() == std::vector<std::string>{"airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                       "horse", "ship", "truck"});
  const std::vector<int64_t> labels = {3, 0, 9, 3};
  for (int i = 0; i < 4; ++i) {
    const Example example = dataset->get(i);
    CHECK(example.label == labels[i]);
    expect_cifar_image(example.image, i);
  }
  // The file's plane order: byte 1 + 1024 * c + 32 * y + x of record 2 is channel c of pixel (y, x).
  CHECK(dataset->get(2).image.at(5, 7, 1) == static_cast<uint8_t>(2 * 11 + 5 * 5 + 7 + 80));
  CHECK_THROWS_WITH_AS(dataset->get(4), doctest::Contains("index 4 out of range for 4"), std::runtime_error);
}

TEST_CASE("cifar10: training split from five batches in cifar-10-batches-bin/, class names from batches.meta.txt") {
  TemporaryDirectory tmp("cifar_train");
  const fs::path batches = tmp.path / "cifar-10-batches-bin";
  for (int b = 1; b <= 5; ++b)
    write_bytes(batches / ("data_batch_" + std::to_string(b) + ".bin"), cifar_records({b, 10 - b}, 2 * (b - 1)));
  std::ofstream(batches / "batches.meta.txt") << "a0\nb1\nc2\nd3\ne4\nf5\ng6\nh7\ni8\nj9\n\n";
  const auto dataset = open_dataset(tmp.path.string(), "train", DatasetOptions());
  REQUIRE(dataset->size() == 10);
  CHECK(dataset->classes()[0] == "a0");
  CHECK(dataset->classes()[9] == "j9");
  for (int i = 0; i < 10; ++i) {
    const int batch = i / 2 + 1;
    CHECK(dataset->get(i).label == (i % 2 == 0 ? batch : 10 - batch));
    expect_cifar_image(dataset->get(i).image, i);
  }
}

TEST_CASE("cifar10: a truncated file, a bad label, a missing batch and a bad meta file fail naming the file") {
  TemporaryDirectory tmp("cifar_bad");
  std::vector<uint8_t> bytes = cifar_records({1, 2});
  bytes.resize(bytes.size() + 100);  // 2 * 3,073 + 100 = 6,246 bytes
  write_bytes(tmp.path / "test_batch.bin", bytes);
  const std::string truncated = error_of([&] { open_dataset(tmp.path.string(), "test", DatasetOptions()); });
  CHECK(message_has(truncated, (tmp.path / "test_batch.bin").string() + " (6246 bytes)"));
  CHECK(message_has(truncated, "3,073-byte records"));

  write_bytes(tmp.path / "test_batch.bin", cifar_records({1, 12, 3}));
  const std::string label = error_of([&] { open_dataset(tmp.path.string(), "test", DatasetOptions()); });
  CHECK(message_has(label, (tmp.path / "test_batch.bin").string() + ": record 1 has label 12"));

  write_bytes(tmp.path / "data_batch_1.bin", cifar_records({1}));
  const std::string missing = error_of([&] { open_dataset(tmp.path.string(), "train", DatasetOptions()); });
  CHECK(message_has(missing, "missing CIFAR-10 file " + (tmp.path / "data_batch_2.bin").string()));

  std::ofstream(tmp.path / "batches.meta.txt") << "cat\ndog\n";
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "train", DatasetOptions()); }),
                    "batches.meta.txt names 2 classes"));
  // A FIFO in its place: std::ifstream waited for a writer forever.
  fs::remove(tmp.path / "batches.meta.txt");
  REQUIRE(::mkfifo((tmp.path / "batches.meta.txt").c_str(), 0600) == 0);
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "train", DatasetOptions()); }),
                    "batches.meta.txt: not a regular file"));
}

TEST_CASE("cifar10: converted to gray and resized, limit takes the first examples of each class") {
  TemporaryDirectory tmp("cifar_options");
  // 30 records: labels 0..9, three times over; record r has pixel values from cifar_pixel(r, ...).
  std::vector<int> labels;
  for (int r = 0; r < 30; ++r) labels.push_back(r % 10);
  write_bytes(tmp.path / "test_batch.bin", cifar_records(labels));

  DatasetOptions options;
  options.limit = 25;  // 25 / 10 classes = 2 each, and the remainder 5 gives classes 0..4 a third
  const auto limited = open_dataset(tmp.path.string(), "test", options);
  REQUIRE(limited->size() == 25);
  std::vector<int> per_class(10, 0);
  for (int64_t i = 0; i < limited->size(); ++i) ++per_class[limited->get(i).label];
  CHECK(per_class == std::vector<int>{3, 3, 3, 3, 3, 2, 2, 2, 2, 2});
  // File order is kept: the records of classes 5..9 in the third round (25..29) are the ones left out.
  for (int i = 0; i < 25; ++i) expect_cifar_image(limited->get(i).image, i);

  // A constant-color record: gray = (R * 19595 + G * 38470 + B * 7471 + 2^15) >> 16 (PIL's 0.299, 0.587, 0.114);
  // for (200, 100, 50): 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 124.2 -> 124.
  std::vector<uint8_t> constant = {0};
  for (uint8_t value : {200, 100, 50}) constant.insert(constant.end(), 1024, value);
  write_bytes(tmp.path / "test_batch.bin", constant);
  options = DatasetOptions();
  options.channels = 1;
  options.image_size = 20;
  const auto gray = open_dataset(tmp.path.string(), "test", options);
  const Image image = gray->get(0).image;
  CHECK(gray->channels() == 1);
  CHECK(gray->image_size() == 20);
  REQUIRE(image.pixels.size() == 20u * 20u);
  CHECK(std::all_of(image.pixels.begin(), image.pixels.end(), [](uint8_t v) { return v == 124; }));
}

TEST_CASE("datasets: misuse fails loudly") {
  TemporaryDirectory tmp("dataset_misuse");
  const std::string dir = tmp.path.string();
  CHECK(message_has(error_of([&] { open_dataset(dir + "/nowhere", "train", DatasetOptions()); }), "does not exist"));
  CHECK(message_has(error_of([&] { open_dataset(dir, "valid", DatasetOptions()); }), "split must be"));
  CHECK(message_has(error_of([&] { open_dataset(dir, "train", DatasetOptions()); }),
                    "neither a train/ image folder nor the CIFAR-10 binary files"));
  DatasetOptions options;
  options.channels = 5;
  CHECK(message_has(error_of([&] { open_dataset(dir, "train", options); }), "channels must be"));
  options = DatasetOptions();
  options.image_size = 0;
  CHECK(message_has(error_of([&] { open_dataset(dir, "train", options); }), "image_size must be positive"));
  fs::create_directories(tmp.path / "train");
  CHECK(message_has(error_of([&] { open_dataset(dir, "train", DatasetOptions()); }), "has no class folders"));
}

namespace {

// A 1 x 1 white GIF89a: header, screen descriptor with a 2-entry global color table (white, black), a
// graphic control extension, the image descriptor, LZW data (code size 2: clear, index 0, end), trailer 0x3B.
const std::vector<uint8_t> kWhiteGif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 255, 255, 255, 0, 0, 0,
                                        0x21, 0xF9, 4, 0, 0, 0, 0, 0, 0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0,
                                        2, 2, 0x44, 1, 0, 0x3B};

// Pixels of a 4 x 4 RGB(A) test image: pure red, green, blue and white in the first row, a ramp below.
std::vector<uint8_t> pattern(int channels) {
  std::vector<uint8_t> pixels;
  for (int p = 0; p < 16; ++p) {
    const uint8_t rgb[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
    for (int c = 0; c < 3; ++c) pixels.push_back(p < 4 ? rgb[p][c] : static_cast<uint8_t>(p * 13 + c * 40));
    if (channels == 4) pixels.push_back(static_cast<uint8_t>(p * 16));  // alpha, dropped on load
  }
  return pixels;
}

uint8_t pattern_at(int y, int x, int c) { return pattern(3)[(y * 4 + x) * 3 + c]; }

// The test tree under root/train:
//   ant/  gray.jpg (32 x 32, gray 100)      truncated.jpg (half of a JPEG)
//   bee/  (empty)
//   cat/  corrupt.png (not an image)       gray.png (2 x 2 gray)  rgb.png (4 x 4)  rgba.png (4 x 4)
//   dog/  a.bmp (4 x 4)  b.tga (4 x 4, run-length)  c.gif (1 x 1 white)  photo.jpg (8 x 8, color (200, 50, 10))
void write_tree(const fs::path& root) {
  const fs::path train = root / "train";
  for (const char* folder : {"dog", "bee", "cat", "ant"}) fs::create_directories(train / folder);
  const std::string s = train.string();

  const std::vector<uint8_t> gray100(32 * 32, 100);
  REQUIRE(stbi_write_jpg((s + "/ant/gray.jpg").c_str(), 32, 32, 1, gray100.data(), 95));
  std::vector<uint8_t> noise(48 * 40 * 3);
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<uint8_t>(random_bits(7, i));
  REQUIRE(stbi_write_jpg((s + "/ant/truncated.jpg").c_str(), 48, 40, 3, noise.data(), 90));
  truncate_file(train / "ant/truncated.jpg", 0.5);

  std::vector<uint8_t> garbage(300);
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<uint8_t>(random_bits(11, i));
  write_bytes(train / "cat/corrupt.png", garbage);
  const std::vector<uint8_t> gray2x2 = {0, 100, 200, 40};
  REQUIRE(stbi_write_png((s + "/cat/gray.png").c_str(), 2, 2, 1, gray2x2.data(), 2));
  REQUIRE(stbi_write_png((s + "/cat/rgb.png").c_str(), 4, 4, 3, pattern(3).data(), 12));
  REQUIRE(stbi_write_png((s + "/cat/rgba.png").c_str(), 4, 4, 4, pattern(4).data(), 16));

  REQUIRE(stbi_write_bmp((s + "/dog/a.bmp").c_str(), 4, 4, 3, pattern(3).data()));
  REQUIRE(stbi_write_tga((s + "/dog/b.tga").c_str(), 4, 4, 3, pattern(3).data()));
  write_bytes(train / "dog/c.gif", kWhiteGif);
  std::vector<uint8_t> color(8 * 8 * 3);
  for (size_t i = 0; i < color.size(); ++i) color[i] = std::array<uint8_t, 3>{200, 50, 10}[i % 3];
  REQUIRE(stbi_write_jpg((s + "/dog/photo.jpg").c_str(), 8, 8, 3, color.data(), 95));
}

void expect_pattern(const Image& image) {
  REQUIRE(image.pixels.size() == 4u * 4u * 3u);
  int mismatches = 0;
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 3; ++c) mismatches += image.at(y, x, c) != pattern_at(y, x, c);
  CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("image folder: errors name the empty folder, then the bad files") {
  TemporaryDirectory tmp("folder_errors");
  write_tree(tmp.path);
  const fs::path train = tmp.path / "train";
  DatasetOptions options;
  options.image_size = 4;
  const auto open = [&] { open_dataset(tmp.path.string(), "train", options); };

  CHECK(message_has(error_of(open), "class folder " + (train / "bee").string() + " is empty"));
  fs::remove(train / "bee");
  // Files are checked in order (classes sorted, then file names): ant/truncated.jpg comes first.
  const std::string truncated = error_of(open);
  CHECK(message_has(truncated, (train / "ant/truncated.jpg").string() + ": corrupt or truncated JPEG (stb_image: "));
  CHECK(message_has(truncated, "(and 1 more bad files)"));
  fs::remove(train / "ant/truncated.jpg");
  CHECK(message_has(error_of(open), (train / "cat/corrupt.png").string() + ": not a PNG, JPEG, BMP, TGA or GIF image"));
  fs::remove(train / "cat/corrupt.png");
  CHECK(open_dataset(tmp.path.string(), "train", options)->size() == 8);
}

TEST_CASE("image folder: skip_bad keeps every label right, converts channels and resizes") {
  TemporaryDirectory tmp("folder_skip");
  write_tree(tmp.path);
  DatasetOptions options;
  options.image_size = 4;
  options.skip_bad = true;
  std::unique_ptr<Dataset> dataset;
  const std::string warnings = capture_stderr([&] { dataset = open_dataset(tmp.path.string(), "train", options); });

  // One line for the empty folder, one line for the two skipped files, which the first names.
  CHECK(std::count(warnings.begin(), warnings.end(), '\n') == 2);
  CHECK(message_has(warnings, "class folder " + (tmp.path / "train/bee").string() + " is empty"));
  CHECK(message_has(warnings, "skipped 2 of 10 files under " + (tmp.path / "train").string()));
  CHECK(message_has(warnings, "(first: " + (tmp.path / "train/ant/truncated.jpg").string()));

  CHECK(dataset->classes() == std::vector<std::string>{"ant", "bee", "cat", "dog"});
  REQUIRE(dataset->size() == 8);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < dataset->size(); ++i) labels.push_back(dataset->get(i).label);
  // ant: gray.jpg | bee: none | cat: gray.png rgb.png rgba.png | dog: a.bmp b.tga c.gif photo.jpg
  CHECK(labels == std::vector<int64_t>{0, 2, 2, 2, 3, 3, 3, 3});

  // ant/gray.jpg: 32 x 32 gray 100 -> 4 x 4 RGB; shrinking averages 8 x 8 blocks, so JPEG's +-1 stays +-1.
  const Image jpeg_gray = dataset->get(0).image;
  REQUIRE(jpeg_gray.pixels.size() == 4u * 4u * 3u);
  for (int p = 0; p < 16; ++p) {
    CHECK(std::abs(jpeg_gray.pixels[p * 3] - 100) <= 1);
    CHECK(jpeg_gray.pixels[p * 3 + 1] == jpeg_gray.pixels[p * 3]);
    CHECK(jpeg_gray.pixels[p * 3 + 2] == jpeg_gray.pixels[p * 3]);
  }

  // cat/gray.png [[0, 100], [200, 40]] enlarged to 4 x 4, pixel centres at (i + 0.5) / 2 - 0.5 in the source
  // = -0.25, 0.25, 0.75, 1.25 (clamped to the edge): taps (1, 0), (0.75, 0.25), (0.25, 0.75), (0, 1).
  //   rows:    [0, 25, 75, 100], [200, 160, 80, 40]
  //   row 1 = 0.75 * row 0 + 0.25 * row 3 = [50, 58.75, 76.25, 85] -> [50, 59, 76, 85]
  //   row 2 = 0.25 * row 0 + 0.75 * row 3 = [150, 126.25, 78.75, 55] -> [150, 126, 79, 55]
  // (PyTorch: F.interpolate(x, size=4, mode="bilinear", align_corners=False) gives the same.)
  const std::vector<int> enlarged = {0, 25, 75, 100, 50, 59, 76, 85, 150, 126, 79, 55, 200, 160, 80, 40};
  const Image png_gray = dataset->get(1).image;
  REQUIRE(png_gray.pixels.size() == 4u * 4u * 3u);
  for (int p = 0; p < 16; ++p)
    for (int c = 0; c < 3; ++c) CHECK(png_gray.pixels[p * 3 + c] == enlarged[p]);

  expect_pattern(dataset->get(2).image);  // rgb.png
  expect_pattern(dataset->get(3).image);  // rgba.png, alpha dropped
  expect_pattern(dataset->get(4).image);  // a.bmp
  expect_pattern(dataset->get(5).image);  // b.tga
  const Image gif = dataset->get(6).image;  // 1 x 1 white -> 4 x 4 white
  CHECK(std::all_of(gif.pixels.begin(), gif.pixels.end(), [](uint8_t v) { return v == 255; }));
  const Image photo = dataset->get(7).image;  // 8 x 8 (200, 50, 10) -> 4 x 4, JPEG's chroma rounding within 4
  for (int p = 0; p < 16; ++p) {
    CHECK(std::abs(photo.pixels[p * 3] - 200) <= 4);
    CHECK(std::abs(photo.pixels[p * 3 + 1] - 50) <= 4);
    CHECK(std::abs(photo.pixels[p * 3 + 2] - 10) <= 4);
  }
}

TEST_CASE("image folder: files beside the class folders and folders inside them are left out with a warning") {
  // Both were passed over in silence: a layout of train/<class>/<batch>/<image> lost every nested image unseen.
  TemporaryDirectory tmp("folder_left_out");
  const std::vector<uint8_t> gray(4 * 4, 7);
  for (const char* image : {"train/a/one.png", "train/a/deeper/two.png", "train/b/three.png", "train/loose.png"}) {
    fs::create_directories((tmp.path / image).parent_path());
    REQUIRE(stbi_write_png((tmp.path / image).c_str(), 4, 4, 1, gray.data(), 4));
  }
  DatasetOptions options;
  options.image_size = 4;
  std::unique_ptr<Dataset> dataset;
  const std::string warnings = capture_stderr([&] { dataset = open_dataset(tmp.path.string(), "train", options); });
  CHECK(dataset->size() == 2);  // one.png and three.png
  const std::string root = (tmp.path / "train").string();
  CHECK(message_has(warnings, "left out 1 files that are not in a class folder (images must lie in " + root +
                                  "/<class>/; first: " + root + "/loose.png)"));
  CHECK(message_has(warnings, "left out 1 folders inside class folders (images must lie in " + root +
                                  "/<class>/; first: " + root + "/a/deeper)"));
  // A class folder holding only subfolders names them in its error.
  fs::remove(tmp.path / "train/b/three.png");
  fs::create_directories(tmp.path / "train/b/nested");
  CHECK(message_has(error_of([&] { capture_stderr([&] { open_dataset(tmp.path.string(), "train", options); }); }),
                    "class folder " + root + "/b is empty (its subfolders are not read: images must lie in it)"));
}

TEST_CASE("image folder: skip_bad refuses a split left with no image, which scored as loss 0 and accuracy 0%") {
  TemporaryDirectory tmp("folder_skip_all");
  fs::create_directories(tmp.path / "test/a");
  fs::create_directories(tmp.path / "test/b");  // empty: a warning under skip_bad
  { std::ofstream(tmp.path / "test/a/bad.png") << "not an image"; }
  DatasetOptions options;
  options.image_size = 4;
  options.skip_bad = true;
  std::string error;
  capture_stderr([&] { error = error_of([&] { open_dataset(tmp.path.string(), "test", options); }); });
  CHECK(message_has(error, "no readable image under " + (tmp.path / "test").string() +
                               ": all 1 files were skipped as unreadable"));
  fs::remove(tmp.path / "test/a/bad.png");
  capture_stderr([&] { error = error_of([&] { open_dataset(tmp.path.string(), "test", options); }); });
  CHECK(message_has(error, "no readable image under " + (tmp.path / "test").string()));
}

TEST_CASE("image folder: RGB to gray uses the ITU-R 601 luma, gray + alpha and RGBA targets") {
  TemporaryDirectory tmp("folder_gray");
  write_tree(tmp.path);
  DatasetOptions options;
  options.image_size = 4;
  options.skip_bad = true;
  options.channels = 1;
  std::unique_ptr<Dataset> gray;
  capture_stderr([&] { gray = open_dataset(tmp.path.string(), "train", options); });
  REQUIRE(gray->size() == 8);
  const Image rgb = gray->get(2).image;  // cat/rgb.png
  REQUIRE(rgb.channels == 1);
  // 0.299 * 255 = 76.2 -> 76; 0.587 * 255 = 149.7 -> 150; 0.114 * 255 = 29.1 -> 29; white stays 255.
  CHECK(rgb.at(0, 0, 0) == 76);
  CHECK(rgb.at(0, 1, 0) == 150);
  CHECK(rgb.at(0, 2, 0) == 29);
  CHECK(rgb.at(0, 3, 0) == 255);
  // Pixel 5 = (65, 105, 145): (65 * 19595 + 105 * 38470 + 145 * 7471 + 32768) >> 16 = 6,429,088 >> 16 = 98
  // (0.299 * 65 + 0.587 * 105 + 0.114 * 145 = 97.6).
  CHECK(rgb.at(1, 1, 0) == 98);

  options.channels = 4;
  std::unique_ptr<Dataset> rgba;
  capture_stderr([&] { rgba = open_dataset(tmp.path.string(), "train", options); });
  const Image opaque = rgba->get(3).image;  // cat/rgba.png: the stored alpha p * 16 is kept
  CHECK(opaque.at(0, 1, 0) == 0);
  CHECK(opaque.at(0, 1, 1) == 255);
  CHECK(opaque.at(1, 1, 3) == 5 * 16);
  CHECK(rgba->get(2).image.at(1, 1, 3) == 255);  // cat/rgb.png has no alpha: opaque

  options.channels = 2;
  std::unique_ptr<Dataset> gray_alpha;
  capture_stderr([&] { gray_alpha = open_dataset(tmp.path.string(), "train", options); });
  CHECK(gray_alpha->get(3).image.at(1, 1, 0) == 98);
  CHECK(gray_alpha->get(3).image.at(1, 1, 1) == 5 * 16);
}

TEST_CASE("image folder: shrinking averages (antialiased bilinear)") {
  TemporaryDirectory tmp("folder_shrink");
  // A 8 x 8 gray checkerboard of 0 and 200 shrunk to 2 x 2: plain bilinear would sample 4 pixels and alias;
  // the widened triangle averages 0 and 200 to 100 in every output pixel.
  std::vector<uint8_t> board(64);
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) board[y * 8 + x] = (x + y) % 2 ? 200 : 0;
  fs::create_directories(tmp.path / "test/only");
  REQUIRE(stbi_write_png((tmp.path / "test/only/board.png").c_str(), 8, 8, 1, board.data(), 8));
  DatasetOptions options;
  options.image_size = 2;
  options.channels = 1;
  const Image image = open_dataset(tmp.path.string(), "test", options)->get(0).image;
  REQUIRE(image.pixels.size() == 4u);
  for (uint8_t v : image.pixels) CHECK(std::abs(v - 100) <= 1);
}

TEST_CASE("image folder: truncated BMP, TGA and GIF files are refused (stb_image would read zeros)") {
  TemporaryDirectory tmp("folder_truncated");
  const fs::path folder = tmp.path / "train/only";
  fs::create_directories(folder);
  DatasetOptions options;
  options.image_size = 4;
  const auto open = [&] { return open_dataset(tmp.path.string(), "train", options); };
  struct Case {
    const char* name;
    const char* expected;
  };
  for (const Case& c : {Case{"x.bmp", "truncated BMP"}, Case{"x.tga", "truncated TGA"}, Case{"x.gif", "truncated GIF"}}) {
    INFO(c.name);
    const fs::path file = folder / c.name;
    if (file.extension() == ".bmp") REQUIRE(stbi_write_bmp(file.c_str(), 4, 4, 3, pattern(3).data()));
    if (file.extension() == ".tga") REQUIRE(stbi_write_tga(file.c_str(), 4, 4, 3, pattern(3).data()));
    if (file.extension() == ".gif") write_bytes(file, kWhiteGif);
    CHECK(open()->size() == 1);  // complete: loads
    truncate_file(file, file.extension() == ".gif" ? 0.96 : 0.8);  // the GIF loses its last sub-block end and trailer
    CHECK(message_has(error_of([&] { open(); }), file.string() + ": " + c.expected));
    fs::remove(file);
  }
}

TEST_CASE("image folder: limit takes the first files of each class in name order, hidden files are ignored") {
  TemporaryDirectory tmp("folder_limit");
  // Three classes of five 1 x 1 gray PNGs; file k of class c has value 10 * c + k.
  for (int c = 0; c < 3; ++c)
    for (int k = 4; k >= 0; --k) {
      const fs::path file = tmp.path / "train" / ("class" + std::to_string(c)) / ("img" + std::to_string(k) + ".png");
      fs::create_directories(file.parent_path());
      const uint8_t value = static_cast<uint8_t>(10 * c + k);
      REQUIRE(stbi_write_png(file.c_str(), 1, 1, 1, &value, 1));
    }
  write_bytes(tmp.path / "train/class1/.DS_Store", {1, 2, 3});
  DatasetOptions options;
  options.image_size = 1;
  options.channels = 1;
  options.limit = 7;  // 7 / 3 = 2 each, the remainder 1 to class 0
  const auto dataset = open_dataset(tmp.path.string(), "train", options);
  std::vector<int> values;
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < dataset->size(); ++i) {
    values.push_back(dataset->get(i).image.pixels[0]);
    labels.push_back(dataset->get(i).label);
  }
  CHECK(values == std::vector<int>{0, 1, 2, 10, 11, 20, 21});
  CHECK(labels == std::vector<int64_t>{0, 0, 0, 1, 1, 2, 2});
}

TEST_CASE("image folder: many files decode on several threads into file order, skipped files shift nothing") {
  TemporaryDirectory tmp("folder_many");
  // Two classes of 120 1 x 2 gray PNGs: file k of class c holds (k, c); class 1's file 57 is not an image.
  for (int c = 0; c < 2; ++c)
    for (int k = 0; k < 120; ++k) {
      char name[32];
      std::snprintf(name, sizeof name, "%03d.png", k);
      const fs::path file = tmp.path / "test" / ("c" + std::to_string(c)) / name;
      fs::create_directories(file.parent_path());
      const uint8_t values[2] = {static_cast<uint8_t>(k), static_cast<uint8_t>(c)};
      if (c == 1 && k == 57)
        write_bytes(file, {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'});
      else
        REQUIRE(stbi_write_png(file.c_str(), 2, 1, 1, values, 2));
    }
  DatasetOptions options;
  options.image_size = 2;  // 2 x 1 -> 2 x 2: each column keeps its value
  options.channels = 1;
  options.skip_bad = true;
  std::unique_ptr<Dataset> dataset;
  const std::string warnings = capture_stderr([&] { dataset = open_dataset(tmp.path.string(), "test", options); });
  CHECK(message_has(warnings, "skipped 1 of 240 files"));
  CHECK(message_has(warnings, (tmp.path / "test/c1/057.png").string()));
  REQUIRE(dataset->size() == 239);
  int mismatches = 0;
  for (int64_t i = 0; i < 239; ++i) {
    const Example example = dataset->get(i);
    const int64_t c = i < 120 ? 0 : 1;
    const int64_t k = i < 120 ? i : (i - 120 < 57 ? i - 120 : i - 119);
    mismatches += example.label != c || example.image.at(1, 0, 0) != k || example.image.at(1, 1, 0) != c;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("image folder: a JPEG Huffman table with more than 256 codes is refused before stb_image reads it") {
  // stb_image 2.27 would write past its Huffman tables (fixed upstream in 2.28); under UBSan this aborted.
  TemporaryDirectory tmp("folder_huffman");
  const fs::path file = tmp.path / "test/only/overflow.jpg";
  std::vector<uint8_t> bytes = write_gray_jpeg(file);
  const auto dht = bytes.begin() + static_cast<std::ptrdiff_t>(jpeg_marker(bytes, 0xC4));
  REQUIRE(dht != bytes.end());
  // Segment: FF C4, length (2 bytes), class/id, then 16 code counts: 16 * 255 = 4,080 codes.
  std::fill(dht + 5, dht + 21, uint8_t{255});
  write_bytes(file, bytes);
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "test", DatasetOptions()); }),
                    file.string() + ": corrupt JPEG: a Huffman table declares 4080 codes"));
}

TEST_CASE("image folder: a DHT segment declaring length 3 but carrying 16 counts is refused (stb reads them anyway)") {
  // The guard used to check only tables that fit in the declared length; stb 2.27 reads a table's head and
  // codes whatever the length says, so this file made it write past its tables (UBSan: index 257 at stb_image.h:1990).
  TemporaryDirectory tmp("folder_huffman_length");
  const fs::path file = tmp.path / "test/only/short.jpg";
  std::vector<uint8_t> bytes = write_gray_jpeg(file);
  // Right after SOI (FF D8): FF C4, length 3, class/id 0, then 16 counts of 254 = 4,064 codes.
  std::vector<uint8_t> segment = {0xFF, 0xC4, 0x00, 0x03, 0x00};
  segment.insert(segment.end(), 16, 254);
  bytes.insert(bytes.begin() + 2, segment.begin(), segment.end());
  write_bytes(file, bytes);
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "test", DatasetOptions()); }),
                    file.string() + ": corrupt JPEG: a Huffman table declares 4064 codes"));
  // A length that its tables overrun is refused too (stb rejects it after reading them).
  bytes = read_bytes(file);
  bytes[2 + 2] = 0x00, bytes[2 + 3] = 0x05;  // length 5: 3 bytes for a table of 17 + 16 bytes
  std::fill(bytes.begin() + 2 + 5, bytes.begin() + 2 + 5 + 16, uint8_t{1});
  write_bytes(file, bytes);
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "test", DatasetOptions()); }),
                    "a Huffman table segment's length does not match its tables"));
}

TEST_CASE("image folder: the guard also reads JPEGs that open with fill bytes, as stb does (found by fuzzing)") {
  // stb_image takes FF FF FF D8 for a JPEG's start; the guard looked for FF D8 FF only, and let this file through.
  TemporaryDirectory tmp("folder_huffman_fill");
  const fs::path file = tmp.path / "test/only/fill.jpg";
  std::vector<uint8_t> bytes = write_gray_jpeg(file);
  std::vector<uint8_t> segment = {0xFF, 0xC4, 0x00, 0x13, 0x00};
  segment.insert(segment.end(), 16, 254);  // 4,064 codes in a segment that declares room for none of them
  bytes.insert(bytes.begin() + 2, segment.begin(), segment.end());
  bytes.insert(bytes.begin(), {0xFF, 0xFF});
  write_bytes(file, bytes);
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "test", DatasetOptions()); }),
                    file.string() + ": corrupt JPEG: a Huffman table declares 4064 codes"));
}

TEST_CASE("image folder: an image of no pixels is refused (found by fuzzing: stb reads a 0-row BMP)") {
  TemporaryDirectory tmp("folder_empty_image");
  const fs::path file = tmp.path / "test/only/empty.bmp";
  fs::create_directories(file.parent_path());
  const std::vector<uint8_t> rgb(4 * 4 * 3, 9);
  REQUIRE(stbi_write_bmp(file.c_str(), 4, 4, 3, rgb.data()));
  std::vector<uint8_t> bytes = read_bytes(file);
  std::fill(bytes.begin() + 22, bytes.begin() + 26, uint8_t{0});  // the height field of the BITMAPINFOHEADER
  write_bytes(file, bytes);
  // It used to reach the resize with 0 rows (UBSan: a null pointer passed to memcpy).
  CHECK(message_has(error_of([&] { load_image_file(file.string(), 3, 4); }), "BMP of 4 x 0 pixels: no pixels"));
}

TEST_CASE("image folder: a JPEG scan that uses a table no segment defines is refused (found by fuzzing)") {
  // stb 2.27 decodes with whatever its uninitialised table memory holds, and read outside its arrays.
  TemporaryDirectory tmp("folder_jpeg_tables");
  const fs::path file = tmp.path / "test/only/tables.jpg";
  const std::vector<uint8_t> original = write_gray_jpeg(file);
  const size_t sos = jpeg_marker(original, 0xDA);
  REQUIRE(sos + 6 < original.size());
  REQUIRE(original[sos + 4] >= 1);  // the count of components, then the first one's id and (DC table << 4 | AC table)
  for (const auto& [tables, problem] : {std::pair<uint8_t, std::string>{0x20, "uses DC Huffman table 2, which no DHT"},
                                        {0x03, "uses AC Huffman table 3, which no DHT"}}) {
    std::vector<uint8_t> bytes = original;
    bytes[sos + 6] = tables;
    write_bytes(file, bytes);
    CHECK(message_has(error_of([&] { load_image_file(file.string(), 1, 8); }), "corrupt JPEG: a scan " + problem));
  }
  // The frame's quantisation table, pointed at one no DQT defines.
  const size_t sof = jpeg_marker(original, 0xC0);
  std::vector<uint8_t> bytes = original;
  bytes[sof + 4 + 8] = 3;  // precision, height, width, count, then the component's id, sampling and table
  write_bytes(file, bytes);
  CHECK(message_has(error_of([&] { load_image_file(file.string(), 1, 8); }), "uses quantisation table 3, which no DQT"));
  write_bytes(file, original);
  CHECK(load_image_file(file.string(), 1, 8).pixels.size() == 64u);
}

TEST_CASE("image folder: a JPEG with no scan is refused (stb decoded it from uninitialised memory)") {
  // Its frame header, tables and end of image, but no SOS segment: stb_image returned an image whose pixels were
  // whatever its malloc'd component buffers held, and vt predict classified it, differently from run to run.
  TemporaryDirectory tmp("folder_jpeg_no_scan");
  const fs::path file = tmp.path / "test/only/no_scan.jpg";
  const std::vector<uint8_t> original = write_gray_jpeg(file);
  const size_t sos = jpeg_marker(original, 0xDA);
  REQUIRE(sos < original.size());
  std::vector<uint8_t> bytes(original.begin(), original.begin() + static_cast<std::ptrdiff_t>(sos));  // before the scan
  bytes.insert(bytes.end(), {0xFF, 0xD9});  // end of image
  write_bytes(file, bytes);
  CHECK(message_has(error_of([&] { load_image_file(file.string(), 1, 8); }), "corrupt JPEG: no scan (SOS segment)"));
  bytes.resize(bytes.size() - 2);  // and without the end-of-image marker
  write_bytes(file, bytes);
  CHECK(message_has(error_of([&] { load_image_file(file.string(), 1, 8); }), "corrupt JPEG: no scan (SOS segment)"));
  write_bytes(file, original);
  CHECK(load_image_file(file.string(), 1, 8).pixels.size() == 64u);
}

TEST_CASE("image folder: a PNG chunk longer than the file is refused before stb allocates for it (found by fuzzing)") {
  TemporaryDirectory tmp("folder_png_chunk");
  const fs::path file = tmp.path / "test/only/chunk.png";
  fs::create_directories(file.parent_path());
  const std::vector<uint8_t> gray(4 * 4, 7);
  REQUIRE(stbi_write_png(file.c_str(), 4, 4, 1, gray.data(), 4));
  std::vector<uint8_t> bytes = read_bytes(file);
  // The IDAT chunk follows the 8-byte signature and the 25-byte IHDR chunk; declare it 2^31 - 1 bytes long.
  REQUIRE(std::string(bytes.begin() + 37, bytes.begin() + 41) == "IDAT");
  bytes[33] = 0x7f, bytes[34] = bytes[35] = bytes[36] = 0xff;
  write_bytes(file, bytes);
  CHECK(message_has(error_of([&] { load_image_file(file.string(), 1, 4); }),
                    "truncated PNG: chunk IDAT declares 2147483647 bytes"));
}

TEST_CASE("image folder: a top-down BMP (negative height) counts its pixels too (found by fuzzing)") {
  TemporaryDirectory tmp("folder_top_down");
  const fs::path file = tmp.path / "top_down.bmp";
  const std::vector<uint8_t> rgb(4 * 4 * 3, 9);
  REQUIRE(stbi_write_bmp(file.c_str(), 4, 4, 3, rgb.data()));
  std::vector<uint8_t> bytes = read_bytes(file);
  for (int i = 0; i < 4; ++i) bytes[22 + i] = static_cast<uint8_t>(static_cast<uint32_t>(-4) >> (8 * i));  // height -4
  write_bytes(file, bytes);
  CHECK(load_image_file(file.string(), 3, 4).pixels.size() == 48u);
  // stb reports the height as -4, and 4 x -4 pixels slipped under any limit.
  CHECK(message_has(error_of([&] { load_image_file(file.string(), 3, 4, 15); }), "4 x 4 pixels, more than the limit of 15"));
}

TEST_CASE("image folder: a BMP header whose pixel data overflows 64 bits is truncated, not undefined (found by fuzzing)") {
  TemporaryDirectory tmp("folder_bmp_overflow");
  const fs::path file = tmp.path / "huge.bmp";
  const std::vector<uint8_t> rgb(4 * 4 * 3, 9);
  REQUIRE(stbi_write_bmp(file.c_str(), 4, 4, 3, rgb.data()));
  std::vector<uint8_t> bytes = read_bytes(file);
  // width 2^31 - 1 and height 2^31 - 1 at 65535 bits per pixel: (65535 * (2^31 - 1) + 31) / 32 * 4 bytes a row
  // is about 2^44, times 2^31 rows is past 2^63 (UBSan: signed overflow in the truncation check).
  for (int field : {18, 22}) bytes[field] = bytes[field + 1] = bytes[field + 2] = 0xff, bytes[field + 3] = 0x7f;
  bytes[28] = bytes[29] = 0xff;
  write_bytes(file, bytes);
  CHECK(message_has(error_of([&] { load_image_file(file.string(), 3, 4); }),
                    "truncated BMP: its header declares more pixel data than any file holds"));
}

TEST_CASE("image folder: images over the pixel limit are refused from their header, before decoding") {
  TemporaryDirectory tmp("folder_bomb");
  const fs::path file = tmp.path / "test/only/bomb.png";
  fs::create_directories(file.parent_path());
  const std::vector<uint8_t> gray(4 * 4, 7);
  REQUIRE(stbi_write_png(file.c_str(), 4, 4, 1, gray.data(), 4));
  // A PNG that declares 16000 x 16000 pixels in its IHDR (bytes 16-23, big-endian; stb skips the CRC).
  std::vector<uint8_t> bytes = read_bytes(file);
  for (int field : {16, 20}) {
    bytes[field] = 0, bytes[field + 1] = 0, bytes[field + 2] = 16000 >> 8, bytes[field + 3] = 16000 & 255;
  }
  write_bytes(file, bytes);
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "test", DatasetOptions()); }),
                    file.string() + ": PNG of 16000 x 16000 pixels, more than the limit of 64000000"));
  // 2^30 x 2^30 (sides past stb's 2^24) read as "corrupt or truncated PNG (stb_image: unknown image type)".
  for (int field : {16, 20}) bytes[field] = 64, bytes[field + 1] = 0, bytes[field + 2] = 0, bytes[field + 3] = 0;
  write_bytes(file, bytes);
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "test", DatasetOptions()); }),
                    "PNG of 1073741824 x 1073741824 pixels, more than the limit of 64000000"));
  for (int field : {16, 20}) bytes[field] = bytes[field + 1] = bytes[field + 2] = bytes[field + 3] = 255;
  write_bytes(file, bytes);  // (2^32 - 1)^2 pixels: the product must not overflow
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "test", DatasetOptions()); }),
                    "PNG of 4294967295 x 4294967295 pixels, more than the limit"));
  // The limit is the caller's: a 4 x 4 image passes by default and fails a limit of 15 pixels.
  REQUIRE(stbi_write_png(file.c_str(), 4, 4, 1, gray.data(), 4));
  CHECK(load_image_file(file.string(), 1, 4).pixels == gray);
  CHECK(message_has(error_of([&] { load_image_file(file.string(), 1, 4, 15); }), "4 x 4 pixels, more than the limit of 15"));
}

TEST_CASE("image folder: a FIFO and a symlink loop are bad files, not a hang or a failed run") {
  TemporaryDirectory tmp("folder_special");
  const fs::path only = tmp.path / "test/only";
  fs::create_directories(only);
  const std::vector<uint8_t> gray(4 * 4, 7);
  REQUIRE(stbi_write_png((only / "good.png").c_str(), 4, 4, 1, gray.data(), 4));
  REQUIRE(::mkfifo((only / "pipe.png").c_str(), 0600) == 0);  // opening it for reading used to block forever
  fs::create_symlink(only / "loop.png", only / "loop.png");
  DatasetOptions options;
  options.image_size = 4;
  const std::string error = error_of([&] { open_dataset(tmp.path.string(), "test", options); });
  CHECK(message_has(error, (only / "loop.png").string() + ": cannot open the file: Too many levels of symbolic links"));
  CHECK(message_has(error, "(and 1 more bad files)"));
  options.skip_bad = true;
  std::unique_ptr<Dataset> dataset;
  const std::string warning = capture_stderr([&] { dataset = open_dataset(tmp.path.string(), "test", options); });
  CHECK(dataset->size() == 1);
  CHECK(message_has(warning, "skipped 2 of 3 files"));
  CHECK(message_has(error_of([&] { load_image_file((only / "pipe.png").string(), 1, 4); }), "not a regular file"));
}

TEST_CASE("image folder: test/ classes map onto the training classes by name, an unknown class fails") {
  TemporaryDirectory tmp("folder_classes");
  const std::vector<uint8_t> gray(4 * 4, 7);
  for (const char* path : {"train/ant/a.png", "train/bee/a.png", "train/cat/a.png", "test/ant/a.png", "test/cat/a.png"}) {
    fs::create_directories((tmp.path / path).parent_path());
    REQUIRE(stbi_write_png((tmp.path / path).c_str(), 4, 4, 1, gray.data(), 4));
  }
  DatasetOptions options;
  options.image_size = 4;
  const auto train = open_dataset(tmp.path.string(), "train", options);
  // On its own test/ has classes ant (0) and cat (1); in the training label space cat is 2.
  CHECK(open_dataset(tmp.path.string(), "test", options)->get(1).label == 1);
  options.classes = train->classes();
  const auto test = open_dataset(tmp.path.string(), "test", options);
  CHECK(test->classes() == std::vector<std::string>{"ant", "bee", "cat"});
  CHECK(test->get(0).label == 0);
  CHECK(test->get(1).label == 2);
  fs::create_directories(tmp.path / "test/dog");
  REQUIRE(stbi_write_png((tmp.path / "test/dog/a.png").c_str(), 4, 4, 1, gray.data(), 4));
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "test", options); }),
                    "class 'dog' in " + (tmp.path / "test").string() + " is not one of the 3 classes of the model or "
                    "training set (ant, bee, cat)"));
  // CIFAR-10 binary files are matched by name too.
  write_bytes(tmp.path / "bin/test_batch.bin", cifar_records({3}));
  options.classes = {"cat", "airplane", "automobile", "bird", "deer", "dog", "frog", "horse", "ship", "truck"};
  CHECK(open_dataset((tmp.path / "bin").string(), "test", options)->get(0).label == 0);
}

TEST_CASE("image folder: a class folder name that is not UTF-8 fails when the data is opened") {
  TemporaryDirectory tmp("folder_utf8");
  const fs::path folder = tmp.path / "train" / "caf\xe9";  // Latin-1, not UTF-8
  fs::create_directories(folder);
  const std::vector<uint8_t> gray(4 * 4, 7);
  REQUIRE(stbi_write_png((folder / "a.png").c_str(), 4, 4, 1, gray.data(), 4));
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "train", DatasetOptions()); }),
                    "train/caf\\xe9' has a name that is not valid UTF-8"));
  // A newline is valid UTF-8, but a class name holding one broke the confusion matrix and vt predict's lines.
  fs::rename(folder, tmp.path / "train" / "two\nlines");
  CHECK(message_has(error_of([&] { open_dataset(tmp.path.string(), "train", DatasetOptions()); }),
                    "train/two\\x0alines' has a control character in its name"));
  // A file where the data folder should be.
  write_bytes(tmp.path / "file", {1, 2, 3});
  CHECK(message_has(error_of([&] { open_dataset((tmp.path / "file").string(), "train", DatasetOptions()); }),
                    "data directory " + (tmp.path / "file").string() + " is a file, not a folder"));
}
