// Counter-based randomness for the trunk: every random number is a pure
// function of (seed, stream, counter), so results never depend on thread
// timing, replica count or how work is split — the basis of reproducible runs.
// The 64-bit mix is the input pipeline's (data/random.h).
#pragma once

#include <cstdint>

#include "data/random.h"

namespace lockstep {

inline uint64_t mix_seed(uint64_t seed, uint64_t stream) { return mix64(mix64(seed) ^ stream); }

// Uniform in [0, 1) with 53 random bits.
inline double uniform01(uint64_t stream_seed, uint64_t counter) {
  return double(mix64(stream_seed ^ mix64(counter)) >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace lockstep
