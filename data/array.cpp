// Element-type names and sizes, and shape formatting for HostArray and for
// error messages.
#include "data/array.h"

#include <sys/mman.h>

#include <cstdint>
#include <new>

#include "data/aligned.h"

namespace lockstep {

size_t element_size(ElementType type) {
  switch (type) {
    case ElementType::kUInt8: return 1;
    case ElementType::kInt32: return 4;
    case ElementType::kInt64: return 8;
    case ElementType::kFloat32: return 4;
  }
  return 0;
}

const char* element_type_name(ElementType type) {
  switch (type) {
    case ElementType::kUInt8: return "uint8";
    case ElementType::kInt32: return "int32";
    case ElementType::kInt64: return "int64";
    case ElementType::kFloat32: return "float32";
  }
  return "?";
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += "x";
    text += std::to_string(shape[i]);
  }
  return text.empty() ? "scalar" : text;
}

int64_t shape_product(const std::vector<int64_t>& shape) {
  int64_t product = 1;
  for (int64_t d : shape) product *= d;
  return product;
}

namespace {

size_t whole_large_pages(size_t bytes) {
  return (bytes + kLargePageBytes - 1) / kLargePageBytes * kLargePageBytes;
}

}  // namespace

void* allocate_large(size_t bytes) {
  constexpr std::align_val_t kLine{64};
  if (bytes < kLargePageBytes) return ::operator new(bytes, kLine);
  if (bytes > SIZE_MAX - 2 * kLargePageBytes) throw std::bad_alloc();  // no size wraps below
  // Map one page more than needed, then unmap the unaligned head and the tail:
  // what stays starts on a 2 MiB boundary, so the kernel can back it with large pages.
  const size_t size = whole_large_pages(bytes);
  void* map = mmap(nullptr, size + kLargePageBytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t first = reinterpret_cast<uintptr_t>(map);
  const uintptr_t start = (first + kLargePageBytes - 1) & ~uintptr_t(kLargePageBytes - 1);
  if (start > first) munmap(map, start - first);
  const size_t tail = first + size + kLargePageBytes - (start + size);
  if (tail > 0) munmap(reinterpret_cast<void*>(start + size), tail);
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(start), size, MADV_HUGEPAGE);  // a hint: refused is fine
#endif
  return reinterpret_cast<void*>(start);
}

void free_large(void* p, size_t bytes) {
  constexpr std::align_val_t kLine{64};
  if (p == nullptr) return;
  if (bytes < kLargePageBytes) {
    ::operator delete(p, kLine);
    return;
  }
  munmap(p, whole_large_pages(bytes));
}

}  // namespace lockstep
