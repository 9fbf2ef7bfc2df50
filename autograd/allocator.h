// Caching allocators for tensor memory: freed blocks are kept in per-size free lists and handed out again, so a
// training step that repeats the same shapes allocates nothing from the system once warmed up. BlockCache is
// the bookkeeping both devices share; the CPU's blocks are 64-byte aligned (one cache line, and enough for any
// SIMD load), the GPU's come from cudaMalloc (autograd/cuda.cu).
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace vt {

struct AllocatorStats {
  uint64_t system_allocations = 0;  // blocks ever obtained from the system (malloc, or cudaMalloc)
  uint64_t cached_bytes = 0;        // bytes held in free lists
  uint64_t live_bytes = 0;          // bytes handed out and not yet released
  uint64_t peak_live_bytes = 0;     // the most live_bytes has been since the start or reset_peak_live_bytes()
};

// Free lists by exact block size, and the counts above; thread-safe (loader threads allocate too). How a block
// is obtained from the system and returned to it is the allocator's own.
class BlockCache {
 public:
  // A cached block of `size` bytes, now live, or nullptr: then the caller obtains one and calls add_new.
  void* take(size_t size);
  void add_new(size_t size);  // a block of `size` bytes just obtained from the system, now live
  void put(void* block, size_t size);
  AllocatorStats stats();
  void reset_peak_live_bytes();
  // Hands every cached block to `free_block` and forgets it.
  void drain(void (*free_block)(void*));

 private:
  void count_live(size_t size);
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_blocks_;
  AllocatorStats stats_;
};

void* cpu_allocate(size_t bytes);
void cpu_release(void* data, size_t bytes);
AllocatorStats allocator_stats();
void reset_peak_live_bytes();
void empty_cache();  // returns every cached block to the system

}  // namespace vt
