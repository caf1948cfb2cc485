// What every layer kind's forward and backward get besides its tensors: the
// slice's rows, the step's global rows, training or not, the layer's index (its
// dropout seed), whether its input is the network's own (the first layer, or one
// after pass-through layers such as a flatten) and the all-reduce batch norm
// synchronizes its statistics with.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace lockstep {

// Sums n doubles across every replica in sync, in place, in a fixed order (the
// replica's communicator). Empty: this replica is the only one.
using SyncSum = std::function<void(double*, int64_t)>;

// A span of doubles a layer leaves for the network to sum after backward.
struct DeferredSum {
  double* data;
  int64_t count;
};

struct LayerCall {
  int64_t rows = 0;         // this replica's slice
  int64_t global_rows = 0;  // the global batch of the step (sync batch norm's count)
  bool training = false;
  int index = 0;            // the layer's place in the model (its dropout seed)
  const SyncSum* sync = nullptr;
  bool reads_input = false;  // the layer's input is the network's own (Dense skips its zeros)
  void sum(double* x, int64_t n) const {
    if (sync && *sync) (*sync)(x, n);
  }
};

// The collective and state hooks of a kind that has none (every kind but batch
// norm and the residual block): nothing deferred, nothing to finish or commit,
// no part in a rowless slice's collectives.
struct NoCollectives {
  void deferred(std::vector<DeferredSum>&) {}
  template <class D>
  void finish(D&, float*, const LayerCall&) {}
  template <class D>
  void commit(D&, float*) {}
  template <class D>
  bool state_finite(D&) { return true; }
  template <class D>
  void empty_forward(D&, float*, const LayerCall&) {}
  template <class D>
  void empty_backward(D&, const LayerCall&, bool) {}
};

}  // namespace lockstep
