// MPI collectives. All-reduce: an all-to-all hands rank r slice r of every rank's
// buffer, rank r reduces the slices in rank order, and an allgather returns the
// reduced slices to everyone (bandwidth like a reduce-scatter + allgather). Integer
// sums go this way too: OpenMPI 4.1's vectorised uint8 sum saturates instead of
// wrapping, so the library's own reduction is not used for any dtype.
// Collectives are posted nonblocking and polled, which is what lets a deadline
// fire instead of a hang, and yields the core while waiting (ranks may share cores).
// A slow wait reports this rank's position to its peers (PeerWatch), so that a
// deadline names the rank(s) that did not arrive.
#include "comm/mpi_communicator.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "comm/deadline.h"
#include "comm/fault_injection.h"
#include "comm/local_fabric.h"
#include "comm/mpi_check.h"
#include "comm/peer_watch.h"
#include "comm/reduce.h"

namespace lockstep {
namespace {

// Work is split into pieces so every MPI count and displacement fits an int and
// the staging buffer stays bounded.
constexpr size_t kPieceBytes = size_t{256} << 20;
constexpr int kPollsBeforeYield = 64;
// A wait this long posts our position to the peers (or a quarter of the
// deadline, if that is shorter), so that by the deadline every waiting rank has
// heard from every other waiting rank.
constexpr std::chrono::milliseconds kAnnounceAfter{1000};
// At a deadline, how long to gather the last replies (at most).
constexpr std::chrono::milliseconds kReplyGrace{500};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, CommOptions options);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }

  void do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) override;
  void do_broadcast(void* buf, size_t count, DType dtype, int root) override;
  void do_allgather(const void* send, void* recv, size_t count, DType dtype) override;
  void barrier() override;

 private:
  // Every collective that communicates starts here: sequence number, deadline,
  // position for the watch, and (comm.verify) the cross-rank agreement check.
  void begin(const CallSignature& sig);
  void verify_call(const CallSignature& sig);
  void wait(MPI_Request* request, CollectiveKind kind);
  [[noreturn]] void throw_stuck(CollectiveKind kind, const std::string& why,
                                std::chrono::milliseconds grace);
  void allreduce_fixed_order(std::byte* buf, size_t count, DType dtype, ReduceOp op);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  CommOptions options_;
  DeadlineClock clock_;
  WaitBudget budget_;
  uint64_t seq_ = 0;  // collectives begun; the same count on every rank
  CallSignature sig_;
  std::unique_ptr<PeerWatch> watch_;
  std::vector<int64_t> verify_rows_;
  std::string host_;
  std::vector<std::byte> staging_;
  std::vector<int> counts_, displs_, peer_counts_, peer_displs_;
  std::vector<const void*> srcs_;
  // Requests given up on at a deadline; MPI may still touch the communicator for them.
  std::vector<MPI_Request> abandoned_;
};

MpiCommunicator::MpiCommunicator(MPI_Comm comm, CommOptions options)
    : options_(options), clock_(options), host_(host_name()) {
  watch_for_freezes();  // a rank that was stopped must not blame the peers that waited
  LOCKSTEP_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
  LOCKSTEP_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  LOCKSTEP_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  LOCKSTEP_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  counts_.resize(size_);
  displs_.resize(size_);
  peer_counts_.resize(size_);
  peer_displs_.resize(size_);
  srcs_.resize(size_);
  watch_ = std::make_unique<PeerWatch>(comm_);
}

MpiCommunicator::~MpiCommunicator() {
  if (!mpi_active() || comm_ == MPI_COMM_NULL) return;
  for (MPI_Request& r : abandoned_) {
    int done = 0;
    if (r != MPI_REQUEST_NULL && (MPI_Test(&r, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done)) {
      return;  // still in flight: freeing the communicator under it could crash MPI's progress
    }
  }
  MPI_Comm_free(&comm_);
}

void MpiCommunicator::begin(const CallSignature& sig) {
  ++seq_;
  inject_fault_at_collective(seq_);
  sig_ = sig;
  budget_ = clock_.start();
  watch_->begin(seq_, sig);
  if (options_.verify) verify_call(sig);
}

// Every rank's (sequence number, call) side by side; all ranks see the same
// table, so all throw the same message.
void MpiCommunicator::verify_call(const CallSignature& sig) {
  int64_t mine[6] = {static_cast<int64_t>(seq_)};
  signature_to(sig, mine + 1);
  verify_rows_.resize(static_cast<size_t>(size_) * 6);
  MPI_Request request;
  LOCKSTEP_MPI_CHECK(MPI_Iallgather(mine, 6, MPI_INT64_T, verify_rows_.data(), 6, MPI_INT64_T,
                                    watch_->side(), &request));
  wait(&request, sig.kind);
  std::string diff;
  for (int j = 1; j < size_; ++j) {
    const int64_t* row = verify_rows_.data() + static_cast<size_t>(j) * 6;
    if (std::equal(row, row + 6, verify_rows_.data())) continue;
    diff += "; rank " + std::to_string(j) + " called collective #" + std::to_string(row[0]) + " " +
            describe_call(signature_from(row + 1));
  }
  if (diff.empty()) return;
  throw CommError("mpi (rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
                  ", host " + host_ + "): ranks issue different collectives (comm.verify): rank 0 "
                  "called collective #" + std::to_string(verify_rows_[0]) + " " +
                  describe_call(signature_from(verify_rows_.data() + 1)) + diff + kDivergedHint);
}

void MpiCommunicator::throw_stuck(CollectiveKind kind, const std::string& why,
                                  std::chrono::milliseconds grace) {
  watch_->keep_open();  // the abandoned request may be the verify exchange on its communicator
  const std::string head = "mpi " + std::string(collective_name(kind)) + " (rank " + std::to_string(rank_) +
                           " of " + std::to_string(size_) + ", host " + host_ + ", collective #" +
                           std::to_string(seq_) + " " + describe_call(sig_) + "): ";
  const auto since = std::chrono::steady_clock::now() - budget_.limit - std::chrono::seconds(1);
  if (const std::string frozen = freeze_report(since); !frozen.empty()) throw CommError(head + frozen);
  const std::string who = watch_->missing_report(grace);
  throw CommError(head + why + ": " + who + kStuckHint);
}

void MpiCommunicator::wait(MPI_Request* request, CollectiveKind kind) {
  if (budget_.forever() && !options_.interrupted) {
    LOCKSTEP_MPI_CHECK(MPI_Wait(request, MPI_STATUS_IGNORE));
    return;
  }
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto announce_after =
      budget_.forever() ? kAnnounceAfter : std::min(kAnnounceAfter, budget_.limit / 4);
  Clock::time_point interrupted_at{};
  bool interrupted = false;
  for (int polls = 0;; ++polls) {
    int done = 0;
    LOCKSTEP_MPI_CHECK(MPI_Test(request, &done, MPI_STATUS_IGNORE));
    if (done) return;
    if (polls < kPollsBeforeYield) continue;
    const auto now = Clock::now();
    watch_->poll(now - start >= announce_after);
    if (!budget_.forever() && now - start >= budget_.limit) {
      abandoned_.push_back(*request);
      throw_stuck(kind, "not complete after " + budget_.describe(),
                  std::min(kReplyGrace, budget_.limit / 2));
    }
    if (options_.interrupted && budget_.phase.empty() && options_.interrupted()) {
      if (!interrupted) interrupted_at = now;
      interrupted = true;
      if (now - interrupted_at >= options_.interrupt_grace) {
        abandoned_.push_back(*request);
        throw_stuck(kind, "interrupted by a signal while waiting (the launcher may be ending the job)",
                    std::chrono::milliseconds(200));
      }
    }
    std::this_thread::yield();
  }
}

void MpiCommunicator::do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  if (size_ == 1) return;
  begin(CallSignature{CollectiveKind::kAllreduce, dtype, op, 0, count});
  const size_t elem = dtype_size(dtype);
  const size_t piece = kPieceBytes / elem;
  for (size_t done = 0; done < count; done += piece) {
    allreduce_fixed_order(static_cast<std::byte*>(buf) + done * elem, std::min(piece, count - done),
                          dtype, op);
  }
}

void MpiCommunicator::allreduce_fixed_order(std::byte* buf, size_t count, DType dtype,
                                            ReduceOp op) {
  const size_t elem = dtype_size(dtype);
  const ElementRange mine = chunk_of(count, elem, size_, rank_);
  const int my_len = static_cast<int>(mine.end - mine.begin);
  for (int j = 0; j < size_; ++j) {
    const ElementRange r = chunk_of(count, elem, size_, j);
    counts_[j] = static_cast<int>(r.end - r.begin);  // what I send to j / j's slice
    displs_[j] = static_cast<int>(r.begin);
    peer_counts_[j] = my_len;  // what j sends me
    peer_displs_[j] = j * my_len;
  }
  // Our own slice stays in place: nothing to send to ourselves.
  const int own_count = counts_[rank_];
  counts_[rank_] = 0;
  peer_counts_[rank_] = 0;
  staging_.resize(static_cast<size_t>(size_) * my_len * elem);
  const MPI_Datatype type = mpi_datatype(dtype);
  MPI_Request request;
  LOCKSTEP_MPI_CHECK(MPI_Ialltoallv(buf, counts_.data(), displs_.data(), type, staging_.data(),
                                    peer_counts_.data(), peer_displs_.data(), type, comm_,
                                    &request));
  wait(&request, CollectiveKind::kAllreduce);
  std::byte* slice = buf + mine.begin * elem;
  for (int j = 0; j < size_; ++j) {
    srcs_[j] = j == rank_ ? slice : staging_.data() + static_cast<size_t>(j) * my_len * elem;
  }
  void* dst = slice;
  reduce_fixed_order(srcs_.data(), size_, &dst, 1, my_len, dtype, op);
  counts_[rank_] = own_count;
  LOCKSTEP_MPI_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, type, buf, counts_.data(), displs_.data(),
                                     type, comm_, &request));
  wait(&request, CollectiveKind::kAllreduce);
}

void MpiCommunicator::do_broadcast(void* buf, size_t count, DType dtype, int root) {
  if (size_ == 1) return;
  begin(CallSignature{CollectiveKind::kBroadcast, dtype, ReduceOp::kSum, root, count});
  const size_t elem = dtype_size(dtype);
  const size_t piece = kPieceBytes / elem;
  for (size_t done = 0; done < count; done += piece) {
    MPI_Request request;
    LOCKSTEP_MPI_CHECK(MPI_Ibcast(static_cast<std::byte*>(buf) + done * elem,
                                  static_cast<int>(std::min(piece, count - done)),
                                  mpi_datatype(dtype), root, comm_, &request));
    wait(&request, CollectiveKind::kBroadcast);
  }
}

void MpiCommunicator::do_allgather(const void* send, void* recv, size_t count, DType dtype) {
  if (count > static_cast<size_t>(INT_MAX)) {
    throw CommError("mpi allgather (rank " + std::to_string(rank_) + "): count " +
                    std::to_string(count) + " per rank exceeds MPI's int limit; gather in parts");
  }
  const size_t bytes = count * dtype_size(dtype);
  std::byte* own = static_cast<std::byte*>(recv) + static_cast<size_t>(rank_) * bytes;
  if (own != send) std::memmove(own, send, bytes);
  if (size_ == 1) return;
  begin(CallSignature{CollectiveKind::kAllgather, dtype, ReduceOp::kSum, 0, count});
  MPI_Request request;
  const MPI_Datatype type = mpi_datatype(dtype);
  LOCKSTEP_MPI_CHECK(MPI_Iallgather(MPI_IN_PLACE, 0, type, recv, static_cast<int>(count), type,
                                    comm_, &request));
  wait(&request, CollectiveKind::kAllgather);
}

void MpiCommunicator::barrier() {
  if (size_ == 1) return;
  begin(CallSignature{});
  MPI_Request request;
  LOCKSTEP_MPI_CHECK(MPI_Ibarrier(comm_, &request));
  wait(&request, CollectiveKind::kBarrier);
}

}  // namespace

MPI_Datatype mpi_datatype(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return MPI_FLOAT;
    case DType::kFloat64: return MPI_DOUBLE;
    case DType::kInt32: return MPI_INT32_T;
    case DType::kInt64: return MPI_INT64_T;
    case DType::kUInt8: return MPI_UINT8_T;
  }
  throw CommError("mpi: unknown dtype " + std::to_string(static_cast<int>(dtype)));
}

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, CommOptions options) {
  return std::make_unique<MpiCommunicator>(comm, options);
}

}  // namespace lockstep
