#include "sim/vr_common.h"

#include <fmt/format.h>

#include <type_traits>
#include <variant>

namespace maroon::sim {

std::string describe_vr_message(const vr::ReplicaMessage& m) {
  const vr::Header& h = vr::header_of(m);
  std::string s = fmt::format("{} e{} v{}", vr::message_name(m), h.epoch.value(), h.view.value());
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        auto ops = [](const vr::LogSuffix& l) {
          return l.entries.empty()
                     ? fmt::format("after {}", l.after.value())
                     : fmt::format("ops {}..{}", l.after.value() + 1, l.last().value());
        };
        if constexpr (std::is_same_v<T, vr::Prepare>) {
          s += fmt::format(" {} commit {}", ops(x.log), x.commit.value());
        } else if constexpr (std::is_same_v<T, vr::PrepareOk>) {
          s += fmt::format(" op {}", x.op.value());
        } else if constexpr (std::is_same_v<T, vr::Commit>) {
          s += fmt::format(" commit {}", x.commit.value());
        } else if constexpr (std::is_same_v<T, vr::DoViewChange>) {
          s += fmt::format(" lnv {} {} commit {}", x.last_normal_view.value(), ops(x.log),
                           x.commit.value());
        } else if constexpr (std::is_same_v<T, vr::StartView>) {
          s += fmt::format(" {} commit {}", ops(x.log), x.commit.value());
        } else if constexpr (std::is_same_v<T, vr::RecoveryResponse>) {
          s +=
              fmt::format(" primary {} {} commit {}", x.from_primary, ops(x.log), x.commit.value());
        } else if constexpr (std::is_same_v<T, vr::GetState>) {
          s += fmt::format(" after {}{}", x.after.value(), x.start_view ? " (start view)" : "");
        } else if constexpr (std::is_same_v<T, vr::NewState>) {
          s += fmt::format(
              " {} commit {} head {}{}", ops(x.log), x.commit.value(), x.head.value(),
              x.checkpoint ? fmt::format(" checkpoint {}", x.checkpoint->op.value()) : "");
        } else if constexpr (std::is_same_v<T, vr::StartEpoch>) {
          s += fmt::format(" op {} members {}", x.op.value(), x.members.size());
        }
      },
      m);
  return s;
}

void random_vr_timing(Prng& p, vr::Options& o) {
  o.heartbeat_ticks = static_cast<uint32_t>(1 + p.below(3));
  o.lease_ticks = o.heartbeat_ticks * 3 + static_cast<uint32_t>(p.below(10));
  o.view_change_timeout_ticks = o.lease_ticks + static_cast<uint32_t>(p.below(20));
  o.retry_ticks = static_cast<uint32_t>(1 + p.below(8));
  o.prepare_batch_ops_max = 1 + p.below(16);
}

}  // namespace maroon::sim
