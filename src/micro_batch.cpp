// Micro-batched steps: deterministic mode's exact fixed-point gradient sum and
// plain fp32 gradient accumulation, with the fixed-point helpers they use. The
// order of the argument for exactness is in micro_batch.h and the README.
#include "src/micro_batch.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "kernels/cpu/ops.h"
#include "src/cpu_replica.h"
#include "src/step.h"
#include "src/step_times.h"
#include "src/strategy.h"

namespace lockstep {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kMinAutoRows = 16;  // the smallest micro-batch auto picks

// The replica counts a global batch of `micro_batches` pieces splits over.
std::string divisors(int64_t micro_batches) {
  std::string out;
  for (int64_t d = 1; d <= micro_batches; ++d) {
    if (micro_batches % d == 0) out += (out.empty() ? "" : ", ") + std::to_string(d);
  }
  return out;
}

// Micro-batch t (M rows) of a replica's slice: a view into the slice's rows.
ReplicaBatch micro_slice(const ReplicaBatch& b, int64_t t, int64_t m, int64_t features,
                         int64_t targets) {
  ReplicaBatch s = b;
  const int64_t first = t * m;
  s.rows = std::min(m, b.rows - first);
  s.first_row = b.first_row + first;
  s.x = b.x + first * features;
  s.labels = b.labels ? b.labels + first : nullptr;
  s.targets = b.targets ? b.targets + first * targets : nullptr;
  return s;
}

}  // namespace

int64_t resolve_micro_batch(const Config& c, int64_t replicas) {
  if (c.micro_batch_size > 0) return c.micro_batch_size;
  if (!c.deterministic) {
    const int64_t r = std::max<int64_t>(1, replicas);
    return std::max<int64_t>(1, (c.batch_size + r - 1) / r);
  }
  // Each micro-batch writes a whole gradient, so pieces below 16 rows cost more
  // than they give (bench/deterministic_cost.sh); a fixed count, never the
  // replicas', keeps the result the same for every replica count.
  for (const int64_t k : {8, 4, 2}) {
    if (c.batch_size % k == 0 && c.batch_size / k >= kMinAutoRows) return c.batch_size / k;
  }
  return c.batch_size;
}

void check_micro_batches(const Config& c, int64_t replicas) {
  if (!c.deterministic) return;
  const int64_t m = resolve_micro_batch(c, replicas);
  const int64_t k = c.batch_size / m;
  if (k % replicas == 0) return;
  // Blame --set when any of the values involved came from it.
  std::string origin = c.where("train.micro_batch_size");
  for (const char* key : {"train.batch_size", "train.deterministic", "strategy.local_replicas"}) {
    if (c.where(key) == "--set") origin = "--set";
  }
  throw ConfigError(origin + ": key 'train.micro_batch_size': with train.deterministic "
                    "every replica's share of the global batch must be whole micro-batches, but the " +
                    std::to_string(k) + " micro-batches of " + std::to_string(m) + " rows (train.batch_size " +
                    std::to_string(c.batch_size) + ") do not split over " + std::to_string(replicas) +
                    " replicas in sync; run " + divisors(k) +
                    " replicas, or set train.micro_batch_size to a divisor of the share");
}

std::string micro_batch_plan(const Config& c, int64_t replicas) {
  const int64_t m = resolve_micro_batch(c, replicas);
  const int64_t share = c.batch_size / std::max<int64_t>(1, replicas);
  const int64_t k = c.batch_size / m;
  if (c.deterministic) {
    return "deterministic: the global batch of " + std::to_string(c.batch_size) + " is " + std::to_string(k) +
           " micro-batches of " + std::to_string(m) + " rows, " + std::to_string(k / replicas) +
           " per replica, summed exactly in 64-bit fixed point: bitwise the same weights with " +
           divisors(k) + " replicas in sync";
  }
  if (m >= share) return "";
  return "gradient accumulation: each replica's " + std::to_string(share) + " rows run as micro-batches of " +
         std::to_string(m) + ", their gradients summed in fp32 before the all-reduce";
}

double max_abs(const float* x, int64_t n) {
  const float most = cpu::max_abs(x, n);  // NaN where an element is NaN
  return std::isfinite(most) ? double(most) : kInf;  // a max all-reduce would drop a NaN
}

int fixed_point_exponent(double max_abs, int64_t terms) {
  int headroom = 0;  // ceil(log2 terms)
  while ((int64_t(1) << headroom) < terms) ++headroom;
  if (max_abs == 0.0) return 0;  // every value is 0: any scale is exact
  int e = 0;
  std::frexp(max_abs, &e);  // max_abs = f * 2^e with f in [0.5, 1): max_abs < 2^e
  return 62 - headroom - e;
}

// x * 2^F, rounded to the nearest integer (ties to even), in the cheapest exact
// way: in float when 2^F is a normal float (x * 2^F then only rounds where it
// falls below float's normal range, the same way on every replica), else in
// double. |x * 2^F| < 2^62 by the choice of F, so the result fits.
void accumulate_fixed(const float* x, int64_t n, int exponent, int64_t* acc) {
  if (exponent >= -126 && exponent <= 127) {
    const float scale = std::ldexp(1.0f, exponent);
    for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<int64_t>(std::nearbyint(x[i] * scale));
    return;
  }
  const double scale = std::ldexp(1.0, exponent);
  for (int64_t i = 0; i < n; ++i) acc[i] += static_cast<int64_t>(std::nearbyint(double(x[i]) * scale));
}

// One rounding, int64 to float, then an exact power-of-two scale (in double
// when 2^-F is not a normal float).
void fixed_to_float(const int64_t* acc, int64_t n, int exponent, float* out) {
  if (exponent >= -127 && exponent <= 126) {
    const float scale = std::ldexp(1.0f, -exponent);
    for (int64_t i = 0; i < n; ++i) out[i] = float(acc[i]) * scale;
    return;
  }
  const double scale = std::ldexp(1.0, -exponent);
  for (int64_t i = 0; i < n; ++i) out[i] = float(double(acc[i]) * scale);
}

// ---- the step ----

StepResult MirroredStrategy::micro_step(Replica& r, const ReplicaBatch& batch, float lr,
                                        uint64_t step_seed, bool stop_requested) {
  const auto t0 = Clock::now();
  CpuReplica& c = cpu(r);
  if (!c.micro) c.micro = std::make_unique<MicroBuffers>();
  const bool exact = config_.deterministic;
  const SliceStats local = micro_backward(r, batch, step_seed, exact);
  StepResult out;
  if (exact) {
    exact_sum(r, batch, local, stop_requested, out);
  } else {
    float_sum(r, local, stop_requested, out);
  }
  if (out.finite) update(r, lr);  // apply_exact in deterministic mode, sharded like any update
  r.step_seconds += seconds_since(t0);
  return out;
}

// Forward and backward of every micro-batch of the slice, one at a time. With
// keep_each each gradient stays in its own buffer (the exact sum needs them all
// once the scale is known); otherwise they are added up in the gradient arena in order.
SliceStats MirroredStrategy::micro_backward(Replica& r, const ReplicaBatch& b, uint64_t step_seed,
                                            bool keep_each) {
  CpuReplica& c = cpu(r);
  MicroBuffers& mb = *c.micro;
  const int64_t n = model_.num_params();
  const int64_t m = micro_rows_;
  const int64_t count = (b.rows + m - 1) / m;
  if (keep_each && b.rows > 0 && b.first_row % m != 0) {
    throw std::logic_error("deterministic step: slice starts at row " + std::to_string(b.first_row) +
                           ", not at a micro-batch boundary of " + std::to_string(m) + " rows");
  }
  const float scale = b.global_rows > 0 ? 1.0f / float(b.global_rows) : 0.0f;
  const int64_t targets = model_.loss() == LossKind::kMeanSquaredError ? model_.output_dim() : 0;
  const std::function<void(int64_t)> no_buckets = [](int64_t) {};
  const size_t buffers = keep_each ? size_t(count) : size_t(count > 1);
  if (mb.grads.size() < buffers) mb.grads.resize(buffers);
  mb.losses.assign(size_t(count), 0.0);
  mb.tensor_max.assign(segments_.size(), 0.0);
  SliceStats total;
  if (!keep_each) std::fill(c.grads.begin(), c.grads.begin() + n, 0.0f);
  for (int64_t t = 0; t < count; ++t) {
    const ReplicaBatch s = micro_slice(b, t, m, model_.input_dim(), targets);
    float* g = c.grads.data();
    if (keep_each || t > 0) {
      std::vector<float>& buf = mb.grads[keep_each ? size_t(t) : 0];
      buf.resize(size_t(n));
      g = buf.data();
    }
    const SliceStats st = c.net.train(r.step->params->data(), g, s, scale, step_seed, no_buckets);
    if (keep_each) {  // each tensor's largest |gradient|, while it is still in cache
      for (size_t k = 0; k < segments_.size(); ++k) {
        const ArenaSegment& seg = segments_[k];
        mb.tensor_max[k] = std::max(mb.tensor_max[k], max_abs(g + seg.begin, seg.end - seg.begin));
      }
    }
    if (!keep_each && t > 0) {
      float* sum = c.grads.data();
      for (int64_t i = 0; i < n; ++i) sum[i] += g[i];
    }
    mb.losses[size_t(t)] = st.loss_sum;
    total.loss_sum += st.loss_sum;
    total.correct += st.correct;
    total.rows += st.rows;
  }
  return total;
}

namespace {

// The vector the max all-reduce agrees on: [tensor maxima | loss of micro-batch
// 0..K-1 | stop], with -inf in the loss slots of other replicas' micro-batches.
void fill_maxima(MicroBuffers& mb, int64_t total_micro, int64_t first_micro, bool stop_requested) {
  const size_t nseg = mb.tensor_max.size();
  mb.maxima.assign(nseg + size_t(total_micro) + 1, -kInf);
  std::copy(mb.tensor_max.begin(), mb.tensor_max.end(), mb.maxima.begin());
  for (size_t t = 0; t < mb.losses.size(); ++t) {
    const double loss = mb.losses[t];
    mb.maxima[nseg + size_t(first_micro) + t] = std::isnan(loss) ? kInf : loss;
  }
  mb.maxima[nseg + size_t(total_micro)] = stop_requested ? 1.0 : 0.0;
}

// mb.fixed[0, n) = this replica's micro-batch gradients in fixed point, tensor
// by tensor at the agreed scale; zeros when there are none or the step is not
// finite. Block by block, every micro-batch's piece goes into the block's sums
// while they sit in L1: the int64 arena is written once, not once per micro-batch.
void quantize(MicroBuffers& mb, const std::vector<ArenaSegment>& segments, int64_t n,
              int64_t total_micro, bool finite) {
  const size_t count = mb.losses.size();
  mb.fixed.resize(size_t(n) + 2);
  mb.exponents.assign(segments.size(), 0);
  if (!finite || count == 0) {
    std::fill(mb.fixed.begin(), mb.fixed.end(), 0);
    if (!finite) return;
  }
  for (size_t s = 0; s < segments.size(); ++s) {
    mb.exponents[s] = fixed_point_exponent(mb.maxima[s], total_micro);
  }
  if (count == 0) return;
  constexpr int64_t kBlock = 2048;
  for (size_t s = 0; s < segments.size(); ++s) {
    for (int64_t at = segments[s].begin; at < segments[s].end; at += kBlock) {
      const int64_t len = std::min(kBlock, segments[s].end - at);
      std::fill_n(mb.fixed.data() + at, len, 0);
      for (size_t t = 0; t < count; ++t) {
        accumulate_fixed(mb.grads[t].data() + at, len, mb.exponents[s], mb.fixed.data() + at);
      }
    }
  }
}

}  // namespace

// The exact sum. One max all-reduce agrees on each tensor's largest |gradient|
// (hence its fixed-point scale), on every micro-batch's loss (each in its own
// slot, so the max is a gather) and on the stop flag; one int64 all-reduce sums
// the fixed-point gradients and the counts. Neither result depends on the
// layout: a max and an integer sum come out the same in any order.
void MirroredStrategy::exact_sum(Replica& r, const ReplicaBatch& b, const SliceStats& local,
                                 bool stop_requested, StepResult& out) {
  CpuReplica& c = cpu(r);
  MicroBuffers& mb = *c.micro;
  const int64_t n = model_.num_params();
  const int64_t total_micro = (b.global_rows + micro_rows_ - 1) / micro_rows_;
  const size_t nseg = segments_.size();
  fill_maxima(mb, total_micro, b.first_row / micro_rows_, stop_requested);
  auto tc = Clock::now();
  r.comm->allreduce(mb.maxima.data(), mb.maxima.size(), ReduceOp::kMax);
  r.comm_seconds += seconds_since(tc);

  bool finite_grads = true;
  for (size_t s = 0; s < nseg; ++s) finite_grads = finite_grads && std::isfinite(mb.maxima[s]);
  quantize(mb, segments_, n, total_micro, finite_grads);
  mb.fixed[size_t(n)] = local.correct;  // the counts ride along, exact as integers
  mb.fixed[size_t(n) + 1] = local.rows;
  tc = Clock::now();
  const int64_t chunk = std::max<int64_t>(1, bucket_elems_ / 2);  // int64: twice a float's bytes
  for (int64_t begin = 0; begin < n + 2; begin += chunk) {
    r.comm->allreduce(mb.fixed.data() + begin, size_t(std::min(chunk, n + 2 - begin)));
  }
  r.comm_seconds += seconds_since(tc);

  double loss = 0.0;  // in micro-batch order
  for (int64_t j = 0; j < total_micro; ++j) loss += mb.maxima[nseg + size_t(j)];
  out.global.loss_sum = loss;
  out.global.correct = mb.fixed[size_t(n)];
  out.global.rows = mb.fixed[size_t(n) + 1];
  out.stop = mb.maxima[nseg + size_t(total_micro)] > 0.0;
  out.finite_loss = std::isfinite(loss);
  // A sum of finite values can pass kGradientLimit (src/step.h), or overflow
  // fp32 on the way back, but only when some tensor's largest |gradient| times
  // the micro-batches comes near the limit: then convert it all now and look.
  // Otherwise apply_exact converts.
  bool may_overflow = false;
  for (size_t s = 0; s < nseg; ++s) {
    may_overflow = may_overflow || mb.maxima[s] * double(total_micro) >= 0.5 * double(kGradientLimit);
  }
  mb.converted = finite_grads && may_overflow;
  if (mb.converted) {
    for (size_t s = 0; s < nseg; ++s) {
      const ArenaSegment& seg = segments_[s];
      fixed_to_float(mb.fixed.data() + seg.begin, seg.end - seg.begin, mb.exponents[s],
                     c.grads.data() + seg.begin);
    }
  }
  out.finite = out.finite_loss && finite_grads &&
               (!mb.converted || cpu::max_abs(c.grads.data(), n) <= kGradientLimit);
}

// The update from the exact sum, block by block: each block of the int64 sums is
// turned into fp32 gradients and applied while it is still in L1 (one pass over
// the arena instead of a conversion pass and an update pass). Elementwise, so
// the blocks change nothing but where the work happens; the blocks are the same
// for every replica count.
void MirroredStrategy::apply_exact(Replica& r, float lr, int64_t begin, int64_t end) {
  CpuReplica& c = cpu(r);
  MicroBuffers& mb = *c.micro;
  if (mb.converted) {
    r.step->optimizer->apply(r.step->params->data(), c.grads.data(), begin, end, lr, r.updates);
    return;
  }
  constexpr int64_t kBlock = 2048;
  for (size_t s = 0; s < segments_.size(); ++s) {
    const int64_t seg_end = std::min(segments_[s].end, end);
    for (int64_t at = std::max(segments_[s].begin, begin); at < seg_end; at += kBlock) {
      const int64_t stop = std::min(at + kBlock, seg_end);
      fixed_to_float(mb.fixed.data() + at, stop - at, mb.exponents[s], c.grads.data() + at);
      r.step->optimizer->apply(r.step->params->data(), c.grads.data(), at, stop, lr, r.updates);
    }
  }
}

// Gradient accumulation without deterministic mode: the slice's micro-batch
// gradients were summed in the gradient arena; now the usual bucketed fp32 all-reduce,
// with the step's metrics and stop flag in the extras.
void MirroredStrategy::float_sum(Replica& r, const SliceStats& local, bool stop_requested,
                                 StepResult& out) {
  const int64_t n = model_.num_params();
  CpuReplica& c = cpu(r);
  write_extras(c.grads.data() + n, local, stop_requested, false);  // the sum is checked below
  const auto tc = Clock::now();  // backward is over: nothing left to overlap with
  for (int64_t begin = 0; begin < n + kExtras; begin += bucket_elems_) {
    r.comm->allreduce(c.grads.data() + begin, size_t(std::min(bucket_elems_, n + kExtras - begin)));
  }
  r.comm_seconds += seconds_since(tc);
  out = read_extras(c.grads.data() + n);
  out.finite = out.finite && grads_finite(r);
}

}  // namespace lockstep
