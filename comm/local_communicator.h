// The local backend: n replicas as n threads of one process, sharing memory. A
// LocalGroup owns the members; member(i) is the Communicator for replica i and must
// be called only from that replica's thread. Collectives work directly on the
// members' buffers: no staging copies, every member reduces its own slice.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/options.h"

namespace lockstep {

class LocalFabric;

class LocalGroup {
 public:
  explicit LocalGroup(int size, CommOptions options = {});
  ~LocalGroup();
  LocalGroup(const LocalGroup&) = delete;
  LocalGroup& operator=(const LocalGroup&) = delete;

  int size() const;
  // Member i's communicator: rank() == i, size() == size(), name() == "local".
  Communicator& member(int i);
  // Ends the group: every member waiting now or later throws CommError with
  // `reason`. For a replica thread that failed and will never call again.
  void fail(const std::string& reason);

 private:
  std::unique_ptr<LocalFabric> fabric_;
  std::vector<std::unique_ptr<Communicator>> members_;
};

}  // namespace lockstep
