// The rendezvous under the in-process backends (local, and the local half of
// hierarchical): members publish their buffers in cache-line-padded slots, meet at
// spin-then-yield barriers with a deadline, and check that they all called the
// same collective. Internal to comm/; call sites use LocalGroup.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/deadline.h"
#include "comm/options.h"

namespace lockstep {

enum class CollectiveKind : uint8_t { kAllreduce, kBroadcast, kAllgather, kBarrier };
const char* collective_name(CollectiveKind kind);

// What a member asked for; all members of one collective must agree on it.
struct CallSignature {
  CollectiveKind kind = CollectiveKind::kBarrier;
  DType dtype = DType::kFloat32;
  ReduceOp op = ReduceOp::kSum;
  int root = 0;
  size_t count = 0;
  bool operator==(const CallSignature&) const = default;
};
std::string describe_call(const CallSignature& sig);
// The hints that end the error of a mismatched collective and of a stuck one, the
// same for every backend between processes.
inline constexpr const char* kDivergedHint =
    " (hint: the ranks' control flow diverged: different step counts, data sizes "
    "or a rank-dependent branch around a collective)";
inline constexpr const char* kStuckHint =
    " (hint: a rank died, hangs, or called a different collective; the job cannot "
    "continue and should be aborted; comm.timeout_s sets the deadline)";

// Member i's share [begin, end) (in elements) of a buffer split across `parts`
// members. Boundaries fall on 64-byte multiples so two members never write the
// same cache line (when buffers are 64-byte aligned), and tiny buffers go to few
// members because splitting them costs more than it saves.
struct ElementRange {
  size_t begin = 0;
  size_t end = 0;
};
ElementRange chunk_of(size_t count, size_t elem_bytes, int parts, int index);

class LocalFabric {
 public:
  // `label` prefixes every error ("local", "hierarchical process 2"...).
  LocalFabric(int size, CommOptions options, std::string label);
  ~LocalFabric();
  LocalFabric(const LocalFabric&) = delete;
  LocalFabric& operator=(const LocalFabric&) = delete;

  int size() const { return size_; }

  // Buffers published for one collective, as seen by one member.
  struct Peers {
    const LocalFabric* fabric = nullptr;
    int parity = 0;
    uint64_t call = 0;  // the collective's sequence number, the same on every member
    void* buf(int member) const;
    const void* send(int member) const;
  };

  // First phase of every collective: publish this member's buffers and call,
  // wait until all members have, and check that they agree. Throws CommError on
  // timeout (naming the absent members), on disagreement, or if the group failed.
  Peers arrive(int member, const CallSignature& sig, const void* send, void* buf);
  // A plain barrier between later phases of the same collective. The deadline
  // is the one arrive() set for this collective; `behind_leader` doubles it
  // (plus a second) for waits on the hierarchical leader's inter-process phase,
  // so that the leader's own deadline, which can name the missing rank, fires
  // first and fails the group with that message.
  void sync(int member, CollectiveKind kind, const char* phase, bool behind_leader = false);
  // Work sharing for the slices of one collective: calls fn(begin, end) for
  // blocks of [0, count) until none is left. A member takes the blocks of its own
  // slice (chunk_of) first, for cache locality, then helps with the others'
  // slices (those of two blocks or more), so a member that is descheduled (a
  // shared core) does not hold the group back. Each block is done exactly once, by whoever takes it; results do
  // not depend on who, since every element's reduction order is fixed.
  template <typename Fn>
  void share_blocks(int member, const Peers& peers, size_t count, size_t elem_bytes, Fn&& fn);
  // Marks the group failed: every member waiting now or later throws with `reason`.
  void fail(const std::string& reason);
  // Scratch pointer arrays sized size(), owned by `member` (no allocation per call).
  std::vector<const void*>& src_scratch(int member);
  std::vector<void*>& dst_scratch(int member);

 private:
  struct Slot;
  struct Private;

  void wait_for_all(int member, uint64_t target, CollectiveKind kind, const char* phase,
                    std::chrono::milliseconds limit);
  [[noreturn]] void throw_timeout(int member, uint64_t target, CollectiveKind kind,
                                  const char* phase, std::chrono::milliseconds limit);
  [[noreturn]] void throw_failed() const;
  void check_agreement(int parity);
  // Next unclaimed block of `owner`'s slice in collective `call`, or -1.
  int64_t take_block(int owner, const Peers& peers, size_t blocks);
  struct WorkCounter;

  int size_;
  CommOptions options_;
  std::string label_;
  std::unique_ptr<Slot[]> slots_;
  std::unique_ptr<Private[]> private_;
  std::unique_ptr<WorkCounter[]> work_;  // [member * 2 + parity]
  alignas(64) std::atomic<bool> failed_{false};
  mutable std::mutex reason_mutex_;
  std::string reason_;
};

// Blocks are 64 KiB: few enough claims to cost nothing, small enough to balance.
inline constexpr size_t kShareBlockBytes = size_t{64} << 10;

template <typename Fn>
void LocalFabric::share_blocks(int member, const Peers& peers, size_t count, size_t elem_bytes,
                               Fn&& fn) {
  const size_t block = kShareBlockBytes / elem_bytes;
  for (int k = 0; k < size_; ++k) {
    const int owner = (member + k) % size_;
    const ElementRange slice = chunk_of(count, elem_bytes, size_, owner);
    const size_t blocks = (slice.end - slice.begin + block - 1) / block;
    // A one-block slice is its owner's alone: claiming it would cost more (a
    // shared counter, a remote buffer) than it could save.
    if (blocks < 2) {
      if (k == 0 && blocks == 1) fn(slice.begin, slice.end);
      continue;
    }
    for (int64_t b; (b = take_block(owner, peers, blocks)) >= 0;) {
      const size_t begin = slice.begin + static_cast<size_t>(b) * block;
      fn(begin, std::min(slice.end, begin + block));
    }
  }
}

}  // namespace lockstep
