// Readers polling while the writer is killed (reliability row 15). A forked
// writer appends ~100k events in marked batches of 1..10 events (durability
// none, 1 MiB segments, an automatic checkpoint every few MiB so that index
// segments come and go beside the event segments) and is SIGKILLed at a
// random moment near the end. Two readers, this process and a forked one that
// reports through a pipe, poll all along: refresh() and read_all from the
// last position seen, checking every event against the deterministic batch
// it belongs to. After the kill they poll on until the position is stable.
// Criteria: 0 partial batches, 0 gaps, 0 checksum errors, positions dense,
// and the readers end with at least every batch the writer had acknowledged.
#include <doctest/doctest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "eventsource/store.h"
#include "tests/support/batches.h"
#include "tests/support/child.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

constexpr uint64_t kTargetEvents = 100'000;
constexpr uint32_t kMinPayload = 16;
constexpr uint32_t kMaxPayload = 240;
constexpr uint64_t kProgressEvery = 64;  // batches between the writer's progress reports

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Batch b holds 1..10 events, fixed by b.
uint32_t batch_size(uint64_t b) { return 1 + static_cast<uint32_t>(mix64(b) % 10); }

// Where each batch starts: first[b] is the position of batch b's first event
// (b from 1); first[batches + 1] is one past the last event.
struct Plan {
  std::vector<uint64_t> first;
  uint64_t batches = 0;
  uint64_t events = 0;

  Plan() {
    first.push_back(0);  // no batch 0
    uint64_t pos = 1;
    for (uint64_t b = 1; pos <= kTargetEvents; ++b) {
      first.push_back(pos);
      pos += batch_size(b);
      batches = b;
    }
    first.push_back(pos);
    events = pos - 1;
  }
  // The batch holding position p (1-based).
  uint64_t batch_of(uint64_t p) const {
    return static_cast<uint64_t>(std::upper_bound(first.begin() + 1, first.end(), p) -
                                 first.begin()) -
           1;
  }
  bool ends_batch(uint64_t p) const { return p == 0 || first[batch_of(p) + 1] == p + 1; }
};

struct PollStats {
  uint64_t polls = 0;
  uint64_t seen = 0;  // events checked, dense from position 1
  uint64_t partial_batches = 0;
  uint64_t gaps = 0;
  uint64_t checksum_errors = 0;
  uint64_t other_errors = 0;
  uint64_t wrong_events = 0;
  uint64_t went_back = 0;
  uint64_t views_mid_run = 0;  // polls that saw new events while the writer ran
  std::string first_problem;
};

// A read-only handle polling the store: refresh, then read_all from the last
// position seen, checking every new event.
class Poller {
 public:
  Poller(const std::string& path, const Plan& plan) : plan_(plan) {
    StoreOptions o = small_store_options();
    o.mode = OpenMode::kReadOnly;
    o.create = CreateMode::kMustExist;
    Result<std::unique_ptr<Store>> r = Store::open(path, o);
    if (!r.ok()) {
      note(&stats_.other_errors, "open: " + r.status().to_string());
      return;
    }
    store_ = std::move(r).value();
  }

  // One poll. Returns the committed position refresh() reported.
  uint64_t poll() {
    if (!store_) return stats_.seen;
    ++stats_.polls;
    Result<GlobalPosition> refreshed = store_->refresh();
    if (!refreshed.ok()) {
      count_error("refresh", refreshed.status());
      return stats_.seen;
    }
    const uint64_t now = refreshed->value;
    if (now < last_committed_) note(&stats_.went_back, "committed position went back");
    last_committed_ = std::max(last_committed_, now);
    if (!plan_.ends_batch(now)) {
      note(&stats_.partial_batches, "refresh published position " + std::to_string(now) +
                                        ", inside batch " + std::to_string(plan_.batch_of(now)));
    }
    const uint64_t before = stats_.seen;
    uint64_t expected = stats_.seen + 1;
    bool stop = false;
    Status st = store_->read_all({.from = GlobalPosition(expected)}, [&](const RecordedEvent& e) {
      if (e.position.value != expected) {
        note(&stats_.gaps, "read_all gave position " + std::to_string(e.position.value) +
                               ", expected " + std::to_string(expected));
        stop = true;
        return false;
      }
      std::string why = check_event(e);
      if (!why.empty()) {
        note(&stats_.wrong_events, why);
        stop = true;
        return false;
      }
      ++expected;
      return true;
    });
    if (!st.ok()) count_error("read_all", st);
    if (stop) return now;
    const uint64_t got = expected - 1;
    if (st.ok() && got != now) {
      note(&stats_.gaps, "read_all from " + std::to_string(before + 1) + " ended at " +
                             std::to_string(got) + ", refresh said " + std::to_string(now));
    }
    if (!plan_.ends_batch(got)) {
      note(&stats_.partial_batches,
           "read_all ended at position " + std::to_string(got) + ", inside a batch");
    }
    stats_.seen = got;
    return now;
  }

  void note_mid_run() { ++stats_.views_mid_run; }
  const PollStats& stats() const { return stats_; }
  bool ok() const { return store_ != nullptr; }
  void close() {
    if (store_) {
      Status s = store_->close();
      if (!s.ok()) note(&stats_.other_errors, "close: " + s.to_string());
    }
  }

 private:
  void note(uint64_t* counter, const std::string& what) {
    ++*counter;
    if (stats_.first_problem.empty()) stats_.first_problem = what;
  }
  void count_error(const char* what, const Status& s) {
    note(s.code() == Code::kCorruption ? &stats_.checksum_errors : &stats_.other_errors,
         std::string(what) + ": " + s.to_string());
  }
  std::string check_event(const RecordedEvent& e) {
    const uint64_t p = e.position.value;
    if (p > plan_.events) return "position " + std::to_string(p) + " past the plan";
    const uint64_t b = plan_.batch_of(p);
    const uint32_t i = static_cast<uint32_t>(p - plan_.first[b]);
    const uint32_t n = batch_size(b);
    const StreamId s = marked_stream(b);
    const std::string where = "position " + std::to_string(p) + " (batch " + std::to_string(b) +
                              " event " + std::to_string(i) + "): ";
    if (e.stream_type != s.type || e.stream_id != s.id) return where + "wrong stream";
    if (e.metadata != marked_metadata(b, i, n)) return where + "wrong marker";
    if (e.id != make_uuid(b, i)) return where + "wrong id";
    if (e.payload != marked_payload(b, i, kMinPayload, kMaxPayload)) return where + "wrong payload";
    const uint64_t v = ++versions_[s.id];
    if (e.version != StreamVersion(v)) return where + "expected version " + std::to_string(v);
    return "";
  }

  const Plan& plan_;
  std::unique_ptr<Store> store_;
  PollStats stats_;
  uint64_t last_committed_ = 0;
  std::map<std::string, uint64_t> versions_;
};

// Polls until `writer_dead()` and then until two polls in a row see the same
// position (the first of them started after the death was known).
template <class Dead>
void poll_until_stable(Poller& p, Dead writer_dead,
                       std::chrono::steady_clock::time_point deadline) {
  bool dead_seen = false;
  uint64_t last = ~0ull;
  for (;;) {
    const bool dead = writer_dead();
    const uint64_t before = p.stats().seen;
    const uint64_t now = p.poll();
    if (!dead && p.stats().seen > before && p.stats().seen > 0) p.note_mid_run();
    if (dead) {
      if (dead_seen && now == last) return;
      dead_seen = true;
      last = now;
    }
    if (!p.ok() || std::chrono::steady_clock::now() > deadline) return;
    if (!dead) usleep(300);
  }
}

std::string describe(const PollStats& s) {
  return std::to_string(s.polls) + " polls (" + std::to_string(s.views_mid_run) +
         " saw new events mid-run), " + std::to_string(s.seen) + " events seen, partial batches " +
         std::to_string(s.partial_batches) + ", gaps " + std::to_string(s.gaps) +
         ", checksum errors " + std::to_string(s.checksum_errors) + ", wrong events " +
         std::to_string(s.wrong_events) + ", other errors " + std::to_string(s.other_errors) +
         ", went back " + std::to_string(s.went_back) +
         (s.first_problem.empty() ? "" : "; first problem: " + s.first_problem);
}

void check_stats(const char* who, const PollStats& s, uint64_t acked) {
  INFO(who << ": " << describe(s));
  CHECK(s.partial_batches == 0);
  CHECK(s.gaps == 0);
  CHECK(s.checksum_errors == 0);
  CHECK(s.wrong_events == 0);
  CHECK(s.other_errors == 0);
  CHECK(s.went_back == 0);
  CHECK(s.first_problem.empty());
  CHECK(s.seen >= acked);  // every acknowledged batch reached the reader
}

// One writer run killed near its end, with both readers. Returns a summary.
std::string run_round(const Plan& plan, uint64_t seed) {
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + std::chrono::seconds(60);
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  // Kill once the writer reports a batch in the last 10% (but before the end).
  const uint64_t kill_after = plan.batches * 90 / 100 + rng() % (plan.batches * 9 / 100);
  const uint64_t kill_delay_us = rng() % 3000;
  CAPTURE(kill_after);
  CAPTURE(kill_delay_us);

  TempDir dir("es-reader-kill");
  const std::string path = dir.file("live.evs");
  Child writer = Child::spawn([&](const ChildPipes& pipes) -> int {
    StoreOptions o = small_store_options();
    o.durability = Durability::kNone;
    o.checkpoint_interval_bytes = 4 * kMiB;
    Result<std::unique_ptr<Store>> store = Store::open(path, o);
    if (!store.ok()) return 3;
    pipes.send(0);  // the store exists
    for (uint64_t b = 1; b <= plan.batches; ++b) {
      const auto events = make_marked_batch(b, batch_size(b), kMinPayload, kMaxPayload);
      if (!(*store)->append(marked_stream(b), ExpectedVersion::any(), events).ok()) return 5;
      if (b % kProgressEvery == 0 || b == plan.batches) pipes.send(b);  // acked through b
      if (b % 16 == 0) usleep(100);  // let the readers interleave
    }
    (void)pipes.receive();  // wait for the kill
    return 6;
  });
  std::optional<uint64_t> ready = writer.receive();
  INFO("writer " << (ready ? "ready" : describe_wait_status(writer.wait())));
  REQUIRE(ready.has_value());

  // The second reader, in its own process: polls until told the writer is
  // dead, then until stable, and reports its counts.
  Child reader = Child::spawn([&](const ChildPipes& pipes) -> int {
    Poller p(path, plan);
    auto dead = [&] {
      struct pollfd pfd = {pipes.from_parent, POLLIN, 0};
      return ::poll(&pfd, 1, 0) > 0;
    };
    poll_until_stable(p, dead, deadline);
    p.close();
    const PollStats& s = p.stats();
    for (uint64_t v : {s.polls, s.seen, s.partial_batches, s.gaps, s.checksum_errors,
                       s.other_errors, s.wrong_events, s.went_back, s.views_mid_run}) {
      pipes.send(v);
    }
    pipes.send_text(s.first_problem);
    return 0;
  });

  // The killer: follows the writer's progress and kills it near the end.
  std::atomic<bool> writer_dead{false};
  std::atomic<uint64_t> acked{0};
  std::atomic<bool> killed_mid_run{false};
  int writer_status = 0;
  std::thread killer([&] {
    for (;;) {
      std::optional<uint64_t> b = writer.receive();
      if (!b) break;  // died on its own
      acked.store(*b);
      if (*b >= kill_after) {
        killed_mid_run.store(*b < plan.batches);
        usleep(static_cast<useconds_t>(kill_delay_us));
        writer.kill(SIGKILL);
        break;
      }
    }
    writer_status = writer.wait();
    writer_dead.store(true);
  });

  Poller mine(path, plan);
  CHECK(mine.ok());  // no REQUIRE while the killer thread runs
  poll_until_stable(
      mine, [&] { return writer_dead.load(); }, deadline);
  killer.join();
  REQUIRE(reader.send(1));  // the writer is dead
  mine.close();

  INFO("writer " << describe_wait_status(writer_status));
  CHECK(WIFSIGNALED(writer_status));
  const uint64_t acked_batches = acked.load();
  const uint64_t acked_events = acked_batches == 0 ? 0 : plan.first[acked_batches + 1] - 1;
  PollStats theirs;
  {
    std::vector<uint64_t> v;
    for (int i = 0; i < 9; ++i) {
      std::optional<uint64_t> x = reader.receive();
      INFO("reader child " << describe_wait_status(reader.wait()));
      REQUIRE(x.has_value());
      v.push_back(*x);
    }
    std::optional<std::string> text = reader.receive_text();
    REQUIRE(text.has_value());
    theirs = PollStats{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], *text};
    CHECK(reader.wait_exit_code() == 0);
  }
  check_stats("reader in this process", mine.stats(), acked_events);
  check_stats("reader process", theirs, acked_events);
  CHECK(mine.stats().seen == theirs.seen);
  CHECK(std::chrono::steady_clock::now() < deadline);

  // Recovery sees what the readers saw, and the store verifies clean.
  {
    std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
    CHECK(store->committed_position() == GlobalPosition(mine.stats().seen));
    Poller check(path, plan);  // read-only, from position 1 on the recovered store
    check.poll();
    CHECK(check.stats().seen == mine.stats().seen);
    CHECK(check.stats().first_problem.empty());
    check.close();
    EVENTSOURCE_CHECK_OK(store->close());
    Result<VerifyReport> report = Store::verify(path);
    EVENTSOURCE_REQUIRE_OK(report);
    INFO("first problem: " << (report->clean() ? std::string("-") : report->problems[0].what));
    CHECK(report->clean());
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return std::string("writer killed ") +
         (killed_mid_run.load() ? "mid-run" : "after its last batch") + " (acked " +
         std::to_string(acked_events) + " of " + std::to_string(plan.events) +
         " events); this reader: " + describe(mine.stats()) +
         "; reader process: " + describe(theirs) + "; " + std::to_string(secs) + " s";
}

TEST_SUITE("reader-kill") {
  TEST_CASE("readers polling while the writer appends 100k events and is killed") {
    constexpr int kRounds = 20;
    const auto started = std::chrono::steady_clock::now();
    const Plan plan;
    REQUIRE(plan.events >= kTargetEvents);
    const uint64_t seed = std::random_device{}();
    for (int round = 0; round < kRounds; ++round) {
      INFO("round " << round);
      const std::string summary = run_round(plan, seed + static_cast<uint64_t>(round));
      MESSAGE("round " << round << ": " << summary);
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    MESSAGE(kRounds << " writer kills with two polling readers, " << secs << " s");
  }
}

}  // namespace
}  // namespace eventsource::testing
