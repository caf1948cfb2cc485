// What machine a benchmark ran on, for its header: the CPU model and the vector
// ISA lockstep was built for and the CPU has, and the single-core FMA peak
// measured here (so a step's GFLOP/s can be read as a fraction of the machine).
// Header-only; benchmarks only.
#pragma once

#include <algorithm>
#include <chrono>
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
// 0 where this build has no such FMA. Ten independent accumulators hide the
// FMA latency; about 50 ms.
inline double fma_peak_gflops(int bits) {
  constexpr int kAcc = 10;
  constexpr long kIters = 4'000'000;
  const auto t0 = std::chrono::steady_clock::now();
  float sink = 0;
  double lanes = 0;
  if (bits == 512) {
#if defined(__AVX512F__)
    __m512 acc[kAcc];
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_ps(float(i));
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
    for (long it = 0; it < kIters; ++it) {
      for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
      asm volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]),
                   "+v"(acc[5]), "+v"(acc[6]), "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]));
    }
    for (int i = 0; i < kAcc; ++i) sink += _mm512_reduce_add_ps(acc[i]);
    lanes = 16;
#endif
  } else if (bits == 256) {
#if defined(__AVX2__) && defined(__FMA__)
    __m256 acc[kAcc];
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_set1_ps(float(i));
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
    for (long it = 0; it < kIters; ++it) {
      for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
      asm volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]), "+x"(acc[4]),
                   "+x"(acc[5]), "+x"(acc[6]), "+x"(acc[7]), "+x"(acc[8]), "+x"(acc[9]));
    }
    float out[8];
    for (int i = 0; i < kAcc; ++i) {
      _mm256_storeu_ps(out, acc[i]);
      for (float f : out) sink += f;
    }
    lanes = 8;
#endif
  }
  if (lanes == 0) return 0;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  volatile float keep = sink;
  (void)keep;
  return 2.0 * lanes * kAcc * double(kIters) / s / 1e9;
}

// The best of a few tries of the widest FMA this build has (noise only lowers it).
inline double fma_peak_best(int bits, int tries = 3) {
  double best = 0;
  for (int i = 0; i < tries; ++i) best = std::max(best, fma_peak_gflops(bits));
  return best;
}

}  // namespace lockstep::bench
