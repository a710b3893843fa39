#include "server/resp_clients.h"

#include <fmt/format.h>

#include "maroon/assert.h"

namespace maroon::server {

std::string format_client_info(const RespClientInfo& c, RespClock::time_point now) {
  using std::chrono::duration_cast;
  using std::chrono::seconds;
  const auto age = duration_cast<seconds>(now - c.created).count();
  const auto idle = duration_cast<seconds>(now - c.last_command_at).count();
  const char* flags = c.multi >= 0 ? "x" : "N";
  return fmt::format(
      "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db=0 sub=0 psub=0 ssub=0 "
      "multi={} watch={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 "
      "omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
      c.id, c.addr, c.laddr, c.name, age, idle, flags, c.multi, c.watched, c.last_command, c.user, c.resp,
      c.lib_name, c.lib_ver);
}

bool valid_client_name(std::string_view name) {
  if (name.size() > client_name_bytes_max) return false;
  for (char ch : name) {
    if (ch < '!' || ch > '~') return false;
  }
  return true;
}

void RespClientRegistry::add(Member& m) {
  const auto [it, inserted] = by_id_.emplace(m.client_info().id, &m);
  MAROON_ASSERT(inserted);
}

void RespClientRegistry::remove(Member& m) {
  auto it = by_id_.find(m.client_info().id);
  if (it != by_id_.end() && it->second == &m) by_id_.erase(it);
}

RespClientRegistry::Member* RespClientRegistry::find(uint64_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::vector<RespClientRegistry::Member*> RespClientRegistry::members() const {
  std::vector<Member*> out;
  out.reserve(by_id_.size());
  for (const auto& [id, m] : by_id_) out.push_back(m);
  return out;
}

}  // namespace maroon::server
