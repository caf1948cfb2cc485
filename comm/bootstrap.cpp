// Start-up and shutdown of MPI. Launcher detection reads the variables each
// process manager exports; the local rank/size come from MPI itself
// (MPI_Comm_split_type SHARED), which is right even where a launcher sets none,
// unless a test asks for K-rank nodes (LOCKSTEP_TEST_RANKS_PER_NODE).
#include "comm/bootstrap.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "comm/mpi_check.h"
#include "comm/replica_group.h"

namespace lockstep {
namespace {

std::atomic<bool> g_bootstrap_alive{false};

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0';
}

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
  }
  return "unknown thread level";
}

}  // namespace

int test_ranks_per_node(int world_size) {
  const char* v = std::getenv("LOCKSTEP_TEST_RANKS_PER_NODE");
  if (v == nullptr || v[0] == '\0') return 0;
  const std::string text(v);
  const bool digits = text.find_first_not_of("0123456789") == std::string::npos && text.size() < 9;
  const int k = digits ? std::stoi(text) : 0;
  if (k < 1 || world_size % k != 0) {
    throw CommError("bootstrap (" + world_rank_label() + ", host " + host_name() +
                    "): LOCKSTEP_TEST_RANKS_PER_NODE=" + text + " is not " +
                    (k < 1 ? std::string("a positive integer")
                           : "a divisor of the " + std::to_string(world_size) + " ranks") +
                    " (tests only: it makes each K consecutive ranks one node; unset it or pick "
                    "a K that divides the rank count)");
  }
  return k;
}

MPI_Comm split_nodes(MPI_Comm comm) {
  int world_rank = 0, world_size = 1, rank = 0;
  LOCKSTEP_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  LOCKSTEP_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
  LOCKSTEP_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  MPI_Comm node = MPI_COMM_NULL;
  if (const int k = test_ranks_per_node(world_size); k > 0) {
    LOCKSTEP_MPI_CHECK(MPI_Comm_split(comm, world_rank / k, rank, &node));
  } else {
    LOCKSTEP_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
  }
  LOCKSTEP_MPI_CHECK(MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN));
  return node;
}

std::string detect_launcher() {
  if (env_set("OMPI_COMM_WORLD_SIZE")) return "openmpi";
  if (env_set("PMIX_RANK")) return "pmix";
  if (env_set("PMI_RANK") || env_set("PMI_SIZE")) return "pmi";
  // SLURM_PROCID alone is also set inside a batch script; a step started by srun
  // has SLURM_STEP_ID as well.
  if (env_set("SLURM_PROCID") && env_set("SLURM_STEP_ID")) return "slurm";
  return "";
}

Bootstrap::Bootstrap(int* argc, char*** argv, BootstrapOptions options) {
  if (g_bootstrap_alive.exchange(true)) {
    throw CommError("bootstrap: a Bootstrap already exists in this process (MPI starts once)");
  }
  info_.host = host_name();
  info_.launcher = detect_launcher();
  if (info_.launcher.empty()) info_.launcher = options.require_mpi ? "forced" : "none";
  try {
    if (info_.launcher != "none") {
      start_mpi(argc, argv);
      read_topology();
    }
  } catch (...) {
    // The destructor will not run: give back what start-up took.
    if (world_ != MPI_COMM_NULL) MPI_Comm_free(&world_);
    if (started_mpi_) MPI_Finalize();
    g_bootstrap_alive = false;
    throw;
  }
}

void Bootstrap::start_mpi(int* argc, char*** argv) {
  int initialized = 0;
  LOCKSTEP_MPI_CHECK(MPI_Initialized(&initialized));
  if (initialized) {
    int provided = MPI_THREAD_SINGLE;
    LOCKSTEP_MPI_CHECK(MPI_Query_thread(&provided));
    info_.thread_level = provided;
  } else {
    int provided = MPI_THREAD_SINGLE;
    const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) {
      throw CommError("bootstrap (host " + info_.host + ", launcher " + info_.launcher +
                      "): MPI_Init_thread failed with code " + std::to_string(rc) +
                      " (hint: check that the MPI this binary was built with matches the launcher)");
    }
    started_mpi_ = true;
    info_.thread_level = provided;
  }
  info_.mpi = true;
  if (info_.thread_level < MPI_THREAD_SERIALIZED) {
    throw CommError("bootstrap (host " + info_.host + "): requested MPI_THREAD_SERIALIZED, MPI provides " +
                    thread_level_name(info_.thread_level) +
                    " (hint: use an MPI build with thread support)");
  }
  LOCKSTEP_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
}

void Bootstrap::read_topology() {
  LOCKSTEP_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &world_));
  LOCKSTEP_MPI_CHECK(MPI_Comm_set_errhandler(world_, MPI_ERRORS_RETURN));
  LOCKSTEP_MPI_CHECK(MPI_Comm_rank(world_, &info_.rank));
  LOCKSTEP_MPI_CHECK(MPI_Comm_size(world_, &info_.size));
  MPI_Comm node = split_nodes(world_);  // the processes sharing this node's memory
  const int rank_rc = MPI_Comm_rank(node, &info_.local_rank);
  const int size_rc = MPI_Comm_size(node, &info_.local_size);
  MPI_Comm_free(&node);
  LOCKSTEP_MPI_CHECK(rank_rc);
  LOCKSTEP_MPI_CHECK(size_rc);
  int leads_a_node = info_.local_rank == 0 ? 1 : 0;
  LOCKSTEP_MPI_CHECK(MPI_Allreduce(&leads_a_node, &info_.nodes, 1, MPI_INT, MPI_SUM, world_));
}

Bootstrap::~Bootstrap() {
  if (mpi_active()) {
    if (world_ != MPI_COMM_NULL) MPI_Comm_free(&world_);
    if (started_mpi_) MPI_Finalize();
  }
  g_bootstrap_alive = false;
}

std::unique_ptr<Communicator> Bootstrap::make_world_communicator(CommOptions options) const {
  if (!info_.mpi) return make_single_communicator();
  return make_process_communicator(world_, options);
}

void abort_job(const std::string& message, int exit_code) {
  std::fprintf(stderr, "lockstep: fatal on %s (host %s): %s\n", world_rank_label().c_str(),
               host_name().c_str(), message.c_str());
  std::fflush(stderr);
  if (mpi_active()) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::exit(exit_code);
}

}  // namespace lockstep
