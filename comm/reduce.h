// Host reduction kernels shared by the CPU backends. They combine buffers in a
// FIXED order (source 0, then 1, ...), which is what makes every backend's result
// bitwise reproducible: the order never depends on which member arrived first.
#pragma once

#include <cstddef>

#include "comm/communicator.h"

namespace lockstep {

// For i < count: r = srcs[0][i] op srcs[1][i] op ... op srcs[nsrc-1][i] (left to
// right), then dsts[d][i] = r for every d. Destinations may alias sources: each
// block of elements is fully read before any of it is written.
void reduce_fixed_order(const void* const* srcs, int nsrc, void* const* dsts, int ndst,
                        size_t count, DType dtype, ReduceOp op);

}  // namespace lockstep
