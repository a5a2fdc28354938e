// Unit tests of engine/checkpoint_file.{h,cc}: the 128-byte checkpoint file
// round trip, its validity rule [F-22] byte by byte (each field flipped, with
// and without re-signing), foreign and damaged files being ignored rather
// than failing, and the atomic-replace protocol [F-24] under a failure or a
// crash at every OS call (tests/faults/faulty_os.h).
#include "engine/checkpoint_file.h"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "engine/coding.h"
#include "engine/format.h"
#include "engine/os.h"
#include "engine/segment.h"
#include "tests/faults/faulty_os.h"
#include "tests/support/codec_text.h"
#include "tests/support/files.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

namespace ck = format::checkpoint;

uint64_t seed_of(const Uuid& store_id) {
  FileHeader h;
  h.store_id = store_id;
  return h.seed();
}

const Uuid kStore = make_uuid(0x5107e, 1);
const uint64_t kSeed = seed_of(kStore);

Checkpoint checkpoint(uint64_t durable) {
  Checkpoint c;
  c.store_id = kStore;
  c.durable_position = durable;
  c.last_frame_offset = 0x1040 + durable * 0x100;
  c.index_slot = 3 + durable;
  c.index_epoch = 9 + durable;
  c.written_us = -17 - static_cast<int64_t>(durable);  // any i64, negative included
  return c;
}

bool same(const Checkpoint& a, const Checkpoint& b) {
  return a.store_id == b.store_id && a.durable_position == b.durable_position &&
         a.last_frame_offset == b.last_frame_offset && a.index_slot == b.index_slot &&
         a.index_epoch == b.index_epoch && a.written_us == b.written_us;
}

struct Read {
  Status status;
  std::optional<Checkpoint> checkpoint;
  std::string problem;
};

Read read(const std::string& data_path, const Uuid& store_id = kStore, uint64_t seed = kSeed,
          Os& os = *default_os()) {
  Read r;
  r.problem = "(not cleared)";
  Result<std::optional<Checkpoint>> got =
      read_checkpoint_file_text(os, data_path, store_id, seed, &r.problem);
  if (got.ok()) {
    r.checkpoint = *got;
  } else {
    r.status = got.status();
  }
  return r;
}

// Writes through a FaultyOs without faults: the same bytes and calls, but
// its syncs stop at its model, so the loops below take milliseconds.
void write_or_fail(const std::string& data_path, const Checkpoint& c) {
  FaultyOs no_sync;
  EVENTSOURCE_REQUIRE_OK(write_checkpoint_file(no_sync, data_path, c, kSeed, 0600));
}

// The bytes of a valid checkpoint file for `c`.
std::string encoded(const Checkpoint& c) {
  TempDir dir("es-ckpt");
  write_or_fail(dir.file("s"), c);
  return read_file(checkpoint_path(dir.file("s")));
}

void resign(std::string& b, uint64_t seed = kSeed) {
  uint8_t* p = reinterpret_cast<uint8_t*>(b.data());
  put_u64(p + ck::kChecksum, checksum64(p, ck::kChecksum, seed));
}

// What a re-signed checkpoint with a changed byte at `offset` is ([F-22]).
struct Region {
  size_t begin, end;
  const char* field;
  const char* problem;  // nullptr: still valid, the field's value changed
};
const Region kRegions[] = {
    {ck::kMagic, ck::kVersion, "magic", "checkpoint file has a bad magic"},
    {ck::kVersion, ck::kLength, "version", "unknown version or non-zero reserved bytes"},
    {ck::kLength, ck::kStoreId, "length", "unknown version or non-zero reserved bytes"},
    {ck::kStoreId, ck::kDurablePosition, "store id", "checkpoint belongs to another store"},
    {ck::kDurablePosition, ck::kReserved, "durable_position .. written_us", nullptr},
    {ck::kReserved, ck::kChecksum, "reserved", "unknown version or non-zero reserved bytes"},
};

TEST_SUITE("checkpoint-file") {
  TEST_CASE("a written checkpoint reads back with every field, in the spec's layout") {
    TempDir dir("es-ckpt");
    const std::string path = dir.file("orders.evs");
    Checkpoint c = checkpoint(42);
    EVENTSOURCE_REQUIRE_OK(write_checkpoint_file(*default_os(), path, c, kSeed, 0600));
    CHECK(checkpoint_path(path) == path + ".ckpt");
    Read r = read(path);
    EVENTSOURCE_REQUIRE_OK(r.status);
    REQUIRE(r.checkpoint.has_value());
    CHECK(same(*r.checkpoint, c));
    CHECK(r.problem.empty());
    // [F-22] layout and [F-1] checksum over [0, 120).
    const std::string b = read_file(checkpoint_path(path));
    REQUIRE(b.size() == ck::kSize);
    const uint8_t* p = reinterpret_cast<const uint8_t*>(b.data());
    CHECK(b.substr(0, 8) == "ESCKPT01");
    CHECK(get_u32(p + ck::kVersion) == format::kFormatVersion);
    CHECK(get_u32(p + ck::kLength) == 128);
    CHECK(std::memcmp(p + ck::kStoreId, kStore.bytes.data(), 16) == 0);
    CHECK(get_u64(p + ck::kDurablePosition) == 42);
    CHECK(get_u64(p + ck::kLastFrameOffset) == c.last_frame_offset);
    CHECK(get_u64(p + ck::kIndexSlot) == c.index_slot);
    CHECK(get_u64(p + ck::kIndexEpoch) == c.index_epoch);
    CHECK(static_cast<int64_t>(get_u64(p + ck::kWrittenUs)) == c.written_us);
    CHECK(all_zero(p + ck::kReserved, ck::kChecksum - ck::kReserved));
    CHECK(get_u64(p + ck::kChecksum) == checksum64(p, ck::kChecksum, kSeed));
    // The mode given is the file's, and "no index" round-trips.
    c.index_slot = kNoSlot;
    EVENTSOURCE_REQUIRE_OK(write_checkpoint_file(*default_os(), path, c, kSeed, 0640));
    CHECK(file_mode_bits(checkpoint_path(path)) == 0640);
    r = read(path);
    REQUIRE(r.checkpoint.has_value());
    CHECK(r.checkpoint->index_slot == kNoSlot);
  }

  TEST_CASE("a missing checkpoint file reads as none, with no problem") {
    // [F-22]: its absence only costs a full scan.
    TempDir dir("es-ckpt");
    Read r = read(dir.file("s"));
    EVENTSOURCE_CHECK_OK(r.status);
    CHECK_FALSE(r.checkpoint.has_value());
    CHECK(r.problem.empty());
  }

  TEST_CASE("a checkpoint of any length but 128 is ignored, naming the file") {
    // [F-22] exactly 128 bytes; a truncation at every field boundary included.
    TempDir dir("es-ckpt");
    const std::string path = dir.file("s");
    const std::string good = encoded(checkpoint(5));
    for (size_t n : {0, 1, 8, 12, 16, 32, 40, 48, 56, 64, 72, 120, 127, 129, 130, 4096}) {
      CAPTURE(n);
      std::string b = good.substr(0, n);
      b.resize(n, '\0');
      write_file(checkpoint_path(path), b);
      Read r = read(path);
      EVENTSOURCE_CHECK_OK(r.status);
      CHECK_FALSE(r.checkpoint.has_value());
      CHECK(r.problem.find(checkpoint_path(path) + ": checkpoint file is ") == 0);
      CHECK(r.problem.find("bytes, expected 128") != std::string::npos);
    }
    for (size_t n = 0; n < ck::kSize; ++n) {
      Checkpoint c;
      CHECK_FALSE(parse_checkpoint_text(reinterpret_cast<const uint8_t*>(good.data()), n, kSeed, &c)
                      .empty());
    }
  }

  TEST_CASE(
      "each byte changed is rejected by its field's rule once re-signed, by the checksum "
      "otherwise") {
    // [F-22]; the magic is judged before the checksum.
    TempDir dir("es-ckpt");
    const std::string path = dir.file("s");
    const Checkpoint c = checkpoint(7);
    const std::string good = encoded(c);
    for (size_t off = 0; off < ck::kSize; ++off) {
      CAPTURE(off);
      std::string b = good;
      b[off] ^= 0x01;
      write_file(checkpoint_path(path), b);
      Read r = read(path);
      EVENTSOURCE_CHECK_OK(r.status);
      CHECK_FALSE(r.checkpoint.has_value());
      CHECK(r.problem.find(off < ck::kVersion ? "bad magic" : "checkpoint checksum mismatch") !=
            std::string::npos);
      if (off >= ck::kChecksum) continue;
      resign(b);
      write_file(checkpoint_path(path), b);
      r = read(path);
      EVENTSOURCE_CHECK_OK(r.status);
      for (const Region& region : kRegions) {
        if (off < region.begin || off >= region.end) continue;
        const std::string field = region.field;
        CAPTURE(field);
        if (region.problem == nullptr) {
          REQUIRE(r.checkpoint.has_value());
          CHECK_FALSE(same(*r.checkpoint, c));
          CHECK(r.problem.empty());
        } else {
          CHECK_FALSE(r.checkpoint.has_value());
          CHECK(r.problem.find(region.problem) != std::string::npos);
        }
      }
    }
  }

  TEST_CASE("another format version is ignored, not an error") {
    // [F-22] [F-34]
    TempDir dir("es-ckpt");
    const std::string path = dir.file("s");
    for (uint32_t version : {0u, format::kFormatVersion - 1, format::kFormatVersion + 1, ~0u}) {
      std::string b = encoded(checkpoint(1));
      put_u32(reinterpret_cast<uint8_t*>(b.data()) + ck::kVersion, version);
      resign(b);
      write_file(checkpoint_path(path), b);
      Read r = read(path);
      EVENTSOURCE_CHECK_OK(r.status);
      CHECK_FALSE(r.checkpoint.has_value());
      CHECK(r.problem.find("unknown version") != std::string::npos);
    }
  }

  TEST_CASE("a checkpoint from another store is ignored") {
    // [F-22]: its seed fails the checksum; a matching checksum with another
    // store id (a crafted file) is refused by the id.
    TempDir dir("es-ckpt");
    const std::string path = dir.file("s");
    write_or_fail(path, checkpoint(3));
    const Uuid other = make_uuid(0x07, 2);
    Read r = read(path, other, seed_of(other));
    EVENTSOURCE_CHECK_OK(r.status);
    CHECK_FALSE(r.checkpoint.has_value());
    CHECK(r.problem.find("checksum mismatch (or it belongs to another store)") !=
          std::string::npos);
    r = read(path, other, kSeed);
    CHECK_FALSE(r.checkpoint.has_value());
    CHECK(r.problem.find("checkpoint belongs to another store") != std::string::npos);
    CHECK(read(path).checkpoint.has_value());
  }

  TEST_CASE("an I/O error other than ENOENT is returned, not ignored") {
    // [F-22] last sentence.
    TempDir dir("es-ckpt");
    const std::string path = dir.file("s");
    REQUIRE(::mkdir(checkpoint_path(path).c_str(), 0700) == 0);  // read() fails with EISDIR
    Read r = read(path);
    EVENTSOURCE_CHECK_CODE(r.status, Code::kIoError);
    CHECK(r.status.sys_errno() == EISDIR);
    CHECK(r.status.message().find(checkpoint_path(path)) != std::string::npos);
    FaultyOs os;
    os.fail_at(1, EACCES, FaultKind::kError, Persistence::kTransient);
    r = read(path, kStore, kSeed, os);
    EVENTSOURCE_CHECK_CODE(r.status, Code::kIoError);
    CHECK(r.status.sys_errno() == EACCES);
  }

  TEST_CASE("a replace leaves the new file and no temp file; a leftover temp file is ignored") {
    // [F-24]; "Files": a leftover PATH.ckpt.tmp is ignored by readers and
    // truncated by the next checkpoint.
    TempDir dir("es-ckpt");
    const std::string path = dir.file("s");
    const std::string tmp = path + ".ckpt.tmp";
    write_or_fail(path, checkpoint(1));
    write_file(tmp, std::string(300, 'x'));
    Read r = read(path);
    REQUIRE(r.checkpoint.has_value());
    CHECK(same(*r.checkpoint, checkpoint(1)));
    write_or_fail(path, checkpoint(2));
    CHECK_FALSE(file_exists(tmp));
    r = read(path);
    REQUIRE(r.checkpoint.has_value());
    CHECK(same(*r.checkpoint, checkpoint(2)));
  }

  TEST_CASE("a failure at any OS call of a replace leaves the old or the new file, and no temp") {
    // [F-24]: on error unlink tmp and fail; the error names the file and errno.
    TempDir dir("es-ckpt");
    const std::string path = dir.file("s");
    const std::string tmp = path + ".ckpt.tmp";
    uint64_t calls = 0;
    {
      FaultyOs counting;
      EVENTSOURCE_REQUIRE_OK(write_checkpoint_file(counting, path, checkpoint(1), kSeed, 0600));
      calls = counting.calls();
    }
    REQUIRE(calls >= 6);  // open, pwrite, fsync, close, rename, sync_dir
    for (int err : {EIO, ENOSPC}) {
      for (uint64_t n = 1; n <= calls; ++n) {
        CAPTURE(err);
        CAPTURE(n);
        write_or_fail(path, checkpoint(1));
        FaultyOs os;
        os.fail_at(n, err, FaultKind::kError, Persistence::kTransient);
        bool renamed = true;
        Status s = write_checkpoint_file(os, path, checkpoint(2), kSeed, 0600, &renamed);
        CHECK(os.fault_fired());
        CHECK(renamed == (n == calls));  // only the directory sync comes after the rename
        EVENTSOURCE_CHECK_CODE(s, Code::kIoError);
        CHECK(s.sys_errno() == err);
        CHECK(s.message().find(path + ".ckpt") != std::string::npos);
        CHECK_FALSE(file_exists(tmp));
        Read r = read(path);
        REQUIRE(r.checkpoint.has_value());
        // Only the directory sync comes after the rename.
        CHECK(same(*r.checkpoint, checkpoint(n == calls ? 2 : 1)));
      }
    }
  }

  TEST_CASE("a store whose checkpoint fails at any OS call verifies clean and keeps every event") {
    // Found by api-faults: when close()'s checkpoint renamed the new file into
    // place and then failed to fsync the directory, the store freed the new
    // index segment the file now named; verify then reported "the index
    // segment named by the checkpoint is missing" on an intact store.
    TempDir dir("es-ckpt-store");
    bool fired_after_rename = false;
    for (uint64_t n = 1;; ++n) {
      CAPTURE(n);
      const std::string path = dir.file("s" + std::to_string(n));
      auto os = std::make_shared<FaultyOs>();
      StoreOptions o = small_store_options();
      o.os = os;
      std::unique_ptr<Store> store = open_or_fail(path, o);
      const StreamId stream{"Order", "1"};
      const std::vector<EventData> batch = {make_event("A", "{}"), make_event("B", "{}")};
      EVENTSOURCE_REQUIRE_OK(store->append(stream, ExpectedVersion::any(), batch));
      EVENTSOURCE_REQUIRE_OK(store->checkpoint());
      EVENTSOURCE_REQUIRE_OK(store->append(stream, ExpectedVersion::any(), batch));
      os->fail_at(n, EIO, FaultKind::kError, Persistence::kTransient);
      const Status closed = store->close();
      const bool fired = os->fault_fired();
      fired_after_rename =
          fired_after_rename || closed.message().find("directory") != std::string::npos;
      store.reset();
      auto report = Store::verify(path);
      EVENTSOURCE_REQUIRE_OK(report);
      CHECK_MESSAGE(report->clean(), report->problems.front().what);
      std::unique_ptr<Store> again = open_or_fail(path, small_store_options());
      CHECK(again->committed_position().value == 4);
      EVENTSOURCE_REQUIRE_OK(again->close());
      if (!fired) break;
    }
    CHECK(fired_after_rename);  // the case of the bug was reached
  }

  TEST_CASE("a crash at any OS call of a replace leaves the old or the new file") {
    // [F-24]: a leftover temp file is allowed, and the next replace works.
    TempDir dir("es-ckpt");
    const std::string path = dir.file("s");
    bool saw_old = false, saw_new = false;
    for (uint64_t n = 1; n <= 8; ++n) {
      CAPTURE(n);
      write_or_fail(path, checkpoint(1));
      FaultyOs os;
      os.crash_at(n);
      Status s = write_checkpoint_file(os, path, checkpoint(2), kSeed, 0600);
      Read r = read(path);
      REQUIRE(r.checkpoint.has_value());
      const bool is_new = same(*r.checkpoint, checkpoint(2));
      CHECK((is_new || same(*r.checkpoint, checkpoint(1))));
      if (s.ok()) CHECK(is_new);
      (is_new ? saw_new : saw_old) = true;
      write_or_fail(path, checkpoint(3));
      CHECK_FALSE(file_exists(path + ".ckpt.tmp"));
    }
    CHECK(saw_old);
    CHECK(saw_new);
  }

  TEST_CASE("a short write of the temp file is continued, not committed half-written") {
    TempDir dir("es-ckpt");
    const std::string path = dir.file("s");
    FaultyOs os;
    os.fail_at(2, EIO, FaultKind::kShortWrite, Persistence::kTransient);  // call 2: the pwrite
    EVENTSOURCE_REQUIRE_OK(write_checkpoint_file(os, path, checkpoint(4), kSeed, 0600));
    CHECK(os.fault_fired());
    Read r = read(path);
    REQUIRE(r.checkpoint.has_value());
    CHECK(same(*r.checkpoint, checkpoint(4)));
  }
}

}  // namespace
}  // namespace eventsource::testing
