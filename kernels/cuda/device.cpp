// Device queries and the error path of LOCKSTEP_CUDA_CHECK: every CUDA failure
// becomes a CudaError that says which device, which call, where, and what to try.
#include "kernels/cuda/device.h"

#include <sstream>

namespace lockstep::cuda {
namespace {

const char* hint_for(cudaError_t err) {
  switch (err) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return "no usable GPU: check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES";
    case cudaErrorInvalidDevice:
      return "device id out of range: check local ranks per node against visible GPUs";
    case cudaErrorMemoryAllocation:
      return "out of device memory: lower the per-replica batch or free other processes";
    case cudaErrorInvalidValue:
      return "an argument is invalid: check sizes, pointers and leading dimensions";
    case cudaErrorIllegalAddress:
      return "a kernel read or wrote outside its buffers: rerun with compute-sanitizer";
    case cudaErrorNoKernelImageForDevice:
      return "not compiled for this GPU: add its arch to CMAKE_CUDA_ARCHITECTURES";
    default:
      return "rerun with CUDA_LAUNCH_BLOCKING=1 to find the failing call";
  }
}

}  // namespace

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  std::ostringstream msg;
  msg << "CUDA error on device " << current_device() << ": " << call << " at " << file << ":"
      << line << ": " << cudaGetErrorName(err) << " (" << cudaGetErrorString(err)
      << "); hint: " << hint_for(err);
  throw CudaError(msg.str());
}

int current_device() {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later checks see their own
    return -1;
  }
  return device;
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

void set_device(int device) {
  const int count = device_count();
  if (device < 0 || device >= count) {
    throw CudaError("CUDA error: device " + std::to_string(device) + " requested but " +
                    std::to_string(count) + " visible; hint: " + hint_for(cudaErrorInvalidDevice));
  }
  LOCKSTEP_CUDA_CHECK(cudaSetDevice(device));
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  LOCKSTEP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
         std::to_string(prop.minor) + ")";
}

}  // namespace lockstep::cuda
