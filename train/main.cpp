// The `vt` program: the OpenBLAS and libgomp settings, then the command line (train/lib/cli.cpp).
#include <cstdio>

#include "autograd/blas.h"
#include "train/lib/commands.h"

int main(int argc, char** argv) {
  vt::restart_with_library_settings(argc, argv);
  // Line-buffered even into a file or pipe, so that `vt train > log` can be followed with tail -f.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return vt::run_cli(argc, argv);
}
