// A CPU replica's own state: its gradient arena (the parameters' gradients and
// the step's extras, src/step.h), its network (the activation workspaces), the
// reducer thread of strategy.overlap and the micro-batch buffers. Its weights and
// optimizer slots (ReplicaStep::params and ::optimizer) are shared: the same
// objects for every CPU replica of the process, over memory the node's processes
// share when the strategy keeps one arena for the node (with
// strategy.share_weights false, its own); MirroredStrategy runs the step of
// src/step.h over all of it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "src/config.h"
#include "src/micro_batch.h"
#include "src/network.h"
#include "src/replica.h"

namespace lockstep {

class BucketWorker;
class MirroredStrategy;

class CpuReplica final : public ReplicaStep {
 public:
  // r: the replica this state serves (its communicator carries batch norm's
  // all-reduces and the reducer thread's buckets).
  CpuReplica(MirroredStrategy& strategy, Replica& r, const Model& model, const Config& config,
             int64_t max_rows);
  ~CpuReplica() override;
  StepResult train_step(Replica& r, const ReplicaBatch& batch, float lr, uint64_t step_seed,
                        bool stop_requested) override;
  SliceStats evaluate(Replica& r, const ReplicaBatch& batch) override;

  // num_params + kExtras, from the replica's communicator (Communicator::allocate:
  // memory the other processes of the node reach directly, with shm).
  CommBuffer grads;
  // The other replicas' gradient arenas, where this replica stores the sum of
  // its slice (MirroredStrategy::sum_in_update); empty otherwise.
  std::vector<float*> sum_copies;
  CpuNetwork net;
  std::unique_ptr<BucketWorker> worker;  // strategy.overlap: reduces buckets during backward
  std::unique_ptr<MicroBuffers> micro;   // micro-batched steps (train.micro_batch_size)

 private:
  MirroredStrategy& strategy_;
};

}  // namespace lockstep
