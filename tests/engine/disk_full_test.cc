// A full disk, simulated with RLIMIT_FSIZE in a forked child: append fails
// with kIoError naming the file and EFBIG (no SIGBUS, no abort), reads go on,
// further appends are refused, and after a reopen without the limit every
// acknowledged event is there, whether the child closed or was killed.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "eventsource/store.h"
#include "tests/support/batches.h"
#include "tests/support/child.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

constexpr MarkedBatchSpec kSpec{3, 1000, 3000};
constexpr uint64_t kFileLimit = 4 * kMiB;
constexpr uint64_t kMaxBatches = 20000;
// Messages from the child: an ack (followed by the position) or the report.
constexpr uint64_t kAck = 1;
constexpr uint64_t kReport = 2;

enum class AfterFailure { kClose, kDie };

std::string bool_text(bool b) { return b ? "1" : "0"; }

// The child: limited file size, appends until an append fails, then reports
// what it saw as "key=value" lines.
int disk_full_child(const ChildPipes& pipes, const std::string& path, AfterFailure after) {
  ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit = {kFileLimit, kFileLimit};
  if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return 2;
  std::ostringstream report;
  Result<std::unique_ptr<Store>> opened = Store::open(path, small_store_options());
  if (!opened.ok()) {
    pipes.send(kReport);
    pipes.send_text("open=" + opened.status().to_string() + "\n");
    return 3;
  }
  Store& store = **opened;
  uint64_t acked = 0;
  Status failure;
  uint64_t failed_batch = 0;
  for (uint64_t b = 1; b <= kMaxBatches; ++b) {
    const auto events = make_marked_batch(b, kSpec.events, kSpec.min_payload, kSpec.max_payload);
    Result<AppendResult> r = store.append(marked_stream(b), ExpectedVersion::any(), events);
    if (!r.ok()) {
      failure = r.take_status();
      failed_batch = b;
      break;
    }
    acked = r->last_position.value;
    pipes.send(kAck);
    pipes.send(acked);
  }
  report << "failed=" << bool_text(!failure.ok()) << "\n";
  report << "code=" << code_name(failure.code()) << "\n";
  report << "errno=" << failure.sys_errno() << "\n";
  report << "names_file=" << bool_text(failure.message().find(path) != std::string::npos) << "\n";
  report << "names_efbig="
         << bool_text(failure.message().find("EFBIG") != std::string::npos ||
                      failure.message().find("File too large") != std::string::npos)
         << "\n";
  // After a failed write the store refuses writes until reopened: retrying
  // the failed batch must be kClosed. (Should it be written anyway, it is
  // acked, so the log stays a sequence of whole marked batches.)
  if (failed_batch > 0) {
    const auto events =
        make_marked_batch(failed_batch, kSpec.events, kSpec.min_payload, kSpec.max_payload);
    Result<AppendResult> again =
        store.append(marked_stream(failed_batch), ExpectedVersion::any(), events);
    report << "again_code=" << code_name(again.status().code()) << "\n";
    report << "again=" << again.status().to_string() << "\n";
    if (again.ok()) {
      acked = again->last_position.value;
      pipes.send(kAck);
      pipes.send(acked);
    }
  }
  // Reads still work and see every acked event.
  ReadResult all = read_all_events(store);
  report << "read_ok=" << bool_text(all.status.ok()) << "\n";
  report << "read_events=" << all.events.size() << "\n";
  report << "read_whole=" << bool_text(check_marked_log(all.events, kSpec).empty()) << "\n";
  ReadResult one = read_stream_events(store, marked_stream(1));
  report << "stream_read_ok=" << bool_text(one.status.ok() && !one.events.empty()) << "\n";
  report << "acked=" << acked << "\n";
  if (after == AfterFailure::kClose) {
    const Status closed = store.close();
    report << "close_code=" << code_name(closed.code()) << "\n";
    report << "close=" << closed.to_string() << "\n";
  }
  // Last, so that the parent can print it whole.
  report << "message=" << failure.to_string() << "\n";
  pipes.send(kReport);
  pipes.send_text(report.str());
  if (after == AfterFailure::kDie) {
    for (;;) pause();  // killed by the parent, with the store open
  }
  _exit(0);
}

std::map<std::string, std::string> parse_report(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

void run_disk_full(AfterFailure after) {
  TempDir dir("es-full");
  const std::string path = dir.file("full.evs");
  Child child =
      Child::spawn([&](const ChildPipes& pipes) { return disk_full_child(pipes, path, after); });
  uint64_t acked = 0;
  std::optional<std::string> text;
  while (std::optional<uint64_t> kind = child.receive()) {
    if (*kind == kAck) {
      std::optional<uint64_t> p = child.receive();
      REQUIRE(p.has_value());
      acked = *p;
    } else {
      REQUIRE(*kind == kReport);
      text = child.receive_text();
      break;
    }
  }
  if (after == AfterFailure::kDie) child.kill(SIGKILL);
  const int status = child.wait();
  INFO("child " << describe_wait_status(status));
  INFO("report:\n" << text.value_or("(none)"));
  REQUIRE(text.has_value());
  CHECK(child.wait_exit_code() == (after == AfterFailure::kDie ? -SIGKILL : 0));
  std::map<std::string, std::string> r = parse_report(*text);

  CHECK(r["failed"] == "1");
  CHECK(r["code"] == code_string(Code::kIoError));
  CHECK(r["errno"] == std::to_string(EFBIG));
  CHECK(r["names_file"] == "1");
  CHECK(r["names_efbig"] == "1");
  // store.h: a failed segment allocation fails only that append (no fdatasync
  // failed, so the store stays writable); retrying with the limit still in
  // place fails the same way.
  CHECK_MESSAGE(r["again_code"] == code_string(Code::kIoError),
                "retrying the failed batch got: " << r["again"]);
  CHECK(r["read_ok"] == "1");
  CHECK(r["read_events"] == std::to_string(acked));
  CHECK(r["read_whole"] == "1");
  CHECK(r["stream_read_ok"] == "1");
  CHECK(r["acked"] == std::to_string(acked));
  if (after == AfterFailure::kClose) {
    // Closing may need room for the index; if it has none it must say so as
    // an I/O error, and nothing acked may be lost either way.
    CHECK((r["close_code"] == code_string(Code::kOk) ||
           r["close_code"] == code_string(Code::kIoError)));
    if (r["close_code"] != code_string(Code::kOk)) MESSAGE("close failed: " << r["close"]);
  }
  CHECK(acked > 0);

  // Without the limit every acked event is back, in whole batches, and the
  // store takes appends again.
  std::unique_ptr<Store> store = open_or_fail(path, small_store_options());
  CHECK(store->committed_position().value >= acked);
  ReadResult all = read_all_events(*store);
  EVENTSOURCE_REQUIRE_OK(all.status);
  CHECK(all.events.size() >= acked);
  const std::string problem = check_marked_log(all.events, kSpec);
  INFO(problem);
  CHECK(problem.empty());
  const uint64_t next = all.events.size() / kSpec.events + 1;
  const auto events = make_marked_batch(next, kSpec.events, kSpec.min_payload, kSpec.max_payload);
  EVENTSOURCE_CHECK_OK(store->append(marked_stream(next), ExpectedVersion::any(), events));
  EVENTSOURCE_CHECK_OK(store->close());
  Result<VerifyReport> report = Store::verify(path);
  EVENTSOURCE_REQUIRE_OK(report);
  CHECK(report->clean());
}

TEST_SUITE("disk-full") {
  TEST_CASE("append past the file size limit fails with EFBIG and every acked event survives") {
    run_disk_full(AfterFailure::kClose);
  }
  TEST_CASE("acked events survive a kill after a failed append past the file size limit") {
    run_disk_full(AfterFailure::kDie);
  }
}

}  // namespace
}  // namespace eventsource::testing
