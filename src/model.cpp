// Model layout: each configured layer's shapes and arena views, initialisation,
// summary and signature.
#include "src/model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "data/array.h"
#include "src/random.h"

namespace lockstep {

int64_t TensorSpec::size() const { return shape_product(shape); }

namespace {

int64_t sum_tensors(const LayerSpec& l, bool trainable) {
  int64_t n = 0;
  for (const auto& t : l.tensors) n += t.trainable == trainable ? t.size() : 0;
  for (const auto& p : l.parts) n += sum_tensors(p, trainable);
  return n;
}

std::string shape_text(const Shape& s, bool flat) {
  return shape_string(flat ? std::vector<int64_t>{s.size()} : std::vector<int64_t>{s.c, s.h, s.w});
}

// The layer builders: each fills out, its tensors (offsets come later) and its
// kind's fields, or throws ConfigError naming the layer.
LayerSpec conv_spec(const std::string& name, Shape in, int64_t filters, int64_t kernel,
                    int64_t stride, Padding padding, Activation act, bool bias) {
  LayerSpec l{LayerType::kConv2d, name, in};
  l.filters = filters;
  l.kernel = kernel;
  l.stride = stride;
  l.padding = padding;
  l.activation = act;
  l.use_bias = bias;
  try {
    const Conv2dGeometry g =
        conv2d_geometry(1, in.c, in.h, in.w, filters, kernel, kernel, stride, stride, padding);
    l.out = {filters, g.out_h, g.out_w};
  } catch (const std::invalid_argument& e) {
    throw ConfigError(name + " does not fit its input " + shape_text(in, false) +
                      ": " + e.what());
  }
  l.tensors.push_back({"kernel", {filters, in.c, kernel, kernel}});
  if (bias) l.tensors.push_back({"bias", {filters}});
  return l;
}

LayerSpec bn_spec(const std::string& name, Shape in, const LayerConfig& c) {
  LayerSpec l{LayerType::kBatchNorm, name, in, in};
  l.sync = c.sync;
  l.momentum = c.momentum;
  l.epsilon = c.epsilon;
  l.tensors = {{"gamma", {in.c}}, {"beta", {in.c}}, {"moving_mean", {in.c}, 0, false},
               {"moving_variance", {in.c}, 0, false}};
  return l;
}

LayerSpec residual_spec(const std::string& name, Shape in, const LayerConfig& c) {
  LayerSpec l{LayerType::kResidual, name, in};
  l.filters = c.filters > 0 ? c.filters : in.c;
  l.stride = c.strides;
  l.activation = c.activation;
  l.sync = c.sync;
  const auto conv = [&](const char* part, Shape from, int64_t k, int64_t s) {
    return conv_spec(name + "/" + part, from, l.filters, k, s, Padding::kSame, Activation::kLinear,
                     false);
  };
  l.parts.push_back(conv("conv1", in, 3, l.stride));
  l.parts.push_back(bn_spec(name + "/bn1", l.parts[0].out, c));
  l.parts.push_back(conv("conv2", l.parts[0].out, 3, 1));
  l.parts.push_back(bn_spec(name + "/bn2", l.parts[0].out, c));
  if (l.stride != 1 || in.c != l.filters) {  // the shortcut needs a 1x1 projection
    l.parts.push_back(conv("proj", in, 1, l.stride));
    l.parts.push_back(bn_spec(name + "/proj_bn", l.parts[4].out, c));
  }
  l.out = l.parts[2].out;
  return l;
}

LayerSpec pool_spec(const std::string& name, Shape in, const LayerConfig& c) {
  LayerSpec l{c.type, name, in};
  l.pool = c.pool_size;
  l.pool_stride = c.pool_strides > 0 ? c.pool_strides : c.pool_size;
  try {
    const Pool2dGeometry g =
        pool2d_geometry(1, in.c, in.h, in.w, l.pool, l.pool, l.pool_stride, l.pool_stride);
    l.out = {in.c, g.out_h, g.out_w};
  } catch (const std::invalid_argument& e) {
    throw ConfigError(name + " does not fit its input " + shape_text(in, false) +
                      ": " + e.what());
  }
  return l;
}

LayerSpec build(const LayerConfig& c, const std::string& name, Shape in) {
  switch (c.type) {
    case LayerType::kDense: {
      LayerSpec l{LayerType::kDense, name, in, {c.units, 1, 1}};
      l.activation = c.activation;
      l.dropout = c.dropout;
      l.tensors = {{"kernel", {in.size(), c.units}}, {"bias", {c.units}}};
      return l;
    }
    case LayerType::kConv2d:
      return conv_spec(name, in, c.filters, c.kernel_size, c.strides, c.padding, c.activation, true);
    case LayerType::kMaxPool2d:
    case LayerType::kAvgPool2d: return pool_spec(name, in, c);
    case LayerType::kBatchNorm: return bn_spec(name, in, c);
    case LayerType::kResidual: return residual_spec(name, in, c);
    case LayerType::kGlobalAvgPool2d:
    case LayerType::kFlatten:
    case LayerType::kDropout: break;
  }
  LayerSpec l{c.type, name, in,
              c.type == LayerType::kGlobalAvgPool2d ? Shape{in.c, 1, 1}
              : c.type == LayerType::kFlatten       ? Shape{in.size(), 1, 1}
                                                    : in};
  l.dropout = c.type == LayerType::kDropout ? c.dropout : 0.0f;
  return l;
}

// Visits every tensor of l and its parts, with the owning spec (L: const or not).
template <class L, class F>
void each_tensor(L& l, const F& fn) {
  for (auto& t : l.tensors) fn(l, t);
  for (auto& p : l.parts) each_tensor(p, fn);
}

void set_views(LayerSpec& l) {
  for (const auto& t : l.tensors) {
    if (t.name == "kernel") l.weight_offset = t.offset;
    if (t.name == "bias") l.bias_offset = t.offset;
  }
  for (auto& p : l.parts) set_views(p);
}

bool needs_image(LayerType t) {
  return t == LayerType::kConv2d || t == LayerType::kMaxPool2d || t == LayerType::kAvgPool2d ||
         t == LayerType::kGlobalAvgPool2d || t == LayerType::kResidual;
}

bool flat_output(const LayerSpec& l, bool flat_in) {
  switch (l.type) {
    case LayerType::kDense:
    case LayerType::kFlatten:
    case LayerType::kGlobalAvgPool2d: return true;
    case LayerType::kBatchNorm:
    case LayerType::kDropout: return flat_in;
    default: return false;
  }
}

}  // namespace

int64_t LayerSpec::num_params() const { return sum_tensors(*this, true); }
int64_t LayerSpec::num_state() const { return sum_tensors(*this, false); }
bool LayerSpec::has_batch_norm() const {
  if (type == LayerType::kBatchNorm) return true;
  return std::any_of(parts.begin(), parts.end(), [](const LayerSpec& p) { return p.has_batch_norm(); });
}

Model::Model(const std::vector<LayerConfig>& hidden, const std::vector<int64_t>& input_shape,
             int64_t output_dim, LossKind loss)
    : output_dim_(output_dim), loss_(loss) {
  const int64_t features = shape_product(input_shape);
  if (input_shape.empty() || features <= 0 || output_dim <= 0) {
    throw std::invalid_argument("model needs a positive input and output size (got " +
                                std::to_string(features) + " -> " + std::to_string(output_dim) + ")");
  }
  flat_input_ = input_shape.size() == 1 || input_shape.size() > 3;
  input_ = input_shape.size() == 2   ? Shape{1, input_shape[0], input_shape[1]}
           : input_shape.size() == 3 ? Shape{input_shape[0], input_shape[1], input_shape[2]}
                                     : Shape{features, 1, 1};
  int counts[16] = {0};
  Shape in = input_;
  const auto name_for = [&](LayerType t) {
    return std::string(layer_type_name(t)) + "_" + std::to_string(++counts[int(t)]);
  };
  bool flat = flat_input_;
  std::string flat_from = "the dataset's rows (features, not images)";
  for (size_t i = 0; i < hidden.size(); ++i) {
    const LayerConfig& h = hidden[i];
    const std::string name = name_for(h.type);
    const std::string where = "model.layers[" + std::to_string(i) + "] (" + name + ")";
    if (flat && needs_image(h.type)) {
      throw ConfigError(where + ": a " + layer_type_name(h.type) + " layer needs images (C, H, W), but its input is " +
                        "flat: " + flat_from + " (store the dataset's x as (N, H, W) or (N, C, H, W); " +
                        "put flatten and dense layers after the image layers)");
    }
    try {
      layers_.push_back(build(h, name, in));
    } catch (const ConfigError& e) {
      throw ConfigError("model.layers[" + std::to_string(i) + "]: " + e.what());
    }
    in = layers_.back().out;
    flat = flat_output(layers_.back(), flat);
    if (flat) flat_from = "the output of " + name;
  }
  LayerConfig output;
  output.units = output_dim;
  output.activation = Activation::kLinear;
  layers_.push_back(build(output, name_for(LayerType::kDense), in));
  // Trainable tensors: last layer first (see model.h); then the state.
  int64_t offset = 0;
  for (size_t i = layers_.size(); i-- > 0;) {
    each_tensor(layers_[i], [&](LayerSpec&, TensorSpec& t) {
      if (t.trainable) t.offset = offset, offset += t.size();
    });
  }
  num_params_ = offset;
  for (auto& l : layers_) {
    each_tensor(l, [&](LayerSpec&, TensorSpec& t) {
      if (!t.trainable) t.offset = offset, offset += t.size();
    });
    set_views(l);
  }
  num_state_ = offset - num_params_;
}

bool Model::dense_only() const {
  return std::all_of(layers_.begin(), layers_.end(), [](const LayerSpec& l) {
           return l.type == LayerType::kDense;
         });
}

bool Model::has_batch_norm() const {
  return std::any_of(layers_.begin(), layers_.end(), [](const LayerSpec& l) { return l.has_batch_norm(); });
}

int64_t Model::max_width() const {
  int64_t w = input_.size();
  for (const auto& l : layers_) w = std::max({w, l.in_size(), l.out_size()});
  return w;
}

int64_t Model::grad_ready_end(size_t layer) const {
  int64_t end = 0;
  for (size_t j = layer; j < layers_.size(); ++j) end += layers_[j].num_params();
  return end;
}

std::vector<TensorSpec> Model::trainable_tensors() const {
  std::vector<TensorSpec> out;
  for (const auto& l : layers_) {
    each_tensor(l, [&](const LayerSpec&, const TensorSpec& t) {
      if (t.trainable) out.push_back(t);
    });
  }
  std::sort(out.begin(), out.end(),
            [](const TensorSpec& a, const TensorSpec& b) { return a.offset < b.offset; });
  return out;
}

std::vector<std::pair<std::string, TensorSpec>> Model::all_tensors() const {
  std::vector<std::pair<std::string, TensorSpec>> out;
  for (const auto& l : layers_) {
    each_tensor(l, [&](const LayerSpec& owner, const TensorSpec& t) {
      TensorSpec named = t;
      // A residual part's tensors live in its block's group as "conv1.kernel".
      if (owner.name != l.name) named.name = owner.name.substr(l.name.size() + 1) + "." + t.name;
      out.emplace_back(l.name, named);
    });
  }
  return out;
}

void Model::init_params(float* arena, uint64_t seed) const {
  for (size_t li = 0; li < layers_.size(); ++li) {
    const uint64_t layer_stream = mix_seed(seed, 0x1a7e5ULL + li);
    int part = 0;
    each_tensor(layers_[li], [&](const LayerSpec& owner, const TensorSpec& t) {
      float* p = arena + t.offset;
      if (t.name == "kernel") {
        // Dense (in, out): fans in and out; conv (F, C, k, k): C k k and F k k.
        const bool conv = t.shape.size() == 4;
        const double receptive = conv ? double(t.shape[2] * t.shape[3]) : 1.0;
        const double fan_in = conv ? double(t.shape[1]) * receptive : double(t.shape[0]);
        const double fan_out = conv ? double(t.shape[0]) * receptive : double(t.shape[1]);
        const double limit = std::sqrt(6.0 / (fan_in + fan_out));
        const uint64_t stream = owner.name == layers_[li].name ? layer_stream
                                                               : mix_seed(layer_stream, uint64_t(++part));
        for (int64_t i = 0; i < t.size(); ++i) {
          p[i] = float((2.0 * uniform01(stream, uint64_t(i)) - 1.0) * limit);
        }
      } else {
        const float v = t.name == "gamma" || t.name == "moving_variance" ? 1.0f : 0.0f;
        std::fill(p, p + t.size(), v);
      }
    });
  }
}

std::string Model::summary() const {
  std::ostringstream os;
  char line[200];
  std::snprintf(line, sizeof line, "%-20s %-22s %-14s %12s\n", "Layer", "Output shape", "Activation",
                "Param #");
  os << line << std::string(71, '-') << "\n";
  const auto shape = [](const Shape& s, bool flat) {
    return flat ? "(None, " + std::to_string(s.c) + ")"
                : "(None, " + std::to_string(s.c) + ", " + std::to_string(s.h) + ", " +
                      std::to_string(s.w) + ")";
  };
  bool flat = flat_input_;
  std::snprintf(line, sizeof line, "%-20s %-22s %-14s %12d\n", "input", shape(input_, flat).c_str(), "",
                0);
  os << line;
  // A dense layer's dropout is listed as a layer of its own, numbered after the
  // dropout layers the config names (dropout_1, ... are theirs).
  int dropouts = int(std::count_if(layers_.begin(), layers_.end(),
                                   [](const LayerSpec& l) { return l.type == LayerType::kDropout; }));
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& l = layers_[i];
    flat = flat_output(l, flat);
    // The output layer's softmax is computed inside the loss (fused, stable).
    const bool softmax = i + 1 == layers_.size() && loss_ == LossKind::kSoftmaxCrossEntropy;
    std::string note;
    char rate[32];
    std::snprintf(rate, sizeof rate, "rate %g", double(l.dropout));
    if (l.type == LayerType::kDense || l.type == LayerType::kConv2d || l.type == LayerType::kResidual) {
      note = softmax ? "softmax" : activation_name(l.activation);
    } else if (l.type == LayerType::kBatchNorm) {
      note = l.sync ? "sync" : "per replica";
    } else if (l.type == LayerType::kDropout) {
      note = rate;
    }
    if (l.type == LayerType::kResidual && l.parts.size() > 4) note += ", proj";
    std::snprintf(line, sizeof line, "%-20s %-22s %-14s %12lld\n", l.name.c_str(),
                  shape(l.out, flat).c_str(), note.c_str(), (long long)(l.num_params() + l.num_state()));
    os << line;
    if (l.type == LayerType::kDense && l.dropout > 0) {  // as Keras lists it: a layer of its own
      std::snprintf(line, sizeof line, "%-20s %-22s %-14s %12d\n",
                    ("dropout_" + std::to_string(++dropouts)).c_str(), shape(l.out, true).c_str(), rate, 0);
      os << line;
    }
  }
  os << std::string(71, '-') << "\n";
  const int64_t total = num_params_ + num_state_;
  std::snprintf(line, sizeof line, "Total params: %lld (%.2f KiB fp32), loss: %s%s\n", (long long)total,
                total * 4.0 / 1024.0, loss_name(loss_),
                loss_ == LossKind::kSoftmaxCrossEntropy ? " (the softmax is fused into the loss)" : "");
  os << line;
  if (num_state_ > 0) {
    std::snprintf(line, sizeof line, "Trainable params: %lld, non-trainable: %lld (moving statistics)\n",
                  (long long)num_params_, (long long)num_state_);
    os << line;
  }
  return os.str();
}

std::string Model::signature() const {
  std::ostringstream os;
  const bool dense = dense_only();
  os << "input=" << shape_text(input_, dense);
  for (const auto& l : layers_) {
    os << " " << l.name << "(";
    if (l.type == LayerType::kDense) {
      os << l.in_size() << "x" << l.out_size() << "," << activation_name(l.activation);
    } else {
      os << shape_text(l.in, false) << "->" << shape_text(l.out, false);
      if (l.type == LayerType::kConv2d) {
        os << ",k" << l.kernel << ",s" << l.stride << "," << activation_name(l.activation);
      }
      if (l.type == LayerType::kResidual) os << "," << activation_name(l.activation);
    }
    os << ")";
  }
  os << " loss=" << loss_name(loss_);
  return os.str();
}

std::vector<int64_t> signature_input_shape(const std::string& signature) {
  const std::string key = "input=";
  const size_t at = signature.find(key);
  if (at == std::string::npos) return {};
  std::vector<int64_t> dims;
  const char* p = signature.c_str() + at + key.size();
  while (true) {
    char* end = nullptr;
    const long long v = std::strtoll(p, &end, 10);
    if (end == p || v <= 0) return {};
    dims.push_back(v);
    if (*end != 'x') break;
    p = end + 1;
  }
  return dims;
}

}  // namespace lockstep
