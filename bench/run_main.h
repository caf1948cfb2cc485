// The benchmarks' main(): runs one, and turns an exception that escapes it (a
// data file that is not there or is malformed) into one line naming the
// benchmark, and exit 1, where it would abort. (A bad flag is CLI11's to report,
// with its own exit code.) Benchmarks only.
#pragma once

#include <cstdio>
#include <exception>

namespace lockstep::bench {

inline int run_main(const char* name, int (*body)(int, char**), int argc, char** argv) {
  try {
    return body(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace lockstep::bench
