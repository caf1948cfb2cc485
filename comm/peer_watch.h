// Who is missing from an MPI collective. Each rank knows only that its own
// collective has not completed; to name the rank(s) holding it up, ranks whose
// wait has become slow post their position (collective sequence number and
// call) to every peer with small nonblocking messages on a duplicated
// communicator, and answer the reports of peers waiting at or beyond their own
// position. At a deadline, the peers that never reported this position are the
// ones that did not arrive. Fast collectives send nothing: the cost is one
// MPI_Test of a standing receive per poll of a wait that already yields.
// Internal to comm/ (the MPI backend owns one per communicator).
#pragma once

#include <mpi.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "comm/local_fabric.h"

namespace lockstep {

class PeerWatch {
 public:
  // Collective over `comm` (duplicates it).
  explicit PeerWatch(MPI_Comm comm);
  ~PeerWatch();
  PeerWatch(const PeerWatch&) = delete;
  PeerWatch& operator=(const PeerWatch&) = delete;

  // The side communicator (the verify exchange runs on it too).
  MPI_Comm side() const { return side_; }
  // This rank starts collective number `seq` (the same numbering on every rank).
  void begin(uint64_t seq, const CallSignature& sig);
  // Records peers' reports and answers those at or beyond our position; with
  // `announce`, also posts our own position to every peer (once per collective).
  void poll(bool announce);
  // At a deadline: posts our position, gathers replies for up to `grace` (less
  // if every peer answers) and returns "rank(s) 2 did not arrive (...)", or a
  // description of peers that called a different collective at this position.
  std::string missing_report(std::chrono::milliseconds grace);
  // A collective on side() was abandoned: never free the communicator.
  void keep_open() { keep_open_ = true; }

 private:
  using Message = std::array<int64_t, 6>;  // seq, kind, dtype, op, root, count
  struct Outgoing {
    Message msg;
    std::vector<MPI_Request> requests;
  };
  void announce();
  void post_receive();
  bool all_reported() const;
  void reap_sends();

  MPI_Comm side_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  uint64_t seq_ = 0;
  CallSignature sig_;
  bool announced_ = false;
  bool keep_open_ = false;
  Message inbox_{};
  MPI_Request receive_ = MPI_REQUEST_NULL;
  std::deque<std::unique_ptr<Outgoing>> outgoing_;
  std::vector<int64_t> last_seq_;  // per peer: latest reported position, -1 = none
  std::vector<CallSignature> last_sig_;
};

// A message's call, as sent by PeerWatch (for the verify exchange too).
CallSignature signature_from(const int64_t* fields);
void signature_to(const CallSignature& sig, int64_t* fields);

}  // namespace lockstep
