#include <fmt/format.h>

#include <algorithm>

#include "app/kv/kv_app.h"
#include "maroon/app.h"

namespace maroon {

Status AppRegistry::add(std::string name, AppFactory make, std::string summary) {
  if (!is_valid_app_name(name)) {
    return invalid_argument(fmt::format(
        "app name \"{}\": use 1 to {} characters of a-z, 0-9, '_' and '-', starting with a letter",
        name, kAppNameBytesMax));
  }
  if (!make) return invalid_argument(fmt::format("app \"{}\": no factory", name));
  const AppId id = AppId::of(name);
  if (id == AppId::kSystem) {
    return invalid_argument(fmt::format("app name \"{}\" hashes to the system's id 0", name));
  }
  if (find(name) != nullptr) {
    return invalid_argument(fmt::format("app \"{}\" is registered twice", name));
  }
  if (const AppInfo* other = find(id); other != nullptr) {
    return invalid_argument(fmt::format("apps \"{}\" and \"{}\" have one id ({:#010x}): rename one",
                                        other->name, name, id.value()));
  }
  if (apps_.size() >= kAppsMax) {
    return too_large(fmt::format("app \"{}\": a binary runs at most {} apps", name, kAppsMax));
  }
  apps_.push_back(AppInfo{std::move(name), id, std::move(summary), std::move(make)});
  return Status::ok();
}

const AppInfo* AppRegistry::find(std::string_view name) const {
  for (const AppInfo& app : apps_) {
    if (app.name == name) return &app;
  }
  return nullptr;
}

const AppInfo* AppRegistry::find(AppId id) const {
  for (const AppInfo& app : apps_) {
    if (app.id == id) return &app;
  }
  return nullptr;
}

std::vector<uint32_t> app_ids(const AppRegistry& apps) {
  std::vector<uint32_t> ids;
  for (const AppInfo& app : apps.apps()) ids.push_back(app.id.value());
  std::sort(ids.begin(), ids.end());
  return ids;
}

AppRegistry builtin_apps() {
  AppRegistry apps;
  Status s = apps.add(
      "kv", [] { return std::make_unique<kv::KvApp>(); },
      "key-value store: GET/SET/DEL/CAS/INCR/MGET/MSET/SCAN (redis-cli, curl, maroon kv)");
  MAROON_ASSERT_MSG(s.is_ok(), "the built-in apps register");
  return apps;
}

}  // namespace maroon
