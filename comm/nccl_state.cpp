// The shared half of the NCCL backend: failure and abort, the same-GPU rendezvous
// (a host barrier with a deadline, never a device synchronisation), the watchdog
// thread (asynchronous NCCL errors, collectives past the deadline) and teardown.
#include "comm/nccl_state.h"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <sstream>

#include "comm/nccl_check.h"

namespace lockstep {
namespace {

constexpr auto kAbortLockWait = std::chrono::seconds(2);
constexpr auto kBusyPoll = std::chrono::milliseconds(1);
constexpr auto kIdlePoll = std::chrono::milliseconds(20);
constexpr auto kSpinFor = std::chrono::milliseconds(2);
constexpr auto kStepNap = std::chrono::microseconds(50);

std::string seconds_text(std::chrono::milliseconds ms) {
  std::ostringstream s;
  s << static_cast<double>(ms.count()) / 1000.0 << " s";
  return s.str();
}

}  // namespace

NcclState::NcclState(CommOptions opts, std::vector<int> devices)
    : options(opts),
      clocks(devices.size(), DeadlineClock(opts)),
      local_devices(std::move(devices)),
      begun_(new std::atomic<uint64_t>[local_devices.size()]),
      grace_(opts) {
  for (size_t i = 0; i < local_devices.size(); ++i) begun_[i].store(0);
}

WaitBudget NcclState::begin_wait(int local, uint64_t* seq) {
  *seq = begun_[size_t(local)].fetch_add(1, std::memory_order_acq_rel) + 1;
  return clocks[size_t(local)].start();
}

std::chrono::milliseconds NcclState::usual_interval(int local) const {
  return std::chrono::milliseconds(
      static_cast<int64_t>(clocks[size_t(local)].slowest_recent_seconds() * 1000.0));
}

std::string NcclState::behind(uint64_t seq) const {
  std::string late;
  for (int i = 0; i < local_size(); ++i) {
    if (begun_[size_t(i)].load(std::memory_order_acquire) < seq) {
      late += (late.empty() ? "" : ", ") + std::to_string(i);
    }
  }
  return late.empty() ? "" : "; local replica(s) " + late + " of process " +
                                 std::to_string(process_rank) + " have not got this far";
}

NcclState::~NcclState() {
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    stop_ = true;
  }
  watch_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
}

int NcclState::nccl_rank_of(int rank) const {
  const int k = local_size();
  const int process = rank / k;
  return nccl_base[size_t(process)] + slot_table[size_t(process)][size_t(rank % k)];
}

std::string NcclState::where(int local) const {
  return "NCCL rank " + std::to_string(global_rank(local)) + " (process " +
         std::to_string(process_rank) + ", replica " + std::to_string(local) + ", device " +
         std::to_string(local_devices[size_t(local)]) + ")";
}

// ---- failure ----

void NcclState::abort_all(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(fail_mu_);
    if (failed_.load(std::memory_order_relaxed)) return;
    reason_ = reason;
    failed_.store(true, std::memory_order_release);
  }
  for (auto& slot : slots) {
    { std::lock_guard<std::mutex> lock(slot->mu); }
    slot->cv.notify_all();
  }
  abort_comms();
  watch_cv_.notify_all();
}

// ncclCommAbort also ends device kernels still waiting for peers, so the compute
// streams that wait on them drain. A member stuck inside an NCCL call holds
// call_mu; after a short wait we abort anyway, which is what releases it.
void NcclState::abort_comms() {
  for (auto& slot : slots) {
    std::unique_lock<std::timed_mutex> lock(slot->call_mu, std::defer_lock);
    (void)lock.try_lock_for(kAbortLockWait);
    if (slot->comm == nullptr) continue;
    // Never throws (this runs on the watchdog thread and in error paths): a device
    // that cannot be selected still gets its abort attempted.
    int previous = -1;
    if (cudaGetDevice(&previous) != cudaSuccess) previous = -1;
    if (cudaSetDevice(slot->device) != cudaSuccess) cudaGetLastError();
    const ncclResult_t rc = ncclCommAbort(slot->comm);
    if (previous >= 0) cudaSetDevice(previous);
    if (rc != ncclSuccess) {
      std::fprintf(stderr, "lockstep: ncclCommAbort on device %d: %s\n", slot->device,
                   ncclGetErrorString(rc));
    }
    slot->comm = nullptr;
  }
}

void NcclState::throw_failed(int local, const char* op) const {
  std::string reason;
  {
    std::lock_guard<std::mutex> lock(fail_mu_);
    reason = reason_;
  }
  throw CommError(where(local) + ": " + op + ": the NCCL group has failed: " + reason);
}

// ---- same-GPU rendezvous ----

void NcclState::wait_slot_until(NcclSlot& slot, std::unique_lock<std::mutex>& lock,
                                const std::function<bool()>& done, int local, const char* op,
                                const char* phase, const WaitBudget& budget) {
  const auto start = NcclClock::now();
  InterruptGrace grace(options);
  while (!done()) {
    if (failed()) {
      lock.unlock();
      throw_failed(local, op);
    }
    // Short naps while a signal may end the wait; otherwise until the deadline.
    const auto now = NcclClock::now();
    auto wake = budget.forever() ? now + std::chrono::hours(1) : start + budget.limit;
    if (options.interrupted) wake = std::min(wake, now + kIdlePoll);
    slot.cv.wait_until(lock, wake);
    if (done()) break;
    std::string why;
    if (!overdue(budget, NcclClock::now() - start).empty()) {
      why = " within " + budget.describe();
    } else if (grace.expired(NcclClock::now(), budget)) {
      why = ": interrupted by a signal while waiting (the launcher may be ending the job)";
    } else {
      continue;
    }
    std::string absent;
    const uint64_t want = slot.generation + 1;
    for (const NcclPublished& p : slot.published) {
      if (p.arrival != want) absent += (absent.empty() ? "" : ", ") + std::to_string(p.local);
    }
    const std::string msg =
        where(local) + ": " + op + " (" + phase + "): replicas sharing device " +
        std::to_string(slot.device) + " did not " +
        (absent.empty() ? std::string("finish enqueueing") : "arrive (missing replicas " + absent + ")") +
        why + "; hint: a replica thread stopped or called a different collective";
    lock.unlock();
    abort_all(msg);
    throw CommError(msg);
  }
}

uint64_t NcclState::arrive(int local, const NcclPublished& mine, const char* op,
                          const WaitBudget& budget) {
  NcclSlot& slot = *slots[size_t(slot_of[size_t(local)])];
  std::unique_lock<std::mutex> lock(slot.mu);
  if (failed()) {
    lock.unlock();
    throw_failed(local, op);
  }
  const uint64_t generation = slot.generation;
  NcclPublished& entry = slot.published[size_t(position[size_t(local)])];
  entry = mine;
  entry.arrival = generation + 1;
  if (++slot.arrived == static_cast<int>(slot.members.size())) {
    slot.arrived = 0;
    ++slot.generation;
    slot.cv.notify_all();
  } else {
    wait_slot_until(slot, lock, [&] { return slot.generation != generation; }, local, op,
                    "arrival", budget);
  }
  return generation + 1;
}

void NcclState::mark_enqueued(int slot_index, uint64_t generation) {
  NcclSlot& slot = *slots[size_t(slot_index)];
  {
    std::lock_guard<std::mutex> lock(slot.mu);
    slot.enqueued = generation;
  }
  slot.cv.notify_all();
}

void NcclState::wait_enqueued(int local, uint64_t generation, const char* op,
                              const WaitBudget& budget) {
  NcclSlot& slot = *slots[size_t(slot_of[size_t(local)])];
  std::unique_lock<std::mutex> lock(slot.mu);
  wait_slot_until(slot, lock, [&] { return slot.enqueued >= generation; }, local, op,
                  "waiting for the device leader", budget);
}

// Polls rather than cudaStreamSynchronize: a stream that waits on an NCCL kernel
// whose peer never comes would block the host thread past every deadline.
void NcclState::wait_stream(int local, cudaStream_t stream, const char* op) const {
  // Spin briefly (short steps end within it), then nap in steps too short to
  // show in a step time.
  const auto start = NcclClock::now();
  for (;;) {
    const cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) break;
    if (q != cudaErrorNotReady) {
      cudaGetLastError();
      if (failed()) throw_failed(local, op);  // the abort is the cause; say so
      cuda::throw_cuda_error(q, "cudaStreamQuery(compute_stream)", __FILE__, __LINE__);
    }
    if (failed()) throw_failed(local, op);
    if (NcclClock::now() - start < kSpinFor) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(kStepNap);
    }
  }
  if (failed()) throw_failed(local, op);
}

// ---- watchdog ----

void NcclState::start_watchdog() { watchdog_ = std::thread([this] { watch_loop(); }); }

void NcclState::track(int slot_index, cudaStream_t stream, std::string what,
                      const WaitBudget& budget, int local, uint64_t seq) {
  NcclSlot& slot = *slots[size_t(slot_index)];
  std::lock_guard<std::mutex> lock(watch_mu_);
  cudaEvent_t event = nullptr;
  if (!slot.spare_events.empty()) {
    event = slot.spare_events.back();
    slot.spare_events.pop_back();
  } else {
    LOCKSTEP_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  }
  const cudaError_t err = cudaEventRecord(event, stream);
  if (err != cudaSuccess) {
    slot.spare_events.push_back(event);
    cuda::throw_cuda_error(err, "cudaEventRecord(event, stream)", __FILE__, __LINE__);
  }
  const bool wake = slot.pending.empty();
  slot.pending.push_back(
      NcclPending{event, std::move(what), NcclClock::now(), budget, local, seq, usual_interval(local)});
  if (wake) watch_cv_.notify_one();
}

void NcclState::watch_loop() {
  std::unique_lock<std::mutex> lock(watch_mu_);
  while (!stop_) {
    bool busy = false;
    for (auto& slot : slots) busy = busy || !slot->pending.empty();
    if (!busy) grace_.reset();
    watch_cv_.wait_for(lock, busy && !failed() ? kBusyPoll : kIdlePoll);
    if (stop_ || failed()) continue;
    std::string problem;
    try {
      for (auto& slot : slots) {
        problem = poll_slot(*slot);
        if (!problem.empty()) break;
      }
    } catch (const std::exception& e) {  // an exception must not end this thread
      problem = std::string("NCCL watchdog: ") + e.what();
    }
    if (problem.empty()) continue;
    lock.unlock();
    abort_all(problem);
    lock.lock();
  }
}

// Called with watch_mu_ held. Retires finished collectives, reports the first one
// past the deadline, and asks NCCL for asynchronous errors (network, peer failure).
std::string NcclState::poll_slot(NcclSlot& slot) {
  while (!slot.pending.empty()) {
    NcclPending& front = slot.pending.front();
    const cudaError_t q = cudaEventQuery(front.event);
    if (q == cudaSuccess) {
      slot.spare_events.push_back(front.event);
      slot.pending.pop_front();
      continue;
    }
    if (q != cudaErrorNotReady) {
      cudaGetLastError();
      return front.what + ": the device reported " + cudaGetErrorName(q) + " (" +
             cudaGetErrorString(q) + "); the NCCL communicators were aborted";
    }
    const auto now = NcclClock::now();
    std::string why = overdue(front.budget, now - front.since);
    // Work tracked here includes compute queued before it (a whole replayed step):
    // after a signal, a healthy one still gets its usual time before the grace runs.
    const bool past_usual = now - front.since >= front.usual + options.interrupt_grace;
    if (why.empty() && past_usual && grace_.expired(now, front.budget)) {
      why = "was interrupted by a signal while waiting (the launcher may be ending the job)";
    }
    if (!why.empty()) {
      return front.what + " " + why + behind(front.seq) +
             "; the NCCL communicators were aborted (hint: a peer process died, hangs, or "
             "called a different collective; see its log; comm.timeout_s sets the deadline)";
    }
    break;
  }
  std::unique_lock<std::timed_mutex> call(slot.call_mu, std::try_to_lock);
  if (!call.owns_lock() || slot.comm == nullptr) return "";
  ncclResult_t async = ncclSuccess;
  const ncclResult_t rc = ncclCommGetAsyncError(slot.comm, &async);
  const ncclResult_t bad = rc != ncclSuccess ? rc : async;
  if (bad == ncclSuccess || bad == ncclInProgress) return "";
  const char* detail = ncclGetLastError(slot.comm);
  return "NCCL rank " + std::to_string(slot.nccl_rank) + " (device " + std::to_string(slot.device) +
         "): asynchronous NCCL error: " + ncclGetErrorString(bad) +
         (detail != nullptr && detail[0] != '\0' ? std::string(" (") + detail + ")" : "") +
         "; the NCCL communicators were aborted; hint: " + nccl_hint(bad);
}

// ---- teardown ----

void NcclState::shutdown() {
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    stop_ = true;
  }
  watch_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  // Unwinding from an error: peers may never finish, so never wait on them.
  if (std::uncaught_exceptions() > 0) abort_all("the group was destroyed while an exception was in flight");
  if (!failed()) drain_before_destroy();
  if (!failed()) destroy_comms();
  free_events();
}

// Finalize waits for peers; first give in-flight work the deadline to finish, so a
// hung peer ends in an abort here rather than a hang.
void NcclState::drain_before_destroy() {
  const auto limit = drain_limit(options);
  const auto deadline = NcclClock::now() + limit;
  for (auto& slot : slots) {
    DeviceGuard guard(slot->device);
    for (;;) {
      const cudaError_t q = cudaStreamQuery(slot->stream->get());
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) {
        cudaGetLastError();
        abort_all(std::string("NCCL stream on device ") + std::to_string(slot->device) +
                  " failed at shutdown: " + cudaGetErrorString(q));
        return;
      }
      if (limit.count() > 0 && NcclClock::now() > deadline) {
        abort_all("NCCL work on device " + std::to_string(slot->device) +
                  " still running at shutdown after " + seconds_text(limit));
        return;
      }
      std::this_thread::sleep_for(kBusyPoll);
    }
  }
}

void NcclState::destroy_comms() {
  // Several GPUs of one process: their finalizes must be one group, or the first
  // would wait for the others.
  ncclResult_t rc = ncclGroupStart();
  for (auto& slot : slots) {
    if (slot->comm != nullptr && rc == ncclSuccess) rc = ncclCommFinalize(slot->comm);
  }
  const ncclResult_t end = ncclGroupEnd();
  if (rc == ncclSuccess) rc = end;
  for (auto& slot : slots) {
    if (slot->comm == nullptr) continue;
    const ncclResult_t d = rc == ncclSuccess ? ncclCommDestroy(slot->comm) : ncclCommAbort(slot->comm);
    if (rc != ncclSuccess || d != ncclSuccess) {
      std::fprintf(stderr, "lockstep: closing the NCCL communicator on device %d: %s\n",
                   slot->device, ncclGetErrorString(rc != ncclSuccess ? rc : d));
    }
    slot->comm = nullptr;
  }
}

void NcclState::free_events() {
  std::lock_guard<std::mutex> lock(watch_mu_);
  for (auto& slot : slots) {
    for (const NcclPending& p : slot->pending) cudaEventDestroy(p.event);
    for (cudaEvent_t e : slot->spare_events) cudaEventDestroy(e);
    slot->pending.clear();
    slot->spare_events.clear();
  }
}

}  // namespace lockstep
