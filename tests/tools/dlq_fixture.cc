// Test helper of esdump_test.sh: puts dead letters into a store, or holds
// its writer lock, so the script can test 'esdump dlq' on stores es_example
// does not make. Engine public API only.
//   dlq_fixture STORE add PROJECTION N  adds N dead letters, prints their ids
//   dlq_fixture STORE hold              opens read-write, prints "holding",
//                                       keeps the store open until stdin ends
#include <fmt/format.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "eventsource/store.h"

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "dlq_fixture: %s\n", what.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace eventsource;
  if (argc < 3) return fail("usage: dlq_fixture STORE add PROJECTION N | hold");
  const std::string path = argv[1];
  const std::string action = argv[2];
  Result<std::unique_ptr<Store>> opened = Store::open(path);
  if (!opened.ok()) return fail(opened.status().to_string());
  Store& store = **opened;
  if (action == "add" && argc == 5) {
    const int n = std::stoi(argv[4]);
    for (int i = 0; i < n; ++i) {
      DeadLetter d;
      d.projection = argv[3];
      d.position = GlobalPosition(static_cast<uint64_t>(i) + 1);
      d.attempts = 1;
      d.error = fmt::format("failure {}", i + 1);
      Result<uint64_t> id = store.add_dead_letter(d);
      if (!id.ok()) return fail(id.status().to_string());
      fmt::print("{}\n", *id);
    }
  } else if (action == "hold" && argc == 3) {
    fmt::print("holding\n");
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
    }
  } else {
    return fail("usage: dlq_fixture STORE add PROJECTION N | hold");
  }
  Status closed = store.close();
  if (!closed.ok()) return fail(closed.to_string());
  return 0;
}
