// Protocol-buffer wire format, enough for the two protobuf files lockstep writes
// without a protobuf library: ONNX models (src/onnx_export.cpp) and TensorBoard
// events (src/tensorboard.cpp). A message is a sequence of (tag, value) fields,
// tag = field_number << 3 | wire_type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace lockstep {

class Message {
 public:
  Message& varint(int field, uint64_t v) {
    key(field, 0);
    put_varint(v);
    return *this;
  }
  Message& fixed64(int field, double d) { return fixed(field, 1, d); }
  Message& fixed32(int field, float f) { return fixed(field, 5, f); }
  Message& bytes(int field, const std::string& s) {
    key(field, 2);
    put_varint(s.size());
    out_ += s;
    return *this;
  }
  Message& message(int field, const Message& m) { return bytes(field, m.out_); }
  const std::string& str() const { return out_; }

 private:
  void key(int field, int wire) { put_varint(uint64_t(field) << 3 | uint64_t(wire)); }
  void put_varint(uint64_t v) {
    while (v >= 0x80) {
      out_ += char((v & 0x7f) | 0x80);
      v >>= 7;
    }
    out_ += char(v);
  }
  template <typename T>
  Message& fixed(int field, int wire, T v) {
    key(field, wire);
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86-64, aarch64)
    out_.append(b, sizeof(T));
    return *this;
  }
  std::string out_;
};

}  // namespace lockstep
