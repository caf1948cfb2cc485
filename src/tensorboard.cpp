// TensorBoard event files: CRC-32C, a minimal protobuf encoder for Event and
// Summary, TFRecord framing, and the per-run train/validation writers.
#include "src/tensorboard.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "src/protobuf.h"

namespace lockstep {
namespace {

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // reflected Castagnoli
    t[i] = c;
  }
  return t;
}

template <typename T>
void put_le(std::string& out, T v) {  // the record framing's uint64/uint32: little-endian bytes
  unsigned char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(char(b[i]));  // x86/ARM are little-endian
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  static const std::array<uint32_t, 256> table = make_crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string scalar_event(double wall_time, int64_t step, const std::string& tag, float value) {
  Message v, summary, e;  // Summary.Value, Summary, Event
  v.bytes(1, tag).fixed32(2, value);
  summary.message(1, v);
  e.fixed64(1, wall_time).varint(2, uint64_t(step)).message(5, summary);
  return e.str();
}

std::string version_event(double wall_time) {
  Message e;
  e.fixed64(1, wall_time).varint(2, 0).bytes(3, "brain.Event:2");
  return e.str();
}

std::string tfrecord(const std::string& data) {
  std::string out;
  const uint64_t len = data.size();
  put_le(out, len);
  put_le(out, masked_crc32c(out.data(), 8));
  out += data;
  put_le(out, masked_crc32c(data.data(), data.size()));
  return out;
}

EventFileWriter::EventFileWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  const double t = now_seconds();
  path_ = (std::filesystem::path(dir) / ("events.out.tfevents." + std::to_string(int64_t(t)) + "." +
                                         host + "." + std::to_string(getpid()) + ".lockstep"))
              .string();
  file_ = ec ? nullptr : std::fopen(path_.c_str(), "wb");
  if (!file_) {
    throw std::runtime_error("output.tensorboard: cannot create " + path_ + ": " +
                             (ec ? ec.message() : std::string(std::strerror(errno))) +
                             " (choose another output.dir, or set output.tensorboard: false)");
  }
  write(version_event(t));
}

EventFileWriter::~EventFileWriter() {
  if (file_) std::fclose(file_);
}

void EventFileWriter::write(const std::string& event) {
  const std::string rec = tfrecord(event);
  if (std::fwrite(rec.data(), 1, rec.size(), file_) != rec.size()) {
    throw std::runtime_error("output.tensorboard: cannot write " + path_ + ": " + std::strerror(errno));
  }
}

void EventFileWriter::scalar(const std::string& tag, int64_t step, double value) {
  write(scalar_event(now_seconds(), step, tag, float(value)));
}

void EventFileWriter::flush() {
  if (std::fflush(file_) != 0) {
    throw std::runtime_error("output.tensorboard: cannot write " + path_ + ": " + std::strerror(errno));
  }
}

std::vector<std::string> tensorboard_files(const std::string& output_dir) {
  std::vector<std::string> out;
  for (const char* sub : {"train", "validation"}) {
    std::error_code ec;
    const auto dir = std::filesystem::path(output_dir) / "tensorboard" / sub;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.rfind("events.out.tfevents.", 0) == 0 && name.size() > 9 &&
          name.compare(name.size() - 9, 9, ".lockstep") == 0) {
        out.push_back(it->path().string());
      }
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

TensorBoardLog::TensorBoardLog(const std::string& output_dir)
    : train_((std::filesystem::path(output_dir) / "tensorboard" / "train").string()),
      validation_((std::filesystem::path(output_dir) / "tensorboard" / "validation").string()) {}

void TensorBoardLog::epoch(const EpochScalars& s) {
  train_.scalar("epoch_loss", s.epoch, s.loss);
  validation_.scalar("epoch_loss", s.epoch, s.val_loss);
  if (s.classification) {
    train_.scalar("epoch_accuracy", s.epoch, s.accuracy);
    validation_.scalar("epoch_accuracy", s.epoch, s.val_accuracy);
  }
  train_.scalar("learning_rate", s.epoch, s.learning_rate);
  train_.scalar("samples_per_sec", s.epoch, s.samples_per_sec);
  train_.flush();
  validation_.flush();
}

}  // namespace lockstep
