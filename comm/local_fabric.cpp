// In-process rendezvous: one padded slot per member holds a monotonically growing
// arrival counter and the buffers of the member's current collective (double
// buffered by call parity, since a fast member can be at most one call ahead).
// Waiting spins briefly (the common case is a partner a few hundred ns away), then
// yields the core (there may be fewer free cores than members), then naps, and
// watches the deadline throughout.
#include "comm/local_fabric.h"

#include <chrono>

#include "comm/spin_wait.h"

namespace lockstep {
namespace {

constexpr size_t kLineBytes = 64;
// Below this many bytes per member a split is not worth a cache-line transfer.
constexpr size_t kMinChunkBytes = 4096;

}  // namespace

const char* collective_name(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::kAllreduce: return "allreduce";
    case CollectiveKind::kBroadcast: return "broadcast";
    case CollectiveKind::kAllgather: return "allgather";
    case CollectiveKind::kBarrier: return "barrier";
  }
  return "unknown-collective";
}

std::string describe_call(const CallSignature& sig) {
  std::string s = collective_name(sig.kind);
  if (sig.kind == CollectiveKind::kBarrier) return s + "()";
  s += "(count=" + std::to_string(sig.count) + ", " + dtype_name(sig.dtype);
  if (sig.kind == CollectiveKind::kAllreduce) s += std::string(", ") + reduce_op_name(sig.op);
  if (sig.kind == CollectiveKind::kBroadcast) s += ", root=" + std::to_string(sig.root);
  return s + ")";
}

ElementRange chunk_of(size_t count, size_t elem_bytes, int parts, int index) {
  const size_t granule = kLineBytes / elem_bytes;  // elements per cache line
  const size_t units = (count + granule - 1) / granule;
  const size_t min_units = kMinChunkBytes / kLineBytes;
  size_t per = (units + parts - 1) / parts;
  if (per < min_units) per = min_units;
  const size_t begin = std::min(count, static_cast<size_t>(index) * per * granule);
  const size_t end = std::min(count, (static_cast<size_t>(index) + 1) * per * granule);
  return {begin, end};
}

struct alignas(64) LocalFabric::Slot {
  std::atomic<uint64_t> arrived{0};
  struct Published {
    CallSignature sig;
    const void* send = nullptr;
    void* buf = nullptr;
  } published[2];
};

// State only its owner touches, kept off the shared slots.
struct alignas(64) LocalFabric::Private {
  DeadlineClock clock;  // this member's pace and phase budgets
  WaitBudget budget;    // of the collective in progress
  uint64_t epoch = 0;  // barriers passed (arrive and sync alike)
  uint64_t calls = 0;  // collectives started; parity selects the published pair
  std::vector<const void*> srcs;
  std::vector<void*> dsts;
};

// Claims on one member's slice: the high bits tag the collective (its sequence
// number), the low bits count blocks handed out. A stale tag means a fresh count.
struct alignas(64) LocalFabric::WorkCounter {
  std::atomic<uint64_t> value{0};
};
constexpr int kTagShift = 40;
constexpr uint64_t kCountMask = (uint64_t{1} << kTagShift) - 1;

int64_t LocalFabric::take_block(int owner, const Peers& peers, size_t blocks) {
  std::atomic<uint64_t>& counter = work_[owner * 2 + peers.parity].value;
  const uint64_t tag = peers.call & ((uint64_t{1} << (64 - kTagShift)) - 1);
  uint64_t seen = counter.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t next = (seen >> kTagShift) == tag ? (seen & kCountMask) : 0;
    if (next >= blocks) return -1;
    if (counter.compare_exchange_weak(seen, (tag << kTagShift) | (next + 1),
                                      std::memory_order_relaxed)) {
      return static_cast<int64_t>(next);
    }
  }
}

LocalFabric::LocalFabric(int size, CommOptions options, std::string label)
    : size_(size), options_(options), label_(std::move(label)) {
  if (size < 1) throw CommError(label_ + ": group size must be at least 1, got " + std::to_string(size));
  slots_ = std::make_unique<Slot[]>(size);
  private_ = std::make_unique<Private[]>(size);
  work_ = std::make_unique<WorkCounter[]>(static_cast<size_t>(size) * 2);
  for (int i = 0; i < size; ++i) {
    private_[i].clock = DeadlineClock(options_);
    private_[i].srcs.resize(size);
    private_[i].dsts.resize(size);
  }
}

LocalFabric::~LocalFabric() = default;

void* LocalFabric::Peers::buf(int member) const {
  return fabric->slots_[member].published[parity].buf;
}
const void* LocalFabric::Peers::send(int member) const {
  return fabric->slots_[member].published[parity].send;
}

std::vector<const void*>& LocalFabric::src_scratch(int member) { return private_[member].srcs; }
std::vector<void*>& LocalFabric::dst_scratch(int member) { return private_[member].dsts; }

LocalFabric::Peers LocalFabric::arrive(int member, const CallSignature& sig, const void* send,
                                       void* buf) {
  if (failed_.load(std::memory_order_acquire)) throw_failed();
  Private& me = private_[member];
  const uint64_t call = me.calls++;
  const int parity = static_cast<int>(call & 1);
  Slot::Published& pub = slots_[member].published[parity];
  pub.sig = sig;
  pub.send = send;
  pub.buf = buf;
  me.budget = me.clock.start();
  const uint64_t target = ++me.epoch;
  slots_[member].arrived.store(target, std::memory_order_release);
  wait_for_all(member, target, sig.kind, "arrival", me.budget.limit);
  check_agreement(parity);
  return Peers{this, parity, call};
}

void LocalFabric::sync(int member, CollectiveKind kind, const char* phase, bool behind_leader) {
  Private& me = private_[member];
  const uint64_t target = ++me.epoch;
  slots_[member].arrived.store(target, std::memory_order_release);
  std::chrono::milliseconds limit = me.budget.limit;
  if (behind_leader && limit.count() > 0) limit = 2 * limit + std::chrono::seconds(1);
  wait_for_all(member, target, kind, phase, limit);
}

void LocalFabric::wait_for_all(int member, uint64_t target, CollectiveKind kind,
                               const char* phase, std::chrono::milliseconds limit) {
  int next = 0;  // members before `next` are known to have arrived
  spin_wait(
      [&] {
        while (next < size_ && slots_[next].arrived.load(std::memory_order_acquire) >= target) ++next;
        return next == size_;
      },
      [&](std::chrono::steady_clock::duration waited) {
        if (failed_.load(std::memory_order_acquire)) throw_failed();
        if (limit.count() > 0 && waited >= limit) throw_timeout(member, target, kind, phase, limit);
      });
}

void LocalFabric::throw_timeout(int member, uint64_t target, CollectiveKind kind,
                                const char* phase, std::chrono::milliseconds limit) {
  std::string absent;
  for (int j = 0; j < size_; ++j) {
    if (slots_[j].arrived.load(std::memory_order_acquire) < target) {
      absent += (absent.empty() ? "" : ", ") + std::to_string(j);
    }
  }
  WaitBudget budget = private_[member].budget;
  budget.limit = limit;
  const std::string msg = label_ + " " + collective_name(kind) + " (" + phase + ", member " +
                          std::to_string(member) + " of " + std::to_string(size_) +
                          "): timed out after " + budget.describe() +
                          " waiting for member(s) " + absent +
                          " (hint: a replica died, hangs, or skipped this collective; "
                          "raise the timeout if a step is legitimately this slow)";
  fail(msg);
  throw CommError(msg);
}

void LocalFabric::fail(const std::string& reason) {
  std::lock_guard<std::mutex> lock(reason_mutex_);
  if (failed_.load(std::memory_order_relaxed)) return;  // keep the first cause
  reason_ = reason;
  failed_.store(true, std::memory_order_release);
}

void LocalFabric::throw_failed() const {
  std::lock_guard<std::mutex> lock(reason_mutex_);
  throw CommError(label_ + " group has failed and can no longer communicate: " + reason_);
}

void LocalFabric::check_agreement(int parity) {
  const CallSignature& first = slots_[0].published[parity].sig;
  for (int j = 1; j < size_; ++j) {
    const CallSignature& other = slots_[j].published[parity].sig;
    if (other == first) continue;
    const std::string msg = label_ + ": members disagree on the collective: member 0 called " +
                            describe_call(first) + ", member " + std::to_string(j) +
                            " called " + describe_call(other) +
                            " (hint: every member must call the same collectives in the same "
                            "order with the same count, dtype, op and root)";
    fail(msg);
    throw CommError(msg);
  }
}

}  // namespace lockstep
