#include "host/node_host.h"

namespace maroon::host {


Result<std::unique_ptr<DataDir>> NodeHost::open(Env& env, const DataDirOptions& options,
                                                ReplayCounts& counts,
                                                const std::function<void()>& after_record) {
  DataDirOptions o = options;
  if (snapshots_enabled()) {
    o.before_log = [&](bool fresh) { return load_snapshot(fresh, counts, after_record); };
    // A cluster node keeps executed txs for lagging peers: the covered log
    // gives them back. A single node needs none of it, and skips reading it.
    if (node_.members().size() > 1) {
      o.on_covered_record = [&](uint8_t type, std::string_view payload) {
        return node_.replay_covered(static_cast<RecordType>(type), payload);
      };
    }
  }
  auto dir = DataDir::open(
      env, o,
      [&](std::string_view state) {
        sequencer_state_ = std::string(state);
        superblock_state_seen_ = true;
        return node_.replay(RecordType::kVrState, state);
      },
      [&](uint8_t type, std::string_view payload) {
        counts.records++;
        if (type == static_cast<uint8_t>(RecordType::kVrLog)) counts.epochs++;
        if (type == static_cast<uint8_t>(RecordType::kTx)) counts.txs++;
        Status st = node_.replay(static_cast<RecordType>(type), payload);
        if (st.is_ok() && after_record) after_record();
        return st;
      });
  if (!dir) {
    if (warnings_.empty()) return dir;
    std::string also;
    for (const std::string& w : warnings_) also += "; " + w;
    return Status(dir.status().code(), dir.status().message() + also);
  }
  wal_lsn_at_open_ = (*dir)->wal().last_lsn().value();
  if ((*dir)->log_lost()) {
    // Its replica must not vote until it has recovered what it lost.
    node_.note_log_lost();
    log_lost_ = true;
  }
  node_.finish_replay();
  // Not drained here: the caller may need to set up its network first.
  return dir;
}

bool NodeHost::drain() {
  bool any = false;
  for (int rounds = 0;; rounds++) {
    // The node's outputs do not feed back into it: one round takes all.
    MAROON_ASSERT(rounds < 1000);
    Output out = node_.take_output();
    if (out.empty()) break;
    any = true;
    route(std::move(out));
  }
  return any;
}

void NodeHost::route(Output out) {
  for (PersistRecord& r : out.persist) {
    if (r.type == RecordType::kVrState) {
      sequencer_state_ = r.payload;
      order_.add_state(std::move(r.payload));
    } else {
      order_.add_record(static_cast<uint8_t>(r.type), r.payload);
    }
  }
  if (!out.persist.empty()) order_.emitted(out.next_seq() - 1);
  for (PeerEnvelope& e : out.peer_now) sink_.to_peer(std::move(e));
  for (GatewayEnvelope& e : out.send_now) sink_.to_gateway(std::move(e));
  // After-persist messages wait for every record emitted so far, not only
  // this output's.
  const uint64_t needed = out.next_seq() - 1;
  auto send = [this](HeldMessage m) { this->send(std::move(m)); };
  for (PeerEnvelope& e : out.peer_after_persist) order_.after_persist(needed, std::move(e), send);
  for (GatewayEnvelope& e : out.send_after_persist) {
    order_.after_persist(needed, std::move(e), send);
  }
}

void NodeHost::send(HeldMessage m) {
  if (auto* p = std::get_if<PeerEnvelope>(&m)) {
    sink_.to_peer(std::move(*p));
  } else {
    sink_.to_gateway(std::get<GatewayEnvelope>(std::move(m)));
  }
}

std::optional<PendingWrite> NodeHost::take_write() {
  if (order_.writing() || failed_) return std::nullopt;
  // The node may add an epoch ordering the txs of this very write.
  node_.on_flush();
  drain();
  if (log_lost_ && !node_.log_lost()) {
    // The sequencer took back what the log lost, in records routed by now:
    // the directory forgets the loss once they are durable.
    order_.mark_log_recovered();
    log_lost_ = false;
  }
  if (!order_.has_pending()) return std::nullopt;
  return order_.take_write();
}

void NodeHost::written(uint64_t last_seq, const std::function<void()>& start_next) {
  order_.written(last_seq, [this](HeldMessage m) { send(std::move(m)); });
  if (start_next) start_next();
  node_.on_persisted(last_seq);
  drain();
}

void NodeHost::write_failed() {
  order_.failed();
  failed_ = true;
}

}  // namespace maroon::host
