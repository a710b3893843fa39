// Membership changes in the node (docs/membership.md): the node follows the
// group its sequencer committed, counts copies only among its members, and
// a node the change removed keeps serving until a quorum of the new group
// holds everything it held.
#include <fmt/format.h>

#include <algorithm>

#include "node/node.h"

namespace maroon {
namespace {

// A removed node asks the members that have not handed off yet this often.
constexpr uint64_t kHandoffAskTicks = 50;
// Applied epochs remembered while their records are not yet durable.
constexpr size_t kAppliedMarksMax = 4096;

bool has(const std::vector<NodeId>& v, NodeId id) {
  return std::find(v.begin(), v.end(), id) != v.end();
}

}  // namespace

Status Node::request_membership(uint64_t expect_config, std::vector<NodeId> members,
                                std::string annex) {
  MAROON_ASSERT(!replaying_);
  if (!fault_.is_ok()) return fault_;
  if (peers_.empty()) return invalid_argument("a single node (maroon dev) has no group to change");
  if (leaving_ || node_retired_) return unavailable("this node is leaving the group");
  if (expect_config != membership_config_) {
    return invalid_argument(fmt::format("the group is in config {}, not {}: look again",
                                        membership_config_, expect_config));
  }
  return sequencer_.request_membership(expect_config, std::move(members), std::move(annex), out_);
}

void Node::sync_membership() {
  const Membership& m = sequencer_.membership();
  if (m.config <= membership_config_) return;
  MAROON_ASSERT(!m.members.empty() && m.members.size() <= 8);
  membership_config_ = m.config;
  switch_epoch_ = m.switch_epoch;
  members_ = m.members;
  std::sort(members_.begin(), members_.end());
  MAROON_ASSERT(std::adjacent_find(members_.begin(), members_.end()) == members_.end());
  k_ = members_.size() / 2 + 1;
  leaving_ = !has(members_, config_.id);
  // Removed nodes stay peers (they may hold txs of the epochs before their
  // switch) until they say they retired, across later changes too; a
  // restart remembers only the last change's.
  for (NodeId id : m.previous) {
    if (!has(members_, id) && id != config_.id && !has(removed_, id)) removed_.push_back(id);
  }
  std::erase_if(removed_, [&](NodeId id) { return has(members_, id); });
  std::sort(removed_.begin(), removed_.end());
  while (removed_.size() + members_.size() > 60) removed_.erase(removed_.begin());
  handoff_config_ = membership_config_;
  handoff_members_ = members_;
  handed_off_from_.clear();
  handoff_asked_tick_ = 0;
  std::vector<NodeId> peers;
  for (NodeId id : members_) {
    if (id != config_.id) peers.push_back(id);
  }
  peers.insert(peers.end(), removed_.begin(), removed_.end());
  std::sort(peers.begin(), peers.end());
  set_peers(std::move(peers));
}

void Node::set_peers(std::vector<NodeId> peers) {
  MAROON_ASSERT(!peers.empty());  // a cluster stays a cluster
  MAROON_ASSERT(peers.size() < 64);  // evicted_peers is a bit set
  // old_index[i]: where peers[i] was in peers_, or SIZE_MAX.
  std::vector<size_t> old_index(peers.size(), SIZE_MAX);
  for (size_t i = 0; i < peers.size(); i++) old_index[i] = peer_index(peers[i]);
  for (auto& [id, range] : ranges_) {
    std::vector<uint64_t> durable(peers.size(), 0);
    std::vector<RangeState::PeerCopies> copies(peers.size());
    uint64_t evicted = 0;
    for (size_t i = 0; i < peers.size(); i++) {
      const size_t o = old_index[i];
      if (o == SIZE_MAX) continue;
      durable[i] = range.peer_durable[o];
      copies[i] = std::move(range.peer_copies[o]);
      if (range.evicted_peers & (uint64_t{1} << o)) evicted |= uint64_t{1} << i;
    }
    range.peer_durable = std::move(durable);
    range.peer_copies = std::move(copies);
    range.evicted_peers = evicted;
    range.pull_peer = 0;
    range.pull_served = false;
  }
  std::vector<std::pair<EpochNumber, uint64_t>> claims(peers.size());
  for (size_t i = 0; i < peers.size(); i++) {
    if (old_index[i] != SIZE_MAX) claims[i] = peer_claims_[old_index[i]];
  }
  peer_claims_ = std::move(claims);
  peers_ = std::move(peers);
  member_peers_ = 0;
  for (size_t i = 0; i < peers_.size(); i++) {
    if (has(members_, peers_[i])) member_peers_ |= uint64_t{1} << i;
  }
}

void Node::on_membership_note(NodeId from, const MembershipNote& m) {
  if (m.kind == MembershipNote::kHandoffWanted) {
    // From any node (one removed by a change this node may not remember
    // since a restart, or never saw): the answer is about this node's disk
    // alone. A node in that config or a later one that applied every epoch
    // up to its own switch (no earlier than that config's) durably holds
    // everything the asker's copies were counted for.
    if (membership_config_ >= m.config && !leaving_ && !node_retired_ &&
        durable_applied_epoch_ >= std::max(m.epoch, switch_epoch_)) {
      send_peer(from, MembershipNote{m.config, MembershipNote::kHandedOff, m.epoch});
    }
    return;
  }
  if (m.kind == MembershipNote::kHandedOff) {
    if (leaving_ && m.config == handoff_config_ && has(handoff_members_, from) &&
        !has(handed_off_from_, from)) {
      handed_off_from_.push_back(from);
      membership_tick();
    }
    return;
  }
  if (!has(removed_, from)) return;
  std::erase(removed_, from);
  std::vector<NodeId> peers = peers_;
  std::erase(peers, from);
  set_peers(std::move(peers));
}

void Node::membership_tick() {
  if (node_retired_ || replaying_) return;
  if (sequencer_.left_group() &&
      (!leaving_ || sequencer_.successor_group().first > handoff_config_)) {
    // Removed by a change this node learned of late (its sequencer never
    // executed it): its copies may have counted, so it hands over like any
    // removed node, to the group that went on without it. Or that group
    // changed again since (its members may be gone): the newest one's
    // members answer as well, having applied everything up to a later
    // switch.
    auto [config, members] = sequencer_.successor_group();
    leaving_ = true;
    handoff_config_ = config;
    handoff_members_ = std::move(members);
    handed_off_from_.clear();
    handoff_asked_tick_ = 0;
  }
  if (!leaving_) return;
  // Rule (docs/membership.md, "Durability across a change"): the new
  // group running (its sequencer started without us) means only that its
  // replicas hold the ordering log; the txs of the epochs up to the
  // switch may be held by this node and a member that then fails. Only
  // once k members applied them durably is this node's copy redundant.
  const size_t k = handoff_members_.size() / 2 + 1;
  if (handed_off_from_.size() >= k && sequencer_.left_group()) {
    node_retired_ = true;
    for (NodeId id : handoff_members_) {
      send_peer(id, MembershipNote{handoff_config_, MembershipNote::kRetired, EpochNumber(0)});
    }
    return;
  }
  if (handoff_asked_tick_ != 0 && ticks_ - handoff_asked_tick_ < kHandoffAskTicks) return;
  handoff_asked_tick_ = std::max<uint64_t>(ticks_, 1);
  const EpochNumber at = handoff_config_ == membership_config_ ? switch_epoch_ : EpochNumber(0);
  for (NodeId id : handoff_members_) {
    if (has(handed_off_from_, id) || id == config_.id) continue;
    send_peer(id, MembershipNote{handoff_config_, MembershipNote::kHandoffWanted, at});
  }
}

void Node::on_install_durable() {
  install_durable_pending_ = false;
  durable_applied_epoch_ = std::max(durable_applied_epoch_, installed_epoch_);
  advance_durable_applied();
}

void Node::advance_durable_applied() {
  if (install_durable_pending_) return;
  while (!applied_marks_.empty() && applied_marks_.front().second <= durable_seq_ + 1) {
    durable_applied_epoch_ = std::max(durable_applied_epoch_, applied_marks_.front().first);
    applied_marks_.pop_front();
  }
}

void Node::note_applied(EpochNumber epoch) {
  if (replaying_ || peers_.empty()) return;
  applied_marks_.emplace_back(epoch, out_.next_seq());
  // Bounded while the disk stalls: a later mark covers a dropped one.
  while (applied_marks_.size() > kAppliedMarksMax) applied_marks_.pop_front();
}

}  // namespace maroon
