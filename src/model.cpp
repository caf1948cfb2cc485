// Model layout, initialisation and summary.
#include "src/model.h"

#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "src/random.h"

namespace lockstep {

Model::Model(const std::vector<LayerConfig>& hidden, int64_t input_dim, int64_t output_dim,
             LossKind loss)
    : input_dim_(input_dim), output_dim_(output_dim), loss_(loss) {
  if (input_dim <= 0 || output_dim <= 0) {
    throw std::invalid_argument("model needs a positive input and output size (got " +
                                std::to_string(input_dim) + " -> " + std::to_string(output_dim) + ")");
  }
  int64_t in = input_dim;
  for (const auto& h : hidden) {
    layers_.push_back({"dense_" + std::to_string(layers_.size() + 1), in, h.units, h.activation,
                       h.dropout});
    in = h.units;
  }
  layers_.push_back({"dense_" + std::to_string(layers_.size() + 1), in, output_dim,
                     Activation::kLinear, 0.0f});
  // Last layer first in the arena (see model.h).
  int64_t offset = 0;
  for (size_t i = layers_.size(); i-- > 0;) {
    layers_[i].weight_offset = offset;
    layers_[i].bias_offset = offset + layers_[i].in * layers_[i].out;
    offset += layers_[i].num_params();
  }
  num_params_ = offset;
}

int64_t Model::max_width() const {
  int64_t w = 0;
  for (const auto& l : layers_) w = std::max(w, l.out);
  return w;
}

int64_t Model::grad_ready_end(size_t layer) const {
  return layers_[layer].bias_offset + layers_[layer].out;
}

void Model::init_params(float* arena, uint64_t seed) const {
  for (size_t li = 0; li < layers_.size(); ++li) {
    const DenseLayer& l = layers_[li];
    const double limit = std::sqrt(6.0 / double(l.in + l.out));
    const uint64_t stream = mix_seed(seed, 0x1a7e5ULL + li);
    float* w = arena + l.weight_offset;
    for (int64_t i = 0; i < l.in * l.out; ++i) {
      w[i] = float((2.0 * uniform01(stream, uint64_t(i)) - 1.0) * limit);
    }
    float* b = arena + l.bias_offset;
    for (int64_t i = 0; i < l.out; ++i) b[i] = 0.0f;
  }
}

std::string Model::summary() const {
  std::ostringstream os;
  char line[160];
  std::snprintf(line, sizeof line, "%-14s %-16s %-12s %14s\n", "Layer", "Output shape",
                "Activation", "Param #");
  os << line << std::string(59, '-') << "\n";
  std::snprintf(line, sizeof line, "%-14s (None, %-8lld) %-12s %14d\n", "input",
                (long long)input_dim_, "", 0);
  os << line;
  int dropouts = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& l = layers_[i];
    // The output layer's softmax is computed inside the loss (fused, stable).
    const bool softmax = i + 1 == layers_.size() && loss_ == LossKind::kSoftmaxCrossEntropy;
    std::snprintf(line, sizeof line, "%-14s (None, %-8lld) %-12s %14lld\n", l.name.c_str(),
                  (long long)l.out, softmax ? "softmax" : activation_name(l.activation),
                  (long long)l.num_params());
    os << line;
    if (l.dropout > 0) {  // as Keras lists it: a layer of its own, training only
      char rate[32];
      std::snprintf(rate, sizeof rate, "rate %g", double(l.dropout));
      std::snprintf(line, sizeof line, "%-14s (None, %-8lld) %-12s %14d\n",
                    ("dropout_" + std::to_string(++dropouts)).c_str(), (long long)l.out, rate, 0);
      os << line;
    }
  }
  os << std::string(59, '-') << "\n";
  std::snprintf(line, sizeof line, "Total params: %lld (%.2f KiB fp32), loss: %s%s\n",
                (long long)num_params_, num_params_ * 4.0 / 1024.0, loss_name(loss_),
                loss_ == LossKind::kSoftmaxCrossEntropy ? " (the softmax is fused into the loss)" : "");
  os << line;
  return os.str();
}

std::string Model::signature() const {
  std::ostringstream os;
  os << "input=" << input_dim_;
  for (const auto& l : layers_) {
    os << " " << l.name << "(" << l.in << "x" << l.out << "," << activation_name(l.activation)
       << ")";
  }
  os << " loss=" << loss_name(loss_);
  return os.str();
}

}  // namespace lockstep
