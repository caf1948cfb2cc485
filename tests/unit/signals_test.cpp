// SignalGuard: SIGINT/SIGTERM are recorded as a stop request and never reach a
// thread that computes. The storm test is the reason: oneDNN's JIT GEMM runs with
// the stack pointer in a heap workspace, and a signal frame written there
// corrupted the heap of runs stopped with SIGTERM.
#include <gtest/gtest.h>

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>
#include <vector>

#include "kernels/cpu/ops.h"
#include "src/signals.h"

namespace lockstep {
namespace {

bool blocks(int sig) {
  sigset_t now;
  pthread_sigmask(SIG_BLOCK, nullptr, &now);
  return sigismember(&now, sig) == 1;
}

// A caught SIGCONT (OpenMPI catches it; its launcher sends it before SIGTERM):
// counts the calls and whether one ran on the thread that computes.
std::atomic<int> g_conts{0};
std::atomic<bool> g_cont_on_compute{false};
pthread_t g_compute;
void on_cont(int) {
  g_conts.fetch_add(1);
  if (pthread_equal(pthread_self(), g_compute)) g_cont_on_compute.store(true);
}

struct CatchCont {
  struct sigaction old;
  CatchCont() {
    struct sigaction sa {};
    sa.sa_handler = on_cont;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCONT, &sa, &old);
    g_compute = pthread_self();
    g_conts = 0;
    g_cont_on_compute = false;
  }
  ~CatchCont() { sigaction(SIGCONT, &old, nullptr); }
};

// Waits up to 2 s for the guard to have recorded a signal.
int recorded_within_2s() {
  for (int i = 0; i < 200 && SignalGuard::requested() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return SignalGuard::requested();
}

TEST(Signals, ThreadsStartedUnderTheGuardBlockThemAndTheMaskIsRestored) {
  ASSERT_FALSE(blocks(SIGTERM));
  {
    SignalGuard guard;
    EXPECT_TRUE(blocks(SIGTERM));
    EXPECT_TRUE(blocks(SIGINT));
    EXPECT_TRUE(blocks(SIGCONT));
    bool term = false, intr = false, cont = false;
    std::thread([&] { term = blocks(SIGTERM), intr = blocks(SIGINT), cont = blocks(SIGCONT); }).join();
    EXPECT_TRUE(term);
    EXPECT_TRUE(intr);
    EXPECT_TRUE(cont);
  }
  EXPECT_FALSE(blocks(SIGTERM));
  EXPECT_FALSE(blocks(SIGINT));
  EXPECT_FALSE(blocks(SIGCONT));
}

TEST(Signals, ASignalToTheProcessIsRecordedTheFirstOneKept) {
  SignalGuard::clear();
  {
    SignalGuard guard;
    ASSERT_EQ(kill(getpid(), SIGINT), 0);
    EXPECT_EQ(recorded_within_2s(), SIGINT);
    ASSERT_EQ(kill(getpid(), SIGTERM), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(SignalGuard::requested(), SIGINT);  // the first one is the request
  }
  SignalGuard::clear();
  // Sent just before the guard's end: still recorded. Not always by the time the
  // guard is gone: a thread that started before the guard (OpenBLAS's pool, made
  // when the library loads) leaves SIGTERM unblocked, the kernel may hand the
  // signal to it, and on a busy machine its handler runs some milliseconds later.
  {
    SignalGuard guard;
    ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  }
  EXPECT_EQ(recorded_within_2s(), SIGTERM);
  SignalGuard::clear();
}

TEST(Signals, AnotherCaughtSignalRunsItsHandlerOnTheWaiterNotHere) {
  CatchCont cont;
  SignalGuard::clear();
  {
    SignalGuard guard;
    ASSERT_EQ(kill(getpid(), SIGCONT), 0);
    for (int i = 0; i < 200 && g_conts.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(g_conts.load(), 1);
    EXPECT_FALSE(g_cont_on_compute.load());
    EXPECT_EQ(SignalGuard::requested(), 0);  // not a stop request
  }
  EXPECT_EQ(g_conts.load(), 1);
}

// Thousands of SIGTERMs and SIGCONTs (caught, as under mpirun) while this thread
// runs GEMMs of the trainer's shapes (the JIT kernels): every product stays
// bitwise the first one, and the heap stays whole (the GEMM's own workspace
// malloc/free aborts on a corrupted one: without the guard it does within 1.5 s).
TEST(Signals, GemmUnderASignalStormStaysExactAndTheHeapWhole) {
  cpu::init_kernels();
  const int64_t m = 40, n = 512, k = 512;  // a dense layer's forward, and its weight gradient
  std::vector<float> a(m * k), b(k * n), fwd(m * n), grad(k * n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(int(i * 7919 % 200) - 100) / 64.0f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = float(int(i * 104729 % 200) - 100) / 64.0f;
  cpu::gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, fwd.data(), n);
  cpu::gemm(true, false, k, n, m, 1.0f, a.data(), k, fwd.data(), n, 0.0f, grad.data(), n);
  CatchCont cont;
  SignalGuard::clear();
  SignalGuard guard;
  // The kernel hands a process-wide signal to the main thread first unless it
  // blocks it: so the main thread computes, as replica 0 does in training.
  std::atomic<bool> done{false};
  int sent = 0;
  std::thread sender([&] {
    while (!done.load()) {
      kill(getpid(), sent % 2 ? SIGCONT : SIGTERM);
      ++sent;
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  int64_t wrong = 0, rounds = 0;
  std::vector<float> c(fwd.size()), g(grad.size());
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  while (std::chrono::steady_clock::now() < end) {
    cpu::gemm(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, c.data(), n);
    cpu::gemm(true, false, k, n, m, 1.0f, a.data(), k, c.data(), n, 0.0f, g.data(), n);
    wrong += c != fwd || g != grad;
    std::vector<float> scratch(size_t(1000 + rounds * 37 % 5000), 1.0f);  // the heap in use between GEMMs
    ++rounds;
  }
  done = true;
  sender.join();
  EXPECT_EQ(wrong, 0) << "of " << rounds << " rounds";
  EXPECT_GT(rounds, 10);
  EXPECT_GT(sent, 1000);
  EXPECT_EQ(SignalGuard::requested(), SIGTERM);
  EXPECT_GT(g_conts.load(), 0);
  EXPECT_FALSE(g_cont_on_compute.load());
  SignalGuard::clear();
}

}  // namespace
}  // namespace lockstep
