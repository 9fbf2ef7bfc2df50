// Dataset readers: CIFAR-10 binary batches and image folders. Conventions: a split is read and decoded once,
// into memory, at the model's channel count and size (CIFAR-10's 50,000 training images take 150 MB), so
// epochs cost no decoding; image folders are decoded on all cores, hidden files (".*") are ignored, and
// `limit` picks files before decoding (a skipped bad file is not replaced). Alpha is dropped (as PIL's
// convert("RGB")), RGB -> gray uses PIL's ITU-R 601 luma, and resizing is PIL's bilinear (a triangle filter
// widened when shrinking, so downsampling averages instead of aliasing). Nothing is printed but warnings.
#include <fcntl.h>
#include <stb/stb_image.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <sstream>
#include <thread>

#include "autograd/json.h"
#include "autograd/random.h"
#include "autograd/text.h"
#include "autograd/tensor.h"
#include "datasets/dataset.h"

namespace vt::data {
namespace {

namespace fs = std::filesystem;

const char* const kOp = "open_dataset";

// Every example of a split, decoded: pixels (N, S, S, C) uint8 and labels (N).
class InMemoryDataset final : public Dataset {
 public:
  InMemoryDataset(std::vector<std::string> classes, int channels, int image_size)
      : classes_(std::move(classes)), channels_(channels), image_size_(image_size) {}

  int64_t size() const override { return static_cast<int64_t>(labels.size()); }
  Example get(int64_t index) const override {
    if (index < 0 || index >= size())
      fail("Dataset::get", "index " + std::to_string(index) + " out of range for " + std::to_string(size()) +
                               " examples");
    Example example;
    example.image = Image(image_size_, image_size_, channels_);
    const size_t bytes = example.image.pixels.size();
    std::memcpy(example.image.pixels.data(), pixels.data() + static_cast<size_t>(index) * bytes, bytes);
    example.label = labels[index];
    return example;
  }
  const std::vector<std::string>& classes() const override { return classes_; }
  int channels() const override { return channels_; }
  int image_size() const override { return image_size_; }
  size_t image_bytes() const { return static_cast<size_t>(image_size_) * image_size_ * channels_; }

  std::vector<uint8_t> pixels;  // (N, S, S, C)
  std::vector<int64_t> labels;  // (N)

 private:
  std::vector<std::string> classes_;
  int channels_, image_size_;
};

// ---- pixel conversion ----

// PIL's L = R * 299/1000 + G * 587/1000 + B * 114/1000 in 16-bit fixed point (the weights sum to 65536,
// so white stays 255), rounded.
uint8_t luma(uint8_t r, uint8_t g, uint8_t b) {
  return static_cast<uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

// (H, W, from) -> (H, W, to) for 1 (gray), 2 (gray + alpha), 3 (RGB), 4 (RGBA). Alpha is dropped when the
// target has none and set opaque when the source has none.
void convert_channels(uint8_t* destination, const uint8_t* source, int64_t pixels, int from, int to) {
  if (from == to) {
    std::memcpy(destination, source, static_cast<size_t>(pixels) * to);
    return;
  }
  for (int64_t p = 0; p < pixels; ++p) {
    const uint8_t* s = source + p * from;
    uint8_t* d = destination + p * to;
    const bool color = from >= 3;
    const uint8_t r = s[0], g = color ? s[1] : s[0], b = color ? s[2] : s[0];
    const uint8_t alpha = (from == 2 || from == 4) ? s[from - 1] : 255;
    switch (to) {
      case 1: d[0] = color ? luma(r, g, b) : r; break;
      case 2: d[0] = color ? luma(r, g, b) : r, d[1] = alpha; break;
      case 3: d[0] = r, d[1] = g, d[2] = b; break;
      case 4: d[0] = r, d[1] = g, d[2] = b, d[3] = alpha; break;
    }
  }
}

// Source taps of each output pixel along one axis. Pixel centres sit at i + 0.5 (PyTorch's
// align_corners=False); the triangle has radius 1 source pixel when enlarging (plain bilinear) and radius
// `in / out` when shrinking, so that every source pixel contributes (PIL's antialiased bilinear).
struct AxisTaps {
  std::vector<int> first;       // (out)
  std::vector<int> count;       // (out)
  std::vector<float> weights;   // (out, max_taps), each row sums to 1
  int max_taps = 0;
};

AxisTaps triangle_taps(int in, int out) {
  AxisTaps taps;
  const double scale = static_cast<double>(in) / out;
  const double radius = std::max(scale, 1.0);
  taps.max_taps = static_cast<int>(std::ceil(radius)) * 2 + 3;  // covers [floor(c - r), ceil(c + r)]
  taps.first.resize(out);
  taps.count.resize(out);
  taps.weights.assign(static_cast<size_t>(out) * taps.max_taps, 0.0f);
  for (int i = 0; i < out; ++i) {
    const double center = (i + 0.5) * scale;
    const int lo = std::max(0, static_cast<int>(std::floor(center - radius)));
    const int hi = std::min(in, static_cast<int>(std::ceil(center + radius)) + 1);
    float* weights = &taps.weights[static_cast<size_t>(i) * taps.max_taps];
    const auto triangle = [&](int j) { return std::max(0.0, 1.0 - std::abs((j + 0.5 - center) / radius)); };
    double total = 0;
    for (int j = lo; j < hi; ++j) total += triangle(j);
    // Near the borders part of the triangle falls outside the image: renormalising clamps to the edge.
    for (int j = lo; j < hi; ++j) weights[j - lo] = static_cast<float>(triangle(j) / total);
    taps.first[i] = lo;
    taps.count[i] = hi - lo;
  }
  return taps;
}

// (H, W, C) -> (out_height, out_width, C), separable: rows first into float, then columns, rounded once.
void resize_bilinear(uint8_t* destination, const uint8_t* source, int height, int width, int channels,
                     int out_height, int out_width) {
  const AxisTaps columns = triangle_taps(width, out_width);
  const AxisTaps rows = triangle_taps(height, out_height);
  std::vector<float> wide(static_cast<size_t>(height) * out_width * channels);  // (H, out_width, C)
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < out_width; ++x)
      for (int c = 0; c < channels; ++c) {
        float sum = 0;
        const float* w = &columns.weights[static_cast<size_t>(x) * columns.max_taps];
        for (int k = 0; k < columns.count[x]; ++k)
          sum += w[k] * source[(static_cast<size_t>(y) * width + columns.first[x] + k) * channels + c];
        wide[(static_cast<size_t>(y) * out_width + x) * channels + c] = sum;
      }
  for (int y = 0; y < out_height; ++y)
    for (int x = 0; x < out_width; ++x)
      for (int c = 0; c < channels; ++c) {
        float sum = 0;
        const float* w = &rows.weights[static_cast<size_t>(y) * rows.max_taps];
        for (int k = 0; k < rows.count[y]; ++k)
          sum += w[k] * wide[(static_cast<size_t>(rows.first[y] + k) * out_width + x) * channels + c];
        destination[(static_cast<size_t>(y) * out_width + x) * channels + c] =
            static_cast<uint8_t>(std::clamp(std::floor(sum + 0.5f), 0.0f, 255.0f));
      }
}

// Writes an (H, W, from) image as (S, S, channels) into `destination`: channels converted, then resized.
void conform(uint8_t* destination, const uint8_t* source, int height, int width, int from,
             const DatasetOptions& options) {
  const int side = options.image_size, to = options.channels;
  if (height == side && width == side) {
    convert_channels(destination, source, static_cast<int64_t>(height) * width, from, to);
    return;
  }
  std::vector<uint8_t> converted(static_cast<size_t>(height) * width * to);
  convert_channels(converted.data(), source, static_cast<int64_t>(height) * width, from, to);
  resize_bilinear(destination, converted.data(), height, width, to, side, side);
}

// Per-class quotas for options.limit: limit / classes each, the remainder to the first classes.
std::vector<int64_t> class_quotas(int64_t limit, size_t classes) {
  std::vector<int64_t> quotas(classes, std::numeric_limits<int64_t>::max());
  if (limit <= 0) return quotas;
  const int64_t n = static_cast<int64_t>(classes);
  for (int64_t c = 0; c < n; ++c) quotas[c] = limit / n + (c < limit % n ? 1 : 0);
  return quotas;
}

// Reads a whole regular file; false (with the reason) when it cannot be opened or read, or is not a regular
// file: opened non-blocking and checked before reading, so a FIFO or device named *.png cannot hang the reader.
bool read_whole_file(const fs::path& path, std::vector<uint8_t>& bytes, std::string& error) {
  const int descriptor = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (descriptor < 0) {
    error = std::string("cannot open the file: ") + std::strerror(errno);
    return false;
  }
  struct stat status;
  bool ok = ::fstat(descriptor, &status) == 0;
  if (!ok) error = std::string("cannot stat the file: ") + std::strerror(errno);
  if (ok && !S_ISREG(status.st_mode)) ok = false, error = "not a regular file";
  if (ok && status.st_size > std::numeric_limits<int>::max()) ok = false, error = "file too large (over 2 GB)";
  if (ok) {
    bytes.resize(static_cast<size_t>(status.st_size));
    for (size_t done = 0; ok && done < bytes.size();) {
      const ssize_t got = ::read(descriptor, bytes.data() + done, bytes.size() - done);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) ok = false, error = got == 0 ? "the file shrank while it was read" : "cannot read the file: " + std::string(std::strerror(errno));
      else done += static_cast<size_t>(got);
    }
  }
  ::close(descriptor);
  return ok;
}

// A name as it can be printed: bytes outside printable ASCII as \xNN.
std::string printable(const std::string& name) {
  std::string out;
  for (const char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f) {
      out += c;
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    }
  }
  return out;
}

// The label of class `name` in options.classes (the label space), or its position among the split's own
// sorted classes when no label space is given.
int64_t label_of(const std::string& name, size_t own_index, const DatasetOptions& options, const std::string& where) {
  if (options.classes.empty()) return static_cast<int64_t>(own_index);
  const auto found = std::find(options.classes.begin(), options.classes.end(), name);
  if (found == options.classes.end()) {
    std::string known;
    for (const std::string& c : options.classes) known += (known.empty() ? "" : ", ") + printable(c);
    fail(kOp, "class '" + printable(name) + "' in " + where + " is not one of the " +
                  std::to_string(options.classes.size()) + " classes of the model or training set (" + known + ")");
  }
  return found - options.classes.begin();
}

std::string with_size(const fs::path& path, size_t bytes) {
  return path.string() + " (" + std::to_string(bytes) + " bytes)";
}

// ---- CIFAR-10 binary ----

constexpr int kCifarSide = 32;
constexpr size_t kCifarPlane = kCifarSide * kCifarSide;
constexpr size_t kCifarRecord = 1 + 3 * kCifarPlane;  // label byte, then the R, G and B planes (row-major)
const std::vector<std::string> kCifarClasses = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                "dog",      "frog",       "horse", "ship", "truck"};

fs::path find_cifar_dir(const fs::path& dir) {
  for (const fs::path& candidate : {dir, dir / "cifar-10-batches-bin"})
    if (fs::exists(candidate / "data_batch_1.bin") || fs::exists(candidate / "test_batch.bin")) return candidate;
  return {};
}

std::vector<std::string> cifar_class_names(const fs::path& dir) {
  const fs::path meta = dir / "batches.meta.txt";
  if (!fs::exists(meta)) return kCifarClasses;
  std::vector<uint8_t> bytes;  // read as the images are: a FIFO or /dev/zero named batches.meta.txt is refused
  std::string error;
  if (!read_whole_file(meta, bytes, error)) fail(kOp, meta.string() + ": " + error);
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  std::vector<std::string> names;
  for (std::string line; std::getline(in, line);) {
    const auto not_space = [](unsigned char ch) { return !std::isspace(ch); };
    line.erase(std::find_if(line.rbegin(), line.rend(), not_space).base(), line.end());
    line.erase(line.begin(), std::find_if(line.begin(), line.end(), not_space));
    if (!line.empty()) names.push_back(line);
  }
  if (names.size() != kCifarClasses.size())
    fail(kOp, meta.string() + " names " + std::to_string(names.size()) + " classes, CIFAR-10 has 10");
  return names;
}

std::unique_ptr<Dataset> open_cifar_binary(const fs::path& dir, const std::string& split,
                                           const DatasetOptions& options) {
  std::vector<fs::path> files;
  if (split == "train")
    for (int b = 1; b <= 5; ++b) files.push_back(dir / ("data_batch_" + std::to_string(b) + ".bin"));
  else
    files.push_back(dir / "test_batch.bin");

  const std::vector<std::string> names = cifar_class_names(dir);
  std::vector<int64_t> labels(names.size());  // the label of each of the file's class indices
  for (size_t c = 0; c < names.size(); ++c) labels[c] = label_of(names[c], c, options, (dir / "batches.meta.txt").string());
  auto dataset = std::make_unique<InMemoryDataset>(options.classes.empty() ? names : options.classes, options.channels,
                                                   options.image_size);
  std::vector<int64_t> quotas = class_quotas(options.limit, kCifarClasses.size());
  const bool same_layout = options.channels == 3 && options.image_size == kCifarSide;
  std::vector<uint8_t> bytes, interleaved(3 * kCifarPlane);  // (32, 32, 3)
  for (const fs::path& file : files) {
    std::string error;
    if (!fs::exists(file)) fail(kOp, "missing CIFAR-10 file " + file.string());
    if (!read_whole_file(file, bytes, error)) fail(kOp, file.string() + ": " + error);
    if (bytes.empty() || bytes.size() % kCifarRecord != 0)
      fail(kOp, "truncated or corrupt CIFAR-10 file " + with_size(file, bytes.size()) +
                    ": not a whole number of 3,073-byte records");
    const size_t records = bytes.size() / kCifarRecord;
    for (size_t r = 0; r < records; ++r) {
      const uint8_t* record = bytes.data() + r * kCifarRecord;
      if (record[0] >= kCifarClasses.size())
        fail(kOp, file.string() + ": record " + std::to_string(r) + " has label " + std::to_string(record[0]) +
                      ", CIFAR-10 labels are 0..9");
      if (quotas[record[0]] == 0) continue;
      --quotas[record[0]];
      for (size_t p = 0; p < kCifarPlane; ++p)
        for (size_t c = 0; c < 3; ++c) interleaved[p * 3 + c] = record[1 + c * kCifarPlane + p];
      const size_t offset = dataset->pixels.size();
      dataset->pixels.resize(offset + dataset->image_bytes());
      if (same_layout)
        std::memcpy(dataset->pixels.data() + offset, interleaved.data(), interleaved.size());
      else
        conform(dataset->pixels.data() + offset, interleaved.data(), kCifarSide, kCifarSide, 3, options);
      dataset->labels.push_back(labels[record[0]]);
    }
  }
  return dataset;
}

// ---- image folders ----

bool hidden(const fs::path& path) { return path.filename().string().starts_with('.'); }

uint32_t little_endian(const std::vector<uint8_t>& bytes, size_t at, int count) {
  uint32_t value = 0;
  for (int i = count - 1; i >= 0; --i) value = value << 8 | bytes[at + i];
  return value;
}

enum class Format { png, jpeg, bmp, gif, unknown };

// Where the marker segments of a JPEG begin, just after its start-of-image marker, as stb_image finds it:
// stb takes any file that opens with 0xFF, more 0xFF fill bytes, then 0xD8 for a JPEG (and tries JPEG first).
// 0 when stb would not read the file as a JPEG.
size_t jpeg_segments_start(const std::vector<uint8_t>& bytes) {
  size_t position = 0;
  while (position < bytes.size() && bytes[position] == 0xFF) ++position;
  return position > 0 && position < bytes.size() && bytes[position] == 0xD8 ? position + 1 : 0;
}

Format sniff(const std::vector<uint8_t>& bytes) {
  const auto starts = [&](std::initializer_list<uint8_t> magic) {
    return bytes.size() >= magic.size() && std::equal(magic.begin(), magic.end(), bytes.begin());
  };
  if (starts({0x89, 'P', 'N', 'G'})) return Format::png;
  if (jpeg_segments_start(bytes) > 0) return Format::jpeg;
  if (starts({'B', 'M'})) return Format::bmp;
  if (starts({'G', 'I', 'F', '8'})) return Format::gif;
  return Format::unknown;  // TGA has no signature
}

const char* format_name(Format format) {
  switch (format) {
    case Format::png: return "PNG";
    case Format::jpeg: return "JPEG";
    case Format::bmp: return "BMP";
    case Format::gif: return "GIF";
    case Format::unknown: break;
  }
  return "TGA";
}

// stb_image fails on truncated PNG ("outofdata") and JPEG ("expected marker") files, but decodes truncated
// BMP, TGA and GIF files as if the missing bytes were zeros. These walk the file's own structure and
// return why it is incomplete, or "" when it holds all the pixel data it declares.
std::string bmp_truncation(const std::vector<uint8_t>& bytes) {
  if (bytes.size() < 30) return "truncated BMP header";
  const bool core_header = little_endian(bytes, 14, 4) == 12;  // OS/2 BITMAPCOREHEADER: 16-bit sizes
  if (!core_header && bytes.size() < 34) return "truncated BMP header";
  // Sizes are signed 32-bit (a negative height is a top-down image); both arms in int64_t, since a ?: of an
  // unsigned and a signed 32-bit value is unsigned, which read top-down images as 4 billion rows.
  const int64_t width = core_header ? int64_t{little_endian(bytes, 18, 2)} : int64_t{static_cast<int32_t>(little_endian(bytes, 18, 4))};
  const int64_t height = core_header ? int64_t{little_endian(bytes, 20, 2)} : int64_t{static_cast<int32_t>(little_endian(bytes, 22, 4))};
  const int64_t bits = little_endian(bytes, core_header ? 24 : 28, 2);
  const uint32_t compression = core_header ? 0 : little_endian(bytes, 30, 4);
  if (compression == 1 || compression == 2) return "";  // run-length encoded: no fixed size to check
  const int64_t row_bytes = (bits * std::abs(width) + 31) / 32 * 4;  // rows pad to 4 bytes
  // A hostile header can declare 2^31 rows of 2^47 bytes: a product past int64 is certainly truncated.
  int64_t pixel_bytes = 0;
  if (__builtin_mul_overflow(row_bytes, std::abs(height), &pixel_bytes))
    return "truncated BMP: its header declares more pixel data than any file holds";
  const int64_t needed = little_endian(bytes, 10, 4) + pixel_bytes;
  if (static_cast<int64_t>(bytes.size()) < needed)
    return "truncated BMP: " + std::to_string(bytes.size()) + " bytes, its pixel data needs " + std::to_string(needed);
  return "";
}

std::string tga_truncation(const std::vector<uint8_t>& bytes) {
  if (bytes.size() < 18) return "truncated TGA header";
  const int type = bytes[2];
  const int64_t pixel_bytes = (bytes[16] + 7) / 8;
  const int64_t pixels = static_cast<int64_t>(little_endian(bytes, 12, 2)) * little_endian(bytes, 14, 2);
  int64_t position = 18 + bytes[0] + (bytes[1] ? little_endian(bytes, 5, 2) * ((bytes[7] + 7) / 8) : 0);
  if (type >= 9 && type <= 11) {  // run-length packets: a header byte, then one pixel (a run) or n raw pixels
    for (int64_t count = 0; count < pixels;) {
      if (position >= static_cast<int64_t>(bytes.size())) return "truncated TGA: the run-length data ends early";
      const uint8_t header = bytes[position++];
      const int64_t n = (header & 127) + 1;
      position += (header & 128) ? pixel_bytes : n * pixel_bytes;
      count += n;
    }
  } else {
    position += pixels * pixel_bytes;
  }
  if (position > static_cast<int64_t>(bytes.size()))
    return "truncated TGA: " + std::to_string(bytes.size()) + " bytes, its pixel data needs " + std::to_string(position);
  return "";
}

std::string gif_truncation(const std::vector<uint8_t>& bytes) {
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (size < 13) return "truncated GIF header";
  const auto color_table = [](uint8_t packed) { return (packed & 0x80) ? 3 << ((packed & 7) + 1) : 0; };
  int64_t position = 13 + color_table(bytes[10]);
  const auto skip_sub_blocks = [&] {
    while (position < size) {
      const uint8_t length = bytes[position++];
      if (length == 0) return true;
      position += length;
    }
    return false;
  };
  while (position < size) {
    const uint8_t block = bytes[position++];
    if (block == 0x3B) return "";  // the trailer: the file is complete
    if (block == 0x21) {           // extension: a label byte, then sub-blocks
      ++position;
      if (!skip_sub_blocks()) break;
    } else if (block == 0x2C) {  // image: a 9-byte descriptor, a local color table, the LZW code size, sub-blocks
      if (position + 9 > size) break;
      position += 9 + color_table(bytes[position + 8]) + 1;
      if (!skip_sub_blocks()) break;
    } else {
      return "corrupt GIF: unknown block type " + std::to_string(block);
    }
  }
  return "truncated GIF: no trailer";
}

// Debian 12's stb_image 2.27 trusts a JPEG's tables in ways that read or write outside its arrays (2.28 fixed
// some). This walks the marker segments as stb does and refuses a file it would misread:
//  - a Huffman table declaring more than 256 codes: stb writes past its tables. stb reads a DHT segment table
//    by table for as long as the declared length has bytes left, each table's head and codes whatever that
//    length says (past the segment, and past the end of the file, where it reads zeros), and so does the walk;
//  - a table of 256 codes all at most 9 bits long: stb's lookup table marks "not here" with symbol 255, so the
//    last symbol is looked up again and read at a negative index (found by fuzzing);
//  - a scan that uses a Huffman or quantisation table no segment has defined: stb decodes with its
//    uninitialised memory, and reads out of bounds (found by fuzzing);
//  - segments stb rejects anyway (a bad table header, a DHT length its tables do not fill exactly);
//  - no scan before the end: stb "decodes" the frame from component buffers it never wrote, so the pixels
//    came from uninitialised memory (a frame header and nothing else was classified, differently each run).
// Entropy-coded data holds 0xFF only as FF 00 or a restart marker, and stb stops at the first other marker
// there, so every marker stb acts on is one this walk visits.
class JpegWalk {
 public:
  explicit JpegWalk(const std::vector<uint8_t>& bytes) : bytes_(bytes) {}

  std::string defect() {
    for (size_t position = jpeg_segments_start(bytes_); position + 4 <= bytes_.size();) {
      const uint8_t marker = bytes_[position + 1];
      if (bytes_[position] != 0xFF || marker == 0xFF) {  // entropy-coded data, or a fill byte
        ++position;
        continue;
      }
      if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // stuffing, TEM, RSTn
        position += 2;
        continue;
      }
      if (marker == 0xD9) break;  // end of image
      if (marker == 0xDA) scanned_ = true;
      const size_t length = static_cast<size_t>(at(position + 2)) << 8 | at(position + 3);
      std::string problem;
      if (marker == 0xC4) problem = huffman_tables(position, length);
      else if (marker == 0xDB) problem = quantisation_tables(position + 4, length);
      else if (marker == 0xC0 || marker == 0xC1 || marker == 0xC2) frame(position + 4, marker == 0xC2);
      else if (marker == 0xDA) problem = scan(position + 4);
      if (!problem.empty()) return "corrupt JPEG: " + problem;
      if (marker != 0xC4) position += 2 + length;  // DHT moved position on by what stb read
    }
    if (!scanned_) return "corrupt JPEG: no scan (SOS segment) before the end of the image";
    return "";
  }

 private:
  int at(size_t i) const { return i < bytes_.size() ? bytes_[i] : 0; }  // stb reads 0 past the end

  // DHT, as stb 2.27's stbi__process_marker reads it: tables of a class/id byte, 16 code counts and the codes.
  std::string huffman_tables(size_t& position, size_t length) {
    int64_t remaining = static_cast<int64_t>(length) - 2;
    size_t table = position + 4;
    while (remaining > 0) {
      const int class_and_id = at(table);
      if ((class_and_id >> 4) > 1 || (class_and_id & 15) > 3) return "bad Huffman table header";
      int codes = 0, longest = 0;
      for (int bits = 1; bits <= 16; ++bits) {
        codes += at(table + bits);
        if (at(table + bits) > 0) longest = bits;
      }
      if (codes > 256) return "a Huffman table declares " + std::to_string(codes) + " codes, at most 256 exist";
      if (codes == 256 && longest <= 9) return "a Huffman table of 256 codes of at most 9 bits, which stb_image 2.27 misreads";
      huffman_defined_[class_and_id >> 4][class_and_id & 15] = true;
      remaining -= 17 + codes;
      table += 17 + static_cast<size_t>(codes);
    }
    if (remaining != 0) return "a Huffman table segment's length does not match its tables";
    position = table;
    return "";
  }

  // DQT: tables of a precision/id byte and 64 entries of 1 or 2 bytes.
  std::string quantisation_tables(size_t table, size_t length) {
    for (int64_t remaining = static_cast<int64_t>(length) - 2; remaining > 0;) {
      const int precision = at(table) >> 4, id = at(table) & 15;
      if (precision > 1 || id > 3) return "bad quantisation table header";
      quantisation_defined_[id] = true;
      const int64_t table_bytes = 1 + 64 * (precision + 1);
      remaining -= table_bytes;
      table += static_cast<size_t>(table_bytes);
    }
    return "";
  }

  // SOF0, SOF1, SOF2: precision, height, width, then each component's id, sampling and quantisation table.
  void frame(size_t at_precision, bool progressive) {
    progressive_ = progressive;
    components_.clear();
    const int count = at(at_precision + 5);
    for (int c = 0; c < count; ++c) components_.push_back({at(at_precision + 6 + 3 * c), at(at_precision + 8 + 3 * c)});
  }

  // SOS: each component's id and its DC and AC Huffman tables, then the spectral range and approximation bits.
  // A sequential scan decodes with both tables; a progressive DC scan with the DC table on its first pass only,
  // and an AC scan with the AC table (stbi__jpeg_decode_block and its progressive twins).
  std::string scan(size_t at_count) {
    const int count = at(at_count);
    const size_t after = at_count + 1 + 2 * static_cast<size_t>(count);
    const int spectral_start = at(after), high_bit = at(after + 2) >> 4;
    for (int c = 0; c < count; ++c) {
      const int id = at(at_count + 1 + 2 * c), tables = at(at_count + 2 + 2 * c);
      const int dc = tables >> 4, ac = tables & 15;
      if (dc > 3 || ac > 3) return "";  // stb refuses the scan before decoding
      const bool uses_dc = !progressive_ || (spectral_start == 0 && high_bit == 0);
      const bool uses_ac = !progressive_ || spectral_start > 0;
      if (uses_dc && !huffman_defined_[0][dc])
        return "a scan uses DC Huffman table " + std::to_string(dc) + ", which no DHT segment defines";
      if (uses_ac && !huffman_defined_[1][ac])
        return "a scan uses AC Huffman table " + std::to_string(ac) + ", which no DHT segment defines";
      for (const auto& [component, quantisation] : components_)
        if (component == id && quantisation <= 3 && !quantisation_defined_[quantisation])
          return "a scan uses quantisation table " + std::to_string(quantisation) + ", which no DQT segment defines";
    }
    return "";
  }

  const std::vector<uint8_t>& bytes_;
  bool huffman_defined_[2][4] = {};  // [DC, AC][table id]
  bool quantisation_defined_[4] = {};
  bool progressive_ = false;
  bool scanned_ = false;  // an SOS segment was seen
  std::vector<std::pair<int, int>> components_;  // (id, quantisation table) of the frame
};

// The 32-bit big-endian number at bytes[at, at + 4) (PNG's lengths and sizes); below 2^32, so that the product of
// two fits 64 bits.
uint64_t big_endian_32(const std::vector<uint8_t>& bytes, size_t at) {
  return static_cast<uint64_t>(bytes[at]) << 24 | bytes[at + 1] << 16 | bytes[at + 2] << 8 | bytes[at + 3];
}

// stb_image 2.27 grows its buffer for a PNG's image data to each IDAT chunk's declared length before reading
// the chunk, so 200 bytes that declare a 2 GB chunk allocate 2 GB (found by fuzzing). Every chunk (length,
// type, data, CRC) up to IEND must lie within the file, as in any complete PNG.
std::string png_chunk_defect(const std::vector<uint8_t>& bytes) {
  for (size_t position = 8; position + 8 <= bytes.size();) {
    const uint64_t length = big_endian_32(bytes, position);
    const std::string type(reinterpret_cast<const char*>(&bytes[position + 4]), 4);
    if (length + 12 > bytes.size() - position)
      return "truncated PNG: chunk " + printable(type) + " declares " + std::to_string(length) + " bytes, " +
             std::to_string(bytes.size() - position) + " are left in the file";
    if (type == "IEND") return "";
    position += 12 + length;
  }
  return "";
}

// Decodes one file into (S, S, C) at `destination`; returns "" or why the file is unusable.
std::string decode_file(const fs::path& path, uint8_t* destination, const DatasetOptions& options) {
  std::vector<uint8_t> bytes;
  std::string error;
  if (!read_whole_file(path, bytes, error)) return error;
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) return "file too large";
  const Format format = sniff(bytes);
  // stb tries every decoder in turn and keeps the last one's complaint, so name the format we recognised.
  const auto stb_failed = [&] {
    if (format == Format::unknown && !bytes.empty())
      return std::string("not a PNG, JPEG, BMP, TGA or GIF image (stb_image: ") + stbi_failure_reason() + ")";
    return std::string("corrupt or truncated ") + (bytes.empty() ? "file" : format_name(format)) + " (stb_image: " +
           stbi_failure_reason() + ")";
  };
  // The structural checks come before stb reads anything: it reads a JPEG's tables even for the header alone,
  // and decodes the missing rows of a truncated BMP or GIF as zeros.
  switch (format) {
    case Format::jpeg: error = JpegWalk(bytes).defect(); break;
    case Format::png: error = png_chunk_defect(bytes); break;
    case Format::bmp: error = bmp_truncation(bytes); break;
    case Format::gif: error = gif_truncation(bytes); break;
    case Format::unknown: break;
  }
  if (!error.empty()) return error;
  // The pixel limit from the header. stb's BMP header gives a top-down image's height as negative (found by
  // fuzzing: 59 bytes declaring 57 x 65542 pixels passed as a negative count). A PNG's size is read from its
  // IHDR first: stb refuses a side past 2^24 as an "unknown image type", which hid the limit.
  const auto over_limit = [&](int64_t w, int64_t h) {
    return std::string(format_name(format)) + " of " + std::to_string(w) + " x " + std::to_string(h) +
           " pixels, more than the limit of " + std::to_string(options.max_pixels) + " (--max-image-pixels)";
  };
  if (format == Format::png && bytes.size() >= 24 && std::memcmp(&bytes[12], "IHDR", 4) == 0) {
    const uint64_t png_width = big_endian_32(bytes, 16), png_height = big_endian_32(bytes, 20);
    if (png_width * png_height > static_cast<uint64_t>(options.max_pixels))
      return over_limit(static_cast<int64_t>(png_width), static_cast<int64_t>(png_height));
  }
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height, &channels)) return stb_failed();
  if (std::abs(static_cast<int64_t>(width)) * std::abs(static_cast<int64_t>(height)) > options.max_pixels)
    return over_limit(std::abs(static_cast<int64_t>(width)), std::abs(static_cast<int64_t>(height)));
  uint8_t* pixels = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height, &channels, 0);
  if (!pixels) return stb_failed();
  std::unique_ptr<uint8_t, void (*)(void*)> owned(pixels, stbi_image_free);
  // stb 2.27 "decodes" a BMP whose header says 0 rows into an image of no pixels (found by fuzzing).
  if (width <= 0 || height <= 0)
    return std::string(format_name(format)) + " of " + std::to_string(width) + " x " + std::to_string(height) + " pixels: no pixels";
  if (format == Format::unknown && !(error = tga_truncation(bytes)).empty()) return error;  // TGA has no magic to check first
  conform(destination, pixels, height, width, channels, options);
  return "";
}

// The entries of `dir` but hidden ones, sorted; a directory that cannot be listed is an error. Entries
// are tested with error codes: a symlink loop or a dangling link is an entry that fails the test, not an
// exception that ends the listing.
std::vector<fs::path> list_directory(const fs::path& dir) {
  std::error_code error;
  std::vector<fs::path> entries;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error))
    if (!hidden(it->path())) entries.push_back(it->path());
  if (error) fail(kOp, "cannot list " + dir.string() + ": " + error.message());
  std::sort(entries.begin(), entries.end());
  return entries;
}

bool is_listable_directory(const fs::path& path) {
  std::error_code error;
  return fs::is_directory(path, error);
}

// One warning line for the entries an image folder leaves out (files beside the class folders, folders inside
// them), naming the first: they were passed over in silence, and a nested layout lost its images unseen.
void warn_left_out(const std::vector<fs::path>& left_out, const std::string& what, const fs::path& root) {
  if (left_out.empty()) return;
  std::cerr << "warning: " << kOp << ": left out " << left_out.size() << " " << what << " (images must lie in "
            << root.string() << "/<class>/; first: " << printable(left_out.front().string()) << ")\n";
}

std::unique_ptr<Dataset> open_image_folder(const fs::path& root, const DatasetOptions& options) {
  std::vector<fs::path> class_dirs, loose_files, nested_folders;
  for (const fs::path& entry : list_directory(root))
    (is_listable_directory(entry) ? class_dirs : loose_files).push_back(entry);
  if (class_dirs.empty()) fail(kOp, root.string() + " has no class folders (expected " + root.string() + "/<class>/<image>)");
  warn_left_out(loose_files, "files that are not in a class folder", root);

  std::vector<std::string> classes;
  std::vector<fs::path> files;
  std::vector<int64_t> file_labels;
  const std::vector<int64_t> quotas = class_quotas(options.limit, class_dirs.size());
  for (size_t index = 0; index < class_dirs.size(); ++index) {
    const std::string name = class_dirs[index].filename().string();
    // Class names go into checkpoints as JSON text: they must be UTF-8, which is checked now rather than at
    // the end of the first epoch, when the first checkpoint is written.
    if (!valid_utf8(name))
      fail(kOp, "class folder '" + printable(class_dirs[index].string()) + "' has a name that is not valid UTF-8; rename it");
    // A newline or other control character in a class name broke every table that prints it.
    if (std::any_of(name.begin(), name.end(), [](unsigned char c) { return c < 0x20 || c == 0x7F; }))
      fail(kOp, "class folder '" + printable(class_dirs[index].string()) + "' has a control character in its name; rename it");
    classes.push_back(name);
    const int64_t label = label_of(name, index, options, root.string());
    std::vector<fs::path> class_files;
    const size_t nested_before = nested_folders.size();
    for (const fs::path& entry : list_directory(class_dirs[index]))  // not only regular files: others get a clear error
      (is_listable_directory(entry) ? nested_folders : class_files).push_back(entry);
    if (class_files.empty()) {
      if (!options.skip_bad)
        fail(kOp, "class folder " + class_dirs[index].string() + " is empty" +
                      (nested_folders.size() > nested_before ? " (its subfolders are not read: images must lie in it)" : ""));
      std::cerr << "warning: " << kOp << ": class folder " << class_dirs[index].string()
                << " is empty (the class keeps its label and has no examples)\n";
    }
    if (static_cast<int64_t>(class_files.size()) > quotas[index]) class_files.resize(quotas[index]);
    for (fs::path& file : class_files) {
      files.push_back(std::move(file));
      file_labels.push_back(label);
    }
  }
  warn_left_out(nested_folders, "folders inside class folders", root);
  if (!options.classes.empty()) classes = options.classes;

  auto dataset = std::make_unique<InMemoryDataset>(std::move(classes), options.channels, options.image_size);
  const size_t image_bytes = dataset->image_bytes();
  dataset->pixels.resize(files.size() * image_bytes);
  std::vector<std::string> errors(files.size());
  // Files are claimed in small chunks from a shared counter: decode times vary, static splits would idle.
  std::atomic<size_t> next_file{0};
  std::atomic<bool> failed_hard{false};
  std::string hard_error;
  const auto decode_some = [&] {
    constexpr size_t kChunk = 16;
    try {
      for (size_t begin; (begin = next_file.fetch_add(kChunk)) < files.size() && !failed_hard;)
        for (size_t i = begin; i < std::min(files.size(), begin + kChunk); ++i)
          errors[i] = decode_file(files[i], dataset->pixels.data() + i * image_bytes, options);
    } catch (const std::exception& error) {  // not about one file (out of memory): stop all
      if (!failed_hard.exchange(true)) hard_error = error.what();
    }
  };
  const size_t threads = std::clamp<size_t>(files.size() / 64, 1, std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(decode_some);
  decode_some();
  for (std::thread& thread : pool) thread.join();
  if (failed_hard) throw std::runtime_error(hard_error);

  std::vector<size_t> bad;
  for (size_t i = 0; i < files.size(); ++i)
    if (!errors[i].empty()) bad.push_back(i);
  if (!bad.empty()) {
    const std::string first = files[bad[0]].string() + ": " + errors[bad[0]];
    if (!options.skip_bad)
      fail(kOp, first + (bad.size() > 1 ? " (and " + std::to_string(bad.size() - 1) + " more bad files)" : "") +
                    "; skip_bad skips unreadable files");
    std::cerr << "warning: " << kOp << ": skipped " << bad.size() << " of " << files.size()
              << " files under " << root.string() << " that are not readable images (first: " << first << ")\n";
  }
  // Keep the good images in order; each keeps the label of its own folder.
  size_t kept = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    if (!errors[i].empty()) continue;
    if (kept != i)
      std::memcpy(dataset->pixels.data() + kept * image_bytes, dataset->pixels.data() + i * image_bytes, image_bytes);
    dataset->labels.push_back(file_labels[i]);
    ++kept;
  }
  // A split of no images would report a loss and accuracy of 0 as if measured (skip_bad allows empty folders).
  if (kept == 0)
    fail(kOp, "no readable image under " + root.string() +
                  (bad.empty() ? "" : ": all " + std::to_string(bad.size()) + " files were skipped as unreadable"));
  dataset->pixels.resize(kept * image_bytes);
  dataset->pixels.shrink_to_fit();
  return dataset;
}

}  // namespace

uint64_t fingerprint(const Dataset& dataset) {
  // FNV-1a over bytes, folded through random_bits every 8 bytes so that the 64-bit state mixes well.
  uint64_t state = 0xcbf29ce484222325ull;
  const auto add = [&](const void* data, size_t bytes) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < bytes; ++i) {
      state = (state ^ p[i]) * 0x100000001b3ull;
      if ((i & 7) == 7) state = random_bits(state, i);
    }
    state = random_bits(state, bytes);
  };
  for (const std::string& name : dataset.classes()) add(name.data(), name.size());
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const Example example = dataset.get(i);
    add(&example.label, sizeof example.label);
    add(example.image.pixels.data(), example.image.pixels.size());
  }
  return state;
}

Image load_image_file(const std::string& path, int channels, int size, int64_t max_pixels) {
  DatasetOptions options;
  options.channels = channels;
  options.image_size = size;
  options.max_pixels = max_pixels;
  Image image(size, size, channels);
  const std::string error = decode_file(path, image.pixels.data(), options);
  if (!error.empty()) fail("load_image_file", path + ": " + error);
  return image;
}

std::unique_ptr<Dataset> open_dataset(const std::string& dir, const std::string& split, const DatasetOptions& options) {
  if (split != "train" && split != "test") fail(kOp, "split must be \"train\" or \"test\", got \"" + split + "\"");
  if (options.channels < 1 || options.channels > 4)
    fail(kOp, "channels must be 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA), got " + std::to_string(options.channels));
  if (options.image_size < 1) fail(kOp, "image_size must be positive, got " + std::to_string(options.image_size));
  if (options.limit < 0) fail(kOp, "limit must be 0 (all) or positive, got " + std::to_string(options.limit));
  if (options.max_pixels < 1) fail(kOp, "max_pixels must be positive, got " + std::to_string(options.max_pixels));
  if (const std::string* repeated = first_repeat(options.classes))
    fail(kOp, "class '" + printable(*repeated) + "' is named twice in the label space");
  if (fs::exists(dir) && !fs::is_directory(dir)) fail(kOp, "data directory " + dir + " is a file, not a folder");
  if (!fs::is_directory(dir)) fail(kOp, "data directory " + dir + " does not exist (scripts/get_cifar10.sh fetches CIFAR-10)");
  if (fs::is_directory(fs::path(dir) / split)) return open_image_folder(fs::path(dir) / split, options);
  const fs::path cifar = find_cifar_dir(dir);
  if (!cifar.empty()) return open_cifar_binary(cifar, split, options);
  fail(kOp, dir + " holds neither a " + split + "/ image folder nor the CIFAR-10 binary files (data_batch_1.bin ... "
                  "test_batch.bin, possibly in cifar-10-batches-bin/); scripts/get_cifar10.sh fetches them");
}

}  // namespace vt::data
