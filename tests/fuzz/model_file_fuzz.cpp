// Fuzz target: the input is a model file, read with load_state for the model
// the seed files were written for (and with no model, as resume does first).
// Any input must end in a SavedState of the model's size or a DataError.
#include <cstdint>
#include <string>

#include "data/input.h"
#include "src/checkpoint.h"
#include "tests/fuzz/common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lockstep::fuzz::TempFile file(data, size, ".h5");
  const lockstep::Model model = lockstep::fuzz::model_file_model();
  for (const lockstep::Model* m : {static_cast<const lockstep::Model*>(nullptr), &model}) {
    try {
      const lockstep::SavedState s = lockstep::load_state(file.path(), m);
      if (m != nullptr && int64_t(s.params.size()) != m->num_params())
        lockstep::fuzz::property_failed("model_file", "loaded " + std::to_string(s.params.size()) +
                                                          " parameters for a model of " +
                                                          std::to_string(m->num_params()));
      for (const auto& [name, slot] : s.slots)
        if (int64_t(slot.size()) != model.num_params())
          lockstep::fuzz::property_failed("model_file", "optimizer slot '" + name + "' has the wrong size");
    } catch (const lockstep::DataError&) {
      // the expected way to refuse an input
    } catch (const std::exception& e) {
      lockstep::fuzz::unexpected_exception("model_file", e);
    }
  }
  lockstep::fuzz::check_hdf5_closed("model_file");
  return 0;
}
