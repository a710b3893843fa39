// The RESP server's table of its own connections, for CLIENT LIST, CLIENT
// INFO and CLIENT KILL (docs/resp.md), and the Redis rules for client names.
//
// The table is bounded by the listener's connections_max: a connection
// registers when it starts and leaves when it closes. Everything runs on the
// event-loop thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace maroon::server {

using RespClock = std::chrono::steady_clock;

// What CLIENT LIST and CLIENT INFO show of one connection.
struct RespClientInfo {
  uint64_t id = 0;
  std::string addr;   // the client's "ip:port"
  std::string laddr;  // our "ip:port"
  std::string name;   // CLIENT SETNAME / HELLO SETNAME; empty = none
  std::string user = "default";  // who it logged in as (AUTH, HELLO AUTH)
  std::string lib_name;
  std::string lib_ver;
  RespClock::time_point created{};
  RespClock::time_point last_command_at{};
  std::string last_command = "NULL";  // lower case, as Redis shows cmd=
  int resp = 2;
  int64_t multi = -1;  // commands queued while in MULTI, else -1
  size_t watched = 0;  // keys watched
};

// One CLIENT LIST line, without the trailing "\n", in Redis 7's field order
// (fields maroon does not track, such as buffer sizes, show as 0).
std::string format_client_info(const RespClientInfo& info, RespClock::time_point now);

// Names and library fields (CLIENT SETNAME, SETINFO, HELLO SETNAME) are at
// most this long: they are kept per connection and listed by CLIENT LIST.
inline constexpr size_t client_name_bytes_max = 256;

// Redis's rule for CLIENT SETNAME and CLIENT SETINFO values: printable ASCII
// without spaces ('!' to '~'); the empty string is allowed (no name).
bool valid_client_name(std::string_view name);

class RespClientRegistry {
 public:
  class Member {
   public:
    virtual const RespClientInfo& client_info() const = 0;
    // Closes the connection at once; replies it still owes are dropped.
    virtual void kill() = 0;

   protected:
    ~Member() = default;
  };

  void add(Member& m);
  void remove(Member& m);
  Member* find(uint64_t id) const;
  // Every member, in id (connection) order.
  std::vector<Member*> members() const;
  size_t size() const { return by_id_.size(); }

 private:
  std::map<uint64_t, Member*> by_id_;
};

}  // namespace maroon::server
