// Fuzzes the CIFAR-10 binary reader: the input is test_batch.bin of a folder (with the first byte choosing the
// channels, size and example limit), plus, after a 0xFF 0xFE separator when there is one, batches.meta.txt.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string_view>

#include "datasets/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  if (size < 1) return 0;
  static const fs::path dir = fs::temp_directory_path() / ("vt_fuzz_cifar_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const size_t separator = bytes.find("\xff\xfe");
  std::ofstream(dir / "test_batch.bin", std::ios::binary | std::ios::trunc) << bytes.substr(0, separator);
  fs::remove(dir / "batches.meta.txt");
  if (separator != std::string_view::npos)
    std::ofstream(dir / "batches.meta.txt", std::ios::binary) << bytes.substr(separator + 2);
  vt::data::DatasetOptions options;
  options.channels = 1 + data[0] % 4;
  options.image_size = 1 + (data[0] >> 2) % 40;
  options.limit = data[0] >> 6;
  try {
    const auto dataset = vt::data::open_dataset(dir.string(), "test", options);
    for (int64_t i = 0; i < dataset->size(); ++i) dataset->get(i);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
