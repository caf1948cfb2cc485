// The layer kinds a network is made of. A kind is one header in this folder: a
// class template over the device (src/device.h) with forward(dev, params, in,
// rows, training, index) -> output, backward_output(dev, d, rows, index) and
// backward(dev, params, grads, in, dz, d_in, rows), parameters as arena views.
// Adding a kind: its header, and its name in Layer below.
#pragma once

#include <variant>

#include "src/layers/dense.h"

namespace lockstep {

template <class D>
using Layer = std::variant<Dense<D>>;

}  // namespace lockstep
