// maroon: durable, replicated, deterministic execution, with the built-in
// apps. See README.md; a program with apps of its own has a main like this
// one (docs/apps.md).
#include "maroon/app.h"
#include "maroon/cli.h"

int main(int argc, char** argv) { return maroon::run_cli(argc, argv, maroon::builtin_apps()); }
