// Frames and records: encoding an append batch into one checksummed,
// optionally zstd-compressed frame, and validating/decoding frames and
// records read back from untrusted bytes. See format-spec.md "Frames".
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/coding.h"
#include "engine/format.h"
#include "eventsource/status.h"
#include "eventsource/types.h"

namespace eventsource {

struct FrameHeader {
  uint64_t checksum = 0;
  uint32_t frame_len = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
  uint64_t file_offset = 0;
  uint64_t epoch = 0;
  uint64_t first_position = 0;
  uint64_t durable_position = 0;
  uint32_t count = 0;
  uint32_t body_len = 0;
  uint32_t raw_len = 0;
  bool compressed() const;
};

enum class FrameState : uint8_t {
  kValid,         // structure and checksum verified
  kNeverWritten,  // all-zero header: the end of the written log
  kBad,           // anything else; *problem says why (kCorruption)
};

// Validates the frame at `p` (with `avail` bytes up to the segment end) that
// must sit at file offset `offset` in a segment of epoch `epoch`.
// Never reads outside [p, p + avail).
// `segment_size` bounds the decompressed body (a frame's records always fit
// in one segment), so a crafted raw_len cannot make a reader allocate more.
// `type` is the frame type the segment holds: event segments hold kEvents
// frames, aux segments kAux frames (never compressed, records of at least
// format::aux_record::kSize bytes).
FrameState check_frame(const uint8_t* p, uint64_t avail, uint64_t offset, uint64_t epoch,
                       uint64_t seed, FrameHeader* out, Status* problem,
                       uint64_t segment_size = format::kMaxSegmentSize,
                       format::FrameType type = format::FrameType::kEvents);

// Whether decode_record checks the record's own checksum. kFrameVerified is
// for records of a frame whose checksum (covering them) was just verified.
enum class RecordCheck : uint8_t { kVerifyChecksum, kFrameVerified };

// Decodes the record at `p` (`avail` bytes left in the body) by [F-15]:
// verifies its length, (unless kFrameVerified) its checksum, then flags,
// varints and every field length against the record's end. Never reads
// outside [p, p + avail). On success *record_len is the record's whole size
// (len varint included) and the views point into `p`.
Status decode_record(const uint8_t* p, size_t avail, uint64_t seed, RecordedEvent* out,
                     uint32_t* record_len, RecordCheck check = RecordCheck::kVerifyChecksum);

// [F-16]: a record's stream name must be a non-empty type without '-' and a
// non-empty id. (Version continuity needs the stream's history: each caller
// checks it against what it has seen.)
Status check_record_stream(const RecordedEvent& ev);

// Decompresses a compressed frame body into `out`. Fails unless the body is
// exactly one zstd frame (no skippable or further frames after it) that
// declares content size raw_len and decompresses to it [F-12].
Status decompress_body(const uint8_t* body, size_t body_len, size_t raw_len, std::string* out);

// Calls fn(const RecordedEvent&, uint32_t index) for each record of a valid
// frame at `frame` (decompressing into *buf when needed); fn returns false to
// stop. Fails when a record is malformed or the records do not fill the body.
template <class Fn>
Status for_each_record(const uint8_t* frame, const FrameHeader& h, uint64_t seed, std::string* buf,
                       Fn&& fn, RecordCheck check = RecordCheck::kVerifyChecksum);

// Builds one frame. Callers serialize (one encoder per writer).
class FrameEncoder {
 public:
  struct RecordFields {
    const StreamId* stream;
    const EventData* event;
    Uuid id;
    int64_t timestamp_us;
    uint64_t position;
    uint64_t version;
  };

  void reset();
  void add(const RecordFields& r, uint64_t seed);
  // Finishes the frame; compresses the body when it reaches `compress_min`
  // (0 = never) and saves at least 1/8. Returns the frame bytes (valid until reset()).
  std::span<const uint8_t> finish(uint64_t file_offset, uint64_t epoch, uint64_t first_position,
                                  uint64_t durable_position, uint32_t compress_min, int level,
                                  uint64_t seed);
  // Size the frame would have uncompressed (for the "fits in segment" check).
  uint64_t uncompressed_frame_len() const;
  bool compressed() const { return compressed_; }
  // Offsets of each record inside the uncompressed body.
  const std::vector<uint32_t>& record_offsets() const { return offsets_; }
  uint64_t raw_body_len() const { return body_.size(); }

 private:
  std::string body_;
  std::string frame_;
  std::string zbuf_;
  std::vector<uint32_t> offsets_;
  bool compressed_ = false;
};

// Encoded size of one record, at most: counts its position and version as
// 10-byte varints (for validation before they are known, [F-14]).
uint64_t record_size(const StreamId& stream, const EventData& e);
// Exact encoded size of one record with this position and version.
uint64_t record_size(const StreamId& stream, const EventData& e, uint64_t position,
                     uint64_t version);

// Returns the body of a valid frame, decompressed into *buf if needed.
Status frame_body(const uint8_t* frame, const FrameHeader& h, std::string* buf,
                  const uint8_t** body);

template <class Fn>
Status for_each_record(const uint8_t* frame, const FrameHeader& h, uint64_t seed, std::string* buf,
                       Fn&& fn, RecordCheck check) {
  const uint8_t* body;
  EVENTSOURCE_RETURN_IF_ERROR(frame_body(frame, h, buf, &body));
  uint64_t off = 0;
  for (uint32_t i = 0; i < h.count; ++i) {
    RecordedEvent ev;
    uint32_t len;
    if (Status s = decode_record(body + off, h.raw_len - off, seed, &ev, &len, check); !s.ok())
      return bad_bytes("record " + std::to_string(i) + " of frame: " + s.message(), h.file_offset);
    if (ev.position.value != h.first_position + i)
      return bad_bytes("record " + std::to_string(i) + " has position " +
                           std::to_string(ev.position.value) + ", frame says " +
                           std::to_string(h.first_position + i),
                       h.file_offset);
    if (!fn(ev, i, static_cast<uint32_t>(off))) return Status();
    off += len;
  }
  if (off != h.raw_len)
    return bad_bytes("frame body has bytes after its last record", h.file_offset);
  return Status();
}

}  // namespace eventsource
