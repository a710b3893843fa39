// hello-app: the `maroon` command line with one more app, "hello".
#include <maroon/maroon.h>

#include <cstdio>

#include "hello_app.h"

int main(int argc, char** argv) {
  maroon::AppRegistry apps = maroon::builtin_apps();
  maroon::Status s = apps.add(
      "hello", [] { return std::make_unique<hello::HelloApp>(); },
      "greets people by name and counts the greetings");
  if (!s) {
    std::fprintf(stderr, "hello-app: %s\n", s.to_string().c_str());
    return 1;
  }
  return maroon::run_cli(argc, argv, apps);
}
