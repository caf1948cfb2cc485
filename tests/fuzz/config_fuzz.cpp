// Fuzz target: parse_config on arbitrary text. Any input must end in a Config
// or a ConfigError; a Config that parses must print (to_yaml, the text stored in
// model files) as YAML that parses again to the same integer and text settings.
#include <cstdint>
#include <string>

#include "src/config.h"
#include "tests/fuzz/common.h"

namespace {

void check_round_trip(const lockstep::Config& c) {
  using lockstep::fuzz::property_failed;
  const std::string yaml = c.to_yaml();
  lockstep::Config again;
  try {
    again = lockstep::parse_config(yaml, "resolved");
  } catch (const lockstep::ConfigError& e) {
    property_failed("config", std::string("the resolved config does not parse: ") + e.what() + "\n" + yaml);
  }
  if (again.data_path != c.data_path || again.output_dir != c.output_dir ||
      again.layers.size() != c.layers.size() || again.epochs != c.epochs ||
      again.batch_size != c.batch_size || again.seed != c.seed ||
      again.local_replicas != c.local_replicas || again.check_every != c.check_every)
    property_failed("config", "the resolved config reads back differently:\n" + yaml);
  (void)c.table();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const lockstep::Config c = lockstep::parse_config(text, "fuzz.yaml");
    check_round_trip(c);
  } catch (const lockstep::ConfigError&) {
    // the expected way to refuse an input
  } catch (const std::exception& e) {
    lockstep::fuzz::unexpected_exception("config", e);
  }
  return 0;
}
