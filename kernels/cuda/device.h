// CUDA device plumbing shared by kernels/cuda and comm/ (NCCL): checked calls that
// throw CudaError naming the device, call, file:line, CUDA's text and a hint; device
// count/selection; RAII streams, events and device buffers. Only under LOCKSTEP_HAVE_CUDA.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

#include <cuda_runtime_api.h>

namespace lockstep::cuda {

// A failed CUDA runtime or cuBLAS call (what() says where and what to try).
class CudaError : public std::runtime_error {
 public:
  explicit CudaError(const std::string& what) : std::runtime_error(what) {}
};

// Build and throw the error for a failed call (kept out of line: cold path).
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);

// The device the calling thread is bound to, or -1 if none can be queried.
int current_device();
// Number of visible devices; 0 when there is no driver or no GPU (never throws).
int device_count();
// Binds the calling thread to `device`; throws CudaError naming the count if out of range.
void set_device(int device);
// "NVIDIA H100 80GB HBM3 (sm_90)" for logs.
std::string device_name(int device);

}  // namespace lockstep::cuda

#define LOCKSTEP_CUDA_CHECK(call)                                               \
  do {                                                                          \
    const cudaError_t lockstep_cuda_err_ = (call);                              \
    if (lockstep_cuda_err_ != cudaSuccess) {                                    \
      ::lockstep::cuda::throw_cuda_error(lockstep_cuda_err_, #call, __FILE__, __LINE__); \
    }                                                                           \
  } while (0)

namespace lockstep::cuda {

// An owned stream (non-blocking with respect to the legacy default stream).
class Stream {
 public:
  Stream() { LOCKSTEP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }
  void synchronize() const { LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

// An owned event without timing (for ordering streams, e.g. compute -> NCCL).
class Event {
 public:
  explicit Event(bool timing = false) {
    LOCKSTEP_CUDA_CHECK(
        cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
  }
  ~Event() {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }
  void record(cudaStream_t stream) const { LOCKSTEP_CUDA_CHECK(cudaEventRecord(event_, stream)); }
  // Makes `stream` wait (on the device) until this event has completed.
  void wait_on(cudaStream_t stream) const {
    LOCKSTEP_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0));
  }
  void synchronize() const { LOCKSTEP_CUDA_CHECK(cudaEventSynchronize(event_)); }

 private:
  cudaEvent_t event_ = nullptr;
};

// An owned device allocation of n elements of T.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n_ > 0) LOCKSTEP_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&ptr_), n_ * sizeof(T)));
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), n_(std::exchange(other.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(ptr_, other.ptr_);
    std::swap(n_, other.n_);
    return *this;
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return n_; }
  // Synchronous by contract, whatever streams the caller uses: a blocking
  // cudaMemcpy runs on the legacy stream, which does not order with non-blocking
  // streams (every lockstep stream). So upload() returns only when the data is on
  // the device for every later launch, and download() first waits for all work
  // already enqueued on the device (this device, all streams). For tests, tools and
  // set-up; the step itself stages through its own stream.
  void upload(const T* host, size_t n) {
    LOCKSTEP_CUDA_CHECK(cudaMemcpy(ptr_, host, n * sizeof(T), cudaMemcpyHostToDevice));
    LOCKSTEP_CUDA_CHECK(cudaDeviceSynchronize());
  }
  void download(T* host, size_t n) const {
    LOCKSTEP_CUDA_CHECK(cudaDeviceSynchronize());
    LOCKSTEP_CUDA_CHECK(cudaMemcpy(host, ptr_, n * sizeof(T), cudaMemcpyDeviceToHost));
  }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

}  // namespace lockstep::cuda
