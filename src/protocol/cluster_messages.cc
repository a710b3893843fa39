#include "protocol/cluster_messages.h"

#include <algorithm>
#include <limits>

#include "maroon/assert.h"
#include "common/codec.h"

namespace maroon::protocol {

namespace {

Status malformed(const char* what, const char* why) {
  return invalid_argument(std::string("malformed ") + what + " message: " + why);
}

size_t varint_bytes(uint64_t v) {
  size_t n = 1;
  for (; v >= 0x80; v >>= 7) n++;
  return n;
}

// Every payload but kVr's starts with the format byte.
bool read_format(ByteReader& r) {
  uint8_t format = 0;
  return r.u8(format) && format == kClusterFormat;
}

bool is_valid_offset(uint64_t offset) { return offset <= kOffsetMax; }

// Reads a varint count of items that take at least `item_bytes_min` each and
// rejects one over `count_max` or over what the bytes left could hold, so the
// caller may reserve `count` items. Returns the reason, or nullptr.
const char* read_count(ByteReader& r, size_t count_max, size_t item_bytes_min, bool may_be_empty,
                       uint64_t& count) {
  if (!r.varint(count)) return "short";
  if (count == 0 && !may_be_empty) return "empty batch";
  if (count > count_max) return "count over bound";
  if (count > r.remaining() / item_bytes_min) return "count exceeds the bytes left";
  return nullptr;
}

void write_tx(ByteWriter& w, const TxMsg& tx) {
  MAROON_ASSERT(is_valid_tx_id(tx.id));
  MAROON_ASSERT(tx.op.size() <= limits::op_bytes_max);
  w.u64(tx.id.raw());
  w.u32(tx.app.value());
  w.bytes(tx.op);
}

// The items of a kTx or kTxPush payload. A batch is one item or within
// cluster_batch_bytes_max (cluster_messages.h).
void write_tx_batch(std::span<const TxMsg> txs, ByteWriter& w) {
  MAROON_ASSERT(txs.size() <= cluster_batch_txs_max);
  w.varint(txs.size());
  size_t bytes = 0;
  for (const TxMsg& tx : txs) {
    write_tx(w, tx);
    bytes += encoded_tx_bytes(tx);
  }
  MAROON_ASSERT(txs.size() <= 1 || bytes <= cluster_batch_bytes_max);
}

Result<std::vector<TxMsg>> read_tx_batch(ByteReader& r, const char* what, bool may_be_empty) {
  uint64_t count = 0;
  if (const char* why =
          read_count(r, cluster_batch_txs_max, kBatchItemBytesMin, may_be_empty, count)) {
    return malformed(what, why);
  }
  std::vector<TxMsg> txs;
  txs.reserve(count);
  size_t bytes = 0;
  for (uint64_t k = 0; k < count; k++) {
    uint64_t id = 0;
    uint32_t app = 0;
    std::string_view op;
    if (!r.u64(id) || !r.u32(app)) return malformed(what, "short tx");
    if (!r.bytes(op, limits::op_bytes_max)) return malformed(what, "short or oversize op");
    if (!is_valid_tx_id(TxId(id))) return malformed(what, "tx id with range or offset 0");
    // Any app id decodes; the node refuses apps it does not run.
    txs.push_back(TxMsg{TxId(id), AppId(app), std::string(op)});
    bytes += encoded_tx_bytes(txs.back());
  }
  // What the encoder refuses, the decoder refuses.
  if (count > 1 && bytes > cluster_batch_bytes_max) {
    return malformed(what, "batch over bytes bound");
  }
  return txs;
}

// RenewLease and LeaseGranted share a layout: u64 gateway, varint range.
void write_gateway_range(FrameType type, GatewayId gateway, RangeId range, std::string& out) {
  MAROON_ASSERT(gateway.value() != 0);
  MAROON_ASSERT(is_valid_range(range));
  const size_t start = start_frame(type, out);
  ByteWriter w(out);
  w.u8(kClusterFormat);
  w.u64(gateway.value());
  w.varint(range.value());
  finish_frame(start, out);
}

Status read_gateway_range(std::string_view payload, const char* what, GatewayId& gateway,
                          RangeId& range) {
  ByteReader r(payload);
  if (!read_format(r)) return malformed(what, "short or unknown format");
  uint64_t g = 0, rg = 0;
  if (!r.u64(g) || !r.varint(rg)) return malformed(what, "short");
  if (!r.at_end()) return malformed(what, "trailing bytes");
  if (g == 0) return malformed(what, "gateway 0");
  if (!is_valid_range(RangeId(rg))) return malformed(what, "range 0 or out of range");
  gateway = GatewayId(g);
  range = RangeId(rg);
  return Status::ok();
}

// The layout of kTxEvicted and kRangeSealed: a range and an offset. The
// callers check the offset's bounds.
void write_range_offset(FrameType type, RangeId range, uint64_t offset, std::string& out) {
  MAROON_ASSERT(is_valid_range(range));
  const size_t start = start_frame(type, out);
  ByteWriter w(out);
  w.u8(kClusterFormat);
  w.varint(range.value());
  w.varint(offset);
  finish_frame(start, out);
}

Status read_range_offset(std::string_view payload, const char* what, RangeId& range,
                         uint64_t& offset) {
  ByteReader r(payload);
  if (!read_format(r)) return malformed(what, "short or unknown format");
  uint64_t rg = 0;
  if (!r.varint(rg) || !r.varint(offset)) return malformed(what, "short");
  if (!r.at_end()) return malformed(what, "trailing bytes");
  if (!is_valid_range(RangeId(rg))) return malformed(what, "range 0 or out of range");
  range = RangeId(rg);
  return Status::ok();
}

}  // namespace

size_t encoded_tx_bytes(const TxMsg& tx) {
  return 8 + 4 + varint_bytes(tx.op.size()) + tx.op.size();
}

size_t encoded_result_bytes(const TxResult& result) {
  return 8 + 1 + varint_bytes(result.reply.size()) + result.reply.size();
}

// --- node -> node ---

void encode_vr(std::string_view vr_bytes, std::string& out) {
  MAROON_ASSERT(vr_bytes.size() <= kFramePayloadBytesMax);
  const size_t start = start_frame(FrameType::kVr, out);
  out.append(vr_bytes);
  finish_frame(start, out);
}

void encode_offsets(const Offsets& m, std::string& out) {
  MAROON_ASSERT(m.durable.size() <= offsets_ranges_max);
  MAROON_ASSERT(m.digests.empty() || m.digests.size() == m.durable.size());
  const bool digests = !m.digests.empty();
  size_t digests_total = 0;
  const size_t start = start_frame(FrameType::kOffsets, out);
  ByteWriter w(out);
  w.u8(kClusterFormat);
  w.u8((m.full ? kOffsetsFull : 0) | (digests ? kOffsetsDigests : 0));
  w.varint(m.hash_epoch.value());
  w.u64(m.state_hash);
  w.varint(m.durable.size());
  for (size_t k = 0; k < m.durable.size(); k++) {
    const auto& [range, offset] = m.durable[k];
    MAROON_ASSERT(is_valid_range(range));
    MAROON_ASSERT(is_valid_offset(offset));
    MAROON_ASSERT(k == 0 || m.durable[k - 1].first < range);
    w.varint(range.value());
    w.varint(offset);
    if (!digests) continue;
    const std::vector<uint64_t>& list = m.digests[k];
    MAROON_ASSERT(list.size() <= offset);
    digests_total += list.size();
    MAROON_ASSERT(digests_total <= offsets_digests_max);
    w.varint(list.size());
    for (uint64_t d : list) w.u64(d);
  }
  finish_frame(start, out);
}

Result<Offsets> decode_offsets(std::string_view payload) {
  constexpr const char* what = "offsets";
  ByteReader r(payload);
  if (!read_format(r)) return malformed(what, "short or unknown format");
  Offsets m;
  uint8_t flags = 0;
  uint64_t hash_epoch = 0, count = 0;
  if (!r.u8(flags) || !r.varint(hash_epoch) || !r.u64(m.state_hash)) {
    return malformed(what, "short header");
  }
  if ((flags & ~kOffsetsFlagsKnown) != 0) return malformed(what, "unknown flags");
  m.full = (flags & kOffsetsFull) != 0;
  m.hash_epoch = EpochNumber(hash_epoch);
  // A pair is at least two one-byte varints.
  if (const char* why = read_count(r, offsets_ranges_max, 2, /*may_be_empty=*/true, count)) {
    return malformed(what, why);
  }
  m.durable.reserve(count);
  const bool digests = (flags & kOffsetsDigests) != 0;
  if (digests) m.digests.reserve(count);
  size_t digests_total = 0;
  for (uint64_t k = 0; k < count; k++) {
    uint64_t range = 0, offset = 0;
    if (!r.varint(range) || !r.varint(offset)) return malformed(what, "short range");
    if (!is_valid_range(RangeId(range))) return malformed(what, "range 0 or out of range");
    if (!is_valid_offset(offset)) return malformed(what, "offset over kOffsetMax");
    if (k > 0 && !(m.durable.back().first < RangeId(range))) {
      return malformed(what, "ranges not strictly ascending");
    }
    m.durable.emplace_back(RangeId(range), offset);
    if (!digests) continue;
    uint64_t n = 0;
    if (const char* why = read_count(r, offsets_digests_max - digests_total, 8,
                                     /*may_be_empty=*/true, n)) {
      return malformed("offsets digests", why);
    }
    if (n > offset) return malformed(what, "more digests than offsets");
    digests_total += n;
    std::vector<uint64_t>& list = m.digests.emplace_back(n);
    for (uint64_t& d : list) r.u64(d);
  }
  if (!r.at_end()) return malformed(what, "trailing bytes");
  return m;
}

void encode_tx_pull(const TxPull& m, std::string& out) {
  MAROON_ASSERT(is_valid_range(m.range));
  MAROON_ASSERT(m.first >= 1 && m.first <= m.last && m.last <= kOffsetMax);
  const size_t start = start_frame(FrameType::kTxPull, out);
  ByteWriter w(out);
  w.u8(kClusterFormat);
  w.varint(m.range.value());
  w.varint(m.first);
  w.varint(m.last);
  finish_frame(start, out);
}

Result<TxPull> decode_tx_pull(std::string_view payload) {
  constexpr const char* what = "tx pull";
  ByteReader r(payload);
  if (!read_format(r)) return malformed(what, "short or unknown format");
  uint64_t range = 0;
  TxPull m;
  if (!r.varint(range) || !r.varint(m.first) || !r.varint(m.last)) return malformed(what, "short");
  if (!r.at_end()) return malformed(what, "trailing bytes");
  m.range = RangeId(range);
  if (!is_valid_range(m.range)) return malformed(what, "range 0 or out of range");
  if (m.first < 1 || m.first > m.last || m.last > kOffsetMax) {
    return malformed(what, "bad offset interval");
  }
  return m;
}

void encode_tx_push(const TxPush& m, std::string& out) {
  const size_t start = start_frame(FrameType::kTxPush, out);
  ByteWriter w(out);
  w.u8(kClusterFormat);
  write_tx_batch(m.txs, w);
  finish_frame(start, out);
}

Result<TxPush> decode_tx_push(std::string_view payload) {
  constexpr const char* what = "tx push";
  ByteReader r(payload);
  if (!read_format(r)) return malformed(what, "short or unknown format");
  auto txs = read_tx_batch(r, what, /*may_be_empty=*/true);
  if (!txs) return txs.status();
  if (!r.at_end()) return malformed(what, "trailing bytes");
  return TxPush{std::move(*txs)};
}

void encode_tx_evicted(const TxEvicted& m, std::string& out) {
  MAROON_ASSERT(m.offset >= 1 && is_valid_offset(m.offset));
  write_range_offset(FrameType::kTxEvicted, m.range, m.offset, out);
}

Result<TxEvicted> decode_tx_evicted(std::string_view payload) {
  constexpr const char* what = "tx evicted";
  TxEvicted m;
  if (Status s = read_range_offset(payload, what, m.range, m.offset); !s) return s;
  if (m.offset < 1 || !is_valid_offset(m.offset)) return malformed(what, "bad offset");
  return m;
}

// --- snapshot transfer ---

namespace {

template <typename Fn>
void write_frame(FrameType type, std::string& out, Fn&& body) {
  const size_t start = start_frame(type, out);
  ByteWriter w(out);
  w.u8(kClusterFormat);
  body(w);
  finish_frame(start, out);
}

}  // namespace

void encode_group_members(const GroupMembers& m, std::string& out) {
  MAROON_ASSERT(!m.members.empty() && m.members.size() < 64);
  MAROON_ASSERT(m.address_book.size() <= kGroupBookBytesMax);
  write_frame(FrameType::kGroupMembers, out, [&](ByteWriter& w) {
    w.varint(m.config);
    w.varint(m.members.size());
    for (NodeId id : m.members) w.varint(id.value());
    w.bytes(m.address_book);
  });
}

Result<GroupMembers> decode_group_members(std::string_view payload) {
  constexpr const char* what = "group members";
  ByteReader r(payload);
  GroupMembers m;
  uint64_t count = 0;
  if (!read_format(r)) return malformed(what, "short or unknown format");
  if (!r.varint(m.config) || !r.varint(count)) return malformed(what, "short");
  if (count == 0 || count >= 64) return malformed(what, "member count out of range");
  uint64_t seen = 0;
  for (uint64_t i = 0; i < count; i++) {
    uint64_t id = 0;
    if (!r.varint(id)) return malformed(what, "short");
    if (id == 0 || id >= 64) return malformed(what, "member id out of range");
    if ((seen >> id) & 1) return malformed(what, "a member listed twice");
    seen |= uint64_t{1} << id;
    m.members.push_back(NodeId(static_cast<uint32_t>(id)));
  }
  std::string_view book;
  if (!r.bytes(book, kGroupBookBytesMax)) return malformed(what, "short or oversize address book");
  if (!r.at_end()) return malformed(what, "trailing bytes");
  m.address_book = std::string(book);
  return m;
}

void encode_membership_note(const MembershipNote& m, std::string& out) {
  MAROON_ASSERT(m.config >= 1);
  MAROON_ASSERT(m.kind == MembershipNote::kHandedOff || m.kind == MembershipNote::kRetired ||
                m.kind == MembershipNote::kHandoffWanted);
  write_frame(FrameType::kMembershipNote, out, [&](ByteWriter& w) {
    w.varint(m.config);
    w.u8(m.kind);
    w.varint(m.epoch.value());
  });
}

Result<MembershipNote> decode_membership_note(std::string_view payload) {
  constexpr const char* what = "membership note";
  ByteReader r(payload);
  uint64_t config = 0, epoch = 0;
  uint8_t kind = 0;
  if (!read_format(r)) return malformed(what, "short or unknown format");
  if (!r.varint(config) || !r.u8(kind) || !r.varint(epoch)) return malformed(what, "short");
  if (!r.at_end()) return malformed(what, "trailing bytes");
  if (config == 0) return malformed(what, "config 0");
  if (kind != MembershipNote::kHandedOff && kind != MembershipNote::kRetired &&
      kind != MembershipNote::kHandoffWanted) {
    return malformed(what, "unknown kind");
  }
  return MembershipNote{config, static_cast<MembershipNote::Kind>(kind), EpochNumber(epoch)};
}

void encode_snapshot_wanted(const SnapshotWanted& m, std::string& out) {
  MAROON_ASSERT(m.need.value() >= 1);
  write_frame(FrameType::kSnapshotWanted, out, [&](ByteWriter& w) { w.varint(m.need.value()); });
}

Result<SnapshotWanted> decode_snapshot_wanted(std::string_view payload) {
  constexpr const char* what = "snapshot wanted";
  ByteReader r(payload);
  uint64_t need = 0;
  if (!read_format(r)) return malformed(what, "short or unknown format");
  if (!r.varint(need)) return malformed(what, "short");
  if (!r.at_end()) return malformed(what, "trailing bytes");
  if (need == 0) return malformed(what, "epoch 0");
  return SnapshotWanted{EpochNumber(need)};
}

void encode_snapshot_offer(const SnapshotOffer& m, std::string& out) {
  MAROON_ASSERT((m.epoch.value() == 0) == (m.bytes == 0));
  write_frame(FrameType::kSnapshotOffer, out, [&](ByteWriter& w) {
    w.varint(m.epoch.value());
    w.varint(m.bytes);
  });
}

Result<SnapshotOffer> decode_snapshot_offer(std::string_view payload) {
  constexpr const char* what = "snapshot offer";
  ByteReader r(payload);
  uint64_t epoch = 0, bytes = 0;
  if (!read_format(r)) return malformed(what, "short or unknown format");
  if (!r.varint(epoch) || !r.varint(bytes)) return malformed(what, "short");
  if (!r.at_end()) return malformed(what, "trailing bytes");
  if ((epoch == 0) != (bytes == 0)) return malformed(what, "an epoch without bytes or bytes without one");
  return SnapshotOffer{EpochNumber(epoch), bytes};
}

void encode_snapshot_pull(const SnapshotPull& m, std::string& out) {
  MAROON_ASSERT(m.epoch.value() >= 1 && m.length >= 1 && m.length <= snapshot_chunk_bytes_max);
  write_frame(FrameType::kSnapshotPull, out, [&](ByteWriter& w) {
    w.varint(m.epoch.value());
    w.varint(m.offset);
    w.varint(m.length);
  });
}

Result<SnapshotPull> decode_snapshot_pull(std::string_view payload) {
  constexpr const char* what = "snapshot pull";
  ByteReader r(payload);
  uint64_t epoch = 0, offset = 0, length = 0;
  if (!read_format(r)) return malformed(what, "short or unknown format");
  if (!r.varint(epoch) || !r.varint(offset) || !r.varint(length)) return malformed(what, "short");
  if (!r.at_end()) return malformed(what, "trailing bytes");
  if (epoch == 0) return malformed(what, "epoch 0");
  if (length == 0 || length > snapshot_chunk_bytes_max) return malformed(what, "bad length");
  return SnapshotPull{EpochNumber(epoch), offset, static_cast<uint32_t>(length)};
}

void encode_snapshot_chunk(const SnapshotChunk& m, std::string& out) {
  MAROON_ASSERT(m.epoch.value() >= 1 && m.data.size() <= snapshot_chunk_bytes_max);
  MAROON_ASSERT(m.total == 0 ? m.data.empty()
                             : !m.data.empty() && m.offset < m.total &&
                                   m.data.size() <= m.total - m.offset);
  write_frame(FrameType::kSnapshotChunk, out, [&](ByteWriter& w) {
    w.varint(m.epoch.value());
    w.varint(m.offset);
    w.varint(m.total);
    w.u64(m.checksum);
    w.bytes(m.data);
  });
}

Result<SnapshotChunk> decode_snapshot_chunk(std::string_view payload) {
  constexpr const char* what = "snapshot chunk";
  ByteReader r(payload);
  SnapshotChunk m;
  uint64_t epoch = 0;
  std::string_view data;
  if (!read_format(r)) return malformed(what, "short or unknown format");
  if (!r.varint(epoch) || !r.varint(m.offset) || !r.varint(m.total) || !r.u64(m.checksum) ||
      !r.bytes(data, snapshot_chunk_bytes_max)) {
    return malformed(what, "short");
  }
  if (!r.at_end()) return malformed(what, "trailing bytes");
  if (epoch == 0) return malformed(what, "epoch 0");
  if (m.total == 0 ? !data.empty()
                   : data.empty() || m.offset >= m.total || data.size() > m.total - m.offset) {
    return malformed(what, "data outside the file");
  }
  m.epoch = EpochNumber(epoch);
  m.data = std::string(data);
  return m;
}

// --- gateway -> node ---

void encode_txs(std::span<const TxMsg> txs, std::string& out) {
  MAROON_ASSERT(!txs.empty());
  const size_t start = start_frame(FrameType::kTx, out);
  ByteWriter w(out);
  w.u8(kClusterFormat);
  write_tx_batch(txs, w);
  finish_frame(start, out);
}

Result<std::vector<TxMsg>> decode_txs(std::string_view payload) {
  constexpr const char* what = "tx";
  ByteReader r(payload);
  if (!read_format(r)) return malformed(what, "short or unknown format");
  auto txs = read_tx_batch(r, what, /*may_be_empty=*/false);
  if (!txs) return txs.status();
  if (!r.at_end()) return malformed(what, "trailing bytes");
  return txs;
}

void encode_lease_request(const LeaseRequest& m, std::string& out) {
  MAROON_ASSERT(m.gateway.value() != 0);
  MAROON_ASSERT(m.after.value() == 0 || is_valid_range(m.after));
  const size_t start = start_frame(FrameType::kLeaseRequest, out);
  ByteWriter w(out);
  w.u8(kClusterFormat);
  w.u64(m.gateway.value());
  w.varint(m.after.value());
  finish_frame(start, out);
}

Result<LeaseRequest> decode_lease_request(std::string_view payload) {
  constexpr const char* what = "lease request";
  ByteReader r(payload);
  if (!read_format(r)) return malformed(what, "short or unknown format");
  uint64_t gateway = 0, after = 0;
  if (!r.u64(gateway) || !r.varint(after)) return malformed(what, "short");
  if (!r.at_end()) return malformed(what, "trailing bytes");
  if (gateway == 0) return malformed(what, "gateway 0");
  if (after != 0 && !is_valid_range(RangeId(after))) return malformed(what, "range out of range");
  return LeaseRequest{GatewayId(gateway), RangeId(after)};
}

void encode_renew_lease(const RenewLease& m, std::string& out) {
  write_gateway_range(FrameType::kRenewLease, m.gateway, m.range, out);
}

Result<RenewLease> decode_renew_lease(std::string_view payload) {
  RenewLease m;
  if (Status s = read_gateway_range(payload, "renew lease", m.gateway, m.range); !s) return s;
  return m;
}

// --- node -> gateway ---

void encode_tx_acks(NodeId node, std::span<const TxId> ids, std::string& out) {
  MAROON_ASSERT(node.value() != 0);
  MAROON_ASSERT(!ids.empty() && ids.size() <= cluster_batch_txs_max);
  const size_t start = start_frame(FrameType::kTxAck, out);
  ByteWriter w(out);
  w.u8(kClusterFormat);
  w.varint(node.value());
  w.varint(ids.size());
  for (TxId id : ids) {
    MAROON_ASSERT(is_valid_tx_id(id));
    w.u64(id.raw());
  }
  finish_frame(start, out);
}

Result<TxAcks> decode_tx_acks(std::string_view payload) {
  constexpr const char* what = "tx ack";
  ByteReader r(payload);
  if (!read_format(r)) return malformed(what, "short or unknown format");
  uint64_t node = 0, count = 0;
  if (!r.varint(node)) return malformed(what, "short");
  if (node == 0 || node > std::numeric_limits<uint32_t>::max()) {
    return malformed(what, "node 0 or out of range");
  }
  if (const char* why = read_count(r, cluster_batch_txs_max, 8, /*may_be_empty=*/false, count)) {
    return malformed(what, why);
  }
  TxAcks m{NodeId(static_cast<uint32_t>(node)), {}};
  m.ids.reserve(count);
  for (uint64_t k = 0; k < count; k++) {
    uint64_t id = 0;
    if (!r.u64(id)) return malformed(what, "short id");
    if (!is_valid_tx_id(TxId(id))) return malformed(what, "tx id with range or offset 0");
    m.ids.push_back(TxId(id));
  }
  if (!r.at_end()) return malformed(what, "trailing bytes");
  return m;
}

void encode_tx_results(std::span<const TxResult> results, std::string& out) {
  MAROON_ASSERT(!results.empty() && results.size() <= cluster_batch_txs_max);
  const size_t start = start_frame(FrameType::kTxResult, out);
  ByteWriter w(out);
  w.u8(kClusterFormat);
  w.varint(results.size());
  size_t bytes = 0;
  for (const TxResult& res : results) {
    MAROON_ASSERT(is_valid_tx_id(res.id));
    MAROON_ASSERT(res.reply.size() <= limits::reply_bytes_max);
    MAROON_ASSERT(!res.expired || res.reply.empty());
    w.u64(res.id.raw());
    w.u8(res.expired ? kResultExpired : 0);
    w.bytes(res.reply);
    bytes += encoded_result_bytes(res);
  }
  MAROON_ASSERT(results.size() == 1 || bytes <= cluster_batch_bytes_max);
  finish_frame(start, out);
}

Result<std::vector<TxResult>> decode_tx_results(std::string_view payload) {
  constexpr const char* what = "tx result";
  ByteReader r(payload);
  if (!read_format(r)) return malformed(what, "short or unknown format");
  uint64_t count = 0;
  if (const char* why = read_count(r, cluster_batch_txs_max, kBatchItemBytesMin,
                                   /*may_be_empty=*/false, count)) {
    return malformed(what, why);
  }
  std::vector<TxResult> results;
  results.reserve(count);
  size_t bytes = 0;
  for (uint64_t k = 0; k < count; k++) {
    uint64_t id = 0;
    uint8_t flags = 0;
    std::string_view reply;
    if (!r.u64(id) || !r.u8(flags)) return malformed(what, "short result");
    if (!r.bytes(reply, limits::reply_bytes_max)) return malformed(what, "short or oversize reply");
    if (!is_valid_tx_id(TxId(id))) return malformed(what, "tx id with range or offset 0");
    if ((flags & ~kResultFlagsKnown) != 0) return malformed(what, "unknown flags");
    const bool expired = (flags & kResultExpired) != 0;
    if (expired && !reply.empty()) return malformed(what, "expired result with a reply");
    results.push_back(TxResult{TxId(id), std::string(reply), expired});
    bytes += encoded_result_bytes(results.back());
  }
  if (count > 1 && bytes > cluster_batch_bytes_max) {
    return malformed(what, "batch over bytes bound");
  }
  if (!r.at_end()) return malformed(what, "trailing bytes");
  return results;
}

void encode_lease_granted(const LeaseGranted& m, std::string& out) {
  write_gateway_range(FrameType::kLeaseGranted, m.gateway, m.range, out);
}

Result<LeaseGranted> decode_lease_granted(std::string_view payload) {
  LeaseGranted m;
  if (Status s = read_gateway_range(payload, "lease granted", m.gateway, m.range); !s) return s;
  return m;
}

void encode_range_sealed(const RangeSealed& m, std::string& out) {
  MAROON_ASSERT(is_valid_offset(m.last));
  write_range_offset(FrameType::kRangeSealed, m.range, m.last, out);
}

Result<RangeSealed> decode_range_sealed(std::string_view payload) {
  constexpr const char* what = "range sealed";
  RangeSealed m;
  if (Status s = read_range_offset(payload, what, m.range, m.last); !s) return s;
  if (!is_valid_offset(m.last)) return malformed(what, "offset over kOffsetMax");
  return m;
}

}  // namespace maroon::protocol
