// Tests: snapshot pieces kept in memory, handed to StateMachine::restore in
// order, and every piece of a cursor.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "maroon/state_machine.h"

namespace maroon {

class VectorPieces final : public SnapshotPieces {
 public:
  explicit VectorPieces(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {}
  Result<std::optional<std::string_view>> next() override {
    if (at_ == pieces_.size()) return std::optional<std::string_view>();
    return std::optional<std::string_view>(pieces_[at_++]);
  }

 private:
  std::vector<std::string> pieces_;
  size_t at_ = 0;
};

// Every piece `cursor` produces, asking for `hint` bytes each.
inline std::vector<std::string> all_pieces(AppSnapshotCursor& cursor, size_t hint) {
  std::vector<std::string> pieces;
  for (std::string piece; cursor.next(piece, hint); piece.clear()) pieces.push_back(piece);
  return pieces;
}

}  // namespace maroon
