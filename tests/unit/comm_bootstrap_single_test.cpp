// Bootstrap without a launcher: launcher detection from each process manager's
// variables, a single-rank world with no MPI at all, and abort_job's message and
// exit code when there is no MPI job to abort.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "comm/bootstrap.h"

namespace lockstep {
namespace {

const char* const kLauncherVars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                                     "SLURM_PROCID", "SLURM_STEP_ID"};

class CleanLauncherEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : kLauncherVars) unsetenv(v);
  }
  void TearDown() override { SetUp(); }
};

TEST_F(CleanLauncherEnv, DetectsEachLauncher) {
  EXPECT_EQ(detect_launcher(), "");
  setenv("SLURM_PROCID", "0", 1);
  EXPECT_EQ(detect_launcher(), "") << "a batch script alone is not an srun step";
  setenv("SLURM_STEP_ID", "3", 1);
  EXPECT_EQ(detect_launcher(), "slurm");
  setenv("PMI_RANK", "1", 1);
  EXPECT_EQ(detect_launcher(), "pmi");
  setenv("PMIX_RANK", "1", 1);
  EXPECT_EQ(detect_launcher(), "pmix");
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  EXPECT_EQ(detect_launcher(), "openmpi");
}

TEST_F(CleanLauncherEnv, NoLauncherMeansASingleRankWorldWithoutMpi) {
  int argc = 0;
  char** argv = nullptr;
  Bootstrap boot(&argc, &argv);
  const WorldInfo& info = boot.info();
  EXPECT_FALSE(info.mpi);
  EXPECT_EQ(info.launcher, "none");
  EXPECT_EQ(info.rank, 0);
  EXPECT_EQ(info.size, 1);
  EXPECT_EQ(info.local_rank, 0);
  EXPECT_EQ(info.local_size, 1);
  EXPECT_FALSE(info.host.empty());
  EXPECT_EQ(boot.world_comm(), MPI_COMM_NULL);
  int initialized = 1;
  MPI_Initialized(&initialized);
  EXPECT_EQ(initialized, 0) << "MPI must not start without a launcher";
  auto comm = boot.make_world_communicator();
  EXPECT_EQ(comm->name(), "single");
  EXPECT_EQ(comm->size(), 1);
}

TEST(AbortJob, WithoutMpiPrintsAndExitsWithTheCode) {
  EXPECT_EXIT(abort_job("disk full while writing the checkpoint", 3), ::testing::ExitedWithCode(3),
              "lockstep: fatal on rank \\? \\(host .+\\): disk full while writing the checkpoint");
}

}  // namespace
}  // namespace lockstep
