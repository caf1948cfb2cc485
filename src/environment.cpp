// The build facts come from CMake: compile definitions on this file only and a
// generated header with the git commit (src/CMakeLists.txt, src/git_commit.cmake),
// so a new commit recompiles one file; the machine facts are read at run time
// (/proc/cpuinfo, the compiler's CPU probe, MPI, the GEMM library).
#include "src/environment.h"

#include <mpi.h>

#include <fstream>

#include "kernels/cpu/ops.h"
#include "lockstep_git_commit.h"

#ifndef LOCKSTEP_GIT_COMMIT
#define LOCKSTEP_GIT_COMMIT "unknown"
#endif
#ifndef LOCKSTEP_NUMERIC_CODE
#define LOCKSTEP_NUMERIC_CODE "unknown"
#endif
#ifndef LOCKSTEP_BUILD_FLAGS
#define LOCKSTEP_BUILD_FLAGS "unknown"
#endif

namespace lockstep {
namespace {

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

// The vector extensions the kernels and OpenBLAS may choose between.
std::string cpu_isa() {
  std::string s;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const auto add = [&](bool has, const char* name) {
    if (has) s += (s.empty() ? "" : " ") + std::string(name);
  };
  add(__builtin_cpu_supports("avx512f"), "avx512f");
  add(__builtin_cpu_supports("avx512bw"), "avx512bw");
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  add(__builtin_cpu_supports("avx"), "avx");
  add(__builtin_cpu_supports("sse4.2"), "sse4.2");
  return "x86_64: " + s;
#elif defined(__aarch64__)
  return "aarch64";
#else
  return "unknown";
#endif
}

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

std::string mpi_library() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  MPI_Get_library_version(text, &len);
  std::string s(text, size_t(len));
  const auto end = s.find_first_of(",\n");
  return end == std::string::npos ? s : s.substr(0, end);
}

}  // namespace

nlohmann::json run_environment() {
  return {{"lockstep_version", kLockstepVersion},
          {"git_commit", LOCKSTEP_GIT_COMMIT},
          {"numeric_code", LOCKSTEP_NUMERIC_CODE},
          {"compiler", compiler()},
          {"build_flags", LOCKSTEP_BUILD_FLAGS},
          {"blas", cpu::gemm_library()},
          {"cpu_model", cpu_model()},
          {"cpu_isa", cpu_isa()},
          {"mpi", mpi_library()}};
}

const std::vector<std::string>& numeric_environment_keys() {
  static const std::vector<std::string> keys = {"lockstep_version", "numeric_code", "compiler",
                                                "build_flags", "blas", "cpu_isa"};
  return keys;
}

}  // namespace lockstep
