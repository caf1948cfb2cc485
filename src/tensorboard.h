// TensorBoard event files, written by lockstep itself (no TensorFlow, no
// libprotobuf): TFRecord framing (length, masked CRC-32C of the length, the
// record, masked CRC-32C of the record) around hand-encoded Event protobuf
// messages holding scalar summaries, laid out as the Keras callback lays them
// out: OUTPUT_DIR/tensorboard/train/ and OUTPUT_DIR/tensorboard/validation/.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace lockstep {

// CRC-32C (Castagnoli) of n bytes, and the "masked" form TFRecord stores
// (rotated right by 15 bits plus 0xa282ead8).
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);

// The protobuf bytes of one Event: wall_time (field 1, double), step (field 2,
// int64) and a Summary (field 5) with one Value {tag (1), simple_value (2)}.
std::string scalar_event(double wall_time, int64_t step, const std::string& tag, float value);
// The first Event of every file: file_version "brain.Event:2" (field 3).
std::string version_event(double wall_time);
// One TFRecord: uint64 length, masked CRC of the length, data, masked CRC of the data.
std::string tfrecord(const std::string& data);

// One events.out.tfevents.* file in `dir` (created with its parents). Throws
// std::runtime_error naming the path when it cannot be created or written.
class EventFileWriter {
 public:
  explicit EventFileWriter(const std::string& dir);
  ~EventFileWriter();
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;

  void scalar(const std::string& tag, int64_t step, double value);
  void flush();

 private:
  void write(const std::string& event);
  std::string path_;
  std::FILE* file_ = nullptr;
};

// What one epoch puts in the files; step = the epoch index (0-based, as Keras).
struct EpochScalars {
  int64_t epoch = 0;
  double loss = 0, val_loss = 0;
  double accuracy = 0, val_accuracy = 0;
  bool classification = true;  // write the accuracy tags
  double learning_rate = 0, samples_per_sec = 0;
};

// The event files lockstep wrote under OUTPUT_DIR/tensorboard/{train,validation}
// (a run folder's earlier work: --overwrite removes them).
std::vector<std::string> tensorboard_files(const std::string& output_dir);

// The train/ and validation/ writers of one run (output.tensorboard).
class TensorBoardLog {
 public:
  explicit TensorBoardLog(const std::string& output_dir);
  // train/: epoch_loss, epoch_accuracy, learning_rate, samples_per_sec;
  // validation/: epoch_loss, epoch_accuracy. Flushed at once.
  void epoch(const EpochScalars& s);
  // train/batch_loss: the mean loss of the global batch of step `step`.
  void batch_loss(int64_t step, double loss) { train_.scalar("batch_loss", step, loss); }

 private:
  EventFileWriter train_, validation_;
};

}  // namespace lockstep
