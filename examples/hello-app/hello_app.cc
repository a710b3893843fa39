#include "hello_app.h"

#include <cstring>

namespace hello {

namespace {

// Splits "verb NAME"; false if the op has no single space after a verb.
bool split(std::string_view op, std::string_view& verb, std::string_view& name) {
  const size_t space = op.find(' ');
  if (space == std::string_view::npos) return false;
  verb = op.substr(0, space);
  name = op.substr(space + 1);
  return true;
}

std::string check_name(std::string_view name) {
  if (name.empty()) return "error: an empty name";
  if (name.size() > HelloApp::kNameBytesMax) {
    return "error: a name of more than " + std::to_string(HelloApp::kNameBytesMax) + " bytes";
  }
  return {};
}

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; i++) out.push_back(static_cast<char>(v >> (8 * i)));
}

bool get_u64(std::string_view& in, uint64_t& v) {
  if (in.size() < 8) return false;
  v = 0;
  for (int i = 0; i < 8; i++) v |= uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
  in.remove_prefix(8);
  return true;
}

}  // namespace

uint64_t HelloApp::entry_hash(std::string_view name, uint64_t count) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a, 64 bits
  auto mix = [&h](unsigned char c) {
    h ^= c;
    h *= 1099511628211ull;
  };
  for (char c : name) mix(static_cast<unsigned char>(c));
  mix(0);
  for (int i = 0; i < 8; i++) mix(static_cast<unsigned char>(count >> (8 * i)));
  return h;
}

std::string HelloApp::apply(const maroon::TxContext& /*ctx*/, std::string_view op) {
  std::string_view verb, name;
  if (!split(op, verb, name)) return "error: expected \"greet NAME\" or \"count NAME\"";
  if (verb == "count") return read(op);
  if (verb != "greet") return "error: unknown op \"" + std::string(verb.substr(0, 32)) + "\"";
  if (std::string why = check_name(name); !why.empty()) return why;
  auto it = counts_.find(name);
  if (it == counts_.end()) {
    if (counts_.size() >= kNamesMax) return "error: too many names";
    it = counts_.emplace(std::string(name), 0).first;
  } else {
    hash_ ^= entry_hash(name, it->second);
  }
  it->second++;
  hash_ ^= entry_hash(name, it->second);
  return "hello, " + std::string(name) + " (greeting #" + std::to_string(it->second) + ")";
}

std::string HelloApp::read(std::string_view op) const {
  std::string_view verb, name;
  if (!split(op, verb, name) || verb != "count") return "error: only \"count NAME\" reads";
  if (std::string why = check_name(name); !why.empty()) return why;
  auto it = counts_.find(name);
  return std::to_string(it == counts_.end() ? 0 : it->second);
}

// The state is small: copied whole when the snapshot begins. An app with a
// large state produces it in pieces instead, without copying (see
// include/maroon/state_machine.h).
std::unique_ptr<maroon::AppSnapshotCursor> HelloApp::begin_snapshot() {
  std::string bytes;
  put_u64(bytes, counts_.size());
  for (const auto& [name, count] : counts_) {
    put_u64(bytes, name.size());
    bytes += name;
    put_u64(bytes, count);
  }
  return std::make_unique<maroon::CopiedSnapshotCursor>(std::move(bytes));
}

maroon::Status HelloApp::restore(maroon::SnapshotPieces& pieces) {
  constexpr size_t kStateBytesMax = kNamesMax * (kNameBytesMax + 16) + 8;
  maroon::Result<std::string> all = maroon::read_all_pieces(pieces, kStateBytesMax);
  if (!all) return all.status();
  std::string_view in = *all;
  counts_.clear();
  hash_ = 0;
  uint64_t n = 0;
  if (!in.empty() && !get_u64(in, n)) return maroon::corruption("hello: short state");
  for (uint64_t i = 0; i < n; i++) {
    uint64_t size = 0, count = 0;
    if (!get_u64(in, size) || size == 0 || size > kNameBytesMax || in.size() < size) {
      return maroon::corruption("hello: malformed name");
    }
    std::string name(in.substr(0, size));
    in.remove_prefix(size);
    if (!get_u64(in, count) || count == 0) return maroon::corruption("hello: malformed count");
    hash_ ^= entry_hash(name, count);
    if (!counts_.emplace(std::move(name), count).second) {
      return maroon::corruption("hello: a name twice");
    }
  }
  if (!in.empty()) return maroon::corruption("hello: trailing bytes");
  return maroon::Status::ok();
}

}  // namespace hello
