// Process-crash tests: a forked child appends marked batches and reports every
// acknowledged position through a pipe; the parent SIGKILLs it at a random
// moment, reopens, and checks that every acked event is there, in whole
// batches only. "crash-quick" runs a few kills (unit), "crash" runs many.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

#include "engine/store.h"
#include "tests/support/batches.h"
#include "tests/support/child.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace es::testing {
namespace {

constexpr MarkedBatchSpec kSpec{3, 100, 2000};
constexpr int kMaxBatchesPerChild = 400;

// Child exit codes (the child is normally killed before it exits).
enum ChildExit : int {
  kOpenFailed = 3,
  kPartialLog = 4,
  kAppendFailed = 5,
  kDone = 6,
};

// The writer child: opens (recovering what the previous child left), appends
// marked batches continuing the numbering, sends each acked last position.
int writer_child(const ChildPipes& pipes, const std::string& path, Durability durability) {
  StoreOptions options = small_store_options();
  options.durability = durability;
  Result<std::unique_ptr<Store>> opened = Store::open(path, options);
  if (!opened.ok()) return kOpenFailed;
  Store& store = **opened;
  const uint64_t committed = store.committed_position().value;
  if (committed % kSpec.events != 0) return kPartialLog;
  uint64_t batch = committed / kSpec.events + 1;
  for (int n = 0; n < kMaxBatchesPerChild; ++n, ++batch) {
    const StreamId stream = marked_stream(batch);
    const auto events =
        make_marked_batch(batch, kSpec.events, kSpec.min_payload, kSpec.max_payload);
    Result<AppendResult> r =
        store.append(stream, ExpectedVersion::exact(store.stream_version(stream)), events);
    if (!r.ok()) return kAppendFailed;
    pipes.send(r->last_position.value);
  }
  // Wait to be killed, never closing (no checkpoint may cover the tail).
  for (;;) pause();
  return kDone;
}

void run_kill_loop(int iterations, int store_every) {
  uint64_t seed = std::random_device{}();
  if (const char* s = std::getenv("ES_TEST_SEED"); s != nullptr && *s != '\0') {
    seed = std::strtoull(s, nullptr, 0);
  }
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  TempDir dir("es-crash");
  std::string path;
  uint64_t previous_committed = 0;
  uint64_t kills_mid_run = 0;
  for (int it = 0; it < iterations; ++it) {
    if (it % store_every == 0) {  // a fresh store now and then bounds the file size
      path = dir.file("crash-" + std::to_string(it) + ".evs");
      previous_committed = 0;
    }
    const Durability durability = it % 2 == 0 ? Durability::kEach : Durability::kNone;
    const int max_delay_us = durability == Durability::kEach ? 80'000 : 30'000;
    const int delay_us = std::uniform_int_distribution<int>(0, max_delay_us)(rng);
    INFO("iteration " << it << " durability " << static_cast<int>(durability) << " kill after "
                      << delay_us << " us, store " << path);

    Child child = Child::spawn(
        [&](const ChildPipes& pipes) { return writer_child(pipes, path, durability); });
    usleep(static_cast<useconds_t>(delay_us));
    child.kill(SIGKILL);
    const int status = child.wait();
    INFO("writer child " << describe_wait_status(status));
    REQUIRE(child.wait_exit_code() == -SIGKILL);

    uint64_t acked = 0;
    uint64_t acks = 0;
    while (std::optional<uint64_t> p = child.receive()) {
      REQUIRE(*p > acked);  // acks are increasing
      REQUIRE(*p % kSpec.events == 0);
      acked = *p;
      ++acks;
    }
    if (acks > 0 && acks < kMaxBatchesPerChild) ++kills_mid_run;
    CAPTURE(acked);

    {
      std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
      const uint64_t committed = store->committed_position().value;
      CAPTURE(committed);
      CHECK(committed >= acked);
      CHECK(committed >= previous_committed);
      CHECK(committed % kSpec.events == 0);
      ReadResult all = read_all_events(*store);
      ES_REQUIRE_OK(all.status);
      REQUIRE(all.events.size() == committed);
      const std::string problem = check_marked_log(all.events, kSpec);
      INFO(problem);
      REQUIRE(problem.empty());
      previous_committed = committed;
      ES_REQUIRE_OK(store->close());
    }
    Result<VerifyReport> report = Store::verify(path);
    ES_REQUIRE_OK(report);
    INFO("first problem: " << (report->clean() ? std::string("-") : report->problems[0].what));
    CHECK(report->clean());
  }
  // The random delays must have caught children in the middle of their run.
  CHECK(kills_mid_run > 0);
}

TEST_SUITE("crash-quick") {
  TEST_CASE("acked batches survive SIGKILL of the writer and no batch is ever partial") {
    run_kill_loop(10, 10);
  }
}

TEST_SUITE("crash") {
  TEST_CASE("acked batches survive 100 SIGKILLs of the writer and no batch is ever partial") {
    run_kill_loop(100, 20);
  }
}

}  // namespace
}  // namespace es::testing
