// gtest main for the multi-rank tests (run under mpirun): start MPI through
// lockstep's Bootstrap, run the tests on every rank, and exit non-zero on every
// rank if any rank failed. If MPI cannot start, the binary FAILS; it never skips.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <memory>

#include "tests/mpi/mpi_test_env.h"

namespace lockstep {
namespace {

std::unique_ptr<Bootstrap> g_bootstrap;

// Ranks other than 0 print only their failures, tagged with the rank.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.message());
  }

 private:
  int rank_;
};

}  // namespace

const Bootstrap& test_bootstrap() { return *g_bootstrap; }

}  // namespace lockstep

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  try {
    lockstep::g_bootstrap =
        std::make_unique<lockstep::Bootstrap>(&argc, &argv, lockstep::BootstrapOptions{true});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpi test: cannot start MPI: %s\n", e.what());
    return 1;
  }
  const lockstep::WorldInfo& info = lockstep::g_bootstrap->info();
  if (info.rank != 0) {
    // Only rank 0 narrates; the others report their failures alone.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new lockstep::FailurePrinter(info.rank));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int any_failed = failed;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, lockstep::g_bootstrap->world_comm());
  if (info.rank == 0) std::printf("[ mpi ] %d ranks: %s\n", info.size, any_failed ? "FAILED" : "PASSED");
  lockstep::g_bootstrap.reset();
  return any_failed;
}
