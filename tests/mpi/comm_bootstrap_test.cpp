// Bootstrap under mpirun: MPI is up with the thread level lockstep asked for, and
// the rank/size and node-local rank/size agree with an independent count made from
// every rank's host name.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "comm/replica_group.h"
#include "comm/shm_communicator.h"
#include "tests/mpi/mpi_test_env.h"

namespace lockstep {
namespace {

TEST(Bootstrap, StartedMpiThroughTheLauncher) {
  const WorldInfo& info = test_bootstrap().info();
  EXPECT_TRUE(info.mpi);
  EXPECT_EQ(info.launcher, "openmpi");
  EXPECT_EQ(detect_launcher(), "openmpi");
  EXPECT_GE(info.thread_level, MPI_THREAD_SERIALIZED);
  int rank = -1;
  int size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(info.rank, rank);
  EXPECT_EQ(info.size, size);
  const char* launcher_size = std::getenv("OMPI_COMM_WORLD_SIZE");
  ASSERT_NE(launcher_size, nullptr) << "not started by mpirun";
  EXPECT_EQ(std::atoi(launcher_size), size);
}

TEST(Bootstrap, LocalRankAndSizeMatchHostNames) {
  const WorldInfo& info = test_bootstrap().info();
  constexpr int kNameLen = 256;
  std::vector<char> mine(kNameLen, 0);
  std::strncpy(mine.data(), info.host.c_str(), kNameLen - 1);
  std::vector<char> all(static_cast<size_t>(info.size) * kNameLen);
  MPI_Allgather(mine.data(), kNameLen, MPI_CHAR, all.data(), kNameLen, MPI_CHAR, MPI_COMM_WORLD);
  int same_host = 0;
  int before_me = 0;
  for (int r = 0; r < info.size; ++r) {
    if (std::strncmp(all.data() + static_cast<size_t>(r) * kNameLen, mine.data(), kNameLen) != 0) continue;
    ++same_host;
    if (r < info.rank) ++before_me;
  }
  EXPECT_EQ(info.local_size, same_host);
  EXPECT_EQ(info.local_rank, before_me);
  if (const char* v = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) {
    EXPECT_EQ(info.local_rank, std::atoi(v));
  }
}

TEST(Bootstrap, SecondBootstrapIsRefused) {
  int argc = 0;
  char** argv = nullptr;
  try {
    Bootstrap again(&argc, &argv);
    FAIL() << "a second Bootstrap was accepted";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
  }
}

// Every rank of these tests runs on this machine: the world all-reduces through
// shared memory, or through MPI messages when comm.shared_memory is off.
TEST(Bootstrap, WorldCommunicatorIsSharedMemoryOnOneNode) {
  ASSERT_TRUE(on_one_node(test_bootstrap().world_comm()));
  for (bool shared : {true, false}) {
    CommOptions options;
    options.shared_memory = shared;
    auto comm = test_bootstrap().make_world_communicator(options);
    EXPECT_EQ(comm->name(), shared ? "shm" : "mpi");
    EXPECT_EQ(comm->size(), test_bootstrap().info().size);
    EXPECT_EQ(comm->rank(), test_bootstrap().info().rank);
    int64_t one = 1;
    comm->allreduce(&one, 1);
    EXPECT_EQ(one, test_bootstrap().info().size);
  }
}

// LOCKSTEP_TEST_RANKS_PER_NODE=K (tests only): each K consecutive world ranks
// form a node, so with K=1 and 2 or 4 ranks the world is no longer on one node and
// the process communicator is MPI; a K that does not divide the ranks is refused.
TEST(Bootstrap, TestRanksPerNodeSplitsTheWorld) {
  const int size = test_bootstrap().info().size;
  const int rank = test_bootstrap().info().rank;
  for (int k : {1, size}) {
    ::setenv("LOCKSTEP_TEST_RANKS_PER_NODE", std::to_string(k).c_str(), 1);
    MPI_Comm node = split_nodes(test_bootstrap().world_comm());
    int node_rank = -1, node_size = 0;
    MPI_Comm_rank(node, &node_rank);
    MPI_Comm_size(node, &node_size);
    MPI_Comm_free(&node);
    EXPECT_EQ(node_size, k);
    EXPECT_EQ(node_rank, rank % k);
    EXPECT_EQ(on_one_node(test_bootstrap().world_comm()), k == size) << "K=" << k;
    EXPECT_EQ(make_process_communicator(test_bootstrap().world_comm())->name(), k == size ? "shm" : "mpi");
  }
  ::setenv("LOCKSTEP_TEST_RANKS_PER_NODE", std::to_string(size + 1).c_str(), 1);
  EXPECT_THROW(split_nodes(test_bootstrap().world_comm()), CommError);
  ::setenv("LOCKSTEP_TEST_RANKS_PER_NODE", "2x", 1);
  EXPECT_THROW(test_ranks_per_node(size), CommError);
  ::unsetenv("LOCKSTEP_TEST_RANKS_PER_NODE");
  EXPECT_EQ(test_ranks_per_node(size), 0);
}

}  // namespace
}  // namespace lockstep
