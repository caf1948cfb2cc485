// AlignedVector: a std::vector whose storage starts on a 64-byte (cache-line)
// boundary. The GEMM and the vector kernels load whole 64-byte lines; a buffer
// that starts mid-line splits such loads in two, and two replicas whose buffers
// happen to sit differently within a line may run at different speeds (the
// faster waits at every all-reduce). Buffers the kernels stream over use it.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace lockstep {

template <class T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};

  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}

  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlign); }

  template <class U>
  bool operator==(const AlignedAllocator<U>&) const { return true; }
};

template <class T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

}  // namespace lockstep
