// Datasets: the CIFAR-10 binary files and image folders (root/<class>/<image>, classes sorted by name).
// Conventions: labels are class indices in [0, classes); every image comes out with the dataset's channel
// count and size (converted and resized where the file differs); bad files are errors naming the file,
// or, with skip_bad, skipped with one warning giving the count.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "datasets/image.h"

namespace vt::data {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Example get(int64_t index) const = 0;  // thread-safe
  virtual const std::vector<std::string>& classes() const = 0;
  virtual int channels() const = 0;
  virtual int image_size() const = 0;  // square images of this side
};

// Images larger than this are refused from their header, before any pixel is decoded: a few hundred KB of
// PNG can declare 16000 x 16000 pixels (1.4 GB decoded). Far above any dataset image, and configurable.
constexpr int64_t kDefaultMaxPixels = 64'000'000;

struct DatasetOptions {
  int channels = 3;        // the model's input channels: grayscale, RGB and RGBA are converted to this
  int image_size = 32;     // images of another size are resized (bilinear)
  bool skip_bad = false;   // warn and skip unreadable files (corrupt, not regular, too large) instead of failing
  int64_t limit = 0;       // use only the first `limit` examples of a split, spread over classes (0: all)
  int64_t max_pixels = kDefaultMaxPixels;
  // The label space: class i is named classes[i], and each class folder is matched to its name (a folder
  // named otherwise is an error), so that test/ labels agree with train/'s even when test/ lacks a class.
  // Empty: the split's own class folders, sorted by name.
  std::vector<std::string> classes;
};

// Decodes one image file (PNG, JPEG, BMP, TGA, GIF) to `channels` channels and `size` x `size` pixels.
Image load_image_file(const std::string& path, int channels, int size, int64_t max_pixels = kDefaultMaxPixels);

// A 64-bit digest of a dataset's class names, labels and pixels: equal for the same data however it is stored
// (the training state keeps it, so that a resumed run can tell that its data changed).
uint64_t fingerprint(const Dataset& dataset);

// `dir` holds either the CIFAR-10 binary files (data_batch_1.bin ... data_batch_5.bin, test_batch.bin,
// possibly inside cifar-10-batches-bin/) or train/ and test/ image folders. split: "train" or "test".
std::unique_ptr<Dataset> open_dataset(const std::string& dir, const std::string& split, const DatasetOptions& options);

}  // namespace vt::data
