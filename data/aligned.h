// AlignedVector: a std::vector whose storage starts on a 64-byte (cache-line)
// boundary. The GEMM and the vector kernels load whole 64-byte lines; a buffer
// that starts mid-line splits such loads in two, and two replicas whose buffers
// happen to sit differently within a line may run at different speeds (the
// faster waits at every all-reduce). Buffers the kernels stream over use it.
// LargePageVector: the same for buffers of megabytes read at random places (a
// cached split's rows): from 2 MiB up its storage is its own mapping, on 2 MiB
// pages where the kernel grants them (Linux transparent huge pages, asked for
// with madvise). A random row of a 47 MB split then costs no page walk: 4 KiB
// pages would need 11,500 TLB entries, 2 MiB pages need 23.
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

// Storage for `bytes` bytes: 64-byte aligned below kLargePageBytes; from there a
// mapping of its own (rounded up to whole 2 MiB pages, starting on one). Throws
// std::bad_alloc when the memory cannot be had. Free with the same `bytes`.
constexpr size_t kLargePageBytes = size_t(2) << 20;
void* allocate_large(size_t bytes);
void free_large(void* p, size_t bytes);

template <class T>
struct LargePageAllocator {
  using value_type = T;

  LargePageAllocator() = default;
  template <class U>
  LargePageAllocator(const LargePageAllocator<U>&) {}

  T* allocate(size_t n) { return static_cast<T*>(allocate_large(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { free_large(p, n * sizeof(T)); }

  template <class U>
  bool operator==(const LargePageAllocator<U>&) const { return true; }
};

template <class T>
using LargePageVector = std::vector<T, LargePageAllocator<T>>;

}  // namespace lockstep
