// Position reports between MPI ranks. A report is six int64s; it is sent with
// MPI_Isend (eager for so few bytes, so it completes without the peer) and
// received through one standing MPI_Irecv(ANY_SOURCE) that is re-posted after
// each message. Stale reports (from collectives that later completed) are just
// older positions and never confuse the picture: only the latest one counts.
#include "comm/peer_watch.h"

#include <thread>

#include "comm/mpi_check.h"

namespace lockstep {
constexpr int kReportTag = 7211;

CallSignature signature_from(const int64_t* f) {
  CallSignature s;
  s.kind = static_cast<CollectiveKind>(f[0]);
  s.dtype = static_cast<DType>(f[1]);
  s.op = static_cast<ReduceOp>(f[2]);
  s.root = static_cast<int>(f[3]);
  s.count = static_cast<size_t>(f[4]);
  return s;
}

void signature_to(const CallSignature& sig, int64_t* f) {
  f[0] = static_cast<int64_t>(sig.kind);
  f[1] = static_cast<int64_t>(sig.dtype);
  f[2] = static_cast<int64_t>(sig.op);
  f[3] = sig.root;
  f[4] = static_cast<int64_t>(sig.count);
}

PeerWatch::PeerWatch(MPI_Comm comm) {
  LOCKSTEP_MPI_CHECK(MPI_Comm_dup(comm, &side_));
  LOCKSTEP_MPI_CHECK(MPI_Comm_set_errhandler(side_, MPI_ERRORS_RETURN));
  LOCKSTEP_MPI_CHECK(MPI_Comm_rank(side_, &rank_));
  LOCKSTEP_MPI_CHECK(MPI_Comm_size(side_, &size_));
  last_seq_.assign(static_cast<size_t>(size_), -1);
  last_sig_.resize(static_cast<size_t>(size_));
  if (size_ > 1) post_receive();
}

PeerWatch::~PeerWatch() {
  if (!mpi_active() || side_ == MPI_COMM_NULL) return;
  if (receive_ != MPI_REQUEST_NULL) {
    MPI_Cancel(&receive_);
    MPI_Wait(&receive_, MPI_STATUS_IGNORE);
  }
  reap_sends();
  // A report to a peer that stopped may still be in flight; freeing the
  // communicator under it could crash MPI's progress engine.
  if (outgoing_.empty() && !keep_open_) MPI_Comm_free(&side_);
}

void PeerWatch::post_receive() {
  LOCKSTEP_MPI_CHECK(MPI_Irecv(inbox_.data(), static_cast<int>(inbox_.size()), MPI_INT64_T,
                               MPI_ANY_SOURCE, kReportTag, side_, &receive_));
}

void PeerWatch::begin(uint64_t seq, const CallSignature& sig) {
  seq_ = seq;
  sig_ = sig;
  announced_ = false;
}

void PeerWatch::reap_sends() {
  while (!outgoing_.empty()) {
    auto& reqs = outgoing_.front()->requests;
    int done = 0;
    if (MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE) !=
            MPI_SUCCESS ||
        !done) {
      return;
    }
    outgoing_.pop_front();
  }
}

void PeerWatch::announce() {
  if (announced_ || size_ == 1) return;
  announced_ = true;
  reap_sends();
  auto out = std::make_unique<Outgoing>();
  out->msg[0] = static_cast<int64_t>(seq_);
  signature_to(sig_, out->msg.data() + 1);
  out->requests.reserve(static_cast<size_t>(size_ - 1));
  for (int j = 0; j < size_; ++j) {
    if (j == rank_) continue;
    MPI_Request r;
    LOCKSTEP_MPI_CHECK(MPI_Isend(out->msg.data(), static_cast<int>(out->msg.size()), MPI_INT64_T, j,
                                 kReportTag, side_, &r));
    out->requests.push_back(r);
  }
  outgoing_.push_back(std::move(out));
}

void PeerWatch::poll(bool announce_now) {
  if (size_ == 1) return;
  for (;;) {
    int arrived = 0;
    MPI_Status status;
    LOCKSTEP_MPI_CHECK(MPI_Test(&receive_, &arrived, &status));
    if (!arrived) break;
    const int from = status.MPI_SOURCE;
    if (from >= 0 && from < size_ && inbox_[0] >= last_seq_[static_cast<size_t>(from)]) {
      last_seq_[static_cast<size_t>(from)] = inbox_[0];
      last_sig_[static_cast<size_t>(from)] = signature_from(inbox_.data() + 1);
    }
    // A peer waits at or beyond our position: tell it where we are.
    const bool answer = inbox_[0] >= static_cast<int64_t>(seq_);
    post_receive();
    if (answer) announce();
  }
  if (announce_now) announce();
}

bool PeerWatch::all_reported() const {
  for (int j = 0; j < size_; ++j) {
    if (j != rank_ && last_seq_[static_cast<size_t>(j)] < static_cast<int64_t>(seq_)) return false;
  }
  return true;
}

std::string PeerWatch::missing_report(std::chrono::milliseconds grace) {
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + grace;
  poll(true);
  while (!all_reported() && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    poll(false);
  }
  const int64_t here = static_cast<int64_t>(seq_);
  std::string missing, detail, different;
  for (int j = 0; j < size_; ++j) {
    if (j == rank_) continue;
    const int64_t at = last_seq_[static_cast<size_t>(j)];
    const CallSignature& sig = last_sig_[static_cast<size_t>(j)];
    if (at == here && sig != sig_) {
      different += (different.empty() ? "" : "; ") + std::string("rank ") + std::to_string(j) +
                   " called " + describe_call(sig) + " as collective #" + std::to_string(at);
    } else if (at < here) {
      missing += (missing.empty() ? "" : ", ") + std::to_string(j);
      detail += (detail.empty() ? "" : "; ") + std::string("rank ") + std::to_string(j) + ": " +
                (at < 0 ? std::string("no reply")
                        : "last seen in collective #" + std::to_string(at) + " " + describe_call(sig));
    }
  }
  std::string out;
  if (!missing.empty()) {
    out = "rank(s) " + missing + " did not arrive (" + detail +
          "; no reply means stopped, deadlocked, dead or busy outside lockstep's collectives)";
  }
  if (!different.empty()) {
    out += (out.empty() ? "" : "; ") + std::string("ranks diverged: ") + different;
  }
  if (out.empty()) {
    out = "every peer reported reaching this collective (one may have failed since, or the "
          "transport stalled)";
  }
  return out;
}

}  // namespace lockstep
