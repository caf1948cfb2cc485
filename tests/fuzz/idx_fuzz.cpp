// Fuzz target: the input is one IDX file (raw or gzip). read_idx must return an
// array whose bytes match its shape or throw DataError; a file that reads is
// then paired with a matching partner (zero labels for images, blank images for
// labels) and served through open_idx and DistributedInput.
#include <cstdint>
#include <string>
#include <vector>

#include "data/input.h"
#include "data/sources.h"
#include "tests/fuzz/common.h"

namespace {

using lockstep::HostArray;

std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, size_t data_bytes) {
  std::vector<uint8_t> out = {0, 0, 0x08, uint8_t(dims.size())};
  for (uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(d >> shift));
  out.resize(out.size() + data_bytes, 0);
  return out;
}

void read_everything(const std::shared_ptr<lockstep::Source>& source) {
  lockstep::InputOptions o;
  o.global_batch = std::min<int64_t>(source->info().size, 5);
  o.prefetch = 0;
  o.seed = 7;
  lockstep::DistributedInput input(source, o);
  std::vector<lockstep::ReplicaBatch> batches;
  volatile float sink = 0;
  while (input.next(batches))
    for (int64_t i = 0; i < batches[0].rows * source->info().feature_dim; ++i) sink = sink + batches[0].x[i];
}

void serve_with_partner(const HostArray& a, const std::string& path) {
  const uint32_t rows = uint32_t(a.rows());
  if (rows == 0 || rows > 4096 || a.elements() > (int64_t(1) << 20)) return;  // keep each input fast
  if (a.shape.size() == 1) {
    const std::vector<uint8_t> images = idx_bytes({rows, 1, 1}, rows);
    lockstep::fuzz::TempFile partner(images.data(), images.size(), ".idx3");
    read_everything(lockstep::open_idx(partner.path(), path));
  } else {
    const std::vector<uint8_t> labels = idx_bytes({rows}, rows);
    lockstep::fuzz::TempFile partner(labels.data(), labels.size(), ".idx1");
    read_everything(lockstep::open_idx(path, partner.path()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lockstep::fuzz::TempFile file(data, size, ".idx");
  try {
    const HostArray a = lockstep::read_idx(file.path());
    if (int64_t(a.bytes.size()) != a.elements())
      lockstep::fuzz::property_failed("idx", "array of shape " + lockstep::shape_string(a.shape) + " holds " +
                                                 std::to_string(a.bytes.size()) + " bytes");
    serve_with_partner(a, file.path());
  } catch (const lockstep::DataError&) {
    // the expected way to refuse an input
  } catch (const std::exception& e) {
    lockstep::fuzz::unexpected_exception("idx", e);
  }
  return 0;
}
