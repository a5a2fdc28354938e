// Aux record and frame encoding, bounds-checked decoding of untrusted aux
// bytes, replay into AuxState, and the walk of the aux chain.
#include "engine/aux_log.h"

#include <fmt/format.h>

#include <algorithm>

#include "engine/coding.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace ar = format::aux_record;
using format::AuxKind;

namespace {

// Varints as event records have them ([F-37], coding.h): canonical only.
void put_varint(std::string* out, uint64_t v) {
  uint8_t b[kMaxVarintLen];
  out->append(reinterpret_cast<const char*>(b), eventsource::put_varint(b, v) - b);
}
void put_bytes(std::string* out, std::string_view b) {
  put_varint(out, b.size());
  out->append(b);
}
void put_i64(std::string* out, int64_t v) {
  uint8_t b[8];
  put_u64(b, static_cast<uint64_t>(v));
  out->append(reinterpret_cast<const char*>(b), 8);
}

// Reads fields from [p, end); any overrun sets ok = false and stays false.
struct Cursor {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;
  uint64_t varint() {
    uint64_t v = 0;
    if (ok && get_varint(&p, end, &v) == nullptr) return v;
    ok = false;
    return 0;
  }
  std::string_view bytes(uint64_t max) {
    const uint64_t n = varint();
    if (!ok || n > max || n > static_cast<uint64_t>(end - p)) {
      ok = false;
      return {};
    }
    std::string_view v(reinterpret_cast<const char*>(p), n);
    p += n;
    return v;
  }
  int64_t i64() {
    if (end - p < 8) {
      ok = false;
      return 0;
    }
    const uint64_t v = get_u64(p);
    p += 8;
    return static_cast<int64_t>(v);
  }
  uint8_t u8() {
    if (p >= end) {
      ok = false;
      return 0;
    }
    return *p++;
  }
};

size_t bytes_size(std::string_view b) { return varint_size(b.size()) + b.size(); }

}  // namespace

uint64_t aux_record_size(const AuxRecord& r) {
  uint64_t n = ar::kSize;
  switch (r.kind) {
    case AuxKind::kSnapshotPut:
      n += bytes_size(r.stream_type) + bytes_size(r.stream_id) + varint_size(r.version) +
           varint_size(r.schema_version) + 8 + bytes_size(r.data);
      break;
    case AuxKind::kSnapshotPrune:
      n += bytes_size(r.stream_type) + bytes_size(r.stream_id) + varint_size(r.version);
      break;
    case AuxKind::kDeadLetterAdd:
      n += varint_size(r.id) + bytes_size(r.name) + varint_size(r.position) +
           varint_size(r.attempts) + 16 + bytes_size(r.text);
      break;
    case AuxKind::kDeadLetterRemove:
      n += varint_size(r.id);
      break;
    case AuxKind::kDeadLetterPurge:
      n += 1 + bytes_size(r.name);
      break;
    case AuxKind::kProjectionState:
      n += bytes_size(r.name) + varint_size(r.position) + 8 + bytes_size(r.data);
      break;
  }
  return n;
}

void encode_aux_record(const AuxRecord& r, uint64_t seed, std::string* out) {
  const size_t start = out->size();
  out->append(ar::kSize, '\0');
  (*out)[start + ar::kKind] = static_cast<char>(r.kind);
  switch (r.kind) {
    case AuxKind::kSnapshotPut:
      put_bytes(out, r.stream_type);
      put_bytes(out, r.stream_id);
      put_varint(out, r.version);
      put_varint(out, r.schema_version);
      put_i64(out, r.time_us);
      put_bytes(out, r.data);
      break;
    case AuxKind::kSnapshotPrune:
      put_bytes(out, r.stream_type);
      put_bytes(out, r.stream_id);
      put_varint(out, r.version);
      break;
    case AuxKind::kDeadLetterAdd:
      put_varint(out, r.id);
      put_bytes(out, r.name);
      put_varint(out, r.position);
      put_varint(out, r.attempts);
      put_i64(out, r.time_us);
      put_i64(out, r.time2_us);
      put_bytes(out, r.text);
      break;
    case AuxKind::kDeadLetterRemove:
      put_varint(out, r.id);
      break;
    case AuxKind::kDeadLetterPurge:
      out->push_back(r.all ? 1 : 0);
      put_bytes(out, r.all ? std::string_view() : r.name);
      break;
    case AuxKind::kProjectionState:
      put_bytes(out, r.name);
      put_varint(out, r.position);
      put_i64(out, r.time_us);
      put_bytes(out, r.data);
      break;
  }
  auto* p = reinterpret_cast<uint8_t*>(out->data() + start);
  const size_t len = out->size() - start;
  put_u32(p + ar::kRecordLen, static_cast<uint32_t>(len));
  put_u32(p + ar::kChecksum, static_cast<uint32_t>(checksum64(p + 8, len - 8, seed)));
}

Status decode_aux_record(const uint8_t* p, size_t avail, uint64_t seed, AuxRecord* r,
                         uint32_t* record_len, bool frame_verified) {
  if (avail < ar::kSize) {
    return bad_bytes(fmt::format("aux record header needs {} bytes, {} left", ar::kSize, avail));
  }
  const uint32_t len = get_u32(p + ar::kRecordLen);
  if (len < ar::kSize || len > avail) {
    return bad_bytes(fmt::format("aux record length {} is impossible ({} bytes left)", len, avail));
  }
  if (!frame_verified &&
      static_cast<uint32_t>(checksum64(p + 8, len - 8, seed)) != get_u32(p + ar::kChecksum)) {
    return bad_bytes("aux record checksum mismatch");
  }
  const uint8_t kind = p[ar::kKind];
  if (kind == 0 || kind > format::kMaxAuxKind || p[ar::kReserved] != 0 ||
      p[ar::kReserved + 1] != 0 || p[ar::kReserved + 2] != 0) {
    return bad_bytes(
        fmt::format("aux record has unknown kind {} or non-zero reserved bytes", kind));
  }
  *r = AuxRecord{};
  r->kind = static_cast<AuxKind>(kind);
  Cursor c{p + ar::kSize, p + len};
  std::string why;
  switch (r->kind) {
    case AuxKind::kSnapshotPut:
    case AuxKind::kSnapshotPrune: {
      r->stream_type = c.bytes(255);
      r->stream_id = c.bytes(65535);
      r->version = c.varint();
      if (r->kind == AuxKind::kSnapshotPut) {
        const uint64_t schema = c.varint();
        r->schema_version = static_cast<uint32_t>(schema);
        if (schema > 0xffffffffu) why = "schema version over 32 bits";
        r->time_us = c.i64();
        r->data = c.bytes(~uint64_t{0});
      }
      if (c.ok && (r->stream_type.empty() || r->stream_id.empty() ||
                   r->stream_type.find('-') != std::string_view::npos))
        why = "snapshot record has an invalid stream name";
      if (c.ok && r->version == 0) why = "snapshot record has version 0";
      break;
    }
    case AuxKind::kDeadLetterAdd: {
      r->id = c.varint();
      r->name = c.bytes(format::kMaxAuxName);
      r->position = c.varint();
      const uint64_t attempts = c.varint();
      r->attempts = static_cast<uint32_t>(attempts);
      r->time_us = c.i64();
      r->time2_us = c.i64();
      r->text = c.bytes(format::kMaxAuxError);
      if (c.ok && (r->id == 0 || r->name.empty() || attempts > 0xffffffffu))
        why = "dead letter record has id 0, no projection or attempts over 32 bits";
      break;
    }
    case AuxKind::kDeadLetterRemove:
      r->id = c.varint();
      if (c.ok && r->id == 0) why = "dead letter removal of id 0";
      break;
    case AuxKind::kDeadLetterPurge: {
      const uint8_t all = c.u8();
      r->all = all == 1;
      r->name = c.bytes(format::kMaxAuxName);
      if (c.ok && (all > 1 || r->all != r->name.empty()))
        why = "dead letter purge names a projection and all, or neither";
      break;
    }
    case AuxKind::kProjectionState:
      r->name = c.bytes(format::kMaxAuxName);
      r->position = c.varint();
      r->time_us = c.i64();
      r->data = c.bytes(format::kMaxProjectionState);
      if (c.ok && r->name.empty()) why = "projection state record has no name";
      break;
  }
  if (!c.ok) why = "aux record fields overrun the record or exceed their limits";
  if (why.empty() && c.p != c.end) why = "aux record has bytes after its fields";
  if (!why.empty()) {
    return bad_bytes(fmt::format("aux record (kind {}): {}", kind, why));
  }
  *record_len = len;
  return Status();
}

std::string encode_aux_frame(std::string_view body, uint32_t count, uint64_t file_offset,
                             uint64_t epoch, uint64_t first_seq, uint64_t durable_seq,
                             uint64_t seed) {
  const uint64_t frame_len = align_up(fh::kSize + body.size(), format::kFrameAlign);
  std::string f(frame_len, '\0');
  auto* p = reinterpret_cast<uint8_t*>(f.data());
  put_u32(p + fh::kFrameLen, static_cast<uint32_t>(frame_len));
  p[fh::kType] = static_cast<uint8_t>(format::FrameType::kAux);
  put_u64(p + fh::kFileOffset, file_offset);
  put_u64(p + fh::kSegmentEpoch, epoch);
  put_u64(p + fh::kFirstPosition, first_seq);
  put_u64(p + fh::kDurablePosition, durable_seq);
  put_u32(p + fh::kCount, count);
  put_u32(p + fh::kBodyLen, static_cast<uint32_t>(body.size()));
  put_u32(p + fh::kRawLen, static_cast<uint32_t>(body.size()));
  std::memcpy(p + fh::kSize, body.data(), body.size());
  put_u64(p + fh::kChecksum, checksum64(p + fh::kFrameLen, frame_len - fh::kFrameLen, seed));
  return f;
}

Status for_each_aux_record(
    const uint8_t* frame, const FrameHeader& h, uint64_t seed,
    const std::function<void(const AuxRecord&, uint64_t, uint32_t, uint32_t)>& fn) {
  const uint8_t* body = frame + fh::kSize;
  uint64_t off = 0;
  for (uint32_t i = 0; i < h.count; ++i) {
    AuxRecord r;
    uint32_t len = 0;
    if (Status s = decode_aux_record(body + off, h.raw_len - off, seed, &r, &len); !s.ok())
      return bad_bytes(fmt::format("aux record {} of frame: {}", i, s.message()), h.file_offset);
    fn(r, h.first_position + i, static_cast<uint32_t>(off), len);
    off += len;
  }
  if (off != h.raw_len)
    return bad_bytes("aux frame body has bytes after its last record", h.file_offset);
  return Status();
}

void AuxState::apply(const AuxRecord& r, uint64_t offset, uint32_t record_len) {
  switch (r.kind) {
    case AuxKind::kSnapshotPut: {
      std::string key(r.stream_type);
      key += '-';
      key.append(r.stream_id);
      auto& versions = snapshots[key];
      auto [it, added] = versions.try_emplace(r.version);
      if (!added) {
        live_bytes -= it->second.record_len;
      } else {
        ++snapshot_count;
      }
      it->second = SnapshotLoc{r.schema_version, r.time_us, offset, record_len, r.data.size()};
      live_bytes += record_len;
      break;
    }
    case AuxKind::kSnapshotPrune: {
      std::string key(r.stream_type);
      key += '-';
      key.append(r.stream_id);
      auto s = snapshots.find(key);
      if (s == snapshots.end()) break;
      auto& versions = s->second;
      for (auto it = versions.begin(); it != versions.end() && it->first < r.version;) {
        live_bytes -= it->second.record_len;
        --snapshot_count;
        it = versions.erase(it);
      }
      if (versions.empty()) snapshots.erase(s);
      break;
    }
    case AuxKind::kDeadLetterAdd: {
      auto [it, added] = dead_letters.try_emplace(r.id);
      if (!added) live_bytes -= it->second.record_len;
      it->second.letter = DeadLetter{r.id,
                                     std::string(r.name),
                                     GlobalPosition(r.position),
                                     std::string(r.text),
                                     r.attempts,
                                     r.time_us,
                                     r.time2_us};
      it->second.offset = offset;
      it->second.record_len = record_len;
      live_bytes += record_len;
      max_id = std::max(max_id, r.id);
      break;
    }
    case AuxKind::kDeadLetterRemove: {
      auto it = dead_letters.find(r.id);
      if (it == dead_letters.end()) break;  // removed already, or compacted away
      live_bytes -= it->second.record_len;
      dead_letters.erase(it);
      break;
    }
    case AuxKind::kDeadLetterPurge:
      for (auto it = dead_letters.begin(); it != dead_letters.end();) {
        if (r.all || it->second.letter.projection == r.name) {
          live_bytes -= it->second.record_len;
          it = dead_letters.erase(it);
        } else {
          ++it;
        }
      }
      break;
    case AuxKind::kProjectionState: {
      auto it = projections.find(r.name);
      if (it == projections.end()) {
        it = projections.emplace(std::string(r.name), Proj{}).first;
      } else {
        live_bytes -= it->second.record_len;
      }
      it->second.state =
          ProjectionState{GlobalPosition(r.position), std::string(r.data), r.time_us};
      it->second.offset = offset;
      it->second.record_len = record_len;
      live_bytes += record_len;
      break;
    }
  }
}

AuxChainView::AuxChainView(std::vector<EventSeg> segs, uint64_t seg_size, uint64_t seed_value,
                           Bytes bytes)
    : segs_(std::move(segs)), bytes_(std::move(bytes)) {
  segment_size = seg_size;
  seed = seed_value;
  frame_type = format::FrameType::kAux;
}

AuxScan scan_aux_chain(const AuxChainView& view) {
  AuxScan scan;
  if (view.segment_count() == 0) return scan;
  scan.next_seq = view.segment(0).first_position;
  LogReader reader(view, 0, 0, scan.next_seq);
  LogFrame f;
  BadFrame b;
  for (;;) {
    const LogReader::Step step = reader.next(&f, &b);
    if (step == LogReader::Step::kBad) {
      scan.bad = std::move(b);
      break;
    }
    if (step == LogReader::Step::kEnd) break;
    // Decode into a scratch list first: a frame with one bad record applies
    // nothing (it may be cut as a torn tail).
    std::vector<std::pair<AuxRecord, std::pair<uint64_t, uint32_t>>> recs;
    const Status walked =
        for_each_aux_record(f.bytes, f.header, view.seed,
                            [&](const AuxRecord& r, uint64_t, uint32_t body_off, uint32_t len) {
                              recs.push_back({r, {f.offset + fh::kSize + body_off, len}});
                            });
    if (!walked.ok()) {
      scan.bad = BadFrame{f.seg_index, f.offset, f.header.first_position, walked.message()};
      break;
    }
    for (const auto& [r, at] : recs) scan.state.apply(r, at.first, at.second);
    ++scan.frames;
    scan.frame_bytes += f.header.frame_len;
    scan.durable_hint = std::max(scan.durable_hint, f.header.durable_position);
    scan.next_seq = reader.expected_position();
    scan.tail_seg = f.seg_index;
    scan.tail_offset = reader.offset();
  }
  if (!scan.bad) {
    // Appends continue where the walk ended: in the last segment, after its
    // last frame (or at its first frame when it has none).
    scan.next_seq = reader.expected_position();
    scan.tail_seg = view.segment_count() - 1;
    const uint64_t base = view.slot_offset(view.segment(scan.tail_seg).slot);
    scan.tail_offset =
        reader.seg_index() == scan.tail_seg
            ? std::clamp<uint64_t>(reader.offset(), base + format::segment_header::kSize,
                                   base + view.segment_size)
            : base + format::segment_header::kSize;
  } else {
    scan.bad_is_damage = later_frame_proves_durable(view, *scan.bad);
  }
  return scan;
}

}  // namespace eventsource
