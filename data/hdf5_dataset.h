// The lockstep HDF5 dataset layout (data/README.md): reading a split (whole
// into memory, or row by row with hyperslab selections), writing a file
// atomically, and converting MNIST-style IDX files into one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/array.h"
#include "data/input.h"

namespace lockstep {

// One group of the file: x (N, feature dims...) uint8|float32, and y: (N)
// uint8|int32|int64 labels for classification, or (N, target_dim) float32
// targets for regression.
struct DatasetSplit {
  std::string name;  // "train", "test", "validation"
  HostArray x;
  HostArray y;
};

struct Hdf5ReadOptions {
  float scale = 1.0f;  // multiplies every feature
  // A split whose features take at most this many bytes is loaded whole at open
  // (one sequential read, then every batch is a memory gather); a larger one is
  // read per batch with hyperslab selections of just the requested rows.
  int64_t cache_limit_bytes = int64_t(2) << 30;
  // HDF5's chunk cache for per-row reads (its default, 1 MiB, thrashes on
  // random rows).
  int64_t chunk_cache_bytes = int64_t(64) << 20;
  // Read the split once in a forked child first (hdf5_trial_read, hdf5_util.h),
  // so that a file crafted to crash the HDF5 library ends in a DataError rather
  // than taking the process down. A split served per row is read whole there
  // (one extra pass over the file at open).
  bool trial_read = true;
};

// open_dataset (data/input.h) with explicit read options.
std::shared_ptr<Source> open_hdf5_split(const std::string& path, const std::string& split,
                                        const Hdf5ReadOptions& options);

// Loads one split raw (x and y as stored, y widened to int64 for labels),
// validated like open_dataset. num_classes (0 for regression) goes to
// *num_classes when given.
DatasetSplit load_hdf5_split(const std::string& path, const std::string& split,
                             int64_t* num_classes = nullptr);

struct Hdf5WriteOptions {
  bool overwrite = false;  // replace an existing file (otherwise DataError)
  int64_t chunk_rows = 0;  // rows per chunk along N; 0 = about 64 KiB per chunk
  int deflate_level = 0;   // 0 = uncompressed (fastest row reads), 1..9 = gzip
};

// Writes splits in the lockstep layout, with root attributes format, version
// and (when num_classes > 0, classification) num_classes. Atomic: a temp file in
// the same folder, renamed into place when complete.
void write_hdf5_dataset(const std::string& path, const std::vector<DatasetSplit>& splits,
                        int64_t num_classes, const Hdf5WriteOptions& options = {});

// What a conversion produced, for the command line to print.
struct ConvertSummary {
  std::string path;
  int64_t train_rows = 0;
  int64_t test_rows = 0;
  std::vector<int64_t> feature_shape;
  int64_t num_classes = 0;
  int64_t file_bytes = 0;
  std::string to_string() const;  // one line
};

// The whole `lockstep convert idx` job: read the four IDX files (raw or .gz),
// check them (matching counts, same image shape), write train and test splits
// (uint8 x, uint8 y) to out_path atomically.
ConvertSummary convert_idx_to_hdf5(const std::string& train_images, const std::string& train_labels,
                                   const std::string& test_images, const std::string& test_labels,
                                   const std::string& out_path, const Hdf5WriteOptions& options = {});

}  // namespace lockstep
