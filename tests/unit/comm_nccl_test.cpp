// NcclGroup against exact expectations: small-integer fp32 inputs whose sums are
// exact in any order (compared with ==), wrapping uint8 sums, odd sizes, zero
// length, replicas sharing one GPU, stream ordering, and the failure paths.
// Without CUDA in the build or without a device, every test is SKIPPED, loudly.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(LOCKSTEP_HAVE_CUDA)
#include "comm/nccl_communicator.h"
#include "kernels/cuda/device.h"
#endif

namespace lockstep {
namespace {

bool skip_without_device() {
#if defined(LOCKSTEP_HAVE_CUDA)
  if (cuda::device_count() > 0) return false;
#endif
  std::fprintf(stderr, "\n*** no CUDA device: NCCL tests SKIPPED ***\n");
  return true;
}

#define LOCKSTEP_NEED_DEVICE()                                      \
  do {                                                              \
    if (skip_without_device()) {                                    \
      GTEST_SKIP() << "no CUDA device: NCCL tests SKIPPED";         \
    }                                                               \
  } while (0)

#if defined(LOCKSTEP_HAVE_CUDA)

// Runs body(member, replica, its stream) on one thread per replica, each bound to
// its device with its own compute stream; returns each replica's exception text.
std::vector<std::string> run_replicas(
    NcclGroup& group, const std::vector<int>& devices,
    const std::function<void(Communicator&, int, cudaStream_t)>& body) {
  const int k = static_cast<int>(devices.size());
  std::vector<std::string> errors(static_cast<size_t>(k));
  std::vector<std::thread> threads;
  for (int i = 0; i < k; ++i) {
    threads.emplace_back([&, i] {
      try {
        cuda::set_device(devices[size_t(i)]);
        cuda::Stream stream;
        group.set_stream(i, stream.get());
        body(group.member(i), i, stream.get());
        stream.synchronize();
      } catch (const std::exception& e) {
        errors[size_t(i)] = e.what();
        group.fail(e.what());
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}

void expect_no_errors(const std::vector<std::string>& errors) {
  for (size_t i = 0; i < errors.size(); ++i) EXPECT_EQ(errors[i], "") << "replica " << i;
}

float pattern(int rank, size_t i) { return float(int((i * 7 + size_t(rank) * 13) % 61) - 30); }

// Uploads, all-reduces and downloads on the replica's stream only: the result must
// be there without any host synchronisation in between (stream order).
std::vector<float> allreduce_on_stream(Communicator& c, cudaStream_t s, size_t n) {
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = pattern(c.rank(), i);
  cuda::DeviceBuffer<float> dev(n);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(dev.data(), host.data(), n * 4, cudaMemcpyHostToDevice, s));
  c.allreduce(dev.data(), n, ReduceOp::kSum);
  LOCKSTEP_CUDA_CHECK(cudaMemcpyAsync(host.data(), dev.data(), n * 4, cudaMemcpyDeviceToHost, s));
  LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(s));
  return host;
}

void check_float_sums(const std::vector<int>& devices, size_t n) {
  NcclGroup group(MPI_COMM_NULL, devices);
  const int k = static_cast<int>(devices.size());
  expect_no_errors(run_replicas(group, devices, [&](Communicator& c, int, cudaStream_t s) {
    const std::vector<float> got = allreduce_on_stream(c, s, n);
    for (size_t i = 0; i < n; ++i) {
      float want = 0;
      for (int r = 0; r < k; ++r) want += pattern(r, i);
      ASSERT_EQ(got[i], want) << "element " << i << " on rank " << c.rank();
    }
  }));
}

TEST(CommNccl, OneReplicaOddSizeIsIdentity) {
  LOCKSTEP_NEED_DEVICE();
  check_float_sums({0}, 1001);
}

TEST(CommNccl, SameGpuReplicasSumExactly) {
  LOCKSTEP_NEED_DEVICE();
  check_float_sums({0, 0, 0}, 1);
  check_float_sums({0, 0, 0}, 4099);
  check_float_sums({0, 0}, (size_t{1} << 20) + 3);
}

TEST(CommNccl, TwoGpusAndSharedGpusCombine) {
  LOCKSTEP_NEED_DEVICE();
  if (cuda::device_count() < 2) GTEST_SKIP() << "one CUDA device: multi-GPU NCCL test SKIPPED";
  check_float_sums({0, 1}, 12345);
  check_float_sums({0, 0, 1, 1}, 777);
}

TEST(CommNccl, WrappingUint8SumAndIntMaxMin) {
  LOCKSTEP_NEED_DEVICE();
  const std::vector<int> devices{0, 0, 0};
  NcclGroup group(MPI_COMM_NULL, devices);
  expect_no_errors(run_replicas(group, devices, [&](Communicator& c, int i, cudaStream_t s) {
    cuda::DeviceBuffer<uint8_t> bytes(3);
    const std::vector<uint8_t> in{200, uint8_t(i), 255};
    bytes.upload(in.data(), 3);
    c.allreduce(bytes.data(), 3, ReduceOp::kSum);
    std::vector<uint8_t> out(3);
    LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(s));
    bytes.download(out.data(), 3);
    EXPECT_EQ(out, (std::vector<uint8_t>{88, 3, 253}));  // 600, 0+1+2, 765 mod 256
    cuda::DeviceBuffer<int32_t> ints(2);
    const std::vector<int32_t> vals{10 * i - 7, -3 * i};
    ints.upload(vals.data(), 2);
    c.allreduce(ints.data(), 1, ReduceOp::kMax);
    c.allreduce(ints.data() + 1, 1, ReduceOp::kMin);
    std::vector<int32_t> got(2);
    LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(s));
    ints.download(got.data(), 2);
    EXPECT_EQ(got, (std::vector<int32_t>{13, -6}));
  }));
}

TEST(CommNccl, ZeroLengthReturnsAtOnce) {
  LOCKSTEP_NEED_DEVICE();
  const std::vector<int> devices{0, 0};
  NcclGroup group(MPI_COMM_NULL, devices);
  expect_no_errors(run_replicas(group, devices, [&](Communicator& c, int, cudaStream_t) {
    c.allreduce(static_cast<float*>(nullptr), 0);
    c.broadcast(static_cast<float*>(nullptr), 0, 1);
    c.allgather(static_cast<const float*>(nullptr), static_cast<float*>(nullptr), 0);
    c.barrier();
  }));
}

TEST(CommNccl, BroadcastFromEveryRoot) {
  LOCKSTEP_NEED_DEVICE();
  const std::vector<int> devices{0, 0, 0};
  NcclGroup group(MPI_COMM_NULL, devices);
  expect_no_errors(run_replicas(group, devices, [&](Communicator& c, int, cudaStream_t s) {
    const size_t n = 513;
    for (int root = 0; root < c.size(); ++root) {
      std::vector<float> host(n);
      for (size_t i = 0; i < n; ++i) host[i] = pattern(c.rank(), i);
      cuda::DeviceBuffer<float> dev(n);
      dev.upload(host.data(), n);
      c.broadcast(dev.data(), n, root);
      LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(s));
      dev.download(host.data(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(host[i], pattern(root, i)) << "root " << root;
    }
  }));
}

void check_allgather(const std::vector<int>& devices) {
  NcclGroup group(MPI_COMM_NULL, devices);
  expect_no_errors(run_replicas(group, devices, [&](Communicator& c, int, cudaStream_t s) {
    const size_t n = 37;
    std::vector<float> mine(n);
    for (size_t i = 0; i < n; ++i) mine[i] = pattern(c.rank(), i);
    cuda::DeviceBuffer<float> send(n), recv(n * size_t(c.size()));
    send.upload(mine.data(), n);
    c.allgather(send.data(), recv.data(), n);
    std::vector<float> all(n * size_t(c.size()));
    LOCKSTEP_CUDA_CHECK(cudaStreamSynchronize(s));
    recv.download(all.data(), all.size());
    for (int r = 0; r < c.size(); ++r) {
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(all[size_t(r) * n + i], pattern(r, i));
    }
  }));
}

TEST(CommNccl, AllgatherOrdersByRank) {
  LOCKSTEP_NEED_DEVICE();
  check_allgather({0});
  check_allgather({0, 0, 0});
}

TEST(CommNccl, HostBufferAndBadRootAreClearErrors) {
  LOCKSTEP_NEED_DEVICE();
  NcclGroup group(MPI_COMM_NULL, {0});
  std::vector<float> host(8, 1.0f);
  try {
    group.member(0).allreduce(host.data(), host.size());
    FAIL() << "a host buffer was accepted";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("needs device memory of device 0"), std::string::npos)
        << e.what();
  }
  cuda::DeviceBuffer<float> dev(8);
  EXPECT_THROW(group.member(0).broadcast(dev.data(), 8, 1), CommError);
  EXPECT_THROW(NcclGroup(MPI_COMM_NULL, {cuda::device_count()}), CommError);
}

TEST(CommNccl, MismatchedCallsFailBothReplicas) {
  LOCKSTEP_NEED_DEVICE();
  const std::vector<int> devices{0, 0};
  NcclGroup group(MPI_COMM_NULL, devices);
  const auto errors = run_replicas(group, devices, [&](Communicator& c, int i, cudaStream_t) {
    cuda::DeviceBuffer<float> dev(16);
    c.allreduce(dev.data(), i == 0 ? 16 : 8);
  });
  EXPECT_NE(errors[0].find("called different collectives"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1], "");
}

TEST(CommNccl, AbsentReplicaTimesOutAndFailStops) {
  LOCKSTEP_NEED_DEVICE();
  const std::vector<int> devices{0, 0};
  NcclGroup group(MPI_COMM_NULL, devices, CommOptions{std::chrono::milliseconds(300)});
  const auto errors = run_replicas(group, devices, [&](Communicator& c, int i, cudaStream_t) {
    if (i == 1) return;  // never arrives
    cuda::DeviceBuffer<float> dev(4);
    c.allreduce(dev.data(), 4);
  });
  EXPECT_NE(errors[0].find("missing replicas 1"), std::string::npos) << errors[0];
  cuda::DeviceBuffer<float> dev(4);
  try {
    group.member(1).allreduce(dev.data(), 4);
    FAIL() << "a failed group accepted a collective";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("has failed"), std::string::npos) << e.what();
  }
}

TEST(CommNccl, FailEndsTheGroup) {
  LOCKSTEP_NEED_DEVICE();
  NcclGroup group(MPI_COMM_NULL, {0});
  group.fail("replica 0 crashed");
  cuda::DeviceBuffer<float> dev(4);
  try {
    group.member(0).barrier();
    FAIL() << "barrier after fail() returned";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("replica 0 crashed"), std::string::npos) << e.what();
  }
}

#else  // no CUDA in this build

TEST(CommNccl, SkippedWithoutCuda) { LOCKSTEP_NEED_DEVICE(); }

#endif

}  // namespace
}  // namespace lockstep
