// Frame and record encoding/decoding; every length read from disk is
// bounds-checked before use.
#include "engine/frame.h"

#include <fmt/format.h>
#include <zstd.h>

#include <cassert>

#include "engine/coding.h"
#include "engine/format.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace rec = format::record;

bool FrameHeader::compressed() const { return (flags & format::kFrameFlagZstd) != 0; }

namespace {

FrameState check_frame_bytes(const uint8_t* p, uint64_t avail, uint64_t offset, uint64_t epoch,
                             uint64_t seed, FrameHeader* h, std::string* error,
                             uint64_t segment_size, format::FrameType type) {
  if (avail < fh::kSize) {
    // Not even room for a header: the end of the segment.
    if (all_zero(p, avail)) return FrameState::kNeverWritten;
    *error = "bytes after the last frame do not form a frame header";
    return FrameState::kBad;
  }
  if (all_zero(p, fh::kSize)) return FrameState::kNeverWritten;
  h->checksum = get_u64(p + fh::kChecksum);
  h->frame_len = get_u32(p + fh::kFrameLen);
  h->type = p[fh::kType];
  h->flags = p[fh::kFlags];
  h->file_offset = get_u64(p + fh::kFileOffset);
  h->epoch = get_u64(p + fh::kSegmentEpoch);
  h->first_position = get_u64(p + fh::kFirstPosition);
  h->durable_position = get_u64(p + fh::kDurablePosition);
  h->count = get_u32(p + fh::kCount);
  h->body_len = get_u32(p + fh::kBodyLen);
  h->raw_len = get_u32(p + fh::kRawLen);
  if (h->type != static_cast<uint8_t>(type)) {
    *error = fmt::format("unknown frame type {} (type {} belongs here)", h->type,
                         static_cast<int>(type));
    return FrameState::kBad;
  }
  if (h->frame_len < fh::kSize || h->frame_len % format::kFrameAlign != 0 || h->frame_len > avail) {
    *error = fmt::format("frame length {} is impossible here ({} bytes left in segment)",
                         h->frame_len, avail);
    return FrameState::kBad;
  }
  if (h->body_len > h->frame_len - fh::kSize ||
      align_up(fh::kSize + h->body_len, format::kFrameAlign) != h->frame_len) {
    *error =
        fmt::format("body length {} does not match frame length {}", h->body_len, h->frame_len);
    return FrameState::kBad;
  }
  if (h->file_offset != offset) {
    *error = fmt::format("frame records offset {} but sits at {} (misplaced or stale frame)",
                         hex(h->file_offset), hex(offset));
    return FrameState::kBad;
  }
  if (h->epoch != epoch) {
    *error = fmt::format("frame belongs to segment epoch {}, segment has epoch {} (stale frame)",
                         h->epoch, epoch);
    return FrameState::kBad;
  }
  uint64_t sum = checksum64(p + fh::kFrameLen, h->frame_len - fh::kFrameLen, seed);
  if (sum != h->checksum) {
    *error = "frame checksum mismatch";
    return FrameState::kBad;
  }
  // Checksummed from here on: structural rules a correct writer always keeps.
  const bool aux = type == format::FrameType::kAux;
  if ((h->flags & ~(aux ? 0 : format::kFrameFlagZstd)) != 0 || get_u16(p + fh::kReserved0) != 0 ||
      get_u32(p + fh::kReserved1) != 0) {
    *error = "frame has unknown flags or non-zero reserved bytes";
    return FrameState::kBad;
  }
  if (h->count == 0 || h->count > format::kMaxEventsPerBatch || h->first_position == 0 ||
      (!h->compressed() && h->raw_len != h->body_len) ||
      h->raw_len <
          static_cast<uint64_t>(h->count) * (aux ? format::aux_record::kSize : rec::kMinSize) ||
      fh::kSize + static_cast<uint64_t>(h->raw_len) >
          segment_size - format::segment_header::kSize) {
    *error = fmt::format("frame header fields are inconsistent (count {}, body {}, raw {})",
                         h->count, h->body_len, h->raw_len);
    return FrameState::kBad;
  }
  return FrameState::kValid;
}

}  // namespace

FrameState check_frame(const uint8_t* p, uint64_t avail, uint64_t offset, uint64_t epoch,
                       uint64_t seed, FrameHeader* h, Status* problem, uint64_t segment_size,
                       format::FrameType type) {
  std::string why;
  const FrameState state =
      check_frame_bytes(p, avail, offset, epoch, seed, h, &why, segment_size, type);
  if (state == FrameState::kBad) *problem = bad_bytes(std::move(why), offset);
  return state;
}

namespace {

std::string_view view(const uint8_t* p, size_t n) {
  return std::string_view(reinterpret_cast<const char*>(p), n);
}

// Flag bits a record of this event carries ([F-15]: exactly the present fields).
uint8_t record_flags(const EventData& e) {
  return (e.correlation_id.is_nil() ? 0 : rec::kHasCorrelationId) |
         (e.causation_id.is_nil() ? 0 : rec::kHasCausationId) |
         (e.tenant.empty() ? 0 : rec::kHasTenant) | (e.metadata.empty() ? 0 : rec::kHasMetadata);
}

// The record's len field: its bytes after the len varint.
uint64_t record_rest_len(const StreamId& stream, const EventData& e, size_t position_size,
                         size_t version_size) {
  return rec::kChecksumSize + 1 + position_size + version_size + rec::kTimestampSize +
         rec::kIdSize + (e.correlation_id.is_nil() ? 0 : rec::kIdSize) +
         (e.causation_id.is_nil() ? 0 : rec::kIdSize) + 1 + stream.type.size() +
         varint_size(stream.id.size()) + stream.id.size() + 1 + e.type.size() +
         (e.tenant.empty() ? 0 : 1 + e.tenant.size()) +
         (e.metadata.empty() ? 0 : varint_size(e.metadata.size()) + e.metadata.size()) +
         e.payload.size();
}

// Reads the fields of one record front to back, never past `end`. On a
// failure it records what was wrong; decode_record formats the message once.
struct RecordCursor {
  enum class Bad : uint8_t { kVarint, kLengthPastEnd, kBytesPastEnd, kTooLong };
  const uint8_t* q;
  const uint8_t* end;
  Bad bad = Bad::kVarint;
  const char* field = "";
  const char* why = "";
  uint64_t n = 0, max = 0;

  bool fail(Bad b, const char* f, uint64_t len = 0) {
    bad = b;
    field = f;
    n = len;
    return false;
  }
  bool varint(const char* f, uint64_t* v) {
    if (const char* w = get_varint(&q, end, v)) [[unlikely]] {
      why = w;
      return fail(Bad::kVarint, f);
    }
    return true;
  }
  // Bytes announced by length `len`.
  bool bytes(const char* f, uint64_t len, std::string_view* s) {
    if (len > static_cast<size_t>(end - q)) [[unlikely]]
      return fail(Bad::kBytesPastEnd, f, len);
    *s = view(q, len);
    q += len;
    return true;
  }
  // u8 length, then the bytes.
  bool short_string(const char* f, std::string_view* s) {
    if (q == end) [[unlikely]]
      return fail(Bad::kLengthPastEnd, f);
    const uint8_t len = *q++;
    return bytes(f, len, s);
  }
  // varint length (at most `limit`), then the bytes.
  bool long_string(const char* f, const char* f_length, uint64_t limit, std::string_view* s) {
    uint64_t len;
    if (!varint(f_length, &len)) return false;
    if (len > limit) [[unlikely]] {
      max = limit;
      return fail(Bad::kTooLong, f, len);
    }
    return bytes(f, len, s);
  }
  // By value, so the cursor's address never escapes the hot path.
  [[gnu::cold]] static bool report(RecordCursor c, std::string* error) {
    const char* field = c.field;
    const uint64_t n = c.n;
    switch (c.bad) {
      case Bad::kVarint:
        *error = fmt::format("record {} varint {}", field, c.why);
        break;
      case Bad::kLengthPastEnd:
        *error = fmt::format("record {} length runs past its end", field);
        break;
      case Bad::kBytesPastEnd:
        *error = fmt::format("record {} of {} bytes runs past its end", field, n);
        break;
      case Bad::kTooLong:
        *error = fmt::format("record {} length {} exceeds {}", field, n, c.max);
        break;
    }
    return false;
  }
};

}  // namespace

namespace {

bool decode_record_bytes(const uint8_t* p, size_t avail, uint64_t seed, RecordedEvent* out,
                         uint32_t* record_len, std::string* error, RecordCheck check) {
  const uint8_t* q = p;
  uint64_t len;
  if (const char* why = get_varint(&q, p + avail, &len)) [[unlikely]] {
    *error = fmt::format("record length varint {} ({} bytes left)", why, avail);
    return false;
  }
  const size_t head = static_cast<size_t>(q - p);
  if (len < rec::kMinLen || len > avail - head || head + len > UINT32_MAX) [[unlikely]] {
    *error =
        fmt::format("record length {} is impossible ({} bytes left after it)", len, avail - head);
    return false;
  }
  const uint8_t* const end = q + len;
  if (check == RecordCheck::kVerifyChecksum &&
      static_cast<uint32_t>(checksum64(q + rec::kChecksumSize, len - rec::kChecksumSize, seed)) !=
          get_u32(q)) {
    *error = "record checksum mismatch";
    return false;
  }
  // From here on the bytes are checksummed (or the frame's checksum covered
  // them): structural rules a correct writer always keeps, so any failure is
  // corruption, reported by field.
  q += rec::kChecksumSize;
  const uint8_t flags = *q++;
  if ((flags & ~rec::kKnownFlags) != 0) [[unlikely]] {
    *error = fmt::format("record has unknown flags {:#04x}", flags);
    return false;
  }
  RecordCursor c{q, end};
  uint64_t position, version;
  if (!c.varint("position", &position) || !c.varint("version", &version))
    return RecordCursor::report(c, error);
  q = c.q;
  const bool has_correlation = (flags & rec::kHasCorrelationId) != 0;
  const bool has_causation = (flags & rec::kHasCausationId) != 0;
  const size_t fixed = rec::kTimestampSize + rec::kIdSize + (has_correlation ? rec::kIdSize : 0) +
                       (has_causation ? rec::kIdSize : 0);
  if (static_cast<size_t>(end - q) < fixed) [[unlikely]] {
    *error = "record timestamp and ids run past its end";
    return false;
  }
  out->position = GlobalPosition(position);
  out->version = StreamVersion(version);
  out->timestamp_us = static_cast<int64_t>(get_u64(q));
  q += rec::kTimestampSize;
  std::memcpy(out->id.bytes.data(), q, rec::kIdSize);
  q += rec::kIdSize;
  out->correlation_id = Uuid();
  if (has_correlation) {
    std::memcpy(out->correlation_id.bytes.data(), q, rec::kIdSize);
    q += rec::kIdSize;
    if (out->correlation_id.is_nil()) [[unlikely]] {
      *error = "record has the correlation flag but a nil id";
      return false;
    }
  }
  out->causation_id = Uuid();
  if (has_causation) {
    std::memcpy(out->causation_id.bytes.data(), q, rec::kIdSize);
    q += rec::kIdSize;
    if (out->causation_id.is_nil()) [[unlikely]] {
      *error = "record has the causation flag but a nil id";
      return false;
    }
  }
  c.q = q;
  if (!c.short_string("stream type", &out->stream_type) ||
      !c.long_string("stream id", "stream id length", rec::kMaxStreamIdLen, &out->stream_id) ||
      !c.short_string("event type", &out->type))
    return RecordCursor::report(c, error);
  out->tenant = view(c.q, 0);
  if ((flags & rec::kHasTenant) != 0) {
    if (!c.short_string("tenant", &out->tenant)) return RecordCursor::report(c, error);
    if (out->tenant.empty()) [[unlikely]] {
      *error = "record has the tenant flag but an empty tenant";
      return false;
    }
  }
  out->metadata = view(c.q, 0);
  if ((flags & rec::kHasMetadata) != 0) {
    if (!c.long_string("metadata", "metadata length", rec::kMaxMetadataLen, &out->metadata))
      return RecordCursor::report(c, error);
    if (out->metadata.empty()) [[unlikely]] {
      *error = "record has the metadata flag but empty metadata";
      return false;
    }
  }
  out->payload = view(c.q, static_cast<size_t>(end - c.q));
  *record_len = static_cast<uint32_t>(head + len);
  return true;
}

}  // namespace

Status decode_record(const uint8_t* p, size_t avail, uint64_t seed, RecordedEvent* out,
                     uint32_t* record_len, RecordCheck check) {
  std::string why;
  if (!decode_record_bytes(p, avail, seed, out, record_len, &why, check)) [[unlikely]]
    return bad_bytes(std::move(why));
  return Status();
}

Status check_record_stream(const RecordedEvent& ev) {
  if (ev.stream_type.empty() || ev.stream_id.empty() ||
      ev.stream_type.find('-') != std::string_view::npos)
    return bad_bytes(
        "invalid stream name (a stream type is non-empty without '-', an id non-empty)");
  return Status();
}

Status decompress_body(const uint8_t* body, size_t body_len, size_t raw_len, std::string* out) {
  // [F-12]: exactly one zstd frame (not a skippable one, not a legacy
  // format), declaring raw_len, with nothing after it. ZSTD_decompress would
  // accept more frames after the first; a reader following the spec would not.
  if (body_len < 4 || get_u32(body) != ZSTD_MAGICNUMBER) {
    return bad_bytes("compressed body does not start with a zstd frame");
  }
  unsigned long long declared = ZSTD_getFrameContentSize(body, body_len);
  if (declared != raw_len) {
    return bad_bytes(
        fmt::format("compressed body declares {} bytes, frame says {}", declared, raw_len));
  }
  size_t frame_size = ZSTD_findFrameCompressedSize(body, body_len);
  if (ZSTD_isError(frame_size) || frame_size != body_len) {
    return bad_bytes(ZSTD_isError(frame_size)
                         ? fmt::format("zstd: {}", ZSTD_getErrorName(frame_size))
                         : fmt::format("compressed body has {} bytes after its zstd frame",
                                       body_len - frame_size));
  }
  out->resize(raw_len);
  size_t r = ZSTD_decompress(out->data(), raw_len, body, body_len);
  if (ZSTD_isError(r) || r != raw_len) {
    return bad_bytes(
        fmt::format("zstd: {}", ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short output"));
  }
  return Status();
}

Status frame_body(const uint8_t* frame, const FrameHeader& h, std::string* buf,
                  const uint8_t** body) {
  const uint8_t* stored = frame + fh::kSize;
  if (!h.compressed()) {
    *body = stored;
    return Status();
  }
  EVENTSOURCE_RETURN_IF_ERROR(decompress_body(stored, h.body_len, h.raw_len, buf));
  *body = reinterpret_cast<const uint8_t*>(buf->data());
  return Status();
}

uint64_t record_size(const StreamId& stream, const EventData& e) {
  const uint64_t rest = record_rest_len(stream, e, kMaxVarintLen, kMaxVarintLen);
  return varint_size(rest) + rest;
}

uint64_t record_size(const StreamId& stream, const EventData& e, uint64_t position,
                     uint64_t version) {
  const uint64_t rest = record_rest_len(stream, e, varint_size(position), varint_size(version));
  return varint_size(rest) + rest;
}

void FrameEncoder::reset() {
  body_.clear();
  offsets_.clear();
  compressed_ = false;
}

void FrameEncoder::add(const RecordFields& r, uint64_t seed) {
  const EventData& e = *r.event;
  const StreamId& stream = *r.stream;
  const size_t start = body_.size();
  offsets_.push_back(static_cast<uint32_t>(start));
  const uint64_t rest = record_rest_len(stream, e, varint_size(r.position), varint_size(r.version));
  const uint64_t len = varint_size(rest) + rest;
  body_.resize(start + len);
  uint8_t* const p = reinterpret_cast<uint8_t*>(body_.data()) + start;
  uint8_t* q = put_varint(p, rest);
  uint8_t* const checksum = q;
  q += rec::kChecksumSize;
  const uint8_t flags = record_flags(e);
  *q++ = flags;
  q = put_varint(q, r.position);
  q = put_varint(q, r.version);
  put_u64(q, static_cast<uint64_t>(r.timestamp_us));
  q += rec::kTimestampSize;
  auto bytes = [&q](const void* data, size_t n) {
    std::memcpy(q, data, n);
    q += n;
  };
  bytes(r.id.bytes.data(), rec::kIdSize);
  if (flags & rec::kHasCorrelationId) bytes(e.correlation_id.bytes.data(), rec::kIdSize);
  if (flags & rec::kHasCausationId) bytes(e.causation_id.bytes.data(), rec::kIdSize);
  *q++ = static_cast<uint8_t>(stream.type.size());
  bytes(stream.type.data(), stream.type.size());
  q = put_varint(q, stream.id.size());
  bytes(stream.id.data(), stream.id.size());
  *q++ = static_cast<uint8_t>(e.type.size());
  bytes(e.type.data(), e.type.size());
  if (flags & rec::kHasTenant) {
    *q++ = static_cast<uint8_t>(e.tenant.size());
    bytes(e.tenant.data(), e.tenant.size());
  }
  if (flags & rec::kHasMetadata) {
    q = put_varint(q, e.metadata.size());
    bytes(e.metadata.data(), e.metadata.size());
  }
  bytes(e.payload.data(), e.payload.size());
  // Invariant: the fields fill exactly the size computed up front.
  assert(q == p + len && "record fields and record_rest_len disagree");
  put_u32(checksum, static_cast<uint32_t>(checksum64(checksum + rec::kChecksumSize,
                                                     rest - rec::kChecksumSize, seed)));
}

uint64_t FrameEncoder::uncompressed_frame_len() const {
  return align_up(fh::kSize + body_.size(), format::kFrameAlign);
}

std::span<const uint8_t> FrameEncoder::finish(uint64_t file_offset, uint64_t epoch,
                                              uint64_t first_position, uint64_t durable_position,
                                              uint32_t compress_min, int level, uint64_t seed) {
  const std::string* body = &body_;
  compressed_ = false;
  if (compress_min > 0 && body_.size() >= compress_min) {
    zbuf_.resize(ZSTD_compressBound(body_.size()));
    size_t n = ZSTD_compress(zbuf_.data(), zbuf_.size(), body_.data(), body_.size(), level);
    if (!ZSTD_isError(n) && n <= body_.size() - body_.size() / 8) {
      zbuf_.resize(n);
      body = &zbuf_;
      compressed_ = true;
    }
  }
  uint64_t frame_len = align_up(fh::kSize + body->size(), format::kFrameAlign);
  frame_.assign(frame_len, '\0');
  uint8_t* p = reinterpret_cast<uint8_t*>(frame_.data());
  put_u32(p + fh::kFrameLen, static_cast<uint32_t>(frame_len));
  p[fh::kType] = static_cast<uint8_t>(format::FrameType::kEvents);
  p[fh::kFlags] = compressed_ ? format::kFrameFlagZstd : 0;
  put_u64(p + fh::kFileOffset, file_offset);
  put_u64(p + fh::kSegmentEpoch, epoch);
  put_u64(p + fh::kFirstPosition, first_position);
  put_u64(p + fh::kDurablePosition, durable_position);
  put_u32(p + fh::kCount, static_cast<uint32_t>(offsets_.size()));
  put_u32(p + fh::kBodyLen, static_cast<uint32_t>(body->size()));
  put_u32(p + fh::kRawLen, static_cast<uint32_t>(body_.size()));
  std::memcpy(p + fh::kSize, body->data(), body->size());
  put_u64(p + fh::kChecksum, checksum64(p + fh::kFrameLen, frame_len - fh::kFrameLen, seed));
  return {p, frame_len};
}

}  // namespace eventsource
