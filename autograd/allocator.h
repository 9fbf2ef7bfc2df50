// A caching allocator for tensor memory: freed blocks are kept in per-size free lists and handed out again,
// so a training step that repeats the same shapes allocates nothing from the system once warmed up.
// Blocks are 64-byte aligned (one cache line, and enough for any SIMD load).
#pragma once

#include <cstddef>
#include <cstdint>

namespace vt {

void* cpu_allocate(size_t bytes);
void cpu_release(void* data, size_t bytes);

struct AllocatorStats {
  uint64_t system_allocations = 0;  // blocks ever obtained from the system
  uint64_t cached_bytes = 0;        // bytes held in free lists
  uint64_t live_bytes = 0;          // bytes handed out and not yet released
  uint64_t peak_live_bytes = 0;     // the most live_bytes has been since the start or reset_peak_live_bytes()
};
AllocatorStats allocator_stats();
void reset_peak_live_bytes();
void empty_cache();  // returns every cached block to the system

}  // namespace vt
