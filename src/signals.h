// SIGINT/SIGTERM as a request to stop at the next step boundary. Nothing stops
// where the signal lands: the request is recorded, and the trainer ORs it across
// all replicas (in the gradient all-reduce), so every process stops after the
// same step; the server drains and stops.
//
// Why the signals are blocked in the compute threads: oneDNN's JIT GEMM kernels
// (the CPU sgemm, AVX2 and AVX-512) point the stack pointer into a heap
// workspace while they run. A signal delivered to such a thread writes its frame
// there and corrupts the heap ("corrupted size vs. prev_size" a few GEMMs later).
// So while a guard lives, the thread that made it, and every thread it starts
// (replicas, server workers), block SIGINT, SIGTERM and every other asynchronous
// signal a library may catch (OpenMPI's launcher sends SIGCONT before SIGTERM,
// and OpenMPI catches it). One waiter thread takes them with sigtimedwait: it
// records SIGINT/SIGTERM, and raises any other one again on itself, where its
// handler or default action runs as before. A handler that only sets a flag
// still catches SIGINT/SIGTERM in threads that started before the guard (MPI's
// and the input pipeline's), which run no GEMM.
#pragma once

#include <csignal>
#include <stdexcept>
#include <string>
#include <thread>

namespace lockstep {

class SignalGuard {
 public:
  // Installs the handlers, blocks the signals in the calling thread (and so in
  // the threads it starts from now on) and starts the waiter. Make it before the
  // threads that compute.
  SignalGuard();
  // Stops the waiter, restores the calling thread's mask (a signal that arrived
  // in between is still recorded: here, or by a thread that started before the
  // guard, whose handler may run a little after the guard is gone), then the
  // previous handlers.
  ~SignalGuard();
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;
  // The first signal received (0 if none).
  static int requested();
  static void clear();

 private:
  sigset_t previous_mask_;
  std::thread waiter_;
};

// Thrown by every replica when training stopped on a signal.
class Interrupted : public std::runtime_error {
 public:
  Interrupted(int signal, long long step, const std::string& checkpoint);
  int signal() const { return signal_; }

 private:
  int signal_;
};

}  // namespace lockstep
