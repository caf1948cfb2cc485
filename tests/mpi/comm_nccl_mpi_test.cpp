// NcclGroup across processes under mpirun: rank 0's unique id reaches every rank
// over MPI, the rank layout matches the MPI world (one GPU per process, process p
// on its node's GPU p), and all-reduce, broadcast and all-gather give exact
// results. Without CUDA in the build, or with fewer GPUs on a node than processes
// on it, every rank reports SKIPPED, loudly (all ranks decide alike).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <string>
#include <vector>

#include "tests/mpi/mpi_test_env.h"

#if defined(LOCKSTEP_HAVE_CUDA)
#include "comm/nccl_communicator.h"
#include "kernels/cuda/device.h"
#endif

namespace lockstep {
namespace {

// True on every rank when some node lacks a GPU per process (decided together).
bool skip_without_gpus() {
  const WorldInfo& info = test_bootstrap().info();
  int enough = 0;
#if defined(LOCKSTEP_HAVE_CUDA)
  enough = cuda::device_count() >= info.local_size ? 1 : 0;
#endif
  int all = enough;
  MPI_Allreduce(&enough, &all, 1, MPI_INT, MPI_MIN, test_bootstrap().world_comm());
  if (all != 0) return false;
  if (info.rank == 0) {
    std::fprintf(stderr, "\n*** NCCL under mpirun SKIPPED: %s ***\n",
#if defined(LOCKSTEP_HAVE_CUDA)
                 "a node has fewer GPUs than processes"
#else
                 "built without CUDA"
#endif
    );
  }
  return true;
}

#define LOCKSTEP_NEED_GPU_PER_PROCESS()                                         \
  do {                                                                          \
    if (skip_without_gpus()) GTEST_SKIP() << "no GPU per process: SKIPPED";     \
  } while (0)

#if defined(LOCKSTEP_HAVE_CUDA)

float pattern(int rank, size_t i) { return float(int((i * 5 + size_t(rank) * 11) % 53) - 26); }

TEST(NcclMpi, UniqueIdAndRankLayoutFollowTheWorld) {
  LOCKSTEP_NEED_GPU_PER_PROCESS();
  const WorldInfo& info = test_bootstrap().info();
  const int device = info.local_rank;
  cuda::set_device(device);
  NcclGroup group(test_bootstrap().world_comm(), {device}, CommOptions::from_seconds(20, false));
  cuda::Stream stream;
  group.set_stream(0, stream.get());
  Communicator& c = group.member(0);
  EXPECT_EQ(c.rank(), info.rank);
  EXPECT_EQ(c.size(), info.size);
  EXPECT_EQ(c.name(), "nccl");

  // All-reduce: rank r adds (r + 1) * pattern, a small-integer sum exact in fp32.
  const size_t n = 1031;
  std::vector<float> host(n), want(n, 0.0f);
  for (size_t i = 0; i < n; ++i) host[i] = float(info.rank + 1) * pattern(0, i);
  for (int r = 0; r < info.size; ++r) {
    for (size_t i = 0; i < n; ++i) want[i] += float(r + 1) * pattern(0, i);
  }
  cuda::DeviceBuffer<float> buf(n);
  buf.upload(host.data(), n);
  c.allreduce(buf.data(), n, ReduceOp::kSum);
  buf.download(host.data(), n);  // waits for the device (DeviceBuffer contract)
  EXPECT_EQ(host, want);

  // Broadcast from every root.
  for (int root = 0; root < info.size; ++root) {
    for (size_t i = 0; i < n; ++i) host[i] = pattern(info.rank, i);
    buf.upload(host.data(), n);
    c.broadcast(buf.data(), n, root);
    buf.download(host.data(), n);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(host[i], pattern(root, i)) << "root " << root;
  }

  // All-gather: every rank's piece in rank order.
  const size_t m = 37;
  std::vector<float> mine(m), all(m * size_t(info.size));
  for (size_t i = 0; i < m; ++i) mine[i] = pattern(info.rank, i);
  cuda::DeviceBuffer<float> send(m), recv(all.size());
  send.upload(mine.data(), m);
  c.allgather(send.data(), recv.data(), m);
  recv.download(all.data(), all.size());
  for (int r = 0; r < info.size; ++r) {
    for (size_t i = 0; i < m; ++i) ASSERT_EQ(all[size_t(r) * m + i], pattern(r, i)) << "rank " << r;
  }
  c.barrier();
  stream.synchronize();
}

#else

TEST(NcclMpi, UniqueIdAndRankLayoutFollowTheWorld) { LOCKSTEP_NEED_GPU_PER_PROCESS(); }

#endif

}  // namespace
}  // namespace lockstep
