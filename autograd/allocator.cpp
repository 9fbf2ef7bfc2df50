// The caching allocators' shared bookkeeping, and the CPU's allocator. Conventions: CPU sizes are rounded up to
// 64 bytes and cached by exact rounded size, which is enough for training, where every step repeats the
// previous step's shapes.
#include "autograd/allocator.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "autograd/tensor.h"

namespace vt {

void BlockCache::count_live(size_t size) {
  stats_.live_bytes += size;
  stats_.peak_live_bytes = std::max(stats_.peak_live_bytes, stats_.live_bytes);
}

void* BlockCache::take(size_t size) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = free_blocks_.find(size);
  if (found == free_blocks_.end() || found->second.empty()) return nullptr;
  void* block = found->second.back();
  found->second.pop_back();
  stats_.cached_bytes -= size;
  count_live(size);
  return block;
}

void BlockCache::add_new(size_t size) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.system_allocations;
  count_live(size);
}

void BlockCache::put(void* block, size_t size) {
  std::lock_guard<std::mutex> lock(mutex_);
  free_blocks_[size].push_back(block);
  stats_.cached_bytes += size;
  stats_.live_bytes -= size;
}

AllocatorStats BlockCache::stats() {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void BlockCache::reset_peak_live_bytes() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_live_bytes = stats_.live_bytes;
}

void BlockCache::drain(void (*free_block)(void*)) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& [size, blocks] : free_blocks_)
    for (void* block : blocks) free_block(block);
  free_blocks_.clear();
  stats_.cached_bytes = 0;
}

namespace {
BlockCache& cache() {
  static BlockCache* instance = new BlockCache();  // never destroyed: tensors in static storage may outlive main
  return *instance;
}
size_t round_up(size_t bytes) { return ((bytes == 0 ? 1 : bytes) + 63) / 64 * 64; }
}  // namespace

void* cpu_allocate(size_t bytes) {
  const size_t size = round_up(bytes);
  if (void* block = cache().take(size)) return block;
  void* block = std::aligned_alloc(64, size);
  if (!block) {  // the cached blocks may be what is missing: return them to the system and try once more
    empty_cache();
    block = std::aligned_alloc(64, size);
  }
  if (!block)
    fail("allocate", "out of memory: " + std::to_string(size) + " bytes requested, " +
                         std::to_string(cache().stats().live_bytes) + " bytes in use by tensors (the cache was emptied)");
  cache().add_new(size);
  return block;
}

void cpu_release(void* data, size_t bytes) {
  if (data) cache().put(data, round_up(bytes));
}

AllocatorStats allocator_stats() { return cache().stats(); }
void reset_peak_live_bytes() { cache().reset_peak_live_bytes(); }
void empty_cache() { cache().drain(std::free); }

}  // namespace vt
