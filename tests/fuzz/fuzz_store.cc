// Fuzz target: a whole store, the way esdump and an application use it.
//
// Input: the data file, optionally followed by a trailer:
//   [128-byte checkpoint file]["ESFZCKP1"]  PATH.ckpt is those 128 bytes;
//   [128-byte checkpoint file]["ESFZCKS1"]  the same, and re-sign (below);
//   ["ESFZRSG1"]                            no checkpoint file, re-sign.
// Re-sign: before anything runs, every checksum the layout allows is
// recomputed (resign.h: file header, slot headers with the segment magic,
// frames and records of event segments, index blobs, the checkpoint), so
// mutations reach the recovery logic behind the checksums.
// Inputs over 4 MiB are refused (a corpus store has 1 MiB segments, so up to
// three slots fit). For each input, in a scratch directory (/dev/shm when
// present):
//  1. Store::verify;
//  2. Store::open read-only: list_streams, read_all of everything (and a
//     filtered and a partial read_all), read_stream of every stream forward
//     and backward, stats, refresh, close;
//  3. on a copy (when the segment size is at most 4 MiB, so recovery's
//     padding stays small): Store::open read-write (recovery may cut a torn
//     tail or pad a short file), the same reads, one append, close (writes a
//     checkpoint), then open read-only again and read everything.
// Invariants checked (a failure aborts, like a crash):
//  - a read that returns ok delivered consecutive positions 1..committed
//    (read_all) or versions 1..version (read_stream), and the stream versions
//    add up to the committed position;
//  - a store that opened read-write, took an append and closed cleanly opens
//    again with the same committed position, and verifies clean if it did
//    before.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/format.h"
#include "engine/segment.h"
#include "eventsource/store.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/resign.h"
#include "tests/support/codec_text.h"

namespace {

using namespace eventsource;

constexpr size_t kMaxInput = 4u << 20;
constexpr char kTrailerCkpt[8] = {'E', 'S', 'F', 'Z', 'C', 'K', 'P', '1'};
constexpr char kTrailerCkptResign[8] = {'E', 'S', 'F', 'Z', 'C', 'K', 'S', '1'};
constexpr char kTrailerResign[8] = {'E', 'S', 'F', 'Z', 'R', 'S', 'G', '1'};
constexpr size_t kTrailer = 8;
constexpr size_t kCkptSize = format::checkpoint::kSize;
constexpr uint64_t kMaxSegmentForReadWrite = 4u << 20;

std::string status_text(const Status& s) { return s.to_string(); }

// Reads everything `store` holds and checks the read invariants.
void read_everything(const Store& store, const char* what) {
  const uint64_t committed = store.committed_position().value;
  std::vector<StreamInfo> streams = store.list_streams();
  uint64_t sum = 0;
  for (const StreamInfo& s : streams) sum += s.version.value;
  FUZZ_CHECK(sum == committed, std::string(what) + ": stream versions add up to " +
                                   std::to_string(sum) + ", committed position is " +
                                   std::to_string(committed));

  uint64_t next = 1;
  std::string first_type, first_stream_type, first_tenant;
  bool consecutive = true;
  Status s = store.read_all({.from = GlobalPosition(1)}, [&](const RecordedEvent& e) {
    eventsource::fuzz::sink(eventsource::fuzz::touch_event(e));
    if (e.position.value != next) consecutive = false;
    if (next == 1) {
      first_type.assign(e.type);
      first_stream_type.assign(e.stream_type);
      first_tenant.assign(e.tenant);
    }
    next = e.position.value + 1;
    return true;
  });
  if (s.ok())
    FUZZ_CHECK(consecutive && next == committed + 1,
               std::string(what) + ": read_all returned ok after delivering positions up to " +
                   std::to_string(next - 1) + (consecutive ? "" : " (with a gap)") +
                   ", committed position is " + std::to_string(committed));

  // A filtered read and a partial read from the middle (esdump's paths).
  ReadFilter filter;
  filter.event_types = {first_type};
  filter.stream_type = first_stream_type;
  filter.tenant = first_tenant;
  store
      .read_all({.from = GlobalPosition(1), .filter = filter},
                [](const RecordedEvent& e) {
                  eventsource::fuzz::sink(eventsource::fuzz::touch_event(e));
                  return true;
                })
      .ignore_error();
  store
      .read_all({.from = GlobalPosition(committed / 2 + 1), .max_count = 3},
                [](const RecordedEvent& e) {
                  eventsource::fuzz::sink(eventsource::fuzz::touch_event(e));
                  return true;
                })
      .ignore_error();

  for (const StreamInfo& info : streams) {
    const StreamId id{info.type, info.id};
    const uint64_t version = info.version.value;
    uint64_t want = 1;
    bool in_order = true;
    Status f = store.read_stream(id, {.from = StreamVersion(1)}, [&](const RecordedEvent& e) {
      eventsource::fuzz::sink(eventsource::fuzz::touch_event(e));
      in_order &= e.version.value == want && e.stream_type == id.type && e.stream_id == id.id;
      ++want;
      return true;
    });
    if (f.ok())
      FUZZ_CHECK(in_order && want == version + 1, std::string(what) + ": read_stream forward of " +
                                                      id.name() +
                                                      " returned ok with the wrong events");
    want = version;
    in_order = true;
    uint64_t got = 0;
    Status b = store.read_stream(
        id, {.from = StreamVersion(0), .direction = ReadDirection::kBackward},
        [&](const RecordedEvent& e) {
          eventsource::fuzz::sink(eventsource::fuzz::touch_event(e));
          in_order &= e.version.value == want && e.stream_type == id.type && e.stream_id == id.id;
          --want;
          ++got;
          return true;
        });
    if (b.ok())
      FUZZ_CHECK(in_order && got == version, std::string(what) + ": read_stream backward of " +
                                                 id.name() + " returned ok with the wrong events");
  }
  StoreStats st = store.stats();
  eventsource::fuzz::sink(st.events + st.streams + st.log_bytes + st.compressed_frames +
                          st.snapshots + st.dead_letters + st.projection_states + st.aux_bytes);
  // Aux records: every lookup (errors are fine, crashes and lies are not).
  uint64_t h = 0;
  if (auto snaps = store.list_snapshots(); snaps.ok()) {
    FUZZ_CHECK(snaps->size() == st.snapshot_streams,
               std::string(what) + ": list_snapshots disagrees with stats");
    for (const auto& [id, latest] : *snaps) {
      auto got = store.latest_snapshot(id);
      if (got.ok() && got.value()) {
        FUZZ_CHECK(got.value()->version == latest.version,
                   std::string(what) + ": latest_snapshot disagrees with list_snapshots");
        h += got.value()->bytes.size();
      }
      if (auto vs = store.snapshot_versions(id); vs.ok()) h += vs->size();
    }
  }
  if (auto dls = store.dead_letters(); dls.ok()) {
    for (const DeadLetter& d : *dls) {
      auto one = store.dead_letter(d.id);
      FUZZ_CHECK(one.ok() && one->error == d.error,
                 std::string(what) + ": dead_letter(id) disagrees with dead_letters()");
      h += d.error.size() + d.projection.size();
    }
  }
  if (auto names = store.projection_names(); names.ok())
    for (const std::string& n : *names) {
      auto p = store.projection_state(n);
      FUZZ_CHECK(p.ok() && p.value().has_value(),
                 std::string(what) + ": a listed projection has no state");
      h += p.value()->state.size();
    }
  eventsource::fuzz::sink(h);
}

bool verify_clean(const std::string& path) {
  Result<VerifyReport> r = Store::verify(path);
  if (!r.ok()) return false;
  uint64_t h = r->frames + r->events + r->streams + r->bytes_checked;
  for (const VerifyProblem& p : r->problems) h += eventsource::fuzz::touch(p.what) + p.file.size();
  eventsource::fuzz::sink(h);
  return r->clean();
}

void read_only_session(const std::string& path) {
  StoreOptions o;
  o.mode = OpenMode::kReadOnly;
  o.create = CreateMode::kMustExist;
  Result<std::unique_ptr<Store>> opened = Store::open(path, o);
  if (!opened.ok()) {
    eventsource::fuzz::sink(eventsource::fuzz::touch(opened.status().message()));
    return;
  }
  Store& store = **opened;
  read_everything(store, "read-only open");
  Result<GlobalPosition> r = store.refresh();
  if (r.ok()) read_everything(store, "read-only open after refresh");
  store.close().ignore_error();
}

void read_write_session(const std::string& path, bool was_clean) {
  StoreOptions o;
  o.mode = OpenMode::kReadWrite;
  o.create = CreateMode::kMustExist;
  o.segment_size = 1u << 20;  // only used if the file is empty
  o.durability = Durability::kNone;
  o.checkpoint_interval_bytes = 0;
  Result<std::unique_ptr<Store>> opened = Store::open(path, o);
  if (!opened.ok()) {
    eventsource::fuzz::sink(eventsource::fuzz::touch(opened.status().message()));
    return;
  }
  Store& store = **opened;
  read_everything(store, "read-write open");
  EventData e;
  e.type = "Fuzzed";
  e.payload = "{\"n\":1}";
  e.timestamp_us = 1;
  const StreamId stream{"Fuzz", "1"};
  Result<AppendResult> appended = store.append(stream, ExpectedVersion::any(), {&e, 1});
  if (appended.ok()) read_everything(store, "read-write open after an append");
  // Aux writes on the recovered store.
  bool aux_ok = store.put_snapshot(stream, StreamVersion(1), 7, "snapshot").ok();
  DeadLetter d;
  d.projection = "fuzz";
  d.error = "fuzzed";
  Result<uint64_t> id = store.add_dead_letter(d);
  aux_ok &= id.ok() && store.remove_dead_letter(*id).ok();
  aux_ok &= store.save_projection_state("fuzz", GlobalPosition(42), "st").ok();
  if (auto purged = store.purge_dead_letters("nobody"); purged.ok())
    eventsource::fuzz::sink(*purged);
  read_everything(store, "read-write open after aux writes");
  const uint64_t committed = store.committed_position().value;
  Status closed = store.close();
  if (!closed.ok() || !appended.ok()) return;

  StoreOptions ro;
  ro.mode = OpenMode::kReadOnly;
  ro.create = CreateMode::kMustExist;
  Result<std::unique_ptr<Store>> again = Store::open(path, ro);
  FUZZ_CHECK(again.ok(), "a store closed cleanly after recovery and an append does not open: " +
                             status_text(again.status()));
  FUZZ_CHECK((*again)->committed_position().value == committed,
             "reopened store has committed position " +
                 std::to_string((*again)->committed_position().value) + ", it was " +
                 std::to_string(committed) + " at close");
  read_everything(**again, "reopen after a read-write session");
  if (aux_ok) {
    auto p = (*again)->projection_state("fuzz");
    FUZZ_CHECK(p.ok() && p.value() && p.value()->position == GlobalPosition(42),
               "a projection state saved before a clean close is not there after reopen");
    auto dl = (*again)->dead_letters("fuzz");
    FUZZ_CHECK(dl.ok() && dl->empty(), "a removed dead letter is back after reopen");
  }
  (*again)->close().ignore_error();
  if (was_clean)
    FUZZ_CHECK(verify_clean(path),
               "a store that verified clean does not after recovery, an append and close");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  size_t data_len = size;
  const uint8_t* ckpt = nullptr;
  bool resign = false;
  auto ends_with = [&](const char* magic) {
    return size >= kTrailer && std::memcmp(data + size - kTrailer, magic, kTrailer) == 0;
  };
  if (size >= kCkptSize + kTrailer && (ends_with(kTrailerCkpt) || ends_with(kTrailerCkptResign))) {
    resign = ends_with(kTrailerCkptResign);
    data_len = size - kCkptSize - kTrailer;
    ckpt = data + data_len;
  } else if (ends_with(kTrailerResign)) {
    resign = true;
    data_len = size - kTrailer;
  }
  std::vector<uint8_t> signed_copy;
  if (resign) {
    signed_copy.assign(data, data + data_len + (ckpt != nullptr ? kCkptSize : 0));
    eventsource::fuzz::resign_store(signed_copy.data(), data_len,
                                    ckpt != nullptr ? signed_copy.data() + data_len : nullptr);
    data = signed_copy.data();
    if (ckpt != nullptr) ckpt = data + data_len;
  }

  eventsource::fuzz::ScratchDir& dir = eventsource::fuzz::ScratchDir::get();
  dir.clean();
  const std::string path = dir.file("s");
  eventsource::fuzz::write_file(path, data, data_len);
  if (ckpt != nullptr) eventsource::fuzz::write_file(path + ".ckpt", ckpt, kCkptSize);

  const bool clean = verify_clean(path);
  read_only_session(path);

  FileHeader header;
  if (!testing::parse_file_header_text(data, data_len, &header).empty() ||
      header.segment_size <= kMaxSegmentForReadWrite) {
    const std::string copy = dir.file("w");
    eventsource::fuzz::write_file(copy, data, data_len);
    if (ckpt != nullptr) eventsource::fuzz::write_file(copy + ".ckpt", ckpt, kCkptSize);
    read_write_session(copy, clean);
  }
  dir.clean();
  return 0;
}
