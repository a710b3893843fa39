// The `maroon` command line as a library call: a program that registers its
// own apps gets every subcommand of the `maroon` binary (dev, node, gateway,
// cluster, status, call, bench, ...) running them. See docs/apps.md.
#pragma once

#include "maroon/app.h"

namespace maroon {

// Parses argv as the `maroon` command does and runs the subcommand with
// `apps` as the apps of every node and gateway it starts. Returns the
// process's exit code. `apps` must outlive the call.
int run_cli(int argc, char** argv, const AppRegistry& apps);

}  // namespace maroon
