// Stuck and diverging peers under mpirun: a deadline names exactly the rank that
// did not arrive (the others report in time), and comm.verify turns ranks that
// call different collectives into one clear error on every rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <string>
#include <thread>

#include "comm/mpi_communicator.h"
#include "tests/mpi/mpi_test_env.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The last rank is late by far more than the others' deadline; every other rank
// must name it (and only it), the collective and its sequence number.
TEST(MpiPeers, DeadlineNamesTheLateRankOnly) {
  MPI_Comm world = test_bootstrap().world_comm();
  int rank = 0, size = 1;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  const int late = size - 1;
  CommOptions options;
  options.timeout = milliseconds(rank == late ? 30000 : 1200);
  auto comm = make_mpi_communicator(world, options);
  float x = 1.0f;
  comm->allreduce(&x, 1);  // collective #1 completes everywhere
  ASSERT_EQ(x, float(size));
  if (rank == late) {
    std::this_thread::sleep_for(milliseconds(3000));
    comm->barrier();  // matches the others' abandoned barrier
  } else {
    try {
      comm->barrier();
      ADD_FAILURE() << "barrier completed without rank " << late;
    } catch (const CommError& e) {
      const std::string msg = e.what();
      EXPECT_TRUE(contains(msg, "rank(s) " + std::to_string(late) + " did not arrive")) << msg;
      EXPECT_TRUE(contains(msg, "collective #2 barrier()")) << msg;
      EXPECT_TRUE(contains(msg, "last seen in collective #1 allreduce(count=1, float32, sum)") ||
                  contains(msg, "no reply")) << msg;
    }
  }
  MPI_Barrier(world);
}

// Rank 1 calls a barrier where the others all-reduce: with verify every rank
// throws the same message naming both calls; without it nothing would say so.
TEST(MpiPeers, VerifyNamesDivergingCalls) {
  MPI_Comm world = test_bootstrap().world_comm();
  CommOptions options;
  options.timeout = milliseconds(20000);
  options.verify = true;
  auto comm = make_mpi_communicator(world, options);
  int32_t v = 3;
  comm->allreduce(&v, 1);
  ASSERT_EQ(v, 3 * comm->size());
  try {
    if (comm->rank() == 1) {
      comm->barrier();
    } else {
      double d[2] = {1, 2};
      comm->allreduce(d, 2);
    }
    ADD_FAILURE() << "diverging calls were accepted";
  } catch (const CommError& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(contains(msg, "ranks issue different collectives (comm.verify)")) << msg;
    EXPECT_TRUE(contains(msg, "rank 0 called collective #2 allreduce(count=2, float64, sum)")) << msg;
    EXPECT_TRUE(contains(msg, "rank 1 called collective #2 barrier()")) << msg;
  }
  MPI_Barrier(world);
}

}  // namespace
}  // namespace lockstep
