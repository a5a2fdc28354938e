// Writes the seed corpus of the fuzz targets: real stores made with the
// engine, and frames, headers, checkpoint files and index blobs cut from
// them or encoded with the fixed parameters of fuzz_util.h.
//
//   make_corpus OUT_DIR        (OUT_DIR = tests/fuzz/corpus)
//
// Replaces every file in OUT_DIR/{frame,headers,checkpoint,index,store}.
// Store ids and creation times are random, so each run writes other bytes;
// the file names say what each input is. See tests/fuzz/README.md.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "engine/checkpoint_file.h"
#include "engine/coding.h"
#include "engine/format.h"
#include "engine/frame.h"
#include "engine/os.h"
#include "engine/segment.h"
#include "engine/stream_index.h"
#include "eventsource/store.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/support/codec_text.h"

namespace {

using namespace eventsource;
namespace fsys = std::filesystem;
namespace fh = format::frame_header;
namespace sh = format::segment_header;

constexpr uint64_t kMiB = 1ull << 20;
// fuzz_store.cc's trailers.
const std::string kTrailerCkpt = "ESFZCKP1";
const std::string kTrailerCkptResign = "ESFZCKS1";
const std::string kTrailerResign = "ESFZRSG1";

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "make_corpus: %s\n", what.c_str());
  std::exit(1);
}

void check(const Status& s, const char* what) {
  if (!s.ok()) die(std::string(what) + ": " + s.to_string());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class Output {
 public:
  explicit Output(std::string root) : root_(std::move(root)) {
    for (const char* t : {"frame", "headers", "checkpoint", "index", "store"}) {
      fsys::path d = fsys::path(root_) / t;
      fsys::create_directories(d);
      for (const auto& e : fsys::directory_iterator(d))
        if (e.is_regular_file()) fsys::remove(e.path());
    }
  }
  void put(const char* target, const std::string& name, const std::string& bytes) {
    fsys::path p = fsys::path(root_) / target / name;
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) die("cannot write " + p.string());
    total_ += bytes.size();
    ++files_;
  }
  void report() const {
    std::printf("wrote %zu files, %.1f MiB, under %s\n", files_,
                static_cast<double>(total_) / static_cast<double>(kMiB), root_.c_str());
  }

 private:
  std::string root_;
  uint64_t total_ = 0;
  size_t files_ = 0;
};

// Distinct for distinct (hi < 2^56, lo < 2^56): the version and variant
// bytes overwrite none of their bits (event ids are unique in a store).
Uuid make_uuid(uint64_t hi, uint64_t lo) {
  Uuid u;
  for (int i = 0; i < 6; ++i) u.bytes[i] = static_cast<uint8_t>(hi >> (8 * i));
  u.bytes[6] = 0x40;  // version 4
  u.bytes[7] = static_cast<uint8_t>(hi >> 48);
  u.bytes[8] = 0x80;  // RFC 4122 variant
  for (int i = 0; i < 7; ++i) u.bytes[9 + i] = static_cast<uint8_t>(lo >> (8 * i));
  return u;
}

uint64_t g_event = 0;

// `n` events of `payload_bytes` JSON-ish payload each (repetitive, so zstd
// compresses it), with deterministic ids and timestamps.
std::vector<EventData> events(size_t n, size_t payload_bytes, const std::string& type,
                              const std::string& tenant = "", bool extras = false) {
  std::vector<EventData> out;
  for (size_t i = 0; i < n; ++i) {
    ++g_event;
    EventData e;
    e.type = type;
    std::string p = "{\"n\":" + std::to_string(g_event) + ",\"data\":\"";
    while (p.size() + 2 < payload_bytes) p += "abcdefgh"[(p.size() / 7) % 8];
    p += "\"}";
    e.payload = p;
    e.id = make_uuid(0xE0E0, g_event);
    e.tenant = tenant;
    e.timestamp_us = 1700000000000000 + static_cast<int64_t>(g_event) * 1000;
    if (extras) {
      e.correlation_id = make_uuid(0xC0C0, g_event);
      e.causation_id = make_uuid(0xCACA, g_event);
      e.metadata = "{\"user\":\"fuzz\",\"trace\":" + std::to_string(g_event) + "}";
    }
    out.push_back(std::move(e));
  }
  return out;
}

StoreOptions options(uint32_t compress_min = 0) {
  StoreOptions o;
  o.segment_size = kMiB;
  o.durability = Durability::kNone;
  o.group_commit_window_us = 0;
  o.checkpoint_interval_bytes = 0;
  o.compress_min_bytes = compress_min;
  return o;
}

std::unique_ptr<Store> open_store(const std::string& path, const StoreOptions& o) {
  Result<std::unique_ptr<Store>> r = Store::open(path, o);
  if (!r.ok()) die("open " + path + ": " + r.status().to_string());
  return std::move(r).value();
}

void append(Store& s, const std::string& type, const std::string& id,
            const std::vector<EventData>& evs) {
  Result<AppendResult> r = s.append(StreamId{type, id}, ExpectedVersion::any(), evs);
  if (!r.ok()) die("append " + type + "-" + id + ": " + r.status().to_string());
}

// The store input: data file, then the checkpoint file and a trailer (with
// `resign`, a trailer that has fuzz_store.cc recompute every checksum).
std::string store_input(const std::string& data, const std::string& ckpt, bool resign = false) {
  if (ckpt.empty()) return resign ? data + kTrailerResign : data;
  if (ckpt.size() != format::checkpoint::kSize) die("checkpoint file of unexpected size");
  return data + ckpt + (resign ? kTrailerCkptResign : kTrailerCkpt);
}

// A store's pieces, found with the engine's own parsers.
struct Parsed {
  FileHeader header;
  std::string data;
  struct Slot {
    uint64_t slot;
    SegmentHeader h;
  };
  std::vector<Slot> slots;  // valid headers
};

Parsed parse_store(const std::string& data) {
  Parsed p;
  p.data = data;
  const auto* b = reinterpret_cast<const uint8_t*>(data.data());
  std::string why = testing::parse_file_header_text(b, data.size(), &p.header);
  if (!why.empty()) die("generated store does not parse: " + why);
  uint64_t seg = p.header.segment_size;
  uint64_t nslots = (data.size() - format::kFileHeaderSize) / seg;
  for (uint64_t k = 0; k < nslots; ++k) {
    SegmentHeader h;
    std::string err;
    if (testing::parse_segment_header_text(b + format::kFileHeaderSize + k * seg, k,
                                           p.header.seed(), &h,
                                           &err) == SegmentHeaderState::kValid) {
      p.slots.push_back({k, h});
      k += h.slot_count - 1;
    }
  }
  return p;
}

std::string prefix(uint64_t seed, uint64_t offset, uint64_t epoch, uint8_t fixups) {
  std::string out(25, '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  put_u64(p, seed);
  put_u64(p + 8, offset);
  put_u64(p + 16, epoch);
  p[24] = fixups;
  return out;
}

// Frames of a store's event segments, with their parameters in front
// (fuzz_frame.cc's second layout); at most `max` frames of at most 64 KiB.
void cut_frames(Output& out, const std::string& tag, const Parsed& p, size_t max) {
  const auto* b = reinterpret_cast<const uint8_t*>(p.data.data());
  const uint64_t seg = p.header.segment_size;
  size_t n = 0;
  for (const Parsed::Slot& s : p.slots) {
    if (s.h.kind != format::SegmentKind::kEvents) continue;
    uint64_t base = format::kFileHeaderSize + s.slot * seg;
    uint64_t off = base + sh::kSize;
    while (off < base + seg && n < max) {
      FrameHeader h;
      std::string why;
      if (testing::check_frame_text(b + off, base + seg - off, off, s.h.epoch, p.header.seed(), &h,
                                    &why) != FrameState::kValid)
        break;
      if (h.frame_len <= 64 * 1024) {
        // The frame and what follows it (up to 64 bytes: the next frame's
        // header or zeros), as the engine sees it.
        uint64_t extra = std::min<uint64_t>(64, base + seg - off - h.frame_len);
        std::string bytes(p.data, off, h.frame_len + extra);
        out.put("frame", tag + "-frame" + std::to_string(n) + (h.compressed() ? "-zstd" : ""),
                prefix(p.header.seed(), off, s.h.epoch, 0) + bytes);
        ++n;
      }
      off += h.frame_len;
    }
  }
}

void cut_headers(Output& out, const std::string& tag, const Parsed& p) {
  const uint64_t seg = p.header.segment_size;
  std::string bytes(p.data, 0, 64);
  uint64_t nslots = (p.data.size() - format::kFileHeaderSize) / seg;
  for (uint64_t k = 0; k < nslots; ++k)
    bytes += p.data.substr(format::kFileHeaderSize + k * seg, 64);
  out.put("headers", tag + "-headers", bytes);
}

void cut_index(Output& out, const std::string& tag, const Parsed& p) {
  const uint64_t seg = p.header.segment_size;
  for (const Parsed::Slot& s : p.slots) {
    if (s.h.kind != format::SegmentKind::kIndex) continue;
    uint64_t at = format::kFileHeaderSize + s.slot * seg + sh::kSize;
    out.put("index", tag + "-blob-slot" + std::to_string(s.slot),
            p.data.substr(at, s.h.payload_len));
  }
}

// Everything cut from one store, plus the store itself.
void emit_store(Output& out, const std::string& tag, const std::string& data,
                const std::string& ckpt, bool resign = false, size_t max_frames = 12) {
  out.put("store", resign ? tag + "-resign" : tag, store_input(data, ckpt, resign));
  if (data.size() < format::kFileHeaderSize + kMiB) return;
  Parsed p = parse_store(data);
  cut_frames(out, tag, p, max_frames);
  cut_headers(out, tag, p);
  cut_index(out, tag, p);
  if (!ckpt.empty()) out.put("checkpoint", tag + "-ckpt", ckpt);
}

// --- stores -----------------------------------------------------------------

struct Paths {
  std::string dir;
  std::string path(const std::string& name) const { return dir + "/" + name; }
};

void make_stores(Output& out, const Paths& tmp) {
  {  // A store file as created: header only, no segment yet.
    std::string path = tmp.path("header-only");
    auto s = open_store(path, options());
    out.put("store", "header-only", read_file(path));
    check(s->close(), "close");
  }
  {  // Empty store after close: an index segment and a checkpoint.
    std::string path = tmp.path("empty");
    auto s = open_store(path, options());
    check(s->close(), "close");
    emit_store(out, "empty-closed", read_file(path), read_file(path + ".ckpt"));
  }
  std::string one_batch;
  {  // The worked example of format-spec.md: one batch of two events.
    std::string path = tmp.path("one");
    auto s = open_store(path, options());
    std::vector<EventData> evs = events(2, 21, "OrderPlaced", "acme");
    evs[1].type = "OrderPaid";
    append(*s, "Order", "42", evs);
    check(s->close(), "close");
    one_batch = read_file(path);
    emit_store(out, "one-batch", one_batch, read_file(path + ".ckpt"));
    // The first segment cut short (a copy stopped half-way), without and
    // with the checkpoint that claims its events.
    out.put("store", "truncated-first-segment",
            one_batch.substr(0, format::kFileHeaderSize + 65536));
    out.put("store", "truncated-first-segment-with-checkpoint",
            store_input(one_batch.substr(0, format::kFileHeaderSize + 4096),
                        read_file(path + ".ckpt")));
  }
  {  // Compressed frames (compress_min_bytes = 256) mixed with small plain ones.
    std::string path = tmp.path("zstd");
    auto s = open_store(path, options(256));
    append(*s, "Cart", "c-1", events(12, 120, "ItemAdded", "acme", true));
    append(*s, "Cart", "c-1", events(1, 40, "CartOpened"));
    append(*s, "Order", "o-1", events(30, 200, "OrderLine", "", true));
    append(*s, "Cart", "c-2", events(3, 60, "ItemAdded", "globex"));
    append(*s, "Order", "o-1", events(8, 400, "OrderNote", "acme"));
    check(s->close(), "close");
    emit_store(out, "compressed", read_file(path), read_file(path + ".ckpt"), true);
  }
  {  // Aux records (format-spec.md "Aux segments"): snapshots, dead letters
     // (one removed, one purged), projection states; closed, and as a crash
     // left it with its last aux frame torn.
    std::string path = tmp.path("aux");
    auto s = open_store(path, options());
    append(*s, "Order", "o-1", events(3, 60, "OrderPlaced", "acme"));
    const StreamId order{"Order", "o-1"};
    check(s->put_snapshot(order, StreamVersion(2), 1, "{\"lines\":2}"), "put_snapshot");
    check(s->put_snapshot(order, StreamVersion(3), 2, "{\"lines\":3}"), "put_snapshot");
    check(s->prune_snapshots(order, StreamVersion(3)).status(), "prune_snapshots");
    DeadLetter d;
    d.projection = "mailer";
    d.position = GlobalPosition(2);
    d.error = "smtp refused";
    d.attempts = 3;
    Result<uint64_t> a = s->add_dead_letter(d);
    check(a.status(), "add_dead_letter");
    d.projection = "billing";
    check(s->add_dead_letter(d).status(), "add_dead_letter");
    check(s->add_dead_letter(d).status(), "add_dead_letter");
    check(s->remove_dead_letter(*a), "remove_dead_letter");
    check(s->purge_dead_letters("billing").status(), "purge_dead_letters");
    d.projection = "audit";
    check(s->add_dead_letter(d).status(), "add_dead_letter");
    for (uint64_t p = 1; p <= 3; ++p)
      check(s->save_projection_state("totals", GlobalPosition(p), "{\"n\":1}"), "save");
    std::string crashed = read_file(path);
    check(s->close(), "close");
    emit_store(out, "aux-closed", read_file(path), read_file(path + ".ckpt"));
    // The last aux frame half written (a torn tail of the aux chain).
    Parsed p = parse_store(crashed);
    for (const Parsed::Slot& sl : p.slots) {
      if (sl.h.kind != format::SegmentKind::kAux) continue;
      const uint64_t base = format::kFileHeaderSize + sl.slot * p.header.segment_size;
      uint64_t off = base + sh::kSize, last = 0;
      while (get_u32(reinterpret_cast<const uint8_t*>(crashed.data()) + off + 8) != 0) {
        last = off;
        off += get_u32(reinterpret_cast<const uint8_t*>(crashed.data()) + off + 8);
      }
      if (last != 0)
        for (uint64_t i = last + 40; i < off; ++i) crashed[i] = 0;
      // Keep the corpus small: the file ends after the aux frames (a copy
      // cut short; read-write opens extend it, read-only ones ignore it).
      if (base + p.header.segment_size == crashed.size()) crashed.resize(align_up(off + 64, 4096));
    }
    out.put("store", "aux-torn-tail", crashed);
  }
  {  // Two event segments, then the index segment written by close.
    std::string path = tmp.path("multi");
    auto s = open_store(path, options());
    for (int b = 0; b < 7; ++b)
      append(*s, "Sensor", "s-" + std::to_string(b % 3), events(20, 9000, "Reading", "plant-a"));
    append(*s, "Sensor", "s-0", events(2, 50, "Calibrated"));
    check(s->close(), "close");
    std::string data = read_file(path);
    if (data.size() != format::kFileHeaderSize + 3 * kMiB)
      die("multi-segment store is not 3 slots");
    emit_store(out, "multi-segment-indexed", data, read_file(path + ".ckpt"), false, 4);
  }
  {  // A writer that crashed before any checkpoint; and the same with its
     // last batch torn half-way.
    std::string path = tmp.path("crash");
    auto s = open_store(path, options());
    append(*s, "Account", "a-1", events(2, 80, "Opened", "", true));
    append(*s, "Account", "a-2", events(1, 80, "Opened"));
    append(*s, "Account", "a-1", events(4, 150, "Deposited"));
    append(*s, "Account", "a-2", events(3, 150, "Withdrawn", "bank-x"));
    std::string data = read_file(path);  // what a kill -9 leaves
    emit_store(out, "crashed-no-checkpoint", data, "", true);
    Parsed p = parse_store(data);
    // Find the last frame and zero its second half.
    const auto* b = reinterpret_cast<const uint8_t*>(data.data());
    uint64_t base = format::kFileHeaderSize + p.slots.at(0).slot * kMiB;
    uint64_t off = base + sh::kSize, last = 0, last_len = 0;
    for (;;) {
      FrameHeader h;
      std::string why;
      if (testing::check_frame_text(b + off, base + kMiB - off, off, p.slots[0].h.epoch,
                                    p.header.seed(), &h, &why) != FrameState::kValid)
        break;
      last = off;
      last_len = h.frame_len;
      off += h.frame_len;
    }
    std::string torn = data;
    std::memset(torn.data() + last + last_len / 2, 0, last_len - last_len / 2);
    out.put("store", "crashed-torn-tail", torn);
    // A bad header over written frames (damage, not an interrupted allocation).
    std::string bad_header = data;
    bad_header[base + 20] ^= 0x10;
    out.put("store", "crashed-damaged-segment-header", bad_header);
    s.reset();  // closes (writes a checkpoint; not used)
  }
  {  // Checkpointed, then more appends: open loads the index and scans on.
    std::string path = tmp.path("ckmore");
    auto s = open_store(path, options(512));
    append(*s, "User", "u-1", events(3, 100, "Registered", "acme", true));
    append(*s, "User", "u-2", events(10, 300, "LoggedIn", "acme"));
    check(s->checkpoint(), "checkpoint");
    append(*s, "User", "u-1", events(2, 100, "Renamed"));
    append(*s, "User", "u-3", events(1, 100, "Registered", "initech"));
    emit_store(out, "checkpoint-then-more", read_file(path), read_file(path + ".ckpt"), true);
  }
}

// --- inputs encoded with the fixed parameters (fuzz_util.h) -------------------

std::string encode_frame(const std::vector<std::pair<StreamId, EventData>>& evs,
                         uint64_t first_position, uint32_t compress_min) {
  FrameEncoder enc;
  enc.reset();
  uint64_t pos = first_position;
  for (const auto& [stream, e] : evs) {
    enc.add({&stream, &e, e.id, e.timestamp_us, pos, pos}, eventsource::fuzz::kSeed);
    ++pos;
  }
  std::span<const uint8_t> f =
      enc.finish(eventsource::fuzz::kOffset, eventsource::fuzz::kEpoch, first_position,
                 first_position - 1, compress_min, 1, eventsource::fuzz::kSeed);
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

void make_fixed(Output& out, const Paths& tmp) {
  const uint64_t seed = eventsource::fuzz::kSeed;
  // Frames at kOffset / kEpoch (fuzz_frame.cc's first layout), and the same
  // with a parameter prefix (plain and with every fixup on).
  auto both = [&](const std::string& name, const std::string& frame) {
    out.put("frame", name, frame);
    out.put("frame", name + "-prefixed",
            prefix(seed, eventsource::fuzz::kOffset, eventsource::fuzz::kEpoch, 0) + frame);
    out.put("frame", name + "-prefixed-fixups",
            prefix(seed, eventsource::fuzz::kOffset, eventsource::fuzz::kEpoch, 7) + frame);
  };
  {
    std::vector<std::pair<StreamId, EventData>> evs;
    std::vector<EventData> e = events(2, 21, "OrderPlaced", "acme");
    e[1].type = "OrderPaid";
    evs.push_back({StreamId{"Order", "42"}, e[0]});
    evs.push_back({StreamId{"Order", "42"}, e[1]});
    both("example-two-events", encode_frame(evs, 1, 0));
  }
  {
    std::vector<std::pair<StreamId, EventData>> evs;
    for (EventData& e : events(1, 300, "Everything", "tenant", true))
      evs.push_back({StreamId{"T", std::string(300, 'i')}, e});
    EventData empty;
    empty.type = "E";
    empty.id = make_uuid(1, 2);
    evs.push_back({StreamId{"T", "x"}, empty});
    both("all-fields-and-empty-payload", encode_frame(evs, 7, 0));
  }
  {
    std::vector<std::pair<StreamId, EventData>> evs;
    for (EventData& e : events(40, 150, "Zipped", "acme", true))
      evs.push_back({StreamId{"Z", "1"}, e});
    std::string f = encode_frame(evs, 100, 1);
    if ((static_cast<uint8_t>(f[fh::kFlags]) & format::kFrameFlagZstd) == 0)
      die("expected a compressed frame");
    both("compressed-40-events", f);
  }
  // Never written: an all-zero header.
  out.put("frame", "never-written", std::string(64, '\0'));

  // Headers of the worked example's store id (kSeed).
  {
    FileHeader h;
    h.segment_size = kMiB;
    h.store_id = eventsource::fuzz::example_store_id();
    h.created_us = 1700000000000000;
    std::string bytes(64 * 4, '\0');
    auto* p = reinterpret_cast<uint8_t*>(bytes.data());
    encode_file_header(h, p);
    SegmentHeader ev;
    ev.kind = format::SegmentKind::kEvents;
    ev.slot = 0;
    ev.epoch = 1;
    ev.first_position = 1;
    ev.created_us = 1700000000000001;
    encode_segment_header(ev, seed, p + 64);
    SegmentHeader ix;
    ix.kind = format::SegmentKind::kIndex;
    ix.slot = 1;
    ix.epoch = 2;
    ix.first_position = 2;
    ix.slot_count = 1;
    ix.payload_len = 120;
    ix.created_us = 1700000000000002;
    encode_segment_header(ix, seed, p + 128);
    // slot 2: zero (free)
    out.put("headers", "example-events-index-free", bytes);
    out.put("headers", "example-events-index-free-fixups", bytes + std::string(1, '\3'));
    out.put("headers", "example-file-header-only", bytes.substr(0, 64));
  }

  // Checkpoint files for kSeed.
  {
    std::string data_path = tmp.path("ck");
    auto write = [&](const std::string& name, const Checkpoint& c) {
      check(write_checkpoint_file(*default_os(), data_path, c, seed, 0600), "write checkpoint");
      out.put("checkpoint", name, read_file(checkpoint_path(data_path)));
    };
    Checkpoint c;
    c.store_id = eventsource::fuzz::example_store_id();
    c.written_us = 1700000000000000;
    write("example-empty-no-index", c);
    c.durable_position = 2;
    c.last_frame_offset = eventsource::fuzz::kOffset;
    c.index_slot = 1;
    c.index_epoch = 2;
    write("example-two-events-index-slot1", c);
  }

  // Index blobs for kSeed.
  {
    // Every locator gets an event id (its bytes derived from the locator).
    auto put_blob = [&](const std::string& name, StreamIndex& ix, uint64_t covers,
                        uint64_t log_end) {
      std::vector<std::pair<uint64_t, uint64_t>> ids;  // (fingerprint, locator)
      const Status damage = ix.for_each([&](const std::string& key, const auto& e) {
        for (uint64_t v = 1; v <= e.version(); ++v) {
          Uuid id;
          const uint64_t loc = e.locator(v) ^ (v << 40);
          std::memcpy(id.bytes.data(), &loc, 8);
          std::memcpy(id.bytes.data() + 8, key.data(), std::min<size_t>(8, key.size()));
          ids.emplace_back(IdTable::fingerprint(id, seed), e.locator(v));
        }
      });
      if (!damage.ok()) die("index: " + damage.message());
      for (const auto& [fp, loc] : ids) ix.ids().add(fp, loc);
      Result<std::string> blob = ix.build_blob(covers, log_end, seed);
      if (!blob.ok()) die("index blob: " + blob.status().message());
      out.put("index", name, *blob);
    };
    StreamIndex empty;
    put_blob("example-empty", empty, 0, 0);
    StreamIndex one;
    StreamIndex::Entry& e = one.get_or_add("Order-42", 5);
    e.delta = {0x1080, 0x10CF};
    one.note_added(2);
    put_blob("example-one-stream", one, 2, 0x1118);
    StreamIndex many;
    uint64_t n = 0;
    for (const std::string& key : {std::string("Cart-c-1"), std::string("Cart-c-2"),
                                   std::string("Order-o-1"), "Long-" + std::string(500, 'x')}) {
      uint8_t type_len = static_cast<uint8_t>(key.find('-'));
      StreamIndex::Entry& s = many.get_or_add(key, type_len);
      for (int v = 0; v < 3; ++v) {
        ++n;
        // Alternate plain and compressed-frame locators.
        s.delta.push_back(n % 2 ? 0x1080 + n * 200
                                : (format::kLocatorCompressed | (uint64_t{n % 5} << 48) | 0x1040));
      }
      many.note_added(3);
    }
    put_blob("four-streams-mixed-locators", many, n, 0x5000);
    // More events than one event-id block holds.
    StreamIndex big;
    StreamIndex::Entry& b = big.get_or_add("Big-1", 3);
    for (uint64_t v = 0; v < IdTable::kBlockEntries + 100; ++v) b.delta.push_back(0x1080 + v * 128);
    big.note_added(b.delta.size());
    put_blob("two-id-blocks", big, b.delta.size(), 0x1080 + b.delta.size() * 128);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR (tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  std::string tmpl = (fsys::temp_directory_path() / "es-make-corpus-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) die("mkdtemp failed");
  Paths tmp{tmpl};
  Output out(argv[1]);
  make_stores(out, tmp);
  make_fixed(out, tmp);
  fsys::remove_all(tmpl);
  out.report();
  return 0;
}
