// One thread-count setting for our OpenMP kernels, which also run the tiles of every GEMM.
#include "autograd/parallel.h"

#include "autograd/tensor.h"

namespace vt {

void set_num_threads(int threads) {
  if (threads < 1) fail("set_num_threads", "needs at least 1 thread, got " + std::to_string(threads));
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
}

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace vt
