// Safetensors files, model weights and training states: bit-exact round trips, the byte layout checked by hand
// against the spec, a file written by Hugging Face's own writer (tests/data, from scripts/reference/
// safetensors_sample.py), refusal of truncated and malformed files, atomic writes, and name matching on load.
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn/safetensors.h"
#include "tests/helpers.h"

using namespace vt;

namespace {

namespace fs = std::filesystem;

using testing::TemporaryDirectory;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// 8-byte little-endian header length, the header as given (no padding), then the data section.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  const uint64_t length = header.size();
  std::memcpy(bytes.data(), &length, 8);
  return bytes + header + data;
}

// The message of the error `action` throws, or "" when it does not throw.
template <class Action>
std::string error_of(Action action) {
  try {
    action();
  } catch (const std::runtime_error& error) {
    return error.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The tensor's elements as bytes, in row-major order.
std::string element_bytes(const Tensor& t) {
  const Tensor row_major = t.clone();
  return std::string(static_cast<const char*>(row_major.raw_data()), row_major.numel() * dtype_size(row_major.dtype()));
}

Tensor f32_from_bits(const std::vector<uint32_t>& bits, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::f32);
  std::memcpy(t.raw_data(), bits.data(), bits.size() * 4);
  return t;
}

Tensor f64_from_bits(const std::vector<uint64_t>& bits, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::f64);
  std::memcpy(t.raw_data(), bits.data(), bits.size() * 8);
  return t;
}

class TinyModel : public nn::Module {
 public:
  TinyModel(int64_t norm_dim, bool with_head) {
    fc = register_module("fc", std::make_shared<nn::Linear>(3, 4));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(norm_dim));
    if (with_head) head = register_module("head", std::make_shared<nn::Linear>(4, 2));
  }
  std::shared_ptr<nn::Linear> fc, head;
  std::shared_ptr<nn::LayerNorm> norm;
};

// A TinyModel whose every parameter (LayerNorm's ones and zeros included) is drawn from `seed`.
std::shared_ptr<TinyModel> random_tiny_model(uint64_t seed) {
  auto model = std::make_shared<TinyModel>(4, false);
  Generator generator(seed);
  NoGradGuard no_grad;
  for (auto& [name, parameter] : model->named_parameters()) parameter.copy_(randn(parameter.shape(), DType::f32, generator));
  return model;
}

}  // namespace

TEST_CASE("safetensors: save then load is bit-exact for f32, f64, i64, 0-d, empty and strided tensors") {
  TemporaryDirectory directory("safetensors_round_trip");
  const std::string path = directory.file("round_trip.safetensors");
  // Quiet NaN with a payload, -inf, -0.0, the smallest denormal, the largest float, 1.0.
  const Tensor specials32 = f32_from_bits({0x7fc00001u, 0xff800000u, 0x80000000u, 0x00000001u, 0x7f7fffffu, 0x3f800000u}, {2, 3});
  // NaN with a payload, -0.0, the smallest denormal double.
  const Tensor specials64 = f64_from_bits({0x7ff8000000000123ull, 0x8000000000000000ull, 0x1ull}, {3});
  const Tensor indices = Tensor::from_indices({std::numeric_limits<int64_t>::min(), -1, std::numeric_limits<int64_t>::max()}, {3});
  const Tensor scalar = Tensor::scalar(2.5, DType::f32);
  const Tensor empty = Tensor::zeros({0, 3}, DType::f64);
  const Tensor transposed = transpose(specials32, 0, 1);  // (3, 2), not contiguous: written row-major
  const nn::NamedTensors tensors = {{"specials32", specials32}, {"specials64", specials64}, {"indices", indices},
                                    {"scalar", scalar},         {"empty", empty},           {"transposed", transposed}};
  const std::map<std::string, std::string> metadata = {
      {"quote\"and\\backslash", "tab\tnewline\ncontrol\x01"}, {"unicode", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"}};
  nn::save_safetensors(path, tensors, metadata);

  const nn::SafetensorsFile loaded = nn::load_safetensors(path);
  CHECK(loaded.metadata == metadata);
  CHECK(nn::read_metadata(path) == metadata);
  REQUIRE(loaded.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO("tensor " << tensors[i].first);
    CHECK(loaded.tensors[i].first == tensors[i].first);  // the header keeps the order given to save
    CHECK(loaded.tensors[i].second.dtype() == tensors[i].second.dtype());
    CHECK(loaded.tensors[i].second.shape() == tensors[i].second.shape());
    CHECK(element_bytes(loaded.tensors[i].second) == element_bytes(tensors[i].second));
  }
  CHECK(loaded.tensors[3].second.dim() == 0);
  CHECK(loaded.tensors[5].second.to_vector()[2] == -std::numeric_limits<double>::infinity());  // transposed[1, 0] = specials32[0, 1]
}

TEST_CASE("safetensors: the bytes follow the spec (length, padded JSON header, aligned little-endian data)") {
  TemporaryDirectory directory("safetensors_layout");
  const std::string path = directory.file("layout.safetensors");
  const Tensor a = Tensor::from_vector({1, 2, 3}, {3}, DType::f32);
  const Tensor b = Tensor::scalar(0.5, DType::f64);
  const Tensor c = Tensor::from_indices({7, -8}, {2});
  nn::save_safetensors(path, {{"a", a}, {"b", b}, {"c", c}}, {{"k", "v\""}});

  const std::string bytes = testing::read_file(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t header_length = 0;
  for (int k = 7; k >= 0; --k) header_length = header_length * 256 + static_cast<unsigned char>(bytes[k]);
  CHECK(header_length % 8 == 0);
  // Data order is widest element first (b and c have 8-byte elements, a has 4), so b: [0, 8), c: [8, 24),
  // a: [24, 36); every offset is a multiple of its element size. The header keeps the caller's order.
  const std::string json = R"({"__metadata__":{"k":"v\""},)"
                           R"("a":{"dtype":"F32","shape":[3],"data_offsets":[24,36]},)"
                           R"("b":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
                           R"("c":{"dtype":"I64","shape":[2],"data_offsets":[8,24]}})";
  const std::string padding((8 - json.size() % 8) % 8, ' ');
  CHECK(header_length == json.size() + padding.size());
  CHECK(bytes.substr(8, header_length) == json + padding);
  REQUIRE(bytes.size() == 8 + header_length + 36);
  const std::string data = bytes.substr(8 + header_length);
  const double b_value = 0.5;
  const int64_t c_values[2] = {7, -8};
  const float a_values[3] = {1, 2, 3};
  CHECK(data.substr(0, 8) == std::string(reinterpret_cast<const char*>(&b_value), 8));
  CHECK(data.substr(8, 16) == std::string(reinterpret_cast<const char*>(c_values), 16));
  CHECK(data.substr(24, 12) == std::string(reinterpret_cast<const char*>(a_values), 12));
  CHECK(static_cast<unsigned char>(data[8 + 8 + 7]) == 0xff);  // -8 is two's complement, little-endian

  // No tensors and no metadata: "{}" padded to 8 bytes, and nothing after it.
  nn::save_safetensors(path, {});
  CHECK(testing::read_file(path) == raw_file("{}      ", ""));
  CHECK(nn::load_safetensors(path).tensors.empty());
}

TEST_CASE("safetensors: reads the file Hugging Face's safetensors package wrote") {
  // tests/data/safetensors_sample.safetensors comes from scripts/reference/safetensors_sample.py
  // (safetensors.torch.save_file); the values below are that script's.
  const std::string path = (fs::path(__FILE__).parent_path() / "data" / "safetensors_sample.safetensors").string();
  const nn::SafetensorsFile file = nn::load_safetensors(path);
  CHECK(file.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"note", "quote \" tab \t e-acute \xc3\xa9"}});
  std::vector<std::string> names;
  for (const auto& [name, tensor] : file.tensors) names.push_back(name);
  CHECK(names == std::vector<std::string>{"indices", "specials", "empty", "scalar", "weight", "brain", "half"});
  REQUIRE(names.size() == 7);

  const Tensor& indices = file.tensors[0].second;
  CHECK(indices.dtype() == DType::i64);
  CHECK(indices.to_indices() == std::vector<int64_t>{-1, int64_t{1} << 40, 7});

  const Tensor& specials = file.tensors[1].second;  // F64 [-0.0, inf, 1e-310 (denormal), -1.5]
  REQUIRE(specials.dtype() == DType::f64);
  const std::vector<double> special_values = specials.to_vector();
  CHECK(std::bit_cast<uint64_t>(special_values[0]) == 0x8000000000000000ull);
  CHECK(special_values[1] == std::numeric_limits<double>::infinity());
  CHECK(special_values[2] == 1e-310);
  CHECK(special_values[3] == -1.5);

  CHECK(file.tensors[2].second.shape() == Shape{0, 3});
  CHECK(file.tensors[3].second.shape() == Shape{});
  CHECK(file.tensors[3].second.item() == 2.5);

  const Tensor& weight = file.tensors[4].second;  // weight[i] = float32(sin(0.37 i + 0.1)), shape (2, 3)
  REQUIRE(weight.shape() == Shape{2, 3});
  std::vector<double> expected_weight;
  for (int i = 0; i < 6; ++i) expected_weight.push_back(static_cast<float>(std::sin(0.37 * i + 0.1)));
  testing::expect_close(weight, expected_weight, 0.0, 1e-7);

  // BF16 [1, -3.140625, 2^100] and F16 [[0.5, -2], [65504 (largest half), 2^-24 (smallest subnormal)]] are
  // exact in their formats, so widening to f32 must give them exactly.
  const Tensor& brain = file.tensors[5].second;
  CHECK(brain.dtype() == DType::f32);
  CHECK(brain.to_vector() == std::vector<double>{1.0, -3.140625, std::ldexp(1.0, 100)});
  const Tensor& half = file.tensors[6].second;
  CHECK(half.dtype() == DType::f32);
  CHECK(half.shape() == Shape{2, 2});
  CHECK(half.to_vector() == std::vector<double>{0.5, -2.0, 65504.0, std::ldexp(1.0, -24)});
}

TEST_CASE("safetensors: a truncated file fails, naming the file and the problem, wherever it was cut") {
  TemporaryDirectory directory("safetensors_truncated");
  const std::string path = directory.file("truncated.safetensors");
  nn::save_safetensors(path, {{"w", Tensor::from_vector({1, 2, 3, 4}, {2, 2})}, {"b", Tensor::zeros({5}, DType::f64)}});
  const std::string whole = testing::read_file(path);
  uint64_t header_length = 0;
  std::memcpy(&header_length, whole.data(), 8);
  const std::vector<std::pair<size_t, std::string>> cuts = {
      {0, "fewer than the 8-byte header length"},
      {5, "fewer than the 8-byte header length"},
      {8, "is larger than the rest of the file"},
      {8 + header_length / 2, "is larger than the rest of the file"},
      {8 + header_length, "runs past the end of the data section"},
      {whole.size() - 1, "runs past the end of the data section"},
  };
  for (const auto& [cut, problem] : cuts) {
    INFO("cut at byte " << cut << " of " << whole.size());
    write_bytes(path, whole.substr(0, cut));
    const std::string error = error_of([&] { nn::load_safetensors(path); });
    CHECK(contains(error, "load_safetensors: '" + path + "'"));
    CHECK(contains(error, problem));
    CHECK(contains(error_of([&] { nn::read_metadata(path); }), problem));
  }
  CHECK(contains(error_of([&] { nn::load_safetensors(directory.file("absent.safetensors")); }), "cannot open"));
  CHECK(contains(error_of([&] { nn::load_safetensors(directory.path.string()); }), "not a regular file"));
}

TEST_CASE("safetensors: malformed headers and bad layouts are refused with the problem named") {
  TemporaryDirectory directory("safetensors_malformed");
  const std::string path = directory.file("bad.safetensors");
  const std::string four_bytes(4, '\0');
  struct Case {
    std::string header, data, problem;
  };
  const std::vector<Case> cases = {
      {"", "", "the header must begin with '{'"},
      {"[]", "", "the header must begin with '{'"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", four_bytes, "expected '}' at the end of the header"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}x)", four_bytes, "unexpected text after"},
      {R"({"a\q":{}})", "", "invalid escape '\\q'"},
      {R"({"a)", "", "unterminated string"},
      {"{\"a\x01\":{}}", "", "unescaped control character"},
      {R"({"\udc00":{}})", "", "low surrogate without a high surrogate"},
      {R"({"\ud83dx":{}})", "", "high surrogate without a low surrogate"},
      {"{\"\xc3\":{}}", "", "not valid UTF-8"},
      {R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four_bytes, "negative number"},
      {R"({"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", four_bytes, "a fraction or an exponent"},
      {R"({"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}})", four_bytes, "leading zero"},
      {R"({"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}})", four_bytes, "number too large"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"foo":[]}})", four_bytes, "unknown field 'foo' in tensor 'a'"},
      {R"({"a":{"dtype":"F32","shape":[1]}})", four_bytes, "tensor 'a' has no 'data_offsets'"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", four_bytes, "data_offsets of tensor 'a' must hold two integers"},
      {R"({"__metadata__":{"k":1}})", "", "metadata value of 'k' is not a string"},
      {R"({"__metadata__":{"k":"1","k":"2"}})", "", "metadata key 'k' appears twice"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       four_bytes + four_bytes, "tensor 'a' appears twice"},
      {R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", four_bytes, "tensor 'a' (dtype Q7"},
      {R"({"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})", four_bytes, "unsupported dtype"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four_bytes, "needs 8 bytes but its data_offsets hold 4"},
      {R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", four_bytes, "ends before it begins"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
       std::string(6, '\0'), "tensors 'a' and 'b' overlap"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       std::string(12, '\0'), "bytes 4 to 8 of the data section belong to no tensor"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(8, '\0'),
       "the data section has 8 bytes but the tensors cover 4"},
      // No elements, but strides that overflow int64 (UBSan reported a signed overflow before this check).
      {R"({"a":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}})", "",
       "is too large"},
  };
  for (const Case& c : cases) {
    INFO("header " << c.header);
    write_bytes(path, raw_file(c.header, c.data));
    const std::string error = error_of([&] { nn::load_safetensors(path); });
    CHECK(contains(error, "'" + path + "'"));
    CHECK(contains(error, c.problem));
  }

  // What the format allows is accepted: JSON whitespace anywhere, escapes (a surrogate pair for U+1F600),
  // any header order of the data offsets, and zero-size tensors.
  write_bytes(path, raw_file("{ \"\\u00e9\\ud83d\\ude00\\/\" : {\n \"shape\" : [ 1 ] , \"data_offsets\" : [ 4 , 8 ] ,"
                             " \"dtype\" : \"F32\" } ,\t\"z\":{\"dtype\":\"I64\",\"shape\":[0,2],\"data_offsets\":[0,0]},"
                             "\"first\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]} }\r\n  ",
                             std::string("\0\0\x80\x3f\0\0\0\x40", 8)));
  const nn::SafetensorsFile file = nn::load_safetensors(path);
  REQUIRE(file.tensors.size() == 3);
  CHECK(file.tensors[0].first == "\xc3\xa9\xf0\x9f\x98\x80/");
  CHECK(file.tensors[0].second.to_vector() == std::vector<double>{2.0});  // bytes 4..8: 0x40000000 = 2.0f
  CHECK(file.tensors[1].second.shape() == Shape{0, 2});
  CHECK(file.tensors[2].second.item() == 1.0);  // bytes 0..4: 0x3f800000 = 1.0f

  CHECK(contains(error_of([&] { nn::save_safetensors(path, {{"__metadata__", Tensor::zeros({1})}}); }), "is reserved"));
  CHECK(contains(error_of([&] { nn::save_safetensors(path, {{"x", Tensor()}}); }), "tensor 'x' is undefined"));
  CHECK(contains(error_of([&] { nn::save_safetensors(path, {{"\xff", Tensor::zeros({1})}}); }), "not valid UTF-8"));
}

TEST_CASE("safetensors: writes are atomic and never leave a temporary file or clobber the old file") {
  TemporaryDirectory directory("safetensors_atomic");
  const std::string path = directory.file("model.safetensors");
  nn::save_safetensors(path, {{"w", Tensor::from_vector({1, 2}, {2})}});
  CHECK(directory.listing() == std::vector<std::string>{"model.safetensors"});
  const std::string old_bytes = testing::read_file(path);

  // A write refused before any byte is written (a name given twice) leaves the old file as it was.
  CHECK(contains(error_of([&] { nn::save_safetensors(path, {{"w", Tensor::zeros({2})}, {"w", Tensor::zeros({2})}}); }),
                 "tensor 'w' is given twice"));
  CHECK(testing::read_file(path) == old_bytes);

  // A directory that does not exist: the temporary file cannot even be created.
  const std::string unreachable = directory.file("missing/model.safetensors");
  const std::string error = error_of([&] { nn::save_safetensors(unreachable, {{"w", Tensor::zeros({2})}}); });
  CHECK(contains(error, "'" + unreachable + "'"));
  CHECK(contains(error, "cannot create the temporary file"));

  // The last step fails (renaming over a directory): the complete temporary file is removed again.
  const std::string blocked = directory.file("blocked");
  fs::create_directories(fs::path(blocked) / "inside");
  CHECK(contains(error_of([&] { nn::save_safetensors(blocked, {{"w", Tensor::zeros({2})}}); }), "cannot rename"));
  CHECK(directory.listing() == std::vector<std::string>{"blocked", "model.safetensors"});
  CHECK(fs::is_directory(fs::path(blocked) / "inside"));

  // A FIFO (or a device) in the output's place is refused, not replaced; reading one fails at once instead of
  // waiting for a writer.
  const std::string pipe = directory.file("pipe");
  REQUIRE(::mkfifo(pipe.c_str(), 0600) == 0);
  CHECK(contains(error_of([&] { nn::save_safetensors(pipe, {{"w", Tensor::zeros({2})}}); }),
                 "exists and is not a regular file"));
  CHECK(fs::is_fifo(pipe));
  CHECK(contains(error_of([&] { nn::load_safetensors(pipe); }), "not a regular file"));
  CHECK(contains(error_of([&] { nn::read_metadata(pipe); }), "not a regular file"));
  fs::remove(pipe);

  // A name of 250 bytes is valid (NAME_MAX is 255); "<name>.tmp-<pid>" would not be, so the temporary's is cut.
  const std::string long_name = directory.file(std::string(246, 'w') + ".st");
  nn::save_safetensors(long_name, {{"w", Tensor::zeros({2})}});
  CHECK(nn::load_safetensors(long_name).tensors.size() == 1);
  fs::remove(long_name);

  // A successful write replaces the old file in one step.
  nn::save_safetensors(path, {{"v", Tensor::from_vector({5, 6, 7}, {3}, DType::f64)}});
  CHECK(directory.listing() == std::vector<std::string>{"blocked", "model.safetensors"});
  const nn::SafetensorsFile file = nn::load_safetensors(path);
  REQUIRE(file.tensors.size() == 1);
  CHECK(file.tensors[0].first == "v");
  CHECK(file.tensors[0].second.to_vector() == std::vector<double>{5, 6, 7});
}

TEST_CASE("load_weights: restores every parameter of a module exactly, converting the dtype") {
  TemporaryDirectory directory("load_weights");
  const std::string path = directory.file("tiny.safetensors");
  const auto saved = random_tiny_model(1);
  nn::save_weights(path, *saved, {{"arch", "tiny"}});
  CHECK(nn::read_metadata(path) == std::map<std::string, std::string>{{"arch", "tiny"}});

  const auto restored = random_tiny_model(2);
  const auto saved_parameters = saved->named_parameters();
  CHECK(element_bytes(restored->named_parameters()[0].second) != element_bytes(saved_parameters[0].second));
  nn::load_weights(path, *restored);
  const auto restored_parameters = restored->named_parameters();
  REQUIRE(restored_parameters.size() == 4);  // fc.weight, fc.bias, norm.weight, norm.bias
  for (size_t i = 0; i < restored_parameters.size(); ++i) {
    INFO("parameter " << saved_parameters[i].first);
    CHECK(element_bytes(restored_parameters[i].second) == element_bytes(saved_parameters[i].second));
    CHECK(restored_parameters[i].second.requires_grad());
    CHECK(restored_parameters[i].second.is_leaf());
  }
  // The layers see the loaded values: they share the registered tensors.
  CHECK(element_bytes(restored->norm->weight) == element_bytes(saved->norm->weight));

  // f32 file into a float64 model: every float32 value is exact in float64.
  const auto wide = random_tiny_model(3);
  wide->to(DType::f64);
  nn::load_weights(path, *wide);
  for (size_t i = 0; i < saved_parameters.size(); ++i) {
    CHECK(wide->named_parameters()[i].second.dtype() == DType::f64);
    CHECK(wide->named_parameters()[i].second.to_vector() == saved_parameters[i].second.to_vector());
  }
}

TEST_CASE("load_weights: one error lists every missing, unexpected and mis-shaped name and nothing is loaded") {
  TemporaryDirectory directory("load_weights_mismatch");
  const std::string path = directory.file("tiny.safetensors");
  const auto saved = random_tiny_model(1);
  nn::NamedTensors tensors = saved->named_parameters();
  tensors.emplace_back("extra.scale", Tensor::ones({1}));
  nn::save_safetensors(path, tensors);

  // fc matches, norm is 5 wide instead of 4, head is not in the file, extra.scale is not in the model.
  TinyModel model(5, true);
  const std::string fc_before = element_bytes(model.fc->weight);
  const std::string error = error_of([&] { nn::load_weights(path, model); });
  CHECK(contains(error, "load_weights: '" + path + "' does not match (nothing was loaded)"));
  CHECK(contains(error, "missing from the file: head.weight, head.bias"));
  CHECK(contains(error, "unexpected in the file: extra.scale"));
  CHECK(contains(error, "norm.weight: shape (4) in the file, (5) expected; norm.bias: shape (4) in the file, (5) expected"));
  CHECK_FALSE(contains(error, "fc.weight"));
  CHECK(element_bytes(model.fc->weight) == fc_before);

  // An index tensor where a float parameter is expected is a dtype mismatch, not a conversion.
  tensors = saved->named_parameters();
  tensors[1].second = Tensor::from_indices({1, 2, 3, 4}, {4});  // fc.bias
  nn::save_safetensors(path, tensors);
  TinyModel same_shape(4, false);
  CHECK(contains(error_of([&] { nn::load_weights(path, same_shape); }), "fc.bias: dtype i64 in the file, f32 expected"));
}

TEST_CASE("training state: tensors, counters, generator state and metadata survive a save and load") {
  TemporaryDirectory directory("training_state");
  const std::string path = directory.file("state.safetensors");
  nn::TrainingState state;
  state.tensors = {{"exp_avg.fc.weight", Tensor::from_vector({0.25, -1, 3, 1e-30}, {2, 2})},
                   {"step.fc.weight", Tensor::from_indices({1234}, {})}};
  state.step = 1234;
  state.epoch = 7;
  state.rng_seed = std::numeric_limits<uint64_t>::max();  // beyond int64 and beyond a double's 53 bits
  state.rng_offset_tensors = 123456789012345ull;
  state.rng_offset_dropout = 987654321ull;
  state.metadata = {{"model", "vit_tiny"}};
  nn::save_training_state(path, state);

  const nn::TrainingState loaded = nn::load_training_state(path);
  CHECK(loaded.step == 1234);
  CHECK(loaded.epoch == 7);
  CHECK(loaded.rng_seed == std::numeric_limits<uint64_t>::max());
  CHECK(loaded.rng_offset_tensors == 123456789012345ull);
  CHECK(loaded.rng_offset_dropout == 987654321ull);
  CHECK(loaded.metadata == state.metadata);
  REQUIRE(loaded.tensors.size() == 2);
  CHECK(loaded.tensors[0].first == "exp_avg.fc.weight");
  CHECK(element_bytes(loaded.tensors[0].second) == element_bytes(state.tensors[0].second));
  CHECK(loaded.tensors[1].second.dim() == 0);
  CHECK(loaded.tensors[1].second.to_indices() == std::vector<int64_t>{1234});

  // Restoring: a generator continues the same stream, the optimizer's tensors are filled in place.
  Generator original(state.rng_seed), resumed(loaded.rng_seed);
  original.set_offset(state.rng_offset_tensors);
  resumed.set_offset(loaded.rng_offset_tensors);
  CHECK(rand({5}, DType::f64, resumed).to_vector() == rand({5}, DType::f64, original).to_vector());
  const nn::NamedTensors optimizer_state = {{"exp_avg.fc.weight", Tensor::zeros({2, 2})},
                                            {"step.fc.weight", Tensor::from_indices({0}, {})}};
  nn::assign_named_tensors("load_state", path, loaded.tensors, optimizer_state);
  CHECK(optimizer_state[0].second.to_vector() == state.tensors[0].second.to_vector());
  CHECK(optimizer_state[1].second.to_indices() == std::vector<int64_t>{1234});
}

TEST_CASE("training state: reserved keys, foreign files and malformed counters are refused") {
  TemporaryDirectory directory("training_state_errors");
  const std::string path = directory.file("state.safetensors");
  nn::TrainingState state;
  state.metadata = {{"vt.step", "5"}};
  CHECK(contains(error_of([&] { nn::save_training_state(path, state); }), "metadata key 'vt.step' uses the reserved prefix"));
  state.metadata.clear();
  state.step = -1;
  CHECK(contains(error_of([&] { nn::save_training_state(path, state); }), "must not be negative"));

  nn::save_weights(path, *random_tiny_model(1));
  CHECK(contains(error_of([&] { nn::load_training_state(path); }), "'" + path + "' is not a vt training-state file"));

  auto with_counters = [&](const std::string& step, const std::string& rng_seed, bool with_epoch) {
    std::map<std::string, std::string> metadata = {
        {"vt.format", "training_state/2"}, {"vt.step", step},         {"vt.rng_seed", rng_seed},
        {"vt.rng_offset.tensors", "0"},     {"vt.rng_offset.dropout", "0"}};
    if (with_epoch) metadata["vt.epoch"] = "3";
    nn::save_safetensors(path, {}, metadata);
    return error_of([&] { nn::load_training_state(path); });
  };
  CHECK(with_counters("12", "5", true).empty());
  CHECK(contains(with_counters("12x", "5", true), "metadata 'vt.step' = '12x' is not a valid integer"));
  CHECK(contains(with_counters("", "5", true), "metadata 'vt.step' = '' is not a valid integer"));
  CHECK(contains(with_counters("12", "-1", true), "metadata 'vt.rng_seed' = '-1' is not a valid integer"));
  CHECK(contains(with_counters("12", "18446744073709551616", true), "'vt.rng_seed' = '18446744073709551616' is not"));
  CHECK(contains(with_counters("12", "5", false), "metadata 'vt.epoch' is missing"));
  CHECK(contains(with_counters("-3", "5", true), "negative step or epoch"));
}
