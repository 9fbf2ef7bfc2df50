// Fuzzes the image decoders behind the JPEG guard and the pixel limit: the first byte picks the channel count
// and the output size the image is converted to, the rest is the file.
#include <stdexcept>

#include "datasets/dataset.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int channels = 1 + data[0] % 4, side = 1 + (data[0] >> 2) % 48;
  const std::string path = vt::fuzz::as_file(data + 1, size - 1);
  try {
    // A limit of 2^18 pixels keeps each run fast (a fuzzed header asks for the largest image it may); the
    // default 64 MP limit is checked the same way.
    vt::data::load_image_file(path, channels, side, int64_t{1} << 18);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
