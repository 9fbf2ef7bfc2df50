// Fuzzes checkpoint metadata -> model config: the input is "key=value" lines (a checkpoint's metadata), read
// by config_from_metadata; a config that passes is counted, and built when it is small.
#include <sstream>
#include <stdexcept>

#include "models/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::map<std::string, std::string> metadata;
  std::istringstream lines(std::string(reinterpret_cast<const char*>(data), size));
  for (std::string line; std::getline(lines, line);) {
    const size_t equals = line.find('=');
    if (equals != std::string::npos) metadata["vt.model." + line.substr(0, equals)] = line.substr(equals + 1);
  }
  try {
    const vt::models::ModelConfig config = vt::models::config_from_metadata(metadata);
    vt::models::macs_per_image(config);
    if (vt::models::parameter_count(config) <= 20000) vt::models::create_model(config);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
