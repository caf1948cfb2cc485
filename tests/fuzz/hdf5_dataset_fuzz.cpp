// Fuzz target: the input is a dataset file. Both splits are opened the way
// training does, cached or per row (the path of splits too large to cache),
// and a few global batches are read through DistributedInput. Any input must
// end in batches or a DataError.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "data/hdf5_dataset.h"
#include "data/input.h"
#include "tests/fuzz/common.h"

namespace {

void read_some(const std::shared_ptr<lockstep::Source>& source) {
  const lockstep::DatasetInfo& info = source->info();
  lockstep::InputOptions o;
  o.global_batch = std::min<int64_t>(info.size, 4);
  o.num_replicas = o.local_replicas = o.global_batch >= 2 ? 2 : 1;
  o.prefetch = 0;
  o.seed = 3;
  lockstep::DistributedInput input(source, o);
  std::vector<lockstep::ReplicaBatch> batches;
  volatile float sink = 0;
  for (int step = 0; step < 3 && input.next(batches); ++step) {
    for (const lockstep::ReplicaBatch& b : batches) {
      for (int64_t i = 0; i < b.rows * info.feature_dim; ++i) sink = sink + b.x[i];
      if (b.labels != nullptr)
        for (int64_t i = 0; i < b.rows; ++i) sink = sink + float(b.labels[i]);
      if (b.targets != nullptr)
        for (int64_t i = 0; i < b.rows * info.target_dim; ++i) sink = sink + b.targets[i];
    }
  }
  // The last row too: per-row reads go through HDF5 for every batch.
  std::vector<float> x(size_t(info.feature_dim)), targets(size_t(std::max<int64_t>(info.target_dim, 1)));
  int32_t label = 0;
  const int64_t last = info.size - 1;
  source->read(&last, 1, x.data(), info.num_classes > 0 ? &label : nullptr,
               info.target_dim > 0 ? targets.data() : nullptr);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lockstep::fuzz::TempFile file(data, size, ".h5");
  // Cached or per row: one bit of the input decides, so that each input costs
  // two opens (each a trial read in a child) and mutation still reaches both.
  const bool per_row = size > 0 && (data[size / 2] & 1) != 0;
  for (const char* split : {"train", "test"}) {
    try {
      lockstep::Hdf5ReadOptions options;
      options.scale = 1.0f / 255;
      options.cache_limit_bytes = per_row ? 0 : int64_t(1) << 30;
      options.chunk_cache_bytes = 1 << 20;
      read_some(lockstep::open_hdf5_split(file.path(), split, options));
    } catch (const lockstep::DataError&) {
      // the expected way to refuse an input
    } catch (const std::exception& e) {
      lockstep::fuzz::unexpected_exception("hdf5_dataset", e);
    }
  }
  lockstep::fuzz::check_hdf5_closed("hdf5_dataset");
  return 0;
}
