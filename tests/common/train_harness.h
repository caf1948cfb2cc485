// A small training loop over the strategy for tests: synthetic classification
// data, a Dense(16, tanh) -> Dense(8, relu) -> Dense(4) model, a few epochs.
// Shared by the in-process and the multi-rank strategy tests.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "data/sources.h"
#include "src/strategy.h"

namespace lockstep::testing {

struct RunResult {
  std::vector<float> params;
  std::vector<std::vector<float>> slots;  // the optimizer's, in its slots() order
  double loss_first = 0, loss_last = 0;
};

struct RunSpec {
  int local_replicas = 1;
  OptimizerKind optimizer = OptimizerKind::kAdam;
  int64_t dataset_size = 250;  // 10 global batches of 24 and a short one of 10
  int epochs = 2;
  float dropout = 0.0f;
  bool overlap = false;
  bool replica_gather = false;  // each replica reads its own rows (data.gather replicas)
  bool deterministic = false;   // train.deterministic
  int64_t micro_batch = 0;      // train.micro_batch_size (0 = auto)
  bool share_weights = true;    // strategy.share_weights
  bool sparse_input = false;    // features below kSparseBelow set to 0 (mostly zeros, as in
                                // images): the first layer skips them (cpu::ZeroIndex)
};

// A copy of an arena (weights, an optimizer slot), to compare with ==.
inline AlignedVector<float> values(const CommBuffer& arena) { return AlignedVector<float>(arena.begin(), arena.end()); }

// Replica i's slice of a global batch of one row per replica: row i, the
// `width` features at x + i * width and targets[i] (a regression target of width 1).
inline ReplicaBatch one_row(int i, int replicas, const float* x, int64_t width, const float* targets) {
  ReplicaBatch b;
  b.rows = 1;
  b.first_row = i;
  b.global_rows = replicas;
  b.targets = &targets[i];
  b.x = x + int64_t(i) * width;
  return b;
}
// The same for rows of 2 features.
inline ReplicaBatch one_row(int i, int replicas, const float (*x)[2], const float* targets) {
  return one_row(i, replicas, x[0], 2, targets);
}

// RunSpec::sparse_input: the synthetic features below this become 0.
constexpr float kSparseBelow = 3.0f;

// src's rows in order with every feature below `below` set to 0.
inline std::shared_ptr<Source> with_small_features_zeroed(const Source& src, float below) {
  const DatasetInfo& info = src.info();
  TensorSet t;
  t.feature_shape = info.feature_shape;
  t.num_classes = info.num_classes;
  std::vector<int64_t> rows(static_cast<size_t>(info.size));
  for (int64_t i = 0; i < info.size; ++i) rows[size_t(i)] = i;
  t.x.resize(static_cast<size_t>(info.size * info.feature_dim));
  t.labels.resize(static_cast<size_t>(info.size));
  src.read(rows.data(), info.size, t.x.data(), t.labels.data(), nullptr);
  for (float& v : t.x) v = v < below ? 0.0f : v;
  return make_tensor_source(std::move(t));
}

inline RunResult train_synthetic(World& world, const RunSpec& spec) {
  SyntheticOptions so;
  so.size = spec.dataset_size;
  so.feature_shape = {12};
  so.num_classes = 4;
  so.seed = 3;
  std::shared_ptr<Source> src = make_synthetic(so);
  if (spec.sparse_input) src = with_small_features_zeroed(*src, kSparseBelow);
  Config cfg;
  cfg.data_path = "synthetic";
  cfg.optimizer = spec.optimizer;
  cfg.momentum = 0.9f;
  cfg.learning_rate = 0.01f;
  cfg.batch_size = 24;
  cfg.local_replicas = spec.local_replicas;
  cfg.bucket_mb = 0.0005;  // ~131 floats: several buckets per step
  cfg.check_every = 5;
  cfg.overlap = spec.overlap;
  cfg.share_weights = spec.share_weights;
  cfg.deterministic = spec.deterministic;
  cfg.micro_batch_size = spec.micro_batch;
  Model model({{16, Activation::kTanh, spec.dropout}, {8, Activation::kRelu, 0.0f}}, 12, 4,
              LossKind::kSoftmaxCrossEntropy);
  MirroredStrategy strategy(model, cfg, world, 24);
  InputOptions in;
  in.global_batch = 24;
  in.num_replicas = strategy.num_replicas_in_sync();
  in.first_replica = strategy.first_replica();
  in.local_replicas = spec.local_replicas;
  in.seed = 11;
  in.replica_gather = spec.replica_gather;
  in.whole_shares = spec.deterministic;
  DistributedInput input(src, in);
  RunResult run;
  std::vector<std::vector<float>> finals(static_cast<size_t>(spec.local_replicas));
  std::vector<std::vector<float>> slots;
  strategy.run([&](Replica& r) {
    strategy.broadcast_initial_weights(r);
    int64_t step = 0;
    for (int e = 0; e < spec.epochs; ++e) {
      while (const ReplicaBatch* b = strategy.fetch(r, input)) {
        const StepResult s = strategy.train_step(r, *b, cfg.learning_rate, uint64_t(step));
        EXPECT_TRUE(s.finite);
        const double mean = s.global.loss_sum / double(s.global.rows);
        if (r.local_index == 0) (step == 0 ? run.loss_first : run.loss_last) = mean;
        ++step;
        if (step % cfg.check_every == 0) strategy.check_in_sync(r);  // across all ranks
      }
    }
    finals[size_t(r.local_index)].assign(r.step->params->begin(), r.step->params->end());
    if (r.local_index == 0) {
      for (auto& [name, slot] : r.step->optimizer->slots()) slots.emplace_back(slot->begin(), slot->end());
    }
  });
  for (size_t i = 1; i < finals.size(); ++i) {
    EXPECT_EQ(0, std::memcmp(finals[0].data(), finals[i].data(), finals[0].size() * 4))
        << "local replica " << i << " differs from local replica 0";
  }
  run.params = finals[0];
  run.slots = slots;
  return run;
}

// A world of one process (no MPI), for reference runs.
struct SingleWorld {
  std::unique_ptr<Communicator> comm = make_single_communicator();
  World world{WorldInfo{}, MPI_COMM_NULL, comm.get()};
};

// Tolerance: the replicas' gradients are the same per-example terms summed in a
// different order (per slice, then across replicas), so each step differs by a
// few fp32 ulps (~6e-8 relative); over these 22 steps of SGD or Adam the worst
// weight differs by under 1e-7 * (1 + |w|) (measured: 4.5e-8 SGD, 7.4e-8 Adam),
// so 1e-6 leaves a 10x margin while any real error (a lost or doubled slice is
// ~1e-2) fails.
inline double worst_relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    worst = std::max(worst, std::abs(double(a[i]) - b[i]) / (1.0 + std::abs(double(b[i]))));
  }
  return a.size() == b.size() ? worst : 1e30;
}
constexpr double kReplicaTolerance = 1e-6;

}  // namespace lockstep::testing
