// Safetensors reader and writer. The header is parsed by the strict JSON reader of autograd/json.h, which
// accepts exactly what the format uses (objects, strings, non-negative integers and arrays of them); every offset is
// checked against the file size before any tensor is allocated or read, so a corrupt file fails up front.
#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <set>
#include <string_view>

#include "autograd/engine.h"
#include "autograd/files.h"
#include "autograd/json.h"

namespace vt::nn {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian and is read and written without byte swapping");

constexpr uint64_t header_length_limit = 100'000'000;  // the reference implementation refuses longer headers
constexpr size_t io_chunk_bytes = size_t{1} << 30;     // read()/write() move at most ~2 GiB per call on Linux

[[noreturn]] void file_error(const char* op, const std::string& path, const std::string& problem,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  fail(op, "'" + path + "': " + problem, file, line);
}

std::string errno_text() { return std::strerror(errno); }

// ---- dtypes ----

// The file dtypes vt reads; F16 and BF16 (common in published checkpoints) are widened to f32 on load.
enum class FileDType { f32, f64, i64, f16, bf16 };

struct FileDTypeInfo {
  const char* name;
  FileDType file_dtype;
  size_t bytes;
};

constexpr FileDTypeInfo file_dtypes[] = {
    {"F32", FileDType::f32, 4}, {"F64", FileDType::f64, 8}, {"I64", FileDType::i64, 8},
    {"F16", FileDType::f16, 2}, {"BF16", FileDType::bf16, 2},
};

const FileDTypeInfo* find_file_dtype(const std::string& name) {
  for (const FileDTypeInfo& info : file_dtypes)
    if (name == info.name) return &info;
  return nullptr;
}

const char* file_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i64: return "I64";
  }
  return "?";
}

DType loaded_dtype(FileDType file_dtype) {
  switch (file_dtype) {
    case FileDType::f64: return DType::f64;
    case FileDType::i64: return DType::i64;
    case FileDType::f32:
    case FileDType::f16:
    case FileDType::bf16: return DType::f32;
  }
  return DType::f32;
}

// IEEE binary16 -> binary32 is exact: subnormal halves become normal floats, and infinities and NaN payloads
// keep their bits.
float half_to_float(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000u) << 16;
  const uint32_t exponent = (half >> 10) & 0x1fu;
  const uint32_t mantissa = half & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // mantissa * 2^-24, exact
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

// bfloat16 is the top half of a float32.
float bfloat16_to_float(uint16_t bfloat16) { return std::bit_cast<float>(static_cast<uint32_t>(bfloat16) << 16); }

void append_json_integers(std::string& out, const std::vector<uint64_t>& values) {
  out += '[';
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += std::to_string(values[i]);
  }
  out += ']';
}

// ---- the header ----

struct TensorEntry {
  std::string name;
  std::string dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // data_offsets, relative to the start of the data section
  const FileDTypeInfo* info = nullptr;
};

struct Header {
  std::map<std::string, std::string> metadata;
  std::vector<TensorEntry> tensors;  // in the header's order
  uint64_t data_start = 0;           // 8 + header length
};

// The header's JSON: the top-level object maps "__metadata__" to an object of strings and every other key (a
// tensor name) to {"dtype": string, "shape": [integers], "data_offsets": [b, e]}.
std::map<std::string, std::string> read_metadata_object(JsonReader& json) {
  std::map<std::string, std::string> metadata;
  json.expect('{', "to open '__metadata__'");
  if (json.consume('}')) return metadata;
  do {
    std::string key = json.read_string();
    json.expect(':', "after a key");
    if (!json.next_is('"')) json.malformed("metadata value of '" + key + "' is not a string");
    std::string value = json.read_string();
    if (!metadata.emplace(key, std::move(value)).second) json.malformed("metadata key '" + key + "' appears twice");
  } while (json.consume(','));
  json.expect('}', "to close '__metadata__'");
  return metadata;
}

TensorEntry read_tensor_entry(JsonReader& json, std::string name) {
  TensorEntry entry;
  entry.name = std::move(name);
  bool has_dtype = false, has_shape = false, has_offsets = false;
  json.expect('{', "to open a tensor's entry");
  if (!json.consume('}')) {
    do {
      const std::string field = json.read_string();
      json.expect(':', "after a key");
      if (field == "dtype") {
        if (has_dtype) json.malformed("tensor '" + entry.name + "' has two 'dtype' fields");
        has_dtype = true;
        entry.dtype = json.read_string();
      } else if (field == "shape") {
        if (has_shape) json.malformed("tensor '" + entry.name + "' has two 'shape' fields");
        has_shape = true;
        for (const uint64_t size : json.read_unsigned_array()) {
          if (size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            json.malformed("tensor '" + entry.name + "' has a dimension too large");
          entry.shape.push_back(static_cast<int64_t>(size));
        }
      } else if (field == "data_offsets") {
        if (has_offsets) json.malformed("tensor '" + entry.name + "' has two 'data_offsets' fields");
        has_offsets = true;
        const std::vector<uint64_t> offsets = json.read_unsigned_array();
        if (offsets.size() != 2) json.malformed("data_offsets of tensor '" + entry.name + "' must hold two integers");
        entry.begin = offsets[0];
        entry.end = offsets[1];
      } else {
        json.malformed("unknown field '" + field + "' in tensor '" + entry.name + "'");
      }
    } while (json.consume(','));
    json.expect('}', "to close a tensor's entry");
  }
  if (!has_dtype) json.malformed("tensor '" + entry.name + "' has no 'dtype'");
  if (!has_shape) json.malformed("tensor '" + entry.name + "' has no 'shape'");
  if (!has_offsets) json.malformed("tensor '" + entry.name + "' has no 'data_offsets'");
  return entry;
}

Header parse_header(const char* op, const std::string& path, std::string_view text) {
  JsonReader json(op, "'" + path + "': malformed header", text, 8);  // the header starts at byte 8 of the file
  Header header;
  std::set<std::string> names;
  bool seen_metadata = false;
  if (!json.consume('{')) json.malformed("the header must begin with '{'");
  if (!json.consume('}')) {
    do {
      std::string key = json.read_string();
      json.expect(':', "after a key");
      if (key == "__metadata__") {
        if (seen_metadata) json.malformed("'__metadata__' appears twice");
        seen_metadata = true;
        header.metadata = read_metadata_object(json);
      } else {
        if (!names.insert(key).second) json.malformed("tensor '" + key + "' appears twice");
        header.tensors.push_back(read_tensor_entry(json, std::move(key)));
      }
    } while (json.consume(','));
    json.expect('}', "at the end of the header");
  }
  json.expect_end();
  return header;
}

// Checks dtypes, sizes and that the tensors tile the data section exactly: sorted by offset, each starts where
// the previous one ended, and the last ends at the end of the file (no overlap, no hole, no trailing bytes).
void validate_layout(const char* op, const std::string& path, std::vector<TensorEntry>& tensors, uint64_t data_bytes) {
  for (TensorEntry& entry : tensors) {
    auto problem = [&](const std::string& what) {
      std::string offsets = "[";
      offsets.append(std::to_string(entry.begin)).append(", ").append(std::to_string(entry.end)).append("]");
      std::string message = "tensor '";
      message.append(entry.name).append("' (dtype ").append(entry.dtype).append(", shape ");
      message.append(shape_str(entry.shape)).append(", data_offsets ").append(offsets).append(") ").append(what);
      file_error(op, path, message);
    };
    entry.info = find_file_dtype(entry.dtype);
    if (!entry.info) problem("has an unsupported dtype; vt reads F32, F64, I64, F16 and BF16");
    uint64_t bytes = entry.info->bytes;
    int64_t reach = 1;  // the sizes' product with 0 counted as 1: even an empty tensor's strides reach it
    for (const int64_t size : entry.shape)
      if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(size), &bytes) ||
          __builtin_mul_overflow(reach, std::max<int64_t>(size, 1), &reach))
        problem("is too large");
    if (entry.begin > entry.end) problem("ends before it begins");
    if (entry.end - entry.begin != bytes)
      problem("needs " + std::to_string(bytes) + " bytes but its data_offsets hold " + std::to_string(entry.end - entry.begin));
    if (entry.end > data_bytes)
      problem("runs past the end of the data section (" + std::to_string(data_bytes) +
              " bytes): the file is truncated or corrupt");
  }
  std::vector<const TensorEntry*> by_offset;
  for (const TensorEntry& entry : tensors) by_offset.push_back(&entry);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorEntry* a, const TensorEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  const TensorEntry* previous = nullptr;
  for (const TensorEntry* entry : by_offset) {
    if (entry->begin < covered)
      file_error(op, path, "tensors '" + previous->name + "' and '" + entry->name + "' overlap in the data section");
    if (entry->begin > covered)
      file_error(op, path, "bytes " + std::to_string(covered) + " to " + std::to_string(entry->begin) +
                               " of the data section belong to no tensor");
    covered = entry->end;
    previous = entry;
  }
  if (covered != data_bytes)
    file_error(op, path, "the data section has " + std::to_string(data_bytes) + " bytes but the tensors cover " +
                             std::to_string(covered));
}

// ---- files ----

class InputFile {
 public:
  InputFile(const char* op, const std::string& path) : op_(op), path_(path) {
    // O_NONBLOCK so that opening a FIFO returns at once (to be refused below) instead of waiting for a writer;
    // it changes nothing for a regular file.
    descriptor_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (descriptor_ < 0) file_error(op, path, "cannot open: " + errno_text());
    struct stat status;
    std::string problem;
    if (::fstat(descriptor_, &status) != 0)
      problem = "cannot stat: " + errno_text();
    else if (!S_ISREG(status.st_mode))
      problem = "not a regular file";
    if (!problem.empty()) {
      ::close(descriptor_);  // the destructor does not run when the constructor throws
      file_error(op, path, problem);
    }
    size_ = static_cast<uint64_t>(status.st_size);
  }
  ~InputFile() { ::close(descriptor_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }

  void read(void* buffer, uint64_t bytes, uint64_t offset) const {
    char* out = static_cast<char*>(buffer);
    while (bytes > 0) {
      const ssize_t got = ::pread(descriptor_, out, std::min<uint64_t>(bytes, io_chunk_bytes), static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) file_error(op_, path_, "read failed at byte " + std::to_string(offset) + ": " + errno_text());
      if (got == 0) file_error(op_, path_, "unexpected end of file at byte " + std::to_string(offset));
      out += got;
      bytes -= static_cast<uint64_t>(got);
      offset += static_cast<uint64_t>(got);
    }
  }

 private:
  const char* op_;
  const std::string& path_;
  int descriptor_ = -1;
  uint64_t size_ = 0;
};

Header read_header(const char* op, const std::string& path, const InputFile& file) {
  if (file.size() < 8)
    file_error(op, path, "the file has " + std::to_string(file.size()) + " bytes, fewer than the 8-byte header length");
  uint64_t header_length = 0;
  file.read(&header_length, 8, 0);
  if (header_length > file.size() - 8)
    file_error(op, path, "header length " + std::to_string(header_length) + " is larger than the rest of the file (" +
                             std::to_string(file.size() - 8) + " bytes): the file is truncated or not a safetensors file");
  if (header_length > header_length_limit)
    file_error(op, path, "header length " + std::to_string(header_length) + " exceeds the 100 MB limit");
  std::string text(header_length, '\0');
  file.read(text.data(), header_length, 8);
  if (!valid_utf8(text)) file_error(op, path, "the header is not valid UTF-8");
  Header header = parse_header(op, path, text);
  header.data_start = 8 + header_length;
  validate_layout(op, path, header.tensors, file.size() - header.data_start);
  return header;
}

Tensor read_tensor(const InputFile& file, const TensorEntry& entry, uint64_t data_start) {
  Tensor tensor = Tensor::empty(entry.shape, loaded_dtype(entry.info->file_dtype));
  const uint64_t bytes = entry.end - entry.begin;
  if (bytes == 0) return tensor;
  const uint64_t offset = data_start + entry.begin;
  switch (entry.info->file_dtype) {
    case FileDType::f32:
    case FileDType::f64:
    case FileDType::i64: file.read(tensor.raw_data(), bytes, offset); break;
    case FileDType::f16:
    case FileDType::bf16: {
      std::vector<uint16_t> halves(static_cast<size_t>(tensor.numel()));
      file.read(halves.data(), bytes, offset);
      float* values = tensor.data<float>();
      const bool is_half = entry.info->file_dtype == FileDType::f16;
      for (size_t i = 0; i < halves.size(); ++i) values[i] = is_half ? half_to_float(halves[i]) : bfloat16_to_float(halves[i]);
      break;
    }
  }
  return tensor;
}

std::string join(const std::vector<std::string>& items, const char* separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i > 0 ? separator : "") + items[i];
  return out;
}

bool is_floating(DType dtype) { return dtype == DType::f32 || dtype == DType::f64; }

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  constexpr const char* op = "save_safetensors";
  std::set<std::string_view> names;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) file_error(op, path, "tensor '" + name + "' is undefined");
    if (name == "__metadata__") file_error(op, path, "'__metadata__' is reserved and cannot name a tensor");
    if (!valid_utf8(name)) file_error(op, path, "tensor name '" + name + "' is not valid UTF-8");
    if (!names.insert(name).second) file_error(op, path, "tensor '" + name + "' is given twice");
  }
  for (const auto& [key, value] : metadata)
    if (!valid_utf8(key) || !valid_utf8(value)) file_error(op, path, "metadata '" + key + "' is not valid UTF-8");

  // Data order: widest elements first (stable), as the reference writer does, so that every tensor starts at
  // a multiple of its element size (the data section starts at a multiple of 8) and a reader may map the
  // file without copying. The header keeps the caller's order.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].second.dtype()) > dtype_size(tensors[b].second.dtype());
  });
  std::vector<uint64_t> begins(tensors.size());
  uint64_t data_bytes = 0;
  for (const size_t i : order) {
    begins[i] = data_bytes;
    data_bytes += static_cast<uint64_t>(tensors[i].second.numel()) * dtype_size(tensors[i].second.dtype());
  }

  std::vector<std::string> entries;
  if (!metadata.empty()) {
    std::string entry = "\"__metadata__\":{";
    for (const auto& [key, value] : metadata) {
      if (entry.back() != '{') entry += ',';
      append_json_string(entry, key);
      entry += ':';
      append_json_string(entry, value);
    }
    entries.push_back(entry + "}");
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& tensor = tensors[i].second;
    std::string entry;
    append_json_string(entry, tensors[i].first);
    entry += ":{\"dtype\":\"";
    entry += file_dtype_name(tensor.dtype());
    entry += "\",\"shape\":";
    append_json_integers(entry, std::vector<uint64_t>(tensor.shape().begin(), tensor.shape().end()));
    entry += ",\"data_offsets\":";
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * dtype_size(tensor.dtype());
    append_json_integers(entry, {begins[i], begins[i] + bytes});
    entries.push_back(entry + "}");
  }
  std::string header = "{" + join(entries, ",") + "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > header_length_limit) file_error(op, path, "the header exceeds the 100 MB limit");

  AtomicFileWriter file(op, path);
  const uint64_t header_length = header.size();
  file.write(&header_length, 8);
  file.write(header.data(), header.size());
  for (const size_t i : order) {
    const Tensor& tensor = tensors[i].second;
    if (tensor.numel() == 0) continue;
    const Tensor host = tensor.to(Device::cpu);  // a GPU tensor is copied to the host first
    const Tensor row_major = host.is_contiguous() ? host : host.clone();
    file.write(row_major.raw_data(), static_cast<uint64_t>(row_major.numel()) * dtype_size(row_major.dtype()));
  }
  file.commit();
}

SafetensorsFile load_safetensors(const std::string& path) {
  const InputFile file("load_safetensors", path);
  Header header = read_header("load_safetensors", path, file);
  SafetensorsFile result;
  result.metadata = std::move(header.metadata);
  for (const TensorEntry& entry : header.tensors) result.tensors.emplace_back(entry.name, read_tensor(file, entry, header.data_start));
  return result;
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  const InputFile file("read_safetensors_header", path);
  Header header = read_header("read_safetensors_header", path, file);
  SafetensorsHeader result;
  result.metadata = std::move(header.metadata);
  for (const TensorEntry& entry : header.tensors) result.shapes.emplace_back(entry.name, entry.shape);
  return result;
}

std::map<std::string, std::string> read_metadata(const std::string& path) {
  const InputFile file("read_metadata", path);
  return read_header("read_metadata", path, file).metadata;
}

void check_finite_in_float32(const char* op, const std::string& source_name, const NamedTensors& tensors) {
  for (const auto& [name, tensor] : tensors)
    for (double value : tensor.to_vector())
      if (!(std::abs(value) <= std::numeric_limits<float>::max()))  // NaN fails the comparison too
        fail(op, "'" + source_name + "': tensor '" + name + "' " + tensor.str() +
                     " holds values that are not finite in float32 (NaN, infinity or past 3.4e38): the run that "
                     "wrote it diverged");
}

void assign_named_tensors(const char* op, const std::string& source_name, const NamedTensors& source,
                          const NamedTensors& destination) {
  std::map<std::string_view, const Tensor*> by_name;
  for (const auto& [name, tensor] : source) by_name.emplace(name, &tensor);
  std::set<std::string_view> destination_names;
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, tensor] : destination) {
    destination_names.insert(name);
    const auto found = by_name.find(name);
    if (found == by_name.end()) {
      missing.push_back(name);
      continue;
    }
    const Tensor& stored = *found->second;
    if (stored.shape() != tensor.shape())
      mismatched.push_back(name + ": shape " + shape_str(stored.shape()) + " in the file, " + shape_str(tensor.shape()) +
                           " expected");
    else if (stored.dtype() != tensor.dtype() && !(is_floating(stored.dtype()) && is_floating(tensor.dtype())))
      mismatched.push_back(name + ": dtype " + dtype_name(stored.dtype()) + " in the file, " + dtype_name(tensor.dtype()) +
                           " expected");
  }
  for (const auto& [name, tensor] : source)
    if (!destination_names.count(name)) unexpected.push_back(name);

  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string message = "'" + source_name + "' does not match (nothing was loaded):";
    if (!missing.empty()) message += "\n  missing from the file: " + join(missing, ", ");
    if (!unexpected.empty()) message += "\n  unexpected in the file: " + join(unexpected, ", ");
    if (!mismatched.empty()) message += "\n  mismatched: " + join(mismatched, "; ");
    fail(op, message);
  }
  NoGradGuard no_grad;
  for (const auto& [name, tensor] : destination) Tensor(tensor).copy_(*by_name.at(name));
}

void save_weights(const std::string& path, const Module& model, const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, model.named_parameters(), metadata);
}

void load_weights(const std::string& path, Module& model) {
  const SafetensorsFile file = load_safetensors(path);
  assign_named_tensors("load_weights", path, file.tensors, model.named_parameters());
}

}  // namespace vt::nn
