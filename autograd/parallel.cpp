// One thread-count setting for our OpenMP kernels and for OpenBLAS.
#include "autograd/parallel.h"

#include "autograd/tensor.h"

extern "C" void openblas_set_num_threads(int);

namespace vt {

void set_num_threads(int threads) {
  if (threads < 1) fail("set_num_threads", "needs at least 1 thread, got " + std::to_string(threads));
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  openblas_set_num_threads(threads);
}

int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace vt
