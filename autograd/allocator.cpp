// Caching CPU allocator. Conventions: sizes are rounded up to 64 bytes and cached by exact rounded size,
// which is enough for training, where every step repeats the previous step's shapes.
#include "autograd/allocator.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "autograd/tensor.h"

namespace vt {

namespace {
struct Cache {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;
  AllocatorStats stats;
};
Cache& cache() {
  static Cache* instance = new Cache();  // never destroyed: tensors in static storage may outlive main
  return *instance;
}
size_t round_up(size_t bytes) { return ((bytes == 0 ? 1 : bytes) + 63) / 64 * 64; }
}  // namespace

void* cpu_allocate(size_t bytes) {
  const size_t size = round_up(bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.stats.live_bytes += size;
    c.stats.peak_live_bytes = std::max(c.stats.peak_live_bytes, c.stats.live_bytes);
    auto it = c.free_blocks.find(size);
    if (it != c.free_blocks.end() && !it->second.empty()) {
      void* block = it->second.back();
      it->second.pop_back();
      c.stats.cached_bytes -= size;
      return block;
    }
    ++c.stats.system_allocations;
  }
  void* block = std::aligned_alloc(64, size);
  if (!block) {  // the cached blocks may be what is missing: return them to the system and try once more
    empty_cache();
    block = std::aligned_alloc(64, size);
  }
  if (!block) {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.stats.live_bytes -= size;
    fail("allocate", "out of memory: " + std::to_string(size) + " bytes requested, " +
                         std::to_string(c.stats.live_bytes) + " bytes in use by tensors (the cache was emptied)");
  }
  return block;
}

void cpu_release(void* data, size_t bytes) {
  if (!data) return;
  const size_t size = round_up(bytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.free_blocks[size].push_back(data);
  c.stats.cached_bytes += size;
  c.stats.live_bytes -= size;
}

AllocatorStats allocator_stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.stats;
}

void reset_peak_live_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  c.stats.peak_live_bytes = c.stats.live_bytes;
}

void empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (auto& [size, blocks] : c.free_blocks)
    for (void* block : blocks) std::free(block);
  c.free_blocks.clear();
  c.stats.cached_bytes = 0;
}

}  // namespace vt
