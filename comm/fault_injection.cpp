// LOCKSTEP_FAULT parsing (once, on first use) and the self-signal. A malformed
// value is reported on stderr and ignored: it is a test knob, never a reason
// to stop a job.
#include "comm/fault_injection.h"

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "comm/mpi_check.h"

namespace lockstep {
namespace {

struct Fault {
  bool armed = false;
  int rank = -1;
  std::string phase;     // "phase=NAME" or "phase=NAME@K"
  int occurrence = 1;    // K: fire on the K-th entry of the phase in this process
  uint64_t collective = 0;  // "collective=N"
  int signal = SIGKILL;
  int sleep_s = 0;       // "SLEEPn": no signal, n seconds of delay (a slow disk, a slow step)
};

Fault parse_fault() {
  Fault f;
  const char* text = std::getenv("LOCKSTEP_FAULT");
  if (text == nullptr || text[0] == '\0') return f;
  const std::string s = text;
  const size_t a = s.find(':');
  const size_t b = s.rfind(':');
  const std::string point = a == std::string::npos || b <= a ? "" : s.substr(a + 1, b - a - 1);
  const std::string sig = b == std::string::npos ? "" : s.substr(b + 1);
  if (point.rfind("phase=", 0) == 0) {
    f.phase = point.substr(6);
    if (const size_t at = f.phase.rfind('@'); at != std::string::npos) {
      f.occurrence = std::atoi(f.phase.c_str() + at + 1);
      f.phase.resize(at);
      if (f.occurrence < 1) f.phase.clear();  // malformed: disarm below
    }
  } else if (point.rfind("collective=", 0) == 0) {
    f.collective = std::strtoull(point.c_str() + 11, nullptr, 10);
  }
  if (sig == "KILL" || sig == "STOP") f.signal = sig == "KILL" ? SIGKILL : SIGSTOP;
  if (sig.rfind("SLEEP", 0) == 0) f.sleep_s = std::atoi(sig.c_str() + 5);
  f.rank = std::atoi(s.substr(0, a).c_str());
  f.armed = (!f.phase.empty() || f.collective > 0) && (sig == "KILL" || sig == "STOP" || f.sleep_s > 0);
  if (!f.armed) {
    std::fprintf(stderr, "lockstep: warning: LOCKSTEP_FAULT='%s' ignored (want RANK:phase=NAME[@K]:KILL|STOP|SLEEPn "
                 "or RANK:collective=N:KILL|STOP|SLEEPn)\n", text);
  }
  return f;
}

const Fault& fault() {
  static const Fault f = parse_fault();
  return f;
}

bool is_target(const Fault& f) {
  int rank = 0;
  if (mpi_active()) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank == f.rank;
}

void fire(const Fault& f, const std::string& where) {
  if (f.sleep_s > 0) {
    std::fprintf(stderr, "lockstep: LOCKSTEP_FAULT: rank %d sleeps %d s at %s\n", f.rank, f.sleep_s, where.c_str());
    std::fflush(stderr);
    std::this_thread::sleep_for(std::chrono::seconds(f.sleep_s));
    return;
  }
  std::fprintf(stderr, "lockstep: LOCKSTEP_FAULT: rank %d raises SIG%s at %s\n", f.rank,
               f.signal == SIGKILL ? "KILL" : "STOP", where.c_str());
  std::fflush(stderr);
  std::raise(f.signal);
}

}  // namespace

void inject_fault_at_phase(const std::string& phase) {
  const Fault& f = fault();
  if (!f.armed || f.phase != phase || !is_target(f)) return;
  static std::atomic<int> entries{0};  // entries of the fault's phase in this process
  const int k = entries.fetch_add(1) + 1;
  if (k == f.occurrence) fire(f, "phase " + phase + (f.occurrence > 1 ? " (entry " + std::to_string(k) + ")" : ""));
}

void inject_fault_at_collective(uint64_t seq) {
  const Fault& f = fault();
  if (f.armed && f.collective == seq && is_target(f)) fire(f, "collective #" + std::to_string(seq));
}

}  // namespace lockstep
