// A test harness for scenario tests of the VR replica (header-only, used only
// by tests). It plays the driver for N replicas and gives the test explicit
// control over everything the driver would otherwise decide:
//
//   - the network: messages sit in flight until the test delivers them (all,
//     or those matching a predicate), drops them, or blocks them with a
//     partition or a filter;
//   - the disks: each replica's records are appended to an in-memory disk and
//     become durable only when synced (automatically unless the test holds the
//     sync); send_after_persist messages are held until then, as the real
//     driver does; a crash loses the unsynced tail, a restart replays what is
//     durable;
//   - time: ticks go to the replicas the test names;
//   - clients: requests go to the replica the test names, and every reply is
//     kept (acked() lists what clients were told is committed).
//
// Every step appends a line to a trace, in the spirit of etcd raft's
// interaction tests, so a short scenario can be compared against its expected
// text:
//
//   client 1 -> r1 request 1 "a"
//   r1 -> r2 Prepare v0 op 1 commit 0
//   r2 -> r1 PrepareOk v0 op 1
//   r1 commit 1
//   r1 -> client 1 reply 1 ok "a@1"
//
// After every step the harness checks the invariants of every live replica
// (Replica::check_invariants), and across replicas: no two replicas ever
// commit or execute different entries at the same op, commit numbers do not
// move backwards, a PrepareOk never claims an op that is not on the sender's
// disk, a DoViewChange leaves only once its view is durable, the durable
// view never goes backwards, and (while all
// clocks tick together) no primary holds a read lease while another replica
// is primary of a later view. A violation is a GoogleTest failure; a failed
// test prints the end of its cluster's trace and the state of every replica.
//
// Debugging: VR_TRACE=1 prints the trace of passing tests too, VR_LOUD=1
// also traces the quiet phases (run, run_until), VR_TRACE_LINES=n prints
// more of a long trace, VR_TRACE_STREAM=1 prints every line as it happens
// (for a replica assertion, which stops the process before the end).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/codec.h"
#include "common/hash.h"
#include "host/held_messages.h"
#include "vr/log_matching.h"
#include "vr/replica.h"

namespace maroon::vr::test {

// ---------------------------------------------------------------------------
// Service

// What every replica of a cluster executed, by op: two replicas executing
// different entries at the same op is the safety violation VR exists to
// prevent, so the harness records the first execution of each op and reports
// any later one that differs.
struct ExecutionHistory {
  std::map<uint64_t, std::string> by_op;
  std::vector<std::string> violations;
};

// The replicated service: an append-only list of executed payloads. execute()
// returns "payload@op", so a client reply names the op its request landed at.
class ListService final : public Service {
 public:
  ListService(uint32_t replica, ExecutionHistory* history) : replica_(replica), history_(history) {}

  std::string execute(const Entry& e) override {
    executed_.push_back(Executed{e.op, e.payload});
    auto [it, fresh] = history_->by_op.try_emplace(e.op.value(), e.payload);
    if (!fresh && it->second != e.payload) {
      history_->violations.push_back("r" + std::to_string(replica_) + " executed \"" + e.payload +
                                     "\" at op " + std::to_string(e.op.value()) +
                                     " where another replica executed \"" + it->second + "\"");
    }
    return e.payload + "@" + std::to_string(e.op.value());
  }
  std::string read(std::string_view payload) override {
    return std::string(payload) + "@read after " + std::to_string(executed_.size());
  }
  void on_reconfigure(ConfigEpoch epoch, const std::vector<ReplicaId>& members,
                      const std::vector<ReplicaId>& old_members, std::string_view annex,
                      OpNumber op) override {
    reconfigurations_.push_back(Reconfigured{epoch, members, old_members, std::string(annex), op});
  }
  // What on_reconfigure saw (not kept in the snapshot).
  struct Reconfigured {
    ConfigEpoch epoch;
    std::vector<ReplicaId> members;
    std::vector<ReplicaId> old_members;
    std::string annex;
    OpNumber op;
  };
  const std::vector<Reconfigured>& reconfigurations() const { return reconfigurations_; }
  std::string snapshot() override {
    std::string out;
    ByteWriter w(out);
    w.varint(executed_.size());
    for (const Executed& x : executed_) {
      w.u64(x.op.value());
      w.bytes(x.payload);
    }
    return out;
  }
  Status restore(std::string_view snapshot) override {
    ByteReader r(snapshot);
    uint64_t n = 0;
    if (!r.varint(n)) return corruption("list service: bad snapshot");
    std::vector<Executed> list;
    for (uint64_t i = 0; i < n; i++) {
      uint64_t op = 0;
      std::string_view payload;
      if (!r.u64(op) || !r.bytes(payload, limits::entry_bytes_max)) {
        return corruption("list service: bad snapshot");
      }
      list.push_back(Executed{OpNumber(op), std::string(payload)});
    }
    if (!r.at_end()) return corruption("list service: bad snapshot");
    executed_ = std::move(list);
    return Status::ok();
  }

  struct Executed {
    OpNumber op;
    std::string payload;
  };
  const std::vector<Executed>& executed() const { return executed_; }
  std::vector<std::string> payloads() const {
    std::vector<std::string> p;
    for (const Executed& x : executed_) p.push_back(x.payload);
    return p;
  }

 private:
  uint32_t replica_;
  ExecutionHistory* history_;
  std::vector<Executed> executed_;
  std::vector<Reconfigured> reconfigurations_;
};

// ---------------------------------------------------------------------------
// Describing messages and records for the trace

inline std::string ops_text(const LogSuffix& s) {
  if (s.entries.empty()) return "no ops after " + std::to_string(s.after.value());
  uint64_t first = s.after.value() + 1, last = s.last().value();
  if (first == last) return "op " + std::to_string(first);
  return "ops " + std::to_string(first) + ".." + std::to_string(last);
}

inline std::string members_text(const std::vector<ReplicaId>& members) {
  std::string s;
  for (ReplicaId r : members) s += (s.empty() ? "r" : ",r") + std::to_string(r.value());
  return s;
}

inline std::string describe(const ReplicaMessage& msg) {
  const Header& h = header_of(msg);
  std::string s = message_name(msg);
  if (h.epoch.value() != 0) s += " e" + std::to_string(h.epoch.value());
  s += " v" + std::to_string(h.view.value());
  auto num = [](auto n) { return std::to_string(n.value()); };
  if (const auto* m = std::get_if<Prepare>(&msg)) {
    s += " " + ops_text(m->log) + " commit " + num(m->commit);
  } else if (const auto* m = std::get_if<PrepareOk>(&msg)) {
    s += " op " + num(m->op);
    if (m->lease_stamp != 0) s += " stamp " + std::to_string(m->lease_stamp);
  } else if (const auto* m = std::get_if<Commit>(&msg)) {
    s += " commit " + num(m->commit) + " stamp " + std::to_string(m->lease_stamp);
  } else if (const auto* m = std::get_if<DoViewChange>(&msg)) {
    s += " last-normal v" + num(m->last_normal_view) + " commit " + num(m->commit) + " " +
         ops_text(m->log);
  } else if (const auto* m = std::get_if<StartView>(&msg)) {
    s += " commit " + num(m->commit) + " " + ops_text(m->log);
  } else if (const auto* m = std::get_if<Recovery>(&msg)) {
    s += " after " + num(m->after);
  } else if (const auto* m = std::get_if<RecoveryResponse>(&msg)) {
    s += " commit " + num(m->commit);
    if (m->from_primary) {
      s += " from primary";
      if (m->checkpoint) s += " checkpoint " + num(m->checkpoint->op);
      s += " " + ops_text(m->log);
    }
  } else if (const auto* m = std::get_if<GetState>(&msg)) {
    s += m->start_view ? " for StartView" : " after " + num(m->after);
  } else if (const auto* m = std::get_if<StartViewChange>(&msg)) {
    if (m->stuck) s += " stuck";
  } else if (const auto* m = std::get_if<NewState>(&msg)) {
    s += " commit " + num(m->commit) + " head " + num(m->head);
    if (m->checkpoint) s += " checkpoint " + num(m->checkpoint->op);
    s += " " + ops_text(m->log);
  } else if (const auto* m = std::get_if<StartEpoch>(&msg)) {
    s += " op " + num(m->op) + " members " + members_text(m->members) + " old " +
         members_text(m->old_members);
  }
  return s;
}

inline std::string describe(const DurableRecord& rec) {
  if (const auto* s = std::get_if<LogSuffix>(&rec)) return "log " + ops_text(*s);
  if (const auto* c = std::get_if<Checkpoint>(&rec)) {
    return "checkpoint " + std::to_string(c->op.value());
  }
  const auto& d = std::get<DurableState>(rec);
  return "state e" + std::to_string(d.epoch.value()) + " v" + std::to_string(d.view.value()) +
         " last-normal v" + std::to_string(d.last_normal_view.value());
}

inline const char* code_text(ReplyCode c) {
  switch (c) {
    case ReplyCode::kOk:
      return "ok";
    case ReplyCode::kNotPrimary:
      return "not-primary";
    case ReplyCode::kNewConfig:
      return "new-config";
    case ReplyCode::kInvalid:
      return "invalid";
    case ReplyCode::kBusy:
      return "busy";
    case ReplyCode::kEvicted:
      return "evicted";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// Messages in flight and predicates over them

struct Message {
  uint64_t id;
  uint32_t from;
  uint32_t to;
  ReplicaMessage msg;
};

// A predicate over in-flight messages, composable with &&, || and !.
struct Match {
  std::function<bool(const Message&)> f;
  bool operator()(const Message& m) const { return f(m); }
};
inline Match operator&&(Match a, Match b) {
  return {[a, b](const Message& m) { return a(m) && b(m); }};
}
inline Match operator||(Match a, Match b) {
  return {[a, b](const Message& m) { return a(m) || b(m); }};
}
inline Match operator!(Match a) {
  return {[a](const Message& m) { return !a(m); }};
}
inline Match any_message() {
  return {[](const Message&) { return true; }};
}
inline Match from(uint32_t r) {
  return {[r](const Message& m) { return m.from == r; }};
}
inline Match to(uint32_t r) {
  return {[r](const Message& m) { return m.to == r; }};
}
// Either direction.
inline Match between(uint32_t a, uint32_t b) { return (from(a) && to(b)) || (from(b) && to(a)); }
template <typename T>
Match type() {
  return {[](const Message& m) { return std::holds_alternative<T>(m.msg); }};
}

// ---------------------------------------------------------------------------
// The cluster

// Options for tests: the defaults, with every replica's timers as in
// production and no checkpoints unless a test asks for them.
inline Options test_options() {
  Options o;
  o.checkpoint_interval_ops = 0;
  return o;
}

struct SentReply {
  uint32_t from;
  ClientReply reply;
};

class Cluster {
 public:
  // A group of n replicas r1..rn, bootstrapped in epoch 0, view 0.
  // A replica enters view 0 only once its membership is durable; the disks of
  // the replicas in `unsynced` are held (hold_sync) from the start, so those
  // wait in joining status until the test syncs them.
  explicit Cluster(size_t n, Options options = test_options(), uint64_t seed = 1,
                   const std::vector<uint32_t>& unsynced = {})
      : options_(options), seed_(seed) {
    for (uint32_t i = 1; i <= n; i++) initial_members_.push_back(ReplicaId(i));
    for (uint32_t i = 1; i <= n; i++) {
      Node& node = create(i);
      node.auto_sync = std::find(unsynced.begin(), unsynced.end(), i) == unsynced.end();
      node.replica->bootstrap(initial_members_, node.out);
      drain(node);
    }
    deliver_all();
    check();
    clear_trace();
  }
  // A failed test prints the (end of the) trace of its cluster, as does
  // any test with VR_TRACE=1 in the environment.
  ~Cluster() {
    if (::testing::Test::HasFailure() || std::getenv("VR_TRACE") != nullptr) {
      // The end of it: a long random run would print megabytes
      // (VR_TRACE_LINES=n to see more).
      const char* lines_env = std::getenv("VR_TRACE_LINES");
      const size_t kLinesMax = lines_env != nullptr ? std::stoull(lines_env) : 600;
      size_t start = full_trace_.size(), lines = 0;
      while (start > 0 && lines <= kLinesMax) {
        start = full_trace_.rfind('\n', start - 1);
        if (start == std::string::npos) {
          start = 0;
          break;
        }
        lines++;
      }
      std::cout << "--- trace of the cluster" << (start > 0 ? " (last lines)" : "") << " ---\n"
                << full_trace_.substr(start == 0 ? 0 : start + 1) << "--- state ---\n"
                << summary() << "---\n";
    }
  }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // --- Replicas ---

  // A fresh replica that waits to be added by a reconfiguration (§7).
  void add_joiner(uint32_t id) {
    MAROON_ASSERT(!nodes_.contains(id));
    Node& node = create(id);
    line("r" + std::to_string(id) + " joins");
    node.replica->join(node.out);
    drain(node);
    check();
  }
  bool up(uint32_t id) const {
    auto it = nodes_.find(id);
    return it != nodes_.end() && it->second.replica != nullptr;
  }
  Replica& r(uint32_t id) {
    MAROON_ASSERT(up(id));
    return *nodes_.at(id).replica;
  }
  ListService& service(uint32_t id) {
    MAROON_ASSERT(up(id));
    return *nodes_.at(id).service;
  }
  std::vector<uint32_t> live() const {
    std::vector<uint32_t> ids;
    for (const auto& [id, node] : nodes_) {
      if (node.replica) ids.push_back(id);
    }
    return ids;
  }
  // The live replica that is a normal primary of the newest view, if any.
  std::optional<uint32_t> primary() const {
    std::optional<uint32_t> best;
    for (const auto& [id, node] : nodes_) {
      if (!node.replica || !node.replica->is_primary()) continue;
      if (!best ||
          std::pair(node.replica->epoch(), node.replica->view()) >
              std::pair(nodes_.at(*best).replica->epoch(), nodes_.at(*best).replica->view())) {
        best = id;
      }
    }
    return best;
  }
  // The payloads in a replica's in-memory log, by op.
  std::vector<std::string> log(uint32_t id) {
    std::vector<std::string> out;
    Replica& rep = r(id);
    for (uint64_t op = rep.log_after().value() + 1; op <= rep.op().value(); op++) {
      out.push_back(rep.entry(OpNumber(op))->payload);
    }
    return out;
  }

  // Crashes a replica: its memory and the unsynced tail of its disk are lost,
  // and so are messages it was holding until a sync.
  void crash(uint32_t id) {
    Node& node = nodes_.at(id);
    MAROON_ASSERT(node.replica != nullptr);
    std::string lost;
    if (!node.unsynced.empty()) {
      lost = " (lost " + std::to_string(node.unsynced.size()) + " unsynced records)";
    }
    line("crash r" + std::to_string(id) + lost);
    node.replica.reset();
    node.service.reset();
    node.unsynced.clear();
    node.held.clear();
    node.out = Output{};
    check();
  }

  // Restarts a crashed replica from its disk: the latest durable
  // DurableState, then the durable log and checkpoint records in the order
  // they were written, then finish_replay. With nothing durable the replica
  // starts as the driver starts it (src/sim, src/sequencer): a member of the
  // initial group is bootstrapped again, any other joins.
  void restart(uint32_t id) {
    Node& node = nodes_.at(id);
    MAROON_ASSERT(node.replica == nullptr);
    node.incarnation++;
    node.service = std::make_unique<ListService>(id, &history_);
    node.replica = std::make_unique<Replica>(ReplicaId(id), options_, *node.service,
                                             replica_seed(id, node.incarnation));
    node.out = Output{};
    node.durable_seq = 0;
    node.recorded_commit = OpNumber(0);
    node.last_commit = OpNumber(0);
    if (!node.superblock && node.wal.empty()) {
      const bool initial = std::find(initial_members_.begin(), initial_members_.end(),
                                     ReplicaId(id)) != initial_members_.end();
      line("restart r" + std::to_string(id) +
           " from an empty disk: " + (initial ? "bootstrapped again" : "joins"));
      if (initial) {
        node.replica->bootstrap(initial_members_, node.out);
      } else {
        node.replica->join(node.out);
      }
    } else {
      if (node.superblock) check_replay(id, node.replica->replay(*node.superblock));
      for (const DurableRecord& rec : node.wal) check_replay(id, node.replica->replay(rec));
      line("restart r" + std::to_string(id) + " from disk: " + disk_summary(node));
      node.replica->finish_replay(node.out);
    }
    drain(node);
    check();
  }

  // --- Clients ---

  void request(uint32_t at, uint64_t client, uint64_t request, std::string payload,
               bool read_only = false, uint64_t session = 0) {
    ClientRequest req{ClientId(client), RequestNumber(request), EntryKind::kRequest, read_only,
                      std::move(payload), session};
    line("client " + std::to_string(client) + " -> r" + std::to_string(at) +
         (read_only ? " read " : " request ") + std::to_string(request) + " \"" + req.payload +
         "\"" + (session != 0 ? " session " + std::to_string(session) : ""));
    client_request(at, req);
  }
  // Opens a session: the reply's result is the session (an op, in decimal).
  void register_client(uint32_t at, uint64_t client, uint64_t request) {
    ClientRequest req{ClientId(client), RequestNumber(request), EntryKind::kRegister, false, {}};
    line("client " + std::to_string(client) + " -> r" + std::to_string(at) + " register " +
         std::to_string(request));
    client_request(at, req);
  }
  // §7: asks the group to move to a new member list.
  void reconfigure(uint32_t at, uint64_t client, uint64_t request,
                   const std::vector<uint32_t>& members, std::string annex = {}) {
    std::vector<ReplicaId> ids;
    for (uint32_t m : members) ids.push_back(ReplicaId(m));
    ClientRequest req{ClientId(client), RequestNumber(request), EntryKind::kReconfigure, false,
                      encode_reconfiguration(ids, annex)};
    line("client " + std::to_string(client) + " -> r" + std::to_string(at) + " reconfigure " +
         std::to_string(request) + " to " + members_text(ids));
    client_request(at, req);
  }
  const std::vector<SentReply>& replies() const { return replies_; }
  // Replies to one request, in the order they were sent.
  std::vector<ClientReply> replies_to(uint64_t client, uint64_t request) const {
    std::vector<ClientReply> out;
    for (const SentReply& s : replies_) {
      if (s.reply.client.value() == client && s.reply.request.value() == request) {
        out.push_back(s.reply);
      }
    }
    return out;
  }
  // Results of every kOk reply to a write, "payload@op": what clients were told
  // is committed.
  std::vector<std::string> acked() const {
    std::vector<std::string> out;
    for (const SentReply& s : replies_) {
      // (Not reads, and not reconfigurations, whose result is "OK".)
      if (s.reply.code == ReplyCode::kOk && s.reply.result.find('@') != std::string::npos &&
          s.reply.result.find("@read") == std::string::npos) {
        out.push_back(s.reply.result);
      }
    }
    return out;
  }

  // --- Time ---

  void tick(uint32_t id, size_t n = 1) {
    clocks_in_step_ = false;
    line("tick r" + std::to_string(id) + (n > 1 ? " x" + std::to_string(n) : ""));
    for (size_t i = 0; i < n && up(id); i++) {
      Node& node = nodes_.at(id);
      node.replica->tick(node.out);
      drain(node);
      check();
    }
  }
  // Replica id, if a normal primary, hands the lead on (Replica::abdicate).
  void abdicate(uint32_t id) {
    line("abdicate r" + std::to_string(id));
    Node& node = nodes_.at(id);
    node.replica->abdicate(node.out);
    drain(node);
    check();
  }
  void tick_all(size_t n = 1) {
    line(std::string("tick all") + (n > 1 ? " x" + std::to_string(n) : ""));
    for (size_t i = 0; i < n; i++) {
      for (uint32_t id : live()) {
        Node& node = nodes_.at(id);
        node.replica->tick(node.out);
        drain(node);
      }
      check();
    }
  }
  // Ticks one replica until its status or view changes (its timer fires), at
  // most `max` ticks; returns how many it took.
  size_t tick_until_timeout(uint32_t id, size_t max = 1000) { return tick_until_change({id}, max); }
  // Ticks every live replica, one tick each at a time, until one of them
  // changes status or view.
  size_t tick_all_until_timeout(size_t max = 1000) { return tick_until_change(live(), max); }
  // Ticks every live replica and delivers everything in flight, `ticks`
  // times: the group runs with the network as it is now (partitions and
  // filters apply). Not traced line by line.
  void run(size_t ticks) {
    line("run " + std::to_string(ticks) + " ticks");
    quiet_++;
    for (size_t i = 0; i < ticks; i++) {
      tick_all();
      deliver_all();
    }
    quiet_--;
  }
  // Runs until `done` holds, at most max_ticks; returns whether it did.
  bool run_until(const std::function<bool()>& done, size_t max_ticks = 2000) {
    line("run until done");
    quiet_++;
    size_t i = 0;
    for (; i < max_ticks && !done(); i++) {
      tick_all();
      deliver_all();
    }
    quiet_--;
    return done();
  }

  // --- Network ---

  const std::deque<Message>& in_flight() const { return network_; }
  size_t count_in_flight(const Match& m) const {
    size_t n = 0;
    for (const Message& msg : network_) n += m(msg) ? 1 : 0;
    return n;
  }
  // Every message ever put on the network (after any hold for a sync).
  const std::vector<Message>& sent() const { return sent_; }
  size_t count_sent(const Match& m) const {
    size_t n = 0;
    for (const Message& msg : sent_) n += m(msg) ? 1 : 0;
    return n;
  }

  // Delivers messages in flight, oldest first, until nothing is in flight.
  // Messages sent meanwhile are delivered too.
  size_t deliver_all(size_t max = 100000) { return deliver(any_message(), max); }
  // Delivers the messages matching `m`, oldest first, including ones sent
  // meanwhile, until none match; the others stay in flight.
  size_t deliver(const Match& m, size_t max = 100000) {
    size_t n = 0;
    while (n < max) {
      auto it = std::find_if(network_.begin(), network_.end(), m.f);
      if (it == network_.end()) break;
      Message msg = std::move(*it);
      network_.erase(it);
      deliver_one(msg);
      n++;
    }
    EXPECT_LT(n, max) << "the network did not quiesce; in flight: " << [&] {
      std::string s;
      for (size_t i = 0; i < network_.size() && i < 12; i++)
        s += "\n  " + message_line(network_[i]);
      return s;
    }() << "\n" << summary();
    return n;
  }
  // Delivers the oldest message in flight matching `m`; false if none does.
  bool deliver_first(const Match& m) {
    auto it = std::find_if(network_.begin(), network_.end(), m.f);
    if (it == network_.end()) return false;
    deliver_at(static_cast<size_t>(it - network_.begin()));
    return true;
  }
  // Delivers (or loses) the i-th message in flight, oldest first.
  void deliver_at(size_t i) {
    MAROON_ASSERT(i < network_.size());
    Message msg = std::move(network_[i]);
    network_.erase(network_.begin() + static_cast<std::ptrdiff_t>(i));
    deliver_one(msg);
  }
  // Removes the matching messages from the network.
  size_t drop(const Match& m) {
    size_t n = 0;
    for (auto it = network_.begin(); it != network_.end();) {
      if (m(*it)) {
        line(message_line(*it) + " (dropped)");
        it = network_.erase(it);
        n++;
      } else {
        ++it;
      }
    }
    return n;
  }
  // The network duplicates the matching messages (VR assumes it may).
  size_t duplicate(const Match& m) {
    std::vector<Message> copies;
    for (const Message& msg : network_) {
      if (m(msg)) copies.push_back(msg);
    }
    for (Message& copy : copies) {
      line(message_line(copy) + " (duplicated)");
      copy.id = next_message_id_++;
      network_.push_back(std::move(copy));
    }
    return copies.size();
  }
  // Until unblock(): matching messages are lost when delivered.
  void block(const Match& m) { filters_.push_back(m); }
  void unblock() { filters_.clear(); }
  // Replicas in different sets cannot talk; a replica in no set talks to no one.
  void partition(const std::vector<std::vector<uint32_t>>& sides) {
    side_.clear();
    std::string s;
    for (size_t i = 0; i < sides.size(); i++) {
      s += i == 0 ? "" : " | ";
      for (size_t j = 0; j < sides[i].size(); j++) {
        side_[sides[i][j]] = static_cast<int>(i);
        s += (j == 0 ? "r" : " r") + std::to_string(sides[i][j]);
      }
    }
    partitioned_ = true;
    line("partition " + s);
  }
  // Cuts one replica off from everyone.
  void isolate(uint32_t id) {
    std::vector<uint32_t> rest;
    for (const auto& [other, node] : nodes_) {
      if (other != id) rest.push_back(other);
    }
    partition({rest, {id}});
  }
  void heal() {
    side_.clear();
    partitioned_ = false;
    line("heal");
  }
  // Puts a message on the network as if `from` had sent it.
  void inject(uint32_t from, uint32_t to, ReplicaMessage msg) {
    post(from, to, std::move(msg), /*check_durability=*/false);
  }

  // --- Disks ---

  // Until sync(): records stay unsynced, and the messages waiting for them
  // stay held.
  void hold_sync(uint32_t id) { nodes_.at(id).auto_sync = false; }
  void auto_sync(uint32_t id) {
    nodes_.at(id).auto_sync = true;
    sync(id);
  }
  size_t unsynced(uint32_t id) const { return nodes_.at(id).unsynced.size(); }
  size_t held(uint32_t id) const { return nodes_.at(id).held.size(); }
  // Makes the first `max` unsynced records of a replica durable (all by default).
  void sync(uint32_t id, size_t max = SIZE_MAX) {
    Node& node = nodes_.at(id);
    if (!node.replica || node.unsynced.empty() || max == 0) return;
    std::string what;
    size_t n = std::min(max, node.unsynced.size());
    for (size_t i = 0; i < n; i++) {
      what += (i == 0 ? "" : ", ") + describe(node.unsynced[i].second);
    }
    line("r" + std::to_string(id) + " sync " + what);
    sync_records(node, n);
    check();
  }
  const std::vector<DurableRecord>& wal(uint32_t id) const { return nodes_.at(id).wal; }

  // Compaction, as a node snapshot does it: once everything a replica
  // emitted is durable, its log and checkpoint records on disk are replaced
  // by its durable image (Replica::durable_image), after checking that
  // replaying the image rebuilds the replica that replaying the records
  // does. With compact_disks(true), every check does it for every replica.
  void compact_disks(bool on) { compact_ = on; }
  bool compact_disk(uint32_t id) {
    Node& node = nodes_.at(id);
    if (!node.replica || !node.unsynced.empty()) return false;
    std::vector<DurableRecord> image = node.replica->durable_image();
    const std::string from_records = rebuilt(node, node.wal);
    const std::string from_image = rebuilt(node, image);
    if (from_records != from_image) {
      ADD_FAILURE() << "r" << id << ": replaying its durable image differs from replaying its "
                    << node.wal.size() << " records\nrecords: " << from_records
                    << "\nimage:   " << from_image;
      return false;
    }
    node.wal = std::move(image);
    compactions_++;
    return true;
  }
  uint64_t compactions() const { return compactions_; }
  const std::optional<DurableState>& superblock(uint32_t id) const {
    return nodes_.at(id).superblock;
  }

  // One line per replica: status, epoch, view, op, commit, executed.
  std::string summary() const {
    std::string s;
    for (const auto& [id, node] : nodes_) {
      s += "r" + std::to_string(id) + ": ";
      if (!node.replica) {
        s += "down\n";
        continue;
      }
      const Replica& rep = *node.replica;
      s += status_text(rep) + " e" + std::to_string(rep.epoch().value()) + " op " +
           std::to_string(rep.op().value()) + " commit " + std::to_string(rep.commit().value()) +
           " executed " + std::to_string(rep.executed().value()) + " members " +
           members_text(rep.members()) + "\n";
    }
    return s;
  }

  // --- Trace ---

  const std::string& trace() const { return trace_; }
  void clear_trace() { trace_.clear(); }
  // A line of the test's own in the trace.
  void note(const std::string& s) { line("# " + s); }

  // --- Checks ---

  // An extra check run after every step.
  void add_check(std::function<void(Cluster&)> f) { checks_.push_back(std::move(f)); }
  // Checks every invariant now; done after every step automatically.
  void check() {
    for (const auto& [id, node] : nodes_) {
      if (!node.replica) continue;
      node.replica->check_invariants();
    }
    check_committed();
    std::vector<const Replica*> live;
    for (const auto& [id, node] : nodes_) {
      if (node.replica) live.push_back(node.replica.get());
    }
    if (auto v = check_log_matching(live)) ADD_FAILURE() << "safety: " << *v;
    for (const std::string& v : history_.violations) {
      ADD_FAILURE() << "safety: " << v;
    }
    history_.violations.clear();
    if (clocks_in_step_) check_leases();
    for (auto& f : checks_) f(*this);
    if (compact_) {
      for (const auto& [id, node] : nodes_) compact_disk(id);
    }
  }
  // The entry committed at op, as first observed at any replica.
  std::optional<Entry> committed_entry(uint64_t op) const {
    auto it = committed_.find(op);
    if (it == committed_.end()) return std::nullopt;
    return it->second;
  }

 private:
  struct Node {
    uint32_t id = 0;
    std::unique_ptr<ListService> service;
    std::unique_ptr<Replica> replica;
    Output out;
    int incarnation = 0;
    // Disk: the latest durable DurableState, the durable log and checkpoint
    // records in write order, and the records not yet synced with their seqs.
    std::optional<DurableState> superblock;
    std::vector<DurableRecord> wal;
    std::deque<std::pair<uint64_t, DurableRecord>> unsynced;
    uint64_t durable_seq = 0;
    bool auto_sync = true;
    // A picture of the durable log (op -> entry) for the durability checks:
    // ops up to durable_floor are covered by a checkpoint or were a gap
    // committed elsewhere.
    std::map<uint64_t, Entry> durable_entries;
    uint64_t durable_floor = 0;
    // send_after_persist messages with the seq that must be durable first
    // (the hosts' own holding code).
    host::HeldMessages<Envelope> held;
    // For the trace and the monotonicity checks.
    std::string last_status;
    OpNumber last_commit{0};
    OpNumber recorded_commit{0};
  };

  size_t tick_until_change(const std::vector<uint32_t>& ids, size_t max) {
    if (ids.size() != live().size()) clocks_in_step_ = false;
    auto state = [&] {
      std::vector<std::pair<ReplicaStatus, ViewNumber>> v;
      for (uint32_t id : ids) v.emplace_back(r(id).status(), r(id).view());
      return v;
    };
    const auto before = state();
    std::string who = ids.size() == 1 ? "r" + std::to_string(ids[0]) : "all";
    size_t n = 0;
    quiet_++;
    while (n < max && state() == before) {
      n++;
      for (uint32_t id : ids) {
        Node& node = nodes_.at(id);
        const auto mine = std::pair(node.replica->status(), node.replica->view());
        node.replica->tick(node.out);
        if (std::pair(node.replica->status(), node.replica->view()) != mine) {
          quiet_--;
          line("tick " + who + " x" + std::to_string(n) + " (r" + std::to_string(id) +
               "'s timer fires)");
          drain(node);
          quiet_++;
        } else {
          drain(node);
        }
      }
      check();
    }
    quiet_--;
    EXPECT_LT(n, max) << "no timer fired";
    return n;
  }

  uint64_t replica_seed(uint32_t id, int incarnation) const {
    return seed_ * 1000003 + id * 7919 + static_cast<uint64_t>(incarnation) * 104729;
  }

  Node& create(uint32_t id) {
    Node& node = nodes_[id];
    node.id = id;
    node.service = std::make_unique<ListService>(id, &history_);
    node.replica =
        std::make_unique<Replica>(ReplicaId(id), options_, *node.service, replica_seed(id, 0));
    return node;
  }

  void client_request(uint32_t at, const ClientRequest& req) {
    if (!up(at)) {
      line("  (r" + std::to_string(at) + " is down)");
      return;
    }
    Node& node = nodes_.at(at);
    node.replica->on_client_request(req, node.out);
    drain(node);
    check();
  }

  void check_replay(uint32_t id, const Status& st) {
    EXPECT_TRUE(st.is_ok()) << "r" << id << " replay: " << st.to_string();
  }

  // A fresh replica restarted from the node's superblock and `records`,
  // described: what replay rebuilt, then what finish_replay made of it.
  std::string rebuilt(const Node& node, const std::vector<DurableRecord>& records) const {
    ExecutionHistory scratch;
    ListService service(node.id, &scratch);
    Replica rep(ReplicaId(node.id), options_, service, 1);
    std::string d;
    auto status = [&](const Status& st) {
      if (!st) d += " replay error: " + st.to_string();
    };
    if (node.superblock) status(rep.replay(*node.superblock));
    for (const DurableRecord& rec : records) status(rep.replay(rec));
    auto describe_replica = [&] {
      d += " op " + std::to_string(rep.op().value()) + " log after " +
           std::to_string(rep.log_after().value()) + " commit " +
           std::to_string(rep.commit().value()) + " executed " +
           std::to_string(rep.executed().value()) + " checkpoint " +
           std::to_string(rep.checkpoint_op().value()) + " entries";
      for (uint64_t op = rep.log_after().value() + 1; op <= rep.op().value(); op++) {
        const Entry* e = rep.entry(OpNumber(op));
        d += e == nullptr ? std::string(" ?")
                          : " " + std::to_string(e->view.value()) + ":" +
                                std::to_string(hash64(e->payload));
      }
      d += " service " + std::to_string(hash64(service.snapshot()));
    };
    describe_replica();
    Output out;
    rep.finish_replay(out);
    d += " | " + status_text(rep);
    describe_replica();
    return d;
  }

  static std::string disk_summary(const Node& node) {
    std::string s = node.superblock ? describe(DurableRecord(*node.superblock)) : "no state";
    uint64_t head = node.durable_floor;
    while (node.durable_entries.contains(head + 1)) head++;
    s += ", log to op " + std::to_string(head);
    return s;
  }

  std::string status_text(const Replica& rep) const {
    std::string s = status_name(rep.status());
    if (rep.epoch().value() != 0) s += " e" + std::to_string(rep.epoch().value());
    s += " v" + std::to_string(rep.view().value());
    if (rep.is_primary()) s += " primary";
    return s;
  }

  void line(const std::string& s) {
    // VR_LOUD=1: trace the quiet runs too (long).
    static const bool loud = std::getenv("VR_LOUD") != nullptr;
    // VR_TRACE_STREAM=1: print each line as it happens, for a replica
    // assertion that stops the process before the trace could be printed.
    static const bool stream = std::getenv("VR_TRACE_STREAM") != nullptr;
    if (quiet_ > 0 && !loud) return;
    if (stream) std::cerr << s << std::endl;
    trace_ += s + "\n";
    full_trace_ += s + "\n";
  }

  std::string message_line(const Message& m) const {
    return "r" + std::to_string(m.from) + " -> r" + std::to_string(m.to) + " " + describe(m.msg);
  }

  // Collects one replica's output: records to its disk, messages to the
  // network (or held for a sync), replies to the clients.
  void drain(Node& node) {
    Replica& rep = *node.replica;
    const std::string status = status_text(rep);
    if (status != node.last_status) {
      line("r" + std::to_string(node.id) + " " + status);
      node.last_status = status;
    }
    if (rep.commit() != node.last_commit) {
      if (rep.commit() < node.last_commit) {
        ADD_FAILURE() << "r" << node.id << " commit went back from " << node.last_commit << " to "
                      << rep.commit();
      } else {
        line("r" + std::to_string(node.id) + " commit " + std::to_string(rep.commit().value()));
      }
      node.last_commit = rep.commit();
    }
    Output& out = node.out;
    for (size_t i = 0; i < out.persist.size(); i++) {
      node.unsynced.emplace_back(out.first_seq + i, std::move(out.persist[i]));
    }
    for (Envelope& e : out.send_now) post(node.id, e.to.value(), std::move(e.msg), true);
    const uint64_t wait = out.next_seq() - 1;
    for (Envelope& e : out.send_after_persist) {
      node.held.hold(wait, node.durable_seq, std::move(e), [&](Envelope m) {
        post(node.id, m.to.value(), std::move(m.msg), true);
      });
    }
    for (ClientReply& reply : out.replies) {
      std::string s = "r" + std::to_string(node.id) + " -> client " +
                      std::to_string(reply.client.value()) + " reply " +
                      std::to_string(reply.request.value()) + " " + code_text(reply.code);
      if (reply.code == ReplyCode::kOk) s += " \"" + reply.result + "\"";
      if (reply.code == ReplyCode::kNotPrimary)
        s += " (try r" + std::to_string(reply.primary.value()) + ")";
      if (reply.code == ReplyCode::kNewConfig) s += " members " + members_text(reply.members);
      line(s);
      replies_.push_back(SentReply{node.id, std::move(reply)});
    }
    out.clear();
    if (node.auto_sync && !node.unsynced.empty()) {
      sync_records(node, node.unsynced.size());  // drains again
    }
    release_held(node);
  }

  void sync_records(Node& node, size_t n) {
    MAROON_ASSERT(n <= node.unsynced.size() && n > 0);
    uint64_t seq = 0;
    for (size_t i = 0; i < n; i++) {
      auto [s, rec] = std::move(node.unsynced.front());
      node.unsynced.pop_front();
      seq = s;
      apply_durable(node, rec);
      if (auto* st = std::get_if<DurableState>(&rec)) {
        check_durable_view(node, *st);
        node.superblock = *st;
      } else {
        node.wal.push_back(std::move(rec));
      }
    }
    node.durable_seq = seq;
    node.replica->on_persisted(seq, node.out);
    drain(node);
  }

  void apply_durable(Node& node, const DurableRecord& rec) {
    if (const auto* s = std::get_if<LogSuffix>(&rec)) {
      uint64_t head = node.durable_floor;
      while (node.durable_entries.contains(head + 1)) head++;
      node.durable_entries.erase(node.durable_entries.upper_bound(s->after.value()),
                                 node.durable_entries.end());
      if (s->after.value() > head) node.durable_floor = s->after.value();  // a gap
      for (const Entry& e : s->entries) node.durable_entries[e.op.value()] = e;
    } else if (const auto* c = std::get_if<Checkpoint>(&rec)) {
      node.durable_floor = std::max(node.durable_floor, c->op.value());
    }
  }

  // The durable view never goes backwards (within an epoch; a new epoch
  // starts again at view 0): a replica that voted in a view, or acked in it,
  // must come back from a crash in it or a later one.
  void check_durable_view(const Node& node, const DurableState& next) {
    if (!node.superblock) return;
    const DurableState& prev = *node.superblock;
    EXPECT_TRUE(next.epoch > prev.epoch || (next.epoch == prev.epoch && next.view >= prev.view))
        << "r" << node.id << "'s durable view went back from e" << prev.epoch << " v" << prev.view
        << " to e" << next.epoch << " v" << next.view;
  }

  void release_held(Node& node) {
    node.held.release(node.durable_seq, [&](Envelope e) {
      post(node.id, e.to.value(), std::move(e.msg), true);
    });
  }

  void post(uint32_t from_id, uint32_t to_id, ReplicaMessage msg, bool check_durability) {
    Message m{next_message_id_++, from_id, to_id, std::move(msg)};
    if (check_durability) check_durable_claims(m);
    sent_.push_back(m);
    network_.push_back(std::move(m));
  }

  // A PrepareOk says "I hold every op up to op on disk"; a DoViewChange says
  // "I will never go back below this view", which holds only once the view
  // is durable.
  void check_durable_claims(const Message& m) {
    const Node& node = nodes_.at(m.from);
    if (const auto* ok = std::get_if<PrepareOk>(&m.msg)) {
      uint64_t head = node.durable_floor;
      while (node.durable_entries.contains(head + 1)) head++;
      EXPECT_LE(ok->op.value(), head) << "r" << m.from << " acks op " << ok->op
                                      << " but its disk holds the log only to op " << head;
    }
    // (StartViewChange carries no such promise: a replica that sent one and
    // no DoViewChange may go back to the live primary's view, so a held
    // StartViewChange may leave after the replica went back.)
    if (std::holds_alternative<DoViewChange>(m.msg)) {
      const Header& h = header_of(m.msg);
      EXPECT_TRUE(node.superblock &&
                  (node.superblock->epoch > h.epoch ||
                   (node.superblock->epoch == h.epoch && node.superblock->view >= h.view)))
          << "r" << m.from << " sent " << describe(m.msg) << " before its view was durable";
    }
  }

  void deliver_one(const Message& m) {
    std::string why;
    if (!up(m.to)) {
      why = nodes_.contains(m.to) ? " (lost: r" + std::to_string(m.to) + " down)"
                                  : " (lost: no r" + std::to_string(m.to) + ")";
    } else if (partitioned_ && (!side_.contains(m.from) || !side_.contains(m.to) ||
                                side_.at(m.from) != side_.at(m.to))) {
      why = " (lost: partition)";
    } else {
      for (const Match& f : filters_) {
        if (f(m)) why = " (blocked)";
      }
    }
    line(message_line(m) + why);
    if (!why.empty()) return;
    Node& node = nodes_.at(m.to);
    node.replica->step(m.msg, node.out);
    drain(node);
    check();
  }

  // §6.3 lease safety: while a primary holds a lease (and may answer reads
  // locally) no replica is the normal primary of a later view of the same
  // epoch. The lease assumes clocks that run at about the same rate, so this
  // is checked only while every live replica has been ticked together.
  void check_leases() {
    for (const auto& [a, na] : nodes_) {
      if (!na.replica || !na.replica->has_lease()) continue;
      for (const auto& [b, nb] : nodes_) {
        if (b == a || !nb.replica || !nb.replica->is_primary() ||
            nb.replica->epoch() != na.replica->epoch()) {
          continue;
        }
        EXPECT_LE(nb.replica->view(), na.replica->view())
            << "r" << a << " holds a lease in v" << na.replica->view() << " while r" << b
            << " is primary of v" << nb.replica->view();
      }
    }
  }

  // Every op at or below a live replica's commit number that it still holds
  // is committed: the first entry seen at each op is recorded, and every
  // later one must equal it.
  void check_committed() {
    for (auto& [id, node] : nodes_) {
      if (!node.replica) continue;
      const Replica& rep = *node.replica;
      uint64_t from = std::max(node.recorded_commit.value(), rep.log_after().value());
      for (uint64_t op = from + 1; op <= rep.commit().value(); op++) {
        const Entry* e = rep.entry(OpNumber(op));
        if (e == nullptr) continue;
        auto [it, fresh] = committed_.try_emplace(op, *e);
        if (!fresh && !(it->second == *e)) {
          ADD_FAILURE() << "safety: r" << id << " committed \"" << e->payload << "\" at op " << op
                        << " where \"" << it->second.payload << "\" was committed";
        }
      }
      node.recorded_commit = std::max(node.recorded_commit, rep.commit());
    }
  }

  Options options_;
  uint64_t seed_;
  std::vector<ReplicaId> initial_members_;
  std::map<uint32_t, Node> nodes_;
  std::deque<Message> network_;
  std::vector<Message> sent_;
  uint64_t next_message_id_ = 1;
  std::vector<Match> filters_;
  std::map<uint32_t, int> side_;
  bool partitioned_ = false;
  std::vector<SentReply> replies_;
  ExecutionHistory history_;
  std::map<uint64_t, Entry> committed_;
  std::vector<std::function<void(Cluster&)>> checks_;
  bool compact_ = false;
  uint64_t compactions_ = 0;
  std::string trace_;
  std::string full_trace_;
  int quiet_ = 0;
  // False once a test ticked one replica alone (its clock then runs at
  // another rate than the others').
  bool clocks_in_step_ = true;
};

}  // namespace maroon::vr::test
