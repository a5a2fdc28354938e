// Bit rot over the whole store (reliability row 5) and damage before the
// durable end (row 6).
//
// "bitflip" / "bitflip-quick": a golden multi-segment store (1 MiB segments,
// three event segments of uncompressed and compressed frames, several streams
// and tenants, closed cleanly so it has an index segment and a checkpoint) is
// hit by single-bit flips at seeded random positions in the file header,
// every segment header, the frames, the index segment and the checkpoint
// file. Each flip is made in place on the working copy and undone after
// Store::verify plus a read-only open, read_all, read_stream of every stream
// (also from the last position of each segment, so that frames are skipped
// on their headers) and list_streams have run on it (in a forked child, so that a crash or a
// hang is one counted failure, not the end of the run). Criteria per flip:
// no crash; no read returns data different from the golden content (a read
// returns golden data or a non-ok Status, kCorruption with a location); a
// flip in checksummed bytes is reported by verify (with a segment or the
// checkpoint file, and an offset) or by open failing with kCorruption. Flips
// in bytes no checksum covers (classified by position from format-spec.md)
// are counted apart. ES_BITFLIP_SEED and ES_BITFLIP_FLIPS override the seed
// and the number of flips. A second "bitflip-quick" case flips every bit of
// the header fields read_all trusts when it skips frames.
//
// "durable-damage": a store written by a writer that synced every append and
// died (no close), with a checkpoint part-way. Damage at several spots (a
// record in the first segment, frame headers in the middle segment, a segment
// header, a compressed frame in the last segment) must fail open with the
// segment and offset of the damage; Store::repair cuts there, saving the cut
// bytes to a side file; afterwards verify is clean, every event before the
// damage is the golden one, and the store takes appends that survive a reopen.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/format.h"
#include "eventsource/store.h"
#include "tests/support/child.h"
#include "tests/support/files.h"
#include "tests/support/record_layout.h"
#include "tests/support/store_helpers.h"
#include "tests/support/temp_dir.h"

namespace eventsource::testing {
namespace {

namespace fhdr = format::file_header;
namespace sh = format::segment_header;
namespace fh = format::frame_header;
namespace rec = format::record;

// ---------------------------------------------------------------------------
// Little-endian reads from a file image.

uint64_t le(std::string_view s, uint64_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(s[at + i]);
  return v;
}
uint64_t le64(std::string_view s, uint64_t at) { return le(s, at, 8); }
uint32_t le32(std::string_view s, uint64_t at) { return static_cast<uint32_t>(le(s, at, 4)); }
uint16_t le16(std::string_view s, uint64_t at) { return static_cast<uint16_t>(le(s, at, 2)); }

bool all_zero(std::string_view s, uint64_t at, uint64_t n) {
  for (uint64_t i = at; i < at + n && i < s.size(); ++i)
    if (s[i] != 0) return false;
  return true;
}

uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// ---------------------------------------------------------------------------
// The golden content: deterministic batches over 4 stream types x 7 ids, four
// tenants (one of them none), optional metadata and correlation/causation ids.
// Batch kinds: small (uncompressed, body < kCompressMin), compressible (large
// repetitive JSON: zstd frames) and incompressible (large random payloads:
// compression is tried and refused, so these stay uncompressed).

constexpr uint32_t kCompressMin = 4096;
const char* const kStreamTypes[] = {"Order", "Customer", "Invoice", "Shipment"};
const char* const kTenants[] = {"", "acme", "globex", "initech"};
const char* const kEventTypes[] = {"Created", "Updated", "LineAdded", "Paid", "Closed"};

enum class BatchKind { kSmall, kCompressible, kIncompressible };

BatchKind batch_kind(uint64_t b) {
  const uint64_t k = mix64(b ^ 0xb17f11bull) % 100;
  return k < 62   ? BatchKind::kSmall
         : k < 70 ? BatchKind::kCompressible
                  : BatchKind::kIncompressible;
}

StreamId golden_stream(uint64_t b) {
  const uint64_t m = mix64(b * 7 + 3);
  return StreamId{kStreamTypes[m % 4], std::to_string((m >> 8) % 7 + 1)};
}

std::string golden_payload(uint64_t b, uint32_t i, BatchKind kind) {
  const uint64_t m = mix64(b * 1000003 + i);
  std::string s = "{\"batch\":" + std::to_string(b) + ",\"event\":" + std::to_string(i);
  switch (kind) {
    case BatchKind::kSmall: {
      const size_t size = 100 + m % 600;
      s += ",\"fill\":\"";
      for (size_t k = 0; s.size() + 2 < size; ++k)
        s += static_cast<char>('a' + (b + i + k * 7) % 26);
      s += "\"}";
      return s;
    }
    case BatchKind::kCompressible: {
      const size_t size = 2000 + m % 2000;
      static const char* const kWords[] = {"\"sku-1042 qty 3 price 19.99\",",
                                           "\"sku-2210 qty 1 price 4.50\",",
                                           "\"note: leave at the back door\","};
      s += ",\"lines\":[";
      for (uint64_t k = 0; s.size() + 2 < size; ++k) s += kWords[mix64(m + k) % 3];
      s.resize(size - 2);
      s += "]}";
      return s;
    }
    case BatchKind::kIncompressible: {
      const size_t size = 1500 + m % 1000;
      std::mt19937_64 rng(m);
      s.clear();
      while (s.size() < size) s += static_cast<char>(rng());
      return s;
    }
  }
  return s;
}

std::vector<EventData> golden_batch(uint64_t b) {
  const uint64_t m = mix64(b * 31 + 7);
  const BatchKind kind = batch_kind(b);
  // Small batches stay below kCompressMin; the others reach it. Compressed
  // frames hold few events: verify decodes such a frame once per event.
  const uint32_t n = kind == BatchKind::kSmall          ? 1 + m % 4
                     : kind == BatchKind::kCompressible ? 2 + m % 3
                                                        : 3 + m % 3;
  std::vector<EventData> out;
  for (uint32_t i = 0; i < n; ++i) {
    EventData e;
    e.type = kEventTypes[(b + i) % 5];
    e.payload = golden_payload(b, i, kind);
    e.id = make_uuid(0x601d0000 + b, i);
    e.tenant = kTenants[((m >> 16) + i) % 4];
    e.timestamp_us = 1'700'000'000'000'000 + static_cast<int64_t>(b * 1000 + i);
    if ((b + i) % 3 == 0) e.correlation_id = make_uuid(0xc0, b);
    if ((b + i) % 5 == 0) e.causation_id = make_uuid(0xca, b * 100 + i);
    if ((b + i) % 2 == 0) {
      e.metadata = "{\"batch\":" + std::to_string(b) + ",\"event\":" + std::to_string(i) + "}";
    }
    out.push_back(std::move(e));
  }
  return out;
}

StoreOptions golden_options() {
  StoreOptions o = small_store_options();  // 1 MiB segments, no sync, no auto checkpoint
  o.compress_min_bytes = kCompressMin;
  return o;
}

StoreOptions read_only_options() {
  StoreOptions o = small_store_options();
  o.mode = OpenMode::kReadOnly;
  o.create = CreateMode::kMustExist;
  return o;
}

// ---------------------------------------------------------------------------
// The layout of a store image, parsed with format-spec.md: segments and their
// frames (and, in uncompressed frames, the records).

struct FrameLoc {
  uint64_t offset = 0;  // absolute
  uint32_t len = 0;
  bool compressed = false;
  uint64_t first_position = 0;
  uint32_t count = 0;
  uint32_t body_len = 0;
  // Uncompressed: each record's absolute offset, length, and where its strings start.
  struct Record {
    uint64_t offset;
    uint32_t len;
    uint32_t strings;  // bytes before the stream type's
  };
  std::vector<Record> records;
};

struct SegLoc {
  uint64_t slot = 0;
  uint64_t offset = 0;  // absolute offset of the slot
  uint16_t kind = 0;
  uint64_t epoch = 0;
  uint64_t first_position = 0;
  uint64_t slot_count = 1;
  uint64_t payload_len = 0;
  std::vector<FrameLoc> frames;
  uint64_t frames_end = 0;  // absolute offset after the last frame
};

struct Layout {
  uint64_t seg_size = 0;
  uint64_t slots = 0;
  std::vector<SegLoc> segs;         // in slot order, index segments included
  std::vector<size_t> events;       // indexes into segs, in log (epoch) order
  std::optional<size_t> index_seg;  // the (single) index segment
};

Layout parse_layout(std::string_view img) {
  Layout l;
  REQUIRE(img.size() >= format::kFileHeaderSize);
  l.seg_size = le64(img, fhdr::kSegmentSize);
  REQUIRE(l.seg_size == kMiB);
  l.slots = (img.size() - format::kFileHeaderSize) / l.seg_size;
  for (uint64_t slot = 0; slot < l.slots; ++slot) {
    const uint64_t base = format::kFileHeaderSize + slot * l.seg_size;
    if (all_zero(img, base, sh::kSize)) continue;
    SegLoc s;
    s.slot = slot;
    s.offset = base;
    s.kind = le16(img, base + sh::kKind);
    s.epoch = le64(img, base + sh::kEpoch);
    s.first_position = le64(img, base + sh::kFirstPosition);
    s.slot_count = le64(img, base + sh::kSlotCount);
    s.payload_len = le64(img, base + sh::kPayloadLen);
    REQUIRE(le32(img, base + sh::kMagic) == format::kSegmentMagic);
    REQUIRE((s.kind == 1 || s.kind == 2));
    REQUIRE(s.slot_count >= 1);
    if (s.kind == 1) {
      uint64_t off = base + sh::kSize;
      while (off + fh::kSize <= base + l.seg_size && !all_zero(img, off, fh::kSize)) {
        FrameLoc f;
        f.offset = off;
        f.len = le32(img, off + fh::kFrameLen);
        f.compressed = (static_cast<uint8_t>(img[off + fh::kFlags]) & format::kFrameFlagZstd) != 0;
        f.first_position = le64(img, off + fh::kFirstPosition);
        f.count = le32(img, off + fh::kCount);
        f.body_len = le32(img, off + fh::kBodyLen);
        REQUIRE(f.len >= fh::kSize);
        REQUIRE(off + f.len <= base + l.seg_size);
        REQUIRE(le64(img, off + fh::kFileOffset) == off);
        if (!f.compressed) {
          uint64_t r = off + fh::kSize;
          for (uint32_t i = 0; i < f.count; ++i) {
            const RecordLayout rl =
                record_layout(reinterpret_cast<const uint8_t*>(img.data()) + r, img.size() - r);
            REQUIRE(rl.end >= rec::kMinSize);
            f.records.push_back(
                {r, static_cast<uint32_t>(rl.end), static_cast<uint32_t>(rl.stream_type + 1)});
            r += rl.end;
          }
          REQUIRE(r == off + fh::kSize + f.body_len);
        }
        s.frames.push_back(std::move(f));
        off += s.frames.back().len;
      }
      s.frames_end = off;
    }
    l.segs.push_back(std::move(s));
    slot += l.segs.back().slot_count - 1;
  }
  for (size_t i = 0; i < l.segs.size(); ++i) {
    if (l.segs[i].kind == 1) l.events.push_back(i);
    if (l.segs[i].kind == 2) {
      REQUIRE_FALSE(l.index_seg.has_value());
      l.index_seg = i;
    }
  }
  std::sort(l.events.begin(), l.events.end(),
            [&](size_t a, size_t b) { return l.segs[a].epoch < l.segs[b].epoch; });
  return l;
}

// ---------------------------------------------------------------------------
// Golden content as read back, and comparisons against it.

struct Golden {
  std::string path;
  std::string ckpt_path;
  std::string data;  // file images
  std::string ckpt;
  std::vector<OwnedEvent> events;  // read_all from 1
  std::vector<StreamInfo> streams;
  std::map<std::string, std::vector<size_t>> by_stream;  // name -> indexes into events
  Layout layout;
  // read_all starts here too: the last position of each event segment, so
  // that the frames before it in its segment are skipped on their headers.
  std::vector<uint64_t> probe_from;
};

void set_probes(Golden* g) {
  for (size_t si : g->layout.events) {
    const SegLoc& s = g->layout.segs[si];
    REQUIRE_FALSE(s.frames.empty());
    g->probe_from.push_back(s.frames.back().first_position + s.frames.back().count - 1);
  }
}

bool same_event(const RecordedEvent& e, const OwnedEvent& g) {
  return e.position == g.position && e.version == g.version && e.timestamp_us == g.timestamp_us &&
         e.id == g.id && e.correlation_id == g.correlation_id && e.causation_id == g.causation_id &&
         e.stream_type == g.stream_type && e.stream_id == g.stream_id && e.type == g.type &&
         e.tenant == g.tenant && e.metadata == g.metadata && e.payload == g.payload;
}

bool same_streams(const std::vector<StreamInfo>& a, const std::vector<StreamInfo>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].type != b[i].type || a[i].id != b[i].id || a[i].version != b[i].version) return false;
  }
  return true;
}

// Streams (in list_streams order) of the first `n` golden events.
std::vector<StreamInfo> streams_of_prefix(const std::vector<OwnedEvent>& events, size_t n) {
  std::map<std::pair<std::string, std::string>, uint64_t> counts;
  for (size_t i = 0; i < n; ++i) ++counts[{events[i].stream_type, events[i].stream_id}];
  std::vector<StreamInfo> out;
  for (const auto& [k, v] : counts) out.push_back(StreamInfo{k.first, k.second, StreamVersion(v)});
  return out;
}

// Reads the whole golden content of the store at `path` (read-only).
void capture_content(Golden* g) {
  std::unique_ptr<Store> store = open_or_fail(g->path, read_only_options());
  ReadResult all = read_all_events(*store);
  EVENTSOURCE_REQUIRE_OK(all.status);
  REQUIRE(all.events.size() == store->committed_position().value);
  g->events = std::move(all.events);
  g->streams = store->list_streams();
  for (size_t i = 0; i < g->events.size(); ++i) {
    REQUIRE(g->events[i].position == GlobalPosition(i + 1));
    g->by_stream[g->events[i].stream().name()].push_back(i);
  }
  REQUIRE(same_streams(g->streams, streams_of_prefix(g->events, g->events.size())));
  for (const StreamInfo& s : g->streams) {
    ReadResult r = read_stream_events(*store, StreamId{s.type, s.id});
    EVENTSOURCE_REQUIRE_OK(r.status);
    const std::vector<size_t>& idx = g->by_stream[StreamId{s.type, s.id}.name()];
    REQUIRE(r.events.size() == idx.size());
    for (size_t k = 0; k < idx.size(); ++k) REQUIRE(r.events[k] == g->events[idx[k]]);
  }
  EVENTSOURCE_REQUIRE_OK(store->close());
}

// Builds the row-5 golden store: batches until a third event segment holds
// `tail_batches` batches, then a clean close (index segment + checkpoint).
Golden build_clean_golden(const std::string& path, uint64_t tail_batches) {
  Golden g;
  g.path = path;
  g.ckpt_path = path + format::kCheckpointSuffix;
  {
    std::unique_ptr<Store> store = open_or_fail(path, golden_options());
    uint64_t after_third = 0;
    for (uint64_t b = 1; after_third < tail_batches; ++b) {
      REQUIRE(b < 100000);
      const std::vector<EventData> batch = golden_batch(b);
      EVENTSOURCE_REQUIRE_OK(store->append(golden_stream(b), ExpectedVersion::any(), batch));
      if (file_size(path) >= format::kFileHeaderSize + 3 * kMiB) ++after_third;
    }
    EVENTSOURCE_REQUIRE_OK(store->close());
  }
  g.data = read_file(path);
  g.ckpt = read_file(g.ckpt_path);
  g.layout = parse_layout(g.data);
  capture_content(&g);
  set_probes(&g);
  REQUIRE(g.probe_from.back() == g.events.size());
  return g;
}

// ---------------------------------------------------------------------------
// Bit flips.

enum Region : int {
  kFileHeader,      // [0, 64) of the data file
  kFileHeaderPad,   // [64, 4096): reserved, not checked
  kEventSegHeader,  // the 64-byte header of an event segment
  kIndexSegHeader,  // the 64-byte header of the index segment
  kFrameHeader,     // the 64-byte header of a frame
  kRecordHeader,    // a record's fields before its strings, in an uncompressed frame
  kRecordData,      // the strings of a record in an uncompressed frame
  kCompressedBody,  // the zstd body of a compressed frame
  kFramePadding,    // 0..7 zero bytes after a frame's body
  kAfterFrames,     // never-written zeros after the last frame of a segment
  kIndexBlob,       // the index blob
  kIndexSlotRest,   // zeros after the blob in the index segment's slot(s)
  kCheckpoint,      // PATH.ckpt
  kRegionCount,
};

struct RegionInfo {
  const char* name;
  bool checksummed;
};

constexpr RegionInfo kRegions[kRegionCount] = {
    {"file header [0,64)", true},   {"file header reserved [64,4096)", false},
    {"event segment header", true}, {"index segment header", true},
    {"frame header", true},         {"record header", true},
    {"record strings", true},       {"compressed frame body", true},
    {"frame padding", true},        {"zeros after last frame", false},
    {"index blob", true},           {"index slot after blob", false},
    {"checkpoint file", true},
};

struct Flip {
  Region region = kFileHeader;
  bool in_checkpoint = false;  // else the data file
  uint64_t offset = 0;
  int bit = 0;
};

Region classify_frame_byte(const FrameLoc& f, uint64_t at) {
  const uint64_t rel = at - f.offset;
  if (rel < fh::kSize) return kFrameHeader;
  if (rel >= fh::kSize + f.body_len) return kFramePadding;
  if (f.compressed) return kCompressedBody;
  for (const auto& [off, len, strings] : f.records) {
    if (at >= off && at < off + len) return at - off < strings ? kRecordHeader : kRecordData;
  }
  FAIL("byte " << at << " of frame at " << f.offset << " is in no record");
  return kRecordData;
}

// Seeded flips over the strata: per mille weights, then uniform inside.
std::vector<Flip> make_flips(const Golden& g, size_t count, uint64_t seed) {
  const Layout& l = g.layout;
  std::mt19937_64 rng(seed);
  auto pick = [&](uint64_t n) { return n == 0 ? 0 : rng() % n; };
  std::vector<const SegLoc*> headers;
  std::vector<const FrameLoc*> frames;
  std::vector<const SegLoc*> event_segs;
  for (const SegLoc& s : l.segs) {
    headers.push_back(&s);
    if (s.kind == 1) {
      event_segs.push_back(&s);
      for (const FrameLoc& f : s.frames) frames.push_back(&f);
    }
  }
  REQUIRE(l.index_seg.has_value());
  const SegLoc& ix = l.segs[*l.index_seg];
  const uint64_t blob_begin = ix.offset + sh::kSize;
  const uint64_t blob_end = blob_begin + ix.payload_len;
  const uint64_t ix_end = ix.offset + ix.slot_count * l.seg_size;
  constexpr uint64_t kAfterFramesBand = 256;

  std::vector<Flip> flips;
  flips.reserve(count);
  while (flips.size() < count) {
    Flip f;
    f.bit = static_cast<int>(pick(8));
    const uint64_t w = pick(1000);
    if (w < 40) {
      f.region = kFileHeader;
      f.offset = pick(fhdr::kSize);
    } else if (w < 60) {
      f.region = kFileHeaderPad;
      f.offset = fhdr::kSize + pick(format::kFileHeaderSize - fhdr::kSize);
    } else if (w < 140) {
      const SegLoc* s = headers[pick(headers.size())];
      f.region = s->kind == 1 ? kEventSegHeader : kIndexSegHeader;
      f.offset = s->offset + pick(sh::kSize);
    } else if (w < 340) {
      const FrameLoc* fr = frames[pick(frames.size())];
      f.offset = fr->offset + pick(fh::kSize);
      f.region = kFrameHeader;
    } else if (w < 740) {
      const FrameLoc* fr = frames[pick(frames.size())];
      f.offset = fr->offset + fh::kSize + pick(fr->len - fh::kSize);
      f.region = classify_frame_byte(*fr, f.offset);
    } else if (w < 780) {
      const SegLoc* s = event_segs[pick(event_segs.size())];
      const uint64_t end = std::min(s->frames_end + kAfterFramesBand, s->offset + l.seg_size);
      if (end <= s->frames_end) continue;  // a full segment: no zeros after it
      f.region = kAfterFrames;
      f.offset = s->frames_end + pick(end - s->frames_end);
    } else if (w < 900) {
      f.region = kIndexBlob;
      f.offset = blob_begin + pick(blob_end - blob_begin);
    } else if (w < 930) {
      if (ix_end <= blob_end) continue;
      f.region = kIndexSlotRest;
      // Half of them close to the blob, half anywhere in the rest.
      f.offset = pick(2) == 0 ? blob_end + pick(std::min<uint64_t>(4096, ix_end - blob_end))
                              : blob_end + pick(ix_end - blob_end);
    } else {
      f.region = kCheckpoint;
      f.in_checkpoint = true;
      f.offset = pick(format::checkpoint::kSize);
    }
    flips.push_back(f);
  }
  return flips;
}

std::string describe(const Flip& f) {
  std::ostringstream o;
  o << (f.in_checkpoint ? "checkpoint" : "data") << " offset " << f.offset << " (0x" << std::hex
    << f.offset << std::dec << ") bit " << f.bit << " [" << kRegions[f.region].name << "]";
  return o.str();
}

enum : uint64_t {
  kVerifyAny = 1,       // verify reported some problem
  kVerifyLocated = 2,   // ... with a segment (or the checkpoint file) and an offset
  kVerifyCkpt = 4,      // ... naming the checkpoint file
  kOpenFailed = 8,      // read-only open failed with kCorruption
  kReadFailed = 16,     // a read returned a non-ok Status
  kOpenOtherCode = 32,  // open failed with another code
};

bool located(const Status& s) {
  return s.segment() >= 0 || s.offset() >= 0 || s.message().find("offset") != std::string::npos;
}

// read_all from `from`, at most two events: "" when it gives the golden events
// (as many as there are) or a located kCorruption, else what went wrong.
// *failed is set on a non-ok Status.
std::string probe_read_all(const Store& store, const Golden& g, uint64_t from, bool* failed) {
  constexpr uint64_t kMax = 2;
  const size_t want = std::min<size_t>(kMax, g.events.size() - (from - 1));
  size_t n = 0;
  std::string bad;
  Status st = store.read_all({.from = GlobalPosition(from), .max_count = kMax},
                             [&](const RecordedEvent& e) {
                               const size_t idx = from - 1 + n;
                               if (idx >= g.events.size() || !same_event(e, g.events[idx])) {
                                 bad = "read_all from " + std::to_string(from) +
                                       " delivered a non-golden event at index " +
                                       std::to_string(n) + ": " + OwnedEvent::from(e).describe();
                                 return false;
                               }
                               ++n;
                               return true;
                             });
  *failed = !st.ok();
  if (!bad.empty()) return bad;
  if (!st.ok()) {
    if (st.code() != Code::kCorruption) {
      return "read_all from " + std::to_string(from) + " failed with " + st.to_string();
    }
    if (!located(st)) {
      return "read_all from " + std::to_string(from) +
             " reported corruption without a location: " + st.to_string();
    }
    return "";
  }
  if (n != want) {
    return "read_all from " + std::to_string(from) + " (max " + std::to_string(kMax) +
           ") returned ok after " + std::to_string(n) + " of " + std::to_string(want) + " events";
  }
  return "";
}

// Runs verify and the read-only open + reads on the (flipped) store. Returns
// the outcome bits; appends every broken criterion to *failure.
uint64_t evaluate(const Golden& g, const Flip& flip, std::string* failure) {
  uint64_t bits = 0;
  auto fail = [&](const std::string& what) {
    if (!failure->empty()) *failure += "; ";
    *failure += what;
  };
  auto check_error = [&](const char* what, const Status& s) {
    if (s.code() != Code::kCorruption) {
      fail(std::string(what) + " failed with " + s.to_string() + " (expected kCorruption)");
    } else if (!located(s)) {
      fail(std::string(what) + " reported corruption without a location: " + s.to_string());
    }
  };

  Result<VerifyReport> report = Store::verify(g.path);
  if (!report.ok()) {
    fail("verify failed instead of reporting: " + report.status().to_string());
  } else {
    for (const VerifyProblem& p : report->problems) {
      bits |= kVerifyAny;
      const bool ckpt = p.file == g.ckpt_path;
      if ((p.segment >= 0 || ckpt) && p.offset >= 0) bits |= kVerifyLocated;
      if (ckpt) bits |= kVerifyCkpt;
    }
  }

  Result<std::unique_ptr<Store>> opened = Store::open(g.path, read_only_options());
  if (!opened.ok()) {
    check_error("read-only open", opened.status());
    bits |= opened.status().code() == Code::kCorruption ? kOpenFailed : kOpenOtherCode;
  } else {
    Store& store = **opened;
    if (store.committed_position().value != g.events.size()) {
      fail("open succeeded with committed position " +
           std::to_string(store.committed_position().value) + ", golden " +
           std::to_string(g.events.size()));
    }
    if (!same_streams(store.list_streams(), g.streams)) fail("list_streams differs from golden");

    size_t k = 0;
    std::string wrong;
    Status st = store.read_all({.from = GlobalPosition(1)}, [&](const RecordedEvent& e) {
      if (k >= g.events.size() || !same_event(e, g.events[k])) {
        wrong = "read_all delivered a non-golden event at index " + std::to_string(k) + ": " +
                OwnedEvent::from(e).describe();
        return false;
      }
      ++k;
      return true;
    });
    if (!wrong.empty()) {
      fail(wrong);
    } else if (!st.ok()) {
      bits |= kReadFailed;
      check_error("read_all", st);
    } else if (k != g.events.size()) {
      fail("read_all returned ok after " + std::to_string(k) + " of " +
           std::to_string(g.events.size()) + " events");
    }

    for (uint64_t from : g.probe_from) {
      bool failed = false;
      const std::string bad = probe_read_all(store, g, from, &failed);
      if (failed) bits |= kReadFailed;
      if (!bad.empty()) fail(bad);
    }

    for (const StreamInfo& s : g.streams) {
      const StreamId id{s.type, s.id};
      const std::vector<size_t>& idx = g.by_stream.at(id.name());
      size_t n = 0;
      std::string bad;
      Status rs = store.read_stream(id, {.from = StreamVersion(1)}, [&](const RecordedEvent& e) {
        if (n >= idx.size() || !same_event(e, g.events[idx[n]])) {
          bad = "read_stream " + id.name() + " delivered a non-golden event at version index " +
                std::to_string(n) + ": " + OwnedEvent::from(e).describe();
          return false;
        }
        ++n;
        return true;
      });
      if (!bad.empty()) {
        fail(bad);
      } else if (!rs.ok()) {
        bits |= kReadFailed;
        check_error(("read_stream " + id.name()).c_str(), rs);
      } else if (n != idx.size()) {
        fail("read_stream " + id.name() + " returned ok after " + std::to_string(n) + " of " +
             std::to_string(idx.size()) + " events");
      }
    }
    Status closed = store.close();
    if (!closed.ok()) fail("close of the read-only store failed: " + closed.to_string());
  }

  if (kRegions[flip.region].checksummed && (bits & (kVerifyLocated | kOpenFailed)) == 0) {
    fail(
        "a flip in checksummed bytes was reported neither by verify (with a location) nor by open");
  }
  if (flip.in_checkpoint) {
    if ((bits & kVerifyCkpt) == 0) fail("verify did not report the damaged checkpoint file");
    if ((bits & (kOpenFailed | kOpenOtherCode | kReadFailed)) != 0) {
      fail("a damaged checkpoint must be ignored (full scan), but open or a read failed");
    }
  }
  return bits;
}

struct RegionCounts {
  uint64_t flips = 0;
  uint64_t verify = 0;     // verify reported it with a location
  uint64_t open_read = 0;  // open failed (kCorruption) or a read failed
  uint64_t both = 0;
  uint64_t neither = 0;  // in unchecksummed bytes: harmless if no failure
  uint64_t failures = 0;
};

bool env_u64(const char* name, uint64_t* out) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return false;
  *out = std::strtoull(v, nullptr, 0);
  return true;
}

// Applies `flips` one at a time on the working files of `g` (undoing each),
// each evaluated in a forked child that reports per flip; a child that dies
// or hangs is a failure of the flip it was on, and a new child goes on.
void run_bitflips(size_t default_flips) {
  uint64_t seed = std::random_device{}();
  env_u64("ES_BITFLIP_SEED", &seed);
  uint64_t nflips = default_flips;
  env_u64("ES_BITFLIP_FLIPS", &nflips);
  MESSAGE("bit flips: seed " << seed << " (ES_BITFLIP_SEED=" << seed << " repeats this run), "
                             << nflips << " flips");
  CAPTURE(seed);
  const auto started = std::chrono::steady_clock::now();

  TempDir dir("es-bitflip");
  const Golden g = build_clean_golden(dir.file("golden.evs"), 150);
  {
    Result<VerifyReport> clean = Store::verify(g.path);
    EVENTSOURCE_REQUIRE_OK(clean);
    REQUIRE(clean->clean());
  }
  uint64_t compressed = 0, uncompressed_big = 0, frames = 0;
  for (size_t si : g.layout.events) {
    for (const FrameLoc& f : g.layout.segs[si].frames) {
      ++frames;
      compressed += f.compressed ? 1 : 0;
      uncompressed_big += !f.compressed && f.body_len >= kCompressMin ? 1 : 0;
    }
  }
  std::map<std::string, int> tenants;
  for (const OwnedEvent& e : g.events) ++tenants[e.tenant];
  MESSAGE("golden store: " << g.layout.events.size() << " event segments, " << frames << " frames ("
                           << compressed << " compressed, " << uncompressed_big
                           << " large uncompressed), " << g.events.size() << " events, "
                           << g.streams.size() << " streams, " << tenants.size()
                           << " tenants, index blob "
                           << g.layout.segs[*g.layout.index_seg].payload_len << " bytes");
  REQUIRE(g.layout.events.size() == 3);
  REQUIRE(compressed > 0);
  REQUIRE(uncompressed_big > 0);
  REQUIRE(g.streams.size() >= 10);
  REQUIRE(tenants.size() == 4);

  const std::vector<Flip> flips = make_flips(g, nflips, seed);
  std::vector<RegionCounts> counts(kRegionCount);
  std::vector<std::string> failures;
  uint64_t crashes = 0;
  constexpr int kHangMs = 60'000;

  size_t next = 0;
  while (next < flips.size()) {
    const size_t first = next;
    Child child = Child::spawn([&](const ChildPipes& pipes) {
      const int data_fd = ::open(g.path.c_str(), O_RDWR | O_CLOEXEC);
      const int ckpt_fd = ::open(g.ckpt_path.c_str(), O_RDWR | O_CLOEXEC);
      if (data_fd < 0 || ckpt_fd < 0) return 3;
      for (size_t i = first; i < flips.size(); ++i) {
        const Flip& f = flips[i];
        const int fd = f.in_checkpoint ? ckpt_fd : data_fd;
        unsigned char byte = 0;
        if (::pread(fd, &byte, 1, static_cast<off_t>(f.offset)) != 1) return 4;
        const unsigned char flipped = static_cast<unsigned char>(byte ^ (1u << f.bit));
        if (::pwrite(fd, &flipped, 1, static_cast<off_t>(f.offset)) != 1) return 5;
        std::string failure;
        const uint64_t bits = evaluate(g, f, &failure);
        if (::pwrite(fd, &byte, 1, static_cast<off_t>(f.offset)) != 1) return 6;
        pipes.send(i);
        pipes.send(bits);
        pipes.send_text(failure);
      }
      return 0;
    });
    for (;;) {
      std::optional<uint64_t> index = child.receive_within(kHangMs);
      std::optional<uint64_t> bits;
      std::optional<std::string> text;
      if (index) bits = child.receive();
      if (bits) text = child.receive_text();
      if (!text) {
        // The child died (or hung) on flip `next`: a failure of that flip.
        child.kill(SIGKILL);
        const int status = child.wait();
        ++crashes;
        ++counts[flips[next].region].flips;
        ++counts[flips[next].region].failures;
        failures.push_back("flip #" + std::to_string(next) + " " + describe(flips[next]) +
                           ": the checking child " +
                           (index ? "broke its protocol" : "died or hung") + " (" +
                           describe_wait_status(status) + ")");
        restore_file(g.path, g.data);
        restore_file(g.ckpt_path, g.ckpt);
        ++next;
        break;
      }
      REQUIRE(*index == next);
      const Flip& f = flips[next];
      RegionCounts& c = counts[f.region];
      ++c.flips;
      const bool by_verify = (*bits & kVerifyLocated) != 0;
      const bool by_open_read = (*bits & (kOpenFailed | kReadFailed)) != 0;
      c.verify += by_verify ? 1 : 0;
      c.open_read += by_open_read ? 1 : 0;
      c.both += by_verify && by_open_read ? 1 : 0;
      c.neither += !by_verify && !by_open_read ? 1 : 0;
      if (!text->empty()) {
        ++c.failures;
        failures.push_back("flip #" + std::to_string(next) + " " + describe(f) + ": " + *text);
      }
      ++next;
      if (next == flips.size()) {
        INFO("checking child " << describe_wait_status(child.wait()));
        CHECK(child.wait_exit_code() == 0);
        break;
      }
    }
  }

  // The working copy is the golden store again.
  CHECK(read_file(g.path) == g.data);
  CHECK(read_file(g.ckpt_path) == g.ckpt);

  RegionCounts total;
  RegionCounts unchecked;
  std::ostringstream table;
  table << "region | flips | verify | open/read | both | neither | failures\n";
  for (int r = 0; r < kRegionCount; ++r) {
    const RegionCounts& c = counts[r];
    table << kRegions[r].name << (kRegions[r].checksummed ? "" : " (not checksummed)") << " | "
          << c.flips << " | " << c.verify << " | " << c.open_read << " | " << c.both << " | "
          << c.neither << " | " << c.failures << "\n";
    for (RegionCounts* t : {&total, kRegions[r].checksummed ? nullptr : &unchecked}) {
      if (t == nullptr) continue;
      t->flips += c.flips;
      t->verify += c.verify;
      t->open_read += c.open_read;
      t->both += c.both;
      t->neither += c.neither;
      t->failures += c.failures;
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  MESSAGE(table.str() << "total: " << total.flips << " flips, detected by verify " << total.verify
                      << ", detected by open/read " << total.open_read << ", by both " << total.both
                      << "; in unchecksummed bytes " << unchecked.flips
                      << " (undetected and harmless: " << unchecked.neither - unchecked.failures
                      << "); crashes/hangs " << crashes << "; FAILURES " << total.failures << "; "
                      << secs << " s");
  const size_t shown = std::min<size_t>(failures.size(), 20);
  for (size_t i = 0; i < shown; ++i) {
    INFO(failures[i]);
    CHECK(failures[i].empty());  // prints the failure
  }
  CHECK_MESSAGE(failures.empty(), failures.size() << " failing flips (first " << shown
                                                  << " shown above), seed " << seed);
}

// read_all skips the frames wholly before its start on their header fields
// alone (format-spec.md, "Reading"): frame_len, file_offset, first_position
// and count, without the checksum. Every bit of those fields is flipped, in
// every frame of the last event segment and every 4th frame of the others,
// and read_all runs from the last position of the frame's segment and of the
// store: it must still give the golden events or a located kCorruption. The
// read-only store maps the file shared, so it sees each flip at once.
void run_skip_field_flips() {
  const auto started = std::chrono::steady_clock::now();
  TempDir dir("es-bitflip-skip");
  const Golden g = build_clean_golden(dir.file("golden.evs"), 150);
  std::unique_ptr<Store> store = open_or_fail(g.path, read_only_options());
  const int fd = ::open(g.path.c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  struct Field {
    const char* name;
    size_t at;
    size_t size;
  };
  const Field fields[] = {{"frame_len", fh::kFrameLen, 4},
                          {"file_offset", fh::kFileOffset, 8},
                          {"first_position", fh::kFirstPosition, 8},
                          {"count", fh::kCount, 4}};
  uint64_t flips = 0, reads = 0, errors = 0, failures = 0;
  std::map<std::string, uint64_t> failures_by_field;
  std::vector<std::string> shown;
  for (size_t k = 0; k < g.layout.events.size(); ++k) {
    const SegLoc& seg = g.layout.segs[g.layout.events[k]];
    const bool last_segment = k + 1 == g.layout.events.size();
    for (size_t fi = 0; fi < seg.frames.size(); ++fi) {
      if (!last_segment && fi % 4 != 0) continue;
      const FrameLoc& f = seg.frames[fi];
      const uint64_t f_last = f.first_position + f.count - 1;
      std::vector<uint64_t> froms;
      for (uint64_t from : {g.probe_from[k], g.probe_from.back()}) {
        if (from > f_last && std::find(froms.begin(), froms.end(), from) == froms.end()) {
          froms.push_back(from);
        }
      }
      if (froms.empty()) continue;  // the segment's last frame is never skipped
      for (const Field& field : fields) {
        for (size_t bit = 0; bit < field.size * 8; ++bit) {
          const uint64_t at = f.offset + field.at + bit / 8;
          unsigned char byte = 0;
          REQUIRE(::pread(fd, &byte, 1, static_cast<off_t>(at)) == 1);
          const unsigned char flipped = static_cast<unsigned char>(byte ^ (1u << (bit % 8)));
          REQUIRE(::pwrite(fd, &flipped, 1, static_cast<off_t>(at)) == 1);
          ++flips;
          for (uint64_t from : froms) {
            ++reads;
            bool failed = false;
            const std::string bad = probe_read_all(*store, g, from, &failed);
            errors += failed ? 1 : 0;
            if (!bad.empty()) {
              ++failures;
              ++failures_by_field[field.name];
              if (shown.size() < 10) {
                shown.push_back("frame at " + std::to_string(f.offset) + " (segment " +
                                std::to_string(seg.slot) + ", positions " +
                                std::to_string(f.first_position) + ".." + std::to_string(f_last) +
                                "), " + field.name + " bit " + std::to_string(bit) + ": " + bad);
              }
            }
          }
          REQUIRE(::pwrite(fd, &byte, 1, static_cast<off_t>(at)) == 1);
        }
      }
    }
  }
  ::close(fd);
  EVENTSOURCE_CHECK_OK(store->close());
  CHECK(read_file(g.path) == g.data);
  std::string by_field;
  for (const auto& [name, n] : failures_by_field) {
    by_field += (by_field.empty() ? " (" : ", ") + name + ": " + std::to_string(n);
  }
  if (!by_field.empty()) by_field += ")";
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  MESSAGE("skip-field flips: " << flips << " flips, " << reads << " reads, " << errors
                               << " reported corruption, FAILURES " << failures << by_field << "; "
                               << secs << " s");
  for (const std::string& f : shown) {
    INFO(f);
    CHECK(f.empty());  // prints the failure
  }
  CHECK(failures == 0);
}

TEST_SUITE("bitflip") {
  TEST_CASE("10,000 single-bit flips over headers, frames, index and checkpoint") {
    run_bitflips(std::getenv("ES_SOAK") != nullptr ? 100'000 : 10'000);  // ES_SOAK: ten times more
  }
}

TEST_SUITE("bitflip-quick") {
  TEST_CASE("1,000 single-bit flips over headers, frames, index and checkpoint") {
    run_bitflips(1'000);
  }
  TEST_CASE("a bit flip in a header field read_all skips on never hides or alters events") {
    run_skip_field_flips();
  }
}

// ---------------------------------------------------------------------------
// Damage before the durable end.

struct DurableGolden {
  Golden g;
  uint64_t ckpt_log_end = 0;  // where the checkpoint's index ends the log
  uint64_t ckpt_durable = 0;
};

// A writer child that syncs every append (so every frame's durable hint
// proves the frames before it durable) writes until a third event segment
// holds `tail_batches` batches, with a checkpoint once the second segment
// holds `ckpt_after` batches, and dies without closing.
DurableGolden build_durable_golden(const std::string& path, uint64_t ckpt_after,
                                   uint64_t tail_batches) {
  Child writer = Child::spawn([&](const ChildPipes&) -> int {
    StoreOptions o = golden_options();
    o.durability = Durability::kEach;
    Result<std::unique_ptr<Store>> store = Store::open(path, o);
    if (!store.ok()) return 3;
    uint64_t in_second = 0, in_third = 0;
    bool checkpointed = false;
    for (uint64_t b = 1; in_third < tail_batches; ++b) {
      if (b > 100000) return 4;
      const std::vector<EventData> batch = golden_batch(b);
      if (!(*store)->append(golden_stream(b), ExpectedVersion::any(), batch).ok()) return 5;
      const uint64_t slots = (file_size(path) - format::kFileHeaderSize) / kMiB;
      if (!checkpointed && slots >= 2 && ++in_second == ckpt_after) {
        if (!(*store)->checkpoint().ok()) return 6;
        checkpointed = true;
      }
      if (checkpointed && slots >= 4) ++in_third;  // 2 event segments + index + the third
    }
    _exit(0);  // no close: no final checkpoint
  });
  INFO("writer " << describe_wait_status(writer.wait()));
  REQUIRE(writer.wait_exit_code() == 0);
  DurableGolden d;
  d.g.path = path;
  d.g.ckpt_path = path + format::kCheckpointSuffix;
  d.g.data = read_file(path);
  d.g.ckpt = read_file(d.g.ckpt_path);
  REQUIRE(d.g.ckpt.size() == format::checkpoint::kSize);
  d.g.layout = parse_layout(d.g.data);
  capture_content(&d.g);
  REQUIRE(d.g.layout.index_seg.has_value());
  const SegLoc& ix = d.g.layout.segs[*d.g.layout.index_seg];
  d.ckpt_log_end = le64(d.g.data, ix.offset + sh::kSize + format::index_header::kLogEndOffset);
  d.ckpt_durable = le64(d.g.ckpt, format::checkpoint::kDurablePosition);
  return d;
}

struct Spot {
  std::string name;
  uint64_t flip_offset = 0;
  int bit = 0;
  uint64_t segment = 0;          // expected in the open error
  uint64_t error_offset = 0;     // expected in the open error and verify
  uint64_t cut_offset = 0;       // first range in the side file
  uint64_t first_lost = 0;       // position of the first event repair drops
  bool with_checkpoint = false;  // else PATH.ckpt is removed (full scan)
};

// Side file entries: u64 offset, u64 length, bytes (trailing zeros dropped).
struct SideEntry {
  uint64_t offset = 0;
  std::string bytes;
};
std::vector<SideEntry> parse_side_file(std::string_view s) {
  std::vector<SideEntry> out;
  uint64_t at = 0;
  while (at + 16 <= s.size()) {
    SideEntry e;
    e.offset = le64(s, at);
    const uint64_t len = le64(s, at + 8);
    REQUIRE(at + 16 + len <= s.size());
    e.bytes = std::string(s.substr(at + 16, len));
    out.push_back(std::move(e));
    at += 16 + len;
  }
  CHECK(at == s.size());
  return out;
}

void remove_side_files(const std::string& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().filename().string().find(".cut-") != std::string::npos) {
      remove_file(entry.path().string());
    }
  }
}

void check_durable_spot(const DurableGolden& d, const std::string& dir, const Spot& spot) {
  const Golden& g = d.g;
  INFO("spot: " << spot.name
                << std::string(spot.with_checkpoint ? " (with the checkpoint)" : " (no checkpoint)")
                << ", flip at " << spot.flip_offset << " bit " << spot.bit);
  restore_file(g.path, g.data);
  if (spot.with_checkpoint) {
    write_file(g.ckpt_path, g.ckpt);
  } else {
    remove_file(g.ckpt_path);
  }
  remove_file(g.path + format::kCheckpointTempSuffix);
  remove_side_files(dir);
  flip_bit(g.path, spot.flip_offset, spot.bit);
  const std::string damaged = read_file(g.path);

  // Open fails, read-only and read-write, naming segment and offset.
  for (OpenMode mode : {OpenMode::kReadOnly, OpenMode::kReadWrite}) {
    INFO(std::string(mode == OpenMode::kReadOnly ? "read-only" : "read-write") << " open");
    StoreOptions o = golden_options();
    o.mode = mode;
    Result<std::unique_ptr<Store>> opened = Store::open(g.path, o);
    INFO("open -> " << opened.status().to_string());
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.status().code() == Code::kCorruption);
    CHECK(opened.status().segment() == static_cast<int64_t>(spot.segment));
    CHECK(opened.status().offset() == static_cast<int64_t>(spot.error_offset));
    const std::string& msg = opened.status().message();
    CHECK(msg.find(g.path) != std::string::npos);
    CHECK(msg.find("segment " + std::to_string(spot.segment)) != std::string::npos);
    CHECK(mentions_offset(msg, static_cast<int64_t>(spot.error_offset)));
    // Never a silent cut: the failed open left the data file as it was.
    CHECK(read_file(g.path) == damaged);
  }

  // Verify names the same place.
  {
    Result<VerifyReport> report = Store::verify(g.path);
    EVENTSOURCE_REQUIRE_OK(report);
    bool found = false;
    for (const VerifyProblem& p : report->problems) {
      INFO("problem: " << p.file << " segment " << p.segment << " offset " << p.offset << ": "
                       << p.what);
      found |= p.segment == static_cast<int64_t>(spot.segment) &&
               p.offset == static_cast<int64_t>(spot.error_offset);
    }
    CHECK_MESSAGE(
        found, "verify did not report segment " << spot.segment << " offset " << spot.error_offset);
  }

  // Repair cuts at the damage and keeps the cut bytes in a side file.
  Result<RepairReport> repaired = Store::repair(g.path);
  EVENTSOURCE_REQUIRE_OK(repaired);
  CHECK(repaired->changed);
  CHECK(repaired->kept_through == GlobalPosition(spot.first_lost - 1));
  CHECK(repaired->bytes_cut > 0);
  CHECK_FALSE(repaired->problems.empty());
  REQUIRE_FALSE(repaired->side_file.empty());
  REQUIRE(file_exists(repaired->side_file));
  const std::string side = read_file(repaired->side_file);
  CHECK(side.size() > 16);
  const std::vector<SideEntry> entries = parse_side_file(side);
  REQUIRE_FALSE(entries.empty());
  CHECK(entries[0].offset == spot.cut_offset);
  REQUIRE(entries[0].offset + entries[0].bytes.size() <= damaged.size());
  CHECK(entries[0].bytes == damaged.substr(entries[0].offset, entries[0].bytes.size()));
  // The damaged byte itself is among the saved ones.
  bool saved_flip = false;
  for (const SideEntry& e : entries) {
    saved_flip |= spot.flip_offset >= e.offset && spot.flip_offset < e.offset + e.bytes.size();
  }
  CHECK(saved_flip);

  {
    Result<VerifyReport> report = Store::verify(g.path);
    EVENTSOURCE_REQUIRE_OK(report);
    INFO("first problem after repair: " << (report->clean() ? std::string("-")
                                                            : report->problems[0].what));
    CHECK(report->clean());
  }

  // Every event before the damage is the golden one; the store takes appends.
  const size_t kept = spot.first_lost - 1;
  const std::vector<StreamInfo> kept_streams = streams_of_prefix(g.events, kept);
  auto check_prefix = [&](const Store& store) {
    ReadResult all = read_all_events(store, GlobalPosition(1), {}, kept);
    EVENTSOURCE_CHECK_OK(all.status);
    REQUIRE(all.events.size() == kept);
    for (size_t i = 0; i < kept; ++i) {
      if (all.events[i] != g.events[i]) {
        CHECK(all.events[i] == g.events[i]);
        break;
      }
    }
    for (const StreamInfo& s : kept_streams) {
      const StreamId id{s.type, s.id};
      ReadResult r = read_stream_events(store, id, StreamVersion(1), s.version.value);
      EVENTSOURCE_CHECK_OK(r.status);
      REQUIRE(r.events.size() == s.version.value);
      const std::vector<size_t>& idx = g.by_stream.at(id.name());
      for (size_t k = 0; k < r.events.size(); ++k) CHECK(r.events[k] == g.events[idx[k]]);
    }
  };
  const StreamId old_stream{kept_streams.front().type, kept_streams.front().id};
  const StreamId new_stream{"Repaired", "after-" + std::to_string(spot.first_lost)};
  {
    std::unique_ptr<Store> store = open_or_fail(g.path, golden_options());
    CHECK(store->committed_position() == GlobalPosition(kept));
    CHECK(same_streams(store->list_streams(), kept_streams));
    check_prefix(*store);
    std::vector<EventData> more = {make_event("AfterRepair", "{\"n\":1}")};
    Result<AppendResult> a1 =
        store->append(old_stream, ExpectedVersion::exact(kept_streams.front().version), more);
    EVENTSOURCE_CHECK_OK(a1);
    std::vector<EventData> fresh = {make_event("AfterRepair", "{\"n\":2}"),
                                    make_event("AfterRepair", "{\"n\":3}")};
    Result<AppendResult> a2 = store->append(new_stream, ExpectedVersion::no_stream(), fresh);
    EVENTSOURCE_CHECK_OK(a2);
    if (a2.ok()) CHECK(a2->last_position == GlobalPosition(kept + 3));
    EVENTSOURCE_CHECK_OK(store->close());
  }
  {
    std::unique_ptr<Store> store = open_or_fail(g.path, golden_options());
    CHECK(store->committed_position() == GlobalPosition(kept + 3));
    check_prefix(*store);
    ReadResult tail = read_all_events(*store, GlobalPosition(kept + 1));
    EVENTSOURCE_CHECK_OK(tail.status);
    REQUIRE(tail.events.size() == 3);
    CHECK(tail.events[0].stream() == old_stream);
    CHECK(tail.events[0].version == StreamVersion(kept_streams.front().version.value + 1));
    CHECK(tail.events[0].payload == "{\"n\":1}");
    CHECK(tail.events[1].stream() == new_stream);
    CHECK(tail.events[2].version == StreamVersion(2));
    EVENTSOURCE_CHECK_OK(store->close());
  }
  {
    Result<VerifyReport> report = Store::verify(g.path);
    EVENTSOURCE_REQUIRE_OK(report);
    CHECK(report->clean());
    Result<RepairReport> again = Store::repair(g.path);
    EVENTSOURCE_REQUIRE_OK(again);
    CHECK_FALSE(again->changed);
  }
  remove_side_files(dir);
}

// The frame nearest the middle of `s` (from `from` on) that satisfies `want`.
const FrameLoc* middle_frame(const SegLoc& s, uint64_t from, bool (*want)(const FrameLoc&)) {
  std::vector<const FrameLoc*> candidates;
  // Never the segment's last frame: a frame after the damage proves it durable.
  for (size_t i = 0; i + 1 < s.frames.size(); ++i) {
    if (s.frames[i].offset >= from && want(s.frames[i])) candidates.push_back(&s.frames[i]);
  }
  REQUIRE_FALSE(candidates.empty());
  return candidates[candidates.size() / 2];
}

TEST_SUITE("durable-damage") {
  TEST_CASE("damage before the durable end fails open with its location; repair cuts it there") {
    const auto started = std::chrono::steady_clock::now();
    TempDir dir("es-durable");
    const DurableGolden d = build_durable_golden(dir.file("durable.evs"), 60, 80);
    const Layout& l = d.g.layout;
    REQUIRE(l.events.size() == 3);
    const SegLoc& first = l.segs[l.events[0]];
    const SegLoc& middle = l.segs[l.events[1]];
    const SegLoc& last = l.segs[l.events[2]];
    CAPTURE(d.ckpt_log_end);
    CAPTURE(d.ckpt_durable);
    // The checkpoint ends the indexed log inside the middle segment.
    REQUIRE(d.ckpt_log_end > middle.offset + sh::kSize);
    REQUIRE(d.ckpt_log_end < middle.frames_end);

    std::vector<Spot> spots;
    {
      // A record's payload in the first segment (covered by the checkpoint's
      // index, so only a full scan, without the checkpoint, reads it).
      const FrameLoc* f = middle_frame(first, 0, [](const FrameLoc& fr) { return !fr.compressed; });
      const auto& [roff, rlen, strings] = f->records[f->records.size() / 2];
      Spot s{"record in the first segment",
             roff + strings + (rlen - strings) / 2,
             5,
             first.slot,
             f->offset,
             f->offset,
             f->first_position,
             false};
      spots.push_back(s);
    }
    for (bool with_ckpt : {false, true}) {
      // A frame header (its count) in the middle segment, after the checkpoint.
      const FrameLoc* f =
          middle_frame(middle, d.ckpt_log_end, [](const FrameLoc&) { return true; });
      spots.push_back(Spot{"frame header in the middle segment", f->offset + fh::kCount, 1,
                           middle.slot, f->offset, f->offset, f->first_position, with_ckpt});
      // The middle segment's header (its epoch).
      spots.push_back(Spot{"header of the middle segment", middle.offset + sh::kEpoch, 0,
                           middle.slot, middle.offset, middle.offset, middle.first_position,
                           with_ckpt});
      // A compressed frame's body in the last segment.
      const FrameLoc* c = middle_frame(last, 0, [](const FrameLoc& fr) { return fr.compressed; });
      spots.push_back(Spot{"compressed frame body in the last segment",
                           c->offset + fh::kSize + c->body_len / 2, 6, last.slot, c->offset,
                           c->offset, c->first_position, with_ckpt});
    }
    // The first frame of the middle segment (its first position): the whole
    // segment goes, header included.
    spots.push_back(Spot{"first frame header of the middle segment",
                         middle.frames[0].offset + fh::kFirstPosition, 3, middle.slot,
                         middle.frames[0].offset, middle.offset, middle.first_position, false});

    for (const Spot& s : spots) check_durable_spot(d, dir.path(), s);
    MESSAGE(spots.size()
            << " damage spots, "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
            << " s");
  }
}

}  // namespace
}  // namespace eventsource::testing
