// The Communicator contract: the one interface every collective goes through.
// Backends (single-rank, local threads, MPI, hierarchical, NCCL) fill it in; call
// sites never branch on the backend, and a one-rank communicator is the default.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

namespace lockstep {

enum class DType { kFloat32, kFloat64, kInt32, kInt64, kUInt8 };
enum class ReduceOp { kSum, kMax, kMin };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* reduce_op_name(ReduceOp op);

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::kFloat32; }
template <> constexpr DType dtype_of<double>() { return DType::kFloat64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::kInt32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::kInt64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::kUInt8; }

// A zeroed float array for collectives to run on (Communicator::allocate), 64-byte
// aligned. It owns its memory and frees it when destroyed, which may be after the
// communicator that made it. Move-only.
class CommBuffer {
 public:
  CommBuffer() = default;
  // `owner` frees the memory [data, data + size) when the last copy of it goes.
  CommBuffer(float* data, size_t size, std::shared_ptr<void> owner)
      : data_(data), size_(size), owner_(std::move(owner)) {}
  CommBuffer(CommBuffer&&) = default;
  CommBuffer& operator=(CommBuffer&&) = default;
  CommBuffer(const CommBuffer&) = delete;
  CommBuffer& operator=(const CommBuffer&) = delete;

  float* data() const { return data_; }
  size_t size() const { return size_; }
  float* begin() const { return data_; }
  float* end() const { return data_ + size_; }
  float& operator[](size_t i) const { return data_[i]; }

 private:
  float* data_ = nullptr;
  size_t size_ = 0;
  std::shared_ptr<void> owner_;
};

// Every communication failure: the message names the rank, the operation, the
// backend's own error text and a hint.
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Contract, for every backend:
// - All members of the group call the same collectives in the same order with the
//   same count and dtype; `count` is in ELEMENTS, never bytes.
// - Collectives are in place where that makes sense. Host backends block: when the
//   call returns, the result is in the caller's buffer. Device backends (NCCL) are
//   stream-ordered instead: the call is ordered after the work already enqueued on
//   the member's compute stream, work enqueued there afterwards sees the result, and
//   the host never waits for the device (synchronise the stream to read on the host).
//   count == 0 is legal (a no-op that synchronises nothing and must not hang).
// - Results are deterministic: the same inputs on the same group give bitwise the
//   same output on every member, every time (fixed reduction order).
// - Buffers are host memory, except for device backends (NCCL), whose buffers are
//   device memory of the caller's device.
// - A member that stops making progress must not hang the others forever: a
//   backend with a deadline throws CommError naming who did not arrive (a device
//   backend aborts the collective on the device and the next call throws).
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Short backend name for logs and benchmark headers ("single", "local", "mpi"...).
  virtual std::string name() const = 0;
  // The name with how the backend chose to work here, for the plan ("shm
  // (streaming stores)"); the name alone by default.
  virtual std::string describe() const { return name(); }

  // The collectives. Arguments are checked here, once for every backend, before
  // the backend sees them: a known dtype and op, a root in 0..size()-1, and no null
  // buffer with count > 0 (CommError naming the backend, rank and argument).
  // buf[i] = op over all members of buf[i]; every member gets the result.
  void allreduce(void* buf, size_t count, DType dtype, ReduceOp op);
  // buf on every member = buf on `root`.
  void broadcast(void* buf, size_t count, DType dtype, int root);
  // recv (size() * count elements) = concatenation of every member's send, by rank.
  void allgather(const void* send, void* recv, size_t count, DType dtype);
  virtual void barrier() = 0;

  // Memory for the buffers of this member's collectives: `count` zeroed floats.
  // A backend whose members can reach each other's memory directly gives memory
  // they share, and its all-reduces on it read and write the peers' buffers in
  // place instead of copying through staging buffers (shm: one segment that every
  // process of the node maps). Such a backend meets its peers here, so every
  // member calls allocate alike: the same count, in the same order among its
  // collectives. The others (the default) return ordinary memory without meeting,
  // so one thread may allocate for every member of a group of threads. Any buffer
  // works with every collective; this memory only makes some faster.
  virtual CommBuffer allocate(size_t count);
  // One array of `count` zeroed floats that every member sees as the same memory:
  // state the members keep once between them instead of once each (the CPU
  // replicas' weights and optimizer slots, when every process of the job is on
  // one node). Collective like allocate. Members write it only in parts that no
  // other member reads until a collective (a barrier) orders the two. An empty
  // CommBuffer (size 0) where the members cannot share memory: the default, and
  // shm when the memory cannot be had (every member learns it alike).
  virtual CommBuffer allocate_common(size_t count);

  // Typed conveniences.
  template <typename T>
  void allreduce(T* buf, size_t count, ReduceOp op = ReduceOp::kSum) {
    allreduce(static_cast<void*>(buf), count, dtype_of<T>(), op);
  }
  template <typename T>
  void broadcast(T* buf, size_t count, int root = 0) {
    broadcast(static_cast<void*>(buf), count, dtype_of<T>(), root);
  }
  template <typename T>
  void allgather(const T* send, T* recv, size_t count) {
    allgather(static_cast<const void*>(send), static_cast<void*>(recv), count, dtype_of<T>());
  }

 protected:
  // What each backend implements, called with checked arguments.
  virtual void do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) = 0;
  virtual void do_broadcast(void* buf, size_t count, DType dtype, int root) = 0;
  virtual void do_allgather(const void* send, void* recv, size_t count, DType dtype) = 0;

 private:
  void check_buffer(const void* p, size_t count, const char* op, const char* what) const;
  // Throws CommError naming the collective when dtype or op is not a known enumerator.
  void check_known(DType dtype, ReduceOp op, const char* what) const;
};

// `count` zeroed floats of this process's own memory, 64-byte aligned (what
// Communicator::allocate gives by default).
CommBuffer host_buffer(size_t count);

// The default: a group of one. Every collective is the identity.
std::unique_ptr<Communicator> make_single_communicator();

}  // namespace lockstep
