// Fuzzes the safetensors reader: any bytes either load or fail with a vt error; nothing else may happen.
#include <stdexcept>

#include "nn/safetensors.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = vt::fuzz::as_file(data, size);
  try {
    const vt::nn::SafetensorsFile file = vt::nn::load_safetensors(path);
    for (const auto& [name, tensor] : file.tensors) tensor.numel();
  } catch (const std::runtime_error&) {
  }
  return 0;
}
