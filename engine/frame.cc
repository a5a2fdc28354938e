// Frame and record encoding/decoding; every length read from disk is
// bounds-checked before use.
#include "engine/frame.h"

#include <fmt/format.h>
#include <zstd.h>

#include "engine/coding.h"
#include "engine/format.h"

namespace eventsource {

namespace fh = format::frame_header;
namespace rec = format::record;

bool FrameHeader::compressed() const { return (flags & format::kFrameFlagZstd) != 0; }

FrameState check_frame(const uint8_t* p, uint64_t avail, uint64_t offset, uint64_t epoch,
                       uint64_t seed, FrameHeader* h, std::string* error, uint64_t segment_size,
                       format::FrameType type) {
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
          static_cast<uint64_t>(h->count) * (aux ? format::aux_record::kSize : rec::kSize) ||
      fh::kSize + static_cast<uint64_t>(h->raw_len) >
          segment_size - format::segment_header::kSize) {
    *error = fmt::format("frame header fields are inconsistent (count {}, body {}, raw {})",
                         h->count, h->body_len, h->raw_len);
    return FrameState::kBad;
  }
  return FrameState::kValid;
}

bool decode_record(const uint8_t* p, size_t avail, uint64_t seed, RecordedEvent* out,
                   uint32_t* record_len, std::string* error, RecordCheck check) {
  if (avail < rec::kSize) {
    *error = fmt::format("record header needs {} bytes, {} left", rec::kSize, avail);
    return false;
  }
  uint32_t len = get_u32(p + rec::kRecordLen);
  if (len < rec::kSize || len > avail) {
    *error = fmt::format("record length {} is impossible ({} bytes left)", len, avail);
    return false;
  }
  uint64_t parts = static_cast<uint64_t>(p[rec::kStreamTypeLen]) + get_u16(p + rec::kStreamIdLen) +
                   p[rec::kEventTypeLen] + p[rec::kTenantLen] + get_u16(p + rec::kMetadataLen) +
                   get_u32(p + rec::kPayloadLen);
  if (rec::kSize + parts != len) {
    *error = fmt::format("record field lengths add up to {} but record length is {}",
                         rec::kSize + parts, len);
    return false;
  }
  if (check == RecordCheck::kVerifyChecksum &&
      static_cast<uint32_t>(checksum64(p + 8, len - 8, seed)) != get_u32(p + rec::kChecksum)) {
    *error = "record checksum mismatch";
    return false;
  }
  if (p[rec::kFlags] != 0 || get_u32(p + rec::kReserved) != 0) {
    *error = "record has non-zero reserved bytes";
    return false;
  }
  out->position = GlobalPosition(get_u64(p + rec::kPosition));
  out->version = StreamVersion(get_u64(p + rec::kVersion));
  out->timestamp_us = static_cast<int64_t>(get_u64(p + rec::kTimestampUs));
  std::memcpy(out->id.bytes.data(), p + rec::kEventId, 16);
  std::memcpy(out->correlation_id.bytes.data(), p + rec::kCorrelationId, 16);
  std::memcpy(out->causation_id.bytes.data(), p + rec::kCausationId, 16);
  const char* s = reinterpret_cast<const char*>(p + rec::kSize);
  auto take = [&s](size_t n) {
    std::string_view v(s, n);
    s += n;
    return v;
  };
  out->stream_type = take(p[rec::kStreamTypeLen]);
  out->stream_id = take(get_u16(p + rec::kStreamIdLen));
  out->type = take(p[rec::kEventTypeLen]);
  out->tenant = take(p[rec::kTenantLen]);
  out->metadata = take(get_u16(p + rec::kMetadataLen));
  out->payload = take(get_u32(p + rec::kPayloadLen));
  *record_len = len;
  return true;
}

std::string check_record_stream(const RecordedEvent& ev) {
  if (ev.stream_type.empty() || ev.stream_id.empty() ||
      ev.stream_type.find('-') != std::string_view::npos)
    return "invalid stream name (a stream type is non-empty without '-', an id non-empty)";
  return "";
}

bool decompress_body(const uint8_t* body, size_t body_len, size_t raw_len, std::string* out,
                     std::string* error) {
  // [F-12]: exactly one zstd frame (not a skippable one, not a legacy
  // format), declaring raw_len, with nothing after it. ZSTD_decompress would
  // accept more frames after the first; a reader following the spec would not.
  if (body_len < 4 || get_u32(body) != ZSTD_MAGICNUMBER) {
    *error = "compressed body does not start with a zstd frame";
    return false;
  }
  unsigned long long declared = ZSTD_getFrameContentSize(body, body_len);
  if (declared != raw_len) {
    *error = fmt::format("compressed body declares {} bytes, frame says {}", declared, raw_len);
    return false;
  }
  size_t frame_size = ZSTD_findFrameCompressedSize(body, body_len);
  if (ZSTD_isError(frame_size) || frame_size != body_len) {
    *error = ZSTD_isError(frame_size)
                 ? fmt::format("zstd: {}", ZSTD_getErrorName(frame_size))
                 : fmt::format("compressed body has {} bytes after its zstd frame",
                               body_len - frame_size);
    return false;
  }
  out->resize(raw_len);
  size_t r = ZSTD_decompress(out->data(), raw_len, body, body_len);
  if (ZSTD_isError(r) || r != raw_len) {
    *error = fmt::format("zstd: {}", ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short output");
    return false;
  }
  return true;
}

bool frame_body(const uint8_t* frame, const FrameHeader& h, std::string* buf, const uint8_t** body,
                std::string* error) {
  const uint8_t* stored = frame + fh::kSize;
  if (!h.compressed()) {
    *body = stored;
    return true;
  }
  if (!decompress_body(stored, h.body_len, h.raw_len, buf, error)) return false;
  *body = reinterpret_cast<const uint8_t*>(buf->data());
  return true;
}

uint64_t record_size(const StreamId& stream, const EventData& e) {
  return rec::kSize + stream.type.size() + stream.id.size() + e.type.size() + e.tenant.size() +
         e.metadata.size() + e.payload.size();
}

void FrameEncoder::reset() {
  body_.clear();
  offsets_.clear();
  compressed_ = false;
}

void FrameEncoder::add(const RecordFields& r, uint64_t seed) {
  const EventData& e = *r.event;
  size_t start = body_.size();
  offsets_.push_back(static_cast<uint32_t>(start));
  uint64_t len = record_size(*r.stream, e);
  body_.resize(start + len);
  uint8_t* p = reinterpret_cast<uint8_t*>(body_.data()) + start;
  std::memset(p, 0, rec::kSize);
  put_u32(p + rec::kRecordLen, static_cast<uint32_t>(len));
  put_u64(p + rec::kPosition, r.position);
  put_u64(p + rec::kVersion, r.version);
  put_u64(p + rec::kTimestampUs, static_cast<uint64_t>(r.timestamp_us));
  std::memcpy(p + rec::kEventId, r.id.bytes.data(), 16);
  std::memcpy(p + rec::kCorrelationId, e.correlation_id.bytes.data(), 16);
  std::memcpy(p + rec::kCausationId, e.causation_id.bytes.data(), 16);
  p[rec::kStreamTypeLen] = static_cast<uint8_t>(r.stream->type.size());
  p[rec::kEventTypeLen] = static_cast<uint8_t>(e.type.size());
  p[rec::kTenantLen] = static_cast<uint8_t>(e.tenant.size());
  put_u16(p + rec::kStreamIdLen, static_cast<uint16_t>(r.stream->id.size()));
  put_u16(p + rec::kMetadataLen, static_cast<uint16_t>(e.metadata.size()));
  put_u32(p + rec::kPayloadLen, static_cast<uint32_t>(e.payload.size()));
  uint8_t* s = p + rec::kSize;
  for (const std::string* part :
       {&r.stream->type, &r.stream->id, &e.type, &e.tenant, &e.metadata, &e.payload}) {
    std::memcpy(s, part->data(), part->size());
    s += part->size();
  }
  put_u32(p + rec::kChecksum, static_cast<uint32_t>(checksum64(p + 8, len - 8, seed)));
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
