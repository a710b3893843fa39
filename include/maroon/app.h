// The apps a maroon binary runs, by name. A program registers its apps in an
// AppRegistry and hands it to maroon::run_cli (maroon/cli.h); every node and
// gateway that binary starts then runs them. See docs/apps.md.
//
//   int main(int argc, char** argv) {
//     maroon::AppRegistry apps = maroon::builtin_apps();
//     if (auto s = apps.add("hello", [] { return std::make_unique<HelloApp>(); }); !s) {
//       std::fprintf(stderr, "%s\n", s.to_string().c_str());
//       return 1;
//     }
//     return maroon::run_cli(argc, argv, apps);
//   }
//
// Every node of a cluster must run the same apps, and a gateway a subset of
// them: links between processes that differ are refused (their hellos list
// their apps), since a node lacking an app would execute its txs as nothing.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "maroon/app_id.h"
#include "maroon/state_machine.h"
#include "maroon/status.h"

namespace maroon {

// Makes a fresh app with an empty state. Called once per node process (and
// by tests as often as they like); the app then lives as long as the node.
using AppFactory = std::function<std::unique_ptr<StateMachine>()>;

struct AppInfo {
  std::string name;     // what clients call it (is_valid_app_name)
  AppId id;             // AppId::of(name)
  std::string summary;  // one line, for `maroon apps`
  AppFactory make;
};

class AppRegistry {
 public:
  // Apps one registry (one binary) holds, at most.
  static constexpr size_t kAppsMax = 64;

  // Registers an app. Refused: a name that is not is_valid_app_name, a name
  // registered before, a name whose AppId another registered name (or the
  // system, 0) already has, an empty factory, more than kAppsMax apps.
  [[nodiscard]] Status add(std::string name, AppFactory make, std::string summary = {});

  // The app of that name or id, or nullptr.
  const AppInfo* find(std::string_view name) const;
  const AppInfo* find(AppId id) const;
  // In the order they were added.
  const std::vector<AppInfo>& apps() const { return apps_; }

 private:
  std::vector<AppInfo> apps_;
};

// The ids of the registry's apps, ascending.
std::vector<uint32_t> app_ids(const AppRegistry& apps);

// A registry holding maroon's built-in apps: "kv" (the key-value store that
// redis-cli, curl and `maroon kv` talk to).
AppRegistry builtin_apps();

}  // namespace maroon
