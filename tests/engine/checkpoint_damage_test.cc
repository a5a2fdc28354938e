// Checkpoint file damage (reliability row 10). A store is written in three
// phases, each ending with a checkpoint (the last one by close()), and the
// file images of every phase are kept. Its checkpoint file is then deleted,
// truncated to every length, bit-flipped at every bit, replaced by a stale
// one, by one from another store, or left as a crash between any two OS
// calls of a checkpoint update left it (a leftover PATH.ckpt.tmp included).
// In each case open must give exactly the state a full scan gives (the same
// store opened with no checkpoint file), and an append afterwards must work
// and survive a reopen. A checkpoint that claims more than the data file
// holds (an older data image restored under a newer checkpoint, a truncated
// data file) must fail open with kCorruption, never serve a shorter history.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/format.h"
#include "engine/os.h"
#include "eventsource/store.h"
#include "tests/support/batches.h"
#include "tests/support/child.h"
#include "tests/support/files.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

namespace ck = format::checkpoint;

constexpr MarkedBatchSpec kSpec{2, 1500, 3500};

// What a store shows: every event, every stream, and each stream read on its
// own (which must match the events of read_all).
struct Snapshot {
  std::vector<OwnedEvent> events;
  std::vector<StreamInfo> streams;
  std::string problem;  // a read that failed or disagreed
};

Snapshot take_snapshot(const Store& store) {
  Snapshot s;
  ReadResult all = read_all_events(store);
  if (!all.status.ok()) s.problem = "read_all: " + all.status.to_string();
  s.events = std::move(all.events);
  if (s.problem.empty() && s.events.size() != store.committed_position().value) {
    s.problem = "read_all gave " + std::to_string(s.events.size()) +
                " events, committed position " + std::to_string(store.committed_position().value);
  }
  s.streams = store.list_streams();
  std::map<std::string, std::vector<const OwnedEvent*>> by_stream;
  for (const OwnedEvent& e : s.events) by_stream[e.stream().name()].push_back(&e);
  for (const StreamInfo& info : s.streams) {
    if (!s.problem.empty()) break;
    const StreamId id{info.type, info.id};
    ReadResult r = read_stream_events(store, id);
    const std::vector<const OwnedEvent*>& want = by_stream[id.name()];
    if (!r.status.ok()) {
      s.problem = "read_stream " + id.name() + ": " + r.status.to_string();
    } else if (r.events.size() != info.version.value || r.events.size() != want.size()) {
      s.problem = "read_stream " + id.name() + " gave " + std::to_string(r.events.size()) +
                  " events, list_streams says " + std::to_string(info.version.value) +
                  ", read_all has " + std::to_string(want.size());
    } else {
      for (size_t i = 0; i < want.size(); ++i) {
        if (r.events[i] != *want[i]) {
          s.problem =
              "read_stream " + id.name() + " differs from read_all at " + r.events[i].describe();
          break;
        }
      }
    }
  }
  return s;
}

// "" when equal, else the first difference.
std::string compare(const Snapshot& got, const Snapshot& want) {
  if (!got.problem.empty()) return got.problem;
  if (!want.problem.empty()) return "reference: " + want.problem;
  if (got.events.size() != want.events.size()) {
    return std::to_string(got.events.size()) + " events, the full scan has " +
           std::to_string(want.events.size());
  }
  for (size_t i = 0; i < got.events.size(); ++i) {
    if (got.events[i] != want.events[i]) {
      return "event " + got.events[i].describe() + ", the full scan has " +
             want.events[i].describe();
    }
  }
  if (got.streams.size() != want.streams.size()) {
    return std::to_string(got.streams.size()) + " streams, the full scan has " +
           std::to_string(want.streams.size());
  }
  for (size_t i = 0; i < got.streams.size(); ++i) {
    const StreamInfo& a = got.streams[i];
    const StreamInfo& b = want.streams[i];
    if (a.type != b.type || a.id != b.id || a.version != b.version) {
      return "stream " + a.type + "-" + a.id + "@" + std::to_string(a.version.value) +
             ", the full scan has " + b.type + "-" + b.id + "@" + std::to_string(b.version.value);
    }
  }
  return "";
}

// The store's files at one moment (the data image is shared, not copied).
struct Image {
  std::shared_ptr<const std::string> data;
  std::optional<std::string> ckpt;
  std::optional<std::string> tmp;  // PATH.ckpt.tmp
};

std::shared_ptr<const std::string> share(std::string s) {
  return std::make_shared<const std::string>(std::move(s));
}

struct Fixture {
  TempDir dir{"es-ckpt-damage"};
  std::string path = dir.file("store.evs");
  std::string ckpt_path = path + format::kCheckpointSuffix;
  std::string tmp_path = path + format::kCheckpointTempSuffix;
  std::string ref_path = dir.file("ref.evs");  // full-scan reference copies
  // After each phase's checkpoint: A (first segment), B (second segment
  // started), C (closed; the current state).
  Image a, b, c;
  uint64_t batches = 0;  // batches in C
};

Image capture(const Fixture& f) {
  return Image{share(read_file(f.path)), read_file_if_exists(f.ckpt_path),
               read_file_if_exists(f.tmp_path)};
}

void put(const Fixture& f, const Image& im) {
  restore_file(f.path, *im.data);
  if (im.ckpt) {
    write_file(f.ckpt_path, *im.ckpt);
  } else {
    remove_file(f.ckpt_path);
  }
  if (im.tmp) {
    write_file(f.tmp_path, *im.tmp);
  } else {
    remove_file(f.tmp_path);
  }
}

void append_batches(Store& store, uint64_t from, uint64_t to) {
  for (uint64_t b = from; b <= to; ++b) {
    const auto events = make_marked_batch(b, kSpec.events, kSpec.min_payload, kSpec.max_payload);
    EVENTSOURCE_REQUIRE_OK(store.append(marked_stream(b), ExpectedVersion::any(), events));
  }
}

// Phase A: 80 batches in the first segment, checkpoint. Phase B: until the
// second segment holds 40 batches, checkpoint. Phase C: 60 more, close.
void build(Fixture* f, const std::string& path) {
  StoreOptions o = small_store_options();
  std::unique_ptr<Store> store = open_or_fail(path, o);
  uint64_t b = 0;
  append_batches(*store, 1, 80);
  b = 80;
  EVENTSOURCE_REQUIRE_OK(store->checkpoint());
  f->a = Image{share(read_file(path)), read_file(path + format::kCheckpointSuffix), std::nullopt};
  uint64_t in_second = 0;
  while (in_second < 40) {
    append_batches(*store, b + 1, b + 1);
    ++b;
    REQUIRE(b < 5000);
    if (store->stats().event_segments >= 2) ++in_second;
  }
  EVENTSOURCE_REQUIRE_OK(store->checkpoint());
  f->b = Image{share(read_file(path)), read_file(path + format::kCheckpointSuffix), std::nullopt};
  append_batches(*store, b + 1, b + 60);
  b += 60;
  EVENTSOURCE_REQUIRE_OK(store->close());
  f->c = Image{share(read_file(path)), read_file(path + format::kCheckpointSuffix), std::nullopt};
  f->batches = b;
  REQUIRE(f->a.ckpt->size() == ck::kSize);
  REQUIRE(f->b.ckpt->size() == ck::kSize);
  REQUIRE(f->c.ckpt->size() == ck::kSize);
}

// The state a full scan of `data` gives (a copy without a checkpoint file).
Snapshot full_scan(const Fixture& f, const std::string& data) {
  write_file(f.ref_path, data);
  remove_file(f.ref_path + format::kCheckpointSuffix);
  remove_file(f.ref_path + format::kCheckpointTempSuffix);
  StoreOptions o = small_store_options();
  o.mode = OpenMode::kReadOnly;
  std::unique_ptr<Store> store = open_or_fail(f.ref_path, o);
  Snapshot s = take_snapshot(*store);
  EVENTSOURCE_CHECK_OK(store->close());
  return s;
}

StoreOptions read_only() {
  StoreOptions o = small_store_options();
  o.mode = OpenMode::kReadOnly;
  return o;
}

const StreamId kAppended{"Appended", "1"};

EventData appended_event() {
  EventData e = make_event("AfterCheckpointDamage", "{\"appended\":true}");
  e.id = make_uuid(0xa99e, 1);
  e.timestamp_us = 1'700'000'123'000'000;
  return e;
}

// Puts `im` in place; open (read-only, then read-write) must show `ref`; an
// append must work and survive a reopen, and the next checkpoint must leave no
// temp file. Returns "" or what went wrong.
std::string check_open_matches(const Fixture& f, const Image& im, const Snapshot& ref) {
  put(f, im);
  {
    Result<std::unique_ptr<Store>> ro = Store::open(f.path, read_only());
    if (!ro.ok()) return "read-only open failed: " + ro.status().to_string();
    const std::string d = compare(take_snapshot(**ro), ref);
    if (!d.empty()) return "read-only open: " + d;
  }
  {
    Result<std::unique_ptr<Store>> rw = Store::open(f.path, small_store_options());
    if (!rw.ok()) return "read-write open failed: " + rw.status().to_string();
    Store& store = **rw;
    const std::string d = compare(take_snapshot(store), ref);
    if (!d.empty()) return "read-write open: " + d;
    const std::vector<EventData> events = {appended_event()};
    Result<AppendResult> r = store.append(kAppended, ExpectedVersion::no_stream(), events);
    if (!r.ok()) return "append after open failed: " + r.status().to_string();
    if (r->last_position != GlobalPosition(ref.events.size() + 1)) {
      return "append got position " + std::to_string(r->last_position.value);
    }
    Status closed = store.close();
    if (!closed.ok()) return "close after the append failed: " + closed.to_string();
  }
  if (file_exists(f.tmp_path)) return "PATH.ckpt.tmp still exists after a checkpoint";
  {
    Result<std::unique_ptr<Store>> rw = Store::open(f.path, small_store_options());
    if (!rw.ok()) return "reopen after the append failed: " + rw.status().to_string();
    Snapshot s = take_snapshot(**rw);
    if (!s.problem.empty()) return "after reopen: " + s.problem;
    if (s.events.size() != ref.events.size() + 1) {
      return "after reopen: " + std::to_string(s.events.size()) + " events, expected " +
             std::to_string(ref.events.size() + 1);
    }
    Snapshot prefix = s;
    prefix.events.pop_back();
    prefix.streams.clear();
    for (const StreamInfo& info : s.streams) {
      if (info.type != kAppended.type) prefix.streams.push_back(info);
    }
    const std::string d = compare(prefix, ref);
    if (!d.empty()) return "after reopen: " + d;
    const OwnedEvent& last = s.events.back();
    const EventData want = appended_event();
    if (last.stream() != kAppended || last.version != StreamVersion(1) || last.id != want.id ||
        last.payload != want.payload || last.type != want.type) {
      return "after reopen the appended event reads as " + last.describe();
    }
    Status closed = (*rw)->close();
    if (!closed.ok()) return "close after reopen failed: " + closed.to_string();
  }
  Result<VerifyReport> report = Store::verify(f.path);
  if (!report.ok()) return "verify failed: " + report.status().to_string();
  if (!report->clean()) return "verify after the append: " + report->problems[0].what;
  return "";
}

// verify must name the checkpoint file.
std::string check_verify_reports_checkpoint(const Fixture& f, const Image& im) {
  put(f, im);
  Result<VerifyReport> report = Store::verify(f.path);
  if (!report.ok()) return "verify failed: " + report.status().to_string();
  for (const VerifyProblem& p : report->problems) {
    if (p.file == f.ckpt_path && p.offset >= 0) return "";
  }
  return "verify did not report the checkpoint file (" + std::to_string(report->problems.size()) +
         " problems)";
}

// Open must fail with kCorruption (read-only and read-write), leaving the data
// file as it was.
std::string check_open_refuses(const Fixture& f, const Image& im) {
  for (OpenMode mode : {OpenMode::kReadOnly, OpenMode::kReadWrite}) {
    put(f, im);
    StoreOptions o = small_store_options();
    o.mode = mode;
    const std::string label = mode == OpenMode::kReadOnly ? "read-only" : "read-write";
    Result<std::unique_ptr<Store>> opened = Store::open(f.path, o);
    if (opened.ok()) {
      return label + " open succeeded with " +
             std::to_string((*opened)->committed_position().value) + " events";
    }
    if (opened.status().code() != Code::kCorruption) {
      return label + " open failed with " + opened.status().to_string() + ", expected kCorruption";
    }
    if (opened.status().message().find("checkpoint") == std::string::npos ||
        opened.status().offset() < 0) {
      return label + " open: the error does not name the checkpoint and an offset: " +
             opened.status().to_string();
    }
    // A read-write open pads a file that ends inside a segment with zeros
    // (format-spec.md, "Opening and recovery"); nothing else may change.
    const std::string after = read_file(f.path);
    if (after.size() < im.data->size() || after.compare(0, im.data->size(), *im.data) != 0 ||
        after.find_first_not_of('\0', im.data->size()) != std::string::npos) {
      return label + " open changed the data file";
    }
  }
  put(f, im);
  Result<VerifyReport> report = Store::verify(f.path);
  if (!report.ok()) return "verify failed: " + report.status().to_string();
  if (report->clean()) return "verify reports nothing";
  return "";
}

Image with_ckpt(const Image& base, std::optional<std::string> ckpt,
                std::optional<std::string> tmp = std::nullopt) {
  Image im = base;
  im.ckpt = std::move(ckpt);
  im.tmp = std::move(tmp);
  return im;
}

// ---------------------------------------------------------------------------
// An OS layer that "crashes" (the process _exit()s, leaving what the page
// cache has) right before the Nth call after arm(), reporting that call.

class CrashOs final : public Os {
 public:
  CrashOs(uint64_t crash_at, const ChildPipes& pipes) : crash_at_(crash_at), pipes_(pipes) {}
  void arm() { armed_ = true; }
  uint64_t calls() const { return calls_; }

  int open(const std::string& path, int flags, unsigned mode) override {
    step("open " + path);
    int fd = base_->open(path, flags, mode);
    std::lock_guard lock(mu_);
    if (fd >= 0) paths_[fd] = path;
    return fd;
  }
  int close(int fd) override {
    step("close " + name(fd));
    return base_->close(fd);
  }
  ssize_t pread(int fd, void* buf, size_t n, uint64_t offset) override {
    step("pread " + name(fd));
    return base_->pread(fd, buf, n, offset);
  }
  ssize_t pwrite(int fd, const void* buf, size_t n, uint64_t offset) override {
    step("pwrite " + name(fd) + " " + std::to_string(n) + " bytes at " + std::to_string(offset));
    return base_->pwrite(fd, buf, n, offset);
  }
  int fdatasync(int fd) override {
    step("fdatasync " + name(fd));
    return base_->fdatasync(fd);
  }
  int fsync(int fd) override {
    step("fsync " + name(fd));
    return base_->fsync(fd);
  }
  int fallocate(int fd, int mode, uint64_t offset, uint64_t len) override {
    step("fallocate " + name(fd) + " mode " + std::to_string(mode) + " at " +
         std::to_string(offset));
    return base_->fallocate(fd, mode, offset, len);
  }
  int ftruncate(int fd, uint64_t size) override {
    step("ftruncate " + name(fd));
    return base_->ftruncate(fd, size);
  }
  int64_t file_size(int fd) override {
    step("file_size " + name(fd));
    return base_->file_size(fd);
  }
  int rename(const std::string& from, const std::string& to) override {
    step("rename " + from + " -> " + to);
    return base_->rename(from, to);
  }
  int unlink(const std::string& path) override {
    step("unlink " + path);
    return base_->unlink(path);
  }
  int sync_dir_of(const std::string& path) override {
    step("sync_dir_of " + path);
    return base_->sync_dir_of(path);
  }
  const void* map_read(int fd, uint64_t offset, size_t len, int* err) override {
    step("map_read " + name(fd));
    return base_->map_read(fd, offset, len, err);
  }
  void unmap(const void* addr, size_t len) override {
    step("unmap");
    base_->unmap(addr, len);
  }
  int lock_exclusive(int fd, int* holder_pid) override {
    step("lock_exclusive " + name(fd));
    return base_->lock_exclusive(fd, holder_pid);
  }

 private:
  void step(const std::string& what) {
    if (!armed_) return;
    if (++calls_ == crash_at_) {
      pipes_.send(1);
      pipes_.send_text(what);
      _exit(0);
    }
  }
  std::string name(int fd) {
    std::lock_guard lock(mu_);
    auto it = paths_.find(fd);
    const std::string p = it == paths_.end() ? "fd " + std::to_string(fd) : it->second;
    const size_t slash = p.rfind('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
  }

  std::shared_ptr<Os> base_ = default_os();
  uint64_t crash_at_;
  const ChildPipes& pipes_;
  bool armed_ = false;
  uint64_t calls_ = 0;
  std::mutex mu_;
  std::map<int, std::string> paths_;
};

TEST_SUITE("checkpoint-damage") {
  TEST_CASE("a deleted, truncated or bit-flipped checkpoint falls back to the full scan's state") {
    Fixture f;
    build(&f, f.path);
    const Snapshot ref = full_scan(f, *f.c.data);
    REQUIRE(ref.problem.empty());
    REQUIRE(ref.events.size() == f.batches * kSpec.events);
    const std::string ok = check_marked_log(ref.events, kSpec);
    INFO(ok);
    REQUIRE(ok.empty());

    // The intact checkpoint: used, and the same state.
    CHECK(check_open_matches(f, f.c, ref) == "");

    {
      INFO("checkpoint file deleted");
      CHECK(check_open_matches(f, with_ckpt(f.c, std::nullopt), ref) == "");
    }

    uint64_t cases = 0, failures = 0;
    std::vector<std::string> shown;
    auto run = [&](const std::string& label, const Image& im) {
      ++cases;
      std::string problem = check_verify_reports_checkpoint(f, im);
      if (problem.empty()) problem = check_open_matches(f, im, ref);
      if (!problem.empty()) {
        ++failures;
        if (shown.size() < 10) shown.push_back(label + ": " + problem);
      }
    };
    for (size_t len = 0; len < ck::kSize; ++len) {
      run("checkpoint truncated to " + std::to_string(len) + " bytes",
          with_ckpt(f.c, f.c.ckpt->substr(0, len)));
    }
    run("checkpoint with one byte appended", with_ckpt(f.c, *f.c.ckpt + std::string(1, '\0')));
    for (size_t byte = 0; byte < ck::kSize; ++byte) {
      for (int bit = 0; bit < 8; ++bit) {
        std::string flipped = *f.c.ckpt;
        flipped[byte] = static_cast<char>(flipped[byte] ^ (1 << bit));
        run("checkpoint byte " + std::to_string(byte) + " bit " + std::to_string(bit) + " flipped",
            with_ckpt(f.c, flipped));
      }
    }
    MESSAGE(cases << " truncated or bit-flipped checkpoints, " << failures << " failures");
    for (const std::string& s : shown) {
      INFO(s);
      CHECK(s.empty());
    }
    CHECK(failures == 0);
  }

  TEST_CASE("a stale checkpoint or one from another store gives the full current state") {
    Fixture f;
    build(&f, f.path);
    const Snapshot ref = full_scan(f, *f.c.data);
    REQUIRE(ref.problem.empty());
    {
      INFO("stale: the checkpoint of phase A over the current data");
      CHECK(check_open_matches(f, with_ckpt(f.c, f.a.ckpt), ref) == "");
    }
    {
      INFO("stale: the checkpoint of phase B over the current data");
      CHECK(check_open_matches(f, with_ckpt(f.c, f.b.ckpt), ref) == "");
    }
    {
      // Another store written the same way: same layout, another store id.
      Fixture other;
      build(&other, other.path);
      REQUIRE(other.c.data->size() == f.c.data->size());
      REQUIRE(*other.c.ckpt != *f.c.ckpt);
      INFO("the checkpoint of another store");
      CHECK(check_verify_reports_checkpoint(f, with_ckpt(f.c, other.c.ckpt)) == "");
      CHECK(check_open_matches(f, with_ckpt(f.c, other.c.ckpt), ref) == "");
      INFO("another store's checkpoint over an older image of this one");
      CHECK(check_open_matches(f, with_ckpt(f.b, other.c.ckpt), full_scan(f, *f.b.data)) == "");
    }
    {
      // A leftover temp file is never read, whatever it holds.
      INFO("leftover PATH.ckpt.tmp holding a newer (over-claiming) checkpoint");
      CHECK(check_open_matches(f, with_ckpt(f.b, f.b.ckpt, f.c.ckpt), full_scan(f, *f.b.data)) ==
            "");
      INFO("leftover PATH.ckpt.tmp holding garbage, no checkpoint");
      CHECK(check_open_matches(f, with_ckpt(f.c, std::nullopt, std::string(77, 'x')), ref) == "");
    }
  }

  TEST_CASE("a checkpoint that claims more than the data file holds fails open") {
    Fixture f;
    build(&f, f.path);
    struct Case {
      const char* what;
      Image image;
    };
    const uint64_t seg = kMiB;
    const uint64_t last_frame = [&] {
      uint64_t v = 0;
      for (int i = 7; i >= 0; --i)
        v = (v << 8) | static_cast<uint8_t>((*f.c.ckpt)[ck::kLastFrameOffset + i]);
      return v;
    }();
    const uint64_t last_slot_start =
        format::kFileHeaderSize + (last_frame - format::kFileHeaderSize) / seg * seg;
    REQUIRE(last_frame > last_slot_start + 64);
    const std::vector<Case> cases = {
        {"phase A data under the final checkpoint", with_ckpt(f.a, f.c.ckpt)},
        {"phase B data under the final checkpoint", with_ckpt(f.b, f.c.ckpt)},
        {"phase A data under phase B's checkpoint", with_ckpt(f.a, f.b.ckpt)},
        {"data truncated where the last frame's segment starts",
         with_ckpt(Image{share(f.c.data->substr(0, last_slot_start)), {}, {}}, f.c.ckpt)},
        {"data truncated inside the last frame's segment, before the last frame",
         with_ckpt(Image{share(f.c.data->substr(0, last_frame - 8)), {}, {}}, f.c.ckpt)},
    };
    for (const Case& c : cases) {
      INFO(c.what);
      CHECK(check_open_refuses(f, c.image) == "");
    }
    // With the data file whole again, the same checkpoint is fine.
    CHECK(check_open_matches(f, f.c, full_scan(f, *f.c.data)) == "");
  }

  TEST_CASE("a crash between any two OS calls of a checkpoint update leaves a store that opens") {
    Fixture f;
    build(&f, f.path);
    constexpr uint64_t kMore = 30;  // batches appended before the crashing checkpoint
    uint64_t states = 0, failures = 0, with_tmp = 0, renamed = 0;
    std::vector<std::string> ops;
    bool completed = false;
    for (uint64_t n = 1; !completed; ++n) {
      REQUIRE(n < 200);
      put(f, f.c);
      Child child = Child::spawn([&](const ChildPipes& pipes) -> int {
        auto os = std::make_shared<CrashOs>(n, pipes);
        StoreOptions o = small_store_options();
        o.os = os;
        Result<std::unique_ptr<Store>> store = Store::open(f.path, o);
        if (!store.ok()) return 3;
        for (uint64_t b = f.batches + 1; b <= f.batches + kMore; ++b) {
          const auto events =
              make_marked_batch(b, kSpec.events, kSpec.min_payload, kSpec.max_payload);
          if (!(*store)->append(marked_stream(b), ExpectedVersion::any(), events).ok()) return 4;
        }
        os->arm();
        if (!(*store)->checkpoint().ok()) return 5;
        pipes.send(0);
        pipes.send_text("checkpoint completed after " + std::to_string(os->calls()) + " calls");
        _exit(0);  // no close
      });
      std::optional<uint64_t> crashed = child.receive();
      std::optional<std::string> op = crashed ? child.receive_text() : std::nullopt;
      INFO("child " << describe_wait_status(child.wait()));
      REQUIRE(op.has_value());
      REQUIRE(child.wait_exit_code() == 0);
      completed = *crashed == 0;
      ops.push_back(*op);
      const Image state = capture(f);
      CAPTURE(n);
      INFO("crashed before: " << *op);
      ++states;
      if (state.tmp) ++with_tmp;
      if (op->rfind("rename", 0) == 0) {
        // Crashed between writing the temp file and renaming it.
        CHECK(state.tmp.has_value());
        if (state.tmp) CHECK(state.tmp->size() == ck::kSize);
      }
      if (state.ckpt != f.c.ckpt) ++renamed;
      const Snapshot ref = full_scan(f, *state.data);
      REQUIRE(ref.problem.empty());
      REQUIRE(ref.events.size() == (f.batches + kMore) * kSpec.events);
      std::string problem = check_open_matches(f, state, ref);
      // The same data with the older checkpoint (stale if the rename was done).
      if (problem.empty() && state.ckpt != f.c.ckpt) {
        problem = check_open_matches(f, with_ckpt(state, f.c.ckpt, state.tmp), ref);
        if (!problem.empty()) problem = "with the previous checkpoint: " + problem;
      }
      if (problem.empty()) {
        problem = check_open_matches(f, with_ckpt(state, std::nullopt, state.tmp), ref);
        if (!problem.empty()) problem = "with no checkpoint: " + problem;
      }
      CHECK_MESSAGE(problem.empty(), problem);
      if (!problem.empty()) ++failures;
    }
    std::ostringstream steps;
    for (size_t i = 0; i < ops.size(); ++i) steps << "\n  " << i + 1 << ": " << ops[i];
    MESSAGE(states << " crash states of a checkpoint update (" << with_tmp
                   << " with a leftover PATH.ckpt.tmp, " << renamed << " after the rename), "
                   << failures << " failures; crash before call:" << steps.str());
    CHECK(with_tmp > 0);
    CHECK(renamed > 0);
  }
}

}  // namespace
}  // namespace eventsource::testing
