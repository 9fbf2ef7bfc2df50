// Test runner: doctest's main, after the same OpenBLAS and libgomp settings as the `vt` program.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "autograd/blas.h"

// In the sanitizer build, a refused allocation returns null as it does without ASan (which would abort instead),
// so that the tests see the allocator's own out-of-memory error.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }

int main(int argc, char** argv) {
  vt::restart_with_library_settings(argc, argv);
  doctest::Context context(argc, argv);
  return context.run();
}
