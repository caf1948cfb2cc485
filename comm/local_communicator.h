// The local backend: n replicas as n threads of one process, sharing memory. A
// LocalGroup (a ReplicaGroup) owns the members; member(i) is replica i's
// communicator (rank i of n, name "local"). Collectives work directly on the
// members' buffers: no staging copies, every member reduces its own slice.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/options.h"
#include "comm/replica_group.h"

namespace lockstep {

class LocalFabric;

class LocalGroup final : public ReplicaGroup {
 public:
  explicit LocalGroup(int size, CommOptions options = {});
  ~LocalGroup() override;
  LocalGroup(const LocalGroup&) = delete;
  LocalGroup& operator=(const LocalGroup&) = delete;

  int local_size() const override;
  void fail(const std::string& reason) override;

 private:
  Communicator& member_at(int i) override { return *members_[size_t(i)]; }
  std::unique_ptr<LocalFabric> fabric_;
  std::vector<std::unique_ptr<Communicator>> members_;
};

}  // namespace lockstep
