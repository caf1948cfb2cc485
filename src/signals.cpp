// Signal handlers that only set an atomic flag (async-signal-safe).
#include "src/signals.h"

#include <atomic>
#include <csignal>
#include <cstring>

namespace lockstep {
namespace {

std::atomic<int> g_signal{0};
struct sigaction g_old_int, g_old_term;

void on_signal(int sig) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, sig);
}

}  // namespace

SignalGuard::SignalGuard() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

SignalGuard::~SignalGuard() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

int SignalGuard::requested() { return g_signal.load(std::memory_order_relaxed); }
void SignalGuard::clear() { g_signal.store(0); }

Interrupted::Interrupted(int signal, long long step, std::string checkpoint)
    : std::runtime_error("interrupted by " + std::string(signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "a signal") +
                         " after step " + std::to_string(step) +
                         (checkpoint.empty() ? std::string("; no checkpoint written (checkpoint.on_signal is false)")
                                             : "; checkpoint " + checkpoint + " (continue with --resume auto)")),
      signal_(signal),
      checkpoint_(std::move(checkpoint)) {}

}  // namespace lockstep
