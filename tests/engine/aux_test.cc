// Aux records (format-spec.md "Aux segments", [F-39]..[F-47]): snapshots,
// dead letters and projection states are stored, found without a scan,
// survive reopen (removals too), respect their limits, are seen by read-only
// handles as of open/refresh, are compacted, and damage to them is reported
// with its location, never returned as data. Retry marks of dead letters
// ([F-47]): kept in a reserved projection state, atomic under concurrent
// marks, stale ones ignored, bounded.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/segment.h"
#include "eventsource/store.h"
#include "tests/support/files.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

const StreamId kOrder{"Order", "42"};
const StreamId kCart{"Cart", "7"};

DeadLetter letter(std::string projection, uint64_t position, std::string error) {
  DeadLetter d;
  d.projection = std::move(projection);
  d.position = GlobalPosition(position);
  d.error = std::move(error);
  d.attempts = 3;
  d.first_failure_us = 1000;
  d.last_failure_us = 2000;
  return d;
}

std::string latest_bytes(const Store& s, const StreamId& id) {
  auto r = s.latest_snapshot(id);
  REQUIRE(r.ok());
  return r.value() ? r.value()->bytes : std::string("<none>");
}

// Offsets of frames in aux segments (kind 3), found by reading the data file.
struct AuxFrame {
  uint64_t offset;
  uint32_t len;
};
std::vector<AuxFrame> aux_frames(const std::string& path) {
  const std::string data = read_file(path);
  std::vector<AuxFrame> out;
  const uint64_t seg = get_u64(reinterpret_cast<const uint8_t*>(data.data()) + 16);
  for (uint64_t base = format::kFileHeaderSize; base + seg <= data.size(); base += seg) {
    const auto* p = reinterpret_cast<const uint8_t*>(data.data()) + base;
    if (get_u32(p) != format::kSegmentMagic || get_u16(p + 4) != 3) continue;
    for (uint64_t off = 64; off + 64 <= seg;) {
      const uint32_t len = get_u32(p + off + 8);
      if (len == 0) break;
      out.push_back({base + off, len});
      off += len;
    }
  }
  return out;
}

std::vector<uint64_t> marked(const Store& s) {
  auto r = s.dead_letters_marked_for_retry();
  REQUIRE(r.ok());
  return r.value();
}

std::vector<uint64_t> add_letters(Store& s, std::string projection, int n) {
  std::vector<uint64_t> ids;
  for (int i = 0; i < n; ++i) {
    auto id = s.add_dead_letter(letter(projection, static_cast<uint64_t>(i) + 1, "e"));
    REQUIRE(id.ok());
    ids.push_back(id.value());
  }
  return ids;
}

// Stores `state` as the retry marks record of a fresh store at `path`,
// bypassing the engine's checks: saves it under the 10-byte name
// "%dlq.retry", then renames the record to "$dlq.retry" in the file and
// signs record and frame again. The result is a valid aux chain.
void plant_retry_marks(const std::string& path, const std::string& state) {
  {
    auto s = open_or_fail(path, small_store_options());
    EVENTSOURCE_REQUIRE_OK(s->save_projection_state("%dlq.retry", GlobalPosition(0), state));
    EVENTSOURCE_REQUIRE_OK(s->close());
  }
  const auto frames = aux_frames(path);
  REQUIRE(frames.size() == 1);
  std::string data = read_file(path);
  auto* d = reinterpret_cast<uint8_t*>(data.data());
  FileHeader h;
  EVENTSOURCE_REQUIRE_OK(parse_file_header(d, data.size(), &h));
  uint8_t* frame = d + frames[0].offset;
  uint8_t* rec = frame + format::frame_header::kSize;
  const uint32_t rec_len = get_u32(rec + format::aux_record::kRecordLen);
  const size_t name_at = data.find("%dlq.retry", frames[0].offset);
  REQUIRE(name_at != std::string::npos);
  data[name_at] = kReservedNamePrefix;
  put_u32(rec + format::aux_record::kChecksum,
          static_cast<uint32_t>(checksum64(rec + 8, rec_len - 8, h.seed())));
  put_u64(frame + format::frame_header::kChecksum,
          checksum64(frame + format::frame_header::kFrameLen,
                     frames[0].len - format::frame_header::kFrameLen, h.seed()));
  write_file(path, data);
}

std::string u64_bytes(std::initializer_list<uint64_t> ids) {
  std::string out;
  for (uint64_t id : ids) {
    char b[8];
    put_u64(reinterpret_cast<uint8_t*>(b), id);
    out.append(b, 8);
  }
  return out;
}

TEST_SUITE("aux") {
  TEST_CASE("snapshots: put, latest without a scan, versions, prune, list") {
    TempDir dir;
    auto s = open_or_fail(dir.file("s.evs"), small_store_options());
    CHECK(latest_bytes(*s, kOrder) == "<none>");
    EVENTSOURCE_REQUIRE_OK(s->put_snapshot(kOrder, StreamVersion(10), 1, "v10"));
    EVENTSOURCE_REQUIRE_OK(s->put_snapshot(kOrder, StreamVersion(20), 2, "v20"));
    EVENTSOURCE_REQUIRE_OK(s->put_snapshot(kCart, StreamVersion(3), 1, std::string("\0x", 2)));
    auto latest = s->latest_snapshot(kOrder);
    REQUIRE(latest.ok());
    REQUIRE(latest.value().has_value());
    CHECK(latest.value()->version == StreamVersion(20));
    CHECK(latest.value()->schema_version == 2u);
    CHECK(latest.value()->bytes == "v20");
    CHECK(latest.value()->timestamp_us > 0);
    CHECK(latest_bytes(*s, kCart) == std::string("\0x", 2));
    auto versions = s->snapshot_versions(kOrder);
    REQUIRE(versions.ok());
    CHECK(versions.value() == std::vector<StreamVersion>{StreamVersion(10), StreamVersion(20)});
    // A second put at the same version replaces it.
    EVENTSOURCE_REQUIRE_OK(s->put_snapshot(kOrder, StreamVersion(20), 3, "v20b"));
    CHECK(latest_bytes(*s, kOrder) == "v20b");
    auto pruned = s->prune_snapshots(kOrder, StreamVersion(20));
    REQUIRE(pruned.ok());
    CHECK(pruned.value() == 1u);
    CHECK(s->snapshot_versions(kOrder).value() == std::vector<StreamVersion>{StreamVersion(20)});
    CHECK(s->prune_snapshots(kOrder, StreamVersion(20)).value() == 0u);
    auto list = s->list_snapshots();
    REQUIRE(list.ok());
    REQUIRE(list.value().size() == 2);
    CHECK(list.value()[0].first == kCart);
    CHECK(list.value()[1].first == kOrder);
    CHECK(list.value()[1].second.version == StreamVersion(20));
    StoreStats st = s->stats();
    CHECK(st.snapshots == 2u);
    CHECK(st.snapshot_streams == 2u);
    CHECK(st.aux_segments == 1u);
    EVENTSOURCE_REQUIRE_OK(s->close());
    auto r = open_or_fail(dir.file("s.evs"), small_store_options());
    CHECK(latest_bytes(*r, kOrder) == "v20b");
    CHECK(r->snapshot_versions(kOrder).value() == std::vector<StreamVersion>{StreamVersion(20)});
    CHECK(latest_bytes(*r, kCart) == std::string("\0x", 2));
  }

  TEST_CASE("dead letters: add, list, show, remove, purge; removed stays removed after reopen") {
    TempDir dir;
    const std::string path = dir.file("d.evs");
    uint64_t a, b, c;
    {
      auto s = open_or_fail(path, small_store_options());
      a = s->add_dead_letter(letter("billing", 5, "boom")).value();
      b = s->add_dead_letter(letter("billing", 6, "bang")).value();
      c = s->add_dead_letter(letter("mail", 7, std::string(1000, 'x'))).value();
      CHECK(a < b);
      CHECK(b < c);
      CHECK(s->dead_letters().value().size() == 3);
      CHECK(s->dead_letters("billing").value().size() == 2);
      DeadLetter got = s->dead_letter(b).value();
      CHECK(got.projection == "billing");
      CHECK(got.position == GlobalPosition(6));
      CHECK(got.error == "bang");
      CHECK(got.attempts == 3u);
      CHECK(got.first_failure_us == 1000);
      CHECK(got.last_failure_us == 2000);
      EVENTSOURCE_REQUIRE_OK(s->remove_dead_letter(a));
      EVENTSOURCE_CHECK_CODE(s->remove_dead_letter(a), Code::kNotFound);
      EVENTSOURCE_CHECK_CODE(s->dead_letter(a), Code::kNotFound);
      EVENTSOURCE_CHECK_CODE(s->remove_dead_letter(999), Code::kNotFound);
      CHECK(s->stats().dead_letters == 2u);
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    {
      auto s = open_or_fail(path, small_store_options());
      auto all = s->dead_letters().value();
      REQUIRE(all.size() == 2);
      CHECK(all[0].id == b);
      CHECK(all[1].id == c);
      CHECK(all[1].error == std::string(1000, 'x'));
      CHECK(s->purge_dead_letters("mail").value() == 1u);
      CHECK(s->purge_dead_letters("mail").value() == 0u);
      // Ids are never reused.
      const uint64_t d = s->add_dead_letter(letter("mail", 8, "again")).value();
      CHECK(d > c);
      CHECK(s->purge_dead_letters().value() == 2u);
      CHECK(s->dead_letters().value().empty());
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    auto s = open_or_fail(path, small_store_options());
    CHECK(s->dead_letters().value().empty());
  }

  TEST_CASE("projection states: save often, latest without a scan, names, reopen") {
    TempDir dir;
    const std::string path = dir.file("p.evs");
    {
      auto s = open_or_fail(path, small_store_options());
      CHECK(!s->projection_state("totals").value().has_value());
      for (uint64_t i = 1; i <= 500; ++i)
        EVENTSOURCE_REQUIRE_OK(s->save_projection_state("totals", GlobalPosition(i), "st"));
      EVENTSOURCE_REQUIRE_OK(s->save_projection_state("audit", GlobalPosition(9)));
      auto p = s->projection_state("totals").value();
      REQUIRE(p.has_value());
      CHECK(p->position == GlobalPosition(500));
      CHECK(p->state == "st");
      CHECK(p->updated_us > 0);
      CHECK(s->projection_names().value() == std::vector<std::string>{"audit", "totals"});
      CHECK(s->stats().projection_states == 2u);
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    auto s = open_or_fail(path, small_store_options());
    CHECK(s->projection_state("totals").value()->position == GlobalPosition(500));
    CHECK(s->projection_state("audit").value()->state.empty());
  }

  TEST_CASE("retry marks: mark, list, unmark; kept across reopen; read-only sees them as of open") {
    TempDir dir;
    const std::string path = dir.file("rm.evs");
    std::vector<uint64_t> ids;
    {
      auto s = open_or_fail(path, small_store_options());
      ids = add_letters(*s, "billing", 3);
      CHECK(marked(*s).empty());
      // Duplicates count once; the answer is ascending whatever the order asked.
      const std::vector<uint64_t> ask = {ids[2], ids[0], ids[0]};
      CHECK(s->mark_dead_letters_for_retry(ask).value() == 2u);
      CHECK(marked(*s) == std::vector<uint64_t>{ids[0], ids[2]});
      // Marking what is marked already changes nothing and writes nothing.
      const uint64_t bytes = s->stats().aux_bytes;
      CHECK(s->mark_dead_letters_for_retry(std::vector<uint64_t>{ids[2]}).value() == 0u);
      CHECK(s->stats().aux_bytes == bytes);
      CHECK(s->mark_dead_letters_for_retry(ids).value() == 1u);
      CHECK(marked(*s) == ids);
      // Unmarking ignores ids that are not marked (or do not exist).
      EVENTSOURCE_REQUIRE_OK(s->unmark_dead_letters(std::vector<uint64_t>{ids[1], 999}));
      CHECK(marked(*s) == std::vector<uint64_t>{ids[0], ids[2]});
      const uint64_t after_unmark = s->stats().aux_bytes;
      EVENTSOURCE_REQUIRE_OK(s->unmark_dead_letters(std::vector<uint64_t>{ids[1]}));
      CHECK(s->stats().aux_bytes == after_unmark);
      // Marks do not change the dead letters.
      CHECK(s->dead_letters().value().size() == 3);
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    auto w = open_or_fail(path, small_store_options());
    CHECK(marked(*w) == std::vector<uint64_t>{ids[0], ids[2]});
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    auto r = open_or_fail(path, ro);
    CHECK(marked(*r) == std::vector<uint64_t>{ids[0], ids[2]});
    EVENTSOURCE_CHECK_CODE(r->mark_dead_letters_for_retry(ids), Code::kReadOnly);
    EVENTSOURCE_CHECK_CODE(r->unmark_dead_letters(ids), Code::kReadOnly);
    // The writer unmarks one and marks another: the reader sees it after refresh().
    EVENTSOURCE_REQUIRE_OK(w->unmark_dead_letters(std::vector<uint64_t>{ids[0]}));
    CHECK(w->mark_dead_letters_for_retry(std::vector<uint64_t>{ids[1]}).value() == 1u);
    CHECK(marked(*r) == std::vector<uint64_t>{ids[0], ids[2]});
    EVENTSOURCE_REQUIRE_OK(r->refresh());
    CHECK(marked(*r) == std::vector<uint64_t>{ids[1], ids[2]});
    EVENTSOURCE_REQUIRE_OK(w->close());
    auto again = open_or_fail(path, ro);
    CHECK(marked(*again) == std::vector<uint64_t>{ids[1], ids[2]});
  }

  TEST_CASE("retry marks from 4 threads at once are all kept") {
    // Each call reads the marks and writes them whole: a call that started
    // from marks missing another thread's pending write would drop them.
    for (Durability d : {Durability::kGroup, Durability::kNone}) {
      CAPTURE(static_cast<int>(d));
      TempDir dir;
      const std::string path = dir.file("mt.evs");
      StoreOptions o = small_store_options();
      o.durability = d;
      constexpr int kThreads = 4, kPerThread = 60;
      std::vector<std::vector<uint64_t>> ids(kThreads);
      {
        auto s = open_or_fail(path, o);
        for (int t = 0; t < kThreads; ++t)
          ids[t] = add_letters(*s, "p" + std::to_string(t), kPerThread);
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
          threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
              auto n = s->mark_dead_letters_for_retry(std::span(&ids[t][i], 1));
              CHECK(n.ok());
              if (n.ok()) CHECK(n.value() == 1u);
              // Every other one is unmarked again by the thread that marked it.
              if (i % 2 == 1) CHECK(s->unmark_dead_letters(std::span(&ids[t][i], 1)).ok());
            }
          });
        for (auto& th : threads) th.join();
        std::vector<uint64_t> want;
        for (int t = 0; t < kThreads; ++t)
          for (int i = 0; i < kPerThread; i += 2) want.push_back(ids[t][i]);
        std::sort(want.begin(), want.end());
        CHECK(marked(*s) == want);
        EVENTSOURCE_REQUIRE_OK(s->close());
        auto r = open_or_fail(path, o);
        CHECK(marked(*r) == want);
      }
    }
  }

  TEST_CASE("a removed or purged dead letter's mark is stale: never reported, dropped on write") {
    TempDir dir;
    const std::string path = dir.file("stale.evs");
    auto s = open_or_fail(path, small_store_options());
    const std::vector<uint64_t> a = add_letters(*s, "a", 2);
    const std::vector<uint64_t> b = add_letters(*s, "b", 2);
    std::vector<uint64_t> all = a;
    all.insert(all.end(), b.begin(), b.end());
    CHECK(s->mark_dead_letters_for_retry(all).value() == 4u);
    EVENTSOURCE_REQUIRE_OK(s->remove_dead_letter(a[0]));
    CHECK(marked(*s) == std::vector<uint64_t>{a[1], b[0], b[1]});
    CHECK(s->purge_dead_letters("b").value() == 2u);
    CHECK(marked(*s) == std::vector<uint64_t>{a[1]});
    // A stale id is not a dead letter any more: it cannot be marked.
    EVENTSOURCE_CHECK_CODE(s->mark_dead_letters_for_retry(std::vector<uint64_t>{b[0]}),
                           Code::kNotFound);
    // The next write of the marks drops the stale ones (one write), then
    // there is nothing left to drop (no write).
    const uint64_t before = s->stats().aux_bytes;
    EVENTSOURCE_REQUIRE_OK(s->unmark_dead_letters({}));
    const uint64_t after_drop = s->stats().aux_bytes;
    CHECK(after_drop > before);
    EVENTSOURCE_REQUIRE_OK(s->unmark_dead_letters({}));
    CHECK(s->stats().aux_bytes == after_drop);
    // New dead letters get new ids: a stale mark never marks them.
    const uint64_t c = add_letters(*s, "b", 1)[0];
    CHECK(marked(*s) == std::vector<uint64_t>{a[1]});
    CHECK(s->mark_dead_letters_for_retry(std::vector<uint64_t>{c}).value() == 1u);
    EVENTSOURCE_REQUIRE_OK(s->close());
    auto r = open_or_fail(path, small_store_options());
    CHECK(marked(*r) == std::vector<uint64_t>{a[1], c});
    CHECK(r->purge_dead_letters().value() == 2u);
    CHECK(marked(*r).empty());
  }

  TEST_CASE("marking an id without a dead letter is kNotFound naming it; nothing is marked") {
    TempDir dir;
    const std::string path = dir.file("nf.evs");
    auto s = open_or_fail(path, small_store_options());
    const std::vector<uint64_t> ids = add_letters(*s, "p", 2);
    const uint64_t before = s->stats().aux_bytes;
    auto r = s->mark_dead_letters_for_retry(std::vector<uint64_t>{ids[0], 4242, 4343, ids[1]});
    EVENTSOURCE_CHECK_CODE(r, Code::kNotFound);
    CHECK(r.status().message().find("4242") != std::string::npos);
    CHECK(r.status().message().find("4343") == std::string::npos);
    CHECK(r.status().message().find("nf.evs") != std::string::npos);
    CHECK(marked(*s).empty());
    CHECK(s->stats().aux_bytes == before);
    // An empty request marks nothing and is no error.
    CHECK(s->mark_dead_letters_for_retry({}).value() == 0u);
    CHECK(s->stats().aux_bytes == before);
  }

  TEST_CASE(
      "names starting with '$' are reserved; the marks record is hidden from names and counts") {
    TempDir dir;
    const std::string path = dir.file("res.evs");
    {
      auto s = open_or_fail(path, small_store_options());
      for (std::string_view name : {std::string_view("$dlq.retry"), std::string_view("$mine")}) {
        CAPTURE(name);
        auto saved = s->save_projection_state(name, GlobalPosition(1), "x");
        EVENTSOURCE_CHECK_CODE(saved, Code::kInvalidArgument);
        CHECK(saved.message().find("reserved") != std::string::npos);
        EVENTSOURCE_CHECK_CODE(s->projection_state(name), Code::kInvalidArgument);
        EVENTSOURCE_CHECK_CODE(s->add_dead_letter(letter(std::string(name), 1, "e")),
                               Code::kInvalidArgument);
      }
      // Only the first byte matters.
      EVENTSOURCE_REQUIRE_OK(s->save_projection_state("totals$", GlobalPosition(2)));
      const uint64_t id = s->add_dead_letter(letter("mail$er", 1, "e")).value();
      CHECK(s->mark_dead_letters_for_retry(std::span(&id, 1)).value() == 1u);
      CHECK(s->projection_names().value() == std::vector<std::string>{"totals$"});
      CHECK(s->stats().projection_states == 1u);
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    auto s = open_or_fail(path, small_store_options());
    CHECK(s->projection_names().value() == std::vector<std::string>{"totals$"});
    CHECK(s->stats().projection_states == 1u);
    CHECK(marked(*s).size() == 1u);
  }

  TEST_CASE("more than kMaxRetryMarks marks is kInvalidArgument saying how many are marked") {
    TempDir dir;
    const std::string path = dir.file("cap.evs");
    auto s = open_or_fail(path, small_store_options());
    const std::vector<uint64_t> ids = add_letters(*s, "p", static_cast<int>(kMaxRetryMarks) + 2);
    const std::span<const uint64_t> first(ids.data(), kMaxRetryMarks);
    // Exactly the limit fits: a 64 KiB state.
    CHECK(s->mark_dead_letters_for_retry(first).value() == kMaxRetryMarks);
    auto over = s->mark_dead_letters_for_retry(std::span(ids).last(2));
    EVENTSOURCE_CHECK_CODE(over, Code::kInvalidArgument);
    CHECK(over.status().message().find(std::to_string(kMaxRetryMarks) + " are marked") !=
          std::string::npos);
    CHECK(over.status().message().find("resolve") != std::string::npos);
    CHECK(over.status().message().find("cap.evs") != std::string::npos);
    CHECK(marked(*s).size() == kMaxRetryMarks);
    // Marked ones do not count twice.
    CHECK(s->mark_dead_letters_for_retry(first.first(10)).value() == 0u);
    // A removed dead letter frees its mark's room.
    EVENTSOURCE_REQUIRE_OK(s->remove_dead_letter(ids[0]));
    CHECK(s->mark_dead_letters_for_retry(std::span(ids).last(1)).value() == 1u);
    EVENTSOURCE_REQUIRE_OK(s->close());
    auto r = open_or_fail(path, small_store_options());
    const std::vector<uint64_t> got = marked(*r);
    REQUIRE(got.size() == kMaxRetryMarks);
    CHECK(got.front() == ids[1]);
    CHECK(got.back() == ids.back());
  }

  TEST_CASE("malformed retry marks are kCorruption naming the record, never guessed [F-47]") {
    struct Case {
      const char* what;
      std::string state;
    };
    const Case cases[] = {{"not a multiple of 8", u64_bytes({1}) + "xyz"},
                          {"descending", u64_bytes({5, 3})},
                          {"repeated", u64_bytes({4, 4})},
                          {"id 0", u64_bytes({0})}};
    for (const Case& c : cases) {
      CAPTURE(c.what);
      TempDir dir;
      const std::string path = dir.file("bad.evs");
      plant_retry_marks(path, c.state);
      const uint64_t at = aux_frames(path)[0].offset + format::frame_header::kSize;
      auto s = open_or_fail(path, small_store_options());
      // Hidden like any reserved record; the chain itself is sound.
      CHECK(s->projection_names().value().empty());
      auto got = s->dead_letters_marked_for_retry();
      EVENTSOURCE_CHECK_CODE(got, Code::kCorruption);
      CHECK(mentions_offset(got.status().message(), static_cast<int64_t>(at)));
      CHECK(got.status().message().find("esdump dlq") != std::string::npos);
      const uint64_t id = s->add_dead_letter(letter("p", 1, "e")).value();
      EVENTSOURCE_CHECK_CODE(s->mark_dead_letters_for_retry(std::span(&id, 1)), Code::kCorruption);
      EVENTSOURCE_CHECK_CODE(s->unmark_dead_letters(std::span(&id, 1)), Code::kCorruption);
      CHECK(s->dead_letters().value().size() == 1u);
    }
    // The planting itself is sound: well-formed marks (all stale here) read back.
    TempDir dir;
    const std::string path = dir.file("good.evs");
    plant_retry_marks(path, u64_bytes({1, 2}));
    auto s = open_or_fail(path, small_store_options());
    CHECK(marked(*s).empty());
  }

  TEST_CASE("limits are kInvalidArgument naming the store") {
    TempDir dir;
    auto s = open_or_fail(dir.file("l.evs"), small_store_options());
    EVENTSOURCE_CHECK_CODE(s->save_projection_state("", GlobalPosition(1)), Code::kInvalidArgument);
    EVENTSOURCE_CHECK_CODE(s->save_projection_state(std::string(256, 'n'), GlobalPosition(1)),
                           Code::kInvalidArgument);
    EVENTSOURCE_CHECK_OK(s->save_projection_state(std::string(255, 'n'), GlobalPosition(1)));
    EVENTSOURCE_CHECK_CODE(
        s->save_projection_state("p", GlobalPosition(1), std::string((64 << 10) + 1, 's')),
        Code::kInvalidArgument);
    EVENTSOURCE_CHECK_CODE(s->add_dead_letter(letter("", 1, "e")), Code::kInvalidArgument);
    EVENTSOURCE_CHECK_CODE(s->add_dead_letter(letter("p", 1, std::string((64 << 10) + 1, 'e'))),
                           Code::kInvalidArgument);
    EVENTSOURCE_CHECK_OK(s->add_dead_letter(letter("p", 1, std::string(64 << 10, 'e'))));
    EVENTSOURCE_CHECK_CODE(s->put_snapshot(StreamId{"Bad-type", "1"}, StreamVersion(1), 1, "x"),
                           Code::kInvalidArgument);
    EVENTSOURCE_CHECK_CODE(s->put_snapshot(kOrder, StreamVersion(0), 1, "x"),
                           Code::kInvalidArgument);
    auto too_big = s->put_snapshot(kOrder, StreamVersion(1), 1, std::string(1 << 20, 'b'));
    EVENTSOURCE_CHECK_CODE(too_big, Code::kInvalidArgument);
    CHECK(too_big.message().find("l.evs") != std::string::npos);
    // The biggest that fits does.
    EVENTSOURCE_CHECK_OK(s->put_snapshot(kOrder, StreamVersion(1), 1, std::string(1000000, 'b')));
    CHECK(latest_bytes(*s, kOrder).size() == 1000000u);
  }

  TEST_CASE("a read-only handle sees aux state as of open, and refresh() catches up") {
    TempDir dir;
    const std::string path = dir.file("r.evs");
    auto w = open_or_fail(path, small_store_options());
    EVENTSOURCE_REQUIRE_OK(w->put_snapshot(kOrder, StreamVersion(1), 1, "one"));
    EVENTSOURCE_REQUIRE_OK(w->save_projection_state("p", GlobalPosition(1)));
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    auto r = open_or_fail(path, ro);
    CHECK(latest_bytes(*r, kOrder) == "one");
    EVENTSOURCE_CHECK_CODE(r->save_projection_state("p", GlobalPosition(2)), Code::kReadOnly);
    EVENTSOURCE_CHECK_CODE(r->put_snapshot(kOrder, StreamVersion(2), 1, "x"), Code::kReadOnly);
    EVENTSOURCE_CHECK_CODE(r->add_dead_letter(letter("p", 1, "e")), Code::kReadOnly);
    EVENTSOURCE_CHECK_CODE(r->purge_dead_letters(), Code::kReadOnly);
    EVENTSOURCE_REQUIRE_OK(w->put_snapshot(kOrder, StreamVersion(2), 1, "two"));
    EVENTSOURCE_REQUIRE_OK(w->save_projection_state("p", GlobalPosition(2)));
    CHECK(latest_bytes(*r, kOrder) == "one");
    EVENTSOURCE_REQUIRE_OK(r->refresh());
    CHECK(latest_bytes(*r, kOrder) == "two");
    CHECK(r->projection_state("p").value()->position == GlobalPosition(2));
  }

  TEST_CASE("every durability mode stores and acknowledges aux writes") {
    for (Durability d : {Durability::kNone, Durability::kGroup, Durability::kEach}) {
      TempDir dir;
      StoreOptions o = small_store_options();
      o.durability = d;
      const std::string path = dir.file("m.evs");
      {
        auto s = open_or_fail(path, o);
        EVENTSOURCE_REQUIRE_OK(s->save_projection_state("p", GlobalPosition(3)));
        EVENTSOURCE_REQUIRE_OK(s->put_snapshot(kOrder, StreamVersion(1), 1, "x"));
        const uint64_t id = s->add_dead_letter(letter("p", 1, "e")).value();
        EVENTSOURCE_REQUIRE_OK(s->remove_dead_letter(id));
        CHECK(s->projection_state("p").value()->position == GlobalPosition(3));
      }
      auto s = open_or_fail(path, o);
      CHECK(s->projection_state("p").value()->position == GlobalPosition(3));
      CHECK(s->dead_letters().value().empty());
    }
  }

  TEST_CASE("compaction bounds the aux chain and keeps the logical state") {
    TempDir dir;
    const std::string path = dir.file("c.evs");
    StoreOptions o = small_store_options();
    uint64_t kept_id = 0;
    {
      auto s = open_or_fail(path, o);
      kept_id = s->add_dead_letter(letter("keep", 1, "kept")).value();
      const std::string blob(2000, 'z');
      for (uint64_t i = 1; i <= 3000; ++i) {
        EVENTSOURCE_REQUIRE_OK(s->save_projection_state("hot", GlobalPosition(i), blob));
        if (i % 100 == 0) {
          EVENTSOURCE_REQUIRE_OK(s->put_snapshot(kOrder, StreamVersion(i), 1, blob));
          EVENTSOURCE_REQUIRE_OK(s->prune_snapshots(kOrder, StreamVersion(i)));
          const uint64_t id = s->add_dead_letter(letter("tmp", i, "e")).value();
          EVENTSOURCE_REQUIRE_OK(s->remove_dead_letter(id));
        }
      }
      StoreStats st = s->stats();
      CHECK(st.aux_compactions >= 1u);
      CHECK(st.aux_segments <= 3u);
      CHECK(s->projection_state("hot").value()->position == GlobalPosition(3000));
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    auto s = open_or_fail(path, o);
    CHECK(s->projection_state("hot").value()->position == GlobalPosition(3000));
    CHECK(s->snapshot_versions(kOrder).value() == std::vector<StreamVersion>{StreamVersion(3000)});
    auto dl = s->dead_letters().value();
    REQUIRE(dl.size() == 1);
    CHECK(dl[0].id == kept_id);
    // New ids stay above every id ever given.
    CHECK(s->add_dead_letter(letter("x", 1, "e")).value() > 3000u);
    // 3000 saves of 2 KB (6 MB) fit in a few 1 MiB segments.
    CHECK(s->stats().file_bytes < 6u * (1u << 20));
    Result<VerifyReport> v = Store::verify(path);
    REQUIRE(v.ok());
    CHECK(v.value().clean());
  }

  TEST_CASE("a torn aux tail is cut by open; ignored read-only; verify calls it torn") {
    TempDir dir;
    const std::string path = dir.file("t.evs");
    {
      auto s = open_or_fail(path, small_store_options());
      EVENTSOURCE_REQUIRE_OK(s->save_projection_state("p", GlobalPosition(1)));
      EVENTSOURCE_REQUIRE_OK(s->save_projection_state("p", GlobalPosition(2)));
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    auto frames = aux_frames(path);
    REQUIRE(frames.size() == 2);
    // The last frame half written: its second half never made it.
    std::string data = read_file(path);
    for (uint64_t i = frames[1].offset + frames[1].len / 2; i < frames[1].offset + frames[1].len;
         ++i)
      data[i] = 0;
    write_file(path, data);
    Result<VerifyReport> v = Store::verify(path);
    REQUIRE(v.ok());
    CHECK(v.value().clean());
    REQUIRE(v.value().torn_tail.has_value());
    CHECK(v.value().torn_tail->offset == static_cast<int64_t>(frames[1].offset));
    StoreOptions ro = small_store_options();
    ro.mode = OpenMode::kReadOnly;
    {
      auto r = open_or_fail(path, ro);
      CHECK(r->projection_state("p").value()->position == GlobalPosition(1));
    }
    auto s = open_or_fail(path, small_store_options());
    CHECK(s->projection_state("p").value()->position == GlobalPosition(1));
    EVENTSOURCE_REQUIRE_OK(s->save_projection_state("p", GlobalPosition(3)));
    EVENTSOURCE_REQUIRE_OK(s->close());
    auto again = open_or_fail(path, small_store_options());
    CHECK(again->projection_state("p").value()->position == GlobalPosition(3));
  }

  TEST_CASE("damage before a durable aux frame is kCorruption naming segment and offset") {
    TempDir dir;
    const std::string path = dir.file("x.evs");
    StoreOptions o = small_store_options();
    o.durability = Durability::kEach;  // later frames prove the earlier ones durable
    {
      auto s = open_or_fail(path, o);
      EVENTSOURCE_REQUIRE_OK(s->put_snapshot(kOrder, StreamVersion(1), 1, "snap"));
      EVENTSOURCE_REQUIRE_OK(s->save_projection_state("p", GlobalPosition(1)));
      EVENTSOURCE_REQUIRE_OK(s->save_projection_state("p", GlobalPosition(2)));
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    auto frames = aux_frames(path);
    REQUIRE(frames.size() == 3);
    const std::string good = read_file(path);
    for (uint64_t at : {frames[0].offset + 70, frames[0].offset + 20, frames[1].offset + 64}) {
      CAPTURE(at);
      std::string data = good;
      data[at] ^= 0x10;
      write_file(path, data);
      Result<std::unique_ptr<Store>> r = Store::open(path, o);
      EVENTSOURCE_CHECK_CODE(r, Code::kCorruption);
      const uint64_t frame = at < frames[1].offset ? frames[0].offset : frames[1].offset;
      CHECK(mentions_offset(r.status().message(), static_cast<int64_t>(frame)));
      Result<VerifyReport> v = Store::verify(path);
      REQUIRE(v.ok());
      REQUIRE(!v.value().clean());
      CHECK(v.value().problems[0].offset == static_cast<int64_t>(frame));
      // Repair cuts the aux chain there and saves the bytes.
      Result<RepairReport> rep = Store::repair(path);
      EVENTSOURCE_REQUIRE_OK(rep);
      CHECK(rep.value().bytes_cut > 0);
      auto s = open_or_fail(path, o);
      CHECK(Store::verify(path).value().clean());
    }
  }

  TEST_CASE("a bit flip in any byte of any aux frame is reported with its frame, never read") {
    // Every byte of every frame is covered by the frame checksum [F-40]: a
    // flip before the last frame is damage (a later frame proves it durable,
    // [F-45]); in the last frame it is a torn tail that read-only opens ignore.
    TempDir dir;
    const std::string path = dir.file("flip.evs");
    StoreOptions o = small_store_options();
    o.durability = Durability::kEach;
    {
      auto s = open_or_fail(path, o);
      EVENTSOURCE_REQUIRE_OK(s->put_snapshot(kOrder, StreamVersion(4), 1, "snapshot-bytes"));
      EVENTSOURCE_REQUIRE_OK(s->add_dead_letter(letter("mailer", 3, "refused")));
      EVENTSOURCE_REQUIRE_OK(s->save_projection_state("p", GlobalPosition(1), "one"));
      EVENTSOURCE_REQUIRE_OK(s->save_projection_state("p", GlobalPosition(2), "two"));
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    const auto frames = aux_frames(path);
    REQUIRE(frames.size() == 4);
    StoreOptions ro = o;
    ro.mode = OpenMode::kReadOnly;
    const std::string good = read_file(path);
    uint64_t checked = 0;
    for (size_t k = 0; k < frames.size(); ++k) {
      for (uint64_t at = frames[k].offset; at < frames[k].offset + frames[k].len; ++at) {
        CAPTURE(k);
        CAPTURE(at);
        std::string byte = good.substr(at, 1);
        byte[0] = static_cast<char>(byte[0] ^ (1 << (at % 8)));
        write_at(path, at, byte);
        Result<std::unique_ptr<Store>> r = Store::open(path, ro);
        Result<VerifyReport> v = Store::verify(path);
        REQUIRE(v.ok());
        if (k + 1 < frames.size()) {
          EVENTSOURCE_CHECK_CODE(r, Code::kCorruption);
          CHECK(mentions_offset(r.status().message(), static_cast<int64_t>(frames[k].offset)));
          REQUIRE(!v.value().clean());
          CHECK(v.value().problems[0].offset == static_cast<int64_t>(frames[k].offset));
        } else {
          EVENTSOURCE_REQUIRE_OK(r);
          CHECK(r.value()->projection_state("p").value()->state == "one");
          CHECK(latest_bytes(*r.value(), kOrder) == "snapshot-bytes");
          CHECK(v.value().clean());
          REQUIRE(v.value().torn_tail.has_value());
          CHECK(v.value().torn_tail->offset == static_cast<int64_t>(frames[k].offset));
        }
        write_at(path, at, good.substr(at, 1));
        ++checked;
      }
    }
    CHECK(checked > 200);
    auto s = open_or_fail(path, ro);
    CHECK(s->projection_state("p").value()->state == "two");
  }

  TEST_CASE("a snapshot whose record rots after open is kCorruption, never returned") {
    TempDir dir;
    const std::string path = dir.file("rot.evs");
    auto s = open_or_fail(path, small_store_options());
    EVENTSOURCE_REQUIRE_OK(s->put_snapshot(kOrder, StreamVersion(1), 1, "payload-bytes"));
    auto frames = aux_frames(path);
    REQUIRE(frames.size() == 1);
    const uint64_t at = frames[0].offset + frames[0].len - 12;  // inside the snapshot bytes
    std::string byte = read_file(path).substr(at, 1);
    byte[0] ^= 1;
    write_at(path, at, byte);
    auto r = s->latest_snapshot(kOrder);
    EVENTSOURCE_CHECK_CODE(r, Code::kCorruption);
    CHECK(mentions_offset(r.status().message(), static_cast<int64_t>(frames[0].offset + 64)));
  }

  TEST_CASE("appends, snapshot puts and projection saves from several threads") {
    TempDir dir;
    const std::string path = dir.file("mt.evs");
    StoreOptions o = small_store_options();
    o.durability = Durability::kGroup;
    {
      auto s = open_or_fail(path, o);
      constexpr int kThreads = 6, kOps = 150;
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          const StreamId id{"T", std::to_string(t)};
          for (int i = 1; i <= kOps; ++i) {
            EventData e = make_event("E", "p");
            CHECK(s->append(id, ExpectedVersion::any(), std::span(&e, 1)).ok());
            CHECK(s->put_snapshot(id, StreamVersion(i), 1, std::to_string(i)).ok());
            CHECK(s->save_projection_state("proj" + std::to_string(t), GlobalPosition(i)).ok());
            auto latest = s->latest_snapshot(id);
            CHECK(latest.ok());
            if (latest.ok() && latest.value()) CHECK(latest.value()->version.value >= 1u);
            if (i % 50 == 0) CHECK(s->prune_snapshots(id, StreamVersion(i)).ok());
          }
        });
      }
      for (auto& th : threads) th.join();
      for (int t = 0; t < kThreads; ++t) {
        CHECK(s->projection_state("proj" + std::to_string(t)).value()->position ==
              GlobalPosition(kOps));
        CHECK(latest_bytes(*s, StreamId{"T", std::to_string(t)}) == std::to_string(kOps));
      }
      EVENTSOURCE_REQUIRE_OK(s->close());
    }
    auto s = open_or_fail(path, o);
    CHECK(s->committed_position() == GlobalPosition(6 * 150));
    for (int t = 0; t < 6; ++t)
      CHECK(s->projection_state("proj" + std::to_string(t)).value()->position ==
            GlobalPosition(150));
    CHECK(Store::verify(path).value().clean());
  }
}

// Not a pass/fail test: prints the cost of save_projection_state relative to
// a one-event append in each durability mode (run: --test-suite=aux-bench).
TEST_SUITE("aux-bench") {
  TEST_CASE("save_projection_state costs about an append") {
    for (uint64_t seg : {uint64_t{1} << 20, uint64_t{64} << 20})
      for (Durability d : {Durability::kNone, Durability::kGroup, Durability::kEach}) {
        TempDir dir;
        StoreOptions o = small_store_options();
        o.segment_size = seg;
        o.durability = d;
        auto s = open_or_fail(dir.file("b.evs"), o);
        const int n = d == Durability::kNone ? 20000 : 300;
        EventData e = make_event("Counted", std::string(40, 'p'));
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < n; ++i)
          REQUIRE(s->append(kOrder, ExpectedVersion::any(), std::span(&e, 1)).ok());
        auto t1 = std::chrono::steady_clock::now();
        for (int i = 0; i < n; ++i)
          REQUIRE(
              s->save_projection_state("proj", GlobalPosition(i + 1), std::string(40, 's')).ok());
        auto t2 = std::chrono::steady_clock::now();
        const double append_us = std::chrono::duration<double, std::micro>(t1 - t0).count() / n;
        const double save_us = std::chrono::duration<double, std::micro>(t2 - t1).count() / n;
        std::printf(
            "segments %3llu MiB, durability %s: append %.2f us, save_projection_state %.2f us, "
            "ratio %.2f (aux compactions %llu)\n",
            static_cast<unsigned long long>(seg >> 20),
            d == Durability::kNone    ? "none "
            : d == Durability::kGroup ? "group"
                                      : "each ",
            append_us, save_us, save_us / append_us,
            static_cast<unsigned long long>(s->stats().aux_compactions));
      }
  }
}

}  // namespace
}  // namespace eventsource::testing
