// One writer per store: a second read-write open, in the same process or in
// another, fails fast with kBusy naming the store; read-only opens still
// work; once the holder closes or is killed, a new writer gets in.
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "eventsource/store.h"
#include "tests/support/child.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

// Opens read-write expecting kBusy; checks the message names the store and
// that the refusal is fast (no waiting for the lock).
void check_second_writer_refused(const std::string& path) {
  const auto start = std::chrono::steady_clock::now();
  Result<std::unique_ptr<Store>> second = Store::open(path, small_store_options());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  INFO("second open -> " << second.status().to_string());
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == Code::kBusy);
  CHECK(second.status().message().find(path) != std::string::npos);
  CHECK(elapsed < std::chrono::seconds(2));
}

void check_reader_sees(const std::string& path, uint64_t committed) {
  StoreOptions ro = small_store_options();
  ro.mode = OpenMode::kReadOnly;
  Result<std::unique_ptr<Store>> reader = Store::open(path, ro);
  EVENTSOURCE_REQUIRE_OK(reader);
  CHECK((*reader)->committed_position() == GlobalPosition(committed));
  EVENTSOURCE_CHECK_OK((*reader)->close());
}

void append_one(Store& store, const std::string& what) {
  std::vector<EventData> events = {make_event("Wrote", what)};
  EVENTSOURCE_REQUIRE_OK(store.append(StreamId{"Lock", "1"}, ExpectedVersion::any(), events));
}

TEST_SUITE("writer-lock") {
  TEST_CASE("a second writer in the same process is refused with kBusy until the first closes") {
    TempDir dir("es-lock");
    const std::string path = dir.file("lock.evs");
    std::unique_ptr<Store> first = open_or_fail(path, small_store_options());
    append_one(*first, "first");

    check_second_writer_refused(path);
    check_reader_sees(path, 1);
    // The refused open did not disturb the holder.
    append_one(*first, "first again");
    CHECK(first->committed_position() == GlobalPosition(2));

    EVENTSOURCE_REQUIRE_OK(first->close());
    std::unique_ptr<Store> second = open_or_fail(path, small_store_options());
    CHECK(second->committed_position() == GlobalPosition(2));
    append_one(*second, "second");
    // And now the first may not come back while the second holds the lock.
    check_second_writer_refused(path);
    EVENTSOURCE_CHECK_OK(second->close());
  }

  TEST_CASE("a writer in another process is refused with kBusy until that process is killed") {
    TempDir dir("es-lock");
    const std::string path = dir.file("lock.evs");
    Child holder = Child::spawn([&](const ChildPipes& pipes) {
      Result<std::unique_ptr<Store>> store = Store::open(path, small_store_options());
      if (!store.ok()) return 3;
      std::vector<EventData> events = {make_event("Wrote", "holder")};
      if (!(*store)->append(StreamId{"Lock", "1"}, ExpectedVersion::any(), events).ok()) return 5;
      pipes.send(1);
      (void)pipes.receive();  // hold the lock until killed
      _exit(0);
    });
    std::optional<uint64_t> ready = holder.receive();
    INFO("holder " << (ready ? "ready" : describe_wait_status(holder.wait())));
    REQUIRE(ready.has_value());

    check_second_writer_refused(path);
    check_reader_sees(path, 1);

    holder.kill(SIGKILL);
    REQUIRE(holder.wait_exit_code() == -SIGKILL);
    std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
    CHECK(store->committed_position() == GlobalPosition(1));
    append_one(*store, "after the holder died");
    EVENTSOURCE_CHECK_OK(store->close());
  }

  TEST_CASE("a child process cannot take the lock while this process holds it") {
    TempDir dir("es-lock");
    const std::string path = dir.file("lock.evs");
    std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
    Child child = Child::spawn([&](const ChildPipes& pipes) -> int {
      // The child shares the parent's open file descriptions, but its own
      // open makes new ones, which the parent's lock excludes.
      Result<std::unique_ptr<Store>> second = Store::open(path, small_store_options());
      const bool busy = !second.ok() && second.status().code() == Code::kBusy &&
                        second.status().message().find(path) != std::string::npos;
      pipes.send(busy ? 1 : 0);
      _exit(0);
    });
    std::optional<uint64_t> busy = child.receive();
    REQUIRE(busy.has_value());
    CHECK(*busy == 1);
    CHECK(child.wait_exit_code() == 0);
    EVENTSOURCE_CHECK_OK(store->close());
  }
}

}  // namespace
}  // namespace eventsource::testing
