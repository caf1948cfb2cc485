// The ONNX writer. ONNX files are protocol buffers; lockstep writes the small
// subset of onnx.proto it needs (ModelProto, GraphProto, NodeProto, TensorProto,
// ValueInfoProto, AttributeProto) with a few lines of wire-format encoding, so it
// depends on no protobuf library or generated code and on no particular version
// of either. Field numbers are those of onnx/onnx.proto (IR version 7).
#include "src/onnx_export.h"

#include <algorithm>
#include <vector>

#include "data/array.h"
#include "data/hdf5_util.h"
#include "src/environment.h"
#include "src/model.h"
#include "src/protobuf.h"

namespace lockstep {
namespace {

constexpr int kFloat = 1;  // TensorProto.DataType.FLOAT
constexpr int kInt64 = 7;  // TensorProto.DataType.INT64

// TensorProto: dims = 1, data_type = 2, name = 8, raw_data = 9 (little-endian).
Message tensor(const std::string& name, const std::vector<int64_t>& dims, const float* data) {
  Message t;
  for (int64_t d : dims) t.varint(1, uint64_t(d));
  t.varint(2, kFloat).bytes(8, name);
  t.bytes(9, std::string(reinterpret_cast<const char*>(data), size_t(shape_product(dims)) * sizeof(float)));
  return t;
}

// AttributeProto: name = 1, f = 2, i = 3, ints = 8, type = 20 (FLOAT 1, INT 2, INTS 7).
Message int_attr(const std::string& name, int64_t v) {
  Message a;
  a.bytes(1, name).varint(3, uint64_t(v)).varint(20, 2);
  return a;
}
Message float_attr(const std::string& name, float v) {
  Message a;
  a.bytes(1, name).fixed32(2, v).varint(20, 1);
  return a;
}
Message ints_attr(const std::string& name, const std::vector<int64_t>& v) {
  Message a;
  a.bytes(1, name);
  for (const int64_t x : v) a.varint(8, uint64_t(x));
  a.varint(20, 7);
  return a;
}

// ValueInfoProto { name = 1, type = 2: TypeProto { tensor_type = 1: { elem_type = 1,
// shape = 2: { dim = 1: { dim_value = 1 | dim_param = 2 } } } } }; the batch is "N".
Message value_info(const std::string& name, int64_t width) {
  Message batch, feat, shape, tensor_type, type, info;
  batch.bytes(2, "N");
  feat.varint(1, uint64_t(width));
  shape.message(1, batch).message(1, feat);
  tensor_type.varint(1, kFloat).message(2, shape);
  type.message(1, tensor_type);
  info.bytes(1, name).message(2, type);
  return info;
}

// Builds the graph's nodes and initializers, naming intermediate values uniquely.
class GraphBuilder {
 public:
  // NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5.
  std::string node(const std::string& op, const std::vector<std::string>& in, std::string out = "",
                   const std::vector<Message>& attributes = {}) {
    if (out.empty()) out = op + "_" + std::to_string(++counter_);
    Message n;
    for (const auto& i : in) n.bytes(1, i);
    n.bytes(2, out).bytes(3, "node_" + std::to_string(nodes_.size())).bytes(4, op);
    for (const auto& a : attributes) n.message(5, a);
    nodes_.push_back(n);
    return out;
  }
  void int64_initializer(const std::string& name, const std::vector<int64_t>& values) {  // a 1-D INT64 tensor
    Message t;
    t.varint(1, uint64_t(values.size())).varint(2, kInt64).bytes(8, name);
    t.bytes(9, std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(int64_t)));
    initializers_.push_back(t);
  }
  std::string constant(const std::string& name, float v) {
    initializers_.push_back(tensor(name, {}, &v));
    return name;
  }
  void initializer(const std::string& name, const std::vector<int64_t>& dims, const float* data) {
    initializers_.push_back(tensor(name, dims, data));
  }
  // GraphProto: node = 1, name = 2, initializer = 5, doc_string = 10, input = 11, output = 12.
  Message graph(const std::string& name, const Message& input, const Message& output) const {
    Message g;
    for (const auto& n : nodes_) g.message(1, n);
    g.bytes(2, name);
    for (const auto& t : initializers_) g.message(5, t);
    g.bytes(10, "exported by lockstep: raw dataset rows in, data.scale applied in the graph");
    g.message(11, input).message(12, output);
    return g;
  }

 private:
  std::vector<Message> nodes_, initializers_;
  int counter_ = 0;
};

// 0.5 z (1 + tanh(c (z + a z^3))), the tanh form lockstep's kernels compute.
std::string gelu(GraphBuilder& g, const std::string& z, const std::string& out) {
  const std::string cube = g.node("Mul", {g.node("Mul", {z, z}), z});
  const std::string inner = g.node("Add", {z, g.node("Mul", {cube, "gelu_a"})});
  const std::string t = g.node("Tanh", {g.node("Mul", {inner, "gelu_c"})});
  return g.node("Mul", {g.node("Mul", {z, "half"}), g.node("Add", {t, "one"})}, out);
}

std::string activation(GraphBuilder& g, Activation a, const std::string& z, const std::string& out) {
  switch (a) {
    case Activation::kRelu: return g.node("Relu", {z}, out);
    case Activation::kTanh: return g.node("Tanh", {z}, out);
    case Activation::kSigmoid: return g.node("Sigmoid", {z}, out);
    case Activation::kGelu: return gelu(g, z, out);
    case Activation::kLinear: return g.node("Identity", {z}, out);
  }
  throw std::logic_error("onnx export: unknown activation");
}

const float* tensor_at(const SavedModel& m, const LayerSpec& l, const char* name) {
  for (const auto& t : l.tensors) {
    if (t.name == name) return m.params.data() + t.offset;
  }
  throw std::logic_error("onnx export: " + l.name + " has no tensor " + name);
}

// Writes a model's layers as ONNX nodes. Values are (N, C, H, W) after the input's
// Reshape, (N, F) after Flatten; dense layers flatten what they read, as lockstep's do.
class LayerWriter {
 public:
  LayerWriter(GraphBuilder& g, const SavedModel& m) : g_(g), m_(m) {}

  std::string layer(const LayerSpec& l, std::string x, bool last) {
    switch (l.type) {
      case LayerType::kDense: return dense(l, x, last);
      case LayerType::kConv2d: return activation(g_, l.activation, conv(l, x), l.name + "/out");
      case LayerType::kMaxPool2d:
      case LayerType::kAvgPool2d:
        return g_.node(l.type == LayerType::kMaxPool2d ? "MaxPool" : "AveragePool", {x}, l.name + "/out",
                       {ints_attr("kernel_shape", {l.pool, l.pool}), ints_attr("strides", {l.pool_stride, l.pool_stride})});
      case LayerType::kGlobalAvgPool2d: return flat(g_.node("GlobalAveragePool", {x}, l.name + "/out"));
      case LayerType::kFlatten: return flat(x);
      case LayerType::kBatchNorm: return batch_norm(l, x);
      case LayerType::kDropout: return x;  // training only
      case LayerType::kResidual: return residual(l, x);
    }
    throw std::logic_error("onnx export: unknown layer type");
  }

 private:
  std::string flat(const std::string& x) {
    if (flat_) return x;
    flat_ = true;
    return g_.node("Flatten", {x}, "", {int_attr("axis", 1)});
  }
  std::string dense(const LayerSpec& l, std::string x, bool last) {
    g_.initializer(l.name + "/kernel", {l.in_size(), l.out_size()}, m_.params.data() + l.weight_offset);
    g_.initializer(l.name + "/bias", {l.out_size()}, m_.params.data() + l.bias_offset);
    const std::string z = g_.node("Gemm", {flat(x), l.name + "/kernel", l.name + "/bias"},
                                  last && !m_.classifier ? output_name(m_) : l.name + "/z");
    return last ? z : activation(g_, l.activation, z, l.name + "/out");
  }
  // Conv with lockstep's padding: "same" puts the odd pixel after (explicit pads).
  std::string conv(const LayerSpec& l, const std::string& x) {
    const Conv2dGeometry c = conv2d_geometry(1, l.in.c, l.in.h, l.in.w, l.filters, l.kernel, l.kernel,
                                             l.stride, l.stride, l.padding);
    const int64_t bottom = std::max<int64_t>((c.out_h - 1) * l.stride + l.kernel - l.in.h - c.pad_top, 0);
    const int64_t right = std::max<int64_t>((c.out_w - 1) * l.stride + l.kernel - l.in.w - c.pad_left, 0);
    g_.initializer(l.name + "/kernel", {l.filters, l.in.c, l.kernel, l.kernel}, m_.params.data() + l.weight_offset);
    std::vector<std::string> in{x, l.name + "/kernel"};
    if (l.use_bias) {
      g_.initializer(l.name + "/bias", {l.filters}, m_.params.data() + l.bias_offset);
      in.push_back(l.name + "/bias");
    }
    return g_.node("Conv", in, l.name + "/z",
                   {ints_attr("kernel_shape", {l.kernel, l.kernel}), ints_attr("strides", {l.stride, l.stride}),
                    ints_attr("pads", {c.pad_top, c.pad_left, bottom, right})});
  }
  // Inference: the moving statistics.
  std::string batch_norm(const LayerSpec& l, const std::string& x) {
    std::vector<std::string> in{x};
    for (const char* t : {"gamma", "beta", "moving_mean", "moving_variance"}) {
      g_.initializer(l.name + "/" + t, {l.in.c}, tensor_at(m_, l, t));
      in.push_back(l.name + "/" + t);
    }
    return g_.node("BatchNormalization", in, l.name + "/out", {float_attr("epsilon", l.epsilon)});
  }
  std::string residual(const LayerSpec& l, const std::string& x) {
    const auto& p = l.parts;
    const std::string a1 = activation(g_, l.activation, batch_norm(p[1], conv(p[0], x)), p[1].name + "/act");
    const std::string b2 = batch_norm(p[3], conv(p[2], a1));
    const std::string shortcut = p.size() > 4 ? batch_norm(p[5], conv(p[4], x)) : x;
    return activation(g_, l.activation, g_.node("Add", {b2, shortcut}, l.name + "/sum"), l.name + "/out");
  }

  GraphBuilder& g_;
  const SavedModel& m_;
  bool flat_ = true;  // the current value is (N, F)

 public:
  // Dense-only models read the input row as it is; the others as (N, C, H, W).
  std::string input(const std::string& x, const Model& model) {
    if (model.dense_only()) return x;
    const Shape s = model.input_shape();
    g_.int64_initializer("input_shape", {-1, s.c, s.h, s.w});
    flat_ = false;
    return g_.node("Reshape", {x, "input_shape"}, "images");
  }
};

}  // namespace

const char* output_name(const SavedModel& model) {
  return model.classifier ? "probabilities" : "outputs";
}

std::string onnx_model_bytes(const SavedModel& m, const std::string& graph_name) {
  const auto& layers = m.model->layers();
  GraphBuilder g;
  g.constant("scale", m.input_scale);
  if (std::any_of(layers.begin(), layers.end(), [](const LayerSpec& l) { return l.activation == Activation::kGelu; })) {
    g.constant("gelu_a", 0.044715f);  // kernels/host_device.h kGeluA, kGeluC
    g.constant("gelu_c", 0.7978845608028654f);
    g.constant("half", 0.5f);
    g.constant("one", 1.0f);
  }
  const std::string scaled = g.node("Mul", {kOnnxInputName, "scale"}, "scaled_inputs");
  LayerWriter w(g, m);
  std::string logits = w.input(scaled, *m.model);
  for (size_t i = 0; i < layers.size(); ++i) logits = w.layer(layers[i], logits, i + 1 == layers.size());
  if (m.classifier) {
    g.node("Softmax", {logits}, output_name(m), {int_attr("axis", 1)});
  }
  const Message graph = g.graph(graph_name, value_info(kOnnxInputName, m.model->input_dim()),
                                value_info(output_name(m), m.model->output_dim()));
  // ModelProto: ir_version = 1, producer_name = 2, producer_version = 3, graph = 7,
  // opset_import = 8 (OperatorSetIdProto: domain = 1 (""), version = 2).
  Message opset, model;
  opset.bytes(1, "").varint(2, 13);
  model.varint(1, 7).bytes(2, "lockstep").bytes(3, kLockstepVersion).message(7, graph).message(8, opset);
  return model.str();
}

void export_onnx(const SavedModel& model, const std::string& graph_name, const std::string& path,
                 bool overwrite) {
  const std::string bytes = onnx_model_bytes(model, graph_name);
  AtomicOutput file(path, overwrite, "model.onnx");
  file.write(bytes);
  file.commit();
}

}  // namespace lockstep
