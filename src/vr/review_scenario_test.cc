// Scenario tests for bugs found by reviewing the replica rather than by the
// simulator, each named after the situation that broke a promise. Every one
// failed on the code before its fix (the comment says how) and is kept so
// the bug stays fixed. The harness checks its invariants after every step,
// the durable view never going backwards among them.
#include <string>
#include <vector>

#include "vr/scenario_steps.h"

namespace maroon::vr::test {
namespace {

// A replica that sent a DoViewChange for view v has handed its log to v's
// primary: that vote may still form v, from logs without anything the
// replica acknowledges later in a lower view. So a replica never acts in a
// view below one it voted for, not even after a crash, and its durable view
// never goes backwards.
//
// 5 replicas. r3 votes for view 1 (its DoViewChange reaches r2) and
// crashes; r1, r4 and r5 stay in view 0. Before the fix, r3 recovered into
// view 0 (its durable view going from 1 back to 0), helped commit "k" at op
// 2, and r2 later formed view 1 from r3's old vote, its own log and r5's,
// none holding "k", and committed "z" at op 2.
TEST(Review_LostVote, ARecoveringReplicaNeverTakesBackItsDoViewChangeVote) {
  Cluster c(5);
  commit_each(c, 1, 1, 1, {"a"});
  step_time(c);
  // r2, r3 and r5 stop hearing from r1 and start a view change to view 1.
  for (uint32_t id : {2u, 3u, 5u}) c.tick_until_timeout(id);
  ASSERT_EQ(c.r(3).view(), ViewNumber(1));
  // r3 hears r2 and r5 and votes: its DoViewChange reaches r2. r5's
  // StartViewChange to r2 stays in flight (it arrives late); the others are lost.
  c.deliver(to(3) && type<StartViewChange>() && (from(2) || from(5)));
  c.deliver(to(2) && from(3));
  ASSERT_EQ(c.count_sent(from(3) && to(2) && type<DoViewChange>()), 1u);
  c.drop(type<StartViewChange>() && !(from(5) && to(2)));
  c.crash(3);
  c.restart(3);
  // r5 hears the live primary again and goes back to view 0 (it never voted).
  c.tick(1, 2);
  c.deliver(!to(2) && !from(2));
  EXPECT_EQ(c.r(5).status(), ReplicaStatus::kNormal);
  EXPECT_EQ(c.r(5).view(), ViewNumber(0));
  // r3 retries its recovery; r1, r4 and r5 answer from view 0.
  c.tick(3, 4);
  c.deliver(!to(2) && !from(2));
  EXPECT_NE(c.r(3).status(), ReplicaStatus::kNormal) << "r3 acts in view 0 after voting for view 1";
  EXPECT_GE(c.r(3).view(), ViewNumber(1));
  // The client writes "k"; r5 misses the prepare.
  c.request(1, 1, 2, "k");
  c.drop(to(5) && type<Prepare>());
  c.deliver(!to(2) && !from(2));
  const bool k_acked = last_acked(c) == "k@2";
  // r1 crashes. r4 and r5 time out; r2 gets r5's late StartViewChange and
  // forms view 1 from r3's old vote, its own log and r5's: r4's vote and any
  // new one of r3's are lost.
  c.crash(1);
  c.block(type<DoViewChange>() && (from(3) || from(4)));
  c.deliver(from(5) && to(2));
  for (uint32_t id : {4u, 5u}) c.tick_until_timeout(id);
  ASSERT_TRUE(c.run_until([&] {
    return c.r(2).status() == ReplicaStatus::kNormal && c.r(2).view() >= ViewNumber(1);
  }));
  c.unblock();
  ASSERT_TRUE(c.run_until([&] { return settled(c); }));
  const uint32_t p = *c.primary();
  commit_each(c, p, 2, 1, {"z"});
  expect_nothing_acked_lost(c, p);
  if (k_acked) {
    const Entry* e = c.r(p).entry(OpNumber(2));
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->payload, "k");
  }
}

// A DurableState for a new epoch says "the log up to the epoch's start is
// committed", so it may reach the disk only after the record that justifies
// it: here, the checkpoint that carried the reconfiguration. The driver may
// crash with any prefix of the records of one output durable.
//
// 5 replicas. "x" reaches r3 alone and is never committed; the group moves
// on without r3, commits "b" at op 2, reconfigures (op 3, checkpointed) and
// r3 catches up from the checkpoint. Before the fix, r3 emitted the new
// epoch's DurableState before the checkpoint record; a crash that kept only
// the DurableState brought r3 back believing ops 1..2 committed, and it
// executed the stale "x" at op 2 where everyone else executed "b".
TEST(Review_EpochStateOrder, ACrashKeepingAnyPrefixOfACheckpointInstallLosesNothing) {
  Options o = test_options();
  o.checkpoint_interval_ops = 3;
  size_t records = 0;
  for (size_t durable = 0; durable <= records; durable++) {
    SCOPED_TRACE("records of r3's checkpoint install kept durable: " + std::to_string(durable));
    Cluster c(5, o);
    commit_each(c, 1, 1, 1, {"a"});
    // "x" reaches r3 alone; r1 crashes before anyone else has it.
    c.request(1, 1, 2, "x");
    c.drop(type<Prepare>() && !to(3));
    c.deliver_all();
    c.crash(1);
    c.isolate(3);
    ASSERT_TRUE(c.run_until([&] {
      auto p = c.primary();
      return p && c.r(*p).view() >= ViewNumber(1);
    }));
    const uint32_t p = *c.primary();
    commit_each(c, p, 2, 1, {"b"});
    c.reconfigure(p, 3, 1, {2, 3, 4, 5});
    ASSERT_TRUE(c.run_until([&] {
      auto r = c.replies_to(3, 1);
      return !r.empty() && r.back().code == ReplyCode::kOk && c.up(2) &&
             c.r(2).checkpoint_op() >= OpNumber(3);
    }));
    ASSERT_EQ(c.log(3), (std::vector<std::string>{"a", "x"}));
    // r3 hears of the new epoch and installs the checkpoint; nothing it
    // writes from now on is synced until the crash.
    c.hold_sync(3);
    c.heal();
    ASSERT_TRUE(c.run_until([&] { return c.r(3).epoch() == ConfigEpoch(1); }));
    records = std::max(records, c.unsynced(3));
    c.sync(3, durable);
    c.crash(3);
    c.auto_sync(3);
    c.restart(3);
    ASSERT_TRUE(c.run_until([&] { return settled_in_epoch(c, 1); }, 4000)) << c.summary();
    const uint32_t q = *c.primary();
    commit_each(c, q, 4, 1, {"c"});
    ASSERT_TRUE(c.run_until([&] { return c.r(3).executed() >= c.r(q).commit(); }, 4000))
        << c.summary();
    expect_nothing_acked_lost(c, q);
    EXPECT_EQ(c.service(3).payloads(), c.service(q).payloads());
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_GE(records, 2u);
}

// The log is bounded in bytes (limits::log_bytes_max) and trimmed only by
// checkpoints. Before the fix a checkpoint came only every
// checkpoint_interval_ops (4096) ops: with entries above about 2 KiB the log
// filled first, the primary stopped preparing, and queued requests were
// never answered, not even "busy". A group of one, driven by hand: every
// request must be answered, and every one is eventually executed.
TEST(Review_LogFull, LargeEntriesNeverWedgeTheLogAndEveryRequestIsAnswered) {
  class CountingService final : public Service {
   public:
    std::string execute(const Entry&) override { return std::to_string(++count_); }
    std::string read(std::string_view) override { return std::to_string(count_); }
    std::string snapshot() override { return std::to_string(count_); }
    Status restore(std::string_view s) override {
      count_ = std::stoull(std::string(s));
      return Status::ok();
    }

   private:
    uint64_t count_ = 0;
  } service;
  Options o;  // production defaults: a checkpoint every 4096 ops
  Replica r(ReplicaId(1), o, service, 1);
  Output out;
  std::vector<ClientReply> replies;
  size_t largest_log_record = 0;
  auto persist_all = [&] {
    for (int round = 0; round < 8 && !out.empty(); round++) {
      for (const DurableRecord& rec : out.persist) {
        if (const auto* s = std::get_if<LogSuffix>(&rec)) {
          size_t bytes = 0;
          for (const Entry& e : s->entries) bytes += e.payload.size();
          largest_log_record = std::max(largest_log_record, bytes);
        }
      }
      const uint64_t durable = out.next_seq() - 1;
      for (ClientReply& rep : out.replies) replies.push_back(std::move(rep));
      out.clear();
      r.on_persisted(durable, out);
    }
  };
  r.bootstrap({ReplicaId(1)}, out);
  persist_all();
  ASSERT_EQ(r.status(), ReplicaStatus::kNormal);
  const std::string payload(200 * 1024, 'v');
  const uint64_t kRequests = 3 * limits::log_bytes_max / payload.size();
  uint64_t ok = 0, busy = 0;
  for (uint64_t req = 1; req <= kRequests; req++) {
    // A client retries "busy" after a while, as real ones do.
    for (int attempt = 0; attempt < 100; attempt++) {
      const size_t before = replies.size();
      r.on_client_request(ClientRequest{ClientId(7), RequestNumber(req), EntryKind::kRequest,
                                        false, payload},
                          out);
      persist_all();
      r.tick(out);
      persist_all();
      ASSERT_GT(replies.size(), before) << "request " << req << " was never answered";
      const ClientReply& last = replies.back();
      ASSERT_EQ(last.request, RequestNumber(req));
      if (last.code == ReplyCode::kOk) {
        ok++;
        break;
      }
      ASSERT_EQ(last.code, ReplyCode::kBusy);
      busy++;
    }
  }
  EXPECT_EQ(ok, kRequests);
  EXPECT_EQ(r.executed().value(), kRequests);
  EXPECT_GT(r.checkpoint_op(), OpNumber(0)) << "no checkpoint was taken by size";
  EXPECT_LE(largest_log_record, limits::log_record_bytes_max + limits::entry_bytes_max);
  RecordProperty("busy_answers", static_cast<int>(busy));
}

// A view's log may start after a checkpoint, beyond the commit number a
// replica knows; the replica's own entries up to that start may then be the
// last copies of committed ops, and are kept when the log provably continues
// them (log matching: its entry right after the start equals ours).
//
// 3 replicas, a checkpoint every 4 ops. r3 is cut off after op 3. r1
// prepares "d" (op 4) and "e" (op 5) with r2, commits both, checkpoints at
// op 4 and prepares "f" (op 6) alone; r2 never learns that 4 and 5 are
// committed. r2 forms view 1 from r1's log (after op 4, ops 5..6), and r1
// is then lost for good. Before the fix (cluster sim seed 3340), r2 dropped
// its log as stale where the chosen log started beyond its commit number,
// "d" survived only in r1's checkpoint, and neither r2 nor r3 ever executed
// op 4: the group stalled with an acknowledged write gone.
TEST(Review_LastCopy, AReplicaKeepsCommittedOpsThatALaterLogStartsAfter) {
  Options o = test_options();
  o.checkpoint_interval_ops = 4;
  Cluster c(3, o);
  commit_each(c, 1, 1, 1, {"a", "b", "c"});
  c.isolate(3);
  c.request(1, 2, 1, "d");
  c.deliver(type<Prepare>() && to(2));
  c.request(1, 3, 1, "e");
  c.deliver(type<Prepare>() && to(2));
  ASSERT_EQ(c.r(2).op(), OpNumber(5));
  ASSERT_EQ(c.r(2).commit(), OpNumber(3));
  // r2's PrepareOk for op 4 first: r1 commits and checkpoints op 4 alone.
  ASSERT_TRUE(c.deliver_first(type<PrepareOk>() && from(2)));
  ASSERT_EQ(c.r(1).commit(), OpNumber(4));
  c.deliver(type<PrepareOk>() && from(2));
  ASSERT_EQ(c.r(1).commit(), OpNumber(5));
  ASSERT_EQ(c.r(1).checkpoint_op(), OpNumber(4));
  ASSERT_EQ(c.r(1).log_after(), OpNumber(4));
  // r2 hears nothing more from r1: not the commit, not "f", and (before r1
  // is lost) no state transfer of its checkpoint.
  c.block(from(1) && to(2) && (type<Commit>() || type<Prepare>() || type<NewState>()));
  c.request(1, 4, 1, "f");
  c.deliver_all();
  ASSERT_EQ(c.r(1).op(), OpNumber(6));
  ASSERT_EQ(c.r(2).commit(), OpNumber(3));
  // r2 times out and forms view 1 with r1's vote: r1's log is the longest.
  c.tick_until_timeout(2);
  c.deliver_all();
  ASSERT_TRUE(c.run_until([&] {
    return c.r(2).status() == ReplicaStatus::kNormal && c.r(2).view() == ViewNumber(1);
  }));
  // It executed "d" from its own log: it did not wait for r1's checkpoint.
  EXPECT_GE(c.r(2).executed(), OpNumber(5))
      << "r2 dropped ops it held, op 4 among them (held elsewhere only in r1's checkpoint)";
  c.crash(1);
  c.unblock();
  c.heal();
  ASSERT_TRUE(c.run_until([&] {
    return c.r(2).executed() >= OpNumber(6) && c.r(3).executed() >= OpNumber(6);
  })) << c.summary();
  commit_each(c, 2, 5, 1, {"g"});
  for (uint32_t id : {2u, 3u}) expect_nothing_acked_lost(c, id);
}

// The client table is bounded: when it is full, the client whose last
// request is oldest is evicted, and with its entry goes the record of which
// of its requests ran. A retry from an evicted client must not run again; it
// is answered "evicted" and its client registers a new session.
//
// 3 replicas, a table of 2 clients. Client 1 opens a session and writes "a";
// its reply is lost. Clients 2 and 3 open sessions, which evicts client 1.
// Client 1 retries "a": before the fix (no sessions) the unknown client's
// retry ran as new, and "a" executed twice. A request already in the log
// behind the register that evicts its client is refused the same way on
// every replica when it executes.
TEST(Review_ClientEviction, AnEvictedClientsRetryIsAnsweredEvictedAndNeverRunsTwice) {
  Options o = test_options();
  o.client_table_clients_max = 2;
  Cluster c(3, o);
  auto session_of = [&](uint64_t client, uint64_t request) -> uint64_t {
    auto replies = c.replies_to(client, request);
    if (replies.empty() || replies.back().code != ReplyCode::kOk) return 0;
    return std::stoull(replies.back().result);
  };
  auto runs_of = [&](uint32_t id, const std::string& payload) {
    size_t n = 0;
    for (const auto& x : c.service(id).executed()) n += x.payload == payload;
    return n;
  };
  c.register_client(1, 1, 1);
  c.deliver_all();
  const uint64_t s1 = session_of(1, 1);
  ASSERT_EQ(s1, 1u);
  c.request(1, 1, 2, "a", false, s1);
  c.deliver_all();
  ASSERT_EQ(runs_of(1, "a"), 1u);
  c.register_client(1, 2, 1);
  c.deliver_all();
  c.register_client(1, 3, 1);
  c.deliver_all();
  ASSERT_NE(session_of(3, 1), 0u);
  // Client 1 never saw the reply to "a" and retries it.
  c.request(1, 1, 2, "a", false, s1);
  c.deliver_all();
  auto retry = c.replies_to(1, 2);
  ASSERT_FALSE(retry.empty());
  EXPECT_EQ(retry.back().code, ReplyCode::kEvicted);
  // Client 1 registers again (a new session; client 2 is evicted) and
  // writes "b". Client 3 writes "c" while the register of a new client 4,
  // which evicts client 3, is in the log ahead of it, not yet executed.
  c.register_client(1, 1, 3);
  c.deliver_all();
  const uint64_t s1b = session_of(1, 3);
  ASSERT_GT(s1b, s1);
  const uint64_t s3 = session_of(3, 1);
  c.block(type<PrepareOk>());
  c.register_client(1, 4, 1);
  c.request(1, 3, 2, "c", false, s3);
  c.deliver_all();
  ASSERT_TRUE(c.replies_to(3, 2).empty()) << "refused before it reached the log";
  c.unblock();
  step_time(c, 3);
  c.request(1, 1, 4, "b", false, s1b);
  c.deliver_all();
  step_time(c, 3);
  auto c_reply = c.replies_to(3, 2);
  ASSERT_FALSE(c_reply.empty());
  EXPECT_EQ(c_reply.back().code, ReplyCode::kEvicted);
  for (uint32_t id : {1u, 2u, 3u}) {
    EXPECT_EQ(runs_of(id, "a"), 1u) << "r" << id;
    EXPECT_EQ(runs_of(id, "b"), 1u) << "r" << id;
    EXPECT_EQ(runs_of(id, "c"), 0u) << "r" << id;
  }
}

}  // namespace
}  // namespace maroon::vr::test
