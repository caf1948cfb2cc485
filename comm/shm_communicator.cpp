// The shared-memory all-reduce between the processes of one node. Segment layout,
// one region per rank: a control block (arrival counter, the collective the rank
// is in) and two slabs, used by call parity so that a rank one call ahead never
// overwrites a slab a slower rank still reads. One all-reduce of a piece:
//   copy in (own slab) -> all arrive -> reduce own slice of every slab in rank
//   order, into own slab -> all arrive -> copy every rank's reduced slice out.
// Buffers from allocate() live in a segment of their own that every rank maps
// (each rank's part at the same place), so an all-reduce whose buffers are all
// there skips the slabs, as threads do in one process:
//   all arrive -> reduce own slice of every rank's buffer in rank order, into
//   every rank's buffer -> all arrive.
// The sums are the same in both ways, so the results are bitwise the same.
// Every write into the segment lands on lines the other ranks read the call
// before. Where taking those lines back from their caches is slow, streaming
// (non-temporal) stores are far faster; where it is cheap they only push the
// data out to DRAM. On a 2-vCPU VM the cost of plain stores moved between 2 and
// 15 GB/s from one minute to the next while streaming stayed at 4-25 GB/s, so
// each rank times its all-reduces (whole: the peers' reads of what it wrote are
// part of the cost) and keeps the kind that is cheaper lately, trying the other
// one call in 16 to follow the machine. Calls are numbered alike on every rank,
// so all try the other kind on the same call. The kind only changes how a rank's
// bytes reach the segment, never which bytes, so ranks need not agree on it and
// the result stays bitwise the same.
#include "comm/shm_communicator.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "comm/bootstrap.h"
#include "comm/deadline.h"
#include "comm/fault_injection.h"
#include "comm/local_fabric.h"
#include "comm/mpi_check.h"
#include "comm/mpi_communicator.h"
#include "comm/peer_watch.h"
#include "comm/reduce.h"
#include "comm/spin_wait.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace lockstep {
namespace {

// Bytes per slab: larger all-reduces go in pieces of this size. Two slabs per
// rank, so 4 MiB of shared memory per process.
constexpr size_t kSlabBytes = size_t{2} << 20;
constexpr size_t kControlBytes = 4096;
constexpr size_t kRegionBytes = kControlBytes + 2 * kSlabBytes;
constexpr size_t kTimedBytes = size_t{64} << 10;  // all-reduces this large time the store kinds
struct alignas(64) Control {
  std::atomic<uint64_t> arrived{0};  // barriers this rank has reached
  std::atomic<uint64_t> seq{0};      // the collective it is in (its number)
  int64_t sig[5] = {0, 0, 0, 0, 0};  // that collective (signature_to), published before arriving
  int32_t pid = 0;                   // the owner process (same node): alive or not, when interrupted
  int64_t buffer = -1;               // the all-reduce's buffer: allocate()'s number for it, or -1
  int64_t offset = 0;                // and its byte offset in this rank's part of that buffer
};
static_assert(sizeof(Control) <= kControlBytes, "control block too large");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared-memory atomics must be lock-free");

std::string errno_text(int err) { return std::string(std::strerror(err)); }

// memcpy with non-temporal stores where the CPU has them; dst 32-byte aligned
// (slabs are page aligned and slices start on 64-byte boundaries). The fence
// orders the streamed stores before the release store that announces them.
void stream_copy(std::byte* dst, const std::byte* src, size_t bytes) {
#if defined(__AVX2__)
  size_t i = 0;
  for (; i + 128 <= bytes; i += 128) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 32));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 64));
    const __m256i d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 96));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i), a);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i + 32), b);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i + 64), c);
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i + 96), d);
  }
  for (; i + 32 <= bytes; i += 32) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
  }
  if (i < bytes) std::memcpy(dst + i, src + i, bytes - i);
  _mm_sfence();
#else
  std::memcpy(dst, src, bytes);
#endif
}


class ShmCommunicator final : public Communicator {
 public:
  ShmCommunicator(MPI_Comm comm, CommOptions options);
  ~ShmCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "shm"; }
  std::string describe() const override {
    switch (options_.shm_stores) {
      case CommOptions::ShmStores::kPlain: return "shm (plain stores)";
      case CommOptions::ShmStores::kStreaming: return "shm (streaming stores)";
      default: return "shm (plain or streaming stores, timed)";
    }
  }

  void do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) override;
  void do_broadcast(void* buf, size_t count, DType dtype, int root) override {
    ++seq_;
    inner_->broadcast(buf, count, dtype, root);
  }
  void do_allgather(const void* send, void* recv, size_t count, DType dtype) override {
    ++seq_;
    inner_->allgather(send, recv, count, dtype);
  }
  void barrier() override;
  CommBuffer allocate(size_t count) override;
  CommBuffer allocate_common(size_t count) override;

 private:
  // allocate()'s segments this rank maps: number n holds every rank's part, of
  // `part` bytes each, rank j's at base + j * part. Shared with the buffers,
  // which unmap theirs and drop it from here when they go.
  struct Shared {
    int64_t id;
    std::byte* base;
    size_t part;
  };
  struct SharedList {
    std::mutex mu;
    std::vector<Shared> list;
  };
  // The shared segment holding [buf, buf + bytes) in this rank's part, if any.
  bool find_shared(const void* buf, size_t bytes, Shared& seg, size_t& offset) const;
  // Every rank's buffer lies in segment `seg` (at the offsets they published):
  // reduce this rank's slice of all of them, into all of them.
  void reduce_direct(const Shared& seg, size_t count, DType dtype, ReduceOp op);
  // After the arrival: whether every rank's buffer is in shared buffer `buffer`;
  // whether any rank's is in one.
  bool all_in(int64_t buffer) const;
  bool any_shared() const;
  Control& control(int r) const { return *reinterpret_cast<Control*>(regions_[size_t(r)]); }
  std::byte* slab(int r, int parity) const {
    return regions_[size_t(r)] + kControlBytes + size_t(parity) * kSlabBytes;
  }
  void map_segment();
  // Creates and maps an anonymous shared-memory file of `total` bytes on every rank
  // (collective); throws ShmUnavailable, on every rank, if any rank cannot.
  // `hint` says what the caller does without it.
  std::byte* map_shared(size_t total, const std::string& what, const std::string& hint);
  void choose_stores(bool timed);
  // The pieces of one all-reduce (the ranks' calls are compared at the first).
  // `staged`: this rank's first piece is not in its slab yet (it arrived before
  // knowing that another rank's buffer is not shared).
  void reduce_pieces(std::byte* bytes, size_t count, DType dtype, ReduceOp op, bool staged);
  void put(std::byte* dst, const std::byte* src, size_t n) {
    if (stream_) stream_copy(dst, src, n);
    else std::memcpy(dst, src, n);
  }
  void arrive_and_wait(const char* phase);
  void check_agreement();
  [[noreturn]] void throw_stuck(const char* phase, const std::string& why);
  std::string where() const;
  const char* op_name() const { return sig_.kind == CollectiveKind::kBarrier ? "mpi barrier" : "mpi allreduce"; }

  std::unique_ptr<Communicator> inner_;  // MPI: setup and the other collectives
  int rank_ = 0, size_ = 1;
  CommOptions options_;
  DeadlineClock clock_;
  WaitBudget budget_;
  uint64_t seq_ = 0;     // collectives begun through this communicator
  uint64_t epoch_ = 0;   // barriers passed inside all-reduces
  uint64_t pieces_ = 0;  // pieces done: parity selects the slab
  CallSignature sig_;
  std::string host_;
  void* mapping_ = MAP_FAILED;
  std::shared_ptr<SharedList> shared_ = std::make_shared<SharedList>();
  int64_t allocations_ = 0;  // allocate() calls: the same numbers on every rank
  std::vector<std::byte*> regions_;
  std::vector<const void*> srcs_;
  std::vector<void*> dsts_;
  bool stream_ = false;             // copy into the segment with streaming stores
  std::vector<std::byte> scratch_;  // streaming: a slice is reduced here first
  // ShmStores::kAuto: ns per byte of an all-reduce, a moving average per kind
  // (plain, streaming; < 0 = not measured yet), over all-reduces of at least
  // kTimedBytes (smaller ones are mostly fixed costs), and those calls.
  double cost_[2] = {-1.0, -1.0};
  uint64_t calls_ = 0;
};

ShmCommunicator::ShmCommunicator(MPI_Comm comm, CommOptions options)
    : options_(options), clock_(options), host_(host_name()) {
  inner_ = make_mpi_communicator(comm, options);
  rank_ = inner_->rank();
  size_ = inner_->size();
  srcs_.resize(size_t(size_));
  dsts_.resize(size_t(size_));
  scratch_.resize(kSlabBytes);
  stream_ = options.shm_stores == CommOptions::ShmStores::kStreaming;
  map_segment();
}

ShmCommunicator::~ShmCommunicator() {
  if (mapping_ != MAP_FAILED) munmap(mapping_, kRegionBytes * size_t(size_));
}

std::string ShmCommunicator::where() const {
  return "rank " + std::to_string(rank_) + " of " + std::to_string(size_) + ", host " + host_;
}

// Rank 0 makes an anonymous shared-memory file (memfd: no name anywhere, so
// nothing can be left behind, however a job ends) and reserves its pages; the
// others open it through /proc/<rank 0's pid>/fd/<its descriptor> while rank 0
// holds it open, and all map it. The memory goes when the last rank unmaps it.
// Every exchange goes through the MPI backend, so a rank that never comes hits
// its deadline.
std::byte* ShmCommunicator::map_shared(size_t total, const std::string& what, const std::string& hint) {
  constexpr int64_t kOtherSize = int64_t{1} << 40;  // beyond any errno
  // Rank 0's status (0 = made, else errno), the size, its pid and descriptor.
  int64_t head[4] = {0, int64_t(total), int64_t(getpid()), -1};
  int fd = -1;
  if (rank_ == 0) {
    fd = memfd_create("lockstep-shm", MFD_CLOEXEC);
    if (fd < 0) head[0] = errno;
    // Reserve the pages now: without the memory this fails here instead of a
    // SIGBUS at the first touch of an unbacked page.
    if (head[0] == 0 && ftruncate(fd, off_t(total)) != 0) head[0] = errno;
    while (head[0] == 0 && (head[0] = posix_fallocate(fd, 0, off_t(total))) == EINTR) head[0] = 0;
    if (head[0] != 0 && fd >= 0) {
      close(fd);
      fd = -1;
    }
    head[3] = fd;
  }
  void* mapping = MAP_FAILED;
  try {
    inner_->broadcast(head, 4, 0);
    if (head[0] != 0) {
      throw ShmUnavailable("shm (" + where() + "): cannot create " + what + " of " +
                           std::to_string((total + (1 << 20) - 1) >> 20) + " MiB: " +
                           errno_text(int(head[0])) + " (hint: the node may be short of memory; " + hint + ")");
    }
    int64_t failed = head[1] != int64_t(total) ? kOtherSize : 0;
    if (failed == 0 && rank_ != 0) {
      const std::string path = "/proc/" + std::to_string(head[2]) + "/fd/" + std::to_string(head[3]);
      fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0) failed = errno;
    }
    if (failed == 0) {
      mapping = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (mapping == MAP_FAILED) failed = errno;
    }
    int64_t worst = failed;
    inner_->allreduce(&worst, 1, ReduceOp::kMax);  // also: everyone has opened rank 0's file
    if (fd >= 0) close(fd);  // once, on every rank: the mappings keep the memory
    fd = -1;
    if (worst == kOtherSize) {
      throw CommError("shm (" + where() + "): the ranks asked for different sizes of " + what + " (rank 0: " +
                      std::to_string(head[1]) + " bytes, this rank: " + std::to_string(total) +
                      ") (hint: every rank calls allocate alike, with the same count)");
    }
    if (worst != 0) {
      throw ShmUnavailable("shm (" + where() + "): a rank could not open or map " + what + ": " +
                           errno_text(int(worst)) + " (hint: ranks in different PID namespaces, e.g. "
                           "one container each, cannot open each other's memory; " + hint + ")");
    }
    return static_cast<std::byte*>(mapping);
  } catch (...) {
    if (fd >= 0) close(fd);
    if (mapping != MAP_FAILED) munmap(mapping, total);
    throw;
  }
}

void ShmCommunicator::map_segment() {
  mapping_ = map_shared(kRegionBytes * size_t(size_), "a shared-memory segment",
                        "set comm.shared_memory: false to use MPI messages instead");
  regions_.resize(size_t(size_));
  for (int r = 0; r < size_; ++r) regions_[size_t(r)] = static_cast<std::byte*>(mapping_) + kRegionBytes * size_t(r);
  new (regions_[size_t(rank_)]) Control();  // the fresh segment is zero: this only starts lifetimes
  control(rank_).pid = int32_t(getpid());
  inner_->barrier();  // no rank reads a control block before its owner has made it
}

CommBuffer ShmCommunicator::allocate(size_t count) {
  inject_fault_at_phase("shared buffer");
  ++seq_;
  // Each rank's part on whole pages, so no two ranks' buffers share a line.
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const size_t part = (std::max<size_t>(count, 1) * sizeof(float) + page - 1) / page * page;
  const int64_t id = allocations_++;
  std::byte* base = nullptr;
  try {
    base = map_shared(part * size_t(size_), "a shared buffer",
                      "nothing to do: its all-reduces copy through the segment instead, a little slower");
  } catch (const ShmUnavailable& e) {  // every rank threw: all take ordinary memory
    if (rank_ == 0) std::fprintf(stderr, "lockstep: warning: %s\n", e.what());
    return Communicator::allocate(count);
  }
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    shared_->list.push_back({id, base, part});
  }
  const size_t total = part * size_t(size_);
  std::shared_ptr<void> owner(base, [list = shared_, id, total](void* p) {
    {
      std::lock_guard<std::mutex> lock(list->mu);
      std::erase_if(list->list, [id](const Shared& m) { return m.id == id; });
    }
    munmap(p, total);
  });
  // The object is fresh, so zero: nothing to clear.
  return CommBuffer(reinterpret_cast<float*>(base + part * size_t(rank_)), count, std::move(owner));
}

// One mapping that every rank uses whole; it is not an all-reduce buffer, so it
// stays off the list find_shared looks in.
CommBuffer ShmCommunicator::allocate_common(size_t count) {
  ++seq_;
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const size_t total = (std::max<size_t>(count, 1) * sizeof(float) + page - 1) / page * page;
  std::byte* base = nullptr;
  try {
    base = map_shared(total, "a common buffer", "nothing to do: each process keeps its own copy instead");
  } catch (const ShmUnavailable& e) {  // every rank threw: all keep their own
    if (rank_ == 0) std::fprintf(stderr, "lockstep: warning: %s\n", e.what());
    return {};
  }
  std::shared_ptr<void> owner(base, [total](void* p) { munmap(p, total); });
  return CommBuffer(reinterpret_cast<float*>(base), count, std::move(owner));  // fresh, so zero
}

bool ShmCommunicator::find_shared(const void* buf, size_t bytes, Shared& seg, size_t& offset) const {
  const auto* p = static_cast<const std::byte*>(buf);
  std::lock_guard<std::mutex> lock(shared_->mu);
  for (const Shared& m : shared_->list) {
    const std::byte* own = m.base + m.part * size_t(rank_);
    if (p >= own && p <= own + m.part && bytes <= size_t(own + m.part - p)) {
      seg = m;
      offset = size_t(p - own);
      return true;
    }
  }
  return false;
}

void ShmCommunicator::do_allreduce(void* buf, size_t count, DType dtype, ReduceOp op) {
  if (size_ == 1) return;
  ++seq_;
  inject_fault_at_collective(seq_);
  sig_ = CallSignature{CollectiveKind::kAllreduce, dtype, op, 0, count};
  budget_ = clock_.start();
  Control& me = control(rank_);
  signature_to(sig_, me.sig);
  me.seq.store(seq_, std::memory_order_relaxed);
  const size_t bytes = count * dtype_size(dtype);
  Shared seg{};
  size_t offset = 0;
  const bool shared = find_shared(buf, bytes, seg, offset);
  me.buffer = shared ? seg.id : -1;
  me.offset = int64_t(offset);
  if (shared) {  // published with the arrival: every rank learns where the others' buffers are
    arrive_and_wait("arrival");
    check_agreement();
    if (all_in(seg.id)) return reduce_direct(seg, count, dtype, op);
    // Another rank's buffer is its own memory: every rank copies through the slabs.
  }
  const bool timed = bytes >= kTimedBytes;
  choose_stores(timed);
  const auto t0 = std::chrono::steady_clock::now();
  reduce_pieces(static_cast<std::byte*>(buf), count, dtype, op, shared);
  if (options_.shm_stores == CommOptions::ShmStores::kAuto && timed) {
    double& c = cost_[stream_ ? 1 : 0];
    const double now = double((std::chrono::steady_clock::now() - t0).count()) / double(bytes);
    c = c < 0 ? now : 0.75 * c + 0.25 * now;
  }
}

// Two arrivals: after the first every rank compares the calls, and the second
// keeps a rank from publishing its next call before the others have compared.
void ShmCommunicator::barrier() {
  if (size_ == 1) return;
  ++seq_;
  inject_fault_at_collective(seq_);
  sig_ = CallSignature{};
  budget_ = clock_.start();
  Control& me = control(rank_);
  signature_to(sig_, me.sig);
  me.seq.store(seq_, std::memory_order_relaxed);
  me.buffer = -1;
  arrive_and_wait("arrival");
  check_agreement();
  arrive_and_wait("compared");
}

void ShmCommunicator::choose_stores(bool timed) {
  if (options_.shm_stores != CommOptions::ShmStores::kAuto) return;
  const bool known = cost_[0] >= 0 && cost_[1] >= 0;
  const bool best = known && cost_[1] < cost_[0];
  if (!timed) {  // too small to time well: the kind that is cheaper lately
    stream_ = best;
    return;
  }
  const uint64_t call = calls_++;
  if (!known) {  // measure each kind first
    stream_ = cost_[0] >= 0;
    return;
  }
  stream_ = call % 16 == 15 ? !best : best;  // now and then, the other kind again
}

bool ShmCommunicator::all_in(int64_t buffer) const {
  for (int j = 0; j < size_; ++j) {
    if (control(j).buffer != buffer) return false;
  }
  return true;
}

bool ShmCommunicator::any_shared() const {
  for (int j = 0; j < size_; ++j) {
    if (control(j).buffer >= 0) return true;
  }
  return false;
}

void ShmCommunicator::reduce_direct(const Shared& seg, size_t count, DType dtype, ReduceOp op) {
  const size_t elem = dtype_size(dtype);
  const ElementRange mine = chunk_of(count, elem, size_, rank_);
  for (int j = 0; j < size_; ++j) {
    const int64_t offset = control(j).offset;
    if (offset < 0 || size_t(offset) > seg.part || count * elem > seg.part - size_t(offset)) {
      throw CommError("mpi allreduce (" + where() + ", collective #" + std::to_string(seq_) + " " +
                      describe_call(sig_) + ", shared memory): rank " + std::to_string(j) +
                      " published a buffer at byte " + std::to_string(offset) + " of its " +
                      std::to_string(seg.part) + "-byte part of shared buffer #" +
                      std::to_string(seg.id) + ", which does not hold " + std::to_string(count) +
                      " elements (hint: the ranks' shared state is corrupt; abort the job)");
    }
    std::byte* p = seg.base + seg.part * size_t(j) + size_t(offset) + mine.begin * elem;
    srcs_[size_t(j)] = p;
    dsts_[size_t(j)] = p;
  }
  if (mine.end > mine.begin) {
    reduce_fixed_order(srcs_.data(), size_, dsts_.data(), size_, mine.end - mine.begin, dtype, op);
  }
  arrive_and_wait("slices reduced");  // no rank reads or writes a buffer of this call after it
}

void ShmCommunicator::reduce_pieces(std::byte* bytes, size_t count, DType dtype, ReduceOp op, bool staged) {
  const size_t elem = dtype_size(dtype);
  const size_t piece = kSlabBytes / elem;
  bool first = true;
  for (size_t done = 0; done < count; done += piece) {
    const size_t n = std::min(piece, count - done);
    const int parity = int(pieces_++ & 1);
    put(slab(rank_, parity), bytes + done * elem, n * elem);
    if (first && staged) {
      arrive_and_wait("copied in");
    } else {
      arrive_and_wait("arrival");
      // A rank whose buffer is shared arrived before copying in: wait for it.
      if (first) check_agreement();
      if (first && any_shared()) arrive_and_wait("copied in");
    }
    first = false;
    const ElementRange mine = chunk_of(n, elem, size_, rank_);
    if (mine.end > mine.begin) {
      const size_t len = mine.end - mine.begin;
      for (int j = 0; j < size_; ++j) srcs_[size_t(j)] = slab(j, parity) + mine.begin * elem;
      std::byte* own = slab(rank_, parity) + mine.begin * elem;
      if (stream_) {  // reduce in private memory, then stream the slice out
        void* dst = scratch_.data();
        reduce_fixed_order(srcs_.data(), size_, &dst, 1, len, dtype, op);
        stream_copy(own, scratch_.data(), len * elem);
      } else {
        void* dst = own;
        reduce_fixed_order(srcs_.data(), size_, &dst, 1, len, dtype, op);
      }
    }
    arrive_and_wait("slices reduced");
    for (int j = 0; j < size_; ++j) {
      const ElementRange r = chunk_of(n, elem, size_, j);
      if (r.end > r.begin)
        std::memcpy(bytes + (done + r.begin) * elem, slab(j, parity) + r.begin * elem, (r.end - r.begin) * elem);
    }
  }
}

namespace {
// Whether a process of this node still runs: /proc/PID/stat exists and its state
// is not zombie or dead. Unknown (another PID namespace) counts as not running.
bool process_running(int32_t pid) {
  if (pid <= 0) return false;
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return false;
  char buf[512] = {0};
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  const char* close = std::strrchr(buf, ')');  // the command name may hold spaces
  if (n == 0 || !close || close[1] != ' ') return false;
  return close[2] != 'Z' && close[2] != 'X';
}
}  // namespace

void ShmCommunicator::arrive_and_wait(const char* phase) {
  const uint64_t target = ++epoch_;
  control(rank_).arrived.store(target, std::memory_order_release);
  std::chrono::steady_clock::duration interrupted_for{};
  bool interrupted = false;
  int next = 0;  // ranks before `next` are known to have arrived
  spin_wait(
      [&] {
        while (next < size_ && control(next).arrived.load(std::memory_order_acquire) >= target) ++next;
        return next == size_;
      },
      [&](std::chrono::steady_clock::duration waited) {
        if (!budget_.forever() && waited >= budget_.limit)
          throw_stuck(phase, "not complete after " + budget_.describe());
        if (options_.interrupted && budget_.phase.empty() && options_.interrupted()) {
          if (!interrupted) interrupted_for = waited;
          interrupted = true;
          // A signal to every rank (a user's SIGTERM to the launcher) finds the
          // peers alive and on their way: wait for them as usual. Only a dead
          // peer (the launcher tearing the job down) ends the wait early.
          bool peer_dead = false;
          for (int j = next; j < size_; ++j) {
            if (control(j).arrived.load(std::memory_order_acquire) < target && !process_running(control(j).pid))
              peer_dead = true;
          }
          if (peer_dead && waited - interrupted_for >= options_.interrupt_grace)
            throw_stuck(phase, "interrupted by a signal while waiting (the launcher may be ending the job)");
        }
      });
}

// Every rank published its call before arriving: all must be rank 0's. Every
// rank builds the same table, so all throw the same message after the head,
// which names the rank's own call (mpi barrier or mpi allreduce).
void ShmCommunicator::check_agreement() {
  const Control& first = control(0);
  const uint64_t first_seq = first.seq.load(std::memory_order_relaxed);
  std::string diff;
  for (int j = 1; j < size_; ++j) {
    const Control& other = control(j);
    const uint64_t seq = other.seq.load(std::memory_order_relaxed);
    if (seq == first_seq && std::equal(other.sig, other.sig + 5, first.sig)) continue;
    diff += "; rank " + std::to_string(j) + " called collective #" + std::to_string(seq) + " " +
            describe_call(signature_from(other.sig));
  }
  if (diff.empty()) return;
  throw CommError(std::string(op_name()) + " (" + where() + ", shared memory): ranks issue different "
                  "collectives: rank 0 called collective #" + std::to_string(first_seq) + " " +
                  describe_call(signature_from(first.sig)) + diff + kDivergedHint);
}

void ShmCommunicator::throw_stuck(const char* phase, const std::string& why) {
  const std::string head = std::string(op_name()) + " (" + where() + ", collective #" + std::to_string(seq_) + " " +
                           describe_call(sig_) + ", shared memory, " + phase + "): ";
  const auto since = std::chrono::steady_clock::now() - budget_.limit - std::chrono::seconds(1);
  if (const std::string frozen = freeze_report(since); !frozen.empty()) throw CommError(head + frozen);
  const uint64_t target = epoch_;
  std::string missing, detail;
  for (int j = 0; j < size_; ++j) {
    const Control& other = control(j);
    if (other.arrived.load(std::memory_order_acquire) >= target) continue;
    missing += (missing.empty() ? "" : ", ") + std::to_string(j);
    const uint64_t seq = other.seq.load(std::memory_order_relaxed);
    detail += (detail.empty() ? "" : "; ") + std::string("rank ") + std::to_string(j) +
              (seq == seq_ ? " entered this collective but did not reach this phase"
                           : " last entered collective #" + std::to_string(seq) + " here");
  }
  throw CommError(head + why + ": rank(s) " + missing + " did not arrive (" + detail +
                  "; stopped, deadlocked, dead or busy outside lockstep's collectives)" + kStuckHint);
}

}  // namespace

bool on_one_node(MPI_Comm comm) {
  MPI_Comm node = split_nodes(comm);
  int node_size = 0, size = 0;
  LOCKSTEP_MPI_CHECK(MPI_Comm_size(node, &node_size));
  LOCKSTEP_MPI_CHECK(MPI_Comm_size(comm, &size));
  LOCKSTEP_MPI_CHECK(MPI_Comm_free(&node));
  int all = node_size == size ? 1 : 0;
  LOCKSTEP_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &all, 1, MPI_INT, MPI_MIN, comm));
  return all == 1;
}

std::unique_ptr<Communicator> make_shm_communicator(MPI_Comm comm, CommOptions options) {
  return std::make_unique<ShmCommunicator>(comm, options);
}

}  // namespace lockstep
