// Flush-to-zero / denormals-are-zero through the SSE control register (x86-64)
// or the FZ bit of FPCR (AArch64); a no-op elsewhere.
#include "kernels/cpu/fpenv.h"

#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace lockstep::cpu {
namespace {
#if defined(__x86_64__) || defined(__i386__)
constexpr unsigned kFtz = 0x8000;  // MXCSR bit 15: results that would be denormal are 0
constexpr unsigned kDaz = 0x0040;  // MXCSR bit 6: denormal inputs are read as 0
#elif defined(__aarch64__)
constexpr uint64_t kFz = uint64_t(1) << 24;  // FPCR.FZ covers both directions
uint64_t read_fpcr() {
  uint64_t v;
  asm volatile("mrs %0, fpcr" : "=r"(v));
  return v;
}
#endif
}  // namespace

bool set_flush_denormals(bool on) {
#if defined(__x86_64__) || defined(__i386__)
  const unsigned csr = _mm_getcsr();
  _mm_setcsr(on ? (csr | kFtz | kDaz) : (csr & ~(kFtz | kDaz)));
  return true;
#elif defined(__aarch64__)
  const uint64_t v = read_fpcr();
  const uint64_t w = on ? (v | kFz) : (v & ~kFz);
  asm volatile("msr fpcr, %0" : : "r"(w));
  return true;
#else
  return !on;
#endif
}

bool flushing_denormals() {
#if defined(__x86_64__) || defined(__i386__)
  return (_mm_getcsr() & (kFtz | kDaz)) == (kFtz | kDaz);
#elif defined(__aarch64__)
  return (read_fpcr() & kFz) != 0;
#else
  return false;
#endif
}

}  // namespace lockstep::cpu
