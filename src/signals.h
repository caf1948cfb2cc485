// SIGINT/SIGTERM as a request to stop at the next step boundary. The handler
// only records the signal; the trainer ORs the request across all replicas
// (in the gradient all-reduce), so every process stops after the same step.
#pragma once

#include <stdexcept>
#include <string>

namespace lockstep {

class SignalGuard {
 public:
  SignalGuard();   // installs the handlers
  ~SignalGuard();  // restores the previous ones
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;
  // The first signal received (0 if none).
  static int requested();
  static void clear();
};

// Thrown by every replica when training stopped on a signal.
class Interrupted : public std::runtime_error {
 public:
  Interrupted(int signal, long long step, std::string checkpoint);
  int signal() const { return signal_; }
  const std::string& checkpoint() const { return checkpoint_; }

 private:
  int signal_;
  std::string checkpoint_;
};

}  // namespace lockstep
