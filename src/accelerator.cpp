// A build without CUDA: no device is visible and asking for one is a
// configuration error naming the key (gpu/ defines these with CUDA).
#include "src/accelerator.h"

#if !defined(LOCKSTEP_HAVE_CUDA)

namespace lockstep {

int visible_cuda_devices() { return 0; }

bool use_cuda(const Config& config) {
  if (config.device == DeviceKind::kCuda) {
    throw ConfigError(config.where("strategy.device") + ": key 'strategy.device': cuda, but this lockstep was built "
                      "without CUDA (rebuild with -DLOCKSTEP_CUDA=ON, or use device: cpu or auto)");
  }
  return false;
}

std::unique_ptr<DeviceGroup> make_cuda_group(const Model&, const Config& config, World&, int,
                                             int64_t) {
  throw ConfigError(config.where("strategy.device") + ": key 'strategy.device': this lockstep was built without CUDA");
}

}  // namespace lockstep

#endif  // !LOCKSTEP_HAVE_CUDA
