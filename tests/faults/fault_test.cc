// Reliability targets 1, 2, 8 and 9 (shared/reliability.md): fail the Nth OS
// call, crash at the Nth call, simulated power loss at every sync point and at
// random points, and a failed fdatasync. The zero-failure criteria are fixed;
// ES_SOAK=1 raises the iteration counts.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "eventsource/store.h"
#include "tests/faults/faulty_os.h"
#include "tests/faults/workload.h"

namespace fs = std::filesystem;
using namespace eventsource;
using namespace eventsource::testing;

namespace {

bool soak() { return std::getenv("ES_SOAK") != nullptr; }

struct Dir {
  fs::path path;
  Dir() {
    path = fs::temp_directory_path() /
           fmt::format("es-faults-{}-{}", ::getpid(), std::random_device{}());
    fs::create_directories(path);
  }
  ~Dir() { fs::remove_all(path); }
  std::string store() const { return (path / "s.evs").string(); }
  void reset() const {
    fs::remove_all(path);
    fs::create_directories(path);
  }
};

const char* mode_name(Durability d) {
  return d == Durability::kNone ? "none" : d == Durability::kGroup ? "group" : "each";
}

uint64_t calls_of_clean_run(const Dir& dir, const WorkloadConfig& cfg) {
  auto os = std::make_shared<FaultyOs>();
  WorkloadResult r = run_workload(dir.store(), cfg, os);
  REQUIRE(r.first_error.empty());
  uint64_t n = os->calls();
  dir.reset();
  return n;
}

}  // namespace

TEST_CASE("failing the Nth OS call never crashes and never loses an acked batch [target 1, 8]") {
  Dir dir;
  WorkloadConfig cfg;
  cfg.batches = soak() ? 200 : 90;
  cfg.checkpoint_after = cfg.batches / 2;
  const uint64_t total = calls_of_clean_run(dir, cfg);
  struct Variant {
    const char* name;
    int err;
    FaultKind kind;
    Persistence persistence;
  };
  const Variant variants[] = {
      {"EIO transient", EIO, FaultKind::kError, Persistence::kTransient},
      {"EIO persistent", EIO, FaultKind::kError, Persistence::kPersistent},
      {"ENOSPC persistent", ENOSPC, FaultKind::kError, Persistence::kPersistent},
      {"EINTR transient", EINTR, FaultKind::kError, Persistence::kTransient},
      {"short write", EIO, FaultKind::kShortWrite, Persistence::kTransient},
  };
  const uint64_t stride = soak() ? 1 : 3;
  uint64_t runs = 0;
  for (const Variant& v : variants) {
    for (uint64_t n = 1; n <= total + 1; n += stride) {
      dir.reset();
      auto os = std::make_shared<FaultyOs>();
      os->fail_at(n, v.err, v.kind, v.persistence);
      WorkloadResult r = run_workload(dir.store(), cfg, os);
      std::string broken = check_store(dir.store(), cfg, r, /*require_acked=*/true);
      INFO(std::string(v.name), " at call ", n, " of ", total, " (first error: ", r.first_error,
           ")");
      CHECK_MESSAGE(broken.empty(), broken);
      if (r.first_error.find(dir.store()) == std::string::npos && !r.first_error.empty())
        FAIL_CHECK("error does not name the store: " << r.first_error);
      ++runs;
    }
  }
  MESSAGE("fail-call-N runs: ", runs, " over ", total, " calls per workload");
}

TEST_CASE(
    "a crash at every OS call leaves a whole-batch prefix holding every acked batch [target 1]") {
  Dir dir;
  uint64_t runs = 0;
  for (Durability mode : {Durability::kNone, Durability::kGroup, Durability::kEach}) {
    WorkloadConfig cfg;
    cfg.durability = mode;
    cfg.batches = soak() ? 200 : 90;
    cfg.checkpoint_after = cfg.batches / 2;
    const uint64_t total = calls_of_clean_run(dir, cfg);
    const uint64_t stride = soak() ? 1 : 2;
    for (uint64_t n = 1; n <= total + 1; n += stride) {
      dir.reset();
      auto os = std::make_shared<FaultyOs>();
      os->crash_at(n);
      WorkloadResult r = run_workload(dir.store(), cfg, os);
      // A crash keeps the page cache: every acked batch survives in every mode.
      std::string broken = check_store(dir.store(), cfg, r, /*require_acked=*/true);
      INFO("mode ", mode_name(mode), ", crash at call ", n, " of ", total);
      CHECK_MESSAGE(broken.empty(), broken);
      ++runs;
    }
  }
  MESSAGE("crash-at-N runs: ", runs);
}

TEST_CASE(
    "power loss at every sync point and at random points loses no acked event in group/each "
    "[target 2]") {
  Dir dir;
  const int images = soak() ? 20 : 3;
  const int random_points = soak() ? 300 : 40;
  uint64_t checked = 0, changed_sectors = 0;
  for (Durability mode : {Durability::kNone, Durability::kGroup, Durability::kEach}) {
    WorkloadConfig cfg;
    cfg.durability = mode;
    cfg.batches = soak() ? 150 : 70;
    cfg.checkpoint_after = cfg.batches / 2;
    // Crash points: right after each sync of a clean run, plus random calls.
    std::vector<uint64_t> points;
    uint64_t total;
    {
      auto os = std::make_shared<FaultyOs>();
      WorkloadResult r = run_workload(dir.store(), cfg, os);
      REQUIRE(r.first_error.empty());
      total = os->calls();
      for (uint64_t c : os->sync_calls()) points.push_back(c + 1);
      dir.reset();
    }
    std::mt19937_64 rng(1234 + static_cast<int>(mode));
    for (int i = 0; i < random_points; ++i) points.push_back(1 + rng() % total);
    for (uint64_t n : points) {
      dir.reset();
      auto os = std::make_shared<FaultyOs>();
      os->crash_at(n);
      WorkloadResult r = run_workload(dir.store(), cfg, os);
      // Keep the crash-time files, then try several power-loss images of them.
      fs::path keep = dir.path / "keep";
      fs::create_directories(keep);
      for (const char* f : {"s.evs", "s.evs.ckpt"})
        if (fs::exists(dir.path / f)) fs::copy_file(dir.path / f, keep / f);
      for (int img = 0; img < images; ++img) {
        for (const char* f : {"s.evs", "s.evs.ckpt"}) {
          fs::remove(dir.path / f);
          if (fs::exists(keep / f)) fs::copy_file(keep / f, dir.path / f);
        }
        changed_sectors += os->power_loss(n * 1000 + img);
        std::string broken = check_store(dir.store(), cfg, r, mode != Durability::kNone);
        INFO("mode ", mode_name(mode), ", power loss at call ", n, " of ", total, ", image ", img);
        CHECK_MESSAGE(broken.empty(), broken);
        ++checked;
      }
      fs::remove_all(keep);
    }
  }
  MESSAGE("power-loss images checked: ", checked, " (sectors reverted: ", changed_sectors, ")");
}

TEST_CASE(
    "a failed fdatasync is not acked and the store refuses writes until reopened [target 9]") {
  Dir dir;
  auto os = std::make_shared<FaultyOs>();
  StoreOptions o;
  o.segment_size = 1 << 20;
  o.durability = Durability::kEach;
  o.os = os;
  auto s = Store::open(dir.store(), o);
  REQUIRE(s.ok());
  std::vector<EventData> ev(2);
  for (auto& e : ev) e.type = "T", e.payload = "p";
  REQUIRE((*s)->append(StreamId{"A", "1"}, ExpectedVersion::any(), ev).ok());
  // pwrite is the next call, fdatasync the one after.
  os->fail_at(2, EIO, FaultKind::kError, Persistence::kTransient);
  auto failed = (*s)->append(StreamId{"A", "1"}, ExpectedVersion::any(), ev);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.status().code() == Code::kIoError);
  CHECK(failed.status().message().find(dir.store()) != std::string::npos);
  CHECK(failed.status().message().find("fdatasync") != std::string::npos);
  auto refused = (*s)->append(StreamId{"A", "1"}, ExpectedVersion::any(), ev);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == Code::kClosed);
  // Reads go on.
  int n = 0;
  CHECK((*s)->read_stream(StreamId{"A", "1"}, {.from = StreamVersion(1), .max_count = 100},
                          [&](const RecordedEvent&) { return ++n, true; })
            .ok());
  CHECK(n >= 2);
  s->reset();
  auto again = Store::open(dir.store(), StoreOptions{});
  REQUIRE(again.ok());
  uint64_t v = (*again)->stream_version(StreamId{"A", "1"}).value;
  CHECK((v == 2 || v == 4));  // the unacked batch is wholly present or absent
  CHECK((*again)->append(StreamId{"A", "1"}, ExpectedVersion::any(), ev).ok());
}

TEST_CASE(
    "failing the Nth OS call during repair never crashes and a later repair keeps the prefix "
    "[target 8]") {
  Dir dir;
  const std::string golden = (dir.path / "golden.evs").string();
  // A store whose 11th batch is damaged: batches 0..9 must survive any repair.
  {
    StoreOptions o;
    o.segment_size = 1 << 20;
    o.durability = Durability::kNone;
    auto s = Store::open(golden, o);
    REQUIRE(s.ok());
    for (int b = 0; b < 30; ++b) {
      std::vector<EventData> ev(2);
      for (int i = 0; i < 2; ++i) {
        ev[i].type = "T";
        ev[i].payload = fmt::format("batch-{:03}-event-{}-{}", b, i, std::string(100, 'x'));
      }
      REQUIRE((*s)->append(StreamId{"R", "1"}, ExpectedVersion::any(), ev).ok());
    }
    REQUIRE((*s)->close().ok());
  }
  {
    std::string bytes;
    {
      std::ifstream in(golden, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    size_t at = bytes.find("batch-010-event-1");
    REQUIRE(at != std::string::npos);
    bytes[at + 20] ^= 0x10;
    std::ofstream out(golden, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  fs::remove(golden + ".ckpt");  // so open scans the damage and refuses
  auto check_prefix = [&](const std::string& path) -> std::string {
    auto s = Store::open(path, StoreOptions{});
    if (!s.ok()) return "open after repair: " + s.status().to_string();
    uint64_t n = 0;
    std::string bad;
    Status st = (*s)->read_all({.from = GlobalPosition(1)}, [&](const RecordedEvent& e) {
      std::string want = fmt::format("batch-{:03}-event-{}-", n / 2, n % 2);
      if (e.payload.substr(0, want.size()) != want)
        bad = "unexpected event at " + std::to_string(n);
      ++n;
      return bad.empty();
    });
    if (!st.ok()) return "read_all: " + st.to_string();
    if (!bad.empty()) return bad;
    if (n != 20) return fmt::format("{} events after repair, expected the 20 before the damage", n);
    return "";
  };
  uint64_t total = 0;
  {
    fs::copy_file(golden, dir.store(), fs::copy_options::overwrite_existing);
    auto os = std::make_shared<FaultyOs>();
    auto r = Store::repair(dir.store(), {.os = os});
    REQUIRE(r.ok());
    CHECK(r->changed);
    total = os->calls();
    CHECK(check_prefix(dir.store()) == "");
  }
  uint64_t runs = 0;
  for (uint64_t n = 1; n <= total + 1; ++n) {
    for (const char* f : {"s.evs", "s.evs.ckpt"}) fs::remove(dir.path / f);
    for (const auto& e : fs::directory_iterator(dir.path))
      if (e.path().filename().string().rfind("s.evs.cut-", 0) == 0) fs::remove(e.path());
    fs::copy_file(golden, dir.store());
    auto os = std::make_shared<FaultyOs>();
    os->fail_at(n, EIO, FaultKind::kError, Persistence::kPersistent);
    auto r = Store::repair(dir.store(), {.os = os});
    if (!r.ok())
      CHECK_MESSAGE(r.status().message().find(dir.store()) != std::string::npos,
                    "repair error does not name the store: ", r.status().to_string());
    // Whatever the failed repair left, a repair with a healthy disk restores the prefix.
    auto again = Store::repair(dir.store());
    INFO("repair failing at call ", n, " of ", total);
    REQUIRE_MESSAGE(again.ok(), again.status().to_string());
    CHECK(check_prefix(dir.store()) == "");
    ++runs;
  }
  MESSAGE("repair fail-call-N runs: ", runs);
}

namespace {

// Aux compaction under faults: snapshots of 60 KB put and pruned until the
// aux chain spans several 1 MiB segments and is compacted (twice), beside a
// dead letter that stays, one that is removed, and a projection state.
struct CompactionRun {
  int acked_snapshot = 0;  // highest acked snapshot version
  int attempted_snapshot = 0;
  bool kept_acked = false;     // the dead letter that stays
  bool removal_acked = false;  // the removal of the other one
  int acked_state = 0;
  std::string first_error;
};

std::string snapshot_bytes(int v) { return std::string(60000, static_cast<char>('a' + v % 26)); }

CompactionRun run_compaction(const std::string& path, std::shared_ptr<Os> os, Durability mode) {
  CompactionRun r;
  StoreOptions o;
  o.segment_size = 1 << 20;
  o.durability = mode;
  o.group_commit_window_us = 0;
  o.os = std::move(os);
  auto s = Store::open(path, o);
  if (!s.ok()) {
    r.first_error = s.status().to_string();
    return r;
  }
  auto note = [&](const Status& st) {
    if (!st.ok() && r.first_error.empty()) r.first_error = st.to_string();
    return st.ok();
  };
  DeadLetter d;
  d.projection = "keep";
  d.error = "stays";
  auto kept = (*s)->add_dead_letter(d);
  r.kept_acked = note(kept.status());
  d.projection = "gone";
  auto gone = (*s)->add_dead_letter(d);
  if (note(gone.status())) r.removal_acked = note((*s)->remove_dead_letter(gone.value()));
  for (int v = 1; v <= 45; ++v) {
    r.attempted_snapshot = v;
    if (note((*s)->put_snapshot(StreamId{"C", "1"}, StreamVersion(v), 1, snapshot_bytes(v)))) {
      r.acked_snapshot = v;
      // (Only after an acked put: a prune to v would drop the last acked one.)
      note((*s)->prune_snapshots(StreamId{"C", "1"}, StreamVersion(v)).status());
    }
    if (note((*s)->save_projection_state("p", GlobalPosition(v)))) r.acked_state = v;
  }
  note((*s)->close());
  return r;
}

std::string check_compaction(const std::string& path, const CompactionRun& r, bool require_acked) {
  auto s = Store::open(path, StoreOptions{});
  if (!s.ok()) {
    if (s.status().code() == Code::kNotFound) return "";
    return "reopen failed: " + s.status().to_string();
  }
  auto snap = (*s)->latest_snapshot(StreamId{"C", "1"});
  if (!snap.ok()) return "latest_snapshot: " + snap.status().to_string();
  if (snap.value()) {
    const int v = static_cast<int>(snap.value()->version.value);
    if (v > r.attempted_snapshot || snap.value()->bytes != snapshot_bytes(v))
      return fmt::format("snapshot {} holds bytes never put", v);
    if (require_acked && v < r.acked_snapshot)
      return fmt::format("snapshot {} but {} was acked", v, r.acked_snapshot);
  } else if (require_acked && r.acked_snapshot > 0) {
    return "acked snapshot lost";
  }
  auto dls = (*s)->dead_letters();
  if (!dls.ok()) return "dead_letters: " + dls.status().to_string();
  bool keep = false, gone = false;
  for (const DeadLetter& d : dls.value()) {
    keep |= d.projection == "keep";
    gone |= d.projection == "gone";
  }
  if (require_acked && r.kept_acked && !keep) return "acked dead letter lost";
  if (r.removal_acked && gone) return "removed dead letter is back";
  auto p = (*s)->projection_state("p");
  if (!p.ok()) return "projection_state: " + p.status().to_string();
  const int pos = p.value() ? static_cast<int>(p.value()->position.value) : 0;
  if (require_acked && pos < r.acked_state)
    return fmt::format("projection state {} but {} was acked", pos, r.acked_state);
  if (!(*s)->close().ok()) return "close failed";
  auto v = Store::verify(path);
  if (!v.ok()) return "verify failed: " + v.status().to_string();
  if (!v->clean()) return "verify: " + v->problems.front().what;
  return "";
}

}  // namespace

TEST_CASE(
    "aux compaction crashed or failed at every OS call keeps the aux state [target 1, 2, 8]") {
  Dir dir;
  uint64_t total = 0, compactions = 0;
  std::vector<uint64_t> sync_points;
  {
    auto os = std::make_shared<FaultyOs>();
    CompactionRun r = run_compaction(dir.store(), os, Durability::kGroup);
    REQUIRE_MESSAGE(r.first_error.empty(), r.first_error);
    total = os->calls();
    for (uint64_t c : os->sync_calls()) sync_points.push_back(c + 1);
    auto s = Store::open(dir.store(), StoreOptions{});
    REQUIRE(s.ok());
    compactions = (*s)->stats().aux_segments;
    dir.reset();
  }
  MESSAGE("compaction workload: ", total, " OS calls, aux segments at the end: ", compactions);
  uint64_t runs = 0;
  for (uint64_t n = 1; n <= total + 1; ++n) {
    for (int variant = 0; variant < 2; ++variant) {
      dir.reset();
      auto os = std::make_shared<FaultyOs>();
      if (variant == 0)
        os->crash_at(n);
      else
        os->fail_at(n, EIO, FaultKind::kError, Persistence::kTransient);
      CompactionRun r = run_compaction(dir.store(), os, Durability::kGroup);
      INFO((variant == 0 ? "crash" : "EIO"), " at call ", n, " of ", total, " (", r.first_error,
           ")");
      std::string broken = check_compaction(dir.store(), r, /*require_acked=*/true);
      CHECK_MESSAGE(broken.empty(), broken);
      ++runs;
    }
  }
  // Power loss right after every sync point (and so inside every step of
  // each compaction), two images each.
  for (uint64_t n : sync_points) {
    dir.reset();
    auto os = std::make_shared<FaultyOs>();
    os->crash_at(n);
    CompactionRun r = run_compaction(dir.store(), os, Durability::kGroup);
    fs::path keep = dir.path / "keep";
    fs::create_directories(keep);
    for (const char* f : {"s.evs", "s.evs.ckpt"})
      if (fs::exists(dir.path / f)) fs::copy_file(dir.path / f, keep / f);
    for (int img = 0; img < 2; ++img) {
      for (const char* f : {"s.evs", "s.evs.ckpt"}) {
        fs::remove(dir.path / f);
        if (fs::exists(keep / f)) fs::copy_file(keep / f, dir.path / f);
      }
      os->power_loss(n * 1000 + img);
      INFO("power loss at call ", n, " of ", total, ", image ", img);
      std::string broken = check_compaction(dir.store(), r, /*require_acked=*/true);
      CHECK_MESSAGE(broken.empty(), broken);
      ++runs;
    }
    fs::remove_all(keep);
  }
  MESSAGE("aux compaction fault runs: ", runs);
}
