// verify() judges damage the way open() does: a bad tail frame holding a
// durable position is damage (not a torn write), the checkpoint's claim about
// its last frame is checked, and two event segments with one epoch are
// reported. Files are edited with the engine's own codecs (tests may reach
// inside) so that only the intended field is wrong.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "engine/checkpoint_file.h"
#include "engine/coding.h"
#include "engine/format.h"
#include "engine/os.h"
#include "engine/segment.h"
#include "eventsource/store.h"

namespace fs = std::filesystem;
using namespace eventsource;

namespace {

struct VerifyDir {
  fs::path path;
  VerifyDir() {
    path = fs::temp_directory_path() /
           fmt::format("es-verify-{}-{}", ::getpid(), std::random_device{}());
    fs::create_directories(path);
  }
  ~VerifyDir() { fs::remove_all(path); }
  std::string store() const { return (path / "v.evs").string(); }
};

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void spit(const std::string& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A closed store of `batches` batches; returns the file offset of the last frame.
uint64_t make_store(const std::string& path, int batches, size_t payload = 100) {
  StoreOptions o;
  o.segment_size = 1 << 20;
  o.durability = Durability::kNone;
  auto s = Store::open(path, o);
  REQUIRE(s.ok());
  for (int b = 0; b < batches; ++b) {
    std::vector<EventData> ev(2);
    for (auto& e : ev) {
      e.type = std::string(1, 'T');  // (not = "T": GCC 12 -Wrestrict false positive)
      e.payload = std::string(payload, static_cast<char>('a' + b % 26));
    }
    REQUIRE((*s)->append(StreamId{"V", std::to_string(b % 3)}, ExpectedVersion::any(), ev).ok());
  }
  REQUIRE((*s)->close().ok());
  std::string why;
  FileHeader fh;
  std::string bytes = slurp(path);
  REQUIRE(
      parse_file_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &fh).empty());
  auto c = read_checkpoint_file(*default_os(), path, fh.store_id, fh.seed(), &why);
  REQUIRE(c.ok());
  REQUIRE(c->has_value());
  return (*c)->last_frame_offset;
}

bool has_problem_at(const VerifyReport& r, int64_t segment, int64_t offset) {
  for (const auto& p : r.problems)
    if (p.segment == segment && p.offset == offset) return true;
  return false;
}

}  // namespace

TEST_SUITE("corruption") {
  TEST_CASE("verify reports a damaged last frame before the durable end at its own location") {
    VerifyDir dir;
    const uint64_t last = make_store(dir.store(), 5);
    std::string bytes = slurp(dir.store());
    // Zero the last frame's header: to a scanner it looks like a torn tail,
    // but the checkpoint says its events were durable.
    std::memset(bytes.data() + last, 0, format::frame_header::kSize);
    spit(dir.store(), bytes);
    auto r = Store::verify(dir.store());
    REQUIRE(r.ok());
    const int64_t slot = static_cast<int64_t>((last - format::kFileHeaderSize) >> 20);
    CHECK_MESSAGE(has_problem_at(*r, slot, static_cast<int64_t>(last)), "no problem at segment ",
                  slot, " offset ", last);
    // open agrees: damage before the durable end.
    auto s = Store::open(dir.store(), StoreOptions{});
    CHECK(!s.ok());
  }

  TEST_CASE("verify checks the frame the checkpoint names as its last") {
    VerifyDir dir;
    const uint64_t last = make_store(dir.store(), 5);
    std::string bytes = slurp(dir.store());
    FileHeader fh;
    REQUIRE(parse_file_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &fh)
                .empty());
    std::string why;
    auto c = read_checkpoint_file(*default_os(), dir.store(), fh.store_id, fh.seed(), &why);
    REQUIRE(c.ok());
    Checkpoint cp = **c;
    cp.last_frame_offset =
        format::kFileHeaderSize + format::segment_header::kSize;  // the first frame
    REQUIRE(last != cp.last_frame_offset);
    REQUIRE(write_checkpoint_file(*default_os(), dir.store(), cp, fh.seed(), 0600).ok());
    auto r = Store::verify(dir.store());
    REQUIRE(r.ok());
    bool found = false;
    for (const auto& p : r->problems)
      found |= p.file == checkpoint_path(dir.store()) &&
               p.offset == static_cast<int64_t>(format::checkpoint::kLastFrameOffset);
    CHECK(found);
    CHECK(!Store::open(dir.store(), StoreOptions{}).ok());  // open refuses the same claim
  }

  TEST_CASE("verify reports two event segments that share an epoch") {
    VerifyDir dir;
    make_store(dir.store(), 2000, 400);  // > 1 MiB of events: several segments
    std::string bytes = slurp(dir.store());
    FileHeader fh;
    REQUIRE(parse_file_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &fh)
                .empty());
    const uint64_t seg = 1 << 20;
    auto header_at = [&](uint64_t slot, SegmentHeader* h) {
      std::string w;
      return parse_segment_header(reinterpret_cast<const uint8_t*>(bytes.data()) +
                                      format::kFileHeaderSize + slot * seg,
                                  slot, fh.seed(), h, &w) == SegmentHeaderState::kValid;
    };
    SegmentHeader h0, h1;
    REQUIRE(header_at(0, &h0));
    REQUIRE(header_at(1, &h1));
    REQUIRE(h0.kind == format::SegmentKind::kEvents);
    REQUIRE(h1.kind == format::SegmentKind::kEvents);
    h1.epoch = h0.epoch;
    encode_segment_header(h1, fh.seed(),
                          reinterpret_cast<uint8_t*>(bytes.data()) + format::kFileHeaderSize + seg);
    spit(dir.store(), bytes);
    auto r = Store::verify(dir.store());
    REQUIRE(r.ok());
    bool found = false;
    for (const auto& p : r->problems) found |= p.what.find("share epoch") != std::string::npos;
    CHECK(found);
  }
}
