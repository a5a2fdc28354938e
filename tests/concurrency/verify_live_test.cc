// Store::verify on a healthy store while its writer works: one writer thread
// appends without pause into 1 MiB segments (so segments roll and freed index
// slots are reused) with checkpoints both automatic (every 32 KiB of log) and
// explicit; a second thread runs verify 40 times and a forked reader process
// runs it too. A healthy store has nothing to report, however the writer's
// steps fall between verify's (issue 9).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "eventsource/store.h"
#include "tests/support/child.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

using namespace eventsource;
using namespace eventsource::testing;

namespace {

constexpr int kThreadRuns = 40;
constexpr int kChildRuns = 10;
// Batches the writer appends at least between two verify runs (about a tenth
// of a segment), and at most per run (which bounds the store's size).
constexpr uint64_t kAppendsPerRun = 50;
constexpr uint64_t kMaxAppendsPerRun = 200;

// Runs verify once; returns "" or what it reported.
std::string verify_once(const std::string& path) {
  Result<VerifyReport> r = Store::verify(path);
  if (!r.ok()) return "verify failed: " + r.status().to_string();
  std::string what;
  for (const VerifyProblem& p : r->problems)
    what += fmt::format("{}: segment {} offset {}: {}; ", p.file, p.segment, p.offset, p.what);
  return what;
}

}  // namespace

TEST_CASE("verify of a store whose writer appends, rolls and checkpoints reports no problem") {
  // On tmpfs the writer's syncs cost nothing: it checkpoints (renames a new
  // checkpoint, frees an index segment) many times during each verify run.
  TempDir dir("es-verify-live", std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "");
  const std::string path = dir.file("live.evs");
  StoreOptions options = small_store_options();  // 1 MiB segments, no syncs per append
  options.checkpoint_interval_bytes = 8 << 10;
  std::unique_ptr<Store> store = open_or_fail(path, options);
  std::vector<EventData> batch;
  for (int i = 0; i < 2; ++i) batch.push_back(make_event("Noted", std::string(900, 'a' + i)));
  while (store->stats().event_segments < 2)  // verify has a log to walk from the start
    EVENTSOURCE_REQUIRE_OK(store->append(StreamId{"Live", "0"}, ExpectedVersion::any(), batch));
  EVENTSOURCE_REQUIRE_OK(store->checkpoint());

  // The reader process is forked before any thread exists; it runs verify
  // each time the parent says so, and reports how many runs found problems.
  Child reader = Child::spawn([&](const ChildPipes& pipes) {
    uint64_t bad = 0;
    std::string first;
    for (int i = 0; i < kChildRuns; ++i) {
      (void)pipes.receive();
      const std::string what = verify_once(path);
      if (!what.empty() && bad++ == 0) first = fmt::format("run {}: {}", i, what);
    }
    pipes.send(bad);
    pipes.send_text(first);
    return 0;
  });

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> appends{0};
  std::atomic<uint64_t> runs{0};  // verify runs of the thread started
  std::string writer_error;
  std::atomic<bool> writer_failed{false};
  std::thread writer([&] {
    for (uint64_t b = 1; !stop.load(); ++b) {
      while (b > (runs.load() + 1) * kMaxAppendsPerRun && !stop.load()) std::this_thread::yield();
      Result<AppendResult> r =
          store->append(StreamId{"Live", std::to_string(b % 7)}, ExpectedVersion::any(), batch);
      Status s = r.status();
      if (s.ok() && b % 10 == 0) s = store->checkpoint();
      if (!s.ok()) {
        writer_error = s.to_string();
        writer_failed.store(true);
        return;
      }
      appends.store(b);
    }
  });
  int bad = 0;
  std::string first;
  std::thread verifier([&] {
    for (int i = 0; i < kThreadRuns; ++i) {
      runs.store(i + 1);
      // Let the writer move on between runs (no timers: count its appends).
      const uint64_t target = appends.load() + kAppendsPerRun;
      while (appends.load() < target && !writer_failed.load()) std::this_thread::yield();
      if (i < kChildRuns) reader.send(1);
      const std::string what = verify_once(path);
      if (!what.empty() && bad++ == 0) first = fmt::format("run {}: {}", i, what);
    }
  });
  verifier.join();
  const std::optional<uint64_t> child_bad = reader.receive();
  const std::optional<std::string> child_first = reader.receive_text();
  stop.store(true);
  writer.join();

  CHECK_MESSAGE(writer_error.empty(), writer_error);
  CHECK_MESSAGE(bad == 0, bad, " of ", kThreadRuns, " runs reported a problem; ", first);
  REQUIRE_MESSAGE(child_bad.has_value(), "reader process ", describe_wait_status(reader.wait()));
  CHECK_MESSAGE(*child_bad == 0, "reader process: ", *child_bad, " of ", kChildRuns,
                " runs reported a problem; ", child_first.value_or(""));
  CHECK(reader.wait_exit_code() == 0);
  const StoreStats stats = store->stats();
  MESSAGE(appends.load(), " appends, ", stats.event_segments, " event segments");
  CHECK(stats.event_segments > 2);  // the writer rolled while verify ran
  EVENTSOURCE_REQUIRE_OK(store->close());
  CHECK(verify_once(path) == "");
}
