// Fuzz target: one `--set key=value` argument (the whole input) parsed by
// parse_override and applied over a valid config. Any input must end in a
// Config or a ConfigError.
#include <cstdint>
#include <string>

#include "src/config.h"
#include "tests/fuzz/common.h"

namespace {

constexpr const char* kBase =
    "data: {path: data.h5}\n"
    "model: {layers: [{units: 8, activation: relu}]}\n"
    "train: {epochs: 1, batch_size: 16}\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const lockstep::Override o = lockstep::parse_override(text);
    const lockstep::Config c = lockstep::parse_config(kBase, "base.yaml", {o});
    (void)c.to_yaml();
  } catch (const lockstep::ConfigError&) {
    // the expected way to refuse an input
  } catch (const std::exception& e) {
    lockstep::fuzz::unexpected_exception("override", e);
  }
  return 0;
}
