// Test runner: doctest's main, after the same OpenBLAS kernel check as the `vt` program.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "autograd/blas.h"

int main(int argc, char** argv) {
  vt::ensure_fast_blas(argc, argv);
  doctest::Context context(argc, argv);
  return context.run();
}
