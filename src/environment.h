// What a run's numbers depend on besides its config: the lockstep build (version,
// git commit, a hash of the numeric source files, compiler, flags, BLAS) and the
// machine (CPU model and instruction sets, MPI library). Recorded in every run
// folder's manifest.json and in golden baselines (src/baseline.h).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lockstep {

inline constexpr const char* kLockstepVersion = "0.1.0";

// One flat JSON object of strings: lockstep_version, git_commit, numeric_code,
// compiler, build_flags, blas, cpu_model, cpu_isa, mpi.
nlohmann::json run_environment();

// The entries that change floating-point results when they differ (the kernels
// chosen, the code generated, the numeric code itself). The others (git commit,
// CPU model name, MPI library) are reported but do not loosen a comparison.
const std::vector<std::string>& numeric_environment_keys();

}  // namespace lockstep
