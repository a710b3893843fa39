// A service that does nothing, for tests of the replica's log and records
// that do not look at what the ops mean.
#pragma once

#include <string>
#include <string_view>

#include "vr/replica.h"

namespace maroon::vr {

class NullService final : public Service {
 public:
  std::string execute(const Entry&) override { return {}; }
  std::string read(std::string_view) override { return {}; }
  std::string snapshot() override { return {}; }
  Status restore(std::string_view) override { return Status::ok(); }
};

}  // namespace maroon::vr
