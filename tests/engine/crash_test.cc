// Process-crash tests: a forked child appends marked batches and reports every
// acknowledged position through a pipe; the parent SIGKILLs it at a random
// moment, reopens, and checks that every acked event is there, in whole
// batches only, also with four appending threads sharing group commits.
// "crash-quick" runs a few kills (unit), "crash" runs many.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "eventsource/store.h"
#include "tests/support/batches.h"
#include "tests/support/child.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
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
  const uint64_t seed = seed_from_env_or_random();
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
      EVENTSOURCE_REQUIRE_OK(all.status);
      REQUIRE(all.events.size() == committed);
      const std::string problem = check_marked_log(all.events, kSpec);
      INFO(problem);
      REQUIRE(problem.empty());
      previous_committed = committed;
      EVENTSOURCE_REQUIRE_OK(store->close());
    }
    Result<VerifyReport> report = Store::verify(path);
    EVENTSOURCE_REQUIRE_OK(report);
    INFO("first problem: " << (report->clean() ? std::string("-") : report->problems[0].what));
    CHECK(report->clean());
  }
  // The random delays must have caught children in the middle of their run.
  MESSAGE(iterations << " kills, " << kills_mid_run << " in the middle of a run of appends");
  CHECK(kills_mid_run > 0);
}

// ---- Four appending threads ------------------------------------------------
// Life L (one child), thread t, batch n: stream "Mt-<L>.<t>", events i = 0..2
// with metadata "life=L thread=t batch=n event=i", deterministic ids and
// payloads. Threads append one batch at a time, so in each stream batch n is
// there only if batch n - 1 is.
constexpr int kThreads = 4;
constexpr uint32_t kMtEvents = 3;
constexpr int kMtMaxBatchesPerThread = 300;

struct MtKey {
  uint64_t life;
  uint64_t thread;
  uint64_t batch;
  auto operator<=>(const MtKey&) const = default;
};

std::string mt_metadata(const MtKey& k, uint32_t i) {
  return "life=" + std::to_string(k.life) + " thread=" + std::to_string(k.thread) +
         " batch=" + std::to_string(k.batch) + " event=" + std::to_string(i);
}

Uuid mt_id(const MtKey& k, uint32_t i) {
  return make_uuid((k.life << 32) | k.thread, (k.batch << 8) | i);
}

std::string mt_payload(const MtKey& k, uint32_t i) {
  return marked_payload(k.life * 1000003 + k.thread * 7919 + k.batch, i, 50, 1500);
}

StreamId mt_stream(uint64_t life, uint64_t thread) {
  return StreamId{"Mt", std::to_string(life) + "." + std::to_string(thread)};
}

int mt_writer_child(const ChildPipes& pipes, const std::string& path, uint64_t life,
                    Durability durability) {
  StoreOptions options = small_store_options();
  options.durability = durability;
  Result<std::unique_ptr<Store>> opened = Store::open(path, options);
  if (!opened.ok()) return kOpenFailed;
  Store& store = **opened;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const StreamId stream = mt_stream(life, t);
      for (uint64_t n = 1; n <= kMtMaxBatchesPerThread; ++n) {
        const MtKey key{life, t, n};
        std::vector<EventData> events;
        for (uint32_t i = 0; i < kMtEvents; ++i) {
          EventData e = make_event("MtEvent", mt_payload(key, i), mt_metadata(key, i));
          e.id = mt_id(key, i);
          events.push_back(std::move(e));
        }
        Result<AppendResult> r = store.append(
            stream, ExpectedVersion::exact(StreamVersion((n - 1) * kMtEvents)), events);
        if (!r.ok()) {
          failed = 1;
          return;
        }
        pipes.send(r->last_position.value);  // 8 bytes: atomic on a pipe
      }
    });
  }
  for (std::thread& th : threads) th.join();
  if (failed) return kAppendFailed;
  for (;;) pause();
  return kDone;
}

// Checks the recovered log: dense, whole batches of three in order, each
// batch exactly as written, no batch twice, and per stream no gaps.
std::string check_mt_log(const std::vector<OwnedEvent>& log) {
  std::set<MtKey> seen;
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> last_batch;  // (life, thread) -> batch
  if (log.size() % kMtEvents != 0) {
    return "log of " + std::to_string(log.size()) + " events ends in a partial batch";
  }
  for (size_t j = 0; j < log.size(); j += kMtEvents) {
    const OwnedEvent& first = log[j];
    MtKey key{};
    if (std::sscanf(first.metadata.c_str(), "life=%" SCNu64 " thread=%" SCNu64 " batch=%" SCNu64,
                    &key.life, &key.thread, &key.batch) != 3) {
      return "event " + first.describe() + ": no batch marker";
    }
    for (uint32_t i = 0; i < kMtEvents; ++i) {
      const OwnedEvent& e = log[j + i];
      const std::string where = "event " + e.describe() + ": ";
      if (e.position != GlobalPosition(j + i + 1)) return where + "position is not dense";
      if (e.metadata != mt_metadata(key, i)) {
        return where + "batch is not whole (expected '" + mt_metadata(key, i) + "')";
      }
      if (e.id != mt_id(key, i)) return where + "wrong id";
      if (e.payload != mt_payload(key, i)) return where + "wrong payload";
      if (e.stream() != mt_stream(key.life, key.thread)) return where + "wrong stream";
      if (e.version != StreamVersion((key.batch - 1) * kMtEvents + i + 1)) {
        return where + "wrong stream version";
      }
    }
    if (!seen.insert(key).second) return "batch " + mt_metadata(key, 0) + " is there twice";
    uint64_t& last = last_batch[{key.life, key.thread}];
    if (key.batch != last + 1) return "batch " + mt_metadata(key, 0) + " follows a gap";
    last = key.batch;
  }
  return "";
}

void run_mt_kill_loop(int iterations, int store_every) {
  const uint64_t seed = seed_from_env_or_random();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  TempDir dir("es-crash-mt");
  std::string path;
  uint64_t previous_committed = 0;
  uint64_t kills_with_acks = 0;
  for (int it = 0; it < iterations; ++it) {
    if (it % store_every == 0) {
      path = dir.file("mt-" + std::to_string(it) + ".evs");
      previous_committed = 0;
    }
    const Durability durability = it % 3 == 0   ? Durability::kNone
                                  : it % 3 == 1 ? Durability::kGroup
                                                : Durability::kEach;
    const int delay_us = std::uniform_int_distribution<int>(0, 40'000)(rng);
    INFO("iteration " << it << " durability " << static_cast<int>(durability) << " kill after "
                      << delay_us << " us, store " << path);
    const uint64_t life = static_cast<uint64_t>(it) + 1;
    Child child = Child::spawn(
        [&](const ChildPipes& pipes) { return mt_writer_child(pipes, path, life, durability); });
    usleep(static_cast<useconds_t>(delay_us));
    child.kill(SIGKILL);
    const int status = child.wait();
    INFO("writer child " << describe_wait_status(status));
    REQUIRE(child.wait_exit_code() == -SIGKILL);
    std::vector<uint64_t> acked;
    while (std::optional<uint64_t> p = child.receive()) acked.push_back(*p);
    if (!acked.empty()) ++kills_with_acks;

    std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
    const uint64_t committed = store->committed_position().value;
    CAPTURE(committed);
    CHECK(committed >= previous_committed);
    ReadResult all = read_all_events(*store);
    EVENTSOURCE_REQUIRE_OK(all.status);
    REQUIRE(all.events.size() == committed);
    const std::string problem = check_mt_log(all.events);
    INFO(problem);
    REQUIRE(problem.empty());
    for (uint64_t p : acked) {
      INFO("acked position " << p);
      REQUIRE(p <= committed);
      // An acked last position ends a batch written by this life.
      CHECK(all.events[p - 1].metadata.find("life=" + std::to_string(life) + " ") == 0);
      CHECK(all.events[p - 1].metadata.ends_with(" event=2"));
    }
    previous_committed = committed;
    EVENTSOURCE_REQUIRE_OK(store->close());
    Result<VerifyReport> report = Store::verify(path);
    EVENTSOURCE_REQUIRE_OK(report);
    INFO("first problem: " << (report->clean() ? std::string("-") : report->problems[0].what));
    CHECK(report->clean());
  }
  MESSAGE(iterations << " kills of four appending threads, " << kills_with_acks
                     << " after some appends were acked");
  CHECK(kills_with_acks > 0);
}

TEST_SUITE("crash-quick") {
  TEST_CASE("acked batches survive SIGKILL of the writer and no batch is ever partial") {
    run_kill_loop(10, 10);
  }
  TEST_CASE("acked batches of four appending threads survive SIGKILL, whole and in order") {
    run_mt_kill_loop(9, 9);
  }
}

// ES_SOAK=1 multiplies the kills by ten (the soak mode of .ci/run's harnesses).
int soak_factor() { return std::getenv("ES_SOAK") != nullptr ? 10 : 1; }

TEST_SUITE("crash") {
  TEST_CASE("acked batches survive 100 SIGKILLs of the writer and no batch is ever partial") {
    run_kill_loop(100 * soak_factor(), 20);
  }
  TEST_CASE("acked batches of four appending threads survive 500 SIGKILLs, whole and in order") {
    run_mt_kill_loop(500 * soak_factor(), 25);
  }
}

}  // namespace
}  // namespace eventsource::testing
