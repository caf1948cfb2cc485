// What machine a benchmark ran on, for its header: the CPU model and the vector
// ISA lockstep was built for and the CPU has, and the single-core FMA peak
// measured here (so a step's GFLOP/s can be read as a fraction of the machine).
// Header-only; benchmarks only.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace lockstep::bench {

// "Intel(R) Xeon(R) ... (avx512f avx2 fma amx_tile)" from /proc/cpuinfo.
inline std::string cpu_description() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  std::set<std::string> flags;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    if (line.rfind("model name", 0) == 0 && model == "unknown CPU") model = line.substr(colon + 2);
    if (line.rfind("flags", 0) == 0 && flags.empty()) {
      std::istringstream words(line.substr(colon + 1));
      for (std::string w; words >> w;) flags.insert(w);
    }
  }
  std::string isa;
  for (const char* f : {"avx512f", "avx512_bf16", "amx_tile", "avx2", "fma"}) {
    if (flags.count(f)) isa += (isa.empty() ? "" : " ") + std::string(f);
  }
  const char* built =
#if defined(__AVX512F__)
      "avx512";
#elif defined(__AVX2__)
      "avx2";
#else
      "baseline x86-64";
#endif
  return model + " (" + (isa.empty() ? "no AVX" : isa) + "; built for " + built + ")";
}

// Single-core fp32 FMA peak in GFLOP/s with `bits`-wide vectors (256 or 512),
// 0 where this build has no such FMA. Twelve independent chains in named
// variables (an array with asm barriers let the compiler spill them) hide the
// FMA latency on two FMA ports; about 0.1 s.
template <typename V, typename Fma, typename Set>
double fma_chains_gflops(Fma fma, Set set, double lanes) {
  constexpr long kIters = 10'000'000;
  const V m = set(0.999f), b = set(0.001f);
  // Distinct starting values: equal chains would be computed once.
  V a0 = set(1), a1 = set(2), a2 = set(3), a3 = set(4), a4 = set(5), a5 = set(6), a6 = set(7),
    a7 = set(8), a8 = set(9), a9 = set(10), a10 = set(11), a11 = set(12);
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < kIters; ++i) {
    a0 = fma(a0, m, b), a1 = fma(a1, m, b), a2 = fma(a2, m, b), a3 = fma(a3, m, b);
    a4 = fma(a4, m, b), a5 = fma(a5, m, b), a6 = fma(a6, m, b), a7 = fma(a7, m, b);
    a8 = fma(a8, m, b), a9 = fma(a9, m, b), a10 = fma(a10, m, b), a11 = fma(a11, m, b);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Keep every chain alive: the compiler may not drop work whose result is read.
  alignas(64) float sink[16];
  V all[12] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
  float keep = 0;
  for (const V& v : all) {
    std::memcpy(sink, &v, sizeof(V));
    keep += sink[0];
  }
  volatile float out = keep;
  (void)out;
  return 2.0 * lanes * 12 * double(kIters) / s / 1e9;
}

inline double fma_peak_gflops(int bits) {
#if defined(__AVX512F__)
  if (bits == 512) {
    return fma_chains_gflops<__m512>([](__m512 x, __m512 y, __m512 z) { return _mm512_fmadd_ps(x, y, z); },
                                     [](float f) { return _mm512_set1_ps(f); }, 16);
  }
#endif
#if defined(__AVX2__) && defined(__FMA__)
  if (bits == 256) {
    return fma_chains_gflops<__m256>([](__m256 x, __m256 y, __m256 z) { return _mm256_fmadd_ps(x, y, z); },
                                     [](float f) { return _mm256_set1_ps(f); }, 8);
  }
#endif
  return 0;
}

// The best of a few tries of the widest FMA this build has (noise only lowers it).
inline double fma_peak_best(int bits, int tries = 3) {
  double best = 0;
  for (int i = 0; i < tries; ++i) best = std::max(best, fma_peak_gflops(bits));
  return best;
}

}  // namespace lockstep::bench
