// The one error for a request naming an app the process does not run.
#pragma once

#include <fmt/format.h>

#include "maroon/app_id.h"
#include "maroon/status.h"

namespace maroon {

inline Status unknown_app(AppId app) {
  return Status(
      Code::kNotFound,
      fmt::format("unknown app (id {:#010x}): this cluster runs no app of that name", app.value()));
}

}  // namespace maroon
