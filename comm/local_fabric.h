// The rendezvous under the in-process backends (local, and the local half of
// hierarchical): members publish their buffers in cache-line-padded slots, meet at
// spin-then-yield barriers with a deadline, and check that they all called the
// same collective. Internal to comm/; call sites use LocalGroup.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/communicator.h"
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
};
std::string describe_call(const CallSignature& sig);

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
  const std::string& label() const { return label_; }

  // Buffers published for one collective, as seen by one member.
  struct Peers {
    const LocalFabric* fabric = nullptr;
    int parity = 0;
    void* buf(int member) const;
    const void* send(int member) const;
  };

  // First phase of every collective: publish this member's buffers and call,
  // wait until all members have, and check that they agree. Throws CommError on
  // timeout (naming the absent members), on disagreement, or if the group failed.
  Peers arrive(int member, const CallSignature& sig, const void* send, void* buf);
  // A plain barrier between later phases of the same collective.
  void sync(int member, CollectiveKind kind, const char* phase);
  // Marks the group failed: every member waiting now or later throws with `reason`.
  void fail(const std::string& reason);
  // Scratch pointer arrays sized size(), owned by `member` (no allocation per call).
  std::vector<const void*>& src_scratch(int member);
  std::vector<void*>& dst_scratch(int member);

 private:
  struct Slot;
  struct Private;

  void wait_for_all(int member, uint64_t target, CollectiveKind kind, const char* phase);
  [[noreturn]] void throw_timeout(int member, uint64_t target, CollectiveKind kind,
                                  const char* phase);
  [[noreturn]] void throw_failed() const;
  void check_agreement(int parity);

  int size_;
  CommOptions options_;
  std::string label_;
  std::unique_ptr<Slot[]> slots_;
  std::unique_ptr<Private[]> private_;
  alignas(64) std::atomic<bool> failed_{false};
  mutable std::mutex reason_mutex_;
  std::string reason_;
};

}  // namespace lockstep
