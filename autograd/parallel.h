// CPU parallelism: OpenMP for our kernels and for the tiles of every GEMM (OpenBLAS itself runs on one
// thread, see gemm in blas.h), so set_num_threads is the one knob. parallel_for splits [begin, end) into one
// contiguous chunk per thread and runs serially when the range is smaller than `grain` (threads cost ~µs to wake).
// An exception thrown by a thread's chunk reaches the caller once every thread has finished.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace vt {

void set_num_threads(int threads);
int num_threads();

template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& body) {
  const int64_t n = end - begin;
  if (n <= 0) return;
#ifdef _OPENMP
  if (n > grain && !omp_in_parallel() && omp_get_max_threads() > 1) {
    // An exception may not leave an OpenMP region (the runtime would call std::terminate), so the first one is
    // kept and thrown again here: a bad_alloc in a thread's buffer is then an error, not an abort.
    std::exception_ptr failure;
#pragma omp parallel
    {
      const int64_t threads = omp_get_num_threads();
      const int64_t chunk = (n + threads - 1) / threads;
      const int64_t lo = begin + chunk * omp_get_thread_num();
      const int64_t hi = std::min(end, lo + chunk);
      try {
        if (lo < hi) body(lo, hi);
      } catch (...) {
#pragma omp critical(vt_parallel_for_failure)
        if (!failure) failure = std::current_exception();
      }
    }
    if (failure) std::rethrow_exception(failure);
    return;
  }
#endif
  (void)grain;
  body(begin, end);
}

}  // namespace vt
