// Shared by the fuzz harnesses: the input bytes as a file the readers can open by path. The bytes go into an
// in-memory file (memfd), opened as /proc/self/fd/N, so that every run of a harness reads a real, regular file
// without touching the disk.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace vt::fuzz {

inline std::string as_file(const uint8_t* data, size_t size) {
  static const int descriptor = ::memfd_create("vt-fuzz-input", MFD_CLOEXEC);
  if (descriptor < 0 || ::ftruncate(descriptor, 0) != 0 ||
      (size > 0 && ::pwrite(descriptor, data, size, 0) != static_cast<ssize_t>(size)))
    std::abort();  // the harness itself failed, not the code under test
  return "/proc/self/fd/" + std::to_string(descriptor);
}

}  // namespace vt::fuzz
