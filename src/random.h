// Counter-based randomness: every random number is a pure function of
// (seed, stream, counter), so results never depend on thread timing, replica
// count or how work is split — the basis of reproducible runs.
#pragma once

#include <cstdint>

namespace lockstep {

// splitmix64 finaliser: a strong 64-bit mix.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

inline uint64_t mix_seed(uint64_t seed, uint64_t stream) { return mix64(mix64(seed) ^ stream); }

// Uniform in [0, 1) with 53 random bits.
inline double uniform01(uint64_t stream_seed, uint64_t counter) {
  return double(mix64(stream_seed ^ mix64(counter)) >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace lockstep
