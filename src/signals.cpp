// SignalGuard: SIGINT/SIGTERM recorded as a stop request, never delivered to a
// thread that computes (see signals.h for why).
#include "src/signals.h"

#include <atomic>
#include <csignal>
#include <cstring>
#include <ctime>

#include <pthread.h>

namespace lockstep {
namespace {

std::atomic<int> g_signal{0};
std::atomic<bool> g_closing{false};
struct sigaction g_old_int, g_old_term;

void record(int sig) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, sig);
}

// Every signal that arrives asynchronously and that someone may catch (OpenMPI
// catches SIGCONT, which its launcher sends before SIGTERM; profilers SIGPROF).
// Faults (SIGSEGV, SIGFPE, ...) belong to the thread that faulted and SIGPIPE to
// the thread that wrote: they stay as they are.
sigset_t routed_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM, SIGCHLD, SIGCONT, SIGTSTP,
                  SIGTTIN, SIGTTOU, SIGURG, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR}) {
    sigaddset(&set, sig);
  }
  return set;
}

// A routed signal other than SIGINT/SIGTERM, taken by the waiter: raised again on
// the waiter itself, so its handler runs there, or its default action (stop,
// terminate) applies to the process as it would have.
void deliver_here(int sig) {
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
  pthread_kill(pthread_self(), sig);
  pthread_sigmask(SIG_BLOCK, &one, nullptr);
}

// Takes the routed signals as they arrive; a 20 ms tick notices the guard ending.
void wait_for_signals() {
  const sigset_t set = routed_signals();
  const timespec tick{0, 20 * 1000 * 1000};
  while (!g_closing.load()) {
    const int s = sigtimedwait(&set, nullptr, &tick);
    if (s == SIGINT || s == SIGTERM) {
      record(s);
    } else if (s > 0) {
      deliver_here(s);
    }
  }
}

}  // namespace

SignalGuard::SignalGuard() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = record;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
  const sigset_t set = routed_signals();
  pthread_sigmask(SIG_BLOCK, &set, &previous_mask_);
  g_closing.store(false);
  waiter_ = std::thread(wait_for_signals);
}

SignalGuard::~SignalGuard() {
  g_closing.store(true);
  waiter_.join();
  pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);  // a pending one reaches record
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

int SignalGuard::requested() { return g_signal.load(std::memory_order_relaxed); }
void SignalGuard::clear() { g_signal.store(0); }

Interrupted::Interrupted(int signal, long long step, const std::string& checkpoint)
    : std::runtime_error("interrupted by " + std::string(signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "a signal") +
                         " after step " + std::to_string(step) +
                         (checkpoint.empty() ? std::string("; no checkpoint written (checkpoint.on_signal is false)")
                                             : "; checkpoint " + checkpoint + " (continue with --resume auto)")),
      signal_(signal) {}

}  // namespace lockstep
