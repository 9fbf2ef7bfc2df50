// Test runner: doctest's main, after the same OpenBLAS and libgomp settings as the `vt` program.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "autograd/blas.h"

int main(int argc, char** argv) {
  vt::restart_with_library_settings(argc, argv);
  doctest::Context context(argc, argv);
  return context.run();
}
