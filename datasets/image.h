// Images as the data pipeline sees them: 8-bit pixels, height x width x channels (HWC, row-major), the
// layout stb_image decodes to. Augmentations work on these; batching converts to float (B, C, H, W).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vt::data {

struct Image {
  int height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // (H, W, C)

  Image() = default;
  Image(int height, int width, int channels) : height(height), width(width), channels(channels),
                                               pixels(static_cast<size_t>(height) * width * channels, 0) {}
  uint8_t& at(int y, int x, int c) { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }
  uint8_t at(int y, int x, int c) const { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }
};

// One labelled example.
struct Example {
  Image image;
  int64_t label = 0;
};

}  // namespace vt::data
