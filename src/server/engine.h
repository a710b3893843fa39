// The engine as the client-facing servers (RESP, HTTP, native) see it. One
// implementation drives the node, gateway and sequencer cores (server/driver);
// tests use a fake. Every method is called on the event-loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/address_book.h"
#include "maroon/app.h"
#include "maroon/status.h"
#include "common/types.h"
#include "host/transfer_status.h"
#include "objstore/uploader.h"
#include "server/metrics.h"

namespace maroon::server {

// Called exactly once, on the event-loop thread. On success `reply` is the
// app's encoded reply; otherwise `status` says why the op was not executed
// (overloaded, unavailable, too large). The view is valid only during the call.
using ReplyFn = std::function<void(const Status& status, std::string_view reply)>;

struct EngineStatus {
  bool serving = false;    // replay finished and a range leased
  bool read_only = false;  // a WAL error stopped writes
  std::string detail;      // why not serving / why read-only
  // Part of a working quorum (a node: its VR replica; a standalone gateway:
  // linked to enough nodes). Without one, writes and ordered reads are
  // refused ("no quorum") or time out ("outcome unknown").
  bool quorum = true;
  std::string unavailable_reason;  // why no quorum; empty while quorum
  uint64_t node_id = 0;
  uint64_t data_id = 0;  // names the data directory; changes if it is wiped
  uint64_t range = 0;          // the gateway's current range
  uint64_t applied_epoch = 0;  // last applied epoch number
  uint64_t applied_txs = 0;
  uint64_t state_hash = 0;
  uint64_t inflight_txs = 0;
  // The sequencer and the node's progress (a cluster's `maroon status`).
  std::string role;  // "primary", "backup", "view-change", "recovering", "single"
  uint64_t view = 0;
  uint64_t primary = 0;       // node id of the VR primary
  uint64_t commit_epoch = 0;  // last committed epoch known
  uint64_t held_txs = 0;
  uint64_t epochs_waiting = 0;
  // (range, durable offset) for this node's newest ranges: every offset up
  // to it is durable here (or committed).
  std::vector<std::pair<uint64_t, uint64_t>> offsets;
  // Snapshots (docs/snapshots.md): the newest one kept, how many this
  // process took, whether one is being taken, and the last failure.
  uint64_t snapshot_epoch = 0;
  uint64_t snapshot_bytes = 0;
  uint64_t snapshots_taken = 0;
  bool snapshot_in_progress = false;
  std::string snapshot_error;
  // The log's first segment (above 1 once compacted).
  uint64_t wal_first_segment = 0;
  // Snapshot transfer (docs/snapshots.md, "Transfer").
  host::TransferStatus transfer;
  // Uploads to an object store (docs/backups.md); unset: none configured.
  std::optional<objstore::UploaderStatus> backup;
  // The group (docs/membership.md): its membership config (0: as created),
  // members, and the last epoch of the previous config. `leaving`: the last
  // change removed this node, which serves its peers until it retired.
  uint64_t membership_epoch = 0;
  std::vector<uint64_t> members;
  std::vector<uint64_t> removed;  // ids removed by any change, never members again
  uint64_t switch_epoch = 0;
  bool leaving = false;
  bool retired = false;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // Orders and executes a write op: assigns a tx id, makes the tx durable,
  // orders it in an epoch, executes it; then calls done with the reply.
  virtual void submit(AppId app, std::string op, ReplyFn done) = 0;
  // Executes a read-only op against the applied state. On one node this is
  // linearizable: applied state contains every acknowledged write.
  virtual Result<std::string> read(AppId app, std::string_view op) = 0;
  // The apps this process serves (include/maroon/app.h).
  virtual const AppRegistry& apps() const = 0;
  virtual EngineStatus status() const = 0;
  // Asks for a snapshot now (docs/snapshots.md); an error if this engine
  // takes none (a gateway) or cannot now.
  virtual Status request_snapshot() { return unavailable("this process keeps no snapshots"); }
  // Asks for a snapshot now, uploaded to the object store as soon as it is
  // written (docs/backups.md); an error if no store is configured. Done
  // once status().backup counts more uploads than `uploads` with one of
  // `min_epoch` or later.
  struct BackupTicket {
    uint64_t uploads = 0;
    uint64_t min_epoch = 0;
  };
  virtual Result<BackupTicket> request_backup() {
    return unavailable("this process keeps no snapshots");
  }
  // True when read ops must go through submit() to be linearizable (a
  // cluster node or a gateway); read() then serves only explicitly stale
  // reads (the native protocol's read-only flag).
  virtual bool orders_reads() const { return false; }
  // Asks the group to become `members` (docs/membership.md, POST
  // /v1/admin/members): only on the primary, only from membership config
  // `expect_epoch`. Accepted means proposed, not committed: status()
  // shows membership_epoch move once it is.
  virtual Status request_membership(uint64_t /*expect_epoch*/,
                                    std::vector<cluster::NodeAddress> /*members*/) {
    return unavailable("this process holds no replica of the group: ask a node");
  }
  // The engine calls `stop(why)` when it must stop on its own (a node the
  // group removed, once it handed over); the server then drains and exits 0,
  // as on SIGTERM.
  virtual void set_stop_handler(std::function<void(std::string why)> /*stop*/) {}
  virtual Registry& metrics() = 0;
};

}  // namespace maroon::server
