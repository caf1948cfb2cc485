// The layer kinds a network is made of. A kind is one header in this folder: a
// class template over the device (src/device.h) constructed from its LayerSpec
// (src/model.h), the most rows a slice has and the device, with
//   forward(dev, params, in, call) -> its output (rows, out_size);
//   backward(dev, params, grads, in, dy, dx, call): the parameter gradients
//     (overwritten) and d(input) into dx unless it is null; dy is scratch;
//   deferred(spans): the doubles it wants summed across replicas once backward
//     is done (batch norm with sync: false), which the network fuses into one
//     all-reduce; finish(dev, params, call): after that sum (those layers'
//     moving statistics); empty_forward(dev, params, call) and
//     empty_backward(dev, call, has_dx): a slice without rows still takes part
//     in every collective the kind makes, in the same order;
//   state_finite(dev) and commit(dev, params): whether the step's state (batch
//     norm's statistics) is finite, and writing it into the arena once the step
//     is applied (a kind without collectives or state takes all these from
//     NoCollectives, src/layers/call.h).
// Parameters are arena views; params is writable because batch norm keeps its
// moving statistics in the arena's state part. Adding a kind: its header, its
// spec in src/model.cpp, and its name in Layer below.
#pragma once

#include <functional>
#include <variant>

#include "src/layers/batch_norm.h"
#include "src/layers/conv.h"
#include "src/layers/dense.h"
#include "src/layers/residual.h"

namespace lockstep {

template <class D>
using Layer = std::variant<Dense<D>, Conv2d<D>, Pool2d<D>, Reshape<D>, Dropout<D>, BatchNorm<D>,
                           Residual<D>>;

template <class D>
Layer<D> make_layer(const LayerSpec& spec, int64_t max_rows, D& dev) {
  switch (spec.type) {
    case LayerType::kDense: return Dense<D>(spec, max_rows);
    case LayerType::kConv2d: return Conv2d<D>(spec, max_rows, dev);
    case LayerType::kMaxPool2d:
    case LayerType::kAvgPool2d:
    case LayerType::kGlobalAvgPool2d: return Pool2d<D>(spec, max_rows);
    case LayerType::kFlatten: return Reshape<D>(spec);
    case LayerType::kDropout: return Dropout<D>(spec, max_rows);
    case LayerType::kBatchNorm: return BatchNorm<D>(spec, max_rows);
    case LayerType::kResidual: return Residual<D>(spec, max_rows, dev);
  }
  return Dense<D>(spec, max_rows);
}

}  // namespace lockstep
